//! The dead-letter file: events a sink rejected for good, kept so nothing is lost silently.
//!
//! `<data_dir>/dead_letter.jsonl`, one JSON object per line:
//! `{"time":..,"pipeline":..,"sink":..,"reason":..,"event":{..}}`. When it would grow past
//! `max_bytes` it is renamed to `dead_letter.jsonl.1` (replacing the older one) and a new
//! file started, so disk use is bounded by twice the cap.
//!
//! One writer thread owns the file: sinks hand it their rejected events
//! ([`DeadLetters::write`]) and wait, without holding a runtime thread, until the records
//! are fsynced (and, for a new file, its directory entry). The sink settles its batch only
//! then, so the checkpoint never moves past events that are neither delivered nor on disk.
//!
//! A write that fails (a full disk) is cut back to the file's previous end, so no torn line
//! is left, and is tried again with a growing pause (1 s up to 30 s) until it succeeds:
//! meanwhile the sink waits (backpressure, never loss), `/health` fails under
//! `agent/dead_letters`, and the ERROR is logged once per failing stretch. Only when the
//! waiting sink gives up (the agent stops) are its events counted as not written
//! (`sluice_dead_letter_lost_events_total`); their batch stays unacknowledged, so a
//! replayable source reads them again. A rotation that fails (the rename) is logged and the
//! file grows past the cap until a rotation, tried again at most once a minute, succeeds.
//!
//! Owns: the file, its size cap and its writer thread. Never: decides what is rejected
//! (sinks do).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::event::{Event, Timestamp};
use crate::health::HealthCheck;
use crate::telemetry::{registry, Counter};

/// Default cap on the dead-letter file: 64 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// After a failed rotation, how long the file grows past its cap before the next try.
const ROTATE_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The first pause after a failed write; it doubles up to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_secs(1);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);
/// Write requests queued for the writer thread; a sink waits for room beyond them.
const QUEUE: usize = 16;

/// One sink's rejected events, grouped by reason, and whom to tell once they are on disk.
struct Request {
    pipeline: Arc<str>,
    sink: Arc<str>,
    rejected: Vec<(Arc<str>, Vec<Event>)>,
    done: oneshot::Sender<()>,
}

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
    queue: Option<mpsc::Sender<Request>>,
    written: Counter,
    lost: Counter,
}

impl DeadLetters {
    /// Dead letters go to `<data_dir>/dead_letter.jsonl`, capped at `max_bytes`, written by
    /// a thread started here (it ends when the last handle is dropped).
    pub fn open(data_dir: &Path, max_bytes: u64) -> io::Result<Self> {
        let path = data_dir.join("dead_letter.jsonl");
        let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let writer = Writer {
            path,
            file: None,
            size,
            max_bytes,
            rotate_failed_at: None,
        };
        let (queue, requests) = mpsc::channel(QUEUE);
        let (written, lost) = (dead_letter_counter(), lost_counter());
        let counters = (written.clone(), lost.clone());
        std::thread::Builder::new()
            .name("sluice-dead-letters".into())
            .spawn(move || writer.run(requests, &counters.0, &counters.1))?;
        Ok(DeadLetters {
            queue: Some(queue),
            written,
            lost,
        })
    }

    /// A handle that only counts (tests, `validate`).
    pub fn disabled() -> Self {
        DeadLetters {
            queue: None,
            written: dead_letter_counter(),
            lost: lost_counter(),
        }
    }

    /// Records the events `sink` of `pipeline` rejected, grouped by reason, and returns
    /// once they are on disk (fsynced): settle their batch only then. While the disk
    /// refuses, this waits (the writer retries); it returns false only when the writer is
    /// gone, and the events then count as not written. A sink that stops waiting (its task
    /// ended at the drain deadline) has its events counted by the writer.
    pub async fn write(
        &self,
        pipeline: &Arc<str>,
        sink: &Arc<str>,
        rejected: Vec<(Arc<str>, Vec<Event>)>,
    ) -> bool {
        let n_events: usize = rejected.iter().map(|(_, events)| events.len()).sum();
        if n_events == 0 {
            return true;
        }
        let Some(queue) = &self.queue else {
            self.written.add(n_events as u64);
            return true;
        };
        let (done, written) = oneshot::channel();
        let request = Request {
            pipeline: pipeline.clone(),
            sink: sink.clone(),
            rejected,
            done,
        };
        if queue.send(request).await.is_ok() && written.await.is_ok() {
            return true;
        }
        self.lost.add(n_events as u64);
        tracing::error!(
            n_events, pipeline = %pipeline, sink = %sink,
            "dead-letter writer gone: rejected events not written; their batch is not \
             acknowledged (a file source reads them again)"
        );
        false
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
        "Events rejected for good that were not written to the dead-letter file before the agent stopped (left unacknowledged: a file source reads them again).",
        &[],
    )
}

/// The JSON lines for one request.
fn records(request: &Request) -> Vec<u8> {
    let mut body = Vec::new();
    let time = Timestamp::now().to_rfc3339();
    for (reason, events) in &request.rejected {
        for event in events {
            let event_json = match event {
                Event::Log(log) => serde_json::Value::Object(log.to_json_map()),
                Event::Metric(metric) => metric.to_json(),
            };
            let record = serde_json::json!({
                "time": time, "pipeline": &*request.pipeline, "sink": &*request.sink,
                "reason": &**reason, "event": event_json,
            });
            let _ = serde_json::to_writer(&mut body, &record);
            body.push(b'\n');
        }
    }
    body
}

impl Writer {
    /// The writer thread: one request at a time, each retried until it is on disk or its
    /// sink stopped waiting.
    fn run(mut self, mut requests: mpsc::Receiver<Request>, written: &Counter, lost: &Counter) {
        let health = HealthCheck::new("agent/dead_letters");
        while let Some(request) = requests.blocking_recv() {
            let body = records(&request);
            let n_events: usize = request.rejected.iter().map(|(_, e)| e.len()).sum();
            let mut pause = FIRST_RETRY_PAUSE;
            let mut failing = false;
            loop {
                match self.append(&body) {
                    Ok(()) => {
                        written.add(n_events as u64);
                        if failing {
                            health.ok();
                            tracing::info!(file = %self.path.display(), "dead-letter writes succeed again");
                        }
                        let _ = request.done.send(());
                        break;
                    }
                    Err(error) => {
                        if !failing {
                            failing = true;
                            tracing::error!(
                                file = %self.path.display(), %error, n_events,
                                pipeline = %request.pipeline, sink = %request.sink,
                                "dead-letter write failed; the sink waits and the write is retried"
                            );
                            health.fail(format!("dead-letter write failed: {error}"));
                        }
                        if !wait_unless_abandoned(&request.done, pause) {
                            // The sink stopped waiting; the next request tries the disk
                            // again.
                            lost.add(n_events as u64);
                            tracing::error!(
                                n_events, pipeline = %request.pipeline, sink = %request.sink,
                                "rejected events not written to the dead-letter file before \
                                 the sink stopped; their batch is not acknowledged (a file \
                                 source reads them again)"
                            );
                            health.ok();
                            break;
                        }
                        pause = (pause * 2).min(MAX_RETRY_PAUSE);
                    }
                }
            }
        }
    }

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

/// Sleeps `pause`, in steps, unless the sink stops waiting for `done`; false if it did.
fn wait_unless_abandoned(done: &oneshot::Sender<()>, pause: Duration) -> bool {
    let until = Instant::now() + pause;
    while Instant::now() < until {
        if done.is_closed() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
    !done.is_closed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::LogEvent;

    fn rejected(reason: &str, message: &str) -> Vec<(Arc<str>, Vec<Event>)> {
        vec![(reason.into(), vec![Event::Log(LogEvent::new(message))])]
    }

    /// The tests that make the disk refuse share `/health`'s global table.
    static FULL_DISK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    async fn write(dead: &DeadLetters, reason: &str) -> bool {
        dead.write(&"p".into(), &"es".into(), rejected(reason, "bad line"))
            .await
    }

    #[tokio::test]
    async fn writes_json_lines_and_caps_size() {
        let dir = tempfile::tempdir().unwrap();
        let dead = DeadLetters::open(dir.path(), 400).unwrap();
        for _ in 0..5 {
            assert!(write(&dead, "mapper_parsing_exception").await);
        }
        let current = fs::read_to_string(dir.path().join("dead_letter.jsonl")).unwrap();
        let first: serde_json::Value =
            serde_json::from_str(current.lines().next().unwrap()).unwrap();
        assert_eq!(first["reason"], "mapper_parsing_exception");
        assert_eq!(first["event"]["message"], "bad line");
        assert_eq!(first["sink"], "es");
        assert!(current.len() <= 400);
        assert!(dir.path().join("dead_letter.jsonl.1").exists());
    }

    /// A refused metric sample is kept as the file sink writes it: numbers as numbers.
    #[test]
    fn metric_samples_are_json_not_debug_text() {
        let metric = crate::event::Metric {
            name: "up".into(),
            labels: vec![("job".into(), "node".into())],
            value: crate::event::MetricValue::Counter(2.5),
            timestamp: crate::event::Timestamp(0),
        };
        let request = Request {
            pipeline: "p".into(),
            sink: "prom".into(),
            rejected: vec![("out_of_order".into(), vec![Event::Metric(metric)])],
            done: oneshot::channel().0,
        };
        let body = String::from_utf8(records(&request)).unwrap();
        let record: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
        let event = &record["event"];
        assert_eq!(event["value"], 2.5);
        assert_eq!(event["kind"], "counter");
        assert_eq!(event["labels"]["job"], "node");
    }

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Regression (issue 15): one failed rename of a full file lost every later dead letter.
    #[tokio::test]
    async fn failed_rotation_keeps_later_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory where the rotated file goes: the rename fails.
        fs::create_dir_all(dir.path().join("dead_letter.jsonl.1/x")).unwrap();
        let dead = DeadLetters::open(dir.path(), 400).unwrap();
        for _ in 0..5 {
            assert!(write(&dead, "http_400").await);
        }
        let current = lines(&dir.path().join("dead_letter.jsonl"));
        assert_eq!(current.len(), 5, "nothing lost, past the cap");
        for line in current {
            serde_json::from_str::<serde_json::Value>(&line).unwrap();
        }
    }

    /// Issue 15: a write the disk refuses is retried while its sink waits, and lands once
    /// the disk takes it; meanwhile `/health` names the failure.
    #[tokio::test]
    async fn failed_write_is_retried_until_the_disk_takes_it() {
        let _serial = FULL_DISK.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead_letter.jsonl");
        // Every write to /dev/full fails with ENOSPC, as on a full disk.
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        let dead = DeadLetters::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        let waiting = tokio::spawn({
            let dead = dead.clone();
            async move { write(&dead, "http_400").await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !waiting.is_finished(),
            "the sink waits while the disk refuses"
        );
        let failures = crate::health::failures();
        assert!(
            failures
                .get("agent/dead_letters")
                .is_some_and(|reason| reason.contains("dead-letter write failed")),
            "{failures:?}"
        );
        // The disk has room again.
        fs::remove_file(&path).unwrap();
        let written = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("retried within the first pause")
            .unwrap();
        assert!(written);
        assert_eq!(lines(&path).len(), 1);
        assert!(!crate::health::failures().contains_key("agent/dead_letters"));
    }

    /// A sink that stops waiting (the agent stops) leaves its events unwritten, counted.
    #[tokio::test]
    async fn abandoned_write_counts_as_lost_not_written() {
        let _serial = FULL_DISK.lock().await;
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.path().join("dead_letter.jsonl")).unwrap();
        let dead = DeadLetters::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        let before = dead.lost.get();
        let waiting = tokio::spawn({
            let dead = dead.clone();
            async move { write(&dead, "http_400").await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        waiting.abort();
        for _ in 0..40 {
            if dead.lost.get() > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(dead.lost.get() > before);
    }
}
