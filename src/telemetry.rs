//! The agent's own metrics: counters, gauges and histograms with labels, rendered in the
//! Prometheus text exposition format for `/metrics` and read by the `internal_metrics`
//! source.
//!
//! Components get handles once, at build time, and update them with one atomic operation
//! on the hot path. The registry is process-wide so a reloaded pipeline keeps counting where
//! the old one stopped (Prometheus counters must not go backwards).
//!
//! Owns: the registry and the text format. Never: blocks on I/O or allocates per update.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// The current total.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (stored as an integer; use for counts, bytes, seconds).
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }
    /// Adds `delta` (may be negative).
    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram with fixed upper bounds.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramInner>);

#[derive(Debug)]
struct HistogramInner {
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    sum_bits: AtomicU64,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        Histogram(Arc::new(HistogramInner {
            bounds: bounds.to_vec(),
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }))
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let inner = &self.0;
        if let Some(i) = inner.bounds.iter().position(|bound| value <= *bound) {
            inner.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        inner.count.fetch_add(1, Ordering::Relaxed);
        let _ = inner
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// (cumulative buckets, sum, count).
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, f64, u64) {
        let inner = &self.0;
        let mut cumulative = 0;
        let buckets = inner
            .bounds
            .iter()
            .zip(&inner.counts)
            .map(|(bound, n)| {
                cumulative += n.load(Ordering::Relaxed);
                (*bound, cumulative)
            })
            .collect();
        let sum = f64::from_bits(inner.sum_bits.load(Ordering::Relaxed));
        (buckets, sum, inner.count.load(Ordering::Relaxed))
    }
}

/// Bucket bounds for batch sizes in events.
pub const EVENT_COUNT_BUCKETS: &[f64] = &[
    1.0, 10.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 50000.0,
];
/// Bucket bounds for sizes in bytes.
pub const BYTE_BUCKETS: &[f64] = &[
    1024.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
];

/// Label pairs of one series, sorted by name.
pub type Labels = Vec<(String, String)>;

/// Something that reads a value at render time (queue depths, ages).
type Probe = Arc<dyn Fn() -> f64 + Send + Sync>;

enum Series {
    Counter(Counter),
    Gauge(Gauge),
    Probe(Probe),
    Histogram(Histogram),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

struct Family {
    help: &'static str,
    kind: Kind,
    series: BTreeMap<Labels, Series>,
}

/// The process-wide registry.
#[derive(Default)]
pub struct Registry {
    families: Mutex<BTreeMap<String, Family>>,
}

/// The process-wide registry.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

fn to_labels(labels: &[(&str, &str)]) -> Labels {
    let mut out: Labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    out.sort();
    out
}

impl Registry {
    fn with_series<T>(
        &self,
        name: &str,
        help: &'static str,
        kind: Kind,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Series,
        pick: impl FnOnce(&Series) -> Option<T>,
    ) -> T {
        let mut families = self
            .families
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let family = families.entry(name.to_owned()).or_insert_with(|| Family {
            help,
            kind,
            series: BTreeMap::new(),
        });
        let series = family.series.entry(to_labels(labels)).or_insert_with(make);
        pick(series).unwrap_or_else(|| {
            panic!("internal metric {name} registered twice with different kinds")
        })
    }

    /// The counter `name{labels}`, created at zero on first use.
    pub fn counter(&self, name: &str, help: &'static str, labels: &[(&str, &str)]) -> Counter {
        self.with_series(
            name,
            help,
            Kind::Counter,
            labels,
            || Series::Counter(Counter::default()),
            |s| match s {
                Series::Counter(c) => Some(c.clone()),
                _ => None,
            },
        )
    }

    /// The gauge `name{labels}`, created at zero on first use.
    pub fn gauge(&self, name: &str, help: &'static str, labels: &[(&str, &str)]) -> Gauge {
        self.with_series(
            name,
            help,
            Kind::Gauge,
            labels,
            || Series::Gauge(Gauge::default()),
            |s| match s {
                Series::Gauge(g) => Some(g.clone()),
                _ => None,
            },
        )
    }

    /// A gauge whose value is read by `probe` at render time. Replaces an earlier probe.
    pub fn gauge_fn(
        &self,
        name: &str,
        help: &'static str,
        labels: &[(&str, &str)],
        probe: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        let mut families = self
            .families
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let family = families.entry(name.to_owned()).or_insert_with(|| Family {
            help,
            kind: Kind::Gauge,
            series: BTreeMap::new(),
        });
        family
            .series
            .insert(to_labels(labels), Series::Probe(Arc::new(probe)));
    }

    /// The histogram `name{labels}` with the given bucket bounds.
    pub fn histogram(
        &self,
        name: &str,
        help: &'static str,
        labels: &[(&str, &str)],
        bounds: &[f64],
    ) -> Histogram {
        self.with_series(
            name,
            help,
            Kind::Histogram,
            labels,
            || Series::Histogram(Histogram::new(bounds)),
            |s| match s {
                Series::Histogram(h) => Some(h.clone()),
                _ => None,
            },
        )
    }

    /// Every series as (name, labels, value) samples, histograms expanded the Prometheus way
    /// (`_bucket{le}`, `_sum`, `_count`). Used by the `internal_metrics` source.
    pub fn samples(&self) -> Vec<Sample> {
        let families = self
            .families
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = Vec::new();
        for (name, family) in families.iter() {
            for (labels, series) in &family.series {
                let value = match series {
                    Series::Counter(c) => SampleValue::Counter(c.get() as f64),
                    Series::Gauge(g) => SampleValue::Gauge(g.get() as f64),
                    Series::Probe(p) => SampleValue::Gauge(p()),
                    Series::Histogram(h) => {
                        let (buckets, sum, count) = h.snapshot();
                        SampleValue::Histogram {
                            buckets,
                            sum,
                            count,
                        }
                    }
                };
                out.push(Sample {
                    name: name.clone(),
                    labels: labels.clone(),
                    value,
                });
            }
        }
        out
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let families = self
            .families
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut out = String::with_capacity(16 * 1024);
        for (name, family) in families.iter() {
            let kind = match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, series) in &family.series {
                match series {
                    Series::Counter(c) => line(&mut out, name, labels, None, c.get() as f64),
                    Series::Gauge(g) => line(&mut out, name, labels, None, g.get() as f64),
                    Series::Probe(p) => line(&mut out, name, labels, None, p()),
                    Series::Histogram(h) => {
                        let (buckets, sum, count) = h.snapshot();
                        let bucket_name = format!("{name}_bucket");
                        for (bound, n) in buckets {
                            let le = format_float(bound);
                            line(&mut out, &bucket_name, labels, Some(&le), n as f64);
                        }
                        line(&mut out, &bucket_name, labels, Some("+Inf"), count as f64);
                        line(&mut out, &format!("{name}_sum"), labels, None, sum);
                        line(
                            &mut out,
                            &format!("{name}_count"),
                            labels,
                            None,
                            count as f64,
                        );
                    }
                }
            }
        }
        out
    }
}

/// One value read from the registry.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric family name.
    pub name: String,
    /// Sorted labels.
    pub labels: Labels,
    /// The value.
    pub value: SampleValue,
}

/// The value of a [`Sample`].
#[derive(Clone, Debug, PartialEq)]
pub enum SampleValue {
    /// Counter total.
    Counter(f64),
    /// Gauge value.
    Gauge(f64),
    /// Cumulative buckets, sum, count.
    Histogram {
        /// (upper bound, cumulative count).
        buckets: Vec<(f64, u64)>,
        /// Sum of observations.
        sum: f64,
        /// Number of observations.
        count: u64,
    },
}

fn format_float(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if value.is_nan() {
        return "NaN".into();
    }
    format!("{value}")
}

fn line(out: &mut String, name: &str, labels: &Labels, le: Option<&str>, value: f64) {
    out.push_str(name);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        let extra = le.map(|le| ("le", le));
        for (key, val) in labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(extra)
        {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(key);
            out.push_str("=\"");
            for c in val.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_float(value));
    out.push('\n');
}

/// `sluice_batches_abandoned_total`: source batches whose acknowledgement was dropped
/// without `done()` (a crash, an abort at the shutdown deadline, a sink that is gone). Their
/// streams commit nothing past them in this run; they are read again after a restart.
pub fn batches_abandoned() -> &'static Counter {
    static COUNTER: OnceLock<Counter> = OnceLock::new();
    COUNTER.get_or_init(|| {
        registry().counter(
            "sluice_batches_abandoned_total",
            "Source batches dropped without being delivered; nothing after them is checkpointed in this run.",
            &[],
        )
    })
}

/// The standard counters of one pipeline component.
#[derive(Clone, Debug)]
pub struct ComponentMetrics {
    /// Events that entered the component.
    pub events_in: Counter,
    /// Events the component passed on (or delivered, for sinks).
    pub events_out: Counter,
    labels: [(String, String); 3],
}

impl ComponentMetrics {
    /// Handles for component `component` of kind `kind` (`source`, `transform`, `sink`) in
    /// `pipeline`.
    pub fn new(pipeline: &str, kind: &str, component: &str) -> Self {
        let labels = [
            ("pipeline", pipeline),
            ("component_kind", kind),
            ("component", component),
        ];
        let registry = registry();
        ComponentMetrics {
            events_in: registry.counter(
                "sluice_events_received_total",
                "Events that entered a component.",
                &labels,
            ),
            events_out: registry.counter(
                "sluice_events_sent_total",
                "Events a component passed on or delivered.",
                &labels,
            ),
            labels: [
                ("pipeline".into(), pipeline.into()),
                ("component_kind".into(), kind.into()),
                ("component".into(), component.into()),
            ],
        }
    }

    /// The labels (`pipeline`, `component_kind`, `component`) plus `extra`, for a
    /// component-specific metric.
    pub fn labels_with<'a>(&'a self, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut out: Vec<(&str, &str)> = self
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        out.extend_from_slice(extra);
        out
    }

    /// `sluice_events_dropped_total{reason}` for this component.
    pub fn dropped(&self, reason: &str) -> Counter {
        registry().counter(
            "sluice_events_dropped_total",
            "Events dropped or diverted by a component, by reason.",
            &self.labels_with(&[("reason", reason)]),
        )
    }

    /// A component-specific counter with the standard labels plus `extra`.
    pub fn counter(&self, name: &str, help: &'static str, extra: &[(&str, &str)]) -> Counter {
        registry().counter(name, help, &self.labels_with(extra))
    }

    /// A component-specific gauge with the standard labels plus `extra`.
    pub fn gauge(&self, name: &str, help: &'static str, extra: &[(&str, &str)]) -> Gauge {
        registry().gauge(name, help, &self.labels_with(extra))
    }

    /// A component-specific histogram with the standard labels.
    pub fn histogram(&self, name: &str, help: &'static str, bounds: &[f64]) -> Histogram {
        registry().histogram(name, help, &self.labels_with(&[]), bounds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_format() {
        let registry = Registry::default();
        registry
            .counter("t_total", "help", &[("b", "2"), ("a", "x\"y")])
            .add(3);
        registry
            .histogram("t_hist", "h", &[], &[1.0, 10.0])
            .observe(5.0);
        let text = registry.render();
        assert!(text.contains("# TYPE t_total counter\nt_total{a=\"x\\\"y\",b=\"2\"} 3\n"));
        assert!(text.contains("t_hist_bucket{le=\"1\"} 0\n"));
        assert!(text.contains("t_hist_bucket{le=\"10\"} 1\n"));
        assert!(text.contains("t_hist_bucket{le=\"+Inf\"} 1\n"));
        assert!(text.contains("t_hist_sum 5\n"));
    }
}
