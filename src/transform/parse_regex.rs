//! `type: parse_regex`: named captures of a regex become fields.
//!
//! ```yaml
//! - type: parse_regex
//!   field: message                      # default
//!   pattern: '^(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+)'
//!   types: { status: int, bytes: int, time: "timestamp:%d/%b/%Y:%H:%M:%S %z" }
//! ```
//!
//! With `patterns`, the first that matches wins. Captures that did not take part in the
//! match are not set. A line that no pattern matches is passed on unchanged (or dropped with
//! `drop_unmatched: true`) and counted as `sluice_transform_failures_total{reason="unmatched"}`;
//! a capture that does not convert to its type keeps its text and is counted with
//! `reason="conversion"`.
//!
//! Speed: a pattern is fastest when it is *one-pass* — at every point the next byte says
//! which way the match goes — because captures then run on a one-pass DFA instead of the
//! backtracker (2.7 times faster on the access-log pattern). `(?P<path>[^ "]+)(?: [^"]*)?"`
//! is one-pass where `(?P<path>[^ "]+)[^"]*"` is not (a byte after the path could belong to
//! either). A pattern that is not gets an INFO line at start-up saying so.
//!
//! Owns: the parse_regex transform and the capture [`Conversion`]s. Never: panics on input.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::FixedOffset;
use regex::{CaptureLocations, Regex};
use serde::Deserialize;

use super::timestamp::TimeFormat;
use super::TransformContext;
use crate::event::{intern, Event, Key, LogEvent, Timestamp, Value};
use crate::telemetry::Counter;

/// `type: parse_regex` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseRegexConfig {
    /// The regex (Rust `regex` syntax); each named group `(?P<name>...)` becomes a field.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Several regexes instead of `pattern`; the first that matches wins.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Field to read (default `message`, the line itself).
    #[serde(default = "default_field")]
    pub field: String,
    /// Conversions of captures: `int`, `float`, `bool`, or `timestamp:<strftime format>`
    /// (stored as RFC 3339 text; a capture named `timestamp` also sets the event's time).
    #[serde(default)]
    pub types: BTreeMap<String, String>,
    /// Drop events that no pattern matches instead of passing them on (default `false`).
    #[serde(default)]
    pub drop_unmatched: bool,
}

fn default_field() -> String {
    "message".into()
}

/// How a captured text is turned into a typed value.
#[derive(Debug, Clone)]
pub enum Conversion {
    /// A whole number.
    Int,
    /// A floating-point number.
    Float,
    /// `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0` (any case).
    Bool,
    /// A time in the given layout, stored as RFC 3339 text (UTC).
    Timestamp(TimeFormat),
}

impl Conversion {
    /// Parses a type name (`int`, `float`, `bool`, `timestamp:<format>`).
    pub fn new(text: &str) -> anyhow::Result<Conversion> {
        Ok(match text {
            "int" | "integer" => Conversion::Int,
            "float" => Conversion::Float,
            "bool" | "boolean" => Conversion::Bool,
            other => match other.strip_prefix("timestamp:") {
                Some(format) => Conversion::Timestamp(TimeFormat::new(format)?),
                None => anyhow::bail!(
                    "unknown type {other:?}; expected int (or integer), float, bool (or boolean) or timestamp:<format>"
                ),
            },
        })
    }

    /// Converts `text`; `None` when it does not fit the type.
    pub fn convert(&self, text: &str) -> Option<Value> {
        match self {
            Conversion::Int => text.trim().parse::<i64>().ok().map(Value::Int),
            // NaN and the infinities ("nan", "inf", "1e309") have no JSON form: sinks
            // would write null. They fail the conversion (kept as text, counted).
            Conversion::Float => (text.trim().parse::<f64>().ok())
                .filter(|f| f.is_finite())
                .map(Value::Float),
            Conversion::Bool => parse_bool(text.trim()).map(Value::Bool),
            Conversion::Timestamp(format) => {
                let utc = FixedOffset::east_opt(0)?;
                let time = format.parse(&Value::String(text.to_owned()), utc)?;
                Some(Value::String(time.to_rfc3339()))
            }
        }
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    const TRUE: &[&str] = &["true", "yes", "on", "1"];
    const FALSE: &[&str] = &["false", "no", "off", "0"];
    if TRUE.iter().any(|t| text.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if FALSE.iter().any(|f| text.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

#[derive(Debug)]
struct Pattern {
    regex: Regex,
    /// (group index, field name, conversion) of every named group. The names are interned:
    /// setting them on each event allocates only the captured text.
    captures: Vec<(usize, Key, Option<Conversion>)>,
}

impl ParseRegexConfig {
    /// Compiles the patterns and the conversions.
    pub fn build(&self, ctx: &TransformContext) -> anyhow::Result<ParseRegex> {
        let sources: Vec<&String> = match (&self.pattern, self.patterns.is_empty()) {
            (Some(pattern), true) => vec![pattern],
            (None, false) => self.patterns.iter().collect(),
            (Some(_), false) => anyhow::bail!("set either `pattern` or `patterns`, not both"),
            (None, true) => anyhow::bail!("`pattern` (or `patterns`) is required"),
        };
        anyhow::ensure!(!self.field.is_empty(), "field must not be empty");
        let mut conversions = BTreeMap::new();
        for (name, type_name) in &self.types {
            let conversion = Conversion::new(type_name).with_context(|| format!("types.{name}"))?;
            conversions.insert(name.as_str(), conversion);
        }
        let mut patterns = Vec::new();
        for (i, source) in sources.into_iter().enumerate() {
            let regex = Regex::new(source)
                .with_context(|| format!("pattern {i} {source:?} does not compile"))?;
            let mut captures: Vec<_> = regex
                .capture_names()
                .enumerate()
                .filter_map(|(index, name)| {
                    let name = name?;
                    Some((index, intern(name), conversions.get(name).cloned()))
                })
                .collect();
            if !is_one_pass(source) {
                tracing::info!(
                    transform = %ctx.id,
                    pattern = i,
                    "parse_regex pattern is not one-pass, so captures take the slower backtracking engine (see the README's parse_regex notes)"
                );
            }
            // In name order, so setting them mostly appends to the sorted fields.
            captures.sort_by(|a, b| a.1.cmp(&b.1));
            anyhow::ensure!(
                !captures.is_empty(),
                "pattern {i} {source:?} has no named group `(?P<name>...)`, so it would set no field"
            );
            patterns.push(Pattern { regex, captures });
        }
        for name in conversions.keys() {
            let known = patterns
                .iter()
                .any(|p| p.captures.iter().any(|c| c.1 == *name));
            anyhow::ensure!(known, "types.{name}: no pattern has a group named {name:?}");
        }
        let locations = patterns
            .iter()
            .map(|p| p.regex.capture_locations())
            .collect();
        Ok(ParseRegex {
            field: self.field.clone(),
            patterns: patterns.into(),
            locations,
            drop_unmatched: self.drop_unmatched,
            unmatched: ctx.failures("unmatched"),
            conversion_failed: ctx.failures("conversion"),
            dropped: ctx.metrics.dropped("unmatched"),
        })
    }
}

/// True when `pattern` compiles to a one-pass DFA (what the regex crate then uses for
/// captures).
pub fn is_one_pass(pattern: &str) -> bool {
    regex_automata::dfa::onepass::DFA::new(pattern).is_ok()
}

/// A built parse_regex transform.
#[derive(Debug, Clone)]
pub struct ParseRegex {
    field: String,
    patterns: Arc<[Pattern]>,
    /// Reused capture slots, one per pattern (per worker: no allocation per line).
    locations: Vec<CaptureLocations>,
    drop_unmatched: bool,
    unmatched: Counter,
    conversion_failed: Counter,
    dropped: Counter,
}

impl ParseRegex {
    /// Parses each log event; metric events pass through.
    pub fn process(&mut self, events: Vec<Event>, out: &mut Vec<Event>) {
        super::retain_into(events, out, |event| {
            if let Event::Log(log) = event {
                if !self.apply(log) {
                    self.unmatched.inc();
                    if self.drop_unmatched {
                        self.dropped.inc();
                        return false;
                    }
                }
            }
            true
        });
    }

    /// Sets the captured fields; false when nothing matched (or the field is missing).
    fn apply(&mut self, log: &mut LogEvent) -> bool {
        // Take the source out so captures can be written while its text is borrowed.
        // A nested `a.b` is read in place (copied), not taken out and put back.
        let mut nested = false;
        let source = if self.field == "message" {
            std::mem::take(&mut log.message)
        } else if let Some(value) = log.fields.remove(&self.field) {
            value
        } else if let Some(value) = log.lookup(&self.field) {
            nested = true;
            value.clone()
        } else {
            return false;
        };
        let text = source.to_text();
        let matched = self
            .patterns
            .iter()
            .zip(&mut self.locations)
            .find_map(|(pattern, slots)| {
                pattern
                    .regex
                    .captures_read(slots, &text)
                    .map(|_| (pattern, &*slots))
            });
        if let Some((pattern, slots)) = matched {
            log.fields.reserve(pattern.captures.len());
            for (index, name, conversion) in &pattern.captures {
                let Some((start, end)) = slots.get(*index) else {
                    continue;
                };
                let captured = &text[start..end];
                let value = match conversion {
                    None => Value::String(captured.to_owned()),
                    Some(conversion) => match conversion.convert(captured) {
                        Some(value) => value,
                        None => {
                            self.conversion_failed.inc();
                            Value::String(captured.to_owned())
                        }
                    },
                };
                if name == "timestamp" {
                    set_event_time(log, &value);
                }
                log.insert_key(name, value);
            }
        }
        let found = matched.is_some();
        drop(text);
        // Put the source back unless a capture of the same name replaced it.
        if self.field == "message" {
            if log.message == Value::Null {
                log.message = source;
            }
        } else if !nested {
            log.fields.get_or_insert_with(&self.field, || source);
        }
        found
    }
}

fn set_event_time(log: &mut LogEvent, value: &Value) {
    if let Some(text) = value.as_str() {
        if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
            log.timestamp = Timestamp::from_datetime(&time);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCESS: &str = r#"^(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+)[^"]*" (?P<status>\d{3}) (?P<bytes>\d+|-)"#;

    fn config(patterns: &[&str], types: &[(&str, &str)]) -> ParseRegexConfig {
        ParseRegexConfig {
            pattern: None,
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            field: "message".into(),
            types: types
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            drop_unmatched: false,
        }
    }

    /// Runs `line` through the transform; `expected` are the fields after it (`None`: the
    /// event was dropped).
    fn check(config: &ParseRegexConfig, line: Value, expected: Option<&[(&str, Value)]>) {
        let mut transform = config.build(&TransformContext::for_tests()).unwrap();
        let mut event = LogEvent::new("");
        event.message = line.clone();
        let mut out = Vec::new();
        transform.process(vec![Event::Log(event)], &mut out);
        match (out.pop(), expected) {
            (None, None) => {}
            (Some(Event::Log(log)), Some(fields)) => {
                let want: crate::event::Map = fields
                    .iter()
                    .filter(|(k, _)| *k != "message")
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect();
                assert_eq!(log.fields, want, "{line:?}");
                let message = fields
                    .iter()
                    .find(|(k, _)| *k == "message")
                    .map_or(line.clone(), |(_, v)| v.clone());
                assert_eq!(log.message, message, "{line:?}");
            }
            (got, want) => panic!("{line:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parses_access_lines() {
        let types = [("status", "int"), ("bytes", "int")];
        let c = config(&[ACCESS], &types);
        let line = r#"10.0.0.1 - - [10/Oct/2023:13:55:36 -0700] "GET /a?b=1 HTTP/1.1" 200 2326 "-" "curl""#;
        check(
            &c,
            line.into(),
            Some(&[
                ("client", "10.0.0.1".into()),
                ("time", "10/Oct/2023:13:55:36 -0700".into()),
                ("method", "GET".into()),
                ("path", "/a?b=1".into()),
                ("status", Value::Int(200)),
                ("bytes", Value::Int(2326)),
            ]),
        );
        // `-` bytes does not convert: kept as text.
        let line = r#"::1 - bob [10/Oct/2023:13:55:36 +0000] "HEAD / HTTP/1.0" 304 -"#;
        check(
            &c,
            line.into(),
            Some(&[
                ("client", "::1".into()),
                ("time", "10/Oct/2023:13:55:36 +0000".into()),
                ("method", "HEAD".into()),
                ("path", "/".into()),
                ("status", Value::Int(304)),
                ("bytes", "-".into()),
            ]),
        );
        check(&c, "not an access line".into(), Some(&[]));
        check(&c, "".into(), Some(&[]));
        check(&c, Value::Int(5), Some(&[]));
        check(&c, Value::Null, Some(&[]));
    }

    #[test]
    fn first_matching_pattern_wins() {
        let c = config(
            &[r"^(?P<a>\d+)$", r"^(?P<b>\w+)$", r"(?P<c>.*)"],
            &[("a", "int")],
        );
        check(&c, "42".into(), Some(&[("a", Value::Int(42))]));
        check(&c, "word".into(), Some(&[("b", "word".into())]));
        check(&c, "two words".into(), Some(&[("c", "two words".into())]));
        // Non-UTF-8 input arrives as U+FFFD and is matched like any character.
        check(
            &c,
            "caf\u{FFFD}!".into(),
            Some(&[("c", "caf\u{FFFD}!".into())]),
        );
    }

    #[test]
    fn optional_groups_and_types() {
        let c = config(
            &[
                r"^(?P<level>[A-Z]+)(?: (?P<ms>\S+))?(?: ok=(?P<ok>\S+))?(?: at=(?P<timestamp>\S+))?$",
            ],
            &[
                ("ms", "float"),
                ("ok", "bool"),
                ("timestamp", "timestamp:%Y-%m-%dT%H:%M:%S%z"),
            ],
        );
        check(&c, "INFO".into(), Some(&[("level", "INFO".into())]));
        check(
            &c,
            "INFO 1.5 ok=YES".into(),
            Some(&[
                ("level", "INFO".into()),
                ("ms", Value::Float(1.5)),
                ("ok", Value::Bool(true)),
            ]),
        );
        check(
            &c,
            "WARN x ok=maybe".into(),
            Some(&[
                ("level", "WARN".into()),
                ("ms", "x".into()),
                ("ok", "maybe".into()),
            ]),
        );
        check(
            &c,
            "INFO 1 ok=0 at=2024-01-02T03:04:05+0100".into(),
            Some(&[
                ("level", "INFO".into()),
                ("ms", Value::Float(1.0)),
                ("ok", Value::Bool(false)),
                ("timestamp", "2024-01-02T02:04:05Z".into()),
            ]),
        );
        // No JSON number is NaN or infinite: such a float stays text, as a failure.
        for text in ["nan", "NaN", "inf", "-infinity", "1e309"] {
            check(
                &c,
                format!("INFO {text}").into(),
                Some(&[("level", "INFO".into()), ("ms", text.into())]),
            );
        }
    }

    #[test]
    fn capture_may_replace_the_source() {
        let c = config(&[r"^\[(?P<level>\w+)\] (?P<message>.*)$"], &[]);
        check(
            &c,
            "[warn] disk full".into(),
            Some(&[("level", "warn".into()), ("message", "disk full".into())]),
        );
    }

    #[test]
    fn reads_other_fields_and_drops_unmatched() {
        let mut c = config(&[r"^(?P<user>\w+)@(?P<domain>\S+)$"], &[]);
        c.field = "email".into();
        let mut transform = c.build(&TransformContext::for_tests()).unwrap();
        let mut event = LogEvent::new("line");
        event.insert("email", "ann@example.com");
        let mut out = Vec::new();
        transform.process(
            vec![Event::Log(event), Event::Log(LogEvent::new("no email"))],
            &mut out,
        );
        assert_eq!(out.len(), 2);
        let first = out[0].as_log().unwrap();
        assert_eq!(first.get("user"), Some(&"ann".into()));
        assert_eq!(first.get("email"), Some(&"ann@example.com".into()));
        assert_eq!(out[1].as_log().unwrap().fields.len(), 0);

        c.drop_unmatched = true;
        let ctx = TransformContext::for_tests();
        let mut transform = c.build(&ctx).unwrap();
        let mut out = Vec::new();
        transform.process(vec![Event::Log(LogEvent::new("no email"))], &mut out);
        assert!(out.is_empty());
        assert_eq!(ctx.failures("unmatched").get(), 1);
        assert_eq!(ctx.metrics.dropped("unmatched").get(), 1);
    }

    /// `field: j.s` reads the string `s` of the map `j` (what `parse_json target: j` makes),
    /// in place: the map is left as it was.
    #[test]
    fn reads_a_field_inside_a_map() {
        let mut c = config(&[r"^(?P<user>\w+)@(?P<domain>\S+)$"], &[]);
        c.field = "j.s".into();
        let mut transform = c.build(&TransformContext::for_tests()).unwrap();
        let mut inner = crate::event::Map::new();
        inner.insert("s".to_owned(), Value::from("ann@example.com"));
        let inner = Value::Map(std::sync::Arc::new(inner));
        let mut event = LogEvent::new("line");
        event.insert("j", inner.clone());
        let mut out = Vec::new();
        transform.process(vec![Event::Log(event)], &mut out);
        let first = out[0].as_log().unwrap();
        assert_eq!(first.get("user"), Some(&"ann".into()));
        assert_eq!(first.get("j"), Some(&inner));
    }

    #[test]
    fn the_shipped_access_log_pattern_is_one_pass() {
        let yaml = include_str!("../../pipelines/access-log.yaml");
        let line = yaml
            .lines()
            .find_map(|l| l.trim().strip_prefix("pattern: "))
            .expect("access-log.yaml has a pattern");
        let pattern = line.trim_matches('\'');
        assert!(is_one_pass(pattern), "{pattern}");
        // The same pattern with an ambiguous tail is not.
        assert!(!is_one_pass(
            &pattern.replace(r#"(?: [^"]*)?""#, r#"[^"]*""#)
        ));
    }

    #[test]
    fn rejects_bad_config() {
        let ctx = TransformContext::for_tests();
        let error = |c: ParseRegexConfig| format!("{:#}", c.build(&ctx).unwrap_err());
        assert!(error(config(&[r"(?P<a>\d+"], &[])).contains(r#"pattern 0 "(?P<a>\\d+""#));
        assert!(error(config(&[r"\d+"], &[])).contains("no named group"));
        assert!(error(config(&[r"(?P<a>\d+)"], &[("b", "int")])).contains("types.b"));
        assert!(error(config(&[r"(?P<a>\d+)"], &[("a", "number")])).contains("unknown type"));
        assert!(error(config(&[], &[])).contains("required"));
    }
}
