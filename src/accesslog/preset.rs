//! The preset formats: `common`, `combined`, `aws` and `ltsv` as format
//! strings, `json` and `chocon` as JSON objects built from fields (their
//! values need JSON quoting and `null`, which a format string cannot say).

use http::header::{REFERER, USER_AGENT};

use super::field::{Field, Part, Side, Step, aws_request_id};
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
    " connect_attempts=%{connect_attempts}x",
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
    "\tconnect_attempts:%{connect_attempts}x",
    "\taws_request_id:%{aws_request_id}x\taccess_key:%{access_key}x\tservice:%{service}x",
    "\tregion:%{region}x\terror:%{error}x\tbalancer:%{balancer}x\tvpce:%{vpce}x",
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
#[allow(clippy::expect_used, reason = "a constant pattern")]
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

/// The `json` preset; its keys are a contract (see docs/reference.md, "Access log").
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
        ("retry_rule", Field::RetryRule, j),
        ("connect_attempts", Field::ConnectAttempts, j),
        ("aws_request_id", aws_request_id(), j),
        ("access_key", Field::AccessKey, j),
        ("service", Field::Service, j),
        ("region", Field::Region, j),
        ("user_agent", Field::Header(Side::Request, USER_AGENT), j),
        ("referer", Field::Header(Side::Request, REFERER), j),
        ("error", Field::Error, j),
        ("balancer", Field::Balancer, j),
        ("vpce", Field::Vpce, j),
    ])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::{HeaderMap, HeaderValue};

    use crate::accesslog::Record;
    use crate::accesslog::format::{Format, PRESETS};
    use crate::accesslog::tests::sample_record;
    use crate::accesslog::zone::Zone;

    fn line(preset: &str, record: &Record) -> String {
        let mut format = Format::compile(preset)
            .expect(preset)
            .with_zone(Zone::fixed(9 * 3600, "JST"));
        let mut out = Vec::new();
        format.write(record, &mut out);
        String::from_utf8(out).expect("presets write UTF-8")
    }

    /// A request the proxy answered itself: no upstream, no scope, no headers.
    fn refused() -> Record {
        Record {
            status: 403,
            bytes_sent: 0,
            origin: None,
            upstream: None,
            scope: None,
            verified: None,
            request_id: String::new(),
            request_headers: HeaderMap::new(),
            response_headers: HeaderMap::new(),
            error: Some("host \"evil.example\" is not allowed\n(see --allow-host)".to_owned()),
            ..sample_record()
        }
    }

    const UA_APACHE: &str = r#"aws-cli/2 \"q\" back\\slash\ttab \xc3\xa9 \xff"#;

    #[test]
    fn apache_style_presets() {
        let r = sample_record();
        let common = r#"192.0.2.10 - - [02/Jan/2024:12:04:05 +0900] "GET /bucket/key%20x?list-type=2&prefix=a HTTP/1.1" 200 1234"#;
        assert_eq!(line("common", &r), format!("{common}\n"));
        let combined = format!(r#"{common} "-" "{UA_APACHE}""#);
        assert_eq!(line("combined", &r), format!("{combined}\n"));
        assert_eq!(
            line("aws", &r),
            format!(
                "{combined} 12345 \"cid-1\" origin=https://s3.amazonaws.com:443 upstream=52.216.1.2:443 reused=false \
                 proto=h1 dns_ms=1.500 connect_ms=2.250 tls_ms=10.000 queue_ms=0.000 header_ms=30.125 \
                 upstream_ms=40.500 retries=1 connect_attempts=2 bytes_received=56 aws_id=REQ123 aws_id2=ID2+abc/def= key=AKIDEXAMPLE \
                 svc=s3 region=us-east-1 error=\"-\"\n"
            ),
        );
        assert_eq!(
            line("aws", &refused()),
            "192.0.2.10 - - [02/Jan/2024:12:04:05 +0900] \"GET /bucket/key%20x?list-type=2&prefix=a HTTP/1.1\" 403 - \
             \"-\" \"-\" 12345 \"-\" origin=- upstream=- reused=- proto=- dns_ms=- connect_ms=- tls_ms=- queue_ms=- \
             header_ms=- upstream_ms=- retries=- connect_attempts=- bytes_received=56 aws_id=- aws_id2=- key=- svc=- region=- \
             error=\"host \\\"evil.example\\\" is not allowed\\n(see --allow-host)\"\n",
        );
    }

    #[test]
    fn ltsv_preset() {
        let want = [
            "time:[02/Jan/2024:12:04:05 +0900]",
            "host:192.0.2.10",
            "forwardedfor:-",
            "req:GET /bucket/key%20x?list-type=2&prefix=a HTTP/1.1",
            "method:GET",
            "uri:/bucket/key%20x?list-type=2&prefix=a",
            "protocol:HTTP/1.1",
            "status:200",
            "size:1234",
            "reqsize:56",
            "referer:-",
            &format!("ua:{UA_APACHE}"),
            "vhost:s3.amazonaws.com.ccnproxy-https:3000",
            "reqtime_microsec:12345",
            "id:cid-1",
            "origin:https://s3.amazonaws.com:443",
            "upstream_addr:52.216.1.2:443",
            "reused:false",
            "upstream_protocol:h1",
            "dns_ms:1.500",
            "connect_ms:2.250",
            "tls_ms:10.000",
            "queue_ms:0.000",
            "header_ms:30.125",
            "upstream_ms:40.500",
            "retries:1",
            "connect_attempts:2",
            "aws_request_id:REQ123",
            "access_key:AKIDEXAMPLE",
            "service:s3",
            "region:us-east-1",
            "error:-",
            "balancer:-",
            "vpce:-",
        ];
        assert_eq!(line("ltsv", &sample_record()), want.join("\t") + "\n");
    }

    #[test]
    fn chocon_preset_is_chocons_zap_line() {
        let want = concat!(
            r#"{"time":"2024/01/02 12:04:05 JST","remote_addr":"192.0.2.10","method":"GET","uri":"/bucket/key x","#,
            r#""status":200,"size":1234,"ua":"aws-cli/2 \"q\" back\\slash\ttab é \ufffd","ptime":0.012345678,"#,
            r#""host":"s3.amazonaws.com.ccnproxy-https:3000","chocon_req":"cid-1"}"#,
            "\n",
        );
        assert_eq!(line("chocon", &sample_record()), want);
        let bare = Record {
            client: "[2001:db8::1]:5000".parse().expect("addr"),
            via: None,
            duration: Duration::from_secs(2),
            ..refused()
        };
        let want = concat!(
            r#"{"time":"2024/01/02 12:04:05 JST","remote_addr":"[2001:db8::1]","method":"GET","uri":"/bucket/key x","#,
            r#""status":403,"size":0,"ua":"","ptime":2,"host":"s3.amazonaws.com.ccnproxy-https:3000","chocon_req":""}"#,
            "\n",
        );
        assert_eq!(line("chocon", &bare), want);
    }

    const JSON_KEYS: [&str; 33] = [
        "time",
        "client",
        "method",
        "uri",
        "proto",
        "host",
        "status",
        "bytes_sent",
        "bytes_received",
        "duration_ms",
        "request_id",
        "origin",
        "upstream_addr",
        "reused",
        "protocol",
        "dns_ms",
        "connect_ms",
        "tls_ms",
        "queue_ms",
        "header_ms",
        "upstream_ms",
        "retries",
        "retry_rule",
        "connect_attempts",
        "aws_request_id",
        "access_key",
        "service",
        "region",
        "user_agent",
        "referer",
        "error",
        "balancer",
        "vpce",
    ];

    #[test]
    fn json_preset_golden() {
        let want = concat!(
            r#"{"time":"2024-01-02T03:04:05.678Z","client":"192.0.2.10","method":"GET","#,
            r#""uri":"/bucket/key%20x?list-type=2&prefix=a","proto":"HTTP/1.1","#,
            r#""host":"s3.amazonaws.com.ccnproxy-https:3000","status":200,"bytes_sent":1234,"bytes_received":56,"#,
            r#""duration_ms":12.345,"request_id":"cid-1","origin":"https://s3.amazonaws.com:443","#,
            r#""upstream_addr":"52.216.1.2:443","reused":false,"protocol":"h1","dns_ms":1.500,"connect_ms":2.250,"#,
            r#""tls_ms":10.000,"queue_ms":0.000,"header_ms":30.125,"upstream_ms":40.500,"retries":1,"#,
            r#""retry_rule":"idempotent-replay","connect_attempts":2,"#,
            r#""aws_request_id":"REQ123","access_key":"AKIDEXAMPLE","service":"s3","region":"us-east-1","#,
            r#""user_agent":"aws-cli/2 \"q\" back\\slash\ttab é \ufffd","referer":null,"error":null,"#,
            r#""balancer":null,"vpce":null}"#,
            "\n",
        );
        assert_eq!(line("json", &sample_record()), want);
    }

    #[test]
    fn json_preset_parses_back_with_typed_fields() {
        let mut hostile = refused();
        hostile.host = "h\0st\u{1}\u{7f}\u{2028}".to_owned();
        hostile.request_headers.insert(
            "referer",
            HeaderValue::from_bytes(b"\"</script>\xfe\xc3").expect("obs-text"),
        );
        for record in [sample_record(), refused(), hostile] {
            let text = line("json", &record);
            assert_eq!(text.matches('\n').count(), 1, "one line: {text}");
            let value: serde_json::Value = serde_json::from_str(&text).expect(&text);
            let object = value.as_object().expect("an object");
            let keys: Vec<&str> = object.keys().map(String::as_str).collect();
            let mut want = JSON_KEYS.to_vec();
            want.sort_unstable();
            assert_eq!(keys, want, "exactly the documented keys");
            let time = object["time"].as_str().expect("time");
            chrono::DateTime::parse_from_rfc3339(time).expect("RFC 3339");
            assert_eq!(object["status"].as_u64(), Some(u64::from(record.status)));
            assert_eq!(object["bytes_sent"].as_u64(), Some(record.bytes_sent));
            assert!(object["duration_ms"].is_f64());
            assert_eq!(object["host"].as_str(), Some(record.host.as_str()));
            match &record.upstream {
                Some(t) => {
                    assert_eq!(object["reused"].as_bool(), Some(t.reused));
                    assert_eq!(object["retries"].as_u64(), Some(u64::from(t.retries)));
                    assert_eq!(
                        object["connect_attempts"].as_u64(),
                        Some(u64::from(t.connect_attempts))
                    );
                    for key in [
                        "dns_ms",
                        "connect_ms",
                        "tls_ms",
                        "queue_ms",
                        "header_ms",
                        "upstream_ms",
                    ] {
                        assert!(object[key].is_f64(), "{key}");
                    }
                }
                None => {
                    for key in [
                        "upstream_addr",
                        "reused",
                        "protocol",
                        "dns_ms",
                        "upstream_ms",
                        "retries",
                        "access_key",
                    ] {
                        assert!(object[key].is_null(), "{key}");
                    }
                }
            }
            assert_eq!(object["error"].as_str(), record.error.as_deref());
        }
    }

    #[test]
    fn every_preset_compiles() {
        for preset in PRESETS {
            assert!(Format::compile(preset).is_ok(), "{preset}");
        }
    }
}
