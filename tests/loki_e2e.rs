//! End-to-end: the agent binary, a `demo` source and the `loki` sink against the fake Loki
//! of `support/fake_loki.rs`. Every test checks, from what the fake decoded, that no line is
//! missing and each stream arrived in order.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use support::fake_loki::{seq_of, Behavior, FakeLoki};
use support::{wait_for, Agent};

/// A config: demo source (`count` lines, `rate` 0 = as fast as possible) into Loki.
fn config(dir: &Path, loki: &FakeLoki, count: u64, rate: u64, extra: &str) -> String {
    config_at(dir, &loki.endpoint(), count, rate, extra)
}

/// [`config`] with the sink's `endpoint` as given.
fn config_at(dir: &Path, endpoint: &str, count: u64, rate: u64, extra: &str) -> String {
    format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  p:
    sources:
      - type: demo
        rate: {rate}
        count: {count}
    sinks:
      - type: loki
        endpoint: {endpoint}
        labels: {{ job: demo }}
        batch: {{ timeout_ms: 100 }}
        retry: {{ initial_backoff_ms: 20, max_backoff_ms: 500 }}
        request: {{ timeout_ms: 1000 }}
{extra}  keep_alive:
    sources:
      - type: stdin
    sinks:
      - type: blackhole
"#,
        data = dir.join("data").display(),
    )
}

/// Starts the agent with its stdin held open, so the `keep_alive` pipeline keeps it running
/// after the demo source ends (its metrics and health stay readable).
fn start(dir: &Path, yaml: &str) -> Agent {
    let port = support::free_port();
    let api: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let path = dir.join("sluice.yaml");
    std::fs::write(&path, yaml.replace("{api}", &api.to_string())).unwrap();
    Agent::start_file(&path, api, std::process::Stdio::piped())
}

/// Closes the agent's stdin: every source has then ended and the agent drains and exits.
fn stop(mut agent: Agent) -> std::process::ExitStatus {
    drop(agent.child.stdin.take());
    agent.wait(Duration::from_secs(60))
}

/// Sequence numbers received; asserts each stream's lines arrived in order unless
/// `allow_replay` (a restart replays what was in flight).
fn received(loki: &FakeLoki, allow_replay: bool) -> Vec<u64> {
    let mut seqs = Vec::new();
    let mut last: std::collections::HashMap<String, u64> = Default::default();
    for entry in loki.entries() {
        let seq = seq_of(&entry.line).unwrap_or_else(|| panic!("no seq in {:?}", entry.line));
        if let Some(previous) = last.insert(entry.labels.clone(), seq) {
            assert!(
                allow_replay || seq > previous,
                "stream {} out of order: {seq} after {previous}",
                entry.labels
            );
        }
        seqs.push(seq);
    }
    seqs
}

fn assert_complete(loki: &FakeLoki, count: u64, allow_replay: bool) {
    let seqs = received(loki, allow_replay);
    let unique: BTreeSet<u64> = seqs.iter().copied().collect();
    let missing: Vec<u64> = (0..count)
        .filter(|s| !unique.contains(s))
        .take(10)
        .collect();
    assert!(missing.is_empty(), "missing lines, first: {missing:?}");
    if !allow_replay {
        assert_eq!(seqs.len() as u64, count, "duplicates without a restart");
    }
    assert!(
        loki.errors().is_empty(),
        "protocol errors: {:?}",
        loki.errors()
    );
}

fn health(agent: &Agent) -> u16 {
    agent.get("/health").map_or(0, |(status, _)| status)
}

#[test]
fn delivers_every_line_in_order_protobuf() {
    let count = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let loki = FakeLoki::start();
    let agent = start(dir.path(), &config(dir.path(), &loki, count, 0, ""));
    wait_for("every line at the fake", Duration::from_secs(120), || {
        loki.entry_count() >= count as usize
    });
    assert_complete(&loki, count, false);
    assert!(agent.metric_sum("sluice_sink_requests_total", &[("status", "204")]) > 0.0);
    let uncompressed = agent.metric_sum("sluice_sink_bytes_total", &[("stage", "uncompressed")]);
    let compressed = agent.metric_sum("sluice_sink_bytes_total", &[("stage", "compressed")]);
    assert!(
        uncompressed > 2.0 * compressed,
        "snappy: {uncompressed} -> {compressed} bytes"
    );
    assert!(stop(agent).success());
}

/// One million lines from four files (one Loki stream per file through a `{{ file }}`
/// label template) arrive complete, each stream in order.
#[test]
fn one_million_lines_from_files_complete_and_in_order() {
    const FILES: u64 = 4;
    const PER_FILE: u64 = 250_000;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    for f in 0..FILES {
        let body: String = (0..PER_FILE)
            .map(|i| {
                format!(
                    "file {f} line seq={} {}\n",
                    f * PER_FILE + i,
                    "x".repeat(100)
                )
            })
            .collect();
        std::fs::write(logs.join(format!("f{f}.log")), body).unwrap();
    }
    let loki = FakeLoki::start();
    let yaml = format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  p:
    sources:
      - type: file
        include: ["{logs}/*.log"]
    sinks:
      - type: loki
        endpoint: {endpoint}
        labels: {{ job: files, file: "{{{{ file }}}}" }}
        request: {{ concurrency: 4 }}
        retry: {{ initial_backoff_ms: 20, max_backoff_ms: 500 }}
"#,
        data = dir.path().join("data").display(),
        logs = logs.display(),
        endpoint = loki.endpoint(),
    );
    let agent = Agent::start(dir.path(), &yaml);
    let count = FILES * PER_FILE;
    wait_for("every line at the fake", Duration::from_secs(240), || {
        loki.entry_count() >= count as usize
    });
    assert_complete(&loki, count, false);
    let streams: BTreeSet<String> = loki.entries().iter().map(|e| e.labels.clone()).collect();
    assert_eq!(
        streams.len() as u64,
        FILES,
        "one stream per file: {streams:?}"
    );
    agent.terminate();
}

#[test]
fn json_gzip_with_tenant_and_metadata() {
    let count = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let loki = FakeLoki::start();
    let extra = "        encoding: json\n        tenant_id: team-a\n        structured_metadata: { seq: '{{ seq }}' }\n";
    let agent = start(dir.path(), &config(dir.path(), &loki, count, 0, extra));
    wait_for("every line at the fake", Duration::from_secs(60), || {
        loki.entry_count() >= count as usize
    });
    assert_complete(&loki, count, false);
    for entry in loki.entries() {
        assert_eq!(entry.tenant.as_deref(), Some("team-a"));
        assert_eq!(entry.labels, r#"{job="demo"}"#);
        let seq = seq_of(&entry.line).unwrap().to_string();
        assert_eq!(entry.metadata, vec![("seq".to_owned(), seq)]);
    }
    assert!(stop(agent).success());
}

#[test]
fn outage_of_60s_loses_nothing_and_health_recovers() {
    let count = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let loki = FakeLoki::start();
    let extra = "        unhealthy_after_secs: 2\n";
    let agent = start(dir.path(), &config(dir.path(), &loki, count, 2000, extra));
    wait_for("first lines", Duration::from_secs(30), || {
        loki.entry_count() >= 5_000
    });
    let unavailable = Behavior::Status {
        code: 503,
        retry_after: None,
        body: "ingester unavailable".into(),
    };
    loki.behave_for(unavailable, Duration::from_secs(60));
    wait_for("/health to fail", Duration::from_secs(30), || {
        health(&agent) == 503
    });
    let (_, body) = agent.get("/health").unwrap();
    assert!(body.contains("no successful request"), "{body}");
    wait_for(
        "every line after the outage",
        Duration::from_secs(150),
        || loki.entry_count() >= count as usize,
    );
    wait_for("/health to recover", Duration::from_secs(10), || {
        health(&agent) == 200
    });
    assert_complete(&loki, count, false);
    assert!(agent.metric_sum("sluice_sink_requests_total", &[("status", "503")]) > 0.0);
    assert!(agent.metric_sum("sluice_sink_retries_total", &[]) > 0.0);
    assert!(stop(agent).success());
}

#[test]
fn honours_retry_after_on_429() {
    let count = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let loki = FakeLoki::start();
    let limited = Behavior::Status {
        code: 429,
        retry_after: Some("2".into()),
        body: "Ingestion rate limit exceeded".into(),
    };
    loki.script([limited]);
    let agent = start(dir.path(), &config(dir.path(), &loki, count, 0, ""));
    // The fake stores entries before it answers and records the request after: wait for
    // the record of the successful retry too.
    wait_for("every line", Duration::from_secs(60), || {
        loki.entry_count() >= count as usize && loki.requests().len() >= 2
    });
    let requests = loki.requests();
    assert_eq!(requests[0].status, 429);
    let waited = requests[1].received - requests[0].received;
    assert!(
        waited >= Duration::from_secs(2),
        "retried after {waited:?}, Retry-After said 2 s"
    );
    assert_complete(&loki, count, false);
    assert!(stop(agent).success());
}

#[test]
fn kill9_and_restart_delivers_every_line_at_least_once() {
    let count = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let loki = FakeLoki::start();
    let yaml = config(dir.path(), &loki, count, 20_000, "");
    let agent = start(dir.path(), &yaml);
    wait_for("some lines", Duration::from_secs(60), || {
        loki.entry_count() >= 20_000
    });
    agent.kill9();
    let before = loki.entry_count();
    assert!(before < count as usize, "the run ended before the kill");
    let agent = start(dir.path(), &yaml);
    wait_for(
        "every line after the restart",
        Duration::from_secs(120),
        || {
            let unique: BTreeSet<u64> = received(&loki, true).into_iter().collect();
            unique.len() as u64 >= count
        },
    );
    assert_complete(&loki, count, true);
    assert!(stop(agent).success());
}

#[test]
fn bad_servers_are_retried_failures() {
    let count = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let loki = FakeLoki::start();
    loki.script([
        Behavior::CloseMidResponse,
        Behavior::Garbage,
        Behavior::Hang(Duration::from_secs(5)),
        Behavior::TruncatedOk,
        Behavior::Status {
            code: 500,
            retry_after: None,
            body: "oops".into(),
        },
        Behavior::Status {
            code: 502,
            retry_after: None,
            body: String::new(),
        },
    ]);
    let agent = start(dir.path(), &config(dir.path(), &loki, count, 0, ""));
    wait_for("every line", Duration::from_secs(90), || {
        loki.entry_count() >= count as usize
    });
    assert_complete(&loki, count, false);
    let metrics = agent.metrics();
    let failures = support::metric_sum(
        &metrics,
        "sluice_sink_requests_total",
        &[("status", "transport_error")],
    ) + support::metric_sum(
        &metrics,
        "sluice_sink_requests_total",
        &[("status", "timeout")],
    );
    assert!(
        failures >= 4.0,
        "transport failures counted: {failures}\n{metrics}"
    );
    assert!(support::metric_sum(&metrics, "sluice_sink_retries_total", &[]) >= 6.0);
    assert_eq!(health(&agent), 200);
    assert!(stop(agent).success());
}

#[test]
fn loki_400_is_dead_lettered_not_retried() {
    let count = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let loki = FakeLoki::start();
    let out_of_order = Behavior::Status {
        code: 400,
        retry_after: None,
        body: "entry with timestamp 2024-01-01 ignored, reason: 'entry out of order' for stream: {job=\"demo\"}".into(),
    };
    loki.script([out_of_order]);
    let extra = "        batch: { timeout_ms: 100, max_events: 500 }\n";
    let yaml = config(dir.path(), &loki, count, 0, "")
        .replace("        batch: { timeout_ms: 100 }\n", extra);
    let agent = start(dir.path(), &yaml);
    wait_for("the rest of the lines", Duration::from_secs(60), || {
        loki.entry_count() >= count as usize - 500
    });
    assert!(stop(agent).success());
    let rejected = loki.requests().iter().filter(|r| r.status == 400).count();
    assert_eq!(rejected, 1, "a 400 is never retried");
    let dead = support::read_json_lines(&dir.path().join("data/dead_letter.jsonl"));
    assert_eq!(
        dead.len() + loki.entry_count(),
        count as usize,
        "every line delivered or dead-lettered"
    );
    assert!(!dead.is_empty());
    // The reason, then the server's own words (status and reply).
    assert!(dead.iter().all(|d| d["reason"]
        .as_str()
        .is_some_and(|r| r.starts_with("out_of_order: 400 ") && r.contains("out of order"))));
    let mut all: BTreeSet<u64> = received(&loki, false).into_iter().collect();
    all.extend(
        dead.iter()
            .map(|d| seq_of(d["event"]["message"].as_str().unwrap()).unwrap()),
    );
    assert_eq!(all.len() as u64, count);
}

/// An endpoint with a path (VictoriaLogs' documented `/insert/loki/`, or a full push URL
/// behind a prefix) reaches the push path once, not doubled.
#[test]
fn endpoints_with_a_path_reach_the_push_path_once() {
    for (endpoint, push_path) in [
        ("/insert/loki/", "/insert/loki/api/v1/push"),
        ("/x/loki/api/v1/push", "/x/loki/api/v1/push"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let loki = FakeLoki::start_at(push_path);
        let yaml = config_at(
            dir.path(),
            &format!("{}{endpoint}", loki.endpoint()),
            50,
            0,
            "",
        );
        let agent = start(dir.path(), &yaml);
        wait_for("50 entries", Duration::from_secs(60), || {
            loki.entry_count() >= 50
        });
        assert_complete(&loki, 50, false);
        assert!(stop(agent).success());
    }
}

/// Lines read together get strictly increasing times, so a back-end that orders by time
/// (Loki, Grafana) shows them in file order, not shuffled within each read batch.
#[test]
fn a_files_lines_reach_loki_with_strictly_increasing_times_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let loki = FakeLoki::start();
    let log = dir.path().join("app.log");
    let text: String = (0..10_000).map(|i| format!("line seq={i}\n")).collect();
    std::fs::write(&log, text).unwrap();
    let yaml = format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  p:
    sources:
      - type: file
        include: ["{log}"]
    sinks:
      - type: loki
        endpoint: {endpoint}
        labels: {{ job: file }}
        batch: {{ timeout_ms: 100 }}
"#,
        data = dir.path().join("data").display(),
        log = log.display(),
        endpoint = loki.endpoint(),
    );
    let agent = start(dir.path(), &yaml);
    wait_for("10,000 entries", Duration::from_secs(60), || {
        loki.entry_count() >= 10_000
    });
    let mut entries = loki.entries();
    // As Loki returns them: by time.
    entries.sort_by_key(|e| e.timestamp);
    let seqs: Vec<u64> = entries.iter().filter_map(|e| seq_of(&e.line)).collect();
    assert_eq!(
        seqs,
        (0..10_000).collect::<Vec<u64>>(),
        "file order by time"
    );
    assert!(
        entries.windows(2).all(|w| w[0].timestamp < w[1].timestamp),
        "times strictly increasing"
    );
    agent.kill9();
}
