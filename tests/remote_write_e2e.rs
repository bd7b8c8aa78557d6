//! End-to-end: the agent binary turns an access log into metrics (`log_to_metric`) and ships
//! them, with its own metrics (`internal_metrics`), to a real Prometheus (Debian's
//! `prometheus` package, started here with `--web.enable-remote-write-receiver`). What
//! Prometheus answers on `/api/v1/query` is checked against an independent count of the
//! fixture. One more test reads the agent's requests off the wire (a loopback receiver) for
//! the spec's headers and body format.
//!
//! Needs `/usr/bin/prometheus`: `apt-get install -y prometheus` (the README's test command
//! installs it).

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, wait_for, Agent};

const INSTALL_HINT: &str =
    "prometheus not installed: apt-get install -y prometheus (the README's test command does this)";

// ---------------------------------------------------------------------------------------
// A real Prometheus
// ---------------------------------------------------------------------------------------

/// The `prometheus` binary: `$PROMETHEUS_BIN`, or the first on `search_path`.
fn find_prometheus(search_path: &str) -> PathBuf {
    if let Some(bin) = std::env::var_os("PROMETHEUS_BIN") {
        return bin.into();
    }
    std::env::split_paths(search_path)
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

/// A Prometheus server on a free loopback port with its own storage; killed when dropped.
struct Prometheus {
    child: Option<Child>,
    binary: PathBuf,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    fn start(dir: &Path) -> Prometheus {
        let binary = find_prometheus(&std::env::var("PATH").unwrap_or_default());
        std::fs::create_dir_all(dir).unwrap();
        // No scrape jobs: everything in it arrives by remote write.
        std::fs::write(
            dir.join("prometheus.yml"),
            "global:\n  scrape_interval: 1m\n",
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut prometheus = Prometheus {
            child: None,
            binary,
            addr,
            dir: dir.to_owned(),
        };
        prometheus.spawn();
        prometheus
    }

    /// Starts the process (again) on the same port and storage, and waits until it is ready.
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("prometheus.log"))
            .unwrap();
        let child = Command::new(&self.binary)
            .arg(format!(
                "--config.file={}",
                self.dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={}", self.addr))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|error| panic!("{INSTALL_HINT} ({error})"));
        self.child = Some(child);
        let addr = self.addr;
        let child = self.child.as_mut().unwrap();
        wait_for("prometheus /-/ready", Duration::from_secs(60), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("prometheus exited at start: {status}; see its log in the test's temp dir");
            }
            http(addr, "GET", "/-/ready", &[], &[]).is_some_and(|(status, _)| status == 200)
        });
    }

    /// Kills the process (SIGKILL: nothing flushed beyond its WAL).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// An instant query now: (labels, value) per series.
    fn query(&self, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        self.query_at(promql, None)
    }

    /// An instant query at `time` (Unix seconds; `None`: now).
    fn query_at(&self, promql: &str, time: Option<i64>) -> Vec<(BTreeMap<String, String>, f64)> {
        let mut path = format!("/api/v1/query?query={}", url_encode(promql));
        if let Some(time) = time {
            path.push_str(&format!("&time={time}"));
        }
        let Some((200, body)) = http(self.addr, "GET", &path, &[], &[]) else {
            return Vec::new();
        };
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        json["data"]["result"]
            .as_array()
            .map(|series| {
                series
                    .iter()
                    .map(|s| {
                        let labels = s["metric"]
                            .as_object()
                            .unwrap()
                            .iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                            .collect();
                        let value = s["value"][1].as_str().unwrap().parse().unwrap();
                        (labels, value)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal HTTP/1.0 exchange (so the reply is never chunked): (status, body).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let mut request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, response[split + 4..].to_vec()))
}

fn url_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The fixture and its independent count
// ---------------------------------------------------------------------------------------

const BUCKETS: [f64; 4] = [100.0, 1000.0, 10000.0, 100000.0];

fn fixture_lines() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/remote_write/access.log");
    std::fs::read(path)
        .unwrap()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect()
}

/// One access-log line, parsed without regexes: (method, status, bytes).
fn parse_line(line: &str) -> Option<(String, String, Option<u64>)> {
    let (_, rest) = line.split_once(" [")?;
    let (_, rest) = rest.split_once("] \"")?;
    let (request, rest) = rest.split_once("\" ")?;
    let method = request.split(' ').next()?.to_owned();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut tail = rest.split(' ');
    let status = tail.next()?;
    if status.len() != 3 || !status.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bytes = match tail.next()? {
        "-" => None,
        text => Some(text.parse().ok()?),
    };
    Some((method, status.to_owned(), bytes))
}

/// What Prometheus must end up holding for `lines`.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    /// (method, status) → requests.
    requests: BTreeMap<(String, String), f64>,
    /// Observations of response bytes (lines with a numeric size).
    count: f64,
    /// The `le="+Inf"` bucket: must equal `count`.
    inf: f64,
    sum: f64,
    /// Cumulative count per bound of [`BUCKETS`].
    buckets: Vec<f64>,
}

fn expected(lines: &[String]) -> Expected {
    let mut out = Expected {
        buckets: vec![0.0; BUCKETS.len()],
        ..Expected::default()
    };
    for line in lines {
        let Some((method, status, bytes)) = parse_line(line) else {
            continue;
        };
        *out.requests.entry((method, status)).or_default() += 1.0;
        if let Some(bytes) = bytes {
            out.count += 1.0;
            out.inf += 1.0;
            out.sum += bytes as f64;
            for (bound, n) in BUCKETS.iter().zip(&mut out.buckets) {
                if bytes as f64 <= *bound {
                    *n += 1.0;
                }
            }
        }
    }
    out
}

/// What Prometheus holds for job `job`, in the shape of [`Expected`].
fn observed(prometheus: &Prometheus, job: &str) -> Expected {
    let mut out = Expected::default();
    for (labels, value) in prometheus.query(&format!("http_requests_total{{job=\"{job}\"}}")) {
        let key = (labels["method"].clone(), labels["status"].clone());
        out.requests.insert(key, value);
    }
    let one = |promql: String| prometheus.query(&promql).first().map_or(0.0, |s| s.1);
    out.count = one(format!("http_response_bytes_count{{job=\"{job}\"}}"));
    out.sum = one(format!("http_response_bytes_sum{{job=\"{job}\"}}"));
    let mut buckets: Vec<(f64, f64)> = prometheus
        .query(&format!("http_response_bytes_bucket{{job=\"{job}\"}}"))
        .into_iter()
        .map(|(labels, value)| (labels["le"].parse::<f64>().unwrap(), value))
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Buckets are cumulative: never decreasing, and `+Inf` is the count.
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "buckets not monotonic: {buckets:?}"
    );
    if let Some((bound, inf)) = buckets.pop() {
        assert!(bound.is_infinite(), "no +Inf bucket: {buckets:?}");
        out.inf = inf;
    }
    let bounds: Vec<f64> = buckets.iter().map(|b| b.0).collect();
    if !buckets.is_empty() {
        assert_eq!(bounds, BUCKETS, "bucket bounds");
    }
    out.buckets = buckets.into_iter().map(|b| b.1).collect();
    out
}

/// Waits until Prometheus holds exactly `want` for `job`; panics with both on timeout.
fn wait_for_totals(prometheus: &Prometheus, job: &str, want: &Expected, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = observed(prometheus, job);
        if got == *want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus never reached the fixture's counts\n want: {want:?}\n  got: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------
// The agent
// ---------------------------------------------------------------------------------------

/// Access log (file source) → parse_regex → log_to_metric → remote write, plus
/// internal_metrics → remote write.
fn config(dir: &Path, prometheus: &Prometheus, job: &str) -> String {
    format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  access:
    sources:
      - type: file
        include: ["{log}"]
        read_from: beginning
        glob_interval_ms: 100
    transforms:
      - type: parse_regex
        pattern: '^(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>[^ "]+)(?: [^"]*)?" (?P<status>\d{{3}}) (?P<bytes>\d+|-)'
        types: {{ status: int, bytes: int }}
      - type: log_to_metric
        flush_interval_ms: 300
        drop_logs: true
        metrics:
          - type: counter
            name: http_requests_total
            labels: [method, status]
            condition: {{ field: status, exists: true }}
          - type: histogram
            name: http_response_bytes
            field: bytes
            buckets: [100, 1000, 10000, 100000]
    sinks:
      - type: prometheus_remote_write
        name: prom
        endpoint: {url}
        external_labels: {{ job: {job} }}
        batch: {{ timeout_ms: 200 }}
        retry: {{ initial_backoff_ms: 50, max_backoff_ms: 1000 }}
        request: {{ timeout_ms: 2000 }}
  self:
    sources:
      - type: internal_metrics
        interval_secs: 1
        labels: {{ instance: {job} }}
    sinks:
      - type: prometheus_remote_write
        name: prom_self
        endpoint: {url}
        batch: {{ timeout_ms: 200 }}
        retry: {{ initial_backoff_ms: 50, max_backoff_ms: 1000 }}
"#,
        data = dir.join("data").display(),
        log = dir.join("access.log").display(),
        url = prometheus.write_url(),
    )
}

fn sink_metric(agent: &Agent, name: &str, sink: &str, extra: &[(&str, &str)]) -> f64 {
    let mut labels = vec![("pipeline", "access"), ("component", sink)];
    labels.extend_from_slice(extra);
    agent.metric_sum(name, &labels)
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn counters_and_histograms_match_the_fixture_and_the_agent_ships_its_own_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(&dir.path().join("prometheus"));
    let lines = fixture_lines();
    std::fs::write(dir.path().join("access.log"), lines.join("\n") + "\n").unwrap();
    let agent = Agent::start(dir.path(), &config(dir.path(), &prometheus, "fixture"));

    let want = expected(&lines);
    assert!(want.requests.len() > 10 && want.count > 1000.0, "{want:?}");
    wait_for_totals(&prometheus, "fixture", &want, Duration::from_secs(90));

    // The agent's own counters, through internal_metrics: the file source read every line.
    let query = r#"sluice_events_received_total{pipeline="access",component_kind="source",instance="fixture"}"#;
    wait_for(
        "the source's event count in prometheus",
        Duration::from_secs(30),
        || prometheus.query(query).first().map(|s| s.1) == Some(lines.len() as f64),
    );
    // Histograms from the registry arrive as _bucket/_sum/_count too. (A snapshot taken
    // before the sink's first request says 0: wait for a later one.)
    let batch_events =
        r#"sluice_sink_batch_events_count{pipeline="access",component="prom",instance="fixture"}"#;
    wait_for(
        "the sink's batch-size histogram in prometheus",
        Duration::from_secs(30),
        || {
            prometheus
                .query(batch_events)
                .first()
                .is_some_and(|s| s.1 >= 1.0)
        },
    );
    let inf = prometheus.query(
        r#"sluice_sink_batch_events_bucket{pipeline="access",component="prom",instance="fixture",le="+Inf"}"#,
    );
    assert_eq!(inf.len(), 1, "{inf:?}");
    // Every request was accepted at once.
    assert_eq!(
        sink_metric(&agent, "sluice_sink_retries_total", "prom", &[]),
        0.0
    );
    assert_eq!(
        sink_metric(
            &agent,
            "sluice_remote_write_rejected_requests_total",
            "prom",
            &[]
        ),
        0.0
    );
    assert!(sink_metric(&agent, "sluice_remote_write_samples_total", "prom", &[]) > 0.0);
    assert!(agent.terminate().success());
}

#[test]
fn prometheus_down_for_30s_then_back_ends_at_the_right_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut prometheus = Prometheus::start(&dir.path().join("prometheus"));
    let lines = fixture_lines();
    let (first, second) = lines.split_at(lines.len() / 2);
    let log = dir.path().join("access.log");
    std::fs::write(&log, first.join("\n") + "\n").unwrap();
    let agent = Agent::start(dir.path(), &config(dir.path(), &prometheus, "restart"));
    wait_for_totals(
        &prometheus,
        "restart",
        &expected(first),
        Duration::from_secs(60),
    );

    // Down for 30 s while the second half of the log is written.
    prometheus.stop();
    let down_since = Instant::now();
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    file.write_all((second.join("\n") + "\n").as_bytes())
        .unwrap();
    drop(file);
    let outage = Duration::from_secs(30);
    while down_since.elapsed() < outage {
        std::thread::sleep(Duration::from_millis(500));
    }
    let retries = sink_metric(&agent, "sluice_sink_retries_total", "prom", &[]);
    assert!(retries > 0.0, "no retries while prometheus was down");
    assert!(
        sink_metric(
            &agent,
            "sluice_sink_requests_total",
            "prom",
            &[("status", "connect_error")]
        ) > 0.0
    );

    prometheus.spawn();
    // Retried requests land, nothing twice: cumulative totals equal the whole log's count.
    wait_for_totals(
        &prometheus,
        "restart",
        &expected(&lines),
        Duration::from_secs(90),
    );
    assert_eq!(
        sink_metric(
            &agent,
            "sluice_remote_write_rejected_requests_total",
            "prom",
            &[]
        ),
        0.0
    );
    assert!(agent.terminate().success());
}

/// Prometheus refuses a whole request for one out-of-order sample. The sink sends the
/// halves of a refused request on their own (and their halves, while refused), so that one
/// series with a bad sample costs that series' samples, not every series sent beside it;
/// nothing is retried (a 400 is for good) and the refused samples are counted.
#[test]
fn one_out_of_order_series_costs_its_samples_not_the_requests() {
    use sluice::event::{Event, Metric, MetricValue, Timestamp};
    use sluice::sink::driver::HttpSinkCodec as _;

    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(&dir.path().join("prometheus"));
    // A sample five minutes ahead for a series the agent will send: every sample the agent
    // sends for it is then out of order, and Prometheus answers 400 for the whole request.
    let future = Timestamp(Timestamp::now().0 + 300 * 1_000_000_000);
    let config: sluice::sink::prometheus_remote_write::PrometheusRemoteWriteConfig =
        sluice::yaml::from_str(&format!("endpoint: {}", prometheus.write_url()), "t.yaml").unwrap();
    let mut codec = config.codec().unwrap();
    let encoded = codec.encode(&[Event::Metric(Metric {
        name: "http_requests_total".into(),
        labels: vec![
            ("job".into(), "ooo".into()),
            ("method".into(), "GET".into()),
            ("status".into(), "200".into()),
        ],
        value: MetricValue::Counter(1e6),
        timestamp: future,
    })]);
    let body = snap::raw::Encoder::new()
        .compress_vec(&encoded.requests[0].body)
        .unwrap();
    let reply = http(
        prometheus.addr,
        "POST",
        "/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        &body,
    );
    assert!(reply.as_ref().is_some_and(|r| r.0 / 100 == 2), "{reply:?}");

    let lines = fixture_lines();
    std::fs::write(dir.path().join("access.log"), lines.join("\n") + "\n").unwrap();
    let agent = Agent::start(dir.path(), &config_for(dir.path(), &prometheus));
    wait_for("two rejected requests", Duration::from_secs(60), || {
        sink_metric(
            &agent,
            "sluice_remote_write_rejected_requests_total",
            "prom",
            &[("status", "400")],
        ) >= 2.0
    });
    // Counted as out_of_order, never retried: each 400 is one request, sent once.
    let metrics = agent.metrics();
    let labels = [("pipeline", "access"), ("component", "prom")];
    let sum = |name: &str, extra: &[(&str, &str)]| {
        let mut all = labels.to_vec();
        all.extend_from_slice(extra);
        support::metric_sum(&metrics, name, &all)
    };
    assert!(sum("sluice_events_dropped_total", &[("reason", "out_of_order")]) > 0.0);
    assert_eq!(sum("sluice_sink_retries_total", &[]), 0.0);
    assert!(sum("sluice_sink_split_requests_total", &[]) > 0.0);
    assert_eq!(
        sum("sluice_sink_requests_total", &[("status", "400")]),
        sum(
            "sluice_remote_write_rejected_requests_total",
            &[("status", "400")]
        ),
    );
    // Every other series of the refused requests arrived, at the fixture's totals.
    let mut want = expected(&lines);
    want.requests.remove(&("GET".to_owned(), "200".to_owned()));
    wait_for_totals(&prometheus, "ooo", &want, Duration::from_secs(30));
    // Prometheus kept its own sample of the refused series, and none of the agent's.
    let held = prometheus.query_at(
        r#"http_requests_total{job="ooo",method="GET",status="200"}"#,
        Some(future.0 / 1_000_000_000 + 1),
    );
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].1, 1e6);
    let refused = prometheus.query(r#"http_requests_total{job="ooo",method="GET",status="200"}"#);
    assert!(refused.is_empty(), "{refused:?}");
    assert!(agent.terminate().success());
}

/// [`config`] with job `ooo`.
fn config_for(dir: &Path, prometheus: &Prometheus) -> String {
    config(dir, prometheus, "ooo")
}

#[test]
fn missing_prometheus_says_how_to_install_it() {
    let empty = tempfile::tempdir().unwrap();
    if std::env::var_os("PROMETHEUS_BIN").is_some() {
        return;
    }
    let path = empty.path().display().to_string();
    let panic = std::panic::catch_unwind(|| find_prometheus(&path)).unwrap_err();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("apt-get install -y prometheus"),
        "{message}"
    );
}

/// One request as received on the wire: (lower-cased header name → value, body).
type WireRequest = (BTreeMap<String, String>, Vec<u8>);

/// A loopback receiver that answers 204 to everything and keeps what it was sent.
fn capture_server() -> (
    SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<WireRequest>>>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let store = store.clone();
            std::thread::spawn(move || serve_204(stream, &store));
        }
    });
    (addr, seen)
}

fn serve_204(mut stream: TcpStream, store: &std::sync::Mutex<Vec<WireRequest>>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_string();
        let headers: BTreeMap<String, String> = head
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < end + 4 + length {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buffer[end + 4..end + 4 + length].to_vec();
        buffer.drain(..end + 4 + length);
        store.lock().unwrap().push((headers, body));
        if stream
            .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

#[test]
fn requests_carry_the_remote_write_headers_and_a_snappy_write_request() {
    use prost::Message as _;
    use sluice::sink::prometheus_remote_write::proto::WriteRequest;

    let dir = tempfile::tempdir().unwrap();
    let (addr, seen) = capture_server();
    let config = format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  self:
    sources:
      - type: internal_metrics
        interval_secs: 1
    sinks:
      - type: prometheus_remote_write
        endpoint: http://{addr}/api/v1/write
        external_labels: {{ job: wire }}
        batch: {{ timeout_ms: 100 }}
"#,
        data = dir.path().join("data").display(),
    );
    let agent = Agent::start(dir.path(), &config);
    wait_for("a remote-write request", Duration::from_secs(30), || {
        !seen.lock().unwrap().is_empty()
    });
    let (headers, body) = seen.lock().unwrap()[0].clone();
    assert!(agent.terminate().success());

    let header = |name: &str| headers.get(name).map(String::as_str);
    assert_eq!(header("content-encoding"), Some("snappy"));
    assert_eq!(header("content-type"), Some("application/x-protobuf"));
    assert_eq!(header("x-prometheus-remote-write-version"), Some("0.1.0"));
    assert!(
        header("user-agent").is_some_and(|ua| ua.starts_with("sluice/")),
        "{headers:?}"
    );
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .expect("snappy block format");
    let request = WriteRequest::decode(raw.as_slice()).expect("a WriteRequest");
    assert!(!request.timeseries.is_empty());
    for series in &request.timeseries {
        let names: Vec<&str> = series.labels.iter().map(|l| l.name.as_str()).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "unsorted: {names:?}");
        assert_eq!(names[0], "__name__", "{names:?}");
        assert!(names.contains(&"job"), "external label missing: {names:?}");
        assert!(series.labels.iter().all(|l| !l.value.is_empty()));
        assert!(
            series
                .samples
                .windows(2)
                .all(|w| w[0].timestamp < w[1].timestamp),
            "samples out of order"
        );
    }
}
