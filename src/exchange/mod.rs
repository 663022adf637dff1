//! `Exchange`: one request's account, from head received to last byte sent,
//! and the body wrappers that keep it (`Logged` on the response, `Counted`
//! and `ContinueGate` on the request). Logs exactly once whatever happens:
//! when the response body ends, or from `Drop` (499 if the client left
//! first). Every request, proxied, refused, admin or CONNECT, gets one.

mod body;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::Instant;

pub use self::body::{BodyFault, BodyTimedOut, ContinueGate, Counted, GateOpener};
use crate::accesslog::{AccessLog, Record};
use crate::body::{BoxError, ProxyBody};
use crate::error::{ProxyError, error_response};
use crate::metrics::Metrics;
use crate::rewrite::{self, CHOCON_ID};
use crate::scope::CredentialScope;
use crate::upstream::{OriginInUse, Timing};

/// Facts about the client connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address (from the PROXY header or a trusted
    /// `X-Forwarded-For`, when a balancer is in between).
    pub peer: SocketAddr,
    /// The port the request arrived on (for the Host port rule).
    pub local_port: u16,
    /// The balancer, when `peer` is a client it speaks for. Shared: this
    /// is copied into every request's record, and held by every idle
    /// connection's task, where a `Via` inline would cost ~90 bytes.
    pub via: Option<Arc<crate::identity::Via>>,
    /// What the connection holds while it is open (`None` in tests): a
    /// CONNECT tunnel, which outlives the connection's task, keeps it too.
    pub hold: Option<Arc<ConnHold>>,
}

/// What an open client connection holds: its `--max-client-conns` slot and
/// its place in `ccnproxy_client_connections`. Both are given back when the
/// last holder drops it: the connection's task, or the CONNECT tunnel it
/// became (hyper hands the socket over and ends the connection's task).
pub struct ConnHold {
    _slot: tokio::sync::OwnedSemaphorePermit,
    _open: crate::metrics::ClientConnection,
}

impl ConnHold {
    /// Holds `slot` and `open` until dropped.
    pub fn new(
        slot: tokio::sync::OwnedSemaphorePermit,
        open: crate::metrics::ClientConnection,
    ) -> Self {
        ConnHold {
            _slot: slot,
            _open: open,
        }
    }
}

impl std::fmt::Debug for ConnHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnHold")
    }
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
    /// Reading the client's body failed (it went away mid-upload) or was
    /// cut (it stalled past `body_timeout`).
    client_body: Arc<BodyFault>,
    /// `--body-timeout` for the client's body (`None`: no limit).
    body_timeout: Option<Duration>,
    upstream_started: Option<Instant>,
    /// The origin entry the request went through: its series count the
    /// request, and holding it keeps the origin from being removed until
    /// the request is accounted for (metrics, then the log line).
    origin: Option<OriginInUse>,
    done: bool,
}

impl Exchange {
    /// Opens the account of `req` as it arrives: copies the headers the
    /// access log and the metrics read, and gives the request its id.
    pub fn start<B>(
        log: &AccessLog,
        metrics: &Arc<Metrics>,
        info: ConnInfo,
        req: &Request<B>,
    ) -> Self {
        let headers = req.headers();
        let mut wanted = HeaderMap::new();
        copy_headers(
            headers,
            log.request_headers(),
            metrics.request_headers(),
            &mut wanted,
        );
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
            log: log.clone(),
            metrics: metrics.clone(),
            record: Record {
                received: SystemTime::now(),
                duration: Duration::ZERO,
                client: info.peer,
                via: info.via,
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
                verified: None,
                error: None,
            },
            request_id,
            started: Instant::now(),
            received: Arc::new(AtomicU64::new(0)),
            client_body: Arc::new(BodyFault::default()),
            body_timeout: None,
            upstream_started: None,
            origin: None,
            done: false,
        }
    }

    /// Sends `resp` to the client; the record is written when its body ends.
    pub fn respond(mut self, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        self.record.status = resp.status().as_u16();
        copy_headers(
            resp.headers(),
            self.log.response_headers(),
            &[],
            &mut self.record.response_headers,
        );
        let (parts, inner) = resp.into_parts();
        let body = Logged {
            inner,
            sent: 0,
            exchange: Some(self),
        };
        Response::from_parts(parts, body.boxed_unsync())
    }

    /// Answers with the proxy's own response for `err`; the record keeps its
    /// one-line reason. What failed after the client broke off its upload is
    /// the client's doing (499), whatever the origin said.
    pub fn respond_error(mut self, err: ProxyError) -> Response<ProxyBody> {
        let err = if self.client_body.timed_out() {
            ProxyError::BodyTimeout(self.body_timeout.unwrap_or_default())
        } else if self.client_body.failed() {
            ProxyError::ClientGone(Box::new(err))
        } else {
            err
        };
        let mut resp = error_response(&err);
        self.record.error = Some(err.reason());
        resp.headers_mut()
            .insert(&CHOCON_ID, self.request_id.clone());
        self.respond(resp)
    }

    /// The client's request body, counted into this exchange (bytes read,
    /// and whether reading it failed or stalled past the body timeout).
    pub fn count_body<B>(&self, body: B) -> Counted<B> {
        Counted::new(
            body,
            self.received.clone(),
            self.client_body.clone(),
            self.body_timeout,
        )
    }

    /// Sets the longest wait between reads of the client's body
    /// (`--body-timeout`); before `count_body`.
    pub fn set_body_timeout(&mut self, limit: Duration) {
        self.body_timeout = Some(limit);
    }

    /// The origin answered: its timing, and when the upstream exchange began
    /// (the total upstream time runs until the response body ends).
    pub fn upstream_answered(&mut self, started: Instant, timing: Timing) {
        self.upstream_started = Some(started);
        self.record.upstream = Some(timing);
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
        let series = self.origin.as_ref().map(|entry| &*entry.series);
        self.metrics.observe(&record, series);
        self.log.log(record);
        self.origin = None;
    }

    /// The request goes through `entry`: it is counted in the entry's
    /// series, which it holds until then.
    pub fn set_origin(&mut self, entry: OriginInUse) {
        self.origin = Some(entry);
    }

    /// Marks the exchange as abandoned by the client.
    fn abandon(&mut self, bytes_sent: u64) {
        if self.done {
            return;
        }
        self.record.status = 499;
        if self.record.error.is_none() {
            self.record.error = Some(crate::error::reason::CLIENT_WENT_AWAY.to_owned());
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

/// A message with at most this many header names is scanned once for the
/// wanted names; a larger one is looked up name by name.
const SCAN_HEADERS: usize = 16;

/// Appends to `to` every value of `from` whose name is in `names` or
/// `more`, each name's values in their order (what the access log and the
/// metrics read is by name, so the order across names does not matter).
/// The names of a short message are scanned once, which costs less than
/// hashing each wanted name.
fn copy_headers(
    from: &HeaderMap,
    names: &[header::HeaderName],
    more: &[header::HeaderName],
    to: &mut HeaderMap,
) {
    if names.is_empty() && more.is_empty() {
        return;
    }
    let mut copy = |name: &header::HeaderName| {
        for value in from.get_all(name) {
            to.append(name.clone(), value.clone());
        }
    };
    if from.keys_len() <= SCAN_HEADERS {
        // Only a name that is there is looked up.
        for name in from.keys() {
            if names.contains(name) || more.contains(name) {
                copy(name);
            }
        }
        return;
    }
    for (i, name) in names.iter().chain(more).enumerate() {
        // A name both lists want is copied once.
        if !names
            .iter()
            .chain(more)
            .take(i)
            .any(|earlier| earlier == name)
        {
            copy(name);
        }
    }
}

/// Writes the access-log line of a request hyper refused before the
/// request path saw it (malformed or oversized head): hyper has already
/// answered it with `status`.
#[allow(clippy::expect_used, reason = "`-` is a constant token")]
pub fn log_rejected(
    log: &AccessLog,
    metrics: &Metrics,
    info: ConnInfo,
    status: u16,
    reason: String,
) {
    let mut record = empty_record();
    record.received = SystemTime::now();
    record.client = info.peer;
    record.via = info.via;
    record.local_port = info.local_port;
    record.method = http::Method::from_bytes(b"-").expect("- is a valid method token");
    record.uri = http::Uri::from_static("*");
    record.status = status;
    record.request_id =
        String::from_utf8_lossy(rewrite::request_id(&HeaderMap::new()).as_bytes()).into_owned();
    record.error = Some(reason);
    metrics.observe(&record, None);
    log.log(record);
}

/// A record with nothing in it (what a finished exchange leaves behind).
pub(crate) fn empty_record() -> Record {
    Record {
        received: SystemTime::UNIX_EPOCH,
        duration: Duration::ZERO,
        client: SocketAddr::from(([0, 0, 0, 0], 0)),
        via: None,
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
        verified: None,
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
                    ex.record.error = Some(crate::error::reason::body_failed(err.as_ref()));
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

#[cfg(test)]
pub(crate) mod tests;
