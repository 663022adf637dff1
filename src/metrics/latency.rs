//! `/.api/http-stats` (chocon's `go-httpstats` shape): request counts by
//! status since start, and response-time percentiles over the last minute,
//! or with `--stsize` over the last sampled requests (`sample.rs`).
//!
//! Percentiles come from a log-bucket histogram (HDR style: 32 buckets per
//! power of two of microseconds, so any reported value is within ~1.6% of
//! the true one), fixed size, updated with relaxed atomics; no lock on the
//! request path. The minute is six 10-second slots; a slot is cleared when
//! its turn comes again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::sample::{self, LastRequests};

/// The statuses chocon always lists, even at zero.
const LISTED: [u16; 10] = [200, 400, 401, 403, 404, 500, 501, 502, 503, 504];
/// Percentiles reported.
const PERCENTS: [u8; 4] = [50, 90, 95, 99];
/// Length of one slot.
const SLOT: Duration = Duration::from_secs(10);
/// Slots in the window.
const SLOTS: usize = 6;

const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Values are clamped below 2^40 µs (about 12.7 days).
const MAX_EXP: u32 = 39;
const BUCKETS: usize = (SUB + (MAX_EXP + 1 - SUB_BITS) as u64 * SUB) as usize;

/// The bucket of `us` microseconds.
fn bucket(us: u64) -> usize {
    let us = us.min((1 << (MAX_EXP + 1)) - 1);
    if us < SUB {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros();
    let shift = exp - SUB_BITS;
    let mantissa = (us >> shift) - SUB;
    (SUB + u64::from(shift) * SUB + mantissa) as usize
}

/// The middle of bucket `index`, in microseconds.
fn midpoint(index: usize) -> f64 {
    let index = index as u64;
    if index < SUB {
        return index as f64;
    }
    let shift = (index - SUB) / SUB;
    let low = (SUB + (index - SUB) % SUB) << shift;
    low as f64 + ((1u64 << shift) as f64 - 1.0) / 2.0
}

/// One 10-second slot.
struct Slot {
    /// Which slot-length period since start this slot holds (`u64::MAX`: none yet).
    period: AtomicU64,
    count: AtomicU64,
    sum_us: AtomicU64,
    min_us: AtomicU64,
    max_us: AtomicU64,
    buckets: Box<[AtomicU64]>,
}

impl Slot {
    fn new() -> Self {
        Slot {
            period: AtomicU64::new(u64::MAX),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
            min_us: AtomicU64::new(u64::MAX),
            max_us: AtomicU64::new(0),
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn clear(&self) {
        self.count.store(0, Ordering::Relaxed);
        self.sum_us.store(0, Ordering::Relaxed);
        self.min_us.store(u64::MAX, Ordering::Relaxed);
        self.max_us.store(0, Ordering::Relaxed);
        for b in self.buckets.iter() {
            b.store(0, Ordering::Relaxed);
        }
    }
}

/// Status counts since start and response times of the last minute.
pub struct HttpStats {
    started: Instant,
    count: AtomicU64,
    /// Indexed by status; anything past 599 is only in `count`.
    statuses: Box<[AtomicU64]>,
    slots: [Slot; SLOTS],
    /// `--stsize`: the last sampled requests, reported instead of the window.
    last: Option<LastRequests>,
}

/// `/.api/http-stats`.
#[derive(Debug, Serialize)]
pub struct HttpStatsReport {
    /// Counts since start.
    pub request: RequestCounts,
    /// Response times over the window.
    pub response: ResponseTimes,
}

/// The `request` half of `/.api/http-stats`.
#[derive(Debug, Serialize)]
pub struct RequestCounts {
    /// Requests finished since start.
    pub count: u64,
    /// Requests by status (chocon's ten always present, others once seen).
    pub status_count: BTreeMap<u16, u64>,
}

/// The `response` half of `/.api/http-stats`; times in seconds, 0 when the
/// window holds no request.
#[derive(Debug, Serialize)]
pub struct ResponseTimes {
    /// Slowest.
    pub max_time: f64,
    /// Fastest.
    pub min_time: f64,
    /// Mean.
    pub average_time: f64,
    /// `"50"`, `"90"`, `"95"`, `"99"` → seconds.
    pub percentiled_time: BTreeMap<u8, f64>,
    /// Requests the times are computed from.
    pub sample_count: u64,
    /// Length of the window (absent when the times cover `sample_size`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_sec: Option<u64>,
    /// `--stsize`: the times cover the last this many sampled requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_size: Option<usize>,
}

impl HttpStats {
    /// Empty stats; the window starts now.
    pub fn new() -> Self {
        HttpStats {
            started: Instant::now(),
            count: AtomicU64::new(0),
            statuses: (0..600).map(|_| AtomicU64::new(0)).collect(),
            slots: std::array::from_fn(|_| Slot::new()),
            last: None,
        }
    }

    /// Also keeps the last `size` sampled response times (one in `factor`),
    /// and reports those instead of the window; `size` 0 keeps the window.
    pub fn with_sample(mut self, size: usize, factor: u32) -> Self {
        self.last = (size > 0).then(|| LastRequests::new(size, factor));
        self
    }

    /// Counts one request; `time` is its response time, `None` to count it
    /// without timing it (CONNECT tunnels, whose time is the tunnel's life).
    pub fn record(&self, status: u16, time: Option<Duration>) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self.statuses.get(usize::from(status)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let Some(time) = time else { return };
        if let Some(last) = &self.last {
            last.record(time);
        }
        let period = self.period(Instant::now());
        let slot = &self.slots[(period % SLOTS as u64) as usize];
        let seen = slot.period.load(Ordering::Acquire);
        if seen != period {
            if seen > period && seen != u64::MAX {
                // This thread stalled past a turn of the slots: the sample is
                // older than the window already.
                return;
            }
            // Whoever moves the slot to this period clears it. A sample
            // added by another thread between the swap and the clear is lost;
            // harmless for a statistic.
            if slot
                .period
                .compare_exchange(seen, period, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                slot.clear();
            }
        }
        let us = u64::try_from(time.as_micros()).unwrap_or(u64::MAX);
        slot.count.fetch_add(1, Ordering::Relaxed);
        slot.sum_us.fetch_add(us, Ordering::Relaxed);
        slot.min_us.fetch_min(us, Ordering::Relaxed);
        slot.max_us.fetch_max(us, Ordering::Relaxed);
        slot.buckets[bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests finished since start.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The report as of now: over the sample with `--stsize`, else the window.
    pub fn report(&self) -> HttpStatsReport {
        match &self.last {
            Some(last) => self.report_sample(last),
            None => self.report_window(),
        }
    }

    /// The report over the last sampled requests.
    fn report_sample(&self, last: &LastRequests) -> HttpStatsReport {
        let sorted = last.sorted_us();
        let secs = |us: u64| us as f64 / 1e6;
        let count = sorted.len() as u64;
        let response = ResponseTimes {
            max_time: sorted.last().copied().map_or(0.0, secs),
            min_time: sorted.first().copied().map_or(0.0, secs),
            average_time: if count == 0 {
                0.0
            } else {
                sorted.iter().map(|&us| us as f64).sum::<f64>() / count as f64 / 1e6
            },
            percentiled_time: PERCENTS
                .iter()
                .map(|&p| {
                    let t = if sorted.is_empty() {
                        0.0
                    } else {
                        secs(sample::percentile(&sorted, p))
                    };
                    (p, t)
                })
                .collect(),
            sample_count: count,
            window_sec: None,
            sample_size: Some(last.size()),
        };
        HttpStatsReport {
            request: self.request_counts(),
            response,
        }
    }

    fn request_counts(&self) -> RequestCounts {
        let mut status_count: BTreeMap<u16, u64> = LISTED.iter().map(|&s| (s, 0)).collect();
        for (status, c) in self.statuses.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            if n > 0 {
                status_count.insert(status as u16, n);
            }
        }
        RequestCounts {
            count: self.count(),
            status_count,
        }
    }

    /// The report over the last minute, whatever `--stsize` says.
    pub fn report_window(&self) -> HttpStatsReport {
        let now = self.period(Instant::now());
        let mut count = 0u64;
        let mut sum_us = 0u64;
        let mut min_us = u64::MAX;
        let mut max_us = 0u64;
        let mut merged = vec![0u64; BUCKETS];
        for slot in &self.slots {
            let period = slot.period.load(Ordering::Acquire);
            if period == u64::MAX || period > now || now - period >= SLOTS as u64 {
                continue;
            }
            count += slot.count.load(Ordering::Relaxed);
            sum_us = sum_us.saturating_add(slot.sum_us.load(Ordering::Relaxed));
            min_us = min_us.min(slot.min_us.load(Ordering::Relaxed));
            max_us = max_us.max(slot.max_us.load(Ordering::Relaxed));
            for (m, b) in merged.iter_mut().zip(slot.buckets.iter()) {
                *m += b.load(Ordering::Relaxed);
            }
        }

        let secs = |us: f64| us / 1e6;
        let response = if count == 0 {
            ResponseTimes {
                max_time: 0.0,
                min_time: 0.0,
                average_time: 0.0,
                percentiled_time: PERCENTS.iter().map(|&p| (p, 0.0)).collect(),
                sample_count: 0,
                window_sec: Some((SLOT * SLOTS as u32).as_secs()),
                sample_size: None,
            }
        } else {
            let percentile = |p: u8| {
                // The smallest value with at least p% of the samples at or below it.
                let rank = (count * u64::from(p)).div_ceil(100).max(1);
                let mut seen = 0;
                for (i, n) in merged.iter().enumerate() {
                    seen += n;
                    if seen >= rank {
                        return midpoint(i).clamp(min_us as f64, max_us as f64);
                    }
                }
                max_us as f64
            };
            ResponseTimes {
                max_time: secs(max_us as f64),
                min_time: secs(min_us as f64),
                average_time: secs(sum_us as f64 / count as f64),
                percentiled_time: PERCENTS.iter().map(|&p| (p, secs(percentile(p)))).collect(),
                sample_count: count,
                window_sec: Some((SLOT * SLOTS as u32).as_secs()),
                sample_size: None,
            }
        };
        HttpStatsReport {
            request: self.request_counts(),
            response,
        }
    }

    fn period(&self, now: Instant) -> u64 {
        (now.duration_since(self.started).as_millis() / SLOT.as_millis()) as u64
    }
}

impl Default for HttpStats {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        let samples = (0..64u64)
            .chain((6..40).flat_map(|e| [(1u64 << e) - 1, 1 << e, (1 << e) + 1, 3 << (e - 1)]));
        for us in samples {
            let b = bucket(us);
            assert!(b >= last, "bucket({us}) = {b} went backwards");
            last = b;
            let mid = midpoint(b);
            let err = (mid - us as f64).abs() / (us.max(1) as f64);
            assert!(err <= 1.0 / SUB as f64, "{us} µs reported as {mid} ({err})");
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_of_known_samples() {
        let stats = HttpStats::new();
        for ms in 1..=100u64 {
            stats.record(200, Some(Duration::from_millis(ms)));
        }
        stats.record(502, Some(Duration::from_millis(1)));
        stats.record(499, None);
        let r = stats.report();
        assert_eq!(r.request.count, 102);
        assert_eq!(r.request.status_count[&200], 100);
        assert_eq!(r.request.status_count[&502], 1);
        assert_eq!(r.request.status_count[&499], 1);
        assert_eq!(
            r.request.status_count[&404], 0,
            "chocon's statuses are always listed"
        );
        assert_eq!(r.response.sample_count, 101);
        assert_eq!(r.response.min_time, 0.001);
        assert_eq!(r.response.max_time, 0.1);
        let close = |got: f64, want: f64| (got - want).abs() / want <= 0.02;
        let p = &r.response.percentiled_time;
        assert!(close(p[&50], 0.050), "p50 {}", p[&50]);
        assert!(close(p[&90], 0.090), "p90 {}", p[&90]);
        assert!(close(p[&99], 0.099), "p99 {}", p[&99]);
        assert!(close(r.response.average_time, 5051.0 / 101.0 / 1000.0));
    }

    #[test]
    fn stsize_reports_the_last_requests_and_keeps_the_window() {
        let stats = HttpStats::new().with_sample(4, 1);
        for ms in [500, 1, 2, 3, 4] {
            stats.record(200, Some(Duration::from_millis(ms)));
        }
        let r = stats.report();
        assert_eq!(r.request.count, 5);
        assert_eq!(r.response.sample_count, 4, "the 500 ms request fell out");
        assert_eq!(r.response.sample_size, Some(4));
        assert_eq!(r.response.window_sec, None);
        assert_eq!(r.response.max_time, 0.004);
        assert_eq!(r.response.min_time, 0.001);
        assert_eq!(r.response.average_time, 0.0025);
        assert_eq!(r.response.percentiled_time[&50], 0.002);
        assert_eq!(r.response.percentiled_time[&99], 0.004);
        let w = stats.report_window();
        assert_eq!(w.response.sample_count, 5, "the minute still has all five");
        assert_eq!(w.response.window_sec, Some(60));
        assert_eq!(w.response.max_time, 0.5);
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["response"]["sample_size"], 4);
        assert!(json["response"].get("window_sec").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn old_samples_leave_the_window() {
        let stats = HttpStats::new();
        stats.record(200, Some(Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(30)).await;
        stats.record(200, Some(Duration::from_millis(10)));
        assert_eq!(stats.report().response.sample_count, 2);
        assert_eq!(stats.report().response.max_time, 5.0);

        tokio::time::advance(Duration::from_secs(35)).await;
        let r = stats.report();
        assert_eq!(
            r.response.sample_count, 1,
            "the 5 s sample is over a minute old"
        );
        assert_eq!(r.response.max_time, 0.01);

        // The slot of the first sample comes round again and is cleared.
        tokio::time::advance(Duration::from_secs(55)).await;
        stats.record(200, Some(Duration::from_millis(20)));
        let r = stats.report();
        assert_eq!(r.response.sample_count, 1);
        assert_eq!(r.response.max_time, 0.02);
        assert_eq!(r.request.count, 3, "counts are since start");

        tokio::time::advance(Duration::from_secs(600)).await;
        let r = stats.report();
        assert_eq!(r.response.sample_count, 0);
        assert_eq!(r.response.percentiled_time[&99], 0.0);
    }
}
