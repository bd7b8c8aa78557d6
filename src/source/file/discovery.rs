//! Finding the files to read: `include` / `exclude` globs, a directory walk for the
//! periodic scan (the safety net), and a `notify` (inotify) watcher on the directories the
//! globs start from, so new and changed files are seen at once.
//!
//! Owns: matching and walking, and the change set between watcher and reader. Never: opens
//! files for reading, keeps per-file state, holds more than [`MAX_PENDING_PATHS`] paths.

use std::collections::HashSet;
use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use crossbeam_channel::{Receiver, Sender};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// Compressed siblings written by `logrotate compress` are never read as text.
const COMPRESSED: &[&str] = &[".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4"];

/// Which paths are read.
#[derive(Debug, Clone)]
pub struct Matcher {
    include: GlobSet,
    exclude: GlobSet,
    /// Directories to walk, with how deep below them a match can be (`None`: any depth).
    roots: Vec<(PathBuf, Option<usize>)>,
}

fn glob_set(patterns: &[String]) -> anyhow::Result<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .with_context(|| format!("invalid glob {pattern:?}"))?;
        builder.add(glob);
    }
    Ok(builder.build()?)
}

fn is_glob(component: &str) -> bool {
    component.contains(['*', '?', '[', '{'])
}

/// The literal directory a pattern starts from and the depth of the rest.
pub fn literal_root(pattern: &str) -> (PathBuf, Option<usize>) {
    let path = Path::new(pattern);
    let mut root = PathBuf::new();
    let mut rest: Vec<String> = Vec::new();
    for component in path.components() {
        let text = component.as_os_str().to_string_lossy().into_owned();
        if rest.is_empty() && !is_glob(&text) {
            root.push(component.as_os_str());
        } else {
            rest.push(text);
        }
    }
    if rest.is_empty() {
        // A plain path: its parent directory holds it.
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
        return (parent, Some(1));
    }
    let depth = if rest.iter().any(|c| c.contains("**")) {
        None
    } else {
        Some(rest.len())
    };
    (root, depth)
}

impl Matcher {
    /// Compiles the globs. Patterns must be absolute.
    pub fn new(include: &[String], exclude: &[String]) -> anyhow::Result<Self> {
        anyhow::ensure!(!include.is_empty(), "include must list at least one glob");
        for pattern in include {
            anyhow::ensure!(
                Path::new(pattern).is_absolute(),
                "include globs must be absolute paths, got {pattern:?}"
            );
        }
        let mut roots: Vec<(PathBuf, Option<usize>)> =
            include.iter().map(|p| literal_root(p)).collect();
        roots.sort();
        roots.dedup();
        Ok(Matcher {
            include: glob_set(include)?,
            exclude: glob_set(exclude)?,
            roots,
        })
    }

    /// True when `path` is to be read.
    pub fn matches(&self, path: &Path) -> bool {
        let text = path.to_string_lossy();
        if COMPRESSED.iter().any(|suffix| text.ends_with(suffix)) {
            return false;
        }
        self.include.is_match(path) && !self.exclude.is_match(path)
    }

    /// The directories the globs start from.
    pub fn roots(&self) -> impl Iterator<Item = &(PathBuf, Option<usize>)> {
        self.roots.iter()
    }

    /// Every matching regular file (symlinks followed for files, not for directories),
    /// with its metadata. Unreadable directories are skipped.
    pub fn scan(&self) -> Vec<(PathBuf, Metadata)> {
        self.scan_with_links().files
    }

    /// Like [`Matcher::scan`], and the directories matched symlinks point into (the
    /// kubelet's `/var/log/containers/*.log` links into `/var/log/pods/...`): a file
    /// created there (made after its link, or a rotation's successor) is found at once
    /// only if they are watched too.
    pub fn scan_with_links(&self) -> Scan {
        let mut scan = Scan::default();
        for (root, depth) in &self.roots {
            self.walk(root, depth.unwrap_or(usize::MAX), &mut scan);
        }
        scan.files.sort_by(|a, b| a.0.cmp(&b.0));
        scan.files.dedup_by(|a, b| a.0 == b.0);
        scan.link_dirs.sort();
        scan.link_dirs.dedup();
        scan
    }

    fn walk(&self, dir: &Path, depth: usize, out: &mut Scan) {
        if depth == 0 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                self.walk(&path, depth - 1, out);
                continue;
            }
            if !self.matches(&path) {
                continue;
            }
            if file_type.is_symlink() {
                if let Some(target_dir) = link_target_dir(&path) {
                    out.link_dirs.push(target_dir);
                }
            }
            if let Ok(metadata) = std::fs::metadata(&path) {
                if metadata.is_file() {
                    out.files.push((path, metadata));
                }
            }
        }
    }
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Matching regular files, with their metadata.
    pub files: Vec<(PathBuf, Metadata)>,
    /// Existing directories that matched symlinks point into.
    pub link_dirs: Vec<PathBuf>,
}

/// The directory a symlink's target is (or would be) in, if that directory exists.
fn link_target_dir(link: &Path) -> Option<PathBuf> {
    let target = std::fs::read_link(link).ok()?;
    let target = match link.parent() {
        Some(parent) if target.is_relative() => parent.join(target),
        _ => target,
    };
    let dir = target.parent()?;
    dir.is_dir().then(|| dir.to_owned())
}

/// Most directories watched for symlinks' targets (each is one inotify watch).
pub const MAX_LINK_DIRS: usize = 1024;

/// Most distinct changed paths held between two drains. Beyond it the watcher stops
/// remembering paths and asks for a rescan instead, so a write storm under a watched root
/// while the reader is blocked (a sink outage) costs a bounded set, not a queue entry per
/// write.
pub const MAX_PENDING_PATHS: usize = 4096;

/// What the watcher saw since the last [`Changes::take`]: a set, so a path written a
/// thousand times is one entry.
#[derive(Debug, Default)]
struct Pending {
    paths: HashSet<PathBuf>,
    rescan: bool,
}

/// The reader's end of the watcher: coalesced changes and a wake-up.
pub struct Changes {
    pending: Arc<Mutex<Pending>>,
    wake: Receiver<()>,
}

impl Changes {
    /// Takes what changed: whether a rescan is needed, and the touched paths (matched by
    /// the globs).
    pub fn take(&self) -> (bool, Vec<PathBuf>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let rescan = std::mem::take(&mut pending.rescan);
        let paths = std::mem::take(&mut pending.paths);
        (rescan, paths.into_iter().collect())
    }

    /// Waits until something changed or `timeout` passed.
    pub fn wait(&self, timeout: Duration) {
        let _ = self.wake.recv_timeout(timeout);
    }
}

/// The watcher's end: filters by the globs, coalesces, wakes the reader.
struct Feed {
    pending: Arc<Mutex<Pending>>,
    wake: Sender<()>,
    matcher: Matcher,
    /// The watched directories of matched symlinks' targets: a file created there may be
    /// what a matched link points at, so it asks for a walk.
    link_dirs: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Feed {
    /// A file was created (`created`) or written at `path`.
    fn touched(&self, path: PathBuf, created: bool) {
        if !self.matcher.matches(&path) {
            // A file created where a matched symlink points may be what it points at: a
            // walk finds out. Writes there need nothing: the open file is polled.
            let in_link_dir = created
                && path.parent().is_some_and(|dir| {
                    self.link_dirs
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .contains(dir)
                });
            if in_link_dir {
                self.rescan();
            }
            return;
        }
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.paths.len() < MAX_PENDING_PATHS {
                pending.paths.insert(path);
            } else {
                pending.rescan = true;
            }
        }
        let _ = self.wake.try_send(());
    }

    fn rescan(&self) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .rescan = true;
        let _ = self.wake.try_send(());
    }
}

/// A `notify` watcher feeding coalesced changes to [`Changes`].
pub struct Watcher {
    inner: Option<notify::RecommendedWatcher>,
    watched: Vec<PathBuf>,
    /// Shared with the feed: directories watched for matched symlinks' targets.
    link_dirs: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Watcher {
    /// Starts a watcher for paths `matcher` reads; if the platform refuses, the periodic
    /// scan alone finds files.
    pub fn new(matcher: &Matcher) -> (Self, Changes) {
        let pending = Arc::new(Mutex::new(Pending::default()));
        // One slot: a wake-up pending is all the reader needs to know.
        let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
        let link_dirs = Arc::new(Mutex::new(HashSet::new()));
        let feed = Feed {
            pending: pending.clone(),
            wake: wake_tx,
            matcher: matcher.clone(),
            link_dirs: link_dirs.clone(),
        };
        let inner = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            forward(event, &feed);
        });
        let inner = match inner {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::warn!(%error, "file change notifications unavailable; relying on the periodic scan");
                None
            }
        };
        let watcher = Watcher {
            inner,
            watched: Vec::new(),
            link_dirs,
        };
        let changes = Changes {
            pending,
            wake: wake_rx,
        };
        (watcher, changes)
    }

    /// Whether notifications cover every root directory of `matcher`.
    pub fn covers(&self, matcher: &Matcher) -> bool {
        self.inner.is_some() && matcher.roots().all(|(root, _)| self.watched.contains(root))
    }

    /// Watches the matcher's root directories that exist and are not watched yet.
    pub fn watch_roots(&mut self, matcher: &Matcher) {
        use notify::Watcher as _;
        let Some(inner) = self.inner.as_mut() else {
            return;
        };
        for (root, depth) in matcher.roots() {
            if self.watched.contains(root) || !root.is_dir() {
                continue;
            }
            let mode = if *depth == Some(1) {
                notify::RecursiveMode::NonRecursive
            } else {
                notify::RecursiveMode::Recursive
            };
            match inner.watch(root, mode) {
                Ok(()) => self.watched.push(root.clone()),
                Err(error) => {
                    tracing::debug!(dir = %root.display(), %error, "cannot watch directory; the periodic scan covers it");
                }
            }
        }
    }
}

impl Watcher {
    /// Watches `dirs` (the last walk's [`Scan::link_dirs`], at most [`MAX_LINK_DIRS`]) and
    /// stops watching those no longer in it; a root stays watched as a root. The shared
    /// set is never locked across a call into `notify`: its event thread takes the same
    /// lock to deliver an event while `watch` waits for that thread.
    pub fn watch_link_dirs(&mut self, dirs: &[PathBuf]) {
        use notify::Watcher as _;
        let Some(inner) = self.inner.as_mut() else {
            return;
        };
        let wanted: HashSet<PathBuf> = dirs
            .iter()
            .filter(|dir| !self.watched.contains(dir))
            .take(MAX_LINK_DIRS)
            .cloned()
            .collect();
        let watched = self
            .link_dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if watched == wanted {
            return;
        }
        for dir in watched.difference(&wanted) {
            let _ = inner.unwatch(dir);
        }
        let mut now_watched: HashSet<PathBuf> = watched.intersection(&wanted).cloned().collect();
        for dir in wanted.difference(&watched) {
            if inner
                .watch(dir, notify::RecursiveMode::NonRecursive)
                .is_ok()
            {
                now_watched.insert(dir.clone());
            }
        }
        *self.link_dirs.lock().unwrap_or_else(|p| p.into_inner()) = now_watched;
    }
}

fn forward(event: notify::Result<notify::Event>, feed: &Feed) {
    use notify::event::{CreateKind, EventKind, ModifyKind};
    let Ok(event) = event else {
        feed.rescan();
        return;
    };
    match event.kind {
        EventKind::Access(_) => {}
        // Files may be created in a new directory before its watch is added: walk it.
        EventKind::Create(CreateKind::Folder) => feed.rescan(),
        EventKind::Create(_) | EventKind::Modify(ModifyKind::Data(_)) => {
            let created = matches!(event.kind, EventKind::Create(_));
            for path in event.paths {
                feed.touched(path, created);
            }
        }
        EventKind::Modify(ModifyKind::Metadata(_)) => {}
        _ => feed.rescan(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &str, expected: (&str, Option<usize>)) {
        let (root, depth) = literal_root(pattern);
        assert_eq!((root.to_str().unwrap(), depth), expected, "{pattern}");
    }

    #[test]
    fn roots_of_patterns() {
        check("/var/log/**/*.log", ("/var/log", None));
        check("/var/log/*.log", ("/var/log", Some(1)));
        check("/var/log/pods/*/*/*.log", ("/var/log/pods", Some(3)));
        check("/var/log/syslog", ("/var/log", Some(1)));
        check("/data/app-{a,b}/x.log", ("/data", Some(2)));
    }

    #[test]
    fn matching() {
        let matcher = Matcher::new(
            &["/var/log/**/*.log".into(), "/srv/app.log*".into()],
            &["/var/log/skip/**".into()],
        )
        .unwrap();
        for (path, expected) in [
            ("/var/log/a.log", true),
            ("/var/log/x/y/z.log", true),
            ("/var/log/skip/z.log", false),
            ("/var/log/a.txt", false),
            ("/srv/app.log.1", true),
            ("/srv/app.log.2.gz", false),
            ("/srv/sub/app.log", false),
        ] {
            assert_eq!(matcher.matches(Path::new(path)), expected, "{path}");
        }
        assert!(Matcher::new(&["relative/*.log".into()], &[]).is_err());
        assert!(Matcher::new(&[], &[]).is_err());
        assert!(Matcher::new(&["/x/[".into()], &[]).is_err());
    }

    #[test]
    fn scan_walks_and_follows_file_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/one.log"), "1\n").unwrap();
        std::fs::write(root.join("two.log"), "2\n").unwrap();
        std::fs::write(root.join("two.log.1.gz"), "x").unwrap();
        std::os::unix::fs::symlink(root.join("two.log"), root.join("link.log")).unwrap();
        std::os::unix::fs::symlink(root.join("missing"), root.join("dangling.log")).unwrap();
        let pattern = format!("{}/**/*.log", root.display());
        let matcher = Matcher::new(&[pattern], &[]).unwrap();
        let found: Vec<String> = matcher
            .scan()
            .into_iter()
            .map(|(p, _)| p.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(found, ["a/b/one.log", "link.log", "two.log"]);
    }

    /// Issue 16: writes are coalesced per path, unmatched paths are not kept, and past
    /// [`MAX_PENDING_PATHS`] the set stops growing and asks for a rescan.
    #[test]
    fn changes_coalesce_filter_and_overflow_into_a_rescan() {
        let matcher = Matcher::new(&["/logs/*.log".into()], &[]).unwrap();
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (wake, wake_rx) = crossbeam_channel::bounded(1);
        let feed = Feed {
            pending: pending.clone(),
            wake,
            matcher,
            link_dirs: Arc::default(),
        };
        let changes = Changes {
            pending,
            wake: wake_rx,
        };
        for _ in 0..1000 {
            feed.touched("/logs/a.log".into(), false);
            feed.touched("/logs/a.txt".into(), true);
        }
        assert_eq!(changes.take(), (false, vec![PathBuf::from("/logs/a.log")]));
        for i in 0..MAX_PENDING_PATHS + 10 {
            feed.touched(format!("/logs/{i}.log").into(), false);
        }
        let (rescan, paths) = changes.take();
        assert!(rescan);
        assert_eq!(paths.len(), MAX_PENDING_PATHS);
        assert_eq!(changes.take(), (false, Vec::new()));
    }
}
