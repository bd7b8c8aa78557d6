//! OTLP/JSON (`Content-Type: application/json`) → the same messages as the protobuf path.
//!
//! The OTLP/HTTP JSON mapping is protobuf's canonical JSON with OTLP's deviations: field
//! names in lowerCamelCase (the original snake_case names are accepted too, as the protobuf
//! mapping requires), `traceId`/`spanId` as hex rather than base64, enums as integers (their
//! names are accepted too), 64-bit integers as numbers or decimal strings, doubles as numbers
//! or `"NaN"`/`"Infinity"`/`"-Infinity"`, bytes values in base64. Unknown fields are
//! ignored. A document nested deeper than serde_json's recursion limit (128) is refused.
//!
//! A trace or span id that is neither hex nor base64 of an id's exact length (what generic
//! protobuf JSON encoders write) costs the id, not the record: it is left out with a warning
//! for the reply's partial success, as a protobuf id of the wrong length is. The
//! OpenTelemetry Collector refuses the whole request, which its exporters then drop.
//!
//! Owns: the JSON reading. Never: mapping to events.

use std::cell::RefCell;

use serde_json::{Map, Value};

use super::proto::{self, any_value};

mod metric;
use metric::resource_metrics;

type Object = Map<String, Value>;

/// Why a document was refused.
pub type Error = String;

/// The first warning about data left out of a document that was otherwise read.
type Warning = RefCell<Option<String>>;

/// Reads an `ExportLogsServiceRequest`, with the first warning (an unreadable trace or span
/// id, left out).
pub fn logs(body: &[u8]) -> Result<(proto::ExportLogsServiceRequest, Option<String>), Error> {
    let root = parse(body)?;
    let warning = Warning::default();
    let request = proto::ExportLogsServiceRequest {
        resource_logs: list(&root, "resourceLogs", "resource_logs", |o| {
            resource_logs(o, &warning)
        })?,
    };
    Ok((request, warning.into_inner()))
}

/// Reads an `ExportMetricsServiceRequest`.
pub fn metrics(body: &[u8]) -> Result<proto::ExportMetricsServiceRequest, Error> {
    let root = parse(body)?;
    Ok(proto::ExportMetricsServiceRequest {
        resource_metrics: list(
            &root,
            "resourceMetrics",
            "resource_metrics",
            resource_metrics,
        )?,
    })
}

fn parse(body: &[u8]) -> Result<Object, Error> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(root)) => Ok(root),
        Ok(_) => Err("the JSON body is not an object".into()),
        Err(error) => Err(format!("invalid JSON: {error}")),
    }
}

/// The field `camel` (or `snake`); JSON `null` counts as absent.
fn field<'a>(object: &'a Object, camel: &str, snake: &str) -> Option<&'a Value> {
    object
        .get(camel)
        .or_else(|| object.get(snake))
        .filter(|v| !v.is_null())
}

fn list<T>(
    object: &Object,
    camel: &str,
    snake: &str,
    item: impl Fn(&Object) -> Result<T, Error>,
) -> Result<Vec<T>, Error> {
    match field(object, camel, snake) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::Object(o) => item(o),
                _ => Err(format!("{camel}: expected objects")),
            })
            .collect(),
        Some(_) => Err(format!("{camel}: expected a list")),
    }
}

fn message<T: Default>(
    object: &Object,
    camel: &str,
    snake: &str,
    read: impl Fn(&Object) -> Result<T, Error>,
) -> Result<Option<T>, Error> {
    match field(object, camel, snake) {
        None => Ok(None),
        Some(Value::Object(o)) => read(o).map(Some),
        Some(_) => Err(format!("{camel}: expected an object")),
    }
}

fn string(object: &Object, camel: &str, snake: &str) -> Result<String, Error> {
    match field(object, camel, snake) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{camel}: expected a string")),
    }
}

fn boolean(object: &Object, camel: &str, snake: &str) -> Result<bool, Error> {
    match field(object, camel, snake) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("{camel}: expected true or false")),
    }
}

/// A 64-bit unsigned integer: a number or a decimal string.
fn unsigned(value: &Value, name: &str) -> Result<u64, Error> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|x| x.fract() == 0.0 && *x >= 0.0)
                .map(|x| x as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("{name}: expected an unsigned integer"))
}

/// A 64-bit signed integer: a number or a decimal string.
fn signed(value: &Value, name: &str) -> Result<i64, Error> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|x| x.fract() == 0.0).map(|x| x as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("{name}: expected an integer"))
}

fn u64_field(object: &Object, camel: &str, snake: &str) -> Result<u64, Error> {
    field(object, camel, snake).map_or(Ok(0), |v| unsigned(v, camel))
}

fn u32_field(object: &Object, camel: &str, snake: &str) -> Result<u32, Error> {
    let n = u64_field(object, camel, snake)?;
    u32::try_from(n).map_err(|_| format!("{camel}: out of range"))
}

fn i32_field(object: &Object, camel: &str, snake: &str) -> Result<i32, Error> {
    match field(object, camel, snake) {
        None => Ok(0),
        Some(v) => i32::try_from(signed(v, camel)?).map_err(|_| format!("{camel}: out of range")),
    }
}

fn double(value: &Value, name: &str) -> Result<f64, Error> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            other => other.trim().parse().ok(),
        },
        _ => None,
    }
    .ok_or_else(|| format!("{name}: expected a number"))
}

fn f64_field(object: &Object, camel: &str, snake: &str) -> Result<Option<f64>, Error> {
    field(object, camel, snake)
        .map(|v| double(v, camel))
        .transpose()
}

/// An enum: its number, or its name as listed in `names` (index = number).
fn enumeration(object: &Object, camel: &str, snake: &str, names: &[&str]) -> Result<i32, Error> {
    match field(object, camel, snake) {
        None => Ok(0),
        Some(Value::String(name)) if !name.starts_with(|c: char| c.is_ascii_digit()) => names
            .iter()
            .position(|n| n == name)
            .map(|i| i as i32)
            .ok_or_else(|| format!("{camel}: unknown value {name:?}")),
        Some(v) => i32::try_from(signed(v, camel)?).map_err(|_| format!("{camel}: out of range")),
    }
}

/// A trace (`len` 16) or span (8) id: hex as OTLP/JSON has it, or base64 that decodes to
/// exactly `len` bytes. Anything else is left out (empty) with a warning; the length of a
/// hex id is checked where protobuf ids are, when the record becomes an event.
fn id(object: &Object, camel: &str, snake: &str, len: usize, warning: &Warning) -> Vec<u8> {
    let text = match field(object, camel, snake) {
        None => return Vec::new(),
        Some(Value::String(text)) => text.as_str(),
        Some(other) => {
            warn(
                warning,
                format!("{camel} {other} is not a string: left out"),
            );
            return Vec::new();
        }
    };
    if let Some(bytes) = hex_decode(text) {
        return bytes;
    }
    match base64_decode(text) {
        Some(bytes) if bytes.len() == len => bytes,
        _ => {
            let shown: String = text.chars().take(64).collect();
            warn(
                warning,
                format!("{camel} {shown:?} is not hex: left out, the record kept"),
            );
            Vec::new()
        }
    }
}

fn warn(warning: &Warning, message: String) {
    warning.borrow_mut().get_or_insert(message);
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

/// Standard or URL-safe base64, padding optional.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::alphabet::{STANDARD, URL_SAFE};
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine as _;
    let config = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    let alphabet = if text.contains(['-', '_']) {
        &URL_SAFE
    } else {
        &STANDARD
    };
    GeneralPurpose::new(alphabet, config).decode(text).ok()
}

fn any_value(object: &Object) -> Result<proto::AnyValue, Error> {
    use any_value::Value as V;
    let value = if let Some(v) = field(object, "stringValue", "string_value") {
        V::StringValue(
            v.as_str()
                .ok_or("stringValue: expected a string")?
                .to_owned(),
        )
    } else if let Some(v) = field(object, "boolValue", "bool_value") {
        V::BoolValue(v.as_bool().ok_or("boolValue: expected true or false")?)
    } else if let Some(v) = field(object, "intValue", "int_value") {
        V::IntValue(signed(v, "intValue")?)
    } else if let Some(v) = field(object, "doubleValue", "double_value") {
        V::DoubleValue(double(v, "doubleValue")?)
    } else if let Some(v) = field(object, "bytesValue", "bytes_value") {
        let text = v.as_str().ok_or("bytesValue: expected base64 text")?;
        V::BytesValue(base64_decode(text).ok_or("bytesValue: expected base64 text")?)
    } else if field(object, "arrayValue", "array_value").is_some() {
        let array = message(object, "arrayValue", "array_value", |o| {
            Ok(proto::ArrayValue {
                values: list(o, "values", "values", any_value)?,
            })
        })?;
        V::ArrayValue(array.unwrap_or_default())
    } else if field(object, "kvlistValue", "kvlist_value").is_some() {
        let kvlist = message(object, "kvlistValue", "kvlist_value", |o| {
            Ok(proto::KeyValueList {
                values: list(o, "values", "values", key_value)?,
            })
        })?;
        V::KvlistValue(kvlist.unwrap_or_default())
    } else {
        return Ok(proto::AnyValue { value: None });
    };
    Ok(proto::AnyValue { value: Some(value) })
}

fn key_value(object: &Object) -> Result<proto::KeyValue, Error> {
    Ok(proto::KeyValue {
        key: string(object, "key", "key")?,
        value: message(object, "value", "value", any_value)?,
    })
}

fn attributes(object: &Object) -> Result<Vec<proto::KeyValue>, Error> {
    list(object, "attributes", "attributes", key_value)
}

fn resource(object: &Object) -> Result<proto::Resource, Error> {
    Ok(proto::Resource {
        attributes: attributes(object)?,
    })
}

fn scope(object: &Object) -> Result<proto::InstrumentationScope, Error> {
    Ok(proto::InstrumentationScope {
        name: string(object, "name", "name")?,
        version: string(object, "version", "version")?,
        attributes: attributes(object)?,
    })
}

const SEVERITY_NUMBERS: &[&str] = &[
    "SEVERITY_NUMBER_UNSPECIFIED",
    "SEVERITY_NUMBER_TRACE",
    "SEVERITY_NUMBER_TRACE2",
    "SEVERITY_NUMBER_TRACE3",
    "SEVERITY_NUMBER_TRACE4",
    "SEVERITY_NUMBER_DEBUG",
    "SEVERITY_NUMBER_DEBUG2",
    "SEVERITY_NUMBER_DEBUG3",
    "SEVERITY_NUMBER_DEBUG4",
    "SEVERITY_NUMBER_INFO",
    "SEVERITY_NUMBER_INFO2",
    "SEVERITY_NUMBER_INFO3",
    "SEVERITY_NUMBER_INFO4",
    "SEVERITY_NUMBER_WARN",
    "SEVERITY_NUMBER_WARN2",
    "SEVERITY_NUMBER_WARN3",
    "SEVERITY_NUMBER_WARN4",
    "SEVERITY_NUMBER_ERROR",
    "SEVERITY_NUMBER_ERROR2",
    "SEVERITY_NUMBER_ERROR3",
    "SEVERITY_NUMBER_ERROR4",
    "SEVERITY_NUMBER_FATAL",
    "SEVERITY_NUMBER_FATAL2",
    "SEVERITY_NUMBER_FATAL3",
    "SEVERITY_NUMBER_FATAL4",
];

fn resource_logs(object: &Object, warning: &Warning) -> Result<proto::ResourceLogs, Error> {
    Ok(proto::ResourceLogs {
        resource: message(object, "resource", "resource", resource)?,
        scope_logs: list(object, "scopeLogs", "scope_logs", |o| {
            scope_logs(o, warning)
        })?,
        schema_url: string(object, "schemaUrl", "schema_url")?,
    })
}

fn scope_logs(object: &Object, warning: &Warning) -> Result<proto::ScopeLogs, Error> {
    Ok(proto::ScopeLogs {
        scope: message(object, "scope", "scope", scope)?,
        log_records: list(object, "logRecords", "log_records", |o| {
            log_record(o, warning)
        })?,
        schema_url: string(object, "schemaUrl", "schema_url")?,
    })
}

fn log_record(object: &Object, warning: &Warning) -> Result<proto::LogRecord, Error> {
    Ok(proto::LogRecord {
        time_unix_nano: u64_field(object, "timeUnixNano", "time_unix_nano")?,
        observed_time_unix_nano: u64_field(
            object,
            "observedTimeUnixNano",
            "observed_time_unix_nano",
        )?,
        severity_number: enumeration(
            object,
            "severityNumber",
            "severity_number",
            SEVERITY_NUMBERS,
        )?,
        severity_text: string(object, "severityText", "severity_text")?,
        body: message(object, "body", "body", any_value)?,
        attributes: attributes(object)?,
        dropped_attributes_count: u32_field(
            object,
            "droppedAttributesCount",
            "dropped_attributes_count",
        )?,
        flags: u32_field(object, "flags", "flags")?,
        trace_id: id(object, "traceId", "trace_id", 16, warning),
        span_id: id(object, "spanId", "span_id", 8, warning),
        event_name: string(object, "eventName", "event_name")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::{metric::Data, number_data_point};

    #[test]
    fn reads_the_spec_example_of_logs() {
        // From opentelemetry-proto's examples/logs.json (abridged).
        let body = br#"{
          "resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
            "scopeLogs": [{
              "scope": {"name": "my.library", "version": "1.0.0",
                        "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]},
              "logRecords": [{
                "timeUnixNano": "1544712660300000000",
                "observedTimeUnixNano": "1544712660300000000",
                "severityNumber": 10,
                "severityText": "Information",
                "traceId": "5B8EFFF798038103D269B633813FC60C",
                "spanId": "EEE19B7EC3C1B174",
                "body": {"stringValue": "Example log record"},
                "attributes": [
                  {"key": "string.attribute", "value": {"stringValue": "some string"}},
                  {"key": "boolean.attribute", "value": {"boolValue": true}},
                  {"key": "int.attribute", "value": {"intValue": "10"}},
                  {"key": "double.attribute", "value": {"doubleValue": 637.704}},
                  {"key": "array.attribute", "value": {"arrayValue": {"values": [{"stringValue": "many"}, {"stringValue": "values"}]}}},
                  {"key": "map.attribute", "value": {"kvlistValue": {"values": [{"key": "some.map.key", "value": {"stringValue": "some value"}}]}}}
                ]
              }]
            }]
          }]
        }"#;
        let (request, warning) = logs(body).unwrap();
        assert_eq!(warning, None);
        let record = &request.resource_logs[0].scope_logs[0].log_records[0];
        assert_eq!(record.time_unix_nano, 1_544_712_660_300_000_000);
        assert_eq!(record.severity_number, 10);
        assert_eq!(record.trace_id.len(), 16);
        assert_eq!(
            record.span_id,
            vec![0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]
        );
        assert_eq!(record.attributes.len(), 6);
        assert_eq!(
            record.attributes[2].value,
            Some(proto::AnyValue {
                value: Some(any_value::Value::IntValue(10))
            })
        );
        let mut events = Vec::new();
        super::super::logs::to_events(request, crate::event::Timestamp(0), &mut events).unwrap();
        let event = events[0].as_log().unwrap();
        assert_eq!(
            serde_json::to_string(event.get("map.attribute").unwrap()).unwrap(),
            r#"{"some.map.key":"some value"}"#
        );
    }

    #[test]
    fn reads_metrics_with_enum_names_and_snake_case() {
        let body = br#"{"resource_metrics": [{"scopeMetrics": [{"metrics": [
            {"name": "c", "sum": {"aggregationTemporality": "AGGREGATION_TEMPORALITY_CUMULATIVE",
              "isMonotonic": true, "dataPoints": [{"asInt": "5", "timeUnixNano": 3}]}},
            {"name": "h", "histogram": {"aggregationTemporality": 2, "dataPoints": [
              {"count": "3", "sum": 6.5, "bucketCounts": ["1", 2], "explicitBounds": [1.0]}]}},
            {"name": "e", "exponentialHistogram": {"aggregationTemporality": 1, "dataPoints": [
              {"count": 2, "scale": -1, "zeroCount": 1, "positive": {"offset": -2, "bucketCounts": [1]}}]}},
            {"name": "g", "gauge": {"dataPoints": [{"asDouble": "NaN"}]}}
        ]}]}]}"#;
        let request = metrics(body).unwrap();
        let metrics = &request.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(metrics.len(), 4);
        let Some(Data::Sum(sum)) = &metrics[0].data else {
            panic!("a sum")
        };
        assert_eq!(sum.aggregation_temporality, proto::TEMPORALITY_CUMULATIVE);
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsInt(5))
        );
        let Some(Data::Histogram(h)) = &metrics[1].data else {
            panic!("a histogram")
        };
        assert_eq!(h.data_points[0].bucket_counts, vec![1, 2]);
        let Some(Data::ExponentialHistogram(e)) = &metrics[2].data else {
            panic!("an exponential histogram")
        };
        assert_eq!(e.data_points[0].positive.as_ref().unwrap().offset, -2);
    }

    #[test]
    fn refuses_bad_documents_with_a_reason() {
        for (body, reason) in [
            (&b"[1]"[..], "not an object"),
            (b"{\"resourceLogs\": 5}", "expected a list"),
            (b"{\"resourceLogs\": [{\"scopeLogs\": [{\"logRecords\": [{\"timeUnixNano\": \"-1\"}]}]}]}", "unsigned"),
            (b"{", "invalid JSON"),
        ] {
            let error = logs(body).unwrap_err();
            assert!(error.contains(reason), "{error}");
        }
        let deep = format!(
            "{{\"resourceLogs\": [{{\"scopeLogs\": [{{\"logRecords\": [{{\"body\": {}\"stringValue\": \"x\"{}}}]}}]}}]}}",
            "{\"arrayValue\": {\"values\": [".repeat(200),
            "]}}".repeat(200)
        );
        assert!(logs(deep.as_bytes())
            .unwrap_err()
            .contains("recursion limit"));
    }

    #[test]
    fn an_unreadable_id_is_left_out_with_a_warning() {
        let body = |trace: &str, span: &str| {
            format!(
                r#"{{"resourceLogs": [{{"scopeLogs": [{{"logRecords": [{{"traceId": {trace}, "spanId": {span}}}]}}]}}]}}"#
            )
        };
        let read = |trace: &str, span: &str| {
            let (request, warning) = logs(body(trace, span).as_bytes()).unwrap();
            let record = request.resource_logs[0].scope_logs[0].log_records[0].clone();
            (record.trace_id, record.span_id, warning.unwrap_or_default())
        };
        let (trace, span, warning) = read(r#""xyz""#, "7");
        assert!(trace.is_empty() && span.is_empty());
        assert!(warning.contains("traceId \"xyz\" is not hex"), "{warning}");
        let (_, _, warning) = read("null", "[1]");
        assert!(warning.contains("spanId [1] is not a string"), "{warning}");
        // base64 of exactly an id's length; a base64 text of another length is not an id.
        let (trace, span, warning) = read(r#""AAECAwQFBgcICQoLDA0ODw==""#, r#""AAECAwQFBgc""#);
        assert_eq!(trace, (0..16).collect::<Vec<u8>>());
        assert_eq!(span, (0..8).collect::<Vec<u8>>());
        assert_eq!(warning, "");
        let (trace, _, warning) = read(r#""AAECAwQFBgc=""#, r#""""#);
        assert!(trace.is_empty());
        assert!(warning.contains("is not hex"), "{warning}");
        // Hex of the wrong length passes here; the event mapping leaves it out and warns.
        let (trace, _, warning) = read(r#""0102""#, r#""""#);
        assert_eq!((trace, warning.as_str()), (vec![1, 2], ""));
    }

    #[test]
    fn base64_round_trips() {
        for text in ["", "aGkh", "aGk=", "aGk", "_-8="] {
            assert!(base64_decode(text).is_some(), "{text}");
        }
        assert_eq!(base64_decode("aGkh").unwrap(), b"hi!");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert_eq!(base64_decode("a*"), None);
    }
}
