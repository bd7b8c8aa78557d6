//! End-to-end tests of the agent core through the binary: config errors, demo → file
//! delivery, clean and unclean restarts (checkpoints), backpressure and `/health`,
//! `/metrics` in Prometheus text format.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{read_json_lines, wait_for, Agent};

fn validate(config: &Path) -> (bool, String) {
    let output = Command::new(support::binary())
        .args(["validate", "-c"])
        .arg(config)
        .env_remove("SLUICE_TEST_UNSET")
        .output()
        .expect("run sluice validate");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn every_example_pipeline_validates() {
    let mut checked = 0;
    for entry in std::fs::read_dir("pipelines").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let (ok, text) = validate(&path);
            assert!(ok, "{} does not validate: {text}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 1, "pipelines/ has no configs");
}

/// Each broken config must fail `validate` with a message naming the key and its line.
#[test]
fn broken_configs_name_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let head = "data_dir: /tmp/sluice-test\npipelines:\n  web:\n    sources:\n      - type: demo\n";
    let cases = [
        // (config, text the error must contain)
        (
            format!("{head}        colour: red\n    sinks:\n      - type: blackhole\n"),
            vec!["sluice.yaml:6", "colour"],
        ),
        (
            format!("{head}        rate: fast\n    sinks:\n      - type: blackhole\n"),
            vec!["sluice.yaml:6", "rate"],
        ),
        (
            format!("{head}    sinks:\n      - type: file\n        path: ${{SLUICE_TEST_UNSET}}\n"),
            vec!["sluice.yaml:8", "SLUICE_TEST_UNSET"],
        ),
        (
            format!("{head}    sinks:\n      - type: nosuch\n"),
            vec!["sluice.yaml:7", "nosuch"],
        ),
        (
            "data_dir: /tmp/x\napi:\n  address: not-an-address\npipelines: {}\n".to_owned(),
            vec!["sluice.yaml:3", "address"],
        ),
        ("data_dir: [unclosed\n".to_owned(), vec!["sluice.yaml:"]),
        (
            format!("{head}    sinks:\n      - type: loki\n        endpoint: \"not a url\"\n"),
            vec!["sluice.yaml:8", "pipelines.web.sinks[0].endpoint"],
        ),
    ];
    for (config, expected) in cases {
        let path = dir.path().join("sluice.yaml");
        std::fs::write(&path, &config).unwrap();
        let (ok, text) = validate(&path);
        assert!(!ok, "config should be refused:\n{config}");
        for needle in expected {
            assert!(
                text.contains(needle),
                "error for\n{config}\nshould mention {needle:?}, got: {text}"
            );
        }
    }
}

fn demo_config(dir: &Path, count: u64, rate: u64) -> String {
    format!(
        "data_dir: {data}\napi: {{ address: \"{{api}}\" }}\nshutdown_timeout_secs: 20\npipelines:\n  main:\n    sources:\n      - type: demo\n        rate: {rate}\n        count: {count}\n    sinks:\n      - type: file\n        path: {out}\n",
        data = dir.join("data").display(),
        out = dir.join("out.jsonl").display(),
    )
}

/// How many times each sequence number reached the sink.
fn seq_counts(path: &Path) -> BTreeMap<u64, u32> {
    seqs_of(read_json_lines(path))
}

fn seqs_of(lines: Vec<serde_json::Value>) -> BTreeMap<u64, u32> {
    let mut counts = BTreeMap::new();
    for line in lines {
        let seq = line["seq"]
            .as_u64()
            .expect("every demo event has a seq field");
        *counts.entry(seq).or_insert(0) += 1;
    }
    counts
}

fn assert_complete(counts: &BTreeMap<u64, u32>, count: u64) -> u64 {
    let missing: Vec<u64> = (0..count)
        .filter(|n| !counts.contains_key(n))
        .take(10)
        .collect();
    assert!(
        missing.is_empty(),
        "sequence numbers missing at the sink, e.g. {missing:?}"
    );
    assert!(
        counts.keys().all(|n| *n < count),
        "numbers beyond the count were generated"
    );
    counts.values().map(|n| u64::from(n - 1)).sum()
}

#[test]
fn demo_to_file_delivers_exactly_the_generated_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start(dir.path(), &demo_config(dir.path(), 50_000, 0));
    let status = agent.wait(Duration::from_secs(120));
    assert!(
        status.success(),
        "agent exits 0 after its only source ended: {status}"
    );
    let counts = seq_counts(&dir.path().join("out.jsonl"));
    assert_eq!(
        assert_complete(&counts, 50_000),
        0,
        "a clean run has no duplicates"
    );
    let lines = read_json_lines(&dir.path().join("out.jsonl"));
    let first = &lines[0];
    assert!(first["message"].as_str().unwrap().contains("seq=0"));
    assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn sigterm_mid_run_exits_zero_and_restart_resumes_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let config = demo_config(dir.path(), 20_000, 5_000);
    let out = dir.path().join("out.jsonl");
    let agent = Agent::start(dir.path(), &config);
    wait_for("some events at the sink", Duration::from_secs(60), || {
        read_json_lines(&out).len() > 2_000
    });
    let status = agent.terminate();
    assert!(status.success(), "SIGTERM exits 0: {status}");
    let delivered_first = read_json_lines(&out).len() as u64;
    assert!(delivered_first < 20_000, "stopped mid-run");
    let checkpoint: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("data/checkpoints.json")).unwrap())
            .unwrap();
    assert_eq!(checkpoint["version"], 1);
    assert_eq!(
        checkpoint["streams"]["main/demo/seq"]["offset"].as_u64(),
        Some(delivered_first),
        "a clean stop commits exactly what was delivered"
    );
    let mut agent = Agent::start(dir.path(), &config);
    assert!(agent.wait(Duration::from_secs(120)).success());
    let counts = seq_counts(&out);
    assert_eq!(
        assert_complete(&counts, 20_000),
        0,
        "clean restart: no duplicates"
    );
}

#[test]
fn kill_9_at_random_moments_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let total = 200_000;
    let config = demo_config(dir.path(), total, 40_000);
    let out = dir.path().join("out.jsonl");
    let mut rng_state = 0x5eed_u64;
    for round in 0..5 {
        let agent = Agent::start(dir.path(), &config);
        rng_state = rng_state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pause = Duration::from_millis(300 + (rng_state >> 33) % 1200);
        std::thread::sleep(pause);
        agent.kill9();
        let delivered = support::read_json_lines_after_crash(&out).len();
        eprintln!("round {round}: killed after {pause:?}, {delivered} lines at the sink");
    }
    let mut agent = Agent::start(dir.path(), &config);
    assert!(agent.wait(Duration::from_secs(180)).success());
    let text = std::fs::read_to_string(&out).unwrap();
    let torn = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        .count();
    // A kill mid-write leaves at most one torn line per kill, on its own line.
    assert!(torn <= 5, "{torn} unparsable lines after 5 kills");
    let counts = seqs_of(support::read_json_lines_after_crash(&out));
    let duplicates = assert_complete(&counts, total);
    eprintln!("kill -9 x5: {total} events, {duplicates} duplicates");
    // Duplicates come only from what was in flight at each kill: at most one checkpoint
    // interval (100 ms = 4,000 events at this rate) plus queued batches, per kill.
    assert!(
        duplicates <= 5 * 12_000,
        "too many duplicates: {duplicates}"
    );
}

/// A sink that stops answering (a FIFO nobody reads): queues fill, the source blocks,
/// memory stays bounded, `/health` names the stalled sink.
#[test]
fn stalled_sink_bounds_memory_and_fails_health() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // Hold the FIFO open for reading without ever reading, so the writer blocks once the
    // pipe buffer (64 KiB) is full.
    let holder = Command::new("sleep")
        .arg("600")
        .stdin(std::fs::File::open_options_rw(&fifo))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let config = format!(
        "data_dir: {}\napi: {{ address: \"{{api}}\", stall_after_secs: 2 }}\nshutdown_timeout_secs: 2\npipelines:\n  main:\n    sources:\n      - type: demo\n        rate: 0\n    sinks:\n      - type: file\n        path: {}\n",
        dir.path().join("data").display(),
        fifo.display()
    );
    let agent = Agent::start(dir.path(), &config);
    wait_for(
        "/health to report the stalled sink",
        Duration::from_secs(30),
        || matches!(agent.get("/health"), Some((503, body)) if body.contains("main/sink/file") && body.contains("stalled")),
    );
    let first = rss_kib(agent.child.id());
    std::thread::sleep(Duration::from_secs(2));
    let second = rss_kib(agent.child.id());
    let generated = agent.metric_sum("sluice_events_received_total", &[("component", "demo")]);
    assert!(
        second < 128 * 1024,
        "RSS {second} KiB: memory is not bounded"
    );
    assert!(
        second < first + 8 * 1024,
        "RSS still growing: {first} -> {second} KiB"
    );
    assert!(
        generated < 1_000_000.0,
        "the source was not blocked: {generated} events generated"
    );
    let status = agent.terminate();
    assert!(
        status.success(),
        "a stuck sink must not hang shutdown: {status}"
    );
    drop(holder);
}

trait OpenRw {
    fn open_options_rw(path: &Path) -> std::fs::File;
}

impl OpenRw for std::fs::File {
    fn open_options_rw(path: &Path) -> std::fs::File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap()
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn metrics_are_valid_prometheus_text_and_match_the_events() {
    let dir = tempfile::tempdir().unwrap();
    // A second, idle source keeps the agent running after the counted one ends.
    let config = demo_config(dir.path(), 12_345, 0)
        .replace("    sinks:\n", "      - type: demo\n        name: idle\n        rate: 0.001\n    sinks:\n      - type: blackhole\n");
    let agent = Agent::start(dir.path(), &config);
    wait_for("all events delivered", Duration::from_secs(60), || {
        agent.metric_sum("sluice_events_sent_total", &[("component_kind", "sink")])
            >= 2.0 * 12_345.0
    });
    let text = agent.metrics();
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is needed (apt-get install -y prometheus): see README");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool rejects /metrics: {}{}\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let sum = |name: &str, labels: &[(&str, &str)]| support::metric_sum(&text, name, labels);
    assert_eq!(
        sum(
            "sluice_events_received_total",
            &[("pipeline", "main"), ("component", "demo")]
        ),
        12_345.0
    );
    assert_eq!(
        sum(
            "sluice_events_sent_total",
            &[("pipeline", "main"), ("component", "demo")]
        ),
        12_345.0
    );
    assert_eq!(
        sum("sluice_events_sent_total", &[("component", "file")]),
        12_345.0
    );
    assert_eq!(
        sum("sluice_events_sent_total", &[("component", "blackhole")]),
        12_345.0
    );
    assert_eq!(sum("sluice_build_info", &[]), 1.0);
    assert!(text.contains("sluice_checkpoint_age_seconds"));
    assert!(text.contains("sluice_queue_batches{pipeline=\"main\",queue=\"sink:file\"}"));
    // Exported at 0 before anything goes wrong, so an alert on it has a series.
    assert!(
        text.contains("\nsluice_batches_abandoned_total 0\n"),
        "{text}"
    );
    wait_for("a checkpoint write", Duration::from_secs(10), || {
        agent.metric_sum("sluice_checkpoint_writes_total", &[("result", "ok")]) >= 1.0
    });
    assert!(agent.terminate().success());
}

#[test]
fn garbage_checkpoint_is_set_aside_and_the_agent_starts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("data/checkpoints.json"),
        b"\x7fELF garbage {{{",
    )
    .unwrap();
    let mut agent = Agent::start(dir.path(), &demo_config(dir.path(), 1_000, 0));
    assert!(agent.wait(Duration::from_secs(60)).success());
    assert_eq!(
        assert_complete(&seq_counts(&dir.path().join("out.jsonl")), 1_000),
        0
    );
    let aside = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("checkpoints.json.corrupt-")
        })
        .count();
    assert_eq!(aside, 1, "the corrupt checkpoint is kept aside");
}
