//! The data that moves through a pipeline: log events and metric events. A leaf: it
//! depends on no other module of the crate (batches and their acknowledgements are built on
//! it, in `crate::batch` and `crate::ack`).
//!
//! Owns: [`Event`], [`LogEvent`], [`Metric`], [`Value`], [`Timestamp`]; field maps live in
//! `map.rs`, stream names in `stream.rs`, the calendar in `timestamp.rs`, spent events'
//! way home in `recycle.rs`.
//! Never: does I/O, knows about a particular source or sink.

use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

mod map;
mod recycle;
mod stream;
mod timestamp;

pub use map::{intern, Key, Map, Shared};
pub use recycle::{Home, Recycler, RETURNED_BATCHES, RETURNED_EVENTS};
pub use stream::StreamName;
pub use timestamp::{civil_from_days, days_from_civil, Timestamp, RFC3339_MAX};

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
    /// A nested object, shared: cloning the value (a pod's labels added to each of its
    /// lines, say) counts a reference instead of copying every entry; changing it copies
    /// only when it is shared ([`Value::map_mut`]).
    Map(Arc<Map>),
}

impl Value {
    /// The map of a map value, to change: copied first only if another value shares it.
    pub fn map_mut(&mut self) -> Option<&mut Map> {
        match self {
            Value::Map(map) => Some(Arc::make_mut(map)),
            _ => None,
        }
    }

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

    /// Appends the value as [`Value::to_text`] renders it, without allocating for numbers
    /// (what templates do for every event).
    pub fn push_text(&self, out: &mut String) {
        use std::fmt::Write as _;
        match self {
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Float(x) => {
                let _ = write!(out, "{x}");
            }
            other => out.push_str(&other.to_text()),
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

impl From<Map> for Value {
    fn from(map: Map) -> Self {
        Value::Map(Arc::new(map))
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
            serde_json::Value::Object(map) => Value::from(
                map.into_iter()
                    .map(|(k, v)| (k, Value::from(v)))
                    .collect::<Map>(),
            ),
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
                for (key, value) in map.iter() {
                    out.serialize_entry(key, value)?;
                }
                out.end()
            }
        }
    }
}

/// Where a log event was read: the stream's identity and the byte offset where its line
/// starts. Sinks use it for idempotent ids (Elasticsearch `_id`); acknowledgement goes
/// through the batch's acknowledgement handles, not through this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Stable identity of the stream (a file's `<dev>-<ino>`, a source name).
    pub stream: StreamName,
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

    /// A field by path: the field named `path` if there is one, else `a.b.c` walks nested
    /// maps (`{"a": {"b": {"c": 1}}}`). At each map the rest of the path is first tried as
    /// one key, so keys with dots are reachable: `pod_labels.app.kubernetes.io/name` is key
    /// `app.kubernetes.io/name` of the map `pod_labels`. `message` is the message.
    pub fn lookup(&self, path: &str) -> Option<&Value> {
        if let Some(value) = self.get(path) {
            return Some(value);
        }
        let (first, rest) = path.split_once('.')?;
        lookup_in(self.get(first)?, rest)
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

    /// Sets a field by [`Key`] (an [`intern`]ed name costs no allocation); `message` sets
    /// the message.
    pub fn insert_key(&mut self, key: &Key, value: Value) {
        if key == "message" {
            self.message = value;
            return;
        }
        self.fields.insert(key.clone(), value);
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

    /// The whole event as a JSON object for `serde` (`serde_json::to_writer(out,
    /// &event.json())`): fields, `message` and `timestamp` (RFC 3339), keys in sorted order,
    /// the same document as [`LogEvent::to_json_map`] without building it.
    pub fn json(&self) -> JsonView<'_> {
        JsonView {
            event: self,
            skip: &[],
        }
    }

    /// The whole event as a JSON object: fields, `message` and `timestamp` (RFC 3339). A
    /// field named `message` or `timestamp` is kept under a free name (see [`JsonView`]).
    pub fn to_json_map(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        for (key, value) in &self.fields {
            let name = match is_own_name(key) {
                true => self.free_name(key, &[]),
                false => key.to_owned(),
            };
            out.insert(name, serde_json::to_value(value).unwrap_or_default());
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

/// `path` inside `value` (see [`LogEvent::lookup`]).
fn lookup_in<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let Value::Map(map) = value else {
        return None;
    };
    if let Some(value) = map.get(path) {
        return Some(value);
    }
    let (first, rest) = path.split_once('.')?;
    lookup_in(map.get(first)?, rest)
}

/// Whether a field named `key` would clash with the event's own `message` or `timestamp` in
/// its JSON object.
fn is_own_name(key: &str) -> bool {
    key == "message" || key == "timestamp"
}

impl LogEvent {
    /// The name a field named like one the writer reserves (the event's own `message` or
    /// `timestamp`; Elasticsearch's metadata fields) is written under: `_` + `name`, with
    /// one more `_` while that is in `reserved` or another field's name, so a parsed
    /// `timestamp` is kept beside the event time, not lost.
    pub fn free_name(&self, name: &str, reserved: &[&str]) -> String {
        let mut renamed = format!("_{name}");
        while reserved.contains(&renamed.as_str()) || self.fields.contains_key(&renamed) {
            renamed.insert(0, '_');
        }
        renamed
    }
}

/// A log event serialised as one JSON object (see [`LogEvent::json`]): fields, `message`
/// and `timestamp`, keys in byte order; a field named `message` or `timestamp` is written
/// as `_message` / `_timestamp` (more `_` while that name is taken too). Fields named in
/// `skip` are left out.
#[derive(Debug, Clone, Copy)]
pub struct JsonView<'a> {
    event: &'a LogEvent,
    skip: &'a [String],
}

impl<'a> JsonView<'a> {
    /// Leaves out the fields named in `skip` (not `message` or `timestamp`).
    pub fn without(self, skip: &'a [String]) -> Self {
        JsonView { skip, ..self }
    }
}

impl JsonView<'_> {
    /// Whether `key` is left out.
    fn skips(&self, key: &str) -> bool {
        self.skip.iter().any(|s| s == key)
    }

    /// The object when a field is named like the event's own `message` or `timestamp`
    /// (rare): its entries gathered, renamed and sorted, then written.
    fn serialize_renamed<S: Serializer>(
        &self,
        serializer: S,
        timestamp: &str,
    ) -> Result<S::Ok, S::Error> {
        let event = self.event;
        let mut entries: Vec<(std::borrow::Cow<'_, str>, Option<&Value>)> = event
            .fields
            .iter()
            .filter(|(key, _)| !self.skips(key))
            .map(|(key, value)| {
                let name = match is_own_name(key) {
                    true => std::borrow::Cow::Owned(event.free_name(key, &[])),
                    false => std::borrow::Cow::Borrowed(key),
                };
                (name, Some(value))
            })
            .collect();
        entries.push(("message".into(), Some(&event.message)));
        entries.push(("timestamp".into(), None));
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut map = serializer.serialize_map(Some(entries.len()))?;
        for (name, value) in entries {
            match value {
                Some(value) => map.serialize_entry(&*name, value)?,
                None => map.serialize_entry(&*name, timestamp)?,
            }
        }
        map.end()
    }
}

impl Serialize for JsonView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let event = self.event;
        let mut buf = [0u8; RFC3339_MAX];
        let timestamp = event.timestamp.format_rfc3339(&mut buf);
        if (event.fields.contains_key("timestamp") && !self.skips("timestamp"))
            || (event.fields.contains_key("message") && !self.skips("message"))
        {
            return self.serialize_renamed(serializer, timestamp);
        }
        let mut map = serializer.serialize_map(None)?;
        let mut own = [
            ("message", Some(&event.message)),
            ("timestamp", None::<&Value>),
        ]
        .into_iter()
        .peekable();
        for (key, value) in &event.fields {
            if self.skips(key) {
                continue;
            }
            while let Some((name, own_value)) = own.next_if(|(name, _)| *name < key) {
                match own_value {
                    Some(value) => map.serialize_entry(name, value)?,
                    None => map.serialize_entry(name, timestamp)?,
                }
            }
            map.serialize_entry(key, value)?;
        }
        for (name, own_value) in own {
            match own_value {
                Some(value) => map.serialize_entry(name, value)?,
                None => map.serialize_entry(name, timestamp)?,
            }
        }
        map.end()
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

impl Metric {
    /// The sample as one JSON object, as the file and console sinks write it (and the dead
    /// letters keep it): `{"name","kind","labels":{..},"value","timestamp"}`; a histogram's
    /// value is `{"buckets":[[le,count],..],"sum","count"}`.
    pub fn to_json(&self) -> serde_json::Value {
        let (kind, value) = self.kind_and_value();
        let labels: serde_json::Map<String, serde_json::Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        serde_json::json!({
            "name": self.name, "kind": kind, "labels": labels,
            "value": value, "timestamp": self.timestamp.to_rfc3339(),
        })
    }

    /// The kind's name and the value as JSON.
    pub fn kind_and_value(&self) -> (&'static str, serde_json::Value) {
        match &self.value {
            MetricValue::Counter(v) => ("counter", serde_json::json!(v)),
            MetricValue::Gauge(v) => ("gauge", serde_json::json!(v)),
            MetricValue::Histogram {
                buckets,
                sum,
                count,
            } => (
                "histogram",
                serde_json::json!({"buckets": buckets, "sum": sum, "count": count}),
            ),
        }
    }
}

/// An event: a log record or a metric sample.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A log record.
    Log(LogEvent),
    /// A metric sample.
    Metric(Metric),
}

/// The text of a line read as bytes: `Ok` when it is UTF-8, a line `cut` at a byte limit
/// through a character keeping the whole characters before the cut (not a U+FFFD for the
/// character's first bytes); `Err` with the lossy text (invalid sequences as U+FFFD).
pub fn line_text(bytes: &[u8], cut: bool) -> Result<String, String> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_owned()),
        Err(error) if cut && error.error_len().is_none() => {
            Ok(String::from_utf8_lossy(&bytes[..error.valid_up_to()]).into_owned())
        }
        Err(_) => Err(String::from_utf8_lossy(bytes).into_owned()),
    }
}

/// Which kinds of event a component emits or takes (logs, metrics, both).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kinds {
    /// Log records.
    pub logs: bool,
    /// Metric samples.
    pub metrics: bool,
}

impl Kinds {
    /// Log records only.
    pub const LOGS: Kinds = Kinds {
        logs: true,
        metrics: false,
    };
    /// Metric samples only.
    pub const METRICS: Kinds = Kinds {
        logs: false,
        metrics: true,
    };
    /// Both.
    pub const BOTH: Kinds = Kinds {
        logs: true,
        metrics: true,
    };
    /// Neither.
    pub const NONE: Kinds = Kinds {
        logs: false,
        metrics: false,
    };

    /// True when `event` is of one of these kinds.
    pub fn takes(self, event: &Event) -> bool {
        match event {
            Event::Log(_) => self.logs,
            Event::Metric(_) => self.metrics,
        }
    }

    /// The kinds in both.
    pub fn and(self, other: Kinds) -> Kinds {
        Kinds {
            logs: self.logs && other.logs,
            metrics: self.metrics && other.metrics,
        }
    }

    /// The kinds in either.
    pub fn or(self, other: Kinds) -> Kinds {
        Kinds {
            logs: self.logs || other.logs,
            metrics: self.metrics || other.metrics,
        }
    }

    /// The kinds in `self` and not in `other`.
    pub fn without(self, other: Kinds) -> Kinds {
        Kinds {
            logs: self.logs && !other.logs,
            metrics: self.metrics && !other.metrics,
        }
    }

    /// True when no kind is in.
    pub fn is_empty(self) -> bool {
        !self.logs && !self.metrics
    }
}

impl std::fmt::Display for Kinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match (self.logs, self.metrics) {
            (true, true) => "logs and metrics",
            (true, false) => "logs",
            (false, true) => "metrics",
            (false, false) => "nothing",
        })
    }
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
                // Shared fields are counted once, when shared (a field shadowing one of
                // them counts twice: rough, as said).
                let own: usize = log.fields.own().map(|(k, v)| k.len() + value_size(v)).sum();
                32 + value_size(&log.message) + own + log.fields.shared_weight()
            }
            Event::Metric(metric) => {
                let labels: usize = metric.labels.iter().map(|(k, v)| k.len() + v.len()).sum();
                48 + metric.name.len() + labels
            }
        }
    }
}

/// The rough size of `fields`, as [`Event::size_hint`] counts it.
fn fields_size(fields: &Map) -> usize {
    fields.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(value: &Value) -> usize {
    match value {
        Value::String(text) => text.len(),
        Value::Array(items) => items.iter().map(value_size).sum::<usize>() + 2,
        Value::Map(map) => fields_size(map) + 2,
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_cut_through_a_character_keeps_the_whole_ones_before() {
        let line = "é".repeat(10);
        assert_eq!(line_text(&line.as_bytes()[..11], true), Ok("é".repeat(5)));
        // Not cut: an unfinished character is invalid, as is one in the middle.
        assert_eq!(
            line_text(&line.as_bytes()[..11], false),
            Err(format!("{}\u{FFFD}", "é".repeat(5)))
        );
        assert_eq!(line_text(b"a\xffb", true), Err("a\u{FFFD}b".into()));
        assert_eq!(line_text(b"plain", false), Ok("plain".into()));
    }
    use proptest::prelude::*;

    fn chrono_rfc3339(ts: Timestamp) -> String {
        ts.to_datetime()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }

    #[test]
    fn rfc3339_edges() {
        for (nanos, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (1_500_000_002, "1970-01-01T00:00:01.500000002Z"),
            (-1, "1969-12-31T23:59:59.999999999Z"),
            (1_714_557_600_120_000_000, "2024-05-01T10:00:00.120Z"),
            (951_782_400_000_001_000, "2000-02-29T00:00:00.000001Z"),
            (i64::MIN, "1677-09-21T00:12:43.145224192Z"),
            (i64::MAX, "2262-04-11T23:47:16.854775807Z"),
        ] {
            assert_eq!(Timestamp(nanos).to_rfc3339(), text);
            assert_eq!(chrono_rfc3339(Timestamp(nanos)), text);
        }
    }

    #[test]
    fn shared_fields_are_counted_once_in_the_size() {
        let mut pod = Map::new();
        pod.insert(
            "pod_labels",
            Value::from(Map::from([("app", Value::from("web"))])),
        );
        pod.insert("node_name", Value::from("node-1"));
        let shared = Shared::new(pod.clone());
        let mut flat = LogEvent::new("line");
        flat.insert("container", "app");
        let mut layered = flat.clone();
        flat.fields.merge_sorted(pod.clone());
        layered.fields.share(shared.clone());
        assert_eq!(layered.fields, flat.fields);
        let (flat, layered) = (Event::Log(flat), Event::Log(layered));
        assert_eq!(layered.size_hint(), flat.size_hint());
        assert!(flat.size_hint() > 32 + 4 + "container".len() + 3);
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>().prop_map(Value::Float),
            ".{0,8}".prop_map(Value::String),
        ]
        .prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{0,3}", inner, 0..3)
                    .prop_map(|m| Value::from(m.into_iter().collect::<Map>())),
            ]
        })
    }

    #[test]
    fn a_field_named_like_the_events_own_keys_is_kept_under_a_free_name() {
        let mut event = LogEvent::new("m");
        event.timestamp = Timestamp(0);
        event
            .fields
            .insert("timestamp", Value::from("2024-05-01 10:00:00"));
        event.fields.insert("_timestamp", Value::Int(1));
        event.fields.insert("level", Value::from("info"));
        let expected = r#"{"__timestamp":"2024-05-01 10:00:00","_timestamp":1,"level":"info","message":"m","timestamp":"1970-01-01T00:00:00Z"}"#;
        assert_eq!(serde_json::to_string(&event.json()).unwrap(), expected);
        assert_eq!(
            serde_json::to_string(&event.to_json_map()).unwrap(),
            expected
        );
        // Left out (a Loki label), it is not written under another name either.
        let skip = ["timestamp".to_owned()];
        assert_eq!(
            serde_json::to_string(&event.json().without(&skip)).unwrap(),
            r#"{"_timestamp":1,"level":"info","message":"m","timestamp":"1970-01-01T00:00:00Z"}"#
        );
    }

    proptest! {
        #[test]
        fn rfc3339_matches_chrono(nanos in any::<i64>()) {
            prop_assert_eq!(Timestamp(nanos).to_rfc3339(), chrono_rfc3339(Timestamp(nanos)));
        }

        #[test]
        fn json_view_is_the_json_map(
            nanos in any::<i64>(),
            message in value(),
            fields in prop::collection::btree_map(
                prop_oneof!["[a-z_@]{0,10}", Just("message".to_owned()), Just("timestamp".to_owned())],
                value(),
                0..6,
            ),
        ) {
            let fields = fields.into_iter().collect();
            let event = LogEvent { timestamp: Timestamp(nanos), message, fields, origin: None };
            let fast = serde_json::to_string(&event.json()).unwrap();
            let slow = serde_json::to_string(&event.to_json_map()).unwrap();
            prop_assert_eq!(fast, slow);
        }
    }
}
