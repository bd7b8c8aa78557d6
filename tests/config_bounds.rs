//! Issue 16: `validate` and `run` refuse every value `run` cannot honour (a panic at start or
//! on SIGTERM, memory out of proportion), naming the key and the allowed range.

mod support;

use std::path::Path;
use std::process::Command;

fn sluice(args: &[&str], config: &Path) -> (Option<i32>, String) {
    let output = Command::new(support::binary())
        .args(args)
        .arg(config)
        .output()
        .expect("run sluice");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code(), text)
}

/// A valid file → blackhole config with `top` added at the top level, `source` lines under
/// the file source and `sink` lines under an Elasticsearch sink.
fn config(dir: &Path, top: &str, pipeline: &str, source: &str, sink: &str) -> String {
    let data = dir.join("data");
    let logs = dir.join("logs");
    format!(
        "data_dir: {}\n{top}pipelines:\n  p:\n{pipeline}    sources:\n      - type: file\n        include: [\"{}/*.log\"]\n{source}    sinks:\n      - type: elasticsearch\n        endpoint: http://127.0.0.1:9\n        index: logs\n{sink}",
        data.display(),
        logs.display()
    )
}

#[test]
fn out_of_range_values_are_refused_naming_key_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    let many_globs = format!(
        "        exclude: [{}]\n",
        (0..1100)
            .map(|i| format!("\"/x/{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // (top, pipeline, source, sink, key, range)
    let cases: Vec<(&str, &str, &str, &str, &str, &str)> = vec![
        (
            "threads: 100000\n",
            "",
            "",
            "",
            "threads",
            "between 1 and 256",
        ),
        (
            "shutdown_timeout_secs: 9223372036854775808\n",
            "",
            "",
            "",
            "shutdown_timeout_secs",
            "between 0 and 3600",
        ),
        (
            "checkpoint_interval_ms: 18446744073709551615\n",
            "",
            "",
            "",
            "checkpoint_interval_ms",
            "between 10 and",
        ),
        (
            "checkpoint_interval_ms: 1\n",
            "",
            "",
            "",
            "checkpoint_interval_ms",
            "between 10 and",
        ),
        (
            "dead_letter_max_bytes: 0\n",
            "",
            "",
            "",
            "dead_letter_max_bytes",
            "between 1024 and",
        ),
        (
            "api:\n  stall_after_secs: 0\n",
            "",
            "",
            "",
            "api.stall_after_secs",
            "between 1 and",
        ),
        (
            "",
            "    queue_batches: 18446744073709551615\n",
            "",
            "",
            "pipelines.p.queue_batches",
            "between 1 and 4096",
        ),
        (
            "",
            "",
            "        fingerprint_bytes: 0\n",
            "",
            "fingerprint_bytes",
            "between 16 and 1048576",
        ),
        (
            "",
            "",
            &many_globs,
            "",
            "exclude (number of globs)",
            "between 0 and 1024",
        ),
        (
            "",
            "",
            "        glob_interval_ms: 0\n",
            "",
            "glob_interval_ms",
            "between 1 and",
        ),
        (
            "",
            "",
            "        max_line_bytes: 18446744073709551615\n",
            "",
            "max_line_bytes",
            "between 1 and 268435456",
        ),
        (
            "",
            "",
            "        batch_lines: 0\n",
            "",
            "batch_lines",
            "between 1 and 1000000",
        ),
        (
            "",
            "",
            "        close_idle_secs: 18446744073709551615\n",
            "",
            "close_idle_secs",
            "between 0 and",
        ),
        (
            "",
            "",
            "        max_open_files: 0\n",
            "",
            "max_open_files",
            "between 1 and",
        ),
        (
            "",
            "",
            "",
            "        batch:\n          max_events: 0\n",
            "batch.max_events",
            "between 1 and 1000000",
        ),
        (
            "",
            "",
            "",
            "        request:\n          timeout_ms: 18446744073709551615\n",
            "request.timeout_ms",
            "between 1 and",
        ),
        (
            "",
            "",
            "",
            "        retry:\n          max_duration_secs: 18446744073709551615\n",
            "retry.max_duration_secs",
            "between 1 and",
        ),
        (
            "",
            "",
            "",
            "        retry:\n          initial_backoff_ms: 500\n          max_backoff_ms: 100\n",
            "retry.max_backoff_ms",
            "between 500 and",
        ),
        (
            "",
            "",
            "",
            "        unhealthy_after_secs: 0\n",
            "unhealthy_after_secs",
            "between 1 and",
        ),
    ];
    let (code, text) = {
        std::fs::write(&path, config(dir.path(), "", "", "", "")).unwrap();
        sluice(&["validate", "-c"], &path)
    };
    assert_eq!(code, Some(0), "the base config must validate: {text}");
    for (top, pipeline, source, sink, key, range) in cases {
        let text_in = config(dir.path(), top, pipeline, source, sink);
        std::fs::write(&path, &text_in).unwrap();
        let (code, text) = sluice(&["validate", "-c"], &path);
        assert_eq!(code, Some(1), "{key}: validate must refuse it:\n{text}");
        assert!(
            text.contains(key) && text.contains(range) && text.contains("must be between"),
            "{key}: the error must name the key and {range:?}: {text}"
        );
        assert!(!text.contains("panicked"), "{key}: {text}");
        let line = text.split("sluice.yaml:").nth(1).unwrap_or("");
        assert!(
            line.starts_with(|c: char| c.is_ascii_digit()),
            "{key}: the error must name the line: {text}"
        );
    }
}

/// `run` builds the same way: the value that panicked at start is refused with exit code 1.
#[test]
fn run_refuses_them_too_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    let top = format!("api:\n  address: 127.0.0.1:{}\n", support::free_port());
    std::fs::write(
        &path,
        config(
            dir.path(),
            &top,
            "    queue_batches: 18446744073709551615\n",
            "",
            "",
        ),
    )
    .unwrap();
    let (code, text) = sluice(&["run", "-c"], &path);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("pipelines.p.queue_batches: must be between 1 and 4096"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}

/// Every numeric key of every source, transform and sink: the largest number YAML can
/// hold is refused at its line, naming the key and the range, never left for `run` to
/// panic on (a host_metrics `interval_secs` of 2^64 − 1 passed `validate`, then `run`
/// panicked with "overflow when adding duration to instant"). Counts that size nothing
/// (`sample`'s 1 in `rate`, a throttle's `threshold`, a scrape's `sample_limit`, demo's
/// `count`) may be any whole number and are not listed.
#[test]
fn every_numeric_key_of_every_component_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.yaml");
    let logs = dir.path().join("logs");
    // (a pipeline's components, with `K` standing for `key: <value>`; the key's name)
    let source = |body: &str| {
        format!("    sources:\n      - {body}\n    sinks: [ {{ type: blackhole }} ]\n")
    };
    let transform = |body: &str| {
        format!("    sources: [ {{ type: demo }} ]\n    transforms:\n      - {body}\n    sinks: [ {{ type: blackhole }} ]\n")
    };
    let sink =
        |body: &str| format!("    sources: [ {{ type: demo }} ]\n    sinks:\n      - {body}\n");
    let file = format!(
        "{{ type: file, include: [\"{}/*.log\"], K }}",
        logs.display()
    );
    let loki = "{ type: loki, endpoint: \"http://127.0.0.1:9\", K }";
    let mut cases: Vec<(String, &str)> = Vec::new();
    for key in ["rate", "batch_events"] {
        cases.push((source("{ type: demo, K }"), key));
    }
    cases.push((source("{ type: stdin, K }"), "max_line_bytes"));
    for key in [
        "ignore_older_secs",
        "fingerprint_bytes",
        "glob_interval_ms",
        "max_line_bytes",
        "close_idle_secs",
        "max_open_files",
        "rotate_wait_ms",
        "batch_lines",
        "batch_bytes",
    ] {
        cases.push((source(&file), key));
    }
    for key in ["batch_events", "poll_interval_ms"] {
        cases.push((source("{ type: journald, K }"), key));
    }
    cases.push((source("{ type: internal_metrics, K }"), "interval_secs"));
    for key in [
        "max_message_bytes",
        "max_connections",
        "idle_timeout_secs",
        "max_buffered_bytes",
        "receive_buffer_bytes",
        "batch_events",
        "batch_bytes",
    ] {
        cases.push((
            source("{ type: syslog, mode: tcp, address: \"127.0.0.1:9\", K }"),
            key,
        ));
    }
    cases.push((source("{ type: host_metrics, K }"), "interval_secs"));
    for key in ["interval_secs", "timeout_secs", "body_size_limit_bytes"] {
        cases.push((
            source("{ type: prometheus_scrape, targets: [\"http://127.0.0.1:9/metrics\"], K }"),
            key,
        ));
    }
    for key in [
        "delivery_timeout_secs",
        "max_request_bytes",
        "max_buffered_bytes",
        "max_connections",
        "batch_events",
        "max_delta_series",
    ] {
        cases.push((source("{ type: opentelemetry, K }"), key));
    }
    cases.push((
        transform("{ type: throttle, threshold: 10, K }"),
        "window_secs",
    ));
    cases.push((
        transform("{ type: throttle, threshold: 10, window_secs: 1, K }"),
        "max_keys",
    ));
    for key in ["wait_for_pod_ms", "watch_timeout_secs"] {
        cases.push((
            transform(
                "{ type: kubernetes_metadata, api_url: \"http://127.0.0.1:9\", node_name: n, K }",
            ),
            key,
        ));
    }
    for key in [
        "batch: { max_events",
        "batch: { max_bytes",
        "batch: { timeout_ms",
        "request: { concurrency",
        "request: { timeout_ms",
        "retry: { initial_backoff_ms",
        "retry: { max_backoff_ms",
        "retry: { max_duration_secs",
        "buffer: { type: disk, max_bytes",
        "buffer: { type: disk, sync_interval_ms",
    ] {
        cases.push((sink(loki), key));
    }
    let mut failures = Vec::new();
    for (pipeline, key) in cases {
        let (value, close) = match key.contains('{') {
            true => ("18446744073709551615 }", key.rsplit(' ').next().unwrap()),
            false => ("18446744073709551615", key),
        };
        let body = pipeline.replace('K', &format!("{key}: {value}"));
        let text_in = format!(
            "data_dir: {}\npipelines:\n  p:\n{body}",
            dir.path().join("data").display()
        );
        std::fs::write(&path, &text_in).unwrap();
        let (code, text) = sluice(&["validate", "-c"], &path);
        if code != Some(1) || !text.contains(close) || !text.contains("must be between") {
            failures.push(format!("{body}=> {text}"));
        }
        assert!(!text.contains("panicked"), "{key}: {text}");
    }
    assert!(
        failures.is_empty(),
        "not refused, or refused without naming the key and its range:\n{}",
        failures.join("\n")
    );
}
