//! A hand-written TLS HTTP/1.1 origin for exchanges hyper's server will not
//! produce: it answers the first `n` requests of each connection with
//! `200 ok` and, on reading the next one, hangs up without a byte of
//! response (what an origin does when its keep-alive timer fires just as a
//! request arrives). How it hangs up is a [`HangUp`]: TLS `close_notify` then
//! FIN, FIN alone, or a TCP reset.
//!
//! ```ignore
//! let origin = RawOrigin::close_after(1).await;     // poses as example.test:443
//! let proxy = Proxy::start(origin.proxy_args()).await;
//! ```

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::origin::args_for;
use super::{Ca, TIMEOUT, within};

#[derive(Default)]
struct Counters {
    accepted: AtomicUsize,
    requests: AtomicUsize,
    answered: AtomicUsize,
    closed_unanswered: AtomicUsize,
    open_now: AtomicUsize,
}

/// How the origin drops a connection it will not answer on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangUp {
    /// TLS `close_notify`, then FIN: a clean close.
    CloseNotify,
    /// FIN without `close_notify` (the peer's TLS sees an unexpected EOF).
    Fin,
    /// TCP RST (`SO_LINGER` 0): what a kernel sends for a request that
    /// arrives at a socket the server already closed.
    Reset,
}

struct Shared {
    answer_per_conn: usize,
    hang_up: HangUp,
    counters: Counters,
    changed: Notify,
}

impl Shared {
    fn bump(&self, counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

/// A running raw origin; stops when dropped.
pub struct RawOrigin {
    addr: SocketAddr,
    name: String,
    shared: Arc<Shared>,
    accept: AbortHandle,
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl RawOrigin {
    /// Answers `n` requests per connection, then closes the connection when
    /// the next request arrives, without answering it. Poses as
    /// `example.test` over TLS (ALPN `http/1.1`).
    pub async fn close_after(n: usize) -> RawOrigin {
        RawOrigin::hang_up_after(n, HangUp::CloseNotify).await
    }

    /// Like [`RawOrigin::close_after`], hanging up as `how`.
    pub async fn hang_up_after(n: usize, how: HangUp) -> RawOrigin {
        let name = "example.test".to_owned();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind raw origin");
        let addr = listener.local_addr().expect("raw origin address");
        let tls = TlsAcceptor::from(
            Ca::trusted()
                .leaf(&[&name, "localhost", "127.0.0.1"])
                .server_config(&[b"http/1.1"]),
        );
        let shared = Arc::new(Shared {
            answer_per_conn: n,
            hang_up: how,
            counters: Counters::default(),
            changed: Notify::new(),
        });
        let accept = tokio::spawn(accept_loop(listener, tls, shared.clone())).abort_handle();
        RawOrigin {
            addr,
            name,
            shared,
            accept,
        }
    }

    /// Listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The name it poses as.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// TCP connections accepted.
    pub fn accepted(&self) -> usize {
        self.shared.counters.accepted.load(Ordering::SeqCst)
    }

    /// Request heads read (answered or not).
    pub fn requests(&self) -> usize {
        self.shared.counters.requests.load(Ordering::SeqCst)
    }

    /// Requests answered with 200.
    pub fn answered(&self) -> usize {
        self.shared.counters.answered.load(Ordering::SeqCst)
    }

    /// Requests read and then left unanswered by closing the connection.
    pub fn closed_unanswered(&self) -> usize {
        self.shared
            .counters
            .closed_unanswered
            .load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open_now(&self) -> usize {
        self.shared.counters.open_now.load(Ordering::SeqCst)
    }

    /// Waits until `cond` holds (re-checked on every counter change), at
    /// most [`TIMEOUT`].
    pub async fn wait_for(&self, what: &str, cond: impl Fn(&RawOrigin) -> bool) {
        within(what, async {
            loop {
                let mut changed = pin!(self.shared.changed.notified());
                changed.as_mut().enable();
                if cond(self) {
                    return;
                }
                changed.await;
            }
        })
        .await
    }

    /// `--ca-file`, `--allow-host *`, `--allow-cidr 127.0.0.0/8` and
    /// `--resolve example.test:443:ADDR`.
    pub fn proxy_args(&self) -> Vec<String> {
        let mut args = args_for(&[]);
        args.push("--resolve".to_owned());
        args.push(format!("{}:443:{}", self.name, self.addr));
        args
    }

    /// [`RawOrigin::proxy_args`] followed by `extra`.
    pub fn proxy_args_with(&self, extra: &[&str]) -> Vec<String> {
        let mut args = self.proxy_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }
}

async fn accept_loop(listener: TcpListener, tls: TlsAcceptor, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        shared.counters.open_now.fetch_add(1, Ordering::SeqCst);
        shared.bump(&shared.counters.accepted);
        let tls = tls.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Ok(Ok(stream)) = tokio::time::timeout(TIMEOUT, tls.accept(stream)).await {
                serve(stream, &shared).await;
            }
            shared.counters.open_now.fetch_sub(1, Ordering::SeqCst);
            shared.changed.notify_waiters();
        });
    }
}

/// Serves one connection; returns when it is to be closed.
async fn serve(mut stream: TlsStream<TcpStream>, shared: &Shared) {
    let mut buf = Vec::new();
    let mut served = 0;
    loop {
        let Some(len) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        buf.drain(..len);
        shared.bump(&shared.counters.requests);
        if served == shared.answer_per_conn {
            // Read in full, never answered: the connection just goes away.
            match shared.hang_up {
                HangUp::CloseNotify => {
                    let _ = stream.shutdown().await;
                }
                HangUp::Fin => {
                    let _ = stream.get_mut().0.shutdown().await;
                }
                HangUp::Reset => {
                    let _ = stream.get_ref().0.set_zero_linger();
                }
            }
            drop(stream);
            shared.bump(&shared.counters.closed_unanswered);
            return;
        }
        served += 1;
        let resp = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
        if stream.write_all(resp).await.is_err() || stream.flush().await.is_err() {
            return;
        }
        shared.bump(&shared.counters.answered);
    }
}

/// Reads one whole request (head and `Content-Length` body) into `buf`;
/// its length, or `None` at EOF or on garbage.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head) = req.parse(buf).ok()? {
            let body: usize = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= head + body {
                return Some(head + body);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
