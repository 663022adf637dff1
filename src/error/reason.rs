//! The sentences a person reads: the one-line reason of every response the
//! proxy makes itself (its body after `NNN Reason-Phrase: `) and of the
//! access log's `error` field. Each says what happened in plain words and,
//! where the operator or client can do something, what: the flag to change,
//! the header to fix. Library errors (hickory, rustls, hyper, `io`) are
//! summarised, never dumped with `Debug`. `ProxyError::reason` puts these
//! together per variant; `ProxyError`'s `Display` stays the terse chain used
//! in diagnostics. This file imports no proxy module but the error enums'
//! own.

use std::io;
use std::time::Duration;

use hickory_resolver::net::{DnsError as WireDnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;

use crate::policy::PolicyError;
use crate::route::RouteError;
use crate::sign::SignError;
use crate::upstream::dns::DnsError;
use crate::upstream::pool::retry::Rule;
use crate::upstream::{ConnectError, UpstreamError};

/// The sentence for a `route` failure.
pub fn route(e: &RouteError) -> String {
    match e {
        RouteError::NoHost => {
            "the request has no Host header; name the target in Host (see below)".to_owned()
        }
        RouteError::BadHost(h) => format!("Host {h:?} is not a valid host name"),
        RouteError::EmptyTarget(h) => format!(
            "Host {h:?} has no target before its ccnproxy label; \
             write e.g. s3.amazonaws.com.ccnproxy-https"
        ),
        RouteError::BadTarget(t) => format!(
            "request target {t:?} is not supported; send a path, an absolute http:// URL, \
             or CONNECT host:port"
        ),
        RouteError::HostMismatch { host, authority } => format!(
            "Host {host:?} does not match the request target's {authority:?}; send the same name in both"
        ),
        RouteError::BadUrl(u) => {
            format!("{u:?} is not an origin URL; want http://host[:port] or https://host[:port]")
        }
    }
}

/// The sentence for a `policy` failure.
pub fn policy(e: &PolicyError) -> String {
    match e {
        PolicyError::HostNotAllowed(h) => format!(
            "host {h:?} is not allowed; start ccnproxy with --allow-host covering it to reach it"
        ),
        PolicyError::HostDenied(h) => format!("host {h:?} is refused by --deny-host"),
        // Their own texts say what is refused and which flag opens it.
        PolicyError::CustomerHost { .. } | PolicyError::PortNotAllowed { .. } => e.to_string(),
        PolicyError::AddressRefused { host, addr } => format!(
            "{host} resolves to the non-public address {addr}; start ccnproxy with \
             --allow-cidr covering it to reach it"
        ),
        PolicyError::Loop => "this request already passed through a ccnproxy (it carries \
                              X-Chocon-Ver): a proxy is sending to itself; check the target \
                              and --upstream"
            .to_owned(),
    }
}

/// The sentence for a `upstream` failure.
pub fn upstream(e: &UpstreamError) -> String {
    match e {
        UpstreamError::Dns(e) => dns(e),
        UpstreamError::Refused(e) => policy(e),
        UpstreamError::Connect(e) => connect(e),
        UpstreamError::Unreachable { addrs, source } => format!(
            "no connection to any of {addrs} addresses tried; the last failure: {}",
            connect(source)
        ),
        UpstreamError::PoolTimeout(after) => format!(
            "no connection to the origin came free within --pool-wait-timeout ({}); \
             raise --max-conns-per-host or --h2-conns, or the wait",
            human(*after)
        ),
        UpstreamError::Timeout(after) => format!(
            "the origin sent no response within --proxy-read-timeout ({})",
            human(*after)
        ),
        UpstreamError::Request(e) => {
            format!("the request to the origin failed: {}", hyper_plain(e))
        }
        UpstreamError::NotSentAgain { rule, source } => not_sent_again(*rule, source),
        UpstreamError::TooManyOrigins(_) => e.to_string(),
    }
}

/// A broken exchange that was not retried: what broke, and the retry rule
/// (docs/pool.md) that kept the request from being sent again.
fn not_sent_again(rule: Rule, e: &hyper::Error) -> String {
    let why = match rule {
        Rule::NotIdempotent => "its method is not idempotent and the origin may have processed it",
        Rule::BodyNotReplayable => "its body was streamed, not kept, so it cannot be sent again",
        Rule::FreshConnection => "it broke on a connection opened for it, the origin's own failure",
        Rule::MaybeProcessed => {
            "the origin closed its HTTP/2 connection (GOAWAY) as the request was sent, \
             and it may have been processed"
        }
        Rule::OutOfRetries => "it was already sent again as often as allowed",
        Rule::Unsent | Rule::RefusedStream | Rule::AboveGoAway | Rule::IdempotentReplay => {
            "it could not be rebuilt"
        }
    };
    format!(
        "the request to the origin failed ({}) and was not sent again: {why} \
         (retry rule {})",
        hyper_plain(e),
        rule.name()
    )
}

/// A failed lookup as one plain line: which name, what the DNS said.
pub fn dns(e: &DnsError) -> String {
    match e {
        DnsError::Lookup { host, source } => {
            format!("DNS lookup of {host} failed: {}", net_plain(source))
        }
        DnsError::NoAddress(host) => format!(
            "DNS lookup of {host} returned no address; check the name, or pin one with --resolve"
        ),
    }
}

/// What hickory's error means, without its `Debug` dump of the query.
fn net_plain(e: &NetError) -> String {
    match e {
        NetError::Dns(WireDnsError::NoRecordsFound(nr)) => {
            if nr.response_code == ResponseCode::NXDomain {
                "no such name (NXDOMAIN); check the host name".to_owned()
            } else {
                "the name has no address record (A or AAAA)".to_owned()
            }
        }
        NetError::Dns(WireDnsError::ResponseCode(code)) => format!(
            "the DNS server answered {} ({}); check --dns-server or the system resolver",
            code.to_str(),
            u16::from(*code)
        ),
        NetError::Timeout => {
            "the DNS server did not answer in time; check --dns-server or the system resolver"
                .to_owned()
        }
        NetError::NoConnections => {
            "no DNS server could be reached; check --dns-server or the system resolver".to_owned()
        }
        NetError::Io(io) => format!("the DNS server could not be reached: {}", io_plain(io)),
        other => one_line(other),
    }
}

fn connect(e: &ConnectError) -> String {
    match e {
        ConnectError::Tcp { addr, source } => {
            format!(
                "could not connect to the origin at {addr}: {}",
                io_plain(source)
            )
        }
        ConnectError::TimedOut { addr, after } => format!(
            "connecting to the origin at {addr} took longer than --connect-timeout ({})",
            human(*after)
        ),
        ConnectError::ServerName(host) => {
            format!("{host:?} cannot be used as a TLS server name")
        }
        ConnectError::Tls { host, addr, source } => format!(
            "TLS handshake with {host} at {addr} failed: {}",
            tls_plain(source, host)
        ),
        ConnectError::Handshake { addr, source } => format!(
            "HTTP handshake with the origin at {addr} failed: {}",
            hyper_plain(source)
        ),
    }
}

/// A TLS failure: certificate problems say what to do about them.
fn tls_plain(e: &io::Error, host: &str) -> String {
    use rustls::CertificateError as C;
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return io_plain(e);
    };
    match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer => "the origin's certificate is not signed by a trusted CA; \
                                 add that CA with --ca-file"
                .to_owned(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                format!("the origin's certificate is not valid for {host}")
            }
            C::Expired | C::ExpiredContext { .. } => {
                "the origin's certificate has expired".to_owned()
            }
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the origin's certificate is not valid yet (check the clock)".to_owned()
            }
            C::Revoked => "the origin's certificate is revoked".to_owned(),
            other => format!("the origin's certificate was refused ({other:?})"),
        },
        rustls::Error::AlertReceived(alert) => {
            format!("the origin refused the handshake (TLS alert {alert:?})")
        }
        other => other.to_string(),
    }
}

/// An `io::Error` as a few words ("connection refused"), without the
/// "(os error 111)" tail.
pub fn io_plain(e: &io::Error) -> String {
    use io::ErrorKind as K;
    let words = match e.kind() {
        K::ConnectionRefused => "connection refused (is the origin listening on that port?)",
        K::ConnectionReset => "connection reset by the peer",
        K::ConnectionAborted => "connection aborted",
        K::TimedOut => "timed out",
        K::HostUnreachable => "host unreachable",
        K::NetworkUnreachable => "network unreachable",
        K::AddrNotAvailable => "address not available",
        K::BrokenPipe => "the peer closed the connection",
        K::UnexpectedEof => "the peer closed the connection early",
        _ => "",
    };
    if !words.is_empty() {
        return words.to_owned();
    }
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// What went wrong on an HTTP connection, in words.
fn hyper_plain(e: &hyper::Error) -> String {
    if e.is_incomplete_message() {
        return "the origin closed the connection before answering".to_owned();
    }
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return io_plain(io);
        }
        source = s.source();
    }
    one_line(e)
}

/// The sentence for a `sign` failure.
pub fn sign(e: &SignError) -> String {
    match e {
        SignError::BodyTooLarge { limit } => format!(
            "the request body is larger than --sign-max-body ({limit} bytes) and cannot be \
             re-signed; raise the limit or use forward mode"
        ),
        SignError::BufferFull { limit } => format!(
            "request bodies held in memory for re-signing already take --max-buffered-bytes \
             ({limit} bytes); retry shortly"
        ),
        SignError::Credentials(cause) => format!(
            "ccnproxy has no AWS credentials to re-sign with ({}); give the proxy a role or keys",
            one_line(cause.as_ref())
        ),
        SignError::UnknownService(host) => format!(
            "cannot tell the AWS service and region of {host:?}; sign the request yourself \
             (forward mode) or narrow --sign-hosts"
        ),
        SignError::Body(cause) => format!(
            "reading the request body to re-sign it failed: {}",
            one_line(cause.as_ref())
        ),
        SignError::Signing(cause) => {
            format!(
                "re-signing the request failed: {}",
                one_line(cause.as_ref())
            )
        }
        SignError::Unsupported(what) => format!("this request cannot be re-signed: {what}"),
        SignError::BadHosts(what) => format!("--sign-hosts: {what}"),
        SignError::ClientUnverified(why) => format!(
            "the request is not signed with a key ccnproxy knows (--sign-client-credentials): \
             {why}"
        ),
        SignError::BodyTimeout(after) => format!(
            "the request body stalled for {} while ccnproxy read it to check the signature",
            human(*after)
        ),
        SignError::ClientCredentials(what) => what.clone(),
        SignError::ServiceNotAllowed { service, host } => format!(
            "{host} is the AWS service {service:?}, which ccnproxy does not sign for (not in \
             --sign-services); sign the request yourself and use forward mode"
        ),
        SignError::ClientNotAllowed(client) => format!(
            "client {client} may not have requests signed with the proxy's credentials \
             (not in --sign-allow-clients); sign the request yourself and use forward mode"
        ),
    }
}

/// An error and its causes on one line, joined with `: ` (a cause whose text
/// the line already ends with is not repeated).
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = e.source();
    }
    line.replace(['\r', '\n'], " ")
}

/// `30s`, `250ms`, `1h 30m`.
pub fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The access log's `error` when the client left before the response ended.
pub const CLIENT_WENT_AWAY: &str = "the client went away before the response was complete";

/// The access log's `error` when the origin's response body broke off.
pub fn body_failed(cause: &(dyn std::error::Error + 'static)) -> String {
    format!(
        "the origin's response body broke off: {}",
        plain_chain(cause)
    )
}

/// The access log's `error` when a CONNECT tunnel ended with an error.
pub fn tunnel_ended(e: &io::Error) -> String {
    format!("the tunnel ended with an error: {}", io_plain(e))
}

/// The access log's `error` when hyper did not hand the client connection over.
pub fn not_handed_over(e: &hyper::Error) -> String {
    format!(
        "the client connection could not be switched to a tunnel: {}",
        hyper_plain(e)
    )
}

/// The access log's `error` for a head hyper refused (it answered `status`).
pub fn malformed(status: u16, cause: &(dyn std::error::Error + 'static)) -> String {
    let what = if status == 431 {
        "the request head is too large (over --max-header-bytes or more than 100 header fields)"
    } else {
        "the request head is malformed"
    };
    format!("{what}; refused with {status}: {}", plain_chain(cause))
}

/// Why a request whose client stalled mid-body got 408.
pub fn body_timeout(limit: Duration) -> String {
    format!(
        "the client sent no request body bytes for {} (--body-timeout); the request was cut",
        human(limit)
    )
}

/// The access log's `error` for a connection over `--max-client-conns`.
pub const TOO_MANY_CONNECTIONS: &str =
    "too many client connections (over --max-client-conns); the connection was refused";

/// A library error chain as words: an `io::Error` or `hyper::Error` in it
/// is summarised, anything else is its one-line chain.
fn plain_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            return hyper_plain(h);
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return io_plain(io);
        }
        source = e.source();
    }
    one_line(err)
}

#[cfg(test)]
mod tests;
