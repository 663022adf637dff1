//! The time zone access-log times and file names are written in: the
//! process's local zone (as `localtime_r` sees it: `TZ`, `/etc/localtime`), or
//! a fixed one for tests. This is the only outside input the formats read.

use std::fmt;

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
        let offset = FixedOffset::east_opt(offset_secs)
            .unwrap_or(FixedOffset::east_opt(0).expect("zero is a valid offset"));
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

/// `localtime_r` at `unix_secs`: seconds east of UTC and the abbreviation.
fn local(unix_secs: i64) -> (i32, Abbrev) {
    let t = unix_secs as libc::time_t;
    let mut tm = std::mem::MaybeUninit::<libc::tm>::zeroed();
    // SAFETY: `localtime_r` reads `t` and writes only into `tm`, both live for
    // the call; it is the thread-safe variant.
    let filled = unsafe { !libc::localtime_r(&t, tm.as_mut_ptr()).is_null() };
    if !filled {
        return (0, Abbrev::new(b"UTC"));
    }
    // SAFETY: `localtime_r` succeeded, so `tm` is initialised (it was zeroed
    // before, so every field is valid either way).
    let tm = unsafe { tm.assume_init() };
    let name = if tm.tm_zone.is_null() {
        Abbrev::new(b"")
    } else {
        // SAFETY: a non-null `tm_zone` points at a NUL-terminated string in
        // libc's static time-zone storage, valid until the next tzset; it is
        // copied out at once.
        Abbrev::new(unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) }.to_bytes())
    };
    (tm.tm_gmtoff as i32, name)
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

    #[test]
    fn local_zone_agrees_with_chrono() {
        use chrono::TimeZone;
        let secs = 1_704_164_645;
        let chrono = chrono::Local
            .timestamp_opt(secs, 0)
            .single()
            .expect("a plain instant");
        assert_eq!(
            Zone::Local.offset_at(secs),
            chrono.offset().local_minus_utc()
        );
    }
}
