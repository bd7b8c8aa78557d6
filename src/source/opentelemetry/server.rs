//! The HTTP side of the OTLP receiver: accept loop with a connection cap, HTTP/1.1 per
//! connection (hyper), routing and limits on the runtime; decompression, decoding, mapping
//! and handing batches to the pipeline on the source's decoder thread ([`Decoder`]); then
//! the answer, once the batches are delivered.
//!
//! A request: headers checked → budget taken for its body → body read (at most
//! `max_request_bytes`) → wait for room in the pipeline → decoder thread (budget topped up to
//! the events' estimated size; decoded; queued) → wait for the delivery acknowledgement →
//! 200. One deadline (`delivery_timeout_secs`) covers the waits; past it, 503.
//!
//! Owns: the request lifecycle and its replies. Never: holds more request memory than
//! `max_buffered_bytes` (a semaphore of bytes, taken before a body is read and released once
//! its events are queued), or answers 200 before the pipeline took the data.

use std::convert::Infallible;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use prost::Message as _;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::metrics::DeltaTotals;
use super::{json, logs, metrics, proto, Decoded, OpenTelemetry, Settings};
use crate::ack::AckRef;
use crate::event::{Batch, Event, Timestamp};
use crate::source::{Running, SourceContext};
use crate::supervision::propagate_panic;
use crate::telemetry::Counter;

/// Pending connections the kernel holds before `accept`.
const LISTEN_BACKLOG: u32 = 1024;
/// A client must send its request headers within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// ... and its body within this.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest `Retry-After` sent.
const MAX_RETRY_AFTER_SECS: u64 = 30;

/// Which OTLP signal a path carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Logs,
    Metrics,
}

/// Body format, from `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

/// `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
    Deflate,
    Zstd,
}

struct Counters {
    refused: [Counter; 6],
    rejected_items: Counter,
    connections_refused: Counter,
}

/// Reasons a request was refused, in [`Counters::refused`] order.
const REFUSALS: [&str; 6] = [
    "bad_request",
    "too_large",
    "unsupported",
    "busy",
    "not_delivered",
    "not_found",
];

impl Counters {
    fn new(ctx: &SourceContext) -> Self {
        let refused = REFUSALS.map(|reason| {
            ctx.metrics.counter(
                "sluice_otlp_requests_refused_total",
                "OTLP requests answered with an error, by reason (busy and not_delivered are the retryable 429/503).",
                &[("reason", reason)],
            )
        });
        Counters {
            refused,
            rejected_items: ctx.metrics.dropped("otlp_rejected"),
            connections_refused: ctx.metrics.counter(
                "sluice_otlp_connections_refused_total",
                "OTLP connections closed at once because max_connections were open.",
                &[],
            ),
        }
    }

    fn refused(&self, reason: &str) {
        if let Some(i) = REFUSALS.iter().position(|r| *r == reason) {
            self.refused[i].inc();
        }
    }
}

struct Shared {
    settings: Settings,
    ctx: SourceContext,
    counters: Counters,
    /// Bytes of requests in progress (bodies read and waiting, events being made and queued).
    budget: Arc<Semaphore>,
    /// Milliseconds since `started` (plus one; 0: none) since when requests have been
    /// turned away for lack of room, for `Retry-After`.
    pressure_since_ms: AtomicU64,
    started: Instant,
    next_stream: AtomicU64,
    /// Requests for the decoder thread.
    jobs: tokio::sync::mpsc::Sender<Job>,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + 1
    }

    /// Seconds for `Retry-After`: 1 at first, then as long as the pressure has lasted (so
    /// clients back off as the outage goes on), at most 30.
    fn retry_after(&self) -> u64 {
        let now = self.now_ms();
        let since = match self.pressure_since_ms.compare_exchange(
            0,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => now,
            Err(since) => since,
        };
        (now.saturating_sub(since) / 1000).clamp(1, MAX_RETRY_AFTER_SECS)
    }

    fn relieved(&self) {
        self.pressure_since_ms.store(0, Ordering::Relaxed);
    }
}

/// Binds the listener (errors stop the agent at start) and spawns the serving task.
pub(super) fn start(source: OpenTelemetry, ctx: SourceContext) -> anyhow::Result<Running> {
    let _runtime = ctx.runtime.enter();
    let address = source.address;
    let listener = bind(address).with_context(|| format!("bind {address}"))?;
    let bound = listener.local_addr().unwrap_or(address);
    tracing::info!(source = %ctx.id, address = %bound, "OTLP/HTTP listening");
    let settings = source.settings;
    let budget = Arc::new(Semaphore::new(settings.max_buffered_bytes));
    let (jobs, queue) = tokio::sync::mpsc::channel(JOB_QUEUE);
    let decoder = Decoder {
        out: ctx.out.clone(),
        metrics: ctx.metrics.clone(),
        budget: budget.clone(),
        totals: DeltaTotals::new(settings.max_delta_series),
        settings,
    };
    std::thread::Builder::new()
        .name(format!("otlp-{}", ctx.id))
        .spawn(move || decoder.run(queue))
        .context("start the OTLP decoder thread")?;
    let shared = Arc::new(Shared {
        counters: Counters::new(&ctx),
        budget,
        pressure_since_ms: AtomicU64::new(0),
        started: Instant::now(),
        next_stream: AtomicU64::new(0),
        jobs,
        settings,
        ctx,
    });
    let runtime = shared.ctx.runtime.clone();
    Ok(Running::Task(runtime.spawn(serve(shared, listener))))
}

fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn serve(shared: Arc<Shared>, listener: tokio::net::TcpListener) {
    let slots = Arc::new(Semaphore::new(shared.settings.max_connections));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shared.ctx.shutdown.wait() => break,
            Some(joined) = connections.join_next() => {
                propagate_panic(joined);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, _peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(source = %shared.ctx.id, %error, "OTLP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            shared.counters.connections_refused.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(shared.clone(), stream, slot));
    }
    drop(listener);
    // Requests in flight are answered (delivered, or 503 at their deadline) before the
    // source ends; connections then close.
    let grace = shared.settings.delivery_timeout + Duration::from_secs(1);
    let drained = tokio::time::timeout(grace, async {
        while let Some(joined) = connections.join_next().await {
            propagate_panic(joined);
        }
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
}

async fn connection(
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    _slot: tokio::sync::OwnedSemaphorePermit,
) {
    let stream_key = shared.next_stream.fetch_add(1, Ordering::Relaxed);
    let service = {
        let shared = shared.clone();
        hyper::service::service_fn(move |request| {
            let shared = shared.clone();
            async move { Ok::<_, Infallible>(handle(&shared, stream_key, request).await) }
        })
    };
    let io = hyper_util::rt::TokioIo::new(stream);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shared.ctx.shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A reply being built.
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
    retry_after: Option<u64>,
}

impl Reply {
    fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(self.body)));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        if let Some(seconds) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }

    fn text(status: StatusCode, message: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{message}\n").into_bytes(),
            retry_after: None,
        }
    }

    /// An OTLP error: a `google.rpc.Status` in the request's format.
    fn status(format: Format, status: StatusCode, message: &str) -> Reply {
        // gRPC codes, as the OTLP/HTTP spec maps them.
        let code = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::PAYLOAD_TOO_LARGE => 8, // RESOURCE_EXHAUSTED
            StatusCode::SERVICE_UNAVAILABLE => 14,                              // UNAVAILABLE
            _ => 3,                                                             // INVALID_ARGUMENT
        };
        let (content_type, body) = match format {
            Format::Protobuf => (
                "application/x-protobuf",
                proto::Status {
                    code,
                    message: message.to_owned(),
                }
                .encode_to_vec(),
            ),
            Format::Json => (
                "application/json",
                serde_json::json!({"code": code, "message": message})
                    .to_string()
                    .into_bytes(),
            ),
        };
        Reply {
            status,
            content_type,
            body,
            retry_after: None,
        }
    }

    /// 200 with the export response (partial success when something was refused or warned).
    fn success(format: Format, signal: Signal, decoded: &Decoded) -> Reply {
        let partial =
            (decoded.rejected > 0 || !decoded.warning.is_empty()).then(|| proto::PartialSuccess {
                rejected: decoded.rejected as i64,
                error_message: decoded.warning.clone(),
            });
        let (content_type, body) = match format {
            Format::Protobuf => (
                "application/x-protobuf",
                proto::ExportResponse {
                    partial_success: partial,
                }
                .encode_to_vec(),
            ),
            Format::Json => {
                let body = match partial {
                    None => serde_json::json!({}),
                    Some(partial) => {
                        let rejected = match signal {
                            Signal::Logs => "rejectedLogRecords",
                            Signal::Metrics => "rejectedDataPoints",
                        };
                        serde_json::json!({"partialSuccess": {
                            rejected: partial.rejected.to_string(),
                            "errorMessage": partial.error_message,
                        }})
                    }
                };
                ("application/json", body.to_string().into_bytes())
            }
        };
        Reply {
            status: StatusCode::OK,
            content_type,
            body,
            retry_after: None,
        }
    }
}

async fn handle(
    shared: &Shared,
    stream_key: u64,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    match receive(shared, stream_key, request).await {
        Ok(reply) => reply,
        Err((reason, reply)) => {
            shared.counters.refused(reason);
            tracing::debug!(source = %shared.ctx.id, status = %reply.status, reason, "OTLP request refused");
            reply
        }
    }
    .into_response()
}

/// A refusal: its metric reason and the reply.
type Refusal = (&'static str, Reply);

fn busy(shared: &Shared, format: Format, status: StatusCode, message: &str) -> Refusal {
    let mut reply = Reply::status(format, status, message);
    reply.retry_after = Some(shared.retry_after());
    let reason = if status == StatusCode::TOO_MANY_REQUESTS {
        "busy"
    } else {
        "not_delivered"
    };
    (reason, reply)
}

async fn receive(
    shared: &Shared,
    stream_key: u64,
    request: Request<Incoming>,
) -> Result<Reply, Refusal> {
    let signal = match request.uri().path() {
        "/v1/logs" => Signal::Logs,
        "/v1/metrics" => Signal::Metrics,
        _ => {
            return Err((
                "not_found",
                Reply::text(
                    StatusCode::NOT_FOUND,
                    "not found: OTLP/HTTP takes POST /v1/logs and /v1/metrics",
                ),
            ))
        }
    };
    if request.method() != Method::POST {
        let reply = Reply::text(StatusCode::METHOD_NOT_ALLOWED, "OTLP/HTTP takes POST only");
        return Err(("not_found", reply));
    }
    let headers = request.headers();
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let format = match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Format::Protobuf,
        "application/json" => Format::Json,
        _ => {
            return Err((
                "unsupported",
                Reply::text(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    &format!(
                        "Content-Type {content_type:?} not supported: use application/x-protobuf or application/json"
                    ),
                ),
            ))
        }
    };
    let encoding = match headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => Encoding::Identity,
        Some("gzip") | Some("x-gzip") => Encoding::Gzip,
        Some("deflate") => Encoding::Deflate,
        Some("zstd") => Encoding::Zstd,
        Some(other) => {
            return Err((
                "unsupported",
                Reply::status(
                    format,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    &format!(
                        "Content-Encoding {other:?} not supported: use gzip, deflate, zstd or none"
                    ),
                ),
            ))
        }
    };
    let max = shared.settings.max_request_bytes;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large(format, max));
    }
    if shared.ctx.shutdown.is_triggered() {
        return Err(busy(
            shared,
            format,
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent is stopping",
        ));
    }
    // One deadline for the whole request: room in the pipeline, then delivery.
    let deadline = tokio::time::Instant::now() + shared.settings.delivery_timeout;
    // Room for the body as sent; topped up to its decoded size below.
    let reserve = declared.map_or(max, |n| n as usize).max(1);
    let Ok(permit) = shared
        .budget
        .clone()
        .try_acquire_many_owned(permits(reserve))
    else {
        return Err(busy(
            shared,
            format,
            StatusCode::TOO_MANY_REQUESTS,
            "too many request bytes in progress (max_buffered_bytes): retry later",
        ));
    };
    let received = Timestamp::now();
    let body = match tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(request.into_body(), max).collect(),
    )
    .await
    {
        Err(_) => {
            return Err((
                "bad_request",
                Reply::status(
                    format,
                    StatusCode::REQUEST_TIMEOUT,
                    "the body did not arrive in time",
                ),
            ))
        }
        Ok(Err(error))
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(too_large(format, max))
        }
        Ok(Err(error)) => {
            return Err((
                "bad_request",
                Reply::status(
                    format,
                    StatusCode::BAD_REQUEST,
                    &format!("reading the body: {error}"),
                ),
            ))
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };

    // Decode only once the pipeline has room: a request that waits holds its bytes, not
    // its (several times larger) events, and none is decoded in vain.
    if !room(shared, stream_key, deadline).await {
        return Err(full(shared, format));
    }

    // Decompressed, decoded, mapped and queued on the decoder thread.
    let (reply, outcome) = tokio::sync::oneshot::channel();
    let job = Job {
        signal,
        format,
        encoding,
        body,
        reserve,
        permit,
        received,
        stream_key,
        deadline: deadline.into_std(),
        reply,
    };
    match tokio::time::timeout_at(deadline, shared.jobs.send(job)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!(
            "the OTLP decoder thread of source {} is gone",
            shared.ctx.id
        ),
        Err(_) => return Err(full(shared, format)),
    }
    let (decoded, watch) = match outcome.await {
        Ok(Outcome::Queued { decoded, watch }) => (decoded, watch),
        Ok(Outcome::Failed(Failure::Busy)) => {
            return Err(busy(
                shared,
                format,
                StatusCode::TOO_MANY_REQUESTS,
                "too many request bytes in progress (max_buffered_bytes): retry later",
            ))
        }
        Ok(Outcome::Failed(Failure::TooLarge)) => {
            return Err(too_large(format, shared.settings.max_request_bytes))
        }
        Ok(Outcome::Failed(Failure::Invalid(message))) => return Err(bad_request(format, message)),
        Ok(Outcome::Full) => return Err(full(shared, format)),
        Ok(Outcome::Stopped) => {
            return Err(busy(
                shared,
                format,
                StatusCode::SERVICE_UNAVAILABLE,
                "the agent is stopping",
            ))
        }
        Err(_) => panic!(
            "the OTLP decoder thread of source {} panicked",
            shared.ctx.id
        ),
    };
    if decoded.rejected > 0 {
        shared.counters.rejected_items.add(decoded.rejected as u64);
    }
    let Some(watch) = watch else {
        // Nothing to deliver (an empty request, or every item refused).
        return Ok(Reply::success(format, signal, &decoded));
    };
    if !shared.settings.wait_for_delivery {
        shared.relieved();
        return Ok(Reply::success(format, signal, &decoded));
    }
    match tokio::time::timeout_at(deadline, watch).await {
        Ok(Ok(true)) => {
            shared.relieved();
            Ok(Reply::success(format, signal, &decoded))
        }
        Ok(_) => Err(busy(
            shared,
            format,
            StatusCode::SERVICE_UNAVAILABLE,
            "the pipeline did not deliver the data (stopping or a sink gave up): retry",
        )),
        Err(_) => Err(busy(
            shared,
            format,
            StatusCode::SERVICE_UNAVAILABLE,
            "not delivered within delivery_timeout_secs: retry later",
        )),
    }
}

/// Events per byte of a protobuf body, as memory: a decoded log record takes about four
/// times its wire size (fields map, keys, values); the budget reserves that much.
const PROTOBUF_EXPANSION: usize = 4;
/// The same for JSON, whose wire form is already two to three times protobuf's.
const JSON_EXPANSION: usize = 2;

/// Waits until the queue of `stream_key` has room (true) or the deadline passes.
async fn room(shared: &Shared, stream_key: u64, deadline: tokio::time::Instant) -> bool {
    let mut pause = Duration::from_micros(500);
    while shared.ctx.out.is_full(stream_key) {
        if tokio::time::Instant::now() + pause > deadline || shared.ctx.shutdown.is_triggered() {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    true
}

fn full(shared: &Shared, format: Format) -> Refusal {
    busy(
        shared,
        format,
        StatusCode::SERVICE_UNAVAILABLE,
        "the pipeline is full: retry later",
    )
}

/// Semaphore permits for `bytes` (the semaphore counts bytes).
fn permits(bytes: usize) -> u32 {
    u32::try_from(bytes).unwrap_or(u32::MAX)
}

fn too_large(format: Format, max: usize) -> Refusal {
    (
        "too_large",
        Reply::status(
            format,
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is over max_request_bytes ({max} bytes)"),
        ),
    )
}

fn bad_request(format: Format, message: String) -> Refusal {
    (
        "bad_request",
        Reply::status(format, StatusCode::BAD_REQUEST, &message),
    )
}

/// Requests waiting for the decoder thread (each holds its body and budget).
const JOB_QUEUE: usize = 4;

/// A request for the decoder thread.
struct Job {
    signal: Signal,
    format: Format,
    encoding: Encoding,
    body: Bytes,
    /// Budget bytes `permit` holds.
    reserve: usize,
    permit: tokio::sync::OwnedSemaphorePermit,
    received: Timestamp,
    stream_key: u64,
    deadline: Instant,
    reply: tokio::sync::oneshot::Sender<Outcome>,
}

/// What the decoder made of a request.
enum Outcome {
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
struct Decoder {
    out: crate::source::BatchSender,
    metrics: crate::telemetry::ComponentMetrics,
    budget: Arc<Semaphore>,
    totals: DeltaTotals,
    settings: Settings,
}

impl Decoder {
    fn run(self, mut queue: tokio::sync::mpsc::Receiver<Job>) {
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
        let decoded = match decode(signal, format, &raw, &self.totals, received, &mut events) {
            Ok(decoded) => decoded,
            Err(failure) => return Outcome::Failed(failure),
        };
        drop(raw);
        drop(body);
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
enum Failure {
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
            logs::to_events(json::logs(raw).map_err(invalid)?, received, out).map_err(invalid)?
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
