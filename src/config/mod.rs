//! `Config`: the parsed, typed settings of every component. `cli` builds
//! it from flags, `--config` TOML and `CCNPROXY_*` variables; every default
//! lives here. Each component's constructor takes only its own `*Config`.

pub mod cli;
pub mod manual;
mod print;
pub mod redact;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::origin::Origin;

/// All settings, one part per component.
#[derive(Debug, Clone)]
pub struct Config {
    /// Client-facing socket and timeouts.
    pub listener: ListenerConfig,
    /// Where requests go.
    pub route: RouteConfig,
    /// Which origins may be reached.
    pub policy: PolicyConfig,
    /// Upstream connections.
    pub pool: PoolConfig,
    /// Name resolution for origins.
    pub dns: DnsConfig,
    /// Upstream TLS trust.
    pub tls: TlsConfig,
    /// Access-log format and destination.
    pub access_log: AccessLogConfig,
    /// SigV4 re-signing.
    pub sign: SignConfig,
    /// Metrics and per-client accounting.
    pub metrics: MetricsConfig,
    /// Limits on what clients may send.
    pub limits: LimitsConfig,
    /// Process lifecycle.
    pub process: ProcessConfig,
    /// Client identity behind a load balancer.
    pub identity: IdentityConfig,
    /// What `/.api/http-stats` times (`--stsize`, `--spfactor`).
    pub http_stats: HttpStatsConfig,
}

/// Client-facing listener.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Address to bind (`-l` and `-p`).
    pub addr: SocketAddr,
    /// Time allowed to receive a request head, counted from when the
    /// connection starts waiting for one (slow headers and idle keep-alive
    /// connections are cut after it).
    pub read_timeout: Duration,
    /// Longest wait between reads of a client's request body
    /// (`--body-timeout`).
    pub body_timeout: Duration,
    /// Time allowed for writing a response to the client.
    pub write_timeout: Duration,
    /// Concurrent client connections at most; beyond it new ones get 503.
    pub max_client_conns: usize,
    /// Serve the admin endpoints here instead of (as well as) the main port.
    pub metrics_listen: Option<SocketAddr>,
    /// Connections to `metrics_listen` at once (`--max-admin-conns`).
    pub max_admin_conns: usize,
}

/// Routing settings.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// `--upstream`: fixed origin for requests no other rule claims.
    pub upstream: Option<Origin>,
    /// `--https-upgrade` host patterns: `http://` targets and plain Hosts that
    /// match go to `https://host:443`.
    pub https_upgrade: Vec<String>,
}

/// Host patterns and address guard.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Target names that may be reached (glob, `*` = any).
    pub allow_host: Vec<String>,
    /// Target names refused even when allowed.
    pub deny_host: Vec<String>,
    /// Non-public address ranges that may be reached anyway.
    pub allow_cidr: Vec<IpNet>,
    /// Customer-owned names under the AWS domains (EC2 instances, load
    /// balancers): refused unless an `--allow-host` pattern names them
    /// specifically (or is `*`).
    pub customer_hosts: Vec<String>,
    /// Ports a proxied request may reach.
    pub request_ports: Vec<PortRange>,
    /// Ports a CONNECT tunnel may reach.
    pub connect_ports: Vec<PortRange>,
}

/// An inclusive range of ports (`--allow-port 8443`, `8000-8999`, `*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port of the range.
    pub first: u16,
    /// Last port of the range (equal to `first` for one port).
    pub last: u16,
}

impl PortRange {
    /// One port.
    pub const fn one(port: u16) -> Self {
        PortRange {
            first: port,
            last: port,
        }
    }

    /// True when `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.first, self.last) {
            (0, u16::MAX) => f.write_str("*"),
            (a, b) if a == b => write!(f, "{a}"),
            (a, b) => write!(f, "{a}-{b}"),
        }
    }
}

/// The upstream pool.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Idle HTTP/1.1 connections kept per origin at most (`-c`); `None`
    /// keeps every connection that was busy, up to `max_conns_per_host`.
    pub keepalive_conns: Option<usize>,
    /// Open HTTP/1.1 connections per origin at most (0 = unlimited).
    pub max_conns_per_host: usize,
    /// How long a request may wait for a connection or stream.
    pub wait_timeout: Duration,
    /// Idle connections are closed after this.
    pub idle_timeout: Duration,
    /// Connections are retired after this age.
    pub max_conn_lifetime: Duration,
    /// HTTP/2 connections per origin at most.
    pub h2_conns: usize,
    /// PING idle HTTP/2 connections this often.
    pub h2_ping_interval: Duration,
    /// Time to wait for a response head (`--proxy-read-timeout`).
    pub response_timeout: Duration,
    /// Time allowed for TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// Origins to connect to at start and keep warm.
    pub prewarm: Vec<Origin>,
    /// A connect not done after this gets a second attempt in parallel to
    /// another address (zero: one attempt at a time).
    pub connect_race_delay: Duration,
    /// How long an address whose connect failed is first left out.
    pub eject_backoff: Duration,
    /// The longest an address is left out (the back-off doubles up to it).
    pub eject_backoff_max: Duration,
    /// An origin's state (pool, DNS answer, metric series) is removed after
    /// this long without a request and with no request in flight.
    pub origin_idle_ttl: Duration,
    /// Origins with state at once at most; past it the least recently used
    /// idle one is removed, or the request gets 503 if none is idle.
    pub max_origins: usize,
}

/// One `--resolve host:port:addr` override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOverride {
    /// Host name, lowercase.
    pub host: String,
    /// Port the override applies to.
    pub port: u16,
    /// Addresses to connect to; a port of 0 means the origin's own port.
    /// (`--resolve host:443:127.0.0.1:8443` pins both, a ccnproxy extension.)
    pub addrs: Vec<SocketAddr>,
}

/// Name resolution.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// `--dns-server`: use this server instead of the system configuration.
    pub server: Option<SocketAddr>,
    /// `--resolve` overrides; they win over DNS.
    pub resolve: Vec<ResolveOverride>,
    /// Records are kept at least this long.
    pub min_ttl: Duration,
    /// A failed refresh keeps using the last answer this long.
    pub stale_grace: Duration,
}

/// Upstream TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// Extra trusted roots (PEM), on top of the system ones.
    pub ca_file: Option<PathBuf>,
}

/// Where access-log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDestination {
    /// Standard error (default).
    Stderr,
    /// Standard output.
    Stdout,
    /// Nowhere.
    None,
    /// Rotated files in this directory.
    Dir(PathBuf),
    /// An embedder's writer (tests use it to read lines in memory); no flag
    /// selects it.
    Writer(LogWriter),
}

/// A writer that receives access-log lines in whole-line batches, for an
/// embedder of the library. Clones share the writer.
#[derive(Clone)]
pub struct LogWriter(std::sync::Arc<std::sync::Mutex<Box<dyn std::io::Write + Send>>>);

impl LogWriter {
    /// Wraps `out`; each write gets one or more complete lines.
    pub fn new(out: impl std::io::Write + Send + 'static) -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new(Box::new(out))))
    }

    /// Writes one batch of whole lines and flushes.
    pub fn write_batch(&self, batch: &[u8]) -> std::io::Result<()> {
        let mut out = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        out.write_all(batch)?;
        out.flush()
    }
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogWriter")
    }
}

/// Two handles are equal when they share one writer.
impl PartialEq for LogWriter {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LogWriter {}

/// Access log.
#[derive(Debug, Clone)]
pub struct AccessLogConfig {
    /// Destination.
    pub destination: LogDestination,
    /// Preset name or custom `mod_log_config` string.
    pub format: String,
    /// Rotated files kept.
    pub rotate_count: usize,
    /// A new file starts this often.
    pub rotate_interval: Duration,
    /// Lines waiting for the writer at most (`--access-log-queue-lines`).
    pub queue_lines: usize,
    /// Bytes held by lines waiting for the writer at most
    /// (`--access-log-queue-bytes`; a record's size is estimated).
    pub queue_bytes: u64,
    /// What happens to a line when the queue is full.
    pub when_full: WhenFull,
}

/// `--access-log-when-full`: what a request does when the access-log queue
/// is full (the destination is slower than the traffic, or stalled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Wait for room: nothing is lost, and a stalled destination stalls
    /// requests as they finish.
    Block,
    /// Drop the line, count it and warn (rate-limited).
    Drop,
}

/// SigV4 re-signing (`--sign`).
#[derive(Debug, Clone)]
pub struct SignConfig {
    /// Re-sign requests at all.
    pub enabled: bool,
    /// Origins (host patterns) to sign; empty = all AWS names.
    pub hosts: Vec<String>,
    /// Largest non-S3 body hashed for signing; beyond it 413.
    pub max_body: u64,
    /// `--sign-allow-clients`: only clients in these ranges have requests
    /// signed (empty: any client, which only a loopback listener allows).
    pub allow_clients: Vec<IpNet>,
    /// `--sign-client-credentials`: the keys clients sign with; the proxy
    /// checks each client's signature before signing with its role.
    pub client_credentials: Option<PathBuf>,
    /// `--sign-services`: signing names signed for (`*`: all).
    pub services: Vec<String>,
}

/// How a client is named in per-client accounting and `--rate-limit`
/// budgets. A key id the proxy has not verified is a claim: no mode uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKey {
    /// The verified client (name, else access key id), else the client address.
    Auto,
    /// The AWS account of the verified client's access key id, else the
    /// client address.
    Account,
    /// The value of this request header, else the client address.
    Header(http::HeaderName),
    /// The AWS VPC endpoint id of a PROXY v2 header, else the client address.
    Vpce,
}

/// Metrics.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Client key source.
    pub client_key: ClientKey,
    /// Distinct client keys tracked; the rest count as `other`.
    pub max_client_keys: usize,
    /// A client key's series are dropped this long after its last request.
    pub client_series_ttl: Duration,
}

/// Limits on client input.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Request head size at most (431 beyond).
    pub max_header_bytes: usize,
    /// Header count at most (431 beyond).
    pub max_headers: usize,
    /// Request-target length at most (414 beyond).
    pub max_uri_bytes: usize,
    /// Request-body bytes held in memory at once, all requests together
    /// (`--sign` hashing); a request that would pass it gets 503.
    pub max_buffered_bytes: u64,
    /// Requests per `rate_period` per client key (0 = unlimited).
    pub rate_limit: u32,
    /// The period `rate_limit` counts over (`--rate-limit 5/m`: one minute).
    pub rate_period: Duration,
    /// Burst allowed above the rate.
    pub rate_burst: u32,
    /// `--rate-limit-redis`: share the budget through this Redis URL.
    pub rate_limit_redis: Option<String>,
    /// A Redis call slower than this fails open to the local buckets.
    pub rate_limit_redis_timeout: Duration,
}

/// Process lifecycle.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// In-flight requests get this long after SIGTERM.
    pub shutdown_timeout: Duration,
    /// Written at start, removed at exit.
    pub pid_file: Option<PathBuf>,
    /// After SIGTERM, keep accepting and serving this long (with `/healthz`
    /// at 503) before the grace time starts; 0 = stop accepting at once.
    pub drain_delay: Duration,
}

/// Client identity behind a load balancer (`identity`).
#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    /// `--proxy-protocol`: `trust_proxy` peers open each connection with a
    /// PROXY v1 or v2 header.
    pub proxy_protocol: bool,
    /// Peers whose PROXY header is believed (and required).
    pub trust_proxy: Vec<IpNet>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trust_forwarded: Vec<IpNet>,
}

/// `/.api/http-stats` response times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpStatsConfig {
    /// Time the last this many sampled requests, as chocon did (`--stsize`);
    /// 0 = the requests of the last minute.
    pub sample_size: usize,
    /// With `sample_size`, one request in this many is sampled (`--spfactor`).
    pub sampling_factor: u32,
}

/// Names under the AWS domains that belong to customers, not to AWS APIs:
/// EC2 instances' public names and load balancers (Classic and Application).
/// The default policy refuses them; `*.compute.amazonaws.com` also covers
/// deeper names such as `ec2-1-2-3-4.us-west-2.compute.amazonaws.com`.
pub const CUSTOMER_HOST_PATTERNS: [&str; 6] = [
    "*.compute.amazonaws.com",
    "*.compute-1.amazonaws.com",
    "*.elb.amazonaws.com",
    "*.compute.amazonaws.com.cn",
    "*.compute-1.amazonaws.com.cn",
    "*.elb.amazonaws.com.cn",
];

/// The services (SigV4 signing names) `--sign` signs for by default: the
/// data plane people put behind an accelerator. Identity and account
/// control (iam, sts, sso, sso-oauth, organizations, account,
/// identitystore, …) are left out, and so is `execute-api` (every API
/// Gateway endpoint is a customer's).
pub const SIGN_SERVICES: [&str; 22] = [
    "s3",
    "s3express",
    "s3-object-lambda",
    "s3-outposts",
    "dynamodb",
    "sqs",
    "sns",
    "kinesis",
    "firehose",
    "lambda",
    "logs",
    "monitoring",
    "events",
    "states",
    "kms",
    "secretsmanager",
    "ssm",
    "ecr",
    "bedrock",
    "glue",
    "athena",
    "xray",
];

/// Ports a proxied request may reach by default.
pub const REQUEST_PORTS: [PortRange; 2] = [PortRange::one(443), PortRange::one(80)];

/// Ports a CONNECT tunnel may reach by default.
pub const CONNECT_PORTS: [PortRange; 1] = [PortRange::one(443)];

/// AWS names that are allowed and upgraded to HTTPS by default.
pub const AWS_PATTERNS: [&str; 4] = [
    "*.amazonaws.com",
    "*.amazonaws.com.cn",
    "*.api.aws",
    "*.on.aws",
];

impl Default for Config {
    fn default() -> Self {
        let aws: Vec<String> = AWS_PATTERNS.iter().map(|p| p.to_string()).collect();
        Config {
            listener: ListenerConfig {
                addr: SocketAddr::from(([0, 0, 0, 0], 3000)),
                read_timeout: Duration::from_secs(30),
                body_timeout: Duration::from_secs(60),
                write_timeout: Duration::from_secs(90),
                max_client_conns: 50_000,
                metrics_listen: None,
                max_admin_conns: 64,
            },
            route: RouteConfig {
                upstream: None,
                https_upgrade: aws.clone(),
            },
            policy: PolicyConfig {
                allow_host: aws,
                deny_host: Vec::new(),
                allow_cidr: Vec::new(),
                customer_hosts: CUSTOMER_HOST_PATTERNS
                    .iter()
                    .map(|p| p.to_string())
                    .collect(),
                request_ports: REQUEST_PORTS.to_vec(),
                connect_ports: CONNECT_PORTS.to_vec(),
            },
            pool: PoolConfig {
                keepalive_conns: None,
                max_conns_per_host: 0,
                wait_timeout: Duration::from_secs(30),
                idle_timeout: Duration::from_secs(90),
                max_conn_lifetime: Duration::from_secs(600),
                h2_conns: 2,
                h2_ping_interval: Duration::from_secs(30),
                response_timeout: Duration::from_secs(60),
                connect_timeout: Duration::from_secs(10),
                prewarm: Vec::new(),
                connect_race_delay: Duration::from_millis(250),
                eject_backoff: Duration::from_secs(5),
                eject_backoff_max: Duration::from_secs(120),
                origin_idle_ttl: Duration::from_secs(300),
                max_origins: 4096,
            },
            dns: DnsConfig {
                server: None,
                resolve: Vec::new(),
                min_ttl: Duration::from_secs(1),
                stale_grace: Duration::from_secs(300),
            },
            tls: TlsConfig::default(),
            access_log: AccessLogConfig {
                destination: LogDestination::Stderr,
                format: "aws".to_owned(),
                rotate_count: 30,
                rotate_interval: Duration::from_secs(1440 * 60),
                queue_lines: 65_536,
                queue_bytes: 32 << 20,
                when_full: WhenFull::Block,
            },
            sign: SignConfig {
                enabled: false,
                hosts: Vec::new(),
                max_body: 10 << 20,
                allow_clients: Vec::new(),
                client_credentials: None,
                services: SIGN_SERVICES.iter().map(|s| s.to_string()).collect(),
            },
            metrics: MetricsConfig {
                client_key: ClientKey::Auto,
                max_client_keys: 1000,
                client_series_ttl: Duration::from_secs(600),
            },
            limits: LimitsConfig {
                max_header_bytes: 64 << 10,
                max_headers: 100,
                max_uri_bytes: 8 << 10,
                max_buffered_bytes: 256 << 20,
                rate_limit: 0,
                rate_period: Duration::from_secs(1),
                rate_burst: 0,
                rate_limit_redis: None,
                rate_limit_redis_timeout: Duration::from_millis(50),
            },
            process: ProcessConfig {
                shutdown_timeout: Duration::from_secs(3600),
                pid_file: None,
                drain_delay: Duration::ZERO,
            },
            identity: IdentityConfig::default(),
            http_stats: HttpStatsConfig {
                sample_size: 0,
                sampling_factor: 3,
            },
        }
    }
}
