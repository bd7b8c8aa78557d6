//! Conditions: plain-YAML predicates over a log event, used by `filter`, `sample`'s
//! `exclude` and `log_to_metric`. No scripting language.
//!
//! ```yaml
//! condition:
//!   all:
//!     - { field: status, gt: 499 }
//!     - not: { field: path, matches: "^/health" }
//! ```
//!
//! A leaf names a `field` and exactly one test: `equals`, `not_equals`, `matches` (regex),
//! `exists` (bool), `in` (list), `gt`, `gte`, `lt`, `lte` (numbers). Leaves combine with
//! `all` (list), `any` (list) and `not` (one condition). A missing field never equals,
//! matches, is in a list or compares; so `not_equals` is true for it. Numbers compare as
//! numbers (the string `"404"` equals `404`); everything else compares as text.
//!
//! Owns: the [`ConditionConfig`] shape and the validated [`Condition`]. Never: panics on
//! any event.

use anyhow::{bail, Context as _};
use regex::Regex;
use serde::Deserialize;

use crate::event::{LogEvent, Value};

/// A condition as written in the config (validated by [`ConditionConfig::build`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct ConditionConfig(pub serde_json::Value);

/// A validated condition (regexes compiled).
#[derive(Debug, Clone)]
pub enum Condition {
    /// Every one holds (true when empty).
    All(Vec<Condition>),
    /// At least one holds (false when empty).
    Any(Vec<Condition>),
    /// The inner condition does not hold.
    Not(Box<Condition>),
    /// A test on one field.
    Field {
        /// The field name (`message` is the message).
        field: String,
        /// The test.
        test: Test,
    },
}

/// The test of a leaf condition.
#[derive(Debug, Clone)]
pub enum Test {
    /// Equal to the value.
    Equals(Value),
    /// Not equal to the value (true when the field is missing).
    NotEquals(Value),
    /// The text matches the regex.
    Matches(Regex),
    /// The field is present (`true`) or absent (`false`).
    Exists(bool),
    /// Equal to one of the values.
    In(Vec<Value>),
    /// Numerically greater than.
    Gt(f64),
    /// Numerically greater than or equal.
    Gte(f64),
    /// Numerically less than.
    Lt(f64),
    /// Numerically less than or equal.
    Lte(f64),
}

const TESTS: &[&str] = &[
    "equals",
    "not_equals",
    "matches",
    "exists",
    "in",
    "gt",
    "gte",
    "lt",
    "lte",
];

impl ConditionConfig {
    /// Validates the condition and compiles its regexes.
    pub fn build(&self) -> anyhow::Result<Condition> {
        build(&self.0)
    }
}

fn build(json: &serde_json::Value) -> anyhow::Result<Condition> {
    let Some(map) = json.as_object() else {
        bail!("a condition must be a map with `all`, `any`, `not` or `field`");
    };
    if let Some(inner) = map.get("all").or_else(|| map.get("any")) {
        let key = if map.contains_key("all") {
            "all"
        } else {
            "any"
        };
        anyhow::ensure!(map.len() == 1, "`{key}` must be alone in its map");
        let Some(items) = inner.as_array() else {
            bail!("`{key}` takes a list of conditions");
        };
        let built = items
            .iter()
            .enumerate()
            .map(|(i, item)| build(item).with_context(|| format!("{key}[{i}]")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        return Ok(if key == "all" {
            Condition::All(built)
        } else {
            Condition::Any(built)
        });
    }
    if let Some(inner) = map.get("not") {
        anyhow::ensure!(map.len() == 1, "`not` must be alone in its map");
        return Ok(Condition::Not(Box::new(build(inner).context("not")?)));
    }
    let Some(field) = map.get("field") else {
        bail!("a condition needs `all`, `any`, `not` or `field`");
    };
    let Some(field) = field.as_str().filter(|f| !f.is_empty()) else {
        bail!("`field` must be a field name");
    };
    let mut tests = map.iter().filter(|(key, _)| *key != "field");
    let (Some((key, value)), None) = (tests.next(), tests.next()) else {
        bail!(
            "field {field:?} needs exactly one test of: {}",
            TESTS.join(", ")
        );
    };
    let test = build_test(key, value).with_context(|| format!("field {field:?}: `{key}`"))?;
    Ok(Condition::Field {
        field: field.to_owned(),
        test,
    })
}

fn build_test(key: &str, value: &serde_json::Value) -> anyhow::Result<Test> {
    let number = || {
        value
            .as_f64()
            .ok_or_else(|| anyhow::anyhow!("takes a number, not {value}"))
    };
    Ok(match key {
        "equals" => Test::Equals(scalar(value)?),
        "not_equals" => Test::NotEquals(scalar(value)?),
        "matches" => {
            let Some(pattern) = value.as_str() else {
                bail!("takes a regex string");
            };
            Test::Matches(Regex::new(pattern).with_context(|| format!("bad regex {pattern:?}"))?)
        }
        "exists" => Test::Exists(value.as_bool().context("takes true or false")?),
        "in" => {
            let Some(items) = value.as_array() else {
                bail!("takes a list of values");
            };
            Test::In(items.iter().map(scalar).collect::<anyhow::Result<_>>()?)
        }
        "gt" => Test::Gt(number()?),
        "gte" => Test::Gte(number()?),
        "lt" => Test::Lt(number()?),
        "lte" => Test::Lte(number()?),
        other => bail!(
            "unknown test `{other}`; expected one of: {}",
            TESTS.join(", ")
        ),
    })
}

fn scalar(value: &serde_json::Value) -> anyhow::Result<Value> {
    match value {
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
            bail!("takes a string, number, boolean or null, not {value}")
        }
        other => Ok(Value::from(other.clone())),
    }
}

impl Condition {
    /// Whether `event` satisfies the condition.
    pub fn matches(&self, event: &LogEvent) -> bool {
        match self {
            Condition::All(items) => items.iter().all(|c| c.matches(event)),
            Condition::Any(items) => items.iter().any(|c| c.matches(event)),
            Condition::Not(inner) => !inner.matches(event),
            Condition::Field { field, test } => test.check(event.lookup(field)),
        }
    }
}

impl Test {
    fn check(&self, value: Option<&Value>) -> bool {
        match (self, value) {
            (Test::Exists(wanted), value) => value.is_some() == *wanted,
            (Test::NotEquals(expected), value) => !value.is_some_and(|v| equal(v, expected)),
            (_, None) => false,
            (Test::Equals(expected), Some(value)) => equal(value, expected),
            (Test::Matches(regex), Some(value)) => regex.is_match(&value.to_text()),
            (Test::In(items), Some(value)) => items.iter().any(|item| equal(value, item)),
            (Test::Gt(bound), Some(value)) => value.as_f64().is_some_and(|x| x > *bound),
            (Test::Gte(bound), Some(value)) => value.as_f64().is_some_and(|x| x >= *bound),
            (Test::Lt(bound), Some(value)) => value.as_f64().is_some_and(|x| x < *bound),
            (Test::Lte(bound), Some(value)) => value.as_f64().is_some_and(|x| x <= *bound),
        }
    }
}

/// Equality as a user means it in YAML: numbers as numbers, the rest as text.
fn equal(value: &Value, expected: &Value) -> bool {
    match expected {
        Value::Int(_) | Value::Float(_) => match value {
            Value::Int(_) | Value::Float(_) | Value::String(_) => {
                value.as_f64() == expected.as_f64()
            }
            _ => false,
        },
        Value::Null => matches!(value, Value::Null),
        Value::Bool(b) => match value {
            Value::Bool(v) => v == b,
            Value::String(text) => text == if *b { "true" } else { "false" },
            _ => false,
        },
        _ => value.to_text() == expected.to_text(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> LogEvent {
        let mut event = LogEvent::new("GET /health 200");
        event.insert("status", Value::Int(503));
        event.insert("code", "404");
        event.insert("path", "/api/users");
        event.insert("ok", Value::Bool(true));
        event.insert("ratio", Value::Float(0.25));
        event.insert("bad", "caf\u{FFFD}");
        let mut labels = crate::event::Map::new();
        labels.insert("app".to_owned(), Value::from("web"));
        labels.insert("app.kubernetes.io/name".to_owned(), Value::from("shop"));
        event.insert("pod_labels", Value::Map(std::sync::Arc::new(labels)));
        event
    }

    /// A field path reaches into maps as templates do (`{{ pod_labels.app }}`).
    #[test]
    fn fields_are_paths_into_maps() {
        check("{ field: pod_labels.app, equals: web }", Ok(true));
        check("{ field: pod_labels.app, equals: api }", Ok(false));
        check(
            "{ field: pod_labels.app.kubernetes.io/name, equals: shop }",
            Ok(true),
        );
        check("{ field: pod_labels.team, exists: true }", Ok(false));
        check("{ field: status.code, exists: true }", Ok(false));
    }

    /// `Ok(bool)`: the condition builds and evaluates to it on [`event`]; `Err(text)`: the
    /// build error contains `text`.
    fn check(yaml: &str, expected: Result<bool, &str>) {
        let json: serde_json::Value = yaml_rust2::YamlLoader::load_from_str(yaml)
            .map(|docs| yaml_to_json(&docs[0]))
            .unwrap();
        let built = ConditionConfig(json).build();
        match (built, expected) {
            (Ok(c), Ok(want)) => assert_eq!(c.matches(&event()), want, "{yaml}"),
            (Err(e), Err(text)) => {
                let e = format!("{e:#}");
                assert!(e.contains(text), "{yaml}: error {e:?} lacks {text:?}")
            }
            (got, want) => panic!("{yaml}: got {got:?}, want {want:?}"),
        }
    }

    fn yaml_to_json(yaml: &yaml_rust2::Yaml) -> serde_json::Value {
        use yaml_rust2::Yaml;
        match yaml {
            Yaml::Real(s) => s.parse::<f64>().map(Into::into).unwrap_or_default(),
            Yaml::Integer(i) => (*i).into(),
            Yaml::String(s) => s.clone().into(),
            Yaml::Boolean(b) => (*b).into(),
            Yaml::Array(a) => a.iter().map(yaml_to_json).collect(),
            Yaml::Hash(h) => h
                .iter()
                .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), yaml_to_json(v)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
            _ => serde_json::Value::Null,
        }
    }

    #[test]
    fn evaluates_leaves() {
        check("{ field: status, equals: 503 }", Ok(true));
        check("{ field: status, equals: '503' }", Ok(true));
        check("{ field: code, equals: 404 }", Ok(true));
        check("{ field: code, equals: 404.0 }", Ok(true));
        check("{ field: path, equals: /api/users }", Ok(true));
        check("{ field: path, equals: /api }", Ok(false));
        check("{ field: ok, equals: true }", Ok(true));
        check("{ field: status, not_equals: 200 }", Ok(true));
        check("{ field: missing, not_equals: 200 }", Ok(true));
        check("{ field: missing, equals: 200 }", Ok(false));
        check("{ field: message, matches: '^GET /health' }", Ok(true));
        check("{ field: path, matches: '^/health' }", Ok(false));
        check("{ field: bad, matches: '\u{FFFD}$' }", Ok(true));
        check("{ field: status, matches: '^5' }", Ok(true));
        check("{ field: status, exists: true }", Ok(true));
        check("{ field: nope, exists: false }", Ok(true));
        check("{ field: status, in: [500, 503] }", Ok(true));
        check("{ field: path, in: [/a, /b] }", Ok(false));
        check("{ field: status, gt: 499 }", Ok(true));
        check("{ field: status, gt: 503 }", Ok(false));
        check("{ field: status, gte: 503 }", Ok(true));
        check("{ field: ratio, lt: 0.5 }", Ok(true));
        check("{ field: ratio, lte: 0.1 }", Ok(false));
        check("{ field: path, gt: 1 }", Ok(false));
        check("{ field: missing, lt: 1 }", Ok(false));
    }

    #[test]
    fn combines() {
        check(
            "{ all: [ { field: status, gt: 499 }, { not: { field: path, matches: '^/health' } } ] }",
            Ok(true),
        );
        check(
            "{ any: [ { field: status, lt: 100 }, { field: ok, equals: true } ] }",
            Ok(true),
        );
        check("{ any: [] }", Ok(false));
        check("{ all: [] }", Ok(true));
        check("{ not: { field: status, exists: true } }", Ok(false));
    }

    #[test]
    fn rejects_bad_conditions() {
        check("{ field: status }", Err("exactly one test"));
        check("{ field: status, eqals: 1 }", Err("unknown test `eqals`"));
        check("{ field: status, gt: 1, lt: 5 }", Err("exactly one test"));
        check("{ field: status, gt: high }", Err("takes a number"));
        check("{ field: path, matches: '(' }", Err("bad regex"));
        check("{ all: { field: a, exists: true } }", Err("takes a list"));
        check("{ all: [ { field: a } ] }", Err("all[0]"));
        check("{ all: [], any: [] }", Err("alone"));
        check("[1, 2]", Err("must be a map"));
        check("{ colour: red }", Err("needs `all`"));
        check("{ field: a, in: [[1]] }", Err("not [1]"));
    }
}
