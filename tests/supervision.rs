//! End-to-end test of the supervision policy through the binary: a sink that panics mid-run
//! (the `SLUICE_TEST_PANIC_SINK_AFTER_EVENTS` test hook) makes the agent drain, save and
//! exit non-zero within a bound (never a silent stall with a frozen checkpoint), and a
//! restart without the hook delivers every line (no loss; duplicates allowed).

mod support;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{read_json_lines, wait_for};

const N_LINES: u64 = 20_000;

/// A file source on `logs/*.log` into a file sink.
fn config(dir: &Path, api: SocketAddr) -> String {
    let (data, out) = (dir.join("data"), dir.join("out.jsonl"));
    support::file_to_file_config(dir, &data, api, &out, "shutdown_timeout_secs: 5\n")
}

/// Starts `sluice run` on `dir/sluice.yaml`, stderr to `log`, with extra environment.
fn spawn(dir: &Path, log: &str, env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(support::binary());
    command
        .args(["run", "-c"])
        .arg(dir.join("sluice.yaml"))
        .env("SLUICE_LOG", "info")
        .env_remove("SLUICE_TEST_PANIC_SINK_AFTER_EVENTS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(dir.join(log)).unwrap());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().expect("start sluice")
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not exit within {timeout:?}: a silent stall"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sequence numbers below `N_LINES` that never reached the sink's file.
fn missing_seqs(out: &Path) -> Vec<u64> {
    let seen: BTreeSet<u64> = read_json_lines(out)
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
    (0..N_LINES).filter(|seq| !seen.contains(seq)).collect()
}

#[test]
fn a_sink_panic_stops_the_agent_non_zero_and_a_restart_delivers_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::create_dir(dir.join("logs")).unwrap();
    let mut log = File::create(dir.join("logs/app.log")).unwrap();
    for seq in 0..N_LINES {
        writeln!(log, "supervised line seq={seq}").unwrap();
    }
    drop(log);
    let api: SocketAddr = format!("127.0.0.1:{}", support::free_port())
        .parse()
        .unwrap();
    std::fs::write(dir.join("sluice.yaml"), config(dir, api)).unwrap();

    // Run 1: the sink panics after 5,000 events; the agent must stop by itself, non-zero.
    let mut crashing = spawn(
        dir,
        "crash.log",
        &[("SLUICE_TEST_PANIC_SINK_AFTER_EVENTS", "5000")],
    );
    let status = wait_exit(&mut crashing, Duration::from_secs(60));
    let stderr = std::fs::read_to_string(dir.join("crash.log")).unwrap_or_default();
    assert!(
        !status.success(),
        "a sink panic exits non-zero: {status}\n{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("component panicked") && l.contains("sink") && l.contains("file")),
        "the panic is logged naming the sink:\n{stderr}"
    );
    let missing = missing_seqs(&dir.join("out.jsonl"));
    assert!(
        !missing.is_empty(),
        "the crash happened mid-run (some lines were not delivered yet)"
    );

    // Run 2, without the hook: every line arrives.
    let mut restarted = spawn(dir, "restart.log", &[]);
    wait_for(
        "every seq after the restart",
        Duration::from_secs(60),
        || {
            if let Ok(Some(status)) = restarted.try_wait() {
                panic!("the restarted agent exited: {status}");
            }
            missing_seqs(&dir.join("out.jsonl")).is_empty()
        },
    );
    support::signal(&restarted, "TERM");
    let status = wait_exit(&mut restarted, Duration::from_secs(60));
    let stderr = std::fs::read_to_string(dir.join("restart.log")).unwrap_or_default();
    assert!(
        status.success(),
        "clean exit after the restart: {status}\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "the hook is off in run 2:\n{stderr}"
    );
}
