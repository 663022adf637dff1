//! Serves one client connection: HTTP/1.1 and h2c on the same socket
//! (hyper-util's auto builder), with the read (slow headers, idle
//! keep-alive) and write-stall timeouts, upgrades for CONNECT, and the
//! shutdown phases: while draining, HTTP/1.1 responses say `Connection:
//! close` and an h2c connection gets GOAWAY; when stopping, every connection
//! shuts down gracefully (idle ones close, in-flight requests finish).

use std::convert::Infallible;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, watch};

use crate::config::{LimitsConfig, ListenerConfig};
use crate::exchange::ConnInfo;
use crate::proxy::Handler;
use crate::shutdown::Phase;

/// The connection builder, configured once.
pub fn builder(listener: &ListenerConfig, limits: &LimitsConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(listener.read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(std::time::Duration::from_secs(30)));
    b
}

/// Serves `stream` (a client socket, `TCP_NODELAY` set) until the client
/// closes, a timeout fires, or `phase` reaches `Stopping` and the requests in
/// flight are done.
pub async fn serve<S>(
    stream: S,
    info: ConnInfo,
    service: Arc<Handler>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    listener: &ListenerConfig,
    mut phase: watch::Receiver<Phase>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
    // A write that makes no progress for this long means the client stopped
    // reading; a long but moving download is fine.
    stream.set_write_timeout(Some(listener.write_timeout));
    let io = TokioIo::new(Box::pin(stream));
    // hyper-util's auto builder does not say which protocol it picked; the
    // first HTTP/2 request tells.
    let spoke_h2 = Arc::new(Notify::new());
    let svc = service_fn({
        let spoke_h2 = spoke_h2.clone();
        let phase = phase.clone();
        move |req| {
            let service = service.clone();
            let phase = phase.clone();
            let h1 = req.version() < http::Version::HTTP_2;
            if !h1 {
                spoke_h2.notify_one();
            }
            let keeps_conn = h1 && req.method() != http::Method::CONNECT;
            // Boxed: hyper keeps the service future inside each connection's
            // state, and the request path's future is ~11 KB. Boxing it keeps idle
            // connections small (memory per idle client, see docs/bench.md).
            Box::pin(async move {
                let mut resp = service.handle(info, req).await;
                if keeps_conn && *phase.borrow() != Phase::Serving {
                    resp.headers_mut()
                        .insert(http::header::CONNECTION, CLOSE.clone());
                }
                Ok::<_, Infallible>(resp)
            })
        }
    });
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    let (mut is_h2, mut asked_to_close, mut phase_open) = (false, false, true);
    loop {
        let now = *phase.borrow_and_update();
        let close = match now {
            Phase::Serving => false,
            // HTTP/1.1 closes after its next response (`Connection: close`).
            Phase::Draining => is_h2,
            Phase::Stopping => true,
        };
        if close && !asked_to_close {
            // h2: GOAWAY, in-flight streams finish; h1: close once idle.
            conn.as_mut().graceful_shutdown();
            asked_to_close = true;
        }
        tokio::select! {
            done = conn.as_mut() => return done,
            () = spoke_h2.notified(), if !is_h2 => is_h2 = true,
            changed = phase.changed(), if phase_open && !asked_to_close => {
                phase_open = changed.is_ok();
            }
        }
    }
}

static CLOSE: http::HeaderValue = http::HeaderValue::from_static("close");

/// When a connection ended because hyper refused a request head, the
/// status hyper answered with (431 for an oversized head, 400 otherwise).
pub fn rejected_status(err: &(dyn std::error::Error + 'static)) -> Option<u16> {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_parse_too_large() {
                return Some(431);
            }
            if h.is_parse() || h.is_parse_status() {
                return Some(400);
            }
            return None;
        }
        source = e.source();
    }
    None
}
