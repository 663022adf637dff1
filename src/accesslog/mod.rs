//! The access log: one line per request, product output (never `tracing`).
//!
//! `AccessLog` is a cheap clonable handle. `log` hands a `Record` to a queue
//! read by one writer thread, which formats records into a batch buffer and
//! writes whole batches: when the queue runs empty, when the batch reaches 64
//! KiB, and at close. The queue is bounded by lines and by the bytes records hold
//! (`queue`): when it is full, `--access-log-when-full block` makes `log`
//! wait for room (nothing is lost) and `drop` drops the line, counted in
//! `Stats::dropped`. Lines are written in the order they were queued. The
//! writer is a thread, not a task, because file writes block.
//!
//! Files: `format` compiles the line format (`%` directives; `preset` the
//! presets, `render` the escaping of values, `time` the times), `put` the
//! byte writers of the hot path, `queue` the queue's bound, `writer` is the writer thread, `rotate` owns the
//! time-rotated files of `LogDestination::Dir`, `zone` the local time zone.
//! With a directory, SIGHUP or SIGUSR1 reopens the file (for an external
//! logrotate). Write failures are counted, warned about at most once a
//! minute, and retried with the next batch; the lines of a failed batch are
//! lost (`Stats::write_failures`) but never torn.

#[cfg(test)]
mod equivalence;
mod field;
pub mod format;
mod held;
mod line_bytes;
mod parse;
mod preset;
mod queue;
mod record;
mod render;
pub mod rotate;
mod time;
mod writer;
pub mod zone;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use http::HeaderName;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::{AccessLogConfig, LogDestination, WhenFull};
use format::{Format, FormatError};
use queue::{QueueLimits, Room};
pub use record::Record;
use rotate::{RotateConfig, RotatingFile};
use writer::{Sink, spawn_writer};
use zone::Zone;

/// The writer takes at most this many records before it looks at the reopen
/// flag and flushes.
const TAKE_RECORDS: usize = 65_536;

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
    /// Lines dropped because the queue was full (`--access-log-when-full drop`).
    pub dropped: u64,
    /// Records that waited for room in the queue (`--access-log-when-full block`).
    pub waited: u64,
    /// Records in the queue now.
    pub queued_lines: u64,
    /// Estimated bytes held by the records in the queue now.
    pub queued_bytes: u64,
}

/// Handle to the access-log writer; clones share one queue.
#[derive(Clone)]
pub struct AccessLog {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` for `LogDestination::None`. Unbounded as a channel: `Room`
    /// bounds what is in it.
    tx: Option<mpsc::UnboundedSender<Msg>>,
    shared: Arc<Shared>,
    request_headers: Box<[HeaderName]>,
    response_headers: Box<[HeaderName]>,
}

/// State the handles and the writer thread both see.
pub(super) struct Shared {
    room: Room,
    lines_written: AtomicU64,
    write_failures: AtomicU64,
    reopen: AtomicBool,
}

impl Shared {
    fn new(limits: QueueLimits) -> Self {
        Shared {
            room: Room::new(limits),
            lines_written: AtomicU64::new(0),
            write_failures: AtomicU64::new(0),
            reopen: AtomicBool::new(false),
        }
    }
}

pub(super) enum Msg {
    /// A record and the room it claimed (`queue::record_bytes`). Boxed: one
    /// allocation costs less than moving the record through the channel's
    /// slots by value (several copies of a few hundred bytes).
    Record(Box<Record>, u64),
    /// Look at the reopen flag.
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
            LogDestination::Writer(out) => Sink::Writer(out.clone()),
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
        let limits = QueueLimits {
            lines: config.queue_lines,
            bytes: config.queue_bytes,
            when_full: config.when_full,
        };
        let (log, rx) = Self::with_queue(&format, limits);
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
            shared: Arc::new(Shared::new(QueueLimits {
                lines: 0,
                bytes: 0,
                when_full: WhenFull::Drop,
            })),
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

    fn with_queue(
        format: &Format,
        limits: QueueLimits,
    ) -> (AccessLog, mpsc::UnboundedReceiver<Msg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Inner {
            tx: Some(tx),
            shared: Arc::new(Shared::new(limits)),
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

    /// Queues one record. When the queue is full it waits for room
    /// (`WhenFull::Block`) or drops the line (`WhenFull::Drop`, counted).
    pub fn log(&self, mut record: Record) {
        let Some(tx) = &self.inner.tx else { return };
        let shared = &self.inner.shared;
        let bytes = held::detach(&mut record, std::mem::size_of::<Msg>());
        if !shared.room.claim(bytes) {
            return;
        }
        if tx.send(Msg::Record(Box::new(record), bytes)).is_err() {
            // The writer thread is gone (it panicked); nothing can write the line.
            shared.room.release(bytes);
            shared.write_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines written, lost, dropped and waiting; records that waited.
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
        let (lines, bytes) = self.room.held();
        Stats {
            lines_written: self.lines_written.load(Ordering::Relaxed),
            write_failures: self.write_failures.load(Ordering::Relaxed),
            dropped: self.room.dropped(),
            waited: self.room.waited(),
            queued_lines: lines as u64,
            queued_bytes: bytes,
        }
    }
}

fn request_reopen(shared: &Shared, tx: Option<&mpsc::UnboundedSender<Msg>>) {
    shared.reopen.store(true, Ordering::Relaxed);
    if let Some(tx) = tx {
        let _ = tx.send(Msg::Wake);
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
pub(crate) mod tests;
