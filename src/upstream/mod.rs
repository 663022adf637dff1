//! The upstream client behind one narrow interface: `Upstream::origin(origin)`
//! holds the origin's entry (its pool and its metric series), then
//! `Pool::send(request)` → response and `Timing` (the caller holds the entry
//! until the request is accounted for). Inside: one entry per origin in a
//! table bounded by `--origin-idle-ttl` and `--max-origins` (`origins.rs`),
//! its `Pool` (`pool/`) and series (`origin_series.rs`), connections (`conn.rs`, GOAWAY seen on arrival in
//! `goaway.rs`), DNS (`dns.rs`), TLS (`tls.rs`),
//! per-address ejection after failed connects (`health.rs`).

mod conn;
pub mod dns;
pub(crate) mod goaway;
pub mod health;
mod origin_series;
mod origins;
pub mod pool;
mod timing;
pub mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use conn::ConnectError;
pub use dns::DnsError;
pub use origin_series::{CLASSES, Finished, METHODS, OriginHistogram, OriginSeries, class_index};
pub use origins::InUse;
pub use pool::{PoolStats, UpstreamBody};
pub use timing::{Protocol, Timing};

use crate::buffer_budget::BufferBudget;
use crate::config::{DnsConfig, PoolConfig, TlsConfig};
use crate::policy::{Policy, PolicyError};
use crate::route::Origin;
use origins::{Removed, Table};
use pool::{Pool, Shared};

/// Why an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Name resolution failed.
    #[error(transparent)]
    Dns(#[from] DnsError),
    /// The address guard refused the origin's addresses.
    #[error(transparent)]
    Refused(PolicyError),
    /// No connection could be opened.
    #[error(transparent)]
    Connect(ConnectError),
    /// Every address tried failed (one connect attempt each).
    #[error("no connection to any of {addrs} addresses tried; the last failure")]
    Unreachable {
        /// How many addresses were tried.
        addrs: usize,
        /// The last address's failure.
        #[source]
        source: ConnectError,
    },
    /// No connection or stream came free within `--pool-wait-timeout`.
    #[error("no upstream connection free within {0:?} (pool saturated)")]
    PoolTimeout(Duration),
    /// No response head within `--proxy-read-timeout`.
    #[error("no response head from origin within {0:?}")]
    Timeout(Duration),
    /// The exchange failed on the connection.
    #[error("upstream request failed")]
    Request(#[source] hyper::Error),
    /// The exchange broke and the request was not sent again: `rule` says
    /// why (it may have been processed, or could not be replayed).
    #[error("upstream request failed and was not sent again ({})", rule.name())]
    NotSentAgain {
        /// The retry rule that applied.
        rule: pool::retry::Rule,
        /// What broke.
        #[source]
        source: hyper::Error,
    },
    /// `--max-origins` origins have state and every one is in use or was
    /// used within `--origin-idle-ttl`.
    #[error(
        "{0} origins in use or used within --origin-idle-ttl, none to make room for another (--max-origins); retry later"
    )]
    TooManyOrigins(usize),
}

/// Counters of the origin table, read by metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OriginCounts {
    /// Origins with state now.
    pub origins: u64,
    /// Origins removed after `--origin-idle-ttl` unused.
    pub expired: u64,
    /// Origins unused for `--origin-idle-ttl` removed to make room under
    /// `--max-origins` before the sweep reached them.
    pub evicted: u64,
    /// Requests refused (503) because every origin was in use or used
    /// within `--origin-idle-ttl`.
    pub refused: u64,
}

/// Why the upstream client could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// TLS configuration.
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
    /// Resolver configuration.
    #[error("setting up the DNS resolver")]
    Dns(#[source] hickory_resolver::net::NetError),
}

/// Everything kept for one origin; removing the entry removes all of it.
#[derive(Clone)]
pub struct OriginEntry {
    /// Its connections, DNS answer and learned state.
    pub pool: Arc<Pool>,
    /// Its request series, read by `/metrics`.
    pub series: Arc<OriginSeries>,
}

/// A request's hold on its origin's entry (see `origins.rs`).
pub type OriginInUse = InUse<OriginEntry>;

/// The origin table and what its pools share.
pub struct Upstream {
    shared: Arc<Shared>,
    origins: Mutex<Table<OriginEntry>>,
    expired: AtomicU64,
    evicted: AtomicU64,
    refused: AtomicU64,
}

impl Upstream {
    /// Builds the client; starts the sweeper that closes idle connections.
    /// Replay copies of request bodies are charged to `buffered`.
    pub fn new(
        pool: &PoolConfig,
        dns: &DnsConfig,
        tls: &TlsConfig,
        policy: Arc<Policy>,
        buffered: Arc<BufferBudget>,
    ) -> Result<Arc<Self>, SetupError> {
        let shared = Arc::new(Shared {
            dns: dns::Dns::new(dns).map_err(SetupError::Dns)?,
            conn: conn::ConnSettings {
                tls: tls::client_config(tls)?,
                connect_timeout: pool.connect_timeout,
                h2_ping_interval: pool.h2_ping_interval,
            },
            config: pool.clone(),
            policy,
            stale_grace: dns.stale_grace,
            next_id: AtomicU64::new(1),
            buffered,
        });
        let upstream = Arc::new(Upstream {
            shared,
            origins: Mutex::new(Table::new(
                pool.max_origins,
                pool.origin_idle_ttl,
                pool.prewarm.clone(),
            )),
            expired: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&upstream);
        let every = (pool.idle_timeout.min(pool.origin_idle_ttl) / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(up) = weak.upgrade() else { return };
                up.sweep();
            }
        });
        Ok(upstream)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table<OriginEntry>> {
        self.origins.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry of `origin`, held for one request; created on first use
    /// (making room under `--max-origins` if needed).
    pub fn origin(&self, origin: &Origin) -> Result<OriginInUse, UpstreamError> {
        let got = self
            .table()
            .get(origin, tokio::time::Instant::now(), || OriginEntry {
                pool: Arc::new(Pool::new(origin.clone(), self.shared.clone())),
                series: Arc::default(),
            });
        match got {
            Ok((entry, removed)) => {
                self.evicted
                    .fetch_add(removed.len() as u64, Ordering::Relaxed);
                self.removed(removed);
                Ok(entry)
            }
            Err(origins::Full) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(UpstreamError::TooManyOrigins(
                    self.shared.config.max_origins,
                ))
            }
        }
    }

    /// The origin table's size and counters.
    pub fn origin_counts(&self) -> OriginCounts {
        let origins = self.table().len();
        OriginCounts {
            origins: origins as u64,
            expired: self.expired.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    /// Drops removed entries (closing their pools' idle connections, their
    /// series leaving `/metrics` with them) outside the table's lock.
    fn removed(&self, removed: Removed<OriginEntry>) {
        for (origin, entry) in removed {
            drop(entry);
            tracing::debug!(%origin, "origin state removed");
        }
    }

    /// Resolves `host:port` for a CONNECT tunnel, through the address guard.
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<std::net::SocketAddr>, UpstreamError> {
        let answer = self.shared.dns.resolve(host, port).await?;
        for addr in &answer.addrs {
            self.shared
                .policy
                .check_addr(host, addr.ip())
                .map_err(UpstreamError::Refused)?;
        }
        Ok(answer.addrs)
    }

    /// Opens a connection to each prewarm origin and keeps one warm.
    pub async fn prewarm(&self) {
        for origin in &self.shared.config.prewarm {
            let warmed = match self.origin(origin) {
                Ok(entry) => entry.pool.warm().await,
                Err(err) => Err(err),
            };
            if let Err(err) = warmed {
                tracing::warn!(%origin, error = &err as &dyn std::error::Error, "prewarm failed");
            }
        }
    }

    /// Every origin's entry now (holding them does not keep them from
    /// being removed).
    pub fn entries(&self) -> Vec<OriginEntry> {
        self.table()
            .entries()
            .iter()
            .map(|slot| slot.value().clone())
            .collect()
    }

    /// Closes idle connections past their time, removes origins unused for
    /// `--origin-idle-ttl` and rewarms prewarm origins gone cold.
    fn sweep(self: &Arc<Self>) {
        let config = &self.shared.config;
        // Pools are swept outside the table's lock.
        for entry in self.entries() {
            entry.pool.sweep(config.origin_idle_ttl);
        }
        let removed = self.table().expire(tokio::time::Instant::now());
        self.expired
            .fetch_add(removed.len() as u64, Ordering::Relaxed);
        self.removed(removed);
        let cold: Vec<Arc<Pool>> = {
            let table = self.table();
            config
                .prewarm
                .iter()
                .filter_map(|o| table.peek(o))
                .map(|slot| slot.value().pool.clone())
                .collect()
        };
        for pool in cold.into_iter().filter(|p| p.stats().open == 0) {
            tokio::spawn(async move {
                let _ = pool.warm().await;
            });
        }
    }
}
