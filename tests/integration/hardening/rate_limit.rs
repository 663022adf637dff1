//! `--rate-limit 5 --rate-burst 0` (src/ratelimit.rs): each client key has a
//! bucket of 5 tokens refilled at 5 per second. A client over its budget
//! gets 429 with `Retry-After` and never reaches the origin; a client with
//! another key, from the same address, is unaffected.

use tokio::time::Instant;

use crate::support::client::{self, Client};
use crate::support::{Origin, Proxy, TIMEOUT};

use super::poll;

const HOST: &str = "example.test.ccnproxy";

/// Sends `n` requests back to back on one connection with `headers`;
/// returns the statuses, the first 429's `Retry-After` and body, and how
/// long it took.
async fn burst(
    proxy: &Proxy,
    headers: &[(&str, &str)],
    n: usize,
) -> (Vec<u16>, Option<(String, String)>, std::time::Duration) {
    let mut c = Client::connect(proxy.addr()).await;
    let started = Instant::now();
    let mut statuses = Vec::new();
    let mut limited = None;
    for i in 0..n {
        let req = client::request("GET", HOST, &format!("/r{i}"), headers, client::empty());
        let resp = c.send(req).await.expect("response");
        if resp.status() == 429 && limited.is_none() {
            limited = Some((
                resp.header("retry-after").unwrap_or("").to_owned(),
                resp.text(),
            ));
        }
        statuses.push(resp.status().as_u16());
    }
    (statuses, limited, started.elapsed())
}

/// Client `a` (by `a_headers`) goes over its budget; client `b` is not
/// affected; the origin sees only the admitted requests; `a` is admitted
/// again once a token is back.
async fn one_key_is_limited_the_other_is_not(
    extra: &[&str],
    a_headers: &[(&str, &str)],
    b_headers: &[(&str, &str)],
) {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let mut args = origin.proxy_args_with(&["--rate-limit", "5", "--rate-burst", "0"]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let proxy = Proxy::start(args).await;

    let (statuses, limited, took) = burst(&proxy, a_headers, 20).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(ok + refused, 20, "only 200 or 429: {statuses:?}");
    // 5 tokens at once, then one more per 200 ms of the burst.
    let budget = 5 + (took.as_millis() / 200) as usize + 1;
    assert!(
        (5..=budget).contains(&ok),
        "client a: {ok} admitted in {took:?}, want 5..={budget}: {statuses:?}"
    );
    assert_eq!(&statuses[..5], &[200; 5], "the first 5 fit the bucket");
    let (retry_after, body) = limited.expect("client a got a 429");
    let secs: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {retry_after:?} is a number of seconds"));
    assert!((1..=2).contains(&secs), "Retry-After {secs}");
    assert!(body.contains("rate limit"), "429 body: {body:?}");
    assert_eq!(
        origin.requests(),
        ok,
        "a refused request reached the origin"
    );

    let (statuses, _, _) = burst(&proxy, b_headers, 5).await;
    assert_eq!(statuses, [200; 5], "client b is unaffected by a's budget");
    assert_eq!(origin.requests(), ok + 5);

    // The bucket refills (one token per 200 ms); a is admitted again.
    poll("client a to be admitted again", TIMEOUT, || async {
        let (statuses, _, _) = burst(&proxy, a_headers, 1).await;
        if statuses == [200] {
            Ok(())
        } else {
            Err(format!("{statuses:?}"))
        }
    })
    .await;
}

#[tokio::test]
async fn rate_limit_by_header_key_429s_one_client_only() {
    one_key_is_limited_the_other_is_not(
        &["--client-key", "header:x-client"],
        &[("x-client", "tenant-a")],
        &[("x-client", "tenant-b")],
    )
    .await;
}

/// The `--rate-limit-redis` password never shows: not in the startup error
/// of a URL Redis cannot use, not in the warning when Redis is unreachable.
#[tokio::test]
async fn the_redis_password_is_redacted_in_every_message() {
    const PASSWORD: &str = "hunter2-secret";
    for url in [
        format!("redis://:{PASSWORD}@127.0.0.1:6379/not-a-number"),
        format!("redis://app:{PASSWORD}@127.0.0.1:99999"),
        format!("http://app:{PASSWORD}@127.0.0.1:6379"),
    ] {
        let refused = Proxy::try_spawn_binary(["--rate-limit", "5", "--rate-limit-redis", &url]);
        let err = match refused.await {
            Ok(_) => panic!("{url}: the proxy started"),
            Err(err) => err,
        };
        // The harness's message repeats the arguments; what the proxy
        // printed follows its stderr marker.
        let stderr = err.split("--- stderr ---").nth(1).unwrap_or_default();
        assert!(stderr.contains("--rate-limit-redis"), "{url}: {err}");
        assert!(stderr.contains("REDACTED"), "{url}: {err}");
        assert!(
            !stderr.contains(PASSWORD),
            "{url}: the password shows: {err}"
        );
    }

    // Nothing listens on port 1: the first request finds Redis down.
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let url = format!("redis://app:{PASSWORD}@127.0.0.1:1/0");
    let proxy = Proxy::spawn_binary(origin.proxy_args_with(&[
        "--rate-limit",
        "5",
        "--rate-limit-redis",
        &url,
    ]))
    .await;
    let resp = proxy.get(HOST, "/r").await;
    assert_eq!(resp.status(), 200, "fails open: {}", resp.text());
    crate::support::wait_until("the Redis warning", TIMEOUT, || {
        proxy.stderr().contains("rate_limit.redis unavailable")
    })
    .await;
    let stderr = proxy.stderr();
    assert!(!stderr.contains(PASSWORD), "the password shows:\n{stderr}");
}
