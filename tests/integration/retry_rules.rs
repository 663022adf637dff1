//! The retry rules (docs/pool.md "Retries"): a request is sent again only
//! when it provably did not reach the origin, or when its method is
//! idempotent and its body can be replayed. The origin here reads a request
//! on a reused HTTP/1.1 connection and hangs up without answering, the race
//! of an origin's idle close with a new request: it may have processed it.

use crate::support::admin::METRICS_LISTEN;
use crate::support::{Proxy, RawOrigin};

/// Host header naming the raw origin (`example.test`, HTTPS).
const HOST: &str = "example.test.ccnproxy-https";
/// The pool of [`HOST`], as `/metrics` labels it.
const ORIGIN: &str = "https://example.test:443";

#[tokio::test]
async fn bodyless_post_on_a_broken_reused_connection_is_not_sent_twice() {
    let origin = RawOrigin::close_after(1).await;
    let proxy = Proxy::start(origin.proxy_args_with(&METRICS_LISTEN)).await;
    assert_eq!(proxy.get(HOST, "/first").await.status(), 200);
    // Reuses the first connection; the origin reads the POST and hangs up.
    let resp = proxy.request("POST", HOST, "/write", &[], "").await;
    assert_eq!(
        origin.closed_unanswered(),
        1,
        "precondition: the race happened"
    );
    assert_eq!(resp.status(), 502, "{}", resp.text());
    assert!(
        resp.text().contains("not-idempotent"),
        "the reason names the rule: {}",
        resp.text()
    );
    assert_eq!(
        origin.requests(),
        2,
        "the origin saw GET /first and the POST exactly once"
    );
    assert_eq!(origin.accepted(), 1, "no second connection for the POST");
    let logs = proxy.logs_until(2).await;
    assert_eq!(logs[1]["status"], 502, "{}", logs[1]);
    let error = logs[1]["error"].as_str().unwrap_or_default();
    assert!(error.contains("not-idempotent"), "{}", logs[1]);
    let m = proxy.metrics().await;
    assert_eq!(m.pool_value("ccnproxy_pool_retries_total", ORIGIN), 0.0);
}

#[tokio::test]
async fn get_on_a_broken_reused_connection_is_retried_and_logs_the_rule() {
    let origin = RawOrigin::close_after(1).await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    assert_eq!(proxy.get(HOST, "/first").await.status(), 200);
    let resp = proxy.get(HOST, "/read").await;
    assert_eq!(
        origin.closed_unanswered(),
        1,
        "precondition: the race happened"
    );
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(origin.accepted(), 2, "the retry went over a new connection");
    let logs = proxy.logs_until(2).await;
    assert_eq!(
        logs[0]["retry_rule"],
        serde_json::Value::Null,
        "{}",
        logs[0]
    );
    assert_eq!(logs[1]["retries"], 1, "{}", logs[1]);
    assert_eq!(logs[1]["retry_rule"], "idempotent-replay", "{}", logs[1]);
}

#[tokio::test]
async fn put_with_a_replay_copy_is_retried_with_its_body() {
    // Idempotent, and its small body was kept: sending it again is safe.
    let origin = RawOrigin::close_after(1).await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    assert_eq!(proxy.get(HOST, "/first").await.status(), 200);
    let resp = proxy.request("PUT", HOST, "/object", &[], "hello").await;
    assert_eq!(
        origin.closed_unanswered(),
        1,
        "precondition: the race happened"
    );
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(origin.requests(), 3, "GET, the PUT, and the PUT again");
    assert_eq!(origin.answered(), 2);
}
