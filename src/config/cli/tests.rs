//! Flags to `Config`: chocon's defaults, refusals, value forms and the
//! `--config` file's place in the precedence.

use super::values::{parse_bytes, parse_resolve};
use super::*;
use crate::config::Config;

fn config(args: &[&str]) -> Result<Config, String> {
    let argv = std::iter::once("ccnproxy")
        .chain(args.iter().copied())
        .map(OsString::from);
    parse_args(argv)
        .and_then(Args::into_config)
        .map_err(|e| e.to_string())
}

#[test]
fn chocon_flags_and_defaults() {
    let c = config(&[]).expect("defaults parse");
    assert_eq!(c.listener.addr, "0.0.0.0:3000".parse().expect("addr"));
    assert_eq!(c.pool.keepalive_conns, None);
    assert_eq!(c.listener.read_timeout, Duration::from_secs(30));
    assert_eq!(c.process.shutdown_timeout, Duration::from_secs(3600));
    let c = config(&[
        "-l",
        "127.0.0.1",
        "-p",
        "0",
        "-c",
        "8",
        "--read-timeout",
        "5",
        "--proxy-read-timeout",
        "250ms",
    ])
    .expect("flags parse");
    assert_eq!(c.listener.addr, "127.0.0.1:0".parse().expect("addr"));
    assert_eq!(c.pool.keepalive_conns, Some(8));
    assert_eq!(c.listener.read_timeout, Duration::from_secs(5));
    assert_eq!(c.pool.response_timeout, Duration::from_millis(250));
}

#[test]
fn bad_values_are_refused() {
    for args in [
        &["--port", "70000"][..],
        &["--upstream", "ftp://x"],
        &["--allow-host", "a.*.b"],
        &["--resolve", "nohostport"],
        &["--allow-cidr", "10.0.0.0/40"],
        &["--read-timeout", "soon"],
        &["--h2-conns", "0"],
        &["--allow-port", "70000"],
        &["--allow-port", "9-8"],
        &["--allow-port", "any"],
        &["--access-log-queue-bytes", "12 parsecs"],
        &["--access-log-when-full", "maybe"],
    ] {
        assert!(config(args).is_err(), "{args:?} should be refused");
    }
}

#[test]
fn allow_port_widens_requests_and_connect() {
    let c = config(&[]).expect("defaults parse");
    assert_eq!(
        c.policy.request_ports,
        [PortRange::one(443), PortRange::one(80)]
    );
    assert_eq!(c.policy.connect_ports, [PortRange::one(443)]);
    let c = config(&["--allow-port", "8443", "--allow-port", "9000-9010,*"]).expect("parse");
    let want = [
        PortRange::one(8443),
        PortRange {
            first: 9000,
            last: 9010,
        },
        PortRange {
            first: 0,
            last: u16::MAX,
        },
    ];
    assert_eq!(c.policy.connect_ports[1..], want);
    assert_eq!(c.policy.request_ports[2..], want);
}

#[test]
fn byte_counts_take_units() {
    let cases = [
        ("1048576", Some(1 << 20)),
        ("256MiB", Some(256 << 20)),
        ("256 mib", Some(256 << 20)),
        ("2GiB", Some(2 << 30)),
        ("1GB", Some(1_000_000_000)),
        ("64k", Some(64 << 10)),
        ("10kB", Some(10_000)),
        ("0", Some(0)),
        ("MiB", None),
        ("-1", None),
        ("1.5MiB", None),
        ("99999999999TiB", None),
    ];
    for (text, want) in cases {
        assert_eq!(parse_bytes(text).ok(), want, "{text:?}");
    }
    let c = config(&[
        "--access-log-queue-bytes",
        "1MiB",
        "--access-log-when-full",
        "drop",
    ])
    .expect("parse");
    assert_eq!(c.access_log.queue_bytes, 1 << 20);
    assert_eq!(c.access_log.when_full, WhenFull::Drop);
    assert_eq!(
        config(&[]).expect("defaults").access_log.when_full,
        WhenFull::Block
    );
}

#[test]
fn resolve_accepts_pinned_ports() {
    let r = parse_resolve("s3.amazonaws.com:443:127.0.0.1:8443,[::1]").expect("valid");
    assert_eq!(r.host, "s3.amazonaws.com");
    assert_eq!(r.port, 443);
    assert_eq!(
        r.addrs,
        vec![
            "127.0.0.1:8443".parse().expect("addr"),
            "[::1]:0".parse().expect("addr")
        ]
    );
}

#[test]
fn config_file_fills_in_below_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ccnproxy.toml");
    std::fs::write(
        &path,
        "port = 4000\nkeepalive_conns = 9\nallow-host = ['*.test', '*.example']\n",
    )
    .expect("write");
    let c = config(&["--config", path.to_str().expect("utf8"), "-c", "3"]).expect("parse");
    assert_eq!(c.listener.addr.port(), 4000);
    assert_eq!(c.pool.keepalive_conns, Some(3));
    assert_eq!(c.policy.allow_host, vec!["*.test", "*.example"]);
}
