//! The agent's own metrics: counters, gauges and histograms with labels, rendered in the
//! Prometheus text exposition format for `/metrics` and read by the `internal_metrics`
//! source.
//!
//! Components get handles once, at build time, and update them with one atomic operation
//! on the hot path. The registry is process-wide so a reloaded pipeline keeps counting where
//! the old one stopped (Prometheus counters must not go backwards).
//!
//! Owns: the handles (counter, gauge, histogram) and the registry; `render.rs` reads it out
//! (text format, samples), `component.rs` has the per-component handles, `log_every.rs` the timing of log lines
//! for things counted often. Never: blocks on
//! I/O or allocates per update.

mod component;
mod log_every;
mod render;

pub use component::{batches_abandoned, ComponentMetrics, LabelledCounter};
pub use log_every::{Due, LogEvery};
pub use render::{Sample, SampleValue};

use std::collections::BTreeMap;
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

    /// Forgets every series labelled `pipeline="<name>"` (a pipeline a reload removed); a
    /// family left without series goes too.
    pub fn forget_pipeline(&self, name: &str) {
        let mut families = self
            .families
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for family in families.values_mut() {
            family
                .series
                .retain(|labels, _| !labels.iter().any(|(k, v)| k == "pipeline" && v == name));
        }
        families.retain(|_, family| !family.series.is_empty());
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
}
