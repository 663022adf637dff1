//! `--stsize N` / `--spfactor F`: chocon's `/.api/http-stats` response
//! times, over the last `N` sampled requests rather than a time window. One
//! request in `F` (at random, as chocon's go-httpstats) is written into a
//! ring of `N` times; the report sorts a copy, so percentiles are exact.
//! Unlike go-httpstats, slots not yet written do not count as zero times.

use std::sync::Mutex;
use std::time::Duration;

/// The last `size` sampled response times.
pub(crate) struct LastRequests {
    factor: u32,
    ring: Mutex<Ring>,
}

struct Ring {
    times_us: Vec<u64>,
    size: usize,
    next: usize,
}

impl LastRequests {
    /// A ring of `size` times (at least 1), sampling one request in `factor`.
    pub(crate) fn new(size: usize, factor: u32) -> Self {
        let size = size.max(1);
        LastRequests {
            factor: factor.max(1),
            ring: Mutex::new(Ring {
                times_us: Vec::with_capacity(size.min(1 << 16)),
                size,
                next: 0,
            }),
        }
    }

    /// Offers one response time; kept with probability `1 / factor`.
    pub(crate) fn record(&self, time: Duration) {
        if self.factor > 1 && fastrand::u32(..self.factor) != 0 {
            return;
        }
        let us = u64::try_from(time.as_micros()).unwrap_or(u64::MAX);
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.times_us.len() < ring.size {
            ring.times_us.push(us);
        } else {
            let next = ring.next;
            ring.times_us[next] = us;
        }
        ring.next = (ring.next + 1) % ring.size;
    }

    /// The times held now, in microseconds, sorted.
    pub(crate) fn sorted_us(&self) -> Vec<u64> {
        let mut times = self
            .ring
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .times_us
            .clone();
        times.sort_unstable();
        times
    }

    /// The ring's size (`--stsize`).
    pub(crate) fn size(&self) -> usize {
        self.ring.lock().unwrap_or_else(|e| e.into_inner()).size
    }
}

/// The nearest-rank `p`th percentile of sorted, non-empty `times`.
pub(crate) fn percentile(sorted: &[u64], p: u8) -> u64 {
    let rank = (sorted.len() * usize::from(p)).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_n() {
        let last = LastRequests::new(3, 1);
        for ms in 1..=5 {
            last.record(Duration::from_millis(ms));
        }
        assert_eq!(last.sorted_us(), vec![3000, 4000, 5000]);
        assert_eq!(last.size(), 3);
    }

    #[test]
    fn samples_about_one_in_factor() {
        let last = LastRequests::new(100_000, 4);
        for _ in 0..40_000 {
            last.record(Duration::from_millis(1));
        }
        let kept = last.sorted_us().len();
        // Binomial(40000, 1/4): mean 10000, sd about 87.
        assert!((9_000..11_000).contains(&kept), "kept {kept}");
    }

    #[test]
    fn nearest_rank() {
        let times: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&times, 50), 50);
        assert_eq!(percentile(&times, 99), 99);
        assert_eq!(percentile(&[7], 90), 7);
        assert_eq!(percentile(&[1, 2], 50), 1);
        assert_eq!(percentile(&[1, 2], 51), 2);
    }
}
