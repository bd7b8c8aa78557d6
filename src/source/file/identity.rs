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
//! 6. Limit: a file deleted and replaced (same inode) by one whose first bytes are identical
//!    and that is already longer than the old read offset cannot be told from the old file
//!    by any of these rules; the first `offset` bytes of the new file are then skipped. An
//!    open file's inode cannot be reused, so this only happens to files closed for being
//!    idle, or while the agent is down.
//!
//! Owns: computing and checking fingerprints. Never: decides where reading starts.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

/// FNV-1a over bytes (the same function as [`crate::hash_str`]).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

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

fn read_head(file: &File, len: u64) -> io::Result<Vec<u8>> {
    let mut head = vec![0u8; len as usize];
    let mut filled = 0;
    while filled < head.len() {
        match file.read_at(&mut head[filled..], filled as u64) {
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
