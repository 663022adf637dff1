//! The load generator: a fixed number of calls from a fixed number of
//! client connections, each sending its next call as soon as the last is
//! answered (keep-alive), or opening a new connection per call
//! (`Connection: close`). Every call's latency is kept for percentiles.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::Res;
use super::client::{Call, Conn};

/// What one load run saw.
pub struct LoadRun {
    /// Wall time from the first call to the last answer.
    pub elapsed: Duration,
    /// Calls that failed.
    pub errors: usize,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Per-call latency (ms) of the calls that succeeded, unsorted.
    pub latencies_ms: Vec<f64>,
}

impl LoadRun {
    /// The `p`-th percentile of the latencies (ms); `NaN` without any.
    pub fn percentile(&self, p: f64) -> f64 {
        let mut v = self.latencies_ms.clone();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }
}

/// `requests` calls of kind `call` to the proxy at `addr` (whose route is
/// `authority`) from `concurrency` clients at once.
pub async fn load(
    addr: SocketAddr,
    authority: &'static str,
    call: Call,
    requests: usize,
    concurrency: usize,
) -> Res<LoadRun> {
    let fresh = call == Call::SmallClose;
    let mut conns = Vec::with_capacity(concurrency);
    if !fresh {
        for _ in 0..concurrency {
            conns.push(Some(Conn::plain(addr).await?));
        }
    } else {
        conns.resize_with(concurrency, || None);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            let next = next.clone();
            tokio::spawn(async move {
                let (mut errors, mut first_error) = (0, None);
                let mut latencies = Vec::with_capacity(requests / concurrency + 1);
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    let started = Instant::now();
                    let called = async {
                        let c = match &mut conn {
                            Some(c) if !fresh && !c.is_closed() => c,
                            _ => conn.insert(Conn::plain(addr).await?),
                        };
                        c.request(authority, call).await
                    }
                    .await;
                    match called {
                        Ok(()) => latencies.push(started.elapsed().as_secs_f64() * 1e3),
                        Err(err) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| err.to_string());
                            // A connection that failed is not reused.
                            conn = None;
                        }
                    }
                    if fresh {
                        conn = None;
                    }
                }
                (errors, first_error, latencies)
            })
        })
        .collect();
    let mut run = LoadRun {
        elapsed: Duration::ZERO,
        errors: 0,
        first_error: None,
        latencies_ms: Vec::with_capacity(requests),
    };
    for task in tasks {
        let (errors, first_error, latencies) = task.await?;
        run.errors += errors;
        if run.first_error.is_none() {
            run.first_error = first_error;
        }
        run.latencies_ms.extend(latencies);
    }
    run.elapsed = start.elapsed();
    Ok(run)
}
