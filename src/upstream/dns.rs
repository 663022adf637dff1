//! Name resolution for origins: `--resolve` overrides first, IP literals
//! as they are, everything else through hickory-resolver (the system
//! configuration or `--dns-server`). Each answer carries `valid_until` from the
//! record TTL, floored by `--dns-min-ttl`; the pool decides when to refresh.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use tokio::time::Instant;

use crate::config::DnsConfig;

/// A lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The resolver answered with an error (NXDOMAIN, timeout, …).
    #[error("looking up {host}")]
    Lookup {
        /// The name looked up.
        host: String,
        /// The resolver's error.
        #[source]
        source: hickory_resolver::net::NetError,
    },
    /// The answer held no address.
    #[error("{0} has no address")]
    NoAddress(String),
}

/// Resolved addresses of one origin and how long they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Addresses to connect to, in the order received.
    pub addrs: Vec<SocketAddr>,
    /// When to ask again; `None` for overrides and IP literals (never).
    pub valid_until: Option<Instant>,
}

/// The resolver.
pub struct Dns {
    resolver: TokioResolver,
    /// The same configuration without a cache, for refreshes.
    uncached: TokioResolver,
    overrides: HashMap<(String, u16), Vec<SocketAddr>>,
    min_ttl: Duration,
}

impl Dns {
    /// Builds the resolver from `config`.
    pub fn new(config: &DnsConfig) -> Result<Self, hickory_resolver::net::NetError> {
        let resolver = build_resolver(config, true)?;
        let uncached = build_resolver(config, false)?;
        let overrides = config
            .resolve
            .iter()
            .map(|r| ((r.host.clone(), r.port), r.addrs.clone()))
            .collect::<HashMap<_, _>>();
        Ok(Dns {
            resolver,
            uncached,
            overrides,
            min_ttl: config.min_ttl,
        })
    }

    /// Resolves `host:port` (the resolver may answer from its cache).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Answer, DnsError> {
        self.lookup(&self.resolver, host, port).await
    }

    /// Resolves `host:port` asking the DNS server, never the cache: a
    /// refresh wants what the server says now.
    pub async fn resolve_uncached(&self, host: &str, port: u16) -> Result<Answer, DnsError> {
        self.lookup(&self.uncached, host, port).await
    }

    async fn lookup(
        &self,
        resolver: &TokioResolver,
        host: &str,
        port: u16,
    ) -> Result<Answer, DnsError> {
        if let Some(addrs) = self.overrides.get(&(host.to_owned(), port)) {
            let addrs = addrs
                .iter()
                .map(|a| {
                    if a.port() == 0 {
                        SocketAddr::new(a.ip(), port)
                    } else {
                        *a
                    }
                })
                .collect();
            return Ok(Answer {
                addrs,
                valid_until: None,
            });
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Answer {
                addrs: vec![SocketAddr::new(ip, port)],
                valid_until: None,
            });
        }
        // A trailing dot keeps search domains out of it: origins are absolute names.
        let fqdn = format!("{host}.");
        let lookup =
            resolver
                .lookup_ip(fqdn.as_str())
                .await
                .map_err(|source| DnsError::Lookup {
                    host: host.to_owned(),
                    source,
                })?;
        let addrs: Vec<SocketAddr> = lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        if addrs.is_empty() {
            return Err(DnsError::NoAddress(host.to_owned()));
        }
        let until = Instant::from_std(lookup.valid_until());
        let floor = Instant::now() + self.min_ttl;
        Ok(Answer {
            addrs,
            valid_until: Some(until.max(floor)),
        })
    }
}

/// A resolver for `config` (`--dns-server`, or the system configuration),
/// with or without hickory's answer cache.
fn build_resolver(
    config: &DnsConfig,
    cached: bool,
) -> Result<TokioResolver, hickory_resolver::net::NetError> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = match config.server {
        Some(server) => {
            let mut ns = NameServerConfig::udp_and_tcp(server.ip());
            for conn in &mut ns.connections {
                conn.port = server.port();
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                provider,
            )
        }
        None => TokioResolver::builder(provider)?,
    };
    let opts = builder.options_mut();
    opts.positive_min_ttl = Some(config.min_ttl);
    opts.timeout = Duration::from_secs(3);
    opts.attempts = 2;
    if !cached {
        opts.cache_size = 0;
    }
    builder.build()
}
