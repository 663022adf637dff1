//! The bound on the access-log queue: records waiting for the writer thread
//! are limited by count (`--access-log-queue-lines`) and by the memory
//! they hold (`--access-log-queue-bytes`, counted by `held.rs`). `log` claims room
//! before it queues a record and the writer releases it once the record is
//! formatted into its batch. When there is no room, `--access-log-when-full`
//! decides: `block` waits (the finishing request's thread waits until the
//! writer frees room, so nothing is lost and memory stays bounded) or `drop`
//! counts the line as dropped and warns, at most once per `DROP_WARN_SECS`,
//! with how many were dropped since the last warning.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

use super::time::unix_secs;
use crate::config::WhenFull;

/// Warnings about dropped lines come at most this often.
const DROP_WARN_SECS: i64 = 10;

/// The limits of one queue.
#[derive(Debug, Clone, Copy)]
pub(super) struct QueueLimits {
    /// Records waiting at most.
    pub(super) lines: usize,
    /// Bytes held by waiting records at most.
    pub(super) bytes: u64,
    /// What `claim` does when either limit is reached.
    pub(super) when_full: WhenFull,
}

/// What is waiting now.
#[derive(Debug, Default, Clone, Copy)]
struct Waiting {
    lines: usize,
    bytes: u64,
}

/// Room in the queue, shared by every `AccessLog` handle and the writer.
#[derive(Debug)]
pub(super) struct Room {
    limits: QueueLimits,
    held: Mutex<Waiting>,
    freed: Condvar,
    dropped: AtomicU64,
    waited: AtomicU64,
    /// Lines dropped since the last warning.
    unwarned: AtomicU64,
    /// Unix second before which no new drop warning is due.
    next_warn_secs: AtomicI64,
}

impl Room {
    pub(super) fn new(limits: QueueLimits) -> Self {
        Room {
            limits,
            held: Mutex::new(Waiting::default()),
            freed: Condvar::new(),
            dropped: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            unwarned: AtomicU64::new(0),
            next_warn_secs: AtomicI64::new(i64::MIN),
        }
    }

    /// Claims room for one record of `bytes`: true once claimed (after
    /// waiting, in block mode), false when the line is dropped. A record
    /// larger than the byte limit is let in when the queue is empty.
    pub(super) fn claim(&self, bytes: u64) -> bool {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let mut counted = false;
        loop {
            let fits = held.lines == 0
                || (held.lines < self.limits.lines
                    && held.bytes.saturating_add(bytes) <= self.limits.bytes);
            if fits {
                held.lines += 1;
                held.bytes += bytes;
                return true;
            }
            match self.limits.when_full {
                WhenFull::Drop => {
                    drop(held);
                    self.dropped_one();
                    return false;
                }
                WhenFull::Block => {
                    if !counted {
                        counted = true;
                        self.waited.fetch_add(1, Ordering::Relaxed);
                    }
                    held = self
                        .freed
                        .wait(held)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }

    /// Gives back the room of a record the writer has taken (or that could
    /// not be queued).
    pub(super) fn release(&self, bytes: u64) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.lines = held.lines.saturating_sub(1);
        held.bytes = held.bytes.saturating_sub(bytes);
        drop(held);
        self.freed.notify_all();
    }

    /// Lines and the bytes they hold, waiting now.
    pub(super) fn held(&self) -> (usize, u64) {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        (held.lines, held.bytes)
    }

    /// Lines dropped because the queue was full (drop mode).
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records that had to wait for room (block mode).
    pub(super) fn waited(&self) -> u64 {
        self.waited.load(Ordering::Relaxed)
    }

    fn dropped_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.unwarned.fetch_add(1, Ordering::Relaxed);
        let now = unix_secs(std::time::SystemTime::now());
        let due = self.next_warn_secs.load(Ordering::Relaxed);
        // One thread wins the warning of each period; the others only count.
        if now >= due
            && self
                .next_warn_secs
                .compare_exchange(
                    due,
                    now + DROP_WARN_SECS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            let lines = self.unwarned.swap(0, Ordering::Relaxed);
            tracing::warn!(
                lines_dropped = lines,
                queue_lines = self.limits.lines,
                queue_bytes = self.limits.bytes,
                "access log queue full: lines dropped (--access-log-when-full drop)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn room(lines: usize, bytes: u64, when_full: WhenFull) -> Room {
        Room::new(QueueLimits {
            lines,
            bytes,
            when_full,
        })
    }

    #[test]
    fn drop_mode_counts_what_does_not_fit() {
        let r = room(2, 1000, WhenFull::Drop);
        assert!(r.claim(100));
        assert!(r.claim(100));
        assert!(!r.claim(100), "third line: over the line limit");
        r.release(100);
        assert!(!r.claim(950), "over the byte limit");
        assert!(r.claim(900));
        assert_eq!(r.dropped(), 2);
        assert_eq!(r.held(), (2, 1000));
        r.release(100);
        r.release(900);
        assert_eq!(r.held(), (0, 0));
        assert!(r.claim(5000), "an oversized record fits an empty queue");
    }

    #[test]
    fn block_mode_waits_for_the_writer() {
        let r = Arc::new(room(1, 1000, WhenFull::Block));
        assert!(r.claim(10));
        let waiter = std::thread::spawn({
            let r = r.clone();
            move || r.claim(10)
        });
        // The waiter is counted before it sleeps on the condition variable.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while r.waited() == 0 {
            assert!(std::time::Instant::now() < deadline, "waiter never waited");
            std::thread::yield_now();
        }
        assert!(!waiter.is_finished(), "no room yet");
        r.release(10);
        assert!(waiter.join().expect("waiter"));
        assert_eq!((r.held(), r.dropped(), r.waited()), ((1, 10), 0, 1));
    }
}
