//! `sluice test`: unit tests of a config's transforms, like `vector test`. A test feeds
//! events to a pipeline's transforms and checks what comes out, in order (the format is
//! [`crate::config::test_cases`]).
//!
//! Stateful transforms are flushed after the inputs (as at shutdown), so `log_to_metric`
//! totals come out after the log events. The config must build as for `validate`.
//!
//! Owns: running tests, the report. Never: starts a source or a sink.

use std::fmt::Write as _;

use anyhow::Context as _;

use crate::config::test_cases::{Expected, ExpectedMetric, Input, TestConfig};
use crate::config::{Built, Config};
use crate::event::{Event, LogEvent, MetricValue, Timestamp, Value};
use crate::sink::LineEncoding;
use crate::transform::Transform;

/// How a run went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Tests whose every expectation held.
    pub passed: usize,
    /// Tests that failed (or could not run).
    pub failed: usize,
}

/// Runs `tests` against `config` (read from `file`), writing the report to `out`.
pub fn run(
    config: &Config,
    file: &str,
    tests: &[TestConfig],
    out: &mut dyn std::io::Write,
) -> anyhow::Result<Summary> {
    anyhow::ensure!(
        !tests.is_empty(),
        "no tests: add `tests:` to {file} or name a file of tests"
    );
    // The whole config must build, as for `validate`.
    config.build(file)?;
    let mut summary = Summary::default();
    let plural = if tests.len() == 1 { "" } else { "s" };
    writeln!(out, "running {} test{plural} ({file})", tests.len())?;
    for test in tests {
        let problems = match run_one(config, file, test) {
            Ok(problems) => problems,
            Err(error) => vec![format!("cannot run: {error:#}")],
        };
        if problems.is_empty() {
            summary.passed += 1;
            writeln!(out, "test {} ... ok", test.name)?;
        } else {
            summary.failed += 1;
            writeln!(out, "test {} ... FAILED", test.name)?;
            for problem in problems {
                for (i, line) in problem.lines().enumerate() {
                    let indent = if i == 0 { "    " } else { "        " };
                    writeln!(out, "{indent}{line}")?;
                }
            }
        }
    }
    let verdict = if summary.failed == 0 { "ok" } else { "FAILED" };
    writeln!(
        out,
        "\ntest result: {verdict}. {} passed; {} failed",
        summary.passed, summary.failed
    )?;
    Ok(summary)
}

/// Runs one test: its problems (empty when it passed).
fn run_one(config: &Config, file: &str, test: &TestConfig) -> anyhow::Result<Vec<String>> {
    let pipeline = match &test.pipeline {
        Some(name) => name.clone(),
        None => {
            let mut names = config.pipelines.keys();
            match (names.next(), names.next()) {
                (Some(only), None) => only.clone(),
                _ => anyhow::bail!(
                    "the config has several pipelines: name one with `pipeline:` ({})",
                    config
                        .pipelines
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    };
    anyhow::ensure!(
        config.pipelines.contains_key(&pipeline),
        "no pipeline {pipeline:?} in the config"
    );
    // Built afresh for every test: stateful transforms start empty.
    let mut built = config.build_selected(file, |name| name == pipeline)?;
    let transforms = built.pop().map(|p| p.transforms).unwrap_or_default();
    let position = |id: &Option<String>, default: usize, key: &str| match id {
        None => Ok(default),
        Some(id) => transforms
            .iter()
            .position(|t| &t.id == id)
            .with_context(|| {
                let ids: Vec<&str> = transforms.iter().map(|t| t.id.as_str()).collect();
                format!(
                    "{key}: no transform {id:?} in pipeline {pipeline:?} (transforms: {})",
                    ids.join(", ")
                )
            }),
    };
    let from = position(&test.insert_at, 0, "insert_at")?;
    let to = position(
        &test.extract_from,
        transforms.len().saturating_sub(1),
        "extract_from",
    )?;
    anyhow::ensure!(
        transforms.is_empty() || from <= to,
        "insert_at comes after extract_from"
    );
    let mut inputs = Vec::new();
    for (i, input) in test.inputs.iter().enumerate() {
        inputs.push(Event::Log(
            make_event(input).with_context(|| format!("inputs[{i}]"))?,
        ));
    }
    let mut stages: Vec<Built<Transform>> = transforms;
    let stages = if stages.is_empty() {
        &mut stages[..]
    } else {
        &mut stages[from..=to]
    };
    let outputs = run_transforms(stages, inputs);
    check(&test.outputs, &outputs)
}

fn make_event(input: &Input) -> anyhow::Result<LogEvent> {
    let mut event = LogEvent::new(input.message.clone());
    for (name, value) in &input.fields {
        event.insert(name, Value::from(value.clone()));
    }
    if let Some(time) = &input.timestamp {
        event.timestamp = parse_time(time)?;
    }
    Ok(event)
}

fn parse_time(text: &str) -> anyhow::Result<Timestamp> {
    let time = chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("timestamp {text:?} is not RFC 3339"))?;
    Ok(Timestamp::from_datetime(&time))
}

/// `events` through `stages`, then each stage flushed (its output through the later ones).
fn run_transforms(stages: &mut [Built<Transform>], events: Vec<Event>) -> Vec<Event> {
    fn apply(stages: &mut [Built<Transform>], mut events: Vec<Event>) -> Vec<Event> {
        for stage in stages {
            let mut out = Vec::with_capacity(events.len());
            stage.component.process(events, &mut out);
            events = out;
        }
        events
    }
    let mut outputs = apply(stages, events);
    for index in 0..stages.len() {
        let mut emitted = Vec::new();
        stages[index].component.flush(&mut emitted);
        if !emitted.is_empty() {
            outputs.extend(apply(&mut stages[index + 1..], emitted));
        }
    }
    outputs
}

/// Every way `actual` differs from `expected`.
fn check(expected: &[Expected], actual: &[Event]) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    for (i, (want, got)) in expected.iter().zip(actual).enumerate() {
        let mut found = Vec::new();
        check_event(want, got, &mut found).with_context(|| format!("outputs[{i}]"))?;
        if !found.is_empty() {
            problems.push(format!(
                "output {} of {}: {}\nactual: {}",
                i + 1,
                actual.len(),
                found.join("; "),
                render(got)
            ));
        }
    }
    if expected.len() != actual.len() {
        let mut text = format!(
            "expected {} events out, got {}",
            expected.len(),
            actual.len()
        );
        for (i, event) in actual.iter().enumerate().skip(expected.len()) {
            let _ = write!(text, "\nunexpected output {}: {}", i + 1, render(event));
        }
        problems.push(text);
    }
    Ok(problems)
}

fn render(event: &Event) -> String {
    let mut out = Vec::new();
    LineEncoding::Json.encode(event, &mut out);
    String::from_utf8_lossy(&out).trim_end().to_owned()
}

fn check_event(want: &Expected, got: &Event, found: &mut Vec<String>) -> anyhow::Result<()> {
    let log = match (got, &want.metric) {
        (Event::Metric(metric), Some(expected)) => {
            check_metric(expected, metric, found);
            if !want.fields.is_empty() || want.condition.is_some() {
                anyhow::bail!("`fields` and `condition` check log events, not metrics");
            }
            return Ok(());
        }
        (Event::Metric(metric), None) => {
            found.push(format!(
                "expected a log event, got the metric {}",
                metric.name
            ));
            return Ok(());
        }
        (Event::Log(_), Some(expected)) => {
            found.push(format!(
                "expected the metric {}, got a log event",
                expected.name
            ));
            return Ok(());
        }
        (Event::Log(log), None) => log,
    };
    for (name, value) in &want.fields {
        match log.lookup(name) {
            None => found.push(format!(
                "field {name:?}: expected {value}, but it is missing"
            )),
            Some(actual) if !same(actual, value) => found.push(format!(
                "field {name:?}: expected {value}, got {}",
                serde_json::to_string(actual).unwrap_or_default()
            )),
            Some(_) => {}
        }
    }
    if let Some(condition) = &want.condition {
        if !condition.build().context("condition")?.matches(log) {
            found.push(format!("condition {} does not hold", condition.0));
        }
    }
    if let Some(time) = &want.timestamp {
        let expected = parse_time(time).context("timestamp")?;
        if expected != log.timestamp {
            found.push(format!(
                "timestamp: expected {}, got {}",
                expected.to_rfc3339(),
                log.timestamp.to_rfc3339()
            ));
        }
    }
    Ok(())
}

fn check_metric(want: &ExpectedMetric, got: &crate::event::Metric, found: &mut Vec<String>) {
    if want.name != got.name {
        found.push(format!(
            "metric name: expected {}, got {}",
            want.name, got.name
        ));
    }
    for (name, value) in &want.labels {
        match got.labels.iter().find(|(k, _)| k == name) {
            None => found.push(format!(
                "label {name:?}: expected {value:?}, but it is missing"
            )),
            Some((_, actual)) if actual != value => found.push(format!(
                "label {name:?}: expected {value:?}, got {actual:?}"
            )),
            Some(_) => {}
        }
    }
    let (value, count, sum) = match &got.value {
        MetricValue::Counter(v) | MetricValue::Gauge(v) => (Some(*v), None, None),
        MetricValue::Histogram { sum, count, .. } => (None, Some(*count), Some(*sum)),
    };
    let mut compare = |what: &str, want: Option<f64>, got: Option<f64>| match (want, got) {
        (None, _) => {}
        (Some(w), Some(g)) if (w - g).abs() <= 1e-9 * w.abs().max(1.0) => {}
        (Some(w), Some(g)) => found.push(format!("{what}: expected {w}, got {g}")),
        (Some(_), None) => found.push(format!("{what}: this metric has none")),
    };
    compare("value", want.value, value);
    compare(
        "count",
        want.count.map(|c| c as f64),
        count.map(|c| c as f64),
    );
    compare("sum", want.sum, sum);
}

/// Typed equality: numbers equal numbers (`1` and `1.0` alike), text equals text.
fn same(actual: &Value, expected: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (actual, expected) {
        (Value::Null, J::Null) => true,
        (Value::Bool(a), J::Bool(b)) => a == b,
        (Value::Int(a), J::Number(n)) => match n.as_i64() {
            Some(b) => *a == b,
            None => n.as_f64() == Some(*a as f64),
        },
        (Value::Float(a), J::Number(n)) => n.as_f64() == Some(*a),
        (Value::String(a), J::String(b)) => a == b,
        (Value::Array(a), J::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (Value::Map(a), J::Object(b)) => {
            a.len() == b.len()
                && b.iter()
                    .all(|(key, y)| a.get(key.as_str()).is_some_and(|x| same(x, y)))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"data_dir: /tmp/x
pipelines:
  web:
    sources: [ { type: demo } ]
    transforms:
      - name: parse
        type: parse_regex
        pattern: '^(?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d+)$'
        types: { status: int }
      - name: errors_only
        type: filter
        condition: { field: status, gte: 500 }
      - name: count
        type: log_to_metric
        metrics: [ { type: counter, name: errors_total, labels: [status] } ]
    sinks: [ { type: blackhole } ]
tests:
  - name: passes
    inputs: [ "GET /a 503", "GET /b 200", { message: "PUT /c 500", fields: { host: h } } ]
    outputs:
      - fields: { method: GET, path: /a, status: 503 }
        condition: { field: path, matches: "^/a" }
      - fields: { host: h, status: 500 }
      - metric: { name: errors_total, labels: { status: "500" }, value: 1 }
      - metric: { name: errors_total, labels: { status: "503" }, value: 1 }
  - name: part of the chain, nothing out
    insert_at: errors_only
    extract_from: errors_only
    inputs: [ { message: x, fields: { status: 200 } } ]
    outputs: []
  - name: fails
    extract_from: parse
    inputs: [ "GET /a 503", "GET /b 200" ]
    outputs:
      - fields: { status: "503", missing: 1 }
        timestamp: "2024-05-01T10:00:00Z"
"#;

    fn report(config: &str) -> (Summary, String) {
        let config = crate::config::parse(config, "t.yaml").unwrap();
        let mut out = Vec::new();
        let summary = run(&config, "t.yaml", &config.tests, &mut out).unwrap();
        (summary, String::from_utf8(out).unwrap())
    }

    #[test]
    fn runs_tests_and_reports_every_difference() {
        let (summary, text) = report(CONFIG);
        assert_eq!(
            summary,
            Summary {
                passed: 2,
                failed: 1
            },
            "{text}"
        );
        assert!(text.contains("test passes ... ok"), "{text}");
        assert!(text.contains("test fails ... FAILED"), "{text}");
        for part in [
            r#"output 1 of 2: field "missing": expected 1, but it is missing; field "status": expected "503", got 503; timestamp: expected 2024-05-01T10:00:00Z, got"#,
            r#"actual: {"#,
            "expected 1 events out, got 2",
            r#"unexpected output 2: {"#,
            "test result: FAILED. 2 passed; 1 failed",
        ] {
            assert!(text.contains(part), "{part:?} missing from:\n{text}");
        }
    }

    #[test]
    fn test_mistakes_are_reported_per_test() {
        let config = CONFIG.replace("extract_from: parse", "extract_from: nope");
        let (summary, text) = report(&config);
        assert_eq!(summary.failed, 1);
        assert!(
            text.contains(r#"cannot run: extract_from: no transform "nope" in pipeline "web" (transforms: parse, errors_only, count)"#),
            "{text}"
        );
        // Unknown keys are config errors, located.
        let config = CONFIG.replace("    insert_at: errors_only", "    insrt_at: errors_only");
        let error = crate::config::parse(&config, "t.yaml").unwrap_err();
        assert!(format!("{error}").contains("tests[1].insrt_at"), "{error}");
    }
}
