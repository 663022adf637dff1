//! The writer thread: takes records off the queue (and the overflow list),
//! formats them into one batch buffer and writes the batch when the queue
//! runs empty, when it reaches 64 KiB and at close. Counts what it writes and
//! what it loses, and warns about failures at most once a minute.

use std::io::{self, Write as _};
#[cfg(test)]
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};

use super::format::Format;
use super::rotate::RotatingFile;
use super::time::unix_secs;
use super::{AccessLogError, Msg, QUEUE_RECORDS, Record, Shared};

/// A batch is written once it holds this much.
const BATCH_BYTES: usize = 64 << 10;
/// Write failures are reported at most this often.
const WARN_EVERY_SECS: i64 = 60;

/// Where batches go.
pub(super) enum Sink {
    Stdout,
    Stderr,
    Dir(RotatingFile),
    #[cfg(test)]
    Memory(Arc<Mutex<Vec<u8>>>),
}

impl Sink {
    /// Writes a batch; on failure says how many leading bytes made it.
    fn write(&mut self, now: SystemTime, batch: &[u8]) -> Result<(), (usize, io::Error)> {
        match self {
            // The std lock keeps `tracing` output (also on stderr) out of our lines.
            Self::Stderr => io::stderr().lock().write_all(batch).map_err(|err| (0, err)),
            Self::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(batch)
                    .and_then(|()| out.flush())
                    .map_err(|err| (0, err))
            }
            Self::Dir(file) => file
                .write(now, batch)
                .map_err(|err| (err.kept, io::Error::other(err))),
            #[cfg(test)]
            Self::Memory(out) => {
                out.lock().expect("test sink").extend_from_slice(batch);
                Ok(())
            }
        }
    }

    fn reopen(&mut self, now: SystemTime) {
        if let Self::Dir(file) = self
            && let Err(err) = file.reopen(now)
        {
            tracing::warn!(
                error = &err as &dyn std::error::Error,
                "access log: reopening the file failed; retrying with the next line"
            );
        }
    }
}

/// Starts the writer thread; the receiver resolves when it has flushed the last line.
pub(super) fn spawn_writer(
    rx: mpsc::Receiver<Msg>,
    shared: Arc<Shared>,
    format: Format,
    sink: Sink,
) -> Result<oneshot::Receiver<()>, AccessLogError> {
    let (done_tx, done_rx) = oneshot::channel();
    let worker = Worker {
        shared,
        format,
        sink,
        batch: Vec::with_capacity(BATCH_BYTES),
        lines: 0,
        warn: Warn::default(),
    };
    std::thread::Builder::new()
        .name("accesslog".to_owned())
        .spawn(move || {
            worker.run(rx);
            let _ = done_tx.send(());
        })
        .map_err(AccessLogError::Spawn)?;
    Ok(done_rx)
}

/// The writer thread's state.
struct Worker {
    shared: Arc<Shared>,
    format: Format,
    sink: Sink,
    batch: Vec<u8>,
    /// Lines in `batch`.
    lines: u64,
    warn: Warn,
}

impl Worker {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        while let Some(msg) = rx.blocking_recv() {
            self.take(msg);
            // Drain what is queued now, but not forever: the overflow list
            // must get its turn under sustained load.
            for _ in 0..QUEUE_RECORDS {
                match rx.try_recv() {
                    Ok(msg) => self.take(msg),
                    Err(_) => break,
                }
            }
            self.drain_overflow();
            self.flush();
        }
        self.drain_overflow();
        self.flush();
    }

    fn take(&mut self, msg: Msg) {
        if let Msg::Record(record) = msg {
            self.add(&record);
        }
    }

    fn add(&mut self, record: &Record) {
        self.format.write(record, &mut self.batch);
        self.lines += 1;
        if self.batch.len() >= BATCH_BYTES {
            self.flush();
        }
    }

    fn drain_overflow(&mut self) {
        let records = std::mem::take(
            &mut *self
                .shared
                .overflow
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for record in &records {
            self.add(record);
        }
    }

    fn flush(&mut self) {
        let now = SystemTime::now();
        if self.shared.reopen.swap(false, Ordering::Relaxed) {
            self.sink.reopen(now);
        }
        if self.batch.is_empty() {
            return;
        }
        match self.sink.write(now, &self.batch) {
            Ok(()) => {
                self.shared
                    .lines_written
                    .fetch_add(self.lines, Ordering::Relaxed);
                self.warn.resumed();
            }
            Err((kept, err)) => {
                let written = self.batch[..kept].iter().filter(|&&b| b == b'\n').count() as u64;
                let lost = self.lines - written;
                self.shared
                    .lines_written
                    .fetch_add(written, Ordering::Relaxed);
                self.shared
                    .write_failures
                    .fetch_add(lost, Ordering::Relaxed);
                self.warn.failed(unix_secs(now), &err, lost);
            }
        }
        self.batch.clear();
        self.lines = 0;
        // One huge line must not pin its buffer forever.
        if self.batch.capacity() > 4 * BATCH_BYTES {
            self.batch = Vec::with_capacity(BATCH_BYTES);
        }
    }
}

/// Rate limit for write-failure warnings.
#[derive(Debug, Default)]
struct Warn {
    failing: bool,
    next_secs: i64,
    /// Lines lost since the last warning.
    lost: u64,
}

impl Warn {
    fn failed(&mut self, now_secs: i64, err: &io::Error, lost: u64) {
        self.lost += lost;
        if !self.failing || now_secs >= self.next_secs {
            tracing::warn!(
                error = err as &dyn std::error::Error,
                lines_lost = self.lost,
                "access log write failed"
            );
            self.lost = 0;
            self.next_secs = now_secs + WARN_EVERY_SECS;
        }
        self.failing = true;
    }

    fn resumed(&mut self) {
        if self.failing {
            tracing::info!(lines_lost = self.lost, "access log writes resumed");
            *self = Self::default();
        }
    }
}
