//! OTLP log records → log events.
//!
//! | OTLP                                   | event                                         |
//! |----------------------------------------|-----------------------------------------------|
//! | `body`                                 | `message` (a string; a map, list or number keeps its type; bytes as base64) |
//! | `time_unix_nano`                       | the event time; else `observed_time_unix_nano`; else the time received |
//! | `severity_text`                        | `severity` (as sent; when empty, the short name of `severity_number`: `INFO`, `WARN2`, …) |
//! | `severity_number` (1–24)               | `severity_number`                             |
//! | `trace_id`, `span_id`                  | `trace_id`, `span_id` (lowercase hex; all-zero or empty ones left out) |
//! | `flags` (W3C trace flags)              | `trace_flags` (when not 0)                    |
//! | `event_name`                           | `event_name` (when set)                       |
//! | scope name, version                    | `otel.scope.name`, `otel.scope.version` (when set) |
//! | resource attributes                    | fields named by their keys (`service.name`, `host.name`, …) |
//! | record attributes                      | fields named by their keys; a record attribute wins over a resource attribute of the same key |
//!
//! Attribute values keep their types (string, bool, int, double, arrays, maps); bytes become
//! base64 text. An attribute named like one of the fields above (or `timestamp`) is kept
//! as `attributes.<key>`, so nothing the sender set is lost. Scope attributes and dropped
//! counts are not kept.
//!
//! Owns: the mapping (reading each record here; putting its fields in order in
//! `logs/plan.rs`). Never: does I/O.

use super::proto;
pub use super::reader::{any_to_value, hex};
use super::reader::{read_any, read_key_value, Reader};
use super::Decoded;
use crate::event::{Event, Key, LogEvent, Timestamp, Value};
use plan::{Plan, Scope, EVENT_NAME, SEVERITY, SEVERITY_NUMBER, SPAN_ID, TRACE_FLAGS, TRACE_ID};

/// Field names this mapping writes itself: an attribute with one of these keys is renamed.
const OWN_FIELDS: &[&str] = &[
    "event_name",
    "message",
    "otel.scope.name",
    "otel.scope.version",
    "severity",
    "severity_number",
    "span_id",
    "timestamp",
    "trace_flags",
    "trace_id",
];

pub use crate::otlp::severity_name;

mod plan;

/// Maps every record of `request` to a log event, appended to `out` (the JSON path and
/// tests: the request is encoded and read by [`decode`], so both formats map alike).
pub fn to_events(
    request: proto::ExportLogsServiceRequest,
    received: Timestamp,
    out: &mut Vec<Event>,
) -> Result<Decoded, String> {
    decode(&prost::Message::encode_to_vec(&request), received, out)
}

/// Reads an `ExportLogsServiceRequest` and appends an event per record to `out`, straight
/// from the wire (no message structs: every key and value is read once, into the event).
/// `received` is the time the request arrived (the fallback event time). Errors are the
/// reason for a 400: a malformed message, a string that is not UTF-8, nesting deeper than
/// 100 messages (prost's limit).
pub fn decode(raw: &[u8], received: Timestamp, out: &mut Vec<Event>) -> Result<Decoded, String> {
    let mut decoded = Decoded::default();
    let mut scratch = Scratch::default();
    let mut reader = Reader::new(raw);
    while let Some((field, wire)) = reader.next()? {
        if field == 1 {
            let resource_logs = wire.bytes("ExportLogsServiceRequest.resource_logs")?;
            read_resource_logs(resource_logs, received, out, &mut decoded, &mut scratch)?;
        }
    }
    Ok(decoded)
}

/// Buffers reused from record to record.
#[derive(Default)]
struct Scratch {
    /// The record's attributes as read: key text and `AnyValue` bytes.
    raw: Vec<(usize, usize, usize, usize)>,
    /// Their values, decoded (`None` once moved into the event).
    values: Vec<Option<Value>>,
}

fn read_resource_logs(
    bytes: &[u8],
    received: Timestamp,
    out: &mut Vec<Event>,
    decoded: &mut Decoded,
    scratch: &mut Scratch,
) -> Result<(), String> {
    // Fields may come in any order: the resource first, then the scopes.
    let mut resource = Vec::new();
    let mut reader = Reader::new(bytes);
    while let Some((field, wire)) = reader.next()? {
        if field == 1 {
            let mut inner = Reader::new(wire.bytes("ResourceLogs.resource")?);
            while let Some((field, wire)) = inner.next()? {
                if field == 1 {
                    let (key, value) = read_key_value(wire.bytes("Resource.attributes")?, 3)?;
                    resource.push((clear_of_own(key), value));
                }
            }
        }
    }
    let resource = sorted(resource);
    let mut reader = Reader::new(bytes);
    while let Some((field, wire)) = reader.next()? {
        if field == 2 {
            let scope_logs = wire.bytes("ResourceLogs.scope_logs")?;
            read_scope_logs(scope_logs, &resource, received, out, decoded, scratch)?;
        }
    }
    Ok(())
}

fn read_scope_logs(
    bytes: &[u8],
    resource: &[(Key, Value)],
    received: Timestamp,
    out: &mut Vec<Event>,
    decoded: &mut Decoded,
    scratch: &mut Scratch,
) -> Result<(), String> {
    let (mut name, mut version) = ("", "");
    let mut reader = Reader::new(bytes);
    while let Some((field, wire)) = reader.next()? {
        if field == 1 {
            let mut scope = Reader::new(wire.bytes("ScopeLogs.scope")?);
            while let Some((field, wire)) = scope.next()? {
                match field {
                    1 => name = wire.text("InstrumentationScope.name")?,
                    2 => version = wire.text("InstrumentationScope.version")?,
                    _ => {}
                }
            }
        }
    }
    let scope = Scope::new(resource, name, version);
    let mut plan = Plan::default();
    plan.make(bytes, &[]);
    let mut reader = Reader::new(bytes);
    while let Some((field, wire)) = reader.next()? {
        if field == 2 {
            let record = wire.bytes("ScopeLogs.log_records")?;
            let event = read_record(record, &scope, &mut plan, received, decoded, scratch)?;
            out.push(Event::Log(event));
            decoded.accepted += 1;
        }
    }
    Ok(())
}

/// A log record's own fields as read off the wire (attributes go to `Scratch::raw`).
#[derive(Default)]
struct Wire<'a> {
    time: u64,
    observed: u64,
    severity_number: i32,
    flags: u32,
    severity_text: &'a str,
    event_name: &'a str,
    trace_id: &'a [u8],
    span_id: &'a [u8],
    body: Option<&'a [u8]>,
}

impl<'a> Wire<'a> {
    /// Reads a `LogRecord`; the spans of its attributes are left in `scratch.raw`.
    fn read(bytes: &'a [u8], scratch: &mut Scratch) -> Result<Self, String> {
        let mut record = Wire::default();
        scratch.raw.clear();
        let mut reader = Reader::new(bytes);
        while let Some((field, wire)) = reader.next()? {
            match field {
                1 => record.time = wire.fixed64("LogRecord.time_unix_nano")?,
                11 => record.observed = wire.fixed64("LogRecord.observed_time_unix_nano")?,
                2 => record.severity_number = wire.varint("LogRecord.severity_number")? as i32,
                3 => record.severity_text = wire.text("LogRecord.severity_text")?,
                5 => record.body = Some(wire.bytes("LogRecord.body")?),
                6 => {
                    let kv = wire.bytes("LogRecord.attributes")?;
                    scratch.raw.push(key_value_span(bytes, kv)?);
                }
                8 => record.flags = wire.fixed32("LogRecord.flags")?,
                9 => record.trace_id = wire.bytes("LogRecord.trace_id")?,
                10 => record.span_id = wire.bytes("LogRecord.span_id")?,
                12 => record.event_name = wire.text("LogRecord.event_name")?,
                _ => {}
            }
        }
        Ok(record)
    }

    /// The event time: the record's, else the observed time, else when it was received.
    fn timestamp(&self, received: Timestamp) -> Timestamp {
        match (self.time, self.observed) {
            (0, 0) => received,
            (0, observed) => nanos(observed),
            (time, _) => nanos(time),
        }
    }

    /// The values of the own-field slots ([`plan::OWN_SLOTS`]) the record fills; a malformed
    /// trace or span id is left out with a warning in `decoded`.
    fn own_fields(&self, decoded: &mut Decoded) -> [Option<Value>; 6] {
        let mut own: [Option<Value>; 6] = Default::default();
        if !self.event_name.is_empty() {
            own[EVENT_NAME] = Some(Value::from(self.event_name));
        }
        own[SEVERITY] = match self.severity_text {
            "" => severity_name(self.severity_number).map(Value::from),
            text => Some(Value::from(text)),
        };
        if self.severity_number != 0 {
            own[SEVERITY_NUMBER] = Some(Value::Int(i64::from(self.severity_number)));
        }
        own[SPAN_ID] = trace_id_hex(self.span_id, 8, "span_id", decoded).map(Value::String);
        if self.flags & 0xff != 0 {
            own[TRACE_FLAGS] = Some(Value::Int(i64::from(self.flags & 0xff)));
        }
        own[TRACE_ID] = trace_id_hex(self.trace_id, 16, "trace_id", decoded).map(Value::String);
        own
    }
}

fn read_record(
    bytes: &[u8],
    scope: &Scope,
    plan: &mut Plan,
    received: Timestamp,
    decoded: &mut Decoded,
    scratch: &mut Scratch,
) -> Result<LogEvent, String> {
    let record = Wire::read(bytes, scratch)?;
    let timestamp = record.timestamp(received);
    let message = match record.body {
        Some(body) => read_any(body, 4)?,
        None => Value::Null,
    };
    scratch.values.clear();
    for &(_, _, start, end) in &scratch.raw {
        let value = match start {
            usize::MAX => Value::Null,
            _ => read_any(&bytes[start..end], 5)?,
        };
        scratch.values.push(Some(value));
    }
    let own = record.own_fields(decoded);
    if !plan.fits(bytes, &scratch.raw) {
        plan.make(bytes, &scratch.raw);
    }
    Ok(LogEvent {
        timestamp,
        message,
        fields: plan.fields(scope, &mut scratch.values, own),
        origin: None,
    })
}

/// The positions in `record` of a `KeyValue`'s key text and value bytes (`usize::MAX` when
/// it has no value); the key is checked to be UTF-8.
fn key_value_span(record: &[u8], kv: &[u8]) -> Result<(usize, usize, usize, usize), String> {
    let base = kv.as_ptr() as usize - record.as_ptr() as usize;
    let offset = |part: &[u8]| part.as_ptr() as usize - kv.as_ptr() as usize + base;
    let (mut name, mut value): (&[u8], Option<&[u8]>) = (&[], None);
    let mut reader = Reader::new(kv);
    while let Some((field, wire)) = reader.next()? {
        match field {
            1 => name = wire.text("KeyValue.key")?.as_bytes(),
            2 => value = Some(wire.bytes("KeyValue.value")?),
            _ => {}
        }
    }
    let (key_start, key_end) = if name.is_empty() {
        (0, 0)
    } else {
        (offset(name), offset(name) + name.len())
    };
    Ok(match value {
        Some(value) if !value.is_empty() => (
            key_start,
            key_end,
            offset(value),
            offset(value) + value.len(),
        ),
        Some(_) => (key_start, key_end, 0, 0),
        None => (key_start, key_end, usize::MAX, usize::MAX),
    })
}

/// An attribute's field name, renamed `attributes.<key>` when it is one of the event's own.
fn clear_of_own(key: Key) -> Key {
    if OWN_FIELDS.binary_search(&key.as_ref()).is_ok() {
        Key::Owned(format!("attributes.{key}"))
    } else {
        key
    }
}

/// Sorted by key; of equal keys the last is kept.
fn sorted(mut fields: Vec<(Key, Value)>) -> Vec<(Key, Value)> {
    sort_dedup(&mut fields);
    fields
}

fn sort_dedup(fields: &mut Vec<(Key, Value)>) {
    if fields.is_sorted_by(|a, b| a.0 < b.0) {
        return;
    }
    // Stable: of equal keys the later stays later; keep it.
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    let mut write = 0;
    for read in 0..fields.len() {
        if write > 0 && fields[write - 1].0 == fields[read].0 {
            fields.swap(write - 1, read);
        } else {
            fields.swap(write, read);
            write += 1;
        }
    }
    fields.truncate(write);
}

/// Nanoseconds since the epoch as a [`Timestamp`] (saturating past 2262).
pub fn nanos(value: u64) -> Timestamp {
    Timestamp(i64::try_from(value).unwrap_or(i64::MAX))
}

/// Lowercase hex of a trace (16 bytes) or span (8 bytes) id; `None` when empty or all zero
/// (the spec's "invalid" id). An id of another length is left out and reported.
fn trace_id_hex(bytes: &[u8], len: usize, what: &str, decoded: &mut Decoded) -> Option<String> {
    if bytes.is_empty() || bytes.iter().all(|b| *b == 0) {
        return None;
    }
    if bytes.len() != len {
        decoded.warn(format!(
            "{what} of {} bytes left out (expected {len})",
            bytes.len()
        ));
        return None;
    }
    Some(hex(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::*;

    fn string(text: &str) -> Option<AnyValue> {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(text.into())),
        })
    }

    fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value,
        }
    }

    #[test]
    fn tables_are_sorted_for_the_binary_search() {
        assert!(OWN_FIELDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn maps_a_record() {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", string("shop")), kv("k", string("r"))],
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app.module".into(),
                        version: "1.2".into(),
                        attributes: vec![],
                    }),
                    log_records: vec![
                        LogRecord {
                            time_unix_nano: 0,
                            observed_time_unix_nano: 5,
                            severity_number: 17,
                            body: string("boom"),
                            attributes: vec![
                                kv("k", string("record")),
                                kv("message", string("shadowed")),
                                kv(
                                    "n",
                                    Some(AnyValue {
                                        value: Some(any_value::Value::IntValue(7)),
                                    }),
                                ),
                            ],
                            trace_id: (1..=16).collect(),
                            span_id: vec![0; 8],
                            flags: 1,
                            ..Default::default()
                        },
                        LogRecord {
                            time_unix_nano: 9,
                            severity_text: "Information".into(),
                            trace_id: vec![1, 2, 3],
                            ..Default::default()
                        },
                    ],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let mut events = Vec::new();
        let decoded = to_events(request, Timestamp(1), &mut events).unwrap();
        assert_eq!(decoded.accepted, 2);
        assert_eq!(decoded.rejected, 0);
        assert!(decoded.warning.contains("trace_id of 3 bytes"));
        let first = events[0].as_log().unwrap();
        assert_eq!(first.timestamp, Timestamp(5), "observed time as fallback");
        assert_eq!(first.message, Value::from("boom"));
        let get = |event: &LogEvent, name: &str| event.get(name).cloned();
        assert_eq!(get(first, "severity"), Some(Value::from("ERROR")));
        assert_eq!(get(first, "severity_number"), Some(Value::Int(17)));
        assert_eq!(get(first, "k"), Some(Value::from("record")));
        assert_eq!(get(first, "service.name"), Some(Value::from("shop")));
        assert_eq!(
            get(first, "attributes.message"),
            Some(Value::from("shadowed"))
        );
        assert_eq!(get(first, "n"), Some(Value::Int(7)));
        assert_eq!(
            get(first, "trace_id"),
            Some(Value::from("0102030405060708090a0b0c0d0e0f10"))
        );
        assert_eq!(get(first, "span_id"), None, "an all-zero id is no id");
        assert_eq!(get(first, "trace_flags"), Some(Value::Int(1)));
        assert_eq!(
            get(first, "otel.scope.name"),
            Some(Value::from("app.module"))
        );
        let second = events[1].as_log().unwrap();
        assert_eq!(second.timestamp, Timestamp(9));
        assert_eq!(second.message, Value::Null);
        assert_eq!(get(second, "severity"), Some(Value::from("Information")));
        assert_eq!(get(second, "severity_number"), None);
        assert_eq!(get(second, "trace_id"), None);
    }

    #[test]
    fn severity_names() {
        assert_eq!(severity_name(0), None);
        assert_eq!(severity_name(1), Some("TRACE"));
        assert_eq!(severity_name(9), Some("INFO"));
        assert_eq!(severity_name(14), Some("WARN2"));
        assert_eq!(severity_name(24), Some("FATAL4"));
        assert_eq!(severity_name(25), None);
        assert_eq!(severity_name(-3), None);
    }

    #[test]
    fn nested_values_keep_their_types() {
        let value = AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![
                    kv(
                        "list",
                        Some(AnyValue {
                            value: Some(any_value::Value::ArrayValue(ArrayValue {
                                values: vec![
                                    AnyValue {
                                        value: Some(any_value::Value::BoolValue(true)),
                                    },
                                    AnyValue {
                                        value: Some(any_value::Value::DoubleValue(1.5)),
                                    },
                                ],
                            })),
                        }),
                    ),
                    kv(
                        "raw",
                        Some(AnyValue {
                            value: Some(any_value::Value::BytesValue(b"hi!".to_vec())),
                        }),
                    ),
                ],
            })),
        };
        let json = serde_json::to_string(&any_to_value(value)).unwrap();
        assert_eq!(json, r#"{"list":[true,1.5],"raw":"aGkh"}"#);
    }

    use proptest::prelude::*;

    /// The mapping written the plain way (a `BTreeMap`, later inserts win), to check the
    /// wire decoder's sorted merges against.
    fn reference(
        request: &ExportLogsServiceRequest,
    ) -> Vec<std::collections::BTreeMap<String, Value>> {
        let mut out = Vec::new();
        for rl in &request.resource_logs {
            for sl in &rl.scope_logs {
                for record in &sl.log_records {
                    let mut fields = std::collections::BTreeMap::new();
                    let put = |list: &[KeyValue], fields: &mut std::collections::BTreeMap<String, Value>| {
                        for kv in list {
                            let key = if OWN_FIELDS.contains(&kv.key.as_str()) {
                                format!("attributes.{}", kv.key)
                            } else {
                                kv.key.clone()
                            };
                            fields.insert(key, kv.value.clone().map(any_to_value).unwrap_or_default());
                        }
                    };
                    if let Some(resource) = &rl.resource {
                        put(&resource.attributes, &mut fields);
                    }
                    put(&record.attributes, &mut fields);
                    if let Some(scope) = &sl.scope {
                        if !scope.name.is_empty() {
                            fields
                                .insert("otel.scope.name".into(), Value::from(scope.name.as_str()));
                        }
                    }
                    let severity = if record.severity_text.is_empty() {
                        severity_name(record.severity_number).map(str::to_owned)
                    } else {
                        Some(record.severity_text.clone())
                    };
                    if let Some(severity) = severity {
                        fields.insert("severity".into(), Value::String(severity));
                    }
                    if record.severity_number != 0 {
                        fields.insert(
                            "severity_number".into(),
                            Value::Int(record.severity_number.into()),
                        );
                    }
                    if record.trace_id.len() == 16 && record.trace_id.iter().any(|b| *b != 0) {
                        fields.insert("trace_id".into(), Value::String(hex(&record.trace_id)));
                    }
                    out.push(fields);
                }
            }
        }
        out
    }

    fn any_value_strategy() -> impl Strategy<Value = Option<AnyValue>> {
        let leaf = prop_oneof![
            "[a-z ]{0,6}".prop_map(any_value::Value::StringValue),
            any::<i64>().prop_map(any_value::Value::IntValue),
            any::<bool>().prop_map(any_value::Value::BoolValue),
            (-1e6f64..1e6).prop_map(any_value::Value::DoubleValue),
        ];
        let value = leaf.prop_recursive(2, 6, 3, |inner| {
            prop::collection::vec(inner, 0..3).prop_map(|items| {
                any_value::Value::ArrayValue(ArrayValue {
                    values: items
                        .into_iter()
                        .map(|v| AnyValue { value: Some(v) })
                        .collect(),
                })
            })
        });
        proptest::option::weighted(0.9, value.prop_map(|v| AnyValue { value: Some(v) }))
    }

    fn attributes_strategy() -> impl Strategy<Value = Vec<KeyValue>> {
        // Few names, so that resource and record attributes collide, and own field names.
        let key = prop_oneof![
            Just("service.name".to_owned()),
            Just("a".to_owned()),
            Just("severity".to_owned()),
            Just("message".to_owned()),
            Just("z.custom".to_owned()),
            Just("host.name".to_owned()),
            "[a-c]{1,2}",
        ];
        prop::collection::vec(
            (key, any_value_strategy()).prop_map(|(key, value)| KeyValue { key, value }),
            0..6,
        )
    }

    fn request_strategy() -> impl Strategy<Value = ExportLogsServiceRequest> {
        let record = (
            attributes_strategy(),
            0i32..26,
            prop_oneof![Just(String::new()), Just("WARNING".to_owned())],
            prop_oneof![
                Just(Vec::new()),
                Just((1..=16).collect::<Vec<u8>>()),
                Just(vec![0; 16])
            ],
            "[a-z]{0,8}",
        )
            .prop_map(
                |(attributes, severity_number, severity_text, trace_id, body)| LogRecord {
                    attributes,
                    severity_number,
                    severity_text,
                    trace_id,
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(body)),
                    }),
                    time_unix_nano: 1,
                    ..Default::default()
                },
            );
        let scope = (
            prop_oneof![Just(String::new()), Just("lib".to_owned())],
            prop::collection::vec(record, 0..4),
        )
            .prop_map(|(name, log_records)| ScopeLogs {
                scope: Some(InstrumentationScope {
                    name,
                    ..Default::default()
                }),
                log_records,
                schema_url: String::new(),
            });
        prop::collection::vec(
            (attributes_strategy(), prop::collection::vec(scope, 0..3)).prop_map(
                |(attributes, scope_logs)| ResourceLogs {
                    resource: Some(Resource { attributes }),
                    scope_logs,
                    schema_url: String::new(),
                },
            ),
            0..3,
        )
        .prop_map(|resource_logs| ExportLogsServiceRequest { resource_logs })
    }

    proptest! {
        #[test]
        fn the_wire_decoder_maps_as_the_plain_reference(request in request_strategy()) {
            let mut events = Vec::new();
            let decoded = to_events(request.clone(), Timestamp(0), &mut events).unwrap();
            let expected = reference(&request);
            prop_assert_eq!(decoded.accepted, expected.len());
            for (event, expected) in events.iter().zip(expected) {
                let log = event.as_log().unwrap();
                let got: std::collections::BTreeMap<String, Value> =
                    log.fields.iter().map(|(k, v)| (k.to_owned(), v.clone())).collect();
                prop_assert_eq!(got, expected);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut events = Vec::new();
            let _ = decode(&bytes, Timestamp(0), &mut events);
        }

        #[test]
        fn truncated_requests_are_errors_not_panics(request in request_strategy(), cut in any::<prop::sample::Index>()) {
            let bytes = prost::Message::encode_to_vec(&request);
            if !bytes.is_empty() {
                let cut = cut.index(bytes.len());
                let mut events = Vec::new();
                let _ = decode(&bytes[..cut], Timestamp(0), &mut events);
            }
        }
    }

    #[test]
    fn fields_in_any_order_and_deep_nesting() {
        // A record whose fields come in reverse order decodes the same.
        let mut record = Vec::new();
        // event_name (12), body (5) = "hi", time (1)
        record.extend_from_slice(&[(12 << 3) | 2, 2, b'e', b'v']);
        record.extend_from_slice(&[(5 << 3) | 2, 4, (1 << 3) | 2, 2, b'h', b'i']);
        record.push((1 << 3) | 1);
        record.extend_from_slice(&7u64.to_le_bytes());
        let mut scope = vec![(2 << 3) | 2, record.len() as u8];
        scope.extend_from_slice(&record);
        let mut resource_logs = vec![(2 << 3) | 2, scope.len() as u8];
        resource_logs.extend_from_slice(&scope);
        let mut request = vec![(1 << 3) | 2, resource_logs.len() as u8];
        request.extend_from_slice(&resource_logs);
        let mut events = Vec::new();
        decode(&request, Timestamp(0), &mut events).unwrap();
        let log = events[0].as_log().unwrap();
        assert_eq!(log.timestamp, Timestamp(7));
        assert_eq!(log.message, Value::from("hi"));
        assert_eq!(log.get("event_name"), Some(&Value::from("ev")));
        // Wrong wire type for a known field.
        let bad = [(1 << 3) | 2, 2, 2 << 3, 1];
        assert!(decode(&bad, Timestamp(0), &mut Vec::new())
            .unwrap_err()
            .contains("wire type"));
    }

    #[test]
    fn records_with_the_same_keys_reuse_the_plan_with_their_own_values() {
        let record = |pairs: &[(&str, &str)]| LogRecord {
            attributes: pairs.iter().map(|(k, v)| kv(k, string(v))).collect(),
            time_unix_nano: 1,
            ..Default::default()
        };
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("a", string("resource")), kv("service.name", string("s"))],
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        record(&[("b", "1"), ("a", "1"), ("b", "last")]),
                        record(&[("b", "2"), ("a", "2"), ("b", "last2")]),
                        record(&[("a", "3")]),
                        record(&[]),
                        record(&[("b", "5"), ("a", "5"), ("b", "last5")]),
                    ],
                    ..Default::default()
                }],
                schema_url: String::new(),
            }],
        };
        let mut events = Vec::new();
        to_events(request, Timestamp(0), &mut events).unwrap();
        let fields: Vec<String> = events
            .iter()
            .map(|e| {
                serde_json::to_string(&Value::from(e.as_log().unwrap().fields.clone())).unwrap()
            })
            .collect();
        assert_eq!(
            fields,
            vec![
                r#"{"a":"1","b":"last","service.name":"s"}"#,
                r#"{"a":"2","b":"last2","service.name":"s"}"#,
                r#"{"a":"3","service.name":"s"}"#,
                r#"{"a":"resource","service.name":"s"}"#,
                r#"{"a":"5","b":"last5","service.name":"s"}"#,
            ]
        );
    }
}
