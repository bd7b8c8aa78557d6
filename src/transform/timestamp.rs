//! `type: parse_timestamp`: reads a time from a field and makes it the event's timestamp.
//! Also home of [`TimeFormat`], which `parse_regex`'s `timestamp:<format>` conversion uses.
//!
//! ```yaml
//! - type: parse_timestamp
//!   field: time
//!   formats: ["%d/%b/%Y:%H:%M:%S %z", rfc3339, unix_ms]
//!   timezone: "+02:00"      # for formats without an offset; default UTC
//! ```
//!
//! Formats are tried in order; the first that parses wins. A value that no format parses
//! leaves the event unchanged (its timestamp stays the read time) and is counted as
//! `sluice_transform_failures_total{reason="timestamp"}`.
//!
//! Owns: time formats and the parse_timestamp transform. Never: panics on any input.

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, Datelike, FixedOffset, NaiveTime, Utc};
use serde::Deserialize;

use super::TransformContext;
use crate::event::{Event, LogEvent, Timestamp, Value};
use crate::telemetry::Counter;

/// One accepted time layout.
#[derive(Debug, Clone)]
pub enum TimeFormat {
    /// RFC 3339 / ISO 8601 with an offset (`2024-05-01T12:00:00.5Z`).
    Rfc3339,
    /// Seconds since the Unix epoch (integer, decimal, or numeric text).
    Unix,
    /// Milliseconds since the Unix epoch.
    UnixMs,
    /// Nanoseconds since the Unix epoch.
    UnixNs,
    /// A strftime pattern, compiled once.
    Strftime(Vec<Item<'static>>),
}

impl TimeFormat {
    /// Parses a format name: `rfc3339`, `unix`, `unix_ms`, `unix_ns`, or a strftime pattern.
    pub fn new(text: &str) -> anyhow::Result<TimeFormat> {
        Ok(match text {
            "rfc3339" => TimeFormat::Rfc3339,
            "unix" => TimeFormat::Unix,
            "unix_ms" => TimeFormat::UnixMs,
            "unix_ns" => TimeFormat::UnixNs,
            pattern => {
                anyhow::ensure!(pattern.contains('%'), "time format {pattern:?} has no % specifier; expected a strftime pattern, rfc3339, unix, unix_ms or unix_ns");
                let items = StrftimeItems::new(pattern)
                    .parse_to_owned()
                    .map_err(|_| anyhow::anyhow!("invalid strftime pattern {pattern:?}"))?;
                TimeFormat::Strftime(items)
            }
        })
    }

    /// Parses `value`; times without an offset are taken to be at `timezone`.
    pub fn parse(&self, value: &Value, timezone: FixedOffset) -> Option<Timestamp> {
        match self {
            TimeFormat::Unix => epoch(value, 1e9),
            TimeFormat::UnixMs => epoch(value, 1e6),
            TimeFormat::UnixNs => epoch(value, 1.0),
            TimeFormat::Rfc3339 => DateTime::parse_from_rfc3339(value.as_str()?.trim())
                .ok()
                .map(|t| Timestamp::from_datetime(&t)),
            TimeFormat::Strftime(items) => strftime(items, value.as_str()?, timezone),
        }
    }
}

fn epoch(value: &Value, nanos_per_unit: f64) -> Option<Timestamp> {
    if let Value::Int(n) = value {
        let nanos = n.checked_mul(nanos_per_unit as i64)?;
        return Some(Timestamp(nanos));
    }
    let text = value.to_text();
    if let Ok(n) = text.trim().parse::<i64>() {
        return Some(Timestamp(n.checked_mul(nanos_per_unit as i64)?));
    }
    // Whole and fractional units apart, so `1700000000.25` keeps its exact fraction.
    let x = value.as_f64()?;
    let whole = x.trunc() * nanos_per_unit;
    if !whole.is_finite() || whole.abs() >= i64::MAX as f64 {
        return None;
    }
    let fraction = (x.fract() * nanos_per_unit).round();
    (whole as i64).checked_add(fraction as i64).map(Timestamp)
}

fn strftime(items: &[Item<'static>], text: &str, timezone: FixedOffset) -> Option<Timestamp> {
    let mut parsed = Parsed::new();
    chrono::format::parse(&mut parsed, text.trim(), items.iter()).ok()?;
    if parsed.offset().is_some() {
        return parsed
            .to_datetime()
            .ok()
            .map(|t| Timestamp::from_datetime(&t));
    }
    if parsed.year().is_none() && parsed.year_div_100().is_none() {
        // Layouts like syslog's `%b %e %H:%M:%S` have no year: assume the current one.
        parsed.set_year(i64::from(Utc::now().year())).ok()?;
    }
    let offset = timezone.local_minus_utc();
    let naive = match parsed.to_naive_datetime_with_offset(offset) {
        Ok(naive) => naive,
        // Date-only layouts: midnight.
        Err(_) => parsed.to_naive_date().ok()?.and_time(NaiveTime::MIN),
    };
    let utc = naive.checked_sub_offset(timezone)?;
    Some(Timestamp::from_datetime(&utc.and_utc()))
}

/// Parses a `timezone` setting: `UTC`, `Z`, or a fixed offset `+02:00` / `-0530`.
pub fn parse_timezone(text: &str) -> anyhow::Result<FixedOffset> {
    let bad = || {
        anyhow::anyhow!("timezone {text:?} must be UTC or a fixed offset like +02:00 (named zones are not supported)")
    };
    if text.eq_ignore_ascii_case("utc") || text == "Z" {
        return FixedOffset::east_opt(0).ok_or_else(bad);
    }
    let (sign, rest) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => return Err(bad()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let hours: i32 = digits[..2].parse().map_err(|_| bad())?;
    let minutes: i32 = digits[2..].parse().map_err(|_| bad())?;
    anyhow::ensure!(hours < 24 && minutes < 60, bad());
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60)).ok_or_else(bad)
}

/// `type: parse_timestamp` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseTimestampConfig {
    /// Field holding the time (`message` for the line itself).
    pub field: String,
    /// Layouts tried in order: strftime patterns (`%d/%b/%Y:%H:%M:%S %z`), `rfc3339`,
    /// `unix` (seconds), `unix_ms` or `unix_ns`.
    pub formats: Vec<String>,
    /// Zone for layouts without an offset: `UTC` (default) or a fixed offset like `+02:00`.
    /// Named zones (`Europe/Paris`) are not supported.
    #[serde(default)]
    pub timezone: Option<String>,
}

impl ParseTimestampConfig {
    /// Compiles the formats and the timezone.
    pub fn build(&self, ctx: &TransformContext) -> anyhow::Result<ParseTimestamp> {
        anyhow::ensure!(!self.field.is_empty(), "field must not be empty");
        anyhow::ensure!(
            !self.formats.is_empty(),
            "formats needs at least one format"
        );
        let formats = self
            .formats
            .iter()
            .map(|f| TimeFormat::new(f))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let timezone = parse_timezone(self.timezone.as_deref().unwrap_or("UTC"))?;
        Ok(ParseTimestamp {
            field: self.field.clone(),
            formats: formats.into(),
            timezone,
            failures: ctx.failures("timestamp"),
            last: None,
        })
    }
}

/// A built parse_timestamp transform.
#[derive(Debug, Clone)]
pub struct ParseTimestamp {
    field: String,
    formats: std::sync::Arc<[TimeFormat]>,
    timezone: FixedOffset,
    failures: Counter,
    /// The last text parsed and its result: consecutive lines often share their time.
    last: Option<(String, Timestamp)>,
}

impl ParseTimestamp {
    /// Sets each log event's timestamp from its field.
    pub fn process(&mut self, events: Vec<Event>, out: &mut Vec<Event>) {
        super::retain_into(events, out, |event| {
            if let Event::Log(log) = event {
                self.apply(log);
            }
            true
        });
    }

    fn apply(&mut self, log: &mut LogEvent) {
        let Some(value) = log.lookup(&self.field) else {
            self.failures.inc();
            return;
        };
        if let (Some(text), Some((last_text, last_time))) = (value.as_str(), &self.last) {
            if text == last_text {
                log.timestamp = *last_time;
                return;
            }
        }
        let parsed = self
            .formats
            .iter()
            .find_map(|format| format.parse(value, self.timezone));
        let Some(timestamp) = parsed else {
            self.failures.inc();
            return;
        };
        if let Some(text) = value.as_str() {
            match &mut self.last {
                Some((last_text, last_time)) => {
                    last_text.clear();
                    last_text.push_str(text);
                    *last_time = timestamp;
                }
                None => self.last = Some((text.to_owned(), timestamp)),
            }
        }
        log.timestamp = timestamp;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(formats: &[&str], timezone: Option<&str>, input: Value, expected: Option<&str>) {
        let config = ParseTimestampConfig {
            field: "time".into(),
            formats: formats.iter().map(|f| f.to_string()).collect(),
            timezone: timezone.map(str::to_owned),
        };
        let mut transform = config.build(&TransformContext::for_tests()).unwrap();
        let mut event = LogEvent::new("line");
        event.timestamp = Timestamp(7);
        event.insert("time", input.clone());
        // Twice: the second run goes through the one-entry cache.
        for _ in 0..2 {
            let mut out = Vec::new();
            transform.process(vec![Event::Log(event.clone())], &mut out);
            let Some(Event::Log(got)) = out.pop() else {
                panic!("event lost")
            };
            let want = expected.map_or(Timestamp(7), |t| {
                Timestamp::from_datetime(&DateTime::parse_from_rfc3339(t).unwrap())
            });
            assert_eq!(got.timestamp, want, "{formats:?} {input:?}");
            assert_eq!(got.get("time"), Some(&input), "field kept");
        }
    }

    #[test]
    fn parses_formats() {
        let apache = "%d/%b/%Y:%H:%M:%S %z";
        check(
            &[apache],
            None,
            "10/Oct/2023:13:55:36 -0700".into(),
            Some("2023-10-10T20:55:36Z"),
        );
        check(&[apache], None, "10/Oct/2023:13:55:36".into(), None);
        check(
            &["rfc3339"],
            None,
            "2024-05-01T12:00:00.5+02:00".into(),
            Some("2024-05-01T10:00:00.5Z"),
        );
        check(&["rfc3339"], None, "yesterday".into(), None);
        check(
            &["unix"],
            None,
            Value::Int(1_700_000_000),
            Some("2023-11-14T22:13:20Z"),
        );
        check(
            &["unix"],
            None,
            Value::Float(1_700_000_000.25),
            Some("2023-11-14T22:13:20.25Z"),
        );
        check(
            &["unix"],
            None,
            "1700000000".into(),
            Some("2023-11-14T22:13:20Z"),
        );
        check(
            &["unix_ms"],
            None,
            Value::Int(1_700_000_000_123),
            Some("2023-11-14T22:13:20.123Z"),
        );
        check(
            &["unix_ns"],
            None,
            Value::Int(5),
            Some("1970-01-01T00:00:00.000000005Z"),
        );
        check(&["unix"], None, Value::Int(i64::MAX), None);
        check(&["unix"], None, "soon".into(), None);
        check(
            &["unix"],
            None,
            Value::Bool(true),
            Some("1970-01-01T00:00:01Z"),
        );
        check(
            &["%Y-%m-%d %H:%M:%S"],
            None,
            "2024-01-02 03:04:05".into(),
            Some("2024-01-02T03:04:05Z"),
        );
        check(
            &["%Y-%m-%d %H:%M:%S"],
            Some("+02:00"),
            "2024-01-02 03:04:05".into(),
            Some("2024-01-02T01:04:05Z"),
        );
        check(
            &["%Y-%m-%d %H:%M:%S"],
            Some("-0530"),
            "2024-01-02 03:04:05".into(),
            Some("2024-01-02T08:34:05Z"),
        );
        check(
            &["%Y-%m-%d"],
            None,
            "2024-01-02".into(),
            Some("2024-01-02T00:00:00Z"),
        );
        check(
            &["rfc3339", "%Y-%m-%d"],
            None,
            "2024-01-02".into(),
            Some("2024-01-02T00:00:00Z"),
        );
        check(&["%Y-%m-%d"], None, "2024-01-02\u{FFFD}".into(), None);
        check(&["%Y-%m-%d"], None, Value::Int(3), None);
        check(&["%Y-%m-%d"], None, "".into(), None);
    }

    #[test]
    fn missing_field_is_counted_not_fatal() {
        let ctx = TransformContext::for_tests();
        let config = ParseTimestampConfig {
            field: "t".into(),
            formats: vec!["unix".into()],
            timezone: None,
        };
        let mut transform = config.build(&ctx).unwrap();
        let before = ctx.failures("timestamp").get();
        let mut out = Vec::new();
        transform.process(vec![Event::Log(LogEvent::new("x"))], &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(ctx.failures("timestamp").get(), before + 1);
    }

    #[test]
    fn rejects_bad_config() {
        for (format, timezone, error) in [
            ("%Q", None, "invalid strftime"),
            ("dd/mm/yyyy", None, "no % specifier"),
            ("unix", Some("Europe/Paris"), "fixed offset"),
            ("unix", Some("+25:00"), "fixed offset"),
            ("unix", Some("+2"), "fixed offset"),
        ] {
            let config = ParseTimestampConfig {
                field: "t".into(),
                formats: vec![format.into()],
                timezone: timezone.map(str::to_owned),
            };
            let e = config
                .build(&TransformContext::for_tests())
                .unwrap_err()
                .to_string();
            assert!(e.contains(error), "{e}");
        }
    }
}
