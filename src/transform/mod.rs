//! Transforms: what happens to events between sources and sinks. One file per transform
//! type (or close family); this file lists them (the closed [`TransformConfig`] enum and its
//! `match`es).
//!
//! A transform turns one event into zero or more and never fails: a line it cannot handle
//! is passed on unchanged and counted. Transforms run on the pipeline's worker threads, each
//! worker with its own clone of the chain (state that must be shared across workers, such as
//! metric totals, lives behind an `Arc` inside the transform). Stateful transforms emit on
//! [`Transform::tick`] (called at least every 100 ms) and on [`Transform::flush`] at shutdown.
//!
//! Shared building blocks: [`template`] (`{{ field }}` text) and [`condition`] (plain-YAML
//! predicates).

pub mod condition;
pub mod fields;
pub mod filter;
pub mod parse_json;
pub mod parse_logfmt;
pub mod parse_regex;
pub mod sample;
pub mod template;
pub mod throttle;
pub mod timestamp;
pub mod to_metric;

use std::time::Instant;

use crate::config::yaml::TaggedEnum;
use crate::event::Event;
use crate::telemetry::{ComponentMetrics, Counter};

/// The configuration of one transform, selected by `type:`.
#[derive(Debug, Clone, PartialEq)]
pub enum TransformConfig {
    /// Named regex captures into fields (`type: parse_regex`).
    ParseRegex(parse_regex::ParseRegexConfig),
    /// A JSON document into fields (`type: parse_json`).
    ParseJson(parse_json::ParseJsonConfig),
    /// `key=value` pairs into fields (`type: parse_logfmt`).
    ParseLogfmt(parse_logfmt::ParseLogfmtConfig),
    /// A field's time becomes the event time (`type: parse_timestamp`).
    ParseTimestamp(timestamp::ParseTimestampConfig),
    /// Sets fields, with templates (`type: set`).
    Set(fields::SetConfig),
    /// Removes fields (`type: remove`).
    Remove(fields::RemoveConfig),
    /// Renames fields (`type: rename`).
    Rename(fields::RenameConfig),
    /// Keeps events matching a condition (`type: filter`).
    Filter(filter::FilterConfig),
    /// Keeps one event or key in N (`type: sample`).
    Sample(sample::SampleConfig),
    /// At most N events per window (`type: throttle`).
    Throttle(throttle::ThrottleConfig),
    /// Counters, gauges and histograms from logs (`type: log_to_metric`).
    LogToMetric(to_metric::LogToMetricConfig),
}

impl TaggedEnum for TransformConfig {
    const KIND: &'static str = "transform";
    const TYPES: &'static [&'static str] = &[
        "parse_regex",
        "parse_json",
        "parse_logfmt",
        "parse_timestamp",
        "set",
        "remove",
        "rename",
        "filter",
        "sample",
        "throttle",
        "log_to_metric",
    ];

    fn deserialize_variant<'de, A: serde::de::MapAccess<'de>>(
        type_name: &str,
        body: &mut A,
    ) -> Result<Self, A::Error> {
        Ok(match type_name {
            "parse_regex" => Self::ParseRegex(body.next_value()?),
            "parse_json" => Self::ParseJson(body.next_value()?),
            "parse_logfmt" => Self::ParseLogfmt(body.next_value()?),
            "parse_timestamp" => Self::ParseTimestamp(body.next_value()?),
            "set" => Self::Set(body.next_value()?),
            "remove" => Self::Remove(body.next_value()?),
            "rename" => Self::Rename(body.next_value()?),
            "filter" => Self::Filter(body.next_value()?),
            "sample" => Self::Sample(body.next_value()?),
            "throttle" => Self::Throttle(body.next_value()?),
            "log_to_metric" => Self::LogToMetric(body.next_value()?),
            other => return Err(serde::de::Error::unknown_variant(other, Self::TYPES)),
        })
    }
}

/// What a transform is given when it is built.
pub struct TransformContext {
    /// Pipeline name.
    pub pipeline: String,
    /// Component id.
    pub id: String,
    /// Counters of this transform (the worker counts in/out; the transform counts drops).
    pub metrics: ComponentMetrics,
}

impl TransformContext {
    /// A context for transform `id` of `pipeline` (benches and tests build transforms alone).
    pub fn new(pipeline: &str, id: &str) -> Self {
        TransformContext {
            pipeline: pipeline.to_owned(),
            id: id.to_owned(),
            metrics: ComponentMetrics::new(pipeline, "transform", id),
        }
    }

    /// `sluice_transform_failures_total{reason}` for this transform: events it could not
    /// handle (passed on unchanged unless it is configured to drop them).
    pub fn failures(&self, reason: &str) -> Counter {
        self.metrics.counter(
            "sluice_transform_failures_total",
            "Events a transform could not parse or convert, by reason.",
            &[("reason", reason)],
        )
    }

    /// A context with a unique id, so tests running in parallel do not share counters.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self::new(
            "test",
            &format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed)),
        )
    }
}

impl TransformConfig {
    /// The `type:` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::ParseRegex(_) => "parse_regex",
            Self::ParseJson(_) => "parse_json",
            Self::ParseLogfmt(_) => "parse_logfmt",
            Self::ParseTimestamp(_) => "parse_timestamp",
            Self::Set(_) => "set",
            Self::Remove(_) => "remove",
            Self::Rename(_) => "rename",
            Self::Filter(_) => "filter",
            Self::Sample(_) => "sample",
            Self::Throttle(_) => "throttle",
            Self::LogToMetric(_) => "log_to_metric",
        }
    }

    /// Validates and builds the runtime transform (regexes compiled, names checked).
    pub fn build(&self, ctx: &TransformContext) -> anyhow::Result<Transform> {
        Ok(match self {
            Self::ParseRegex(config) => Transform::ParseRegex(config.build(ctx)?),
            Self::ParseJson(config) => Transform::ParseJson(config.build(ctx)?),
            Self::ParseLogfmt(config) => Transform::ParseLogfmt(config.build(ctx)?),
            Self::ParseTimestamp(config) => Transform::ParseTimestamp(config.build(ctx)?),
            Self::Set(config) => Transform::Set(config.build()?),
            Self::Remove(config) => Transform::Remove(config.build()?),
            Self::Rename(config) => Transform::Rename(config.build()?),
            Self::Filter(config) => Transform::Filter(config.build(ctx)?),
            Self::Sample(config) => Transform::Sample(config.build(ctx)?),
            Self::Throttle(config) => Transform::Throttle(config.build(ctx)?),
            Self::LogToMetric(config) => Transform::LogToMetric(config.build(ctx)?),
        })
    }
}

/// A built transform. Cloned once per worker thread.
#[derive(Debug, Clone)]
pub enum Transform {
    /// See [`parse_regex`].
    ParseRegex(parse_regex::ParseRegex),
    /// See [`parse_json`].
    ParseJson(parse_json::ParseJson),
    /// See [`parse_logfmt`].
    ParseLogfmt(parse_logfmt::ParseLogfmt),
    /// See [`timestamp`].
    ParseTimestamp(timestamp::ParseTimestamp),
    /// See [`fields`].
    Set(fields::Set),
    /// See [`fields`].
    Remove(fields::Remove),
    /// See [`fields`].
    Rename(fields::Rename),
    /// See [`filter`].
    Filter(filter::Filter),
    /// See [`sample`].
    Sample(sample::Sample),
    /// See [`throttle`].
    Throttle(throttle::Throttle),
    /// See [`to_metric`].
    LogToMetric(to_metric::LogToMetric),
}

impl Transform {
    /// Transforms `events` (in stream order) and appends the results to `out`, in order.
    pub fn process(&mut self, events: Vec<Event>, out: &mut Vec<Event>) {
        match self {
            Transform::ParseRegex(t) => t.process(events, out),
            Transform::ParseJson(t) => t.process(events, out),
            Transform::ParseLogfmt(t) => t.process(events, out),
            Transform::ParseTimestamp(t) => t.process(events, out),
            Transform::Set(t) => t.process(events, out),
            Transform::Remove(t) => t.process(events, out),
            Transform::Rename(t) => t.process(events, out),
            Transform::Filter(t) => t.process(events, out),
            Transform::Sample(t) => t.process(events, out),
            Transform::Throttle(t) => t.process(events, out),
            Transform::LogToMetric(t) => t.process(events, out),
        }
    }

    /// Periodic hook (at least every 100 ms): emit what is due (e.g. metric totals).
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Event>) {
        if let Transform::LogToMetric(t) = self {
            t.tick(now, out);
        }
    }

    /// At shutdown, after the last batch: emit anything still held.
    pub fn flush(&mut self, out: &mut Vec<Event>) {
        if let Transform::LogToMetric(t) = self {
            t.flush(out);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::yaml::Named;

    /// Builds one transform from its YAML (flow or block style), with a unique context.
    pub(crate) fn build(yaml: &str) -> anyhow::Result<Transform> {
        let named: Named<TransformConfig> = crate::config::yaml::from_str(yaml, "test.yaml")?;
        named.config.build(&TransformContext::for_tests())
    }

    #[test]
    fn every_type_builds_and_round_trips_its_name() {
        for (yaml, type_name) in [
            ("{ type: parse_regex, pattern: '(?P<a>.)' }", "parse_regex"),
            ("{ type: parse_json }", "parse_json"),
            ("{ type: parse_logfmt }", "parse_logfmt"),
            (
                "{ type: parse_timestamp, field: t, formats: [rfc3339] }",
                "parse_timestamp",
            ),
            ("{ type: set, fields: { a: b } }", "set"),
            ("{ type: remove, fields: [a] }", "remove"),
            ("{ type: rename, fields: { a: b } }", "rename"),
            (
                "{ type: filter, condition: { field: a, exists: true } }",
                "filter",
            ),
            ("{ type: sample, rate: 2 }", "sample"),
            (
                "{ type: throttle, threshold: 1, window_secs: 1 }",
                "throttle",
            ),
            (
                "{ type: log_to_metric, metrics: [ { type: counter, name: n } ] }",
                "log_to_metric",
            ),
        ] {
            let named: Named<TransformConfig> =
                crate::config::yaml::from_str(yaml, "test.yaml").unwrap();
            assert_eq!(named.config.type_name(), type_name);
            assert!(TransformConfig::TYPES.contains(&type_name));
            build(yaml).unwrap_or_else(|e| panic!("{yaml}: {e:#}"));
        }
        assert!(build("{ type: parse_xml }").is_err());
        assert!(build("{ type: sample, rate: 0 }").is_err());
    }
}
