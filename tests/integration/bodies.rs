//! Bodies stream through both ways, byte for byte, to every kind of origin;
//! `Expect: 100-continue` is honoured end to end.

use std::time::Duration;

use crate::support::client::{self, full, pattern_stream};
use crate::support::{Origin, Proxy, assert_pattern, pattern};

const TEN_MIB: usize = 10 << 20;

async fn echo_through(origin: &Origin, proxy: &Proxy, method: &str, chunked: bool) {
    let host = format!(
        "example.test.{}",
        if origin.kind().is_tls() {
            "ccnproxy-https"
        } else {
            "ccnproxy"
        }
    );
    let body = if chunked {
        pattern_stream(TEN_MIB as u64, 64 * 1024)
    } else {
        full(pattern(TEN_MIB))
    };
    let resp = proxy
        .send(client::request(method, &host, "/echo", &[], body))
        .await;
    let what = format!("{method} {:?} chunked={chunked}", origin.kind());
    assert_eq!(resp.status(), 200, "{what}: {}", resp.text());
    assert_pattern(&resp.body, TEN_MIB, &what);
    let seen = origin.last_request();
    assert_eq!(seen.method, method, "{what}");
    if !chunked {
        assert_eq!(
            seen.header("content-length"),
            Some("10485760"),
            "{what}: Content-Length passes through"
        );
    }
}

async fn ten_mib_both_ways(origin: Origin) {
    let proxy = Proxy::start(origin.proxy_args()).await;
    for method in ["POST", "PUT"] {
        for chunked in [false, true] {
            echo_through(&origin, &proxy, method, chunked).await;
        }
    }
}

#[tokio::test]
async fn ten_mib_both_ways_tls_http1() {
    ten_mib_both_ways(Origin::tls_http1().echo().start().await).await;
}

#[tokio::test]
async fn ten_mib_both_ways_h2() {
    ten_mib_both_ways(Origin::tls_h2().echo().start().await).await;
}

#[tokio::test]
async fn ten_mib_both_ways_plain() {
    ten_mib_both_ways(Origin::plain_http1().echo().start().await).await;
}

#[tokio::test]
async fn ten_mib_download() {
    for origin in [
        Origin::tls_http1().download(TEN_MIB as u64).start().await,
        Origin::tls_h2().download(TEN_MIB as u64).start().await,
    ] {
        let proxy = Proxy::start(origin.proxy_args()).await;
        let resp = proxy.get("example.test.ccnproxy-https", "/big").await;
        assert_eq!(resp.status(), 200, "{}", resp.text());
        assert_pattern(&resp.body, TEN_MIB, &format!("{:?}", origin.kind()));
    }
}

#[tokio::test]
async fn empty_and_small_bodies() {
    let origin = Origin::tls_http1().echo().start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    for body in [&b""[..], b"x", b"{\"TableName\":\"t\"}"] {
        let resp = proxy
            .request(
                "POST",
                "example.test.ccnproxy-https",
                "/",
                &[],
                body.to_vec(),
            )
            .await;
        assert_eq!(resp.status(), 200, "{}", resp.text());
        assert_eq!(&resp.body[..], body);
    }
}

fn expect_head(len: usize) -> String {
    format!(
        "PUT /upload HTTP/1.1\r\n\
         Host: example.test.ccnproxy-https\r\n\
         Content-Length: {len}\r\n\
         Expect: 100-continue\r\n\
         \r\n"
    )
}

#[tokio::test]
async fn expect_continue_large_put_succeeds() {
    let origin = Origin::tls_http1().echo().start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let len = 4 << 20;
    let mut conn = proxy.raw().await;
    conn.write(expect_head(len).as_bytes()).await.unwrap();
    // The origin reads the body, so a 100 must come through first.
    let head = conn.read_head().await;
    assert_eq!(head.status, 100, "100 Continue first, got {head:?}");
    conn.write(&pattern(len)).await.unwrap();
    let head = conn.read_head().await;
    assert_eq!(head.status, 200, "{head:?}");
    let body = conn.read_body(&head).await;
    assert_pattern(&body, len, "echo after 100-continue");
    assert_eq!(
        origin.last_request().header("expect"),
        Some("100-continue"),
        "Expect goes to the origin so it can decide"
    );
}

#[tokio::test]
async fn expect_continue_with_body_sent_at_once_succeeds() {
    // A client may send the body without waiting for 100.
    let origin = Origin::tls_http1().echo().start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let resp = proxy
        .send(client::request(
            "PUT",
            "example.test.ccnproxy-https",
            "/",
            &[("expect", "100-continue")],
            full(pattern(TEN_MIB)),
        ))
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_pattern(&resp.body, TEN_MIB, "echo");
}

#[tokio::test]
async fn expect_continue_early_403_is_relayed_without_the_body() {
    let origin = Origin::tls_http1()
        .reply_early(403, "AccessDenied")
        .start()
        .await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let mut conn = proxy.raw().await;
    conn.write(expect_head(TEN_MIB).as_bytes()).await.unwrap();
    // No body sent: the 403 must arrive anyway, and nothing before it.
    let head = conn
        .read_head_within(Duration::from_secs(5))
        .await
        .expect("the origin's 403 while the client still holds its body");
    assert_eq!(
        head.status, 403,
        "the first response must be the origin's 403 (no 100 Continue before it): {head:?}"
    );
    assert_eq!(conn.read_body(&head).await, b"AccessDenied");
    assert_eq!(origin.requests(), 1);
}

/// The read buffer of an HTTP/1.1 origin connection is capped at 64 KiB,
/// like a request head (`--max-header-bytes`); a response head just under
/// that comes through whole. (One over it may be refused, 502 "message
/// head is too large", depending on how its bytes arrive.)
#[tokio::test]
async fn a_response_head_just_under_the_origin_read_buffer_arrives_whole() {
    const BIG: usize = 60_000;
    let origin = Origin::tls_http1()
        .handler(|_req| async {
            let mut resp = http::Response::new(crate::support::origin::full("ok"));
            let value = http::HeaderValue::from_str(&"a".repeat(BIG)).expect("header value");
            resp.headers_mut().insert("x-big", value);
            resp
        })
        .start()
        .await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let resp = proxy.get("example.test.ccnproxy-https", "/").await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(resp.headers["x-big"].len(), BIG);
    assert_eq!(resp.text(), "ok");
}
