//! Transforms: what happens to events between sources and sinks. One file per transform
//! type; this file lists them (the closed [`TransformConfig`] enum and its `match`es).
//!
//! A transform turns one event into zero or more and never fails: a line it cannot handle
//! is passed on unchanged and counted. Transforms run on the pipeline's worker threads, each
//! worker with its own clone of the chain (state that must be shared across workers, such as
//! metric totals, lives behind an `Arc` inside the transform). Stateful transforms emit on
//! [`Transform::tick`] (called at least every 100 ms) and on [`Transform::flush`] at shutdown.

use std::time::Instant;

use crate::config::yaml::TaggedEnum;
use crate::event::Event;
use crate::telemetry::ComponentMetrics;

/// The configuration of one transform, selected by `type:`.
#[derive(Debug, Clone, PartialEq)]
pub enum TransformConfig {}

impl TaggedEnum for TransformConfig {
    const KIND: &'static str = "transform";
    const TYPES: &'static [&'static str] = &[];

    fn deserialize_variant<'de, A: serde::de::MapAccess<'de>>(
        type_name: &str,
        _body: &mut A,
    ) -> Result<Self, A::Error> {
        Err(serde::de::Error::unknown_variant(type_name, Self::TYPES))
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

impl TransformConfig {
    /// The `type:` name.
    pub fn type_name(&self) -> &'static str {
        match *self {}
    }

    /// Validates and builds the runtime transform (regexes compiled, names checked).
    pub fn build(&self, _ctx: &TransformContext) -> anyhow::Result<Transform> {
        match *self {}
    }
}

/// A built transform. Cloned once per worker thread.
#[derive(Debug, Clone)]
pub enum Transform {}

impl Transform {
    /// Transforms `events` (in stream order) and appends the results to `out`, in order.
    pub fn process(&mut self, events: Vec<Event>, out: &mut Vec<Event>) {
        let _ = (events, out);
        match *self {}
    }

    /// Periodic hook (at least every 100 ms): emit what is due (e.g. metric totals).
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Event>) {
        let _ = (now, out);
        match *self {}
    }

    /// At shutdown, after the last batch: emit anything still held.
    pub fn flush(&mut self, out: &mut Vec<Event>) {
        let _ = out;
        match *self {}
    }
}
