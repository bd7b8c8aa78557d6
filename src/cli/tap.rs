//! `sluice tap`: prints live events of a running agent as JSON lines, from its API's
//! `GET /tap` (see [`sluice::tap`]): one line per event,
//! `{"pipeline":…,"component":…,"event":{…}}`. Notices of events the tap lost because
//! this reader was slower than the pipeline go to stderr.

use std::io::Write as _;

use anyhow::Context as _;

use super::api::{runtime, Target};

/// What to tap, and where.
pub struct Options {
    /// The agent's API.
    pub target: Target,
    /// Only this pipeline.
    pub pipeline: Option<String>,
    /// Only this component (source: events entering the transforms; transform: its
    /// output; sink: what it takes). Default: what every sink takes.
    pub component: Option<String>,
    /// Stop after this many events.
    pub limit: Option<u64>,
}

/// Streams events to stdout until the limit, the agent's end, or an interrupt.
pub fn run(mut options: Options) -> anyhow::Result<()> {
    options.target = options.target.resolve("taps")?;
    runtime()?.block_on(stream(options))
}

async fn stream(options: Options) -> anyhow::Result<()> {
    let target = &options.target;
    let mut url = target.url("/tap")?;
    {
        let mut query = url.query_pairs_mut();
        if let Some(pipeline) = &options.pipeline {
            query.append_pair("pipeline", pipeline);
        }
        if let Some(component) = &options.component {
            query.append_pair("component", component);
        }
        if let Some(limit) = options.limit {
            query.append_pair("limit", &limit.to_string());
        }
    }
    let mut response = target
        .request(reqwest::Method::GET, url.clone())?
        .send()
        .await
        .with_context(|| target.unreachable())?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("{url}: {status}: {}", body.trim());
    }
    let mut stdout = std::io::stdout().lock();
    let (mut pending, mut printed) = (Vec::new(), 0u64);
    while let Some(chunk) = response.chunk().await? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = memchr::memchr(b'\n', &pending) {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if line.starts_with(b"{\"error\":") {
                // The agent ended the tap: its pipeline or component is gone (a reload).
                let text = String::from_utf8_lossy(&line);
                let reason: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                stdout.flush().or_else(quiet_broken_pipe)?;
                anyhow::bail!(
                    "the agent ended the tap: {}",
                    reason["error"].as_str().unwrap_or("?")
                );
            }
            if line.starts_with(b"{\"dropped\":") {
                let text = String::from_utf8_lossy(&line);
                let n: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                eprintln!(
                    "sluice tap: {} events not shown: this reader was slower than the pipeline",
                    n["dropped"]
                );
                continue;
            }
            if let Err(error) = stdout.write_all(&line) {
                // `sluice tap | head`: the reader is gone, which is no failure.
                return quiet_broken_pipe(error);
            }
            printed += 1;
            if options.limit.is_some_and(|limit| printed >= limit) {
                return stdout.flush().or_else(quiet_broken_pipe);
            }
        }
        stdout.flush().or_else(quiet_broken_pipe)?;
    }
    Ok(())
}

fn quiet_broken_pipe(error: std::io::Error) -> anyhow::Result<()> {
    match error.kind() {
        std::io::ErrorKind::BrokenPipe => Ok(()),
        _ => Err(error.into()),
    }
}
