//! Routing: chocon's Host convention (docs/design.md "Routing"), absolute-form
//! targets, transparent AWS hosts; what Host and path the origin receives.

use crate::support::{Origin, Proxy, origin::args_for};

/// A plain origin and a TLS origin both posing as `example.test` (80 and
/// 443 through `--resolve`), each answering with its own name.
async fn two_origins() -> (Origin, Origin, Proxy) {
    let plain = Origin::plain_http1().reply(200, "plain").start().await;
    let tls = Origin::tls_http1().reply(200, "tls").start().await;
    let proxy = Proxy::start(args_for(&[&plain, &tls])).await;
    (plain, tls, proxy)
}

#[tokio::test]
async fn host_labels_pick_scheme_and_port() {
    let (plain, tls, proxy) = two_origins().await;
    let p = proxy.port();
    // (Host sent to the proxy, which origin answers, Host the origin gets)
    let cases = [
        (
            format!("example.test.ccnproxy:{p}"),
            "plain",
            "example.test",
        ),
        ("example.test.ccnproxy".to_owned(), "plain", "example.test"),
        (
            format!("example.test.ccnproxy.local:{p}"),
            "plain",
            "example.test",
        ),
        (
            "example.test.ccnproxy.local".to_owned(),
            "plain",
            "example.test",
        ),
        (
            "example.test.ccnproxy-http".to_owned(),
            "plain",
            "example.test",
        ),
        (
            "example.test.ccnproxy-ssl".to_owned(),
            "tls",
            "example.test",
        ),
        (
            "example.test.ccnproxy-secure".to_owned(),
            "tls",
            "example.test",
        ),
        (
            "example.test.ccnproxy-https".to_owned(),
            "tls",
            "example.test",
        ),
        (
            format!("example.test.ccnproxy-https:{p}"),
            "tls",
            "example.test",
        ),
        (
            "EXAMPLE.test.ccnproxy-https".to_owned(),
            "tls",
            "example.test",
        ),
        // Labels after the ccnproxy label are ignored.
        (
            "example.test.ccnproxy-https.corp.internal".to_owned(),
            "tls",
            "example.test",
        ),
        (
            format!("example.test.ccnproxy-ssl.local:{p}"),
            "tls",
            "example.test",
        ),
    ];
    for (host, want_origin, want_host) in cases {
        let (plain_before, tls_before) = (plain.requests(), tls.requests());
        let resp = proxy.get(&host, "/where").await;
        assert_eq!(resp.status(), 200, "Host {host:?}: {}", resp.text());
        assert_eq!(
            resp.text(),
            want_origin,
            "Host {host:?} went to the wrong origin"
        );
        let got = if want_origin == "plain" { &plain } else { &tls };
        assert_eq!(
            plain.requests() + tls.requests(),
            plain_before + tls_before + 1
        );
        let seen = got.last_request();
        assert_eq!(seen.host().as_deref(), Some(want_host), "Host {host:?}");
        assert_eq!(seen.uri, "/where", "Host {host:?}");
    }
}

#[tokio::test]
async fn host_port_other_than_the_proxy_port_is_the_upstream_port() {
    let (plain, tls, proxy) = two_origins().await;
    // Each origin is also reachable on its real port under its name.
    let pp = plain.addr().port();
    let tp = tls.addr().port();

    let resp = proxy.get(&format!("example.test.ccnproxy:{pp}"), "/").await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(resp.text(), "plain");
    assert_eq!(
        plain.last_request().host(),
        Some(format!("example.test:{pp}")),
        "a non-default port stays in Host"
    );

    let resp = proxy
        .get(&format!("example.test.ccnproxy-https:{tp}"), "/")
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(resp.text(), "tls");
    assert_eq!(
        tls.last_request().host(),
        Some(format!("example.test:{tp}"))
    );
}

#[tokio::test]
async fn path_and_query_pass_unchanged() {
    let origin = Origin::tls_http1().start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let path = "/bucket/a%2Fb%20c/key.txt?list-type=2&prefix=x%2Fy&empty=&uploads";
    let resp = proxy.get("example.test.ccnproxy-https", path).await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(origin.last_request().uri, path);
}

#[tokio::test]
async fn methods_reach_the_origin() {
    let origin = Origin::tls_http1().echo().start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let body = if method == "GET" { "" } else { "payload" };
        let resp = proxy
            .request(method, "example.test.ccnproxy-https", "/m", &[], body)
            .await;
        assert_eq!(resp.status(), 200, "{method}: {}", resp.text());
        assert_eq!(resp.text(), body, "{method}");
        assert_eq!(origin.last_request().method, method);
    }
    let resp = proxy
        .request("HEAD", "example.test.ccnproxy-https", "/m", &[], "")
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.body.is_empty());
    assert_eq!(origin.last_request().method, "HEAD");
}

#[tokio::test]
async fn h2_origin_gets_the_target_authority() {
    let origin = Origin::tls_h2().name("h2.test").start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let resp = proxy.get("h2.test.ccnproxy-https", "/h2?x=1").await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    let seen = origin.last_request();
    assert_eq!(seen.version, http::Version::HTTP_2, "ALPN h2 must be used");
    assert_eq!(seen.host().as_deref(), Some("h2.test"));
    assert_eq!(seen.uri.path_and_query().unwrap().as_str(), "/h2?x=1");
}

#[tokio::test]
async fn absolute_form_target_goes_to_its_authority() {
    let origin = Origin::plain_http1().name("forward.test").start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let mut client = proxy.client().await;
    let req = http::Request::get("http://forward.test/abs?q=1")
        .header("host", "forward.test")
        .body(crate::support::client::empty())
        .unwrap();
    let resp = client.send(req).await.expect("forward request");
    assert_eq!(resp.status(), 200, "{}", resp.text());
    let seen = origin.last_request();
    assert_eq!(seen.uri, "/abs?q=1", "the origin gets origin-form");
    assert_eq!(seen.host().as_deref(), Some("forward.test"));
}

#[tokio::test]
async fn aws_host_without_label_is_upgraded_to_https() {
    let origin = Origin::tls_http1()
        .name("sts.amazonaws.com")
        .reply(200, "aws")
        .start()
        .await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let resp = proxy.get("sts.amazonaws.com", "/").await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(resp.text(), "aws");
    assert_eq!(
        origin.last_request().host().as_deref(),
        Some("sts.amazonaws.com"),
        "transparent mode leaves Host as sent"
    );
}

#[tokio::test]
async fn upstream_flag_sends_everything_else_there() {
    let origin = Origin::plain_http1().name("fixed.test").start().await;
    let mut args = origin.proxy_args();
    args.extend([
        "--upstream".to_owned(),
        format!("http://fixed.test:{}", origin.public_port()),
    ]);
    let proxy = Proxy::start(args).await;
    let resp = proxy.get("anything.example", "/up").await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    let seen = origin.last_request();
    assert_eq!(seen.uri, "/up");
    assert_eq!(
        seen.host().as_deref(),
        Some("anything.example"),
        "--upstream passes the client's Host on unchanged"
    );
}

#[tokio::test]
async fn dns_server_flag_resolves_origin_names() {
    let dns = crate::support::Dns::start().await;
    let origin = Origin::tls_http1()
        .name("dns.test")
        .bind("127.0.0.2")
        .reply(200, "via dns")
        .start()
        .await;
    dns.set("dns.test", &["127.0.0.2"], 60);
    let mut args = args_for(&[]);
    args.extend(["--dns-server".to_owned(), dns.addr().to_string()]);
    let proxy = Proxy::start(args).await;
    // No --resolve: the name goes to the DNS server, the port is in Host.
    let host = format!("dns.test.ccnproxy-https:{}", origin.addr().port());
    let resp = proxy.get(&host, "/").await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(resp.text(), "via dns");
    assert!(dns.queries("dns.test") >= 1);
    assert_eq!(
        origin.last_request().host(),
        Some(format!("dns.test:{}", origin.addr().port()))
    );

    let resp = proxy.get("missing.test.ccnproxy-https", "/").await;
    assert_eq!(resp.status(), 502, "NXDOMAIN is a 502: {}", resp.text());
}

#[tokio::test]
async fn h2c_client_routes_by_authority() {
    use crate::support::client::{H2cClient, full};
    let origin = Origin::tls_http1().echo().start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let mut client = H2cClient::connect(proxy.addr()).await;
    for i in 0..3 {
        let req = http::Request::post(format!("http://example.test.ccnproxy-https/h2c/{i}"))
            .body(full(format!("body {i}")))
            .unwrap();
        let resp = client.send(req).await.expect("h2c request");
        assert_eq!(resp.status(), 200, "{}", resp.text());
        assert_eq!(resp.text(), format!("body {i}"));
        let seen = origin.last_request();
        assert_eq!(seen.uri, format!("/h2c/{i}").as_str());
        assert_eq!(seen.host().as_deref(), Some("example.test"));
    }
    assert_eq!(origin.accepted(), 1);
}
