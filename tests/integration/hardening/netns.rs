//! Runs a test inside a fresh network namespace that has only loopback.
//!
//! The test binary re-executes itself under `unshare --net` (root needed;
//! `unshare` is util-linux, `ip` is iproute2) with `--exact <test>` and an
//! environment variable naming the test; the re-executed copy sees the
//! variable, checks that `lo` is its only interface, and runs the body. The
//! outer copy only waits and relays the inner output.

use std::future::Future;
use std::time::Duration;

/// Set (to the test's name) in the re-executed test binary.
const INSIDE: &str = "CCNPROXY_HARDEN_NETNS";

/// How long one namespaced test may take, start to end.
const LIMIT: Duration = Duration::from_secs(120);

/// Runs `body` inside a new network namespace, after `ip link set lo up` and
/// the `setup` shell commands (e.g. `ip addr add 10.1.2.3/32 dev lo`).
/// `module` is `module_path!()` of the test, `test` its function name.
pub async fn isolated<F, Fut>(module: &str, test: &str, setup: &[&str], body: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    // Test names do not carry the crate name that `module_path!` starts with.
    let module = module.split_once("::").map_or("", |(_, rest)| rest);
    let name = format!("{module}::{test}");
    if let Ok(inside) = std::env::var(INSIDE) {
        assert_eq!(inside, name, "namespaced copy started for another test");
        assert_only_loopback();
        body().await;
        return;
    }

    let exe = std::env::current_exe().expect("path of the test binary");
    let mut script = String::from("set -e; ip link set lo up; ");
    for cmd in setup {
        script.push_str(cmd);
        script.push_str("; ");
    }
    script.push_str("exec \"$0\" \"$@\"");
    let run = tokio::process::Command::new("unshare")
        .args(["--net", "--", "sh", "-c", &script])
        .arg(&exe)
        .args(["--exact", &name, "--nocapture", "--test-threads=1"])
        .env(INSIDE, &name)
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(LIMIT, run).await {
        Ok(out) => out.expect("running unshare (needs root, util-linux and iproute2)"),
        Err(_) => panic!("{name} did not finish within {LIMIT:?} in its namespace"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Shown by the test harness when this (outer) test fails.
    println!("--- {name} in its namespace: stdout ---\n{stdout}");
    println!("--- {name} in its namespace: stderr ---\n{stderr}");
    assert!(
        out.status.success(),
        "{name} failed inside its network namespace ({}); its output is above",
        out.status
    );
    // `--exact` with a wrong name runs nothing and still exits 0.
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "{name} did not run inside the namespace; its output is above"
    );
}

/// Refuses to go on unless this process's network namespace has `lo` only.
fn assert_only_loopback() {
    // `/proc/self/net` follows the caller's namespace (`/sys/class/net`
    // follows the namespace sysfs was mounted in).
    let dev = std::fs::read_to_string("/proc/self/net/dev").expect("/proc/self/net/dev");
    let names: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(
        names,
        ["lo"],
        "the namespaced test must see only loopback, found {names:?}"
    );
}

/// Declares a `#[tokio::test]` whose body runs in its own network namespace,
/// after the given setup commands.
macro_rules! netns_test {
    ($(#[$meta:meta])* async fn $name:ident() setup($setup:expr) $body:block) => {
        $(#[$meta])*
        #[tokio::test]
        async fn $name() {
            $crate::hardening::netns::isolated(
                module_path!(),
                stringify!($name),
                $setup,
                || async move $body,
            )
            .await
        }
    };
}
pub(crate) use netns_test;
