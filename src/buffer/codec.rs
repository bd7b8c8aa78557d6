//! The bytes of one buffered batch: its events in a compact binary form, written by
//! [`encode`] and read back by [`decode`].
//!
//! Layout (little-endian; `varint` is LEB128, `zigzag` a signed varint): `n_events:
//! varint`, then per event a tag (`2` log, `1` metric; `0` the first log layout, still
//! read) and its parts. A log event (`2`), relative to the record's previous log event:
//! `flags: u8` (bit 0: the same fields as the previous log event, bit 1: an origin, bit 2:
//! its stream is the previous log event's), `timestamp: zigzag` (minus the previous log
//! event's, or 0), `message: value`, unless bit 0 `fields: varint count, (key: str,
//! value)*`, with bit 1: `stream: str` unless bit 2, then `offset: zigzag` (minus the last
//! origin offset in the record, or 0). The first log layout (`0`): `timestamp: i64`,
//! `message: value`, `fields: varint count, (key: str, value)*`, `origin: u8 (0 none, 1
//! some), stream: str, offset: varint`. A value: a tag (`0` null, `1` false, `2` true, `3`
//! int `i64`, `4` float `f64`, `5` string, `6` array `varint count, value*`, `7` map
//! `varint count, (str, value)*`). A `str` is `varint length` + UTF-8 bytes. A metric:
//! `name: str`, `labels: varint count, (str, str)*`, kind (`0` counter `f64`, `1` gauge
//! `f64`, `2` histogram `varint n, (f64, u64)*, sum f64, count u64`), `timestamp: i64`.
//!
//! Why relative: a batch's events mostly share their fields (a file's path, a pod's
//! labels, a host) and stream, and their timestamps and offsets are close: the first
//! layout spent 213 bytes on a 149-byte line read from a file, this one 157 (fewer bytes to
//! write, fsync, read back and check), and a field or stream that repeats is decoded by
//! copying the previous event's (no UTF-8 check, no comparison). A binary from before the
//! relative layout cannot read records written after it (counted as undecodable).
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

/// Event tags.
const TAG_LOG_V1: u8 = 0;
const TAG_METRIC: u8 = 1;
const TAG_LOG: u8 = 2;

/// Flags of a log event ([`TAG_LOG`]).
const SAME_FIELDS: u8 = 1;
const HAS_ORIGIN: u8 = 2;
const SAME_STREAM: u8 = 4;

/// What a log event is encoded relative to: the record's previous log event.
#[derive(Default)]
struct Previous<'e> {
    log: Option<&'e LogEvent>,
    timestamp: i64,
    offset: u64,
}

/// Appends the encoding of `events` to `out`.
pub fn encode(events: &[Event], out: &mut Vec<u8>) {
    varint(out, events.len() as u64);
    let mut previous = Previous::default();
    for event in events {
        match event {
            Event::Log(log) => {
                out.push(TAG_LOG);
                encode_log(log, &previous, out);
                previous.log = Some(log);
                previous.timestamp = log.timestamp.0;
                if let Some(origin) = &log.origin {
                    previous.offset = origin.offset;
                }
            }
            Event::Metric(metric) => {
                out.push(TAG_METRIC);
                encode_metric(metric, out);
            }
        }
    }
}

fn encode_log(log: &LogEvent, previous: &Previous<'_>, out: &mut Vec<u8>) {
    let same_fields = previous
        .log
        .is_some_and(|p| same_map(&p.fields, &log.fields));
    let same_stream = match (previous.log.and_then(|p| p.origin.as_ref()), &log.origin) {
        (Some(p), Some(o)) => p.stream.as_str() == o.stream.as_str(),
        _ => false,
    };
    let flags = if same_fields { SAME_FIELDS } else { 0 }
        | if log.origin.is_some() { HAS_ORIGIN } else { 0 }
        | if same_stream { SAME_STREAM } else { 0 };
    out.push(flags);
    zigzag(out, log.timestamp.0.wrapping_sub(previous.timestamp));
    value(out, &log.message);
    if !same_fields {
        varint(out, log.fields.len() as u64);
        for (key, field) in &log.fields {
            string(out, key);
            value(out, field);
        }
    }
    if let Some(origin) = &log.origin {
        if !same_stream {
            string(out, &origin.stream);
        }
        zigzag(out, origin.offset.wrapping_sub(previous.offset) as i64);
    }
}

/// The same entries, values compared bit for bit (a float's sign of zero included), so
/// that a field written as "the previous event's" decodes to exactly what it was.
fn same_map(a: &Map, b: &Map) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b.iter())
            .all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Map(x), Value::Map(y)) => same_map(x, y),
        (Value::Float(_) | Value::Array(_) | Value::Map(_), _) => false,
        _ => a == b,
    }
}

/// The first log layout ([`TAG_LOG_V1`]): what records written before the relative one
/// hold (kept for the tests that read them).
#[cfg(test)]
fn encode_log_v1(log: &LogEvent, out: &mut Vec<u8>) {
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

fn zigzag(out: &mut Vec<u8>, n: i64) {
    varint(out, ((n << 1) ^ (n >> 63)) as u64);
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
    let mut events = Vec::new();
    decode_into(bytes, &mut events)?;
    Some(events)
}

/// [`decode`] into `events`, decoding over the events it holds (spent ones of an earlier
/// batch, or none): a log event over a log event, whose texts are copied into its strings
/// where they fit, whose fields are overwritten in place while the names are the same, and
/// whose stream is kept when it is the same. The events come out equal to [`decode`]'s;
/// what differs is that a record then costs no allocation per event (and the sink's spent
/// events no free). `None`: `events` holds whatever was decoded before the error.
pub fn decode_into(bytes: &[u8], events: &mut Vec<Event>) -> Option<()> {
    let mut reader = Reader {
        bytes,
        at: 0,
        last_stream: None,
        last_keys: Vec::new(),
        timestamp: 0,
        offset: 0,
    };
    let n = reader.count()?;
    events.truncate(n);
    events.reserve(n - events.len());
    // The previous log event, which a log event's fields and stream may repeat.
    let mut previous: Option<usize> = None;
    for index in 0..n {
        let tag = reader.byte()?;
        if index < events.len() {
            let (done, rest) = events.split_at_mut(index);
            let prev = previous.and_then(|i| done[i].as_log());
            match &mut rest[0] {
                Event::Log(log) if tag != TAG_METRIC => reader.log_into(log, tag, prev)?,
                slot => *slot = reader.event(tag, prev)?,
            }
        } else {
            let prev = previous.and_then(|i| events[i].as_log());
            let event = reader.event(tag, prev)?;
            events.push(event);
        }
        if tag != TAG_METRIC {
            previous = Some(index);
        }
    }
    (reader.at == bytes.len()).then_some(())
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
    /// The previous log event's timestamp, and the last origin offset ([`TAG_LOG`] events
    /// are relative to them).
    timestamp: i64,
    offset: u64,
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

    fn zigzag(&mut self) -> Option<i64> {
        let n = self.varint()?;
        Some(((n >> 1) as i64) ^ -((n & 1) as i64))
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
        self.field_key_of(index, bytes)
    }

    /// [`Reader::field_key`] of key bytes already read.
    fn field_key_of(&mut self, index: usize, bytes: &'a [u8]) -> Option<Key> {
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

    /// A new event whose tag was read (`prev`: the record's previous log event).
    fn event(&mut self, tag: u8, prev: Option<&LogEvent>) -> Option<Event> {
        Some(match tag {
            TAG_METRIC => Event::Metric(self.metric()?),
            _ => {
                let mut log = LogEvent::default();
                self.log_into(&mut log, tag, prev)?;
                Event::Log(log)
            }
        })
    }

    /// The stream named by `bytes`: the previous event's when the name is the same.
    fn stream_of(&mut self, bytes: &'a [u8]) -> Option<StreamName> {
        if let Some((last, stream)) = &self.last_stream {
            if *last == bytes {
                return Some(stream.clone());
            }
        }
        let stream = StreamName::from(std::str::from_utf8(bytes).ok()?);
        self.last_stream = Some((bytes, stream.clone()));
        Some(stream)
    }

    /// Decodes a log event of layout `tag` over `log` (a spare, or a default one), reusing
    /// what fits; `prev` is the record's previous log event.
    fn log_into(&mut self, log: &mut LogEvent, tag: u8, prev: Option<&LogEvent>) -> Option<()> {
        match tag {
            TAG_LOG => self.relative_log_into(log, prev)?,
            TAG_LOG_V1 => self.log_v1_into(log)?,
            _ => return None,
        }
        self.timestamp = log.timestamp.0;
        if let Some(origin) = &log.origin {
            self.offset = origin.offset;
        }
        Some(())
    }

    /// A [`TAG_LOG`] event.
    fn relative_log_into(&mut self, log: &mut LogEvent, prev: Option<&LogEvent>) -> Option<()> {
        let flags = self.byte()?;
        if flags & !(SAME_FIELDS | HAS_ORIGIN | SAME_STREAM) != 0 {
            return None;
        }
        log.timestamp = Timestamp(self.timestamp.wrapping_add(self.zigzag()?));
        self.value_into(&mut log.message)?;
        if flags & SAME_FIELDS != 0 {
            copy_fields(&mut log.fields, &prev?.fields);
        } else {
            let n_fields = self.count()?;
            self.fields_into(&mut log.fields, n_fields)?;
        }
        if flags & HAS_ORIGIN == 0 {
            log.origin = None;
            return (flags & SAME_STREAM == 0).then_some(());
        }
        let spare = log.origin.take().map(|origin| origin.stream);
        let stream = if flags & SAME_STREAM != 0 {
            let same = &prev?.origin.as_ref()?.stream;
            match spare {
                Some(spare) if spare.as_str() == same.as_str() => spare,
                _ => same.clone(),
            }
        } else {
            let bytes = self.str_bytes()?;
            match spare {
                Some(spare) if spare.as_str().as_bytes() == bytes => spare,
                _ => self.stream_of(bytes)?,
            }
        };
        let offset = self.offset.wrapping_add(self.zigzag()? as u64);
        log.origin = Some(Origin { stream, offset });
        Some(())
    }

    /// A [`TAG_LOG_V1`] event.
    fn log_v1_into(&mut self, log: &mut LogEvent) -> Option<()> {
        log.timestamp = Timestamp(self.i64()?);
        self.value_into(&mut log.message)?;
        let n_fields = self.count()?;
        self.fields_into(&mut log.fields, n_fields)?;
        log.origin = match self.byte()? {
            0 => None,
            1 => {
                let bytes = self.str_bytes()?;
                let stream = match log.origin.take() {
                    Some(spare) if spare.stream.as_str().as_bytes() == bytes => spare.stream,
                    _ => self.stream_of(bytes)?,
                };
                Some(Origin {
                    stream,
                    offset: self.varint()?,
                })
            }
            _ => return None,
        };
        Some(())
    }

    /// Decodes `n` top-level fields over `fields`: in place while the names are the spare's
    /// (the usual case: a batch's events carry the same fields), else into a new map that
    /// keeps the entries already done.
    fn fields_into(&mut self, fields: &mut Map, n: usize) -> Option<()> {
        let mut differs = None;
        if fields.len() == n {
            for (index, (name, value)) in fields.iter_mut().enumerate() {
                let bytes = self.str_bytes()?;
                if name.as_bytes() != bytes {
                    differs = Some((index, bytes));
                    break;
                }
                self.value_into(value)?;
            }
            if differs.is_none() {
                return Some(());
            }
        }
        let mut fresh = Map::with_capacity(n);
        let from = match differs {
            Some((index, bytes)) => {
                for (name, value) in std::mem::take(fields).into_iter().take(index) {
                    fresh.insert(name, value);
                }
                let key = self.field_key_of(index, bytes)?;
                fresh.insert(key, self.value(0)?);
                index + 1
            }
            None => 0,
        };
        for index in from..n {
            let key = self.field_key(index)?;
            fresh.insert(key, self.value(0)?);
        }
        *fields = fresh;
        Some(())
    }

    /// Decodes a value over `slot`: a text into its string when it is one with room (and
    /// not far larger than needed), anything else built anew.
    fn value_into(&mut self, slot: &mut Value) -> Option<()> {
        let tag = self.byte()?;
        if tag != 5 {
            *slot = self.value_of(tag, 0)?;
            return Some(());
        }
        let text = self.str()?;
        match slot {
            Value::String(spare) if fits(spare, text) => {
                spare.clear();
                spare.push_str(text);
            }
            _ => *slot = Value::String(text.to_owned()),
        }
        Some(())
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
        let tag = self.byte()?;
        self.value_of(tag, depth)
    }

    /// The value whose tag was read.
    fn value_of(&mut self, tag: u8, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        Some(match tag {
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

/// True when `text` is copied into `spare` rather than into a new string: `spare` is not
/// far larger than needed (a huge one is freed, not kept going round).
fn fits(spare: &String, text: &str) -> bool {
    spare.capacity() <= text.len().saturating_mul(4).max(4096)
}

/// Sets `fields` to a copy of `previous` (a log event's fields that repeat the previous
/// event's): in place, strings copied into the spare's, while the names are the same.
fn copy_fields(fields: &mut Map, previous: &Map) {
    if fields.len() == previous.len() {
        let mut same_names = true;
        for ((name, value), (previous_name, previous_value)) in
            fields.iter_mut().zip(previous.iter())
        {
            if name != previous_name {
                same_names = false;
                break;
            }
            if let (Value::String(spare), Value::String(text)) = (&mut *value, previous_value) {
                if fits(spare, text) {
                    spare.clear();
                    spare.push_str(text);
                    continue;
                }
            }
            *value = previous_value.clone();
        }
        if same_names {
            return;
        }
    }
    *fields = previous.clone();
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

    /// The first log layout, as records written before the relative one hold it.
    fn encode_v1(events: &[Event], out: &mut Vec<u8>) {
        varint(out, events.len() as u64);
        for event in events {
            match event {
                Event::Log(log) => {
                    out.push(TAG_LOG_V1);
                    encode_log_v1(log, out);
                }
                Event::Metric(metric) => {
                    out.push(TAG_METRIC);
                    encode_metric(metric, out);
                }
            }
        }
    }

    fn file_line(offset: u64, path: &str, x: f64) -> Event {
        let mut log = LogEvent::new(format!("line at {offset}"));
        log.fields.insert("file", Value::String(path.to_owned()));
        log.fields.insert("x", Value::Float(x));
        log.origin = Some(Origin {
            stream: "/var/log/pods/ns_pod_0123-4567/container/0.log".into(),
            offset,
        });
        Event::Log(log)
    }

    /// A batch of lines of one file: each event after the first repeats its fields and
    /// stream; far fewer bytes than the first layout, decoded exactly, over spent events too.
    #[test]
    fn repeated_fields_and_streams_are_written_once() {
        let events: Vec<Event> = (0..100)
            .map(|i| file_line(i * 150, "/var/log/a.log", 1.5))
            .collect();
        let (mut relative, mut v1) = (Vec::new(), Vec::new());
        encode(&events, &mut relative);
        encode_v1(&events, &mut v1);
        assert!(
            relative.len() * 10 < v1.len() * 6,
            "{} against {}",
            relative.len(),
            v1.len()
        );
        assert_eq!(decode(&relative).as_ref(), Some(&events));
        assert_eq!(decode(&v1).as_ref(), Some(&events));
        let mut spent: Vec<Event> = (0..120)
            .map(|i| file_line(i, "/var/log/b.log", 2.0))
            .collect();
        assert_eq!(decode_into(&relative, &mut spent), Some(()));
        assert_eq!(spent, events);
    }

    /// 0.0 and -0.0 are equal but not the same field: the second is written, not repeated.
    #[test]
    fn fields_repeat_bit_for_bit() {
        let events = vec![file_line(0, "a", 0.0), file_line(1, "a", -0.0)];
        let mut bytes = Vec::new();
        encode(&events, &mut bytes);
        let decoded = decode(&bytes).unwrap();
        let x = |event: &Event| match event.as_log().and_then(|log| log.fields.get("x")) {
            Some(Value::Float(x)) => x.to_bits(),
            _ => panic!("no x"),
        };
        assert_eq!(x(&decoded[0]), 0.0f64.to_bits());
        assert_eq!(x(&decoded[1]), (-0.0f64).to_bits());
    }

    /// A relative event whose previous event is missing (the first of a record) or has no
    /// origin does not decode.
    #[test]
    fn a_repeat_of_nothing_does_not_decode() {
        for flags in [SAME_FIELDS, HAS_ORIGIN | SAME_STREAM, SAME_STREAM, 8] {
            let mut bytes = vec![1, TAG_LOG, flags];
            zigzag(&mut bytes, 5);
            super::value(&mut bytes, &Value::Null);
            if flags & SAME_FIELDS == 0 {
                varint(&mut bytes, 0);
            }
            if flags & HAS_ORIGIN != 0 {
                zigzag(&mut bytes, 1);
            }
            assert_eq!(decode(&bytes), None, "flags {flags}");
        }
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

    /// Events of which some repeat the previous log event's fields or stream.
    fn batch() -> impl Strategy<Value = Vec<Event>> {
        prop::collection::vec((event(), any::<bool>(), any::<bool>()), 0..8).prop_map(|items| {
            let mut events: Vec<Event> = Vec::new();
            for (mut event, same_fields, same_stream) in items {
                let previous = events.iter().rev().find_map(Event::as_log).cloned();
                if let (Event::Log(log), Some(previous)) = (&mut event, previous) {
                    if same_fields {
                        log.fields = previous.fields.clone();
                    }
                    if let (true, Some(origin), Some(before)) =
                        (same_stream, log.origin.as_mut(), previous.origin)
                    {
                        origin.stream = before.stream;
                    }
                }
                events.push(event);
            }
            events
        })
    }

    proptest! {
        #[test]
        fn round_trips(events in batch()) {
            let mut bytes = Vec::new();
            encode(&events, &mut bytes);
            prop_assert_eq!(decode(&bytes), Some(events));
        }

        /// Records written in the first log layout still decode.
        #[test]
        fn first_layout_round_trips(events in batch(), mut spent in batch()) {
            let mut bytes = Vec::new();
            encode_v1(&events, &mut bytes);
            prop_assert_eq!(decode(&bytes), Some(events.clone()));
            prop_assert_eq!(decode_into(&bytes, &mut spent), Some(()));
            prop_assert_eq!(spent, events);
        }

        /// Decoding over spent events (of another batch: more or fewer, metrics, other
        /// fields, streams and texts) gives the same events as decoding afresh.
        #[test]
        fn round_trips_over_spent_events(events in batch(), mut spent in batch()) {
            let mut bytes = Vec::new();
            encode(&events, &mut bytes);
            prop_assert_eq!(decode_into(&bytes, &mut spent), Some(()));
            prop_assert_eq!(spent, events);
        }

        /// Any cut or any flipped byte gives `None` or some events, never a panic.
        #[test]
        fn never_panics_on_damaged_bytes(
            events in batch().prop_filter("not empty", |events| !events.is_empty()),
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
