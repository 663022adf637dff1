//! What `--sign` signs: the service and region of the routed host, never
//! the client's claimed credential scope; only services in
//! `--sign-services` (iam and sts get 403 by default); names customers run
//! under the AWS domains are refused by default, and signed only when
//! `--sign-hosts` names them.
//!
//! The real binary with static AWS credentials (`sign_trust::AWS_ENV`);
//! origins are local TLS servers posing as AWS endpoints.

use crate::bounded_log::Spawned;
use crate::sign_trust::AWS_ENV;
use crate::support::client::{self, Client};
use crate::support::{Ca, Origin, Proxy};

/// A client's signature claiming another service and region.
const CLAIM: &str = "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20240101/eu-west-1/iam/aws4_request, \
     SignedHeaders=host;x-amz-date, Signature=0000000000000000000000000000000000000000000000000000000000000000";

async fn spawn(origin: &Origin, extra: &[&str]) -> Spawned {
    let args = origin.proxy_args_with(&["--sign"]);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(extra);
    Spawned::start_with_env(&args, &AWS_ENV).await
}

async fn get(proxy: &Spawned, host: &str, headers: &[(&str, &str)]) -> client::Resp {
    let mut c = Client::connect(proxy.addr).await;
    c.send(client::request("GET", host, "/", headers, client::empty()))
        .await
        .expect("response")
}

/// A request to an S3 host whose Authorization claims `eu-west-1/iam`
/// reaches the origin signed for `us-west-2/s3`.
#[tokio::test]
async fn a_claimed_scope_does_not_change_what_is_signed() {
    let origin = Origin::tls_http1()
        .name("s3.us-west-2.amazonaws.com")
        .start()
        .await;
    let proxy = spawn(&origin, &[]).await;
    let resp = get(
        &proxy,
        "s3.us-west-2.amazonaws.com.ccnproxy-https",
        &[("authorization", CLAIM), ("x-amz-date", "20240101T000000Z")],
    )
    .await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    let seen = origin.last_request();
    let auth = seen.header("authorization").unwrap_or_default();
    assert!(
        auth.contains("Credential=AKIDEXAMPLE/") && auth.contains("/us-west-2/s3/aws4_request"),
        "the origin saw {auth:?}"
    );
}

/// iam and sts are not in the default `--sign-services`: 403 naming the
/// flag, nothing reaches the origin (not even unsigned); naming iam in the
/// list signs it, so the 403 was the list's.
#[tokio::test]
async fn iam_and_sts_get_403_by_default() {
    let origin = Origin::tls_http1()
        .names(&["iam.amazonaws.com", "sts.amazonaws.com"])
        .start()
        .await;
    let proxy = spawn(&origin, &[]).await;
    for host in ["iam.amazonaws.com", "sts.amazonaws.com"] {
        let resp = get(&proxy, &format!("{host}.ccnproxy-https"), &[]).await;
        assert_eq!(resp.status(), 403, "{host}: {}", resp.text());
        assert!(resp.text().contains("--sign-services"), "{:?}", resp.text());
    }
    assert_eq!(origin.requests(), 0, "an identity service was reached");
    drop(proxy);

    let proxy = spawn(&origin, &["--sign-services", "iam"]).await;
    let resp = get(&proxy, "iam.amazonaws.com.ccnproxy-https", &[]).await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    let auth = origin
        .last_request()
        .header("authorization")
        .unwrap_or_default()
        .to_owned();
    assert!(auth.contains("/us-east-1/iam/aws4_request"), "{auth}");
}

/// The customer-run forms under the AWS domains.
const CUSTOMER: [(&str, &str); 6] = [
    (
        "abc123.execute-api.us-east-1.amazonaws.com",
        "*.execute-api.us-east-1.amazonaws.com",
    ),
    (
        "fn1.lambda-url.us-east-1.on.aws",
        "*.lambda-url.us-east-1.on.aws",
    ),
    (
        "svc-1.abc.vpc-lattice-svcs.us-east-1.on.aws",
        "*.vpc-lattice-svcs.us-east-1.on.aws",
    ),
    (
        "my-nlb-1.elb.us-east-1.amazonaws.com",
        "*.elb.us-east-1.amazonaws.com",
    ),
    (
        "abc.appsync-api.us-east-1.amazonaws.com",
        "*.appsync-api.us-east-1.amazonaws.com",
    ),
    (
        "vpce-1.vpce-svc-2.us-east-1.vpce.amazonaws.com",
        "*.vpce-svc-2.us-east-1.vpce.amazonaws.com",
    ),
];

/// Each customer form gets 403 under the default `--allow-host`, naming
/// the pattern that would open it; no connection is made.
#[tokio::test]
async fn customer_endpoints_get_403_by_default() {
    let names: Vec<&str> = CUSTOMER.iter().map(|(host, _)| *host).collect();
    let origin = Origin::tls_http1().names(&names).start().await;
    let ca = Ca::trusted()
        .pem_path()
        .to_str()
        .expect("UTF-8 path")
        .to_owned();
    let mut args = vec![
        "--ca-file".to_owned(),
        ca,
        "--allow-cidr".into(),
        "127.0.0.0/8".into(),
    ];
    args.extend(origin.resolve_args());
    let proxy = Proxy::start(&args).await;
    for (host, pattern) in CUSTOMER {
        let resp = proxy.get(&format!("{host}.ccnproxy-https"), "/").await;
        assert_eq!(resp.status(), 403, "{host}: {}", resp.text());
        assert!(
            resp.text().contains(&format!("--allow-host {pattern}")),
            "{host}: {:?}",
            resp.text()
        );
    }
    assert_eq!(origin.accepted(), 0, "a customer endpoint was reached");
}

/// Allowed by `--allow-host`, a customer endpoint is still not signed with
/// the proxy's credentials: the client's request goes as it came. Only
/// `--sign-hosts` naming it (and its service in `--sign-services`) signs it.
#[tokio::test]
async fn allowed_customer_endpoints_are_signed_only_when_sign_hosts_names_them() {
    let (host, pattern) = CUSTOMER[0];
    let origin = Origin::tls_http1().name(host).start().await;
    let proxy = spawn(&origin, &["--allow-host", pattern]).await;
    let target = format!("{host}.ccnproxy-https");
    let resp = get(&proxy, &target, &[("authorization", CLAIM)]).await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(
        origin.last_request().header("authorization"),
        Some(CLAIM),
        "the proxy signed a customer endpoint"
    );
    drop(proxy);

    let proxy = spawn(
        &origin,
        &[
            "--allow-host",
            pattern,
            "--sign-hosts",
            pattern,
            "--sign-services",
            "execute-api",
        ],
    )
    .await;
    let resp = get(&proxy, &target, &[("authorization", CLAIM)]).await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    let auth = origin
        .last_request()
        .header("authorization")
        .unwrap_or_default()
        .to_owned();
    assert!(
        auth.contains("/us-east-1/execute-api/aws4_request"),
        "{auth}"
    );
}
