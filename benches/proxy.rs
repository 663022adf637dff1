//! `cargo bench --bench proxy [-- latency cpu memory]`: the numbers behind
//! ccnproxy, printed as one table per section, medians and ratios only (the
//! machine is shared and noisy; nothing here passes or fails on time).
//!
//! 1. latency — round trips saved: N sequential API-like calls to an origin
//!    made far away by a delay relay, directly (a new TLS connection per
//!    call, or one keep-alive connection) and through ccnproxy (warm pool).
//! 2. cpu — CPU per request (per MB for 1 MiB downloads), rate and p99
//!    latency of ccnproxy beside nginx and HAProxy (keep-alive TLS proxies,
//!    each when installed) under the same loads, with ratios to nginx
//!    (`proxy/compare.rs`).
//! 3. memory — RSS per idle keep-alive client connection to ccnproxy.
//! 4. recycle — origins as they behave in production: an h2 origin that
//!    sends GOAWAY every 50 or 1,000 requests per connection, an HTTP/1.1-only
//!    origin with default flags: requests/s, non-2xx and upstream connections.
//!
//! Everything runs on 127.0.0.1; every loop is bounded; every process the
//! bench starts is stopped when its handle drops. `BENCH_QUICK=1` runs
//! fewer rounds and requests (for trying changes, not for numbers).
// One crate of test support: `pub` in its modules means shared between
// its files, so the library's `unreachable_pub` rule does not apply.
#![allow(unreachable_pub)]

mod support;

#[path = "proxy/compare.rs"]
mod compare;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use support::client::{Call, Conn};
use support::load::load;
use support::origin::{Origin, Pki};
use support::procs::{self, Nginx, Proxy};
use support::relay::Relay;
use support::{Res, median};

/// The origin's name (certificate, SNI, `--resolve`).
const NAME: &str = "origin.test";
/// Host mode: `https://origin.test` through ccnproxy.
const PROXY_HOST: &str = "origin.test.ccnproxy-https";

/// How much of everything; see `BENCH_QUICK`.
struct Settings {
    rounds: usize,
    /// One-way delay of the relay.
    delay: Duration,
    /// Sequential calls per round and mode (latency).
    calls: usize,
    /// 1 KiB calls per round and proxy on keep-alive connections (cpu).
    load_requests: usize,
    /// 1 MiB downloads per round and proxy (cpu).
    large_requests: usize,
    /// 1 KiB calls per round and proxy, a new connection each (cpu).
    close_requests: usize,
    /// Client connections sending at once (cpu, recycle).
    concurrency: usize,
    /// Client connections of the many-clients scenario (cpu).
    many_clients: usize,
    /// Idle client connections per round (memory).
    idle_conns: usize,
}

impl Settings {
    fn from_env() -> Settings {
        let quick = support::quick();
        Settings {
            rounds: if quick { 2 } else { 4 },
            delay: Duration::from_millis(10),
            calls: if quick { 10 } else { 30 },
            load_requests: if quick { 2_000 } else { 20_000 },
            large_requests: if quick { 100 } else { 400 },
            close_requests: if quick { 1_000 } else { 5_000 },
            concurrency: 64,
            many_clients: if quick { 200 } else { 1_000 },
            idle_conns: if quick { 500 } else { 5_000 },
        }
    }
}

fn main() {
    // `cargo test --all-targets` runs bench binaries too (without `--bench`):
    // the measurements take minutes and mean nothing in a debug build.
    if !std::env::args().any(|a| a == "--bench") {
        println!("proxy bench: skipped (run it with `cargo bench --bench proxy`)");
        return;
    }
    let sections: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let runs = |name: &str| sections.is_empty() || sections.iter().any(|s| s == name);
    let settings = Settings::from_env();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    procs::pin_bench();
    // The memory section holds thousands of client sockets.
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    let runtime = support::runtime();
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let pki = Pki::new(dir.path(), &[NAME]).expect("test certificates");
        println!("ccnproxy bench: cargo bench --bench proxy");
        println!(
            "host: {} CPUs (shared with other work: read medians and ratios, not absolutes); \
             load average at start {}; open-files limit {nofile}; {} rounds",
            cpus,
            load_average(),
            settings.rounds,
        );
        if runs("latency")
            && let Err(err) = latency(&pki, &settings).await
        {
            println!("latency: failed: {err}");
        }
        if runs("cpu")
            && let Err(err) = compare::cpu(&pki, &settings).await
        {
            println!("cpu: failed: {err}");
        }
        if runs("memory")
            && let Err(err) = memory(&pki, &settings).await
        {
            println!("memory: failed: {err}");
        }
        if runs("recycle")
            && let Err(err) = recycle(&pki, &settings).await
        {
            println!("recycle: failed: {err}");
        }
    });
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// ccnproxy's flags for an origin `name:443` found at `origin`.
fn proxy_args(pki: &Pki, origin: SocketAddr, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "-l",
        "127.0.0.1",
        "-p",
        "0",
        "--allow-host",
        "*",
        "--allow-cidr",
        "127.0.0.0/8",
        "--access-log-dir",
        "none",
        "--log-level",
        "warn",
        "--ca-file",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.push(pki.ca_file.display().to_string());
    args.push("--resolve".to_owned());
    args.push(format!("{NAME}:443:{origin}"));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

fn report_stderr(what: &str, proxy: &Proxy) {
    for line in proxy.stderr_tail() {
        println!("  ccnproxy stderr ({what}): {line}");
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median of all samples, and the lowest and highest round median.
fn spread(rounds: &[Vec<f64>]) -> (f64, f64, f64) {
    let all: Vec<f64> = rounds.iter().flatten().copied().collect();
    let per_round: Vec<f64> = rounds.iter().map(|r| median(r)).collect();
    let lo = per_round.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = per_round.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(&all), lo, hi)
}

/// `median [lowest–highest]`, with `decimals` digits after the point.
fn fmt_spread(rounds: &[Vec<f64>], decimals: usize) -> String {
    let (m, lo, hi) = spread(rounds);
    format!("{m:.decimals$} [{lo:.decimals$}–{hi:.decimals$}]")
}

/// `median [lowest–highest]` of one value per round.
fn fmt_samples(values: &[f64], decimals: usize) -> String {
    let rounds: Vec<Vec<f64>> = values.iter().map(|&v| vec![v]).collect();
    fmt_spread(&rounds, decimals)
}

// ---------------------------------------------------------------- latency

/// Per-call latencies (ms) of one origin kind, one `Vec` per round.
struct LatencyRow {
    label: &'static str,
    fresh: Vec<Vec<f64>>,
    fresh12: Vec<Vec<f64>>,
    keepalive: Vec<Vec<f64>>,
    proxied: Vec<Vec<f64>>,
    cold_ms: f64,
    fresh_conns: usize,
    proxy_conns: usize,
}

async fn latency(pki: &Pki, s: &Settings) -> Res<()> {
    let d = ms(s.delay);
    println!();
    println!(
        "1. Round trips saved: {} sequential calls (POST 1 KiB, answer 1 KiB) per mode and round, {} rounds;",
        s.calls, s.rounds
    );
    println!(
        "   a delay relay ({d:.0} ms each way, RTT {:.0} ms, TCP handshake emulated) sits in front of the origin.",
        2.0 * d
    );
    println!(
        "   (a) direct, a new TCP + TLS 1.3 connection per call (a CLI invocation), no session resumption;"
    );
    println!(
        "       (a12) the same with TLS 1.2 (one more round trip), for older clients or endpoints"
    );
    println!(
        "   (b) direct, one keep-alive connection for all calls (the best one client process can do)"
    );
    println!(
        "   (c) via ccnproxy on the near side: a new local connection per call, warm upstream pool"
    );
    let rows = [
        latency_row(pki, s, true, "h2 + http/1.1").await?,
        latency_row(pki, s, false, "http/1.1 only").await?,
    ];
    println!();
    println!(
        "   {:<14} {:>20} {:>20} {:>20} {:>20} {:>8} {:>8} {:>9} {:>9}",
        "origin ALPN",
        "(a) new conn, ms",
        "(a12) TLS 1.2, ms",
        "(b) keep-alive, ms",
        "(c) ccnproxy, ms",
        "(a)/(c)",
        "(b)/(c)",
        "(a12)/(c)",
        "conns (c)"
    );
    for row in &rows {
        let (a, _, _) = spread(&row.fresh);
        let (b, _, _) = spread(&row.keepalive);
        let (a12, _, _) = spread(&row.fresh12);
        let (c, _, _) = spread(&row.proxied);
        println!(
            "   {:<14} {:>20} {:>20} {:>20} {:>20} {:>8.2} {:>8.2} {:>9.2} {:>9}",
            row.label,
            fmt_spread(&row.fresh, 1),
            fmt_spread(&row.fresh12, 1),
            fmt_spread(&row.keepalive, 1),
            fmt_spread(&row.proxied, 1),
            a / c,
            b / c,
            a12 / c,
            row.proxy_conns,
        );
    }
    println!(
        "   ms: median per call over all rounds [lowest–highest round median]; in RTTs of {:.0} ms:",
        2.0 * d
    );
    for row in &rows {
        let (a, _, _) = spread(&row.fresh);
        let (b, _, _) = spread(&row.keepalive);
        let (a12, _, _) = spread(&row.fresh12);
        let (c, _, _) = spread(&row.proxied);
        println!(
            "   {:<14} (a) {:.2} RTT, (a12) {:.2} RTT, (b) {:.2} RTT, (c) {:.2} RTT; first call via ccnproxy (cold pool) {:.1} ms; \
             relay saw {} connections for {} calls of (a)",
            row.label,
            a / (2.0 * d),
            a12 / (2.0 * d),
            b / (2.0 * d),
            c / (2.0 * d),
            row.cold_ms,
            row.fresh_conns,
            s.rounds * s.calls,
        );
    }
    println!(
        "   conns (c): TCP connections the origin accepted from ccnproxy over all its calls, the cold one included (1 = one warm connection)"
    );
    Ok(())
}

async fn latency_row(pki: &Pki, s: &Settings, h2: bool, label: &'static str) -> Res<LatencyRow> {
    let origin = Origin::start(pki.server_config(h2)?).await?;
    let relay = Relay::start(origin.addr, s.delay)?;
    let proxy = Proxy::start(&proxy_args(pki, relay.addr, &[])).await?;
    let tls = pki.client_config(false)?;
    let tls12 = pki.client_config(true)?;

    let origin_before = origin.accepted();
    let start = Instant::now();
    Conn::plain(proxy.addr).await?.call(PROXY_HOST).await?;
    let cold_ms = ms(start.elapsed());
    let mut proxy_conns = origin.accepted() - origin_before;

    let mut row = LatencyRow {
        label,
        fresh: Vec::new(),
        fresh12: Vec::new(),
        keepalive: Vec::new(),
        proxied: Vec::new(),
        cold_ms,
        fresh_conns: 0,
        proxy_conns: 0,
    };
    for _ in 0..s.rounds {
        let relay_before = relay.accepted();
        let mut fresh = Vec::with_capacity(s.calls);
        for _ in 0..s.calls {
            let start = Instant::now();
            let mut conn = Conn::tls(relay.addr, NAME, tls.clone()).await?;
            conn.call(NAME).await?;
            fresh.push(ms(start.elapsed()));
        }
        row.fresh_conns += relay.accepted() - relay_before;
        row.fresh.push(fresh);

        let mut fresh12 = Vec::with_capacity(s.calls);
        for _ in 0..s.calls {
            let start = Instant::now();
            let mut conn = Conn::tls(relay.addr, NAME, tls12.clone()).await?;
            conn.call(NAME).await?;
            fresh12.push(ms(start.elapsed()));
        }
        row.fresh12.push(fresh12);

        // The first call pays the handshakes; (b) is what follows it.
        let mut conn = Conn::tls(relay.addr, NAME, tls.clone()).await?;
        conn.call(NAME).await?;
        let mut keepalive = Vec::with_capacity(s.calls);
        for _ in 0..s.calls {
            let start = Instant::now();
            conn.call(NAME).await?;
            keepalive.push(ms(start.elapsed()));
        }
        drop(conn);
        row.keepalive.push(keepalive);

        let origin_before = origin.accepted();
        let mut proxied = Vec::with_capacity(s.calls);
        for _ in 0..s.calls {
            let start = Instant::now();
            let mut conn = Conn::plain(proxy.addr).await?;
            conn.call(PROXY_HOST).await?;
            proxied.push(ms(start.elapsed()));
        }
        proxy_conns += origin.accepted() - origin_before;
        row.proxied.push(proxied);
    }
    row.proxy_conns = proxy_conns;
    report_stderr(label, &proxy);
    Ok(row)
}

// ----------------------------------------------------------------- memory

/// RSS of one kind of proxy over the rounds (MiB, bytes per connection,
/// connections still open at the end).
#[derive(Default)]
struct MemoryRow {
    before: Vec<f64>,
    after: Vec<f64>,
    per_conn: Vec<f64>,
    open: Vec<f64>,
}

impl MemoryRow {
    /// Measures `n` idle connections to the proxy at `addr`, whose
    /// processes are `pids`; returns them, open.
    async fn measure(
        &mut self,
        addr: SocketAddr,
        pids: &[u32],
        n: usize,
        at_once: usize,
    ) -> Res<Vec<Conn>> {
        let rss = || -> Res<u64> {
            pids.iter()
                .map(|&p| procs::status_value(p, "VmRSS:").ok_or_else(|| "no VmRSS".into()))
                .sum()
        };
        // Warm-up: the upstream pool and the allocator's first arenas are
        // not per-connection costs.
        load(addr, PROXY_HOST, Call::Small, 500, 8).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = rss()?;
        let conns: Vec<Res<Conn>> = futures_util::stream::iter(0..n)
            .map(|_| async move {
                let mut conn = Conn::plain(addr).await?;
                conn.call(PROXY_HOST).await?;
                Ok(conn)
            })
            .buffer_unordered(at_once)
            .collect()
            .await;
        let conns: Vec<Conn> = conns.into_iter().collect::<Res<_>>()?;
        // Idle means idle: ccnproxy lets go of an HTTP/1.1 connection's
        // buffers once it has been quiet for a whole tick of 1 s, and nginx
        // frees its request buffers at once; both are measured after 2.5 s.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let after = rss()?;
        self.open
            .push(conns.iter().filter(|c| !c.is_closed()).count() as f64);
        self.before.push(before as f64 / 1024.0);
        self.after.push(after as f64 / 1024.0);
        self.per_conn
            .push((after as f64 - before as f64) * 1024.0 / n as f64);
        Ok(conns)
    }

    fn print(&self, label: &str) {
        println!(
            "   {:<44} {:>18} {:>18} {:>24} {:>12}",
            label,
            fmt_samples(&self.before, 1),
            fmt_samples(&self.after, 1),
            fmt_samples(&self.per_conn, 0),
            median(&self.open),
        );
    }
}

async fn memory(pki: &Pki, s: &Settings) -> Res<()> {
    println!();
    println!(
        "3. Memory per idle client connection: {} rounds, a fresh proxy each; {} HTTP/1.1 keep-alive client",
        s.rounds, s.idle_conns
    );
    println!(
        "   connections that each made one call (POST 1 KiB through the proxy to the TLS origin), then stay idle."
    );
    let origin = Origin::start(pki.server_config(false)?).await?;
    let nginx_binary = Nginx::binary();
    // 64 calls at once (a burst: connections that called within the last
    // moments still hold their buffers), and one call at a time.
    let ways = [(64, "64 calls at once"), (1, "one call at a time")];
    let mut ccnproxy: Vec<MemoryRow> = ways.iter().map(|_| MemoryRow::default()).collect();
    let mut nginx: Vec<MemoryRow> = ways.iter().map(|_| MemoryRow::default()).collect();
    for _ in 0..s.rounds {
        for (i, &(at_once, _)) in ways.iter().enumerate() {
            let proxy = Proxy::start(&proxy_args(pki, origin.addr, &["-c", "64"])).await?;
            let conns = ccnproxy[i]
                .measure(proxy.addr, &[proxy.pid], s.idle_conns, at_once)
                .await?;
            report_stderr("memory", &proxy);
            // The proxy goes first, so its side closes first and the client
            // side does not pile up TIME_WAIT sockets on ephemeral ports.
            proxy.stop().await;
            drop(conns);

            if let Some(binary) = &nginx_binary {
                let server = Nginx::start(binary, origin.addr, NAME, &pki.ca_file).await?;
                let conns = nginx[i]
                    .measure(server.addr, &server.pids, s.idle_conns, at_once)
                    .await?;
                drop(server);
                drop(conns);
            }
        }
    }
    println!();
    println!(
        "   {:<44} {:>18} {:>18} {:>24} {:>12}",
        "proxy", "VmRSS before MiB", "VmRSS after MiB", "bytes per connection", "still open"
    );
    for (i, (_, way)) in ways.iter().enumerate() {
        ccnproxy[i].print(&format!("ccnproxy -c 64, {way}"));
        if nginx_binary.is_some() {
            nginx[i].print(&format!("nginx (master + 2 workers), {way}"));
        }
    }
    if nginx_binary.is_none() {
        println!("   nginx: not installed (scripts/bench-peers.sh installs it); rows skipped");
    }
    println!(
        "   median [lowest–highest] of {} rounds; before = after a 500-call warm-up",
        s.rounds
    );
    Ok(())
}

// ---------------------------------------------------------------- recycle

async fn recycle(pki: &Pki, s: &Settings) -> Res<()> {
    println!();
    println!(
        "4. Origins that recycle connections: {} calls (POST 1 KiB, answer 1 KiB) from {} keep-alive clients per row,",
        s.load_requests, s.concurrency
    );
    println!("   ccnproxy with default flags unless the row says otherwise");
    let rows: [(&str, bool, Option<usize>, &[&str]); 5] = [
        ("h2 origin, GOAWAY every 50", true, Some(50), &[]),
        ("h2 origin, GOAWAY every 1000", true, Some(1000), &[]),
        ("h1 origin", false, None, &[]),
        ("h1 origin, -c 2 (old default)", false, None, &["-c", "2"]),
        ("h1 origin, -c 64", false, None, &["-c", "64"]),
    ];
    println!();
    println!(
        "   {:<32} {:>10} {:>9} {:>14}",
        "origin, flags", "req/s", "non-2xx", "upstream conns"
    );
    for (label, h2, goaway_after, extra) in rows {
        let origin = Origin::start_recycling(pki.server_config(h2)?, goaway_after).await?;
        let proxy = Proxy::start(&proxy_args(pki, origin.addr, extra)).await?;
        let run = load(
            proxy.addr,
            PROXY_HOST,
            Call::Small,
            s.load_requests,
            s.concurrency,
        )
        .await?;
        println!(
            "   {:<32} {:>10.0} {:>9} {:>14}",
            label,
            s.load_requests as f64 / run.elapsed.as_secs_f64(),
            run.errors,
            origin.accepted(),
        );
        if let Some(err) = &run.first_error {
            println!("   {label}: first error: {err}");
        }
        report_stderr(label, &proxy);
    }
    println!("   upstream conns: TCP connections the origin accepted from ccnproxy");
    Ok(())
}
