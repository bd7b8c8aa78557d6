//! The dead-letter file: events a sink rejected for good, kept so nothing is lost silently.
//!
//! `<data_dir>/dead_letter.jsonl`, one JSON object per line:
//! `{"time":..,"pipeline":..,"sink":..,"reason":..,"event":{..}}`. When it would grow past
//! `max_bytes` it is renamed to `dead_letter.jsonl.1` (replacing the older one) and a new
//! file started, so disk use is bounded by twice the cap.
//!
//! Owns: the file and its size cap. Never: decides what is rejected (sinks do).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::event::{Event, Timestamp};
use crate::telemetry::{registry, Counter};

/// Default cap on the dead-letter file: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

struct Writer {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_bytes: u64,
}

/// A shared handle to the agent's dead-letter file.
#[derive(Clone)]
pub struct DeadLetters {
    writer: Option<Arc<Mutex<Writer>>>,
    written: Counter,
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
            }))),
            written: dead_letter_counter(),
        }
    }

    /// A handle that only counts (tests, `validate`).
    pub fn disabled() -> Self {
        DeadLetters {
            writer: None,
            written: dead_letter_counter(),
        }
    }

    /// Records `events` rejected by `sink` of `pipeline` for `reason`. A write failure is
    /// logged at ERROR (the events are then lost, and counted as such).
    pub fn write<'a>(
        &self,
        pipeline: &str,
        sink: &str,
        reason: &str,
        events: impl IntoIterator<Item = &'a Event>,
    ) {
        let events = events.into_iter();
        let Some(writer) = &self.writer else {
            self.written.add(events.count() as u64);
            return;
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
        self.written.add(n_events);
        let mut writer = writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(error) = writer.append(&body) {
            tracing::error!(
                file = %writer.path.display(), %error, n_events,
                "dead-letter write failed; rejected events are lost"
            );
        }
    }
}

fn dead_letter_counter() -> Counter {
    registry().counter(
        "sluice_dead_letter_events_total",
        "Events written to the dead-letter file.",
        &[],
    )
}

impl Writer {
    fn append(&mut self, body: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + body.len() as u64 > self.max_bytes {
            self.file = None;
            fs::rename(&self.path, self.path.with_extension("jsonl.1"))?;
            self.size = 0;
        }
        if self.file.is_none() {
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        if let Some(file) = &mut self.file {
            file.write_all(body)?;
            self.size += body.len() as u64;
        }
        Ok(())
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
}
