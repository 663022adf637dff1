//! The time zone access-log times and file names are written in: the
//! process's local zone (`TZ`, `/etc/localtime`, read by jiff), or
//! a fixed one for tests. This is the only outside input the formats read.

use std::fmt;
use std::sync::LazyLock;

use chrono::{FixedOffset, Offset};

/// Where local times come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Zone {
    /// The process's local time zone, looked up per second (DST changes apply).
    #[default]
    Local,
    /// A fixed offset east of UTC with its abbreviation (`%Z`), e.g. `(32400, "JST")`.
    Fixed {
        /// Seconds east of UTC.
        offset_secs: i32,
        /// Abbreviation written for `%Z`.
        name: String,
    },
}

impl Zone {
    /// UTC, named `UTC`.
    pub fn utc() -> Self {
        Self::fixed(0, "UTC")
    }

    /// A fixed zone `offset_secs` east of UTC, abbreviated `name`.
    pub fn fixed(offset_secs: i32, name: &str) -> Self {
        Self::Fixed {
            offset_secs,
            name: name.to_owned(),
        }
    }

    /// Seconds east of UTC at `unix_secs`.
    pub fn offset_at(&self, unix_secs: i64) -> i32 {
        match self {
            Self::Local => local(unix_secs).0,
            Self::Fixed { offset_secs, .. } => *offset_secs,
        }
    }

    /// Offset and abbreviation at `unix_secs`, as chrono formats them.
    pub(crate) fn at(&self, unix_secs: i64) -> ZoneName {
        let (offset_secs, name) = match self {
            Self::Local => local(unix_secs),
            Self::Fixed { offset_secs, name } => (*offset_secs, Abbrev::new(name.as_bytes())),
        };
        let offset = FixedOffset::east_opt(offset_secs).unwrap_or_else(|| chrono::Utc.fix());
        ZoneName { offset, name }
    }
}

/// A zone abbreviation, short enough to live inline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Abbrev {
    bytes: [u8; 15],
    len: u8,
}

impl Abbrev {
    fn new(name: &[u8]) -> Self {
        let mut bytes = [0; 15];
        let len = name.len().min(bytes.len());
        bytes[..len].copy_from_slice(&name[..len]);
        Self {
            bytes,
            len: len as u8,
        }
    }
}

/// An offset whose `Display` is the zone abbreviation, so chrono's `%Z` prints
/// `JST` or `UTC` like C's `strftime` (chrono alone prints `+09:00`).
#[derive(Debug, Clone)]
pub(crate) struct ZoneName {
    offset: FixedOffset,
    name: Abbrev,
}

impl ZoneName {
    /// The offset from UTC.
    pub(crate) fn offset(&self) -> FixedOffset {
        self.offset
    }
}

impl Offset for ZoneName {
    fn fix(&self) -> FixedOffset {
        self.offset
    }
}

impl fmt::Display for ZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = &self.name.bytes[..usize::from(self.name.len)];
        match std::str::from_utf8(name) {
            Ok(name) if !name.is_empty() => f.write_str(name),
            // No abbreviation known: the numeric offset, as Go does.
            _ => write!(f, "{}", self.offset),
        }
    }
}

/// The process's zone, read once: `TZ` (IANA name or POSIX rule), else
/// `/etc/localtime`; UTC when neither is usable. Its rules cover every
/// offset change (DST), so reading it once is enough.
static LOCAL: LazyLock<jiff::tz::TimeZone> =
    LazyLock::new(|| jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC));

/// The process's zone at `unix_secs`: seconds east of UTC and the
/// abbreviation.
fn local(unix_secs: i64) -> (i32, Abbrev) {
    let Ok(at) = jiff::Timestamp::from_second(unix_secs) else {
        return (0, Abbrev::new(b"UTC"));
    };
    let info = LOCAL.to_offset_info(at);
    (
        info.offset().seconds(),
        Abbrev::new(info.abbreviation().as_bytes()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_zones_print_their_abbreviation() {
        assert_eq!(Zone::fixed(9 * 3600, "JST").at(0).to_string(), "JST");
        assert_eq!(Zone::fixed(-3 * 3600, "").at(0).to_string(), "-03:00");
        assert_eq!(Zone::utc().offset_at(1_700_000_000), 0);
    }

    /// The zone of the child process `local_zone_is_the_processes` starts.
    const CHILD_TZ: &str = "JST-9";

    /// Runs in a child with `TZ=JST-9` (a POSIX rule: no tz database needed);
    /// elsewhere it has nothing to check.
    #[test]
    fn local_zone_in_child() {
        if std::env::var("TZ").as_deref() != Ok(CHILD_TZ) {
            return;
        }
        let secs = 1_704_164_645;
        let at = Zone::Local.at(secs);
        assert_eq!(Zone::Local.offset_at(secs), 9 * 3600);
        assert_eq!(at.offset().local_minus_utc(), 9 * 3600);
        assert_eq!(at.to_string(), "JST");
        println!("checked {CHILD_TZ}");
    }

    /// `Zone::Local` follows the process's `TZ`: the test binary runs
    /// `local_zone_in_child` again in a child process with `TZ` set.
    #[test]
    fn local_zone_is_the_processes() {
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "accesslog::zone::tests::local_zone_in_child"])
            .args(["--nocapture", "--test-threads=1"])
            .env("TZ", CHILD_TZ)
            .output()
            .expect("the test binary runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("checked JST-9"),
            "the child checked the zone: {stdout}"
        );
    }
}
