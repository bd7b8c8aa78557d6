//! `type: kubernetes_metadata`: adds what the Kubernetes API server knows about the pod an
//! event came from — labels, annotations, namespace labels, the owning workload, node, IP
//! and container image — and drops the logs of pods or namespaces annotated for exclusion.
//!
//! ```yaml
//! - type: kubernetes_metadata
//!   node_name: ${NODE_NAME}          # default: $NODE_NAME; the pod watch is scoped to it
//!   # api_url, token_file, ca_file: default in-cluster (service account, KUBERNETES_SERVICE_*)
//!   pod_labels: { exclude: [pod-template-hash, controller-revision-hash] }
//!   pod_annotations: { include: ["team.example.com/*"] }
//! ```
//!
//! Events are matched by the `pod_uid` field, else `namespace` and `pod` (what the file
//! source's `format: cri` sets from the log path; a syslog or OTLP event carrying those
//! fields is enriched the same way). Added fields: `pod_labels`, `pod_annotations`,
//! `namespace_labels` (maps: `{{ pod_labels.app }}` in a template), `workload_kind`,
//! `workload_name`, `node_name`, `pod_ip`, `container_image` (of the event's `container`).
//!
//! The metadata comes from two watches kept by one background thread (`watch/`): pods
//! with `fieldSelector=spec.nodeName=<node>` and namespaces, list-then-watch with bookmarks
//! and a re-list on `410 Gone`, into a cache of only the used fields (`cache.rs`). Nothing
//! is requested per line or per miss. The thread starts with the pipeline (the first tick),
//! not at `validate`, and stops when the pipeline's transforms are dropped.
//!
//! A line whose pod is not in the cache yet (its watch event is late) makes its worker wait
//! for the cache, at most `wait_for_pod_ms` per pod (and, until the first pod list, at most
//! that long after start); then it goes on with path metadata only, counted in
//! `sluice_kubernetes_enrichment_misses_total`. Waiting in `process` keeps delivery
//! acknowledgements exact: the batch is held, so nothing is checkpointed before it is sent.
//! A line of an excluded pod or namespace (`sluice.dev/exclude: "true"`) is dropped, which
//! counts as delivered (its position is checkpointed) and as
//! `sluice_events_dropped_total{reason="excluded"}`.
//!
//! Owns: matching events to pods, waiting for the cache, adding fields, exclusion (the
//! config and its check are in `config.rs`). Never: requests the API from a worker thread.

pub mod cache;
pub mod client;
mod config;
pub mod objects;
pub mod watch;

pub use self::config::{KeysConfig, KubernetesMetadataConfig};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use self::cache::{FieldSet, NamespaceEntry, PodEntry, Shared};
use crate::event::{self, Event, Key, LogEvent, Map, Value};
use crate::telemetry::Counter;

/// The watcher, started on first use.
enum Start {
    Pending(Box<(watch::Settings, watch::Metrics)>),
    /// Running; dropping the sender stops it.
    Running(#[allow(dead_code)] tokio::sync::watch::Sender<()>),
    /// Could not start a thread (logged).
    Failed,
}

/// What every worker clone shares.
struct Inner {
    shared: Arc<Shared>,
    fields: FieldSet,
    wait: Duration,
    misses: Counter,
    excluded: Counter,
    start: Mutex<Start>,
    /// Set once `start` left `Pending` (a lock-free check for every batch).
    started: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesMetadata")
            .field("fields", &self.fields)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn ensure_started(&self) {
        if self.started.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let mut start = self.start.lock().unwrap_or_else(|p| p.into_inner());
        // Set once `shared.started` is, below (the lock orders the two).
        if !matches!(*start, Start::Pending(_)) {
            return;
        }
        let Start::Pending(pending) = std::mem::replace(&mut *start, Start::Failed) else {
            return;
        };
        let (settings, metrics) = *pending;
        let _ = self.shared.started.set(Instant::now());
        self.started
            .store(true, std::sync::atomic::Ordering::Release);
        let (stop, stopped) = tokio::sync::watch::channel(());
        match watch::spawn(settings, self.shared.clone(), metrics, stopped) {
            Ok(_) => *start = Start::Running(stop),
            Err(error) => {
                tracing::error!(%error, "kubernetes_metadata: could not start the watcher thread")
            }
        }
    }
}

/// The pod an event refers to, as found.
type Found = (Arc<PodEntry>, Option<Arc<NamespaceEntry>>);

/// A built `kubernetes_metadata` transform (one clone per worker).
#[derive(Debug, Clone)]
pub struct KubernetesMetadata {
    inner: Arc<Inner>,
    /// This worker's last lookup: (uid, namespace, pod), the cache generation, the result.
    /// Batches come from one file at a time, so most events hit it.
    last: Option<(LastKey, u64, Option<Found>)>,
    /// The fields this worker added last, newest first, each shared by every event of its
    /// pod and container (one reference count per event instead of a copy of each field).
    /// Two, because a container's `stdout` and `stderr` lines come over two shared maps
    /// (the file's, with `stream` set) and interleave.
    overlays: [Option<Overlay>; 2],
}

/// The fields added to the events of one pod's container, built once.
#[derive(Debug, Clone)]
struct Overlay {
    pod: Arc<PodEntry>,
    namespace: Option<Arc<NamespaceEntry>>,
    container: Option<String>,
    /// The shared fields of the events it was made for (a file's `file`, `namespace`,
    /// `pod`…): `fields` holds them too, so an event takes `fields` in their place
    /// ([`Map::reshare`]) instead of copying them in.
    under: Option<Arc<event::Shared>>,
    /// The pod's fields alone.
    added: Map,
    /// The event it was made for read its pod and container from `under` alone (no own
    /// field shadowed them): another event over the same `under` is of the same pod.
    from_under: bool,
    fields: Arc<event::Shared>,
}

impl Overlay {
    fn is_for(
        &self,
        pod: &Arc<PodEntry>,
        ns: Option<&Arc<NamespaceEntry>>,
        container: Option<&str>,
        under: Option<&Arc<event::Shared>>,
    ) -> bool {
        same_arc(self.under.as_ref(), under)
            && Arc::ptr_eq(&self.pod, pod)
            && same_arc(self.namespace.as_ref(), ns)
            && self.container.as_deref() == container
    }
}

/// The fields that say which pod and container an event is of.
const KEY_FIELDS: [&str; 4] = ["container", "namespace", "pod", "pod_uid"];

/// True when an own field of `fields` names the pod or container (then the shared ones
/// alone do not say which).
fn shadows_key(fields: &Map) -> bool {
    fields.own().any(|(name, _)| KEY_FIELDS.contains(&name))
}

/// Both absent, or both the same allocation.
fn same_arc<T>(a: Option<&Arc<T>>, b: Option<&Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq)]
struct LastKey {
    uid: Option<String>,
    namespace: String,
    pod: String,
}

/// The pod identity an event carries.
struct EventKey<'a> {
    uid: Option<&'a str>,
    namespace: &'a str,
    pod: &'a str,
}

impl<'a> EventKey<'a> {
    fn of(log: &'a LogEvent) -> Option<Self> {
        let text = |name| log.fields.get(name).and_then(Value::as_str);
        let uid = text("pod_uid").filter(|u| !u.is_empty());
        match (text("namespace"), text("pod")) {
            (Some(namespace), Some(pod)) => Some(EventKey {
                uid,
                namespace,
                pod,
            }),
            _ => uid.map(|uid| EventKey {
                uid: Some(uid),
                namespace: "",
                pod: "",
            }),
        }
    }

    fn matches(&self, last: &LastKey) -> bool {
        self.uid == last.uid.as_deref() && self.namespace == last.namespace && self.pod == last.pod
    }

    fn owned(&self) -> LastKey {
        LastKey {
            uid: self.uid.map(str::to_owned),
            namespace: self.namespace.to_owned(),
            pod: self.pod.to_owned(),
        }
    }

    fn miss_key(&self) -> String {
        match self.uid {
            Some(uid) => uid.to_owned(),
            None => cache::name_key(self.namespace, self.pod),
        }
    }
}

impl KubernetesMetadata {
    /// Adds the pod metadata to each log event of a pod; drops excluded pods' events.
    pub fn process(&mut self, events: Vec<Event>, out: &mut Vec<Event>) {
        self.inner.ensure_started();
        super::retain_into(events, out, |event| match event {
            Event::Log(log) => self.enrich(log),
            Event::Metric(_) => true,
        });
    }

    /// Adds the pod metadata to `log`; false when its pod or namespace is excluded.
    fn enrich(&mut self, log: &mut LogEvent) -> bool {
        if let Some(overlay) = self.same_file(log) {
            log.fields.reshare(overlay.fields.clone(), &overlay.added);
            return true;
        }
        let Some(key) = EventKey::of(log) else {
            return true;
        };
        let container = log.fields.get("container").and_then(Value::as_str);
        if let Some(overlay) = self.cached(&key, container, log.fields.shared()) {
            log.fields.reshare(overlay.fields.clone(), &overlay.added);
            return true;
        }
        let found = match self.lookup(&key) {
            Some(found) if found.1.is_none() => self.wait_for_namespaces(&key, found),
            Some(found) => Some(found),
            None => self.wait_for(&key),
        };
        let Some((pod, ns)) = found else {
            self.inner.misses.inc();
            return true;
        };
        if pod.excluded || ns.as_ref().is_some_and(|ns| ns.excluded) {
            self.inner.excluded.inc();
            return false;
        }
        let under = log.fields.shared();
        let made = self.overlays.iter().position(|overlay| {
            overlay
                .as_ref()
                .is_some_and(|o| o.is_for(&pod, ns.as_ref(), container, under))
        });
        let overlay = match made {
            Some(i) => self.overlays[i].as_ref().expect("found above"),
            None => {
                let added = fields_of(&pod, ns.as_deref(), container, self.inner.fields);
                let [newest, older] = &mut self.overlays;
                *older = newest.take();
                newest.insert(Overlay {
                    fields: match under {
                        Some(under) => under.extended(&added),
                        None => event::Shared::new(added.clone()),
                    },
                    added,
                    from_under: !shadows_key(&log.fields),
                    container: container.map(str::to_owned),
                    under: under.cloned(),
                    pod,
                    namespace: ns,
                })
            }
        };
        log.fields.reshare(overlay.fields.clone(), &overlay.added);
        true
    }

    /// Its workers tick (the first tick starts the watcher).
    pub const TICKS: bool = true;

    /// Starts the watcher with the pipeline (workers tick every 100 ms), before any line.
    pub fn tick(&mut self, _now: Instant, _out: &mut Vec<Event>) {
        self.inner.ensure_started();
    }

    /// The fields for an event of the pod and container this worker enriched last, while
    /// the cache has not changed: most events, as batches come from one file at a time.
    /// Touches no reference count but the overlay's (the pod's and namespace's are shared
    /// with the other workers and the watcher; two increments and decrements of them per
    /// event were lines bouncing between cores).
    fn cached(
        &self,
        key: &EventKey<'_>,
        container: Option<&str>,
        under: Option<&Arc<event::Shared>>,
    ) -> Option<&Overlay> {
        let (last, pod, ns) = self.last_current()?;
        if !key.matches(last) {
            return None;
        }
        self.overlays
            .iter()
            .flatten()
            .find(|overlay| overlay.is_for(pod, Some(ns), container, under))
    }

    /// The overlay for an event over the very shared fields the overlay was made over (a
    /// line of the same file), while the cache has not changed: no field is looked up.
    fn same_file(&self, log: &LogEvent) -> Option<&Overlay> {
        let shared = log.fields.shared()?;
        let overlay = self.overlays.iter().flatten().find(|overlay| {
            overlay.from_under
                && overlay
                    .under
                    .as_ref()
                    .is_some_and(|under| Arc::ptr_eq(shared, under))
        })?;
        let (_, pod, ns) = self.last_current()?;
        let current =
            Arc::ptr_eq(&overlay.pod, pod) && same_arc(overlay.namespace.as_ref(), Some(ns));
        (current && !shadows_key(&log.fields)).then_some(overlay)
    }

    /// The pod (and its namespace) this worker looked up last, while the cache has not
    /// changed since and neither is excluded.
    fn last_current(&self) -> Option<(&LastKey, &Arc<PodEntry>, &Arc<NamespaceEntry>)> {
        let (last, at, found) = self.last.as_ref()?;
        let (pod, Some(ns)) = found.as_ref()? else {
            return None;
        };
        let generation = self
            .inner
            .shared
            .generation
            .load(std::sync::atomic::Ordering::Acquire);
        (*at == generation && !pod.excluded && !ns.excluded).then_some((last, pod, ns))
    }

    fn lookup(&mut self, key: &EventKey<'_>) -> Option<Found> {
        let shared = &self.inner.shared;
        let generation = shared.generation.load(std::sync::atomic::Ordering::Acquire);
        if let Some((last, at, found)) = &self.last {
            if *at == generation && key.matches(last) {
                return found.clone();
            }
        }
        let found = {
            let store = shared.read();
            store.pod(key.uid, key.namespace, key.pod).map(|pod| {
                let ns = store.namespaces.get(&pod.namespace).cloned();
                (pod.clone(), ns)
            })
        };
        self.last = Some((key.owned(), generation, found.clone()));
        found
    }

    /// A pod found before the namespaces were listed: its namespace's exclusion is not
    /// known yet, so wait for the namespace list within the start-up bound.
    fn wait_for_namespaces(&mut self, key: &EventKey<'_>, found: Found) -> Option<Found> {
        let shared = self.inner.shared.clone();
        if shared
            .namespaces_synced
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return Some(found);
        }
        let Some(started) = shared.started.get() else {
            return Some(found);
        };
        let deadline = *started + self.inner.wait;
        // Not a spin: `wait_change` blocks until the store changes or the deadline.
        loop {
            if shared
                .namespaces_synced
                .load(std::sync::atomic::Ordering::Acquire)
                || !shared.wait_change(deadline)
            {
                break;
            }
        }
        self.lookup(key).or(Some(found))
    }

    /// Waits for a missing pod within its bound; `None` when it did not come.
    fn wait_for(&mut self, key: &EventKey<'_>) -> Option<Found> {
        let shared = self.inner.shared.clone();
        let now = Instant::now();
        let deadline = if shared
            .pods_synced
            .load(std::sync::atomic::Ordering::Acquire)
        {
            shared.first_miss(&key.miss_key(), now)? + self.inner.wait
        } else {
            // Until the first list: wait for it, at most `wait` after start (an API server
            // down at start costs one such wait, not one per pod).
            *shared.started.get()? + self.inner.wait
        };
        while shared.wait_change(deadline) {
            if let Some(found) = self.lookup(key) {
                return Some(found);
            }
        }
        self.lookup(key)
    }
}

/// The fields added to the events of `pod`'s `container`, in one map that they share.
fn fields_of(
    pod: &PodEntry,
    ns: Option<&NamespaceEntry>,
    container: Option<&str>,
    fields: FieldSet,
) -> Map {
    let mut out: Vec<(Key, Value)> = Vec::with_capacity(8);
    let mut add =
        |name: &'static str, value: &Value| out.push((Key::Borrowed(name), value.clone()));
    if fields.container_image {
        if let Some((_, image)) = container.and_then(|c| pod.images.iter().find(|(n, _)| n == c)) {
            add("container_image", image);
        }
    }
    if let Some(labels) = ns.and_then(|ns| ns.labels.as_ref()) {
        add("namespace_labels", labels);
    }
    if let Some(node) = &pod.node_name {
        add("node_name", node);
    }
    if let Some(annotations) = &pod.annotations {
        add("pod_annotations", annotations);
    }
    if let Some(ip) = &pod.pod_ip {
        add("pod_ip", ip);
    }
    if let Some(labels) = &pod.labels {
        add("pod_labels", labels);
    }
    if let Some((kind, name)) = &pod.workload {
        add("workload_kind", kind);
        add("workload_name", name);
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::cache::{KeyFilter, Shaping};
    use super::*;
    use crate::transform::tests::build;

    fn pod_event(namespace: &str, pod: &str, container: &str) -> Event {
        let mut log = LogEvent::new("line");
        log.insert("namespace", namespace);
        log.insert("pod", pod);
        log.insert("container", container);
        Event::Log(log)
    }

    fn transform(yaml: &str) -> KubernetesMetadata {
        match build(yaml).unwrap() {
            super::super::Transform::KubernetesMetadata(t) => t,
            other => panic!("{other:?}"),
        }
    }

    fn seed(t: &KubernetesMetadata, pod_json: serde_json::Value, ns_json: serde_json::Value) {
        let shaping = Shaping {
            pod_labels: KeyFilter::default(),
            pod_annotations: KeyFilter::default(),
            namespace_labels: KeyFilter::default(),
            exclude_annotation: "sluice.dev/exclude".into(),
            fields: t.inner.fields,
        };
        let pod: objects::Pod = serde_json::from_value(pod_json).unwrap();
        let ns: objects::MetaOnly = serde_json::from_value(ns_json).unwrap();
        let mut entry = PodEntry::new(&pod, &shaping);
        entry.workload = Some(("Deployment".into(), "web".into()));
        let ns_entry = NamespaceEntry::new(&ns, &shaping);
        t.inner.shared.update(|s| {
            s.upsert_pod(entry);
            s.namespaces
                .insert(ns.metadata.name.clone(), Arc::new(ns_entry));
        });
        for synced in [
            &t.inner.shared.pods_synced,
            &t.inner.shared.namespaces_synced,
        ] {
            synced.store(true, std::sync::atomic::Ordering::Release);
        }
    }

    /// A transform whose watcher never starts (it is marked failed), seeded by hand.
    fn offline(yaml: &str) -> KubernetesMetadata {
        let t = transform(yaml);
        *t.inner.start.lock().unwrap() = Start::Failed;
        t.inner
            .started
            .store(true, std::sync::atomic::Ordering::Release);
        let _ = t.inner.shared.started.set(Instant::now());
        t
    }

    #[test]
    fn enriches_excludes_and_passes_other_events() {
        let mut t = offline("{ type: kubernetes_metadata, wait_for_pod_ms: 0 }");
        seed(
            &t,
            serde_json::json!({"metadata": {"name": "web-1", "namespace": "shop", "uid": "u1",
                "labels": {"app": "web"}, "annotations": {"team": "a"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "web:2"}]},
                "status": {"podIP": "10.1.2.3"}}),
            serde_json::json!({"metadata": {"name": "shop", "labels": {"env": "prod"}}}),
        );
        seed(
            &t,
            serde_json::json!({"metadata": {"name": "noisy", "namespace": "shop", "uid": "u2",
                "annotations": {"sluice.dev/exclude": "true"}}}),
            serde_json::json!({"metadata": {"name": "shop", "labels": {"env": "prod"}}}),
        );
        let mut out = Vec::new();
        t.process(
            vec![
                pod_event("shop", "web-1", "app"),
                pod_event("shop", "noisy", "app"),
                pod_event("shop", "unknown", "app"),
                Event::Log(LogEvent::new("no pod")),
            ],
            &mut out,
        );
        assert_eq!(out.len(), 3, "the excluded pod's line is dropped");
        let log = out[0].as_log().unwrap();
        let text = |name: &str| log.lookup(name).map(|v| v.to_text().into_owned());
        assert_eq!(text("pod_labels.app").as_deref(), Some("web"));
        assert_eq!(text("pod_annotations.team").as_deref(), Some("a"));
        assert_eq!(text("namespace_labels.env").as_deref(), Some("prod"));
        assert_eq!(text("workload_kind").as_deref(), Some("Deployment"));
        assert_eq!(text("workload_name").as_deref(), Some("web"));
        assert_eq!(text("node_name").as_deref(), Some("n1"));
        assert_eq!(text("pod_ip").as_deref(), Some("10.1.2.3"));
        assert_eq!(text("container_image").as_deref(), Some("web:2"));
        assert!(out[1].as_log().unwrap().get("pod_labels").is_none());
        assert_eq!(t.inner.misses.get(), 1);
        assert_eq!(t.inner.excluded.get(), 1);
    }

    /// The fields the file source shares among the lines of pod `shop/web-1`'s `app` log.
    fn web_1_file_fields() -> Arc<event::Shared> {
        let mut file = Map::new();
        file.insert("file", Value::from("/var/log/pods/shop_web-1_u/app/0.log"));
        file.insert("namespace", Value::from("shop"));
        file.insert("pod", Value::from("web-1"));
        file.insert("container", Value::from("app"));
        event::Shared::new(file)
    }

    /// Lines of one file share its fields (as the file source makes them): each gets the
    /// pod's fields over the file's, and a line whose own field names another pod is
    /// enriched for that pod, not for the file's.
    #[test]
    fn lines_sharing_a_files_fields_are_enriched_for_the_pod_they_name() {
        let mut t = offline("{ type: kubernetes_metadata, wait_for_pod_ms: 0 }");
        for (name, app) in [("web-1", "web"), ("db-1", "db")] {
            seed(
                &t,
                serde_json::json!({"metadata": {"name": name, "namespace": "shop",
                    "uid": format!("u-{name}"), "labels": {"app": app}}}),
                serde_json::json!({"metadata": {"name": "shop"}}),
            );
        }
        let file = web_1_file_fields();
        let line = |own: &[(&'static str, &str)]| {
            let mut fields = Map::new();
            for (name, value) in own {
                fields.insert(*name, Value::from(*value));
            }
            let mut log = LogEvent::new("line");
            log.fields = Map::layered(fields, file.clone());
            Event::Log(log)
        };
        let mut out = Vec::new();
        t.process(
            vec![
                line(&[("stream", "stdout")]),
                line(&[]),
                line(&[("pod", "db-1")]),
                line(&[("stream", "stderr")]),
            ],
            &mut out,
        );
        let app = |i: usize| {
            let log = out[i].as_log().unwrap();
            log.lookup("pod_labels.app")
                .map(|v| v.to_text().into_owned())
        };
        assert_eq!(app(0).as_deref(), Some("web"));
        assert_eq!(app(1).as_deref(), Some("web"));
        assert_eq!(app(2).as_deref(), Some("db"), "its own `pod` names db-1");
        assert_eq!(app(3).as_deref(), Some("web"));
        for (i, log) in out.iter().map(|e| e.as_log().unwrap()).enumerate() {
            assert_eq!(
                log.get("file").and_then(Value::as_str),
                Some("/var/log/pods/shop_web-1_u/app/0.log"),
                "line {i}"
            );
        }
        assert_eq!(
            out[0]
                .as_log()
                .unwrap()
                .get("stream")
                .and_then(Value::as_str),
            Some("stdout")
        );
        assert_eq!(
            out[2].as_log().unwrap().get("pod").and_then(Value::as_str),
            Some("db-1")
        );
        assert!(
            out[1].as_log().unwrap().fields.shared().is_some(),
            "the file's fields are not copied into the line"
        );
    }

    #[test]
    fn interleaved_stdout_and_stderr_lines_keep_one_overlay_each() {
        let mut t = offline("{ type: kubernetes_metadata, wait_for_pod_ms: 0 }");
        seed(
            &t,
            serde_json::json!({"metadata": {"name": "web-1", "namespace": "shop",
                "uid": "u-web-1", "labels": {"app": "web"}}}),
            serde_json::json!({"metadata": {"name": "shop"}}),
        );
        // What the file source shares: the file's fields, with `stream` per stream.
        let file = web_1_file_fields();
        let streams =
            ["stdout", "stderr"].map(|s| file.extended(&Map::from([("stream", Value::from(s))])));
        let line = |i: usize| {
            let mut log = LogEvent::new(format!("line {i}"));
            log.fields = Map::layered(Map::new(), streams[i % 2].clone());
            Event::Log(log)
        };
        let mut out = Vec::new();
        t.process((0..6).map(line).collect(), &mut out);
        for (i, event) in out.iter().enumerate() {
            let log = event.as_log().unwrap();
            let text = |path: &str| log.lookup(path).map(|v| v.to_text().into_owned());
            assert_eq!(text("pod_labels.app").as_deref(), Some("web"), "line {i}");
            let stream = ["stdout", "stderr"][i % 2];
            assert_eq!(text("stream").as_deref(), Some(stream), "line {i}");
            assert_eq!(text("pod").as_deref(), Some("web-1"), "line {i}");
        }
        let shared = |i: usize| out[i].as_log().unwrap().fields.shared().unwrap().clone();
        assert!(
            Arc::ptr_eq(&shared(0), &shared(4)),
            "stdout lines share one overlay"
        );
        assert!(
            Arc::ptr_eq(&shared(1), &shared(5)),
            "stderr lines share one overlay"
        );
        assert!(!Arc::ptr_eq(&shared(0), &shared(1)));
    }

    #[test]
    fn a_missing_pod_waits_for_the_cache_once_within_the_bound() {
        let mut t =
            offline("{ type: kubernetes_metadata, wait_for_pod_ms: 300, fields: [pod_labels] }");
        t.inner
            .shared
            .pods_synced
            .store(true, std::sync::atomic::Ordering::Release);
        let started = Instant::now();
        let mut out = Vec::new();
        t.process(vec![pod_event("ns", "late", "c")], &mut out);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        let started = Instant::now();
        t.process(vec![pod_event("ns", "late", "c")], &mut out);
        assert!(
            started.elapsed() < Duration::from_millis(100),
            "a pod waits once"
        );
        // A pod that arrives while a line waits for it enriches that line.
        let other = t.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            seed(
                &other,
                serde_json::json!({"metadata": {"name": "soon", "namespace": "ns", "uid": "u9", "labels": {"a": "b"}}}),
                serde_json::json!({"metadata": {"name": "ns"}}),
            );
        });
        out.clear();
        t.process(vec![pod_event("ns", "soon", "c")], &mut out);
        writer.join().unwrap();
        assert!(out[0].as_log().unwrap().lookup("pod_labels.a").is_some());
    }
}
