//! The data that moves through a pipeline: log events, metric events, and the batches that
//! carry them with their delivery acknowledgements.
//!
//! Owns: [`Event`], [`LogEvent`], [`Metric`], [`Value`], [`Timestamp`], [`Batch`].
//! Never: does I/O, knows about a particular source or sink.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::ack::AckRef;

/// A map of named values: the fields of a log event or a nested object.
pub type Map = BTreeMap<String, Value>;

/// A typed value, so JSON logs keep their numbers, booleans and nesting.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    /// JSON `null`, YAML `~`.
    #[default]
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// Text (always valid UTF-8; invalid input bytes were replaced and counted where read).
    String(String),
    /// An ordered list.
    Array(Vec<Value>),
    /// A nested object.
    Map(Map),
}

impl Value {
    /// The text of a string value, `None` for other kinds.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(text) => Some(text),
            _ => None,
        }
    }

    /// The value as a float, converting integers and numeric strings.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(n) => Some(*n as f64),
            Value::Float(x) => Some(*x),
            Value::String(text) => text.trim().parse().ok(),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    /// Renders scalars as plain text (strings without quotes) and containers as JSON.
    /// This is what label templates and string comparisons see.
    pub fn to_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Value::String(text) => std::borrow::Cow::Borrowed(text),
            Value::Null => std::borrow::Cow::Borrowed(""),
            Value::Bool(b) => std::borrow::Cow::Borrowed(if *b { "true" } else { "false" }),
            Value::Int(n) => std::borrow::Cow::Owned(n.to_string()),
            Value::Float(x) => std::borrow::Cow::Owned(x.to_string()),
            other => std::borrow::Cow::Owned(serde_json::to_string(other).unwrap_or_default()),
        }
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::String(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::String(text)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Float(x)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<serde_json::Value> for Value {
    fn from(json: serde_json::Value) -> Self {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(items) => {
                Value::Array(items.into_iter().map(Value::from).collect())
            }
            serde_json::Value::Object(map) => {
                Value::Map(map.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
            }
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(n) => serializer.serialize_i64(*n),
            // JSON has no NaN or infinity: they become null rather than an invalid document.
            Value::Float(x) if !x.is_finite() => serializer.serialize_unit(),
            Value::Float(x) => serializer.serialize_f64(*x),
            Value::String(text) => serializer.serialize_str(text),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Map(map) => {
                let mut out = serializer.serialize_map(Some(map.len()))?;
                for (key, value) in map {
                    out.serialize_entry(key, value)?;
                }
                out.end()
            }
        }
    }
}

/// A point in time: nanoseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let now = chrono::Utc::now();
        Timestamp(now.timestamp_nanos_opt().unwrap_or(i64::MAX))
    }

    /// From a chrono date-time (saturating outside 1677..2262).
    pub fn from_datetime<Tz: chrono::TimeZone>(time: &chrono::DateTime<Tz>) -> Self {
        Timestamp(time.timestamp_nanos_opt().unwrap_or(if time.timestamp() < 0 {
            i64::MIN
        } else {
            i64::MAX
        }))
    }

    /// As a chrono UTC date-time.
    pub fn to_datetime(self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_nanos(self.0)
    }

    /// Milliseconds since the epoch (Prometheus sample time).
    pub fn as_millis(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// RFC 3339 with nanoseconds, `Z` suffix.
    pub fn to_rfc3339(self) -> String {
        self.to_datetime()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Where a log event was read: the stream's identity and the byte offset where its line
/// starts. Sinks use it for idempotent ids (Elasticsearch `_id`); acknowledgement goes
/// through the batch's [`AckRef`]s, not through this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Stable identity of the stream (a file fingerprint, a source name).
    pub stream: Arc<str>,
    /// Byte offset (or sequence number) of the event within the stream.
    pub offset: u64,
}

/// One log record.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct LogEvent {
    /// When the event happened (parsed from the line) or, failing that, when it was read.
    pub timestamp: Timestamp,
    /// The log line (or message) itself; addressable as the field `message`.
    pub message: Value,
    /// Named fields (parsed values, labels, metadata). Never contains `message`.
    pub fields: Map,
    /// Where it was read, for sources with replayable positions.
    pub origin: Option<Origin>,
}

impl LogEvent {
    /// A new event with the given message, timestamped now.
    pub fn new(message: impl Into<String>) -> Self {
        LogEvent {
            timestamp: Timestamp::now(),
            message: Value::String(message.into()),
            fields: Map::new(),
            origin: None,
        }
    }

    /// A field by name; `message` is the message.
    pub fn get(&self, name: &str) -> Option<&Value> {
        if name == "message" {
            return Some(&self.message);
        }
        self.fields.get(name)
    }

    /// Mutable access to a field by name; `message` is the message.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        if name == "message" {
            return Some(&mut self.message);
        }
        self.fields.get_mut(name)
    }

    /// Sets a field (or the message), replacing what was there.
    pub fn insert(&mut self, name: &str, value: impl Into<Value>) {
        if name == "message" {
            self.message = value.into();
            return;
        }
        self.fields.insert(name.to_owned(), value.into());
    }

    /// Removes a field; removing `message` leaves it `Null`.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        if name == "message" {
            return Some(std::mem::take(&mut self.message));
        }
        self.fields.remove(name)
    }

    /// The message as text (empty when it is not a string).
    pub fn message_str(&self) -> &str {
        self.message.as_str().unwrap_or("")
    }

    /// The whole event as a JSON object: fields, `message` and `timestamp` (RFC 3339).
    pub fn to_json_map(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        for (key, value) in &self.fields {
            out.insert(key.clone(), serde_json::to_value(value).unwrap_or_default());
        }
        out.insert(
            "message".into(),
            serde_json::to_value(&self.message).unwrap_or_default(),
        );
        out.insert(
            "timestamp".into(),
            serde_json::Value::String(self.timestamp.to_rfc3339()),
        );
        out
    }
}

/// The kind and value of a metric sample.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricValue {
    /// A monotonically increasing total (cumulative).
    Counter(f64),
    /// A value that goes up and down.
    Gauge(f64),
    /// A cumulative histogram: `buckets` are (upper bound, cumulative count) pairs in
    /// ascending order, without the `+Inf` bucket (that is `count`).
    Histogram {
        /// (upper bound `le`, cumulative count of observations <= bound).
        buckets: Vec<(f64, u64)>,
        /// Sum of all observations.
        sum: f64,
        /// Number of observations.
        count: u64,
    },
}

/// One metric sample with its labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// Metric name, Prometheus style (`http_requests_total`).
    pub name: String,
    /// Label pairs, sorted by name.
    pub labels: Vec<(String, String)>,
    /// Kind and value.
    pub value: MetricValue,
    /// Sample time.
    pub timestamp: Timestamp,
}

/// An event: a log record or a metric sample.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A log record.
    Log(LogEvent),
    /// A metric sample.
    Metric(Metric),
}

impl Event {
    /// The log record, if this is one.
    pub fn as_log(&self) -> Option<&LogEvent> {
        match self {
            Event::Log(log) => Some(log),
            Event::Metric(_) => None,
        }
    }

    /// A rough size in bytes, for batch limits and metrics (not exact).
    pub fn size_hint(&self) -> usize {
        match self {
            Event::Log(log) => {
                let fields: usize = log.fields.iter().map(|(k, v)| k.len() + value_size(v)).sum();
                32 + value_size(&log.message) + fields
            }
            Event::Metric(metric) => {
                let labels: usize = metric.labels.iter().map(|(k, v)| k.len() + v.len()).sum();
                48 + metric.name.len() + labels
            }
        }
    }
}

fn value_size(value: &Value) -> usize {
    match value {
        Value::String(text) => text.len(),
        Value::Array(items) => items.iter().map(value_size).sum::<usize>() + 2,
        Value::Map(map) => map.iter().map(|(k, v)| k.len() + value_size(v)).sum::<usize>() + 2,
        _ => 8,
    }
}

/// The unit that moves through channels: many events, plus the acknowledgement handles of
/// the source batches they came from. A sink settles every [`AckRef`] of a batch once all its
/// events are delivered or permanently rejected (see [`crate::ack`]).
#[derive(Debug, Default)]
pub struct Batch {
    /// The events, in stream order.
    pub events: Vec<Event>,
    /// Acknowledgement handles of the source batches these events belong to.
    pub acks: Vec<AckRef>,
}

impl Batch {
    /// A batch with no acknowledgement (sources without replayable positions).
    pub fn new(events: Vec<Event>) -> Self {
        Batch {
            events,
            acks: Vec::new(),
        }
    }

    /// A batch whose delivery settles `ack`.
    pub fn with_ack(events: Vec<Event>, ack: AckRef) -> Self {
        Batch {
            events,
            acks: vec![ack],
        }
    }

    /// Marks every acknowledgement of this batch as done (delivered or permanently rejected).
    pub fn settle(self) {
        for ack in self.acks {
            ack.done();
        }
    }

    /// A copy for one more sink: events cloned, acknowledgements shared.
    pub fn fan_out_clone(&self) -> Self {
        Batch {
            events: self.events.clone(),
            acks: self.acks.clone(),
        }
    }
}
