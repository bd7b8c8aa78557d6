//! End-to-end, with real components: the agent binary's `host_metrics` and
//! `prometheus_scrape` sources against Debian's `prometheus-node-exporter` (the oracle for
//! names, labels and values) and a real Prometheus (Debian's `prometheus`, with
//! `--web.enable-remote-write-receiver`) that both scrapes node_exporter itself and
//! receives what the agent remote-writes. Every comparison is a PromQL query on that one
//! Prometheus: the agent's series (`job="sluice_host"`, `job="sluice_scrape"`) against
//! Prometheus' own scrape (`job="node"`, `job="prometheus"`).
//!
//! One more test serves broken expositions from a loopback server (garbage, 50 MB, 1M
//! series, an unterminated line, NaN/Inf, duplicates) and checks `up`, the failure
//! counters and the agent's peak memory.
//!
//! Needs `/usr/bin/prometheus` and `/usr/bin/prometheus-node-exporter`
//! (`apt-get install -y prometheus prometheus-node-exporter`; the README's test command
//! installs both).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{free_port, wait_for, Agent};

const INSTALL_HINT: &str =
    "apt-get install -y prometheus prometheus-node-exporter (the README's test command does this)";

/// The collectors both sides run.
const COLLECTORS: &[&str] = &[
    "arp",
    "conntrack",
    "cpu",
    "diskstats",
    "entropy",
    "filefd",
    "filesystem",
    "hwmon",
    "loadavg",
    "meminfo",
    "netclass",
    "netdev",
    "netstat",
    "os",
    "pressure",
    "sockstat",
    "softnet",
    "stat",
    "thermal_zone",
    "time",
    "udp_queues",
    "uname",
    "vmstat",
];

/// node_exporter 1.5's upstream default (Debian's package patches it to leave out /run,
/// /mnt and /media too); both sides use this one.
const MOUNT_POINTS_EXCLUDE: &str =
    "^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";

fn find(binary: &str) -> PathBuf {
    std::env::split_paths(&std::env::var("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{binary} not found: {INSTALL_HINT}"))
}

/// A child process killed when dropped.
struct Process(Option<Child>);

impl Process {
    fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

fn node_exporter(addr: SocketAddr, dir: &Path) -> Process {
    let mut command = Command::new(find("prometheus-node-exporter"));
    command
        .arg(format!("--web.listen-address={addr}"))
        .arg("--collector.disable-defaults")
        .arg(format!(
            "--collector.filesystem.mount-points-exclude={MOUNT_POINTS_EXCLUDE}"
        ));
    for collector in COLLECTORS {
        command.arg(format!("--collector.{collector}"));
    }
    let log = std::fs::File::create(dir.join("node_exporter.log")).unwrap();
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| panic!("{INSTALL_HINT} ({e})"));
    let process = Process(Some(child));
    wait_for("node_exporter", Duration::from_secs(30), || {
        http(addr, "GET", "/metrics").is_some_and(|(status, _)| status == 200)
    });
    process
}

fn prometheus(addr: SocketAddr, dir: &Path, node: SocketAddr) -> Process {
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n\
             - job_name: node\n  static_configs: [{{targets: ['{node}']}}]\n\
             - job_name: prometheus\n  static_configs: [{{targets: ['{addr}']}}]\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(find("prometheus"))
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--web.enable-remote-write-receiver")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| panic!("{INSTALL_HINT} ({e})"));
    let process = Process(Some(child));
    wait_for("prometheus /-/ready", Duration::from_secs(60), || {
        http(addr, "GET", "/-/ready").is_some_and(|(status, _)| status == 200)
    });
    process
}

/// A minimal HTTP/1.0 exchange: (status, body).
fn http(addr: SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(stream, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((
        status,
        String::from_utf8_lossy(&response[split + 4..]).into_owned(),
    ))
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

type Labels = BTreeMap<String, String>;

/// An instant query: (labels with `__name__`, value) per series.
fn query(prometheus: SocketAddr, promql: &str) -> Vec<(Labels, f64)> {
    let path = format!("/api/v1/query?query={}", url_encode(promql));
    let Some((200, body)) = http(prometheus, "GET", &path) else {
        return Vec::new();
    };
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let labels = s["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            let value = s["value"][1].as_str().unwrap().parse().unwrap_or(f64::NAN);
            (labels, value)
        })
        .collect()
}

/// Series of `job` matching `names` (a regex), keyed without `job`/`instance`.
fn series(prometheus: SocketAddr, job: &str, names: &str) -> BTreeMap<Labels, f64> {
    query(
        prometheus,
        &format!("{{job=\"{job}\",__name__=~\"{names}\"}}"),
    )
    .into_iter()
    .map(|(mut labels, value)| {
        labels.remove("job");
        labels.remove("instance");
        (labels, value)
    })
    .collect()
}

fn name_of(labels: &Labels) -> &str {
    labels.get("__name__").map(String::as_str).unwrap_or("")
}

fn agent_config(data_dir: &Path, prometheus: SocketAddr, node: SocketAddr) -> String {
    format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  metrics:
    sources:
      - type: host_metrics
        interval_secs: 1
        filesystem_mount_points_exclude: '{MOUNT_POINTS_EXCLUDE}'
        labels: {{ job: sluice_host }}
      - type: prometheus_scrape
        name: node
        targets: ["http://{node}/metrics"]
        job: sluice_scrape
        interval_secs: 1
        timeout_secs: 1
      - type: prometheus_scrape
        name: prometheus
        targets: ["http://{prometheus}/metrics"]
        job: sluice_prometheus
        interval_secs: 1
        timeout_secs: 1
    sinks:
      - type: prometheus_remote_write
        endpoint: http://{prometheus}/api/v1/write
        expire_after_secs: 0
        batch: {{ timeout_ms: 200 }}
"#,
        data = data_dir.display()
    )
}

/// Series node_exporter has that depend on the moment or the process, not on the host.
fn volatile(name: &str) -> bool {
    name.starts_with("node_scrape_collector_") || name == "node_time_seconds"
}

const HOST_NAMES: &str = "node_.+";

#[test]
fn host_metrics_and_scrapes_agree_with_node_exporter_in_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let node_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let prometheus_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut node = node_exporter(node_addr, dir.path());
    let _prometheus = prometheus(prometheus_addr, dir.path(), node_addr);
    let data_dir = dir.path().join("data");
    let _agent = Agent::start(
        dir.path(),
        &agent_config(&data_dir, prometheus_addr, node_addr),
    );

    // rate() divides by the whole window, so a series younger than the window reads low:
    // wait until both sides' CPU series are older than the 10 s window used below (the
    // issue's 1m window would make this test last over a minute; same queries otherwise).
    wait_for(
        "both sides' series in prometheus",
        Duration::from_secs(45),
        || {
            let count = |job| {
                query(
                    prometheus_addr,
                    &format!("count_over_time(node_cpu_seconds_total{{job=\"{job}\",cpu=\"0\",mode=\"user\"}}[14s])"),
                )
            };
            ["node", "sluice_host", "sluice_scrape"]
                .iter()
                .all(|job| count(job).first().is_some_and(|(_, n)| *n >= 12.0))
        },
    );

    // 1. host_metrics: every series node_exporter has, sluice has (same name, same labels).
    let node_series = series(prometheus_addr, "node", HOST_NAMES);
    let host_series = series(prometheus_addr, "sluice_host", HOST_NAMES);
    let missing: Vec<&Labels> = node_series
        .keys()
        .filter(|labels| !volatile(name_of(labels)) && !host_series.contains_key(*labels))
        .filter(|labels| name_of(labels) != "node_exporter_build_info")
        .collect();
    assert!(
        missing.is_empty(),
        "series node_exporter has and host_metrics does not: {missing:#?}"
    );
    let names: BTreeSet<&str> = node_series.keys().map(name_of).collect();
    assert!(names.len() > 60, "node_exporter exposed only {names:?}");

    // 2. Values: static ones equal, counters within a few percent.
    for (labels, expected) in &node_series {
        let name = name_of(labels);
        let Some(got) = host_series.get(labels) else {
            continue;
        };
        if name == "node_memory_MemTotal_bytes"
            || name == "node_boot_time_seconds"
            || name == "node_filesystem_size_bytes"
            || name == "node_filesystem_files"
            || name.ends_with("_info")
            || name == "node_time_zone_offset_seconds"
        {
            assert_eq!(got, expected, "{labels:?}");
        } else if name.ends_with("_total") && *expected > 1000.0 {
            let ratio = got / expected;
            assert!(
                (0.97..1.03).contains(&ratio),
                "{labels:?}: sluice {got}, node_exporter {expected}"
            );
        }
    }

    // 3. PromQL over both: MemTotal, and the CPU rate (which sums to the number of CPUs).
    let one = |promql: &str| {
        let result = query(prometheus_addr, promql);
        assert_eq!(result.len(), 1, "{promql}: {result:?}");
        result[0].1
    };
    assert_eq!(
        one("node_memory_MemTotal_bytes{job=\"sluice_host\"}"),
        one("node_memory_MemTotal_bytes{job=\"node\"}")
    );
    let cpus = one("count(node_cpu_seconds_total{job=\"node\",mode=\"idle\"})");
    for job in ["node", "sluice_host"] {
        let rate = one(&format!(
            "sum(rate(node_cpu_seconds_total{{job=\"{job}\"}}[10s]))"
        ));
        assert!(
            (rate - cpus).abs() < 0.1 * cpus,
            "{job}: rate {rate}, cpus {cpus}"
        );
    }
    let by_mode = |job: &str| -> BTreeMap<String, f64> {
        query(
            prometheus_addr,
            &format!("sum by (mode) (rate(node_cpu_seconds_total{{job=\"{job}\"}}[10s]))"),
        )
        .into_iter()
        .map(|(labels, v)| (labels["mode"].clone(), v))
        .collect()
    };
    let (direct, agent) = (by_mode("node"), by_mode("sluice_host"));
    assert_eq!(
        direct.keys().collect::<Vec<_>>(),
        agent.keys().collect::<Vec<_>>()
    );
    for (mode, rate) in &direct {
        assert!(
            (agent[mode] - rate).abs() < 0.15 * cpus,
            "mode {mode}: sluice {} node_exporter {rate}",
            agent[mode]
        );
    }

    // 4. Scrape of node_exporter: the same series as Prometheus' own scrape.
    let scraped = series(prometheus_addr, "sluice_scrape", ".+");
    let direct = series(prometheus_addr, "node", ".+");
    let synthetic = [
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    ];
    let keys = |map: &BTreeMap<Labels, f64>| -> BTreeSet<Labels> { map.keys().cloned().collect() };
    assert_eq!(
        keys(&scraped),
        keys(&direct),
        "sluice's scrape and prometheus' differ"
    );
    for name in synthetic {
        assert!(scraped.keys().any(|l| name_of(l) == name), "{name}");
    }
    let static_names = [
        "node_memory_MemTotal_bytes",
        "node_boot_time_seconds",
        "node_filesystem_size_bytes",
        "node_uname_info",
        "up",
    ];
    for (labels, value) in &direct {
        if static_names.contains(&name_of(labels)) {
            assert_eq!(scraped.get(labels), Some(value), "{labels:?}");
        }
    }

    // 5. Scrape of Prometheus' own /metrics: the same metric names, equal build info.
    let own = series(prometheus_addr, "prometheus", "prometheus_.+");
    let via_agent = series(prometheus_addr, "sluice_prometheus", "prometheus_.+");
    let own_names: BTreeSet<&str> = own.keys().map(name_of).collect();
    let agent_names: BTreeSet<&str> = via_agent.keys().map(name_of).collect();
    let only_direct: Vec<&&str> = own_names.difference(&agent_names).collect();
    assert!(
        only_direct.is_empty(),
        "metric names missing from the agent's scrape: {only_direct:?}"
    );
    let build = |map: &BTreeMap<Labels, f64>| {
        map.keys()
            .find(|l| name_of(l) == "prometheus_build_info")
            .cloned()
    };
    assert_eq!(build(&own), build(&via_agent));

    // 6. A target that stops answering: up 0, its series go stale at once.
    node.stop();
    wait_for(
        "up == 0 for the stopped target",
        Duration::from_secs(20),
        || {
            query(prometheus_addr, "up{job=\"sluice_scrape\"}")
                .first()
                .is_some_and(|(_, v)| *v == 0.0)
        },
    );
    assert!(
        query(
            prometheus_addr,
            "node_memory_MemTotal_bytes{job=\"sluice_scrape\"}"
        )
        .is_empty(),
        "the stopped target's series are stale"
    );
    assert_eq!(
        query(
            prometheus_addr,
            "node_memory_MemTotal_bytes{job=\"sluice_host\"}"
        )
        .len(),
        1
    );
}

// ---------------------------------------------------------------------------------------
// Broken targets
// ---------------------------------------------------------------------------------------

/// A loopback HTTP server answering each path with a generated body; runs until the test
/// process ends (each connection is bounded: one request, one body).
fn broken_exporter() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
}

fn serve(mut stream: TcpStream) {
    let mut request = [0u8; 4096];
    let n = stream.read(&mut request).unwrap_or(0);
    let request = String::from_utf8_lossy(&request[..n]);
    let path = request.split(' ').nth(1).unwrap_or("/").to_owned();
    let head = |len: usize| {
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
    };
    let body: Vec<u8> = match path.as_str() {
        "/garbage" => b"\x00\x01 this is not { an exposition\n<html>".to_vec(),
        "/unterminated" => b"ok 1\nbad{a=\"b".to_vec(),
        "/nan" => b"# TYPE a gauge\na NaN\nb +Inf\nc -Inf\n".to_vec(),
        "/duplicates" => b"d{x=\"1\"} 1\nd{x=\"1\"} 2\nd{x=\"2\"} 3\n".to_vec(),
        "/huge" => {
            // 50 MB, streamed without a length.
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n",
            );
            let chunk = b"filler_metric_name_long_enough{label=\"value\"} 1\n".repeat(20_000);
            for _ in 0..(50_000_000 / chunk.len()) {
                if stream.write_all(&chunk).is_err() {
                    return;
                }
            }
            return;
        }
        "/million" => {
            let mut body = String::with_capacity(12_000_000);
            for i in 0..1_000_000 {
                body.push_str(&format!("m{{i=\"{i}\"}} 1\n"));
            }
            body.into_bytes()
        }
        _ => b"ok 1\n".to_vec(),
    };
    let _ = stream.write_all(head(body.len()).as_bytes());
    let _ = stream.write_all(&body);
}

fn read_events(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn broken_targets_are_counted_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    // One server per target, so each target has its own `instance`.
    let paths = [
        "/garbage",
        "/unterminated",
        "/nan",
        "/duplicates",
        "/huge",
        "/million",
    ];
    let instances: BTreeMap<&str, String> = paths
        .iter()
        .map(|path| (*path, broken_exporter().to_string()))
        .collect();
    let target = |path: &str| format!("http://{}{path}", instances[path]);
    let out = dir.path().join("out.jsonl");
    let config = format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  scrape:
    sources:
      - type: prometheus_scrape
        name: bad
        targets: ["{garbage}", "{unterminated}", "{nan}", "{duplicates}", "{huge}"]
        interval_secs: 1
        timeout_secs: 1
      - type: prometheus_scrape
        name: many
        targets: ["{million}"]
        interval_secs: 2
        timeout_secs: 2
        body_size_limit_bytes: 67108864
    sinks:
      - type: file
        path: {out}
"#,
        data = dir.path().join("data").display(),
        garbage = target("/garbage"),
        unterminated = target("/unterminated"),
        nan = target("/nan"),
        duplicates = target("/duplicates"),
        huge = target("/huge"),
        million = target("/million"),
        out = out.display(),
    );
    let agent = Agent::start_logged(dir.path(), &config);
    wait_for(
        "every failure reason counted",
        Duration::from_secs(40),
        || {
            let metrics = agent.metrics();
            ["parse", "body_size_limit", "sample_limit", "duplicate"]
                .iter()
                .all(|reason| {
                    support::metric_sum(
                        &metrics,
                        "sluice_scrape_failures_total",
                        &[("reason", reason)],
                    ) >= 1.0
                })
        },
    );
    // The counters move before the `up` samples reach the file sink: wait for those too.
    wait_for(
        "an up sample of every target",
        Duration::from_secs(40),
        || {
            let events = read_events(&out);
            instances.values().all(|instance| {
                events
                    .iter()
                    .any(|e| e["name"] == "up" && e["labels"]["instance"] == instance.as_str())
            })
        },
    );
    let events = read_events(&out);
    let up = |path: &str| -> Vec<f64> {
        events
            .iter()
            .filter(|e| e["name"] == "up" && e["labels"]["instance"] == instances[path].as_str())
            .filter_map(|e| e["value"].as_f64())
            .collect()
    };
    for (path, expected) in [
        ("/garbage", 0.0),
        ("/unterminated", 0.0),
        ("/huge", 0.0),
        ("/million", 0.0),
        ("/nan", 1.0),
        ("/duplicates", 1.0),
    ] {
        let ups = up(path);
        assert!(
            !ups.is_empty() && ups.iter().all(|v| *v == expected),
            "{path}: up {ups:?}"
        );
    }
    // The valid targets' samples arrive, NaN and Inf included (JSON writes them as null).
    for name in ["a", "b", "c"] {
        assert!(events.iter().any(|e| e["name"] == name), "{name}");
    }
    let first: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["name"] == "d" && e["labels"]["x"] == "1")
        .collect();
    assert!(
        !first.is_empty() && first.iter().all(|e| e["value"] == 1.0),
        "the first of duplicates is kept: {first:?}"
    );
    assert!(events
        .iter()
        .any(|e| e["name"] == "d" && e["labels"]["x"] == "2"));
    // Nothing of a failed scrape is sent.
    for name in ["ok", "bad", "m", "filler_metric_name_long_enough"] {
        assert!(!events.iter().any(|e| e["name"] == name), "{name} was sent");
    }
    // Each failing target is logged at WARN with its URL, reason and error once when it
    // starts failing, not at every scrape (it failed several times by now).
    let log = agent.log();
    for (path, reason, error) in [
        ("/garbage", "parse", "line 1"),
        ("/unterminated", "parse", "line"),
        ("/huge", "body_size_limit", "body_size_limit_bytes"),
        ("/million", "sample_limit", "sample_limit"),
    ] {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("scrape failed") && l.contains(&target(path)))
            .collect();
        assert_eq!(lines.len(), 1, "{path}: {lines:#?}\n{log}");
        assert!(
            lines[0].contains("WARN")
                && lines[0].contains(&format!("reason=\"{reason}\""))
                && lines[0].contains(error),
            "{path}: {}",
            lines[0]
        );
    }
    // Memory stays bounded (50 MB bodies refused at 16 MiB, 1M series cut at 200k).
    let peak = peak_rss_kib(agent.child.id());
    assert!(peak < 256 * 1024, "peak RSS {peak} KiB");
    assert_eq!(agent.get("/health").map(|(status, _)| status), Some(200));
}

// ---------------------------------------------------------------------------------------
// The same fixture tree read by both (hwmon and thermal zones, which this VM lacks)
// ---------------------------------------------------------------------------------------

/// `name{labels}` → value, from node_exporter's text output (no escapes in the fixture).
fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let mut pairs: Vec<(String, String)> = Vec::new();
            let mut rest = labels;
            while let Some((key, after)) = rest.split_once("=\"") {
                let end = after.find('"')?;
                pairs.push((
                    key.trim_start_matches(',').to_owned(),
                    after[..end].to_owned(),
                ));
                rest = &after[end + 1..];
            }
            Some((key_of(name, pairs), value.parse().ok()?))
        })
        .collect()
}

/// `name{a="1",b="2"}` with labels sorted and empty ones left out (as Prometheus stores).
fn key_of(name: &str, mut labels: Vec<(String, String)>) -> String {
    labels.retain(|(_, v)| !v.is_empty());
    labels.sort();
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

#[test]
fn fixture_tree_gives_what_node_exporter_gives() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/host_metrics/basic");
    let (proc_path, sys_path) = (fixture.join("proc"), fixture.join("sys"));
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut command = Command::new(find("prometheus-node-exporter"));
    command
        .arg(format!("--web.listen-address={addr}"))
        .arg(format!("--path.procfs={}", proc_path.display()))
        .arg(format!("--path.sysfs={}", sys_path.display()))
        .arg(format!(
            "--path.udev.data={}",
            dir.path().join("udev").display()
        ))
        .arg("--no-collector.netdev.netlink")
        .arg("--collector.disable-defaults")
        .arg(format!(
            "--collector.filesystem.mount-points-exclude={MOUNT_POINTS_EXCLUDE}"
        ));
    for collector in COLLECTORS {
        command.arg(format!("--collector.{collector}"));
    }
    let _node = Process(Some(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{INSTALL_HINT} ({e})")),
    ));
    let mut exposition = String::new();
    wait_for(
        "node_exporter on the fixture",
        Duration::from_secs(30),
        || match http(addr, "GET", "/metrics") {
            Some((200, body)) => {
                exposition = body;
                true
            }
            _ => false,
        },
    );
    // node_exporter's own process metrics (go_*, process_*, promhttp_*) are not the host's.
    let expected: BTreeMap<String, f64> = parse_exposition(&exposition)
        .into_iter()
        .filter(|(key, _)| key.starts_with("node_"))
        .collect();

    let out = dir.path().join("out.jsonl");
    let config = format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  host:
    sources:
      - type: host_metrics
        interval_secs: 60
        proc_path: {proc}
        sys_path: {sys}
        udev_data_path: {udev}
        filesystem_mount_points_exclude: '{MOUNT_POINTS_EXCLUDE}'
        netdev_device_exclude: '^lo$'
    sinks:
      - type: file
        path: {out}
"#,
        data = dir.path().join("data").display(),
        proc = proc_path.display(),
        sys = sys_path.display(),
        udev = dir.path().join("udev").display(),
        out = out.display(),
    );
    let _agent = Agent::start(dir.path(), &config);
    let mut got: BTreeMap<String, f64> = BTreeMap::new();
    wait_for("one collection", Duration::from_secs(20), || {
        got = read_events(&out)
            .iter()
            .map(|e| {
                let labels = e["labels"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect();
                (
                    key_of(e["name"].as_str().unwrap(), labels),
                    e["value"].as_f64().unwrap_or(f64::NAN),
                )
            })
            .collect();
        got.keys()
            .any(|k| k.starts_with("node_scrape_collector_success{collector=\"uname\""))
    });

    let volatile = |key: &str| {
        key.starts_with("node_exporter_build_info")
            || key.starts_with("node_scrape_collector_duration_seconds")
            || key.starts_with("node_time_seconds")
            || key.starts_with("node_filesystem_free_bytes")
            || key.starts_with("node_filesystem_avail_bytes")
            || key.starts_with("node_filesystem_files_free")
    };
    let expected_keys: BTreeSet<&String> = expected
        .keys()
        .filter(|k| !k.starts_with("node_exporter_build_info"))
        .collect();
    // node_exporter reads /proc/net/dev here (`--no-collector.netdev.netlink`: netlink
    // would report the agent's own interfaces), which has no `nohandler` column; by
    // default it reads netlink, which does, and so does sluice (from sysfs).
    let got_keys: BTreeSet<&String> = got
        .keys()
        .filter(|k| !k.starts_with("node_network_receive_nohandler_total"))
        .collect();
    let missing: Vec<&&String> = expected_keys.difference(&got_keys).collect();
    let extra: Vec<&&String> = got_keys.difference(&expected_keys).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "only node_exporter: {missing:#?}\nonly sluice: {extra:#?}"
    );
    for (key, value) in &expected {
        if volatile(key) {
            continue;
        }
        // Equal up to serde_json's float parsing (not bit-exact by default).
        let (got, value) = (got[key], *value);
        assert!(
            got == value || (got - value).abs() <= 1e-12 * value.abs(),
            "{key}: sluice {got}, node_exporter {value}"
        );
    }
}
