//! Client identity behind a balancer, with the real binary: PROXY protocol
//! v1 and v2 headers from a `--trust-proxy` peer (127.0.0.1) name the
//! client in the access log (`client`, with the balancer in `balancer` and
//! the VPC endpoint in `vpce`) and in the per-client metrics; bad, truncated,
//! missing and untrusted headers close the connection with a counter and a
//! diagnostic naming the peer; `X-Forwarded-For` is believed from
//! `--trust-forwarded` peers only, and rate limits follow the client it names.
//! A second loopback address (127.0.0.2) plays the untrusted peer.

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::admin::{METRICS_LISTEN, Metrics};
use crate::support::{Origin, Proxy, TIMEOUT, within};

const HOST: &str = "example.test.ccnproxy";
const VPCE: &str = "vpce-0123456789abcdef0";

/// A connection from `source` (port chosen by the kernel) to `to`.
async fn connect_from(source: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("binding a loopback source address");
    within("connecting", socket.connect(to))
        .await
        .expect("connecting to the proxy")
}

/// Writes `bytes` (a header, a request, or both) and reads until the proxy
/// closes; returns what it sent.
async fn exchange(mut stream: TcpStream, bytes: &[u8]) -> String {
    // The proxy may close before reading everything: a failed write is an answer too.
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut out)).await;
    match read {
        Ok(_) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => panic!("the proxy neither answered nor closed: {out:?}"),
    }
}

fn get_request(extra: &str) -> String {
    format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n{extra}Connection: close\r\n\r\n")
}

fn v1(source: &str, family: &str) -> String {
    let destination = if family == "TCP6" { "::1" } else { "10.0.0.5" };
    format!("PROXY {family} {source} {destination} 40001 3000\r\n")
}

/// A v2 header: command (0 LOCAL, 1 PROXY), family byte, addresses, TLVs.
fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.push(0x20 | command);
    out.push(family);
    let len = u16::try_from(addresses.len() + tlvs.len()).expect("small");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(addresses);
    out.extend_from_slice(tlvs);
    out
}

/// TCP over IPv6 from `source`:40002, with AWS's VPC endpoint TLV.
fn v2_ipv6_with_vpce(source: Ipv6Addr) -> Vec<u8> {
    let mut addresses = source.octets().to_vec();
    addresses.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    addresses.extend_from_slice(&40002u16.to_be_bytes());
    addresses.extend_from_slice(&3000u16.to_be_bytes());
    let mut tlv = vec![0xEA];
    tlv.extend_from_slice(&u16::try_from(VPCE.len() + 1).expect("small").to_be_bytes());
    tlv.push(0x01);
    tlv.extend_from_slice(VPCE.as_bytes());
    v2(1, 0x21, &addresses, &tlv)
}

fn v2_ipv4(source: [u8; 4]) -> Vec<u8> {
    let mut addresses = source.to_vec();
    addresses.extend_from_slice(&[10, 0, 0, 5]);
    addresses.extend_from_slice(&40003u16.to_be_bytes());
    addresses.extend_from_slice(&3000u16.to_be_bytes());
    v2(1, 0x11, &addresses, &[])
}

async fn nlb_proxy(origin: &Origin, extra: &[&str]) -> Proxy {
    let mut args = origin.proxy_args_with(&["--proxy-protocol", "--trust-proxy", "127.0.0.1/32"]);
    args.extend(METRICS_LISTEN.iter().map(|s| s.to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    Proxy::start(args).await
}

/// Requests of `client` over all its status classes.
fn client_requests(m: &Metrics, client: &str) -> f64 {
    m.series("ccnproxy_client_requests_total")
        .iter()
        .filter(|(labels, _)| labels.iter().any(|(k, v)| k == "client" && v == client))
        .map(|(_, v)| v)
        .sum()
}

fn proxied(header: &[u8], request: &str) -> Vec<u8> {
    [header, request.as_bytes()].concat()
}

#[tokio::test]
async fn proxy_protocol_headers_name_the_client() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let proxy = nlb_proxy(&origin, &[]).await;
    let addr = proxy.addr();
    let client6: Ipv6Addr = "2001:db8::7".parse().expect("ipv6");
    // (what, header, client, balancer, vpce)
    type Case<'a> = (&'a str, Vec<u8>, &'a str, Option<&'a str>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "v1 TCP4",
            v1("203.0.113.9", "TCP4").into_bytes(),
            "203.0.113.9",
            Some("127.0.0.1"),
            None,
        ),
        (
            "v1 TCP6",
            v1("2001:db8::99", "TCP6").into_bytes(),
            "2001:db8::99",
            Some("127.0.0.1"),
            None,
        ),
        (
            "v2 IPv4",
            v2_ipv4([198, 51, 100, 4]),
            "198.51.100.4",
            Some("127.0.0.1"),
            None,
        ),
        (
            "v2 IPv6 with the AWS VPC endpoint TLV",
            v2_ipv6_with_vpce(client6),
            "2001:db8::7",
            Some("127.0.0.1"),
            Some(VPCE),
        ),
        // The balancer's own health check: the connection is its own client.
        ("v2 LOCAL", v2(0, 0x00, &[], &[]), "127.0.0.1", None, None),
        (
            "v1 UNKNOWN",
            b"PROXY UNKNOWN\r\n".to_vec(),
            "127.0.0.1",
            None,
            None,
        ),
    ];
    for (what, header, client, balancer, vpce) in cases {
        let stream = connect_from([127, 0, 0, 1], addr).await;
        let answer = exchange(stream, &proxied(&header, &get_request(""))).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{what}: {answer}");
        let log = proxy.next_log().await;
        assert_eq!(log["client"], client, "{what}: {log}");
        assert_eq!(log["balancer"].as_str(), balancer, "{what}: {log}");
        assert_eq!(log["vpce"].as_str(), vpce, "{what}: {log}");
    }
    // The header and the request may arrive in separate segments.
    let mut stream = connect_from([127, 0, 0, 1], addr).await;
    let header = v1("192.0.2.77", "TCP4");
    let (first, second) = header.as_bytes().split_at(9);
    stream.write_all(first).await.expect("write");
    stream.flush().await.expect("flush");
    tokio::task::yield_now().await;
    let answer = exchange(stream, &proxied(second, &get_request(""))).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "split header: {answer}");
    assert_eq!(proxy.next_log().await["client"], "192.0.2.77");

    let m = proxy
        .wait_metrics("per-client series for the PROXY clients", |m| {
            client_requests(m, "2001:db8::7") > 0.0
        })
        .await;
    for client in [
        "203.0.113.9",
        "2001:db8::99",
        "198.51.100.4",
        "2001:db8::7",
        "192.0.2.77",
    ] {
        assert!(
            client_requests(&m, client) >= 1.0,
            "client {client} has its own series:\n{}",
            m.text
        );
    }
    let headers = |v| m.get("ccnproxy_proxy_protocol_headers_total", &[("version", v)]);
    assert_eq!(headers("1"), Some(4.0), "{}", m.text);
    assert_eq!(headers("2"), Some(3.0), "{}", m.text);
}

#[tokio::test]
async fn vpce_client_key_groups_by_endpoint() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let proxy = nlb_proxy(&origin, &["--client-key", "vpce"]).await;
    for source in ["2001:db8::1", "2001:db8::2"] {
        let header = v2_ipv6_with_vpce(source.parse().expect("ipv6"));
        let stream = connect_from([127, 0, 0, 1], proxy.addr()).await;
        let answer = exchange(stream, &proxied(&header, &get_request(""))).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    let m = proxy
        .wait_metrics("two requests under the VPC endpoint's key", |m| {
            client_requests(m, VPCE) == 2.0
        })
        .await;
    assert!(client_requests(&m, "2001:db8::1") == 0.0, "{}", m.text);
}

#[tokio::test]
async fn bad_headers_close_the_connection_and_are_counted() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let proxy = nlb_proxy(&origin, &["--read-timeout", "1"]).await;
    let addr = proxy.addr();
    let mut truncated_v2 = v2_ipv4([192, 0, 2, 1]);
    truncated_v2.truncate(20);
    let mut bad_version = v2_ipv4([192, 0, 2, 1]);
    bad_version[12] = 0x11;
    type Case<'a> = (&'a str, [u8; 4], Vec<u8>, bool, &'a str);
    let cases: Vec<Case> = vec![
        // (what, source, bytes, then half-close, reason)
        (
            "malformed v1",
            [127, 0, 0, 1],
            b"PROXY TCP4 1.2.3.4 nope 1 2\r\n".to_vec(),
            false,
            "malformed",
        ),
        (
            "v2 version 1",
            [127, 0, 0, 1],
            bad_version,
            false,
            "malformed",
        ),
        (
            "v1 without CR",
            [127, 0, 0, 1],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec(),
            false,
            "malformed",
        ),
        (
            "truncated v2",
            [127, 0, 0, 1],
            truncated_v2.clone(),
            true,
            "truncated",
        ),
        (
            "truncated v1",
            [127, 0, 0, 1],
            b"PROXY TCP4 1.2.".to_vec(),
            true,
            "truncated",
        ),
        ("stalled v2", [127, 0, 0, 1], truncated_v2, false, "timeout"),
        (
            "missing",
            [127, 0, 0, 1],
            get_request("").into_bytes(),
            false,
            "missing",
        ),
        (
            "untrusted v1",
            [127, 0, 0, 2],
            proxied(v1("203.0.113.9", "TCP4").as_bytes(), &get_request("")),
            false,
            "untrusted",
        ),
        (
            "untrusted v2",
            [127, 0, 0, 2],
            v2_ipv4([203, 0, 113, 9]),
            false,
            "untrusted",
        ),
    ];
    let mut want = std::collections::HashMap::<&str, f64>::new();
    for (what, source, bytes, half_close, reason) in &cases {
        let mut stream = connect_from(*source, addr).await;
        let peer = stream.local_addr().expect("local addr");
        stream.write_all(bytes).await.expect("write");
        if *half_close {
            stream.shutdown().await.expect("half-close");
        }
        let answer = exchange(stream, b"").await;
        assert_eq!(
            answer, "",
            "{what}: the connection closes without an answer"
        );
        *want.entry(reason).or_default() += 1.0;
        let peer = peer.to_string();
        crate::support::wait_until(&format!("a diagnostic naming {peer}"), TIMEOUT, || {
            proxy
                .stderr()
                .lines()
                .any(|l| l.contains(&peer) && l.contains(reason))
        })
        .await;
    }
    let m = proxy.metrics().await;
    for (reason, n) in want {
        assert_eq!(
            m.get(
                "ccnproxy_proxy_protocol_refused_total",
                &[("reason", reason)]
            ),
            Some(n),
            "reason {reason}:\n{}",
            m.text
        );
    }
    // None of them became a request.
    assert!(
        proxy
            .next_log_within(Duration::from_millis(200))
            .await
            .is_none()
    );

    // An untrusted peer without a header is a direct client.
    let stream = connect_from([127, 0, 0, 2], addr).await;
    let answer = exchange(stream, get_request("").as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let log = proxy.next_log().await;
    assert_eq!(log["client"], "127.0.0.2");
    assert!(log["balancer"].is_null(), "{log}");

    // At most one header per connection: a second one is HTTP garbage.
    let stream = connect_from([127, 0, 0, 1], addr).await;
    let twice = v1("203.0.113.9", "TCP4").repeat(2);
    let answer = exchange(stream, &proxied(twice.as_bytes(), &get_request(""))).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(proxy.next_log().await["status"], 400);
}

#[tokio::test]
async fn forwarded_for_is_believed_from_trusted_peers_only() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let args = origin.proxy_args_with(&[
        "--trust-forwarded",
        "127.0.0.1/32",
        "--trust-forwarded",
        "10.0.0.0/8",
        "--rate-limit",
        "1",
        "--rate-burst",
        "0",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let proxy = Proxy::start(args).await;
    let addr = proxy.addr();
    let xff = "X-Forwarded-For: 1.1.1.1, 203.0.113.9, 10.1.2.3\r\n";

    let stream = connect_from([127, 0, 0, 1], addr).await;
    let answer = exchange(stream, get_request(xff).as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let log = proxy.next_log().await;
    assert_eq!(log["client"], "203.0.113.9", "{log}");
    assert_eq!(log["balancer"], "127.0.0.1", "{log}");
    assert_eq!(
        origin.last_request().header("x-forwarded-for"),
        Some("1.1.1.1, 203.0.113.9, 10.1.2.3"),
        "passed on unchanged"
    );

    // From an untrusted peer the header is passed on but not believed.
    let stream = connect_from([127, 0, 0, 2], addr).await;
    let answer = exchange(stream, get_request(xff).as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let log = proxy.next_log().await;
    assert_eq!(log["client"], "127.0.0.2", "{log}");
    assert!(log["balancer"].is_null(), "{log}");
    assert_eq!(
        origin.last_request().header("x-forwarded-for"),
        Some("1.1.1.1, 203.0.113.9, 10.1.2.3")
    );

    // The rate limit follows the forwarded client: one token a second each;
    // 203.0.113.9 spent its token above, 198.51.100.1 behind the same
    // balancer has its own.
    let started = tokio::time::Instant::now();
    let mut admitted = 0;
    for _ in 0..5 {
        let stream = connect_from([127, 0, 0, 1], addr).await;
        let header = "X-Forwarded-For: 203.0.113.9\r\n";
        let answer = exchange(stream, get_request(header).as_bytes()).await;
        admitted += usize::from(answer.starts_with("HTTP/1.1 200"));
    }
    let refills = started.elapsed().as_secs() as usize;
    assert!(
        admitted <= refills + 1,
        "{admitted} of 5 admitted in {:?}",
        started.elapsed()
    );
    let stream = connect_from([127, 0, 0, 1], addr).await;
    let header = "X-Forwarded-For: 198.51.100.1\r\n";
    let answer = exchange(stream, get_request(header).as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "another client has its own budget: {answer}"
    );
    let m = proxy
        .wait_metrics("the forwarded clients' series", |m| {
            client_requests(m, "198.51.100.1") > 0.0
        })
        .await;
    assert!(client_requests(&m, "203.0.113.9") >= 2.0, "{}", m.text);
    assert!(
        client_requests(&m, "127.0.0.1") == 0.0,
        "the balancer is nobody's client key:\n{}",
        m.text
    );
}
