//! Time-based access-log files in one directory, as chocon lays them out:
//! `access_log.%Y%m%d%H%M` (`%S` added when the interval is under a minute),
//! named by the local start of their period. Periods are aligned to the
//! local wall clock (a daily file starts at midnight); a new file starts with
//! the first write of a new period; the newest `keep` files are kept and
//! `current` is a relative symlink to the file being written.
//!
//! It heals itself: at most once a second it checks that the open file is
//! still the one at its path (removed directory, file moved by logrotate) and
//! reopens it, recreating the directory. A failed write is cut back to the
//! last whole line, so a line is never torn. Time is passed in by the caller,
//! which keeps this module testable without a clock; the writer thread in
//! `mod.rs` owns the only instance.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::DateTime;

use super::time::unix_secs;
use super::zone::Zone;

const PREFIX: &str = "access_log.";
const CURRENT: &str = "current";

/// Where and how often.
#[derive(Debug, Clone)]
pub struct RotateConfig {
    /// The directory; created (with parents) when missing.
    pub dir: PathBuf,
    /// A new file this often; whole seconds, at least one.
    pub interval: Duration,
    /// Files kept, the one being written included; 0 keeps all.
    pub keep: usize,
    /// Zone of the file names and period boundaries.
    pub zone: Zone,
}

/// A write that did not (entirely) reach the file.
#[derive(Debug, thiserror::Error)]
#[error("writing access-log file {}", path.display())]
pub struct WriteError {
    /// The file (or, when it could not be opened, the one it would have been).
    pub path: PathBuf,
    /// Leading bytes of the batch that were written: whole lines only.
    pub kept: usize,
    /// What failed.
    #[source]
    pub source: io::Error,
}

/// The file being written and its rotation state.
#[derive(Debug)]
pub struct RotatingFile {
    config: RotateConfig,
    interval_secs: i64,
    open: Option<OpenFile>,
    /// Unix second of the next "is it still there?" check.
    next_check: i64,
    /// Unix second before which a failed open is not retried.
    next_open: i64,
}

#[derive(Debug)]
struct OpenFile {
    file: File,
    name: String,
    period: i64,
    dev: u64,
    ino: u64,
}

impl RotatingFile {
    /// Creates the directory and opens the file for `now`, so that a
    /// directory that cannot be written fails at startup.
    pub fn open(config: RotateConfig, now: SystemTime) -> io::Result<Self> {
        let interval_secs = i64::try_from(config.interval.as_secs())
            .unwrap_or(i64::MAX)
            .max(1);
        let mut this = Self {
            config,
            interval_secs,
            open: None,
            next_check: 0,
            next_open: 0,
        };
        let secs = unix_secs(now);
        this.open = Some(this.open_period(this.period(secs))?);
        this.next_check = secs + 1;
        Ok(this)
    }

    /// Path of the file being written, if one is open.
    pub fn path(&self) -> Option<PathBuf> {
        self.open.as_ref().map(|o| self.config.dir.join(&o.name))
    }

    /// Closes the file and opens its path again (after an external rotation).
    pub fn reopen(&mut self, now: SystemTime) -> io::Result<()> {
        self.open = None;
        let secs = unix_secs(now);
        self.open = Some(self.open_period(self.period(secs))?);
        Ok(())
    }

    /// Appends `batch` (whole lines) to the file for `now`, rotating first when
    /// a new period has begun.
    pub fn write(&mut self, now: SystemTime, batch: &[u8]) -> Result<(), WriteError> {
        let secs = unix_secs(now);
        let period = self.period(secs);
        if secs >= self.next_check {
            self.next_check = secs + 1;
            if self.open.as_ref().is_some_and(|o| !self.still_linked(o)) {
                self.open = None;
            }
        }
        if self.open.as_ref().is_none_or(|o| o.period != period) {
            let name = self.name(period);
            if self.open.is_none() && secs < self.next_open {
                let source =
                    io::Error::other("not retrying the open within a second of a failed one");
                return Err(WriteError {
                    path: self.config.dir.join(name),
                    kept: 0,
                    source,
                });
            }
            self.open = None;
            match self.open_period(period) {
                Ok(open) => self.open = Some(open),
                Err(source) => {
                    self.next_open = secs + 1;
                    return Err(WriteError {
                        path: self.config.dir.join(name),
                        kept: 0,
                        source,
                    });
                }
            }
        }
        let open = self.open.as_mut().expect("opened above");
        if let Err((kept, source)) = write_lines(&mut open.file, batch) {
            let path = self.config.dir.join(&open.name);
            // Reopen on the next write: the descriptor may be the problem.
            self.open = None;
            return Err(WriteError { path, kept, source });
        }
        Ok(())
    }

    /// The period `secs` falls in, counted in local wall-clock intervals.
    fn period(&self, secs: i64) -> i64 {
        let local = secs.saturating_add(self.config.zone.offset_at(secs).into());
        local.div_euclid(self.interval_secs)
    }

    fn name(&self, period: i64) -> String {
        let start = period.saturating_mul(self.interval_secs);
        let start = DateTime::from_timestamp(start, 0)
            .unwrap_or_default()
            .naive_utc();
        let pattern = if self.interval_secs < 60 {
            "%Y%m%d%H%M%S"
        } else {
            "%Y%m%d%H%M"
        };
        format!("{PREFIX}{}", start.format(pattern))
    }

    fn still_linked(&self, open: &OpenFile) -> bool {
        fs::metadata(self.config.dir.join(&open.name))
            .is_ok_and(|m| m.dev() == open.dev && m.ino() == open.ino)
    }

    fn open_period(&self, period: i64) -> io::Result<OpenFile> {
        let dir = &self.config.dir;
        let name = self.name(period);
        fs::create_dir_all(dir)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(&name))?;
        let meta = file.metadata()?;
        if let Err(err) = point_current(dir, &name) {
            tracing::warn!(error = &err as &dyn std::error::Error, dir = %dir.display(), "access log: cannot update the current symlink");
        }
        if let Err(err) = prune(dir, self.config.keep, &name) {
            tracing::warn!(error = &err as &dyn std::error::Error, dir = %dir.display(), "access log: cannot remove old files");
        }
        Ok(OpenFile {
            file,
            name,
            period,
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// Writes `batch`; on failure cuts the file back to the last whole line it
/// got and says how many bytes of `batch` stayed.
fn write_lines(file: &mut File, batch: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut written = 0;
    let err = loop {
        if written == batch.len() {
            return Ok(());
        }
        match file.write(&batch[written..]) {
            Ok(0) => break io::Error::from(io::ErrorKind::WriteZero),
            Ok(n) => written += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => break err,
        }
    };
    let kept = batch[..written]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    if written > kept {
        // O_APPEND and one writer: the partial line is the file's tail.
        if let Ok(meta) = file.metadata() {
            let _ = file.set_len(meta.len().saturating_sub((written - kept) as u64));
        }
    }
    Err((kept, err))
}

/// Points `current` at `name`, atomically (a new link renamed over the old).
fn point_current(dir: &Path, name: &str) -> io::Result<()> {
    let tmp = dir.join(".current.tmp");
    match fs::remove_file(&tmp) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    std::os::unix::fs::symlink(name, &tmp)?;
    fs::rename(&tmp, dir.join(CURRENT))
}

/// Removes the oldest access-log files beyond `keep`, never `current_name`.
fn prune(dir: &Path, keep: usize, current_name: &str) -> io::Result<()> {
    if keep == 0 {
        return Ok(());
    }
    let mut logs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(start) = start_of(name) {
            logs.push((start, name.to_owned()));
        }
    }
    logs.sort();
    let excess = logs.len().saturating_sub(keep);
    for (_, name) in logs.into_iter().take(excess) {
        if name != current_name {
            fs::remove_file(dir.join(name))?;
        }
    }
    Ok(())
}

/// `access_log.YYYYmmddHHMM[SS]` → its start as `YYYYmmddHHMMSS`, so both
/// spellings sort together.
fn start_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    match digits.len() {
        12 => Some(n * 100),
        14 => Some(n),
        _ => None,
    }
}
