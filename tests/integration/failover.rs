//! One origin name, several addresses, some of them bad: an address that
//! refuses connections (nothing listens on it) and one whose listen backlog
//! is full, so a TCP handshake never completes (a blackholed front end).
//! Every request must still answer 200 without waiting for the connect
//! timeout, the bad address must be ejected (no new connection while its
//! back-off runs) and tried again after it; with every address bad, a
//! request fails with a clear 502 within the connect timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::support::admin::METRICS_LISTEN;
use crate::support::origin::args_for;
use crate::support::{Origin, Proxy, Resp};

const HOST: &str = "example.test.ccnproxy-https";
const ORIGIN: &str = "https://example.test:443";

/// An address on `ip` where nothing listens: connects are refused.
fn refusing(ip: &str) -> SocketAddr {
    let listener = std::net::TcpListener::bind((ip, 0)).expect("binding a free port");
    listener.local_addr().expect("local address")
}

/// A listener on `ip` that never accepts, its backlog filled by the test:
/// further TCP handshakes to it never complete. Keep it (and the filling
/// connections) alive for the test.
struct Blackhole {
    addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _filled: Vec<TcpStream>,
}

async fn blackhole(ip: &str) -> Blackhole {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(ip.parse().expect("ip"), 0))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("local address");
    let mut filled = Vec::new();
    // Linux queues backlog + 1 connections; past that it drops SYNs. Connect
    // until one does not complete (that one proves the queue is full).
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => filled.push(stream),
            Ok(Err(err)) => panic!("filling the backlog of {addr}: {err}"),
            Err(_) => {
                return Blackhole {
                    addr,
                    _listener: listener,
                    _filled: filled,
                };
            }
        }
    }
    panic!("the backlog of {addr} never filled");
}

/// Proxy flags: trust the test CA, pin example.test to `addrs`.
fn args(addrs: &[SocketAddr], extra: &[&str]) -> Vec<String> {
    let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    let mut args = args_for(&[]);
    args.push("--resolve".into());
    args.push(format!("example.test:443:{}", list.join(",")));
    args.extend(METRICS_LISTEN.iter().map(|s| s.to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `n` concurrent requests on fresh client connections; each with how long
/// it took.
async fn burst(proxy: &Arc<Proxy>, n: usize) -> Vec<(Resp, Duration)> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let proxy = proxy.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let resp = proxy.get(HOST, &format!("/{i}")).await;
                (resp, started.elapsed())
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("request task"));
    }
    out
}

fn assert_all_ok_and_quick(results: &[(Resp, Duration)], limit: Duration, proxy: &Proxy) {
    for (resp, took) in results {
        assert_eq!(
            resp.status(),
            200,
            "{}\n--- proxy stderr ---\n{}",
            resp.text(),
            proxy.stderr()
        );
        assert!(*took < limit, "a request took {took:?} (limit {limit:?})");
    }
}

#[tokio::test]
async fn a_refusing_address_costs_no_request_and_is_left_out_during_its_backoff() {
    let good = Origin::tls_http1().bind("127.0.0.2").start().await;
    let bad = refusing("127.0.0.3");
    // -c 0: every request opens a connection, so each one picks an address.
    let proxy = Arc::new(
        Proxy::start(args(
            &[good.addr(), bad],
            &["-c", "0", "--eject-backoff", "60s"],
        ))
        .await,
    );

    let first = burst(&proxy, 20).await;
    assert_all_ok_and_quick(&first, Duration::from_secs(5), &proxy);
    assert_eq!(good.accepted(), 20);
    let logs = proxy.logs_until(20).await;
    for log in &logs {
        assert_eq!(log["upstream_addr"], good.addr().to_string(), "{log}");
    }
    assert!(
        logs.iter().any(|l| l["connect_attempts"] == 2),
        "a request that met the refusing address first needed two attempts: {logs:?}"
    );
    let m = proxy.metrics().await;
    assert_eq!(m.pool_value("ccnproxy_pool_ejections_total", ORIGIN), 1.0);
    assert_eq!(m.pool_value("ccnproxy_pool_ejected_addresses", ORIGIN), 1.0);
    let errors = m.pool_value("ccnproxy_pool_connect_errors_total", ORIGIN);
    assert!(errors >= 1.0);

    // During the back-off no connection goes to the bad address.
    let second = burst(&proxy, 20).await;
    assert_all_ok_and_quick(&second, Duration::from_secs(5), &proxy);
    assert_eq!(good.accepted(), 40);
    let m = proxy.metrics().await;
    assert_eq!(
        m.pool_value("ccnproxy_pool_connect_errors_total", ORIGIN),
        errors,
        "no connect attempt on the ejected address"
    );
    for log in proxy.logs_until(20).await {
        assert_eq!(log["connect_attempts"], 1, "{log}");
    }
}

#[tokio::test]
async fn an_ejected_address_is_tried_again_after_its_backoff() {
    let good = Origin::tls_http1().bind("127.0.0.2").start().await;
    let bad = refusing("127.0.0.5");
    let proxy = Arc::new(
        Proxy::start(args(
            &[good.addr(), bad],
            &["-c", "0", "--eject-backoff", "300ms"],
        ))
        .await,
    );
    // Requests until one met the bad address (each picks at random between
    // two addresses with no connection).
    for _ in 0..40 {
        assert_eq!(proxy.get(HOST, "/").await.status(), 200);
        if proxy
            .metrics()
            .await
            .pool_value("ccnproxy_pool_ejections_total", ORIGIN)
            == 1.0
        {
            break;
        }
    }
    assert_eq!(
        proxy
            .metrics()
            .await
            .pool_value("ccnproxy_pool_ejections_total", ORIGIN),
        1.0
    );
    // The address comes back to life; once its back-off has ended, new
    // connections reach it again.
    let revived = Origin::tls_http1()
        .bind("127.0.0.5")
        .port(bad.port())
        .start()
        .await;
    proxy
        .wait_pool_metric("ccnproxy_pool_ejected_addresses", ORIGIN, |v| v == 0.0)
        .await;
    for _ in 0..40 {
        assert_eq!(proxy.get(HOST, "/").await.status(), 200);
        if revived.accepted() > 0 {
            break;
        }
    }
    assert!(revived.accepted() > 0, "the address was never tried again");
}

#[tokio::test]
async fn a_blackholed_address_costs_no_request_and_no_wait_for_the_connect_timeout() {
    let good = Origin::tls_http1().bind("127.0.0.2").start().await;
    let hole = blackhole("127.0.0.4").await;
    let proxy = Arc::new(
        Proxy::start(args(
            &[good.addr(), hole.addr],
            &[
                "-c",
                "0",
                "--connect-timeout",
                "10s",
                "--eject-backoff",
                "60s",
            ],
        ))
        .await,
    );

    // A cold pool: the first connect decides the protocol while the others
    // queue; none of them may wait for a hung connect.
    let first = burst(&proxy, 8).await;
    assert_all_ok_and_quick(&first, Duration::from_secs(4), &proxy);
    assert_eq!(good.accepted(), 8);
    let m = proxy.metrics().await;
    assert_eq!(m.pool_value("ccnproxy_pool_ejections_total", ORIGIN), 1.0);
    let errors = m.pool_value("ccnproxy_pool_connect_errors_total", ORIGIN);

    let second = burst(&proxy, 8).await;
    assert_all_ok_and_quick(&second, Duration::from_secs(4), &proxy);
    assert_eq!(good.accepted(), 16);
    let m = proxy.metrics().await;
    assert_eq!(
        m.pool_value("ccnproxy_pool_connect_errors_total", ORIGIN),
        errors,
        "no connect attempt on the ejected address"
    );
    let logs = proxy.logs_until(16).await;
    for log in &logs[8..] {
        assert_eq!(log["connect_attempts"], 1, "{log}");
        assert_eq!(log["upstream_addr"], good.addr().to_string(), "{log}");
    }
}

#[tokio::test]
async fn at_the_connection_cap_a_slow_connect_is_given_up_for_another_address() {
    let good = Origin::tls_http1().bind("127.0.0.2").start().await;
    let hole = blackhole("127.0.0.10").await;
    // One connection at most: no room for a parallel attempt.
    let proxy = Arc::new(
        Proxy::start(args(
            &[hole.addr, good.addr()],
            &[
                "-c",
                "0",
                "--max-conns-per-host",
                "1",
                "--connect-timeout",
                "10s",
            ],
        ))
        .await,
    );
    // Bursts (queued behind the one slot) until a connect met the
    // blackholed address: each connect picks at random between two
    // addresses with no connection.
    let mut sent = 0;
    for _ in 0..10 {
        let results = burst(&proxy, 4).await;
        assert_all_ok_and_quick(&results, Duration::from_secs(5), &proxy);
        sent += results.len();
        let m = proxy.metrics().await;
        if m.pool_value("ccnproxy_pool_ejections_total", ORIGIN) == 1.0 {
            break;
        }
    }
    let m = proxy.metrics().await;
    assert_eq!(m.pool_value("ccnproxy_pool_ejections_total", ORIGIN), 1.0);
    assert_eq!(good.accepted(), sent);
    for log in proxy.logs_until(sent).await {
        assert_eq!(log["upstream_addr"], good.addr().to_string(), "{log}");
    }
}

#[tokio::test]
async fn with_every_address_bad_a_request_fails_with_502_within_the_connect_timeout() {
    let bad = refusing("127.0.0.6");
    let hole = blackhole("127.0.0.7").await;
    let timeout = Duration::from_secs(2);
    let proxy = Proxy::start(args(&[bad, hole.addr], &["--connect-timeout", "2s"])).await;
    for _ in 0..2 {
        let started = Instant::now();
        let resp = proxy.get(HOST, "/").await;
        let took = started.elapsed();
        assert_eq!(resp.status(), 502, "{}", resp.text());
        assert!(
            resp.text()
                .contains("no connection to any of 2 addresses tried"),
            "{}",
            resp.text()
        );
        assert!(
            took < timeout + Duration::from_secs(1),
            "took {took:?} with a connect timeout of {timeout:?}"
        );
        let log = proxy.next_log().await;
        assert_eq!(log["status"], 502, "{log}");
        let error = log["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("no connection to any of 2 addresses"),
            "{log}"
        );
    }
}

#[tokio::test]
async fn a_certificate_that_does_not_verify_is_not_retried_elsewhere() {
    let untrusted = Origin::tls_http1()
        .bind("127.0.0.8")
        .untrusted()
        .start()
        .await;
    let good = Origin::tls_http1().bind("127.0.0.9").start().await;
    let proxy = Proxy::start(args(&[untrusted.addr(), good.addr()], &["-c", "0"])).await;
    // Until a request meets the untrusted address: that one is a 502 with
    // the TLS reason, not a silent success on the other address.
    let mut failed = None;
    for _ in 0..40 {
        let resp = proxy.get(HOST, "/").await;
        if resp.status() != 200 {
            failed = Some(resp);
            break;
        }
    }
    let resp = failed.expect("some request met the untrusted address");
    assert_eq!(resp.status(), 502, "{}", resp.text());
    assert!(resp.text().contains("TLS handshake"), "{}", resp.text());
    let m = proxy.metrics().await;
    assert_eq!(m.pool_value("ccnproxy_pool_ejections_total", ORIGIN), 0.0);
}
