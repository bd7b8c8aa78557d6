//! Disk buffers no running sink reads: a pipeline or sink renamed or removed (in the config
//! or by a reload) leaves its buffer under `data_dir/buffers/` with whatever it had not
//! delivered. Nothing would ever read it again, so the agent says so, once at start and
//! after each reload, naming the directory and what it holds.
//!
//! Owns: finding such buffers and the warning. Never: reads records, moves or deletes a
//! buffer (renaming the sink back delivers it; deleting the directory discards it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::segment::{self, HEADER_BYTES};
use super::writer::read_position;

/// Buffers under `data_dir/buffers/<pipeline>/<sink>/` that are not in `in_use` and hold
/// bytes past their acknowledged position: (directory, bytes not acknowledged), in order.
pub fn stranded(data_dir: &Path, in_use: &BTreeSet<PathBuf>) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for pipeline in subdirectories(&data_dir.join("buffers")) {
        for sink in subdirectories(&pipeline) {
            if in_use.contains(&sink) {
                continue;
            }
            let bytes = unacknowledged_bytes(&sink);
            if bytes > 0 {
                out.push((sink, bytes));
            }
        }
    }
    out
}

/// Logs a warning for each buffer [`stranded`] finds.
pub fn warn_stranded(data_dir: &Path, in_use: &BTreeSet<PathBuf>) {
    for (dir, bytes) in stranded(data_dir, in_use) {
        tracing::warn!(
            buffer = %dir.display(),
            bytes,
            "disk buffer holds events no sink of this config reads (a pipeline or sink renamed or removed?): give the sink back its name (`<pipeline>/<sink>` is the directory's path) to deliver them; `sluice buffer inspect` shows them; deleting the directory discards them"
        );
    }
}

fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| entry.path())
        .collect();
    out.sort();
    out
}

/// Bytes of the segments in `dir` past the acknowledged position (record framing
/// included; segment headers not), from file sizes alone.
fn unacknowledged_bytes(dir: &Path) -> u64 {
    let acknowledged = read_position(dir);
    let Ok(segments) = segment::list(dir) else {
        return 0;
    };
    segments
        .iter()
        .map(|(start, path)| {
            let len = std::fs::metadata(path).map_or(0, |m| m.len());
            let from = acknowledged.max(start + HEADER_BYTES);
            (start + len).saturating_sub(from)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::super::writer::POSITION_FILE;
    use super::*;

    fn segment_with(dir: &Path, start: u64, records: usize) -> u64 {
        std::fs::create_dir_all(dir).unwrap();
        let mut bytes = segment::header(start).to_vec();
        let mut record = Vec::new();
        for _ in 0..records {
            segment::record(1, 0, b"payload", &mut record);
            bytes.extend_from_slice(&record);
        }
        std::fs::write(dir.join(segment::file_name(start)), &bytes).unwrap();
        bytes.len() as u64
    }

    #[test]
    fn finds_unread_buffers_of_sinks_not_in_use_only() {
        let data = tempfile::tempdir().unwrap();
        let buffers = data.path().join("buffers");
        // In use: never reported, whatever it holds.
        let used = buffers.join("logs/loki");
        segment_with(&used, 0, 3);
        // Renamed away, with data.
        let old = buffers.join("logs/old_loki");
        let len = segment_with(&old, 0, 2);
        // Fully acknowledged (the active segment stays): nothing to say.
        let done = buffers.join("metrics/prometheus");
        let done_len = segment_with(&done, 0, 2);
        std::fs::write(done.join(POSITION_FILE), format!("{done_len}\n")).unwrap();
        // Half acknowledged.
        let half = buffers.join("metrics/remote");
        let half_len = segment_with(&half, 0, 4);
        let half_at = HEADER_BYTES + (half_len - HEADER_BYTES) / 2;
        std::fs::write(half.join(POSITION_FILE), format!("{half_at}\n")).unwrap();
        // An empty directory (a buffer created and never written).
        std::fs::create_dir_all(buffers.join("metrics/empty")).unwrap();

        let in_use = BTreeSet::from([used.clone()]);
        assert_eq!(
            stranded(data.path(), &in_use),
            vec![(old, len - HEADER_BYTES), (half, half_len - half_at),]
        );
        // No buffers directory at all.
        let fresh = tempfile::tempdir().unwrap();
        assert!(stranded(fresh.path(), &BTreeSet::new()).is_empty());
    }
}
