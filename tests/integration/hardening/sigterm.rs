//! SIGTERM under load: 32 clients loop over a slightly slow origin; after the
//! signal every response that arrives is whole (200 with the full body, or
//! 503), requests the proxy no longer takes see their connection closed or
//! refused, nothing gets a truncated 200, and the proxy exits 0 after its
//! connections drained by themselves (the shutdown timeout, far away, never
//! fires: the proxy would say so on stderr).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::client::{self, ReqBody};
use crate::support::{Origin, Proxy, pattern_byte};

const HOST: &str = "example.test.ccnproxy";
const BODY: usize = 256 * 1024;

/// What happened to one request.
#[derive(Debug)]
enum Fate {
    /// 200 with the whole body, intact; when it ended.
    Full(Instant),
    /// 503 (the proxy refusing while it drains).
    Unavailable,
    /// The connection could not be opened (the listener is closed).
    Refused,
    /// The connection closed before a response head.
    Closed(String),
    /// Anything else: a truncated or corrupt 200, another status.
    Wrong(String),
}

async fn connect(
    addr: std::net::SocketAddr,
) -> Option<hyper::client::conn::http1::SendRequest<ReqBody>> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
}

/// Loops requests until the proxy refuses connections (bounded).
async fn client_loop(addr: std::net::SocketAddr, id: usize) -> Vec<Fate> {
    let mut fates = Vec::new();
    let mut sender = None;
    for n in 0..10_000 {
        if sender.is_none() {
            sender = connect(addr).await;
            if sender.is_none() {
                fates.push(Fate::Refused);
                break;
            }
        }
        let s = sender.as_mut().expect("connected");
        if s.ready().await.is_err() {
            sender = None;
            continue;
        }
        let req = client::request("GET", HOST, &format!("/c{id}/{n}"), &[], client::empty());
        let resp = match tokio::time::timeout(Duration::from_secs(20), s.send_request(req)).await {
            Err(_) => {
                fates.push(Fate::Wrong("no response head within 20 s".into()));
                break;
            }
            Ok(Err(e)) => {
                fates.push(Fate::Closed(format!("{e:?}")));
                sender = None;
                continue;
            }
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        let body = tokio::time::timeout(Duration::from_secs(20), resp.into_body().collect()).await;
        let fate = match (status.as_u16(), body) {
            (200, Ok(Ok(b))) => {
                let b = b.to_bytes();
                let intact = b.len() == BODY
                    && b.iter()
                        .enumerate()
                        .all(|(i, x)| *x == pattern_byte(i as u64));
                if intact {
                    Fate::Full(Instant::now())
                } else {
                    Fate::Wrong(format!(
                        "200 with a {}-byte body that is not the pattern",
                        b.len()
                    ))
                }
            }
            (200, Ok(Err(e))) => Fate::Wrong(format!("truncated 200: {e:?}")),
            (200, Err(_)) => Fate::Wrong("200 whose body stalled".into()),
            (503, _) => Fate::Unavailable,
            (other, _) => Fate::Wrong(format!("status {other}")),
        };
        let stop = matches!(fate, Fate::Wrong(_));
        fates.push(fate);
        if stop {
            break;
        }
    }
    fates
}

#[tokio::test]
async fn sigterm_under_load_never_truncates_a_response() {
    let origin = Origin::plain_http1()
        .download(BODY as u64)
        .delay(Duration::from_millis(50))
        .start()
        .await;
    let proxy = Arc::new(
        Proxy::spawn_binary(origin.proxy_args_with(&["--shutdown-timeout", "120s", "-c", "32"]))
            .await,
    );
    let addr = proxy.addr();
    let tasks: Vec<_> = (0..32)
        .map(|id| tokio::spawn(client_loop(addr, id)))
        .collect();

    // Two requests per client first; under the load test on 2 cores more
    // would not fit in the harness timeout.
    origin.wait_requests(64).await;
    origin
        .wait_for("16 requests in flight at the origin", |o| {
            o.inflight_now() >= 16
        })
        .await;
    let in_flight = origin.inflight_now();
    let signalled = Instant::now();
    proxy.sigterm();
    let status = proxy.wait_exit().await;
    let exited = signalled.elapsed();

    let mut full_before = 0;
    let mut full_after = 0;
    let (mut unavailable, mut refused, mut closed) = (0, 0, Vec::new());
    let mut wrong = Vec::new();
    for t in tasks {
        for fate in t.await.expect("client task") {
            match fate {
                Fate::Full(at) if at < signalled => full_before += 1,
                Fate::Full(_) => full_after += 1,
                Fate::Unavailable => unavailable += 1,
                Fate::Refused => refused += 1,
                Fate::Closed(why) => closed.push(why),
                Fate::Wrong(why) => wrong.push(why),
            }
        }
    }
    println!(
        "SIGTERM with {in_flight} in flight at the origin: exit {status} after {exited:?}; \
         full 200s before {full_before}, after {full_after}; 503 {unavailable}; \
         closed before a head {} {:?}; refused connects {refused}",
        closed.len(),
        closed.first()
    );
    assert!(
        wrong.is_empty(),
        "{} bad responses: {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    assert!(status.success(), "exit status {status}");
    // The drain finished on its own: the timeout (which would cancel what is
    // left and warn) was never reached.
    assert!(
        !proxy.stderr().contains("shutdown timeout reached"),
        "exit after {exited:?} only because --shutdown-timeout cancelled requests"
    );
    assert!(full_after >= 1, "requests in flight at the signal finished");
    assert_eq!(refused, 32, "every client ended with a refused connect");
}
