//! What an operator types: a chocon command line, `--print-config` read back
//! through `--config`, `completions` and `man`, `--rate-limit N/m`, error
//! texts. The chocon and command tests run the real binary (start-up, exit
//! codes, the pid file and standard output are the subject).

use std::process::{Command, Output};

use crate::support::{Origin, Proxy};

fn ccnproxy(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccnproxy"));
    cmd.args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CCNPROXY_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("ccnproxy runs")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf8")
}

/// Every flag chocon 0.12 documents (`chocon -h`), each at chocon's default
/// (empty strings included: chocon's "not set"). The harness puts
/// `-l 127.0.0.1 -p 0` (chocon flags too) and a JSON log on stdout first;
/// `--access-log-dir ""` then sends the log to stderr, as chocon does.
#[tokio::test]
async fn a_chocon_command_line_with_its_defaults_starts() {
    let proxy = Proxy::spawn_binary([
        "--access-log-dir",
        "",
        "--access-log-rotate",
        "30",
        "--access-log-rotate-time",
        "1440",
        "--pid-file",
        "",
        "-c",
        "2",
        "--keepalive-conns",
        "2",
        "--max-conns-per-host",
        "0",
        "--read-timeout",
        "30",
        "--write-timeout",
        "90",
        "--proxy-read-timeout",
        "60",
        "--shutdown-timeout",
        "1h",
        "--upstream",
        "",
        "--stsize",
        "1000",
        "--spfactor",
        "3",
    ])
    .await;
    let admin = proxy.addr().to_string();
    assert_eq!(proxy.get(&admin, "/healthz").await.status(), 200);
    let resp = proxy.get(&admin, "/.api/http-stats").await;
    assert_eq!(resp.status(), 200);
    let stats: serde_json::Value = serde_json::from_str(&resp.text()).expect("json");
    assert_eq!(stats["response"]["sample_size"], 1000, "{stats}");
    assert_eq!(stats["request"]["count"], 1, "{stats}");
    let resp = proxy.get(&admin, "/.api/http-stats?window=1").await;
    let window: serde_json::Value = serde_json::from_str(&resp.text()).expect("json");
    assert_eq!(window["response"]["window_sec"], 60, "{window}");
    assert_eq!(window["response"]["sample_count"], 2, "{window}");

    let out = ccnproxy(&["-v"], &[]);
    assert!(
        stdout(&out).starts_with("ccnproxy "),
        "-v prints the version"
    );
}

/// A chocon unit's usual values: a pid file, a log directory and an
/// `--upstream` with chocon's trailing slash, which takes every request.
#[tokio::test]
async fn a_chocon_unit_line_routes_to_its_upstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    let pid_file = dir.path().join("chocon.pid");
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let upstream = format!("http://{}/", origin.addr());
    let proxy = Proxy::spawn_binary([
        "--access-log-dir",
        logs.to_str().expect("utf8"),
        "--pid-file",
        pid_file.to_str().expect("utf8"),
        "--upstream",
        &upstream,
        "--stsize",
        "10",
        "--spfactor",
        "1",
        "--allow-cidr",
        "127.0.0.0/8",
        "--allow-host",
        "127.0.0.1",
    ])
    .await;
    let pid = std::fs::read_to_string(&pid_file).expect("pid file written");
    assert_eq!(pid.trim(), proxy.pid().to_string());
    let resp = proxy.get("anything.example", "/x").await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    assert_eq!(origin.requests(), 1);
}

/// Flags beat `CCNPROXY_*`, which beat the file; what `--print-config`
/// prints, fed back as the only source, prints the same text again.
#[test]
fn print_config_round_trips_through_the_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("in.toml");
    std::fs::write(
        &file,
        "port = 4000\nkeepalive-conns = 9\nmax-conns-per-host = 7\nsign = true\n",
    )
    .expect("write");
    let printed = stdout(&ccnproxy(
        &[
            "--config",
            file.to_str().expect("utf8"),
            "--port",
            "4100",
            "--rate-limit",
            "5/s",
            "--print-config",
        ],
        &[
            ("CCNPROXY_KEEPALIVE_CONNS", "5"),
            ("CCNPROXY_PREWARM", "https://s3.amazonaws.com"),
        ],
    ));
    for line in [
        "port = 4100",
        "keepalive-conns = 5",
        "max-conns-per-host = 7",
        "sign = true",
        "rate-limit = \"5/s\"",
        "prewarm = [\"https://s3.amazonaws.com\"]",
    ] {
        assert!(printed.lines().any(|l| l == line), "{line:?} in\n{printed}");
    }
    let back = dir.path().join("printed.toml");
    std::fs::write(&back, &printed).expect("write");
    let again = stdout(&ccnproxy(
        &["--config", back.to_str().expect("utf8"), "--print-config"],
        &[],
    ));
    assert_eq!(again, printed);

    let bad = ccnproxy(&["--h2-conns", "0", "--print-config"], &[]);
    assert_eq!(bad.status.code(), Some(2), "a bad setting is refused");
}

#[test]
fn completions_and_man_page_come_from_the_binary() {
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout(&ccnproxy(&["completions", shell], &[]));
        for flag in ["--allow-host", "--stsize", "--print-config"] {
            let name = flag.trim_start_matches('-');
            assert!(script.contains(name), "{shell} lacks {flag}");
        }
    }
    let page = stdout(&ccnproxy(&["man"], &[]));
    assert!(page.contains(".TH ccnproxy 1"), "{page}");
    assert!(page.contains("\\-\\-spfactor"), "{page}");
    let out = ccnproxy(&["completions", "tcsh"], &[]);
    assert_eq!(out.status.code(), Some(2), "unknown shell");
}

/// `--rate-limit 2/m`: two requests, then 429 with a `Retry-After` of about
/// half a minute (one token every 30 s).
#[tokio::test]
async fn rate_limit_per_minute() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let proxy = Proxy::start(origin.proxy_args_with(&["--rate-limit", "2/m"])).await;
    let host = "example.test.ccnproxy";
    assert_eq!(proxy.get(host, "/").await.status(), 200);
    assert_eq!(proxy.get(host, "/").await.status(), 200);
    let limited = proxy.get(host, "/").await;
    assert_eq!(limited.status(), 429);
    let retry: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((25..=30).contains(&retry), "Retry-After {retry}");
    assert_eq!(origin.requests(), 2);
}

/// DNS failures, as a client and the access log see them: one plain line
/// naming the host and what the DNS server said (never hickory's `Debug`
/// dump of the query). The DNS server is a real one in the test.
#[tokio::test]
async fn dns_failures_read_as_one_plain_line() {
    let dns = crate::support::Dns::start().await;
    dns.set("empty.amazonaws.com", &[], 5);
    let proxy = Proxy::start([
        "--dns-server",
        &dns.addr().to_string(),
        "--allow-cidr",
        "127.0.0.0/8",
    ])
    .await;
    let cases = [
        (
            "missing.amazonaws.com.ccnproxy-https",
            "DNS lookup of missing.amazonaws.com failed: no such name (NXDOMAIN); check the host name",
        ),
        (
            "empty.amazonaws.com.ccnproxy-https",
            "DNS lookup of empty.amazonaws.com failed: the name has no address record (A or AAAA)",
        ),
    ];
    for (host, reason) in cases {
        let resp = proxy.get(host, "/").await;
        assert_eq!(resp.status(), 502, "{}", resp.text());
        assert_eq!(resp.text(), format!("502 Bad Gateway: {reason}\n"));
        let log = proxy.next_log().await;
        assert_eq!(log["error"], reason, "{log}");
    }
}

/// A refused connect names the address and suggests the likely cause.
#[tokio::test]
async fn a_refused_connect_reads_as_one_plain_line() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let proxy = Proxy::start([
        "--resolve",
        &format!("gone.amazonaws.com:443:127.0.0.1:{port}"),
        "--allow-cidr",
        "127.0.0.0/8",
    ])
    .await;
    let resp = proxy.get("gone.amazonaws.com.ccnproxy-https", "/").await;
    assert_eq!(resp.status(), 502, "{}", resp.text());
    let text = resp.text();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains(&format!(
            "127.0.0.1:{port}: connection refused (is the origin listening on that port?)"
        )),
        "{text}"
    );
    assert!(!text.contains("os error"), "{text}");
}
