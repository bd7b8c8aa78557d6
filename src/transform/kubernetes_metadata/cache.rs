//! What the watches learned, shared by the watcher thread (which writes) and the transform's
//! worker clones (which read): per pod only the fields the transform adds, already filtered
//! and shaped as event values, and per namespace its labels and exclusion.
//!
//! Memory is O(pods on this node + namespaces): the pod watch is node-scoped, objects are
//! reduced to [`PodEntry`] / [`NamespaceEntry`] as they are parsed, and a deleted object is
//! kept only for the grace period so that lines read after the deletion are still enriched.
//!
//! Owns: the store, its change signal (readers may wait for a pod to appear) and its
//! filters. Never: does I/O.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::objects::{MetaOnly, Pod};
use crate::event::{Map, Value};

/// Include / exclude globs over map keys (label or annotation names).
#[derive(Debug, Clone, Default)]
pub struct KeyFilter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

fn glob_set(key: &str, globs: &[String]) -> anyhow::Result<Option<GlobSet>> {
    if globs.is_empty() {
        return Ok(None);
    }
    crate::bounds::check(
        &format!("{key} (globs)"),
        globs.len(),
        1..=crate::bounds::MAX_GLOBS,
    )?;
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        builder.add(
            Glob::new(glob).map_err(|e| anyhow::anyhow!("{key}: invalid glob {glob:?}: {e}"))?,
        );
    }
    Ok(Some(builder.build()?))
}

impl KeyFilter {
    /// A filter keeping keys that match `include` (every key when empty) and not `exclude`.
    pub fn new(key: &str, include: &[String], exclude: &[String]) -> anyhow::Result<Self> {
        Ok(KeyFilter {
            include: glob_set(&format!("{key}.include"), include)?,
            exclude: glob_set(&format!("{key}.exclude"), exclude)?,
        })
    }

    /// True when `key` is kept.
    pub fn keeps(&self, key: &str) -> bool {
        self.include.as_ref().is_none_or(|set| set.is_match(key))
            && !self.exclude.as_ref().is_some_and(|set| set.is_match(key))
    }

    /// The kept entries as a map value.
    pub fn apply<'a>(&self, entries: impl IntoIterator<Item = (&'a String, &'a String)>) -> Value {
        let map: Map = entries
            .into_iter()
            .filter(|(k, _)| self.keeps(k))
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        Value::from(map)
    }
}

/// How objects are reduced to cache entries.
#[derive(Debug, Clone)]
pub struct Shaping {
    /// Pod labels kept.
    pub pod_labels: KeyFilter,
    /// Pod annotations kept.
    pub pod_annotations: KeyFilter,
    /// Namespace labels kept.
    pub namespace_labels: KeyFilter,
    /// The annotation that excludes a pod's or namespace's logs when `"true"`.
    pub exclude_annotation: String,
    /// Which fields are added at all (those not added are not cached either).
    pub fields: FieldSet,
}

/// The fields the transform adds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// `pod_labels`
    pub pod_labels: bool,
    /// `pod_annotations`
    pub pod_annotations: bool,
    /// `namespace_labels`
    pub namespace_labels: bool,
    /// `workload_kind` and `workload_name`
    pub workload: bool,
    /// `node_name`
    pub node_name: bool,
    /// `pod_ip`
    pub pod_ip: bool,
    /// `container_image`
    pub container_image: bool,
}

/// The names `fields:` accepts.
pub const FIELD_NAMES: &[&str] = &[
    "pod_labels",
    "pod_annotations",
    "namespace_labels",
    "workload_kind",
    "workload_name",
    "node_name",
    "pod_ip",
    "container_image",
];

impl FieldSet {
    /// From `fields:` names (already checked against [`FIELD_NAMES`]).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut set = FieldSet::default();
        for name in names {
            match name {
                "pod_labels" => set.pod_labels = true,
                "pod_annotations" => set.pod_annotations = true,
                "namespace_labels" => set.namespace_labels = true,
                "workload_kind" | "workload_name" => set.workload = true,
                "node_name" => set.node_name = true,
                "pod_ip" => set.pod_ip = true,
                "container_image" => set.container_image = true,
                _ => {}
            }
        }
        set
    }
}

/// What is kept of one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodEntry {
    /// Pod UID.
    pub uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `pod_labels` (a map), if added.
    pub labels: Option<Value>,
    /// `pod_annotations` (a map), if added.
    pub annotations: Option<Value>,
    /// `node_name`.
    pub node_name: Option<Value>,
    /// `pod_ip` (once assigned).
    pub pod_ip: Option<Value>,
    /// Container name to image.
    pub images: Vec<(String, Value)>,
    /// The controller owner as the pod names it (`ReplicaSet`, `web-7d4b9c`).
    pub owner: Option<(String, String)>,
    /// `workload_kind`, `workload_name` once resolved.
    pub workload: Option<(Value, Value)>,
    /// Carries the exclusion annotation.
    pub excluded: bool,
    /// When the watch said it was deleted (kept for the grace period).
    pub deleted_at: Option<Instant>,
    /// A static pod's mirror: the UID its logs are written under (the
    /// `kubernetes.io/config.mirror` annotation), not its own.
    pub mirror_of: Option<String>,
}

impl PodEntry {
    /// Reduces a pod to what the transform uses.
    pub fn new(pod: &Pod, shaping: &Shaping) -> Self {
        let meta = &pod.metadata;
        let fields = &shaping.fields;
        let mut images = Vec::new();
        if fields.container_image {
            for c in pod
                .spec
                .containers
                .iter()
                .chain(&pod.spec.init_containers)
                .chain(&pod.spec.ephemeral_containers)
            {
                images.push((c.name.clone(), Value::String(c.image.clone())));
            }
        }
        PodEntry {
            uid: meta.uid.clone(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            labels: fields
                .pod_labels
                .then(|| shaping.pod_labels.apply(&meta.labels)),
            annotations: fields
                .pod_annotations
                .then(|| shaping.pod_annotations.apply(&meta.annotations)),
            node_name: (fields.node_name && !pod.spec.node_name.is_empty())
                .then(|| Value::String(pod.spec.node_name.clone())),
            pod_ip: (fields.pod_ip && !pod.status.pod_ip.is_empty())
                .then(|| Value::String(pod.status.pod_ip.clone())),
            images,
            owner: meta.controller().map(|o| (o.kind.clone(), o.name.clone())),
            workload: None,
            excluded: is_excluded(&meta.annotations, &shaping.exclude_annotation),
            deleted_at: None,
            mirror_of: meta.annotations.get(MIRROR_ANNOTATION).cloned(),
        }
    }

    /// The `namespace/name` key.
    pub fn name_key(&self) -> String {
        name_key(&self.namespace, &self.name)
    }
}

/// The annotation a static pod's mirror carries: the UID of the pod the kubelet runs.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// What is kept of one namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceEntry {
    /// `namespace_labels` (a map), if added.
    pub labels: Option<Value>,
    /// Carries the exclusion annotation.
    pub excluded: bool,
    /// When the watch said it was deleted.
    pub deleted_at: Option<Instant>,
}

impl NamespaceEntry {
    /// Reduces a namespace to what the transform uses.
    pub fn new(ns: &MetaOnly, shaping: &Shaping) -> Self {
        NamespaceEntry {
            labels: shaping
                .fields
                .namespace_labels
                .then(|| shaping.namespace_labels.apply(&ns.metadata.labels)),
            excluded: is_excluded(&ns.metadata.annotations, &shaping.exclude_annotation),
            deleted_at: None,
        }
    }
}

fn is_excluded(annotations: &std::collections::BTreeMap<String, String>, name: &str) -> bool {
    annotations
        .get(name)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// `namespace/name`.
pub fn name_key(namespace: &str, name: &str) -> String {
    let mut key = String::with_capacity(namespace.len() + name.len() + 1);
    key.push_str(namespace);
    key.push('/');
    key.push_str(name);
    key
}

/// The pods and namespaces known now.
#[derive(Debug, Default)]
pub struct Store {
    /// By UID.
    pub pods: HashMap<String, Arc<PodEntry>>,
    /// `namespace/name` to the UID of the newest pod of that name.
    pub pod_names: HashMap<String, String>,
    /// By name.
    pub namespaces: HashMap<String, Arc<NamespaceEntry>>,
}

impl Store {
    /// Adds or replaces a pod (a live one: not deleted).
    pub fn upsert_pod(&mut self, entry: PodEntry) {
        self.pod_names.insert(entry.name_key(), entry.uid.clone());
        self.pods.insert(entry.uid.clone(), Arc::new(entry));
    }

    /// Marks a pod deleted at `now` (it stays for the grace period).
    pub fn delete_pod(&mut self, uid: &str, now: Instant) {
        if let Some(entry) = self.pods.get_mut(uid) {
            if entry.deleted_at.is_none() {
                Arc::make_mut(entry).deleted_at = Some(now);
            }
        }
    }

    /// Drops objects deleted more than `grace` ago.
    pub fn expire(&mut self, now: Instant, grace: Duration) {
        let expired = |at: Option<Instant>| at.is_some_and(|at| now.duration_since(at) >= grace);
        let names = &mut self.pod_names;
        self.pods.retain(|uid, pod| {
            if !expired(pod.deleted_at) {
                return true;
            }
            let key = pod.name_key();
            if names.get(&key).is_some_and(|u| u == uid) {
                names.remove(&key);
            }
            false
        });
        self.namespaces.retain(|_, ns| !expired(ns.deleted_at));
    }

    /// The pod an event names: by UID when it has one, else by namespace and name. An
    /// event whose UID is not known is not given the pod that has its name now (a
    /// StatefulSet's next pod, or the old one while the new one's ADDED is on its way),
    /// except a static pod's mirror, whose logs are written under the UID it names.
    pub fn pod(&self, uid: Option<&str>, namespace: &str, name: &str) -> Option<&Arc<PodEntry>> {
        if let Some(uid) = uid {
            if let Some(pod) = self.pods.get(uid) {
                return Some(pod);
            }
        }
        let named = self
            .pods
            .get(self.pod_names.get(&name_key(namespace, name))?)?;
        match uid {
            Some(uid) if named.mirror_of.as_deref() != Some(uid) => None,
            _ => Some(named),
        }
    }
}

/// The store with its change signal and the watch's state, shared by the watcher and all
/// worker clones of the transform.
#[derive(Debug, Default)]
pub struct Shared {
    /// The objects.
    pub store: RwLock<Store>,
    /// Bumped on every change of `store` (readers keep a per-worker last hit keyed on it).
    pub generation: AtomicU64,
    signal: (Mutex<u64>, Condvar),
    /// The pod list has completed at least once.
    pub pods_synced: AtomicBool,
    /// The namespace list has completed at least once (until then a namespace's exclusion
    /// is unknown).
    pub namespaces_synced: AtomicBool,
    /// The last request to the API server succeeded (a list, or a watch that opened).
    pub api_ok: AtomicBool,
    /// When the watcher started (the start-up wait is measured from it).
    pub started: OnceLock<Instant>,
    /// When each missing pod was first looked for (bounded; see [`Shared::first_miss`]).
    misses: Mutex<HashMap<String, Instant>>,
}

/// Missing pods remembered at most (their wait deadlines); beyond, new misses do not wait.
const MAX_MISSES: usize = 4096;

impl Shared {
    /// Applies `change` to the store and wakes readers waiting for it.
    pub fn update<R>(&self, change: impl FnOnce(&mut Store) -> R) -> R {
        let result = change(&mut self.store.write().unwrap_or_else(|p| p.into_inner()));
        self.generation.fetch_add(1, Ordering::Release);
        let (lock, condvar) = &self.signal;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        condvar.notify_all();
        result
    }

    /// Reads the store.
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks until the store changes or `deadline` passes; false at the deadline.
    pub fn wait_change(&self, deadline: Instant) -> bool {
        let (lock, condvar) = &self.signal;
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let seen = *guard;
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let (guard, _) = condvar
            .wait_timeout_while(guard, deadline - now, |count| *count == seen)
            .unwrap_or_else(|p| p.into_inner());
        *guard != seen
    }

    /// When the pod keyed `key` was first missed (now, on the first call); `None` when too
    /// many misses are remembered already.
    pub fn first_miss(&self, key: &str, now: Instant) -> Option<Instant> {
        let mut misses = self.misses.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = misses.get(key) {
            return Some(*at);
        }
        if misses.len() >= MAX_MISSES {
            // Forget misses long past their wait; if still full, this one does not wait.
            misses.retain(|_, at| now.duration_since(*at) < Duration::from_secs(60));
            if misses.len() >= MAX_MISSES {
                return None;
            }
        }
        misses.insert(key.to_owned(), now);
        Some(now)
    }

    /// Forgets misses older than `age` (the watcher calls this periodically).
    pub fn forget_misses(&self, now: Instant, age: Duration) {
        self.misses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, at| now.duration_since(*at) < age);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaping() -> Shaping {
        Shaping {
            pod_labels: KeyFilter::new("l", &[], &["pod-template-hash".into()]).unwrap(),
            pod_annotations: KeyFilter::new("a", &["team/*".into()], &[]).unwrap(),
            namespace_labels: KeyFilter::default(),
            exclude_annotation: "sluice.dev/exclude".into(),
            fields: FieldSet::from_names(FIELD_NAMES.iter().copied()),
        }
    }

    fn pod(uid: &str, name: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "uid": uid,
                "labels": {"app": "web", "pod-template-hash": "abc"},
                "annotations": {"team/owner": "x", "other": "y", "sluice.dev/exclude": "True"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "img:1"}]},
            "status": {}
        }))
        .unwrap()
    }

    #[test]
    fn a_uid_not_known_is_not_given_the_pod_that_has_its_name_now() {
        let mut store = Store::default();
        let now = Instant::now();
        store.upsert_pod(PodEntry::new(&pod("old", "sts-0"), &shaping()));
        store.delete_pod("old", now);
        store.upsert_pod(PodEntry::new(&pod("new", "sts-0"), &shaping()));
        let uid_of =
            |store: &Store, uid: Option<&str>| store.pod(uid, "ns", "sts-0").map(|p| p.uid.clone());
        assert_eq!(uid_of(&store, Some("old")).as_deref(), Some("old"));
        assert_eq!(uid_of(&store, Some("new")).as_deref(), Some("new"));
        assert_eq!(
            uid_of(&store, None).as_deref(),
            Some("new"),
            "no UID: by name"
        );
        // Past the grace period the old pod is gone: its lines get nothing, not the new one.
        store.expire(now + Duration::from_secs(120), Duration::from_secs(60));
        assert_eq!(uid_of(&store, Some("old")), None);
        // A static pod's mirror answers for the UID its logs are written under.
        let mut mirror = pod("api-uid", "kube-apiserver-n1");
        mirror
            .metadata
            .annotations
            .insert(MIRROR_ANNOTATION.into(), "config-hash".into());
        store.upsert_pod(PodEntry::new(&mirror, &shaping()));
        let found = store.pod(Some("config-hash"), "ns", "kube-apiserver-n1");
        assert_eq!(found.map(|p| p.uid.as_str()), Some("api-uid"));
    }

    #[test]
    fn entries_keep_only_what_is_used() {
        let entry = PodEntry::new(&pod("u1", "p"), &shaping());
        let Some(Value::Map(labels)) = &entry.labels else {
            panic!()
        };
        assert_eq!(labels.len(), 1, "pod-template-hash excluded");
        let Some(Value::Map(annotations)) = &entry.annotations else {
            panic!()
        };
        assert_eq!(annotations.len(), 1, "only team/* included");
        assert!(entry.excluded);
        assert_eq!(entry.pod_ip, None);
        assert_eq!(entry.images, [("c".to_owned(), Value::from("img:1"))]);
    }

    #[test]
    fn deleted_pods_stay_for_the_grace_period_and_names_follow_the_newest_uid() {
        let shared = Shared::default();
        let now = Instant::now();
        shared.update(|s| {
            s.upsert_pod(PodEntry::new(&pod("u1", "p"), &shaping()));
            s.delete_pod("u1", now);
            s.upsert_pod(PodEntry::new(&pod("u2", "p"), &shaping()));
        });
        let store = shared.read();
        assert_eq!(store.pod(None, "ns", "p").unwrap().uid, "u2");
        assert_eq!(store.pod(Some("u1"), "ns", "p").unwrap().uid, "u1");
        drop(store);
        shared.update(|s| s.expire(now + Duration::from_secs(61), Duration::from_secs(60)));
        let store = shared.read();
        assert!(store.pod(Some("u1"), "x", "y").is_none());
        assert_eq!(store.pod(None, "ns", "p").unwrap().uid, "u2");
    }

    #[test]
    fn waiting_wakes_on_change_or_times_out() {
        let shared = Arc::new(Shared::default());
        assert!(!shared.wait_change(Instant::now() + Duration::from_millis(20)));
        let writer = shared.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            writer.update(|_| ());
        });
        assert!(shared.wait_change(Instant::now() + Duration::from_secs(10)));
        thread.join().unwrap();
    }
}
