//! An idle HTTP/1.1 client connection gives hyper's buffers back and is
//! served again when its next request comes: the keep-alive connection is
//! the same one, bytes of a request head that arrived before the release
//! are not lost, and the read timeout still closes an idle connection.

use crate::support::admin::METRICS_LISTEN;
use crate::support::{Origin, Proxy, TIMEOUT};

const HOST: &str = "example.test.ccnproxy-https";

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n")
}

fn idle(m: &crate::support::admin::Metrics) -> f64 {
    m.get("ccnproxy_client_connections_idle", &[])
        .unwrap_or(-1.0)
}

#[tokio::test]
async fn a_released_connection_serves_its_next_requests() {
    let origin = Origin::tls_http1().start().await;
    let proxy = Proxy::start(origin.proxy_args_with(&METRICS_LISTEN)).await;
    let mut conn = proxy.raw().await;
    for round in 0..3 {
        conn.write(get(&format!("/round{round}")).as_bytes())
            .await
            .unwrap();
        let head = conn.read_head().await;
        assert_eq!(head.status, 200, "round {round}");
        conn.read_body(&head).await;
        // Quiet now: within a couple of ticks the connection lets go of
        // its buffers, and the next request on it is served all the same.
        proxy
            .wait_metrics("the idle connection released", |m| {
                idle(m) == 1.0 && releases(m) == f64::from(round + 1)
            })
            .await;
    }
    // One client connection all along (the scrapes use their own).
    assert_eq!(origin.requests(), 3);
    let log = proxy.logs_until(3).await;
    assert!(log.iter().all(|l| l["status"] == 200), "{log:?}");
}

#[tokio::test]
async fn a_head_split_across_the_release_is_not_lost() {
    let origin = Origin::tls_http1().start().await;
    let proxy = Proxy::start(origin.proxy_args_with(&METRICS_LISTEN)).await;
    let mut conn = proxy.raw().await;
    // The first request and half of the second in one write: hyper reads
    // both, answers the first and cannot parse the second yet. The release
    // after the first response happens with those bytes in hyper's buffer;
    // they must come back in front of the rest.
    let second = get("/second");
    let (start, rest) = second.split_at(20);
    conn.write(format!("{}{start}", get("/first")).as_bytes())
        .await
        .unwrap();
    let head = conn.read_head().await;
    assert_eq!(head.status, 200);
    conn.read_body(&head).await;
    proxy
        .wait_metrics("released after the first response", |m| releases(m) >= 1.0)
        .await;
    conn.write(rest.as_bytes()).await.unwrap();
    let head = conn.read_head().await;
    assert_eq!(head.status, 200);
    conn.read_body(&head).await;
    let second = proxy.log_where("/second", |l| l["uri"] == "/second").await;
    assert_eq!(second["status"], 200);
}

#[tokio::test]
async fn the_read_timeout_still_closes_a_released_connection() {
    let origin = Origin::tls_http1().start().await;
    let proxy = Proxy::start(origin.proxy_args_with(&[
        METRICS_LISTEN[0],
        METRICS_LISTEN[1],
        "--read-timeout",
        "2s",
    ]))
    .await;
    let mut conn = proxy.raw().await;
    conn.write(get("/").as_bytes()).await.unwrap();
    let head = conn.read_head().await;
    conn.read_body(&head).await;
    proxy
        .wait_metrics("the idle connection released", |m| idle(m) == 1.0)
        .await;
    // The proxy closes it once the read timeout has passed (EOF, no bytes).
    let rest = tokio::time::timeout(TIMEOUT, conn.read_to_end())
        .await
        .expect("the proxy closes an idle connection after --read-timeout");
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    proxy
        .wait_metrics("no idle connection left", |m| idle(m) == 0.0)
        .await;
}

fn releases(m: &crate::support::admin::Metrics) -> f64 {
    m.get("ccnproxy_client_connection_releases_total", &[])
        .unwrap_or(-1.0)
}
