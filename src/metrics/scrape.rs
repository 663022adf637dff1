//! Numbers read at scrape time rather than counted per request: the origin
//! table's entries, pools and request series alike (through `PoolSource`), the access log's write counters (a hook the log
//! fills in), open client connections, uptime and the process (`process_*`,
//! the names every Prometheus client uses).

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use tokio::time::Instant;

use crate::upstream::{OriginCounts, OriginSeries, PoolStats, Upstream};

use super::{NO_ORIGIN, origin_families, process};

/// One origin's entry as metrics see it: its pool and its request series.
#[derive(Debug, Clone, Default)]
pub struct PoolSnapshot {
    /// `https://host:443`.
    pub origin: String,
    /// Connections and streams now.
    pub stats: PoolStats,
    /// Event counters since the pool was created.
    pub counts: PoolCounts,
    /// The requests counted for the origin (held by its entry).
    pub series: Arc<OriginSeries>,
}

/// A pool's counters (`pool::Counters`), read once.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolCounts {
    /// Connections opened.
    pub handshakes: u64,
    /// Connection attempts that failed.
    pub connect_errors: u64,
    /// DNS lookups.
    pub dns_refreshes: u64,
    /// Requests retried on a fresh connection.
    pub retries: u64,
    /// Requests that waited for capacity.
    pub queue_waits: u64,
    /// Requests that waited too long.
    pub queue_timeouts: u64,
    /// Requests sent.
    pub requests: u64,
}

/// Where per-origin numbers come from (the `Upstream`'s origin table; a
/// fixed list in tests).
pub trait PoolSource: Send + Sync + 'static {
    /// Every origin's entry, now.
    fn snapshot(&self) -> Vec<PoolSnapshot>;

    /// The origin table's counters, if there is one.
    fn origin_counts(&self) -> Option<OriginCounts> {
        None
    }
}

impl PoolSource for Upstream {
    fn origin_counts(&self) -> Option<OriginCounts> {
        Some(Upstream::origin_counts(self))
    }

    fn snapshot(&self) -> Vec<PoolSnapshot> {
        self.entries()
            .into_iter()
            .map(|entry| {
                let pool = &entry.pool;
                let c = &pool.counters;
                let read = |a: &AtomicU64| a.load(Ordering::Relaxed);
                PoolSnapshot {
                    origin: pool.origin().to_string(),
                    stats: pool.stats(),
                    counts: PoolCounts {
                        handshakes: read(&c.handshakes),
                        connect_errors: read(&c.connect_errors),
                        dns_refreshes: read(&c.dns_refreshes),
                        retries: read(&c.retries),
                        queue_waits: read(&c.queue_waits),
                        queue_timeouts: read(&c.queue_timeouts),
                        requests: read(&c.requests),
                    },
                    series: entry.series,
                }
            })
            .collect()
    }
}

/// The access log's write counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Lines written.
    pub lines: u64,
    /// Writes that failed (the line is lost).
    pub write_errors: u64,
    /// Lines dropped because the queue was full (drop mode).
    pub dropped: u64,
    /// Records that waited for room in the queue (block mode).
    pub waited: u64,
    /// Records in the queue now.
    pub queued_lines: u64,
    /// Estimated bytes held by the records in the queue now.
    pub queued_bytes: u64,
}

type LogStatsFn = Box<dyn Fn() -> LogStats + Send + Sync>;

/// State shared by `Metrics`, the collector and connection guards.
pub(crate) struct Live {
    pub(crate) pools: Arc<dyn PoolSource>,
    /// Requests that got no origin entry (`origin="none"`).
    pub(crate) no_origin: OriginSeries,
    pub(crate) log_stats: OnceLock<LogStatsFn>,
    pub(crate) connections: AtomicI64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) connections_idle: AtomicI64,
    pub(crate) connections_released: AtomicU64,
    pub(crate) admin_refused: AtomicU64,
    pub(crate) started: Instant,
    pub(crate) started_wall: SystemTime,
}

impl Live {
    pub(crate) fn new(pools: Arc<dyn PoolSource>) -> Self {
        Live {
            pools,
            no_origin: OriginSeries::default(),
            log_stats: OnceLock::new(),
            connections: AtomicI64::new(0),
            connections_total: AtomicU64::new(0),
            connections_idle: AtomicI64::new(0),
            connections_released: AtomicU64::new(0),
            admin_refused: AtomicU64::new(0),
            started: Instant::now(),
            started_wall: SystemTime::now(),
        }
    }
}

/// Encodes `Live` on each scrape.
pub(crate) struct Scrape(pub(crate) Arc<Live>);

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scrape")
    }
}

fn gauge<V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: V,
) -> fmt::Result {
    ConstGauge::new(value).encode(enc.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    ConstCounter::new(value).encode(enc.encode_descriptor(name, help, None, MetricType::Counter)?)
}

/// A pool metric: name, help, and how to read it from a snapshot.
type PoolField = (&'static str, &'static str, fn(&PoolSnapshot) -> u64);

/// One series per pool: `name{origin}`.
fn per_pool(
    enc: &mut DescriptorEncoder,
    pools: &[PoolSnapshot],
    name: &str,
    help: &str,
    kind: MetricType,
    value: impl Fn(&PoolSnapshot) -> u64,
) -> fmt::Result {
    if pools.is_empty() {
        return Ok(());
    }
    let mut family = enc.encode_descriptor(name, help, None, kind)?;
    for pool in pools {
        let labels = [("origin", pool.origin.as_str())];
        let series = family.encode_family(&labels)?;
        let v = value(pool);
        match kind {
            MetricType::Counter => ConstCounter::new(v).encode(series)?,
            _ => ConstGauge::new(v).encode(series)?,
        }
    }
    Ok(())
}

/// `ccnproxy_pool_idle_timeout_learned_seconds{origin}`, for the pools
/// that learned how long their origin keeps idle connections.
fn learned_idle_timeouts(enc: &mut DescriptorEncoder, pools: &[PoolSnapshot]) -> fmt::Result {
    let learned: Vec<_> = pools
        .iter()
        .filter_map(|p| Some((p.origin.as_str(), p.stats.learned_idle_timeout?)))
        .collect();
    if learned.is_empty() {
        return Ok(());
    }
    let mut family = enc.encode_descriptor(
        "ccnproxy_pool_idle_timeout_learned_seconds",
        "How long the origin keeps an idle HTTP/1.1 connection, as learned from Keep-Alive or its closes; idle connections are retired a margin before it.",
        None,
        MetricType::Gauge,
    )?;
    for (origin, timeout) in learned {
        let labels = [("origin", origin)];
        let series = family.encode_family(&labels)?;
        ConstGauge::new(timeout.as_secs_f64()).encode(series)?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let live = &self.0;
        let mut pools = live.pools.snapshot();
        pools.sort_by(|a, b| a.origin.cmp(&b.origin));
        gauge(
            &mut enc,
            "ccnproxy_pools",
            "Upstream pools (one per origin).",
            pools.len(),
        )?;
        if let Some(origins) = live.pools.origin_counts() {
            counter(
                &mut enc,
                "ccnproxy_origins_expired",
                "Origins whose state was removed after --origin-idle-ttl unused.",
                origins.expired,
            )?;
            counter(
                &mut enc,
                "ccnproxy_origins_evicted",
                "Origins unused for --origin-idle-ttl removed to make room under --max-origins.",
                origins.evicted,
            )?;
            counter(
                &mut enc,
                "ccnproxy_origins_refused",
                "Requests refused with 503 because --max-origins origins were all in use or used within --origin-idle-ttl.",
                origins.refused,
            )?;
        }
        let mut origins: Vec<origin_families::Labelled<'_>> = pools
            .iter()
            .map(|p| (p.origin.as_str(), &*p.series))
            .collect();
        origins.push((NO_ORIGIN, &live.no_origin));
        origin_families::encode(&mut enc, &origins)?;
        let gauges: [PoolField; 7] = [
            (
                "ccnproxy_pool_open_connections",
                "Open upstream connections (HTTP/1.1 and HTTP/2, incl. connecting).",
                |p| p.stats.open as u64,
            ),
            (
                "ccnproxy_pool_idle_connections",
                "Idle HTTP/1.1 upstream connections.",
                |p| p.stats.idle as u64,
            ),
            (
                "ccnproxy_pool_busy_connections",
                "HTTP/1.1 upstream connections carrying a request.",
                |p| p.stats.busy as u64,
            ),
            (
                "ccnproxy_pool_h2_connections",
                "Open HTTP/2 upstream connections.",
                |p| p.stats.h2_conns as u64,
            ),
            (
                "ccnproxy_pool_h2_streams",
                "HTTP/2 streams in flight.",
                |p| p.stats.h2_streams as u64,
            ),
            (
                "ccnproxy_pool_addresses",
                "Addresses the origin currently resolves to.",
                |p| p.stats.addrs.len() as u64,
            ),
            (
                "ccnproxy_pool_ejected_addresses",
                "Addresses left out of new connections after failed connects.",
                |p| p.stats.ejected as u64,
            ),
        ];
        for (name, help, value) in gauges {
            per_pool(&mut enc, &pools, name, help, MetricType::Gauge, value)?;
        }
        learned_idle_timeouts(&mut enc, &pools)?;
        // Counter names without `_total`: the encoder appends it.
        let counters: [PoolField; 8] = [
            (
                "ccnproxy_pool_handshakes",
                "Upstream connections opened (TCP, TLS and HTTP handshakes done).",
                |p| p.counts.handshakes,
            ),
            (
                "ccnproxy_pool_connect_errors",
                "Upstream connection attempts that failed.",
                |p| p.counts.connect_errors,
            ),
            (
                "ccnproxy_pool_dns_refreshes",
                "DNS lookups for the origin.",
                |p| p.counts.dns_refreshes,
            ),
            (
                "ccnproxy_pool_retries",
                "Requests retried once on a fresh connection.",
                |p| p.counts.retries,
            ),
            (
                "ccnproxy_pool_queue_waits",
                "Requests that waited for a free connection or stream.",
                |p| p.counts.queue_waits,
            ),
            (
                "ccnproxy_pool_queue_timeouts",
                "Requests that waited past the pool wait timeout (503).",
                |p| p.counts.queue_timeouts,
            ),
            (
                "ccnproxy_pool_requests",
                "Requests sent upstream by the pool.",
                |p| p.counts.requests,
            ),
            (
                "ccnproxy_pool_ejections",
                "Addresses ejected after a failed or too slow connect.",
                |p| p.stats.ejections,
            ),
        ];
        for (name, help, value) in counters {
            per_pool(&mut enc, &pools, name, help, MetricType::Counter, value)?;
        }

        if let Some(read) = live.log_stats.get() {
            let stats = read();
            counter(
                &mut enc,
                "ccnproxy_log_lines",
                "Access-log lines written.",
                stats.lines,
            )?;
            counter(
                &mut enc,
                "ccnproxy_log_write_errors",
                "Access-log writes that failed.",
                stats.write_errors,
            )?;
            counter(
                &mut enc,
                "ccnproxy_log_lines_dropped",
                "Access-log lines dropped because the queue was full (--access-log-when-full drop).",
                stats.dropped,
            )?;
            counter(
                &mut enc,
                "ccnproxy_log_queue_waits",
                "Requests that waited for room in the full access-log queue (--access-log-when-full block).",
                stats.waited,
            )?;
            gauge(
                &mut enc,
                "ccnproxy_log_queue_lines",
                "Access-log records waiting for the writer.",
                i64::try_from(stats.queued_lines).unwrap_or(i64::MAX),
            )?;
            gauge(
                &mut enc,
                "ccnproxy_log_queue_bytes",
                "Estimated bytes held by access-log records waiting for the writer.",
                i64::try_from(stats.queued_bytes).unwrap_or(i64::MAX),
            )?;
        }

        gauge(
            &mut enc,
            "ccnproxy_client_connections",
            "Open client connections.",
            live.connections.load(Ordering::Relaxed).max(0),
        )?;
        gauge(
            &mut enc,
            "ccnproxy_client_connections_idle",
            "Idle keep-alive client connections that gave their buffers back.",
            live.connections_idle.load(Ordering::Relaxed).max(0),
        )?;
        counter(
            &mut enc,
            "ccnproxy_client_connection_releases",
            "Times a quiet keep-alive client connection gave its buffers back.",
            live.connections_released.load(Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            "ccnproxy_admin_connections_refused",
            "Connections to --metrics-listen refused over --max-admin-conns.",
            live.admin_refused.load(Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            "ccnproxy_client_connections_accepted",
            "Client connections accepted.",
            live.connections_total.load(Ordering::Relaxed),
        )?;
        gauge(
            &mut enc,
            "ccnproxy_uptime_seconds",
            "Seconds since the proxy started.",
            live.started.elapsed().as_secs_f64(),
        )?;
        let version = [("version", env!("CARGO_PKG_VERSION"))];
        let mut info = enc.encode_descriptor(
            "ccnproxy_build",
            "ccnproxy version.",
            None,
            MetricType::Info,
        )?;
        info.encode_info(&version)?;

        encode_process(&mut enc, live)
    }
}

fn encode_process(enc: &mut DescriptorEncoder, live: &Live) -> fmt::Result {
    let p = process::read();
    // Only here, not in `/.api/stats`: glibc locks each arena to sum it.
    let heap = crate::sys::malloc_heap();
    let start = live
        .started_wall
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    gauge(
        enc,
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch, in seconds.",
        start.as_secs_f64(),
    )?;
    if let (Some(user), Some(system)) = (p.cpu_user_seconds, p.cpu_system_seconds) {
        let cpu = ConstCounter::new(user + system);
        cpu.encode(enc.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent, in seconds.",
            None,
            MetricType::Counter,
        )?)?;
    }
    let optional: [(&str, &str, Option<u64>); 7] = [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            p.rss_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            p.virtual_bytes,
        ),
        ("process_open_fds", "Open file descriptors.", p.open_fds),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            p.max_fds,
        ),
        ("process_threads", "OS threads in the process.", p.threads),
        (
            "ccnproxy_heap_allocated_bytes",
            "Bytes malloc has handed out and not had back (glibc): flat unless the proxy holds more.",
            heap.map(|(allocated, _)| allocated),
        ),
        (
            "ccnproxy_heap_held_bytes",
            "Bytes malloc holds from the OS, in use or free for reuse (glibc).",
            heap.map(|(_, held)| held),
        ),
    ];
    for (name, help, value) in optional {
        if let Some(v) = value {
            gauge(enc, name, help, v)?;
        }
    }
    Ok(())
}
