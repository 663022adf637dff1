//! `--access-log-queue-bytes` bounds the memory queued lines really hold:
//! with the stdout sink stalled and a small bound, the heap (glibc's count,
//! `ccnproxy_heap_allocated_bytes`) grows by no more than the bound plus
//! 10% plus a fixed slack. A queued record used to keep the slices hyper
//! parsed its request target and headers from, so each line pinned its
//! connection's read buffer, kilobytes the estimate did not count.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::bounded_log::Spawned;
use crate::support::client::{self, Client};
use crate::support::{TIMEOUT, wait_until};

const BOUND: u64 = 4 << 20;
/// Outside the queue's bound: the writer's batch buffer, blocked in its
/// write to the full pipe (at most 4 × 64 KiB before it is given back),
/// and 256 KiB for the runtime's and the allocator's own bookkeeping.
const SLACK: u64 = (4 * 64 + 256) << 10;
/// Many more requests than the bound's worth of lines.
const REQUESTS: usize = 12_000;
const CLIENTS: usize = 16;

const UA: &str = "aws-sdk-java/2.25.0 Linux/6.1 OpenJDK_64-Bit_Server_VM/17.0.9 md/io#sync";

fn send_all(
    addr: std::net::SocketAddr,
    prefix: &'static str,
    n: usize,
    done: Arc<AtomicUsize>,
) -> tokio::task::JoinSet<()> {
    let mut set = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let done = done.clone();
        set.spawn(async move {
            let mut client = Client::connect(addr).await;
            let host = addr.to_string();
            for seq in (c..n).step_by(CLIENTS) {
                let seq = format!("{prefix}-{seq}");
                let headers = [("x-seq", seq.as_str()), ("user-agent", UA)];
                let req = client::request("GET", &host, "/healthz", &headers, client::empty());
                let resp = client.send(req).await.expect("GET /healthz");
                assert_eq!(resp.status(), 200);
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    set
}

async fn heap(proxy: &Spawned) -> u64 {
    let m = proxy.metrics().await;
    m.get("ccnproxy_heap_allocated_bytes", &[])
        .unwrap_or_else(|| panic!("no heap gauge\n{}", m.text)) as u64
}

/// Waits until only the scraper's own connection is open, so that what
/// the closed client connections held is back.
async fn connections_closed(proxy: &Spawned) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let m = proxy.metrics().await;
        if m.get("ccnproxy_client_connections", &[]) == Some(1.0) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "client connections did not close\n{}",
            m.text
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sink_grows_the_heap_by_at_most_the_queue_bound() {
    let bound = BOUND.to_string();
    let proxy = Spawned::start(&[
        "--access-log-format",
        "%{X-Seq}i %{User-Agent}i",
        "--access-log-queue-bytes",
        &bound,
        "--access-log-queue-lines",
        "1000000",
        "--access-log-when-full",
        "drop",
    ])
    .await;
    // Warm up with the same traffic, so the baseline has the runtime's,
    // the connections' and the writer's first allocations.
    let mut warm = send_all(proxy.addr, "warm", 2000, Arc::new(AtomicUsize::new(0)));
    while let Some(r) = warm.join_next().await {
        r.expect("client task");
    }
    wait_until("warm-up lines read", TIMEOUT, || {
        proxy
            .lines()
            .iter()
            .filter(|l| l.starts_with("warm-"))
            .count()
            == 2000
    })
    .await;
    connections_closed(&proxy).await;
    let base = heap(&proxy).await;

    proxy.pause();
    let mut set = send_all(proxy.addr, "s", REQUESTS, Arc::new(AtomicUsize::new(0)));
    while let Some(r) = set.join_next().await {
        r.expect("client task");
    }
    connections_closed(&proxy).await;
    let m = proxy.metrics().await;
    let dropped = m
        .get("ccnproxy_log_lines_dropped_total", &[])
        .unwrap_or(0.0);
    let queued = m.get("ccnproxy_log_queue_bytes", &[]).unwrap_or(0.0) as u64;
    assert!(
        dropped > 0.0,
        "precondition: the queue filled and dropped lines\n{}",
        m.text
    );
    assert!(
        queued > BOUND * 9 / 10,
        "precondition: the queue is at its bound ({queued} bytes)"
    );
    let grown = heap(&proxy).await.saturating_sub(base);
    let allowed = BOUND + BOUND / 10 + SLACK;
    eprintln!(
        "stalled sink: heap grew {} KiB with {} KiB queued (bound {} KiB, allowed {} KiB), {dropped} lines dropped",
        grown >> 10,
        queued >> 10,
        BOUND >> 10,
        allowed >> 10
    );
    assert!(
        grown <= allowed,
        "the heap grew {grown} bytes for a queue bound of {BOUND} (allowed {allowed})\n{}",
        proxy.stderr()
    );
    proxy.resume();
    wait_until("the queue drains", Duration::from_secs(60), || {
        proxy.lines().iter().any(|l| l.starts_with("s-"))
    })
    .await;
}
