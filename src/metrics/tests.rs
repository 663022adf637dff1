//! `Metrics` end to end: observe known records, render, parse the text with
//! `prometheus-parse`, assert exact numbers.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use prometheus_parse::{Scrape, Value};

use super::*;
use crate::identity::verified::VerifiedClient;
use crate::scope::CredentialScope;
use crate::upstream::{PoolStats, Protocol, Timing};

const S3: &str = "https://s3.amazonaws.com:443";

struct Fixed(Vec<PoolSnapshot>);

impl PoolSource for Fixed {
    fn snapshot(&self) -> Vec<PoolSnapshot> {
        self.0.clone()
    }
}

fn metrics(client_key: ClientKey, max_client_keys: usize) -> Metrics {
    let config = MetricsConfig {
        client_key,
        max_client_keys,
        client_series_ttl: Duration::from_secs(600),
    };
    Metrics::new(&config, Arc::new(Fixed(Vec::new())))
}

fn record(method: Method, origin: Option<&str>, status: u16) -> Record {
    Record {
        received: SystemTime::UNIX_EPOCH,
        duration: Duration::from_millis(20),
        client: SocketAddr::from(([10, 0, 0, 9], 40000)),
        via: None,
        local_port: 3000,
        method,
        uri: Uri::from_static("/"),
        version: Version::HTTP_11,
        host: String::new(),
        status,
        bytes_sent: 0,
        bytes_received: 0,
        request_headers: HeaderMap::new(),
        response_headers: HeaderMap::new(),
        request_id: String::new(),
        origin: origin.map(str::to_owned),
        upstream: None,
        scope: None,
        verified: None,
        error: None,
    }
}

/// `r` from a client that signed with `access_key`, as the signer verified it.
fn signed(mut r: Record, access_key: &str) -> Record {
    r.scope = Some(CredentialScope {
        access_key: access_key.to_owned(),
        ..Default::default()
    });
    r.verified = Some(VerifiedClient {
        access_key_id: access_key.to_owned(),
        name: None,
    });
    r
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("exposition parses")
}

/// The value of the one sample `name{labels}` (labels must match exactly).
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| {
            s.labels.len() == labels.len() && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v))
        })
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{name} is not a scalar: {other:?}"),
        })
        .collect();
    assert!(found.len() <= 1, "{name}{labels:?} matched {found:?}");
    found.first().copied()
}

fn series(scrape: &Scrape, name: &str) -> usize {
    scrape.samples.iter().filter(|s| s.metric == name).count()
}

#[test]
fn known_records_render_exact_counts() {
    let s3 = Arc::new(OriginSeries::default());
    let pools = Fixed(vec![PoolSnapshot {
        origin: S3.to_owned(),
        series: s3.clone(),
        stats: PoolStats {
            open: 3,
            idle: 1,
            busy: 2,
            h2_conns: 0,
            h2_streams: 0,
            addrs: vec![
                "52.216.0.1:443".parse().unwrap(),
                "52.216.0.2:443".parse().unwrap(),
            ],
            ejected: 1,
            ejections: 3,
            learned_idle_timeout: None,
        },
        counts: PoolCounts {
            handshakes: 4,
            connect_errors: 1,
            dns_refreshes: 2,
            retries: 1,
            queue_waits: 5,
            queue_timeouts: 0,
            requests: 9,
        },
    }]);
    let config = MetricsConfig {
        client_key: ClientKey::Auto,
        max_client_keys: 100,
        client_series_ttl: std::time::Duration::from_secs(600),
    };
    let m = Metrics::new(&config, Arc::new(pools));
    m.set_log_stats(|| LogStats {
        lines: 7,
        write_errors: 1,
        ..LogStats::default()
    });
    let _conn = m.client_connection();

    // 1. A signed GET on a new HTTP/1.1 connection.
    let mut r = signed(record(Method::GET, Some(S3), 200), "AKIAONE");
    r.bytes_received = 10;
    r.bytes_sent = 1000;
    r.upstream = Some(Timing {
        reused: false,
        connect: Duration::from_millis(3),
        tls: Duration::from_millis(4),
        header: Duration::from_millis(12),
        total: Duration::from_millis(15),
        ..Default::default()
    });
    m.observe(&r, Some(&s3));
    // 2. A signed GET over a reused HTTP/2 stream.
    let mut r = signed(record(Method::GET, Some(S3), 200), "AKIAONE");
    r.duration = Duration::from_millis(2);
    r.bytes_sent = 500;
    r.upstream = Some(Timing {
        reused: true,
        protocol: Protocol::H2,
        header: Duration::from_millis(1),
        total: Duration::from_millis(1),
        ..Default::default()
    });
    m.observe(&r, Some(&s3));
    // 3. An unsigned PUT the pool could not serve.
    let mut r = record(Method::PUT, Some(S3), 503);
    r.bytes_received = 4096;
    m.observe(&r, Some(&s3));
    // 4. The proxy's own /healthz.
    m.observe(&record(Method::GET, None, 200), None);
    // 5. A CONNECT tunnel that lived a minute (no origin entry: "none").
    let mut r = record(Method::CONNECT, Some("tcp://example.com:443"), 200);
    r.duration = Duration::from_secs(60);
    r.bytes_received = 300;
    r.bytes_sent = 700;
    m.observe(&r, None);
    // 6. A client that left (499) and an odd method.
    m.observe(
        &record(Method::from_bytes(b"BREW").unwrap(), Some(S3), 499),
        Some(&s3),
    );

    let text = m.render(View::Admin);
    let s = parse(&text);
    let requests = |origin, method, class| {
        value(
            &s,
            "ccnproxy_requests_total",
            &[
                ("origin", origin),
                ("method", method),
                ("code_class", class),
            ],
        )
    };
    assert_eq!(requests(S3, "GET", "2xx"), Some(2.0));
    assert_eq!(requests(S3, "PUT", "5xx"), Some(1.0));
    assert_eq!(requests(S3, "OTHER", "4xx"), Some(1.0));
    assert_eq!(requests(NO_ORIGIN, "GET", "2xx"), Some(1.0));
    assert_eq!(requests(NO_ORIGIN, "CONNECT", "2xx"), Some(1.0));
    assert_eq!(
        series(&s, "ccnproxy_requests_total"),
        5,
        "no zero series:\n{text}"
    );

    let origin = |o| [("origin", o)];
    assert_eq!(
        value(&s, "ccnproxy_request_bytes_total", &origin(S3)),
        Some(4106.0)
    );
    assert_eq!(
        value(&s, "ccnproxy_response_bytes_total", &origin(S3)),
        Some(1500.0)
    );
    assert_eq!(
        value(&s, "ccnproxy_response_bytes_total", &origin(NO_ORIGIN)),
        Some(700.0)
    );
    // Durations: the S3 requests and /healthz, never the tunnel.
    assert_eq!(
        value(
            &s,
            "ccnproxy_request_duration_seconds_count",
            &origin(NO_ORIGIN)
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "ccnproxy_request_duration_seconds_count", &origin(S3)),
        Some(4.0)
    );
    let sum = value(&s, "ccnproxy_request_duration_seconds_sum", &origin(S3)).unwrap();
    assert!((sum - 0.062).abs() < 1e-9, "sum {sum}");
    let hist = s
        .samples
        .iter()
        .find(|x| {
            x.metric == "ccnproxy_request_duration_seconds" && x.labels.get("origin") == Some(S3)
        })
        .expect("S3 duration histogram");
    let Value::Histogram(buckets) = &hist.value else {
        panic!("not a histogram: {:?}", hist.value)
    };
    let le = |bound: f64| {
        buckets
            .iter()
            .find(|b| b.less_than == bound)
            .map(|b| b.count)
    };
    assert_eq!(le(0.001), Some(0.0));
    assert_eq!(le(0.0025), Some(1.0));
    assert_eq!(le(0.025), Some(4.0));
    assert_eq!(le(f64::INFINITY), Some(4.0));

    assert_eq!(
        value(
            &s,
            "ccnproxy_upstream_header_duration_seconds_count",
            &origin(S3)
        ),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "ccnproxy_upstream_duration_seconds_count", &origin(S3)),
        Some(2.0)
    );
    assert_eq!(
        value(
            &s,
            "ccnproxy_upstream_connect_duration_seconds_count",
            &origin(S3)
        ),
        Some(1.0)
    );
    let connect = value(
        &s,
        "ccnproxy_upstream_connect_duration_seconds_sum",
        &origin(S3),
    )
    .unwrap();
    assert!((connect - 0.007).abs() < 1e-9, "connect {connect}");
    let exchanges = |protocol, connection| {
        value(
            &s,
            "ccnproxy_upstream_exchanges_total",
            &[
                ("origin", S3),
                ("protocol", protocol),
                ("connection", connection),
            ],
        )
    };
    assert_eq!(exchanges("h1", "new"), Some(1.0));
    assert_eq!(exchanges("h2", "reused"), Some(1.0));
    assert_eq!(exchanges("h1", "reused"), None);

    let client = |c, class| {
        value(
            &s,
            "ccnproxy_client_requests_total",
            &[("client", c), ("code_class", class)],
        )
    };
    assert_eq!(client("AKIAONE", "2xx"), Some(2.0));
    assert_eq!(client("10.0.0.9", "5xx"), Some(1.0));
    assert_eq!(
        client("10.0.0.9", "2xx"),
        Some(2.0),
        "/healthz and the tunnel"
    );
    assert_eq!(client("10.0.0.9", "4xx"), Some(1.0));
    let seconds = value(
        &s,
        "ccnproxy_client_request_seconds_total",
        &[("client", "AKIAONE")],
    )
    .unwrap();
    assert!((seconds - 0.022).abs() < 1e-9, "seconds {seconds}");
    assert_eq!(
        value(
            &s,
            "ccnproxy_client_response_bytes_total",
            &[("client", "AKIAONE")]
        ),
        Some(1500.0)
    );
    assert_eq!(
        value(
            &s,
            "ccnproxy_client_request_bytes_total",
            &[("client", "10.0.0.9")]
        ),
        Some(4396.0)
    );
    assert_eq!(value(&s, "ccnproxy_client_keys", &[]), Some(2.0));

    assert_eq!(value(&s, "ccnproxy_pools", &[]), Some(1.0));
    assert_eq!(
        value(&s, "ccnproxy_pool_open_connections", &origin(S3)),
        Some(3.0)
    );
    assert_eq!(
        value(&s, "ccnproxy_pool_idle_connections", &origin(S3)),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "ccnproxy_pool_busy_connections", &origin(S3)),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "ccnproxy_pool_h2_streams", &origin(S3)),
        Some(0.0)
    );
    assert_eq!(value(&s, "ccnproxy_pool_addresses", &origin(S3)), Some(2.0));
    assert_eq!(
        value(&s, "ccnproxy_pool_handshakes_total", &origin(S3)),
        Some(4.0)
    );
    assert_eq!(
        value(&s, "ccnproxy_pool_connect_errors_total", &origin(S3)),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "ccnproxy_pool_ejected_addresses", &origin(S3)),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "ccnproxy_pool_ejections_total", &origin(S3)),
        Some(3.0)
    );
    assert_eq!(
        value(&s, "ccnproxy_pool_dns_refreshes_total", &origin(S3)),
        Some(2.0)
    );
    assert_eq!(
        value(&s, "ccnproxy_pool_retries_total", &origin(S3)),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "ccnproxy_pool_queue_waits_total", &origin(S3)),
        Some(5.0)
    );
    assert_eq!(
        value(&s, "ccnproxy_pool_queue_timeouts_total", &origin(S3)),
        Some(0.0)
    );
    assert_eq!(
        value(&s, "ccnproxy_pool_requests_total", &origin(S3)),
        Some(9.0)
    );

    assert_eq!(value(&s, "ccnproxy_log_lines_total", &[]), Some(7.0));
    assert_eq!(value(&s, "ccnproxy_log_write_errors_total", &[]), Some(1.0));
    assert_eq!(value(&s, "ccnproxy_client_connections", &[]), Some(1.0));
    assert_eq!(
        value(&s, "ccnproxy_client_connections_accepted_total", &[]),
        Some(1.0)
    );
    assert!(value(&s, "ccnproxy_uptime_seconds", &[]).is_some());
    assert_eq!(
        value(
            &s,
            "ccnproxy_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert!(value(&s, "process_start_time_seconds", &[]).is_some_and(|t| t > 1.6e9));
    if cfg!(target_os = "linux") {
        assert!(value(&s, "process_resident_memory_bytes", &[]).is_some_and(|b| b > 0.0));
    }
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert!(value(&s, "ccnproxy_heap_allocated_bytes", &[]).is_some_and(|b| b > 0.0));
        assert!(value(&s, "ccnproxy_heap_held_bytes", &[]).is_some_and(|b| b > 0.0));
    }
    assert!(text.ends_with("# EOF\n"));

    let stats = m.http_stats();
    assert_eq!(stats.request.count, 6);
    assert_eq!(stats.request.status_count[&200], 4);
    assert_eq!(stats.response.sample_count, 5, "the tunnel is not timed");
    assert_eq!(m.requests(), 6);
}

#[test]
fn client_keys_past_the_cap_count_as_other() {
    let m = metrics(ClientKey::Auto, 2);
    for key in ["AK1", "AK2", "AK3", "AK4", "AK1"] {
        m.observe(&signed(record(Method::GET, Some(S3), 200), key), None);
    }
    let s = parse(&m.render(View::Admin));
    let client = |c| {
        value(
            &s,
            "ccnproxy_client_requests_total",
            &[("client", c), ("code_class", "2xx")],
        )
    };
    assert_eq!(client("AK1"), Some(2.0));
    assert_eq!(client("AK2"), Some(1.0));
    assert_eq!(client(OTHER), Some(2.0));
    assert_eq!(client("AK3"), None);
    assert_eq!(value(&s, "ccnproxy_client_keys", &[]), Some(2.0));
    assert_eq!(series(&s, "ccnproxy_client_requests_total"), 3);
}

#[test]
fn header_client_key_is_requested_and_used() {
    let tenant = HeaderName::from_static("x-tenant");
    let m = metrics(ClientKey::Header(tenant.clone()), 10);
    assert_eq!(m.request_headers(), std::slice::from_ref(&tenant));
    assert!(metrics(ClientKey::Auto, 10).request_headers().is_empty());

    let mut r = signed(record(Method::GET, Some(S3), 200), "AKIAIGNORED");
    r.request_headers
        .insert(tenant.clone(), HeaderValue::from_static("team-a"));
    m.observe(&r, None);
    m.observe(&record(Method::GET, Some(S3), 200), None);
    let s = parse(&m.render(View::Admin));
    let client = |c| {
        value(
            &s,
            "ccnproxy_client_requests_total",
            &[("client", c), ("code_class", "2xx")],
        )
    };
    assert_eq!(client("team-a"), Some(1.0));
    assert_eq!(client("10.0.0.9"), Some(1.0));
    assert_eq!(client("AKIAIGNORED"), None);
}

#[test]
fn odd_statuses_and_empty_metrics_render() {
    let m = metrics(ClientKey::Auto, 10);
    let s = parse(&m.render(View::Admin));
    assert_eq!(series(&s, "ccnproxy_requests_total"), 0);
    assert_eq!(value(&s, "ccnproxy_pools", &[]), Some(0.0));
    assert_eq!(series(&s, "ccnproxy_pool_open_connections"), 0);
    assert_eq!(
        value(&s, "ccnproxy_log_lines_total", &[]),
        None,
        "absent until hooked"
    );

    for status in [0, 99, 600, 101, 302] {
        m.observe(&record(Method::GET, None, status), None);
    }
    let s = parse(&m.render(View::Admin));
    let class = |c| {
        value(
            &s,
            "ccnproxy_requests_total",
            &[("origin", NO_ORIGIN), ("method", "GET"), ("code_class", c)],
        )
    };
    assert_eq!(class("other"), Some(3.0));
    assert_eq!(class("1xx"), Some(1.0));
    assert_eq!(class("3xx"), Some(1.0));
}

#[test]
fn connection_guard_counts_open_connections() {
    let m = metrics(ClientKey::Auto, 10);
    let a = m.client_connection();
    let b = m.client_connection();
    assert_eq!(m.client_connections(), 2);
    drop(a);
    assert_eq!(m.client_connections(), 1);
    drop(b);
    assert_eq!(m.client_connections(), 0);
}

#[test]
fn label_values_are_escaped() {
    let m = metrics(ClientKey::Header(HeaderName::from_static("x-tenant")), 10);
    let mut r = record(Method::GET, Some(S3), 200);
    r.request_headers
        .insert("x-tenant", HeaderValue::from_static(r#"a"b\c"#));
    m.observe(&r, None);
    let text = m.render(View::Admin);
    assert!(
        text.contains(r#"client="a\"b\\c""#),
        "quote and backslash escaped:\n{text}"
    );
}
