//! `type: opentelemetry`: an OTLP/HTTP receiver. Applications, SDKs and collectors push logs
//! (`POST /v1/logs`) and metrics (`POST /v1/metrics`) as protobuf
//! (`application/x-protobuf`) or JSON (`application/json`), uncompressed or with
//! `Content-Encoding: gzip`, `deflate` or `zstd`. Spec:
//! <https://opentelemetry.io/docs/specs/otlp/#otlphttp>.
//!
//! Delivery: a request is answered `200` only once every event it carried was delivered by
//! every sink of the pipeline (or dead-lettered, or written to a sink's disk buffer where
//! those exist): its batches carry a watched acknowledgement ([`crate::ack::AckRef::watched`]).
//! Until then the client keeps the data, and retries it when sluice answers `503` (the
//! pipeline is full, stopping, or did not deliver within `delivery_timeout_secs`) or `429`
//! (more request bytes in decoding than `max_buffered_bytes`), both with `Retry-After`,
//! so an OTLP client's own retries make the path lossless (at least once: a request
//! answered 503 after part of it was queued is delivered twice). With
//! `wait_for_delivery: false` the answer comes once the batches are in the pipeline's
//! queue (faster; lost if the agent dies before delivery).
//!
//! Partial success (the OTLP spec's `partial_success`): points the mapping refuses
//! (`metrics.rs`) are counted as rejected with the first reason; a record kept without a
//! malformed trace id gets a warning with `rejected = 0`.
//!
//! Refused requests (never a panic, memory bounded by `max_request_bytes` per request and
//! `max_buffered_bytes` in total): another path `404`, another method `405`, another
//! content type or encoding `415`, a body over `max_request_bytes` (as sent or decompressed)
//! `413`, malformed protobuf or JSON (including nesting deeper than 100 messages / 128 JSON
//! levels) `400` with the reason in a `google.rpc.Status`.
//!
//! Mapping: logs in `logs.rs` (read straight off the wire with `reader.rs`), metrics in
//! `metrics.rs` (with `delta.rs`, the running totals of delta series, and `exponential.rs`);
//! their module notes are the reference. Owns: the config, the HTTP side (`server.rs`,
//! request reading in `request.rs`, replies in `reply.rs`), the decoder thread
//! (`decoder.rs`), OTLP/JSON (`json.rs`; the protobuf messages are `crate::otlp::proto`,
//! shared with the sink). Never: blocks the runtime (bodies are decompressed and decoded on
//! the source's decoder thread).

mod decoder;
mod delta;
mod exponential;
pub mod json;
pub mod logs;
pub mod metrics;
pub use crate::otlp::proto;
mod reader;
mod reply;
mod request;
mod server;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use super::{Running, SourceContext};

/// `type: opentelemetry` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenTelemetryConfig {
    /// `host:port` to listen on. Default `127.0.0.1:4318` (OTLP/HTTP's port, loopback only;
    /// `0.0.0.0:4318` to take data from other hosts or pods).
    #[serde(default = "default_address")]
    pub address: String,
    /// Largest request body, as sent and after decompression. Default 8 MiB.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Most memory for requests being read, decoded or handed to the pipeline, over all
    /// connections: a request takes its body's size while it is read and waits for room in
    /// the pipeline, then four times its decompressed protobuf size (twice for JSON) while
    /// its events are made and queued. Requests beyond are answered 429. At least four times
    /// `max_request_bytes`. Default 64 MiB.
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: usize,
    /// Most open connections; more are closed at once. Default 1024.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Answer only once the data is delivered (default `true`); `false` answers once it is
    /// queued in the pipeline.
    #[serde(default = "default_true")]
    pub wait_for_delivery: bool,
    /// How long a request may wait, for room in a full pipeline and then for delivery,
    /// before it is answered 503 (data already queued is still delivered; the client's retry
    /// sends it again). Keep it under the clients' timeout (10 s in the SDKs). Default 5.
    #[serde(default = "default_delivery_timeout_secs")]
    pub delivery_timeout_secs: u64,
    /// Most events per batch handed to the pipeline (a larger request is split). Default 1000.
    #[serde(default = "default_batch_events")]
    pub batch_events: usize,
    /// Most delta series whose running totals are kept (see `metrics.rs`). Default 100000.
    #[serde(default = "default_max_delta_series")]
    pub max_delta_series: usize,
}

fn default_address() -> String {
    "127.0.0.1:4318".into()
}
fn default_max_request_bytes() -> usize {
    8 << 20
}
fn default_max_buffered_bytes() -> usize {
    64 << 20
}
fn default_max_connections() -> usize {
    1024
}
fn default_true() -> bool {
    true
}
fn default_delivery_timeout_secs() -> u64 {
    5
}
fn default_batch_events() -> usize {
    1000
}
fn default_max_delta_series() -> usize {
    100_000
}

impl OpenTelemetryConfig {
    /// Validates the settings into an [`OpenTelemetry`] source.
    pub fn build(&self) -> anyhow::Result<OpenTelemetry> {
        use crate::bounds::{self, check};
        check(
            "max_request_bytes",
            self.max_request_bytes,
            1024..=bounds::MAX_BYTES,
        )?;
        check(
            "max_buffered_bytes",
            self.max_buffered_bytes,
            self.max_request_bytes.saturating_mul(4)..=(1 << 34),
        )
        .context("max_buffered_bytes must hold one decoded request (4 x max_request_bytes)")?;
        check("max_connections", self.max_connections, 1..=65_536)?;
        check(
            "delivery_timeout_secs",
            self.delivery_timeout_secs,
            1..=3600,
        )?;
        check("batch_events", self.batch_events, 1..=bounds::MAX_EVENTS)?;
        check(
            "max_delta_series",
            self.max_delta_series,
            0..=bounds::MAX_TRACKED,
        )?;
        let address = self
            .address
            .to_socket_addrs()
            .with_context(|| format!("address {:?}", self.address))?
            .next()
            .with_context(|| format!("address {:?} resolves to nothing", self.address))?;
        Ok(OpenTelemetry {
            address,
            settings: Settings {
                max_request_bytes: self.max_request_bytes,
                max_buffered_bytes: self.max_buffered_bytes,
                max_connections: self.max_connections,
                wait_for_delivery: self.wait_for_delivery,
                delivery_timeout: Duration::from_secs(self.delivery_timeout_secs),
                batch_events: self.batch_events,
                max_delta_series: self.max_delta_series,
            },
        })
    }
}

/// Validated limits.
#[derive(Debug, Clone, Copy)]
struct Settings {
    max_request_bytes: usize,
    max_buffered_bytes: usize,
    max_connections: usize,
    wait_for_delivery: bool,
    delivery_timeout: Duration,
    batch_events: usize,
    max_delta_series: usize,
}

/// A built OTLP receiver.
#[derive(Debug)]
pub struct OpenTelemetry {
    address: SocketAddr,
    settings: Settings,
}

impl OpenTelemetry {
    /// Nothing is checkpointed: an unanswered request is the client's to send again.
    pub const REPLAYABLE: bool = false;

    /// Where this source listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Binds now (a port in use stops the agent at start) and serves on the runtime.
    pub fn start(self, ctx: SourceContext) -> anyhow::Result<Running> {
        server::start(self, ctx)
    }
}

/// What decoding one request gave besides its events: the OTLP partial-success numbers.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decoded {
    /// Records or data points mapped.
    pub accepted: usize,
    /// Records or data points refused.
    pub rejected: usize,
    /// The first refusal's or warning's reason (empty when none).
    pub warning: String,
}

impl Decoded {
    /// Notes a warning (only the first is kept).
    pub fn warn(&mut self, message: String) {
        if self.warning.is_empty() {
            self.warning = message;
        }
    }

    /// Counts `n` refused items with `reason`.
    pub fn reject(&mut self, n: usize, reason: String) {
        self.rejected += n;
        self.warn(reason);
    }
}

/// An `ExportLogsServiceRequest` body decoded into events, as the source does once it has
/// read (and decompressed) it. For benches and tests.
pub fn decode_logs_protobuf(
    body: &[u8],
    out: &mut Vec<crate::event::Event>,
) -> Result<Decoded, String> {
    logs::decode(body, crate::event::Timestamp::now(), out)
}
