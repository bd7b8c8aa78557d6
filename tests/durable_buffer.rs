//! Durable, isolated delivery through the agent binary (issue 18): per-sink disk buffers.
//!
//! - Isolation: a file source into a fake Loki and a fake Elasticsearch, both with disk
//!   buffers; Elasticsearch answers 503 for a 12 s outage (shorter than the issue's five
//!   minutes, to keep the suite quick) while seq-numbered lines are written. Loki receives
//!   every line during the outage; after it, Elasticsearch receives every line; 0 lost.
//! - Syslog (cannot be read again) over TCP and UDP into Loki with a disk buffer, Loki down:
//!   the agent is killed with `kill -9` (or stopped with SIGTERM, or reloaded) once every
//!   message is in the buffer, started again, Loki comes back: every message is delivered.
//! - Torn writes: `kill -9` while the buffer is being appended to, 25 times: the agent always
//!   starts again, never delivers a damaged event, and loses no line.
//! - `when_full: drop_newest`: a full buffer drops for its sink only; the other sink gets
//!   every line, and what the full sink stored plus its counted drops is every line.
//! - `when_full: block`: a TCP syslog sender into a full 1 MiB buffer (Loki down) is pushed
//!   back (its socket takes nothing for seconds, `/health` fails); when Loki returns it goes
//!   on, and every message arrives exactly once.
//! - `sluice buffer inspect` on a deliberately corrupted segment names the offset and the
//!   records lost.
//! - A sink renamed by a reload leaves its buffer: the agent names it in a warning, and the
//!   name given back delivers every message.
//! - Damage the start-up check does not see (an older segment) is found by the reader: the
//!   events it cannot deliver leave `sluice_buffer_events` and are counted as dropped.

mod support;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use support::fake_elasticsearch::FakeElasticsearch;
use support::fake_loki::{seq_of, Behavior, FakeLoki};
use support::{append, free_port, wait_for, Agent};

const WAIT: Duration = Duration::from_secs(90);

fn seqs_in_loki(loki: &FakeLoki) -> BTreeSet<u64> {
    loki.entries()
        .iter()
        .filter_map(|e| seq_of(&e.line))
        .collect()
}

fn missing(seen: &BTreeSet<u64>, n: u64) -> Vec<u64> {
    (0..n).filter(|s| !seen.contains(s)).take(10).collect()
}

/// A fake Loki answering 503 until told otherwise.
fn loki_down() -> FakeLoki {
    FakeLoki::start_down()
}

fn line(seq: u64) -> String {
    format!("seq={seq:07} isolation test line, padded to look like a log line of a service\n")
}

#[test]
fn a_sink_that_is_down_does_not_stall_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let loki = FakeLoki::start();
    let es = FakeElasticsearch::start_lean();
    es.set_down(true);
    let config = format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}", stall_after_secs: 2 }}
pipelines:
  p:
    sources:
      - type: file
        include: ["{logs}/*.log"]
        glob_interval_ms: 100
    sinks:
      - name: loki
        type: loki
        endpoint: {loki}
        labels: {{ job: t }}
        batch: {{ timeout_ms: 100 }}
        buffer: {{ type: disk, max_bytes: 67108864 }}
      - name: es
        type: elasticsearch
        endpoint: {es}
        batch: {{ timeout_ms: 100 }}
        retry: {{ initial_backoff_ms: 50, max_backoff_ms: 500 }}
        buffer: {{ type: disk, max_bytes: 67108864 }}
"#,
        data = dir.path().join("data").display(),
        logs = logs.display(),
        loki = loki.endpoint(),
        es = es.endpoint(),
    );
    let agent = Agent::start(dir.path(), &config);
    // 12 s of outage at 1,000 lines per second; Loki must keep up throughout.
    let log = logs.join("app.log");
    let per_step = 100u64;
    let started = Instant::now();
    let mut written = 0;
    while started.elapsed() < Duration::from_secs(12) {
        let text: String = (written..written + per_step).map(line).collect();
        append(&log, &text);
        written += per_step;
        std::thread::sleep(Duration::from_millis(100));
        // Loki is never far behind (with the old behaviour it stopped after a few batches).
        if written % 2000 == 0 {
            let behind = written - 2000;
            wait_for(
                "loki to keep up during the outage",
                Duration::from_secs(20),
                || seqs_in_loki(&loki).range(..behind).count() as u64 == behind,
            );
        }
    }
    wait_for("loki to receive every line during the outage", WAIT, || {
        seqs_in_loki(&loki).len() as u64 == written
    });
    assert_eq!(
        es.doc_count(),
        0,
        "elasticsearch is down: nothing stored yet"
    );
    let buffered = agent.metric_sum("sluice_buffer_events", &[("component", "es")]);
    assert!(
        buffered > 0.0,
        "the outage is held in es's buffer: {buffered}"
    );
    // `/health` names the stalled sink and what waits for it on disk, not only the couple
    // of batches in its queue; Loki is not named.
    let (status, health) = agent.get("/health").expect("health answers");
    assert_eq!(status, 503, "{health}");
    assert!(
        health.contains("p/sink/es") && health.contains("events in its disk buffer"),
        "{health}"
    );
    assert!(!health.contains("p/sink/loki"), "{health}");
    es.set_down(false);
    wait_for(
        "elasticsearch to receive every line after the outage",
        WAIT,
        || es.doc_count() as u64 >= written,
    );
    let docs: BTreeSet<u64> = es
        .docs()
        .iter()
        .filter_map(|d| seq_of(&d.message))
        .collect();
    assert_eq!(
        missing(&docs, written),
        Vec::<u64>::new(),
        "lost in elasticsearch"
    );
    assert_eq!(
        missing(&seqs_in_loki(&loki), written),
        Vec::<u64>::new(),
        "lost in loki"
    );
    assert!(loki.errors().is_empty() && es.errors().is_empty());
    wait_for("the buffers to empty", WAIT, || {
        agent.metric_sum("sluice_buffer_events", &[]) == 0.0
    });
    assert!(agent.terminate().success());
}

/// Syslog into Loki with a disk buffer; `loki_up` is false while Loki answers 503.
fn syslog_config(dir: &Path, tcp: u16, udp: u16, loki: &FakeLoki, extra_label: &str) -> String {
    format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
shutdown_timeout_secs: 3
pipelines:
  devices:
    sources:
      - name: tcp
        type: syslog
        mode: tcp
        address: 127.0.0.1:{tcp}
      - name: udp
        type: syslog
        mode: udp
        address: 127.0.0.1:{udp}
    sinks:
      - name: loki
        type: loki
        endpoint: {loki}
        labels: {{ job: syslog{extra_label} }}
        batch: {{ timeout_ms: 100 }}
        retry: {{ initial_backoff_ms: 50, max_backoff_ms: 300 }}
        buffer: {{ type: disk, max_bytes: 16777216 }}
"#,
        data = dir.join("data").display(),
        loki = loki.endpoint(),
    )
}

fn send_syslog(tcp: u16, udp: u16, from: u64, n: u64) {
    let mut stream = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for seq in from..from + n {
        let message = format!("<134>1 2024-05-01T10:00:00Z dev app - - - seq={seq:07} reading\n");
        if seq % 2 == 0 {
            stream.write_all(message.as_bytes()).unwrap();
        } else {
            socket
                .send_to(message.trim_end().as_bytes(), ("127.0.0.1", udp))
                .unwrap();
            // Within the socket buffer: a few hundred datagrams per second.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    stream.flush().unwrap();
}

#[derive(Clone, Copy, Debug)]
enum Interruption {
    Kill9,
    Sigterm,
    Reload,
}

/// A stop (SIGTERM or a reload's) that finds Loki down must not wait for it: the disk
/// buffer keeps what was not delivered, so the stop takes far less than this deadline.
const LONG_DEADLINE: &str = "shutdown_timeout_secs: 120";

/// How long a stop may take with Loki down and [`LONG_DEADLINE`].
const QUICK_STOP: Duration = Duration::from_secs(15);

fn syslog_survives(interruption: Interruption) {
    let dir = tempfile::tempdir().unwrap();
    let loki = loki_down();
    let (tcp, udp) = (free_port(), free_port());
    let config = |label: &str| {
        syslog_config(dir.path(), tcp, udp, &loki, label)
            .replace("shutdown_timeout_secs: 3", LONG_DEADLINE)
    };
    // Before the SIGTERM the sink waits up to 30 s between tries: the stop must cut that
    // wait short too. The agent started afterwards retries quickly again.
    let first = match interruption {
        Interruption::Sigterm => config("").replace(
            "initial_backoff_ms: 50, max_backoff_ms: 300",
            "initial_backoff_ms: 30000, max_backoff_ms: 30000",
        ),
        _ => config(""),
    };
    let agent = Agent::start(dir.path(), &first);
    let n = 400;
    send_syslog(tcp, udp, 0, n);
    // Accepted = written to the buffer: wait until every message is there.
    wait_for("every message in the disk buffer", WAIT, || {
        agent.metric_sum("sluice_buffer_events", &[("component", "loki")]) as u64 == n
    });
    let agent = match interruption {
        Interruption::Kill9 => {
            agent.kill9();
            Agent::start_file(
                &agent_config(dir.path()),
                api_of(dir.path()),
                std::process::Stdio::null(),
            )
        }
        Interruption::Sigterm => {
            let path = agent_config(dir.path());
            let api = agent.api;
            std::fs::write(&path, config("").replace("{api}", &api.to_string())).unwrap();
            let stopping = Instant::now();
            assert!(agent.terminate().success());
            let took = stopping.elapsed();
            assert!(
                took < QUICK_STOP,
                "SIGTERM with Loki down took {took:?}: the sink kept retrying instead of leaving its events in the disk buffer"
            );
            Agent::start_file(&path, api, std::process::Stdio::null())
        }
        Interruption::Reload => {
            // A changed sink: the pipeline is stopped and started again on the same buffer.
            std::fs::write(
                &agent.config,
                config("2").replace("{api}", &agent.api.to_string()),
            )
            .unwrap();
            let reloading = Instant::now();
            let (status, body) =
                support::http_request(agent.api, "POST", "/reload", "").expect("reload answers");
            assert_eq!(status, 200, "{body}");
            let took = reloading.elapsed();
            assert!(
                took < QUICK_STOP,
                "a reload with Loki down took {took:?}: the old sink kept retrying instead of leaving its events in the disk buffer"
            );
            agent
        }
    };
    loki.behave_for(Behavior::Accept, Duration::ZERO);
    wait_for("loki to receive every message", WAIT, || {
        seqs_in_loki(&loki).len() as u64 == n
    });
    assert_eq!(
        missing(&seqs_in_loki(&loki), n),
        Vec::<u64>::new(),
        "{interruption:?}"
    );
    drop(agent);
}

/// A sink renamed by a reload leaves its buffer behind: the agent names it (with what it
/// holds) instead of leaving it silently unread, and giving the sink its name back delivers
/// every message.
#[test]
fn a_buffer_left_by_a_renamed_sink_is_named_and_delivered_when_the_name_returns() {
    let dir = tempfile::tempdir().unwrap();
    let loki = loki_down();
    let (tcp, udp) = (free_port(), free_port());
    let api: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = agent_config(dir.path());
    let named = |sink: &str| {
        syslog_config(dir.path(), tcp, udp, &loki, "")
            .replace("name: loki\n", &format!("name: {sink}\n"))
            .replace("{api}", &api.to_string())
    };
    std::fs::write(&config, named("loki")).unwrap();
    let mut child = std::process::Command::new(support::binary())
        .args(["run", "-c"])
        .arg(&config)
        .env("SLUICE_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (log, stderr) = (log.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in
                std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok)
            {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        })
    };
    wait_for("the agent's API", WAIT, || {
        support::http_get(api, "/health").is_some()
    });
    let warning = "disk buffer holds events no sink of this config reads";
    let n = 40;
    send_syslog(tcp, udp, 0, n);
    wait_for("every message in the disk buffer", WAIT, || {
        let body = support::http_get(api, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        body.lines().any(|l| {
            l.starts_with("sluice_buffer_events{")
                && l.contains("component=\"loki\"")
                && l.ends_with(&format!(" {n}"))
        })
    });
    assert!(
        !log.lock().unwrap().contains(warning),
        "no warning while the sink reads its buffer"
    );

    let reload = || {
        let (status, body) =
            support::http_request(api, "POST", "/reload", "").expect("reload answers");
        assert_eq!(status, 200, "{body}");
    };
    std::fs::write(&config, named("loki_renamed")).unwrap();
    reload();
    let stranded = dir.path().join("data/buffers/devices/loki");
    wait_for("the warning naming the left buffer", WAIT, || {
        let log = log.lock().unwrap();
        log.lines()
            .any(|l| l.contains(warning) && l.contains(&stranded.display().to_string()))
    });
    loki.behave_for(Behavior::Accept, Duration::ZERO);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        seqs_in_loki(&loki).is_empty(),
        "nothing reads the left buffer"
    );

    let warnings = || log.lock().unwrap().matches(warning).count();
    let before = warnings();
    std::fs::write(&config, named("loki")).unwrap();
    reload();
    wait_for("loki to receive every message", WAIT, || {
        seqs_in_loki(&loki).len() as u64 == n
    });
    assert_eq!(missing(&seqs_in_loki(&loki), n), Vec::<u64>::new());
    // The renamed sink's own buffer never held anything: no new warning.
    assert_eq!(warnings(), before, "{}", log.lock().unwrap());
    support::signal(&child, "TERM");
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
}

fn agent_config(dir: &Path) -> std::path::PathBuf {
    dir.join("sluice.yaml")
}

/// The API address written into the config by `Agent::start`.
fn api_of(dir: &Path) -> std::net::SocketAddr {
    let text = std::fs::read_to_string(agent_config(dir)).unwrap();
    let start = text.find("address: \"").unwrap() + 10;
    text[start..start + text[start..].find('"').unwrap()]
        .parse()
        .unwrap()
}

#[test]
fn syslog_in_the_buffer_survives_kill_9() {
    syslog_survives(Interruption::Kill9);
}

#[test]
fn syslog_in_the_buffer_survives_sigterm() {
    syslog_survives(Interruption::Sigterm);
}

#[test]
fn syslog_in_the_buffer_survives_a_reload() {
    syslog_survives(Interruption::Reload);
}

#[test]
fn torn_writes_never_deliver_damaged_events_or_lose_lines() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let loki = FakeLoki::start();
    let api = free_port();
    let config = format!(
        r#"data_dir: {data}
api: {{ address: "127.0.0.1:{api}" }}
pipelines:
  p:
    sources:
      - type: file
        include: ["{logs}/*.log"]
        glob_interval_ms: 50
    sinks:
      - name: loki
        type: loki
        endpoint: {loki}
        labels: {{ job: t }}
        batch: {{ timeout_ms: 50, max_events: 200 }}
        buffer: {{ type: disk, max_bytes: 33554432, sync_interval_ms: 50 }}
"#,
        data = dir.path().join("data").display(),
        logs = logs.display(),
        loki = loki.endpoint(),
    );
    let path = dir.path().join("sluice.yaml");
    std::fs::write(&path, config).unwrap();
    let api: std::net::SocketAddr = format!("127.0.0.1:{api}").parse().unwrap();
    let log = logs.join("app.log");
    let mut written = 0u64;
    for round in 0..25u64 {
        // Loki is slow half the time, so the buffer holds a backlog while it is appended to.
        if round % 2 == 0 {
            loki.behave_for(
                Behavior::Hang(Duration::from_millis(300)),
                Duration::from_millis(400),
            );
        }
        let agent = Agent::start_file(&path, api, std::process::Stdio::null());
        let text: String = (written..written + 2000).map(line).collect();
        append(&log, &text);
        written += 2000;
        std::thread::sleep(Duration::from_millis(150 + fastrand::u64(0..250)));
        agent.kill9();
    }
    loki.behave_for(Behavior::Accept, Duration::ZERO);
    let agent = Agent::start_file(&path, api, std::process::Stdio::null());
    // (Counting first: collecting the set copies every entry, and there are many replays.)
    wait_for("every line after 25 kills", WAIT, || {
        loki.entry_count() as u64 >= written && seqs_in_loki(&loki).len() as u64 == written
    });
    for entry in loki.entries() {
        let seq = seq_of(&entry.line).expect("a whole line");
        assert_eq!(
            format!("{}\n", entry.line),
            line(seq),
            "a damaged event was delivered"
        );
    }
    assert_eq!(missing(&seqs_in_loki(&loki), written), Vec::<u64>::new());
    assert!(agent.terminate().success());
}

#[test]
fn inspect_names_the_corruption_offset_and_the_records_lost() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let loki = FakeLoki::start();
    loki.behave_for(
        Behavior::Status {
            code: 503,
            retry_after: None,
            body: String::new(),
        },
        Duration::from_secs(3600),
    );
    let config = format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
shutdown_timeout_secs: 1
pipelines:
  p:
    sources:
      - type: file
        include: ["{logs}/*.log"]
        glob_interval_ms: 50
    sinks:
      - name: loki
        type: loki
        endpoint: {loki}
        batch: {{ timeout_ms: 50 }}
        buffer: {{ type: disk }}
"#,
        data = dir.path().join("data").display(),
        logs = logs.display(),
        loki = loki.endpoint(),
    );
    let agent = Agent::start(dir.path(), &config);
    for chunk in 0..5u64 {
        append(
            &logs.join("a.log"),
            &(chunk * 100..chunk * 100 + 100)
                .map(line)
                .collect::<String>(),
        );
        let want = (chunk + 1) * 100;
        wait_for("lines in the buffer", WAIT, || {
            agent.metric_sum("sluice_buffer_events", &[]) as u64 == want
        });
    }
    assert!(agent.terminate().success());
    let buffer = dir.path().join("data/buffers/p/loki");
    let segment = std::fs::read_dir(&buffer)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let clean = inspect(&buffer);
    assert!(
        clean.contains("500 events (500 not acknowledged)"),
        "{clean}"
    );
    assert!(clean.contains("0 damaged segments"), "{clean}");
    // Damage the third record's payload: it and every record after it are lost.
    let mut offset = 16usize;
    for _ in 0..2 {
        offset += 8 + u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
    }
    bytes[offset + 30] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();
    let report = inspect(&buffer);
    assert!(
        report.contains(&format!("corrupt record at offset {offset}")),
        "{report}"
    );
    assert!(
        report.contains(", 2 records, "),
        "two good records before it: {report}"
    );
    assert!(report.contains("records lost: "), "{report}");
}

/// A file source on `logs/*.log` into a Loki sink with `buffer` (a disk one), the fake
/// Loki answering 503 until told otherwise: the directory, the logs directory, the fake
/// and the config.
fn down_loki_with_a_disk_buffer(
    buffer: &str,
) -> (tempfile::TempDir, std::path::PathBuf, FakeLoki, String) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let loki = FakeLoki::start();
    let down = Behavior::Status {
        code: 503,
        retry_after: None,
        body: String::new(),
    };
    loki.behave_for(down, Duration::from_secs(3600));
    let config = format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
shutdown_timeout_secs: 1
pipelines:
  p:
    sources:
      - type: file
        include: ["{logs}/*.log"]
        glob_interval_ms: 50
    sinks:
      - name: loki
        type: loki
        endpoint: {loki}
        batch: {{ timeout_ms: 50 }}
        retry: {{ initial_backoff_ms: 50, max_backoff_ms: 200 }}
        buffer: {buffer}
"#,
        data = dir.path().join("data").display(),
        logs = logs.display(),
        loki = loki.endpoint(),
    );
    (dir, logs, loki, config)
}

/// Damage in a segment that start-up only walks by its headers (not the newest one) is found
/// by the reader: the events it cannot deliver leave `sluice_buffer_events` and are counted
/// as dropped, so the gauge returns to 0 once the rest is delivered.
#[test]
fn buffer_events_counts_only_what_can_be_delivered_after_damage() {
    let (dir, logs, loki, config) = down_loki_with_a_disk_buffer("{ type: disk }");
    let agent = Agent::start(dir.path(), &config);
    for chunk in 0..5u64 {
        append(
            &logs.join("a.log"),
            &(chunk * 100..chunk * 100 + 100)
                .map(line)
                .collect::<String>(),
        );
        let want = (chunk + 1) * 100;
        wait_for("lines in the buffer", WAIT, || {
            agent.metric_sum("sluice_buffer_events", &[]) as u64 == want
        });
    }
    let api = agent.api;
    assert!(agent.terminate().success());
    // A second run starts a new, empty segment: the one holding the lines is no longer the
    // newest, so the next start does not check its CRCs.
    let agent = Agent::start_file(&agent_config(dir.path()), api, std::process::Stdio::null());
    wait_for("the buffer reopened", WAIT, || {
        agent.metric_sum("sluice_buffer_events", &[]) as u64 == 500
    });
    assert!(agent.terminate().success());
    let buffer = dir.path().join("data/buffers/p/loki");
    let segment = std::fs::read_dir(&buffer)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    // Damage the third record's payload: it and every record after it are lost.
    let mut offset = 16usize;
    let mut kept = 0u64;
    for _ in 0..2 {
        kept += u64::from(u32::from_le_bytes(
            bytes[offset + 9..offset + 13].try_into().unwrap(),
        ));
        offset += 8 + u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
    }
    bytes[offset + 30] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();
    let agent = Agent::start_file(&agent_config(dir.path()), api, std::process::Stdio::null());
    // Loki still down: the gauge holds what can still be delivered, not the 500 written.
    wait_for(
        "the gauge to count the records before the damage",
        Duration::from_secs(10),
        || agent.metric_sum("sluice_buffer_events", &[]) as u64 == kept,
    );
    loki.behave_for(Behavior::Accept, Duration::ZERO);
    wait_for("the records before the damage delivered", WAIT, || {
        loki.entry_count() as u64 >= kept
    });
    wait_for(
        "the buffer gauge to reach 0",
        Duration::from_secs(10),
        || agent.metric_sum("sluice_buffer_events", &[]) == 0.0,
    );
    let lost = agent.metric_sum(
        "sluice_events_dropped_total",
        &[("component", "loki"), ("reason", "buffer_corrupt")],
    ) as u64;
    assert_eq!(
        loki.entry_count() as u64,
        kept,
        "only the records before the damage"
    );
    assert_eq!(
        kept + lost,
        500,
        "delivered plus counted as lost is every line"
    );
    assert!(agent.terminate().success());
}

fn inspect(dir: &Path) -> String {
    let out = std::process::Command::new(support::binary())
        .args(["buffer", "inspect"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn drop_newest_drops_for_the_full_sink_only_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let loki = FakeLoki::start();
    let es = FakeElasticsearch::start_lean();
    es.set_down(true);
    let config = format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  p:
    sources:
      - type: file
        include: ["{logs}/*.log"]
        glob_interval_ms: 50
    sinks:
      - name: loki
        type: loki
        endpoint: {loki}
        batch: {{ timeout_ms: 100 }}
      - name: es
        type: elasticsearch
        endpoint: {es}
        batch: {{ timeout_ms: 100 }}
        retry: {{ initial_backoff_ms: 50, max_backoff_ms: 300 }}
        buffer: {{ type: disk, max_bytes: 1048576, when_full: drop_newest }}
"#,
        data = dir.path().join("data").display(),
        logs = logs.display(),
        loki = loki.endpoint(),
        es = es.endpoint(),
    );
    let agent = Agent::start_logged(dir.path(), &config);
    // About 3 MB of events: three times what es's buffer may hold.
    let written = 30_000u64;
    for chunk in 0..30 {
        append(
            &logs.join("app.log"),
            &(chunk * 1000..chunk * 1000 + 1000)
                .map(line)
                .collect::<String>(),
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for(
        "loki to receive every line though es's buffer is full",
        WAIT,
        || loki.entry_count() as u64 >= written && seqs_in_loki(&loki).len() as u64 == written,
    );
    let dropped = |agent: &Agent| {
        agent.metric_sum(
            "sluice_events_dropped_total",
            &[("component", "es"), ("reason", "buffer_full")],
        )
    };
    assert!(dropped(&agent) > 0.0, "es's full buffer dropped the newest");
    // Said in the log too (at the first drop, then at most every 10 s), naming the sink.
    let log = agent.log();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("drop_newest"))
        .collect();
    assert!(!lines.is_empty() && lines.len() <= 3, "{log}");
    assert!(lines[0].contains("/es"), "{}", lines[0]);
    es.set_down(false);
    wait_for("es to receive what its buffer held", WAIT, || {
        agent.metric_sum("sluice_buffer_events", &[("component", "es")]) == 0.0
            && es.doc_count() > 0
    });
    let stored: BTreeSet<u64> = es
        .docs()
        .iter()
        .filter_map(|d| seq_of(&d.message))
        .collect();
    assert_eq!(
        stored.len() as u64 + dropped(&agent) as u64,
        written,
        "every line is either in es or counted as dropped for es"
    );
    assert!(agent.terminate().success());
}

#[test]
fn block_pushes_tcp_senders_back_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let loki = loki_down();
    let tcp = free_port();
    let config = format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  devices:
    sources:
      - name: tcp
        type: syslog
        mode: tcp
        address: 127.0.0.1:{tcp}
    sinks:
      - name: loki
        type: loki
        endpoint: {loki}
        labels: {{ job: syslog }}
        batch: {{ timeout_ms: 100 }}
        retry: {{ initial_backoff_ms: 50, max_backoff_ms: 300 }}
        buffer: {{ type: disk, max_bytes: 1048576, when_full: block }}
"#,
        data = dir.path().join("data").display(),
        loki = loki.endpoint(),
    );
    let agent = Agent::start(dir.path(), &config);
    // About 20 MB of messages: twenty times what the buffer may hold, more than the
    // socket buffers and the pipeline's queues together.
    let n = 200_000u64;
    let bytes: Vec<u8> = (0..n)
        .flat_map(|seq| {
            format!("<134>1 2024-05-01T10:00:00Z dev app - - - seq={seq:07} a reading of a device, padded to look like a log line\n")
                .into_bytes()
        })
        .collect();
    let mut stream = TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Writes until the socket takes nothing for 3 s (pushed back) or everything is sent.
    let mut sent = 0usize;
    let write_until_stalled = |stream: &mut TcpStream, sent: &mut usize| {
        let mut last_progress = Instant::now();
        while *sent < bytes.len() && last_progress.elapsed() < Duration::from_secs(3) {
            match std::io::Write::write(stream, &bytes[*sent..]) {
                Ok(0) => panic!("the agent closed the connection"),
                Ok(k) => {
                    *sent += k;
                    last_progress = Instant::now();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("write: {e}"),
            }
        }
    };
    write_until_stalled(&mut stream, &mut sent);
    assert!(
        sent < bytes.len(),
        "the sender was never pushed back: all {} bytes accepted with Loki down",
        bytes.len()
    );
    let stalled_at = sent;
    // Pushed back because the buffer is full: its bytes are at the limit, /health says so.
    let buffered = agent.metric_sum("sluice_buffer_bytes", &[("component", "loki")]);
    assert!(
        buffered >= 1_048_576.0 * 0.8,
        "the sender stalled at {stalled_at} bytes but the buffer holds only {buffered} bytes"
    );
    let (status, health) = agent.get("/health").expect("health answers");
    assert_eq!(
        status, 503,
        "a full buffer with when_full: block fails health: {health}"
    );
    // Still stalled a moment later: nothing is being read and thrown away.
    write_until_stalled(&mut stream, &mut sent);
    assert!(
        sent - stalled_at < 1 << 20,
        "the agent kept reading while its buffer was full: {} more bytes",
        sent - stalled_at
    );
    eprintln!(
        "pushed back after {stalled_at} of {} bytes; buffer {buffered} bytes",
        bytes.len()
    );
    // Loki comes back: the sender goes on and every message arrives once.
    loki.behave_for(Behavior::Accept, Duration::ZERO);
    let deadline = Instant::now() + WAIT;
    while sent < bytes.len() {
        assert!(
            Instant::now() < deadline,
            "the sender is still stalled after Loki came back"
        );
        write_until_stalled(&mut stream, &mut sent);
    }
    stream.flush().unwrap();
    wait_for("loki to receive every message", WAIT, || {
        loki.entry_count() as u64 >= n && seqs_in_loki(&loki).len() as u64 == n
    });
    assert_eq!(missing(&seqs_in_loki(&loki), n), Vec::<u64>::new(), "lost");
    assert_eq!(
        loki.entry_count() as u64,
        n,
        "duplicated: no request was accepted in part, so none may be sent twice"
    );
    assert!(loki.errors().is_empty(), "{:?}", loki.errors());
    drop(stream);
    assert!(agent.terminate().success());
}

/// Damage in the middle of one segment costs that segment's rest, counted; the segments
/// after it are delivered whole (the reader once skipped the next one, uncounted).
#[test]
fn damage_in_one_segment_spares_the_next() {
    let (dir, logs, loki, config) =
        down_loki_with_a_disk_buffer("{ type: disk, max_bytes: 1048576 }");
    let agent = Agent::start(dir.path(), &config);
    let total = 10_000u64;
    for chunk in 0..10u64 {
        append(
            &logs.join("a.log"),
            &(chunk * 1000..chunk * 1000 + 1000)
                .map(line)
                .collect::<String>(),
        );
        let want = (chunk + 1) * 1000;
        wait_for("lines in the buffer", WAIT, || {
            agent.metric_sum("sluice_buffer_events", &[]) as u64 == want
        });
    }
    let api = agent.api;
    assert!(agent.terminate().success());
    let buffer = dir.path().join("data/buffers/p/loki");
    let mut segments: Vec<_> = std::fs::read_dir(&buffer)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 3, "{segments:?}");
    let damaged = &segments[1];
    let mut bytes = std::fs::read(damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 8].fill(0xff);
    std::fs::write(damaged, bytes).unwrap();
    loki.behave_for(Behavior::Accept, Duration::ZERO);
    let agent = Agent::start_file(&agent_config(dir.path()), api, std::process::Stdio::null());
    let lost = || {
        agent.metric_sum(
            "sluice_events_dropped_total",
            &[("component", "loki"), ("reason", "buffer_corrupt")],
        ) as u64
    };
    wait_for("every line delivered or counted lost", WAIT, || {
        seqs_in_loki(&loki).len() as u64 + lost() >= total
    });
    let seen = seqs_in_loki(&loki);
    assert!(lost() > 0, "the damage is counted");
    assert_eq!(seen.len() as u64 + lost(), total);
    // What is missing is one stretch: the damaged segment's rest, up to the next segment.
    let missing = missing(&seen, total);
    let stretch = missing.last().unwrap() - missing.first().unwrap() + 1;
    assert_eq!(stretch, missing.len() as u64, "{missing:?}");
    assert!(seen.contains(&(total - 1)));
    wait_for(
        "the buffer gauge to reach 0",
        Duration::from_secs(10),
        || agent.metric_sum("sluice_buffer_events", &[]) == 0.0,
    );
    assert!(agent.terminate().success());
}

/// A segment cut short after a clean stop (by hand, or a disk that lost writes) loses
/// data that was fsynced and acknowledged to its source: not a torn write. The buffer
/// records how far it was fsynced, so the next start logs the loss at ERROR and counts
/// its bytes in `sluice_buffer_lost_bytes_total`, once (before, only a torn tail's WARN).
#[test]
fn a_segment_cut_after_a_clean_stop_is_counted_lost_once() {
    let (dir, logs, _loki, config) = down_loki_with_a_disk_buffer("{ type: disk }");
    let agent = Agent::start(dir.path(), &config);
    append(&logs.join("a.log"), &(0..500).map(line).collect::<String>());
    wait_for("lines in the buffer", WAIT, || {
        agent.metric_sum("sluice_buffer_events", &[]) as u64 == 500
    });
    assert!(agent.terminate().success());
    let buffer = dir.path().join("data/buffers/p/loki");
    let segment = std::fs::read_dir(&buffer)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let len = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let lost_bytes = |agent: &Agent| agent.metric_sum("sluice_buffer_lost_bytes_total", &[]);
    let agent = Agent::start_logged(dir.path(), &config);
    wait_for("the buffer reopened", WAIT, || {
        agent.metrics().contains("sluice_buffer_lost_bytes_total{")
    });
    let lost = lost_bytes(&agent);
    // The cut and the rest of the record it fell in (the 16-byte header stays).
    assert!(
        lost >= (len - len / 2) as f64 && lost <= (len - 16) as f64,
        "{lost} bytes counted lost of {} cut from {len}",
        len - len / 2
    );
    assert!(
        agent
            .log()
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("fsynced before the last stop is missing")),
        "{}",
        agent.log()
    );
    assert!(agent.terminate().success());
    // The next start does not count it again.
    let agent = Agent::start(dir.path(), &config);
    wait_for("the buffer reopened", WAIT, || {
        agent.metrics().contains("sluice_buffer_lost_bytes_total{")
    });
    assert_eq!(lost_bytes(&agent), 0.0);
    assert!(agent.terminate().success());
}
