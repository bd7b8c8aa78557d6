//! `type: blackhole`: counts events and discards them, settling each batch at once. For
//! benchmarks and for measuring the pipeline without an output.

use serde::Deserialize;

use super::{SinkContext, SinkInput};

/// `type: blackhole` settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}

impl BlackholeConfig {
    /// Builds the sink.
    pub fn build(&self) -> anyhow::Result<Blackhole> {
        Ok(Blackhole {})
    }
}

/// A built blackhole sink.
#[derive(Debug)]
pub struct Blackhole {}

impl Blackhole {
    /// Settles every batch as delivered.
    pub async fn run(self, mut input: SinkInput, ctx: SinkContext) {
        while let Some(batch) = input.recv().await {
            ctx.metrics.events_in.add(batch.events.len() as u64);
            ctx.delivered(batch);
        }
    }
}
