//! `type: internal_metrics`: the agent's own `/metrics` (events in/out/dropped, sink
//! requests and retries, queue depths, checkpoint age, ...) as metric events, every
//! `interval_secs`, so a pipeline can ship the agent's health to the same Prometheus as
//! everything else (like Vector's and Fluent Bit's `internal_metrics` / `fluentbit_metrics`).
//!
//! Each tick reads [`crate::telemetry::registry`] once: counters become
//! [`MetricValue::Counter`] (cumulative), gauges [`MetricValue::Gauge`], histograms
//! [`MetricValue::Histogram`]; all samples of one tick share one timestamp. The first
//! snapshot is taken at start. `namespace` replaces the leading `sluice` of every name, and
//! `labels` are added to every series that lacks a label of that name.
//!
//! Positions are not replayable (a missed snapshot is replaced by the next one), so batches
//! carry no acknowledgement.
//!
//! Owns: turning registry samples into events. Never: registers or changes a metric.

use std::collections::BTreeMap;
use std::time::Duration;
use tracing::Instrument as _;

use serde::Deserialize;

use super::{Running, SourceContext};
use crate::batch::Batch;
use crate::event::{Event, Metric, MetricValue, Timestamp};
use crate::telemetry::{Sample, SampleValue};
use crate::transform::to_metric::{valid_label_name, valid_metric_name};

/// The namespace every internal metric name starts with.
const NAMESPACE: &str = "sluice";

/// `type: internal_metrics` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalMetricsConfig {
    /// Seconds between two snapshots (default 15).
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    /// Replaces the `sluice` prefix of every metric name (`gw` turns
    /// `sluice_events_sent_total` into `gw_events_sent_total`); unset: names stay as on
    /// `/metrics`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels added to every metric (a metric's own label of the same name wins), e.g.
    /// `{ host: "${HOSTNAME}" }`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_interval_secs() -> u64 {
    15
}

impl InternalMetricsConfig {
    /// Validates the interval, the namespace and the label names.
    pub fn build(&self) -> anyhow::Result<InternalMetrics> {
        crate::bounds::check(
            "interval_secs",
            self.interval_secs,
            1..=crate::bounds::MAX_SECS,
        )?;
        if let Some(namespace) = &self.namespace {
            anyhow::ensure!(
                valid_metric_name(namespace),
                "namespace {namespace:?} is not a valid Prometheus metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)"
            );
        }
        let mut labels = Vec::new();
        for (name, value) in &self.labels {
            anyhow::ensure!(
                valid_label_name(name) && name != "le",
                "labels: {name:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __, not le)"
            );
            labels.push((name.clone(), value.clone()));
        }
        Ok(InternalMetrics {
            interval: Duration::from_secs(self.interval_secs),
            namespace: self.namespace.clone(),
            labels,
        })
    }
}

/// A built internal_metrics source.
#[derive(Debug)]
pub struct InternalMetrics {
    interval: Duration,
    namespace: Option<String>,
    /// Sorted by name.
    labels: Vec<(String, String)>,
}

impl InternalMetrics {
    /// Samples are taken anew.
    pub const REPLAYABLE: bool = false;

    /// Starts the snapshot loop on the async runtime.
    pub fn start(self, ctx: SourceContext) -> anyhow::Result<Running> {
        let (runtime, span) = (ctx.runtime.clone(), ctx.span());
        Ok(Running::Task(runtime.spawn(self.run(ctx).instrument(span))))
    }

    async fn run(self, ctx: SourceContext) {
        let stream_key = crate::hash_str(&ctx.checkpoint_key("internal_metrics"));
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = ctx.shutdown.wait() => return,
            }
            let events = self.snapshot(crate::telemetry::registry().samples(), Timestamp::now());
            if events.is_empty() {
                continue;
            }
            ctx.metrics.events_in.add(events.len() as u64);
            if ctx
                .out
                .send_async(stream_key, Batch::new(events))
                .await
                .is_err()
            {
                return;
            }
        }
    }

    /// Registry samples → metric events at `timestamp`.
    fn snapshot(&self, samples: Vec<Sample>, timestamp: Timestamp) -> Vec<Event> {
        samples
            .into_iter()
            .map(|sample| {
                let value = match sample.value {
                    SampleValue::Counter(v) => MetricValue::Counter(v),
                    SampleValue::Gauge(v) => MetricValue::Gauge(v),
                    SampleValue::Histogram {
                        buckets,
                        sum,
                        count,
                    } => MetricValue::Histogram {
                        buckets,
                        sum,
                        count,
                    },
                };
                Event::Metric(Metric {
                    name: self.name(sample.name),
                    labels: self.labels(sample.labels),
                    value,
                    timestamp,
                })
            })
            .collect()
    }

    fn name(&self, name: String) -> String {
        let Some(namespace) = &self.namespace else {
            return name;
        };
        match name.strip_prefix(NAMESPACE) {
            Some(rest) if rest.is_empty() || rest.starts_with('_') => format!("{namespace}{rest}"),
            _ => format!("{namespace}_{name}"),
        }
    }

    fn labels(&self, mut labels: Vec<(String, String)>) -> Vec<(String, String)> {
        if self.labels.is_empty() {
            return labels;
        }
        for (name, value) in &self.labels {
            if !labels.iter().any(|(k, _)| k == name) {
                labels.push((name.clone(), value.clone()));
            }
        }
        labels.sort();
        labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(yaml: &str) -> InternalMetrics {
        let config: InternalMetricsConfig = crate::yaml::from_str(yaml, "t.yaml").unwrap();
        config.build().unwrap()
    }

    fn sample(name: &str, labels: &[(&str, &str)], value: SampleValue) -> Sample {
        Sample {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            value,
        }
    }

    /// (config, registry sample) → the event's (name, labels, value).
    fn check(yaml: &str, input: Sample, expected: (&str, &[(&str, &str)], MetricValue)) {
        let events = source(yaml).snapshot(vec![input], Timestamp(7));
        let [Event::Metric(metric)] = events.as_slice() else {
            panic!("expected one metric event, got {events:?}");
        };
        let labels: Vec<(String, String)> = expected
            .1
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        assert_eq!(
            (metric.name.as_str(), &metric.labels, &metric.value),
            (expected.0, &labels, &expected.2),
            "{yaml}"
        );
        assert_eq!(metric.timestamp, Timestamp(7));
    }

    #[test]
    fn turns_registry_samples_into_metrics() {
        check(
            "{}",
            sample(
                "sluice_events_sent_total",
                &[("component", "x")],
                SampleValue::Counter(5.0),
            ),
            (
                "sluice_events_sent_total",
                &[("component", "x")],
                MetricValue::Counter(5.0),
            ),
        );
        check(
            "namespace: gw\nlabels: { host: h1, component: ignored }",
            sample(
                "sluice_queue_batches",
                &[("component", "x")],
                SampleValue::Gauge(2.0),
            ),
            (
                "gw_queue_batches",
                &[("component", "x"), ("host", "h1")],
                MetricValue::Gauge(2.0),
            ),
        );
        check(
            "namespace: gw",
            sample("other_total", &[], SampleValue::Counter(1.0)),
            ("gw_other_total", &[], MetricValue::Counter(1.0)),
        );
        check(
            "{}",
            sample(
                "sluice_sink_batch_events",
                &[],
                SampleValue::Histogram {
                    buckets: vec![(1.0, 2), (10.0, 3)],
                    sum: 12.0,
                    count: 4,
                },
            ),
            (
                "sluice_sink_batch_events",
                &[],
                MetricValue::Histogram {
                    buckets: vec![(1.0, 2), (10.0, 3)],
                    sum: 12.0,
                    count: 4,
                },
            ),
        );
    }

    #[test]
    fn snapshots_the_real_registry() {
        crate::telemetry::registry()
            .counter("sluice_test_internal_metrics_total", "test", &[])
            .add(3);
        let events = source("{}").snapshot(crate::telemetry::registry().samples(), Timestamp(1));
        assert!(events.iter().any(|e| matches!(e, Event::Metric(m)
            if m.name == "sluice_test_internal_metrics_total" && m.value == MetricValue::Counter(3.0))));
    }

    #[test]
    fn refuses_bad_config() {
        for (yaml, expected) in [
            ("interval_secs: 0", "interval_secs"),
            ("namespace: 'a-b'", "namespace"),
            ("labels: { 'bad-name': x }", "not a valid"),
            ("labels: { le: x }", "not a valid"),
        ] {
            let config: InternalMetricsConfig = crate::yaml::from_str(yaml, "t.yaml").unwrap();
            let error = format!("{:#}", config.build().unwrap_err());
            assert!(error.contains(expected), "{yaml}: {error}");
        }
    }
}
