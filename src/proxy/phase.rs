//! The phases of the request path, in order: route → authenticate → admit →
//! authorize → build → send → respond. Each is a small function of what it reads, so
//! each can be tested alone (and the routing of h2c requests fuzzed).

use std::net::SocketAddr;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, request};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::accesslog::Record;
use crate::body::{BoxError, ProxyBody};
use crate::error::ProxyError;
use crate::exchange::{ContinueGate, Exchange};
use crate::metrics::Metrics;
use crate::origin::Origin;
use crate::policy::{Policy, PolicyError};
use crate::ratelimit::RateLimiter;
use crate::rewrite::{self, CHOCON_ID, CHOCON_VER};
use crate::route::{Mode, Route, RouteError, Router};
use crate::sign::Signer;
use crate::upstream::Upstream;

/// **route**: where `req` goes. For h2c (HTTP/2 other than CONNECT)
/// `:authority` plays the part of Host when there is no Host header; the URI
/// hyper built from the pseudo-headers is not a forward-proxy target, so
/// only its path counts, and it must be a path (`/…`, or `*` for OPTIONS,
/// RFC 9113 §8.3.1).
pub(crate) fn route<B>(
    router: &Router,
    local_port: u16,
    req: &Request<B>,
) -> Result<Route, RouteError> {
    if req.version() == http::Version::HTTP_2 && req.method() != http::Method::CONNECT {
        let authority = req.uri().authority().map(|a| a.as_str().to_owned());
        let host = req
            .headers()
            .get(header::HOST)
            .map(|h| h.as_bytes().to_vec())
            .or(authority.map(String::into_bytes));
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let is_path =
            path.starts_with('/') || (path == "*" && req.method() == http::Method::OPTIONS);
        let path: http::Uri = match path.parse() {
            Ok(uri) if is_path => uri,
            _ => return Err(RouteError::BadTarget(path.to_owned())),
        };
        router.route(req.method(), &path, host.as_deref(), local_port)
    } else {
        router.route(
            req.method(),
            req.uri(),
            req.headers().get(header::HOST).map(|h| h.as_bytes()),
            local_port,
        )
    }
}

/// **authenticate**: a request routed to an origin the proxy signs for must
/// come from a client allowed to have it signed; `client` is the address
/// after PROXY protocol and `--trust-forwarded`.
pub(crate) fn authenticate(
    signer: Option<&Signer>,
    route: &Result<Route, RouteError>,
    client: SocketAddr,
) -> Result<(), ProxyError> {
    let (Some(signer), Ok(Route::Proxy { origin, .. })) = (signer, route) else {
        return Ok(());
    };
    if signer.applies_to(origin) {
        signer.check_client(client.ip())?;
    }
    Ok(())
}

/// **admit**: `--rate-limit` takes one request from the client's budget
/// (keyed like the per-client metrics) before any upstream work. The proxy's
/// own endpoints and unroutable requests are exempt.
pub(crate) async fn admit(
    limiter: Option<&RateLimiter>,
    metrics: &Metrics,
    route: &Result<Route, RouteError>,
    record: &Record,
) -> Result<(), ProxyError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    if !matches!(route, Ok(Route::Proxy { .. } | Route::Connect { .. })) {
        return Ok(());
    }
    limiter
        .admit(&metrics.client_key(record))
        .await
        .map_err(ProxyError::RateLimited)
}

/// Refuses request heads whose meaning a second parser could read
/// differently: several `Host` headers. (Both `Content-Length` and
/// `Transfer-Encoding` never get here: hyper lets chunked win, drops
/// `Content-Length` and closes the connection afterwards, RFC 9112 §6.3.)
pub(crate) fn check_framing(headers: &HeaderMap) -> Result<(), ProxyError> {
    if headers.get_all(header::HOST).iter().nth(1).is_some() {
        return Err(ProxyError::BadFraming("more than one Host header"));
    }
    Ok(())
}

/// **authorize**: a request that already went through a ccnproxy is a loop;
/// the host must match the patterns (`--upstream` was named by the operator
/// and needs none; the address guard still applies when it is resolved);
/// the target must fit `--max-uri-bytes`.
pub(crate) fn authorize<B>(
    policy: &Policy,
    max_uri_bytes: usize,
    origin: &Origin,
    mode: Mode,
    req: &Request<B>,
) -> Result<(), ProxyError> {
    if req.headers().contains_key(&CHOCON_VER) {
        return Err(PolicyError::Loop.into());
    }
    if mode != Mode::Upstream {
        policy.check_origin(&origin.host, origin.port)?;
    }
    if req.uri().path_and_query().map_or(0, |p| p.as_str().len()) > max_uri_bytes {
        return Err(ProxyError::UriTooLong(max_uri_bytes));
    }
    Ok(())
}

/// **build**, the head: hop-by-hop headers out; Host; the ccnproxy headers;
/// an origin-form target. Host mode names the target in Host; the other
/// modes keep the client's Host (it is signed), or its `:authority` when it
/// spoke h2c. Fails (400) only on a target that has no origin form.
pub(crate) fn build_head(
    parts: &mut request::Parts,
    origin: &Origin,
    mode: Mode,
    request_id: &HeaderValue,
) -> Result<(), RouteError> {
    rewrite::strip_hop_by_hop(&mut parts.headers);
    let kept = match mode {
        Mode::Host => None,
        _ => parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        }),
    };
    let host = match kept {
        Some(host) => host,
        None => HeaderValue::from_str(&origin.authority())
            .map_err(|_| RouteError::BadHost(origin.authority()))?,
    };
    parts.headers.insert(header::HOST, host);
    parts.headers.insert(&CHOCON_VER, rewrite::version_value());
    parts.headers.insert(&CHOCON_ID, request_id.clone());
    rewrite::never_index(&mut parts.headers);
    parts.uri = origin_form(&parts.uri)?;
    Ok(())
}

/// The origin-form target (`/path?query`) of `uri`. In absolute form an
/// empty path means `/` (RFC 9112 §3.2.1), so `http://host?x=1` becomes
/// `/?x=1`; `*` (OPTIONS) stays as it is.
pub(crate) fn origin_form(uri: &http::Uri) -> Result<http::Uri, RouteError> {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let parsed = if target.starts_with('/') || target == "*" {
        target.parse()
    } else {
        format!("/{target}").parse()
    };
    parsed.map_err(|_| RouteError::BadTarget(target.to_owned()))
}

/// **build**: the upstream request. The client's body is counted into the
/// exchange and, with `Expect: 100-continue`, held until the origin asks.
pub(crate) fn build<B>(
    ex: &mut Exchange,
    origin: &Origin,
    mode: Mode,
    req: Request<B>,
) -> Result<Request<ProxyBody>, ProxyError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = req.into_parts();
    build_head(&mut parts, origin, mode, &ex.request_id)?;
    let expects_continue = parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let counted = ex.count_body(body);
    let (body, gate) = if expects_continue && !counted.is_end_stream() {
        let (gate, opener) = ContinueGate::new(counted);
        (gate.boxed_unsync(), Some(opener))
    } else {
        (counted.boxed_unsync(), None)
    };
    let mut upstream_req = Request::from_parts(parts, body);
    if let Some(opener) = gate {
        opener.attach(&mut upstream_req);
    }
    Ok(upstream_req)
}

/// **send**: the request through `origin`'s pool; the exchange keeps the
/// upstream timing.
pub(crate) async fn send(
    upstream: &Upstream,
    ex: &mut Exchange,
    origin: &Origin,
    req: Request<ProxyBody>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let started = Instant::now();
    let entry = upstream.origin(origin)?;
    let pool = entry.pool.clone();
    ex.set_origin(entry);
    let (resp, timing) = pool.send(req).await?;
    ex.upstream_answered(started, timing);
    Ok(relay(resp))
}

/// The origin's response as the client gets it: hop-by-hop headers out, and
/// no `Content-Length` beside `Transfer-Encoding` (RFC 9112 §6.3: the latter
/// overrides it, and an intermediary must drop it before forwarding).
pub(crate) fn relay<B>(resp: Response<B>) -> Response<ProxyBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (mut parts, body) = resp.into_parts();
    if parts.headers.contains_key(header::TRANSFER_ENCODING) {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    rewrite::strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body.map_err(Into::into).boxed_unsync())
}

/// **respond**: the outcome to the client with the request id; an error
/// becomes the proxy's own response. The exchange logs the request when the
/// body ends.
pub(crate) fn respond(
    ex: Exchange,
    outcome: Result<Response<ProxyBody>, ProxyError>,
) -> Response<ProxyBody> {
    match outcome {
        Ok(mut resp) => {
            resp.headers_mut().insert(&CHOCON_ID, ex.request_id.clone());
            ex.respond(resp)
        }
        Err(err) => ex.respond_error(err),
    }
}

#[cfg(test)]
mod tests;
