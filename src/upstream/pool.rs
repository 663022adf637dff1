//! The per-origin pool.
//!
//! States of a connection: *connecting* (counted, not yet usable) →
//! *busy* (leased: an HTTP/1.1 connection carries one request, an HTTP/2 one
//! up to the origin's `SETTINGS_MAX_CONCURRENT_STREAMS`) → *idle* (HTTP/1.1
//! only, at most `-c` kept, most recently used first) → *closed* (origin
//! closed it, idle or lifetime timeout, its address left the DNS answer, or a
//! request on it failed or timed out). A request that finds no capacity waits
//! (FIFO through `Notify`) up to `--pool-wait-timeout`, then gets 503.
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

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::conn::{self, ConnSettings, Sender};
use super::dns::{Answer, Dns};
use super::{Protocol, Timing, UpstreamError};
use crate::body::ProxyBody;
use crate::config::PoolConfig;
use crate::policy::Policy;
use crate::route::{Origin, Scheme};

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

/// A snapshot of one pool, for metrics and stats.
#[derive(Debug, Clone, Default)]
pub struct PoolStats {
    /// Open connections (HTTP/1.1 and HTTP/2, including connecting ones).
    pub open: usize,
    /// Idle HTTP/1.1 connections.
    pub idle: usize,
    /// Busy HTTP/1.1 connections.
    pub busy: usize,
    /// Open HTTP/2 connections.
    pub h2_conns: usize,
    /// HTTP/2 streams in flight.
    pub h2_streams: usize,
    /// Current addresses of the origin.
    pub addrs: Vec<SocketAddr>,
}

struct H1Conn {
    sender: http1::SendRequest<ProxyBody>,
    addr: SocketAddr,
    created: Instant,
    served: u64,
}

struct Idle {
    conn: H1Conn,
    since: Instant,
}

struct H2Conn {
    id: u64,
    sender: http2::SendRequest<ProxyBody>,
    max_streams: Arc<std::sync::atomic::AtomicUsize>,
    addr: SocketAddr,
    created: Instant,
    in_flight: usize,
    served: u64,
    idle_since: Instant,
}

#[derive(Default, Clone, Copy)]
struct Load {
    conns: usize,
    outstanding: usize,
}

struct State {
    answer: Option<Answer>,
    answered_at: Option<Instant>,
    refused: Option<crate::policy::PolicyError>,
    refreshing: bool,
    protocol: Option<Protocol>,
    load: HashMap<SocketAddr, Load>,
    current: HashSet<SocketAddr>,
    idle: Vec<Idle>,
    h1_open: usize,
    h2: Vec<H2Conn>,
    connecting: usize,
    last_used: Instant,
}

/// One origin's connections.
pub struct Pool {
    origin: Origin,
    shared: Arc<Shared>,
    state: Mutex<State>,
    notify: Notify,
    /// Counters for metrics.
    pub counters: Counters,
}

/// A connection (or HTTP/2 stream) handed to one request.
enum Lease {
    H1(H1Conn),
    H2 {
        id: u64,
        sender: http2::SendRequest<ProxyBody>,
        addr: SocketAddr,
    },
}

impl Lease {
    fn addr(&self) -> SocketAddr {
        match self {
            Lease::H1(c) => c.addr,
            Lease::H2 { addr, .. } => *addr,
        }
    }
}

/// A lease that goes back to the pool when dropped (as not reusable unless
/// `finish(true)` said otherwise), so a cancelled request never leaks a
/// connection or a stream count.
struct Held {
    lease: Option<Lease>,
    pool: Arc<Pool>,
}

impl Held {
    fn lease_mut(&mut self) -> &mut Lease {
        self.lease
            .as_mut()
            .expect("a held lease is present until finished")
    }

    fn finish(mut self, reusable: bool) {
        if let Some(lease) = self.lease.take() {
            self.pool.release(lease, reusable);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            self.pool.release(lease, false);
        }
    }
}

/// Undoes `start_connect`'s counting if the connect is abandoned midway.
struct Connecting<'a> {
    pool: &'a Pool,
    addr: SocketAddr,
    armed: bool,
}

impl Drop for Connecting<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.pool.connect_failed(self.addr);
        }
    }
}

enum Take {
    H1(H1Conn),
    H2(Lease),
    Connect(SocketAddr),
    Wait,
}

impl Pool {
    /// An empty pool for `origin`.
    pub fn new(origin: Origin, shared: Arc<Shared>) -> Self {
        let protocol = (origin.scheme == Scheme::Http).then_some(Protocol::H1);
        Pool {
            origin,
            shared,
            state: Mutex::new(State {
                answer: None,
                answered_at: None,
                refused: None,
                refreshing: false,
                protocol,
                load: HashMap::new(),
                current: HashSet::new(),
                idle: Vec::new(),
                h1_open: 0,
                h2: Vec::new(),
                connecting: 0,
                last_used: Instant::now(),
            }),
            notify: Notify::new(),
            counters: Counters::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves counts that are still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `req`; retries once on a fresh connection when a reused one
    /// failed before the request left (see DESIGN "Pool").
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<ProxyBody>,
    ) -> Result<(Response<UpstreamBody>, Timing), UpstreamError> {
        let started = Instant::now();
        let mut timing = Timing::default();
        let mut fresh = false;
        loop {
            let (mut held, reused) = self.checkout(&mut timing, fresh).await?;
            let is_h2 = matches!(held.lease_mut(), Lease::H2 { .. });
            timing.addr = Some(held.lease_mut().addr());
            timing.reused = reused;
            timing.protocol = if is_h2 { Protocol::H2 } else { Protocol::H1 };
            if is_h2 {
                to_h2_form(&mut req, self.origin.scheme);
            } else {
                to_h1_form(&mut req);
            }
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            // A bodyless request can be rebuilt from its head if the
            // connection turns out to be dead before any response byte.
            let head = (reused && !fresh && req.body().is_end_stream()).then(|| clone_head(&req));
            let (body_done_tx, body_done_rx) = tokio::sync::oneshot::channel();
            let req_for_send = req.map(|b| DoneSignal::wrap(b, body_done_tx).boxed_unsync());
            let sent_at = Instant::now();
            let fut = match held.lease_mut() {
                Lease::H1(c) => SendFut::H1(c.sender.try_send_request(req_for_send)),
                Lease::H2 { sender, .. } => SendFut::H2(sender.try_send_request(req_for_send)),
            };
            let result =
                with_response_timeout(fut.run(), body_done_rx, self.shared.config.response_timeout)
                    .await;
            match result {
                None => {
                    held.finish(false);
                    return Err(UpstreamError::Timeout(self.shared.config.response_timeout));
                }
                Some(Ok(resp)) => {
                    timing.header = sent_at.elapsed();
                    timing.total = started.elapsed();
                    let resp = resp.map(|body| UpstreamBody {
                        inner: body,
                        held: Some(held),
                    });
                    return Ok((resp, timing));
                }
                Some(Err(mut err)) => {
                    held.finish(false);
                    let recovered = err.take_message();
                    let recovered = recovered
                        .or_else(|| head.filter(|_| is_retryable(err.error())).map(rebuild));
                    match recovered {
                        Some(again) if reused && !fresh => {
                            tracing::debug!(origin = %self.origin, error = err.error() as &dyn std::error::Error, "retrying on a fresh connection");
                            self.counters.retries.fetch_add(1, Ordering::Relaxed);
                            timing.retries += 1;
                            fresh = true;
                            req = again;
                        }
                        _ => return Err(UpstreamError::Request(err.into_error())),
                    }
                }
            }
        }
    }

    /// Finds or opens capacity for one request.
    async fn checkout(
        self: &Arc<Self>,
        timing: &mut Timing,
        fresh: bool,
    ) -> Result<(Held, bool), UpstreamError> {
        self.ensure_answer(timing).await?;
        let wait_started = Instant::now();
        let deadline = wait_started + self.shared.config.wait_timeout;
        let mut waited = false;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let take = {
                let mut st = self.lock();
                if let Some(refused) = &st.refused {
                    return Err(UpstreamError::Refused(refused.clone()));
                }
                self.take(&mut st, fresh)
            };
            match take {
                Take::H1(conn) => {
                    let mut held = Held {
                        lease: Some(Lease::H1(conn)),
                        pool: self.clone(),
                    };
                    let Lease::H1(conn) = held.lease_mut() else {
                        unreachable!("an H1 lease was just made")
                    };
                    if conn.sender.ready().await.is_err() {
                        // Closed by the origin while idle: never handed out.
                        continue;
                    }
                    conn.served += 1;
                    timing.queue = if waited {
                        wait_started.elapsed()
                    } else {
                        Duration::ZERO
                    };
                    return Ok((held, true));
                }
                Take::H2(lease) => {
                    timing.queue = if waited {
                        wait_started.elapsed()
                    } else {
                        Duration::ZERO
                    };
                    return Ok((
                        Held {
                            lease: Some(lease),
                            pool: self.clone(),
                        },
                        true,
                    ));
                }
                Take::Connect(addr) => {
                    timing.queue = if waited {
                        wait_started.elapsed()
                    } else {
                        Duration::ZERO
                    };
                    let lease = self.connect(addr, timing).await?;
                    return Ok((
                        Held {
                            lease: Some(lease),
                            pool: self.clone(),
                        },
                        false,
                    ));
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

    /// Decides under the lock: an idle connection, a stream, a new
    /// connection, or wait.
    fn take(&self, st: &mut State, fresh: bool) -> Take {
        let now = Instant::now();
        st.last_used = now;
        self.prune(st, now);
        let cfg = &self.shared.config;
        if st.protocol != Some(Protocol::H1) {
            let best = st
                .h2
                .iter_mut()
                .filter(|c| c.in_flight < c.max_streams.load(Ordering::Relaxed).max(1))
                .min_by_key(|c| c.in_flight);
            if let Some(c) = best {
                c.in_flight += 1;
                c.served += 1;
                let lease = Lease::H2 {
                    id: c.id,
                    sender: c.sender.clone(),
                    addr: c.addr,
                };
                st.load.entry(c.addr).or_default().outstanding += 1;
                return Take::H2(lease);
            }
            if st.protocol == Some(Protocol::H2) {
                if st.h2.len() + st.connecting < cfg.h2_conns {
                    return self.start_connect(st);
                }
                return Take::Wait;
            }
        }
        if !fresh && !st.idle.is_empty() {
            // Most recently used first, but prefer the address with the
            // fewest requests in flight.
            let load = &st.load;
            let pick = (0..st.idle.len())
                .rev()
                .min_by_key(|&i| load.get(&st.idle[i].conn.addr).map_or(0, |l| l.outstanding))
                .expect("idle list is not empty");
            let idle = st.idle.remove(pick);
            st.load.entry(idle.conn.addr).or_default().outstanding += 1;
            return Take::H1(idle.conn);
        }
        if st.protocol.is_none() && st.connecting > 0 {
            // The first handshake tells whether this origin speaks h2; wait
            // for it rather than open a connection per request.
            return Take::Wait;
        }
        if cfg.max_conns_per_host == 0 || st.h1_open < cfg.max_conns_per_host {
            st.h1_open += 1;
            return self.start_connect(st);
        }
        Take::Wait
    }

    fn start_connect(&self, st: &mut State) -> Take {
        let addrs: Vec<SocketAddr> = st
            .answer
            .as_ref()
            .map(|a| a.addrs.clone())
            .unwrap_or_default();
        let key = |a: &SocketAddr| st.load.get(a).map_or((0, 0), |l| (l.conns, l.outstanding));
        let Some(best) = addrs.iter().map(key).min() else {
            return Take::Wait;
        };
        let ties: Vec<SocketAddr> = addrs.iter().copied().filter(|a| key(a) == best).collect();
        let addr = ties[fastrand::usize(..ties.len())];
        st.connecting += 1;
        let load = st.load.entry(addr).or_default();
        load.conns += 1;
        load.outstanding += 1;
        Take::Connect(addr)
    }

    /// Opens a connection counted by `start_connect` and leases it.
    async fn connect(
        self: &Arc<Self>,
        addr: SocketAddr,
        timing: &mut Timing,
    ) -> Result<Lease, UpstreamError> {
        let mut guard = Connecting {
            pool: self,
            addr,
            armed: true,
        };
        let opened = conn::open(&self.origin, addr, &self.shared.conn).await;
        let opened = match opened {
            Ok(o) => o,
            Err(err) => {
                self.counters.connect_errors.fetch_add(1, Ordering::Relaxed);
                return Err(UpstreamError::Connect(err));
            }
        };
        guard.armed = false;
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut st = self.lock();
        st.connecting -= 1;
        self.counters.handshakes.fetch_add(1, Ordering::Relaxed);
        timing.connect = opened.connect;
        timing.tls = opened.tls;
        let was = st.protocol.replace(opened.protocol);
        let lease = match opened.sender {
            Sender::H1(sender) => {
                if was == Some(Protocol::H2) {
                    st.h1_open += 1;
                }
                Lease::H1(H1Conn {
                    sender,
                    addr,
                    created: now,
                    served: 1,
                })
            }
            Sender::H2(sender) => {
                if was != Some(Protocol::H2) {
                    st.h1_open -= 1;
                }
                st.h2.push(H2Conn {
                    id,
                    sender: sender.clone(),
                    max_streams: opened.max_streams.clone(),
                    addr,
                    created: now,
                    in_flight: 1,
                    served: 1,
                    idle_since: now,
                });
                Lease::H2 { id, sender, addr }
            }
        };
        drop(st);
        // Waiters held back until the protocol was known may go now.
        self.notify.notify_waiters();
        Ok(lease)
    }

    /// Takes a lease back; `reusable` when its exchange completed cleanly.
    fn release(&self, lease: Lease, reusable: bool) {
        match lease {
            Lease::H1(conn) => {
                let now = Instant::now();
                let mut st = self.lock();
                if let Some(l) = st.load.get_mut(&conn.addr) {
                    l.outstanding = l.outstanding.saturating_sub(1);
                }
                let cfg = &self.shared.config;
                let keep = reusable
                    && !conn.sender.is_closed()
                    && st.current.contains(&conn.addr)
                    && now.duration_since(conn.created) < cfg.max_conn_lifetime
                    && st.idle.len() < cfg.keepalive_conns;
                if keep {
                    st.idle.push(Idle { conn, since: now });
                    drop(st);
                } else {
                    st.h1_open -= 1;
                    forget(&mut st.load, conn.addr, true, false);
                    drop(st);
                    drop(conn);
                }
                self.notify.notify_one();
            }
            Lease::H2 { id, addr, .. } => {
                let mut st = self.lock();
                if let Some(l) = st.load.get_mut(&addr) {
                    l.outstanding = l.outstanding.saturating_sub(1);
                }
                if let Some(c) = st.h2.iter_mut().find(|c| c.id == id) {
                    c.in_flight -= 1;
                    if c.in_flight == 0 {
                        c.idle_since = Instant::now();
                    }
                }
                drop(st);
                self.notify.notify_one();
            }
        }
    }

    /// Undoes the counting of a connect that failed or was abandoned.
    fn connect_failed(&self, addr: SocketAddr) {
        let mut st = self.lock();
        st.connecting -= 1;
        if st.protocol != Some(Protocol::H2) {
            st.h1_open -= 1;
        }
        forget(&mut st.load, addr, true, true);
        drop(st);
        self.notify.notify_waiters();
    }

    /// Drops idle connections that are closed, too old, idle too long or on
    /// a draining address, and HTTP/2 connections that can take no stream.
    fn prune(&self, st: &mut State, now: Instant) {
        let cfg = &self.shared.config;
        let mut closed = Vec::new();
        st.idle.retain(|i| {
            let keep = !i.conn.sender.is_closed()
                && st.current.contains(&i.conn.addr)
                && now.duration_since(i.since) < cfg.idle_timeout
                && now.duration_since(i.conn.created) < cfg.max_conn_lifetime;
            if !keep {
                closed.push(i.conn.addr);
            }
            keep
        });
        st.h1_open -= closed.len();
        for addr in closed {
            forget(&mut st.load, addr, true, false);
        }
        let mut gone = Vec::new();
        st.h2.retain(|c| {
            let usable = !c.sender.is_closed()
                && st.current.contains(&c.addr)
                && now.duration_since(c.created) < cfg.max_conn_lifetime
                && !(c.in_flight == 0 && now.duration_since(c.idle_since) >= cfg.idle_timeout);
            if !usable {
                gone.push(c.addr);
            }
            usable
        });
        // Streams still running on a removed connection finish on their own
        // clone of its sender; the connection closes after the last one.
        for addr in gone {
            forget(&mut st.load, addr, true, false);
        }
    }

    /// Makes sure there is a usable DNS answer; refreshes an expired one in
    /// the background.
    async fn ensure_answer(self: &Arc<Self>, timing: &mut Timing) -> Result<(), UpstreamError> {
        let now = Instant::now();
        let (inline, background) = {
            let mut st = self.lock();
            match &st.answer {
                None => (true, false),
                Some(a) if a.valid_until.is_some_and(|t| t <= now) && !st.refreshing => {
                    st.refreshing = true;
                    (false, true)
                }
                Some(_) => (false, false),
            }
        };
        if background {
            let pool = self.clone();
            tokio::spawn(async move { pool.refresh().await });
        }
        if inline {
            let started = Instant::now();
            self.counters.dns_refreshes.fetch_add(1, Ordering::Relaxed);
            let answer = self
                .shared
                .dns
                .resolve(&self.origin.host, self.origin.port)
                .await?;
            timing.dns = started.elapsed();
            self.apply(answer);
        }
        Ok(())
    }

    async fn refresh(self: Arc<Self>) {
        self.counters.dns_refreshes.fetch_add(1, Ordering::Relaxed);
        match self
            .shared
            .dns
            .resolve(&self.origin.host, self.origin.port)
            .await
        {
            Ok(answer) => self.apply(answer),
            Err(err) => {
                let mut st = self.lock();
                st.refreshing = false;
                let grace = self.shared.stale_grace;
                let fresh_enough = st.answered_at.is_some_and(|t| t.elapsed() < grace);
                if fresh_enough {
                    tracing::warn!(origin = %self.origin, error = &err as &dyn std::error::Error, "dns.refresh failed; keeping the last answer");
                    if let Some(a) = st.answer.as_mut() {
                        a.valid_until = Some(Instant::now() + Duration::from_secs(5).min(grace));
                    }
                } else {
                    tracing::warn!(origin = %self.origin, error = &err as &dyn std::error::Error, "dns.refresh failed; last answer too old, dropping it");
                    st.answer = None;
                }
            }
        }
    }

    /// Installs a new answer: guard every address, drain the ones that left.
    fn apply(&self, answer: Answer) {
        let refused = answer.addrs.iter().find_map(|a| {
            self.shared
                .policy
                .check_addr(&self.origin.host, a.ip())
                .err()
        });
        let mut st = self.lock();
        st.refreshing = false;
        st.answered_at = Some(Instant::now());
        let current: HashSet<SocketAddr> = if refused.is_some() {
            HashSet::new()
        } else {
            answer.addrs.iter().copied().collect()
        };
        if current != st.current {
            tracing::debug!(origin = %self.origin, addrs = ?answer.addrs, "dns.answer changed");
        }
        st.current = current;
        st.refused = refused;
        st.answer = Some(answer);
        let now = Instant::now();
        self.prune(&mut st, now);
        drop(st);
        self.notify.notify_waiters();
    }

    /// Opens one connection ahead of traffic (prewarm) unless one is open.
    pub async fn warm(self: &Arc<Self>) -> Result<(), UpstreamError> {
        {
            let st = self.lock();
            if st.h1_open + st.h2.len() > 0 {
                return Ok(());
            }
        }
        let mut timing = Timing::default();
        let (held, _) = self.checkout(&mut timing, true).await?;
        held.finish(true);
        Ok(())
    }

    /// Closes idle connections past their time; true when the pool holds
    /// nothing and has not been used for `unused`.
    pub fn sweep(&self, unused: Duration) -> bool {
        let now = Instant::now();
        let mut st = self.lock();
        self.prune(&mut st, now);
        st.h1_open == 0
            && st.h2.is_empty()
            && st.connecting == 0
            && now.duration_since(st.last_used) >= unused
    }

    /// A snapshot for metrics.
    pub fn stats(&self) -> PoolStats {
        let st = self.lock();
        let h2_streams = st.h2.iter().map(|c| c.in_flight).sum();
        PoolStats {
            open: st.h1_open + st.h2.len(),
            idle: st.idle.len(),
            busy: st.h1_open.saturating_sub(st.idle.len() + st.connecting),
            h2_conns: st.h2.len(),
            h2_streams,
            addrs: st
                .answer
                .as_ref()
                .map(|a| a.addrs.clone())
                .unwrap_or_default(),
        }
    }

    /// The origin this pool serves.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

/// Removes one connection (and, if `outstanding`, one request) from an
/// address's load.
fn forget(load: &mut HashMap<SocketAddr, Load>, addr: SocketAddr, conn: bool, outstanding: bool) {
    if let Some(l) = load.get_mut(&addr) {
        if conn {
            l.conns = l.conns.saturating_sub(1);
        }
        if outstanding {
            l.outstanding = l.outstanding.saturating_sub(1);
        }
    }
}

/// HTTP/2 wants an absolute URI (`:scheme`, `:authority`) and no `Host`.
fn to_h2_form(req: &mut Request<ProxyBody>, scheme: Scheme) {
    if let Some(signal) = req.extensions_mut().remove::<crate::body::ContinueSignal>() {
        // HTTP/2 origins do not answer `Expect: 100-continue`; send the body now.
        req.headers_mut().remove(http::header::EXPECT);
        signal.0.notify_one();
    }
    let Some(host) = req.headers_mut().remove(http::header::HOST) else {
        return;
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(host) = host.to_str() else { return };
    if let Ok(uri) = format!("{}://{host}{path}", scheme.as_str()).parse() {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = http::Version::HTTP_2;
}

/// HTTP/1.1 upstream: origin-form target and a `Host` header.
fn to_h1_form(req: &mut Request<ProxyBody>) {
    *req.version_mut() = http::Version::HTTP_11;
    if let Some(auth) = req.uri().authority().cloned() {
        if let Ok(v) = http::HeaderValue::from_str(auth.as_str()) {
            req.headers_mut().insert(http::header::HOST, v);
        }
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        if let Ok(uri) = path.parse() {
            *req.uri_mut() = uri;
        }
    }
}

/// The connection broke under the request (closed, reset, EOF without TLS
/// close_notify) rather than the origin answering badly.
fn is_retryable(err: &hyper::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    if err.is_canceled() || err.is_closed() || err.is_incomplete_message() {
        return true;
    }
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
            );
        }
        source = e.source();
    }
    false
}

fn clone_head(req: &Request<ProxyBody>) -> http::request::Parts {
    let mut b = Request::builder()
        .method(req.method().clone())
        .uri(req.uri().clone())
        .version(req.version());
    if let Some(h) = b.headers_mut() {
        *h = req.headers().clone();
    }
    let (parts, ()) = b.body(()).expect("a copied head is valid").into_parts();
    parts
}

fn rebuild(parts: http::request::Parts) -> Request<ProxyBody> {
    Request::from_parts(parts, crate::body::empty())
}

enum SendFut<A, B> {
    H1(A),
    H2(B),
}

type TryResult = Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<ProxyBody>>>;

impl<A: Future<Output = TryResult>, B: Future<Output = TryResult>> SendFut<A, B> {
    async fn run(self) -> TryResult {
        match self {
            SendFut::H1(f) => f.await,
            SendFut::H2(f) => f.await,
        }
    }
}

/// Waits for the response head; the `--proxy-read-timeout` clock starts
/// when the request body has been sent (a slow upload is not the origin's
/// fault). `None` on timeout.
async fn with_response_timeout<F: Future<Output = TryResult>>(
    fut: F,
    body_done: tokio::sync::oneshot::Receiver<()>,
    limit: Duration,
) -> Option<TryResult> {
    tokio::pin!(fut);
    let timer = async {
        let _ = body_done.await;
        tokio::time::sleep(limit).await;
    };
    tokio::select! {
        r = &mut fut => Some(r),
        () = timer => None,
    }
}

pin_project_lite::pin_project! {
    /// The request body on its way upstream; says when it has ended.
    pub struct DoneSignal {
        #[pin]
        inner: ProxyBody,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    }
}

impl DoneSignal {
    fn wrap(inner: ProxyBody, done: tokio::sync::oneshot::Sender<()>) -> Self {
        let mut this = DoneSignal {
            inner,
            done: Some(done),
        };
        if this.inner.is_end_stream() {
            this.fire();
        }
        this
    }

    fn fire(&mut self) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(());
        }
    }
}

impl Body for DoneSignal {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => false,
            Poll::Pending => false,
        };
        if ended && let Some(tx) = this.done.take() {
            let _ = tx.send(());
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

/// A response body from the origin; gives its connection or stream back to
/// the pool when it ends (reusable) or is dropped early (closed).
pub struct UpstreamBody {
    inner: Incoming,
    held: Option<Held>,
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(held) = self.held.take() {
                    held.finish(true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(held) = self.held.take() {
                    held.finish(false);
                }
            }
            _ => {}
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

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            // An HTTP/1.1 body not read to its end leaves the connection
            // mid-message: it cannot serve again.
            let reusable = self.inner.is_end_stream();
            held.finish(reusable);
        }
    }
}
