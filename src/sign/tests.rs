//! `Signer` over whole requests. Expected signatures come from the AWS SigV4
//! test suite (as shipped in aws-sigv4's `aws-signing-test-suite/v4`): a
//! client signs with other credentials, the proxy's signature must equal the
//! suite's.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;

use super::*;
use crate::body::BoxError;
use crate::origin::Scheme;

const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SUITE_TOKEN: &str = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
/// A client's signature for the suite's scope, made with other credentials.
const CLIENT_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20150830/us-east-1/service/aws4_request, \
     SignedHeaders=host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000";

/// 2015-08-30T12:36:00Z, the suite's time.
fn suite_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_440_938_160)
}

fn config(max_body: u64, hosts: &[&str]) -> SignConfig {
    SignConfig {
        enabled: true,
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        max_body,
        allow_clients: Vec::new(),
        client_credentials: None,
        services: vec!["*".to_owned()],
    }
}

fn signer_with(token: Option<&str>, max_body: u64) -> Signer {
    let creds = Credentials::new(
        "AKIDEXAMPLE",
        SUITE_SECRET,
        token.map(str::to_owned),
        None,
        "test",
    );
    Signer::with_provider(
        &config(max_body, &[]),
        SharedCredentialsProvider::new(creds),
    )
    .unwrap()
}

fn origin(host: &str) -> Origin {
    Origin::new(Scheme::Https, host, 443)
}

fn header<'a>(req: &'a Request<ProxyBody>, name: &str) -> Option<&'a str> {
    req.headers().get(name).map(|v| v.to_str().unwrap())
}

async fn body_bytes(req: Request<ProxyBody>) -> Bytes {
    req.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn get_vanilla_is_signed_as_the_suite_says() {
    let req = Request::get("/")
        .header("host", "example.amazonaws.com")
        .header("x-amz-date", "20150830T000000Z")
        .header("authorization", CLIENT_AUTH)
        .header("user-agent", "aws-cli/1.0")
        .header("x-chocon-id", "abc")
        .body(body::empty())
        .unwrap();
    let signed = signer_with(None, 1 << 20)
        .sign_for(
            req,
            &origin("example.amazonaws.com"),
            "service",
            "us-east-1",
            None,
            suite_time(),
        )
        .await
        .unwrap();
    assert_eq!(
        header(&signed, "authorization"),
        Some(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        )
    );
    assert_eq!(header(&signed, "x-amz-date"), Some("20150830T123600Z"));
    assert_eq!(
        header(&signed, "user-agent"),
        Some("aws-cli/1.0"),
        "unsigned headers pass"
    );
    assert_eq!(header(&signed, "x-chocon-id"), Some("abc"));
    assert_eq!(header(&signed, "x-amz-content-sha256"), None);
}

#[tokio::test]
async fn session_token_replaces_the_clients() {
    let req = Request::get("/")
        .header("host", "example.amazonaws.com")
        .header("authorization", CLIENT_AUTH)
        .header("x-amz-security-token", "the-clients-token")
        .body(body::empty())
        .unwrap();
    let signer = signer_with(Some(SUITE_TOKEN), 1 << 20);
    let signed = signer
        .sign_for(
            req,
            &origin("example.amazonaws.com"),
            "service",
            "us-east-1",
            None,
            suite_time(),
        )
        .await
        .unwrap();
    assert_eq!(header(&signed, "x-amz-security-token"), Some(SUITE_TOKEN));
    assert!(
        header(&signed, "authorization").unwrap().ends_with(
            "SignedHeaders=host;x-amz-date;x-amz-security-token, \
             Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
        ),
        "{:?}",
        header(&signed, "authorization")
    );

    // Without a token of its own the proxy must not pass the client's on.
    let req = Request::get("/")
        .header("host", "example.amazonaws.com")
        .header("authorization", CLIENT_AUTH)
        .header("x-amz-security-token", "the-clients-token")
        .body(body::empty())
        .unwrap();
    let signed = signer_with(None, 1 << 20)
        .sign_for(
            req,
            &origin("example.amazonaws.com"),
            "service",
            "us-east-1",
            None,
            suite_time(),
        )
        .await
        .unwrap();
    assert_eq!(header(&signed, "x-amz-security-token"), None);
}

#[tokio::test]
async fn body_is_hashed_and_client_signed_headers_stay_signed() {
    let client_auth = "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20150830/us-east-1/service/aws4_request, \
         SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, Signature=00";
    let req = Request::post("/")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("host", "example.amazonaws.com")
        .header("content-length", "13")
        .header("x-amz-content-sha256", "0000")
        .header("authorization", client_auth)
        .body(body::full("Param1=value1"))
        .unwrap();
    let signed = signer_with(None, 1 << 20)
        .sign_for(
            req,
            &origin("example.amazonaws.com"),
            "service",
            "us-east-1",
            None,
            suite_time(),
        )
        .await
        .unwrap();
    assert_eq!(
        header(&signed, "x-amz-content-sha256"),
        Some("9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e")
    );
    assert!(
        header(&signed, "authorization").unwrap().ends_with(
            "SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, \
             Signature=d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"
        ),
        "{:?}",
        header(&signed, "authorization")
    );
    assert_eq!(body_bytes(signed).await, "Param1=value1");
}

#[tokio::test]
async fn s3_bodies_stream_unsigned() {
    let req = Request::put("/bucket/key%20with%20space")
        .header("host", "s3.us-west-2.amazonaws.com")
        .header("content-length", "5")
        .header(
            "x-amz-content-sha256",
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        )
        .header("x-amz-meta-colour", "blue")
        .header("range", "bytes=0-1")
        .body(body::full("hello"))
        .unwrap();
    let signed = signer_with(None, 1)
        .sign(req, &origin("s3.us-west-2.amazonaws.com"))
        .await
        .unwrap();
    let auth = header(&signed, "authorization").unwrap().to_owned();
    assert_eq!(
        header(&signed, "x-amz-content-sha256"),
        Some("UNSIGNED-PAYLOAD")
    );
    assert!(auth.contains("/us-west-2/s3/aws4_request"), "{auth}");
    assert!(
        auth.contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-colour,"),
        "{auth}"
    );
    // max_body is 1 byte: S3 bodies are never read for signing.
    assert_eq!(body_bytes(signed).await, "hello");
}

#[tokio::test]
async fn service_and_region_come_from_the_host_only() {
    let claim = |scope: &str| {
        format!(
            "AWS4-HMAC-SHA256 Credential=AK/20240101/{scope}/aws4_request, SignedHeaders=host, Signature=0"
        )
    };
    let cases = [
        // (host, client Authorization, expected scope)
        (
            "dynamodb.us-east-1.amazonaws.com",
            None,
            Some("/us-east-1/dynamodb/aws4_request"),
        ),
        (
            "email.eu-west-1.amazonaws.com",
            None,
            Some("/eu-west-1/ses/aws4_request"),
        ),
        (
            "dynamodb.us-east-1.amazonaws.com",
            Some(claim("eu-north-1/dynamodb")),
            Some("/us-east-1/dynamodb/aws4_request"),
        ),
        (
            "s3.us-west-2.amazonaws.com",
            Some(claim("eu-west-1/iam")),
            Some("/us-west-2/s3/aws4_request"),
        ),
        // Transfer Acceleration: only the client knows the region.
        (
            "bucket.s3-accelerate.amazonaws.com",
            Some(claim("ap-south-1/s3")),
            None,
        ),
        ("bucket.s3-accelerate.amazonaws.com", None, None),
        (
            "foo.bar.amazonaws.com",
            Some("AWS AKID:c2lnbmF0dXJl".to_owned()),
            None,
        ),
    ];
    for (host, auth, want) in cases {
        let mut req = Request::get("/").header("host", host);
        if let Some(auth) = &auth {
            req = req.header("authorization", auth);
        }
        let got = signer_with(None, 1 << 20)
            .sign(req.body(body::empty()).unwrap(), &origin(host))
            .await;
        match (got, want) {
            (Ok(signed), Some(scope)) => {
                let auth = header(&signed, "authorization").unwrap();
                assert!(auth.contains(scope), "{host}: {auth}");
                assert!(
                    auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
                    "{host}: {auth}"
                );
            }
            (Err(SignError::UnknownService(h)), None) => assert_eq!(h, host),
            (got, want) => panic!("{host}: got {got:?}, want {want:?}"),
        }
    }
}

#[tokio::test]
async fn services_outside_sign_services_are_refused() {
    let mut config = config(1 << 20, &[]);
    config.services = crate::config::SIGN_SERVICES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let creds = Credentials::new("AK", "SK", None, None, "test");
    let signer = Signer::with_provider(&config, SharedCredentialsProvider::new(creds)).unwrap();
    for (host, service) in [
        ("iam.amazonaws.com", "iam"),
        ("sts.amazonaws.com", "sts"),
        ("sts.eu-west-1.amazonaws.com", "sts"),
        ("organizations.us-east-1.amazonaws.com", "organizations"),
        ("portal.sso.us-east-1.amazonaws.com", "awsssoportal"),
    ] {
        let req = Request::get("/")
            .header("host", host)
            .body(body::empty())
            .unwrap();
        match signer.sign(req, &origin(host)).await {
            Err(SignError::ServiceNotAllowed { service: s, .. }) => {
                assert_eq!(s, service, "{host}")
            }
            other => panic!("{host}: {other:?}"),
        }
    }
    let req = Request::get("/")
        .header("host", "sqs.us-east-1.amazonaws.com")
        .body(body::empty())
        .unwrap();
    assert!(
        signer
            .sign(req, &origin("sqs.us-east-1.amazonaws.com"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn large_bodies_are_refused_before_and_while_reading() {
    let signer = signer_with(None, 10);
    let declared = Request::post("/")
        .header("host", "dynamodb.us-east-1.amazonaws.com")
        .header("content-length", "11")
        .body(body::full("01234567890"))
        .unwrap();
    let got = signer
        .sign(declared, &origin("dynamodb.us-east-1.amazonaws.com"))
        .await;
    assert!(
        matches!(got, Err(SignError::BodyTooLarge { limit: 10 })),
        "{got:?}"
    );

    // No length announced: the stream is cut at the limit.
    let frames: Vec<Result<http_body::Frame<Bytes>, BoxError>> = (0..4)
        .map(|_| Ok(http_body::Frame::data(Bytes::from_static(b"0123"))))
        .collect();
    let streamed =
        http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
    let req = Request::post("/")
        .header("host", "dynamodb.us-east-1.amazonaws.com")
        .body(streamed)
        .unwrap();
    let got = signer
        .sign(req, &origin("dynamodb.us-east-1.amazonaws.com"))
        .await;
    assert!(
        matches!(got, Err(SignError::BodyTooLarge { limit: 10 })),
        "{got:?}"
    );

    // At the limit exactly: fine.
    let req = Request::post("/")
        .header("host", "dynamodb.us-east-1.amazonaws.com")
        .body(body::full("0123456789"))
        .unwrap();
    let signed = signer
        .sign(req, &origin("dynamodb.us-east-1.amazonaws.com"))
        .await
        .unwrap();
    assert_eq!(body_bytes(signed).await, "0123456789");
}

#[tokio::test]
async fn a_body_waiting_for_100_continue_is_let_through_before_hashing() {
    let notify = std::sync::Arc::new(tokio::sync::Notify::new());
    let gate = notify.clone();
    let stream = futures_util::stream::once(async move {
        gate.notified().await;
        Ok::<_, BoxError>(http_body::Frame::data(Bytes::from_static(b"{}")))
    });
    let mut req = Request::post("/")
        .header("host", "dynamodb.us-east-1.amazonaws.com")
        .header("expect", "100-continue")
        .body(http_body_util::StreamBody::new(stream).boxed_unsync())
        .unwrap();
    req.extensions_mut().insert(body::ContinueSignal(notify));
    let signed = tokio::time::timeout(
        Duration::from_secs(10),
        signer_with(None, 1 << 20).sign(req, &origin("dynamodb.us-east-1.amazonaws.com")),
    )
    .await
    .expect("the signer opens the gate itself")
    .unwrap();
    assert!(!header(&signed, "authorization").unwrap().contains("expect"));
    assert_eq!(body_bytes(signed).await, "{}");
}

#[tokio::test]
async fn presigned_urls_pass_unchanged() {
    for query in [
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=ab",
        "AWSAccessKeyId=AK&Expires=1&Signature=abc%3D",
    ] {
        let req = Request::get(format!("/bucket/key?{query}"))
            .header("host", "s3.amazonaws.com")
            .header("x-amz-date", "20240101T000000Z")
            .body(body::empty())
            .unwrap();
        let signed = signer_with(None, 1 << 20)
            .sign(req, &origin("s3.amazonaws.com"))
            .await
            .unwrap();
        assert_eq!(signed.uri().query(), Some(query));
        assert_eq!(header(&signed, "authorization"), None);
        assert_eq!(header(&signed, "x-amz-date"), Some("20240101T000000Z"));
    }
}

#[tokio::test]
async fn streaming_payloads_keep_their_kind() {
    let chunked_body = "5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n";
    let req = Request::put("/bucket/key")
        .header("host", "s3.amazonaws.com")
        .header("content-encoding", "aws-chunked")
        .header("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        .header("x-amz-decoded-content-length", "5")
        .header("x-amz-trailer", "x-amz-checksum-crc32")
        .body(body::full(chunked_body))
        .unwrap();
    let signed = signer_with(None, 1)
        .sign(req, &origin("s3.amazonaws.com"))
        .await
        .unwrap();
    assert_eq!(
        header(&signed, "x-amz-content-sha256"),
        Some("STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    );
    let auth = header(&signed, "authorization").unwrap();
    assert!(
        auth.contains("x-amz-decoded-content-length;x-amz-trailer,"),
        "{auth}"
    );
    assert_eq!(body_bytes(signed).await, chunked_body);

    let sig = "0".repeat(64);
    let signed_chunks =
        format!("5;chunk-signature={sig}\r\nhello\r\n0;chunk-signature={sig}\r\n\r\n");
    let req = Request::put("/bucket/key")
        .header("host", "s3.amazonaws.com")
        .header("content-encoding", "aws-chunked")
        .header("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
        .body(body::full(signed_chunks.clone()))
        .unwrap();
    let signed = signer_with(None, 1 << 20)
        .sign(req, &origin("s3.amazonaws.com"))
        .await
        .unwrap();
    assert_eq!(
        header(&signed, "x-amz-content-sha256"),
        Some("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    );
    let resigned = body_bytes(signed).await;
    assert_eq!(resigned.len(), signed_chunks.len());
    assert_ne!(
        resigned,
        signed_chunks.as_bytes(),
        "chunk signatures are replaced"
    );

    for (sha, encoding) in [
        ("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", "aws-chunked"),
        ("UNSIGNED-PAYLOAD", "gzip, aws-chunked"),
    ] {
        let req = Request::put("/bucket/key")
            .header("host", "s3.amazonaws.com")
            .header("content-encoding", encoding)
            .header("x-amz-content-sha256", sha)
            .body(body::empty())
            .unwrap();
        let got = signer_with(None, 1 << 20)
            .sign(req, &origin("s3.amazonaws.com"))
            .await;
        assert!(
            matches!(got, Err(SignError::Unsupported(_))),
            "{sha}: {got:?}"
        );
    }
}

#[tokio::test]
async fn applies_to_follows_sign_hosts() {
    let creds = Credentials::new("AK", "SK", None, None, "test");
    let provider = SharedCredentialsProvider::new(creds);
    let default = Signer::with_provider(&config(1, &[]), provider.clone()).unwrap();
    let custom = Signer::with_provider(
        &config(1, &["minio.internal", "*.s3.amazonaws.com"]),
        provider.clone(),
    )
    .unwrap();
    let cases = [
        ("dynamodb.us-east-1.amazonaws.com", true, false),
        ("bucket.s3.amazonaws.com", true, true),
        ("s3.amazonaws.com", true, false),
        ("dynamodb.cn-north-1.amazonaws.com.cn", true, false),
        ("lambda.us-east-1.api.aws", true, false),
        ("minio.internal", false, true),
        ("abc.execute-api.us-east-1.amazonaws.com", false, false),
        ("fn.lambda-url.us-east-1.on.aws", false, false),
        ("example.com", false, false),
    ];
    for (host, want_default, want_custom) in cases {
        assert_eq!(
            default.applies_to(&origin(host)),
            want_default,
            "default, {host}"
        );
        assert_eq!(
            custom.applies_to(&origin(host)),
            want_custom,
            "custom, {host}"
        );
    }
    let bad = Signer::with_provider(&config(1, &["a.*.com"]), provider);
    assert!(matches!(bad, Err(SignError::BadHosts(_))));
    let disabled = Signer::new(&SignConfig {
        enabled: false,
        hosts: Vec::new(),
        max_body: 1,
        allow_clients: Vec::new(),
        client_credentials: None,
        services: Vec::new(),
    })
    .await
    .unwrap();
    assert!(!disabled.applies_to(&origin("s3.amazonaws.com")));
}

#[tokio::test]
async fn missing_credentials_are_an_error() {
    use aws_credential_types::provider::error::CredentialsError;
    let none = aws_credential_types::credential_fn::provide_credentials_fn(|| async {
        Err(CredentialsError::not_loaded("no source"))
    });
    let signer =
        Signer::with_provider(&config(1, &[]), SharedCredentialsProvider::new(none)).unwrap();
    let req = Request::get("/")
        .header("host", "sts.amazonaws.com")
        .body(body::empty())
        .unwrap();
    let got = signer.sign(req, &origin("sts.amazonaws.com")).await;
    assert!(matches!(got, Err(SignError::Credentials(_))), "{got:?}");
}

#[test]
fn signed_header_lists_are_parsed() {
    assert_eq!(
        signed_headers(b"AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request, SignedHeaders=Host;range;x-amz-date, Signature=0"),
        ["host", "range", "x-amz-date"]
            .map(str::to_owned)
            .into_iter()
            .collect::<HashSet<_>>()
    );
    assert!(signed_headers(b"AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request").is_empty());
    assert!(signed_headers(b"\xff").is_empty());
}
