//! The driver at run time: intake into per-lane batches, encoding, compression, sending,
//! judging, retries with backoff, settling acknowledgements, delivery metrics and health.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use url::Url;

use super::super::{SinkContext, SinkInput};
use super::*;
use crate::ack::AckRef;
use crate::batch::Batch;
use crate::event::{Event, Home};
use crate::health::HealthCheck;
use crate::supervision::propagate_panic;
use crate::telemetry::{Counter, Gauge, Histogram, BYTE_BUCKETS, EVENT_COUNT_BUCKETS};

// ---------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------

/// A built driver: validated settings and the HTTP client.
#[derive(Debug)]
pub struct HttpDriver {
    pub(super) client: reqwest::Client,
    pub(super) endpoints: Endpoints,
    pub(super) headers: HeaderMap,
    pub(super) compression: Compression,
    pub(super) level: u32,
    pub(super) max_events: usize,
    pub(super) max_bytes: usize,
    pub(super) batch_timeout: Duration,
    pub(super) lanes: usize,
    pub(super) request_timeout: Duration,
    pub(super) initial_backoff: Duration,
    pub(super) max_backoff: Duration,
    pub(super) max_retry_duration: Option<Duration>,
    pub(super) unhealthy_after: Duration,
    pub(super) buffer: crate::buffer::BufferSettings,
}

/// The most events a new batch reserves room for up front.
const MAX_RESERVED_EVENTS: usize = 10_000;

/// Events on their way to one request, with the acknowledgements they settle.
#[derive(Default)]
struct Pending {
    events: Vec<Event>,
    acks: Vec<AckRef>,
    /// Where the spent events go: the home of the first source batch in this one.
    home: Option<Home>,
    bytes: usize,
    deadline: Option<tokio::time::Instant>,
}

/// The fate of one event of a batch.
#[derive(Clone, Debug)]
enum Outcome {
    Waiting,
    Delivered,
    Rejected(Arc<str>),
    Dropped(&'static str),
    /// One of a group of which the server refused some, without saying which.
    Unconfirmed(Arc<Unconfirmed>),
}

/// A group of entries of which the server refused `refused` and stored the rest.
#[derive(Debug)]
struct Unconfirmed {
    refused: usize,
    /// `kind: words`: the dead-letter reason; `kind` is the metric label.
    reason: Arc<str>,
}

/// Metric handles and delivery state shared by the intake and the lanes.
struct State {
    retries: Counter,
    batch_events: Histogram,
    batch_bytes: Histogram,
    bytes_uncompressed: Counter,
    bytes_compressed: Counter,
    in_flight: Gauge,
    /// Milliseconds since `started` of the last 2xx.
    last_success_ms: AtomicU64,
    /// Milliseconds since `started` when the driver last went from idle to busy.
    busy_since_ms: AtomicU64,
    /// Batches handed to lanes and not yet settled.
    pending_batches: AtomicUsize,
    /// Milliseconds since `started` (plus one; 0: not rejecting) when every request began
    /// to be rejected or dead-lettered with no event delivered since.
    rejecting_since_ms: AtomicU64,
    /// The last rejection's reason (with the server's words), for `/health`.
    last_rejection: std::sync::Mutex<String>,
    started: Instant,
}

impl State {
    fn new(ctx: &SinkContext) -> Arc<Self> {
        let metrics = &ctx.metrics;
        let state = Arc::new(State {
            retries: metrics.counter(
                "sluice_sink_retries_total",
                "Requests retried by a sink.",
                &[],
            ),
            batch_events: metrics.histogram(
                "sluice_sink_batch_events",
                "Events per request sent by a sink.",
                EVENT_COUNT_BUCKETS,
            ),
            batch_bytes: metrics.histogram(
                "sluice_sink_batch_bytes",
                "Compressed bytes per request sent by a sink.",
                BYTE_BUCKETS,
            ),
            bytes_uncompressed: metrics.counter(
                "sluice_sink_bytes_total",
                "Request body bytes, before and after compression.",
                &[("stage", "uncompressed")],
            ),
            bytes_compressed: metrics.counter(
                "sluice_sink_bytes_total",
                "Request body bytes, before and after compression.",
                &[("stage", "compressed")],
            ),
            in_flight: metrics.gauge("sluice_sink_in_flight_requests", "Requests in flight.", &[]),
            last_success_ms: AtomicU64::new(0),
            busy_since_ms: AtomicU64::new(0),
            pending_batches: AtomicUsize::new(0),
            rejecting_since_ms: AtomicU64::new(0),
            last_rejection: std::sync::Mutex::new(String::new()),
            started: Instant::now(),
        });
        let probe = Arc::downgrade(&state);
        crate::telemetry::registry().gauge_fn(
            "sluice_sink_last_success_age_seconds",
            "Seconds since a sink's last successful request (or its start).",
            &metrics.labels_with(&[]),
            move || {
                probe
                    .upgrade()
                    .map_or(0.0, |state| state.idle().as_secs_f64())
            },
        );
        state
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Time without a success while there was something to send.
    fn idle(&self) -> Duration {
        let since = self
            .last_success_ms
            .load(Ordering::Relaxed)
            .max(self.busy_since_ms.load(Ordering::Relaxed));
        Duration::from_millis(self.now_ms().saturating_sub(since))
    }

    /// Notes a request (or the retried rest of one) whose events were all rejected.
    fn rejected(&self, reason: &str) {
        if let Ok(mut last) = self.last_rejection.lock() {
            reason.clone_into(&mut last);
        }
        let now = self.now_ms().saturating_add(1);
        let _ =
            self.rejecting_since_ms
                .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// How long every request has been rejected, with the last reason; `None` once an
    /// event was delivered since.
    fn rejecting_for(&self) -> Option<(Duration, String)> {
        let since = self.rejecting_since_ms.load(Ordering::Relaxed);
        if since == 0 {
            return None;
        }
        let reason = self
            .last_rejection
            .lock()
            .map(|last| last.clone())
            .unwrap_or_default();
        let elapsed = self.now_ms().saturating_add(1).saturating_sub(since);
        Some((Duration::from_millis(elapsed), reason))
    }

    fn request_counter(&self, ctx: &SinkContext, status: &str) -> Counter {
        ctx.metrics.counter(
            "sluice_sink_requests_total",
            "Requests sent by a sink, by HTTP status or transport error.",
            &[("status", status)],
        )
    }
}

/// The tries of one request and of the follow-ups that carry its retried items.
#[derive(Clone, Copy, Debug)]
struct Tries {
    started: Instant,
    attempt: u32,
}

impl Tries {
    fn new() -> Self {
        Tries {
            started: Instant::now(),
            attempt: 0,
        }
    }
}

/// A [`Verdict::Partial`] with the request's items and the server's `Retry-After`.
struct PartialVerdict<'a> {
    items: &'a [usize],
    retry: Vec<usize>,
    retry_reason: String,
    reject: Vec<(usize, String)>,
    retry_after: Option<Duration>,
}

/// A reply read off the wire, or why there was none.
struct RawReply {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl HttpDriver {
    /// The push URL (the first one, when there are several).
    pub fn url(&self) -> &Url {
        &self.endpoints.urls[0]
    }

    /// Every endpoint URL, in the order requests rotate through them.
    pub fn urls(&self) -> &[Url] {
        &self.endpoints.urls
    }

    /// The compression in use.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The sink's `buffer:` (the pipeline puts it in front of the sink).
    pub fn buffer(&self) -> &crate::buffer::BufferSettings {
        &self.buffer
    }

    /// Runs the sink: batches input, sends it through `codec`, settles acknowledgements.
    /// Returns when the input is closed and everything was delivered or rejected; keeps
    /// retrying otherwise until the pipeline aborts it at the shutdown deadline.
    pub async fn run<C: HttpSinkCodec>(self, codec: C, mut input: SinkInput, ctx: SinkContext) {
        let driver = Arc::new(self);
        let state = State::new(&ctx);
        let health = HealthCheck::new(format!("{}/sink/{}/delivery", ctx.pipeline, ctx.id));
        health.ok();
        let mut lanes = JoinSet::new();
        let mut senders = Vec::with_capacity(driver.lanes);
        for _ in 0..driver.lanes {
            let (tx, rx) = mpsc::channel(1);
            senders.push(LaneSender {
                tx,
                idle: Arc::new(tokio::sync::Semaphore::new(1)),
            });
            lanes.spawn(lane(
                driver.clone(),
                codec.clone(),
                rx,
                ctx.clone(),
                state.clone(),
            ));
        }
        let mut watchdog = JoinSet::new();
        watchdog.spawn(watch_health(
            driver.unhealthy_after,
            state.clone(),
            health.clone(),
        ));

        let mut pending: Vec<Pending> = (0..driver.lanes).map(|_| Pending::default()).collect();
        loop {
            let deadline = pending.iter().filter_map(|p| p.deadline).min();
            tokio::select! {
                batch = input.recv() => match batch {
                    Some(batch) => driver.intake(batch, &codec, &mut pending, &senders, &ctx, &state).await,
                    None => break,
                },
                // A lane that panicked takes the sink down with it (see `supervision`),
                // rather than leaving its streams' batches dropped unsettled.
                Some(joined) = lanes.join_next() => {
                    propagate_panic(joined);
                }
                () = sleep_until(deadline), if deadline.is_some() => {
                    let now = tokio::time::Instant::now();
                    for lane in 0..pending.len() {
                        if pending[lane].deadline.is_some_and(|d| d <= now) {
                            let batch = std::mem::take(&mut pending[lane]);
                            send_to_lane(&senders[lane], batch, &state).await;
                        }
                    }
                }
            }
        }
        for (lane, batch) in pending.into_iter().enumerate() {
            if !batch.events.is_empty() {
                send_to_lane(&senders[lane], batch, &state).await;
            }
        }
        drop(senders);
        while let Some(joined) = lanes.join_next().await {
            propagate_panic(joined);
        }
        watchdog.abort_all();
        health.ok();
    }

    /// Splits one input batch over the lanes' pending batches, sending full ones.
    async fn intake<C: HttpSinkCodec>(
        &self,
        batch: Batch,
        codec: &C,
        pending: &mut [Pending],
        senders: &[LaneSender],
        ctx: &SinkContext,
        state: &State,
    ) {
        ctx.metrics.events_in.add(batch.events.len() as u64);
        let Batch { events, acks, home } = batch;
        let mut touched = vec![false; pending.len()];
        for event in events {
            if !codec.accepts(&event) {
                continue;
            }
            let lane = if pending.len() == 1 {
                0
            } else {
                (codec.partition(&event) % pending.len() as u64) as usize
            };
            let slot = &mut pending[lane];
            if slot.events.is_empty() {
                if slot.home.is_none() {
                    slot.home.clone_from(&home);
                }
                slot.deadline = Some(tokio::time::Instant::now() + self.batch_timeout);
                // Room for a full batch at once: growing by doubling copied the batch about
                // twice and faulted in fresh pages each time (perf: 4% of file → Loki).
                // Pages a small batch never fills are never touched, so cost no memory.
                slot.events
                    .reserve(self.max_events.min(MAX_RESERVED_EVENTS));
            }
            slot.bytes += event.size_hint();
            slot.events.push(event);
            touched[lane] = true;
            if slot.events.len() >= self.max_events || slot.bytes >= self.max_bytes {
                let mut full = std::mem::take(slot);
                full.acks.extend(acks.iter().cloned());
                touched[lane] = false;
                send_to_lane(&senders[lane], full, state).await;
            }
        }
        for (lane, touched) in touched.into_iter().enumerate() {
            if touched {
                pending[lane].acks.extend(acks.iter().cloned());
            }
        }
        // Every holder has its own clone now; this copy is done.
        for ack in acks {
            ack.done();
        }
    }

    /// Delivers one batch: encode, send each request until it is settled, then settle.
    /// The lane's codec lives in `slot`; it is lent to the blocking pool while it encodes.
    async fn deliver<C: HttpSinkCodec>(
        &self,
        slot: &mut Option<C>,
        batch: Pending,
        ctx: &SinkContext,
        state: &State,
    ) {
        let Pending {
            events, acks, home, ..
        } = batch;
        // A codec lost to a cancelled encode: the acks are dropped unsettled (abandoned),
        // so the events are read again after a restart.
        let Some(mut codec) = slot.take() else { return };
        // Encoding thousands of events takes milliseconds: not on a runtime thread (with
        // `threads: 1` it also reads UDP syslog).
        let encoding = tokio::task::spawn_blocking(move || {
            let encoded = codec.encode(&events);
            (codec, events, encoded)
        });
        let (codec, events, encoded) = match encoding.await {
            Ok(done) => done,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // The runtime is shutting down and drops this task with it (nothing settled).
            Err(_) => std::future::pending().await,
        };
        let codec = slot.insert(codec);
        let mut outcomes = vec![Outcome::Waiting; events.len()];
        for (index, reason) in encoded.dropped {
            if let Some(outcome) = outcomes.get_mut(index) {
                *outcome = Outcome::Dropped(reason);
            }
        }
        let mut queue: VecDeque<(EncodedRequest, Tries)> = encoded
            .requests
            .into_iter()
            .map(|request| (request, Tries::new()))
            .collect();
        while let Some((request, tries)) = queue.pop_front() {
            let (follow_ups, tries) = self
                .send(codec, &events, request, tries, &mut outcomes, ctx, state)
                .await;
            // Follow-ups carry the retried items of a partial failure: they keep their
            // parent's attempt count and start, so backoff grows and the cap applies.
            for request in follow_ups.into_iter().rev() {
                queue.push_front((request, tries));
            }
        }
        settle(&events, outcomes, acks, ctx).await;
        if let Some(home) = home {
            home.give(events);
        }
    }

    /// Sends one request until it is delivered, rejected or partly so; returns the requests
    /// that carry a partial failure's retries, and the tries they inherit.
    #[allow(clippy::too_many_arguments)]
    async fn send<C: HttpSinkCodec>(
        &self,
        codec: &mut C,
        events: &[Event],
        request: EncodedRequest,
        mut tries: Tries,
        outcomes: &mut [Outcome],
        ctx: &SinkContext,
        state: &State,
    ) -> (Vec<EncodedRequest>, Tries) {
        let EncodedRequest {
            body,
            content_type,
            headers: extra,
            items,
            path_segment,
        } = request;
        let uncompressed = body.len();
        let body = Bytes::from(self.compress(body).await);
        state.bytes_uncompressed.add(uncompressed as u64);
        state.batch_events.observe(items.len() as f64);
        state.batch_bytes.observe(body.len() as f64);
        let mut headers = self.headers.clone();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        if let Some(encoding) = codec.content_encoding(self.compression) {
            headers.insert(
                reqwest::header::CONTENT_ENCODING,
                HeaderValue::from_static(encoding),
            );
        }
        for (name, value) in extra {
            headers.insert(name, value);
        }
        loop {
            state.bytes_compressed.add(body.len() as u64);
            let limit = codec.max_reply_bytes();
            let result = self
                .attempt(
                    headers.clone(),
                    body.clone(),
                    path_segment.as_deref(),
                    limit,
                    state,
                )
                .await;
            let endpoint_failed = result.as_ref().map_or(true, |reply| reply.status >= 500);
            let mut server_said = String::new();
            let mut asked_delay = None;
            let verdict = match result {
                Ok(reply) => {
                    state.request_counter(ctx, &reply.status.to_string()).inc();
                    server_said = server_words(reply.status, &reply.body);
                    asked_delay = retry_after(&reply.headers, chrono::Utc::now());
                    let reply = Reply {
                        status: reply.status,
                        headers: &reply.headers,
                        body: &reply.body,
                        items: items.len(),
                        path_segment: path_segment.as_deref(),
                    };
                    match codec.judge_events(&reply, events, &items) {
                        Judgement::Verdict(verdict) => verdict,
                        Judgement::Refused(refusals) => {
                            self.refused(&items, refusals, &server_said, outcomes, ctx, state);
                            return (Vec::new(), tries);
                        }
                    }
                }
                Err(kind) => {
                    state.request_counter(ctx, kind).inc();
                    Verdict::Retry {
                        reason: kind.to_owned(),
                        retry_after: None,
                    }
                }
            };
            let (reason, retry_after) = match verdict {
                Verdict::Delivered => {
                    mark(outcomes, &items, Outcome::Delivered);
                    self.succeeded(state, ctx);
                    return (Vec::new(), tries);
                }
                Verdict::Reject { reason } => {
                    tracing::warn!(sink = %ctx.id, %reason, reply = %server_said, n_events = items.len(), "request rejected; events dead-lettered");
                    // The dead letters keep the server's words after the reason (the
                    // metric label is the part before the first colon).
                    let reason = match server_said.is_empty() {
                        true => reason,
                        false => format!("{reason}: {server_said}"),
                    };
                    state.rejected(&reason);
                    mark(outcomes, &items, Outcome::Rejected(reason.into()));
                    return (Vec::new(), tries);
                }
                Verdict::Partial {
                    retry,
                    retry_reason,
                    reject,
                } => {
                    let verdict = PartialVerdict {
                        items: &items,
                        retry,
                        retry_reason,
                        reject,
                        retry_after: asked_delay,
                    };
                    let follow_ups = self
                        .partial(codec, events, verdict, &mut tries, outcomes, ctx, state)
                        .await;
                    return (follow_ups, tries);
                }
                Verdict::Retry {
                    reason,
                    retry_after,
                } => (reason, retry_after),
            };
            if self.retries_exhausted(&tries) {
                tracing::error!(sink = %ctx.id, %reason, reply = %server_said, n_events = items.len(), "retries exhausted; events dead-lettered");
                let reason = match server_said.is_empty() {
                    true => format!("retry_exhausted: {reason}"),
                    false => format!("retry_exhausted: {reason}: {server_said}"),
                };
                state.rejected(&reason);
                mark(outcomes, &items, Outcome::Rejected(reason.into()));
                return (Vec::new(), tries);
            }
            // Another endpoint is up: fail over to it at once (the failed one is resting).
            let delay = if endpoint_failed && self.endpoints.failover_available() {
                Duration::ZERO
            } else {
                self.backoff(tries.attempt, retry_after, ctx.shutdown.is_triggered())
            };
            tracing::warn!(sink = %ctx.id, %reason, attempt = tries.attempt, delay_ms = delay.as_millis() as u64, "request failed; retrying");
            state.retries.inc();
            tries.attempt = tries.attempt.saturating_add(1);
            tokio::time::sleep(delay).await;
        }
    }

    /// Records a partial success and encodes the items to retry, after a backoff that grows
    /// with `tries` (or the server's `Retry-After`); once `retry.max_duration_secs` has run
    /// out since the first try, the items still failing are dead-lettered instead.
    #[allow(clippy::too_many_arguments)]
    async fn partial<C: HttpSinkCodec>(
        &self,
        codec: &mut C,
        events: &[Event],
        verdict: PartialVerdict<'_>,
        tries: &mut Tries,
        outcomes: &mut [Outcome],
        ctx: &SinkContext,
        state: &State,
    ) -> Vec<EncodedRequest> {
        let PartialVerdict {
            items,
            retry,
            retry_reason,
            reject,
            retry_after,
        } = verdict;
        mark(outcomes, items, Outcome::Delivered);
        let n_accepted = items.len().saturating_sub(retry.len() + reject.len());
        if let Some((_, reason)) = reject.first() {
            if n_accepted == 0 {
                state.rejected(reason);
            }
        }
        for (position, reason) in reject {
            if let Some(&index) = items.get(position) {
                outcomes[index] = Outcome::Rejected(reason.into());
            }
        }
        let retry_indices: Vec<usize> = retry
            .iter()
            .filter_map(|&p| items.get(p).copied())
            .collect();
        for &index in &retry_indices {
            outcomes[index] = Outcome::Waiting;
        }
        // Only a request that delivered something is a success: items answered 429 for
        // ever must not keep `/health` green.
        if n_accepted > 0 {
            self.succeeded(state, ctx);
        }
        if retry_indices.is_empty() {
            return Vec::new();
        }
        if self.retries_exhausted(tries) {
            let reason = format!("retry_exhausted: {retry_reason}");
            tracing::error!(sink = %ctx.id, %reason, n_events = retry_indices.len(), "item retries exhausted; events dead-lettered");
            state.rejected(&reason);
            let reason: Arc<str> = reason.into();
            for &index in &retry_indices {
                outcomes[index] = Outcome::Rejected(reason.clone());
            }
            return Vec::new();
        }
        state.retries.inc();
        let delay = self.backoff(tries.attempt, retry_after, ctx.shutdown.is_triggered());
        tracing::warn!(sink = %ctx.id, reason = %retry_reason, n_events = retry_indices.len(), attempt = tries.attempt, delay_ms = delay.as_millis() as u64, "items failed; retrying them");
        tries.attempt = tries.attempt.saturating_add(1);
        tokio::time::sleep(delay).await;
        let subset: Vec<Event> = retry_indices.iter().map(|&i| events[i].clone()).collect();
        let encoded = codec.encode(&subset);
        for (position, reason) in encoded.dropped {
            if let Some(&index) = retry_indices.get(position) {
                outcomes[index] = Outcome::Dropped(reason);
            }
        }
        encoded
            .requests
            .into_iter()
            .map(|mut request| {
                request.items = request
                    .items
                    .iter()
                    .filter_map(|&p| retry_indices.get(p).copied())
                    .collect();
                request
            })
            .collect()
    }

    /// Records a reply that stored every entry but the refused ones.
    fn refused(
        &self,
        items: &[usize],
        refusals: Refusals,
        server_said: &str,
        outcomes: &mut [Outcome],
        ctx: &SinkContext,
        state: &State,
    ) {
        mark(outcomes, items, Outcome::Delivered);
        let n_named = refusals.named.len();
        for (position, reason) in refusals.named {
            if let Some(&index) = items.get(position) {
                outcomes[index] = Outcome::Rejected(reason.into());
            }
        }
        let mut n_unnamed = 0;
        for group in refusals.unnamed {
            n_unnamed += group.refused;
            let share = Arc::new(Unconfirmed {
                refused: group.refused.min(group.positions.len()),
                reason: group.reason.into(),
            });
            for position in group.positions {
                if let Some(&index) = items.get(position) {
                    outcomes[index] = Outcome::Unconfirmed(share.clone());
                }
            }
        }
        tracing::warn!(sink = %ctx.id, reply = %server_said, n_events = items.len(), n_refused = n_named, n_refused_unnamed = n_unnamed, "server stored a request except refused entries; those dead-lettered");
        self.succeeded(state, ctx);
    }

    /// Compresses a body on the blocking pool, not on the runtime's threads: gzip of a 1 MiB
    /// batch takes milliseconds, and with `threads: 1` the one runtime thread also reads
    /// the UDP sockets, whose datagrams would be dropped meanwhile.
    async fn compress(&self, body: Vec<u8>) -> Vec<u8> {
        let (compression, level) = (self.compression, self.level);
        if compression == Compression::None {
            return body;
        }
        match tokio::task::spawn_blocking(move || compression.compress(body, level)).await {
            Ok(compressed) => compressed,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // The runtime is shutting down and drops this task with it (nothing settled).
            Err(_) => std::future::pending().await,
        }
    }

    /// True once `retry.max_duration_secs` has passed since the request's first try.
    fn retries_exhausted(&self, tries: &Tries) -> bool {
        self.max_retry_duration
            .is_some_and(|cap| tries.started.elapsed() >= cap)
    }

    fn succeeded(&self, state: &State, ctx: &SinkContext) {
        state
            .last_success_ms
            .store(state.now_ms(), Ordering::Relaxed);
        state.rejecting_since_ms.store(0, Ordering::Relaxed);
        ctx.progress.mark();
    }

    /// Full-jitter exponential backoff, or the server's `Retry-After`. At shutdown the wait
    /// is cut to a second so the last tries fit in the deadline.
    pub(super) fn backoff(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        stopping: bool,
    ) -> Duration {
        if let Some(delay) = retry_after {
            return delay;
        }
        let ceiling = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        let ceiling = if stopping {
            ceiling.min(Duration::from_secs(1))
        } else {
            ceiling
        };
        let jittered = fastrand::u64(0..=ceiling.as_millis() as u64);
        Duration::from_millis(jittered.max(1))
    }

    /// One HTTP exchange; transport failures are named for the metrics.
    async fn attempt(
        &self,
        headers: HeaderMap,
        body: Bytes,
        path_segment: Option<&str>,
        max_reply_bytes: usize,
        state: &State,
    ) -> Result<RawReply, &'static str> {
        state.in_flight.add(1);
        let endpoint = self.endpoints.pick();
        let mut url = self.endpoints.urls[endpoint].clone();
        if let Some(segment) = path_segment {
            let path = url.path().to_owned();
            let (head, last) = path.rsplit_once('/').unwrap_or(("", &path));
            url.set_path(&format!("{head}/{segment}/{last}"));
        }
        let exchange = async {
            let mut response = self
                .client
                .post(url)
                .headers(headers)
                .timeout(self.request_timeout)
                .body(body)
                .send()
                .await
                .map_err(classify)?;
            let status = response.status().as_u16();
            let headers = std::mem::take(response.headers_mut());
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(classify)? {
                let room = max_reply_bytes.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= max_reply_bytes {
                    break;
                }
            }
            Ok(RawReply {
                status,
                headers,
                body,
            })
        };
        let result =
            match tokio::time::timeout(self.request_timeout + Duration::from_secs(1), exchange)
                .await
            {
                Ok(result) => result,
                Err(_) => Err("timeout"),
            };
        state.in_flight.add(-1);
        match &result {
            Ok(reply) if reply.status < 500 => self.endpoints.succeeded(endpoint),
            _ => self.endpoints.failed(endpoint),
        }
        result
    }
}

/// The endpoints of a driver, used in turn; a failing one rests before it is tried again.
#[derive(Debug)]
pub(super) struct Endpoints {
    urls: Vec<Url>,
    /// Round-robin cursor.
    next: AtomicUsize,
    /// Per endpoint: (milliseconds since `epoch` until which it rests, consecutive failures).
    resting: Vec<(AtomicU64, AtomicU64)>,
    epoch: Instant,
}

/// How long a failed endpoint rests at first; doubles per consecutive failure.
const ENDPOINT_REST_MS: u64 = 1_000;
/// The longest rest.
const ENDPOINT_MAX_REST_MS: u64 = 30_000;

impl Endpoints {
    pub(super) fn new(urls: Vec<Url>) -> Self {
        let resting = urls
            .iter()
            .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
            .collect();
        Endpoints {
            urls,
            next: AtomicUsize::new(0),
            resting,
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The next endpoint in turn that is not resting (or simply the next, if all rest).
    fn pick(&self) -> usize {
        let n = self.urls.len();
        if n == 1 {
            return 0;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| self.resting[i].0.load(Ordering::Relaxed) <= now)
            .unwrap_or(start % n)
    }

    fn succeeded(&self, endpoint: usize) {
        if self.urls.len() > 1 {
            self.resting[endpoint].1.store(0, Ordering::Relaxed);
        }
    }

    fn failed(&self, endpoint: usize) {
        if self.urls.len() == 1 {
            return;
        }
        let (until, failures) = &self.resting[endpoint];
        let n = failures.fetch_add(1, Ordering::Relaxed).min(5);
        let rest = (ENDPOINT_REST_MS << n).min(ENDPOINT_MAX_REST_MS);
        until.store(self.now_ms() + rest, Ordering::Relaxed);
    }

    /// True when some endpoint is not resting (a retry can go there without waiting).
    fn failover_available(&self) -> bool {
        let now = self.now_ms();
        self.urls.len() > 1
            && self
                .resting
                .iter()
                .any(|(until, _)| until.load(Ordering::Relaxed) <= now)
    }
}

fn classify(error: reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect_error"
    } else {
        "transport_error"
    }
}

fn mark(outcomes: &mut [Outcome], items: &[usize], outcome: Outcome) {
    for &index in items {
        if let Some(slot) = outcomes.get_mut(index) {
            *slot = outcome.clone();
        }
    }
}

/// The server's answer in one line for logs and dead letters: its status and the start of
/// its body (at most 300 characters, control characters as spaces).
fn server_words(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(1200)]);
    let excerpt: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    format!("{status} {}", excerpt.trim()).trim_end().to_owned()
}

/// Counts, dead-letters and acknowledges a finished batch: the acknowledgements wait until
/// the rejected events are on disk.
async fn settle(events: &[Event], outcomes: Vec<Outcome>, acks: Vec<AckRef>, ctx: &SinkContext) {
    let mut delivered = 0u64;
    let mut rejected: BTreeMap<Arc<str>, Vec<Event>> = BTreeMap::new();
    let mut dropped: BTreeMap<&'static str, u64> = BTreeMap::new();
    // Keyed by the group's address: each group is counted once, by its own numbers.
    let mut unconfirmed: BTreeMap<usize, (Arc<Unconfirmed>, Vec<Event>)> = BTreeMap::new();
    for (event, outcome) in events.iter().zip(outcomes) {
        match outcome {
            Outcome::Delivered => delivered += 1,
            Outcome::Unconfirmed(group) => {
                let key = Arc::as_ptr(&group) as usize;
                unconfirmed
                    .entry(key)
                    .or_insert_with(|| (group, Vec::new()))
                    .1
                    .push(event.clone());
            }
            Outcome::Rejected(reason) => rejected.entry(reason).or_default().push(event.clone()),
            Outcome::Dropped(reason) => *dropped.entry(reason).or_default() += 1,
            // A codec that forgot an event: count it rather than hide it.
            Outcome::Waiting => *dropped.entry("not_encoded").or_default() += 1,
        }
    }
    let mut to_write: Vec<(Arc<str>, Vec<Event>)> = Vec::new();
    // Of an unconfirmed group, exactly `refused` are counted as dropped and the rest as
    // delivered; all of them go to the dead-letter file, under a reason that says so.
    for (group, events) in unconfirmed.into_values() {
        let refused = group.refused.min(events.len());
        delivered += (events.len() - refused) as u64;
        let label = group.reason.split(':').next().unwrap_or(&group.reason);
        ctx.metrics.dropped(label).add(refused as u64);
        to_write.push((group.reason.clone(), events));
    }
    ctx.metrics.events_out.add(delivered);
    for (reason, n) in dropped {
        ctx.metrics.dropped(reason).add(n);
    }
    for (reason, events) in &rejected {
        // A reason may carry the server's free text after a colon (Elasticsearch item
        // errors): the dead-letter file keeps it all, the metric label only the kind.
        let label = reason.split(':').next().unwrap_or(reason);
        ctx.metrics.dropped(label).add(events.len() as u64);
    }
    to_write.extend(rejected);
    if !to_write.is_empty()
        && !ctx
            .dead_letters
            .write(&ctx.pipeline, &ctx.id, to_write)
            .await
    {
        // Not on disk: leave the batch unacknowledged (abandoned), so it is read again.
        return;
    }
    ctx.progress.mark();
    for ack in acks {
        ack.done();
    }
}

/// The way into one lane. A batch is handed over only when the lane is idle (it holds
/// `idle`'s one permit while it delivers), so a lane holds at most two batches: the one
/// being filled and the one being delivered. A queue slot between them would hold a third
/// (5,000 events, about 2 MiB, for Loki's defaults) without sending any sooner.
struct LaneSender {
    tx: mpsc::Sender<(Pending, tokio::sync::OwnedSemaphorePermit)>,
    idle: Arc<tokio::sync::Semaphore>,
}

async fn send_to_lane(sender: &LaneSender, mut batch: Pending, state: &State) {
    batch.deadline = None;
    if state.pending_batches.fetch_add(1, Ordering::Relaxed) == 0 {
        state.busy_since_ms.store(state.now_ms(), Ordering::Relaxed);
    }
    // A closed lane means it crashed: the batch's acks are dropped unsettled (abandoned),
    // so its events are read again after a restart.
    let Ok(permit) = sender.idle.clone().acquire_owned().await else {
        state.pending_batches.fetch_sub(1, Ordering::Relaxed);
        return;
    };
    if sender.tx.send((batch, permit)).await.is_err() {
        state.pending_batches.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn lane<C: HttpSinkCodec>(
    driver: Arc<HttpDriver>,
    codec: C,
    mut rx: mpsc::Receiver<(Pending, tokio::sync::OwnedSemaphorePermit)>,
    ctx: SinkContext,
    state: Arc<State>,
) {
    let mut codec = Some(codec);
    while let Some((batch, _idle)) = rx.recv().await {
        driver.deliver(&mut codec, batch, &ctx, &state).await;
        state.pending_batches.fetch_sub(1, Ordering::Relaxed);
        // `_idle` is released here: the next batch may come in.
    }
}

/// Fails `/health` while data waits and nothing succeeded for `unhealthy_after`.
async fn watch_health(unhealthy_after: Duration, state: Arc<State>, health: HealthCheck) {
    let mut interval = tokio::time::interval(Duration::from_millis(250));
    let mut failing = false;
    loop {
        interval.tick().await;
        let idle = state.idle();
        let busy = state.pending_batches.load(Ordering::Relaxed) > 0;
        if let Some((rejecting, reason)) = state
            .rejecting_for()
            .filter(|(rejecting, _)| *rejecting >= unhealthy_after)
        {
            if !failing {
                tracing::warn!(rejecting_secs = rejecting.as_secs(), %reason, "sink has had every request rejected for too long");
            }
            failing = true;
            health.fail(format!(
                "every request rejected for {}s; last: {reason}",
                rejecting.as_secs()
            ));
        } else if busy && idle >= unhealthy_after {
            if !failing {
                tracing::warn!(
                    idle_secs = idle.as_secs(),
                    "sink has not delivered for too long"
                );
            }
            failing = true;
            health.fail(format!("no successful request for {}s", idle.as_secs()));
        } else if failing {
            failing = false;
            health.ok();
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
