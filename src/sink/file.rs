//! `type: file`: appends events to a file, one JSON object (or message) per line. A batch is
//! settled once its bytes are written (and fsynced, with `sync: true`). A failing write
//! (disk full, permissions) is retried with backoff, never skipped: the sources' files are
//! the buffer meanwhile. After a crash mid-write the file may end in a torn line; the sink
//! ends it with a newline before appending, so every event it writes is a whole line.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::{LineEncoding, SinkContext, SinkInput};

/// `type: file` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// File to append to (created if missing, with its directory).
    pub path: PathBuf,
    /// `json` (default) or `text`.
    #[serde(default)]
    pub encoding: LineEncoding,
    /// fsync after every batch before settling it.
    #[serde(default)]
    pub sync: bool,
}

impl FileSinkConfig {
    /// Builds the sink.
    pub fn build(&self) -> anyhow::Result<FileSink> {
        anyhow::ensure!(!self.path.as_os_str().is_empty(), "path must not be empty");
        Ok(FileSink {
            config: self.clone(),
        })
    }
}

/// A built file sink.
#[derive(Debug)]
pub struct FileSink {
    config: FileSinkConfig,
}

impl FileSink {
    async fn open(&self) -> std::io::Result<tokio::fs::File> {
        if let Some(dir) = self.config.path.parent() {
            if !dir.as_os_str().is_empty() {
                tokio::fs::create_dir_all(dir).await?;
            }
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.path)
            .await?;
        // A crash (kill -9, power loss) mid-write leaves a torn last line. Its events were
        // not settled and are written again; start them on a line of their own so no event
        // is ever glued to a fragment. Only regular files (not a FIFO or a terminal).
        let path = self.config.path.clone();
        let torn = tokio::task::spawn_blocking(move || ends_in_torn_line(&path))
            .await
            .unwrap_or(false);
        if torn {
            tracing::warn!(file = %self.config.path.display(), "file ends in a torn line (crash during a write); its events are written again after it");
            file.write_all(b"\n").await?;
        }
        Ok(file)
    }

    async fn write(&self, file: &mut Option<tokio::fs::File>, body: &[u8]) -> std::io::Result<()> {
        if file.is_none() {
            *file = Some(self.open().await?);
        }
        let Some(handle) = file.as_mut() else {
            unreachable!("file opened above")
        };
        let result = async {
            handle.write_all(body).await?;
            handle.flush().await?;
            if self.config.sync {
                handle.sync_data().await?;
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            *file = None;
        }
        result
    }

    /// Appends every batch, then settles it.
    pub async fn run(self, mut input: SinkInput, ctx: SinkContext) {
        let mut file = None;
        let mut body = Vec::with_capacity(256 * 1024);
        while let Some(batch) = input.recv().await {
            ctx.metrics.events_in.add(batch.events.len() as u64);
            body.clear();
            for event in &batch.events {
                self.config.encoding.encode(event, &mut body);
            }
            let mut backoff = Duration::from_millis(100);
            while let Err(error) = self.write(&mut file, &body).await {
                tracing::warn!(file = %self.config.path.display(), %error, "file sink write failed; retrying");
                ctx.health.fail(format!(
                    "write to {} failed: {error}",
                    self.config.path.display()
                ));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            ctx.health.ok();
            ctx.delivered(batch);
        }
    }
}

/// True when `path` is a non-empty regular file whose last byte is not a newline.
fn ends_in_torn_line(path: &std::path::Path) -> bool {
    use std::io::{Read, Seek};
    // Look before opening: opening a FIFO for reading would make us one of its readers.
    if !std::fs::metadata(path).is_ok_and(|meta| meta.is_file()) {
        return false;
    }
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let len = match file.metadata() {
        Ok(meta) if meta.is_file() => meta.len(),
        _ => return false,
    };
    let mut last = [0u8; 1];
    len > 0
        && file.seek(std::io::SeekFrom::Start(len - 1)).is_ok()
        && file.read_exact(&mut last).is_ok()
        && last[0] != b'\n'
}
