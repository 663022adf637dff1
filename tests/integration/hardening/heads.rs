//! Request heads at the edges of the grammar, through the real binary: an
//! absolute-form target with an empty path and a query is proxied as
//! `/?query` (RFC 9112 §3.2.1); an h2c `:path` that is not a path gets 400
//! with a reason and one access-log line. Neither makes the proxy panic.

use http::Uri;

use super::next_rec;
use crate::support::client::{self, H2cClient};
use crate::support::{Origin, Proxy, TIMEOUT};

#[tokio::test]
async fn an_empty_absolute_path_is_proxied_and_an_h2c_query_path_gets_400() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let proxy = Proxy::spawn_binary(origin.proxy_args()).await;
    let target = origin.addr();

    // Absolute form, no path, a query: the origin is asked for `/?x=1`.
    let mut conn = proxy.raw().await;
    conn.write(
        format!("GET http://{target}?x=1 HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("writing the request");
    let head = conn.read_head_within(TIMEOUT).await.unwrap_or_else(|e| {
        panic!(
            "no response to an absolute target with an empty path: {e}\n--- proxy stderr ---\n{}",
            proxy.stderr()
        )
    });
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(origin.last_request().uri, "/?x=1");
    let rec = next_rec(&proxy).await;
    assert_eq!(rec.status, 200, "{}", rec.line);

    // h2c whose `:path` is `?x`: not a path, so 400 with the reason.
    let mut h2c = H2cClient::connect(proxy.addr()).await;
    let uri = Uri::builder()
        .scheme("http")
        .authority("example.test.ccnproxy")
        .path_and_query("?x")
        .build()
        .expect("a URI whose path is a query");
    let req = http::Request::builder()
        .uri(uri)
        .body(client::empty())
        .expect("request");
    let resp = h2c.send(req).await.unwrap_or_else(|e| {
        panic!(
            "no response to an h2c :path of ?x: {e}\n--- proxy stderr ---\n{}",
            proxy.stderr()
        )
    });
    assert_eq!(resp.status(), 400, "{}", resp.text());
    assert!(
        resp.text().contains("\"?x\" is not supported"),
        "one-line reason: {}",
        resp.text()
    );
    let rec = next_rec(&proxy).await;
    assert_eq!(rec.status, 400, "{}", rec.line);
    assert!(rec.error().contains("?x"), "{}", rec.line);

    // One line for the 400: the next line is the control request's.
    let control = proxy.get("example.test.ccnproxy", "/control").await;
    assert_eq!(control.status(), 200, "{}", control.text());
    let rec = next_rec(&proxy).await;
    assert!(rec.line.contains("/control"), "{}", rec.line);
    assert_eq!(origin.requests(), 2, "the 400 never reached the origin");

    let stderr = proxy.stderr();
    assert!(
        !stderr.contains("panicked"),
        "the proxy panicked:\n{stderr}"
    );
}
