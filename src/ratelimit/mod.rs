//! `--rate-limit` / `--rate-burst`: a token bucket per client key (the key of
//! `metrics::client_key`, so budgets and per-client metrics agree).
//!
//! Each bucket holds `rate + burst` tokens and refills at `rate` per second;
//! a request takes one token or is refused with the time until the next
//! one. A bucket is kept as one instant (GCRA's "theoretical arrival time":
//! when the bucket would be full again), so the arithmetic is exact and a
//! bucket costs one `Instant`. Buckets live in a sharded map (one short
//! mutex hold per check). A full bucket is the same as no bucket, so full
//! ones are dropped whenever a shard fills up; if a shard is full of active
//! keys, the eighth closest to full is dropped (memory stays bounded, at the
//! price of those keys starting over with a full bucket).
//!
//! With `--rate-limit-redis` the budget is shared by every replica through
//! Redis (`shared`); these local buckets then decide only while Redis is
//! unavailable (fail open to a per-replica budget).

mod shared;

pub use shared::{
    Decision, LEASE_TTL, MAX_LEASED_KEYS, RETRY_AFTER_FAILURE, Shared, SharedCounters, SharedError,
};

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::LimitsConfig;

const SHARDS: usize = 32;
/// Keys tracked at most, over all shards, unless `with_max_keys` says otherwise.
pub const DEFAULT_MAX_KEYS: usize = 65_536;

/// Key → the instant its bucket is full again.
type Shard = Mutex<HashMap<Box<str>, Instant>>;

/// Token buckets per client key.
pub struct RateLimiter {
    /// Time to earn one token.
    interval: Duration,
    /// How far ahead of now a bucket's full time may be and still hold a
    /// token: `(capacity - 1) * interval`.
    tolerance: Duration,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Shard]>,
    shared: Option<Shared>,
}

impl RateLimiter {
    /// `rate_per_sec` requests per second per key (at least 1), plus `burst`
    /// at once: a key idle for a while may send `rate_per_sec + burst` back to
    /// back. Use `from_config` for "0 = off".
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        let rate = rate_per_sec.max(1);
        let interval = Duration::from_nanos(1_000_000_000 / u64::from(rate));
        let capacity = rate.saturating_add(burst);
        RateLimiter {
            interval,
            tolerance: interval * (capacity - 1),
            per_shard: DEFAULT_MAX_KEYS.div_ceil(SHARDS),
            hasher: Default::default(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            shared: None,
        }
    }

    /// Shares the budget through Redis; these buckets become the fallback.
    pub fn with_shared(mut self, shared: Option<Shared>) -> Self {
        self.shared = shared;
        self
    }

    /// Takes one token of `key`'s budget: the shared one when
    /// `--rate-limit-redis` is set and answers, else this replica's.
    pub async fn admit(&self, key: &str) -> Result<(), Duration> {
        if let Some(shared) = &self.shared {
            match shared.take(key).await {
                Decision::Admit => return Ok(()),
                Decision::Deny(wait) => return Err(wait),
                Decision::Unavailable => shared.count_local(),
            }
        }
        self.check(key)
    }

    /// The limiter `--rate-limit` asks for, or `None` when it is 0 (off).
    pub fn from_config(limits: &LimitsConfig) -> Option<Self> {
        (limits.rate_limit > 0)
            .then(|| Self::per(limits.rate_limit, limits.rate_period, limits.rate_burst))
    }

    /// `count` requests per `period` per key (at least 1), plus `burst` at
    /// once: a bucket holds `count + burst` tokens and earns one every
    /// `period / count`.
    pub fn per(count: u32, period: Duration, burst: u32) -> Self {
        let count = count.max(1);
        let mut limiter = Self::new(count, burst);
        limiter.interval = (period / count).max(Duration::from_nanos(1));
        limiter.tolerance = limiter.interval * (count.saturating_add(burst) - 1);
        limiter
    }

    /// Tracks at most about `max` keys (rounded up to a multiple of the shard count).
    pub fn with_max_keys(mut self, max: usize) -> Self {
        self.per_shard = max.div_ceil(SHARDS).max(1);
        self
    }

    /// Takes one token of `key`'s budget, or says how long until one is free.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut buckets = shard.lock().unwrap_or_else(|e| e.into_inner());
        let full_at = match buckets.get_mut(key) {
            Some(full_at) => full_at,
            None => {
                if buckets.len() >= self.per_shard {
                    self.evict(&mut buckets, now);
                }
                buckets.entry(key.into()).or_insert(now)
            }
        };
        let start = (*full_at).max(now);
        let ahead = start.duration_since(now);
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        *full_at = start + self.interval;
        Ok(())
    }

    /// Keys with a bucket now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// No key has a bucket.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room in a full shard: drops every full bucket, and if that frees
    /// nothing, the eighth closest to full.
    fn evict(&self, buckets: &mut HashMap<Box<str>, Instant>, now: Instant) {
        buckets.retain(|_, full_at| *full_at > now);
        if buckets.len() < self.per_shard {
            return;
        }
        let mut times: Vec<Instant> = buckets.values().copied().collect();
        let cut = (times.len() / 8).max(1);
        let (_, &mut last_dropped, _) = times.select_nth_unstable(cut - 1);
        buckets.retain(|_, full_at| *full_at > last_dropped);
        if buckets.len() >= self.per_shard {
            // All buckets share one instant; any one will do.
            let victim = buckets.keys().next().cloned();
            if let Some(k) = victim {
                buckets.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bucket_allows_rate_plus_burst_then_refills() {
        let limiter = RateLimiter::new(2, 3);
        for i in 0..5 {
            assert_eq!(
                limiter.check("a"),
                Ok(()),
                "request {i} is within rate + burst"
            );
        }
        let wait = limiter.check("a").unwrap_err();
        assert_eq!(
            wait,
            Duration::from_millis(500),
            "one token every 1/rate seconds"
        );
        assert_eq!(limiter.check("b"), Ok(()), "keys have separate buckets");

        tokio::time::advance(Duration::from_millis(499)).await;
        assert!(limiter.check("a").is_err());
        tokio::time::advance(Duration::from_millis(1)).await;
        // The refused check at 499 ms did not take a token.
        assert_eq!(limiter.check("a"), Ok(()));
        assert!(limiter.check("a").is_err());

        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..5 {
            assert_eq!(limiter.check("a"), Ok(()), "refills up to capacity only");
        }
        assert!(limiter.check("a").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn steady_rate_is_served() {
        let limiter = RateLimiter::new(10, 0);
        for _ in 0..10 {
            limiter.check("k").unwrap();
        }
        for _ in 0..50 {
            assert!(limiter.check("k").is_err());
            tokio::time::advance(Duration::from_millis(100)).await;
            assert_eq!(limiter.check("k"), Ok(()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn per_minute_rate_refills_once_every_period_over_count() {
        let limiter = RateLimiter::per(6, Duration::from_secs(60), 1);
        for i in 0..7 {
            assert_eq!(limiter.check("a"), Ok(()), "request {i} is within 6 + 1");
        }
        assert_eq!(limiter.check("a"), Err(Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(limiter.check("a"), Ok(()));
        assert!(limiter.check("a").is_err());
    }

    #[test]
    fn config_zero_is_off() {
        let mut limits = crate::config::Config::default().limits;
        assert!(RateLimiter::from_config(&limits).is_none());
        limits.rate_limit = 5;
        assert!(RateLimiter::from_config(&limits).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_buckets_are_evicted_to_stay_bounded() {
        let limiter = RateLimiter::new(1, 0).with_max_keys(SHARDS);
        // One bucket per shard at most; each key is full again before the next.
        for i in 0..1000 {
            limiter
                .check(&format!("key-{i}"))
                .unwrap_or_else(|_| panic!("key-{i} is new"));
            tokio::time::advance(Duration::from_secs(2)).await;
        }
        assert!(limiter.len() <= SHARDS, "{} buckets", limiter.len());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_shard_of_active_keys_drops_the_oldest() {
        let limiter = RateLimiter::new(1, 0).with_max_keys(SHARDS * 8);
        let keys: Vec<String> = (0..2000).map(|i| format!("k{i}")).collect();
        for key in &keys {
            // Every key spends its only token: no bucket is idle.
            limiter.check(key).unwrap();
            assert!(limiter.check(key).is_err());
            tokio::time::advance(Duration::from_micros(10)).await;
        }
        assert!(limiter.len() <= SHARDS * 8, "{} buckets", limiter.len());
        let last = keys.last().unwrap();
        assert!(
            limiter.check(last).is_err(),
            "the newest key keeps its bucket"
        );
    }

    #[test]
    fn contention_is_safe() {
        let limiter = std::sync::Arc::new(RateLimiter::new(1000, 0));
        let started = std::time::Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let limiter = limiter.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|_| limiter.check("shared").is_ok())
                        .count()
                })
            })
            .collect();
        let allowed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        // 1000 tokens at start plus one per millisecond the threads ran.
        let refilled = started.elapsed().as_millis() as usize + 1;
        assert!(
            (1000..=1000 + refilled).contains(&allowed),
            "allowed {allowed}"
        );
    }
}
