//! Rewrite: hop-by-hop headers removed, everything else kept; X-Chocon-Id
//! and X-Chocon-Ver.

use crate::support::{Origin, Proxy};

#[tokio::test]
async fn chocon_id_is_kept_when_sent() {
    let origin = Origin::tls_http1().start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let resp = proxy
        .request(
            "GET",
            "example.test.ccnproxy-https",
            "/",
            &[("X-Chocon-Id", "client-chosen-id-42")],
            "",
        )
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(resp.header("x-chocon-id"), Some("client-chosen-id-42"));
    assert_eq!(
        origin.last_request().header("x-chocon-id"),
        Some("client-chosen-id-42")
    );
}

#[tokio::test]
async fn chocon_id_is_generated_when_missing() {
    let origin = Origin::tls_http1().start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let resp = proxy.get("example.test.ccnproxy-https", "/").await;
        assert_eq!(resp.status(), 200, "{}", resp.text());
        let id = resp
            .header("x-chocon-id")
            .expect("X-Chocon-Id on the response")
            .to_owned();
        assert!(!id.is_empty());
        assert_eq!(
            origin.last_request().header("x-chocon-id"),
            Some(id.as_str()),
            "the origin gets the same id"
        );
        ids.push(id);
    }
    assert_ne!(ids[0], ids[1], "each request gets its own id");
}

#[tokio::test]
async fn chocon_id_is_on_proxy_made_responses_too() {
    let proxy = Proxy::start(crate::support::origin::args_for(&[])).await;
    let resp = proxy
        .request("GET", "localhost", "/foo", &[("X-Chocon-Id", "abc")], "")
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.header("x-chocon-id"), Some("abc"));
}

#[tokio::test]
async fn chocon_ver_is_added_upstream() {
    let origin = Origin::tls_http1().start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let resp = proxy.get("example.test.ccnproxy-https", "/").await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    let ver = origin
        .last_request()
        .header("x-chocon-ver")
        .map(str::to_owned);
    assert!(
        ver.as_deref().is_some_and(|v| !v.trim().is_empty()),
        "X-Chocon-Ver upstream: {ver:?}"
    );
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let origin = Origin::tls_http1().start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    // Raw bytes, so no client library adds, merges or drops anything.
    let request = "GET /hop HTTP/1.1\r\n\
        Host: example.test.ccnproxy-https\r\n\
        Connection: close, x-foo\r\n\
        x-foo: listed-in-connection\r\n\
        Keep-Alive: timeout=5, max=100\r\n\
        Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\
        Proxy-Connection: keep-alive\r\n\
        TE: trailers\r\n\
        Upgrade: websocket\r\n\
        x-keep: Some Value;With=Odd  Spacing\r\n\
        X-Amz-Date: 20240101T000000Z\r\n\
        Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc\r\n\
        User-Agent: aws-cli/2.0\r\n\
        x-multi: one\r\n\
        x-multi: two\r\n\
        \r\n";
    let mut conn = proxy.raw().await;
    conn.write(request.as_bytes()).await.unwrap();
    let head = conn.read_head().await;
    assert_eq!(head.status, 200);
    conn.read_body(&head).await;

    let seen = origin.last_request();
    for name in [
        "x-foo",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "upgrade",
    ] {
        assert!(
            seen.headers.get(name).is_none(),
            "hop-by-hop {name:?} was forwarded: {:?}",
            seen.headers
        );
    }
    if let Some(conn_value) = seen.header("connection") {
        let lower = conn_value.to_ascii_lowercase();
        assert!(
            !lower.contains("close") && !lower.contains("x-foo"),
            "the client's Connection was forwarded: {conn_value:?}"
        );
    }
    assert_eq!(seen.header("x-keep"), Some("Some Value;With=Odd  Spacing"));
    assert_eq!(seen.header("x-amz-date"), Some("20240101T000000Z"));
    assert_eq!(
        seen.header("authorization"),
        Some(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc"
        )
    );
    assert_eq!(seen.header("user-agent"), Some("aws-cli/2.0"));
    let multi: Vec<_> = seen.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["one", "two"], "repeated headers keep their order");
}

#[tokio::test]
async fn client_connection_close_does_not_close_the_upstream_connection() {
    let origin = Origin::tls_http1().start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    for _ in 0..3 {
        let resp = proxy
            .request(
                "GET",
                "example.test.ccnproxy-https",
                "/",
                &[("connection", "close")],
                "",
            )
            .await;
        assert_eq!(resp.status(), 200, "{}", resp.text());
    }
    assert_eq!(
        origin.accepted(),
        1,
        "the client's Connection: close is hop-by-hop"
    );
}

#[tokio::test]
async fn response_headers_come_back() {
    let origin = Origin::tls_http1()
        .header("x-amz-request-id", "REQ123")
        .header("x-amz-id-2", "abc/def+ghi=")
        .header("content-type", "application/x-amz-json-1.0")
        .start()
        .await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let resp = proxy.get("example.test.ccnproxy-https", "/").await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(resp.header("x-amz-request-id"), Some("REQ123"));
    assert_eq!(resp.header("x-amz-id-2"), Some("abc/def+ghi="));
    assert_eq!(
        resp.header("content-type"),
        Some("application/x-amz-json-1.0")
    );
}
