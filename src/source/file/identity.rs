//! File identity: telling one file from another across renames, rotations, inode reuse,
//! truncation and restarts.
//!
//! Rules:
//! 1. A file is identified by its device and inode (`<dev>-<ino>` in hex): the checkpoint
//!    key and the `origin` stream of its events. A rename (rotation, or a move while the
//!    agent was down) keeps the identity, so reading resumes where it was.
//! 2. Beside the position, the checkpoint keeps a fingerprint: a 64-bit FNV-1a hash of the
//!    first `fingerprint_bytes` bytes (fewer while the file is shorter; the length hashed is
//!    saved too). A file found under a known `<dev>-<ino>` is the same file only if its first
//!    `len` bytes still hash the same. Otherwise the inode was reused by a new file (or the
//!    file was truncated and rewritten): it is read from offset 0 under a fresh stream.
//! 3. Two files with identical first bytes (copies, same header) have different inodes, so
//!    they are different files.
//! 4. A small file (shorter than `fingerprint_bytes`) is read at once; its fingerprint is
//!    extended as it grows, after checking the bytes already hashed are unchanged.
//! 5. A file whose size drops below the read offset was truncated (copytruncate): it is
//!    read again from 0.
//! 6. Beside the head fingerprint, the checkpoint keeps a *tail*: a hash of the (up to)
//!    [`TAIL_BYTES`] bytes just before an offset the reader had reached (`tail_at`). A file
//!    that reuses an inode and starts with the same bytes as the old one (a constant banner
//!    longer than `fingerprint_bytes`) still differs there, so it is read from its start
//!    instead of from the old offset.
//! 7. When device + inode miss (a rotated name, a copy, a compressed rotation, a device
//!    renumbered by a reboot or a move to another filesystem), a saved position is matched
//!    by content: head fingerprint and tail both equal ([`crate::source::file::recovery`]).
//!
//! Files are opened non-blocking and checked to be regular files after opening
//! ([`open_regular`]), so a FIFO, socket or device swapped in at a matched path can never
//! block the reader.
//!
//! Owns: computing and checking fingerprints and tails, reading saved identities back
//! (validated and clamped). Never: decides where reading starts.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::checkpoint::Position;

/// Bytes hashed into a tail.
pub const TAIL_BYTES: u64 = 256;

/// Longest fingerprint a saved position may claim (a corrupt checkpoint cannot make the
/// reader allocate more).
pub const MAX_FINGERPRINT_BYTES: u64 = 1 << 20;

/// Opens `path` for reading without ever blocking (`O_NONBLOCK`, so a FIFO with no writer
/// or a device cannot stall the reader) and only if it is a regular file once open.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (FIFO, socket or device)",
        ));
    }
    Ok(file)
}

use crate::fnv1a;

/// The identity string of a file: `<dev>-<ino>` in hex.
pub fn key_of(dev: u64, ino: u64) -> String {
    format!("{dev:x}-{ino:x}")
}

/// Device and inode of an open file or of `metadata`.
pub fn dev_ino(metadata: &std::fs::Metadata) -> (u64, u64) {
    (metadata.dev(), metadata.ino())
}

/// A hash of a file's first `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// FNV-1a of the first `len` bytes.
    pub hash: u64,
    /// How many bytes were hashed (less than the configured size while the file is short).
    pub len: u64,
}

impl Fingerprint {
    /// Hashes the first `min(size, max_len)` bytes of `file`.
    pub fn compute(file: &File, max_len: u64) -> io::Result<Fingerprint> {
        let size = file.metadata()?.len();
        let len = size.min(max_len);
        let head = read_head(file, len)?;
        Ok(Fingerprint {
            hash: fnv1a(&head),
            len: head.len() as u64,
        })
    }

    /// True when `file` still starts with the bytes this fingerprint hashed.
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        if self.len == 0 {
            return Ok(true);
        }
        let head = read_head(file, self.len)?;
        Ok(head.len() as u64 == self.len && fnv1a(&head) == self.hash)
    }

    /// The hash as saved in checkpoint meta (16 hex digits).
    pub fn hash_hex(&self) -> String {
        format!("{:016x}", self.hash)
    }

    /// Parses a saved fingerprint (`hash_hex`, `len`).
    pub fn from_saved(hash_hex: &str, len: u64) -> Option<Fingerprint> {
        let hash = u64::from_str_radix(hash_hex, 16).ok()?;
        Some(Fingerprint { hash, len })
    }
}

/// A hash of the bytes just before offset `at`: tells two files with the same first bytes
/// apart (rule 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// The offset the hashed bytes end at.
    pub at: u64,
    /// FNV-1a of the `min(at, TAIL_BYTES)` bytes before `at`.
    pub hash: u64,
}

impl Tail {
    /// The tail of `file` at `at`; `None` when the file is shorter than `at`.
    pub fn compute(file: &File, at: u64) -> io::Result<Option<Tail>> {
        let from = at.saturating_sub(TAIL_BYTES);
        let bytes = read_range(file, from, at - from)?;
        if (bytes.len() as u64) < at - from {
            return Ok(None);
        }
        Ok(Some(Tail {
            at,
            hash: fnv1a(&bytes),
        }))
    }

    /// True when `file` holds the same bytes before `at`.
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        Ok(Tail::compute(file, self.at)? == Some(*self))
    }
}

/// What a checkpoint says about a file, read back validated: absurd values (a corrupt but
/// parseable file) become `None` instead of an allocation or a crash.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedFile {
    /// The full checkpoint key.
    pub key: String,
    /// Device and inode, from the key's `<dev>-<ino>`.
    pub dev_ino: Option<(u64, u64)>,
    /// Committed offset.
    pub offset: u64,
    /// Last known path.
    pub path: Option<PathBuf>,
    /// Head fingerprint.
    pub fingerprint: Option<Fingerprint>,
    /// Tail at the reader's position when last saved.
    pub tail: Option<Tail>,
    /// The file's size when last seen (how much was there to read).
    pub size: Option<u64>,
    /// The content is read through gzip (a rotation compressed before it was finished).
    pub gzip: bool,
}

impl SavedFile {
    /// Reads a saved position whose key ends in `identity` (the part after the source's
    /// prefix).
    pub fn parse(key: String, identity: &str, position: &Position) -> SavedFile {
        let meta = &position.meta;
        let text = |name: &str| meta.get(name).and_then(|v| v.as_str());
        let number = |name: &str| meta.get(name).and_then(|v| v.as_u64());
        let fingerprint = text("fingerprint")
            .zip(number("fingerprint_len"))
            .filter(|(_, len)| *len <= MAX_FINGERPRINT_BYTES)
            .and_then(|(hash, len)| Fingerprint::from_saved(hash, len));
        let tail = text("tail")
            .and_then(|hash| u64::from_str_radix(hash, 16).ok())
            .zip(number("tail_at"))
            .map(|(hash, at)| Tail { at, hash });
        SavedFile {
            dev_ino: parse_key(identity),
            offset: position.offset,
            path: text("path").map(PathBuf::from),
            fingerprint,
            tail,
            size: number("size"),
            gzip: text("compression") == Some("gzip"),
            key,
        }
    }

    /// Bytes known to exist past the committed offset (lost if the file is gone).
    pub fn unread_bytes(&self) -> u64 {
        let known_end = self.size.unwrap_or(0).max(self.tail.map_or(0, |t| t.at));
        known_end.saturating_sub(self.offset)
    }
}

/// `<dev>-<ino>` (hex) back to numbers.
pub fn parse_key(identity: &str) -> Option<(u64, u64)> {
    let (dev, ino) = identity.split_once('-')?;
    Some((
        u64::from_str_radix(dev, 16).ok()?,
        u64::from_str_radix(ino, 16).ok()?,
    ))
}

fn read_head(file: &File, len: u64) -> io::Result<Vec<u8>> {
    read_range(file, 0, len)
}

/// Up to `len` bytes at `from` (fewer at the end of the file). Never allocates more than
/// the file holds.
fn read_range(file: &File, from: u64, len: u64) -> io::Result<Vec<u8>> {
    let size = file.metadata()?.len();
    let len = len.min(size.saturating_sub(from));
    let mut head = vec![0u8; len as usize];
    let mut filled = 0;
    while filled < head.len() {
        match file.read_at(&mut head[filled..], from + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    head.truncate(filled);
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn check(content: &[u8], max_len: u64, then: &[u8], expected_match: bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, content).unwrap();
        let fingerprint = Fingerprint::compute(&File::open(&path).unwrap(), max_len).unwrap();
        assert_eq!(fingerprint.len, (content.len() as u64).min(max_len));
        std::fs::write(&path, then).unwrap();
        let matched = fingerprint.matches(&File::open(&path).unwrap()).unwrap();
        assert_eq!(matched, expected_match, "{content:?} then {then:?}");
    }

    #[test]
    fn fingerprint_rules() {
        check(b"hello world\n", 1024, b"hello world\nmore\n", true);
        check(b"hello world\n", 5, b"hello again\n", true);
        check(b"hello world\n", 1024, b"jello world\n", false);
        check(b"hello world\n", 1024, b"hello", false);
        check(b"", 1024, b"anything", true);
    }

    #[test]
    fn saved_form_round_trips() {
        let fingerprint = Fingerprint {
            hash: 0xdead_beef,
            len: 7,
        };
        assert_eq!(
            Fingerprint::from_saved(&fingerprint.hash_hex(), 7),
            Some(fingerprint)
        );
        assert_eq!(Fingerprint::from_saved("zz", 7), None);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"x").unwrap();
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"abc"), crate::hash_str("abc"));
    }
}
