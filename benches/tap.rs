//! What a stalled `sluice tap` costs the pipeline it watches (issue 24): a `demo` source at
//! full speed through a `set` transform into a `blackhole` sink, with the agent's API on.
//! Events per CPU-second of the agent (events the sink took, from `/metrics`, over the
//! agent's CPU time from `/proc`) are measured in windows without a tap, then with a tap
//! connection that never reads (the agent's buffer for it fills and it drops), then
//! without again. A tap must never slow the pipeline: the tap drops its own events and
//! counts them (`sluice_tap_events_dropped_total`), the pipeline goes on.
//!
//! `cargo bench --bench tap` (`SLUICE_BENCH_TAP_WINDOWS` windows per phase, default 5, of
//! `SLUICE_BENCH_TAP_SECS` seconds, default 3; `SLUICE_BIN` for another agent binary).
//! Prints each window and the stalled phase's median over the mean of the two medians
//! without a tap, `pass` at ≥ 0.85: on the 2-core development VM single windows of one
//! phase, tap or not, differ by up to a third (2026-11-28: 1.66M–3.04M in one run), so a
//! median of five is what can be compared.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/procfs.rs"]
mod procfs;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// `GET /metrics` of the agent's API; empty if it does not answer.
fn metrics(api: SocketAddr) -> String {
    let Ok(mut stream) = TcpStream::connect_timeout(&api, Duration::from_secs(2)) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

/// Sum of the samples of `name` (any labels) in Prometheus text, for series whose labels
/// contain `label` (empty: all).
fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let series_name = series.split('{').next()?;
            (series_name == name && series.contains(label)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

fn sent(api: SocketAddr) -> f64 {
    metric_sum(
        &metrics(api),
        "sluice_events_sent_total",
        "component_kind=\"sink\"",
    )
}

/// Events the sink took per CPU-second of the agent over `window`.
fn events_per_cpu_second(api: SocketAddr, pid: u32, window: Duration) -> f64 {
    let (events, cpu) = (sent(api), procfs::cpu_seconds(pid));
    std::thread::sleep(window);
    let (events, cpu) = (sent(api) - events, procfs::cpu_seconds(pid) - cpu);
    events / cpu.max(0.01)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let windows = agent::env_or("SLUICE_BENCH_TAP_WINDOWS", 5).max(1) as usize;
    let window = Duration::from_secs(agent::env_or("SLUICE_BENCH_TAP_SECS", 3).max(1));
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let api: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = dir.path().join("sluice.yaml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir: {data}
api: {{ address: "{api}" }}
pipelines:
  web:
    sources:
      - {{ type: demo, name: gen, rate: 0, format: logfmt }}
    transforms:
      - {{ type: set, name: mark, fields: {{ tapped: "yes" }} }}
    sinks:
      - {{ type: blackhole, name: sink }}
"#,
            data = dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = agent::start(&config);
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent(api) == 0.0 {
        assert!(Instant::now() < deadline, "the agent's sink took nothing");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let phase = |name: &str| -> f64 {
        let mut rates: Vec<f64> = (0..windows)
            .map(|_| {
                let rate = events_per_cpu_second(api, pid, window);
                println!("tap  {name:<12} {rate:>12.0} events per CPU-second");
                rate
            })
            .collect();
        median(&mut rates)
    };
    let before = phase("no tap");
    // A tap that is never read: the agent's socket buffer fills, then its queue for the
    // tap, then it drops.
    let mut tap = TcpStream::connect(api).unwrap();
    write!(tap, "GET /tap HTTP/1.1\r\nHost: {api}\r\n\r\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric_sum(&metrics(api), "sluice_tap_events_dropped_total", "") == 0.0 {
        assert!(Instant::now() < deadline, "the tap never stalled");
        std::thread::sleep(Duration::from_millis(100));
    }
    let stalled = phase("stalled tap");
    drop(tap);
    std::thread::sleep(Duration::from_secs(1));
    let after = phase("no tap again");
    let _ = child.kill();
    let _ = child.wait();
    let without = (before + after) / 2.0;
    let ratio = stalled / without;
    println!(
        "tap  medians: {before:.0} / {stalled:.0} / {after:.0} events per CPU-second (no tap / stalled tap / no tap): stalled {ratio:.2}x the mean without, {}",
        if ratio >= 0.85 { "pass (>= 0.85)" } else { "FAIL (< 0.85)" }
    );
}
