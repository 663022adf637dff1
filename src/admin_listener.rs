//! `--metrics-listen`: the admin endpoints on a listener of their own, with
//! limits of their own: at most `--max-admin-conns` connections (the next
//! gets a short 503 and is closed, and is counted in
//! `ccnproxy_admin_connections_refused_total`), and the head and idle limit
//! of `idle_limit`: a connection with no request open for `--read-timeout`
//! is closed.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::accept_backoff::AcceptBackoff;
use crate::admin::{self, Admin};
use crate::idle_limit::{self, Guarded, IdleWatch, OpenRequests};

/// The admin listener's limits.
#[derive(Debug, Clone, Copy)]
pub struct AdminLimits {
    /// No request open for this long closes the connection (`--read-timeout`).
    pub read_timeout: Duration,
    /// Connections at once (`--max-admin-conns`).
    pub max_conns: usize,
}

/// Serves only the admin endpoints on `listener`, forever.
pub async fn serve(listener: TcpListener, admin: Admin, limits: AdminLimits) {
    let admin = admin.for_admin_listener();
    let slots = Arc::new(Semaphore::new(limits.max_conns.max(1)));
    let mut backoff = AcceptBackoff::default();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff.succeeded("admin");
                stream
            }
            Err(err) => {
                // EMFILE and friends: back off instead of spinning.
                tokio::time::sleep(backoff.failed("admin", &err)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            admin.count_refused_connection();
            tokio::spawn(refuse(stream));
            continue;
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            serve_one(stream, admin, limits.read_timeout).await;
            drop(slot);
        });
    }
}

/// One admin connection, HTTP/1.1 or HTTP/2, until it closes or stays
/// without a request open for `read_timeout`.
async fn serve_one(stream: TcpStream, admin: Admin, read_timeout: Duration) {
    let open = Arc::new(OpenRequests::default());
    let svc = service_fn({
        let open = open.clone();
        move |req: http::Request<hyper::body::Incoming>| {
            let guard = open.start();
            let resp = admin::serve_or_not_found(&admin, req.uri(), req.headers());
            std::future::ready(Ok::<_, std::convert::Infallible>(
                resp.map(|b| Guarded::new(b, guard)),
            ))
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout);
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let mut quiet = IdleWatch::new(open, read_timeout);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = quiet.quiet() => conn.as_mut().graceful_shutdown(),
    }
    // Asked to close: it has `GRACE` to do so (an HTTP/2 client that does
    // not answer the GOAWAY's PING would hold it open).
    let _ = tokio::time::timeout(idle_limit::GRACE, conn).await;
}

/// Over `--max-admin-conns`: a short 503 and close.
async fn refuse(mut stream: TcpStream) {
    const BODY: &str = "too many admin connections (--max-admin-conns)\n";
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(resp.as_bytes())).await;
}
