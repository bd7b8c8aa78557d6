//! Model-based property test of the file tailer, in-process through the library API: random
//! sequences of write / rotate / truncate / delete / restart against a real temp dir,
//! checked against an in-memory model of what was written. No line may be lost, and with
//! clean restarts none may be delivered twice.
//!
//! What the model assumes (the tailer's documented guarantees): a rotated (renamed away)
//! file is read to its end while the agent runs; truncating or deleting a file destroys
//! what was not yet read, so those steps first wait until the file's lines arrived; a file
//! renamed out of the globs must have been found first by the running tailer (one of its
//! undelivered lines arrived: after a restart, a file renamed away before the first scan
//! finds it is out of every tailer's reach), and one renamed away just before a stop is
//! read to its end before the stop.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use sluice::batch::Batch;
use sluice::checkpoint::Checkpoints;
use sluice::shutdown::Shutdown;
use sluice::source::{BatchSender, Running, SourceConfig, SourceContext};
use sluice::telemetry::{ComponentMetrics, Gauge};

#[derive(Debug, Clone)]
enum Step {
    Write { file: usize, lines: usize },
    Rotate { file: usize },
    Truncate { file: usize },
    Delete { file: usize },
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..3usize, 1..40usize).prop_map(|(file, lines)| Step::Write { file, lines }),
        2 => (0..3usize).prop_map(|file| Step::Rotate { file }),
        1 => (0..3usize).prop_map(|file| Step::Truncate { file }),
        1 => (0..3usize).prop_map(|file| Step::Delete { file }),
        2 => Just(Step::Restart),
    ]
}

struct Harness {
    dir: PathBuf,
    runtime: tokio::runtime::Runtime,
    delivered: Arc<Mutex<Vec<String>>>,
    running: Option<(Shutdown, Running, std::thread::JoinHandle<()>, Checkpoints)>,
}

impl Harness {
    fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    fn start(&mut self) {
        let file: sluice::source::file::FileConfig = serde_json::from_value(serde_json::json!({
            "include": [format!("{}/*.log", self.logs().display())],
            "glob_interval_ms": 50,
            "rotate_wait_ms": 100,
        }))
        .unwrap();
        let config = SourceConfig::File(file);
        let source = config.build().unwrap();
        let checkpoints = Checkpoints::open(&self.dir.join("data")).unwrap();
        let shutdown = Shutdown::new();
        let metrics = ComponentMetrics::new("model", "source", "file");
        let (tx, rx) = flume::bounded::<Batch>(4);
        let out = BatchSender::new(
            vec![(tx, Gauge::default())],
            shutdown.clone(),
            metrics.clone(),
        );
        let delivered = self.delivered.clone();
        let consumer = std::thread::spawn(move || {
            for batch in rx {
                let mut lines = delivered.lock().unwrap();
                for event in &batch.events {
                    lines.push(event.as_log().unwrap().message_str().to_owned());
                }
                for ack in batch.acks {
                    ack.done();
                }
            }
        });
        let ctx = SourceContext {
            pipeline: "model".into(),
            id: "file".into(),
            out,
            shutdown: shutdown.clone(),
            checkpoints: checkpoints.clone(),
            metrics,
            runtime: self.runtime.handle().clone(),
            delivered: sluice::event::Kinds::BOTH,
        };
        let running = source.start(ctx).unwrap();
        self.running = Some((shutdown, running, consumer, checkpoints));
    }

    fn stop(&mut self) {
        let Some((shutdown, running, consumer, checkpoints)) = self.running.take() else {
            return;
        };
        shutdown.trigger();
        match running {
            Running::Thread(handle) => handle.join().unwrap(),
            Running::Task(_) => unreachable!("the file source runs on a thread"),
        }
        consumer.join().unwrap();
        checkpoints.save(true).unwrap();
    }

    fn wait_found(&self, lines: &HashSet<String>) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !lines.is_empty() {
            if self
                .delivered
                .lock()
                .unwrap()
                .iter()
                .any(|line| lines.contains(line))
            {
                return;
            }
            assert!(Instant::now() < deadline, "file never found");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_delivered(&self, lines: &HashSet<String>) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got: HashSet<String> = self.delivered.lock().unwrap().iter().cloned().collect();
            if lines.is_subset(&got) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "missing: {:?}",
                lines.difference(&got).take(5).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn append(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn run(steps: Vec<Step>) {
    let temp = tempfile::tempdir().unwrap();
    fs::create_dir_all(temp.path().join("logs")).unwrap();
    fs::create_dir_all(temp.path().join("archive")).unwrap();
    let mut harness = Harness {
        dir: temp.path().to_owned(),
        runtime: tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap(),
        delivered: Arc::new(Mutex::new(Vec::new())),
        running: None,
    };
    harness.start();
    // The model: every line written, and which lines each current file holds.
    let mut written: Vec<String> = Vec::new();
    let mut in_file: [HashSet<String>; 3] = Default::default();
    let mut rotated: HashSet<String> = HashSet::new();
    let mut counter = 0usize;
    for (index, step) in steps.into_iter().enumerate() {
        let path = harness.logs().join(format!("f{}.log", step_file(&step)));
        match step {
            Step::Write { file, lines } => {
                let mut body = String::new();
                for _ in 0..lines {
                    let line = format!("f{file} n={counter}");
                    counter += 1;
                    body.push_str(&line);
                    body.push('\n');
                    written.push(line.clone());
                    in_file[file].insert(line);
                }
                append(&path, &body);
            }
            Step::Rotate { file } => {
                // A file renamed out of the globs before the tailer ever found it cannot be
                // read by anyone: wait until this run found it (one of its lines not yet
                // delivered arrived; lines delivered before a restart don't tell).
                let delivered: HashSet<String> =
                    harness.delivered.lock().unwrap().iter().cloned().collect();
                let pending: HashSet<String> =
                    in_file[file].difference(&delivered).cloned().collect();
                harness.wait_found(&pending);
                if path.exists() {
                    fs::rename(&path, harness.dir.join(format!("archive/f{file}.{index}")))
                        .unwrap();
                }
                rotated.extend(in_file[file].drain());
            }
            Step::Truncate { file } | Step::Delete { file } => {
                harness.wait_delivered(&in_file[file]);
                in_file[file].clear();
                if path.exists() {
                    if matches!(step, Step::Truncate { .. }) {
                        OpenOptions::new()
                            .write(true)
                            .truncate(true)
                            .open(&path)
                            .unwrap();
                    } else {
                        fs::remove_file(&path).unwrap();
                    }
                }
            }
            Step::Restart => {
                harness.wait_delivered(&rotated);
                harness.stop();
                harness.start();
            }
        }
    }
    let all: HashSet<String> = written.iter().cloned().collect();
    harness.wait_delivered(&all);
    std::thread::sleep(Duration::from_millis(200));
    harness.stop();
    let delivered = harness.delivered.lock().unwrap().clone();
    let unique: HashSet<&String> = delivered.iter().collect();
    assert_eq!(unique.len(), delivered.len(), "no line delivered twice");
    assert_eq!(delivered.len(), written.len());
}

fn step_file(step: &Step) -> usize {
    match step {
        Step::Write { file, .. }
        | Step::Rotate { file }
        | Step::Truncate { file }
        | Step::Delete { file } => *file,
        Step::Restart => 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_line_lost(steps in proptest::collection::vec(step(), 1..12)) {
        run(steps);
    }
}

#[test]
fn rotate_then_restart_then_write() {
    run(vec![
        Step::Write { file: 0, lines: 10 },
        Step::Rotate { file: 0 },
        Step::Write { file: 0, lines: 5 },
        Step::Restart,
        Step::Write { file: 0, lines: 5 },
        Step::Truncate { file: 0 },
        Step::Write { file: 0, lines: 30 },
        Step::Delete { file: 0 },
        Step::Write { file: 0, lines: 2 },
    ]);
}
