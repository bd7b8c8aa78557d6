//! Reading one file: bytes → lines (bounded by `max_line_bytes`) → container-format
//! decoding → multiline → events, in batches with one acknowledgement each.
//!
//! Offsets: `offset` is how far the file has been read. A batch's acknowledgement ends at
//! the start of the oldest thing still being assembled (a line without its newline yet, a
//! partial CRI/docker line, a pending multiline record), or at `offset` when nothing is.
//! So a checkpoint never passes a line that has not been sent whole.
//!
//! Memory: a line longer than `max_line_bytes` keeps only its first `max_line_bytes`
//! bytes (`oversize: truncate`) or none (`drop`); the rest is skipped as it is read.
//!
//! Split by job: `lines.rs` (bytes into lines), `events.rs` (lines into events: format,
//! multiline, read times), `settings.rs` (shared settings and counters); this file holds
//! the per-file state, its handle and identity changes, and the read loop into batches.
//!
//! Owns: per-file reading state. Never: discovers files or decides identity.

mod events;
mod lines;
mod settings;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

pub use self::lines::{LineSplitter, RawLine};
pub use self::settings::{LineFormat, Oversize, ReadCounters, ReadSettings};
use super::stamps::StampRecord;
use crate::ack::StreamTracker;
use crate::batch::Batch;
use crate::event::{self, Event, Map, StreamName, Timestamp, Value};

use super::identity::{Fingerprint, Tail};
use super::kubernetes::{self, PodLabels};
use super::multiline::{Multiline, Piece};
use super::recovery::GzipInput;

/// The reading state of one file.
pub struct Tailer {
    /// Identity string (`<dev>-<ino>`), the origin stream of its events.
    pub key: StreamName,
    /// Device and inode.
    pub dev_ino: (u64, u64),
    /// Path it was last seen at.
    pub path: PathBuf,
    path_text: String,
    /// The open handle; `None` while closed for being idle.
    pub file: Option<File>,
    /// A gzip rotation read through its decompressor (then `file` is `None` and `offset`
    /// counts decompressed bytes). Never tailed: read to its end, then let go.
    pub gzip: Option<Box<GzipInput>>,
    /// Hash of the bytes before a recent read position (saved beside the checkpoint).
    pub tail: Option<Tail>,
    /// The file's size when last looked at (what a lost file held: the loss is counted).
    pub size_seen: u64,
    /// The read time given to the last line without a time of its own (nanoseconds): each
    /// next one gets a later one, so back-ends that sort by time keep the file's order.
    last_stamp: i64,
    /// Read times of batches sent before a crash (from the journal): lines read again get
    /// the times they had.
    replay: VecDeque<StampRecord>,
    /// The read times of the batch being made, journaled before it is handed on.
    fresh: Option<StampRecord>,
    /// Bytes read so far (everything before has been split).
    pub offset: u64,
    /// Fingerprint of its first bytes.
    pub fingerprint: Fingerprint,
    /// Acknowledgements of its batches.
    pub tracker: StreamTracker,
    /// Partition key for its batches.
    pub stream_hash: u64,
    /// Last time a read returned data (or the file was opened).
    pub last_active: Instant,
    /// The last read reached the end of the file.
    pub at_eof: bool,
    /// Since when no matched path points at it (rotated away or deleted).
    pub gone_since: Option<Instant>,
    splitter: LineSplitter,
    partials: [Option<Piece>; 2],
    multiline: Option<Multiline>,
    labels: Option<PodLabels>,
    /// The fields every line of the file carries (`file`, and a pod log's `namespace`,
    /// `pod`, `container`, `pod_uid`), shared by its events instead of copied into each.
    shared_fields: Arc<event::Shared>,
    /// `shared_fields` with `stream` (`stdout`, `stderr`) added, made at the first line of
    /// each stream while the file is open: a container log's lines then carry no field of
    /// their own (no allocation per line, and nothing a transform or sink has to look
    /// through first).
    stream_fields: [Option<Arc<event::Shared>>; 2],
}

impl Tailer {
    /// State for `file` at `path`, reading from `offset`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: String,
        dev_ino: (u64, u64),
        path: PathBuf,
        file: Option<File>,
        offset: u64,
        fingerprint: Fingerprint,
        tracker: StreamTracker,
        settings: &ReadSettings,
    ) -> Self {
        let path_text = path.to_string_lossy().into_owned();
        let replay = settings.stamps.take_loaded(&key).into();
        let labels = kubernetes::pod_labels(&path_text);
        Tailer {
            stream_hash: crate::hash_str(&key),
            key: key.into(),
            dev_ino,
            shared_fields: shared_fields(&path_text, labels.as_ref()),
            stream_fields: [None, None],
            labels,
            path_text,
            path,
            file,
            gzip: None,
            tail: None,
            size_seen: offset,
            last_stamp: i64::MIN,
            replay,
            fresh: None,
            offset,
            fingerprint,
            tracker,
            last_active: Instant::now(),
            at_eof: false,
            gone_since: None,
            splitter: LineSplitter::new(settings.max_line_bytes),
            partials: [None, None],
            multiline: settings
                .multiline
                .clone()
                .map(|rule| Multiline::new(rule, settings.max_line_bytes)),
        }
    }

    /// The path it is read as (for fields and meta).
    pub fn set_path(&mut self, path: PathBuf) {
        self.path_text = path.to_string_lossy().into_owned();
        self.labels = kubernetes::pod_labels(&self.path_text);
        self.shared_fields = shared_fields(&self.path_text, self.labels.as_ref());
        self.stream_fields = [None, None];
        self.path = path;
    }

    /// Whether a handle (plain or gzip) is open.
    pub fn is_open(&self) -> bool {
        self.file.is_some() || self.gzip.is_some()
    }

    /// Closes the handle (idle, evicted, let go).
    pub fn close(&mut self) {
        self.file = None;
        self.gzip = None;
        // Made again at the next line: memory for them follows open files, not watched ones.
        self.stream_fields = [None, None];
    }

    /// Moves this reading state to another file holding the same content (a copytruncate
    /// copy, a compressed rotation): identity and handle change; the path its events name,
    /// the offset, what is being assembled and the acknowledgements go on.
    pub fn move_to(&mut self, key: String, dev_ino: (u64, u64)) {
        self.key = key.into();
        self.dev_ino = dev_ino;
        self.close();
        self.at_eof = false;
    }

    /// The path as text.
    pub fn path_text(&self) -> &str {
        &self.path_text
    }

    /// Restarts reading at `offset` with a fresh tracker (truncation, replaced content).
    pub fn restart(&mut self, offset: u64, tracker: StreamTracker) {
        self.offset = offset;
        self.tracker = tracker;
        self.replay.clear();
        self.splitter.reset();
        self.partials = [None, None];
        if let Some(multiline) = &mut self.multiline {
            let mut discard = Vec::new();
            multiline.flush(&mut discard);
        }
    }

    /// Where the next acknowledgement may end: nothing being assembled lies before it.
    pub fn committable_end(&self) -> u64 {
        let mut end = self.splitter.partial_start().unwrap_or(self.offset);
        for partial in self.partials.iter().flatten() {
            end = end.min(partial.start);
        }
        if let Some(start) = self.multiline.as_ref().and_then(Multiline::pending_start) {
            end = end.min(start);
        }
        end
    }

    /// Reads up to one batch worth of data. Returns the batch (if any events or progress)
    /// and the number of bytes read (0 at the end of the file).
    pub fn read_batch(
        &mut self,
        settings: &ReadSettings,
        counters: &ReadCounters,
        buf: &mut [u8],
    ) -> io::Result<(Option<Batch>, usize)> {
        if let Some(mut input) = self.gzip.take() {
            let result = self.read_from(&mut *input, settings, counters, buf);
            self.gzip = Some(input);
            return result;
        }
        let Some(mut file) = self.file.take() else {
            return Ok((None, 0));
        };
        let result = self.read_from(&mut file, settings, counters, buf);
        self.file = Some(file);
        result
    }

    fn read_from(
        &mut self,
        file: &mut impl Read,
        settings: &ReadSettings,
        counters: &ReadCounters,
        buf: &mut [u8],
    ) -> io::Result<(Option<Batch>, usize)> {
        let now = Instant::now();
        let stamp = Timestamp::now();
        let mut pieces: Vec<Piece> = Vec::new();
        let mut events: Vec<Event> = Vec::new();
        let mut n_read = 0usize;
        let mut n_lines = 0usize;
        while n_read < settings.batch_bytes && n_lines < settings.batch_lines {
            let n = match file.read(buf) {
                Ok(n) => n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            };
            if n == 0 {
                self.at_eof = true;
                break;
            }
            self.at_eof = false;
            let at = self.offset;
            self.offset += n as u64;
            n_read += n;
            let mut splitter = std::mem::take(&mut self.splitter);
            splitter.feed(&buf[..n], at, |line| {
                n_lines += 1;
                self.take_line(line, settings, counters, &mut pieces);
            });
            self.splitter = splitter;
            self.assemble_events(&mut pieces, settings, stamp, &mut events);
        }
        if n_read > 0 {
            self.last_active = now;
            counters.bytes_read.add(n_read as u64);
            counters.lines_read.add(n_lines as u64);
        }
        if let Some(multiline) = &mut self.multiline {
            multiline.flush_expired(now, &mut pieces);
            self.assemble_events(&mut pieces, settings, stamp, &mut events);
        }
        Ok((self.batch(events, settings), n_read))
    }

    /// Emits everything still being assembled (the file is let go, or a timeout passed).
    pub fn finish(&mut self, settings: &ReadSettings, counters: &ReadCounters) -> Option<Batch> {
        let now = Instant::now();
        let mut pieces = Vec::new();
        let mut splitter = std::mem::take(&mut self.splitter);
        let end = self.offset;
        splitter.finish(end, |line| {
            counters.lines_read.inc();
            self.take_line(line, settings, counters, &mut pieces);
        });
        self.splitter = splitter;
        for slot in 0..2 {
            if let Some(partial) = self.partials[slot].take() {
                pieces.push(partial);
            }
        }
        if let Some(multiline) = &mut self.multiline {
            let mut records = Vec::new();
            for piece in pieces.drain(..) {
                multiline.push(piece, now, &mut records);
            }
            multiline.flush(&mut records);
            pieces = records;
        }
        let mut events = Vec::new();
        self.pieces_to_events(pieces, settings, Timestamp::now(), &mut events);
        self.batch(events, settings)
    }

    /// Emits a multiline record that waited longer than its timeout.
    pub fn flush_expired(&mut self, settings: &ReadSettings) -> Option<Batch> {
        let multiline = self.multiline.as_mut()?;
        let mut pieces = Vec::new();
        multiline.flush_expired(Instant::now(), &mut pieces);
        if pieces.is_empty() {
            return None;
        }
        let mut events = Vec::new();
        self.pieces_to_events(pieces, settings, Timestamp::now(), &mut events);
        self.batch(events, settings)
    }

    /// The batch of `events`, its read times journaled first.
    fn batch(&mut self, events: Vec<Event>, settings: &ReadSettings) -> Option<Batch> {
        if let Some(record) = self.fresh.take() {
            settings.stamps.append(&self.key, record);
        }
        if events.is_empty() {
            return None;
        }
        let end = self.committable_end();
        Some(Batch::with_ack(events, self.tracker.track(end)))
    }
}

/// What every event of the file at `path` carries.
fn shared_fields(path: &str, labels: Option<&PodLabels>) -> Arc<event::Shared> {
    let mut fields = Map::with_capacity(5);
    fields.insert("file", Value::from(path));
    if let Some(labels) = labels {
        fields.insert("namespace", Value::from(labels.namespace.as_str()));
        fields.insert("pod", Value::from(labels.pod.as_str()));
        fields.insert("container", Value::from(labels.container.as_str()));
        if let Some(uid) = &labels.pod_uid {
            fields.insert("pod_uid", Value::from(uid.as_str()));
        }
    }
    event::Shared::new(fields)
}
