//! What one upstream exchange cost, for the access log and metrics.

use std::net::SocketAddr;
use std::time::Duration;

/// HTTP version spoken to the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// HTTP/1.1.
    #[default]
    H1,
    /// HTTP/2.
    H2,
}

impl Protocol {
    /// `h1` or `h2`, as written in the access log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::H1 => "h1",
            Self::H2 => "h2",
        }
    }
}

/// Timing and connection facts of one upstream exchange. Durations are zero
/// for steps that did not happen (a reused connection has no connect or TLS
/// time).
#[derive(Debug, Clone, Default)]
pub struct Timing {
    /// The origin address the request went to.
    pub addr: Option<SocketAddr>,
    /// The request went over a connection that had served before.
    pub reused: bool,
    /// HTTP version used upstream.
    pub protocol: Protocol,
    /// Time spent resolving the origin name (zero when cached).
    pub dns: Duration,
    /// TCP connect time (zero when reused).
    pub connect: Duration,
    /// TLS handshake time (zero when reused or plain HTTP).
    pub tls: Duration,
    /// Time spent waiting for a free connection or stream in the pool.
    pub queue: Duration,
    /// From sending the request head to receiving the response head.
    pub header: Duration,
    /// From checkout to the last byte of the response body (filled in when the
    /// body ends; equals `header` until then).
    pub total: Duration,
    /// How many times the request was retried on a fresh connection.
    pub retries: u32,
    /// The retry rule that allowed the last retry (`retry.rs`).
    pub retry_rule: Option<super::pool::retry::Rule>,
    /// Connect attempts the request made (0 when it reused a connection;
    /// more than 1 when an address failed or was slow and another was tried).
    pub connect_attempts: u32,
}
