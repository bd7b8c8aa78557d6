//! End-to-end tests of config reload through the binary: `SIGHUP` with a config that adds a
//! sink (the new sink starts receiving, the old one loses and repeats nothing across the
//! reload), and a config that does not build (refused on `SIGHUP` and on `POST /reload`,
//! logged at ERROR, the running pipeline keeps going); a reload during a sink outage that
//! leaves an unchanged syslog pipeline's port open; and a reload whose new pipeline fails
//! to start, which leaves the old pipeline delivering.

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

/// Connects to `address` every 100 ms (sending one syslog line each time) until `stop`;
/// returns (connections made, connections refused).
fn probe_syslog(
    address: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(u64, u64)> {
    use std::io::Write as _;
    std::thread::spawn(move || {
        let (mut made, mut refused) = (0, 0);
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            match std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)) {
                Ok(mut stream) => {
                    let _ = writeln!(stream, "<13>Nov 26 10:00:00 host probe: probe {made}");
                    made += 1;
                }
                Err(_) => refused += 1,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (made, refused)
    })
}

/// Two pipelines: `logs` (syslog TCP on `syslog` into `logs.jsonl`) and `other` (a demo
/// source at `rate`/s into Loki at `loki`, which refuses connections: a sink outage).
fn two_pipelines(
    dir: &Path,
    api: SocketAddr,
    syslog: SocketAddr,
    loki: SocketAddr,
    rate: u64,
) -> String {
    format!(
        r#"data_dir: {data}
api: {{ address: "{api}" }}
shutdown_timeout_secs: 3
pipelines:
  logs:
    sources:
      - {{ type: syslog, mode: tcp, address: "{syslog}" }}
    sinks:
      - type: file
        path: {out}
  other:
    sources:
      - type: demo
        rate: {rate}
    sinks:
      - type: loki
        endpoint: http://{loki}
        labels: {{ job: demo }}
        batch: {{ timeout_ms: 100 }}
        retry: {{ initial_backoff_ms: 20, max_backoff_ms: 200 }}
"#,
        data = dir.join("data").display(),
        out = dir.join("logs.jsonl").display(),
    )
}

#[test]
fn reload_during_a_sink_outage_keeps_an_unchanged_syslog_port_open() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_address();
    let syslog = api_address();
    let loki = api_address(); // nothing listens: every push is refused
    let agent = start(
        dir.path(),
        &two_pipelines(dir.path(), api, syslog, loki, 100),
        api,
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = probe_syslog(syslog, stop.clone());
    wait_for("syslog lines delivered", Duration::from_secs(30), || {
        line_count(&dir.path().join("logs.jsonl")) >= 3
    });

    // Change only `other`: it restarts, and its sink cannot drain (Loki is down), so its
    // stop takes the whole shutdown deadline; `logs` must stay open all along.
    std::fs::write(
        &agent.config,
        two_pipelines(dir.path(), api, syslog, loki, 200),
    )
    .unwrap();
    let (status, body) = http_request(api, "POST", "/reload", "").expect("the API answers");
    assert_eq!(status, 200, "the reload succeeds: {body}");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (made, refused) = probe.join().expect("probe thread");
    assert_eq!(
        refused, 0,
        "syslog connections refused during the reload ({made} made)"
    );
    wait_for(
        "every probe line delivered",
        Duration::from_secs(30),
        || line_count(&dir.path().join("logs.jsonl")) as u64 >= made,
    );
    let log = strip_ansi(&log_text(dir.path()));
    assert!(
        log.contains("pipeline stopped pipeline=other"),
        "the changed pipeline was restarted:\n{log}"
    );
    assert!(
        log.contains(
            "re-read their undelivered data from their checkpoints on the reloaded pipeline"
        ),
        "the stop during the outage says the demo source re-reads its data:\n{log}"
    );
    assert!(
        !log.contains("pipeline stopped pipeline=logs"),
        "the unchanged pipeline was not stopped:\n{log}"
    );
    assert!(
        agent.metric_sum("sluice_batches_abandoned_total", &[]) > 0.0,
        "the batches the aborted Loki sink held are counted as abandoned"
    );
    let status = agent.terminate();
    assert!(status.success(), "clean exit: {status}");
}

#[test]
fn a_reload_whose_new_pipeline_fails_to_start_leaves_the_old_one_delivering() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_address();
    let sink_a = dir.path().join("a.jsonl");
    let good = config(dir.path(), api, 2000, None, &["a.jsonl"]);
    let agent = start(dir.path(), &good, api);
    wait_for("sink A receiving", Duration::from_secs(30), || {
        line_count(&sink_a) > 0
    });

    // The new config builds, but its syslog source cannot bind: the test holds the port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap();
    let failing = good.replace(
        "    sinks:\n",
        &format!("      - {{ type: syslog, mode: tcp, address: \"{port}\" }}\n    sinks:\n"),
    );
    assert_ne!(failing, good);
    std::fs::write(&agent.config, &failing).unwrap();
    let (status, body) = http_request(api, "POST", "/reload", "").expect("the API answers");
    assert_eq!(
        status, 400,
        "a reload that fails to start is an error: {body}"
    );
    assert!(
        body.contains("syslog"),
        "the error names the source: {body}"
    );
    let seen = line_count(&sink_a);
    wait_for(
        "events from the old pipeline after the failed reload",
        Duration::from_secs(30),
        || line_count(&sink_a) > seen + 100,
    );
    let (health, body) = http_get(api, "/health").expect("health answers");
    assert_eq!(health, 200, "healthy after a failed reload: {body}");
    assert!(
        log_text(dir.path()).contains("reload failed"),
        "the failed reload is logged"
    );
    drop(taken);
    let status = agent.terminate();
    assert!(
        status.success(),
        "clean exit after a failed reload: {status}"
    );
    let counts = seq_counts(&sink_a);
    let last = *counts.keys().next_back().expect("events at A");
    check_exactly_once("sink A", &counts, 0..last + 1);
}

/// The log without its colour escapes (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A reload that restarts a pipeline while its only sink is down (memory buffer) loses
/// the events of sources that cannot read them again (syslog): the README says so, and
/// now the loss is counted, `sluice_events_dropped_total{reason="undelivered_at_stop"}`,
/// not only named in an ERROR line.
#[test]
fn syslog_events_lost_at_a_reload_with_the_sink_down_are_counted() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let (api, syslog) = (api_address(), api_address());
    // Nothing listens there: every request is refused.
    let dead = api_address();
    let text = |max_events: u32| {
        format!(
            r#"data_dir: {data}
api: {{ address: "{api}" }}
shutdown_timeout_secs: 1
pipelines:
  p:
    sources:
      - {{ type: syslog, mode: tcp, address: "{syslog}" }}
    sinks:
      - type: loki
        endpoint: http://{dead}
        batch: {{ timeout_ms: 100, max_events: {max_events} }}
        retry: {{ initial_backoff_ms: 20, max_backoff_ms: 200 }}
"#,
            data = dir.path().join("data").display(),
        )
    };
    let agent = start(dir.path(), &text(500), api);
    let mut sender = std::net::TcpStream::connect(syslog).unwrap();
    for i in 0..40 {
        writeln!(
            sender,
            "<13>1 2026-11-29T00:00:00Z host app - - - message {i}"
        )
        .unwrap();
    }
    sender.flush().unwrap();
    let metric = |name: &str, labels: &[(&str, &str)]| agent.metric_sum(name, labels);
    wait_for("40 messages read", Duration::from_secs(30), || {
        metric(
            "sluice_events_received_total",
            &[("component_kind", "source")],
        ) == 40.0
    });
    std::fs::write(&agent.config, text(600)).unwrap();
    let (status, body) = http_request(api, "POST", "/reload", "").unwrap();
    assert_eq!(status, 200, "{body}");
    let lost = &[("pipeline", "p"), ("reason", "undelivered_at_stop")];
    wait_for("the 40 counted as lost", Duration::from_secs(30), || {
        metric("sluice_events_dropped_total", lost) == 40.0
    });
    // Nothing that cannot be read again was abandoned: no file position waits for them.
    assert_eq!(metric("sluice_batches_abandoned_total", &[]), 0.0);
    assert!(agent.terminate().success());
}

/// `sluice reload` (for hosts and images without a shell or curl: `kubectl exec` runs the
/// agent's own binary) asks the agent named by `-c` or `--api`: exit 0 when applied, exit 1
/// with the agent's reason when the new config is refused (the pipeline keeps going), and
/// exit 1 naming the address when no agent listens there.
#[test]
fn the_reload_command_applies_or_reports_the_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let api = api_address();
    let (sink_a, sink_b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let agent = start(
        dir.path(),
        &config(dir.path(), api, 500, None, &["a.jsonl"]),
        api,
    );
    let reload = |args: &[&str]| {
        let output = Command::new(support::binary())
            .arg("reload")
            .args(args)
            .env_remove("SLUICE_API_ADDRESS")
            .env_remove("SLUICE_API_TOKEN")
            .output()
            .expect("run sluice reload");
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.code(), text)
    };
    let config_arg = agent.config.to_str().unwrap().to_owned();

    // A config with a second sink: applied, and B starts receiving.
    std::fs::write(
        &agent.config,
        config(dir.path(), api, 500, None, &["a.jsonl", "b.jsonl"]),
    )
    .unwrap();
    let (code, text) = reload(&["-c", &config_arg]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("reloaded"), "{text}");
    wait_for("sink B receiving", Duration::from_secs(30), || {
        line_count(&sink_b) > 0
    });

    // A broken config: refused with the reason, exit 1; A keeps receiving.
    let good = std::fs::read_to_string(&agent.config).unwrap();
    std::fs::write(&agent.config, good.replace("rate: 500", "rate: fast")).unwrap();
    let (code, text) = reload(&["--api", &api.to_string()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("reload refused") && text.contains("rate"),
        "{text}"
    );
    let seen = line_count(&sink_a);
    wait_for("events after the refusal", Duration::from_secs(30), || {
        line_count(&sink_a) > seen
    });
    std::fs::write(&agent.config, &good).unwrap();
    assert!(agent.terminate().success());

    // Nothing listens: exit 1 naming the address.
    let (code, text) = reload(&["--api", &api.to_string()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("cannot reach the agent's API") && text.contains(&api.to_string()),
        "{text}"
    );
}

/// A reload that restarts a syslog pipeline hands its listening sockets to the new one:
/// while TCP clients connect every 100 ms and UDP datagrams arrive every 5 ms through five
/// such reloads, no connection is refused and every message is delivered once (before,
/// each restart closed the port for a moment: connections refused, datagrams lost).
#[test]
fn a_restarted_syslog_pipeline_keeps_its_ports_open_through_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let (api, tcp) = (api_address(), api_address());
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_address = udp.local_addr().unwrap();
    drop(udp);
    let out = dir.path().join("logs.jsonl");
    let text = |max_connections: u32| {
        format!(
            r#"data_dir: {data}
api: {{ address: "{api}" }}
pipelines:
  logs:
    sources:
      - {{ type: syslog, mode: tcp, address: "{tcp}", max_connections: {max_connections} }}
      - {{ type: syslog, mode: udp, address: "{udp_address}" }}
    sinks:
      - type: file
        path: {out}
"#,
            data = dir.path().join("data").display(),
            out = out.display(),
        )
    };
    let agent = start(dir.path(), &text(1000), api);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = probe_syslog(tcp, stop.clone());
    let datagrams = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut sent = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let message = format!("<13>Nov 26 10:00:00 host udp: seq={sent}");
                socket.send_to(message.as_bytes(), udp_address).unwrap();
                sent += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            sent
        })
    };
    for round in 1..=5u32 {
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(&agent.config, text(1000 + round)).unwrap();
        let (status, body) = http_request(api, "POST", "/reload", "").expect("the API answers");
        assert_eq!(status, 200, "reload {round}: {body}");
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (made, refused) = probe.join().unwrap();
    let sent = datagrams.join().unwrap();
    assert_eq!(
        refused, 0,
        "connections refused during the reloads ({made} made)"
    );
    wait_for("every message delivered", Duration::from_secs(30), || {
        line_count(&out) as u64 >= made + sent
    });
    let mut udp_seqs = BTreeMap::new();
    for line in read_json_lines(&out) {
        let message = line["message"].as_str().unwrap_or_default();
        if let Some(seq) = message.strip_prefix("seq=") {
            *udp_seqs.entry(seq.parse::<u64>().unwrap()).or_insert(0) += 1;
        }
    }
    check_exactly_once("udp datagrams", &udp_seqs, 0..sent);
    assert_eq!(line_count(&out) as u64, made + sent, "nothing twice");
    let log = strip_ansi(&log_text(dir.path()));
    assert_eq!(
        log.matches("pipeline stopped pipeline=logs").count(),
        5,
        "each reload restarted the pipeline:\n{log}"
    );
    assert!(agent.terminate().success());
}
