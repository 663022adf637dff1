//! Shutdown: SIGTERM or SIGINT → the listener stops accepting, `/healthz`
//! says draining, in-flight requests get up to `--shutdown-timeout`, the
//! access log is flushed, the process exits 0.

/// Resolves on the first SIGTERM or SIGINT.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(err) => {
            tracing::error!(
                error = &err as &dyn std::error::Error,
                "cannot listen for SIGTERM"
            );
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
}
