//! Random sequences of takes, connects, releases, closes, clock steps and
//! DNS answers (proptest), checked against the pool's invariants after every
//! step: per address open = idle + busy + connecting, caps, wakes, draining,
//! no count below zero.

use std::cell::Cell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::*;

/// One step of a random run.
#[derive(Debug, Clone)]
enum Op {
    Take {
        fresh: bool,
    },
    ConnectOk(usize),
    ConnectFail(usize),
    /// A connect fails: its address is ejected, the request tries another.
    FailOver(usize),
    /// A connect is slow: a parallel attempt to another address.
    Hedge(usize),
    Release(usize, bool),
    /// The origin closes a connection; the sweeper notices.
    Close(usize),
    /// Time passes; the sweeper runs.
    Advance(u64),
    /// A new DNS answer: a non-empty subset of four addresses.
    Answer(u8),
    /// A waiter reaches `--pool-wait-timeout`.
    GiveUp,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(|fresh| Op::Take { fresh }),
        3 => any::<usize>().prop_map(Op::ConnectOk),
        1 => any::<usize>().prop_map(Op::ConnectFail),
        2 => any::<usize>().prop_map(Op::FailOver),
        1 => any::<usize>().prop_map(Op::Hedge),
        4 => (any::<usize>(), any::<bool>()).prop_map(|(i, r)| Op::Release(i, r)),
        1 => any::<usize>().prop_map(Op::Close),
        1 => (0u64..250).prop_map(Op::Advance),
        1 => (1u8..16).prop_map(Op::Answer),
        1 => Just(Op::GiveUp),
    ]
}

/// The machine plus everything the async layer would hold around it.
struct Run {
    m: Machine,
    now: Instant,
    h2: bool,
    max_streams: usize,
    tickets: Vec<Ticket>,
    leases: Vec<Lease<Fake, Fake>>,
    /// Waiting requests, FIFO, with whether each wants a fresh connection.
    waiters: VecDeque<bool>,
    flags: Vec<Rc<Cell<bool>>>,
}

impl Run {
    fn take(&mut self, fresh: bool) -> Result<Wake, TestCaseError> {
        let (take, wake) = self.m.take(self.now, fresh);
        match take {
            Take::Reuse(lease) => {
                prop_assert!(
                    self.m.current().contains(&lease.addr()),
                    "a draining address got a request"
                );
                self.leases.push(lease);
            }
            Take::Connect(ticket) => self.connecting(ticket)?,
            Take::Wait => self.waiters.push_back(fresh),
            Take::Refused(_) => prop_assert!(false, "nothing is refused here"),
        }
        Ok(wake)
    }

    /// A new connection attempt: never to a draining address, never to an
    /// ejected one while a healthy one exists.
    fn connecting(&mut self, ticket: Ticket) -> Result<(), TestCaseError> {
        prop_assert!(
            self.m.current().contains(&ticket.addr),
            "a connection opened to a draining address"
        );
        let ejected = |a: &SocketAddr| self.m.health.is_ejected(*a, self.now);
        prop_assert!(
            !ejected(&ticket.addr) || self.m.current().iter().all(ejected),
            "an ejected address got a new connection while a healthy one exists"
        );
        self.tickets.push(ticket);
        Ok(())
    }

    /// Delivers wakes as `Notify` would: one waiter, or every waiter.
    fn wake(&mut self, wake: Wake) -> Result<(), TestCaseError> {
        let mut pending = vec![wake];
        let mut rounds = 0;
        while let Some(wake) = pending.pop() {
            rounds += 1;
            prop_assert!(rounds < 1000, "wakes never settle");
            let woken = match wake {
                Wake::None => 0,
                Wake::One => 1.min(self.waiters.len()),
                Wake::All => self.waiters.len(),
            };
            let retry: Vec<bool> = self.waiters.drain(..woken).collect();
            for fresh in retry {
                let w = self.take(fresh)?;
                pending.push(w);
            }
        }
        Ok(())
    }

    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        let wake = match op {
            Op::Take { fresh } => self.take(fresh)?,
            Op::ConnectOk(i) if !self.tickets.is_empty() => {
                let ticket = self.tickets.remove(i % self.tickets.len());
                let handle = fake(self.max_streams);
                self.flags.push(handle.closed.clone());
                let opened = if self.h2 {
                    Opened::H2(handle)
                } else {
                    Opened::H1(handle)
                };
                let (lease, wake) = self.m.connected(ticket, opened, self.now);
                self.leases.push(lease);
                wake
            }
            Op::ConnectFail(i) if !self.tickets.is_empty() => {
                let ticket = self.tickets.remove(i % self.tickets.len());
                self.m.connect_failed(ticket)
            }
            Op::FailOver(i) if !self.tickets.is_empty() => {
                let ticket = self.tickets.remove(i % self.tickets.len());
                let tried = [ticket.addr];
                let (next, wake) = self.m.fail_over(ticket, self.now, true, &tried);
                prop_assert!(self.m.health.is_ejected(tried[0], self.now));
                if let Some(next) = next {
                    prop_assert_ne!(next.addr, tried[0], "a request tries an address once");
                    self.connecting(next)?;
                }
                wake
            }
            Op::Hedge(i) if !self.tickets.is_empty() => {
                let i = i % self.tickets.len();
                let tried = [self.tickets[i].addr];
                if let Some(next) = self.m.hedge(self.now, &tried) {
                    prop_assert_ne!(next.addr, tried[0]);
                    self.connecting(next)?;
                } else {
                    let slow = self.tickets.remove(i);
                    match self.m.replace(slow, self.now, &tried) {
                        Ok(next) => {
                            prop_assert_ne!(next.addr, tried[0]);
                            self.connecting(next)?;
                        }
                        Err(slow) => self.tickets.push(slow),
                    }
                }
                Wake::None
            }
            Op::Release(i, reusable) if !self.leases.is_empty() => {
                let lease = self.leases.remove(i % self.leases.len());
                self.m.release(lease, reusable, self.now)
            }
            Op::Close(i) if !self.flags.is_empty() => {
                self.flags[i % self.flags.len()].set(true);
                self.m.prune(self.now)
            }
            Op::Advance(ms) => {
                self.now += Duration::from_millis(ms);
                self.m.prune(self.now)
            }
            Op::Answer(mask) => {
                let addrs: Vec<SocketAddr> = (0..4u8)
                    .filter(|b| mask & (1 << b) != 0)
                    .map(|b| addr(b + 1))
                    .collect();
                self.m.apply_answer(answer(&addrs), None, self.now).1
            }
            Op::GiveUp => {
                self.waiters.pop_front();
                Wake::None
            }
            _ => Wake::None,
        };
        self.wake(wake)?;
        if let Err(broken) = self.m.check() {
            prop_assert!(false, "{}", broken);
        }
        // Nobody waits while a take would succeed.
        for &fresh in &self.waiters {
            let mut probe = self.m.clone();
            let (take, _) = probe.take(self.now, fresh);
            prop_assert!(
                matches!(take, Take::Wait),
                "a waiter (fresh: {}) was left asleep while capacity was free",
                fresh
            );
        }
        Ok(())
    }

    /// Finishes every request; the pool must end with no request counted.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        self.waiters.clear();
        for ticket in std::mem::take(&mut self.tickets) {
            let _ = self.m.connect_failed(ticket);
        }
        for lease in std::mem::take(&mut self.leases) {
            let _ = self.m.release(lease, true, self.now);
        }
        if let Err(broken) = self.m.check() {
            prop_assert!(false, "{}", broken);
        }
        let stats = self.m.stats();
        prop_assert_eq!(stats.busy, 0);
        prop_assert_eq!(stats.h2_streams, 0);
        prop_assert_eq!(stats.open, stats.idle + stats.h2_conns);
        self.now += Duration::from_secs(5);
        let _ = self.m.prune(self.now);
        prop_assert_eq!(self.m.stats().open, 0);
        prop_assert!(
            self.m.load.is_empty(),
            "addresses left counted: {:?}",
            self.m.load
        );
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn invariants_hold_over_random_runs(
        h2 in any::<bool>(),
        known in any::<bool>(),
        keepalive_conns in 0usize..4,
        max_conns_per_host in 0usize..4,
        h2_conns in 1usize..3,
        max_streams in 1usize..4,
        first in 1u8..16,
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let now = Instant::now();
        let limits = Limits {
            keepalive_conns,
            max_conns_per_host,
            h2_conns,
            idle_timeout: Duration::from_millis(100),
            max_conn_lifetime: Duration::from_millis(400),
        };
        // A plain-HTTP origin is known to speak HTTP/1.1 from the start.
        let protocol = (known && !h2).then_some(Protocol::H1);
        let mut run = Run {
            m: Machine::new(limits, protocol, now),
            now,
            h2,
            max_streams,
            tickets: Vec::new(),
            leases: Vec::new(),
            waiters: VecDeque::new(),
            flags: Vec::new(),
        };
        run.step(Op::Answer(first))?;
        for op in ops {
            run.step(op)?;
        }
        run.drain()?;
    }
}
