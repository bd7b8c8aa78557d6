//! What Kubernetes enrichment costs end to end: CRI pod logs (100 pods, one file each) →
//! the `loki` sink against the fake Loki, once without and once with the
//! `kubernetes_metadata` transform (its cache filled from the fake API server of
//! `tests/support/fake_kube_api.rs`: labels, annotations, namespace labels, ReplicaSet →
//! Deployment). Reports events per CPU-second of the agent process for each run and the
//! cost of enrichment (target ≤ 10%), from the medians and from the best runs. Runs
//! alternate (without, with; `SLUICE_BENCH_ROUNDS` times, default 3) so a change in the
//! machine's load shows up in both.
//!
//! The logs are moved into the watched directory once the agent answers on its API and, with
//! enrichment, its cache holds every pod and namespace: what is measured is enrichment, not
//! the start-up race (lines read before the first list wait up to 2 s, then go without
//! metadata; the fake closes every connection, so the owner lookups before the first list
//! are one TLS handshake each). A run with enrichment misses fails the bench. The agent's
//! CPU is counted from then on: the cost per line, not that of starting and listing.
//!
//! `cargo bench --bench kubernetes_metadata` (`SLUICE_BENCH_EVENTS`, default 500000;
//! `SLUICE_BENCH_BASELINE_TRANSFORMS`, one transform per line, for the runs "without").

#[path = "support/agent.rs"]
mod agent;
#[path = "../tests/support/fake_kube_api.rs"]
mod fake_kube_api;
#[path = "../tests/support/fake_loki.rs"]
mod fake_loki;
#[path = "../tests/support/http_request.rs"]
mod http_request;
#[path = "support/procfs.rs"]
mod procfs;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake_kube_api::{namespace, owned, pod, FakeKube, Pki, Resource};
use procfs::cpu_seconds;
use serde_json::json;

const PODS: usize = 100;

/// `pods/<ns>_<pod>_<uid>/app/0.log` for pod `i`.
fn pod_name(i: usize) -> (String, String, String) {
    (
        format!("team-{}", i % 10),
        format!("svc-{}-5f6d7c-{i:05}", i % 20),
        format!("uid-{i:05}"),
    )
}

fn write_logs(root: &Path, per_pod: usize) {
    for i in 0..PODS {
        let (ns, name, uid) = pod_name(i);
        let dir = root.join(format!("pods/{ns}_{name}_{uid}/app"));
        std::fs::create_dir_all(&dir).unwrap();
        let file = std::fs::File::create(dir.join("0.log")).unwrap();
        let mut out = std::io::BufWriter::new(file);
        for n in 0..per_pod {
            // ~150 bytes: the CRI prefix and an access-log-like message.
            let mut line = format!(
                "2024-05-01T10:00:00.123456789Z stdout F GET /api/v1/orders?page={n} 200 12ms pod={i} "
            );
            while line.len() < 149 {
                line.push('x');
            }
            writeln!(out, "{line}").unwrap();
        }
        out.flush().unwrap();
        out.get_ref().sync_all().unwrap();
    }
}

/// The agent's `/metrics` page; empty while it does not answer.
fn metrics(api: SocketAddr) -> String {
    let Ok(mut stream) = TcpStream::connect(api) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut page = String::new();
    if stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        .is_ok()
    {
        let _ = stream.read_to_string(&mut page);
    }
    page
}

/// The value of the sample whose name is `name` and whose labels contain `label`.
fn sample(page: &str, name: &str, label: &str) -> Option<f64> {
    page.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with('{'))
        .find(|line| line.contains(label))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// Waits until the agent answers and, with enrichment, its cache holds every pod and
/// namespace of the fake.
fn wait_ready(api: SocketAddr, enriching: bool, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the agent exited ({status}) at start");
        }
        let page = metrics(api);
        let cached = |resource: &str| {
            sample(
                &page,
                "sluice_kubernetes_cache_objects",
                &format!("resource=\"{resource}\""),
            )
        };
        let ready = !page.is_empty()
            && (!enriching
                || (cached("pods") == Some(PODS as f64) && cached("namespaces") == Some(10.0)));
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the agent was not ready within 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(dir: &Path, logs: &Path, transform: &str, count: usize) -> f64 {
    let loki = fake_loki::FakeLoki::start();
    let data = dir.join(format!("data-{}", fastrand_suffix()));
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let config = format!(
        r#"data_dir: {data}
api: {{ address: "{api}" }}
pipelines:
  bench:
    sources:
      - {{ type: file, include: ["{logs}/pods/*/*/*.log"], format: cri, read_from: beginning }}
{transform}    sinks:
      - type: loki
        endpoint: {endpoint}
        labels: {{ namespace: "{{{{ namespace }}}}", container: "{{{{ container }}}}" }}
        structured_metadata: {{ pod: "{{{{ pod }}}}" }}
  keep_alive:
    sources:
      - type: stdin
    sinks:
      - type: blackhole
"#,
        data = data.display(),
        logs = logs.display(),
        endpoint = loki.endpoint(),
    );
    let path = dir.join("sluice.yaml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(agent::binary())
        .args(["run", "-c"])
        .arg(&path)
        .env("SLUICE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start sluice");
    let enriching = transform.contains("type: kubernetes_metadata");
    wait_ready(api, enriching, &mut child);
    // The lines' cost only: start-up (and, with enrichment, the first list) is not per line.
    let at_start = cpu_seconds(child.id());
    let staged = dir.join("staged/pods");
    std::fs::rename(&staged, logs.join("pods")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    while loki.entry_count() < count && Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the agent exited ({status}) before delivering every line");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let cpu = cpu_seconds(child.id()) - at_start;
    let misses = sample(
        &metrics(api),
        "sluice_kubernetes_enrichment_misses_total",
        "",
    );
    drop(child.stdin.take());
    let _ = child.kill();
    let _ = child.wait();
    std::fs::rename(logs.join("pods"), &staged).unwrap();
    assert_eq!(loki.entry_count(), count, "every line delivered");
    if enriching {
        assert_eq!(misses, Some(0.0), "every line enriched");
    }
    count as f64 / cpu.max(0.01)
}

fn fastrand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let count: usize = std::env::var("SLUICE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let per_pod = count / PODS;
    let count = per_pod * PODS;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&dir.path().join("pki"), "bench-token");
    let kube = FakeKube::start(&pki, "bench-token");
    for t in 0..10 {
        kube.add(
            Resource::Namespaces,
            namespace(
                &format!("team-{t}"),
                json!({"team": format!("t{t}"), "env": "prod"}),
                json!({}),
            ),
        );
    }
    for d in 0..20 {
        kube.add(
            Resource::ReplicaSets,
            owned(
                "ReplicaSet",
                &format!("team-{}", d % 10),
                &format!("svc-{d}-5f6d7c"),
                Some(("Deployment", &format!("svc-{d}"))),
            ),
        );
    }
    for i in 0..PODS {
        let (ns, name, uid) = pod_name(i);
        let labels = json!({"app": format!("svc-{}", i % 20), "pod-template-hash": "5f6d7c",
            "app.kubernetes.io/part-of": "shop", "version": "1.2.3"});
        let annotations = json!({"owner": "team", "prometheus.io/scrape": "true"});
        let owner = format!("svc-{}-5f6d7c", i % 20);
        kube.add(
            Resource::Pods,
            pod(
                &ns,
                &name,
                &uid,
                "bench-node",
                labels,
                annotations,
                Some(("ReplicaSet", &owner)),
            ),
        );
    }
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    write_logs(&dir.path().join("staged"), per_pod);
    let transform = format!(
        "    transforms:\n      - type: kubernetes_metadata\n        api_url: {}\n        token_file: {}\n        ca_file: {}\n        node_name: bench-node\n",
        kube.url(),
        pki.token_file.display(),
        pki.ca_file.display()
    );
    // What "without" runs: no transform, or the transforms given (to compare enrichment
    // with another transform's cost of touching every event).
    let baseline = match agent::extra_keys("SLUICE_BENCH_BASELINE_TRANSFORMS", "      ") {
        keys if keys.is_empty() => keys,
        keys => format!("    transforms:\n{keys}"),
    };
    let mut without = Vec::new();
    let mut with = Vec::new();
    let rounds: usize = std::env::var("SLUICE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    for _ in 0..rounds {
        without.push(run(dir.path(), &logs, &baseline, count));
        with.push(run(dir.path(), &logs, &transform, count));
    }
    let best = |runs: &[f64]| runs.iter().copied().fold(0.0, f64::max);
    let median = |runs: &[f64]| {
        let mut sorted = runs.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        (sorted[(n - 1) / 2] + sorted[n / 2]) / 2.0
    };
    let cost = |without: f64, with: f64| (1.0 - with / without) * 100.0;
    println!(
        "kubernetes_metadata: {count} CRI lines from {PODS} pods → Loki: without enrichment {:?} events/CPU-s, with {:?}; cost of enrichment {:.1}% (medians), {:.1}% (best runs) (target ≤ 10%)",
        without.iter().map(|v| v.round()).collect::<Vec<_>>(),
        with.iter().map(|v| v.round()).collect::<Vec<_>>(),
        cost(median(&without), median(&with)),
        cost(best(&without), best(&with)),
    );
}
