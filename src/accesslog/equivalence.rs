//! `Format::write` against the plain reading of a format: its parts rendered
//! one after another, literal text copied as it is, every field through
//! `Field::value` and `render::put`, a fresh time text per line and the
//! newline at the end. Random records, every preset and a custom format
//! using every directive, one `Format` reused across records (so its cached
//! time text is exercised across seconds, in and out of order). The byte
//! writers under both (`put`, `is_plain`) are checked against `Display` and
//! a byte-by-byte definition in their own tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method, Uri, Version};
use proptest::prelude::*;

use super::Record;
use super::field::Part;
use super::format::{Format, PRESETS, parts};
use super::render::put;
use super::tests::sample_record;
use super::zone::Zone;
use crate::scope::CredentialScope;
use crate::upstream::{Protocol, Timing};

/// Every directive and `%{…}x` field, with and without status filters.
const EVERY_DIRECTIVE: &str = concat!(
    r#"%h %a %{c}a %{c}h %l %u %t %{begin}t %{end}t [%{%Y-%m-%d %H:%M:%S %Z}t] %{end:%H:%M:%S%.6f}t "#,
    r#"%{sec}t %{msec}t %{usec}t %{msec_frac}t %{usec_frac}t %{end:usec_frac}t "%r" %m %U %q %H "#,
    r#"%s %>s %<s %b %B %D %T %{s}T %{ms}T %{us}T %v %V %p %{local}p %{canonical}p %{remote}p "#,
    r#""%{User-Agent}i" %{X-Multi}i %{Referer}i %{X-Amz-Request-Id}o %{Content-Type}o %{NODE}e "#,
    r#"100%% %404{User-Agent}i %!404{X-Multi}i %200,304{x-amz-request-id}o a\tb\\c "#,
    "%{upstream_addr}x %{reused}x %{protocol}x %{dns_ms}x %{connect_ms}x %{tls_ms}x %{queue_ms}x ",
    "%{header_ms}x %{upstream_ms}x %{retries}x %{connect_attempts}x %{request_id}x %{origin}x ",
    "%{aws_request_id}x %{aws_id2}x %{access_key}x %{service}x %{region}x %{error}x ",
    "%{bytes_received}x %{duration_ms}x %{balancer}x %{vpce}x über",
);

fn env(name: &str) -> Option<String> {
    (name == "NODE").then(|| "edge \"1\"".to_owned())
}

fn zone() -> Zone {
    Zone::fixed(9 * 3600, "JST")
}

/// The parts of `spec` written one by one, as a format reads without any
/// regrouping or caching.
fn reference(spec: &str, record: &Record) -> Vec<u8> {
    let (zone, mut scratch, mut out) = (zone(), Vec::new(), Vec::new());
    for part in parts(spec, env).expect(spec) {
        match part {
            Part::Literal(bytes) => out.extend_from_slice(&bytes),
            Part::Field {
                mut field,
                enc,
                only,
            } => {
                let value = match &only {
                    Some(filter) if !filter.admits(record.status) => super::render::Value::Missing,
                    _ => field.value(record, &zone),
                };
                put(&mut out, enc, value, &mut scratch);
            }
        }
    }
    out.push(b'\n');
    out
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._:/+=-]{0,40}",
        any::<String>(),
        "[ -~\\x00-\\x1f\\x7f\\u{80}-\\u{10ffff}]{0,24}",
    ]
}

fn header_value() -> impl Strategy<Value = Option<HeaderValue>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40))
        .prop_map(|b| b.and_then(|b| HeaderValue::from_bytes(&b).ok()))
}

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u16; 8]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(
            IpAddr::V6(Ipv4Addr::from(ip).to_ipv6_mapped()),
            port
        )),
    ]
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..5_000_000_000).prop_map(Duration::from_nanos),
        (any::<u32>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s.into(), n)),
    ]
}

fn timing() -> impl Strategy<Value = Timing> {
    (
        proptest::option::of(addr()),
        any::<bool>(),
        proptest::collection::vec(duration(), 6),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(addr, reused, d, retries, connect_attempts)| Timing {
            addr,
            reused,
            protocol: if reused { Protocol::H2 } else { Protocol::H1 },
            dns: d[0],
            connect: d[1],
            tls: d[2],
            queue: d[3],
            header: d[4],
            total: d[5],
            retries,
            retry_rule: None,
            connect_attempts,
        })
}

fn uri() -> impl Strategy<Value = Uri> {
    prop_oneof![
        Just("/".to_owned()),
        "/[a-zA-Z0-9%._~!$&'()*+,;=:@/-]{0,30}(\\?[a-zA-Z0-9%=&/?-]{0,20})?",
        "http://[a-z.]{1,12}(:[0-9]{1,5})?/[a-z%0-9]{0,10}(\\?[a-z=&]{0,10})?",
        "[a-z.]{1,12}:443",
    ]
    .prop_filter_map("a valid request target", |s| s.parse::<Uri>().ok())
}

prop_compose! {
    fn record()(
        received in (0u64..4_000_000_000, 0u32..1_000_000_000),
        duration in duration(),
        client in addr(),
        via in proptest::option::of((addr(), proptest::option::of("[a-z0-9-]{1,30}"))),
        local_port in any::<u16>(),
        method in prop_oneof![Just(Method::GET), Just(Method::PUT), Just(Method::CONNECT),
                              Just(Method::from_bytes(b"PURGE").expect("token"))],
        uri in uri(),
        version in prop_oneof![Just(Version::HTTP_10), Just(Version::HTTP_11), Just(Version::HTTP_2)],
        host in text(),
        status in 100u16..600,
        bytes_sent in prop_oneof![Just(0u64), any::<u64>(), 0u64..100_000],
        bytes_received in any::<u64>(),
        request in proptest::collection::vec(header_value(), 4),
        response in proptest::collection::vec(header_value(), 3),
        request_id in text(),
        origin in proptest::option::of(text()),
        upstream in proptest::option::of(timing()),
        scope in proptest::option::of((text(), text(), text())),
        error in proptest::option::of(text()),
    ) -> Record {
        let mut request_headers = HeaderMap::new();
        for (name, value) in ["user-agent", "referer", "x-multi", "x-multi"].into_iter().zip(request) {
            if let Some(value) = value {
                request_headers.append(name, value);
            }
        }
        let mut response_headers = HeaderMap::new();
        for (name, value) in ["x-amzn-requestid", "x-amz-request-id", "x-amz-id-2"].into_iter().zip(response) {
            if let Some(value) = value {
                response_headers.append(name, value);
            }
        }
        Record {
            received: UNIX_EPOCH + Duration::new(received.0, received.1),
            duration,
            client,
            via: via.map(|(addr, vpce)| std::sync::Arc::new(crate::identity::Via {
                addr,
                vpce: vpce.and_then(|v| crate::identity::Vpce::new(v.as_bytes())),
            })),
            local_port,
            method,
            uri,
            version,
            host,
            status,
            bytes_sent,
            bytes_received,
            request_headers,
            response_headers,
            request_id,
            origin,
            upstream,
            scope: scope.map(|(access_key, region, service)| CredentialScope {
                access_key,
                date: "20240102".to_owned(),
                region,
                service,
            }),
            verified: None,
            error,
        }
    }
}

fn specs() -> Vec<&'static str> {
    let mut specs = PRESETS.to_vec();
    specs.extend([EVERY_DIRECTIVE, "%%", "%h", "plain %h text"]);
    specs
}

#[test]
fn the_sample_record_matches_for_every_format() {
    for spec in specs() {
        let mut format = Format::compile_with_env(spec, env)
            .expect(spec)
            .with_zone(zone());
        let mut line = Vec::new();
        format.write(&sample_record(), &mut line);
        assert_eq!(line, reference(spec, &sample_record()), "format {spec:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_format_writes_what_its_parts_say(
        records in proptest::collection::vec(record(), 1..6),
        same_second in any::<bool>(),
    ) {
        let mut records = records;
        if same_second {
            // Records of one second, as on a busy proxy: the cached time text.
            let second = records[0].received;
            for (i, r) in records.iter_mut().enumerate() {
                r.received = second + Duration::from_micros(i as u64 * 7);
            }
        }
        for spec in specs() {
            let mut format = Format::compile_with_env(spec, env).expect(spec).with_zone(zone());
            let mut lines = b"earlier lines\n".to_vec();
            let mut want = lines.clone();
            for record in &records {
                format.write(record, &mut lines);
                want.extend_from_slice(&reference(spec, record));
            }
            prop_assert_eq!(
                String::from_utf8_lossy(&lines),
                String::from_utf8_lossy(&want),
                "format {:?}", spec
            );
            prop_assert_eq!(lines, want);
        }
    }
}
