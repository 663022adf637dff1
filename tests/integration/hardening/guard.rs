//! The address guard (docs/design.md "Policy", docs/security.md "Safe defaults"), seen from
//! inside a network namespace with only loopback: every non-public class is
//! refused with 403 before any connection, `--allow-cidr` opens exactly what
//! it names, and the guard holds for DNS rebinding, CONNECT, `--upstream`,
//! `--prewarm` and IP literals in their IPv6 disguises.
//!
//! Witness origins listen on the private addresses themselves (added to `lo`
//! in the namespace), so "no connection attempt" is a counter, not a hope.

use super::netns::netns_test;
use super::{next_rec, poll};
use crate::support::client::RawConn;
use crate::support::{Dns, Origin, Proxy, TIMEOUT, wait_until};

/// Addresses the witness origins listen on, added to `lo` in the namespace.
const SETUP: &[&str] = &[
    "ip addr add 10.1.2.3/32 dev lo",
    "ip addr add 10.0.0.1/32 dev lo",
    "ip addr add 172.16.0.1/32 dev lo",
    "ip addr add 192.168.1.1/32 dev lo",
    "ip addr add 169.254.169.254/32 dev lo",
    "ip addr add 100.64.0.1/32 dev lo",
    "ip addr add 52.216.1.1/32 dev lo",
    "ip -6 addr add fd00:ec2::254/128 dev lo nodad",
];

/// One class of non-public address.
struct Class {
    label: &'static str,
    /// What DNS (or `--resolve`) answers.
    ip: &'static str,
    /// Where a witness origin can listen to receive a connection to `ip`
    /// (none: nothing in the namespace can accept it; the allowed run gets 502).
    witness: Option<&'static str>,
    /// The `--allow-cidr` that opens it.
    cidr: &'static str,
}

const CLASSES: &[Class] = &[
    Class {
        label: "RFC 1918 10/8",
        ip: "10.1.2.3",
        witness: Some("10.1.2.3"),
        cidr: "10.0.0.0/8",
    },
    Class {
        label: "RFC 1918 172.16/12",
        ip: "172.16.0.1",
        witness: Some("172.16.0.1"),
        cidr: "172.16.0.0/12",
    },
    Class {
        label: "RFC 1918 192.168/16",
        ip: "192.168.1.1",
        witness: Some("192.168.1.1"),
        cidr: "192.168.0.0/16",
    },
    Class {
        label: "instance metadata",
        ip: "169.254.169.254",
        witness: Some("169.254.169.254"),
        cidr: "169.254.169.254/32",
    },
    Class {
        label: "shared 100.64/10",
        ip: "100.64.0.1",
        witness: Some("100.64.0.1"),
        cidr: "100.64.0.0/10",
    },
    Class {
        label: "loopback",
        ip: "127.0.0.1",
        witness: Some("127.0.0.1"),
        cidr: "127.0.0.0/8",
    },
    Class {
        label: "unspecified",
        ip: "0.0.0.0",
        witness: None,
        cidr: "0.0.0.0/32",
    },
    Class {
        label: "multicast",
        ip: "224.0.0.1",
        witness: None,
        cidr: "224.0.0.0/4",
    },
    Class {
        label: "reserved 240/4",
        ip: "240.0.0.1",
        witness: None,
        cidr: "240.0.0.0/4",
    },
    Class {
        label: "IPv6 loopback",
        ip: "::1",
        witness: Some("::1"),
        cidr: "::1/128",
    },
    Class {
        label: "IPv6 link-local",
        ip: "fe80::1",
        witness: None,
        cidr: "fe80::/10",
    },
    Class {
        label: "IPv6 metadata (ULA)",
        ip: "fd00:ec2::254",
        witness: Some("fd00:ec2::254"),
        cidr: "fd00:ec2::/32",
    },
    Class {
        label: "IPv4-mapped private",
        ip: "::ffff:10.0.0.1",
        witness: Some("10.0.0.1"),
        cidr: "10.0.0.0/8",
    },
    Class {
        label: "NAT64 of metadata",
        ip: "64:ff9b::a9fe:a9fe",
        witness: None,
        cidr: "169.254.0.0/16",
    },
];

/// How the proxy learns the class addresses.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The test DNS server (`--dns-server`).
    Dns,
    /// `--resolve name:port:ip`.
    Resolve,
}

/// One host per class, its witness, and the proxy arguments that resolve it.
struct Targets {
    hosts: Vec<String>,
    witnesses: Vec<Option<Origin>>,
    args: Vec<String>,
    _dns: Dns,
}

/// A port nothing listens on (bound, then released).
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

async fn targets(source: Source) -> Targets {
    let dns = Dns::start().await;
    let dead = dead_port();
    let mut t = Targets {
        hosts: Vec::new(),
        witnesses: Vec::new(),
        args: vec![
            "--allow-host".into(),
            "*".into(),
            "--allow-port".into(),
            "*".into(),
        ],
        _dns: dns,
    };
    for (i, class) in CLASSES.iter().enumerate() {
        let name = format!("class{i}.test");
        let witness = match class.witness {
            Some(ip) => Some(
                Origin::plain_http1()
                    .bind(ip)
                    .reply(200, "witness")
                    .start()
                    .await,
            ),
            None => None,
        };
        let port = witness.as_ref().map_or(dead, |w| w.addr().port());
        match source {
            Source::Dns => t._dns.set(&name, &[class.ip], 300),
            Source::Resolve => {
                t.args.push("--resolve".into());
                t.args.push(format!("{name}:{port}:{}", class.ip));
            }
        }
        t.hosts.push(format!("{name}.ccnproxy:{port}"));
        t.witnesses.push(witness);
    }
    if let Source::Dns = source {
        t.args.push("--dns-server".into());
        t.args.push(t._dns.addr().to_string());
    }
    t
}

/// Every class refused with a 403 that names `--allow-cidr`, no witness
/// connected; then, with `--allow-cidr` for each, every witness answers and
/// the rest fail to connect (502).
async fn every_class_is_refused_until_allowed(source: Source) {
    let t = targets(source).await;
    let mut wrong = Vec::new();

    let proxy = Proxy::start(&t.args).await;
    for (class, host) in CLASSES.iter().zip(&t.hosts) {
        let resp = proxy.get(host, "/").await;
        let text = resp.text();
        let log = next_rec(&proxy).await;
        let error = log.error();
        if resp.status() != 403
            || !text.contains("--allow-cidr")
            || !text.contains("non-public address")
            || log.status != 403
            || !error.contains("non-public address")
        {
            wrong.push(format!(
                "{} ({}) refused run: {} {text:?}; log error {error:?}",
                class.label,
                class.ip,
                resp.status()
            ));
        }
    }
    for (class, w) in CLASSES.iter().zip(&t.witnesses) {
        if let Some(w) = w
            && w.accepted() != 0
        {
            wrong.push(format!(
                "{} ({}): the refused proxy connected to the witness {} time(s)",
                class.label,
                class.ip,
                w.accepted()
            ));
        }
    }
    drop(proxy);

    let mut args = t.args.clone();
    for class in CLASSES {
        args.push("--allow-cidr".into());
        args.push(class.cidr.into());
    }
    let proxy = Proxy::start(&args).await;
    for ((class, host), w) in CLASSES.iter().zip(&t.hosts).zip(&t.witnesses) {
        let resp = proxy.get(host, "/").await;
        let (want, ok) = match w {
            Some(w) => (
                "200 from the witness",
                resp.status() == 200 && resp.text() == "witness" && w.accepted() == 1,
            ),
            None => (
                "502 (nothing to connect to in the namespace)",
                resp.status() == 502,
            ),
        };
        if !ok {
            wrong.push(format!(
                "{} ({}) with --allow-cidr {}: want {want}, got {} {:?}",
                class.label,
                class.ip,
                class.cidr,
                resp.status(),
                resp.text()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "address guard via {source:?}:\n{}",
        wrong.join("\n")
    );
}

netns_test! {
    /// Each non-public class, answered by DNS, is refused before connecting.
    async fn dns_answers_of_every_non_public_class_get_403_until_allowed() setup(SETUP) {
        every_class_is_refused_until_allowed(Source::Dns).await;
    }
}

netns_test! {
    /// The same through `--resolve` pins.
    async fn resolve_pins_of_every_non_public_class_get_403_until_allowed() setup(SETUP) {
        every_class_is_refused_until_allowed(Source::Resolve).await;
    }
}

/// Sends one raw request head on a fresh connection; returns the status and
/// the body text (Content-Length bodies only).
async fn raw_status(proxy: &Proxy, head: &str) -> (u16, String) {
    let mut conn = RawConn::connect(proxy.addr()).await;
    conn.write(head.as_bytes()).await.expect("writing the head");
    let head = conn.read_head().await;
    let body = if head.header("content-length").is_some() {
        String::from_utf8_lossy(&conn.read_body(&head).await).into_owned()
    } else {
        String::new()
    };
    (head.status, body)
}

/// An absolute-form GET of `http://{authority}{path}`. The `Host` header
/// names the same authority with an IPv6 literal in canonical spelling, so
/// the request reaches the policy (a Host that disagrees with the target is a
/// 400 of its own, see `hostile`).
fn absolute(authority: &str, path: &str) -> String {
    let host = canonical_authority(authority);
    format!("GET http://{authority}{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

/// `[v6]` / `[v6]:port` with the address in `Ipv6Addr`'s canonical text.
fn canonical_authority(authority: &str) -> String {
    let Some((v6, rest)) = authority.strip_prefix('[').and_then(|a| a.split_once(']')) else {
        return authority.to_owned();
    };
    let ip: std::net::Ipv6Addr = v6.parse().expect("IPv6 literal");
    format!("[{ip}]{rest}")
}

fn connect(authority: &str) -> String {
    format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n")
}

netns_test! {
    /// 169.254.169.254 in every spelling: refused by the default host list
    /// (naming `--allow-host`), and by the address guard once any host is
    /// allowed (naming `--allow-cidr`). A witness on the metadata address
    /// (port 80) and on fd00:ec2::254 never sees a connection.
    async fn instance_metadata_is_refused_in_every_form() setup(SETUP) {
        let meta = Origin::plain_http1().bind("169.254.169.254").port(80).start().await;
        let meta6 = Origin::plain_http1().bind("fd00:ec2::254").port(80).start().await;
        let dns = Dns::start().await;
        dns.set("instance-data.test", &["169.254.169.254"], 300);
        dns.set("metadata6.test", &["fd00:ec2::254"], 300);
        let dns_args = ["--dns-server".to_owned(), dns.addr().to_string()];

        // Default --allow-host: AWS domains only.
        let proxy = Proxy::start(&dns_args).await;
        let resp = proxy.get("169.254.169.254.ccnproxy", "/latest/meta-data/").await;
        assert_eq!(resp.status(), 403, "{}", resp.text());
        assert!(resp.text().contains("--allow-host"), "{:?}", resp.text());
        let (status, text) = raw_status(&proxy, &absolute("169.254.169.254", "/latest/meta-data/")).await;
        assert_eq!(status, 403, "absolute-form by default: {text}");
        let (status, text) = raw_status(&proxy, &connect("169.254.169.254:80")).await;
        assert_eq!(status, 403, "CONNECT by default: {text}");
        drop(proxy);

        let mut args = dns_args.to_vec();
        args.extend(["--allow-host".to_owned(), "*".to_owned(), "--allow-port".to_owned(), "*".to_owned()]);
        let proxy = Proxy::start(&args).await;
        let hosts = ["169.254.169.254.ccnproxy", "instance-data.test.ccnproxy", "metadata6.test.ccnproxy"];
        for host in hosts {
            let resp = proxy.get(host, "/latest/meta-data/").await;
            assert_eq!(resp.status(), 403, "Host {host}: {}", resp.text());
            assert!(resp.text().contains("--allow-cidr"), "Host {host}: {:?}", resp.text());
        }
        // (absolute-form authority, CONNECT target)
        let forms = [
            ("169.254.169.254", "169.254.169.254:80"),
            ("169.254.169.254:80", "instance-data.test:80"),
            ("instance-data.test", "metadata6.test:80"),
            ("[fd00:ec2::254]", "[fd00:ec2::254]:80"),
            ("[::ffff:169.254.169.254]", "[::ffff:169.254.169.254]:80"),
            ("[::ffff:a9fe:a9fe]", "[::ffff:a9fe:a9fe]:80"),
            ("[64:ff9b::a9fe:a9fe]", "[64:ff9b::a9fe:a9fe]:80"),
        ];
        for (auth, target) in forms {
            let (status, text) = raw_status(&proxy, &absolute(auth, "/latest/meta-data/")).await;
            assert_eq!(status, 403, "absolute-form http://{auth}/: {text}");
            let (status, text) = raw_status(&proxy, &connect(target)).await;
            assert_eq!(status, 403, "CONNECT {target}: {text}");
        }
        assert_eq!(meta.accepted(), 0, "a connection reached 169.254.169.254:80");
        assert_eq!(meta6.accepted(), 0, "a connection reached [fd00:ec2::254]:80");
    }
}

netns_test! {
    /// Loopback in IPv6 disguise (`[::ffff:127.0.0.1]`, IPv4-compatible,
    /// NAT64) and in the legacy numeric spellings getaddrinfo would accept:
    /// none reaches a loopback witness without `--allow-cidr`; with
    /// `--allow-cidr 127.0.0.0/8` the mapped form does, so it was the guard
    /// that refused it.
    async fn mapped_and_legacy_loopback_forms_are_refused() setup(SETUP) {
        let witness = Origin::plain_http1().reply(200, "witness").start().await;
        let port = witness.addr().port();
        let dns = Dns::start().await;
        dns.set("mapped.test", &["::ffff:127.0.0.1"], 300);
        let args = [
            "--allow-host".to_owned(),
            "*".to_owned(),
            "--allow-port".to_owned(),
            "*".to_owned(),
            "--dns-server".to_owned(),
            dns.addr().to_string(),
        ];
        let proxy = Proxy::start(&args).await;
        let guarded = [
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "[0:0:0:0:0:ffff:127.0.0.1]",
            "[::127.0.0.1]",
            "[64:ff9b::7f00:1]",
            "[::1]",
            "mapped.test",
            "127.0.0.1",
        ];
        for host in guarded {
            let auth = format!("{host}:{port}");
            let (status, text) = raw_status(&proxy, &absolute(&auth, "/")).await;
            assert_eq!(status, 403, "http://{auth}/: {text}");
            assert!(text.contains("--allow-cidr"), "http://{auth}/: {text}");
            let (status, text) = raw_status(&proxy, &connect(&auth)).await;
            assert_eq!(status, 403, "CONNECT {auth}: {text}");
        }
        // Not IP literals to the proxy: DNS names the test DNS does not know
        // (502), or refused as bad hosts (400); never a connection.
        for host in ["127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0x7f.1"] {
            let auth = format!("{host}:{port}");
            let (status, text) = raw_status(&proxy, &absolute(&auth, "/")).await;
            assert!(
                matches!(status, 400 | 403 | 502),
                "http://{auth}/ must not be forwarded: {status} {text}"
            );
        }
        assert_eq!(witness.accepted(), 0, "a disguised loopback target was reached");
        drop(proxy);

        let mut allowed = args.to_vec();
        allowed.extend(["--allow-cidr".to_owned(), "127.0.0.0/8".to_owned()]);
        let proxy = Proxy::start(&allowed).await;
        let (status, text) =
            raw_status(&proxy, &absolute(&format!("[::ffff:127.0.0.1]:{port}"), "/")).await;
        assert_eq!(status, 200, "with --allow-cidr 127.0.0.0/8 the mapped form is reachable: {text}");
        assert_eq!(witness.accepted(), 1);
    }
}

netns_test! {
    /// DNS rebinding: a public answer first (52.216.1.1, on `lo` in the
    /// namespace), a private one after the TTL. Once the proxy has the new
    /// answer, requests get 403; the private witness never sees a connection.
    async fn dns_rebinding_to_a_private_address_gets_403() setup(SETUP) {
        let public = Origin::plain_http1().bind("52.216.1.1").reply(200, "public").start().await;
        let port = public.addr().port();
        let private = Origin::plain_http1().bind("10.1.2.3").port(port).reply(200, "private").start().await;
        let dns = Dns::start().await;
        dns.set("rebind.test", &["52.216.1.1"], 1);
        let proxy = Proxy::start([
            "--allow-host",
            "*",
            "--allow-port",
            "*",
            "--dns-server",
            &dns.addr().to_string(),
            "--dns-min-ttl",
            "1s",
        ])
        .await;
        let host = format!("rebind.test.ccnproxy:{port}");
        let resp = proxy.get(&host, "/").await;
        assert_eq!((resp.status().as_u16(), resp.text().as_str()), (200, "public"));

        dns.set("rebind.test", &["10.1.2.3"], 1);
        // The proxy refreshes in the background once the TTL ran out; until it
        // has the new answer, requests keep going to the public address.
        let refused = poll("a 403 once the private answer is in", TIMEOUT, || {
            let proxy = &proxy;
            let host = &host;
            async move {
                let resp = proxy.get(host, "/").await;
                match (resp.status().as_u16(), resp.text()) {
                    (403, text) => Ok(text),
                    (200, text) if text == "public" => Err("200 public".to_owned()),
                    (status, text) => panic!("after rebinding: {status} {text:?}"),
                }
            }
        })
        .await;
        assert!(refused.contains("10.1.2.3") && refused.contains("--allow-cidr"), "{refused:?}");
        for _ in 0..3 {
            assert_eq!(proxy.get(&host, "/").await.status(), 403, "stays refused");
        }
        assert_eq!(private.accepted(), 0, "the rebound private address was reached");
    }
}

netns_test! {
    /// One private address in an otherwise public answer refuses the origin.
    async fn answer_mixing_public_and_private_gets_403() setup(SETUP) {
        let public = Origin::plain_http1().bind("52.216.1.1").start().await;
        let port = public.addr().port();
        let private = Origin::plain_http1().bind("10.1.2.3").port(port).start().await;
        let dns = Dns::start().await;
        dns.set("mixed.test", &["52.216.1.1", "10.1.2.3"], 300);
        let proxy = Proxy::start(["--allow-host", "*", "--allow-port", "*", "--dns-server", &dns.addr().to_string()]).await;
        for _ in 0..4 {
            let resp = proxy.get(&format!("mixed.test.ccnproxy:{port}"), "/").await;
            assert_eq!(resp.status(), 403, "{}", resp.text());
        }
        assert_eq!(private.accepted() + public.accepted(), 0, "no connection to a refused origin");
    }
}

netns_test! {
    /// CONNECT to a private literal or a name resolving to one: 403, no
    /// connection. With `--allow-cidr` the tunnel opens and carries a request,
    /// so the 403 was the guard's.
    async fn connect_to_a_private_address_gets_403() setup(SETUP) {
        let witness = Origin::plain_http1().bind("10.1.2.3").reply(200, "witness").start().await;
        let port = witness.addr().port();
        let dns = Dns::start().await;
        dns.set("inner.test", &["10.1.2.3"], 300);
        let args = ["--allow-host".to_owned(), "*".to_owned(), "--allow-port".to_owned(), "*".to_owned(), "--dns-server".to_owned(), dns.addr().to_string()];
        let proxy = Proxy::start(&args).await;
        for target in [format!("10.1.2.3:{port}"), format!("inner.test:{port}")] {
            let (status, text) = raw_status(&proxy, &connect(&target)).await;
            assert_eq!(status, 403, "CONNECT {target}: {text}");
            assert!(text.contains("--allow-cidr"), "CONNECT {target}: {text}");
        }
        assert_eq!(witness.accepted(), 0, "CONNECT reached a private address");
        drop(proxy);

        let mut allowed = args.to_vec();
        allowed.extend(["--allow-cidr".to_owned(), "10.0.0.0/8".to_owned()]);
        let proxy = Proxy::start(&allowed).await;
        let mut conn = RawConn::connect(proxy.addr()).await;
        conn.write(connect(&format!("inner.test:{port}")).as_bytes()).await.unwrap();
        assert_eq!(conn.read_head().await.status, 200, "allowed CONNECT");
        conn.write(b"GET / HTTP/1.1\r\nHost: inner.test\r\nConnection: close\r\n\r\n").await.unwrap();
        let head = conn.read_head().await;
        assert_eq!(head.status, 200);
        assert_eq!(conn.read_body(&head).await, b"witness");
        assert_eq!(witness.accepted(), 1);
    }
}

netns_test! {
    /// `--upstream` needs no host pattern, but its addresses pass the guard:
    /// a private literal or a name resolving to one gets 403.
    async fn upstream_pointing_at_a_private_address_gets_403() setup(SETUP) {
        let witness = Origin::plain_http1().bind("10.1.2.3").reply(200, "witness").start().await;
        let port = witness.addr().port();
        let dns = Dns::start().await;
        dns.set("internal.test", &["10.1.2.3"], 300);
        for upstream in [format!("http://10.1.2.3:{port}"), format!("http://internal.test:{port}")] {
            let proxy = Proxy::start(["--upstream", &upstream, "--dns-server", &dns.addr().to_string()]).await;
            let resp = proxy.get("anything.example", "/").await;
            assert_eq!(resp.status(), 403, "--upstream {upstream}: {}", resp.text());
            assert!(resp.text().contains("--allow-cidr"), "{:?}", resp.text());
        }
        assert_eq!(witness.accepted(), 0, "--upstream reached a private address");

        let proxy = Proxy::start([
            "--upstream",
            &format!("http://internal.test:{port}"),
            "--dns-server",
            &dns.addr().to_string(),
            "--allow-cidr",
            "10.1.2.3/32",
        ])
        .await;
        let resp = proxy.get("anything.example", "/").await;
        assert_eq!((resp.status().as_u16(), resp.text().as_str()), (200, "witness"));
    }
}

netns_test! {
    /// `--prewarm` of a private origin connects nowhere: the proxy says the
    /// prewarm failed, and the witness stays untouched while requests to it
    /// get 403.
    async fn prewarm_of_a_private_origin_does_not_connect() setup(SETUP) {
        let witness = Origin::plain_http1().bind("10.1.2.3").start().await;
        let port = witness.addr().port();
        let proxy = Proxy::start([
            "--allow-host",
            "*",
            "--prewarm",
            &format!("http://10.1.2.3:{port}"),
        ])
        .await;
        wait_until("the proxy to report the refused prewarm", TIMEOUT, || {
            proxy.stderr().contains("prewarm failed")
        })
        .await;
        let resp = proxy.get(&format!("10.1.2.3.ccnproxy:{port}"), "/").await;
        assert_eq!(resp.status(), 403, "{}", resp.text());
        assert_eq!(witness.accepted(), 0, "prewarm connected to a private address");
    }
}
