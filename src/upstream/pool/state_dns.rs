//! The DNS part of the pool's state machine: which answer serves, when
//! to refresh it (before it expires), and what a new answer or a failed
//! refresh changes.

use std::time::Duration;

use tokio::time::Instant;

use super::{Handle, Slots, Wake};
use crate::policy::PolicyError;
use crate::upstream::dns::Answer;

/// How far through an answer's TTL the refresh starts: late enough to
/// cost few lookups, early enough that a slow resolver still answers
/// before the old records expire.
pub const REFRESH_AT: f64 = 0.85;

/// What the DNS answer needs before a request may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsStep {
    /// No answer: look up now and wait for it.
    Resolve,
    /// The answer serves, but a refresh must start in the background (the
    /// caller now owns the refresh and must report it).
    Refresh,
    /// The answer serves as it is.
    Ready,
}

impl<H1: Handle, H2: Handle + Clone> Slots<H1, H2> {
    /// What the DNS answer needs at `now`: a refresh starts at
    /// [`REFRESH_AT`] of the TTL, in the background, while the answer is
    /// still valid.
    pub fn dns_step(&mut self, now: Instant) -> DnsStep {
        if self.answer.is_none() {
            return DnsStep::Resolve;
        }
        if !self.refreshing && self.refresh_at.is_some_and(|t| t <= now) {
            self.refreshing = true;
            return DnsStep::Refresh;
        }
        DnsStep::Ready
    }

    /// When the current answer should be refreshed, and its generation (for
    /// [`Slots::refresh_due`]); `None` for answers that never expire.
    pub fn refresh_plan(&self) -> Option<(Instant, u64)> {
        self.refresh_at.map(|t| (t, self.generation))
    }

    /// A refresh timer set for `generation` fired: true (and the caller now
    /// owns the refresh) when that answer is still the current one, no
    /// refresh runs, and the origin carried traffic since the answer came.
    /// An origin nobody uses is left to expire and is looked up again by
    /// its next request.
    pub fn refresh_due(&mut self, now: Instant, generation: u64) -> bool {
        if generation != self.generation || self.refreshing || !self.used_since_answer {
            return false;
        }
        if self.refresh_at.is_none_or(|t| t > now) {
            return false;
        }
        self.refreshing = true;
        true
    }

    fn plan_refresh(&mut self, now: Instant) {
        self.generation += 1;
        self.refresh_at = self
            .answer
            .as_ref()
            .and_then(|a| a.valid_until)
            .map(|until| now + until.saturating_duration_since(now).mul_f64(REFRESH_AT));
    }

    /// Installs a DNS answer (`refused` when the address guard refused one
    /// of its addresses): addresses that left it drain. True when the set
    /// of addresses changed.
    pub fn apply_answer(
        &mut self,
        answer: Answer,
        refused: Option<PolicyError>,
        now: Instant,
    ) -> (bool, Wake) {
        self.refreshing = false;
        self.answered_at = Some(now);
        let mut current = if refused.is_some() {
            Vec::new()
        } else {
            answer.addrs.clone()
        };
        current.dedup();
        let mut old = std::mem::take(&mut self.current);
        old.sort();
        let mut sorted = current.clone();
        sorted.sort();
        let changed = old != sorted;
        self.current = current;
        self.refused = refused;
        self.answer = Some(answer);
        self.health.retain(&self.current);
        self.used_since_answer = false;
        self.plan_refresh(now);
        self.prune(now);
        (changed, Wake::All)
    }

    /// A background refresh failed: keeps the last answer a little longer
    /// if it is younger than `stale_grace` (true), else drops it so the next
    /// request looks up again.
    pub fn refresh_failed(&mut self, now: Instant, stale_grace: Duration) -> bool {
        self.refreshing = false;
        let fresh_enough = self
            .answered_at
            .is_some_and(|t| now.duration_since(t) < stale_grace);
        if fresh_enough {
            if let Some(a) = self.answer.as_mut() {
                a.valid_until = Some(now + Duration::from_secs(5).min(stale_grace));
            }
        } else {
            self.answer = None;
        }
        self.plan_refresh(now);
        fresh_enough
    }
}
