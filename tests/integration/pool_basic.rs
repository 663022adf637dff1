//! The upstream pool, basic behaviour: reuse, h2 multiplexing, stale
//! connections, saturation.

use std::time::Duration;

use crate::support::{Origin, Proxy};

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
    let origin = Origin::tls_h2()
        .delay(Duration::from_millis(300))
        .start()
        .await;
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
                .get("example.test.ccnproxy-https", &format!("/{i}"))
                .await
                .status()
        }));
    }
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
    let origin = Origin::tls_http1()
        .delay(Duration::from_secs(2))
        .start()
        .await;
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
        tokio::spawn(async move { proxy.get("example.test.ccnproxy-https", "/1").await })
    };
    origin.wait_requests(1).await;
    let started = std::time::Instant::now();
    let second = proxy.get("example.test.ccnproxy-https", "/2").await;
    assert_eq!(second.status(), 503, "{}", second.text());
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "503 after the 200 ms wait, not after the first request"
    );
    assert_eq!(first.await.unwrap().status(), 200);
    assert_eq!(origin.max_open(), 1, "--max-conns-per-host 1 holds");
}
