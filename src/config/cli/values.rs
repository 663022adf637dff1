//! Parsers of flag values: one function per kind of value, each refusing a
//! bad value with a sentence that shows the accepted forms.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::Rate;
use crate::config::{ClientKey, PortRange, ResolveOverride, WhenFull};

/// `30` (seconds, as chocon) or a human duration (`500ms`, `2s`, `1h`).
pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}); use e.g. 30, 30s, 500ms, 1h"))
}

/// `N`, `N/s` (per second), `N/m` (per minute) or `N/h` (per hour).
pub(super) fn parse_rate(s: &str) -> Result<Rate, String> {
    let bad = || format!("{s:?}: want N, N/s or N/m (requests per second or per minute)");
    let (count, unit) = s.split_once('/').unwrap_or((s, "s"));
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        _ => return Err(bad()),
    };
    Ok(Rate {
        count,
        per: Duration::from_secs(secs),
    })
}

/// `HOST:PORT:ADDR[,ADDR…]`, each ADDR an IP (`127.0.0.1`, `[::1]`) or an
/// IP with a port (`127.0.0.1:8443`, `[::1]:8443`).
pub(super) fn parse_resolve(s: &str) -> Result<ResolveOverride, String> {
    let bad = || format!("{s:?}: want HOST:PORT:ADDR[,ADDR…] (ADDR may be IP:PORT)");
    let (host, rest) = s.split_once(':').ok_or_else(bad)?;
    let (port, addrs) = rest.split_once(':').ok_or_else(bad)?;
    let host = crate::origin::validate_host(host).map_err(|_| bad())?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let addrs = addrs
        .split(',')
        .map(|a| {
            if let Ok(ip) = a
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
            {
                return Ok(SocketAddr::new(ip, 0));
            }
            a.parse::<SocketAddr>().map_err(|_| bad())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ResolveOverride { host, port, addrs })
}

/// A byte count: plain (`1048576`) or with a unit, binary (`KiB`, `MiB`,
/// `GiB`, `TiB`) or decimal (`kB`, `MB`, `GB`, `TB`), case-insensitive.
pub(super) fn parse_bytes(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a byte count; use e.g. 1048576, 256MiB, 1GB");
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "tib" | "t" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

/// `block` or `drop`.
pub(super) fn parse_when_full(s: &str) -> Result<WhenFull, String> {
    match s {
        "block" => Ok(WhenFull::Block),
        "drop" => Ok(WhenFull::Drop),
        _ => Err(format!("{s:?}: want block or drop")),
    }
}

/// `PORT`, `FIRST-LAST` or `*` (every port).
pub(super) fn parse_port_range(s: &str) -> Result<PortRange, String> {
    let bad = || format!("{s:?}: want a port (8443), a range (8000-8999) or *");
    if s.trim() == "*" {
        return Ok(PortRange {
            first: 0,
            last: u16::MAX,
        });
    }
    let (first, last) = s.split_once('-').unwrap_or((s, s));
    let first: u16 = first.trim().parse().map_err(|_| bad())?;
    let last: u16 = last.trim().parse().map_err(|_| bad())?;
    if first > last {
        return Err(bad());
    }
    Ok(PortRange { first, last })
}

/// `auto`, `account`, `vpce` or `header:NAME`.
pub(super) fn parse_client_key(s: &str) -> Result<ClientKey, String> {
    match s {
        "auto" => return Ok(ClientKey::Auto),
        "account" => return Ok(ClientKey::Account),
        "vpce" => return Ok(ClientKey::Vpce),
        _ => {}
    }
    let name = s
        .strip_prefix("header:")
        .ok_or_else(|| format!("{s:?}: want auto, account, vpce or header:NAME"))?;
    http::HeaderName::from_bytes(name.as_bytes())
        .map(ClientKey::Header)
        .map_err(|_| format!("{name:?} is not a header name"))
}
