//! The request path: route → policy → rewrite → (sign) → upstream →
//! response, and exactly one access-log record per request whatever happens
//! (an `Exchange` logs itself when dropped, as 499 if the client left first).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::accesslog::{AccessLog, Record};
use crate::admin::Admin;
use crate::body::{self, BoxError, ProxyBody};
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::policy::{Policy, PolicyError};
use crate::ratelimit::RateLimiter;
use crate::rewrite::{self, CHOCON_ID, CHOCON_VER};
use crate::route::{Mode, Origin, Route, Router};
use crate::scope::CredentialScope;
use crate::sign::Signer;
use crate::upstream::{Timing, Upstream};

/// Facts about the client connection a request arrived on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The port the request arrived on (for the Host port rule).
    pub local_port: u16,
}

/// Everything the request path needs, shared by all connections.
pub struct Service {
    /// Routing table.
    pub router: Router,
    /// Host patterns and address guard.
    pub policy: Arc<Policy>,
    /// The pools.
    pub upstream: Arc<Upstream>,
    /// `--sign`, when on.
    pub signer: Option<Arc<Signer>>,
    /// Access log.
    pub log: AccessLog,
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// The proxy's own endpoints.
    pub admin: Admin,
    /// Per-client request budget (`--rate-limit`), when on.
    pub limiter: Option<RateLimiter>,
    /// Request-target length limit.
    pub max_uri_bytes: usize,
    /// CONNECT tunnels give up after this much idle time.
    pub tunnel_idle_timeout: Duration,
    /// CONNECT: time allowed to reach the target.
    pub connect_timeout: Duration,
    /// Turns true when shutdown's grace time is over: tunnels close.
    pub stop_tunnels: tokio::sync::watch::Receiver<bool>,
}

impl Service {
    /// Handles one request; never fails (errors become responses).
    pub async fn handle(
        self: Arc<Self>,
        info: ConnInfo,
        mut req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let mut ex = Exchange::start(&self, info, &req);
        let request_id = ex.request_id.clone();
        let route =
            if req.version() == http::Version::HTTP_2 && req.method() != http::Method::CONNECT {
                // h2c: `:authority` plays the part of Host; the URI hyper built from
                // the pseudo-headers is not a forward-proxy target.
                let authority = req.uri().authority().map(|a| a.as_str().to_owned());
                let host = req
                    .headers()
                    .get(header::HOST)
                    .map(|h| h.as_bytes().to_vec())
                    .or(authority.map(String::into_bytes));
                let path: http::Uri = req
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .parse()
                    .unwrap_or_default();
                self.router
                    .route(req.method(), &path, host.as_deref(), info.local_port)
            } else {
                self.router.route(
                    req.method(),
                    req.uri(),
                    req.headers().get(header::HOST).map(|h| h.as_bytes()),
                    info.local_port,
                )
            };
        // The budget is spent before any upstream work; the proxy's own
        // endpoints (and unroutable requests) are exempt.
        if matches!(route, Ok(Route::Proxy { .. } | Route::Connect { .. }))
            && let Err(after) = self.admit(&ex.record)
        {
            let err = ProxyError::RateLimited(after);
            let mut resp = error_response(&err);
            ex.record.error = Some(err.reason());
            resp.headers_mut().insert(&CHOCON_ID, request_id);
            return ex.respond(resp);
        }
        let route = match check_framing(req.headers()) {
            Ok(()) => route.map_err(ProxyError::Route),
            Err(err) => Err(err),
        };
        let outcome = match route {
            Err(err) => Err(err),
            Ok(Route::Admin) => self
                .admin
                .serve(req.uri())
                .ok_or_else(|| ProxyError::NoRoute {
                    host: ex.record.host.clone(),
                    path: req.uri().path().to_owned(),
                }),
            Ok(Route::Connect { host, port }) => {
                return crate::tunnel::start(&self, ex, &mut req, host, port).await;
            }
            Ok(Route::Proxy { origin, mode }) => self.proxy(&mut ex, origin, mode, req).await,
        };
        let mut resp = match outcome {
            Ok(resp) => resp,
            Err(err) => {
                let err = if ex.client_body_failed.load(Ordering::Relaxed) {
                    ProxyError::ClientGone(Box::new(err))
                } else {
                    err
                };
                let resp = error_response(&err);
                ex.record.error = Some(err.reason());
                resp
            }
        };
        resp.headers_mut().insert(&CHOCON_ID, request_id);
        ex.respond(resp)
    }

    /// `--rate-limit`: takes one request from the client's budget, keyed
    /// like the per-client metrics.
    fn admit(&self, record: &Record) -> Result<(), Duration> {
        match &self.limiter {
            Some(limiter) => limiter.check(&self.metrics.client_key(record)),
            None => Ok(()),
        }
    }

    async fn proxy(
        &self,
        ex: &mut Exchange,
        origin: Origin,
        mode: Mode,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        ex.record.origin = Some(origin.to_string());
        if req.headers().contains_key(&CHOCON_VER) {
            return Err(PolicyError::Loop.into());
        }
        // `--upstream` was named by the operator: no host pattern needed (the
        // address guard still applies when it is resolved).
        if mode != Mode::Upstream {
            self.policy.check_host(&origin.host)?;
        }
        if req.uri().path_and_query().map_or(0, |p| p.as_str().len()) > self.max_uri_bytes {
            return Err(ProxyError::UriTooLong(self.max_uri_bytes));
        }

        let (mut parts, incoming) = req.into_parts();
        rewrite::strip_hop_by_hop(&mut parts.headers);
        // Host mode names the target in Host; the other modes keep the
        // client's Host (it is signed), or its `:authority` when it spoke h2c.
        let kept = match mode {
            Mode::Host => None,
            _ => parts.headers.get(header::HOST).cloned().or_else(|| {
                ex.record
                    .uri
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            }),
        };
        let host = kept.unwrap_or_else(|| {
            HeaderValue::from_str(&origin.authority())
                .expect("a validated host is a valid header value")
        });
        parts.headers.insert(header::HOST, host);
        parts.headers.insert(&CHOCON_VER, rewrite::version_value());
        parts.headers.insert(&CHOCON_ID, ex.request_id.clone());
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = path
            .parse()
            .expect("a path taken from a valid URI parses again");

        let expects_continue = parts
            .headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let counted = Counted {
            inner: incoming,
            count: ex.received.clone(),
            failed: ex.client_body_failed.clone(),
        };
        let (body, gate) = if expects_continue && !counted.is_end_stream() {
            let (gate, opener) = ContinueGate::new(counted);
            (gate.boxed_unsync(), Some(opener))
        } else {
            (counted.boxed_unsync(), None)
        };
        let mut upstream_req = Request::from_parts(parts, body);
        if let Some(opener) = gate {
            opener.attach(&mut upstream_req);
        }
        if let Some(signer) = &self.signer
            && signer.applies_to(&origin)
        {
            upstream_req = signer.sign(upstream_req, &origin).await?;
        }

        let upstream_started = Instant::now();
        let (resp, timing) = self.upstream.send(&origin, upstream_req).await?;
        let (mut parts, body) = resp.into_parts();
        if parts.headers.contains_key(header::TRANSFER_ENCODING) {
            // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, and an
            // intermediary must drop the latter before forwarding.
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        rewrite::strip_hop_by_hop(&mut parts.headers);
        ex.upstream_started = Some(upstream_started);
        ex.record.upstream = Some(timing);
        Ok(Response::from_parts(
            parts,
            body.map_err(|e| Box::new(e) as BoxError).boxed_unsync(),
        ))
    }
}

/// Refuses request heads whose meaning a second parser could read
/// differently: several `Host` headers. (Both `Content-Length` and
/// `Transfer-Encoding` never get here: hyper lets chunked win, drops
/// `Content-Length` and closes the connection afterwards, RFC 9112 §6.3.)
fn check_framing(headers: &HeaderMap) -> Result<(), ProxyError> {
    if headers.get_all(header::HOST).iter().nth(1).is_some() {
        return Err(ProxyError::BadFraming("more than one Host header"));
    }
    Ok(())
}

impl Service {
    /// Writes the access-log line of a request hyper refused before the
    /// request path saw it (malformed or oversized head): hyper has already
    /// answered it with `status`.
    pub fn log_rejected(&self, info: ConnInfo, status: u16, reason: String) {
        let mut record = empty_record();
        record.received = SystemTime::now();
        record.client = info.peer;
        record.local_port = info.local_port;
        record.method = http::Method::from_bytes(b"-").expect("- is a valid method token");
        record.uri = http::Uri::from_static("*");
        record.status = status;
        record.request_id =
            String::from_utf8_lossy(rewrite::request_id(&HeaderMap::new()).as_bytes()).into_owned();
        record.error = Some(reason);
        self.metrics.observe(&record);
        self.log.log(record);
    }
}

/// A response the proxy makes itself: status, `text/plain`, one line (the
/// 400 for a missing route adds the Host convention).
pub fn error_response(err: &ProxyError) -> Response<ProxyBody> {
    let status = err.status();
    let mut text = format!(
        "{} {}: {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        err.reason()
    );
    if matches!(err, ProxyError::Route(_) | ProxyError::NoRoute { .. }) {
        text.push('\n');
        text.push_str(crate::error::HOST_CONVENTION);
    }
    let mut resp = Response::new(body::full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let ProxyError::RateLimited(after) = err {
        let secs = after.as_secs().max(1);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// One request's account, from head received to last byte sent. Logs
/// exactly once: when the response body ends, or when dropped (the client
/// went away, status 499).
pub struct Exchange {
    log: AccessLog,
    metrics: Arc<Metrics>,
    /// The record being filled in.
    pub record: Record,
    /// This request's id.
    pub request_id: HeaderValue,
    started: Instant,
    /// Request body bytes read so far.
    pub received: Arc<AtomicU64>,
    /// Reading the client's body failed (it went away mid-upload).
    client_body_failed: Arc<AtomicBool>,
    upstream_started: Option<Instant>,
    response_headers: Vec<header::HeaderName>,
    done: bool,
}

impl Exchange {
    fn start(service: &Service, info: ConnInfo, req: &Request<Incoming>) -> Self {
        let headers = req.headers();
        let mut wanted = HeaderMap::new();
        let names = service.log.request_headers().iter();
        for name in names.chain(service.metrics.request_headers()) {
            if wanted.contains_key(name) {
                continue;
            }
            for v in headers.get_all(name) {
                wanted.append(name.clone(), v.clone());
            }
        }
        let host = match headers.get(header::HOST) {
            Some(h) => String::from_utf8_lossy(h.as_bytes()).into_owned(),
            None => req
                .uri()
                .authority()
                .map(|a| a.to_string())
                .unwrap_or_default(),
        };
        let scope = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| CredentialScope::from_authorization(v.as_bytes()));
        let request_id = rewrite::request_id(headers);
        Exchange {
            log: service.log.clone(),
            metrics: service.metrics.clone(),
            record: Record {
                received: SystemTime::now(),
                duration: Duration::ZERO,
                client: info.peer,
                local_port: info.local_port,
                method: req.method().clone(),
                uri: req.uri().clone(),
                version: req.version(),
                host,
                status: 0,
                bytes_sent: 0,
                bytes_received: 0,
                request_headers: wanted,
                response_headers: HeaderMap::new(),
                request_id: String::from_utf8_lossy(request_id.as_bytes()).into_owned(),
                origin: None,
                upstream: None,
                scope,
                error: None,
            },
            request_id,
            started: Instant::now(),
            received: Arc::new(AtomicU64::new(0)),
            client_body_failed: Arc::new(AtomicBool::new(false)),
            upstream_started: None,
            response_headers: service.log.response_headers().to_vec(),
            done: false,
        }
    }

    /// Sends `resp` to the client; the record is written when its body ends.
    pub fn respond(mut self, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        self.record.status = resp.status().as_u16();
        let headers = resp.headers();
        for name in &self.response_headers {
            for v in headers.get_all(name) {
                self.record.response_headers.append(name.clone(), v.clone());
            }
        }
        let (parts, inner) = resp.into_parts();
        let body = Logged {
            inner,
            sent: 0,
            exchange: Some(self),
        };
        Response::from_parts(parts, body.boxed_unsync())
    }

    /// Writes the record now.
    pub fn finish(mut self, bytes_sent: u64, upstream_end: Option<Instant>) {
        self.complete(bytes_sent, upstream_end);
    }

    fn complete(&mut self, bytes_sent: u64, upstream_end: Option<Instant>) {
        if self.done {
            return;
        }
        self.done = true;
        let now = Instant::now();
        self.record.duration = now.duration_since(self.started);
        self.record.bytes_sent = bytes_sent;
        self.record.bytes_received = self.received.load(Ordering::Relaxed);
        if let (Some(t), Some(start)) = (self.record.upstream.as_mut(), self.upstream_started) {
            t.total = upstream_end.unwrap_or(now).duration_since(start);
        }
        let record = std::mem::replace(&mut self.record, empty_record());
        self.metrics.observe(&record);
        self.log.log(record);
    }

    /// Marks the exchange as abandoned by the client.
    fn abandon(&mut self, bytes_sent: u64) {
        if self.done {
            return;
        }
        self.record.status = 499;
        if self.record.error.is_none() {
            self.record.error =
                Some("client went away before the response was complete".to_owned());
        }
        self.complete(bytes_sent, None);
    }

    /// Upstream timing so far (for tunnels and tests).
    pub fn timing_mut(&mut self) -> &mut Option<Timing> {
        &mut self.record.upstream
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // Dropped before any response: the client left while we waited
        // upstream; the upstream request is cancelled with this future.
        self.abandon(0);
    }
}

fn empty_record() -> Record {
    Record {
        received: SystemTime::UNIX_EPOCH,
        duration: Duration::ZERO,
        client: SocketAddr::from(([0, 0, 0, 0], 0)),
        local_port: 0,
        method: http::Method::GET,
        uri: http::Uri::from_static("/"),
        version: http::Version::HTTP_11,
        host: String::new(),
        status: 0,
        bytes_sent: 0,
        bytes_received: 0,
        request_headers: HeaderMap::new(),
        response_headers: HeaderMap::new(),
        request_id: String::new(),
        origin: None,
        upstream: None,
        scope: None,
        error: None,
    }
}

pin_project_lite::pin_project! {
    /// The response body on its way to the client: counts bytes and writes
    /// the access-log record when it ends (or 499 when dropped early).
    struct Logged {
        #[pin]
        inner: ProxyBody,
        sent: u64,
        exchange: Option<Exchange>,
    }

    impl PinnedDrop for Logged {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(mut ex) = this.exchange.take() {
                if this.inner.is_end_stream() {
                    ex.finish(*this.sent, Some(Instant::now()));
                } else {
                    ex.abandon(*this.sent);
                }
            }
        }
    }
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.sent += data.len() as u64;
                }
                // hyper stops polling a body that says it has ended.
                if this.inner.is_end_stream()
                    && let Some(ex) = this.exchange.take()
                {
                    ex.finish(*this.sent, Some(Instant::now()));
                }
            }
            Poll::Ready(None) => {
                if let Some(ex) = this.exchange.take() {
                    ex.finish(*this.sent, Some(Instant::now()));
                }
            }
            Poll::Ready(Some(Err(err))) => {
                if let Some(mut ex) = this.exchange.take() {
                    let reason = format!(
                        "response body from origin failed: {}",
                        crate::error::one_line(err.as_ref())
                    );
                    ex.record.error = Some(reason);
                    ex.finish(*this.sent, Some(Instant::now()));
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// The client's request body, counted.
    struct Counted {
        #[pin]
        inner: Incoming,
        count: Arc<AtomicU64>,
        failed: Arc<AtomicBool>,
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.count.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                // The client broke off its upload: whatever fails upstream
                // because of it is the client's doing (499), not the origin's.
                this.failed.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How long to wait for the origin's `100 Continue` before sending the body
/// anyway (RFC 9110 §10.1.1 lets a client stop waiting; HTTP/2 origins and
/// some HTTP/1.1 ones never send it).
const CONTINUE_WAIT: Duration = Duration::from_secs(1);

pin_project_lite::pin_project! {
    /// `Expect: 100-continue` end to end: the client's body is not read (so
    /// hyper does not send the client `100 Continue`) until the origin says
    /// `100 Continue`, or `CONTINUE_WAIT` passes. An origin that answers early
    /// (e.g. 403) is relayed without the body ever being asked for.
    struct ContinueGate<B> {
        #[pin]
        inner: B,
        #[pin]
        open: tokio::sync::futures::OwnedNotified,
        #[pin]
        fallback: tokio::time::Sleep,
        is_open: bool,
    }
}

/// Opens a `ContinueGate` when the origin sends `100 Continue`.
struct GateOpener(Arc<tokio::sync::Notify>);

impl<B> ContinueGate<B> {
    fn new(inner: B) -> (Self, GateOpener) {
        let notify = Arc::new(tokio::sync::Notify::new());
        let open = notify.clone().notified_owned();
        let gate = ContinueGate {
            inner,
            open,
            fallback: tokio::time::sleep(CONTINUE_WAIT),
            is_open: false,
        };
        (gate, GateOpener(notify))
    }
}

impl GateOpener {
    fn attach<T>(self, req: &mut Request<T>) {
        let notify = self.0;
        req.extensions_mut()
            .insert(body::ContinueSignal(notify.clone()));
        hyper::ext::on_informational(req, move |resp| {
            if resp.status() == StatusCode::CONTINUE {
                notify.notify_one();
            }
        });
    }
}

impl<B: Body<Data = Bytes, Error = BoxError>> Body for ContinueGate<B> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if !*this.is_open {
            let opened = this.open.poll(cx).is_ready() || this.fallback.poll(cx).is_ready();
            if !opened {
                return Poll::Pending;
            }
            *this.is_open = true;
        }
        this.inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
