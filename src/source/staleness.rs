//! Staleness for the metrics sources that re-send every series each interval
//! (`host_metrics`, `prometheus_scrape`): the series one collection or scrape produced,
//! and a Prometheus staleness marker for each of them the next one does not produce, as a
//! Prometheus scrape marks a vanished series.
//!
//! A [`SeriesSet`] keeps every series' name and labels in one byte buffer (each string
//! length-prefixed, so any bytes compare exactly) and their positions in one sorted
//! vector: two allocations for a set that lives between collections, instead of a few
//! for each series (a host's 250 series, a scrape's thousands); comparing two sets is one
//! merge of the sorted keys.
//!
//! Owns: remembering series between collections and making the markers. Never: hashes
//! series (two series never compare equal unless their names and labels are).

use std::cmp::Ordering;

use crate::event::{Metric, MetricValue, Timestamp};

/// The series (name and labels) of one collection, sorted and without duplicates.
#[derive(Debug, Default)]
pub struct SeriesSet {
    /// Each series' name, then each label's name and value, each a little-endian `u32`
    /// length and the bytes.
    bytes: Vec<u8>,
    /// Each series' range of `bytes`, sorted by those bytes.
    keys: Vec<(usize, usize)>,
}

impl SeriesSet {
    /// The series of `metrics`, sized as `like` (the previous set) was.
    pub fn of(metrics: &[Metric], like: &SeriesSet) -> Self {
        let mut set = SeriesSet {
            bytes: Vec::with_capacity(like.bytes.len()),
            keys: Vec::with_capacity(metrics.len()),
        };
        for metric in metrics {
            let start = set.bytes.len();
            put(&mut set.bytes, &metric.name);
            for (name, value) in &metric.labels {
                put(&mut set.bytes, name);
                put(&mut set.bytes, value);
            }
            set.keys.push((start, set.bytes.len()));
        }
        let bytes = &set.bytes;
        set.keys
            .sort_unstable_by(|a, b| bytes[a.0..a.1].cmp(&bytes[b.0..b.1]));
        set.keys.dedup_by(|a, b| bytes[a.0..a.1] == bytes[b.0..b.1]);
        set
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn key(&self, index: usize) -> &[u8] {
        let (start, end) = self.keys[index];
        &self.bytes[start..end]
    }

    /// Pushes onto `out` a staleness marker at `timestamp` for each series of `self` (the
    /// previous collection's) that `current` does not have; returns how many series of
    /// `current` are new (Prometheus' `scrape_series_added`).
    pub fn mark_gone(
        &self,
        current: &SeriesSet,
        timestamp: Timestamp,
        out: &mut Vec<Metric>,
    ) -> usize {
        let (mut old, mut new, mut added) = (0, 0, 0);
        while old < self.len() || new < current.len() {
            let order = match (old < self.len(), new < current.len()) {
                (true, true) => self.key(old).cmp(current.key(new)),
                (true, false) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match order {
                Ordering::Less => {
                    out.push(marker(self.key(old), timestamp));
                    old += 1;
                }
                Ordering::Greater => {
                    added += 1;
                    new += 1;
                }
                Ordering::Equal => {
                    old += 1;
                    new += 1;
                }
            }
        }
        added
    }
}

fn put(bytes: &mut Vec<u8>, text: &str) {
    // A string over 4 GiB cannot be a metric or label name or value that got this far
    // (bodies and lines are limited far below); saturating keeps the encoding total.
    let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&text.as_bytes()[..len as usize]);
}

/// The next string of a key, and the rest.
fn take(key: &[u8]) -> Option<(String, &[u8])> {
    let (len, rest) = key.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    let (text, rest) = rest.split_at_checked(len)?;
    Some((String::from_utf8_lossy(text).into_owned(), rest))
}

/// The staleness marker of the series `key` encodes.
fn marker(key: &[u8], timestamp: Timestamp) -> Metric {
    let (name, mut rest) = take(key).unwrap_or_default();
    let mut labels = Vec::new();
    while let Some((label, after)) = take(rest) {
        let Some((value, after)) = take(after) else {
            break;
        };
        labels.push((label, value));
        rest = after;
    }
    stale_marker(&name, &labels, timestamp)
}

/// A Prometheus staleness marker for a series that disappeared.
pub fn stale_marker(name: &str, labels: &[(String, String)], timestamp: Timestamp) -> Metric {
    Metric {
        name: name.to_owned(),
        labels: labels.to_vec(),
        value: MetricValue::Gauge(crate::sink::prometheus_remote_write::proto::stale_nan()),
        timestamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(name: &str, labels: &[(&str, &str)]) -> Metric {
        Metric {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value: MetricValue::Gauge(1.0),
            timestamp: Timestamp(0),
        }
    }

    #[test]
    fn series_gone_get_one_marker_each_and_new_ones_are_counted() {
        let before = [
            metric("node_load1", &[]),
            metric("node_filesystem_size_bytes", &[("mountpoint", "/")]),
            metric("node_filesystem_size_bytes", &[("mountpoint", "/mnt")]),
            // Same bytes when concatenated: the length prefixes keep them apart.
            metric("a", &[("bc", "d")]),
            // Any bytes in a value, duplicates counted once.
            metric("x", &[("v", "\0\u{1}é\n")]),
            metric("x", &[("v", "\0\u{1}é\n")]),
        ];
        let after = [
            metric("node_load1", &[]),
            metric("node_filesystem_size_bytes", &[("mountpoint", "/")]),
            metric("ab", &[("c", "d")]),
            metric("node_load5", &[]),
        ];
        let previous = SeriesSet::of(&before, &SeriesSet::default());
        assert_eq!(previous.len(), 5);
        let current = SeriesSet::of(&after, &previous);
        let mut out = Vec::new();
        let added = previous.mark_gone(&current, Timestamp(7), &mut out);
        assert_eq!(added, 2);
        let mut gone: Vec<(String, Vec<(String, String)>)> = out
            .iter()
            .map(|m| (m.name.clone(), m.labels.clone()))
            .collect();
        gone.sort();
        let expected = [
            metric("a", &[("bc", "d")]),
            metric("node_filesystem_size_bytes", &[("mountpoint", "/mnt")]),
            metric("x", &[("v", "\0\u{1}é\n")]),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|m| (m.name.clone(), m.labels.clone()))
            .collect();
        assert_eq!(gone, expected);
        for m in &out {
            assert_eq!(m.timestamp, Timestamp(7));
            let MetricValue::Gauge(v) = m.value else {
                panic!("{m:?}")
            };
            assert_eq!(
                v.to_bits(),
                crate::sink::prometheus_remote_write::proto::stale_nan().to_bits()
            );
        }
        // Nothing gone, nothing new.
        let mut out = Vec::new();
        assert_eq!(current.mark_gone(&current, Timestamp(8), &mut out), 0);
        assert!(out.is_empty());
        // The first collection: everything new.
        assert_eq!(
            SeriesSet::default().mark_gone(&current, Timestamp(8), &mut out),
            4
        );
        assert!(out.is_empty());
    }
}
