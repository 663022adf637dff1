//! `cargo bench --bench failover`: what one bad address of four costs a
//! client. An origin name resolves to four addresses on 127.0.0.1; in the
//! bad rows one of them is blackholed (a listener whose backlog is full, so
//! a TCP handshake never completes). ccnproxy runs with `-c 0`, so every
//! request opens a connection and picks an address: the worst case for a
//! bad address. Per row: p50, p99 and the slowest request (ms), median of
//! the rounds; nothing passes or fails on time.
//!
//! Rows: all healthy; one blackholed with the defaults (race after 250 ms,
//! eject for 5 s); one blackholed with `--eject-backoff 0` (racing alone,
//! no ejection). `BENCH_QUICK=1` runs fewer rounds and requests.
// One crate of bench support: `pub` in its modules means shared between
// its files, so the library's `unreachable_pub` rule does not apply.
#![allow(unreachable_pub)]

#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpSocket, TcpStream};

use support::client::Conn;
use support::origin::{Origin, Pki};
use support::procs::Proxy;
use support::{Res, median};

const NAME: &str = "origin.test";
const PROXY_HOST: &str = "origin.test.ccnproxy-https";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("failover bench: skipped (run it with `cargo bench --bench failover`)");
        return;
    }
    let quick = support::quick();
    let (rounds, requests) = if quick { (2, 400) } else { (3, 2_000) };
    let runtime = support::runtime();
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let pki = Pki::new(dir.path(), &[NAME]).expect("test certificates");
        println!("ccnproxy failover bench: cargo bench --bench failover");
        println!(
            "{requests} requests from 8 client connections per round, {rounds} rounds; \
             -c 0 (a new upstream connection per request); four origin addresses"
        );
        println!();
        println!(
            "| {:<44} | {:>8} | {:>8} | {:>8} | {:>6} |",
            "addresses", "p50 ms", "p99 ms", "max ms", "errors"
        );
        println!(
            "|{:-<46}|{:->10}|{:->10}|{:->10}|{:->8}|",
            "", "", "", "", ""
        );
        let rows: [(&str, bool, &[&str]); 3] = [
            ("4 healthy", false, &[]),
            ("3 healthy + 1 blackholed (defaults)", true, &[]),
            (
                "3 healthy + 1 blackholed, --eject-backoff 0",
                true,
                &["--eject-backoff", "0"],
            ),
        ];
        for (label, blackholed, extra) in rows {
            match row(&pki, rounds, requests, blackholed, extra).await {
                Ok(r) => println!(
                    "| {label:<44} | {:>8.2} | {:>8.2} | {:>8.2} | {:>6} |",
                    r.p50, r.p99, r.max, r.errors
                ),
                Err(err) => println!("| {label:<44} | failed: {err}"),
            }
        }
    });
}

struct Row {
    p50: f64,
    p99: f64,
    max: f64,
    errors: usize,
}

async fn row(
    pki: &Pki,
    rounds: usize,
    requests: usize,
    blackholed: bool,
    extra: &[&str],
) -> Res<Row> {
    let (mut p50, mut p99, mut max, mut errors) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for _ in 0..rounds {
        let mut origins = Vec::new();
        let mut addrs = Vec::new();
        for _ in 0..if blackholed { 3 } else { 4 } {
            let origin = Origin::start(pki.server_config(false)?).await?;
            addrs.push(origin.addr);
            origins.push(origin);
        }
        let hole = if blackholed {
            let hole = Blackhole::start().await?;
            addrs.push(hole.addr);
            Some(hole)
        } else {
            None
        };
        let proxy = Proxy::start(&args(pki, &addrs, extra)).await?;
        let (mut times, errs) = run(proxy.addr, requests).await?;
        proxy.stop().await;
        drop(hole);
        times.sort_by(f64::total_cmp);
        p50.push(percentile(&times, 0.50));
        p99.push(percentile(&times, 0.99));
        max.push(times.last().copied().unwrap_or(f64::NAN));
        errors += errs;
    }
    Ok(Row {
        p50: median(&p50),
        p99: median(&p99),
        max: median(&max),
        errors,
    })
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn args(pki: &Pki, addrs: &[SocketAddr], extra: &[&str]) -> Vec<String> {
    let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
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
        "error",
        "-c",
        "0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.push("--ca-file".to_owned());
    args.push(pki.ca_file.display().to_string());
    args.push("--resolve".to_owned());
    args.push(format!("{NAME}:443:{}", list.join(",")));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// `requests` calls from 8 keep-alive client connections; per-call latency
/// (ms) of the successful ones, and the number of failures.
async fn run(addr: SocketAddr, requests: usize) -> Res<(Vec<f64>, usize)> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut conn = Conn::plain(addr).await?;
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let (mut times, mut errors) = (Vec::new(), 0);
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let started = Instant::now();
                match conn.call(PROXY_HOST).await {
                    Ok(()) => times.push(started.elapsed().as_secs_f64() * 1e3),
                    Err(_) => {
                        errors += 1;
                        if conn.is_closed() {
                            match Conn::plain(addr).await {
                                Ok(c) => conn = c,
                                Err(_) => break,
                            }
                        }
                    }
                }
            }
            (times, errors)
        }));
    }
    let (mut times, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (t, e) = task.await?;
        times.extend(t);
        errors += e;
    }
    Ok((times, errors))
}

/// A listener on 127.0.0.1 that never accepts, its backlog filled: TCP
/// handshakes to it never complete.
struct Blackhole {
    addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _filled: Vec<TcpStream>,
}

impl Blackhole {
    async fn start() -> Res<Blackhole> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let listener = socket.listen(0)?;
        let addr = listener.local_addr()?;
        let mut filled = Vec::new();
        for _ in 0..8 {
            match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
                Ok(stream) => filled.push(stream?),
                Err(_) => {
                    return Ok(Blackhole {
                        addr,
                        _listener: listener,
                        _filled: filled,
                    });
                }
            }
        }
        Err(format!("the backlog of {addr} never filled").into())
    }
}
