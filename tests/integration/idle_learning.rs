//! Origins that close idle connections before `--idle-timeout` (as many AWS
//! front ends do): ccnproxy learns the origin's idle timeout from the first
//! close and retires idle connections a margin before it, so a POST never
//! meets the origin's close on the wire (it would get 502: a POST that may
//! have reached the origin is not sent again). The origin is plain HTTP/1.1
//! behind a relay that delays each direction by `DELAY`, as a network
//! would; it closes a connection `IDLE_CLOSE` after its last response.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use crate::support::admin::METRICS_LISTEN;
use crate::support::origin::args_for;
use crate::support::{Proxy, TIMEOUT, within};

const IDLE_CLOSE: Duration = Duration::from_millis(800);
const DELAY: Duration = Duration::from_millis(40);
const HOST: &str = "example.test.ccnproxy";

/// What the origin saw: each request's `x-seq`, and idle closes.
#[derive(Default)]
struct Seen {
    seqs: Mutex<Vec<String>>,
    idle_closes: Mutex<usize>,
    changed: Notify,
}

/// A plain HTTP/1.1 origin answering `200 ok`, closing each connection
/// `IDLE_CLOSE` after its last response unless a new request came.
async fn idle_closing_origin() -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
    let addr = listener.local_addr().expect("origin address");
    let seen = Arc::new(Seen::default());
    let shared = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, shared.clone()));
        }
    });
    (addr, seen)
}

async fn serve(mut stream: TcpStream, seen: Arc<Seen>) {
    let mut buf = Vec::new();
    loop {
        // The head, within the idle time (the first one: within TIMEOUT).
        let head_end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            let limit = if buf.is_empty() { IDLE_CLOSE } else { TIMEOUT };
            match tokio::time::timeout(limit, stream.read(&mut chunk)).await {
                Err(_) => {
                    *seen.idle_closes.lock().unwrap() += 1;
                    seen.changed.notify_waiters();
                    return;
                }
                Ok(Ok(0) | Err(_)) => return,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let field = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        };
        let length: usize = field("content-length:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + length);
        seen.seqs
            .lock()
            .unwrap()
            .push(field("x-seq:").unwrap_or_default());
        seen.changed.notify_waiters();
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        if stream.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// A TCP relay to `to` that delays every byte and the end of each
/// direction by `DELAY`.
async fn delaying_relay(to: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let addr = listener.local_addr().expect("relay address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(origin) = TcpStream::connect(to).await else {
                continue;
            };
            let (client_r, client_w) = client.into_split();
            let (origin_r, origin_w) = origin.into_split();
            tokio::spawn(delayed(client_r, origin_w));
            tokio::spawn(delayed(origin_r, client_w));
        }
    });
    addr
}

async fn delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Option<Vec<u8>>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, bytes)) = rx.recv().await {
            // The network's delay, not a wait for an event.
            tokio::time::sleep_until(due).await;
            match bytes {
                Some(bytes) if to.write_all(&bytes).await.is_ok() => {}
                _ => return,
            }
        }
    });
    let mut chunk = vec![0u8; 16 << 10];
    loop {
        let read = from.read(&mut chunk).await;
        let due = Instant::now() + DELAY;
        match read {
            Ok(n) if n > 0 => {
                let _ = tx.send((due, Some(chunk[..n].to_vec())));
            }
            _ => {
                let _ = tx.send((due, None));
                break;
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

impl Seen {
    async fn wait_for(&self, what: &str, cond: impl Fn(&Seen) -> bool) {
        within(what, async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if cond(self) {
                    return;
                }
                changed.await;
            }
        })
        .await
    }
}

async fn post(proxy: &Proxy, seq: usize) -> u16 {
    let seq = seq.to_string();
    proxy
        .request(
            "POST",
            HOST,
            "/",
            &[("x-seq", seq.as_str())],
            "{\"write\":1}",
        )
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn posts_around_the_origins_idle_timeout_all_succeed_once_it_is_learned() {
    let (origin, seen) = idle_closing_origin().await;
    let relay = delaying_relay(origin).await;
    let mut args = args_for(&[]);
    args.extend(["--resolve".to_owned(), format!("example.test:80:{relay}")]);
    args.extend(METRICS_LISTEN.iter().map(|s| s.to_string()));
    let proxy = Proxy::start(args).await;

    // The first close teaches the pool.
    assert_eq!(post(&proxy, 0).await, 200);
    seen.wait_for("the origin to close the idle connection", |s| {
        *s.idle_closes.lock().unwrap() >= 1
    })
    .await;

    // POSTs spaced just under, at and just over the origin's timeout: on a
    // connection kept that long each would cross the origin's close.
    let gaps = [-20i64, 0, 20, -20, 0, 20, -20, 0, 20, -300];
    let mut statuses = Vec::new();
    for (i, gap) in gaps.into_iter().enumerate() {
        let wait = IDLE_CLOSE.as_millis() as i64 + gap;
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        statuses.push(post(&proxy, i + 1).await);
    }
    assert!(
        statuses.iter().all(|s| *s == 200),
        "{statuses:?}\n{}",
        proxy.stderr()
    );

    // Every POST reached the origin exactly once.
    let seqs = seen.seqs.lock().unwrap().clone();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for seq in &seqs {
        *counts.entry(seq.clone()).or_default() += 1;
    }
    assert_eq!(counts.len(), gaps.len() + 1, "{seqs:?}");
    assert!(
        counts.values().all(|n| *n == 1),
        "a POST was sent twice: {seqs:?}"
    );

    // The pool shows what it learned: about IDLE_CLOSE.
    let m = proxy
        .wait_metrics("the learned idle timeout", |m| {
            m.exact(
                "ccnproxy_pool_idle_timeout_learned_seconds",
                &[("origin", "http://example.test:80")],
            )
            .is_some()
        })
        .await;
    let learned = m
        .exact(
            "ccnproxy_pool_idle_timeout_learned_seconds",
            &[("origin", "http://example.test:80")],
        )
        .unwrap();
    assert!(
        (0.7..=1.0).contains(&learned),
        "learned {learned} s\n{}",
        m.text
    );
}
