//! `ProxyError`: every outcome a client can see when the proxy answers for
//! itself, mapped to a status in one `match`; `error_response` is the
//! response that carries it.

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{self, ProxyBody};
use crate::policy::PolicyError;
use crate::route::RouteError;
use crate::sign::SignError;
use crate::upstream::UpstreamError;

pub mod reason;

/// What went wrong, as the client is told.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No route: bad or missing Host.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// A path of the proxy itself that does not exist.
    #[error("no route for host {host:?} path {path:?}")]
    NoRoute {
        /// `Host` as received.
        host: String,
        /// The path asked for.
        path: String,
    },
    /// Refused by policy (or a loop).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The upstream exchange failed.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// Re-signing failed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// CONNECT tunnel could not be set up.
    #[error("CONNECT to {target} failed")]
    Tunnel {
        /// `host:port` and the address last tried.
        target: String,
        /// Why the connection failed.
        #[source]
        source: std::io::Error,
    },
    /// The client's upgrade did not happen.
    #[error("the client connection could not be taken over for CONNECT")]
    NoUpgrade,
    /// Client over its request budget.
    #[error("rate limit exceeded; retry in {0:?}")]
    RateLimited(Duration),
    /// Request head too large (or too many headers).
    #[error("request header fields too large")]
    HeadersTooLarge,
    /// Request target too long.
    #[error("request target longer than {0} bytes")]
    UriTooLong(usize),
    /// A request head that could be read two ways.
    #[error("ambiguous request: {0}")]
    BadFraming(&'static str),
    /// The client went away mid-upload; what failed next is logged under it.
    #[error("client went away during the upload")]
    ClientGone(#[source] Box<ProxyError>),
    /// The proxy is shutting down.
    #[error("proxy is shutting down")]
    ShuttingDown,
    /// The client sent none of its request body for `--body-timeout`.
    #[error("no request body bytes for {0:?}")]
    BodyTimeout(Duration),
}

impl ProxyError {
    /// The status sent to the client.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Route(_) | Self::NoRoute { .. } | Self::BadFraming(_) => StatusCode::BAD_REQUEST,
            Self::ClientGone(_) => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            Self::Policy(PolicyError::Loop) => StatusCode::LOOP_DETECTED,
            Self::Policy(_)
            | Self::Upstream(UpstreamError::Refused(_))
            | Self::Sign(
                SignError::ClientNotAllowed(_)
                | SignError::ServiceNotAllowed { .. }
                | SignError::ClientUnverified(_),
            ) => StatusCode::FORBIDDEN,
            Self::Sign(SignError::BodyTimeout(_)) => StatusCode::REQUEST_TIMEOUT,
            Self::Upstream(UpstreamError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream(UpstreamError::PoolTimeout(_) | UpstreamError::TooManyOrigins(_))
            | Self::Sign(SignError::BufferFull { .. })
            | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream(_) | Self::Tunnel { .. } => StatusCode::BAD_GATEWAY,
            Self::Sign(SignError::BodyTooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Sign(SignError::Unsupported(_)) => StatusCode::BAD_REQUEST,
            Self::Sign(SignError::Credentials(_) | SignError::UnknownService(_)) => {
                StatusCode::BAD_GATEWAY
            }
            Self::Sign(_) | Self::NoUpgrade => StatusCode::INTERNAL_SERVER_ERROR,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// How long a client should wait before retrying, for the answers that
    /// mean "busy, try again" (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited(after) => Some(*after),
            Self::Upstream(UpstreamError::TooManyOrigins(_))
            | Self::Sign(SignError::BufferFull { .. }) => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// The one sentence a person reads (response body, access log); see
    /// `error/reason.rs`.
    pub fn reason(&self) -> String {
        let text = match self {
            ProxyError::Route(e) => reason::route(e),
            ProxyError::NoRoute { host, path } => format!(
                "{path:?} is not a path of the proxy and Host {host:?} names no target; \
                 see the Host convention below"
            ),
            ProxyError::Policy(e) => reason::policy(e),
            ProxyError::Upstream(e) => reason::upstream(e),
            ProxyError::Sign(e) => reason::sign(e),
            ProxyError::Tunnel { target, source } => {
                format!("could not open a tunnel to {target}: {}", reason::io_plain(source))
            }
            ProxyError::NoUpgrade => {
                "the client connection could not be switched to a CONNECT tunnel".to_owned()
            }
            ProxyError::RateLimited(after) => format!(
                "this client is over its rate limit (--rate-limit); retry in {} s",
                after.as_secs().max(1)
            ),
            ProxyError::HeadersTooLarge => "the request head is too large (over --max-header-bytes \
                                            or more than 100 header fields); send fewer or shorter headers"
                .to_owned(),
            ProxyError::UriTooLong(max) => {
                format!("the request target is longer than {max} bytes; shorten the URL")
            }
            ProxyError::BadFraming(what) => {
                format!("the request is ambiguous ({what}); send it with one of each")
            }
            ProxyError::ClientGone(inner) => {
                format!("the client went away during the upload (then: {})", inner.reason())
            }
            ProxyError::ShuttingDown => {
                "ccnproxy is shutting down; retry (another instance will answer)".to_owned()
            }
            ProxyError::BodyTimeout(limit) => reason::body_timeout(*limit),
        };
        text.replace(['\r', '\n'], " ")
    }
}

pub use reason::one_line;

/// A response the proxy makes itself: status, `text/plain`, one line (the
/// 400 for a missing route adds the Host convention).
pub fn error_response(err: &ProxyError) -> Response<ProxyBody> {
    let status = err.status();
    let mut text = format!(
        "{} {}: {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        err.reason()
    );
    if matches!(err, ProxyError::Route(_) | ProxyError::NoRoute { .. }) {
        text.push('\n');
        text.push_str(HOST_CONVENTION);
    }
    let mut resp = Response::new(body::full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(after) = err.retry_after() {
        let secs = after.as_secs().max(1);
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

#[cfg(test)]
mod tests;

/// The plain-text explanation sent with 400 when a request has no route.
pub const HOST_CONVENTION: &str = "\
ccnproxy forwards a request when its Host names the target:
  <target>.ccnproxy-https[:port]   (also -ssl, -secure)  -> https://<target>
  <target>.ccnproxy[:port]         (also ccnproxy-http)  -> http://<target>
e.g. curl -H 'Host: s3.amazonaws.com.ccnproxy-https' http://proxy:3000/
or send an absolute URL through it as an HTTP proxy (HTTP_PROXY=http://proxy:3000),
or point an AWS name at it (transparent mode, --https-upgrade).
The proxy's own paths: /healthz /metrics /.api/stats /.api/http-stats
";
