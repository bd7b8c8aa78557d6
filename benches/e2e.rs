//! End-to-end throughput harness: runs the release agent binary on each scenario and
//! reports events/s, events per CPU-second of the agent process, MiB/s and peak RSS.
//!
//! `cargo bench --bench e2e` (all scenarios) or `cargo bench --bench e2e -- <name>`;
//! `SLUICE_BIN=<path>` runs another build of the agent (e.g. the static one).
//!
//! Each scenario's pipeline has an extra idle source so the agent stays up after the work
//! is done; the harness polls `/metrics` until the sinks report every event, then reads the
//! process's CPU time (`/proc/<pid>/stat`) and peak RSS (`VmHWM`) and kills it.
//!
//! `file_to_elasticsearch` reads 1M access-log lines of about 148 bytes (the issue 26
//! comparison's input) and also reports the `_bulk` bodies' bytes as sent (gzip) and as
//! NDJSON; `SLUICE_BENCH_ES_LEVEL` sets the gzip level (unset: the sink's default) and
//! `SLUICE_BENCH_ES_KEYS` adds sink keys (`id: none`).
//!
//! `file_regex_to_loki` reads the same lines, parses them with `pipelines/access-log.yaml`'s
//! `parse_regex` pattern and ships them to a fake Loki with the status as a label (the issue
//! 26 comparison's third scenario).
//!
//! `idle`: VmRSS of idle agents (bare, embedded default, the Debian package's pipeline);
//! `idle_host_metrics`: what the package's `host_metrics` source adds to it (with and
//! without, rounds interleaved: `SLUICE_BENCH_RUNS`, `SLUICE_BENCH_IDLE_SECS`).

#[path = "support/agent.rs"]
mod agent;
#[path = "../tests/support/fake_elasticsearch.rs"]
mod fake_elasticsearch;
#[path = "../tests/support/fake_loki.rs"]
mod fake_loki;
#[path = "../tests/support/http_request.rs"]
mod http_request;
#[path = "support/lines.rs"]
mod lines;
#[path = "support/procfs.rs"]
mod procfs;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use procfs::{cpu_seconds, status_kib};
use sluice::event::Timestamp;
use sluice::source::demo::{line, time_text, DemoFormat};

struct Scenario {
    name: &'static str,
    /// Events the sinks must report (summed over sinks).
    events: u64,
    /// Bytes of input per event, for MiB/s.
    bytes_per_event: f64,
    /// `pipelines:` body; `{data}` is the scenario's temp dir, `{es}` the fake
    /// Elasticsearch's URL, `{loki}` the fake Loki's.
    pipeline: String,
    /// Lines written to `{data}/in/bench.log` before the agent starts.
    file_lines: u64,
    /// What those lines are.
    input: Input,
}

/// The lines a file scenario reads.
#[derive(Clone, Copy, PartialEq)]
enum Input {
    /// 150-byte lines padded with `x` ([`lines::append_lines`]).
    Plain,
    /// Access-log lines of about 148 bytes ([`append_access_lines`]): what compresses
    /// like real logs, for wire bytes.
    AccessLog,
}

/// Combined-format access-log lines, about 148 bytes with the newline: the demo source's
/// lines (client, method, path, status, size, agent varying per line, one timestamp per
/// 100 lines) with a referer. Returns the bytes written.
fn append_access_lines(path: &Path, n: u64) -> u64 {
    const REFERERS: &[&str] = &[
        "https://shop.example.com/catalog/",
        "https://shop.example.com/cart/checkout",
        "https://www.example.org/search?q=shoes",
        "-",
    ];
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create input"));
    let start = Timestamp(1_714_557_600_000_000_000);
    let mut time = String::new();
    let mut total = 0;
    for seq in 0..n {
        if seq % 100 == 0 {
            time = time_text(
                DemoFormat::ApacheCombined,
                Timestamp(start.0 + (seq / 100) as i64 * 1_000_000_000),
            );
        }
        let demo = line(DemoFormat::ApacheCombined, seq, &time);
        let referer = REFERERS[(seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 62) as usize];
        let text = demo.replacen("\"-\"", &format!("\"{referer}\""), 1);
        std::io::Write::write_all(&mut out, text.as_bytes()).expect("write input");
        std::io::Write::write_all(&mut out, b"\n").expect("write input");
        total += text.len() as u64 + 1;
    }
    std::io::Write::flush(&mut out).expect("flush input");
    total
}

/// The Elasticsearch sink of the `file_to_elasticsearch` scenario, with
/// `SLUICE_BENCH_ES_LEVEL` and `SLUICE_BENCH_ES_KEYS` applied.
fn elasticsearch_sink() -> String {
    let mut keys = String::new();
    if let Ok(level) = std::env::var("SLUICE_BENCH_ES_LEVEL") {
        keys.push_str(&format!(
            ", compression: {{ algorithm: gzip, level: {level} }}"
        ));
    }
    if let Ok(extra) = std::env::var("SLUICE_BENCH_ES_KEYS") {
        keys.push_str(&format!(", {extra}"));
    }
    format!(
        "      - {{ type: elasticsearch, endpoint: \"{{es}}\", index: \"logs-%Y.%m.%d\"{keys} }}\n"
    )
}

fn demo_bytes() -> f64 {
    let time = time_text(DemoFormat::ApacheCombined, Timestamp::now());
    let total: usize = (0..10_000)
        .map(|n| line(DemoFormat::ApacheCombined, n, &time).len() + 1)
        .sum();
    total as f64 / 10_000.0
}

const IDLE: &str = "      - { type: demo, name: idle, rate: 0.001 }\n";

/// The access-log pattern of `pipelines/access-log.yaml`.
const ACCESS_PATTERN: &str = r#"^(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>[^ "]+)(?: [^"]*)?" (?P<status>\d{3}) (?P<bytes>\d+|-)"#;

fn scenarios() -> Vec<Scenario> {
    let bytes = demo_bytes();
    vec![
        Scenario {
            name: "demo_to_blackhole",
            events: 2_000_000,
            bytes_per_event: bytes,
            pipeline: format!("  bench:\n    sources:\n      - {{ type: demo, rate: 0, count: 2000000 }}\n{IDLE}    sinks:\n      - {{ type: blackhole }}\n"),
            file_lines: 0,
            input: Input::Plain,
        },
        Scenario {
            name: "demo_to_file",
            events: 1_000_000,
            bytes_per_event: bytes,
            pipeline: format!("  bench:\n    sources:\n      - {{ type: demo, rate: 0, count: 1000000 }}\n{IDLE}    sinks:\n      - {{ type: file, path: \"{{data}}/out.jsonl\" }}\n"),
            file_lines: 0,
            input: Input::Plain,
        },
        Scenario {
            name: "file_to_blackhole",
            events: 2_000_000,
            bytes_per_event: 150.0,
            pipeline: format!("  bench:\n    sources:\n      - {{ type: file, include: [\"{{data}}/in/*.log\"] }}\n{IDLE}    sinks:\n      - {{ type: blackhole }}\n"),
            file_lines: 2_000_000,
            input: Input::Plain,
        },
        Scenario {
            name: "file_to_file",
            events: 1_000_000,
            bytes_per_event: 150.0,
            pipeline: format!("  bench:\n    sources:\n      - {{ type: file, include: [\"{{data}}/in/*.log\"] }}\n{IDLE}    sinks:\n      - {{ type: file, path: \"{{data}}/out.jsonl\" }}\n"),
            file_lines: 1_000_000,
            input: Input::Plain,
        },
        Scenario {
            name: "file_to_elasticsearch",
            events: 1_000_000,
            bytes_per_event: 148.0,
            pipeline: format!("  bench:\n    sources:\n      - {{ type: file, include: [\"{{data}}/in/*.log\"] }}\n{IDLE}    sinks:\n{}", elasticsearch_sink()),
            file_lines: 1_000_000,
            input: Input::AccessLog,
        },
        Scenario {
            name: "file_regex_to_loki",
            events: 1_000_000,
            bytes_per_event: 148.0,
            pipeline: format!("  bench:\n    sources:\n      - {{ type: file, include: [\"{{data}}/in/*.log\"] }}\n{IDLE}    transforms:\n      - {{ type: parse_regex, pattern: '{ACCESS_PATTERN}', types: {{ status: int, bytes: int }} }}\n    sinks:\n      - {{ type: loki, endpoint: \"{{loki}}\", labels: {{ job: bench, status: \"{{{{ status }}}}\" }} }}\n"),
            file_lines: 1_000_000,
            input: Input::AccessLog,
        },
    ]
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18686)
}

fn metrics(api: SocketAddr) -> String {
    let Ok(mut stream) = TcpStream::connect(api) else {
        return String::new();
    };
    let _ = std::io::Write::write_all(
        &mut stream,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    body
}

fn sink_events(text: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with("sluice_events_sent_total{") && l.contains("component_kind=\"sink\"")
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

fn run(
    scenario: &Scenario,
    dir: &Path,
    es: Option<&fake_elasticsearch::FakeElasticsearch>,
    loki: Option<&fake_loki::FakeLoki>,
) {
    let api: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("address");
    let data = dir.join(scenario.name);
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).expect("data dir");
    let mut bytes_per_event = scenario.bytes_per_event;
    if scenario.file_lines > 0 {
        std::fs::create_dir_all(data.join("in")).expect("input dir");
        let input = data.join("in/bench.log");
        match scenario.input {
            Input::Plain => lines::append_lines(&input, 0..scenario.file_lines),
            Input::AccessLog => {
                let bytes = append_access_lines(&input, scenario.file_lines);
                bytes_per_event = bytes as f64 / scenario.file_lines as f64;
            }
        }
        lines::settle(&input);
    }
    let es_url = es.map(|es| es.endpoint()).unwrap_or_default();
    let es_before = es.map(|es| (es.wire_bytes(), es.ndjson_bytes()));
    let config = format!(
        "data_dir: {data}\napi: {{ address: \"{api}\" }}\npipelines:\n{}",
        scenario
            .pipeline
            .replace("{data}", &data.display().to_string())
            .replace("{es}", &es_url)
            .replace("{loki}", &loki.map(|l| l.endpoint()).unwrap_or_default()),
        data = data.display()
    );
    let path = data.join("bench.yaml");
    std::fs::write(&path, config).expect("write config");
    let mut child = agent::start(&path);
    let pid = child.id();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    while sink_events(&metrics(api)) < scenario.events as f64 {
        if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            eprintln!("{}: did not finish", scenario.name);
            let _ = child.kill();
            return;
        }
        // 50 ms: scraping /metrics is work for the agent too; 20 ms cost it ~1.5% CPU.
        std::thread::sleep(Duration::from_millis(50));
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid);
    let peak_kib = status_kib(pid, "VmHWM:");
    let _ = child.kill();
    let _ = child.wait();
    let n = scenario.events as f64;
    let mib = n * bytes_per_event / (1024.0 * 1024.0);
    println!(
        "{:<22} {:>10.0} ev/s  {:>10.0} ev/CPU-s  {:>7.1} MiB/s  {:>7.1} MiB/CPU-s  peak RSS {:>6.1} MiB  ({} events, {:.2} s wall, {:.2} s CPU)",
        scenario.name, n / wall, n / cpu.max(0.01), mib / wall, mib / cpu.max(0.01),
        peak_kib as f64 / 1024.0, scenario.events, wall, cpu
    );
    if let (Some(es), Some((wire_before, ndjson_before))) = (es, es_before) {
        // Requests the agent sent again after a reply was lost would count twice; the
        // fake answers every one, so there are none in this scenario.
        let wire = es.wire_bytes() - wire_before;
        let ndjson = es.ndjson_bytes() - ndjson_before;
        println!(
            "{:<22} level {}  input {:.1} bytes/line  wire {:.1} MB ({:.1} bytes/event)  NDJSON {:.1} MB ({:.1}:1)  {:.1} MB input per wire MB  {:.1} wire MB per agent CPU-s",
            scenario.name,
            std::env::var("SLUICE_BENCH_ES_LEVEL").unwrap_or_else(|_| "default".into()),
            bytes_per_event,
            wire as f64 / 1e6,
            wire as f64 / n,
            ndjson as f64 / 1e6,
            ndjson as f64 / wire.max(1) as f64,
            n * bytes_per_event / wire.max(1) as f64,
            wire as f64 / 1e6 / cpu.max(0.01),
        );
    }
}

/// What `/proc/<pid>/status` says of an idle agent, in KiB (and its thread count).
struct IdleSample {
    rss: u64,
    anon: u64,
    file: u64,
    threads: u64,
}

/// Starts the agent on `config` (the embedded default when `None`) in `dir/name`, waits
/// `after`, reads its memory and kills it.
fn idle_sample(dir: &Path, name: &str, config: Option<&str>, after: Duration) -> IdleSample {
    let api = format!("127.0.0.1:{}", free_port());
    let data = dir.join(name);
    std::fs::create_dir_all(&data).expect("data dir");
    let mut command = Command::new(agent::binary());
    command
        .arg("run")
        .env("SLUICE_LOG", "warn")
        .env("SLUICE_DATA_DIR", &data)
        .env("SLUICE_API_ADDRESS", &api)
        .env(
            "SLUICE_SYSLOG_ADDRESS",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("SYSLOG_UDP_ADDRESS", format!("127.0.0.1:{}", free_port()))
        .env("SYSLOG_TCP_ADDRESS", format!("127.0.0.1:{}", free_port()))
        // As the systemd unit runs it: a developer's `RUST_BACKTRACE=1` makes every
        // `anyhow` error unwind the stack, mapping in the unwind tables (up to 320 KiB).
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        // Sinks with no server retry with a WARN each time: not the bench's output.
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(config) = config {
        let path = data.join("idle.yaml");
        std::fs::write(
            &path,
            config
                .replace("{data}", &data.display().to_string())
                .replace("{api}", &api),
        )
        .expect("config");
        command.arg("-c").arg(path);
    }
    let mut child = command.spawn().expect("start agent");
    std::thread::sleep(after);
    let pid = child.id();
    let sample = IdleSample {
        rss: status_kib(pid, "VmRSS:"),
        anon: status_kib(pid, "RssAnon:"),
        file: status_kib(pid, "RssFile:"),
        // A count, not kB: `status_kib` reads it the same way.
        threads: status_kib(pid, "Threads:"),
    };
    let _ = child.kill();
    let _ = child.wait();
    sample
}

fn idle_rss(dir: &Path, name: &str, config: Option<&str>) {
    let sample = idle_sample(dir, name, config, Duration::from_secs(3));
    println!("{name:<22} idle RSS {:.1} MiB", sample.rss as f64 / 1024.0);
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Issue 22: what the host-agent pipeline's `host_metrics` pipeline (the source and its
/// remote-write sink with a disk buffer) adds to idle RSS. The Debian package's pipeline
/// without and with it, `SLUICE_BENCH_RUNS` (default 3) rounds interleaved, VmRSS after
/// `SLUICE_BENCH_IDLE_SECS` (default 4) seconds.
fn idle_host_metrics(dir: &Path) {
    let runs: usize = std::env::var("SLUICE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let after = Duration::from_secs(
        std::env::var("SLUICE_BENCH_IDLE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(4),
    );
    let with = include_str!("../pipelines/host-agent.yaml");
    // The `host_metrics` source: from its `- name:` line to the next source's.
    let start = with
        .find("      - name: host\n        type: host_metrics\n")
        .expect("pipelines/host-agent.yaml has a `host_metrics` source named `host`");
    let end = start
        + 1
        + with[start + 1..]
            .find("      - name: ")
            .expect("another source follows the `host_metrics` source");
    let without = format!("{}{}", &with[..start], &with[end..]);
    let without = without.as_str();
    let line = |what: &str, s: &IdleSample| {
        println!(
            "idle_host_metrics {what:<8} VmRSS {:>6.2} MiB  RssAnon {:>5.2}  RssFile {:>5.2}  threads {}",
            mib(s.rss), mib(s.anon), mib(s.file), s.threads
        );
    };
    let mut added = Vec::new();
    for round in 0..runs {
        let a = idle_sample(dir, &format!("hm_without_{round}"), Some(without), after);
        let b = idle_sample(dir, &format!("hm_with_{round}"), Some(with), after);
        line("without", &a);
        line("with", &b);
        let delta = |b: u64, a: u64| mib(b) - mib(a);
        println!(
            "idle_host_metrics added   VmRSS {:+.2} MiB  RssAnon {:+.2}  RssFile {:+.2}  threads {:+}",
            delta(b.rss, a.rss),
            delta(b.anon, a.anon),
            delta(b.file, a.file),
            b.threads as i64 - a.threads as i64
        );
        added.push(delta(b.rss, a.rss));
    }
    let min = added.iter().copied().fold(f64::INFINITY, f64::min);
    let max = added.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    println!(
        "idle_host_metrics adds {min:+.2} to {max:+.2} MiB VmRSS over {runs} rounds (target +1.00)"
    );
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    if wanted("idle") {
        idle_rss(dir.path(), "idle_bare", Some("data_dir: {data}\napi: { address: \"{api}\" }\npipelines:\n  idle:\n    sources:\n      - { type: demo, rate: 0.001 }\n    sinks:\n      - { type: blackhole }\n"));
        idle_rss(dir.path(), "idle_embedded_default", None);
        // The Debian package's pipeline (files, syslog, every network sink; nothing to send).
        idle_rss(
            dir.path(),
            "idle_host_agent",
            Some(include_str!("../pipelines/host-agent.yaml")),
        );
    }
    if wanted("idle_host_metrics") {
        idle_host_metrics(dir.path());
    }
    // Started only when a scenario needs it; lean: it keeps no document bodies.
    let es =
        wanted("file_to_elasticsearch").then(fake_elasticsearch::FakeElasticsearch::start_lean);
    for scenario in scenarios() {
        if wanted(scenario.name) {
            let es = (scenario.name == "file_to_elasticsearch")
                .then_some(es.as_ref())
                .flatten();
            let loki = (scenario.name == "file_regex_to_loki").then(fake_loki::FakeLoki::start);
            run(&scenario, dir.path(), es, loki.as_ref());
        }
    }
}
