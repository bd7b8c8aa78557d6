//! Issue 16's memory bounds, measured on the agent binary (VmRSS from `/proc/<pid>/status`).
//! Two scenarios, each bounded in time; pick one with an argument or `SLUICE_BENCH_SCENARIO`:
//!
//! - `files`: 1,000 files under one watched root appended to at a bounded rate
//!   (`SLUICE_BENCH_RATE` lines/s in total, default 2,000) for `SLUICE_BENCH_MINUTES`
//!   (default 10) while the Loki sink's endpoint refuses connections. VmRSS is sampled every
//!   5 s; reported: RSS at the end of the warm-up (`SLUICE_BENCH_WARMUP_SECS`, default 60),
//!   min/max after it and the least-squares slope. The claim: flat within ± 2 MiB.
//! - `syslog`: 4,096 TCP connections (`SLUICE_BENCH_CONNECTIONS`) each send a 64 KB partial
//!   frame (half without a newline, half with an octet count larger than what follows) and
//!   hold it, then all close. Reported: idle RSS before, peak (VmHWM), RSS 1, 5 and 10 s
//!   after the close. Default source settings (`max_buffered_bytes` 32 MiB).
//!
//! `cargo bench --bench memory_bounds -- syslog` (or `-- files`); `SLUICE_BIN` runs another
//! build of the agent, and the agent inherits the environment (e.g. `MIMALLOC_PURGE_DELAY`).

#[path = "support/agent.rs"]
mod agent;
#[path = "support/procfs.rs"]
mod procfs;
#[path = "../tests/support/mod.rs"]
mod support;

use procfs::{cpu_seconds, status_mib};
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn rss(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The agent, started on `dir/sluice.yaml` with the API on `api`; killed when dropped.
struct Running {
    child: Child,
    api: SocketAddr,
}

impl Running {
    fn start(dir: &Path, body: &str) -> Running {
        let api: SocketAddr = format!("127.0.0.1:{}", support::free_port())
            .parse()
            .expect("api address");
        let config = format!(
            "data_dir: {}\napi: {{ address: \"{api}\" }}\n{body}",
            dir.join("data").display()
        );
        let path = dir.join("sluice.yaml");
        std::fs::write(&path, config).expect("write config");
        let child = Command::new(agent::binary())
            .args(["run", "-c"])
            .arg(&path)
            .env("SLUICE_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start sluice");
        let running = Running { child, api };
        support::wait_for("the agent's API", Duration::from_secs(30), || {
            support::http_get(api, "/live").is_some()
        });
        running
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn metric(&self, name: &str) -> f64 {
        self.metric_labelled(name, &[])
    }

    fn metric_labelled(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = support::http_get(self.api, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default();
        support::metric_sum(&text, name, labels)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raises this process's soft open-file limit to the hard one (the flood holds thousands of
/// sockets, the file scenario a thousand files).
fn raise_nofile_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            eprintln!("could not raise RLIMIT_NOFILE: {error}");
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    raise_nofile_limit();
    let scenario = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .cloned()
        .or_else(|| std::env::var("SLUICE_BENCH_SCENARIO").ok());
    match scenario.as_deref() {
        Some("files") => files(),
        Some("syslog") => syslog(),
        None => {
            syslog();
            files();
        }
        Some(other) => eprintln!("unknown scenario {other:?}: `files` or `syslog`"),
    }
}

/// Scenario `syslog`: the partial-frame flood.
fn syslog() {
    let connections: usize = env_or("SLUICE_BENCH_CONNECTIONS", 4096);
    let frame_bytes: usize = env_or("SLUICE_BENCH_FRAME_BYTES", 64_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let port = support::free_port();
    let agent = Running::start(
        dir.path(),
        &format!("pipelines:\n  p:\n    sources:\n      - type: syslog\n        mode: tcp\n        address: 127.0.0.1:{port}\n    sinks:\n      - type: blackhole\n"),
    );
    let pid = agent.pid();
    std::thread::sleep(Duration::from_secs(3));
    let idle = rss(pid);
    let header = "<13>Nov 26 12:00:00 host app: ";
    // No newline: a non-transparent frame never ends. An octet count larger than the bytes
    // that follow: an octet-counted frame never ends.
    let newline_frame = format!("{header}{}", "x".repeat(frame_bytes - header.len()));
    let counted_prefix = format!("{} ", frame_bytes + 1000);
    let counted_frame = format!(
        "{counted_prefix}{header}{}",
        "x".repeat(frame_bytes - header.len() - counted_prefix.len())
    );
    let started = Instant::now();
    let mut streams = Vec::with_capacity(connections);
    let mut failed = 0;
    let mut flood_peak = idle;
    for i in 0..connections {
        let frame = if i % 2 == 0 {
            &newline_frame
        } else {
            &counted_frame
        };
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut stream) => {
                let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                if stream.write_all(frame.as_bytes()).is_err() {
                    failed += 1;
                }
                streams.push(stream);
            }
            Err(_) => failed += 1,
        }
        if i % 64 == 0 {
            flood_peak = flood_peak.max(rss(pid));
        }
    }
    let flood_secs = started.elapsed().as_secs_f64();
    // Let the agent read what the sockets still hold.
    for _ in 0..20 {
        flood_peak = flood_peak.max(rss(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    let held = rss(pid);
    let open = agent.metric("sluice_syslog_connections_open");
    let closes = agent.metric("sluice_syslog_buffer_closes_total");
    drop(streams);
    let closed_at = Instant::now();
    let mut after = Vec::new();
    for mark in [1u64, 5, 10] {
        let due = closed_at + Duration::from_secs(mark);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        after.push(rss(pid));
    }
    let hwm = status_mib(pid, "VmHWM:");
    let open_after = agent.metric("sluice_syslog_connections_open");
    println!(
        "memory_bounds syslog: {connections} connections x {frame_bytes} B partial frames in {flood_secs:.1}s ({failed} connects/writes failed); \
         idle RSS {idle:.1} MiB, peak (VmHWM) {hwm:.1} MiB (sampled max {flood_peak:.1}), {held:.1} MiB while held \
         ({open:.0} still open, {closes:.0} closed over the budget); after closing: {:.1} / {:.1} / {:.1} MiB at 1 / 5 / 10 s \
         ({open_after:.0} open); agent CPU {:.2}s",
        after[0],
        after[1],
        after[2],
        cpu_seconds(pid),
    );
}

/// Scenario `files`: 1,000 files written while the sink is down.
fn files() {
    let minutes: f64 = env_or("SLUICE_BENCH_MINUTES", 10.0);
    let rate: usize = env_or("SLUICE_BENCH_RATE", 2000);
    let n_files: usize = env_or("SLUICE_BENCH_FILES", 1000);
    let warmup = Duration::from_secs(env_or("SLUICE_BENCH_WARMUP_SECS", 60));
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).expect("input dir");
    // Loki is down: nothing listens on its port, every request is refused.
    let loki_port = support::free_port();
    let agent = Running::start(
        dir.path(),
        &format!("pipelines:\n  p:\n    sources:\n      - type: file\n        include: [\"{}/*.log\"]\n    sinks:\n      - type: loki\n        endpoint: http://127.0.0.1:{loki_port}\n        labels: {{ job: bench }}\n", input.display()),
    );
    let pid = agent.pid();
    let duration = Duration::from_secs_f64(minutes * 60.0);
    let writer = {
        let input = input.clone();
        std::thread::spawn(move || write_files(&input, n_files, rate, duration))
    };
    let started = Instant::now();
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut next = started;
    while started.elapsed() < duration {
        samples.push((started.elapsed().as_secs_f64(), rss(pid)));
        next += Duration::from_secs(5);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let written = writer.join().expect("writer thread");
    report_files(&samples, warmup.as_secs_f64(), n_files, written, minutes);
    println!(
        "  agent CPU {:.2}s, VmHWM {:.1} MiB, Loki sink delivered {:.0} events",
        cpu_seconds(pid),
        status_mib(pid, "VmHWM:"),
        agent.metric_labelled("sluice_events_sent_total", &[("component_kind", "sink")]),
    );
}

/// Appends 150-byte lines round-robin to `n_files` files at `rate` lines per second in total
/// (100 rounds a second) for `duration`; returns how many it wrote.
fn write_files(input: &Path, n_files: usize, rate: usize, duration: Duration) -> u64 {
    let mut files: Vec<std::fs::File> = (0..n_files)
        .map(|i| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(input.join(format!("app-{i:04}.log")))
                .expect("open input file")
        })
        .collect();
    let started = Instant::now();
    let mut written: u64 = 0;
    while started.elapsed() < duration {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while written < due {
            let file = &mut files[written as usize % n_files];
            let mut line = format!("2024-05-01T10:00:00.000Z INFO web-1 request seq={written} path=/api/v1/orders status=200 ");
            line.extend(std::iter::repeat_n(
                'x',
                149usize.saturating_sub(line.len()),
            ));
            line.push('\n');
            file.write_all(line.as_bytes()).expect("append");
            written += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    written
}

/// Prints the RSS summary: the value at the end of the warm-up, min/max after it and the
/// least-squares slope of the samples after it.
fn report_files(samples: &[(f64, f64)], warmup: f64, n_files: usize, written: u64, minutes: f64) {
    let steady: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t >= warmup)
        .collect();
    let at_warmup = steady.first().map(|s| s.1).unwrap_or(0.0);
    let min = steady.iter().map(|s| s.1).fold(f64::INFINITY, f64::min);
    let max = steady.iter().map(|s| s.1).fold(0.0, f64::max);
    let n = steady.len() as f64;
    let (mean_t, mean_r) = (
        steady.iter().map(|s| s.0).sum::<f64>() / n,
        steady.iter().map(|s| s.1).sum::<f64>() / n,
    );
    let covariance: f64 = steady
        .iter()
        .map(|(t, r)| (t - mean_t) * (r - mean_r))
        .sum();
    let variance: f64 = steady.iter().map(|(t, _)| (t - mean_t).powi(2)).sum();
    let slope_per_minute = if variance > 0.0 {
        covariance / variance * 60.0
    } else {
        0.0
    };
    let flat = max - at_warmup <= 2.0 && at_warmup - min <= 2.0;
    println!(
        "memory_bounds files: {n_files} files, {written} lines in {minutes} min, Loki down; RSS after {warmup:.0}s warm-up {at_warmup:.1} MiB, \
         after it min {min:.1} / max {max:.1} MiB ({} samples), slope {slope_per_minute:+.3} MiB/min: {}",
        steady.len(),
        if flat { "flat within ± 2 MiB" } else { "NOT flat within ± 2 MiB" },
    );
    let per_minute: Vec<String> = samples
        .iter()
        .filter(|(t, _)| (*t as u64) % 60 < 5)
        .map(|(t, r)| format!("{:.0}s {r:.1}", t))
        .collect();
    println!("  RSS (MiB) each minute: {}", per_minute.join(", "));
}
