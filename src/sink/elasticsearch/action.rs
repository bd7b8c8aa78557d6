//! The action line of each `_bulk` item: the action (`index` / `create`), the target index
//! name rendered from its pattern, and the document `_id`.
//! Spec: <https://www.elastic.co/guide/en/elasticsearch/reference/current/docs-bulk.html>.
//!
//! Index patterns mix `strftime` dates taken from the event timestamp (UTC: `%Y.%m.%d`)
//! with `{{ field }}` templates ([`crate::transform::template`]); a field's value is never
//! read as a date pattern. Dates are rendered once per second of event time and cached.
//!
//! The deterministic `_id` is a 128-bit hash of (origin stream, origin offset, message),
//! stable across processes and releases, so a line read again after a crash gets the same
//! `_id` and is not indexed twice. The message is part of it because a stream key can
//! restart at offset 0 (copytruncate, inode reuse): key and offset alone would make new
//! lines overwrite old documents. `id: auto` uses sluice's own frozen hash (the first
//! releases' ids); `id: xxh3` the same framing under XXH3-128, which anyone can recompute.
//!
//! Owns: index names, `_id`s, action lines. Never: writes the document (that is
//! [`super::document`]) or judges replies.

use std::fmt::Write as _;

use crate::event::{LogEvent, Value};
use crate::transform::template::{Segment, Template};

/// One piece of an index pattern.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    /// Text without `%`.
    Literal(String),
    /// Text with `strftime` specifiers, rendered from the event time.
    Date(String),
    /// A `{{ field }}` reference.
    Field(String),
}

/// A validated index name pattern (`logs-%Y.%m.%d`, `app-{{ service }}-%Y.%m`).
#[derive(Debug, Clone, PartialEq)]
pub struct IndexPattern {
    parts: Vec<Part>,
}

impl IndexPattern {
    /// Parses and validates `text` (templates closed, `strftime` specifiers known).
    pub fn parse(text: &str) -> anyhow::Result<IndexPattern> {
        anyhow::ensure!(!text.trim().is_empty(), "the index name is empty");
        let template = Template::parse(text)?;
        let mut parts = Vec::new();
        for segment in template.segments() {
            match segment {
                Segment::Field(name) => parts.push(Part::Field(name.to_owned())),
                Segment::Literal(text) if text.contains('%') => {
                    let items = chrono::format::StrftimeItems::new(text);
                    anyhow::ensure!(
                        items
                            .into_iter()
                            .all(|item| !matches!(item, chrono::format::Item::Error)),
                        "{text:?} holds an unknown strftime specifier"
                    );
                    // Specifiers that need a time zone offset name cannot be rendered from
                    // a UTC timestamp alone; a render error would be silent, so try once.
                    let mut probe = String::new();
                    anyhow::ensure!(
                        write!(probe, "{}", chrono::DateTime::UNIX_EPOCH.format(text)).is_ok(),
                        "{text:?} cannot be rendered from a timestamp"
                    );
                    parts.push(Part::Date(text.to_owned()));
                }
                Segment::Literal(text) => parts.push(Part::Literal(text.to_owned())),
            }
        }
        Ok(IndexPattern { parts })
    }

    /// True when the name holds no field reference and no date (the same for every event).
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// Appends the index name for `log` to `out`; `cache` keeps the dates of one second.
    pub fn render(&self, log: &LogEvent, cache: &mut DateCache, out: &mut String) {
        let mut dates = 0;
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field(name) => {
                    if let Some(value) = log.get(name) {
                        out.push_str(&value.to_text());
                    }
                }
                Part::Date(pattern) => {
                    out.push_str(cache.get(log.timestamp.0, dates, pattern));
                    dates += 1;
                }
            }
        }
    }
}

/// Rendered date parts of one second of event time.
#[derive(Debug, Clone, Default)]
pub struct DateCache {
    second: Option<i64>,
    rendered: Vec<String>,
}

impl DateCache {
    fn get(&mut self, nanos: i64, index: usize, pattern: &str) -> &str {
        let second = nanos.div_euclid(1_000_000_000);
        if self.second != Some(second) {
            self.second = Some(second);
            self.rendered.clear();
        }
        while self.rendered.len() <= index {
            self.rendered.push(String::new());
        }
        if self.rendered[index].is_empty() {
            let time = chrono::DateTime::from_timestamp_nanos(nanos);
            let _ = write!(self.rendered[index], "{}", time.format(pattern));
        }
        &self.rendered[index]
    }
}

/// Where a document's `_id` comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum IdSource {
    /// A hash of the origin (stream, offset) and the message; none without an origin.
    Auto,
    /// XXH3-128 of the same framing as `Auto`: (u64 LE stream length, stream, u64 LE
    /// offset, u64 LE message length, message).
    Xxh3,
    /// Never set: Elasticsearch assigns ids (a replay can duplicate).
    None,
    /// The value of this field (as text); no `_id` when it is missing or empty.
    Field(String),
}

impl IdSource {
    /// Appends the `_id` of `log` to `out`; false when the document gets none.
    pub fn write(&self, log: &LogEvent, out: &mut String) -> bool {
        match self {
            IdSource::None => false,
            IdSource::Auto | IdSource::Xxh3 => match &log.origin {
                Some(origin) => {
                    let message = log.message.to_text();
                    let hash = if matches!(self, IdSource::Auto) {
                        hash128(&origin.stream, origin.offset, message.as_bytes())
                    } else {
                        xxh3_id(&origin.stream, origin.offset, message.as_bytes())
                    };
                    write_hex(hash, out);
                    true
                }
                None => false,
            },
            IdSource::Field(name) => match log.get(name) {
                None | Some(Value::Null) => false,
                Some(value) => {
                    let start = out.len();
                    out.push_str(&value.to_text());
                    out.len() > start
                }
            },
        }
    }
}

/// Appends `{"<action>":{"_index":"..","_id":".."}}\n` to `body`; `create` when `create`
/// or when there is an id, else `index`. Without `index` the line names none: the request's
/// path does (`/<index>/_bulk`).
pub fn write_action(
    body: &mut Vec<u8>,
    index: Option<&str>,
    id: Option<&str>,
    always_create: bool,
) {
    let action: &[u8] = if always_create || id.is_some() {
        b"{\"create\":{"
    } else {
        b"{\"index\":{"
    };
    body.extend_from_slice(action);
    if let Some(index) = index {
        body.extend_from_slice(b"\"_index\":");
        write_json_str(body, index);
    }
    if let Some(id) = id {
        if index.is_some() {
            body.push(b',');
        }
        body.extend_from_slice(b"\"_id\":");
        write_json_str(body, id);
    }
    body.extend_from_slice(b"}}\n");
}

/// True when `index` can go in a request path as it is: the characters Elasticsearch
/// allows in index names that need no percent-encoding, and not `.` or `..`. Other names
/// stay in the action lines, where Elasticsearch judges them per item.
pub fn is_path_safe(index: &str) -> bool {
    !matches!(index, "" | "." | "..")
        && index.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b'+')
        })
}

/// A JSON string literal, escaped in one pass (the same escapes as `serde_json`: `\"`,
/// `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other control characters as `\u00XX`). Eight bytes
/// are checked at a time; runs without anything to escape are copied whole.
pub fn write_json_str(body: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    body.reserve(bytes.len() + 2);
    body.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            if !needs_escape(u64::from_le_bytes(word)) {
                i += 8;
                continue;
            }
        }
        let end = (i + 8).min(bytes.len());
        for (j, &byte) in bytes[i..end].iter().enumerate() {
            if let Some(escape) = escape(byte) {
                body.extend_from_slice(&bytes[start..i + j]);
                escape.write(body);
                start = i + j + 1;
            }
        }
        i = end;
    }
    body.extend_from_slice(&bytes[start..]);
    body.push(b'"');
}

/// True when some byte of `word` is below 0x20, `"` or `\\` (exact: the classic
/// "has a zero / a byte less than n" bit tricks, which never miss and never over-report
/// existence).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let quote = word ^ (ONES * u64::from(b'"'));
    let quote = quote.wrapping_sub(ONES) & !quote & HIGH;
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let backslash = backslash.wrapping_sub(ONES) & !backslash & HIGH;
    (below_space | quote | backslash) != 0
}

/// The escape of one byte, if it needs one.
enum Escape {
    Short(&'static [u8]),
    Unicode(u8),
}

impl Escape {
    fn write(self, body: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        match self {
            Escape::Short(text) => body.extend_from_slice(text),
            Escape::Unicode(byte) => body.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
        }
    }
}

fn escape(byte: u8) -> Option<Escape> {
    Some(match byte {
        b'"' => Escape::Short(b"\\\""),
        b'\\' => Escape::Short(b"\\\\"),
        b'\n' => Escape::Short(b"\\n"),
        b'\r' => Escape::Short(b"\\r"),
        b'\t' => Escape::Short(b"\\t"),
        0x08 => Escape::Short(b"\\b"),
        0x0c => Escape::Short(b"\\f"),
        0x00..=0x1f => Escape::Unicode(byte),
        _ => return None,
    })
}

fn write_hex(hash: u128, out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buffer = [0u8; 32];
    for (i, slot) in buffer.iter_mut().enumerate() {
        *slot = DIGITS[((hash >> ((31 - i) * 4)) & 0xf) as usize];
    }
    // Hex digits are ASCII.
    out.push_str(std::str::from_utf8(&buffer).unwrap_or_default());
}

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// murmur3's 64-bit finaliser.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// Two independent 64-bit lanes over little-endian words.
struct Hasher128 {
    a: u64,
    b: u64,
}

impl Hasher128 {
    fn word(&mut self, w: u64) {
        self.a = (self.a ^ w.wrapping_mul(P2))
            .rotate_left(31)
            .wrapping_mul(P1);
        self.b = (self.b ^ w.wrapping_mul(P1))
            .rotate_left(27)
            .wrapping_mul(P2);
    }

    /// Length-prefixed, zero-padded: different inputs never frame to the same words.
    fn bytes(&mut self, bytes: &[u8]) {
        self.word(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.word(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(word));
        }
    }
}

/// The stable 128-bit document hash of (stream, offset, message). Changing it changes
/// every `_id`: replays across an upgrade would then duplicate, so it is frozen by a test.
pub fn hash128(stream: &str, offset: u64, message: &[u8]) -> u128 {
    let mut hasher = Hasher128 {
        a: 0x736c_7569_6365_2d61, // "sluice-a"
        b: 0x736c_7569_6365_2d62, // "sluice-b"
    };
    hasher.bytes(stream.as_bytes());
    hasher.word(offset);
    hasher.bytes(message);
    let a = fmix64(hasher.a ^ hasher.b.rotate_left(17));
    let b = fmix64(hasher.b ^ a);
    (u128::from(a) << 64) | u128::from(b)
}

/// XXH3-128 (seed 0) of (u64 LE stream length, stream, u64 LE offset, u64 LE message
/// length, message): `id: xxh3`.
pub fn xxh3_id(stream: &str, offset: u64, message: &[u8]) -> u128 {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    hasher.update(&(stream.len() as u64).to_le_bytes());
    hasher.update(stream.as_bytes());
    hasher.update(&offset.to_le_bytes());
    hasher.update(&(message.len() as u64).to_le_bytes());
    hasher.update(message);
    hasher.digest128()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Origin, Timestamp};

    fn event(ts: i64, fields: &[(&str, Value)]) -> LogEvent {
        let mut log = LogEvent::new("hello");
        log.timestamp = Timestamp(ts);
        for (name, value) in fields {
            log.insert(name, value.clone());
        }
        log
    }

    fn check(pattern: &str, log: &LogEvent, expected: Result<&str, &str>) {
        match (IndexPattern::parse(pattern), expected) {
            (Ok(index), Ok(text)) => {
                let mut cache = DateCache::default();
                for _ in 0..2 {
                    let mut out = String::new();
                    index.render(log, &mut cache, &mut out);
                    assert_eq!(out, text, "pattern {pattern:?}");
                }
            }
            (Err(error), Err(reason)) => {
                let error = format!("{error:#}");
                assert!(error.contains(reason), "{pattern:?}: {error}");
            }
            (got, want) => panic!("pattern {pattern:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn renders_index_patterns() {
        // 2021-03-04T05:06:07.5Z
        let ts = 1_614_834_367_500_000_000;
        let log = event(ts, &[("app", "web".into()), ("pct", "a%Yb".into())]);
        check("logs", &log, Ok("logs"));
        check("logs-%Y.%m.%d", &log, Ok("logs-2021.03.04"));
        check("logs-%Y-%m-%dT%H", &log, Ok("logs-2021-03-04T05"));
        check("{{ app }}-%Y.%m", &log, Ok("web-2021.03"));
        check("x-{{ pct }}-%Y", &log, Ok("x-a%Yb-2021"));
        check("x-{{ missing }}-%d", &log, Ok("x--04"));
        check("%Y{{app}}%m", &log, Ok("2021web03"));
        check("100%%", &log, Ok("100%"));
        check("logs-%Q", &log, Err("unknown strftime"));
        check("{{ app", &log, Err("without a closing"));
        check(" ", &log, Err("empty"));
        // Before the epoch and at the far end of the range: no panic.
        check("%Y.%m.%d", &event(-1, &[]), Ok("1969.12.31"));
        check("%Y", &event(i64::MAX, &[]), Ok("2262"));
    }

    #[test]
    fn date_cache_follows_event_time() {
        let index = IndexPattern::parse("i-%Y.%m.%d").unwrap();
        let mut cache = DateCache::default();
        let day = 86_400_000_000_000;
        let mut names = Vec::new();
        for ts in [0, 1, day, day + 5, 0] {
            let mut out = String::new();
            index.render(&event(ts, &[]), &mut cache, &mut out);
            names.push(out);
        }
        assert_eq!(
            names,
            [
                "i-1970.01.01",
                "i-1970.01.01",
                "i-1970.01.02",
                "i-1970.01.02",
                "i-1970.01.01"
            ]
        );
    }

    fn id_of(source: &IdSource, log: &LogEvent) -> Option<String> {
        let mut out = String::new();
        source.write(log, &mut out).then_some(out)
    }

    /// `id: xxh3` against values from the reference XXH3 (the C library behind Python's
    /// `xxhash` 3.x package, `xxh3_128_hexdigest` of the documented framing), so an operator
    /// can recompute an `_id` outside sluice.
    #[test]
    fn xxh3_ids_match_the_reference_implementation() {
        let cases = [
            ("2049-1234", 42, "hello", "dfdd70e2822b80bcbfae2f2308e712d3"),
            ("", 0, "", "10e45c7ce2292320743df94ee4c78a2a"),
        ];
        for (stream, offset, message, expected) in cases {
            let mut out = String::new();
            write_hex(xxh3_id(stream, offset, message.as_bytes()), &mut out);
            assert_eq!(out, expected, "{stream} {offset} {message}");
        }
        let (stream, message) = ("x".repeat(100), "é".repeat(300));
        let mut out = String::new();
        write_hex(xxh3_id(&stream, 1 << 63, message.as_bytes()), &mut out);
        assert_eq!(out, "3f53b892b9aeef0d984c15e6b199c73f");
        let mut log = LogEvent::new("hello");
        assert_eq!(id_of(&IdSource::Xxh3, &log), None, "no origin, no id");
        log.origin = Some(Origin {
            stream: "2049-1234".into(),
            offset: 42,
        });
        assert_eq!(
            id_of(&IdSource::Xxh3, &log).as_deref(),
            Some("dfdd70e2822b80bcbfae2f2308e712d3")
        );
    }

    #[test]
    fn document_ids() {
        let mut log = event(0, &[("uid", "abc".into()), ("n", Value::Int(7))]);
        assert_eq!(id_of(&IdSource::Auto, &log), None, "no origin, no id");
        assert_eq!(id_of(&IdSource::None, &log), None);
        assert_eq!(
            id_of(&IdSource::Field("uid".into()), &log).as_deref(),
            Some("abc")
        );
        assert_eq!(
            id_of(&IdSource::Field("n".into()), &log).as_deref(),
            Some("7")
        );
        assert_eq!(id_of(&IdSource::Field("nope".into()), &log), None);
        log.origin = Some(Origin {
            stream: "2049-1234".into(),
            offset: 42,
        });
        let id = id_of(&IdSource::Auto, &log).unwrap();
        // Frozen: a change here re-ids every document and breaks idempotent replays.
        assert_eq!(id, "565b964d56ea9d373dfb66706dfc3e2c");
        assert_eq!(id.len(), 32);
        assert_eq!(id_of(&IdSource::Auto, &log).unwrap(), id, "deterministic");
        let mut other = log.clone();
        other.message = "hellp".into();
        assert_ne!(
            id_of(&IdSource::Auto, &other).unwrap(),
            id,
            "message counts"
        );
        let mut other = log.clone();
        other.origin.as_mut().unwrap().offset = 43;
        assert_ne!(id_of(&IdSource::Auto, &other).unwrap(), id, "offset counts");
    }

    #[test]
    fn hash_frames_its_inputs() {
        // Moving bytes between the stream and the message must change the hash.
        assert_ne!(hash128("ab", 1, b"c"), hash128("a", 1, b"bc"));
        assert_ne!(hash128("", 0, b""), hash128("", 0, b"\0"));
        assert_ne!(hash128("a", 0, b"12345678"), hash128("a", 0, b"123456780"));
        let mut seen = std::collections::HashSet::new();
        for offset in 0..10_000 {
            assert!(seen.insert(hash128("s", offset, b"same line")));
        }
    }

    #[test]
    fn escapes_like_serde_json() {
        let all_bytes: String = (0u8..0x80).map(char::from).collect();
        for text in [
            "",
            "plain",
            "a\"b\\c",
            "tab\tnl\ncr\r",
            "\u{1}\u{1f}\u{7f}",
            "héllo ✓ 😀",
            all_bytes.as_str(),
        ] {
            let mut body = Vec::new();
            write_json_str(&mut body, text);
            assert_eq!(
                String::from_utf8(body).unwrap(),
                serde_json::to_string(text).unwrap()
            );
        }
        // Every special byte at every position of strings around the 8-byte word size.
        for len in 0..20 {
            for position in 0..len {
                for special in [b'"', b'\\', b'\n', 0x00, 0x1f, 0x7f, b'a'] {
                    let mut bytes = vec![b'x'; len];
                    bytes[position] = special;
                    let text = String::from_utf8(bytes).unwrap();
                    let mut body = Vec::new();
                    write_json_str(&mut body, &text);
                    assert_eq!(
                        String::from_utf8(body).unwrap(),
                        serde_json::to_string(&text).unwrap()
                    );
                }
            }
        }
    }

    #[test]
    fn action_lines() {
        for (index, id, create, expected) in [
            (Some("i"), None, false, "{\"index\":{\"_index\":\"i\"}}\n"),
            (
                Some("i"),
                Some("x"),
                false,
                "{\"create\":{\"_index\":\"i\",\"_id\":\"x\"}}\n",
            ),
            (Some("i"), None, true, "{\"create\":{\"_index\":\"i\"}}\n"),
            (
                Some("a\"b"),
                Some("q\\"),
                false,
                "{\"create\":{\"_index\":\"a\\\"b\",\"_id\":\"q\\\\\"}}\n",
            ),
            (None, None, false, "{\"index\":{}}\n"),
            (None, Some("x"), false, "{\"create\":{\"_id\":\"x\"}}\n"),
            (None, None, true, "{\"create\":{}}\n"),
        ] {
            let mut body = Vec::new();
            write_action(&mut body, index, id, create);
            assert_eq!(String::from_utf8(body).unwrap(), expected);
        }
        for (index, safe) in [
            ("logs-2026.11.22", true),
            ("a_b+c", true),
            ("", false),
            ("..", false),
            ("Logs", false),
            ("a/b", false),
            ("a b", false),
            ("a%2f", false),
            ("a?b", false),
            ("é", false),
        ] {
            assert_eq!(is_path_safe(index), safe, "{index:?}");
        }
    }
}
