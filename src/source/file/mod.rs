//! `type: file`: tails files matched by globs, through rotation, truncation, deletion and
//! restarts, without losing or repeating lines.
//!
//! How it works, on one reader thread:
//! - Discovery ([`discovery`]): inotify events that wake the thread at once for new or
//!   changed files (a new directory, a rename or a removal asks for a walk), plus a
//!   directory walk every `glob_interval_ms` as the safety net: by default every 10 s
//!   while notifications cover every root, every second while they do not.
//! - Identity ([`identity`]): `<dev>-<ino>` plus a fingerprint of the first bytes; the rules
//!   are written down there.
//! - Reading ([`tailer`]): open files are read round-robin, at most one batch (`batch_lines`
//!   / `batch_bytes`) per file per turn, so one busy file cannot starve the others. Each
//!   batch carries one acknowledgement ending just past its last complete line; the
//!   checkpoint moves only when every sink took everything before it. The blocking send is
//!   the backpressure: the file is the buffer.
//! - Rotation by rename: the old file stays open and is read to its end; it is let go once
//!   it has been at its end for `rotate_wait_ms` with no matched path pointing at it. The
//!   new file at the old path is a new identity, read from its start.
//! - A saved position is never forgotten while its content exists (`rotation.rs`): at start
//!   (after a crash, a restart or a reload) a position whose file no matched path points
//!   at is looked for by identity and content ([`recovery`]: a rotated name, another
//!   directory the globs walk, a gzip rotation, a renumbered device) and read to its end.
//! - copytruncate: a size below the read offset (or changed first bytes) means truncation;
//!   the unread rest is read from the copy when one is in the directory (plain or gzip),
//!   and the file is read again from 0. Lines written between logrotate's copy and its
//!   truncate are in neither: a race of copytruncate itself, the same for every tailer.
//! - A file gone with unread bytes (deleted before it was read) is the only loss: counted
//!   in `sluice_file_lost_bytes_total{reason}` and logged at ERROR.
//! - While a send waits on a full pipeline (a sink is down: the files are the buffer),
//!   new files are still found and their identities saved, and open files are checked for
//!   truncation, so a file created, or copied and truncated, and rotated away during the
//!   outage is read afterwards. After the wait, each unfinished file's size and first
//!   bytes are checked again before its next read: a stream never reads content that
//!   replaced what it fingerprinted.
//! - `read_from` applies only to files found by the first scan that have no checkpoint and
//!   are not at a path a saved position had (a rotation's successor is read from its
//!   start); files that appear later are new and read from their start.
//! - Idle files are closed after `close_idle_secs` and reopened when they change; at most
//!   `max_open_files` are open (the least recently active file at its end is closed first;
//!   while files wait for a descriptor `/health` warns, and one deleted meanwhile is counted
//!   lost).
//!
//! Owns: the per-file state table and the reader loop. Never: blocks the async runtime or
//! on a special file (FIFOs, devices are never opened blocking), commits an offset itself,
//! or stops on a bad file (errors are logged once per path and retried at the next scan).
//! A loop that stops coming round (a hung read) fails `/health`.

mod config;
pub mod discovery;
mod generations;
pub mod identity;
pub mod kubernetes;
mod metrics;
pub mod multiline;
mod open;
pub mod recovery;
mod rotation;
pub mod stamps;
pub mod tailer;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, Metadata};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use super::{Running, SendError, SourceContext, Stopped};
use crate::ack::{Meta, StreamTracker};
use crate::batch::Batch;
use crate::health::Heartbeat;
use discovery::{Matcher, Watcher};
use identity::{dev_ino, key_of, open_regular, Fingerprint, SavedFile};
use metrics::FileMetrics;
use multiline::MultilineConfig;
use tailer::{LineFormat, Oversize, ReadCounters, ReadSettings, Tailer};

pub use config::{FileConfig, ReadFrom};

/// A built file source.
#[derive(Debug)]
pub struct FileSource {
    matcher: Matcher,
    settings: Arc<ReadSettings>,
    read_from: ReadFrom,
    ignore_older: Option<Duration>,
    fingerprint_bytes: u64,
    /// `glob_interval_ms` as configured (unset: see [`Reader::scan_interval`]).
    glob_interval: Option<Duration>,
    close_idle: Duration,
    max_open_files: usize,
    rotate_wait: Duration,
}

impl FileSource {
    /// Read offsets are checkpointed: unsent lines are read again after a restart.
    pub const REPLAYABLE: bool = true;

    /// Starts the reader thread.
    pub fn start(self, ctx: SourceContext) -> anyhow::Result<Running> {
        Running::thread("file", ctx, move |ctx| {
            let mut reader = Reader::new(self, ctx);
            reader.run();
        })
    }
}

/// A let-go file whose last lines are not all acknowledged yet.
struct Retiring {
    tracker: StreamTracker,
    /// The offset read to.
    end: u64,
    /// The file's name when let go (and its device and inode), if it still had one.
    name: Option<(PathBuf, (u64, u64))>,
}

/// A file waiting for a free descriptor.
struct WantOpen {
    path: PathBuf,
    dev_ino: (u64, u64),
    /// Found by the first scan (so `read_from` applies).
    initial: bool,
}

struct Reader {
    source: FileSource,
    ctx: SourceContext,
    counters: ReadCounters,
    metrics: FileMetrics,
    files: HashMap<(u64, u64), Tailer>,
    /// Where each matched path pointed at the last scan.
    paths: HashMap<PathBuf, (u64, u64)>,
    want_open: VecDeque<WantOpen>,
    /// The files in `want_open`.
    wanted: HashSet<(u64, u64)>,
    /// Let-go files whose checkpoint is forgotten once everything read is acknowledged
    /// (or kept in `finished` while the file is still there: its name then).
    retiring: HashMap<String, Retiring>,
    /// Positions of let-go files read to their end, kept while the files exist.
    finished: generations::Finished,
    /// Paths whose open failure was already logged.
    warned: HashSet<PathBuf>,
    /// Sizes seen at the last scan, for lag.
    sizes: HashMap<(u64, u64), u64>,
    /// Files with an open descriptor.
    open: HashSet<(u64, u64)>,
    /// Open files at their end that a change notification named since the last round.
    notified: HashSet<(u64, u64)>,
    /// Open files not at their end whose content is checked before their next read: the
    /// files open when a send had to wait on the sinks (any of them may have been
    /// truncated or rewritten meanwhile, and a stream must not read content that replaced
    /// what it fingerprinted).
    recheck: HashSet<(u64, u64)>,
    /// Whether change notifications cover every root the globs read (else every open file
    /// at its end is checked every round).
    watching: bool,
    /// Directories matched symlinks point into, from the last walk: watched too, so a file
    /// created behind a link (made before its file, or a rotation's successor) is found
    /// at once.
    link_dirs: Vec<PathBuf>,
    /// When every open file at its end is next checked, notified or not.
    next_eof_poll: Instant,
    /// When the lag gauges are next computed (they visit every watched file).
    next_lag: Instant,
    /// When the directories were last walked.
    last_scan: Instant,
    /// Matched files found at start to hold a saved position of another identity (a
    /// renumbered device): the offset they resume at.
    adopted: HashMap<(u64, u64), u64>,
    /// Paths of every saved position at start: a new file there is a rotation's successor,
    /// read from its start whatever `read_from` says.
    known_paths: HashSet<PathBuf>,
    /// Since when this source's saved positions may have missed changes to its files (the
    /// source was not running): see [`generations`].
    unwatched_since: Option<std::time::SystemTime>,
    /// When the next directory scan is due.
    next_scan: Instant,
    /// A scan runs inside a blocked send (it may send itself: no second one inside it).
    discovering: bool,
    /// Proof of life for `/health`: a read or open that never returns shows there.
    heartbeat: Heartbeat,
    /// `/health` warnings: files waiting for a descriptor under `max_open_files`.
    health: crate::health::HealthCheck,
    /// Since when files have waited for a descriptor, and whether the warning is up.
    capped: Option<(Instant, bool)>,
    buf: Vec<u8>,
}

impl Drop for Reader {
    /// What this reader let go of was written before now: a later reader of the source
    /// looks for rotations made since ([`generations`]).
    fn drop(&mut self) {
        self.ctx
            .checkpoints
            .stop_watching(&self.ctx.checkpoint_key(""));
        self.health.ok();
    }
}

/// How long files must wait for a descriptor before `/health` and the log say so: a start
/// among thousands of files fills `max_open_files` for a moment while it reads them.
const CAPPED_AFTER: Duration = Duration::from_secs(5);
/// How long the reader loop may not come round before `/health` fails.
const STUCK_AFTER: Duration = Duration::from_secs(30);
/// How often every open file at its end is checked for growth even without a change
/// notification: the safety net for writes inotify does not report (a rotated name the
/// globs do not match is checked every round anyway; a path reached through a symlink
/// into an unwatched directory is not).
const EOF_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How often the lag gauges are computed. Not at every upkeep (100 ms): they visit every
/// watched file, which with 10,000 files was the file thread's largest cost after reading
/// (`cargo bench --bench many_files`).
const LAG_INTERVAL: Duration = Duration::from_secs(1);
/// The directory walk's interval by default while change notifications cover every root:
/// they report new, written, renamed and removed files, and each walk stats every matched
/// file (with 10,000 files, a walk a second was the reader's largest cost after reading;
/// Filebeat's scanner checks every 10 s, Fluent Bit refreshes its list every 60 s).
const WATCHED_SCAN_INTERVAL: Duration = Duration::from_secs(10);
/// The walk's default interval while notifications do not cover every root (no inotify, a
/// root not there yet, watches exhausted): the walk is then how files are found.
const UNWATCHED_SCAN_INTERVAL: Duration = Duration::from_secs(1);

impl Reader {
    fn new(source: FileSource, ctx: SourceContext) -> Self {
        if let Some(data_dir) = ctx.checkpoints.data_dir() {
            let checkpoints = ctx.checkpoints.clone();
            let prefix = ctx.checkpoint_key("");
            source.settings.stamps.open(
                data_dir,
                &format!("{}.{}", ctx.pipeline, ctx.id),
                move |stream| {
                    let position = checkpoints.position(&format!("{prefix}{stream}"))?;
                    Some(position.offset)
                },
            );
        }
        let unwatched_since = ctx.checkpoints.start_watching(&ctx.checkpoint_key(""));
        let key = format!("{}/source/{}", ctx.pipeline, ctx.id);
        let heartbeat = Heartbeat::new(key.clone(), STUCK_AFTER);
        let metrics = &ctx.metrics;
        let file_metrics = FileMetrics::new(metrics);
        Reader {
            counters: ReadCounters::new(metrics),
            metrics: file_metrics,
            source,
            ctx,
            files: HashMap::new(),
            paths: HashMap::new(),
            want_open: VecDeque::new(),
            wanted: HashSet::new(),
            retiring: HashMap::new(),
            finished: generations::Finished::default(),
            warned: HashSet::new(),
            sizes: HashMap::new(),
            open: HashSet::new(),
            adopted: HashMap::new(),
            known_paths: HashSet::new(),
            unwatched_since,
            next_scan: Instant::now(),
            notified: HashSet::new(),
            recheck: HashSet::new(),
            watching: false,
            link_dirs: Vec::new(),
            next_eof_poll: Instant::now(),
            next_lag: Instant::now(),
            last_scan: Instant::now(),
            discovering: false,
            heartbeat,
            health: crate::health::HealthCheck::new(key),
            capped: None,
            buf: vec![0u8; 64 * 1024],
        }
    }

    fn run(&mut self) {
        let (mut watcher, changes) = Watcher::new(&self.source.matcher);
        watcher.watch_roots(&self.source.matcher);
        if self.scan(true).is_err() {
            return;
        }
        watcher.watch_link_dirs(&self.link_dirs);
        self.recover_saved();
        self.next_scan = Instant::now() + self.scan_interval();
        let mut next_upkeep = Instant::now();
        while !self.ctx.shutdown.is_triggered() {
            self.heartbeat.beat();
            // Free what the sinks returned before reading more (and after a wait).
            self.ctx.out.free_returned();
            let (rescan, touched) = changes.take();
            for path in touched {
                self.touched(&path);
            }
            let now = Instant::now();
            if rescan || now >= self.next_scan {
                watcher.watch_roots(&self.source.matcher);
                self.watching = watcher.covers(&self.source.matcher);
                if self.scan(false).is_err() {
                    return;
                }
                watcher.watch_link_dirs(&self.link_dirs);
                self.next_scan = now + self.scan_interval();
            }
            if self.open_wanted().is_err() {
                return;
            }
            let n_read = match self.read_round() {
                Ok(n) => n,
                Err(Stopped) => return,
            };
            if now >= next_upkeep {
                if self.upkeep().is_err() {
                    return;
                }
                next_upkeep = now + Duration::from_millis(100);
            }
            if n_read == 0 {
                let wait = self
                    .next_scan
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100));
                // Whatever changed is taken at the top of the next turn.
                changes.wait(wait);
            }
        }
    }

    /// Time between directory walks: `glob_interval_ms` if set, else by whether change
    /// notifications cover every root.
    fn scan_interval(&self) -> Duration {
        self.source.glob_interval.unwrap_or(if self.watching {
            WATCHED_SCAN_INTERVAL
        } else {
            UNWATCHED_SCAN_INTERVAL
        })
    }

    /// Sends a batch, waiting while the pipeline is full. While it waits (a sink is down:
    /// the files are the buffer), new files are still found and their identities saved, so
    /// a file created and rotated away meanwhile is not missed.
    /// After a wait, every open file's content is checked again before its next read
    /// (`recheck`).
    fn send(&mut self, stream_hash: u64, batch: Batch) -> Result<(), Stopped> {
        let mut batch = batch;
        let mut waited = false;
        loop {
            match self
                .ctx
                .out
                .send_or_wait(stream_hash, batch, Duration::from_millis(200))
            {
                Ok(()) => {
                    if waited {
                        let files = &self.files;
                        let unfinished = |id: &(u64, u64)| files.get(id).is_some_and(|t| !t.at_eof);
                        self.recheck
                            .extend(self.open.iter().filter(|id| unfinished(id)));
                    }
                    return Ok(());
                }
                Err(SendError::Stopped) => return Err(Stopped),
                Err(SendError::Full(back)) => batch = back,
            }
            waited = true;
            self.heartbeat.beat(); // waiting on the sinks is not being stuck
                                   // Notifications are not taken while blocked: walk at the unwatched interval.
            let interval = self.source.glob_interval.unwrap_or(UNWATCHED_SCAN_INTERVAL);
            if self.discovering || Instant::now() < self.last_scan + interval {
                continue;
            }
            self.discovering = true;
            let found = self.scan(false).and_then(|()| self.open_wanted());
            for id in self.refresh_identities() {
                self.restart_from_zero(id, "rewritten");
            }
            self.check_replaced();
            self.discovering = false;
            self.next_scan = Instant::now() + self.scan_interval();
            found?;
        }
    }

    /// While blocked handing a batch on (a sink is down), checks every open file for
    /// truncation and rewriting, as a read round would at its end: a file copied and
    /// truncated meanwhile hands its stream over to the copy and starts a stream of its
    /// own for the new content, so a second copytruncate before the sink is back finds a
    /// copy of that content too (without it, the content between the two rotations was
    /// never tracked and was lost: `tests/file_rotation.rs`, copytruncate with small sink
    /// batches).
    fn check_replaced(&mut self) {
        let ids: Vec<(u64, u64)> = self.open.iter().copied().collect();
        for id in ids {
            let size = match self.files.get(&id) {
                Some(tailer) if tailer.gzip.is_none() && tailer.gone_since.is_none() => {
                    tailer.file.as_ref().and_then(|file| file.metadata().ok())
                }
                _ => None,
            };
            if let Some(metadata) = size {
                self.restart_if_replaced(id, metadata.len());
            }
        }
    }

    /// Restarts `id`'s stream from the file's start (handing what it had not read over to
    /// a copy, if one is there: copytruncate) when the file no longer holds what the stream
    /// read: a `size` below the read offset (truncated) or other first bytes (rewritten).
    fn restart_if_replaced(&mut self, id: (u64, u64), size: u64) {
        let Some(tailer) = self.files.get(&id) else {
            return;
        };
        let Some(file) = &tailer.file else {
            return;
        };
        let why = if size < tailer.offset {
            "truncated"
        } else if !tailer.fingerprint.matches(file).unwrap_or(true) {
            "rewritten"
        } else {
            return;
        };
        self.restart_from_zero(id, why);
    }

    /// One turn for every open file. Returns bytes read.
    fn read_round(&mut self) -> Result<usize, Stopped> {
        let ids: Vec<(u64, u64)> = self.open.iter().copied().collect();
        let now = Instant::now();
        let poll_all = !self.watching || now >= self.next_eof_poll;
        if poll_all {
            self.next_eof_poll = now + EOF_POLL_INTERVAL;
        }
        let mut total = 0;
        for id in ids {
            if !self.has_news(id, poll_all) {
                continue;
            }
            let Some(tailer) = self.files.get_mut(&id) else {
                continue;
            };
            let result = tailer.read_batch(&self.source.settings, &self.counters, &mut self.buf);
            match result {
                Ok((batch, n)) => {
                    total += n;
                    let stream_hash = tailer.stream_hash;
                    if let Some(batch) = batch {
                        self.counters.events_in.add(batch.events.len() as u64);
                        self.send(stream_hash, batch)?;
                    }
                }
                Err(error) => {
                    tracing::warn!(file = %tailer.path.display(), %error, "read failed; retrying after the next scan");
                    tailer.close();
                    self.open.remove(&id);
                }
            }
        }
        if poll_all {
            self.notified.clear();
        }
        Ok(total)
    }

    /// Whether a file is worth a read. A file at its end costs one `fstat` when a change
    /// notification named it, when it was rotated away (its new name may not match), when
    /// notifications do not cover every root, and otherwise every [`EOF_POLL_INTERVAL`]
    /// (`poll_all`): so the cost follows the files written, not the files watched. No
    /// growth, no read. A size below the read offset is a truncation; growth after being at
    /// the end checks the first bytes first, so a file truncated and rewritten past the old
    /// offset is not read from the middle. A file not at its end is read on, after the same
    /// check if the reader waited on the sinks since its last read (`recheck`).
    fn has_news(&mut self, id: (u64, u64), poll_all: bool) -> bool {
        let Some(tailer) = self.files.get(&id) else {
            return false;
        };
        if tailer.gzip.is_some() {
            return !tailer.at_eof; // a compressed rotation does not grow
        }
        let Some(file) = &tailer.file else {
            return false;
        };
        if !tailer.at_eof {
            let marked = !self.recheck.is_empty() && self.recheck.remove(&id);
            if marked && tailer.gone_since.is_none() {
                if let Ok(metadata) = file.metadata() {
                    self.restart_if_replaced(id, metadata.len());
                }
            }
            return true;
        }
        if !poll_all && tailer.gone_since.is_none() && !self.notified.remove(&id) {
            return false;
        }
        let Ok(metadata) = file.metadata() else {
            return true;
        };
        let size = metadata.len();
        if size == tailer.offset {
            return false;
        }
        if tailer.gone_since.is_some() && size < tailer.offset {
            return false; // rotated away: nothing more to read in it
        }
        self.restart_if_replaced(id, size);
        true
    }

    /// What is saved beside a file's position: how to find and recognise it again
    /// (see [`identity`]).
    /// Tracks `key` from `offset` for a stream read again under it (resumed, reopened,
    /// rewritten): a let-go or finished generation's hold on the key ends here.
    fn track_again(&mut self, key: &str, offset: u64, meta: Meta) -> StreamTracker {
        let tracker = self.ctx.checkpoints.track(key, offset, meta);
        self.retiring.remove(key);
        self.finished.tracked_again(key);
        tracker
    }

    fn meta(tailer: &Tailer) -> Meta {
        let mut meta = Meta::new();
        meta.insert("path".into(), tailer.path_text().into());
        meta.insert("fingerprint".into(), tailer.fingerprint.hash_hex().into());
        meta.insert("fingerprint_len".into(), tailer.fingerprint.len.into());
        if let Some(tail) = tailer.tail {
            meta.insert("tail".into(), format!("{:016x}", tail.hash).into());
            meta.insert("tail_at".into(), tail.at.into());
        }
        meta.insert("size".into(), tailer.size_seen.into());
        if tailer.gzip.is_some() {
            meta.insert("compression".into(), "gzip".into());
        }
        meta
    }

    /// The file shrank or its first bytes changed. Its old content goes on in a copy if
    /// there is one (copytruncate); otherwise what was not read is counted lost.
    fn restart_from_zero(&mut self, id: (u64, u64), why: &str) {
        self.metrics.truncations.inc();
        if self.continue_in_copy(id) {
            return;
        }
        let Some(tailer) = self.files.get_mut(&id) else {
            return;
        };
        let unread = tailer.size_seen.saturating_sub(tailer.offset);
        let path = tailer.path.clone();
        if unread > 0 {
            self.count_lost(&path, unread, "truncated_unread");
        }
        let Some(tailer) = self.files.get_mut(&id) else {
            return;
        };
        let Some(file) = tailer.file.as_mut() else {
            return;
        };
        tracing::info!(file = %tailer.path.display(), reason = why, "file truncated or rewritten; reading it again from the start");
        if file.seek(SeekFrom::Start(0)).is_err() {
            return;
        }
        tailer.size_seen = 0;
        tailer.tail = None;
        if let Ok(fingerprint) = Fingerprint::compute(file, self.source.fingerprint_bytes) {
            tailer.fingerprint = fingerprint;
        }
        let (key, meta) = (self.ctx.checkpoint_key(&tailer.key), Self::meta(tailer));
        let tracker = self.track_again(&key, 0, meta);
        if let Some(tailer) = self.files.get_mut(&id) {
            tailer.restart(0, tracker);
        }
    }

    /// Every 100 ms: multiline timeouts, idle closing, letting go, fingerprints, metrics.
    fn upkeep(&mut self) -> Result<(), Stopped> {
        let now = Instant::now();
        let mut to_let_go = Vec::new();
        let to_restart = self.refresh_identities();
        let mut batches = Vec::new();
        let mut closed = Vec::new();
        for id in &self.open {
            let Some(tailer) = self.files.get_mut(id) else {
                continue;
            };
            if !tailer.is_open() || !tailer.at_eof {
                continue;
            }
            if let Some(since) = tailer.gone_since {
                if now.duration_since(since) >= self.source.rotate_wait
                    && now.duration_since(tailer.last_active) >= self.source.rotate_wait
                {
                    // A last write may have come after the round that found its end (the
                    // reader waited on the sinks since): read it before letting go.
                    let grown = (tailer.file.as_ref())
                        .and_then(|file| file.metadata().ok())
                        .is_some_and(|metadata| metadata.len() > tailer.offset);
                    if grown {
                        tailer.at_eof = false;
                    } else {
                        to_let_go.push(*id);
                    }
                }
                continue;
            }
            if let Some(batch) = tailer.flush_expired(&self.source.settings) {
                batches.push((tailer.stream_hash, batch));
            }
            if now.duration_since(tailer.last_active) >= self.source.close_idle {
                tailer.close();
                closed.push(*id);
            }
        }
        for id in closed {
            self.open.remove(&id);
        }
        for (stream_hash, batch) in batches {
            self.counters.events_in.add(batch.events.len() as u64);
            self.send(stream_hash, batch)?;
        }
        for id in to_restart {
            self.restart_from_zero(id, "rewritten");
        }
        for id in to_let_go {
            self.let_go(id)?;
        }
        let checkpoints = &self.ctx.checkpoints;
        let finished = &mut self.finished;
        self.retiring.retain(|key, retiring| {
            if retiring.tracker.committed() < retiring.end {
                return true;
            }
            finished.keep(checkpoints, key.clone(), retiring.name.take(), retiring.end);
            false
        });
        for (path, id) in self.finished.check(checkpoints, now) {
            self.read_late_write(path, id);
        }
        if now >= self.next_lag {
            self.update_lag();
            self.next_lag = now + LAG_INTERVAL;
        }
        self.metrics.open.set(self.open.len() as i64);
        self.metrics
            .watched
            .set(self.files.len() as i64 + self.want_open.len() as i64);
        Ok(())
    }

    fn update_lag(&mut self) {
        let mut total = 0u64;
        let mut max = 0u64;
        for (id, tailer) in &self.files {
            let size = match &tailer.file {
                Some(file) if !tailer.at_eof => file.metadata().map(|m| m.len()).unwrap_or(0),
                Some(_) => tailer.offset,
                None if tailer.gzip.is_some() => tailer.size_seen.max(tailer.offset),
                None => self.sizes.get(id).copied().unwrap_or(tailer.offset),
            };
            let lag = size.saturating_sub(tailer.offset);
            total += lag;
            max = max.max(lag);
        }
        self.metrics.lag_total.set(total as i64);
        self.metrics.lag_max.set(max as i64);
    }
}
