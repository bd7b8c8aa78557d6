//! The bytes of one buffered batch: its events in a compact binary form, written by
//! [`encode`] and read back by [`decode`].
//!
//! Layout (little-endian; `varint` is LEB128): `n_events: varint`, then per event a tag
//! (`0` log, `1` metric) and its parts. A log event: `timestamp: i64`, `message: value`,
//! `fields: varint count, (key: str, value)*`, `origin: u8 (0 none, 1 some), stream: str,
//! offset: varint`. A value: a tag (`0` null, `1` false, `2` true, `3` int `i64`, `4` float
//! `f64`, `5` string, `6` array `varint count, value*`, `7` map `varint count,
//! (str, value)*`). A `str` is `varint length` + UTF-8 bytes. A metric: `name: str`,
//! `labels: varint count, (str, str)*`, kind (`0` counter `f64`, `1` gauge `f64`, `2`
//! histogram `varint n, (f64, u64)*, sum f64, count u64`), `timestamp: i64`.
//!
//! Owns: the event encoding. Never: panics on any input ([`decode`] answers `None` for bytes
//! it cannot read: the record's CRC matched, so that is a bug or a version mismatch, counted
//! by the caller), or recurses deeper than [`MAX_DEPTH`].

use std::borrow::Cow;

use crate::event::{
    Event, Key, LogEvent, Map, Metric, MetricValue, Origin, StreamName, Timestamp, Value,
};

/// Top-level field keys remembered by position, from one event to the next.
const REMEMBERED_KEYS: usize = 16;

/// Deepest nesting of arrays and maps decoded.
const MAX_DEPTH: usize = 64;

/// Field names written on every event by sources and parsers: decoded as `&'static str`
/// keys, so reading them back allocates nothing.
const STATIC_KEYS: &[&str] = &[
    "appname",
    "container",
    "facility",
    "file",
    "host",
    "hostname",
    "level",
    "msgid",
    "namespace",
    "pod",
    "procid",
    "severity",
    "source_type",
    "stream",
    "unit",
];

/// Appends the encoding of `events` to `out`.
pub fn encode(events: &[Event], out: &mut Vec<u8>) {
    varint(out, events.len() as u64);
    for event in events {
        match event {
            Event::Log(log) => {
                out.push(0);
                encode_log(log, out);
            }
            Event::Metric(metric) => {
                out.push(1);
                encode_metric(metric, out);
            }
        }
    }
}

fn encode_log(log: &LogEvent, out: &mut Vec<u8>) {
    out.extend_from_slice(&log.timestamp.0.to_le_bytes());
    value(out, &log.message);
    varint(out, log.fields.len() as u64);
    for (key, field) in &log.fields {
        string(out, key);
        value(out, field);
    }
    match &log.origin {
        None => out.push(0),
        Some(origin) => {
            out.push(1);
            string(out, &origin.stream);
            varint(out, origin.offset);
        }
    }
}

fn encode_metric(metric: &Metric, out: &mut Vec<u8>) {
    string(out, &metric.name);
    varint(out, metric.labels.len() as u64);
    for (name, label) in &metric.labels {
        string(out, name);
        string(out, label);
    }
    match &metric.value {
        MetricValue::Counter(v) => {
            out.push(0);
            out.extend_from_slice(&v.to_le_bytes());
        }
        MetricValue::Gauge(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
        MetricValue::Histogram {
            buckets,
            sum,
            count,
        } => {
            out.push(2);
            varint(out, buckets.len() as u64);
            for (bound, n) in buckets {
                out.extend_from_slice(&bound.to_le_bytes());
                out.extend_from_slice(&n.to_le_bytes());
            }
            out.extend_from_slice(&sum.to_le_bytes());
            out.extend_from_slice(&count.to_le_bytes());
        }
    }
    out.extend_from_slice(&metric.timestamp.0.to_le_bytes());
}

fn value(out: &mut Vec<u8>, value_: &Value) {
    match value_ {
        Value::Null => out.push(0),
        Value::Bool(false) => out.push(1),
        Value::Bool(true) => out.push(2),
        Value::Int(n) => {
            out.push(3);
            out.extend_from_slice(&n.to_le_bytes());
        }
        Value::Float(x) => {
            out.push(4);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Value::String(text) => {
            out.push(5);
            string(out, text);
        }
        Value::Array(items) => {
            out.push(6);
            varint(out, items.len() as u64);
            for item in items {
                value(out, item);
            }
        }
        Value::Map(map) => {
            out.push(7);
            varint(out, map.len() as u64);
            for (key, item) in map.iter() {
                string(out, key);
                value(out, item);
            }
        }
    }
}

fn string(out: &mut Vec<u8>, text: &str) {
    varint(out, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// The events encoded in `bytes`, or `None` if they cannot be read whole.
pub fn decode(bytes: &[u8]) -> Option<Vec<Event>> {
    let mut reader = Reader {
        bytes,
        at: 0,
        last_stream: None,
        last_keys: Vec::new(),
    };
    let n = reader.count()?;
    let mut events = Vec::with_capacity(n);
    for _ in 0..n {
        events.push(match reader.byte()? {
            0 => Event::Log(reader.log()?),
            1 => Event::Metric(reader.metric()?),
            _ => return None,
        });
    }
    (reader.at == bytes.len()).then_some(events)
}

/// The events of a batch mostly share their stream and field names: each is kept as read
/// for the previous event, so a repeat is a byte comparison and a clone, not a UTF-8 check,
/// an allocation and (on the sink) a free.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    /// The previous log event's origin stream, as encoded and as decoded.
    last_stream: Option<(&'a [u8], StreamName)>,
    /// The previous log event's field keys by position (the first [`REMEMBERED_KEYS`]).
    last_keys: Vec<(&'a [u8], Key)>,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    fn byte(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn array8(&mut self) -> Option<[u8; 8]> {
        self.take(8)?.try_into().ok()
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.array8()?))
    }

    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.array8()?))
    }

    fn varint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    /// A count of items that each take at least one byte: never more than the bytes left
    /// (so a corrupt count cannot make `Vec::with_capacity` allocate out of proportion).
    fn count(&mut self) -> Option<usize> {
        let n = usize::try_from(self.varint()?).ok()?;
        (n <= self.bytes.len() - self.at).then_some(n)
    }

    /// A `str`'s bytes, not yet checked as UTF-8.
    fn str_bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        self.take(n)
    }

    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.str_bytes()?).ok()
    }

    fn key(&mut self) -> Option<Key> {
        Some(key_of(self.str()?))
    }

    /// The key of top-level field `index` of a log event.
    fn field_key(&mut self, index: usize) -> Option<Key> {
        let bytes = self.str_bytes()?;
        if let Some((last, key)) = self.last_keys.get(index) {
            if *last == bytes {
                return Some(key.clone());
            }
        }
        let key = key_of(std::str::from_utf8(bytes).ok()?);
        if let Some(slot) = self.last_keys.get_mut(index) {
            *slot = (bytes, key.clone());
        } else if index == self.last_keys.len() && index < REMEMBERED_KEYS {
            self.last_keys.push((bytes, key.clone()));
        }
        Some(key)
    }

    fn stream(&mut self) -> Option<StreamName> {
        let bytes = self.str_bytes()?;
        if let Some((last, stream)) = &self.last_stream {
            if *last == bytes {
                return Some(stream.clone());
            }
        }
        let stream = StreamName::from(std::str::from_utf8(bytes).ok()?);
        self.last_stream = Some((bytes, stream.clone()));
        Some(stream)
    }

    fn log(&mut self) -> Option<LogEvent> {
        let timestamp = Timestamp(self.i64()?);
        let message = self.value(0)?;
        let n_fields = self.count()?;
        let mut fields = Map::with_capacity(n_fields);
        for index in 0..n_fields {
            let key = self.field_key(index)?;
            let field = self.value(0)?;
            fields.insert(key, field);
        }
        let origin = match self.byte()? {
            0 => None,
            1 => Some(Origin {
                stream: self.stream()?,
                offset: self.varint()?,
            }),
            _ => return None,
        };
        Some(LogEvent {
            timestamp,
            message,
            fields,
            origin,
        })
    }

    fn metric(&mut self) -> Option<Metric> {
        let name = self.str()?.to_owned();
        let n_labels = self.count()?;
        let mut labels = Vec::with_capacity(n_labels);
        for _ in 0..n_labels {
            labels.push((self.str()?.to_owned(), self.str()?.to_owned()));
        }
        let value = match self.byte()? {
            0 => MetricValue::Counter(self.f64()?),
            1 => MetricValue::Gauge(self.f64()?),
            2 => {
                let n = self.count()?;
                let mut buckets = Vec::with_capacity(n);
                for _ in 0..n {
                    buckets.push((self.f64()?, u64::from_le_bytes(self.array8()?)));
                }
                MetricValue::Histogram {
                    buckets,
                    sum: self.f64()?,
                    count: u64::from_le_bytes(self.array8()?),
                }
            }
            _ => return None,
        };
        Some(Metric {
            name,
            labels,
            value,
            timestamp: Timestamp(self.i64()?),
        })
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        Some(match self.byte()? {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::Int(self.i64()?),
            4 => Value::Float(self.f64()?),
            5 => Value::String(self.str()?.to_owned()),
            6 => {
                let n = self.count()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            7 => {
                let n = self.count()?;
                let mut map = Map::with_capacity(n);
                for _ in 0..n {
                    let key = self.key()?;
                    let item = self.value(depth + 1)?;
                    map.insert(key, item);
                }
                Value::from(map)
            }
            _ => return None,
        })
    }
}

/// A field name as a [`Key`]: borrowed when it is one of [`STATIC_KEYS`].
fn key_of(name: &str) -> Key {
    match STATIC_KEYS.binary_search(&name) {
        Ok(i) => Cow::Borrowed(STATIC_KEYS[i]),
        Err(_) => Cow::Owned(name.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn static_keys_are_sorted() {
        assert!(STATIC_KEYS.windows(2).all(|w| w[0] < w[1]));
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>()
                .prop_filter("NaN is not equal to itself", |x| !x.is_nan())
                .prop_map(Value::Float),
            ".{0,12}".prop_map(Value::String),
        ]
        .prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{0,6}", inner, 0..4)
                    .prop_map(|m| Value::from(m.into_iter().collect::<crate::event::Map>())),
            ]
        })
    }

    fn event() -> impl Strategy<Value = Event> {
        let log = (
            any::<i64>(),
            value(),
            prop::collection::btree_map(
                prop_oneof!["[a-z_]{0,8}", "[ab]{1,2}", Just("file".to_owned())],
                value(),
                0..5,
            ),
            // Streams repeat between events (decoding remembers the last one), inline
            // and shared (longer than `StreamName`'s inline size).
            prop::option::of((
                prop_oneof![
                    "[0-9a-f-]{1,40}",
                    Just("a".to_owned()),
                    Just("b".to_owned()),
                    Just("/var/log/pods/ns_pod_0123-4567/container/0.log".to_owned()),
                ],
                any::<u64>(),
            )),
        )
            .prop_map(|(nanos, message, fields, origin)| {
                Event::Log(LogEvent {
                    timestamp: Timestamp(nanos),
                    message,
                    fields: fields.into_iter().collect(),
                    origin: origin.map(|(stream, offset)| Origin {
                        stream: stream.into(),
                        offset,
                    }),
                })
            });
        let metric = (
            "[a-z_]{1,10}",
            prop::collection::vec(("[a-z]{1,4}", ".{0,6}"), 0..3),
            prop_oneof![
                (-1e9f64..1e9).prop_map(MetricValue::Counter),
                (-1e9f64..1e9).prop_map(MetricValue::Gauge),
                (
                    prop::collection::vec((-1e3f64..1e3, any::<u64>()), 0..4),
                    -1e9f64..1e9,
                    any::<u64>()
                )
                    .prop_map(|(buckets, sum, count)| MetricValue::Histogram {
                        buckets,
                        sum,
                        count
                    }),
            ],
            any::<i64>(),
        )
            .prop_map(|(name, labels, value, nanos)| {
                Event::Metric(Metric {
                    name,
                    labels,
                    value,
                    timestamp: Timestamp(nanos),
                })
            });
        prop_oneof![3 => log, 1 => metric]
    }

    proptest! {
        #[test]
        fn round_trips(events in prop::collection::vec(event(), 0..8)) {
            let mut bytes = Vec::new();
            encode(&events, &mut bytes);
            prop_assert_eq!(decode(&bytes), Some(events));
        }

        /// Any cut or any flipped byte gives `None` or some events, never a panic.
        #[test]
        fn never_panics_on_damaged_bytes(
            events in prop::collection::vec(event(), 1..4),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            bits in 1u8..,
        ) {
            let mut bytes = Vec::new();
            encode(&events, &mut bytes);
            let cut = cut.index(bytes.len());
            prop_assert_eq!(decode(&bytes[..cut]), None);
            let flip = flip.index(bytes.len());
            bytes[flip] ^= bits;
            let _ = decode(&bytes);
        }
    }
}
