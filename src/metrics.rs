//! Counters, gauges and histograms; Prometheus text. PLACEHOLDER: the
//! observability work replaces the insides behind `observe` and `render`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::accesslog::Record;

/// Process-wide metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: AtomicU64,
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accounts one finished request.
    pub fn observe(&self, _record: &Record) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        format!(
            "# TYPE ccnproxy_requests_total counter\nccnproxy_requests_total {}\n",
            self.requests.load(Ordering::Relaxed)
        )
    }
}
