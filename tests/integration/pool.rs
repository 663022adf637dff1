//! The upstream pool under load and churn (docs/design.md "Pool semantics", docs/pool.md "The
//! upstream pool"): one handshake for many requests, HTTP/2 stream and
//! connection limits, the HTTP/1.1 cap and its queue, spreading over every
//! address of a name, following a DNS change, origins that close idle
//! connections, the retry-once, the response timeout, prewarm.
//!
//! Counts, not timings: slow origins are *gated* (`support::gate`: a handler
//! that waits until the test opens a gate) so that concurrency is certain rather than likely;
//! the only clock in an assertion is the DNS TTL bound, which is the point of
//! that test. See `docs/pool-tests.md` for what each test proves.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::support::admin::METRICS_LISTEN;
use crate::support::origin::OriginBuilder;
use crate::support::raw_origin::HangUp;
use crate::support::{
    Dns, Gate, Origin, Proxy, RawOrigin, Resp, TIMEOUT, gated, wait_until, within,
};

/// Host header naming the default origin (`example.test`, HTTPS).
const HOST: &str = "example.test.ccnproxy-https";
/// The pool of [`HOST`], as `/metrics` labels it.
const ORIGIN: &str = "https://example.test:443";

/// `GET host path` for every path at once, each on its own client
/// connection; each response is delivered on the channel as it arrives, so a
/// test can act between early and late ones.
fn spawn_each(proxy: &Arc<Proxy>, host: &str, paths: Vec<String>) -> mpsc::UnboundedReceiver<Resp> {
    let (tx, rx) = mpsc::unbounded_channel();
    for path in paths {
        let proxy = proxy.clone();
        let host = host.to_owned();
        let tx = tx.clone();
        tokio::spawn(async move {
            let resp = proxy.get(&host, &path).await;
            let _ = tx.send(resp);
        });
    }
    rx
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<Resp>, what: &str) -> Resp {
    within(what, rx.recv())
        .await
        .unwrap_or_else(|| panic!("{what}: a request task panicked (see above)"))
}

fn statuses(resps: &[Resp]) -> std::collections::BTreeMap<u16, usize> {
    let mut out = std::collections::BTreeMap::new();
    for r in resps {
        *out.entry(r.status().as_u16()).or_default() += 1;
    }
    out
}

/// Two TLS HTTP/1.1 origins posing as `name`, one on 127.0.0.2 and one on
/// 127.0.0.3, on the same port (a DNS answer carries addresses, not ports).
async fn two_address_origins(
    name: &str,
    build: impl Fn(OriginBuilder) -> OriginBuilder,
) -> (Origin, Origin, u16) {
    for _ in 0..20 {
        let a = build(Origin::tls_http1().name(name).bind("127.0.0.2"))
            .start()
            .await;
        let port = a.addr().port();
        // The kernel chose the port for 127.0.0.2 only; something else may
        // hold it on 127.0.0.3. Then try another.
        if std::net::TcpListener::bind(("127.0.0.3", port)).is_err() {
            continue;
        }
        let b = build(Origin::tls_http1().name(name).bind("127.0.0.3").port(port))
            .start()
            .await;
        return (a, b, port);
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

/// Proxy flags for origins found through the test DNS server `dns`.
fn dns_args(dns: &Dns, extra: &[&str]) -> Vec<String> {
    dns.proxy_args(extra)
}

fn share(part: usize, total: usize) -> f64 {
    part as f64 / total as f64
}

// 1. Reuse.

#[tokio::test]
async fn thousand_sequential_requests_cost_one_tls_handshake() {
    let origin = Origin::tls_http1().start().await;
    let proxy = Proxy::start(origin.proxy_args_with(&METRICS_LISTEN)).await;
    for i in 0..1000 {
        let resp = proxy.get(HOST, &format!("/{i}")).await;
        assert_eq!(resp.status(), 200, "request {i}: {}", resp.text());
    }
    assert_eq!(origin.requests(), 1000);
    assert_eq!(
        origin.handshakes(),
        1,
        "1000 sequential requests must share the first TLS connection"
    );
    assert_eq!(origin.accepted(), 1);
    let m = proxy.metrics().await;
    assert_eq!(m.pool_value("ccnproxy_pool_handshakes_total", ORIGIN), 1.0);
    assert_eq!(m.pool_value("ccnproxy_pool_requests_total", ORIGIN), 1000.0);
    assert_eq!(m.pool_value("ccnproxy_pool_retries_total", ORIGIN), 0.0);
}

// 2. HTTP/2: streams per connection, connections per origin.

#[tokio::test]
async fn h2_five_hundred_concurrent_requests_respect_streams_and_h2_conns() {
    // All 500 are held at the origin: 2 connections of 100 streams carry 200
    // of them at once, the other 300 wait in the pool's queue.
    let gate = Gate::new();
    let origin = Origin::tls_h2()
        .max_concurrent_streams(100)
        .handler(gated(&gate))
        .start()
        .await;
    let proxy = Arc::new(
        Proxy::start(origin.proxy_args_with(&[
            "--h2-conns",
            "2",
            METRICS_LISTEN[0],
            METRICS_LISTEN[1],
        ]))
        .await,
    );
    let mut rx = spawn_each(
        &proxy,
        HOST,
        (0..500).map(|i| format!("/hold/{i}")).collect(),
    );
    origin
        .wait_for("200 requests held at the origin at once", |o| {
            o.inflight_now() == 200
        })
        .await;
    assert_eq!(
        origin.accepted(),
        2,
        "a second connection opens once the first carries 100 streams"
    );
    proxy
        .wait_pool_metric("ccnproxy_pool_queue_waits_total", ORIGIN, |v| v >= 300.0)
        .await;
    assert_eq!(origin.inflight_now(), 200, "no more streams while all wait");
    gate.open();
    let mut resps = Vec::with_capacity(500);
    for _ in 0..500 {
        resps.push(recv(&mut rx, "the held requests to finish").await);
    }
    assert_eq!(
        statuses(&resps),
        [(200, 500)].into(),
        "every request succeeds"
    );
    assert_eq!(origin.requests(), 500);
    assert!(
        origin
            .requests_seen()
            .iter()
            .all(|r| r.version == http::Version::HTTP_2),
        "the origin offers h2: every request goes over it"
    );
    assert_eq!(
        (origin.accepted(), origin.max_open()),
        (2, 2),
        "--h2-conns 2"
    );
    assert_eq!(
        origin.max_inflight_per_conn(),
        100,
        "SETTINGS_MAX_CONCURRENT_STREAMS 100, and every stream used"
    );
    assert_eq!(origin.max_inflight(), 200);
    let m = proxy.metrics().await;
    assert_eq!(m.pool_value("ccnproxy_pool_handshakes_total", ORIGIN), 2.0);
}

// 3. HTTP/1.1: the per-host cap and its queue.

#[tokio::test]
async fn h1_hundred_concurrent_requests_stay_within_max_conns_per_host() {
    let (origin, _proxy, resps) = hundred_held_over_four_connections().await;
    assert_eq!(
        statuses(&resps),
        [(200, 100)].into(),
        "every request waits its turn and succeeds"
    );
    assert_eq!(origin.requests(), 100);
    assert_eq!(
        origin.max_open(),
        4,
        "--max-conns-per-host 4: all 4 used, never more"
    );
}

#[tokio::test]
async fn h1_queued_requests_reuse_the_capped_connections() {
    // A request that finishes hands its connection to the next one in the
    // queue: the queue never makes the pool close and reopen connections.
    let (origin, _proxy, resps) = hundred_held_over_four_connections().await;
    assert_eq!(statuses(&resps), [(200, 100)].into());
    assert_eq!(
        origin.accepted(),
        4,
        "100 queued requests over 4 capped connections need 4 handshakes, not {}",
        origin.accepted()
    );
}

/// 100 requests held at a gated HTTP/1.1 origin behind `--max-conns-per-host
/// 4`: once 4 are at the origin and the other 96 wait in the pool's queue,
/// the gate opens. Returns the origin, the proxy and the responses.
async fn hundred_held_over_four_connections() -> (Origin, Arc<Proxy>, Vec<Resp>) {
    let gate = Gate::new();
    let origin = Origin::tls_http1().handler(gated(&gate)).start().await;
    let proxy = Arc::new(
        Proxy::start(origin.proxy_args_with(&[
            "--max-conns-per-host",
            "4",
            METRICS_LISTEN[0],
            METRICS_LISTEN[1],
        ]))
        .await,
    );
    let mut rx = spawn_each(
        &proxy,
        HOST,
        (0..100).map(|i| format!("/hold/{i}")).collect(),
    );
    origin
        .wait_for("4 requests held at the origin", |o| o.inflight_now() == 4)
        .await;
    proxy
        .wait_pool_metric("ccnproxy_pool_queue_waits_total", ORIGIN, |v| v >= 96.0)
        .await;
    assert_eq!(origin.accepted(), 4, "the cap holds while 96 wait");
    gate.open();
    let mut resps = Vec::with_capacity(100);
    for _ in 0..100 {
        resps.push(recv(&mut rx, "the held requests to finish").await);
    }
    (origin, proxy, resps)
}

/// 20 gated requests against `--max-conns-per-host 4 --pool-wait-timeout
/// 100ms` (after one warm-up request, so nobody waits for the first
/// handshake): 16 come back first, then the gate opens and the other 4
/// finish. Returns the origin, the proxy, the early and the late responses.
async fn saturate() -> (Origin, Arc<Proxy>, Vec<Resp>, Vec<Resp>) {
    let gate = Gate::new();
    let origin = Origin::tls_http1().handler(gated(&gate)).start().await;
    let proxy = Arc::new(
        Proxy::start(origin.proxy_args_with(&[
            "--max-conns-per-host",
            "4",
            "--pool-wait-timeout",
            "100ms",
            METRICS_LISTEN[0],
            METRICS_LISTEN[1],
        ]))
        .await,
    );
    assert_eq!(proxy.get(HOST, "/warm").await.status(), 200);
    let mut rx = spawn_each(
        &proxy,
        HOST,
        (0..20).map(|i| format!("/hold/{i}")).collect(),
    );
    let mut early = Vec::new();
    for _ in 0..16 {
        early.push(recv(&mut rx, "the requests beyond the cap to come back").await);
    }
    // The gate is still closed: the 4 that got a connection are at the origin.
    origin.wait_requests(1 + 4).await;
    gate.open();
    let mut late = Vec::new();
    for _ in 0..4 {
        late.push(recv(&mut rx, "the 4 held requests to finish").await);
    }
    (origin, proxy, early, late)
}

#[tokio::test]
async fn h1_requests_beyond_the_cap_get_503_after_the_pool_wait_timeout() {
    let (origin, proxy, early, late) = saturate().await;
    assert_eq!(
        statuses(&early),
        [(503, 16)].into(),
        "4 connections, 20 requests, a closed gate: 16 time out in the queue"
    );
    for r in &early {
        let body = r.text().to_lowercase();
        assert!(
            body.contains("pool"),
            "the 503 says why (pool saturated): {body:?}"
        );
    }
    assert_eq!(
        statuses(&late),
        [(200, 4)].into(),
        "the 4 admitted ones finish"
    );
    assert!(origin.max_open() <= 4, "{}", origin.max_open());
    assert_eq!(origin.accepted(), 4);
    assert_eq!(
        origin.requests(),
        1 + 4,
        "no refused request reached the origin"
    );
    let m = proxy.metrics().await;
    assert_eq!(
        m.pool_value("ccnproxy_pool_queue_timeouts_total", ORIGIN),
        16.0
    );
}

#[tokio::test]
async fn h1_pool_timeout_503_is_in_the_access_log_with_its_reason() {
    let (_origin, proxy, _early, _late) = saturate().await;
    let logs = proxy.logs_until(1 + 20).await;
    let refused: Vec<_> = logs.iter().filter(|l| l["status"] == 503).collect();
    assert_eq!(refused.len(), 16, "{logs:#?}");
    for log in refused {
        assert!(
            log["error"]
                .as_str()
                .is_some_and(|e| e.to_lowercase().contains("pool")),
            "the log line names the cause: {log}"
        );
    }
}

// 4. Spread over the addresses of a name.

#[tokio::test]
async fn connections_and_requests_spread_over_every_address() {
    let gate = Gate::new();
    let (a, b, port) = two_address_origins("spread.test", |o| o.handler(gated(&gate))).await;
    let dns = Dns::start().await;
    dns.set("spread.test", &["127.0.0.2", "127.0.0.3"], 60);
    let proxy = Arc::new(Proxy::start(dns_args(&dns, &[])).await);
    let host = format!("spread.test.ccnproxy-https:{port}");
    let n = 40;
    let mut rx = spawn_each(
        &proxy,
        &host,
        (0..n).map(|i| format!("/hold/{i}")).collect(),
    );
    // All 40 at the origins at once, then let them go.
    wait_until("all 40 requests to reach the origins", TIMEOUT, || {
        a.requests() + b.requests() == n
    })
    .await;
    gate.open();
    let mut resps = Vec::new();
    for _ in 0..n {
        resps.push(recv(&mut rx, "the spread requests to finish").await);
    }
    assert_eq!(statuses(&resps), [(200, n)].into());
    let conns = a.accepted() + b.accepted();
    let reqs = a.requests() + b.requests();
    let report = format!(
        "127.0.0.2: {} conns {} requests; 127.0.0.3: {} conns {} requests",
        a.accepted(),
        a.requests(),
        b.accepted(),
        b.requests()
    );
    for (what, part, total) in [
        ("connections on 127.0.0.2", a.accepted(), conns),
        ("connections on 127.0.0.3", b.accepted(), conns),
        ("requests on 127.0.0.2", a.requests(), reqs),
        ("requests on 127.0.0.3", b.requests(), reqs),
    ] {
        let s = share(part, total);
        assert!(
            (0.4..=0.6).contains(&s),
            "{what}: {:.0}% of {total}, want 40–60% ({report})",
            s * 100.0
        );
    }
}

// 5. Following a DNS change.

#[tokio::test]
async fn dns_change_moves_new_requests_and_drains_the_old_address() {
    let gate = Gate::new();
    let (old, new, port) = two_address_origins("moving.test", |o| o.handler(gated(&gate))).await;
    let dns = Dns::start().await;
    let ttl = 2;
    dns.set("moving.test", &["127.0.0.2"], ttl);
    let proxy = Arc::new(Proxy::start(dns_args(&dns, &METRICS_LISTEN)).await);
    let host = format!("moving.test.ccnproxy-https:{port}");

    // One connection busy (a held request), one idle, both on the old address.
    assert_eq!(proxy.get(&host, "/").await.status(), 200);
    let held = {
        let proxy = proxy.clone();
        let host = host.clone();
        tokio::spawn(async move { proxy.get(&host, "/hold").await })
    };
    old.wait_requests(2).await;
    assert_eq!(proxy.get(&host, "/").await.status(), 200);
    assert_eq!(
        old.open_now(),
        2,
        "precondition: one busy and one idle connection"
    );
    assert_eq!(new.requests(), 0);

    dns.set("moving.test", &["127.0.0.3"], ttl);
    let changed = Instant::now();
    let bound = Duration::from_secs(u64::from(ttl) + 2);
    // A request every 50 ms (pacing the load, not synchronising) until one
    // reaches the new address, at most TTL + 2 s after the change.
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut sent = 0;
    while new.requests() == 0 {
        assert!(
            changed.elapsed() <= bound,
            "no request reached 127.0.0.3 within {bound:?} of the DNS change \
             ({sent} requests sent, {} DNS queries for the name)",
            dns.queries("moving.test")
        );
        tick.tick().await;
        let resp = proxy.get(&host, &format!("/probe/{sent}")).await;
        assert_eq!(resp.status(), 200, "during the change: {}", resp.text());
        sent += 1;
    }

    let before = old.requests();
    for i in 0..20 {
        assert_eq!(proxy.get(&host, &format!("/after/{i}")).await.status(), 200);
    }
    assert_eq!(
        old.requests(),
        before,
        "after the change, nothing goes to 127.0.0.2"
    );
    assert_eq!(new.requests(), 1 + 20);

    // The idle connection to the old address closes at once; the busy one
    // finishes its request first.
    old.wait_for("the idle connection to 127.0.0.2 to close", |o| {
        o.open_now() <= 1
    })
    .await;
    assert!(
        !held.is_finished(),
        "the request in flight on 127.0.0.2 is not cut"
    );
    gate.open();
    let held = within("the held request", held)
        .await
        .expect("held request task");
    assert_eq!(held.status(), 200, "{}", held.text());
    old.wait_for("every connection to 127.0.0.2 to close", |o| {
        o.open_now() == 0
    })
    .await;
    let m = proxy.metrics().await;
    let origin = format!("https://moving.test:{port}");
    assert!(m.pool_value("ccnproxy_pool_dns_refreshes_total", &origin) >= 2.0);
}

// 6. Origins that close keep-alive connections; the retry.

/// Requests spaced past the origin's idle timeout (each one waits until the
/// origin has closed the previous connection) all succeed, each on a new
/// connection.
async fn spaced_past_origin_idle_timeout(origin: Origin) {
    let proxy = Proxy::start(origin.proxy_args()).await;
    for i in 0..5 {
        let resp = proxy.get(HOST, &format!("/{i}")).await;
        assert_eq!(
            resp.status(),
            200,
            "request {i} after an idle close: {}",
            resp.text()
        );
        // Space the next request past the origin's idle timeout: wait until
        // it has closed the connection.
        origin.wait_all_closed().await;
    }
    assert_eq!(origin.requests(), 5);
    assert_eq!(
        origin.accepted(),
        5,
        "each request after an idle close needs a new connection"
    );
}

#[tokio::test]
async fn requests_spaced_past_the_origin_idle_timeout_all_succeed() {
    let idle = Duration::from_millis(200);
    spaced_past_origin_idle_timeout(Origin::tls_http1().idle_timeout(idle).start().await).await;
}

#[tokio::test]
async fn h2_requests_spaced_past_the_origin_goaway_all_succeed() {
    // The h2 origin closes an idle connection with GOAWAY.
    let idle = Duration::from_millis(200);
    spaced_past_origin_idle_timeout(Origin::tls_h2().idle_timeout(idle).start().await).await;
}

/// The race the retry exists for: the origin reads a request on a reused
/// connection and hangs up (as `how`) without answering. The client must
/// still get 200, served on a fresh connection, counted as one retry.
async fn dropped_request_is_retried(how: HangUp) {
    let origin = RawOrigin::hang_up_after(1, how).await;
    let proxy = Proxy::start(origin.proxy_args_with(&METRICS_LISTEN)).await;
    assert_eq!(proxy.get(HOST, "/first").await.status(), 200);
    assert_eq!(origin.accepted(), 1);
    // Reuses the first connection; the origin reads it and hangs up.
    let resp = proxy.get(HOST, "/second").await;
    assert_eq!(
        origin.closed_unanswered(),
        1,
        "precondition: the race happened"
    );
    assert_eq!(
        resp.status(),
        200,
        "origin hung up with {how:?}; want a retry on a fresh connection: {}",
        resp.text()
    );
    assert_eq!(origin.accepted(), 2, "the retry went over a new connection");
    assert_eq!(origin.answered(), 2);
    let m = proxy.metrics().await;
    assert_eq!(m.pool_value("ccnproxy_pool_retries_total", ORIGIN), 1.0);
}

#[tokio::test]
async fn request_dropped_on_a_reused_connection_is_retried_once_on_a_fresh_one() {
    dropped_request_is_retried(HangUp::CloseNotify).await;
}

#[tokio::test]
async fn request_dropped_without_close_notify_is_retried_too() {
    dropped_request_is_retried(HangUp::Fin).await;
}

#[tokio::test]
async fn request_reset_on_a_reused_connection_is_retried_too() {
    dropped_request_is_retried(HangUp::Reset).await;
}

#[tokio::test]
async fn retried_request_is_logged_with_retries_1() {
    let origin = RawOrigin::close_after(1).await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    assert_eq!(proxy.get(HOST, "/first").await.status(), 200);
    assert_eq!(proxy.get(HOST, "/second").await.status(), 200);
    assert_eq!(
        origin.closed_unanswered(),
        1,
        "precondition: the race happened"
    );
    let logs = proxy.logs_until(2).await;
    assert_eq!(logs[0]["retries"], 0, "{}", logs[0]);
    assert_eq!(logs[1]["status"], 200, "{}", logs[1]);
    assert_eq!(logs[1]["retries"], 1, "{}", logs[1]);
}

#[tokio::test]
async fn request_whose_body_was_sent_is_not_retried() {
    // docs/design.md: only a request whose body was not sent is retried; nothing
    // else is retried silently.
    let origin = RawOrigin::close_after(1).await;
    let proxy = Proxy::start(origin.proxy_args_with(&METRICS_LISTEN)).await;
    assert_eq!(proxy.get(HOST, "/first").await.status(), 200);
    let resp = proxy.request("POST", HOST, "/upload", &[], "hello").await;
    assert_eq!(resp.status(), 502, "{}", resp.text());
    assert_eq!(
        origin.requests(),
        2,
        "the POST reached the origin once, not twice"
    );
    assert_eq!(origin.accepted(), 1);
    let m = proxy.metrics().await;
    assert_eq!(m.pool_value("ccnproxy_pool_retries_total", ORIGIN), 0.0);
}

// 7. The response timeout.

#[tokio::test]
async fn response_timeout_gives_504_and_the_connection_is_not_reused() {
    let gate = Gate::new();
    let origin = Origin::tls_http1().handler(gated(&gate)).start().await;
    let proxy = Proxy::start(origin.proxy_args_with(&["--proxy-read-timeout", "300ms"])).await;
    assert_eq!(proxy.get(HOST, "/first").await.status(), 200);
    let resp = proxy.get(HOST, "/hold").await;
    assert_eq!(resp.status(), 504, "{}", resp.text());
    assert_eq!(
        origin.last_request().conn,
        0,
        "precondition: the slow request went over the kept connection"
    );
    let resp = proxy.get(HOST, "/after").await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(
        origin.accepted(),
        2,
        "the next request opens a new connection"
    );
    assert_eq!(origin.last_request().conn, 1);
    origin
        .wait_for("the timed-out connection to be closed by the proxy", |o| {
            o.open_now() == 1
        })
        .await;
    gate.open();
}

// Lifetimes (docs/pool.md "Lifetimes").

/// One request, then the proxy's own timer (`flag value`) must close the
/// connection and the next request must open a new one.
async fn proxy_closes_after(origin: Origin, flag: &str, value: &str) {
    let proxy = Proxy::start(origin.proxy_args_with(&[flag, value])).await;
    assert_eq!(proxy.get(HOST, "/1").await.status(), 200);
    origin
        .wait_for(
            &format!("the proxy to close its connection ({flag} {value})"),
            |o| o.open_now() == 0,
        )
        .await;
    assert_eq!(proxy.get(HOST, "/2").await.status(), 200);
    assert_eq!(origin.accepted(), 2);
}

#[tokio::test]
async fn idle_h1_connection_closes_after_idle_timeout() {
    proxy_closes_after(Origin::tls_http1().start().await, "--idle-timeout", "300ms").await;
}

#[tokio::test]
async fn idle_h2_connection_closes_after_idle_timeout() {
    proxy_closes_after(Origin::tls_h2().start().await, "--idle-timeout", "300ms").await;
}

#[tokio::test]
async fn h1_connection_retires_after_max_conn_lifetime() {
    proxy_closes_after(
        Origin::tls_http1().start().await,
        "--max-conn-lifetime",
        "300ms",
    )
    .await;
}

#[tokio::test]
async fn h2_connection_retires_after_max_conn_lifetime() {
    proxy_closes_after(
        Origin::tls_h2().start().await,
        "--max-conn-lifetime",
        "300ms",
    )
    .await;
}

// 8. Prewarm.

#[tokio::test]
async fn prewarm_connects_before_the_first_request() {
    let origin = Origin::tls_http1().start().await;
    let proxy = Proxy::start(origin.proxy_args_with(&[
        "--prewarm",
        "https://example.test",
        METRICS_LISTEN[0],
        METRICS_LISTEN[1],
    ]))
    .await;
    origin
        .wait_for("the prewarm connection", |o| o.handshakes() == 1)
        .await;
    // The origin finishes its side of the handshake a moment before the
    // pool has the connection: wait for the pool to hold it idle.
    proxy
        .wait_pool_metric("ccnproxy_pool_idle_connections", ORIGIN, |v| v == 1.0)
        .await;
    assert_eq!(origin.accepted(), 1, "prewarm opens one connection");
    assert_eq!(origin.requests(), 0, "prewarm sends no request");
    assert_eq!(proxy.get(HOST, "/").await.status(), 200);
    assert_eq!(
        origin.accepted(),
        1,
        "the first request uses the prewarmed connection"
    );
}

#[tokio::test]
async fn prewarm_keeps_a_connection_open() {
    let origin = Origin::tls_http1().start().await;
    let _proxy = Proxy::start(origin.proxy_args_with(&["--prewarm", "https://example.test"])).await;
    origin
        .wait_for("the prewarm connection", |o| o.open_now() == 1)
        .await;
    origin.drop_connections();
    origin
        .wait_for(
            "a new prewarm connection after the origin closed the first",
            |o| o.accepted() == 2 && o.open_now() == 1,
        )
        .await;
}
