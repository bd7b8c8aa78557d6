//! End-to-end: a rotated file's unread lines survive every kind of rotation and every kind
//! of stop, with a live-name-only glob (how users and our shipped pipelines write them).
//!
//! The sink (a fake Loki) is down while the agent reads, rotates and stops, so everything
//! read is still undelivered: the file is the only buffer. Then the sink comes back and
//! every seq-numbered line must arrive. Also: real `logrotate`, kill -9 right after
//! rotations under load, inode reuse with a constant banner, files moved to another device,
//! absurd checkpoint values, FIFOs at matched paths, and the one counted loss (a rotated
//! file deleted before it was read).

mod support;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::fake_loki::{seq_of, Behavior, FakeLoki};
use support::{append, signal, wait_for, Agent};

const WAIT: Duration = Duration::from_secs(90);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stop {
    Term,
    Kill9,
    Reload,
    None,
}

const STOPS: [Stop; 4] = [Stop::Term, Stop::Kill9, Stop::Reload, Stop::None];

struct Setup {
    dir: tempfile::TempDir,
    loki: FakeLoki,
    /// The include glob, relative to `logs/`.
    include: String,
    /// The Loki sink's `batch:`.
    batch: String,
}

impl Setup {
    fn new(include: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("logs")).unwrap();
        Setup {
            dir,
            loki: FakeLoki::start(),
            include: include.to_owned(),
            batch: "{ timeout_ms: 100 }".to_owned(),
        }
    }

    /// With the Loki sink's `batch:` set to `batch`.
    fn with_batch(mut self, batch: &str) -> Self {
        self.batch = batch.to_owned();
        self
    }

    fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    fn start(&self) -> Agent {
        Agent::start(self.dir.path(), &self.config(100))
    }

    /// The config, with the file source's `glob_interval_ms` (changing it makes a reload
    /// restart the pipeline: an unchanged pipeline keeps running through a reload).
    fn config(&self, glob_interval_ms: u64) -> String {
        format!(
            r#"data_dir: {data}
api: {{ address: "{{api}}" }}
shutdown_timeout_secs: 2
pipelines:
  p:
    sources:
      - type: file
        name: app
        include: ["{logs}/{include}"]
        glob_interval_ms: {glob_interval_ms}
        rotate_wait_ms: 300
        batch_lines: 500
    sinks:
      - type: loki
        endpoint: {endpoint}
        labels: {{ job: rotation }}
        batch: {batch}
        retry: {{ initial_backoff_ms: 50, max_backoff_ms: 200 }}
"#,
            data = self.dir.path().join("data").display(),
            logs = self.logs().display(),
            include = self.include,
            batch = self.batch,
            endpoint = self.loki.endpoint(),
        )
    }

    /// Stops the agent as `stop` says and starts it again (a reload keeps the process; it
    /// is over once the new source found the rotated file again).
    fn stop_and_go_on(&self, agent: Agent, stop: Stop) -> Agent {
        match stop {
            Stop::Term => {
                assert!(agent.terminate().success());
                self.start()
            }
            Stop::Kill9 => {
                agent.kill9();
                self.start()
            }
            Stop::Reload => {
                let before = agent.metric_sum("sluice_file_recovered_total", &[]);
                let changed = self.config(120).replace("{api}", &agent.api.to_string());
                fs::write(&agent.config, changed).unwrap();
                signal(&agent.child, "HUP");
                wait_for("the reloaded source to find the rotated file", WAIT, || {
                    agent.metric_sum("sluice_file_recovered_total", &[]) > before
                });
                agent
            }
            Stop::None => agent,
        }
    }

    fn sink_down(&self) {
        self.loki.behave_for(
            Behavior::Status {
                code: 503,
                retry_after: None,
                body: "down".into(),
            },
            Duration::from_secs(3600),
        );
    }

    fn sink_up(&self) {
        self.loki.behave_for(Behavior::Accept, Duration::ZERO);
    }

    /// How often each seq arrived.
    fn seq_counts(&self) -> BTreeMap<u64, u32> {
        let mut counts = BTreeMap::new();
        for entry in self.loki.entries() {
            if let Some(seq) = seq_of(&entry.line) {
                *counts.entry(seq).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Waits until every seq in `0..n` arrived; fails naming what is missing. Returns the
    /// number of duplicates.
    fn expect_all(&self, what: &str, n: u64) -> u64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let counts = self.seq_counts();
            let missing: Vec<u64> = (0..n).filter(|s| !counts.contains_key(s)).collect();
            if missing.is_empty() {
                return counts.values().map(|c| u64::from(c - 1)).sum();
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {} of {n} lines lost (first missing: {:?})",
                missing.len(),
                &missing[..missing.len().min(10)]
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `n` lines `seq=first..first+n`, about 100 bytes each.
fn lines(first: u64, n: u64) -> String {
    (first..first + n)
        .map(|i| format!("app line seq={i} {}\n", "x".repeat(80)))
        .collect()
}

fn gzip_file(from: &Path, to: &Path) {
    let mut encoder =
        flate2::write::GzEncoder::new(fs::File::create(to).unwrap(), Default::default());
    encoder.write_all(&fs::read(from).unwrap()).unwrap();
    encoder.finish().unwrap().sync_all().unwrap();
    fs::remove_file(from).unwrap();
}

/// Rotates `live` the way `kind` says.
fn rotate(kind: &str, live: &Path) {
    let dir = live.parent().unwrap();
    let name = live.file_name().unwrap().to_string_lossy().into_owned();
    match kind {
        "rename" => {
            fs::rename(live, dir.join(format!("{name}.1"))).unwrap();
            fs::write(live, "").unwrap();
        }
        "copytruncate" => {
            fs::copy(live, dir.join(format!("{name}.1"))).unwrap();
            OpenOptions::new()
                .write(true)
                .open(live)
                .unwrap()
                .set_len(0)
                .unwrap();
        }
        "kubelet" => {
            fs::rename(live, dir.join(format!("{name}.20261126-101010"))).unwrap();
            fs::write(live, "").unwrap();
        }
        "gzip" => {
            let rotated = dir.join(format!("{name}.1"));
            fs::rename(live, &rotated).unwrap();
            fs::write(live, "").unwrap();
            gzip_file(&rotated, &dir.join(format!("{name}.1.gz")));
        }
        other => panic!("unknown rotation {other}"),
    }
}

/// Sink down; write, let the agent read some, rotate, write more, stop as `stop` says,
/// then the sink comes back: every line must arrive.
fn rotation_survives(kind: &str, stop: Stop) {
    let (include, live) = if kind == "kubelet" {
        ("pods/*/*/*.log", "pods/ns_pod_0000/app/0.log")
    } else {
        ("app.log", "app.log")
    };
    let setup = Setup::new(include);
    let live = setup.logs().join(live);
    fs::create_dir_all(live.parent().unwrap()).unwrap();
    setup.sink_down();
    append(&live, &lines(0, 20_000));
    let mut agent = setup.start();
    wait_for("the agent to read", WAIT, || {
        agent.metric_sum("sluice_file_lines_read_total", &[]) >= 1000.0
    });
    // Let a checkpoint with this file's identity be written (every 100 ms).
    std::thread::sleep(Duration::from_millis(300));
    rotate(kind, &live);
    append(&live, &lines(20_000, 100));
    agent = setup.stop_and_go_on(agent, stop);
    setup.sink_up();
    let duplicates = setup.expect_all(&format!("{kind} + {stop:?}"), 20_100);
    assert!(
        duplicates <= 5_000,
        "{kind} + {stop:?}: {duplicates} duplicates"
    );
    assert_eq!(
        agent.metric_sum("sluice_file_lost_bytes_total", &[]),
        0.0,
        "{kind} + {stop:?}: nothing was lost, so nothing may be counted lost"
    );
    assert!(agent.terminate().success());
}

#[test]
fn rename_rotation_survives_every_stop() {
    for stop in STOPS {
        rotation_survives("rename", stop);
    }
}

#[test]
fn copytruncate_survives_every_stop() {
    for stop in STOPS {
        rotation_survives("copytruncate", stop);
    }
}

#[test]
fn kubelet_rotation_survives_every_stop() {
    for stop in STOPS {
        rotation_survives("kubelet", stop);
    }
}

#[test]
fn rename_then_gzip_survives_every_stop() {
    for stop in STOPS {
        rotation_survives("gzip", stop);
    }
}

/// Real logrotate, twice (so `delaycompress` compresses the first rotation on the second),
/// with the sink down, then each stop.
fn logrotate_survives(options: &str, stop: Stop) {
    logrotate_survives_with(options, stop, Setup::new("app.log"));
}

/// Real logrotate with a config for `logs/app.log` (`rotate 5`, `missingok`, and
/// `options`, comma-separated).
struct Logrotate {
    conf: PathBuf,
    state: PathBuf,
}

impl Logrotate {
    fn new(setup: &Setup, options: &str) -> Self {
        let live = setup.logs().join("app.log");
        let conf = setup.dir.path().join("logrotate.conf");
        fs::write(
            &conf,
            format!(
                "{} {{\n    rotate 5\n    missingok\n{}\n}}\n",
                live.display(),
                options
                    .split(',')
                    .map(|o| format!("    {}", o.trim()))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        )
        .unwrap();
        let state = setup.dir.path().join("logrotate.state");
        Logrotate { conf, state }
    }

    /// Rotates now (`-f`).
    fn run(&self) {
        let output = Command::new("logrotate")
            .arg("-f")
            .arg("-s")
            .arg(&self.state)
            .arg(&self.conf)
            .output()
            .expect("run logrotate (apt-get install logrotate)");
        assert!(
            output.status.success(),
            "logrotate: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn logrotate_survives_with(options: &str, stop: Stop, setup: Setup) {
    let live = setup.logs().join("app.log");
    let logrotate = Logrotate::new(&setup, options);
    let logrotate = || logrotate.run();
    setup.sink_down();
    append(&live, &lines(0, 10_000));
    let mut agent = setup.start();
    wait_for("the agent to read", WAIT, || {
        agent.metric_sum("sluice_file_lines_read_total", &[]) >= 1000.0
    });
    std::thread::sleep(Duration::from_millis(300));
    logrotate();
    append(&live, &lines(10_000, 5_000));
    std::thread::sleep(Duration::from_millis(1100)); // dateext names carry seconds
    logrotate();
    append(&live, &lines(15_000, 100));
    agent = setup.stop_and_go_on(agent, stop);
    setup.sink_up();
    setup.expect_all(&format!("logrotate {options} + {stop:?}"), 15_100);
    assert!(agent.terminate().success());
}

#[test]
fn logrotate_create_and_dateext() {
    for stop in STOPS {
        logrotate_survives("create, dateext, dateformat -%Y%m%d-%s", stop);
    }
}

#[test]
fn logrotate_copytruncate() {
    for stop in STOPS {
        logrotate_survives("copytruncate", stop);
    }
}

/// With small sink batches the reader blocks (Loki is down) before it has read the first
/// generation, and both copytruncates happen while it waits: each generation must still
/// get a stream of its own, so the one copied to `app.log.1` by the second rotation is
/// read after the restart or reload (it was lost before the wait loop checked for
/// truncation), and, with no restart, read when the sink comes back (it was lost before
/// the reader checked a file's content again after waiting on the sinks: the stream of
/// the second generation, not read at all yet, was read from the content that replaced
/// it).
#[test]
fn logrotate_copytruncate_while_blocked() {
    for stop in STOPS {
        let setup = Setup::new("app.log").with_batch("{ timeout_ms: 100, max_events: 2000 }");
        logrotate_survives_with("copytruncate", stop, setup);
    }
}

#[test]
fn logrotate_compress_without_delaycompress() {
    for stop in STOPS {
        logrotate_survives("create, compress", stop);
    }
}

#[test]
fn logrotate_compress_with_delaycompress() {
    for stop in STOPS {
        logrotate_survives("create, compress, delaycompress", stop);
    }
}

/// Rotations made while the agent is stopped, three of them: the generation it was reading
/// is found where it went, and every generation created and rotated away while it was
/// down (never matched by the glob while the agent ran) is read from its start. The
/// generation read before the stop is not read again, though the rotations renumber and
/// compress it, and files in the directory that are not rotations of a file the source
/// read are left alone.
fn rotations_while_stopped(options: &str, stop: Stop) {
    let setup = Setup::new("app.log");
    let live = setup.logs().join("app.log");
    let logrotate = Logrotate::new(&setup, options);
    let what = format!("three rotations while stopped ({options}) + {stop:?}");
    append(&live, &lines(0, 2_000));
    let agent = setup.start();
    setup.expect_all(&what, 2_000);
    logrotate.run(); // read to its end, let go, its position forgotten
    append(&live, &lines(2_000, 2_000));
    setup.expect_all(&what, 4_000);
    // Past `rotate_wait_ms` and a few checkpoint writes.
    std::thread::sleep(Duration::from_millis(1500));
    match stop {
        Stop::Term => assert!(agent.terminate().success()),
        Stop::Kill9 => agent.kill9(),
        other => panic!("{other:?} does not stop the agent"),
    }
    if options == "create" {
        // A writer that kept the let-go generation open writes to it late: that file is
        // not read again from its start (no duplicates).
        append(&setup.logs().join("app.log.1"), "a late write\n");
    }
    append(&live, &lines(4_000, 1_000));
    append(&setup.logs().join("app.log.audit"), "unrelated line 1\n");
    append(&setup.logs().join("other.log.1"), "unrelated line 2\n");
    for (round, first) in [5_000, 6_000, 7_000].into_iter().enumerate() {
        if round > 0 {
            std::thread::sleep(Duration::from_millis(1100)); // dateext names carry seconds
        }
        logrotate.run();
        append(&live, &lines(first, 1_000));
    }
    let agent = setup.start();
    let duplicates = setup.expect_all(&what, 8_000);
    assert_eq!(duplicates, 0, "{what}: lines read twice");
    assert_eq!(
        agent.metric_sum("sluice_file_lost_bytes_total", &[]),
        0.0,
        "{what}: nothing was lost"
    );
    std::thread::sleep(Duration::from_millis(500));
    let unrelated = setup
        .loki
        .entries()
        .iter()
        .filter(|e| e.line.contains("unrelated"))
        .count();
    assert_eq!(
        unrelated, 0,
        "{what}: files that are not rotations were read"
    );
    assert!(agent.terminate().success());
}

#[test]
fn rotations_while_stopped_create() {
    for stop in [Stop::Term, Stop::Kill9] {
        rotations_while_stopped("create", stop);
        rotations_while_stopped("create, dateext, dateformat -%Y%m%d-%s", stop);
    }
}

#[test]
fn rotations_while_stopped_compress() {
    for stop in [Stop::Term, Stop::Kill9] {
        rotations_while_stopped("create, compress", stop);
        rotations_while_stopped("create, compress, delaycompress", stop);
    }
}

#[test]
fn rotations_while_stopped_copytruncate() {
    for stop in [Stop::Term, Stop::Kill9] {
        rotations_while_stopped("copytruncate", stop);
    }
}

/// A generation read to its end before the agent stopped, compressed while it was down by
/// something that does not keep the file's modification time (the kubelet compresses its
/// older rotations so): a new file in the directory, named like a rotation, created and
/// written after the stop. It must not be read again (a whole generation repeated), while
/// a generation the agent never saw, rotated while it was down, still is.
#[test]
fn a_read_generation_recompressed_while_stopped_is_not_read_again() {
    let setup = Setup::new("app.log");
    let live = setup.logs().join("app.log");
    let what = "recompressed while stopped";
    append(&live, &lines(0, 2_000));
    let agent = setup.start();
    setup.expect_all(what, 2_000);
    rotate("rename", &live); // app.log.1: read to its end, let go, forgotten
    append(&live, &lines(2_000, 1_000));
    setup.expect_all(what, 3_000);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(agent.terminate().success());
    // While stopped: the read generation is compressed (new times), the live one rotated
    // and a new one written and rotated too.
    gzip_file(
        &setup.logs().join("app.log.1"),
        &setup.logs().join("app.log.2.gz"),
    );
    append(&live, &lines(3_000, 500));
    fs::rename(&live, setup.logs().join("app.log.1")).unwrap();
    append(&live, &lines(3_500, 500));
    fs::rename(&live, setup.logs().join("app.log.0")).unwrap();
    append(&live, &lines(4_000, 100));
    let agent = setup.start();
    let duplicates = setup.expect_all(what, 4_100);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(setup.seq_counts().values().filter(|c| **c > 1).count(), 0);
    assert_eq!(
        duplicates, 0,
        "{what}: a generation read before was read again"
    );
    assert!(agent.terminate().success());
}

/// Three kubelet rotations while the agent is stopped: each rotation compresses the
/// previous rotated generation into a new file (new times, the plain file removed) and
/// renames the live one. Left at start: the generation read and let go before the stop,
/// compressed (must not be read again); the one being read, compressed (goes on at its
/// position); one the agent never saw, compressed (must be read: it was lost before); one
/// never seen, plain; the live file. Then the same with a checkpoint from a version that
/// did not keep the positions of finished files: the never-seen compressed generation
/// cannot be told from a read one there, and is left rather than read twice.
#[test]
fn kubelet_rotations_while_stopped_lose_no_compressed_generation() {
    for kept in [true, false] {
        let setup = Setup::new("0.log");
        let logs = setup.logs();
        let live = logs.join("0.log");
        let what = "kubelet rotations while stopped";
        let generation = |n: u32| logs.join(format!("0.log.20261129-00000{n}"));
        append(&live, &lines(0, 2_000));
        let agent = setup.start();
        setup.expect_all(what, 2_000);
        fs::rename(&live, generation(0)).unwrap(); // read to its end and let go
        append(&live, &lines(2_000, 1_000));
        setup.expect_all(what, 3_000);
        // Past `rotate_wait_ms` and a few checkpoint writes.
        std::thread::sleep(Duration::from_millis(1500));
        assert!(agent.terminate().success());
        if !kept {
            let checkpoints = setup.dir.path().join("data/checkpoints.json");
            let mut saved: serde_json::Value =
                serde_json::from_str(&fs::read_to_string(&checkpoints).unwrap()).unwrap();
            let streams = saved["streams"].as_object_mut().unwrap();
            let before = streams.len();
            // As an older version left it: the live file's position only.
            let meta = fs::metadata(&live).unwrap();
            let live_key = format!("{:x}-{:x}", meta.dev(), meta.ino());
            streams.retain(|key, _| key.ends_with(&format!("/{live_key}")));
            assert!(streams.len() < before, "{saved}");
            let text = serde_json::to_string(&saved).unwrap();
            fs::write(&checkpoints, text).unwrap();
        }
        append(&live, &lines(3_000, 500));
        let mut next = 3_500;
        for n in 1..=3 {
            gzip_file(
                &generation(n - 1),
                &logs.join(format!("0.log.20261129-00000{}.gz", n - 1)),
            );
            fs::rename(&live, generation(n)).unwrap();
            let count = [0, 500, 400, 100][n as usize];
            append(&live, &lines(next, count));
            next += count;
        }
        let agent = setup.start();
        if kept {
            let duplicates = setup.expect_all(what, next);
            std::thread::sleep(Duration::from_millis(1000));
            assert_eq!(
                setup.seq_counts().values().filter(|c| **c > 1).count(),
                0,
                "{what}: a generation read before was read again"
            );
            assert_eq!(duplicates, 0);
        } else {
            // Everything but the never-seen compressed generation (3,500..4,000).
            let deadline = Instant::now() + WAIT;
            let missing = loop {
                let counts = setup.seq_counts();
                let missing: Vec<u64> = (0..next).filter(|s| !counts.contains_key(s)).collect();
                if missing.len() <= 500 || Instant::now() > deadline {
                    break missing;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            std::thread::sleep(Duration::from_millis(1000));
            assert_eq!(missing, (3_500..4_000).collect::<Vec<u64>>());
            assert!(setup.seq_counts().values().all(|c| *c == 1));
        }
        assert!(agent.terminate().success());
    }
}

/// A writer at about 20k lines/s rotates (rename, compress, copytruncate in turn) and the
/// agent is killed 0-300 ms after each of 20 rotations, then restarted: nothing is lost.
#[test]
fn kill9_right_after_rotations_under_load_loses_nothing() {
    let setup = Setup::new("app.log");
    let live = setup.logs().join("app.log");
    fs::write(&live, "").unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let lock = Arc::new(Mutex::new(()));
    let writer = {
        let (live, written, stop, lock) =
            (live.clone(), written.clone(), stop.clone(), lock.clone());
        std::thread::spawn(move || {
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                {
                    let _guard = lock.lock().unwrap();
                    append(&live, &lines(next, 300));
                }
                next += 300;
                written.store(next, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let started = Instant::now();
    let mut agent = setup.start();
    let kinds = ["rename", "gzip", "copytruncate"];
    for round in 0..20 {
        std::thread::sleep(Duration::from_millis(400));
        {
            // The writer waits while the file is rotated, as an application that reopens
            // its log on a signal would; copytruncate's copy-then-truncate race is
            // logrotate's, not the agent's.
            let _guard = lock.lock().unwrap();
            let rotated = setup.logs().join("app.log.1");
            let gz = setup.logs().join("app.log.1.gz");
            let _ = fs::remove_file(&gz);
            if rotated.exists() {
                fs::rename(&rotated, setup.logs().join(format!("app.log.old{round}"))).unwrap();
            }
            rotate(kinds[round % 3], &live);
            if gz.exists() {
                fs::rename(&gz, setup.logs().join(format!("app.log.{round}.gz"))).unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..300)));
        agent.kill9();
        agent = setup.start();
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let n = written.load(Ordering::Relaxed);
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let duplicates = setup.expect_all("kill -9 after rotations", n);
    eprintln!("kill -9 after rotations: {n} lines at {rate:.0}/s, {duplicates} duplicates");
    assert!(agent.terminate().success());
}

/// A file deleted and recreated (or rewritten in place) while the agent is stopped, with
/// the same 2 KiB banner as before and longer than the old offset, is read from its start.
#[test]
fn inode_reuse_with_a_constant_banner_is_read_from_its_start() {
    let setup = Setup::new("app.log");
    let live = setup.logs().join("app.log");
    let banner = format!("# {}\n", "banner ".repeat(293));
    assert!(banner.len() >= 2048);
    fs::write(&live, format!("{banner}{}", lines(0, 100))).unwrap();
    let agent = setup.start();
    setup.expect_all("first file", 100);
    wait_for("the position saved", WAIT, || {
        fs::read_to_string(setup.dir.path().join("data/checkpoints.json"))
            .is_ok_and(|text| text.contains("tail"))
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(agent.terminate().success());
    // Same inode, same banner, new lines, longer than the old offset.
    fs::write(&live, format!("{banner}{}", lines(1000, 300))).unwrap();
    let agent = setup.start();
    let deadline = Instant::now() + WAIT;
    loop {
        let counts = setup.seq_counts();
        let missing = (1000..1300).filter(|s| !counts.contains_key(s)).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of the new file's 300 lines were skipped"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(agent.terminate().success());
}

/// The log directory's files get new inodes (and, where tmpfs can be mounted, a new
/// device) at the same paths while the agent is stopped: reading resumes where it was.
#[test]
fn files_moved_to_a_new_device_or_inode_resume_where_they_were() {
    let setup = Setup::new("*.log");
    let logs = setup.logs();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
        .arg(&logs)
        .status()
        .is_ok_and(|s| s.success());
    let live = logs.join("app.log");
    append(&live, &lines(0, 3000));
    let agent = setup.start();
    setup.expect_all("before the move", 3000);
    std::thread::sleep(Duration::from_millis(300));
    assert!(agent.terminate().success());
    let sent_before = setup.loki.entry_count();
    let old_id = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&live).unwrap());
    let saved = fs::read(&live).unwrap();
    if mounted {
        assert!(Command::new("umount")
            .arg(&logs)
            .status()
            .unwrap()
            .success());
        assert!(Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
            .arg(&logs)
            .status()
            .unwrap()
            .success());
        fs::write(&live, &saved).unwrap();
    } else {
        let staged = logs.join("staged");
        fs::write(&staged, &saved).unwrap();
        fs::rename(&staged, &live).unwrap();
    }
    let new_id = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&live).unwrap());
    append(&live, &lines(3000, 500));
    let agent = setup.start();
    setup.expect_all("after the move", 3500);
    std::thread::sleep(Duration::from_millis(500));
    let resent = setup.loki.entry_count() - sent_before - 500;
    assert!(agent.terminate().success());
    if mounted {
        let _ = Command::new("umount").arg(&logs).status();
    } else {
        assert_ne!(old_id, new_id, "the test must give the file a new inode");
    }
    assert!(
        resent <= 500,
        "{resent} lines sent again after the move (mounted: {mounted})"
    );
}

/// A parseable checkpoint with absurd numbers: the agent starts and delivers.
#[test]
fn absurd_checkpoint_values_do_not_stop_the_agent() {
    let setup = Setup::new("app.log");
    let live = setup.logs().join("app.log");
    append(&live, &lines(0, 200));
    let ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&live).unwrap());
    let dev = std::os::unix::fs::MetadataExt::dev(&fs::metadata(&live).unwrap());
    let data = setup.dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let checkpoint = format!(
        r#"{{"version":1,"streams":{{
            "p/app/{dev:x}-{ino:x}":{{"offset":18446744073709551615,"meta":{{"path":"{path}","fingerprint":"00000000deadbeef","fingerprint_len":1000000000000000,"tail":"zz","tail_at":18446744073709551615,"size":18446744073709551615}}}},
            "p/app/1-2":{{"offset":5,"meta":{{"path":"{path}.gone","fingerprint":"1","fingerprint_len":999999999999,"size":-1}}}},
            "p/app/zz":{{"offset":0,"meta":{{"fingerprint_len":"x"}}}}
        }}}}"#,
        path = live.display()
    );
    fs::write(data.join("checkpoints.json"), checkpoint).unwrap();
    let agent = setup.start();
    setup.expect_all("with an absurd checkpoint", 200);
    assert!(agent.terminate().success());
}

/// A FIFO swapped in and out at a matched path must never block the reader.
#[test]
fn fifos_at_matched_paths_never_block_reading() {
    let setup = Setup::new("*.log");
    let live = setup.logs().join("app.log");
    fs::write(&live, "").unwrap();
    let agent = setup.start();
    let fifo = setup.logs().join("pipe.log");
    let mut written = 0u64;
    for round in 0..1000u64 {
        let _ = fs::remove_file(&fifo);
        if round % 2 == 0 {
            assert!(Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success());
        } else {
            fs::write(&fifo, "").unwrap();
        }
        if round % 10 == 0 {
            append(&live, &lines(written, 10));
            written += 10;
        }
    }
    setup.expect_all("next to a FIFO", written);
    assert_eq!(agent.get("/health").map(|(s, _)| s), Some(200));
    assert!(agent.terminate().success());
}

/// The only loss: a rotated file deleted before it was read (here while the agent was
/// stopped and the sink down). It is counted with its bytes, never silent.
#[test]
fn a_rotated_file_deleted_unread_is_counted_lost() {
    let setup = Setup::new("app.log");
    let live = setup.logs().join("app.log");
    setup.sink_down();
    let text = lines(0, 5000);
    append(&live, &text);
    let agent = setup.start();
    wait_for("the agent to read", WAIT, || {
        agent.metric_sum("sluice_file_lines_read_total", &[]) >= 1000.0
    });
    wait_for("its size saved", WAIT, || {
        fs::read_to_string(setup.dir.path().join("data/checkpoints.json"))
            .is_ok_and(|t| t.contains(&format!("\"size\":{}", text.len())))
    });
    rotate("rename", &live);
    assert!(agent.terminate().success());
    fs::remove_file(setup.logs().join("app.log.1")).unwrap();
    append(&live, &lines(5000, 10));
    let agent = setup.start();
    setup.sink_up();
    wait_for("the new file delivered", WAIT, || {
        let counts = setup.seq_counts();
        (5000..5010).all(|s| counts.contains_key(&s))
    });
    assert_eq!(
        agent.metric_sum(
            "sluice_file_lost_bytes_total",
            &[("reason", "deleted_unread")]
        ),
        text.len() as f64
    );
    assert!(agent.terminate().success());
}

/// A writer that opened the live file before a rename rotation and writes more than
/// `rotate_wait_ms` later (an app stalled between its open and its write, or one that
/// reopens only on its next write) appends to a generation the source already read and
/// let go. The kept position of that generation sees it grow (following it when it is
/// renamed again in its directory), and the source reads what was added, once: nothing
/// lost, nothing twice.
#[test]
fn a_write_to_a_rotated_file_after_it_was_let_go_is_read() {
    let setup = Setup::new("app.log");
    let live = setup.logs().join("app.log");
    append(&live, &lines(0, 100));
    let agent = Setup::start(&setup);
    assert_eq!(setup.expect_all("before the rotation", 100), 0);
    // The late writer's descriptor, opened before the rotation.
    let mut late = OpenOptions::new().append(true).open(&live).unwrap();
    rotate("rename", &live);
    append(&live, &lines(100, 100));
    assert_eq!(setup.expect_all("after the rotation", 200), 0);
    // Past `rotate_wait_ms` (300) and the commit of its last batch: the old file is let go.
    wait_for("the rotated file let go", WAIT, || {
        agent.metric_sum("sluice_file_open", &[]) == 1.0
    });
    std::thread::sleep(Duration::from_millis(500));
    late.write_all(lines(200, 50).as_bytes()).unwrap();
    assert_eq!(setup.expect_all("the late write", 250), 0);
    // Renamed again (logrotate renumbering its generations), then written to: found by
    // its inode in the directory.
    wait_for("the rotated file let go again", WAIT, || {
        agent.metric_sum("sluice_file_open", &[]) == 1.0
    });
    let rotated = setup.logs().join("app.log.1");
    fs::rename(&rotated, setup.logs().join("app.log.2")).unwrap();
    late.write_all(lines(250, 50).as_bytes()).unwrap();
    drop(late);
    assert_eq!(
        setup.expect_all("the late write after a second rename", 300),
        0
    );
    // A rename is a rotation, a deletion is not.
    fs::remove_file(&live).unwrap();
    wait_for("the deletion seen", WAIT, || {
        agent.metric_sum("sluice_file_deletions_total", &[]) == 1.0
    });
    assert_eq!(agent.metric_sum("sluice_file_rotations_total", &[]), 1.0);
    assert!(agent.terminate().success());
}
