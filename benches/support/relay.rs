//! A userspace TCP delay relay (this kernel has no netem): forwards bytes
//! between a listening port and a target, holding every chunk `delay` in
//! each direction, so 127.0.0.1 behaves like an endpoint one round trip of
//! `2 × delay` away.
//!
//! The TCP handshake is emulated too: `connect()` to the relay returns at
//! once (the local kernel answers the SYN), so the first bytes the client
//! sends are held until one round trip after the accept, as if the client
//! had waited for the SYN-ACK. Chunks keep their order and their spacing;
//! the delay adds latency, not a bandwidth cap.
//!
//! It runs on plain threads, not tokio: tokio's timer rounds every sleep up
//! to the next millisecond, which added ~1.4 ms to each 10 ms hop here;
//! `thread::sleep` overshoots by tens of microseconds. Two threads per
//! direction of a connection; they end when the connection does.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::Res;

/// A running relay; stops accepting when dropped (open connections run on
/// until either side closes).
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Relay {
    /// Relays 127.0.0.1:any to `target`, `delay` each way.
    pub fn start(target: SocketAddr, delay: Duration) -> Res<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counter, stopped) = (accepted.clone(), stop.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                counter.fetch_add(1, Ordering::Relaxed);
                let established = Instant::now() + 2 * delay;
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                pipe(client, server, delay, established);
                pipe(server2, client2, delay, Instant::now());
            }
        });
        Ok(Relay {
            addr,
            accepted,
            stop,
        })
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` to `to` on two threads, each chunk leaving `delay` after
/// it arrived (and not before `not_before + delay`); EOF is delayed like
/// data.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration, not_before: Instant) {
    let (tx, rx) = mpsc::channel::<(Instant, Option<Vec<u8>>)>();
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from.read(&mut buf).unwrap_or(0);
            let due = Instant::now().max(not_before) + delay;
            let chunk = (n > 0).then(|| buf[..n].to_vec());
            // The writer gone (its side failed) or EOF: nothing more to carry.
            if tx.send((due, chunk)).is_err() || n == 0 {
                break;
            }
        }
    });
    thread::spawn(move || {
        for (due, chunk) in rx {
            thread::sleep(due.saturating_duration_since(Instant::now()));
            match chunk {
                Some(bytes) => {
                    if to.write_all(&bytes).is_err() {
                        break;
                    }
                }
                None => {
                    let _ = to.shutdown(Shutdown::Write);
                    break;
                }
            }
        }
    });
}
