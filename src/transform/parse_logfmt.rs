//! `type: parse_logfmt`: `key=value` pairs become fields.
//!
//! ```yaml
//! - type: parse_logfmt
//!   field: message      # default
//!   target: kv          # optional: put the pairs under this field as an object
//! ```
//!
//! Syntax (as written by go-kit, logrus, Heroku): pairs separated by spaces; a value is bare
//! (up to the next space) or double-quoted with `\"`, `\\`, `\n`, `\r`, `\t` escapes (an
//! unterminated quote runs to the end of the line); a bare key without `=` is `true`.
//! Values stay text. A line with no `key=value` pair at all is passed on unchanged (or
//! dropped with `drop_invalid: true`) and counted as
//! `sluice_transform_failures_total{reason="invalid_logfmt"}`.
//!
//! Owns: the parse_logfmt transform and its parser. Never: panics on input.

use serde::Deserialize;

use super::parse_json::{merge, parse_each, Failed};
use super::TransformContext;
use crate::event::{Event, LogEvent, Map, Value};
use crate::telemetry::Counter;

/// `type: parse_logfmt` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseLogfmtConfig {
    /// Field holding the logfmt text (default `message`).
    #[serde(default = "default_field")]
    pub field: String,
    /// Put the pairs under this field (as an object) instead of merging them into the fields.
    #[serde(default)]
    pub target: Option<String>,
    /// Drop events with no `key=value` pair instead of passing them on.
    #[serde(default)]
    pub drop_invalid: bool,
}

fn default_field() -> String {
    "message".into()
}

impl ParseLogfmtConfig {
    /// Validates the settings.
    pub fn build(&self, ctx: &TransformContext) -> anyhow::Result<ParseLogfmt> {
        anyhow::ensure!(!self.field.is_empty(), "field must not be empty");
        anyhow::ensure!(
            self.target.as_ref().is_none_or(|t| !t.is_empty()),
            "target must not be empty"
        );
        Ok(ParseLogfmt {
            config: self.clone(),
            invalid: ctx.failures("invalid_logfmt"),
            dropped: ctx.metrics.dropped("invalid_logfmt"),
        })
    }
}

/// A built parse_logfmt transform.
#[derive(Debug, Clone)]
pub struct ParseLogfmt {
    config: ParseLogfmtConfig,
    invalid: Counter,
    dropped: Counter,
}

impl ParseLogfmt {
    /// Parses each log event; metric events pass through.
    pub fn process(&mut self, events: Vec<Event>, out: &mut Vec<Event>) {
        let failed = Failed {
            counter: &self.invalid,
            dropped: self.config.drop_invalid.then_some(&self.dropped),
        };
        parse_each(events, out, failed, |log| self.apply(log));
    }

    fn apply(&self, log: &mut LogEvent) -> bool {
        let Some(Value::String(text)) = log.lookup(&self.config.field) else {
            return false;
        };
        let Some(map) = parse_logfmt(text) else {
            return false;
        };
        match &self.config.target {
            Some(target) => log.insert(target, Value::from(map)),
            None => merge(log, map),
        }
        true
    }
}

/// Parses a logfmt line; `None` when it has no `key=value` pair. The pairs are collected
/// first and sorted once (a repeated key keeps its last value): inserting them one by one
/// cost O(n) each, so a line of 12,000 keys in descending order took 60 times as long.
pub fn parse_logfmt(text: &str) -> Option<Map> {
    let mut map: Vec<(String, Value)> = Vec::new();
    let mut pairs = 0;
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            break;
        }
        let key_end = rest.find([' ', '\t', '=', '"']).unwrap_or(rest.len());
        let key = &rest[..key_end];
        rest = &rest[key_end..];
        if key.is_empty() {
            // A stray `=` or quote: skip to the next space.
            rest = rest.find([' ', '\t']).map_or("", |i| &rest[i..]);
            continue;
        }
        let Some(after_equals) = rest.strip_prefix('=') else {
            map.push((key.to_owned(), Value::Bool(true)));
            continue;
        };
        let (value, after) = match after_equals.strip_prefix('"') {
            Some(quoted) => unquote(quoted),
            None => {
                let end = after_equals.find([' ', '\t']).unwrap_or(after_equals.len());
                (after_equals[..end].to_owned(), &after_equals[end..])
            }
        };
        map.push((key.to_owned(), Value::String(value)));
        pairs += 1;
        rest = after;
    }
    (pairs > 0).then(|| map.into_iter().collect())
}

/// Reads a quoted value (after its opening quote): (value, rest after the closing quote).
fn unquote(text: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, &text[i + 1..]),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, 'r')) => value.push('\r'),
                Some((_, 't')) => value.push('\t'),
                Some((_, escaped @ ('"' | '\\'))) => value.push(escaped),
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => value.push('\\'),
            },
            c => value.push(c),
        }
    }
    (value, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expected: Option<&[(&str, Value)]>) {
        let want = expected.map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<Map>()
        });
        assert_eq!(parse_logfmt(line), want, "{line:?}");
    }

    #[test]
    fn parses_logfmt() {
        check("a=1 b=two", Some(&[("a", "1".into()), ("b", "two".into())]));
        check(
            r#"msg="hello world" level=info"#,
            Some(&[("msg", "hello world".into()), ("level", "info".into())]),
        );
        check(
            r#"msg="say \"hi\"\n\ttab \\ \x""#,
            Some(&[("msg", "say \"hi\"\n\ttab \\ \\x".into())]),
        );
        check(
            "  a=1   b=2  ",
            Some(&[("a", "1".into()), ("b", "2".into())]),
        );
        check(
            "debug a=1",
            Some(&[("debug", Value::Bool(true)), ("a", "1".into())]),
        );
        check("a= b=2", Some(&[("a", "".into()), ("b", "2".into())]));
        check(
            r#"a="" b"#,
            Some(&[("a", "".into()), ("b", Value::Bool(true))]),
        );
        check(
            r#"a="unterminated b=2"#,
            Some(&[("a", "unterminated b=2".into())]),
        );
        check("a=1 a=2", Some(&[("a", "2".into())]));
        check("=x a=1 \"q\" ==", Some(&[("a", "1".into())]));
        check(
            "k=caf\u{FFFD} \u{FFFD}=1",
            Some(&[("k", "caf\u{FFFD}".into()), ("\u{FFFD}", "1".into())]),
        );
        check(r#"a="x\"#, Some(&[("a", "x\\".into())]));
        check("just some words", None);
        check("", None);
        check("=", None);
    }

    /// Issue 16: many keys in descending order (built by one sort, not by inserts).
    #[test]
    fn many_keys_in_any_order() {
        let line: String = (0..12_000).rev().map(|i| format!("k{i:05}={i} ")).collect();
        let map = parse_logfmt(&line).expect("pairs");
        assert_eq!(map.len(), 12_000);
        assert!(map.keys().is_sorted());
        assert_eq!(map.get("k00007"), Some(&Value::from("7")));
    }

    #[test]
    fn transform_merges_or_targets() {
        let ctx = TransformContext::for_tests();
        let config = ParseLogfmtConfig {
            field: "message".into(),
            target: Some("kv".into()),
            drop_invalid: false,
        };
        let mut transform = config.build(&ctx).unwrap();
        let mut out = Vec::new();
        transform.process(
            vec![
                Event::Log(LogEvent::new("a=1")),
                Event::Log(LogEvent::new("plain")),
            ],
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0].as_log().unwrap().get("kv"),
            Some(&Value::from(crate::event::Map::from([(
                "a".to_string(),
                "1".into()
            )])))
        );
        assert_eq!(out[1].as_log().unwrap().fields.len(), 0);
        assert_eq!(ctx.failures("invalid_logfmt").get(), 1);

        let config = ParseLogfmtConfig {
            field: "message".into(),
            target: None,
            drop_invalid: true,
        };
        let mut transform = config.build(&ctx).unwrap();
        let mut out = Vec::new();
        transform.process(
            vec![
                Event::Log(LogEvent::new("message=hi x=1")),
                Event::Log(LogEvent::new("plain")),
            ],
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].as_log().unwrap().message, Value::from("hi"));
        assert_eq!(out[0].as_log().unwrap().get("x"), Some(&"1".into()));
    }
}
