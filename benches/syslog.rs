//! Syslog hot paths: the RFC 5424 and RFC 3164 parsers and the event builder on typical
//! ~150-byte messages, the RFC 6587 framer, and (when a release binary is given in
//! `SLUICE_BIN`) TCP ingest end to end into a `blackhole` sink, reported as messages per
//! CPU-second of the agent process.
//!
//! `cargo bench --bench syslog` for the parsers;
//! `cargo build --release && SLUICE_BIN=target/x86_64-unknown-linux-gnu/release/sluice cargo bench --bench syslog -- ingest`
//! (`target/<host triple>/release/sluice`: `.cargo/config.toml` builds for an explicit target)
//! for the end-to-end figure.

/// The agent's allocator, so the figures match what the binary does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/procfs.rs"]
mod procfs;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{black_box, criterion_group, Criterion, Throughput};
use procfs::cpu_seconds;
use sluice::event::Timestamp;
use sluice::source::syslog::framing::{Decoder, Framing};
use sluice::source::syslog::message_to_event;
use sluice::source::syslog::parse::parse;
use sluice::source::syslog::time::Zone;

const RFC5424: &str = r#"<165>1 2026-03-15T11:00:00.003Z web-frontend-01.example.com nginx 8710 ACCESS [origin ip="10.1.2.3"] GET /api/v1/users 200 1532 "curl/8.5.0""#;
const RFC3164: &str = "<34>Mar 15 11:00:00 web-frontend-01 sshd[24200]: Accepted publickey for deploy from 10.1.2.3 port 52144 ssh2: ED25519 SHA256:abc";

fn parsers(c: &mut Criterion) {
    let now = Timestamp::now();
    let mut group = c.benchmark_group("syslog_parse");
    group.throughput(Throughput::Elements(1));
    group.bench_function("rfc5424", |b| {
        b.iter(|| parse(black_box(RFC5424), now, Zone::Fixed(0)).map(|m| m.message.len()))
    });
    group.bench_function("rfc3164", |b| {
        b.iter(|| parse(black_box(RFC3164), now, Zone::Fixed(0)).map(|m| m.message.len()))
    });
    group.bench_function("rfc3164_local_zone", |b| {
        b.iter(|| parse(black_box(RFC3164), now, Zone::Local).map(|m| m.message.len()))
    });
    group.bench_function("event_rfc5424", |b| {
        b.iter(|| message_to_event(black_box(RFC5424.as_bytes()), now, Zone::Fixed(0)))
    });
    group.bench_function("event_rfc3164", |b| {
        b.iter(|| message_to_event(black_box(RFC3164.as_bytes()), now, Zone::Fixed(0)))
    });
    group.finish();

    let mut stream = Vec::new();
    for _ in 0..1000 {
        stream.extend_from_slice(format!("{} {RFC5424}", RFC5424.len()).as_bytes());
    }
    let mut group = c.benchmark_group("syslog_framing");
    group.throughput(Throughput::Elements(1000));
    for framing in [Framing::Newline, Framing::OctetCounting] {
        let input = match framing {
            Framing::Newline => RFC5424
                .repeat(1000)
                .replace("\"curl/8.5.0\"", "\"curl/8.5.0\"\n")
                .into_bytes(),
            _ => stream.clone(),
        };
        group.bench_function(format!("{framing:?}"), |b| {
            b.iter(|| {
                let mut decoder = Decoder::new(framing, 65536);
                let mut buf = BytesMut::from(&input[..]);
                let mut n = 0;
                while decoder.decode(&mut buf).is_some() {
                    n += 1;
                }
                n
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parsers);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn metric(api: SocketAddr, name: &str, label: &str) -> f64 {
    let Ok(mut stream) = TcpStream::connect(api) else {
        return -1.0;
    };
    let _ = write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// TCP ingest through the real binary into a blackhole sink.
fn ingest(binary: &str) {
    const CONNECTIONS: usize = 4;
    const PER_CONNECTION: usize = 500_000;
    let dir = tempfile::tempdir().unwrap();
    let (port, api_port) = (free_port(), free_port());
    let api: SocketAddr = format!("127.0.0.1:{api_port}").parse().unwrap();
    let config = dir.path().join("sluice.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {}\napi:\n  address: \"{api}\"\npipelines:\n  bench:\n    sources:\n      - {{ type: syslog, mode: tcp, address: \"127.0.0.1:{port}\", timezone: utc }}\n    sinks:\n      - type: blackhole\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(binary)
        .args(["run", "-c"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start sluice");
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(api, "sluice_events", "") < 0.0 {
        assert!(Instant::now() < deadline, "agent did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let payload: Vec<u8> = (0..PER_CONNECTION)
        .flat_map(|i| format!("{RFC3164} seq={i}\n").into_bytes())
        .collect();
    let cpu_before = cpu_seconds(child.id());
    let started = Instant::now();
    let senders: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let payload = payload.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream.write_all(&payload).unwrap();
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    let total = (CONNECTIONS * PER_CONNECTION) as f64;
    let deadline = Instant::now() + Duration::from_secs(300);
    while metric(
        api,
        "sluice_events_received_total",
        "component_kind=\"sink\"",
    ) < total
    {
        assert!(Instant::now() < deadline, "not every message arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(child.id()) - cpu_before;
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "syslog tcp ingest: {total} messages ({} bytes each) in {elapsed:.2} s wall, {cpu:.2} CPU-s: {:.0} messages per CPU-second, {:.0} per wall second",
        payload.len() / PER_CONNECTION,
        total / cpu,
        total / elapsed
    );
}

fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    if let Ok(binary) = std::env::var("SLUICE_BIN") {
        ingest(&binary);
    }
}
