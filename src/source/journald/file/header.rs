//! The journal file format's fixed parts: the header (signature, incompatible flags, state,
//! ids, entry count, the head of the entry-array chain), the object type numbers and sizes,
//! entry metadata, the errors a file can have, and little-endian field reads.
//!
//! Owns: [`Header::parse`], [`Error`] and the byte-level helpers. Never: reads the file (the
//! caller passes the bytes).

const SIGNATURE: &[u8; 8] = b"LPKSHHRH";
pub(super) const OBJECT_HEADER: u64 = 16;
/// Header fields this reader needs end at `entry_array_offset` + 8 (offset 184); the oldest
/// journals (systemd < 187) have a 208-byte header.
pub(super) const MIN_HEADER_SIZE: u64 = 208;

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

pub(super) const OBJECT_DATA: u8 = 1;
pub(super) const OBJECT_ENTRY: u8 = 3;
pub(super) const OBJECT_ENTRY_ARRAY: u8 = 6;

/// Largest object this reader accepts (journald's own data limit is far below it).
pub(super) const MAX_OBJECT_SIZE: u64 = 256 << 20;

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

pub(super) fn placeholder_header() -> Header {
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

pub(super) fn le32(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

pub(super) fn le64(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

pub(super) fn id128(bytes: &[u8], at: usize) -> [u8; 16] {
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
