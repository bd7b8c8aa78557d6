//! Prometheus remote-write encoding: metric events → `WriteRequest` protobuf → snappy, for
//! 10,000 series per request, the way the `prometheus_remote_write` sink sends them.
//!
//! - `counters_10k`: 10,000 counter events (4 labels + 1 external label), one sample each.
//! - `histograms_10k`: 770 histogram events with 10 bounds = 10,010 series
//!   (`_bucket` x 11, `_sum`, `_count`).
//!
//! The codec is kept across iterations (its per-series table warm, as in a running sink);
//! each iteration moves every timestamp 1 ms forward so no sample is left out as old.
//!
//! Runs with mimalloc, the agent binary's global allocator (`src/main.rs`), so the figure is
//! what the sink costs inside the agent.
//!
//! `cargo bench --bench remote_write`

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice::event::{Event, Metric, MetricValue, Timestamp};
use sluice::sink::driver::{Compression, HttpSinkCodec};
use sluice::sink::prometheus_remote_write::PrometheusRemoteWriteConfig;

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE"];
const STATUSES: &[&str] = &["200", "201", "301", "404", "500"];

fn labels(i: usize) -> Vec<(String, String)> {
    vec![
        ("host".into(), format!("web-{}", i % 50)),
        ("method".into(), METHODS[i % METHODS.len()].into()),
        ("path".into(), format!("/api/v1/items/{}", i / 200)),
        ("status".into(), STATUSES[(i / 4) % STATUSES.len()].into()),
    ]
}

fn counters(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            Event::Metric(Metric {
                name: "http_requests_total".into(),
                labels: labels(i),
                value: MetricValue::Counter(1000.0 + i as f64),
                timestamp: Timestamp(1_700_000_000_000_000_000),
            })
        })
        .collect()
}

fn histograms(n: usize) -> Vec<Event> {
    let bounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
    (0..n)
        .map(|i| {
            Event::Metric(Metric {
                name: "http_request_duration_seconds".into(),
                labels: labels(i),
                value: MetricValue::Histogram {
                    buckets: bounds
                        .iter()
                        .enumerate()
                        .map(|(b, bound)| (*bound, (i * 10 + b * 7) as u64))
                        .collect(),
                    sum: 123.5 + i as f64,
                    count: (i * 10 + 100) as u64,
                },
                timestamp: Timestamp(1_700_000_000_000_000_000),
            })
        })
        .collect()
}

fn bump(events: &mut [Event]) {
    for event in events {
        if let Event::Metric(metric) = event {
            metric.timestamp = Timestamp(metric.timestamp.0 + 1_000_000);
        }
    }
}

fn remote_write(c: &mut Criterion) {
    let config: PrometheusRemoteWriteConfig = serde_json::from_value(serde_json::json!({
        "endpoint": "http://127.0.0.1:9090/api/v1/write",
        "external_labels": { "cluster": "bench" },
        "expire_after_secs": 0,
        "max_samples_per_request": 20000,
    }))
    .expect("bench config");
    let mut group = c.benchmark_group("remote_write_encode");
    for (name, mut batch, series) in [
        ("counters_10k", counters(10_000), 10_000),
        ("histograms_10k", histograms(770), 770 * 13),
    ] {
        let mut codec = config.codec().expect("bench codec");
        group.throughput(Throughput::Elements(series));
        group.bench_function(name, |b| {
            b.iter(|| {
                bump(&mut batch);
                let encoded = codec.encode(&batch);
                assert_eq!(encoded.requests.len(), 1, "one request per batch");
                let mut bytes = 0;
                for request in encoded.requests {
                    bytes += Compression::Snappy.compress(request.body, 6).len();
                }
                bytes
            })
        });
    }
    group.finish();
}

criterion_group!(benches, remote_write);
criterion_main!(benches);
