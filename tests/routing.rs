//! Routing through the binary (issue 24): one pipeline, two sinks, a `condition:` on one.
//! Error lines reach only the Elasticsearch fake, every line reaches the Loki fake, and the
//! file's checkpoint advances only once both delivered what they took: lines the
//! Elasticsearch sink's condition refuses count as delivered for it, and while it retries
//! the errors it took, the position waits even though Loki has everything.

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use support::fake_elasticsearch::{Behavior, FakeElasticsearch};
use support::fake_loki::FakeLoki;
use support::{append, wait_for, Agent};

/// The highest committed offset of any stream in the checkpoint file (one file here).
fn committed(data: &Path) -> u64 {
    let Ok(body) = fs::read(data.join("checkpoints.json")) else {
        return 0;
    };
    let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    parsed["streams"]
        .as_object()
        .map(|streams| {
            streams
                .values()
                .filter_map(|s| s["offset"].as_u64())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

fn lines(from: usize, n: usize, error_every: usize) -> String {
    (from..from + n)
        .map(|i| {
            let level = if error_every > 0 && i % error_every == 0 {
                "error"
            } else {
                "info"
            };
            format!("level={level} seq={i} msg=\"line {i}\"\n")
        })
        .collect()
}

#[test]
fn errors_go_to_elasticsearch_everything_to_loki_and_checkpoints_wait_for_both() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, data) = (dir.path().join("logs"), dir.path().join("data"));
    fs::create_dir_all(&logs).unwrap();
    let log = logs.join("app.log");
    let loki = FakeLoki::start();
    let es = FakeElasticsearch::start();
    let config = format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  app:
    sources:
      - {{ type: file, include: ["{logs}/*.log"], glob_interval_ms: 100 }}
    transforms:
      - {{ type: parse_logfmt }}
    sinks:
      - name: everything
        type: loki
        endpoint: {loki}
        labels: {{ job: app }}
        batch: {{ timeout_ms: 100 }}
      - name: errors
        type: elasticsearch
        endpoint: {es}
        condition: {{ field: level, equals: error }}
        batch: {{ timeout_ms: 100 }}
        retry: {{ initial_backoff_ms: 50, max_backoff_ms: 100 }}
"#,
        data = data.display(),
        logs = logs.display(),
        loki = loki.endpoint(),
        es = es.endpoint(),
    );
    let agent = Agent::start(dir.path(), &config);

    // No error at all: Elasticsearch takes nothing, and the position still advances.
    append(&log, &lines(0, 50, 0));
    let size = fs::metadata(&log).unwrap().len();
    wait_for("50 lines at Loki", Duration::from_secs(30), || {
        loki.entry_count() == 50
    });
    wait_for(
        "the checkpoint at the end of the file",
        Duration::from_secs(30),
        || committed(&data) == size,
    );
    assert_eq!(es.requests(), 0, "no error line, no request");

    // Every third line an error, while Elasticsearch refuses 40 requests in a row.
    let refusals = 40;
    es.script((0..refusals).map(|_| Behavior::Status(503)));
    append(&log, &lines(50, 30, 3));
    let end = fs::metadata(&log).unwrap().len();
    wait_for("80 lines at Loki", Duration::from_secs(30), || {
        loki.entry_count() == 80
    });
    std::thread::sleep(Duration::from_millis(300));
    let position = committed(&data);
    assert!(
        es.requests() < refusals,
        "the test expects Elasticsearch to be refusing still ({} requests)",
        es.requests()
    );
    assert_eq!(
        position, size,
        "Loki has every line but Elasticsearch has not its errors: the position waits"
    );
    wait_for(
        "10 errors in Elasticsearch",
        Duration::from_secs(30),
        || es.doc_count() == 10,
    );
    wait_for(
        "the checkpoint at the new end",
        Duration::from_secs(30),
        || committed(&data) == end,
    );

    let docs = es.docs();
    assert!(
        docs.iter().all(|d| d.message.contains("level=error")),
        "only errors in Elasticsearch: {docs:?}"
    );
    let loki_lines: Vec<String> = loki.entries().into_iter().map(|e| e.line).collect();
    assert_eq!(
        loki_lines
            .iter()
            .filter(|l| l.contains("level=error"))
            .count(),
        10
    );
    assert_eq!(loki_lines.len(), 80, "Loki has every line once");
    assert!(agent.terminate().success());
}

/// Events no sink delivers are counted, and a kind no sink takes is said at start: the
/// log_to_metric counters of a pipeline whose only sink is Loki (`no_sink`), and the lines
/// a pipeline's only sink's condition refuses (`unrouted`). Before, both vanished
/// uncounted. A sink that could never take anything the pipeline carries is refused.
#[test]
fn events_no_sink_takes_are_counted_and_a_kind_no_sink_takes_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, data) = (dir.path().join("logs"), dir.path().join("data"));
    fs::create_dir_all(&logs).unwrap();
    let loki = FakeLoki::start();
    let es = FakeElasticsearch::start();
    let config = format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  counted:
    sources:
      - {{ type: file, include: ["{logs}/a.log"], glob_interval_ms: 100 }}
    transforms:
      - {{ type: parse_logfmt }}
      - type: log_to_metric
        flush_interval_ms: 100
        metrics: [{{ type: counter, name: lines_total, labels: [level] }}]
    sinks:
      - {{ type: loki, endpoint: {loki}, labels: {{ job: a }}, batch: {{ timeout_ms: 100 }} }}
  routed:
    sources:
      - {{ type: file, include: ["{logs}/b.log"], glob_interval_ms: 100 }}
    transforms:
      - {{ type: parse_logfmt }}
    sinks:
      - type: elasticsearch
        endpoint: {es}
        condition: {{ field: level, equals: error }}
        batch: {{ timeout_ms: 100 }}
"#,
        data = data.display(),
        logs = logs.display(),
        loki = loki.endpoint(),
        es = es.endpoint(),
    );
    let agent = Agent::start_logged(dir.path(), &config);
    append(&logs.join("a.log"), &lines(0, 30, 3));
    append(&logs.join("b.log"), &lines(0, 50, 5));
    let dropped = |pipeline: &str, reason: &str| {
        agent.metric_sum(
            "sluice_events_dropped_total",
            &[
                ("pipeline", pipeline),
                ("component_kind", "pipeline"),
                ("reason", reason),
            ],
        )
    };
    wait_for("30 lines at Loki", Duration::from_secs(30), || {
        loki.entry_count() == 30
    });
    wait_for(
        "10 errors in Elasticsearch",
        Duration::from_secs(30),
        || es.doc_count() == 10,
    );
    // Two series (level info and error), emitted at each flush that saw a change.
    wait_for(
        "the counters counted as dropped",
        Duration::from_secs(30),
        || dropped("counted", "no_sink") >= 2.0,
    );
    wait_for("40 lines counted unrouted", Duration::from_secs(30), || {
        dropped("routed", "unrouted") == 40.0
    });
    // The counters log_to_metric emits count as leaving it, with the 30 lines.
    wait_for(
        "log_to_metric's output counted",
        Duration::from_secs(30),
        || {
            let sent = agent.metric_sum(
                "sluice_events_sent_total",
                &[("pipeline", "counted"), ("component", "log_to_metric")],
            );
            sent == 30.0 + dropped("counted", "no_sink")
        },
    );
    assert_eq!(dropped("counted", "unrouted"), 0.0);
    assert_eq!(dropped("routed", "no_sink"), 0.0);
    let log = agent.log();
    assert!(
        log.contains("pipeline counted: metrics can reach it, but none of its sinks takes metrics"),
        "{log}"
    );
    assert!(!log.contains("pipeline routed:"), "{log}");
    assert!(agent.terminate().success());

    // A sink that takes no kind the pipeline carries is refused, at its line.
    let refused = dir.path().join("refused.yaml");
    fs::write(
        &refused,
        format!(
            "data_dir: {data}\npipelines:\n  m:\n    sources:\n      - {{ type: host_metrics, collectors: [cpu] }}\n    sinks:\n      - {{ type: loki, endpoint: {loki} }}\n",
            data = data.display(),
            loki = loki.endpoint()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(support::binary())
        .args(["validate", "--config"])
        .arg(&refused)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(":7: pipelines.m.sinks[0]: a loki sink takes only logs, and this pipeline carries only metrics"),
        "{stderr}"
    );
}
