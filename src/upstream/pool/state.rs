//! The pool's state machine: which connections an origin has, in which
//! state, and what the next request gets. Synchronous and free of I/O: the
//! caller passes `now` in, performs what a [`Take`] asks for (open a
//! connection, wait) and reports back (`connected`, `connect_failed`,
//! `release`). Every call that frees capacity returns a [`Wake`] saying how
//! many waiting requests should look again.
//!
//! Generic over the connection handles ([`Handle`]) so that tests drive it
//! with handles they make themselves, without sockets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::super::Protocol;
use super::super::dns::Answer;
use super::super::health::Health;
use super::idle_learning::IdleLearning;
pub use super::lease::{H1Lease, H2Lease, Handle, Lease, Limits, Opened, PoolStats, Ticket};
use crate::policy::PolicyError;

/// How many waiting requests should try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Wake {
    /// Nothing changed for waiters.
    None,
    /// One unit of capacity came free.
    One,
    /// Several may have: every waiter looks again.
    All,
}

/// Connections and requests on one address.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Connections open or being opened.
    pub conns: usize,
    /// Requests in flight, including those whose connection is opening.
    pub outstanding: usize,
    /// Connections being opened.
    pub connecting: usize,
    /// HTTP/1.1 connections leased to a request.
    pub busy: usize,
    /// HTTP/2 streams still running on connections no longer in the pool.
    pub detached: usize,
}

impl Load {
    fn is_empty(&self) -> bool {
        *self == Load::default()
    }
}

/// What a request gets from [`Slots::take`].
#[derive(Debug)]
pub enum Take<H1, H2> {
    /// A connection or stream that served before.
    Reuse(Lease<H1, H2>),
    /// Open a new connection to this address; the request is counted on it.
    Connect(Ticket),
    /// No capacity now: wait for a [`Wake`] and take again.
    Wait,
    /// The address guard refused the origin's addresses.
    Refused(PolicyError),
}

#[derive(Debug, Clone)]
struct Idle<H> {
    conn: H1Lease<H>,
    since: Instant,
}

#[derive(Debug, Clone)]
struct H2Conn<H> {
    id: u64,
    handle: H,
    addr: SocketAddr,
    created: Instant,
    in_flight: usize,
    idle_since: Instant,
}

/// One origin's connections and requests.
#[derive(Debug, Clone)]
pub struct Slots<H1, H2> {
    limits: Limits,
    protocol: Option<Protocol>,
    answer: Option<Answer>,
    answered_at: Option<Instant>,
    /// When to look the name up again: most of the way through the TTL, so
    /// the new answer is in before the old one expires.
    refresh_at: Option<Instant>,
    /// Counts answers (and extensions of one), so a refresh timer set for an
    /// older answer knows it is outdated.
    generation: u64,
    /// A request came since the current answer was installed.
    used_since_answer: bool,
    refused: Option<PolicyError>,
    refreshing: bool,
    /// Addresses new requests may go to (the answer, unless refused).
    current: Vec<SocketAddr>,
    load: HashMap<SocketAddr, Load>,
    /// Most recently used last.
    idle: Vec<Idle<H1>>,
    h1_busy: usize,
    connecting: usize,
    h2: Vec<H2Conn<H2>>,
    next_id: u64,
    warming: bool,
    last_used: Instant,
    /// Addresses left out after failed connects.
    health: Health,
    /// How long the origin keeps idle HTTP/1.1 connections.
    learning: IdleLearning,
}

/// Decrements a count the state machine keeps; going below zero is a bug
/// (caught by the property tests), never a wrap-around in production.
fn dec(n: &mut usize) {
    debug_assert!(*n > 0, "a pool count went below zero");
    *n = n.saturating_sub(1);
}

impl<H1: Handle, H2: Handle + Clone> Slots<H1, H2> {
    /// An empty pool; `protocol` is known up front for plain-HTTP origins.
    pub fn new(limits: Limits, protocol: Option<Protocol>, now: Instant) -> Self {
        Slots {
            limits,
            protocol,
            answer: None,
            answered_at: None,
            refresh_at: None,
            generation: 0,
            used_since_answer: false,
            refused: None,
            refreshing: false,
            current: Vec::new(),
            load: HashMap::new(),
            idle: Vec::new(),
            h1_busy: 0,
            connecting: 0,
            h2: Vec::new(),
            next_id: 1,
            warming: false,
            last_used: now,
            health: Health::default(),
            learning: IdleLearning::default(),
        }
    }

    /// Replaces the (default) health table: its back-off and log label.
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    fn load_mut(&mut self, addr: SocketAddr) -> &mut Load {
        self.load.entry(addr).or_default()
    }

    /// Applies `f` to an address's load and forgets the address once
    /// nothing is left on it, so churning DNS answers cannot grow the map.
    fn update(&mut self, addr: SocketAddr, f: impl FnOnce(&mut Load)) {
        let load = self.load_mut(addr);
        f(load);
        if load.is_empty() {
            self.load.remove(&addr);
        }
    }

    fn is_current(&self, addr: SocketAddr) -> bool {
        self.current.contains(&addr)
    }

    /// Finds capacity for one request: a stream, an idle connection, a new
    /// connection, or a wait. `fresh` asks for a new connection (a retry).
    pub fn take(&mut self, now: Instant, fresh: bool) -> (Take<H1, H2>, Wake) {
        self.last_used = now;
        self.used_since_answer = true;
        let wake = self.prune(now);
        if let Some(refused) = &self.refused {
            return (Take::Refused(refused.clone()), wake);
        }
        (self.choose(fresh, now), wake)
    }

    fn choose(&mut self, fresh: bool, now: Instant) -> Take<H1, H2> {
        if self.protocol != Some(Protocol::H1) {
            let best = self
                .h2
                .iter_mut()
                .filter(|c| c.in_flight < c.handle.max_streams().max(1))
                .min_by_key(|c| c.in_flight);
            if let Some(c) = best {
                c.in_flight += 1;
                let lease = H2Lease {
                    handle: c.handle.clone(),
                    addr: c.addr,
                    id: c.id,
                };
                self.load_mut(lease.addr).outstanding += 1;
                return Take::Reuse(Lease::H2(lease));
            }
            if self.protocol == Some(Protocol::H2) {
                if self.h2.len() + self.connecting < self.limits.h2_conns {
                    return self.start_connect(now);
                }
                return Take::Wait;
            }
        }
        if !fresh && !self.idle.is_empty() {
            // Most recently used first, but prefer the address with the
            // fewest requests in flight.
            let load = &self.load;
            // One address (the usual case): every idle connection ties, so
            // the most recent wins without a lookup per idle connection.
            let pick = if load.len() <= 1 {
                self.idle.len() - 1
            } else {
                (0..self.idle.len())
                    .rev()
                    .min_by_key(|&i| {
                        load.get(&self.idle[i].conn.addr)
                            .map_or(0, |l| l.outstanding)
                    })
                    .unwrap_or(self.idle.len() - 1)
            };
            let idle = self.idle.remove(pick);
            self.h1_busy += 1;
            let load = self.load_mut(idle.conn.addr);
            load.busy += 1;
            load.outstanding += 1;
            return Take::Reuse(Lease::H1(idle.conn));
        }
        if self.protocol.is_none() && self.connecting > 0 {
            // The first handshake tells whether this origin speaks h2; wait
            // for it rather than open a connection per request.
            return Take::Wait;
        }
        let cap = self.limits.max_conns_per_host;
        if cap != 0 && self.h1_open() >= cap {
            if !fresh || self.idle.is_empty() {
                return Take::Wait;
            }
            // A retry wants a new connection: make room by closing the
            // oldest idle one rather than wait behind it.
            let oldest = self.idle.remove(0);
            self.close_idle(oldest);
        }
        self.start_connect(now)
    }

    fn h1_open(&self) -> usize {
        self.idle.len() + self.h1_busy + self.connecting
    }

    fn close_idle(&mut self, idle: Idle<H1>) {
        self.update(idle.conn.addr, |l| dec(&mut l.conns));
    }

    /// A new connection to the address with the fewest connections, then
    /// the fewest requests in flight, ties broken at random; ejected
    /// addresses only when every address is ejected.
    fn start_connect(&mut self, now: Instant) -> Take<H1, H2> {
        match self.pick(now, &[]) {
            Some(addr) => Take::Connect(self.count_connect(addr)),
            None => Take::Wait,
        }
    }

    /// The address for a new connection, not one of `tried`.
    fn pick(&self, now: Instant, tried: &[SocketAddr]) -> Option<SocketAddr> {
        let all_ejected = self.current.iter().all(|a| self.health.is_ejected(*a, now));
        let candidates = || {
            self.current
                .iter()
                .copied()
                .filter(|a| !tried.contains(a) && (all_ejected || !self.health.is_ejected(*a, now)))
        };
        let key = |a: SocketAddr| {
            self.load
                .get(&a)
                .map_or((0, 0), |l| (l.conns, l.outstanding))
        };
        let best = candidates().map(key).min()?;
        let ties: Vec<SocketAddr> = candidates().filter(|a| key(*a) == best).collect();
        Some(ties[fastrand::usize(..ties.len())])
    }

    fn count_connect(&mut self, addr: SocketAddr) -> Ticket {
        self.connecting += 1;
        let load = self.load_mut(addr);
        load.conns += 1;
        load.outstanding += 1;
        load.connecting += 1;
        Ticket { addr }
    }

    /// The connection of `ticket` is open; the request that asked for it
    /// gets it (HTTP/1.1) or its first stream (HTTP/2).
    pub fn connected(
        &mut self,
        ticket: Ticket,
        opened: Opened<H1, H2>,
        now: Instant,
    ) -> (Lease<H1, H2>, Wake) {
        let addr = ticket.addr;
        dec(&mut self.connecting);
        self.health.succeeded(addr);
        let lease = match opened {
            Opened::H1(handle) => {
                self.protocol = Some(Protocol::H1);
                self.h1_busy += 1;
                self.update(addr, |l| {
                    dec(&mut l.connecting);
                    l.busy += 1;
                });
                Lease::H1(H1Lease {
                    handle,
                    addr,
                    created: now,
                })
            }
            Opened::H2(handle) => {
                self.protocol = Some(Protocol::H2);
                self.update(addr, |l| dec(&mut l.connecting));
                let id = self.next_id;
                self.next_id += 1;
                self.h2.push(H2Conn {
                    id,
                    handle: handle.clone(),
                    addr,
                    created: now,
                    in_flight: 1,
                    idle_since: now,
                });
                Lease::H2(H2Lease { handle, addr, id })
            }
        };
        // Waiters held back until the protocol was known may go now.
        (lease, Wake::All)
    }

    /// The connection of `ticket` could not be opened (or the request gave
    /// up on it).
    pub fn connect_failed(&mut self, ticket: Ticket) -> Wake {
        dec(&mut self.connecting);
        self.update(ticket.addr, |l| {
            dec(&mut l.connecting);
            dec(&mut l.conns);
            dec(&mut l.outstanding);
        });
        Wake::All
    }

    /// The connect of `ticket` failed (or lost a race by more than the race
    /// delay) at `now`: its address is ejected (`eject`) and the request
    /// gets a ticket for another address it has not tried, if there is one;
    /// the failed slot is reused, so no cap is exceeded.
    pub fn fail_over(
        &mut self,
        ticket: Ticket,
        now: Instant,
        eject: bool,
        tried: &[SocketAddr],
    ) -> (Option<Ticket>, Wake) {
        if eject {
            self.health.failed(ticket.addr, now);
        }
        let wake = self.connect_failed(ticket);
        match self.pick(now, tried) {
            Some(addr) => (Some(self.count_connect(addr)), Wake::None),
            None => (None, wake),
        }
    }

    /// A second, parallel attempt for a request whose connect to `tried` is
    /// slow: a ticket for another address, if one is left and the pool has
    /// room for one more connection.
    pub fn hedge(&mut self, now: Instant, tried: &[SocketAddr]) -> Option<Ticket> {
        // Until the first handshake tells, the attempt may turn out to be
        // either protocol: both limits apply.
        let h2_room = self.h2.len() + self.connecting < self.limits.h2_conns;
        let cap = self.limits.max_conns_per_host;
        let h1_room = cap == 0 || self.h1_open() < cap;
        let room = match self.protocol {
            Some(Protocol::H2) => h2_room,
            Some(Protocol::H1) => h1_room,
            None => h1_room && h2_room,
        };
        let addr = self.pick(now, tried).filter(|_| room)?;
        Some(self.count_connect(addr))
    }

    /// A slow attempt where `hedge` found no room: it is ejected and given
    /// up for an attempt to another address in its slot (`Ok`), or kept
    /// (`Err`) when no other address is left to try.
    pub fn replace(
        &mut self,
        ticket: Ticket,
        now: Instant,
        tried: &[SocketAddr],
    ) -> Result<Ticket, Ticket> {
        self.health.failed(ticket.addr, now);
        let Some(addr) = self.pick(now, tried) else {
            return Err(ticket);
        };
        let _ = self.connect_failed(ticket);
        Ok(self.count_connect(addr))
    }

    /// Gives back the ticket of an attempt that lost a race; `eject` when it
    /// was overtaken by an attempt started after it.
    pub fn abandon(&mut self, ticket: Ticket, now: Instant, eject: bool) -> Wake {
        if eject {
            self.health.failed(ticket.addr, now);
        }
        self.connect_failed(ticket)
    }

    /// Takes a lease back; `reusable` when its exchange completed cleanly.
    pub fn release(&mut self, lease: Lease<H1, H2>, reusable: bool, now: Instant) -> Wake {
        match lease {
            Lease::H1(conn) => {
                dec(&mut self.h1_busy);
                let addr = conn.addr;
                let keep = reusable
                    && !conn.handle.is_closed()
                    && self.is_current(addr)
                    && now.duration_since(conn.created) < self.limits.max_conn_lifetime
                    && self.idle.len() < self.limits.keepalive_conns;
                self.update(addr, |l| {
                    dec(&mut l.busy);
                    dec(&mut l.outstanding);
                    if !keep {
                        dec(&mut l.conns);
                    }
                });
                if keep {
                    self.idle.push(Idle { conn, since: now });
                }
                Wake::One
            }
            Lease::H2(stream) => {
                let conn = self.h2.iter_mut().find(|c| c.id == stream.id);
                let detached = match conn {
                    Some(c) => {
                        dec(&mut c.in_flight);
                        if c.in_flight == 0 {
                            c.idle_since = now;
                        }
                        false
                    }
                    None => true,
                };
                self.update(stream.addr, |l| {
                    dec(&mut l.outstanding);
                    if detached {
                        dec(&mut l.detached);
                    }
                });
                Wake::One
            }
        }
    }

    /// Drops idle connections that are closed, too old, idle too long or on
    /// a draining address, and HTTP/2 connections that can take no new
    /// stream (their running streams finish on their own handle clones).
    pub fn prune(&mut self, now: Instant) -> Wake {
        self.health.tick(now);
        let limits = &self.limits;
        let current = &self.current;
        let learning = &mut self.learning;
        learning.forget_old(now);
        let idle_limit = learning.idle_limit(limits.idle_timeout, now);
        let mut closed = Vec::new();
        self.idle.retain(|i| {
            let origin_closed = i.conn.handle.is_closed();
            if let Some(at) = i.conn.handle.closed_at().filter(|_| origin_closed) {
                // Closed while idle, so by the origin: how long it waited.
                learning.closed_idle(at.saturating_duration_since(i.since), now);
            }
            let keep = !origin_closed
                && current.contains(&i.conn.addr)
                && now.duration_since(i.since) < idle_limit
                && now.duration_since(i.conn.created) < limits.max_conn_lifetime;
            if !keep {
                closed.push(i.conn.addr);
            }
            keep
        });
        let mut gone = Vec::new();
        self.h2.retain(|c| {
            let usable = !c.handle.is_closed()
                && current.contains(&c.addr)
                && now.duration_since(c.created) < limits.max_conn_lifetime
                && !(c.in_flight == 0 && now.duration_since(c.idle_since) >= limits.idle_timeout);
            if !usable {
                gone.push((c.addr, c.in_flight));
            }
            usable
        });
        let wake = if closed.is_empty() && gone.is_empty() {
            Wake::None
        } else {
            Wake::All
        };
        for addr in closed {
            self.update(addr, |l| dec(&mut l.conns));
        }
        for (addr, in_flight) in gone {
            self.update(addr, |l| {
                dec(&mut l.conns);
                l.detached += in_flight;
            });
        }
        wake
    }

    /// Claims the right to open a warm connection: false when one is open
    /// or another warm-up runs (startup prewarm and the sweeper's rewarm
    /// must not both open one).
    pub fn claim_warm(&mut self) -> bool {
        if self.warming || self.has_connections() {
            return false;
        }
        self.warming = true;
        true
    }

    /// The warm-up claimed by `claim_warm` ended.
    pub fn warm_done(&mut self) {
        self.warming = false;
    }

    /// Any connection open or opening.
    pub fn has_connections(&self) -> bool {
        !self.idle.is_empty() || self.h1_busy > 0 || self.connecting > 0 || !self.h2.is_empty()
    }

    /// Prunes; true when nothing is open and the pool has not been used for
    /// `unused`.
    pub fn sweep(&mut self, now: Instant, unused: Duration) -> (bool, Wake) {
        let wake = self.prune(now);
        let empty = !self.has_connections() && now.duration_since(self.last_used) >= unused;
        (empty, wake)
    }

    /// An HTTP/1.1 response head came `took` after its request went out,
    /// with the origin's `Keep-Alive: timeout=N` if it sent one.
    pub fn answered(&mut self, took: Duration, keep_alive: Option<Duration>, now: Instant) {
        self.learning.answered_in(took, now);
        if let Some(timeout) = keep_alive {
            self.learning.told(timeout, now);
        }
    }

    /// A snapshot for metrics.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            open: self.idle.len() + self.h1_busy + self.connecting + self.h2.len(),
            idle: self.idle.len(),
            busy: self.h1_busy,
            h2_conns: self.h2.len(),
            h2_streams: self.h2.iter().map(|c| c.in_flight).sum(),
            addrs: self
                .answer
                .as_ref()
                .map(|a| a.addrs.clone())
                .unwrap_or_default(),
            ejected: self.health.ejected(),
            ejections: self.health.ejections(),
            learned_idle_timeout: self.learning.known(),
        }
    }
}

#[path = "state_dns.rs"]
mod dns;

pub use dns::{DnsStep, REFRESH_AT};

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
