//! The remote-write 1.0 wire messages, hand-written for `prost` derive.
//!
//! Field numbers follow `prompb/remote.proto` and `prompb/types.proto` of the Prometheus
//! repository (<https://prometheus.io/docs/specs/remote_write_spec/>): only the fields a
//! 1.0 sender fills are declared; a receiver skips the absent ones.
//!
//! Owns: the message layout. Never: decides labels, order or batching (`series.rs`, `mod.rs`).

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// `repeated TimeSeries timeseries = 1`.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// `repeated MetricMetadata metadata = 3` (field 2 is reserved).
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`: one label set and its samples, oldest first.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// `repeated Label labels = 1`: sorted by name, `__name__` first.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// `repeated Sample samples = 2`: in timestamp order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
pub struct Label {
    /// `string name = 1`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `string value = 2`.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    /// `double value = 1`.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// `int64 timestamp = 2`: milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata` (declared for completeness; sluice sends none).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// `MetricType type = 1` (0 unknown, 1 counter, 2 gauge, 3 histogram, ...).
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// `string metric_family_name = 2`.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// `string help = 4`.
    #[prost(string, tag = "4")]
    pub help: String,
    /// `string unit = 5`.
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// The staleness marker: the NaN bit pattern Prometheus reserves to say "this series
/// ended" (`model/value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as a float.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Appends one `WriteRequest.timeseries` entry (field 1) to `out`, byte for byte what
/// `prost` would encode for a [`TimeSeries`] of these labels and samples (default values
/// omitted), without building the message: the sink's hot path writes borrowed strings.
/// `samples` are (value, timestamp in ms).
pub fn put_timeseries(out: &mut Vec<u8>, labels: &[(&str, &str)], samples: &[(f64, i64)]) {
    use prost::encoding::{encode_varint, encoded_len_varint};
    let string_len = |len: usize| {
        if len == 0 {
            0
        } else {
            1 + encoded_len_varint(len as u64) + len
        }
    };
    let label_len = |(name, value): &(&str, &str)| string_len(name.len()) + string_len(value.len());
    let sample_len = |(value, timestamp): &(f64, i64)| {
        let value_len = if *value != 0.0 { 9 } else { 0 };
        let timestamp_len = if *timestamp != 0 {
            1 + encoded_len_varint(*timestamp as u64)
        } else {
            0
        };
        value_len + timestamp_len
    };
    let message_len = |len: usize| 1 + encoded_len_varint(len as u64) + len;
    let series_len: usize = labels
        .iter()
        .map(|l| message_len(label_len(l)))
        .sum::<usize>()
        + samples
            .iter()
            .map(|s| message_len(sample_len(s)))
            .sum::<usize>();
    out.reserve(message_len(series_len));
    out.push(0x0a);
    encode_varint(series_len as u64, out);
    let put_string = |out: &mut Vec<u8>, tag: u8, text: &str| {
        if !text.is_empty() {
            out.push(tag);
            encode_varint(text.len() as u64, out);
            out.extend_from_slice(text.as_bytes());
        }
    };
    for label in labels {
        out.push(0x0a);
        encode_varint(label_len(label) as u64, out);
        put_string(out, 0x0a, label.0);
        put_string(out, 0x12, label.1);
    }
    for sample in samples {
        out.push(0x12);
        encode_varint(sample_len(sample) as u64, out);
        if sample.0 != 0.0 {
            out.push(0x09);
            out.extend_from_slice(&sample.0.to_le_bytes());
        }
        if sample.1 != 0 {
            out.push(0x10);
            encode_varint(sample.1 as u64, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    /// The hand-written encoder must produce exactly prost's bytes.
    fn check(labels: &[(&str, &str)], samples: &[(f64, i64)]) {
        let message = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: labels
                    .iter()
                    .map(|(name, value)| Label {
                        name: (*name).into(),
                        value: (*value).into(),
                    })
                    .collect(),
                samples: samples
                    .iter()
                    .map(|(value, timestamp)| Sample {
                        value: *value,
                        timestamp: *timestamp,
                    })
                    .collect(),
            }],
            metadata: Vec::new(),
        };
        let mut out = Vec::new();
        put_timeseries(&mut out, labels, samples);
        assert_eq!(out, message.encode_to_vec(), "{labels:?} {samples:?}");
    }

    #[test]
    fn hand_encoding_equals_prost() {
        check(&[("__name__", "up")], &[(1.0, 2)]);
        check(&[], &[]);
        check(&[("__name__", "x"), ("e", "")], &[(0.0, 0), (-0.0, -5)]);
        check(
            &[("__name__", &"n".repeat(300)), ("job", "a")],
            &[
                (stale_nan(), 1_700_000_000_000),
                (f64::MAX, i64::MIN),
                (1e-9, i64::MAX),
            ],
        );
        let many: Vec<(f64, i64)> = (0..200).map(|i| (i as f64 * 0.5, i * 1000)).collect();
        check(&[("a", "b")], &many);
    }
}
