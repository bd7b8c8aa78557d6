//! End-to-end OTLP through the agent binary, with real OpenTelemetry code on the other side:
//!
//! - the official Python SDK (`opentelemetry-sdk`, `opentelemetry-exporter-otlp-proto-http`)
//!   sends 10,000 numbered log records and counters, histograms (explicit and exponential),
//!   a gauge and a delta counter to the `opentelemetry` source → fake Loki and a fake
//!   remote-write receiver: every record arrives with its body, severity, attributes,
//!   resource attributes and trace context; every metric value equals what the SDK exported;
//! - the `opentelemetry` sink sends file lines and the agent's own metrics to a fake OTLP
//!   receiver that decodes with the official protobuf classes (`opentelemetry-proto`,
//!   `tests/support/otlp/receiver.py`), also across a `kill -9` (nothing lost);
//! - backpressure: with the sink's receiver answering 503, the source answers 503 with
//!   `Retry-After`, and the SDK's own retries deliver everything once it is back;
//! - with a disk buffer on the sink, the SDK's exports are answered 200 while the receiver
//!   is down (the data is on disk), and a `kill -9` after that loses none of them;
//! - bad input (malformed protobuf and JSON, wrong content type, a 100 MB body, a gzip bomb,
//!   bodies and attributes nested deeper than the decoders allow): a 4xx with a reason, bounded memory, no crash.
//!
//! Python: `$SLUICE_OTEL_PYTHON` (an interpreter with the two packages), else a virtualenv
//! made once under the target directory (`python3 -m venv`, then `pip install` of the pinned
//! versions below; needs `python3`, `python3-venv` and PyPI). When PyPI cannot be reached the
//! Python tests say so and skip; the bad-input test needs no Python.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::fake_loki::FakeLoki;
use support::fake_remote_write::FakeRemoteWrite;
use support::{free_port, wait_for, Agent};

/// The SDK versions the tests run against.
const PACKAGES: &[&str] = &[
    "opentelemetry-sdk==1.45.2",
    "opentelemetry-exporter-otlp-proto-http==1.45.2",
];

// ---------------------------------------------------------------------------------------
// Python
// ---------------------------------------------------------------------------------------

/// A Python interpreter with the SDK, or `None` (with a message) when PyPI is unreachable.
fn python() -> Option<PathBuf> {
    static PYTHON: OnceLock<Option<PathBuf>> = OnceLock::new();
    PYTHON.get_or_init(find_or_make_python).clone()
}

fn find_or_make_python() -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("SLUICE_OTEL_PYTHON") {
        return Some(python.into());
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("otel-venv");
    let python = venv.join("bin/python");
    let ready = venv.join(format!("ready-{}", PACKAGES.join(",")));
    if ready.exists() {
        return Some(python);
    }
    let _ = std::fs::remove_dir_all(&venv);
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .expect("python3 is needed for the OTLP tests: apt-get install -y python3 python3-venv");
    assert!(
        made.status.success(),
        "python3 -m venv failed (apt-get install -y python3-venv): {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let installed = Command::new(&python)
        .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
        .args(PACKAGES)
        .output()
        .expect("run pip");
    if !installed.status.success() {
        let reachable = std::net::ToSocketAddrs::to_socket_addrs("pypi.org:443")
            .ok()
            .and_then(|mut addrs| addrs.next())
            .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(5)).is_ok());
        if !reachable {
            eprintln!(
                "SKIPPED: PyPI (pypi.org:443) is unreachable, so the OpenTelemetry SDK cannot be \
                 installed; set SLUICE_OTEL_PYTHON to a python with {PACKAGES:?}"
            );
            return None;
        }
        panic!(
            "pip install {PACKAGES:?} failed: {}",
            String::from_utf8_lossy(&installed.stderr)
        );
    }
    std::fs::write(&ready, "").unwrap();
    Some(python)
}

/// Like [`wait_for`], for conditions that read a growing file: every 250 ms.
fn poll(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support/otlp")
        .join(name)
}

/// Runs the SDK sender; returns its exit status and stderr.
fn sdk_send(python: &Path, endpoint: &str, args: &[&str]) -> Child {
    Command::new(python)
        .arg(script("sdk_send.py"))
        .args(["--endpoint", endpoint])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sdk_send.py")
}

fn finish(child: Child, timeout: Duration) -> (bool, String) {
    let deadline = Instant::now() + timeout;
    let mut child = child;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            return (status.success(), stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            panic!("the SDK sender did not finish within {timeout:?}: {stderr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The official-protobuf OTLP receiver, killed when dropped.
struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
    control: PathBuf,
}

impl Receiver {
    fn start(python: &Path, dir: &Path) -> Receiver {
        let out = dir.join("received.jsonl");
        let control = dir.join("receiver-control");
        let mut child = Command::new(python)
            .arg(script("receiver.py"))
            .arg("--out")
            .arg(&out)
            .arg("--control")
            .arg(&control)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start receiver.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("receiver said {line:?}"));
        Receiver {
            child,
            port,
            out,
            control,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answer every request with `status` (`None`: accept again).
    fn answer(&self, status: Option<u16>) {
        std::fs::write(
            &self.control,
            status.map(|s| s.to_string()).unwrap_or_default(),
        )
        .unwrap();
    }

    /// Every whole line so far (one being written is skipped).
    fn lines(&self) -> Vec<serde_json::Value> {
        support::read_json_lines_after_crash(&self.out)
    }

    /// How many lines so far (cheap: no parsing).
    fn count(&self) -> usize {
        std::fs::read(&self.out).map_or(0, |bytes| bytes.iter().filter(|b| **b == b'\n').count())
    }

    fn errors(&self) -> String {
        std::fs::read_to_string(self.out.with_extension("jsonl.errors")).unwrap_or_default()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// SDK → source → Loki + remote-write
// ---------------------------------------------------------------------------------------

const LEVELS: [(&str, i64); 4] = [("DEBUG", 5), ("INFO", 9), ("WARN", 13), ("ERROR", 17)];

#[test]
fn sdk_logs_and_metrics_arrive_whole_at_loki_and_remote_write() {
    let Some(python) = python() else { return };
    const RECORDS: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let loki = FakeLoki::start();
    let remote_write = FakeRemoteWrite::start();
    let port = free_port();
    let config = format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  otlp:
    sources:
      - type: opentelemetry
        address: 127.0.0.1:{port}
    sinks:
      - type: loki
        endpoint: {loki}
        labels: {{ service_name: "{{{{ service.name }}}}" }}
        line: json
        batch: {{ timeout_ms: 50 }}
      - type: prometheus_remote_write
        endpoint: {rw}
        batch: {{ timeout_ms: 50 }}
"#,
        data = dir.path().join("data").display(),
        loki = loki.endpoint(),
        rw = remote_write.url(),
    );
    let agent = Agent::start(dir.path(), &config);
    let dump = dir.path().join("exported.json");
    let started = Instant::now();
    let sender = sdk_send(
        &python,
        &format!("http://127.0.0.1:{port}"),
        &[
            "--logs",
            &RECORDS.to_string(),
            "--metrics",
            "--dump",
            dump.to_str().unwrap(),
        ],
    );
    let (ok, stderr) = finish(sender, Duration::from_secs(300));
    assert!(ok, "the SDK reported failed exports: {stderr}");
    eprintln!(
        "the SDK sent {RECORDS} records and its metrics in {:?}",
        started.elapsed()
    );

    // The SDK's exports were answered 200 only after delivery: everything is there now.
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for entry in loki.entries() {
        assert_eq!(entry.labels, r#"{service_name="otlp-e2e"}"#);
        let event: serde_json::Value = serde_json::from_str(&entry.line).unwrap();
        let seq = event["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("no seq: {event}"));
        *seen.entry(seq).or_default() += 1;
        let (severity, number) = LEVELS[(seq % 4) as usize];
        let expected = serde_json::json!({
            "message": format!("record {seq}"),
            "severity": severity,
            "severity_number": number,
            "seq": seq,
            "user.id": format!("u{}", seq % 7),
            "ok": seq.is_multiple_of(2),
            "ratio": seq as f64 / 4.0,
            "trace_id": format!("{:032x}", seq + 1),
            "span_id": format!("{:016x}", seq + 1),
            "trace_flags": 1,
            "otel.scope.name": "e2e.app",
            "service.name": "otlp-e2e",
            "service.version": "1.2.3",
            "host.name": "e2e-host",
            "deployment.environment.name": "test",
            "telemetry.sdk.language": "python",
            "telemetry.sdk.name": "opentelemetry",
        });
        for (key, value) in expected.as_object().unwrap() {
            assert_eq!(&event[key], value, "{key} of record {seq}: {event}");
        }
        let when = event["timestamp"].as_str().unwrap();
        assert!(when.starts_with("20"), "the record's own time: {when}");
    }
    let missing: Vec<u64> = (0..RECORDS)
        .filter(|s| !seen.contains_key(s))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "records missing at Loki, e.g. {missing:?}"
    );
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "Loki got {} entries, {duplicates} duplicates",
        loki.entry_count()
    );
    assert!(
        duplicates <= RECORDS as usize / 20,
        "{duplicates} duplicates in a run without failures"
    );
    assert!(loki.errors().is_empty(), "{:?}", loki.errors());

    // Metrics: every series' last value is what the SDK exported last (cumulative) or the
    // sum of what it exported (delta).
    assert!(
        remote_write.errors().is_empty(),
        "{:?}",
        remote_write.errors()
    );
    check_metrics(&dump, &remote_write);
    drop(agent);
}

/// Sanitised as the remote-write sink does (`e2e.requests` → `e2e_requests`).
fn prom(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn attrs(point: &serde_json::Value) -> Vec<(String, String)> {
    point["attributes"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        prom(k),
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn check_metrics(dump: &Path, remote_write: &FakeRemoteWrite) {
    let exports: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dump).unwrap()).unwrap();
    assert!(!exports.is_empty(), "the SDK exported metrics");
    // (name, attributes) → (kind, temporality, last point, sum of deltas).
    type Series = (String, Vec<(String, String)>);
    type Seen = (String, i64, serde_json::Value, f64);
    let mut last: BTreeMap<Series, Seen> = BTreeMap::new();
    for export in &exports {
        for rm in export["resource_metrics"].as_array().unwrap() {
            for sm in rm["scope_metrics"].as_array().unwrap() {
                for metric in sm["metrics"].as_array().unwrap() {
                    let name = metric["name"].as_str().unwrap().to_owned();
                    let data = &metric["data"];
                    let temporality = data["aggregation_temporality"].as_i64().unwrap_or(0);
                    let kind = if data.get("scale").is_some()
                        || data["data_points"][0].get("scale").is_some()
                    {
                        "exponential"
                    } else if data["data_points"][0].get("bucket_counts").is_some() {
                        "histogram"
                    } else if data.get("is_monotonic").is_some() {
                        "sum"
                    } else {
                        "gauge"
                    };
                    for point in data["data_points"].as_array().unwrap() {
                        let key = (name.clone(), attrs(point));
                        let add = point["value"].as_f64().unwrap_or(0.0);
                        let entry = last.entry(key).or_insert((
                            kind.to_owned(),
                            temporality,
                            point.clone(),
                            0.0,
                        ));
                        entry.2 = point.clone();
                        entry.3 += add;
                    }
                }
            }
        }
    }
    let mut checked = BTreeSet::new();
    for ((name, labels), (kind, temporality, point, delta_sum)) in &last {
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let base = prom(name);
        let get = |suffix: &str, extra: &[(&str, &str)]| {
            let mut all = labels.clone();
            all.extend_from_slice(extra);
            remote_write
                .last(&format!("{base}{suffix}"), &all)
                .unwrap_or_else(|| panic!("no series {base}{suffix}{all:?} at remote-write"))
        };
        match kind.as_str() {
            "sum" | "gauge" => {
                let expected = if *temporality == 1 {
                    *delta_sum
                } else {
                    point["value"].as_f64().unwrap()
                };
                assert_eq!(get("", &[]), expected, "{name}{labels:?}");
            }
            "histogram" => {
                assert_eq!(
                    *temporality, 2,
                    "{name}: the test sends cumulative histograms"
                );
                let count = point["count"].as_f64().unwrap();
                assert_eq!(get("_count", &[]), count, "{name} count");
                assert_eq!(
                    get("_sum", &[]),
                    point["sum"].as_f64().unwrap(),
                    "{name} sum"
                );
                let bounds = point["explicit_bounds"].as_array().unwrap();
                let counts = point["bucket_counts"].as_array().unwrap();
                let mut cumulative = 0.0;
                for (bound, n) in bounds.iter().zip(counts) {
                    cumulative += n.as_f64().unwrap();
                    let le = bucket_le(remote_write, &base, bound.as_f64().unwrap(), &labels);
                    assert_eq!(le, cumulative, "{name} le={bound}");
                }
                assert_eq!(get("_bucket", &[("le", "+Inf")]), count);
            }
            "exponential" => {
                let count = point["count"].as_f64().unwrap();
                assert_eq!(get("_count", &[]), count, "{name} count");
                assert_eq!(
                    get("_sum", &[]),
                    point["sum"].as_f64().unwrap(),
                    "{name} sum"
                );
                assert_eq!(get("_bucket", &[("le", "+Inf")]), count);
                let scale = point["scale"].as_i64().unwrap() as i32;
                let offset = point["positive"]["offset"].as_i64().unwrap();
                let mut cumulative = point["zero_count"].as_f64().unwrap();
                for (i, n) in point["positive"]["bucket_counts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .enumerate()
                {
                    cumulative += n.as_f64().unwrap();
                    // Bucket `offset + i` holds (base^index, base^(index+1)].
                    let upper = 2f64.powf((offset + i as i64 + 1) as f64 * 2f64.powi(-scale));
                    let le = bucket_le(remote_write, &base, upper, &labels);
                    assert_eq!(
                        le,
                        cumulative,
                        "{name} exponential bucket {} (le {upper})",
                        offset + i as i64
                    );
                }
            }
            other => panic!("unexpected kind {other}"),
        }
        checked.insert(name.clone());
    }
    for name in [
        "e2e.requests",
        "e2e.queue.depth",
        "e2e.latency",
        "e2e.size",
        "e2e.temperature",
        "e2e.delta.events",
    ] {
        assert!(
            checked.contains(name),
            "{name} was exported and checked: {checked:?}"
        );
    }
    // The delta counter's total is what the SDK counted: sum of (i % 3 + 1) for i < 1000.
    assert_eq!(
        remote_write.last("e2e_delta_events", &[("kind", "x")]),
        Some(1999.0)
    );
}

/// The value of the `_bucket` series whose `le` parses to `bound` (within float rounding).
fn bucket_le(
    remote_write: &FakeRemoteWrite,
    base: &str,
    bound: f64,
    labels: &[(&str, &str)],
) -> f64 {
    let name = format!("{base}_bucket");
    let series = remote_write.series();
    let found: Vec<f64> = series
        .iter()
        .filter(|(key, _)| {
            key.iter().any(|(k, v)| k == "__name__" && *v == name)
                && labels
                    .iter()
                    .all(|(lk, lv)| key.iter().any(|(k, v)| k == lk && v == lv))
                && key.iter().any(|(k, v)| {
                    k == "le"
                        && v.parse::<f64>()
                            .is_ok_and(|le| le == bound || ((le - bound) / bound).abs() < 1e-9)
                })
        })
        .filter_map(|(_, samples)| samples.iter().max_by_key(|(t, _)| *t).map(|(_, v)| *v))
        .collect();
    assert_eq!(found.len(), 1, "{name}{{le≈{bound}}}{labels:?}: {found:?}");
    found[0]
}

// ---------------------------------------------------------------------------------------
// Sink → official decoder
// ---------------------------------------------------------------------------------------

fn write_lines(path: &Path, seqs: std::ops::Range<u64>) {
    let mut text = String::new();
    for seq in seqs {
        text.push_str(&format!("line seq={seq} {}\n", "x".repeat(60)));
    }
    support::append(path, &text);
}

fn seq_in(text: &str) -> Option<u64> {
    let rest = text.split("seq=").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn file_to_otlp(dir: &Path, receiver: &Receiver, extra_pipelines: &str) -> String {
    format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  files:
    sources:
      - type: file
        include: ["{logs}/*.log"]
        glob_interval_ms: 100
    sinks:
      - type: opentelemetry
        endpoint: {endpoint}
        resource_attributes: {{ service.name: e2e-agent }}
        batch: {{ timeout_ms: 100 }}
        retry: {{ initial_backoff_ms: 50, max_backoff_ms: 500 }}
{extra_pipelines}"#,
        data = dir.join("data").display(),
        logs = dir.join("logs").display(),
        endpoint = receiver.endpoint(),
    )
}

#[test]
fn sink_logs_and_metrics_decode_with_the_official_protos() {
    let Some(python) = python() else { return };
    const LINES: u64 = 3_000;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let log = dir.path().join("logs/app.log");
    write_lines(&log, 0..LINES);
    let receiver = Receiver::start(&python, dir.path());
    let metrics = format!(
        r#"  own:
    sources:
      - type: internal_metrics
        interval_secs: 1
    sinks:
      - type: opentelemetry
        endpoint: {}
        batch: {{ timeout_ms: 100 }}
"#,
        receiver.endpoint()
    );
    let agent = Agent::start(dir.path(), &file_to_otlp(dir.path(), &receiver, &metrics));
    let logs_received = || {
        receiver
            .lines()
            .iter()
            .filter(|l| l["signal"] == "logs")
            .count() as u64
    };
    poll(
        "every line at the receiver",
        Duration::from_secs(120),
        || receiver.count() as u64 >= LINES && logs_received() >= LINES,
    );
    poll(
        "the agent's metrics at the receiver",
        Duration::from_secs(30),
        || {
            receiver
                .lines()
                .iter()
                .any(|l| l["metric"] == "sluice_events_received_total")
        },
    );
    assert_eq!(
        receiver.errors(),
        "",
        "the official classes read every request"
    );
    let lines = receiver.lines();
    let mut seen = BTreeSet::new();
    for line in lines.iter().filter(|l| l["signal"] == "logs") {
        let item = &line["item"];
        let body = item["body"]["string_value"].as_str().unwrap();
        seen.insert(seq_in(body).unwrap());
        assert_eq!(
            line["resource"]["service.name"]["string_value"],
            "e2e-agent"
        );
        assert_eq!(
            item["attributes"]["log.file.path"]["string_value"].as_str(),
            log.to_str()
        );
        assert!(
            item["time_unix_nano"]
                .as_str()
                .is_some_and(|t| t.len() >= 19),
            "{item}"
        );
    }
    assert_eq!(seen.len() as u64, LINES);
    let sums: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["metric"] == "sluice_events_received_total")
        .collect();
    for sum in &sums {
        assert_eq!(sum["kind"], "sum");
        assert_eq!(sum["monotonic"], true);
        assert_eq!(sum["temporality"], 2, "cumulative");
        assert!(sum["item"]["attributes"]["pipeline"]["string_value"].is_string());
        assert!(sum["item"]["as_double"].is_number());
    }
    drop(agent);
}

#[test]
fn kill_9_during_file_to_otlp_loses_nothing() {
    let Some(python) = python() else { return };
    const LINES: u64 = 40_000;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let log = dir.path().join("logs/app.log");
    write_lines(&log, 0..LINES);
    let receiver = Receiver::start(&python, dir.path());
    let config = file_to_otlp(dir.path(), &receiver, "");
    let count = || {
        receiver
            .lines()
            .iter()
            .filter_map(|l| l["item"]["body"]["string_value"].as_str().and_then(seq_in))
            .collect::<BTreeSet<u64>>()
    };
    for round in 0..2 {
        let agent = Agent::start(dir.path(), &config);
        let target = (round + 1) * LINES / 4;
        poll("some lines delivered", Duration::from_secs(120), || {
            receiver.count() as u64 >= target
        });
        agent.kill9();
    }
    let agent = Agent::start(dir.path(), &config);
    poll(
        "every line delivered after the kills",
        Duration::from_secs(180),
        || receiver.count() as u64 >= LINES && count().len() as u64 >= LINES,
    );
    let received = receiver.lines().len();
    eprintln!(
        "{LINES} lines, {received} records received ({} duplicates)",
        received as u64 - LINES
    );
    assert_eq!(count(), (0..LINES).collect::<BTreeSet<u64>>());
    assert_eq!(receiver.errors(), "");
    assert!(agent.terminate().success());
}

// ---------------------------------------------------------------------------------------
// Backpressure
// ---------------------------------------------------------------------------------------

#[test]
fn a_full_pipeline_answers_503_and_the_sdk_retries_deliver_everything() {
    let Some(python) = python() else { return };
    const RECORDS: u64 = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(&python, dir.path());
    receiver.answer(Some(503));
    let port = free_port();
    let config = format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  relay:
    queue_batches: 1
    sources:
      - type: opentelemetry
        address: 127.0.0.1:{port}
        delivery_timeout_secs: 2
    sinks:
      - type: opentelemetry
        endpoint: {endpoint}
        batch: {{ timeout_ms: 50, max_events: 500 }}
        retry: {{ initial_backoff_ms: 100, max_backoff_ms: 500 }}
"#,
        data = dir.path().join("data").display(),
        endpoint = receiver.endpoint(),
    );
    let agent = Agent::start(dir.path(), &config);
    let sender = sdk_send(
        &python,
        &format!("http://127.0.0.1:{port}"),
        &["--logs", &RECORDS.to_string(), "--timeout", "120"],
    );
    let refused = |agent: &Agent| {
        agent.metric_sum(
            "sluice_otlp_requests_refused_total",
            &[("reason", "not_delivered")],
        )
    };
    wait_for("the source to answer 503", Duration::from_secs(60), || {
        refused(&agent) >= 2.0
    });
    // What the SDK was told, as a raw request sees it: 503 with a Retry-After.
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (status, head, _) = post(
        addr,
        "/v1/logs",
        "application/json",
        "",
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"probe"}}]}]}]}"#,
    );
    assert_eq!(status, 503, "{head}");
    let retry_after = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no Retry-After: {head}"));
    assert!(
        retry_after
            .parse::<u64>()
            .is_ok_and(|s| (1..=30).contains(&s)),
        "Retry-After: {retry_after}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(receiver.lines().is_empty(), "the receiver was down");
    receiver.answer(None);
    let (ok, stderr) = finish(sender, Duration::from_secs(300));
    assert!(ok, "the SDK gave up: {stderr}");
    assert!(
        stderr.contains("503") || stderr.contains("retrying"),
        "the SDK was told to retry: {stderr}"
    );
    let seen: BTreeSet<u64> = receiver
        .lines()
        .iter()
        .filter_map(|l| {
            l["item"]["body"]["string_value"]
                .as_str()
                .and_then(seq_in_record)
        })
        .collect();
    assert_eq!(
        seen,
        (0..RECORDS).collect::<BTreeSet<u64>>(),
        "every record delivered"
    );
    eprintln!(
        "{} requests answered 503 while the receiver was down; {} records received for {RECORDS}",
        refused(&agent),
        receiver.lines().len()
    );
    drop(agent);
}

fn seq_in_record(body: &str) -> Option<u64> {
    body.strip_prefix("record ")?.parse().ok()
}

/// With a disk buffer on the sink, "accepted as durably as the pipeline allows" is "on
/// disk": the SDK's exports are answered 200 while the receiver is down, and a `kill -9`
/// after that loses none of them.
#[test]
fn a_disk_buffered_sink_answers_200_while_down_and_keeps_it_across_kill_9() {
    let Some(python) = python() else { return };
    const RECORDS: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(&python, dir.path());
    receiver.answer(Some(503));
    let port = free_port();
    let config = format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  relay:
    sources:
      - type: opentelemetry
        address: 127.0.0.1:{port}
    sinks:
      - type: opentelemetry
        endpoint: {endpoint}
        batch: {{ timeout_ms: 50, max_events: 500 }}
        retry: {{ initial_backoff_ms: 50, max_backoff_ms: 300 }}
        buffer: {{ type: disk, max_bytes: 16777216, sync_interval_ms: always }}
"#,
        data = dir.path().join("data").display(),
        endpoint = receiver.endpoint(),
    );
    let agent = Agent::start(dir.path(), &config);
    let sender = sdk_send(
        &python,
        &format!("http://127.0.0.1:{port}"),
        &["--logs", &RECORDS.to_string(), "--timeout", "30"],
    );
    let (ok, stderr) = finish(sender, Duration::from_secs(120));
    assert!(ok, "every export was answered 200 (on disk): {stderr}");
    assert!(receiver.lines().is_empty(), "the receiver was down");
    agent.kill9();

    receiver.answer(None);
    let agent = Agent::start(dir.path(), &config);
    let seen = || -> BTreeSet<u64> {
        receiver
            .lines()
            .iter()
            .filter_map(|l| {
                l["item"]["body"]["string_value"]
                    .as_str()
                    .and_then(seq_in_record)
            })
            .collect()
    };
    poll(
        "every record from the disk buffer",
        Duration::from_secs(120),
        || seen().len() as u64 >= RECORDS,
    );
    assert_eq!(seen(), (0..RECORDS).collect::<BTreeSet<u64>>());
    assert_eq!(receiver.errors(), "");
    eprintln!(
        "{RECORDS} records answered 200 from the disk buffer, {} received after kill -9",
        receiver.lines().len()
    );
    assert!(agent.terminate().success());
}

// ---------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------

/// Sends one request (head and body, as given) and reads the reply: (status, head, body).
/// The body is written from another thread while the reply is read, since the server may
/// answer (413) and close before it has all been sent; with `Expect: 100-continue` in the
/// head, the body is sent only after a `100 Continue`.
fn exchange(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut reply = Vec::new();
    if head.contains("Expect: 100-continue") {
        let mut first = [0u8; 4096];
        let n = stream.read(&mut first).unwrap_or(0);
        if !first[..n].starts_with(b"HTTP/1.1 100") {
            reply.extend_from_slice(&first[..n]);
            let _ = stream.read_to_end(&mut reply);
            return split_reply(&reply);
        }
    }
    let mut writer = stream.try_clone().unwrap();
    let body = body.to_vec();
    let sending = std::thread::spawn(move || {
        for chunk in body.chunks(64 << 10) {
            if writer.write_all(chunk).is_err() {
                break;
            }
        }
    });
    let mut buf = [0u8; 64 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = sending.join();
    split_reply(&reply)
}

fn split_reply(reply: &[u8]) -> (u16, String, Vec<u8>) {
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(reply.len());
    let head = String::from_utf8_lossy(&reply[..split]).into_owned();
    let body = reply.get(split + 4..).unwrap_or_default().to_vec();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, body)
}

fn post(
    addr: SocketAddr,
    path: &str,
    content_type: &str,
    extra: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    );
    exchange(addr, &head, body)
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `depth` `AnyValue`s nested through `ArrayValue`s, as a log body, in a whole request.
fn deep_protobuf(depth: usize) -> Vec<u8> {
    fn len_field(field: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(field << 3) | 2];
        let mut n = payload.len();
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(payload);
        out
    }
    let mut value = len_field(1, b"leaf"); // AnyValue { string_value }
    for _ in 0..depth {
        let array = len_field(1, &value); // ArrayValue { values }
        value = len_field(5, &array); // AnyValue { array_value }
    }
    let record = len_field(5, &value); // LogRecord { body }
    let scope = len_field(2, &record); // ScopeLogs { log_records }
    let resource = len_field(2, &scope); // ResourceLogs { scope_logs }
    len_field(1, &resource) // ExportLogsServiceRequest { resource_logs }
}

/// A log record whose attribute value nests `depth` `KeyValueList`s, in a whole request;
/// with `metrics`, the same attribute on a metrics request's resource.
fn deep_attribute_protobuf(depth: usize, metrics: bool) -> Vec<u8> {
    fn len_field(field: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(field << 3) | 2];
        let mut n = payload.len();
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(payload);
        out
    }
    let key_value = |value: &[u8]| [len_field(1, b"k"), len_field(2, value)].concat();
    let mut value = len_field(1, b"leaf"); // AnyValue { string_value }
    for _ in 0..depth {
        let list = len_field(1, &key_value(&value)); // KeyValueList { values }
        value = len_field(6, &list); // AnyValue { kvlist_value }
    }
    let attribute = key_value(&value);
    if metrics {
        let resource = len_field(1, &attribute); // Resource { attributes }
        let resource_metrics = len_field(1, &resource); // ResourceMetrics { resource }
        return len_field(1, &resource_metrics);
    }
    let record = len_field(6, &attribute); // LogRecord { attributes }
    let scope = len_field(2, &record); // ScopeLogs { log_records }
    let resource = len_field(2, &scope); // ResourceLogs { scope_logs }
    len_field(1, &resource) // ExportLogsServiceRequest { resource_logs }
}

#[test]
fn bad_input_gets_a_4xx_with_a_reason_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  otlp:
    sources:
      - type: opentelemetry
        address: 127.0.0.1:{port}
    sinks:
      - type: blackhole
"#,
        data = dir.path().join("data").display(),
    );
    let agent = Agent::start(dir.path(), &config);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let protobuf = "application/x-protobuf";
    let text = |body: &[u8]| String::from_utf8_lossy(body).into_owned();

    // A valid request first: 200 and an empty export response.
    let (status, _, body) = post(
        addr,
        "/v1/logs",
        "application/json",
        "",
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"hi"}}]}]}]}"#,
    );
    assert_eq!((status, text(&body).as_str()), (200, "{}"));
    // Partial success: a metric point without a temporality is refused, the rest kept.
    let (status, _, body) = post(
        addr,
        "/v1/metrics",
        "application/json",
        "",
        br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
        {"name":"ok","gauge":{"dataPoints":[{"asDouble":1}]}},
        {"name":"bad","sum":{"dataPoints":[{"asDouble":1}]}}]}]}]}"#,
    );
    assert_eq!(status, 200);
    let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(reply["partialSuccess"]["rejectedDataPoints"], "1");
    assert!(reply["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap()
        .contains("temporality"));

    let (status, _, body) = post(
        addr,
        "/v1/logs",
        protobuf,
        "",
        b"\xff\xff\xff\xff not protobuf",
    );
    assert_eq!(status, 400);
    assert!(
        text(&body).contains("malformed ExportLogsServiceRequest"),
        "{}",
        text(&body)
    );

    let (status, head, body) = post(
        addr,
        "/v1/logs",
        "application/json",
        "",
        b"{\"resourceLogs\": [",
    );
    assert_eq!(status, 400);
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
    assert!(text(&body).contains("invalid JSON"), "{}", text(&body));

    let (status, _, body) = post(addr, "/v1/logs", "text/plain", "", b"hello");
    assert_eq!(status, 415);
    assert!(text(&body).contains("application/x-protobuf"));

    let (status, _, body) = post(addr, "/v1/logs", protobuf, "Content-Encoding: br\r\n", b"x");
    assert_eq!(status, 415);
    assert!(text(&body).contains("Content-Encoding"));

    let (status, _, _) = exchange(
        addr,
        "GET /v1/logs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"",
    );
    assert_eq!(status, 405);
    let (status, headers, body) = post(addr, "/v1/traces", protobuf, "", b"");
    assert_eq!(status, 404);
    // In the request's format: a google.rpc.Status (UNIMPLEMENTED) the SDK can read.
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: application/x-protobuf"),
        "{headers}"
    );
    assert!(
        text(&body).contains("/v1/logs and /v1/metrics"),
        "{}",
        text(&body)
    );
    let (status, headers, body) = post(addr, "/v1/traces", "application/json", "", b"{}");
    assert_eq!(status, 404);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{headers}"
    );
    let status_json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status_json["code"], 12, "{status_json}");

    // Nesting deeper than the decoders allow.
    let (status, _, body) = post(addr, "/v1/logs", protobuf, "", &deep_protobuf(200));
    assert_eq!(status, 400);
    assert!(text(&body).contains("recursion limit"), "{}", text(&body));
    for metrics in [false, true] {
        let path = if metrics { "/v1/metrics" } else { "/v1/logs" };
        let (status, _, body) = post(
            addr,
            path,
            protobuf,
            "",
            &deep_attribute_protobuf(200, metrics),
        );
        assert_eq!(status, 400, "{path}: {}", text(&body));
        assert!(text(&body).contains("recursion limit"), "{}", text(&body));
        // Nesting within the limit is data, kept.
        let (status, _, body) = post(
            addr,
            path,
            protobuf,
            "",
            &deep_attribute_protobuf(20, metrics),
        );
        assert_eq!(status, 200, "{path}: {}", text(&body));
    }
    let deep_json = format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{}{{"stringValue":"x"}}{}}}]}}]}}]}}"#,
        r#"{"arrayValue":{"values":["#.repeat(300),
        "]}}".repeat(300)
    );
    let (status, _, body) = post(
        addr,
        "/v1/logs",
        "application/json",
        "",
        deep_json.as_bytes(),
    );
    assert_eq!(status, 400);
    assert!(text(&body).contains("recursion limit"), "{}", text(&body));

    // A 100 MB body: refused from its Content-Length, before it is read.
    let big = vec![b'x'; 100 << 20];
    let (status, _, body) = post(addr, "/v1/logs", protobuf, "Expect: 100-continue\r\n", &big);
    assert_eq!(status, 413);
    assert!(text(&body).contains("max_request_bytes"));
    // ... and the same without a Content-Length (chunked): cut at the limit.
    let mut chunked = Vec::with_capacity(big.len() + 4096);
    for chunk in big.chunks(1 << 20) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {protobuf}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let (status, _, _) = exchange(addr, &head, &chunked);
    assert_eq!(status, 413);
    drop((big, chunked));

    // A gzip bomb: 1 KiB on the wire, 200 MiB inflated.
    let bomb = {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..200 {
            encoder.write_all(&zeros).unwrap();
        }
        encoder.finish().unwrap()
    };
    let (status, _, body) = post(
        addr,
        "/v1/logs",
        protobuf,
        "Content-Encoding: gzip\r\n",
        &bomb,
    );
    assert_eq!(status, 413, "{}", text(&body));
    let (status, _, body) = post(
        addr,
        "/v1/logs",
        protobuf,
        "Content-Encoding: gzip\r\n",
        b"not gzip",
    );
    assert_eq!(status, 400);
    assert!(text(&body).contains("gzip"));

    // Still serving, and memory stayed within a few request limits.
    let (status, _, _) = post(addr, "/v1/logs", "application/json", "", br#"{}"#);
    assert_eq!(status, 200);
    assert_eq!(agent.get("/health").map(|(s, _)| s), Some(200));
    let hwm = vm_hwm_kib(agent.child.id());
    eprintln!("agent peak RSS after the bad input: {} MiB", hwm / 1024);
    assert!(hwm < 160 * 1024, "peak RSS {hwm} KiB");
    let refused = agent.metric_sum("sluice_otlp_requests_refused_total", &[]);
    assert!(refused >= 10.0, "refusals counted: {refused}");
}

/// A trace or span id OTLP/JSON cannot read costs the id, never the record: the request is
/// answered 200 with a warning (as a wrong-length protobuf id is), not refused whole with a
/// 400 the exporter would drop. Ids in base64 (what generic protobuf JSON encoders write)
/// are read when they decode to an id's exact length.
#[test]
fn json_ids_that_are_not_hex_cost_the_id_not_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out.ndjson");
    let config = format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  otlp:
    sources:
      - type: opentelemetry
        address: 127.0.0.1:{port}
    sinks:
      - type: file
        path: {out}
"#,
        data = dir.path().join("data").display(),
        out = out.display(),
    );
    let agent = Agent::start(dir.path(), &config);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (status, _, body) = post(
        addr,
        "/v1/logs",
        "application/json",
        "",
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[
          {"body":{"stringValue":"not hex"},"traceId":"not-a-trace-id","spanId":12},
          {"body":{"stringValue":"base64"},"traceId":"W47/95gDgQPSabYzgT/GDA==","spanId":"7uGbfsPBsXQ="},
          {"body":{"stringValue":"hex"},"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174"}
        ]}]}]}"#,
    );
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 200, "{text}");
    let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
    let partial = &reply["partialSuccess"];
    assert!(
        partial["rejectedLogRecords"].is_null() || partial["rejectedLogRecords"] == "0",
        "{text}"
    );
    assert!(
        partial["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("traceId") && m.contains("not-a-trace-id")),
        "{text}"
    );

    wait_for(
        "three records in the file sink",
        Duration::from_secs(10),
        || std::fs::read_to_string(&out).is_ok_and(|t| t.lines().count() == 3),
    );
    let events: BTreeMap<String, serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            (event["message"].as_str().unwrap().to_owned(), event)
        })
        .collect();
    let ids = |message: &str| {
        let event = &events[message];
        (
            event.get("trace_id").cloned(),
            event.get("span_id").cloned(),
        )
    };
    assert_eq!(ids("not hex"), (None, None));
    let expected = (
        Some(serde_json::json!("5b8efff798038103d269b633813fc60c")),
        Some(serde_json::json!("eee19b7ec3c1b174")),
    );
    assert_eq!(ids("base64"), expected);
    assert_eq!(ids("hex"), expected);
    drop(agent);
}

/// The source answers once the sinks delivered (`wait_for_delivery`), and an exporter's next
/// export waits for that answer: a sink sends a waited-for batch at once instead of holding
/// it for its batch timeout (a second by default, which capped an SDK at its defaults to
/// 512 records a second and made it drop the rest). Here the timeout is 30 s: the answer
/// must come long before.
#[test]
fn a_waited_for_request_is_sent_at_once_not_after_the_batch_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let loki = FakeLoki::start();
    let config = format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  otlp:
    sources:
      - type: opentelemetry
        address: 127.0.0.1:{port}
    sinks:
      - type: loki
        endpoint: {loki}
        batch: {{ timeout_ms: 30000 }}
"#,
        data = dir.path().join("data").display(),
        loki = loki.endpoint(),
    );
    let _agent = Agent::start(dir.path(), &config);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for round in 0..3 {
        let started = Instant::now();
        let body = format!(
            r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"body":{{"stringValue":"round {round}"}}}}]}}]}}]}}"#
        );
        let (status, _, reply) = post(addr, "/v1/logs", "application/json", "", body.as_bytes());
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "round {round} answered after {:?}",
            started.elapsed()
        );
        assert_eq!(loki.entry_count(), round + 1, "delivered before the answer");
    }
}

/// A signal no sink of the pipeline takes is answered as OTLP's partial success (all of it
/// rejected, with the reason), not 200 and dropped unsaid: here metrics, whose only sink is
/// Loki; logs still arrive. With a `log_to_metric` and a remote-write sink only, the logs
/// are taken (they become metrics) and nothing is refused.
#[test]
fn a_signal_no_sink_takes_is_refused_as_partial_success() {
    let dir = tempfile::tempdir().unwrap();
    let (port, counted_port) = (free_port(), free_port());
    let loki = FakeLoki::start();
    let remote_write = FakeRemoteWrite::start();
    let config = format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  otlp:
    sources:
      - {{ type: opentelemetry, address: "127.0.0.1:{port}" }}
    sinks:
      - {{ type: loki, endpoint: {loki}, labels: {{ job: otlp }}, batch: {{ timeout_ms: 100 }} }}
  counted:
    sources:
      - {{ type: opentelemetry, address: "127.0.0.1:{counted_port}" }}
    transforms:
      - type: log_to_metric
        flush_interval_ms: 100
        drop_logs: true
        metrics: [{{ type: counter, name: records_total }}]
    sinks:
      - {{ type: prometheus_remote_write, endpoint: {rw}, batch: {{ timeout_ms: 100 }} }}
"#,
        data = dir.path().join("data").display(),
        loki = loki.endpoint(),
        rw = remote_write.url(),
    );
    let agent = Agent::start(dir.path(), &config);
    let metrics = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
        {"name":"a","gauge":{"dataPoints":[{"asDouble":1}]}},
        {"name":"b","gauge":{"dataPoints":[{"asDouble":2}]}}]}]}]}"#;
    let logs =
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"hi"}}]}]}]}"#;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (status, _, body) = post(addr, "/v1/metrics", "application/json", "", metrics);
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 200, "{text}");
    let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["partialSuccess"]["rejectedDataPoints"], "2", "{text}");
    assert!(
        reply["partialSuccess"]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("takes metrics")),
        "{text}"
    );
    let (status, _, body) = post(addr, "/v1/logs", "application/json", "", logs);
    assert_eq!((status, body.as_slice()), (200, b"{}".as_slice()));
    wait_for("the log record at Loki", Duration::from_secs(30), || {
        loki.entry_count() == 1
    });
    assert_eq!(
        agent.metric_sum(
            "sluice_events_dropped_total",
            &[("pipeline", "otlp"), ("reason", "otlp_rejected")]
        ),
        2.0
    );

    let counted: SocketAddr = format!("127.0.0.1:{counted_port}").parse().unwrap();
    let (status, _, body) = post(counted, "/v1/logs", "application/json", "", logs);
    assert_eq!((status, body.as_slice()), (200, b"{}".as_slice()));
    wait_for(
        "records_total at remote write",
        Duration::from_secs(30),
        || remote_write.last("records_total", &[]) == Some(1.0),
    );
    assert!(agent.terminate().success());
}
