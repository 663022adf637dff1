//! What one hostile request head costs the proxy: 64 KiB heads (the
//! default `--max-header-bytes`) built to be the worst case for each
//! per-header step, one head at a time; prints the median and the largest
//! CPU time of 15 runs per head (the thread's CPU clock, so other load on
//! the machine does not count). The budget is 50 ms per head; each step is
//! one pass over the head with a small set, so they take a few ms or less.
//! Run: `cargo bench --bench hostile_heads`.

// Reading the thread's CPU clock is a libc call, `unsafe` to make.
#![allow(unsafe_code)]

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use ccnproxy::accesslog::Record;
use ccnproxy::accesslog::format::Format;
use ccnproxy::config::SignConfig;
use ccnproxy::origin::{Origin, Scheme};
use ccnproxy::rewrite::strip_hop_by_hop;
use ccnproxy::sign::Signer;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Version};

/// The default `--max-header-bytes`.
const HEAD_BYTES: usize = 64 << 10;
/// hyper's limit on HTTP/1.1 header lines (`--max-headers`' default).
const H1_LINES: usize = 100;
const RUNS: usize = 15;
const BUDGET: Duration = Duration::from_millis(50);

/// `Connection` listing every other header line and then filler tokens up
/// to the head size: the shape that made hop-by-hop removal quadratic.
fn connection_flood() -> Vec<(String, String)> {
    let mut lines: Vec<(String, String)> = (0..H1_LINES - 2)
        .map(|i| (format!("x-h{i}"), "1".to_owned()))
        .collect();
    let mut tokens: Vec<String> = lines.iter().map(|(n, _)| n.clone()).collect();
    let used: usize = lines.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    let mut value_len = tokens.iter().map(|t| t.len() + 1).sum::<usize>();
    let mut i = 0;
    while used + value_len < HEAD_BYTES - 200 {
        let t = format!("t{i}");
        value_len += t.len() + 1;
        tokens.push(t);
        i += 1;
    }
    lines.push(("connection".to_owned(), tokens.join(",")));
    lines
}

/// A raw HTTP/1.1 head with `lines`.
fn raw_h1(lines: &[(String, String)]) -> Vec<u8> {
    let mut head = b"\x00GET /k?x=1 HTTP/1.1\r\nHost: s3.amazonaws.com.ccnproxy-https\r\n".to_vec();
    for (n, v) in lines {
        head.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// An h2 header block for `fuzzing::head`: as many one-letter headers as
/// fit in an h2 header list of 64 KiB (32 bytes of overhead each).
fn h2_flood() -> Vec<u8> {
    let mut block =
        b"\x01:method GET\n:scheme http\n:authority s3.amazonaws.com.ccnproxy-https\n:path /k"
            .to_vec();
    let n = HEAD_BYTES / (32 + 8);
    for i in 0..n {
        block.extend_from_slice(format!("\nx-amz-{i} v").as_bytes());
    }
    block
}

fn header_map(lines: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in lines {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    map
}

/// A request to sign: `SignedHeaders` of a client `Authorization` naming
/// `listed` headers, plus `lines`.
fn to_sign(lines: &[(String, String)], listed: usize) -> Request<ccnproxy::body::ProxyBody> {
    let names: Vec<String> = (0..listed).map(|i| format!("s{i}")).collect();
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/20150830/us-east-1/s3/aws4_request, \
         SignedHeaders={}, Signature={}",
        names.join(";"),
        "0".repeat(64)
    );
    let mut req = Request::builder()
        .method(Method::GET)
        .uri("/bucket/key")
        .header("host", "s3.us-east-1.amazonaws.com")
        .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
        .header("authorization", auth)
        .body(ccnproxy::body::empty())
        .expect("request");
    for (n, v) in lines {
        req.headers_mut().append(
            HeaderName::from_bytes(n.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    req
}

fn signer() -> Signer {
    let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "bench");
    Signer::with_provider(
        &SignConfig {
            enabled: true,
            hosts: Vec::new(),
            max_body: 1 << 20,
            allow_clients: Vec::new(),
            client_credentials: None,
            services: vec!["*".to_owned()],
        },
        SharedCredentialsProvider::new(creds),
    )
    .expect("signer")
}

/// A record whose logged header is `value` on each of `lines` lines.
fn record(value: &[u8], lines: usize) -> Record {
    let mut request_headers = HeaderMap::new();
    for _ in 0..lines {
        request_headers.append("user-agent", HeaderValue::from_bytes(value).expect("value"));
    }
    Record {
        received: UNIX_EPOCH + Duration::from_secs(1_704_164_645),
        duration: Duration::from_micros(41_250),
        client: "10.1.2.3:51234".parse().expect("addr"),
        via: None,
        local_port: 3000,
        method: Method::GET,
        uri: "/k".parse().expect("uri"),
        version: Version::HTTP_11,
        host: "s3.amazonaws.com.ccnproxy-https".to_owned(),
        status: 200,
        bytes_sent: 0,
        bytes_received: 0,
        request_headers,
        response_headers: HeaderMap::new(),
        request_id: "id".to_owned(),
        origin: None,
        upstream: None,
        scope: None,
        verified: None,
        error: None,
    }
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Median and largest CPU time of `RUNS` runs of `step`, after one warm-up
/// run.
fn time(what: &str, mut step: impl FnMut()) -> Duration {
    step();
    let mut runs: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let started = thread_cpu();
            step();
            thread_cpu() - started
        })
        .collect();
    runs.sort_unstable();
    let median = runs[RUNS / 2];
    let verdict = if median < BUDGET { "ok" } else { "OVER BUDGET" };
    println!(
        "{what:<62} CPU median {:>8.3} ms  max {:>8.3} ms  {verdict}",
        median.as_secs_f64() * 1e3,
        runs[RUNS - 1].as_secs_f64() * 1e3
    );
    median
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    println!("hostile heads: {HEAD_BYTES} bytes each, {RUNS} runs, budget {BUDGET:?} per head");
    let flood = connection_flood();
    let raw = raw_h1(&flood);
    let map = header_map(&flood);
    let h2 = h2_flood();
    let mut worst = Duration::ZERO;

    let listed = flood.last().map_or(0, |(_, v)| v.split(',').count());
    let what = format!("hop-by-hop removal: Connection lists {listed} tokens, 98 present");
    worst = worst.max(time(&what, || {
        let mut m = map.clone();
        strip_hop_by_hop(&mut m);
        black_box(m.len());
    }));
    worst = worst.max(time(
        "HTTP/1.1 head: parse, route, build (same head)",
        || {
            ccnproxy::fuzzing::head(black_box(&raw));
        },
    ));
    worst = worst.max(time("h2 head: 1,638 headers, route, build", || {
        ccnproxy::fuzzing::head(black_box(&h2));
    }));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let signer = signer();
    let origin = Origin::new(Scheme::Https, "s3.us-east-1.amazonaws.com", 443);
    let ninety_eight: Vec<(String, String)> = (0..H1_LINES - 5)
        .map(|i| (format!("s{i}"), "1".to_owned()))
        .collect();
    let many_amz: Vec<(String, String)> = (0..HEAD_BYTES / 40)
        .map(|i| (format!("x-amz-{i}"), "v".to_owned()))
        .collect();
    let sign = |lines: &[(String, String)], listed: usize| {
        let req = to_sign(lines, listed);
        let signed = runtime.block_on(signer.sign(req, &origin)).expect("signs");
        black_box(signed.headers().len());
    };
    worst = worst.max(time(
        "SigV4: SignedHeaders of 8,000 names, 95 headers",
        || sign(&ninety_eight, 8_000),
    ));
    worst = worst.max(time(
        "SigV4: 1,638 x-amz-* headers (h2c), all signed",
        || sign(&many_amz, 0),
    ));

    // Quotes, backslashes and obs-text: every byte escaped in the line.
    let escapes = b"\"\\\xff".repeat(HEAD_BYTES / 4 / 3);
    for (what, preset, value, lines) in [
        (
            "access log, json: one 16 KiB value of escapes",
            "json",
            escapes.as_slice(),
            1,
        ),
        (
            "access log, combined: User-Agent on 99 lines",
            "combined",
            "a-long-agent-string-of-six-hundred-bytes-repeated".as_bytes(),
            99,
        ),
    ] {
        let mut format = Format::compile(preset).expect("preset");
        let record = record(value, lines);
        let mut line = Vec::with_capacity(HEAD_BYTES);
        worst = worst.max(time(what, || {
            line.clear();
            format.write(black_box(&record), &mut line);
            black_box(line.len());
        }));
    }
    println!(
        "slowest step: {:.3} ms per head ({})",
        worst.as_secs_f64() * 1e3,
        if worst < BUDGET {
            "within budget"
        } else {
            "OVER BUDGET"
        }
    );
}
