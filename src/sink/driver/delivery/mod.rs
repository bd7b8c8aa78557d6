//! The driver at run time. This file: the driver's settings, the intake that fills
//! per-lane batches from the sink's queue, the lanes (one request in flight each), and
//! delivering one batch. The rest, one job per file: `send.rs` (one request: encode,
//! compress, post, judge the reply, retry with backoff, partial and refused items),
//! `endpoints.rs` (failover between endpoints), `settle.rs` (counting, dead letters and
//! acknowledgements of a finished batch), `state.rs` (delivery metrics and `/health`).

mod endpoints;
mod partial;
mod send;
mod settle;
mod state;

pub(super) use endpoints::Endpoints;
use send::Tries;
use settle::settle;
use state::{watch_health, State};

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
use crate::telemetry::{
    Counter, Gauge, Histogram, LabelledCounter, BYTE_BUCKETS, EVENT_COUNT_BUCKETS,
};

// ---------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------

/// Batches of at most this many events are encoded on the runtime thread that holds them,
/// not on the blocking pool: about a millisecond (remote write, the costliest codec, takes
/// ~2 µs a counter or gauge and ~7 µs a 13-series histogram: `cargo bench --bench
/// remote_write`; 4 ms for 512 histograms). A host's metrics with the agent's own (~400
/// events) are one such batch.
const INLINE_ENCODE_EVENTS: usize = 512;

/// Whether a body of `len` bytes is compressed on the runtime thread, not on the blocking
/// pool: about 100 µs of work at most (snappy runs at ~1 GB/s, gzip at the default level
/// at ~200 MB/s on the development machine: `cargo bench --bench elasticsearch`).
fn inline_compression(compression: Compression, len: usize) -> bool {
    match compression {
        Compression::None => true,
        Compression::Snappy => len <= 64 * 1024,
        Compression::Gzip => len <= 16 * 1024,
    }
}

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
    /// Holds events a client waits for ([`AckRef::is_watched`]): sent as soon as no more
    /// input is queued, not at the deadline.
    waited_for: bool,
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

    /// The compression level in use (gzip's 0..=9).
    pub fn compression_level(&self) -> u32 {
        self.level
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
                    Some(batch) => {
                        driver.intake(batch, &codec, &mut pending, &senders, &ctx, &state).await;
                        // Nothing more queued: what a client waits for goes now (more queued:
                        // it fills the batch first, as the next input is there already).
                        if input.is_empty() {
                            for lane in 0..pending.len() {
                                if pending[lane].waited_for {
                                    let batch = std::mem::take(&mut pending[lane]);
                                    send_to_lane(&senders[lane], batch, &state).await;
                                }
                            }
                        }
                    }
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
        // A client waits for this batch (an OTLP exporter, whose next export waits for the
        // reply): the batch timeout held each export a second and made an SDK at its
        // defaults drop what it could not queue meanwhile (`run` sends such lanes at once).
        let waited_for = acks.iter().any(AckRef::is_watched);
        for (lane, touched) in touched.into_iter().enumerate() {
            if touched {
                pending[lane].acks.extend(acks.iter().cloned());
                pending[lane].waited_for |= waited_for;
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
        // `threads: 1` it also reads UDP syslog). A small batch (a metrics source's
        // collection, a quiet log's few lines) takes microseconds: handing it to the
        // blocking pool would cost more, and start a pool thread whose allocator pages stay
        // resident (docs/decisions.md, "Metrics collection costs").
        let encoding = if events.len() <= INLINE_ENCODE_EVENTS {
            let encoded = codec.encode(&events);
            Ok((codec, events, encoded))
        } else {
            tokio::task::spawn_blocking(move || {
                let encoded = codec.encode(&events);
                (codec, events, encoded)
            })
            .await
        };
        let (codec, events, encoded) = match encoding {
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
        let undelivered = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Outcome::Waiting))
            .count();
        if undelivered > 0 && self.leaves_to_buffer(ctx) {
            // Not settled: the acknowledgements are dropped (abandoned), so the disk buffer
            // keeps the whole batch and sends it again when the pipeline next runs.
            tracing::info!(sink = %ctx.id, n_events = undelivered, "stopping: undelivered events stay in the disk buffer");
            return;
        }
        settle(&events, outcomes, acks, ctx).await;
        if let Some(home) = home {
            home.give(events);
        }
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

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
