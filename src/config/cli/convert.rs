//! `Args` → `Config`: every flag to its component's settings, with the
//! checks clap cannot make (patterns compile, flags that need each other).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{Args, ConfigError};
use crate::config::{Config, LogDestination, redact};
use crate::origin::Origin;

impl Args {
    /// Turns typed flags into `Config`, checking what clap cannot.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let invalid = ConfigError::Invalid;
        let mut c = Config::default();
        c.listener.addr = SocketAddr::new(self.listen, self.port);
        c.listener.read_timeout = self.read_timeout;
        c.listener.write_timeout = self.write_timeout;
        c.listener.body_timeout = self.body_timeout;
        c.listener.max_client_conns = self.max_client_conns.max(1);
        c.listener.metrics_listen = self.metrics_listen;
        c.listener.max_admin_conns = self.max_admin_conns.max(1);

        // chocon's defaults are empty strings: `--upstream=` means none.
        if let Some(url) = self.upstream.as_deref().filter(|u| !u.is_empty()) {
            c.route.upstream =
                Some(Origin::from_url(url).map_err(|e| invalid(format!("--upstream: {e}")))?);
        }
        if !self.https_upgrade.is_empty() {
            c.route.https_upgrade = self.https_upgrade;
        }
        crate::pattern::HostPatterns::parse(&c.route.https_upgrade)
            .map_err(|e| invalid(format!("--https-upgrade: {e}")))?;

        if !self.allow_host.is_empty() {
            c.policy.allow_host = self.allow_host;
        }
        c.policy.deny_host = self.deny_host;
        c.policy.allow_cidr = self.allow_cidr;
        crate::pattern::HostPatterns::parse(&c.policy.allow_host)
            .map_err(|e| invalid(format!("--allow-host: {e}")))?;
        crate::pattern::HostPatterns::parse(&c.policy.deny_host)
            .map_err(|e| invalid(format!("--deny-host: {e}")))?;

        c.pool.keepalive_conns = self.keepalive_conns;
        c.pool.max_conns_per_host = self.max_conns_per_host;
        c.pool.wait_timeout = self.pool_wait_timeout;
        c.pool.idle_timeout = self.idle_timeout;
        c.pool.max_conn_lifetime = self.max_conn_lifetime;
        if self.h2_conns == 0 {
            return Err(invalid("--h2-conns must be at least 1".into()));
        }
        c.pool.h2_conns = self.h2_conns;
        c.pool.h2_ping_interval = self.h2_ping_interval;
        c.pool.response_timeout = self.proxy_read_timeout;
        c.pool.connect_timeout = self.connect_timeout;
        c.pool.connect_race_delay = self.connect_race_delay;
        c.pool.eject_backoff = self.eject_backoff;
        c.pool.eject_backoff_max = self.eject_backoff_max.max(self.eject_backoff);
        c.pool.prewarm = self
            .prewarm
            .iter()
            .map(|u| Origin::from_url(u).map_err(|e| invalid(format!("--prewarm: {e}"))))
            .collect::<Result<_, _>>()?;

        c.dns.server = self.dns_server;
        c.dns.resolve = self.resolve;
        c.dns.min_ttl = self.dns_min_ttl;
        c.tls.ca_file = self.ca_file;

        c.access_log.destination = match self.access_log_dir.as_str() {
            "" | "stderr" => LogDestination::Stderr,
            "stdout" => LogDestination::Stdout,
            "none" => LogDestination::None,
            dir => LogDestination::Dir(PathBuf::from(dir)),
        };
        c.access_log.format = self.access_log_format;
        c.access_log.rotate_count = self.access_log_rotate;
        c.access_log.rotate_interval = match self.access_log_rotate_secs {
            Some(s) => Duration::from_secs(s.max(1)),
            None => Duration::from_secs(self.access_log_rotate_time.max(1) * 60),
        };

        c.sign.enabled = self.sign;
        c.sign.hosts = self.sign_hosts;
        c.sign.max_body = self.sign_max_body;
        c.sign.allow_clients = self.sign_allow_clients;
        c.sign.client_credentials = self.sign_client_credentials;
        if !self.sign_services.is_empty() {
            c.sign.services = self.sign_services;
        }
        crate::pattern::HostPatterns::parse(&c.sign.hosts)
            .map_err(|e| invalid(format!("--sign-hosts: {e}")))?;

        c.metrics.client_key = self.client_key;
        c.metrics.max_client_keys = self.max_client_keys;
        c.metrics.client_series_ttl = self.client_series_ttl.max(Duration::from_secs(1));
        c.limits.max_header_bytes = self.max_header_bytes.max(1024);
        c.limits.max_buffered_bytes = self.max_buffered_bytes;
        c.limits.rate_limit = self.rate_limit.count;
        c.limits.rate_period = self.rate_limit.per;
        c.limits.rate_burst = self.rate_burst;
        c.process.shutdown_timeout = self.shutdown_timeout;
        if self.proxy_protocol && self.trust_proxy.is_empty() {
            return Err(invalid(
                "--proxy-protocol needs --trust-proxy CIDR (the balancers' addresses)".into(),
            ));
        }
        c.identity.proxy_protocol = self.proxy_protocol;
        c.identity.trust_proxy = self.trust_proxy;
        c.identity.trust_forwarded = self.trust_forwarded;
        c.process.pid_file = self.pid_file.filter(|p| !p.as_os_str().is_empty());
        c.http_stats.sample_size = self.stsize;
        c.http_stats.sampling_factor = self.spfactor;
        c.process.drain_delay = self.drain_delay;
        if let Some(url) = &self.rate_limit_redis
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(invalid(format!(
                "--rate-limit-redis {:?}: want redis://HOST:PORT[/DB] or rediss://…",
                redact::url(url)
            )));
        }
        if self.rate_limit_redis.is_some() && self.rate_limit.count == 0 {
            return Err(invalid("--rate-limit-redis needs --rate-limit".into()));
        }
        c.limits.rate_limit_redis = self.rate_limit_redis;
        c.limits.rate_limit_redis_timeout = self.rate_limit_redis_timeout;
        c.access_log.queue_lines = self.access_log_queue_lines.max(1);
        c.access_log.queue_bytes = self.access_log_queue_bytes.max(1);
        c.access_log.when_full = self.access_log_when_full;
        c.pool.origin_idle_ttl = self.origin_idle_ttl;
        c.pool.max_origins = self.max_origins.max(1);
        c.policy.request_ports.extend(&self.allow_port);
        c.policy.connect_ports.extend(&self.allow_port);
        Ok(c)
    }
}
