//! Counters, gauges and histograms of the whole proxy, and the views over
//! them: Prometheus/OpenMetrics text (`render`, for `/metrics`) and the
//! chocon-style JSON numbers (`http_stats`, `process`, for `/.api/*`).
//!
//! `observe` takes each finished request's `Record` (every request: errors,
//! 499s and CONNECT tunnels too) and the series of its origin's entry, which
//! the request holds until it is accounted for. Its cost is one map lookup
//! under a read lock (client series) plus atomic adds and a short
//! per-histogram lock; a new client key takes a write lock once. Per-origin
//! series live in the origin table's entries, bounded by `--max-origins`
//! and removed with them; a request with no entry (refused, bad Host, the
//! proxy's own answers, CONNECT tunnels) counts under `origin="none"`.
//! Client keys are capped at `--max-client-keys` and in time by
//! `--client-series-ttl` (`clients.rs`, served on the admin listener only),
//! methods to a fixed list. The origin table, the access log's counters and
//! the process are read at scrape time (`scrape.rs`, `origin_families.rs`).
//! The client key is `client::client_key`, which `ratelimit` uses too.

pub mod client;
mod clients;
mod latency;
mod origin_families;
pub mod process;
mod sample;
mod scrape;
pub mod text004;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use http::{HeaderName, Method};
use prometheus_client::registry::Registry;

use crate::accesslog::Record;
use crate::config::{ClientKey, MetricsConfig};
use crate::upstream::{Finished, OriginSeries};
use clients::Clients;

pub use client::client_key;
pub use clients::OTHER;
pub use latency::{HttpStats, HttpStatsReport, RequestCounts, ResponseTimes};
pub use scrape::{LogStats, PoolCounts, PoolSnapshot, PoolSource};

/// The `origin` label of requests that got no origin entry: answers the
/// proxy made without routing (admin endpoints, bad Host, rate limited),
/// hosts refused by `--allow-host`/`--deny-host`, origins refused under
/// `--max-origins`, and CONNECT tunnels.
pub const NO_ORIGIN: &str = "none";

/// Who a `/metrics` page is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The proxy port, which every client can reach: nothing per client.
    Proxy,
    /// The admin listener (`--metrics-listen`): per-client series too.
    Admin,
}

/// Process-wide metrics.
pub struct Metrics {
    registry: Registry,
    clients: Clients,
    client_key: ClientKey,
    key_headers: Vec<HeaderName>,
    http: HttpStats,
    live: Arc<scrape::Live>,
}

/// Holds one open client connection in `ccnproxy_client_connections`.
pub struct ClientConnection(Arc<scrape::Live>);

impl Drop for ClientConnection {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Holds one idle client connection in `ccnproxy_client_connections_idle`.
pub struct IdleConnection(Arc<scrape::Live>);

impl Drop for IdleConnection {
    fn drop(&mut self) {
        self.0.connections_idle.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Empty metrics; `pools` is read at each scrape (pass the `Upstream`).
    pub fn new(config: &MetricsConfig, pools: Arc<dyn PoolSource>) -> Self {
        let mut registry = Registry::default();
        let clients = Clients::new(
            config.max_client_keys,
            config.client_series_ttl,
            &mut registry,
        );
        let live = Arc::new(scrape::Live::new(pools));
        registry.register_collector(Box::new(scrape::Scrape(live.clone())));
        let key_headers = match &config.client_key {
            ClientKey::Header(name) => vec![name.clone()],
            ClientKey::Auto | ClientKey::Account | ClientKey::Vpce => Vec::new(),
        };
        Metrics {
            registry,
            clients,
            client_key: config.client_key.clone(),
            key_headers,
            http: HttpStats::new(),
            live,
        }
    }

    /// The registry, for components that count their own events
    /// (`identity`); use before the `Metrics` is shared.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// `/.api/http-stats` times the last sampled requests (`--stsize`,
    /// `--spfactor`) instead of the last minute; size 0 keeps the minute.
    pub fn with_http_sample(mut self, config: &crate::config::HttpStatsConfig) -> Self {
        self.http = self
            .http
            .with_sample(config.sample_size, config.sampling_factor);
        self
    }

    /// Request headers the client key needs in `Record::request_headers`;
    /// the request path copies these as well as the access log's.
    pub fn request_headers(&self) -> &[HeaderName] {
        &self.key_headers
    }

    /// The client key of `record` (for metrics and `--rate-limit`).
    pub fn client_key<'a>(&self, record: &'a Record) -> Cow<'a, str> {
        client_key(&self.client_key, record)
    }

    /// Hook for the access log's write counters, read at each scrape
    /// (`ccnproxy_log_lines_total`, `ccnproxy_log_write_errors_total`; absent
    /// until set). Only the first call takes effect.
    pub fn set_log_stats(&self, read: impl Fn() -> LogStats + Send + Sync + 'static) {
        let _ = self.live.log_stats.set(Box::new(read));
    }

    /// Counts a client connection as open until the guard is dropped.
    pub fn client_connection(&self) -> ClientConnection {
        self.live.connections.fetch_add(1, Ordering::Relaxed);
        self.live.connections_total.fetch_add(1, Ordering::Relaxed);
        ClientConnection(self.live.clone())
    }

    /// Counts a release of a client connection's buffers, and the
    /// connection as idle (holding none) until the guard is dropped.
    pub fn idle_connection(&self) -> IdleConnection {
        self.live.connections_idle.fetch_add(1, Ordering::Relaxed);
        self.live
            .connections_released
            .fetch_add(1, Ordering::Relaxed);
        IdleConnection(self.live.clone())
    }

    /// Counts a connection to `--metrics-listen` refused over
    /// `--max-admin-conns`.
    pub fn admin_connection_refused(&self) {
        self.live.admin_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Accounts one finished request, into `origin`: the series of the
    /// origin entry it held, or `None` when it got none.
    pub fn observe(&self, record: &Record, origin: Option<&OriginSeries>) {
        // A tunnel's duration is its whole life, not a response time.
        let timed = record.method != Method::CONNECT;
        origin.unwrap_or(&self.live.no_origin).observe(&Finished {
            method: &record.method,
            status: record.status,
            bytes_received: record.bytes_received,
            bytes_sent: record.bytes_sent,
            duration: record.duration,
            upstream: record.upstream.as_ref(),
            timed,
        });
        self.clients
            .observe(&self.client_key(record), record, timed);
        self.http
            .record(record.status, timed.then_some(record.duration));
    }

    /// The exposition for `/metrics` (OpenMetrics text, which Prometheus
    /// reads; serve it as `CONTENT_TYPE`). Per-client series are in it only
    /// for `View::Admin`.
    pub fn render(&self, view: View) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::with_capacity(32 << 10);
        let mut encoded = encode_registry(&mut out, &self.registry);
        if view == View::Admin {
            self.clients.sweep();
            encoded = encoded.and_then(|()| encode_registry(&mut out, self.clients.registry()));
        }
        if let Err(err) = encoded.and_then(|()| encode_eof(&mut out)) {
            tracing::warn!(
                error = &err as &dyn std::error::Error,
                "metrics.render failed"
            );
        }
        out
    }

    /// `/.api/http-stats`: over the `--stsize` sample when set, else over
    /// the last minute.
    pub fn http_stats(&self) -> HttpStatsReport {
        self.http.report()
    }

    /// `/.api/http-stats?window=1`: over the last minute, whatever `--stsize` says.
    pub fn http_stats_window(&self) -> HttpStatsReport {
        self.http.report_window()
    }

    /// Requests finished since start.
    pub fn requests(&self) -> u64 {
        self.http.count()
    }

    /// Open client connections (as counted by `client_connection`).
    pub fn client_connections(&self) -> u64 {
        self.live.connections.load(Ordering::Relaxed).max(0) as u64
    }

    /// How long the proxy has been running.
    pub fn uptime(&self) -> Duration {
        self.live.started.elapsed()
    }

    /// When the proxy started (wall clock).
    pub fn started(&self) -> SystemTime {
        self.live.started_wall
    }
}

/// `Content-Type` of `render`'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests;
