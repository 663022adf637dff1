//! A gate for origin handlers: requests wait at it until the test opens it,
//! so that concurrency at the origin is certain rather than likely, and a
//! test counts events instead of trusting a delay to be long enough.
//!
//! ```ignore
//! let gate = Gate::new();
//! let origin = Origin::tls_h2().handler(gated(&gate)).start().await;
//! // ... start requests to /hold/...
//! origin.wait_for("10 held", |o| o.inflight_now() == 10).await;
//! gate.open();
//! ```

use std::sync::Arc;

use http::Response;
use tokio::sync::watch;

use super::origin::{OriginBody, full};

/// Holds requests at the origin until the test opens it.
#[derive(Clone)]
pub struct Gate(Arc<watch::Sender<bool>>);

impl Gate {
    /// A closed gate.
    pub fn new() -> Gate {
        Gate(Arc::new(watch::Sender::new(false)))
    }

    /// Opens the gate: held requests go on, later ones pass at once.
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    /// Whether the gate is open.
    pub fn is_open(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the gate is open.
    pub async fn passed(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

/// An origin handler: paths under `/hold` wait for `gate`, the rest answer
/// `200 ok` at once.
pub fn gated(
    gate: &Gate,
) -> impl Fn(
    http::Request<hyper::body::Incoming>,
) -> futures_util::future::BoxFuture<'static, Response<OriginBody>>
+ Send
+ Sync
+ 'static {
    let gate = gate.clone();
    move |req| {
        let gate = gate.clone();
        Box::pin(async move {
            if req.uri().path().starts_with("/hold") {
                gate.passed().await;
            }
            Response::new(full("ok"))
        })
    }
}
