//! Sink encoding hot paths: one 5000-event batch of ~150-byte access-log lines encoded and
//! compressed the way each sink sends it. Loki: protobuf + snappy (default) and JSON + gzip.
//! (Elasticsearch and remote-write cases belong here too.)

/// The agent's allocator, so the figures match what the binary does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::event::{Event, LogEvent, Map, Timestamp, Value};
use sluice::sink::driver::{Compression, HttpSinkCodec};
use sluice::sink::loki::LokiConfig;

fn events(n: u64) -> Vec<Event> {
    let now = Timestamp(1_700_000_000_000_000_000);
    let time = sluice::source::demo::time_text(Default::default(), now);
    (0..n)
        .map(|seq| {
            let mut fields = Map::new();
            fields.insert("seq", Value::Int(seq as i64));
            Event::Log(LogEvent {
                timestamp: Timestamp(now.0 + seq as i64),
                message: Value::String(sluice::source::demo::line(Default::default(), seq, &time)),
                fields,
                origin: None,
            })
        })
        .collect()
}

fn loki(c: &mut Criterion) {
    let batch = events(5000);
    let mut group = c.benchmark_group("loki_encode");
    group.throughput(Throughput::Elements(batch.len() as u64));
    for (name, encoding, compression) in [
        ("protobuf_snappy", "protobuf", Compression::Snappy),
        ("json_gzip", "json", Compression::Gzip),
    ] {
        let config: LokiConfig = serde_json::from_value(serde_json::json!({
            "endpoint": "http://127.0.0.1:3100",
            "encoding": encoding,
            "labels": { "job": "bench", "host": "gateway-1" },
        }))
        .expect("bench config");
        let mut codec = config.codec().expect("bench codec");
        group.bench_function(name, |b| {
            b.iter(|| {
                let encoded = codec.encode(&batch);
                let mut bytes = 0;
                for request in encoded.requests {
                    bytes += compression.compress(request.body, 6).len();
                }
                bytes
            })
        });
    }
    group.finish();
}

criterion_group!(benches, loki);
criterion_main!(benches);
