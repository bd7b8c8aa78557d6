//! The checkpoint file: committed stream positions, saved so a restart resumes where the
//! sinks left off.
//!
//! File format (`<data_dir>/checkpoints.json`), versioned JSON:
//! `{"version":1,"streams":{"<key>":{"offset":N,"meta":{...}}}}`. Keys are
//! `<pipeline>/<source>/<stream>`; `meta` is the source's own data (e.g. the file path).
//!
//! Writes are atomic and durable: write `checkpoints.json.tmp.<pid>.<n>` (a name no other
//! write uses), fsync it, rename it over `checkpoints.json`, fsync the directory. A crash at
//! any point leaves either the old or the new file, never a torn one; temp files left by a
//! crash are removed at the next start. A file that cannot be read or parsed is renamed to
//! `checkpoints.json.corrupt-<unix seconds>`, logged at ERROR, and the agent starts with no
//! positions (files then start as their source's `read_from` says).
//!
//! Each key's entry of the file is kept encoded and encoded again only when its stream
//! changed: a save with 10,000 files of which 100 are written encodes 100 entries and
//! copies the rest (encoding every position on every save was ~15% of the agent's CPU with
//! 10,000 watched files, perf on `cargo bench --bench many_files`). A stream names itself
//! in the registry's dirty list when it changes after a save (`ack::StreamState`), so a
//! save visits the changed streams only (locking all 10,000 to look was then most of a
//! save).
//!
//! Every save (periodic, forced at reload and shutdown) goes through [`Checkpoints::save`],
//! which holds one lock across taking the snapshot and writing it: one write at a time. A
//! write that fails leaves the registry marked unsaved, so the next save (the periodic
//! writer's next tick) writes again even if nothing new was delivered. Failures are counted
//! (`sluice_checkpoint_writes_total{result="error"}`), logged at ERROR when they start (and
//! every minute while they last), and fail `/health` under `agent/checkpoints` once they have
//! lasted [`UNHEALTHY_AFTER`]; the first successful write clears it.
//!
//! Owns: loading, saving, the registry of streams, and the health of checkpoint writes.
//! Never: decides what is committed (that is [`crate::ack`]); writes the file from two places
//! at once.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::ack::{self, DirtyList, Meta, SharedStream, StreamId, StreamState, StreamTracker};
use crate::health::HealthCheck;
use crate::telemetry::registry;

/// Version written into, and required from, the checkpoint file.
pub const FORMAT_VERSION: u32 = 1;
const FILE_NAME: &str = "checkpoints.json";
/// Temp files are `checkpoints.json.tmp.<pid>.<n>`.
const TMP_PREFIX: &str = "checkpoints.json.tmp";

/// A key saved in every checkpoint file since file sources keep the positions of rotated
/// files read to their end while those files are still there
/// (`source/file/generations.rs`). A loaded file without it was written by an older version,
/// which forgot those positions: their absence there says nothing.
const FINISHED_FILES_KEPT: &str = "sluice/finished-files-kept";

/// How long checkpoint writes must keep failing before `/health` reports it: long enough
/// that one slow or failed write on a busy disk does not flap it, short enough (50 tries at
/// the default 100 ms interval) that an orchestrator sees a full disk quickly.
pub const UNHEALTHY_AFTER: Duration = Duration::from_secs(5);
/// While writes keep failing, the ERROR line is repeated this often (not on every try).
const LOG_FAILURE_EVERY: Duration = Duration::from_secs(60);

/// One saved position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// Committed position within the stream (byte offset, sequence number).
    pub offset: u64,
    /// Source-specific data (file path, fingerprint length, ...).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub meta: Meta,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    version: u32,
    streams: BTreeMap<String, Position>,
}

#[derive(Default)]
struct Registry {
    /// Positions read from disk at start that no stream has claimed yet.
    loaded: BTreeMap<String, Position>,
    /// Live streams.
    streams: HashMap<String, Live>,
    /// The keys each live stream is saved under (a stream adopted under a second key is
    /// under both until one is tracked afresh or forgotten).
    keys_of: HashMap<StreamId, Vec<String>>,
    /// Live streams that changed since the last save (each names itself when it becomes
    /// dirty, see [`ack::StreamState`]).
    dirty: DirtyList,
    /// Each saved key's entry of the file, encoded (loaded and live keys, in key order).
    encoded: BTreeMap<String, Encoded>,
    /// Keys whose entries must go at the next write.
    forgotten: bool,
    /// The last write failed: the next save writes even if nothing changed since.
    unsaved: bool,
}

/// A live stream and the [`StreamState::changes`](ack) its entry in
/// [`Registry::encoded`] was encoded at (`None`: not yet). Kept beside the stream so that
/// finding the changed streams at a save visits the streams only: looking each key up in
/// the ordered map (its string comparisons) was most of a save with 10,000 files.
struct Live {
    stream: SharedStream,
    encoded_at: Option<u64>,
}

impl Registry {
    /// Saves `stream` under `key` from now on, in place of whatever was saved there; its
    /// entry is encoded at the next save.
    fn register(&mut self, key: &str, stream: &SharedStream) {
        self.loaded.remove(key);
        self.encoded.remove(key);
        self.unregister(key);
        let id = ack::stream_id(stream);
        self.keys_of.entry(id).or_default().push(key.to_owned());
        self.streams
            .insert(key.to_owned(), Live::new(stream.clone()));
        let mut state = ack::lock(stream);
        state.dirty = true;
        state.dirty_list = Some((self.dirty.clone(), id));
        drop(state);
        self.dirty_list().push(id);
    }

    /// Stops saving the live stream under `key`, if there is one.
    fn unregister(&mut self, key: &str) {
        let Some(live) = self.streams.remove(key) else {
            return;
        };
        let id = ack::stream_id(&live.stream);
        if let Some(keys) = self.keys_of.get_mut(&id) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.keys_of.remove(&id);
                ack::lock(&live.stream).dirty_list = None;
            }
        }
    }

    fn dirty_list(&self) -> MutexGuard<'_, Vec<StreamId>> {
        self.dirty
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Live {
    fn new(stream: SharedStream) -> Live {
        Live {
            stream,
            encoded_at: None,
        }
    }
}

/// One key's entry of the checkpoint file, `"<key>":{"offset":N,"meta":{…}}`.
struct Encoded {
    json: Vec<u8>,
}

impl Encoded {
    fn new(key: &str, offset: u64, meta: &Meta) -> Encoded {
        #[derive(Serialize)]
        struct Entry<'a> {
            offset: u64,
            #[serde(skip_serializing_if = "no_meta")]
            meta: &'a Meta,
        }
        fn no_meta(meta: &&Meta) -> bool {
            meta.is_empty()
        }
        let mut json = Vec::with_capacity(key.len() + 64);
        // Strings and integers always serialize: errors cannot happen here.
        let _ = serde_json::to_writer(&mut json, key);
        json.push(b':');
        let _ = serde_json::to_writer(&mut json, &Entry { offset, meta });
        Encoded { json }
    }
}

/// The writer's side, behind the lock every save holds.
struct Writer {
    /// Temp files made so far: the `<n>` of the next temp file's name.
    n_temp_files: u64,
    /// When the current run of failed writes began (`None` while writes succeed).
    failing_since: Option<Instant>,
    /// When the failure was last logged.
    logged_at: Option<Instant>,
    health: HealthCheck,
}

/// The agent's checkpoint registry. Cheap to clone; shared by every source.
#[derive(Clone)]
pub struct Checkpoints {
    path: Option<PathBuf>,
    registry: Arc<Mutex<Registry>>,
    /// Held from snapshot to rename: saves never overlap, whoever asks for them.
    writer: Arc<Mutex<Writer>>,
    /// The last successful write, or the last save that found nothing to write.
    last_write: Arc<Mutex<Instant>>,
    /// The loaded file's modification time: the last moment the previous run's positions
    /// were saved.
    loaded_at: Option<SystemTime>,
    /// The loaded file (if any) was written by a version that keeps finished files'
    /// positions ([`FINISHED_FILES_KEPT`]).
    finished_files_kept: bool,
    /// Each source (by key prefix) that ran in this process: when it stopped (`None`:
    /// still running). See [`Checkpoints::start_watching`].
    watching: Arc<Mutex<HashMap<String, Option<SystemTime>>>>,
    /// CPU nanoseconds the last save spent: collecting and encoding positions and writing
    /// the file (waiting for the disk is not counted: it costs no CPU and already paces
    /// saves).
    cost_nanos: Arc<AtomicU64>,
}

impl Checkpoints {
    /// Loads `<data_dir>/checkpoints.json`, creating `data_dir` if needed. A corrupt file is
    /// set aside and an empty registry returned; only an unusable `data_dir` is an error.
    /// Temp files left by an earlier run that crashed mid-write are removed (the caller
    /// holds the `data_dir` lock, so no other agent is writing them).
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(data_dir)?;
        remove_stale_temp_files(data_dir);
        let path = data_dir.join(FILE_NAME);
        let mut loaded_at = None;
        let mut loaded = match read_file(&path) {
            Ok(streams) => {
                loaded_at = fs::metadata(&path).and_then(|m| m.modified()).ok();
                streams
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(error) => {
                let aside = set_aside(&path);
                tracing::error!(
                    file = %path.display(),
                    kept_as = %aside.display(),
                    %error,
                    "checkpoint file unreadable; set aside, starting without saved positions"
                );
                BTreeMap::new()
            }
        };
        let finished_files_kept = loaded_at.is_none() || loaded.contains_key(FINISHED_FILES_KEPT);
        loaded.insert(
            FINISHED_FILES_KEPT.to_owned(),
            Position {
                offset: 0,
                meta: Meta::new(),
            },
        );
        let mut checkpoints = Self::with_loaded(Some(path), loaded);
        checkpoints.loaded_at = loaded_at;
        checkpoints.finished_files_kept = finished_files_kept;
        Ok(checkpoints)
    }

    /// A registry that never touches the disk (tests, benches, `validate`).
    pub fn in_memory() -> Self {
        Self::with_loaded(None, BTreeMap::new())
    }

    fn with_loaded(path: Option<PathBuf>, loaded: BTreeMap<String, Position>) -> Self {
        let encoded = loaded
            .iter()
            .map(|(key, pos)| (key.clone(), Encoded::new(key, pos.offset, &pos.meta)))
            .collect();
        Checkpoints {
            path,
            registry: Arc::new(Mutex::new(Registry {
                loaded,
                encoded,
                ..Registry::default()
            })),
            writer: Arc::new(Mutex::new(Writer {
                n_temp_files: 0,
                failing_since: None,
                logged_at: None,
                health: HealthCheck::new("agent/checkpoints"),
            })),
            last_write: Arc::new(Mutex::new(Instant::now())),
            loaded_at: None,
            finished_files_kept: true,
            watching: Arc::default(),
            cost_nanos: Arc::default(),
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The directory the checkpoint file is in (`None` for an in-memory registry).
    pub fn data_dir(&self) -> Option<&Path> {
        self.path.as_deref().and_then(Path::parent)
    }

    /// The saved position of `key`: from a live stream, or as loaded from disk.
    pub fn position(&self, key: &str) -> Option<Position> {
        let registry = self.registry();
        if let Some(live) = registry.streams.get(key) {
            let state = ack::lock(&live.stream);
            return Some(Position {
                offset: state.committed,
                meta: state.meta.clone(),
            });
        }
        registry.loaded.get(key).cloned()
    }

    /// Saved positions whose key starts with `prefix` (a source finding its streams).
    pub fn positions_with_prefix(&self, prefix: &str) -> Vec<(String, Position)> {
        let registry = self.registry();
        let mut out: Vec<(String, Position)> = registry
            .loaded
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, pos)| (key.clone(), pos.clone()))
            .collect();
        for (key, live) in &registry.streams {
            if key.starts_with(prefix) {
                let state = ack::lock(&live.stream);
                out.push((
                    key.clone(),
                    Position {
                        offset: state.committed,
                        meta: state.meta.clone(),
                    },
                ));
            }
        }
        out
    }

    /// Starts tracking `key` from position `start` (usually its saved position). The stream
    /// is saved from now on, with `meta` beside its position. Tracking a key again returns a
    /// tracker for a fresh stream state at `start` (e.g. after truncation).
    pub fn track(&self, key: &str, start: u64, meta: Meta) -> StreamTracker {
        let stream: SharedStream = Arc::new(Mutex::new(StreamState::new(start, meta)));
        self.registry().register(key, &stream);
        StreamTracker { stream }
    }

    /// Saves an existing stream under `key` from now on (its content moved to another file,
    /// e.g. a copytruncate copy: its pending acknowledgements commit there).
    pub fn adopt(&self, key: &str, tracker: &StreamTracker) {
        self.registry().register(key, &tracker.stream);
    }

    /// Stops saving `key` (a deleted file read to its end).
    pub fn forget(&self, key: &str) {
        let mut registry = self.registry();
        registry.loaded.remove(key);
        registry.unregister(key);
        registry.encoded.remove(key);
        registry.forgotten = true;
    }

    /// Time since the checkpoint file was last written, or found to need no write (nothing
    /// changed and no earlier write failed); since start if neither happened yet. While
    /// writes fail it keeps growing.
    pub fn age(&self) -> Duration {
        self.last_write
            .lock()
            .map(|at| at.elapsed())
            .unwrap_or_default()
    }

    /// The CPU time of the last save (collecting, encoding, writing; not the wait for the
    /// disk): the periodic writer paces itself by it.
    pub fn save_cost(&self) -> Duration {
        Duration::from_nanos(self.cost_nanos.load(Ordering::Relaxed))
    }

    /// How long checkpoint writes have been failing (`None` while they succeed).
    pub fn failing_for(&self) -> Option<Duration> {
        self.writer().failing_since.map(|since| since.elapsed())
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A source (key prefix `prefix`) starts reading: returns since when its saved
    /// positions may have missed changes to its files. That is when the source last stopped
    /// in this process (a reload, a restart after a failure), else when the previous run
    /// last saved (the loaded file's modification time); `None` with no checkpoint file, or
    /// while another instance of the source still runs (a reload whose old source has not
    /// stopped yet). A file modified at or after it may hold lines written while no position
    /// was kept for it: the file source looks there for rotations made meanwhile.
    pub fn start_watching(&self, prefix: &str) -> Option<SystemTime> {
        let mut watching = self.watching.lock().unwrap_or_else(|p| p.into_inner());
        match watching.insert(prefix.to_owned(), None) {
            Some(stopped) => stopped,
            None => self.loaded_at,
        }
    }

    /// Whether the positions loaded at start include those of rotated files read to their
    /// end that were still there when they were saved (this version keeps them; an older
    /// one forgot them). Only then does a missing position say a file was never read.
    pub fn finished_files_kept(&self) -> bool {
        self.finished_files_kept
    }

    /// A source (key prefix `prefix`) stopped reading: what it forgot was written before
    /// now.
    pub fn stop_watching(&self, prefix: &str) {
        let mut watching = self.watching.lock().unwrap_or_else(|p| p.into_inner());
        watching.insert(prefix.to_owned(), Some(SystemTime::now()));
    }

    fn mark_fresh(&self) {
        *self.last_write.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Writes the checkpoint file if anything changed, an earlier write failed, or `force`.
    /// Returns whether it wrote. Saves from several threads run one at a time; a failed one
    /// is counted, logged, reflected in `/health`, and retried by the next save.
    pub fn save(&self, force: bool) -> io::Result<bool> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let mut writer = self.writer();
        let started = thread_cpu_time();
        let result = self.save_locked(path, force, &mut writer);
        let cost = thread_cpu_time().saturating_sub(started);
        self.cost_nanos.store(
            u64::try_from(cost.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        writer.record(path, &result);
        result
    }

    fn save_locked(&self, path: &Path, force: bool, writer: &mut Writer) -> io::Result<bool> {
        let Some(body) = self.snapshot(force) else {
            self.mark_fresh();
            return Ok(false);
        };
        writer.n_temp_files += 1;
        let tmp = path.with_file_name(format!(
            "{TMP_PREFIX}.{}.{}",
            std::process::id(),
            writer.n_temp_files
        ));
        let result = write_atomically(path, &tmp, &body);
        match result {
            Ok(()) => {
                self.mark_fresh();
                Ok(true)
            }
            Err(error) => {
                // The snapshot cleared the dirty flags: keep the registry unsaved so the
                // next save writes it again.
                self.registry().unsaved = true;
                Err(error)
            }
        }
    }

    /// The file's body, or `None` when nothing changed since the last written snapshot (and
    /// not `force`). Checking for changes costs one lock per stream and allocates nothing,
    /// so it can run often; only the entries of changed streams are encoded again.
    fn snapshot(&self, force: bool) -> Option<Vec<u8>> {
        let mut guard = self.registry();
        let registry = &mut *guard;
        let mut changed = force;
        changed |= std::mem::take(&mut registry.forgotten);
        changed |= std::mem::take(&mut registry.unsaved);
        // Only the streams that named themselves dirty: a save's cost follows the streams
        // that changed, not the streams saved (locking each of 10,000 streams to look was
        // most of a save).
        let dirty = std::mem::take(&mut *registry.dirty_list());
        for id in dirty {
            let Some(keys) = registry.keys_of.get(&id) else {
                continue; // unregistered since
            };
            for key in keys {
                let Some(live) = registry.streams.get_mut(key) else {
                    continue;
                };
                let mut state = ack::lock(&live.stream);
                changed |= std::mem::take(&mut state.dirty);
                if live.encoded_at != Some(state.changes) {
                    let entry = Encoded::new(key, state.committed, &state.meta);
                    registry.encoded.insert(key.clone(), entry);
                    live.encoded_at = Some(state.changes);
                    changed = true;
                }
            }
        }
        if !changed {
            return None;
        }
        let size: usize = registry.encoded.values().map(|e| e.json.len() + 1).sum();
        let mut body = Vec::with_capacity(size + 40);
        body.extend_from_slice(format!("{{\"version\":{FORMAT_VERSION},\"streams\":{{").as_bytes());
        for (i, entry) in registry.encoded.values().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(&entry.json);
        }
        body.extend_from_slice(b"}}");
        Some(body)
    }
}

impl Writer {
    /// Counts a save's outcome and keeps the log and `/health` truthful about it.
    fn record(&mut self, path: &Path, result: &io::Result<bool>) {
        let writes = |result: &str| {
            registry().counter(
                "sluice_checkpoint_writes_total",
                "Checkpoint file writes, by result.",
                &[("result", result)],
            )
        };
        match result {
            Ok(false) => {}
            Ok(true) => {
                writes("ok").inc();
                if let Some(since) = self.failing_since.take() {
                    tracing::info!(
                        file = %path.display(),
                        failed_for_secs = since.elapsed().as_secs(),
                        "checkpoint write succeeded again"
                    );
                    self.logged_at = None;
                    self.health.ok();
                }
            }
            Err(error) => {
                writes("error").inc();
                let now = Instant::now();
                let since = *self.failing_since.get_or_insert(now);
                let failing_for = now.duration_since(since);
                if self
                    .logged_at
                    .is_none_or(|at| now.duration_since(at) >= LOG_FAILURE_EVERY)
                {
                    self.logged_at = Some(now);
                    tracing::error!(
                        file = %path.display(),
                        %error,
                        failing_for_secs = failing_for.as_secs(),
                        "checkpoint write failed; positions stay unsaved until a write succeeds"
                    );
                }
                if failing_for >= UNHEALTHY_AFTER {
                    self.health.fail(format!(
                        "checkpoint writes failing for {}s: {error}",
                        failing_for.as_secs()
                    ));
                }
            }
        }
    }
}

/// Removes `checkpoints.json.tmp*` files (left by a crash between create and rename).
fn remove_stale_temp_files(data_dir: &Path) {
    let Ok(entries) = fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            if let Err(error) = fs::remove_file(entry.path()) {
                tracing::warn!(file = %entry.path().display(), %error, "could not remove a stale checkpoint temp file");
            }
        }
    }
}

fn read_file(path: &Path) -> io::Result<BTreeMap<String, Position>> {
    let body = fs::read(path)?;
    let parsed: FileFormat =
        serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if parsed.version != FORMAT_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "checkpoint format version {} (this agent reads {FORMAT_VERSION})",
                parsed.version
            ),
        ));
    }
    Ok(parsed.streams)
}

fn set_aside(path: &Path) -> PathBuf {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let aside = path.with_extension(format!("json.corrupt-{seconds}"));
    if let Err(error) = fs::rename(path, &aside) {
        tracing::error!(file = %path.display(), %error, "could not set the corrupt checkpoint aside");
    }
    aside
}

/// The CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// tmp → fsync → rename → fsync(dir): after a crash the file is the old or the new version.
/// A temp file that was not renamed (a full disk) is removed.
fn write_atomically(path: &Path, tmp: &Path, body: &[u8]) -> io::Result<()> {
    let written = File::create_new(tmp).and_then(|mut file| {
        file.write_all(body)?;
        file.sync_all()?;
        fs::rename(tmp, path)
    });
    if let Err(error) = written {
        // Nothing to do if it is not there (create failed); the write's error is what counts.
        let _ = fs::remove_file(tmp);
        return Err(error);
    }
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(path: &str) -> Meta {
        let mut meta = Meta::new();
        meta.insert("path".into(), path.into());
        meta
    }

    #[test]
    fn saves_and_reloads_committed_positions() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        let tracker = checkpoints.track("p/file/abc", 0, meta("/var/log/a.log"));
        tracker.track(100).done();
        let pending = tracker.track(200);
        assert!(checkpoints.save(false).unwrap());
        drop(pending);
        let reopened = Checkpoints::open(dir.path()).unwrap();
        let position = reopened.position("p/file/abc").unwrap();
        assert_eq!(position.offset, 100);
        assert_eq!(position.meta["path"], "/var/log/a.log");
    }

    /// The file is what serde writes for the positions, after any mix of new, changed,
    /// re-tracked, adopted and forgotten streams, and positions loaded but not claimed.
    #[test]
    fn the_file_is_the_positions_encoded_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let loaded: BTreeMap<String, Position> = (0..5)
            .map(|i| {
                let key = format!("p/s/old-{i}");
                (
                    key.clone(),
                    Position {
                        offset: i,
                        meta: meta(&format!("/old/{i}\"x")),
                    },
                )
            })
            .collect();
        let checkpoints = Checkpoints::with_loaded(Some(path.clone()), loaded);
        let check = |checkpoints: &Checkpoints| {
            checkpoints.save(true).unwrap();
            let mut want = BTreeMap::new();
            for i in 0..5 {
                if let Some(pos) = checkpoints.position(&format!("p/s/old-{i}")) {
                    want.insert(format!("p/s/old-{i}"), pos);
                }
            }
            for (key, pos) in checkpoints.positions_with_prefix("p/s/new") {
                want.insert(key, pos);
            }
            let whole = serde_json::to_vec(&FileFormat {
                version: FORMAT_VERSION,
                streams: want,
            })
            .unwrap();
            assert_eq!(
                String::from_utf8(fs::read(&path).unwrap()).unwrap(),
                String::from_utf8(whole).unwrap()
            );
        };
        let a = checkpoints.track("p/s/new-a", 10, meta("/a"));
        let b = checkpoints.track("p/s/new-b", 0, Meta::new());
        let old = checkpoints.track("p/s/old-1", 100, meta("/old/1"));
        check(&checkpoints);
        a.track(20).done();
        b.set_meta(meta("/b renamed"));
        check(&checkpoints);
        // Tracked again (truncated): a fresh state from 0, however many changes the old had.
        let a = checkpoints.track("p/s/new-a", 0, meta("/a"));
        check(&checkpoints);
        checkpoints.adopt("p/s/new-c", &old);
        old.track(150).done();
        check(&checkpoints);
        checkpoints.forget("p/s/old-2");
        checkpoints.forget("p/s/new-b");
        check(&checkpoints);
        assert_eq!(checkpoints.position("p/s/new-c").unwrap().offset, 150);
        assert_eq!(checkpoints.position("p/s/new-a").unwrap().offset, 0);
        drop(a);
        // Reloads as written.
        let reloaded = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(reloaded.position("p/s/new-c").unwrap().offset, 150);
        assert_eq!(reloaded.position("p/s/old-1").unwrap().offset, 150);
        assert!(reloaded.position("p/s/old-2").is_none());
    }

    /// A save visits only the streams that named themselves dirty, so a change made while
    /// a save runs, on another thread, must still reach a later save: after the writers
    /// stop, one more save holds every stream's last position.
    #[test]
    fn changes_racing_saves_all_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        let trackers: Vec<StreamTracker> = (0..200)
            .map(|i| checkpoints.track(&format!("p/s/{i}"), 0, Meta::new()))
            .collect();
        std::thread::scope(|scope| {
            for half in trackers.chunks(100) {
                scope.spawn(move || {
                    for round in 1..=50u64 {
                        for (i, tracker) in half.iter().enumerate() {
                            if (i as u64 + round).is_multiple_of(7) || round == 50 {
                                tracker.track(round * 10).done();
                            }
                        }
                    }
                });
            }
            for _ in 0..50 {
                checkpoints.save(false).unwrap();
            }
        });
        checkpoints.save(false).unwrap();
        let reloaded = Checkpoints::open(dir.path()).unwrap();
        for i in 0..200 {
            assert_eq!(
                reloaded.position(&format!("p/s/{i}")).unwrap().offset,
                500,
                "stream {i}"
            );
        }
    }

    #[test]
    fn interrupted_write_leaves_previous_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        checkpoints.track("k", 0, Meta::new()).track(42).done();
        checkpoints.save(false).unwrap();
        // A crash after the temp file was written but before the rename.
        fs::write(
            dir.path().join("checkpoints.json.tmp"),
            b"{\"version\":1,\"str",
        )
        .unwrap();
        let reopened = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(reopened.position("k").unwrap().offset, 42);
    }

    #[test]
    fn garbage_file_is_set_aside_and_agent_starts() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), b"\x00\x01garbage").unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(checkpoints.position("k"), None);
        let kept: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with("checkpoints.json.corrupt-"))
            .collect();
        assert_eq!(kept.len(), 1, "the corrupt file is kept for inspection");
        checkpoints.track("k", 0, Meta::new()).track(7).done();
        assert!(checkpoints.save(false).unwrap());
    }

    #[test]
    fn unknown_version_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(FILE_NAME),
            br#"{"version":99,"streams":{}}"#,
        )
        .unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(checkpoints.position("k"), None);
        assert!(!dir.path().join(FILE_NAME).exists());
    }

    #[test]
    fn unclaimed_positions_are_kept_and_forget_removes() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        checkpoints.track("a", 0, Meta::new()).track(1).done();
        checkpoints.track("b", 0, Meta::new()).track(2).done();
        checkpoints.save(false).unwrap();
        let reopened = Checkpoints::open(dir.path()).unwrap();
        reopened.track("a", 1, Meta::new()).track(3).done();
        reopened.forget("a");
        reopened.save(false).unwrap();
        let third = Checkpoints::open(dir.path()).unwrap();
        assert_eq!(third.position("a"), None);
        assert_eq!(
            third.position("b").unwrap().offset,
            2,
            "b was not seen but is kept"
        );
    }

    #[test]
    fn a_file_from_an_older_version_says_finished_files_were_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Checkpoints::open(dir.path()).unwrap().finished_files_kept());
        fs::write(
            dir.path().join(FILE_NAME),
            br#"{"version":1,"streams":{"p/s/1-2":{"offset":5}}}"#,
        )
        .unwrap();
        let older = Checkpoints::open(dir.path()).unwrap();
        assert!(!older.finished_files_kept());
        assert_eq!(older.positions_with_prefix("p/s/").len(), 1);
        older.track("p/s/1-3", 0, Meta::new()).track(1).done();
        older.save(false).unwrap();
        let this = Checkpoints::open(dir.path()).unwrap();
        assert!(this.finished_files_kept());
        assert_eq!(this.positions_with_prefix("p/s/").len(), 2);
        assert_eq!(this.positions_with_prefix("p/").len(), 2);
    }

    fn temp_files(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with(TMP_PREFIX))
            .collect()
    }

    /// Regression (issue 15): the periodic writer and a forced save shared one temp file;
    /// one's rename took the other's file away (`No such file or directory`).
    #[test]
    fn concurrent_saves_never_fail() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        let tracker = checkpoints.track("k", 0, Meta::new());
        let savers: Vec<_> = [false, true]
            .into_iter()
            .map(|force| {
                let checkpoints = checkpoints.clone();
                let tracker = tracker.clone();
                std::thread::spawn(move || {
                    for n in 1..=200u64 {
                        if !force {
                            tracker.track(n).done();
                        }
                        checkpoints.save(force).expect("a save failed");
                    }
                })
            })
            .collect();
        for saver in savers {
            saver.join().unwrap();
        }
        checkpoints.save(false).unwrap();
        assert_eq!(
            read_file(&dir.path().join(FILE_NAME)).unwrap()["k"].offset,
            200
        );
        assert_eq!(checkpoints.failing_for(), None);
        assert!(temp_files(dir.path()).is_empty());
    }

    /// Regression (issue 15): a failed write had already cleared the dirty flags, so nothing
    /// saved those positions until something new was delivered; the age was reset anyway.
    #[test]
    fn failed_save_is_retried_by_the_next_save() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let checkpoints = Checkpoints::open(&data).unwrap();
        checkpoints.track("k", 0, Meta::new()).track(42).done();
        assert!(checkpoints.save(false).unwrap());
        std::thread::sleep(Duration::from_millis(10));
        // As root, permission bits do not stop a write: replace the directory with a file.
        fs::rename(&data, dir.path().join("moved")).unwrap();
        fs::write(&data, b"not a directory").unwrap();
        checkpoints.track("k2", 0, Meta::new()).track(7).done();
        assert!(checkpoints.save(false).is_err());
        assert!(
            checkpoints.save(false).is_err(),
            "retried, and failing again"
        );
        assert!(checkpoints.failing_for().is_some());
        assert!(
            checkpoints.age() >= Duration::from_millis(10),
            "a failed write does not make the checkpoint fresh"
        );

        fs::remove_file(&data).unwrap();
        fs::rename(dir.path().join("moved"), &data).unwrap();
        assert!(
            checkpoints.save(false).unwrap(),
            "written with nothing new delivered"
        );
        assert_eq!(checkpoints.failing_for(), None);
        assert!(!checkpoints.save(false).unwrap(), "then nothing is pending");
        let reopened = Checkpoints::open(&data).unwrap();
        assert_eq!(reopened.position("k2").unwrap().offset, 7);
    }

    #[test]
    fn failed_rename_removes_its_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        checkpoints.track("k", 0, Meta::new()).track(1).done();
        // A non-empty directory where the file goes: the rename fails after the temp
        // file was written.
        fs::create_dir_all(dir.path().join(FILE_NAME).join("x")).unwrap();
        assert!(checkpoints.save(false).is_err());
        assert_eq!(temp_files(dir.path()), Vec::<String>::new());
        fs::remove_dir_all(dir.path().join(FILE_NAME)).unwrap();
        assert!(checkpoints.save(false).unwrap());
    }

    #[test]
    fn temp_files_of_a_crashed_run_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("checkpoints.json.tmp.123.4"), b"{").unwrap();
        fs::write(dir.path().join("checkpoints.json.tmp"), b"{").unwrap();
        Checkpoints::open(dir.path()).unwrap();
        assert!(temp_files(dir.path()).is_empty());
    }
}
