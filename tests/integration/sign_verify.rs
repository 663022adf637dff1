//! `--sign-client-credentials`: the proxy checks each client's own SigV4
//! signature against the keys it holds before it signs with its role. A
//! correctly signed request is re-signed and its new signature checks out at
//! the origin; a wrong, missing, expired or unknown-key signature, or a body
//! changed after signing, gets 403 and never reaches the origin.
//!
//! Clients sign with aws-sigv4 here, as an SDK would; the origin's copy of
//! the request is checked with aws-sigv4 against the proxy's key.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_smithy_runtime_api::client::identity::Identity;

use crate::bounded_log::Spawned;
use crate::sign_trust::AWS_ENV;
use crate::support::client::{self, Client};
use crate::support::{Origin, RequestSeen};

const NAME: &str = "dynamodb.us-east-1.amazonaws.com";
const HOST: &str = "dynamodb.us-east-1.amazonaws.com.ccnproxy-https";
pub(crate) const KEY: &str = "AKIDTEAMA0000000000";
pub(crate) const SECRET: &str = "team-a-secret/000000000000000000000000";
const PROXY_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
pub(crate) const BODY: &str = "{\"Limit\":1}";

/// SigV4 signature of `method /` with `headers` (lowercase names) and
/// `body`, for dynamodb in us-east-1, as `key`/`secret` at `time`: the
/// headers to add (`authorization`, `x-amz-date`) and the signature.
fn sigv4(
    key: &str,
    secret: &str,
    time: SystemTime,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (Vec<(String, String)>, String) {
    let identity = Identity::from(Credentials::new(key, secret, None, None, "test"));
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("dynamodb")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .expect("params")
        .into();
    let signable = SignableRequest::new(
        "POST",
        "/",
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .expect("signable");
    let (instructions, signature) = sign(signable, &params).expect("sign").into_parts();
    let added = instructions
        .headers()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect();
    (added, signature)
}

/// A DynamoDB call signed by `key`/`secret` at `time`; `sent` is the body
/// that goes (the one signed is `BODY`).
pub(crate) fn signed_request(
    key: &str,
    secret: &str,
    time: SystemTime,
    sent: &str,
) -> crate::support::proxy::Request {
    let base = [
        ("host", HOST),
        ("content-type", "application/x-amz-json-1.0"),
        ("x-amz-target", "DynamoDB_20120810.ListTables"),
    ];
    let (added, _) = sigv4(key, secret, time, &base, BODY.as_bytes());
    let mut headers: Vec<(&str, &str)> = base[1..].to_vec();
    headers.extend(added.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    client::request("POST", HOST, "/", &headers, client::full(sent.to_owned()))
}

/// Recomputes the signature of the request the origin saw with the proxy's
/// secret: the proxy's re-signing is what AWS would accept.
fn assert_signed_by_proxy(seen: &RequestSeen, body: &str) {
    let auth = seen.header("authorization").expect("signed").to_owned();
    assert!(auth.contains("Credential=AKIDEXAMPLE/"), "{auth}");
    let list = auth
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .expect("SignedHeaders");
    let headers: Vec<(&str, &str)> = list
        .split(';')
        .filter(|h| *h != "x-amz-date")
        .map(|h| (h, seen.header(h).unwrap_or_else(|| panic!("{h} seen"))))
        .collect();
    let date = seen.header("x-amz-date").expect("x-amz-date");
    let time = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ")
        .expect("date")
        .and_utc();
    let (_, signature) = sigv4(
        "AKIDEXAMPLE",
        PROXY_SECRET,
        SystemTime::from(time),
        &headers,
        body.as_bytes(),
    );
    assert!(auth.ends_with(&format!("Signature={signature}")), "{auth}");
}

#[tokio::test]
async fn only_requests_signed_with_a_known_key_are_re_signed() {
    let origin = Origin::tls_http1().name(NAME).echo().start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("clients");
    std::fs::write(&file, format!("# teams\n{KEY} {SECRET} team-a\n")).expect("write");
    let file = file.to_str().expect("utf-8").to_owned();
    let args = origin.proxy_args_with(&[
        "--sign",
        "-l",
        "0.0.0.0",
        "--sign-client-credentials",
        &file,
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Client authentication configured: it starts on 0.0.0.0.
    let proxy = Spawned::start_with_env(&args, &AWS_ENV).await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], proxy.addr.port()));
    let mut c = Client::connect(addr).await;

    let now = SystemTime::now();
    let resp = c
        .send(signed_request(KEY, SECRET, now, BODY))
        .await
        .expect("response");
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(resp.text(), BODY, "the origin got the body");
    assert_signed_by_proxy(&origin.last_request(), BODY);
    assert_eq!(origin.requests(), 1);

    let unsigned = client::request(
        "POST",
        HOST,
        "/",
        &[("x-amz-target", "DynamoDB_20120810.ListTables")],
        client::full(BODY),
    );
    let cases = [
        (
            "wrong secret",
            signed_request(KEY, "not-the-secret", now, BODY),
            "does not match",
        ),
        (
            "unknown key",
            signed_request("AKIDSTRANGER0000000", SECRET, now, BODY),
            "not in --sign-client-credentials",
        ),
        (
            "body changed",
            signed_request(KEY, SECRET, now, "{\"Limit\":9}"),
            "does not match",
        ),
        (
            "expired",
            signed_request(KEY, SECRET, now - Duration::from_secs(20 * 60), BODY),
            "expired",
        ),
        ("unsigned", unsigned, "no SigV4 signature"),
    ];
    for (what, req, reason) in cases {
        let resp = c.send(req).await.expect("response");
        assert_eq!(resp.status(), 403, "{what}: {}", resp.text());
        assert!(resp.text().contains(reason), "{what}: {:?}", resp.text());
    }
    assert_eq!(
        origin.requests(),
        1,
        "a request that failed verification reached the origin"
    );
}
