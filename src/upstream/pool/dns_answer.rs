//! Keeps a pool's DNS answer usable: the first request resolves inline;
//! after that the answer is refreshed in the background at 85 % of its TTL
//! (a timer for origins that carry traffic, or the first request past that
//! point), so requests neither wait for a lookup nor go to addresses whose
//! records have expired. Every address of a new answer passes the address
//! guard before the state machine installs it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::Pool;
use super::state::DnsStep;
use crate::upstream::dns::Answer;
use crate::upstream::{Timing, UpstreamError};

impl Pool {
    /// Makes sure there is a usable DNS answer; starts a background refresh
    /// when one is due.
    pub(super) async fn ensure_answer(
        self: &Arc<Self>,
        timing: &mut Timing,
    ) -> Result<(), UpstreamError> {
        let step = self.lock().dns_step(Instant::now());
        match step {
            DnsStep::Ready => {}
            DnsStep::Refresh => {
                let pool = self.clone();
                tokio::spawn(async move { pool.refresh().await });
            }
            DnsStep::Resolve => {
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
        }
        Ok(())
    }

    /// Looks the origin up again; on failure keeps the last answer for a
    /// while (`--dns-stale-grace`).
    pub(super) async fn refresh(self: Arc<Self>) {
        self.counters.dns_refreshes.fetch_add(1, Ordering::Relaxed);
        // Past the resolver's cache: it would hand back the answer being
        // refreshed, with what is left of its TTL.
        let looked_up = self
            .shared
            .dns
            .resolve_uncached(&self.origin.host, self.origin.port)
            .await;
        match looked_up {
            Ok(answer) => self.apply(answer),
            Err(err) => {
                let kept = self
                    .lock()
                    .refresh_failed(Instant::now(), self.shared.stale_grace);
                self.schedule_refresh();
                let error = &err as &dyn std::error::Error;
                if kept {
                    tracing::warn!(origin = %self.origin, error, "dns.refresh failed; keeping the last answer");
                } else {
                    tracing::warn!(origin = %self.origin, error, "dns.refresh failed; last answer too old, dropping it");
                }
            }
        }
    }

    /// Installs a new answer: guard every address, drain the ones that left.
    fn apply(self: &Arc<Self>, answer: Answer) {
        let refused = answer.addrs.iter().find_map(|a| {
            self.shared
                .policy
                .check_addr(&self.origin.host, a.ip())
                .err()
        });
        let addrs = answer.addrs.clone();
        let (changed, wake) = self.lock().apply_answer(answer, refused, Instant::now());
        if changed {
            tracing::debug!(origin = %self.origin, ?addrs, "dns.answer changed");
        }
        self.wake(wake);
        self.schedule_refresh();
    }

    /// Starts a timer for the current answer's refresh, replacing (and
    /// aborting) the previous one. It holds the pool weakly and does nothing
    /// if a newer answer came or nobody used this one. A pool has at most one
    /// timer, aborted when the pool is dropped: a weak reference alone would
    /// keep the task, its timer entry and the pool's allocation until the
    /// record's TTL ran out, for every origin the table removed.
    fn schedule_refresh(self: &Arc<Self>) {
        let Some((at, generation)) = self.lock().refresh_plan() else {
            return;
        };
        let pool = Arc::downgrade(self);
        let timer = tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let Some(pool) = pool.upgrade() else { return };
            let due = pool.lock().refresh_due(Instant::now(), generation);
            if due {
                pool.refresh().await;
            }
        })
        .abort_handle();
        let previous = self.timer_slot().replace(timer);
        if let Some(previous) = previous {
            abort_unless_current(previous);
        }
    }

    fn timer_slot(&self) -> MutexGuard<'_, Option<AbortHandle>> {
        self.refresh_timer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let timer = self
            .refresh_timer
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(timer) = timer {
            abort_unless_current(timer);
        }
    }
}

/// Aborts a refresh timer unless it is the task running this code (a timer
/// that refreshes schedules its successor, then ends by itself).
fn abort_unless_current(timer: AbortHandle) {
    if tokio::task::try_id() != Some(timer.id()) {
        timer.abort();
    }
}
