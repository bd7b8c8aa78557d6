//! From a path seen (inotify, a scan) to an open tailer: matching, deciding what to open,
//! resuming a saved position or starting a new identity, the cap on open files.

use super::*;

impl Reader {
    /// An inotify event for `path`.
    pub(super) fn touched(&mut self, path: &Path) {
        if !self.source.matcher.matches(path) {
            return;
        }
        let Ok(metadata) = std::fs::metadata(path) else {
            return;
        };
        let id = dev_ino(&metadata);
        if self.open.contains(&id) && self.paths.get(path) == Some(&id) {
            self.notified.insert(id); // checked in the next round
            return;
        }
        if metadata.is_file() {
            self.seen(path.to_path_buf(), &metadata, false);
        }
    }

    /// A matched path and what it points at, from a scan or an event.
    pub(super) fn seen(&mut self, path: PathBuf, metadata: &Metadata, initial: bool) {
        let id = dev_ino(metadata);
        self.sizes.insert(id, metadata.len());
        self.paths.insert(path.clone(), id);
        if let Some(tailer) = self.files.get_mut(&id) {
            tailer.gone_since = None;
            // A closed file's growth is what a deletion would lose (see `let_go`).
            tailer.size_seen = tailer.size_seen.max(metadata.len());
            let moved = tailer.path != path && self.paths.get(&tailer.path) != Some(&id);
            if moved {
                tailer.set_path(path.clone());
                tailer.tracker.set_meta(Self::meta(tailer));
            }
            if !tailer.is_open() && metadata.len() != tailer.offset {
                self.want(path, id, false);
            }
            return;
        }
        if let Some(limit) = self.source.ignore_older {
            let key = self.ctx.checkpoint_key(&key_of(id.0, id.1));
            let old = metadata
                .modified()
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age > limit);
            if old && self.ctx.checkpoints.position(&key).is_none() {
                return;
            }
        }
        self.want(path, id, initial);
    }

    pub(super) fn want(&mut self, path: PathBuf, dev_ino: (u64, u64), initial: bool) {
        if !self.wanted.insert(dev_ino) {
            return;
        }
        self.want_open.push_back(WantOpen {
            path,
            dev_ino,
            initial,
        });
    }

    /// The periodic scan: new files, moved files, files gone from every matched path.
    pub(super) fn scan(&mut self, initial: bool) -> Result<(), Stopped> {
        self.last_scan = Instant::now();
        let scan = self.source.matcher.scan_with_links();
        self.link_dirs = scan.link_dirs;
        let found = scan.files;
        let mut seen_ids = HashSet::with_capacity(found.len());
        let mut new_paths = HashMap::with_capacity(found.len());
        for (path, metadata) in &found {
            new_paths.insert(path.clone(), dev_ino(metadata));
        }
        // Paths that vanished no longer point anywhere.
        self.paths.retain(|path, _| new_paths.contains_key(path));
        for (path, metadata) in found {
            seen_ids.insert(dev_ino(&metadata));
            self.seen(path, &metadata, initial);
        }
        let now = Instant::now();
        let mut dropped = Vec::new();
        for (id, tailer) in &mut self.files {
            if seen_ids.contains(id) {
                continue;
            }
            if tailer.is_open() {
                if tailer.gone_since.is_none() {
                    let deleted = (tailer.file.as_ref())
                        .and_then(|file| file.metadata().ok())
                        .is_some_and(|metadata| {
                            std::os::unix::fs::MetadataExt::nlink(&metadata) == 0
                        });
                    match deleted {
                        true => self.metrics.deletions.inc(),
                        false => self.metrics.rotations.inc(),
                    }
                    tailer.gone_since = Some(now);
                }
            } else {
                dropped.push(*id);
            }
        }
        for id in dropped {
            if !self.reopen_moved(id) {
                self.let_go(id)?;
            }
        }
        // A file gone from every matched path before a descriptor was free for it (all of
        // `max_open_files` held by unfinished files) was never read: counted and logged.
        let vanished: Vec<(PathBuf, u64)> = (self.want_open.iter())
            .filter(|w| !seen_ids.contains(&w.dev_ino) && !self.files.contains_key(&w.dev_ino))
            .map(|w| (w.path.clone(), self.unread_before_open(w)))
            .collect();
        for (path, unread) in vanished {
            if unread > 0 {
                self.count_lost(&path, unread, "deleted_unread");
            }
        }
        self.want_open.retain(|w| seen_ids.contains(&w.dev_ino));
        self.wanted.retain(|id| seen_ids.contains(id));
        self.sizes.retain(|id, _| seen_ids.contains(id));
        self.metrics
            .watched
            .set(self.files.len() as i64 + self.want_open.len() as i64);
        Ok(())
    }

    /// The bytes of a waiting, never opened file that reading it would have delivered: from
    /// where it would have started (see `open_new`) to the size last seen.
    fn unread_before_open(&self, want: &WantOpen) -> u64 {
        let size = self.sizes.get(&want.dev_ino).copied().unwrap_or(0);
        let identity = key_of(want.dev_ino.0, want.dev_ino.1);
        let key = self.ctx.checkpoint_key(&identity);
        let start = match (
            self.adopted.get(&want.dev_ino),
            self.ctx.checkpoints.position(&key),
        ) {
            (Some(offset), _) => *offset,
            (None, Some(position)) => SavedFile::parse(key, &identity, &position).offset,
            (None, None) if self.starts_at_end(want) => size,
            (None, None) => 0,
        };
        size.saturating_sub(start)
    }

    /// Whether a file without a saved position starts at its end: found by the first scan
    /// with `read_from: end`, and not at a path a saved position had (a rotation's successor
    /// is read from its start).
    fn starts_at_end(&self, want: &WantOpen) -> bool {
        want.initial
            && self.source.read_from == ReadFrom::End
            && !self.known_paths.contains(&want.path)
    }

    /// Says on `/health` (a warning) and once in the log while files have waited for a
    /// descriptor longer than [`CAPPED_AFTER`], and takes it back when none waits.
    fn note_cap(&mut self, waiting: usize) {
        if waiting == 0 {
            if let Some((_, true)) = self.capped.take() {
                self.health.ok();
                tracing::info!("every file waiting for a descriptor is open again");
            }
            return;
        }
        let now = Instant::now();
        let (since, said) = self.capped.get_or_insert((now, false));
        if now.duration_since(*since) < CAPPED_AFTER {
            return;
        }
        let cap = self.source.max_open_files;
        self.health.warn(format!(
            "max_open_files ({cap}) reached: {waiting} files wait to be opened, every descriptor is held by a file not read to its end (a sink slower than the writers?); a file deleted before it is opened is lost"
        ));
        if !*said {
            *said = true;
            tracing::warn!(max_open_files = cap, waiting, "max_open_files reached: files wait to be opened; a file deleted before it is opened is lost (raise max_open_files if descriptors allow)");
        }
    }

    /// Opens waiting files while descriptors are free.
    pub(super) fn open_wanted(&mut self) -> Result<(), Stopped> {
        while !self.want_open.is_empty() {
            if self.open.len() >= self.source.max_open_files && !self.evict_one() {
                self.note_cap(self.want_open.len());
                self.metrics.open.set(self.open.len() as i64);
                return Ok(());
            }
            let Some(want) = self.want_open.pop_front() else {
                break;
            };
            self.wanted.remove(&want.dev_ino);
            self.open(want);
        }
        self.note_cap(0);
        self.metrics.open.set(self.open.len() as i64);
        Ok(())
    }

    /// Closes the least recently active open file that is at its end and still reachable.
    pub(super) fn evict_one(&mut self) -> bool {
        let victim = self
            .open
            .iter()
            .filter_map(|id| self.files.get(id).map(|t| (id, t)))
            .filter(|(_, t)| t.at_eof && t.gone_since.is_none())
            .min_by_key(|(_, t)| t.last_active)
            .map(|(id, _)| *id);
        let Some(id) = victim else {
            return false;
        };
        if let Some(tailer) = self.files.get_mut(&id) {
            tailer.close();
        }
        self.open.remove(&id);
        true
    }

    pub(super) fn open(&mut self, want: WantOpen) {
        let file = match open_regular(&want.path) {
            Ok(file) => file,
            Err(error) => {
                if self.warned.insert(want.path.clone()) {
                    tracing::warn!(file = %want.path.display(), %error, "cannot open file; retrying at every scan");
                }
                return;
            }
        };
        self.warned.remove(&want.path);
        let Ok(metadata) = file.metadata() else {
            return;
        };
        if dev_ino(&metadata) != want.dev_ino {
            return; // replaced since the scan; the next scan sees the new one
        }
        if self.files.contains_key(&want.dev_ino) {
            self.reopen(want.dev_ino, file, &metadata);
        } else {
            self.open_new(want, file, &metadata);
        }
    }

    pub(super) fn reopen(&mut self, id: (u64, u64), mut file: File, metadata: &Metadata) {
        let Some(tailer) = self.files.get_mut(&id) else {
            return;
        };
        let same = tailer.fingerprint.matches(&file).unwrap_or(false)
            && tailer
                .tail
                .is_none_or(|t| t.matches(&file).unwrap_or(false));
        let offset = tailer.offset;
        if file.seek(SeekFrom::Start(offset)).is_err() {
            return;
        }
        tailer.file = Some(file);
        tailer.at_eof = false;
        tailer.last_active = Instant::now();
        self.open.insert(id);
        if !same || metadata.len() < offset {
            self.restart_from_zero(id, if same { "truncated" } else { "replaced" });
        }
    }

    pub(super) fn open_new(&mut self, want: WantOpen, mut file: File, metadata: &Metadata) {
        let Ok(fingerprint) = Fingerprint::compute(&file, self.source.fingerprint_bytes) else {
            return;
        };
        let identity = key_of(want.dev_ino.0, want.dev_ino.1);
        let key = self.ctx.checkpoint_key(&identity);
        let size = metadata.len();
        let start = match (
            self.adopted.remove(&want.dev_ino),
            self.ctx.checkpoints.position(&key),
        ) {
            (Some(offset), _) => offset,
            (None, Some(position)) => {
                let saved = SavedFile::parse(key.clone(), &identity, &position);
                if still_the_same(&file, &saved, size) {
                    saved.offset
                } else {
                    // Rewritten, truncated or a reused inode while not read: the old
                    // content may live on in a copy; this file is new.
                    self.metrics.truncations.inc();
                    tracing::info!(file = %want.path.display(), saved_offset = saved.offset, size, "file truncated, rewritten or replaced since its position was saved; reading it from the start");
                    self.recover(
                        saved,
                        Some(want.dev_ino),
                        "truncated_unread",
                        &mut Default::default(),
                    );
                    0
                }
            }
            (None, None) if self.starts_at_end(&want) => size,
            (None, None) => 0,
        };
        if file.seek(SeekFrom::Start(start)).is_err() {
            return;
        }
        tracing::debug!(file = %want.path.display(), offset = start, "tailing file");
        let tracker = StreamTracker::detached(start);
        let mut tailer = Tailer::new(
            identity,
            want.dev_ino,
            want.path,
            Some(file),
            start,
            fingerprint,
            tracker,
            &self.source.settings,
        );
        tailer.size_seen = size;
        tailer.tracker = self.track_again(&key, start, Self::meta(&tailer));
        self.files.insert(want.dev_ino, tailer);
        self.open.insert(want.dev_ino);
    }

    /// A generation let go at its end and written to since (see `generations.rs`): opened
    /// again at its saved position (past the open-file cap if need be: these are few and
    /// brief), and let go again once read, as no matched path points at it.
    pub(super) fn read_late_write(&mut self, path: PathBuf, dev_ino: (u64, u64)) {
        tracing::info!(file = %path.display(), rotate_wait_ms = self.source.rotate_wait.as_millis() as u64, "rotated file written to after it was let go; reading what was added (a writer held it longer than rotate_wait_ms)");
        self.open(WantOpen {
            path,
            dev_ino,
            initial: false,
        });
        // Already rotated away (counted then): let go again once read.
        if let Some(tailer) = self.files.get_mut(&dev_ino) {
            tailer.gone_since = Some(Instant::now());
        }
    }

    /// Sends what is still assembled, closes the file, and retires its checkpoint.
    pub(super) fn let_go(&mut self, id: (u64, u64)) -> Result<(), Stopped> {
        let Some(mut tailer) = self.files.remove(&id) else {
            return Ok(());
        };
        if !tailer.is_open() && tailer.size_seen > tailer.offset {
            let unread = tailer.size_seen - tailer.offset;
            self.count_lost(&tailer.path, unread, "deleted_unread");
        }
        // A plain file's name now, for its position to be kept while it is there.
        let name = match tailer.gzip {
            None => generations::current_name(tailer.file.as_ref(), id),
            Some(_) => None,
        };
        tailer.close();
        self.open.remove(&id);
        if let Some(batch) = tailer.finish(&self.source.settings, &self.counters) {
            self.counters.events_in.add(batch.events.len() as u64);
            self.send(tailer.stream_hash, batch)?;
        }
        tracing::debug!(file = %tailer.path.display(), "file let go");
        let key = self.ctx.checkpoint_key(&tailer.key);
        let retiring = Retiring {
            tracker: tailer.tracker,
            end: tailer.offset,
            name: name.map(|name| (name, id)),
        };
        self.retiring.insert(key, retiring);
        Ok(())
    }
}

/// Whether a saved position still describes `file`: same first bytes, the same bytes before
/// the saved reading position, and long enough. A file whose first bytes were not saved
/// (an old or damaged checkpoint) is taken as new.
pub(super) fn still_the_same(file: &File, saved: &SavedFile, size: u64) -> bool {
    let head = saved
        .fingerprint
        .is_some_and(|f| f.matches(file).unwrap_or(false));
    let tail = saved.tail.is_none_or(|t| t.matches(file).unwrap_or(false));
    head && tail && size >= saved.offset
}
