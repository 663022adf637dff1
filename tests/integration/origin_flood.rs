//! A flood of new origin names cannot flush the warm pools other clients
//! use: an origin that served a request within `--origin-idle-ttl` is never
//! removed to make room under `--max-origins`. The flood fills the free
//! places; every further new name gets 503 with a one-line reason naming
//! the flag, counted in `ccnproxy_origins_refused_total`, while the steady
//! origins keep their upstream connections (no new TLS handshake at the
//! origin).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::bounded_origins::spawn_with_dns;
use crate::support::client::{self, Client};
use crate::support::{Dns, Origin};

/// `--max-origins` for the test: the steady origins plus a few free places.
const MAX_ORIGINS: usize = 20;
/// Origins with steady traffic.
const STEADY: usize = 5;
/// New names the flooding client sends.
const FLOOD: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_flood_leaves_the_steady_origins_warm() {
    let steady_names: Vec<String> = (0..STEADY).map(|i| format!("steady{i}.test")).collect();
    let names: Vec<&str> = steady_names.iter().map(String::as_str).collect();
    let steady = Origin::tls_http1().names(&names).start().await;
    let flood_origin = Origin::plain_http1().reply(200, "ok").start().await;
    let flood_port = flood_origin.addr().port();
    let dns = Dns::start().await;
    let flood_names: Vec<String> = (0..FLOOD).map(|i| format!("b{i}.bucket.test")).collect();
    for name in &flood_names {
        dns.set(name, &["127.0.0.1"], 300);
    }
    let max = MAX_ORIGINS.to_string();
    let mut extra = vec!["--access-log-dir", "none", "--max-origins", &max];
    let resolve = steady.resolve_args();
    extra.extend(resolve.iter().map(String::as_str));
    let proxy = spawn_with_dns(&dns, &extra, &[]).await;

    // Warm: one connection (one TLS handshake) per steady origin.
    let mut quiet = Client::connect(proxy.addr).await;
    for name in &steady_names {
        let host = format!("{name}.ccnproxy-https");
        let resp = quiet
            .send(client::request("GET", &host, "/", &[], client::empty()))
            .await
            .expect("steady request");
        assert_eq!(resp.status(), 200, "{host}: {}", resp.text());
    }
    let warm = steady.handshakes();
    assert_eq!(warm, STEADY, "one handshake per steady origin");

    // The flood runs on its own connection while the steady client keeps
    // sending to its origins, each of which is idle between its requests.
    let flooding = Arc::new(AtomicBool::new(true));
    let flood = {
        let (addr, flooding) = (proxy.addr, flooding.clone());
        tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            let mut statuses = Vec::new();
            for name in flood_names {
                let host = format!("{name}.ccnproxy:{flood_port}");
                let resp = c
                    .send(client::request("GET", &host, "/", &[], client::empty()))
                    .await
                    .expect("flood request");
                let status = resp.status().as_u16();
                if status == 503 {
                    let reason = resp.text();
                    assert!(
                        reason.contains("--max-origins") && reason.trim().lines().count() == 1,
                        "{host}: {reason:?}"
                    );
                }
                statuses.push(status);
            }
            flooding.store(false, Ordering::SeqCst);
            statuses
        })
    };
    let mut steady_requests = 0;
    while flooding.load(Ordering::SeqCst) || steady_requests < 2 * STEADY {
        let host = format!("{}.ccnproxy-https", steady_names[steady_requests % STEADY]);
        let resp = quiet
            .send(client::request("GET", &host, "/", &[], client::empty()))
            .await
            .expect("steady request");
        assert_eq!(resp.status(), 200, "{host}: {}", resp.text());
        steady_requests += 1;
    }
    let statuses = flood.await.expect("flood task");

    let admitted = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(
        admitted,
        MAX_ORIGINS - STEADY,
        "the flood gets the free places only: {statuses:?}"
    );
    assert_eq!(admitted + refused, FLOOD, "{statuses:?}");
    assert_eq!(
        steady.handshakes(),
        warm,
        "the steady origins opened no new upstream TLS connection ({steady_requests} requests during the flood)"
    );
    let m = proxy.metrics().await;
    assert_eq!(
        m.get("ccnproxy_origins_refused_total", &[]),
        Some(refused as f64),
        "{}",
        m.text
    );
    assert_eq!(m.get("ccnproxy_origins_evicted_total", &[]), Some(0.0));
    assert_eq!(m.get("ccnproxy_pools", &[]), Some(MAX_ORIGINS as f64));
}
