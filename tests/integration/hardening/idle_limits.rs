//! h2c and the admin listener get the limits HTTP/1.1 has: an h2c
//! connection that sends only the preface, or half a HEADERS frame, gets
//! GOAWAY and is closed after `--read-timeout` (with at most the one-second
//! grace a GOAWAY has to flush); so is an h2c connection idle after its last
//! response. An admin connection that sends nothing, half a head, or stays
//! idle after a response is closed after `--read-timeout`; the admin
//! listener holds at most `--max-admin-conns` connections, refuses the next
//! with 503 and counts it.
//!
//! As in `timeouts`, the proxy runs on the test's runtime with a paused
//! clock, so the cut is measured on the test's clock.

use std::time::Duration;

use tokio::time::Instant;

use crate::support::admin::METRICS_LISTEN;
use crate::support::client::{self, Client, H2cClient, RawConn};
use crate::support::{Origin, Proxy, TIMEOUT};

const READ_TIMEOUT: Duration = Duration::from_secs(1);
/// What a GOAWAY may take to flush before the connection is dropped.
const GRACE: Duration = Duration::from_secs(1);
/// Paused time is exact; this only absorbs the timer wheel's granularity.
const SLACK: Duration = Duration::from_millis(5);

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
const GOAWAY: u8 = 7;

async fn setup(extra: &[&str]) -> (Origin, Proxy) {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let mut args = origin.proxy_args_with(&["--read-timeout", "1s"]);
    args.extend(extra.iter().map(|s| s.to_string()));
    (origin, Proxy::start_on_this_runtime(args).await)
}

/// The frame types in `bytes`, a server's side of an h2 connection.
fn frame_types(bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 9 {
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        types.push(rest[3]);
        rest = &rest[(9 + len).min(rest.len())..];
    }
    types
}

/// Reads until the proxy closes; `(what it sent, when it closed)`.
async fn until_closed(conn: &mut RawConn) -> (Vec<u8>, Instant) {
    let bytes = conn.read_to_end().await;
    (bytes, Instant::now())
}

#[track_caller]
fn assert_cut(after: Duration, grace: Duration, what: &str) {
    assert!(
        after >= READ_TIMEOUT && after <= READ_TIMEOUT + grace + SLACK,
        "{what}: cut after {after:?} of the test's clock, --read-timeout {READ_TIMEOUT:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn h2c_with_only_the_preface_or_half_a_headers_frame_gets_goaway_and_is_closed() {
    let (origin, proxy) = setup(&[]).await;
    // A HEADERS frame that says 64 bytes, of which 10 come.
    let mut half_headers = vec![0, 0, 64, 1, 0x4, 0, 0, 0, 1];
    half_headers.extend_from_slice(&[0x82; 10]);
    let cases: [(&str, Vec<u8>); 2] = [
        ("only the preface", PREFACE.to_vec()),
        (
            "half a HEADERS frame",
            [PREFACE, SETTINGS, &half_headers].concat(),
        ),
    ];
    for (what, bytes) in cases {
        let mut conn = proxy.raw().await;
        let opened = Instant::now();
        conn.write(&bytes).await.expect("writing");
        let (sent, closed) = until_closed(&mut conn).await;
        assert_cut(closed - opened, GRACE, what);
        assert!(
            frame_types(&sent).contains(&GOAWAY),
            "{what}: no GOAWAY before the close; frames {:?}",
            frame_types(&sent)
        );
    }
    assert_eq!(origin.requests(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_idle_h2c_connection_is_closed_after_the_read_timeout() {
    let (_origin, proxy) = setup(&[]).await;
    let mut c = H2cClient::connect(proxy.addr()).await;
    let req = client::request("GET", "example.test.ccnproxy", "/", &[], client::empty());
    let resp = c.send(req).await.expect("a request over h2c");
    assert_eq!(resp.status(), 200);
    let answered = Instant::now();
    crate::support::within_for("the idle h2c connection to close", TIMEOUT * 10, c.closed()).await;
    assert_cut(answered.elapsed(), GRACE, "idle h2c connection");
}

#[tokio::test(start_paused = true)]
async fn idle_and_half_open_admin_connections_are_closed_after_the_read_timeout() {
    let (_origin, proxy) = setup(&METRICS_LISTEN).await;
    let admin = proxy.admin_addr().await;
    for (what, bytes) in [
        ("nothing sent", &b""[..]),
        ("half a head", &b"GET /metrics HTTP/1.1\r\nHo"[..]),
    ] {
        let mut conn = RawConn::connect(admin).await;
        let opened = Instant::now();
        conn.write(bytes).await.expect("writing");
        let (sent, closed) = until_closed(&mut conn).await;
        assert_cut(closed - opened, GRACE, what);
        assert!(
            !String::from_utf8_lossy(&sent).contains("200 OK"),
            "{what}: {sent:?}"
        );
    }
    let mut conn = RawConn::connect(admin).await;
    conn.write(b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n")
        .await
        .expect("writing");
    let head = conn.read_head().await;
    assert_eq!(head.status, 200);
    assert_eq!(conn.read_body(&head).await, b"ok\n");
    let answered = Instant::now();
    let _ = until_closed(&mut conn).await;
    assert_cut(answered.elapsed(), GRACE, "idle admin connection");
}

#[tokio::test]
async fn the_admin_listener_refuses_connections_over_its_cap_and_counts_them() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let mut args = origin.proxy_args_with(&["--max-admin-conns", "2"]);
    args.extend(METRICS_LISTEN.map(String::from));
    let proxy = Proxy::start(args).await;
    let admin = proxy.admin_addr().await;

    // Two held admin connections, each shown to be served.
    let mut held = Vec::new();
    for i in 0..2 {
        let mut c = Client::connect(admin).await;
        let req = client::request("GET", "admin", "/healthz", &[], client::empty());
        let resp = c.send(req).await.expect("a held admin connection");
        assert_eq!(resp.status(), 200, "held admin connection {i}");
        held.push(c);
    }
    let mut extra = RawConn::connect(admin).await;
    let _ = extra
        .write(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")
        .await;
    let head = extra.read_head().await;
    assert_eq!(head.status, 503, "the third admin connection");
    let body = String::from_utf8_lossy(&extra.read_body(&head).await).into_owned();
    assert!(body.contains("--max-admin-conns"), "{body:?}");
    assert!(
        extra.closed_within(TIMEOUT).await,
        "the refused connection is closed"
    );

    // The main port serves the admin paths too: the count, while the cap is full.
    let host = proxy.addr().to_string();
    let mut c = Client::connect(proxy.addr()).await;
    let req = client::request("GET", &host, "/metrics", &[], client::empty());
    let text = c.send(req).await.expect("/metrics on the main port").text();
    let m = crate::support::admin::Metrics::parse(&text);
    assert_eq!(
        m.get("ccnproxy_admin_connections_refused_total", &[]),
        Some(1.0),
        "{text}"
    );

    // One leaves: its slot serves a new admin connection.
    drop(held.pop());
    super::poll("a freed admin slot", TIMEOUT, || async {
        let mut c = Client::connect(admin).await;
        let req = client::request("GET", "admin", "/healthz", &[], client::empty());
        match c.send(req).await {
            Ok(r) if r.status() == 200 => Ok(()),
            Ok(r) => Err(format!("{} {}", r.status(), r.text())),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
}
