//! ccnproxy: a proxy that makes AWS API calls fast from anywhere.
//!
//! Modules, in the order a request meets them; each imports only from the
//! ones after it (`tests/module_graph.rs` checks that no two files import
//! each other):
//! - `config`: flags, `--config` TOML and `CCNPROXY_*` → `Config`.
//! - `listener` → `conn`: the client socket, one client connection;
//!   `identity`: who the client is behind a balancer (PROXY protocol,
//!   `X-Forwarded-For`); `idle_limit`: the head and idle limit of h2c and
//!   admin connections.
//! - `proxy`: the request path as phases (route → admit → authorize → build
//!   → send → respond) over a shared `proxy::Handler`; `tunnel` takes
//!   CONNECT, `admin` the proxy's own endpoints.
//! - `exchange`: one request's account and the body wrappers that keep it;
//!   it writes the access-log line exactly once.
//! - `route` and `pattern` decide where a request goes, `policy` whether it
//!   may, `rewrite` what its headers become, `sign` re-signs it,
//!   `ratelimit` is the per-client budget.
//! - `upstream`: the per-origin pool (DNS, TLS, HTTP/1.1 and HTTP/2) and
//!   `Timing`.
//! - `accesslog`, `metrics`: what operators see.
//! - Leaves, importing nothing of the proxy: `origin` (`Origin`, `Scheme`),
//!   `body`, `scope`, `shutdown`; `error` maps every failure to a status.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod accept_backoff;
pub mod accesslog;
pub mod admin;
pub mod admin_listener;
pub mod body;
pub mod buffer_budget;
pub mod config;
pub mod conn;
pub mod customer_host;
pub mod error;
pub mod exchange;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod idle_limit;
pub mod listener;
pub mod memory_trim;
pub mod metrics;
pub mod origin;
pub mod pattern;
pub mod policy;
pub mod proxy;
pub mod ratelimit;
pub mod rewrite;
pub mod route;
pub mod scope;
pub mod shutdown;
pub mod sign;
mod sys;
pub mod tunnel;
pub mod upstream;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use config::Config;

/// A startup failure; `main` prints it as one line and exits 2.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A setting is unusable.
    #[error("{0}")]
    Config(String),
    /// The listening socket.
    #[error("listening on {addr}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Upstream client setup (TLS roots, resolver).
    #[error(transparent)]
    Upstream(#[from] upstream::SetupError),
    /// Access-log setup.
    #[error("access log")]
    AccessLog(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Signing setup.
    #[error(transparent)]
    Sign(#[from] sign::SignError),
    /// Signal handlers.
    #[error("installing signal handlers")]
    Signals(#[source] std::io::Error),
    /// The pid file.
    #[error("writing pid file {path}")]
    PidFile {
        /// The pid file.
        path: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
}

/// Where a running proxy listens, known once its sockets are bound (ports
/// may be 0 in `Config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The client listener.
    pub addr: std::net::SocketAddr,
    /// The admin listener (`--metrics-listen`), if any.
    pub admin_addr: Option<std::net::SocketAddr>,
}

/// Runs the proxy until `shutdown` resolves, then drains and returns. Prints
/// the startup lines (`listening on ADDR`, `admin listening on ADDR`) on
/// stderr once the sockets are bound.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    run_reporting(config, shutdown, |bound| {
        // The startup lines: tests and scripts wait for them.
        eprintln!(
            "ccnproxy {} listening on {}",
            env!("CARGO_PKG_VERSION"),
            bound.addr
        );
        if let Some(admin) = bound.admin_addr {
            eprintln!(
                "ccnproxy {} admin listening on {admin}",
                env!("CARGO_PKG_VERSION")
            );
        }
    })
    .await
}

/// Like [`run`] for an embedder (or a test): instead of printing, hands the
/// bound addresses to `ready` once both listeners are bound and the pid file
/// is written, before the first connection is accepted.
pub async fn run_reporting(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
    ready: impl FnOnce(Bound) + Send,
) -> Result<(), RunError> {
    // Before the credential chain is asked: a proxy that would lend its role
    // to the network stops at once.
    sign::check_listener(&config.sign, config.listener.addr).map_err(RunError::Config)?;
    let policy = Arc::new(policy::Policy::new(&config.policy).map_err(RunError::Config)?);
    let buffered = buffer_budget::BufferBudget::new(config.limits.max_buffered_bytes);
    let upstream = upstream::Upstream::new(
        &config.pool,
        &config.dns,
        &config.tls,
        policy.clone(),
        buffered.clone(),
    )?;
    let signer = if config.sign.enabled {
        let signer = sign::Signer::new(&config.sign).await?;
        Some(Arc::new(signer.with_budget(buffered.clone())))
    } else {
        None
    };
    let (log, writer) = accesslog::AccessLog::start(&config.access_log)
        .map_err(|e| RunError::AccessLog(Box::new(e)))?;
    let mut metrics = metrics::Metrics::new(&config.metrics, upstream.clone())
        .with_http_sample(&config.http_stats);
    buffered.register(metrics.registry_mut());
    let front = listener::Front {
        identity: config.identity.clone(),
        counters: identity::Counters::register(metrics.registry_mut()),
    };
    let shared_limit = match &config.limits.rate_limit_redis {
        Some(url) => Some(
            ratelimit::Shared::new(
                url,
                config.limits.rate_limit,
                config.limits.rate_period,
                config.limits.rate_burst,
                config.limits.rate_limit_redis_timeout,
                ratelimit::SharedCounters::register(metrics.registry_mut()),
            )
            .map_err(|e| RunError::Config(error::one_line(&e)))?,
        ),
        None => None,
    };
    let metrics = Arc::new(metrics);
    let log_stats = log.stats_reader();
    metrics.set_log_stats(move || {
        let s = log_stats();
        metrics::LogStats {
            lines: s.lines_written,
            write_errors: s.write_failures,
            dropped: s.dropped,
            waited: s.waited,
            queued_lines: s.queued_lines,
            queued_bytes: s.queued_bytes,
        }
    });
    let draining = Arc::new(AtomicBool::new(false));
    let (stop_tunnels, tunnels_stopped) = tokio::sync::watch::channel(false);
    let admin = admin::Admin::new(metrics.clone(), draining.clone());
    let handler = proxy::Handler::new(
        &config,
        proxy::Parts {
            policy,
            upstream: upstream.clone(),
            signer,
            log,
            metrics: metrics.clone(),
            admin: admin.clone(),
            stop_tunnels: tunnels_stopped,
            shared_limit,
        },
    )
    .map_err(RunError::Config)?;
    let handler = Arc::new(handler);

    let addr = config.listener.addr;
    let listener = listener::bind(addr).map_err(|source| RunError::Listen { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| RunError::Listen { addr, source })?;
    // An inherited socket (systemd, Server::Starter) may listen elsewhere.
    sign::check_listener(&config.sign, local).map_err(RunError::Config)?;
    let admin_bound = match config.listener.metrics_listen {
        Some(admin_addr) => {
            let admin_listener =
                listener::bind_plain(admin_addr).map_err(|source| RunError::Listen {
                    addr: admin_addr,
                    source,
                })?;
            let shown = admin_listener
                .local_addr()
                .map_err(|source| RunError::Listen {
                    addr: admin_addr,
                    source,
                })?;
            Some((admin_listener, shown))
        }
        None => None,
    };
    let pid_file = config.process.pid_file.clone();
    if let Some(path) = &pid_file {
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|source| {
            RunError::PidFile {
                path: path.display().to_string(),
                source,
            }
        })?;
    }
    ready(Bound {
        addr: local,
        admin_addr: admin_bound.as_ref().map(|(_, shown)| *shown),
    });
    tracing::info!(%local, "listening");

    let admin_task = admin_bound.map(|(admin_listener, _)| {
        let limits = admin_listener::AdminLimits {
            read_timeout: config.listener.read_timeout,
            max_conns: config.listener.max_admin_conns,
        };
        tokio::spawn(admin_listener::serve(admin_listener, admin, limits))
    });
    tokio::spawn({
        let upstream = upstream.clone();
        async move { upstream.prewarm().await }
    });
    // Memory freed after a burst goes back to the OS.
    memory_trim::spawn();

    let (phase, phase_rx) = tokio::sync::watch::channel(shutdown::Phase::Serving);
    let drain_delay = config.process.drain_delay;
    let stop = async {
        shutdown.await;
        // A balancer stops sending new clients once its health check fails.
        draining.store(true, Ordering::Relaxed);
        if !drain_delay.is_zero() {
            tracing::info!(delay = ?drain_delay, "draining: /healthz says 503, still serving");
            phase.send_replace(shutdown::Phase::Draining);
            tokio::time::sleep(drain_delay).await;
        }
    };
    let listener::Draining { mut tasks } = listener::accept_loop(
        listener,
        handler.clone(),
        config.listener.clone(),
        config.limits.clone(),
        front,
        phase_rx,
        stop,
    )
    .await;
    phase.send_replace(shutdown::Phase::Stopping);
    let open = tasks.len();
    tracing::info!(open, timeout = ?config.process.shutdown_timeout, "draining client connections");
    let all_closed = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(config.process.shutdown_timeout, all_closed)
        .await
        .is_err()
    {
        tracing::warn!("shutdown timeout reached with requests still in flight; cancelling them");
    }
    // Past the grace time: cancel what is left. Each cancelled request still
    // writes its access-log line (499) as its exchange is dropped.
    stop_tunnels.send_replace(true);
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    if let Some(task) = admin_task {
        task.abort();
    }
    drop(handler);
    // Connections still open past the grace time hold log handles; give the
    // writer a bounded time to flush what is queued rather than wait for them.
    if tokio::time::timeout(std::time::Duration::from_secs(5), writer.close())
        .await
        .is_err()
    {
        tracing::warn!("access log not fully flushed: requests still open at exit");
    }
    if let Some(path) = &pid_file {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("stopped");
    Ok(())
}
