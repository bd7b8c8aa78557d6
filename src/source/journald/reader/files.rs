//! The set of open journal files: the first scan (and the saved positions whose files are
//! gone), each later scan (new files opened at their saved position, renamed ones
//! followed by device + inode, deleted ones read to their end through the descriptor),
//! archived files closed once read, and files that fail (an online one after a grace
//! period), counted in `sluice_journal_errors_total{reason}`.
//!
//! Owns: opening, following and closing files, their checkpoint keys, the broken-file
//! memory. Never: reads entries (the loop in `mod.rs` does).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::{Open, Reader, ONLINE_GRACE};
use crate::ack::Meta;
use crate::event::StreamName;
use crate::source::journald::discovery;
use crate::source::journald::file::{id128_hex, Error, FileState, JournalFile};

impl Reader {
    /// The first scan; positions saved for files that are gone are reported.
    pub(super) fn start(&mut self) {
        self.scan();
        self.start_at_end = false;
        let prefix = self.ctx.checkpoint_key("");
        let live: HashSet<String> = self
            .open
            .iter()
            .map(|open| open.key.clone())
            .chain(self.finished.values().cloned())
            .collect();
        let mut gone = Vec::new();
        for (key, position) in self.ctx.checkpoints.positions_with_prefix(&prefix) {
            if live.contains(&key) {
                continue;
            }
            let finished = position
                .meta
                .get("n_entries")
                .and_then(|n| n.as_u64())
                .is_some_and(|n| position.offset >= n);
            if !finished {
                tracing::error!(
                    stream = %key,
                    position = position.offset,
                    "journal file with unread entries is gone (vacuumed or reset while the agent was down); continuing with the files present"
                );
                self.count_error("position_lost");
            }
            gone.push(key);
        }
        for key in gone {
            self.ctx.checkpoints.forget(&key);
        }
        let dirs = discovery::roots(&self.settings.location, self.machine_id.as_deref());
        if self.open.is_empty() && self.finished.is_empty() {
            tracing::info!(
                dirs = ?dirs,
                "journald: no readable journal file yet; watching for one"
            );
        } else {
            tracing::info!(
                dirs = ?dirs,
                files = self.open.len() + self.finished.len(),
                "journald: reading the journal"
            );
        }
    }

    /// A read failed: an online file gets a grace period, others are counted and closed.
    /// May remove `self.open[index]`.
    pub(super) fn failed(&mut self, index: usize, error: Error) {
        let open = &mut self.open[index];
        open.head = None;
        if open.sealed.is_some_and(|n| open.journal.n_read() >= n) {
            // Archived and read to its end: a vacuum zeroed or truncated it before its
            // header said archived (journald frees a vacuumed file's blocks even while it is
            // open). Nothing was lost.
            tracing::debug!(file = %open.journal.path().display(), %error, "archived journal file read to its end became unreadable (vacuumed)");
            let open = self.open.remove(index);
            self.ack_read(&open);
            self.finish(open);
            self.files_open.set(self.open.len() as i64);
            return;
        }
        let online = open.journal.header().state == FileState::Online;
        if online && matches!(error, Error::Truncated | Error::Corrupt(_)) {
            let since = *open.failing_since.get_or_insert_with(Instant::now);
            if since.elapsed() < ONLINE_GRACE {
                // Try again at the next turn, with fresh reads.
                open.paused = true;
                return;
            }
        }
        // One unreadable entry in readable arrays: skipped, the file read on (journalctl
        // does the same); a failed read of the disk is not damage to skip over.
        if !matches!(error, Error::Io(_)) && open.journal.skip_bad_entry() {
            open.failing_since = None;
            self.left_out(index, "bad_entry", 1);
            return;
        }
        let open = self.open.remove(index);
        self.ack_read(&open);
        tracing::warn!(
            file = %open.journal.path().display(),
            position = open.journal.n_read(),
            %error,
            "journal file unreadable; skipping the rest of it and reading the others"
        );
        self.count_error(error.reason());
        if let Ok(metadata) = std::fs::metadata(open.journal.path()) {
            self.broken.insert(open.identity, state_of(&metadata));
        }
        self.files_open.set(self.open.len() as i64);
    }

    /// Entries or fields of `self.open[index]` that cannot be read were left out: counted
    /// (`reason` `bad_entry` or `bad_field`), and logged at most every 10 s.
    pub(super) fn left_out(&mut self, index: usize, reason: &'static str, n: u64) {
        self.count_errors(reason, n);
        if let Some(due) = self.left_out_log.add(n, Instant::now()) {
            tracing::warn!(
                file = %self.open[index].journal.path().display(),
                position = self.open[index].journal.n_read(),
                left_out = due.count,
                since_last_line_secs = due.since_last_line_secs,
                "journal entries or fields that cannot be read were left out, as journalctl leaves them out; counted in sluice_journal_errors_total{{reason=\"bad_entry\"|\"bad_field\"}}"
            );
        }
    }

    fn count_error(&mut self, reason: &'static str) {
        self.count_errors(reason, 1);
    }

    fn count_errors(&mut self, reason: &'static str, n: u64) {
        let metrics = &self.ctx.metrics;
        self.errors
            .entry(reason)
            .or_insert_with(|| {
                metrics.counter(
                    "sluice_journal_errors_total",
                    "Journal files (or parts of them) that could not be read, by reason.",
                    &[("reason", reason)],
                )
            })
            .add(n);
    }

    /// Closes archived files read to their end, keeping their identity so the scan does
    /// not open them again; frees the buffers of idle ones.
    pub(super) fn close_finished(&mut self) {
        let mut index = 0;
        while index < self.open.len() {
            let open = &mut self.open[index];
            let done = open.journal.at_end()
                && open.head.is_none()
                && open.journal.header().state == FileState::Archived;
            if !done {
                open.journal.release_buffers();
                index += 1;
                continue;
            }
            let open = self.open.remove(index);
            self.finish(open);
        }
        self.files_open.set(self.open.len() as i64);
    }

    /// Lets go of a file read to its end, keeping its identity (the scan does not open it
    /// again) and its entry count beside its position (so that its absence after a restart
    /// is not a lost position).
    /// A file let go during a batch: its entries read in it are acknowledged with it.
    fn ack_read(&mut self, open: &Open) {
        if open.journal.n_read() > open.acked {
            self.failed_acks
                .push(open.tracker.track(open.journal.n_read()));
        }
    }

    fn finish(&mut self, open: Open) {
        let n_entries = open.sealed.unwrap_or(open.journal.header().n_entries);
        if open.sealed != Some(n_entries) {
            open.tracker
                .set_meta(finished_meta(open.journal.path(), n_entries));
        }
        self.finished.insert(open.identity, open.key);
    }

    /// Finds journal files: opens new ones, follows renamed ones, lets go of deleted ones.
    pub(super) fn scan(&mut self) {
        self.next_scan = Instant::now() + self.settings.poll_interval;
        for root in discovery::roots(&self.settings.location, self.machine_id.as_deref()) {
            self.watcher.watch_dir(&root);
        }
        let mut seen = HashSet::new();
        for path in discovery::candidates(&self.settings.location, self.machine_id.as_deref()) {
            let Ok(metadata) = std::fs::metadata(&path) else {
                continue;
            };
            if !metadata.is_file() {
                continue;
            }
            let identity = (metadata.dev(), metadata.ino());
            seen.insert(identity);
            if let Some(open) = self.open.iter_mut().find(|o| o.identity == identity) {
                open.present = true;
                if open.journal.path() != path {
                    open.journal.set_path(path.clone());
                    open.tracker.set_meta(match open.sealed {
                        Some(n_entries) => finished_meta(&path, n_entries),
                        None => file_meta(&path),
                    });
                }
                continue;
            }
            if self.finished.contains_key(&identity) {
                continue;
            }
            if self.broken.get(&identity) == Some(&state_of(&metadata)) {
                continue;
            }
            self.open_file(path, identity, &metadata);
        }
        // Gone from the directory: read to the end through the descriptor, then let go.
        // The header is read again first: the one read last may be from before the file's
        // last entries (written, rotated and deleted while a send waited), and would say
        // the file was read to its end.
        let mut deleted = 0;
        let mut unreadable = Vec::new();
        for (index, open) in self.open.iter_mut().enumerate() {
            if !seen.contains(&open.identity) && !open.deleted_counted {
                open.present = false;
                if let Err(error) = open.journal.refresh() {
                    unreadable.push((index, error));
                    continue;
                }
                if !open.journal.at_end() || open.head.is_some() {
                    open.deleted_counted = true;
                    tracing::warn!(file = %open.journal.path().display(), "journal file deleted before it was read to its end; reading the rest through the open descriptor");
                    deleted += 1;
                }
            }
        }
        for _ in 0..deleted {
            self.count_error("deleted");
        }
        // A deleted file whose header is gone too (journald's vacuum zeroes what it
        // deletes, even under an open descriptor): what was not read of it is lost.
        for (index, error) in unreadable.into_iter().rev() {
            self.failed(index, error);
        }
        let checkpoints = self.ctx.checkpoints.clone();
        self.open.retain(|open| {
            let keep =
                seen.contains(&open.identity) || !open.journal.at_end() || open.head.is_some();
            if !keep {
                checkpoints.forget(&open.key);
            }
            keep
        });
        self.finished.retain(|identity, key| {
            let keep = seen.contains(identity);
            if !keep {
                checkpoints.forget(key);
            }
            keep
        });
        self.broken.retain(|identity, _| seen.contains(identity));
        self.headerless
            .retain(|identity, _| seen.contains(identity));
        self.files_open.set(self.open.len() as i64);
    }

    fn open_file(&mut self, path: PathBuf, identity: (u64, u64), metadata: &std::fs::Metadata) {
        let opened = JournalFile::open(&path);
        if let Err(Error::BadHeader(_)) = &opened {
            if !archived_name(&path) {
                let since = *self.headerless.entry(identity).or_insert_with(Instant::now);
                if since.elapsed() < ONLINE_GRACE {
                    return; // Being created: looked at again at the next scan.
                }
            }
        }
        self.headerless.remove(&identity);
        let mut journal = match opened {
            Ok(journal) => journal,
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "not reading journal file");
                self.count_error(error.reason());
                self.broken.insert(identity, state_of(metadata));
                return;
            }
        };
        let file_id = id128_hex(&journal.header().file_id);
        let key = self.ctx.checkpoint_key(&file_id);
        if self.open.iter().any(|open| open.key == key) {
            // The same file under two names (a hard link, or /run and /var bind mounts).
            return;
        }
        let start = match self.ctx.checkpoints.position(&key) {
            Some(position) => position.offset,
            None if self.start_at_end => journal.header().n_entries,
            None => 0,
        };
        if let Err(error) = journal.skip_to(start) {
            tracing::warn!(file = %path.display(), %error, "not reading journal file");
            self.count_error(error.reason());
            self.broken.insert(identity, state_of(metadata));
            return;
        }
        let sealed = archived_name(&path).then(|| journal.header().n_entries);
        let meta = match sealed {
            Some(n_entries) => finished_meta(&path, n_entries),
            None => file_meta(&path),
        };
        let tracker = self.ctx.checkpoints.track(&key, journal.n_read(), meta);
        tracing::debug!(file = %path.display(), position = journal.n_read(), "journal file opened");
        self.open.push(Open {
            stream: StreamName::from(key.as_str()),
            acked: journal.n_read(),
            journal,
            identity,
            key,
            tracker,
            head: None,
            present: true,
            deleted_counted: false,
            failing_since: None,
            paused: false,
            sealed,
        });
    }
}

fn state_of(metadata: &std::fs::Metadata) -> (u64, SystemTime) {
    (
        metadata.len(),
        metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    )
}

pub(super) fn file_meta(path: &Path) -> Meta {
    let mut meta = Meta::new();
    meta.insert("path".into(), path.display().to_string().into());
    meta
}

/// A complete file's metadata: its path and how many entries it holds.
pub(super) fn finished_meta(path: &Path, n_entries: u64) -> Meta {
    let mut meta = file_meta(path);
    meta.insert("n_entries".into(), n_entries.into());
    meta
}

/// journald's name for a file it archived (`system@….journal`, `user-1000@….journal~`);
/// it appends nothing to a file after giving it such a name.
pub(super) fn archived_name(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name.to_string_lossy().contains('@'))
}
