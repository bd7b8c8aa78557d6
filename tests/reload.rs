//! End-to-end tests of config reload through the binary: `SIGHUP` with a config that adds a
//! sink (the new sink starts receiving, the old one loses and repeats nothing across the
//! reload), and a config that does not build (refused on `SIGHUP` and on `POST /reload`,
//! logged at ERROR, the running pipeline keeps going).

mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{http_get, http_request, read_json_lines, signal, wait_for, Agent};

/// A config: a numbered demo source at `rate`/s (stopping after `count` events when set) into
/// a file sink per entry of `sinks`.
fn config(dir: &Path, api: SocketAddr, rate: u64, count: Option<u64>, sinks: &[&str]) -> String {
    let count = count.map_or(String::new(), |n| format!("        count: {n}\n"));
    let sinks: String = sinks
        .iter()
        .map(|name| {
            format!(
                "      - type: file\n        path: {}\n",
                dir.join(name).display()
            )
        })
        .collect();
    format!(
        "data_dir: {data}\napi: {{ address: \"{api}\" }}\nshutdown_timeout_secs: 20\npipelines:\n  main:\n    sources:\n      - type: demo\n        rate: {rate}\n{count}    sinks:\n{sinks}",
        data = dir.join("data").display(),
    )
}

/// Starts the agent on `dir/sluice.yaml` with its log (stderr) captured in `dir/agent.log`.
fn start(dir: &Path, text: &str, api: SocketAddr) -> Agent {
    let path = dir.join("sluice.yaml");
    std::fs::write(&path, text).unwrap();
    let log = File::create(dir.join("agent.log")).unwrap();
    let child = Command::new(support::binary())
        .args(["run", "-c"])
        .arg(&path)
        .env("SLUICE_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start sluice");
    let mut agent = Agent {
        child,
        api,
        config: path,
    };
    wait_for("the agent's API", Duration::from_secs(30), || {
        if let Ok(Some(status)) = agent.child.try_wait() {
            panic!("agent exited early: {status}");
        }
        http_get(api, "/health").is_some()
    });
    agent
}

fn api_address() -> SocketAddr {
    format!("127.0.0.1:{}", support::free_port())
        .parse()
        .unwrap()
}

/// Number of complete lines in a file (missing file: 0).
fn line_count(path: &Path) -> usize {
    std::fs::read(path)
        .map(|bytes| bytes.iter().filter(|b| **b == b'\n').count())
        .unwrap_or(0)
}

/// How many times each sequence number reached a sink's file.
fn seq_counts(path: &Path) -> BTreeMap<u64, u32> {
    let mut counts = BTreeMap::new();
    for line in read_json_lines(path) {
        let seq = line["seq"].as_u64().expect("every demo event has a seq");
        *counts.entry(seq).or_insert(0) += 1;
    }
    counts
}

/// Checks that `counts` holds every number of `range` exactly once and nothing else.
fn check_exactly_once(what: &str, counts: &BTreeMap<u64, u32>, range: std::ops::Range<u64>) {
    let missing: Vec<u64> = range
        .clone()
        .filter(|n| !counts.contains_key(n))
        .take(10)
        .collect();
    assert!(missing.is_empty(), "{what}: seq missing, e.g. {missing:?}");
    let repeated: Vec<(u64, u32)> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(seq, n)| (*seq, *n))
        .take(10)
        .collect();
    assert!(
        repeated.is_empty(),
        "{what}: seq duplicated, e.g. {repeated:?}"
    );
    let outside: Vec<u64> = counts
        .keys()
        .filter(|n| !range.contains(n))
        .copied()
        .take(10)
        .collect();
    assert!(
        outside.is_empty(),
        "{what}: seq outside {range:?}: {outside:?}"
    );
}

fn log_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
}

#[test]
fn sighup_adds_a_sink_without_losing_or_repeating_events() {
    const COUNT: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let api = api_address();
    let sink_a: PathBuf = dir.path().join("a.jsonl");
    let sink_b: PathBuf = dir.path().join("b.jsonl");
    let mut agent = start(
        dir.path(),
        &config(dir.path(), api, 2000, Some(COUNT), &["a.jsonl"]),
        api,
    );
    wait_for("sink A receiving", Duration::from_secs(30), || {
        line_count(&sink_a) >= 2000
    });
    assert_eq!(line_count(&sink_b), 0, "B is not configured yet");

    std::fs::write(
        &agent.config,
        config(dir.path(), api, 2000, Some(COUNT), &["a.jsonl", "b.jsonl"]),
    )
    .unwrap();
    signal(&agent.child, "HUP");
    wait_for(
        "sink B receiving after SIGHUP",
        Duration::from_secs(30),
        || line_count(&sink_b) > 0,
    );
    assert!(
        (line_count(&sink_a) as u64) < COUNT,
        "the reload happened while events were still flowing"
    );

    let status = agent.wait(Duration::from_secs(120));
    assert!(
        status.success(),
        "agent exits 0 once the source ends: {status}"
    );
    check_exactly_once("sink A", &seq_counts(&sink_a), 0..COUNT);
    // B gets everything from the first event after the reload to the end, once each.
    let at_b = seq_counts(&sink_b);
    let first_at_b = *at_b.keys().next().expect("B received events");
    assert!(
        first_at_b > 0,
        "B only sees events generated after the reload"
    );
    check_exactly_once("sink B", &at_b, first_at_b..COUNT);
    assert!(
        log_text(dir.path()).contains("reloading the config"),
        "the reload is logged"
    );
}

#[test]
fn broken_config_is_refused_and_the_running_pipeline_keeps_going() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_address();
    let sink_a = dir.path().join("a.jsonl");
    let good = config(dir.path(), api, 2000, None, &["a.jsonl"]);
    let agent = start(dir.path(), &good, api);
    wait_for("sink A receiving", Duration::from_secs(30), || {
        line_count(&sink_a) > 0
    });

    // Cases: (broken config, text the POST /reload error must contain).
    let cases = [
        (good.replace("rate: 2000", "rate: fast"), "rate"),
        (good.replace("type: file", "type: nosuch"), "nosuch"),
        ("data_dir: [unclosed\n".to_owned(), "sluice.yaml"),
    ];
    for (n_case, (broken, expected)) in cases.iter().enumerate() {
        std::fs::write(&agent.config, broken).unwrap();

        // SIGHUP: refused and logged at ERROR; events keep arriving.
        let refusals_before = count_refusals(dir.path());
        signal(&agent.child, "HUP");
        wait_for(
            "the SIGHUP refusal in the log",
            Duration::from_secs(30),
            || count_refusals(dir.path()) > refusals_before,
        );
        let seen = line_count(&sink_a);
        wait_for(
            "events after a refused SIGHUP",
            Duration::from_secs(30),
            || line_count(&sink_a) > seen,
        );

        // POST /reload: 400 with the error; events keep arriving.
        let (status, body) =
            http_request(api, "POST", "/reload", "").expect("the API answers /reload");
        assert_eq!(status, 400, "case {n_case}: broken config refused: {body}");
        assert!(
            body.contains(expected),
            "case {n_case}: the error names {expected:?}: {body}"
        );
        let seen = line_count(&sink_a);
        wait_for(
            "events after a refused POST",
            Duration::from_secs(30),
            || line_count(&sink_a) > seen,
        );
        let (health, _) = http_get(api, "/health").expect("health answers");
        assert_eq!(health, 200, "case {n_case}: still healthy after a refusal");
    }

    // Putting the good config back is accepted.
    std::fs::write(&agent.config, &good).unwrap();
    let (status, body) = http_request(api, "POST", "/reload", "").expect("the API answers");
    assert_eq!(status, 200, "a good config reloads: {body}");
    let seen = line_count(&sink_a);
    wait_for(
        "events after a good reload",
        Duration::from_secs(30),
        || line_count(&sink_a) > seen,
    );
    let status = agent.terminate();
    assert!(status.success(), "clean exit after reloads: {status}");
    let counts = seq_counts(&sink_a);
    let last = *counts.keys().next_back().expect("events at A");
    check_exactly_once("sink A", &counts, 0..last + 1);
}

/// ERROR lines that refuse a reload in the agent's log.
fn count_refusals(dir: &Path) -> usize {
    log_text(dir)
        .lines()
        .filter(|line| line.contains("ERROR") && line.contains("reload refused"))
        .count()
}
