//! The HTTP side of the OTLP receiver: accept loop with a connection cap, HTTP/1.1 per
//! connection (hyper), routing and limits on the runtime; decompression, decoding, mapping
//! and handing batches to the pipeline on the source's decoder thread ([`Decoder`]); then
//! the answer, once the batches are delivered.
//!
//! A request: headers checked → budget taken for its body → body read (at most
//! `max_request_bytes`) → decoder thread (budget topped up to the events' estimated size;
//! decoded; queued, waiting in the queue's own wait for room) → wait for the delivery
//! acknowledgement → 200. One deadline (`delivery_timeout_secs`) covers the waits; past it,
//! 503. While the pipeline is full, the decoder thread waits with one decoded request and
//! the others wait for it holding their bytes (the job queue is bounded): no polling.
//!
//! Owns: the request lifecycle and its replies. Never: holds more request memory than
//! `max_buffered_bytes` (a semaphore of bytes, taken before a body is read and released once
//! its events are queued), or answers 200 before the pipeline took the data.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::decoder::{permits, Decoder, Encoding, Failure, Job, Outcome, JOB_QUEUE};
use super::metrics::DeltaTotals;
use super::reply::{bad_request, too_large, Counters, Format, Refusal, Reply, Signal};
use super::{OpenTelemetry, Settings};
use crate::event::Timestamp;
use crate::source::{Running, SourceContext};
use crate::supervision::propagate_panic;

/// Pending connections the kernel holds before `accept`.
const LISTEN_BACKLOG: u32 = 1024;
/// A client must send its request headers within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// ... and its body within this.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest `Retry-After` sent.
const MAX_RETRY_AFTER_SECS: u64 = 30;

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

fn full(shared: &Shared, format: Format) -> Refusal {
    busy(
        shared,
        format,
        StatusCode::SERVICE_UNAVAILABLE,
        "the pipeline is full: retry later",
    )
}
