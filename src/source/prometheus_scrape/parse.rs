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
    let bytes = body.as_bytes();
    let mut start = 0;
    let mut number = 0;
    while start < bytes.len() {
        number += 1;
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
        // `\n` is ASCII: both ends are character boundaries.
        let line = &body[start..end];
        start = end + 1;
        let error = |reason| ParseError {
            line: number,
            reason,
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        match line.as_bytes().first() {
            None => continue,
            Some(b'#') => match comment(&line[1..]) {
                Comment::Eof => break,
                Comment::Type(Ok(declared)) => family = declared,
                Comment::Type(Err(reason)) => return Err(error(reason)),
                Comment::Other => {}
            },
            Some(_) => {
                labels.clear();
                let (name, value, timestamp_ms) =
                    sample_line(line, family.0, &mut labels).map_err(error)?;
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
        }
    }
    Ok(())
}

/// What a `#` line says.
enum Comment<'a> {
    /// `# EOF`.
    Eof,
    /// `# TYPE name kind`: the family, or why the line is malformed.
    Type(Result<(&'a str, Kind), &'static str>),
    /// `# HELP`, `# UNIT`, anything else.
    Other,
}

/// `comment` is a `#` line without its `#`.
fn comment(comment: &str) -> Comment<'_> {
    let comment = comment.trim_start_matches(' ');
    if comment == "EOF" {
        return Comment::Eof;
    }
    let Some(rest) = comment.strip_prefix("TYPE ") else {
        return Comment::Other;
    };
    // `name kind`, separated and surrounded by ASCII whitespace; more words are ignored.
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
    // One pass: the run of name bytes, which is the whole word when the name is valid.
    let valid_end = name_len(rest.as_bytes(), false);
    let name_end = valid_end
        + rest.as_bytes()[valid_end..]
            .iter()
            .position(u8::is_ascii_whitespace)
            .unwrap_or(rest.len() - valid_end);
    let (name, rest) = rest.split_at(name_end);
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
    let kind = &rest[..rest
        .bytes()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(rest.len())];
    if name.is_empty() || kind.is_empty() {
        return Comment::Type(Err("malformed TYPE line"));
    }
    if name_end != valid_end || name.as_bytes()[0].is_ascii_digit() {
        return Comment::Type(Err("invalid metric name in TYPE line"));
    }
    Comment::Type(
        kind_of(kind)
            .map(|kind| (name, kind))
            .ok_or("unknown metric type"),
    )
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

/// Bytes of a metric name after the first: `[a-zA-Z0-9_:]`; `1` also for a label name
/// (no `:`), `2` for a metric name only.
const NAME_BYTES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        if b.is_ascii_alphanumeric() || b == b'_' {
            table[byte] = 1;
        } else if b == b':' {
            table[byte] = 2;
        }
        byte += 1;
    }
    table
};

/// The length of the run of name bytes at the start of `bytes` (`label`: without `:`).
fn name_len(bytes: &[u8], label: bool) -> usize {
    let allowed = if label { 1 } else { 2 };
    bytes
        .iter()
        .position(|b| !(1..=allowed).contains(&NAME_BYTES[usize::from(*b)]))
        .unwrap_or(bytes.len())
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty() && !bytes[0].is_ascii_digit() && name_len(bytes, false) == bytes.len()
}

fn is_blank(byte: &u8) -> bool {
    *byte == b' ' || *byte == b'\t'
}

/// `text` without its leading spaces and tabs.
fn skip_blanks(text: &str) -> &str {
    let blanks = text.bytes().take_while(is_blank).count();
    &text[blanks..]
}

/// `text` split at its first space or tab: (before, from the blank on).
fn split_at_blank(text: &str) -> (&str, &str) {
    let at = text
        .bytes()
        .position(|b| is_blank(&b))
        .unwrap_or(text.len());
    text.split_at(at)
}

type Parsed<'a> = (&'a str, f64, Option<i64>);

/// `family` is the name of the last `# TYPE` (valid, or empty).
fn sample_line<'a>(
    line: &'a str,
    family: &str,
    labels: &mut Vec<(&'a str, Cow<'a, str>)>,
) -> Result<Parsed<'a>, &'static str> {
    let bytes = line.as_bytes();
    // Most samples start with their family's name, already checked on its TYPE line.
    let known = if bytes.starts_with(family.as_bytes()) {
        family.len()
    } else {
        0
    };
    let name_end = known + name_len(&bytes[known..], false);
    if !matches!(bytes.get(name_end), Some(b'{' | b' ' | b'\t')) {
        // The name runs up to the first `{`, space or tab: none at all, or another byte
        // before it.
        let delimited = bytes[name_end..]
            .iter()
            .any(|b| matches!(b, b'{' | b' ' | b'\t'));
        return Err(if delimited {
            "invalid metric name"
        } else {
            "a sample without a value"
        });
    }
    if name_end == 0 || bytes[0].is_ascii_digit() {
        return Err("invalid metric name");
    }
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        rest = label_set(after, labels)?;
    }
    let (value_text, rest) = split_at_blank(skip_blanks(rest));
    let value = parse_value(value_text).ok_or("invalid value")?;
    let rest = skip_blanks(rest);
    if rest.is_empty() || rest.starts_with('#') {
        return Ok((name, value, None));
    }
    let (timestamp_text, rest) = split_at_blank(rest);
    let rest = skip_blanks(rest);
    if !rest.is_empty() && !rest.starts_with('#') {
        return Err("text after the timestamp");
    }
    Ok((name, value, Some(timestamp(timestamp_text)?)))
}

/// Milliseconds (text format), or seconds with a fraction or exponent (OpenMetrics).
fn timestamp(text: &str) -> Result<i64, &'static str> {
    if text.contains(['.', 'e', 'E']) {
        let seconds: f64 = text.parse().map_err(|_| "invalid timestamp")?;
        if !seconds.is_finite() {
            return Err("invalid timestamp");
        }
        Ok((seconds * 1000.0).round() as i64)
    } else {
        text.parse().map_err(|_| "invalid timestamp")
    }
}

/// Parses `name="value",...}`; returns what follows the `}`.
fn label_set<'a>(
    mut rest: &'a str,
    labels: &mut Vec<(&'a str, Cow<'a, str>)>,
) -> Result<&'a str, &'static str> {
    loop {
        rest = skip_blanks(rest);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let name_end = name_len(rest.as_bytes(), true);
        let name = &rest[..name_end];
        let after_name = skip_blanks(&rest[name_end..]);
        let Some(after) = after_name.strip_prefix('=') else {
            // The name runs up to the first `=`: none at all, or a byte that is not
            // part of a label name (nor a trailing blank) before it.
            return Err(if rest.contains('=') {
                "invalid label name"
            } else {
                "unterminated label set"
            });
        };
        if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
            return Err("invalid label name");
        }
        let quoted = skip_blanks(after)
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let (value, after) = label_value(quoted)?;
        if labels.iter().any(|(k, _)| *k == name) {
            return Err("duplicate label name");
        }
        labels.push((name, value));
        rest = skip_blanks(after);
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("expected , or } after a label");
        }
    }
}

/// A quoted value's content up to the closing quote, unescaped; and what follows.
fn label_value(text: &str) -> Result<(Cow<'_, str>, &str), &'static str> {
    let Some(end) = memchr::memchr2(b'"', b'\\', text.as_bytes()) else {
        return Err("unterminated label value");
    };
    if text.as_bytes()[end] == b'"' {
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
    // Most values are small integers (counts, bytes, zeros): up to 15 digits fit an
    // f64's 53-bit mantissa exactly, so this is what `f64::from_str` would return.
    let bytes = text.as_bytes();
    if !bytes.is_empty() && bytes.len() <= 15 && bytes.iter().all(u8::is_ascii_digit) {
        let integer = bytes.iter().fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
        return Some(integer as f64);
    }
    if let Ok(value) = text.parse::<f64>() {
        return Some(value);
    }
    if text.eq_ignore_ascii_case("nan") {
        Some(f64::NAN)
    } else if text.eq_ignore_ascii_case("+inf") || text.eq_ignore_ascii_case("inf") {
        Some(f64::INFINITY)
    } else if text.eq_ignore_ascii_case("-inf") {
        Some(f64::NEG_INFINITY)
    } else {
        None
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
            // The name runs to the first `{`, space or tab, whatever it holds.
            ("a-b\n", 1, "a sample without a value"),
            ("a-b 1\n", 1, "invalid metric name"),
            ("\u{e9} 1\n", 1, "invalid metric name"),
            ("# TYPE a gauge\na-b 1\n", 2, "invalid metric name"),
            ("{b=\"1\"} 1\n", 1, "invalid metric name"),
            // A label name runs to the first `=`.
            ("a{b:c=\"1\"} 1\n", 1, "invalid label name"),
            ("a{b c=\"1\"} 1\n", 1, "invalid label name"),
            ("a{1b=\"1\"} 1\n", 1, "invalid label name"),
            ("a{=\"1\"} 1\n", 1, "invalid label name"),
            ("a{b} 1\n", 1, "unterminated label set"),
            ("# TYPE a\n", 1, "malformed TYPE line"),
            ("# TYPE a-b\n", 1, "malformed TYPE line"),
            (
                "# TYPE a-b counter\n",
                1,
                "invalid metric name in TYPE line",
            ),
            ("# TYPE 1a gauge\n", 1, "invalid metric name in TYPE line"),
        ] {
            check(body, Err(ParseError { line, reason }));
        }
    }

    #[test]
    fn names_values_and_families() {
        check(
            "# TYPE a counter extra words\na_total 00012\nab 123456789012345\na{b =\"1\"} 12345678901234567\n\
             # TYPE b\tgauge\nb 1e3\nb{x=\"1\"} inf\nb{x=\"2\"} -Inf\nb{x=\"3\"} +inf\nb{x=\"4\"} NAN\nb{x=\"5\"} -0\n",
            Ok(&[
                "a_total{} 12 None Counter true",
                "ab{} 123456789012345 None Untyped false",
                "a{b=1} 12345678901234568 None Counter true",
                "b{} 1000 None Gauge false",
                "b{x=1} inf None Gauge false",
                "b{x=2} -inf None Gauge false",
                "b{x=3} inf None Gauge false",
                "b{x=4} NaN None Gauge false",
                "b{x=5} -0 None Gauge false",
            ]),
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(body in "[ -~\n{}\"\\\\=,#]{0,200}") {
            let _ = parse(&body, |_| true);
        }
    }
}
