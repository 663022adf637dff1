//! `--max-client-conns 10`: ten connections are served; the eleventh gets a
//! 503 naming the flag and is closed; a slot freed by a client that leaves is
//! usable again. A CONNECT tunnel keeps its connection's slot, and its place
//! in the connection gauge, until it closes.

use crate::support::admin::METRICS_LISTEN;
use crate::support::client::{self, Client, RawConn};
use crate::support::{Origin, Proxy, TIMEOUT};

use super::{poll, rec_where};

const HOST: &str = "example.test.ccnproxy";

async fn ok_on(c: &mut Client, path: &str) -> bool {
    let req = client::request("GET", HOST, path, &[], client::empty());
    matches!(c.send(req).await, Ok(r) if r.status() == 200)
}

#[tokio::test]
async fn eleventh_connection_gets_503_and_is_closed() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let proxy = Proxy::start(origin.proxy_args_with(&["--max-client-conns", "10"])).await;

    // Ten held connections, each shown to be served (so each holds a slot).
    let mut held = Vec::new();
    for i in 0..10 {
        let mut c = Client::connect(proxy.addr()).await;
        assert!(ok_on(&mut c, &format!("/held/{i}")).await, "connection {i}");
        held.push(c);
    }

    for attempt in 0..3 {
        let mut extra = proxy.raw().await;
        extra
            .write(b"GET /extra HTTP/1.1\r\nHost: example.test.ccnproxy\r\n\r\n")
            .await
            .ok();
        let head = extra.read_head().await;
        assert_eq!(head.status, 503, "connection 11 (attempt {attempt})");
        let body = String::from_utf8_lossy(&extra.read_body(&head).await).into_owned();
        assert!(body.contains("--max-client-conns"), "{body:?}");
        assert!(
            extra.closed_within(TIMEOUT).await,
            "the refused connection is closed"
        );
    }
    assert_eq!(
        origin.requests(),
        10,
        "a refused connection's request was forwarded"
    );

    // The ten keep working.
    for (i, c) in held.iter_mut().enumerate() {
        assert!(
            ok_on(c, &format!("/again/{i}")).await,
            "held connection {i} after the refusals"
        );
    }

    // One leaves; its slot comes back once the proxy has seen it go.
    drop(held.pop());
    poll(
        "a freed slot to serve a new connection",
        TIMEOUT,
        || async {
            let mut c = Client::connect(proxy.addr()).await;
            if ok_on(&mut c, "/new").await {
                Ok(())
            } else {
                Err("still refused".to_owned())
            }
        },
    )
    .await;
}

/// Opens a CONNECT tunnel to `origin` through `proxy` and shows it carries
/// a request; `Err` with the status when the CONNECT is refused.
async fn tunnel(proxy: &Proxy, origin: &Origin) -> Result<RawConn, (u16, String)> {
    let target = format!("{}:{}", origin.name(), origin.addr().port());
    let mut conn = proxy.raw().await;
    // A refused connection may be answered and closed before this arrives.
    let _ = conn
        .write(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await;
    let head = conn.read_head().await;
    if head.status != 200 {
        let body = String::from_utf8_lossy(&conn.read_body(&head).await).into_owned();
        return Err((head.status, body));
    }
    conn.write(b"GET /through HTTP/1.1\r\nHost: example.test\r\n\r\n")
        .await
        .expect("writing through the tunnel");
    let head = conn.read_head().await;
    assert_eq!(head.status, 200, "a request through the tunnel");
    assert_eq!(conn.read_body(&head).await, b"ok");
    Ok(conn)
}

#[tokio::test]
async fn connect_tunnels_count_against_the_cap_until_they_close() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let mut args = origin.proxy_args_with(&["--max-client-conns", "2"]);
    args.extend(METRICS_LISTEN.map(String::from));
    let proxy = Proxy::start(args).await;

    let first = tunnel(&proxy, &origin).await.expect("first tunnel");
    let _second = tunnel(&proxy, &origin).await.expect("second tunnel");
    // Counted at accept, before either tunnel opened.
    let metrics = proxy.metrics().await;
    assert_eq!(
        metrics.get("ccnproxy_client_connections", &[]),
        Some(2.0),
        "the gauge counts the open tunnels"
    );

    let (status, body) = tunnel(&proxy, &origin)
        .await
        .err()
        .expect("a third CONNECT over --max-client-conns 2 is refused");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("--max-client-conns"), "{body:?}");
    let refused = rec_where(&proxy, "the refused connection's line", |r| r.status == 503).await;
    assert!(
        refused.error().contains("--max-client-conns"),
        "{}",
        refused.line
    );

    // One tunnel closes; its slot comes back once the proxy has seen it go.
    drop(first);
    poll("a freed slot to open a new tunnel", TIMEOUT, || async {
        tunnel(&proxy, &origin)
            .await
            .map(drop)
            .map_err(|(status, body)| format!("{status} {body}"))
    })
    .await;
}
