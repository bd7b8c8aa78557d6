//! The file source's own metrics beyond the per-line counters: files watched and open,
//! rotations, deletions, truncations, lag, recovered parts and lost bytes by reason.
//!
//! Owns: their names and help texts. Never: decides when they change.

use crate::telemetry::{ComponentMetrics, Counter, Gauge};

/// Source-level metrics beyond the per-line counters.
pub(super) struct FileMetrics {
    pub(super) watched: Gauge,
    pub(super) open: Gauge,
    pub(super) rotations: Counter,
    pub(super) deletions: Counter,
    pub(super) truncations: Counter,
    pub(super) lag_total: Gauge,
    pub(super) lag_max: Gauge,
    pub(super) recovered: Counter,
    pub(super) lost_bytes: ComponentMetrics,
}

impl FileMetrics {
    /// Registers the file source's metrics with its component labels.
    pub(super) fn new(metrics: &ComponentMetrics) -> Self {
        FileMetrics {
            watched: metrics.gauge("sluice_file_watched", "Files matched and tracked.", &[]),
            open: metrics.gauge("sluice_file_open", "Files open for reading.", &[]),
            rotations: metrics.counter(
                "sluice_file_rotations_total",
                "Open files renamed away from every matched path (rotation); they are read to their end.",
                &[],
            ),
            deletions: metrics.counter(
                "sluice_file_deletions_total",
                "Open files deleted; what they hold is read to its end through the descriptor.",
                &[],
            ),
            truncations: metrics.counter(
                "sluice_file_truncations_total",
                "Files found truncated or rewritten, read again from the start.",
                &[],
            ),
            lag_total: metrics.gauge(
                "sluice_file_lag_bytes",
                "Bytes not yet read, summed over all tracked files.",
                &[],
            ),
            lag_max: metrics.gauge(
                "sluice_file_max_lag_bytes",
                "Bytes not yet read in the file furthest behind.",
                &[],
            ),
            recovered: metrics.counter(
                "sluice_file_recovered_total",
                "Unread parts of files found again after they left the globs (rotated, copied, compressed, moved to another device).",
                &[],
            ),
            lost_bytes: metrics.clone(),
        }
    }

    /// `sluice_file_lost_bytes_total{reason}`.
    pub(super) fn lost_bytes(&self, reason: &str) -> Counter {
        self.lost_bytes.counter(
            "sluice_file_lost_bytes_total",
            "Unread bytes of files that were gone (deleted, truncated) or unreadable (a rotation compressed with other than gzip) before they could be read, by reason.",
            &[("reason", reason)],
        )
    }
}
