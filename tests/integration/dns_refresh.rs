//! DNS answers are refreshed before they expire: with a steady trickle of
//! requests, no request goes to an address whose record has expired, and
//! no request (after the first) waits for a lookup.

use std::time::Duration;

use tokio::time::Instant;

use crate::support::origin::args_for;
use crate::support::{Dns, Origin, Proxy};

/// Two origins for one name, on 127.0.0.2 and 127.0.0.3, same port.
async fn two_addresses(name: &str) -> (Origin, Origin, u16) {
    for _ in 0..20 {
        let a = Origin::tls_http1()
            .name(name)
            .bind("127.0.0.2")
            .start()
            .await;
        let port = a.addr().port();
        // The kernel chose the port for 127.0.0.2 only; try another if it
        // is taken on 127.0.0.3.
        if std::net::TcpListener::bind(("127.0.0.3", port)).is_err() {
            continue;
        }
        let b = Origin::tls_http1()
            .name(name)
            .bind("127.0.0.3")
            .port(port)
            .start()
            .await;
        return (a, b, port);
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

#[tokio::test]
async fn no_request_reaches_an_address_after_its_record_expired() {
    let (old, new, port) = two_addresses("refresh.test").await;
    let dns = Dns::start().await;
    let ttl = Duration::from_secs(3);
    dns.set("refresh.test", &["127.0.0.2"], 3);
    let mut args = args_for(&[]);
    let server = dns.addr().to_string();
    args.extend(["--dns-server", &server, "--dns-min-ttl", "1s"].map(String::from));
    let proxy = Proxy::start(args).await;
    let host = format!("refresh.test.ccnproxy-https:{port}");

    // Traffic for a while before the change, so the answer in use when the
    // record changes may be any age.
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut sent = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        tick.tick().await;
        assert_eq!(
            proxy.get(&host, &format!("/before/{sent}")).await.status(),
            200
        );
        sent += 1;
    }
    dns.set("refresh.test", &["127.0.0.3"], 3);
    let changed = Instant::now();
    // Each request names its send time, in ms after the change, in its path.
    while changed.elapsed() < ttl * 2 {
        tick.tick().await;
        let at = changed.elapsed().as_millis();
        let resp = proxy.get(&host, &format!("/after/{at}")).await;
        assert_eq!(resp.status(), 200, "{}", resp.text());
        sent += 1;
    }

    // Every record of 127.0.0.2 was fetched before the change, so it
    // expired at most one TTL after it.
    let late: Vec<String> = old
        .requests_seen()
        .iter()
        .filter_map(|r| {
            let at: u128 = r.uri.path().strip_prefix("/after/")?.parse().ok()?;
            (at >= ttl.as_millis()).then(|| r.uri.path().to_owned())
        })
        .collect();
    assert!(
        late.is_empty(),
        "requests sent to 127.0.0.2 after its record expired: {late:?}"
    );
    assert!(new.requests() > 0, "the new address took over");

    // No request waited for a lookup: only the first resolved inline.
    let logs = proxy.logs_until(sent).await;
    let waited: Vec<_> = logs[1..]
        .iter()
        .filter(|l| l["dns_ms"].as_f64() != Some(0.0))
        .map(|l| format!("{} dns_ms={}", l["uri"], l["dns_ms"]))
        .collect();
    assert!(
        waited.is_empty(),
        "requests that waited for DNS: {waited:?}"
    );
}
