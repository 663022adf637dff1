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
use std::io::{self, Write};
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
        #[allow(
            clippy::expect_used,
            reason = "the branch above opens the file or returns"
        )]
        let open = self.open.as_mut().expect("opened above");
        if let Err(partial) = write_lines(&mut open.file, batch) {
            cut_torn_line(&open.file, &partial);
            let path = self.config.dir.join(&open.name);
            // Reopen (in a second, not per batch) in case the descriptor is the problem.
            self.open = None;
            self.next_open = secs + 1;
            return Err(WriteError {
                path,
                kept: partial.kept,
                source: partial.err,
            });
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

/// A batch that stopped part way.
#[derive(Debug)]
struct Partial {
    /// Bytes of the batch that reached the file.
    written: usize,
    /// Of those, the bytes up to the last newline.
    kept: usize,
    err: io::Error,
}

/// Writes `batch`, retrying short writes; on failure says how far it got.
fn write_lines(out: &mut impl Write, batch: &[u8]) -> Result<(), Partial> {
    let mut written = 0;
    let err = loop {
        if written == batch.len() {
            return Ok(());
        }
        match out.write(&batch[written..]) {
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
    Err(Partial { written, kept, err })
}

/// Cuts a torn line off the end of `file` (O_APPEND and one writer: the
/// partial line is the file's tail).
fn cut_torn_line(file: &File, partial: &Partial) {
    let torn = (partial.written - partial.kept) as u64;
    if torn > 0
        && let Ok(meta) = file.metadata()
    {
        let _ = file.set_len(meta.len().saturating_sub(torn));
    }
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

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    /// 2024-01-02T03:04:05Z.
    const T0: u64 = 1_704_164_645;

    fn at(secs: u64, millis: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, millis * 1_000_000)
    }

    fn config(dir: &Path, interval_secs: u64, keep: usize, zone: Zone) -> RotateConfig {
        RotateConfig {
            dir: dir.to_owned(),
            interval: Duration::from_secs(interval_secs),
            keep,
            zone,
        }
    }

    /// The access-log files in `dir`, oldest first.
    fn logs(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("UTF-8"))
            .filter(|n| n.starts_with(PREFIX))
            .collect();
        names.sort();
        names
    }

    fn current(dir: &Path) -> String {
        fs::read_link(dir.join(CURRENT))
            .expect("current")
            .into_os_string()
            .into_string()
            .expect("UTF-8")
    }

    fn read(dir: &Path, name: &str) -> String {
        fs::read_to_string(dir.join(name)).expect(name)
    }

    #[test]
    fn one_second_files_are_named_by_their_start() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let mut file =
            RotatingFile::open(config(dir, 1, 0, Zone::utc()), at(T0, 200)).expect("open");
        for (now, line) in [
            (at(T0, 200), "a\n"),
            (at(T0, 900), "b\n"),
            (at(T0 + 1, 0), "c\n"),
            (at(T0 + 3, 500), "d\n"),
        ] {
            file.write(now, line.as_bytes()).expect("write");
        }
        let names = [
            "access_log.20240102030405",
            "access_log.20240102030406",
            "access_log.20240102030408",
        ];
        assert_eq!(logs(dir), names);
        assert_eq!(
            [
                read(dir, names[0]),
                read(dir, names[1]),
                read(dir, names[2])
            ],
            ["a\nb\n", "c\n", "d\n"]
        );
        assert_eq!(
            current(dir),
            names[2],
            "relative, so the directory can move"
        );
        assert_eq!(file.path(), Some(dir.join(names[2])));
    }

    #[test]
    fn periods_align_to_the_local_wall_clock() {
        let cases = [
            (300, Zone::utc(), "access_log.202401020300"),
            (
                3600,
                Zone::fixed(5 * 3600 + 1800, "IST"),
                "access_log.202401020800",
            ),
            // Daily files start at local midnight, as chocon's do.
            (
                86_400,
                Zone::fixed(9 * 3600, "JST"),
                "access_log.202401020000",
            ),
            (
                86_400,
                Zone::fixed(-8 * 3600, "PST"),
                "access_log.202401010000",
            ),
            (30, Zone::utc(), "access_log.20240102030400"),
        ];
        for (interval, zone, want) in cases {
            let tmp = tempfile::tempdir().expect("tempdir");
            RotatingFile::open(config(tmp.path(), interval, 0, zone), at(T0, 0)).expect("open");
            assert_eq!(logs(tmp.path()), [want], "interval {interval}");
        }
    }

    #[test]
    fn keeps_the_newest_files_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        for other in ["notes.txt", "access_log.bak", "access_log.2024"] {
            fs::write(dir.join(other), b"").expect("other file");
        }
        // A minute-named file from an earlier run sorts with the second-named ones.
        fs::write(dir.join("access_log.202401020304"), b"old\n").expect("old file");
        let mut file = RotatingFile::open(config(dir, 1, 3, Zone::utc()), at(T0, 0)).expect("open");
        for s in 0..6 {
            file.write(at(T0 + s, 0), b"x\n").expect("write");
        }
        assert_eq!(
            logs(dir),
            [
                "access_log.2024",
                "access_log.20240102030408",
                "access_log.20240102030409",
                "access_log.20240102030410",
                "access_log.bak",
            ]
        );
        assert!(dir.join("notes.txt").exists());
        assert_eq!(current(dir), "access_log.20240102030410");
    }

    #[test]
    fn keep_zero_keeps_every_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut file =
            RotatingFile::open(config(tmp.path(), 1, 0, Zone::utc()), at(T0, 0)).expect("open");
        for s in 0..5 {
            file.write(at(T0 + s, 0), b"x\n").expect("write");
        }
        assert_eq!(logs(tmp.path()).len(), 5);
    }

    #[test]
    fn resumes_after_the_directory_is_removed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("logs");
        let mut file =
            RotatingFile::open(config(&dir, 60, 0, Zone::utc()), at(T0, 0)).expect("open");
        file.write(at(T0, 0), b"a\n").expect("write");
        fs::remove_dir_all(&dir).expect("rm -rf");
        file.write(at(T0 + 1, 0), b"b\n")
            .expect("write after the check");
        assert_eq!(read(&dir, "access_log.202401020304"), "b\n");
        assert_eq!(current(&dir), "access_log.202401020304");
    }

    #[test]
    fn failures_are_returned_and_retried_once_a_second() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("logs");
        let mut file =
            RotatingFile::open(config(&dir, 60, 0, Zone::utc()), at(T0, 0)).expect("open");
        fs::remove_dir_all(&dir).expect("rm -rf");
        fs::write(&dir, b"a file where the directory was").expect("squat");
        let err = file
            .write(at(T0 + 1, 0), b"lost\n")
            .expect_err("cannot recreate");
        assert_eq!(
            (err.kept, err.path.clone()),
            (0, dir.join("access_log.202401020304"))
        );
        let err = file
            .write(at(T0 + 1, 500), b"lost\n")
            .expect_err("not retried yet");
        assert!(err.source.to_string().contains("not retrying"), "{err:?}");
        fs::remove_file(&dir).expect("unsquat");
        file.write(at(T0 + 2, 0), b"back\n").expect("resumed");
        assert_eq!(read(&dir, "access_log.202401020304"), "back\n");
    }

    #[test]
    fn reopen_follows_an_external_rename() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let mut file =
            RotatingFile::open(config(dir, 60, 0, Zone::utc()), at(T0, 0)).expect("open");
        file.write(at(T0, 0), b"a\n").expect("write");
        fs::rename(dir.join("access_log.202401020304"), dir.join("rotated.1")).expect("mv");
        file.reopen(at(T0, 100)).expect("reopen");
        file.write(at(T0, 200), b"b\n").expect("write");
        assert_eq!(read(dir, "rotated.1"), "a\n");
        assert_eq!(read(dir, "access_log.202401020304"), "b\n");
    }

    #[test]
    fn open_fails_when_the_directory_cannot_be_created() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::write(tmp.path().join("file"), b"").expect("file");
        let dir = tmp.path().join("file").join("logs");
        assert!(RotatingFile::open(config(&dir, 60, 0, Zone::utc()), at(T0, 0)).is_err());
    }

    /// A disk that fills up after `room` bytes, taking at most 4 per write.
    struct Filling {
        room: usize,
        got: Vec<u8>,
    }

    impl Write for Filling {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(self.room).min(4);
            self.room -= n;
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_that_stops_part_way_keeps_only_whole_lines() {
        let mut disk = Filling {
            room: 10,
            got: Vec::new(),
        };
        let partial = write_lines(&mut disk, b"one\ntwo\nthree\n").expect_err("disk full");
        assert_eq!((partial.written, partial.kept), (10, 8));
        assert_eq!(partial.err.raw_os_error(), Some(libc::ENOSPC));
        let mut disk = Filling {
            room: 100,
            got: Vec::new(),
        };
        write_lines(&mut disk, b"one\ntwo\nthree\n").expect("short writes are retried");
        assert_eq!(disk.got, b"one\ntwo\nthree\n");

        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("log");
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open");
        file.write_all(b"x\none\ntwo\nth").expect("write");
        cut_torn_line(&file, &partial);
        assert_eq!(fs::read(&path).expect("read"), b"x\none\ntwo\n");
    }
}
