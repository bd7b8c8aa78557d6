//! The OTLP receiver's decoder thread: decompresses, decodes and maps every request, and
//! hands its events to the pipeline with a watched acknowledgement.
//!
//! Owns: decompression limits, the memory top-up to a request's decoded size, splitting
//! into batches. Never: answers a client (`server.rs` does, from the [`Outcome`]).

use std::io::Read as _;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use prost::Message as _;
use tokio::sync::Semaphore;

use super::metrics::DeltaTotals;
use super::reply::{Format, Signal};
use super::{json, logs, metrics, proto, Decoded, Settings};
use crate::ack::AckRef;
use crate::batch::Batch;
use crate::event::{Event, Timestamp};

/// `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Identity,
    Gzip,
    Deflate,
    Zstd,
}

/// Events per byte of a protobuf body, as memory: a decoded log record takes about four
/// times its wire size (fields map, keys, values); the budget reserves that much.
const PROTOBUF_EXPANSION: usize = 4;
/// The same for JSON, whose wire form is already two to three times protobuf's.
const JSON_EXPANSION: usize = 2;

/// Semaphore permits for `bytes` (the semaphore counts bytes).
pub(super) fn permits(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

/// Requests waiting for the decoder thread (each holds its body and budget).
pub(super) const JOB_QUEUE: usize = 4;

/// A request for the decoder thread.
pub(super) struct Job {
    pub(super) signal: Signal,
    pub(super) format: Format,
    pub(super) encoding: Encoding,
    pub(super) body: Bytes,
    /// Budget bytes `permit` holds.
    pub(super) reserve: usize,
    pub(super) permit: tokio::sync::OwnedSemaphorePermit,
    pub(super) received: Timestamp,
    pub(super) stream_key: u64,
    pub(super) deadline: Instant,
    pub(super) reply: tokio::sync::oneshot::Sender<Outcome>,
}

/// What the decoder made of a request.
pub(super) enum Outcome {
    /// Its events are in the pipeline (`watch`: their delivery; `None`: there were none).
    Queued {
        decoded: Decoded,
        watch: Option<crate::ack::AckWatch>,
    },
    /// Refused before anything was queued.
    Failed(Failure),
    /// The pipeline stayed full until the deadline (part of it may have been queued).
    Full,
    /// The agent is stopping.
    Stopped,
}

/// The source's decoder thread: decompresses, decodes and maps every request, and hands
/// the events to the pipeline. One thread, so the events are allocated, and freed when the
/// sinks return them (`crate::event::Home`), on the same thread: the allocator's
/// cross-thread path and the blocking pool's many thread heaps cost CPU and memory.
pub(super) struct Decoder {
    pub(super) out: crate::source::BatchSender,
    pub(super) metrics: crate::telemetry::ComponentMetrics,
    pub(super) budget: Arc<Semaphore>,
    pub(super) totals: DeltaTotals,
    pub(super) settings: Settings,
    /// The kinds a sink of the pipeline takes: a signal none takes is refused, not queued.
    pub(super) delivered: crate::event::Kinds,
}

impl Decoder {
    pub(super) fn run(self, mut queue: tokio::sync::mpsc::Receiver<Job>) {
        while let Some(job) = queue.blocking_recv() {
            self.out.free_returned();
            let Job {
                signal,
                format,
                encoding,
                body,
                reserve,
                permit,
                received,
                stream_key,
                deadline,
                reply,
            } = job;
            let outcome = self.handle(
                (signal, format, encoding),
                body,
                (reserve, permit),
                received,
                stream_key,
                deadline,
            );
            let _ = reply.send(outcome);
        }
    }

    fn handle(
        &self,
        (signal, format, encoding): (Signal, Format, Encoding),
        body: Bytes,
        (reserve, permit): (usize, tokio::sync::OwnedSemaphorePermit),
        received: Timestamp,
        stream_key: u64,
        deadline: Instant,
    ) -> Outcome {
        let max = self.settings.max_request_bytes;
        let raw = match decompress(encoding, &body, max) {
            Ok(raw) => raw,
            Err(failure) => return Outcome::Failed(failure),
        };
        // Top the reservation up to the events' estimated size.
        let expansion = match format {
            Format::Protobuf => PROTOBUF_EXPANSION,
            Format::Json => JSON_EXPANSION,
        };
        let extra = match (raw.len() * expansion).checked_sub(reserve) {
            Some(more) if more > 0 => {
                match self.budget.clone().try_acquire_many_owned(permits(more)) {
                    Ok(extra) => Some(extra),
                    Err(_) => return Outcome::Failed(Failure::Busy),
                }
            }
            _ => None,
        };
        let mut events = Vec::new();
        let mut decoded = match decode(signal, format, &raw, &self.totals, received, &mut events) {
            Ok(decoded) => decoded,
            Err(failure) => return Outcome::Failed(failure),
        };
        drop(raw);
        drop(body);
        let delivered = match signal {
            Signal::Logs => self.delivered.logs,
            Signal::Metrics => self.delivered.metrics,
        };
        if !delivered && !events.is_empty() {
            // Answered as OTLP's partial success (rejected, not to be retried), and counted
            // with the other rejections: queued, they would be dropped by the pipeline.
            decoded.rejected += events.len();
            decoded.accepted = decoded.accepted.saturating_sub(events.len());
            let what = match signal {
                Signal::Logs => "logs: the log records",
                Signal::Metrics => "metrics: the data points",
            };
            decoded.warning =
                format!("no sink of this receiver's pipeline takes {what} were dropped");
            events.clear();
        }
        if events.is_empty() {
            return Outcome::Queued {
                decoded,
                watch: None,
            };
        }
        self.metrics.events_in.add(events.len() as u64);
        let (ack, watch) = AckRef::watched();
        while !events.is_empty() {
            let rest = events.split_off(events.len().min(self.settings.batch_events));
            let batch = Batch::with_ack(std::mem::replace(&mut events, rest), ack.clone());
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.out.send_or_wait(stream_key, batch, wait) {
                Ok(()) => {}
                Err(crate::source::SendError::Stopped) => return Outcome::Stopped,
                // The batch is dropped with its ack copy: the request is abandoned.
                Err(crate::source::SendError::Full(_)) => return Outcome::Full,
            }
        }
        drop((permit, extra));
        ack.done();
        Outcome::Queued {
            decoded,
            watch: Some(watch),
        }
    }
}

/// Why a body could not be decoded.
#[derive(Debug)]
pub(super) enum Failure {
    /// Over `max_request_bytes` once decompressed.
    TooLarge,
    /// Its decompressed size does not fit `max_buffered_bytes` now.
    Busy,
    /// Malformed: the reason.
    Invalid(String),
}

/// The body decompressed (borrowed when it was not compressed), at most `max` bytes.
fn decompress(
    encoding: Encoding,
    body: &[u8],
    max: usize,
) -> Result<std::borrow::Cow<'_, [u8]>, Failure> {
    fn read_all(
        mut reader: impl std::io::Read,
        max: usize,
        what: &str,
    ) -> Result<Vec<u8>, Failure> {
        let mut out = Vec::new();
        reader
            .by_ref()
            .take(max as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|error| Failure::Invalid(format!("{what}: {error}")))?;
        if out.len() > max {
            return Err(Failure::TooLarge);
        }
        Ok(out)
    }
    Ok(match encoding {
        Encoding::Identity => std::borrow::Cow::Borrowed(body),
        Encoding::Gzip => read_all(flate2::read::MultiGzDecoder::new(body), max, "gzip")?.into(),
        Encoding::Deflate => read_all(flate2::read::ZlibDecoder::new(body), max, "deflate")?.into(),
        Encoding::Zstd => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(body)
                .map_err(|error| Failure::Invalid(format!("zstd: {error}")))?;
            read_all(decoder, max, "zstd")?.into()
        }
    })
}

/// Decodes a body (already decompressed) of `signal` in `format` into events.
fn decode(
    signal: Signal,
    format: Format,
    raw: &[u8],
    totals: &DeltaTotals,
    received: Timestamp,
    out: &mut Vec<Event>,
) -> Result<Decoded, Failure> {
    let invalid = |error: String| Failure::Invalid(error);
    Ok(match (signal, format) {
        (Signal::Logs, Format::Protobuf) => logs::decode(raw, received, out)
            .map_err(|error| invalid(format!("malformed ExportLogsServiceRequest: {error}")))?,
        (Signal::Logs, Format::Json) => {
            let (request, warning) = json::logs(raw).map_err(invalid)?;
            let mut decoded = logs::to_events(request, received, out).map_err(invalid)?;
            if let Some(warning) = warning {
                decoded.warn(warning);
            }
            decoded
        }
        (Signal::Metrics, Format::Protobuf) => {
            let request = proto::ExportMetricsServiceRequest::decode(raw).map_err(|error| {
                invalid(format!("malformed ExportMetricsServiceRequest: {error}"))
            })?;
            metrics::to_events(request, received, totals, out)
        }
        (Signal::Metrics, Format::Json) => {
            metrics::to_events(json::metrics(raw).map_err(invalid)?, received, totals, out)
        }
    })
}
