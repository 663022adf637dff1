//! What the proxy benchmark is made of: a local TLS origin with test-time
//! certificates (`origin`), a userspace delay relay that makes 127.0.0.1
//! look like a far region (`relay`), HTTP clients (`client`), and the
//! processes under test with their `/proc` counters (`procs`); the DNS
//! server is the integration tests' (`dns`).

pub mod client;
/// The integration tests' DNS server (hickory-server, names set at run time).
#[allow(dead_code)]
#[path = "../../tests/integration/support/dns.rs"]
pub mod dns;
pub mod haproxy;
pub mod load;
pub mod origin;
pub mod procs;
pub mod relay;

/// Errors of the bench: setup failures end a section, not the run.
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One KiB: the body of every request and every response (an API-like call).
pub static KIB: [u8; 1024] = [b'x'; 1024];

/// One MiB: the answer to `GET` [`LARGE_PATH`] (a large download).
pub static MIB: [u8; 1 << 20] = [b'x'; 1 << 20];

/// The origin's path that answers with [`MIB`].
pub const LARGE_PATH: &str = "/1m";

/// The median of `values` (the mean of the two middle ones for an even
/// count); `NaN` for none.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Whether `BENCH_QUICK` (set, not `0`) asks for fewer rounds and requests.
pub fn quick() -> bool {
    std::env::var_os("BENCH_QUICK").is_some_and(|v| v != "0")
}

/// The runtime every bench runs its clients and origins on: 2 workers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
