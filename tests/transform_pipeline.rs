//! End-to-end tests of the transform stage through the real binary: the access-log
//! pipeline of `pipelines/access-log.yaml` against an independent count of its fixture, and
//! per-stream order with several workers.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{free_port, read_json_lines, Agent};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/transform/access.log")
}

/// Starts `sluice run -c config` with `env` set and `stdin` fed from `input`.
fn start(config: &Path, api_port: u16, env: &[(&str, &Path)], input: &Path) -> Agent {
    let api = format!("127.0.0.1:{api_port}").parse().unwrap();
    let mut command = Command::new(support::binary());
    command
        .args(["run", "-c"])
        .arg(config)
        .env("SLUICE_API_ADDRESS", format!("127.0.0.1:{api_port}"))
        .env(
            "SLUICE_LOG",
            std::env::var("SLUICE_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::from(std::fs::File::open(input).unwrap()))
        .stdout(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command.spawn().expect("start sluice");
    Agent {
        child,
        api,
        config: config.to_owned(),
    }
}

/// One access-log line, parsed without regexes: (client, method, status, bytes).
fn parse_line(line: &str) -> Option<(String, String, i64, Option<i64>)> {
    let client = line.split(' ').next()?.to_owned();
    let (_, rest) = line.split_once(" [")?;
    let (_, rest) = rest.split_once("] \"")?;
    let (request, rest) = rest.split_once("\" ")?;
    let method = request.split(' ').next()?.to_owned();
    if !method.bytes().all(|b| b.is_ascii_uppercase()) || method.is_empty() {
        return None;
    }
    let mut tail = rest.split(' ');
    let status: i64 = tail.next()?.parse().ok()?;
    let bytes = tail.next()?;
    let bytes = if bytes == "-" {
        None
    } else {
        Some(bytes.parse().ok()?)
    };
    Some((client, method, status, bytes))
}

fn fixture_lines() -> Vec<String> {
    let raw = std::fs::read(fixture()).unwrap();
    raw.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

/// The highest emitted value of each series of counter `name` (cumulative totals only grow;
/// the last emissions of two workers may reach the sink in either order).
fn counter_totals(records: &[serde_json::Value], name: &str) -> BTreeMap<String, f64> {
    let mut totals = BTreeMap::new();
    for record in records.iter().filter(|r| r["name"] == name) {
        let labels = record["labels"].to_string();
        let value = record["value"].as_f64().unwrap();
        let total = totals.entry(labels).or_insert(0.0_f64);
        *total = total.max(value);
    }
    totals
}

#[test]
fn access_log_pipeline_matches_an_independent_count() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.json");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/access-log.yaml");
    let data_dir = dir.path().join("data");
    let mut agent = start(
        &config,
        free_port(),
        &[("SLUICE_DATA_DIR", &data_dir), ("SLUICE_OUTPUT", &output)],
        &fixture(),
    );
    let status = agent.wait(Duration::from_secs(120));
    assert!(status.success(), "agent exit: {status}");

    // The independent count: every parsed line whose client is kept (or whose status is a
    // 5xx, never sampled), weighted by the sample rate it was kept at.
    let rate = 4;
    let mut expected_requests: BTreeMap<String, f64> = BTreeMap::new();
    let (mut expected_logs, mut unparsed, mut byte_count, mut byte_sum, mut small) =
        (0usize, 0usize, 0u64, 0.0, 0u64);
    for line in fixture_lines() {
        let Some((client, method, status, bytes)) = parse_line(&line) else {
            unparsed += 1;
            continue;
        };
        let weight = if status >= 500 {
            1.0
        } else if sluice::transform::sample::key_is_kept(&client, rate) {
            rate as f64
        } else {
            continue;
        };
        expected_logs += 1;
        let labels =
            serde_json::json!({"method": method, "status": status.to_string()}).to_string();
        *expected_requests.entry(labels).or_default() += weight;
        if let Some(bytes) = bytes {
            byte_count += 1;
            byte_sum += bytes as f64;
            small += u64::from(bytes <= 1000);
        }
    }
    assert_eq!(unparsed, 12, "fixture has 12 malformed lines");
    // Unparsed lines have no client: they are sampled by count, 1 in 4 (first of each 4).
    expected_logs += unparsed.div_ceil(rate as usize);

    let records = read_json_lines(&output);
    let logs: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r.get("message").is_some())
        .collect();
    assert_eq!(logs.len(), expected_logs, "log events kept by the sampler");
    assert_eq!(
        counter_totals(&records, "http_requests_total"),
        expected_requests
    );

    let histogram = records
        .iter()
        .filter(|r| r["name"] == "http_response_bytes")
        .max_by_key(|r| r["value"]["count"].as_u64())
        .expect("histogram emitted");
    assert_eq!(histogram["value"]["count"].as_u64(), Some(byte_count));
    assert!((histogram["value"]["sum"].as_f64().unwrap() - byte_sum).abs() < 1e-6);
    assert_eq!(
        histogram["value"]["buckets"][1],
        serde_json::json!([1000.0, small])
    );

    // Fields are typed and the event time comes from the line.
    let first = logs
        .iter()
        .find(|l| l["status"].as_i64().is_some_and(|s| s < 500))
        .unwrap();
    assert!(first["status"].is_i64(), "{first}");
    let line = first["message"].as_str().unwrap();
    let time = &line[line.find('[').unwrap() + 1..line.find(']').unwrap()];
    let want = chrono::DateTime::parse_from_str(time, "%d/%b/%Y:%H:%M:%S %z").unwrap();
    let got = chrono::DateTime::parse_from_rfc3339(first["timestamp"].as_str().unwrap()).unwrap();
    assert_eq!(got, want);
    assert_eq!(first["sample_rate"], serde_json::json!(rate));
}

#[test]
fn several_workers_keep_each_stream_in_order_and_share_metric_totals() {
    // Two streams (stdin and a demo source) on two workers: pick a pipeline name whose demo
    // stream hashes to worker 1 (stdin's stream key is 0, so it is on worker 0).
    let pipeline = (0..)
        .map(|i| format!("order{i}"))
        .find(|p| sluice::hash_str(&format!("{p}/demo/seq")) % 2 == 1)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("out.json");
    let n_demo = 5000;
    let config = format!(
        r#"
data_dir: {data}
threads: 2
api: {{ address: "${{SLUICE_API_ADDRESS}}" }}
pipelines:
  {pipeline}:
    queue_batches: 2
    sources:
      - {{ type: stdin }}
      - {{ type: demo, rate: 0, count: {n_demo}, batch_events: 100 }}
    transforms:
      - type: parse_regex
        pattern: '^(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>[^ "]+)(?: [^"]*)?" (?P<status>\d{{3}}) (?P<bytes>\d+|-)'
        types: {{ status: int }}
      - {{ type: parse_timestamp, field: time, formats: ["%d/%b/%Y:%H:%M:%S %z"] }}
      - {{ type: set, fields: {{ route: "{{{{ method }}}} {{{{ path }}}}" }} }}
      - type: log_to_metric
        flush_interval_ms: 50
        metrics:
          - {{ type: counter, name: parsed_total, condition: {{ field: status, exists: true }} }}
    sinks:
      - {{ type: file, path: {out} }}
"#,
        data = dir.path().join("data").display(),
        out = output.display(),
    );
    let config_path = dir.path().join("sluice.yaml");
    std::fs::write(&config_path, config).unwrap();
    let mut agent = start(&config_path, free_port(), &[], &fixture());
    let status = agent.wait(Duration::from_secs(120));
    assert!(status.success(), "agent exit: {status}");

    let records = read_json_lines(&output);
    let logs: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r.get("message").is_some())
        .collect();
    let stdin_messages: Vec<&str> = logs
        .iter()
        .filter(|l| l.get("seq").is_none())
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        stdin_messages,
        fixture_lines(),
        "stdin stream complete and in order"
    );
    let demo_seqs: Vec<i64> = logs.iter().filter_map(|l| l.get("seq")?.as_i64()).collect();
    assert_eq!(
        demo_seqs,
        (0..n_demo).collect::<Vec<_>>(),
        "demo stream complete and in order"
    );
    assert!(logs
        .iter()
        .filter(|l| l.get("seq").is_some())
        .all(|l| l["route"]
            .as_str()
            .is_some_and(|r| r.starts_with(['G', 'P', 'D']))));

    // Both workers counted into one shared total.
    let parsed_stdin = fixture_lines()
        .iter()
        .filter(|l| parse_line(l).is_some())
        .count();
    let totals = counter_totals(&records, "parsed_total");
    assert_eq!(
        totals.values().copied().collect::<Vec<_>>(),
        [(parsed_stdin as i64 + n_demo) as f64]
    );
}

#[test]
fn access_log_pipeline_file_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/access-log.yaml");
    let (config, name) = sluice::config::load(&path).unwrap();
    let pipelines = config.build(&name).unwrap();
    assert_eq!(pipelines[0].transforms.len(), 4);
}

/// A parsed field named `timestamp` (an application's own time, common in JSON logs) is
/// written beside the event time as `_timestamp`, not dropped from the file sink's JSON.
#[test]
fn a_parsed_timestamp_field_is_kept_beside_the_event_time() {
    let dir = tempfile::tempdir().unwrap();
    let (config, input, out) = (
        dir.path().join("sluice.yaml"),
        dir.path().join("in.log"),
        dir.path().join("out.jsonl"),
    );
    std::fs::write(
        &config,
        format!(
            "data_dir: {data}\npipelines:\n  p:\n    sources: [ {{ type: stdin }} ]\n    transforms: [ {{ type: parse_json }} ]\n    sinks: [ {{ type: file, path: {out} }} ]\n",
            data = dir.path().join("data").display(),
            out = out.display(),
        ),
    )
    .unwrap();
    std::fs::write(
        &input,
        "{\"timestamp\":\"2024-05-01 10:00:00,123\",\"level\":\"info\",\"msg\":\"started\"}\n",
    )
    .unwrap();
    let mut agent = start(&config, free_port(), &[], &input);
    let status = agent.wait(Duration::from_secs(60));
    assert!(status.success(), "exit status {status}");
    let events = read_json_lines(&out);
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event["_timestamp"], "2024-05-01 10:00:00,123", "{event}");
    assert_eq!(event["level"], "info", "{event}");
    let time = event["timestamp"].as_str().unwrap_or_default();
    assert!(time.ends_with('Z') && time.contains('T'), "{event}");
}
