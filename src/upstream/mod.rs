//! The upstream client behind one narrow interface: `Upstream::send(origin,
//! request)` → response and `Timing`. Inside: one `Pool` per origin
//! (`pool.rs`), connections (`conn.rs`), DNS (`dns.rs`), TLS (`tls.rs`),
//! per-address ejection after failed connects (`health.rs`).

mod conn;
pub mod dns;
pub mod health;
pub mod pool;
mod timing;
pub mod tls;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};

pub use conn::ConnectError;
pub use dns::DnsError;
pub use pool::{PoolStats, UpstreamBody};
pub use timing::{Protocol, Timing};

use crate::body::ProxyBody;
use crate::config::{DnsConfig, PoolConfig, TlsConfig};
use crate::policy::{Policy, PolicyError};
use crate::route::Origin;
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

/// All pools.
pub struct Upstream {
    shared: Arc<Shared>,
    pools: Mutex<HashMap<Origin, Arc<Pool>>>,
}

impl Upstream {
    /// Builds the client; starts the sweeper that closes idle connections.
    pub fn new(
        pool: &PoolConfig,
        dns: &DnsConfig,
        tls: &TlsConfig,
        policy: Arc<Policy>,
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
        });
        let upstream = Arc::new(Upstream {
            shared,
            pools: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&upstream);
        let every =
            (pool.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
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

    /// The pool of `origin`, created on first use.
    pub fn pool(&self, origin: &Origin) -> Arc<Pool> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pools.get(origin) {
            return p.clone();
        }
        let p = Arc::new(Pool::new(origin.clone(), self.shared.clone()));
        pools.insert(origin.clone(), p.clone());
        p
    }

    /// Sends `req` (origin-form URI, final headers) to `origin`.
    pub async fn send(
        &self,
        origin: &Origin,
        req: Request<ProxyBody>,
    ) -> Result<(Response<UpstreamBody>, Timing), UpstreamError> {
        self.pool(origin).send(req).await
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
            if let Err(err) = self.pool(origin).warm().await {
                tracing::warn!(%origin, error = &err as &dyn std::error::Error, "prewarm failed");
            }
        }
    }

    /// Every pool with its counters and a snapshot of its state.
    pub fn pools(&self) -> Vec<Arc<Pool>> {
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn sweep(self: &Arc<Self>) {
        let unused = Duration::from_secs(300).max(self.shared.config.idle_timeout);
        let prewarm = &self.shared.config.prewarm;
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain(|origin, pool| !pool.sweep(unused) || prewarm.contains(origin));
        let cold: Vec<Arc<Pool>> = prewarm
            .iter()
            .filter_map(|o| pools.get(o))
            .filter(|p| p.stats().open == 0)
            .cloned()
            .collect();
        drop(pools);
        for pool in cold {
            tokio::spawn(async move {
                let _ = pool.warm().await;
            });
        }
    }
}
