//! The entry functions of the fuzz targets in `fuzz/`: each takes arbitrary
//! bytes and must return without a panic. `tests/fuzz_corpus.rs` feeds every
//! file of every corpus through the same functions, so `make test` replays
//! what the fuzzers found. Not part of the API.
#![allow(
    clippy::expect_used,
    reason = "a fuzz target panics on purpose when a property fails"
)]

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Request, Uri, Version};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};

use crate::accesslog::format::Format;
use crate::config::{AWS_PATTERNS, RouteConfig};
use crate::identity::proxy_protocol::{Opening, opening, parse};
use crate::origin::{Origin, validate_host};
use crate::pattern::HostPattern;
use crate::proxy::phase;
use crate::route::{Route, Router};
use crate::scope::CredentialScope;
use crate::sign::{ChunkSigner, Resigned};

/// A fuzz target's entry: any bytes, no panic.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name (as in `fuzz/Cargo.toml` and `fuzz/corpus/`).
pub const TARGETS: [(&str, Target); 7] = [
    ("route", route),
    ("scope", scope),
    ("logformat", logformat),
    ("chunked", chunked),
    ("h2c_authority", h2c_authority),
    ("proxy_header", proxy_header),
    ("head", head),
];

fn router(upstream: bool) -> &'static Router {
    static PLAIN: OnceLock<Router> = OnceLock::new();
    static UPSTREAM: OnceLock<Router> = OnceLock::new();
    let (cell, upstream) = if upstream {
        (
            &UPSTREAM,
            Some(Origin::from_url("https://upstream.test").expect("a valid URL")),
        )
    } else {
        (&PLAIN, None)
    };
    cell.get_or_init(|| {
        Router::new(&RouteConfig {
            upstream,
            https_upgrade: AWS_PATTERNS.iter().map(|p| p.to_string()).collect(),
        })
        .expect("the default patterns compile")
    })
}

/// Host and request target (`HOST\nTARGET`) through the router, and the
/// host text through every host parser: a route or an error.
pub fn route(data: &[u8]) {
    let router = router(false);
    let split = data.iter().position(|b| *b == b'\n').unwrap_or(data.len());
    let (host, target) = data.split_at(split);
    let target = target.get(1..).unwrap_or_default();
    let uri = Uri::try_from(target).unwrap_or_else(|_| Uri::from_static("/"));
    for method in [Method::GET, Method::CONNECT] {
        let _ = router.route(&method, &uri, Some(host), 3000);
        let _ = router.route(&method, &uri, None, 3000);
    }
    if let Ok(text) = std::str::from_utf8(host) {
        let _ = validate_host(text);
        let _ = Origin::from_url(text);
        let _ = HostPattern::parse(text);
    }
}

/// A client's `Authorization` header (and a bare credential) through the
/// SigV4 scope parser.
pub fn scope(data: &[u8]) {
    let _ = CredentialScope::from_authorization(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = CredentialScope::from_credential(text);
    }
}

/// An operator's `--access-log-format`: compiles or fails with a position.
pub fn logformat(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Format::compile(text);
    }
}

/// A client's `aws-chunked` body through the re-signer, cut into frames at
/// the sizes the first byte picks. A body it accepts keeps its length (a
/// signature is always 64 hex digits); anything else fails the body.
pub fn chunked(data: &[u8]) {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let frames: Vec<Result<Frame<Bytes>, crate::body::BoxError>> = body
        .chunks(step)
        .map(|piece| Ok(Frame::data(Bytes::copy_from_slice(piece))))
        .collect();
    let inner = StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
    let signer = ChunkSigner::new(
        "secret",
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        "us-east-1",
        "s3",
        "0".repeat(64),
    );
    let resigned = Resigned::new(inner, signer, false, 1 << 16);
    let collected = resigned
        .collect()
        .now_or_never()
        .expect("every frame is ready at once");
    if let Ok(out) = collected {
        assert_eq!(
            out.to_bytes().len(),
            body.len(),
            "re-signing keeps the length"
        );
    }
}

/// An h2c request (`AUTHORITY\nPATH\nHOST`, the Host line optional) through
/// the route phase and, when it routes, the build phase's head: the
/// upstream request always gets a Host and an origin-form target.
pub fn h2c_authority(data: &[u8]) {
    let mut lines = data.splitn(3, |b| *b == b'\n');
    let (Some(authority), path, host) = (lines.next(), lines.next(), lines.next()) else {
        return;
    };
    let Ok(authority) = Authority::try_from(authority) else {
        return;
    };
    let path = match path {
        Some(p) => match PathAndQuery::try_from(p) {
            Ok(p) => p,
            Err(_) => return,
        },
        None => PathAndQuery::from_static("/"),
    };
    let Ok(uri) = Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path)
        .build()
    else {
        return;
    };
    let host = host.and_then(|h| HeaderValue::from_bytes(h).ok());
    let request = || {
        let mut builder = Request::builder().version(Version::HTTP_2).uri(uri.clone());
        if let Some(host) = &host {
            builder = builder.header(header::HOST, host.clone());
        }
        builder.body(()).ok()
    };
    let Some(req) = request() else {
        return;
    };
    for upstream in [false, true] {
        if let Ok(Route::Proxy { origin, mode }) = phase::route(router(upstream), 3000, &req) {
            let (mut parts, ()) = request().expect("built once already").into_parts();
            if phase::build_head(&mut parts, &origin, mode, &HeaderValue::from_static("fuzz"))
                .is_err()
            {
                continue;
            }
            assert!(parts.headers.contains_key(header::HOST));
            assert!(parts.uri.authority().is_none(), "origin-form target");
        }
    }
}

/// PROXY protocol v1/v2 headers: any bytes give a header, "need more", or a
/// `HeaderError`; a header never claims more bytes than it was given, parses
/// the same from exactly its own bytes, and its prefixes ask for more rather
/// than fail.
pub fn proxy_header(data: &[u8]) {
    let _ = opening(data);
    let Ok(Some((header, len))) = parse(data) else {
        return;
    };
    assert!(
        len <= data.len(),
        "header of {len} bytes in {} bytes",
        data.len()
    );
    assert_ne!(opening(data), Opening::Other);
    assert_eq!(parse(&data[..len]), Ok(Some((header, len))));
    for cut in [0, len / 2, len.saturating_sub(1)] {
        if cut < len {
            assert_eq!(parse(&data[..cut]), Ok(None), "prefix of {cut} bytes");
        }
    }
    if let Some(vpce) = header.vpce {
        assert!(vpce.as_str().bytes().all(|b| b.is_ascii_graphic()));
    }
}

/// A client's request head through every phase that reads it before the
/// upstream request: framing check, route and build. The first byte picks
/// the form: even, the rest is a raw HTTP/1.1 head (parsed by httparse, as
/// hyper does); odd, an h2 header block as `name value` lines, the
/// pseudo-headers (`:method`, `:scheme`, `:authority`, `:path`) among them.
/// A head that routes either builds an upstream head with a Host and an
/// origin-form target, or fails with an error; it never panics.
pub fn head(data: &[u8]) {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    let req = if form % 2 == 0 {
        http1_head(rest)
    } else {
        h2_head(rest)
    };
    let Some(req) = req else {
        return;
    };
    for upstream in [false, true] {
        if phase::check_framing(req.headers()).is_err() {
            return;
        }
        let Ok(Route::Proxy { origin, mode }) = phase::route(router(upstream), 3000, &req) else {
            continue;
        };
        let (mut parts, ()) = copy(&req).into_parts();
        if phase::build_head(&mut parts, &origin, mode, &HeaderValue::from_static("fuzz")).is_ok() {
            assert!(parts.headers.contains_key(header::HOST));
            assert!(parts.uri.authority().is_none(), "origin-form target");
            let target = parts.uri.path_and_query().map_or("", |p| p.as_str());
            assert!(
                target.starts_with('/') || target == "*",
                "origin-form target {target:?}"
            );
        }
    }
}

/// A raw HTTP/1.1 head as hyper would hand it on, or `None` where hyper
/// would answer 400 itself.
fn http1_head(bytes: &[u8]) -> Option<Request<()>> {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut parsed = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(_) = parsed.parse(bytes).ok()? else {
        return None;
    };
    let mut builder = Request::builder()
        .method(Method::from_bytes(parsed.method?.as_bytes()).ok()?)
        .uri(Uri::try_from(parsed.path?).ok()?)
        .version(Version::HTTP_11);
    for h in parsed.headers.iter() {
        builder = builder.header(h.name, HeaderValue::from_bytes(h.value).ok()?);
    }
    builder.body(()).ok()
}

/// An h2 header block (`name value` per line) as the h2 crate would hand
/// it on: the pseudo-headers make the method and URI (an empty `:path` is
/// refused, as h2 does), the rest are headers.
fn h2_head(bytes: &[u8]) -> Option<Request<()>> {
    let mut method = Method::GET;
    let mut uri = Uri::builder();
    let mut builder = Request::builder().version(Version::HTTP_2);
    for line in bytes.split(|b| *b == b'\n') {
        let split = line.iter().position(|b| *b == b' ').unwrap_or(line.len());
        let (name, value) = line.split_at(split);
        let value = value.get(1..).unwrap_or_default();
        match name {
            b":method" => method = Method::from_bytes(value).ok()?,
            b":scheme" => uri = uri.scheme(value),
            b":authority" => uri = uri.authority(value),
            b":path" if value.is_empty() => return None,
            b":path" => uri = uri.path_and_query(value),
            _ => builder = builder.header(name, HeaderValue::from_bytes(value).ok()?),
        }
    }
    builder.method(method).uri(uri.build().ok()?).body(()).ok()
}

fn copy(req: &Request<()>) -> Request<()> {
    let mut copy = Request::new(());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}
