//! The checkpoint file: committed stream positions, saved so a restart resumes where the
//! sinks left off.
//!
//! File format (`<data_dir>/checkpoints.json`), versioned JSON:
//! `{"version":1,"streams":{"<key>":{"offset":N,"meta":{...}}}}`. Keys are
//! `<pipeline>/<source>/<stream>`; `meta` is the source's own data (e.g. the file path).
//!
//! Writes are atomic and durable: write `checkpoints.json.tmp`, fsync it, rename it over
//! `checkpoints.json`, fsync the directory. A crash at any point leaves either the old or the
//! new file, never a torn one. A file that cannot be read or parsed is renamed to
//! `checkpoints.json.corrupt-<unix seconds>`, logged at ERROR, and the agent starts with no
//! positions (files then start as their source's `read_from` says).
//!
//! Owns: loading, saving, and the registry of streams. Never: decides what is committed
//! (that is [`crate::ack`]).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::ack::{self, SharedStream, StreamState, StreamTracker};
use crate::event::Map;

/// Version written into, and required from, the checkpoint file.
pub const FORMAT_VERSION: u32 = 1;
const FILE_NAME: &str = "checkpoints.json";

/// One saved position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    /// Committed position within the stream (byte offset, sequence number).
    pub offset: u64,
    /// Source-specific data (file path, fingerprint length, ...).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub meta: serde_json::Map<String, serde_json::Value>,
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
    streams: HashMap<String, SharedStream>,
    /// Keys whose entries must go at the next write.
    forgotten: bool,
}

/// The agent's checkpoint registry. Cheap to clone; shared by every source.
#[derive(Clone)]
pub struct Checkpoints {
    path: Option<PathBuf>,
    registry: Arc<Mutex<Registry>>,
    last_write: Arc<Mutex<Instant>>,
    /// Nanoseconds the last write spent collecting and encoding positions (CPU work; the
    /// fsyncs are not counted: waiting for the disk costs no CPU and already paces writes).
    encode_nanos: Arc<std::sync::atomic::AtomicU64>,
}

impl Checkpoints {
    /// Loads `<data_dir>/checkpoints.json`, creating `data_dir` if needed. A corrupt file is
    /// set aside and an empty registry returned; only an unusable `data_dir` is an error.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(data_dir)?;
        let path = data_dir.join(FILE_NAME);
        let loaded = match read_file(&path) {
            Ok(streams) => streams,
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
        Ok(Self::with_loaded(Some(path), loaded))
    }

    /// A registry that never touches the disk (tests, benches, `validate`).
    pub fn in_memory() -> Self {
        Self::with_loaded(None, BTreeMap::new())
    }

    fn with_loaded(path: Option<PathBuf>, loaded: BTreeMap<String, Position>) -> Self {
        Checkpoints {
            path,
            registry: Arc::new(Mutex::new(Registry {
                loaded,
                ..Registry::default()
            })),
            last_write: Arc::new(Mutex::new(Instant::now())),
            encode_nanos: Arc::default(),
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The saved position of `key`: from a live stream, or as loaded from disk.
    pub fn position(&self, key: &str) -> Option<Position> {
        let registry = self.registry();
        if let Some(stream) = registry.streams.get(key) {
            let state = ack::lock(stream);
            return Some(Position {
                offset: state.committed,
                meta: to_json_map(&state.meta),
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
        for (key, stream) in &registry.streams {
            if key.starts_with(prefix) {
                let state = ack::lock(stream);
                out.push((
                    key.clone(),
                    Position {
                        offset: state.committed,
                        meta: to_json_map(&state.meta),
                    },
                ));
            }
        }
        out
    }

    /// Starts tracking `key` from position `start` (usually its saved position). The stream
    /// is saved from now on, with `meta` beside its position. Tracking a key again returns a
    /// tracker for a fresh stream state at `start` (e.g. after truncation).
    pub fn track(&self, key: &str, start: u64, meta: Map) -> StreamTracker {
        let stream: SharedStream = Arc::new(Mutex::new(StreamState::new(start, meta)));
        let mut registry = self.registry();
        registry.loaded.remove(key);
        registry.streams.insert(key.to_owned(), stream.clone());
        StreamTracker { stream }
    }

    /// Saves an existing stream under `key` from now on (its content moved to another file,
    /// e.g. a copytruncate copy: its pending acknowledgements commit there).
    pub fn adopt(&self, key: &str, tracker: &StreamTracker) {
        let mut registry = self.registry();
        registry.loaded.remove(key);
        registry
            .streams
            .insert(key.to_owned(), tracker.stream.clone());
        ack::lock(&tracker.stream).dirty = true;
    }

    /// Stops saving `key` (a deleted file read to its end).
    pub fn forget(&self, key: &str) {
        let mut registry = self.registry();
        registry.loaded.remove(key);
        registry.streams.remove(key);
        registry.forgotten = true;
    }

    /// Seconds since the checkpoint file was last written (or since start).
    pub fn age(&self) -> Duration {
        self.last_write
            .lock()
            .map(|at| at.elapsed())
            .unwrap_or_default()
    }

    /// How long the last write spent collecting and encoding positions (not counting the
    /// disk): the writer paces itself by it.
    pub fn encode_cost(&self) -> Duration {
        Duration::from_nanos(self.encode_nanos.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Writes the checkpoint file if anything changed (or `force`). Returns whether it wrote.
    pub fn save(&self, force: bool) -> io::Result<bool> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let started = Instant::now();
        let Some(streams) = self.snapshot(force) else {
            *self.last_write.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            return Ok(false);
        };
        let body = serde_json::to_vec(&FileFormat {
            version: FORMAT_VERSION,
            streams,
        })
        .map_err(io::Error::other)?;
        self.encode_nanos.store(
            u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
        write_atomically(path, &body)?;
        *self.last_write.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(true)
    }

    /// All positions to save, or `None` when nothing changed since the last snapshot (and
    /// not `force`). Checking for changes costs one lock per stream and allocates nothing,
    /// so it can run often.
    fn snapshot(&self, force: bool) -> Option<BTreeMap<String, Position>> {
        let mut registry = self.registry();
        let mut changed = std::mem::take(&mut registry.forgotten) || force;
        for stream in registry.streams.values() {
            changed |= std::mem::take(&mut ack::lock(stream).dirty);
        }
        if !changed {
            return None;
        }
        let mut streams = registry.loaded.clone();
        for (key, stream) in &registry.streams {
            let state = ack::lock(stream);
            streams.insert(
                key.clone(),
                Position {
                    offset: state.committed,
                    meta: to_json_map(&state.meta),
                },
            );
        }
        Some(streams)
    }
}

fn to_json_map(meta: &Map) -> serde_json::Map<String, serde_json::Value> {
    meta.iter()
        .map(|(k, v)| (k.to_owned(), serde_json::to_value(v).unwrap_or_default()))
        .collect()
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

/// tmp → fsync → rename → fsync(dir): after a crash the file is the old or the new version.
pub fn write_atomically(path: &Path, body: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    {
        let mut file = File::create(&tmp)?;
        file.write_all(body)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(path: &str) -> Map {
        let mut meta = Map::new();
        meta.insert("path", path.into());
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

    #[test]
    fn interrupted_write_leaves_previous_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path()).unwrap();
        checkpoints.track("k", 0, Map::new()).track(42).done();
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
        checkpoints.track("k", 0, Map::new()).track(7).done();
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
        checkpoints.track("a", 0, Map::new()).track(1).done();
        checkpoints.track("b", 0, Map::new()).track(2).done();
        checkpoints.save(false).unwrap();
        let reopened = Checkpoints::open(dir.path()).unwrap();
        reopened.track("a", 1, Map::new()).track(3).done();
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
}
