//! `--max-buffered-bytes` caps the request-body bytes held in memory by all
//! requests together. `--sign` reads a non-S3 body whole to hash it; uploads
//! that would take the total past the cap get 503 with `Retry-After` before
//! any of their body is read, the rest go through, and the bytes held come
//! back once the bodies are sent.
//!
//! The real binary (`Spawned`), with static AWS credentials in its
//! environment for the standard chain; the origin is a local plain-HTTP
//! server reached through the test DNS server under an AWS name.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::bounded_log::Spawned;
use crate::bounded_origins::{spawn_with_dns, wait_metrics};
use crate::support::client::{self, Client};
use crate::support::{Dns, Origin, TIMEOUT};

/// A non-S3 endpoint: its bodies are hashed (buffered) for re-signing.
pub(crate) const NAME: &str = "sqs.us-east-1.amazonaws.com";
/// Each upload's body.
const BODY: usize = 300 << 10;

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

fn buffered(m: &crate::support::admin::Metrics) -> f64 {
    m.get("ccnproxy_buffered_bytes", &[]).unwrap_or(-1.0)
}

/// An upload whose head and first KiB are sent; the rest waits for `finish`.
struct Stalled(TcpStream);

impl Stalled {
    async fn start(proxy: &Spawned, host: &str) -> Stalled {
        let mut conn = TcpStream::connect(proxy.addr).await.expect("connect");
        let head = format!(
            "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {BODY}\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.expect("head");
        conn.write_all(&[b'a'; 1024]).await.expect("first KiB");
        Stalled(conn)
    }

    /// Sends the rest of the body; returns the response's status line.
    async fn finish(mut self) -> String {
        self.0
            .write_all(&vec![b'a'; BODY - 1024])
            .await
            .expect("rest of the body");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let read = async {
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = self.0.read(&mut buf).await.expect("response");
                assert!(n > 0, "closed before a response head");
                got.extend_from_slice(&buf[..n]);
            }
        };
        tokio::time::timeout(TIMEOUT, read)
            .await
            .expect("response in time");
        let text = String::from_utf8_lossy(&got);
        text.lines().next().unwrap_or_default().to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_uploads_over_the_buffer_cap_get_503_the_rest_succeed() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let dns = Dns::start().await;
    dns.set(NAME, &["127.0.0.1"], 300);
    let extra = [
        "--access-log-format",
        "json",
        "--sign",
        "--sign-max-body",
        "524288",
        // Room for three uploads, not four.
        "--max-buffered-bytes",
        "1MiB",
    ];
    let proxy = spawn_with_dns(&dns, &extra, &AWS_ENV).await;
    let host = format!("{NAME}.ccnproxy:{}", origin.addr().port());

    // Three uploads hold 900 KiB of the 1 MiB while their bodies trickle in.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(Stalled::start(&proxy, &host).await);
    }
    let held = (3 * BODY) as f64;
    wait_metrics(
        &proxy,
        "three uploads reserved",
        Duration::from_secs(20),
        |m| buffered(m) == held,
    )
    .await;

    // A fourth does not fit: 503 at once, its body never read.
    let mut c = Client::connect(proxy.addr).await;
    let upload = || {
        let headers = [("content-type", "application/x-www-form-urlencoded")];
        client::request("POST", &host, "/", &headers, client::full(vec![b'b'; BODY]))
    };
    let resp = c.send(upload()).await.expect("fourth upload");
    assert_eq!(resp.status(), 503, "{}", resp.text());
    assert!(
        resp.text().contains("--max-buffered-bytes"),
        "{:?}",
        resp.text()
    );
    assert!(
        resp.header("retry-after").is_some(),
        "503 without Retry-After"
    );
    assert_eq!(origin.requests(), 0, "nothing reached the origin yet");

    for upload in stalled {
        assert_eq!(upload.finish().await, "HTTP/1.1 200 OK");
    }
    let m = wait_metrics(
        &proxy,
        "every reservation given back",
        Duration::from_secs(20),
        |m| buffered(m) == 0.0,
    )
    .await;
    assert_eq!(
        m.get("ccnproxy_buffered_refused_total", &[]),
        Some(1.0),
        "{}",
        m.text
    );
    // With room again, the same upload goes through.
    let mut c = Client::connect(proxy.addr).await;
    let resp = c.send(upload()).await.expect("upload after");
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(origin.requests(), 4);

    let refused: Vec<Value> = proxy
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["status"] == 503)
        .collect();
    assert_eq!(refused.len(), 1, "one 503 in the access log");
    let error = refused[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("--max-buffered-bytes"), "{}", refused[0]);
}
