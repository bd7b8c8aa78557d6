//! Multiline aggregation: joins the lines of one logical record (a Java stack trace, a
//! Python traceback) into one event, with `\n` between lines.
//!
//! Rules (the same four modes as Vector's `multiline`):
//! - A line matching `start_pattern` while nothing is pending starts a record; any other
//!   line with nothing pending is a record by itself.
//! - While a record is pending, `condition_pattern` and `mode` decide about the next line:
//!   `continue_through` (default): a matching line joins, a non-matching one ends the record
//!   and is considered afresh; `continue_past`: a matching line joins, the first
//!   non-matching one joins and ends the record; `halt_before`: a non-matching line joins, a
//!   matching one ends the record and is considered afresh; `halt_with`: a non-matching
//!   line joins, the first matching one joins and ends the record.
//! - Without `condition_pattern`, a pending record takes every line that does not match
//!   `start_pattern` (the common "a record starts with a timestamp" rule).
//! - A pending record is flushed after `timeout_ms` without a new line, and at the end of
//!   a file that is let go. Records are capped at `max_line_bytes` (the rest is cut).
//!
//! Owns: the decision and the joined text, with the byte range the record covers (so the
//! tailer never checkpoints past a record still being assembled). Never: reads files.

use std::time::{Duration, Instant};

use regex::Regex;
use serde::Deserialize;

use crate::event::Timestamp;

/// How `condition_pattern` is applied to the lines after the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MultilineMode {
    /// Matching lines join; the first non-matching line starts over.
    #[default]
    ContinueThrough,
    /// Matching lines join; the first non-matching line joins and ends the record.
    ContinuePast,
    /// Non-matching lines join; the first matching line starts over.
    HaltBefore,
    /// Non-matching lines join; the first matching line joins and ends the record.
    HaltWith,
}

/// `multiline:` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// Regex matching the first line of a record (e.g. `^\d{4}-\d{2}-\d{2}` or `^\S`).
    pub start_pattern: String,
    /// Regex deciding about the following lines, per `mode`. Unset: a line continues the
    /// record unless it matches `start_pattern`.
    #[serde(default)]
    pub condition_pattern: Option<String>,
    /// How `condition_pattern` applies: `continue_through` (default), `continue_past`,
    /// `halt_before`, `halt_with`.
    #[serde(default)]
    pub mode: MultilineMode,
    /// Flush a pending record after this long without a new line, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_timeout_ms() -> u64 {
    1000
}

impl MultilineConfig {
    /// Compiles the patterns.
    pub fn build(&self) -> anyhow::Result<MultilineRule> {
        use anyhow::Context as _;
        let start = Regex::new(&self.start_pattern).context("multiline.start_pattern")?;
        let condition = match &self.condition_pattern {
            Some(pattern) => Some(Regex::new(pattern).context("multiline.condition_pattern")?),
            None => None,
        };
        crate::bounds::check(
            "multiline.timeout_ms",
            self.timeout_ms,
            1..=crate::bounds::MAX_MS,
        )?;
        Ok(MultilineRule {
            start,
            condition,
            mode: self.mode,
            timeout: Duration::from_millis(self.timeout_ms),
        })
    }
}

/// Compiled multiline settings.
#[derive(Debug, Clone)]
pub struct MultilineRule {
    start: Regex,
    condition: Option<Regex>,
    mode: MultilineMode,
    timeout: Duration,
}

/// One logical line (or record) and the bytes of the file it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// The text.
    pub text: String,
    /// Offset of its first byte in the file.
    pub start: u64,
    /// Offset just past its last line.
    pub end: u64,
    /// Time decoded from the line (CRI, docker), if any.
    pub timestamp: Option<Timestamp>,
    /// `stdout` / `stderr` for container logs.
    pub stream: Option<&'static str>,
    /// The text was cut at `max_line_bytes`.
    pub truncated: bool,
}

/// What to do with the next line while a record is pending.
enum Decision {
    /// Append it and keep going.
    Join,
    /// Append it and end the record.
    JoinAndEnd,
    /// End the record; the line is considered afresh.
    EndBefore,
}

/// Aggregation state of one file.
#[derive(Debug)]
pub struct Multiline {
    rule: MultilineRule,
    max_bytes: usize,
    pending: Option<(Piece, Instant)>,
}

impl Multiline {
    /// A new aggregator with records capped at `max_bytes`.
    pub fn new(rule: MultilineRule, max_bytes: usize) -> Self {
        Multiline {
            rule,
            max_bytes,
            pending: None,
        }
    }

    /// Where the pending record starts (nothing at or after it may be checkpointed).
    pub fn pending_start(&self) -> Option<u64> {
        self.pending.as_ref().map(|(piece, _)| piece.start)
    }

    fn decide(&self, line: &str) -> Decision {
        let Some(condition) = &self.rule.condition else {
            return if self.rule.start.is_match(line) {
                Decision::EndBefore
            } else {
                Decision::Join
            };
        };
        let matched = condition.is_match(line);
        match (self.rule.mode, matched) {
            (MultilineMode::ContinueThrough, true) => Decision::Join,
            (MultilineMode::ContinueThrough, false) => Decision::EndBefore,
            (MultilineMode::ContinuePast, true) => Decision::Join,
            (MultilineMode::ContinuePast, false) => Decision::JoinAndEnd,
            (MultilineMode::HaltBefore, true) => Decision::EndBefore,
            (MultilineMode::HaltBefore, false) => Decision::Join,
            (MultilineMode::HaltWith, true) => Decision::JoinAndEnd,
            (MultilineMode::HaltWith, false) => Decision::Join,
        }
    }

    /// Takes the next line; completed records go to `out`.
    pub fn push(&mut self, piece: Piece, now: Instant, out: &mut Vec<Piece>) {
        if self.pending.is_some() {
            match self.decide(&piece.text) {
                Decision::Join => {
                    self.join(piece, now);
                    return;
                }
                Decision::JoinAndEnd => {
                    self.join(piece, now);
                    self.flush(out);
                    return;
                }
                Decision::EndBefore => self.flush(out),
            }
        }
        if self.rule.start.is_match(&piece.text) {
            self.pending = Some((piece, now));
        } else {
            out.push(piece);
        }
    }

    fn join(&mut self, piece: Piece, now: Instant) {
        let Some((record, last)) = self.pending.as_mut() else {
            return;
        };
        *last = now;
        record.end = piece.end;
        record.truncated |= piece.truncated;
        let room = self.max_bytes.saturating_sub(record.text.len());
        if room == 0 {
            record.truncated = true;
            return;
        }
        record.text.push('\n');
        let room = room - 1;
        if piece.text.len() <= room {
            record.text.push_str(&piece.text);
        } else {
            let cut = floor_char_boundary(&piece.text, room);
            record.text.push_str(&piece.text[..cut]);
            record.truncated = true;
        }
    }

    /// Emits the pending record if it has waited longer than the timeout.
    pub fn flush_expired(&mut self, now: Instant, out: &mut Vec<Piece>) {
        if let Some((_, last)) = &self.pending {
            if now.duration_since(*last) >= self.rule.timeout {
                self.flush(out);
            }
        }
    }

    /// Emits the pending record now.
    pub fn flush(&mut self, out: &mut Vec<Piece>) {
        if let Some((record, _)) = self.pending.take() {
            out.push(record);
        }
    }
}

/// The largest char boundary `<= index` (str::floor_char_boundary is not stable yet).
pub fn floor_char_boundary(text: &str, index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    let mut at = index;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(config: &str, lines: &[&str], expected: &[&str]) {
        let config: MultilineConfig = serde_json::from_str(config).unwrap();
        let mut multiline = Multiline::new(config.build().unwrap(), 1 << 20);
        let now = Instant::now();
        let mut out = Vec::new();
        let mut offset = 0;
        for line in lines {
            let piece = Piece {
                text: (*line).into(),
                start: offset,
                end: offset + line.len() as u64 + 1,
                timestamp: None,
                stream: None,
                truncated: false,
            };
            offset = piece.end;
            multiline.push(piece, now, &mut out);
        }
        multiline.flush(&mut out);
        let got: Vec<&str> = out.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(got, expected);
        for pair in out.windows(2) {
            assert_eq!(
                pair[0].end, pair[1].start,
                "records cover the file without gaps"
            );
        }
    }

    #[test]
    fn java_stack_trace() {
        check(
            r#"{"start_pattern":"^\\d{4}-"}"#,
            &[
                "2024-01-01 ERROR boom",
                "java.lang.IllegalStateException: x",
                "\tat a.b(C.java:1)",
                "\tat d.e(F.java:2)",
                "2024-01-01 INFO fine",
            ],
            &[
                "2024-01-01 ERROR boom\njava.lang.IllegalStateException: x\n\tat a.b(C.java:1)\n\tat d.e(F.java:2)",
                "2024-01-01 INFO fine",
            ],
        );
    }

    #[test]
    fn python_traceback_continue_through() {
        check(
            r#"{"start_pattern":"^Traceback","condition_pattern":"^[\\s]","mode":"continue_through"}"#,
            &[
                "Traceback (most recent call last):",
                "  File \"x.py\", line 1",
                "    boom()",
                "ValueError: bad",
                "next",
            ],
            &[
                "Traceback (most recent call last):\n  File \"x.py\", line 1\n    boom()",
                "ValueError: bad",
                "next",
            ],
        );
        check(
            r#"{"start_pattern":"^Traceback","condition_pattern":"^[\\s]","mode":"continue_past"}"#,
            &[
                "Traceback (most recent call last):",
                "  File \"x.py\", line 1",
                "ValueError: bad",
                "next",
            ],
            &[
                "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad",
                "next",
            ],
        );
    }

    #[test]
    fn halt_modes() {
        check(
            r#"{"start_pattern":".","condition_pattern":";$","mode":"halt_with"}"#,
            &["select *", "from t", "where x;", "select 1;"],
            &["select *\nfrom t\nwhere x;", "select 1;"],
        );
        check(
            r#"{"start_pattern":"^BEGIN","condition_pattern":"^BEGIN","mode":"halt_before"}"#,
            &["BEGIN a", "b", "BEGIN c", "d"],
            &["BEGIN a\nb", "BEGIN c\nd"],
        );
    }

    #[test]
    fn lines_without_start_stand_alone() {
        check(
            r#"{"start_pattern":"^START"}"#,
            &["x", "y", "START", "z"],
            &["x", "y", "START\nz"],
        );
    }

    #[test]
    fn timeout_flushes() {
        let config: MultilineConfig =
            serde_json::from_str(r#"{"start_pattern":"^S","timeout_ms":10}"#).unwrap();
        let mut multiline = Multiline::new(config.build().unwrap(), 100);
        let now = Instant::now();
        let mut out = Vec::new();
        let piece = Piece {
            text: "S1".into(),
            start: 0,
            end: 3,
            timestamp: None,
            stream: None,
            truncated: false,
        };
        multiline.push(piece, now, &mut out);
        assert_eq!(multiline.pending_start(), Some(0));
        multiline.flush_expired(now + Duration::from_millis(5), &mut out);
        assert!(out.is_empty());
        multiline.flush_expired(now + Duration::from_millis(10), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(multiline.pending_start(), None);
    }

    #[test]
    fn records_are_capped() {
        let config: MultilineConfig = serde_json::from_str(r#"{"start_pattern":"^S"}"#).unwrap();
        let mut multiline = Multiline::new(config.build().unwrap(), 8);
        let now = Instant::now();
        let mut out = Vec::new();
        for (i, text) in ["S123", " 4567", " 89"].iter().enumerate() {
            let piece = Piece {
                text: (*text).into(),
                start: i as u64 * 10,
                end: i as u64 * 10 + 10,
                timestamp: None,
                stream: None,
                truncated: false,
            };
            multiline.push(piece, now, &mut out);
        }
        multiline.flush(&mut out);
        assert_eq!(out[0].text, "S123\n 45");
        assert!(out[0].truncated);
        assert_eq!(out[0].end, 30);
    }
}
