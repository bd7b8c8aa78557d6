//! Transforms: what happens to events between sources and sinks. One file per transform
//! type (or close family); this file lists them, one line each in `transforms!`.
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
pub mod kubernetes_metadata;
pub mod parse_json;
pub mod parse_logfmt;
pub mod parse_regex;
pub mod sample;
pub mod template;
pub mod throttle;
pub mod timestamp;
pub mod to_metric;

use std::time::Instant;

use crate::event::{Event, Kinds};
use crate::telemetry::{ComponentMetrics, Counter};
use crate::yaml::TaggedEnum;

/// Declares the transform types: one line each, `"type" => Variant(Config, Built)`, and from
/// it the [`TransformConfig`] and [`Transform`] enums with their dispatch. A transform's
/// file provides `Config::build(&self, &TransformContext) -> anyhow::Result<Built>` and
/// `Built::process(&mut self, Vec<Event>, &mut Vec<Event>)` (which passes events on with
/// [`retain_into`], in place); a stateful one also has its own
/// `tick` and `flush` methods, which take precedence over [`Emit`]'s empty defaults.
macro_rules! transforms {
    ($( $(#[$doc:meta])* $name:literal => $variant:ident($config:ty, $built:ty), )*) => {
        /// The configuration of one transform, selected by `type:`.
        #[derive(Debug, Clone, PartialEq)]
        pub enum TransformConfig {
            $( $(#[$doc])* $variant($config), )*
        }

        impl TaggedEnum for TransformConfig {
            const KIND: &'static str = "transform";
            const TYPES: &'static [&'static str] = &[$($name),*];

            fn deserialize_variant<'de, A: serde::de::MapAccess<'de>>(
                type_name: &str,
                body: &mut A,
            ) -> Result<Self, A::Error> {
                Ok(match type_name {
                    $( $name => Self::$variant(body.next_value()?), )*
                    other => return Err(serde::de::Error::unknown_variant(other, Self::TYPES)),
                })
            }
        }

        impl TransformConfig {
            /// The `type:` name.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $name, )*
                }
            }

            /// Validates and builds the runtime transform (regexes compiled, names checked).
            pub fn build(&self, ctx: &TransformContext) -> anyhow::Result<Transform> {
                Ok(match self {
                    $( Self::$variant(config) => Transform::$variant(config.build(ctx)?), )*
                })
            }
        }

        /// A built transform. Cloned once per worker thread.
        #[derive(Debug, Clone)]
        pub enum Transform {
            $( #[doc = concat!("A `", $name, "` transform.")] $variant($built), )*
        }

        impl Transform {
            /// The `type:` name.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $( Self::$variant(_) => $name, )*
                }
            }

            /// Transforms `events` (in stream order) and appends the results to `out`, in
            /// order.
            pub fn process(&mut self, events: Vec<Event>, out: &mut Vec<Event>) {
                match self {
                    $( Self::$variant(t) => t.process(events, out), )*
                }
            }

            /// Whether [`Self::tick`] does anything (a stateful transform): the workers of a
            /// pipeline with one wake every 100 ms to call it, the others only for batches.
            pub fn ticks(&self) -> bool {
                match self {
                    $( Self::$variant(_) => <$built>::TICKS, )*
                }
            }

            /// Periodic hook (at least every 100 ms): emit what is due (e.g. metric totals).
            pub fn tick(&mut self, now: Instant, out: &mut Vec<Event>) {
                match self {
                    $( Self::$variant(t) => t.tick(now, out), )*
                }
            }

            /// At shutdown, after the last batch: emit anything still held.
            pub fn flush(&mut self, out: &mut Vec<Event>) {
                match self {
                    $( Self::$variant(t) => t.flush(out), )*
                }
            }
        }
    };
}

/// Keeps the events `keep` returns true for, changed in place, and hands them on in `out`:
/// the batch's own vector when `out` is empty (the worker's case), else appended. Every
/// transform passes events on through this, so an event is not moved from one vector into
/// another (about a hundred bytes each, and the writes to a second vector per batch).
pub(crate) fn retain_into(
    mut events: Vec<Event>,
    out: &mut Vec<Event>,
    keep: impl FnMut(&mut Event) -> bool,
) {
    events.retain_mut(keep);
    if out.is_empty() {
        *out = events;
    } else {
        out.append(&mut events);
    }
}

/// The empty `tick` and `flush` of a stateless transform. A stateful transform defines
/// inherent methods (and a `TICKS` constant) of the same names, which resolution prefers.
pub trait Emit {
    /// `tick` does nothing (a stateful transform's inherent `TICKS` says `true`).
    const TICKS: bool = false;
    /// Emits nothing.
    fn tick(&mut self, _now: Instant, _out: &mut Vec<Event>) {}
    /// Emits nothing.
    fn flush(&mut self, _out: &mut Vec<Event>) {}
}

impl<T> Emit for T {}

transforms! {
    /// Named regex captures into fields (`type: parse_regex`).
    "parse_regex" => ParseRegex(parse_regex::ParseRegexConfig, parse_regex::ParseRegex),
    /// A JSON document into fields (`type: parse_json`).
    "parse_json" => ParseJson(parse_json::ParseJsonConfig, parse_json::ParseJson),
    /// `key=value` pairs into fields (`type: parse_logfmt`).
    "parse_logfmt" => ParseLogfmt(parse_logfmt::ParseLogfmtConfig, parse_logfmt::ParseLogfmt),
    /// A field's time becomes the event time (`type: parse_timestamp`).
    "parse_timestamp" => ParseTimestamp(timestamp::ParseTimestampConfig, timestamp::ParseTimestamp),
    /// Sets fields, with templates (`type: set`).
    "set" => Set(fields::SetConfig, fields::Set),
    /// Removes fields (`type: remove`).
    "remove" => Remove(fields::RemoveConfig, fields::Remove),
    /// Renames fields (`type: rename`).
    "rename" => Rename(fields::RenameConfig, fields::Rename),
    /// Keeps events matching a condition (`type: filter`).
    "filter" => Filter(filter::FilterConfig, filter::Filter),
    /// Keeps one event or key in N (`type: sample`).
    "sample" => Sample(sample::SampleConfig, sample::Sample),
    /// At most N events per window (`type: throttle`).
    "throttle" => Throttle(throttle::ThrottleConfig, throttle::Throttle),
    /// Counters, gauges and histograms from logs (`type: log_to_metric`).
    "log_to_metric" => LogToMetric(to_metric::LogToMetricConfig, to_metric::LogToMetric),
    /// Pod labels, annotations, owners from the Kubernetes API (`type: kubernetes_metadata`).
    "kubernetes_metadata" => KubernetesMetadata(kubernetes_metadata::KubernetesMetadataConfig, kubernetes_metadata::KubernetesMetadata),
}

impl TransformConfig {
    /// The kinds of event that can come out, given the kinds that go in.
    pub fn kinds_out(&self, input: Kinds) -> Kinds {
        match self {
            TransformConfig::LogToMetric(config) if input.logs => Kinds {
                logs: !config.drop_logs,
                metrics: true,
            },
            _ => input,
        }
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::yaml::Named;

    /// Builds one transform from its YAML (flow or block style), with a unique context.
    pub(crate) fn build(yaml: &str) -> anyhow::Result<Transform> {
        let named: Named<TransformConfig> = crate::yaml::from_str(yaml, "test.yaml")?;
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
            let named: Named<TransformConfig> = crate::yaml::from_str(yaml, "test.yaml").unwrap();
            assert_eq!(named.config.type_name(), type_name);
            assert!(TransformConfig::TYPES.contains(&type_name));
            build(yaml).unwrap_or_else(|e| panic!("{yaml}: {e:#}"));
        }
        assert!(build("{ type: parse_xml }").is_err());
        assert!(build("{ type: sample, rate: 0 }").is_err());
    }

    /// The list's dispatch reaches a stateful transform's own `tick` and `flush`, and the
    /// empty defaults of the others.
    #[test]
    fn tick_and_flush_reach_stateful_transforms_only() {
        let event = || Event::Log(crate::event::LogEvent::new("x"));
        let mut counter =
            build("{ type: log_to_metric, metrics: [ { type: counter, name: n } ] }").unwrap();
        let mut out = Vec::new();
        counter.process(vec![event()], &mut out);
        out.clear();
        counter.flush(&mut out);
        assert_eq!(out.len(), 1, "log_to_metric's flush emits its totals");
        let later = Instant::now() + std::time::Duration::from_secs(3600);
        counter.process(vec![event()], &mut out);
        out.clear();
        counter.tick(later, &mut out);
        assert_eq!(
            out.len(),
            1,
            "log_to_metric's tick emits once its interval passed"
        );
        let mut stateless = build("{ type: set, fields: { a: b } }").unwrap();
        stateless.tick(later, &mut out);
        stateless.flush(&mut out);
        assert_eq!(out.len(), 1, "a stateless transform emits nothing");
        assert!(counter.ticks() && !stateless.ticks());
        let enrich = build("{ type: kubernetes_metadata, api_url: 'http://127.0.0.1:9' }")
            .expect("builds without reaching the API server");
        assert!(enrich.ticks(), "its tick starts the watcher");
    }
}
