//! Access-log line formats: Apache `mod_log_config` directives, ccnproxy's
//! `%{NAME}x` fields and the presets, compiled once into a list of fields,
//! each with the literal text that follows it, and rendered into the
//! caller's buffer without further allocation.
//!
//! Pure: no I/O and no clock; times come from the `Record`, the zone from
//! `Zone`. This file parses and holds the compiled parts; `render` writes
//! values (Apache or JSON escaping), `time` the times, `preset` the presets.

use http::header::HeaderName;

use super::Record;
use super::field::{Field, Part, Side, StatusFilter};
use super::line_bytes::Literal;
use super::parse::parse;
use super::preset;
use super::render::{Enc, Value, put};
use super::zone::Zone;

pub use super::parse::FormatError;
pub use super::preset::PRESETS;

/// A compiled line format. `write` renders one record; the time parts cache
/// their text per second, hence `&mut self`.
///
/// The parts are kept as the literal text before the first field (`lead`)
/// and one `Piece` per field carrying the text up to the next field, the
/// line's newline included in the last: one step per field, however the
/// format mixes text and fields.
pub struct Format {
    lead: Literal,
    pieces: Vec<Piece>,
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
        let parts = parts(spec, env)?;
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
        let (lead, pieces) = pieces(parts);
        Ok(Self {
            lead,
            pieces,
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
            lead,
            pieces,
            zone,
            scratch,
            ..
        } = self;
        lead.put(out);
        for Piece {
            field,
            enc,
            only,
            then,
        } in pieces
        {
            let value = match only {
                Some(filter) if !filter.admits(record.status) => Value::Missing,
                _ => field.value(record, zone),
            };
            put(out, *enc, value, scratch);
            then.put(out);
        }
    }
}

/// The parts of a preset or a custom format string, in line order.
pub(super) fn parts(
    spec: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Part>, FormatError> {
    if let Some(parts) = preset::built(spec) {
        Ok(parts)
    } else if let Some(preset) = preset::string(spec) {
        parse(preset, &env)
    } else if spec.contains('%') {
        parse(spec, &env)
    } else {
        Err(FormatError::UnknownPreset(spec.to_owned()))
    }
}

/// A field, how it is written, and the literal text after it.
struct Piece {
    field: Field,
    enc: Enc,
    only: Option<StatusFilter>,
    then: Literal,
}

/// Regroups parts as the text before the first field and one piece per
/// field; the newline ends the last text.
fn pieces(parts: Vec<Part>) -> (Literal, Vec<Piece>) {
    let mut lead = None;
    let mut pieces: Vec<Piece> = Vec::new();
    // The text since the last field; it goes to that field's piece (or the
    // lead) when the next field or the end comes.
    let mut text = Vec::new();
    let mut settle = |pieces: &mut Vec<Piece>, text: &[u8]| match pieces.last_mut() {
        Some(piece) => piece.then = Literal::new(text),
        None => lead = Some(Literal::new(text)),
    };
    for part in parts {
        match part {
            Part::Literal(bytes) => text.extend_from_slice(&bytes),
            Part::Field { field, enc, only } => {
                settle(&mut pieces, &text);
                text.clear();
                pieces.push(Piece {
                    field,
                    enc,
                    only,
                    then: Literal::new(b""),
                });
            }
        }
    }
    text.push(b'\n');
    settle(&mut pieces, &text);
    (lead.unwrap_or_else(|| Literal::new(b"")), pieces)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{HeaderMap, HeaderValue, Uri, Version};

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
            verified: None,
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
            via: None,
            ..sample_record()
        };
        assert_eq!(
            line("%h %{remote}p", &with("[2001:db8::1]:5000")),
            "2001:db8::1 5000"
        );
        assert_eq!(line("%h", &with("[::ffff:192.0.2.1]:5000")), "192.0.2.1");
    }

    #[test]
    fn balancer_fields() {
        let spec = "%h %a %{c}a %{balancer}x %{vpce}x";
        let direct = sample_record();
        assert_eq!(line(spec, &direct), "192.0.2.10 192.0.2.10 192.0.2.10 - -");
        let behind_nlb = Record {
            client: "203.0.113.9:40000".parse().expect("addr"),
            via: Some(std::sync::Arc::new(crate::identity::Via {
                addr: "[::ffff:10.0.0.5]:1234".parse().expect("addr"),
                vpce: crate::identity::Vpce::new(b"vpce-0123456789abcdef0"),
            })),
            ..sample_record()
        };
        assert_eq!(
            line(spec, &behind_nlb),
            "203.0.113.9 203.0.113.9 10.0.0.5 10.0.0.5 vpce-0123456789abcdef0"
        );
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
