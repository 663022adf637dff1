//! Command line → `Config`. Flags are chocon's plus ccnproxy's own; each may
//! also come from `CCNPROXY_<FLAG>` (e.g. `CCNPROXY_MAX_CONNS_PER_HOST`) or
//! from a `--config FILE` TOML table whose keys are the long flag names.
//! Precedence: command line, then environment, then the file, then defaults.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};

use super::{ClientKey, Config, LogDestination, ResolveOverride};
use crate::origin::Origin;

/// ccnproxy: keeps warm TLS connections to AWS endpoints so each API call
/// costs one round trip.
#[derive(Debug, Parser)]
#[command(
    name = "ccnproxy",
    disable_version_flag = true,
    args_override_self = true
)]
pub struct Args {
    /// Read flags from this TOML file (keys are long flag names).
    #[arg(long, env = "CCNPROXY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(short = 'l', long, env = "CCNPROXY_LISTEN", default_value = "0.0.0.0")]
    pub listen: IpAddr,
    /// Port to listen on (0 = any free port).
    #[arg(short = 'p', long, env = "CCNPROXY_PORT", default_value_t = 3000)]
    pub port: u16,
    /// Access log: empty = stderr, `stdout`, `none`, or a directory with rotated files.
    #[arg(long, env = "CCNPROXY_ACCESS_LOG_DIR", default_value = "")]
    pub access_log_dir: String,
    /// Rotated access-log files kept (0 = keep every file).
    #[arg(long, env = "CCNPROXY_ACCESS_LOG_ROTATE", default_value_t = 30)]
    pub access_log_rotate: usize,
    /// Minutes between access-log rotations.
    #[arg(long, env = "CCNPROXY_ACCESS_LOG_ROTATE_TIME", default_value_t = 1440)]
    pub access_log_rotate_time: u64,
    /// Test aid: rotate every N seconds (overrides --access-log-rotate-time).
    #[arg(long, hide = true)]
    pub access_log_rotate_secs: Option<u64>,
    /// Access-log format: chocon, common, combined, aws, ltsv, json, or a mod_log_config string.
    #[arg(long, env = "CCNPROXY_ACCESS_LOG_FORMAT", default_value = "aws")]
    pub access_log_format: String,
    /// Print the version and exit.
    #[arg(short = 'v', long)]
    pub version: bool,
    /// Write the process id here at start; removed at exit.
    #[arg(long, env = "CCNPROXY_PID_FILE", value_parser = clap::builder::TypedValueParser::map(clap::builder::OsStringValueParser::new(), PathBuf::from))]
    pub pid_file: Option<PathBuf>,
    /// Idle HTTP/1.1 upstream connections kept per origin at most (default:
    /// every connection that was busy, up to --max-conns-per-host, each
    /// closed after --idle-timeout).
    #[arg(short = 'c', long, env = "CCNPROXY_KEEPALIVE_CONNS")]
    pub keepalive_conns: Option<usize>,
    /// Open HTTP/1.1 upstream connections per origin at most (0 = unlimited).
    #[arg(long, env = "CCNPROXY_MAX_CONNS_PER_HOST", default_value_t = 0)]
    pub max_conns_per_host: usize,
    /// Time to receive a request head, counted from when the connection starts
    /// waiting for one: cuts slow headers and idle keep-alive connections.
    #[arg(long, env = "CCNPROXY_READ_TIMEOUT", default_value = "30", value_parser = parse_duration)]
    pub read_timeout: Duration,
    /// Time to write a response to the client.
    #[arg(long, env = "CCNPROXY_WRITE_TIMEOUT", default_value = "90", value_parser = parse_duration)]
    pub write_timeout: Duration,
    /// Time to wait for the origin's response head; then 504.
    #[arg(long, env = "CCNPROXY_PROXY_READ_TIMEOUT", default_value = "60", value_parser = parse_duration)]
    pub proxy_read_timeout: Duration,
    /// Grace time for in-flight requests after SIGTERM/SIGINT.
    #[arg(long, env = "CCNPROXY_SHUTDOWN_TIMEOUT", default_value = "1h", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Send every request without a route to this origin (`http(s)://host[:port]`).
    #[arg(long, env = "CCNPROXY_UPSTREAM")]
    pub upstream: Option<String>,
    /// Extra trusted CA certificates (PEM) for upstream TLS.
    #[arg(long, env = "CCNPROXY_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Target names that may be reached (repeatable; `*` = any). Default: the AWS domains.
    #[arg(
        long = "allow-host",
        env = "CCNPROXY_ALLOW_HOST",
        value_delimiter = ','
    )]
    pub allow_host: Vec<String>,
    /// Target names refused even when allowed (repeatable).
    #[arg(long = "deny-host", env = "CCNPROXY_DENY_HOST", value_delimiter = ',')]
    pub deny_host: Vec<String>,
    /// Non-public address ranges that may be reached anyway (repeatable), e.g. 127.0.0.0/8.
    #[arg(
        long = "allow-cidr",
        env = "CCNPROXY_ALLOW_CIDR",
        value_delimiter = ','
    )]
    pub allow_cidr: Vec<ipnet::IpNet>,
    /// Pin a name: `HOST:PORT:ADDR[,ADDR…]`; ADDR may carry its own port (repeatable).
    #[arg(long = "resolve", env = "CCNPROXY_RESOLVE", value_parser = parse_resolve)]
    pub resolve: Vec<ResolveOverride>,
    /// Use this DNS server (`ADDR:PORT`) instead of the system configuration.
    #[arg(long, env = "CCNPROXY_DNS_SERVER")]
    pub dns_server: Option<SocketAddr>,
    /// DNS answers are kept at least this long.
    #[arg(long, env = "CCNPROXY_DNS_MIN_TTL", default_value = "1s", value_parser = parse_duration)]
    pub dns_min_ttl: Duration,
    /// Plain `http://` targets and plain Hosts matching these go to https://host:443 (repeatable).
    #[arg(
        long = "https-upgrade",
        env = "CCNPROXY_HTTPS_UPGRADE",
        value_delimiter = ','
    )]
    pub https_upgrade: Vec<String>,
    /// How long a request waits for a free upstream connection; then 503.
    #[arg(long, env = "CCNPROXY_POOL_WAIT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub pool_wait_timeout: Duration,
    /// Idle upstream connections are closed after this.
    #[arg(long, env = "CCNPROXY_IDLE_TIMEOUT", default_value = "90s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Upstream connections are retired after this age.
    #[arg(long, env = "CCNPROXY_MAX_CONN_LIFETIME", default_value = "10m", value_parser = parse_duration)]
    pub max_conn_lifetime: Duration,
    /// HTTP/2 connections per origin at most.
    #[arg(long, env = "CCNPROXY_H2_CONNS", default_value_t = 2)]
    pub h2_conns: usize,
    /// PING idle HTTP/2 connections this often.
    #[arg(long, env = "CCNPROXY_H2_PING_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub h2_ping_interval: Duration,
    /// Time allowed for TCP connect plus TLS handshake.
    #[arg(long, env = "CCNPROXY_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Open connections to this origin at start and keep one warm (repeatable).
    #[arg(long, env = "CCNPROXY_PREWARM", value_delimiter = ',')]
    pub prewarm: Vec<String>,
    /// Re-sign requests with the proxy's own AWS credentials (SigV4).
    #[arg(long, env = "CCNPROXY_SIGN")]
    pub sign: bool,
    /// Only re-sign requests to these origins (repeatable; default: the AWS domains).
    #[arg(
        long = "sign-hosts",
        env = "CCNPROXY_SIGN_HOSTS",
        value_delimiter = ','
    )]
    pub sign_hosts: Vec<String>,
    /// Largest non-S3 body hashed for re-signing (bytes); larger gets 413.
    #[arg(long, env = "CCNPROXY_SIGN_MAX_BODY", default_value_t = 10 << 20)]
    pub sign_max_body: u64,
    /// Serve /metrics, /healthz and /.api/* on this address too.
    #[arg(long, env = "CCNPROXY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Per-client accounting key: `auto` (SigV4 access key, else client address), `vpce` (PROXY v2 VPC endpoint, else client address) or `header:NAME`.
    #[arg(long, env = "CCNPROXY_CLIENT_KEY", default_value = "auto", value_parser = parse_client_key)]
    pub client_key: ClientKey,
    /// Distinct client keys tracked in metrics; the rest count as `other`.
    #[arg(long, env = "CCNPROXY_MAX_CLIENT_KEYS", default_value_t = 1000)]
    pub max_client_keys: usize,
    /// Concurrent client connections at most.
    #[arg(long, env = "CCNPROXY_MAX_CLIENT_CONNS", default_value_t = 50_000)]
    pub max_client_conns: usize,
    /// Requests per client key: `N` or `N/s` per second, `N/m` per minute (0 = unlimited).
    #[arg(long, env = "CCNPROXY_RATE_LIMIT", default_value = "0", value_parser = parse_rate)]
    pub rate_limit: Rate,
    /// Requests a client key may send at once on top of --rate-limit's N.
    #[arg(long, env = "CCNPROXY_RATE_BURST", default_value_t = 0)]
    pub rate_burst: u32,
    /// Largest request head (bytes); larger gets 431.
    #[arg(long, env = "CCNPROXY_MAX_HEADER_BYTES", default_value_t = 64 << 10)]
    pub max_header_bytes: usize,
    /// Diagnostics level (error, warn, info, debug, trace); RUST_LOG wins.
    #[arg(long, env = "CCNPROXY_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Diagnostics format: text or json.
    #[arg(long, env = "CCNPROXY_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Trusted peers (--trust-proxy) open each connection with a PROXY protocol v1 or v2 header.
    #[arg(long, env = "CCNPROXY_PROXY_PROTOCOL")]
    pub proxy_protocol: bool,
    /// Peers whose PROXY protocol header is believed and required (CIDR, repeatable).
    #[arg(
        long = "trust-proxy",
        env = "CCNPROXY_TRUST_PROXY",
        value_delimiter = ','
    )]
    pub trust_proxy: Vec<ipnet::IpNet>,
    /// Peers whose X-Forwarded-For is believed (CIDR, repeatable): the client is its right-most untrusted address.
    #[arg(
        long = "trust-forwarded",
        env = "CCNPROXY_TRUST_FORWARDED",
        value_delimiter = ','
    )]
    pub trust_forwarded: Vec<ipnet::IpNet>,
    /// A connect not done after this gets a parallel attempt to another address (0 = none).
    #[arg(long, env = "CCNPROXY_CONNECT_RACE_DELAY", default_value = "250ms", value_parser = parse_duration)]
    pub connect_race_delay: Duration,
    /// An address whose connect failed gets no new connections for this long (doubling).
    #[arg(long, env = "CCNPROXY_EJECT_BACKOFF", default_value = "5s", value_parser = parse_duration)]
    pub eject_backoff: Duration,
    /// The longest an address is left out after failed connects.
    #[arg(long, env = "CCNPROXY_EJECT_BACKOFF_MAX", default_value = "2m", value_parser = parse_duration)]
    pub eject_backoff_max: Duration,
    /// Print the effective configuration as a `--config` TOML file and exit.
    #[arg(long)]
    pub print_config: bool,
    /// /.api/http-stats times the last N sampled requests, as chocon (0 = the last minute).
    #[arg(long, env = "CCNPROXY_STSIZE", default_value_t = 0)]
    pub stsize: usize,
    /// With --stsize, one request in N is sampled (chocon's sampling factor).
    #[arg(long, env = "CCNPROXY_SPFACTOR", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub spfactor: u32,
    /// After SIGTERM, keep serving this long with /healthz at 503 (Connection: close, GOAWAY) before --shutdown-timeout starts.
    #[arg(long, env = "CCNPROXY_DRAIN_DELAY", default_value = "0", value_parser = parse_duration)]
    pub drain_delay: Duration,
    /// Share the --rate-limit budget with every replica using this Redis: redis://HOST:PORT[/DB] or rediss://.
    #[arg(long, env = "CCNPROXY_RATE_LIMIT_REDIS")]
    pub rate_limit_redis: Option<String>,
    /// A --rate-limit-redis call slower than this fails open to per-replica budgets.
    #[arg(long, env = "CCNPROXY_RATE_LIMIT_REDIS_TIMEOUT", default_value = "50ms", value_parser = parse_duration)]
    pub rate_limit_redis_timeout: Duration,
    /// Print shell completions or the man page instead of running.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What `ccnproxy SUBCOMMAND` prints instead of running the proxy.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to standard output.
    Man,
}

/// `--rate-limit`: `count` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period; 0 = no limit.
    pub count: u32,
    /// The period.
    pub per: Duration,
}

/// A flag or file problem, reported as one line at start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// clap refused the command line (also used for --help).
    #[error(transparent)]
    Clap(#[from] clap::Error),
    /// The `--config` file could not be read or parsed.
    #[error("config file {path}: {reason}")]
    File {
        /// The `--config` file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value parsed but makes no sense.
    #[error("{0}")]
    Invalid(String),
}

/// Parses the process arguments (with environment and `--config`) into
/// `Args`.
pub fn parse_args<I: IntoIterator<Item = OsString>>(argv: I) -> Result<Args, ConfigError> {
    Ok(Args::from_arg_matches(&matches(argv)?)?)
}

/// The effective settings for `argv` (command line, environment, `--config`
/// file, defaults) as a TOML file `--config` reads back (`--print-config`).
pub fn effective_toml<I: IntoIterator<Item = OsString>>(argv: I) -> Result<String, ConfigError> {
    Ok(super::print::toml(&Args::command(), &matches(argv)?))
}

/// clap's view of `argv` with the `--config` file merged below it.
fn matches<I: IntoIterator<Item = OsString>>(argv: I) -> Result<clap::ArgMatches, ConfigError> {
    let argv: Vec<OsString> = argv.into_iter().collect();
    let first = Args::command().try_get_matches_from(&argv)?;
    let Some(path) = first.get_one::<PathBuf>("config").cloned() else {
        return Ok(first);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let extra = toml_to_args(&text).map_err(|reason| ConfigError::File {
        path: path.display().to_string(),
        reason,
    })?;
    // File values go first so that the command line (and, through clap, the
    // environment for flags the file does not name) wins.
    let mut merged = vec![argv.first().cloned().unwrap_or_else(|| "ccnproxy".into())];
    let cmd = Args::command();
    for (key, value) in extra {
        let env_set = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()))
            .and_then(|a| a.get_env())
            .is_some_and(|e| std::env::var_os(e).is_some());
        if !env_set {
            merged.push(
                match value {
                    Some(value) => format!("--{key}={value}"),
                    None => format!("--{key}"),
                }
                .into(),
            );
        }
    }
    merged.extend(argv.into_iter().skip(1));
    Ok(cmd.try_get_matches_from(merged)?)
}

/// `key = value` pairs of a flat TOML table as long-flag arguments; arrays
/// repeat the flag, booleans become a bare flag (value `None`), or nothing
/// when false.
fn toml_to_args(text: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    let mut out = Vec::new();
    for (key, value) in table {
        let key = key.replace('_', "-");
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            _ => Err(format!("{key}: unsupported value")),
        };
        match &value {
            toml::Value::Array(items) => {
                for item in items {
                    out.push((key.clone(), Some(scalar(item)?)));
                }
            }
            toml::Value::Boolean(b) => {
                if *b {
                    out.push((key.clone(), None));
                }
            }
            v => out.push((key.clone(), Some(scalar(v)?))),
        }
    }
    Ok(out)
}

impl Args {
    /// Turns typed flags into `Config`, checking what clap cannot.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let invalid = ConfigError::Invalid;
        let mut c = Config::default();
        c.listener.addr = SocketAddr::new(self.listen, self.port);
        c.listener.read_timeout = self.read_timeout;
        c.listener.write_timeout = self.write_timeout;
        c.listener.max_client_conns = self.max_client_conns.max(1);
        c.listener.metrics_listen = self.metrics_listen;

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
        crate::pattern::HostPatterns::parse(&c.sign.hosts)
            .map_err(|e| invalid(format!("--sign-hosts: {e}")))?;

        c.metrics.client_key = self.client_key;
        c.metrics.max_client_keys = self.max_client_keys;
        c.limits.max_header_bytes = self.max_header_bytes.max(1024);
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
                "--rate-limit-redis {url:?}: want redis://HOST:PORT[/DB] or rediss://…"
            )));
        }
        if self.rate_limit_redis.is_some() && self.rate_limit.count == 0 {
            return Err(invalid("--rate-limit-redis needs --rate-limit".into()));
        }
        c.limits.rate_limit_redis = self.rate_limit_redis;
        c.limits.rate_limit_redis_timeout = self.rate_limit_redis_timeout;
        Ok(c)
    }
}

/// `30` (seconds, as chocon) or a human duration (`500ms`, `2s`, `1h`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}); use e.g. 30, 30s, 500ms, 1h"))
}

/// `N`, `N/s` (per second), `N/m` (per minute) or `N/h` (per hour).
fn parse_rate(s: &str) -> Result<Rate, String> {
    let bad = || format!("{s:?}: want N, N/s or N/m (requests per second or per minute)");
    let (count, unit) = s.split_once('/').unwrap_or((s, "s"));
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        _ => return Err(bad()),
    };
    Ok(Rate {
        count,
        per: Duration::from_secs(secs),
    })
}

/// `HOST:PORT:ADDR[,ADDR…]`, each ADDR an IP (`127.0.0.1`, `[::1]`) or an
/// IP with a port (`127.0.0.1:8443`, `[::1]:8443`).
fn parse_resolve(s: &str) -> Result<ResolveOverride, String> {
    let bad = || format!("{s:?}: want HOST:PORT:ADDR[,ADDR…] (ADDR may be IP:PORT)");
    let (host, rest) = s.split_once(':').ok_or_else(bad)?;
    let (port, addrs) = rest.split_once(':').ok_or_else(bad)?;
    let host = crate::origin::validate_host(host).map_err(|_| bad())?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let addrs = addrs
        .split(',')
        .map(|a| {
            if let Ok(ip) = a
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
            {
                return Ok(SocketAddr::new(ip, 0));
            }
            a.parse::<SocketAddr>().map_err(|_| bad())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ResolveOverride { host, port, addrs })
}

/// `auto`, `vpce` or `header:NAME`.
fn parse_client_key(s: &str) -> Result<ClientKey, String> {
    match s {
        "auto" => return Ok(ClientKey::Auto),
        "vpce" => return Ok(ClientKey::Vpce),
        _ => {}
    }
    let name = s
        .strip_prefix("header:")
        .ok_or_else(|| format!("{s:?}: want auto, vpce or header:NAME"))?;
    http::HeaderName::from_bytes(name.as_bytes())
        .map(ClientKey::Header)
        .map_err(|_| format!("{name:?} is not a header name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, String> {
        let argv = std::iter::once("ccnproxy")
            .chain(args.iter().copied())
            .map(OsString::from);
        parse_args(argv)
            .and_then(Args::into_config)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn chocon_flags_and_defaults() {
        let c = config(&[]).expect("defaults parse");
        assert_eq!(c.listener.addr, "0.0.0.0:3000".parse().expect("addr"));
        assert_eq!(c.pool.keepalive_conns, None);
        assert_eq!(c.listener.read_timeout, Duration::from_secs(30));
        assert_eq!(c.process.shutdown_timeout, Duration::from_secs(3600));
        let c = config(&[
            "-l",
            "127.0.0.1",
            "-p",
            "0",
            "-c",
            "8",
            "--read-timeout",
            "5",
            "--proxy-read-timeout",
            "250ms",
        ])
        .expect("flags parse");
        assert_eq!(c.listener.addr, "127.0.0.1:0".parse().expect("addr"));
        assert_eq!(c.pool.keepalive_conns, Some(8));
        assert_eq!(c.listener.read_timeout, Duration::from_secs(5));
        assert_eq!(c.pool.response_timeout, Duration::from_millis(250));
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["--port", "70000"][..],
            &["--upstream", "ftp://x"],
            &["--allow-host", "a.*.b"],
            &["--resolve", "nohostport"],
            &["--allow-cidr", "10.0.0.0/40"],
            &["--read-timeout", "soon"],
            &["--h2-conns", "0"],
        ] {
            assert!(config(args).is_err(), "{args:?} should be refused");
        }
    }

    #[test]
    fn resolve_accepts_pinned_ports() {
        let r = parse_resolve("s3.amazonaws.com:443:127.0.0.1:8443,[::1]").expect("valid");
        assert_eq!(r.host, "s3.amazonaws.com");
        assert_eq!(r.port, 443);
        assert_eq!(
            r.addrs,
            vec![
                "127.0.0.1:8443".parse().expect("addr"),
                "[::1]:0".parse().expect("addr")
            ]
        );
    }

    #[test]
    fn config_file_fills_in_below_the_command_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ccnproxy.toml");
        std::fs::write(
            &path,
            "port = 4000\nkeepalive_conns = 9\nallow-host = ['*.test', '*.example']\n",
        )
        .expect("write");
        let c = config(&["--config", path.to_str().expect("utf8"), "-c", "3"]).expect("parse");
        assert_eq!(c.listener.addr.port(), 4000);
        assert_eq!(c.pool.keepalive_conns, Some(3));
        assert_eq!(c.policy.allow_host, vec!["*.test", "*.example"]);
    }
}
