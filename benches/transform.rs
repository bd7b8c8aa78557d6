//! Transform hot paths: regex, JSON and logfmt parsing, log_to_metric updates, and the
//! access-log chain (parse_regex → parse_timestamp → log_to_metric), in bytes of input per
//! second. Run: `cargo bench --bench transform`.

/// The agent's allocator, so the figures match what the binary does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice::event::{Event, LogEvent, Timestamp};
use sluice::source::demo::{line, time_text, DemoFormat};
use sluice::transform::{Transform, TransformConfig, TransformContext};
use sluice::yaml::Named;

const BATCH: u64 = 1000;
const ACCESS_PATTERN: &str = r#"'^(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>[^ "]+)(?: [^"]*)?" (?P<status>\d{3}) (?P<bytes>\d+|-)'"#;

fn build(yaml: &str) -> Transform {
    let named: Named<TransformConfig> =
        sluice::yaml::from_str(yaml, "bench").expect("bench config parses");
    named
        .config
        .build(&TransformContext::new("bench", "bench"))
        .expect("bench config builds")
}

/// A batch of demo lines, spread over a few seconds like a real log.
fn batch(format: DemoFormat) -> (Vec<Event>, u64) {
    let start = 1_714_521_600_000_000_000i64;
    let events: Vec<Event> = (0..BATCH)
        .map(|seq| {
            let now = Timestamp(start + (seq as i64 / 300) * 1_000_000_000);
            Event::Log(LogEvent::new(line(format, seq, &time_text(format, now))))
        })
        .collect();
    let bytes = events
        .iter()
        .map(|e| e.as_log().map_or(0, |l| l.message_str().len() as u64 + 1))
        .sum();
    (events, bytes)
}

/// Benches `chain` on a batch of `format` lines that went through `prepare` first (outside
/// the measurement).
fn bench_chain(
    c: &mut Criterion,
    name: &str,
    format: DemoFormat,
    prepare: &[&str],
    chain: &[&str],
) {
    let (mut events, bytes) = batch(format);
    for yaml in prepare {
        let mut out = Vec::new();
        build(yaml).process(events, &mut out);
        events = out;
    }
    let mut transforms: Vec<Transform> = chain.iter().map(|yaml| build(yaml)).collect();
    let mut group = c.benchmark_group("transform");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function(name, |b| {
        b.iter_batched(
            || events.clone(),
            |mut events| {
                for transform in &mut transforms {
                    let mut out = Vec::with_capacity(events.len());
                    transform.process(events, &mut out);
                    events = out;
                }
                events
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let parse_regex = format!(
        "{{ type: parse_regex, pattern: {ACCESS_PATTERN}, types: {{ status: int, bytes: int }} }}"
    );
    let parse_timestamp =
        r#"{ type: parse_timestamp, field: time, formats: ["%d/%b/%Y:%H:%M:%S %z"] }"#;
    let to_metric = "{ type: log_to_metric, metrics: [ { type: counter, name: http_requests_total, labels: [method, status] }, { type: histogram, name: http_response_bytes, field: bytes, buckets: [100, 1000, 10000, 100000] } ] }";
    let json = "{ type: parse_json }";
    bench_chain(
        c,
        "parse_regex_access",
        DemoFormat::ApacheCombined,
        &[],
        &[&parse_regex],
    );
    bench_chain(
        c,
        "parse_timestamp",
        DemoFormat::ApacheCombined,
        &[&parse_regex],
        &[parse_timestamp],
    );
    bench_chain(c, "parse_json", DemoFormat::Json, &[], &[json]);
    bench_chain(
        c,
        "parse_logfmt",
        DemoFormat::Logfmt,
        &[],
        &["{ type: parse_logfmt }"],
    );
    bench_chain(
        c,
        "log_to_metric_update",
        DemoFormat::Json,
        &[json],
        &[to_metric],
    );
    bench_chain(
        c,
        "access_log_pipeline",
        DemoFormat::ApacheCombined,
        &[],
        &[&parse_regex, parse_timestamp, to_metric],
    );
}

criterion_group!(transform_benches, benches);
criterion_main!(transform_benches);
