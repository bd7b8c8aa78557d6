//! End-to-end: CRI pod logs (file source, `format: cri`) → `kubernetes_metadata` → the fake
//! Loki, with the metadata from the protocol-exact fake API server of
//! `support/fake_kube_api.rs` (TLS with a test CA, bearer token, list + chunked watch,
//! bookmarks, 410 Gone, 401/403/500).

#[path = "support/fake_kube_api.rs"]
mod fake_kube_api;
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fake_kube_api::{namespace, owned, pod, FakeKube, Pki, Resource, Verb};
use serde_json::json;
use support::fake_loki::{Entry, FakeLoki};
use support::{wait_for, Agent};

const NODE: &str = "node-a";
const WAIT: Duration = Duration::from_secs(30);

fn config(dir: &Path, api_url: &str, pki: &Pki, loki: &FakeLoki, extra: &str) -> String {
    format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  pods:
    sources:
      - name: pods
        type: file
        include: ["{logs}/pods/*/*/*.log"]
        format: cri
        read_from: beginning
        glob_interval_ms: 100
    transforms:
      - type: kubernetes_metadata
        api_url: {api_url}
        token_file: {token}
        ca_file: {ca}
        node_name: {NODE}
        deleted_grace_secs: 30
        unhealthy_after_secs: 1
        pod_labels: {{ exclude: [pod-template-hash] }}
{extra}    sinks:
      - type: loki
        endpoint: {loki}
        labels:
          namespace: "{{{{ namespace }}}}"
          app: "{{{{ pod_labels.app }}}}"
          workload: "{{{{ workload_name }}}}"
        structured_metadata:
          pod: "{{{{ pod }}}}"
          kind: "{{{{ workload_kind }}}}"
          team: "{{{{ namespace_labels.team }}}}"
          owner: "{{{{ pod_annotations.owner }}}}"
          image: "{{{{ container_image }}}}"
          ip: "{{{{ pod_ip }}}}"
          node: "{{{{ node_name }}}}"
          name: "{{{{ pod_labels.app.kubernetes.io/name }}}}"
        batch: {{ timeout_ms: 100 }}
        retry: {{ initial_backoff_ms: 20, max_backoff_ms: 500 }}
"#,
        data = dir.join("data").display(),
        logs = dir.display(),
        token = pki.token_file.display(),
        ca = pki.ca_file.display(),
        loki = loki.endpoint(),
    )
}

/// `dir/pods/<ns>_<pod>_<uid>/app/0.log`
fn log_path(dir: &Path, ns: &str, pod: &str, uid: &str) -> PathBuf {
    dir.join(format!("pods/{ns}_{pod}_{uid}/app/0.log"))
}

/// Appends CRI lines `text` to the pod's log.
fn write_lines(path: &Path, lines: &[String]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for line in lines {
        writeln!(file, "2024-05-01T10:00:00.000000000Z stdout F {line}").unwrap();
    }
}

fn lines(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} {i}")).collect()
}

fn entry(loki: &FakeLoki, line: &str) -> Option<Entry> {
    loki.entries().into_iter().find(|e| e.line == line)
}

fn wait_entry(loki: &FakeLoki, line: &str) -> Entry {
    wait_for(&format!("{line:?} at Loki"), WAIT, || {
        entry(loki, line).is_some()
    });
    entry(loki, line).unwrap()
}

fn meta<'a>(entry: &'a Entry, name: &str) -> Option<&'a str> {
    entry
        .metadata
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn web_pod(app: &str) -> serde_json::Value {
    pod(
        "shop",
        "web-7d4b9c-abcde",
        "u-web",
        NODE,
        json!({"app": app, "pod-template-hash": "7d4b9c", "app.kubernetes.io/name": "webshop"}),
        json!({"owner": "alice", "kubectl.kubernetes.io/last-applied-configuration": "{\"huge\":1}"}),
        Some(("ReplicaSet", "web-7d4b9c")),
    )
}

/// Namespaces, owners and pods: two enriched pods on this node, two excluded ones (by pod
/// and by namespace annotation), and pods on another node that must never be served.
fn seed(kube: &FakeKube) {
    kube.add(
        Resource::Namespaces,
        namespace("shop", json!({"team": "payments"}), json!({})),
    );
    kube.add(
        Resource::Namespaces,
        namespace("batch", json!({"team": "ops"}), json!({})),
    );
    kube.add(
        Resource::Namespaces,
        namespace("noisy", json!({}), json!({"sluice.dev/exclude": "true"})),
    );
    kube.add(
        Resource::ReplicaSets,
        owned(
            "ReplicaSet",
            "shop",
            "web-7d4b9c",
            Some(("Deployment", "web")),
        ),
    );
    kube.add(
        Resource::Jobs,
        owned("Job", "batch", "backup-28450", Some(("CronJob", "backup"))),
    );
    kube.add(Resource::Pods, web_pod("web"));
    kube.add(
        Resource::Pods,
        pod(
            "batch",
            "backup-28450-xyz",
            "u-job",
            NODE,
            json!({"app": "backup"}),
            json!({}),
            Some(("Job", "backup-28450")),
        ),
    );
    kube.add(
        Resource::Pods,
        pod(
            "shop",
            "quiet",
            "u-quiet",
            NODE,
            json!({"app": "quiet"}),
            json!({"sluice.dev/exclude": "true"}),
            None,
        ),
    );
    kube.add(
        Resource::Pods,
        pod(
            "noisy",
            "chatty",
            "u-chatty",
            NODE,
            json!({"app": "chatty"}),
            json!({}),
            None,
        ),
    );
    for i in 0..3 {
        kube.add(
            Resource::Pods,
            pod(
                "shop",
                &format!("elsewhere-{i}"),
                &format!("u-b{i}"),
                "node-b",
                json!({"app": "elsewhere"}),
                json!({}),
                None,
            ),
        );
    }
}

fn every_pod_request_is_node_scoped(kube: &FakeKube) {
    let requests = kube.requests();
    let pods: Vec<_> = requests
        .iter()
        .filter(|r| r.resource == Resource::Pods)
        .collect();
    assert!(!pods.is_empty());
    for r in pods {
        assert_eq!(
            r.query.get("fieldSelector").map(String::as_str),
            Some("spec.nodeName=node-a"),
            "{r:?}"
        );
        if r.verb == Verb::Watch {
            assert_eq!(
                r.query.get("allowWatchBookmarks").map(String::as_str),
                Some("true")
            );
            assert!(r.query.contains_key("resourceVersion"), "{r:?}");
        }
    }
}

fn metric(agent: &Agent, name: &str, labels: &[(&str, &str)]) -> f64 {
    agent.metric_sum(name, labels)
}

#[test]
fn pod_logs_carry_labels_annotations_namespace_labels_and_workload() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&dir.path().join("pki"), "token-0");
    let kube = FakeKube::start(&pki, "token-0");
    kube.bookmark_every(Duration::from_millis(500));
    seed(&kube);
    let loki = FakeLoki::start();
    let yaml = config(dir.path(), &kube.url(), &pki, &loki, "");
    let web_log = log_path(dir.path(), "shop", "web-7d4b9c-abcde", "u-web");
    let job_log = log_path(dir.path(), "batch", "backup-28450-xyz", "u-job");
    let quiet_log = log_path(dir.path(), "shop", "quiet", "u-quiet");
    let chatty_log = log_path(dir.path(), "noisy", "chatty", "u-chatty");
    write_lines(&web_log, &lines("web", 5));
    write_lines(&job_log, &lines("job", 5));
    write_lines(&quiet_log, &lines("quiet", 5));
    write_lines(&chatty_log, &lines("chatty", 5));
    let agent = Agent::start(dir.path(), &yaml);

    // Labels, annotations, namespace labels, workload (ReplicaSet → Deployment, Job →
    // CronJob), node, IP and image.
    let web = wait_entry(&loki, "web 4");
    assert!(web.labels.contains("app=\"web\""), "{}", web.labels);
    assert!(web.labels.contains("workload=\"web\""), "{}", web.labels);
    assert!(web.labels.contains("namespace=\"shop\""), "{}", web.labels);
    assert_eq!(meta(&web, "kind"), Some("Deployment"));
    assert_eq!(meta(&web, "team"), Some("payments"));
    assert_eq!(meta(&web, "owner"), Some("alice"));
    assert_eq!(
        meta(&web, "image"),
        Some("registry.example/web-7d4b9c-abcde:1.0")
    );
    assert_eq!(meta(&web, "ip"), Some("10.244.1.7"));
    assert_eq!(meta(&web, "node"), Some(NODE));
    assert_eq!(meta(&web, "name"), Some("webshop"), "a label key with dots");
    let job = wait_entry(&loki, "job 4");
    assert!(job.labels.contains("workload=\"backup\""), "{}", job.labels);
    assert_eq!(meta(&job, "kind"), Some("CronJob"));
    assert_eq!(meta(&job, "team"), Some("ops"));
    wait_for("the excluded lines dropped", WAIT, || {
        metric(
            &agent,
            "sluice_events_dropped_total",
            &[("reason", "excluded")],
        ) == 10.0
    });
    assert_eq!(
        kube.count(Resource::ReplicaSets, Verb::Get, 200)
            + kube.count(Resource::Jobs, Verb::Get, 200),
        2,
        "one GET per owner, not per line"
    );

    // A relabel seen on the watch applies to the lines written after it.
    let version = kube.modify(Resource::Pods, web_pod("web-v2"));
    kube.wait_sent(Resource::Pods, version, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    write_lines(&web_log, &["after relabel".to_owned()]);
    let relabelled = wait_entry(&loki, "after relabel");
    assert!(
        relabelled.labels.contains("app=\"web-v2\""),
        "{}",
        relabelled.labels
    );

    // A deleted pod's late lines are still enriched within the grace period.
    let version = kube.delete(Resource::Pods, web_pod("web-v2"));
    kube.wait_sent(Resource::Pods, version, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    write_lines(&web_log, &["late line".to_owned()]);
    let late = wait_entry(&loki, "late line");
    assert!(late.labels.contains("app=\"web-v2\""), "{}", late.labels);
    assert_eq!(meta(&late, "kind"), Some("Deployment"));

    // 410 Gone as a watch ERROR event: exactly one re-list per watched resource.
    for as_http in [false, true] {
        let pods_before = kube.count(Resource::Pods, Verb::List, 200);
        let ns_before = kube.count(Resource::Namespaces, Verb::List, 200);
        let gone_before = kube.count(Resource::Pods, Verb::Watch, 410);
        kube.expire(as_http);
        wait_for("the re-lists", WAIT, || {
            kube.count(Resource::Pods, Verb::List, 200) > pods_before
                && kube.count(Resource::Namespaces, Verb::List, 200) > ns_before
        });
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(
            kube.count(Resource::Pods, Verb::List, 200),
            pods_before + 1,
            "410 (http: {as_http}): one pod re-list"
        );
        assert_eq!(
            kube.count(Resource::Namespaces, Verb::List, 200),
            ns_before + 1,
            "410 (http: {as_http}): one namespace re-list"
        );
        if as_http {
            assert_eq!(
                kube.count(Resource::Pods, Verb::Watch, 410),
                gone_before + 1
            );
        }
    }
    assert_eq!(
        metric(
            &agent,
            "sluice_kubernetes_relists_total",
            &[("resource", "pods")]
        ),
        2.0
    );

    // After the re-lists, a new pod (no owner) is enriched.
    let version = kube.add(
        Resource::Pods,
        pod(
            "shop",
            "api-1",
            "u-api",
            NODE,
            json!({"app": "api"}),
            json!({}),
            None,
        ),
    );
    kube.wait_sent(Resource::Pods, version, WAIT);
    let api_log = log_path(dir.path(), "shop", "api-1", "u-api");
    write_lines(&api_log, &["api line".to_owned()]);
    let api = wait_entry(&loki, "api line");
    assert!(api.labels.contains("app=\"api\""), "{}", api.labels);
    assert!(
        !api.labels.contains("workload="),
        "a bare pod has no workload: {}",
        api.labels
    );

    // Token rotation: the server accepts only a new token; the agent gets 401 until the
    // token file holds it, then watches again without a restart.
    kube.set_token("token-1");
    kube.drop_watches();
    wait_for("a 401", WAIT, || {
        kube.requests().iter().any(|r| r.status == 401)
    });
    std::fs::write(&pki.token_file, "token-1\n").unwrap();
    let since = Instant::now();
    wait_for("watches with the new token", WAIT, || {
        kube.requests().iter().any(|r| {
            r.resource == Resource::Pods && r.verb == Verb::Watch && r.status == 200 && r.at > since
        })
    });
    // 500 and 403 on the watch: backoff, then it works again.
    kube.fail_next(Resource::Pods, Verb::Watch, 500);
    kube.fail_next(Resource::Pods, Verb::Watch, 403);
    kube.drop_watches();
    let version = kube.modify(
        Resource::Pods,
        pod(
            "shop",
            "api-1",
            "u-api",
            NODE,
            json!({"app": "api-v3"}),
            json!({}),
            None,
        ),
    );
    kube.wait_sent(Resource::Pods, version, WAIT);
    assert_eq!(kube.count(Resource::Pods, Verb::Watch, 500), 1);
    assert_eq!(kube.count(Resource::Pods, Verb::Watch, 403), 1);
    std::thread::sleep(Duration::from_millis(300));
    write_lines(&api_log, &["api line 2".to_owned()]);
    let api = wait_entry(&loki, "api line 2");
    assert!(api.labels.contains("app=\"api-v3\""), "{}", api.labels);
    assert!(
        metric(
            &agent,
            "sluice_kubernetes_watch_restarts_total",
            &[("resource", "pods")]
        ) >= 4.0
    );
    assert_eq!(
        metric(
            &agent,
            "sluice_kubernetes_cache_objects",
            &[("resource", "pods")]
        ),
        4.0 + 1.0,
        "web (deleted, in grace), job, quiet, chatty, api"
    );

    every_pod_request_is_node_scoped(&kube);
    let texts: Vec<String> = loki.entries().into_iter().map(|e| e.line).collect();
    assert!(
        !texts
            .iter()
            .any(|l| l.starts_with("quiet") || l.starts_with("chatty")),
        "excluded lines reached the sink"
    );
    assert_eq!(
        metric(&agent, "sluice_kubernetes_enrichment_misses_total", &[]),
        0.0
    );

    // Excluded lines count as delivered: after a restart nothing is read again.
    let delivered = loki.entry_count();
    assert!(agent.terminate().success());
    let agent = Agent::start(dir.path(), &yaml);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        metric(
            &agent,
            "sluice_events_dropped_total",
            &[("reason", "excluded")]
        ),
        0.0,
        "excluded lines were checkpointed"
    );
    assert_eq!(loki.entry_count(), delivered, "nothing delivered twice");
}

#[test]
fn api_down_at_start_logs_flow_with_path_metadata_then_enrichment_starts() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&dir.path().join("pki"), "token-0");
    let port = support::free_port();
    let url = format!("https://127.0.0.1:{port}");
    let loki = FakeLoki::start();
    let yaml = config(
        dir.path(),
        &url,
        &pki,
        &loki,
        "        wait_for_pod_ms: 1000\n",
    );
    let web_log = log_path(dir.path(), "shop", "web-7d4b9c-abcde", "u-web");
    write_lines(&web_log, &lines("early", 20));
    let started = Instant::now();
    let agent = Agent::start_logged(dir.path(), &yaml);
    let early = wait_entry(&loki, "early 19");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "lines are not held while the API is down"
    );
    assert!(
        early.labels.contains("namespace=\"shop\""),
        "path metadata: {}",
        early.labels
    );
    assert!(!early.labels.contains("app="), "{}", early.labels);
    assert_eq!(meta(&early, "pod"), Some("web-7d4b9c-abcde"));
    assert!(metric(&agent, "sluice_kubernetes_enrichment_misses_total", &[]) >= 20.0);
    wait_for("/health to report the API", WAIT, || {
        agent
            .get("/health")
            .is_some_and(|(code, body)| code != 200 && body.contains("Kubernetes API"))
    });

    // Unreachable from the start (a wrong `api_url`, RBAC): said at WARN at once, with the
    // error, not only on `/health` a minute later; and not once per retry.
    let warned = |log: &str| {
        log.lines()
            .filter(|l| l.contains("WARN") && l.contains("API request failed"))
            .count()
    };
    wait_for("a WARN naming the failure", WAIT, || {
        warned(&agent.log()) >= 1
    });
    let log = agent.log();
    assert!(
        log.contains("onnection refused") || log.contains("connect"),
        "{log}"
    );
    assert_eq!(warned(&log), 1, "{log}");

    // The API server comes up: enrichment starts, /health recovers.
    let kube = FakeKube::start_on(&pki, "token-0", port);
    seed(&kube);
    wait_for("the pod list", Duration::from_secs(60), || {
        kube.count(Resource::Pods, Verb::List, 200) >= 1
    });
    std::thread::sleep(Duration::from_millis(300));
    write_lines(&web_log, &["enriched".to_owned()]);
    let enriched = wait_entry(&loki, "enriched");
    assert!(
        enriched.labels.contains("app=\"web\""),
        "{}",
        enriched.labels
    );
    wait_for("/health ok", WAIT, || {
        agent.get("/health").is_some_and(|(code, _)| code == 200)
    });
    every_pod_request_is_node_scoped(&kube);
}

/// `VmRSS` of a process, in KiB.
/// No node name (an unset `NODE_NAME`) cannot mend by itself: it is said once, as what it
/// is (not as an unreachable API server), `/health` fails at once (not after
/// `unhealthy_after_secs`), nothing is requested, and lines flow with path metadata.
#[test]
fn an_empty_node_name_is_said_at_once_and_lines_flow() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&dir.path().join("pki"), "token-0");
    let url = format!("https://127.0.0.1:{}", support::free_port());
    let loki = FakeLoki::start();
    let yaml = config(dir.path(), &url, &pki, &loki, "")
        .replace(&format!("node_name: {NODE}"), "node_name: \"\"")
        .replace("unhealthy_after_secs: 1", "unhealthy_after_secs: 600");
    let web_log = log_path(dir.path(), "shop", "web-7d4b9c-abcde", "u-web");
    write_lines(&web_log, &lines("line", 5));
    let agent = Agent::start_logged(dir.path(), &yaml);
    let entry = wait_entry(&loki, "line 4");
    assert!(
        entry.labels.contains("namespace=\"shop\""),
        "{}",
        entry.labels
    );
    wait_for("/health to name the empty node_name", WAIT, || {
        agent
            .get("/health")
            .is_some_and(|(code, body)| code != 200 && body.contains("node_name is empty"))
    });
    std::thread::sleep(Duration::from_secs(2));
    let log = agent.log();
    let said = log
        .lines()
        .filter(|l| l.contains("node_name is empty"))
        .count();
    assert_eq!(said, 1, "{log}");
    assert!(log.contains("ERROR"), "{log}");
    assert!(!log.contains("cannot reach"), "{log}");
}

fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// A `/proc/<pid>/status` figure in KiB (`VmRSS:`, `RssAnon:`, `RssFile:`).
fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// 110 pods on this node, 5,000 on others: the agent asks only for its node's pods, and
/// enrichment's memory (the process's anonymous RSS: heap, stacks, the cache) grows at
/// most 3 MiB over the same run without it. Total RSS is printed too: it also counts the
/// code pages enrichment runs (TLS client, JSON), about 1 MiB more in this test build,
/// clean and shared with the page cache. Measured on the test build, one run each:
/// anon +1.3 MiB, total +2.2 MiB (another run: total +3.2 MiB, under load).
#[test]
fn memory_is_bounded_by_the_pods_on_this_node() {
    const LOCAL: usize = 110;
    const OTHER: usize = 5_000;
    const LINES: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&dir.path().join("pki"), "token-0");
    let kube = FakeKube::start(&pki, "token-0");
    for t in 0..10 {
        kube.add(
            Resource::Namespaces,
            namespace(
                &format!("team-{t}"),
                json!({"team": format!("t{t}")}),
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
    let mut local = Vec::new();
    for i in 0..LOCAL + OTHER {
        let (ns, d) = (format!("team-{}", i % 10), i % 20);
        let name = format!("svc-{d}-5f6d7c-{i:05}");
        let node = if i < LOCAL {
            NODE.to_owned()
        } else {
            format!("node-{}", 1 + i % 50)
        };
        let labels = json!({"app": format!("svc-{d}"), "pod-template-hash": "5f6d7c",
            "app.kubernetes.io/part-of": "shop", "version": "1.2.3"});
        let annotations = json!({"owner": "team", "prometheus.io/scrape": "true"});
        kube.add(
            Resource::Pods,
            pod(
                &ns,
                &name,
                &format!("uid-{i:05}"),
                &node,
                labels,
                annotations,
                Some(("ReplicaSet", &format!("svc-{d}-5f6d7c"))),
            ),
        );
        if i < LOCAL {
            local.push((ns, name, format!("uid-{i:05}")));
        }
    }
    // The pods' logs, written once the agent runs (their pods exist before their logs), a
    // line per pod every 40 ms as pods log: what stays is the cache and the watcher, not a
    // burst of lines in flight (enriched events are larger while queued).
    let write_logs = |logs: &Path| {
        for n in 0..LINES {
            for (i, (ns, name, uid)) in local.iter().enumerate() {
                let line = format!("pod {i} line {n} GET /api/v1/items?page={n} 200 0.012s");
                write_lines(&log_path(logs, ns, name, uid), &[line]);
            }
            std::thread::sleep(Duration::from_millis(40));
        }
    };

    let run = |enrich: bool| -> (u64, u64, f64) {
        let data = dir.path().join(if enrich { "with" } else { "without" });
        let logs = data.join("logs");
        let loki = FakeLoki::start();
        let transform = if enrich {
            format!(
                "    transforms:\n      - type: kubernetes_metadata\n        api_url: {}\n        token_file: {}\n        ca_file: {}\n        node_name: {NODE}\n",
                kube.url(),
                pki.token_file.display(),
                pki.ca_file.display(),
            )
        } else {
            String::new()
        };
        let yaml = format!(
            r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  pods:
    sources:
      - {{ name: pods, type: file, include: ["{logs}/pods/*/*/*.log"], format: cri, read_from: beginning, glob_interval_ms: 200 }}
{transform}    sinks:
      - type: loki
        endpoint: {loki}
        labels: {{ namespace: "{{{{ namespace }}}}", app: "{{{{ pod_labels.app }}}}", workload: "{{{{ workload_name }}}}" }}
        structured_metadata: {{ pod: "{{{{ pod }}}}" }}
        batch: {{ timeout_ms: 100 }}
"#,
            data = data.display(),
            logs = logs.display(),
            loki = loki.endpoint(),
        );
        std::fs::create_dir_all(&data).unwrap();
        let agent = Agent::start(&data, &yaml);
        std::thread::sleep(Duration::from_secs(2));
        if enrich {
            wait_for("the pod list", WAIT, || {
                metric(
                    &agent,
                    "sluice_kubernetes_cache_objects",
                    &[("resource", "pods")],
                ) == LOCAL as f64
            });
        }
        write_logs(&logs);
        wait_for("every line at Loki", Duration::from_secs(120), || {
            loki.entry_count() >= LOCAL * LINES
        });
        std::thread::sleep(Duration::from_secs(2));
        let rss = rss_kib(agent.child.id());
        let anon = status_kib(agent.child.id(), "RssAnon:");
        eprintln!(
            "enrich={enrich}: VmRSS {rss} KiB = RssAnon {} + RssFile {} KiB",
            status_kib(agent.child.id(), "RssAnon:"),
            status_kib(agent.child.id(), "RssFile:"),
        );
        let pods = metric(
            &agent,
            "sluice_kubernetes_cache_objects",
            &[("resource", "pods")],
        );
        if enrich {
            let entries = loki.entries();
            assert!(
                entries.iter().all(|e| e.labels.contains("workload=\"svc-")),
                "every line enriched"
            );
        }
        drop(agent);
        (rss, anon, pods)
    };
    let (without, anon_without, _) = run(false);
    let (with, anon_with, pods) = run(true);
    eprintln!(
        "RSS without enrichment {without} KiB (anon {anon_without}), with {with} KiB (anon {anon_with})"
    );
    assert_eq!(pods, LOCAL as f64, "only this node's pods are cached");
    assert!(
        anon_with <= anon_without + 3 * 1024,
        "enrichment grew anonymous RSS by {} KiB (> 3 MiB); total RSS {without} -> {with} KiB",
        anon_with.saturating_sub(anon_without)
    );
    every_pod_request_is_node_scoped(&kube);
    assert_eq!(
        kube.count(Resource::ReplicaSets, Verb::Get, 200),
        20,
        "one GET per owner"
    );
}
