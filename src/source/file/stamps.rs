//! The read-time journal: the time given to lines without a time of their own, kept so
//! that a line read again after a crash gets the time it had the first time. Loki drops an
//! entry it already has only when stream, time and line are all equal; a replay with a new
//! read time is stored twice.
//!
//! A line at offset `p` of a batch is stamped `base + (p - first)`: the batch's base (its
//! read time, or the previous line's time + 1 ns if later) plus its distance in bytes from
//! the batch's first stamped line, so times strictly increase in file order. Each batch's
//! `(first, last, base)` is appended to `<data_dir>/stamps/<pipeline>.<source>.log` before
//! the batch is handed on (one `write`, no `fsync`: it survives `kill -9` and crashes of the
//! agent, not a power loss). At start the records are loaded; a tailer stamps a line that a
//! record covers with that record's time. A record supersedes the stream's records at or
//! after its `first` (content read again after a truncation). The file is compacted at
//! start and when it passes [`COMPACT_AFTER`], keeping the records not behind their
//! stream's saved position.
//!
//! Owns: the journal file (written only by its file source's reader thread). Never: blocks
//! reading on a journal error (it is logged once; lines then get plain read times).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Compact the journal when it grows past this many bytes.
pub const COMPACT_AFTER: u64 = 1024 * 1024;

/// The stamps of one batch: lines starting at offsets `first..=last` got
/// `base + (offset - first)` nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StampRecord {
    /// Offset of the batch's first stamped line.
    pub first: u64,
    /// Offset of its last stamped line.
    pub last: u64,
    /// Time of the first line (nanoseconds since the epoch).
    pub base: i64,
}

impl StampRecord {
    /// The time of the line at `offset`, if this record covers it.
    pub fn stamp(&self, offset: u64) -> Option<i64> {
        (self.first..=self.last)
            .contains(&offset)
            .then(|| self.base.saturating_add((offset - self.first) as i64))
    }
}

/// A stream's saved position (`None`: the stream has none, its records are dropped).
type Committed = Box<dyn Fn(&str) -> Option<u64> + Send>;

/// A shared handle to one source's journal (disabled until [`StampJournal::open`]).
#[derive(Clone, Default)]
pub struct StampJournal {
    inner: Arc<Mutex<Option<Journal>>>,
}

impl std::fmt::Debug for StampJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StampJournal")
    }
}

struct Journal {
    committed: Committed,
    path: PathBuf,
    file: Option<File>,
    size: u64,
    /// Records found at start, per stream, not yet handed to a tailer.
    loaded: HashMap<String, Vec<StampRecord>>,
    failed: bool,
}

impl StampJournal {
    /// Opens `<data_dir>/stamps/<name>.log`, loads its records and compacts it, keeping
    /// per stream the records not behind `committed(stream)` (its saved position).
    pub fn open(
        &self,
        data_dir: &Path,
        name: &str,
        committed: impl Fn(&str) -> Option<u64> + Send + 'static,
    ) {
        let file_name: String = name
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
                _ => '_',
            })
            .collect();
        let path = data_dir.join("stamps").join(format!("{file_name}.log"));
        let mut loaded = read(&path);
        keep_live(&mut loaded, &committed);
        let mut journal = Journal {
            committed: Box::new(committed),
            path,
            file: None,
            size: 0,
            loaded,
            failed: false,
        };
        let all = journal.loaded.clone();
        journal.rewrite(&all);
        *self.lock() = Some(journal);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Journal>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The records loaded for `stream` (handed out once).
    pub fn take_loaded(&self, stream: &str) -> Vec<StampRecord> {
        self.lock()
            .as_mut()
            .and_then(|j| j.loaded.remove(stream))
            .unwrap_or_default()
    }

    /// Appends a batch's record; call before the batch is handed on. A journal grown past
    /// [`COMPACT_AFTER`] is first rewritten with the records not behind their position.
    pub fn append(&self, stream: &str, record: StampRecord) {
        let mut guard = self.lock();
        let Some(journal) = guard.as_mut() else {
            return;
        };
        if journal.size >= COMPACT_AFTER {
            let mut records = read(&journal.path);
            keep_live(&mut records, &journal.committed);
            journal.rewrite(&records);
        }
        let line = format!(
            "{stream} {} {} {}\n",
            record.first, record.last, record.base
        );
        journal.write(line.as_bytes());
    }
}

impl Journal {
    fn write(&mut self, bytes: &[u8]) {
        if self.file.is_none() && !self.failed {
            let opened =
                fs::create_dir_all(self.path.parent().unwrap_or(Path::new("."))).and_then(|()| {
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&self.path)
                });
            match opened {
                Ok(file) => {
                    self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
                    self.file = Some(file);
                }
                Err(error) => self.fail(&error),
            }
        }
        if let Some(file) = &mut self.file {
            match file.write_all(bytes) {
                Ok(()) => self.size += bytes.len() as u64,
                Err(error) => {
                    self.file = None;
                    self.fail(&error);
                }
            }
        }
    }

    fn fail(&mut self, error: &std::io::Error) {
        if !self.failed {
            tracing::warn!(file = %self.path.display(), %error, "read-time journal write failed; lines read again after a crash may get new times");
        }
        self.failed = true;
    }

    /// Replaces the file with `records` (temp file, rename).
    fn rewrite(&mut self, records: &HashMap<String, Vec<StampRecord>>) {
        let mut text = String::new();
        for (stream, list) in records {
            for r in list {
                text.push_str(&format!("{stream} {} {} {}\n", r.first, r.last, r.base));
            }
        }
        let temp = self.path.with_extension("log.tmp");
        let result = fs::create_dir_all(self.path.parent().unwrap_or(Path::new(".")))
            .and_then(|()| fs::write(&temp, &text))
            .and_then(|()| fs::rename(&temp, &self.path));
        self.file = None;
        self.size = text.len() as u64;
        if let Err(error) = result {
            self.fail(&error);
        }
    }
}

/// Keeps the records not behind their stream's saved position.
fn keep_live(
    records: &mut HashMap<String, Vec<StampRecord>>,
    committed: &dyn Fn(&str) -> Option<u64>,
) {
    records.retain(|stream, list| {
        let Some(position) = committed(stream) else {
            return false;
        };
        list.retain(|r| r.last >= position);
        !list.is_empty()
    });
}

/// Reads a journal: per stream, its records in effect (a later record drops those at or
/// after its start). Unreadable lines (a torn last write) are skipped.
fn read(path: &Path) -> HashMap<String, Vec<StampRecord>> {
    let mut out: HashMap<String, Vec<StampRecord>> = HashMap::new();
    let Ok(text) = fs::read(path) else {
        return out;
    };
    for line in String::from_utf8_lossy(&text).lines() {
        let mut parts = line.split(' ');
        let (Some(stream), Some(first), Some(last), Some(base), None) = (
            parts.next(),
            parts.next().and_then(|v| v.parse().ok()),
            parts.next().and_then(|v| v.parse().ok()),
            parts.next().and_then(|v| v.parse().ok()),
            parts.next(),
        ) else {
            continue;
        };
        let record = StampRecord { first, last, base };
        let list = out.entry(stream.to_owned()).or_default();
        list.retain(|r| r.last < record.first);
        list.push(record);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_supersede() {
        let dir = tempfile::tempdir().unwrap();
        let journal = StampJournal::default();
        journal.open(dir.path(), "p/s", |_| Some(0));
        let rec = |first, last, base| StampRecord { first, last, base };
        journal.append("1-2", rec(0, 90, 1000));
        journal.append("1-2", rec(100, 190, 2000));
        journal.append("3-4", rec(0, 10, 50));
        journal.append("5-6", rec(0, 10, 50));
        // Content read again from 100 (a rewrite): the second record is superseded.
        journal.append("1-2", rec(100, 150, 3000));
        // A torn last line is skipped.
        let path = dir.path().join("stamps/p_s.log");
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"1-2 200 2").unwrap();

        let again = StampJournal::default();
        again.open(dir.path(), "p/s", |stream| match stream {
            "1-2" => Some(0),
            "3-4" => Some(11),
            _ => None,
        });
        assert_eq!(
            again.take_loaded("1-2"),
            vec![rec(0, 90, 1000), rec(100, 150, 3000)]
        );
        assert_eq!(
            again.take_loaded("3-4"),
            vec![],
            "behind the saved position"
        );
        assert_eq!(again.take_loaded("5-6"), vec![], "no saved position");
        assert_eq!(again.take_loaded("1-2"), vec![], "handed out once");
        assert_eq!(rec(100, 150, 3000).stamp(120), Some(3020));
        assert_eq!(rec(100, 150, 3000).stamp(151), None);
    }

    #[test]
    fn compacts_past_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let journal = StampJournal::default();
        let committed = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let seen = committed.clone();
        journal.open(dir.path(), "p", move |_| {
            Some(seen.load(std::sync::atomic::Ordering::Relaxed))
        });
        let mut offset = 0;
        let path = dir.path().join("stamps/p.log");
        while fs::metadata(&path).map_or(0, |m| m.len()) < COMPACT_AFTER {
            let record = StampRecord {
                first: offset,
                last: offset + 9,
                base: 1,
            };
            journal.append("a", record);
            offset += 10;
        }
        let record = StampRecord {
            first: offset,
            last: offset + 9,
            base: 1,
        };
        committed.store(offset - 10, std::sync::atomic::Ordering::Relaxed);
        journal.append("a", record);
        assert!(fs::metadata(&path).unwrap().len() < 100, "compacted");
        let again = StampJournal::default();
        again.open(dir.path(), "p", |_| Some(0));
        assert_eq!(again.take_loaded("a").len(), 2);
    }
}
