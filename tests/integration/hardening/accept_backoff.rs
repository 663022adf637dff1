//! Out of descriptors: with its `RLIMIT_NOFILE` lowered to a few more than
//! it has open, the proxy (the real binary) cannot accept the connections
//! waiting on its client and admin listeners. It survives, backs off instead
//! of retrying at once (its CPU time over a two-second window stays far
//! below what a retry loop burns), says so once per listener rather than
//! once per failure, and serves both listeners again once descriptors free.

use std::time::Duration;

use tokio::net::TcpStream;

use crate::support::admin::METRICS_LISTEN;
use crate::support::client::{self, Client};
use crate::support::{Proxy, TIMEOUT, wait_until};

use super::poll;

/// Clock ticks per second in `/proc/PID/stat` (Linux's `USER_HZ`, 100 on
/// every architecture it runs on).
const USER_HZ: u64 = 100;

/// Descriptors the process has open now.
fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc fd dir")
        .count() as u64
}

/// User plus system CPU time of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name, which is in parentheses: state is the
    // first, utime the 12th and stime the 13th.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

fn accept_failures(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains("accept failed"))
        .count()
}

async fn healthz(addr: std::net::SocketAddr) -> Result<(), String> {
    let mut c = Client::connect(addr).await;
    let req = client::request("GET", "admin", "/healthz", &[], client::empty());
    match tokio::time::timeout(Duration::from_secs(2), c.send(req)).await {
        Ok(Ok(r)) if r.status() == 200 => Ok(()),
        Ok(Ok(r)) => Err(format!("{} {}", r.status(), r.text())),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 2 s".to_owned()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_proxy_backs_off_and_serves_again() {
    let proxy = Proxy::spawn_binary(METRICS_LISTEN).await;
    let (pid, main, admin) = (proxy.pid(), proxy.addr(), proxy.admin_addr().await);
    healthz(main).await.expect("served before");

    // Room for three more descriptors, and more connections than that.
    let (mut _soft, mut hard) = (0, 0);
    rlimit::prlimit(
        pid as i32,
        rlimit::Resource::NOFILE,
        None,
        Some((&mut _soft, &mut hard)),
    )
    .expect("reading the proxy's RLIMIT_NOFILE");
    let low = open_fds(pid) + 3;
    rlimit::prlimit(
        pid as i32,
        rlimit::Resource::NOFILE,
        Some((low, hard)),
        None,
    )
    .expect("lowering the proxy's RLIMIT_NOFILE");
    let mut waiting = Vec::new();
    for addr in [main, main, main, main, main, main, admin, admin, admin] {
        waiting.push(TcpStream::connect(addr).await.expect("the kernel accepts"));
    }
    wait_until("the proxy to fail an accept", TIMEOUT, || {
        accept_failures(&proxy.stderr()) > 0
    })
    .await;

    // A loop that retried at once would burn a core here.
    let window = Duration::from_secs(2);
    let before = cpu_ticks(pid);
    tokio::time::sleep(window).await;
    let used = cpu_ticks(pid) - before;
    let per_second = USER_HZ;
    let budget = per_second * window.as_secs() / 10;
    assert!(
        used < budget,
        "{used} ticks of CPU in {window:?} out of descriptors (budget {budget}, a core is {})",
        per_second * window.as_secs()
    );
    let failures = accept_failures(&proxy.stderr());
    // One line per listener per burst; a listener whose accept works in
    // between (a descriptor came free) starts a new burst. Logging every
    // failed attempt, as before, wrote 39 lines in this window.
    assert!(
        failures <= 6,
        "{failures} accept-failure lines: one per listener per burst is enough\n{}",
        proxy.stderr()
    );

    // Descriptors come back (the limit stays low): both listeners serve again.
    drop(waiting);
    for addr in [main, admin] {
        poll("the listener to serve again", TIMEOUT, || healthz(addr)).await;
    }
}
