//! Metrics collection costs, in CPU time of this process (`/proc/self/stat`), one core:
//!
//! - `scrape_parse`: the exposition-format parser on a real node_exporter 1.5 body
//!   (`tests/data/host_metrics/node_exporter.prom`, 507 samples), in samples per
//!   CPU-second (the issue's target: ≥ 5M).
//! - `scrape_events`: the same body parsed and mapped to metric events with target labels,
//!   as the `prometheus_scrape` source does per scrape.
//! - `host_metrics_collect`: one collection of every `host_metrics` collector on this
//!   machine, in CPU milliseconds (target: ≤ 2 ms).
//!
//! `cargo bench --bench host_metrics` (a custom harness; prints one line per figure).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

use sluice::event::Timestamp;
use sluice::source::host_metrics::HostMetricsConfig;
use sluice::source::prometheus_scrape::{parse, PrometheusScrapeConfig};

/// utime + stime of this process, from `/proc/self/stat` (clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after_comm = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_comm.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Runs `body` until it has used at least `min_cpu` of CPU; returns (iterations, CPU).
fn measure(min_cpu: Duration, mut body: impl FnMut()) -> (u64, Duration) {
    let start = cpu_time();
    let mut iterations = 0u64;
    loop {
        for _ in 0..16 {
            body();
        }
        iterations += 16;
        let used = cpu_time() - start;
        if used >= min_cpu {
            return (iterations, used);
        }
    }
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let body = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/host_metrics/node_exporter.prom"
    ))
    .expect("fixture");
    let mut samples = 0u64;
    parse::parse(&body, |_| {
        samples += 1;
        true
    })
    .expect("the fixture parses");

    if wanted("scrape_parse") {
        let (n, cpu) = measure(Duration::from_secs(3), || {
            let mut count = 0u64;
            parse::parse(std::hint::black_box(&body), |sample| {
                count += std::hint::black_box(sample.value) as u64 & 1;
                true
            })
            .unwrap();
            std::hint::black_box(count);
        });
        let rate = (n * samples) as f64 / cpu.as_secs_f64();
        println!(
            "scrape_parse: {:.2}M samples per CPU-second ({samples} samples x {n} in {cpu:?})",
            rate / 1e6
        );
    }
    if wanted("scrape_events") {
        let config: PrometheusScrapeConfig = serde_json::from_str(
            r#"{"targets": ["http://127.0.0.1:9100/metrics"], "job": "node"}"#,
        )
        .unwrap();
        let scrape = config.build().unwrap();
        let (n, cpu) = measure(Duration::from_secs(3), || {
            std::hint::black_box(scrape.events_of(&body, Timestamp(1)).unwrap());
        });
        let rate = (n * samples) as f64 / cpu.as_secs_f64();
        println!(
            "scrape_events: {:.2}M samples per CPU-second ({samples} samples x {n} in {cpu:?})",
            rate / 1e6
        );
    }
    if wanted("host_metrics_collect") {
        let mut source = HostMetricsConfig::default().build().unwrap();
        let series = source.collect(Timestamp(1)).len();
        let (n, cpu) = measure(Duration::from_secs(3), || {
            std::hint::black_box(source.collect(Timestamp(1)));
        });
        println!(
            "host_metrics_collect: {:.3} ms CPU per collection ({series} series; {n} collections in {cpu:?})",
            cpu.as_secs_f64() * 1000.0 / n as f64
        );
    }
}
