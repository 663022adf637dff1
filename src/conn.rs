//! Serves one client connection: HTTP/1.1 and h2c on the same socket
//! (hyper-util's auto builder), with the read (slow headers, idle
//! keep-alive) and write-stall timeouts, upgrades for CONNECT, and graceful
//! shutdown through the listener's watcher.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::{LimitsConfig, ListenerConfig};
use crate::exchange::ConnInfo;
use crate::proxy::Handler;

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

/// Serves `stream` (a client socket, `TCP_NODELAY` set) until the client closes, a timeout fires, or shutdown
/// completes.
pub async fn serve<S>(
    stream: S,
    info: ConnInfo,
    service: Arc<Handler>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    listener: &ListenerConfig,
    watcher: Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
    // A write that makes no progress for this long means the client stopped
    // reading; a long but moving download is fine.
    stream.set_write_timeout(Some(listener.write_timeout));
    let io = TokioIo::new(Box::pin(stream));
    let svc = service_fn(move |req| {
        let service = service.clone();
        // Boxed: hyper keeps the service future inside each connection's
        // state, and the request path's future is ~11 KB. Boxing it keeps idle
        // connections small (memory per idle client, see docs/bench.md).
        Box::pin(async move { Ok::<_, Infallible>(service.handle(info, req).await) })
    });
    let conn = builder.serve_connection_with_upgrades(io, svc);
    watcher.watch(conn.into_owned()).await
}

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
