//! Each phase of the request path alone.

use std::collections::BTreeMap;
use std::time::Duration;

use http::{StatusCode, Version};
use http_body_util::{BodyExt, Full};

use super::*;
use crate::config::Config;
use crate::exchange::tests::{exchange, kit, recorded};
use crate::origin::Scheme;

fn router() -> Router {
    Router::new(&Config::default().route).expect("the default routes")
}

fn s3() -> Origin {
    Origin::new(Scheme::Https, "s3.amazonaws.com", 443)
}

fn h2(uri: &str) -> http::request::Builder {
    Request::builder().version(Version::HTTP_2).uri(uri)
}

#[test]
fn route_reads_h2c_authority_as_host() {
    let req = h2("http://s3.amazonaws.com.ccnproxy-https/bucket?x=1")
        .body(())
        .expect("request");
    assert_eq!(
        route(&router(), 3000, &req),
        Ok(Route::Proxy {
            origin: s3(),
            mode: Mode::Host
        })
    );
    // A Host header wins over `:authority`.
    let req = h2("http://elsewhere.test/")
        .header("host", "s3.amazonaws.com.ccnproxy-https")
        .body(())
        .expect("request");
    assert!(matches!(
        route(&router(), 3000, &req),
        Ok(Route::Proxy {
            mode: Mode::Host,
            ..
        })
    ));
    // h2c is never a forward-proxy target: an authority without a label is
    // a plain Host, here one that matches nothing.
    let req = h2("http://example.test/").body(()).expect("request");
    assert_eq!(route(&router(), 3000, &req), Ok(Route::Admin));
}

#[test]
fn route_reads_http1_absolute_targets() {
    let req = Request::get("https://s3.amazonaws.com/b")
        .body(())
        .expect("request");
    assert_eq!(
        route(&router(), 3000, &req),
        Ok(Route::Proxy {
            origin: s3(),
            mode: Mode::Forward
        })
    );
    let req = Request::get("/").body(()).expect("request");
    assert_eq!(route(&router(), 3000, &req), Err(RouteError::NoHost));
}

#[tokio::test]
async fn admit_spends_the_budget_of_proxied_requests_only() {
    let (log, metrics) = kit();
    let mut limits = Config::default().limits;
    limits.rate_limit = 1;
    limits.rate_burst = 1;
    let limiter = RateLimiter::from_config(&limits).expect("a limit is set");
    let ex = exchange(&log, &metrics);
    let proxied = Ok(Route::Proxy {
        origin: s3(),
        mode: Mode::Host,
    });
    assert!(
        admit(Some(&limiter), &metrics, &proxied, &ex.record)
            .await
            .is_ok()
    );
    let mut refused = 0;
    for _ in 0..3 {
        match admit(Some(&limiter), &metrics, &proxied, &ex.record).await {
            Err(ProxyError::RateLimited(after)) => {
                assert!(after > Duration::ZERO);
                refused += 1;
            }
            other => assert!(other.is_ok(), "{other:?}"),
        }
    }
    assert!(
        refused >= 2,
        "a budget of 1/s refuses most of 3 more at once"
    );
    for exempt in [Ok(Route::Admin), Err(RouteError::NoHost)] {
        assert!(
            admit(Some(&limiter), &metrics, &exempt, &ex.record)
                .await
                .is_ok()
        );
    }
    assert!(admit(None, &metrics, &proxied, &ex.record).await.is_ok());
}

#[test]
fn framing_refuses_two_hosts() {
    let mut headers = HeaderMap::new();
    headers.append(header::HOST, HeaderValue::from_static("a"));
    assert!(check_framing(&headers).is_ok());
    headers.append(header::HOST, HeaderValue::from_static("b"));
    assert!(matches!(
        check_framing(&headers),
        Err(ProxyError::BadFraming(_))
    ));
}

#[test]
fn authorize_checks_loops_hosts_and_length() {
    let policy = Policy::new(&Config::default().policy).expect("default policy");
    let ok = Request::get("/short").body(()).expect("request");
    assert!(authorize(&policy, 100, &s3(), Mode::Host, &ok).is_ok());

    let looped = Request::get("/")
        .header(&CHOCON_VER, "1")
        .body(())
        .expect("request");
    assert!(matches!(
        authorize(&policy, 100, &s3(), Mode::Host, &looped),
        Err(ProxyError::Policy(PolicyError::Loop))
    ));

    let other = Origin::new(Scheme::Https, "example.test", 443);
    assert!(matches!(
        authorize(&policy, 100, &other, Mode::Host, &ok),
        Err(ProxyError::Policy(_))
    ));
    // `--upstream` needs no host pattern.
    assert!(authorize(&policy, 100, &other, Mode::Upstream, &ok).is_ok());

    let long = Request::get(format!("/{}", "a".repeat(100)))
        .body(())
        .expect("request");
    assert!(matches!(
        authorize(&policy, 100, &s3(), Mode::Host, &long),
        Err(ProxyError::UriTooLong(100))
    ));
}

fn head(req: Request<()>, mode: Mode) -> request::Parts {
    let (mut parts, ()) = req.into_parts();
    build_head(&mut parts, &s3(), mode, &HeaderValue::from_static("id-1")).expect("builds");
    parts
}

#[test]
fn an_empty_absolute_path_is_slash() {
    // RFC 9112 §3.2.1: `http://host?x=1` asks for `/?x=1`.
    let req = Request::get("http://s3.amazonaws.com?x=1")
        .body(())
        .expect("request");
    assert_eq!(req.uri().path_and_query().map(|p| p.as_str()), Some("?x=1"));
    assert_eq!(head(req, Mode::Forward).uri, "/?x=1");
    let bare = Request::get("http://s3.amazonaws.com")
        .body(())
        .expect("request");
    assert_eq!(head(bare, Mode::Forward).uri, "/");
    let star = Request::options("*").body(()).expect("request");
    assert_eq!(head(star, Mode::Forward).uri, "*");
}

/// An h2c request for `path` as its `:path`, whatever it is.
fn h2_path(path: &str) -> http::request::Builder {
    let uri = http::Uri::builder()
        .scheme("http")
        .authority("s3.amazonaws.com.ccnproxy-https")
        .path_and_query(path)
        .build()
        .expect("uri");
    Request::builder().version(Version::HTTP_2).uri(uri)
}

#[test]
fn an_h2c_path_that_is_not_a_path_is_a_bad_target() {
    for (method, path) in [
        (http::Method::GET, "?x"),
        (http::Method::GET, "*"),
        (http::Method::POST, "?"),
    ] {
        let req = h2_path(path)
            .method(method.clone())
            .body(())
            .expect("request");
        assert_eq!(
            route(&router(), 3000, &req),
            Err(RouteError::BadTarget(path.to_owned())),
            "{method} {path}"
        );
    }
    let options = h2_path("*")
        .method(http::Method::OPTIONS)
        .body(())
        .expect("request");
    assert!(route(&router(), 3000, &options).is_ok());
}

#[test]
fn build_head_sets_host_by_mode() {
    let req = || {
        Request::get("http://s3.amazonaws.com.ccnproxy-https/k?x=1")
            .header("host", "s3.amazonaws.com.ccnproxy-https")
            .header("connection", "keep-alive, x-drop")
            .header("x-drop", "1")
            .header("keep-alive", "timeout=5")
            .header("x-keep", "1")
            .body(())
            .expect("request")
    };
    let host_mode = head(req(), Mode::Host);
    assert_eq!(host_mode.headers[header::HOST], "s3.amazonaws.com");
    assert_eq!(host_mode.uri, "/k?x=1");
    assert_eq!(host_mode.headers[&CHOCON_ID], "id-1");
    assert!(host_mode.headers.contains_key(&CHOCON_VER));
    assert!(host_mode.headers.contains_key("x-keep"));
    for gone in ["connection", "x-drop", "keep-alive"] {
        assert!(!host_mode.headers.contains_key(gone), "{gone}");
    }

    let forward = head(req(), Mode::Forward);
    assert_eq!(
        forward.headers[header::HOST],
        "s3.amazonaws.com.ccnproxy-https",
        "other modes keep the client's (signed) Host"
    );

    // h2c without Host: the `:authority` is kept.
    let h2c = h2("http://s3.amazonaws.com:443/k")
        .body(())
        .expect("request");
    let h2c = head(h2c, Mode::Transparent);
    assert_eq!(h2c.headers[header::HOST], "s3.amazonaws.com:443");
    assert_eq!(h2c.uri, "/k");
}

/// The body waits for `100 Continue` (the pool's signal is attached).
fn gated(req: &Request<ProxyBody>) -> bool {
    req.extensions()
        .get::<crate::body::ContinueSignal>()
        .is_some()
}

#[tokio::test]
async fn build_counts_the_body_and_gates_100_continue() {
    let (log, metrics) = kit();
    let mut ex = exchange(&log, &metrics);
    let req = Request::post("/k")
        .header("host", "s3.amazonaws.com")
        .body(Full::new(Bytes::from_static(b"abc")))
        .expect("request");
    let up = build(&mut ex, &s3(), Mode::Transparent, req).expect("builds");
    assert!(!gated(&up));
    let sent = up.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(sent, "abc");
    assert_eq!(ex.received.load(std::sync::atomic::Ordering::Relaxed), 3);

    let req = Request::post("/k")
        .header("expect", "100-continue")
        .body(Full::new(Bytes::from_static(b"abc")))
        .expect("request");
    let up = build(&mut ex, &s3(), Mode::Host, req).expect("builds");
    assert!(
        gated(&up),
        "the pool can open the gate for origins that never send 100"
    );
}

#[tokio::test]
async fn relay_drops_content_length_beside_chunked() {
    let resp = Response::builder()
        .header("transfer-encoding", "chunked")
        .header("content-length", "3")
        .header("connection", "close")
        .header("x-amz-request-id", "r")
        .body(Full::new(Bytes::from_static(b"abc")))
        .expect("response");
    let resp = relay(resp);
    assert!(!resp.headers().contains_key(header::CONTENT_LENGTH));
    assert!(!resp.headers().contains_key(header::CONNECTION));
    assert!(!resp.headers().contains_key(header::TRANSFER_ENCODING));
    assert_eq!(resp.headers()["x-amz-request-id"], "r");
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(body, "abc");
}

#[tokio::test]
async fn respond_answers_errors_itself_and_logs_once() {
    let (log, metrics) = kit();
    let ex = exchange(&log, &metrics);
    let id = ex.request_id.clone();
    let resp = respond(ex, Err(ProxyError::Route(RouteError::NoHost)));
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers()[&CHOCON_ID], id);
    let text = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.starts_with("400 Bad Request: the request has no Host header; "),
        "{text}"
    );

    let ex = exchange(&log, &metrics);
    let ok = Response::new(crate::body::full("fine"));
    let resp = respond(ex, Ok(ok));
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().contains_key(&CHOCON_ID));
    drop(resp.into_body().collect().await.expect("body"));
    assert_eq!(recorded(&metrics), BTreeMap::from([(200, 1), (400, 1)]));
}
