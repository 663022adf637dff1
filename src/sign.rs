//! SigV4 re-signing (`--sign`). PLACEHOLDER: the AWS issue replaces the
//! insides behind this API.

use http::Request;

use crate::body::{BoxError, ProxyBody};
use crate::config::SignConfig;
use crate::route::Origin;

/// Why a request could not be re-signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// A non-S3 body is larger than `--sign-max-body`.
    #[error("request body larger than --sign-max-body ({limit} bytes) cannot be re-signed")]
    BodyTooLarge {
        /// The limit in bytes.
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
}

/// Re-signs requests with the proxy's own credentials.
#[derive(Debug)]
pub struct Signer {
    _config: SignConfig,
}

impl Signer {
    /// Loads the credential chain for `config`.
    pub async fn new(config: &SignConfig) -> Result<Self, SignError> {
        Ok(Signer {
            _config: config.clone(),
        })
    }

    /// True when requests to `origin` are to be re-signed.
    pub fn applies_to(&self, _origin: &Origin) -> bool {
        false
    }

    /// Replaces the client's signature with the proxy's. `req` already has its
    /// final `Host` and URI.
    pub async fn sign(
        &self,
        req: Request<ProxyBody>,
        _origin: &Origin,
    ) -> Result<Request<ProxyBody>, SignError> {
        Ok(req)
    }
}
