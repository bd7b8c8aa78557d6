//! The watcher: one thread with a small current-thread runtime that keeps the cache in step
//! with the API server through two watches, pods on this node
//! (`fieldSelector=spec.nodeName=<node>`) and namespaces, each the client-go way:
//!
//! 1. list (in pages of 500), replace the cache's objects of that kind, note the list's
//!    `metadata.resourceVersion`;
//! 2. watch from that version with `allowWatchBookmarks=true`, applying `ADDED`/`MODIFIED`/
//!    `DELETED` and moving the version on with every event and `BOOKMARK`;
//! 3. when the server ends the watch (its `timeoutSeconds`), watch again from the last
//!    version (a watch restart, no list);
//! 4. on `410 Gone` (`reason: Expired`, the version fell out of the server's window), as an
//!    HTTP reply or as a watch `ERROR` event: one re-list, then watch again;
//! 5. on any other error (refused, 401, 403, 5xx, a stream idle past the timeout): back off
//!    with jitter (250 ms doubling to 30 s, each wait drawn from its upper half) and retry
//!    the same step.
//!
//! Owners: a pod's controller owner is its workload, except a ReplicaSet (resolved to the
//! Deployment that owns it) and a Job (to its CronJob). These two are read with one GET per
//! owner object, cached while a pod refers to it; if the GET fails (no RBAC, deleted) the
//! Deployment is inferred from the ReplicaSet's `pod-template-hash` suffix and a Job stays a
//! Job, tried again a minute later. No request is ever made per log line or per cache miss.
//!
//! Owns: the thread, the request loops, `/health` for the API and the watch metrics. Never:
//! blocks a worker (it only writes the shared cache).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cache::{NamespaceEntry, PodEntry, Shaping, Shared};
use super::client::{encode, ApiError, Client, Endpoint};
use super::objects::{List, MetaOnly, Pod, Status, WatchEvent};
use crate::event::Value;
use crate::health::HealthCheck;
use crate::telemetry::{ComponentMetrics, Counter, Gauge};

/// Items per list page.
const PAGE: usize = 500;
/// Longest watch event line accepted (a pod object); longer ones end the watch.
const MAX_EVENT_BYTES: usize = 16 << 20;
/// Time to a reply's headers, and for a whole list or get.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an owner resolved by inference (its GET failed) is kept before trying again.
const OWNER_RETRY: Duration = Duration::from_secs(60);

/// What the watcher needs, from the transform's config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Explicit API URL; `None`: in-cluster.
    pub api_url: Option<String>,
    /// Explicit token file; in-cluster default otherwise.
    pub token_file: Option<std::path::PathBuf>,
    /// Explicit CA file; in-cluster default otherwise.
    pub ca_file: Option<std::path::PathBuf>,
    /// This node's name (the pod watch's field selector).
    pub node_name: String,
    /// How long deleted objects stay.
    pub grace: Duration,
    /// `timeoutSeconds` of a watch request.
    pub watch_timeout: Duration,
    /// `/health` fails once the API has been unreachable this long.
    pub unhealthy_after: Duration,
    /// Reduction of objects to cache entries.
    pub shaping: Shaping,
}

impl Settings {
    fn endpoint(&self) -> anyhow::Result<Endpoint> {
        let dir = std::path::Path::new(super::client::SERVICE_ACCOUNT_DIR);
        Ok(match &self.api_url {
            Some(url) => Endpoint {
                base: url.trim_end_matches('/').to_owned(),
                token_file: self.token_file.clone(),
                ca_file: self.ca_file.clone(),
            },
            None => Endpoint {
                base: super::client::in_cluster_base()?,
                token_file: Some(self.token_file.clone().unwrap_or(dir.join("token"))),
                ca_file: Some(self.ca_file.clone().unwrap_or(dir.join("ca.crt"))),
            },
        })
    }
}

/// The watch metrics of one transform.
#[derive(Debug, Clone)]
pub struct Metrics {
    metrics: ComponentMetrics,
    health: HealthCheck,
}

impl Metrics {
    /// Handles labelled with the transform's pipeline and id.
    pub fn new(metrics: ComponentMetrics, health: HealthCheck) -> Self {
        Metrics { metrics, health }
    }

    fn restarts(&self, resource: &str) -> Counter {
        self.metrics.counter(
            "sluice_kubernetes_watch_restarts_total",
            "Kubernetes watches started again (server timeout, error or 410 Gone), by resource.",
            &[("resource", resource)],
        )
    }

    fn relists(&self, resource: &str) -> Counter {
        self.metrics.counter(
            "sluice_kubernetes_relists_total",
            "Kubernetes lists made after the first one (a 410 Gone or an error), by resource.",
            &[("resource", resource)],
        )
    }

    fn requests(&self, resource: &str, verb: &str, code: &str) -> Counter {
        self.metrics.counter(
            "sluice_kubernetes_api_requests_total",
            "Requests to the Kubernetes API server, by resource, verb and reply code.",
            &[("resource", resource), ("verb", verb), ("code", code)],
        )
    }

    fn cache(&self, resource: &str) -> Gauge {
        self.metrics.gauge(
            "sluice_kubernetes_cache_objects",
            "Objects held in the Kubernetes metadata cache, by resource.",
            &[("resource", resource)],
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pods,
    Namespaces,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Pods => "pods",
            Kind::Namespaces => "namespaces",
        }
    }
}

/// Exponential backoff with jitter: 250 ms doubling to 30 s; each wait is drawn from the
/// upper half of the current step, so agents on many nodes do not retry in step.
struct Backoff {
    step: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(30);

    fn new() -> Self {
        Backoff { step: Self::FIRST }
    }

    fn reset(&mut self) {
        self.step = Self::FIRST;
    }

    fn next(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(Self::MAX);
        let half = step.as_millis() as u64 / 2;
        Duration::from_millis(half + fastrand::u64(0..=half))
    }
}

/// A resolved owner: the workload, and whether it came from the API (else inferred).
#[derive(Debug, Clone)]
struct Owner {
    workload: (String, String),
    exact: bool,
    at: Instant,
}

/// The watcher's state, shared by its two loops (one thread, so the locks never contend).
struct Watcher {
    client: Client,
    settings: Settings,
    shared: Arc<Shared>,
    metrics: Metrics,
    owners: Mutex<HashMap<(String, String, String), Owner>>,
    /// Since when the API has not answered (`None` while it does), and the last error.
    down: Mutex<(Option<Instant>, String)>,
}

/// Runs the watcher on a thread of its own until `stop`'s sender is dropped.
pub fn spawn(
    settings: Settings,
    shared: Arc<Shared>,
    metrics: Metrics,
    mut stop: tokio::sync::watch::Receiver<()>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("kubernetes-watch".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::error!(%error, "kubernetes_metadata: no runtime for the watcher");
                    return;
                }
            };
            let health = metrics.health.clone();
            runtime.block_on(async move {
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = run(settings, shared, metrics) => {}
                }
            });
            health.ok();
        })
}

async fn run(settings: Settings, shared: Arc<Shared>, metrics: Metrics) {
    let started = Instant::now();
    let mut backoff = Backoff::new();
    // Settings that cannot work (not in a pod, no node name, an unreadable CA) are retried:
    // a mounted secret may appear late. Meanwhile lines flow with path metadata only.
    let client = loop {
        let client = (|| {
            anyhow::ensure!(
                !settings.node_name.is_empty(),
                "node_name is empty (set it, or NODE_NAME from the pod's spec.nodeName): \
                 refusing to watch the pods of every node"
            );
            Client::new(settings.endpoint()?)
        })();
        match client {
            Ok(client) => break client,
            Err(error) => {
                let error = format!("{error:#}");
                tracing::warn!(%error, "kubernetes_metadata: cannot reach the API server");
                if started.elapsed() >= settings.unhealthy_after {
                    metrics.health.fail(format!("Kubernetes API: {error}"));
                }
                tokio::time::sleep(backoff.next()).await;
            }
        }
    };
    let watcher = Watcher {
        client,
        settings,
        shared,
        metrics,
        owners: Mutex::new(HashMap::new()),
        down: Mutex::new((Some(started), "not contacted yet".into())),
    };
    tokio::join!(
        watcher.watch_loop(Kind::Pods),
        watcher.watch_loop(Kind::Namespaces),
        watcher.housekeeping()
    );
}

/// How a watch ended.
enum WatchEnd {
    /// The server closed it (its timeout): watch again from the last version.
    Closed,
    /// 410 Gone: list again.
    Gone,
    /// Anything else: back off.
    Failed(ApiError),
}

impl Watcher {
    fn up(&self) {
        self.shared.api_ok.store(true, Ordering::Relaxed);
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        if down.0.take().is_some() && !down.1.is_empty() && down.1 != "not contacted yet" {
            tracing::info!("kubernetes_metadata: the API server answers again");
        }
        self.metrics.health.ok();
    }

    fn failed(&self, resource: &str, error: &ApiError) {
        self.shared.api_ok.store(false, Ordering::Relaxed);
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        let first = down.0.is_none();
        down.0.get_or_insert_with(Instant::now);
        down.1 = format!("{resource}: {error}");
        if first {
            tracing::warn!(resource, %error, "kubernetes_metadata: API request failed; retrying with backoff");
        } else {
            tracing::debug!(resource, %error, "kubernetes_metadata: API request failed");
        }
    }

    fn selector(&self, kind: Kind) -> String {
        match kind {
            Kind::Pods => format!(
                "&fieldSelector={}",
                encode(&format!("spec.nodeName={}", self.settings.node_name))
            ),
            Kind::Namespaces => String::new(),
        }
    }

    async fn watch_loop(&self, kind: Kind) {
        let resource = kind.name();
        let mut version: Option<String> = None;
        let mut backoff = Backoff::new();
        let mut listed_once = false;
        loop {
            let listed_at = Instant::now();
            if version.is_none() {
                if listed_once {
                    self.metrics.relists(resource).inc();
                }
                match self.list(kind).await {
                    Ok(v) => {
                        listed_once = true;
                        version = Some(v);
                        self.up();
                    }
                    Err(error) => {
                        self.failed(resource, &error);
                        tokio::time::sleep(backoff.next()).await;
                        continue;
                    }
                }
            }
            let Some(from) = version.as_mut() else {
                continue;
            };
            let opened = Instant::now();
            let end = self.watch(kind, from).await;
            self.metrics.restarts(resource).inc();
            // A watch that ends at once (again and again) must not spin: back off unless it
            // lasted a while. A 410 right after a fresh list is treated the same way.
            let short = opened.elapsed() < Duration::from_secs(1);
            match end {
                WatchEnd::Closed => {
                    if short {
                        tokio::time::sleep(backoff.next()).await;
                    } else {
                        backoff.reset();
                    }
                }
                WatchEnd::Gone => {
                    tracing::info!(
                        resource,
                        "kubernetes_metadata: watch version expired (410 Gone): listing again"
                    );
                    version = None;
                    if listed_at.elapsed() < Duration::from_secs(1) {
                        tokio::time::sleep(backoff.next()).await;
                    } else {
                        backoff.reset();
                    }
                }
                WatchEnd::Failed(error) => {
                    self.failed(resource, &error);
                    tokio::time::sleep(backoff.next()).await;
                }
            }
        }
    }

    /// Lists every page, replaces the cache's objects of `kind`; the list's version.
    async fn list(&self, kind: Kind) -> Result<String, ApiError> {
        let resource = kind.name();
        let path = match kind {
            Kind::Pods => "/api/v1/pods",
            Kind::Namespaces => "/api/v1/namespaces",
        };
        let mut pods = Vec::new();
        let mut namespaces = Vec::new();
        let mut token = String::new();
        let mut restarted = false;
        let version = loop {
            let mut query = format!("{path}?limit={PAGE}{}", self.selector(kind));
            if !token.is_empty() {
                query.push_str("&continue=");
                query.push_str(&encode(&token));
            }
            let page = match kind {
                Kind::Pods => self
                    .client
                    .get_json::<List<Pod>>(&query, REQUEST_TIMEOUT)
                    .await
                    .map(|list| {
                        pods.extend(list.items);
                        list.metadata
                    }),
                Kind::Namespaces => self
                    .client
                    .get_json::<List<MetaOnly>>(&query, REQUEST_TIMEOUT)
                    .await
                    .map(|list| {
                        namespaces.extend(list.items.iter().map(|ns| {
                            (
                                ns.metadata.name.clone(),
                                NamespaceEntry::new(ns, &self.settings.shaping),
                            )
                        }));
                        list.metadata
                    }),
            };
            let meta = match page {
                Ok(meta) => {
                    self.metrics.requests(resource, "list", "200").inc();
                    meta
                }
                Err(error) => {
                    self.metrics.requests(resource, "list", &error.code()).inc();
                    // An expired continue token: the list starts over, once.
                    if error.is_gone() && !token.is_empty() && !restarted {
                        restarted = true;
                        token.clear();
                        pods.clear();
                        namespaces.clear();
                        continue;
                    }
                    return Err(error);
                }
            };
            if meta.continue_token.is_empty() {
                break meta.resource_version;
            }
            token = meta.continue_token;
        };
        match kind {
            Kind::Pods => {
                let mut entries = Vec::with_capacity(pods.len());
                for pod in pods {
                    entries.push(self.pod_entry(&pod).await);
                }
                let now = Instant::now();
                self.shared.update(|store| {
                    let listed: HashSet<&str> = entries.iter().map(|e| e.uid.as_str()).collect();
                    let gone: Vec<String> = store
                        .pods
                        .keys()
                        .filter(|uid| !listed.contains(uid.as_str()))
                        .cloned()
                        .collect();
                    for uid in gone {
                        store.delete_pod(&uid, now);
                    }
                    for entry in entries {
                        store.upsert_pod(entry);
                    }
                });
                self.shared.pods_synced.store(true, Ordering::Release);
            }
            Kind::Namespaces => {
                let now = Instant::now();
                self.shared.update(|store| {
                    let listed: HashSet<&str> =
                        namespaces.iter().map(|(n, _)| n.as_str()).collect();
                    for (name, ns) in store.namespaces.iter_mut() {
                        if !listed.contains(name.as_str()) && ns.deleted_at.is_none() {
                            Arc::make_mut(ns).deleted_at = Some(now);
                        }
                    }
                    for (name, entry) in namespaces {
                        store.namespaces.insert(name, Arc::new(entry));
                    }
                });
                self.shared.namespaces_synced.store(true, Ordering::Release);
            }
        }
        Ok(version)
    }

    /// One watch from `version` (moved on as events arrive) until it ends.
    async fn watch(&self, kind: Kind, version: &mut String) -> WatchEnd {
        let resource = kind.name();
        let path = match kind {
            Kind::Pods => "/api/v1/pods",
            Kind::Namespaces => "/api/v1/namespaces",
        };
        // Like client-go, a random timeout in [t, 2t) so the watches of many agents do not
        // end together.
        let secs = self.settings.watch_timeout.as_secs().max(1);
        let timeout = secs + fastrand::u64(0..secs);
        let query = format!(
            "{path}?watch=true&resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds={timeout}{}",
            encode(version),
            self.selector(kind)
        );
        let mut response = match self.client.get(&query, REQUEST_TIMEOUT).await {
            Ok(response) => response,
            Err(error) => {
                self.metrics
                    .requests(resource, "watch", &error.code())
                    .inc();
                return if error.is_gone() {
                    WatchEnd::Gone
                } else {
                    WatchEnd::Failed(error)
                };
            }
        };
        self.metrics.requests(resource, "watch", "200").inc();
        self.up();
        // The server sends at least a bookmark every minute or so; silence well past the
        // requested timeout means the connection is dead.
        let idle = Duration::from_secs(timeout + 30);
        let mut buffer: Vec<u8> = Vec::new();
        loop {
            let chunk = match tokio::time::timeout(idle, response.chunk()).await {
                Err(_) => {
                    return WatchEnd::Failed(ApiError::Transport(format!(
                        "watch silent for {idle:?}"
                    )))
                }
                Ok(Err(error)) => {
                    return WatchEnd::Failed(ApiError::Transport(super::client::error_chain(
                        &error,
                    )))
                }
                Ok(Ok(None)) => return WatchEnd::Closed,
                Ok(Ok(Some(chunk))) => chunk,
            };
            buffer.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(end) = memchr::memchr(b'\n', &buffer[start..]) {
                let line = &buffer[start..start + end];
                start += end + 1;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if let Some(end) = self.apply(kind, line, version).await {
                    return end;
                }
            }
            buffer.drain(..start);
            if buffer.len() > MAX_EVENT_BYTES {
                return WatchEnd::Failed(ApiError::Transport(format!(
                    "watch event longer than {MAX_EVENT_BYTES} bytes"
                )));
            }
        }
    }

    /// Applies one watch event line; `Some` when it ends the watch.
    async fn apply(&self, kind: Kind, line: &[u8], version: &mut String) -> Option<WatchEnd> {
        let malformed = |e: serde_json::Error| {
            Some(WatchEnd::Failed(ApiError::Transport(format!(
                "malformed watch event: {e}"
            ))))
        };
        let event: WatchEvent<'_> = match serde_json::from_slice(line) {
            Ok(event) => event,
            Err(e) => return malformed(e),
        };
        let object = event.object.get();
        match event.kind {
            "ERROR" => {
                let status: Status = serde_json::from_str(object).unwrap_or_default();
                if status.code == 410 {
                    return Some(WatchEnd::Gone);
                }
                return Some(WatchEnd::Failed(ApiError::Status(status)));
            }
            "BOOKMARK" => {
                let meta: MetaOnly = match serde_json::from_str(object) {
                    Ok(meta) => meta,
                    Err(e) => return malformed(e),
                };
                *version = meta.metadata.resource_version;
            }
            "ADDED" | "MODIFIED" | "DELETED" => {
                let deleted = event.kind == "DELETED";
                match kind {
                    Kind::Pods => {
                        let pod: Pod = match serde_json::from_str(object) {
                            Ok(pod) => pod,
                            Err(e) => return malformed(e),
                        };
                        let uid = pod.metadata.uid.clone();
                        let entry = (!deleted).then_some(());
                        let entry = match entry {
                            Some(()) => Some(self.pod_entry(&pod).await),
                            None => None,
                        };
                        let now = Instant::now();
                        self.shared.update(|store| match entry {
                            Some(entry) => store.upsert_pod(entry),
                            None => store.delete_pod(&uid, now),
                        });
                        *version = pod.metadata.resource_version;
                    }
                    Kind::Namespaces => {
                        let ns: MetaOnly = match serde_json::from_str(object) {
                            Ok(ns) => ns,
                            Err(e) => return malformed(e),
                        };
                        let mut entry = NamespaceEntry::new(&ns, &self.settings.shaping);
                        if deleted {
                            entry.deleted_at = Some(Instant::now());
                        }
                        let name = ns.metadata.name.clone();
                        self.shared
                            .update(|store| store.namespaces.insert(name, Arc::new(entry)));
                        *version = ns.metadata.resource_version;
                    }
                }
            }
            other => tracing::debug!(
                kind = other,
                "kubernetes_metadata: unknown watch event type"
            ),
        }
        None
    }

    /// A pod's cache entry, its workload resolved.
    async fn pod_entry(&self, pod: &Pod) -> PodEntry {
        let mut entry = PodEntry::new(pod, &self.settings.shaping);
        if self.settings.shaping.fields.workload {
            if let Some((kind, name)) = &entry.owner {
                let (kind, name) = self.workload(pod, kind, name).await;
                entry.workload = Some((Value::String(kind), Value::String(name)));
            }
        }
        entry
    }

    /// The workload behind a pod's controller owner `kind`/`name`.
    async fn workload(&self, pod: &Pod, kind: &str, name: &str) -> (String, String) {
        let (path, parent) = match kind {
            "ReplicaSet" => ("/apis/apps/v1/namespaces/{ns}/replicasets/", "Deployment"),
            "Job" => ("/apis/batch/v1/namespaces/{ns}/jobs/", "CronJob"),
            _ => return (kind.to_owned(), name.to_owned()),
        };
        let namespace = &pod.metadata.namespace;
        let key = (kind.to_owned(), namespace.clone(), name.to_owned());
        if let Some(owner) = self
            .owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            if owner.exact || owner.at.elapsed() < OWNER_RETRY {
                return owner.workload.clone();
            }
        }
        let resource = if kind == "ReplicaSet" {
            "replicasets"
        } else {
            "jobs"
        };
        let url = format!("{}{}", path.replace("{ns}", namespace), encode(name));
        let got = self
            .client
            .get_json::<MetaOnly>(&url, Duration::from_secs(5))
            .await;
        let owner = match got {
            Ok(object) => {
                self.metrics.requests(resource, "get", "200").inc();
                let workload = match object.metadata.controller() {
                    Some(o) if o.kind == parent => (o.kind.clone(), o.name.clone()),
                    _ => (kind.to_owned(), name.to_owned()),
                };
                Owner {
                    workload,
                    exact: true,
                    at: Instant::now(),
                }
            }
            Err(error) => {
                self.metrics.requests(resource, "get", &error.code()).inc();
                tracing::debug!(%error, kind, name, "kubernetes_metadata: owner not read; inferring the workload");
                Owner {
                    workload: infer_workload(pod, kind, name),
                    exact: false,
                    at: Instant::now(),
                }
            }
        };
        let workload = owner.workload.clone();
        self.owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, owner);
        workload
    }

    /// Every second: expire deleted objects past the grace period, forget owners no pod
    /// refers to, update the cache gauges and `/health`.
    async fn housekeeping(&self) {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        loop {
            interval.tick().await;
            let now = Instant::now();
            let (pods, namespaces, used) = self.shared.update(|store| {
                store.expire(now, self.settings.grace);
                let used: HashSet<(String, String, String)> = store
                    .pods
                    .values()
                    .filter_map(|p| {
                        p.owner
                            .as_ref()
                            .map(|(k, n)| (k.clone(), p.namespace.clone(), n.clone()))
                    })
                    .collect();
                (store.pods.len(), store.namespaces.len(), used)
            });
            self.shared.forget_misses(now, Duration::from_secs(600));
            let owners = {
                let mut owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
                owners.retain(|key, _| used.contains(key));
                owners.len()
            };
            self.metrics.cache("pods").set(pods as i64);
            self.metrics.cache("namespaces").set(namespaces as i64);
            self.metrics.cache("owners").set(owners as i64);
            let down = self.down.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if let (Some(since), error) = down {
                let secs = since.elapsed().as_secs();
                if since.elapsed() >= self.settings.unhealthy_after {
                    self.metrics.health.fail(format!(
                        "Kubernetes API unreachable for {secs}s (pod metadata not updated): {error}"
                    ));
                }
            }
        }
    }
}

/// The workload when its owner object could not be read: a ReplicaSet named
/// `<deployment>-<pod-template-hash>` whose pods carry that hash belongs to the Deployment
/// (the Deployment controller names them so); otherwise the owner itself.
fn infer_workload(pod: &Pod, kind: &str, name: &str) -> (String, String) {
    if kind == "ReplicaSet" {
        if let Some(hash) = pod.metadata.labels.get("pod-template-hash") {
            if let Some(deployment) = name
                .strip_suffix(hash.as_str())
                .and_then(|rest| rest.strip_suffix('-'))
            {
                if !deployment.is_empty() {
                    return ("Deployment".into(), deployment.into());
                }
            }
        }
    }
    (kind.to_owned(), name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_in_the_upper_half() {
        let mut backoff = Backoff::new();
        let mut step = Backoff::FIRST;
        for _ in 0..12 {
            let wait = backoff.next();
            assert!(
                wait >= step / 2 && wait <= step,
                "{wait:?} for step {step:?}"
            );
            step = (step * 2).min(Backoff::MAX);
        }
        assert!(backoff.next() <= Backoff::MAX);
        backoff.reset();
        assert!(backoff.next() <= Backoff::FIRST);
    }

    #[test]
    fn infers_the_deployment_from_the_template_hash() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"pod-template-hash": "7d4b9c"}}
        }))
        .unwrap();
        assert_eq!(
            infer_workload(&pod, "ReplicaSet", "web-api-7d4b9c"),
            ("Deployment".into(), "web-api".into())
        );
        assert_eq!(
            infer_workload(&pod, "ReplicaSet", "other-1234"),
            ("ReplicaSet".into(), "other-1234".into())
        );
        assert_eq!(
            infer_workload(&pod, "Job", "backup-28450"),
            ("Job".into(), "backup-28450".into())
        );
    }
}
