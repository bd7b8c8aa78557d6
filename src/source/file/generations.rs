//! Rotations made while the source was not running: generations of a file that were
//! created, written and rotated away while the agent was down (stopped, killed, between a
//! reload's old and new source), so the globs never matched them while anything read.
//!
//! Two rotations while down leave `app.log.2` (the generation the agent was reading: found
//! by its saved position, [`super::recovery`]), `app.log.1` (a generation the agent never
//! saw) and a new `app.log`. Tailers that read only what their globs match lose
//! `app.log.1`; this reads it from its start.
//!
//! A file in the directory of a saved position is such a generation when:
//! - its name is the saved file's name with a rotation suffix: a `.`, `-` or `_` then a
//!   digit (`app.log.1`, `app.log.2.gz`, `app.log-20261128`, the kubelet's
//!   `0.log.20261128-101010`), so other files beside it are never taken;
//! - the globs do not match it (what they match is read by the scan as usual);
//! - it was modified at or after the moment the source's positions were last saved
//!   ([`crate::checkpoint::Checkpoints::start_watching`]): a generation read before the
//!   stop was last written before it (logrotate keeps the modification time when it
//!   compresses or renumbers, so those are left alone too);
//! - it was created at or after that moment too, where the filesystem records creation
//!   (ext4, xfs, btrfs, tmpfs): a generation read and let go before the stop that a writer
//!   still holding it open appended to later is not read again from its start;
//! - no saved position is its file or its content (the generation being read, its
//!   compressed copy, copytruncate's copy of it: those go on at their saved offset).
//!
//! Such generations are read from their start, plain or through gzip, oldest first.
//!
//! The kubelet compresses a rotated generation at its next rotation into a new file whose
//! times are all new, so a generation read before the stop, compressed while down, passes
//! the time checks above. Its position says it was read: a generation read to its end and
//! let go keeps its saved position (at its end) for as long as its file is still there
//! under the name it was let go at ([`Finished`]), so its compressed copy is held by it.
//! With a checkpoint written by an older version, which forgot those positions
//! ([`crate::checkpoint::Checkpoints::finished_files_kept`]), a compressed generation
//! whose compressor did not keep the modification time (logrotate's does: it is then older
//! than the file's creation) cannot be told from one read before; it is logged at INFO
//! and left rather than read twice. One compressed with anything but gzip (xz, bzip2,
//! zstd) cannot be read: its size is counted in
//! `sluice_file_lost_bytes_total{reason="unreadable_rotation"}` and logged at ERROR.
//!
//! A finished generation written to after it was let go (a writer that opened the file
//! before the rotation and wrote more than `rotate_wait_ms` later, or was stopped between
//! its open and its write) is seen at the next check of its kept position, by its size,
//! and read again from its saved end ([`Finished::check`] returns it).
//!
//! Owns: finding those generations and starting their reads, and keeping finished
//! generations' positions while their files exist. Never: reads lines, or looks at files
//! the globs match.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use super::identity::{dev_ino, SavedFile};
use super::recovery::{open_at_start, Candidate, Search};
use super::rotation::Detached;
use super::Reader;
use crate::checkpoint::Checkpoints;

/// How often kept positions are checked against their files.
const CHECK_EVERY: Duration = Duration::from_secs(10);
/// Most finished positions a source keeps (the oldest go first): a few per rotated file
/// the source reads (the kubelet leaves one generation uncompressed, logrotate `rotate N`
/// without compression N).
const MAX_KEPT: usize = 4096;

/// The saved positions of generations read to their end and let go, kept while each
/// file is still there under the name it had when it was let go (module doc).
#[derive(Default)]
pub(super) struct Finished {
    /// Oldest first.
    kept: VecDeque<Kept>,
    /// The keys in `kept`: a stream opened again is looked up here, not in the list.
    keys: HashSet<String>,
    next_check: Option<Instant>,
}

/// A finished generation's kept position.
struct Kept {
    /// Its checkpoint key.
    key: String,
    /// Its name when let go.
    path: PathBuf,
    /// Its device and inode.
    id: (u64, u64),
    /// Where it was read to (its size when let go).
    end: u64,
}

impl Finished {
    /// Keeps `key`'s position (read to `end`, its end) while its file (device and inode) is
    /// still at the name it had when let go, or forgets it now when it had none (deleted).
    pub(super) fn keep(
        &mut self,
        checkpoints: &Checkpoints,
        key: String,
        name: Option<(PathBuf, (u64, u64))>,
        end: u64,
    ) {
        let Some((path, id)) = name else {
            return checkpoints.forget(&key);
        };
        self.keys.insert(key.clone());
        self.kept.push_back(Kept { key, path, id, end });
        while self.kept.len() > MAX_KEPT {
            if let Some(kept) = self.kept.pop_front() {
                self.keys.remove(&kept.key);
                checkpoints.forget(&kept.key);
            }
        }
    }

    /// `key` is read again (a stream resumed or reopened under it): no longer kept here.
    pub(super) fn tracked_again(&mut self, key: &str) {
        if self.keys.remove(key) {
            self.kept.retain(|kept| kept.key != key);
        }
    }

    /// Every [`CHECK_EVERY`]: follows a file renamed within its directory, forgets the
    /// positions whose file is gone (compressed into a new file, deleted, or moved away: a
    /// recompressed generation keeps its modification time, which already says it was
    /// read), and
    /// returns the files that grew past their end since they were let go (name, device
    /// and inode), to be read on from their kept position.
    pub(super) fn check(
        &mut self,
        checkpoints: &Checkpoints,
        now: Instant,
    ) -> Vec<(PathBuf, (u64, u64))> {
        if self.kept.is_empty() || self.next_check.is_some_and(|at| now < at) {
            return Vec::new();
        }
        self.next_check = Some(now + CHECK_EVERY);
        let mut grown = Vec::new();
        let keys = &mut self.keys;
        // Directories listed this check (only when a kept file left its name).
        let mut listed: HashMap<PathBuf, FilesById> = HashMap::new();
        self.kept.retain_mut(|kept| {
            let mut size = std::fs::symlink_metadata(&kept.path)
                .ok()
                .filter(|m| dev_ino(m) == kept.id)
                .map(|m| m.len());
            if size.is_none() {
                // Renamed again (logrotate renumbers its generations): found by its inode
                // in the same directory, its late writes are not lost with the old name.
                if let Some(dir) = kept.path.parent() {
                    let files = listed
                        .entry(dir.to_owned())
                        .or_insert_with(|| files_in(dir));
                    if let Some((path, len)) = files.get(&kept.id) {
                        kept.path = path.clone();
                        size = Some(*len);
                    }
                }
            }
            match size {
                Some(size) if size > kept.end => {
                    // Its position stays saved: the read resumes from it (`open_new`).
                    keys.remove(&kept.key);
                    grown.push((kept.path.clone(), kept.id));
                    false
                }
                Some(_) => true,
                None => {
                    keys.remove(&kept.key);
                    checkpoints.forget(&kept.key);
                    false
                }
            }
        });
        grown
    }
}

/// Regular files by device and inode: (path, size).
type FilesById = HashMap<(u64, u64), (PathBuf, u64)>;

/// The regular files in `dir`.
fn files_in(dir: &std::path::Path) -> FilesById {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let metadata = std::fs::symlink_metadata(entry.path()).ok()?;
            metadata
                .is_file()
                .then(|| (dev_ino(&metadata), (entry.path(), metadata.len())))
        })
        .collect()
}

/// The name the open `file` (device and inode `id`) has now, from its descriptor; `None`
/// when it has none (deleted). A file let go while closed (idle) is not looked for: that
/// would list its directory once per such file, and a rotation happens to a file being
/// written, which is open.
pub(super) fn current_name(file: Option<&File>, id: (u64, u64)) -> Option<PathBuf> {
    use std::os::fd::AsRawFd as _;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", file?.as_raw_fd())).ok()?;
    std::fs::symlink_metadata(&link)
        .is_ok_and(|m| dev_ino(&m) == id)
        .then_some(link)
}

impl Reader {
    /// After the saved positions were looked for: reads every generation rotated away
    /// unseen while the source was not running (module doc). `saved` are the source's
    /// positions at start.
    pub(super) fn read_missed_rotations(&mut self, saved: &[SavedFile], search: &mut Search) {
        let Some(since) = self.unwatched_since else {
            return;
        };
        let mut names: HashMap<PathBuf, HashSet<OsString>> = HashMap::new();
        for path in saved.iter().filter_map(|s| s.path.as_deref()) {
            if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
                names
                    .entry(dir.to_owned())
                    .or_default()
                    .insert(name.to_owned());
            }
        }
        let mut missed: Vec<(SystemTime, Candidate, PathBuf)> = Vec::new();
        for (dir, names) in names {
            for candidate in search.in_dir(&dir).to_vec() {
                let Some(modified) = candidate.modified.filter(|m| *m >= since) else {
                    continue; // last written before the positions were saved
                };
                let Some(base) = candidate
                    .path
                    .file_name()
                    .and_then(|name| rotated_from(name, &names))
                else {
                    continue;
                };
                if candidate.created.is_some_and(|c| c < since) {
                    continue; // a file that existed then (written late by a writer that kept it open)
                }
                if self.source.matcher.matches(&candidate.path)
                    || self.files.contains_key(&candidate.dev_ino)
                    || self.adopted.contains_key(&candidate.dev_ino)
                    || saved.iter().any(|s| search.holds(&candidate, s))
                {
                    continue;
                }
                missed.push((modified, candidate, dir.join(&base)));
            }
        }
        missed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.path.cmp(&b.1.path)));
        for (_, candidate, written_as) in missed {
            self.read_missed(candidate, written_as);
        }
    }

    /// Starts reading one missed generation from its start, as the file it was written as.
    fn read_missed(&mut self, candidate: Candidate, written_as: PathBuf) {
        // A compressed file whose modification time is older than its creation got it from
        // the file it was made from (logrotate keeps it): that is when its lines were
        // written. Otherwise (the kubelet) its times say when it was compressed: it may be
        // a generation read before the stop, which only a kept finished position tells
        // (module doc); without those, reading it again could repeat it whole.
        let content_time_kept = candidate
            .modified
            .zip(candidate.created)
            .is_some_and(|(modified, created)| modified < created);
        let told_apart = content_time_kept || self.ctx.checkpoints.finished_files_kept();
        let not_kept = || {
            tracing::info!(
                file = %candidate.path.display(),
                "not reading a compressed rotation made while the source was not running: its compressor did not keep the modification time and the saved positions are from an older version, so whether its lines were read before cannot be told"
            );
        };
        let at_start = match open_at_start(&candidate, self.source.fingerprint_bytes) {
            Ok(at_start) if at_start.gzip.is_some() && !told_apart => return not_kept(),
            Ok(at_start) => at_start,
            Err(error) if error.kind() == io::ErrorKind::Unsupported && !told_apart => {
                return not_kept()
            }
            Err(error) => {
                tracing::error!(file = %candidate.path.display(), %error, "a rotation made while the source was not running cannot be read");
                self.count_lost(&candidate.path, candidate.size, "unreadable_rotation");
                return;
            }
        };
        tracing::info!(
            file = %candidate.path.display(),
            was = %written_as.display(),
            compressed = at_start.gzip.is_some(),
            "reading a rotation made while the source was not running, from its start",
        );
        self.metrics.recovered.inc();
        let size_seen = match at_start.gzip {
            Some(_) => 0,
            None => candidate.size,
        };
        self.read_detached(Detached {
            id: candidate.dev_ino,
            path: written_as,
            file: at_start.file,
            gzip: at_start.gzip,
            offset: 0,
            fingerprint: at_start.fingerprint,
            tail: None,
            size_seen,
        });
    }
}

/// The name in `bases` that `name` is with a rotation suffix (`.`, `-` or `_`, then a
/// digit): one lookup per place such a suffix could start, not one comparison per base (a
/// directory of 10,000 files with as many saved positions stays linear).
fn rotated_from(name: &OsStr, bases: &HashSet<OsString>) -> Option<OsString> {
    use std::os::unix::ffi::OsStrExt as _;
    let bytes = name.as_bytes();
    bytes.windows(2).enumerate().find_map(|(i, pair)| {
        let suffix_starts = b".-_".contains(&pair[0]) && pair[1].is_ascii_digit();
        let base = OsStr::from_bytes(&bytes[..i]);
        (suffix_starts && bases.contains(base)).then(|| base.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_suffixes() {
        let bases: HashSet<OsString> = [OsString::from("app.log"), OsString::from("0.log")].into();
        let is =
            |name: &str| rotated_from(OsStr::new(name), &bases).is_some_and(|b| b == "app.log");
        for name in [
            "app.log.1",
            "app.log.12.gz",
            "app.log-20261128",
            "app.log-20261128-1764365000.gz",
            "app.log.20261126-101010",
            "app.log_3",
        ] {
            assert!(is(name), "{name}");
        }
        for name in [
            "app.log",
            "app.log.",
            "app.log.audit",
            "app.log.old1",
            "app.logx.1",
            "other.log.1",
            "app.1.log",
        ] {
            assert!(!is(name), "{name}");
        }
    }
}
