//! `type: file`'s settings (`FileConfig`) and building them into a [`FileSource`].

use super::*;

/// Where to start in a file never seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// From the first byte.
    #[default]
    Beginning,
    /// From the current end (only new lines).
    End,
}

/// `type: file` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Absolute path globs of files to read (`*`, `?`, `[..]`, `{a,b}`, and `**` for any
    /// depth), e.g. `["/var/log/**/*.log"]`.
    pub include: Vec<String>,
    /// Globs of paths not to read, even if included. Compressed files (`.gz`, `.bz2`,
    /// `.xz`, `.zst`, `.zip`, `.lz4`) are never read.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Where to start in files found at startup that have no checkpoint: `beginning`
    /// (default) or `end`. Files appearing later are always read from their beginning.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// Skip files without a checkpoint whose last modification is older than this.
    #[serde(default)]
    pub ignore_older_secs: Option<u64>,
    /// Bytes at the start of a file hashed into its fingerprint.
    #[serde(default = "default_fingerprint_bytes")]
    pub fingerprint_bytes: u64,
    /// How often directories are scanned for new, rotated and deleted files, in
    /// milliseconds. Unset: every second while change notifications do not cover every
    /// root, every 10 s while they do (they find changes; the scan is the safety net, and
    /// it stats every matched file).
    #[serde(default)]
    pub glob_interval_ms: Option<u64>,
    /// Longest line kept, in bytes; see `oversize`.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// Longer lines are cut to `max_line_bytes` (`truncate`, default) or dropped (`drop`);
    /// counted either way.
    #[serde(default)]
    pub oversize: Oversize,
    /// Join lines into multiline records (stack traces); see the multiline keys.
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
    /// Line format: `none` (default), `cri` or `docker` (Kubernetes container logs, with
    /// partial lines reassembled and `stream` and the timestamp decoded).
    #[serde(default)]
    pub format: LineFormat,
    /// Put the byte offset of each line's start in this field.
    #[serde(default)]
    pub offset_field: Option<String>,
    /// Close a file after this long without new data; it is reopened when it changes.
    #[serde(default = "default_close_idle_secs")]
    pub close_idle_secs: u64,
    /// Most files open at once; unset: 8192, or fewer under a lower open-file limit.
    #[serde(default)]
    pub max_open_files: Option<usize>,
    /// How long a rotated-away or deleted file is kept open at its end for late writes
    /// before it is let go, in milliseconds.
    #[serde(default = "default_rotate_wait_ms")]
    pub rotate_wait_ms: u64,
    /// Most lines per batch.
    #[serde(default = "default_batch_lines")]
    pub batch_lines: usize,
    /// Most bytes read per batch (and per file per turn).
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
}

fn default_fingerprint_bytes() -> u64 {
    1024
}
fn default_max_line_bytes() -> usize {
    100 * 1024
}
fn default_close_idle_secs() -> u64 {
    30
}
/// `max_open_files` unset: 8192, or what the hard open-file limit leaves beside the
/// agent's other descriptors. Files the pipeline has not finished hold their descriptors
/// (deleted ones too: their content is read through them), so a low cap is where pod churn
/// during a sink outage loses files deleted before they could be opened; an open file
/// costs a descriptor and a small reading state, not a buffer.
fn default_max_open_files() -> usize {
    const DEFAULT: usize = 8192;
    crate::limits::open_files_possible()
        .map(|limit| usize::try_from(limit.saturating_sub(crate::limits::RESERVED_DESCRIPTORS)))
        .and_then(Result::ok)
        .map_or(DEFAULT, |room| room.clamp(64, DEFAULT))
}
fn default_rotate_wait_ms() -> u64 {
    5000
}
fn default_batch_lines() -> usize {
    1000
}
fn default_batch_bytes() -> usize {
    1024 * 1024
}

impl FileConfig {
    /// Validates the settings and compiles globs and patterns.
    pub fn build(&self) -> anyhow::Result<FileSource> {
        use crate::bounds::{self, check};
        check(
            "include (number of globs)",
            self.include.len(),
            1..=bounds::MAX_GLOBS,
        )?;
        check(
            "exclude (number of globs)",
            self.exclude.len(),
            0..=bounds::MAX_GLOBS,
        )?;
        bounds::check_opt(
            "ignore_older_secs",
            self.ignore_older_secs,
            1..=100 * bounds::MAX_SECS,
        )?;
        check(
            "fingerprint_bytes",
            self.fingerprint_bytes,
            16..=bounds::MAX_FINGERPRINT_BYTES,
        )?;
        bounds::check_opt(
            "glob_interval_ms",
            self.glob_interval_ms,
            1..=bounds::MAX_MS,
        )?;
        check("max_line_bytes", self.max_line_bytes, 1..=bounds::MAX_BYTES)?;
        check(
            "close_idle_secs",
            self.close_idle_secs,
            0..=bounds::MAX_SECS,
        )?;
        bounds::check_opt(
            "max_open_files",
            self.max_open_files,
            1..=bounds::MAX_HANDLES,
        )?;
        check("rotate_wait_ms", self.rotate_wait_ms, 0..=bounds::MAX_MS)?;
        check("batch_lines", self.batch_lines, 1..=bounds::MAX_EVENTS)?;
        check("batch_bytes", self.batch_bytes, 1..=bounds::MAX_BYTES)?;
        let matcher = Matcher::new(&self.include, &self.exclude)?;
        if let Some(name) = &self.offset_field {
            anyhow::ensure!(
                !name.is_empty() && name != "message" && name != "file",
                "offset_field must be a field name other than message and file"
            );
        }
        let multiline = match &self.multiline {
            Some(config) => Some(config.build()?),
            None => None,
        };
        Ok(FileSource {
            matcher,
            settings: Arc::new(ReadSettings {
                max_line_bytes: self.max_line_bytes,
                oversize: self.oversize,
                format: self.format,
                multiline,
                offset_field: self.offset_field.clone(),
                batch_lines: self.batch_lines,
                batch_bytes: self.batch_bytes,
                stamps: stamps::StampJournal::default(),
            }),
            read_from: self.read_from,
            ignore_older: self.ignore_older_secs.map(Duration::from_secs),
            fingerprint_bytes: self.fingerprint_bytes,
            glob_interval: self.glob_interval_ms.map(Duration::from_millis),
            close_idle: Duration::from_secs(self.close_idle_secs),
            max_open_files: self.max_open_files.unwrap_or_else(default_max_open_files),
            rotate_wait: Duration::from_millis(self.rotate_wait_ms),
        })
    }
}
