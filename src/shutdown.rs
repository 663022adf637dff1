//! Shutdown: SIGTERM or SIGINT → the listener stops accepting, `/healthz`
//! says draining, in-flight requests get up to `--shutdown-timeout`, the
//! access log is flushed, the process exits 0.
//!
//! The handlers are installed by `Signals::install` before the startup line
//! is printed, so a signal sent as soon as the proxy says it listens is
//! never lost to the default action.

use tokio::signal::unix::{Signal, SignalKind, signal};

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
