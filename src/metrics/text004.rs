//! Prometheus text format 0.0.4 for scrapers that ask for it, made from the
//! OpenMetrics text the encoder writes (one exposition, two spellings, so
//! the two can never disagree on a value). The differences that matter
//! (OpenMetrics 1.0 §"Backwards compatibility", the Prometheus exposition
//! format):
//!
//! - a family's `# TYPE`/`# HELP` name is its samples' name: a counter
//!   family `x` (samples `x_total`) is `x_total`, an info family `x`
//!   (samples `x_info`) is the gauge `x_info`;
//! - there is no `info`, `stateset`, `gaugehistogram` nor `unknown` type
//!   (`gauge`, `untyped`), no `# UNIT`, no `# EOF`, no exemplars and no
//!   `_created` samples;
//! - `# HELP` escapes only `\\` and `\n` (OpenMetrics also escapes `"`).
//!
//! Label values and sample values are written the same way in both.
//! `wants_text_004` reads a scraper's `Accept`.

/// `Content-Type` of the 0.0.4 exposition.
pub const CONTENT_TYPE_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether `accept` prefers Prometheus text 0.0.4 to OpenMetrics: its
/// quality for `text/plain` (no version, or `version=0.0.4`) is above the
/// one for `application/openmetrics-text`. Without an `Accept`, or on a
/// tie, OpenMetrics.
pub fn wants_text_004(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return false };
    let text = quality(accept, "text", "plain", Some("0.0.4"));
    let open = quality(accept, "application", "openmetrics-text", None);
    text > open
}

/// The quality `accept` gives `kind/sub`, from the most specific range that
/// matches it (`kind/sub`, then `kind/*`, then `*/*`), in thousandths; 0
/// when none does. `version`, when given, must be the range's version
/// parameter if it has one.
fn quality(accept: &str, kind: &str, sub: &str, version: Option<&str>) -> u16 {
    let mut best: Option<(u8, u16)> = None;
    for range in accept.split(',') {
        let mut params = range.split(';').map(str::trim);
        let Some((k, s)) = params.next().and_then(|t| t.split_once('/')) else {
            continue;
        };
        let specificity = match (k.trim(), s.trim()) {
            (k, s) if k.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(sub) => 2,
            (k, "*") if k.eq_ignore_ascii_case(kind) => 1,
            ("*", "*") => 0,
            _ => continue,
        };
        let mut q = 1000;
        let mut version_ok = true;
        for param in params {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "q" => q = parse_q(value),
                "version" => version_ok = version.is_none_or(|v| v == value),
                _ => {}
            }
        }
        if !version_ok {
            continue;
        }
        if best.is_none_or(|(spec, _)| specificity > spec) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0, |(_, q)| q)
}

/// RFC 9110 §12.4.2 `qvalue` in thousandths; anything unreadable is 0.
fn parse_q(value: &str) -> u16 {
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    let whole = match int {
        "0" => 0,
        "1" => 1000,
        _ => return 0,
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    let digits: u16 = format!("{frac:0<3}").parse().unwrap_or(0);
    (whole + digits).min(1000)
}

/// One family's metadata, held until its type is known.
#[derive(Default)]
struct Family<'a> {
    name: &'a str,
    help: Option<&'a str>,
    kind: Option<&'a str>,
}

impl Family<'_> {
    /// The 0.0.4 name and type.
    fn spelled(&self) -> (String, &'static str) {
        match self.kind.unwrap_or("unknown") {
            "counter" => (format!("{}_total", self.name), "counter"),
            "info" => (format!("{}_info", self.name), "gauge"),
            "gauge" => (self.name.to_owned(), "gauge"),
            "histogram" => (self.name.to_owned(), "histogram"),
            "summary" => (self.name.to_owned(), "summary"),
            _ => (self.name.to_owned(), "untyped"),
        }
    }

    fn write(&self, out: &mut String) {
        let (name, kind) = self.spelled();
        if let Some(help) = self.help {
            out.push_str("# HELP ");
            out.push_str(&name);
            out.push(' ');
            out.push_str(&help.replace("\\\"", "\""));
            out.push('\n');
        }
        out.push_str("# TYPE ");
        out.push_str(&name);
        out.push(' ');
        out.push_str(kind);
        out.push('\n');
    }
}

/// The 0.0.4 text of an OpenMetrics exposition.
pub fn to_text_004(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut family = Family::default();
    let mut pending = false;
    for line in openmetrics.lines() {
        if let Some(meta) = line.strip_prefix("# ") {
            let mut words = meta.splitn(3, ' ');
            let (Some(what), Some(name)) = (words.next(), words.next()) else {
                continue;
            };
            let rest = words.next();
            if name != family.name {
                if pending {
                    family.write(&mut out);
                }
                family = Family {
                    name,
                    ..Family::default()
                };
                pending = true;
            }
            match what {
                "HELP" => family.help = rest,
                "TYPE" => family.kind = rest,
                _ => {} // UNIT, and EOF (whose "name" is absent)
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        if pending {
            family.write(&mut out);
            pending = false;
        }
        let sample_name = line.split(['{', ' ']).next().unwrap_or_default();
        if sample_name.ends_with("_created") && family.name != sample_name {
            continue;
        }
        // An exemplar follows ` # ` after the value; a label value may
        // hold ` # ` too, so look for it only after the label set.
        let labels_end = if line[sample_name.len()..].starts_with('{') {
            closing_brace(line).map_or(line.len(), |i| i + 1)
        } else {
            sample_name.len()
        };
        let sample = match line[labels_end..].find(" # ") {
            Some(i) => &line[..labels_end + i],
            None => line,
        };
        out.push_str(sample);
        out.push('\n');
    }
    if pending {
        family.write(&mut out);
    }
    out
}

/// The index of the `}` that closes a sample's label set (label values
/// are quoted, with `\"` and `\\` escapes).
fn closing_brace(line: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in line.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_own_accept_header_gets_openmetrics() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                          version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(!wants_text_004(Some(prometheus)));
        assert!(!wants_text_004(None));
        assert!(!wants_text_004(Some("*/*")));
        assert!(!wants_text_004(Some(
            "application/openmetrics-text, text/plain"
        )));
    }

    #[test]
    fn a_scraper_that_prefers_text_gets_0_0_4() {
        for accept in [
            "text/plain;version=0.0.4",
            "text/plain; version=0.0.4; charset=utf-8",
            "text/plain",
            "TEXT/PLAIN;q=0.9, application/openmetrics-text;q=0.5",
            "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            "text/*",
        ] {
            assert!(wants_text_004(Some(accept)), "{accept}");
        }
        // A text/plain of another version is not 0.0.4.
        assert!(!wants_text_004(Some("text/plain;version=1.0.0")));
        assert!(!wants_text_004(Some("text/plain;q=0")));
    }

    #[test]
    fn qvalues_parse_as_rfc_9110_says() {
        assert_eq!(parse_q("1"), 1000);
        assert_eq!(parse_q("1.000"), 1000);
        assert_eq!(parse_q("0.5"), 500);
        assert_eq!(parse_q("0.125"), 125);
        assert_eq!(parse_q("0"), 0);
        assert_eq!(parse_q("2"), 0);
        assert_eq!(parse_q("0.1234"), 0);
        assert_eq!(parse_q("x"), 0);
    }

    #[test]
    fn families_are_renamed_and_openmetrics_only_lines_dropped() {
        let om = concat!(
            "# HELP ccnproxy_requests Requests \\\"finished\\\".\n",
            "# TYPE ccnproxy_requests counter\n",
            "ccnproxy_requests_total{origin=\"a } # b\",method=\"GET\"} 3 # {trace_id=\"x\"} 1.0\n",
            "ccnproxy_requests_created{origin=\"a\"} 1.7e9\n",
            "# HELP ccnproxy_build Build.\n",
            "# TYPE ccnproxy_build info\n",
            "ccnproxy_build_info{version=\"1\"} 1\n",
            "# HELP ccnproxy_heap_bytes Heap.\n",
            "# TYPE ccnproxy_heap_bytes gauge\n",
            "# UNIT ccnproxy_heap_bytes bytes\n",
            "ccnproxy_heap_bytes 12\n",
            "# HELP ccnproxy_empty Nothing yet.\n",
            "# TYPE ccnproxy_empty counter\n",
            "# HELP d Durations.\n",
            "# TYPE d histogram\n",
            "d_bucket{le=\"+Inf\"} 2\n",
            "d_sum 0.5\n",
            "d_count 2\n",
            "# EOF\n",
        );
        let want = concat!(
            "# HELP ccnproxy_requests_total Requests \"finished\".\n",
            "# TYPE ccnproxy_requests_total counter\n",
            "ccnproxy_requests_total{origin=\"a } # b\",method=\"GET\"} 3\n",
            "# HELP ccnproxy_build_info Build.\n",
            "# TYPE ccnproxy_build_info gauge\n",
            "ccnproxy_build_info{version=\"1\"} 1\n",
            "# HELP ccnproxy_heap_bytes Heap.\n",
            "# TYPE ccnproxy_heap_bytes gauge\n",
            "ccnproxy_heap_bytes 12\n",
            "# HELP ccnproxy_empty_total Nothing yet.\n",
            "# TYPE ccnproxy_empty_total counter\n",
            "# HELP d Durations.\n",
            "# TYPE d histogram\n",
            "d_bucket{le=\"+Inf\"} 2\n",
            "d_sum 0.5\n",
            "d_count 2\n",
        );
        assert_eq!(to_text_004(om), want);
    }
}
