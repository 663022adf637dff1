//! The per-origin request families, encoded at scrape time from the origin
//! table's entries (each owns its `OriginSeries`) plus the series of
//! requests that got no entry (`origin="none"`). An origin the table
//! removes is simply not there at the next scrape: there is no second map
//! to keep in step with the table.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;

use crate::upstream::{OriginHistogram, OriginSeries};

/// One origin's series under its `origin` label value.
pub(super) type Labelled<'a> = (&'a str, &'a OriginSeries);

/// The histogram families: name, help, which histogram.
const HISTOGRAMS: [(&str, &str, OriginHistogram); 4] = [
    (
        "ccnproxy_request_duration_seconds",
        "Time from request head received to last response byte sent (CONNECT excluded)",
        OriginHistogram::Request,
    ),
    (
        "ccnproxy_upstream_header_duration_seconds",
        "Time from sending the request upstream to the response head",
        OriginHistogram::UpstreamHeader,
    ),
    (
        "ccnproxy_upstream_duration_seconds",
        "Time from pool checkout to the last response byte from the origin",
        OriginHistogram::Upstream,
    ),
    (
        "ccnproxy_upstream_connect_duration_seconds",
        "TCP connect plus TLS handshake, for requests that opened a connection",
        OriginHistogram::UpstreamConnect,
    ),
];

/// Encodes every per-origin request family over `origins`.
pub(super) fn encode(enc: &mut DescriptorEncoder, origins: &[Labelled<'_>]) -> fmt::Result {
    // Counter names without `_total`: the encoder appends it.
    let mut family = enc.encode_descriptor(
        "ccnproxy_requests",
        "Requests finished, by origin, method and status class (origin \"none\": no origin entry, e.g. answered by the proxy itself, refused, or a CONNECT tunnel)",
        None,
        MetricType::Counter,
    )?;
    for (origin, series) in origins {
        for (method, code_class, n) in series.requests() {
            let labels = [
                ("origin", *origin),
                ("method", method),
                ("code_class", code_class),
            ];
            n.encode(family.encode_family(&labels)?)?;
        }
    }
    for (name, help, which) in HISTOGRAMS {
        let mut family = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (origin, series) in origins {
            if let Some(h) = series.histogram(which) {
                h.encode(family.encode_family(&[("origin", *origin)])?)?;
            }
        }
    }
    let mut family = enc.encode_descriptor(
        "ccnproxy_upstream_exchanges",
        "Upstream exchanges by protocol and whether the connection was reused or new",
        None,
        MetricType::Counter,
    )?;
    for (origin, series) in origins {
        for (protocol, connection, n) in series.exchanges() {
            let labels = [
                ("origin", *origin),
                ("protocol", protocol),
                ("connection", connection),
            ];
            n.encode(family.encode_family(&labels)?)?;
        }
    }
    let bytes: [(&str, &str, bool); 2] = [
        (
            "ccnproxy_request_bytes",
            "Request body bytes read from clients",
            true,
        ),
        (
            "ccnproxy_response_bytes",
            "Response body bytes sent to clients",
            false,
        ),
    ];
    for (name, help, received) in bytes {
        let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (origin, series) in origins {
            if let Some((from_client, to_client)) = series.bytes() {
                let n = if received { from_client } else { to_client };
                n.encode(family.encode_family(&[("origin", *origin)])?)?;
            }
        }
    }
    Ok(())
}
