//! The default policy reaches AWS APIs only: EC2 instance names and load
//! balancers under the AWS domains get 403 naming the `--allow-host` pattern
//! that opens them, before any connection; requests go to ports 443 and 80
//! and CONNECT to 443 unless `--allow-port` widens them.

use crate::support::{Ca, Origin, Proxy};

/// Customer hosts under the AWS domains, each with the default pattern that
/// refuses it.
const CUSTOMER_HOSTS: &[(&str, &str)] = &[
    (
        "ec2-54-1-2-3.compute-1.amazonaws.com",
        "*.compute-1.amazonaws.com",
    ),
    (
        "ec2-1-2-3-4.us-west-2.compute.amazonaws.com",
        "*.compute.amazonaws.com",
    ),
    (
        "my-lb-123.us-east-1.elb.amazonaws.com",
        "*.elb.amazonaws.com",
    ),
    (
        "ec2-1-2-3-4.cn-north-1.compute.amazonaws.com.cn",
        "*.compute.amazonaws.com.cn",
    ),
    (
        "ec2-1-2-3-4.compute-1.amazonaws.com.cn",
        "*.compute-1.amazonaws.com.cn",
    ),
    (
        "my-lb.cn-north-1.elb.amazonaws.com.cn",
        "*.elb.amazonaws.com.cn",
    ),
];

/// Default host and port policy; only the test CA, the loopback address
/// range and `--resolve` pins for `origin`'s names, plus `extra`.
fn default_policy_args(origin: &Origin, extra: &[&str]) -> Vec<String> {
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
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

async fn raw_status(proxy: &Proxy, head: &str) -> (u16, String) {
    let mut conn = proxy.raw().await;
    conn.write(head.as_bytes()).await.expect("writing the head");
    let head = conn.read_head().await;
    let body = if head.header("content-length").is_some() {
        String::from_utf8_lossy(&conn.read_body(&head).await).into_owned()
    } else {
        String::new()
    };
    (head.status, body)
}

fn connect(authority: &str) -> String {
    format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n")
}

#[tokio::test]
async fn customer_hosts_are_refused_in_every_form_until_named() {
    let mut names: Vec<&str> = CUSTOMER_HOSTS.iter().map(|(h, _)| *h).collect();
    names.push("s3.amazonaws.com");
    let origin = Origin::tls_http1()
        .names(&names)
        .reply(200, "ok")
        .start()
        .await;
    let proxy = Proxy::start(default_policy_args(&origin, &[])).await;
    for (host, pattern) in CUSTOMER_HOSTS {
        let want = format!("--allow-host {pattern}");
        // Host mode, the example with a port that names the proxy.
        for via in [
            format!("{host}.ccnproxy-https"),
            format!("{host}.ccnproxy:{}", proxy.port()),
        ] {
            let resp = proxy.get(&via, "/").await;
            assert_eq!(resp.status(), 403, "Host {via}: {}", resp.text());
            assert!(resp.text().contains(&want), "Host {via}: {:?}", resp.text());
        }
        // Forward proxy (absolute form) and CONNECT, on an allowed port and
        // on port 25: the host is what is refused.
        let head =
            format!("GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let (status, text) = raw_status(&proxy, &head).await;
        assert_eq!(status, 403, "http://{host}/: {text}");
        assert!(text.contains(&want), "http://{host}/: {text}");
        for port in [443, 25] {
            let (status, text) = raw_status(&proxy, &connect(&format!("{host}:{port}"))).await;
            assert_eq!(status, 403, "CONNECT {host}:{port}: {text}");
            assert!(text.contains(&want), "CONNECT {host}:{port}: {text}");
        }
    }
    assert_eq!(origin.accepted(), 0, "a refused host reached the origin");
    // An AWS API under the same domain passes.
    let resp = proxy.get("s3.amazonaws.com.ccnproxy-https", "/").await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    let log = proxy
        .log_where("a 403 names its reason", |l| l["status"] == 403)
        .await;
    assert!(log.to_string().contains("--allow-host"), "{log}");
    drop(proxy);

    // Naming one pattern opens those hosts and nothing else.
    let proxy = Proxy::start(default_policy_args(
        &origin,
        &[
            "--allow-host",
            "*.amazonaws.com",
            "--allow-host",
            "*.compute-1.amazonaws.com",
        ],
    ))
    .await;
    let resp = proxy
        .get("ec2-54-1-2-3.compute-1.amazonaws.com.ccnproxy-https", "/")
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    let resp = proxy
        .get("my-lb-123.us-east-1.elb.amazonaws.com.ccnproxy-https", "/")
        .await;
    assert_eq!(resp.status(), 403, "{}", resp.text());
}

#[tokio::test]
async fn ports_other_than_443_and_80_need_allow_port() {
    let origin = Origin::tls_http1()
        .name("s3.amazonaws.com")
        .reply(200, "ok")
        .start()
        .await;
    let port = origin.addr().port();
    let proxy = Proxy::start(default_policy_args(&origin, &[])).await;
    let want = format!("--allow-port {port}");
    let resp = proxy
        .get(&format!("s3.amazonaws.com.ccnproxy-https:{port}"), "/")
        .await;
    assert_eq!(resp.status(), 403, "{}", resp.text());
    assert!(resp.text().contains(&want), "{:?}", resp.text());
    for target in [
        format!("s3.amazonaws.com:{port}"),
        "s3.amazonaws.com:80".into(),
        "s3.amazonaws.com:25".into(),
    ] {
        let (status, text) = raw_status(&proxy, &connect(&target)).await;
        assert_eq!(status, 403, "CONNECT {target}: {text}");
        assert!(text.contains("--allow-port"), "CONNECT {target}: {text}");
    }
    assert_eq!(origin.accepted(), 0, "a refused port reached the origin");
    // 443 is allowed (pinned to the origin by --resolve).
    let resp = proxy.get("s3.amazonaws.com.ccnproxy-https", "/").await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    drop(proxy);

    let port_arg = port.to_string();
    let proxy = Proxy::start(default_policy_args(&origin, &["--allow-port", &port_arg])).await;
    let resp = proxy
        .get(&format!("s3.amazonaws.com.ccnproxy-https:{port}"), "/")
        .await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    let mut conn = proxy.raw().await;
    conn.write(connect(&format!("s3.amazonaws.com:{port}")).as_bytes())
        .await
        .expect("write");
    assert_eq!(
        conn.read_head().await.status,
        200,
        "CONNECT with --allow-port"
    );
}
