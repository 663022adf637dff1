//! Access-log formatting cost per line: the default preset (`aws`) next to
//! `combined` and `json`, with the time text cached (records of the same
//! second, the common case on a busy proxy) and, for `aws`, rendered afresh
//! every line. Before measuring it counts heap allocations per line (the
//! hot path should make none). Run: `cargo bench --bench accesslog`.
// Counting allocations needs a `GlobalAlloc`, which is `unsafe` to
// implement; it only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use ccnproxy::accesslog::Record;
use ccnproxy::accesslog::format::Format;
use ccnproxy::scope::CredentialScope;
use ccnproxy::upstream::{Protocol, Timing};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, Version};

/// Counts allocations so the bench can show that formatting makes none.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: delegates to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations per line over 10 000 lines after a warm-up line.
fn allocations_per_line(preset: &str, new_second: bool) -> f64 {
    let mut format = Format::compile(preset).expect("preset");
    let mut record = record();
    let mut line = Vec::with_capacity(1024);
    format.write(&record, &mut line);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..10_000 {
        if new_second {
            record.received += Duration::from_secs(1);
        }
        line.clear();
        format.write(&record, &mut line);
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / 10_000.0
}

/// A typical S3 GET through the pool.
fn record() -> Record {
    let mut request_headers = HeaderMap::new();
    request_headers.insert(
        "user-agent",
        HeaderValue::from_static(
            "aws-cli/2.15.30 Python/3.11.8 Linux/6.1 exe/x86_64.amzn.2023 prompt/off command/s3.cp",
        ),
    );
    let mut response_headers = HeaderMap::new();
    response_headers.insert(
        "x-amz-request-id",
        HeaderValue::from_static("4442587FB7D0A2F9"),
    );
    response_headers.insert(
        "x-amz-id-2",
        HeaderValue::from_static(
            "vlR7PnpV2Ce81l0PRw6jlUpck7Jo5ZsQjryTjKlc5aLWGVHPZLj5NeC6qMa0emYBDXOo6QBU0Wo=",
        ),
    );
    Record {
        received: UNIX_EPOCH + Duration::new(1_704_164_645, 678_901_000),
        duration: Duration::from_micros(41_250),
        client: "10.1.2.3:51234".parse().expect("addr"),
        via: None,
        local_port: 3000,
        method: Method::GET,
        uri: "/my-bucket/photos/2024/01/02/IMG_0001.jpg?versionId=3HL4kqtJlcpXroDTDmJ"
            .parse()
            .expect("uri"),
        version: Version::HTTP_11,
        host: "s3.us-east-1.amazonaws.com.ccnproxy-https:3000".to_owned(),
        status: 200,
        bytes_sent: 2_483_112,
        bytes_received: 0,
        request_headers,
        response_headers,
        request_id: "cmjq5v2d0000abcd1234".to_owned(),
        origin: Some("https://s3.us-east-1.amazonaws.com:443".to_owned()),
        upstream: Some(Timing {
            addr: Some("52.216.9.10:443".parse().expect("addr")),
            reused: true,
            protocol: Protocol::H1,
            dns: Duration::ZERO,
            connect: Duration::ZERO,
            tls: Duration::ZERO,
            queue: Duration::from_micros(12),
            header: Duration::from_micros(30_125),
            total: Duration::from_micros(40_900),
            retries: 0,
            retry_rule: None,
            connect_attempts: 0,
        }),
        scope: Some(CredentialScope {
            access_key: "ASIAY34FZKBOKMUTVV7A".to_owned(),
            date: "20240102".to_owned(),
            region: "us-east-1".to_owned(),
            service: "s3".to_owned(),
        }),
        verified: None,
        error: None,
    }
}

fn formatting(c: &mut Criterion) {
    for (preset, new_second) in [
        ("aws", false),
        ("combined", false),
        ("json", false),
        ("aws", true),
    ] {
        let per_line = allocations_per_line(preset, new_second);
        eprintln!(
            "allocations per line: {preset}{}: {per_line}",
            if new_second {
                " (new second each line)"
            } else {
                ""
            }
        );
    }
    let record = record();
    let mut group = c.benchmark_group("accesslog_line");
    group.throughput(Throughput::Elements(1));
    for preset in ["aws", "combined", "json"] {
        let mut format = Format::compile(preset).expect("preset");
        let mut line = Vec::with_capacity(1024);
        group.bench_function(preset, |b| {
            b.iter(|| {
                line.clear();
                format.write(black_box(&record), &mut line);
                black_box(line.len())
            })
        });
    }
    // A new second on every line: the time text is rendered each time.
    let mut format = Format::compile("aws").expect("preset");
    let mut line = Vec::with_capacity(1024);
    let mut record = record;
    group.bench_function("aws_new_second_each_line", |b| {
        b.iter(|| {
            record.received += Duration::from_secs(1);
            line.clear();
            format.write(black_box(&record), &mut line);
            black_box(line.len())
        })
    });
    group.finish();
}

criterion_group!(benches, formatting);
criterion_main!(benches);
