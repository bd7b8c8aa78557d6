//! `type: log_to_metric`: turns log events into Prometheus-style metrics.
//!
//! ```yaml
//! - type: log_to_metric
//!   flush_interval_ms: 5000
//!   metrics:
//!     - { type: counter, name: http_requests_total, labels: [method, status] }
//!     - { type: histogram, name: http_response_bytes, field: bytes, buckets: [100, 1000, 10000] }
//! ```
//!
//! Counters count matching events (or, with `increment_by_value`, add the field's value);
//! gauges take the field's last value; histograms observe it. An event "matches" a metric
//! when it satisfies the metric's `condition` (if any) and has its `field` (if any); a
//! missing label field gives an empty label, which Prometheus treats as absent.
//!
//! Totals are cumulative (Prometheus semantics) and shared by all worker threads: every
//! `flush_interval_ms` one worker emits the running totals of every series as
//! [`Event::Metric`]s, and at shutdown they are emitted once more if anything changed. Each
//! metric keeps at most `max_series` label combinations; events for further combinations
//! are counted in `sluice_log_to_metric_series_overflow_total{metric}` instead of growing
//! memory. Log events pass on unchanged unless `drop_logs: true`.
//!
//! Owns: the log_to_metric transform. Never: holds more than `max_series` series per metric.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Deserialize;

use super::condition::{Condition, ConditionConfig};
use super::TransformContext;
use crate::event::{Event, LogEvent, Metric, MetricValue, Timestamp};
use crate::telemetry::Counter;

/// Prometheus' default histogram buckets (client_golang `DefBuckets`).
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// `type: log_to_metric` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogToMetricConfig {
    /// The metrics to extract.
    pub metrics: Vec<MetricConfig>,
    /// How often the running totals are emitted, in milliseconds (default 10000).
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Drop the log events once counted (only the metrics go on).
    #[serde(default)]
    pub drop_logs: bool,
}

fn default_flush_interval_ms() -> u64 {
    10_000
}

/// The kind of an extracted metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// A running total.
    Counter,
    /// The last value seen.
    Gauge,
    /// A distribution in buckets.
    Histogram,
}

/// One metric to extract.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    /// `counter`, `gauge` or `histogram`.
    #[serde(rename = "type")]
    pub kind: MetricKind,
    /// Metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
    pub name: String,
    /// Field whose value is used (required for gauges and histograms; for a counter, only
    /// events having it are counted).
    #[serde(default)]
    pub field: Option<String>,
    /// Fields whose values become labels (the field name is the label name).
    #[serde(default)]
    pub labels: Vec<String>,
    /// Histogram bucket upper bounds, ascending (default: Prometheus' default buckets).
    #[serde(default)]
    pub buckets: Option<Vec<f64>>,
    /// Counter only: add the field's numeric value instead of 1.
    #[serde(default)]
    pub increment_by_value: bool,
    /// Label combinations kept at most (default 10000); more are counted, not stored.
    #[serde(default = "default_max_series")]
    pub max_series: NonZeroUsize,
    /// Only events matching this condition update the metric.
    #[serde(default)]
    pub condition: Option<ConditionConfig>,
}

fn default_max_series() -> NonZeroUsize {
    NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN)
}

/// Whether `name` is a valid Prometheus metric name.
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` is a valid Prometheus label name (reserved `__` prefix excluded).
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl MetricConfig {
    fn build(&self, ctx: &TransformContext) -> anyhow::Result<MetricDef> {
        let name = &self.name;
        crate::bounds::check(
            "max_series",
            self.max_series.get(),
            1..=crate::bounds::MAX_TRACKED,
        )?;
        anyhow::ensure!(
            valid_metric_name(name),
            "name {name:?} is not a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"
        );
        for (i, label) in self.labels.iter().enumerate() {
            anyhow::ensure!(valid_label_name(label), "labels[{i}]: {label:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)");
            anyhow::ensure!(
                !self.labels[..i].contains(label),
                "labels[{i}]: {label:?} is listed twice"
            );
            anyhow::ensure!(
                !(self.kind == MetricKind::Histogram && label == "le"),
                "labels[{i}]: `le` is reserved for histogram buckets"
            );
        }
        if matches!(self.kind, MetricKind::Gauge | MetricKind::Histogram) {
            anyhow::ensure!(self.field.is_some(), "a {:?} needs `field`", self.kind);
        }
        anyhow::ensure!(
            !self.increment_by_value || (self.kind == MetricKind::Counter && self.field.is_some()),
            "increment_by_value needs a counter with `field`"
        );
        anyhow::ensure!(
            self.buckets.is_none() || self.kind == MetricKind::Histogram,
            "buckets are for histograms only"
        );
        let buckets = self
            .buckets
            .clone()
            .unwrap_or_else(|| DEFAULT_BUCKETS.to_vec());
        anyhow::ensure!(!buckets.is_empty(), "buckets must not be empty");
        anyhow::ensure!(
            buckets.iter().all(|b| b.is_finite()),
            "buckets must be finite numbers (+Inf is implied)"
        );
        anyhow::ensure!(
            buckets.windows(2).all(|w| w[0] < w[1]),
            "buckets must be in strictly ascending order"
        );
        let condition = match &self.condition {
            Some(condition) => Some(condition.build().context("condition")?),
            None => None,
        };
        Ok(MetricDef {
            name: name.clone(),
            kind: self.kind,
            field: self.field.clone(),
            labels: self.labels.clone(),
            buckets,
            increment_by_value: self.increment_by_value,
            max_series: self.max_series.get(),
            condition,
            overflow: ctx.metrics.counter(
                "sluice_log_to_metric_series_overflow_total",
                "Events not counted because their metric already had max_series label combinations.",
                &[("metric", name)],
            ),
        })
    }
}

impl LogToMetricConfig {
    /// Validates every metric (names, labels, buckets, conditions).
    pub fn build(&self, ctx: &TransformContext) -> anyhow::Result<LogToMetric> {
        anyhow::ensure!(
            !self.metrics.is_empty(),
            "metrics must list at least one metric"
        );
        crate::bounds::check(
            "flush_interval_ms",
            self.flush_interval_ms,
            1..=crate::bounds::MAX_MS,
        )?;
        let mut metrics = Vec::new();
        for (i, metric) in self.metrics.iter().enumerate() {
            let def = metric.build(ctx).with_context(|| format!("metrics[{i}]"))?;
            anyhow::ensure!(
                !self.metrics[..i].iter().any(|m| m.name == metric.name),
                "metrics[{i}]: metric {:?} is defined twice",
                metric.name
            );
            metrics.push(def);
        }
        let series = metrics.iter().map(|_| HashMap::new()).collect();
        Ok(LogToMetric {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    series,
                    last_emit: Instant::now(),
                    changed: false,
                }),
                metrics,
                interval: Duration::from_millis(self.flush_interval_ms),
            }),
            drop_logs: self.drop_logs,
            not_a_number: ctx.failures("not_a_number"),
            key: String::new(),
        })
    }
}

#[derive(Debug)]
struct MetricDef {
    name: String,
    kind: MetricKind,
    field: Option<String>,
    labels: Vec<String>,
    buckets: Vec<f64>,
    increment_by_value: bool,
    max_series: usize,
    condition: Option<Condition>,
    overflow: Counter,
}

#[derive(Debug)]
enum Total {
    Counter(f64),
    Gauge(f64),
    /// Per-bucket (not cumulative) counts; observations above the last bound only count.
    Histogram {
        counts: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

#[derive(Debug)]
struct Series {
    labels: Vec<(String, String)>,
    value: Total,
}

#[derive(Debug)]
struct State {
    /// Per metric: series by label key (length-prefixed label values).
    series: Vec<HashMap<String, Series>>,
    last_emit: Instant,
    changed: bool,
}

#[derive(Debug)]
struct Shared {
    metrics: Vec<MetricDef>,
    state: Mutex<State>,
    interval: Duration,
}

/// A built log_to_metric transform. Clones (one per worker) share the totals.
#[derive(Debug, Clone)]
pub struct LogToMetric {
    shared: Arc<Shared>,
    drop_logs: bool,
    not_a_number: Counter,
    /// Reused buffer for series keys.
    key: String,
}

impl LogToMetric {
    /// Updates the metrics from each log event; passes events on unless `drop_logs`.
    pub fn process(&mut self, events: Vec<Event>, out: &mut Vec<Event>) {
        let shared = self.shared.clone();
        let mut state = shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        super::retain_into(events, out, |event| {
            let Event::Log(log) = &*event else {
                return true;
            };
            for (def, series) in shared.metrics.iter().zip(state.series.iter_mut()) {
                self.update(def, series, log);
            }
            state.changed = true;
            !self.drop_logs
        });
    }

    fn update(&mut self, def: &MetricDef, series: &mut HashMap<String, Series>, log: &LogEvent) {
        if def.condition.as_ref().is_some_and(|c| !c.matches(log)) {
            return;
        }
        let value = match &def.field {
            Some(field) => match log.lookup(field) {
                None | Some(crate::event::Value::Null) => return,
                Some(value) => Some(value),
            },
            None => None,
        };
        let number = match (def.kind, value) {
            (MetricKind::Counter, _) if !def.increment_by_value => 1.0,
            (_, Some(value)) => match value.as_f64().filter(|x| x.is_finite()) {
                // A counter never goes down.
                Some(x) if def.kind != MetricKind::Counter || x >= 0.0 => x,
                _ => {
                    self.not_a_number.inc();
                    return;
                }
            },
            (_, None) => return,
        };
        self.key.clear();
        for label in &def.labels {
            let text = log.lookup(label).map(|v| v.to_text()).unwrap_or_default();
            let _ = write!(self.key, "{}:{text}", text.len());
        }
        if !series.contains_key(self.key.as_str()) {
            if series.len() >= def.max_series {
                def.overflow.inc();
                return;
            }
            series.insert(self.key.clone(), new_series(def, log));
        }
        let Some(entry) = series.get_mut(self.key.as_str()) else {
            return;
        };
        match &mut entry.value {
            Total::Counter(total) => *total += number,
            Total::Gauge(last) => *last = number,
            Total::Histogram { counts, sum, count } => {
                let bucket = def.buckets.partition_point(|bound| *bound < number);
                if let Some(n) = counts.get_mut(bucket) {
                    *n += 1;
                }
                *sum += number;
                *count += 1;
            }
        }
    }

    /// Its workers tick (the totals go out every interval).
    pub const TICKS: bool = true;

    /// Emits the totals when the interval has passed (on one worker per interval).
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Event>) {
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if now.saturating_duration_since(state.last_emit) < self.shared.interval {
            return;
        }
        state.last_emit = now;
        state.changed = false;
        emit(&self.shared.metrics, &state, out);
    }

    /// At shutdown: emits the totals if they changed since the last emission.
    pub fn flush(&mut self, out: &mut Vec<Event>) {
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !state.changed {
            return;
        }
        state.last_emit = Instant::now();
        state.changed = false;
        emit(&self.shared.metrics, &state, out);
    }

    /// The number of series (label combinations) held for metric `name`.
    pub fn series_count(&self, name: &str) -> usize {
        let state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.shared
            .metrics
            .iter()
            .position(|m| m.name == name)
            .map_or(0, |i| state.series[i].len())
    }
}

fn new_series(def: &MetricDef, log: &LogEvent) -> Series {
    let mut labels: Vec<(String, String)> = def
        .labels
        .iter()
        .filter_map(|label| {
            let text = log.lookup(label)?.to_text();
            (!text.is_empty()).then(|| (label.clone(), text.into_owned()))
        })
        .collect();
    labels.sort();
    let value = match def.kind {
        MetricKind::Counter => Total::Counter(0.0),
        MetricKind::Gauge => Total::Gauge(0.0),
        MetricKind::Histogram => Total::Histogram {
            counts: vec![0; def.buckets.len()],
            sum: 0.0,
            count: 0,
        },
    };
    Series { labels, value }
}

fn emit(metrics: &[MetricDef], state: &State, out: &mut Vec<Event>) {
    let timestamp = Timestamp::now();
    for (def, series) in metrics.iter().zip(&state.series) {
        let mut all: Vec<&Series> = series.values().collect();
        all.sort_by(|a, b| a.labels.cmp(&b.labels));
        for series in all {
            let value = match &series.value {
                Total::Counter(total) => MetricValue::Counter(*total),
                Total::Gauge(last) => MetricValue::Gauge(*last),
                Total::Histogram { counts, sum, count } => {
                    let mut cumulative = 0;
                    let buckets = def
                        .buckets
                        .iter()
                        .zip(counts)
                        .map(|(bound, n)| {
                            cumulative += n;
                            (*bound, cumulative)
                        })
                        .collect();
                    MetricValue::Histogram {
                        buckets,
                        sum: *sum,
                        count: *count,
                    }
                }
            };
            out.push(Event::Metric(Metric {
                name: def.name.clone(),
                labels: series.labels.clone(),
                value,
                timestamp,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Value;

    fn build(yaml: &str) -> LogToMetric {
        match super::super::tests::build(yaml).unwrap() {
            super::super::Transform::LogToMetric(t) => t,
            other => panic!("{other:?}"),
        }
    }

    fn log(fields: &[(&str, Value)]) -> Event {
        let mut log = LogEvent::new("line");
        for (k, v) in fields {
            log.insert(k, v.clone());
        }
        Event::Log(log)
    }

    /// Runs `events` through `yaml`, flushes, and checks the emitted metrics, rendered as
    /// `name{k=v,...} value` lines (histograms: `name{...} le:count,... sum count`).
    fn check(yaml: &str, events: Vec<Event>, expected: &[&str]) {
        let mut transform = build(yaml);
        let n_logs = events.len();
        let mut out = Vec::new();
        transform.process(events, &mut out);
        assert_eq!(out.len(), n_logs, "logs pass through");
        let mut emitted = Vec::new();
        transform.flush(&mut emitted);
        let got: Vec<String> = emitted.iter().map(render).collect();
        assert_eq!(got, expected, "{yaml}");
        // Nothing changed since: a second flush (another worker) emits nothing.
        let mut again = Vec::new();
        transform.flush(&mut again);
        assert!(again.is_empty());
    }

    fn render(event: &Event) -> String {
        let Event::Metric(m) = event else {
            panic!("{event:?}")
        };
        let labels: Vec<String> = m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let value = match &m.value {
            MetricValue::Counter(x) | MetricValue::Gauge(x) => format!("{x}"),
            MetricValue::Histogram {
                buckets,
                sum,
                count,
            } => {
                let b: Vec<String> = buckets.iter().map(|(le, n)| format!("{le}:{n}")).collect();
                format!("{} {sum} {count}", b.join(","))
            }
        };
        format!("{}{{{}}} {value}", m.name, labels.join(","))
    }

    #[test]
    fn counters() {
        let events = || {
            vec![
                log(&[
                    ("method", "GET".into()),
                    ("status", Value::Int(200)),
                    ("bytes", Value::Int(10)),
                ]),
                log(&[
                    ("method", "GET".into()),
                    ("status", Value::Int(200)),
                    ("bytes", "5".into()),
                ]),
                log(&[
                    ("method", "POST".into()),
                    ("status", Value::Int(500)),
                    ("bytes", "-".into()),
                ]),
                log(&[("status", Value::Int(404))]),
            ]
        };
        check(
            "{ type: log_to_metric, metrics: [ { type: counter, name: requests_total, labels: [method, status] } ] }",
            events(),
            &["requests_total{method=GET,status=200} 2", "requests_total{method=POST,status=500} 1", "requests_total{status=404} 1"],
        );
        check(
            "{ type: log_to_metric, metrics: [ { type: counter, name: bytes_total, field: bytes, increment_by_value: true } ] }",
            events(),
            &["bytes_total{} 15"],
        );
        check(
            "{ type: log_to_metric, metrics: [ { type: counter, name: with_bytes, field: bytes } ] }",
            events(),
            &["with_bytes{} 3"],
        );
        check(
            "{ type: log_to_metric, metrics: [ { type: counter, name: errors_total, condition: { field: status, gte: 500 } } ] }",
            events(),
            &["errors_total{} 1"],
        );
    }

    #[test]
    fn gauges_and_histograms() {
        let events = vec![
            log(&[("temp", Value::Float(20.5)), ("room", "a".into())]),
            log(&[("temp", "21".into()), ("room", "a".into())]),
            log(&[("temp", "hot".into()), ("room", "a".into())]),
            log(&[("temp", Value::Int(-3)), ("room", "b\u{FFFD}".into())]),
        ];
        check(
            "{ type: log_to_metric, metrics: [ { type: gauge, name: temp, field: temp, labels: [room] } ] }",
            events.clone(),
            &["temp{room=a} 21", "temp{room=b\u{FFFD}} -3"],
        );
        check(
            "{ type: log_to_metric, metrics: [ { type: histogram, name: temp_h, field: temp, buckets: [0, 20.5, 100] } ] }",
            events,
            &["temp_h{} 0:1,20.5:2,100:3 38.5 3"],
        );
        let big = vec![
            log(&[("v", Value::Int(1000))]),
            log(&[("v", Value::Float(0.003))]),
        ];
        check(
            "{ type: log_to_metric, metrics: [ { type: histogram, name: h, field: v } ] }",
            big,
            &["h{} 0.005:1,0.01:1,0.025:1,0.05:1,0.1:1,0.25:1,0.5:1,1:1,2.5:1,5:1,10:1 1000.003 2"],
        );
    }

    #[test]
    fn drop_logs_and_metric_events_pass() {
        let mut t = build("{ type: log_to_metric, drop_logs: true, metrics: [ { type: counter, name: n_total } ] }");
        let mut out = Vec::new();
        let metric = Event::Metric(Metric {
            name: "x".into(),
            labels: vec![],
            value: MetricValue::Gauge(1.0),
            timestamp: Timestamp(0),
        });
        t.process(vec![log(&[]), metric.clone(), log(&[])], &mut out);
        assert_eq!(out, vec![metric]);
    }

    #[test]
    fn emits_once_per_interval_across_workers() {
        let mut first = build("{ type: log_to_metric, flush_interval_ms: 1000, metrics: [ { type: counter, name: n_total } ] }");
        let mut second = first.clone();
        let mut out = Vec::new();
        first.process(vec![log(&[]), log(&[])], &mut out);
        second.process(vec![log(&[])], &mut out);
        let start = Instant::now();
        let mut emitted = Vec::new();
        first.tick(start, &mut emitted);
        assert!(emitted.is_empty(), "not due yet");
        first.tick(start + Duration::from_millis(1000), &mut emitted);
        second.tick(start + Duration::from_millis(1001), &mut emitted);
        assert_eq!(
            emitted.iter().map(render).collect::<Vec<_>>(),
            ["n_total{} 3"]
        );
        // Cumulative: the next interval re-emits the running total.
        second.process(vec![log(&[])], &mut out);
        second.tick(start + Duration::from_millis(2000), &mut emitted);
        assert_eq!(render(&emitted[1]), "n_total{} 4");
    }

    #[test]
    fn series_cap_bounds_memory() {
        let ctx = TransformContext::for_tests();
        let config: LogToMetricConfig = serde_json::from_value(serde_json::json!({
            "metrics": [ { "type": "counter", "name": "by_user_total", "labels": ["user"], "max_series": 1000 } ]
        }))
        .unwrap();
        let mut t = config.build(&ctx).unwrap();
        let mut out = Vec::new();
        for chunk in 0..100 {
            let events = (0..10_000)
                .map(|i| log(&[("user", Value::Int(chunk * 10_000 + i))]))
                .collect();
            out.clear();
            t.process(events, &mut out);
            assert!(t.series_count("by_user_total") <= 1000);
        }
        assert_eq!(t.series_count("by_user_total"), 1000);
        let overflow = ctx.metrics.counter(
            "sluice_log_to_metric_series_overflow_total",
            "",
            &[("metric", "by_user_total")],
        );
        assert_eq!(overflow.get(), 1_000_000 - 1000);
        // Known series keep counting.
        t.process(vec![log(&[("user", Value::Int(5))])], &mut out);
        let mut emitted = Vec::new();
        t.flush(&mut emitted);
        assert_eq!(emitted.len(), 1000);
        assert!(emitted
            .iter()
            .map(render)
            .any(|l| l == "by_user_total{user=5} 2"));
    }

    #[test]
    fn rejects_bad_config() {
        for (metric, error) in [
            (
                "{ type: counter, name: 'bad-name' }",
                "not a valid Prometheus metric name",
            ),
            (
                "{ type: counter, name: '1x' }",
                "not a valid Prometheus metric name",
            ),
            ("{ type: counter, name: ok, labels: ['a.b'] }", "labels[0]"),
            ("{ type: counter, name: ok, labels: [__x] }", "labels[0]"),
            ("{ type: counter, name: ok, labels: [a, a] }", "twice"),
            (
                "{ type: histogram, name: ok, field: v, labels: [le] }",
                "reserved",
            ),
            ("{ type: gauge, name: ok }", "needs `field`"),
            ("{ type: histogram, name: ok }", "needs `field`"),
            (
                "{ type: counter, name: ok, increment_by_value: true }",
                "increment_by_value",
            ),
            (
                "{ type: counter, name: ok, buckets: [1] }",
                "histograms only",
            ),
            (
                "{ type: histogram, name: ok, field: v, buckets: [2, 1] }",
                "ascending",
            ),
            (
                "{ type: histogram, name: ok, field: v, buckets: [] }",
                "empty",
            ),
            (
                "{ type: counter, name: ok, condition: { field: a } }",
                "condition",
            ),
            ("{ type: summary, name: ok }", "summary"),
        ] {
            let yaml = format!("{{ type: log_to_metric, metrics: [ {metric} ] }}");
            let e = format!("{:#}", super::super::tests::build(&yaml).unwrap_err());
            assert!(e.contains(error), "{metric}: {e}");
        }
        let e = super::super::tests::build("{ type: log_to_metric, metrics: [ { type: counter, name: a }, { type: counter, name: a } ] }").unwrap_err();
        assert!(format!("{e:#}").contains("defined twice"));
        assert!(super::super::tests::build("{ type: log_to_metric, metrics: [] }").is_err());
    }
}
