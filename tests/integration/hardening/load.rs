//! Load: 10,000 idle client connections held open while 64 busy clients keep
//! getting answers. The proxy's resident memory is measured before and
//! after, for connections that never sent a byte and for the same
//! connections kept alive after one request; the cost per idle connection is
//! printed (and only sanity-checked).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{admin_addr, metric_sum, poll, rss_bytes, scrape, wire};
use crate::support::client::{self, Client};
use crate::support::{Origin, Proxy, TIMEOUT, within};

const IDLE: usize = 10_000;
const BUSY: usize = 64;
/// Connections opened (or requests sent) at a time.
const WAVE: usize = 250;
/// A generous bound: a fresh idle connection costing more than this is a leak.
const SANE_BYTES_PER_CONN: u64 = 256 * 1024;

async fn open_gauge(admin: std::net::SocketAddr) -> f64 {
    metric_sum(&scrape(admin).await, "ccnproxy_client_connections").unwrap_or(0.0)
}

/// Waits until every busy client has `more` answers beyond `base`.
async fn busy_progress(counts: &[Arc<AtomicU64>], more: u64, what: &str) {
    let base: Vec<u64> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    poll(what, TIMEOUT, || async {
        let behind = counts
            .iter()
            .zip(&base)
            .filter(|(c, b)| c.load(Ordering::SeqCst) < *b + more)
            .count();
        if behind == 0 {
            Ok(())
        } else {
            Err(format!("{behind} busy clients behind"))
        }
    })
    .await
}

#[tokio::test]
async fn ten_thousand_idle_connections_while_busy_clients_are_served() {
    let started = Instant::now();
    // The test process holds both ends' worth of client sockets.
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("getrlimit");
    let want = (IDLE as u64 + 4096).min(hard);
    if soft < want {
        rlimit::setrlimit(rlimit::Resource::NOFILE, want, hard).expect("raising RLIMIT_NOFILE");
    }
    assert!(
        want >= IDLE as u64 + 1024,
        "RLIMIT_NOFILE hard limit {hard} is too low for {IDLE} connections"
    );

    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let proxy = Arc::new(
        Proxy::spawn_binary(origin.proxy_args_with(&[
            "--metrics-listen",
            "127.0.0.1:0",
            // Connections that never send a head must outlive the test.
            "--read-timeout",
            "120s",
            "-c",
            "64",
        ]))
        .await,
    );
    let admin = admin_addr(&proxy).await;

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let counts: Vec<Arc<AtomicU64>> = (0..BUSY).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let busy: Vec<_> = counts
        .iter()
        .enumerate()
        .map(|(i, count)| {
            let (proxy, stop, failures, count) =
                (proxy.clone(), stop.clone(), failures.clone(), count.clone());
            tokio::spawn(async move {
                let mut c = Client::connect(proxy.addr()).await;
                for n in 0..1_000_000u64 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let req = client::request(
                        "GET",
                        "example.test.ccnproxy",
                        &format!("/busy/{i}/{n}"),
                        &[],
                        client::empty(),
                    );
                    match c.send(req).await {
                        Ok(r) if r.status() == 200 => {
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        other => {
                            failures.fetch_add(1, Ordering::SeqCst);
                            eprintln!("busy client {i}: {other:?}");
                            c = Client::connect(proxy.addr()).await;
                        }
                    }
                }
            })
        })
        .collect();
    busy_progress(&counts, 5, "the busy clients to warm up").await;
    let rss_before = rss_bytes(proxy.pid());
    let open_before = open_gauge(admin).await;

    // Phase 1: connections that never send a byte.
    let addr = proxy.addr();
    let idle: Vec<TcpStream> = futures_util::stream::iter(0..IDLE)
        .map(|_| async move { TcpStream::connect(addr).await })
        .buffer_unordered(WAVE)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("opening the idle connections");
    poll(
        "the proxy to hold every idle connection",
        TIMEOUT * 2,
        || async {
            let open = open_gauge(admin).await;
            if open >= open_before + IDLE as f64 {
                Ok(())
            } else {
                Err(format!("{open} open"))
            }
        },
    )
    .await;
    busy_progress(
        &counts,
        5,
        "the busy clients to get answers with 10,000 idle connections",
    )
    .await;
    let rss_fresh = rss_bytes(proxy.pid());

    // Phase 2: the same number of connections, each idle after one request.
    drop(idle);
    poll(
        "the fresh idle connections to close",
        TIMEOUT * 2,
        || async {
            let open = open_gauge(admin).await;
            if open <= open_before {
                Ok(())
            } else {
                Err(format!("{open} open"))
            }
        },
    )
    .await;
    let kept: Vec<TcpStream> = futures_util::stream::iter(0..IDLE)
        .map(|_| within("one /healthz exchange", healthz_kept_alive(addr)))
        .buffer_unordered(WAVE)
        .collect()
        .await;
    poll(
        "the proxy to hold every kept-alive connection",
        TIMEOUT * 2,
        || async {
            let open = open_gauge(admin).await;
            if open >= open_before + IDLE as f64 {
                Ok(())
            } else {
                Err(format!("{open} open"))
            }
        },
    )
    .await;
    busy_progress(
        &counts,
        5,
        "the busy clients to get answers with 10,000 kept-alive connections",
    )
    .await;
    let rss_kept = rss_bytes(proxy.pid());

    // None of the held connections was dropped by the proxy.
    let mut closed = 0;
    for c in &kept {
        let mut probe = [0u8; 1];
        if !matches!(c.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
            closed += 1;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for b in busy {
        b.await.expect("busy client");
    }
    drop(kept);

    let per = |after: u64| after.saturating_sub(rss_before) / IDLE as u64;
    println!(
        "proxy RSS {} KiB with {BUSY} busy clients; +{IDLE} fresh idle connections: {} KiB \
         ({} bytes each); +{IDLE} kept-alive idle connections: {} KiB ({} bytes each); \
         {} busy answers, {} busy failures; took {:?}",
        rss_before / 1024,
        rss_fresh / 1024,
        per(rss_fresh),
        rss_kept / 1024,
        per(rss_kept),
        counts.iter().map(|c| c.load(Ordering::SeqCst)).sum::<u64>(),
        failures.load(Ordering::SeqCst),
        started.elapsed()
    );
    assert_eq!(closed, 0, "the proxy closed {closed} idle connections");
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "busy clients saw failures"
    );
    assert!(
        per(rss_fresh) < SANE_BYTES_PER_CONN && per(rss_kept) < SANE_BYTES_PER_CONN,
        "more than {SANE_BYTES_PER_CONN} bytes per idle connection"
    );
}

/// Opens a connection, asks `/healthz` on it and reads the whole answer;
/// the connection stays open (keep-alive).
async fn healthz_kept_alive(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connecting");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("writing");
    let mut buf = Vec::new();
    loop {
        if let Ok(parsed) = wire::parse(&buf)
            && parsed.complete.is_ok()
        {
            assert_eq!(parsed.status, 200, "/healthz");
            return stream;
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.expect("reading");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}
