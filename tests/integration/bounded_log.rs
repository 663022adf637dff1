//! The access-log queue is bounded: with stdout piped to a reader that stops
//! reading (a stuck journald, a full pipe), the proxy's memory stays under a
//! stated bound. In block mode every request's line arrives exactly once
//! when the reader resumes; in drop mode the dropped-lines counter equals the
//! lines that never arrived.
//!
//! These need the real binary with a stdout the test can stop reading, so
//! they spawn it themselves (`Spawned`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::support::admin::Metrics;
use crate::support::client::{self, Client};
use crate::support::{TIMEOUT, wait_until, within_for};

/// The binary with its access log on a stdout pipe that the test can stop
/// reading (`pause`, `resume`); lines read are kept in `lines`.
pub(crate) struct Spawned {
    child: Child,
    pub(crate) addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    reading: watch::Sender<bool>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Spawned {
    /// Starts `ccnproxy -l 127.0.0.1 -p 0 --access-log-dir stdout ARGS`, its
    /// stdout read from the start.
    pub(crate) async fn start(args: &[&str]) -> Spawned {
        Spawned::start_with_env(args, &[]).await
    }

    /// `start` with `envs` set for the process (e.g. AWS credentials for
    /// `--sign`).
    pub(crate) async fn start_with_env(args: &[&str], envs: &[(&str, &str)]) -> Spawned {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccnproxy"));
        cmd.args(["-l", "127.0.0.1", "-p", "0", "--access-log-dir", "stdout"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .envs(envs.iter().copied())
            .kill_on_drop(true);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("CCNPROXY_") {
                cmd.env_remove(name);
            }
        }
        let mut child = cmd.spawn().expect("spawning ccnproxy");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let err = child.stderr.take().expect("piped stderr");
        tokio::spawn({
            let stderr = stderr.clone();
            async move {
                let mut addr_tx = Some(addr_tx);
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(rest) = line.split("listening on ").nth(1)
                        && !line.contains("admin listening")
                        && let Some(tx) = addr_tx.take()
                    {
                        let _ = tx.send(rest.trim().parse::<SocketAddr>().expect("address"));
                    }
                    let mut buf = stderr.lock().expect("stderr");
                    // Keep the first and the latest diagnostics, not all of them.
                    if buf.len() > 64 << 10 {
                        buf.truncate(32 << 10);
                    }
                    buf.push_str(&line);
                    buf.push('\n');
                }
            }
        });
        let (reading, mut go) = watch::channel(true);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("piped stdout");
        tokio::spawn({
            let lines = lines.clone();
            async move {
                let mut reader = BufReader::new(out).lines();
                loop {
                    if go.wait_for(|go| *go).await.is_err() {
                        return;
                    }
                    match reader.next_line().await {
                        Ok(Some(line)) => lines.lock().expect("lines").push(line),
                        _ => return,
                    }
                }
            }
        });
        let addr = match tokio::time::timeout(Duration::from_secs(20), addr_rx).await {
            Ok(Ok(addr)) => addr,
            _ => panic!(
                "ccnproxy did not start\n--- stderr ---\n{}",
                stderr.lock().expect("stderr")
            ),
        };
        Spawned {
            child,
            addr,
            stderr,
            reading,
            lines,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }

    /// Stops reading stdout: once the pipe (64 KiB) fills, writes block.
    pub(crate) fn pause(&self) {
        self.reading.send_replace(false);
    }

    pub(crate) fn resume(&self) {
        self.reading.send_replace(true);
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines").clone()
    }

    /// Live tokio tasks (`tasks` of `GET /.api/stats`).
    pub(crate) async fn tasks(&self) -> u64 {
        let mut c = Client::connect(self.addr).await;
        let host = self.addr.to_string();
        let req = client::request("GET", &host, "/.api/stats", &[], client::empty());
        let resp = c.send(req).await.expect("GET /.api/stats");
        assert_eq!(resp.status(), 200, "{}", resp.text());
        let stats: serde_json::Value = serde_json::from_str(&resp.text()).expect("stats JSON");
        stats["tasks"].as_u64().expect("tasks in /.api/stats")
    }

    /// `GET /metrics` from the proxy itself.
    pub(crate) async fn metrics(&self) -> Metrics {
        let mut c = Client::connect(self.addr).await;
        let host = self.addr.to_string();
        let req = client::request("GET", &host, "/metrics", &[], client::empty());
        let resp = c.send(req).await.expect("GET /metrics");
        assert_eq!(resp.status(), 200, "{}", resp.text());
        Metrics::parse(&resp.text())
    }
}

/// Resident set size of `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Access-log lines: the sequence number and 2 KiB of padding from request
/// headers, so a few dozen lines fill the pipe.
const FORMAT: &str = "%{X-Seq}i %{X-Pad}i";
const PAD: usize = 2048;
const QUEUE_LINES: &str = "500";
/// Growth of RSS allowed while the sink is stalled. The queue holds at most
/// 500 records of ~3 KiB (1.5 MiB); the rest is allocator slack. Without the
/// bound, each stalled request held its record (~3 KiB here), so the
/// requests below would add 20–60 MiB.
const RSS_GROWTH_KIB: u64 = 12 << 10;

/// Sends `GET /healthz` with `X-Seq: prefix-N` for N in `0..n`, over
/// `clients` keep-alive connections; counts finished requests in `done`.
fn send_all(
    addr: SocketAddr,
    prefix: &'static str,
    n: usize,
    clients: usize,
    done: Arc<AtomicUsize>,
) -> tokio::task::JoinSet<()> {
    let pad = "p".repeat(PAD);
    let mut set = tokio::task::JoinSet::new();
    for c in 0..clients {
        let done = done.clone();
        let pad = pad.clone();
        set.spawn(async move {
            let mut client = Client::connect(addr).await;
            let host = addr.to_string();
            for seq in (c..n).step_by(clients) {
                let seq = format!("{prefix}-{seq}");
                let headers = [("x-seq", seq.as_str()), ("x-pad", pad.as_str())];
                let req = client::request("GET", &host, "/healthz", &headers, client::empty());
                let resp = client.send(req).await.expect("GET /healthz");
                assert_eq!(resp.status(), 200);
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    set
}

/// How many times each `prefix-N` sequence number appears in `lines`.
fn seen(lines: &[String], prefix: &str) -> HashMap<usize, usize> {
    let mut seen = HashMap::new();
    for line in lines {
        let Some(seq) = line.split(' ').next().and_then(|s| s.strip_prefix(prefix)) else {
            continue;
        };
        let seq: usize = seq
            .trim_start_matches('-')
            .parse()
            .expect("sequence number");
        *seen.entry(seq).or_insert(0) += 1;
    }
    seen
}

/// Starts the proxy with the padded format, the small queue and `extra`,
/// sends 200 warm-up requests (so the baseline includes the runtime's first
/// allocations) and returns it with its RSS in KiB.
async fn start_warm(extra: &[&str]) -> (Spawned, u64) {
    let mut args = vec![
        "--access-log-format",
        FORMAT,
        "--access-log-queue-lines",
        QUEUE_LINES,
    ];
    args.extend_from_slice(extra);
    let proxy = Spawned::start(&args).await;
    let mut set = send_all(proxy.addr, "warm", 200, 8, Arc::new(AtomicUsize::new(0)));
    while set.join_next().await.is_some() {}
    wait_until("warm-up lines read", TIMEOUT, || {
        seen(&proxy.lines(), "warm").len() == 200
    })
    .await;
    let base = rss_kib(proxy.pid());
    (proxy, base)
}

/// Samples RSS every 100 ms for `window`; returns the largest value.
async fn peak_rss_over(pid: u32, window: Duration) -> u64 {
    let mut peak = rss_kib(pid);
    let end = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss_kib(pid));
    }
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_mode_stalls_then_writes_every_line_once_in_order() {
    const N: usize = 3000;
    let (proxy, base) = start_warm(&[]).await;
    proxy.pause();
    let done = Arc::new(AtomicUsize::new(0));
    let mut set = send_all(proxy.addr, "s", N, 32, done.clone());
    // The queue fills; then requests wait for room instead of piling up.
    wait_until("the queue fills", Duration::from_secs(30), || {
        done.load(Ordering::Relaxed) >= 500
    })
    .await;
    let peak = peak_rss_over(proxy.pid(), Duration::from_secs(2)).await;
    let stalled = done.load(Ordering::Relaxed);
    assert!(
        stalled < N,
        "all {N} requests finished with the sink stalled: nothing blocked"
    );
    assert!(
        peak <= base + RSS_GROWTH_KIB,
        "RSS {peak} KiB while stalled, baseline {base} KiB (bound +{RSS_GROWTH_KIB} KiB)\n{}",
        proxy.stderr()
    );

    proxy.resume();
    within_for(
        "every request finishes once the sink drains",
        Duration::from_secs(60),
        async {
            while let Some(r) = set.join_next().await {
                r.expect("client task");
            }
        },
    )
    .await;
    wait_until("every line arrives", Duration::from_secs(30), || {
        seen(&proxy.lines(), "s").len() == N
    })
    .await;
    let lines = proxy.lines();
    let counts = seen(&lines, "s");
    assert!(counts.values().all(|&c| c == 1), "a line arrived twice");
    // One client's requests are sequential, so its lines keep its order.
    let order: Vec<usize> = lines
        .iter()
        .filter_map(|l| l.split(' ').next()?.strip_prefix("s-")?.parse().ok())
        .filter(|seq: &usize| seq % 32 == 5)
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "client 5's lines out of order"
    );
    let m = proxy.metrics().await;
    assert!(
        m.get("ccnproxy_log_queue_waits_total", &[]).unwrap_or(0.0) > 0.0,
        "{}",
        m.text
    );
    assert_eq!(m.get("ccnproxy_log_lines_dropped_total", &[]), Some(0.0));
    eprintln!(
        "block mode: baseline {base} KiB, peak {peak} KiB while stalled, {stalled}/{N} finished during the stall"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_mode_counts_exactly_the_lines_that_never_arrive() {
    const N: usize = 20_000;
    let (proxy, base) = start_warm(&["--access-log-when-full", "drop"]).await;
    proxy.pause();
    let done = Arc::new(AtomicUsize::new(0));
    let mut set = send_all(proxy.addr, "s", N, 32, done.clone());
    let mut peak = base;
    // Drop mode never makes a request wait: all of them finish during the stall.
    within_for("every request finishes with the sink stalled", Duration::from_secs(120), async {
        loop {
            tokio::select! {
                r = set.join_next() => match r {
                    Some(r) => r.expect("client task"),
                    None => break,
                },
                () = tokio::time::sleep(Duration::from_millis(100)) => peak = peak.max(rss_kib(proxy.pid())),
            }
        }
    })
    .await;
    peak = peak.max(peak_rss_over(proxy.pid(), Duration::from_secs(1)).await);
    assert!(
        peak <= base + RSS_GROWTH_KIB,
        "RSS {peak} KiB while stalled, baseline {base} KiB (bound +{RSS_GROWTH_KIB} KiB)"
    );
    assert!(
        proxy.stderr().contains("lines dropped"),
        "no warning about dropped lines\n{}",
        proxy.stderr()
    );

    proxy.resume();
    // The queue is FIFO: once a marker's line arrives, everything queued
    // before it has arrived. A marker may itself be dropped while the queue
    // drains, so send them until one arrives.
    let mut markers = 0;
    let mut client = Client::connect(proxy.addr).await;
    let host = proxy.addr.to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seq = format!("m-{markers}");
        let req = client::request(
            "GET",
            &host,
            "/healthz",
            &[("x-seq", &seq)],
            client::empty(),
        );
        assert_eq!(client.send(req).await.expect("marker").status(), 200);
        markers += 1;
        let arrived = || !seen(&proxy.lines(), "m").is_empty();
        let wait_end = tokio::time::Instant::now() + Duration::from_secs(2);
        while !arrived() && tokio::time::Instant::now() < wait_end {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if arrived() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no marker line arrived"
        );
    }
    // The queue has drained up to that marker: one more cannot be dropped,
    // and once it arrives every earlier marker has arrived or was dropped.
    let last = markers;
    let seq = format!("m-{last}");
    let req = client::request(
        "GET",
        &host,
        "/healthz",
        &[("x-seq", &seq)],
        client::empty(),
    );
    assert_eq!(client.send(req).await.expect("marker").status(), 200);
    markers += 1;
    wait_until("the last marker arrives", TIMEOUT, || {
        seen(&proxy.lines(), "m").contains_key(&last)
    })
    .await;
    let m = proxy.metrics().await;
    let dropped = m
        .get("ccnproxy_log_lines_dropped_total", &[])
        .expect("dropped counter") as usize;
    let lines = proxy.lines();
    let counts = seen(&lines, "s");
    assert!(counts.values().all(|&c| c == 1), "a line arrived twice");
    let markers_lost = markers - seen(&lines, "m").len();
    assert!(dropped > 0, "nothing was dropped: the stall was not felt");
    assert_eq!(
        dropped,
        N - counts.len() + markers_lost,
        "dropped counter vs lines that never arrived"
    );
    eprintln!(
        "drop mode: baseline {base} KiB, peak {peak} KiB while stalled; {} of {N} lines arrived, {dropped} dropped",
        counts.len()
    );
}
