//! A pipeline's sources: each one's context (a sender over the workers' queues), its start,
//! and the task that waits for it, reports its panic and counts it finished.
//!
//! Owns: starting sources and noting which are replayable. Never: stops them (`stop.rs`).

use std::sync::atomic::Ordering;

use anyhow::Context as _;
use flume::Sender;

use super::{RunningPipeline, Shared};
use crate::batch::Batch;
use crate::config::Built;
use crate::event::Kinds;
use crate::source::{BatchSender, Source, SourceContext};
use crate::telemetry::{ComponentMetrics, Gauge};

impl RunningPipeline {
    pub(super) fn start_sources(
        &mut self,
        built_sources: Vec<Built<Source>>,
        partitions: Vec<(Sender<Batch>, Gauge)>,
        delivered: Kinds,
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
                delivered,
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
}
