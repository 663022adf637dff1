//! Real origins for the proxy to talk to: plain HTTP/1.1, TLS HTTP/1.1, TLS
//! with h2. Each counts what happened to it (connections accepted, TLS
//! handshakes, requests, connections open now and at peak) and records the
//! head of every request it received.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use http::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::{BoxError, Ca, TIMEOUT, pattern_range, within};

/// Response body type of origin handlers.
pub type OriginBody = BoxBody<Bytes, BoxError>;

/// A custom request handler.
pub type Handler =
    Arc<dyn Fn(Request<Incoming>) -> BoxFuture<'static, Response<OriginBody>> + Send + Sync>;

/// What the origin speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// HTTP/1.1 over plain TCP.
    PlainHttp1,
    /// HTTP/1.1 over TLS, ALPN `http/1.1` only.
    TlsHttp1,
    /// TLS offering ALPN `h2` and `http/1.1`; serves h2 when negotiated.
    TlsH2,
}

impl Kind {
    /// Whether the origin speaks TLS.
    pub fn is_tls(self) -> bool {
        !matches!(self, Kind::PlainHttp1)
    }
}

#[derive(Clone)]
enum Reply {
    /// Reads the whole request body, then answers.
    Fixed {
        status: StatusCode,
        body: Bytes,
    },
    /// Answers at once, never touching the request body.
    Early {
        status: StatusCode,
        body: Bytes,
    },
    Echo,
    Stream {
        total: u64,
        chunk: usize,
        interval: Duration,
    },
    Never,
    Custom(Handler),
}

/// The head of one request as the origin received it.
#[derive(Debug, Clone)]
pub struct RequestSeen {
    /// Method.
    pub method: Method,
    /// Request target.
    pub uri: Uri,
    /// HTTP version (`HTTP_2` on an h2 connection).
    pub version: Version,
    /// All request headers. On h2 the authority is in `uri`, not `host`.
    pub headers: HeaderMap,
    /// Which accepted connection (0-based, in accept order) carried it.
    pub conn: usize,
    /// The proxy's address on that connection.
    pub peer: SocketAddr,
}

impl RequestSeen {
    /// A header value as text (the first one, if repeated).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    /// The Host the request named: the `host` header, else (h2) the URI's
    /// authority.
    pub fn host(&self) -> Option<String> {
        self.header("host")
            .map(str::to_owned)
            .or_else(|| self.uri.authority().map(|a| a.to_string()))
    }
}

/// Builds and starts an [`Origin`].
pub struct OriginBuilder {
    kind: Kind,
    ip: IpAddr,
    port: u16,
    names: Vec<String>,
    ca: &'static Ca,
    reply: Reply,
    headers: Vec<(HeaderName, HeaderValue)>,
    delay: Duration,
    idle_timeout: Option<Duration>,
    max_concurrent_streams: Option<u32>,
    goaway_after: Option<usize>,
}

struct Config {
    reply: Reply,
    headers: Vec<(HeaderName, HeaderValue)>,
    delay: Duration,
    idle_timeout: Option<Duration>,
    max_concurrent_streams: Option<u32>,
    goaway_after: Option<usize>,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicUsize,
    handshakes: AtomicUsize,
    requests: AtomicUsize,
    open_now: AtomicUsize,
    max_open: AtomicUsize,
    inflight_now: AtomicUsize,
    max_inflight: AtomicUsize,
    max_inflight_per_conn: AtomicUsize,
}

struct Shared {
    config: Config,
    counters: Counters,
    seen: Mutex<Vec<RequestSeen>>,
    conns: Mutex<Vec<AbortHandle>>,
    accept: Mutex<Option<AbortHandle>>,
    /// Woken on every counter change.
    changed: Notify,
}

impl Shared {
    fn bump(&self, counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    fn abort_conns(&self) {
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }
}

struct Inner {
    kind: Kind,
    addr: SocketAddr,
    names: Vec<String>,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(accept) = self.shared.accept.lock().unwrap().take() {
            accept.abort();
        }
        self.shared.abort_conns();
    }
}

/// A running origin. Cloning gives another handle to the same origin; it
/// stops when the last handle is dropped.
#[derive(Clone)]
pub struct Origin {
    inner: Arc<Inner>,
}

impl Origin {
    /// HTTP/1.1 over plain TCP.
    pub fn plain_http1() -> OriginBuilder {
        OriginBuilder::new(Kind::PlainHttp1)
    }

    /// HTTP/1.1 over TLS (ALPN `http/1.1` only).
    pub fn tls_http1() -> OriginBuilder {
        OriginBuilder::new(Kind::TlsHttp1)
    }

    /// TLS offering ALPN `h2` and `http/1.1`.
    pub fn tls_h2() -> OriginBuilder {
        OriginBuilder::new(Kind::TlsH2)
    }

    /// Listening address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// What the origin speaks.
    pub fn kind(&self) -> Kind {
        self.inner.kind
    }

    /// The names the origin poses as (the first is its main name).
    pub fn names(&self) -> &[String] {
        &self.inner.names
    }

    /// The main name (`example.test` unless set).
    pub fn name(&self) -> &str {
        &self.inner.names[0]
    }

    /// The port clients reach it on through `--resolve`: 443 for TLS, 80 for
    /// plain.
    pub fn public_port(&self) -> u16 {
        if self.inner.kind.is_tls() { 443 } else { 80 }
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.inner.shared.counters.accepted.load(Ordering::SeqCst)
    }

    /// TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.inner.shared.counters.handshakes.load(Ordering::SeqCst)
    }

    /// Requests received so far (counted when the head arrives).
    pub fn requests(&self) -> usize {
        self.inner.shared.counters.requests.load(Ordering::SeqCst)
    }

    /// Connections open right now.
    pub fn open_now(&self) -> usize {
        self.inner.shared.counters.open_now.load(Ordering::SeqCst)
    }

    /// Most connections ever open at the same time.
    pub fn max_open(&self) -> usize {
        self.inner.shared.counters.max_open.load(Ordering::SeqCst)
    }

    /// Requests being answered right now (head received, response body not
    /// yet finished), over all connections.
    pub fn inflight_now(&self) -> usize {
        self.inner
            .shared
            .counters
            .inflight_now
            .load(Ordering::SeqCst)
    }

    /// Most requests ever in flight at the same time.
    pub fn max_inflight(&self) -> usize {
        self.inner
            .shared
            .counters
            .max_inflight
            .load(Ordering::SeqCst)
    }

    /// Most requests ever in flight at the same time on one connection
    /// (h2: concurrent streams on one connection).
    pub fn max_inflight_per_conn(&self) -> usize {
        self.inner
            .shared
            .counters
            .max_inflight_per_conn
            .load(Ordering::SeqCst)
    }

    /// Every request head received, in arrival order.
    pub fn requests_seen(&self) -> Vec<RequestSeen> {
        self.inner.shared.seen.lock().unwrap().clone()
    }

    /// The last request head received; panics if there was none.
    pub fn last_request(&self) -> RequestSeen {
        self.inner
            .shared
            .seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the origin received no request")
    }

    /// Waits until `cond` holds on this origin (re-checked on every counter
    /// change), at most [`TIMEOUT`].
    pub async fn wait_for(&self, what: &str, cond: impl Fn(&Origin) -> bool) {
        within(what, async {
            loop {
                let mut changed = pin!(self.inner.shared.changed.notified());
                changed.as_mut().enable();
                if cond(self) {
                    return;
                }
                changed.await;
            }
        })
        .await
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_requests(&self, n: usize) {
        self.wait_for(&format!("origin to receive {n} requests"), |o| {
            o.requests() >= n
        })
        .await
    }

    /// Waits until no connection is open.
    pub async fn wait_all_closed(&self) {
        self.wait_for("origin connections to close", |o| o.open_now() == 0)
            .await
    }

    /// `--ca-file`, `--allow-host *`, `--allow-cidr 127.0.0.0/8` and the
    /// `--resolve` entries for this origin.
    pub fn proxy_args(&self) -> Vec<String> {
        args_for(&[self])
    }

    /// [`Origin::proxy_args`] followed by `extra`.
    pub fn proxy_args_with(&self, extra: &[&str]) -> Vec<String> {
        let mut args = self.proxy_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// `--resolve` entries: each name on the public port (443 for TLS, 80 for
    /// plain) and on the origin's own port, all pointing at its address.
    pub fn resolve_args(&self) -> Vec<String> {
        let addr = self.addr();
        let mut ports = vec![self.public_port()];
        if addr.port() != self.public_port() {
            ports.push(addr.port());
        }
        let mut args = Vec::new();
        for name in &self.inner.names {
            for port in &ports {
                args.push("--resolve".to_owned());
                args.push(format!("{name}:{port}:{}:{}", addr.ip(), addr.port()));
            }
        }
        args
    }

    /// Stops listening and closes every connection. Counters are kept.
    pub fn stop(&self) {
        if let Some(accept) = self.inner.shared.accept.lock().unwrap().take() {
            accept.abort();
        }
        self.inner.shared.abort_conns();
    }

    /// Closes every open connection, keeps listening.
    pub fn drop_connections(&self) {
        self.inner.shared.abort_conns();
    }

    /// Listens again on the same address after [`Origin::stop`].
    pub async fn restart(&self) {
        self.stop();
        // The aborted accept task drops its listener asynchronously; retry the
        // bind a bounded number of times.
        let mut last_err = None;
        for _ in 0..100 {
            match bind(self.addr()) {
                Ok(listener) => {
                    spawn_accept(listener, self.inner.shared.clone(), self.inner.tls.clone());
                    return;
                }
                Err(err) => last_err = Some(err),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("rebinding {}: {:?}", self.addr(), last_err);
    }
}

/// Proxy arguments for several origins: the common flags once, then every
/// origin's `--resolve` entries.
pub fn args_for(origins: &[&Origin]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--ca-file",
        Ca::trusted().pem_path().to_str().expect("UTF-8 path"),
        "--allow-host",
        "*",
        "--allow-port",
        "*",
        "--allow-cidr",
        "127.0.0.0/8",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for origin in origins {
        args.extend(origin.resolve_args());
    }
    args
}

impl OriginBuilder {
    fn new(kind: Kind) -> Self {
        OriginBuilder {
            kind,
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            names: vec!["example.test".to_owned()],
            ca: Ca::trusted(),
            reply: Reply::Fixed {
                status: StatusCode::OK,
                body: Bytes::from_static(b"ok"),
            },
            headers: Vec::new(),
            delay: Duration::ZERO,
            idle_timeout: None,
            max_concurrent_streams: None,
            goaway_after: None,
        }
    }

    /// Listen on `ip` (default 127.0.0.1).
    pub fn bind(mut self, ip: &str) -> Self {
        self.ip = ip.parse().expect("IP address");
        self
    }

    /// Listen on a given port (default 0: the kernel picks).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The name the origin poses as (replaces the default `example.test`).
    pub fn name(mut self, name: &str) -> Self {
        self.names = vec![name.to_owned()];
        self
    }

    /// Several names; the first is the main one.
    pub fn names(mut self, names: &[&str]) -> Self {
        assert!(!names.is_empty());
        self.names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Certificate from the untrusted CA.
    pub fn untrusted(mut self) -> Self {
        self.ca = Ca::untrusted();
        self
    }

    /// Reads the request body, then answers `status` with `body`.
    pub fn reply(mut self, status: u16, body: impl Into<Bytes>) -> Self {
        self.reply = Reply::Fixed {
            status: StatusCode::from_u16(status).expect("status"),
            body: body.into(),
        };
        self
    }

    /// Answers `status` with `body` at once, without reading the request body.
    pub fn reply_early(mut self, status: u16, body: impl Into<Bytes>) -> Self {
        self.reply = Reply::Early {
            status: StatusCode::from_u16(status).expect("status"),
            body: body.into(),
        };
        self
    }

    /// Adds a header to every response.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        ));
        self
    }

    /// Answers 200 with the request body streamed back as it arrives.
    pub fn echo(mut self) -> Self {
        self.reply = Reply::Echo;
        self
    }

    /// Answers 200 with `total` bytes of the test pattern (Content-Length
    /// set), in `chunk`-sized pieces, waiting `interval` between pieces.
    pub fn stream(mut self, total: u64, chunk: usize, interval: Duration) -> Self {
        self.reply = Reply::Stream {
            total,
            chunk,
            interval,
        };
        self
    }

    /// Answers 200 with `total` bytes of the test pattern as fast as it can.
    pub fn download(self, total: u64) -> Self {
        self.stream(total, 64 * 1024, Duration::ZERO)
    }

    /// Waits `delay` before each response head.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Never answers (the request hangs until the connection closes).
    pub fn never_answer(mut self) -> Self {
        self.reply = Reply::Never;
        self
    }

    /// Closes a keep-alive connection after `idle` without a request.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    /// h2 `SETTINGS_MAX_CONCURRENT_STREAMS`.
    pub fn max_concurrent_streams(mut self, n: u32) -> Self {
        self.max_concurrent_streams = Some(n);
        self
    }

    /// h2: starts a graceful shutdown (GOAWAY, in-flight streams finish) of
    /// each connection once it has received `n` requests, as origins that
    /// recycle connections do (nginx `keepalive_requests`).
    pub fn goaway_after(mut self, n: usize) -> Self {
        self.goaway_after = Some(n);
        self
    }

    /// A custom handler.
    pub fn handler<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<OriginBody>> + Send + 'static,
    {
        self.reply = Reply::Custom(Arc::new(move |req| Box::pin(f(req))));
        self
    }

    /// Binds and starts serving.
    pub async fn start(self) -> Origin {
        let listener = bind(SocketAddr::new(self.ip, self.port)).expect("bind origin");
        let addr = listener.local_addr().expect("origin address");
        let tls = self.kind.is_tls().then(|| {
            let mut names: Vec<&str> = self.names.iter().map(String::as_str).collect();
            names.extend(["*.test", "*.amazonaws.com", "localhost", "127.0.0.1"]);
            let ip = self.ip.to_string();
            if ip != "127.0.0.1" {
                names.push(&ip);
            }
            let alpn: &[&[u8]] = match self.kind {
                Kind::TlsH2 => &[b"h2", b"http/1.1"],
                _ => &[b"http/1.1"],
            };
            TlsAcceptor::from(self.ca.leaf(&names).server_config(alpn))
        });
        let shared = Arc::new(Shared {
            config: Config {
                reply: self.reply,
                headers: self.headers,
                delay: self.delay,
                idle_timeout: self.idle_timeout,
                max_concurrent_streams: self.max_concurrent_streams,
                goaway_after: self.goaway_after,
            },
            counters: Counters::default(),
            seen: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
            accept: Mutex::new(None),
            changed: Notify::new(),
        });
        spawn_accept(listener, shared.clone(), tls.clone());
        Origin {
            inner: Arc::new(Inner {
                kind: self.kind,
                addr,
                names: self.names,
                tls,
                shared,
            }),
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

fn spawn_accept(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    let task = tokio::spawn(accept_loop(listener, shared.clone(), tls));
    *shared.accept.lock().unwrap() = Some(task.abort_handle());
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(_) => {
                // EMFILE and friends: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        // Ids keep counting across restarts.
        let id = shared.counters.accepted.load(Ordering::SeqCst);
        // Counted before the task starts, so a test that sees `accepted`
        // move also sees `open_now` include this connection.
        let open = OpenGuard::new(shared.clone());
        shared.bump(&shared.counters.accepted);
        let task = tokio::spawn(serve_conn(
            stream,
            peer,
            id,
            shared.clone(),
            tls.clone(),
            open,
        ));
        let mut conns = shared.conns.lock().unwrap();
        conns.retain(|c| !c.is_finished());
        conns.push(task.abort_handle());
    }
}

struct OpenGuard(Arc<Shared>);

impl OpenGuard {
    fn new(shared: Arc<Shared>) -> Self {
        let now = shared.counters.open_now.fetch_add(1, Ordering::SeqCst) + 1;
        shared.counters.max_open.fetch_max(now, Ordering::SeqCst);
        OpenGuard(shared)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.counters.open_now.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

async fn serve_conn(
    stream: TcpStream,
    peer: SocketAddr,
    id: usize,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    _open: OpenGuard,
) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve_io(TokioIo::new(stream), false, peer, id, shared).await,
        Some(acceptor) => {
            let Ok(Ok(stream)) = tokio::time::timeout(TIMEOUT, acceptor.accept(stream)).await
            else {
                return;
            };
            shared.bump(&shared.counters.handshakes);
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            serve_io(TokioIo::new(stream), h2, peer, id, shared).await
        }
    }
}

async fn serve_io<I>(io: I, h2: bool, peer: SocketAddr, id: usize, shared: Arc<Shared>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let service = {
        let shared = shared.clone();
        let activity = activity.clone();
        service_fn(move |req| handle(req, peer, id, shared.clone(), activity.clone()))
    };
    // `select!` evaluates a disabled branch's expression too; give it a
    // harmless value.
    let idle = shared.config.idle_timeout;
    let idle_or_hour = idle.unwrap_or(Duration::from_secs(3600));
    let mut closing = false;
    if h2 {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        if let Some(n) = shared.config.max_concurrent_streams {
            builder.max_concurrent_streams(n);
        }
        let mut conn = pin!(builder.serve_connection(io, service));
        loop {
            tokio::select! {
                _ = conn.as_mut() => break,
                _ = activity.idle_for(idle_or_hour), if idle.is_some() && !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = activity.recycle.notified(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    } else {
        // More header lines than hyper's default 100: the proxy forwards
        // heads of up to --max-header-bytes from h2c clients.
        let mut conn = pin!(
            http1::Builder::new()
                .max_headers(4096)
                .serve_connection(io, service)
        );
        loop {
            tokio::select! {
                _ = conn.as_mut() => break,
                _ = activity.idle_for(idle_or_hour), if idle.is_some() && !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// Requests in flight on one connection and when the last one ended.
struct Activity {
    inflight: AtomicUsize,
    last: Mutex<Instant>,
    /// One waiter (the connection driver): `notify_one` keeps a permit, so no
    /// change is missed.
    changed: Notify,
    /// Requests received on this connection.
    received: AtomicUsize,
    /// Notified once the connection has received `goaway_after` requests.
    recycle: Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            inflight: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
            changed: Notify::new(),
            received: AtomicUsize::new(0),
            recycle: Notify::new(),
        }
    }

    /// Resolves once the connection has had no request in flight for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let changed = self.changed.notified();
            if self.inflight.load(Ordering::SeqCst) == 0 {
                let deadline = *self.last.lock().unwrap() + idle;
                if Instant::now() >= deadline {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = changed => {}
                }
            } else {
                changed.await;
            }
        }
    }
}

/// Marks a request in flight until its response body is dropped.
struct InflightGuard(Arc<Activity>, Arc<Shared>);

impl InflightGuard {
    fn new(activity: Arc<Activity>, shared: Arc<Shared>) -> Self {
        let on_conn = activity.inflight.fetch_add(1, Ordering::SeqCst) + 1;
        activity.changed.notify_one();
        let counters = &shared.counters;
        counters
            .max_inflight_per_conn
            .fetch_max(on_conn, Ordering::SeqCst);
        let now = counters.inflight_now.fetch_add(1, Ordering::SeqCst) + 1;
        counters.max_inflight.fetch_max(now, Ordering::SeqCst);
        InflightGuard(activity, shared)
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap() = Instant::now();
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_one();
        self.1.counters.inflight_now.fetch_sub(1, Ordering::SeqCst);
        self.1.changed.notify_waiters();
    }
}

/// A response body that keeps its request counted as in flight.
struct GuardedBody {
    inner: OriginBody,
    _guard: InflightGuard,
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A complete body from bytes.
pub fn full(body: impl Into<Bytes>) -> OriginBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

/// `total` bytes of the test pattern in `chunk`-sized frames, `interval`
/// apart (the first frame at once).
pub fn pattern_body(total: u64, chunk: usize, interval: Duration) -> OriginBody {
    let frames = futures_util::stream::unfold(0u64, move |sent| async move {
        if sent >= total {
            return None;
        }
        if sent > 0 && !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
        let n = (total - sent).min(chunk as u64) as usize;
        let frame = Frame::data(Bytes::from(pattern_range(sent, n)));
        Some((Ok::<_, BoxError>(frame), sent + n as u64))
    });
    BodyExt::boxed(StreamBody::new(frames))
}

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    conn: usize,
    shared: Arc<Shared>,
    activity: Arc<Activity>,
) -> Result<Response<GuardedBody>, Infallible> {
    let received = activity.received.fetch_add(1, Ordering::SeqCst) + 1;
    if shared.config.goaway_after == Some(received) {
        activity.recycle.notify_one();
    }
    let guard = InflightGuard::new(activity, shared.clone());
    shared.seen.lock().unwrap().push(RequestSeen {
        method: req.method().clone(),
        uri: req.uri().clone(),
        version: req.version(),
        headers: req.headers().clone(),
        conn,
        peer,
    });
    shared.bump(&shared.counters.requests);
    let content_length = req.headers().get(CONTENT_LENGTH).cloned();
    let config = &shared.config;
    if !config.delay.is_zero() {
        tokio::time::sleep(config.delay).await;
    }
    let mut resp = match &config.reply {
        Reply::Fixed { status, body } => {
            // Read the body so the connection stays reusable.
            let _ = req.into_body().collect().await;
            let mut resp = Response::new(full(body.clone()));
            *resp.status_mut() = *status;
            resp
        }
        Reply::Early { status, body } => {
            let mut resp = Response::new(full(body.clone()));
            *resp.status_mut() = *status;
            resp
        }
        Reply::Echo => {
            // Wait for the first body frame before answering, so that an
            // `Expect: 100-continue` client gets its 100 before the 200.
            let mut body = req.into_body();
            let first = body.frame().await;
            let first = futures_util::stream::iter(first.map(|f| f.map_err(BoxError::from)));
            let rest = http_body_util::BodyStream::new(body.map_err(BoxError::from));
            let mut resp = Response::new(BodyExt::boxed(StreamBody::new(first.chain(rest))));
            if let Some(len) = content_length {
                resp.headers_mut().insert(CONTENT_LENGTH, len);
            }
            resp
        }
        Reply::Stream {
            total,
            chunk,
            interval,
        } => {
            let mut resp = Response::new(pattern_body(*total, *chunk, *interval));
            resp.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(*total));
            resp
        }
        Reply::Never => std::future::pending::<Response<OriginBody>>().await,
        Reply::Custom(handler) => handler(req).await,
    };
    for (name, value) in &config.headers {
        resp.headers_mut().append(name.clone(), value.clone());
    }
    Ok(resp.map(|inner| GuardedBody {
        inner,
        _guard: guard,
    }))
}
