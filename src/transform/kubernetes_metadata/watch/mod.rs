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
//! The steps live beside this file: `list.rs` (paging, replacing the cache), `stream.rs`
//! (one watch request and its events), `owners.rs` (workload resolution).
//!
//! Owns: the thread, the loop that moves between list, watch and backoff, `/health` for the
//! API, housekeeping and the watch metrics. Never: blocks a worker (it only writes the
//! shared cache).

mod list;
mod owners;
mod stream;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use self::owners::Owner;
use super::cache::{Shaping, Shared};
use super::client::{encode, ApiError, Client, Endpoint};
use crate::health::HealthCheck;
use crate::telemetry::{ComponentMetrics, Counter, Gauge};

/// Items per list page.
const PAGE: usize = 500;
/// Time to a reply's headers, and for a whole list or get.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

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

    /// The collection's API path (list and watch).
    fn path(self) -> &'static str {
        match self {
            Kind::Pods => "/api/v1/pods",
            Kind::Namespaces => "/api/v1/namespaces",
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
    // No node name cannot mend itself (the config and the environment stay as they are until
    // a reload builds this again): said once, on `/health` at once, and nothing is watched.
    // Lines flow with path metadata only.
    if settings.node_name.is_empty() {
        let error = "node_name is empty (set it, or NODE_NAME from the pod's spec.nodeName): \
                     not watching the pods of every node, nothing is enriched";
        tracing::error!("kubernetes_metadata: {error}");
        metrics.health.fail(format!("Kubernetes metadata: {error}"));
        return std::future::pending().await;
    }
    // Settings that may mend (not in a pod yet, an unreadable CA or token) are retried: a
    // mounted secret may appear late. Meanwhile lines flow with path metadata only.
    let client = loop {
        let client = (|| Client::new(settings.endpoint()?))();
        match client {
            Ok(client) => break client,
            Err(error) => {
                let error = format!("{error:#}");
                tracing::warn!(%error, "kubernetes_metadata: cannot set up the API client");
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
        down: Mutex::new((Some(started), NOT_CONTACTED.into())),
    };
    tokio::join!(
        watcher.watch_loop(Kind::Pods),
        watcher.watch_loop(Kind::Namespaces),
        watcher.housekeeping()
    );
}

/// The reason on `/health` before the first request has an answer.
const NOT_CONTACTED: &str = "not contacted yet";

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
        if down.0.take().is_some() && !down.1.is_empty() && down.1 != NOT_CONTACTED {
            tracing::info!("kubernetes_metadata: the API server answers again");
        }
        self.metrics.health.ok();
    }

    fn failed(&self, resource: &str, error: &ApiError) {
        self.shared.api_ok.store(false, Ordering::Relaxed);
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        // The first failure since it last answered, or since start (a wrong `api_url` or
        // missing RBAC shows at once, not only on `/health` a minute later).
        let first = down.0.is_none() || down.1 == NOT_CONTACTED;
        down.0.get_or_insert_with(Instant::now);
        down.1 = format!("{resource}: {error}");
        if first {
            let hint = match error {
                ApiError::Status(status) if status.code == 401 => {
                    "the token was refused: check the service account token (token_file)"
                }
                ApiError::Status(status) if status.code == 403 => {
                    "check the RBAC rules: get, list and watch on pods and namespaces, get on replicasets and jobs"
                }
                _ => "",
            };
            tracing::warn!(resource, %error, hint, "kubernetes_metadata: API request failed; retrying with backoff");
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
}
