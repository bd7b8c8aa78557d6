//! Handles a pipeline component gets at build time: its standard counters and labels,
//! counters with one label that varies at run time (a reason, a status), and the
//! process-wide abandoned-batch counter.

use std::sync::{Arc, Mutex, OnceLock};

use super::{registry, Counter, Gauge, Histogram};

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

/// A counter family whose series differ in one label known only at run time (a drop
/// reason, an HTTP status). A value's counter is registered on its first use and kept
/// here, so counting again takes only this family's own lock: no allocation, and not the
/// registry's lock that `/metrics` holds while it renders.
#[derive(Clone)]
pub struct LabelledCounter(Arc<LabelledInner>);

struct LabelledInner {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    fixed: Vec<(String, String)>,
    seen: Mutex<Vec<(Box<str>, Counter)>>,
}

impl std::fmt::Debug for LabelledCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabelledCounter")
            .field("name", &self.0.name)
            .field("label", &self.0.label)
            .finish_non_exhaustive()
    }
}

impl LabelledCounter {
    /// The family `name`, its series labelled `fixed` plus `label`.
    pub fn new(
        name: &'static str,
        help: &'static str,
        fixed: &[(&str, &str)],
        label: &'static str,
    ) -> Self {
        LabelledCounter(Arc::new(LabelledInner {
            name,
            help,
            label,
            fixed: fixed
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            seen: Mutex::new(Vec::new()),
        }))
    }

    /// The counter of `value`, registered on first use.
    pub fn with(&self, value: &str) -> Counter {
        let inner = &self.0;
        let mut seen = inner.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, counter)) = seen.iter().find(|(v, _)| **v == *value) {
            return counter.clone();
        }
        let mut labels: Vec<(&str, &str)> = inner
            .fixed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        labels.push((inner.label, value));
        let counter = registry().counter(inner.name, inner.help, &labels);
        seen.push((value.into(), counter.clone()));
        counter
    }

    /// Adds `n` to the counter of `value`.
    pub fn add(&self, value: &str, n: u64) {
        self.with(value).add(n);
    }
}

/// The standard counters of one pipeline component.
#[derive(Clone, Debug)]
pub struct ComponentMetrics {
    /// Events that entered the component.
    pub events_in: Counter,
    /// Events the component passed on (or delivered, for sinks).
    pub events_out: Counter,
    dropped: LabelledCounter,
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
            dropped: LabelledCounter::new(
                "sluice_events_dropped_total",
                "Events dropped or diverted by a component, by reason.",
                &labels,
                "reason",
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
        self.dropped.with(reason)
    }

    /// A component-specific counter family with the standard labels and one label, `label`,
    /// whose values are known only at run time.
    pub fn labelled_counter(
        &self,
        name: &'static str,
        help: &'static str,
        label: &'static str,
    ) -> LabelledCounter {
        LabelledCounter::new(name, help, &self.labels_with(&[]), label)
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
    fn labelled_counter_counts_each_value_in_its_own_registered_series() {
        let family = LabelledCounter::new(
            "sluice_test_labelled_total",
            "test",
            &[("component", "c1")],
            "status",
        );
        family.add("200", 2);
        family.add("503", 1);
        family.add("200", 3);
        let of = |status: &str| {
            registry()
                .counter(
                    "sluice_test_labelled_total",
                    "test",
                    &[("status", status), ("component", "c1")],
                )
                .get()
        };
        assert_eq!((of("200"), of("503"), of("404")), (5, 1, 0));
        assert_eq!(family.0.seen.lock().unwrap().len(), 2);
    }
}
