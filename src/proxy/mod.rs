//! The request path, as named phases, each a function in `phase`:
//!
//! route → authenticate → admit → authorize → build → send → respond
//!
//! - **route**: where the request goes (`Route`), from its target and Host
//!   (for h2c, `:authority`); framing that a second parser could read
//!   differently is refused here too.
//! - **authenticate**: a request the proxy would sign comes from a client
//!   allowed to have it signed (`--sign-allow-clients`) and, with
//!   `--sign-client-credentials`, carries the client's own valid signature
//!   (`sign::Signer::verify_client`; the `VerifiedClient` it leaves in the
//!   request's extensions keys the budget).
//! - **admit**: the client's request budget (`--rate-limit`).
//! - **authorize**: loop detection, host patterns, target length.
//! - **build**: the upstream request: hop-by-hop headers out, Host, the
//!   ccnproxy headers, the counted (and maybe gated) body; then the
//!   signature when `--sign` applies.
//! - **send**: through the pool; the response's framing headers cleaned.
//! - **respond**: the response (or the error's) to the client, with the
//!   request id; the `Exchange` logs the request when its body ends.
//!
//! `Handler` holds what the phases need; the listener and connections share
//! one. CONNECT leaves after admit for `tunnel`, the proxy's own endpoints
//! for `admin`.

pub(crate) mod phase;

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tokio::sync::watch;

use crate::accesslog::AccessLog;
use crate::admin::Admin;
use crate::body::{BoxError, ProxyBody};
use crate::config::Config;
use crate::error::ProxyError;
use crate::exchange::{self, ConnInfo, Exchange};
use crate::identity;
use crate::identity::verified::VerifiedClient;
use crate::metrics::{ClientConnection, IdleConnection, Metrics};
use crate::origin::Origin;
use crate::policy::Policy;
use crate::ratelimit::RateLimiter;
use crate::route::{Mode, Route, Router};
use crate::sign::Signer;
use crate::tunnel::Tunnels;
use crate::upstream::Upstream;

/// The parts of the request path that `run` builds and shares with others.
pub struct Parts {
    /// Host patterns and address guard.
    pub policy: Arc<Policy>,
    /// The pools.
    pub upstream: Arc<Upstream>,
    /// `--sign`, when on.
    pub signer: Option<Arc<Signer>>,
    /// Access log.
    pub log: AccessLog,
    /// Counters and histograms.
    pub metrics: Arc<Metrics>,
    /// The proxy's own endpoints.
    pub admin: Admin,
    /// Turns true when shutdown's grace time is over: tunnels close.
    pub stop_tunnels: watch::Receiver<bool>,
    /// `--rate-limit-redis`: the budget shared with other replicas.
    pub shared_limit: Option<crate::ratelimit::Shared>,
}

/// Handles every request of every client connection (one per proxy).
pub struct Handler {
    router: Router,
    policy: Arc<Policy>,
    upstream: Arc<Upstream>,
    signer: Option<Arc<Signer>>,
    log: AccessLog,
    metrics: Arc<Metrics>,
    admin: Admin,
    limiter: Option<RateLimiter>,
    max_uri_bytes: usize,
    body_timeout: std::time::Duration,
    tunnels: Tunnels,
    trust_forwarded: Vec<ipnet::IpNet>,
}

impl Handler {
    /// The request path for `config` over `parts`; fails when the routing
    /// table cannot be built.
    pub fn new(config: &Config, parts: Parts) -> Result<Self, String> {
        let Parts {
            policy,
            upstream,
            signer,
            log,
            metrics,
            admin,
            stop_tunnels,
            shared_limit,
        } = parts;
        let tunnels = Tunnels::new(
            policy.clone(),
            upstream.clone(),
            config.pool.idle_timeout,
            config.pool.connect_timeout,
            stop_tunnels,
        );
        Ok(Handler {
            router: Router::new(&config.route)?,
            policy,
            upstream,
            signer,
            log,
            metrics,
            admin,
            limiter: RateLimiter::from_config(&config.limits).map(|l| l.with_shared(shared_limit)),
            max_uri_bytes: config.limits.max_uri_bytes,
            body_timeout: config.listener.body_timeout,
            tunnels,
            trust_forwarded: config.identity.trust_forwarded.clone(),
        })
    }

    /// Handles one request; never fails (errors become responses).
    pub async fn handle<B>(&self, info: ConnInfo, req: Request<B>) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (peer, via) =
            identity::resolve(&self.trust_forwarded, info.peer, info.via, req.headers());
        let local_port = info.local_port;
        let hold = info.hold.clone();
        let info = ConnInfo { peer, via, ..info };
        let mut ex = Exchange::start(&self.log, &self.metrics, info, &req);
        ex.set_body_timeout(self.body_timeout);
        let route = phase::route(&self.router, local_port, &req);
        if let Err(err) = phase::authenticate(self.signer.as_deref(), &route, peer) {
            return ex.respond_error(err);
        }
        // `--sign-client-credentials`: the client's own signature is checked
        // before anything is spent on it, budgets included.
        if let (Some(signer), Ok(Route::Proxy { origin, .. })) = (self.signer.as_deref(), &route)
            && signer.verifies_clients()
            && signer.applies_to(origin)
        {
            return match signer.verify_client(req, self.body_timeout).await {
                Ok(req) => self.admitted(ex, route, req, hold).await,
                Err(err) => ex.respond_error(err.into()),
            };
        }
        self.admitted(ex, route, req, hold).await
    }

    /// admit → the route's work, for a request past authentication.
    async fn admitted<B>(
        &self,
        mut ex: Exchange,
        route: Result<Route, crate::route::RouteError>,
        mut req: Request<B>,
        hold: Option<Arc<crate::exchange::ConnHold>>,
    ) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // A client the signer verified is named by that, and only that, from
        // here on: budgets and per-client series key on it (`client_key`).
        ex.record.verified = req.extensions().get::<VerifiedClient>().cloned();
        if let Err(err) =
            phase::admit(self.limiter.as_ref(), &self.metrics, &route, &ex.record).await
        {
            return ex.respond_error(err);
        }
        let outcome = match phase::check_framing(req.headers()).and(route.map_err(Into::into)) {
            Err(err) => Err(err),
            Ok(Route::Admin) => {
                self.admin
                    .serve(req.uri(), req.headers())
                    .ok_or_else(|| ProxyError::NoRoute {
                        host: ex.record.host.clone(),
                        path: req.uri().path().to_owned(),
                    })
            }
            Ok(Route::Connect { host, port }) => {
                return self.tunnels.start(ex, &mut req, host, port, hold).await;
            }
            Ok(Route::Proxy { origin, mode }) => self.forward(&mut ex, origin, mode, req).await,
        };
        phase::respond(ex, outcome)
    }

    /// authorize → build → send, for a request routed to `origin`.
    async fn forward<B>(
        &self,
        ex: &mut Exchange,
        origin: Origin,
        mode: Mode,
        req: Request<B>,
    ) -> Result<Response<ProxyBody>, ProxyError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        ex.record.origin = Some(origin.to_string());
        phase::authorize(&self.policy, self.max_uri_bytes, &origin, mode, &req)?;
        let req = phase::build(ex, &origin, mode, req)?;
        let req = match &self.signer {
            Some(signer) if signer.applies_to(&origin) => signer.sign(req, &origin).await?,
            _ => req,
        };
        phase::send(&self.upstream, ex, &origin, req).await
    }

    /// Counts one open client connection until the returned guard drops.
    pub fn client_connection(&self) -> ClientConnection {
        self.metrics.client_connection()
    }

    /// Counts one idle client connection (buffers given back) until the
    /// returned guard drops.
    pub fn idle_connection(&self) -> IdleConnection {
        self.metrics.idle_connection()
    }

    /// Writes the access-log line of a request hyper refused before the
    /// request path saw it (malformed or oversized head): hyper has already
    /// answered it with `status`.
    pub fn log_rejected(&self, info: ConnInfo, status: u16, reason: String) {
        exchange::log_rejected(&self.log, &self.metrics, info, status, reason);
    }
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("router", &self.router)
            .field("max_uri_bytes", &self.max_uri_bytes)
            .finish_non_exhaustive()
    }
}
