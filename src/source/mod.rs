//! Sources: where events come from. One file (or folder) per source type; this file lists
//! them, one line each in `sources!`, and gives them their shared plumbing:
//! [`SourceContext`] and [`BatchSender`].
//!
//! A source owns its loop: it reads, groups events into batches (never one channel message
//! per event), asks the checkpoint registry for an [`crate::ack::AckRef`] per batch when its
//! positions are replayable, and pushes batches until the shutdown signal fires. A full
//! channel blocks it: that is the backpressure.

pub mod demo;
pub mod file;
pub mod host_metrics;
pub mod internal_metrics;
pub mod journald;
pub mod opentelemetry;
pub mod prometheus_scrape;
pub mod staleness;
pub mod stdin;
pub mod syslog;

use std::sync::Arc;
use std::time::Duration;

use flume::{SendTimeoutError, Sender};

use crate::batch::Batch;
use crate::checkpoint::Checkpoints;
use crate::event::{Kinds, Recycler};
use crate::shutdown::Shutdown;
use crate::telemetry::{ComponentMetrics, Gauge};
use crate::yaml::TaggedEnum;

/// Declares the source types: one line each, `"type" => Variant(Config, Built)`, and from it
/// the [`SourceConfig`] and [`Source`] enums with their dispatch. A source's file provides
/// `Config::build(&self) -> anyhow::Result<Built>`, `Built::start(self, SourceContext)` and
/// `Built::REPLAYABLE` (true when its positions are checkpointed, so what it read but did
/// not get delivered is read again after a restart; events in flight from the others are
/// lost when a pipeline stops before its sinks drained).
macro_rules! sources {
    ($( $(#[$doc:meta])* $name:literal => $variant:ident($config:ty, $built:ty), )*) => {
        /// The configuration of one source, selected by `type:`.
        #[derive(Debug, Clone, PartialEq)]
        pub enum SourceConfig {
            $( $(#[$doc])* $variant($config), )*
        }

        impl TaggedEnum for SourceConfig {
            const KIND: &'static str = "source";
            const TYPES: &'static [&'static str] = &[$($name),*];

            fn deserialize_variant<'de, A: serde::de::MapAccess<'de>>(
                type_name: &str,
                body: &mut A,
            ) -> Result<Self, A::Error> {
                Ok(match type_name {
                    $( $name => Self::$variant(body.next_value()?), )*
                    other => return Err(serde::de::Error::unknown_variant(other, Self::TYPES)),
                })
            }
        }

        impl SourceConfig {
            /// The `type:` name.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $name, )*
                }
            }

            /// Validates and builds the runtime source. Starts nothing.
            pub fn build(&self) -> anyhow::Result<Source> {
                Ok(match self {
                    $( Self::$variant(config) => Source::$variant(config.build()?), )*
                })
            }
        }

        /// A built, validated source, ready to start.
        #[derive(Debug)]
        pub enum Source {
            $( #[doc = concat!("A `", $name, "` source.")] $variant($built), )*
        }

        impl Source {
            /// The `type:` name.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $name, )*
                }
            }

            /// True when the source's position is checkpointed (see `sources!`).
            pub fn replayable(&self) -> bool {
                match self {
                    $( Self::$variant(_) => <$built>::REPLAYABLE, )*
                }
            }

            /// Starts the source. Errors here (a port in use, a bad path) stop the agent
            /// at start.
            pub fn start(self, ctx: SourceContext) -> anyhow::Result<Running> {
                match self {
                    $( Self::$variant(source) => source.start(ctx), )*
                }
            }
        }
    };
}

sources! {
    /// Generated, numbered log lines (`type: demo`).
    "demo" => Demo(demo::DemoConfig, demo::Demo),
    /// Lines tailed from files (`type: file`).
    "file" => File(file::FileConfig, file::FileSource),
    /// The host's metrics with node_exporter's names (`type: host_metrics`).
    "host_metrics" => HostMetrics(host_metrics::HostMetricsConfig, host_metrics::HostMetrics),
    /// Prometheus exporters scraped (`type: prometheus_scrape`).
    "prometheus_scrape" => PrometheusScrape(prometheus_scrape::PrometheusScrapeConfig, prometheus_scrape::PrometheusScrape),
    /// The agent's own metrics (`type: internal_metrics`).
    "internal_metrics" => InternalMetrics(internal_metrics::InternalMetricsConfig, internal_metrics::InternalMetrics),
    /// The systemd journal, read in-process (`type: journald`).
    "journald" => Journald(journald::JournaldConfig, journald::Journald),
    /// OTLP/HTTP logs and metrics pushed by applications and collectors (`type: opentelemetry`).
    "opentelemetry" => OpenTelemetry(opentelemetry::OpenTelemetryConfig, opentelemetry::OpenTelemetry),
    /// Lines from standard input (`type: stdin`).
    "stdin" => Stdin(stdin::StdinConfig, stdin::Stdin),
    /// Syslog over UDP, TCP, TLS or Unix sockets (`type: syslog`).
    "syslog" => Syslog(syslog::SyslogConfig, syslog::Syslog),
}

impl SourceConfig {
    /// The kinds of event the source emits.
    pub fn kinds(&self) -> Kinds {
        match self {
            SourceConfig::HostMetrics(_)
            | SourceConfig::PrometheusScrape(_)
            | SourceConfig::InternalMetrics(_) => Kinds::METRICS,
            SourceConfig::OpenTelemetry(_) => Kinds::BOTH,
            SourceConfig::Demo(_)
            | SourceConfig::File(_)
            | SourceConfig::Journald(_)
            | SourceConfig::Stdin(_)
            | SourceConfig::Syslog(_) => Kinds::LOGS,
        }
    }
}

/// A running source: a thread or a task. It ends when the source is done or told to stop.
pub enum Running {
    /// A source that reads on its own thread.
    Thread(std::thread::JoinHandle<()>),
    /// A source that runs on the async runtime.
    Task(tokio::task::JoinHandle<()>),
}

impl Running {
    /// Waits for the source to finish. Returns true when its thread or task panicked.
    pub async fn join(self) -> bool {
        match self {
            Running::Thread(handle) => matches!(
                tokio::task::spawn_blocking(move || handle.join()).await,
                Ok(Err(_))
            ),
            Running::Task(handle) => handle.await.is_err_and(|error| error.is_panic()),
        }
    }

    /// Runs `body` on a thread named `<kind>-<id>`, inside the source's span
    /// ([`SourceContext::span`]), so that its log lines name the pipeline and the source.
    pub fn thread(
        kind: &str,
        ctx: SourceContext,
        body: impl FnOnce(SourceContext) + Send + 'static,
    ) -> anyhow::Result<Self> {
        let span = ctx.span();
        let handle = std::thread::Builder::new()
            .name(format!("{kind}-{}", ctx.id))
            .spawn(move || span.in_scope(|| body(ctx)))?;
        Ok(Running::Thread(handle))
    }
}

/// What a running source is given.
pub struct SourceContext {
    /// Pipeline name.
    pub pipeline: Arc<str>,
    /// Component id (its `name:`, or `<type>` / `<type>_<index>`).
    pub id: Arc<str>,
    /// Where batches go.
    pub out: BatchSender,
    /// Fires when the source must stop.
    pub shutdown: Shutdown,
    /// Saved positions; track replayable streams here.
    pub checkpoints: Checkpoints,
    /// This source's counters.
    pub metrics: ComponentMetrics,
    /// Handle to the async runtime, for sources that run tasks.
    pub runtime: tokio::runtime::Handle,
    /// The kinds of event that reach a sink of the pipeline (a source that can refuse what
    /// would be dropped, OTLP, answers so).
    pub delivered: Kinds,
}

impl SourceContext {
    /// The span the source's log lines are written in: `source{pipeline=… id=…}` (at ERROR
    /// level, so it is shown whatever level the log is filtered to).
    pub fn span(&self) -> tracing::Span {
        tracing::error_span!("source", pipeline = %self.pipeline, id = %self.id)
    }

    /// The checkpoint key of `stream` within this source: `<pipeline>/<source>/<stream>`.
    pub fn checkpoint_key(&self, stream: &str) -> String {
        format!("{}/{}/{}", self.pipeline, self.id, stream)
    }
}

/// How long a blocked [`BatchSender::send`] waits in the queue before it frees returned
/// events and looks at the stop signal again.
const SEND_SLICE: Duration = Duration::from_millis(50);

/// How long, at a stop, an async source's batch waits for room in its pipeline's queue.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The source could not hand over a batch because the agent is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// Why [`BatchSender::send_or_wait`] did not send.
#[derive(Debug)]
pub enum SendError {
    /// The agent is stopping (or the pipeline is gone).
    Stopped,
    /// Still no room after the wait: the batch, to send again.
    Full(Batch),
}

/// Sends batches to the transform workers, partitioned by a stream key so that one
/// stream's batches always go to the same worker (and so stay in order).
///
/// Each batch is marked with this source's [`crate::event::Home`]: sinks return the spent
/// events, and they are freed here (on the thread that allocated them) before each send
/// and while a send waits.
#[derive(Clone)]
pub struct BatchSender {
    partitions: Arc<[(Sender<Batch>, Gauge)]>,
    shutdown: Shutdown,
    metrics: ComponentMetrics,
    recycler: Recycler,
}

impl BatchSender {
    /// A sender over the workers' input queues, each with its queue-depth gauge.
    pub fn new(
        partitions: Vec<(Sender<Batch>, Gauge)>,
        shutdown: Shutdown,
        metrics: ComponentMetrics,
    ) -> Self {
        assert!(!partitions.is_empty(), "a pipeline has at least one worker");
        BatchSender {
            partitions: partitions.into(),
            shutdown,
            metrics,
            recycler: Recycler::default(),
        }
    }

    fn queue(&self, stream_key: u64) -> &(Sender<Batch>, Gauge) {
        &self.partitions[(stream_key % self.partitions.len() as u64) as usize]
    }

    /// Sends `batch`, blocking while the queue is full. Gives up (dropping the batch, whose
    /// acknowledgement is then abandoned, so it is read again after a restart) only when
    /// the agent is stopping or the pipeline is gone.
    pub fn send(&self, stream_key: u64, batch: Batch) -> Result<(), Stopped> {
        match self.send_within(stream_key, batch, None) {
            Ok(()) => Ok(()),
            Err(SendError::Stopped) | Err(SendError::Full(_)) => Err(Stopped),
        }
    }

    /// Like [`BatchSender::send`], but hands the batch back after waiting `wait` for room,
    /// so a source can do other work (the file source keeps finding new files) and try
    /// again.
    pub fn send_or_wait(
        &self,
        stream_key: u64,
        batch: Batch,
        wait: Duration,
    ) -> Result<(), SendError> {
        self.send_within(stream_key, batch, Some(wait))
    }

    fn send_within(
        &self,
        stream_key: u64,
        batch: Batch,
        wait: Option<Duration>,
    ) -> Result<(), SendError> {
        let n_events = batch.events.len() as u64;
        let (queue, depth) = self.queue(stream_key);
        let mut batch = self.marked(batch);
        let deadline = wait.map(|wait| std::time::Instant::now() + wait);
        // Blocks in the queue's own wait (woken when a worker takes a batch); every
        // `SEND_SLICE` it frees the events sinks returned and looks at the stop signal.
        loop {
            let slice = match deadline {
                Some(deadline) => deadline
                    .saturating_duration_since(std::time::Instant::now())
                    .min(SEND_SLICE),
                None => SEND_SLICE,
            };
            match queue.send_timeout(batch, slice) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(back)) => batch = back,
                Err(SendTimeoutError::Disconnected(_)) => return Err(SendError::Stopped),
            }
            self.recycler.free_returned();
            if self.shutdown.is_triggered() {
                return Err(SendError::Stopped);
            }
            if deadline.is_some_and(|deadline| std::time::Instant::now() >= deadline) {
                return Err(SendError::Full(batch));
            }
        }
        depth.add(1);
        self.metrics.events_out.add(n_events);
        Ok(())
    }

    /// At a stop, when sends are refused: hands `batch` over if its queue has room now (the
    /// pipeline drains what its queues hold before it ends), else gives it back.
    pub fn try_send_at_stop(&self, stream_key: u64, batch: Batch) -> Result<(), Batch> {
        let n_events = batch.events.len() as u64;
        let (queue, depth) = self.queue(stream_key);
        let batch = self.marked(batch);
        match queue.try_send(batch) {
            Ok(()) => {
                depth.add(1);
                self.metrics.events_out.add(n_events);
                Ok(())
            }
            Err(flume::TrySendError::Full(batch) | flume::TrySendError::Disconnected(batch)) => {
                Err(batch)
            }
        }
    }

    /// Like [`BatchSender::send`], for async sources: waits for room in the queue's own
    /// async wait (no polling), without blocking the runtime. Once the pipeline stops, a
    /// batch still gets [`STOP_GRACE`] to find room (the workers drain the queues while
    /// the sources stop, so a slow sink makes room): only one that a stuck pipeline cannot
    /// take is refused, and its events are the caller's to count.
    pub async fn send_async(&self, stream_key: u64, batch: Batch) -> Result<(), Stopped> {
        let n_events = batch.events.len() as u64;
        let (queue, depth) = self.queue(stream_key);
        let batch = self.marked(batch);
        let send = queue.send_async(batch);
        tokio::pin!(send);
        let sent = if self.shutdown.is_triggered() {
            tokio::time::timeout(STOP_GRACE, &mut send).await.ok()
        } else {
            tokio::select! {
                sent = &mut send => Some(sent),
                () = self.shutdown.wait() => tokio::time::timeout(STOP_GRACE, &mut send).await.ok(),
            }
        };
        match sent {
            Some(Ok(())) => {
                depth.add(1);
                self.metrics.events_out.add(n_events);
                Ok(())
            }
            _ => Err(Stopped),
        }
    }

    /// Frees the events sinks have returned, and marks `batch` as this source's.
    fn marked(&self, mut batch: Batch) -> Batch {
        self.recycler.free_returned();
        if batch.home.is_none() {
            batch.home = Some(self.recycler.home());
        }
        batch
    }

    /// Frees the events sinks have returned. Sources that can sit idle for long call it
    /// when they wake, so a burst's events are not kept until the next send.
    pub fn free_returned(&self) {
        self.recycler.free_returned();
    }

    /// True when the queue for `stream_key` is full (for sources that shed load, like UDP).
    pub fn is_full(&self, stream_key: u64) -> bool {
        self.queue(stream_key).0.is_full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, LogEvent};
    use crate::telemetry::registry;

    fn sender(name: &str) -> (BatchSender, flume::Receiver<Batch>, Shutdown) {
        let (tx, rx) = flume::bounded(1);
        let depth = registry().gauge("test_source_queue", "test", &[("test", name)]);
        let shutdown = Shutdown::new();
        let metrics = ComponentMetrics::new("test", "source", name);
        (
            BatchSender::new(vec![(tx, depth)], shutdown.clone(), metrics),
            rx,
            shutdown,
        )
    }

    fn batch(n: usize) -> Batch {
        Batch::new(
            (0..n)
                .map(|i| Event::Log(LogEvent::new(format!("line {i}"))))
                .collect(),
        )
    }

    #[test]
    fn settled_batches_come_home_and_are_freed_at_the_next_send() {
        let (out, queue, _shutdown) = sender("home");
        out.send(0, batch(3)).expect("room");
        let sent = queue.recv().expect("batch");
        assert!(sent.home.is_some(), "batches carry their source's home");
        sent.settle();
        assert_eq!(out.recycler.returned().len(), 1);
        out.send(0, batch(1)).expect("room");
        assert_eq!(out.recycler.returned().len(), 0, "freed before sending");
    }

    #[test]
    fn a_blocked_send_frees_returned_batches_and_still_stops() {
        let (out, queue, shutdown) = sender("blocked");
        out.send(0, batch(2)).expect("room");
        let first = queue.recv().expect("batch");
        out.send(0, batch(2)).expect("room");
        // The queue is full: this send waits, freeing what comes home meanwhile.
        let waiting = {
            let out = out.clone();
            std::thread::spawn(move || out.send(0, batch(2)))
        };
        first.settle();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(out.recycler.returned().len(), 0, "freed while waiting");
        shutdown.trigger();
        assert_eq!(waiting.join().expect("no panic"), Err(Stopped));
    }
}
