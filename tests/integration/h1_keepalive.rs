//! HTTP/1.1-only origins (S3, DynamoDB) with default flags: the pool keeps
//! every connection that was busy, so concurrent clients reuse connections
//! instead of opening one per request.

use tokio::task::JoinSet;

use crate::support::{Origin, Proxy};

const HOST: &str = "example.test.ccnproxy-https";
const CLIENTS: usize = 32;
const PER_CLIENT: usize = 30;

async fn run_load(proxy: &Proxy) {
    let mut tasks = JoinSet::new();
    for c in 0..CLIENTS {
        let mut conn = proxy.client().await;
        tasks.spawn(async move {
            for i in 0..PER_CLIENT {
                let req = crate::support::client::request(
                    "GET",
                    HOST,
                    &format!("/c{c}/r{i}"),
                    &[],
                    crate::support::client::empty(),
                );
                let resp = conn.send(req).await.expect("request through the proxy");
                assert_eq!(resp.status(), 200, "{}", resp.text());
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("client task");
    }
}

#[tokio::test]
async fn default_flags_open_about_as_many_connections_as_clients() {
    let origin = Origin::tls_http1().start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    run_load(&proxy).await;
    let total = CLIENTS * PER_CLIENT;
    assert_eq!(origin.requests(), total);
    // Each client has one request in flight at a time, so the pool never
    // needs more than CLIENTS connections; a little slack for a request
    // racing a connection on its way back to the idle list.
    assert!(
        origin.accepted() <= CLIENTS + CLIENTS / 4,
        "{} connections for {total} requests from {CLIENTS} clients",
        origin.accepted()
    );
}

#[tokio::test]
async fn explicit_keepalive_conns_still_caps_the_idle_connections() {
    // chocon's `-c`: with `-c 2`, at most two idle connections survive a
    // burst; the rest close and later bursts open new ones.
    let origin = Origin::tls_http1().start().await;
    let proxy = Proxy::start(origin.proxy_args_with(&["-c", "2"])).await;
    run_load(&proxy).await;
    assert!(
        origin.accepted() > CLIENTS + CLIENTS / 4,
        "precondition: -c 2 churns ({} connections)",
        origin.accepted()
    );
    origin
        .wait_for("all but two connections to close", |o| o.open_now() <= 2)
        .await;
}
