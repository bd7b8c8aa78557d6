//! Per-sink buffers: what happens to a batch between the transform workers and one sink.
//!
//! ```text
//! worker ─▶ SinkSender ─┬─ memory: the sink's bounded queue (block, or drop_newest)
//!                       └─ disk:   append a record ─▶ segments under data_dir
//!                                  reader thread ─▶ the sink's bounded queue
//! ```
//!
//! `buffer: { type: memory }` (the default) is the sink's bounded queue of `queue_batches`
//! batches: a full queue blocks the worker (`when_full: block`, the pipeline waits for the
//! slowest sink) or drops the batch for this sink alone (`drop_newest`, counted as
//! `sluice_events_dropped_total{reason="buffer_full"}`).
//!
//! `buffer: { type: disk }` is a segmented append-only log per sink under
//! `<data_dir>/buffers/<pipeline>/<sink>/` (format in `segment.rs`). A worker appends each
//! batch as one record; the batch's acknowledgement for this sink is settled once the record
//! is fsynced (every `sync_interval_ms`, or at once with `always`), so a source position is
//! committed when every sink has delivered the batch or holds it durably. A reader thread
//! feeds the sink from the log; what the sink acknowledges is saved as a position, and whole
//! segments behind it are deleted. A sink that is down falls behind into its own buffer
//! while the others go on, until `max_bytes`; then `when_full` applies to it alone. Syslog
//! and other sources that cannot be read again survive `kill -9`, shutdown and reload this
//! way. Start-up recovery (`recovery.rs`) cuts a torn tail at the last good record.
//!
//! Cost per event (issue 18): a record's log events are written relative to the previous
//! one (a repeated field set or stream is a flag, `codec.rs`), the record is built and
//! checksummed outside the lock, and the reader decodes over the spent events the sink
//! returns (`reader.rs`), so reading a record allocates and frees next to nothing.
//!
//! Owns: [`BufferConfig`], the hand-over to each sink ([`SinkSender`]), the disk buffer.
//! Never: decodes a record the reader has not checked, or acknowledges what is not on disk.

mod codec;
mod housekeeper;
pub mod inspect;
mod reader;
mod recovery;
pub mod segment;
pub mod stranded;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::mpsc;

use crate::batch::Batch;
use crate::health::HealthCheck;
use crate::shutdown::Shutdown;
use crate::telemetry::{ComponentMetrics, Counter, Gauge, LogEvery};

pub use codec::{decode, decode_into, encode};

/// `buffer:` of a network sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// `memory` (default: the sink's queue) or `disk`.
    #[serde(rename = "type", default)]
    pub kind: BufferKind,
    /// Disk only: most bytes on disk (default 256 MiB, at least 1 MiB).
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// What a full buffer does: `block` (default: the pipeline waits) or `drop_newest`
    /// (this sink loses the batch, counted).
    #[serde(default)]
    pub when_full: WhenFull,
    /// Disk only: fsync every this many milliseconds (default 500), or `always` (before
    /// each batch is acknowledged).
    #[serde(default)]
    pub sync_interval_ms: Option<SyncSetting>,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            kind: BufferKind::Memory,
            max_bytes: None,
            when_full: WhenFull::Block,
            sync_interval_ms: None,
        }
    }
}

/// `buffer.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BufferKind {
    /// The sink's bounded in-memory queue.
    #[default]
    Memory,
    /// A segmented log under `data_dir`.
    Disk,
}

/// `buffer.when_full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait for room: the pipeline's sources wait too.
    #[default]
    Block,
    /// Drop the batch for this sink only (counted).
    DropNewest,
}

/// `buffer.sync_interval_ms`: a number of milliseconds or `always`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SyncSetting {
    /// Every this many milliseconds.
    Millis(u64),
    /// `always`.
    Word(String),
}

/// How often appended records are fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Before each batch is acknowledged.
    Always,
    /// Every interval; batches are acknowledged after the fsync that covers them.
    Interval(Duration),
}

/// A validated `buffer:`.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferSettings {
    /// Memory or disk.
    pub kind: BufferKind,
    /// Disk: most bytes.
    pub max_bytes: u64,
    /// Full: block or drop.
    pub when_full: WhenFull,
    /// Disk: fsync policy.
    pub sync: SyncPolicy,
    /// Disk: a new segment starts past this many bytes (an eighth of `max_bytes`, 128 KiB to
    /// 32 MiB): start-up checks at most one segment, and space returns a segment at a time.
    pub segment_bytes: u64,
}

impl Default for BufferSettings {
    fn default() -> Self {
        BufferConfig::default()
            .build()
            .unwrap_or_else(|_| unreachable!("the default buffer config is valid"))
    }
}

const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
const DEFAULT_SYNC_MS: u64 = 500;

impl BufferConfig {
    /// Validates the settings.
    pub fn build(&self) -> anyhow::Result<BufferSettings> {
        use crate::bounds::check;
        if self.kind == BufferKind::Memory {
            anyhow::ensure!(
                self.max_bytes.is_none() && self.sync_interval_ms.is_none(),
                "buffer: max_bytes and sync_interval_ms apply to `type: disk`; a memory buffer holds queue_batches batches"
            );
        }
        let max_bytes = self.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
        check("buffer.max_bytes", max_bytes, (1 << 20)..=(1 << 50))?;
        let sync = match &self.sync_interval_ms {
            None => SyncPolicy::Interval(Duration::from_millis(DEFAULT_SYNC_MS)),
            Some(SyncSetting::Word(word)) if word == "always" => SyncPolicy::Always,
            Some(SyncSetting::Word(word)) => {
                anyhow::bail!("buffer.sync_interval_ms: {word:?} is neither a number of milliseconds nor `always`")
            }
            Some(SyncSetting::Millis(ms)) => {
                check("buffer.sync_interval_ms", *ms, 1..=60_000)?;
                SyncPolicy::Interval(Duration::from_millis(*ms))
            }
        };
        Ok(BufferSettings {
            kind: self.kind,
            max_bytes,
            when_full: self.when_full,
            sync,
            segment_bytes: (max_bytes / 8).clamp(128 * 1024, 32 * 1024 * 1024),
        })
    }
}

/// The directory of a sink's disk buffer.
pub fn directory(data_dir: &Path, pipeline: &str, sink: &str) -> PathBuf {
    data_dir.join("buffers").join(pipeline).join(sink)
}

/// The hand-over from the workers to one sink.
pub struct SinkSender {
    route: Route,
    queued: Gauge,
    dropped_full: FullDrops,
}

/// How often, at most, drops for `when_full: drop_newest` are logged.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Batches dropped for `when_full: drop_newest`: counted (`reason="buffer_full"`) and said
/// at WARN at the first drop, then at most every [`DROP_LOG_EVERY`] with the number dropped
/// since, so that a sink losing events shows in the log and not only in a counter.
#[derive(Clone)]
pub(crate) struct FullDrops {
    counter: Counter,
    sink: Arc<str>,
    /// When to log the drops.
    log: Arc<Mutex<LogEvery>>,
}

impl FullDrops {
    pub(crate) fn new(metrics: &ComponentMetrics) -> Self {
        let labels = metrics.labels_with(&[]);
        let name = |key: &str| labels.iter().find(|(k, _)| *k == key).map_or("", |l| l.1);
        FullDrops {
            counter: metrics.dropped("buffer_full"),
            sink: format!("{}/{}", name("pipeline"), name("component")).into(),
            log: Arc::new(Mutex::new(LogEvery::new(DROP_LOG_EVERY))),
        }
    }

    /// Counts `n` events dropped, and logs them when it is time.
    pub(crate) fn add(&self, n: u64) {
        self.counter.add(n);
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(due) = log.add(n, Instant::now()) {
            tracing::warn!(
                sink = %self.sink,
                dropped = due.count,
                since_last_line_secs = due.since_last_line_secs,
                "events dropped for a sink that cannot take them (when_full: drop_newest); counted in sluice_events_dropped_total{{reason=\"buffer_full\"}}"
            );
        }
    }
}

enum Route {
    Memory {
        tx: mpsc::Sender<Batch>,
        when_full: WhenFull,
    },
    Disk(DiskWriter),
}

/// The workers' handle on a disk buffer: closes it when the last worker lets it go.
struct DiskWriter(Arc<writer::Shared>);

impl Drop for DiskWriter {
    fn drop(&mut self) {
        writer::close(&self.0);
    }
}

/// What the sink task holds: tells the buffer when the sink is done (its last
/// acknowledgements are in), and waits for the buffer to save its position.
pub struct BufferGuard {
    shared: Option<Arc<writer::Shared>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl BufferGuard {
    /// The sink ended: lets the buffer save its final position (blocking pool).
    pub async fn finish(mut self) {
        let shared = self.shared.take();
        let threads = std::mem::take(&mut self.threads);
        let Some(shared) = shared else { return };
        let _ = tokio::task::spawn_blocking(move || {
            sink_done(&shared);
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }

    /// True for a disk buffer.
    pub fn is_disk(&self) -> bool {
        self.shared.is_some()
    }
}

impl Drop for BufferGuard {
    fn drop(&mut self) {
        if let Some(shared) = &self.shared {
            sink_done(shared);
        }
    }
}

fn sink_done(shared: &writer::Shared) {
    let mut state = writer::lock(shared);
    state.sink_done = true;
    shared.data.notify_all();
    shared.ended.notify_all();
}

/// `sluice_buffer_events` of the sink `metrics` belongs to: the events its disk buffer holds
/// that are not delivered yet.
pub fn events_gauge(metrics: &ComponentMetrics) -> Gauge {
    metrics.gauge(
        "sluice_buffer_events",
        "Events in a sink's buffer not yet delivered.",
        &[],
    )
}

/// Everything [`attach`] needs to know about the sink.
pub struct SinkSide {
    /// The sink's input queue.
    pub tx: mpsc::Sender<Batch>,
    /// Its depth gauge.
    pub queued: Gauge,
    /// The sink's metrics.
    pub metrics: ComponentMetrics,
    /// `<pipeline>/sink/<id>`: the buffer's `/health` key is this plus `/buffer`.
    pub health_key: String,
    /// The pipeline's stop signal.
    pub shutdown: Shutdown,
}

/// Puts `settings`' buffer in front of a sink: a memory route, or a disk buffer in `dir`
/// (opened, recovered, with its reader and housekeeping threads started).
pub fn attach(
    settings: &BufferSettings,
    dir: Option<PathBuf>,
    sink: SinkSide,
) -> anyhow::Result<(SinkSender, BufferGuard)> {
    let dropped_full = FullDrops::new(&sink.metrics);
    if settings.kind == BufferKind::Memory {
        let route = Route::Memory {
            tx: sink.tx,
            when_full: settings.when_full,
        };
        let guard = BufferGuard {
            shared: None,
            threads: Vec::new(),
        };
        return Ok((
            SinkSender {
                route,
                queued: sink.queued,
                dropped_full,
            },
            guard,
        ));
    }
    let dir = dir.ok_or_else(|| anyhow::anyhow!("a disk buffer needs a data_dir"))?;
    let health = HealthCheck::new(format!("{}/buffer", sink.health_key));
    let shared = writer::open(&dir, settings.clone(), &sink.metrics, health, sink.shutdown)?;
    let output = reader::Output {
        tx: sink.tx,
        queued: sink.queued.clone(),
        runtime: tokio::runtime::Handle::current(),
        metrics: sink.metrics,
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (for_reader, for_keeper) = (shared.clone(), shared.clone());
    let threads = vec![
        std::thread::Builder::new()
            .name(format!("buffer-read-{name}"))
            .spawn(move || reader::run(for_reader, output))?,
        std::thread::Builder::new()
            .name(format!("buffer-keep-{name}"))
            .spawn(move || housekeeper::housekeep(for_keeper))?,
    ];
    let guard = BufferGuard {
        shared: Some(shared.clone()),
        threads,
    };
    let route = Route::Disk(DiskWriter(shared));
    Ok((
        SinkSender {
            route,
            queued: sink.queued,
            dropped_full,
        },
        guard,
    ))
}

impl SinkSender {
    /// Hands `batch` to the sink (worker thread). Blocks while the sink's buffer is full
    /// with `when_full: block`; a batch the sink cannot take (gone, or dropped by policy) is
    /// settled or abandoned as its fate says.
    pub fn send(&self, batch: Batch) {
        match &self.route {
            Route::Memory { tx, when_full } => {
                self.queued.add(1);
                let result = match when_full {
                    WhenFull::Block => tx.blocking_send(batch).map_err(|e| (e.0, false)),
                    WhenFull::DropNewest => tx.try_send(batch).map_err(|e| match e {
                        mpsc::error::TrySendError::Full(batch) => (batch, true),
                        mpsc::error::TrySendError::Closed(batch) => (batch, false),
                    }),
                };
                if let Err((batch, full)) = result {
                    self.queued.add(-1);
                    if full {
                        // Dropped for this sink by its policy: done, counted.
                        self.dropped_full.add(batch.events.len() as u64);
                        batch.settle();
                    }
                    // Otherwise the sink is gone (crashed or aborted at the deadline): the
                    // batch's acknowledgement is abandoned, so it is read again after a restart.
                }
            }
            Route::Disk(writer) => {
                thread_local! {
                    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
                }
                SCRATCH.with(|scratch| {
                    let mut scratch = scratch.borrow_mut();
                    let _ = writer::append(&writer.0, batch, &mut scratch);
                    if scratch.capacity() > 8 << 20 {
                        *scratch = Vec::new();
                    }
                });
            }
        }
    }
}
