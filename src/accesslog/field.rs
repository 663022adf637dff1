//! The compiled pieces of an access-log line: literal bytes and fields
//! (`Field`), and how each field reads its value from a `Record`. Shared by
//! the parser (`parse`), the presets (`preset`) and `Format`.

use std::time::Duration;

use http::HeaderMap;
use http::header::HeaderName;

use super::Record;
use super::render::{Enc, Text, Value, headers, non_empty, plain, text, version};
use super::time::TimeSpec;
use super::zone::Zone;
use crate::identity::account::{ACCOUNT_DIGITS, account_of};
use crate::upstream::Timing;

/// One piece of a line.
pub(super) enum Part {
    /// Written as is.
    Literal(Box<[u8]>),
    /// A value, written per `enc`, or unknown when `only` rules out the status.
    Field {
        field: Field,
        enc: Enc,
        only: Option<StatusFilter>,
    },
}

/// Apache's `%400,501{…}i` / `%!200{…}i`: log only for (or except) these statuses.
pub(super) struct StatusFilter {
    pub(super) negate: bool,
    pub(super) codes: Vec<u32>,
}

impl StatusFilter {
    pub(super) fn admits(&self, status: u16) -> bool {
        self.codes.contains(&u32::from(status)) != self.negate
    }
}

/// Which headers a header field reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Request,
    Response,
}

/// One step of `Timing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Dns,
    Connect,
    Tls,
    Queue,
    Header,
    Total,
}

/// What a directive shows; see `directive_field` and `x_field` for the spelling.
pub(super) enum Field {
    ClientIp,
    /// chocon's `remote_addr`: Go's `RemoteAddr` up to the last `:`, so IPv6 keeps its brackets.
    ClientIpGo,
    ClientPort,
    /// `%{c}a`: the connection's peer (the balancer when there is one).
    PeerIp,
    /// `%{balancer}x`: the balancer's address, `-` without one.
    Balancer,
    /// `%{vpce}x`: the VPC endpoint id of a PROXY v2 header.
    Vpce,
    Nothing,
    RequestLine,
    Method,
    Path,
    Query,
    Target,
    DecodedPath,
    Protocol,
    Status,
    BytesSentClf,
    BytesSent,
    BytesReceived,
    DurationUs,
    DurationMs,
    DurationS,
    DurationMillis,
    DurationSecs,
    Host,
    LocalPort,
    Header(Side, HeaderName),
    FirstHeader(Side, Vec<HeaderName>),
    Constant(Option<Box<[u8]>>),
    UpstreamAddr,
    Reused,
    UpstreamProtocol,
    Step(Step),
    Retries,
    RetryRule,
    ConnectAttempts,
    RequestId,
    Origin,
    AccessKey,
    /// `%{account}x`: the AWS account of the verified client's key id, else
    /// of the key id the request claims.
    Account([u8; ACCOUNT_DIGITS]),
    Service,
    Region,
    Error,
    Time(Box<TimeSpec>),
}

impl Field {
    pub(super) fn value<'a>(&'a mut self, r: &'a Record, zone: &Zone) -> Value<'a> {
        let up = r.upstream.as_ref();
        let scope = r.scope.as_ref();
        match self {
            Self::ClientIp => Value::Text(Text::Ip(r.client.ip().to_canonical())),
            Self::ClientIpGo => Value::Text(Text::IpGo(r.client.ip())),
            Self::ClientPort => Value::Uint(r.client.port().into()),
            Self::PeerIp => {
                let peer = r.via.as_ref().map_or(r.client, |v| v.addr);
                Value::Text(Text::Ip(peer.ip().to_canonical()))
            }
            Self::Balancer => r.via.as_ref().map_or(Value::Missing, |v| {
                Value::Text(Text::Ip(v.addr.ip().to_canonical()))
            }),
            Self::Vpce => r
                .via
                .as_ref()
                .and_then(|v| v.vpce.as_ref())
                .map_or(Value::Missing, |v| text(v.as_str())),
            Self::Nothing => Value::Missing,
            Self::RequestLine => Value::Text(Text::RequestLine(r)),
            Self::Method => text(r.method.as_str()),
            Self::Path => text(r.uri.path()),
            Self::Query => Value::Text(Text::Query(&r.uri)),
            Self::Target => Value::Text(Text::Target(&r.uri, r.version)),
            Self::DecodedPath => Value::Text(Text::DecodedPath(r.uri.path())),
            Self::Protocol => plain(version(r.version)),
            Self::Status => Value::Uint(r.status.into()),
            Self::BytesSentClf if r.bytes_sent == 0 => Value::Missing,
            Self::BytesSentClf | Self::BytesSent => Value::Uint(r.bytes_sent),
            Self::BytesReceived => Value::Uint(r.bytes_received),
            Self::DurationUs => Value::Uint(r.duration.as_micros().try_into().unwrap_or(u64::MAX)),
            Self::DurationMs => Value::Uint(r.duration.as_millis().try_into().unwrap_or(u64::MAX)),
            Self::DurationS => Value::Uint(r.duration.as_secs()),
            Self::DurationMillis => Value::Millis(r.duration),
            Self::DurationSecs => Value::Float(r.duration.as_secs_f64()),
            Self::Host => non_empty(&r.host),
            Self::LocalPort => Value::Uint(r.local_port.into()),
            Self::Header(side, name) => headers(side.of(r), name),
            Self::FirstHeader(side, names) => {
                let map = side.of(r);
                names
                    .iter()
                    .find_map(|name| map.get(name))
                    .map_or(Value::Missing, |v| Value::Text(Text::Bytes(v.as_bytes())))
            }
            Self::Constant(bytes) => bytes
                .as_deref()
                .map_or(Value::Missing, |b| Value::Text(Text::Bytes(b))),
            Self::UpstreamAddr => up
                .and_then(|t| t.addr)
                .map_or(Value::Missing, |a| Value::Text(Text::Addr(a))),
            Self::Reused => up.map_or(Value::Missing, |t| Value::Bool(t.reused)),
            Self::UpstreamProtocol => up.map_or(Value::Missing, |t| plain(t.protocol.as_str())),
            Self::Step(step) => up.map_or(Value::Missing, |t| Value::Millis(step.of(t))),
            Self::Retries => up.map_or(Value::Missing, |t| Value::Uint(t.retries.into())),
            Self::RetryRule => up
                .and_then(|t| t.retry_rule)
                .map_or(Value::Missing, |rule| plain(rule.name())),
            Self::ConnectAttempts => {
                up.map_or(Value::Missing, |t| Value::Uint(t.connect_attempts.into()))
            }
            Self::RequestId => non_empty(&r.request_id),
            Self::Origin => r.origin.as_deref().map_or(Value::Missing, text),
            Self::AccessKey => scope.map_or(Value::Missing, |s| text(&s.access_key)),
            Self::Account(digits) => {
                let key = r.verified.as_ref().map(|v| v.access_key_id.as_str());
                match key.or_else(|| r.claimed_access_key()).and_then(account_of) {
                    Some(found) => {
                        *digits = found;
                        Value::Text(Text::Plain(&digits[..]))
                    }
                    None => Value::Missing,
                }
            }
            Self::Service => scope.map_or(Value::Missing, |s| text(&s.service)),
            Self::Region => scope.map_or(Value::Missing, |s| text(&s.region)),
            Self::Error => r.error.as_deref().map_or(Value::Missing, text),
            Self::Time(spec) => spec.value(r, zone),
        }
    }
}

impl Side {
    fn of(self, r: &Record) -> &HeaderMap {
        match self {
            Self::Request => &r.request_headers,
            Self::Response => &r.response_headers,
        }
    }
}

impl Step {
    fn of(self, t: &Timing) -> Duration {
        match self {
            Self::Dns => t.dns,
            Self::Connect => t.connect,
            Self::Tls => t.tls,
            Self::Queue => t.queue,
            Self::Header => t.header,
            Self::Total => t.total,
        }
    }
}

/// Most services answer `x-amzn-RequestId`; S3 `x-amz-request-id`.
pub(super) fn aws_request_id() -> Field {
    Field::FirstHeader(
        Side::Response,
        vec![
            HeaderName::from_static("x-amzn-requestid"),
            HeaderName::from_static("x-amz-request-id"),
        ],
    )
}
