//! End-to-end tests of the agent's lifecycle through the binary: many SIGTERM/restart
//! cycles of a file source under load (no failed checkpoint save, the checkpoint file always
//! parses, no line lost), a second agent on the same `data_dir` (refused, naming the first's
//! PID; the first unaffected), and a `data_dir` on a full tmpfs (`/health` fails and the
//! checkpoint age grows until space returns, then a save succeeds by itself; a final save
//! that fails makes the exit code non-zero).

mod support;

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::{free_port, http_get, metric_sum, read_json_lines_after_crash, signal, wait_for};

const WAIT: Duration = Duration::from_secs(60);

/// A file source on `logs/*.log` into a file sink, checkpoints in `data`.
fn config(dir: &Path, data: &Path, api: SocketAddr, out: &Path, interval_ms: u64) -> String {
    let top = format!("shutdown_timeout_secs: 20\ncheckpoint_interval_ms: {interval_ms}\n");
    support::file_to_file_config(dir, data, api, out, &top)
}

/// An agent process whose stderr goes to a file.
struct Running {
    child: Child,
    api: SocketAddr,
    log: PathBuf,
}

impl Running {
    /// Starts `sluice run -c config` (stderr to `log`) without waiting for anything.
    fn spawn(config: &Path, api: SocketAddr, log: &Path) -> Running {
        let child = Command::new(support::binary())
            .args(["run", "-c"])
            .arg(config)
            .env("SLUICE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(log).unwrap())
            .spawn()
            .expect("start sluice");
        Running {
            child,
            api,
            log: log.to_owned(),
        }
    }

    /// Starts the agent and waits until its API answers.
    fn start(config: &Path, api: SocketAddr, log: &Path) -> Running {
        let mut running = Self::spawn(config, api, log);
        wait_for("the agent's API", WAIT, || {
            if let Ok(Some(status)) = running.child.try_wait() {
                panic!("agent exited early: {status}\n{}", running.stderr());
            }
            http_get(api, "/health").is_some()
        });
        running
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = http_get(self.api, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default();
        metric_sum(&text, name, labels)
    }

    /// Waits up to `timeout` for the process to exit by itself.
    fn exit_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then the exit status.
    fn terminate(&mut self) -> ExitStatus {
        signal(&self.child, "TERM");
        self.exit_within(WAIT)
            .unwrap_or_else(|| panic!("agent did not stop within {WAIT:?}"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Appends `line seq=N` lines to a log file from a thread until stopped.
struct LineWriter {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl LineWriter {
    /// `per_tick` lines every 5 ms.
    fn start(path: &Path, per_tick: u64) -> LineWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        let thread = {
            let (stop, written) = (stop.clone(), written.clone());
            std::thread::spawn(move || {
                let mut seq = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let mut chunk = String::new();
                    for _ in 0..per_tick {
                        chunk.push_str(&format!("lifecycle line seq={seq}\n"));
                        seq += 1;
                    }
                    file.write_all(chunk.as_bytes()).unwrap();
                    written.store(seq, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        LineWriter {
            stop,
            written,
            thread: Some(thread),
        }
    }

    /// Stops the thread; returns how many lines it wrote.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.written.load(Ordering::SeqCst)
    }
}

/// Sequence numbers below `n` that never reached the sink file.
fn missing_seqs(out: &Path, n: u64) -> Vec<u64> {
    let seen: BTreeSet<u64> = read_json_lines_after_crash(out)
        .iter()
        .filter_map(|event| {
            event["message"]
                .as_str()?
                .rsplit_once("seq=")?
                .1
                .parse()
                .ok()
        })
        .collect();
    (0..n).filter(|seq| !seen.contains(seq)).collect()
}

/// Waits until every sequence number below `n` reached `out`.
fn wait_all_delivered(out: &Path, n: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let missing = missing_seqs(out, n);
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} lines never arrived, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn assert_checkpoint_parses(data: &Path, context: &str) -> serde_json::Value {
    let path = data.join("checkpoints.json");
    let body =
        fs::read(&path).unwrap_or_else(|e| panic!("{context}: {} missing: {e}", path.display()));
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{context}: checkpoints.json does not parse ({e}): {}",
            String::from_utf8_lossy(&body)
        )
    });
    assert_eq!(parsed["version"], 1, "{context}: {parsed}");
    parsed
}

/// Regression (issue 15): the periodic checkpoint writer and the final save at SIGTERM
/// raced on one temp file (`checkpoint write failed … No such file or directory` on 2 of 40
/// SIGTERMs, or a torn file set aside at the next start: every position lost). Restart the
/// agent many times while a writer appends numbered lines; every stop must save cleanly and
/// every line must arrive.
#[test]
fn sigterm_restart_cycles_under_load_lose_nothing() {
    let cycles: usize = std::env::var("SLUICE_LIFECYCLE_CYCLES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let (data, out) = (dir.path().join("data"), dir.path().join("out.jsonl"));
    fs::create_dir_all(dir.path().join("logs")).unwrap();
    let writer = LineWriter::start(&dir.path().join("logs/app.log"), 10);
    let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config_path = dir.path().join("sluice.yaml");
    // 10 ms (the minimum): the periodic writer is busy whenever SIGTERM arrives.
    fs::write(&config_path, config(dir.path(), &data, api, &out, 10)).unwrap();
    let log = dir.path().join("agent.log");
    let started = Instant::now();
    for cycle in 0..cycles {
        let mut agent = Running::start(&config_path, api, &log);
        // Stop at varying points of the writer's cycle.
        std::thread::sleep(Duration::from_millis(20 + (cycle as u64 * 37) % 130));
        let status = agent.terminate();
        let stderr = agent.stderr();
        assert!(status.success(), "cycle {cycle}: exit {status}\n{stderr}");
        for line in stderr.lines() {
            assert!(
                !line.contains("checkpoint write failed") && !line.contains("ERROR"),
                "cycle {cycle}: {line}"
            );
        }
        assert_checkpoint_parses(&data, &format!("cycle {cycle}"));
    }
    let n_lines = writer.finish();
    eprintln!(
        "{cycles} SIGTERM cycles in {:.1}s, {n_lines} lines written",
        started.elapsed().as_secs_f64()
    );
    let mut agent = Running::start(&config_path, api, &log);
    wait_all_delivered(&out, n_lines);
    assert!(agent.terminate().success());
    assert_checkpoint_parses(&data, "last stop");
}

/// Two agents on one `data_dir` would overwrite each other's checkpoints: the second one is
/// refused with the holder's PID, and the first keeps delivering.
#[test]
fn second_agent_on_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out.jsonl");
    fs::create_dir_all(dir.path().join("logs")).unwrap();
    let log_file = dir.path().join("logs/app.log");
    fs::write(&log_file, "first seq=0\n").unwrap();
    let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let first_config = dir.path().join("first.yaml");
    fs::write(&first_config, config(dir.path(), &data, api, &out, 100)).unwrap();
    let mut first = Running::start(&first_config, api, &dir.path().join("first.log"));
    wait_all_delivered(&out, 1);

    let second_api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let second_config = dir.path().join("second.yaml");
    let second_out = dir.path().join("second.jsonl");
    fs::write(
        &second_config,
        config(dir.path(), &data, second_api, &second_out, 100),
    )
    .unwrap();
    let mut second = Running::spawn(&second_config, second_api, &dir.path().join("second.log"));
    let status = second
        .exit_within(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the second agent kept running:\n{}", second.stderr()));
    let stderr = second.stderr();
    assert!(!status.success(), "second agent exited 0:\n{stderr}");
    let pid = first.child.id().to_string();
    assert!(
        stderr.contains(&pid) && stderr.contains(&data.display().to_string()),
        "the error should name data_dir and pid {pid}:\n{stderr}"
    );
    assert!(!second_out.exists(), "the second agent read nothing");
    let validate = Command::new(support::binary())
        .args(["validate", "-c"])
        .arg(&second_config)
        .output()
        .unwrap();
    assert!(
        validate.status.success(),
        "validate takes no lock: {}",
        String::from_utf8_lossy(&validate.stderr)
    );

    let mut file = OpenOptions::new().append(true).open(&log_file).unwrap();
    file.write_all(b"first seq=1\nfirst seq=2\n").unwrap();
    wait_all_delivered(&out, 3);
    assert_eq!(
        http_get(api, "/health").map(|(status, _)| status),
        Some(200)
    );
    assert!(first.terminate().success(), "{}", first.stderr());
    assert!(
        fs::read_to_string(data.join("lock"))
            .unwrap()
            .contains(&pid),
        "the lock file names its holder"
    );
}

/// A tmpfs mounted on `path`, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// `None` when this process may not mount (not root, no CAP_SYS_ADMIN).
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .ok()?;
        status.success().then(|| Tmpfs {
            path: path.to_owned(),
        })
    }

    /// Writes a filler file until the filesystem is full.
    fn fill(&self) {
        let mut filler = File::create(self.path.join("filler")).unwrap();
        let block = vec![0u8; 4096];
        while filler.write_all(&block).is_ok() {}
    }

    fn free(&self) {
        fs::remove_file(self.path.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// Regression (issue 15): on a full disk one ERROR claimed the positions "will be saved at
/// the next try", nothing retried, `sluice_checkpoint_age_seconds` stayed near 0, `/health`
/// said 200, and a SIGTERM whose final save failed exited 0.
#[test]
fn full_data_dir_fails_health_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let Some(tmpfs) = Tmpfs::mount(&data, "1m") else {
        eprintln!("skipped: cannot mount a tmpfs here (the unit tests in checkpoint.rs cover unwritable data_dirs)");
        return;
    };
    let out = dir.path().join("out.jsonl");
    fs::create_dir_all(dir.path().join("logs")).unwrap();
    let log_file = dir.path().join("logs/app.log");
    fs::write(&log_file, "full seq=0\n").unwrap();
    let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config_path = dir.path().join("sluice.yaml");
    fs::write(&config_path, config(dir.path(), &data, api, &out, 100)).unwrap();
    let mut agent = Running::start(&config_path, api, &dir.path().join("agent.log"));
    wait_all_delivered(&out, 1);
    wait_for("a first checkpoint", WAIT, || {
        agent.metric("sluice_checkpoint_writes_total", &[("result", "ok")]) >= 1.0
    });

    tmpfs.fill();
    let mut file = OpenOptions::new().append(true).open(&log_file).unwrap();
    file.write_all(b"full seq=1\n").unwrap();
    wait_all_delivered(&out, 2);
    // Nothing more is delivered from here on: the failed save must be retried by itself.
    wait_for("/health to fail", WAIT, || {
        http_get(api, "/health").is_some_and(|(status, body)| {
            status == 503 && body.contains("agent/checkpoints") && body.contains("os error 28")
        })
    });
    assert!(agent.metric("sluice_checkpoint_writes_total", &[("result", "error")]) >= 2.0);
    let age = agent.metric("sluice_checkpoint_age_seconds", &[]);
    assert!(age >= 5.0, "checkpoint age {age}s while writes fail");
    std::thread::sleep(Duration::from_millis(1100));
    let later = agent.metric("sluice_checkpoint_age_seconds", &[]);
    assert!(
        later > age,
        "checkpoint age {later}s should grow from {age}s"
    );

    tmpfs.free();
    wait_for("/health to recover", WAIT, || {
        http_get(api, "/health").is_some_and(|(status, _)| status == 200)
    });
    assert!(agent.metric("sluice_checkpoint_age_seconds", &[]) < 5.0);
    let saved = assert_checkpoint_parses(&data, "after recovery");
    let offsets: Vec<u64> = saved["streams"]
        .as_object()
        .unwrap()
        .values()
        .filter(|position| position["meta"]["path"].is_string())
        .filter_map(|position| position["offset"].as_u64())
        .collect();
    assert_eq!(
        offsets,
        vec![fs::metadata(&log_file).unwrap().len()],
        "the retried save holds the last delivered position"
    );
    let stderr = agent.stderr();
    assert!(
        !stderr.contains("next try"),
        "no promise the agent did not keep:\n{stderr}"
    );

    // A final save that fails must not look like a clean stop.
    tmpfs.fill();
    file.write_all(b"full seq=2\n").unwrap();
    wait_all_delivered(&out, 3);
    let status = agent.terminate();
    let stderr = agent.stderr();
    assert!(
        !status.success(),
        "SIGTERM with a failing final save exited 0:\n{stderr}"
    );
    assert!(stderr.contains("final checkpoint"), "{stderr}");
}

/// Regression (issue 15): on a full disk `sluice_dead_letter_events_total` said 3,000 dead
/// letters were written while 267 reached the disk, and a write cut short left a torn line;
/// then failed writes were counted lost. Now the sink waits while the disk is full, with
/// `/health` naming the failure, and every rejected event lands once there is room again.
#[test]
fn dead_letters_on_a_full_data_dir_wait_and_land_when_space_returns() {
    let count = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let Some(tmpfs) = Tmpfs::mount(&data, "2m") else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    // Leave room for about a tenth of the dead letters (2,000 take about 500 KiB).
    fs::write(data.join("filler"), vec![0u8; (2048 - 72) * 1024]).unwrap();
    let loki = support::fake_loki::FakeLoki::start();
    let rejected = support::fake_loki::Behavior::Status {
        code: 400,
        retry_after: None,
        body: "bad request".into(),
    };
    loki.behave_for(rejected, Duration::from_secs(600));
    let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config_path = dir.path().join("sluice.yaml");
    fs::write(
        &config_path,
        format!(
            r#"data_dir: {data}
api: {{ address: "{api}" }}
pipelines:
  p:
    sources:
      - type: demo
        rate: 0
        count: {count}
    sinks:
      - type: loki
        endpoint: {endpoint}
        labels: {{ job: demo }}
        batch: {{ timeout_ms: 50, max_events: 100 }}
  keep_alive:
    sources:
      - {{ type: demo, rate: 0.001 }}
    sinks:
      - type: blackhole
"#,
            data = data.display(),
            endpoint = loki.endpoint(),
        ),
    )
    .unwrap();
    let mut agent = Running::start(&config_path, api, &dir.path().join("agent.log"));
    let metric = |agent: &Running, name: &str| agent.metric(name, &[]);
    // The disk fills: the sink waits and /health says why.
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = http_get(api, "/health").unwrap_or_default();
        if status == 503 && body.contains("agent/dead_letters") {
            assert!(body.contains("dead-letter write failed"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/health never named the failing dead-letter writes: {status} {body}\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stuck = metric(&agent, "sluice_dead_letter_events_total");
    assert!(stuck < f64::from(count), "{stuck}");
    // Room again: every rejected event lands, none is lost.
    tmpfs.free();
    let deadline = Instant::now() + WAIT;
    while metric(&agent, "sluice_dead_letter_events_total") < f64::from(count) {
        assert!(
            Instant::now() < deadline,
            "written {} of {count}\n{}",
            metric(&agent, "sluice_dead_letter_events_total"),
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(metric(&agent, "sluice_dead_letter_lost_events_total"), 0.0);
    assert!(agent.terminate().success(), "{}", agent.stderr());
    let body = fs::read_to_string(data.join("dead_letter.jsonl")).unwrap();
    for line in body.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("torn dead-letter line ({e}): {line:?}"));
    }
    assert_eq!(
        body.lines().count(),
        count as usize,
        "every rejected event is on disk"
    );
}

/// Writes `dir/sluice.yaml`: `top` settings, a `stdin` source with `source` keys, a file
/// sink to `dir/out.jsonl`, the API on a free port. Returns (config, API, output).
fn stdin_config(dir: &Path, top: &str, source: &str) -> (PathBuf, SocketAddr, PathBuf) {
    let out = dir.join("out.jsonl");
    let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = dir.join("sluice.yaml");
    fs::write(
        &config,
        format!(
            "data_dir: {data}\n{top}api: {{ address: \"{api}\" }}\npipelines:\n  p:\n    sources:\n      - {{ type: stdin{source} }}\n    sinks:\n      - {{ type: file, path: {out} }}\n",
            data = dir.join("data").display(),
            out = out.display(),
        ),
    )
    .unwrap();
    (config, api, out)
}

/// A `stdin` source on a pipe nobody writes to does not hold up SIGTERM: the agent stops
/// at once, delivers what it read, and does not claim at ERROR that anything was lost.
#[test]
fn sigterm_with_a_quiet_stdin_pipe_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _, out) = stdin_config(dir.path(), "shutdown_timeout_secs: 120\n", "");
    let mut child = Command::new(support::binary())
        .args(["run", "-c"])
        .arg(&config)
        .env("SLUICE_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"one\ntwo\n").unwrap();
    stdin.flush().unwrap();
    wait_for("two lines delivered", Duration::from_secs(30), || {
        support::read_json_lines(&out).len() >= 2
    });
    signal(&child, "TERM");
    // Far below the 120 s shutdown deadline, which is what a stop blocked on the pipe
    // would wait for.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no exit within 30 s of SIGTERM with stdin open and quiet");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    drop(stdin);
    assert!(status.success(), "exit status {status}\n{log}");
    assert!(!log.contains("ERROR"), "an ERROR on a clean stop:\n{log}");
}

/// stdin's bad input is passed on and counted as the file source's is: a line cut at
/// `max_line_bytes` carries `truncated: true` and is counted, a line with bytes that are not
/// UTF-8 is kept (with U+FFFD) and counted in `sluice_stdin_invalid_utf8_total`.
#[test]
fn stdin_marks_cut_lines_and_counts_invalid_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let (config, api, out) = stdin_config(dir.path(), "", ", max_line_bytes: 10");
    let mut agent = support::Agent::start_file(&config, api, Stdio::piped());
    let mut stdin = agent.child.stdin.take().unwrap();
    stdin
        .write_all(b"short\n0123456789abcdef\nbad \xff!\nlast\n")
        .unwrap();
    stdin.flush().unwrap();
    wait_for("four lines delivered", Duration::from_secs(30), || {
        support::read_json_lines(&out).len() >= 4
    });
    let events = support::read_json_lines(&out);
    assert_eq!(events[1]["message"], "0123456789");
    assert_eq!(events[1]["truncated"], true, "{}", events[1]);
    assert_eq!(events[2]["message"], "bad \u{fffd}!");
    for i in [0, 2, 3] {
        assert!(events[i].get("truncated").is_none(), "{}", events[i]);
    }
    wait_for("counters", Duration::from_secs(10), || {
        agent.metric_sum("sluice_stdin_invalid_utf8_total", &[]) == 1.0
            && agent.metric_sum("sluice_events_dropped_total", &[("reason", "truncated")]) == 1.0
    });
    drop(stdin);
    let status = agent.wait(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
}

/// A disk buffer whose disk fills: the pipeline waits with the error on `/health`, the
/// write is tried again, and once there is room everything is delivered, including lines
/// written after. (Before: each batch was abandoned at the first failure, the failed
/// segment file blocked every later write with "File exists", nothing more was delivered
/// for the life of the process, and `/health` said ok once the checkpoints saved again.)
#[test]
fn a_disk_buffer_on_a_full_disk_waits_and_writes_again_when_room_returns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let Some(tmpfs) = Tmpfs::mount(&data, "4m") else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let loki = support::fake_loki::FakeLoki::start();
    let logs = dir.path().join("logs");
    fs::create_dir_all(&logs).unwrap();
    let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config_path = dir.path().join("sluice.yaml");
    fs::write(
        &config_path,
        format!(
            r#"data_dir: {data}
api: {{ address: "{api}" }}
shutdown_timeout_secs: 5
pipelines:
  p:
    sources:
      - type: file
        include: ["{logs}/*.log"]
        glob_interval_ms: 50
    sinks:
      - name: loki
        type: loki
        endpoint: {loki}
        batch: {{ timeout_ms: 50 }}
        buffer: {{ type: disk, max_bytes: 16777216 }}
"#,
            data = data.display(),
            logs = logs.display(),
            loki = loki.endpoint(),
        ),
    )
    .unwrap();
    let log_file = logs.join("app.log");
    let write = |from: u64, n: u64| {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_file)
            .unwrap();
        let text: String = (from..from + n)
            .map(|i| format!("full disk seq={i} {}\n", "x".repeat(100)))
            .collect();
        file.write_all(text.as_bytes()).unwrap();
    };
    let delivered = |n: u64| {
        let seqs: BTreeSet<u64> = loki
            .entries()
            .iter()
            .filter_map(|e| support::fake_loki::seq_of(&e.line))
            .collect();
        (0..n).all(|i| seqs.contains(&i))
    };
    let mut agent = Running::start(&config_path, api, &dir.path().join("agent.log"));
    write(0, 100);
    wait_for("the first lines", WAIT, || delivered(100));

    tmpfs.fill();
    write(100, 1_000);
    wait_for("/health to name the failing buffer", WAIT, || {
        http_get(api, "/health").is_some_and(|(status, body)| {
            status == 503 && body.contains("disk buffer write failing")
        })
    });
    tmpfs.free();
    wait_for("the lines written while the disk was full", WAIT, || {
        delivered(1_100)
    });
    write(1_100, 1_000);
    wait_for("the lines written after", WAIT, || delivered(2_100));
    wait_for("/health to recover", WAIT, || {
        http_get(api, "/health").is_some_and(|(status, _)| status == 200)
    });
    assert!(agent.stderr().contains("disk buffer writes again"));
    agent.terminate();

    // Started on a full disk: the agent starts (before: exit 1, "No space left on device",
    // a crash loop under systemd that stopped every pipeline), and the buffer's first
    // write waits for room as above.
    tmpfs.fill();
    let mut agent = Running::start(&config_path, api, &dir.path().join("agent2.log"));
    write(2_100, 500);
    wait_for(
        "/health to name the failing buffer after a start on a full disk",
        WAIT,
        || {
            http_get(api, "/health").is_some_and(|(status, body)| {
                status == 503 && body.contains("disk buffer write failing")
            })
        },
    );
    tmpfs.free();
    wait_for("the lines written on the full disk", WAIT, || {
        delivered(2_600)
    });
    agent.terminate();
}
