//! One journal file, read in-process: the header, the global entry-array chain, entry
//! objects and the data objects they reference, in regular and compact mode.
//!
//! Follows systemd's `JOURNAL_FILE_FORMAT` (docs/JOURNAL_FILE_FORMAT.md,
//! src/libsystemd/sd-journal/journal-def.h): all integers little-endian, objects 8-byte
//! aligned, each starting with a 16-byte `ObjectHeader { type, flags, reserved[6], size }`.
//! Entries are listed by walking the entry arrays chained from the header's
//! `entry_array_offset` (the hash tables are for lookups by value, which this reader does not
//! need: filters are evaluated on the decoded fields).
//!
//! Split by job: `header.rs` (the format's fixed parts, errors), `arrays.rs` (walking the
//! entry-array chain), `window.rs` (positional reads, checked object headers); this file
//! holds the open file, an entry's fields and the data objects they reference.
//!
//! Owns: the open file, reading an entry's fields, a small cache of decoded data objects.
//! Never: trusts an offset or a size from
//! the file (journald writes while we read, and a file may be corrupt): every object is
//! checked for type, bounds and size, and a bad one is an [`Error`], never a panic.

mod arrays;
mod header;
mod window;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use self::arrays::ArrayCursor;
pub use self::header::{id128_hex, EntryMeta, Error, FileState, Header};
use self::header::{le32, le64, placeholder_header, OBJECT_DATA, OBJECT_ENTRY};
use self::window::{read_full, Window};
use super::decompress;
/// Decoded payloads at most this long are cached by offset (shared fields such as
/// `_HOSTNAME=` or `_BOOT_ID=` are referenced by every entry but stored once).
const CACHE_PAYLOAD_MAX: usize = 192;
/// Cached payloads, at most (then the cache starts over): bounds memory to ~1 MiB.
const CACHE_ENTRIES_MAX: usize = 4096;

/// The fields of one entry: `NAME=value` payloads, decoded, in one buffer.
#[derive(Debug, Default, Clone)]
pub struct Fields {
    bytes: Vec<u8>,
    /// (start, end, position of `=`) of each field in `bytes`.
    spans: Vec<(usize, usize, usize)>,
}

impl Fields {
    /// Removes every field, keeping the buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
    }

    fn push(&mut self, payload: &[u8]) {
        // A payload without `=` is not a field: journald never writes one; skip it.
        let Some(eq) = memchr::memchr(b'=', payload) else {
            return;
        };
        let start = self.bytes.len();
        self.bytes.extend_from_slice(payload);
        self.spans.push((start, self.bytes.len(), start + eq));
    }

    #[cfg(test)]
    pub(crate) fn push_for_test(&mut self, payload: &[u8]) {
        self.push(payload);
    }

    /// `(name, value)` pairs in entry order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.spans
            .iter()
            .map(|&(start, end, eq)| (&self.bytes[start..eq], &self.bytes[eq + 1..end]))
    }

    /// The value of the first field called `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(field, _)| *field == name.as_bytes())
            .map(|(_, value)| value)
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when the entry has no fields.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// An open journal file.
pub struct JournalFile {
    path: PathBuf,
    file: File,
    header: Header,
    cursor: ArrayCursor,
    /// Entries read so far (bounded by `n_entries`).
    n_read: u64,
    /// A few read windows, so the entry arrays, the entries and the data objects (each in
    /// its own region of the file) do not evict one another.
    windows: Vec<Window>,
    /// Reads so far: the age of a window's last use.
    clock: u64,
    cache: HashMap<u64, Box<[u8]>>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for JournalFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalFile")
            .field("path", &self.path)
            .field("header", &self.header)
            .field("n_read", &self.n_read)
            .finish_non_exhaustive()
    }
}

impl JournalFile {
    /// Opens `path` and reads its header.
    pub fn open(path: &Path) -> Result<JournalFile, Error> {
        let file = File::open(path).map_err(|error| Error::Io(error.to_string()))?;
        Self::from_file(path.to_owned(), file)
    }

    /// Reads the header of an already open file.
    pub fn from_file(path: PathBuf, file: File) -> Result<JournalFile, Error> {
        let mut journal = JournalFile {
            path,
            file,
            header: placeholder_header(),
            cursor: ArrayCursor {
                array: 0,
                capacity: 0,
                index: 0,
                on_entry: false,
            },
            n_read: 0,
            windows: Vec::new(),
            clock: 0,
            cache: HashMap::new(),
            scratch: Vec::new(),
        };
        journal.refresh()?;
        Ok(journal)
    }

    /// The path it was opened at (it may have been renamed or deleted since).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records that the file is now at `path` (renamed by rotation).
    pub fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    /// The header as last read.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Reads the header again (the writer appends entries and updates it) and forgets
    /// bytes read before, which may have been written since.
    /// A header that cannot be read is the file's failure, not its next entry's: it is not
    /// skipped as a bad entry ([`JournalFile::skip_bad_entry`]).
    pub fn refresh(&mut self) -> Result<(), Error> {
        self.windows.clear();
        let mut bytes = [0u8; 272];
        let header = read_full(&self.file, 0, &mut bytes)
            .and_then(|n| Header::parse(&bytes[..n]))
            .and_then(|header| {
                if self.n_read > 0 && header.seqnum_id != self.header.seqnum_id {
                    return Err(Error::Corrupt("seqnum_id changed".into()));
                }
                Ok(header)
            });
        match header {
            Ok(header) => {
                self.header = header;
                Ok(())
            }
            Err(error) => {
                self.cursor.on_entry = false;
                Err(error)
            }
        }
    }

    /// True when every entry the header announces was read.
    pub fn at_end(&self) -> bool {
        self.n_read >= self.header.n_entries
    }

    /// Frees the read window and the data cache (an idle file keeps no buffers).
    pub fn release_buffers(&mut self) {
        self.windows = Vec::new();
        self.cache = HashMap::new();
        self.scratch = Vec::new();
    }

    /// Reads the fields of the entry at `meta.offset` into `fields` (cleared first). A field
    /// whose data object is corrupt or does not decompress is left out, as journalctl leaves
    /// it out; their number is returned.
    pub fn read_fields(&mut self, meta: &EntryMeta, fields: &mut Fields) -> Result<u32, Error> {
        fields.clear();
        let size = self.object_header(meta.offset, OBJECT_ENTRY)?.1;
        if size < 64 {
            return Err(Error::Corrupt(format!(
                "entry at {} of {size} bytes",
                meta.offset
            )));
        }
        let item_size: u64 = if self.header.compact() { 4 } else { 16 };
        let n_items = (size - 64) / item_size;
        let mut offsets = std::mem::take(&mut self.scratch);
        offsets.clear();
        match self.read(meta.offset + 64, (n_items * item_size) as usize) {
            Ok(items) => offsets.extend_from_slice(items),
            Err(error) => {
                self.scratch = offsets;
                return Err(error);
            }
        }
        let result = (|| {
            let mut left_out = 0;
            for item in offsets.chunks_exact(item_size as usize) {
                let data = if item_size == 4 {
                    u64::from(le32(item, 0))
                } else {
                    le64(item, 0)
                };
                match self.data_payload(data, fields) {
                    Ok(()) => {}
                    Err(Error::Corrupt(_) | Error::Decompress(_)) => left_out += 1,
                    Err(error) => return Err(error),
                }
            }
            Ok(left_out)
        })();
        self.scratch = offsets;
        result
    }

    /// Appends the decoded payload of the data object at `offset` to `fields`.
    fn data_payload(&mut self, offset: u64, fields: &mut Fields) -> Result<(), Error> {
        if let Some(payload) = self.cache.get(&offset) {
            fields.push(payload);
            return Ok(());
        }
        let (flags, size) = self.object_header(offset, OBJECT_DATA)?;
        let start = if self.header.compact() { 72 } else { 64 };
        if size < start {
            return Err(Error::Corrupt(format!(
                "data object at {offset} of {size} bytes"
            )));
        }
        let compression = flags & 7;
        let raw = self.read(offset + start, (size - start) as usize)?;
        if compression == 0 {
            if raw.len() <= CACHE_PAYLOAD_MAX {
                let payload: Box<[u8]> = raw.into();
                fields.push(&payload);
                self.cache_insert(offset, payload);
            } else {
                fields.push(raw);
            }
            return Ok(());
        }
        let decoded = decompress::decompress(compression, raw)?;
        fields.push(&decoded);
        Ok(())
    }

    fn cache_insert(&mut self, offset: u64, payload: Box<[u8]>) {
        if self.cache.len() >= CACHE_ENTRIES_MAX {
            self.cache.clear();
        }
        self.cache.insert(offset, payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    /// A fixture from `tests/data/journal/` (gzip-compressed: journal files are mostly
    /// preallocated zeros), unpacked into a temp dir, with `bytes` of it kept when set.
    fn fixture(name: &str, keep: Option<usize>) -> (tempfile::TempDir, PathBuf) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/journal")
            .join(format!("{name}.gz"));
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
            .read_to_end(&mut bytes)
            .unwrap();
        if let Some(keep) = keep {
            bytes.truncate(keep);
        }
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join(name);
        std::fs::write(&out, bytes).unwrap();
        (dir, out)
    }

    /// Every entry's fields as `NAME=value` strings (binary values lossily).
    fn read_all(path: &Path) -> Result<Vec<Vec<String>>, Error> {
        let mut journal = JournalFile::open(path)?;
        let mut fields = Fields::default();
        let mut out = Vec::new();
        while let Some(meta) = journal.peek()? {
            journal.read_fields(&meta, &mut fields)?;
            out.push(
                fields
                    .iter()
                    .map(|(name, value)| {
                        format!(
                            "{}={}",
                            String::from_utf8_lossy(name),
                            String::from_utf8_lossy(value)
                        )
                    })
                    .collect(),
            );
            journal.advance();
        }
        Ok(out)
    }

    /// `journalctl -o json` of the fixtures (tests/data/journal/expected.json).
    fn expected() -> Vec<serde_json::Value> {
        let text = include_str!("../../../../tests/data/journal/expected.json");
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn check(name: &str) {
        let (_dir, path) = fixture(name, None);
        let entries = read_all(&path).unwrap();
        let expected = expected();
        assert_eq!(entries.len(), expected.len(), "{name}");
        for (fields, want) in entries.iter().zip(&expected) {
            for key in ["MESSAGE", "PRIORITY", "_SYSTEMD_UNIT", "BIG"] {
                let line = format!("{key}={}", want[key].as_str().unwrap());
                assert!(
                    fields.contains(&line),
                    "{name}: {key} missing in {fields:?}"
                );
            }
            if let Some(bin) = want["BIN"].as_array() {
                let bytes: Vec<u8> = bin.iter().map(|b| b.as_u64().unwrap() as u8).collect();
                let line = format!("BIN={}", String::from_utf8_lossy(&bytes));
                assert!(fields.contains(&line), "{name}: binary field");
            }
        }
    }

    #[test]
    fn reads_compact_and_regular_files_with_zstd_fields() {
        check("compact-zstd.journal");
        check("regular-zstd.journal");
        let (_dir, path) = fixture("compact-zstd.journal", None);
        let journal = JournalFile::open(&path).unwrap();
        assert!(journal.header().compact());
        assert_eq!(journal.header().n_entries, 5);
    }

    #[test]
    fn positions_resume_by_skipping() {
        let (_dir, path) = fixture("regular-zstd.journal", None);
        let mut journal = JournalFile::open(&path).unwrap();
        journal.skip_to(3).unwrap();
        let meta = journal.peek().unwrap().unwrap();
        let mut fields = Fields::default();
        journal.read_fields(&meta, &mut fields).unwrap();
        assert_eq!(fields.get("MESSAGE"), Some(&b"hello 3"[..]));
        journal.skip_to(99).unwrap();
        assert!(journal.at_end());
        assert_eq!(journal.peek().unwrap(), None);
    }

    /// Only the entry `peek` stands on is skipped as bad; after a header that cannot be read
    /// (a vacuumed file) there is none to skip: the file itself failed.
    #[test]
    fn a_bad_entry_is_skipped_a_bad_header_is_not() {
        let (_dir, path) = fixture("regular-zstd.journal", None);
        let mut journal = JournalFile::open(&path).unwrap();
        assert!(!journal.skip_bad_entry(), "not on an entry before a peek");
        journal.peek().unwrap().unwrap();
        assert!(journal.skip_bad_entry());
        assert_eq!(journal.n_read(), 1);
        journal.peek().unwrap().unwrap();
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        assert!(journal.refresh().is_err());
        assert!(!journal.skip_bad_entry());
        assert_eq!(journal.n_read(), 1);
    }

    #[test]
    fn bad_input_is_an_error_never_a_panic() {
        let (_dir, path) = fixture("compact-zstd.journal", Some(100));
        assert_eq!(JournalFile::open(&path).unwrap_err().reason(), "bad_header");
        // Cut anywhere: an error or fewer entries, never a panic.
        let (_dir, full) = fixture("compact-zstd.journal", None);
        let len = std::fs::metadata(&full).unwrap().len() as usize;
        for keep in (300..len).step_by(len / 97) {
            let (_dir, path) = fixture("compact-zstd.journal", Some(keep));
            let _ = read_all(&path);
        }
        // Random bytes after a valid header.
        let mut bytes = std::fs::read(&full).unwrap();
        let mut state = 7u64;
        for byte in bytes.iter_mut().skip(272) {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            *byte = (state >> 33) as u8;
        }
        std::fs::write(&full, &bytes).unwrap();
        assert!(read_all(&full).is_err());
        let dir = tempfile::tempdir().unwrap();
        let noise = dir.path().join("noise.journal");
        std::fs::write(&noise, &bytes[272..]).unwrap();
        assert_eq!(
            JournalFile::open(&noise).unwrap_err().reason(),
            "bad_header"
        );
    }
}
