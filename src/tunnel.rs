//! CONNECT: after policy (host patterns, address guard on every resolved
//! address) the client connection is taken over and bytes are copied both
//! ways until either side closes or the tunnel idles past its timeout. Gains
//! nothing from the pool, but must work for `HTTPS_PROXY` clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::body::{self, ProxyBody};
use crate::error::ProxyError;
use crate::exchange::{ConnHold, Exchange};
use crate::policy::Policy;
use crate::upstream::Upstream;

/// What CONNECT needs: the policy, the resolver, two timeouts and the
/// shutdown signal for open tunnels.
pub struct Tunnels {
    policy: Arc<Policy>,
    upstream: Arc<Upstream>,
    /// A tunnel gives up after this much idle time.
    idle_timeout: Duration,
    /// Time allowed to reach the target.
    connect_timeout: Duration,
    /// Turns true when shutdown's grace time is over: tunnels close.
    stop: watch::Receiver<bool>,
}

impl Tunnels {
    /// CONNECT through `upstream`'s resolver under `policy`.
    pub fn new(
        policy: Arc<Policy>,
        upstream: Arc<Upstream>,
        idle_timeout: Duration,
        connect_timeout: Duration,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Tunnels {
            policy,
            upstream,
            idle_timeout,
            connect_timeout,
            stop,
        }
    }

    /// Answers a CONNECT: 200 and a spawned tunnel, or an error response.
    /// The tunnel keeps `hold` (the client connection's slot and gauge)
    /// until it closes: the connection's own task ends when hyper hands the
    /// socket over.
    pub async fn start<B>(
        &self,
        mut ex: Exchange,
        req: &mut Request<B>,
        host: String,
        port: u16,
        hold: Option<Arc<ConnHold>>,
    ) -> Response<ProxyBody> {
        let target = format!("{host}:{port}");
        ex.record.origin = Some(format!("tcp://{target}"));
        let upstream = match self.open(&host, port).await {
            Ok(s) => s,
            Err(err) => return ex.respond_error(err),
        };
        ex.record.status = 200;
        let on_upgrade = hyper::upgrade::on(req);
        let idle = self.idle_timeout;
        let mut stop = self.stop.clone();
        tokio::spawn(async move {
            let _hold = hold;
            let client = match on_upgrade.await {
                Ok(u) => u,
                Err(err) => {
                    ex.record.error = Some(crate::error::reason::not_handed_over(&err));
                    ex.finish(0, None);
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut upstream = tokio_io_timeout::TimeoutStream::new(upstream);
            upstream.set_read_timeout(Some(idle));
            let mut upstream = Box::pin(upstream);
            let copied = tokio::select! {
                r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => r,
                _ = stop.wait_for(|stopped| *stopped) => Err(std::io::Error::other("proxy shut down")),
            };
            let (up, down) = match copied {
                Ok(counts) => counts,
                Err(err) => {
                    ex.record.error = Some(crate::error::reason::tunnel_ended(&err));
                    (0, 0)
                }
            };
            ex.received.store(up, std::sync::atomic::Ordering::Relaxed);
            ex.finish(down, None);
        });
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = StatusCode::OK;
        // The record is written when the tunnel closes, not now.
        resp
    }

    async fn open(&self, host: &str, port: u16) -> Result<TcpStream, ProxyError> {
        self.policy.check_connect(host, port)?;
        let answer = self.upstream.resolve(host, port).await?;
        let mut last = None;
        for addr in &answer {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => return Ok(s),
                Ok(Err(e)) => last = Some((*addr, e)),
                Err(_) => last = Some((*addr, std::io::Error::from(std::io::ErrorKind::TimedOut))),
            }
        }
        let (addr, source) = last.unwrap_or_else(|| {
            (
                SocketAddr::from(([0, 0, 0, 0], port)),
                std::io::Error::other("no address"),
            )
        });
        Err(ProxyError::Tunnel {
            target: format!("{host}:{port} ({addr})"),
            source,
        })
    }
}
