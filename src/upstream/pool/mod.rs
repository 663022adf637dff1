//! The per-origin pool.
//!
//! States of a connection: *connecting* (counted on its address, not yet
//! usable; the request that opened it waits for it) → *busy* (leased: an
//! HTTP/1.1 connection carries one request, an HTTP/2 one up to the
//! origin's `SETTINGS_MAX_CONCURRENT_STREAMS`) → *idle* (HTTP/1.1 only, at
//! most `-c` kept, most recently used first) → *closed* (origin closed it,
//! idle or lifetime timeout, its address left the DNS answer, or a request on
//! it failed or timed out). Per address, open = idle + busy + connecting. A
//! request that finds no capacity *waits* (FIFO through `Notify`) up to
//! `--pool-wait-timeout`, then gets 503; whatever frees capacity wakes it.
//!
//! DNS: the answer is kept until its TTL runs out, then refreshed in the
//! background while the old one serves. Addresses that leave the answer are
//! *draining*: no new requests; idle connections close at once, busy ones
//! when they finish. Every address of every answer passes the address guard
//! first; one refused address refuses the origin (DNS rebinding).
//!
//! New connections go to the address with the fewest connections, then the
//! fewest outstanding requests, ties broken at random, so load spreads over
//! every address the endpoint publishes.
//!
//! Files: `state.rs` is the synchronous state machine (every decision above,
//! with `now` passed in; property-tested in `state_tests.rs`), `lease.rs` the
//! handles and leases it deals in; this file is the async layer around it
//! (checkout, waiting, connect, send and retry); `dns_answer.rs` keeps the DNS
//! answer fresh; `request_form.rs` shapes requests for h1/h2; `retry.rs`
//! decides whether a failed request may be sent again; `body.rs` holds the
//! body wrappers.

mod body;
mod dns_answer;
pub mod idle_learning;
mod lease;
mod race;
mod replay;
mod request_form;
pub mod retry;
pub mod state;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::client::conn::{http1, http2};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

pub use body::{DoneSignal, UpstreamBody};
pub use state::PoolStats;

use super::conn::{ClosedAt, ConnSettings};
use super::dns::Dns;
use super::goaway::{Gate, Pending};
use super::health::{Backoff, Health};
use super::{Protocol, Timing, UpstreamError};
use crate::body::ProxyBody;
use crate::buffer_budget::BufferBudget;
use crate::config::PoolConfig;
use crate::policy::Policy;
use crate::route::{Origin, Scheme};
use body::{LeaseGuard, TryResult, with_response_timeout};
use lease::{Handle, Lease};
use request_form::{Refusal, clone_head, is_retryable, rebuild, refusal, to_h1_form, to_h2_form};
use state::{Limits, Slots, Take, Wake};

/// What every pool shares.
pub struct Shared {
    /// Resolver.
    pub dns: Dns,
    /// Connection settings.
    pub conn: ConnSettings,
    /// Pool settings.
    pub config: PoolConfig,
    /// Address guard.
    pub policy: Arc<Policy>,
    /// A failed DNS refresh keeps the last answer this long.
    pub stale_grace: Duration,
    /// Connection ids.
    pub next_id: AtomicU64,
    /// `--max-buffered-bytes`, charged for replay copies of request bodies.
    pub buffered: Arc<BufferBudget>,
}

/// Counters of one pool, read by metrics.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections opened (TCP + TLS + HTTP handshakes done).
    pub handshakes: AtomicU64,
    /// Connection attempts that failed.
    pub connect_errors: AtomicU64,
    /// DNS lookups done for this origin.
    pub dns_refreshes: AtomicU64,
    /// Requests retried on a fresh connection.
    pub retries: AtomicU64,
    /// Requests that had to wait for capacity.
    pub queue_waits: AtomicU64,
    /// Requests that waited past `--pool-wait-timeout`.
    pub queue_timeouts: AtomicU64,
    /// Requests sent.
    pub requests: AtomicU64,
}

/// The pool's handle on an HTTP/1.1 connection.
pub(crate) struct H1Handle {
    sender: http1::SendRequest<ProxyBody>,
    /// When the driver saw the connection end.
    closed: ClosedAt,
}

impl Handle for H1Handle {
    fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    fn closed_at(&self) -> Option<Instant> {
        // hyper says closed a moment before the driver task notes the time.
        (self.closed.get().copied()).or_else(|| self.is_closed().then(Instant::now))
    }
}

/// The pool's handle on an HTTP/2 connection.
#[derive(Clone)]
pub(crate) struct H2Handle {
    sender: http2::SendRequest<ProxyBody>,
    max_streams: Arc<AtomicUsize>,
    /// Going away as soon as the origin's GOAWAY is read, or a stream
    /// learnt of it: the pool then gives the connection no new stream. Also
    /// counts the requests handed to hyper and not yet taken up, from
    /// which the reader holds a GOAWAY back (`upstream/goaway.rs`).
    gate: Arc<Gate>,
}

impl Handle for H2Handle {
    fn is_closed(&self) -> bool {
        self.gate.is_going_away() || self.sender.is_closed()
    }

    fn max_streams(&self) -> usize {
        self.max_streams.load(Ordering::Relaxed)
    }
}

/// Retries of one request at most. Only requests the origin did not process
/// are retried, so the bound only stops loops: an origin that refuses every
/// stream above a fixed count per connection (nginx's `keepalive_requests`
/// sends one GOAWAY with the last stream it processed) refuses up to a
/// connection's worth of streams in flight each time; docs/bench.md's nginx
/// check (GOAWAY recycling) shows how often a request meets that on several
/// connections in a row, and why 4.
pub const MAX_RETRIES: u32 = 4;
type PoolLease = Lease<H1Handle, H2Handle>;

/// One origin's connections.
pub struct Pool {
    origin: Origin,
    shared: Arc<Shared>,
    slots: Mutex<Slots<H1Handle, H2Handle>>,
    notify: Notify,
    /// The pending DNS refresh timer (`dns_answer.rs`); aborted when replaced
    /// and when the pool is dropped, so a removed origin leaves no task.
    refresh_timer: Mutex<Option<AbortHandle>>,
    /// Counters for metrics.
    pub counters: Counters,
}

impl Pool {
    /// An empty pool for `origin`.
    pub fn new(origin: Origin, shared: Arc<Shared>) -> Self {
        let protocol = (origin.scheme == Scheme::Http).then_some(Protocol::H1);
        let limits = Limits::from_config(&shared.config);
        let backoff = Backoff {
            first: shared.config.eject_backoff,
            max: shared.config.eject_backoff_max,
        };
        let health = Health::new(backoff, origin.to_string());
        Pool {
            origin,
            shared,
            slots: Mutex::new(Slots::new(limits, protocol, Instant::now()).with_health(health)),
            notify: Notify::new(),
            refresh_timer: Mutex::new(None),
            counters: Counters::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slots<H1Handle, H2Handle>> {
        // A panic while holding the lock leaves counts that are still usable.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self, wake: Wake) {
        match wake {
            Wake::None => {}
            Wake::One => self.notify.notify_one(),
            Wake::All => self.notify.notify_waiters(),
        }
    }

    /// Sends `req`. Retries, at most [`MAX_RETRIES`] times, what
    /// `retry::decide` allows: a request the origin cannot have processed
    /// (never left; refused by an HTTP/2 origin with `REFUSED_STREAM` or a
    /// GOAWAY above its stream: the connection's reader holds a GOAWAY back
    /// until hyper has taken up every request handed to it, so hyper never
    /// gives the connection's GOAWAY to a stream it has just opened; see
    /// `Gate`), and an idempotent request with a replayable body whose
    /// reused connection broke before any response byte (docs/pool.md).
    pub async fn send(
        self: &Arc<Self>,
        req: Request<ProxyBody>,
    ) -> Result<(Response<UpstreamBody>, Timing), UpstreamError> {
        let started = Instant::now();
        let mut timing = Timing::default();
        let mut fresh = false;
        let (mut req, replay) = replay::keep_copy(req, &self.shared.buffered).await;
        loop {
            let (mut held, reused, pending) = self.checkout(&mut timing, fresh).await?;
            let is_h2 = matches!(held.lease_mut(), Lease::H2(_));
            timing.addr = Some(held.lease_mut().addr());
            timing.reused = reused;
            timing.protocol = if is_h2 { Protocol::H2 } else { Protocol::H1 };
            if is_h2 {
                to_h2_form(&mut req, self.origin.scheme);
            } else {
                to_h1_form(&mut req);
            }
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            // A bodyless request, or one with a replay copy of its body,
            // can be rebuilt if it turns out that the origin never
            // processed it.
            let may_retry = timing.retries < MAX_RETRIES;
            let bodyless = req.body().is_end_stream();
            let head = (bodyless || replay.is_some()).then(|| clone_head(&req));
            let method = req.method().clone();
            let (body_done_tx, body_done_rx) = tokio::sync::oneshot::channel();
            let req_for_send = req.map(|b| {
                let body = DoneSignal::wrap(b, body_done_tx);
                let body = body.watched(pending.clone());
                body.boxed_unsync()
            });
            let sent_at = Instant::now();
            let fut = match held.lease_mut() {
                Lease::H1(c) => SendFut::H1(c.handle.sender.try_send_request(req_for_send)),
                Lease::H2(s) => SendFut::H2(s.handle.sender.try_send_request(req_for_send)),
            };
            let limit = self.shared.config.response_timeout;
            let mut err = match with_response_timeout(fut.run(), body_done_rx, limit).await {
                None => {
                    held.finish(false);
                    return Err(UpstreamError::Timeout(limit));
                }
                Some(Ok(resp)) => {
                    timing.header = sent_at.elapsed();
                    timing.total = started.elapsed();
                    if !is_h2 {
                        let keep_alive = resp
                            .headers()
                            .get("keep-alive")
                            .and_then(|v| idle_learning::keep_alive_timeout(v.as_bytes()));
                        self.lock()
                            .answered(timing.header, keep_alive, Instant::now());
                    }
                    let resp = resp.map(|body| UpstreamBody::new(body, held));
                    return Ok((resp, timing));
                }
                Some(Err(err)) => err,
            };
            drop(pending);
            let unsent = err.take_message();
            let refusal = refusal(err.error());
            // A GOAWAY error is the stream's own (it was refused) unless the
            // connection's reader had to give the GOAWAY to hyper with
            // requests still on their way to a stream (see `Gate`).
            let forced = match held.lease_mut() {
                Lease::H2(stream) => {
                    if unsent.is_some() || refusal == Some(Refusal::GoAway) {
                        // Going away: no new stream on it from now.
                        stream.handle.gate.go_away();
                    }
                    stream.handle.gate.was_forced()
                }
                Lease::H1(_) => false,
            };
            held.finish(false);
            let failure = retry::Failure {
                unsent: unsent.is_some(),
                refused: refusal.filter(|r| *r != Refusal::GoAway || !forced),
                goaway_unproven: refusal == Some(Refusal::GoAway) && forced,
                broke: is_retryable(err.error()),
                reused: reused && !fresh,
                method: &method,
                replayable: head.is_some(),
                retries_left: may_retry,
            };
            let Some(rule) = retry::decide(&failure) else {
                return Err(UpstreamError::Request(err.into_error()));
            };
            let again = match (rule.allows_retry(), unsent) {
                (false, _) => None,
                (true, Some(req)) => Some(req),
                (true, None) => head.map(|h| rebuild(h, replay.as_ref())),
            };
            let Some(again) = again else {
                tracing::debug!(origin = %self.origin, rule = rule.name(), error = err.error() as &dyn std::error::Error, "not sending a failed request again");
                return Err(UpstreamError::NotSentAgain {
                    rule,
                    source: err.into_error(),
                });
            };
            tracing::debug!(origin = %self.origin, rule = rule.name(), error = err.error() as &dyn std::error::Error, "retrying a request the origin did not process");
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            timing.retries += 1;
            timing.retry_rule = Some(rule);
            fresh = true;
            req = again;
        }
    }

    /// Finds or opens capacity for one request; true when it is reused.
    async fn checkout(
        self: &Arc<Self>,
        timing: &mut Timing,
        fresh: bool,
    ) -> Result<(LeaseGuard, bool, Option<Pending>), UpstreamError> {
        self.ensure_answer(timing).await?;
        let wait_started = Instant::now();
        let deadline = wait_started + self.shared.config.wait_timeout;
        let mut waited = false;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (take, wake) = self.lock().take(Instant::now(), fresh);
            self.wake(wake);
            if waited && !matches!(take, Take::Wait) {
                timing.queue = wait_started.elapsed();
            }
            match take {
                Take::Refused(refused) => return Err(UpstreamError::Refused(refused)),
                Take::Reuse(lease) => {
                    let mut held = LeaseGuard::new(lease, self.clone());
                    let pending = match held.lease_mut() {
                        Lease::H1(conn) => {
                            if conn.handle.sender.ready().await.is_err() {
                                // Closed by the origin while idle: never handed out.
                                continue;
                            }
                            None
                        }
                        Lease::H2(stream) => match stream.handle.gate.enter() {
                            Some(pending) => Some(pending),
                            // Its GOAWAY was read since the pool chose it.
                            None => continue,
                        },
                    };
                    return Ok((held, true, pending));
                }
                Take::Connect(ticket) => {
                    let mut held =
                        LeaseGuard::new(self.connect(ticket, timing).await?, self.clone());
                    let pending = match held.lease_mut() {
                        Lease::H1(_) => None,
                        Lease::H2(stream) => stream.handle.gate.enter(),
                    };
                    return Ok((held, false, pending));
                }
                Take::Wait => {
                    if !waited {
                        waited = true;
                        self.counters.queue_waits.fetch_add(1, Ordering::Relaxed);
                    }
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        self.counters.queue_timeouts.fetch_add(1, Ordering::Relaxed);
                        return Err(UpstreamError::PoolTimeout(self.shared.config.wait_timeout));
                    }
                }
            }
        }
    }

    /// Takes a lease back; `reusable` when its exchange completed cleanly.
    fn release(&self, lease: PoolLease, reusable: bool) {
        let wake = self.lock().release(lease, reusable, Instant::now());
        self.wake(wake);
    }

    /// Opens one connection ahead of traffic (prewarm) unless one is open.
    pub async fn warm(self: &Arc<Self>) -> Result<(), UpstreamError> {
        if !self.lock().claim_warm() {
            return Ok(());
        }
        let mut timing = Timing::default();
        let result = self.checkout(&mut timing, true).await;
        self.lock().warm_done();
        let (held, _, _) = result?;
        held.finish(true);
        Ok(())
    }

    /// Closes idle connections past their time; true when the pool holds
    /// nothing and has not been used for `unused`.
    pub fn sweep(&self, unused: Duration) -> bool {
        let (empty, wake) = self.lock().sweep(Instant::now(), unused);
        self.wake(wake);
        empty
    }

    /// A snapshot for metrics.
    pub fn stats(&self) -> PoolStats {
        self.lock().stats()
    }

    /// The origin this pool serves.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

enum SendFut<A, B> {
    H1(A),
    H2(B),
}

impl<A: Future<Output = TryResult>, B: Future<Output = TryResult>> SendFut<A, B> {
    async fn run(self) -> TryResult {
        match self {
            SendFut::H1(f) => f.await,
            SendFut::H2(f) => f.await,
        }
    }
}
