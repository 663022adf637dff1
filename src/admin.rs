//! The proxy's own endpoints: `/healthz`, `/metrics`, `/.api/stats`,
//! `/.api/http-stats`. Served on the main port for requests with no route,
//! and on `--metrics-listen` when set.

use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{self, ProxyBody};
use crate::metrics::Metrics;

/// The admin endpoints.
pub struct Admin {
    metrics: Arc<Metrics>,
    draining: Arc<std::sync::atomic::AtomicBool>,
}

impl Admin {
    /// Admin endpoints over `metrics`; `/healthz` answers 503 once `draining`.
    pub fn new(metrics: Arc<Metrics>, draining: Arc<std::sync::atomic::AtomicBool>) -> Self {
        Admin { metrics, draining }
    }

    /// The response for `path`, or `None` when it is not an admin path.
    pub fn serve(&self, path: &str) -> Option<Response<ProxyBody>> {
        let (status, ctype, text) = match path {
            "/healthz" => {
                if self.draining.load(std::sync::atomic::Ordering::Relaxed) {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain; charset=utf-8",
                        "draining\n".to_owned(),
                    )
                } else {
                    (
                        StatusCode::OK,
                        "text/plain; charset=utf-8",
                        "ok\n".to_owned(),
                    )
                }
            }
            "/metrics" => (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(),
            ),
            _ => return None,
        };
        let mut resp = Response::new(body::full(text));
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
        Some(resp)
    }
}

/// Serves only the admin endpoints on `--metrics-listen`.
pub async fn serve_admin(listener: tokio::net::TcpListener, service: Arc<crate::service::Service>) {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let service = service.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let service = service.clone();
                async move {
                    let resp = service.admin.serve(req.uri().path()).unwrap_or_else(|| {
                        let mut r = Response::new(body::full("not found\n"));
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        r
                    });
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
