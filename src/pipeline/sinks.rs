//! A pipeline's sinks: each one's queue (or disk buffer feeding it), its `/health` entry
//! and progress stamp, and the task that runs it and reports its panic.
//!
//! Owns: starting sinks and what the workers hold of them ([`SinkOutput`]). Never: sends to
//! a sink (the workers do) or stops one (`stop.rs`).

use std::collections::BTreeMap;

use anyhow::Context as _;
use tokio::sync::mpsc;

use super::{RunningPipeline, Shared};
use crate::buffer::{self, BufferKind, SinkSender, SinkSide};
use crate::config::Built;
use crate::event::{Event, Kinds};
use crate::health::{HealthCheck, Progress};
use crate::route::Route;
use crate::sink::{Sink, SinkContext, SinkInput};
use crate::telemetry::{registry, ComponentMetrics};

/// Aborts a task when dropped (so an aborted supervisor takes its child down with it).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Each sink's health entry and progress stamp, for the stall watchdog.
pub(super) type SinkProgress = Vec<(HealthCheck, Progress)>;

/// A sink as the workers see it: its queue or disk buffer, and its `condition:`.
pub(super) struct SinkOutput {
    pub(super) sender: SinkSender,
    /// Only the events the route takes are sent to the sink.
    pub(super) route: Option<Route>,
    /// The kinds of event the sink delivers.
    pub(super) kinds: Kinds,
}

impl SinkOutput {
    /// True when the sink delivers `event` (its kind, and its `condition:` if any).
    pub(super) fn takes(&self, event: &Event) -> bool {
        self.kinds.takes(event) && self.route.as_ref().is_none_or(|route| route.takes(event))
    }
}

impl RunningPipeline {
    pub(super) fn start_sinks(
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
            let metrics = ComponentMetrics::new(&name, "sink", &built.id);
            let buffer_settings = built.component.buffer();
            let progress = match buffer_settings.kind {
                BufferKind::Disk => {
                    Progress::new(queued.clone()).with_backlog(buffer::events_gauge(&metrics))
                }
                BufferKind::Memory => Progress::new(queued.clone()),
            };
            let health = HealthCheck::new(format!("{name}/sink/{}", built.id));
            health.ok();
            let ctx = SinkContext {
                pipeline: name.as_str().into(),
                id: built.id.as_str().into(),
                metrics,
                dead_letters: shared.dead_letters.clone(),
                health: health.clone(),
                progress: progress.clone(),
                shutdown: self.shutdown.clone(),
            };
            // The sink's buffer: its queue, or a disk buffer that feeds the queue.
            let buffer_dir = (shared.checkpoints.data_dir())
                .map(|data_dir| buffer::directory(data_dir, &name, &built.id));
            let (sender, guard) = buffer::attach(
                &buffer_settings,
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
            let kinds = built.component.kinds();
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
            sink_senders.push(SinkOutput {
                sender,
                route,
                kinds,
            });
        }
        Ok((sink_senders, progresses))
    }
}
