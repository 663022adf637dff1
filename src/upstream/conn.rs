//! One upstream connection: TCP connect, TLS with ALPN, the HTTP/1.1 or
//! HTTP/2 handshake, and the driver task that runs the connection until
//! it closes. The pool owns what this returns; it races and retries the two
//! steps over an origin's addresses (`pool/race.rs`).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::Instrument;

use super::goaway::{Gate, Watched};
use crate::body::ProxyBody;
use crate::route::{Origin, Scheme};

/// Opening a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TCP connect failed (refused, unreachable, …).
    #[error("connecting to {addr}")]
    Tcp {
        /// The address tried.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// TCP connect plus TLS took longer than `--connect-timeout`.
    #[error("connecting to {addr} timed out after {after:?}")]
    TimedOut {
        /// The address tried.
        addr: SocketAddr,
        /// The connect timeout.
        after: Duration,
    },
    /// The host is not a valid TLS server name.
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    /// TLS handshake failed (untrusted certificate, wrong name, …).
    #[error("TLS handshake with {host} at {addr}")]
    Tls {
        /// The name the certificate was checked against.
        host: String,
        /// The address tried.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// HTTP handshake failed.
    #[error("HTTP handshake with {addr}")]
    Handshake {
        /// The address tried.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: hyper::Error,
    },
}

/// When a connection's driver task saw it end (set once): the pool learns
/// from it how long an origin keeps idle connections.
pub(crate) type ClosedAt = Arc<std::sync::OnceLock<Instant>>;

/// The sending half of a connection.
pub(crate) enum Sender {
    /// HTTP/1.1: one request at a time; when it ended.
    H1(http1::SendRequest<ProxyBody>, ClosedAt),
    /// HTTP/2: clonable, many streams.
    H2(http2::SendRequest<ProxyBody>),
}

/// A freshly opened connection.
pub(crate) struct Opened {
    /// How to send requests on it.
    pub sender: Sender,
    /// TCP connect time.
    pub connect: Duration,
    /// TLS handshake time (zero for plain HTTP).
    pub tls: Duration,
    /// HTTP/2: the origin's current `SETTINGS_MAX_CONCURRENT_STREAMS`, kept
    /// up to date by the driver task.
    pub max_streams: Arc<AtomicUsize>,
    /// HTTP/2: what the pool and the connection's reader share about
    /// GOAWAY (see `goaway.rs`); unused on HTTP/1.1.
    pub gate: Arc<Gate>,
}

/// Settings a connection needs.
pub struct ConnSettings {
    /// Upstream TLS configuration.
    pub tls: Arc<rustls::ClientConfig>,
    /// Limit for TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// HTTP/2 PING interval.
    pub h2_ping_interval: Duration,
}

/// The TCP connect to `addr`, given up at `deadline` (reported as
/// `budget`, the whole connect's time limit).
pub(crate) async fn connect_tcp(
    addr: SocketAddr,
    deadline: Instant,
    budget: Duration,
) -> Result<TcpStream, ConnectError> {
    let tcp = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::TimedOut {
            addr,
            after: budget,
        })?
        .map_err(|source| ConnectError::Tcp { addr, source })?;
    // Requests are small and latency-bound: never wait for Nagle.
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// TLS and HTTP handshakes over a connected `tcp` (`connect`: how long the
/// TCP connect took), given up at `deadline`.
pub(crate) async fn handshake(
    origin: &Origin,
    addr: SocketAddr,
    tcp: TcpStream,
    connect: Duration,
    deadline: Instant,
    settings: &ConnSettings,
) -> Result<Opened, ConnectError> {
    let timeout = settings.connect_timeout;
    let span = tracing::debug_span!("upstream", %origin, %addr);

    if origin.scheme == Scheme::Http {
        let (sender, conn) = h1_builder()
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|source| ConnectError::Handshake { addr, source })?;
        let closed = ClosedAt::default();
        tokio::spawn(drive_h1(conn, closed.clone()).instrument(span));
        let max_streams = Arc::new(AtomicUsize::new(1));
        return Ok(Opened {
            sender: Sender::H1(sender, closed),
            connect,
            tls: Duration::ZERO,
            max_streams,
            gate: Arc::default(),
        });
    }

    let name = ServerName::try_from(origin.host.to_string())
        .map_err(|_| ConnectError::ServerName(origin.host.to_string()))?;
    let tls_started = Instant::now();
    let connector = tokio_rustls::TlsConnector::from(settings.tls.clone());
    let stream = tokio::time::timeout_at(deadline, connector.connect(name, tcp))
        .await
        .map_err(|_| ConnectError::TimedOut {
            addr,
            after: timeout,
        })?
        .map_err(|source| ConnectError::Tls {
            host: origin.host.to_string(),
            addr,
            source,
        })?;
    let tls = tls_started.elapsed();
    let is_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    if is_h2 {
        let gate = Arc::new(Gate::default());
        let io = TokioIo::new(Watched::new(stream, gate.clone()));
        // Fixed windows sized for throughput: on a short round trip the
        // adaptive (BDP) window stays near the 64 KiB default, and a 1 MiB
        // response then waits for a WINDOW_UPDATE every 64 KiB.
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(settings.h2_ping_interval)
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true)
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONN_WINDOW)
            .max_frame_size(H2_MAX_FRAME);
        let (sender, conn) = builder
            .handshake(io)
            .await
            .map_err(|source| ConnectError::Handshake { addr, source })?;
        let max_streams = Arc::new(AtomicUsize::new(conn.current_max_send_streams()));
        let watched = WatchStreams {
            conn,
            max: max_streams.clone(),
        };
        tokio::spawn(drive(watched).instrument(span));
        return Ok(Opened {
            sender: Sender::H2(sender),
            connect,
            tls,
            max_streams,
            gate,
        });
    }
    let (sender, conn) = h1_builder()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ConnectError::Handshake { addr, source })?;
    let closed = ClosedAt::default();
    tokio::spawn(drive_h1(conn, closed.clone()).instrument(span));
    Ok(Opened {
        sender: Sender::H1(sender, closed),
        connect,
        tls,
        max_streams: Arc::new(AtomicUsize::new(1)),
        gate: Arc::default(),
    })
}

/// HTTP/2 receive window per stream: a 1 MiB response arrives without
/// waiting for a WINDOW_UPDATE.
const H2_STREAM_WINDOW: u32 = 2 << 20;
/// HTTP/2 receive window of the whole connection (many streams at once).
const H2_CONN_WINDOW: u32 = 8 << 20;
/// The largest DATA frame the origin may send.
const H2_MAX_FRAME: u32 = 64 << 10;

/// Runs an HTTP/1.1 connection until it closes, and notes when.
async fn drive_h1<F: std::future::Future<Output = hyper::Result<()>>>(conn: F, closed: ClosedAt) {
    drive(conn).await;
    let _ = closed.set(Instant::now());
}

/// Runs a connection until it closes.
async fn drive<F: std::future::Future<Output = hyper::Result<()>>>(conn: F) {
    match conn.await {
        Ok(()) => tracing::trace!("upstream connection closed"),
        Err(err) => tracing::debug!(
            error = &err as &dyn std::error::Error,
            "upstream connection ended"
        ),
    }
}

type H2Connection = http2::Connection<
    TokioIo<Watched<tokio_rustls::client::TlsStream<TcpStream>>>,
    ProxyBody,
    TokioExecutor,
>;

/// Drives an HTTP/2 connection and publishes the origin's stream limit
/// after every poll (hyper exposes it on the connection only).
struct WatchStreams {
    conn: H2Connection,
    max: Arc<AtomicUsize>,
}

impl Future for WatchStreams {
    type Output = hyper::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let polled = Pin::new(&mut self.conn).poll(cx);
        let max = self.conn.current_max_send_streams();
        self.max.store(max, Ordering::Relaxed);
        polled
    }
}

/// Most an HTTP/1.1 origin connection's read buffer grows to (hyper's
/// default is ~400 KiB). A response body arrives as slices of that buffer,
/// and each slice keeps its whole allocation until the client took it, so
/// with large downloads the default held several of them per connection:
/// allocations past glibc's mmap threshold, which then rises, so that RSS
/// kept them. A response head must fit in it, as a request head must fit
/// in `--max-header-bytes` (64 KiB by default); a larger one can fail with
/// 502 "message head is too large".
const H1_READ_BUF_MAX: usize = 64 * 1024;

/// The HTTP/1.1 client settings for origin connections.
fn h1_builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder.max_buf_size(H1_READ_BUF_MAX);
    builder
}
