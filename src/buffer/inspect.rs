//! `sluice buffer inspect <dir>`: what a disk buffer holds, read without starting the agent
//! and without changing a byte: its segments, their records and events, the acknowledged
//! position, and any damage: where it starts and the records a truncation there loses.
//!
//! Owns: the report. Never: writes to the buffer.

use std::fmt::Write as _;
use std::path::Path;

use super::segment::{self, Segment, HEADER_BYTES};
use super::writer::read_position;

/// The report for the buffer in `dir`, as text; `Err` only if `dir` cannot be listed.
pub fn report(dir: &Path) -> anyhow::Result<String> {
    let segments = segment::list(dir)
        .map_err(|e| anyhow::anyhow!("cannot list the buffer directory {}: {e}", dir.display()))?;
    let acknowledged = read_position(dir);
    let mut out = String::new();
    let _ = writeln!(out, "buffer {}", dir.display());
    let _ = writeln!(out, "acknowledged position: {acknowledged}");
    let (mut records, mut events, mut unacked, mut bytes, mut damaged) = (0, 0, 0, 0, 0);
    for (start, path) in &segments {
        let segment = match Segment::open(path)? {
            Ok(segment) => segment,
            Err(_) => {
                damaged += 1;
                let _ = writeln!(
                    out,
                    "segment {start}: not a segment (bad header): every record in it is lost"
                );
                continue;
            }
        };
        bytes += segment.len();
        let summary = segment::summarize(&segment, HEADER_BYTES, true)?;
        let pending = if acknowledged > *start + HEADER_BYTES {
            segment::summarize(&segment, acknowledged - start, false)?.events
        } else {
            summary.events
        };
        records += summary.records;
        events += summary.events;
        unacked += pending.min(summary.events);
        let _ = write!(
            out,
            "segment {start}: {} bytes, {} records, {} events ({} not acknowledged)",
            segment.len(),
            summary.records,
            summary.events,
            pending.min(summary.events),
        );
        match &summary.damage {
            None => out.push('\n'),
            Some(damage) => {
                damaged += 1;
                let (lost_records, lost_events) =
                    segment::records_after(&segment, damage.offset())?;
                let kind = match damage {
                    segment::Damage::Torn { .. } => "torn record",
                    _ => "corrupt record",
                };
                let _ = writeln!(
                    out,
                    "; {kind} at offset {}: {} bytes after it unreadable, records lost: {} (1 damaged + {lost_records} whole after it, {lost_events} events)",
                    damage.offset(),
                    segment.len() - damage.offset(),
                    lost_records + 1,
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "total: {} segments, {bytes} bytes, {records} records, {events} events, {unacked} not acknowledged, {damaged} damaged segments",
        segments.len()
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn names_the_offset_and_the_records_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(segment::file_name(0));
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&segment::header(0)).unwrap();
        let mut record = Vec::new();
        for _ in 0..4 {
            segment::record(3, 0, b"abcdefghij", &mut record);
            file.write_all(&record).unwrap();
        }
        drop(file);
        // Records are 31 bytes: the second starts at 47; damage its payload.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[60] ^= 0x55;
        std::fs::write(&path, bytes).unwrap();
        let text = report(dir.path()).unwrap();
        assert!(text.contains("1 records, 3 events"), "{text}");
        assert!(text.contains("corrupt record at offset 47"), "{text}");
        assert!(
            text.contains("records lost: 3 (1 damaged + 2 whole after it, 6 events)"),
            "{text}"
        );
    }
}
