//! Every reason a proxy-made response can carry: the error, the status it
//! gets and the sentence a person reads (the access log's `error` holds the
//! same). The table is the list; `docs/design.md` summarises it.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::net::{DnsError as WireDnsError, NetError, NoRecords};
use hickory_resolver::proto::op::{Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RecordType};

use super::*;
use crate::upstream::dns::DnsError;
use crate::upstream::{ConnectError, UpstreamError};

fn addr() -> SocketAddr {
    "192.0.2.7:443".parse().expect("addr")
}

fn lookup(source: NetError) -> ProxyError {
    ProxyError::Upstream(UpstreamError::Dns(DnsError::Lookup {
        host: "sts.amazonaws.com".to_owned(),
        source,
    }))
}

fn no_records(code: ResponseCode) -> NetError {
    let name = Name::from_ascii("sts.amazonaws.com.").expect("name");
    NetError::Dns(WireDnsError::NoRecordsFound(NoRecords::new(
        Query::query(name, RecordType::AAAA),
        code,
    )))
}

fn tls(cert: rustls::CertificateError) -> ProxyError {
    ProxyError::Upstream(UpstreamError::Connect(ConnectError::Tls {
        host: "s3.amazonaws.com".to_owned(),
        addr: addr(),
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(cert),
        ),
    }))
}

#[test]
fn every_reason_is_one_plain_sentence() {
    let refused = || io::Error::from(io::ErrorKind::ConnectionRefused);
    let cases: Vec<(ProxyError, u16, &str)> = vec![
        (
            RouteError::NoHost.into(),
            400,
            "the request has no Host header; name the target in Host (see below)",
        ),
        (
            RouteError::BadHost("a b".into()).into(),
            400,
            "Host \"a b\" is not a valid host name",
        ),
        (
            RouteError::EmptyTarget("ccnproxy-https".into()).into(),
            400,
            "Host \"ccnproxy-https\" has no target before its ccnproxy label; write e.g. s3.amazonaws.com.ccnproxy-https",
        ),
        (
            RouteError::BadTarget("ftp://x/".into()).into(),
            400,
            "request target \"ftp://x/\" is not supported; send a path, an absolute http:// URL, or CONNECT host:port",
        ),
        (
            RouteError::HostMismatch {
                host: "a.test".into(),
                authority: "b.test".into(),
            }
            .into(),
            400,
            "Host \"a.test\" does not match the request target's \"b.test\"; send the same name in both",
        ),
        (
            ProxyError::NoRoute {
                host: "127.0.0.1:3000".into(),
                path: "/x".into(),
            },
            400,
            "\"/x\" is not a path of the proxy and Host \"127.0.0.1:3000\" names no target; see the Host convention below",
        ),
        (
            ProxyError::BadFraming("more than one Host header"),
            400,
            "the request is ambiguous (more than one Host header); send it with one of each",
        ),
        (
            PolicyError::HostNotAllowed("example.com".into()).into(),
            403,
            "host \"example.com\" is not allowed; start ccnproxy with --allow-host covering it to reach it",
        ),
        (
            PolicyError::HostDenied("evil.amazonaws.com".into()).into(),
            403,
            "host \"evil.amazonaws.com\" is refused by --deny-host",
        ),
        (
            ProxyError::Upstream(UpstreamError::Refused(PolicyError::AddressRefused {
                host: "metadata.test".into(),
                addr: "169.254.169.254".parse().expect("ip"),
            })),
            403,
            "metadata.test resolves to the non-public address 169.254.169.254; start ccnproxy with --allow-cidr covering it to reach it",
        ),
        (
            PolicyError::Loop.into(),
            508,
            "this request already passed through a ccnproxy (it carries X-Chocon-Ver): a proxy is sending to itself; check the target and --upstream",
        ),
        (
            lookup(no_records(ResponseCode::NoError)),
            502,
            "DNS lookup of sts.amazonaws.com failed: the name has no address record (A or AAAA)",
        ),
        (
            lookup(no_records(ResponseCode::NXDomain)),
            502,
            "DNS lookup of sts.amazonaws.com failed: no such name (NXDOMAIN); check the host name",
        ),
        (
            lookup(NetError::Dns(WireDnsError::ResponseCode(
                ResponseCode::ServFail,
            ))),
            502,
            "DNS lookup of sts.amazonaws.com failed: the DNS server answered Server Failure (2); check --dns-server or the system resolver",
        ),
        (
            lookup(NetError::Timeout),
            502,
            "DNS lookup of sts.amazonaws.com failed: the DNS server did not answer in time; check --dns-server or the system resolver",
        ),
        (
            lookup(NetError::NoConnections),
            502,
            "DNS lookup of sts.amazonaws.com failed: no DNS server could be reached; check --dns-server or the system resolver",
        ),
        (
            ProxyError::Upstream(UpstreamError::Dns(DnsError::NoAddress(
                "sts.amazonaws.com".into(),
            ))),
            502,
            "DNS lookup of sts.amazonaws.com returned no address; check the name, or pin one with --resolve",
        ),
        (
            ProxyError::Upstream(UpstreamError::Connect(ConnectError::Tcp {
                addr: addr(),
                source: refused(),
            })),
            502,
            "could not connect to the origin at 192.0.2.7:443: connection refused (is the origin listening on that port?)",
        ),
        (
            ProxyError::Upstream(UpstreamError::Unreachable {
                addrs: 3,
                source: ConnectError::Tcp {
                    addr: addr(),
                    source: io::Error::from(io::ErrorKind::NetworkUnreachable),
                },
            }),
            502,
            "no connection to any of 3 addresses tried; the last failure: could not connect to the origin at 192.0.2.7:443: network unreachable",
        ),
        (
            ProxyError::Upstream(UpstreamError::Connect(ConnectError::TimedOut {
                addr: addr(),
                after: Duration::from_secs(10),
            })),
            502,
            "connecting to the origin at 192.0.2.7:443 took longer than --connect-timeout (10s)",
        ),
        (
            ProxyError::Upstream(UpstreamError::Connect(ConnectError::ServerName(
                "a..b".into(),
            ))),
            502,
            "\"a..b\" cannot be used as a TLS server name",
        ),
        (
            tls(rustls::CertificateError::UnknownIssuer),
            502,
            "TLS handshake with s3.amazonaws.com at 192.0.2.7:443 failed: the origin's certificate is not signed by a trusted CA; add that CA with --ca-file",
        ),
        (
            tls(rustls::CertificateError::NotValidForName),
            502,
            "TLS handshake with s3.amazonaws.com at 192.0.2.7:443 failed: the origin's certificate is not valid for s3.amazonaws.com",
        ),
        (
            tls(rustls::CertificateError::Expired),
            502,
            "TLS handshake with s3.amazonaws.com at 192.0.2.7:443 failed: the origin's certificate has expired",
        ),
        (
            ProxyError::Upstream(UpstreamError::PoolTimeout(Duration::from_secs(30))),
            503,
            "no connection to the origin came free within --pool-wait-timeout (30s); raise --max-conns-per-host or --h2-conns, or the wait",
        ),
        (
            ProxyError::Upstream(UpstreamError::Timeout(Duration::from_millis(1500))),
            504,
            "the origin sent no response within --proxy-read-timeout (1s 500ms)",
        ),
        (
            ProxyError::Tunnel {
                target: "x.amazonaws.com:443".into(),
                source: refused(),
            },
            502,
            "could not open a tunnel to x.amazonaws.com:443: connection refused (is the origin listening on that port?)",
        ),
        (
            ProxyError::NoUpgrade,
            500,
            "the client connection could not be switched to a CONNECT tunnel",
        ),
        (
            SignError::BodyTooLarge { limit: 1024 }.into(),
            413,
            "the request body is larger than --sign-max-body (1024 bytes) and cannot be re-signed; raise the limit or use forward mode",
        ),
        (
            SignError::BufferFull { limit: 1 << 20 }.into(),
            503,
            "request bodies held in memory for re-signing already take --max-buffered-bytes (1048576 bytes); retry shortly",
        ),
        (
            SignError::Credentials("no providers in chain".into()).into(),
            502,
            "ccnproxy has no AWS credentials to re-sign with (no providers in chain); give the proxy a role or keys",
        ),
        (
            SignError::UnknownService("example.com".into()).into(),
            502,
            "cannot tell the AWS service and region of \"example.com\"; sign the request yourself (forward mode) or narrow --sign-hosts",
        ),
        (
            SignError::Unsupported("SigV4a chunk signatures".into()).into(),
            400,
            "this request cannot be re-signed: SigV4a chunk signatures",
        ),
        (
            ProxyError::RateLimited(Duration::from_millis(200)),
            429,
            "this client is over its rate limit (--rate-limit); retry in 1 s",
        ),
        (
            ProxyError::HeadersTooLarge,
            431,
            "the request head is too large (over --max-header-bytes or more than 100 header fields); send fewer or shorter headers",
        ),
        (
            ProxyError::UriTooLong(8192),
            414,
            "the request target is longer than 8192 bytes; shorten the URL",
        ),
        (
            ProxyError::ClientGone(Box::new(ProxyError::Upstream(UpstreamError::Timeout(
                Duration::from_secs(60),
            )))),
            499,
            "the client went away during the upload (then: the origin sent no response within --proxy-read-timeout (1m))",
        ),
        (
            ProxyError::ShuttingDown,
            503,
            "ccnproxy is shutting down; retry (another instance will answer)",
        ),
        (
            ProxyError::BodyTimeout(Duration::from_secs(60)),
            408,
            "the client sent no request body bytes for 1m (--body-timeout); the request was cut",
        ),
    ];
    let mut wrong = Vec::new();
    for (err, status, text) in &cases {
        let got = (err.status().as_u16(), err.reason());
        if got != (*status, text.to_string()) {
            wrong.push(format!(
                "{err:?}\n  want {status} {text}\n  got  {} {}",
                got.0, got.1
            ));
        }
        assert!(
            !got.1.contains("Query {") && !got.1.contains("Name("),
            "{}",
            got.1
        );
        assert!(
            !got.1.contains('\n') && !got.1.contains("os error"),
            "{}",
            got.1
        );
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
