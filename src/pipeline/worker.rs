//! The transform workers: OS threads, each taking batches from its own bounded queue,
//! running them through the transforms in order, ticking and flushing stateful transforms,
//! and sending each sink its copy (routed by its `condition:`).
//!
//! Owns: the workers' queues and threads, the order of transforms, fan-out to sinks. Never:
//! decides what a transform does with an event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flume::{Receiver, RecvTimeoutError, Sender};

use super::sinks::SinkOutput;
use super::{RunningPipeline, Shared};
use crate::ack::AckRef;
use crate::batch::Batch;
use crate::config::Built;
use crate::event::{Event, Kinds};
use crate::route;
use crate::shutdown::Shutdown;
use crate::supervision::PanicGuard;
use crate::tap::{Point, TapPoints};
use crate::telemetry::{registry, ComponentMetrics, Counter, Gauge};
use crate::transform::Transform;

/// How often workers call [`Transform::tick`] (in a pipeline with a stateful transform) and
/// check for the end of input.
const TICK: Duration = Duration::from_millis(100);

/// How long an idle worker of a pipeline without a stateful transform waits for a batch
/// before it checks for the end of input. Its queue's senders all gone ends it at once; this
/// bounds only a stop while a source is stuck in a blocking read. Ten wake-ups a second
/// per worker were a quarter of an idle host agent's (six workers; 226 a second in all).
const IDLE_WAIT: Duration = Duration::from_secs(1);

impl RunningPipeline {
    pub(super) fn start_workers(
        &mut self,
        transforms: &[Built<Transform>],
        sinks: Arc<Vec<SinkOutput>>,
        carried: Kinds,
        capacity: usize,
        shared: &Shared,
    ) -> anyhow::Result<Vec<(Sender<Batch>, Gauge)>> {
        let name = &self.name;
        let untaken = Untaken::counter(name, &sinks, carried);
        let lost = ComponentMetrics::new(name, "pipeline", name).dropped("undelivered_at_stop");
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
                untaken: untaken.clone(),
                lost: lost.clone(),
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
}

struct Worker {
    /// First field, so a panic is reported before the rest of the worker is dropped.
    _panic_guard: PanicGuard,
    input: Receiver<Batch>,
    depth: Gauge,
    transforms: Vec<(Transform, ComponentMetrics)>,
    sinks: Arc<Vec<SinkOutput>>,
    /// Counts events no sink takes; `None` when every event has one.
    untaken: Option<Untaken>,
    /// `sluice_events_dropped_total{reason="undelivered_at_stop"}` of the pipeline: events
    /// of sources that cannot read them again, lost when the pipeline stopped before a
    /// sink delivered them ([`AckRef::counted`]).
    lost: Counter,
    input_closed: Shutdown,
    tap: TapPoints,
}

/// Counts the events no sink delivers: of a kind none takes (`no_sink`: an OpenTelemetry
/// source's metrics in a pipeline whose sinks are Loki), or refused by every sink's
/// `condition:` that takes their kind (`unrouted`).
#[derive(Clone)]
struct Untaken {
    no_sink: Counter,
    unrouted: Counter,
}

impl Untaken {
    /// `None` when a sink without a condition takes each kind the pipeline carries: then
    /// every event is taken, and nothing is checked per event.
    fn counter(pipeline: &str, sinks: &[SinkOutput], carried: Kinds) -> Option<Untaken> {
        let unconditional = (sinks.iter())
            .filter(|sink| sink.route.is_none())
            .fold(Kinds::NONE, |kinds, sink| kinds.or(sink.kinds));
        if carried.without(unconditional).is_empty() {
            return None;
        }
        let metrics = ComponentMetrics::new(pipeline, "pipeline", pipeline);
        Some(Untaken {
            no_sink: metrics.dropped("no_sink"),
            unrouted: metrics.dropped("unrouted"),
        })
    }

    fn count(&self, sinks: &[SinkOutput], events: &[Event]) {
        let (mut no_sink, mut unrouted) = (0, 0);
        for event in events {
            if !sinks.iter().any(|sink| sink.takes(event)) {
                if sinks.iter().any(|sink| sink.kinds.takes(event)) {
                    unrouted += 1;
                } else {
                    no_sink += 1;
                }
            }
        }
        self.no_sink.add(no_sink);
        self.unrouted.add(unrouted);
    }
}

impl Worker {
    fn run(mut self) {
        let mut last_tick = Instant::now();
        let wait = if self.transforms.iter().any(|(t, _)| t.ticks()) {
            TICK
        } else {
            IDLE_WAIT
        };
        loop {
            match self.input.recv_timeout(wait) {
                Ok(batch) => {
                    self.depth.add(-1);
                    let Batch {
                        events,
                        mut acks,
                        home,
                    } = batch;
                    if acks.is_empty() && !events.is_empty() {
                        // Events no source can read again: counted if a sink never
                        // delivers them (the pipeline stopped first).
                        acks.push(AckRef::counted(events.len() as u64, self.lost.clone()));
                    }
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
            // Empty: transforms hand the batch's own vector on (`transform::retain_into`).
            let mut out = Vec::new();
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
            let (transform, metrics) = &mut self.transforms[index];
            transform.tick(now, &mut emitted);
            // What a stateful transform emits (log_to_metric's series) leaves it too.
            metrics.events_out.add(emitted.len() as u64);
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
            let (transform, metrics) = &mut self.transforms[index];
            transform.flush(&mut emitted);
            // What a stateful transform emits (log_to_metric's series) leaves it too.
            metrics.events_out.add(emitted.len() as u64);
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
        if let Some(untaken) = &self.untaken {
            untaken.count(&self.sinks, &batch.events);
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
