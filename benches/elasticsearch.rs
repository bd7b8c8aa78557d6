//! Elasticsearch `_bulk` encoding: one 5000-event batch of ~150-byte file lines (with
//! origins, so every document gets its deterministic `_id`) encoded to NDJSON, alone and
//! then gzipped at levels 1 to 9 by the agent (libdeflate) and, for comparison, by
//! `flate2`'s encoder on zlib-rs (what the agent used before). Throughput is in uncompressed
//! NDJSON bytes, so the MB/s of each level compare directly; the compressed size of each
//! level is printed once.
//!
//! `cargo bench --bench elasticsearch` (`-- libdeflate` or `-- zlib_rs` for one engine).

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
    let zlib_rs = |body: &[u8], level: u32| {
        use std::io::Write as _;
        let mut encoder =
            flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        encoder.write_all(body).expect("write to a Vec");
        encoder.finish().expect("finish a Vec")
    };
    for level in 1u32..=9 {
        let body = codec.encode(&batch).requests.remove(0).body;
        let libdeflate = Compression::Gzip.compress(body.clone(), level).len();
        let zlib = zlib_rs(&body, level).len();
        println!(
            "gzip level {level}: {body_bytes} -> {libdeflate} bytes ({:.2}:1) libdeflate, {zlib} bytes ({:.2}:1) zlib-rs, {} events",
            body_bytes as f64 / libdeflate as f64,
            body_bytes as f64 / zlib as f64,
            batch.len()
        );
        group.bench_function(format!("ndjson_gzip_{level}_libdeflate"), |b| {
            b.iter(|| {
                let body = codec.encode(&batch).requests.remove(0).body;
                Compression::Gzip.compress(body, level).len()
            })
        });
        group.bench_function(format!("ndjson_gzip_{level}_zlib_rs"), |b| {
            b.iter(|| {
                let body = codec.encode(&batch).requests.remove(0).body;
                zlib_rs(&body, level).len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, elasticsearch);
criterion_main!(benches);
