//! Running pipelines: the channels between stages, the transform workers, the sink tasks,
//! and the stop sequence.
//!
//! ```text
//! sources ──BatchSender (partitioned by stream key)──▶ flume queue per worker
//!   ──▶ worker thread: transforms in order ──▶ tokio queue per sink ──▶ sink task
//! ```
//!
//! The seam between threads and async is here, in one place: workers are OS threads that
//! `blocking_send` into each sink's bounded tokio queue. Every queue is bounded (in batches),
//! so memory is bounded by configuration and a full queue blocks the stage before it.
//!
//! Stop sequence: fire the pipeline's shutdown signal (sources stop reading), wait for the
//! sources, let the workers drain their queues and flush stateful transforms, let the sinks
//! drain theirs; whatever is still running at the deadline is aborted. Unsettled batches are
//! then simply not committed: replayable sources (file, demo) read them again on the next
//! start, the others' (syslog, stdin, internal_metrics) are lost, and the log says which.
//!
//! A start that fails part-way is rolled back (what started is stopped). A component that
//! panics is reported to the [`Supervisor`], which makes the agent stop (see
//! [`crate::supervision`]).
//!
//! Owns: wiring and lifecycle. Never: looks inside events.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use flume::{Receiver, RecvTimeoutError, Sender};
use tokio::sync::{mpsc, Notify};

use crate::batch::Batch;
use crate::buffer::{self, SinkSender, SinkSide};
use crate::checkpoint::Checkpoints;
use crate::config::{Built, BuiltPipeline};
use crate::dead_letter::DeadLetters;
use crate::event::Event;
use crate::health::{self, HealthCheck, Progress};
use crate::route::{self, Route};
use crate::shutdown::Shutdown;
use crate::sink::{Sink, SinkContext, SinkInput};
use crate::source::{BatchSender, Source, SourceContext};
use crate::supervision::{PanicGuard, Supervisor};
use crate::tap::{self, Point, TapPoints};
use crate::telemetry::{registry, ComponentMetrics, Gauge};
use crate::transform::Transform;

/// How often workers call [`Transform::tick`] and check for the end of input.
const TICK: Duration = Duration::from_millis(100);

/// What every pipeline shares.
#[derive(Clone)]
pub struct Shared {
    /// Checkpoint registry.
    pub checkpoints: Checkpoints,
    /// Dead-letter file.
    pub dead_letters: DeadLetters,
    /// Transform workers per pipeline.
    pub workers: usize,
    /// Sink stall threshold for `/health`.
    pub stall_after: Duration,
    /// Fires when every source of every pipeline has ended.
    pub sources_finished: Arc<Notify>,
    /// Sources still running, across pipelines.
    pub sources_running: Arc<AtomicUsize>,
    /// Where components report a panic (the agent then stops, see [`crate::supervision`]).
    pub supervisor: Supervisor,
}

/// A started pipeline.
pub struct RunningPipeline {
    name: String,
    shutdown: Shutdown,
    input_closed: Shutdown,
    sources: Vec<tokio::task::JoinHandle<()>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    sinks: Vec<tokio::task::JoinHandle<()>>,
    watchdog: Option<tokio::task::JoinHandle<()>>,
    /// Ids of sources whose positions are checkpointed (read again after a restart).
    replayable: Vec<String>,
    /// Ids of sources whose in-flight events are lost if the sinks do not drain.
    not_replayable: Vec<String>,
    /// Per sink: its id and whether it has a disk buffer.
    sink_ids: Vec<(String, bool)>,
    /// Where `GET /tap` sees events (registered while the pipeline runs).
    tap: TapPoints,
}

/// Why a pipeline stops: changes only what its log says about undelivered data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The agent is stopping.
    Shutdown,
    /// A reload replaces the pipeline (or undoes a failed start).
    Reload,
    /// A reload removes the pipeline.
    Removed,
}

/// Aborts a task when dropped (so an aborted supervisor takes its child down with it).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Each sink's health entry and progress stamp, for the stall watchdog.
type SinkProgress = Vec<(HealthCheck, Progress)>;

/// A sink as the workers see it: its queue or disk buffer, and its `condition:`.
struct SinkOutput {
    sender: SinkSender,
    /// Only the events the route takes are sent to the sink.
    route: Option<Route>,
}

/// `id (type), …` for the start-up log line.
fn describe<T>(list: &[Built<T>], type_name: impl Fn(&T) -> &'static str) -> String {
    let parts: Vec<String> = list
        .iter()
        .map(|built| format!("{} ({})", built.id, type_name(&built.component)))
        .collect();
    parts.join(", ")
}

/// The component ids of `pipeline`, for taps.
fn components(pipeline: &BuiltPipeline) -> tap::Components {
    fn ids<T>(list: &[Built<T>]) -> Vec<String> {
        list.iter().map(|built| built.id.clone()).collect()
    }
    tap::Components {
        sources: ids(&pipeline.sources),
        transforms: ids(&pipeline.transforms),
        sinks: ids(&pipeline.sinks),
    }
}

/// Starts `pipeline`: sinks first, then workers, then sources. Must run inside the tokio
/// runtime. A start that fails part-way (a port in use, no thread) is rolled back: what was
/// started is stopped within `deadline` before the error is returned.
pub async fn start(
    pipeline: BuiltPipeline,
    shared: &Shared,
    deadline: Duration,
) -> anyhow::Result<RunningPipeline> {
    let mut running = RunningPipeline {
        name: pipeline.name.clone(),
        shutdown: Shutdown::new(),
        input_closed: Shutdown::new(),
        sources: Vec::new(),
        workers: Vec::new(),
        sinks: Vec::new(),
        watchdog: None,
        replayable: Vec::new(),
        not_replayable: Vec::new(),
        sink_ids: Vec::new(),
        tap: TapPoints::register(&pipeline.name, components(&pipeline)),
    };
    let (sources, transforms, sinks) = (
        describe(&pipeline.sources, Source::type_name),
        describe(&pipeline.transforms, Transform::type_name),
        describe(&pipeline.sinks, Sink::type_name),
    );
    match running.start_parts(pipeline, shared) {
        Ok(()) => {
            tracing::info!(
                pipeline = %running.name, workers = running.workers.len(), sources, transforms,
                sinks, "pipeline started"
            );
            Ok(running)
        }
        Err(error) => {
            tracing::warn!(pipeline = %running.name, error = %format!("{error:#}"), "pipeline failed to start: stopping what was started");
            running.stop(deadline, StopReason::Reload).await;
            Err(error)
        }
    }
}

impl RunningPipeline {
    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn start_parts(&mut self, pipeline: BuiltPipeline, shared: &Shared) -> anyhow::Result<()> {
        let capacity = pipeline.queue_batches;
        let (sink_senders, progresses) =
            self.start_sinks(pipeline.sinks, pipeline.routes, capacity, shared)?;
        let partitions = self.start_workers(
            &pipeline.transforms,
            Arc::new(sink_senders),
            capacity,
            shared,
        )?;
        let supervisor = shared.supervisor.clone();
        let stall_after = shared.stall_after;
        self.watchdog = Some(tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            loop {
                interval.tick().await;
                // Once a component panicked the agent is stopping: keep its /health failure.
                if supervisor.failure().is_some() {
                    return;
                }
                for (health, progress) in &progresses {
                    progress.check(health, stall_after);
                }
            }
        }));
        self.start_sources(pipeline.sources, partitions, shared)
    }

    fn start_sinks(
        &mut self,
        built_sinks: Vec<Built<Sink>>,
        mut routes: BTreeMap<String, Route>,
        capacity: usize,
        shared: &Shared,
    ) -> anyhow::Result<(Vec<SinkOutput>, SinkProgress)> {
        let name = self.name.clone();
        let mut sink_senders = Vec::new();
        let mut progresses = Vec::new();
        for built in built_sinks {
            let route = routes.remove(&built.id);
            let (tx, rx) = mpsc::channel(capacity);
            let queued = registry().gauge(
                "sluice_queue_batches",
                "Batches waiting in a queue.",
                &[
                    ("pipeline", &name),
                    ("queue", &format!("sink:{}", built.id)),
                ],
            );
            queued.set(0);
            let progress = Progress::new(queued.clone());
            let health = HealthCheck::new(format!("{name}/sink/{}", built.id));
            health.ok();
            let ctx = SinkContext {
                pipeline: name.as_str().into(),
                id: built.id.as_str().into(),
                metrics: ComponentMetrics::new(&name, "sink", &built.id),
                dead_letters: shared.dead_letters.clone(),
                health: health.clone(),
                progress: progress.clone(),
                shutdown: self.shutdown.clone(),
            };
            // The sink's buffer: its queue, or a disk buffer that feeds the queue.
            let buffer_dir = (shared.checkpoints.data_dir())
                .map(|data_dir| buffer::directory(data_dir, &name, &built.id));
            let (sender, guard) = buffer::attach(
                &built.component.buffer(),
                buffer_dir,
                SinkSide {
                    tx,
                    queued,
                    metrics: ctx.metrics.clone(),
                    health_key: format!("{name}/sink/{}", built.id),
                    shutdown: self.shutdown.clone(),
                },
            )
            .with_context(|| format!("pipeline {name}: sink {}", built.id))?;
            self.sink_ids.push((built.id.clone(), guard.is_disk()));
            progresses.push((health, progress.clone()));
            let input = SinkInput::new(rx, progress);
            let (sink, sink_id) = (built.component, built.id);
            let (supervisor, pipeline) = (shared.supervisor.clone(), name.clone());
            self.sinks.push(tokio::spawn(async move {
                let task = tokio::spawn(sink.run(input, ctx));
                // Aborting this outer task at the deadline must also stop the sink itself.
                let _abort_sink = AbortOnDrop(task.abort_handle());
                if let Err(error) = task.await {
                    if error.is_panic() {
                        supervisor.panicked(&pipeline, "sink", &sink_id);
                    }
                }
                // The sink's last acknowledgements are in: the buffer saves its position.
                guard.finish().await;
            }));
            sink_senders.push(SinkOutput { sender, route });
        }
        Ok((sink_senders, progresses))
    }

    fn start_workers(
        &mut self,
        transforms: &[Built<Transform>],
        sinks: Arc<Vec<SinkOutput>>,
        capacity: usize,
        shared: &Shared,
    ) -> anyhow::Result<Vec<(Sender<Batch>, Gauge)>> {
        let name = &self.name;
        let mut partitions = Vec::new();
        for index in 0..shared.workers.max(1) {
            let (tx, rx) = flume::bounded(capacity);
            let depth = registry().gauge(
                "sluice_queue_batches",
                "Batches waiting in a queue.",
                &[("pipeline", name), ("queue", &format!("worker:{index}"))],
            );
            depth.set(0);
            partitions.push((tx, depth.clone()));
            let worker = Worker {
                _panic_guard: shared
                    .supervisor
                    .guard(name, "worker", &format!("worker-{index}")),
                input: rx,
                depth,
                transforms: transforms
                    .iter()
                    .map(|t| {
                        (
                            t.component.clone(),
                            ComponentMetrics::new(name, "transform", &t.id),
                        )
                    })
                    .collect(),
                sinks: sinks.clone(),
                input_closed: self.input_closed.clone(),
                tap: self.tap.clone(),
            };
            self.workers.push(
                std::thread::Builder::new()
                    .name(format!("worker-{name}-{index}"))
                    .spawn(move || worker.run())?,
            );
        }
        Ok(partitions)
    }

    fn start_sources(
        &mut self,
        built_sources: Vec<Built<Source>>,
        partitions: Vec<(Sender<Batch>, Gauge)>,
        shared: &Shared,
    ) -> anyhow::Result<()> {
        let name = self.name.clone();
        let runtime = tokio::runtime::Handle::current();
        for built in built_sources {
            if built.component.replayable() {
                self.replayable.push(built.id.clone());
            } else {
                self.not_replayable.push(built.id.clone());
            }
            let metrics = ComponentMetrics::new(&name, "source", &built.id);
            let ctx = SourceContext {
                pipeline: name.as_str().into(),
                id: built.id.as_str().into(),
                out: BatchSender::new(partitions.clone(), self.shutdown.clone(), metrics.clone()),
                shutdown: self.shutdown.clone(),
                checkpoints: shared.checkpoints.clone(),
                metrics,
                runtime: runtime.clone(),
            };
            let running = built
                .component
                .start(ctx)
                .with_context(|| format!("pipeline {name}: source {} did not start", built.id))?;
            shared.sources_running.fetch_add(1, Ordering::SeqCst);
            let (counter, finished) = (
                shared.sources_running.clone(),
                shared.sources_finished.clone(),
            );
            let (supervisor, pipeline, id) = (shared.supervisor.clone(), name.clone(), built.id);
            self.sources.push(runtime.spawn(async move {
                if running.join().await {
                    supervisor.panicked(&pipeline, "source", &id);
                }
                if counter.fetch_sub(1, Ordering::SeqCst) == 1 {
                    finished.notify_one();
                }
            }));
        }
        Ok(())
    }

    /// Stops the pipeline: sources first, then drain workers and sinks, all within `deadline`.
    pub async fn stop(self, deadline: Duration, why: StopReason) {
        let until = Instant::now() + deadline;
        self.shutdown.trigger();
        for source in self.sources {
            let _ = tokio::time::timeout_at(until.into(), source).await;
        }
        // Sources are gone (or stuck in a blocking read): let workers finish what is queued.
        self.input_closed.trigger();
        let workers = self.workers;
        let joined = tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
        });
        let _ = tokio::time::timeout_at(until.into(), joined).await;
        let mut aborted = Vec::new();
        for (sink, id) in self.sinks.into_iter().zip(&self.sink_ids) {
            let abort = sink.abort_handle();
            if tokio::time::timeout_at(until.into(), sink).await.is_err() {
                abort.abort();
                aborted.push(id.clone());
            }
        }
        if let Some(watchdog) = self.watchdog {
            watchdog.abort();
        }
        health::clear_prefix(&format!("{}/", self.name));
        log_undrained(
            &self.name,
            &self.sink_ids,
            &aborted,
            (&self.replayable, &self.not_replayable),
            why,
        );
        tracing::info!(pipeline = %self.name, "pipeline stopped");
    }
}

/// Says truthfully what becomes of the data the sinks did not deliver: a disk buffer keeps
/// it (sent when the pipeline runs again); for a memory-buffered sink aborted at the
/// deadline, replayable sources read it again from their checkpoints and the others'
/// in-flight events are lost (ERROR).
fn log_undrained(
    pipeline: &str,
    sinks: &[(String, bool)],
    aborted: &[(String, bool)],
    (replayable, not_replayable): (&Vec<String>, &Vec<String>),
    why: StopReason,
) {
    let when = match why {
        StopReason::Shutdown => "on the next start",
        StopReason::Reload => "on the reloaded pipeline",
        StopReason::Removed => "when a config with this pipeline runs again",
    };
    let names = |list: &[(String, bool)], disk: bool| -> Vec<String> {
        list.iter()
            .filter(|(_, d)| *d == disk)
            .map(|(id, _)| id.clone())
            .collect()
    };
    let on_disk = names(sinks, true);
    if !on_disk.is_empty() {
        tracing::info!(
            pipeline = %pipeline,
            "sinks {} keep every event they have not delivered in their disk buffers (from every source, syslog included): it is sent {when}",
            on_disk.join(", ")
        );
    }
    let in_memory = names(aborted, false);
    if in_memory.is_empty() {
        return;
    }
    let mut message = format!(
        "sinks {} did not drain before the shutdown deadline",
        in_memory.join(", ")
    );
    if !replayable.is_empty() {
        message.push_str(&format!(
            "; sources {} re-read their undelivered data from their checkpoints {when}",
            replayable.join(", ")
        ));
    }
    if not_replayable.is_empty() {
        tracing::warn!(pipeline = %pipeline, "{message}");
        return;
    }
    message.push_str(&format!(
        "; sources {} cannot be read again: their events these sinks had not delivered are lost (give the sinks `buffer: {{ type: disk }}` to keep them)",
        not_replayable.join(", ")
    ));
    tracing::error!(pipeline = %pipeline, "{message}");
}

struct Worker {
    /// First field, so a panic is reported before the rest of the worker is dropped.
    _panic_guard: PanicGuard,
    input: Receiver<Batch>,
    depth: Gauge,
    transforms: Vec<(Transform, ComponentMetrics)>,
    sinks: Arc<Vec<SinkOutput>>,
    input_closed: Shutdown,
    tap: TapPoints,
}

impl Worker {
    fn run(mut self) {
        let mut last_tick = Instant::now();
        loop {
            match self.input.recv_timeout(TICK) {
                Ok(batch) => {
                    self.depth.add(-1);
                    let Batch { events, acks, home } = batch;
                    self.tap.observe(Point::Input, &events);
                    let events = self.apply(0, events);
                    self.forward(Batch { events, acks, home });
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.input_closed.is_triggered() && self.input.is_empty() {
                        break;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                self.tick(last_tick);
            }
        }
        self.flush();
    }

    /// Runs `events` through transforms `from..`.
    fn apply(&mut self, from: usize, mut events: Vec<Event>) -> Vec<Event> {
        for (index, (transform, metrics)) in self.transforms.iter_mut().enumerate().skip(from) {
            metrics.events_in.add(events.len() as u64);
            let mut out = Vec::with_capacity(events.len());
            transform.process(events, &mut out);
            metrics.events_out.add(out.len() as u64);
            self.tap.observe(Point::Transform(index), &out);
            events = out;
        }
        events
    }

    fn tick(&mut self, now: Instant) {
        for index in 0..self.transforms.len() {
            let mut emitted = Vec::new();
            self.transforms[index].0.tick(now, &mut emitted);
            if !emitted.is_empty() {
                self.tap.observe(Point::Transform(index), &emitted);
                let events = self.apply(index + 1, emitted);
                self.forward(Batch::new(events));
            }
        }
    }

    fn flush(&mut self) {
        for index in 0..self.transforms.len() {
            let mut emitted = Vec::new();
            self.transforms[index].0.flush(&mut emitted);
            if !emitted.is_empty() {
                self.tap.observe(Point::Transform(index), &emitted);
                let events = self.apply(index + 1, emitted);
                self.forward(Batch::new(events));
            }
        }
    }

    /// Sends `batch` to every sink (a routed sink gets the events its condition takes); a
    /// batch or copy with no events is settled here (dropped and sampled events, and events
    /// a sink's condition refuses, count as done for it).
    fn forward(&self, batch: Batch) {
        if batch.events.is_empty() {
            batch.settle();
            return;
        }
        let last = self.sinks.len().saturating_sub(1);
        let mut batch = Some(batch);
        for (index, sink) in self.sinks.iter().enumerate() {
            let Some(copy) = route::copy_for(sink.route.as_ref(), &mut batch, index == last) else {
                return;
            };
            if copy.events.is_empty() {
                copy.settle();
                continue;
            }
            self.tap.observe(Point::Sink(index), &copy.events);
            // To the sink's queue or its disk buffer; waits while it is full (`block`).
            sink.sender.send(copy);
        }
    }
}
