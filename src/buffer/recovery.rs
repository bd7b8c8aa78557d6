//! Opening a disk buffer after any kind of stop: find the segments, truncate each one that
//! was not closed cleanly at its last good record, drop the ones already acknowledged, and
//! count what is left, without reading the events themselves.
//!
//! Only segments that may have been appended to when the agent stopped need a full check:
//! the writer starts a new segment at every start and never appends to an old one, so that
//! is the newest segment of the previous run. It is read whole and its CRCs checked (at most
//! one segment's bytes); every other segment is walked by its record headers only (a few
//! bytes per record). A torn or corrupt tail is cut off (logged at WARN with the bytes cut);
//! a file that is not a segment is renamed aside.
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
}

/// Recovers the buffer in `dir` whose records before `acknowledged` were delivered.
pub fn recover(dir: &Path, acknowledged: u64) -> io::Result<Recovered> {
    let mut out = Recovered::default();
    let listed = segment::list(dir)?;
    let newest = listed.last().map(|(start, _)| *start);
    for (start, path) in listed {
        let Ok(mut opened) = Segment::open(&path)?.map_err(|_| ()) else {
            set_aside(&path);
            continue;
        };
        if opened.start != start {
            set_aside(&path);
            continue;
        }
        let end = start + opened.len();
        if end <= acknowledged && Some(start) != newest {
            std::fs::remove_file(&path)?;
            continue;
        }
        let verify = Some(start) == newest;
        let summary = segment::summarize(&opened, HEADER_BYTES, verify)?;
        if let Some(damage) = &summary.damage {
            let cut = opened.len() - summary.valid_end;
            tracing::warn!(
                segment = %path.display(), offset = damage.offset(), cut_bytes = cut, ?damage,
                "disk buffer: torn or corrupt tail cut at the last good record"
            );
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
    Ok(out)
}

fn set_aside(path: &Path) {
    let aside = path.with_extension("damaged");
    tracing::warn!(file = %path.display(), kept_as = %aside.display(), "disk buffer: not a segment; set aside");
    let _ = std::fs::rename(path, aside);
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
        let recovered = recover(dir.path(), first_end).unwrap();
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
        let again = recover(dir.path(), first_end + HEADER_BYTES + record).unwrap();
        assert_eq!(again.events, 6);
        assert_eq!(again.cut_bytes, 0);
    }

    #[test]
    fn sets_aside_what_is_not_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(segment::file_name(5)), b"garbage").unwrap();
        let recovered = recover(dir.path(), 0).unwrap();
        assert!(recovered.segments.is_empty());
        assert!(dir.path().join("00000000000000000005.damaged").exists());
    }
}
