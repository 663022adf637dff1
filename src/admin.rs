//! The proxy's own endpoints: `/healthz`, `/metrics`, `/.api/stats`,
//! `/.api/http-stats`. Served on the main port for requests with no route,
//! and on `--metrics-listen` when set. The numbers come from `Metrics`; this
//! file only shapes them (the JSON mirrors chocon's, see docs/reference.md, "Metrics and admin endpoints").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Response, StatusCode, Uri};
use serde::Serialize;

use crate::body::{self, ProxyBody};
use crate::metrics::{self, Metrics, View, text004};

/// The admin endpoints (a cheap clonable handle).
#[derive(Clone)]
pub struct Admin {
    metrics: Arc<Metrics>,
    draining: Arc<AtomicBool>,
    /// Per-client series only on the admin listener.
    view: View,
}

/// `/.api/stats`: process and runtime numbers, after chocon's
/// `golang-stats-api-handler` (Go-only fields dropped, Rust ones added).
#[derive(Debug, Serialize)]
pub struct ProcessReport {
    /// Now, nanoseconds since the Unix epoch.
    pub time: u128,
    /// ccnproxy version.
    pub version: &'static str,
    /// `linux`, `macos`, …
    pub os: &'static str,
    /// `x86_64`, `aarch64`, …
    pub arch: &'static str,
    /// Process id.
    pub pid: u32,
    /// Time since start, human readable (`1h 2m 3s`).
    pub uptime: String,
    /// Time since start, whole seconds.
    pub uptime_sec: u64,
    /// CPUs available to the process.
    pub cpu_num: usize,
    /// Tokio worker threads.
    pub workers: Option<usize>,
    /// Live tokio tasks (chocon's `goroutine_num`).
    pub tasks: Option<usize>,
    /// Tasks waiting in tokio's global queue.
    pub global_queue_depth: Option<usize>,
    /// OS threads.
    pub threads: Option<u64>,
    /// Resident memory, bytes.
    pub memory_rss: Option<u64>,
    /// Peak resident memory, bytes.
    pub memory_rss_peak: Option<u64>,
    /// Virtual memory, bytes.
    pub memory_virtual: Option<u64>,
    /// CPU time in user mode, seconds.
    pub cpu_user_sec: Option<f64>,
    /// CPU time in kernel mode, seconds.
    pub cpu_system_sec: Option<f64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// File descriptor limit (soft).
    pub max_fds: Option<u64>,
    /// Open client connections.
    pub client_connections: u64,
    /// Requests finished since start.
    pub requests: u64,
}

impl Admin {
    /// Admin endpoints over `metrics`; `/healthz` answers 503 once `draining`.
    pub fn new(metrics: Arc<Metrics>, draining: Arc<AtomicBool>) -> Self {
        Admin {
            metrics,
            draining,
            view: View::Proxy,
        }
    }

    /// The same endpoints as the operator's listener shows them: only
    /// there do the metrics show who the clients are.
    pub fn for_admin_listener(self) -> Admin {
        Admin {
            view: View::Admin,
            ..self
        }
    }

    /// Counts a connection to `--metrics-listen` refused over
    /// `--max-admin-conns`.
    pub fn count_refused_connection(&self) {
        self.metrics.admin_connection_refused();
    }

    /// The response for `uri`'s path, or `None` when it is not an admin path.
    /// `?pp=1` pretty-prints the JSON endpoints (as chocon's stats handler).
    /// `/metrics` is OpenMetrics text unless `headers`' `Accept` prefers
    /// Prometheus text 0.0.4 (`metrics/text004.rs`).
    pub fn serve(&self, uri: &Uri, headers: &HeaderMap) -> Option<Response<ProxyBody>> {
        let pretty = has_param(uri, "pp");
        let (status, ctype, text) = match uri.path() {
            "/healthz" => {
                if self.draining.load(Ordering::Relaxed) {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        TEXT,
                        "draining\n".to_owned(),
                    )
                } else {
                    (StatusCode::OK, TEXT, "ok\n".to_owned())
                }
            }
            "/metrics" => {
                let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok());
                let text = self.metrics.render(self.view);
                if text004::wants_text_004(accept) {
                    let text = text004::to_text_004(&text);
                    (StatusCode::OK, text004::CONTENT_TYPE_004, text)
                } else {
                    (StatusCode::OK, metrics::CONTENT_TYPE, text)
                }
            }
            "/.api/stats" => (StatusCode::OK, JSON, json(&self.process_report(), pretty)),
            "/.api/http-stats" => (StatusCode::OK, JSON, {
                let report = if has_param(uri, "window") {
                    self.metrics.http_stats_window()
                } else {
                    self.metrics.http_stats()
                };
                json(&report, pretty)
            }),
            _ => return None,
        };
        let mut resp = Response::new(body::full(text));
        *resp.status_mut() = status;
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
        resp.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Some(resp)
    }

    /// The numbers of `/.api/stats`, now.
    pub fn process_report(&self) -> ProcessReport {
        let p = metrics::process::read();
        let uptime = self.metrics.uptime();
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .map(|h| h.metrics());
        ProcessReport {
            time: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
            version: env!("CARGO_PKG_VERSION"),
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
            pid: std::process::id(),
            uptime: humantime::format_duration(Duration::from_secs(uptime.as_secs())).to_string(),
            uptime_sec: uptime.as_secs(),
            cpu_num: std::thread::available_parallelism().map_or(1, |n| n.get()),
            workers: runtime.as_ref().map(|m| m.num_workers()),
            tasks: runtime.as_ref().map(|m| m.num_alive_tasks()),
            global_queue_depth: runtime.as_ref().map(|m| m.global_queue_depth()),
            threads: p.threads,
            memory_rss: p.rss_bytes,
            memory_rss_peak: p.rss_peak_bytes,
            memory_virtual: p.virtual_bytes,
            cpu_user_sec: p.cpu_user_seconds,
            cpu_system_sec: p.cpu_system_seconds,
            open_fds: p.open_fds,
            max_fds: p.max_fds,
            client_connections: self.metrics.client_connections(),
            requests: self.metrics.requests(),
        }
    }
}

/// `?NAME=1` or `?NAME=true` in `uri`'s query.
fn has_param(uri: &Uri, name: &str) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&').any(|p| {
            p.split_once('=')
                .is_some_and(|(k, v)| k == name && (v == "1" || v == "true"))
        })
    })
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

fn json(value: &impl Serialize, pretty: bool) -> String {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    #[allow(
        clippy::expect_used,
        reason = "the reports are the proxy's own counters, plain numbers and strings"
    )]
    let mut text = text.expect("the reports hold only plain numbers and strings");
    text.push('\n');
    text
}

/// The admin endpoints' answer to `req` on `--metrics-listen`: 404 for
/// any other path.
pub fn serve_or_not_found(admin: &Admin, uri: &Uri, headers: &HeaderMap) -> Response<ProxyBody> {
    admin.serve(uri, headers).unwrap_or_else(|| {
        let mut r = Response::new(body::full("not found\n"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use http_body_util::BodyExt;

    use super::*;
    use crate::config::{ClientKey, MetricsConfig};
    use crate::metrics::{PoolSnapshot, PoolSource};

    struct NoPools;

    impl PoolSource for NoPools {
        fn snapshot(&self) -> Vec<PoolSnapshot> {
            Vec::new()
        }
    }

    fn admin() -> (Admin, Arc<Metrics>, Arc<AtomicBool>) {
        let config = MetricsConfig {
            client_key: ClientKey::Auto,
            max_client_keys: 10,
            client_series_ttl: std::time::Duration::from_secs(600),
        };
        let metrics = Arc::new(Metrics::new(&config, Arc::new(NoPools)));
        let draining = Arc::new(AtomicBool::new(false));
        (
            Admin::new(metrics.clone(), draining.clone()),
            metrics,
            draining,
        )
    }

    async fn get(admin: &Admin, uri: &str) -> Option<(StatusCode, String, String)> {
        let resp = admin.serve(&uri.parse().unwrap(), &HeaderMap::new())?;
        let status = resp.status();
        let ctype = resp.headers()[CONTENT_TYPE].to_str().unwrap().to_owned();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Some((status, ctype, String::from_utf8(body.to_vec()).unwrap()))
    }

    #[tokio::test]
    async fn healthz_turns_503_when_draining() {
        let (admin, _, draining) = admin();
        let (status, _, body) = get(&admin, "/healthz").await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok\n"));
        draining.store(true, Ordering::Relaxed);
        let (status, _, body) = get(&admin, "/healthz").await.unwrap();
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
        );
        assert!(get(&admin, "/nope").await.is_none());
        assert!(get(&admin, "/.api/stats/more").await.is_none());
    }

    #[tokio::test]
    async fn metrics_are_openmetrics_text() {
        let (admin, _, _) = admin();
        let (status, ctype, body) = get(&admin, "/metrics").await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(ctype.starts_with("application/openmetrics-text"));
        assert!(body.contains("# TYPE ccnproxy_uptime_seconds gauge"));
    }

    #[tokio::test]
    async fn metrics_are_text_0_0_4_when_accept_prefers_it() {
        let (admin, _, _) = admin();
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("text/plain;version=0.0.4"));
        let resp = admin.serve(&"/metrics".parse().unwrap(), &headers).unwrap();
        assert_eq!(resp.headers()[CONTENT_TYPE], text004::CONTENT_TYPE_004);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("# TYPE ccnproxy_build_info gauge"), "{body}");
        assert!(!body.contains("# EOF"));
    }

    #[tokio::test]
    async fn stats_json_has_chocons_fields() {
        let (admin, metrics, _) = admin();
        let _conn = metrics.client_connection();
        let (status, ctype, body) = get(&admin, "/.api/stats").await.unwrap();
        assert_eq!((status, ctype.as_str()), (StatusCode::OK, JSON));
        assert!(!body.trim_end().contains('\n'), "compact unless ?pp=1");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        for field in [
            "time",
            "pid",
            "uptime",
            "uptime_sec",
            "cpu_num",
            "tasks",
            "version",
        ] {
            assert!(!v[field].is_null(), "{field} missing in {v}");
        }
        assert_eq!(v["pid"], std::process::id());
        assert_eq!(v["client_connections"], 1);
        if cfg!(target_os = "linux") {
            assert!(v["memory_rss"].as_u64().is_some_and(|b| b > 0));
            assert!(v["open_fds"].as_u64().is_some_and(|n| n > 0));
        }
        let (_, _, pretty) = get(&admin, "/.api/stats?pp=1").await.unwrap();
        assert!(pretty.lines().count() > 10);
    }

    #[tokio::test]
    async fn http_stats_json_mirrors_go_httpstats() {
        let (admin, metrics, _) = admin();
        let record = crate::accesslog::Record {
            received: SystemTime::UNIX_EPOCH,
            duration: Duration::from_millis(40),
            client: SocketAddr::from(([127, 0, 0, 1], 1)),
            via: None,
            local_port: 3000,
            method: http::Method::GET,
            uri: Uri::from_static("/"),
            version: http::Version::HTTP_11,
            host: String::new(),
            status: 429,
            bytes_sent: 0,
            bytes_received: 0,
            request_headers: http::HeaderMap::new(),
            response_headers: http::HeaderMap::new(),
            request_id: String::new(),
            origin: None,
            upstream: None,
            scope: None,
            verified: None,
            error: None,
        };
        metrics.observe(&record, None);
        let (_, ctype, body) = get(&admin, "/.api/http-stats").await.unwrap();
        assert_eq!(ctype, JSON);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["request"]["count"], 1);
        assert_eq!(v["request"]["status_count"]["429"], 1);
        assert_eq!(v["request"]["status_count"]["200"], 0);
        assert_eq!(v["response"]["max_time"], 0.04);
        assert_eq!(v["response"]["min_time"], 0.04);
        assert_eq!(v["response"]["average_time"], 0.04);
        for p in ["50", "90", "95", "99"] {
            let t = v["response"]["percentiled_time"][p].as_f64().unwrap();
            assert!((t - 0.04).abs() < 1e-9, "p{p} {t}");
        }
    }
}
