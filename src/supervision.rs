//! Supervision: what happens when a component panics.
//!
//! Policy: a panic in any component (a sink task, a transform worker thread, a source thread
//! or task) is a bug, and the agent cannot tell what that component held. So it is never
//! restarted in place: the panic is logged at ERROR naming the component, counted in
//! `sluice_component_panics_total`, the component fails `/health`, and the agent stops as
//! on SIGTERM (every other component drains within `shutdown_timeout_secs`) and exits
//! non-zero. The final checkpoint holds only what was delivered; the service manager
//! (systemd `Restart=on-failure`, Kubernetes) starts the agent again, and every batch the
//! crashed component held is read again from the checkpoints (replayable sources) — never
//! a silent stall with a frozen checkpoint.
//!
//! Owns: the first failure of the run and the wake-up of the agent's main loop. Never:
//! restarts components, or stops anything itself (the agent does).

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::health::HealthCheck;
use crate::telemetry::registry;

#[derive(Default)]
struct Inner {
    first: Mutex<Option<String>>,
    wake: Notify,
}

/// Where components report that they panicked. Cloned into every pipeline.
#[derive(Clone, Default)]
pub struct Supervisor(Arc<Inner>);

impl Supervisor {
    /// A supervisor with nothing reported.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reports that component `id` of kind `kind` (`source`, `worker`, `sink`) in
    /// `pipeline` panicked: logs, counts, fails its `/health` entry and wakes the agent.
    pub fn panicked(&self, pipeline: &str, kind: &str, id: &str) {
        let component = format!("{pipeline}/{kind}/{id}");
        tracing::error!(
            pipeline = %pipeline,
            component_kind = %kind,
            component = %id,
            "component panicked: stopping the agent so that the service manager restarts it; undelivered batches are read again from the checkpoints"
        );
        registry()
            .counter(
                "sluice_component_panics_total",
                "Components that panicked; each one stops the agent with a non-zero exit.",
                &[
                    ("pipeline", pipeline),
                    ("component_kind", kind),
                    ("component", id),
                ],
            )
            .inc();
        HealthCheck::new(component.clone()).fail("panicked; the agent is stopping");
        let mut first = self.0.first.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(component);
        drop(first);
        // A stored permit: the agent sees it even if it is busy (a reload) right now.
        self.0.wake.notify_one();
    }

    /// The first component that panicked in this run, if any.
    pub fn failure(&self) -> Option<String> {
        self.0
            .first
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Completes once a component has panicked.
    pub async fn wait(&self) {
        loop {
            if self.failure().is_some() {
                return;
            }
            self.0.wake.notified().await;
        }
    }

    /// A guard for a component running on its own thread: if the thread unwinds while the
    /// guard is alive, dropping it reports the panic.
    pub fn guard(&self, pipeline: &str, kind: &'static str, id: &str) -> PanicGuard {
        PanicGuard {
            supervisor: self.clone(),
            pipeline: pipeline.to_owned(),
            kind,
            id: id.to_owned(),
        }
    }
}

/// A child task's panic is its parent's: resumes the unwind in the caller (a sink's lane, a
/// syslog connection), so the component that owns the child is reported as panicked
/// instead of running on without it. Returns the task's value; `None` if it was cancelled.
pub fn propagate_panic<T>(joined: Result<T, tokio::task::JoinError>) -> Option<T> {
    match joined {
        Ok(value) => Some(value),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => None,
    }
}

/// Reports a panic of the thread that holds it (see [`Supervisor::guard`]).
pub struct PanicGuard {
    supervisor: Supervisor,
    pipeline: String,
    kind: &'static str,
    id: String,
}

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.supervisor
                .panicked(&self.pipeline, self.kind, &self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_thread_is_reported_once_first_wins() {
        let supervisor = Supervisor::new();
        assert_eq!(supervisor.failure(), None);
        let guard = supervisor.guard("p", "worker", "worker-0");
        let crashed = std::thread::spawn(move || {
            let _guard = guard;
            panic!("test panic in a worker");
        })
        .join();
        assert!(crashed.is_err());
        let quiet = supervisor.guard("p", "worker", "worker-1");
        std::thread::spawn(move || drop(quiet))
            .join()
            .expect("no panic");
        supervisor.panicked("p", "sink", "later");
        assert_eq!(supervisor.failure().as_deref(), Some("p/worker/worker-0"));
        crate::health::clear_prefix("p/");
    }

    #[tokio::test]
    async fn a_child_panic_becomes_the_parents() {
        let child = tokio::spawn(async { panic!("test panic in a child task") });
        let parent = tokio::spawn(async move {
            propagate_panic(child.await);
        });
        assert!(parent.await.is_err_and(|e| e.is_panic()));
        let fine = tokio::spawn(async { 7 });
        assert_eq!(propagate_panic(fine.await), Some(7));
    }

    #[tokio::test]
    async fn wait_completes_after_a_report_made_before_it() {
        let supervisor = Supervisor::new();
        supervisor.panicked("q", "source", "s");
        tokio::time::timeout(std::time::Duration::from_secs(5), supervisor.wait())
            .await
            .expect("wait sees an earlier report");
        crate::health::clear_prefix("q/");
    }
}
