//! Shutdown: SIGTERM or SIGINT → `/healthz` says draining at once; for
//! `--drain-delay` the proxy still accepts and serves, with `Connection:
//! close` on HTTP/1.1 responses and GOAWAY on h2c connections, so that a
//! balancer's clients move to other replicas (`Phase::Draining`); then the
//! listener stops accepting, in-flight requests get up to
//! `--shutdown-timeout` (`Phase::Stopping`), the access log is flushed, the
//! process exits 0.
//!
//! The handlers are installed by `Signals::install` before the startup line
//! is printed, so a signal sent as soon as the proxy says it listens is
//! never lost to the default action.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Where the proxy is in its life; connections watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Normal service.
    Serving,
    /// `--drain-delay`: still accepting, but asking clients to go elsewhere.
    Draining,
    /// Not accepting; each connection finishes its requests and closes.
    Stopping,
}

/// Installed SIGTERM and SIGINT handlers.
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the handlers; needs a running tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves on the first SIGTERM or SIGINT.
    pub async fn recv(mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM: draining"),
            _ = self.int.recv() => tracing::info!("SIGINT: draining"),
        }
    }
}
