//! `--rate-limit-redis`: one budget per client key for every replica that
//! points at the same Redis (or Valkey, ElastiCache).
//!
//! Redis keeps each key's bucket as one GCRA instant (as `super` does
//! locally), updated by a Lua script that also reads Redis's own clock, so
//! replicas' clocks do not matter. A replica takes tokens in small leases
//! (`lease` tokens, about 50 ms of the rate, 1 to 100) and spends them locally: a
//! client under its budget costs one round trip per lease, not per request.
//! A refusal is remembered locally until the next token is due, so a client
//! over its budget does not cost a round trip per request either. Unspent
//! leased tokens lapse after `LEASE_TTL` (the client loses them, the budget
//! is never exceeded by more than the leases in flight).
//!
//! Redis down, or slower than `timeout`: the request is decided by the
//! per-replica buckets instead (fail open), Redis is left alone for
//! `RETRY_AFTER_FAILURE`, then tried again; a warning when it goes, a line
//! when it is back, counters and a gauge in `/metrics`. Keys are
//! `ccnproxy:rl:INTERVAL_US:BURST:KEY` and expire when their bucket is full again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use crate::config::redact;

/// Leased tokens not spent within this are dropped.
pub const LEASE_TTL: Duration = Duration::from_secs(1);
/// After a failed or slow call, Redis is not asked again for this long.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// Client keys with local lease state at most; beyond it the table is cleared
/// of lapsed entries, then emptied (their leases are lost, never granted twice).
pub const MAX_LEASED_KEYS: usize = 65_536;

/// GCRA over a batch: grants up to ARGV[1] tokens of a bucket of ARGV[3]
/// tokens refilling one per ARGV[2] µs; returns {granted, µs until the next
/// token when none was granted}.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local want = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local capacity = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local avail = math.floor(capacity - (tat - now) / interval)
if avail <= 0 then
  return {0, math.ceil(tat - now - (capacity - 1) * interval)}
end
local grant = math.min(want, avail)
tat = tat + grant * interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return {grant, 0}
";

/// What Redis said about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A token was spent.
    Admit,
    /// Over budget; the next token is due after this.
    Deny(Duration),
    /// Redis could not be asked: decide locally.
    Unavailable,
}

/// Why `--rate-limit-redis` cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("--rate-limit-redis {url}")]
pub struct SharedError {
    /// The URL with its password redacted.
    url: String,
    #[source]
    source: redis::RedisError,
}

#[derive(Debug)]
struct Lease {
    tokens: u32,
    expires: Instant,
    denied_until: Option<Instant>,
}

/// Counters of the shared budget, registered with `/metrics`.
#[derive(Clone, Default)]
pub struct SharedCounters {
    calls: Counter,
    errors: Counter,
    local: Counter,
    shared: Gauge,
}

impl SharedCounters {
    /// Registers `ccnproxy_rate_limit_redis_calls_total`,
    /// `ccnproxy_rate_limit_redis_errors_total`,
    /// `ccnproxy_rate_limit_local_decisions_total` and
    /// `ccnproxy_rate_limit_shared`.
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> SharedCounters {
        let c = SharedCounters::default();
        registry.register(
            "ccnproxy_rate_limit_redis_calls",
            "Round trips to the --rate-limit-redis store (token leases)",
            c.calls.clone(),
        );
        registry.register(
            "ccnproxy_rate_limit_redis_errors",
            "Calls to the --rate-limit-redis store that failed or timed out",
            c.errors.clone(),
        );
        registry.register(
            "ccnproxy_rate_limit_local_decisions",
            "Requests decided by the per-replica buckets because the store was unavailable",
            c.local.clone(),
        );
        registry.register(
            "ccnproxy_rate_limit_shared",
            "1 while the rate-limit budget is shared through --rate-limit-redis, 0 while failing open to per-replica buckets",
            c.shared.clone(),
        );
        c.shared.set(1);
        c
    }
}

/// The Redis side of `--rate-limit`.
pub struct Shared {
    client: redis::Client,
    connection: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    script: redis::Script,
    prefix: String,
    interval_us: u64,
    capacity: u32,
    lease: u32,
    timeout: Duration,
    leases: Mutex<HashMap<Box<str>, Lease>>,
    down_until: Mutex<Option<Instant>>,
    counters: SharedCounters,
}

impl Shared {
    /// A budget of `count` per `period` (+ `burst`) per key, kept at `url`
    /// (`redis://HOST:PORT[/DB]` or `rediss://…`); nothing is connected yet.
    pub fn new(
        url: &str,
        count: u32,
        period: Duration,
        burst: u32,
        timeout: Duration,
        counters: SharedCounters,
    ) -> Result<Shared, SharedError> {
        if url.starts_with("rediss://") {
            // Redis's rustls needs a process-wide provider; ccnproxy uses ring.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(url).map_err(|source| SharedError {
            url: redact::url(url),
            source,
        })?;
        let count = count.max(1);
        let interval_us = u64::try_from((period / count).as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        // About 50 ms of the rate per lease.
        let lease = u32::try_from(50_000 / interval_us)
            .unwrap_or(100)
            .clamp(1, 100);
        Ok(Shared {
            client,
            connection: tokio::sync::Mutex::new(None),
            script: redis::Script::new(TAKE),
            prefix: format!("ccnproxy:rl:{interval_us}:{burst}:"),
            interval_us,
            capacity: count.saturating_add(burst),
            lease,
            timeout,
            leases: Mutex::new(HashMap::new()),
            down_until: Mutex::new(None),
            counters,
        })
    }

    /// Takes one token of `key`'s shared budget: from the local lease if
    /// one is left, else from Redis.
    pub async fn take(&self, key: &str) -> Decision {
        let now = Instant::now();
        {
            let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(lease) = leases.get_mut(key) {
                if lease.tokens > 0 && lease.expires > now {
                    lease.tokens -= 1;
                    return Decision::Admit;
                }
                if let Some(until) = lease.denied_until.filter(|u| *u > now) {
                    return Decision::Deny(until - now);
                }
            }
        }
        if self.is_down(now) {
            return Decision::Unavailable;
        }
        self.counters.calls.inc();
        let (granted, wait_us) = match tokio::time::timeout(self.timeout, self.fetch(key)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(err)) => {
                self.went_down(now, &err);
                return Decision::Unavailable;
            }
            Err(_) => {
                self.went_down(now, &format!("no answer within {:?}", self.timeout));
                return Decision::Unavailable;
            }
        };
        self.came_back();
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        if leases.len() >= MAX_LEASED_KEYS && !leases.contains_key(key) {
            leases.retain(|_, l| l.expires > now || l.denied_until.is_some_and(|u| u > now));
            if leases.len() >= MAX_LEASED_KEYS {
                leases.clear();
            }
        }
        let lease = leases.entry(key.into()).or_insert(Lease {
            tokens: 0,
            expires: now,
            denied_until: None,
        });
        if granted == 0 {
            let wait = Duration::from_micros(wait_us.max(1));
            lease.denied_until = Some(now + wait);
            return Decision::Deny(wait);
        }
        let left = if lease.expires > now { lease.tokens } else { 0 };
        lease.tokens = left.saturating_add(granted - 1);
        lease.expires = now + LEASE_TTL;
        lease.denied_until = None;
        Decision::Admit
    }

    /// One script call: (tokens granted, µs until the next one).
    async fn fetch(&self, key: &str) -> Result<(u32, u64), redis::RedisError> {
        let mut conn = {
            let mut slot = self.connection.lock().await;
            match &*slot {
                Some(conn) => conn.clone(),
                None => {
                    let conn = self.client.get_multiplexed_async_connection().await?;
                    *slot = Some(conn.clone());
                    conn
                }
            }
        };
        let answer: Result<(i64, i64), _> = self
            .script
            .key(format!("{}{key}", self.prefix))
            .arg(self.lease)
            .arg(self.interval_us)
            .arg(self.capacity)
            .invoke_async(&mut conn)
            .await;
        match answer {
            Ok((granted, wait)) => Ok((
                u32::try_from(granted).unwrap_or(0),
                u64::try_from(wait).unwrap_or(0),
            )),
            Err(err) => {
                // Reconnect next time rather than reuse a broken connection.
                *self.connection.lock().await = None;
                Err(err)
            }
        }
    }

    /// Counts a request decided by the per-replica buckets instead.
    pub fn count_local(&self) {
        self.counters.local.inc();
    }

    fn is_down(&self, now: Instant) -> bool {
        let down = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        down.is_some_and(|until| until > now)
    }

    fn went_down(&self, now: Instant, why: &dyn std::fmt::Display) {
        self.counters.errors.inc();
        let mut down = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        if down.is_none() {
            tracing::warn!(
                reason = %why,
                retry_in = ?RETRY_AFTER_FAILURE,
                "rate_limit.redis unavailable: per-replica budgets until it answers"
            );
        }
        *down = Some(now + RETRY_AFTER_FAILURE);
        self.counters.shared.set(0);
    }

    fn came_back(&self) {
        let mut down = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        if down.take().is_some() {
            tracing::info!("rate_limit.redis answers again: shared budget");
            self.counters.shared.set(1);
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("prefix", &self.prefix)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}
