//! The protobuf wire reader the log decoder reads requests with (no message structs: every
//! key and value is read once, into the event), and `AnyValue`s as typed [`Value`]s.
//!
//! Owns: wire types, the nesting limit, attribute values and their field names. Never:
//! decides where a value goes in an event (`logs.rs`).

use super::proto::{any_value, AnyValue};
use crate::event::{Key, Map, Value};

/// Most nested messages below the request (prost's default recursion limit).
const MAX_DEPTH: u32 = 100;

/// A field's value as read off the wire.
#[derive(Debug, Clone, Copy)]
pub(super) enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Wire<'a> {
    fn mismatch(what: &str) -> String {
        format!("invalid wire type for {what}")
    }

    pub(super) fn bytes(self, what: &str) -> Result<&'a [u8], String> {
        match self {
            Wire::Bytes(bytes) => Ok(bytes),
            _ => Err(Self::mismatch(what)),
        }
    }

    pub(super) fn text(self, what: &str) -> Result<&'a str, String> {
        std::str::from_utf8(self.bytes(what)?)
            .map_err(|_| format!("invalid string value in {what}: data is not UTF-8 encoded"))
    }

    pub(super) fn varint(self, what: &str) -> Result<u64, String> {
        match self {
            Wire::Varint(value) => Ok(value),
            _ => Err(Self::mismatch(what)),
        }
    }

    pub(super) fn fixed64(self, what: &str) -> Result<u64, String> {
        match self {
            Wire::Fixed64(value) => Ok(value),
            _ => Err(Self::mismatch(what)),
        }
    }

    pub(super) fn fixed32(self, what: &str) -> Result<u32, String> {
        match self {
            Wire::Fixed32(value) => Ok(value),
            _ => Err(Self::mismatch(what)),
        }
    }
}

/// Reads the fields of one message.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// The fields of `buf` (nesting depth is checked by the callers that descend: see
    /// [`nested`]).
    pub(super) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, at: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        // Tags and most lengths are one byte.
        if let Some(&byte) = self.buf.get(self.at) {
            if byte < 0x80 {
                self.at += 1;
                return Ok(u64::from(byte));
            }
        }
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.buf.get(self.at) else {
                return Err("truncated message (varint)".into());
            };
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err("invalid varint".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or("truncated message (buffer underflow)")?;
        let bytes = &self.buf[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    /// The next field: its number and value; `None` at the end.
    pub(super) fn next(&mut self) -> Result<Option<(u32, Wire<'a>)>, String> {
        if self.at >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = u32::try_from(key >> 3).map_err(|_| "invalid field number")?;
        if field == 0 {
            return Err("invalid field number 0".into());
        }
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().map_err(|_| "truncated fixed64")?,
            )),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| "invalid length")?;
                Wire::Bytes(self.take(len)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().map_err(|_| "truncated fixed32")?,
            )),
            other => return Err(format!("invalid or unsupported wire type {other}")),
        };
        Ok(Some((field, wire)))
    }
}

/// A `KeyValue` at nesting `depth`: the field name and its value.
pub(super) fn read_key_value(bytes: &[u8], depth: u32) -> Result<(Key, Value), String> {
    nested(depth)?;
    let (mut name, mut value) = ("", None);
    let mut reader = Reader::new(bytes);
    while let Some((field, wire)) = reader.next()? {
        match field {
            1 => name = wire.text("KeyValue.key")?,
            2 => value = Some(wire.bytes("KeyValue.value")?),
            _ => {}
        }
    }
    let value = match value {
        Some(bytes) => read_any(bytes, depth + 1)?,
        None => Value::Null,
    };
    Ok((key(name), value))
}

fn nested(depth: u32) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("recursion limit reached".into());
    }
    Ok(())
}

/// An `AnyValue` at nesting `depth` as a typed [`Value`] (the last of several values wins,
/// as protobuf's `oneof` does).
pub(super) fn read_any(bytes: &[u8], depth: u32) -> Result<Value, String> {
    nested(depth)?;
    let mut value = Value::Null;
    let mut reader = Reader::new(bytes);
    while let Some((field, wire)) = reader.next()? {
        value = match field {
            1 => Value::from(wire.text("AnyValue.string_value")?),
            2 => Value::Bool(wire.varint("AnyValue.bool_value")? != 0),
            3 => Value::Int(wire.varint("AnyValue.int_value")? as i64),
            4 => Value::Float(f64::from_bits(wire.fixed64("AnyValue.double_value")?)),
            5 => {
                nested(depth + 1)?;
                let mut items = Vec::new();
                let mut array = Reader::new(wire.bytes("AnyValue.array_value")?);
                while let Some((field, wire)) = array.next()? {
                    if field == 1 {
                        items.push(read_any(wire.bytes("ArrayValue.values")?, depth + 2)?);
                    }
                }
                Value::Array(items)
            }
            6 => {
                nested(depth + 1)?;
                let mut entries = Vec::new();
                let mut list = Reader::new(wire.bytes("AnyValue.kvlist_value")?);
                while let Some((field, wire)) = list.next()? {
                    if field == 1 {
                        entries.push(read_key_value(
                            wire.bytes("KeyValueList.values")?,
                            depth + 2,
                        )?);
                    }
                }
                Value::from(entries.into_iter().collect::<Map>())
            }
            7 => Value::String(base64(wire.bytes("AnyValue.bytes_value")?)),
            _ => continue,
        };
    }
    Ok(value)
}

/// Attribute keys that SDKs send on (nearly) every record or resource, sorted. Their fields
/// get a `&'static str` name: no allocation when a resource attribute is copied into each
/// event, and none freed on the sink's thread.
pub(super) const COMMON_KEYS: &[&str] = &[
    "client.address",
    "cloud.account.id",
    "cloud.availability_zone",
    "cloud.platform",
    "cloud.provider",
    "cloud.region",
    "code.file.path",
    "code.filepath",
    "code.function",
    "code.function.name",
    "code.line.number",
    "code.lineno",
    "code.namespace",
    "container.id",
    "container.image.name",
    "container.image.tag",
    "container.name",
    "deployment.environment",
    "deployment.environment.name",
    "error.type",
    "event.name",
    "exception.message",
    "exception.stacktrace",
    "exception.type",
    "host.arch",
    "host.id",
    "host.name",
    "host.type",
    "http.method",
    "http.request.method",
    "http.response.status_code",
    "http.route",
    "http.status_code",
    "http.target",
    "k8s.cluster.name",
    "k8s.container.name",
    "k8s.deployment.name",
    "k8s.namespace.name",
    "k8s.node.name",
    "k8s.pod.name",
    "k8s.pod.uid",
    "log.file.path",
    "log.iostream",
    "os.description",
    "os.name",
    "os.type",
    "os.version",
    "process.command",
    "process.command_args",
    "process.command_line",
    "process.executable.name",
    "process.executable.path",
    "process.owner",
    "process.pid",
    "process.runtime.description",
    "process.runtime.name",
    "process.runtime.version",
    "server.address",
    "server.port",
    "service.instance.id",
    "service.name",
    "service.namespace",
    "service.version",
    "telemetry.distro.name",
    "telemetry.distro.version",
    "telemetry.sdk.language",
    "telemetry.sdk.name",
    "telemetry.sdk.version",
    "thread.id",
    "thread.name",
    "url.full",
    "url.path",
    "user.id",
];

/// The field name for an attribute key: static for [`COMMON_KEYS`], and for the first
/// other keys seen (an application's own attributes, the same on every record): a plan's
/// names are copied into every event, and a static one costs no allocation there, nor a
/// free when the event is spent. Past [`crate::event::intern`]'s budget (a sender inventing
/// keys), new keys are owned strings: slower, never more memory.
pub(super) fn key(name: &str) -> Key {
    match COMMON_KEYS.binary_search(&name) {
        Ok(i) => Key::Borrowed(COMMON_KEYS[i]),
        Err(_) => crate::event::intern(name),
    }
}

/// Standard base64 with padding (RFC 4648 §4): `bytes` values as text.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = Vec::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.extend_from_slice(&[
            DIGITS[usize::from(byte >> 4)],
            DIGITS[usize::from(byte & 15)],
        ]);
    }
    // ASCII digits: the check cannot fail (and costs a few nanoseconds, not a per-char push).
    String::from_utf8(text).unwrap_or_default()
}

/// An `AnyValue` as a typed [`Value`].
pub fn any_to_value(value: AnyValue) -> Value {
    match value.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(text)) => Value::String(text),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(b),
        Some(any_value::Value::IntValue(n)) => Value::Int(n),
        Some(any_value::Value::DoubleValue(x)) => Value::Float(x),
        Some(any_value::Value::BytesValue(bytes)) => Value::String(base64(&bytes)),
        Some(any_value::Value::ArrayValue(array)) => {
            Value::Array(array.values.into_iter().map(any_to_value).collect())
        }
        Some(any_value::Value::KvlistValue(list)) => Value::from(
            list.values
                .into_iter()
                .map(|kv| (kv.key, kv.value.map(any_to_value).unwrap_or_default()))
                .collect::<Map>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_keys_are_sorted_for_the_binary_search() {
        assert!(COMMON_KEYS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn common_keys_are_static() {
        assert!(matches!(key("service.name"), Key::Borrowed("service.name")));
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }
}
