//! Finding a saved position's content when it is not where the globs look: a file rotated
//! to a name the include globs do not match (`app.log.1`, `app.log-20261126`, the kubelet's
//! `0.log.<timestamp>`), moved to another directory, copied away by copytruncate,
//! compressed before it was finished, or moved to another device (reboot, remount).
//!
//! Search order for one saved position: the directory of its last known path, then every
//! directory the globs walk (any file name). A candidate is, in order of preference:
//! 1. the same device + inode, whose head fingerprint and tail still match;
//! 2. a regular file at the same path, then any other, whose head fingerprint and tail
//!    match and that is long enough (a copy, a renumbered device);
//! 3. a gzip file whose *decompressed* head and tail match (a compressed rotation).
//!
//! A content match needs a saved head fingerprint of at least one byte; the tail, when the
//! checkpoint has one, must match too, so two files with the same banner are told apart.
//!
//! Owns: listing candidates and checking them. Never: keeps per-file state or decides what
//! to do with a match (that is the reader, `mod.rs`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use flate2::read::MultiGzDecoder;

use super::discovery::Matcher;
use super::identity::{
    dev_ino, open_regular, Fingerprint, SavedFile, Tail, MAX_FINGERPRINT_BYTES, TAIL_BYTES,
};
use crate::fnv1a;

/// Most directory entries looked at per search (a huge log tree must not stall the reader).
const MAX_CANDIDATES: usize = 20_000;

/// A decompressing reader over a gzip rotation.
pub type GzipInput = MultiGzDecoder<BufReader<File>>;

/// A regular file that may hold a saved position's content.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Where it is.
    pub path: PathBuf,
    /// Its device and inode.
    pub dev_ino: (u64, u64),
    /// Its size in bytes (compressed size for gzip).
    pub size: u64,
    /// Its last modification.
    pub modified: Option<SystemTime>,
    /// When it was created (`None` where the filesystem does not say).
    pub created: Option<SystemTime>,
}

/// Where a saved position's content was found, opened and positioned at the saved offset.
pub enum Found {
    /// A plain file (the same inode, a copy, or the same file on a renumbered device).
    Plain {
        /// The candidate.
        candidate: Candidate,
        /// Open, positioned at the saved offset by the caller's seek.
        file: File,
    },
    /// A gzip file; the reader stands at the saved offset of the decompressed content.
    Gzip {
        /// The candidate.
        candidate: Candidate,
        /// The decompressor, at the saved offset.
        input: Box<GzipInput>,
    },
}

impl Found {
    /// The candidate that matched.
    pub fn candidate(&self) -> &Candidate {
        match self {
            Found::Plain { candidate, .. } | Found::Gzip { candidate, .. } => candidate,
        }
    }
}

/// Head hashes already read: (device + inode, bytes hashed) → hash (`None`: unreadable or
/// too short).
pub type Heads = RefCell<HashMap<((u64, u64), u64), Option<u64>>>;

/// What one round of searches (all saved positions at start) has already looked at:
/// directory listings, the glob roots' walk, and head hashes. With it, every candidate file
/// is listed once and its head read once per fingerprint length, however many positions
/// are looked for (a node with thousands of gone pods stays linear).
#[derive(Default)]
pub struct Search {
    dirs: HashMap<PathBuf, Vec<Candidate>>,
    under_roots: Option<Vec<Candidate>>,
    heads: Heads,
}

impl Search {
    /// Looks for `saved`'s content: its directory first, then the glob roots.
    pub fn find(
        &mut self,
        saved: &SavedFile,
        matcher: &Matcher,
        usable: impl Fn(&Candidate) -> bool,
    ) -> Option<Found> {
        if let Some(dir) = saved.path.as_deref().and_then(Path::parent) {
            let in_dir = self
                .dirs
                .entry(dir.to_owned())
                .or_insert_with(|| files_in(dir));
            if let Some(found) = locate(saved, in_dir, &usable, &self.heads) {
                return Some(found);
            }
        }
        let all = self.under_roots.get_or_insert_with(|| files_under(matcher));
        locate(saved, all, &usable, &self.heads)
    }

    /// The regular files directly in `dir`, listed once per search.
    pub fn in_dir(&mut self, dir: &Path) -> &[Candidate] {
        self.dirs
            .entry(dir.to_owned())
            .or_insert_with(|| files_in(dir))
    }

    /// Whether `candidate` is `saved`'s file or holds its content (a copy, a compressed
    /// rotation): the same head and tail (an inode freed by a rotation and reused by a new
    /// generation is not the same file).
    pub fn holds(&self, candidate: &Candidate, saved: &SavedFile) -> bool {
        if Some(candidate.dev_ino) == saved.dev_ino {
            return verify(candidate, saved, true).is_some();
        }
        let Some(fingerprint) = saved.fingerprint.filter(|f| f.len > 0) else {
            return false;
        };
        head_hash(candidate, fingerprint.len, &self.heads) == Some(fingerprint.hash)
            && verify(candidate, saved, false).is_some()
    }
}

/// How a file's content is compressed, from its first bytes: `None` for plain text.
pub fn compression(file: &File) -> Option<&'static str> {
    let mut magic = [0u8; 6];
    let n = file.read_at(&mut magic, 0).unwrap_or(0);
    let magic = &magic[..n];
    [
        (&[0x1f, 0x8b][..], "gzip"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz"),
        (b"BZh", "bzip2"),
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
        (&[0x04, 0x22, 0x4d, 0x18], "lz4"),
        (&[0x1f, 0x9d], "compress"),
    ]
    .into_iter()
    .find(|(prefix, _)| magic.starts_with(prefix))
    .map(|(_, name)| name)
}

/// A file opened at its start, plain or through gzip, with the fingerprint of its first
/// `fingerprint_bytes` (decompressed) bytes.
pub struct AtStart {
    /// A plain file, at offset 0 (`None` for gzip).
    pub file: Option<File>,
    /// A gzip file's decompressor, at its start.
    pub gzip: Option<Box<GzipInput>>,
    /// The head fingerprint (of the decompressed content for gzip).
    pub fingerprint: Fingerprint,
}

/// Opens `candidate` to be read from its start. An error names why it cannot be read
/// (gone, unreadable, compressed with something other than gzip).
pub fn open_at_start(candidate: &Candidate, fingerprint_bytes: u64) -> io::Result<AtStart> {
    let file = open_regular(&candidate.path)?;
    if dev_ino(&file.metadata()?) != candidate.dev_ino {
        return Err(io::Error::new(io::ErrorKind::NotFound, "replaced"));
    }
    match compression(&file) {
        None => Ok(AtStart {
            fingerprint: Fingerprint::compute(&file, fingerprint_bytes)?,
            file: Some(file),
            gzip: None,
        }),
        Some("gzip") => {
            let mut head = Vec::new();
            MultiGzDecoder::new(BufReader::new(file.try_clone()?))
                .take(fingerprint_bytes.min(MAX_FINGERPRINT_BYTES))
                .read_to_end(&mut head)?;
            let fingerprint = Fingerprint {
                hash: fnv1a(&head),
                len: head.len() as u64,
            };
            let mut file = file;
            file.seek(SeekFrom::Start(0))?;
            Ok(AtStart {
                file: None,
                gzip: Some(Box::new(MultiGzDecoder::new(BufReader::new(file)))),
                fingerprint,
            })
        }
        Some(other) => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("compressed with {other} (only gzip is read)"),
        )),
    }
}

/// The head hash of a candidate (decompressed for gzip), read once per length.
fn head_hash(candidate: &Candidate, len: u64, heads: &Heads) -> Option<u64> {
    if let Some(hash) = heads.borrow().get(&(candidate.dev_ino, len)) {
        return *hash;
    }
    let hash = read_head_hash(&candidate.path, len);
    heads.borrow_mut().insert((candidate.dev_ino, len), hash);
    hash
}

fn read_head_hash(path: &Path, len: u64) -> Option<u64> {
    let file = open_regular(path).ok()?;
    let mut head = Vec::with_capacity(len.min(MAX_FINGERPRINT_BYTES) as usize);
    if is_gzip(&file) {
        MultiGzDecoder::new(BufReader::new(file))
            .take(len)
            .read_to_end(&mut head)
            .ok()?;
    } else {
        file.take(len).read_to_end(&mut head).ok()?;
    }
    (head.len() as u64 == len).then(|| fnv1a(&head))
}

/// Regular files directly in `dir` (symlinks followed), at most `MAX_CANDIDATES` (20,000).
pub fn files_in(dir: &Path) -> Vec<Candidate> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten().take(MAX_CANDIDATES) {
        push_regular(entry.path(), &mut out);
    }
    out
}

/// Regular files of any name under the directories the globs walk, at most
/// `MAX_CANDIDATES` (20,000).
pub fn files_under(matcher: &Matcher) -> Vec<Candidate> {
    let mut out = Vec::new();
    let mut budget = MAX_CANDIDATES;
    for (root, depth) in matcher.roots() {
        walk(root, depth.unwrap_or(usize::MAX), &mut budget, &mut out);
    }
    out
}

fn walk(dir: &Path, depth: usize, budget: &mut usize, out: &mut Vec<Candidate>) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            walk(&entry.path(), depth - 1, budget, out);
        } else {
            push_regular(entry.path(), out);
        }
    }
}

fn push_regular(path: PathBuf, out: &mut Vec<Candidate>) {
    if let Ok(metadata) = std::fs::metadata(&path) {
        if metadata.is_file() {
            out.push(Candidate {
                dev_ino: dev_ino(&metadata),
                size: metadata.len(),
                modified: metadata.modified().ok(),
                created: metadata.created().ok(),
                path,
            });
        }
    }
}

/// Looks for `saved`'s content among `candidates` (searched in the preference order of
/// the module doc); `usable` says which candidates may be taken (not already tracked).
pub fn locate(
    saved: &SavedFile,
    candidates: &[Candidate],
    usable: impl Fn(&Candidate) -> bool,
    heads: &Heads,
) -> Option<Found> {
    if let Some(found) = candidates
        .iter()
        .filter(|c| Some(c.dev_ino) == saved.dev_ino && usable(c))
        .find_map(|c| verify(c, saved, true))
    {
        return Some(found);
    }
    let fingerprint = saved.fingerprint.filter(|f| f.len > 0)?;
    // Only candidates whose head hashes the same are opened and checked further.
    let same_head = |c: &&Candidate| {
        Some(c.dev_ino) != saved.dev_ino
            && usable(c)
            && head_hash(c, fingerprint.len, heads) == Some(fingerprint.hash)
    };
    let same_path = |c: &&Candidate| Some(&c.path) == saved.path.as_ref();
    let first = candidates.iter().filter(same_path).filter(same_head);
    let rest = candidates
        .iter()
        .filter(|c| !same_path(c))
        .filter(same_head);
    first.chain(rest).find_map(|c| verify(c, saved, false))
}

/// Checks one candidate against a saved position and opens it at the saved offset.
fn verify(candidate: &Candidate, saved: &SavedFile, same_inode: bool) -> Option<Found> {
    let file = open_regular(&candidate.path).ok()?;
    if dev_ino(&file.metadata().ok()?) != candidate.dev_ino {
        return None; // replaced since it was listed
    }
    if is_gzip(&file) {
        return verify_gzip(candidate, file, saved);
    }
    if saved.gzip {
        return None;
    }
    let fingerprint_ok = match saved.fingerprint {
        Some(fingerprint) => fingerprint.matches(&file).ok()?,
        None => same_inode,
    };
    let tail_ok = match saved.tail {
        Some(tail) => tail.matches(&file).ok()?,
        None => true,
    };
    if !fingerprint_ok || !tail_ok || candidate.size < saved.offset {
        return None;
    }
    Some(Found::Plain {
        candidate: candidate.clone(),
        file,
    })
}

fn is_gzip(file: &File) -> bool {
    compression(file) == Some("gzip")
}

/// A gzip candidate: its decompressed head and tail must match; then a fresh decompressor
/// is wound forward to the saved offset.
fn verify_gzip(candidate: &Candidate, file: File, saved: &SavedFile) -> Option<Found> {
    let fingerprint = saved.fingerprint.filter(|f| f.len > 0)?;
    let mut input = MultiGzDecoder::new(BufReader::new(file.try_clone().ok()?));
    if !stream_matches(&mut input, fingerprint, saved.tail).ok()? {
        return None;
    }
    // The clone shared the file offset: start the real reader from the beginning.
    let mut file = file;
    file.seek(SeekFrom::Start(0)).ok()?;
    let mut input = Box::new(MultiGzDecoder::new(BufReader::new(file)));
    let skipped = io::copy(&mut (&mut *input).take(saved.offset), &mut io::sink()).ok()?;
    if skipped < saved.offset {
        return None;
    }
    Some(Found::Gzip {
        candidate: candidate.clone(),
        input,
    })
}

/// Whether a byte stream read from its start has the head `fingerprint` and the `tail`,
/// in one pass (the head is kept for a tail that overlaps it).
fn stream_matches(
    stream: &mut impl Read,
    fingerprint: Fingerprint,
    tail: Option<Tail>,
) -> io::Result<bool> {
    let mut head = Vec::with_capacity(fingerprint.len as usize);
    stream.take(fingerprint.len).read_to_end(&mut head)?;
    if head.len() as u64 != fingerprint.len || fnv1a(&head) != fingerprint.hash {
        return Ok(false);
    }
    let Some(tail) = tail else {
        return Ok(true);
    };
    let from = tail.at.saturating_sub(TAIL_BYTES);
    let mut window = Vec::with_capacity((tail.at - from) as usize);
    let mut pos = fingerprint.len;
    if from < pos {
        window.extend_from_slice(&head[from as usize..pos.min(tail.at) as usize]);
    } else {
        let skipped = io::copy(&mut stream.take(from - pos), &mut io::sink())?;
        pos += skipped;
    }
    if tail.at > pos {
        stream.take(tail.at - pos).read_to_end(&mut window)?;
    }
    Ok(window.len() as u64 == tail.at - from && fnv1a(&window) == tail.hash)
}

/// What an open tailer knows about its content, as a [`SavedFile`] to search for after
/// its file was truncated (copytruncate): the copy holds the rest.
pub fn as_saved(
    key: String,
    path: &Path,
    offset: u64,
    fingerprint: Fingerprint,
    tail: Option<Tail>,
) -> SavedFile {
    SavedFile {
        key,
        dev_ino: None,
        offset,
        path: Some(path.to_owned()),
        fingerprint: Some(fingerprint),
        tail,
        size: None,
        gzip: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn saved_for(path: &Path, offset: u64, tail_at: Option<u64>) -> SavedFile {
        let file = File::open(path).unwrap();
        let fingerprint = Fingerprint::compute(&file, 1024).unwrap();
        let tail = tail_at.map(|at| Tail::compute(&file, at).unwrap().unwrap());
        SavedFile {
            key: "k".into(),
            dev_ino: Some(dev_ino(&file.metadata().unwrap())),
            offset,
            path: Some(path.to_owned()),
            fingerprint: Some(fingerprint),
            tail,
            size: None,
            gzip: false,
        }
    }

    /// `locate` over the files in `dir`, with `usable` for every candidate.
    fn find(saved: &SavedFile, dir: &Path, usable: bool) -> Option<Found> {
        locate(saved, &files_in(dir), |_| usable, &Default::default())
    }

    fn lines(prefix: &str, n: usize) -> String {
        (0..n).map(|i| format!("{prefix} line {i}\n")).collect()
    }

    #[test]
    fn finds_renamed_copied_and_compressed_content() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("app.log");
        std::fs::write(&live, lines("a", 100)).unwrap();
        let saved = saved_for(&live, 500, Some(700));

        // Renamed: the same inode under another name.
        let rotated = dir.path().join("app.log.1");
        std::fs::rename(&live, &rotated).unwrap();
        let found = find(&saved, dir.path(), true).unwrap();
        assert!(matches!(found, Found::Plain { .. }));
        assert_eq!(found.candidate().path, rotated);

        // Copied (a new inode, e.g. another device), the original gone.
        let copy = dir.path().join("elsewhere");
        std::fs::copy(&rotated, &copy).unwrap();
        std::fs::remove_file(&rotated).unwrap();
        let found = find(&saved, dir.path(), true).unwrap();
        assert_eq!(found.candidate().path, copy);

        // Compressed: read through gzip, standing at the saved offset.
        let gz = dir.path().join("app.log.1.gz");
        let mut encoder =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), Default::default());
        encoder.write_all(&std::fs::read(&copy).unwrap()).unwrap();
        encoder.finish().unwrap();
        std::fs::remove_file(&copy).unwrap();
        let Some(Found::Gzip { mut input, .. }) = find(&saved, dir.path(), true) else {
            panic!("gzip rotation not found");
        };
        let mut rest = String::new();
        input.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, lines("a", 100)[500..]);
    }

    #[test]
    fn opens_plain_and_gzip_at_their_start_and_refuses_other_compression() {
        let dir = tempfile::tempdir().unwrap();
        let text = lines("g", 50);
        let candidate = |name: &str| {
            files_in(dir.path())
                .into_iter()
                .find(|c| c.path.file_name().unwrap() == name)
                .unwrap()
        };
        std::fs::write(dir.path().join("plain"), &text).unwrap();
        let mut encoder = flate2::write::GzEncoder::new(
            File::create(dir.path().join("gz")).unwrap(),
            Default::default(),
        );
        encoder.write_all(text.as_bytes()).unwrap();
        encoder.finish().unwrap();
        std::fs::write(dir.path().join("xz"), b"\xfd7zXZ\0rest").unwrap();

        let plain = open_at_start(&candidate("plain"), 64).unwrap();
        let gzip = open_at_start(&candidate("gz"), 64).unwrap();
        assert_eq!(
            plain.fingerprint, gzip.fingerprint,
            "gzip is fingerprinted decompressed"
        );
        assert_eq!(plain.fingerprint.len, 64);
        let mut read = String::new();
        gzip.gzip.unwrap().read_to_string(&mut read).unwrap();
        assert_eq!(read, text);
        let error = open_at_start(&candidate("xz"), 64).err().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::Unsupported);
    }

    #[test]
    fn same_banner_is_told_apart_by_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let banner = "#".repeat(2048) + "\n";
        let old = dir.path().join("old");
        std::fs::write(&old, format!("{banner}{}", lines("old", 50))).unwrap();
        let saved = saved_for(&old, 2100, Some(2200));
        std::fs::remove_file(&old).unwrap();
        let new = dir.path().join("new");
        std::fs::write(&new, format!("{banner}{}", lines("new", 500))).unwrap();
        assert!(find(&saved, dir.path(), true).is_none());
        // Without a tail the banner alone would match: the tail is what tells them apart.
        let mut headless = saved.clone();
        headless.tail = None;
        assert!(find(&headless, dir.path(), true).is_some());
    }

    #[test]
    fn too_short_or_unusable_candidates_are_not_taken() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("app.log");
        std::fs::write(&live, lines("a", 10)).unwrap();
        let mut saved = saved_for(&live, 50, None);
        saved.offset = 10_000;
        assert!(find(&saved, dir.path(), true).is_none());
        saved.offset = 50;
        assert!(find(&saved, dir.path(), false).is_none());
        assert!(find(&saved, dir.path(), true).is_some());
    }
}
