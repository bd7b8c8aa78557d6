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
        warning_table()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&*self.key);
        table()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&*self.key);
    }

    /// The component is failing, for `reason`.
    pub fn fail(&self, reason: impl Into<String>) {
        warning_table()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&*self.key);
        table()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.key.to_string(), reason.into());
    }

    /// The component works but needs attention (a buffer filling up): `/health` still
    /// answers 200 and lists it under `warnings`.
    pub fn warn(&self, reason: impl Into<String>) {
        table()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&*self.key);
        warning_table()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.key.to_string(), reason.into());
    }
}

fn warning_table() -> &'static Mutex<BTreeMap<String, String>> {
    static TABLE: OnceLock<Mutex<BTreeMap<String, String>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

/// Components that work but need attention, and why.
pub fn warnings() -> BTreeMap<String, String> {
    warning_table()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// Failing components and why; empty when healthy. Liveness stamps are judged now.
pub fn failures() -> BTreeMap<String, String> {
    let mut failures = table().lock().unwrap_or_else(|p| p.into_inner()).clone();
    failures.extend(stuck_loops());
    failures
}

/// Loops (reader threads) that have not come round within their limit: what `/live`
/// judges. Sink failures are not here: a restart cannot fix an unreachable back-end.
pub fn stuck_loops() -> BTreeMap<String, String> {
    let mut stuck = BTreeMap::new();
    let now = epoch().elapsed().as_millis() as u64;
    for (key, (last_ms, limit)) in liveness().lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let idle = Duration::from_millis(now.saturating_sub(last_ms.load(Ordering::Relaxed)));
        if idle >= *limit {
            stuck.insert(
                key.clone(),
                format!(
                    "stuck: its thread has not come round for {}s",
                    idle.as_secs()
                ),
            );
        }
    }
    stuck
}

type LivenessTable = BTreeMap<String, (Arc<AtomicU64>, Duration)>;

fn liveness() -> &'static Mutex<LivenessTable> {
    static LIVENESS: OnceLock<Mutex<LivenessTable>> = OnceLock::new();
    LIVENESS.get_or_init(Default::default)
}

/// A loop that must keep coming round (a source's reader thread): it calls
/// [`Heartbeat::beat`] on every turn, and `/health` fails under its key when it has not
/// for `limit` (a read hung on a dead NFS server, a blocking call that never returns).
/// Judged when `/health` is asked: no thread, no timer. Unregistered when dropped.
#[derive(Debug)]
pub struct Heartbeat {
    key: String,
    last_ms: Arc<AtomicU64>,
}

impl Heartbeat {
    /// Registers `key`, alive now.
    pub fn new(key: impl Into<String>, limit: Duration) -> Self {
        let key = key.into();
        let last_ms = Arc::new(AtomicU64::new(epoch().elapsed().as_millis() as u64));
        liveness()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), (last_ms.clone(), limit));
        Heartbeat { key, last_ms }
    }

    /// The loop came round.
    pub fn beat(&self) {
        let now = epoch().elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        liveness()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// Forgets every check whose key starts with `prefix` (a pipeline that was stopped).
pub fn clear_prefix(prefix: &str) {
    warning_table()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|key, _| !key.starts_with(prefix));
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
    /// Events waiting in the sink's disk buffer behind its queue (a disk-buffered sink).
    backlog: Option<Gauge>,
}

impl Progress {
    /// A stamp set to now, over the given queue-depth gauge.
    pub fn new(queued: Gauge) -> Self {
        let progress = Progress {
            last_ms: Arc::new(AtomicU64::new(0)),
            queued,
            backlog: None,
        };
        progress.mark();
        progress
    }

    /// The same, for a sink behind a disk buffer holding `events` undelivered events: a
    /// stall names them too, since its queue shows only what the buffer handed on.
    pub fn with_backlog(mut self, events: Gauge) -> Self {
        self.backlog = Some(events);
        self
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
            let buffered = match self.backlog.as_ref().map(Gauge::get) {
                Some(events) if events > 0 => format!(" and {events} events in its disk buffer"),
                _ => String::new(),
            };
            health.fail(format!(
                "stalled: no progress for {}s with {queued} batches queued{buffered}",
                idle.as_secs()
            ));
        } else {
            health.ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_stops_beating_fails_health_until_it_beats() {
        let heartbeat = Heartbeat::new("test/source/stuck", Duration::from_millis(50));
        assert!(!failures().contains_key("test/source/stuck"));
        std::thread::sleep(Duration::from_millis(80));
        assert!(failures()["test/source/stuck"].starts_with("stuck"));
        heartbeat.beat();
        assert!(!failures().contains_key("test/source/stuck"));
        drop(heartbeat);
        std::thread::sleep(Duration::from_millis(80));
        assert!(!failures().contains_key("test/source/stuck"));
    }
}
