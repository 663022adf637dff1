//! Who a request is from, for per-client metrics and `--rate-limit`: one
//! function, so the budget and the accounting always agree. Pure.
//!
//! Only what the proxy checked or the operator vouched for names a client:
//! a client the signer verified (`--sign-client-credentials`), a PROXY v2
//! header from a `--trust-proxy` balancer, or a header the operator named.
//! The access key id in an `Authorization` header or a pre-signed URL is a
//! claim nobody has checked yet (AWS checks it later, after the budget was
//! charged), so it never picks a budget: a client rotating made-up key ids
//! stays on its address's budget, and one that names another client's key
//! id spends its own.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::accesslog::Record;
use crate::config::ClientKey;
use crate::identity::account::account_of;

/// Longest client key kept; a longer header value falls back to the address.
pub const MAX_KEY_BYTES: usize = 128;

/// The client key of `record`.
///
/// `Auto`: the verified client's name (else its access key id), else the
/// client IP address.
/// `Account`: the AWS account of the verified client's access key id (its
/// name when the key id carries no account), else the client IP address.
/// `Header(name)`: that request header's first value (visible ASCII, at most
/// `MAX_KEY_BYTES`), else the client IP address. The header must be among the
/// record's `request_headers` (see `Metrics::request_headers`).
/// `Vpce`: the VPC endpoint id of the connection's PROXY v2 header, else the
/// client IP address.
pub fn client_key<'a>(source: &ClientKey, record: &'a Record) -> Cow<'a, str> {
    let named = match source {
        ClientKey::Auto => record
            .verified
            .as_ref()
            .map(|v| Cow::Borrowed(v.name.as_deref().unwrap_or(&v.access_key_id))),
        ClientKey::Account => record.verified.as_ref().map(|v| {
            account_of(&v.access_key_id).map_or_else(
                || Cow::Borrowed(v.name.as_deref().unwrap_or(&v.access_key_id)),
                |digits| Cow::Owned(digits.iter().map(|&d| char::from(d)).collect()),
            )
        }),
        ClientKey::Header(name) => record
            .request_headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| is_plain(v))
            .map(Cow::Borrowed),
        ClientKey::Vpce => record
            .via
            .as_ref()
            .and_then(|v| v.vpce.as_ref())
            .map(|v| Cow::Borrowed(v.as_str())),
    };
    named.unwrap_or_else(|| Cow::Owned(address_key(record.client.ip())))
}

fn is_plain(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_KEY_BYTES
        && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

/// The address as a key; an IPv4-mapped IPv6 address is written as IPv4 so
/// one client has one key on a dual-stack listener.
fn address_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        // Every request takes this path: digits by hand, not `Display`.
        IpAddr::V4(v4) => {
            let mut key = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    key.push('.');
                }
                key.push_str(itoa::Buffer::new().format(octet));
            }
            key
        }
        v6 => v6.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, SystemTime};

    use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};

    use super::*;
    use crate::identity::verified::VerifiedClient;
    use crate::scope::CredentialScope;

    fn record(peer: &str, uri: &str, scope: Option<&str>, headers: &[(&str, &[u8])]) -> Record {
        let mut request_headers = HeaderMap::new();
        for (name, value) in headers {
            request_headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        Record {
            received: SystemTime::UNIX_EPOCH,
            duration: Duration::ZERO,
            client: peer.parse::<SocketAddr>().unwrap(),
            via: None,
            local_port: 3000,
            method: Method::GET,
            uri: uri.parse::<Uri>().unwrap(),
            version: Version::HTTP_11,
            host: String::new(),
            status: 200,
            bytes_sent: 0,
            bytes_received: 0,
            request_headers,
            response_headers: HeaderMap::new(),
            request_id: String::new(),
            origin: None,
            upstream: None,
            scope: scope.map(|ak| CredentialScope {
                access_key: ak.to_owned(),
                ..Default::default()
            }),
            verified: None,
            error: None,
        }
    }

    fn verified(key: &str, name: Option<&str>) -> Option<VerifiedClient> {
        Some(VerifiedClient {
            access_key_id: key.to_owned(),
            name: name.map(str::to_owned),
        })
    }

    #[test]
    fn claims_never_name_a_client() {
        let presigned = "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAPRESIGNED%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=x";
        for mode in [ClientKey::Auto, ClientKey::Account] {
            for (peer, uri, scope, want) in [
                (
                    "10.0.0.1:5000",
                    "/",
                    Some("ASIAY34FZKBOKMUTVV7A"),
                    "10.0.0.1",
                ),
                ("10.0.0.1:5000", presigned, None, "10.0.0.1"),
                ("[::ffff:10.0.0.2]:5000", "/", None, "10.0.0.2"),
                (
                    "[2001:db8::1]:5000",
                    "/",
                    Some("AKIAEXAMPLE"),
                    "2001:db8::1",
                ),
            ] {
                let rec = record(peer, uri, scope, &[]);
                assert_eq!(client_key(&mode, &rec), want, "{mode:?} {peer} {uri}");
            }
        }
    }

    #[test]
    fn a_verified_client_is_one_key_whatever_its_address() {
        for peer in ["10.0.0.1:5000", "192.0.2.9:1"] {
            let mut rec = record(peer, "/", Some("AKIACLAIMED"), &[]);
            rec.verified = verified("ASIAY34FZKBOKMUTVV7A", Some("team-a"));
            assert_eq!(client_key(&ClientKey::Auto, &rec), "team-a");
            assert_eq!(client_key(&ClientKey::Account, &rec), "609629065308");
            rec.verified = verified("ASIAY34FZKBOKMUTVV7A", None);
            assert_eq!(client_key(&ClientKey::Auto, &rec), "ASIAY34FZKBOKMUTVV7A");
            // A key id without an account falls back to the name, then the id.
            rec.verified = verified("AKIDTEST", Some("team-b"));
            assert_eq!(client_key(&ClientKey::Account, &rec), "team-b");
            rec.verified = verified("AKIDTEST", None);
            assert_eq!(client_key(&ClientKey::Account, &rec), "AKIDTEST");
        }
    }

    #[test]
    fn the_claim_kept_for_the_log_is_the_headers_else_the_urls() {
        let cases = [
            ("/", Some("AKIAEXAMPLE"), Some("AKIAEXAMPLE")),
            ("/", None, None),
            (
                "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAPRESIGNED%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=x",
                None,
                Some("ASIAPRESIGNED"),
            ),
            (
                "/b/k?X-Amz-Credential=AKLOWER%2f20240101%2fr%2fs3%2faws4_request",
                None,
                Some("AKLOWER"),
            ),
            (
                "/b/k?X-Amz-Credential=AKSLASH/20240101/r/s3/aws4_request",
                None,
                Some("AKSLASH"),
            ),
            // The header's scope wins over the URL's.
            (
                "/b/k?X-Amz-Credential=AKURL%2F2024",
                Some("AKHEADER"),
                Some("AKHEADER"),
            ),
            // Garbage credentials are no claim.
            ("/?X-Amz-Credential=%2F2024", None, None),
            ("/?X-Amz-Credential=A%22K%2F2024", None, None),
            ("/?X-Amz-Credential=NOSLASH", None, None),
            ("/?x=1&Y-X-Amz-Credential=AK%2F1", None, None),
        ];
        for (uri, scope, want) in cases {
            let rec = record("10.0.0.1:5000", uri, scope, &[]);
            assert_eq!(rec.claimed_access_key(), want, "{uri} {scope:?}");
        }
    }

    #[test]
    fn vpce_key_needs_a_vpce_else_address() {
        let mut rec = record("192.0.2.7:1", "/", Some("AKIAEXAMPLE"), &[]);
        assert_eq!(client_key(&ClientKey::Vpce, &rec), "192.0.2.7");
        rec.via = Some(std::sync::Arc::new(crate::identity::Via {
            addr: "10.0.0.5:1".parse().unwrap(),
            vpce: None,
        }));
        assert_eq!(client_key(&ClientKey::Vpce, &rec), "192.0.2.7");
        rec.via = Some(std::sync::Arc::new(crate::identity::Via {
            addr: "10.0.0.5:1".parse().unwrap(),
            vpce: crate::identity::Vpce::new(b"vpce-0abc"),
        }));
        assert_eq!(client_key(&ClientKey::Vpce, &rec), "vpce-0abc");
    }

    type Headers<'a> = &'a [(&'a str, &'a [u8])];

    #[test]
    fn header_source_uses_the_first_plain_value_else_address() {
        let tenant = ClientKey::Header(HeaderName::from_static("x-tenant"));
        let long = "t".repeat(MAX_KEY_BYTES + 1);
        let cases: [(Headers, &str); 7] = [
            (&[("x-tenant", b"team-a")], "team-a"),
            (&[("x-tenant", b"  team-b ")], "team-b"),
            (&[("x-tenant", b"first"), ("x-tenant", b"second")], "first"),
            (&[("x-tenant", b"")], "192.0.2.7"),
            (&[("x-tenant", b"caf\xc3\xa9")], "192.0.2.7"),
            (&[("x-tenant", long.as_bytes())], "192.0.2.7"),
            (&[("x-other", b"team-a")], "192.0.2.7"),
        ];
        for (headers, want) in cases {
            // The header source ignores the SigV4 scope.
            let rec = record("192.0.2.7:1", "/", Some("AKIAEXAMPLE"), headers);
            assert_eq!(client_key(&tenant, &rec), want, "{headers:?}");
        }
    }
}
