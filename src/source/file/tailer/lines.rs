//! Bytes into lines: [`LineSplitter`] cuts a byte stream at `\n` (dropping a `\r` before
//! it), keeps at most `max_line_bytes` of each line and remembers where an unfinished line
//! started, so its memory is bounded however long the line grows.
//!
//! Owns: line boundaries and their offsets. Never: decodes text or formats.

/// Splits a byte stream into lines, keeping at most `max` bytes of each.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    partial_start: Option<u64>,
    partial_len: u64,
    max: usize,
}

/// One line from [`LineSplitter`].
pub struct RawLine<'a> {
    /// The kept bytes (without `\n` or `\r\n`).
    pub bytes: &'a [u8],
    /// Offset of the first byte.
    pub start: u64,
    /// Offset just past the newline.
    pub end: u64,
    /// The line was longer than `max` and cut.
    pub truncated: bool,
}

impl LineSplitter {
    /// A splitter keeping at most `max` bytes per line.
    pub fn new(max: usize) -> Self {
        LineSplitter {
            max,
            ..Self::default()
        }
    }

    /// Where the unfinished line starts, if one is buffered.
    pub fn partial_start(&self) -> Option<u64> {
        self.partial_start
    }

    /// Forgets any unfinished line (after truncation).
    pub fn reset(&mut self) {
        self.partial.clear();
        self.partial_start = None;
        self.partial_len = 0;
    }

    /// Splits `chunk`, read at file offset `at`, calling `emit` for each complete line.
    pub fn feed(&mut self, chunk: &[u8], at: u64, mut emit: impl FnMut(RawLine<'_>)) {
        let mut rest = chunk;
        let mut rest_at = at;
        while let Some(newline) = memchr::memchr(b'\n', rest) {
            let end = rest_at + newline as u64 + 1;
            match self.partial_start.take() {
                None => {
                    let (bytes, truncated) = cut(&rest[..newline], self.max);
                    emit(RawLine {
                        bytes: strip_cr(bytes, truncated),
                        start: rest_at,
                        end,
                        truncated,
                    });
                }
                Some(start) => {
                    self.keep(&rest[..newline]);
                    let truncated = self.partial_len > self.max as u64;
                    emit(RawLine {
                        bytes: strip_cr(&self.partial, truncated),
                        start,
                        end,
                        truncated,
                    });
                    self.partial.clear();
                    self.partial_len = 0;
                }
            }
            rest = &rest[newline + 1..];
            rest_at = end;
        }
        if !rest.is_empty() {
            if self.partial_start.is_none() {
                self.partial_start = Some(rest_at);
            }
            self.keep(rest);
        }
    }

    /// Emits the unfinished line, if any, as if it ended at `end` (a file let go).
    pub fn finish(&mut self, end: u64, mut emit: impl FnMut(RawLine<'_>)) {
        if let Some(start) = self.partial_start.take() {
            let truncated = self.partial_len > self.max as u64;
            emit(RawLine {
                bytes: &self.partial,
                start,
                end,
                truncated,
            });
        }
        self.partial.clear();
        self.partial_len = 0;
    }

    fn keep(&mut self, bytes: &[u8]) {
        self.partial_len += bytes.len() as u64;
        let room = self.max.saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

fn cut(bytes: &[u8], max: usize) -> (&[u8], bool) {
    if bytes.len() > max {
        (&bytes[..max], true)
    } else {
        (bytes, false)
    }
}

fn strip_cr(bytes: &[u8], truncated: bool) -> &[u8] {
    match bytes.split_last() {
        Some((b'\r', head)) if !truncated => head,
        _ => bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(chunks: &[&[u8]], max: usize, expected: &[(&str, u64, u64, bool)]) {
        let mut splitter = LineSplitter::new(max);
        let mut got = Vec::new();
        let mut at = 0;
        for chunk in chunks {
            splitter.feed(chunk, at, |line| {
                got.push((
                    String::from_utf8_lossy(line.bytes).into_owned(),
                    line.start,
                    line.end,
                    line.truncated,
                ))
            });
            at += chunk.len() as u64;
        }
        let expected: Vec<_> = expected
            .iter()
            .map(|(t, s, e, c)| ((*t).to_owned(), *s, *e, *c))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn splits_lines() {
        check(
            &[b"a\nbb\n"],
            10,
            &[("a", 0, 2, false), ("bb", 2, 5, false)],
        );
        check(
            &[b"a", b"b\nc", b"\n"],
            10,
            &[("ab", 0, 3, false), ("c", 3, 5, false)],
        );
        check(&[b"x\r\n\n"], 10, &[("x", 0, 3, false), ("", 3, 4, false)]);
        check(&[b"tail without newline"], 10, &[]);
        check(
            &[b"0123456789abc\nok\n"],
            4,
            &[("0123", 0, 14, true), ("ok", 14, 17, false)],
        );
        check(&[b"01", b"23", b"45", b"67\n"], 3, &[("012", 0, 9, true)]);
    }

    #[test]
    fn long_partial_line_memory_is_bounded() {
        let mut splitter = LineSplitter::new(16);
        let chunk = vec![b'x'; 64 * 1024];
        for i in 0..100u64 {
            splitter.feed(&chunk, i * chunk.len() as u64, |_| panic!("no newline yet"));
        }
        assert!(
            splitter.partial.capacity() < 1024,
            "kept {} bytes",
            splitter.partial.capacity()
        );
        assert_eq!(splitter.partial_start(), Some(0));
    }
}
