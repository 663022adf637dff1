//! Client-side timeouts: a client that never finishes its request head, and
//! an idle keep-alive client, are both cut after `--read-timeout` (hyper's
//! header timer starts as soon as the connection waits for a head); a client
//! still inside the limit is not.
//!
//! The proxy, its origin and the client share the test's runtime with a
//! paused clock: time moves only when every task waits, straight to the next
//! timer, so the cut is measured to the millisecond however busy the machine
//! is.

use std::time::Duration;

use tokio::time::Instant;

use crate::support::{Origin, Proxy};

const HOST: &str = "example.test.ccnproxy";
const READ_TIMEOUT: Duration = Duration::from_secs(1);
/// Paused time is exact; this only absorbs the timer wheel's millisecond
/// granularity.
const SLACK: Duration = Duration::from_millis(5);

async fn setup() -> (Origin, Proxy) {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let proxy =
        Proxy::start_on_this_runtime(origin.proxy_args_with(&["--read-timeout", "1s"])).await;
    (origin, proxy)
}

#[track_caller]
fn assert_cut_at_read_timeout(after: Duration, what: &str) {
    assert!(
        after >= READ_TIMEOUT && after <= READ_TIMEOUT + SLACK,
        "{what}: cut after {after:?} of the test's clock, --read-timeout {READ_TIMEOUT:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_head_that_never_ends_is_cut_after_the_read_timeout() {
    let (origin, proxy) = setup().await;
    let mut conn = proxy.raw().await;
    let connected = Instant::now();
    conn.write(format!("GET /slow HTTP/1.1\r\nHost: {HOST}\r\nX-Trickle: a").as_bytes())
        .await
        .expect("write part of a head");
    assert!(
        conn.closed_within(Duration::from_secs(60)).await,
        "a half-sent head must not hold the connection past --read-timeout"
    );
    assert_cut_at_read_timeout(connected.elapsed(), "half-sent head");
    assert_eq!(
        origin.requests(),
        0,
        "an unfinished head never reaches the origin"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_closed_after_the_read_timeout() {
    let (_origin, proxy) = setup().await;
    let mut conn = proxy.raw().await;
    conn.write(format!("GET /once HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .expect("write a request");
    let head = conn.read_head().await;
    assert_eq!(head.status, 200);
    let _ = conn.read_body(&head).await;
    let answered = Instant::now();
    // Still open just inside the limit: keep-alive works …
    assert!(
        !conn.closed_within(READ_TIMEOUT - SLACK).await,
        "closed before --read-timeout"
    );
    // … and the idle connection goes once the read timeout has passed.
    assert!(
        conn.closed_within(Duration::from_secs(60)).await,
        "idle keep-alive connection kept past --read-timeout"
    );
    assert_cut_at_read_timeout(answered.elapsed(), "idle keep-alive connection");
}
