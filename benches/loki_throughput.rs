//! End-to-end throughput of the agent binary (bench profile): a `file` source (1 million
//! plain 150-byte lines, no parsing) into the `loki` sink (protobuf + snappy) against
//! the fake Loki of `tests/support/fake_loki.rs`. Reports, for the agent process only,
//! events per CPU-second, MiB of lines per CPU-second, wall time and peak RSS (VmHWM).
//!
//! `cargo bench --bench loki_throughput` (set `SLUICE_BENCH_EVENTS` for another count, and
//! `SLUICE_BENCH_RATE` to write a live file at that many lines per second instead).

#[path = "support/agent.rs"]
mod agent;
#[path = "../tests/support/fake_loki.rs"]
mod fake_loki;
#[path = "../tests/support/http_request.rs"]
mod http_request;
#[path = "support/lines.rs"]
mod lines;
#[path = "support/procfs.rs"]
mod procfs;

use procfs::{cpu_seconds, status_kib};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// (agent CPU-seconds, peak RSS in KiB).
fn proc_stats(pid: u32) -> (f64, u64) {
    (cpu_seconds(pid), status_kib(pid, "VmHWM:"))
}

/// Appends lines `seqs` as plain 150-byte lines.
fn write_lines(path: &std::path::Path, seqs: std::ops::Range<usize>) {
    lines::append_lines(path, seqs.start as u64..seqs.end as u64);
}

/// Appends `count` lines at `rate` lines per second, 100 times a second.
fn write_at_rate(
    path: std::path::PathBuf,
    count: usize,
    rate: usize,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut written = 0;
        while written < count {
            let due = ((started.elapsed().as_secs_f64() * rate as f64) as usize).min(count);
            if due > written {
                write_lines(&path, written..due);
                written = due;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let count: usize = std::env::var("SLUICE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let loki = fake_loki::FakeLoki::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("input dir");
    // SLUICE_BENCH_RATE=<lines/s>: a live file written at that rate (steady-state RSS and
    // CPU) instead of a file read as fast as possible.
    let rate: Option<usize> = std::env::var("SLUICE_BENCH_RATE")
        .ok()
        .and_then(|v| v.parse().ok());
    let writer = match rate {
        Some(rate) => {
            write_lines(&input.join("bench.log"), 0..0);
            Some(write_at_rate(input.join("bench.log"), count, rate))
        }
        None => {
            write_lines(&input.join("bench.log"), 0..count);
            lines::settle(&input.join("bench.log"));
            None
        }
    };
    // Experiments: SLUICE_BENCH_PIPELINE holds extra pipeline keys (`queue_batches: 4`),
    // SLUICE_BENCH_LOKI extra sink keys (`batch: { max_events: 2000 }`), one per line.
    let extra = agent::extra_keys;
    let config = format!(
        "data_dir: {data}\napi: {{ address: \"{api}\" }}\npipelines:\n  bench:\n{pipeline}    sources:\n      - type: file\n        include: [\"{input}/*.log\"]\n    sinks:\n      - type: loki\n        endpoint: {endpoint}\n        labels: {{ job: bench }}\n{loki}  keep_alive:\n    sources:\n      - type: stdin\n    sinks:\n      - type: blackhole\n",
        data = dir.path().join("data").display(),
        input = input.display(),
        endpoint = loki.endpoint(),
        pipeline = extra("SLUICE_BENCH_PIPELINE", "    "),
        loki = extra("SLUICE_BENCH_LOKI", "        "),
    );
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, config).expect("write config");
    let started = Instant::now();
    let mut child = Command::new(agent::binary())
        .args(["run", "-c"])
        .arg(&path)
        .env("SLUICE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start sluice");
    let deadline = Instant::now() + Duration::from_secs(600);
    while loki.entry_count() < count && Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the agent exited ({status}) before delivering every line");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = started.elapsed().as_secs_f64();
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    let (cpu, hwm_kib) = proc_stats(child.id());
    let entries = loki.entries();
    let bytes: usize = entries.iter().map(|e| e.line.len()).sum();
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    let mib = bytes as f64 / (1024.0 * 1024.0);
    println!(
        "loki_throughput{}: {} events ({:.1} MiB of lines, {:.0} B/line) in {wall:.2}s wall, agent CPU {cpu:.2}s: {:.0} events/CPU-s, {:.1} MiB/CPU-s, peak RSS {:.1} MiB",
        rate.map(|r| format!(" at {r} lines/s")).unwrap_or_default(),
        entries.len(),
        mib,
        bytes as f64 / entries.len().max(1) as f64,
        entries.len() as f64 / cpu.max(0.01),
        mib / cpu.max(0.01),
        hwm_kib as f64 / 1024.0,
    );
}
