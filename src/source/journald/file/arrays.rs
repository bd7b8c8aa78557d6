//! Walking the global entry-array chain: from the header's `entry_array_offset`, each entry
//! array (an object of `next_entry_array_offset` then item slots, 4 bytes in compact mode,
//! 8 otherwise) lists entry offsets in order. The cursor stands on a slot; an empty slot is
//! an entry not written yet.
//!
//! Owns: the cursor, `peek`/`advance`/`skip_to` and entry metadata. Never: follows a chain
//! backwards or loops (a chain that does not move forward is corrupt).

use super::header::{
    id128, le32, le64, EntryMeta, Error, OBJECT_ENTRY, OBJECT_ENTRY_ARRAY, OBJECT_HEADER,
};
use super::JournalFile;

/// Where the walk of the global entry-array chain stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ArrayCursor {
    /// The entry array being read (0: not started).
    pub(super) array: u64,
    /// Its number of item slots.
    pub(super) capacity: u64,
    /// The next slot to read.
    pub(super) index: u64,
    /// The slot at `index` was read and names an entry (whose object may still be bad).
    pub(super) on_entry: bool,
}

impl JournalFile {
    /// The next entry's metadata, without moving past it. `Ok(None)`: no entry yet.
    pub fn peek(&mut self) -> Result<Option<EntryMeta>, Error> {
        self.cursor.on_entry = false;
        let Some(offset) = self.next_entry_offset()? else {
            return Ok(None);
        };
        self.cursor.on_entry = true;
        self.entry_meta(offset).map(Some)
    }

    /// Moves past the entry last returned by [`JournalFile::peek`].
    pub fn advance(&mut self) {
        self.cursor.index += 1;
        self.n_read += 1;
        self.cursor.on_entry = false;
    }

    /// Moves past the entry [`JournalFile::peek`] stands on even though its object (or its
    /// fields' objects) cannot be read, as journalctl skips an entry it cannot read. False
    /// when the failure was in the entry arrays themselves: nothing after it can be found.
    pub fn skip_bad_entry(&mut self) -> bool {
        let on_entry = self.cursor.on_entry;
        if on_entry {
            self.advance();
        }
        on_entry
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
            on_entry: false,
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
}
