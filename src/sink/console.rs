//! `type: console`: writes events to standard output, one per line (JSON or plain text).
//! The embedded default pipeline uses it so a newcomer sees events at once.

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::{LineEncoding, SinkContext, SinkInput};

/// `type: console` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// `json` (default) or `text` (the message only).
    #[serde(default)]
    pub encoding: LineEncoding,
}

impl ConsoleConfig {
    /// Builds the sink.
    pub fn build(&self) -> anyhow::Result<Console> {
        Ok(Console {
            encoding: self.encoding,
        })
    }
}

/// A built console sink.
#[derive(Debug)]
pub struct Console {
    encoding: LineEncoding,
}

impl Console {
    /// Writes every batch to stdout, then settles it.
    pub async fn run(self, mut input: SinkInput, ctx: SinkContext) {
        let mut stdout = tokio::io::stdout();
        let mut buffer = Vec::with_capacity(64 * 1024);
        while let Some(batch) = input.recv().await {
            ctx.metrics.events_in.add(batch.events.len() as u64);
            buffer.clear();
            for event in &batch.events {
                self.encoding.encode(event, &mut buffer);
            }
            let written = async {
                stdout.write_all(&buffer).await?;
                stdout.flush().await
            };
            match written.await {
                Ok(()) => ctx.delivered(batch),
                // stdout closed (a pipe whose reader went away): nothing can be delivered.
                Err(error) => {
                    tracing::error!(%error, "console write failed; events not delivered");
                    ctx.health.fail(format!("stdout write failed: {error}"));
                    return;
                }
            }
        }
    }
}
