//! Client-side timeouts: a client that never finishes its request head, and
//! an idle keep-alive client, are both cut after `--read-timeout` (hyper's
//! header timer starts as soon as the connection waits for a head); a client
//! still inside the limit is not.

use std::time::Duration;

use crate::support::{Origin, Proxy};

const HOST: &str = "example.test.ccnproxy";

async fn setup() -> (Origin, Proxy) {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let proxy = Proxy::start(origin.proxy_args_with(&["--read-timeout", "1s"])).await;
    (origin, proxy)
}

#[tokio::test]
async fn a_head_that_never_ends_is_cut_after_the_read_timeout() {
    let (origin, proxy) = setup().await;
    let mut conn = proxy.raw().await;
    conn.write(format!("GET /slow HTTP/1.1\r\nHost: {HOST}\r\nX-Trickle: a").as_bytes())
        .await
        .expect("write part of a head");
    assert!(
        conn.closed_within(Duration::from_secs(10)).await,
        "a half-sent head must not hold the connection past --read-timeout"
    );
    assert_eq!(
        origin.requests(),
        0,
        "an unfinished head never reaches the origin"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_read_timeout() {
    let (_origin, proxy) = setup().await;
    let mut conn = proxy.raw().await;
    conn.write(format!("GET /once HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .expect("write a request");
    let head = conn.read_head().await;
    assert_eq!(head.status, 200);
    let _ = conn.read_body(&head).await;
    // Still open right after the answer: keep-alive works …
    assert!(
        !conn.closed_within(Duration::from_millis(200)).await,
        "closed right after the answer"
    );
    // … and the idle connection goes once the read timeout has passed.
    assert!(
        conn.closed_within(Duration::from_secs(10)).await,
        "idle keep-alive connection kept past --read-timeout"
    );
}
