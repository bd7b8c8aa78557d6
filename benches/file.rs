//! The file source's hot path: read → split into lines → events → batches with their
//! acknowledgement, for plain 150-byte lines (and through the line splitter alone).
//!
//! `cargo bench --bench file`

/// The agent's allocator, so the figures match what the binary does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::fs::File;
use std::io::Write;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::ack::StreamTracker;
use sluice::source::file::identity::Fingerprint;
use sluice::source::file::tailer::{
    LineFormat, LineSplitter, Oversize, ReadCounters, ReadSettings, Tailer,
};
use sluice::telemetry::ComponentMetrics;

const FILE_BYTES: usize = 32 * 1024 * 1024;

fn corpus() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.log");
    let mut file = File::create(&path).unwrap();
    let mut n = 0u64;
    let mut written = 0;
    while written < FILE_BYTES {
        let mut line = format!("2024-05-01T10:00:00.000Z INFO web-1 request seq={n} path=/api/v1/orders status=200 took_ms=12 ");
        while line.len() < 149 {
            line.push('x');
        }
        line.push('\n');
        written += line.len();
        file.write_all(line.as_bytes()).unwrap();
        n += 1;
    }
    (dir, path)
}

fn read_split_batch(c: &mut Criterion) {
    let (_dir, path) = corpus();
    let settings = ReadSettings {
        max_line_bytes: 100 * 1024,
        oversize: Oversize::Truncate,
        format: LineFormat::None,
        multiline: None,
        offset_field: None,
        batch_lines: 1000,
        batch_bytes: 1024 * 1024,
        stamps: Default::default(),
    };
    let counters = ReadCounters::new(&ComponentMetrics::new("bench", "source", "file"));
    let mut group = c.benchmark_group("file");
    group.throughput(Throughput::Bytes(FILE_BYTES as u64));
    group.sample_size(10);
    group.bench_function("read_split_batch_150b_lines", |b| {
        let mut buf = vec![0u8; 64 * 1024];
        b.iter(|| {
            let file = File::open(&path).unwrap();
            let fingerprint = Fingerprint::compute(&file, 1024).unwrap();
            let mut tailer = Tailer::new(
                "1-1".into(),
                (1, 1),
                path.clone(),
                Some(file),
                0,
                fingerprint,
                StreamTracker::detached(0),
                &settings,
            );
            let mut events = 0;
            loop {
                let (batch, n) = tailer.read_batch(&settings, &counters, &mut buf).unwrap();
                if let Some(batch) = batch {
                    events += batch.events.len();
                    for ack in batch.acks {
                        ack.done();
                    }
                }
                if n == 0 {
                    break;
                }
            }
            events
        })
    });
    let data = std::fs::read(&path).unwrap();
    group.bench_function("split_only_150b_lines", |b| {
        b.iter(|| {
            let mut splitter = LineSplitter::new(100 * 1024);
            let mut lines = 0usize;
            for (i, chunk) in data.chunks(64 * 1024).enumerate() {
                splitter.feed(chunk, (i * 64 * 1024) as u64, |_| lines += 1);
            }
            lines
        })
    });
    group.finish();
}

criterion_group!(benches, read_split_batch);
criterion_main!(benches);
