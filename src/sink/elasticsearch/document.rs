//! The document of each `_bulk` item: one JSON object per log event, written straight into
//! the request body (no intermediate JSON tree).
//!
//! Layout: `{"@timestamp":"<RFC 3339, UTC>","message":<message>,<fields in name order>}`.
//! Fields keep their JSON types. Collision rule: the event timestamp always goes to
//! `@timestamp`; a field whose name is `@timestamp` or an Elasticsearch metadata field
//! (`_id`, `_index`, `_source`, ... which Elasticsearch refuses inside a document) is
//! written with one more leading `_` (`_@timestamp`, `__id`), repeated until the name is
//! free. A `null` message is left out.
//!
//! Owns: the document bytes. Never: allocates per field on the common path, or fails.

use std::fmt::Write as _;

use super::action::write_json_str;
use crate::event::{LogEvent, Value};

/// Names a document field may not have: what this sink writes itself, and Elasticsearch's
/// metadata fields (`_id` & co.: "is a metadata field and cannot be added inside a
/// document").
const RESERVED: &[&str] = &[
    "@timestamp",
    "_data_stream_timestamp",
    "_doc_count",
    "_field_names",
    "_id",
    "_ignored",
    "_ignored_source",
    "_index",
    "_nested_path",
    "_primary_term",
    "_routing",
    "_seq_no",
    "_source",
    "_tier",
    "_type",
    "_version",
];

/// The RFC 3339 text of the last second seen, so a batch formats its dates once.
#[derive(Debug, Clone, Default)]
pub struct TimestampCache {
    second: Option<i64>,
    /// `YYYY-MM-DDTHH:MM:SS`.
    prefix: String,
}

impl TimestampCache {
    /// Appends `"<RFC 3339>"` (quoted, `Z`, fraction digits as needed: 0, 3, 6 or 9, like
    /// [`crate::event::Timestamp::to_rfc3339`]).
    pub fn write_quoted(&mut self, nanos: i64, body: &mut Vec<u8>) {
        let second = nanos.div_euclid(1_000_000_000);
        let fraction = nanos.rem_euclid(1_000_000_000) as u32;
        if self.second != Some(second) {
            self.second = Some(second);
            self.prefix.clear();
            let time = chrono::DateTime::from_timestamp_nanos(nanos);
            let _ = write!(self.prefix, "{}", time.format("%Y-%m-%dT%H:%M:%S"));
        }
        body.push(b'"');
        body.extend_from_slice(self.prefix.as_bytes());
        let (value, digits) = if fraction == 0 {
            (0, 0)
        } else if fraction.is_multiple_of(1_000_000) {
            (fraction / 1_000_000, 3)
        } else if fraction.is_multiple_of(1_000) {
            (fraction / 1_000, 6)
        } else {
            (fraction, 9)
        };
        if digits > 0 {
            body.push(b'.');
            let mut buffer = [b'0'; 9];
            let mut rest = value;
            for slot in buffer[..digits].iter_mut().rev() {
                *slot = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            body.extend_from_slice(&buffer[..digits]);
        }
        body.extend_from_slice(b"Z\"");
    }
}

/// Appends the document of `log` (no trailing newline).
pub fn write_document(log: &LogEvent, timestamps: &mut TimestampCache, body: &mut Vec<u8>) {
    body.extend_from_slice(b"{\"@timestamp\":");
    timestamps.write_quoted(log.timestamp.0, body);
    if !matches!(log.message, Value::Null) {
        body.extend_from_slice(b",\"message\":");
        write_value(&log.message, body);
    }
    for (name, value) in &log.fields {
        body.push(b',');
        if name.starts_with(['_', '@']) && RESERVED.contains(&name) {
            write_json_str(body, &log.free_name(name, RESERVED));
        } else {
            write_json_str(body, name);
        }
        body.push(b':');
        write_value(value, body);
    }
    body.push(b'}');
}

fn write_value(value: &Value, body: &mut Vec<u8>) {
    match value {
        Value::String(text) => write_json_str(body, text),
        // Writing into a Vec cannot fail, and Value serialises without errors.
        other => {
            let _ = serde_json::to_writer(&mut *body, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Map, Timestamp};

    fn check(ts: i64, message: Value, fields: &[(&str, Value)], expected: &str) {
        let mut log = LogEvent::new("");
        log.timestamp = Timestamp(ts);
        log.message = message;
        for (name, value) in fields {
            log.fields.insert((*name).to_owned(), value.clone());
        }
        let mut body = Vec::new();
        write_document(&log, &mut TimestampCache::default(), &mut body);
        let text = String::from_utf8(body).unwrap();
        assert_eq!(text, expected);
        // Always one valid JSON object with unique keys.
        let parsed: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).unwrap();
        let has_message = usize::from(!matches!(log.message, Value::Null));
        assert_eq!(parsed.len(), 1 + has_message + log.fields.len(), "{text}");
    }

    #[test]
    fn writes_documents() {
        check(
            0,
            "hi".into(),
            &[],
            r#"{"@timestamp":"1970-01-01T00:00:00Z","message":"hi"}"#,
        );
        let mut nested = Map::new();
        nested.insert("b", Value::Bool(true));
        check(
            1_500_000_000,
            "say \"x\"\n".into(),
            &[
                ("n", Value::Int(-3)),
                ("f", Value::Float(1.5)),
                ("nan", Value::Float(f64::NAN)),
                ("z", Value::Null),
                ("a", Value::from(nested)),
                ("l", Value::Array(vec![Value::Int(1), "x".into()])),
            ],
            r#"{"@timestamp":"1970-01-01T00:00:01.500Z","message":"say \"x\"\n","a":{"b":true},"f":1.5,"l":[1,"x"],"n":-3,"nan":null,"z":null}"#,
        );
        check(
            0,
            Value::Null,
            &[("k", "v".into())],
            r#"{"@timestamp":"1970-01-01T00:00:00Z","k":"v"}"#,
        );
    }

    #[test]
    fn renames_colliding_fields() {
        check(
            0,
            "m".into(),
            &[("@timestamp", "2020-01-01".into()), ("_id", "x".into())],
            r#"{"@timestamp":"1970-01-01T00:00:00Z","message":"m","_@timestamp":"2020-01-01","__id":"x"}"#,
        );
        check(
            0,
            "m".into(),
            &[
                ("@timestamp", Value::Int(1)),
                ("_@timestamp", Value::Int(2)),
            ],
            r#"{"@timestamp":"1970-01-01T00:00:00Z","message":"m","__@timestamp":1,"_@timestamp":2}"#,
        );
        check(
            0,
            "m".into(),
            &[("_other", Value::Int(1)), ("@ok", Value::Int(2))],
            r#"{"@timestamp":"1970-01-01T00:00:00Z","message":"m","@ok":2,"_other":1}"#,
        );
    }

    #[test]
    fn timestamps_match_rfc3339() {
        let mut cache = TimestampCache::default();
        for ts in [
            0,
            1,
            999,
            1_000,
            1_000_000,
            123_456_789,
            1_614_834_367_500_000_000,
            1_614_834_367_000_000_001,
            -1,
            -1_500_000_000,
            i64::MAX,
            i64::MIN,
        ] {
            let mut body = Vec::new();
            cache.write_quoted(ts, &mut body);
            let expected = format!("\"{}\"", Timestamp(ts).to_rfc3339());
            assert_eq!(String::from_utf8(body).unwrap(), expected, "ts {ts}");
        }
    }
}
