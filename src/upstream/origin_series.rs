//! One origin's request series: counts by method and status class, byte
//! counts, and duration histograms. The origin table's entry owns them, so
//! they are removed with the origin's pool and DNS answer; `/metrics`
//! encodes them by walking the table (`metrics::origin_families`). A series
//! no request touched stays absent from the exposition rather than showing
//! zero, so each is made on first use.

use std::sync::OnceLock;
use std::time::Duration;

use http::Method;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::{Protocol, Timing};

/// Histogram buckets, seconds: AWS calls from 1 ms (same region, warm) to a
/// minute (large transfers, `--proxy-read-timeout`).
const BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// `method` label values; anything else is the last, `OTHER`.
pub const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];

/// `code_class` label values; `other` is a status outside 100–599.
pub const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// `connection` label values of an upstream exchange, by `Timing::reused`.
const CONNECTIONS: [&str; 2] = ["new", "reused"];

fn method_index(method: &Method) -> usize {
    METHODS[..METHODS.len() - 1]
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(METHODS.len() - 1)
}

/// The index of `status` in [`CLASSES`].
pub fn class_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100) - 1,
        _ => CLASSES.len() - 1,
    }
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// What a finished request adds to its origin's series.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    /// The request's method.
    pub method: &'a Method,
    /// The status sent to the client.
    pub status: u16,
    /// Request body bytes read from the client.
    pub bytes_received: u64,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// Head received to last byte sent.
    pub duration: Duration,
    /// The upstream exchange, if there was one.
    pub upstream: Option<&'a Timing>,
    /// False for a CONNECT tunnel, whose duration is its whole life, not a
    /// response time.
    pub timed: bool,
}

/// One origin's series.
#[derive(Debug, Default)]
pub struct OriginSeries {
    /// `[method][class]`.
    requests: [[OnceLock<Counter>; CLASSES.len()]; METHODS.len()],
    /// `[h1, h2][new, reused]`.
    exchanges: [[OnceLock<Counter>; 2]; 2],
    duration: OnceLock<Histogram>,
    upstream_header: OnceLock<Histogram>,
    upstream_duration: OnceLock<Histogram>,
    upstream_connect: OnceLock<Histogram>,
    /// Made with the first request, like the others.
    bytes: OnceLock<(Counter, Counter)>,
}

/// A histogram of [`OriginSeries`], for encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginHistogram {
    /// Head received to last byte sent (CONNECT excluded).
    Request,
    /// Request sent upstream to response head.
    UpstreamHeader,
    /// Pool checkout to the last response byte from the origin.
    Upstream,
    /// TCP connect plus TLS handshake, for requests that opened one.
    UpstreamConnect,
}

impl OriginSeries {
    /// Accounts one finished request.
    pub fn observe(&self, r: &Finished<'_>) {
        let counter = |slot: &OnceLock<Counter>| slot.get_or_init(Counter::default).inc();
        counter(&self.requests[method_index(r.method)][class_index(r.status)]);
        let (received, sent) = self.bytes.get_or_init(Default::default);
        received.inc_by(r.bytes_received);
        sent.inc_by(r.bytes_sent);
        if !r.timed {
            return;
        }
        let observe = |slot: &OnceLock<Histogram>, d: Duration| {
            slot.get_or_init(histogram).observe(d.as_secs_f64())
        };
        observe(&self.duration, r.duration);
        let Some(t) = r.upstream else { return };
        observe(&self.upstream_header, t.header);
        observe(&self.upstream_duration, t.total);
        if !t.reused {
            observe(&self.upstream_connect, t.connect + t.tls);
        }
        let protocol = match t.protocol {
            Protocol::H1 => 0,
            Protocol::H2 => 1,
        };
        counter(&self.exchanges[protocol][usize::from(t.reused)]);
    }

    /// Request counts that exist: `(method, code_class, counter)`.
    pub fn requests(&self) -> impl Iterator<Item = (&'static str, &'static str, &Counter)> {
        self.requests.iter().enumerate().flat_map(|(m, classes)| {
            classes
                .iter()
                .enumerate()
                .filter_map(move |(c, slot)| slot.get().map(|n| (METHODS[m], CLASSES[c], n)))
        })
    }

    /// Upstream exchange counts that exist: `(protocol, connection, counter)`.
    pub fn exchanges(&self) -> impl Iterator<Item = (&'static str, &'static str, &Counter)> {
        let protocols = [Protocol::H1.as_str(), Protocol::H2.as_str()];
        self.exchanges
            .iter()
            .enumerate()
            .flat_map(move |(p, kinds)| {
                kinds.iter().enumerate().filter_map(move |(k, slot)| {
                    slot.get().map(|n| (protocols[p], CONNECTIONS[k], n))
                })
            })
    }

    /// Request and response body bytes, once a request was counted.
    pub fn bytes(&self) -> Option<(&Counter, &Counter)> {
        self.bytes.get().map(|(received, sent)| (received, sent))
    }

    /// The histogram `which`, once a request filled it.
    pub fn histogram(&self, which: OriginHistogram) -> Option<&Histogram> {
        match which {
            OriginHistogram::Request => &self.duration,
            OriginHistogram::UpstreamHeader => &self.upstream_header,
            OriginHistogram::Upstream => &self.upstream_duration,
            OriginHistogram::UpstreamConnect => &self.upstream_connect,
        }
        .get()
    }
}
