//! Finding the files to read: `include` / `exclude` globs, a directory walk for the
//! periodic scan (the safety net), and a `notify` (inotify) watcher on the directories the
//! globs start from, so new and changed files are seen at once.
//!
//! Owns: matching and walking. Never: opens files for reading, keeps per-file state.

use std::fs::Metadata;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use crossbeam_channel::{Receiver, Sender};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// Compressed siblings written by `logrotate compress` are never read as text.
const COMPRESSED: &[&str] = &[".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4"];

/// Which paths are read.
#[derive(Debug)]
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
        let mut out = Vec::new();
        for (root, depth) in &self.roots {
            self.walk(root, depth.unwrap_or(usize::MAX), &mut out);
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    fn walk(&self, dir: &Path, depth: usize, out: &mut Vec<(PathBuf, Metadata)>) {
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
            if let Ok(metadata) = std::fs::metadata(&path) {
                if metadata.is_file() {
                    out.push((path, metadata));
                }
            }
        }
    }
}

/// What the watcher saw.
#[derive(Debug)]
pub enum Change {
    /// A file may have appeared or grown.
    Touched(PathBuf),
    /// Something was renamed, removed, or a directory created: rescan.
    Rescan,
}

/// A `notify` watcher feeding [`Change`]s into a channel.
pub struct Watcher {
    inner: Option<notify::RecommendedWatcher>,
    watched: Vec<PathBuf>,
    tx: Sender<Change>,
}

impl Watcher {
    /// Starts a watcher; if the platform refuses, the periodic scan alone finds files.
    pub fn new() -> (Self, Receiver<Change>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let sender = tx.clone();
        let inner = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            forward(event, &sender);
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
            tx,
        };
        (watcher, rx)
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
        let _ = &self.tx;
    }
}

fn forward(event: notify::Result<notify::Event>, tx: &Sender<Change>) {
    use notify::event::{EventKind, ModifyKind};
    let Ok(event) = event else {
        let _ = tx.send(Change::Rescan);
        return;
    };
    match event.kind {
        EventKind::Access(_) => {}
        EventKind::Create(_) | EventKind::Modify(ModifyKind::Data(_)) => {
            for path in event.paths {
                let _ = tx.send(Change::Touched(path));
            }
        }
        EventKind::Modify(ModifyKind::Metadata(_)) => {}
        _ => {
            let _ = tx.send(Change::Rescan);
        }
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
}
