//! `cargo bench --bench ratelimit`: what `--rate-limit-redis` costs a client
//! well under its budget. One client key (127.0.0.1) sends keep-alive calls
//! through the release binary to one local TLS origin, with a budget of
//! 100,000 requests/s it never comes near, so every request is admitted and
//! only the bookkeeping differs:
//!
//! - no rate limit;
//! - `--rate-limit` alone (per-replica buckets);
//! - `--rate-limit` + `--rate-limit-redis` against a `redis-server` started
//!   here on a free loopback port (`--save '' --appendonly no`).
//!
//! Per row: p50 and p99 latency (ms), requests/s and, with Redis, Redis
//! calls per request (`ccnproxy_rate_limit_redis_calls_total` from
//! `--metrics-listen`); medians of the rounds, the rows interleaved within
//! each round. Each proxy first serves a short warm-up (pool, Redis
//! connection) that is not counted. Nothing passes or fails on time.
//! Without `redis-server` the bench says so and stops. `BENCH_QUICK=1` runs
//! fewer rounds and requests.
// One crate of bench support: `pub` in its modules means shared between
// its files, so the library's `unreachable_pub` rule does not apply.
#![allow(unreachable_pub)]

#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::client::{Call, admin_get};
use support::load::load;
use support::origin::{Origin, Pki, args_for};
use support::procs::{Proxy, free_port, pin_bench};
use support::{Res, median};

const NAME: &str = "origin.test";
const PROXY_HOST: &str = "origin.test.ccnproxy-https";
/// The one client's budget: far above what the bench can send.
const BUDGET: &str = "100000/s";
const CONNS: usize = 8;
const WARMUP_REQUESTS: usize = 200;
const CALLS: &str = "ccnproxy_rate_limit_redis_calls_total";
const REDIS_ERRORS: &str = "ccnproxy_rate_limit_redis_errors_total";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("ratelimit bench: skipped (run it with `cargo bench --bench ratelimit`)");
        return;
    }
    let Some(binary) = redis_binary() else {
        println!("ratelimit bench: skipped, redis-server is not installed");
        return;
    };
    let quick = support::quick();
    let (rounds, requests) = if quick { (2, 500) } else { (3, 4_000) };
    pin_bench();
    let runtime = support::runtime();
    runtime.block_on(async {
        if let Err(err) = bench(&binary, rounds, requests).await {
            println!("ratelimit bench failed: {err}");
        }
    });
}

/// One row's flags beyond the common ones.
enum Limit {
    Off,
    Local,
    Redis,
}

const ROWS: [(&str, Limit); 3] = [
    ("(a) no rate limit", Limit::Off),
    ("(b) --rate-limit (local)", Limit::Local),
    ("(c) --rate-limit + --rate-limit-redis", Limit::Redis),
];

/// What one row measured in each round.
#[derive(Default)]
struct Samples {
    p50: Vec<f64>,
    p99: Vec<f64>,
    rps: Vec<f64>,
    calls_per_request: Vec<f64>,
    errors: usize,
    redis_errors: u64,
}

async fn bench(redis_binary: &Path, rounds: usize, requests: usize) -> Res<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::new(dir.path(), &[NAME])?;
    let origin = Origin::start(pki.server_config(false)?).await?;
    let redis = Redis::start(redis_binary, dir.path()).await?;
    println!("ccnproxy rate-limit bench: cargo bench --bench ratelimit");
    println!(
        "{requests} requests from {CONNS} keep-alive client connections per round, \
         {rounds} rounds; one client key, budget {BUDGET}; {}",
        redis.version
    );
    let mut samples: Vec<Samples> = ROWS.iter().map(|_| Samples::default()).collect();
    for _ in 0..rounds {
        for ((_, limit), s) in ROWS.iter().zip(samples.iter_mut()) {
            round(&pki, &origin, &redis, limit, requests, s).await?;
        }
    }
    println!();
    println!(
        "| {:<38} | {:>7} | {:>7} | {:>8} | {:>16} | {:>6} |",
        "rate limit", "p50 ms", "p99 ms", "req/s", "Redis calls/req", "errors"
    );
    println!(
        "|{:-<40}|{:->9}|{:->9}|{:->10}|{:->18}|{:->8}|",
        "", "", "", "", "", ""
    );
    for ((label, limit), s) in ROWS.iter().zip(&samples) {
        let calls = match limit {
            Limit::Redis => format!("{:.4}", median(&s.calls_per_request)),
            _ => "-".to_owned(),
        };
        println!(
            "| {label:<38} | {:>7.3} | {:>7.3} | {:>8.0} | {calls:>16} | {:>6} |",
            median(&s.p50),
            median(&s.p99),
            median(&s.rps),
            s.errors
        );
    }
    let (a, c) = (&samples[0], &samples[2]);
    println!();
    println!(
        "p99 (c) - (a): {:+.3} ms; p50 (c) - (a): {:+.3} ms; Redis errors (fail open) in (c): {}",
        median(&c.p99) - median(&a.p99),
        median(&c.p50) - median(&a.p50),
        c.redis_errors
    );
    Ok(())
}

/// One proxy with `limit`: a warm-up, then `requests` counted calls.
async fn round(
    pki: &Pki,
    origin: &Origin,
    redis: &Redis,
    limit: &Limit,
    requests: usize,
    s: &mut Samples,
) -> Res<()> {
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut args = args_for(&[origin]);
    args.extend(
        "-l 127.0.0.1 -p 0 --access-log-dir none --log-level error"
            .split(' ')
            .map(str::to_owned),
    );
    args.extend([
        "--ca-file".to_owned(),
        pki.ca_file.display().to_string(),
        "--resolve".to_owned(),
        format!("{NAME}:443:{}", origin.addr),
        "--metrics-listen".to_owned(),
        metrics.to_string(),
    ]);
    if !matches!(limit, Limit::Off) {
        args.extend(["--rate-limit".to_owned(), BUDGET.to_owned()]);
    }
    if matches!(limit, Limit::Redis) {
        args.extend(["--rate-limit-redis".to_owned(), redis.url()]);
    }
    let proxy = Proxy::start(&args).await?;
    let warm = load(proxy.addr, PROXY_HOST, Call::Small, WARMUP_REQUESTS, CONNS).await?;
    if let Some(err) = warm.first_error {
        return Err(format!("warm-up: {err}; {:?}", proxy.stderr_tail()).into());
    }
    let before = admin_get(metrics, "/metrics").await?;
    let run = load(proxy.addr, PROXY_HOST, Call::Small, requests, CONNS).await?;
    let after = admin_get(metrics, "/metrics").await?;
    proxy.stop().await;
    s.p50.push(run.percentile(50.0));
    s.p99.push(run.percentile(99.0));
    s.rps
        .push(run.latencies_ms.len() as f64 / run.elapsed.as_secs_f64());
    let calls = counter(&after, CALLS) - counter(&before, CALLS);
    s.calls_per_request.push(calls as f64 / requests as f64);
    s.redis_errors += counter(&after, REDIS_ERRORS) - counter(&before, REDIS_ERRORS);
    s.errors += run.errors;
    if let Some(err) = run.first_error {
        eprintln!("first error: {err}");
    }
    Ok(())
}

/// A label-free counter of a `/metrics` page; 0 when absent.
fn counter(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The `redis-server` binary on `PATH`, if any.
fn redis_binary() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

/// A `redis-server` of the bench's own on a free loopback port, without
/// persistence; killed when dropped.
struct Redis {
    port: u16,
    version: String,
    child: Child,
}

impl Redis {
    async fn start(binary: &Path, dir: &Path) -> Res<Redis> {
        let port = free_port()?;
        let version = Command::new(binary)
            .arg("--version")
            .output()
            .map(|o| {
                let out = String::from_utf8_lossy(&o.stdout).into_owned();
                out.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
            })
            .unwrap_or_else(|_| "redis-server".to_owned());
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let redis = Redis {
            port,
            version,
            child,
        };
        // Ready when it answers PING: at most 250 tries 20 ms apart.
        for _ in 0..250 {
            if redis.ping().await {
                return Ok(redis);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err("redis-server did not answer PING within 5 s".into())
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn ping(&self) -> bool {
        let exchange = async {
            let mut s = TcpStream::connect(("127.0.0.1", self.port)).await?;
            s.write_all(b"PING\r\n").await?;
            let mut buf = [0u8; 16];
            let n = s.read(&mut buf).await?;
            Ok::<_, std::io::Error>(buf[..n].starts_with(b"+PONG"))
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(1), exchange).await,
            Ok(Ok(true))
        )
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
