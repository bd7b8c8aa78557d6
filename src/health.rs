//! Health: what `GET /health` answers. Components report failing/ok under a key; a
//! watchdog turns a sink that holds queued data but makes no progress into a failure, so an
//! agent never stalls silently.
//!
//! Owns: the process-wide health table and the per-sink progress stamps. Never: acts on
//! failures (it only reports them).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::telemetry::Gauge;

fn table() -> &'static Mutex<BTreeMap<String, String>> {
    static TABLE: OnceLock<Mutex<BTreeMap<String, String>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Reports the health of one component under a key such as `pipeline/sink/loki`.
#[derive(Clone, Debug)]
pub struct HealthCheck {
    key: Arc<str>,
}

impl HealthCheck {
    /// A check for `key`, initially healthy.
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        HealthCheck { key: key.into() }
    }

    /// The component works.
    pub fn ok(&self) {
        table()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&*self.key);
    }

    /// The component is failing, for `reason`.
    pub fn fail(&self, reason: impl Into<String>) {
        table()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.key.to_string(), reason.into());
    }
}

/// Failing components and why; empty when healthy.
pub fn failures() -> BTreeMap<String, String> {
    table().lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Forgets every check whose key starts with `prefix` (a pipeline that was stopped).
pub fn clear_prefix(prefix: &str) {
    table()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|key, _| !key.starts_with(prefix));
}

/// When a sink last made progress, and how much waits for it.
#[derive(Clone, Debug)]
pub struct Progress {
    last_ms: Arc<AtomicU64>,
    /// Batches queued for the sink (incremented by workers, decremented by the sink).
    pub queued: Gauge,
}

impl Progress {
    /// A stamp set to now, over the given queue-depth gauge.
    pub fn new(queued: Gauge) -> Self {
        let progress = Progress {
            last_ms: Arc::new(AtomicU64::new(0)),
            queued,
        };
        progress.mark();
        progress
    }

    /// The sink delivered (or settled) something just now.
    pub fn mark(&self) {
        let now = epoch().elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Time since the last progress.
    pub fn idle_for(&self) -> Duration {
        let now = epoch().elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }

    /// The stall verdict: failing when data is queued and nothing moved for `stall_after`.
    pub fn check(&self, health: &HealthCheck, stall_after: Duration) {
        let queued = self.queued.get();
        let idle = self.idle_for();
        if queued > 0 && idle >= stall_after {
            health.fail(format!(
                "stalled: no progress for {}s with {queued} batches queued",
                idle.as_secs()
            ));
        } else {
            health.ok();
        }
    }
}
