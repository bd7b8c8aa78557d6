//! Opening a disk buffer after any kind of stop: find the segments, truncate each one that
//! was not closed cleanly at its last good record, drop the ones already acknowledged, and
//! count what is left, without reading the events themselves.
//!
//! Only segments that may have been appended to when the agent stopped need a full check:
//! the writer starts a new segment at every start and never appends to an old one, so that
//! is the newest segment of the previous run. It is read whole and its CRCs checked (at most
//! one segment's bytes); every other segment is walked by its record headers only (a few
//! bytes per record). A torn tail of the newest segment (a write cut by the stop, never
//! acknowledged to its source) is cut off and logged at WARN. Damage elsewhere is a loss,
//! logged at ERROR and its bytes counted in [`Recovered::lost_bytes`]: an older segment
//! whose records end early (cut there), a file that is not a segment (renamed aside), and
//! a segment missing between the acknowledged position and the next one found (segments
//! are deleted only behind the saved position, so a gap is data that was never delivered).
//!
//! The writer records how far the buffer was fsynced (`durable`, after each fsync and at a
//! clean stop): a buffer that ends before that at start lost fsynced data (a segment cut
//! short or deleted by hand, a disk that lost writes), logged at ERROR and counted, where a
//! torn tail past it is only a write that was never acknowledged.
//!
//! Owns: start-up recovery. Never: loads the buffer into memory, or fails the start for
//! damaged data (only for an unusable directory).

use std::fs::OpenOptions;
use std::io;
use std::path::Path;

use super::segment::{self, Segment, HEADER_BYTES};

/// What is in a buffer directory after recovery.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The remaining segments: (start position, end position), in order.
    pub segments: Vec<(u64, u64)>,
    /// Events not yet acknowledged in each of `segments`.
    pub segment_events: Vec<u64>,
    /// Events not yet acknowledged.
    pub events: u64,
    /// When the oldest unacknowledged record was written (unix nanoseconds).
    pub oldest: Option<i64>,
    /// Bytes cut from torn or corrupt tails.
    pub cut_bytes: u64,
    /// Bytes not delivered that cannot be read: damaged older segments' rest, files set
    /// aside, missing segments.
    pub lost_bytes: u64,
}

/// Recovers the buffer in `dir` whose records before `acknowledged` were delivered and
/// which was fsynced up to `durable` (0 when not known).
pub fn recover(dir: &Path, acknowledged: u64, durable: u64) -> io::Result<Recovered> {
    let mut out = Recovered::default();
    let listed = segment::list(dir)?;
    let newest = listed.last().map(|(start, _)| *start);
    // Where the next segment should start: the acknowledged position, then each segment's
    // end as written.
    let mut expected = acknowledged;
    for (start, path) in listed {
        if start > expected {
            let lost = start - expected;
            tracing::error!(
                buffer = %dir.display(), from = expected, to = start, lost_bytes = lost,
                "disk buffer: data missing before a segment (a segment deleted, or the one before cut short); its events are lost"
            );
            out.lost_bytes += lost;
        }
        let Ok(mut opened) = Segment::open(&path)?.map_err(|_| ()) else {
            out.lost_bytes += set_aside(&path);
            continue;
        };
        if opened.start != start {
            out.lost_bytes += set_aside(&path);
            continue;
        }
        let end = start + opened.len();
        expected = expected.max(end);
        if end <= acknowledged && Some(start) != newest {
            std::fs::remove_file(&path)?;
            continue;
        }
        let verify = Some(start) == newest;
        let summary = segment::summarize(&opened, HEADER_BYTES, verify)?;
        if let Some(damage) = &summary.damage {
            let cut = opened.len() - summary.valid_end;
            if verify {
                tracing::warn!(
                    segment = %path.display(), offset = damage.offset(), cut_bytes = cut, ?damage,
                    "disk buffer: torn or corrupt tail cut at the last good record"
                );
            } else {
                tracing::error!(
                    segment = %path.display(), offset = damage.offset(), lost_bytes = cut, ?damage,
                    "disk buffer: a segment is damaged; its records from there on are lost"
                );
                out.lost_bytes += cut;
            }
            OpenOptions::new()
                .write(true)
                .open(&path)?
                .set_len(summary.valid_end)?;
            opened.refresh_len()?;
            out.cut_bytes += cut;
        }
        let valid_end = start + summary.valid_end;
        if valid_end <= acknowledged && Some(start) != newest {
            std::fs::remove_file(&path)?;
            continue;
        }
        // Records before `acknowledged` in the first kept segment were delivered already.
        let from = acknowledged.saturating_sub(start).max(HEADER_BYTES);
        let unacked = if from > HEADER_BYTES {
            segment::summarize(&opened, from, false)?
        } else {
            summary
        };
        out.events += unacked.events;
        out.segment_events.push(unacked.events);
        if out.oldest.is_none() {
            out.oldest = unacked.first_written_at;
        }
        out.segments.push((start, valid_end));
    }
    // Data fsynced before the last stop and gone now (the newest segment cut short or
    // deleted after the stop): not a torn write, a loss.
    let found_end = out
        .segments
        .last()
        .map_or(0, |(_, end)| *end)
        .max(acknowledged);
    if durable > found_end {
        let lost = durable - found_end;
        tracing::error!(
            buffer = %dir.display(), found_end, durable, lost_bytes = lost,
            "disk buffer: data written and fsynced before the last stop is missing from its end (a segment cut short or deleted); its events are lost"
        );
        out.lost_bytes += lost;
        // Said once: the next start compares with what is there now.
        super::housekeeper::save_number(dir, super::writer::DURABLE_FILE, found_end)?;
    }
    Ok(out)
}

/// Renames a file that is not a segment aside; returns its size (lost, if it was one).
fn set_aside(path: &Path) -> u64 {
    let aside = path.with_extension("damaged");
    let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    tracing::error!(file = %path.display(), kept_as = %aside.display(), bytes, "disk buffer: not a segment (damaged header); set aside, its events are lost");
    let _ = std::fs::rename(path, aside);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn write(dir: &Path, start: u64, records: usize) -> u64 {
        let path = dir.join(segment::file_name(start));
        let mut file = std::fs::File::create(path).unwrap();
        file.write_all(&segment::header(start)).unwrap();
        let mut out = Vec::new();
        let mut end = start + HEADER_BYTES;
        for i in 0..records {
            segment::record(2, i as i64, b"0123456789", &mut out);
            file.write_all(&out).unwrap();
            end += out.len() as u64;
        }
        end
    }

    #[test]
    fn cuts_the_newest_segments_torn_tail_and_drops_acknowledged_segments() {
        let dir = tempfile::tempdir().unwrap();
        let first_end = write(dir.path(), 0, 3);
        let second_end = write(dir.path(), first_end, 4);
        // A torn append at the end of the newest segment.
        let newest = dir.path().join(segment::file_name(first_end));
        let mut file = OpenOptions::new().append(true).open(&newest).unwrap();
        file.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        let recovered = recover(dir.path(), first_end, 0).unwrap();
        assert_eq!(recovered.segments, vec![(first_end, second_end)]);
        assert_eq!(recovered.events, 8);
        assert_eq!(recovered.cut_bytes, 6);
        assert_eq!(
            std::fs::metadata(&newest).unwrap().len(),
            second_end - first_end
        );
        assert!(
            !dir.path().join(segment::file_name(0)).exists(),
            "acknowledged: deleted"
        );
        // Again: nothing more to cut, and an acknowledged position inside the segment.
        let record = (second_end - first_end - HEADER_BYTES) / 4;
        let again = recover(dir.path(), first_end + HEADER_BYTES + record, 0).unwrap();
        assert_eq!(again.events, 6);
        assert_eq!(again.cut_bytes, 0);
    }

    #[test]
    fn a_missing_or_damaged_older_segment_is_counted_lost() {
        let dir = tempfile::tempdir().unwrap();
        let first_end = write(dir.path(), 0, 3);
        let second_end = write(dir.path(), first_end, 4);
        let third_end = write(dir.path(), second_end, 2);
        write(dir.path(), third_end, 1);
        // The second segment deleted, the third cut inside its last record.
        std::fs::remove_file(dir.path().join(segment::file_name(first_end))).unwrap();
        let third = dir.path().join(segment::file_name(second_end));
        let cut = 5;
        OpenOptions::new()
            .write(true)
            .open(&third)
            .unwrap()
            .set_len(third_end - second_end - cut)
            .unwrap();
        let recovered = recover(dir.path(), 0, 0).unwrap();
        let record = (first_end - HEADER_BYTES) / 3;
        assert_eq!(
            recovered.lost_bytes,
            (second_end - first_end) + record,
            "the missing segment and the damaged one's last record (cut short, then cut)"
        );
        assert_eq!(recovered.cut_bytes, record - cut);
        assert_eq!(recovered.events, 2 * (3 + 1 + 1), "two events a record");
        // Until the reader passes them, a later start finds the same gaps (the cut record
        // is now missing from the end of its segment); acknowledged segments deleted
        // normally leave none.
        let again = recover(dir.path(), first_end, 0).unwrap();
        assert_eq!(again.lost_bytes, (second_end - first_end) + record);
        let none = recover(dir.path(), third_end, 0).unwrap();
        assert_eq!(none.lost_bytes, 0);
    }

    #[test]
    fn fsynced_data_missing_from_the_end_is_counted_lost_once() {
        let dir = tempfile::tempdir().unwrap();
        let first_end = write(dir.path(), 0, 3);
        let second_end = write(dir.path(), first_end, 4);
        let record = (second_end - first_end - HEADER_BYTES) / 4;
        // After a clean stop, the newest segment loses its last record and a half.
        let newest = dir.path().join(segment::file_name(first_end));
        let cut_at = second_end - first_end - record - record / 2;
        OpenOptions::new()
            .write(true)
            .open(&newest)
            .unwrap()
            .set_len(cut_at)
            .unwrap();
        let recovered = recover(dir.path(), 0, second_end).unwrap();
        assert_eq!(recovered.lost_bytes, 2 * record);
        assert_eq!(recovered.events, 2 * (3 + 2));
        let durable: u64 =
            std::fs::read_to_string(dir.path().join(super::super::writer::DURABLE_FILE))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
        assert_eq!(durable, second_end - 2 * record);
        assert_eq!(recover(dir.path(), 0, durable).unwrap().lost_bytes, 0);
        // The newest segment deleted: all of it.
        std::fs::remove_file(&newest).unwrap();
        let gone = recover(dir.path(), 0, durable).unwrap();
        assert_eq!(gone.lost_bytes, durable - first_end);
        // A torn tail past the durable position is not a loss.
        let torn = tempfile::tempdir().unwrap();
        let end = write(torn.path(), 0, 3);
        let path = torn.path().join(segment::file_name(0));
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        let recovered = recover(torn.path(), 0, end).unwrap();
        assert_eq!((recovered.lost_bytes, recovered.cut_bytes), (0, 6));
    }

    #[test]
    fn sets_aside_what_is_not_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(segment::file_name(5)), b"garbage").unwrap();
        let recovered = recover(dir.path(), 0, 0).unwrap();
        assert!(recovered.segments.is_empty());
        assert!(dir.path().join("00000000000000000005.damaged").exists());
    }
}
