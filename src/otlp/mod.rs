//! What the `opentelemetry` source and sink share: the OTLP messages (`proto.rs`) and the
//! log data model's severity names. Neither component imports the other.

pub mod proto;

/// The event fields a log record's own parts become (beside its body, time and
/// attributes), in name order: the source fills them, the sink maps them back.
pub const RECORD_FIELDS: [&str; 6] = [
    "event_name",
    "severity",
    "severity_number",
    "span_id",
    "trace_flags",
    "trace_id",
];

/// The short names of severity numbers 1..=24 (the log data model's `SeverityText` names).
const SEVERITY_NAMES: [&str; 24] = [
    "TRACE", "TRACE2", "TRACE3", "TRACE4", "DEBUG", "DEBUG2", "DEBUG3", "DEBUG4", "INFO", "INFO2",
    "INFO3", "INFO4", "WARN", "WARN2", "WARN3", "WARN4", "ERROR", "ERROR2", "ERROR3", "ERROR4",
    "FATAL", "FATAL2", "FATAL3", "FATAL4",
];

/// The short name of an OTLP severity number, `None` outside 1..=24.
pub fn severity_name(number: i32) -> Option<&'static str> {
    usize::try_from(number)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| SEVERITY_NAMES.get(i).copied())
}
