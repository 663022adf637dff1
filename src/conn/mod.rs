//! Serves one client connection: HTTP/1.1, or h2c when the client opens
//! with the HTTP/2 preface (prior knowledge), on the same socket; the read
//! (slow headers, idle keep-alive; for h2c, no stream open: `idle_limit`)
//! and write-stall timeouts; upgrades for
//! CONNECT; and the shutdown phases: while draining, HTTP/1.1 responses say
//! `Connection: close` and an h2c connection gets GOAWAY; when stopping,
//! every connection shuts down gracefully (idle ones close, in-flight
//! requests finish). An idle HTTP/1.1 connection holds no buffers (`h1`).

mod h1;
mod idle_release;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_io_timeout::TimeoutWriter;

use crate::config::{LimitsConfig, ListenerConfig};
use crate::exchange::ConnInfo;
use crate::identity::Prefixed;
use crate::idle_limit::{self, Guarded, IdleWatch, OpenRequests};
use crate::proxy::Handler;
use crate::shutdown::Phase;
use idle_release::{ClientBody, Stream};

/// The HTTP/1.1 and HTTP/2 connection settings, made once.
pub struct Builders {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

/// The connection builders for `listener` and `limits`.
pub fn builders(listener: &ListenerConfig, limits: &LimitsConfig) -> Builders {
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(listener.read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));
    Builders { h1, h2 }
}

/// Serves `stream` (a client socket, `TCP_NODELAY` set) until the client
/// closes, a timeout fires, or `phase` reaches `Stopping` and the requests in
/// flight are done.
pub async fn serve(
    stream: Prefixed<TcpStream>,
    info: ConnInfo,
    service: Arc<Handler>,
    builders: Arc<Builders>,
    listener: &ListenerConfig,
    phase: watch::Receiver<Phase>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Boxed at once: the task would otherwise keep room for it unboxed.
    let mut stream = Box::pin(TimeoutWriter::new(stream));
    // A write that makes no progress for this long means the client stopped
    // reading; a long but moving download is fine.
    stream
        .as_mut()
        .set_timeout_pinned(Some(listener.write_timeout));
    match sniff(&mut stream, listener.read_timeout).await {
        // Boxed: hyper's h2 connection is large, and every HTTP/1.1
        // connection's task would otherwise have room for it.
        Some(true) => {
            Box::pin(serve_h2(
                stream,
                info,
                service,
                &builders.h2,
                listener.read_timeout,
                phase,
            ))
            .await
        }
        Some(false) => {
            h1::serve(
                stream,
                info,
                service,
                &builders.h1,
                listener.read_timeout,
                phase,
            )
            .await
        }
        None => Ok(()),
    }
}

/// What an h2c client sends first.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How much the first read takes: a whole request head, usually, which
/// hyper then parses without reading the socket again.
const FIRST_READ: usize = 4096;

/// Reads the connection's first bytes and puts them back: `Some(true)` for
/// the HTTP/2 preface, `Some(false)` for anything else, `None` when the
/// client closed, failed or stayed silent for the read timeout.
async fn sniff(stream: &mut Stream, timeout: Duration) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut first = BytesMut::new();
    // Nothing is held before the client sends something: a connection that
    // never does holds no buffer. A new socket can be reported readable
    // before any data came (seen here: 4 KiB held by every silent
    // connection), so the buffer is taken for the read only and given back
    // when the read finds nothing.
    if stream.get_ref().buffered() == 0 {
        let socket = stream.get_ref().get_ref();
        loop {
            match tokio::time::timeout_at(deadline, socket.readable()).await {
                Ok(Ok(())) => {}
                _ => return None,
            }
            let mut buf = BytesMut::with_capacity(FIRST_READ);
            match socket.try_read_buf(&mut buf) {
                Ok(0) => return None,
                Ok(_) => {
                    first = buf;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return None,
            }
        }
    }
    let is_h2 = loop {
        let n = first.len().min(PREFACE.len());
        if first[..n] != PREFACE[..n] {
            break false;
        }
        if n == PREFACE.len() {
            break true;
        }
        if first.capacity() == first.len() {
            first.reserve(FIRST_READ);
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut first)).await {
            Ok(Ok(0)) if !first.is_empty() => break false,
            Ok(Ok(0) | Err(_)) | Err(_) => return None,
            Ok(Ok(_)) => {}
        }
    };
    stream
        .as_mut()
        .get_pin_mut()
        .get_mut()
        .unread(first.freeze());
    Some(is_h2)
}

/// Serves h2c until the client closes or the proxy drains (GOAWAY; the
/// streams in flight finish). A connection with no stream open for
/// `read_timeout` (no complete HEADERS since it opened, or since its last
/// response) gets GOAWAY and is closed, as an HTTP/1.1 connection that
/// sends no head for that long is.
async fn serve_h2(
    stream: Stream,
    info: ConnInfo,
    service: Arc<Handler>,
    builder: &http2::Builder<TokioExecutor>,
    read_timeout: Duration,
    mut phase: watch::Receiver<Phase>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let open = Arc::new(OpenRequests::default());
    let svc = service_fn({
        let open = open.clone();
        move |req: http::Request<hyper::body::Incoming>| {
            let (service, info) = (service.clone(), info.clone());
            let guard = open.start();
            Box::pin(async move {
                let req = req.map(|b| ClientBody::new(b, None));
                let resp = service.handle(info, req).await;
                Ok::<_, Infallible>(resp.map(|b| Guarded::new(b, guard)))
            })
        }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let mut quiet = IdleWatch::new(open, read_timeout);
    let (mut asked_to_close, mut watching) = (false, true);
    // Set when the connection was asked to close for idling.
    let mut give_up: Option<tokio::time::Instant> = None;
    loop {
        if !asked_to_close && *phase.borrow_and_update() != Phase::Serving {
            conn.as_mut().graceful_shutdown();
            asked_to_close = true;
        }
        let deadline = give_up.unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            done = conn.as_mut() => return Ok(done?),
            changed = phase.changed(), if watching && !asked_to_close => {
                watching = changed.is_ok();
            }
            () = quiet.quiet(), if !asked_to_close => {
                conn.as_mut().graceful_shutdown();
                asked_to_close = true;
                give_up = Some(tokio::time::Instant::now() + idle_limit::GRACE);
            }
            () = tokio::time::sleep_until(deadline), if give_up.is_some() => {
                if quiet.is_idle() {
                    return Ok(());
                }
                // A stream came in before the GOAWAY: it finishes.
                give_up = None;
            }
        }
    }
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
