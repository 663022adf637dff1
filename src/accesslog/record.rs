//! `Record`: everything the access log and the metrics know about one
//! finished request. Filled in by the request path, read by the formats.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, Uri, Version};

use crate::identity::verified::VerifiedClient;
use crate::scope::CredentialScope;
use crate::upstream::Timing;

/// Everything known about one finished request.
#[derive(Debug, Clone)]
pub struct Record {
    /// When the request head was received.
    pub received: SystemTime,
    /// From request head received to the last response byte sent (or to the
    /// moment the client went away).
    pub duration: Duration,
    /// The client's address (from the PROXY header or a trusted
    /// `X-Forwarded-For` when a balancer is in between).
    pub client: SocketAddr,
    /// The balancer the request came through, when `client` is not the
    /// connection's peer.
    pub via: Option<std::sync::Arc<crate::identity::Via>>,
    /// Port the request arrived on.
    pub local_port: u16,
    /// Request method as received.
    pub method: Method,
    /// Request target as received (origin-form or absolute-form).
    pub uri: Uri,
    /// Client's HTTP version.
    pub version: Version,
    /// `Host` as received (or the authority of an absolute-form target); empty if none.
    pub host: String,
    /// Status sent to the client; 499 if the client went away first.
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// Request body bytes read from the client.
    pub bytes_received: u64,
    /// The request headers the format asked for (see `AccessLog::request_headers`).
    pub request_headers: HeaderMap,
    /// The response headers the format asked for (see `AccessLog::response_headers`),
    /// as sent to the client.
    pub response_headers: HeaderMap,
    /// `X-Chocon-Id` of this request.
    pub request_id: String,
    /// The origin the request was routed to (`https://host:443`), if any.
    pub origin: Option<String>,
    /// Upstream timing, if the request reached the pool.
    pub upstream: Option<Timing>,
    /// The client's SigV4 credential scope, if it sent one.
    pub scope: Option<CredentialScope>,
    /// The client as the proxy verified it (`--sign-client-credentials`);
    /// `scope` is only what the request claims.
    pub verified: Option<VerifiedClient>,
    /// One-line reason when the proxy produced the response itself or the
    /// exchange failed.
    pub error: Option<String>,
}

impl Record {
    /// The access key id the request claims: its `Authorization` header's,
    /// else its pre-signed URL's. Nobody has checked it (unless `verified`
    /// says the same): for the access log, never for budgets.
    pub fn claimed_access_key(&self) -> Option<&str> {
        match &self.scope {
            Some(scope) => Some(scope.access_key.as_str()),
            None => self
                .uri
                .query()
                .and_then(crate::scope::presigned_access_key),
        }
    }
}
