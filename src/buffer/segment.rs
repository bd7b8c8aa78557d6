//! The on-disk format of a disk buffer: segment files of length-prefixed, CRC-checked
//! records, and the walk over them that recovery, the reader and `sluice buffer inspect`
//! share.
//!
//! A buffer is a directory of segments named by the buffer position of their first byte,
//! `<position, 20 digits>.seg` (Kafka's scheme): positions grow across segments, so a record
//! is found by its position alone and a saved read position survives segment deletion.
//!
//! ```text
//! segment  = header record*
//! header   = "SLUICEB1" start:u64le                     (16 bytes)
//! record   = length:u32le crc:u32le payload             (8 + length bytes)
//! payload  = kind:u8 (1) n_events:u32le written_at:i64le (unix ns) events (codec.rs)
//! ```
//!
//! The CRC is CRC-32 (IEEE) of the length's four bytes and the payload, so a torn or
//! corrupted length is caught as surely as a damaged payload. Why CRC-32 with `crc32fast`:
//! it is already in the tree (gzip trailers), runs at memory speed with the CPU's
//! carry-less multiply, and detects every burst error up to 32 bits and all but 2^-32 of
//! the rest: what a torn write or a flipped sector produces. (A cryptographic hash would
//! cost ten times the CPU to defend against an adversary who can already write the file.)
//! A length of 0, or beyond [`MAX_RECORD_BYTES`] or the end of the file, ends the valid
//! part: zero-filled tails (a file extended but not written before a power cut) fail too,
//! since the CRC of four zero bytes is not zero.
//!
//! Owns: the format and its checks. Never: panics on any bytes, or reads more than one
//! record into memory.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

/// The first eight bytes of every segment (the last one is the format version).
pub const MAGIC: &[u8; 8] = b"SLUICEB1";
/// Bytes before the first record of a segment.
pub const HEADER_BYTES: u64 = 16;
/// Bytes of a record before its payload.
pub const RECORD_HEADER_BYTES: u64 = 8;
/// Bytes of a payload before its events.
pub const PAYLOAD_HEADER_BYTES: usize = 13;
/// The largest record accepted (one batch; the pipeline's batches are far smaller).
pub const MAX_RECORD_BYTES: u64 = 256 * 1024 * 1024;
/// `kind` of a record holding events.
pub const KIND_EVENTS: u8 = 1;

/// The file name of the segment starting at `start`.
pub fn file_name(start: u64) -> String {
    format!("{start:020}.seg")
}

/// The segments in `dir`, as (start, path), in order. Other files are ignored.
pub fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(start) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".seg"))
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((start, entry.path()));
    }
    out.sort();
    Ok(out)
}

/// The segment header for a segment starting at `start`.
pub fn header(start: u64) -> [u8; HEADER_BYTES as usize] {
    let mut out = [0; HEADER_BYTES as usize];
    out[..8].copy_from_slice(MAGIC);
    out[8..].copy_from_slice(&start.to_le_bytes());
    out
}

/// Builds a record holding `events_bytes` (from `codec::encode`) into `out`.
pub fn record(n_events: u32, written_at: i64, events_bytes: &[u8], out: &mut Vec<u8>) {
    begin_record(out);
    out.extend_from_slice(events_bytes);
    finish_record(out, n_events, written_at);
}

/// Starts a record in `out` (cleared): room for its headers, after which the caller appends
/// the events' bytes (`codec::encode`) and calls [`finish_record`]. The events are encoded
/// where they are written, not copied there.
pub fn begin_record(out: &mut Vec<u8>) {
    out.clear();
    out.resize(RECORD_HEADER_BYTES as usize + PAYLOAD_HEADER_BYTES, 0);
}

/// Completes the record begun by [`begin_record`] in `out`: its length, payload header and
/// CRC (again after `written_at` changed).
pub fn finish_record(out: &mut [u8], n_events: u32, written_at: i64) {
    let length = (out.len() - RECORD_HEADER_BYTES as usize) as u32;
    out[..4].copy_from_slice(&length.to_le_bytes());
    out[8] = KIND_EVENTS;
    out[9..13].copy_from_slice(&n_events.to_le_bytes());
    out[13..21].copy_from_slice(&written_at.to_le_bytes());
    let crc = checksum(&out[..4], &out[8..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
}

fn checksum(length: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(length);
    hasher.update(payload);
    hasher.finalize()
}

/// What the fixed part of a payload says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordInfo {
    /// Offset of the record in its segment file.
    pub offset: u64,
    /// Offset just past it.
    pub end: u64,
    /// Events it holds.
    pub n_events: u32,
    /// When it was written (unix nanoseconds).
    pub written_at: i64,
}

/// Why the walk over a segment stopped before its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The header is missing or not a segment header.
    BadHeader,
    /// The record at this offset is cut short by the end of the file (a torn write).
    Torn {
        /// Where the record starts.
        offset: u64,
    },
    /// The record at this offset fails its check (CRC, length or kind).
    Corrupt {
        /// Where the record starts.
        offset: u64,
    },
}

impl Damage {
    /// The offset from which the segment is unreadable.
    pub fn offset(&self) -> u64 {
        match self {
            Damage::BadHeader => 0,
            Damage::Torn { offset } | Damage::Corrupt { offset } => *offset,
        }
    }
}

/// A segment file opened for reading records by offset.
pub struct Segment {
    file: File,
    len: u64,
    /// The segment's start position, as its header says.
    pub start: u64,
}

impl Segment {
    /// Opens `path` and checks its header; `Ok(Err(BadHeader))` for a file that is not one.
    pub fn open(path: &Path) -> io::Result<Result<Segment, Damage>> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut head = [0; HEADER_BYTES as usize];
        if len < HEADER_BYTES || file.read_exact_at(&mut head, 0).is_err() {
            return Ok(Err(Damage::BadHeader));
        }
        if &head[..8] != MAGIC {
            return Ok(Err(Damage::BadHeader));
        }
        let start = u64::from_le_bytes(head[8..].try_into().unwrap_or_default());
        Ok(Ok(Segment { file, len, start }))
    }

    /// The file's length when opened (or as last refreshed).
    #[allow(clippy::len_without_is_empty)] // a segment is never empty: it has a header
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Reads the file's length again (the writer may have appended).
    pub fn refresh_len(&mut self) -> io::Result<u64> {
        self.len = self.file.metadata()?.len();
        Ok(self.len)
    }

    /// The record at `offset`, read whole and checked, with its payload in `payload`.
    /// `limit` is where the readable part ends (the file's length, or less while a writer
    /// appends). `Ok(None)` at `limit`.
    pub fn read(
        &self,
        offset: u64,
        limit: u64,
        payload: &mut Vec<u8>,
    ) -> io::Result<Option<Result<RecordInfo, Damage>>> {
        if offset >= limit {
            return Ok(None);
        }
        let Some(length) = self.length_at(offset, limit)? else {
            return Ok(Some(Err(Damage::Torn { offset })));
        };
        let end = offset + RECORD_HEADER_BYTES + u64::from(length.0);
        if length.0 == 0 || u64::from(length.0) > MAX_RECORD_BYTES {
            return Ok(Some(Err(Damage::Corrupt { offset })));
        }
        if end > limit {
            return Ok(Some(Err(Damage::Torn { offset })));
        }
        // Resized, not cleared: only a record longer than the last one zeroes its extra bytes
        // before they are read over.
        payload.resize(length.0 as usize, 0);
        self.file
            .read_exact_at(payload, offset + RECORD_HEADER_BYTES)?;
        if checksum(&length.0.to_le_bytes(), payload) != length.1 {
            return Ok(Some(Err(Damage::Corrupt { offset })));
        }
        Ok(Some(
            info(offset, end, payload).ok_or(Damage::Corrupt { offset }),
        ))
    }

    /// The fixed part of the record at `offset` without reading its events or checking its
    /// CRC (counting events at start-up). `Ok(None)` at `limit`.
    pub fn peek(&self, offset: u64, limit: u64) -> io::Result<Option<Result<RecordInfo, Damage>>> {
        if offset >= limit {
            return Ok(None);
        }
        let Some((length, _)) = self.length_at(offset, limit)? else {
            return Ok(Some(Err(Damage::Torn { offset })));
        };
        let end = offset + RECORD_HEADER_BYTES + u64::from(length);
        if (length as usize) < PAYLOAD_HEADER_BYTES || u64::from(length) > MAX_RECORD_BYTES {
            return Ok(Some(Err(Damage::Corrupt { offset })));
        }
        if end > limit {
            return Ok(Some(Err(Damage::Torn { offset })));
        }
        let mut head = [0; PAYLOAD_HEADER_BYTES];
        self.file
            .read_exact_at(&mut head, offset + RECORD_HEADER_BYTES)?;
        Ok(Some(
            info(offset, end, &head).ok_or(Damage::Corrupt { offset }),
        ))
    }

    /// (length, crc) of the record at `offset`, `None` if its header is cut by `limit`.
    fn length_at(&self, offset: u64, limit: u64) -> io::Result<Option<(u32, u32)>> {
        if offset + RECORD_HEADER_BYTES > limit {
            return Ok(None);
        }
        let mut head = [0; RECORD_HEADER_BYTES as usize];
        self.file.read_exact_at(&mut head, offset)?;
        let length = u32::from_le_bytes(head[..4].try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(head[4..].try_into().unwrap_or_default());
        Ok(Some((length, crc)))
    }
}

fn info(offset: u64, end: u64, payload: &[u8]) -> Option<RecordInfo> {
    if payload.len() < PAYLOAD_HEADER_BYTES || payload[0] != KIND_EVENTS {
        return None;
    }
    Some(RecordInfo {
        offset,
        end,
        n_events: u32::from_le_bytes(payload[1..5].try_into().ok()?),
        written_at: i64::from_le_bytes(payload[5..13].try_into().ok()?),
    })
}

/// The events part of a checked payload.
pub fn events_bytes(payload: &[u8]) -> &[u8] {
    payload.get(PAYLOAD_HEADER_BYTES..).unwrap_or_default()
}

/// What a walk over one segment found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Whole, valid records.
    pub records: u64,
    /// Events in them.
    pub events: u64,
    /// Offset just past the last valid record.
    pub valid_end: u64,
    /// When the first valid record was written.
    pub first_written_at: Option<i64>,
    /// Where and how the valid part ends early, if it does.
    pub damage: Option<Damage>,
}

/// Walks the segment's records from `from` (an offset past the header) to its end.
/// `verify` reads every record whole and checks its CRC; without it only the fixed parts
/// are read (a few bytes per record).
pub fn summarize(segment: &Segment, from: u64, verify: bool) -> io::Result<Summary> {
    let mut summary = Summary {
        valid_end: from.max(HEADER_BYTES),
        ..Summary::default()
    };
    let mut payload = Vec::new();
    let limit = segment.len();
    loop {
        let at = summary.valid_end;
        let next = if verify {
            segment.read(at, limit, &mut payload)?
        } else {
            segment.peek(at, limit)?
        };
        match next {
            None => return Ok(summary),
            Some(Err(damage)) => {
                summary.damage = Some(damage);
                return Ok(summary);
            }
            Some(Ok(info)) => {
                summary.records += 1;
                summary.events += u64::from(info.n_events);
                summary.first_written_at.get_or_insert(info.written_at);
                summary.valid_end = info.end;
            }
        }
    }
}

/// Counts the records that look whole and valid after `damage` (each found by trying every
/// offset): what a truncation at `damage` loses. For `sluice buffer inspect`.
pub fn records_after(segment: &Segment, damage: u64) -> io::Result<(u64, u64)> {
    let (mut records, mut events) = (0, 0);
    let mut payload = Vec::new();
    let mut at = damage + 1;
    while at + RECORD_HEADER_BYTES < segment.len() {
        match segment.read(at, segment.len(), &mut payload)? {
            Some(Ok(info)) => {
                records += 1;
                events += u64::from(info.n_events);
                at = info.end;
            }
            _ => at += 1,
        }
    }
    Ok((records, events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// A segment at `path` with records of `sizes` event bytes, 1 event each.
    fn write_segment(path: &Path, sizes: &[usize]) -> Vec<u64> {
        let mut file = File::create(path).unwrap();
        file.write_all(&header(0)).unwrap();
        let mut ends = Vec::new();
        let mut at = HEADER_BYTES;
        let mut out = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            record(1, i as i64, &vec![b'x'; *size], &mut out);
            file.write_all(&out).unwrap();
            at += out.len() as u64;
            ends.push(at);
        }
        ends
    }

    fn check(damage: impl FnOnce(&mut Vec<u8>), records: u64, expected: Option<Damage>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(0));
        write_segment(&path, &[10, 20, 30]);
        let mut bytes = std::fs::read(&path).unwrap();
        damage(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        let segment = match Segment::open(&path).unwrap() {
            Ok(segment) => segment,
            Err(damage) => {
                assert_eq!(Some(damage), expected);
                return;
            }
        };
        for verify in [true, false] {
            let summary = summarize(&segment, HEADER_BYTES, verify).unwrap();
            if verify || !matches!(expected, Some(Damage::Corrupt { .. })) {
                assert_eq!(summary.records, records, "verify {verify}");
                assert_eq!(summary.damage, expected, "verify {verify}");
            }
        }
    }

    // Record ends: 16 + 8 + 13 + 10 = 47, 47 + 41 = 88, 88 + 51 = 139.
    #[test]
    fn finds_torn_and_corrupt_tails() {
        check(|_| {}, 3, None);
        check(
            |b| b.truncate(139 - 1),
            2,
            Some(Damage::Torn { offset: 88 }),
        );
        check(|b| b.truncate(88 + 5), 2, Some(Damage::Torn { offset: 88 }));
        check(|b| b.truncate(88), 2, None);
        check(|b| b[100] ^= 1, 2, Some(Damage::Corrupt { offset: 88 }));
        check(|b| b[50] ^= 0x10, 1, Some(Damage::Corrupt { offset: 47 }));
        check(
            |b| b.extend([0; 64]),
            3,
            Some(Damage::Corrupt { offset: 139 }),
        );
        check(|b| b.extend([0; 5]), 3, Some(Damage::Torn { offset: 139 }));
        check(|b| b[0] = b'X', 0, Some(Damage::BadHeader));
        check(|b| b.truncate(10), 0, Some(Damage::BadHeader));
        // A length that points past the end of the file: torn.
        check(
            |b| b[88..92].copy_from_slice(&1000u32.to_le_bytes()),
            2,
            Some(Damage::Torn { offset: 88 }),
        );
        // A huge length: corrupt, never an allocation of that size.
        check(
            |b| b[88..92].copy_from_slice(&u32::MAX.to_le_bytes()),
            2,
            Some(Damage::Corrupt { offset: 88 }),
        );
    }

    #[test]
    fn counts_the_records_lost_after_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(0));
        write_segment(&path, &[10, 20, 30, 40]);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[50] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let segment = Segment::open(&path).unwrap().unwrap();
        let summary = summarize(&segment, HEADER_BYTES, true).unwrap();
        assert_eq!(summary.damage, Some(Damage::Corrupt { offset: 47 }));
        assert_eq!(records_after(&segment, 47).unwrap(), (2, 2));
    }
}
