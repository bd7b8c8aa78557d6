//! Lines into events: the oversize rule and UTF-8 check of each physical line, CRI and
//! docker decoding with partial lines reassembled per stream, multiline records, then one
//! [`LogEvent`] per record with the file's fields, pod labels, its origin offset and a read
//! time that stays the same when the line is read again (see [`stamps`]).
//!
//! Owns: [`Tailer`]'s line → piece → event path. Never: reads the file or makes batches
//! (the read loop in `mod.rs` does).
//!
//! [`stamps`]: super::super::stamps

use std::time::Instant;

use super::lines::RawLine;
use super::{LineFormat, Oversize, ReadCounters, ReadSettings, Tailer};
use crate::event::{Event, LogEvent, Map, Origin, Timestamp, Value};
use crate::source::file::kubernetes;
use crate::source::file::multiline::{floor_char_boundary, Piece};
use crate::source::file::stamps::StampRecord;

impl Tailer {
    /// One physical line: oversize rule, UTF-8, container format.
    pub(super) fn take_line(
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
        let text = crate::event::line_text(line.bytes, line.truncated).unwrap_or_else(|lossy| {
            counters.invalid_utf8.inc();
            lossy
        });
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
        let slot = stream_slot(stream);
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

    pub(super) fn assemble_events(
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

    /// The file's shared fields with `stream` set to `stream` (made once per stream).
    fn stream_fields(&mut self, stream: &'static str) -> std::sync::Arc<crate::event::Shared> {
        let slot = stream_slot(stream);
        let shared = &self.shared_fields;
        self.stream_fields[slot]
            .get_or_insert_with(|| {
                let stream = Map::from([("stream", Value::from(stream))]);
                shared.extended(&stream)
            })
            .clone()
    }

    pub(super) fn pieces_to_events(
        &mut self,
        pieces: Vec<Piece>,
        settings: &ReadSettings,
        stamp: Timestamp,
        events: &mut Vec<Event>,
    ) {
        events.reserve(pieces.len());
        for piece in pieces {
            let mut fields = Map::new();
            if let Some(name) = &settings.offset_field {
                // `stream` wins over an `offset_field` of its name, as when it was
                // inserted after it.
                if piece.stream.is_none() || name != "stream" {
                    fields.insert(name.clone(), Value::Int(piece.start as i64));
                }
            }
            // The shared fields (the file's, and `stream`) lie under the line's own: an
            // `offset_field` named like a file field wins, as it did when it was inserted
            // after them.
            let shared = match piece.stream {
                Some(stream) => self.stream_fields(stream),
                None => self.shared_fields.clone(),
            };
            if piece.truncated {
                fields.insert("truncated", Value::Bool(true));
            }
            let fields = Map::layered(fields, shared);
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

/// The slot of a container line's stream in the tailer's per-stream state (partial lines,
/// shared fields): 0 for `stdout`, 1 for `stderr`.
fn stream_slot(stream: &str) -> usize {
    usize::from(stream == "stderr")
}
