//! Heads built to be the worst case for a per-header step, each within the
//! default `--max-header-bytes` (64 KiB), through the real binary with
//! `--sign`: a `Connection` header listing every other header and then
//! thousands of tokens (hop-by-hop removal), a client `SignedHeaders` of
//! thousands of names (the signer's header selection), and an h2c head of
//! 1,400 signed headers. Each is answered within the usual test timeout
//! (their CPU cost is shown by `benches/hostile_heads.rs`, not timed here).

use http::Uri;

use crate::bounded_log::Spawned;
use crate::support::client::{self, Client, H2cClient};
use crate::support::{Origin, within};

/// A name `--sign` signs for (an AWS name), resolved to the local origin.
const NAME: &str = "s3.us-east-1.amazonaws.com";

const AWS_ENV: [(&str, &str); 6] = [
    ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
    (
        "AWS_SECRET_ACCESS_KEY",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    ),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
    ("AWS_CONFIG_FILE", "/dev/null"),
    ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
];

/// Filler tokens for a header value of about `bytes` bytes.
fn tokens(prefix: &str, bytes: usize, sep: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut len = 0;
    while len < bytes {
        let t = format!("{prefix}{}", out.len());
        len += t.len() + sep.len();
        out.push(t);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worst_case_heads_are_answered() {
    let origin = Origin::plain_http1()
        .name(NAME)
        .reply(200, "ok")
        .start()
        .await;
    let mut args = origin.proxy_args();
    args.push("--sign".to_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Spawned::start_with_env(&args, &AWS_ENV).await;
    let host = format!("{NAME}.ccnproxy");

    // 1. `Connection` names the 97 other header lines, then ~56 KB of
    //    tokens and one that is not ASCII: none of the listed headers
    //    reaches the origin.
    let listed: Vec<String> = (0..97).map(|i| format!("x-h{i}")).collect();
    let mut connection = listed.clone();
    connection.extend(tokens("t", 56_000, ","));
    // A token with obs-text: the value is still a list of names to remove.
    connection.push("\u{fc}-agent".to_owned());
    let connection = connection.join(",");
    let mut headers: Vec<(&str, &str)> = listed.iter().map(|n| (n.as_str(), "1")).collect();
    headers.push(("connection", &connection));
    headers.push(("x-amz-content-sha256", "UNSIGNED-PAYLOAD"));
    let mut c = Client::connect(proxy.addr).await;
    let resp = c
        .send(client::request(
            "GET",
            &host,
            "/flood",
            &headers,
            client::empty(),
        ))
        .await
        .expect("an answer to the Connection flood");
    assert_eq!(resp.status(), 200, "{}", resp.text());
    let seen = origin.last_request();
    assert_eq!(seen.uri, "/flood");
    assert!(
        listed.iter().all(|n| seen.header(n).is_none()) && seen.header("connection").is_none(),
        "hop-by-hop headers reached the origin: {:?}",
        seen.headers.keys().collect::<Vec<_>>()
    );

    // 2. A client signature listing ~60 KB of header names, beside 90
    //    headers it lists: the proxy signs again.
    let names: Vec<String> = (0..90).map(|i| format!("s{i}")).collect();
    let mut signed = names.clone();
    signed.extend(tokens("u", 58_000, ";"));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20150830/us-east-1/s3/aws4_request, \
         SignedHeaders={}, Signature={}",
        signed.join(";"),
        "0".repeat(64)
    );
    let mut headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    headers.push(("authorization", &authorization));
    headers.push(("x-amz-content-sha256", "UNSIGNED-PAYLOAD"));
    let resp = c
        .send(client::request(
            "GET",
            &host,
            "/signed",
            &headers,
            client::empty(),
        ))
        .await
        .expect("an answer to the long SignedHeaders");
    assert_eq!(resp.status(), 200, "{}", resp.text());
    let seen = origin.last_request();
    assert_eq!(seen.uri, "/signed");
    let auth = seen.header("authorization").unwrap_or_default();
    assert!(
        auth.contains("Credential=AKIDEXAMPLE/") && auth.contains(";s89;"),
        "re-signed with the client's headers: {auth:.200}"
    );

    // 3. h2c: 1,400 `x-amz-*` headers, every one signed.
    let mut h2c = H2cClient::connect(proxy.addr).await;
    let uri = Uri::builder()
        .scheme("http")
        .authority(host.as_str())
        .path_and_query("/many")
        .build()
        .expect("uri");
    let mut req = http::Request::builder()
        .uri(uri)
        .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    for i in 0..1_400 {
        req = req.header(format!("x-amz-{i}"), "v");
    }
    let req = req.body(client::empty()).expect("request");
    let resp = within("an answer to 1,400 h2c headers", h2c.send(req))
        .await
        .expect("an answer to 1,400 h2c headers");
    assert_eq!(resp.status(), 200, "{}", resp.text());
    let seen = origin.last_request();
    assert_eq!(seen.uri, "/many");
    assert!(seen.header("x-amz-1399").is_some());
    let auth = seen.header("authorization").unwrap_or_default();
    assert!(auth.contains("x-amz-1399"), "signed: {auth:.200}");
    drop(proxy);
}
