//! `--body-timeout`: a client that sends a head with `Content-Length`, a few
//! bytes of the body and then nothing gets 408 with a one-line reason (and
//! its access-log line) once it has been silent that long, and everything
//! its request held comes back at once: the origin connection (a second
//! client behind `--max-conns-per-host 1` is served) and, with `--sign`, the
//! `--max-buffered-bytes` reservation (a second signed upload is not 503).

use std::time::Duration;

use serde_json::Value;

use crate::bounded_buffer::{AWS_ENV, NAME};
use crate::bounded_log::Spawned;
use crate::bounded_origins::{spawn_with_dns, wait_metrics};
use crate::support::client::{self, Client, RawConn};
use crate::support::{Dns, Origin, Proxy, TIMEOUT};

use super::rec_where;

/// What the stalled clients declare; more than the pool's replay copies
/// (64 KiB) so that the body streams to the origin as it comes.
const DECLARED: usize = 300 << 10;

/// Sends a POST head declaring [`DECLARED`] bytes and the first few of them.
async fn stall(addr: std::net::SocketAddr, host: &str) -> RawConn {
    let mut conn = RawConn::connect(addr).await;
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {DECLARED}\r\n\r\nabc"
    );
    conn.write(head.as_bytes())
        .await
        .expect("head and three bytes");
    conn
}

/// Reads the stalled client's answer: 408 naming the flag, then close.
async fn expect_cut(conn: &mut RawConn) {
    let head = conn.read_head().await;
    assert_eq!(head.status, 408, "the stalled upload's answer");
    let body = String::from_utf8_lossy(&conn.read_body(&head).await).into_owned();
    assert!(body.contains("--body-timeout"), "{body:?}");
    assert!(
        conn.closed_within(TIMEOUT).await,
        "the connection is closed"
    );
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_frees_its_origin_connection() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let proxy = Proxy::start(origin.proxy_args_with(&[
        "--body-timeout",
        "500ms",
        "--max-conns-per-host",
        "1",
    ]))
    .await;
    let host = format!("{}.ccnproxy:{}", origin.name(), origin.addr().port());

    let mut stalled = stall(proxy.addr(), &host).await;
    // Its head reached the origin: it holds the one origin connection.
    origin.wait_requests(1).await;

    // A second client waits for that connection; it is served once the
    // stalled request lets go of it.
    let second = tokio::spawn({
        let addr = proxy.addr();
        let host = host.clone();
        async move {
            let mut c = Client::connect(addr).await;
            let req = client::request("GET", &host, "/second", &[], client::empty());
            c.send(req).await.map(|r| r.status().as_u16())
        }
    });
    expect_cut(&mut stalled).await;
    let cut = rec_where(&proxy, "the stalled upload's line", |r| r.status == 408).await;
    assert!(cut.error().contains("--body-timeout"), "{}", cut.line);
    let served = tokio::time::timeout(TIMEOUT, second)
        .await
        .expect("the second client answered in time")
        .expect("the second client's task");
    assert_eq!(served.ok(), Some(200), "the second client");
    assert_eq!(origin.requests(), 2);
}

fn buffered(m: &crate::support::admin::Metrics) -> f64 {
    m.get("ccnproxy_buffered_bytes", &[]).unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_signed_body_gives_its_buffer_reservation_back() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let dns = Dns::start().await;
    dns.set(NAME, &["127.0.0.1"], 300);
    let extra = [
        "--access-log-format",
        "json",
        "--sign",
        "--body-timeout",
        "500ms",
        // Room for one upload, not two.
        "--max-buffered-bytes",
        "400KiB",
    ];
    let proxy: Spawned = spawn_with_dns(&dns, &extra, &AWS_ENV).await;
    let host = format!("{NAME}.ccnproxy:{}", origin.addr().port());

    let mut stalled = stall(proxy.addr, &host).await;
    wait_metrics(&proxy, "the stalled upload's reservation", TIMEOUT, |m| {
        buffered(m) == DECLARED as f64
    })
    .await;
    expect_cut(&mut stalled).await;
    wait_metrics(&proxy, "the reservation given back", TIMEOUT, |m| {
        buffered(m) == 0.0
    })
    .await;

    // The whole budget is there again for the next signed upload.
    let mut c = Client::connect(proxy.addr).await;
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    let upload = client::request(
        "POST",
        &host,
        "/",
        &headers,
        client::full(vec![b'b'; DECLARED]),
    );
    let resp = c.send(upload).await.expect("second upload");
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(
        origin.requests(),
        1,
        "the stalled upload never reached the origin"
    );

    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let cut = loop {
        let found = proxy
            .lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["status"] == 408);
        if let Some(v) = found {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no 408 line: {:?}",
            proxy.lines()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let error = cut["error"].as_str().unwrap_or_default();
    assert!(error.contains("--body-timeout"), "{cut}");
}
