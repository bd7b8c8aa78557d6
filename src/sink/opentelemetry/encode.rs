//! The OTLP request bodies, written straight from the events (no message structs): one
//! `ExportLogsServiceRequest` or `ExportMetricsServiceRequest` per batch, events grouped by
//! resource (the set of their resource attributes, see `mapping.rs`), then by scope, then
//! (metrics) by metric name and kind; order within a group is the batch's order.
//!
//! Field numbers: `opentelemetry/proto/{common,resource,logs,metrics}/v1/*.proto`, the same
//! as the source's `proto.rs`, whose structs decode these bodies in the tests; the end-to-end
//! test decodes them with the official Python classes.
//!
//! Owns: grouping and the wire format. Never: batches, retries or acknowledges.

use std::collections::HashMap;

use super::mapping::{severity_number, Mapping, Place};
use super::wire::Writer;
use crate::event::{Event, LogEvent, Metric, MetricValue, Value};

/// The resource attributes added to every resource that lacks them (`resource_attributes`).
pub type Static = [(String, String)];

/// One attribute to write: OTLP name and value.
enum Attr<'a> {
    Typed(&'a Value),
    Text(&'a str),
}

/// An event's resource: sorted (name, value) pairs, and a key that identifies the set.
struct ResourceOf<'a> {
    attributes: Vec<(std::borrow::Cow<'a, str>, Attr<'a>)>,
    key: String,
}

fn resource_key(attributes: &[(std::borrow::Cow<'_, str>, Attr<'_>)]) -> String {
    let mut key = String::new();
    for (name, value) in attributes {
        key.push_str(name);
        key.push('\u{0}');
        match value {
            Attr::Typed(value) => {
                // The type matters too: 1 and "1" are different resources.
                key.push_str(&serde_json::to_string(value).unwrap_or_default());
            }
            Attr::Text(text) => {
                key.push_str(&serde_json::to_string(text).unwrap_or_default());
            }
        }
        key.push('\u{1}');
    }
    key
}

fn add_static<'a>(
    attributes: &mut Vec<(std::borrow::Cow<'a, str>, Attr<'a>)>,
    statics: &'a Static,
) {
    for (name, value) in statics {
        if !attributes.iter().any(|(n, _)| n == name) {
            attributes.push((std::borrow::Cow::Borrowed(name.as_str()), Attr::Text(value)));
        }
    }
    attributes.sort_by(|a, b| a.0.cmp(&b.0));
}

/// Groups of event indices: resource → scope → items.
struct Groups<'a, R> {
    resources: Vec<(R, Vec<Scope<'a>>)>,
    index: HashMap<String, usize>,
}

struct Scope<'a> {
    name: &'a str,
    version: &'a str,
    items: Vec<usize>,
}

impl<'a, R> Groups<'a, R> {
    fn new() -> Self {
        Groups {
            resources: Vec::new(),
            index: HashMap::new(),
        }
    }

    fn add(
        &mut self,
        key: String,
        resource: impl FnOnce() -> R,
        scope: (&'a str, &'a str),
        item: usize,
    ) {
        let at = *self.index.entry(key).or_insert_with(|| {
            self.resources.push((resource(), Vec::new()));
            self.resources.len() - 1
        });
        let scopes = &mut self.resources[at].1;
        match scopes
            .iter_mut()
            .find(|s| s.name == scope.0 && s.version == scope.1)
        {
            Some(s) => s.items.push(item),
            None => scopes.push(Scope {
                name: scope.0,
                version: scope.1,
                items: vec![item],
            }),
        }
    }
}

fn write_scope(w: &mut Writer, name: &str, version: &str) {
    if name.is_empty() && version.is_empty() {
        return;
    }
    let scope = w.begin(1);
    if !name.is_empty() {
        w.string(1, name);
    }
    if !version.is_empty() {
        w.string(2, version);
    }
    w.end(scope);
}

fn write_resource(w: &mut Writer, attributes: &[(std::borrow::Cow<'_, str>, Attr<'_>)]) {
    let resource = w.begin(1);
    for (name, value) in attributes {
        write_attr(w, 1, name, value);
    }
    w.end(resource);
}

fn write_attr(w: &mut Writer, field: u32, name: &str, value: &Attr<'_>) {
    let kv = w.begin(field);
    w.string(1, name);
    match value {
        Attr::Typed(value) => write_any(w, 2, value),
        Attr::Text(text) => {
            let any = w.begin(2);
            w.string(1, text);
            w.end(any);
        }
    }
    w.end(kv);
}

/// A [`Value`] as an `AnyValue` in `field`.
fn write_any(w: &mut Writer, field: u32, value: &Value) {
    let any = w.begin(field);
    match value {
        Value::Null => {}
        Value::String(text) => w.string(1, text),
        Value::Bool(b) => w.uint(2, u64::from(*b)),
        Value::Int(n) => w.uint(3, *n as u64),
        Value::Float(x) => w.double(4, *x),
        Value::Array(items) => {
            let array = w.begin(5);
            for item in items {
                write_any(w, 1, item);
            }
            w.end(array);
        }
        Value::Map(map) => {
            let list = w.begin(6);
            for (key, item) in map.iter() {
                let kv = w.begin(1);
                w.string(1, key);
                write_any(w, 2, item);
                w.end(kv);
            }
            w.end(list);
        }
    }
    w.end(any);
}

fn str_field<'a>(log: &'a LogEvent, name: &str) -> &'a str {
    log.fields.get(name).and_then(Value::as_str).unwrap_or("")
}

fn hex_id<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn log_resource<'a>(log: &'a LogEvent, mapping: &Mapping, statics: &'a Static) -> ResourceOf<'a> {
    let mut attributes = Vec::new();
    for (name, value) in &log.fields {
        if let Place::Resource(otel) = mapping.place(name, |n| log.fields.contains_key(n)) {
            attributes.push((otel, Attr::Typed(value)));
        }
    }
    add_static(&mut attributes, statics);
    let key = resource_key(&attributes);
    ResourceOf { attributes, key }
}

/// Encodes log events (others are skipped) into one `ExportLogsServiceRequest`; returns the
/// body and the indices it carries, in body order.
pub fn logs(events: &[Event], mapping: &Mapping, statics: &Static) -> (Vec<u8>, Vec<usize>) {
    let mut groups: Groups<'_, ResourceOf<'_>> = Groups::new();
    for (index, event) in events.iter().enumerate() {
        let Event::Log(log) = event else { continue };
        let resource = log_resource(log, mapping, statics);
        let scope = (
            str_field(log, "otel.scope.name"),
            str_field(log, "otel.scope.version"),
        );
        let key = resource.key.clone();
        groups.add(key, || resource, scope, index);
    }
    let size: usize = events.iter().map(Event::size_hint).sum();
    let mut w = Writer::with_capacity(size + size / 4 + 64);
    let mut items = Vec::with_capacity(events.len());
    for (resource, scopes) in &groups.resources {
        let resource_logs = w.begin(1);
        write_resource(&mut w, &resource.attributes);
        for scope in scopes {
            let scope_logs = w.begin(2);
            write_scope(&mut w, scope.name, scope.version);
            for &index in &scope.items {
                if let Event::Log(log) = &events[index] {
                    write_record(&mut w, log, mapping);
                    items.push(index);
                }
            }
            w.end(scope_logs);
        }
        w.end(resource_logs);
    }
    (w.buf, items)
}

fn write_record(w: &mut Writer, log: &LogEvent, mapping: &Mapping) {
    let record = w.begin(2);
    let time = u64::try_from(log.timestamp.0).unwrap_or(0);
    if time != 0 {
        w.fixed64(1, time);
    }
    let severity_text = log.fields.get("severity").map(Value::to_text);
    let number = match log.fields.get("severity_number") {
        Some(Value::Int(n)) if (1..=24).contains(n) => *n as i32,
        _ => severity_text.as_deref().map_or(0, severity_number),
    };
    if number != 0 {
        w.uint(2, number as u64);
    }
    if let Some(text) = severity_text.as_deref().filter(|t| !t.is_empty()) {
        w.string(3, text);
    }
    if !matches!(log.message, Value::Null) {
        write_any(w, 5, &log.message);
    }
    for (name, value) in &log.fields {
        if let Place::Attribute(otel) = mapping.place(name, |n| log.fields.contains_key(n)) {
            write_attr(w, 6, &otel, &Attr::Typed(value));
        }
    }
    if let Some(Value::Int(flags)) = log.fields.get("trace_flags") {
        if (1..=255).contains(flags) {
            w.fixed32(8, *flags as u32);
        }
    }
    if let Some(id) = hex_id::<16>(str_field(log, "trace_id")) {
        w.bytes(9, &id);
    }
    if let Some(id) = hex_id::<8>(str_field(log, "span_id")) {
        w.bytes(10, &id);
    }
    if time != 0 {
        w.fixed64(11, time);
    }
    let event_name = str_field(log, "event_name");
    if !event_name.is_empty() {
        w.string(12, event_name);
    }
    w.end(record);
}

/// A metric's point attributes (OTLP name, value).
type PointAttributes<'a> = Vec<(std::borrow::Cow<'a, str>, &'a str)>;

/// A metric's resource labels, scope and point attributes.
fn split_labels<'a>(
    metric: &'a Metric,
    mapping: &Mapping,
    statics: &'a Static,
) -> (ResourceOf<'a>, (&'a str, &'a str), PointAttributes<'a>) {
    let has = |name: &str| metric.labels.iter().any(|(n, _)| n == name);
    let mut resource = Vec::new();
    let mut attributes = Vec::new();
    let (mut scope_name, mut scope_version) = ("", "");
    for (name, value) in &metric.labels {
        match name.as_str() {
            "otel.scope.name" => scope_name = value,
            "otel.scope.version" => scope_version = value,
            _ => match mapping.place(name, has) {
                Place::Resource(otel) => resource.push((otel, Attr::Text(value))),
                Place::Attribute(otel) => attributes.push((otel, value.as_str())),
                // Labels have no record parts: only a renamed label that gives way.
                Place::Skip if RECORD_PARTS.contains(&name.as_str()) => {
                    attributes.push((std::borrow::Cow::Borrowed(name.as_str()), value.as_str()))
                }
                Place::Skip => {}
            },
        }
    }
    add_static(&mut resource, statics);
    let key = resource_key(&resource);
    (
        ResourceOf {
            attributes: resource,
            key,
        },
        (scope_name, scope_version),
        attributes,
    )
}

/// Record parts of log events; a metric has none, so labels of these names are attributes.
const RECORD_PARTS: &[&str] = &crate::otlp::RECORD_FIELDS;

/// Metric kind, as OTLP writes it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Sum,
    Gauge,
    Histogram,
}

fn kind(value: &MetricValue) -> Kind {
    match value {
        MetricValue::Counter(_) => Kind::Sum,
        MetricValue::Gauge(_) => Kind::Gauge,
        MetricValue::Histogram { .. } => Kind::Histogram,
    }
}

/// Encodes metric events (others are skipped) into one `ExportMetricsServiceRequest`.
/// Counters are cumulative monotonic sums, gauges gauges, histograms cumulative explicit-bound
/// histograms (per-bucket counts again, the `+Inf` bucket from the count).
pub fn metrics(events: &[Event], mapping: &Mapping, statics: &Static) -> (Vec<u8>, Vec<usize>) {
    type Split<'a> = (ResourceOf<'a>, Vec<(std::borrow::Cow<'a, str>, &'a str)>);
    let mut splits: Vec<Option<Split<'_>>> = Vec::with_capacity(events.len());
    let mut groups: Groups<'_, usize> = Groups::new();
    for (index, event) in events.iter().enumerate() {
        let Event::Metric(metric) = event else {
            splits.push(None);
            continue;
        };
        let (resource, scope, attributes) = split_labels(metric, mapping, statics);
        groups.add(resource.key.clone(), || index, scope, index);
        splits.push(Some((resource, attributes)));
    }
    let mut w = Writer::with_capacity(events.len() * 96 + 64);
    let mut items = Vec::with_capacity(events.len());
    for (first, scopes) in &groups.resources {
        let Some((resource, _)) = &splits[*first] else {
            continue;
        };
        let resource_metrics = w.begin(1);
        write_resource(&mut w, &resource.attributes);
        for scope in scopes {
            let scope_metrics = w.begin(2);
            write_scope(&mut w, scope.name, scope.version);
            // Metrics by (name, kind), in order of first appearance.
            let mut metrics: Vec<((&str, Kind), Vec<usize>)> = Vec::new();
            for &index in &scope.items {
                let Event::Metric(metric) = &events[index] else {
                    continue;
                };
                let id = (metric.name.as_str(), kind(&metric.value));
                match metrics.iter_mut().find(|(m, _)| *m == id) {
                    Some((_, points)) => points.push(index),
                    None => metrics.push((id, vec![index])),
                }
            }
            for ((name, kind), points) in metrics {
                let metric = w.begin(2);
                w.string(1, name);
                let field = match kind {
                    Kind::Gauge => 5,
                    Kind::Sum => 7,
                    Kind::Histogram => 9,
                };
                let data = w.begin(field);
                for &index in &points {
                    let (Event::Metric(metric), Some((_, attributes))) =
                        (&events[index], &splits[index])
                    else {
                        continue;
                    };
                    write_point(&mut w, metric, attributes);
                    items.push(index);
                }
                match kind {
                    Kind::Gauge => {}
                    Kind::Sum => {
                        w.uint(2, 2); // AGGREGATION_TEMPORALITY_CUMULATIVE
                        w.uint(3, 1); // is_monotonic
                    }
                    Kind::Histogram => w.uint(2, 2),
                }
                w.end(data);
                w.end(metric);
            }
            w.end(scope_metrics);
        }
        w.end(resource_metrics);
    }
    (w.buf, items)
}

fn write_point(w: &mut Writer, metric: &Metric, attributes: &[(std::borrow::Cow<'_, str>, &str)]) {
    let point = w.begin(1);
    let time = u64::try_from(metric.timestamp.0).unwrap_or(0);
    match &metric.value {
        MetricValue::Counter(x) | MetricValue::Gauge(x) => {
            if time != 0 {
                w.fixed64(3, time);
            }
            w.double(4, *x);
            for (name, value) in attributes {
                write_attr(w, 7, name, &Attr::Text(value));
            }
        }
        MetricValue::Histogram {
            buckets,
            sum,
            count,
        } => {
            if time != 0 {
                w.fixed64(3, time);
            }
            w.fixed64(4, *count);
            if !sum.is_nan() {
                w.double(5, *sum);
            }
            let mut previous = 0u64;
            let per_bucket = buckets
                .iter()
                .map(|(_, cumulative)| {
                    let n = cumulative.saturating_sub(previous);
                    previous = previous.max(*cumulative);
                    n
                })
                .collect::<Vec<_>>();
            let last = buckets.last().map_or(0, |(_, c)| *c);
            w.packed_fixed64(
                6,
                per_bucket
                    .into_iter()
                    .chain(std::iter::once(count.saturating_sub(last)))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            w.packed_double(
                7,
                buckets
                    .iter()
                    .map(|(bound, _)| *bound)
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            for (name, value) in attributes {
                write_attr(w, 9, name, &Attr::Text(value));
            }
        }
    }
    w.end(point);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Map, Timestamp};
    use crate::otlp::proto;
    use prost::Message as _;

    fn log(message: &str, fields: &[(&str, Value)]) -> Event {
        Event::Log(LogEvent {
            timestamp: Timestamp(1_700_000_000_000_000_000),
            message: Value::from(message),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect::<Map>(),
            origin: None,
        })
    }

    fn attrs(list: &[proto::KeyValue]) -> Vec<(String, String)> {
        list.iter()
            .map(|kv| {
                let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(proto::any_value::Value::StringValue(s)) => s.clone(),
                    Some(proto::any_value::Value::IntValue(n)) => format!("int {n}"),
                    Some(proto::any_value::Value::KvlistValue(l)) => {
                        format!("map of {}", l.values.len())
                    }
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), value)
            })
            .collect()
    }

    #[test]
    fn logs_group_by_resource_and_scope() {
        let events = vec![
            log(
                "a",
                &[
                    ("file", "/var/log/a".into()),
                    ("namespace", "prod".into()),
                    ("pod", "web-1".into()),
                    ("severity", "err".into()),
                ],
            ),
            log(
                "b",
                &[("namespace", "prod".into()), ("pod", "web-2".into())],
            ),
            log(
                "c",
                &[
                    ("namespace", "prod".into()),
                    ("pod", "web-1".into()),
                    ("otel.scope.name", "lib".into()),
                    ("trace_id", "0102030405060708090a0b0c0d0e0f10".into()),
                    ("span_id", "0102030405060708".into()),
                    ("n", Value::Int(3)),
                ],
            ),
            log(
                "d",
                &[
                    ("service.name", "shop".into()),
                    ("host", "h1".into()),
                    ("host.name", "h2".into()),
                    (
                        "nested",
                        Value::from(crate::event::Map::from([("k", Value::from("v"))])),
                    ),
                ],
            ),
        ];
        let statics = vec![("service.name".to_owned(), "sluice".to_owned())];
        let (body, items) = logs(&events, &Mapping::default(), &statics);
        assert_eq!(
            items,
            vec![0, 2, 1, 3],
            "grouped, in order of first appearance"
        );
        let request = proto::ExportLogsServiceRequest::decode(body.as_slice()).unwrap();
        assert_eq!(request.resource_logs.len(), 3);
        let first = &request.resource_logs[0];
        assert_eq!(
            attrs(&first.resource.as_ref().unwrap().attributes),
            vec![
                ("k8s.namespace.name".to_owned(), "prod".to_owned()),
                ("k8s.pod.name".to_owned(), "web-1".to_owned()),
                ("service.name".to_owned(), "sluice".to_owned()),
            ]
        );
        assert_eq!(first.scope_logs.len(), 2, "two scopes");
        let record = &first.scope_logs[0].log_records[0];
        assert_eq!(record.severity_text, "err");
        assert_eq!(record.severity_number, 17);
        assert_eq!(record.time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(
            attrs(&record.attributes),
            vec![("log.file.path".to_owned(), "/var/log/a".to_owned())]
        );
        let scoped = &first.scope_logs[1];
        assert_eq!(scoped.scope.as_ref().unwrap().name, "lib");
        let record = &scoped.log_records[0];
        assert_eq!(record.trace_id, (1..=16).collect::<Vec<u8>>());
        assert_eq!(record.span_id, (1..=8).collect::<Vec<u8>>());
        assert_eq!(
            attrs(&record.attributes),
            vec![("n".to_owned(), "int 3".to_owned())]
        );
        let last = &request.resource_logs[2];
        assert_eq!(
            attrs(&last.resource.as_ref().unwrap().attributes),
            vec![
                ("host.name".to_owned(), "h2".to_owned()),
                ("service.name".to_owned(), "shop".to_owned())
            ],
            "host.name wins over host; the event's service.name over the static one"
        );
        let record = &last.scope_logs[0].log_records[0];
        assert_eq!(
            attrs(&record.attributes),
            vec![("nested".to_owned(), "map of 1".to_owned())]
        );
    }

    #[test]
    fn source_mapping_round_trips() {
        // OTLP → events (the source) → OTLP (this sink) keeps records, resource and scope.
        let mut original = proto::ExportLogsServiceRequest::default();
        let mut resource_logs = proto::ResourceLogs {
            resource: Some(proto::Resource {
                attributes: vec![proto::KeyValue {
                    key: "service.name".into(),
                    value: Some(proto::AnyValue {
                        value: Some(proto::any_value::Value::StringValue("shop".into())),
                    }),
                }],
            }),
            ..Default::default()
        };
        resource_logs.scope_logs.push(proto::ScopeLogs {
            scope: Some(proto::InstrumentationScope {
                name: "app".into(),
                version: "2".into(),
                attributes: vec![],
            }),
            log_records: vec![proto::LogRecord {
                time_unix_nano: 42,
                observed_time_unix_nano: 42,
                severity_number: 13,
                severity_text: "WARN".into(),
                body: Some(proto::AnyValue {
                    value: Some(proto::any_value::Value::StringValue("careful".into())),
                }),
                attributes: vec![proto::KeyValue {
                    key: "http.status_code".into(),
                    value: Some(proto::AnyValue {
                        value: Some(proto::any_value::Value::IntValue(503)),
                    }),
                }],
                flags: 1,
                trace_id: (1..=16).collect(),
                span_id: (1..=8).collect(),
                event_name: "checkout".into(),
                ..Default::default()
            }],
            schema_url: String::new(),
        });
        original.resource_logs.push(resource_logs);
        let mut events = Vec::new();
        crate::source::opentelemetry::logs::to_events(original.clone(), Timestamp(0), &mut events)
            .unwrap();
        let (body, _) = logs(&events, &Mapping::default(), &[]);
        let again = proto::ExportLogsServiceRequest::decode(body.as_slice()).unwrap();
        assert_eq!(again, original);
    }

    #[test]
    fn metrics_round_trip_through_the_source_mapping() {
        let metric = |name: &str, value: MetricValue, labels: &[(&str, &str)]| {
            Event::Metric(Metric {
                name: name.into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                value,
                timestamp: Timestamp(5_000),
            })
        };
        let events = vec![
            metric(
                "requests",
                MetricValue::Counter(7.0),
                &[
                    ("code", "200"),
                    ("otel.scope.name", "m"),
                    ("service.name", "shop"),
                ],
            ),
            metric("temperature", MetricValue::Gauge(21.5), &[("host", "h1")]),
            metric(
                "latency",
                MetricValue::Histogram {
                    buckets: vec![(0.1, 2), (1.0, 5)],
                    sum: 3.5,
                    count: 6,
                },
                &[("otel.scope.name", "m"), ("service.name", "shop")],
            ),
            metric(
                "requests",
                MetricValue::Counter(9.0),
                &[
                    ("code", "500"),
                    ("otel.scope.name", "m"),
                    ("service.name", "shop"),
                ],
            ),
        ];
        let (body, items) = metrics(&events, &Mapping::default(), &[]);
        assert_eq!(items, vec![0, 3, 2, 1]);
        let request = proto::ExportMetricsServiceRequest::decode(body.as_slice()).unwrap();
        assert_eq!(request.resource_metrics.len(), 2);
        let shop = &request.resource_metrics[0].scope_metrics[0];
        assert_eq!(shop.scope.as_ref().unwrap().name, "m");
        assert_eq!(shop.metrics.len(), 2);
        let Some(proto::metric::Data::Sum(sum)) = &shop.metrics[0].data else {
            panic!("a sum")
        };
        assert!(sum.is_monotonic);
        assert_eq!(sum.aggregation_temporality, proto::TEMPORALITY_CUMULATIVE);
        assert_eq!(sum.data_points.len(), 2);
        let Some(proto::metric::Data::Histogram(h)) = &shop.metrics[1].data else {
            panic!("a histogram")
        };
        assert_eq!(h.data_points[0].bucket_counts, vec![2, 3, 1]);
        assert_eq!(h.data_points[0].explicit_bounds, vec![0.1, 1.0]);
        // And back through the source: the same events.
        let totals = crate::source::opentelemetry::metrics::DeltaTotals::new(10);
        let mut back = Vec::new();
        crate::source::opentelemetry::metrics::to_events(request, Timestamp(0), &totals, &mut back);
        let host_gauge = back
            .iter()
            .find_map(|e| match e {
                Event::Metric(m) if m.name == "temperature" => Some(m.clone()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            host_gauge.labels,
            vec![("host.name".to_owned(), "h1".to_owned())]
        );
        let mut expected: Vec<&Event> = events
            .iter()
            .filter(|e| !matches!(e, Event::Metric(m) if m.name == "temperature"))
            .collect();
        let mut got: Vec<&Event> = back
            .iter()
            .filter(|e| !matches!(e, Event::Metric(m) if m.name == "temperature"))
            .collect();
        let name = |e: &&Event| match e {
            Event::Metric(m) => format!("{}{:?}", m.name, m.labels),
            Event::Log(_) => String::new(),
        };
        expected.sort_by_key(name);
        got.sort_by_key(name);
        assert_eq!(got, expected);
    }
}
