//! SIGTERM: in-flight requests finish, logs are flushed, exit 0; the pid
//! file lives as long as the process.

use std::time::Duration;

use crate::support::client::{self, Client};
use crate::support::{Origin, Proxy, assert_pattern};

#[tokio::test]
async fn sigterm_lets_a_slow_request_finish_then_exits_0() {
    // 20 chunks, 50 ms apart: about a second in flight.
    let total = 20 * 10_000;
    let origin = Origin::tls_http1()
        .stream(total, 10_000, Duration::from_millis(50))
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("ccnproxy.pid");
    let proxy = Proxy::spawn_binary(origin.proxy_args_with(&[
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--shutdown-timeout",
        "10s",
    ]))
    .await;
    let pid = std::fs::read_to_string(&pid_file).expect("pid file exists while running");
    assert_eq!(pid.trim(), proxy.pid().to_string());

    let mut client = Client::connect(proxy.addr()).await;
    let req = client::request(
        "GET",
        "example.test.ccnproxy-https",
        "/slow",
        &[],
        client::empty(),
    );
    let pending = tokio::spawn(async move { client.send(req).await });
    origin.wait_requests(1).await;
    proxy.sigterm();

    let resp = pending
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(resp.status(), 200);
    assert_pattern(&resp.body, total as usize, "slow body across SIGTERM");
    let status = proxy.wait_exit().await;
    assert!(status.success(), "exit status: {status}");
    assert!(!pid_file.exists(), "pid file removed at exit");
}

#[tokio::test]
async fn sigterm_flushes_the_access_log() {
    let total = 5 * 10_000;
    let origin = Origin::tls_http1()
        .stream(total, 10_000, Duration::from_millis(50))
        .start()
        .await;
    let proxy = Proxy::spawn_binary(origin.proxy_args()).await;
    for _ in 0..3 {
        assert_eq!(
            proxy.get("example.test.ccnproxy-https", "/").await.status(),
            200
        );
    }
    // One more in flight when the signal comes.
    let mut client = Client::connect(proxy.addr()).await;
    let req = client::request(
        "GET",
        "example.test.ccnproxy-https",
        "/last",
        &[],
        client::empty(),
    );
    let pending = tokio::spawn(async move { client.send(req).await });
    origin.wait_requests(4).await;
    proxy.sigterm();
    assert_eq!(pending.await.unwrap().expect("in flight").status(), 200);
    assert!(proxy.wait_exit().await.success());
    let logs = proxy.logs_until(4).await;
    assert_eq!(logs[3]["uri"], "/last", "{logs:#?}");
    assert_eq!(logs[3]["bytes_sent"], total, "{logs:#?}");
}

#[tokio::test]
async fn sigterm_when_idle_exits_0() {
    let origin = Origin::plain_http1().start().await;
    let proxy = Proxy::spawn_binary(origin.proxy_args()).await;
    for _ in 0..3 {
        assert_eq!(proxy.get("example.test.ccnproxy", "/").await.status(), 200);
    }
    proxy.sigterm();
    let status = proxy.wait_exit().await;
    assert!(status.success(), "exit status: {status}");
}

#[tokio::test]
async fn sigint_right_after_startup_exits_0() {
    let proxy = Proxy::spawn_binary(crate::support::origin::args_for(&[])).await;
    proxy.sigint();
    let status = proxy.wait_exit().await;
    assert!(status.success(), "exit status: {status}");
}

#[tokio::test]
async fn shutdown_timeout_bounds_the_drain() {
    let origin = Origin::tls_http1().never_answer().start().await;
    let proxy = Proxy::spawn_binary(origin.proxy_args_with(&["--shutdown-timeout", "1s"])).await;
    let mut conn = proxy.raw().await;
    conn.write(b"GET / HTTP/1.1\r\nHost: example.test.ccnproxy-https\r\n\r\n")
        .await
        .unwrap();
    origin.wait_requests(1).await;
    let started = std::time::Instant::now();
    proxy.sigterm();
    let status = proxy.wait_exit().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "exit {took:?} after SIGTERM with --shutdown-timeout 1s (the client still waits)"
    );
    assert!(status.success(), "exit status: {status}");
    drop(conn);
}
