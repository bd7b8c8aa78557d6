//! Delivery state shared by the intake and the lanes: metric handles, the last success,
//! rejection streaks, and the watch that turns them into `/health`.

use super::*;

/// Metric handles and delivery state shared by the intake and the lanes.
pub(super) struct State {
    pub(super) retries: Counter,
    /// `sluice_sink_split_requests_total`: requests refused whole and sent again as halves.
    pub(super) split_requests: Counter,
    pub(super) batch_events: Histogram,
    pub(super) batch_bytes: Histogram,
    pub(super) bytes_uncompressed: Counter,
    pub(super) bytes_compressed: Counter,
    pub(super) in_flight: Gauge,
    /// `sluice_sink_requests_total{status}`.
    pub(super) requests: LabelledCounter,
    /// Milliseconds since `started` of the last 2xx.
    pub(super) last_success_ms: AtomicU64,
    /// Milliseconds since `started` when the driver last went from idle to busy.
    pub(super) busy_since_ms: AtomicU64,
    /// Batches handed to lanes and not yet settled.
    pub(super) pending_batches: AtomicUsize,
    /// Milliseconds since `started` (plus one; 0: not rejecting) when every request began
    /// to be rejected or dead-lettered with no event delivered since.
    pub(super) rejecting_since_ms: AtomicU64,
    /// The last rejection's reason (with the server's words), for `/health`.
    pub(super) last_rejection: std::sync::Mutex<String>,
    /// When a retry's WARN line is due: the first, then one per 10 s with the count (the
    /// others at DEBUG; `sluice_sink_retries_total` has them all).
    pub(super) retry_log: std::sync::Mutex<crate::telemetry::LogEvery>,
    pub(super) started: Instant,
}

impl State {
    pub(super) fn new(ctx: &SinkContext) -> Arc<Self> {
        let metrics = &ctx.metrics;
        let state = Arc::new(State {
            retries: metrics.counter(
                "sluice_sink_retries_total",
                "Requests retried by a sink.",
                &[],
            ),
            split_requests: metrics.counter(
                "sluice_sink_split_requests_total",
                "Requests the server refused whole for some of their items, sent again as two halves.",
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
            requests: metrics.labelled_counter(
                "sluice_sink_requests_total",
                "Requests sent by a sink, by HTTP status or transport error.",
                "status",
            ),
            last_success_ms: AtomicU64::new(0),
            busy_since_ms: AtomicU64::new(0),
            pending_batches: AtomicUsize::new(0),
            rejecting_since_ms: AtomicU64::new(0),
            last_rejection: std::sync::Mutex::new(String::new()),
            retry_log: std::sync::Mutex::new(crate::telemetry::LogEvery::new(
                std::time::Duration::from_secs(10),
            )),
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

    pub(super) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Time without a success while there was something to send.
    pub(super) fn idle(&self) -> Duration {
        let since = self
            .last_success_ms
            .load(Ordering::Relaxed)
            .max(self.busy_since_ms.load(Ordering::Relaxed));
        Duration::from_millis(self.now_ms().saturating_sub(since))
    }

    /// Notes a request (or the retried rest of one) whose events were all rejected.
    pub(super) fn rejected(&self, reason: &str) {
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
    pub(super) fn rejecting_for(&self) -> Option<(Duration, String)> {
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
}

/// Fails `/health` while data waits and nothing succeeded for `unhealthy_after`.
pub(super) async fn watch_health(
    unhealthy_after: Duration,
    state: Arc<State>,
    health: HealthCheck,
) {
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
