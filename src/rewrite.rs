//! Request and response header rewriting: hop-by-hop removal (RFC 9110
//! §7.6.1), `Host` in host mode, `X-Chocon-Id` and `X-Chocon-Ver`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `X-Chocon-Id`: the request id, kept or generated, echoed on the response.
pub static CHOCON_ID: HeaderName = HeaderName::from_static("x-chocon-id");
/// `X-Chocon-Ver`: added upstream; its presence on an incoming request means a loop.
pub static CHOCON_VER: HeaderName = HeaderName::from_static("x-chocon-ver");

/// Headers that describe one connection, never forwarded.
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including every name listed in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none: one pass over the names is cheaper than a
    // hashed removal of each hop-by-hop name.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// Headers whose value changes with every request (or is a secret): an
/// HTTP/2 upstream sends them "never indexed", so they neither churn the
/// HPACK table (every insert evicts an entry the next request could have
/// reused) nor sit in it.
static NEVER_INDEXED: [HeaderName; 5] = [
    HeaderName::from_static("x-chocon-id"),
    header::AUTHORIZATION,
    HeaderName::from_static("x-amz-date"),
    HeaderName::from_static("x-amz-content-sha256"),
    HeaderName::from_static("x-amz-security-token"),
];

/// Marks the [`NEVER_INDEXED`] headers sensitive (HTTP/2 then never
/// indexes them; HTTP/1.1 ignores the mark).
pub fn never_index(headers: &mut HeaderMap) {
    for name in &NEVER_INDEXED {
        if let header::Entry::Occupied(mut e) = headers.entry(name) {
            for v in e.iter_mut() {
                v.set_sensitive(true);
            }
        }
    }
}

/// The request's id: the client's `X-Chocon-Id` when it is a sane token,
/// else a fresh one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&CHOCON_ID) {
        let ok =
            !v.is_empty() && v.len() <= 128 && v.as_bytes().iter().all(|b| b.is_ascii_graphic());
        if ok {
            return v.clone();
        }
    }
    new_id()
}

/// 24 lowercase hex digits of randomness.
fn new_id() -> HeaderValue {
    let n = fastrand::u128(..);
    let mut buf = [0u8; 24];
    for (i, b) in buf.iter_mut().enumerate() {
        let nibble = ((n >> (i * 4)) & 0xf) as u8;
        *b = if nibble < 10 {
            b'0' + nibble
        } else {
            b'a' + nibble - 10
        };
    }
    HeaderValue::from_bytes(&buf).expect("hex digits are a valid header value")
}

/// The value of `X-Chocon-Ver` sent upstream.
pub fn version_value() -> HeaderValue {
    HeaderValue::from_static(env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_listed_names_go() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "close, X-Foo"),
            ("x-foo", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-keep", "yes"),
            ("authorization", "AWS4-HMAC-SHA256 ..."),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-keep", "authorization"]);
    }

    #[test]
    fn request_id_is_kept_or_generated() {
        let mut h = HeaderMap::new();
        let generated = request_id(&h);
        assert_eq!(generated.len(), 24);
        assert_ne!(generated, request_id(&h), "ids must differ");
        h.insert(&CHOCON_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(&CHOCON_ID, HeaderValue::from_static("has space"));
        assert_ne!(request_id(&h), "has space");
    }
}
