//! The access log end to end (start, bounded queue, reopen), and the
//! sample record the format, time and writer tests share.

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method, Version};

use super::*;
use crate::upstream::{Protocol, Timing};

/// 2024-01-02T03:04:05.678901Z (12:04:05 in JST).
pub(crate) const RECEIVED_SECS: u64 = 1_704_164_645;

/// A finished S3 request with an upstream exchange and a hostile User-Agent.
pub(crate) fn sample_record() -> Record {
    let mut request_headers = HeaderMap::new();
    let ua =
        HeaderValue::from_bytes(b"aws-cli/2 \"q\" back\\slash\ttab \xc3\xa9 \xff").expect("valid");
    request_headers.insert("user-agent", ua);
    request_headers.append("x-multi", HeaderValue::from_static("a"));
    request_headers.append("x-multi", HeaderValue::from_static("b"));
    let mut response_headers = HeaderMap::new();
    response_headers.insert("x-amz-request-id", HeaderValue::from_static("REQ123"));
    response_headers.insert("x-amz-id-2", HeaderValue::from_static("ID2+abc/def="));
    response_headers.insert("x-chocon-id", HeaderValue::from_static("cid-1"));
    Record {
        received: UNIX_EPOCH + Duration::new(RECEIVED_SECS, 678_901_000),
        duration: Duration::from_nanos(12_345_678),
        client: "192.0.2.10:54321".parse().expect("addr"),
        via: None,
        local_port: 3000,
        method: Method::GET,
        uri: "/bucket/key%20x?list-type=2&prefix=a".parse().expect("uri"),
        version: Version::HTTP_11,
        host: "s3.amazonaws.com.ccnproxy-https:3000".to_owned(),
        status: 200,
        bytes_sent: 1234,
        bytes_received: 56,
        request_headers,
        response_headers,
        request_id: "cid-1".to_owned(),
        origin: Some("https://s3.amazonaws.com:443".to_owned()),
        upstream: Some(Timing {
            addr: Some("52.216.1.2:443".parse::<SocketAddr>().expect("addr")),
            reused: false,
            protocol: Protocol::H1,
            dns: Duration::from_micros(1500),
            connect: Duration::from_micros(2250),
            tls: Duration::from_millis(10),
            queue: Duration::ZERO,
            header: Duration::from_micros(30_125),
            total: Duration::from_micros(40_500),
            retries: 1,
            retry_rule: Some(crate::upstream::pool::retry::Rule::IdempotentReplay),
            connect_attempts: 2,
        }),
        scope: Some(crate::scope::CredentialScope {
            access_key: "AKIDEXAMPLE".to_owned(),
            date: "20240102".to_owned(),
            region: "us-east-1".to_owned(),
            service: "s3".to_owned(),
        }),
        verified: None,
        error: None,
    }
}

fn config(destination: LogDestination, format: &str) -> AccessLogConfig {
    AccessLogConfig {
        destination,
        format: format.to_owned(),
        rotate_count: 30,
        rotate_interval: Duration::from_secs(3600),
        ..crate::config::Config::default().access_log
    }
}

fn with_id(id: usize) -> Record {
    Record {
        request_id: format!("r{id}"),
        ..sample_record()
    }
}

fn read_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("log file")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn start_refuses_a_bad_format_with_its_position() {
    let err = AccessLog::start(&config(LogDestination::None, "%h %Z")).expect_err("bad format");
    assert!(matches!(
        err,
        AccessLogError::Format(FormatError::UnknownDirective {
            pos: 3,
            directive: 'Z'
        })
    ));
    let chain = format!("{err}: {}", std::error::Error::source(&err).expect("cause"));
    assert_eq!(
        chain,
        "parsing the access-log format: unknown directive %Z at byte 3"
    );
}

#[test]
fn start_refuses_a_directory_it_cannot_create() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("file"), b"").expect("file");
    let dir = tmp.path().join("file").join("logs");
    let err = AccessLog::start(&config(LogDestination::Dir(dir.clone()), "aws"))
        .expect_err("not a directory");
    assert!(
        matches!(&err, AccessLogError::Dir { path, .. } if *path == dir),
        "{err:?}"
    );
}

#[test]
fn start_refuses_sub_second_rotation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut config = config(LogDestination::Dir(tmp.path().to_owned()), "aws");
    config.rotate_interval = Duration::from_millis(500);
    assert!(matches!(
        AccessLog::start(&config),
        Err(AccessLogError::Interval(_))
    ));
}

#[tokio::test]
async fn none_destination_asks_for_no_headers_and_writes_nothing() {
    let (log, writer) = AccessLog::start(&config(LogDestination::None, "aws")).expect("start");
    assert!(log.request_headers().is_empty() && log.response_headers().is_empty());
    log.log(sample_record());
    assert_eq!(log.stats(), Stats::default());
    drop(log);
    writer.close().await;
}

#[test]
fn handles_expose_the_headers_the_format_reads() {
    let (log, _writer) = AccessLog::start(&config(LogDestination::Stdout, "aws")).expect("start");
    fn names(list: &[HeaderName]) -> Vec<&str> {
        list.iter().map(HeaderName::as_str).collect()
    }
    assert_eq!(names(log.request_headers()), ["referer", "user-agent"]);
    assert_eq!(
        names(log.response_headers()),
        ["x-amzn-requestid", "x-amz-request-id", "x-amz-id-2"]
    );
}

#[tokio::test]
async fn close_writes_every_queued_record_in_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (log, writer) = AccessLog::start(&config(
        LogDestination::Dir(tmp.path().to_owned()),
        "%{request_id}x",
    ))
    .expect("start");
    let clones: Vec<AccessLog> = (0..4).map(|_| log.clone()).collect();
    for id in 0..5000 {
        clones[id % 4].log(with_id(id));
    }
    drop(clones);
    let shared = log.inner.shared.clone();
    drop(log);
    writer.close().await;
    let lines = read_lines(&tmp.path().join("current"));
    let want: Vec<String> = (0..5000).map(|id| format!("r{id}")).collect();
    assert_eq!(lines, want, "one writer keeps the queue's order");
    assert_eq!(
        shared.stats(),
        Stats {
            lines_written: 5000,
            ..Stats::default()
        }
    );
}

pub(super) fn limits(lines: usize, when_full: WhenFull) -> QueueLimits {
    QueueLimits {
        lines,
        bytes: u64::MAX,
        when_full,
    }
}

#[tokio::test]
async fn a_full_queue_in_drop_mode_counts_the_lines_it_dropped() {
    let format = Format::compile("%{request_id}x").expect("format");
    let (log, rx) = AccessLog::with_queue(&format, limits(2, WhenFull::Drop));
    for id in 0..10 {
        log.log(with_id(id));
    }
    let stats = log.stats();
    assert_eq!((stats.dropped, stats.queued_lines), (8, 2));
    let out = Arc::new(std::sync::Mutex::new(Vec::new()));
    let done = spawn_writer(
        rx,
        log.inner.shared.clone(),
        format,
        Sink::Memory {
            out: out.clone(),
            room: usize::MAX,
        },
    )
    .expect("spawn");
    let shared = log.inner.shared.clone();
    drop(log);
    done.await.expect("writer finished");
    assert_eq!(*out.lock().expect("sink"), b"r0\nr1\n");
    assert_eq!(
        shared.stats(),
        Stats {
            lines_written: 2,
            dropped: 8,
            ..Stats::default()
        }
    );
}

#[test]
fn a_full_queue_in_block_mode_waits_and_loses_nothing() {
    let format = Format::compile("%{request_id}x").expect("format");
    let (log, rx) = AccessLog::with_queue(&format, limits(4, WhenFull::Block));
    // Producers outrun a queue of four; the writer starts late.
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..250 {
                    log.log(with_id(p * 1000 + i));
                }
            })
        })
        .collect();
    let out = Arc::new(std::sync::Mutex::new(Vec::new()));
    let shared = log.inner.shared.clone();
    let done = spawn_writer(
        rx,
        shared.clone(),
        format,
        Sink::Memory {
            out: out.clone(),
            room: usize::MAX,
        },
    )
    .expect("spawn");
    for p in producers {
        p.join().expect("producer");
    }
    drop(log);
    done.blocking_recv().expect("writer finished");
    let text = String::from_utf8(out.lock().expect("sink").clone()).expect("utf-8");
    let ids: Vec<usize> = text.lines().map(|l| l[1..].parse().expect("id")).collect();
    for p in 0..4 {
        let mine: Vec<usize> = ids.iter().copied().filter(|id| id / 1000 == p).collect();
        let want: Vec<usize> = (0..250).map(|i| p * 1000 + i).collect();
        assert_eq!(mine, want, "producer {p}: every line once, in order");
    }
    let stats = shared.stats();
    assert_eq!((stats.lines_written, stats.dropped), (1000, 0));
    assert_eq!((stats.queued_lines, stats.queued_bytes), (0, 0));
}

#[tokio::test]
async fn reopen_starts_a_new_file_at_the_same_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (log, writer) = AccessLog::start(&config(
        LogDestination::Dir(tmp.path().to_owned()),
        "%{request_id}x",
    ))
    .expect("start");
    let current = std::fs::canonicalize(tmp.path().join("current")).expect("current");
    log.log(with_id(1));
    // An external logrotate moves the file, then signals.
    let moved = tmp.path().join("moved");
    std::fs::rename(&current, &moved).expect("rename");
    log.request_reopen();
    log.log(with_id(2));
    drop(log);
    writer.close().await;
    let (old, new) = (read_lines(&moved), read_lines(&current));
    assert_eq!(
        new.last().map(String::as_str),
        Some("r2"),
        "the record after the reopen is in the new file"
    );
    assert_eq!(old.len() + new.len(), 2);
}

#[tokio::test]
async fn sigusr1_reopens_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (log, writer) = AccessLog::start(&config(
        LogDestination::Dir(tmp.path().to_owned()),
        "%{request_id}x",
    ))
    .expect("start");
    let current = std::fs::canonicalize(tmp.path().join("current")).expect("current");
    std::fs::rename(&current, tmp.path().join("moved")).expect("rename");
    // `start` installed tokio's SIGUSR1 handler above, so the signal is
    // caught, not fatal.
    let sent = std::process::Command::new("kill")
        .args(["-USR1", &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    // The reopen creates the file again at once; wait for that event.
    tokio::time::timeout(Duration::from_secs(10), async {
        while !current.exists() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the file is reopened");
    log.log(with_id(7));
    drop(log);
    writer.close().await;
    assert_eq!(read_lines(&current), ["r7"]);
}
