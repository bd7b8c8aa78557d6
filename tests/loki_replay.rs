//! End-to-end, through the binary, against a fake Loki that answers as the real one does:
//! a 400 that refuses some entries of a push (and stores the others) dead-letters exactly
//! the refused ones; lines replayed after `kill -9` carry the times of their first delivery,
//! so Loki's exact-duplicate handling drops the copies.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use support::fake_loki::{seq_of, FakeLoki, Limits};
use support::{wait_for, Agent};

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A file source (`extra_source` added to it) into Loki, `transforms` between.
fn file_to_loki(dir: &Path, log: &Path, loki: &FakeLoki, transforms: &str) -> String {
    format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  p:
    sources:
      - type: file
        include: ["{log}"]
{transforms}    sinks:
      - type: loki
        endpoint: {endpoint}
        labels: {{ job: file }}
        batch: {{ timeout_ms: 100 }}
        retry: {{ initial_backoff_ms: 20, max_backoff_ms: 500 }}
"#,
        data = dir.join("data").display(),
        log = log.display(),
        endpoint = loki.endpoint(),
    )
}

/// A batch with too-old, too-new and over-long lines: Loki keeps the rest; the delivered
/// count, the dead-letter file and `sluice_events_dropped_total{reason}` each match exactly
/// what the fake kept and refused.
#[test]
fn loki_400_dead_letters_only_the_entries_loki_refused() {
    const LINES: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let loki = FakeLoki::start_validating(Limits {
        reject_old_samples_max_age: Duration::from_secs(24 * 3600),
        creation_grace_period: Duration::from_secs(600),
        max_line_size: 300,
    });
    let now = now_ns();
    let day = 86_400 * 1_000_000_000i64;
    let mut expected: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    let text: String = (0..LINES)
        .map(|seq| {
            let (ts, pad) = match seq % 50 {
                7 => (now - 2 * day + seq as i64, 0),
                23 => (now + 2 * day + seq as i64, 0),
                41 => (now + seq as i64, 480),
                _ => (now + seq as i64, 0),
            };
            let kind = match seq % 50 {
                7 => "too_old",
                23 => "too_new",
                41 => "line_too_long",
                _ => "kept",
            };
            expected.entry(kind).or_default().insert(seq);
            format!("t={ts} seq={seq} {}\n", "x".repeat(pad))
        })
        .collect();
    let log = dir.path().join("app.log");
    std::fs::write(&log, text).unwrap();
    let transforms = r#"    transforms:
      - type: parse_regex
        pattern: '^t=(?P<t>\d+) '
      - type: parse_timestamp
        field: t
        formats: [unix_ns]
"#;
    let yaml = file_to_loki(dir.path(), &log, &loki, transforms);
    let agent = Agent::start(dir.path(), &yaml);
    wait_for(
        "every line kept or refused",
        Duration::from_secs(60),
        || (loki.entry_count() + loki.refused().len()) as u64 >= LINES,
    );
    let sink = [("component_kind", "sink")];
    wait_for("the sink's counts", Duration::from_secs(30), || {
        let sent = agent.metric_sum("sluice_events_sent_total", &sink);
        let dropped = agent.metric_sum("sluice_events_dropped_total", &sink);
        sent + dropped >= LINES as f64
    });
    assert!(loki.errors().is_empty(), "{:?}", loki.errors());
    assert!(
        loki.requests().iter().any(|r| r.status == 400),
        "the fake refused something"
    );

    // What the fake kept and refused is what the test meant it to.
    let kept: BTreeSet<u64> = loki
        .entries()
        .iter()
        .filter_map(|e| seq_of(&e.line))
        .collect();
    assert_eq!(kept, expected["kept"], "kept by the fake");
    let mut refused_by_kind: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    for refused in loki.refused() {
        let kind = if refused.message.contains("too old") {
            "too_old"
        } else if refused.message.contains("too new") {
            "too_new"
        } else {
            "line_too_long"
        };
        refused_by_kind
            .entry(kind)
            .or_default()
            .insert(seq_of(&refused.entry.line).unwrap());
    }
    for kind in ["too_old", "too_new", "line_too_long"] {
        assert_eq!(refused_by_kind[kind], expected[kind], "refused {kind}");
    }

    // Delivered = kept; dropped{reason} = refused of that kind.
    let sent = agent.metric_sum("sluice_events_sent_total", &sink);
    assert_eq!(sent as usize, kept.len(), "delivered count");
    for kind in ["too_old", "too_new", "line_too_long"] {
        let dropped = agent.metric_sum(
            "sluice_events_dropped_total",
            &[("component_kind", "sink"), ("reason", kind)],
        );
        assert_eq!(dropped as usize, expected[kind].len(), "dropped {kind}");
    }
    let total_dropped = agent.metric_sum("sluice_events_dropped_total", &sink);
    assert_eq!(total_dropped as u64, LINES - kept.len() as u64);

    // The dead-letter file holds exactly the refused lines, each with Loki's reason.
    let dead = support::read_json_lines(&dir.path().join("data/dead_letter.jsonl"));
    let mut dead_by_kind: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for record in &dead {
        let reason = record["reason"].as_str().unwrap();
        let kind = reason.split(':').next().unwrap().to_owned();
        assert!(reason.contains(": 400 "), "Loki's words kept: {reason}");
        let seq = seq_of(record["event"]["message"].as_str().unwrap()).unwrap();
        assert!(
            dead_by_kind.entry(kind).or_default().insert(seq),
            "dead-lettered twice: {seq}"
        );
    }
    assert_eq!(dead.len() as u64, LINES - kept.len() as u64);
    for kind in ["too_old", "too_new", "line_too_long"] {
        assert_eq!(dead_by_kind[kind], expected[kind], "dead letters {kind}");
    }
    assert!(agent.terminate().success());
}

/// `kill -9` five times while a large file goes to Loki: every line arrives, and every
/// line sent again carries the time of its first delivery (so Loki drops the copy).
#[test]
fn lines_replayed_after_kill9_keep_their_first_times() {
    const LINES: u64 = 500_000;
    let dir = tempfile::tempdir().unwrap();
    let loki = FakeLoki::start();
    let log = dir.path().join("app.log");
    let text: String = (0..LINES)
        .map(|seq| format!("line seq={seq} {}\n", "y".repeat(60)))
        .collect();
    std::fs::write(&log, text).unwrap();
    let yaml = file_to_loki(dir.path(), &log, &loki, "");
    let mut replays = 0;
    for kill in 1..=5u64 {
        let agent = Agent::start(dir.path(), &yaml);
        let target = (LINES * kill / 6) as usize;
        wait_for("progress before the kill", Duration::from_secs(60), || {
            loki.entry_count() >= target
        });
        agent.kill9();
        replays += 1;
    }
    let agent = Agent::start(dir.path(), &yaml);
    wait_for("every line", Duration::from_secs(60), || {
        let unique: BTreeSet<String> = loki.entries().into_iter().map(|e| e.line).collect();
        unique.len() as u64 >= LINES
    });
    let received = loki.entry_count() as u64;
    let exact = loki.exact_duplicates() as u64;
    assert_eq!(
        loki.retimed_duplicates(),
        0,
        "lines sent again with another time ({replays} kills, {exact} exact duplicates)"
    );
    assert_eq!(
        received - exact,
        LINES,
        "each line once after dropping exact duplicates"
    );
    eprintln!("{replays} kills: {exact} lines re-sent, all with their first times");
    assert!(agent.terminate().success());
}
