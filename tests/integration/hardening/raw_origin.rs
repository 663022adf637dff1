//! An HTTP/1.1 origin that answers with scripted raw bytes: for origins that
//! misbehave in ways a real HTTP library will not produce (conflicting
//! framing, broken chunking, a reset in the middle of a body). It reads
//! request heads (no request bodies), counts connections and requests, and
//! keeps every head it received.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// What the origin does after writing a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Keeps the connection open and reads the next request.
    KeepOpen,
    /// Resets the connection (RST: `SO_LINGER` 0, then close).
    Reset,
}

/// Bytes to write for one request and what to do next.
pub type Script = Arc<dyn Fn(Seen) -> (Vec<u8>, Then) + Send + Sync>;

/// One request as the raw origin saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Accepted connection, 0-based.
    pub conn: usize,
    /// Request on that connection, 0-based.
    pub nth: usize,
    /// The request head as text.
    pub head: String,
}

struct Shared {
    accepted: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    script: Script,
}

/// A running raw origin on 127.0.0.1; stops when dropped.
pub struct RawOrigin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: AbortHandle,
}

impl RawOrigin {
    /// Starts an origin that answers each request with `script(seen)`.
    pub async fn start(script: impl Fn(Seen) -> (Vec<u8>, Then) + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind raw origin");
        let addr = listener.local_addr().expect("raw origin address");
        let shared = Arc::new(Shared {
            accepted: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
            script: Arc::new(script),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone())).abort_handle();
        RawOrigin {
            addr,
            shared,
            accept,
        }
    }

    /// Connections accepted.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Every request head received, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// `--resolve` for `name` on port 80 (host mode `name.ccnproxy`).
    pub fn resolve_arg(&self, name: &str) -> String {
        format!("{name}:80:{}", self.addr)
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let conn = shared.accepted.fetch_add(1, Ordering::SeqCst);
        conns.spawn(serve(stream, conn, shared.clone()));
    }
}

async fn serve(mut stream: TcpStream, conn: usize, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    let mut nth = 0;
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let seen = Seen { conn, nth, head };
        shared.seen.lock().unwrap().push(seen.clone());
        nth += 1;
        let (bytes, then) = (shared.script)(seen);
        if stream.write_all(&bytes).await.is_err() {
            return;
        }
        match then {
            Then::KeepOpen => {}
            Then::Reset => {
                // Linger 0 never blocks: the close sends RST at once.
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(std::time::Duration::ZERO));
                return;
            }
        }
    }
}
