//! The JSON access log: one line per request, with upstream timing.

use serde_json::Value;

use crate::support::origin::args_for;
use std::net::TcpListener;

use crate::support::{Origin, Proxy};

fn ms(log: &Value, key: &str) -> f64 {
    log[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} must be a number: {log}"))
}

#[tokio::test]
async fn one_line_per_request_with_upstream_timing() {
    let origin = Origin::tls_http1().reply(200, "hello").start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let host = "example.test.ccnproxy-https";

    let first = proxy.get(host, "/first?x=1").await;
    assert_eq!(first.status(), 200, "{}", first.text());
    let log = proxy.next_log().await;
    assert_eq!(log["status"], 200, "{log}");
    assert_eq!(log["method"], "GET");
    assert_eq!(log["uri"], "/first?x=1");
    assert_eq!(log["host"], host);
    assert_eq!(log["bytes_sent"], 5);
    assert_eq!(log["origin"], "https://example.test:443");
    assert_eq!(log["upstream_addr"], origin.addr().to_string());
    assert_eq!(log["protocol"], "h1");
    assert_eq!(log["reused"], false);
    assert_eq!(log["retries"], 0);
    assert!(log["error"].is_null(), "{log}");
    assert!(
        log["client"]
            .as_str()
            .unwrap_or("")
            .starts_with("127.0.0.1"),
        "{log}"
    );
    assert_eq!(
        log["request_id"],
        first.header("x-chocon-id").unwrap(),
        "the logged id is the one returned"
    );
    assert!(log["time"].is_string() || log["time"].is_number(), "{log}");
    assert!(
        ms(&log, "connect_ms") > 0.0,
        "a new connection took time: {log}"
    );
    assert!(ms(&log, "tls_ms") > 0.0, "{log}");
    assert!(ms(&log, "header_ms") >= 0.0);
    assert!(ms(&log, "upstream_ms") >= ms(&log, "header_ms"), "{log}");
    assert!(ms(&log, "duration_ms") >= 0.0);

    let second = proxy.get(host, "/second").await;
    assert_eq!(second.status(), 200);
    let log = proxy.next_log().await;
    assert_eq!(log["uri"], "/second");
    assert_eq!(log["reused"], true, "{log}");
    assert_eq!(ms(&log, "connect_ms"), 0.0, "{log}");
    assert_eq!(ms(&log, "tls_ms"), 0.0, "{log}");
    assert_eq!(origin.accepted(), 1);
}

#[tokio::test]
async fn h2_upstream_is_logged_as_h2() {
    let origin = Origin::tls_h2().start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let resp = proxy.get("example.test.ccnproxy-https", "/").await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    let log = proxy.next_log().await;
    assert_eq!(log["protocol"], "h2", "{log}");
}

#[tokio::test]
async fn request_body_bytes_are_logged() {
    let origin = Origin::plain_http1().reply(201, "").start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let resp = proxy
        .request("PUT", "example.test.ccnproxy", "/k", &[], vec![7u8; 12345])
        .await;
    assert_eq!(resp.status(), 201, "{}", resp.text());
    let log = proxy.next_log().await;
    assert_eq!(log["status"], 201);
    assert_eq!(log["method"], "PUT");
    assert_eq!(log["bytes_received"], 12345, "{log}");
    assert_eq!(log["bytes_sent"], 0);
    assert_eq!(log["origin"], "http://example.test:80");
}

#[tokio::test]
async fn proxy_made_responses_are_logged() {
    let proxy = Proxy::start(args_for(&[])).await;
    assert_eq!(proxy.get("localhost", "/foo").await.status(), 400);
    let log = proxy.next_log().await;
    assert_eq!(log["status"], 400, "{log}");
    assert_eq!(log["host"], "localhost");
    assert!(log["origin"].is_null(), "no origin for a no-route: {log}");
    assert!(log["reused"].is_null(), "no upstream facts: {log}");

    let resp = proxy
        .request("GET", "x.test.ccnproxy", "/", &[("x-chocon-ver", "1")], "")
        .await;
    assert_eq!(resp.status(), 508);
    let log = proxy.next_log().await;
    assert_eq!(log["status"], 508, "{log}");
}

#[tokio::test]
async fn every_request_gets_a_line() {
    let origin = Origin::tls_http1().start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let n = 20;
    for i in 0..n {
        let resp = proxy
            .get("example.test.ccnproxy-https", &format!("/n/{i}"))
            .await;
        assert_eq!(resp.status(), 200);
    }
    let logs = proxy.logs_until(n).await;
    let mut uris: Vec<String> = logs
        .iter()
        .map(|l| l["uri"].as_str().unwrap_or("?").to_owned())
        .collect();
    uris.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("/n/{i}")).collect();
    want.sort();
    assert_eq!(uris, want);
}

#[tokio::test]
async fn upstream_failures_are_logged_with_their_cause() {
    let untrusted = Origin::tls_http1()
        .name("untrusted.test")
        .untrusted()
        .start()
        .await;
    let silent = Origin::tls_http1()
        .name("silent.test")
        .never_answer()
        .start()
        .await;
    let refused_port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut args = args_for(&[&untrusted, &silent]);
    args.extend([
        "--resolve".to_owned(),
        format!("refused.test:443:127.0.0.1:{refused_port}"),
        "--proxy-read-timeout".to_owned(),
        "1s".to_owned(),
    ]);
    let proxy = Proxy::start(args).await;
    for (name, status) in [("refused", 502), ("untrusted", 502), ("silent", 504)] {
        let host = format!("{name}.test.ccnproxy-https");
        assert_eq!(proxy.get(&host, "/").await.status(), status, "{name}");
        let log = proxy.next_log().await;
        assert_eq!(log["status"], status, "{log}");
        assert_eq!(log["host"], host.as_str());
        assert_eq!(log["origin"], format!("https://{name}.test:443"), "{log}");
        assert!(
            log["error"].as_str().is_some_and(|e| !e.is_empty()),
            "the log names the cause: {log}"
        );
    }
}

#[tokio::test]
async fn large_response_bytes_are_logged() {
    let len = 3 << 20;
    let origin = Origin::tls_h2().download(len).start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let resp = proxy.get("example.test.ccnproxy-https", "/big").await;
    assert_eq!(resp.body.len() as u64, len);
    let log = proxy.next_log().await;
    assert_eq!(log["bytes_sent"], len, "{log}");
    assert!(ms(&log, "upstream_ms") > 0.0, "{log}");
}
