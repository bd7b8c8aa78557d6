//! What every file of one source reads with: the oversize rule, the line format, multiline,
//! batch bounds and the read-time journal ([`ReadSettings`]), and the source's read
//! counters ([`ReadCounters`]).
//!
//! Owns: those types and the counters' names. Never: reads a file.

use super::super::multiline::MultilineRule;
use super::super::stamps::StampJournal;
use crate::telemetry::{ComponentMetrics, Counter};

/// What to do with a line longer than `max_line_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Oversize {
    /// Keep the first `max_line_bytes` bytes (counted).
    #[default]
    Truncate,
    /// Drop the line (counted).
    Drop,
}

/// The line format of the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineFormat {
    /// Plain text lines.
    #[default]
    None,
    /// Kubernetes CRI (containerd, CRI-O) lines, partial lines reassembled.
    Cri,
    /// Docker json-file lines, partial lines reassembled.
    Docker,
}

/// Settings every file of one source shares.
#[derive(Debug)]
pub struct ReadSettings {
    /// Longest line kept, in bytes.
    pub max_line_bytes: usize,
    /// Truncate or drop longer lines.
    pub oversize: Oversize,
    /// Plain, CRI or docker.
    pub format: LineFormat,
    /// Multiline rule, if any.
    pub multiline: Option<MultilineRule>,
    /// Field for the line's byte offset, if any.
    pub offset_field: Option<String>,
    /// Most lines per batch (a batch may pass it by one read chunk).
    pub batch_lines: usize,
    /// Most bytes read per batch and per turn.
    pub batch_bytes: usize,
    /// Where each batch's read times are kept, so a replay gets the same ones.
    pub stamps: StampJournal,
}

/// Counters of one source.
#[derive(Clone, Debug)]
pub struct ReadCounters {
    /// Bytes read from files.
    pub bytes_read: Counter,
    /// Lines read (physical lines).
    pub lines_read: Counter,
    /// Lines cut at `max_line_bytes`.
    pub lines_truncated: Counter,
    /// Lines dropped for being longer than `max_line_bytes`.
    pub lines_dropped: Counter,
    /// Lines with invalid UTF-8 (kept, with U+FFFD).
    pub invalid_utf8: Counter,
    /// CRI / docker lines that did not parse (kept as plain text).
    pub parse_errors: Counter,
    /// Events produced.
    pub events_in: Counter,
}

impl ReadCounters {
    /// Registers the counters for a source.
    pub fn new(metrics: &ComponentMetrics) -> Self {
        ReadCounters {
            bytes_read: metrics.counter(
                "sluice_file_bytes_read_total",
                "Bytes read from files.",
                &[],
            ),
            lines_read: metrics.counter(
                "sluice_file_lines_read_total",
                "Lines read from files.",
                &[],
            ),
            lines_truncated: metrics.counter(
                "sluice_file_lines_truncated_total",
                "Lines cut at max_line_bytes.",
                &[],
            ),
            lines_dropped: metrics.dropped("line_too_long"),
            invalid_utf8: metrics.counter(
                "sluice_file_invalid_utf8_total",
                "Lines with invalid UTF-8, kept with replacement characters.",
                &[],
            ),
            parse_errors: metrics.counter(
                "sluice_file_format_errors_total",
                "CRI or docker lines that did not parse, kept as plain text.",
                &[],
            ),
            events_in: metrics.events_in.clone(),
        }
    }
}
