//! sluice fields → OpenTelemetry names: which fields are the resource, which the record's own
//! attributes, and the names of sluice's own fields in the semantic conventions.
//!
//! | sluice field (source)                        | OpenTelemetry                                 |
//! |----------------------------------------------|-----------------------------------------------|
//! | `message`                                    | log body (typed: a map stays a map)           |
//! | event time                                   | `time_unix_nano` and `observed_time_unix_nano` |
//! | `severity` (syslog, journald, OTLP)          | `severity_text`; `severity_number` from the field of that name, else from the text (see [`severity_number`]) |
//! | `trace_id`, `span_id` (hex), `trace_flags`   | the record's trace context                    |
//! | `event_name`                                 | the record's `event_name`                     |
//! | `otel.scope.name`, `otel.scope.version`      | the instrumentation scope                     |
//! | `file` (file source)                         | `log.file.path`                               |
//! | `stream` (CRI/docker stdout/stderr)          | `log.iostream`                                |
//! | `host`, `hostname` (syslog)                  | resource `host.name`                          |
//! | `namespace`, `pod`, `container`, `pod_uid` (Kubernetes) | resource `k8s.namespace.name`, `k8s.pod.name`, `k8s.container.name`, `k8s.pod.uid` |
//! | `appname` (syslog)                           | resource `service.name`                       |
//! | fields named in a resource namespace: `service.*`, `host.*`, `k8s.*`, `container.*`, `process.*`, `os.*`, `cloud.*`, `deployment.*`, `telemetry.*`, `faas.*`, `device.*`, `webengine.*` (or as `resource_fields` says) | resource attributes |
//! | every other field                            | a record attribute of the same name           |
//!
//! A renamed field gives way to a field that already has the OpenTelemetry name (`host.name`
//! over `host`). Metric labels follow the same rules: resource labels group the series by
//! resource, `otel.scope.*` by scope, the rest are the data point's attributes. This is the
//! inverse of the `opentelemetry` source's mapping, so OTLP → sluice → OTLP keeps the
//! resource, scope and attributes.
//!
//! Owns: the naming rules. Never: encodes.

use std::borrow::Cow;

/// sluice's own field names and their OpenTelemetry names (true: a resource attribute).
/// Sorted by sluice name.
const RENAMES: &[(&str, &str, bool)] = &[
    ("appname", "service.name", true),
    ("container", "k8s.container.name", true),
    ("file", "log.file.path", false),
    ("host", "host.name", true),
    ("hostname", "host.name", true),
    ("namespace", "k8s.namespace.name", true),
    ("pod", "k8s.pod.name", true),
    ("pod_uid", "k8s.pod.uid", true),
    ("stream", "log.iostream", false),
];

/// The semantic conventions' resource namespaces (default `resource_fields`).
pub const RESOURCE_PREFIXES: &[&str] = &[
    "service.",
    "host.",
    "k8s.",
    "container.",
    "process.",
    "os.",
    "cloud.",
    "deployment.",
    "telemetry.",
    "faas.",
    "device.",
    "webengine.",
];

/// Fields that become parts of a log record rather than attributes.
pub const RECORD_FIELDS: &[&str] = &[
    "event_name",
    "otel.scope.name",
    "otel.scope.version",
    "severity",
    "severity_number",
    "span_id",
    "trace_flags",
    "trace_id",
];

/// Where a field goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Place<'a> {
    /// A resource attribute with this name.
    Resource(Cow<'a, str>),
    /// A record (or data point) attribute with this name.
    Attribute(Cow<'a, str>),
    /// Part of the record itself (severity, trace context, scope), or a renamed field that
    /// gives way to the field with the OpenTelemetry name.
    Skip,
}

/// Which fields are resource attributes: names (exact) and prefixes (ending in `.`).
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    names: Vec<String>,
    prefixes: Vec<String>,
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping::new(RESOURCE_PREFIXES.iter().map(|p| (*p).to_owned()))
    }
}

impl Mapping {
    /// From `resource_fields` entries: `k8s.` is a prefix, `region` a name.
    pub fn new(entries: impl IntoIterator<Item = String>) -> Self {
        let (prefixes, names) = entries.into_iter().partition(|e| e.ends_with('.'));
        Mapping { names, prefixes }
    }

    fn is_resource(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
            || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }

    /// Where field `name` goes; `has` tells whether the event has a field of a given name
    /// (so a renamed field gives way).
    pub fn place<'a>(&self, name: &'a str, has: impl Fn(&str) -> bool) -> Place<'a> {
        if RECORD_FIELDS.binary_search(&name).is_ok() {
            return Place::Skip;
        }
        if let Ok(i) = RENAMES.binary_search_by(|(from, _, _)| from.cmp(&name)) {
            let (_, to, resource) = RENAMES[i];
            // The field with the OpenTelemetry name wins; of `host` and `hostname`, `host`.
            if has(to) || (name == "hostname" && has("host")) {
                return Place::Skip;
            }
            return if resource || self.is_resource(to) {
                Place::Resource(Cow::Borrowed(to))
            } else {
                Place::Attribute(Cow::Borrowed(to))
            };
        }
        if self.is_resource(name) {
            Place::Resource(Cow::Borrowed(name))
        } else {
            Place::Attribute(Cow::Borrowed(name))
        }
    }
}

/// The OTLP severity number of a severity text: the log data model's short names (`INFO`,
/// `WARN3`, …), syslog's names (RFC 5424 via the data model's appendix B: `debug` DEBUG,
/// `info` INFO, `notice` INFO2, `warning` WARN, `err` ERROR, `crit` ERROR2, `alert` ERROR3,
/// `emerg` FATAL) and common spellings, any case. 0 (unspecified) when unknown.
pub fn severity_number(text: &str) -> i32 {
    let lower = text.trim().to_ascii_lowercase();
    match lower.as_str() {
        "trace" => 1,
        "debug" => 5,
        "info" | "information" | "informational" => 9,
        "notice" => 10,
        "warn" | "warning" => 13,
        "error" | "err" => 17,
        "crit" | "critical" => 18,
        "alert" => 19,
        "fatal" | "emerg" | "emergency" | "panic" => 21,
        _ => (1..=24)
            .find(|n| {
                crate::otlp::severity_name(*n).is_some_and(|name| name.eq_ignore_ascii_case(&lower))
            })
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted() {
        assert!(RENAMES.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(RECORD_FIELDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn places_fields() {
        let mapping = Mapping::default();
        let none = |_: &str| false;
        assert_eq!(
            mapping.place("file", none),
            Place::Attribute("log.file.path".into())
        );
        assert_eq!(
            mapping.place("namespace", none),
            Place::Resource("k8s.namespace.name".into())
        );
        assert_eq!(
            mapping.place("service.name", none),
            Place::Resource("service.name".into())
        );
        assert_eq!(
            mapping.place("http.method", none),
            Place::Attribute("http.method".into())
        );
        assert_eq!(mapping.place("severity", none), Place::Skip);
        assert_eq!(mapping.place("host", |n| n == "host.name"), Place::Skip);
        assert_eq!(mapping.place("hostname", |n| n == "host"), Place::Skip);
        let custom = Mapping::new(["region".to_owned(), "app.".to_owned()]);
        assert_eq!(
            custom.place("region", none),
            Place::Resource("region".into())
        );
        assert_eq!(
            custom.place("app.tier", none),
            Place::Resource("app.tier".into())
        );
        assert_eq!(
            custom.place("service.name", none),
            Place::Attribute("service.name".into())
        );
    }

    #[test]
    fn severity_numbers() {
        for (text, number) in [
            ("INFO", 9),
            ("info", 9),
            ("Information", 9),
            ("warning", 13),
            ("err", 17),
            ("crit", 18),
            ("emerg", 21),
            ("WARN2", 14),
            ("fatal4", 24),
            ("verbose", 0),
        ] {
            assert_eq!(severity_number(text), number, "{text}");
        }
    }
}
