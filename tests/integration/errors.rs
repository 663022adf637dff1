//! What the proxy answers when it cannot or must not forward (docs/design.md
//! "Errors"), and malformed input.

use std::time::{Duration, Instant};

use crate::support::origin::args_for;
use crate::support::{Origin, Proxy};

fn base_args() -> Vec<String> {
    args_for(&[])
}

#[tokio::test]
async fn loop_is_refused_with_508() {
    let origin = Origin::tls_http1().start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let resp = proxy
        .request(
            "GET",
            "example.test.ccnproxy-https",
            "/",
            &[("X-Chocon-Ver", "0.1.0")],
            "",
        )
        .await;
    assert_eq!(resp.status(), 508, "{}", resp.text());
    assert_eq!(origin.accepted(), 0, "a loop never reaches the origin");
}

#[tokio::test]
async fn host_without_route_gets_400_with_explanation() {
    let proxy = Proxy::start(base_args()).await;
    let resp = proxy.get("localhost", "/foo").await;
    assert_eq!(resp.status(), 400);
    let ctype = resp.header("content-type").unwrap_or("");
    assert!(ctype.starts_with("text/plain"), "content-type {ctype:?}");
    let text = resp.text();
    assert!(
        text.contains("ccnproxy"),
        "the explanation names the Host convention: {text:?}"
    );
}

#[tokio::test]
async fn healthz_answers_200() {
    let proxy = Proxy::start(base_args()).await;
    for host in ["localhost", &proxy.addr().to_string()] {
        let resp = proxy.get(host, "/healthz").await;
        assert_eq!(resp.status(), 200, "Host {host:?}: {}", resp.text());
    }
}

#[tokio::test]
async fn refused_port_gets_502() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut args = base_args();
    args.extend([
        "--resolve".to_owned(),
        format!("refused.test:443:127.0.0.1:{port}"),
    ]);
    let proxy = Proxy::start(args).await;
    let resp = proxy.get("refused.test.ccnproxy-https", "/").await;
    assert_eq!(resp.status(), 502, "{}", resp.text());
    assert!(!resp.body.is_empty(), "502 carries a reason");
}

#[tokio::test]
async fn untrusted_certificate_gets_502() {
    let origin = Origin::tls_http1().untrusted().start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let resp = proxy.get("example.test.ccnproxy-https", "/").await;
    assert_eq!(resp.status(), 502, "{}", resp.text());
    assert_eq!(origin.requests(), 0, "no request over an unverified TLS");
    assert_eq!(origin.handshakes(), 0);
}

#[tokio::test]
async fn wrong_certificate_name_gets_502() {
    let origin = Origin::tls_http1().name("right.test").start().await;
    let mut args = origin.proxy_args();
    // `wrong.test` resolves to the origin, whose certificate does not name it.
    args.extend([
        "--resolve".to_owned(),
        format!("wrong.test:443:{}", origin.addr()),
    ]);
    let proxy = Proxy::start(args).await;
    let resp = proxy.get("wrong.test.ccnproxy-https", "/").await;
    assert_eq!(resp.status(), 502, "{}", resp.text());
    assert_eq!(origin.requests(), 0);
}

#[tokio::test]
async fn origin_that_never_answers_gets_504() {
    let origin = Origin::tls_http1().never_answer().start().await;
    let proxy = Proxy::start(origin.proxy_args_with(&["--proxy-read-timeout", "1s"])).await;
    let started = Instant::now();
    let resp = proxy.get("example.test.ccnproxy-https", "/").await;
    let took = started.elapsed();
    assert_eq!(resp.status(), 504, "{}", resp.text());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "504 after the 1 s read timeout, took {took:?}"
    );
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn host_not_allowed_gets_403_naming_the_flag() {
    let origin = Origin::tls_http1().start().await;
    // Default allow list: AWS domains only.
    let mut args = vec![
        "--ca-file".to_owned(),
        crate::support::Ca::trusted()
            .pem_path()
            .to_str()
            .unwrap()
            .to_owned(),
        "--allow-cidr".to_owned(),
        "127.0.0.0/8".to_owned(),
    ];
    args.extend(origin.resolve_args());
    let proxy = Proxy::start(args).await;
    let resp = proxy.get("example.test.ccnproxy-https", "/").await;
    assert_eq!(resp.status(), 403, "{}", resp.text());
    assert!(resp.text().contains("--allow-host"), "{:?}", resp.text());
    assert_eq!(origin.accepted(), 0);
}

#[tokio::test]
async fn loopback_origin_without_allow_cidr_gets_403() {
    let origin = Origin::tls_http1().start().await;
    let mut args = vec![
        "--ca-file".to_owned(),
        crate::support::Ca::trusted()
            .pem_path()
            .to_str()
            .unwrap()
            .to_owned(),
        "--allow-host".to_owned(),
        "*".to_owned(),
    ];
    args.extend(origin.resolve_args());
    let proxy = Proxy::start(args).await;
    let resp = proxy.get("example.test.ccnproxy-https", "/").await;
    assert_eq!(resp.status(), 403, "{}", resp.text());
    assert!(resp.text().contains("--allow-cidr"), "{:?}", resp.text());
    assert_eq!(origin.accepted(), 0, "refused before any connection");
}

#[tokio::test]
async fn garbage_request_gets_400_and_the_proxy_lives_on() {
    let proxy = Proxy::start(base_args()).await;
    let mut conn = proxy.raw().await;
    conn.write(b"THIS IS NOT HTTP\r\n\r\n").await.unwrap();
    let head = conn.read_head().await;
    assert_eq!(head.status, 400);
    let resp = proxy.get("localhost", "/healthz").await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn missing_host_gets_400() {
    let proxy = Proxy::start(base_args()).await;
    let out = proxy
        .raw_exchange(b"GET /foo HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out:?}");
}

#[tokio::test]
async fn startup_failure_is_reported() {
    let err = Proxy::try_spawn_binary(["--no-such-flag"])
        .await
        .err()
        .expect("an unknown flag must stop the proxy");
    assert!(err.contains("did not start"), "{err}");
    assert!(err.contains("unix_wait_status(512)"), "exit code 2: {err}");
    let err = Proxy::try_start(["--no-such-flag"])
        .await
        .err()
        .expect("in process, too");
    assert!(err.contains("--no-such-flag"), "{err}");
}

#[tokio::test]
async fn client_gone_mid_download_is_logged_499() {
    // 10 MiB at 16 KiB every 20 ms: far longer than the test.
    let origin = Origin::tls_http1()
        .stream(10 << 20, 16 * 1024, Duration::from_millis(20))
        .start()
        .await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let mut conn = proxy.raw().await;
    conn.write(b"GET /slow HTTP/1.1\r\nHost: example.test.ccnproxy-https\r\n\r\n")
        .await
        .unwrap();
    let head = conn.read_head().await;
    assert_eq!(head.status, 200);
    assert!(conn.read_some().await > 0, "some body arrived");
    drop(conn);

    let log = proxy.next_log().await;
    assert_eq!(log["status"], 499, "a client that went away: {log}");
    assert_eq!(log["uri"], "/slow");
    // The upstream exchange is cancelled, not read to the end.
    origin
        .wait_for("the upstream response to be abandoned", |o| {
            o.inflight_now() == 0
        })
        .await;
}

#[tokio::test]
async fn client_gone_while_waiting_is_logged_499() {
    let origin = Origin::tls_http1().never_answer().start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let mut conn = proxy.raw().await;
    conn.write(b"GET /wait HTTP/1.1\r\nHost: example.test.ccnproxy-https\r\n\r\n")
        .await
        .unwrap();
    origin.wait_requests(1).await;
    drop(conn);
    let log = proxy.next_log().await;
    assert_eq!(log["status"], 499, "{log}");
    origin
        .wait_for("the upstream request to be cancelled", |o| {
            o.inflight_now() == 0
        })
        .await;
}
