//! The proxy's admin port (`--metrics-listen 127.0.0.1:0`): its address from
//! the `admin listening on ADDR` line, and `/metrics` parsed into samples.
//!
//! ```ignore
//! let proxy = Proxy::start(origin.proxy_args_with(&["--metrics-listen", "127.0.0.1:0"])).await;
//! let m = proxy.metrics().await;
//! assert_eq!(m.pool("ccnproxy_pool_retries_total", "https://example.test:443"), Some(0.0));
//! ```

use std::net::SocketAddr;

use super::client::{self, Client};
use super::{Proxy, TIMEOUT, wait_until};

/// The flags that open the admin port on a kernel-chosen port.
pub const METRICS_LISTEN: [&str; 2] = ["--metrics-listen", "127.0.0.1:0"];

/// One sample: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name as exposed (counters end in `_total`).
    pub name: String,
    /// Label pairs, unescaped.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// A parsed `/metrics` page.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The page as served.
    pub text: String,
    /// Every sample on it.
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// Parses Prometheus / OpenMetrics text (comments skipped).
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(parse_sample)
            .collect();
        Metrics {
            text: text.to_owned(),
            samples,
        }
    }

    /// The value of `name` whose labels include every pair of `labels`.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
            })
            .map(|s| s.value)
    }

    /// The value of the per-pool series `name{origin="<origin>"}`.
    pub fn pool(&self, name: &str, origin: &str) -> Option<f64> {
        self.get(name, &[("origin", origin)])
    }

    /// Like [`Metrics::pool`], panicking with the page when absent.
    #[track_caller]
    pub fn pool_value(&self, name: &str, origin: &str) -> f64 {
        self.pool(name, origin).unwrap_or_else(|| {
            panic!(
                "no sample {name}{{origin=\"{origin}\"}} on /metrics:\n{}",
                self.text
            )
        })
    }
}

impl Metrics {
    /// The page as `prometheus-parse` reads it: a second, independent reader
    /// of the exposition (histograms come back whole, their `_count` and
    /// `_sum` as plain samples).
    pub fn scrape(&self) -> prometheus_parse::Scrape {
        prometheus_parse::Scrape::parse(self.text.lines().map(|l| Ok(l.to_owned())))
            .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{}", self.text))
    }

    /// Every scalar sample of `name` read with `prometheus-parse`: its labels
    /// (sorted) and value.
    pub fn series(&self, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
        let mut out: Vec<_> = self
            .scrape()
            .samples
            .into_iter()
            .filter(|s| s.metric == name)
            .map(|s| {
                let value = match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    other => panic!("{name} is not a scalar: {other:?}"),
                };
                let mut labels: Vec<(String, String)> = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                labels.sort();
                (labels, value)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The value of the one sample `name` whose labels are exactly `labels`
    /// (no more, no fewer), read with `prometheus-parse`; `None` if absent.
    pub fn exact(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        want.sort();
        let found: Vec<f64> = self
            .series(name)
            .into_iter()
            .filter(|(l, _)| *l == want)
            .map(|(_, v)| v)
            .collect();
        assert!(found.len() <= 1, "{name}{labels:?} matched {found:?}");
        found.first().copied()
    }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (series, rest) = match line.find('{') {
        Some(_) => {
            let close = line.rfind('}')?;
            (&line[..close + 1], &line[close + 1..])
        }
        None => {
            let sp = line.find(' ')?;
            (&line[..sp], &line[sp..])
        }
    };
    let value = rest.split_whitespace().next()?.parse().ok()?;
    let (name, labels) = match series.find('{') {
        Some(open) => (
            &series[..open],
            parse_labels(&series[open + 1..series.len() - 1]),
        ),
        None => (series, Vec::new()),
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_labels(mut s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        let Some(eq) = s.find("=\"") else {
            return out;
        };
        let key = s[..eq].to_owned();
        let mut value = String::new();
        let mut chars = s[eq + 2..].char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = Some(eq + 2 + i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key, value));
        match end {
            Some(end) => s = &s[end..],
            None => return out,
        }
    }
}

impl Proxy {
    /// The admin address (the proxy must run with [`METRICS_LISTEN`]): as
    /// reported at start in process; for the binary, from its `admin
    /// listening on ADDR` line, which follows the main startup line (stderr
    /// has no event to wait on, so it is polled).
    pub async fn admin_addr(&self) -> SocketAddr {
        if let Some(addr) = self.bound_admin_addr() {
            return addr;
        }
        let find = |text: &str| {
            text.lines().find_map(|l| {
                let rest = &l[l.find("admin listening on ")? + "admin listening on ".len()..];
                rest.split_whitespace().next()?.parse::<SocketAddr>().ok()
            })
        };
        wait_until(
            "the proxy's `admin listening on` line (run it with --metrics-listen)",
            TIMEOUT,
            || find(&self.stderr()).is_some(),
        )
        .await;
        find(&self.stderr()).expect("checked above")
    }

    /// `GET /metrics` on the admin port, parsed.
    pub async fn metrics(&self) -> Metrics {
        let addr = self.admin_addr().await;
        let mut c = Client::connect(addr).await;
        let resp = c
            .send(client::request(
                "GET",
                &addr.to_string(),
                "/metrics",
                &[],
                client::empty(),
            ))
            .await
            .unwrap_or_else(|e| panic!("GET /metrics on {addr}: {e}"));
        assert_eq!(resp.status(), 200, "GET /metrics: {}", resp.text());
        Metrics::parse(&resp.text())
    }

    /// `GET path` on the admin port (`/.api/http-stats`, `/healthz`, ...).
    pub async fn admin_get(&self, path: &str) -> super::Resp {
        let addr = self.admin_addr().await;
        let mut c = Client::connect(addr).await;
        c.send(client::request(
            "GET",
            &addr.to_string(),
            path,
            &[],
            client::empty(),
        ))
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
    }

    /// Scrapes `/metrics` every 10 ms until `cond` holds for the page, at
    /// most [`TIMEOUT`]; returns that page. For counters that move just after
    /// the event a test can see (a log line read, a response received).
    pub async fn wait_metrics(&self, what: &str, cond: impl Fn(&Metrics) -> bool) -> Metrics {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let m = self.metrics().await;
            if cond(&m) {
                return m;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "timed out after {TIMEOUT:?} waiting for /metrics: {what}\n{}\n--- proxy stderr ---\n{}",
                    m.text,
                    self.stderr()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Scrapes `/metrics` every 10 ms until the per-pool series `name` of
    /// `origin` satisfies `pred`, at most [`TIMEOUT`]; returns its value. For
    /// proxy-side state no event announces.
    pub async fn wait_pool_metric(
        &self,
        name: &str,
        origin: &str,
        pred: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let m = self.metrics().await;
            let value = m.pool(name, origin);
            if let Some(v) = value.filter(|v| pred(*v)) {
                return v;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "timed out after {TIMEOUT:?} waiting for {name}{{origin=\"{origin}\"}} \
                     (last value {value:?})\n--- proxy stderr ---\n{}",
                    self.stderr()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn parses_samples_with_and_without_labels() {
        let m = Metrics::parse(
            "# TYPE ccnproxy_pool_retries counter\n\
             ccnproxy_pool_retries_total{origin=\"https://a.test:443\"} 1\n\
             ccnproxy_pool_retries_total{origin=\"https://b.test:443\",x=\"q\\\"}\"} 7\n\
             ccnproxy_pools 2\n\
             # EOF\n",
        );
        assert_eq!(
            m.pool("ccnproxy_pool_retries_total", "https://a.test:443"),
            Some(1.0)
        );
        assert_eq!(
            m.get("ccnproxy_pool_retries_total", &[("x", "q\"}")]),
            Some(7.0)
        );
        assert_eq!(m.get("ccnproxy_pools", &[]), Some(2.0));
        assert_eq!(
            m.pool("ccnproxy_pool_retries_total", "https://c.test:443"),
            None
        );
    }
}
