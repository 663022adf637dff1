//! How long an origin keeps an idle HTTP/1.1 connection, learned.
//!
//! Origins close idle keep-alive connections on their own schedule, often
//! well before `--idle-timeout`. A request sent on such a connection just
//! as the origin closes it meets the close on the wire and fails, and a
//! request that may have reached the origin is not sent again (`retry.rs`).
//! So the pool learns each origin's idle timeout: from `Keep-Alive:
//! timeout=N` when the origin sends it, else from the idle age at which
//! the origin closed a connection (the driver task notes the moment it read
//! the end). Idle connections are then retired a margin before that age,
//! the margin covering the round trip (a request needs half of one to
//! arrive, the close half of one to come back) plus scheduling slack.
//!
//! The round trip is the shortest time to a response head seen lately (an
//! upper bound: it includes the origin's own time). Learned values are
//! forgotten after `FORGET_AFTER` without being confirmed, so an origin
//! whose timeout grew gets its connections kept longer again. Pure.

use std::time::Duration;

use tokio::time::Instant;

/// A learned value not seen again for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Retire this long before the learned age, on top of two round trips.
pub const SLACK: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy)]
struct Seen {
    value: Duration,
    at: Instant,
}

/// One origin's learned idle timeout and round trip.
#[derive(Debug, Clone, Default)]
pub struct IdleLearning {
    timeout: Option<Seen>,
    round_trip: Option<Seen>,
}

impl IdleLearning {
    /// The origin closed a connection that had been idle for `idle_for`.
    pub fn closed_idle(&mut self, idle_for: Duration, now: Instant) {
        let value = match self.timeout(now) {
            Some(known) => known.min(idle_for),
            None => idle_for,
        };
        self.timeout = Some(Seen { value, at: now });
    }

    /// The origin said `Keep-Alive: timeout=N`: it is the rule, not a bound.
    pub fn told(&mut self, timeout: Duration, now: Instant) {
        self.timeout = Some(Seen {
            value: timeout,
            at: now,
        });
    }

    /// A response head came `took` after its request was sent.
    pub fn answered_in(&mut self, took: Duration, now: Instant) {
        let value = match self.round_trip(now) {
            Some(known) => known.min(took),
            None => took,
        };
        self.round_trip = Some(Seen { value, at: now });
    }

    /// The learned idle timeout, if any is current.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        current(self.timeout, now)
    }

    /// Drops what is no longer current, so `known` need not ask the time.
    pub fn forget_old(&mut self, now: Instant) {
        self.timeout = self.timeout.filter(|_| self.timeout(now).is_some());
        self.round_trip = self.round_trip.filter(|_| self.round_trip(now).is_some());
    }

    /// The idle timeout as of the last `forget_old`.
    pub fn known(&self) -> Option<Duration> {
        self.timeout.map(|s| s.value)
    }

    fn round_trip(&self, now: Instant) -> Option<Duration> {
        current(self.round_trip, now)
    }

    /// How long an idle connection may be kept: `configured`, or less when
    /// the origin is known to close sooner.
    pub fn idle_limit(&self, configured: Duration, now: Instant) -> Duration {
        let Some(timeout) = self.timeout(now) else {
            return configured;
        };
        let margin = SLACK + 2 * self.round_trip(now).unwrap_or_default();
        configured.min(timeout.saturating_sub(margin))
    }
}

fn current(seen: Option<Seen>, now: Instant) -> Option<Duration> {
    seen.filter(|s| now.saturating_duration_since(s.at) < FORGET_AFTER)
        .map(|s| s.value)
}

/// `timeout=N` of a `Keep-Alive` header value (RFC 2068 §19.7.1.1), e.g.
/// `timeout=5, max=100`.
pub fn keep_alive_timeout(value: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?;
    text.split(',').find_map(|param| {
        let (name, secs) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("timeout") {
            return None;
        }
        let secs: u64 = secs.trim().trim_matches('"').parse().ok()?;
        Some(Duration::from_secs(secs.min(86_400)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn nothing_learned_keeps_the_configured_limit() {
        let l = IdleLearning::default();
        assert_eq!(l.idle_limit(90 * S, Instant::now()), 90 * S);
    }

    #[test]
    fn a_close_sets_the_limit_a_margin_before_it() {
        let now = Instant::now();
        let mut l = IdleLearning::default();
        l.answered_in(40 * MS, now);
        l.answered_in(100 * MS, now);
        l.closed_idle(5 * S, now);
        // 5 s − (250 ms + 2 × 40 ms)
        assert_eq!(l.idle_limit(90 * S, now), 5 * S - 330 * MS);
        // Only ever shorter from closes; never above the configured limit.
        l.closed_idle(7 * S, now);
        assert_eq!(l.timeout(now), Some(5 * S));
        assert_eq!(l.idle_limit(2 * S, now), 2 * S);
        // A close sooner than the margin: idle connections are not kept.
        l.closed_idle(100 * MS, now);
        assert_eq!(l.idle_limit(90 * S, now), Duration::ZERO);
    }

    #[test]
    fn the_origins_word_replaces_what_was_learned() {
        let now = Instant::now();
        let mut l = IdleLearning::default();
        l.closed_idle(3 * S, now);
        l.told(20 * S, now);
        assert_eq!(l.timeout(now), Some(20 * S));
    }

    #[test]
    fn learned_values_are_forgotten_unless_seen_again() {
        let now = Instant::now();
        let mut l = IdleLearning::default();
        l.closed_idle(5 * S, now);
        l.answered_in(50 * MS, now);
        let later = now + FORGET_AFTER;
        assert_eq!(l.timeout(later), None);
        assert_eq!(l.known(), Some(5 * S));
        l.forget_old(later);
        assert_eq!(l.known(), None);
        assert_eq!(l.idle_limit(90 * S, later), 90 * S);
        // Seen again: learned afresh, not the minimum with the old value.
        l.closed_idle(8 * S, later);
        assert_eq!(l.timeout(later), Some(8 * S));
    }

    #[test]
    fn keep_alive_header_values() {
        for (value, want) in [
            (&b"timeout=5"[..], Some(5 * S)),
            (b"timeout=5, max=100", Some(5 * S)),
            (b"max=100, Timeout = 15", Some(15 * S)),
            (b"timeout=\"7\"", Some(7 * S)),
            (b"timeout=99999999", Some(86_400 * S)),
            (b"max=100", None),
            (b"timeout=-1", None),
            (b"timeout=", None),
            (b"\xff", None),
            (b"", None),
        ] {
            assert_eq!(keep_alive_timeout(value), want, "{value:?}");
        }
    }
}
