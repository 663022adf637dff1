//! Body types shared by the request path: one boxed streaming body type for
//! requests sent upstream and responses sent to clients.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

/// Error type carried by boxed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body, boxed.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes` whole.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Put in a request's extensions when its body waits for `100 Continue`;
/// notifying it lets the body flow (the pool does so for HTTP/2 origins,
/// which do not send `100 Continue`).
#[derive(Clone)]
pub struct ContinueSignal(pub std::sync::Arc<tokio::sync::Notify>);
