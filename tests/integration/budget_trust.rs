//! Budgets and per-client series follow what the proxy checked, never what
//! a client claims. The access key id in an `Authorization` header is a
//! claim (AWS checks the signature later, after the budget was charged), so
//! it neither buys a fresh budget nor spends somebody else's: an unverified
//! request is charged to its client address (here set by a trusted
//! `X-Forwarded-For`, as a balancer would). The series that name clients are
//! the operator's, served on the admin listener only, and they expire.
//! A client verified with `--sign-client-credentials` is one budget from
//! every address.

use crate::support::admin::METRICS_LISTEN;
use crate::support::{Origin, Proxy};

const HOST: &str = "example.test.ccnproxy";

/// An `Authorization` header claiming `key` (the signature is made up).
fn claim(key: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={key}/20250101/us-east-1/s3/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature=0000"
    )
}

/// One GET from client address `from` claiming `key`; its status.
async fn get(proxy: &Proxy, from: &str, key: &str) -> u16 {
    let auth = claim(key);
    let headers = [("x-forwarded-for", from), ("authorization", auth.as_str())];
    proxy
        .request("GET", HOST, "/", &headers, "")
        .await
        .status()
        .as_u16()
}

/// A proxy before `origin` that believes X-Forwarded-For from loopback.
async fn proxy(origin: &Origin, extra: &[&str]) -> Proxy {
    let mut args = origin.proxy_args_with(&["--trust-forwarded", "127.0.0.1/32"]);
    args.extend(extra.iter().map(|s| s.to_string()));
    Proxy::start(args).await
}

#[tokio::test]
async fn made_up_key_ids_do_not_buy_fresh_budgets() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    // Two a minute: nothing refills while the test runs.
    let proxy = proxy(&origin, &["--rate-limit", "2/m", "--rate-burst", "0"]).await;
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(get(&proxy, "198.51.100.7", &format!("AKIAFAKE{i:012}")).await);
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429, 429, 429, 429, 429, 429]);
    assert_eq!(origin.requests(), 2, "a refused request reached the origin");
}

#[tokio::test]
async fn naming_a_victims_key_id_spends_only_the_claimants_budget() {
    const VICTIM: &str = "AKIAVICTIM0000000000";
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let proxy = proxy(&origin, &["--rate-limit", "1/m", "--rate-burst", "0"]).await;
    assert_eq!(get(&proxy, "198.51.100.66", VICTIM).await, 200);
    assert_eq!(get(&proxy, "198.51.100.66", VICTIM).await, 429);
    assert_eq!(
        get(&proxy, "203.0.113.10", VICTIM).await,
        200,
        "the victim's budget is its own"
    );
}

#[tokio::test]
async fn account_mode_logs_the_account_of_the_key_id() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let format = r#"{"status":%>s,"client":"%a","account":"%{account}x"}"#;
    let proxy = proxy(
        &origin,
        &["--client-key", "account", "--access-log-format", format],
    )
    .await;
    assert_eq!(get(&proxy, "192.0.2.8", "ASIAY34FZKBOKMUTVV7A").await, 200);
    let log = proxy.next_log().await;
    assert_eq!(log["account"], "609629065308", "{log}");
    assert_eq!(log["client"], "192.0.2.8", "{log}");
    // A key id of the old form carries no account.
    assert_eq!(get(&proxy, "192.0.2.8", "AKIAIOSFODNN7EXAMPLE").await, 200);
    assert_eq!(proxy.next_log().await["account"], "-");
}

#[tokio::test]
async fn client_series_are_on_the_admin_listener_only() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let proxy = proxy(&origin, &METRICS_LISTEN).await;
    assert_eq!(get(&proxy, "192.0.2.21", "AKIDONE").await, 200);
    assert_eq!(get(&proxy, "192.0.2.22", "AKIDTWO").await, 200);

    let admin = proxy
        .wait_metrics("both clients' series", |m| {
            m.series("ccnproxy_client_requests_total").len() == 2
        })
        .await;
    assert_eq!(
        admin.exact(
            "ccnproxy_client_requests_total",
            &[("client", "192.0.2.21"), ("code_class", "2xx")]
        ),
        Some(1.0),
        "{}",
        admin.text
    );

    // The proxy port, which every client reaches, shows how many clients
    // there are and nothing about who they are.
    let mut c = proxy.client().await;
    let host = proxy.addr().to_string();
    let req = crate::support::client::request(
        "GET",
        &host,
        "/metrics",
        &[],
        crate::support::client::empty(),
    );
    let page = c.send(req).await.expect("GET /metrics").text();
    assert!(page.contains("ccnproxy_client_keys 2"), "{page}");
    for secret in ["ccnproxy_client_request", "192.0.2.21", "AKIDONE"] {
        assert!(
            !page.contains(secret),
            "{secret} on the proxy port:\n{page}"
        );
    }
}

#[tokio::test]
async fn client_series_expire_after_the_ttl() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let mut extra = vec!["--client-series-ttl", "1s"];
    extra.extend(METRICS_LISTEN);
    let proxy = proxy(&origin, &extra).await;
    assert_eq!(get(&proxy, "192.0.2.31", "AKIDONE").await, 200);
    let series = |m: &crate::support::admin::Metrics| {
        m.exact(
            "ccnproxy_client_requests_total",
            &[("client", "192.0.2.31"), ("code_class", "2xx")],
        )
    };
    proxy
        .wait_metrics("the client's series", |m| series(m) == Some(1.0))
        .await;
    let m = proxy
        .wait_metrics("the series to expire", |m| {
            series(m).is_none() && m.exact("ccnproxy_client_series_expired_total", &[]) == Some(1.0)
        })
        .await;
    assert_eq!(
        m.exact("ccnproxy_client_keys", &[]),
        Some(0.0),
        "{}",
        m.text
    );
}

#[tokio::test]
async fn a_verified_client_is_one_budget_whatever_its_address() {
    use crate::bounded_log::Spawned;
    use crate::sign_verify::{BODY, KEY, SECRET, signed_request};
    use crate::support::client::Client;

    let origin = Origin::tls_http1()
        .name("dynamodb.us-east-1.amazonaws.com")
        .echo()
        .start()
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("clients");
    std::fs::write(&file, format!("{KEY} {SECRET} team-a\n")).expect("write");
    let file = file.to_str().expect("utf-8").to_owned();
    let args = origin.proxy_args_with(&[
        "--sign",
        "--sign-client-credentials",
        &file,
        "--trust-forwarded",
        "127.0.0.1/32",
        "--rate-limit",
        "1/m",
        "--rate-burst",
        "0",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Spawned::start_with_env(&args, &crate::sign_trust::AWS_ENV).await;
    let mut c = Client::connect(proxy.addr).await;
    let from = |address: &'static str| {
        let mut req = signed_request(KEY, SECRET, std::time::SystemTime::now(), BODY);
        req.headers_mut()
            .insert("x-forwarded-for", http::HeaderValue::from_static(address));
        req
    };
    let first = c.send(from("198.51.100.1")).await.expect("response");
    assert_eq!(first.status(), 200, "{}", first.text());
    // Another address, the same verified client: the same budget, spent.
    let second = c.send(from("203.0.113.2")).await.expect("response");
    assert_eq!(second.status(), 429, "{}", second.text());
    assert_eq!(origin.requests(), 1);
}
