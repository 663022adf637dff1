//! The state machine driven without sockets: named cases here, random runs
//! in `state_props.rs`; both check the invariants below after every step.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;

/// A connection handle a test controls: closed when its flag is set.
#[derive(Debug, Clone)]
struct Fake {
    closed: Rc<Cell<bool>>,
    max_streams: usize,
}

impl Handle for Fake {
    fn is_closed(&self) -> bool {
        self.closed.get()
    }

    fn max_streams(&self) -> usize {
        self.max_streams
    }
}

fn fake(max_streams: usize) -> Fake {
    Fake {
        closed: Rc::new(Cell::new(false)),
        max_streams,
    }
}

type Machine = Slots<Fake, Fake>;

impl Machine {
    /// Checks the invariants the property tests hold the machine to.
    fn check(&self) -> Result<(), String> {
        let mut seen: HashMap<SocketAddr, Load> = HashMap::new();
        for i in &self.idle {
            seen.entry(i.conn.addr).or_default().conns += 1;
        }
        for c in &self.h2 {
            let l = seen.entry(c.addr).or_default();
            l.conns += 1;
            l.outstanding += c.in_flight;
            if c.in_flight > c.handle.max_streams().max(1) {
                return Err(format!("{} streams over the limit", c.in_flight));
            }
        }
        let mut connecting = 0;
        let mut busy = 0;
        for (addr, l) in &self.load {
            if l.is_empty() {
                return Err(format!("empty load kept for {addr}"));
            }
            let s = seen.entry(*addr).or_default();
            s.conns += l.busy + l.connecting;
            s.outstanding += l.busy + l.connecting + l.detached;
            s.busy = l.busy;
            s.connecting = l.connecting;
            s.detached = l.detached;
            connecting += l.connecting;
            busy += l.busy;
        }
        for (addr, s) in &seen {
            let l = self.load.get(addr).copied().unwrap_or_default();
            if l != *s {
                return Err(format!(
                    "{addr}: kept {l:?}, counted open = idle + busy + connecting + h2 as {s:?}"
                ));
            }
        }
        if connecting != self.connecting || busy != self.h1_busy {
            return Err(format!(
                "totals: connecting {} vs {connecting}, busy {} vs {busy}",
                self.connecting, self.h1_busy
            ));
        }
        if self.idle.len() > self.limits.keepalive_conns {
            return Err(format!("{} idle over -c", self.idle.len()));
        }
        match self.protocol {
            Some(Protocol::H2) if self.h2.len() + self.connecting > self.limits.h2_conns => {
                Err(format!("{} h2 connections over --h2-conns", self.h2.len()))
            }
            Some(Protocol::H1) | None
                if self.limits.max_conns_per_host != 0
                    && self.h1_open() > self.limits.max_conns_per_host =>
            {
                Err(format!("{} h1 connections over the cap", self.h1_open()))
            }
            _ => Ok(()),
        }
    }

    /// The addresses new requests may go to.
    fn current(&self) -> &[SocketAddr] {
        &self.current
    }
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, n], 443))
}

fn limits() -> Limits {
    Limits {
        keepalive_conns: 2,
        max_conns_per_host: 2,
        h2_conns: 2,
        idle_timeout: Duration::from_millis(100),
        max_conn_lifetime: Duration::from_secs(1),
    }
}

fn answer(addrs: &[SocketAddr]) -> Answer {
    Answer {
        addrs: addrs.to_vec(),
        valid_until: None,
    }
}

fn machine(limits: Limits, protocol: Option<Protocol>, now: Instant) -> Machine {
    let mut m = Machine::new(limits, protocol, now);
    let _ = m.apply_answer(answer(&[addr(1)]), None, now);
    m
}

fn connect_h1(m: &mut Machine, now: Instant) -> Lease<Fake, Fake> {
    let (Take::Connect(ticket), _) = m.take(now, false) else {
        panic!("expected a connect")
    };
    m.connected(ticket, Opened::H1(fake(1)), now).0
}

#[test]
fn h1_connection_is_reused_after_release() {
    let now = Instant::now();
    let mut m = machine(limits(), Some(Protocol::H1), now);
    let lease = connect_h1(&mut m, now);
    assert_eq!(m.release(lease, true, now), Wake::One);
    assert!(matches!(m.take(now, false).0, Take::Reuse(Lease::H1(_))));
    m.check().unwrap();
}

#[test]
fn h1_requests_beyond_the_cap_wait_and_a_release_wakes_one() {
    let now = Instant::now();
    let mut m = machine(limits(), Some(Protocol::H1), now);
    let a = connect_h1(&mut m, now);
    let _b = connect_h1(&mut m, now);
    assert!(matches!(m.take(now, false).0, Take::Wait));
    assert_eq!(m.release(a, true, now), Wake::One);
    assert!(matches!(m.take(now, false).0, Take::Reuse(_)));
    m.check().unwrap();
}

#[test]
fn a_retry_at_the_cap_closes_an_idle_connection_instead_of_waiting() {
    let now = Instant::now();
    let mut m = machine(limits(), Some(Protocol::H1), now);
    let a = connect_h1(&mut m, now);
    let _b = connect_h1(&mut m, now);
    let _ = m.release(a, true, now);
    assert!(matches!(m.take(now, true).0, Take::Connect(_)));
    assert_eq!(m.stats().idle, 0);
    m.check().unwrap();
}

#[test]
fn unknown_protocol_waits_for_the_first_handshake() {
    let now = Instant::now();
    let mut m = machine(limits(), None, now);
    let (Take::Connect(ticket), _) = m.take(now, false) else {
        panic!("first request connects")
    };
    assert!(matches!(m.take(now, false).0, Take::Wait));
    let (_lease, wake) = m.connected(ticket, Opened::H2(fake(10)), now);
    assert_eq!(wake, Wake::All);
    assert!(matches!(m.take(now, false).0, Take::Reuse(Lease::H2(_))));
    assert_eq!(m.stats().h2_streams, 2);
    m.check().unwrap();
}

#[test]
fn idle_connections_close_after_the_idle_timeout() {
    let now = Instant::now();
    let mut m = machine(limits(), Some(Protocol::H1), now);
    let lease = connect_h1(&mut m, now);
    let _ = m.release(lease, true, now);
    assert_eq!(m.prune(now + Duration::from_millis(99)), Wake::None);
    assert_eq!(m.prune(now + Duration::from_millis(100)), Wake::All);
    assert_eq!(m.stats().open, 0);
    m.check().unwrap();
}

#[test]
fn an_address_that_leaves_the_answer_drains() {
    let now = Instant::now();
    let mut m = machine(limits(), Some(Protocol::H1), now);
    let idle = connect_h1(&mut m, now);
    let busy = connect_h1(&mut m, now);
    let _ = m.release(idle, true, now);
    let (changed, _) = m.apply_answer(answer(&[addr(2)]), None, now);
    assert!(changed);
    assert_eq!(m.stats().idle, 0, "the idle connection closes at once");
    assert_eq!(m.stats().busy, 1, "the busy one finishes its request");
    let _ = m.release(busy, true, now);
    assert_eq!(m.stats().open, 0, "and is not kept");
    let (Take::Connect(ticket), _) = m.take(now, false) else {
        panic!("new requests connect to the new address")
    };
    assert_eq!(ticket.addr, addr(2));
    let _ = m.connect_failed(ticket);
    m.check().unwrap();
}

#[test]
fn a_failed_refresh_keeps_a_young_answer_and_drops_an_old_one() {
    let now = Instant::now();
    let mut m = machine(limits(), None, now);
    let grace = Duration::from_secs(10);
    assert!(m.refresh_failed(now + Duration::from_secs(9), grace));
    assert_eq!(m.dns_step(now + Duration::from_secs(9)), DnsStep::Ready);
    assert!(!m.refresh_failed(now + Duration::from_secs(11), grace));
    assert_eq!(m.dns_step(now + Duration::from_secs(11)), DnsStep::Resolve);
}

#[test]
fn an_answer_is_refreshed_in_the_background_before_it_expires() {
    let now = Instant::now();
    let mut m = Machine::new(limits(), None, now);
    let expires = Answer {
        addrs: vec![addr(1)],
        valid_until: Some(now + Duration::from_secs(2)),
    };
    let _ = m.apply_answer(expires, None, now);
    assert_eq!(
        m.dns_step(now + Duration::from_millis(1650)),
        DnsStep::Ready
    );
    let later = now + Duration::from_millis(1700);
    assert_eq!(m.dns_step(later), DnsStep::Refresh, "at 85 % of the TTL");
    assert_eq!(m.dns_step(later), DnsStep::Ready, "one refresh at a time");
}

#[test]
fn the_refresh_timer_fires_only_for_a_used_current_answer() {
    let now = Instant::now();
    let mut m = Machine::new(limits(), None, now);
    let ttl = |at: Instant| Answer {
        addrs: vec![addr(1)],
        valid_until: Some(at + Duration::from_secs(10)),
    };
    let _ = m.apply_answer(ttl(now), None, now);
    let (at, first) = m.refresh_plan().expect("a TTL answer plans a refresh");
    assert_eq!(at, now + Duration::from_millis(8500));
    assert!(!m.refresh_due(at, first), "nobody used the origin");
    let _ = m.take(now + Duration::from_secs(1), false);
    assert!(
        !m.refresh_due(at - Duration::from_millis(1), first),
        "too early"
    );
    let later = now + Duration::from_secs(2);
    let _ = m.apply_answer(ttl(later), None, later);
    assert!(!m.refresh_due(at, first), "a newer answer came meanwhile");
    let (at, second) = m.refresh_plan().expect("planned again");
    let _ = m.take(later, false);
    assert!(m.refresh_due(at, second));
    assert!(!m.refresh_due(at, second), "one refresh at a time");
    assert!(m.refresh_failed(at, Duration::from_secs(300)));
    let (retry, _) = m.refresh_plan().expect("a failed refresh is retried");
    assert!(retry > at && retry < at + Duration::from_secs(5));
}

#[test]
fn a_refused_answer_refuses_every_request() {
    let now = Instant::now();
    let mut m = Machine::new(limits(), None, now);
    let refused = crate::policy::PolicyError::HostDenied("x".into());
    let _ = m.apply_answer(answer(&[addr(1)]), Some(refused), now);
    assert!(matches!(m.take(now, false).0, Take::Refused(_)));
}

#[test]
fn a_failed_connect_ejects_its_address_until_the_backoff_ends() {
    let now = Instant::now();
    let mut m = Machine::new(limits(), Some(Protocol::H1), now);
    let _ = m.apply_answer(answer(&[addr(1), addr(2)]), None, now);
    let (Take::Connect(first), _) = m.take(now, false) else {
        panic!("expected a connect")
    };
    let bad = first.addr;
    let good = if bad == addr(1) { addr(2) } else { addr(1) };
    let (next, wake) = m.fail_over(first, now, true, &[bad]);
    let next = next.expect("the other address is tried at once");
    assert_eq!((next.addr, wake), (good, Wake::None));
    let (lease, _) = m.connected(next, Opened::H1(fake(1)), now);
    assert_eq!((m.stats().ejected, m.stats().ejections), (1, 1));
    // While ejected, every new connection goes to the healthy address,
    // although it has more connections.
    let mut leases = vec![lease];
    for _ in 0..2 {
        let later = now + Duration::from_millis(4999);
        let (Take::Connect(t), _) = m.take(later, true) else {
            panic!("expected a connect")
        };
        assert_eq!(t.addr, good);
        leases.push(m.connected(t, Opened::H1(fake(1)), later).0);
        let _ = m.release(leases.remove(0), false, later);
    }
    // After the back-off it is tried again.
    let back = now + Duration::from_secs(5);
    let _ = m.prune(back);
    assert_eq!(m.stats().ejected, 0);
    let (Take::Connect(t), _) = m.take(back, true) else {
        panic!("expected a connect")
    };
    assert_eq!(t.addr, bad, "fewest connections, no longer ejected");
    let _ = m.connect_failed(t);
    m.check().unwrap();
}

#[test]
fn with_every_address_ejected_they_are_all_tried() {
    let now = Instant::now();
    let mut m = Machine::new(limits(), Some(Protocol::H1), now);
    let _ = m.apply_answer(answer(&[addr(1), addr(2)]), None, now);
    let (Take::Connect(first), _) = m.take(now, false) else {
        panic!("expected a connect")
    };
    let a = first.addr;
    let (second, _) = m.fail_over(first, now, true, &[a]);
    let second = second.expect("the other address");
    let b = second.addr;
    let (third, wake) = m.fail_over(second, now, true, &[a, b]);
    assert!(third.is_none(), "a request tries each address once");
    assert_eq!(wake, Wake::All);
    assert_eq!(m.stats().ejected, 2);
    // A new request still gets an address: every one is ejected.
    assert!(matches!(m.take(now, false).0, Take::Connect(_)));
}

#[test]
fn a_hedge_needs_another_address_and_room() {
    let now = Instant::now();
    let mut m = Machine::new(limits(), None, now);
    let _ = m.apply_answer(answer(&[addr(1), addr(2)]), None, now);
    let (Take::Connect(first), _) = m.take(now, false) else {
        panic!("expected a connect")
    };
    let hedge = m
        .hedge(now, &[first.addr])
        .expect("room for a second attempt");
    assert_ne!(hedge.addr, first.addr);
    assert!(
        m.hedge(now, &[first.addr, hedge.addr]).is_none(),
        "no third address"
    );
    // The hedge wins; the first attempt, overtaken, is ejected.
    let slow = first.addr;
    let _ = m.abandon(first, now, true);
    let _ = m.connected(hedge, Opened::H1(fake(1)), now);
    assert!(m.health.is_ejected(slow, now));
    let (Take::Connect(t), _) = m.take(now, false) else {
        panic!("expected a connect")
    };
    assert_ne!(t.addr, slow);
    let _ = m.connect_failed(t);
    m.check().unwrap();
    // At the cap there is no room for a parallel attempt: the slow one is
    // given up for another address in its slot.
    let mut capped = limits();
    capped.max_conns_per_host = 1;
    let mut m = Machine::new(capped, Some(Protocol::H1), now);
    let _ = m.apply_answer(answer(&[addr(1), addr(2)]), None, now);
    let (Take::Connect(first), _) = m.take(now, false) else {
        panic!("expected a connect")
    };
    let slow = first.addr;
    assert!(m.hedge(now, &[slow]).is_none());
    let next = m.replace(first, now, &[slow]).expect("another address");
    assert_ne!(next.addr, slow);
    assert!(m.health.is_ejected(slow, now));
    let kept = m.replace(next, now, &[slow, addr(1), addr(2)]);
    assert!(kept.is_err(), "nothing left to try: the attempt is kept");
    let _ = m.connect_failed(kept.unwrap_err());
    m.check().unwrap();
}

#[path = "state_props.rs"]
mod props;
