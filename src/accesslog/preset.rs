//! The preset formats: `common`, `combined`, `aws` and `ltsv` as format
//! strings, `json` and `chocon` as JSON objects built from fields (their
//! values need JSON quoting and `null`, which a format string cannot say).

use http::header::{REFERER, USER_AGENT};

use super::format::{self, Field, Part, Side, Step};
use super::render::Enc;
use super::time::{TimeKind, TimeSpec};

/// Names accepted as presets.
pub const PRESETS: [&str; 6] = ["chocon", "common", "combined", "aws", "ltsv", "json"];

const COMMON: &str = r#"%h %l %u %t "%r" %>s %b"#;
const COMBINED: &str = r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i""#;
const AWS: &str = concat!(
    r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" %D "%{request_id}x""#,
    " origin=%{origin}x upstream=%{upstream_addr}x reused=%{reused}x proto=%{protocol}x",
    " dns_ms=%{dns_ms}x connect_ms=%{connect_ms}x tls_ms=%{tls_ms}x queue_ms=%{queue_ms}x",
    " header_ms=%{header_ms}x upstream_ms=%{upstream_ms}x retries=%{retries}x",
    " bytes_received=%{bytes_received}x aws_id=%{aws_request_id}x aws_id2=%{aws_id2}x",
    r#" key=%{access_key}x svc=%{service}x region=%{region}x error="%{error}x""#,
);
const LTSV: &str = concat!(
    "time:%t\thost:%h\tforwardedfor:%{X-Forwarded-For}i\treq:%r\tmethod:%m\turi:%U%q",
    "\tprotocol:%H\tstatus:%>s\tsize:%b\treqsize:%{bytes_received}x\treferer:%{Referer}i",
    "\tua:%{User-Agent}i\tvhost:%v\treqtime_microsec:%D\tid:%{request_id}x\torigin:%{origin}x",
    "\tupstream_addr:%{upstream_addr}x\treused:%{reused}x\tupstream_protocol:%{protocol}x",
    "\tdns_ms:%{dns_ms}x\tconnect_ms:%{connect_ms}x\ttls_ms:%{tls_ms}x\tqueue_ms:%{queue_ms}x",
    "\theader_ms:%{header_ms}x\tupstream_ms:%{upstream_ms}x\tretries:%{retries}x",
    "\taws_request_id:%{aws_request_id}x\taccess_key:%{access_key}x\tservice:%{service}x",
    "\tregion:%{region}x\terror:%{error}x",
);
/// chocon's `start.Format("2006/01/02 15:04:05 MST")`.
const CHOCON_TIME: &str = "%Y/%m/%d %H:%M:%S %Z";

/// A preset written as a format string.
pub(super) fn string(name: &str) -> Option<&'static str> {
    Some(match name {
        "common" => COMMON,
        "combined" => COMBINED,
        "aws" => AWS,
        "ltsv" => LTSV,
        _ => return None,
    })
}

/// A preset built from fields.
pub(super) fn built(name: &str) -> Option<Vec<Part>> {
    match name {
        "chocon" => Some(chocon()),
        "json" => Some(json()),
        _ => None,
    }
}

/// One JSON object per line: `{"key":value,…}`.
fn json_object(fields: Vec<(&str, Field, Enc)>) -> Vec<Part> {
    let mut parts = Vec::with_capacity(fields.len() * 2 + 1);
    for (i, (key, field, enc)) in fields.into_iter().enumerate() {
        let open = if i == 0 { "{" } else { "," };
        parts.push(Part::Literal(
            format!("{open}\"{key}\":").into_bytes().into(),
        ));
        parts.push(Part::Field {
            field,
            enc,
            only: None,
        });
    }
    parts.push(Part::Literal(Box::new(*b"}")));
    parts
}

/// chocon's zap line: `{"time":…,"remote_addr":…,…,"chocon_req":…}`.
fn chocon() -> Vec<Part> {
    let (s, n) = (Enc::JsonText, Enc::Json);
    json_object(vec![
        (
            "time",
            Field::Time(Box::new(
                TimeSpec::strftime(false, CHOCON_TIME).expect("chocon's time pattern is valid"),
            )),
            s,
        ),
        ("remote_addr", Field::ClientIpGo, s),
        ("method", Field::Method, s),
        ("uri", Field::DecodedPath, s),
        ("status", Field::Status, n),
        ("size", Field::BytesSent, n),
        // Go's `r.UserAgent()`: the first value only.
        ("ua", Field::FirstHeader(Side::Request, vec![USER_AGENT]), s),
        ("ptime", Field::DurationSecs, n),
        ("host", Field::Host, s),
        ("chocon_req", Field::RequestId, s),
    ])
}

/// The `json` preset; its keys are a contract (see docs/accesslog.md).
fn json() -> Vec<Part> {
    let j = Enc::Json;
    json_object(vec![
        (
            "time",
            Field::Time(Box::new(TimeSpec::new(false, TimeKind::Rfc3339Millis))),
            j,
        ),
        ("client", Field::ClientIp, j),
        ("method", Field::Method, j),
        ("uri", Field::Target, j),
        ("proto", Field::Protocol, j),
        ("host", Field::Host, j),
        ("status", Field::Status, j),
        ("bytes_sent", Field::BytesSent, j),
        ("bytes_received", Field::BytesReceived, j),
        ("duration_ms", Field::DurationMillis, j),
        ("request_id", Field::RequestId, j),
        ("origin", Field::Origin, j),
        ("upstream_addr", Field::UpstreamAddr, j),
        ("reused", Field::Reused, j),
        ("protocol", Field::UpstreamProtocol, j),
        ("dns_ms", Field::Step(Step::Dns), j),
        ("connect_ms", Field::Step(Step::Connect), j),
        ("tls_ms", Field::Step(Step::Tls), j),
        ("queue_ms", Field::Step(Step::Queue), j),
        ("header_ms", Field::Step(Step::Header), j),
        ("upstream_ms", Field::Step(Step::Total), j),
        ("retries", Field::Retries, j),
        ("aws_request_id", format::aws_request_id(), j),
        ("access_key", Field::AccessKey, j),
        ("service", Field::Service, j),
        ("region", Field::Region, j),
        ("user_agent", Field::Header(Side::Request, USER_AGENT), j),
        ("referer", Field::Header(Side::Request, REFERER), j),
        ("error", Field::Error, j),
    ])
}
