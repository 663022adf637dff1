//! What the pool hands out and takes back: the handle trait the state
//! machine asks about connections, the leases requests hold, the ticket of a
//! connection being opened; and the snapshot it gives metrics.

use std::net::SocketAddr;

use tokio::time::Instant;

/// What the state machine asks of a connection handle.
pub trait Handle {
    /// The connection can carry no new request (closed, or going away).
    fn is_closed(&self) -> bool;

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
}
