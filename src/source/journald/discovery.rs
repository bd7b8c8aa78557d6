//! Where the journal files are: the directories a source reads, the `*.journal` files in
//! them, and the inotify watches that wake the reader when journald writes, creates,
//! renames (rotation) or deletes (vacuum) a file. The periodic scan in `reader.rs` is the
//! safety net behind the watches.
//!
//! Owns: listing and watching directories. Never: opens a journal file.

use std::path::{Path, PathBuf};

use crossbeam_channel::Receiver;

use super::SYSTEM_JOURNAL_DIRS;

/// What inotify saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A file was written: read on.
    Written,
    /// Files were created, renamed or deleted: scan again.
    Rescan,
}

/// Directory watches that wake the loop; without inotify the poll alone finds changes.
pub struct Watcher {
    inner: Option<notify::RecommendedWatcher>,
    watched: Vec<PathBuf>,
}

impl Watcher {
    pub fn new() -> (Self, Receiver<Change>) {
        use notify::event::{EventKind, ModifyKind};
        let (tx, rx) = crossbeam_channel::bounded(1024);
        let inner = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let change = match event.map(|event| event.kind) {
                Ok(EventKind::Access(_)) | Ok(EventKind::Modify(ModifyKind::Metadata(_))) => return,
                Ok(EventKind::Modify(ModifyKind::Data(_))) => Change::Written,
                _ => Change::Rescan,
            };
            // A full channel already holds a wake-up.
            let _ = tx.try_send(change);
        });
        let inner = inner
            .map_err(|error| {
                tracing::warn!(%error, "journal change notifications unavailable; polling");
            })
            .ok();
        let watcher = Watcher {
            inner,
            watched: Vec::new(),
        };
        (watcher, rx)
    }

    /// Watches `dir` (and below) if it exists and is not watched yet.
    pub fn watch_dir(&mut self, dir: &Path) {
        use notify::Watcher as _;
        let Some(inner) = self.inner.as_mut() else {
            return;
        };
        if self.watched.iter().any(|w| w == dir) || !dir.is_dir() {
            return;
        }
        match inner.watch(dir, notify::RecursiveMode::Recursive) {
            Ok(()) => self.watched.push(dir.to_owned()),
            Err(error) => {
                tracing::debug!(dir = %dir.display(), %error, "cannot watch journal directory; polling it");
            }
        }
    }
}

/// Which files the source reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    /// The system journal under [`SYSTEM_JOURNAL_DIRS`].
    System {
        /// Every machine id's directory, not only this machine's.
        all_machines: bool,
    },
    /// One directory (and its subdirectories, one level).
    Directory(PathBuf),
    /// These files.
    Files(Vec<PathBuf>),
}

/// The directories the source reads (watched with inotify).
pub fn roots(location: &Location, machine_id: Option<&str>) -> Vec<PathBuf> {
    match location {
        Location::Files(files) => {
            let mut dirs: Vec<PathBuf> = files
                .iter()
                .filter_map(|file| file.parent().map(Path::to_path_buf))
                .collect();
            dirs.dedup();
            dirs
        }
        Location::Directory(directory) => vec![directory.clone()],
        Location::System { all_machines } => SYSTEM_JOURNAL_DIRS
            .iter()
            .map(PathBuf::from)
            .flat_map(|root| match (machine_id, all_machines) {
                (Some(machine), false) => vec![root.join(machine)],
                _ => vec![root],
            })
            .collect(),
    }
}

/// Paths of the journal files to read.
pub fn candidates(location: &Location, machine_id: Option<&str>) -> Vec<PathBuf> {
    match location {
        Location::Files(files) => files.clone(),
        Location::Directory(_) | Location::System { .. } => {
            let mut out = Vec::new();
            for root in roots(location, machine_id) {
                journal_files(&root, true, &mut out);
            }
            out
        }
    }
}

/// `*.journal` and `*.journal~` files in `dir` and, with `subdirs`, in its subdirectories
/// named by a machine id: the files `journalctl -D` reads (a `remote/` or backup directory
/// beside them is not the journal, nor is a namespace's `<machine-id>.<namespace>`).
pub fn journal_files(dir: &Path, subdirs: bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        if name.ends_with(".journal") || name.ends_with(".journal~") {
            if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                out.push(path);
            }
        } else if subdirs && is_machine_id(name) && path.is_dir() {
            journal_files(&path, false, out);
        }
    }
    out.sort();
}

/// A machine id as a directory name: 32 hex digits, or the 36-character form with dashes
/// (what journald's `id128_is_valid` accepts).
fn is_machine_id(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.len() {
        32 => bytes.iter().all(u8::is_ascii_hexdigit),
        36 => bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        }),
        _ => false,
    }
}

/// A UUID-formatted id128 (`/proc/sys/kernel/random/boot_id`).
pub fn read_id(path: &str) -> Option<[u8; 16]> {
    let text = std::fs::read_to_string(path).ok()?;
    let hex: String = text.trim().chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdirectories_are_read_only_when_named_by_a_machine_id() {
        let dir = tempfile::tempdir().unwrap();
        let machine = "0123456789abcdef0123456789ABCDEF";
        for sub in [machine, "remote", "0123456789abcdef0123456789abcdef.ns"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
            std::fs::write(dir.path().join(sub).join("system.journal"), b"").unwrap();
        }
        std::fs::create_dir_all(dir.path().join(machine).join("deeper")).unwrap();
        std::fs::write(dir.path().join(machine).join("deeper/x.journal"), b"").unwrap();
        std::fs::write(dir.path().join("top.journal~"), b"").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"").unwrap();
        let mut found = Vec::new();
        journal_files(dir.path(), true, &mut found);
        let found: Vec<_> = found
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            found,
            [format!("{machine}/system.journal"), "top.journal~".into()]
        );
        assert!(is_machine_id("01234567-89ab-cdef-0123-456789abcdef"));
        assert!(!is_machine_id("01234567-89ab-cdef-0123-456789abcdefa"));
    }

    #[test]
    fn boot_id_parses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("boot_id");
        std::fs::write(&path, "0123456789ab-cdef-0123-456789abcde\n").unwrap();
        assert_eq!(read_id(path.to_str().unwrap()), None);
        std::fs::write(&path, "01234567-89ab-cdef-0123-456789abcdef\n").unwrap();
        assert_eq!(read_id(path.to_str().unwrap()).unwrap()[15], 0xef);
    }

    #[test]
    fn finds_journal_files_one_level_down() {
        let dir = tempfile::tempdir().unwrap();
        let machine = dir.path().join("0123456789abcdef0123456789abcdef");
        std::fs::create_dir_all(machine.join("deeper")).unwrap();
        for name in ["system.journal", "user-1000.journal~", "notes.txt"] {
            std::fs::write(machine.join(name), b"").unwrap();
        }
        std::fs::write(machine.join("deeper/too-deep.journal"), b"").unwrap();
        std::fs::write(dir.path().join("top.journal"), b"").unwrap();
        let found = candidates(&Location::Directory(dir.path().to_owned()), None);
        let names: Vec<_> = found
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "0123456789abcdef0123456789abcdef/system.journal",
                "0123456789abcdef0123456789abcdef/user-1000.journal~",
                "top.journal"
            ]
        );
        let system = roots(
            &Location::System {
                all_machines: false,
            },
            Some("abc"),
        );
        assert_eq!(
            system,
            [
                PathBuf::from("/var/log/journal/abc"),
                PathBuf::from("/run/log/journal/abc")
            ]
        );
    }
}
