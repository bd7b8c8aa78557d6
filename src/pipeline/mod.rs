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
//! Owns: wiring and lifecycle: the pipeline's parts and its start (here), the sinks' queues
//! and tasks (`sinks.rs`), the transform workers (`worker.rs`), the sources (`sources.rs`)
//! and the stop sequence (`stop.rs`). Never: looks inside events.

mod sinks;
mod sources;
mod stop;
mod worker;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::checkpoint::Checkpoints;
use crate::config::{Built, BuiltPipeline};
use crate::dead_letter::DeadLetters;
use crate::shutdown::Shutdown;
use crate::sink::Sink;
use crate::source::Source;
use crate::supervision::Supervisor;
use crate::tap::{self, TapPoints};
use crate::transform::Transform;

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
    if let Some(warning) = pipeline.unsent_warning() {
        tracing::warn!("{warning}");
    }
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

    /// Ids of the sinks that have a disk buffer.
    pub fn disk_buffered_sinks(&self) -> impl Iterator<Item = &str> {
        self.sink_ids
            .iter()
            .filter(|(_, disk)| *disk)
            .map(|(id, _)| id.as_str())
    }

    fn start_parts(&mut self, pipeline: BuiltPipeline, shared: &Shared) -> anyhow::Result<()> {
        let capacity = pipeline.queue_batches;
        let (sink_senders, progresses) =
            self.start_sinks(pipeline.sinks, pipeline.routes, capacity, shared)?;
        let partitions = self.start_workers(
            &pipeline.transforms,
            Arc::new(sink_senders),
            pipeline.carried,
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
        self.start_sources(pipeline.sources, partitions, pipeline.delivered, shared)
    }
}
