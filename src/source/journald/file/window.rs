//! Positional reads of one journal file through a few read windows (`pread`, no `mmap`:
//! `unsafe` is forbidden), and the checked read of an object header: type, alignment,
//! bounds and size, so that no offset or size from the file is trusted.
//!
//! Owns: the windows and their eviction, [`JournalFile`]'s `read` and `object_header`.
//! Never: panics on a short or bad file (a read past the end is [`Error::Truncated`]).

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::header::{le64, Error, MAX_OBJECT_SIZE, MIN_HEADER_SIZE, OBJECT_HEADER};
use super::JournalFile;

/// Bytes read at once for objects that fit (entries and their unique data are close).
const WINDOW_BYTES: usize = 64 << 10;

impl JournalFile {
    /// Reads and checks the object header at `offset`: `(flags, size)`.
    pub(super) fn object_header(&mut self, offset: u64, kind: u8) -> Result<(u8, u64), Error> {
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
    pub(super) fn read(&mut self, offset: u64, len: usize) -> Result<&[u8], Error> {
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
pub(super) struct Window {
    start: u64,
    bytes: Vec<u8>,
    used: u64,
}

/// Read windows per file.
const WINDOWS: usize = 4;

/// Fills `buf` from `offset` as far as the file goes; returns the bytes read.
pub(super) fn read_full(file: &File, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
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
