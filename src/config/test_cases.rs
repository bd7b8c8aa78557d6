//! The `tests:` section of a config (and of test files beside it): the format `sluice
//! test` runs ([`crate::unit_test`] runs it).
//!
//! ```yaml
//! tests:                                   # in the config, or in a file of their own
//!   - name: a 5xx line is parsed           # shown in the report
//!     pipeline: web                        # optional with one pipeline
//!     insert_at: parse                     # optional: the transform the inputs enter (first)
//!     extract_from: parse                  # optional: the transform whose output is checked (last)
//!     inputs:
//!       - '10.0.0.1 - - [01/May/2024:10:00:00 +0000] "GET / HTTP/1.1" 503 12'
//!       - { message: "raw line", fields: { host: web-1 }, timestamp: "2024-05-01T10:00:00Z" }
//!     outputs:                             # one entry per event that comes out, in order
//!       - fields: { status: 503, method: GET }        # each field equals (typed)
//!         condition: { field: path, matches: "^/" }   # the filter language holds
//!       - metric: { name: http_requests_total, labels: { status: "503" }, value: 4 }
//!   - name: health checks are dropped
//!     inputs: [ '... "GET /health HTTP/1.1" 200 2' ]
//!     outputs: []                          # nothing comes out
//! ```
//!
//! Owns: the test format and reading a test file. Never: runs a test.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::transform::condition::ConditionConfig;
use crate::yaml;

/// One test.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestConfig {
    /// Shown in the report.
    pub name: String,
    /// The pipeline whose transforms run; may be left out when the config has one.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// The transform the inputs enter (default: the first).
    #[serde(default)]
    pub insert_at: Option<String>,
    /// The transform whose output is checked (default: the last).
    #[serde(default)]
    pub extract_from: Option<String>,
    /// Events fed in, in order: a line (the message) or `{ message, fields, timestamp }`.
    pub inputs: Vec<Input>,
    /// What must come out, one entry per event, in order (`[]`: nothing).
    pub outputs: Vec<Expected>,
}

/// An input event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Input {
    /// The message (the line a source would read).
    pub message: String,
    /// Fields a source would have set (`file`, `host`, syslog's `severity`...).
    pub fields: BTreeMap<String, serde_json::Value>,
    /// RFC 3339; default: now.
    pub timestamp: Option<String>,
}

/// What one output event must be.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    /// Fields that must equal these values (`message` is the message; `a.b` a nested one).
    /// Numbers equal numbers, text equals text: `"503"` is not `503`. Fields not listed
    /// are not checked.
    #[serde(default)]
    pub fields: BTreeMap<String, serde_json::Value>,
    /// A condition (the `filter` language) the event must satisfy.
    #[serde(default)]
    pub condition: Option<ConditionConfig>,
    /// The event's time must be this instant (RFC 3339).
    #[serde(default)]
    pub timestamp: Option<String>,
    /// The event must be this metric (else it must be a log event).
    #[serde(default)]
    pub metric: Option<ExpectedMetric>,
}

/// What a metric event must be.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedMetric {
    /// The metric name.
    pub name: String,
    /// Labels it must have (others are not checked).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// A counter's or gauge's value.
    #[serde(default)]
    pub value: Option<f64>,
    /// A histogram's observation count.
    #[serde(default)]
    pub count: Option<u64>,
    /// A histogram's sum.
    #[serde(default)]
    pub sum: Option<f64>,
}

/// A line is an input with only a message.
impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct InputVisitor;
        impl<'de> Visitor<'de> for InputVisitor {
            type Value = Input;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a line, or a map with message, fields, timestamp")
            }
            fn visit_str<E: de::Error>(self, line: &str) -> Result<Input, E> {
                Ok(Input {
                    message: line.to_owned(),
                    ..Input::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Input, A::Error> {
                InputMap::deserialize(de::value::MapAccessDeserializer::new(map)).map(|m| Input {
                    message: m.message,
                    fields: m.fields,
                    timestamp: m.timestamp,
                })
            }
        }
        d.deserialize_any(InputVisitor)
    }
}

/// The map form of [`Input`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputMap {
    #[serde(default)]
    message: String,
    #[serde(default)]
    fields: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    timestamp: Option<String>,
}

/// A file of tests beside a config: only `tests:`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    tests: Vec<TestConfig>,
}

/// Reads the `tests:` of a test file.
pub fn load_file(path: &Path) -> anyhow::Result<Vec<TestConfig>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read test file {}", path.display()))?;
    let file: TestFile = yaml::from_str(&text, &path.display().to_string())?;
    Ok(file.tests)
}
