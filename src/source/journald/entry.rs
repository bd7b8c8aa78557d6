//! One journal entry → one log event.
//!
//! - `MESSAGE` → the message. A message that is not UTF-8 is kept losslessly: the message
//!   is its lossy text (invalid bytes as U+FFFD) and `message_base64` holds the raw bytes.
//! - `__REALTIME_TIMESTAMP` (the entry's realtime) → the event time.
//! - `PRIORITY` → `severity` (syslog names: `emerg` … `debug`), `SYSLOG_FACILITY` →
//!   `facility` (`kern`, `user`, `daemon`, …), as the syslog source names them.
//! - `SYSLOG_IDENTIFIER` → `appname` (the syslog source's name), `_SYSTEMD_UNIT` → `unit`,
//!   `_PID` → `pid`, `_HOSTNAME` → `hostname`, `_BOOT_ID` → `boot_id`, `_TRANSPORT` →
//!   `transport`, `_COMM` → `comm`, `CONTAINER_NAME` → `container_name`.
//! - With `all_fields`, every other field under its journal name (non-UTF-8 values as lossy
//!   text).
//!
//! Owns: the field names above (documented in the README). Never: fails: any bytes make an
//! event.

use crate::event::{LogEvent, Map, Origin, StreamName, Timestamp, Value};

use super::file::{EntryMeta, Fields};
use crate::source::syslog::message::{FACILITIES, SEVERITIES};

/// Journal fields copied under another name.
const MAPPED: [(&str, &str); 8] = [
    ("SYSLOG_IDENTIFIER", "appname"),
    ("_SYSTEMD_UNIT", "unit"),
    ("_PID", "pid"),
    ("_HOSTNAME", "hostname"),
    ("_BOOT_ID", "boot_id"),
    ("_TRANSPORT", "transport"),
    ("_COMM", "comm"),
    ("CONTAINER_NAME", "container_name"),
];

/// Builds the event of one entry.
pub fn to_event(
    meta: &EntryMeta,
    fields: &Fields,
    all_fields: bool,
    stream: &StreamName,
    index: u64,
) -> LogEvent {
    let mut out = Map::with_capacity(if all_fields { fields.len() + 2 } else { 10 });
    let mut message = Value::String(String::new());
    for (name, value) in fields.iter() {
        match name {
            b"MESSAGE" => {
                message = match std::str::from_utf8(value) {
                    Ok(text) => Value::String(text.to_owned()),
                    Err(_) => {
                        out.insert("message_base64", Value::String(base64(value)));
                        Value::String(String::from_utf8_lossy(value).into_owned())
                    }
                };
            }
            b"PRIORITY" => {
                if let Some(name) = code(value).and_then(|c| SEVERITIES.get(c)) {
                    out.insert("severity", Value::String((*name).to_owned()));
                }
                if all_fields {
                    out.insert("PRIORITY", text(value));
                }
            }
            b"SYSLOG_FACILITY" => {
                if let Some(name) = code(value).and_then(|c| FACILITIES.get(c)) {
                    out.insert("facility", Value::String((*name).to_owned()));
                }
                if all_fields {
                    out.insert("SYSLOG_FACILITY", text(value));
                }
            }
            _ => {
                if let Some((_, mapped)) = MAPPED
                    .iter()
                    .find(|(journal, _)| journal.as_bytes() == name)
                {
                    out.insert(*mapped, text(value));
                } else if all_fields {
                    out.insert(String::from_utf8_lossy(name).into_owned(), text(value));
                }
            }
        }
    }
    LogEvent {
        timestamp: Timestamp((meta.realtime as i64).saturating_mul(1000)),
        message,
        fields: out,
        origin: Some(Origin {
            stream: stream.clone(),
            offset: index,
        }),
    }
}

fn code(value: &[u8]) -> Option<usize> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

fn text(value: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(value).into_owned())
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn fields_map_to_documented_names() {
        let mut fields = Fields::default();
        for pair in [
            &b"MESSAGE=caf\xe9"[..],
            b"PRIORITY=3",
            b"SYSLOG_FACILITY=3",
            b"SYSLOG_IDENTIFIER=nginx",
            b"_SYSTEMD_UNIT=nginx.service",
            b"_PID=42",
            b"CODE_FILE=x.c",
        ] {
            fields.push_for_test(pair);
        }
        let meta = EntryMeta {
            offset: 0,
            seqnum: 1,
            realtime: 1_700_000_000_123_456,
            monotonic: 0,
            boot_id: [0; 16],
            xor_hash: 0,
        };
        let stream = StreamName::from("p/journald/x");
        let event = to_event(&meta, &fields, false, &stream, 7);
        assert_eq!(event.message, Value::String("caf\u{fffd}".into()));
        assert_eq!(event.timestamp, Timestamp(1_700_000_000_123_456_000));
        let get = |name: &str| {
            event
                .fields
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        assert_eq!(get("message_base64").as_deref(), Some("Y2Fm6Q=="));
        assert_eq!(get("severity").as_deref(), Some("err"));
        assert_eq!(get("facility").as_deref(), Some("daemon"));
        assert_eq!(get("appname").as_deref(), Some("nginx"));
        assert_eq!(get("unit").as_deref(), Some("nginx.service"));
        assert_eq!(get("pid").as_deref(), Some("42"));
        assert_eq!(get("CODE_FILE"), None);
        let all = to_event(&meta, &fields, true, &stream, 7);
        assert_eq!(
            all.fields.get("CODE_FILE").and_then(Value::as_str),
            Some("x.c")
        );
        assert_eq!(all.origin.map(|o| o.offset), Some(7));
    }
}
