//! The upstream pool, basic behaviour: reuse, h2 multiplexing, stale
//! connections, saturation. Concurrency comes from gated origins
//! (`support::gate`), never from a delay assumed to be long enough.

use std::time::Duration;

use crate::support::{Gate, Origin, Proxy, gated};

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let origin = Origin::tls_http1().reply(200, "ok").start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    for _ in 0..50 {
        let resp = proxy.get("example.test.ccnproxy-https", "/").await;
        assert_eq!(resp.status(), 200, "{}", resp.text());
    }
    assert_eq!(origin.requests(), 50);
    assert_eq!(
        origin.accepted(),
        1,
        "the pool must reuse its first connection"
    );
    assert_eq!(origin.handshakes(), 1);
}

#[tokio::test]
async fn sequential_requests_on_one_client_connection_share_one_upstream_connection() {
    let origin = Origin::tls_h2().start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let mut client = proxy.client().await;
    for _ in 0..50 {
        let resp = client
            .send(crate::support::client::request(
                "GET",
                "example.test.ccnproxy-https",
                "/",
                &[],
                crate::support::client::empty(),
            ))
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "{}", resp.text());
    }
    assert_eq!(origin.accepted(), 1);
}

#[tokio::test]
async fn plain_http_origin_is_reused_too() {
    let origin = Origin::plain_http1().start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    for _ in 0..10 {
        assert_eq!(proxy.get("example.test.ccnproxy", "/").await.status(), 200);
    }
    assert_eq!(origin.accepted(), 1);
}

#[tokio::test]
async fn concurrent_requests_share_one_h2_connection() {
    let gate = Gate::new();
    let origin = Origin::tls_h2().handler(gated(&gate)).start().await;
    let proxy = std::sync::Arc::new(Proxy::start(origin.proxy_args()).await);
    // Learn that the origin speaks h2.
    assert_eq!(
        proxy.get("example.test.ccnproxy-https", "/").await.status(),
        200
    );
    let mut tasks = Vec::new();
    for i in 0..10 {
        let proxy = proxy.clone();
        tasks.push(tokio::spawn(async move {
            proxy
                .get("example.test.ccnproxy-https", &format!("/hold/{i}"))
                .await
                .status()
        }));
    }
    origin
        .wait_for("10 requests held at the origin at once", |o| {
            o.inflight_now() == 10
        })
        .await;
    gate.open();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(origin.max_inflight(), 10, "the requests overlapped");
    assert_eq!(origin.accepted(), 1, "h2 streams share one connection");
}

#[tokio::test]
async fn connection_closed_by_the_origin_is_not_reused() {
    let origin = Origin::tls_http1()
        .idle_timeout(Duration::from_millis(100))
        .start()
        .await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    assert_eq!(
        proxy.get("example.test.ccnproxy-https", "/").await.status(),
        200
    );
    origin.wait_all_closed().await;
    let resp = proxy.get("example.test.ccnproxy-https", "/").await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(origin.accepted(), 2);
}

#[tokio::test]
async fn saturated_pool_answers_503_after_the_wait_timeout() {
    let gate = Gate::new();
    let origin = Origin::tls_http1().handler(gated(&gate)).start().await;
    let proxy = std::sync::Arc::new(
        Proxy::start(origin.proxy_args_with(&[
            "--max-conns-per-host",
            "1",
            "--pool-wait-timeout",
            "200ms",
        ]))
        .await,
    );
    let first = {
        let proxy = proxy.clone();
        tokio::spawn(async move { proxy.get("example.test.ccnproxy-https", "/hold/1").await })
    };
    origin.wait_requests(1).await;
    let started = tokio::time::Instant::now();
    let second = proxy.get("example.test.ccnproxy-https", "/2").await;
    assert_eq!(second.status(), 503, "{}", second.text());
    // The first request is still held: the 503 came from the wait timeout,
    // not from the connection coming free.
    assert!(!gate.is_open() && !first.is_finished());
    assert_eq!(origin.inflight_now(), 1);
    // A timer cannot fire early, however busy the machine.
    assert!(started.elapsed() >= Duration::from_millis(200));
    let rec = proxy.log_where("the 503", |l| l["status"] == 503).await;
    assert!(
        rec["error"].as_str().unwrap_or_default().contains("200ms"),
        "the reason names the wait timeout: {rec}"
    );
    gate.open();
    assert_eq!(first.await.unwrap().status(), 200);
    assert_eq!(origin.max_open(), 1, "--max-conns-per-host 1 holds");
    assert_eq!(origin.requests(), 1, "the 503 never reached the origin");
}
