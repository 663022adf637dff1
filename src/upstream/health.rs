//! Passive health of one origin's addresses: an address whose connect
//! failed, timed out or lost a connect race by more than the race delay is
//! *ejected* for a back-off (`--eject-backoff`, doubling on each failure
//! after it returns, capped at `--eject-backoff-max`); a successful connect
//! forgets it. While ejected it gets no new connection unless every address
//! of the origin is ejected (the pool's state machine asks `is_ejected`).
//!
//! Synchronous and free of I/O, with `now` passed in. Ejections and returns
//! are logged here (at most one line a second per origin; the rest are
//! counted in the next line) because only this table sees a back-off end.
//! Bounded: it holds only addresses of the origin's current DNS answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

/// How long an address stays ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first ejection.
    pub first: Duration,
    /// The longest ejection.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(5),
            max: Duration::from_secs(120),
        }
    }
}

impl Backoff {
    /// The back-off after `failures` consecutive failures (1 = the first).
    pub fn after(self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first
            .saturating_mul(1u32 << doublings)
            .min(self.max.max(self.first))
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    /// Consecutive failures since the last successful connect.
    failures: u32,
    /// Ejected until then.
    until: Instant,
    /// Counted in the ejected gauge (cleared, and logged, once `until` has
    /// passed and `tick` ran).
    out: bool,
}

/// The health table of one origin.
#[derive(Debug, Clone, Default)]
pub struct Health {
    backoff: Backoff,
    origin: String,
    addrs: HashMap<SocketAddr, Record>,
    ejections: u64,
    next_log: Option<Instant>,
    suppressed: u64,
}

impl Health {
    /// An empty table for `origin` (used in log lines).
    pub fn new(backoff: Backoff, origin: String) -> Self {
        Health {
            backoff,
            origin,
            ..Health::default()
        }
    }

    /// Whether `addr` is ejected at `now`.
    pub fn is_ejected(&self, addr: SocketAddr, now: Instant) -> bool {
        self.addrs.get(&addr).is_some_and(|r| now < r.until)
    }

    /// A connect to `addr` failed at `now`. A failure while the address is
    /// still ejected (attempts started before the first failure came back,
    /// or every address is ejected) keeps the running back-off; otherwise the
    /// address is ejected for the next back-off.
    pub fn failed(&mut self, addr: SocketAddr, now: Instant) {
        let backoff = self.backoff;
        let record = self.addrs.entry(addr).or_insert(Record {
            failures: 0,
            until: now,
            out: false,
        });
        if now < record.until {
            return;
        }
        record.failures = record.failures.saturating_add(1);
        let period = backoff.after(record.failures);
        record.until = now + period;
        let failures = record.failures;
        let was_out = std::mem::replace(&mut record.out, true);
        self.ejections += 1;
        if !was_out && self.may_log(now) {
            let suppressed = std::mem::take(&mut self.suppressed);
            tracing::warn!(origin = %self.origin, %addr, failures, backoff = ?period, suppressed, "pool.eject address ejected after a failed connect");
        }
    }

    /// A connect to `addr` succeeded: its failures are forgotten.
    pub fn succeeded(&mut self, addr: SocketAddr) {
        self.addrs.remove(&addr);
    }

    /// Notes the addresses whose back-off has ended by `now` (they may get
    /// connections again; the next failure ejects them for longer).
    pub fn tick(&mut self, now: Instant) {
        let mut returned = Vec::new();
        for (addr, r) in &mut self.addrs {
            if r.out && now >= r.until {
                r.out = false;
                returned.push(*addr);
            }
        }
        for addr in returned {
            if self.may_log(now) {
                let suppressed = std::mem::take(&mut self.suppressed);
                tracing::info!(origin = %self.origin, %addr, suppressed, "pool.eject address back after its back-off");
            }
        }
    }

    /// Forgets addresses that left the DNS answer.
    pub fn retain(&mut self, current: &[SocketAddr]) {
        self.addrs.retain(|a, _| current.contains(a));
    }

    /// Addresses ejected as of the last `tick` or failure.
    pub fn ejected(&self) -> usize {
        self.addrs.values().filter(|r| r.out).count()
    }

    /// Ejections since the pool was created.
    pub fn ejections(&self) -> u64 {
        self.ejections
    }

    /// One log line a second per origin; the others are counted.
    fn may_log(&mut self, now: Instant) -> bool {
        if self.next_log.is_some_and(|t| now < t) {
            self.suppressed += 1;
            return false;
        }
        self.next_log = Some(now + Duration::from_secs(1));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, n], 443))
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff::default();
        let got: Vec<u64> = (1..=8).map(|n| b.after(n).as_secs()).collect();
        assert_eq!(got, [5, 10, 20, 40, 80, 120, 120, 120]);
        assert_eq!(b.after(u32::MAX), Duration::from_secs(120));
        let odd = Backoff {
            first: Duration::from_secs(10),
            max: Duration::from_secs(1),
        };
        assert_eq!(odd.after(3), Duration::from_secs(10), "max below first");
    }

    #[test]
    fn an_address_is_ejected_for_its_backoff_then_returns() {
        let now = Instant::now();
        let mut h = Health::new(Backoff::default(), "https://x:443".into());
        h.failed(addr(1), now);
        assert!(h.is_ejected(addr(1), now + Duration::from_millis(4999)));
        assert!(!h.is_ejected(addr(2), now));
        assert_eq!((h.ejected(), h.ejections()), (1, 1));
        let back = now + Duration::from_secs(5);
        assert!(!h.is_ejected(addr(1), back));
        h.tick(back);
        assert_eq!(h.ejected(), 0);
        // The next failure ejects it for twice as long.
        h.failed(addr(1), back);
        assert!(h.is_ejected(addr(1), back + Duration::from_millis(9999)));
        assert!(!h.is_ejected(addr(1), back + Duration::from_secs(10)));
    }

    #[test]
    fn failures_while_ejected_do_not_lengthen_the_backoff() {
        let now = Instant::now();
        let mut h = Health::new(Backoff::default(), String::new());
        for ms in [0, 1, 2, 3] {
            h.failed(addr(1), now + Duration::from_millis(ms));
        }
        assert!(!h.is_ejected(addr(1), now + Duration::from_secs(5)));
        assert_eq!(h.ejections(), 1);
    }

    #[test]
    fn a_success_forgets_and_a_new_answer_bounds_the_table() {
        let now = Instant::now();
        let mut h = Health::new(Backoff::default(), String::new());
        h.failed(addr(1), now);
        h.failed(addr(2), now);
        h.succeeded(addr(1));
        assert!(!h.is_ejected(addr(1), now));
        h.retain(&[addr(3)]);
        assert!(!h.is_ejected(addr(2), now));
        assert_eq!(h.ejected(), 0);
    }
}
