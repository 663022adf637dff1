//! `--max-buffered-bytes`: one budget for the request bodies the proxy holds
//! in memory at once, across all requests. Bodies that stream through are
//! not counted (hyper holds a bounded window of them); what is counted is a
//! body read whole before it can leave: `--sign` hashes non-S3 bodies (up to
//! `--sign-max-body` each) before it signs the head.
//!
//! The signed `aws-chunked` re-signing holds one chunk at a time (also up
//! to `--sign-max-body`); what it holds is counted as it arrives, and an
//! upload that would pass the cap mid-stream fails (its request is already
//! on its way, so the client sees the upstream error, not a 503).
//!
//! The pool also keeps a replay copy of small request bodies (see
//! `upstream/pool/replay.rs`) when the budget has room; without room the
//! body streams and is not replayed, nothing is refused.
//!
//! A reservation is taken before the bytes are read (the declared
//! `Content-Length`, else as the bytes arrive) and given back when the
//! buffered body is dropped, after it was sent or when the request failed.
//! A request that would take the total past the cap is refused (503 with
//! `Retry-After`) before any of its body is read, and counted.
//!
//! Invariant: `held` is the sum of the live reservations, never above `limit`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The shared budget of buffered request-body bytes.
#[derive(Debug)]
pub struct BufferBudget {
    limit: u64,
    held: Gauge<u64, AtomicU64>,
    refused: Counter,
}

/// Bytes taken from a `BufferBudget`; given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BufferBudget>,
    bytes: u64,
}

impl BufferBudget {
    /// A budget of `limit` bytes (0: nothing may be buffered).
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(BufferBudget {
            limit,
            held: Gauge::default(),
            refused: Counter::default(),
        })
    }

    /// Registers `ccnproxy_buffered_bytes` and
    /// `ccnproxy_buffered_refused_total` with `/metrics`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ccnproxy_buffered_bytes",
            "Request-body bytes held in memory now (--sign hashing, replay copies), at most --max-buffered-bytes",
            self.held.clone(),
        );
        registry.register(
            "ccnproxy_buffered_refused",
            "Requests refused with 503 because buffering their body would pass --max-buffered-bytes",
            self.refused.clone(),
        );
    }

    /// The cap in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        self.held.get()
    }

    /// Takes `bytes`, or `None` (counted as refused) when the total would
    /// pass the cap.
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        let mut reservation = Reservation {
            budget: self.clone(),
            bytes: 0,
        };
        reservation.grow(bytes).then_some(reservation)
    }

    /// Takes `bytes` if there is room, without counting a refusal: for
    /// buffers that are optional (a replay copy), whose absence refuses
    /// nothing.
    pub fn reserve_if_room(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        self.take(bytes).then(|| Reservation {
            budget: self.clone(),
            bytes,
        })
    }

    fn take(&self, bytes: u64) -> bool {
        self.held
            .inner()
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }
}

impl Reservation {
    /// Takes `more` bytes as well; false (counted as refused, nothing taken)
    /// when the total would pass the cap.
    pub fn grow(&mut self, more: u64) -> bool {
        if more == 0 {
            return true;
        }
        if self.budget.take(more) {
            self.bytes += more;
            true
        } else {
            self.budget.refused.inc();
            false
        }
    }

    /// Holds exactly `bytes` from now on: gives back what is above it, or
    /// takes what is missing (false, nothing changed, when that would pass
    /// the cap).
    pub fn resize(&mut self, bytes: u64) -> bool {
        if bytes >= self.bytes {
            return self.grow(bytes - self.bytes);
        }
        self.budget.held.dec_by(self.bytes - bytes);
        self.bytes = bytes;
        true
    }

    /// Bytes this reservation holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The cap of the budget this reservation is part of.
    pub fn budget_limit(&self) -> u64 {
        self.budget.limit
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.held.dec_by(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_under_the_cap_and_come_back_on_drop() {
        let budget = BufferBudget::new(100);
        let a = budget.reserve(60).expect("room");
        assert!(budget.reserve(41).is_none(), "60 + 41 > 100");
        let mut b = budget.reserve(40).expect("exactly the cap");
        assert_eq!(budget.held(), 100);
        assert!(!b.grow(1));
        assert_eq!(b.bytes(), 40);
        drop(a);
        assert!(b.grow(60));
        assert_eq!(budget.held(), 100);
        drop(b);
        assert_eq!(budget.held(), 0);
        assert_eq!(budget.refused.get(), 2);
        let mut c = budget.reserve(10).expect("room");
        assert!(c.resize(100));
        assert!(c.resize(5));
        assert_eq!((c.bytes(), budget.held()), (5, 5));
        assert!(budget.reserve(96).is_none());
    }

    #[test]
    fn a_zero_budget_refuses_every_byte_but_not_empty_bodies() {
        let budget = BufferBudget::new(0);
        assert!(budget.reserve(0).is_some());
        assert!(budget.reserve(1).is_none());
    }

    #[test]
    fn concurrent_reservations_never_pass_the_cap() {
        let budget = BufferBudget::new(1000);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        if let Some(r) = budget.reserve(300) {
                            assert!(budget.held() <= 1000);
                            drop(r);
                        }
                    }
                });
            }
        });
        assert_eq!(budget.held(), 0);
    }
}
