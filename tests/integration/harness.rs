//! Tests of the test support itself (origins, CA, DNS, clients), without the
//! proxy: if these fail, the other failures mean nothing.

use std::time::Duration;

use http::{StatusCode, Version};
use http_body_util::BodyExt;

use crate::support::client::{self, TlsClient, tls_client};
use crate::support::{self, Ca, Dns, Origin, RawConn, assert_pattern, wait_until};

#[tokio::test]
async fn plain_origin_answers_and_counts() {
    let origin = Origin::plain_http1().reply(201, "made").start().await;
    let mut c = client::Client::connect(origin.addr()).await;
    for _ in 0..3 {
        let resp = c
            .send(client::request(
                "POST",
                "example.test",
                "/x?y=1",
                &[("x-custom", "v")],
                client::full("abc"),
            ))
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.text(), "made");
    }
    assert_eq!(origin.accepted(), 1);
    assert_eq!(origin.handshakes(), 0);
    assert_eq!(origin.requests(), 3);
    assert_eq!(origin.open_now(), 1);
    let seen = origin.last_request();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri, "/x?y=1");
    assert_eq!(seen.version, Version::HTTP_11);
    assert_eq!(seen.host().as_deref(), Some("example.test"));
    assert_eq!(seen.header("x-custom"), Some("v"));
    assert_eq!(seen.conn, 0);
    drop(c);
    origin.wait_all_closed().await;
    assert_eq!(origin.max_open(), 1);
}

#[tokio::test]
async fn tls_http1_origin_refuses_h2_and_serves_http1() {
    let origin = Origin::tls_http1().echo().start().await;
    let mut c = tls_client(origin.addr(), "example.test", &[b"h2", b"http/1.1"]).await;
    assert!(
        matches!(c, TlsClient::H1(_)),
        "ALPN must settle on http/1.1"
    );
    let resp = c
        .send(client::request(
            "PUT",
            "example.test",
            "/",
            &[],
            client::full("hello"),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text(), "hello");
    assert_eq!(origin.handshakes(), 1);
    assert_eq!(origin.last_request().version, Version::HTTP_11);
}

#[tokio::test]
async fn tls_h2_origin_speaks_h2_and_limits_streams() {
    let origin = Origin::tls_h2()
        .name("h2.test")
        .max_concurrent_streams(2)
        .delay(Duration::from_millis(200))
        .start()
        .await;
    let mut c = tls_client(origin.addr(), "h2.test", &[b"h2", b"http/1.1"]).await;
    // A first request, so the client knows the server's SETTINGS.
    c.send(
        http::Request::get("https://h2.test/")
            .body(client::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    let TlsClient::H2(sender) = c else {
        panic!("ALPN must pick h2")
    };
    // Five concurrent requests on one connection, at most two at a time.
    let mut tasks = Vec::new();
    for i in 0..5 {
        let mut sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            let req = http::Request::builder()
                .uri(format!("https://h2.test/{i}"))
                .body(client::empty())
                .unwrap();
            sender.ready().await.unwrap();
            let resp = sender.send_request(req).await.unwrap();
            let status = resp.status();
            resp.into_body().collect().await.unwrap();
            status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(origin.accepted(), 1);
    assert_eq!(origin.requests(), 6);
    assert_eq!(origin.max_inflight(), 2, "the stream limit holds");
    let seen = origin.last_request();
    assert_eq!(seen.version, Version::HTTP_2);
    assert_eq!(seen.host().as_deref(), Some("h2.test"));
}

#[tokio::test]
async fn h2_origin_falls_back_to_http1() {
    let origin = Origin::tls_h2().start().await;
    let mut c = tls_client(origin.addr(), "example.test", &[b"http/1.1"]).await;
    assert!(matches!(c, TlsClient::H1(_)));
    let resp = c
        .send(client::request(
            "GET",
            "example.test",
            "/",
            &[],
            client::empty(),
        ))
        .await
        .unwrap();
    assert_eq!(resp.text(), "ok");
}

#[tokio::test]
async fn untrusted_origin_fails_verification() {
    let origin = Origin::tls_http1().untrusted().start().await;
    let err = TlsClient::connect(origin.addr(), "example.test", Ca::trusted(), &[b"http/1.1"])
        .await
        .err()
        .expect("the handshake must fail");
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");
    // The untrusted CA itself would accept it.
    TlsClient::connect(
        origin.addr(),
        "example.test",
        Ca::untrusted(),
        &[b"http/1.1"],
    )
    .await
    .expect("trusting the untrusted CA");
}

#[tokio::test]
async fn leaf_covers_wildcards_and_ips() {
    // webpki refuses `*.test` (a wildcard right under a TLD), so origins
    // list their names explicitly.
    let origin = Origin::tls_http1()
        .names(&["example.test", "other.test"])
        .bind("127.0.0.2")
        .start()
        .await;
    for name in [
        "example.test",
        "other.test",
        "s3.amazonaws.com",
        "127.0.0.2",
    ] {
        TlsClient::connect(origin.addr(), name, Ca::trusted(), &[b"http/1.1"])
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(
        TlsClient::connect(origin.addr(), "third.test", Ca::trusted(), &[b"http/1.1"])
            .await
            .is_err(),
        "a name not on the certificate"
    );
    assert_eq!(origin.addr().ip().to_string(), "127.0.0.2");
    assert!(
        std::fs::read_to_string(Ca::trusted().pem_path())
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
}

#[tokio::test]
async fn echo_streams_ten_mib_both_ways() {
    for origin in [
        Origin::plain_http1().echo().start().await,
        Origin::tls_h2().echo().start().await,
    ] {
        let len = 10 << 20;
        let resp = if origin.kind().is_tls() {
            let mut c = tls_client(origin.addr(), "example.test", &[b"h2"]).await;
            c.send(
                http::Request::put("https://example.test/")
                    .body(client::pattern_stream(len as u64, 100_000))
                    .unwrap(),
            )
            .await
            .unwrap()
        } else {
            let mut c = client::Client::connect(origin.addr()).await;
            c.send(client::request(
                "PUT",
                "example.test",
                "/",
                &[],
                client::pattern_stream(len as u64, 100_000),
            ))
            .await
            .unwrap()
        };
        assert_pattern(&resp.body, len, "echo");
    }
}

#[tokio::test]
async fn stream_reply_is_paced_and_complete() {
    let origin = Origin::plain_http1()
        .stream(5000, 1000, Duration::from_millis(20))
        .start()
        .await;
    let started = std::time::Instant::now();
    let mut c = client::Client::connect(origin.addr()).await;
    let resp = c
        .send(client::request("GET", "x", "/", &[], client::empty()))
        .await
        .unwrap();
    assert_eq!(resp.header("content-length"), Some("5000"));
    assert_pattern(&resp.body, 5000, "stream");
    assert!(started.elapsed() >= Duration::from_millis(80));
}

#[tokio::test]
async fn idle_timeout_closes_keepalive_connections() {
    let origin = Origin::plain_http1()
        .idle_timeout(Duration::from_millis(100))
        .start()
        .await;
    let mut c = client::Client::connect(origin.addr()).await;
    let resp = c
        .send(client::request("GET", "x", "/", &[], client::empty()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    origin.wait_all_closed().await;
    wait_until("client to see the close", support::TIMEOUT, || {
        c.is_closed()
    })
    .await;
}

// Paused time: the origin and the client share the runtime, so the 300 ms
// delay really outlasts the 50 ms idle timeout, however busy the machine.
#[tokio::test(start_paused = true)]
async fn idle_timeout_spares_a_slow_response() {
    let origin = Origin::plain_http1()
        .idle_timeout(Duration::from_millis(50))
        .delay(Duration::from_millis(300))
        .start()
        .await;
    let mut c = client::Client::connect(origin.addr()).await;
    let resp = c
        .send(client::request("GET", "x", "/", &[], client::empty()))
        .await
        .expect("a request in flight is not idle");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn stop_and_restart_keep_the_address() {
    let origin = Origin::plain_http1().start().await;
    let addr = origin.addr();
    let mut c = client::Client::connect(addr).await;
    c.send(client::request("GET", "x", "/", &[], client::empty()))
        .await
        .unwrap();
    origin.stop();
    origin.wait_all_closed().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "stopped"
    );
    origin.restart().await;
    let mut c = client::Client::connect(addr).await;
    let resp = c
        .send(client::request("GET", "x", "/", &[], client::empty()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(origin.accepted(), 2);
    assert_eq!(origin.last_request().conn, 1);
}

#[tokio::test]
async fn custom_handler_and_early_reply() {
    let origin = Origin::plain_http1()
        .handler(|req| async move {
            let mut resp = http::Response::new(support::origin::full(req.uri().path().to_owned()));
            *resp.status_mut() = StatusCode::IM_A_TEAPOT;
            resp
        })
        .header("x-origin", "yes")
        .start()
        .await;
    let mut c = client::Client::connect(origin.addr()).await;
    let resp = c
        .send(client::request("GET", "x", "/teapot", &[], client::empty()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 418);
    assert_eq!(resp.text(), "/teapot");
    assert_eq!(resp.header("x-origin"), Some("yes"));

    // An early reply comes back without the body being sent.
    let origin = Origin::plain_http1().reply_early(403, "no").start().await;
    let mut raw = RawConn::connect(origin.addr()).await;
    raw.write(
        b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let head = raw.read_head().await;
    assert_eq!(head.status, 403);
    assert_eq!(raw.read_body(&head).await, b"no");
}

#[tokio::test]
async fn never_answer_hangs() {
    let origin = Origin::plain_http1().never_answer().start().await;
    let mut raw = RawConn::connect(origin.addr()).await;
    raw.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    origin.wait_requests(1).await;
    assert!(
        raw.read_head_within(Duration::from_millis(200))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn expect_continue_origin_sends_100_when_reading() {
    let origin = Origin::plain_http1().echo().start().await;
    let mut raw = RawConn::connect(origin.addr()).await;
    raw.write(b"PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(raw.read_head().await.status, 100);
    raw.write(b"hello").await.unwrap();
    let head = raw.read_head().await;
    assert_eq!(head.status, 200);
    assert_eq!(raw.read_body(&head).await, b"hello");
}

#[tokio::test]
async fn dns_server_answers_from_its_map() {
    use hickory_resolver::Resolver;
    use hickory_resolver::config::{NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;

    let dns = Dns::start().await;
    dns.set("multi.test", &["127.0.0.2", "127.0.0.3"], 7);
    let mut ns = NameServerConfig::udp_and_tcp(dns.addr().ip());
    for conn in &mut ns.connections {
        conn.port = dns.addr().port();
    }
    let config = ResolverConfig::from_name_servers(vec![ns]);
    let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
    builder.options_mut().cache_size = 0;
    let resolver = builder.build().unwrap();

    let lookup = resolver.lookup_ip("multi.test.").await.unwrap();
    let mut ips: Vec<String> = lookup.iter().map(|ip| ip.to_string()).collect();
    ips.sort();
    assert_eq!(ips, ["127.0.0.2", "127.0.0.3"]);
    let ttls: Vec<u32> = lookup.as_lookup().answers().iter().map(|r| r.ttl).collect();
    assert!(ttls.iter().all(|&t| t == 7), "{ttls:?}");
    assert!(dns.queries("multi.test") >= 1);

    dns.set("multi.test", &["127.0.0.4"], 1);
    let lookup = resolver.lookup_ip("multi.test.").await.unwrap();
    let ips: Vec<String> = lookup.iter().map(|ip| ip.to_string()).collect();
    assert_eq!(ips, ["127.0.0.4"]);

    assert!(resolver.lookup_ip("missing.test.").await.is_err());
}
