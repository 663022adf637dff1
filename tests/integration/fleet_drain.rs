//! `--drain-delay` with the real binary and a real signal: after SIGTERM,
//! `/healthz` answers 503 at once while a client that keeps opening
//! connections is still served (never refused, never a 5xx) for the whole
//! delay, its HTTP/1.1 responses carry `Connection: close`, an h2c
//! connection gets GOAWAY, and the process exits within drain delay + grace.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::support::client::{self, Resp};
use crate::support::{Origin, Proxy, TIMEOUT, wait_until, within};

const HOST: &str = "example.test.ccnproxy";
const DRAIN: Duration = Duration::from_secs(3);
const GRACE: Duration = Duration::from_secs(2);

/// What one request of the looping client saw.
#[derive(Debug)]
struct Seen {
    /// When the response (or the failure) came.
    at: Instant,
    /// The status and whether the response said `Connection: close`, or
    /// what went wrong.
    outcome: Result<(u16, bool), String>,
}

/// One request on a fresh HTTP/1.1 connection.
async fn one_request(addr: std::net::SocketAddr, path: &str) -> Result<Resp, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let req = client::request("GET", HOST, path, &[], client::empty());
    let resp = tokio::time::timeout(TIMEOUT, sender.send_request(req))
        .await
        .map_err(|_| "no response".to_owned())?
        .map_err(|e| format!("request: {e}"))?;
    Resp::collect(resp).await.map_err(|e| format!("body: {e}"))
}

/// Opens a connection per request until `stop`; bounded.
async fn keep_connecting(
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
) -> Vec<Seen> {
    let mut seen = Vec::new();
    for i in 0..100_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let outcome = one_request(addr, &format!("/r{i}")).await.map(|r| {
            let close = r
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
            (r.status().as_u16(), close)
        });
        seen.push(Seen {
            at: Instant::now(),
            outcome,
        });
        sent.fetch_add(1, Ordering::Relaxed);
    }
    seen
}

async fn healthz(addr: std::net::SocketAddr) -> u16 {
    let host = addr.to_string();
    let req = client::request("GET", &host, "/healthz", &[], client::empty());
    let mut c = crate::support::client::Client::connect(addr).await;
    c.send(req).await.expect("/healthz").status().as_u16()
}

#[tokio::test]
async fn sigterm_drains_without_refusing_then_exits_within_delay_plus_grace() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let proxy = Proxy::start(origin.proxy_args_with(&[
        "--drain-delay",
        &format!("{}s", DRAIN.as_secs()),
        "--shutdown-timeout",
        &format!("{}s", GRACE.as_secs()),
    ]))
    .await;
    let addr = proxy.addr();
    assert_eq!(healthz(addr).await, 200);

    // An h2c client, connected before the signal.
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut h2, h2_conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    let h2_driver = tokio::spawn(h2_conn);
    let req = client::request("GET", HOST, "/h2", &[], client::empty());
    let resp = within("h2c response", h2.send_request(req))
        .await
        .expect("h2c request");
    assert_eq!(resp.status(), 200);

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let looping = tokio::spawn(keep_connecting(addr, stop.clone(), sent.clone()));
    wait_until("the client's first requests", TIMEOUT, || {
        sent.load(Ordering::Relaxed) >= 5
    })
    .await;

    let signalled = Instant::now();
    proxy.sigterm();
    let deadline = signalled + Duration::from_secs(1);
    while healthz(addr).await != 503 {
        assert!(
            Instant::now() < deadline,
            "/healthz still 200 a second after SIGTERM"
        );
        tokio::task::yield_now().await;
    }
    let unhealthy = Instant::now();

    // GOAWAY: the h2c connection ends on its own, well inside the delay.
    within("the h2c connection to end after GOAWAY", h2_driver)
        .await
        .expect("h2c driver task")
        .expect("h2c connection ends cleanly");
    assert!(
        signalled.elapsed() < DRAIN,
        "GOAWAY came after the drain delay: {:?}",
        signalled.elapsed()
    );

    // Load for most of the delay (not past it: then the listener closes).
    tokio::time::sleep_until(signalled + DRAIN - Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = looping.await.expect("client loop");

    let failures: Vec<&Seen> = seen
        .iter()
        .filter(|s| !matches!(s.outcome, Ok((200, _))))
        .collect();
    assert!(failures.is_empty(), "refused or not 200: {failures:#?}");
    let during: Vec<&Seen> = seen.iter().filter(|s| s.at > unhealthy).collect();
    assert!(
        during.len() >= 10,
        "the client kept being served during the delay: {} requests",
        during.len()
    );
    assert!(
        during.iter().all(|s| matches!(s.outcome, Ok((_, true)))),
        "every HTTP/1.1 response after /healthz turned 503 says Connection: close: {during:#?}"
    );
    assert!(
        seen.iter()
            .filter(|s| s.at + Duration::from_millis(100) < signalled)
            .all(|s| matches!(s.outcome, Ok((_, false)))),
        "no Connection: close before the signal"
    );

    let status = proxy.wait_exit().await;
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status}");
    assert!(
        took >= DRAIN,
        "exited after {took:?}, before the drain delay"
    );
    assert!(
        took < DRAIN + GRACE + Duration::from_secs(2),
        "exited after {took:?}; drain delay + grace is {:?}",
        DRAIN + GRACE
    );
}

#[tokio::test]
async fn without_drain_delay_the_listener_closes_at_once() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let proxy = Proxy::start(origin.proxy_args()).await;
    assert_eq!(proxy.get(HOST, "/").await.status(), 200);
    let signalled = Instant::now();
    proxy.sigterm();
    assert!(proxy.wait_exit().await.success());
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "default --drain-delay 0: {:?}",
        signalled.elapsed()
    );
    assert!(
        TcpStream::connect(proxy.addr()).await.is_err(),
        "nothing listens any more"
    );
}
