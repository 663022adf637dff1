//! Request shaping for the connection a request got: HTTP/1.1 wants an
//! origin-form target and `Host`, HTTP/2 an absolute URI and no `Host`; and
//! what a retry needs (which failures are retryable, the head to resend).

use http::Request;

use super::replay::Replay;
use crate::body::ProxyBody;
use crate::route::Scheme;

/// HTTP/2 wants an absolute URI (`:scheme`, `:authority`) and no `Host`.
pub(super) fn to_h2_form(req: &mut Request<ProxyBody>, scheme: Scheme) {
    if let Some(signal) = req.extensions_mut().remove::<crate::body::ContinueSignal>() {
        // HTTP/2 origins do not answer `Expect: 100-continue`; send the body now.
        req.headers_mut().remove(http::header::EXPECT);
        signal.0.notify_one();
    }
    let Some(host) = req.headers_mut().remove(http::header::HOST) else {
        return;
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(host) = host.to_str() else { return };
    if let Ok(uri) = format!("{}://{host}{path}", scheme.as_str()).parse() {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = http::Version::HTTP_2;
}

/// HTTP/1.1 upstream: origin-form target and a `Host` header.
pub(super) fn to_h1_form(req: &mut Request<ProxyBody>) {
    *req.version_mut() = http::Version::HTTP_11;
    if let Some(auth) = req.uri().authority().cloned() {
        if let Ok(v) = http::HeaderValue::from_str(auth.as_str()) {
            req.headers_mut().insert(http::header::HOST, v);
        }
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        if let Ok(uri) = path.parse() {
            *req.uri_mut() = uri;
        }
    }
}

/// The connection broke under the request (closed, reset, EOF without TLS
/// close_notify) rather than the origin answering badly.
pub(super) fn is_retryable(err: &hyper::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    if err.is_canceled() || err.is_closed() || err.is_incomplete_message() {
        return true;
    }
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
            );
        }
        source = e.source();
    }
    false
}

/// How an HTTP/2 origin said it did not process a stream (RFC 9113 §8.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The stream was above the last stream id of the origin's GOAWAY.
    GoAway,
    /// The origin reset the stream with `REFUSED_STREAM`.
    RefusedStream,
}

/// Whether `err` says the origin did not process the request: a GOAWAY or
/// `REFUSED_STREAM` received from the origin. h2 gives a stream the GOAWAY
/// error only when its id is above the frame's last stream id, so a stream
/// the origin accepted never reads as refused; a GOAWAY or reset that h2
/// itself sent (a local protocol error) does not count.
pub(super) fn refusal(err: &hyper::Error) -> Option<Refusal> {
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            if !h2.is_remote() {
                return None;
            }
            if h2.is_go_away() {
                return Some(Refusal::GoAway);
            }
            if h2.is_reset() && h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return Some(Refusal::RefusedStream);
            }
            return None;
        }
        source = e.source();
    }
    None
}

/// A copy of a request's head, to send it again.
pub(super) fn clone_head(req: &Request<ProxyBody>) -> http::request::Parts {
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = req.method().clone();
    parts.uri = req.uri().clone();
    parts.version = req.version();
    parts.headers = req.headers().clone();
    parts
}

/// The request again from its copied head, with the replay copy of its
/// body (none: bodyless).
pub(super) fn rebuild(parts: http::request::Parts, body: Option<&Replay>) -> Request<ProxyBody> {
    let body = body.map_or_else(crate::body::empty, Replay::body);
    Request::from_parts(parts, body)
}
