//! Access-log line formats: Apache `mod_log_config` directives, ccnproxy's
//! `%{NAME}x` fields and the presets, compiled once into a list of parts and
//! rendered into the caller's buffer without further allocation.
//!
//! Pure: no I/O and no clock; times come from the `Record`, the zone from
//! `Zone`. This file parses and holds the compiled parts; `render` writes
//! values (Apache or JSON escaping), `time` the times, `preset` the presets.

use std::time::Duration;

use http::HeaderMap;
use http::header::HeaderName;

use super::Record;
use super::preset;
use super::render::{Enc, Text, Value, headers, non_empty, put, text, version};
use super::time::{TimeKind, TimeSpec};
use super::zone::Zone;
use crate::upstream::Timing;

pub use super::preset::PRESETS;

/// Apache's `%t`.
const CLF_TIME: &str = "[%d/%b/%Y:%H:%M:%S %z]";

/// Why a format string was refused; `pos` is the byte offset of the `%` that
/// starts the faulty directive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Neither a preset nor a format with any `%` directive.
    #[error("unknown preset {0:?} (presets: chocon, common, combined, aws, ltsv, json)")]
    UnknownPreset(String),
    /// `%` followed by a letter that is no directive.
    #[error("unknown directive %{directive} at byte {pos}")]
    UnknownDirective { pos: usize, directive: char },
    /// The string ends inside a directive (`%` or `%{…` at the end).
    #[error("unfinished directive at byte {pos}")]
    Unfinished { pos: usize },
    /// `%{NAME}x` with a name ccnproxy does not know.
    #[error("unknown field %{{{name}}}x at byte {pos}")]
    UnknownField { pos: usize, name: String },
    /// `%{NAME}i` / `%{NAME}o` with a name that is no header name.
    #[error("invalid header name {name:?} at byte {pos}")]
    HeaderName { pos: usize, name: String },
    /// `%{…}t` with an invalid strftime pattern.
    #[error("invalid time format {spec:?} at byte {pos}")]
    TimeFormat { pos: usize, spec: String },
    /// A `{…}` argument the directive does not take.
    #[error("%{directive} at byte {pos} does not take {{{arg}}}")]
    Argument {
        pos: usize,
        directive: char,
        arg: String,
    },
    /// `%i`, `%o`, `%e` or `%x` without its `{NAME}`.
    #[error("%{directive} at byte {pos} needs a {{NAME}}")]
    MissingArgument { pos: usize, directive: char },
}

/// A compiled line format. `write` renders one record; the time parts cache
/// their text per second, hence `&mut self`.
pub struct Format {
    parts: Vec<Part>,
    zone: Zone,
    scratch: Vec<u8>,
    request_headers: Vec<HeaderName>,
    response_headers: Vec<HeaderName>,
}

impl Format {
    /// Compiles a preset name or a custom `mod_log_config` string; `%{NAME}e`
    /// reads the process environment now.
    pub fn compile(spec: &str) -> Result<Self, FormatError> {
        Self::compile_with_env(spec, |name| std::env::var(name).ok())
    }

    /// `compile` with `%{NAME}e` looked up in `env`.
    pub fn compile_with_env(
        spec: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, FormatError> {
        let parts = if let Some(parts) = preset::built(spec) {
            parts
        } else if let Some(preset) = preset::string(spec) {
            parse(preset, &env)?
        } else if spec.contains('%') {
            parse(spec, &env)?
        } else {
            return Err(FormatError::UnknownPreset(spec.to_owned()));
        };
        let mut request_headers = Vec::new();
        let mut response_headers = Vec::new();
        for part in &parts {
            let Part::Field { field, .. } = part else {
                continue;
            };
            let (list, names) = match field {
                Field::Header(Side::Request, name) => {
                    (&mut request_headers, std::slice::from_ref(name))
                }
                Field::Header(Side::Response, name) => {
                    (&mut response_headers, std::slice::from_ref(name))
                }
                Field::FirstHeader(Side::Request, names) => (&mut request_headers, &names[..]),
                Field::FirstHeader(Side::Response, names) => (&mut response_headers, &names[..]),
                _ => continue,
            };
            for name in names {
                if !list.contains(name) {
                    list.push(name.clone());
                }
            }
        }
        Ok(Self {
            parts,
            zone: Zone::Local,
            scratch: Vec::new(),
            request_headers,
            response_headers,
        })
    }

    /// Writes local times in `zone` instead of the process's zone.
    pub fn with_zone(mut self, zone: Zone) -> Self {
        self.zone = zone;
        self
    }

    /// Request header names the format reads.
    pub fn request_headers(&self) -> &[HeaderName] {
        &self.request_headers
    }

    /// Response header names the format reads.
    pub fn response_headers(&self) -> &[HeaderName] {
        &self.response_headers
    }

    /// Appends one line for `record`, newline included, to `out`.
    pub fn write(&mut self, record: &Record, out: &mut Vec<u8>) {
        let Self {
            parts,
            zone,
            scratch,
            ..
        } = self;
        for part in parts {
            match part {
                Part::Literal(bytes) => out.extend_from_slice(bytes),
                Part::Field { field, enc, only } => {
                    let value = match only {
                        Some(filter) if !filter.admits(record.status) => Value::Missing,
                        _ => field.value(record, zone),
                    };
                    put(out, *enc, value, scratch);
                }
            }
        }
        out.push(b'\n');
    }
}

/// One piece of a line.
pub(super) enum Part {
    /// Written as is.
    Literal(Box<[u8]>),
    /// A value, written per `enc`, or unknown when `only` rules out the status.
    Field {
        field: Field,
        enc: Enc,
        only: Option<StatusFilter>,
    },
}

/// Apache's `%400,501{…}i` / `%!200{…}i`: log only for (or except) these statuses.
pub(super) struct StatusFilter {
    negate: bool,
    codes: Vec<u32>,
}

impl StatusFilter {
    fn admits(&self, status: u16) -> bool {
        self.codes.contains(&u32::from(status)) != self.negate
    }
}

/// Which headers a header field reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Request,
    Response,
}

/// One step of `Timing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Dns,
    Connect,
    Tls,
    Queue,
    Header,
    Total,
}

/// What a directive shows; see `directive_field` and `x_field` for the spelling.
pub(super) enum Field {
    ClientIp,
    /// chocon's `remote_addr`: Go's `RemoteAddr` up to the last `:`, so IPv6 keeps its brackets.
    ClientIpGo,
    ClientPort,
    Nothing,
    RequestLine,
    Method,
    Path,
    Query,
    Target,
    DecodedPath,
    Protocol,
    Status,
    BytesSentClf,
    BytesSent,
    BytesReceived,
    DurationUs,
    DurationMs,
    DurationS,
    DurationMillis,
    DurationSecs,
    Host,
    LocalPort,
    Header(Side, HeaderName),
    FirstHeader(Side, Vec<HeaderName>),
    Constant(Option<Box<[u8]>>),
    UpstreamAddr,
    Reused,
    UpstreamProtocol,
    Step(Step),
    Retries,
    RequestId,
    Origin,
    AccessKey,
    Service,
    Region,
    Error,
    Time(Box<TimeSpec>),
}

impl Field {
    fn value<'a>(&'a mut self, r: &'a Record, zone: &Zone) -> Value<'a> {
        let up = r.upstream.as_ref();
        let scope = r.scope.as_ref();
        match self {
            Self::ClientIp => Value::Text(Text::Ip(r.client.ip().to_canonical())),
            Self::ClientIpGo => Value::Text(Text::IpGo(r.client.ip())),
            Self::ClientPort => Value::Uint(r.client.port().into()),
            Self::Nothing => Value::Missing,
            Self::RequestLine => Value::Text(Text::RequestLine(r)),
            Self::Method => text(r.method.as_str()),
            Self::Path => text(r.uri.path()),
            Self::Query => Value::Text(Text::Query(&r.uri)),
            Self::Target => Value::Text(Text::Target(&r.uri, r.version)),
            Self::DecodedPath => Value::Text(Text::DecodedPath(r.uri.path())),
            Self::Protocol => text(version(r.version)),
            Self::Status => Value::Uint(r.status.into()),
            Self::BytesSentClf if r.bytes_sent == 0 => Value::Missing,
            Self::BytesSentClf | Self::BytesSent => Value::Uint(r.bytes_sent),
            Self::BytesReceived => Value::Uint(r.bytes_received),
            Self::DurationUs => Value::Uint(r.duration.as_micros().try_into().unwrap_or(u64::MAX)),
            Self::DurationMs => Value::Uint(r.duration.as_millis().try_into().unwrap_or(u64::MAX)),
            Self::DurationS => Value::Uint(r.duration.as_secs()),
            Self::DurationMillis => Value::Millis(r.duration),
            Self::DurationSecs => Value::Float(r.duration.as_secs_f64()),
            Self::Host => non_empty(&r.host),
            Self::LocalPort => Value::Uint(r.local_port.into()),
            Self::Header(side, name) => headers(side.of(r), name),
            Self::FirstHeader(side, names) => {
                let map = side.of(r);
                names
                    .iter()
                    .find_map(|name| map.get(name))
                    .map_or(Value::Missing, |v| Value::Text(Text::Bytes(v.as_bytes())))
            }
            Self::Constant(bytes) => bytes
                .as_deref()
                .map_or(Value::Missing, |b| Value::Text(Text::Bytes(b))),
            Self::UpstreamAddr => up
                .and_then(|t| t.addr)
                .map_or(Value::Missing, |a| Value::Text(Text::Addr(a))),
            Self::Reused => up.map_or(Value::Missing, |t| Value::Bool(t.reused)),
            Self::UpstreamProtocol => up.map_or(Value::Missing, |t| text(t.protocol.as_str())),
            Self::Step(step) => up.map_or(Value::Missing, |t| Value::Millis(step.of(t))),
            Self::Retries => up.map_or(Value::Missing, |t| Value::Uint(t.retries.into())),
            Self::RequestId => non_empty(&r.request_id),
            Self::Origin => r.origin.as_deref().map_or(Value::Missing, text),
            Self::AccessKey => scope.map_or(Value::Missing, |s| text(&s.access_key)),
            Self::Service => scope.map_or(Value::Missing, |s| text(&s.service)),
            Self::Region => scope.map_or(Value::Missing, |s| text(&s.region)),
            Self::Error => r.error.as_deref().map_or(Value::Missing, text),
            Self::Time(spec) => spec.value(r, zone),
        }
    }
}

impl Side {
    fn of(self, r: &Record) -> &HeaderMap {
        match self {
            Self::Request => &r.request_headers,
            Self::Response => &r.response_headers,
        }
    }
}

impl Step {
    fn of(self, t: &Timing) -> Duration {
        match self {
            Self::Dns => t.dns,
            Self::Connect => t.connect,
            Self::Tls => t.tls,
            Self::Queue => t.queue,
            Self::Header => t.header,
            Self::Total => t.total,
        }
    }
}

/// Parses a `mod_log_config` string.
fn parse(spec: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Part>, FormatError> {
    let b = spec.as_bytes();
    let mut parts = Vec::new();
    let mut literal = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let pos = i;
                i += 1;
                let mut negate = false;
                let mut codes = Vec::new();
                let mut arg = None;
                // Modifiers in any order, as Apache reads them: `!`, `<`, `>`,
                // status lists, one `{argument}`.
                let directive = loop {
                    let Some(&c) = b.get(i) else {
                        return Err(FormatError::Unfinished { pos });
                    };
                    match c {
                        b'!' => negate = !negate,
                        b'<' | b'>' | b',' => {}
                        b'0'..=b'9' => {
                            let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
                            codes.push(spec[i..i + digits].parse().unwrap_or(u32::MAX));
                            i += digits;
                            continue;
                        }
                        b'{' => {
                            let Some(len) = b[i + 1..].iter().position(|&c| c == b'}') else {
                                return Err(FormatError::Unfinished { pos });
                            };
                            arg = Some(&spec[i + 1..i + 1 + len]);
                            i += len + 2;
                            continue;
                        }
                        _ => break spec[i..].chars().next().expect("i is on a char boundary"),
                    }
                    i += 1;
                };
                i += directive.len_utf8();
                if directive == '%' {
                    literal.push(b'%');
                    continue;
                }
                let field = directive_field(directive, arg, pos, env)?;
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal).into()));
                }
                let only = (!codes.is_empty()).then_some(StatusFilter { negate, codes });
                parts.push(Part::Field {
                    field,
                    enc: Enc::Apache,
                    only,
                });
            }
            // Apache's backslash escapes in format strings: `\n \r \t \\`.
            b'\\' => {
                let escaped = match b.get(i + 1) {
                    Some(b'n') => Some(b'\n'),
                    Some(b'r') => Some(b'\r'),
                    Some(b't') => Some(b'\t'),
                    Some(b'\\') => Some(b'\\'),
                    _ => None,
                };
                literal.push(escaped.unwrap_or(b'\\'));
                i += if escaped.is_some() { 2 } else { 1 };
            }
            c => {
                literal.push(c);
                i += 1;
            }
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Literal(literal.into()));
    }
    Ok(parts)
}

fn directive_field(
    d: char,
    arg: Option<&str>,
    pos: usize,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Field, FormatError> {
    let bad_arg = |arg: &str| FormatError::Argument {
        pos,
        directive: d,
        arg: arg.to_owned(),
    };
    let need = || arg.ok_or(FormatError::MissingArgument { pos, directive: d });
    let header = |side, name: &str| {
        HeaderName::from_bytes(name.as_bytes())
            .map(|h| Field::Header(side, h))
            .map_err(|_| FormatError::HeaderName {
                pos,
                name: name.to_owned(),
            })
    };
    let field = match (d, arg) {
        ('h' | 'a', None | Some("c")) => Field::ClientIp,
        ('l' | 'u', None) => Field::Nothing,
        ('t', arg) => return time_field(arg.unwrap_or(""), pos),
        ('r', None) => Field::RequestLine,
        ('m', None) => Field::Method,
        ('U', None) => Field::Path,
        ('q', None) => Field::Query,
        ('H', None) => Field::Protocol,
        ('s', None) => Field::Status,
        ('b', None) => Field::BytesSentClf,
        ('B', None) => Field::BytesSent,
        ('D', None) => Field::DurationUs,
        ('T', None | Some("s")) => Field::DurationS,
        ('T', Some("ms")) => Field::DurationMs,
        ('T', Some("us")) => Field::DurationUs,
        ('v' | 'V', None) => Field::Host,
        ('p', None | Some("canonical" | "local")) => Field::LocalPort,
        ('p', Some("remote")) => Field::ClientPort,
        ('P', None | Some("pid")) => {
            Field::Constant(Some(std::process::id().to_string().into_bytes().into()))
        }
        ('i', _) => return header(Side::Request, need()?),
        ('o', _) => return header(Side::Response, need()?),
        ('e', _) => Field::Constant(env(need()?).map(|v| v.into_bytes().into())),
        ('x', _) => {
            let name = need()?;
            return x_field(name).ok_or_else(|| FormatError::UnknownField {
                pos,
                name: name.to_owned(),
            });
        }
        (
            'h' | 'a' | 'l' | 'u' | 'r' | 'm' | 'U' | 'q' | 'H' | 's' | 'b' | 'B' | 'D' | 'T' | 'v'
            | 'V' | 'p' | 'P',
            Some(arg),
        ) => {
            return Err(bad_arg(arg));
        }
        _ => return Err(FormatError::UnknownDirective { pos, directive: d }),
    };
    Ok(field)
}

/// `%{…}t`: `[begin:|end:]` then `sec`, `msec`, `usec`, `msec_frac`,
/// `usec_frac` or a strftime pattern; empty means Apache's `%t`.
fn time_field(arg: &str, pos: usize) -> Result<Field, FormatError> {
    let (end, rest) = match arg {
        "begin" => (false, ""),
        "end" => (true, ""),
        _ => match (arg.strip_prefix("begin:"), arg.strip_prefix("end:")) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => (false, arg),
        },
    };
    let spec = match rest {
        "sec" => TimeSpec::new(end, TimeKind::Sec),
        "msec" => TimeSpec::new(end, TimeKind::Msec),
        "usec" => TimeSpec::new(end, TimeKind::Usec),
        "msec_frac" => TimeSpec::new(end, TimeKind::MsecFrac),
        "usec_frac" => TimeSpec::new(end, TimeKind::UsecFrac),
        "" => TimeSpec::strftime(end, CLF_TIME).expect("Apache's %t pattern is valid"),
        pattern => TimeSpec::strftime(end, pattern).ok_or_else(|| FormatError::TimeFormat {
            pos,
            spec: arg.to_owned(),
        })?,
    };
    Ok(Field::Time(Box::new(spec)))
}

/// ccnproxy's `%{NAME}x` fields.
fn x_field(name: &str) -> Option<Field> {
    Some(match name {
        "upstream_addr" => Field::UpstreamAddr,
        "reused" => Field::Reused,
        "protocol" => Field::UpstreamProtocol,
        "dns_ms" => Field::Step(Step::Dns),
        "connect_ms" => Field::Step(Step::Connect),
        "tls_ms" => Field::Step(Step::Tls),
        "queue_ms" => Field::Step(Step::Queue),
        "header_ms" => Field::Step(Step::Header),
        "upstream_ms" => Field::Step(Step::Total),
        "retries" => Field::Retries,
        "request_id" => Field::RequestId,
        "origin" => Field::Origin,
        "aws_request_id" => aws_request_id(),
        "aws_id2" => Field::Header(Side::Response, HeaderName::from_static("x-amz-id-2")),
        "access_key" => Field::AccessKey,
        "service" => Field::Service,
        "region" => Field::Region,
        "error" => Field::Error,
        "bytes_received" => Field::BytesReceived,
        "duration_ms" => Field::DurationMillis,
        _ => return None,
    })
}

/// Most services answer `x-amzn-RequestId`; S3 `x-amz-request-id`.
pub(super) fn aws_request_id() -> Field {
    Field::FirstHeader(
        Side::Response,
        vec![
            HeaderName::from_static("x-amzn-requestid"),
            HeaderName::from_static("x-amz-request-id"),
        ],
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{HeaderValue, Uri, Version};

    use super::*;
    use crate::accesslog::tests::sample_record;

    fn env(name: &str) -> Option<String> {
        (name == "NODE").then(|| "edge \"1\"".to_owned())
    }

    fn line(spec: &str, record: &Record) -> String {
        let mut format = Format::compile_with_env(spec, env)
            .expect(spec)
            .with_zone(Zone::fixed(9 * 3600, "JST"));
        let mut out = Vec::new();
        format.write(record, &mut out);
        assert_eq!(out.pop(), Some(b'\n'), "{spec}: a line ends with a newline");
        String::from_utf8(out).expect("Apache escaping leaves ASCII")
    }

    #[test]
    fn apache_directives() {
        let cases = [
            (
                "%h %a %{c}a %{c}h",
                "192.0.2.10 192.0.2.10 192.0.2.10 192.0.2.10",
            ),
            ("%l %u", "- -"),
            ("%t", "[02/Jan/2024:12:04:05 +0900]"),
            (
                "%{begin}t|%{end}t",
                "[02/Jan/2024:12:04:05 +0900]|[02/Jan/2024:12:04:05 +0900]",
            ),
            ("%{%Y-%m-%d %H:%M:%S %Z}t", "2024-01-02 12:04:05 JST"),
            ("%{end:%H:%M:%S%.6f}t", "12:04:05.691246"),
            (
                "%{sec}t %{msec}t %{usec}t",
                "1704164645 1704164645678 1704164645678901",
            ),
            (
                "%{msec_frac}t %{usec_frac}t %{end:usec_frac}t",
                "678 678901 691246",
            ),
            ("%r", "GET /bucket/key%20x?list-type=2&prefix=a HTTP/1.1"),
            (
                "%m %U %q %H",
                "GET /bucket/key%20x ?list-type=2&prefix=a HTTP/1.1",
            ),
            ("%s %>s %<s", "200 200 200"),
            ("%b %B", "1234 1234"),
            ("%D %T %{s}T %{ms}T %{us}T", "12345 0 0 12 12345"),
            (
                "%v %V",
                "s3.amazonaws.com.ccnproxy-https:3000 s3.amazonaws.com.ccnproxy-https:3000",
            ),
            (
                "%p %{local}p %{canonical}p %{remote}p",
                "3000 3000 3000 54321",
            ),
            (
                r#""%{User-Agent}i""#,
                r#""aws-cli/2 \"q\" back\\slash\ttab \xc3\xa9 \xff""#,
            ),
            ("%{X-Multi}i %{Referer}i", "a, b -"),
            ("%{X-Amz-Request-Id}o %{Content-Type}o", "REQ123 -"),
            ("%{NODE}e %{UNSET}e", r#"edge \"1\" -"#),
            ("100%% %{pid}P", &format!("100% {}", std::process::id())),
            (
                "%404{User-Agent}i %!404{X-Multi}i %200,304{x-amz-request-id}o",
                "- a, b REQ123",
            ),
            ("%!200,304{X-Multi}i", "-"),
            (r"a\tb\nc\\d\q %h", "a\tb\nc\\d\\q 192.0.2.10"),
            ("über %m", "über GET"),
        ];
        let record = sample_record();
        for (spec, want) in cases {
            assert_eq!(line(spec, &record), want, "format {spec:?}");
        }
    }

    #[test]
    fn ccnproxy_fields() {
        let cases = [
            (
                "%{upstream_addr}x %{reused}x %{protocol}x",
                "52.216.1.2:443 false h1",
            ),
            (
                "%{dns_ms}x %{connect_ms}x %{tls_ms}x %{queue_ms}x %{header_ms}x %{upstream_ms}x",
                "1.500 2.250 10.000 0.000 30.125 40.500",
            ),
            (
                "%{retries}x %{request_id}x %{origin}x",
                "1 cid-1 https://s3.amazonaws.com:443",
            ),
            ("%{aws_request_id}x %{aws_id2}x", "REQ123 ID2+abc/def="),
            (
                "%{access_key}x %{service}x %{region}x",
                "AKIDEXAMPLE s3 us-east-1",
            ),
            (
                "%{error}x %{bytes_received}x %{duration_ms}x",
                "- 56 12.345",
            ),
        ];
        let record = sample_record();
        for (spec, want) in cases {
            assert_eq!(line(spec, &record), want, "format {spec:?}");
        }
    }

    #[test]
    fn unknown_values_are_dashes() {
        let record = Record {
            bytes_sent: 0,
            host: String::new(),
            request_id: String::new(),
            origin: None,
            upstream: None,
            scope: None,
            request_headers: HeaderMap::new(),
            response_headers: HeaderMap::new(),
            ..sample_record()
        };
        let spec = "%b %B %v %{request_id}x %{origin}x %{upstream_addr}x %{reused}x %{protocol}x %{dns_ms}x \
                    %{upstream_ms}x %{retries}x %{aws_request_id}x %{access_key}x %{service}x %{region}x %{User-Agent}i";
        assert_eq!(line(spec, &record), "- 0 - - - - - - - - - - - - - -");
    }

    #[test]
    fn hostile_values_are_escaped_apache_style() {
        let mut record = sample_record();
        record.error = Some("upstream said \"no\"\n\0\x1b[31m\u{7f}\\ bye é".to_owned());
        record.host = "evil\r\nhost".to_owned();
        record
            .response_headers
            .insert("x-amz-request-id", HeaderValue::from_static("id\twith tab"));
        assert_eq!(
            line(r#"%v "%{error}x" %{aws_request_id}x"#, &record),
            r#"evil\r\nhost "upstream said \"no\"\n\x00\x1b[31m\x7f\\ bye \xc3\xa9" id\twith tab"#,
        );
    }

    #[test]
    fn request_targets_as_the_client_sent_them() {
        let with = |uri: &str, version| Record {
            uri: uri.parse::<Uri>().expect(uri),
            version,
            ..sample_record()
        };
        let cases = [
            (
                with("http://s3.amazonaws.com/b?x=1", Version::HTTP_11),
                "GET http://s3.amazonaws.com/b?x=1 HTTP/1.1|/b|?x=1",
            ),
            (
                with("http://example.com/p?q", Version::HTTP_2),
                "GET /p?q HTTP/2.0|/p|?q",
            ),
            (with("/", Version::HTTP_10), "GET / HTTP/1.0|/|"),
            (
                Record {
                    method: http::Method::CONNECT,
                    ..with("s3.amazonaws.com:443", Version::HTTP_11)
                },
                "CONNECT s3.amazonaws.com:443 HTTP/1.1||",
            ),
        ];
        for (record, want) in cases {
            assert_eq!(line("%r|%U|%q", &record), want);
        }
    }

    #[test]
    fn client_addresses() {
        let with = |addr: &str| Record {
            client: addr.parse().expect(addr),
            ..sample_record()
        };
        assert_eq!(
            line("%h %{remote}p", &with("[2001:db8::1]:5000")),
            "2001:db8::1 5000"
        );
        assert_eq!(line("%h", &with("[::ffff:192.0.2.1]:5000")), "192.0.2.1");
    }

    #[test]
    fn durations_round_down_like_apache() {
        let record = Record {
            duration: Duration::from_micros(2_999_999),
            ..sample_record()
        };
        assert_eq!(
            line("%T %{ms}T %D %{duration_ms}x", &record),
            "2 2999 2999999 2999.999"
        );
    }

    #[test]
    fn bad_formats_name_the_byte() {
        let cases = [
            (
                "%h %Z",
                FormatError::UnknownDirective {
                    pos: 3,
                    directive: 'Z',
                },
            ),
            (
                "%h %é",
                FormatError::UnknownDirective {
                    pos: 3,
                    directive: 'é',
                },
            ),
            ("abc %", FormatError::Unfinished { pos: 4 }),
            ("%h %{User-Agent", FormatError::Unfinished { pos: 3 }),
            ("%>", FormatError::Unfinished { pos: 0 }),
            (
                "x %{nope}x",
                FormatError::UnknownField {
                    pos: 2,
                    name: "nope".to_owned(),
                },
            ),
            (
                "%{bad header}i",
                FormatError::HeaderName {
                    pos: 0,
                    name: "bad header".to_owned(),
                },
            ),
            (
                "%{}o",
                FormatError::HeaderName {
                    pos: 0,
                    name: String::new(),
                },
            ),
            (
                "%{%Q}t",
                FormatError::TimeFormat {
                    pos: 0,
                    spec: "%Q".to_owned(),
                },
            ),
            (
                "%{c}r",
                FormatError::Argument {
                    pos: 0,
                    directive: 'r',
                    arg: "c".to_owned(),
                },
            ),
            (
                "%{min}T",
                FormatError::Argument {
                    pos: 0,
                    directive: 'T',
                    arg: "min".to_owned(),
                },
            ),
            (
                "%i",
                FormatError::MissingArgument {
                    pos: 0,
                    directive: 'i',
                },
            ),
            (
                "%h %x",
                FormatError::MissingArgument {
                    pos: 3,
                    directive: 'x',
                },
            ),
            ("jsonl", FormatError::UnknownPreset("jsonl".to_owned())),
            ("", FormatError::UnknownPreset(String::new())),
        ];
        for (spec, want) in cases {
            assert_eq!(Format::compile(spec).err(), Some(want), "format {spec:?}");
        }
        assert_eq!(
            Format::compile("%h %{nope}x")
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("unknown field %{nope}x at byte 3"),
        );
    }

    #[test]
    fn formats_ask_for_the_headers_they_read() {
        let format =
            Format::compile("%{User-Agent}i %{user-agent}i %{X-A}i %{aws_request_id}x %{ETag}o")
                .expect("format");
        let names = |list: &[HeaderName]| {
            list.iter()
                .map(|n| n.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(format.request_headers()), ["user-agent", "x-a"]);
        assert_eq!(
            names(format.response_headers()),
            ["x-amzn-requestid", "x-amz-request-id", "etag"]
        );
        assert!(
            Format::compile("common")
                .expect("preset")
                .request_headers()
                .is_empty()
        );
    }

    #[test]
    fn writing_appends_to_the_buffer() {
        let mut format = Format::compile("%>s").expect("format");
        let mut out = b"before\n".to_vec();
        format.write(&sample_record(), &mut out);
        format.write(
            &Record {
                status: 503,
                ..sample_record()
            },
            &mut out,
        );
        assert_eq!(out, b"before\n200\n503\n");
    }
}
