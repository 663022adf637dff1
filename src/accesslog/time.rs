//! Times in access-log lines: Apache's `%t` and `%{…}t` (strftime, `sec`,
//! `msec_frac`…, `begin:`/`end:`), chocon's and RFC 3339. A rendered text is
//! kept for the second it belongs to, so a busy writer formats each second
//! once.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::DateTime;
use chrono::format::{DelayedFormat, Fixed, Item, Numeric, StrftimeItems};

use super::Record;
use super::render::{Text, Value, is_plain};
use super::zone::Zone;

/// `%t` and friends; text is cached for the second it was rendered for.
pub(super) struct TimeSpec {
    end: bool,
    kind: TimeKind,
    cached_sec: Option<i64>,
    /// Length of the per-second prefix of `text` (RFC 3339 appends millis to it).
    prefix: usize,
    /// `text` needs no escaping (checked when it is rendered, not per line).
    plain: bool,
    text: String,
}

/// What of the time is written.
pub(super) enum TimeKind {
    /// strftime; `per_second` when no item shows fractions (so it can be cached).
    Strftime {
        items: Vec<Item<'static>>,
        per_second: bool,
    },
    /// `2024-01-02T03:04:05.678Z`.
    Rfc3339Millis,
    Sec,
    Msec,
    Usec,
    MsecFrac,
    UsecFrac,
}

impl TimeSpec {
    /// A time of the request's start, or (`end`) of its last byte.
    pub(super) fn new(end: bool, kind: TimeKind) -> Self {
        Self {
            end,
            kind,
            cached_sec: None,
            prefix: 0,
            plain: false,
            text: String::new(),
        }
    }

    /// A strftime pattern; `None` if chrono rejects it.
    pub(super) fn strftime(end: bool, pattern: &str) -> Option<Self> {
        let items = StrftimeItems::new(pattern).parse_to_owned().ok()?;
        let per_second = !items.iter().any(|item| {
            matches!(
                item,
                Item::Numeric(Numeric::Nanosecond, _)
                    | Item::Fixed(
                        Fixed::Nanosecond
                            | Fixed::Nanosecond3
                            | Fixed::Nanosecond6
                            | Fixed::Nanosecond9
                            | Fixed::Internal(_)
                    )
            )
        });
        Some(Self::new(end, TimeKind::Strftime { items, per_second }))
    }

    /// The time of `r` in `zone`.
    pub(super) fn value(&mut self, r: &Record, zone: &Zone) -> Value<'_> {
        let at = if self.end {
            r.received + r.duration
        } else {
            r.received
        };
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let (secs, nanos) = (since.as_secs() as i64, since.subsec_nanos());
        let micros = u64::from(nanos / 1000);
        let Self {
            kind,
            cached_sec,
            prefix,
            plain,
            text,
            ..
        } = self;
        match kind {
            TimeKind::Sec => return Value::Uint(since.as_secs()),
            TimeKind::Msec => return Value::Uint(since.as_millis().try_into().unwrap_or(u64::MAX)),
            TimeKind::Usec => return Value::Uint(since.as_micros().try_into().unwrap_or(u64::MAX)),
            TimeKind::MsecFrac => {
                text.clear();
                let _ = write!(text, "{:03}", micros / 1000);
                *plain = true;
            }
            TimeKind::UsecFrac => {
                text.clear();
                let _ = write!(text, "{micros:06}");
                *plain = true;
            }
            TimeKind::Strftime { items, per_second } => {
                if !(*per_second && *cached_sec == Some(secs)) {
                    text.clear();
                    let name = zone.at(secs);
                    let local = local_naive(secs, nanos, name.offset().local_minus_utc());
                    let shown = DelayedFormat::new_with_offset(
                        Some(local.date()),
                        Some(local.time()),
                        &name,
                        items.iter(),
                    );
                    let _ = write!(text, "{shown}");
                    *plain = is_plain(text.as_bytes());
                    *cached_sec = Some(secs);
                }
            }
            TimeKind::Rfc3339Millis => {
                if *cached_sec != Some(secs) {
                    text.clear();
                    let _ = write!(
                        text,
                        "{}",
                        local_naive(secs, 0, 0).format("%Y-%m-%dT%H:%M:%S")
                    );
                    *prefix = text.len();
                    *plain = is_plain(text.as_bytes());
                    *cached_sec = Some(secs);
                }
                text.truncate(*prefix);
                let _ = write!(text, ".{:03}Z", micros / 1000);
            }
        }
        if *plain {
            Value::Text(Text::Plain(text.as_bytes()))
        } else {
            Value::Text(Text::Bytes(text.as_bytes()))
        }
    }
}

fn local_naive(secs: i64, nanos: u32, offset_secs: i32) -> chrono::NaiveDateTime {
    DateTime::from_timestamp(secs.saturating_add(offset_secs.into()), nanos)
        .unwrap_or_default()
        .naive_utc()
}

/// Unix seconds of `t` (0 before 1970).
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use crate::accesslog::format::Format;
    use crate::accesslog::tests::{RECEIVED_SECS, sample_record};
    use crate::accesslog::zone::Zone;

    fn render(format: &mut Format, secs: u64, nanos: u32) -> String {
        let record = crate::accesslog::Record {
            received: UNIX_EPOCH + Duration::new(secs, nanos),
            ..sample_record()
        };
        let mut out = Vec::new();
        format.write(&record, &mut out);
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn cached_text_follows_the_second() {
        let mut format = Format::compile("%t %{%H:%M:%S}t")
            .expect("format")
            .with_zone(Zone::utc());
        let s = RECEIVED_SECS;
        let first = render(&mut format, s, 100_000_000);
        assert_eq!(first, "[02/Jan/2024:03:04:05 +0000] 03:04:05\n");
        assert_eq!(render(&mut format, s, 999_999_999), first);
        assert_eq!(
            render(&mut format, s + 1, 0),
            "[02/Jan/2024:03:04:06 +0000] 03:04:06\n"
        );
        // Records finish out of order; an older second is rendered again, not reused.
        assert_eq!(render(&mut format, s, 0), first);
    }

    #[test]
    fn sub_second_patterns_are_not_cached() {
        let mut format = Format::compile("%{%S%.3f}t %{msec_frac}t")
            .expect("format")
            .with_zone(Zone::utc());
        assert_eq!(
            render(&mut format, RECEIVED_SECS, 100_000_000),
            "05.100 100\n"
        );
        assert_eq!(
            render(&mut format, RECEIVED_SECS, 900_000_000),
            "05.900 900\n"
        );
    }

    #[test]
    fn rfc3339_keeps_millis_per_record() {
        let mut format = Format::compile("json")
            .expect("preset")
            .with_zone(Zone::fixed(3600, "CET"));
        let time = |line: String| line[9..33].to_owned();
        assert_eq!(
            time(render(&mut format, RECEIVED_SECS, 5_000_000)),
            "2024-01-02T03:04:05.005Z"
        );
        assert_eq!(
            time(render(&mut format, RECEIVED_SECS, 999_000_000)),
            "2024-01-02T03:04:05.999Z"
        );
    }
}
