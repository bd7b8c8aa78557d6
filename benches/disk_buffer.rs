//! End-to-end measurements of a sink's disk buffer through the agent binary (issue 18):
//! memory with a big backlog, start-up on it, and the speed of its drain.
//!
//! A `file` source (plain 150-byte lines, `seq=N` in each) feeds a `loki` sink whose fake
//! Loki (`tests/support/fake_loki.rs`, tallying mode: it keeps each line's `seq` only)
//! answers every push `503` until the drain. Three phases, each its own agent process:
//!
//! 1. **Memory baseline**: `buffer: { type: memory }` with Loki down. The sink holds its
//!    bounded queue and the pipeline blocks; VmRSS and VmHWM once it has stood still.
//! 2. **Fill**: `buffer: { type: disk }` with Loki down. Input is written a chunk at a time
//!    (a chunk is deleted once its lines are in the buffer, so the disk holds the buffer and
//!    at most two chunks) until `sluice_buffer_bytes` reaches the backlog; VmRSS is sampled
//!    every 50 ms throughout, then read again at rest.
//! 3. **Restart and drain**: SIGTERM, start again on the full buffer (Loki still down): time
//!    until `/health` answers and VmRSS then; Loki comes up: buffer bytes read per wall
//!    second and per CPU-second of the agent until `sluice_buffer_events` is 0. Every `seq`
//!    written must arrive at least once; duplicates are counted and reported.
//!
//! `cargo bench --bench disk_buffer` (`SLUICE_BENCH_BACKLOG_MB`: the backlog in MiB of
//! buffer, default 2048; `SLUICE_BIN`: another agent binary). Input and buffer live in a
//! temp dir removed at the end. The fake decodes in the bench process on the same cores.

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

use procfs::{cpu_seconds, status_mib};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lines a chunk of input holds (~60 MB).
const CHUNK_LINES: u64 = 400_000;
const MIB: f64 = 1024.0 * 1024.0;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `GET path` on the agent's API: (status, body), `None` while nothing answers.
fn http_get(api: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(api).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    let status = reply.split(' ').nth(1)?.parse().ok()?;
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    Some((status, body.unwrap_or_default()))
}

/// The sum of `name`'s samples on `/metrics` (the bench has one buffered sink).
fn metric(api: SocketAddr, name: &str) -> Option<f64> {
    let (_, body) = http_get(api, "/metrics")?;
    let prefix = format!("{name}{{");
    Some(
        body.lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum(),
    )
}

/// Samples a process's VmRSS every 50 ms until dropped; keeps the highest.
struct RssSampler {
    max_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let max_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (max, done) = (max_kib.clone(), stop.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let kib = (status_mib(pid, "VmRSS:") * 1024.0) as u64;
                max.fetch_max(kib, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        RssSampler { max_kib, stop }
    }

    fn max_mib(&self) -> f64 {
        self.max_kib.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One agent configuration: its files and API address.
struct Setup {
    dir: PathBuf,
    input: PathBuf,
    config: PathBuf,
    api: SocketAddr,
}

impl Setup {
    fn new(root: &Path, name: &str, loki: &str, buffer: &str) -> Setup {
        let dir = root.join(name);
        let input = dir.join("in");
        std::fs::create_dir_all(&input).expect("input dir");
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let config = format!(
            "data_dir: {data}\napi: {{ address: \"{api}\" }}\nshutdown_timeout_secs: 2\npipelines:\n  bench:\n    sources:\n      - type: file\n        include: [\"{input}/*.log\"]\n    sinks:\n      - type: loki\n        endpoint: {loki}\n        labels: {{ job: bench }}\n        retry: {{ max_backoff_ms: 1000 }}\n        buffer: {buffer}\n",
            data = dir.join("data").display(),
            input = input.display(),
        );
        let path = dir.join("sluice.yaml");
        std::fs::write(&path, config).expect("write config");
        Setup {
            dir,
            input,
            config: path,
            api,
        }
    }

    fn start(&self) -> Child {
        Command::new(agent::binary())
            .args(["run", "-c"])
            .arg(&self.config)
            .env("SLUICE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start sluice")
    }

    /// Waits (bounded) until `metric` reaches `at_least`; false if the agent exits first.
    fn wait_metric(&self, child: &mut Child, name: &str, at_least: f64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("the agent exited ({status})");
                return false;
            }
            if metric(self.api, name).is_some_and(|v| v >= at_least) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

/// SIGTERM, then the exit (SIGKILL after 60 s).
fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn chunk_path(input: &Path, chunk: u64) -> PathBuf {
    input.join(format!("chunk-{chunk:05}.log"))
}

/// Phase 1: the memory buffer's RSS once its pipeline has blocked on the down sink.
fn memory_baseline(root: &Path, loki: &str) -> (f64, f64) {
    let setup = Setup::new(root, "memory", loki, "{ type: memory }");
    lines::append_lines(&chunk_path(&setup.input, 0), 0..CHUNK_LINES);
    let mut child = setup.start();
    let sampler = RssSampler::start(child.id());
    // Blocked: the file source's count stops moving (checked over 2 s, at most 60 s).
    let (mut last, mut still_since) = (-1.0, Instant::now());
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && still_since.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(200));
        let received = metric(setup.api, "sluice_events_received_total").unwrap_or(-1.0);
        if received != last || received <= 0.0 {
            (last, still_since) = (received, Instant::now());
        }
    }
    let (rss, hwm) = (
        status_mib(child.id(), "VmRSS:"),
        status_mib(child.id(), "VmHWM:"),
    );
    println!(
        "memory buffer, Loki down: blocked after {last:.0} events read; VmRSS {rss:.1} MiB at rest, sampled max {:.1}, VmHWM {hwm:.1}",
        sampler.max_mib()
    );
    terminate(&mut child);
    let _ = std::fs::remove_dir_all(&setup.dir);
    (rss, hwm)
}

/// Phase 2: fills the disk buffer to `backlog` bytes; returns the lines written.
fn fill(setup: &Setup, child: &mut Child, backlog: u64) -> u64 {
    let sampler = RssSampler::start(child.id());
    let started = Instant::now();
    let cpu_before = cpu_seconds(child.id());
    let mut written = 0;
    let mut chunk = 0;
    while metric(setup.api, "sluice_buffer_bytes").unwrap_or(0.0) < backlog as f64 {
        let path = chunk_path(&setup.input, chunk);
        lines::append_lines(&path, written..written + CHUNK_LINES);
        lines::settle(&path);
        written += CHUNK_LINES;
        let limit = Duration::from_secs(300);
        assert!(
            setup.wait_metric(child, "sluice_buffer_events", written as f64, limit),
            "the buffer did not take chunk {chunk}"
        );
        if chunk > 0 {
            let _ = std::fs::remove_file(chunk_path(&setup.input, chunk - 1));
        }
        chunk += 1;
    }
    let bytes = metric(setup.api, "sluice_buffer_bytes").unwrap_or(0.0);
    let (wall, cpu) = (
        started.elapsed().as_secs_f64(),
        cpu_seconds(child.id()) - cpu_before,
    );
    let max_during = sampler.max_mib();
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "disk buffer, Loki down: {written} lines, {:.0} MiB of buffer in {wall:.1}s wall, {cpu:.1} CPU-s; VmRSS max {max_during:.1} MiB while filling, {:.1} at rest, VmHWM {:.1}",
        bytes / MIB,
        status_mib(child.id(), "VmRSS:"),
        status_mib(child.id(), "VmHWM:"),
    );
    written
}

/// Phase 3a: SIGTERM and start again on the full buffer; the time until `/health`
/// answers, and VmRSS then and a second later.
fn restart(setup: &Setup, child: &mut Child, written: u64) -> Child {
    terminate(child);
    let started = Instant::now();
    let mut child = setup.start();
    let deadline = started + Duration::from_secs(60);
    let status = loop {
        if let Some((status, _)) = http_get(setup.api, "/health") {
            break status;
        }
        assert!(Instant::now() < deadline, "no /health within 60 s");
        assert!(child.try_wait().ok().flatten().is_none(), "agent exited");
        std::thread::sleep(Duration::from_millis(2));
    };
    let ready = started.elapsed().as_secs_f64();
    let rss_ready = status_mib(child.id(), "VmRSS:");
    std::thread::sleep(Duration::from_secs(1));
    let events = metric(setup.api, "sluice_buffer_events").unwrap_or(0.0);
    let bytes = metric(setup.api, "sluice_buffer_bytes").unwrap_or(0.0);
    println!(
        "restart on the full buffer: /health answered {status} after {:.0} ms; VmRSS {rss_ready:.1} MiB then, {:.1} a second later; the buffer holds {events:.0} events ({} written), {:.0} MiB",
        ready * 1000.0,
        status_mib(child.id(), "VmRSS:"),
        written,
        bytes / MIB,
    );
    child
}

/// Phase 3b: Loki comes up; the drain's speed until the buffer is empty.
fn drain(setup: &Setup, child: &mut Child, loki: &fake_loki::FakeLoki, written: u64) {
    let bytes = metric(setup.api, "sluice_buffer_bytes").unwrap_or(0.0);
    println!("drain: agent pid {}", child.id());
    let sampler = RssSampler::start(child.id());
    loki.behave_for(fake_loki::Behavior::Accept, Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut first: Option<(Instant, f64)> = None;
    let mut empty_since: Option<Instant> = None;
    // SLUICE_BENCH_PROGRESS=1: a line a second (events left, CPU of agent and bench).
    let progress = std::env::var_os("SLUICE_BENCH_PROGRESS").is_some();
    let (t0, mut last_report) = (Instant::now(), Instant::now());
    loop {
        assert!(Instant::now() < deadline, "the drain took over 15 minutes");
        assert!(child.try_wait().ok().flatten().is_none(), "agent exited");
        if first.is_none() && loki.entry_count() > 0 {
            first = Some((Instant::now(), cpu_seconds(child.id())));
        }
        let left = metric(setup.api, "sluice_buffer_events").unwrap_or(1.0);
        if progress && last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            println!(
                "  {:.1}s: {left:.0} events left, {} received, agent {:.2} CPU-s, bench {:.2} CPU-s",
                t0.elapsed().as_secs_f64(),
                loki.entry_count(),
                cpu_seconds(child.id()),
                cpu_seconds(std::process::id()),
            );
        }
        // Done when everything arrived, or (lines lost) 10 s after the buffer emptied.
        let empty = first.is_some() && left == 0.0;
        let since = *empty_since.get_or_insert_with(Instant::now);
        if !empty {
            empty_since = None;
        } else if loki.entry_count() as u64 >= written || since.elapsed().as_secs() >= 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (started, cpu_before) = first.expect("a first entry");
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(child.id()) - cpu_before;
    println!(
        "drain of {:.0} MiB ({written} events): {wall:.1}s wall, agent {cpu:.1} CPU-s: {:.0} MB/s ({:.0} MiB/s) of buffer read per wall second, {:.0} MB per CPU-second; {:.0} events/s; VmRSS max {:.1} MiB",
        bytes / MIB,
        bytes / 1e6 / wall,
        bytes / MIB / wall,
        bytes / 1e6 / cpu.max(0.01),
        written as f64 / wall,
        sampler.max_mib(),
    );
}

/// Every `seq` below `written` at least once: (missing, duplicates).
fn check_delivery(mut seqs: Vec<u64>, written: u64) -> (u64, u64) {
    seqs.sort_unstable();
    let received = seqs.len() as u64;
    seqs.dedup();
    let in_range = seqs.iter().filter(|&&s| s < written).count() as u64;
    (written - in_range, received - seqs.len() as u64)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let backlog_mib: u64 = std::env::var("SLUICE_BENCH_BACKLOG_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048);
    let backlog = backlog_mib << 20;
    let root = tempfile::tempdir().expect("temp dir");
    let loki = fake_loki::FakeLoki::start_tallying();
    let down = fake_loki::Behavior::Status {
        code: 503,
        retry_after: None,
        body: "down for the bench".into(),
    };
    loki.behave_for(down, Duration::from_secs(24 * 3600));
    let (base_rss, base_hwm) = memory_baseline(root.path(), &loki.endpoint());
    let max_bytes = backlog * 2;
    let setup = Setup::new(
        root.path(),
        "disk",
        &loki.endpoint(),
        &format!("{{ type: disk, max_bytes: {max_bytes} }}"),
    );
    let mut child = setup.start();
    let written = fill(&setup, &mut child, backlog);
    let (rss, hwm) = (
        status_mib(child.id(), "VmRSS:"),
        status_mib(child.id(), "VmHWM:"),
    );
    println!(
        "backlog RSS against the memory buffer: VmRSS {:+.1} MiB, VmHWM {:+.1} MiB (target within 10)",
        rss - base_rss,
        hwm - base_hwm
    );
    let mut child = restart(&setup, &mut child, written);
    drain(&setup, &mut child, &loki, written);
    terminate(&mut child);
    let (missing, duplicates) = check_delivery(loki.take_seqs(), written);
    println!(
        "delivery: {missing} of {written} seqs missing, {duplicates} delivered more than once"
    );
    assert_eq!(missing, 0, "lines lost");
}
