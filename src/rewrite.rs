//! Request and response header rewriting: hop-by-hop removal (RFC 9110
//! §7.6.1), `Host` in host mode, `X-Chocon-Id` and `X-Chocon-Ver`.

use std::collections::HashSet;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `X-Chocon-Id`: the request id, kept or generated, echoed on the response.
pub static CHOCON_ID: HeaderName = HeaderName::from_static("x-chocon-id");
/// `X-Chocon-Ver`: added upstream; its presence on an incoming request means a loop.
pub static CHOCON_VER: HeaderName = HeaderName::from_static("x-chocon-ver");

/// Headers that describe one connection, never forwarded.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    // A match on the text: a length switch and one comparison, where a scan
    // of eight `HeaderName`s compared each (about 1,600 instructions per
    // response over its ten-odd names).
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// `value` (of `Connection`) lists `token`, compared case-insensitively.
pub fn lists_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Removes hop-by-hop headers, including every name listed in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages have none, or only `Connection: keep-alive` (or
    // `close`): one pass over the names tells, and those need no more.
    let (mut present, mut connection) = (0, false);
    for name in headers.keys() {
        if is_hop_by_hop(name) {
            present += 1;
            connection |= name == header::CONNECTION;
        }
    }
    if present == 0 {
        return;
    }
    if present == 1 && connection && lists_only_keep_alive_or_close(headers) {
        headers.remove(header::CONNECTION);
        return;
    }
    // The names `Connection` lists, gathered once into a set, then one pass
    // over the names picks the doomed ones: linear in the head, where
    // checking every name against every listed token was quadratic (a
    // 62 KB head cost over a second). Only the names present are removed
    // (a removal hashes the name), and `Connection` goes last.
    let listed = connection_tokens(headers);
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| *k != header::CONNECTION && (is_hop_by_hop(k) || listed.contains(*k)))
        .cloned()
        .collect();
    for name in &doomed {
        headers.remove(name);
    }
    headers.remove(header::CONNECTION);
}

/// Every header name the `Connection` values list (tokens that are not
/// header names are skipped), each once.
fn connection_tokens(headers: &HeaderMap) -> HashSet<HeaderName> {
    let mut listed = HashSet::new();
    for value in headers.get_all(header::CONNECTION) {
        for token in value.as_bytes().split(|&b| b == b',') {
            if let Ok(name) = HeaderName::from_bytes(token.trim_ascii()) {
                listed.insert(name);
            }
        }
    }
    listed
}

/// `Connection` names nothing but `keep-alive` and `close`.
fn lists_only_keep_alive_or_close(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().all(|v| {
        v.as_bytes().split(|&b| b == b',').all(|t| {
            let t = t.trim_ascii();
            t.eq_ignore_ascii_case(b"keep-alive") || t.eq_ignore_ascii_case(b"close")
        })
    })
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
    #[allow(clippy::expect_used, reason = "the proxy's own hex digits")]
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
        // Removal moves entries (HeaderMap removes by swapping); the order
        // of different names carries no meaning.
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["authorization", "x-keep"]);
    }

    #[test]
    fn connection_keep_alive_alone_goes_and_a_listed_name_still_goes() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("Keep-Alive"));
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), [header::CONTENT_LENGTH]);

        // `Connection` alone, but listing a header that is present.
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("close"));
        h.append(header::CONNECTION, HeaderValue::from_static("x-trace"));
        h.append(
            HeaderName::from_static("x-trace"),
            HeaderValue::from_static("1"),
        );
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), [header::CONTENT_LENGTH]);
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
