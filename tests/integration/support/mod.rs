//! Test support: a test-time CA, real origins (HTTP/1.1, TLS, h2), the proxy
//! (in process, or the real `ccnproxy` binary), an in-process DNS server and
//! small HTTP clients.
//!
//! Everything listens on 127.0.0.0/8 on ports chosen by the kernel. Waits are
//! bounded by [`TIMEOUT`]; a test waits for events (a log line, a counter),
//! never for a fixed time.
//!
//! ```ignore
//! let origin = Origin::tls_http1().reply(200, "ok").start().await; // poses as example.test:443
//! let proxy = Proxy::start(origin.proxy_args()).await;             // --ca-file, --resolve, ...
//! let resp = proxy.get("example.test.ccnproxy-https", "/").await;
//! assert_eq!(resp.status(), 200);
//! assert_eq!(origin.last_request().host().as_deref(), Some("example.test"));
//! assert_eq!(proxy.next_log().await["status"], 200);
//! ```
//!
//! Certificates: webpki refuses a wildcard directly under a TLD (`*.test`),
//! so an origin's certificate lists its names (`.name()`/`.names()`) plus
//! `*.amazonaws.com`, `localhost` and its IP.

#![allow(dead_code, unused_imports)]

pub mod admin;
pub mod ca;
pub mod client;
pub mod dns;
pub mod gate;
pub mod origin;
pub mod proxy;
pub mod raw_origin;

use std::future::Future;
use std::time::Duration;

pub use ca::Ca;
pub use client::{RawConn, Resp};
pub use dns::Dns;
pub use gate::{Gate, gated};
pub use origin::{Origin, RequestSeen};
pub use proxy::Proxy;
pub use raw_origin::RawOrigin;

/// Upper bound for any single wait in a test (a response, a log line, a
/// counter reaching a value).
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Boxed error used by bodies and handlers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Byte `i` of the deterministic test pattern. Position-dependent, so a
/// dropped, duplicated or reordered chunk shows up in a comparison.
pub fn pattern_byte(i: u64) -> u8 {
    let x = i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8 ^ (i as u8)
}

/// `len` bytes of the test pattern starting at `start`.
pub fn pattern_range(start: u64, len: usize) -> Vec<u8> {
    (start..start + len as u64).map(pattern_byte).collect()
}

/// The first `len` bytes of the test pattern.
pub fn pattern(len: usize) -> Vec<u8> {
    pattern_range(0, len)
}

/// Asserts that `got` is the pattern's first `len` bytes, naming the first
/// differing offset instead of dumping megabytes.
#[track_caller]
pub fn assert_pattern(got: &[u8], len: usize, what: &str) {
    assert_eq!(got.len(), len, "{what}: body length");
    if let Some(at) = (0..len).find(|&i| got[i] != pattern_byte(i as u64)) {
        panic!("{what}: body differs from the pattern at byte {at}");
    }
}

/// Polls `cond` every 10 ms until it holds; panics after `timeout` with
/// `what`. Only for state that has no event to wait on (counters).
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Awaits `fut` for at most [`TIMEOUT`], panicking with `what` otherwise.
#[track_caller]
pub fn within<F: Future>(what: &str, fut: F) -> impl Future<Output = F::Output> {
    within_for(what, TIMEOUT, fut)
}

/// Awaits `fut` for at most `limit`, panicking with `what` otherwise.
#[track_caller]
pub fn within_for<F: Future>(
    what: &str,
    limit: Duration,
    fut: F,
) -> impl Future<Output = F::Output> {
    let what = what.to_owned();
    let caller = std::panic::Location::caller();
    async move {
        match tokio::time::timeout(limit, fut).await {
            Ok(v) => v,
            Err(_) => panic!("timed out after {limit:?}: {what} (at {caller})"),
        }
    }
}

/// The rustls crypto provider every test config is built with (rustls has
/// both ring and aws-lc-rs compiled in; never rely on the process default).
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
