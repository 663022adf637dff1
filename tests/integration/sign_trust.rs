//! Whom `--sign` lends the proxy's role to, and what it signs: a listener
//! reachable from the network needs client authentication or the proxy does
//! not start; a client outside `--sign-allow-clients` gets 403 and never
//! reaches the origin; an IP-literal host needs `--allow-host`, whatever
//! `--allow-cidr` opens.
//!
//! The real binary (`Spawned`) with static AWS credentials in its
//! environment; origins are local TLS servers posing as AWS endpoints.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::bounded_log::Spawned;
use crate::support::client::{self, Client};
use crate::support::{Origin, Proxy};

/// Static credentials for the standard chain; nothing is asked of IMDS.
pub(crate) const AWS_ENV: [(&str, &str); 6] = [
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

/// Runs the binary with `args` and waits at most 20 s for it to exit: its
/// exit code and stderr, or `None` if it was still running (then killed).
async fn exit_of(args: &[&str]) -> Option<(Option<i32>, String)> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccnproxy"));
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .envs(AWS_ENV)
        .kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CCNPROXY_") {
            cmd.env_remove(name);
        }
    }
    let mut child = cmd.spawn().expect("spawning ccnproxy");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        let mut text = String::new();
        // stderr closes when the process exits.
        let _ = stderr.read_to_string(&mut text).await;
        (child.wait().await.expect("waiting").code(), text)
    })
    .await;
    waited.ok()
}

/// `--sign` on 0.0.0.0 (or `::`) with no client authentication: exit 2 and
/// one line naming the flag, before any socket is bound.
#[tokio::test]
async fn sign_on_an_exposed_listener_without_client_auth_does_not_start() {
    for listen in ["0.0.0.0", "::"] {
        let (code, stderr) = exit_of(&["--sign", "-l", listen, "-p", "0"])
            .await
            .unwrap_or_else(|| panic!("--sign -l {listen} kept running"));
        assert_eq!(code, Some(2), "{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(
            lines[0].starts_with("ccnproxy: ") && lines[0].contains("--sign-allow-clients"),
            "{stderr}"
        );
    }
    // With client authentication configured it starts.
    let proxy = Spawned::start_with_env(
        &[
            "--sign",
            "-l",
            "0.0.0.0",
            "--sign-allow-clients",
            "10.0.0.0/8",
        ],
        &AWS_ENV,
    )
    .await;
    assert!(proxy.addr.ip().is_unspecified(), "{}", proxy.addr);
}

/// A client outside `--sign-allow-clients` gets 403 with the reason and the
/// origin sees nothing; the address is the one `--trust-forwarded` gives.
#[tokio::test]
async fn clients_outside_sign_allow_clients_get_403() {
    let origin = Origin::tls_http1()
        .name("sqs.us-east-1.amazonaws.com")
        .start()
        .await;
    let args = origin.proxy_args_with(&[
        "--sign",
        "--sign-allow-clients",
        "10.0.0.0/8",
        "--trust-forwarded",
        "127.0.0.0/8",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Spawned::start_with_env(&args, &AWS_ENV).await;
    let host = "sqs.us-east-1.amazonaws.com.ccnproxy-https";
    let mut c = Client::connect(proxy.addr).await;
    for xff in [None, Some("192.0.2.1")] {
        let headers: Vec<(&str, &str)> = xff.map(|a| ("x-forwarded-for", a)).into_iter().collect();
        let resp = c
            .send(client::request("GET", host, "/", &headers, client::empty()))
            .await
            .expect("response");
        assert_eq!(resp.status(), 403, "{xff:?}: {}", resp.text());
        assert!(
            resp.text().contains("--sign-allow-clients"),
            "{:?}",
            resp.text()
        );
    }
    assert_eq!(origin.requests(), 0, "a refused client reached the origin");

    let resp = c
        .send(client::request(
            "GET",
            host,
            "/",
            &[("x-forwarded-for", "10.1.2.3")],
            client::empty(),
        ))
        .await
        .expect("response");
    assert_eq!(resp.status(), 200, "{}", resp.text());
    let seen = origin.last_request();
    let auth = seen.header("authorization").unwrap_or_default();
    assert!(auth.contains("Credential=AKIDEXAMPLE/"), "signed: {auth}");
}

/// `Host: 127.0.0.1.ccnproxy:PORT` with only `--allow-cidr 127.0.0.0/8`:
/// 403 naming `--allow-host`, no connection; an address or CIDR in
/// `--allow-host` lets it through.
#[tokio::test]
async fn an_ip_literal_needs_allow_host_whatever_allow_cidr_opens() {
    let origin = Origin::plain_http1().reply(200, "reached").start().await;
    let host = format!("127.0.0.1.ccnproxy:{}", origin.addr().port());
    let base = ["--allow-cidr", "127.0.0.0/8", "--allow-port", "*"];
    let proxy = Proxy::start(base).await;
    let resp = proxy.get(&host, "/").await;
    assert_eq!(resp.status(), 403, "{}", resp.text());
    assert!(resp.text().contains("--allow-host"), "{:?}", resp.text());
    assert_eq!(origin.accepted(), 0, "refused before any connection");
    drop(proxy);

    for allow in ["127.0.0.1", "127.0.0.0/8"] {
        let mut args = base.to_vec();
        args.extend(["--allow-host", allow]);
        let proxy = Proxy::start(&args).await;
        let resp = proxy.get(&host, "/").await;
        assert_eq!(
            (resp.status().as_u16(), resp.text().as_str()),
            (200, "reached"),
            "--allow-host {allow}"
        );
    }
}
