//! What the reader does when a file's content is no longer where the globs look, so that a
//! line it has not delivered is never forgotten while its bytes exist somewhere:
//!
//! - At start (and so after a crash or a reload), a saved position whose file no matched
//!   path points at is looked for ([`super::recovery`]) and read to its end from the saved
//!   offset, then let go like any rotated file. A matched file that is really an old
//!   position on a renumbered device is *adopted*: it resumes at the saved offset.
//! - A matched file that shrank or whose content changed (copytruncate, a rewrite) first
//!   looks for a copy of its old content in its directory; the reading state (offset,
//!   partial lines, acknowledgements) moves to the copy and goes on there, and the live
//!   file is read again from 0 under a fresh stream.
//! - Generations created and rotated away while the source was not running (two rotations
//!   while the agent was down) are read from their start ([`super::generations`]).
//! - A file that is gone with unread bytes is the only loss: counted in
//!   `sluice_file_lost_bytes_total{reason}` and logged at ERROR, never silent.
//!
//! Owns: those decisions for the reader of `mod.rs`. Never: reads lines.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::identity::{dev_ino, key_of, open_regular, Fingerprint, SavedFile, Tail};
use super::recovery::{self, Candidate, Found, GzipInput, Search};
use super::tailer::Tailer;
use super::Reader;

/// A file to read to its end under its own stream, no matched path pointing at it.
pub(super) struct Detached {
    /// Its device and inode.
    pub id: (u64, u64),
    /// The path its lines were written under (its events' `file`).
    pub path: PathBuf,
    /// A plain file, positioned at `offset`.
    pub file: Option<File>,
    /// Or a gzip file's decompressor, at `offset`.
    pub gzip: Option<Box<GzipInput>>,
    /// Where its stream starts.
    pub offset: u64,
    /// Its head fingerprint (decompressed for gzip).
    pub fingerprint: Fingerprint,
    /// The tail at `offset`, if known.
    pub tail: Option<Tail>,
    /// How much there is to read, as far as known (a loss is counted from it).
    pub size_seen: u64,
}

impl Reader {
    /// After the first scan: every saved position of this source whose file is not matched
    /// is found and finished, or its loss counted.
    pub(super) fn recover_saved(&mut self) {
        let prefix = self.ctx.checkpoint_key("");
        let live: HashSet<(u64, u64)> = self
            .want_open
            .iter()
            .map(|w| w.dev_ino)
            .chain(self.files.keys().copied())
            .collect();
        let saved: Vec<SavedFile> = self
            .ctx
            .checkpoints
            .positions_with_prefix(&prefix)
            .into_iter()
            .map(|(key, position)| {
                let identity = key[prefix.len()..].to_owned();
                SavedFile::parse(key, &identity, &position)
            })
            .collect();
        self.known_paths = saved.iter().filter_map(|s| s.path.clone()).collect();
        let mut search = Search::default();
        for saved in &saved {
            if saved.dev_ino.is_some_and(|id| live.contains(&id)) {
                continue; // its file is matched: opening it checks the position
            }
            self.recover(saved.clone(), None, "deleted_unread", &mut search);
        }
        self.read_missed_rotations(&saved, &mut search);
    }

    /// Finds where `saved`'s content is now (not in `exclude`) and reads it to its end, or
    /// counts it lost for `reason`. `search` caches what earlier searches looked at.
    pub(super) fn recover(
        &mut self,
        saved: SavedFile,
        exclude: Option<(u64, u64)>,
        reason: &'static str,
        search: &mut Search,
    ) {
        let found = search.find(&saved, &self.source.matcher, |c| self.usable(c, exclude));
        match found {
            Some(found) => self.resume_found(saved, found),
            None => self.lost(&saved, reason),
        }
    }

    /// A candidate may take a saved position: not excluded, not read already, and if the
    /// globs match it, only while it has no position of its own (adoption).
    fn usable(&self, candidate: &Candidate, exclude: Option<(u64, u64)>) -> bool {
        let id = candidate.dev_ino;
        if Some(id) == exclude || self.files.contains_key(&id) || self.adopted.contains_key(&id) {
            return false;
        }
        if self.wanted.contains(&id) {
            let key = self.ctx.checkpoint_key(&key_of(id.0, id.1));
            return self.ctx.checkpoints.position(&key).is_none();
        }
        true
    }

    fn resume_found(&mut self, saved: SavedFile, found: Found) {
        let candidate = found.candidate().clone();
        let id = candidate.dev_ino;
        if saved.unread_bytes() > 0 || self.wanted.contains(&id) {
            self.metrics.recovered.inc();
        }
        if self.wanted.contains(&id) {
            // A matched file holding the old content (a renumbered device): it resumes at
            // the saved offset when it is opened.
            tracing::info!(file = %candidate.path.display(), offset = saved.offset, "file found on a new device or inode; resuming at its saved position");
            self.ctx.checkpoints.forget(&saved.key);
            self.adopted.insert(id, saved.offset);
            return;
        }
        if self.ctx.checkpoint_key(&key_of(id.0, id.1)) != saved.key {
            self.ctx.checkpoints.forget(&saved.key);
        }
        let path = saved.path.clone().unwrap_or_else(|| candidate.path.clone());
        let (file, gzip, fingerprint) = match found {
            Found::Plain { mut file, .. } => {
                if file.seek(SeekFrom::Start(saved.offset)).is_err() {
                    return;
                }
                let fingerprint = match saved.fingerprint {
                    Some(fingerprint) => fingerprint,
                    None => match Fingerprint::compute(&file, self.source.fingerprint_bytes) {
                        Ok(fingerprint) => fingerprint,
                        Err(_) => return,
                    },
                };
                (Some(file), None, fingerprint)
            }
            Found::Gzip { input, .. } => match saved.fingerprint {
                Some(fingerprint) => (None, Some(input), fingerprint),
                None => return,
            },
        };
        if saved.unread_bytes() > 0 {
            tracing::info!(
                file = %candidate.path.display(),
                was = %path.display(),
                offset = saved.offset,
                compressed = gzip.is_some(),
                "reading the unread part of a file that left the globs",
            );
        } else {
            // A rotated generation read to its end, whose position is kept while it exists.
            tracing::debug!(file = %candidate.path.display(), offset = saved.offset, "a finished file is still there");
        }
        // A gzip file's size says nothing about its decompressed content.
        let size_seen = match gzip {
            Some(_) => saved.size.unwrap_or(0),
            None => saved.size.unwrap_or(0).max(candidate.size),
        };
        self.read_detached(Detached {
            id,
            path,
            file,
            gzip,
            offset: saved.offset,
            fingerprint,
            tail: saved.tail,
            size_seen,
        });
    }

    /// Reads a file no matched path points at to its end, then lets it go: its stream
    /// starts at `offset` and is saved under the file's own identity.
    pub(super) fn read_detached(&mut self, detached: Detached) {
        let Detached {
            id,
            path,
            file,
            gzip,
            offset,
            fingerprint,
            tail,
            size_seen,
        } = detached;
        let identity = key_of(id.0, id.1);
        let key = self.ctx.checkpoint_key(&identity);
        let mut tailer = Tailer::new(
            identity,
            id,
            path,
            file,
            offset,
            fingerprint,
            crate::ack::StreamTracker::detached(offset),
            &self.source.settings,
        );
        tailer.size_seen = size_seen;
        tailer.gzip = gzip;
        tailer.tail = tail;
        tailer.gone_since = Some(Instant::now());
        tailer.tracker = self.track_again(&key, offset, Self::meta(&tailer));
        self.files.insert(id, tailer);
        self.open.insert(id);
    }

    /// `saved`'s file is nowhere: forget it, and count what it held unread.
    fn lost(&mut self, saved: &SavedFile, reason: &'static str) {
        self.ctx.checkpoints.forget(&saved.key);
        let bytes = saved.unread_bytes();
        let path = saved.path.as_deref().unwrap_or(Path::new("?"));
        if bytes == 0 {
            tracing::debug!(file = %path.display(), "forgetting the position of a file read to its end that no longer exists");
            return;
        }
        self.count_lost(path, bytes, reason);
    }

    pub(super) fn count_lost(&self, path: &Path, bytes: u64, reason: &'static str) {
        self.metrics.lost_bytes(reason).add(bytes);
        tracing::error!(file = %path.display(), bytes, reason, "unread data of a file is gone and cannot be delivered");
    }

    /// A matched file shrank or changed: if a copy of its old content is in its directory
    /// (copytruncate, possibly compressed), the reading state moves there and goes on.
    /// Returns whether it did.
    pub(super) fn continue_in_copy(&mut self, id: (u64, u64)) -> bool {
        let Some(tailer) = self.files.get(&id) else {
            return false;
        };
        let saved = recovery::as_saved(
            String::new(),
            &tailer.path,
            tailer.offset,
            tailer.fingerprint,
            tailer.tail,
        );
        let in_dir = tailer
            .path
            .parent()
            .map(recovery::files_in)
            .unwrap_or_default();
        let usable = |c: &Candidate| {
            c.dev_ino != id
                && !self.files.contains_key(&c.dev_ino)
                && !self.wanted.contains(&c.dev_ino)
        };
        let found = recovery::locate(&saved, &in_dir, usable, &Default::default());
        let Some(found) = found else {
            return false;
        };
        let Some(mut old) = self.files.remove(&id) else {
            return false;
        };
        self.open.remove(&id);
        let live_file = old.file.take();
        let live_identity = old.key.to_string();
        let copy = found.candidate().clone();
        let copy_identity = key_of(copy.dev_ino.0, copy.dev_ino.1);
        tracing::info!(file = %old.path.display(), copy = %copy.path.display(), offset = old.offset, "file truncated; reading its unread part from the copy");
        self.ctx
            .checkpoints
            .forget(&self.ctx.checkpoint_key(&live_identity));
        old.move_to(copy_identity.clone(), copy.dev_ino);
        match found {
            Found::Plain { mut file, .. } => {
                if file.seek(SeekFrom::Start(old.offset)).is_ok() {
                    old.file = Some(file);
                }
            }
            Found::Gzip { input, .. } => old.gzip = Some(input),
        }
        if old.file.is_some() {
            old.size_seen = old.size_seen.max(copy.size);
        }
        old.gone_since = Some(Instant::now());
        let copy_key = self.ctx.checkpoint_key(&copy_identity);
        self.ctx.checkpoints.adopt(&copy_key, &old.tracker);
        old.tracker.set_meta(Self::meta(&old));
        self.metrics.recovered.inc();
        let path = old.path.clone();
        self.files.insert(copy.dev_ino, old);
        self.open.insert(copy.dev_ino);
        if let Some(file) = live_file {
            self.start_over(id, live_identity, path, file);
        }
        true
    }

    /// A fresh stream at 0 for a matched file whose old content moved away.
    fn start_over(
        &mut self,
        id: (u64, u64),
        identity: String,
        path: std::path::PathBuf,
        mut file: std::fs::File,
    ) {
        if file.seek(SeekFrom::Start(0)).is_err() {
            return;
        }
        let Ok(fingerprint) = Fingerprint::compute(&file, self.source.fingerprint_bytes) else {
            return;
        };
        let key = self.ctx.checkpoint_key(&identity);
        let mut tailer = Tailer::new(
            identity,
            id,
            path,
            Some(file),
            0,
            fingerprint,
            crate::ack::StreamTracker::detached(0),
            &self.source.settings,
        );
        tailer.tracker = self.track_again(&key, 0, Self::meta(&tailer));
        self.files.insert(id, tailer);
        self.open.insert(id);
    }

    /// A closed file that left every matched path: if it is still in its directory under
    /// another name (rotated while closed for being idle), it is reopened and read to its
    /// end. Returns whether it was.
    pub(super) fn reopen_moved(&mut self, id: (u64, u64)) -> bool {
        let Some(tailer) = self.files.get_mut(&id) else {
            return false;
        };
        let Some(dir) = tailer.path.parent() else {
            return false;
        };
        let Some(candidate) = recovery::files_in(dir)
            .into_iter()
            .find(|c| c.dev_ino == id && c.size > tailer.offset)
        else {
            return false;
        };
        let Ok(mut file) = open_regular(&candidate.path) else {
            return false;
        };
        let same = file.metadata().is_ok_and(|m| dev_ino(&m) == id)
            && tailer.fingerprint.matches(&file).unwrap_or(false);
        if !same || file.seek(SeekFrom::Start(tailer.offset)).is_err() {
            return false;
        }
        tailer.file = Some(file);
        tailer.at_eof = false;
        tailer.gone_since = Some(Instant::now());
        tailer.last_active = Instant::now();
        self.open.insert(id);
        true
    }

    /// Every 100 ms (and while a send waits) for open plain files: the head fingerprint
    /// grown to `fingerprint_bytes` as the file grows, the tail at the read position and
    /// the size, saved beside the position when they changed. Returns the files whose
    /// first bytes changed (rewritten: the caller starts them over).
    pub(super) fn refresh_identities(&mut self) -> Vec<(u64, u64)> {
        let mut rewritten = Vec::new();
        for id in &self.open {
            let Some(tailer) = self.files.get_mut(id) else {
                continue;
            };
            let Some(file) = &tailer.file else {
                continue;
            };
            let tail_current = tailer.tail.map(|t| t.at) == Some(tailer.offset);
            let head_full = tailer.fingerprint.len >= self.source.fingerprint_bytes;
            if tailer.at_eof && tail_current && head_full {
                continue; // idle at its end: nothing new (has_news watches for growth)
            }
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            let mut changed = false;
            if tailer.fingerprint.len < self.source.fingerprint_bytes
                && size > tailer.fingerprint.len
            {
                if !tailer.fingerprint.matches(file).unwrap_or(true) {
                    rewritten.push(*id);
                    continue;
                }
                if let Ok(fingerprint) = Fingerprint::compute(file, self.source.fingerprint_bytes) {
                    tailer.fingerprint = fingerprint;
                    changed = true;
                }
            }
            if !tail_current {
                if let Ok(Some(tail)) = Tail::compute(file, tailer.offset) {
                    tailer.tail = Some(tail);
                    changed = true;
                }
            }
            if size > tailer.size_seen {
                tailer.size_seen = size;
                changed = true;
            }
            if changed {
                tailer.tracker.set_meta(Self::meta(tailer));
            }
        }
        rewritten
    }
}
