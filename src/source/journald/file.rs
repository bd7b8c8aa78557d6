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
//! Owns: positional reads of one file (`pread`, no `mmap`: `unsafe` is forbidden), a read
//! window and a small cache of decoded data objects. Never: trusts an offset or a size from
//! the file (journald writes while we read, and a file may be corrupt): every object is
//! checked for type, bounds and size, and a bad one is an [`Error`], never a panic.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::decompress;

const SIGNATURE: &[u8; 8] = b"LPKSHHRH";
const OBJECT_HEADER: u64 = 16;
/// Header fields this reader needs end at `entry_array_offset` + 8 (offset 184); the oldest
/// journals (systemd < 187) have a 208-byte header.
const MIN_HEADER_SIZE: u64 = 208;

const INCOMPATIBLE_XZ: u32 = 1;
const INCOMPATIBLE_LZ4: u32 = 2;
const INCOMPATIBLE_KEYED_HASH: u32 = 4;
const INCOMPATIBLE_ZSTD: u32 = 8;
const INCOMPATIBLE_COMPACT: u32 = 16;
const INCOMPATIBLE_KNOWN: u32 = INCOMPATIBLE_XZ
    | INCOMPATIBLE_LZ4
    | INCOMPATIBLE_KEYED_HASH
    | INCOMPATIBLE_ZSTD
    | INCOMPATIBLE_COMPACT;

const OBJECT_DATA: u8 = 1;
const OBJECT_ENTRY: u8 = 3;
const OBJECT_ENTRY_ARRAY: u8 = 6;

/// Largest object this reader accepts (journald's own data limit is far below it).
const MAX_OBJECT_SIZE: u64 = 256 << 20;
/// Bytes read at once for objects that fit (entries and their unique data are close).
const WINDOW_BYTES: usize = 64 << 10;
/// Decoded payloads at most this long are cached by offset (shared fields such as
/// `_HOSTNAME=` or `_BOOT_ID=` are referenced by every entry but stored once).
const CACHE_PAYLOAD_MAX: usize = 192;
/// Cached payloads, at most (then the cache starts over): bounds memory to ~1 MiB.
const CACHE_ENTRIES_MAX: usize = 4096;

/// `state` in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// Closed cleanly by its writer.
    Offline,
    /// Open for writing: new entries may still come.
    Online,
    /// Rotated away: complete.
    Archived,
    /// A value this reader does not know.
    Unknown(u8),
}

/// Why a file (or the rest of it) cannot be read. `reason()` is the metric label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Not a journal file (signature), or a header this reader cannot use.
    BadHeader(String),
    /// Uses a feature this reader does not know (an unknown incompatible flag).
    Unsupported(u32),
    /// Ends before an object it references.
    Truncated,
    /// An object of the wrong type, size or place.
    Corrupt(String),
    /// A compressed payload that does not decompress.
    Decompress(String),
    /// Reading failed.
    Io(String),
}

impl Error {
    /// The `reason` label of `sluice_journal_errors_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::BadHeader(_) => "bad_header",
            Error::Unsupported(_) => "unsupported",
            Error::Truncated => "truncated",
            Error::Corrupt(_) => "corrupt",
            Error::Decompress(_) => "decompress",
            Error::Io(_) => "io",
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::BadHeader(why) => write!(f, "not a usable journal file: {why}"),
            Error::Unsupported(flags) => write!(f, "unsupported incompatible flags {flags:#x}"),
            Error::Truncated => write!(f, "file ends inside an object"),
            Error::Corrupt(why) => write!(f, "corrupt: {why}"),
            Error::Decompress(why) => write!(f, "data object does not decompress: {why}"),
            Error::Io(why) => write!(f, "read failed: {why}"),
        }
    }
}

/// The header fields this reader uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `incompatible_flags`.
    pub incompatible: u32,
    /// `state`.
    pub state: FileState,
    /// `file_id`: random, kept when the writer renames the file (rotation).
    pub file_id: [u8; 16],
    /// `machine_id`.
    pub machine_id: [u8; 16],
    /// `seqnum_id`: entries of files with the same id share one sequence-number space.
    pub seqnum_id: [u8; 16],
    /// `n_entries`.
    pub n_entries: u64,
    /// `tail_entry_seqnum`.
    pub tail_entry_seqnum: u64,
    /// `entry_array_offset`: the head of the global entry-array chain.
    pub entry_array_offset: u64,
}

impl Header {
    /// Parses the first bytes of a file.
    pub fn parse(bytes: &[u8]) -> Result<Header, Error> {
        if bytes.len() < MIN_HEADER_SIZE as usize {
            return Err(Error::BadHeader(format!("{} bytes", bytes.len())));
        }
        if &bytes[..8] != SIGNATURE {
            return Err(Error::BadHeader("no LPKSHHRH signature".into()));
        }
        let incompatible = le32(bytes, 12);
        if incompatible & !INCOMPATIBLE_KNOWN != 0 {
            return Err(Error::Unsupported(incompatible & !INCOMPATIBLE_KNOWN));
        }
        let header_size = le64(bytes, 88);
        if header_size < MIN_HEADER_SIZE {
            return Err(Error::BadHeader(format!("header_size {header_size}")));
        }
        let state = match bytes[16] {
            0 => FileState::Offline,
            1 => FileState::Online,
            2 => FileState::Archived,
            other => FileState::Unknown(other),
        };
        Ok(Header {
            incompatible,
            state,
            file_id: id128(bytes, 24),
            machine_id: id128(bytes, 40),
            seqnum_id: id128(bytes, 72),
            n_entries: le64(bytes, 152),
            tail_entry_seqnum: le64(bytes, 160),
            entry_array_offset: le64(bytes, 176),
        })
    }

    /// Compact mode: 32-bit offsets in entries and entry arrays.
    pub fn compact(&self) -> bool {
        self.incompatible & INCOMPATIBLE_COMPACT != 0
    }
}

/// An entry's metadata: enough to order it against entries of other files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    /// Where the entry object is.
    pub offset: u64,
    /// `seqnum`.
    pub seqnum: u64,
    /// `realtime`, microseconds since the epoch.
    pub realtime: u64,
    /// `monotonic`, microseconds since boot.
    pub monotonic: u64,
    /// `boot_id`.
    pub boot_id: [u8; 16],
    /// `xor_hash`.
    pub xor_hash: u64,
}

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

/// Where the walk of the global entry-array chain stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ArrayCursor {
    /// The entry array being read (0: not started).
    array: u64,
    /// Its number of item slots.
    capacity: u64,
    /// The next slot to read.
    index: u64,
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
    pub fn refresh(&mut self) -> Result<(), Error> {
        self.windows.clear();
        let mut bytes = [0u8; 272];
        let n = read_full(&self.file, 0, &mut bytes)?;
        let header = Header::parse(&bytes[..n])?;
        if self.n_read > 0 && header.seqnum_id != self.header.seqnum_id {
            return Err(Error::Corrupt("seqnum_id changed".into()));
        }
        self.header = header;
        Ok(())
    }

    /// True when every entry the header announces was read.
    pub fn at_end(&self) -> bool {
        self.n_read >= self.header.n_entries
    }

    /// The next entry's metadata, without moving past it. `Ok(None)`: no entry yet.
    pub fn peek(&mut self) -> Result<Option<EntryMeta>, Error> {
        let Some(offset) = self.next_entry_offset()? else {
            return Ok(None);
        };
        self.entry_meta(offset).map(Some)
    }

    /// Moves past the entry last returned by [`JournalFile::peek`].
    pub fn advance(&mut self) {
        self.cursor.index += 1;
        self.n_read += 1;
    }

    /// The number of entries read (or skipped) so far: the file's position.
    pub fn n_read(&self) -> u64 {
        self.n_read
    }

    /// Moves past the first `n` entries (a saved position), reading only entry-array
    /// headers. Stops early at the end of what is written.
    pub fn skip_to(&mut self, n: u64) -> Result<(), Error> {
        let n = n.min(self.header.n_entries);
        while self.n_read < n {
            if !self.ensure_slot()? {
                break;
            }
            let take = (n - self.n_read).min(self.cursor.capacity - self.cursor.index);
            self.cursor.index += take;
            self.n_read += take;
        }
        Ok(())
    }

    /// Frees the read window and the data cache (an idle file keeps no buffers).
    pub fn release_buffers(&mut self) {
        self.windows = Vec::new();
        self.cache = HashMap::new();
        self.scratch = Vec::new();
    }

    fn item_size(&self) -> u64 {
        if self.header.compact() {
            4
        } else {
            8
        }
    }

    /// Puts the cursor on a slot of an entry array, entering the first array or the next
    /// ones as needed. False when the chain ends first.
    fn ensure_slot(&mut self) -> Result<bool, Error> {
        let item_size = self.item_size();
        // Bounded: a chain of empty arrays is not something a writer makes.
        for _ in 0..64 {
            if self.cursor.array == 0 {
                let first = self.header.entry_array_offset;
                if first == 0 {
                    return Ok(false);
                }
                self.enter_array(first, item_size)?;
            }
            if self.cursor.index < self.cursor.capacity {
                return Ok(true);
            }
            let next = le64(self.read(self.cursor.array + OBJECT_HEADER, 8)?, 0);
            if next == 0 {
                return Ok(false);
            }
            if next <= self.cursor.array {
                return Err(Error::Corrupt(format!("entry array chain loops at {next}")));
            }
            self.enter_array(next, item_size)?;
        }
        Err(Error::Corrupt("entry arrays without slots".into()))
    }

    /// The offset of the next entry in the global chain. `None`: not written yet.
    fn next_entry_offset(&mut self) -> Result<Option<u64>, Error> {
        if self.n_read >= self.header.n_entries || !self.ensure_slot()? {
            return Ok(None);
        }
        let item_size = self.item_size();
        let at = self.cursor.array + OBJECT_HEADER + 8 + self.cursor.index * item_size;
        let bytes = self.read(at, item_size as usize)?;
        let offset = if item_size == 4 {
            u64::from(le32(bytes, 0))
        } else {
            le64(bytes, 0)
        };
        // 0: a slot the writer has not filled yet.
        Ok((offset != 0).then_some(offset))
    }

    fn enter_array(&mut self, offset: u64, item_size: u64) -> Result<(), Error> {
        let size = self.object_header(offset, OBJECT_ENTRY_ARRAY)?.1;
        if size < OBJECT_HEADER + 8 {
            return Err(Error::Corrupt(format!(
                "entry array at {offset} of {size} bytes"
            )));
        }
        self.cursor = ArrayCursor {
            array: offset,
            capacity: (size - OBJECT_HEADER - 8) / item_size,
            index: 0,
        };
        Ok(())
    }

    fn entry_meta(&mut self, offset: u64) -> Result<EntryMeta, Error> {
        let size = self.object_header(offset, OBJECT_ENTRY)?.1;
        if size < 64 {
            return Err(Error::Corrupt(format!("entry at {offset} of {size} bytes")));
        }
        let bytes = self.read(offset + OBJECT_HEADER, 48)?;
        Ok(EntryMeta {
            offset,
            seqnum: le64(bytes, 0),
            realtime: le64(bytes, 8),
            monotonic: le64(bytes, 16),
            boot_id: id128(bytes, 24),
            xor_hash: le64(bytes, 40),
        })
    }

    /// Reads the fields of the entry at `meta.offset` into `fields` (cleared first).
    pub fn read_fields(&mut self, meta: &EntryMeta, fields: &mut Fields) -> Result<(), Error> {
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
            for item in offsets.chunks_exact(item_size as usize) {
                let data = if item_size == 4 {
                    u64::from(le32(item, 0))
                } else {
                    le64(item, 0)
                };
                self.data_payload(data, fields)?;
            }
            Ok(())
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

    /// Reads and checks the object header at `offset`: `(flags, size)`.
    fn object_header(&mut self, offset: u64, kind: u8) -> Result<(u8, u64), Error> {
        if !offset.is_multiple_of(8) || offset < MIN_HEADER_SIZE {
            return Err(Error::Corrupt(format!("object offset {offset}")));
        }
        let bytes = self.read(offset, OBJECT_HEADER as usize)?;
        let (found, flags, size) = (bytes[0], bytes[1], le64(bytes, 8));
        if found != kind {
            return Err(Error::Corrupt(format!(
                "object at {offset} has type {found}, expected {kind}"
            )));
        }
        if !(OBJECT_HEADER..=MAX_OBJECT_SIZE).contains(&size) {
            return Err(Error::Corrupt(format!("object at {offset} of size {size}")));
        }
        Ok((flags, size))
    }

    /// `len` bytes at `offset`, through the read windows.
    fn read(&mut self, offset: u64, len: usize) -> Result<&[u8], Error> {
        self.clock += 1;
        let end = offset + len as u64;
        let hit = self
            .windows
            .iter()
            .position(|w| offset >= w.start && end <= w.start + w.bytes.len() as u64);
        let index = match hit {
            Some(index) => index,
            None => {
                let index = if self.windows.len() < WINDOWS {
                    self.windows.push(Window::default());
                    self.windows.len() - 1
                } else {
                    (0..self.windows.len())
                        .min_by_key(|&i| self.windows[i].used)
                        .unwrap_or(0)
                };
                let window = &mut self.windows[index];
                window.bytes.resize(len.max(WINDOW_BYTES), 0);
                let n = read_full(&self.file, offset, &mut window.bytes)?;
                window.bytes.truncate(n);
                window.start = offset;
                if n < len {
                    return Err(Error::Truncated);
                }
                index
            }
        };
        let window = &mut self.windows[index];
        window.used = self.clock;
        let start = (offset - window.start) as usize;
        Ok(&window.bytes[start..start + len])
    }
}

/// Bytes of the file read at once, from `start`.
#[derive(Default)]
struct Window {
    start: u64,
    bytes: Vec<u8>,
    used: u64,
}

/// Read windows per file.
const WINDOWS: usize = 4;

fn placeholder_header() -> Header {
    Header {
        incompatible: 0,
        state: FileState::Offline,
        file_id: [0; 16],
        machine_id: [0; 16],
        seqnum_id: [0; 16],
        n_entries: 0,
        tail_entry_seqnum: 0,
        entry_array_offset: 0,
    }
}

/// Fills `buf` from `offset` as far as the file goes; returns the bytes read.
fn read_full(file: &File, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(Error::Io(error.to_string())),
        }
    }
    Ok(n)
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

fn id128(bytes: &[u8], at: usize) -> [u8; 16] {
    let mut id = [0u8; 16];
    id.copy_from_slice(&bytes[at..at + 16]);
    id
}

/// An id128 as journald prints it: 32 lowercase hex digits.
pub fn id128_hex(id: &[u8; 16]) -> String {
    use std::fmt::Write as _;
    id.iter().fold(String::with_capacity(32), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
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
        let text = include_str!("../../../tests/data/journal/expected.json");
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
