//! Flags no other test reaches: `--connect-timeout`, `--write-timeout`,
//! `--max-header-bytes`, `--access-log-rotate-time`, SIGHUP reopening the
//! access log, and serving from the last DNS answer while the resolver is
//! silent.

use std::path::Path;
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

use crate::support::origin::args_for;
use crate::support::{Dns, Origin, Proxy, TIMEOUT, wait_until};

const HOST: &str = "example.test.ccnproxy";

/// A listener on 127.0.0.1 whose accept queue is full, and the connections
/// that fill it. Linux drops the SYN of any further connect, so such a
/// connect neither succeeds nor fails until the client gives up.
async fn full_backlog() -> (tokio::net::TcpListener, Vec<TcpStream>) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind");
    // Backlog 0: the queue holds one connection (the kernel allows backlog + 1).
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("address");
    let mut held = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(err)) => panic!("connecting to fill the backlog: {err}"),
            // This one hangs: the queue is full.
            Err(_) => return (listener, held),
        }
    }
    panic!("the accept queue of {addr} never filled");
}

#[tokio::test]
async fn connect_timeout_gives_up_on_an_origin_that_never_accepts() {
    let (listener, _held) = full_backlog().await;
    let port = listener.local_addr().expect("address").port();
    let mut args = args_for(&[]);
    args.extend([
        "--resolve".to_owned(),
        format!("stuck.test:80:127.0.0.1:{port}"),
        "--connect-timeout".to_owned(),
        "500ms".to_owned(),
    ]);
    let proxy = Proxy::start(args).await;
    let started = Instant::now();
    let resp = proxy.get("stuck.test.ccnproxy", "/").await;
    let took = started.elapsed();
    assert!(
        matches!(resp.status().as_u16(), 502 | 504),
        "{} {}",
        resp.status(),
        resp.text()
    );
    let rec = proxy.next_log().await;
    let error = rec["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("--connect-timeout (500ms)"),
        "the reason names the connect timeout: {rec}"
    );
    // A lower bound only: a timer cannot fire early, however busy the machine.
    assert!(
        took >= Duration::from_millis(500),
        "answered after {took:?}, before --connect-timeout"
    );
}

#[tokio::test]
async fn write_timeout_cuts_a_client_that_stopped_reading() {
    // Far more than every socket buffer between the origin and the client.
    const TOTAL: u64 = 256 << 20;
    let origin = Origin::plain_http1().download(TOTAL).start().await;
    let proxy = Proxy::start(origin.proxy_args_with(&["--write-timeout", "1s"])).await;
    let mut conn = proxy.raw().await;
    conn.write(format!("GET /big HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await
        .expect("writing the request");
    let head = conn.read_head().await;
    assert_eq!(head.status, 200);
    // The client reads nothing more: the proxy's writes stop making progress
    // once the buffers are full, and the connection is cut a second later.
    let rec = proxy.next_log().await;
    let sent = rec["bytes_sent"].as_u64().expect("bytes_sent");
    assert!(sent < TOTAL, "the response was cut short: {rec}");
    assert!(
        rec["error"].is_string(),
        "the record says why it ended: {rec}"
    );
    assert!(
        rec["duration_ms"].as_f64().expect("duration_ms") >= 1000.0,
        "cut before --write-timeout: {rec}"
    );
    // What the buffers held, then the end: the proxy closed the connection.
    let rest = conn.read_to_end().await;
    assert!((rest.len() as u64) < TOTAL, "{} bytes", rest.len());
}

/// The status the proxy answers a head of about `filler` bytes with.
async fn head_status(proxy: &Proxy, filler: usize) -> u16 {
    let mut conn = proxy.raw().await;
    let head = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(filler)
    );
    // The proxy may answer 431 before it has read everything.
    let _ = conn.write(head.as_bytes()).await;
    conn.read_head().await.status
}

#[tokio::test]
async fn max_header_bytes_sets_the_largest_request_head() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let small = Proxy::start(origin.proxy_args_with(&["--max-header-bytes", "16384"])).await;
    assert_eq!(head_status(&small, 12_000).await, 200);
    assert_eq!(small.next_log().await["status"], 200);
    assert_eq!(head_status(&small, 20_000).await, 431);
    assert_eq!(small.next_log().await["status"], 431);
    let default = Proxy::start(origin.proxy_args()).await;
    assert_eq!(
        head_status(&default, 20_000).await,
        200,
        "the default (64 KiB) takes the same head: the flag made the difference"
    );
}

/// The file name `current` points at in `dir`.
fn current_file(dir: &Path) -> String {
    let target = std::fs::read_link(dir.join("current")).expect("the current symlink");
    target
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

#[tokio::test]
async fn access_log_rotate_time_sets_the_period_of_the_files() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    for (minutes, pattern) in [
        ("1", "access_log.%Y%m%d%H%M"),
        ("60", "access_log.%Y%m%d%H00"),
        ("1440", "access_log.%Y%m%d0000"),
    ] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("logs");
        let before = chrono::Local::now().format(pattern).to_string();
        let proxy = Proxy::start(origin.proxy_args_with(&[
            "--access-log-dir",
            dir.to_str().expect("UTF-8 path"),
            "--access-log-rotate-time",
            minutes,
        ]))
        .await;
        let after = chrono::Local::now().format(pattern).to_string();
        let name = current_file(&dir);
        assert!(
            name == before || name == after,
            "--access-log-rotate-time {minutes}: file {name}, expected {before} (or {after})"
        );
        drop(proxy);
    }
}

#[tokio::test]
async fn sighup_reopens_the_access_log_file() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("logs");
    let proxy = Proxy::spawn_binary(
        origin.proxy_args_with(&["--access-log-dir", dir.to_str().expect("UTF-8 path")]),
    )
    .await;
    let file = dir.join(current_file(&dir));
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(proxy.get(HOST, "/before").await.status(), 200);
    wait_until("the first line is in the file", TIMEOUT, || {
        read(&file).contains("/before")
    })
    .await;

    // What logrotate does: move the file away, then signal.
    let moved = dir.join("moved");
    std::fs::rename(&file, &moved).expect("moving the file");
    proxy.sighup();
    // Nothing is written in between, so only the signal can bring the file
    // back (the writer's own check runs on a write).
    wait_until("the file is opened again at its path", TIMEOUT, || {
        file.exists()
    })
    .await;
    assert_eq!(proxy.get(HOST, "/after").await.status(), 200);
    wait_until("the next line is in the new file", TIMEOUT, || {
        read(&file).contains("/after")
    })
    .await;
    let old = read(&moved);
    assert!(
        old.contains("/before") && !old.contains("/after"),
        "the moved file keeps only the line from before: {old:?}"
    );
}

#[tokio::test]
async fn the_last_dns_answer_serves_while_the_resolver_is_silent() {
    let origin = Origin::plain_http1()
        .name("stale.test")
        .reply(200, "ok")
        .start()
        .await;
    let port = origin.addr().port();
    let dns = Dns::start().await;
    dns.set("stale.test", &["127.0.0.1"], 1);
    let args = dns.proxy_args(&[]);
    let proxy = Proxy::start(args).await;
    let host = format!("stale.test.ccnproxy:{port}");
    assert_eq!(proxy.get(&host, "/first").await.status(), 200);

    dns.set_silent(true);
    let asked = dns.queries("stale.test");
    // Once the 1 s answer expires, a request starts a refresh in the
    // background. Requests go on (paced, not synchronising) until the silent
    // server has been asked; every one of them is served.
    let deadline = Instant::now() + TIMEOUT;
    let mut sent = 0;
    while dns.queries("stale.test") == asked {
        assert!(
            Instant::now() < deadline,
            "no refresh query within {TIMEOUT:?} ({sent} requests)"
        );
        let resp = proxy.get(&host, &format!("/during/{sent}")).await;
        assert_eq!(resp.status(), 200, "while refreshing: {}", resp.text());
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The resolver gives up (timeouts and retries: several seconds).
    wait_until(
        "the proxy to record the failed refresh",
        Duration::from_secs(30),
        || {
            proxy
                .stderr()
                .contains("dns.refresh failed; keeping the last answer")
        },
    )
    .await;
    let resp = proxy.get(&host, "/after").await;
    assert_eq!(resp.status(), 200, "after the failure: {}", resp.text());
    assert_eq!(origin.requests(), sent + 2);
}
