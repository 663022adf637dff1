//! How one value of a line is written: Apache escaping or JSON, `-` or
//! `null` for what is unknown. Values borrow from the `Record`; nothing here
//! allocates (the percent-decoded path reuses the format's scratch buffer).

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::header::{GetAll, HeaderName, HeaderValue};
use http::{HeaderMap, Uri, Version};

use super::Record;
use super::line_bytes::{put_ipv4, put_uint};

/// How a value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Enc {
    /// Apache escaping; unknown is `-`.
    Apache,
    /// JSON; unknown is `null`.
    Json,
    /// JSON; unknown text is `""` (chocon's Go strings are never null).
    JsonText,
}

/// A text value.
pub(super) fn text(s: &str) -> Value<'_> {
    Value::Text(Text::Bytes(s.as_bytes()))
}

/// A constant text that needs no escaping (a version, a protocol name).
pub(super) fn plain(s: &'static str) -> Value<'static> {
    debug_assert!(is_plain(s.as_bytes()), "{s:?}");
    Value::Text(Text::Plain(s.as_bytes()))
}

/// A text value; unknown when empty.
pub(super) fn non_empty(s: &str) -> Value<'_> {
    if s.is_empty() {
        Value::Missing
    } else {
        text(s)
    }
}

/// Every value of a header; unknown when absent.
pub(super) fn headers<'a>(map: &'a HeaderMap, name: &HeaderName) -> Value<'a> {
    if map.contains_key(name) {
        Value::Text(Text::Headers(map.get_all(name)))
    } else {
        Value::Missing
    }
}

/// `HTTP/1.1` and friends, as in a request line.
pub(super) fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// One value of a line, before encoding.
pub(super) enum Value<'a> {
    Missing,
    Uint(u64),
    /// Milliseconds with three decimals (microsecond resolution).
    Millis(Duration),
    /// Shortest round-trip decimal, as Go's `strconv.FormatFloat(f, 'f', -1, 64)`.
    Float(f64),
    Bool(bool),
    Text(Text<'a>),
}

/// A value written as (escaped) text.
pub(super) enum Text<'a> {
    Bytes(&'a [u8]),
    /// Bytes known to need no escaping in either encoding (`is_plain`).
    Plain(&'a [u8]),
    /// Every value of one header, joined with `, ` as Apache merges them.
    Headers(GetAll<'a, HeaderValue>),
    Ip(IpAddr),
    IpGo(IpAddr),
    Addr(SocketAddr),
    /// The request target as the client sent it (`:path` for HTTP/2).
    Target(&'a Uri, Version),
    RequestLine(&'a Record),
    /// `?query`, or nothing.
    Query(&'a Uri),
    DecodedPath(&'a str),
}

/// Appends `value` to `out` in the encoding `enc`.
pub(super) fn put(out: &mut Vec<u8>, enc: Enc, value: Value<'_>, scratch: &mut Vec<u8>) {
    match value {
        Value::Missing => out.extend_from_slice(match enc {
            Enc::Apache => b"-",
            Enc::Json => b"null",
            Enc::JsonText => b"\"\"",
        }),
        Value::Uint(n) => put_uint(out, n),
        Value::Millis(d) => {
            let millis = d
                .as_secs()
                .saturating_mul(1000)
                .saturating_add(d.subsec_millis().into());
            put_uint(out, millis);
            let frac = d.subsec_micros() % 1000;
            out.extend_from_slice(&[
                b'.',
                b'0' + (frac / 100) as u8,
                b'0' + (frac / 10 % 10) as u8,
                b'0' + (frac % 10) as u8,
            ]);
        }
        Value::Float(f) => {
            let _ = write!(out, "{f}");
        }
        Value::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Value::Text(t) if enc == Enc::Apache => {
            put_text(&mut Escaper { out, json: false }, t, scratch)
        }
        Value::Text(t) => {
            out.push(b'"');
            put_text(&mut Escaper { out, json: true }, t, scratch);
            out.push(b'"');
        }
    }
}

fn put_text(w: &mut Escaper<'_>, t: Text<'_>, scratch: &mut Vec<u8>) {
    match t {
        Text::Bytes(b) => w.bytes(b),
        Text::Plain(b) => w.out.extend_from_slice(b),
        Text::Headers(all) => {
            for (i, v) in all.iter().enumerate() {
                if i > 0 {
                    w.bytes(b", ");
                }
                w.bytes(v.as_bytes());
            }
        }
        Text::Ip(IpAddr::V4(ip)) => put_ipv4(w.out, ip),
        Text::Ip(ip) => {
            let _ = write!(w, "{ip}");
        }
        Text::IpGo(IpAddr::V6(ip)) => {
            let _ = write!(w, "[{ip}]");
        }
        Text::IpGo(ip) => {
            let _ = write!(w, "{ip}");
        }
        Text::Addr(SocketAddr::V4(addr)) => {
            put_ipv4(w.out, *addr.ip());
            w.out.push(b':');
            put_uint(w.out, addr.port().into());
        }
        Text::Addr(addr) => {
            let _ = write!(w, "{addr}");
        }
        Text::Target(uri, v) => put_target(w, uri, v),
        Text::RequestLine(r) => {
            w.bytes(r.method.as_str().as_bytes());
            // The space and the version are plain in both encodings.
            w.out.push(b' ');
            put_target(w, &r.uri, r.version);
            w.out.push(b' ');
            w.out.extend_from_slice(version(r.version).as_bytes());
        }
        Text::Query(uri) => {
            if let Some(q) = uri.query() {
                w.bytes(b"?");
                w.bytes(q.as_bytes());
            }
        }
        Text::DecodedPath(path) => {
            scratch.clear();
            percent_decode(path.as_bytes(), scratch);
            w.bytes(scratch);
        }
    }
}

fn put_target(w: &mut Escaper<'_>, uri: &Uri, v: Version) {
    // hyper fills in scheme and authority for HTTP/2; the client sent `:path`.
    if v >= Version::HTTP_2 {
        w.bytes(
            uri.path_and_query()
                .map_or("/", |pq| pq.as_str())
                .as_bytes(),
        );
    } else {
        // What `Uri`'s `Display` writes, without the `fmt` machinery.
        if let Some(scheme) = uri.scheme_str() {
            w.bytes(scheme.as_bytes());
            w.bytes(b"://");
        }
        if let Some(authority) = uri.authority() {
            w.bytes(authority.as_str().as_bytes());
        }
        w.bytes(uri.path().as_bytes());
        if let Some(query) = uri.query() {
            w.bytes(b"?");
            w.bytes(query.as_bytes());
        }
    }
}

/// `%XX` → byte; anything else (including a broken `%`) is kept as is.
fn percent_decode(s: &[u8], out: &mut Vec<u8>) {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%'
            && let (Some(h), Some(l)) = (
                s.get(i + 1).and_then(|&b| hex(b)),
                s.get(i + 2).and_then(|&b| hex(b)),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
}

/// Writes text escaped for the encoding; also a `fmt::Write` for `Display` values.
struct Escaper<'a> {
    out: &'a mut Vec<u8>,
    json: bool,
}

impl Escaper<'_> {
    fn bytes(&mut self, b: &[u8]) {
        if self.json {
            escape_json(self.out, b)
        } else {
            escape_apache(self.out, b)
        }
    }
}

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.bytes(s.as_bytes());
        Ok(())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Bytes written as they are by both escapings: printable ASCII but `"` and `\`.
static PLAIN: [bool; 256] = {
    let mut plain = [false; 256];
    let mut b = 0x20;
    while b < 0x7f {
        plain[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    plain
};

/// Whether every byte of `s` is `PLAIN`; eight bytes at a time (each test
/// below is exact for the word as a whole, which is all that is asked).
pub(super) fn is_plain(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let mut words = s.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(word);
        let x = u64::from_ne_bytes(bytes);
        // A byte below 0x20; a byte of 0x7f or more (a carry out of 0xff
        // only happens when that byte already has its high bit set).
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
        let high = (x | x.wrapping_add(ONES)) & HIGH;
        if control | high != 0
            || has_zero(x ^ (ONES * u64::from(b'"')))
            || has_zero(x ^ (ONES * u64::from(b'\\')))
        {
            return false;
        }
    }
    words.remainder().iter().all(|&b| PLAIN[usize::from(b)])
}

/// Apache's `ap_escape_logitem`.
fn escape_apache(out: &mut Vec<u8>, s: &[u8]) {
    if is_plain(s) {
        out.extend_from_slice(s);
        return;
    }
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        if PLAIN[usize::from(b)] {
            continue;
        }
        out.extend_from_slice(&s[start..i]);
        start = i + 1;
        let short = match b {
            b'"' | b'\\' => b,
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0b => b'v',
            _ => {
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]);
                continue;
            }
        };
        out.extend_from_slice(&[b'\\', short]);
    }
    out.extend_from_slice(&s[start..]);
}

/// JSON string contents; each byte that is not part of valid UTF-8 becomes
/// U+FFFD (as Go's encoders do), so the output is always valid JSON.
fn escape_json(out: &mut Vec<u8>, s: &[u8]) {
    if is_plain(s) {
        out.extend_from_slice(s);
        return;
    }
    for chunk in s.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        let mut start = 0;
        for (i, &b) in valid.iter().enumerate() {
            if b >= 0x20 && b != b'"' && b != b'\\' {
                continue;
            }
            out.extend_from_slice(&valid[start..i]);
            start = i + 1;
            match b {
                b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                _ => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]),
            }
        }
        out.extend_from_slice(&valid[start..]);
        for _ in chunk.invalid() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apache_escaping() {
        let cases: [(&[u8], &str); 8] = [
            (b"plain text/;=+", "plain text/;=+"),
            (b"\"quoted\" back\\slash", r#"\"quoted\" back\\slash"#),
            (b"\n\r\t\x08\x0b", r"\n\r\t\b\v"),
            (b"\0\x01\x1b\x1f\x7f", r"\x00\x01\x1b\x1f\x7f"),
            ("é漢".as_bytes(), r"\xc3\xa9\xe6\xbc\xa2"),
            (b"\xff\xfe", r"\xff\xfe"),
            (b"", ""),
            (b"%41 is not decoded", "%41 is not decoded"),
        ];
        for (input, want) in cases {
            let mut out = Vec::new();
            escape_apache(&mut out, input);
            assert_eq!(
                String::from_utf8(out).expect("ASCII"),
                want,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn json_escaping_is_valid_json_for_every_byte() {
        for b in 0..=255u8 {
            let input = [b'a', b, b'z'];
            let mut out = b"\"".to_vec();
            escape_json(&mut out, &input);
            out.push(b'"');
            let parsed: String =
                serde_json::from_slice(&out).unwrap_or_else(|e| panic!("byte {b:#x}: {e}"));
            assert_eq!(parsed, String::from_utf8_lossy(&input), "byte {b:#x}");
        }
        let mut out = Vec::new();
        escape_json(&mut out, "\"\\\n\r\t\x08 é \u{2028}".as_bytes());
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            "\\\"\\\\\\n\\r\\t\\u0008 é \u{2028}"
        );
        let mut out = Vec::new();
        // Go writes one U+FFFD per invalid byte; so do we.
        escape_json(&mut out, b"\xe2\x82 \xff");
        assert_eq!(out, b"\\ufffd\\ufffd \\ufffd");
    }

    /// The byte-at-a-time definition `is_plain` must agree with.
    fn plain_bytewise(s: &[u8]) -> bool {
        s.iter()
            .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    }

    #[test]
    fn plain_words_find_every_special_byte_anywhere() {
        for len in 0..40 {
            let base = vec![b'a'; len];
            assert!(is_plain(&base));
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut s = base.clone();
                    s[at] = b;
                    assert_eq!(
                        is_plain(&s),
                        plain_bytewise(&s),
                        "byte {b:#x} at {at} of {len}"
                    );
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn plain_words_agree_with_bytes(s in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            proptest::prop_assert_eq!(is_plain(&s), plain_bytewise(&s));
        }

        #[test]
        fn plain_words_agree_on_near_plain_text(s in "[ -~\\x00-\\x1f\\x7f\\u{80}-\\u{ff}]{0,40}") {
            proptest::prop_assert_eq!(is_plain(s.as_bytes()), plain_bytewise(s.as_bytes()));
        }
    }

    #[test]
    fn percent_decoding_keeps_broken_escapes() {
        let mut out = Vec::new();
        percent_decode(b"/a%20b%2Fc%zz%4%e2%82%ac", &mut out);
        assert_eq!(out, "/a b/c%zz%4€".as_bytes());
    }
}
