//! What the pool hands out and takes back: the handle trait the state
//! machine asks about connections, the leases requests hold, the ticket of a
//! connection being opened; the limits it keeps; and the snapshot it gives
//! metrics.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::PoolConfig;

/// What the state machine asks of a connection handle.
pub trait Handle {
    /// The connection can carry no new request (closed, or going away).
    fn is_closed(&self) -> bool;

    /// When the connection was seen to end, if it has and that is known.
    fn closed_at(&self) -> Option<Instant> {
        None
    }

    /// HTTP/2: streams the origin allows at once on this connection now.
    fn max_streams(&self) -> usize {
        1
    }
}

/// An HTTP/1.1 connection leased to one request.
#[derive(Debug, Clone)]
pub struct H1Lease<H> {
    /// How to send on it.
    pub handle: H,
    /// The origin address it is connected to.
    pub addr: SocketAddr,
    pub(super) created: Instant,
}

/// One stream of an HTTP/2 connection leased to one request.
#[derive(Debug, Clone)]
pub struct H2Lease<H> {
    /// How to send on it (a clone of the connection's handle).
    pub handle: H,
    /// The origin address it is connected to.
    pub addr: SocketAddr,
    pub(super) id: u64,
}

/// What one request holds while it runs.
#[derive(Debug, Clone)]
pub enum Lease<H1, H2> {
    /// A whole HTTP/1.1 connection.
    H1(H1Lease<H1>),
    /// One HTTP/2 stream.
    H2(H2Lease<H2>),
}

impl<H1, H2> Lease<H1, H2> {
    /// The origin address the lease is on.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Lease::H1(l) => l.addr,
            Lease::H2(l) => l.addr,
        }
    }
}

/// A connection being opened; give it back to `connected` or
/// `connect_failed`, exactly once.
#[derive(Debug)]
#[must_use = "a ticket holds a connection slot until given back"]
pub struct Ticket {
    /// The address to connect to.
    pub addr: SocketAddr,
}

/// A connection that finished its handshakes.
#[derive(Debug)]
pub enum Opened<H1, H2> {
    /// It speaks HTTP/1.1.
    H1(H1),
    /// It speaks HTTP/2.
    H2(H2),
}

/// A snapshot of one pool, for metrics and stats.
#[derive(Debug, Clone, Default)]
pub struct PoolStats {
    /// Open connections (HTTP/1.1 and HTTP/2, including connecting ones).
    pub open: usize,
    /// Idle HTTP/1.1 connections.
    pub idle: usize,
    /// Busy HTTP/1.1 connections.
    pub busy: usize,
    /// Open HTTP/2 connections.
    pub h2_conns: usize,
    /// HTTP/2 streams in flight.
    pub h2_streams: usize,
    /// Current addresses of the origin.
    pub addrs: Vec<SocketAddr>,
    /// Addresses ejected after failed connects.
    pub ejected: usize,
    /// Ejections since the pool was created.
    pub ejections: u64,
    /// The origin's idle timeout for HTTP/1.1 connections, when learned
    /// (`idle_learning.rs`).
    pub learned_idle_timeout: Option<Duration>,
}

/// The limits the state machine keeps.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Idle HTTP/1.1 connections kept at most.
    pub keepalive_conns: usize,
    /// Open HTTP/1.1 connections at most (0 = unlimited).
    pub max_conns_per_host: usize,
    /// Open HTTP/2 connections at most.
    pub h2_conns: usize,
    /// Idle connections close after this.
    pub idle_timeout: Duration,
    /// Connections retire at this age.
    pub max_conn_lifetime: Duration,
}

impl Limits {
    /// The limits of `config`.
    pub fn from_config(config: &PoolConfig) -> Self {
        Limits {
            // Without `-c`, every connection that was busy stays idle until
            // `--idle-timeout`: idle connections never outnumber the peak
            // concurrency, and the cap bounds that when set.
            keepalive_conns: config
                .keepalive_conns
                .unwrap_or(match config.max_conns_per_host {
                    0 => usize::MAX,
                    cap => cap,
                }),
            max_conns_per_host: config.max_conns_per_host,
            h2_conns: config.h2_conns.max(1),
            idle_timeout: config.idle_timeout,
            max_conn_lifetime: config.max_conn_lifetime,
        }
    }
}
