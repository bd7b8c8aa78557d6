//! Issue 16, end to end through the binary against the fake Elasticsearch: per-item retries
//! back off across follow-up requests (growing to `max_backoff_ms`, honouring
//! `Retry-After`), `retry.max_duration_secs` dead-letters the items still failing while the
//! rest is delivered, and a sink whose every request is rejected fails `/health` with the
//! server's reason.

mod support;

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::fake_elasticsearch::{Behavior, FakeElasticsearch, ItemFault};
use support::{wait_for, Agent};

fn write_lines(path: &Path, from: u64, count: u64) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for seq in from..from + count {
        writeln!(file, "seq={seq:07} GET /x").unwrap();
    }
}

fn seq_of(message: &str) -> Option<u64> {
    message.strip_prefix("seq=")?.get(..7)?.parse().ok()
}

fn config(dir: &Path, endpoint: &str, sink: &str) -> String {
    format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  p:
    sources:
      - type: file
        include: ["{input}"]
    sinks:
      - type: elasticsearch
        endpoint: {endpoint}
        index: logs
        batch: {{ timeout_ms: 100 }}
        request: {{ timeout_ms: 5000 }}
{sink}"#,
        data = dir.join("data").display(),
        input = dir.join("in.log").display(),
    )
}

/// Gaps between consecutive requests, from the second request on (the first is the batch).
fn gaps(es: &FakeElasticsearch) -> Vec<Duration> {
    let arrivals = es.arrivals();
    arrivals.windows(2).map(|w| w[1] - w[0]).collect()
}

/// The item with seq 5 is answered 429 for ever.
fn reject_seq_5_forever(es: &FakeElasticsearch) {
    es.set_rule(Arc::new(|doc, _| {
        (seq_of(doc["message"].as_str()?)? == 5).then_some(ItemFault::Reject429)
    }));
}

#[test]
fn item_answered_429_forever_backs_off_up_to_max_backoff() {
    let dir = tempfile::tempdir().unwrap();
    write_lines(&dir.path().join("in.log"), 0, 200);
    let es = FakeElasticsearch::start();
    reject_seq_5_forever(&es);
    let sink = "        retry: { initial_backoff_ms: 40, max_backoff_ms: 400 }\n";
    let agent = Agent::start(dir.path(), &config(dir.path(), &es.endpoint(), sink));
    wait_for("12 requests", Duration::from_secs(30), || {
        es.requests() >= 12
    });
    wait_for("the other lines", Duration::from_secs(5), || {
        es.doc_count() == 199
    });
    let gaps = gaps(&es);
    // Attempts 0..3 have ceilings 40, 80, 160, 320 ms; from then on 400 ms. Full jitter
    // draws each gap in [0, ceiling]: the mean of the capped ones is about 200 ms. Before
    // the fix every follow-up restarted at attempt 0 (every gap ≤ 40 ms + a round trip).
    let late = &gaps[4..11];
    let mean = late.iter().sum::<Duration>() / late.len() as u32;
    assert!(
        mean >= Duration::from_millis(100),
        "follow-up gaps do not grow: {gaps:?}"
    );
    assert!(
        gaps.iter().all(|g| *g <= Duration::from_millis(400 + 400)),
        "a gap exceeds max_backoff_ms: {gaps:?}"
    );
    assert!(agent.terminate().success());
}

#[test]
fn retry_after_is_honoured_for_item_retries() {
    let dir = tempfile::tempdir().unwrap();
    write_lines(&dir.path().join("in.log"), 0, 20);
    let es = FakeElasticsearch::start();
    reject_seq_5_forever(&es);
    es.set_retry_after("1");
    let sink = "        retry: { initial_backoff_ms: 10, max_backoff_ms: 20 }\n";
    let agent = Agent::start(dir.path(), &config(dir.path(), &es.endpoint(), sink));
    wait_for("4 requests", Duration::from_secs(20), || es.requests() >= 4);
    let gaps = gaps(&es);
    assert!(
        gaps[..3].iter().all(|g| *g >= Duration::from_millis(950)),
        "Retry-After: 1 not honoured: {gaps:?}"
    );
    assert!(agent.terminate().success());
}

#[test]
fn max_duration_dead_letters_the_failing_item_and_delivers_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    write_lines(&dir.path().join("in.log"), 0, 200);
    let es = FakeElasticsearch::start();
    reject_seq_5_forever(&es);
    let sink =
        "        retry: { initial_backoff_ms: 50, max_backoff_ms: 200, max_duration_secs: 2 }\n";
    let agent = Agent::start(dir.path(), &config(dir.path(), &es.endpoint(), sink));
    let dead_letters = dir.path().join("data/dead_letter.jsonl");
    wait_for("the item dead-lettered", Duration::from_secs(20), || {
        !support::read_json_lines(&dead_letters).is_empty()
    });
    let letters = support::read_json_lines(&dead_letters);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        seq_of(letters[0]["event"]["message"].as_str().unwrap()),
        Some(5)
    );
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("retry_exhausted: 429 es_rejected_execution_exception"),
        "{reason}"
    );
    assert_eq!(es.doc_count(), 199);
    // The sink goes on: later lines are delivered.
    write_lines(&dir.path().join("in.log"), 200, 10);
    wait_for("later lines", Duration::from_secs(10), || {
        es.doc_count() == 209
    });
    assert_eq!(
        agent.metric_sum(
            "sluice_events_dropped_total",
            &[("reason", "retry_exhausted")]
        ),
        1.0
    );
    assert!(agent.terminate().success());
}

fn health(agent: &Agent) -> (u16, String) {
    agent.get("/health").unwrap_or((0, String::new()))
}

#[test]
fn every_item_rejected_fails_health_naming_the_reason_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    write_lines(&dir.path().join("in.log"), 0, 50);
    let es = FakeElasticsearch::start();
    es.set_rule(Arc::new(|_, _| {
        Some(ItemFault::Mapping("failed to parse field [n]".into()))
    }));
    let sink = "        unhealthy_after_secs: 1\n";
    let agent = Agent::start(dir.path(), &config(dir.path(), &es.endpoint(), sink));
    wait_for("/health 503", Duration::from_secs(10), || {
        health(&agent).0 == 503
    });
    let (_, body) = health(&agent);
    assert!(
        body.contains("every request rejected") && body.contains("mapper_parsing_exception"),
        "{body}"
    );
    // Documents accepted again: healthy again.
    es.set_rule(Arc::new(|_, _| None));
    write_lines(&dir.path().join("in.log"), 50, 10);
    wait_for("/health 200", Duration::from_secs(10), || {
        health(&agent).0 == 200
    });
    assert!(agent.terminate().success());
}

#[test]
fn every_request_answered_400_fails_health_naming_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let es = FakeElasticsearch::start();
    es.script(std::iter::repeat_n(Behavior::Status(400), 1000));
    let sink =
        "        unhealthy_after_secs: 1\n        batch: { max_events: 10, timeout_ms: 50 }\n";
    let yaml = config(dir.path(), &es.endpoint(), sink)
        .replace("        batch: { timeout_ms: 100 }\n", "");
    write_lines(&dir.path().join("in.log"), 0, 100);
    let agent = Agent::start(dir.path(), &yaml);
    wait_for("/health 503", Duration::from_secs(10), || {
        health(&agent).0 == 503
    });
    let (_, body) = health(&agent);
    assert!(
        body.contains("every request rejected") && body.contains("http_400"),
        "{body}"
    );
    assert!(agent.terminate().success());
}

/// A retried request says so at WARN the first time, then at most every 10 s with the
/// number since (the rest at DEBUG; `sluice_sink_retries_total` counts each): 20 refusals
/// in a row were 20 WARN lines.
#[test]
fn retries_are_logged_once_per_interval_and_all_counted() {
    let dir = tempfile::tempdir().unwrap();
    write_lines(&dir.path().join("in.log"), 0, 50);
    let es = FakeElasticsearch::start();
    es.script((0..20).map(|_| Behavior::Status(503)));
    let sink = "        retry: { initial_backoff_ms: 10, max_backoff_ms: 20 }\n";
    let agent = Agent::start_logged(dir.path(), &config(dir.path(), &es.endpoint(), sink));
    wait_for("every line", Duration::from_secs(30), || {
        es.doc_count() == 50
    });
    assert_eq!(
        agent.metric_sum(
            "sluice_sink_retries_total",
            &[("component", "elasticsearch")]
        ),
        20.0
    );
    let log = agent.log();
    let warned = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("request failed; retrying"))
        .count();
    assert!(
        (1..=2).contains(&warned),
        "{warned} WARN lines for 20 retries in a few seconds:\n{log}"
    );
    assert!(agent.terminate().success());
}
