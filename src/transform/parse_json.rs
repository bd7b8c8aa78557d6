//! `type: parse_json`: a field holding a JSON document becomes fields, keeping JSON types
//! (numbers, booleans, nulls, arrays, nested objects).
//!
//! ```yaml
//! - type: parse_json
//!   field: message      # default
//!   target: json        # optional: put the parsed value under this field
//! ```
//!
//! Without `target`, the object's keys are merged into the event's fields (a `message` key
//! replaces the message). A document that is not valid JSON (or, without `target`, not an
//! object) is passed on unchanged (or dropped with `drop_invalid: true`) and counted as
//! `sluice_transform_failures_total{reason="invalid_json"}`.
//!
//! Owns: the parse_json transform. Never: panics on input; recursion is bounded by
//! serde_json's depth limit (128).

use std::fmt;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::TransformContext;
use crate::event::{Event, LogEvent, Map, Value};
use crate::telemetry::Counter;

/// `type: parse_json` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParseJsonConfig {
    /// Field holding the JSON text (default `message`).
    #[serde(default = "default_field")]
    pub field: String,
    /// Put the parsed value under this field instead of merging an object's keys.
    #[serde(default)]
    pub target: Option<String>,
    /// Drop events whose field is not valid JSON instead of passing them on.
    #[serde(default)]
    pub drop_invalid: bool,
}

fn default_field() -> String {
    "message".into()
}

impl ParseJsonConfig {
    /// Validates the settings.
    pub fn build(&self, ctx: &TransformContext) -> anyhow::Result<ParseJson> {
        anyhow::ensure!(!self.field.is_empty(), "field must not be empty");
        anyhow::ensure!(
            self.target.as_ref().is_none_or(|t| !t.is_empty()),
            "target must not be empty"
        );
        Ok(ParseJson {
            config: self.clone(),
            invalid: ctx.failures("invalid_json"),
            dropped: ctx.metrics.dropped("invalid_json"),
        })
    }
}

/// A built parse_json transform.
#[derive(Debug, Clone)]
pub struct ParseJson {
    config: ParseJsonConfig,
    invalid: Counter,
    dropped: Counter,
}

impl ParseJson {
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
        let Some(parsed) = parse_json(text) else {
            return false;
        };
        match (parsed, &self.config.target) {
            (value, Some(target)) => log.insert(target, value),
            (Value::Map(map), None) => merge(log, std::sync::Arc::unwrap_or_clone(map)),
            (_, None) => return false,
        }
        true
    }
}

/// Merges `map` into the event's fields (`message` replaces the message).
/// What happens to an event a parser could not parse: counted in `counter`, and dropped (and
/// counted there too) when `dropped` is set; otherwise passed on unchanged.
pub(crate) struct Failed<'a> {
    pub counter: &'a Counter,
    pub dropped: Option<&'a Counter>,
}

/// The loop every parsing transform shares: `apply` each log event (metric events pass
/// through), count the failures, drop them if asked to.
pub(crate) fn parse_each(
    events: Vec<Event>,
    out: &mut Vec<Event>,
    failed: Failed<'_>,
    mut apply: impl FnMut(&mut LogEvent) -> bool,
) {
    super::retain_into(events, out, |event| {
        if let Event::Log(log) = event {
            if !apply(log) {
                failed.counter.inc();
                if let Some(dropped) = failed.dropped {
                    dropped.inc();
                    return false;
                }
            }
        }
        true
    });
}

/// Sorts once (`Extend`), not per key: thousands of parsed keys stay O(n log n).
pub(crate) fn merge(log: &mut LogEvent, map: Map) {
    let mut fields = Vec::with_capacity(map.len());
    for (key, value) in map {
        if key == "message" {
            log.message = value;
        } else {
            fields.push((key, value));
        }
    }
    log.fields.extend(fields);
}

/// Parses a JSON document straight into a [`Value`]; `None` when it is not valid JSON.
pub fn parse_json(text: &str) -> Option<Value> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = JsonValue::deserialize(&mut deserializer).ok()?.0;
    deserializer.end().ok()?;
    Some(value)
}

/// Deserializes into [`Value`] without an intermediate `serde_json::Value`.
struct JsonValue(Value);

impl<'de> Deserialize<'de> for JsonValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor).map(JsonValue)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Int(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(i64::try_from(n).map_or(Value::Float(n as f64), Value::Int))
    }
    fn visit_f64<E>(self, x: f64) -> Result<Value, E> {
        Ok(Value::Float(x))
    }
    fn visit_str<E>(self, text: &str) -> Result<Value, E> {
        Ok(Value::String(text.to_owned()))
    }
    fn visit_string<E>(self, text: String) -> Result<Value, E> {
        Ok(Value::String(text))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(JsonValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some((key, JsonValue(value))) = access.next_entry::<String, JsonValue>()? {
            map.insert(key, value);
        }
        Ok(Value::from(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(target: Option<&str>, input: Value, expected: Option<&[(&str, Value)]>) {
        let config = ParseJsonConfig {
            field: "message".into(),
            target: target.map(str::to_owned),
            drop_invalid: false,
        };
        let ctx = TransformContext::for_tests();
        let mut transform = config.build(&ctx).unwrap();
        let mut event = LogEvent::new("");
        event.message = input.clone();
        let mut out = Vec::new();
        transform.process(vec![Event::Log(event)], &mut out);
        let Some(Event::Log(log)) = out.pop() else {
            panic!("event lost")
        };
        match expected {
            Some(fields) => {
                let want: Map = fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect();
                assert_eq!(log.fields, want, "{input:?}");
                assert_eq!(ctx.failures("invalid_json").get(), 0);
            }
            None => {
                assert_eq!(log.fields, Map::new(), "{input:?}");
                assert_eq!(log.message, input);
                assert_eq!(ctx.failures("invalid_json").get(), 1, "{input:?} counted");
            }
        }
    }

    #[test]
    fn parses_json() {
        check(
            None,
            r#"{"a":1,"b":"x","c":true,"d":null,"e":1.5}"#.into(),
            Some(&[
                ("a", Value::Int(1)),
                ("b", "x".into()),
                ("c", Value::Bool(true)),
                ("d", Value::Null),
                ("e", Value::Float(1.5)),
            ]),
        );
        check(
            None,
            r#" {"n":{"m":[1,"two"]},"big":18446744073709551615} "#.into(),
            Some(&[
                (
                    "n",
                    Value::from(crate::event::Map::from([(
                        "m".to_string(),
                        Value::Array(vec![Value::Int(1), "two".into()]),
                    )])),
                ),
                ("big", Value::Float(18446744073709551615.0)),
            ]),
        );
        check(
            None,
            r#"{"s":"caf\u00e9 \ud83d\ude00 \ufffd"}"#.into(),
            Some(&[("s", "café 😀 \u{FFFD}".into())]),
        );
        check(
            Some("json"),
            "[1,2]".into(),
            Some(&[("json", Value::Array(vec![Value::Int(1), Value::Int(2)]))]),
        );
        check(
            Some("json"),
            r#"{"a":1}"#.into(),
            Some(&[(
                "json",
                Value::from(crate::event::Map::from([("a".to_string(), Value::Int(1))])),
            )]),
        );
        check(None, "[1,2]".into(), None);
        check(None, "42".into(), None);
        check(None, r#"{"a":1"#.into(), None);
        check(None, r#"{"a":1} trailing"#.into(), None);
        check(None, "".into(), None);
        check(None, "caf\u{FFFD}".into(), None);
        check(None, Value::Int(3), None);
        check(None, "[".repeat(10_000).into(), None);
    }

    #[test]
    fn message_key_replaces_message() {
        let ctx = TransformContext::for_tests();
        let config = ParseJsonConfig {
            field: "message".into(),
            target: None,
            drop_invalid: true,
        };
        let mut transform = config.build(&ctx).unwrap();
        let mut out = Vec::new();
        transform.process(
            vec![
                Event::Log(LogEvent::new(r#"{"message":"hi","level":"info"}"#)),
                Event::Log(LogEvent::new("nope")),
            ],
            &mut out,
        );
        assert_eq!(out.len(), 1);
        let log = out[0].as_log().unwrap();
        assert_eq!(log.message, Value::from("hi"));
        assert_eq!(log.get("level"), Some(&"info".into()));
        assert_eq!(ctx.metrics.dropped("invalid_json").get(), 1);
    }
}
