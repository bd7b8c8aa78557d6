//! `type: journald`: reads the systemd journal's files in-process (no `journalctl`
//! subprocess, no libsystemd), follows new entries, and checkpoints its position only after
//! every sink delivered, like the file source.
//!
//! - `file.rs` reads one journal file (regular and compact mode); `decompress.rs` its
//!   xz/lz4/zstd data objects.
//! - `discovery.rs` lists and watches the journal directories; `reader.rs` keeps the files
//!   open across rotation and vacuum and interleaves their entries in journalctl's order.
//! - `filter.rs` keeps or drops an entry (units, matches, priority); `entry.rs` turns one
//!   into an event.
//!
//! Position model (the committed-prefix rule of files, per journal file): each journal file
//! is a stream keyed by its `file_id` (which a rotation's rename keeps), and its position is
//! the number of entries read from its entry-array chain. A batch carries one
//! [`crate::ack::AckRef`] per file it read from, so after `kill -9` every file resumes at its
//! first undelivered entry.
//!
//! Owns: the reader thread of one source. Never: writes to the journal, or spawns a process.

mod decompress;
mod discovery;
mod entry;
mod file;
mod filter;
mod reader;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Running, SourceContext};

pub use file::{Error as FileError, Header, JournalFile};

/// Where to start reading a journal file that has no saved position when the source starts
/// for the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// Every entry the journal holds.
    Beginning,
    /// Only entries written after the first start (later starts resume from checkpoints).
    #[default]
    End,
}

/// `type: journald` settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct JournaldConfig {
    /// A journal directory to read (its `*.journal` files and those one level below, as
    /// `journalctl -D`). Unset (and no `files`): the system journal, `/var/log/journal` and
    /// `/run/log/journal`.
    #[serde(default)]
    pub directory: Option<PathBuf>,
    /// Journal files to read (as `journalctl --file`), instead of a directory.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Read the journals of every machine id under the system journal directories, not only
    /// this machine's (`/etc/machine-id`).
    #[serde(default)]
    pub all_machines: bool,
    /// Only entries of the current boot (`journalctl -b`).
    #[serde(default)]
    pub current_boot_only: bool,
    /// Where the first start begins: `beginning` or `end` (the default).
    #[serde(default)]
    pub read_from: ReadFrom,
    /// Keep only entries of these units (`journalctl -u`; `.service` implied).
    #[serde(default)]
    pub include_units: Vec<String>,
    /// Drop entries of these units.
    #[serde(default)]
    pub exclude_units: Vec<String>,
    /// Keep only entries whose fields match: `FIELD: [values]` (values of one field are
    /// alternatives, all fields must match).
    #[serde(default)]
    pub include_matches: BTreeMap<String, Vec<String>>,
    /// Drop entries where any `FIELD: [values]` matches.
    #[serde(default)]
    pub exclude_matches: BTreeMap<String, Vec<String>>,
    /// Keep only entries of this priority or more severe (`journalctl -p`): `0`-`7` or
    /// `emerg`, `alert`, `crit`, `err`, `warning`, `notice`, `info`, `debug`.
    #[serde(default)]
    pub priority: Option<String>,
    /// Keep every journal field of an entry under its journal name (`_SYSTEMD_CGROUP`,
    /// `CODE_FILE`, ...), besides the mapped ones.
    #[serde(default)]
    pub all_fields: bool,
    /// Entries per batch, at most.
    #[serde(default = "default_batch_events")]
    pub batch_events: usize,
    /// How often the files are checked without an inotify event (the safety net), in
    /// milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
}

fn default_batch_events() -> usize {
    1000
}

fn default_poll_interval_ms() -> u64 {
    1000
}

/// The directories of the system journal: persistent, then volatile.
pub const SYSTEM_JOURNAL_DIRS: [&str; 2] = ["/var/log/journal", "/run/log/journal"];

impl JournaldConfig {
    /// Validates the settings.
    pub fn build(&self) -> anyhow::Result<Journald> {
        anyhow::ensure!(
            self.directory.is_none() || self.files.is_empty(),
            "set either directory or files, not both"
        );
        use crate::bounds::{self, check};
        check("batch_events", self.batch_events, 1..=bounds::MAX_EVENTS)?;
        check(
            "poll_interval_ms",
            self.poll_interval_ms,
            1..=bounds::MAX_MS,
        )?;
        if let Some(directory) = &self.directory {
            anyhow::ensure!(
                directory.is_absolute(),
                "directory must be an absolute path, got {}",
                directory.display()
            );
        }
        for file in &self.files {
            anyhow::ensure!(
                file.is_absolute(),
                "files: {} must be an absolute path",
                file.display()
            );
        }
        let filter = filter::Filter::new(
            &self.include_units,
            &self.exclude_units,
            &self.include_matches,
            &self.exclude_matches,
            self.priority.as_deref(),
        )?;
        let location = if !self.files.is_empty() {
            discovery::Location::Files(self.files.clone())
        } else if let Some(directory) = &self.directory {
            discovery::Location::Directory(directory.clone())
        } else {
            discovery::Location::System {
                all_machines: self.all_machines,
            }
        };
        Ok(Journald {
            settings: reader::Settings {
                location,
                filter,
                current_boot_only: self.current_boot_only,
                read_from: self.read_from,
                all_fields: self.all_fields,
                batch_events: self.batch_events,
                poll_interval: Duration::from_millis(self.poll_interval_ms),
            },
        })
    }
}

/// A built journald source.
#[derive(Debug)]
pub struct Journald {
    settings: reader::Settings,
}

impl Journald {
    /// Each journal file's position is checkpointed after delivery.
    pub const REPLAYABLE: bool = true;

    /// Starts reading on its own thread.
    pub fn start(self, ctx: SourceContext) -> anyhow::Result<Running> {
        Running::thread("journald", ctx, move |ctx| reader::run(self.settings, ctx))
    }
}
