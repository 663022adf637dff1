//! Who the client is when a load balancer stands in between.
//!
//! - `proxy_protocol`: PROXY v1/v2 headers (`--proxy-protocol`), accepted
//!   only from `--trust-proxy` peers; `accept` reads at most one header
//!   before hyper sees the connection, and `Prefixed` replays any bytes read
//!   past it.
//! - `forwarded`: `X-Forwarded-For` from `--trust-forwarded` peers.
//! - `verified`: an identity the proxy checked (`VerifiedClient`).
//! - `account`: the AWS account an access key id carries.
//!
//! The result is the client address of `ConnInfo` and of the access-log
//! record (`%h`, client keys, rate limits); the balancer's own address is
//! kept beside it as a `Via`. Leaf module: nothing here imports the request
//! path.

pub mod account;
pub mod forwarded;
mod prefixed;
pub mod proxy_protocol;
pub mod verified;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::config::IdentityConfig;
pub use prefixed::Prefixed;
use proxy_protocol::{Header, HeaderError};

/// Longest VPC endpoint id kept (AWS's are 22 bytes: `vpce-` + 17 hex).
pub const MAX_VPCE_BYTES: usize = 63;

/// An AWS VPC endpoint id from a PROXY v2 header, stored inline so that
/// connection facts stay `Copy`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Vpce {
    len: u8,
    bytes: [u8; MAX_VPCE_BYTES],
}

impl Vpce {
    /// `id` if it is 1 to `MAX_VPCE_BYTES` visible ASCII bytes.
    pub fn new(id: &[u8]) -> Option<Vpce> {
        let plain =
            !id.is_empty() && id.len() <= MAX_VPCE_BYTES && id.iter().all(u8::is_ascii_graphic);
        if !plain {
            return None;
        }
        let mut bytes = [0; MAX_VPCE_BYTES];
        bytes[..id.len()].copy_from_slice(id);
        Some(Vpce {
            len: id.len() as u8,
            bytes,
        })
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        // `new` admits visible ASCII only, so this is never the empty fallback.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::fmt::Debug for Vpce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The balancer a request came through, when the client address was taken
/// from a PROXY header or `X-Forwarded-For`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via {
    /// The connection's own peer: the balancer.
    pub addr: SocketAddr,
    /// The VPC endpoint (NLB PROXY v2 with AWS's TLV).
    pub vpce: Option<Vpce>,
}

/// The client and balancer of a request on a connection from `peer` whose
/// PROXY header (if any) said `via`: `X-Forwarded-For` is believed when the
/// connection's client address is in `--trust-forwarded`.
pub fn resolve(
    trust_forwarded: &[ipnet::IpNet],
    client: SocketAddr,
    via: Option<Arc<Via>>,
    headers: &http::HeaderMap,
) -> (SocketAddr, Option<Arc<Via>>) {
    let resolved = forwarded::client(trust_forwarded, client, headers);
    if resolved == client {
        return (client, via);
    }
    let via = via.or_else(|| {
        Some(Arc::new(Via {
            addr: client,
            vpce: None,
        }))
    });
    (resolved, via)
}

/// Why a connection was closed before HTTP.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// A PROXY header from a peer outside `--trust-proxy`.
    #[error("PROXY protocol header from an untrusted peer (--trust-proxy)")]
    Untrusted,
    /// A trusted peer sent something that is not a valid header.
    #[error(transparent)]
    Header(HeaderError),
    /// The peer closed or stalled in the middle of a header.
    #[error("PROXY protocol header truncated ({0} bytes, then {1})")]
    Truncated(usize, &'static str),
    /// The peer sent part of a header, then nothing until the read timeout.
    #[error("no complete PROXY protocol header within {0:?}")]
    TimedOut(Duration),
    /// The peer closed, or stayed silent until the read timeout, before
    /// sending anything (a TCP health check): not counted.
    #[error("closed before sending anything")]
    Empty,
    /// Reading failed.
    #[error("reading the PROXY protocol header")]
    Io(#[source] std::io::Error),
}

impl Refused {
    /// The `reason` label of `ccnproxy_proxy_protocol_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Untrusted => "untrusted",
            Self::Header(HeaderError::Missing) => "missing",
            Self::Header(HeaderError::Malformed { .. }) => "malformed",
            Self::Header(HeaderError::TooLarge(_)) => "too_large",
            Self::Truncated(..) => "truncated",
            Self::TimedOut(_) => "timeout",
            Self::Empty | Self::Io(_) => "closed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// Counters of `--proxy-protocol`, registered with `/metrics`.
#[derive(Clone, Default)]
pub struct Counters {
    accepted: Family<VersionLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
}

impl Counters {
    /// Registers `ccnproxy_proxy_protocol_headers_total{version}` and
    /// `ccnproxy_proxy_protocol_refused_total{reason}`.
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Counters {
        let c = Counters::default();
        registry.register(
            "ccnproxy_proxy_protocol_headers",
            "PROXY protocol headers accepted, by version",
            c.accepted.clone(),
        );
        registry.register(
            "ccnproxy_proxy_protocol_refused",
            "Client connections closed before HTTP because of their PROXY protocol header",
            c.refused.clone(),
        );
        c
    }
}

/// Reads the PROXY header of a new connection when `--proxy-protocol` is on.
/// A `--trust-proxy` peer must send exactly one header first; any other peer
/// is a direct client and must not send one. Returns the stream (with any
/// bytes read past the header replayed) and the header, or why the
/// connection must be closed (counted and logged here, with the peer).
pub async fn accept(
    stream: TcpStream,
    peer: SocketAddr,
    config: &IdentityConfig,
    counters: &Counters,
    timeout: Duration,
) -> Result<(Prefixed<TcpStream>, Option<Header>), Refused> {
    if !config.proxy_protocol {
        return Ok((Prefixed::new(bytes::Bytes::new(), stream), None));
    }
    let trusted = forwarded::is_trusted(&config.trust_proxy, peer.ip());
    let result = read_header(stream, trusted, timeout).await;
    match &result {
        Ok((_, Some(h))) => {
            let version = if h.version == 1 { "1" } else { "2" };
            counters
                .accepted
                .get_or_create(&VersionLabels { version })
                .inc();
        }
        Ok((_, None)) => {}
        Err(Refused::Empty) => {
            tracing::debug!(%peer, "connection closed before sending anything");
        }
        Err(err) => {
            counters
                .refused
                .get_or_create(&ReasonLabels {
                    reason: err.reason(),
                })
                .inc();
            tracing::warn!(
                %peer,
                trusted,
                reason = err.reason(),
                error = err as &dyn std::error::Error,
                "proxy_protocol: connection refused"
            );
        }
    }
    result
}

async fn read_header(
    mut stream: TcpStream,
    trusted: bool,
    timeout: Duration,
) -> Result<(Prefixed<TcpStream>, Option<Header>), Refused> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = BytesMut::with_capacity(512);
    loop {
        match proxy_protocol::parse(&buf) {
            Ok(Some(_)) if !trusted => return Err(Refused::Untrusted),
            Ok(Some((header, len))) => {
                let rest = buf.split_off(len).freeze();
                return Ok((Prefixed::new(rest, stream), Some(header)));
            }
            Err(HeaderError::Missing) if !trusted => {
                return Ok((Prefixed::new(buf.freeze(), stream), None));
            }
            // Whatever an untrusted peer meant by it, it looks like a header.
            Err(_) if !trusted => return Err(Refused::Untrusted),
            Err(err) => return Err(Refused::Header(err)),
            Ok(None) => {}
        }
        if buf.capacity() == buf.len() {
            buf.reserve(buf.len());
        }
        let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await;
        let n = match read {
            Ok(n) => n.map_err(Refused::Io)?,
            Err(_) if buf.is_empty() => return Err(Refused::Empty),
            Err(_) => return Err(Refused::TimedOut(timeout)),
        };
        if n == 0 {
            return Err(if buf.is_empty() {
                Refused::Empty
            } else {
                Refused::Truncated(buf.len(), "closed")
            });
        }
    }
}
