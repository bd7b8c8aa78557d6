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
//! the others wait for it holding their bytes (the job queue is bounded): no polling. If
//! the decoder thread is gone (it panicked), every request is answered 503 and the source
//! fails `/health`.
//!
//! Owns: the request lifecycle and its replies. Never: holds more request memory than
//! `max_buffered_bytes` (a semaphore of bytes, taken before a body is read and released once
//! its events are queued), or answers 200 before the pipeline took the data.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument as _;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::decoder::{permits, Decoder, Failure, Job, Outcome, JOB_QUEUE};
use super::metrics::DeltaTotals;
use super::reply::{bad_request, too_large, Counters, Format, Refusal, Reply, Signal};
use super::{request, Decoded, OpenTelemetry, Settings};
use crate::ack::AckWatch;
use crate::event::Timestamp;
use crate::health::HealthCheck;
use crate::source::{Running, SourceContext};
use crate::supervision::propagate_panic;

/// Pending connections the kernel holds before `accept`.
const LISTEN_BACKLOG: u32 = 1024;
/// A client must send its request headers within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
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
    /// Set once the decoder thread was found gone (logged and reported once).
    decoder_gone: AtomicBool,
}

impl Shared {
    fn new(
        ctx: SourceContext,
        settings: Settings,
        budget: Arc<Semaphore>,
        jobs: tokio::sync::mpsc::Sender<Job>,
    ) -> Shared {
        Shared {
            counters: Counters::new(&ctx),
            budget,
            pressure_since_ms: AtomicU64::new(0),
            started: Instant::now(),
            next_stream: AtomicU64::new(0),
            jobs,
            decoder_gone: AtomicBool::new(false),
            settings,
            ctx,
        }
    }

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
        delivered: ctx.delivered,
    };
    let span = ctx.span();
    let decoder_span = span.clone();
    std::thread::Builder::new()
        .name(format!("otlp-{}", ctx.id))
        .spawn(move || decoder_span.in_scope(|| decoder.run(queue)))
        .context("start the OTLP decoder thread")?;
    let shared = Arc::new(Shared::new(ctx, settings, budget, jobs));
    let runtime = shared.ctx.runtime.clone();
    Ok(Running::Task(
        runtime.spawn(serve(shared, listener).instrument(span)),
    ))
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

/// Answers a request: route and headers checked (`request.rs`), budget taken for its body,
/// body read, handed to the decoder thread, then the reply once its events are delivered.
async fn receive(
    shared: &Shared,
    stream_key: u64,
    request: Request<Incoming>,
) -> Result<Reply, Refusal> {
    let signal = request::route(&request)?;
    let (format, encoding) = request::negotiate(request.headers())?;
    let max = shared.settings.max_request_bytes;
    let declared = request::declared_length(request.headers(), format, max)?;
    if shared.ctx.shutdown.is_triggered() {
        return Err(stopping(shared, format));
    }
    // One deadline for the whole request: room in the pipeline, then delivery.
    let deadline = tokio::time::Instant::now() + shared.settings.delivery_timeout;
    // Room for the body as sent; topped up to its decoded size on the decoder thread.
    let reserve = declared.map_or(max, |n| n as usize).max(1);
    let Ok(permit) = shared
        .budget
        .clone()
        .try_acquire_many_owned(permits(reserve))
    else {
        return Err(no_budget(shared, format));
    };
    let received = Timestamp::now();
    let body = request::read_body(request.into_body(), format, max).await?;
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
    let (decoded, watch) = decode_and_enqueue(shared, job, outcome, deadline).await?;
    answer(shared, (signal, format), decoded, watch, deadline).await
}

/// Hands `job` to the decoder thread (decompressed, decoded, mapped and queued there) and
/// waits for what it made of it: the partial-success numbers and the delivery to watch.
async fn decode_and_enqueue(
    shared: &Shared,
    job: Job,
    outcome: tokio::sync::oneshot::Receiver<Outcome>,
    deadline: tokio::time::Instant,
) -> Result<(Decoded, Option<AckWatch>), Refusal> {
    let format = job.format;
    match tokio::time::timeout_at(deadline, shared.jobs.send(job)).await {
        Ok(Ok(())) => {}
        // The decoder thread ended (it panicked): its queue is closed.
        Ok(Err(_)) => return Err(decoder_gone(shared, format)),
        Err(_) => return Err(full(shared, format)),
    }
    match outcome.await {
        Ok(Outcome::Queued { decoded, watch }) => Ok((decoded, watch)),
        Ok(Outcome::Failed(Failure::Busy)) => Err(no_budget(shared, format)),
        Ok(Outcome::Failed(Failure::TooLarge)) => {
            Err(too_large(format, shared.settings.max_request_bytes))
        }
        Ok(Outcome::Failed(Failure::Invalid(message))) => Err(bad_request(format, message)),
        Ok(Outcome::Full) => Err(full(shared, format)),
        Ok(Outcome::Stopped) => Err(stopping(shared, format)),
        // The decoder thread dropped the job unanswered: it panicked.
        Err(_) => Err(decoder_gone(shared, format)),
    }
}

/// The reply once the events are queued: 200 with the partial-success numbers, at once
/// (`wait_for_delivery: false`, or nothing to deliver) or when delivered before `deadline`;
/// 503 otherwise.
async fn answer(
    shared: &Shared,
    (signal, format): (Signal, Format),
    decoded: Decoded,
    watch: Option<AckWatch>,
    deadline: tokio::time::Instant,
) -> Result<Reply, Refusal> {
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

fn full(shared: &Shared, format: Format) -> Refusal {
    busy(
        shared,
        format,
        StatusCode::SERVICE_UNAVAILABLE,
        "the pipeline is full: retry later",
    )
}

fn stopping(shared: &Shared, format: Format) -> Refusal {
    busy(
        shared,
        format,
        StatusCode::SERVICE_UNAVAILABLE,
        "the agent is stopping",
    )
}

fn no_budget(shared: &Shared, format: Format) -> Refusal {
    busy(
        shared,
        format,
        StatusCode::TOO_MANY_REQUESTS,
        "too many request bytes in progress (max_buffered_bytes): retry later",
    )
}

/// The decoder thread is gone (it panicked): the source can take nothing more. A 503 with
/// `Retry-After` (counted as `reason="unavailable"`); the first time, an ERROR log and a
/// `/health` failure for the source, so the agent is restarted by whoever watches it.
fn decoder_gone(shared: &Shared, format: Format) -> Refusal {
    if !shared.decoder_gone.swap(true, Ordering::Relaxed) {
        tracing::error!(
            pipeline = %shared.ctx.pipeline,
            source = %shared.ctx.id,
            "the OTLP decoder thread is gone: every request is answered 503; restart the agent"
        );
        HealthCheck::new(format!("{}/source/{}", shared.ctx.pipeline, shared.ctx.id))
            .fail("the OTLP decoder thread is gone: requests are answered 503");
    }
    let (_, reply) = busy(
        shared,
        format,
        StatusCode::SERVICE_UNAVAILABLE,
        "the OTLP decoder is not running: retry later",
    );
    ("unavailable", reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoints;
    use crate::shutdown::Shutdown;
    use crate::source::BatchSender;
    use crate::telemetry::{registry, ComponentMetrics};

    /// A receiver's shared state whose decoder side is `queue` (not running).
    fn shared(id: &str) -> (Arc<Shared>, tokio::sync::mpsc::Receiver<Job>) {
        let (tx, _rx) = flume::bounded(1);
        let depth = registry().gauge("test_otlp_queue", "test", &[("test", id)]);
        let shutdown = Shutdown::new();
        let metrics = ComponentMetrics::new("test", "source", id);
        let ctx = SourceContext {
            pipeline: "test".into(),
            id: id.into(),
            out: BatchSender::new(vec![(tx, depth)], shutdown.clone(), metrics.clone()),
            shutdown,
            checkpoints: Checkpoints::in_memory(),
            metrics,
            runtime: tokio::runtime::Handle::current(),
            delivered: crate::event::Kinds::BOTH,
        };
        let settings = super::super::OpenTelemetryConfig {
            address: "127.0.0.1:0".into(),
            max_request_bytes: 1 << 20,
            max_buffered_bytes: 4 << 20,
            max_connections: 1,
            wait_for_delivery: true,
            delivery_timeout_secs: 5,
            batch_events: 1000,
            max_delta_series: 0,
        }
        .build()
        .expect("valid settings")
        .settings;
        let (jobs, queue) = tokio::sync::mpsc::channel(JOB_QUEUE);
        let budget = Arc::new(Semaphore::new(settings.max_buffered_bytes));
        let shared = Arc::new(Shared::new(ctx, settings, budget, jobs));
        (shared, queue)
    }

    fn job(shared: &Shared) -> (Job, tokio::sync::oneshot::Receiver<Outcome>) {
        let permit = shared.budget.clone().try_acquire_many_owned(1).unwrap();
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let job = Job {
            signal: Signal::Logs,
            format: Format::Json,
            encoding: super::super::decoder::Encoding::Identity,
            body: Bytes::from_static(b"{}"),
            reserve: 1,
            permit,
            received: Timestamp::now(),
            stream_key: 0,
            deadline: Instant::now() + Duration::from_secs(5),
            reply,
        };
        (job, outcome)
    }

    fn deadline() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(5)
    }

    fn assert_unavailable(shared: &Shared, refusal: Refusal) {
        let (reason, reply) = refusal;
        assert_eq!(reason, "unavailable");
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(reply.retry_after.is_some(), "a 503 tells when to retry");
        let key = format!("test/source/{}", shared.ctx.id);
        assert!(
            crate::health::failures().contains_key(&key),
            "the source fails /health"
        );
        assert_eq!(
            shared.budget.available_permits(),
            shared.settings.max_buffered_bytes,
            "the request's budget is given back"
        );
    }

    #[tokio::test]
    async fn a_gone_decoder_thread_is_a_503_not_a_panic() {
        let (shared, queue) = shared("otlp_decoder_gone");
        drop(queue);
        let (job, outcome) = job(&shared);
        let Err(refusal) = decode_and_enqueue(&shared, job, outcome, deadline()).await else {
            panic!("refused");
        };
        assert_unavailable(&shared, refusal);
    }

    #[tokio::test]
    async fn a_decoder_thread_that_drops_the_request_is_a_503_not_a_panic() {
        let (shared, mut queue) = shared("otlp_decoder_dropped");
        // A decoder that takes the request and ends without answering (as a panic would).
        let decoder = tokio::spawn(async move { drop(queue.recv().await) });
        let (job, outcome) = job(&shared);
        let Err(refusal) = decode_and_enqueue(&shared, job, outcome, deadline()).await else {
            panic!("refused");
        };
        decoder.await.unwrap();
        assert_unavailable(&shared, refusal);
    }
}
