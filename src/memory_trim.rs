//! Gives memory back to the OS after a burst. glibc's malloc keeps the
//! pages of freed chunks inside its heap for reuse (it returns only the
//! top of the main arena, past `M_TRIM_THRESHOLD`), so after a wave of
//! clients or origin names RSS stays at the high-water mark while the heap
//! in use is back to a few MiB. Every `EVERY`, when RSS exceeds the heap in
//! use by more than a quarter plus `SLACK`, `malloc_trim(0)` releases the
//! free pages of every arena (`madvise(MADV_DONTNEED)`); the heap gauges
//! keep working, as the allocator stays glibc's. Trimming only when RSS is
//! that far above the heap in use means a steady proxy never trims: the
//! check costs one read of `/proc/self/status` and `mallinfo2` every
//! `EVERY`. The trim runs on a blocking thread: it walks each arena's free
//! chunks under that arena's lock, a few milliseconds for a large heap.
//!
//! Why not an allocator that returns memory on its own (jemalloc's decay,
//! mimalloc)? Either adds a C library built at compile time, and the heap
//! gauges (`mallinfo2`) would need that allocator's own statistics; a
//! periodic trim reaches the same aim with glibc's malloc.

use std::time::Duration;

/// How often RSS is compared with the heap in use.
const EVERY: Duration = Duration::from_secs(10);
/// RSS above the heap in use (plus a quarter) that is left alone: the
/// binary, thread stacks and the allocator's working slack.
const SLACK: u64 = 16 << 20;

/// Whether RSS is far enough above the heap in use to trim.
pub(crate) fn worth_trimming(rss: u64, in_use: u64) -> bool {
    rss > in_use + in_use / 4 + SLACK
}

/// Starts the periodic check on the current runtime; a no-op where malloc
/// is not glibc's.
pub fn spawn() {
    if crate::sys::malloc_heap().is_none() {
        return;
    }
    tokio::spawn(async {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let rss = crate::metrics::process::read().rss_bytes;
            let in_use = crate::sys::malloc_heap().map(|(allocated, _)| allocated);
            let (Some(rss), Some(in_use)) = (rss, in_use) else {
                return;
            };
            if worth_trimming(rss, in_use) {
                let _ = tokio::task::spawn_blocking(crate::sys::malloc_trim).await;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_far_above_the_heap_in_use() {
        const MIB: u64 = 1 << 20;
        assert!(
            !worth_trimming(40 * MIB, 20 * MIB),
            "steady: 25 MiB + 16 MiB allowed"
        );
        assert!(worth_trimming(138 * MIB, 2 * MIB), "after a burst");
        assert!(!worth_trimming(18 * MIB, 2 * MIB));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_trim_gives_back_freed_pages() {
        // Many small chunks, then free all but every 64th: the heap is full
        // of holes that glibc keeps; the trim hands their pages back.
        let mut held: Vec<Vec<u8>> = (0..200_000).map(|_| vec![1u8; 512]).collect();
        let keep: Vec<Vec<u8>> = held.drain(..).step_by(64).collect();
        let before = crate::metrics::process::read().rss_bytes.expect("rss");
        crate::sys::malloc_trim();
        let after = crate::metrics::process::read().rss_bytes.expect("rss");
        // Other tests run alongside; 100 MiB were freed, most must go back.
        assert!(
            after + (40 << 20) < before,
            "RSS {before} before the trim, {after} after"
        );
        drop(keep);
    }
}
