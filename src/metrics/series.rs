//! The per-origin series: label sets, the registered families, and the
//! handles one origin uses (`OriginSeries`), taken from the families once so
//! `observe` does not hash label sets on every request (the per-client ones
//! are `clients.rs`). A series a request never touched stays
//! absent from the exposition rather than showing zero.

use std::sync::{Arc, OnceLock};

use http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::accesslog::Record;
use crate::upstream::Protocol;

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
pub(super) const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

fn method_index(method: &Method) -> usize {
    METHODS[..METHODS.len() - 1]
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(METHODS.len() - 1)
}

pub(super) fn class_index(status: u16) -> usize {
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

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The registered families; per-label handles are taken from them once and
/// kept in `OriginSeries`.
#[derive(Clone)]
pub(super) struct Families {
    requests: Family<RequestLabels, Counter>,
    request_duration: Histograms<OriginLabels>,
    upstream_header: Histograms<OriginLabels>,
    upstream_duration: Histograms<OriginLabels>,
    upstream_connect: Histograms<OriginLabels>,
    exchanges: Family<ExchangeLabels, Counter>,
    request_bytes: Family<OriginLabels, Counter>,
    response_bytes: Family<OriginLabels, Counter>,
}

impl Families {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let f = Families {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(histogram),
            upstream_header: Family::new_with_constructor(histogram),
            upstream_duration: Family::new_with_constructor(histogram),
            upstream_connect: Family::new_with_constructor(histogram),
            exchanges: Family::default(),
            request_bytes: Family::default(),
            response_bytes: Family::default(),
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
        f
    }
}

/// One origin's series.
pub(super) struct OriginSeries {
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
    pub(super) fn new(f: &Families, origin: Arc<str>) -> Self {
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

    /// Takes every series of this origin out of the families (the origin's
    /// state was removed; its series go with it).
    pub(super) fn remove(&self, f: &Families) {
        for method in METHODS {
            for code_class in CLASSES {
                f.requests.remove(&RequestLabels {
                    origin: self.origin.clone(),
                    method,
                    code_class,
                });
            }
        }
        for protocol in [Protocol::H1, Protocol::H2] {
            for connection in ["new", "reused"] {
                f.exchanges.remove(&ExchangeLabels {
                    origin: self.origin.clone(),
                    protocol: protocol.as_str(),
                    connection,
                });
            }
        }
        let labels = self.labels();
        for family in [
            &f.request_duration,
            &f.upstream_header,
            &f.upstream_duration,
            &f.upstream_connect,
        ] {
            family.remove(&labels);
        }
        f.request_bytes.remove(&labels);
        f.response_bytes.remove(&labels);
    }

    /// Accounts `record`; `timed` is false for a CONNECT tunnel, whose
    /// duration is its whole life, not a response time.
    pub(super) fn observe(&self, f: &Families, record: &Record, timed: bool) {
        let method = method_index(&record.method);
        let class = class_index(record.status);
        self.requests[method][class]
            .get_or_init(|| {
                f.requests.get_or_create_owned(&RequestLabels {
                    origin: self.origin.clone(),
                    method: METHODS[method],
                    code_class: CLASSES[class],
                })
            })
            .inc();
        self.request_bytes.inc_by(record.bytes_received);
        self.response_bytes.inc_by(record.bytes_sent);
        if !timed {
            return;
        }
        let labels = || self.labels();
        self.duration
            .get_or_init(|| f.request_duration.get_or_create_owned(&labels()))
            .observe(record.duration.as_secs_f64());
        let Some(t) = &record.upstream else { return };
        self.upstream_header
            .get_or_init(|| f.upstream_header.get_or_create_owned(&labels()))
            .observe(t.header.as_secs_f64());
        self.upstream_duration
            .get_or_init(|| f.upstream_duration.get_or_create_owned(&labels()))
            .observe(t.total.as_secs_f64());
        if !t.reused {
            self.upstream_connect
                .get_or_init(|| f.upstream_connect.get_or_create_owned(&labels()))
                .observe((t.connect + t.tls).as_secs_f64());
        }
        let protocol = match t.protocol {
            Protocol::H1 => 0,
            Protocol::H2 => 1,
        };
        self.exchanges[protocol][usize::from(t.reused)]
            .get_or_init(|| {
                f.exchanges.get_or_create_owned(&ExchangeLabels {
                    origin: self.origin.clone(),
                    protocol: t.protocol.as_str(),
                    connection: if t.reused { "reused" } else { "new" },
                })
            })
            .inc();
    }
}
