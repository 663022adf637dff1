//! `--max-client-conns 10`: ten connections are served; the eleventh gets a
//! 503 naming the flag and is closed; a slot freed by a client that leaves is
//! usable again.

use crate::support::client::{self, Client};
use crate::support::{Origin, Proxy, TIMEOUT};

use super::poll;

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
