//! The client-facing socket: bind, or inherit one (systemd socket
//! activation `LISTEN_FDS`, or Server::Starter's `SERVER_STARTER_PORT`) for
//! zero-downtime restarts; the accept loop with its connection limit; drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::accept_backoff::AcceptBackoff;
use crate::config::{IdentityConfig, LimitsConfig, ListenerConfig};
use crate::exchange::{ConnHold, ConnInfo};
use crate::proxy::Handler;

/// Binds `addr`, unless the process was handed a listening socket.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    if let Some(std_listener) = inherited()? {
        std_listener.set_nonblocking(true)?;
        return TcpListener::from_std(std_listener);
    }
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// A socket passed by systemd (fd 3) or Server::Starter (`host:port=fd`).
fn inherited() -> std::io::Result<Option<std::net::TcpListener>> {
    let mut fds = listenfd::ListenFd::from_env();
    if let Some(l) = fds.take_tcp_listener(0)? {
        return Ok(Some(l));
    }
    if let Ok(spec) = std::env::var("SERVER_STARTER_PORT") {
        let first = spec.split(';').next().unwrap_or_default();
        if let Some(fd) = first.rsplit('=').next().and_then(|f| f.parse::<i32>().ok()) {
            return Ok(Some(crate::sys::inherited_listener(fd)));
        }
    }
    Ok(None)
}

/// The connections still open when accepting stopped.
pub struct Draining {
    /// The connection tasks: each ends when its connection closes (set the
    /// phase to `Stopping` to ask them); cancel them when the grace time
    /// runs out.
    pub tasks: tokio::task::JoinSet<()>,
}

/// What the accept loop needs to find out who a connection's client is.
#[derive(Clone)]
pub struct Front {
    /// `--proxy-protocol` and `--trust-proxy`.
    pub identity: IdentityConfig,
    /// Their counters in `/metrics`.
    pub counters: crate::identity::Counters,
}

/// Accepts until `stop` resolves; returns the connections still open.
pub async fn accept_loop(
    listener: TcpListener,
    service: Arc<Handler>,
    config: ListenerConfig,
    limits: LimitsConfig,
    front: Front,
    phase: tokio::sync::watch::Receiver<crate::shutdown::Phase>,
    stop: impl std::future::Future<Output = ()>,
) -> Draining {
    let front = Arc::new(front);
    let mut tasks = tokio::task::JoinSet::new();
    let builders = Arc::new(crate::conn::builders(&config, &limits));
    let slots = Arc::new(Semaphore::new(config.max_client_conns));
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let config = Arc::new(config);
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            // Reap finished connections so the set stays small.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(pair) => {
                    backoff.succeeded("client");
                    pair
                }
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    let wait = backoff.failed("client", &err);
                    tokio::select! {
                        () = &mut stop => break,
                        () = tokio::time::sleep(wait) => continue,
                    }
                }
            },
        };
        let mut info = ConnInfo {
            peer,
            local_port,
            via: None,
            hold: None,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            service.log_rejected(
                info,
                503,
                crate::error::reason::TOO_MANY_CONNECTIONS.to_owned(),
            );
            tokio::spawn(refuse(stream));
            continue;
        };
        let service = service.clone();
        let builders = builders.clone();
        let config = config.clone();
        let phase = phase.clone();
        let front = front.clone();
        let span = tracing::debug_span!("conn", %peer);
        // Shared with a CONNECT tunnel this connection may become, which
        // outlives this task.
        info.hold = Some(Arc::new(ConnHold::new(slot, service.client_connection())));
        tasks.spawn(
            async move {
                let _ = stream.set_nodelay(true);
                let timeout = config.read_timeout;
                // In a block: the PROXY header's room is not kept for the
                // connection's life.
                let (stream, info) = {
                    let accepted = crate::identity::accept(
                        stream,
                        peer,
                        &front.identity,
                        &front.counters,
                        timeout,
                    )
                    .await;
                    let Ok((stream, header)) = accepted else {
                        return;
                    };
                    let mut info = info;
                    if let Some(source) = header.and_then(|h| h.source) {
                        info.peer = source;
                        info.via = Some(Arc::new(crate::identity::Via {
                            addr: peer,
                            vpce: header.and_then(|h| h.vpce),
                        }));
                    }
                    (stream, info)
                };
                let served = crate::conn::serve(
                    stream,
                    info.clone(),
                    service.clone(),
                    builders,
                    &config,
                    phase,
                )
                .await;
                if let Err(err) = served {
                    if let Some(status) = crate::conn::rejected_status(&*err) {
                        service.log_rejected(
                            info,
                            status,
                            crate::error::reason::malformed(status, &*err),
                        );
                    }
                    tracing::debug!(
                        error = &*err as &dyn std::error::Error,
                        "client connection ended"
                    );
                }
            }
            .instrument(span),
        );
    }
    Draining { tasks }
}

/// Over `--max-client-conns`: a short 503 and close.
async fn refuse(mut stream: tokio::net::TcpStream) {
    const BODY: &str = "too many client connections (--max-client-conns)\n";
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(resp.as_bytes())).await;
}

/// Binds `addr` without looking for an inherited socket (the admin port).
pub fn bind_plain(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}
