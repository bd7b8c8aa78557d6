//! The Prometheus text exposition format 0.0.4 and OpenMetrics 1.0 text, parsed line by
//! line without copying: each sample is handed to a callback as borrowed slices.
//! Specs: <https://prometheus.io/docs/instrumenting/exposition_formats/> and
//! <https://github.com/OpenObservability/OpenMetrics/blob/main/specification/OpenMetrics.md>.
//!
//! `# TYPE` sets the family's type; `# HELP`, `# UNIT` and other comments are skipped;
//! `# EOF` ends an OpenMetrics exposition. Label values are unescaped (`\\`, `\"`, `\n`);
//! values may be `NaN`, `+Inf`, `-Inf`; an optional timestamp is milliseconds (text) or
//! seconds with a fraction (OpenMetrics); an OpenMetrics exemplar (` # {...} v`) is
//! skipped. Any other line is an error with its line number: like Prometheus, a scrape
//! whose body does not parse fails as a whole.
//!
//! Owns: syntax. Never: allocates per sample except for an escaped label value.

use std::borrow::Cow;

/// A family's declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// `gaugehistogram`.
    GaugeHistogram,
    /// `summary`.
    Summary,
    /// `untyped`, `unknown`, `info`, `stateset`, or no `# TYPE`.
    Untyped,
}

/// One parsed sample, borrowing from the body.
#[derive(Debug, PartialEq)]
pub struct Sample<'a> {
    /// The sample's full name (`http_requests_total`, `rpc_seconds_bucket`).
    pub name: &'a str,
    /// Labels in exposition order.
    pub labels: &'a [(&'a str, Cow<'a, str>)],
    /// The value.
    pub value: f64,
    /// The exposed timestamp in milliseconds, if any.
    pub timestamp_ms: Option<i64>,
    /// The type of the family the sample belongs to.
    pub kind: Kind,
    /// True for a histogram's or summary's `_bucket`/`_count`/`_sum` (cumulative), false
    /// for a summary's quantiles and `_created`.
    pub cumulative: bool,
}

/// Why a body does not parse.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: &'static str,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Parses `body`, calling `each` for every sample until it returns `false`. Stops at the
/// first error.
pub fn parse<'a>(
    body: &'a str,
    mut each: impl FnMut(&Sample<'_>) -> bool,
) -> Result<(), ParseError> {
    let mut family: (&str, Kind) = ("", Kind::Untyped);
    let mut labels: Vec<(&'a str, Cow<'a, str>)> = Vec::with_capacity(8);
    for (index, line) in body.split('\n').enumerate() {
        let error = |reason| ParseError {
            line: index + 1,
            reason,
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim_start_matches(' ');
            if comment == "EOF" {
                break;
            }
            if let Some(rest) = comment.strip_prefix("TYPE ") {
                let mut parts = rest.split_ascii_whitespace();
                let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                    return Err(error("malformed TYPE line"));
                };
                if !valid_name(name) {
                    return Err(error("invalid metric name in TYPE line"));
                }
                family = (
                    name,
                    kind_of(kind).ok_or_else(|| error("unknown metric type"))?,
                );
            }
            continue;
        }
        labels.clear();
        let (name, value, timestamp_ms) = sample_line(line, &mut labels).map_err(error)?;
        let (kind, cumulative) = classify(name, family);
        let more = each(&Sample {
            name,
            labels: &labels,
            value,
            timestamp_ms,
            kind,
            cumulative,
        });
        if !more {
            break;
        }
    }
    Ok(())
}

fn kind_of(text: &str) -> Option<Kind> {
    Some(match text {
        "counter" => Kind::Counter,
        "gauge" => Kind::Gauge,
        "histogram" => Kind::Histogram,
        "gaugehistogram" => Kind::GaugeHistogram,
        "summary" => Kind::Summary,
        "untyped" | "unknown" | "info" | "stateset" => Kind::Untyped,
        _ => return None,
    })
}

/// The family type that applies to sample `name`, and whether it is cumulative.
fn classify(name: &str, (family, kind): (&str, Kind)) -> (Kind, bool) {
    let Some(suffix) = name.strip_prefix(family) else {
        return (Kind::Untyped, false);
    };
    match (kind, suffix) {
        (Kind::Counter, "" | "_total") => (Kind::Counter, true),
        (Kind::Gauge, "") | (Kind::Untyped, "") => (kind, false),
        (Kind::Histogram, "_bucket" | "_count" | "_sum") => (kind, true),
        (Kind::GaugeHistogram, "_bucket" | "_gcount" | "_gsum") => (kind, false),
        (Kind::Summary, "_count" | "_sum") => (kind, true),
        (Kind::Summary, "") => (kind, false),
        (_, "_created") => (kind, false),
        _ => (Kind::Untyped, false),
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && !bytes[0].is_ascii_digit()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b':')
}

type Parsed<'a> = (&'a str, f64, Option<i64>);

fn sample_line<'a>(
    line: &'a str,
    labels: &mut Vec<(&'a str, Cow<'a, str>)>,
) -> Result<Parsed<'a>, &'static str> {
    let name_end = line
        .find(['{', ' ', '\t'])
        .ok_or("a sample without a value")?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return Err("invalid metric name");
    }
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        rest = label_set(after, labels)?;
    }
    let rest = rest.trim_start_matches([' ', '\t']);
    let (value_text, rest) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    let value = parse_value(value_text).ok_or("invalid value")?;
    let rest = rest.trim_start_matches([' ', '\t']);
    if rest.is_empty() || rest.starts_with('#') {
        return Ok((name, value, None));
    }
    let (timestamp_text, rest) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    let rest = rest.trim_start_matches([' ', '\t']);
    if !rest.is_empty() && !rest.starts_with('#') {
        return Err("text after the timestamp");
    }
    let timestamp_ms = if timestamp_text.contains(['.', 'e', 'E']) {
        // OpenMetrics: seconds.
        let seconds: f64 = timestamp_text.parse().map_err(|_| "invalid timestamp")?;
        if !seconds.is_finite() {
            return Err("invalid timestamp");
        }
        (seconds * 1000.0).round() as i64
    } else {
        timestamp_text.parse().map_err(|_| "invalid timestamp")?
    };
    Ok((name, value, Some(timestamp_ms)))
}

/// Parses `name="value",...}`; returns what follows the `}`.
fn label_set<'a>(
    mut rest: &'a str,
    labels: &mut Vec<(&'a str, Cow<'a, str>)>,
) -> Result<&'a str, &'static str> {
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let eq = rest.find('=').ok_or("unterminated label set")?;
        let name = rest[..eq].trim_end_matches([' ', '\t']);
        if !valid_name(name) || name.contains(':') {
            return Err("invalid label name");
        }
        let after = rest[eq + 1..].trim_start_matches([' ', '\t']);
        let quoted = after.strip_prefix('"').ok_or("label value not quoted")?;
        let (value, after) = label_value(quoted)?;
        if labels.iter().any(|(k, _)| *k == name) {
            return Err("duplicate label name");
        }
        labels.push((name, value));
        rest = after.trim_start_matches([' ', '\t']);
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("expected , or } after a label");
        }
    }
}

/// A quoted value's content up to the closing quote, unescaped; and what follows.
fn label_value(text: &str) -> Result<(Cow<'_, str>, &str), &'static str> {
    let bytes = text.as_bytes();
    let Some(end) = bytes.iter().position(|b| *b == b'"' || *b == b'\\') else {
        return Err("unterminated label value");
    };
    if bytes[end] == b'"' {
        return Ok((Cow::Borrowed(&text[..end]), &text[end + 1..]));
    }
    let mut value = String::with_capacity(text.len().min(256));
    value.push_str(&text[..end]);
    let mut chars = text[end..].char_indices();
    while let Some((i, ch)) = chars.next() {
        match ch {
            '"' => return Ok((Cow::Owned(value), &text[end + i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => return Err("unterminated label value"),
            },
            ch => value.push(ch),
        }
    }
    Err("unterminated label value")
}

/// A float, or `NaN`, `+Inf`, `-Inf`, `Inf` (any case).
fn parse_value(text: &str) -> Option<f64> {
    if let Ok(value) = text.parse::<f64>() {
        return Some(value);
    }
    match text.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "+inf" | "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// body → `name{k=v,...} value ts kind cumulative` per sample, or the error.
    fn check(body: &str, expected: Result<&[&str], ParseError>) {
        let mut got = Vec::new();
        let result = parse(body, |s| {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            got.push(format!(
                "{}{{{}}} {} {:?} {:?} {}",
                s.name,
                labels.join(","),
                s.value,
                s.timestamp_ms,
                s.kind,
                s.cumulative
            ));
            true
        });
        match expected {
            Ok(lines) => {
                assert_eq!(result, Ok(()), "{body}");
                assert_eq!(got, lines, "{body}");
            }
            Err(error) => assert_eq!(result, Err(error), "{body}"),
        }
    }

    #[test]
    fn text_format() {
        check(
            "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"a\\\"b\\\\c\\nd\"} 3 1700000000000\n\
             # TYPE g gauge\ng -Inf\ng{z=\"\"} NaN\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n\
             # TYPE s summary\ns{quantile=\"0.5\"} 1e3\ns_sum 2\ns_count 1\nloose 1\r\n",
            Ok(&[
                "a_total{x=1,y=a\"b\\c\nd} 3 Some(1700000000000) Counter true",
                "g{} -inf None Gauge false",
                "g{z=} NaN None Gauge false",
                "h_bucket{le=0.5} 1 None Histogram true",
                "h_bucket{le=+Inf} 2 None Histogram true",
                "h_sum{} 0.7 None Histogram true",
                "h_count{} 2 None Histogram true",
                "s{quantile=0.5} 1000 None Summary false",
                "s_sum{} 2 None Summary true",
                "s_count{} 1 None Summary true",
                "loose{} 1 None Untyped false",
            ]),
        );
    }

    #[test]
    fn openmetrics() {
        check(
            "# TYPE c counter\n# UNIT c seconds\nc_total 1.5 1700000000.5 # {trace_id=\"x\"} 1\nc_created 1.7e9\n# EOF\nafter 1\n",
            Ok(&[
                "c_total{} 1.5 Some(1700000000500) Counter true",
                "c_created{} 1700000000 None Counter false",
            ]),
        );
    }

    #[test]
    fn malformed() {
        for (body, line, reason) in [
            ("a{b=\"c} 1\n", 1, "unterminated label value"),
            ("ok 1\na{b=\"c\"", 2, "expected , or } after a label"),
            ("a{b=\"c\"} 1 2 3\n", 1, "text after the timestamp"),
            ("a one\n", 1, "invalid value"),
            ("1a 1\n", 1, "invalid metric name"),
            ("a{b=c} 1\n", 1, "label value not quoted"),
            ("a{b=\"1\",b=\"2\"} 1\n", 1, "duplicate label name"),
            ("a{b=\"1\" c=\"2\"} 1\n", 1, "expected , or } after a label"),
            ("# TYPE a flavour\n", 1, "unknown metric type"),
            ("a 1 notatime\n", 1, "invalid timestamp"),
            ("a{", 1, "unterminated label set"),
            ("a\n", 1, "a sample without a value"),
            ("a{b=\"\\", 1, "unterminated label value"),
        ] {
            check(body, Err(ParseError { line, reason }));
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(body in "[ -~\n{}\"\\\\=,#]{0,200}") {
            let _ = parse(&body, |_| true);
        }
    }
}
