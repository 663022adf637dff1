//! Why a request could not be re-signed, or a signer not built: each a
//! status and a one-line reason (`error/reason.rs`).

use crate::body::BoxError;

/// Why a request could not be re-signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// A non-S3 body (or one signed chunk) is larger than `--sign-max-body`.
    #[error("request body larger than --sign-max-body ({limit} bytes) cannot be re-signed")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// Holding the body to hash it would take the bytes buffered by all
    /// requests past `--max-buffered-bytes`.
    #[error("request bodies held for re-signing already use --max-buffered-bytes ({limit} bytes)")]
    BufferFull {
        /// The cap in bytes.
        limit: u64,
    },
    /// No usable credentials in the proxy's chain.
    #[error("no AWS credentials for re-signing")]
    Credentials(#[source] BoxError),
    /// Service or region could not be derived.
    #[error("cannot tell the AWS service and region of {0:?}")]
    UnknownService(String),
    /// Reading the body to hash it failed.
    #[error("reading the request body")]
    Body(#[source] BoxError),
    /// The signing library refused the request.
    #[error("signing the request")]
    Signing(#[source] BoxError),
    /// The request uses a signing form the proxy cannot re-sign (a client
    /// error: SigV4a streaming, an unknown `x-amz-content-sha256` kind).
    #[error("cannot re-sign: {0}")]
    Unsupported(String),
    /// The client's own signature did not check out against
    /// `--sign-client-credentials` (missing, wrong, expired, unknown key).
    #[error("client signature not verified: {0}")]
    ClientUnverified(String),
    /// The body to hash for checking a client's signature stalled.
    #[error("no request body bytes within {0:?}")]
    BodyTimeout(std::time::Duration),
    /// `--sign-client-credentials` could not be read (a startup error).
    #[error("{0}")]
    ClientCredentials(String),
    /// The client's address is outside `--sign-allow-clients`.
    #[error("client {0} is not in --sign-allow-clients")]
    ClientNotAllowed(std::net::IpAddr),
    /// The routed host's service is not in `--sign-services`.
    #[error("service {service} of {host:?} is not in --sign-services")]
    ServiceNotAllowed {
        /// The signing name.
        service: String,
        /// The routed host.
        host: String,
    },
    /// `--sign-hosts` holds a malformed pattern (a startup error).
    #[error("--sign-hosts: {0}")]
    BadHosts(String),
}
