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
