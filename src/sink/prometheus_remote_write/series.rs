//! Metric events → Prometheus series: name and label sanitising, external labels, histogram
//! expansion, and the per-series memory that keeps samples in time order and expires series
//! that stopped changing.
//!
//! Mapping (what a Prometheus client library would expose for the same metric):
//! - counter `c` → `c`; gauge `g` → `g` (values as they are);
//! - histogram `h` → `h_bucket{le="<bound>"}` per bound, `h_bucket{le="+Inf"}` (= count),
//!   `h_sum`, `h_count`.
//!
//! Names are sanitised to `[a-zA-Z_:][a-zA-Z0-9_:]*` and label names to
//! `[a-zA-Z_][a-zA-Z0-9_]*` (any other character becomes `_`, a leading digit gets a `_`
//! prefix); labels with empty values are left out (Prometheus treats them as absent). External
//! labels are added only where the event has no label of that name (as in Prometheus, they
//! never override a series' own labels). Labels are sorted by name, byte-wise, as the
//! remote-write spec requires: `__name__` comes first for every lowercase label name.
//!
//! Owns: the mapping and the per-series state. Never: does I/O or knows the wire encoding.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::event::{Metric, MetricValue};

/// Replaces characters not allowed in a metric name; `None` for an empty name.
pub fn sanitize_metric_name(name: &str) -> Option<Cow<'_, str>> {
    sanitize(name, true)
}

/// Replaces characters not allowed in a label name; `None` for an empty name.
pub fn sanitize_label_name(name: &str) -> Option<Cow<'_, str>> {
    sanitize(name, false)
}

fn sanitize(name: &str, colon_ok: bool) -> Option<Cow<'_, str>> {
    if name.is_empty() {
        return None;
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || (colon_ok && c == ':');
    let leading_digit = name.starts_with(|c: char| c.is_ascii_digit());
    if !leading_digit && name.chars().all(allowed) {
        return Some(Cow::Borrowed(name));
    }
    let mut out = String::with_capacity(name.len() + 1);
    if leading_digit {
        out.push('_');
    }
    out.extend(name.chars().map(|c| if allowed(c) { c } else { '_' }));
    Some(Cow::Owned(out))
}

/// A metric event's series identity: sanitised name and labels (external labels merged in),
/// sorted by label name. Borrows from the event and the settings (no copy per event unless
/// a name needs sanitising).
#[derive(Debug, Clone, PartialEq)]
pub struct Identity<'a> {
    /// The sanitised metric name (before any histogram suffix).
    pub name: Cow<'a, str>,
    /// Sanitised labels, sorted by name, no duplicates, no `__name__`.
    pub labels: Vec<(Cow<'a, str>, &'a str)>,
}

impl<'a> Identity<'a> {
    /// The identity of `metric`, or `None` when its name is empty. `external` must be
    /// sorted by name and already valid.
    pub fn of(metric: &'a Metric, external: &'a [(String, String)]) -> Option<Identity<'a>> {
        let name = sanitize_metric_name(&metric.name)?;
        let histogram = matches!(metric.value, MetricValue::Histogram { .. });
        let mut labels: Vec<(Cow<'a, str>, &'a str)> = Vec::with_capacity(metric.labels.len() + 2);
        for (key, value) in &metric.labels {
            if value.is_empty() {
                continue;
            }
            let Some(key) = sanitize_label_name(key) else {
                continue;
            };
            // `__name__` is the metric name; `le` belongs to the bucket series.
            if key == "__name__" || (histogram && key == "le") {
                continue;
            }
            labels.push((key, value.as_str()));
        }
        // Stable sort, then keep the first of names that sanitised to the same text.
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        labels.dedup_by(|later, earlier| later.0 == earlier.0);
        for (key, value) in external {
            if let Err(at) = labels.binary_search_by(|(k, _)| k.as_ref().cmp(key.as_str())) {
                labels.insert(at, (Cow::Borrowed(key.as_str()), value.as_str()));
            }
        }
        Some(Identity { name, labels })
    }

    /// The identity's 128-bit hash (XXH3-128 over the name and each label name and value,
    /// each with its length in front, so no label value, which may hold any character,
    /// can make two label sets read alike). The per-series table and a batch's grouping
    /// key on it instead of a string per event: two different series share a hash with a
    /// chance of about n²/2¹²⁹ for n series (below 10⁻¹⁸ for ten million).
    pub fn hash(&self) -> u128 {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for text in std::iter::once(self.name.as_ref()).chain(
            self.labels
                .iter()
                .flat_map(|(name, value)| [name.as_ref(), *value]),
        ) {
            hasher.update(&(text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
        }
        hasher.digest128()
    }

    /// The full, sorted label set of one expanded series (`suffix` appended to the name,
    /// `le` added for buckets).
    pub fn series_labels(&self, suffix: &str, le: Option<&str>) -> Vec<(String, String)> {
        let mut labels = Vec::with_capacity(self.labels.len() + 2);
        labels.push(("__name__".to_owned(), format!("{}{suffix}", self.name)));
        labels.extend(
            self.labels
                .iter()
                .map(|(k, v)| (k.to_string(), (*v).to_owned())),
        );
        if let Some(le) = le {
            labels.push(("le".to_owned(), le.to_owned()));
        }
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        labels
    }
}

/// One expanded series of a metric event: name suffix, `le` bound, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Expanded {
    /// `""`, `_bucket`, `_sum` or `_count`.
    pub suffix: &'static str,
    /// The bucket bound, as Prometheus client libraries print it (`0.5`, `1000`, `+Inf`).
    pub le: Option<String>,
    /// The sample value.
    pub value: f64,
}

/// The series a metric value becomes, in a fixed order (see [`series_at`]).
pub fn expand(value: &MetricValue) -> Vec<Expanded> {
    (0..sample_count(value))
        .map(|position| {
            let (suffix, bound) = series_at(value, position);
            Expanded {
                suffix,
                le: bound.map(format_bound),
                value: value_at(value, position),
            }
        })
        .collect()
}

/// Name suffix and `le` bound of expanded series `position` (`0..sample_count`): a
/// histogram's buckets in order, then `+Inf`, `_sum`, `_count`.
pub fn series_at(value: &MetricValue, position: usize) -> (&'static str, Option<f64>) {
    match value {
        MetricValue::Counter(_) | MetricValue::Gauge(_) => ("", None),
        MetricValue::Histogram { buckets, .. } => match position.checked_sub(buckets.len()) {
            None => ("_bucket", Some(buckets[position].0)),
            Some(0) => ("_bucket", Some(f64::INFINITY)),
            Some(1) => ("_sum", None),
            Some(_) => ("_count", None),
        },
    }
}

/// The sample value of expanded series `position` (`0..sample_count`).
pub fn value_at(value: &MetricValue, position: usize) -> f64 {
    match value {
        MetricValue::Counter(v) | MetricValue::Gauge(v) => *v,
        MetricValue::Histogram {
            buckets,
            sum,
            count,
        } => match position.checked_sub(buckets.len()) {
            None => buckets[position].1 as f64,
            Some(1) => *sum,
            Some(_) => *count as f64,
        },
    }
}

/// True when two values expand into the same series (same kind of layout, same bounds).
pub fn same_layout(a: &MetricValue, b: &MetricValue) -> bool {
    match (a, b) {
        (MetricValue::Histogram { buckets: x, .. }, MetricValue::Histogram { buckets: y, .. }) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.0.to_bits() == q.0.to_bits())
        }
        (MetricValue::Histogram { .. }, _) | (_, MetricValue::Histogram { .. }) => false,
        _ => true,
    }
}

/// How many samples a metric value becomes.
pub fn sample_count(value: &MetricValue) -> usize {
    match value {
        MetricValue::Counter(_) | MetricValue::Gauge(_) => 1,
        MetricValue::Histogram { buckets, .. } => buckets.len() + 3,
    }
}

/// Go's `strconv.FormatFloat(b, 'f', -1, 64)`, which client_golang uses for `le`.
pub fn format_bound(bound: f64) -> String {
    if bound.is_infinite() {
        return if bound > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if bound.is_nan() {
        return "NaN".to_owned();
    }
    format!("{bound}")
}

/// A fingerprint of a metric value, to tell whether it changed.
pub fn fingerprint(value: &MetricValue) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |bits: u64| {
        hash ^= bits;
        hash = hash.wrapping_mul(0x0100_0000_01b3).rotate_left(17);
    };
    match value {
        MetricValue::Counter(v) => mix(v.to_bits()),
        MetricValue::Gauge(v) => {
            mix(1);
            mix(v.to_bits());
        }
        MetricValue::Histogram {
            buckets,
            sum,
            count,
        } => {
            mix(2);
            for (bound, n) in buckets {
                mix(bound.to_bits());
                mix(*n);
            }
            mix(sum.to_bits());
            mix(*count);
        }
    }
    hash
}

/// What to do with one metric event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Send its samples.
    Send,
    /// The series just expired: send one staleness marker per expanded series instead.
    SendStale,
    /// Leave it out, counted under this reason (`out_of_order`, `expired`).
    Drop(&'static str),
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    fingerprint: u64,
    last_change_ms: i64,
    last_sent_ms: i64,
    last_seen_ms: i64,
    stale: bool,
}

/// Per-series memory of one lane: the last timestamp sent (samples only move forward) and
/// when the value last changed (for expiry).
///
/// "Updated" means the value changed: `log_to_metric` and `internal_metrics` re-emit every
/// series' running total at each interval, so "an event was seen" would never expire
/// anything. A series whose value has not changed for `expire_after_ms` gets one
/// staleness marker (so queries stop showing it at once, not 5 minutes later) and is then
/// left out until its value changes again.
#[derive(Debug, Clone)]
pub struct SeriesTable {
    expire_after_ms: Option<i64>,
    slots: HashMap<u128, Slot>,
    last_sweep_ms: i64,
}

/// Forget a series not seen for this long (ms), at the least.
const FORGET_AFTER_MS: i64 = 10 * 60 * 1000;

impl SeriesTable {
    /// A table that expires series unchanged for `expire_after_ms` (`None`: never).
    pub fn new(expire_after_ms: Option<i64>) -> Self {
        SeriesTable {
            expire_after_ms,
            slots: HashMap::new(),
            last_sweep_ms: i64::MIN,
        }
    }

    /// Decides the fate of an event of series `key` (its [`Identity::hash`]) at
    /// `timestamp_ms` with a value of `fingerprint`. Events of one series must come in
    /// time order.
    pub fn admit(&mut self, key: u128, timestamp_ms: i64, fingerprint: u64) -> Admit {
        self.sweep(timestamp_ms);
        let Some(slot) = self.slots.get_mut(&key) else {
            self.slots.insert(
                key,
                Slot {
                    fingerprint,
                    last_change_ms: timestamp_ms,
                    last_sent_ms: timestamp_ms,
                    last_seen_ms: timestamp_ms,
                    stale: false,
                },
            );
            return Admit::Send;
        };
        // Prometheus refuses a whole request over one sample not newer than the series'
        // last one (400 out of order / duplicate): such samples are left out here.
        if timestamp_ms <= slot.last_sent_ms {
            return Admit::Drop("out_of_order");
        }
        slot.last_seen_ms = timestamp_ms;
        if slot.fingerprint != fingerprint {
            slot.fingerprint = fingerprint;
            slot.last_change_ms = timestamp_ms;
            slot.stale = false;
        } else if self
            .expire_after_ms
            .is_some_and(|after| timestamp_ms.saturating_sub(slot.last_change_ms) >= after)
        {
            if slot.stale {
                return Admit::Drop("expired");
            }
            slot.stale = true;
            slot.last_sent_ms = timestamp_ms;
            return Admit::SendStale;
        }
        slot.last_sent_ms = timestamp_ms;
        Admit::Send
    }

    /// Series currently remembered.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no series is remembered.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Once a minute (of sample time), forgets series not seen for a while, so label sets
    /// that went away do not hold memory.
    fn sweep(&mut self, now_ms: i64) {
        if now_ms < self.last_sweep_ms.saturating_add(60_000) {
            return;
        }
        self.last_sweep_ms = now_ms;
        let keep_ms = self
            .expire_after_ms
            .map_or(FORGET_AFTER_MS, |after| after.saturating_mul(2))
            .max(FORGET_AFTER_MS);
        self.slots
            .retain(|_, slot| now_ms.saturating_sub(slot.last_seen_ms) < keep_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Timestamp;

    fn metric(name: &str, labels: &[(&str, &str)], value: MetricValue) -> Metric {
        Metric {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            value,
            timestamp: Timestamp(0),
        }
    }

    /// (name, labels, external) → rendered series `name{k="v",...}` per expanded series.
    fn check(
        name: &str,
        labels: &[(&str, &str)],
        value: MetricValue,
        external: &[(&str, &str)],
        expected: &[&str],
    ) {
        let external: Vec<(String, String)> = external
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let metric = metric(name, labels, value);
        let got: Vec<String> = match Identity::of(&metric, &external) {
            None => Vec::new(),
            Some(identity) => expand(&metric.value)
                .iter()
                .map(|e| {
                    let labels = identity.series_labels(e.suffix, e.le.as_deref());
                    let pairs: Vec<String> =
                        labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                    format!("{{{}}} {}", pairs.join(","), e.value)
                })
                .collect(),
        };
        assert_eq!(got, expected, "{name} {labels:?}");
    }

    #[test]
    fn keys_of_different_label_sets_differ_whatever_the_values_hold() {
        let key = |labels: &[(&str, &str)]| {
            let metric = metric("m", labels, MetricValue::Gauge(1.0));
            Identity::of(&metric, &[]).unwrap().hash()
        };
        // With separators instead of lengths these two read alike.
        assert_ne!(
            key(&[("a", "x\u{0}b\u{1}y")]),
            key(&[("a", "x"), ("b", "y")])
        );
        assert_ne!(key(&[("a", "1:b")]), key(&[("a", ""), ("b", "")]));
        assert_eq!(
            key(&[("b", "2"), ("a", "1")]),
            key(&[("a", "1"), ("b", "2")])
        );
    }

    #[test]
    fn maps_metrics_to_series() {
        check(
            "http_requests_total",
            &[("status", "200"), ("method", "GET")],
            MetricValue::Counter(3.0),
            &[],
            &[r#"{__name__="http_requests_total",method="GET",status="200"} 3"#],
        );
        check(
            "temp",
            &[("host", "")],
            MetricValue::Gauge(-1.5),
            &[],
            &[r#"{__name__="temp"} -1.5"#],
        );
        check(
            "http.bytes-out",
            &[("a-b", "x"), ("1x", "y"), ("__name__", "evil")],
            MetricValue::Counter(1.0),
            &[],
            &[r#"{_1x="y",__name__="http_bytes_out",a_b="x"} 1"#],
        );
        check(
            "9lives:total",
            &[("a.b", "first"), ("a_b", "second")],
            MetricValue::Counter(1.0),
            &[],
            &[r#"{__name__="_9lives:total",a_b="first"} 1"#],
        );
        check("", &[], MetricValue::Counter(1.0), &[], &[]);
        // External labels never override the series' own.
        check(
            "up",
            &[("job", "own")],
            MetricValue::Gauge(1.0),
            &[("job", "ext"), ("region", "eu")],
            &[r#"{__name__="up",job="own",region="eu"} 1"#],
        );
        // Upper-case names sort before `__name__` (byte order, as the spec asks).
        check(
            "up",
            &[("Zone", "a")],
            MetricValue::Gauge(1.0),
            &[],
            &[r#"{Zone="a",__name__="up"} 1"#],
        );
        check(
            "rt",
            &[("path", "/"), ("le", "bogus")],
            MetricValue::Histogram {
                buckets: vec![(0.5, 1), (1000.0, 3)],
                sum: 12.5,
                count: 4,
            },
            &[],
            &[
                r#"{__name__="rt_bucket",le="0.5",path="/"} 1"#,
                r#"{__name__="rt_bucket",le="1000",path="/"} 3"#,
                r#"{__name__="rt_bucket",le="+Inf",path="/"} 4"#,
                r#"{__name__="rt_sum",path="/"} 12.5"#,
                r#"{__name__="rt_count",path="/"} 4"#,
            ],
        );
    }

    #[test]
    fn sample_count_matches_expansion() {
        for value in [
            MetricValue::Counter(1.0),
            MetricValue::Gauge(1.0),
            MetricValue::Histogram {
                buckets: vec![(1.0, 0), (2.0, 0), (3.0, 1)],
                sum: 3.0,
                count: 1,
            },
        ] {
            assert_eq!(sample_count(&value), expand(&value).len());
        }
    }

    /// (timestamp ms, fingerprint) steps of one series → admits.
    fn check_table(expire_after_ms: Option<i64>, steps: &[(i64, u64)], expected: &[Admit]) {
        let mut table = SeriesTable::new(expire_after_ms);
        let got: Vec<Admit> = steps
            .iter()
            .map(|(ts, fp)| table.admit(1, *ts, *fp))
            .collect();
        assert_eq!(got, expected, "{steps:?}");
    }

    #[test]
    fn orders_and_expires_series() {
        use Admit::*;
        check_table(
            None,
            &[(10, 1), (20, 1), (20, 2), (15, 3), (30, 3)],
            &[Send, Send, Drop("out_of_order"), Drop("out_of_order"), Send],
        );
        check_table(
            Some(100),
            &[
                (0, 1),
                (50, 1),
                (99, 1),
                (100, 1),
                (150, 1),
                (160, 2),
                (170, 2),
            ],
            &[Send, Send, Send, SendStale, Drop("expired"), Send, Send],
        );
        check_table(
            Some(100),
            &[(0, 1), (60, 2), (159, 2), (160, 2)],
            &[Send, Send, Send, SendStale],
        );
    }

    #[test]
    fn forgets_series_gone_for_long() {
        let mut table = SeriesTable::new(Some(1000));
        table.admit(1, 0, 1);
        table.admit(2, 0, 1);
        table.admit(2, FORGET_AFTER_MS - 1, 1);
        assert_eq!(table.len(), 2);
        table.admit(2, FORGET_AFTER_MS + 60_000, 2);
        assert_eq!(table.len(), 1);
    }
}
