//! Opening a connection for one request over the origin's addresses, so
//! that one dead or slow address never costs the request:
//!
//! - a connect that fails (refused, unreachable, reset, timed out, a TLS or
//!   HTTP handshake error other than a certificate or name that does not
//!   verify) ejects its address and is retried at once on another address,
//!   within the one `--connect-timeout` budget of the request;
//! - a TCP connect not done after `--connect-race-delay` (Happy Eyeballs,
//!   RFC 8305 §5) gets a second attempt to another address in parallel; the
//!   first to finish its handshakes wins, the others are closed, and an
//!   attempt overtaken by one started after it is ejected as too slow.
//!   When the pool has no room for one more connection (`--h2-conns`,
//!   `--max-conns-per-host`), the slow attempt is given up and ejected
//!   instead, and the new one takes its slot;
//! - a certificate or name that does not verify fails the request at once
//!   (502 with the TLS reason): another address would not fix it.
//!
//! Which address each attempt goes to, and whether there is room for a
//! parallel one, is the state machine's choice (`fail_over`, `hedge`);
//! this file only waits and does I/O. The waiting queue never waits on a
//! hung connect: the winner of the race is what wakes it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::future::{AbortHandle, abortable};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::lease::{Opened, Ticket};
use super::state::Wake;
use super::{H1Handle, H2Handle, Pool, PoolLease};
use crate::upstream::conn::{self, ConnectError, Sender};
use crate::upstream::{Timing, UpstreamError};

/// One connect attempt of a request.
struct Attempt {
    /// Given back to the state machine once, when the attempt ends.
    ticket: Option<Ticket>,
    started: Instant,
    /// Set when the TCP connect is done (the race delay no longer runs).
    tcp_done: Arc<AtomicBool>,
    /// Stops the attempt when it is given up for another.
    abort: AbortHandle,
}

/// The attempts of one request. Dropped with tickets still out (the
/// request went away, or another attempt failed for good), it gives them
/// back without ejecting anything.
struct Attempts<'a> {
    pool: &'a Pool,
    list: Vec<Attempt>,
    tried: Vec<SocketAddr>,
}

impl Drop for Attempts<'_> {
    fn drop(&mut self) {
        if self.list.iter().all(|a| a.ticket.is_none()) {
            return;
        }
        let mut slots = self.pool.lock();
        let mut wake = Wake::None;
        for ticket in self.list.iter_mut().filter_map(|a| a.ticket.take()) {
            wake = wake.max(slots.connect_failed(ticket));
        }
        drop(slots);
        self.pool.wake(wake);
    }
}

impl Pool {
    /// Opens a connection for one request, starting with `ticket`'s
    /// address, and leases it.
    pub(super) async fn connect(
        self: &Arc<Self>,
        ticket: Ticket,
        timing: &mut Timing,
    ) -> Result<PoolLease, UpstreamError> {
        let budget = self.shared.conn.connect_timeout;
        let delay = self.shared.config.connect_race_delay;
        let started = Instant::now();
        let deadline = started + budget;
        let mut attempts = Attempts {
            pool: self,
            list: Vec::new(),
            tried: Vec::new(),
        };
        let mut running = FuturesUnordered::new();
        running.push(self.launch(&mut attempts, ticket, started, deadline));
        let mut hedge_at = (!delay.is_zero()).then(|| started + delay);
        let mut last_error = None;
        while !running.is_empty() {
            tokio::select! {
                            Some((i, result)) = running.next() => {
                                // Given up for another attempt (its ticket went with it).
                                let Some(result) = result else { continue };
                                let now = Instant::now();
            #[allow(clippy::expect_used, reason = "each attempt's future yields once")]
                                let ticket = attempts.list[i].ticket.take().expect("an attempt ends once");
                                let err = match result {
                                    Ok(opened) => return Ok(self.won(attempts, ticket, i, opened, started, timing)),
                                    Err(err) => err,
                                };
                                self.counters.connect_errors.fetch_add(1, Ordering::Relaxed);
                                if !is_address_fault(&err) {
                                    let wake = self.lock().connect_failed(ticket);
                                    self.wake(wake);
                                    return Err(UpstreamError::Connect(err));
                                }
                                tracing::debug!(origin = %self.origin, error = &err as &dyn std::error::Error, "pool.connect failed; trying another address");
                                // An attempt that timed out with the budget is only ejected
                                // if it had the race delay to itself.
                                let ran = now.duration_since(attempts.list[i].started);
                                let eject = !matches!(err, ConnectError::TimedOut { .. }) || ran >= delay;
                                let (next, wake) = if now < deadline {
                                    self.lock().fail_over(ticket, now, eject, &attempts.tried)
                                } else {
                                    (None, self.lock().abandon(ticket, now, eject))
                                };
                                self.wake(wake);
                                if let Some(next) = next {
                                    running.push(self.launch(&mut attempts, next, now, deadline));
                                    hedge_at = (!delay.is_zero()).then(|| now + delay);
                                }
                                last_error = Some(err);
                            }
                            () = sleep_until(hedge_at), if hedge_at.is_some() => {
                                hedge_at = None;
                                let now = Instant::now();
                                let Some(newest) = attempts
                                    .list
                                    .last_mut()
                                    .filter(|a| a.ticket.is_some() && !a.tcp_done.load(Ordering::Relaxed))
                                else {
                                    continue;
                                };
                                let mut slots = self.lock();
                                let next = match slots.hedge(now, &attempts.tried) {
                                    Some(next) => Some(next),
                                    None => {
                                        #[allow(clippy::expect_used, reason = "the ticket was checked above")]
                                        let slow = newest.ticket.take().expect("checked above");
                                        match slots.replace(slow, now, &attempts.tried) {
                                            Ok(next) => {
                                                newest.abort.abort();
                                                self.counters.connect_errors.fetch_add(1, Ordering::Relaxed);
                                                Some(next)
                                            }
                                            Err(slow) => {
                                                newest.ticket = Some(slow);
                                                None
                                            }
                                        }
                                    }
                                };
                                drop(slots);
                                if let Some(next) = next {
                                    tracing::debug!(origin = %self.origin, addr = %next.addr, "pool.connect slow; trying another address");
                                    running.push(self.launch(&mut attempts, next, now, deadline));
                                    hedge_at = Some(now + delay);
                                }
                            }
                        }
        }
        let tried = attempts.tried.len();
        #[allow(
            clippy::expect_used,
            reason = "the loop only ends after an attempt failed"
        )]
        let err = last_error.expect("every attempt ended with an error");
        Err(if tried > 1 {
            UpstreamError::Unreachable {
                addrs: tried,
                source: err,
            }
        } else {
            UpstreamError::Connect(err)
        })
    }

    /// Starts one attempt for `ticket`; the future yields its index.
    fn launch<'a>(
        &'a self,
        attempts: &mut Attempts<'_>,
        ticket: Ticket,
        now: Instant,
        deadline: Instant,
    ) -> impl Future<Output = (usize, Option<Result<conn::Opened, ConnectError>>)> + Send + 'a {
        let i = attempts.list.len();
        let addr = ticket.addr;
        let tcp_done = Arc::new(AtomicBool::new(false));
        let done = tcp_done.clone();
        let settings = &self.shared.conn;
        let origin = &self.origin;
        let (opened, abort) = abortable(async move {
            let started = Instant::now();
            let tcp = conn::connect_tcp(addr, deadline, settings.connect_timeout).await?;
            done.store(true, Ordering::Relaxed);
            conn::handshake(origin, addr, tcp, started.elapsed(), deadline, settings).await
        });
        attempts.tried.push(addr);
        attempts.list.push(Attempt {
            ticket: Some(ticket),
            started: now,
            tcp_done,
            abort,
        });
        async move { (i, opened.await.ok()) }
    }

    /// Attempt `i` finished first: the others are given back (ejecting
    /// those it overtook) and the request gets the connection.
    fn won(
        &self,
        mut attempts: Attempts<'_>,
        ticket: Ticket,
        i: usize,
        opened: conn::Opened,
        started: Instant,
        timing: &mut Timing,
    ) -> PoolLease {
        let now = Instant::now();
        let won_at = attempts.list[i].started;
        let mut overtaken = 0;
        let mut slots = self.lock();
        for a in &mut attempts.list {
            if let Some(loser) = a.ticket.take() {
                let slow = a.started < won_at;
                overtaken += u64::from(slow);
                // Its waker is `connected`'s below, which wakes every waiter.
                let _ = slots.abandon(loser, now, slow);
            }
        }
        let conn = match opened.sender {
            Sender::H1(sender, closed) => Opened::H1(H1Handle { sender, closed }),
            Sender::H2(sender) => Opened::H2(H2Handle {
                sender,
                max_streams: opened.max_streams,
                gate: opened.gate,
            }),
        };
        let (lease, wake) = slots.connected(ticket, conn, now);
        drop(slots);
        self.wake(wake);
        self.counters.handshakes.fetch_add(1, Ordering::Relaxed);
        self.counters
            .connect_errors
            .fetch_add(overtaken, Ordering::Relaxed);
        // The client waited from the first attempt on.
        timing.connect = won_at.duration_since(started) + opened.connect;
        timing.tls = opened.tls;
        timing.connect_attempts = u32::try_from(attempts.list.len()).unwrap_or(u32::MAX);
        lease
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Whether another address may do better: everything but a name or a
/// certificate that does not verify (the same for every address).
fn is_address_fault(err: &ConnectError) -> bool {
    match err {
        ConnectError::ServerName(_) => false,
        ConnectError::Tls { source, .. } => !is_verification_failure(source),
        ConnectError::Tcp { .. }
        | ConnectError::TimedOut { .. }
        | ConnectError::Handshake { .. } => true,
    }
}

/// tokio-rustls reports rustls errors as the inner error of an `io::Error`.
fn is_verification_failure(err: &std::io::Error) -> bool {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::UnsupportedNameType
            )
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn only_address_faults_are_retried_elsewhere() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 443));
        let io = |kind| std::io::Error::from(kind);
        let cert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
        );
        let alert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
        );
        let tls = |source| ConnectError::Tls {
            host: "x".into(),
            addr,
            source,
        };
        let cases = [
            (
                ConnectError::Tcp {
                    addr,
                    source: io(std::io::ErrorKind::ConnectionRefused),
                },
                true,
            ),
            (
                ConnectError::TimedOut {
                    addr,
                    after: Duration::from_secs(1),
                },
                true,
            ),
            (tls(io(std::io::ErrorKind::UnexpectedEof)), true),
            (tls(alert), true),
            (tls(cert), false),
            (ConnectError::ServerName("a b".into()), false),
        ];
        for (err, want) in cases {
            assert_eq!(is_address_fault(&err), want, "{err:?}");
        }
    }
}
