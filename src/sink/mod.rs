//! Sinks: where events go. One file (or folder) per sink type; this file lists them, one
//! line each in `sinks!`, and gives them their shared plumbing: the input queue
//! ([`SinkInput`]) and [`SinkContext`].
//!
//! A sink takes batches from its bounded queue, delivers them, and settles each batch's
//! acknowledgements ([`crate::batch::Batch::settle`]) once its events are delivered, or
//! permanently rejected and written to the dead-letter file. It never settles what it has
//! not delivered: an unsettled batch is read again after a restart. Sinks take the event
//! kinds they understand and settle the rest at once.

pub mod blackhole;
pub mod console;
pub mod driver;
pub mod elasticsearch;
pub mod file;
pub mod loki;
pub mod opentelemetry;
pub mod prometheus_remote_write;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::batch::Batch;
use crate::dead_letter::DeadLetters;
use crate::event::Kinds;
use crate::health::{HealthCheck, Progress};
use crate::shutdown::Shutdown;
use crate::telemetry::ComponentMetrics;
use crate::yaml::TaggedEnum;

/// Declares the sink types: one line each, `"type" => Variant(Config, Built)`, and from it
/// the [`SinkConfig`] and [`Sink`] enums with their dispatch (boxed: a config or sink is
/// built once, and the small ones need not pay for the largest). A sink's file provides
/// `Config::build(&self) -> anyhow::Result<Built>` and
/// `async Built::run(self, SinkInput, SinkContext)`.
macro_rules! sinks {
    ($( $(#[$doc:meta])* $name:literal => $variant:ident($config:ty, $built:ty), )*) => {
        /// The configuration of one sink, selected by `type:`.
        #[derive(Debug, Clone, PartialEq)]
        pub enum SinkConfig {
            $( $(#[$doc])* $variant(Box<$config>), )*
        }

        impl TaggedEnum for SinkConfig {
            const KIND: &'static str = "sink";
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

        impl SinkConfig {
            /// The `type:` name.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $name, )*
                }
            }

            /// Validates and builds the runtime sink. Connects to nothing.
            pub fn build(&self) -> anyhow::Result<Sink> {
                Ok(match self {
                    $( Self::$variant(config) => Sink::$variant(Box::new(config.build()?)), )*
                })
            }
        }

        /// A built, validated sink, ready to run.
        #[derive(Debug)]
        pub enum Sink {
            $( #[doc = concat!("A `", $name, "` sink.")] $variant(Box<$built>), )*
        }

        impl Sink {
            /// The `type:` name.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $name, )*
                }
            }

            /// Runs until the input queue is closed and drained (or the task is aborted at
            /// the shutdown deadline).
            pub async fn run(self, input: SinkInput, ctx: SinkContext) {
                match self {
                    $( Self::$variant(sink) => sink.run(input, ctx).await, )*
                }
            }
        }
    };
}

sinks! {
    /// Standard output (`type: console`).
    "console" => Console(console::ConsoleConfig, console::Console),
    /// JSON lines appended to a file (`type: file`).
    "file" => File(file::FileSinkConfig, file::FileSink),
    /// Counts and discards (`type: blackhole`).
    "blackhole" => Blackhole(blackhole::BlackholeConfig, blackhole::Blackhole),
    /// Grafana Loki push API (`type: loki`).
    "loki" => Loki(loki::LokiConfig, loki::Loki),
    /// Prometheus remote-write 1.0 (`type: prometheus_remote_write`).
    "prometheus_remote_write" => PrometheusRemoteWrite(prometheus_remote_write::PrometheusRemoteWriteConfig, prometheus_remote_write::PrometheusRemoteWrite),
    /// OTLP/HTTP logs and metrics (`type: opentelemetry`).
    "opentelemetry" => OpenTelemetry(opentelemetry::OpenTelemetrySinkConfig, opentelemetry::OpenTelemetrySink),
    /// Elasticsearch `_bulk` API (`type: elasticsearch`).
    "elasticsearch" => Elasticsearch(elasticsearch::ElasticsearchConfig, elasticsearch::Elasticsearch),
}

impl Sink {
    /// The kinds of event the sink delivers; it settles others unsent.
    pub fn kinds(&self) -> Kinds {
        match self {
            Sink::Loki(_) | Sink::Elasticsearch(_) => Kinds::LOGS,
            Sink::PrometheusRemoteWrite(_) => Kinds::METRICS,
            Sink::OpenTelemetry(_) | Sink::Console(_) | Sink::File(_) | Sink::Blackhole(_) => {
                Kinds::BOTH
            }
        }
    }

    /// What the pipeline puts between itself and the sink: the network sinks' `buffer:`,
    /// the default memory queue for the others.
    pub fn buffer(&self) -> crate::buffer::BufferSettings {
        match self {
            Sink::Loki(sink) => sink.buffer().clone(),
            Sink::Elasticsearch(sink) => sink.buffer().clone(),
            Sink::PrometheusRemoteWrite(sink) => sink.buffer().clone(),
            Sink::OpenTelemetry(sink) => sink.buffer().clone(),
            Sink::Console(_) | Sink::File(_) | Sink::Blackhole(_) => {
                crate::buffer::BufferSettings::default()
            }
        }
    }
}

/// Test hook, not a setting: when this environment variable holds a number N, the first
/// sink to have taken N events from its queue panics, once per process. The end-to-end
/// supervision test (`tests/supervision.rs`) uses it to crash a sink mid-run. Read once,
/// when each sink starts.
pub const TEST_PANIC_SINK_AFTER_EVENTS: &str = "SLUICE_TEST_PANIC_SINK_AFTER_EVENTS";

/// Set once the [`TEST_PANIC_SINK_AFTER_EVENTS`] hook has fired.
static TEST_PANIC_FIRED: AtomicBool = AtomicBool::new(false);

/// A sink's bounded input queue.
pub struct SinkInput {
    rx: mpsc::Receiver<Batch>,
    progress: Progress,
    /// The test hook's threshold, and events taken so far (only counted when it is set).
    panic_after: Option<u64>,
    n_events: u64,
}

impl SinkInput {
    /// True when no batch is queued right now.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    /// Wraps the receiving end of a sink queue.
    pub fn new(rx: mpsc::Receiver<Batch>, progress: Progress) -> Self {
        let panic_after = std::env::var(TEST_PANIC_SINK_AFTER_EVENTS)
            .ok()
            .and_then(|n| n.trim().parse().ok());
        SinkInput {
            rx,
            progress,
            panic_after,
            n_events: 0,
        }
    }

    /// The next batch; `None` once the pipeline has stopped and the queue is drained.
    pub async fn recv(&mut self) -> Option<Batch> {
        let batch = self.rx.recv().await;
        self.taken(batch)
    }

    /// A batch if one is queued now.
    pub fn try_recv(&mut self) -> Option<Batch> {
        let batch = self.rx.try_recv().ok();
        self.taken(batch)
    }

    fn taken(&mut self, batch: Option<Batch>) -> Option<Batch> {
        let batch = batch?;
        self.progress.queued.add(-1);
        if let Some(limit) = self.panic_after {
            self.n_events += batch.events.len() as u64;
            if self.n_events >= limit && !TEST_PANIC_FIRED.swap(true, Ordering::SeqCst) {
                panic!("{TEST_PANIC_SINK_AFTER_EVENTS}: test hook fired after {limit} events");
            }
        }
        Some(batch)
    }
}

/// What a running sink is given.
#[derive(Clone)]
pub struct SinkContext {
    /// Pipeline name.
    pub pipeline: Arc<str>,
    /// Component id.
    pub id: Arc<str>,
    /// This sink's counters.
    pub metrics: ComponentMetrics,
    /// Where permanently rejected events go.
    pub dead_letters: DeadLetters,
    /// This sink's entry in `/health`.
    pub health: HealthCheck,
    /// Stamp it after each delivery; the watchdog reports a sink that stops moving.
    pub progress: Progress,
    /// Fires when the agent is stopping (the queue still drains; use it to cut retries).
    pub shutdown: Shutdown,
}

impl SinkContext {
    /// Records a delivered batch: counts, progress stamp, acknowledgements.
    pub fn delivered(&self, batch: Batch) {
        self.metrics.events_out.add(batch.events.len() as u64);
        self.progress.mark();
        batch.settle();
    }
}

/// How line-oriented sinks (`console`, `file`) write an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineEncoding {
    /// The whole event as one JSON object per line.
    #[default]
    Json,
    /// The message only (metrics in Prometheus text style).
    Text,
}

impl LineEncoding {
    /// Appends `event` and a newline to `out`.
    pub fn encode(self, event: &crate::event::Event, out: &mut Vec<u8>) {
        use crate::event::Event;
        match (self, event) {
            (LineEncoding::Json, Event::Log(log)) => {
                let _ = serde_json::to_writer(&mut *out, &log.json());
            }
            (LineEncoding::Text, Event::Log(log)) => match log.message.as_str() {
                Some(text) => out.extend_from_slice(text.as_bytes()),
                None => out.extend_from_slice(log.message.to_text().as_bytes()),
            },
            (LineEncoding::Json, Event::Metric(metric)) => {
                let _ = serde_json::to_writer(&mut *out, &metric.to_json());
            }
            (LineEncoding::Text, Event::Metric(metric)) => {
                let (_, value) = metric.kind_and_value();
                let labels: Vec<String> = metric
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect();
                let line = format!("{}{{{}}} {value}", metric.name, labels.join(","));
                out.extend_from_slice(line.as_bytes());
            }
        }
        out.push(b'\n');
    }
}
