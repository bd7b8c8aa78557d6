//! End-to-end throughput of syslog over TCP into Loki, through the agent binary (bench
//! profile): RFC 5424 messages (~150 bytes, each with its `seq=N`) sent by 4 connections
//! (newline framing, as fast as the agent reads them) to a `syslog` source, into the `loki`
//! sink (protobuf + snappy; labels `job` and the message's `appname`) against the fake Loki
//! of `tests/support/fake_loki.rs`, until Loki holds every message. Reports, for the agent
//! process only, messages per CPU-second, wall time and peak RSS (VmHWM), and checks that
//! every `seq` arrived exactly once.
//!
//! `cargo bench --bench syslog_loki` (`SLUICE_BENCH_EVENTS`, default 1,000,000;
//! `SLUICE_BENCH_CONNECTIONS`, default 4; `SLUICE_BIN` for another binary).

#[path = "support/agent.rs"]
mod agent;
#[path = "../tests/support/fake_loki.rs"]
mod fake_loki;
#[path = "../tests/support/http_request.rs"]
mod http_request;
#[path = "support/procfs.rs"]
mod procfs;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use procfs::{cpu_seconds, status_kib};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// True once the agent's API answers.
fn api_up(api: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(api) else {
        return false;
    };
    let _ = write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1")
}

/// The RFC 5424 messages of connection `c` of `connections`, newline-framed: every
/// `connections`-th seq from `c`.
fn payload(c: usize, connections: usize, count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count / connections * 160);
    for seq in (c..count).step_by(connections) {
        let _ = writeln!(
            out,
            "<165>1 2026-03-15T11:00:00.003Z web-frontend-0{c}.example.com nginx 8710 ACCESS [origin ip=\"10.1.2.3\"] GET /api/v1/items/{} 200 1532 seq={seq}",
            seq % 997
        );
    }
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let count = env_or("SLUICE_BENCH_EVENTS", 1_000_000);
    let connections = env_or("SLUICE_BENCH_CONNECTIONS", 4).max(1);
    let loki = fake_loki::FakeLoki::start_tallying();
    let dir = tempfile::tempdir().expect("temp dir");
    let (api, syslog) = (free_addr(), free_addr());
    // Extra keys, one per line: SLUICE_BENCH_PIPELINE (`queue_batches: 1`), SLUICE_BENCH_SYSLOG
    // (`batch_events: 100`), SLUICE_BENCH_LOKI (`batch: { max_events: 1000 }`).
    let extra = agent::extra_keys;
    let config = format!(
        "data_dir: {data}\napi: {{ address: \"{api}\" }}\npipelines:\n  bench:\n{pipeline}    sources:\n      - type: syslog\n        mode: tcp\n        address: \"{syslog}\"\n        timezone: utc\n{source}    sinks:\n      - type: loki\n        endpoint: {endpoint}\n        labels: {{ job: bench, app: \"{{{{ appname }}}}\" }}\n{loki}",
        data = dir.path().join("data").display(),
        endpoint = loki.endpoint(),
        pipeline = extra("SLUICE_BENCH_PIPELINE", "    "),
        source = extra("SLUICE_BENCH_SYSLOG", "        "),
        loki = extra("SLUICE_BENCH_LOKI", "        "),
    );
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, config).expect("write config");
    let payloads: Vec<Vec<u8>> = (0..connections)
        .map(|c| payload(c, connections, count))
        .collect();
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    let mut child = agent::start(&path);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !api_up(api) {
        assert!(Instant::now() < deadline, "the agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu_before = cpu_seconds(child.id());
    let started = Instant::now();
    let senders: Vec<_> = payloads
        .into_iter()
        .map(|payload| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(syslog).expect("connect to the agent");
                stream.write_all(&payload).expect("send");
            })
        })
        .collect();
    for sender in senders {
        sender.join().expect("sender");
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while loki.entry_count() < count {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the agent exited ({status}) before delivering every message");
        }
        assert!(Instant::now() < deadline, "not every message reached Loki");
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(child.id()) - cpu_before;
    let hwm = status_kib(child.id(), "VmHWM:") as f64 / 1024.0;
    let _ = child.kill();
    let _ = child.wait();
    let mut seqs = loki.take_seqs();
    let received = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), count, "every seq arrived");
    assert_eq!(received, count, "no seq twice");
    println!(
        "syslog_loki: {count} RFC 5424 messages ({:.0} B each, {connections} TCP connections) → Loki in {wall:.2}s wall, agent CPU {cpu:.2}s: {:.0} messages/CPU-s, {:.0}/s, peak RSS {hwm:.1} MiB",
        bytes as f64 / count as f64,
        count as f64 / cpu.max(0.01),
        count as f64 / wall,
    );
}
