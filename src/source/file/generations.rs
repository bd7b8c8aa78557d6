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
//! Such generations are read from their start, plain or through gzip, oldest first. A gzip
//! one only if its compressor kept the content's modification time (it is then older than
//! the file's creation; logrotate does): the kubelet compresses a generation read before
//! the stop into a file whose times are all new, and reading that again would repeat a
//! whole generation; it is logged at INFO and left. One compressed with anything else (xz,
//! bzip2, zstd) cannot be read: if its compressor kept the modification time, its size is
//! counted in `sluice_file_lost_bytes_total{reason="unreadable_rotation"}` and logged at
//! ERROR.
//!
//! Owns: finding those generations and starting their reads. Never: reads lines, or looks
//! at files the globs match.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use super::identity::SavedFile;
use super::recovery::{open_at_start, Candidate, Search};
use super::rotation::Detached;
use super::Reader;

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
        // a generation read before the stop, and reading it again would repeat it whole.
        let content_time_kept = candidate
            .modified
            .zip(candidate.created)
            .is_some_and(|(modified, created)| modified < created);
        let not_kept = || {
            tracing::info!(
                file = %candidate.path.display(),
                "not reading a compressed rotation made while the source was not running: its compressor did not keep the modification time, so whether its lines were read before cannot be told"
            );
        };
        let at_start = match open_at_start(&candidate, self.source.fingerprint_bytes) {
            Ok(at_start) if at_start.gzip.is_some() && !content_time_kept => return not_kept(),
            Ok(at_start) => at_start,
            Err(error) if error.kind() == io::ErrorKind::Unsupported && !content_time_kept => {
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
