//! Cost of watching many files of which few are written: a `file` source on one directory
//! into the `loki` sink (fake Loki of `tests/support/fake_loki.rs`), in two rounds with the
//! same write load on 100 active files: one where the directory holds only those 100, one
//! where it also holds 9,900 idle files (each read once at start, then never written).
//! For the agent process it reports, during the written phase only, CPU-seconds and events
//! per CPU-second, the most descriptors open at once, and the RSS at the end. The source
//! closes files idle for 5 s (`close_idle_secs`), and the measured phase starts after that
//! (`SLUICE_BENCH_CLOSE_IDLE_SECS=600`: the idle files stay open through it). Sluice's
//! promise is that CPU and descriptors follow the active files, not the watched ones.
//!
//! `cargo bench --bench many_files` (`SLUICE_BENCH_FILES` total files, default 10000;
//! `SLUICE_BENCH_ACTIVE` active ones, default 100; `SLUICE_BENCH_EVENTS` lines written to
//! the active files, default 200000, at `SLUICE_BENCH_RATE` lines per second, default
//! 20000; `SLUICE_BIN` to run another agent binary).

#[path = "support/agent.rs"]
mod agent;
#[path = "../tests/support/fake_loki.rs"]
mod fake_loki;
#[path = "../tests/support/http_request.rs"]
mod http_request;
#[path = "support/lines.rs"]
#[allow(dead_code)]
mod lines;
#[path = "support/procfs.rs"]
mod procfs;

use procfs::{cpu_seconds, open_fds, status_kib};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// (CPU-seconds, VmRSS KiB, open descriptors) of `pid`.
fn proc_stats(pid: u32) -> (f64, u64, usize) {
    (cpu_seconds(pid), status_kib(pid, "VmRSS:"), open_fds(pid))
}

/// Waits until the fake holds `count` entries, sampling the agent's descriptors; returns
/// the most seen.
fn wait_delivered(loki: &fake_loki::FakeLoki, child: &mut Child, count: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut most_fds = 0;
    while loki.entry_count() < count {
        assert!(Instant::now() < deadline, "timed out: {count} entries");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the agent exited ({status})");
        }
        most_fds = most_fds.max(proc_stats(child.id()).2);
        std::thread::sleep(Duration::from_millis(20));
    }
    most_fds
}

/// `close_idle_secs` of the bench's source: `SLUICE_BENCH_CLOSE_IDLE_SECS`, default 5 (the
/// agent's default is 30: shorter, so a round does not wait half a minute for the files
/// read at start to be closed). Above 10, the measured phase starts 2 s after start-up,
/// with the files read at start still open (up to `max_open_files`).
fn close_idle_secs() -> u64 {
    agent::env_or("SLUICE_BENCH_CLOSE_IDLE_SECS", 5)
}

struct Round {
    cpu: f64,
    events: u64,
    most_fds: usize,
    idle_fds: usize,
    rss_kib: u64,
}

fn round(files: u64, active: u64, events: u64, rate: u64) -> Round {
    let loki = fake_loki::FakeLoki::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("input dir");
    let path_of = |i: u64| -> PathBuf { input.join(format!("f{i:05}.log")) };
    // One line in every file, so each is discovered, read and fingerprinted at start.
    for i in 0..files {
        lines::append_lines(&path_of(i), i..i + 1);
    }
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let config = format!(
        "data_dir: {data}\napi: {{ address: \"{api}\" }}\npipelines:\n  bench:\n    sources:\n      - type: file\n        include: [\"{input}/*.log\"]\n        read_from: beginning\n        close_idle_secs: {close_idle}\n    sinks:\n      - type: loki\n        endpoint: {endpoint}\n        labels: {{ job: bench }}\n",
        data = dir.path().join("data").display(),
        input = input.display(),
        endpoint = loki.endpoint(),
        close_idle = close_idle_secs(),
    );
    let config_path = dir.path().join("sluice.yaml");
    std::fs::write(&config_path, config).expect("write config");
    let mut child = agent::start(&config_path);
    wait_delivered(&loki, &mut child, files as usize);
    // Let the start-up work (discovery, checkpoints) settle and the files read once go
    // idle and be closed before the measured phase.
    let close_idle = close_idle_secs();
    let settle = if close_idle > 10 { 2 } else { close_idle + 2 };
    std::thread::sleep(Duration::from_secs(settle));
    let (cpu_before, _, idle_fds) = proc_stats(child.id());
    write_active(&path_of, files, active, events, rate);
    let most_fds = wait_delivered(&loki, &mut child, (files + events) as usize);
    let (cpu_after, rss_kib, _) = proc_stats(child.id());
    let _ = child.kill();
    let _ = child.wait();
    Round {
        cpu: cpu_after - cpu_before,
        events,
        most_fds: most_fds.max(idle_fds),
        idle_fds,
        rss_kib,
    }
}

/// Appends `events` lines round-robin over the first `active` files at `rate` lines per
/// second, 50 times a second.
fn write_active(path_of: &dyn Fn(u64) -> PathBuf, files: u64, active: u64, events: u64, rate: u64) {
    let started = Instant::now();
    let mut written = 0;
    while written < events {
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(events);
        let per_file = (due - written).div_ceil(active);
        for i in 0..active {
            let end = (written + per_file).min(due);
            if end > written {
                let path: PathBuf = path_of(i);
                append(&path, files + written..files + end);
                written = end;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn append(path: &Path, seqs: std::ops::Range<u64>) {
    lines::append_lines(path, seqs);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let files = agent::env_or("SLUICE_BENCH_FILES", 10_000);
    let active = agent::env_or("SLUICE_BENCH_ACTIVE", 100).min(files);
    let events = agent::env_or("SLUICE_BENCH_EVENTS", 200_000);
    let rate = agent::env_or("SLUICE_BENCH_RATE", 20_000);
    for (name, total) in [("active only", active), ("with idle files", files)] {
        let r = round(total, active, events, rate);
        println!(
            "many_files {name:>15}: {total:>6} files, {active} written: {} events in {:.2} agent CPU-s ({:.0} events/CPU-s), descriptors {} idle / {} most, RSS {:.1} MiB",
            r.events,
            r.cpu,
            r.events as f64 / r.cpu.max(0.01),
            r.idle_fds,
            r.most_fds,
            r.rss_kib as f64 / 1024.0,
        );
    }
}
