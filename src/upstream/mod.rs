//! The upstream client behind one narrow interface: `Upstream::pool(origin)`,
//! then `Pool::send(request)` → response and `Timing` (the caller holds the
//! pool until the request is accounted for). Inside: one `Pool` per origin
//! (`pool/`) in a table bounded by `--origin-idle-ttl` and `--max-origins`
//! (`origins.rs`), connections (`conn.rs`, GOAWAY seen on arrival in
//! `goaway.rs`), DNS (`dns.rs`), TLS (`tls.rs`),
//! per-address ejection after failed connects (`health.rs`).

mod conn;
pub mod dns;
pub(crate) mod goaway;
pub mod health;
mod origins;
pub mod pool;
mod timing;
pub mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub use conn::ConnectError;
pub use dns::DnsError;
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
    /// `--max-origins` origins have state and every one is in use.
    #[error("{0} origins in use, none idle to make room for another (--max-origins); retry later")]
    TooManyOrigins(usize),
}

/// Counters of the origin table, read by metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OriginCounts {
    /// Origins with state now.
    pub origins: u64,
    /// Origins removed after `--origin-idle-ttl` unused.
    pub expired: u64,
    /// Idle origins removed to make room under `--max-origins`.
    pub evicted: u64,
    /// Requests refused (503) because every origin was in use.
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

/// Told the origin whose state was just removed (metrics forget its series).
type RemovedHook = Box<dyn Fn(&Origin) + Send + Sync>;

/// All pools.
pub struct Upstream {
    shared: Arc<Shared>,
    pools: Mutex<Table<Pool>>,
    expired: AtomicU64,
    evicted: AtomicU64,
    refused: AtomicU64,
    on_removed: OnceLock<RemovedHook>,
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
            pools: Mutex::new(Table::new(pool.max_origins)),
            expired: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            on_removed: OnceLock::new(),
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

    /// The pool of `origin`, created on first use (making room under
    /// `--max-origins` if needed).
    pub fn pool(&self, origin: &Origin) -> Result<Arc<Pool>, UpstreamError> {
        let got = self.pools.lock().unwrap_or_else(|e| e.into_inner()).get(
            origin,
            tokio::time::Instant::now(),
            || Pool::new(origin.clone(), self.shared.clone()),
        );
        match got {
            Ok((pool, removed)) => {
                self.evicted
                    .fetch_add(removed.len() as u64, Ordering::Relaxed);
                self.removed(removed);
                Ok(pool)
            }
            Err(origins::Full) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(UpstreamError::TooManyOrigins(
                    self.shared.config.max_origins,
                ))
            }
        }
    }

    /// Calls `hook` with each origin whose state is removed (set once).
    pub fn on_removed(&self, hook: impl Fn(&Origin) + Send + Sync + 'static) {
        let _ = self.on_removed.set(Box::new(hook));
    }

    /// The origin table's size and counters.
    pub fn origin_counts(&self) -> OriginCounts {
        let origins = self.pools.lock().unwrap_or_else(|e| e.into_inner()).len();
        OriginCounts {
            origins: origins as u64,
            expired: self.expired.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    /// Drops removed pools (closing their idle connections) and tells the hook.
    fn removed(&self, removed: Removed<Pool>) {
        for (origin, pool) in removed {
            drop(pool);
            tracing::debug!(%origin, "origin state removed");
            if let Some(hook) = self.on_removed.get() {
                hook(&origin);
            }
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
            let warmed = match self.pool(origin) {
                Ok(pool) => pool.warm().await,
                Err(err) => Err(err),
            };
            if let Err(err) = warmed {
                tracing::warn!(%origin, error = &err as &dyn std::error::Error, "prewarm failed");
            }
        }
    }

    /// Every pool, held weakly (upgrade one at a time: a pool held
    /// strongly is in use and cannot be evicted).
    pub fn pools(&self) -> Vec<std::sync::Weak<Pool>> {
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
    }

    /// Closes idle connections past their time, removes origins unused for
    /// `--origin-idle-ttl` and rewarms prewarm origins gone cold.
    fn sweep(self: &Arc<Self>) {
        let config = &self.shared.config;
        // Pools are swept outside the table's lock; the snapshot must be
        // gone before `expire`, which takes a second holder for "in use".
        for pool in self.pools() {
            if let Some(pool) = pool.upgrade() {
                pool.sweep(config.origin_idle_ttl);
            }
        }
        let removed = self.pools.lock().unwrap_or_else(|e| e.into_inner()).expire(
            tokio::time::Instant::now(),
            config.origin_idle_ttl,
            &config.prewarm,
        );
        self.expired
            .fetch_add(removed.len() as u64, Ordering::Relaxed);
        self.removed(removed);
        let cold: Vec<Arc<Pool>> = {
            let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            config
                .prewarm
                .iter()
                .filter_map(|o| pools.peek(o))
                .collect()
        };
        for pool in cold.into_iter().filter(|p| p.stats().open == 0) {
            tokio::spawn(async move {
                let _ = pool.warm().await;
            });
        }
    }
}
