//! The writer thread: takes records off the queue (giving back their room),
//! formats them into one batch buffer and writes the batch when the queue
//! runs empty, when it reaches 64 KiB and at close. Counts what it writes and
//! what it loses, and warns about failures at most once a minute.

use std::io::{self, Write as _};
use std::sync::Arc;
#[cfg(test)]
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};

use super::format::Format;
use super::rotate::RotatingFile;
use super::time::unix_secs;
use super::{AccessLogError, Msg, Record, Shared, TAKE_RECORDS};
use crate::config::LogWriter;

/// A batch is written once it holds this much.
const BATCH_BYTES: usize = 64 << 10;
/// Write failures are reported at most this often.
const WARN_EVERY_SECS: i64 = 60;

/// Where batches go.
pub(super) enum Sink {
    Stdout,
    Stderr,
    Dir(RotatingFile),
    /// An embedder's writer (`LogDestination::Writer`).
    Writer(LogWriter),
    /// Tests: a buffer with room for `room` bytes (whole lines), then a full disk.
    #[cfg(test)]
    Memory {
        out: Arc<Mutex<Vec<u8>>>,
        room: usize,
    },
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
            Self::Writer(out) => out.write_batch(batch).map_err(|err| (0, err)),
            Self::Dir(file) => file
                .write(now, batch)
                .map_err(|err| (err.kept, io::Error::other(err))),
            #[cfg(test)]
            Self::Memory { out, room } => {
                let fit = if batch.len() <= *room {
                    batch.len()
                } else {
                    batch[..*room]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |i| i + 1)
                };
                out.lock()
                    .expect("test sink")
                    .extend_from_slice(&batch[..fit]);
                *room -= fit;
                if fit == batch.len() {
                    Ok(())
                } else {
                    Err((fit, io::Error::from_raw_os_error(libc::ENOSPC)))
                }
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
    rx: mpsc::UnboundedReceiver<Msg>,
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
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        while let Some(msg) = rx.blocking_recv() {
            self.take(msg);
            // Drain what is queued now, but not forever: a reopen request
            // must get its turn under sustained load.
            for _ in 0..TAKE_RECORDS {
                match rx.try_recv() {
                    Ok(msg) => self.take(msg),
                    Err(_) => break,
                }
            }
            self.flush();
        }
        self.flush();
    }

    fn take(&mut self, msg: Msg) {
        if let Msg::Record(record, bytes) = msg {
            self.add(&record);
            drop(record);
            self.shared.room.release(bytes);
        }
    }

    fn add(&mut self, record: &Record) {
        self.format.write(record, &mut self.batch);
        self.lines += 1;
        if self.batch.len() >= BATCH_BYTES {
            self.flush();
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
                // Newlines, not records: a format with `\n` in it writes two per record.
                let newlines = self.batch[..kept].iter().filter(|&&b| b == b'\n').count();
                let written = (newlines as u64).min(self.lines);
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
    /// Counts `lost` lines; warns (and says so) at the first failure and then
    /// once a minute.
    fn failed(&mut self, now_secs: i64, err: &io::Error, lost: u64) -> bool {
        self.lost += lost;
        let warn = !self.failing || now_secs >= self.next_secs;
        if warn {
            tracing::warn!(
                error = err as &dyn std::error::Error,
                lines_lost = self.lost,
                "access log write failed"
            );
            self.lost = 0;
            self.next_secs = now_secs + WARN_EVERY_SECS;
        }
        self.failing = true;
        warn
    }

    fn resumed(&mut self) {
        if self.failing {
            tracing::info!(lines_lost = self.lost, "access log writes resumed");
            *self = Self::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accesslog::tests::sample_record;
    use crate::accesslog::{AccessLog, Stats};

    #[test]
    fn failures_warn_at_once_then_once_a_minute() {
        let mut warn = Warn::default();
        let err = io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(warn.failed(100, &err, 3));
        assert!(!warn.failed(101, &err, 2));
        assert!(!warn.failed(159, &err, 2));
        assert_eq!(warn.lost, 4, "lines lost since the last warning");
        assert!(warn.failed(160, &err, 1));
        assert_eq!(warn.lost, 0);
        warn.resumed();
        assert!(warn.failed(161, &err, 1), "a new episode warns at once");
    }

    #[tokio::test]
    async fn a_full_disk_counts_the_lines_it_lost() {
        let format = Format::compile("%{request_id}x").expect("format");
        let limits = crate::accesslog::tests::limits(16, crate::config::WhenFull::Block);
        let (log, rx) = AccessLog::with_queue(&format, limits);
        for id in 0..10 {
            log.log(Record {
                request_id: format!("r{id}"),
                ..sample_record()
            });
        }
        let shared = log.inner.shared.clone();
        let out = Arc::new(Mutex::new(Vec::new()));
        // Everything is queued before the writer starts: one batch of 30
        // bytes, of which three lines fit.
        let sink = Sink::Memory {
            out: out.clone(),
            room: 10,
        };
        let done = spawn_writer(rx, shared.clone(), format, sink).expect("spawn");
        drop(log);
        done.await.expect("writer finished");
        assert_eq!(*out.lock().expect("sink"), b"r0\nr1\nr2\n");
        assert_eq!(
            shared.stats(),
            Stats {
                lines_written: 3,
                write_failures: 7,
                ..Stats::default()
            }
        );
    }
}
