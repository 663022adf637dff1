//! `make soak` (`cargo bench --bench soak`): does the release binary stay
//! flat under hours-like traffic? A benchmark, not a test: nothing passes or
//! fails; it prints samples and the slope of RSS after warm-up.
//!
//! For `SOAK_SECONDS` (default 600): `SOAK_CLIENTS` client connections
//! (default 64) send `SOAK_RATE` requests per second in total (default 400),
//! each to one of 1,000 origin names under `*.soak.test` picked at random
//! from a window that slides 10 names a second over `SOAK_NAMES` (default
//! 20,000; names resolved by a local DNS server, TTL 5 s), so names go
//! unused and come back all along; 1 in 50 requests
//! carries 1 MiB, the rest 1 KiB. Every 20 s a tenth of the names move
//! between two HTTPS origins (127.0.0.1 and 127.0.0.2, same port, h2 and
//! HTTP/1.1); every 60 s the first origin restarts (its connections break).
//! ccnproxy runs with `--origin-idle-ttl 30s`, so origin state comes and
//! goes all along, and its access log goes to stdout (`/dev/null`).
//!
//! Every `SOAK_EVERY` seconds (default 5) one row: RSS, open fds, threads,
//! live tokio tasks (`/.api/stats`), pools (`/metrics`), requests done and
//! failed. Then: RSS at the end of warm-up (the first fifth, at least 30 s)
//! and at the end, and the least-squares slope of RSS after warm-up and over
//! the second half; then RSS and the heap in use (`/metrics`) when the
//! traffic stops and `SOAK_SETTLE` seconds (default 60) later, the burst's
//! memory given back or not.
// One crate of bench support: `pub` in its modules means shared between
// its files, so the library's `unreachable_pub` rule does not apply.
#![allow(unreachable_pub)]

#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use support::Res;
use support::client::{Conn, admin_get};
use support::dns::Dns;
use support::origin::{Origin, Pki};
use support::procs::{Proxy, status_value};

/// Settings from the environment.
struct Soak {
    seconds: u64,
    clients: usize,
    rate: u64,
    names: usize,
    every: u64,
    /// Seconds to wait after the traffic before the last RSS and heap.
    settle: u64,
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("soak bench: skipped (run it with `make soak` or `cargo bench --bench soak`)");
        return;
    }
    let soak = Soak {
        seconds: env_or("SOAK_SECONDS", 600),
        clients: env_or("SOAK_CLIENTS", 64).max(1) as usize,
        rate: env_or("SOAK_RATE", 400).max(1),
        names: env_or("SOAK_NAMES", 20_000).max(ACTIVE as u64) as usize,
        every: env_or("SOAK_EVERY", 5).max(1),
        settle: env_or("SOAK_SETTLE", 60),
    };
    let runtime = support::runtime();
    if let Err(err) = runtime.block_on(run(&soak)) {
        println!("soak failed: {err}");
    }
}

/// Requests done and failed, by all clients.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Names in use at any time.
const ACTIVE: usize = 1000;
/// Names the window moves by per second.
const SLIDE: f64 = 10.0;

fn name(i: usize) -> String {
    format!("o{i}.soak.test")
}

async fn run(soak: &Soak) -> Res<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::new(dir.path(), &["*.soak.test"])?;
    let tls = pki.server_config(true)?;
    let first = Origin::start(tls.clone()).await?;
    let port = first.addr.port();
    let at = move |last: u8| SocketAddr::from(([127, 0, 0, last], port));
    let second = Origin::start_at(tls.clone(), None, at(2)).await?;
    let dns = Dns::start().await;
    let homes: [&[&str]; 3] = [&["127.0.0.1"], &["127.0.0.2"], &["127.0.0.1", "127.0.0.2"]];
    for i in 0..soak.names {
        dns.set(&name(i), homes[i % 3], 5);
    }
    // Loopback, any free port, the access log to stdout (/dev/null).
    let flags = "-l 127.0.0.1 -p 0 --access-log-dir stdout --log-level error --origin-idle-ttl 30s";
    let mut args = dns.proxy_args(&flags.split(' ').collect::<Vec<_>>());
    args.extend(["--ca-file".to_owned(), pki.ca_file.display().to_string()]);
    let proxy = Proxy::start(&args).await?;
    println!("ccnproxy soak: make soak SOAK_SECONDS={}", soak.seconds);
    println!(
        "{} s, {} requests/s from {} client connections over {} origin names \
         ({ACTIVE} at a time, sliding {SLIDE} a second; 1 in 50 requests with 1 MiB, \
         the rest 1 KiB); names move every 20 s, origin restarts every 60 s; \
         machine: {} CPUs",
        soak.seconds,
        soak.rate,
        soak.clients,
        soak.names,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(soak.seconds);
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..soak.clients {
        let counts = counts.clone();
        let (names, proxy_addr) = (soak.names, proxy.addr);
        let period = Duration::from_secs_f64(soak.clients as f64 / soak.rate as f64);
        clients.spawn(async move {
            client(
                c,
                proxy_addr,
                port,
                names,
                period,
                started..deadline,
                &counts,
            )
            .await;
        });
    }

    // Names move and the first origin restarts, until the deadline.
    let churn = {
        let dns = Arc::new(dns);
        let names = soak.names;
        tokio::spawn(async move {
            let mut first = Some(first);
            let mut tick = tokio::time::interval(Duration::from_secs(20));
            tick.tick().await;
            for round in 1usize.. {
                tick.tick().await;
                if Instant::now() >= deadline {
                    break;
                }
                for i in (round % 10..names).step_by(10) {
                    dns.set(&name(i), homes[(i + round) % 3], 5);
                }
                if round % 3 == 0 {
                    drop(first.take());
                    first = restart(&tls, at(1)).await;
                }
            }
            drop(first);
            dns
        })
    };

    let mut samples: Vec<(f64, u64)> = Vec::new();
    println!();
    println!(
        "| {:>5} | {:>9} | {:>5} | {:>7} | {:>6} | {:>5} | {:>9} | {:>7} |",
        "s", "RSS KiB", "fds", "threads", "tasks", "pools", "requests", "failed"
    );
    println!(
        "|{:->7}|{:->11}|{:->7}|{:->9}|{:->8}|{:->7}|{:->11}|{:->9}|",
        "", "", "", "", "", "", "", ""
    );
    let mut tick = tokio::time::interval(Duration::from_secs(soak.every));
    loop {
        tick.tick().await;
        let t = started.elapsed().as_secs_f64();
        let rss = status_value(proxy.pid, "VmRSS:").unwrap_or(0);
        let threads = status_value(proxy.pid, "Threads:").unwrap_or(0);
        let fds = std::fs::read_dir(format!("/proc/{}/fd", proxy.pid)).map_or(0, |d| d.count());
        let (tasks, pools) = admin_numbers(proxy.addr).await.unwrap_or((-1, -1));
        println!(
            "| {t:>5.0} | {rss:>9} | {fds:>5} | {threads:>7} | {tasks:>6} | {pools:>5} | {:>9} | {:>7} |",
            counts.ok.load(Ordering::Relaxed),
            counts.failed.load(Ordering::Relaxed)
        );
        samples.push((t, rss));
        if Instant::now() >= deadline {
            break;
        }
    }
    while clients.join_next().await.is_some() {}
    let _dns = churn.await?;
    drop(second);

    let warm = (soak.seconds as f64 / 5.0).max(30.0);
    let after: Vec<(f64, u64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t >= warm)
        .collect();
    let (start_rss, end_rss) = (
        after.first().map_or(0, |s| s.1),
        after.last().map_or(0, |s| s.1),
    );
    println!();
    println!(
        "RSS after warm-up ({warm:.0} s): {start_rss} KiB; at the end: {end_rss} KiB; \
         slope after warm-up: {:.1} KiB/min over {} samples; peak (VmHWM): {} KiB",
        slope(&after) * 60.0,
        after.len(),
        status_value(proxy.pid, "VmHWM:").unwrap_or(0)
    );
    let half = soak.seconds as f64 / 2.0;
    let second: Vec<(f64, u64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t >= half)
        .collect();
    println!(
        "slope over the second half ({half:.0} s on): {:.1} KiB/min",
        slope(&second) * 60.0
    );
    // The traffic was the burst: with no request left, origin state expires
    // (`--origin-idle-ttl 30s`); a minute on, how much of what the burst
    // took does the process still hold?
    let settle = Duration::from_secs(soak.settle);
    println!(
        "at the end of traffic: RSS {} KiB, heap in use {} KiB",
        status_value(proxy.pid, "VmRSS:").unwrap_or(0),
        heap_in_use(proxy.addr).await.unwrap_or(-1) >> 10
    );
    tokio::time::sleep(settle).await;
    let (rss, heap) = (
        status_value(proxy.pid, "VmRSS:").unwrap_or(0),
        heap_in_use(proxy.addr).await.unwrap_or(-1) >> 10,
    );
    println!(
        "{} s after the traffic ended: RSS {rss} KiB, heap in use {heap} KiB \
         (aim: RSS within 1.5 x heap + 32 MiB = {} KiB)",
        soak.settle,
        heap * 3 / 2 + (32 << 10)
    );
    let tail = proxy.stderr_tail();
    if !tail.is_empty() {
        println!("ccnproxy stderr (last lines): {}", tail.join(" | "));
    }
    proxy.stop().await;
    Ok(())
}

/// One client connection sending a request every `period` during `span`, to
/// a random name of the window; reconnects after a failure that closed it.
async fn client(
    seed: usize,
    proxy: SocketAddr,
    port: u16,
    names: usize,
    period: Duration,
    span: std::ops::Range<Instant>,
    counts: &Counts,
) {
    let mut rng = fastrand::Rng::with_seed(seed as u64);
    let large = Bytes::from(vec![b'x'; 1 << 20]);
    let small = Bytes::from_static(&support::KIB);
    let mut conn = None;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while Instant::now() < span.end {
        tick.tick().await;
        if conn.as_ref().is_none_or(Conn::is_closed) {
            conn = Conn::plain(proxy).await.ok();
        }
        let Some(c) = conn.as_mut() else {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let window = (span.start.elapsed().as_secs_f64() * SLIDE) as usize;
        let pick = (window + rng.usize(..ACTIVE)) % names;
        let host = format!("{}.ccnproxy-https:{port}", name(pick));
        let body = if rng.u32(..50) == 0 { &large } else { &small };
        match c.call_with(&host, body.clone()).await {
            Ok(()) => counts.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => counts.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Starts an origin at `at` again: the old listener goes once its aborted
/// task is dropped, so the port may stay taken for a moment (20 tries).
async fn restart(tls: &Arc<rustls::ServerConfig>, at: SocketAddr) -> Option<Origin> {
    for _ in 0..20 {
        if let Ok(origin) = Origin::start_at(tls.clone(), None, at).await {
            return Some(origin);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("the origin at {at} could not restart");
    None
}

/// Live tokio tasks (`/.api/stats`) and pools (`/metrics`) of the proxy.
async fn admin_numbers(proxy: SocketAddr) -> Res<(i64, i64)> {
    let stats = admin_get(proxy, "/.api/stats").await?;
    let stats: serde_json::Value = serde_json::from_str(&stats)?;
    let tasks = stats["tasks"].as_i64().unwrap_or(-1);
    let metrics = admin_get(proxy, "/metrics").await?;
    let pools = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ccnproxy_pools "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1);
    Ok((tasks, pools))
}

/// `ccnproxy_heap_allocated_bytes` of `/metrics` (glibc builds).
async fn heap_in_use(proxy: SocketAddr) -> Res<i64> {
    let metrics = admin_get(proxy, "/metrics").await?;
    Ok(metrics
        .lines()
        .find_map(|l| l.strip_prefix("ccnproxy_heap_allocated_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(-1, |v| v as i64))
}

/// Least-squares slope of `(seconds, KiB)` samples, KiB per second.
fn slope(samples: &[(f64, u64)]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let mean_t = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let mean_r = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (t, r) in samples {
        num += (t - mean_t) * (*r as f64 - mean_r);
        den += (t - mean_t) * (t - mean_t);
    }
    num / den
}
