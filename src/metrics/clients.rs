//! Per-client series: who sent what, by client key (`client::client_key`).
//!
//! They say which clients use the proxy and how much, so they are for the
//! operator: they live in a registry of their own that only the admin
//! listener (`--metrics-listen`) renders, never the proxy port a client can
//! reach. A key's series go away after `--client-series-ttl` without a
//! request (swept at each admin scrape, and before a new key would be
//! turned away by `--max-client-keys`), so a client that came once does not
//! hold a place for ever; `ccnproxy_client_series_expired_total` counts
//! them. Past `--max-client-keys` live keys, new ones share `other`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::accesslog::Record;
use crate::upstream::{CLASSES, class_index};

/// The label value shared by every key past `--max-client-keys`.
pub const OTHER: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClientLabels {
    client: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClientCodeLabels {
    client: Arc<str>,
    code_class: &'static str,
}

#[derive(Clone, Default)]
struct Families {
    requests: Family<ClientCodeLabels, Counter>,
    seconds: Family<ClientLabels, Counter<f64>>,
    request_bytes: Family<ClientLabels, Counter>,
    response_bytes: Family<ClientLabels, Counter>,
}

/// Every client key's series, bounded in count and in time.
pub(super) struct Clients {
    /// Only the per-client families: rendered on the admin listener alone.
    registry: Registry,
    families: Families,
    keys: RwLock<HashMap<Arc<str>, Arc<ClientSeries>>>,
    other: OnceLock<Arc<ClientSeries>>,
    max_keys: usize,
    ttl: Duration,
    epoch: Instant,
    /// `ccnproxy_client_keys`: keys with series of their own.
    live: Gauge,
    /// `ccnproxy_client_series_expired_total`.
    expired: Counter,
}

impl Clients {
    /// At most `max_keys` keys, each kept `ttl` past its last request. The
    /// aggregate gauge and counter go in `shared` (the registry both
    /// listeners render): they name no client.
    pub(super) fn new(max_keys: usize, ttl: Duration, shared: &mut Registry) -> Self {
        let families = Families::default();
        let mut registry = Registry::default();
        let r = &mut registry;
        r.register(
            "ccnproxy_client_requests",
            "Requests finished, by client key and status class",
            families.requests.clone(),
        );
        r.register("ccnproxy_client_request_seconds", "Sum of request durations by client key (CONNECT excluded); divide by ccnproxy_client_requests_total for the mean", families.seconds.clone());
        r.register(
            "ccnproxy_client_request_bytes",
            "Request body bytes read, by client key",
            families.request_bytes.clone(),
        );
        r.register(
            "ccnproxy_client_response_bytes",
            "Response body bytes sent, by client key",
            families.response_bytes.clone(),
        );
        let clients = Clients {
            registry,
            families,
            keys: RwLock::new(HashMap::new()),
            other: OnceLock::new(),
            max_keys,
            ttl,
            epoch: Instant::now(),
            live: Gauge::default(),
            expired: Counter::default(),
        };
        shared.register(
            "ccnproxy_client_keys",
            "Client keys with series of their own (capped by --max-client-keys; expire after --client-series-ttl)",
            clients.live.clone(),
        );
        shared.register(
            "ccnproxy_client_series_expired",
            "Client keys whose series were dropped after --client-series-ttl without a request",
            clients.expired.clone(),
        );
        clients
    }

    /// The per-client registry, for the admin listener's `/metrics`.
    pub(super) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Accounts `record` to `key` (see `OriginSeries::observe` for `timed`).
    pub(super) fn observe(&self, key: &str, record: &Record, timed: bool) {
        self.observe_at(Instant::now(), key, record, timed);
    }

    fn observe_at(&self, at: Instant, key: &str, record: &Record, timed: bool) {
        let series = self.series(key, self.ticks(at));
        series.observe(&self.families, record, timed);
    }

    /// Drops the series of keys idle for longer than the TTL.
    pub(super) fn sweep(&self) {
        self.sweep_at(Instant::now());
    }

    fn sweep_at(&self, at: Instant) {
        let now = self.ticks(at);
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        self.sweep_locked(&mut keys, now);
    }

    /// The series of `key`, marked as used `now`. The mark is made under
    /// the lock, so a sweep (which takes it for writing) cannot drop a
    /// series between its lookup and its use.
    fn series(&self, key: &str, now: u64) -> Arc<ClientSeries> {
        let used = |found: &Arc<ClientSeries>| {
            found.last_seen.store(now, Ordering::Relaxed);
            found.clone()
        };
        if let Some(found) = self.keys.read().unwrap_or_else(|e| e.into_inner()).get(key) {
            return used(found);
        }
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = keys.get(key) {
            return used(found);
        }
        if keys.len() >= self.max_keys {
            self.sweep_locked(&mut keys, now);
        }
        if keys.len() >= self.max_keys {
            drop(keys);
            return self
                .other
                .get_or_init(|| Arc::new(ClientSeries::new(&self.families, Arc::from(OTHER))))
                .clone();
        }
        let key: Arc<str> = Arc::from(key);
        let series = Arc::new(ClientSeries::new(&self.families, key.clone()));
        series.last_seen.store(now, Ordering::Relaxed);
        keys.insert(key, series.clone());
        self.live.set(keys.len() as i64);
        series
    }

    fn sweep_locked(&self, keys: &mut HashMap<Arc<str>, Arc<ClientSeries>>, now: u64) {
        let ttl = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let before = keys.len();
        keys.retain(|_, series| {
            let idle = now.saturating_sub(series.last_seen.load(Ordering::Relaxed));
            let keep = idle <= ttl;
            if !keep {
                series.remove(&self.families);
            }
            keep
        });
        self.expired.inc_by((before - keys.len()) as u64);
        self.live.set(keys.len() as i64);
    }

    /// Milliseconds since this table was made.
    fn ticks(&self, at: Instant) -> u64 {
        u64::try_from(at.duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }
}

/// One client key's series.
struct ClientSeries {
    client: Arc<str>,
    requests: [OnceLock<Counter>; CLASSES.len()],
    seconds: Counter<f64>,
    request_bytes: Counter,
    response_bytes: Counter,
    /// `Clients::ticks` of the last request.
    last_seen: AtomicU64,
}

impl ClientSeries {
    fn new(f: &Families, client: Arc<str>) -> Self {
        let labels = ClientLabels {
            client: client.clone(),
        };
        ClientSeries {
            requests: Default::default(),
            seconds: f.seconds.get_or_create_owned(&labels),
            request_bytes: f.request_bytes.get_or_create_owned(&labels),
            response_bytes: f.response_bytes.get_or_create_owned(&labels),
            client,
            last_seen: AtomicU64::new(0),
        }
    }

    fn observe(&self, f: &Families, record: &Record, timed: bool) {
        let class = class_index(record.status);
        self.requests[class]
            .get_or_init(|| {
                f.requests.get_or_create_owned(&ClientCodeLabels {
                    client: self.client.clone(),
                    code_class: CLASSES[class],
                })
            })
            .inc();
        if timed {
            self.seconds.inc_by(record.duration.as_secs_f64());
        }
        self.request_bytes.inc_by(record.bytes_received);
        self.response_bytes.inc_by(record.bytes_sent);
    }

    /// Takes this key's series out of the families.
    fn remove(&self, f: &Families) {
        for code_class in CLASSES {
            f.requests.remove(&ClientCodeLabels {
                client: self.client.clone(),
                code_class,
            });
        }
        let labels = ClientLabels {
            client: self.client.clone(),
        };
        f.seconds.remove(&labels);
        f.request_bytes.remove(&labels);
        f.response_bytes.remove(&labels);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use prometheus_client::registry::Registry;

    use super::Clients;
    use crate::accesslog::Record;

    fn render(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    fn record() -> Record {
        crate::accesslog::tests::sample_record()
    }

    #[test]
    fn series_expire_after_the_ttl_and_are_counted() {
        let mut shared = Registry::default();
        let clients = Clients::new(10, Duration::from_secs(60), &mut shared);
        let start = Instant::now();
        clients.observe_at(start, "team-a", &record(), true);
        clients.observe_at(start + Duration::from_secs(50), "team-b", &record(), true);
        assert!(render(clients.registry()).contains("client=\"team-a\""));

        clients.sweep_at(start + Duration::from_secs(61));
        let page = render(clients.registry());
        assert!(!page.contains("team-a"), "{page}");
        assert!(page.contains("client=\"team-b\""), "{page}");
        let totals = render(&shared);
        assert!(totals.contains("ccnproxy_client_keys 1"), "{totals}");
        assert!(
            totals.contains("ccnproxy_client_series_expired_total 1"),
            "{totals}"
        );

        // A key that comes back starts over.
        clients.observe_at(start + Duration::from_secs(62), "team-a", &record(), true);
        let page = render(clients.registry());
        assert!(
            page.contains("ccnproxy_client_requests_total{client=\"team-a\",code_class=\"2xx\"} 1"),
            "{page}"
        );
    }

    #[test]
    fn a_full_table_makes_room_from_expired_keys_before_using_other() {
        let mut shared = Registry::default();
        let clients = Clients::new(1, Duration::from_secs(60), &mut shared);
        let start = Instant::now();
        clients.observe_at(start, "old", &record(), true);
        clients.observe_at(start + Duration::from_secs(1), "new", &record(), true);
        assert!(render(clients.registry()).contains("client=\"other\""));
        clients.observe_at(start + Duration::from_secs(120), "newer", &record(), true);
        let page = render(clients.registry());
        assert!(page.contains("client=\"newer\""), "{page}");
        assert!(!page.contains("client=\"old\""), "{page}");
    }
}
