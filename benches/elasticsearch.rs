//! Elasticsearch `_bulk` encoding: one 5000-event batch of ~150-byte file lines (with
//! origins, so every document gets its deterministic `_id`) encoded to NDJSON, alone and
//! then gzipped at levels 1, 3 and 6. Throughput is in uncompressed NDJSON bytes, so the
//! MB/s of each level compare directly; the compressed size of each level is printed once.
//!
//! `cargo bench --bench elasticsearch`.

/// The agent's allocator, so the figures match what the binary does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::event::{Event, LogEvent, Map, Origin, StreamName, Timestamp, Value};
use sluice::sink::driver::{Compression, HttpSinkCodec};
use sluice::sink::elasticsearch::ElasticsearchConfig;

fn events(n: u64) -> Vec<Event> {
    let now = Timestamp(1_700_000_000_000_000_000);
    let time = sluice::source::demo::time_text(Default::default(), now);
    let stream = StreamName::from("803-1a2b3c");
    let mut offset = 0;
    (0..n)
        .map(|seq| {
            let line = sluice::source::demo::line(Default::default(), seq, &time);
            let mut fields = Map::new();
            fields.insert("file", Value::from("/var/log/nginx/access.log"));
            let event = Event::Log(LogEvent {
                timestamp: Timestamp(now.0 + seq as i64 * 1_000),
                origin: Some(Origin {
                    stream: stream.clone(),
                    offset,
                }),
                message: Value::String(line),
                fields,
            });
            offset += 151;
            event
        })
        .collect()
}

fn elasticsearch(c: &mut Criterion) {
    let batch = events(5000);
    let config: ElasticsearchConfig = serde_json::from_value(serde_json::json!({
        "endpoint": "http://127.0.0.1:9200",
        "index": "logs-%Y.%m.%d",
    }))
    .expect("bench config");
    let mut codec = config.codec().expect("bench codec");
    let body_bytes = codec.encode(&batch).requests[0].body.len();
    let mut group = c.benchmark_group("elasticsearch_encode");
    group.throughput(Throughput::Bytes(body_bytes as u64));
    group.bench_function("ndjson", |b| {
        b.iter(|| codec.encode(&batch).requests[0].body.len())
    });
    for level in [1u32, 3, 6] {
        let body = codec.encode(&batch).requests.remove(0).body;
        let compressed = Compression::Gzip.compress(body, level).len();
        println!(
            "gzip level {level}: {body_bytes} -> {compressed} bytes ({:.1}:1), {} events",
            body_bytes as f64 / compressed as f64,
            batch.len()
        );
        group.bench_function(format!("ndjson_gzip_{level}"), |b| {
            b.iter(|| {
                let body = codec.encode(&batch).requests.remove(0).body;
                Compression::Gzip.compress(body, level).len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, elasticsearch);
criterion_main!(benches);
