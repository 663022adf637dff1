//! Command line → `Config`. Flags are chocon's plus ccnproxy's own; each may
//! also come from `CCNPROXY_<FLAG>` (e.g. `CCNPROXY_MAX_CONNS_PER_HOST`) or
//! from a `--config FILE` TOML table whose keys are the long flag names.
//! Precedence: command line, then environment, then the file, then defaults.
//!
//! This file defines the flags (`Args`, whose field order is `--help`'s
//! order) and the entry points; the rest is split by concern:
//! - `file`: the `--config` TOML merged below the command line;
//! - `values`: the parsers of flag values (durations, rates, byte counts…);
//! - `convert`: `Args` → `Config`, with the checks clap cannot make.

mod convert;
mod file;
#[cfg(test)]
mod tests;
mod values;

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};

use super::{ClientKey, PortRange, ResolveOverride, WhenFull};
use file::matches;
use values::{
    parse_bytes, parse_client_key, parse_duration, parse_port_range, parse_rate, parse_resolve,
    parse_when_full,
};

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
    /// Longest wait between reads of a client's request body; then 408 (or
    /// the connection closed, if the response has begun).
    #[arg(long, env = "CCNPROXY_BODY_TIMEOUT", default_value = "60", value_parser = parse_duration)]
    pub body_timeout: Duration,
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
    /// Target names that may be reached (repeatable; `*` = any; an address or CIDR allows IP-literal hosts). Default: the AWS domains.
    #[arg(
        long = "allow-host",
        env = "CCNPROXY_ALLOW_HOST",
        value_delimiter = ','
    )]
    pub allow_host: Vec<String>,
    /// Target names refused even when allowed (repeatable).
    #[arg(long = "deny-host", env = "CCNPROXY_DENY_HOST", value_delimiter = ',')]
    pub deny_host: Vec<String>,
    /// Non-public address ranges origins may resolve to anyway (repeatable), e.g. 127.0.0.0/8; IP-literal hosts also need --allow-host.
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
    /// Services (SigV4 signing names) signed for, repeatable, `*` = all; others get 403. Default: a data-plane list without iam, sts, sso, organizations.
    #[arg(
        long = "sign-services",
        env = "CCNPROXY_SIGN_SERVICES",
        value_delimiter = ','
    )]
    pub sign_services: Vec<String>,
    /// Clients' access keys, `ACCESS_KEY_ID SECRET [NAME]` a line: a client's own SigV4 signature must match one before the proxy signs.
    #[arg(long, env = "CCNPROXY_SIGN_CLIENT_CREDENTIALS")]
    pub sign_client_credentials: Option<PathBuf>,
    /// Sign only for clients in these ranges (CIDR, repeatable; the address after --trust-proxy/--trust-forwarded); --sign on a listener that is not loopback needs it.
    #[arg(
        long = "sign-allow-clients",
        env = "CCNPROXY_SIGN_ALLOW_CLIENTS",
        value_delimiter = ','
    )]
    pub sign_allow_clients: Vec<ipnet::IpNet>,
    /// Serve /metrics, /healthz and /.api/* on this address too.
    #[arg(long, env = "CCNPROXY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Connections to --metrics-listen at once; beyond it, 503 and close.
    #[arg(long, env = "CCNPROXY_MAX_ADMIN_CONNS", default_value_t = 64)]
    pub max_admin_conns: usize,
    /// Per-client accounting and budget key: `auto` (verified client, else client address), `account` (verified client's AWS account, else client address), `vpce` (PROXY v2 VPC endpoint, else client address) or `header:NAME`.
    #[arg(long, env = "CCNPROXY_CLIENT_KEY", default_value = "auto", value_parser = parse_client_key)]
    pub client_key: ClientKey,
    /// Distinct client keys tracked in metrics; the rest count as `other`.
    #[arg(long, env = "CCNPROXY_MAX_CLIENT_KEYS", default_value_t = 1000)]
    pub max_client_keys: usize,
    /// A client key's series leave `/metrics` this long after its last request.
    #[arg(long, env = "CCNPROXY_CLIENT_SERIES_TTL", default_value = "10m", value_parser = parse_duration)]
    pub client_series_ttl: Duration,
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
    /// Request-body bytes held in memory at once by all requests (`--sign` hashing); past it 503 (`256MiB`, `1GiB`).
    #[arg(long, env = "CCNPROXY_MAX_BUFFERED_BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    pub max_buffered_bytes: u64,
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
    /// Also allow this target port, for requests and CONNECT (repeatable;
    /// `8443`, `8000-8999` or `*`). Default: requests 443 and 80, CONNECT 443.
    #[arg(
        long = "allow-port",
        env = "CCNPROXY_ALLOW_PORT",
        value_delimiter = ',',
        value_parser = parse_port_range
    )]
    pub allow_port: Vec<PortRange>,
    /// Access-log lines waiting for the writer at most.
    #[arg(
        long,
        env = "CCNPROXY_ACCESS_LOG_QUEUE_LINES",
        default_value_t = 65_536
    )]
    pub access_log_queue_lines: usize,
    /// Bytes held by access-log lines waiting for the writer at most (`32MiB`, `1000000`).
    #[arg(long, env = "CCNPROXY_ACCESS_LOG_QUEUE_BYTES", default_value = "32MiB", value_parser = parse_bytes)]
    pub access_log_queue_bytes: u64,
    /// When the access-log queue is full: `block` (the request waits; nothing is lost) or `drop`.
    #[arg(long, env = "CCNPROXY_ACCESS_LOG_WHEN_FULL", default_value = "block", value_parser = parse_when_full)]
    pub access_log_when_full: WhenFull,
    /// An origin's pool, DNS answer and metric series are removed after this long unused.
    #[arg(long, env = "CCNPROXY_ORIGIN_IDLE_TTL", default_value = "5m", value_parser = parse_duration)]
    pub origin_idle_ttl: Duration,
    /// Origins kept at once; past it the least recently used idle one is removed (none idle: 503).
    #[arg(long, env = "CCNPROXY_MAX_ORIGINS", default_value_t = 4096)]
    pub max_origins: usize,
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
