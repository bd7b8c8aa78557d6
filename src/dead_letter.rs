//! The dead-letter file: events a sink rejected for good, kept so nothing is lost silently.
//!
//! `<data_dir>/dead_letter.jsonl`, one JSON object per line:
//! `{"time":..,"pipeline":..,"sink":..,"reason":..,"event":{..}}`. When it would grow past
//! `max_bytes` it is renamed to `dead_letter.jsonl.1` (replacing the older one) and a new
//! file started, so disk use is bounded by twice the cap.
//!
//! A write returns only once its records are fsynced (and, for a new file, its directory
//! entry): the caller settles the batch after it, so the checkpoint never moves past events
//! that are neither delivered nor on disk. A write that fails (full disk) is cut back to
//! the file's previous end, so no torn line is left for the next record, and its events are
//! counted as lost (`sluice_dead_letter_lost_events_total`), never as written. A rotation
//! that fails (the rename) is logged and the file grows past the cap until a rotation,
//! tried again at most once a minute, succeeds: later dead letters are not lost with it.
//!
//! Owns: the file and its size cap. Never: decides what is rejected (sinks do).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::event::{Event, Timestamp};
use crate::telemetry::{registry, Counter};

/// Default cap on the dead-letter file: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// After a failed rotation, how long the file grows past its cap before the next try.
const ROTATE_RETRY_AFTER: Duration = Duration::from_secs(60);

struct Writer {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_bytes: u64,
    /// When a rotation last failed: not tried again for [`ROTATE_RETRY_AFTER`].
    rotate_failed_at: Option<Instant>,
}

/// A shared handle to the agent's dead-letter file.
#[derive(Clone)]
pub struct DeadLetters {
    writer: Option<Arc<Mutex<Writer>>>,
    written: Counter,
    lost: Counter,
}

impl DeadLetters {
    /// Dead letters go to `<data_dir>/dead_letter.jsonl`, capped at `max_bytes`.
    pub fn open(data_dir: &Path, max_bytes: u64) -> Self {
        let path = data_dir.join("dead_letter.jsonl");
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        DeadLetters {
            writer: Some(Arc::new(Mutex::new(Writer {
                path,
                file: None,
                size,
                max_bytes,
                rotate_failed_at: None,
            }))),
            written: dead_letter_counter(),
            lost: lost_counter(),
        }
    }

    /// A handle that only counts (tests, `validate`).
    pub fn disabled() -> Self {
        DeadLetters {
            writer: None,
            written: dead_letter_counter(),
            lost: lost_counter(),
        }
    }

    /// Records `events` rejected by `sink` of `pipeline` for `reason`, durably (fsynced)
    /// before it returns. Returns whether they reached the file; a write failure is logged
    /// at ERROR and the events are counted as lost.
    pub fn write<'a>(
        &self,
        pipeline: &str,
        sink: &str,
        reason: &str,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> bool {
        let events = events.into_iter();
        let Some(writer) = &self.writer else {
            self.written.add(events.count() as u64);
            return true;
        };
        let mut body = Vec::new();
        let time = Timestamp::now().to_rfc3339();
        let mut n_events = 0u64;
        for event in events {
            n_events += 1;
            let event_json = match event {
                Event::Log(log) => serde_json::Value::Object(log.to_json_map()),
                Event::Metric(metric) => serde_json::json!({
                    "name": metric.name,
                    "labels": metric.labels,
                    "value": format!("{:?}", metric.value),
                    "timestamp": metric.timestamp.to_rfc3339(),
                }),
            };
            let record = serde_json::json!({
                "time": time, "pipeline": pipeline, "sink": sink,
                "reason": reason, "event": event_json,
            });
            let _ = serde_json::to_writer(&mut body, &record);
            body.push(b'\n');
        }
        let mut writer = writer.lock().unwrap_or_else(|p| p.into_inner());
        match writer.append(&body) {
            Ok(()) => {
                self.written.add(n_events);
                true
            }
            Err(error) => {
                self.lost.add(n_events);
                tracing::error!(
                    file = %writer.path.display(), %error, n_events, pipeline, sink, reason,
                    "dead-letter write failed; rejected events are lost"
                );
                false
            }
        }
    }
}

fn dead_letter_counter() -> Counter {
    registry().counter(
        "sluice_dead_letter_events_total",
        "Events written (and fsynced) to the dead-letter file.",
        &[],
    )
}

fn lost_counter() -> Counter {
    registry().counter(
        "sluice_dead_letter_lost_events_total",
        "Events rejected for good that could not be written to the dead-letter file: lost.",
        &[],
    )
}

impl Writer {
    fn append(&mut self, body: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + body.len() as u64 > self.max_bytes {
            self.rotate();
        }
        let mut new_file = false;
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            // What is on disk is the truth (an earlier run, a failed write cut back).
            self.size = file.metadata()?.len();
            self.file = Some(file);
            new_file = true;
        }
        let Some(file) = &mut self.file else {
            return Err(io::Error::other("dead-letter file not open"));
        };
        let written = file.write_all(body).and_then(|()| file.sync_data());
        if let Err(error) = written {
            // Cut a partial record away so the next one starts on a line of its own, and
            // open the file afresh next time.
            let _ = file.set_len(self.size);
            self.file = None;
            return Err(error);
        }
        self.size += body.len() as u64;
        if new_file {
            // The file may be new: make its directory entry durable too.
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        Ok(())
    }

    /// Renames the full file to `.1`. On failure the current file is kept (growing past the
    /// cap) rather than losing what comes next.
    fn rotate(&mut self) {
        if self
            .rotate_failed_at
            .is_some_and(|at| at.elapsed() < ROTATE_RETRY_AFTER)
        {
            return;
        }
        self.file = None;
        match fs::rename(&self.path, self.path.with_extension("jsonl.1")) {
            Ok(()) => {
                self.size = 0;
                self.rotate_failed_at = None;
            }
            Err(error) => {
                self.rotate_failed_at = Some(Instant::now());
                tracing::error!(
                    file = %self.path.display(), %error, max_bytes = self.max_bytes,
                    "dead-letter rotation failed; the file grows past its cap until a retry succeeds"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::LogEvent;

    #[test]
    fn writes_json_lines_and_caps_size() {
        let dir = tempfile::tempdir().unwrap();
        let dead = DeadLetters::open(dir.path(), 400);
        let events = vec![Event::Log(LogEvent::new("bad line"))];
        for _ in 0..5 {
            dead.write("p", "es", "mapper_parsing_exception", &events);
        }
        let current = fs::read_to_string(dir.path().join("dead_letter.jsonl")).unwrap();
        let first: serde_json::Value =
            serde_json::from_str(current.lines().next().unwrap()).unwrap();
        assert_eq!(first["reason"], "mapper_parsing_exception");
        assert_eq!(first["event"]["message"], "bad line");
        assert!(current.len() <= 400);
        assert!(dir.path().join("dead_letter.jsonl.1").exists());
    }

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Regression (issue 15): one failed rename of a full file lost every later dead letter.
    #[test]
    fn failed_rotation_keeps_later_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory where the rotated file goes: the rename fails.
        fs::create_dir_all(dir.path().join("dead_letter.jsonl.1/x")).unwrap();
        let dead = DeadLetters::open(dir.path(), 400);
        let events = vec![Event::Log(LogEvent::new("bad line"))];
        for _ in 0..5 {
            assert!(dead.write("p", "es", "http_400", &events));
        }
        let current = lines(&dir.path().join("dead_letter.jsonl"));
        assert_eq!(current.len(), 5, "nothing lost, past the cap");
        for line in current {
            serde_json::from_str::<serde_json::Value>(&line).unwrap();
        }
    }

    /// Regression (issue 15): on a full disk the written counter said 3,000 dead letters
    /// while 267 reached the disk.
    #[test]
    fn failed_write_counts_as_lost_not_written() {
        let dir = tempfile::tempdir().unwrap();
        // Every write to /dev/full fails with ENOSPC, as on a full disk.
        std::os::unix::fs::symlink("/dev/full", dir.path().join("dead_letter.jsonl")).unwrap();
        let dead = DeadLetters::open(dir.path(), DEFAULT_MAX_BYTES);
        let events = vec![Event::Log(LogEvent::new("rejected"))];
        assert!(!dead.write("p", "es", "http_400", &events));
    }
}
