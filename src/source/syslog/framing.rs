//! Splitting a syslog byte stream into messages (RFC 6587): newline-terminated ("non-transparent
//! framing") or octet-counted (`LEN SP MSG`), chosen per message in `auto` mode: a digit
//! starts an octet count only when the count and its space are followed by `<`, the start
//! of every syslog message's priority. rsyslog and syslog-ng look at the first digit only,
//! so a plain line such as `42 is the answer` swallows the next 42 bytes there and splits
//! the message after it; here it is a line.
//!
//! Owns: frame boundaries and the `max_message_bytes` limit on a stream. Never: parses the
//! message, copies a frame (frames are `split_to` slices of the read buffer), buffers more
//! than one maximum-sized message, or panics on any input.

use bytes::{Buf, Bytes, BytesMut};
use serde::Deserialize;

/// How messages are delimited on a stream (TCP, TLS, Unix stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    /// Per message: octet counting when it starts with `LEN SP <` (a count, then a syslog
    /// priority), newline otherwise.
    #[default]
    Auto,
    /// Each message ends with `\n` (a trailing `\r` is removed when parsing).
    Newline,
    /// Each message is `LEN SP MSG` (RFC 6587 §3.4.1); a message without a valid length
    /// prefix falls back to newline framing rather than desynchronising the stream.
    OctetCounting,
}

/// One message cut from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The message bytes (without length prefix or newline).
    pub bytes: Bytes,
    /// True when the message was longer than the limit and cut (the rest was discarded).
    pub truncated: bool,
}

/// The longest octet count accepted: 10 digits would exceed any sane message.
const MAX_LENGTH_DIGITS: usize = 9;

/// A stateful stream decoder: feed it the connection's read buffer after every read.
#[derive(Debug)]
pub struct Decoder {
    framing: Framing,
    max_bytes: usize,
    /// Bytes of an over-long octet-counted message still to discard.
    skip_bytes: usize,
    /// Discarding the rest of an over-long newline-framed message.
    skip_line: bool,
}

/// What the start of the buffer says about the next octet-counted frame.
enum Header {
    /// `LEN SP` of this many header bytes, announcing this many message bytes.
    Length(usize, usize),
    /// Not an octet count: read this message as a line.
    NotCounted,
    /// Too few bytes to tell.
    NeedMore,
}

impl Decoder {
    /// A decoder cutting messages at `max_bytes` (at least 1).
    pub fn new(framing: Framing, max_bytes: usize) -> Self {
        Decoder {
            framing,
            max_bytes: max_bytes.max(1),
            skip_bytes: 0,
            skip_line: false,
        }
    }

    /// The next complete message in `buf`, consuming it; `None` when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        if !self.skip(buf) {
            return None;
        }
        // Blank lines between messages carry nothing.
        let blank = buf
            .iter()
            .take_while(|b| matches!(b, b'\n' | b'\r'))
            .count();
        buf.advance(blank);
        let first = *buf.first()?;
        let counted = match self.framing {
            Framing::Newline => false,
            Framing::Auto => first.is_ascii_digit(),
            Framing::OctetCounting => true,
        };
        if counted {
            match self.header(buf, self.framing == Framing::Auto) {
                Header::Length(header_len, length) => return self.counted(buf, header_len, length),
                Header::NeedMore => return None,
                Header::NotCounted => {}
            }
        }
        self.line(buf)
    }

    /// Like [`Decoder::decode`] when the stream has ended: what is left (a last line
    /// without newline, a cut octet-counted message) is returned as a message too.
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        if let Some(frame) = self.decode(buf) {
            return Some(frame);
        }
        if !self.skip(buf) || buf.is_empty() {
            return None;
        }
        let truncated = match self.header(buf, self.framing == Framing::Auto) {
            Header::Length(header_len, _) if self.framing != Framing::Newline => {
                buf.advance(header_len);
                true
            }
            _ => false,
        };
        let bytes = buf.split().freeze();
        let bytes = if truncated {
            bytes
        } else {
            trim_line_end(bytes)
        };
        Some(Frame { bytes, truncated })
    }

    /// Discards what an over-long message left; false while there is more to discard.
    fn skip(&mut self, buf: &mut BytesMut) -> bool {
        if self.skip_bytes > 0 {
            let n = self.skip_bytes.min(buf.len());
            buf.advance(n);
            self.skip_bytes -= n;
            if self.skip_bytes > 0 {
                return false;
            }
        }
        if self.skip_line {
            match memchr::memchr(b'\n', buf) {
                Some(end) => {
                    buf.advance(end + 1);
                    self.skip_line = false;
                }
                None => {
                    buf.clear();
                    return false;
                }
            }
        }
        true
    }

    /// Reads `LEN SP` at the start of `buf`; with `then_priority`, only if `<` follows.
    fn header(&self, buf: &[u8], then_priority: bool) -> Header {
        let n_digits = buf.iter().take_while(|b| b.is_ascii_digit()).count();
        if n_digits == buf.len() && n_digits <= MAX_LENGTH_DIGITS {
            return Header::NeedMore;
        }
        if n_digits == 0 || n_digits > MAX_LENGTH_DIGITS || buf[n_digits] != b' ' || buf[0] == b'0'
        {
            return Header::NotCounted;
        }
        if then_priority {
            match buf.get(n_digits + 1) {
                None => return Header::NeedMore,
                Some(b'<') => {}
                Some(_) => return Header::NotCounted,
            }
        }
        let length = buf[..n_digits]
            .iter()
            .fold(0usize, |n, b| n * 10 + usize::from(b - b'0'));
        Header::Length(n_digits + 1, length)
    }

    fn counted(&mut self, buf: &mut BytesMut, header_len: usize, length: usize) -> Option<Frame> {
        let kept = length.min(self.max_bytes);
        if buf.len() < header_len + kept {
            return None;
        }
        buf.advance(header_len);
        let bytes = buf.split_to(kept).freeze();
        self.skip_bytes = length - kept;
        Some(Frame {
            bytes,
            truncated: length > kept,
        })
    }

    fn line(&mut self, buf: &mut BytesMut) -> Option<Frame> {
        let limit = buf.len().min(self.max_bytes + 1);
        match memchr::memchr(b'\n', &buf[..limit]) {
            Some(end) => {
                let line = buf.split_to(end + 1).freeze();
                Some(Frame {
                    bytes: trim_line_end(line),
                    truncated: false,
                })
            }
            None if buf.len() > self.max_bytes => {
                let bytes = buf.split_to(self.max_bytes).freeze();
                self.skip_line = true;
                Some(Frame {
                    bytes,
                    truncated: true,
                })
            }
            None => None,
        }
    }
}

/// Removes one trailing `\n` and then one `\r`.
fn trim_line_end(mut line: Bytes) -> Bytes {
    if line.last() == Some(&b'\n') {
        line.truncate(line.len() - 1);
    }
    if line.last() == Some(&b'\r') {
        line.truncate(line.len() - 1);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `chunks` one after another, then ends the stream; frames as text (`~` marks a
    /// truncated one).
    fn decode_all(framing: Framing, max_bytes: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut decoder = Decoder::new(framing, max_bytes);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut push = |frame: Frame| {
            let text = String::from_utf8_lossy(&frame.bytes).into_owned();
            out.push(if frame.truncated {
                format!("{text}~")
            } else {
                text
            });
        };
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(frame) = decoder.decode(&mut buf) {
                push(frame);
            }
        }
        while let Some(frame) = decoder.decode_eof(&mut buf) {
            push(frame);
        }
        out
    }

    fn check(framing: Framing, max_bytes: usize, chunks: &[&str], expected: &[&str]) {
        let chunks: Vec<&[u8]> = chunks.iter().map(|c| c.as_bytes()).collect();
        assert_eq!(
            decode_all(framing, max_bytes, &chunks),
            expected,
            "{framing:?} {chunks:?}"
        );
    }

    #[test]
    fn frames() {
        use Framing::*;
        check(Newline, 100, &["a\nb\r\n", "c"], &["a", "b", "c"]);
        check(Newline, 100, &["a", "b\n\n\nc\n"], &["ab", "c"]);
        check(Newline, 3, &["abcdef\nxy\n"], &["abc~", "xy"]);
        check(Newline, 100, &["5 abc"], &["5 abc"]);
        check(Newline, 3, &["ab", "cdef", "gh\nxy\n"], &["abc~", "xy"]);
        check(OctetCounting, 100, &["5 hello3 abc"], &["hello", "abc"]);
        check(
            OctetCounting,
            100,
            &["1", "1 hello", " world2 ", "ok"],
            &["hello world", "ok"],
        );
        check(
            OctetCounting,
            4,
            &["10 0123456789", "3 abc"],
            &["0123~", "abc"],
        );
        check(
            OctetCounting,
            4,
            &["10 01234", "56789", "3 abc"],
            &["0123~", "abc"],
        );
        // Not a valid count: read as a line instead of desynchronising.
        check(
            OctetCounting,
            100,
            &["<13>no count\n4 abcd"],
            &["<13>no count", "abcd"],
        );
        check(
            Auto,
            100,
            &["<13>a\n5 <13>b<14>c\n"],
            &["<13>a", "<13>b", "<14>c"],
        );
        check(Auto, 100, &["2026-01-01 text\n"], &["2026-01-01 text"]);
        check(Auto, 100, &["10 <13>short"], &["<13>short~"]);
        check(Auto, 100, &["10 short\n"], &["10 short"]);
        // A plain line starting with a number is a line, not a count that would swallow
        // the next message (whatever the reads' boundaries).
        check(
            Auto,
            100,
            &["42 is the answer\n<13>next\n"],
            &["42 is the answer", "<13>next"],
        );
        check(
            Auto,
            100,
            &["42 ", "is the answer\n", "8 <13>next"],
            &["42 is the answer", "<13>next"],
        );
        check(Auto, 100, &["12"], &["12"]);
        check(Auto, 100, &["0 x\n"], &["0 x"]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_or_grow(
            framing in prop_oneof![Just(Framing::Auto), Just(Framing::Newline), Just(Framing::OctetCounting)],
            max_bytes in 1usize..64,
            data in proptest::collection::vec(any::<u8>(), 0..512),
            split in 0usize..512,
        ) {
            let (a, b) = data.split_at(split.min(data.len()));
            let frames = decode_all(framing, max_bytes, &[a, b]);
            let total: usize = frames.iter().map(|f| f.trim_end_matches('~').len()).sum();
            // Lossy text may grow by replacement characters; bound it by 3x.
            prop_assert!(total <= 3 * data.len());
        }

        #[test]
        fn newline_frames_give_back_every_line(lines in proptest::collection::vec("[^\r\n]{1,40}", 0..20), split in 0usize..900) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let (a, b) = text.as_bytes().split_at(split.min(text.len()));
            prop_assert_eq!(decode_all(Framing::Newline, 1000, &[a, b]), lines);
        }

        #[test]
        fn octet_counted_frames_give_back_every_message(messages in proptest::collection::vec(any::<Vec<u8>>(), 0..20), split in 0usize..4000) {
            let mut stream = Vec::new();
            for message in messages.iter().filter(|m| !m.is_empty()) {
                stream.extend_from_slice(format!("{} ", message.len()).as_bytes());
                stream.extend_from_slice(message);
            }
            let (a, b) = stream.split_at(split.min(stream.len()));
            let mut decoder = Decoder::new(Framing::OctetCounting, 1 << 20);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for chunk in [a, b] {
                buf.extend_from_slice(chunk);
                while let Some(frame) = decoder.decode(&mut buf) {
                    got.push(frame.bytes.to_vec());
                }
            }
            let expected: Vec<Vec<u8>> = messages.into_iter().filter(|m| !m.is_empty()).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
