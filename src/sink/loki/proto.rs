//! Loki's push protobuf (`pkg/push/push.proto` in the Loki repository): the message structs
//! for `prost` derive (no build script, no protoc), and a direct writer for the hot path.
//!
//! Why a direct writer: building a [`PushRequest`] first copies every line into an
//! [`EntryAdapter`] and then encodes it again; writing the wire format straight from the
//! events halves the bytes allocated per batch and the encoder's CPU. The structs stay as
//! the reference: tests check the writer's bytes equal `prost`'s.
//!
//! Owns: the message structs, their field numbers, and the wire writer. Never: encoding
//! policy.

/// `logproto.PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    /// `repeated StreamAdapter streams = 1`.
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `logproto.StreamAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// `string labels = 1`: `{name="value", ...}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    /// `repeated EntryAdapter entries = 2`.
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    /// `uint64 hash = 3` (ignored by Loki on push; left 0).
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `logproto.EntryAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    /// `google.protobuf.Timestamp timestamp = 1`.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    /// `string line = 2`.
    #[prost(string, tag = "2")]
    pub line: String,
    /// `repeated LabelPairAdapter structuredMetadata = 3`.
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Timestamp {
    /// `int64 seconds = 1`.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// `int32 nanos = 2`.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `logproto.LabelPairAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPairAdapter {
    /// `string name = 1`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `string value = 2`.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// Wire type of length-delimited fields.
const LEN: u64 = 2;
/// Wire type of varint fields.
const VARINT: u64 = 0;

fn key(field: u64, wire_type: u64) -> u64 {
    (field << 3) | wire_type
}

fn varint_len(value: u64) -> usize {
    prost::encoding::encoded_len_varint(value)
}

fn put_varint(out: &mut Vec<u8>, value: u64) {
    prost::encoding::encode_varint(value, out);
}

/// Bytes of a length-delimited field (key, length, payload) with a one-byte key.
fn len_field_len(payload: usize) -> usize {
    1 + varint_len(payload as u64) + payload
}

fn put_len_field(out: &mut Vec<u8>, field: u64, payload: &[u8]) {
    put_varint(out, key(field, LEN));
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// The payload size of a `google.protobuf.Timestamp` (zero fields are left out, as proto3
/// does).
fn timestamp_len(seconds: i64, nanos: i32) -> usize {
    let mut n = 0;
    if seconds != 0 {
        n += 1 + varint_len(seconds as u64);
    }
    if nanos != 0 {
        n += 1 + varint_len(i64::from(nanos) as u64);
    }
    n
}

/// One entry: time, line, structured metadata. Borrowed, so nothing is copied to write it.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Nanoseconds since the epoch.
    pub timestamp: i64,
    /// The log line.
    pub line: &'a str,
    /// Structured metadata pairs.
    pub metadata: &'a [(String, String)],
}

impl<'a> Entry<'a> {
    /// An entry without structured metadata.
    pub fn plain(timestamp: i64, line: &'a str) -> Self {
        Entry {
            timestamp,
            line,
            metadata: &[],
        }
    }

    fn parts(&self) -> (i64, i32) {
        (
            self.timestamp.div_euclid(1_000_000_000),
            self.timestamp.rem_euclid(1_000_000_000) as i32,
        )
    }

    /// The `EntryAdapter` payload size.
    fn payload_len(&self) -> usize {
        let (seconds, nanos) = self.parts();
        let mut n = len_field_len(timestamp_len(seconds, nanos));
        if !self.line.is_empty() {
            n += len_field_len(self.line.len());
        }
        for (name, value) in self.metadata {
            n += len_field_len(pair_len(name, value));
        }
        n
    }

    /// Bytes this entry adds to its stream: `entries` field key, length, payload.
    pub fn field_len(&self) -> usize {
        len_field_len(self.payload_len())
    }

    /// Appends the `entries` field (field 2 of `StreamAdapter`).
    pub fn write(&self, out: &mut Vec<u8>) {
        let (seconds, nanos) = self.parts();
        put_varint(out, key(2, LEN));
        put_varint(out, self.payload_len() as u64);
        put_varint(out, key(1, LEN));
        put_varint(out, timestamp_len(seconds, nanos) as u64);
        if seconds != 0 {
            put_varint(out, key(1, VARINT));
            put_varint(out, seconds as u64);
        }
        if nanos != 0 {
            put_varint(out, key(2, VARINT));
            put_varint(out, i64::from(nanos) as u64);
        }
        if !self.line.is_empty() {
            put_len_field(out, 2, self.line.as_bytes());
        }
        for (name, value) in self.metadata {
            put_varint(out, key(3, LEN));
            put_varint(out, pair_len(name, value) as u64);
            if !name.is_empty() {
                put_len_field(out, 1, name.as_bytes());
            }
            if !value.is_empty() {
                put_len_field(out, 2, value.as_bytes());
            }
        }
    }
}

fn pair_len(name: &str, value: &str) -> usize {
    let field = |text: &str| {
        if text.is_empty() {
            0
        } else {
            len_field_len(text.len())
        }
    };
    field(name) + field(value)
}

/// Appends one `streams` field of a `PushRequest` (field 1): the stream's `labels` and its
/// `entries`, already written (by [`Entry::write`]) as `entries`, `entries_len` bytes.
pub fn write_stream_head(out: &mut Vec<u8>, labels: &str, entries_len: usize) {
    let labels_len = if labels.is_empty() {
        0
    } else {
        len_field_len(labels.len())
    };
    put_varint(out, key(1, LEN));
    put_varint(out, (labels_len + entries_len) as u64);
    if !labels.is_empty() {
        put_len_field(out, 1, labels.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    /// (timestamp, line, metadata) of one entry.
    type TestEntry = (i64, String, Vec<(String, String)>);

    /// The writer's bytes for `streams`, and `prost`'s for the same request.
    fn both(streams: &[(String, Vec<TestEntry>)]) -> (Vec<u8>, Vec<u8>) {
        let mut direct = Vec::new();
        for (labels, entries) in streams {
            let entries: Vec<Entry<'_>> = entries
                .iter()
                .map(|(timestamp, line, metadata)| Entry {
                    timestamp: *timestamp,
                    line,
                    metadata,
                })
                .collect();
            let len = entries.iter().map(Entry::field_len).sum();
            write_stream_head(&mut direct, labels, len);
            let start = direct.len();
            for entry in &entries {
                entry.write(&mut direct);
            }
            assert_eq!(
                direct.len() - start,
                len,
                "field_len matches what write writes"
            );
        }
        let reference = PushRequest {
            streams: streams
                .iter()
                .map(|(labels, entries)| StreamAdapter {
                    labels: labels.clone(),
                    entries: entries
                        .iter()
                        .map(|(timestamp, line, metadata)| EntryAdapter {
                            timestamp: Some(Timestamp {
                                seconds: timestamp.div_euclid(1_000_000_000),
                                nanos: timestamp.rem_euclid(1_000_000_000) as i32,
                            }),
                            line: line.clone(),
                            structured_metadata: metadata
                                .iter()
                                .map(|(name, value)| LabelPairAdapter {
                                    name: name.clone(),
                                    value: value.clone(),
                                })
                                .collect(),
                        })
                        .collect(),
                    hash: 0,
                })
                .collect(),
        };
        (direct, reference.encode_to_vec())
    }

    #[test]
    fn writer_matches_prost_on_edge_cases() {
        let long = "x".repeat(300);
        let streams = vec![
            (
                "{job=\"a\"}".to_owned(),
                vec![
                    (0, String::new(), Vec::new()),
                    (-1, "before the epoch".to_owned(), Vec::new()),
                    (
                        1_700_000_000_123_456_789,
                        long,
                        vec![("k".into(), "v".into()), (String::new(), String::new())],
                    ),
                    (i64::MAX, "max".to_owned(), Vec::new()),
                    (i64::MIN, "min".to_owned(), Vec::new()),
                ],
            ),
            (String::new(), Vec::new()),
        ];
        let (direct, reference) = both(&streams);
        assert_eq!(direct, reference);
    }

    proptest::proptest! {
        #[test]
        fn writer_matches_prost(
            streams in proptest::collection::vec(
                (".{0,20}", proptest::collection::vec(
                    (proptest::prelude::any::<i64>(), ".{0,200}", proptest::collection::vec((".{0,5}", ".{0,5}"), 0..3)),
                    0..20,
                )),
                0..4,
            )
        ) {
            let (direct, reference) = both(&streams);
            proptest::prop_assert_eq!(direct, reference);
        }
    }
}
