//! Hardening: the address guard seen from inside a network namespace that
//! has only loopback, hostile client input, origin faults, load, the
//! per-client rate limit, SIGTERM under load and the client connection cap.
//!
//! Tests that make the proxy see a non-loopback address run through
//! [`netns::isolated`]: the test binary re-executes itself under `unshare -n`,
//! so the proxy, its origins and its DNS server share a namespace with
//! nothing but `lo`, and a guard that fails open cannot send a packet off the
//! machine.

mod accept_backoff;
mod body_timeout;
mod conn_limit;
mod faults;
mod guard;
mod heads;
mod heavy_heads;
mod hostile;
mod idle_limits;
mod load;
pub mod netns;
mod rate_limit;
pub mod raw_origin;
mod sigterm;
mod timeouts;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use crate::support::client::Client;
use crate::support::{Proxy, TIMEOUT, client};

/// The admin address of a proxy started with `--metrics-listen 127.0.0.1:0`.
pub async fn admin_addr(proxy: &Proxy) -> SocketAddr {
    proxy.admin_addr().await
}

/// `/metrics` from `admin`.
pub async fn scrape(admin: SocketAddr) -> String {
    let mut c = Client::connect(admin).await;
    let resp = c
        .send(client::request(
            "GET",
            "localhost",
            "/metrics",
            &[],
            client::empty(),
        ))
        .await
        .expect("scraping /metrics");
    assert_eq!(resp.status(), 200, "/metrics: {}", resp.text());
    resp.text()
}

/// The sum of every sample of `metric` (all label sets); `None` when the
/// exposition has no such sample.
pub fn metric_sum(text: &str, metric: &str) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let value = rest
            .rsplit('}')
            .next()
            .unwrap_or(rest)
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("unparsable sample {line:?}"));
        *sum.get_or_insert(0.0) += value;
    }
    sum
}

/// Polls `probe` every 20 ms until it returns `Some`, at most `limit`;
/// panics with `what` and the last value seen otherwise. For state that has
/// no event to wait on (a gauge, a DNS answer the proxy refreshes on its own
/// schedule).
pub async fn poll<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("timed out after {limit:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The resident set size of process `pid` in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc status");
    kb * 1024
}

/// The parts of an access-log record these tests look at.
#[derive(Debug, Clone)]
pub struct LogRec {
    /// `%>s`.
    pub status: u64,
    /// The `error` field (`None` when the request succeeded).
    pub error: Option<String>,
    /// The record as written.
    pub line: String,
}

impl LogRec {
    /// The error text, or "" when there is none.
    pub fn error(&self) -> &str {
        self.error.as_deref().unwrap_or("")
    }

    /// Reads a record: the JSON object `--access-log-format json` promises,
    /// with a numeric `status`; anything else is `None` (and fails the test).
    fn parse(value: &serde_json::Value) -> Option<LogRec> {
        let obj = value.as_object()?;
        let error = match obj.get("error")? {
            serde_json::Value::Null => None,
            serde_json::Value::String(e) => Some(e.clone()),
            _ => return None,
        };
        Some(LogRec {
            status: obj.get("status")?.as_u64()?,
            error,
            line: value.to_string(),
        })
    }
}

/// The next access-log record, within [`TIMEOUT`]; panics on a line that
/// is not a JSON record.
pub async fn next_rec(proxy: &Proxy) -> LogRec {
    let value = proxy.next_log_within(TIMEOUT).await.unwrap_or_else(|| {
        panic!(
            "no access-log line within {TIMEOUT:?}\n--- proxy stderr ---\n{}",
            proxy.stderr()
        )
    });
    LogRec::parse(&value).unwrap_or_else(|| panic!("unreadable access-log line {value}"))
}

/// Skips records until one satisfies `pred` (at most 10,000 records).
pub async fn rec_where(proxy: &Proxy, what: &str, pred: impl Fn(&LogRec) -> bool) -> LogRec {
    let mut skipped = Vec::new();
    for _ in 0..10_000 {
        let Some(value) = proxy.next_log_within(TIMEOUT).await else {
            break;
        };
        let rec =
            LogRec::parse(&value).unwrap_or_else(|| panic!("unreadable access-log line {value}"));
        if pred(&rec) {
            return rec;
        }
        if skipped.len() < 20 {
            skipped.push(rec.line);
        }
    }
    panic!(
        "no access-log record where {what}; first skipped: {skipped:#?}\n--- proxy stderr ---\n{}",
        proxy.stderr()
    )
}
