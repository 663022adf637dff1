//! The access log: one line per request, product output (never `tracing`).
//!
//! `AccessLog` is a cheap clonable handle. `log` hands a `Record` to a
//! bounded queue (65 536 records) read by one writer thread, which formats
//! records into a batch buffer and writes whole batches: when the queue runs
//! empty, when the batch reaches 64 KiB, and at close. `log` never blocks and
//! never drops: when the queue is full the record goes to an overflow list the
//! writer drains next (counted in `Stats::overflowed`). The writer is a thread,
//! not a task, because file writes block.
//!
//! Files: `format` compiles the line format (`%` directives; `preset` the
//! presets, `render` the escaping of values, `time` the times), `writer` is
//! the writer thread, `rotate` owns the time-rotated files of
//! `LogDestination::Dir`, `zone` the local time zone. With a directory,
//! SIGHUP or SIGUSR1 reopens the file (for an external logrotate). Write
//! failures are counted, warned about at most once a minute, and retried with
//! the next batch; the lines of a failed batch are lost
//! (`Stats::write_failures`) but never torn.

pub mod format;
mod preset;
mod render;
pub mod rotate;
mod time;
mod writer;
pub mod zone;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, Method, Uri, Version};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::{AccessLogConfig, LogDestination};
use crate::scope::CredentialScope;
use crate::upstream::Timing;
use format::{Format, FormatError};
use rotate::{RotateConfig, RotatingFile};
use writer::{Sink, spawn_writer};
use zone::Zone;

/// Records the queue holds before `log` spills into the overflow list.
const QUEUE_RECORDS: usize = 65_536;

/// Everything known about one finished request.
#[derive(Debug, Clone)]
pub struct Record {
    /// When the request head was received.
    pub received: SystemTime,
    /// From request head received to the last response byte sent (or to the
    /// moment the client went away).
    pub duration: Duration,
    /// The client's address.
    pub client: SocketAddr,
    /// Port the request arrived on.
    pub local_port: u16,
    /// Request method as received.
    pub method: Method,
    /// Request target as received (origin-form or absolute-form).
    pub uri: Uri,
    /// Client's HTTP version.
    pub version: Version,
    /// `Host` as received (or the authority of an absolute-form target); empty if none.
    pub host: String,
    /// Status sent to the client; 499 if the client went away first.
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// Request body bytes read from the client.
    pub bytes_received: u64,
    /// The request headers the format asked for (see `AccessLog::request_headers`).
    pub request_headers: HeaderMap,
    /// The response headers the format asked for (see `AccessLog::response_headers`),
    /// as sent to the client.
    pub response_headers: HeaderMap,
    /// `X-Chocon-Id` of this request.
    pub request_id: String,
    /// The origin the request was routed to (`https://host:443`), if any.
    pub origin: Option<String>,
    /// Upstream timing, if the request reached the pool.
    pub upstream: Option<Timing>,
    /// The client's SigV4 credential scope, if it sent one.
    pub scope: Option<CredentialScope>,
    /// One-line reason when the proxy produced the response itself or the
    /// exchange failed.
    pub error: Option<String>,
}

/// Why the access log could not start.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    /// `--access-log-format` is neither a preset nor a valid format string.
    #[error("parsing the access-log format")]
    Format(#[from] FormatError),
    /// The directory could not be created or its file opened.
    #[error("opening the access-log directory {}", path.display())]
    Dir {
        /// `--access-log-dir`.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// Files cannot rotate more often than once a second.
    #[error("access-log rotate interval {0:?} is shorter than one second")]
    Interval(Duration),
    /// The writer thread could not be started.
    #[error("starting the access-log writer thread")]
    Spawn(#[source] io::Error),
}

/// Counters for the metrics endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lines written to the destination.
    pub lines_written: u64,
    /// Lines lost because writing them failed (disk full, directory gone…).
    pub write_failures: u64,
    /// Records that found the queue full and took the overflow list (not lost).
    pub overflowed: u64,
}

/// Handle to the access-log writer; clones share one queue.
#[derive(Clone)]
pub struct AccessLog {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` for `LogDestination::None`.
    tx: Option<mpsc::Sender<Msg>>,
    shared: Arc<Shared>,
    request_headers: Box<[HeaderName]>,
    response_headers: Box<[HeaderName]>,
}

/// State the handles and the writer thread both see.
#[derive(Default)]
pub(super) struct Shared {
    overflow: Mutex<Vec<Record>>,
    lines_written: AtomicU64,
    write_failures: AtomicU64,
    overflowed: AtomicU64,
    reopen: AtomicBool,
}

#[allow(
    clippy::large_enum_variant,
    reason = "boxing would cost an allocation per request"
)]
pub(super) enum Msg {
    Record(Record),
    /// Look at the overflow list and the reopen flag.
    Wake,
}

/// Owns the writer thread; `close` waits until everything queued is written.
#[derive(Debug)]
pub struct Writer {
    done: Option<oneshot::Receiver<()>>,
    signals: Option<JoinHandle<()>>,
}

impl AccessLog {
    /// Compiles the format, opens the destination and starts the writer. A bad
    /// format or a directory that cannot be created fails here. With a
    /// directory and a tokio runtime, SIGHUP and SIGUSR1 reopen the file.
    pub fn start(config: &AccessLogConfig) -> Result<(AccessLog, Writer), AccessLogError> {
        let format = Format::compile(&config.format)?;
        let sink = match &config.destination {
            LogDestination::None => return Ok(Self::disabled()),
            LogDestination::Stdout => Sink::Stdout,
            LogDestination::Stderr => Sink::Stderr,
            LogDestination::Dir(dir) => {
                if config.rotate_interval < Duration::from_secs(1) {
                    return Err(AccessLogError::Interval(config.rotate_interval));
                }
                let rotate = RotateConfig {
                    dir: dir.clone(),
                    interval: config.rotate_interval,
                    keep: config.rotate_count,
                    zone: Zone::Local,
                };
                let file = RotatingFile::open(rotate, SystemTime::now()).map_err(|source| {
                    AccessLogError::Dir {
                        path: dir.clone(),
                        source,
                    }
                })?;
                Sink::Dir(file)
            }
        };
        let reopen_on_signals = matches!(sink, Sink::Dir(_));
        let (log, rx) = Self::with_queue(&format, QUEUE_RECORDS);
        let signals = if reopen_on_signals {
            log.reopen_on_signals()
        } else {
            None
        };
        let done = spawn_writer(rx, log.inner.shared.clone(), format, sink)?;
        Ok((
            log,
            Writer {
                done: Some(done),
                signals,
            },
        ))
    }

    fn disabled() -> (AccessLog, Writer) {
        let inner = Inner {
            tx: None,
            shared: Arc::default(),
            request_headers: Box::new([]),
            response_headers: Box::new([]),
        };
        (
            AccessLog {
                inner: Arc::new(inner),
            },
            Writer {
                done: None,
                signals: None,
            },
        )
    }

    fn with_queue(format: &Format, capacity: usize) -> (AccessLog, mpsc::Receiver<Msg>) {
        let (tx, rx) = mpsc::channel(capacity);
        let inner = Inner {
            tx: Some(tx),
            shared: Arc::default(),
            request_headers: format.request_headers().into(),
            response_headers: format.response_headers().into(),
        };
        (
            AccessLog {
                inner: Arc::new(inner),
            },
            rx,
        )
    }

    /// Request header names the format needs; the request path copies only these.
    pub fn request_headers(&self) -> &[HeaderName] {
        &self.inner.request_headers
    }

    /// Response header names the format needs; the request path copies only these.
    pub fn response_headers(&self) -> &[HeaderName] {
        &self.inner.response_headers
    }

    /// Queues one record. Never blocks on the writer and never drops: a full
    /// queue spills into the overflow list.
    pub fn log(&self, record: Record) {
        let Some(tx) = &self.inner.tx else { return };
        let shared = &self.inner.shared;
        match tx.try_send(Msg::Record(record)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(msg)) => {
                if let Msg::Record(record) = msg {
                    shared
                        .overflow
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(record);
                    shared.overflowed.fetch_add(1, Ordering::Relaxed);
                }
                // Pushed before this wake-up: either the wake-up is queued, or
                // the queue is still full and the writer checks the overflow
                // list after draining it. Either way the record is seen.
                let _ = tx.try_send(Msg::Wake);
            }
            // The writer thread is gone (it panicked); nothing can write the line.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                shared.write_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines written, lines lost to write failures, overflowed records.
    pub fn stats(&self) -> Stats {
        self.inner.shared.stats()
    }

    /// Reads the same counters without holding the queue open (for metrics,
    /// which outlive the request path at shutdown).
    pub fn stats_reader(&self) -> impl Fn() -> Stats + Send + Sync + 'static {
        let shared = self.inner.shared.clone();
        move || shared.stats()
    }

    /// Asks the writer to reopen its file before the next write.
    #[cfg(test)]
    fn request_reopen(&self) {
        request_reopen(&self.inner.shared, self.inner.tx.as_ref());
    }

    /// SIGHUP / SIGUSR1 → reopen. The task holds only a weak sender, so it
    /// does not keep the queue open.
    fn reopen_on_signals(&self) -> Option<JoinHandle<()>> {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let _entered = runtime.enter();
        let (mut hup, mut usr1) = match (
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined1()),
        ) {
            (Ok(hup), Ok(usr1)) => (hup, usr1),
            (Err(err), _) | (_, Err(err)) => {
                tracing::warn!(
                    error = &err as &dyn std::error::Error,
                    "access log: no SIGHUP/SIGUSR1 reopen"
                );
                return None;
            }
        };
        let shared = self.inner.shared.clone();
        let tx = self.inner.tx.as_ref()?.downgrade();
        Some(runtime.spawn(async move {
            loop {
                tokio::select! {
                    Some(()) = hup.recv() => {}
                    Some(()) = usr1.recv() => {}
                    else => return,
                }
                let Some(tx) = tx.upgrade() else { return };
                tracing::info!("access log: reopening the file on signal");
                request_reopen(&shared, Some(&tx));
            }
        }))
    }
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("enabled", &self.inner.tx.is_some())
            .field("request_headers", &self.inner.request_headers)
            .field("response_headers", &self.inner.response_headers)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn stats(&self) -> Stats {
        Stats {
            lines_written: self.lines_written.load(Ordering::Relaxed),
            write_failures: self.write_failures.load(Ordering::Relaxed),
            overflowed: self.overflowed.load(Ordering::Relaxed),
        }
    }
}

fn request_reopen(shared: &Shared, tx: Option<&mpsc::Sender<Msg>>) {
    shared.reopen.store(true, Ordering::Relaxed);
    // A full queue means the writer flushes (and reopens) soon anyway.
    if let Some(tx) = tx {
        let _ = tx.try_send(Msg::Wake);
    }
}

impl Writer {
    /// Waits until every queued record is written and flushed. All `AccessLog`
    /// handles must be dropped first (the writer stops when the queue closes).
    pub async fn close(mut self) {
        if let Some(signals) = self.signals.take() {
            signals.abort();
        }
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(signals) = self.signals.take() {
            signals.abort();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
        let ua = HeaderValue::from_bytes(b"aws-cli/2 \"q\" back\\slash\ttab \xc3\xa9 \xff")
            .expect("valid");
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
            }),
            scope: Some(crate::scope::CredentialScope {
                access_key: "AKIDEXAMPLE".to_owned(),
                date: "20240102".to_owned(),
                region: "us-east-1".to_owned(),
                service: "s3".to_owned(),
            }),
            error: None,
        }
    }

    fn config(destination: LogDestination, format: &str) -> AccessLogConfig {
        AccessLogConfig {
            destination,
            format: format.to_owned(),
            rotate_count: 30,
            rotate_interval: Duration::from_secs(3600),
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
        let (log, _writer) =
            AccessLog::start(&config(LogDestination::Stdout, "aws")).expect("start");
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
                write_failures: 0,
                overflowed: 0
            }
        );
    }

    #[tokio::test]
    async fn a_full_queue_spills_into_the_overflow_list_without_losing_records() {
        let format = Format::compile("%{request_id}x").expect("format");
        let (log, rx) = AccessLog::with_queue(&format, 2);
        for id in 0..10 {
            log.log(with_id(id));
        }
        assert_eq!(log.stats().overflowed, 8);
        let out = Arc::new(Mutex::new(Vec::new()));
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
        let text = String::from_utf8(out.lock().expect("sink").clone()).expect("utf-8");
        let mut ids: Vec<&str> = text.lines().collect();
        ids.sort_by_key(|id| id[1..].parse::<u32>().expect("id"));
        assert_eq!(
            ids,
            ["r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9"]
        );
        assert_eq!(
            shared.stats(),
            Stats {
                lines_written: 10,
                write_failures: 0,
                overflowed: 8
            }
        );
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
        // SAFETY: `start` installed tokio's SIGUSR1 handler above, so the
        // signal is caught, not fatal.
        assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) }, 0);
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
}
