//! `type: set`, `type: remove`, `type: rename`: field housekeeping.
//!
//! ```yaml
//! - type: set
//!   fields: { env: prod, route: "{{ method }} {{ path }}", retries: 3 }
//! - type: remove
//!   fields: [password, token]
//! - type: rename
//!   fields: { msg: message, lvl: level }
//! ```
//!
//! Field names are flat (a dot is part of the name, not a path). `message` names the
//! message. String values of `set` are [`Template`]s; other YAML values (numbers, booleans,
//! lists, maps) are set as typed values.
//!
//! Owns: the three transforms. Never: fails on an event (missing fields are skipped).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use serde::Deserialize;

use super::template::Template;
use crate::event::{intern, Event, Key, LogEvent, Value};

/// `type: set` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetConfig {
    /// Field name to value. Text values may use `{{ field }}` templates.
    pub fields: BTreeMap<String, serde_json::Value>,
    /// Replace fields that already exist (default `true`); `false` only fills missing ones.
    #[serde(default = "default_true")]
    pub overwrite: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Debug)]
enum NewValue {
    Fixed(Value),
    Template(Template),
}

impl SetConfig {
    /// Parses the templates.
    pub fn build(&self, _ctx: &super::TransformContext) -> anyhow::Result<Set> {
        anyhow::ensure!(
            !self.fields.is_empty(),
            "fields must name at least one field"
        );
        let mut fields = Vec::new();
        for (name, value) in &self.fields {
            anyhow::ensure!(!name.is_empty(), "fields: empty field name");
            let value = match value {
                serde_json::Value::String(text) => {
                    let template =
                        Template::parse(text).with_context(|| format!("fields.{name}"))?;
                    if template.is_static() {
                        NewValue::Fixed(Value::String(text.clone()))
                    } else {
                        NewValue::Template(template)
                    }
                }
                other => NewValue::Fixed(Value::from(other.clone())),
            };
            fields.push((intern(name), value));
        }
        Ok(Set {
            fields: fields.into(),
            overwrite: self.overwrite,
            rendered: Vec::new(),
        })
    }
}

/// A built set transform.
#[derive(Debug, Clone)]
pub struct Set {
    /// Names (interned: setting them allocates nothing) and values.
    fields: Arc<[(Key, NewValue)]>,
    overwrite: bool,
    /// The values for one event, reused from event to event.
    rendered: Vec<Option<Value>>,
}

impl Set {
    /// Sets the fields on each log event. Templates see the event as it was before this
    /// transform.
    pub fn process(&mut self, events: Vec<Event>, out: &mut Vec<Event>) {
        let (fields, overwrite, rendered) = (&self.fields, self.overwrite, &mut self.rendered);
        for_each_log(events, out, |log| {
            rendered.extend(fields.iter().map(|(name, value)| {
                if !overwrite && log.get(name).is_some_and(|v| *v != Value::Null) {
                    return None;
                }
                Some(match value {
                    NewValue::Fixed(value) => value.clone(),
                    NewValue::Template(template) => Value::String(template.render(log)),
                })
            }));
            for ((name, _), value) in fields.iter().zip(rendered.drain(..)) {
                if let Some(value) = value {
                    log.insert_key(name, value);
                }
            }
        });
    }
}

/// `type: remove` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveConfig {
    /// Fields to remove (missing ones are ignored; `message` becomes null).
    pub fields: Vec<String>,
}

impl RemoveConfig {
    /// Validates the settings.
    pub fn build(&self, _ctx: &super::TransformContext) -> anyhow::Result<Remove> {
        anyhow::ensure!(
            !self.fields.is_empty(),
            "fields must name at least one field"
        );
        Ok(Remove {
            fields: self.fields.clone().into(),
        })
    }
}

/// A built remove transform.
#[derive(Debug, Clone)]
pub struct Remove {
    fields: Arc<[String]>,
}

impl Remove {
    /// Removes the fields from each log event.
    pub fn process(&mut self, events: Vec<Event>, out: &mut Vec<Event>) {
        for_each_log(events, out, |log| {
            for name in self.fields.iter() {
                log.remove(name);
            }
        });
    }
}

/// `type: rename` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameConfig {
    /// Old name to new name. A missing field is skipped; an existing target is replaced.
    pub fields: BTreeMap<String, String>,
}

impl RenameConfig {
    /// Validates the settings.
    pub fn build(&self, _ctx: &super::TransformContext) -> anyhow::Result<Rename> {
        anyhow::ensure!(
            !self.fields.is_empty(),
            "fields must name at least one field"
        );
        for (from, to) in &self.fields {
            anyhow::ensure!(
                !from.is_empty() && !to.is_empty(),
                "fields: empty field name"
            );
            anyhow::ensure!(from != to, "fields.{from}: renamed to itself");
        }
        Ok(Rename {
            fields: self
                .fields
                .iter()
                .map(|(from, to)| (from.clone(), intern(to)))
                .collect::<Vec<_>>()
                .into(),
        })
    }
}

/// A built rename transform.
#[derive(Debug, Clone)]
pub struct Rename {
    /// (from, to); the new names interned.
    fields: Arc<[(String, Key)]>,
}

impl Rename {
    /// Renames the fields of each log event.
    pub fn process(&mut self, events: Vec<Event>, out: &mut Vec<Event>) {
        for_each_log(events, out, |log| {
            for (from, to) in self.fields.iter() {
                if log.get(from).is_none() || (from == "message" && log.message == Value::Null) {
                    continue;
                }
                if let Some(value) = log.remove(from) {
                    log.insert_key(to, value);
                }
            }
        });
    }
}

/// Applies `change` to every log event, passing metric events through.
fn for_each_log(events: Vec<Event>, out: &mut Vec<Event>, mut change: impl FnMut(&mut LogEvent)) {
    super::retain_into(events, out, |event| {
        if let Event::Log(log) = event {
            change(log);
        }
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> LogEvent {
        let mut event = LogEvent::new("hello");
        event.insert("method", "GET");
        event.insert("status", Value::Int(200));
        event.insert("env", "dev");
        event
    }

    fn run(transform: &mut super::super::Transform) -> LogEvent {
        let mut out = Vec::new();
        transform.process(vec![Event::Log(event())], &mut out);
        match out.pop() {
            Some(Event::Log(log)) => log,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Builds `yaml` (a transform config) and checks `expected` (field, value) pairs after
    /// it ran on [`event`]; `Value::Null` means "absent" (or a null message).
    fn check(yaml: &str, expected: &[(&str, Value)]) {
        let mut transform = super::super::tests::build(yaml).unwrap();
        let log = run(&mut transform);
        for (name, want) in expected {
            let got = log.get(name).cloned().unwrap_or(Value::Null);
            assert_eq!(&got, want, "{yaml}: field {name}");
        }
    }

    #[test]
    fn set_remove_rename() {
        check(
            "{ type: set, fields: { a: x } }",
            &[("a", "x".into()), ("env", "dev".into())],
        );
        check(
            "{ type: set, fields: { route: '{{ method }} {{status}}', n: 3, f: 1.5, b: true, l: [1] } }",
            &[
                ("route", "GET 200".into()),
                ("n", Value::Int(3)),
                ("f", Value::Float(1.5)),
                ("b", Value::Bool(true)),
                ("l", Value::Array(vec![Value::Int(1)])),
            ],
        );
        check(
            "{ type: set, fields: { env: prod } }",
            &[("env", "prod".into())],
        );
        check(
            "{ type: set, fields: { env: prod, new: x }, overwrite: false }",
            &[("env", "dev".into()), ("new", "x".into())],
        );
        check(
            "{ type: set, fields: { message: '[{{ env }}] {{ message }}' } }",
            &[("message", "[dev] hello".into())],
        );
        check(
            "{ type: set, fields: { a: '{{ nope }}!' } }",
            &[("a", "!".into())],
        );
        check(
            "{ type: set, fields: { a: 'caf\u{FFFD}' } }",
            &[("a", "caf\u{FFFD}".into())],
        );
        check(
            "{ type: remove, fields: [env, nope] }",
            &[("env", Value::Null), ("method", "GET".into())],
        );
        check(
            "{ type: remove, fields: [message] }",
            &[("message", Value::Null)],
        );
        check(
            "{ type: rename, fields: { method: verb, nope: x } }",
            &[
                ("verb", "GET".into()),
                ("method", Value::Null),
                ("x", Value::Null),
            ],
        );
        check(
            "{ type: rename, fields: { env: status } }",
            &[("status", "dev".into()), ("env", Value::Null)],
        );
        check(
            "{ type: rename, fields: { message: msg } }",
            &[("msg", "hello".into()), ("message", Value::Null)],
        );
        check(
            "{ type: rename, fields: { method: message } }",
            &[("message", "GET".into())],
        );
    }

    #[test]
    fn rejects_bad_config() {
        for (yaml, error) in [
            ("{ type: set, fields: { a: '{{ x' } }", "fields.a"),
            ("{ type: set, fields: {} }", "at least one"),
            ("{ type: remove, fields: [] }", "at least one"),
            ("{ type: rename, fields: { a: a } }", "itself"),
            ("{ type: set, fields: { a: 1 }, colour: red }", "colour"),
        ] {
            let e = format!("{:#}", super::super::tests::build(yaml).unwrap_err());
            assert!(e.contains(error), "{yaml}: {e}");
        }
    }
}
