//! The stop sequence of a pipeline: sources first, then the workers drain their queues, then
//! the sinks theirs, all within one deadline; what is still running then is aborted, and
//! the log says what becomes of the data not delivered.
//!
//! Owns: the order of the stop and its log lines. Never: commits checkpoints (unsettled
//! batches are simply not committed).

use std::time::{Duration, Instant};

use super::{RunningPipeline, StopReason};
use crate::health;

impl RunningPipeline {
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
        "; sources {} cannot be read again: their events these sinks had not delivered are lost, counted in sluice_events_dropped_total{{reason=\"undelivered_at_stop\"}} (give the sinks `buffer: {{ type: disk }}` to keep them)",
        not_replayable.join(", ")
    ));
    tracing::error!(pipeline = %pipeline, "{message}");
}
