//! Counters, gauges and histograms of the whole proxy, and the views over
//! them: Prometheus/OpenMetrics text (`render`, for `/metrics`) and the
//! chocon-style JSON numbers (`http_stats`, `process`, for `/.api/*`).
//!
//! `observe` takes each finished request's `Record` (every request: errors,
//! 499s and CONNECT tunnels too). Its cost is two map lookups under read
//! locks (origin series, client series) plus atomic adds and a short
//! per-histogram lock; new label values take a write lock once. Label values
//! a client can choose are capped (`capped.rs`): origins at `MAX_ORIGINS`,
//! client keys at `--max-client-keys`, methods to a fixed list. Pools, the
//! access log's counters and the process are read at scrape time
//! (`scrape.rs`). The client key is `client::client_key`, which
//! `ratelimit` uses too.

mod capped;
pub mod client;
mod latency;
pub mod process;
mod scrape;

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use http::{HeaderName, Method};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::accesslog::Record;
use crate::config::{ClientKey, MetricsConfig};
use crate::upstream::Protocol;
use capped::Capped;

pub use capped::OTHER;
pub use client::client_key;
pub use latency::{HttpStats, HttpStatsReport, RequestCounts, ResponseTimes};
pub use scrape::{LogStats, PoolCounts, PoolSnapshot, PoolSource};

/// Distinct origins with series of their own; the rest are `other`. Origins
/// are bounded by `--allow-host` already; this guards `--allow-host '*'`.
pub const MAX_ORIGINS: usize = 1000;

/// The `origin` label of answers the proxy made without routing (admin
/// endpoints, bad Host, rate limited).
pub const NO_ORIGIN: &str = "none";

/// Histogram buckets, seconds: AWS calls from 1 ms (same region, warm) to a
/// minute (large transfers, `--proxy-read-timeout`).
const BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// `method` label values; anything else is `OTHER`.
const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];

/// `code_class` label values; `other` is a status outside 100–599.
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

fn method_index(method: &Method) -> usize {
    METHODS[..METHODS.len() - 1]
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(METHODS.len() - 1)
}

fn class_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100) - 1,
        _ => CLASSES.len() - 1,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    origin: Arc<str>,
    method: &'static str,
    code_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabels {
    origin: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExchangeLabels {
    origin: Arc<str>,
    protocol: &'static str,
    connection: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClientLabels {
    client: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClientCodeLabels {
    client: Arc<str>,
    code_class: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The registered families; per-label handles are taken from them once and
/// kept in `OriginSeries` / `ClientSeries`.
#[derive(Clone)]
struct Families {
    requests: Family<RequestLabels, Counter>,
    request_duration: Histograms<OriginLabels>,
    upstream_header: Histograms<OriginLabels>,
    upstream_duration: Histograms<OriginLabels>,
    upstream_connect: Histograms<OriginLabels>,
    exchanges: Family<ExchangeLabels, Counter>,
    request_bytes: Family<OriginLabels, Counter>,
    response_bytes: Family<OriginLabels, Counter>,
    client_requests: Family<ClientCodeLabels, Counter>,
    client_seconds: Family<ClientLabels, Counter<f64>>,
    client_request_bytes: Family<ClientLabels, Counter>,
    client_response_bytes: Family<ClientLabels, Counter>,
    client_keys: Gauge,
}

impl Families {
    fn register(registry: &mut Registry) -> Self {
        let f = Families {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(histogram),
            upstream_header: Family::new_with_constructor(histogram),
            upstream_duration: Family::new_with_constructor(histogram),
            upstream_connect: Family::new_with_constructor(histogram),
            exchanges: Family::default(),
            request_bytes: Family::default(),
            response_bytes: Family::default(),
            client_requests: Family::default(),
            client_seconds: Family::default(),
            client_request_bytes: Family::default(),
            client_response_bytes: Family::default(),
            client_keys: Gauge::default(),
        };
        // Counter names without `_total`: the encoder appends it.
        let r = registry;
        r.register("ccnproxy_requests", "Requests finished, by origin, method and status class (origin \"none\": answered by the proxy itself)", f.requests.clone());
        r.register(
            "ccnproxy_request_duration_seconds",
            "Time from request head received to last response byte sent (CONNECT excluded)",
            f.request_duration.clone(),
        );
        r.register(
            "ccnproxy_upstream_header_duration_seconds",
            "Time from sending the request upstream to the response head",
            f.upstream_header.clone(),
        );
        r.register(
            "ccnproxy_upstream_duration_seconds",
            "Time from pool checkout to the last response byte from the origin",
            f.upstream_duration.clone(),
        );
        r.register(
            "ccnproxy_upstream_connect_duration_seconds",
            "TCP connect plus TLS handshake, for requests that opened a connection",
            f.upstream_connect.clone(),
        );
        r.register(
            "ccnproxy_upstream_exchanges",
            "Upstream exchanges by protocol and whether the connection was reused or new",
            f.exchanges.clone(),
        );
        r.register(
            "ccnproxy_request_bytes",
            "Request body bytes read from clients",
            f.request_bytes.clone(),
        );
        r.register(
            "ccnproxy_response_bytes",
            "Response body bytes sent to clients",
            f.response_bytes.clone(),
        );
        r.register(
            "ccnproxy_client_requests",
            "Requests finished, by client key and status class",
            f.client_requests.clone(),
        );
        r.register("ccnproxy_client_request_seconds", "Sum of request durations by client key (CONNECT excluded); divide by ccnproxy_client_requests_total for the mean", f.client_seconds.clone());
        r.register(
            "ccnproxy_client_request_bytes",
            "Request body bytes read, by client key",
            f.client_request_bytes.clone(),
        );
        r.register(
            "ccnproxy_client_response_bytes",
            "Response body bytes sent, by client key",
            f.client_response_bytes.clone(),
        );
        r.register(
            "ccnproxy_client_keys",
            "Distinct client keys with series of their own (capped by --max-client-keys)",
            f.client_keys.clone(),
        );
        f
    }
}

/// One origin's series.
struct OriginSeries {
    origin: Arc<str>,
    /// `[method][class]`, created on first use so unused pairs stay absent.
    requests: [[OnceLock<Counter>; CLASSES.len()]; METHODS.len()],
    /// `[h1, h2][new, reused]`.
    exchanges: [[OnceLock<Counter>; 2]; 2],
    duration: OnceLock<Histogram>,
    upstream_header: OnceLock<Histogram>,
    upstream_duration: OnceLock<Histogram>,
    upstream_connect: OnceLock<Histogram>,
    request_bytes: Counter,
    response_bytes: Counter,
}

impl OriginSeries {
    fn new(f: &Families, origin: Arc<str>) -> Self {
        let labels = OriginLabels {
            origin: origin.clone(),
        };
        OriginSeries {
            requests: Default::default(),
            exchanges: Default::default(),
            duration: OnceLock::new(),
            upstream_header: OnceLock::new(),
            upstream_duration: OnceLock::new(),
            upstream_connect: OnceLock::new(),
            request_bytes: f.request_bytes.get_or_create_owned(&labels),
            response_bytes: f.response_bytes.get_or_create_owned(&labels),
            origin,
        }
    }

    fn labels(&self) -> OriginLabels {
        OriginLabels {
            origin: self.origin.clone(),
        }
    }
}

/// One client key's series.
struct ClientSeries {
    client: Arc<str>,
    requests: [OnceLock<Counter>; CLASSES.len()],
    seconds: Counter<f64>,
    request_bytes: Counter,
    response_bytes: Counter,
}

impl ClientSeries {
    fn new(f: &Families, client: Arc<str>) -> Self {
        let labels = ClientLabels {
            client: client.clone(),
        };
        ClientSeries {
            requests: Default::default(),
            seconds: f.client_seconds.get_or_create_owned(&labels),
            request_bytes: f.client_request_bytes.get_or_create_owned(&labels),
            response_bytes: f.client_response_bytes.get_or_create_owned(&labels),
            client,
        }
    }
}

/// Process-wide metrics.
pub struct Metrics {
    registry: Registry,
    families: Families,
    origins: Capped<OriginSeries>,
    clients: Capped<ClientSeries>,
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

impl Metrics {
    /// Empty metrics; `pools` is read at each scrape (pass the `Upstream`).
    pub fn new(config: &MetricsConfig, pools: Arc<dyn PoolSource>) -> Self {
        let mut registry = Registry::default();
        let families = Families::register(&mut registry);
        let live = Arc::new(scrape::Live::new(pools));
        registry.register_collector(Box::new(scrape::Scrape(live.clone())));
        let key_headers = match &config.client_key {
            ClientKey::Header(name) => vec![name.clone()],
            ClientKey::Auto => Vec::new(),
        };
        Metrics {
            registry,
            families,
            origins: Capped::new(MAX_ORIGINS),
            clients: Capped::new(config.max_client_keys),
            client_key: config.client_key.clone(),
            key_headers,
            http: HttpStats::new(),
            live,
        }
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

    /// Accounts one finished request.
    pub fn observe(&self, record: &Record) {
        let f = &self.families;
        let class = class_index(record.status);
        let method = method_index(&record.method);
        // A tunnel's duration is its whole life, not a response time.
        let timed = record.method != Method::CONNECT;
        let secs = record.duration.as_secs_f64();

        let origin_key = record.origin.as_deref().unwrap_or(NO_ORIGIN);
        let origin = self.origins.get(origin_key, |o| OriginSeries::new(f, o));
        origin.requests[method][class]
            .get_or_init(|| {
                f.requests.get_or_create_owned(&RequestLabels {
                    origin: origin.origin.clone(),
                    method: METHODS[method],
                    code_class: CLASSES[class],
                })
            })
            .inc();
        origin.request_bytes.inc_by(record.bytes_received);
        origin.response_bytes.inc_by(record.bytes_sent);
        let labels = || origin.labels();
        if timed {
            origin
                .duration
                .get_or_init(|| f.request_duration.get_or_create_owned(&labels()))
                .observe(secs);
            if let Some(t) = &record.upstream {
                origin
                    .upstream_header
                    .get_or_init(|| f.upstream_header.get_or_create_owned(&labels()))
                    .observe(t.header.as_secs_f64());
                origin
                    .upstream_duration
                    .get_or_init(|| f.upstream_duration.get_or_create_owned(&labels()))
                    .observe(t.total.as_secs_f64());
                if !t.reused {
                    origin
                        .upstream_connect
                        .get_or_init(|| f.upstream_connect.get_or_create_owned(&labels()))
                        .observe((t.connect + t.tls).as_secs_f64());
                }
                let protocol = match t.protocol {
                    Protocol::H1 => 0,
                    Protocol::H2 => 1,
                };
                origin.exchanges[protocol][usize::from(t.reused)]
                    .get_or_init(|| {
                        f.exchanges.get_or_create_owned(&ExchangeLabels {
                            origin: origin.origin.clone(),
                            protocol: t.protocol.as_str(),
                            connection: if t.reused { "reused" } else { "new" },
                        })
                    })
                    .inc();
            }
        }

        let key = self.client_key(record);
        let client = self.clients.get(&key, |c| {
            if c.as_ref() != OTHER {
                f.client_keys.inc();
            }
            ClientSeries::new(f, c)
        });
        client.requests[class]
            .get_or_init(|| {
                f.client_requests.get_or_create_owned(&ClientCodeLabels {
                    client: client.client.clone(),
                    code_class: CLASSES[class],
                })
            })
            .inc();
        if timed {
            client.seconds.inc_by(secs);
        }
        client.request_bytes.inc_by(record.bytes_received);
        client.response_bytes.inc_by(record.bytes_sent);

        self.http
            .record(record.status, timed.then_some(record.duration));
    }

    /// The exposition for `/metrics` (OpenMetrics text, which Prometheus
    /// reads; serve it as `CONTENT_TYPE`).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(32 << 10);
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(
                error = &err as &dyn std::error::Error,
                "metrics.render failed"
            );
        }
        out
    }

    /// `/.api/http-stats`.
    pub fn http_stats(&self) -> HttpStatsReport {
        self.http.report()
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
