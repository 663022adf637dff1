//! Parses Apache `mod_log_config` strings (and ccnproxy's `%{NAME}x`
//! fields) into the parts of a line.

use http::header::HeaderName;

use crate::identity::account::ACCOUNT_DIGITS;

use super::field::{Field, Part, Side, StatusFilter, Step, aws_request_id};
use super::render::Enc;
use super::time::{TimeKind, TimeSpec};

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
    UnknownDirective {
        /// Byte offset of the `%` that starts the directive.
        pos: usize,
        /// The directive letter.
        directive: char,
    },
    /// The string ends inside a directive (`%` or `%{…` at the end).
    #[error("unfinished directive at byte {pos}")]
    Unfinished {
        /// Byte offset of the `%` that starts the directive.
        pos: usize,
    },
    /// `%{NAME}x` with a name ccnproxy does not know.
    #[error("unknown field %{{{name}}}x at byte {pos}")]
    UnknownField {
        /// Byte offset of the `%` that starts the directive.
        pos: usize,
        /// The name as written.
        name: String,
    },
    /// `%{NAME}i` / `%{NAME}o` with a name that is no header name.
    #[error("invalid header name {name:?} at byte {pos}")]
    HeaderName {
        /// Byte offset of the `%` that starts the directive.
        pos: usize,
        /// The name as written.
        name: String,
    },
    /// `%{…}t` with an invalid strftime pattern.
    #[error("invalid time format {spec:?} at byte {pos}")]
    TimeFormat {
        /// Byte offset of the `%` that starts the directive.
        pos: usize,
        /// The time argument as written.
        spec: String,
    },
    /// A `{…}` argument the directive does not take.
    #[error("%{directive} at byte {pos} does not take {{{arg}}}")]
    Argument {
        /// Byte offset of the `%` that starts the directive.
        pos: usize,
        /// The directive letter.
        directive: char,
        /// The argument as written.
        arg: String,
    },
    /// `%i`, `%o`, `%e` or `%x` without its `{NAME}`.
    #[error("%{directive} at byte {pos} needs a {{NAME}}")]
    MissingArgument {
        /// Byte offset of the `%` that starts the directive.
        pos: usize,
        /// The directive letter.
        directive: char,
    },
}

/// Parses a `mod_log_config` string.
pub(super) fn parse(
    spec: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Part>, FormatError> {
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
                        _ => match spec[i..].chars().next() {
                            Some(c) => break c,
                            None => return Err(FormatError::Unfinished { pos }),
                        },
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
        ('h' | 'a', None) => Field::ClientIp,
        ('h' | 'a', Some("c")) => Field::PeerIp,
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
        #[allow(clippy::expect_used, reason = "a constant pattern")]
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
        "retry_rule" => Field::RetryRule,
        "connect_attempts" => Field::ConnectAttempts,
        "request_id" => Field::RequestId,
        "origin" => Field::Origin,
        "aws_request_id" => aws_request_id(),
        "aws_id2" => Field::Header(Side::Response, HeaderName::from_static("x-amz-id-2")),
        "access_key" => Field::AccessKey,
        "account" => Field::Account([0; ACCOUNT_DIGITS]),
        "service" => Field::Service,
        "region" => Field::Region,
        "error" => Field::Error,
        "bytes_received" => Field::BytesReceived,
        "duration_ms" => Field::DurationMillis,
        "balancer" => Field::Balancer,
        "vpce" => Field::Vpce,
        _ => return None,
    })
}
