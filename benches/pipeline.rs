//! Criterion bench of the bare pipeline path, in process: the demo source generates
//! numbered 150-byte access-log lines into the bounded queues, the worker threads pass them
//! on, and a blackhole sink settles them (no parsing, no network). Measures events/s of the
//! channel/worker/ack path, including checkpoint tracking.
//!
//! `cargo bench --bench pipeline`

/// The agent's allocator, so the figures match what the binary does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::agent::{self, ConfigSource};

const EVENTS: u64 = 1_000_000;

fn bare_pipeline(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("bench.yaml");
    let mut group = c.benchmark_group("pipeline");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS));
    group.bench_function("demo_to_blackhole_1M", |b| {
        b.iter(|| {
            // A fresh data_dir each run, so the demo source starts from 0 again.
            let data = tempfile::tempdir_in(dir.path()).expect("data dir");
            let mut file = std::fs::File::create(&config).expect("config");
            write!(
                file,
                "data_dir: {}\napi: {{ enabled: false }}\npipelines:\n  bench:\n    sources:\n      - type: demo\n        rate: 0\n        count: {EVENTS}\n    sinks:\n      - type: blackhole\n",
                data.path().display()
            )
            .expect("write config");
            agent::run(ConfigSource::File(config.clone())).expect("agent run");
        })
    });
    group.finish();
}

criterion_group!(benches, bare_pipeline);
criterion_main!(benches);
