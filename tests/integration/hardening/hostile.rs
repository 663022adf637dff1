//! Hostile client input and hostile origin framing. Each malformed request
//! gets a clear 4xx and never reaches the origin (its request log holds only
//! the well-formed control requests); an origin's conflicting or broken
//! framing never turns into a complete-looking wrong response or a second
//! (smuggled) response for another client.

use super::next_rec;
use super::raw_origin::{RawOrigin, Then};
use super::wire;
use crate::support::{Origin, Proxy, TIMEOUT};

/// Host-mode name of the plain origin (`--resolve example.test:80:...`).
const HOST: &str = "example.test.ccnproxy";

async fn setup() -> (Origin, Proxy) {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    (origin, proxy)
}

/// The status the proxy answers `bytes` with, or why there was none.
async fn status_of(proxy: &Proxy, bytes: &[u8]) -> Result<u16, String> {
    let mut conn = proxy.raw().await;
    // The proxy may answer and close before reading everything.
    let _ = conn.write(bytes).await;
    conn.read_head_within(TIMEOUT)
        .await
        .map(|h| h.status)
        .map_err(|e| format!("no response: {e}"))
}

/// Sends each case on its own connection; collects every case whose status
/// is not one of `want` or that the origin received. Then a control request
/// must reach the origin, and the origin must have seen nothing else.
async fn expect_refused(cases: &[(&str, Vec<u8>, &[u16])]) {
    let (origin, proxy) = setup().await;
    let mut wrong = Vec::new();
    for (what, bytes, want) in cases {
        let before = origin.requests();
        match status_of(&proxy, bytes).await {
            Ok(status) if want.contains(&status) => {}
            got => wrong.push(format!("{what}: want one of {want:?}, got {got:?}")),
        }
        if origin.requests() != before {
            let seen = origin.last_request();
            wrong.push(format!(
                "{what}: reached the origin as {} {} {:?}",
                seen.method, seen.uri, seen.headers
            ));
        }
    }
    // The control request shows the origin counts what the proxy forwards.
    let resp = proxy.get(HOST, "/control").await;
    assert_eq!(resp.status(), 200, "control request: {}", resp.text());
    for seen in origin.requests_seen() {
        if seen.uri != "/control" {
            wrong.push(format!(
                "the origin received {} {} {:?}",
                seen.method, seen.uri, seen.headers
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn get_with(headers: &str) -> Vec<u8> {
    format!("GET /hostile HTTP/1.1\r\nHost: {HOST}\r\n{headers}Connection: close\r\n\r\n")
        .into_bytes()
}

#[tokio::test]
async fn oversized_or_too_many_headers_get_431() {
    let big = format!("X-Big: {}\r\n", "a".repeat(70_000));
    let ten_thousand = "x-h: 1\r\n".repeat(10_000);
    let hundred_and_one = (0..101)
        .map(|i| format!("x-h{i}: 1\r\n"))
        .collect::<String>();
    expect_refused(&[
        ("one 70 kB header", get_with(&big), &[431]),
        ("10,000 headers (80 kB)", get_with(&ten_thousand), &[431]),
        ("101 small headers", get_with(&hundred_and_one), &[431]),
        (
            "80 kB of small headers with a 4 kB budget each",
            get_with(
                &(0..20)
                    .map(|i| format!("x-{i}: {}\r\n", "b".repeat(4000)))
                    .collect::<String>(),
            ),
            &[431],
        ),
    ])
    .await;
}

#[tokio::test]
async fn invalid_host_bytes_get_400() {
    let with_host = |host: &[u8]| {
        let mut b = b"GET /hostile HTTP/1.1\r\nHost: ".to_vec();
        b.extend_from_slice(host);
        b.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        b
    };
    expect_refused(&[
        (
            "control byte",
            with_host(b"exa\x01mple.test.ccnproxy"),
            &[400],
        ),
        ("NUL", with_host(b"example\x00.test.ccnproxy"), &[400]),
        ("DEL", with_host(b"example\x7f.test.ccnproxy"), &[400]),
        ("non-UTF-8", with_host(b"\xff\xfe.test.ccnproxy"), &[400]),
        (
            "UTF-8 non-ASCII",
            with_host("ex\u{e4}mple.test.ccnproxy".as_bytes()),
            &[400],
        ),
        ("space", with_host(b"exa mple.test.ccnproxy"), &[400]),
        ("slash", with_host(b"example.test/x.ccnproxy"), &[400]),
        ("backslash", with_host(b"example.test\\x.ccnproxy"), &[400]),
        ("at sign", with_host(b"user@example.test.ccnproxy"), &[400]),
        ("empty label", with_host(b"example..test.ccnproxy"), &[400]),
        ("label only", with_host(b"ccnproxy"), &[400]),
        ("port 0", with_host(b"example.test.ccnproxy:0"), &[400]),
        (
            "port overflow",
            with_host(b"example.test.ccnproxy:65536"),
            &[400],
        ),
        ("unclosed bracket", with_host(b"[::1.ccnproxy"), &[400]),
    ])
    .await;
}

#[tokio::test]
async fn duplicate_host_headers_get_400() {
    // RFC 9112 §3.2: a server MUST answer 400 to a request with more than
    // one Host; a proxy that routes by one and forwards both lets policy and
    // origin disagree about the target.
    let abs = |target: &str, host: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
    };
    expect_refused(&[
        (
            "two Host headers (host mode)",
            format!(
                "GET /hostile HTTP/1.1\r\nHost: {HOST}\r\nHost: evil.test.ccnproxy\r\nConnection: close\r\n\r\n"
            )
            .into_bytes(),
            &[400],
        ),
        (
            "a second Host naming another server",
            abs(
                "http://example.test/hostile",
                "example.test\r\nHost: evil.test",
            ),
            &[400],
        ),
    ])
    .await;
}

#[tokio::test]
async fn absolute_form_with_userinfo_gets_400() {
    let abs = |target: &str, host: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
    };
    expect_refused(&[
        (
            "user:password@",
            abs("http://user:pw@example.test/hostile", "example.test"),
            &[400],
        ),
        (
            "user@",
            abs("http://user@example.test/hostile", "example.test"),
            &[400],
        ),
        (
            "name@address",
            abs("http://example.test@127.0.0.1/hostile", "127.0.0.1"),
            &[400],
        ),
        (
            "CONNECT with userinfo",
            b"CONNECT user@example.test:80 HTTP/1.1\r\nHost: example.test:80\r\n\r\n".to_vec(),
            &[400],
        ),
    ])
    .await;
}

#[tokio::test]
async fn content_length_with_transfer_encoding_never_smuggles() {
    // The classic CL.TE / TE.CL shapes; the body carries a second request that
    // must never be parsed as one. hyper follows RFC 9112 §6.3: chunked wins,
    // Content-Length is dropped before the request is handed on, and the
    // connection closes after the answer. So the origin sees one clean chunked
    // POST and never `/smuggled`; the client sees one response, then EOF.
    let (origin, proxy) = setup().await;
    for (what, framing) in [
        (
            "Content-Length then Transfer-Encoding",
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "Transfer-Encoding then Content-Length",
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        ),
    ] {
        let bytes = format!(
            "POST /hostile HTTP/1.1\r\nHost: {HOST}\r\n{framing}\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: {HOST}\r\n\r\n"
        );
        let mut conn = proxy.raw().await;
        let _ = conn.write(bytes.as_bytes()).await;
        let head = conn
            .read_head_within(TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{what}: no response: {e}"));
        assert!(
            head.status == 200 || head.status == 400,
            "{what}: status {}",
            head.status
        );
        let _ = conn.read_body(&head).await;
        assert!(
            conn.closed_within(TIMEOUT).await,
            "{what}: the connection must close after the answer"
        );
    }
    for seen in origin.requests_seen() {
        assert_ne!(
            seen.uri, "/smuggled",
            "a smuggled request reached the origin"
        );
        assert!(
            seen.header("content-length").is_none(),
            "Content-Length forwarded beside Transfer-Encoding: {:?}",
            seen.headers
        );
    }
}

#[tokio::test]
async fn ambiguous_body_framing_gets_400() {
    let post = |framing: &str| {
        format!("POST /hostile HTTP/1.1\r\nHost: {HOST}\r\n{framing}Connection: close\r\n\r\nhello")
            .into_bytes()
    };
    expect_refused(&[
        (
            "duplicate differing Content-Length",
            post("Content-Length: 5\r\nContent-Length: 6\r\n"),
            &[400],
        ),
        ("Content-Length list 5, 6", post("Content-Length: 5, 6\r\n"), &[400]),
        ("Content-Length +5", post("Content-Length: +5\r\n"), &[400]),
        ("Content-Length -1", post("Content-Length: -1\r\n"), &[400]),
        ("Content-Length 0x5", post("Content-Length: 0x5\r\n"), &[400]),
        ("Transfer-Encoding gzip", post("Transfer-Encoding: gzip\r\n"), &[400, 501]),
        (
            "chunked not last",
            post("Transfer-Encoding: chunked, gzip\r\n"),
            &[400, 501],
        ),
        ("xchunked", post("Transfer-Encoding: xchunked\r\n"), &[400, 501]),
        (
            "space before colon",
            post("Transfer-Encoding : chunked\r\nContent-Length: 5\r\n"),
            &[400],
        ),
        (
            "obs-fold",
            post("Content-Length: 5\r\nX-Folded: a\r\n b\r\n"),
            &[400],
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            format!("POST /hostile HTTP/1.0\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
                .into_bytes(),
            &[400],
        ),
    ])
    .await;
}

#[tokio::test]
async fn host_disagreeing_with_absolute_target_gets_400() {
    let abs = |target: &str, host: &str| {
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
    };
    expect_refused(&[
        (
            "other name",
            abs("http://example.test/hostile", "evil.test"),
            &[400],
        ),
        (
            "other port",
            abs("http://example.test/hostile", "example.test:8080"),
            &[400],
        ),
        (
            "Host names a labelled target",
            abs("http://example.test/hostile", "evil.test.ccnproxy"),
            &[400],
        ),
    ])
    .await;
}

#[tokio::test]
async fn ipv6_target_and_host_in_different_spellings_agree() {
    // The same address written two ways is the same authority: route.rs
    // compares the raw Host text with the canonicalised target and answers
    // 400 "does not match" instead of forwarding.
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    let port = origin.addr().port();
    let cases = [
        ("[::ffff:7f00:1]", "[::ffff:7f00:1]"),
        ("[::ffff:127.0.0.1]", "[::ffff:7f00:1]"),
        ("[0:0:0:0:0:ffff:7f00:1]", "[0:0:0:0:0:ffff:7f00:1]"),
    ];
    let mut wrong = Vec::new();
    for (target, host) in cases {
        let req = format!(
            "GET http://{target}:{port}/v6 HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        );
        let got = wire::exchange(proxy.addr(), req.as_bytes()).await;
        let parsed = wire::parse(&got.bytes).expect("a response");
        if parsed.status != 200 {
            wrong.push(format!(
                "target {target}, Host {host}: {} {:?}",
                parsed.status,
                String::from_utf8_lossy(&parsed.body)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn very_long_uri_gets_414_or_431() {
    let long = |n: usize| {
        format!(
            "GET /{} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n",
            "a".repeat(n)
        )
        .into_bytes()
    };
    let absolute = format!(
        "GET http://example.test/{} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n",
        "q".repeat(20_000)
    )
    .into_bytes();
    expect_refused(&[
        ("10 kB path", long(10_000), &[414, 431]),
        ("100 kB path", long(100_000), &[414, 431]),
        ("1 MB path", long(1_000_000), &[414, 431]),
        ("20 kB absolute-form target", absolute, &[414, 431]),
    ])
    .await;
}

#[tokio::test]
async fn rejected_requests_are_logged() {
    // docs/reference.md "Errors": hyper answers a head it cannot parse itself (no
    // X-Chocon-Id on that bare answer), but every such rejection still has its
    // access-log line, with the status hyper sent.
    let (_origin, proxy) = setup().await;
    let cases: [(&str, Vec<u8>); 3] = [
        ("oversized head", get_with(&format!("X-Big: {}\r\n", "a".repeat(70_000)))),
        (
            "duplicate Content-Length",
            format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello").into_bytes(),
        ),
        ("control byte in Host", b"GET / HTTP/1.1\r\nHost: a\x01b.ccnproxy\r\n\r\n".to_vec()),
    ];
    let mut wrong = Vec::new();
    for (what, bytes) in &cases {
        let mut conn = proxy.raw().await;
        let _ = conn.write(bytes).await;
        let head = conn
            .read_head_within(TIMEOUT)
            .await
            .expect("a response head");
        // Nothing else talks to this proxy, so its next record is this case's.
        // The line is written when the connection task ends, which may be
        // after the client read the answer (and after a later request).
        match proxy.next_log_within(TIMEOUT).await {
            None => wrong.push(format!("{what}: {} with no access-log line", head.status)),
            Some(line) if line["status"] != head.status => {
                wrong.push(format!("{what}: logged as {line} (sent {})", head.status));
            }
            Some(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The origin's reply to every request after the scripted first one.
const SECOND: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond";

/// A response an origin must never get to any client.
const SMUGGLED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED";

/// Starts a raw origin that answers its first request with `first` followed
/// by a smuggled response, and everything else with [`SECOND`]; the
/// connection stays open, so a proxy that reuses it would hand the smuggled
/// bytes to the next request.
async fn smuggling_origin(first: &'static [u8]) -> (RawOrigin, Proxy) {
    let origin = RawOrigin::start(move |seen| {
        if seen.conn == 0 && seen.nth == 0 {
            ([first, SMUGGLED].concat(), Then::KeepOpen)
        } else {
            (SECOND.to_vec(), Then::KeepOpen)
        }
    })
    .await;
    let mut args = crate::support::origin::args_for(&[]);
    args.extend(["--resolve".to_owned(), origin.resolve_arg("raw.test")]);
    let proxy = Proxy::start(args).await;
    (origin, proxy)
}

const RAW_GET: &[u8] =
    b"GET /first HTTP/1.1\r\nHost: raw.test.ccnproxy\r\nConnection: close\r\n\r\n";

/// Then three more requests: each gets the origin's genuine second answer,
/// and none went over the connection that carried the scripted first reply
/// (its unread bytes are the smuggled response).
async fn later_requests_are_not_smuggled(
    proxy: &Proxy,
    origin: &RawOrigin,
    wrong: &mut Vec<String>,
) {
    for i in 0..3 {
        let got = wire::exchange(proxy.addr(), RAW_GET).await;
        let text = String::from_utf8_lossy(&got.bytes).into_owned();
        if text.contains("SMUGGLED") || !text.ends_with("second") {
            wrong.push(format!("later request {i} got {text:?}"));
        }
    }
    for seen in origin.seen() {
        if !seen.head.starts_with("GET /first HTTP/1.1\r\n") {
            wrong.push(format!("the origin got {:?}", seen.head));
        }
        if seen.conn == 0 && seen.nth > 0 {
            wrong.push("the tainted upstream connection was reused".into());
        }
    }
}

#[tokio::test]
async fn origin_with_content_length_and_chunked_is_not_relayed_as_is() {
    // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; an
    // intermediary that forwards such a message MUST remove the
    // Content-Length first. The true body is "hello" (chunked); the stale
    // Content-Length says 3.
    let first: &'static [u8] =
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let (origin, proxy) = smuggling_origin(first).await;
    let mut wrong = Vec::new();
    let got = wire::exchange(proxy.addr(), RAW_GET).await;
    let parsed = wire::parse(&got.bytes).expect("a response");
    let lengths = parsed.all("content-length");
    let chunked = !parsed.all("transfer-encoding").is_empty();
    match parsed.status {
        502 => {}
        200 => {
            if chunked && !lengths.is_empty() {
                wrong.push(format!("relayed both framings: {:?}", parsed.headers));
            }
            if parsed.complete.is_ok() && parsed.body != b"hello" {
                wrong.push(format!(
                    "a complete-looking 200 with the wrong body {:?} (Content-Length {lengths:?}; the origin's chunked body is \"hello\")",
                    String::from_utf8_lossy(&parsed.body)
                ));
            }
        }
        other => wrong.push(format!("status {other}")),
    }
    if String::from_utf8_lossy(&got.bytes).contains("SMUGGLED") {
        wrong.push("the smuggled response reached the client".into());
    }
    later_requests_are_not_smuggled(&proxy, &origin, &mut wrong).await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn origin_sending_more_than_content_length_cannot_answer_the_next_request() {
    // Response splitting: the bytes after the announced length look like a
    // second response; they must be dropped with the connection, never
    // handed to the next request.
    let (origin, proxy) =
        smuggling_origin(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
    let mut wrong = Vec::new();
    let got = wire::exchange(proxy.addr(), RAW_GET).await;
    let parsed = wire::parse(&got.bytes).expect("a response");
    if parsed.status != 200 || parsed.body != b"hello" || parsed.complete.is_err() {
        wrong.push(format!("first: {parsed:?}"));
    }
    later_requests_are_not_smuggled(&proxy, &origin, &mut wrong).await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        origin.accepted() >= 2,
        "the tainted connection was not reused"
    );
}

#[tokio::test]
async fn origin_with_differing_content_lengths_gets_502() {
    let (origin, proxy) =
        smuggling_origin(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 8\r\n\r\nhello")
            .await;
    let got = wire::exchange(proxy.addr(), RAW_GET).await;
    let parsed = wire::parse(&got.bytes).expect("a response");
    assert_eq!(parsed.status, 502, "{parsed:?}");
    let mut wrong = Vec::new();
    later_requests_are_not_smuggled(&proxy, &origin, &mut wrong).await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn origin_with_malformed_chunking_fails_the_response() {
    // A head is already on its way when the bad chunk arrives: the client
    // must see the body cut (no terminating chunk), never a complete 200.
    let (origin, proxy) = smuggling_origin(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n",
    )
    .await;
    let got = wire::exchange(proxy.addr(), RAW_GET).await;
    let parsed = wire::parse(&got.bytes).expect("a response");
    match parsed.status {
        502 => {}
        200 => assert!(
            parsed.complete.is_err(),
            "a malformed chunked body was relayed as a complete response: {parsed:?}"
        ),
        other => panic!("status {other}: {parsed:?}"),
    }
    let rec = next_rec(&proxy).await;
    assert!(
        rec.error().contains("origin"),
        "the log names the origin's failure: {}",
        rec.line
    );
    let mut wrong = Vec::new();
    later_requests_are_not_smuggled(&proxy, &origin, &mut wrong).await;
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
