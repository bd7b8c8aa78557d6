//! A protobuf writer for nested messages without size pre-computation: a nested message's
//! length is written after its body, in place (one byte is reserved; a body of 128 bytes or
//! more moves up by the extra length bytes). Small messages (attributes, values, most log
//! records) never move; a large one (a scope's records) moves once.
//!
//! Owns: wire-format primitives. Never: knows a message schema.

/// Wire types.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// Where a nested message's body starts (see [`Writer::begin`]).
#[derive(Debug, Clone, Copy)]
#[must_use = "a nested message must be closed with Writer::end"]
pub struct Mark(usize);

/// A growing protobuf body.
#[derive(Debug, Default)]
pub struct Writer {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// An empty writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(capacity),
        }
    }

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }

    fn key(&mut self, field: u32, wire_type: u32) {
        self.varint(u64::from(field << 3 | wire_type));
    }

    /// A `string` field (written even when empty: callers skip defaults).
    pub fn string(&mut self, field: u32, value: &str) {
        self.bytes(field, value.as_bytes());
    }

    /// A `bytes` field.
    pub fn bytes(&mut self, field: u32, value: &[u8]) {
        self.key(field, LEN);
        self.varint(value.len() as u64);
        self.buf.extend_from_slice(value);
    }

    /// A varint field (`int32`, `int64`, `uint32`, `uint64`, `bool`, enums). Negative
    /// `int32`/`int64` values are passed sign-extended, as protobuf encodes them.
    pub fn uint(&mut self, field: u32, value: u64) {
        self.key(field, VARINT);
        self.varint(value);
    }

    /// A `fixed64` / `sfixed64` field.
    pub fn fixed64(&mut self, field: u32, value: u64) {
        self.key(field, FIXED64);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// A `fixed32` field.
    pub fn fixed32(&mut self, field: u32, value: u32) {
        self.key(field, FIXED32);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// A `double` field.
    pub fn double(&mut self, field: u32, value: f64) {
        self.fixed64(field, value.to_bits());
    }

    /// A packed `repeated fixed64` field (nothing when empty).
    pub fn packed_fixed64(&mut self, field: u32, values: impl ExactSizeIterator<Item = u64>) {
        if values.len() == 0 {
            return;
        }
        self.key(field, LEN);
        self.varint(values.len() as u64 * 8);
        for value in values {
            self.buf.extend_from_slice(&value.to_le_bytes());
        }
    }

    /// A packed `repeated double` field (nothing when empty).
    pub fn packed_double(&mut self, field: u32, values: impl ExactSizeIterator<Item = f64>) {
        self.packed_fixed64(field, values.map(f64::to_bits));
    }

    /// Opens a nested message field; close it with [`Writer::end`].
    pub fn begin(&mut self, field: u32) -> Mark {
        self.key(field, LEN);
        self.buf.push(0);
        Mark(self.buf.len())
    }

    /// Closes the nested message opened at `mark`, writing its length.
    pub fn end(&mut self, mark: Mark) {
        let start = mark.0;
        let len = self.buf.len() - start;
        if len < 0x80 {
            self.buf[start - 1] = len as u8;
            return;
        }
        let mut prefix = [0u8; 10];
        let mut n = 0;
        let mut value = len as u64;
        while value >= 0x80 {
            prefix[n] = (value as u8) | 0x80;
            value >>= 7;
            n += 1;
        }
        prefix[n] = value as u8;
        n += 1;
        // The reserved byte takes the first length byte; the rest need room.
        let extra = n - 1;
        self.buf.resize(self.buf.len() + extra, 0);
        self.buf.copy_within(start..start + len, start + extra);
        self.buf[start - 1..start - 1 + n].copy_from_slice(&prefix[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Inner {
        #[prost(string, tag = "1")]
        text: String,
        #[prost(fixed64, repeated, tag = "2")]
        counts: Vec<u64>,
        #[prost(double, tag = "3")]
        x: f64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Outer {
        #[prost(message, repeated, tag = "1")]
        inner: Vec<Inner>,
        #[prost(int64, tag = "2")]
        n: i64,
        #[prost(fixed32, tag = "3")]
        flags: u32,
    }

    proptest! {
        /// Whatever the sizes, prost reads back what was written, and the bytes are
        /// exactly prost's own encoding (lengths in minimal varints).
        #[test]
        fn nested_messages_round_trip(
            texts in proptest::collection::vec(".{0,300}", 0..5),
            counts in proptest::collection::vec(any::<u64>(), 0..40),
            n in any::<i64>(),
            flags in 1u32..,
        ) {
            let outer = Outer {
                inner: texts
                    .iter()
                    .map(|t| Inner { text: t.clone(), counts: counts.clone(), x: 1.5 })
                    .collect(),
                n,
                flags,
            };
            let mut w = Writer::default();
            for inner in &outer.inner {
                let mark = w.begin(1);
                if !inner.text.is_empty() {
                    w.string(1, &inner.text);
                }
                w.packed_fixed64(2, inner.counts.iter().copied());
                w.double(3, inner.x);
                w.end(mark);
            }
            if n != 0 {
                w.uint(2, n as u64);
            }
            w.fixed32(3, flags);
            let decoded = <Outer as prost::Message>::decode(w.buf.as_slice()).unwrap();
            prop_assert_eq!(&decoded, &outer);
            prop_assert_eq!(w.buf, prost::Message::encode_to_vec(&outer));
        }
    }
}
