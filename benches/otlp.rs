//! End-to-end throughput of OTLP logs in → Loki out, through the agent binary (bench
//! profile): an `opentelemetry` source (delivery acknowledged: each request is answered once
//! Loki took its records) into the `loki` sink (protobuf + snappy, `service_name` label from
//! the resource) against the fake Loki of `tests/support/fake_loki.rs`.
//!
//! The load: requests of 512 log records shaped like the OpenTelemetry SDKs' (6 resource
//! attributes, a scope, body ~90 bytes, severity, 4 attributes, trace and span ids),
//! protobuf, encoded before the clock starts and sent by `SLUICE_BENCH_CONNECTIONS` (default
//! 64) keep-alive connections, each waiting for its answer before the next request, as an
//! exporter does. A 503/429 is retried after its `Retry-After`. Reports, for the agent process
//! only, records per CPU-second, wall time and peak RSS (VmHWM).
//!
//! `cargo bench --bench otlp` (`SLUICE_BENCH_EVENTS` for another count, default 1,000,000).
//!
//! `SLUICE_BENCH_STAGES=1` runs instead, in this process and on one thread, the two stages
//! that take the agent's CPU on this path: the source's decoding of the same request bodies
//! into events, and the Loki sink's work on them (lane choice, batch size, encoding, snappy),
//! and reports each one's thread CPU time per record: figures steady enough for an A/B of
//! either, and a workload to run under `perf` or `callgrind` without the HTTP around it.

/// The agent's allocator, so the stages' figures match what the binary does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/agent.rs"]
mod agent;
#[path = "../tests/support/fake_loki.rs"]
mod fake_loki;
#[path = "../tests/support/http_request.rs"]
mod http_request;
#[path = "support/procfs.rs"]
mod procfs;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use procfs::{cpu_seconds, status_kib};
use prost::Message as _;
use sluice::otlp::proto::{
    any_value, AnyValue, ExportLogsServiceRequest, InstrumentationScope, KeyValue, LogRecord,
    Resource, ResourceLogs, ScopeLogs,
};

const RECORDS_PER_REQUEST: usize = 512;

/// (agent CPU-seconds, peak RSS in KiB).
fn proc_stats(pid: u32) -> (f64, u64) {
    (cpu_seconds(pid), status_kib(pid, "VmHWM:"))
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
    }
}

/// One request: records `first..first + 512`.
fn request(first: u64) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let records = (first..first + RECORDS_PER_REQUEST as u64)
        .map(|seq| LogRecord {
            time_unix_nano: now + seq,
            observed_time_unix_nano: now + seq,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!(
                    "GET /api/v1/items/{seq} 200 12ms seq={seq} user=u{} bytes=5120 agent=bench/1.0",
                    seq % 97
                ))),
            }),
            attributes: vec![
                int("seq", seq as i64),
                text("http.request.method", "GET"),
                text("http.route", "/api/v1/items/{id}"),
                text("user.id", &format!("u{}", seq % 97)),
            ],
            flags: 1,
            trace_id: (seq as u128 + 1).to_be_bytes().to_vec(),
            span_id: (seq + 1).to_be_bytes().to_vec(),
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", "bench-app"),
                    text(
                        "service.instance.id",
                        "7f6d2c1e-3a4b-4c5d-8e9f-0a1b2c3d4e5f",
                    ),
                    text("host.name", "bench-host"),
                    text("telemetry.sdk.language", "rust"),
                    text("telemetry.sdk.name", "opentelemetry"),
                    text("telemetry.sdk.version", "0.30.0"),
                ],
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "bench.logger".into(),
                    version: "1.0".into(),
                    attributes: vec![],
                }),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

/// Sends `bodies` one after another on one keep-alive connection; returns retries.
fn client(addr: SocketAddr, bodies: Vec<Arc<Vec<u8>>>) -> u64 {
    let mut retries = 0;
    let connect = || {
        let stream = TcpStream::connect(addr).expect("connect to the agent");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        BufReader::new(stream)
    };
    let mut reader = connect();
    for body in bodies {
        loop {
            let head = format!(
                "POST /v1/logs HTTP/1.1\r\nHost: bench\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let sent = reader
                .get_mut()
                .write_all(head.as_bytes())
                .and_then(|()| reader.get_mut().write_all(&body));
            let reply = sent.ok().and_then(|()| read_reply(&mut reader));
            match reply {
                Some((200, _)) => break,
                Some((503 | 429, retry_after)) => {
                    retries += 1;
                    std::thread::sleep(Duration::from_secs(retry_after.max(1)));
                }
                Some((status, _)) => panic!("the agent answered {status}"),
                None => {
                    retries += 1;
                    reader = connect();
                }
            }
        }
    }
    retries
}

/// (status, Retry-After seconds) of one reply; its body is read and dropped.
fn read_reply(reader: &mut BufReader<TcpStream>) -> Option<(u16, u64)> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let status = line.split(' ').nth(1)?.parse().ok()?;
    let (mut length, mut retry_after) = (0usize, 0u64);
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "retry-after" => retry_after = value.trim().parse().unwrap_or(1),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((status, retry_after))
}

/// This thread's CPU time in seconds (`/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0) as f64
        / 1e9
}

/// The stages alone (see the module notes): decoding, then the Loki sink's work, each
/// timed on this thread; events are dropped on this thread too, as the agent's recycling
/// does.
fn stages(bodies: &[Arc<Vec<u8>>], count: usize) {
    use sluice::event::{Event, Timestamp};
    use sluice::sink::driver::{Compression, HttpSinkCodec};
    use sluice::source::opentelemetry::logs;

    let config: sluice::sink::loki::LokiConfig = serde_json::from_value(serde_json::json!({
        "endpoint": "http://127.0.0.1:3100",
        "labels": { "job": "bench", "service_name": "{{ service.name }}" },
    }))
    .expect("bench config");
    let mut codec = config.codec().expect("bench codec");
    let (mut decode_cpu, mut sink_cpu, mut drop_cpu, mut wire) = (0.0, 0.0, 0.0, 0usize);
    // As the sink's driver batches (one lane, the default: no `partition`): up to 5000
    // events or 1 MiB by `size_hint`.
    let (max_events, max_bytes) = (5000, 1 << 20);
    let mut pending: Vec<Event> = Vec::with_capacity(max_events);
    let mut pending_bytes = 0;
    let mut flush = |pending: &mut Vec<Event>, sink_cpu: &mut f64, drop_cpu: &mut f64| {
        let started = thread_cpu();
        let encoded = codec.encode(pending);
        for request in encoded.requests {
            wire += Compression::Snappy.compress(request.body, 6).len();
        }
        *sink_cpu += thread_cpu() - started;
        let started = thread_cpu();
        pending.clear();
        *drop_cpu += thread_cpu() - started;
    };
    for body in bodies {
        let started = thread_cpu();
        let mut events = Vec::new();
        logs::decode(body, Timestamp(0), &mut events).expect("a valid request");
        decode_cpu += thread_cpu() - started;
        let started = thread_cpu();
        for event in events {
            pending_bytes += event.size_hint();
            pending.push(event);
            if pending.len() >= max_events || pending_bytes >= max_bytes {
                sink_cpu += thread_cpu() - started;
                flush(&mut pending, &mut sink_cpu, &mut drop_cpu);
                pending_bytes = 0;
            }
        }
        sink_cpu += thread_cpu() - started;
    }
    flush(&mut pending, &mut sink_cpu, &mut drop_cpu);
    let per = |cpu: f64| cpu * 1e9 / count as f64;
    println!(
        "otlp stages: {count} records on one thread: decode {:.0} ns/record, Loki sink {:.0} ns/record, drop {:.0} ns/record; total {:.0}k records/CPU-s ({:.1} MiB snappy out)",
        per(decode_cpu),
        per(sink_cpu),
        per(drop_cpu),
        count as f64 / (decode_cpu + sink_cpu + drop_cpu) / 1000.0,
        wire as f64 / (1024.0 * 1024.0),
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let count: usize = std::env::var("SLUICE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let connections: usize = std::env::var("SLUICE_BENCH_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let n_requests = count.div_ceil(RECORDS_PER_REQUEST);
    let count = n_requests * RECORDS_PER_REQUEST;
    let bodies: Vec<Arc<Vec<u8>>> = (0..n_requests)
        .map(|i| Arc::new(request((i * RECORDS_PER_REQUEST) as u64)))
        .collect();
    let wire: usize = bodies.iter().map(|b| b.len()).sum();
    if std::env::var_os("SLUICE_BENCH_STAGES").is_some() {
        return stages(&bodies, count);
    }

    let loki = fake_loki::FakeLoki::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
    };
    let (api, otlp) = (free(), free());
    // SLUICE_BENCH_SOURCE / SLUICE_BENCH_LOKI: extra keys for the source / sink, one a line.
    let extra = agent::extra_keys;
    let config = format!(
        "data_dir: {data}\napi: {{ address: \"{api}\" }}\npipelines:\n  bench:\n    sources:\n      - type: opentelemetry\n        address: {otlp}\n{source}    sinks:\n      - type: loki\n        endpoint: {endpoint}\n        labels: {{ job: bench, service_name: \"{{{{ service.name }}}}\" }}\n{loki}",
        data = dir.path().join("data").display(),
        endpoint = loki.endpoint(),
        source = extra("SLUICE_BENCH_SOURCE", "        "),
        loki = extra("SLUICE_BENCH_LOKI", "        "),
    );
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, config).expect("write config");
    let mut child = agent::start(&path);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(otlp).is_err() {
        assert!(Instant::now() < deadline, "the agent did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (cpu_before, _) = proc_stats(child.id());
    let started = Instant::now();
    let mut shares: Vec<Vec<Arc<Vec<u8>>>> = vec![Vec::new(); connections];
    for (i, body) in bodies.into_iter().enumerate() {
        shares[i % connections].push(body);
    }
    let clients: Vec<_> = shares
        .into_iter()
        .map(|share| std::thread::spawn(move || client(otlp, share)))
        .collect();
    let retries: u64 = clients.into_iter().map(|c| c.join().expect("client")).sum();
    // Every request was answered 200 after delivery (with `wait_for_delivery: false`, once
    // queued: then wait for Loki to have it all).
    let deadline = Instant::now() + Duration::from_secs(120);
    while loki.entry_count() < count && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = started.elapsed().as_secs_f64();
    let (cpu_after, hwm_kib) = proc_stats(child.id());
    let cpu = cpu_after - cpu_before;
    let received = loki.entry_count();
    let _ = child.kill();
    let _ = child.wait();
    assert!(received >= count, "Loki got {received} of {count}");
    println!(
        "otlp: {count} log records ({:.1} MiB of OTLP protobuf, {RECORDS_PER_REQUEST} a request, {connections} connections, {retries} retries) → Loki in {wall:.2}s wall, agent CPU {cpu:.2}s: {:.0} records/CPU-s, {:.0} records/s, peak RSS {:.1} MiB",
        wire as f64 / (1024.0 * 1024.0),
        count as f64 / cpu.max(0.01),
        count as f64 / wall,
        hwm_kib as f64 / 1024.0,
    );
}
