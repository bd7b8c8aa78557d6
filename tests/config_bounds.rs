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
