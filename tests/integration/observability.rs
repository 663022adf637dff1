//! What operators see, checked against traffic the test controls: the
//! rotated access-log directory under load (every line of 50,000 requests in
//! exactly one file, retention and `current` while files come and go), and
//! `/metrics` plus `/.api/http-stats` after a known mix of outcomes.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::Response;
use serde_json::Value;
use tokio::time::Instant;

use crate::support::admin::METRICS_LISTEN;
use crate::support::client::{self, Client};
use crate::support::origin::{OriginBody, full};
use crate::support::{Origin, Proxy, within_for};

/// Host mode, plain HTTP: routes to the origin posing as `example.test:80`.
const HOST: &str = "example.test.ccnproxy";
/// That origin as `/metrics` labels it.
const ORIGIN: &str = "http://example.test:80";

/// Access-log files in `dir` (`access_log.*`), oldest first (the names sort
/// by their start time).
fn log_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").file_name())
        .filter_map(|n| n.into_string().ok())
        .filter(|n| n.starts_with("access_log."))
        .collect();
    names.sort();
    names
}

/// Where `dir/current` points.
fn current(dir: &Path) -> String {
    std::fs::read_link(dir.join("current"))
        .unwrap_or_else(|e| panic!("reading {}/current: {e}", dir.display()))
        .into_os_string()
        .into_string()
        .expect("UTF-8 link target")
}

/// Every line of `file`, each parsed as a JSON object; panics naming the
/// file and line that is not one (a torn or interleaved line).
fn json_lines(dir: &Path, file: &str) -> Vec<Value> {
    let text =
        std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("reading {file}: {e}"));
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{file} ends in a partial line: {:?}",
        &text[text.len().saturating_sub(200)..]
    );
    text.lines()
        .enumerate()
        .map(|(i, line)| match serde_json::from_str::<Value>(line) {
            Ok(v) if v.is_object() => v,
            _ => panic!("{file} line {}: not a JSON object: {line:?}", i + 1),
        })
        .collect()
}

/// The `n` of a `req-<n>` request id.
fn id_number(line: &Value) -> usize {
    line["request_id"]
        .as_str()
        .and_then(|id| id.strip_prefix("req-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a line with a request id the test did not send: {line}"))
}

/// `GET /n/<n>` with `X-Chocon-Id: req-<n>` for every `n` in `ids`, one after
/// the other on one keep-alive connection; every answer must be 200.
async fn send_ids(proxy: &Proxy, client: &mut Client, ids: impl Iterator<Item = usize>) {
    for n in ids {
        let id = format!("req-{n}");
        let req = client::request(
            "GET",
            HOST,
            &format!("/n/{n}"),
            &[("x-chocon-id", &id)],
            client::empty(),
        );
        match client.send(req).await {
            Ok(resp) => assert_eq!(resp.status(), 200, "{id}: {}", resp.text()),
            Err(err) => panic!("{id}: {err:?}\n--- proxy stderr ---\n{}", proxy.stderr()),
        }
    }
}

const LOAD_REQUESTS: usize = 50_000;
/// Keep-alive client connections sending at once.
const LOAD_CLIENTS: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_thousand_requests_each_logged_once_across_rotated_files() {
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("logs");
    let proxy = Arc::new(
        Proxy::start(origin.proxy_args_with(&[
            "--access-log-dir",
            dir.to_str().expect("UTF-8 path"),
            "--access-log-format",
            "json",
            "--access-log-rotate-secs",
            "1",
            "--access-log-rotate",
            "0",
        ]))
        .await,
    );

    let started = Instant::now();
    let clients: Vec<_> = (0..LOAD_CLIENTS)
        .map(|c| {
            let proxy = proxy.clone();
            tokio::spawn(async move {
                let mut client = proxy.client().await;
                // Client `c` sends ids c, c + 64, c + 128, ...
                send_ids(
                    &proxy,
                    &mut client,
                    (c..LOAD_REQUESTS).step_by(LOAD_CLIENTS),
                )
                .await;
            })
        })
        .collect();
    for (c, task) in clients.into_iter().enumerate() {
        within_for("the load", Duration::from_secs(300), task)
            .await
            .unwrap_or_else(|e| panic!("client {c} failed: {e}"));
    }
    let load_took = started.elapsed();
    assert_eq!(origin.requests(), LOAD_REQUESTS);

    // SIGTERM flushes the queue; exit 0 means the writer finished.
    proxy.sigterm();
    let status = proxy.wait_exit().await;
    assert!(status.success(), "exit status after SIGTERM: {status}");

    let files = log_files(&dir);
    let mut seen = vec![0u32; LOAD_REQUESTS];
    let mut lines = 0;
    let mut per_file = Vec::new();
    for file in &files {
        let records = json_lines(&dir, file);
        per_file.push((file.clone(), records.len()));
        for record in &records {
            assert_eq!(record["status"], 200, "{file}: {record}");
            let n = id_number(record);
            assert!(n < LOAD_REQUESTS, "{file}: unknown id: {record}");
            seen[n] += 1;
        }
        lines += records.len();
    }
    let missing: Vec<usize> = (0..LOAD_REQUESTS).filter(|&n| seen[n] == 0).collect();
    let doubled: Vec<usize> = (0..LOAD_REQUESTS).filter(|&n| seen[n] > 1).collect();
    eprintln!(
        "{LOAD_REQUESTS} requests from {LOAD_CLIENTS} clients in {load_took:?} \
         ({:.0}/s), {} files: {per_file:?}; total {:?}",
        LOAD_REQUESTS as f64 / load_took.as_secs_f64(),
        files.len(),
        started.elapsed()
    );
    assert!(
        missing.is_empty() && doubled.is_empty(),
        "{} ids never logged (first {:?}), {} logged more than once (first {:?})",
        missing.len(),
        &missing[..missing.len().min(10)],
        doubled.len(),
        &doubled[..doubled.len().min(10)]
    );
    assert_eq!(lines, LOAD_REQUESTS, "lines over all files: {per_file:?}");
    assert!(
        files.len() > 1,
        "traffic for {load_took:?} with 1 s rotation must start new files: {per_file:?}"
    );
    assert_eq!(
        current(&dir),
        *files.last().expect("files"),
        "`current` names the newest file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_files_while_they_rotate() {
    const KEEP: usize = 2;
    /// Distinct files to see come and go: the one opened at startup plus
    /// one per second of traffic.
    const FILES_SEEN: usize = 5;
    let origin = Origin::plain_http1().reply(200, "ok").start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("logs");
    let proxy = Proxy::start(origin.proxy_args_with(&[
        "--access-log-dir",
        dir.to_str().expect("UTF-8 path"),
        "--access-log-format",
        "json",
        "--access-log-rotate-secs",
        "1",
        "--access-log-rotate",
        &KEEP.to_string(),
    ]))
    .await;

    // One client, one request at a time, so the ids are logged in order;
    // after each answer, the directory listing. Stops once FILES_SEEN files
    // have existed and at least 4 s of traffic went by.
    let mut client = proxy.client().await;
    let mut ever = BTreeSet::new();
    let mut sent = 0;
    let started = Instant::now();
    let limit = Duration::from_secs(30);
    while ever.len() < FILES_SEEN || started.elapsed() < Duration::from_secs(4) {
        assert!(
            started.elapsed() < limit,
            "after {limit:?} and {sent} requests only these files appeared: {ever:?}"
        );
        send_ids(&proxy, &mut client, sent..sent + 1).await;
        sent += 1;
        ever.extend(log_files(&dir));
    }
    drop(client);
    proxy.sigterm();
    let status = proxy.wait_exit().await;
    assert!(status.success(), "exit status after SIGTERM: {status}");
    ever.extend(log_files(&dir));

    let files = log_files(&dir);
    let newest: Vec<String> = ever.iter().rev().take(KEEP).rev().cloned().collect();
    assert_eq!(
        files, newest,
        "--access-log-rotate {KEEP} keeps the newest {KEEP} of {ever:?}"
    );
    assert_eq!(
        current(&dir),
        *files.last().expect("files"),
        "`current` names the newest file"
    );
    // What is kept is whole: the ids in the kept files are the last ones
    // sent, without a gap, ending with the very last.
    let ids: Vec<usize> = files
        .iter()
        .flat_map(|f| json_lines(&dir, f))
        .map(|line| id_number(&line))
        .collect();
    let first = sent.saturating_sub(ids.len());
    assert_eq!(
        ids,
        (first..sent).collect::<Vec<_>>(),
        "the kept files hold req-{first}..req-{} in order",
        sent - 1
    );
    eprintln!(
        "{sent} requests in {:?}; files seen {ever:?}; kept {files:?} with {} lines",
        started.elapsed(),
        ids.len()
    );
}

/// `200 ok` for most paths, `404 NoSuchKey` under `/missing`.
fn found_or_missing(req: http::Request<hyper::body::Incoming>) -> Response<OriginBody> {
    let missing = req.uri().path().starts_with("/missing");
    let mut resp = Response::new(full(if missing { "NoSuchKey" } else { "ok" }));
    if missing {
        *resp.status_mut() = http::StatusCode::NOT_FOUND;
    }
    resp
}

#[tokio::test]
async fn metrics_count_known_traffic_exactly() {
    const OK: usize = 11; // 200 from the origin
    const NOT_FOUND: usize = 5; // 404 from the origin
    const NO_ROUTE: usize = 3; // 400 from the proxy, no origin
    const DENIED: usize = 2; // 403 from the proxy, --deny-host
    const TOTAL: usize = OK + NOT_FOUND + NO_ROUTE + DENIED;
    const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDTEST/20240101/us-east-1/s3/aws4_request, \
                        SignedHeaders=host, Signature=00";
    const DENIED_ORIGIN: &str = "http://denied.test:80";

    let origin = Origin::plain_http1()
        .handler(|req| async move { found_or_missing(req) })
        .start()
        .await;
    let mut args = origin.proxy_args_with(&METRICS_LISTEN);
    args.extend(["--deny-host".to_owned(), "denied.test".to_owned()]);
    let proxy = Proxy::start(args).await;

    // Each request on a fresh client connection, one at a time. All but the
    // denied ones claim the key id AKIDTEST.
    let signed = [("authorization", AUTH)];
    for (count, host, path, headers, want) in [
        (OK, HOST, "/found", &signed[..], 200),
        (NOT_FOUND, HOST, "/missing", &signed[..], 404),
        (NO_ROUTE, "localhost", "/no/route", &signed[..], 400),
        (DENIED, "denied.test.ccnproxy", "/", &[][..], 403),
    ] {
        for i in 0..count {
            let resp = proxy
                .request("GET", host, &format!("{path}/{i}"), headers, "")
                .await;
            assert_eq!(resp.status(), want, "{host}{path}/{i}: {}", resp.text());
        }
    }
    assert_eq!(origin.requests(), OK + NOT_FOUND);
    assert_eq!(origin.accepted(), 1, "one upstream connection, reused");

    // A request is counted just before its line is queued: once every line
    // is out, every request is counted. Then the writer's own counter.
    let logs = proxy.logs_until(TOTAL).await;
    assert!(logs.iter().all(|l| l.is_object()), "{logs:#?}");
    let m = proxy
        .wait_metrics(&format!("ccnproxy_log_lines_total == {TOTAL}"), |m| {
            m.exact("ccnproxy_log_lines_total", &[]) == Some(TOTAL as f64)
        })
        .await;
    let page = &m.text;
    let n = |v: usize| v as f64;

    let requests = |origin: &str, class: &str| {
        m.exact(
            "ccnproxy_requests_total",
            &[("origin", origin), ("method", "GET"), ("code_class", class)],
        )
    };
    assert_eq!(requests(ORIGIN, "2xx"), Some(n(OK)), "{page}");
    assert_eq!(requests(ORIGIN, "4xx"), Some(n(NOT_FOUND)), "{page}");
    // Requests that got no origin entry (no route, denied) count under
    // `none`: only origins in the table have series of their own.
    assert_eq!(
        requests("none", "4xx"),
        Some(n(NO_ROUTE + DENIED)),
        "{page}"
    );
    assert_eq!(requests(DENIED_ORIGIN, "4xx"), None, "{page}");
    assert_eq!(
        m.series("ccnproxy_requests_total").len(),
        3,
        "no other (origin, method, code_class) series: {page}"
    );

    let client_requests = |client: &str, class: &str| {
        m.exact(
            "ccnproxy_client_requests_total",
            &[("client", client), ("code_class", class)],
        )
    };
    // The key id AKIDTEST is a claim nobody verified: every request is
    // the client address's.
    assert_eq!(client_requests("127.0.0.1", "2xx"), Some(n(OK)), "{page}");
    assert_eq!(
        client_requests("127.0.0.1", "4xx"),
        Some(n(NOT_FOUND + NO_ROUTE + DENIED)),
        "{page}"
    );
    assert_eq!(
        m.series("ccnproxy_client_requests_total").len(),
        2,
        "{page}"
    );
    assert_eq!(m.exact("ccnproxy_client_keys", &[]), Some(1.0), "{page}");

    let duration_count = |origin: &str| {
        m.exact(
            "ccnproxy_request_duration_seconds_count",
            &[("origin", origin)],
        )
    };
    assert_eq!(duration_count(ORIGIN), Some(n(OK + NOT_FOUND)), "{page}");
    assert_eq!(duration_count("none"), Some(n(NO_ROUTE + DENIED)), "{page}");
    assert_eq!(duration_count(DENIED_ORIGIN), None, "{page}");
    // The in-house reader sees the +Inf bucket agree with _count.
    assert_eq!(
        m.get(
            "ccnproxy_request_duration_seconds_bucket",
            &[("origin", ORIGIN), ("le", "+Inf")]
        ),
        Some(n(OK + NOT_FOUND)),
        "{page}"
    );

    assert_eq!(
        m.exact("ccnproxy_response_bytes_total", &[("origin", ORIGIN)]),
        Some(n(OK * "ok".len() + NOT_FOUND * "NoSuchKey".len())),
        "{page}"
    );

    let pool = |name: &str| m.exact(name, &[("origin", ORIGIN)]);
    assert_eq!(
        pool("ccnproxy_pool_requests_total"),
        Some(n(OK + NOT_FOUND)),
        "{page}"
    );
    assert_eq!(pool("ccnproxy_pool_handshakes_total"), Some(1.0), "{page}");
    assert_eq!(pool("ccnproxy_pool_retries_total"), Some(0.0), "{page}");
    assert_eq!(
        m.exact("ccnproxy_pool_requests_total", &[("origin", DENIED_ORIGIN)]),
        None,
        "a refused host gets no pool: {page}"
    );
    let exchanges = |connection: &str| {
        m.exact(
            "ccnproxy_upstream_exchanges_total",
            &[
                ("origin", ORIGIN),
                ("protocol", "h1"),
                ("connection", connection),
            ],
        )
    };
    assert_eq!(exchanges("new"), Some(1.0), "{page}");
    assert_eq!(exchanges("reused"), Some(n(OK + NOT_FOUND - 1)), "{page}");

    assert_eq!(m.exact("ccnproxy_log_lines_total", &[]), Some(n(TOTAL)));
    assert_eq!(
        m.exact("ccnproxy_log_write_errors_total", &[]),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        m.exact("ccnproxy_client_connections_accepted_total", &[]),
        Some(n(TOTAL)),
        "one client connection per request: {page}"
    );

    let resp = proxy.admin_get("/.api/http-stats").await;
    assert_eq!(resp.status(), 200, "{}", resp.text());
    let stats: Value = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("/.api/http-stats is not JSON ({e}): {}", resp.text()));
    assert_eq!(stats["request"]["count"], TOTAL, "{stats:#}");
    let mut want = serde_json::Map::new();
    for code in [200, 400, 401, 403, 404, 500, 501, 502, 503, 504] {
        let count = match code {
            200 => OK,
            400 => NO_ROUTE,
            403 => DENIED,
            404 => NOT_FOUND,
            _ => 0,
        };
        want.insert(code.to_string(), count.into());
    }
    assert_eq!(
        stats["request"]["status_count"],
        Value::Object(want),
        "{stats:#}"
    );
}
