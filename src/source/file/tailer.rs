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
//! Owns: per-file reading state. Never: discovers files or decides identity.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::Instant;

use super::stamps::{StampJournal, StampRecord};
use crate::ack::StreamTracker;
use crate::batch::Batch;
use crate::event::{Event, LogEvent, Map, Origin, StreamName, Timestamp, Value};
use crate::telemetry::{ComponentMetrics, Counter};

use super::identity::{Fingerprint, Tail};
use super::kubernetes::{self, PodLabels};
use super::multiline::{floor_char_boundary, Multiline, MultilineRule, Piece};
use super::recovery::GzipInput;

/// What to do with a line longer than `max_line_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Oversize {
    /// Keep the first `max_line_bytes` bytes (counted).
    #[default]
    Truncate,
    /// Drop the line (counted).
    Drop,
}

/// The line format of the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineFormat {
    /// Plain text lines.
    #[default]
    None,
    /// Kubernetes CRI (containerd, CRI-O) lines, partial lines reassembled.
    Cri,
    /// Docker json-file lines, partial lines reassembled.
    Docker,
}

/// Settings every file of one source shares.
#[derive(Debug)]
pub struct ReadSettings {
    /// Longest line kept, in bytes.
    pub max_line_bytes: usize,
    /// Truncate or drop longer lines.
    pub oversize: Oversize,
    /// Plain, CRI or docker.
    pub format: LineFormat,
    /// Multiline rule, if any.
    pub multiline: Option<MultilineRule>,
    /// Field for the line's byte offset, if any.
    pub offset_field: Option<String>,
    /// Most lines per batch (a batch may pass it by one read chunk).
    pub batch_lines: usize,
    /// Most bytes read per batch and per turn.
    pub batch_bytes: usize,
    /// Where each batch's read times are kept, so a replay gets the same ones.
    pub stamps: StampJournal,
}

/// Counters of one source.
#[derive(Clone, Debug)]
pub struct ReadCounters {
    /// Bytes read from files.
    pub bytes_read: Counter,
    /// Lines read (physical lines).
    pub lines_read: Counter,
    /// Lines cut at `max_line_bytes`.
    pub lines_truncated: Counter,
    /// Lines dropped for being longer than `max_line_bytes`.
    pub lines_dropped: Counter,
    /// Lines with invalid UTF-8 (kept, with U+FFFD).
    pub invalid_utf8: Counter,
    /// CRI / docker lines that did not parse (kept as plain text).
    pub parse_errors: Counter,
    /// Events produced.
    pub events_in: Counter,
}

impl ReadCounters {
    /// Registers the counters for a source.
    pub fn new(metrics: &ComponentMetrics) -> Self {
        ReadCounters {
            bytes_read: metrics.counter(
                "sluice_file_bytes_read_total",
                "Bytes read from files.",
                &[],
            ),
            lines_read: metrics.counter(
                "sluice_file_lines_read_total",
                "Lines read from files.",
                &[],
            ),
            lines_truncated: metrics.counter(
                "sluice_file_lines_truncated_total",
                "Lines cut at max_line_bytes.",
                &[],
            ),
            lines_dropped: metrics.dropped("line_too_long"),
            invalid_utf8: metrics.counter(
                "sluice_file_invalid_utf8_total",
                "Lines with invalid UTF-8, kept with replacement characters.",
                &[],
            ),
            parse_errors: metrics.counter(
                "sluice_file_format_errors_total",
                "CRI or docker lines that did not parse, kept as plain text.",
                &[],
            ),
            events_in: metrics.events_in.clone(),
        }
    }
}

/// Splits a byte stream into lines, keeping at most `max` bytes of each.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    partial_start: Option<u64>,
    partial_len: u64,
    max: usize,
}

/// One line from [`LineSplitter`].
pub struct RawLine<'a> {
    /// The kept bytes (without `\n` or `\r\n`).
    pub bytes: &'a [u8],
    /// Offset of the first byte.
    pub start: u64,
    /// Offset just past the newline.
    pub end: u64,
    /// The line was longer than `max` and cut.
    pub truncated: bool,
}

impl LineSplitter {
    /// A splitter keeping at most `max` bytes per line.
    pub fn new(max: usize) -> Self {
        LineSplitter {
            max,
            ..Self::default()
        }
    }

    /// Where the unfinished line starts, if one is buffered.
    pub fn partial_start(&self) -> Option<u64> {
        self.partial_start
    }

    /// Forgets any unfinished line (after truncation).
    pub fn reset(&mut self) {
        self.partial.clear();
        self.partial_start = None;
        self.partial_len = 0;
    }

    /// Splits `chunk`, read at file offset `at`, calling `emit` for each complete line.
    pub fn feed(&mut self, chunk: &[u8], at: u64, mut emit: impl FnMut(RawLine<'_>)) {
        let mut rest = chunk;
        let mut rest_at = at;
        while let Some(newline) = memchr::memchr(b'\n', rest) {
            let end = rest_at + newline as u64 + 1;
            match self.partial_start.take() {
                None => {
                    let (bytes, truncated) = cut(&rest[..newline], self.max);
                    emit(RawLine {
                        bytes: strip_cr(bytes, truncated),
                        start: rest_at,
                        end,
                        truncated,
                    });
                }
                Some(start) => {
                    self.keep(&rest[..newline]);
                    let truncated = self.partial_len > self.max as u64;
                    emit(RawLine {
                        bytes: strip_cr(&self.partial, truncated),
                        start,
                        end,
                        truncated,
                    });
                    self.partial.clear();
                    self.partial_len = 0;
                }
            }
            rest = &rest[newline + 1..];
            rest_at = end;
        }
        if !rest.is_empty() {
            if self.partial_start.is_none() {
                self.partial_start = Some(rest_at);
            }
            self.keep(rest);
        }
    }

    /// Emits the unfinished line, if any, as if it ended at `end` (a file let go).
    pub fn finish(&mut self, end: u64, mut emit: impl FnMut(RawLine<'_>)) {
        if let Some(start) = self.partial_start.take() {
            let truncated = self.partial_len > self.max as u64;
            emit(RawLine {
                bytes: &self.partial,
                start,
                end,
                truncated,
            });
        }
        self.partial.clear();
        self.partial_len = 0;
    }

    fn keep(&mut self, bytes: &[u8]) {
        self.partial_len += bytes.len() as u64;
        let room = self.max.saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

fn cut(bytes: &[u8], max: usize) -> (&[u8], bool) {
    if bytes.len() > max {
        (&bytes[..max], true)
    } else {
        (bytes, false)
    }
}

fn strip_cr(bytes: &[u8], truncated: bool) -> &[u8] {
    match bytes.split_last() {
        Some((b'\r', head)) if !truncated => head,
        _ => bytes,
    }
}

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
        Tailer {
            stream_hash: crate::hash_str(&key),
            key: key.into(),
            dev_ino,
            labels: kubernetes::pod_labels(&path_text),
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

    /// One physical line: oversize rule, UTF-8, container format.
    fn take_line(
        &mut self,
        line: RawLine<'_>,
        settings: &ReadSettings,
        counters: &ReadCounters,
        pieces: &mut Vec<Piece>,
    ) {
        if line.truncated {
            if settings.oversize == Oversize::Drop {
                counters.lines_dropped.inc();
                return;
            }
            counters.lines_truncated.inc();
        }
        let text = match std::str::from_utf8(line.bytes) {
            Ok(text) => text.to_owned(),
            Err(_) => {
                counters.invalid_utf8.inc();
                String::from_utf8_lossy(line.bytes).into_owned()
            }
        };
        let piece = Piece {
            text,
            start: line.start,
            end: line.end,
            timestamp: None,
            stream: None,
            truncated: line.truncated,
        };
        match settings.format {
            LineFormat::None => pieces.push(piece),
            LineFormat::Cri | LineFormat::Docker => {
                self.take_container_line(piece, settings, counters, pieces)
            }
        }
    }

    fn take_container_line(
        &mut self,
        piece: Piece,
        settings: &ReadSettings,
        counters: &ReadCounters,
        pieces: &mut Vec<Piece>,
    ) {
        let parsed = match settings.format {
            LineFormat::Cri => kubernetes::parse_cri(&piece.text).map(|line| {
                let stream = if line.stream == "stderr" {
                    "stderr"
                } else {
                    "stdout"
                };
                (
                    line.timestamp,
                    stream,
                    line.partial,
                    line.message.into_owned(),
                )
            }),
            _ => kubernetes::parse_docker(&piece.text).map(|line| {
                (
                    line.timestamp,
                    line.stream,
                    line.partial,
                    line.message.into_owned(),
                )
            }),
        };
        let Some((timestamp, stream, partial, message)) = parsed else {
            counters.parse_errors.inc();
            pieces.push(piece);
            return;
        };
        let slot = usize::from(stream == "stderr");
        let assembled = match self.partials[slot].take() {
            Some(mut head) => {
                let room = settings.max_line_bytes.saturating_sub(head.text.len());
                if message.len() > room {
                    head.truncated = true;
                }
                head.text
                    .push_str(&message[..floor_char_boundary(&message, room)]);
                head.end = piece.end;
                head
            }
            None => Piece {
                text: message,
                start: piece.start,
                end: piece.end,
                timestamp,
                stream: Some(stream),
                truncated: piece.truncated,
            },
        };
        if partial {
            self.partials[slot] = Some(assembled);
        } else {
            pieces.push(assembled);
        }
    }

    fn assemble_events(
        &mut self,
        pieces: &mut Vec<Piece>,
        settings: &ReadSettings,
        stamp: Timestamp,
        events: &mut Vec<Event>,
    ) {
        if pieces.is_empty() {
            return;
        }
        let taken = std::mem::take(pieces);
        let records = match &mut self.multiline {
            Some(multiline) => {
                let now = Instant::now();
                let mut records = Vec::with_capacity(taken.len());
                for piece in taken {
                    multiline.push(piece, now, &mut records);
                }
                records
            }
            None => taken,
        };
        self.pieces_to_events(records, settings, stamp, events);
    }

    /// The time of a line without one, starting at `offset`, read at `now`: the time it got
    /// before a crash if the journal has it; else its batch's base (`now`, or later than the
    /// previous line) plus its distance in bytes from the batch's first line. Strictly
    /// increasing in file order, and the same when the line is read again (see [`stamps`]).
    ///
    /// [`stamps`]: super::stamps
    fn stamp_of(&mut self, offset: u64, now: i64) -> i64 {
        while self.replay.front().is_some_and(|r| r.last < offset) {
            self.replay.pop_front();
        }
        if let Some(stamp) = self.replay.front().and_then(|r| r.stamp(offset)) {
            self.last_stamp = stamp;
            return stamp;
        }
        let next = self.last_stamp.saturating_add(1);
        let record = self.fresh.get_or_insert(StampRecord {
            first: offset,
            last: offset,
            base: now.max(next),
        });
        record.last = record.last.max(offset);
        // A line before the batch's first (not expected) gets a time that is not journaled.
        let stamp = record.stamp(offset).unwrap_or(next).max(next);
        self.last_stamp = stamp;
        stamp
    }

    fn pieces_to_events(
        &mut self,
        pieces: Vec<Piece>,
        settings: &ReadSettings,
        stamp: Timestamp,
        events: &mut Vec<Event>,
    ) {
        events.reserve(pieces.len());
        for piece in pieces {
            let mut fields = Map::new();
            fields.insert("file", Value::String(self.path_text.clone()));
            if let Some(name) = &settings.offset_field {
                fields.insert(name.clone(), Value::Int(piece.start as i64));
            }
            if let Some(stream) = piece.stream {
                fields.insert("stream", Value::from(stream));
            }
            if let Some(labels) = &self.labels {
                fields.insert("namespace", Value::from(labels.namespace.as_str()));
                fields.insert("pod", Value::from(labels.pod.as_str()));
                fields.insert("container", Value::from(labels.container.as_str()));
                if let Some(uid) = &labels.pod_uid {
                    fields.insert("pod_uid", Value::from(uid.as_str()));
                }
            }
            let timestamp = match piece.timestamp {
                Some(timestamp) => timestamp,
                None => Timestamp(self.stamp_of(piece.start, stamp.0)),
            };
            events.push(Event::Log(LogEvent {
                timestamp,
                message: Value::String(piece.text),
                fields,
                origin: Some(Origin {
                    stream: self.key.clone(),
                    offset: piece.start,
                }),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(chunks: &[&[u8]], max: usize, expected: &[(&str, u64, u64, bool)]) {
        let mut splitter = LineSplitter::new(max);
        let mut got = Vec::new();
        let mut at = 0;
        for chunk in chunks {
            splitter.feed(chunk, at, |line| {
                got.push((
                    String::from_utf8_lossy(line.bytes).into_owned(),
                    line.start,
                    line.end,
                    line.truncated,
                ))
            });
            at += chunk.len() as u64;
        }
        let expected: Vec<_> = expected
            .iter()
            .map(|(t, s, e, c)| ((*t).to_owned(), *s, *e, *c))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn splits_lines() {
        check(
            &[b"a\nbb\n"],
            10,
            &[("a", 0, 2, false), ("bb", 2, 5, false)],
        );
        check(
            &[b"a", b"b\nc", b"\n"],
            10,
            &[("ab", 0, 3, false), ("c", 3, 5, false)],
        );
        check(&[b"x\r\n\n"], 10, &[("x", 0, 3, false), ("", 3, 4, false)]);
        check(&[b"tail without newline"], 10, &[]);
        check(
            &[b"0123456789abc\nok\n"],
            4,
            &[("0123", 0, 14, true), ("ok", 14, 17, false)],
        );
        check(&[b"01", b"23", b"45", b"67\n"], 3, &[("012", 0, 9, true)]);
    }

    #[test]
    fn long_partial_line_memory_is_bounded() {
        let mut splitter = LineSplitter::new(16);
        let chunk = vec![b'x'; 64 * 1024];
        for i in 0..100u64 {
            splitter.feed(&chunk, i * chunk.len() as u64, |_| panic!("no newline yet"));
        }
        assert!(
            splitter.partial.capacity() < 1024,
            "kept {} bytes",
            splitter.partial.capacity()
        );
        assert_eq!(splitter.partial_start(), Some(0));
    }
}
