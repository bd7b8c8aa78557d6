//! A pod's workload: its controller owner, except a ReplicaSet (resolved to the Deployment
//! that owns it) and a Job (to its CronJob), read with one GET per owner object and cached
//! while a pod refers to it; when the GET fails, inferred from the ReplicaSet's
//! `pod-template-hash` suffix and tried again after [`OWNER_RETRY`].
//!
//! Owns: the owner GETs and the workload inference. Never: requests anything per log line
//! (only list and watch events resolve owners). The owner cache itself lives on the
//! [`Watcher`], trimmed by its housekeeping.

use std::time::{Duration, Instant};

use super::Watcher;
use crate::event::Value;
use crate::transform::kubernetes_metadata::cache::PodEntry;
use crate::transform::kubernetes_metadata::client::encode;
use crate::transform::kubernetes_metadata::objects::{MetaOnly, Pod};

/// How long an owner resolved by inference (its GET failed) is kept before trying again.
const OWNER_RETRY: Duration = Duration::from_secs(60);

/// A resolved owner: the workload, and whether it came from the API (else inferred).
#[derive(Debug, Clone)]
pub(super) struct Owner {
    workload: (String, String),
    exact: bool,
    at: Instant,
}

/// Owner GETs in flight at once when a list resolves its pods' owners.
const OWNER_GETS_AT_ONCE: usize = 8;

impl Watcher {
    /// Resolves the owners `pods` name that are not cached yet, each once and up to
    /// [`OWNER_GETS_AT_ONCE`] at a time, so that a list's pods (then resolved from the
    /// cache) are in the cache after the slowest GET of each group rather than after all of
    /// them one by one: lines read before the first list wait for it (2 s at most), and a
    /// node with dozens of ReplicaSets behind a slow API server would otherwise pass that.
    pub(super) async fn prefetch_owners(&self, pods: &[Pod]) {
        if !self.settings.shaping.fields.workload {
            return;
        }
        let mut seen = std::collections::HashSet::new();
        let wanted: Vec<(&Pod, &str, &str)> = pods
            .iter()
            .filter_map(|pod| {
                let owner = pod.metadata.controller()?;
                let needs_get = matches!(owner.kind.as_str(), "ReplicaSet" | "Job");
                let key = (&owner.kind, &pod.metadata.namespace, &owner.name);
                (needs_get && seen.insert(key)).then_some((pod, &*owner.kind, &*owner.name))
            })
            .collect();
        for group in wanted.chunks(OWNER_GETS_AT_ONCE) {
            let gets = group
                .iter()
                .map(|&(pod, kind, name)| self.workload(pod, kind, name));
            join_all(gets).await;
        }
    }

    /// A pod's cache entry, its workload resolved.
    pub(super) async fn pod_entry(&self, pod: &Pod) -> PodEntry {
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
}

/// Runs `futures` concurrently on this task until all are done (their outputs dropped).
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) {
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    std::future::poll_fn(|cx| {
        let mut left = false;
        for slot in &mut pending {
            if let Some(future) = slot {
                if future.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    left = true;
                }
            }
        }
        if left {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await
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
    fn join_all_runs_its_futures_at_once() {
        // The first future finishes only after the second has run: one after the other
        // would never end.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let first = async move {
            done_tx.send(rx.await.unwrap()).unwrap();
        };
        let second = async move {
            tx.send(7).unwrap();
        };
        type Job = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;
        let jobs: Vec<Job> = vec![Box::pin(first), Box::pin(second)];
        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), join_all(jobs))
                .await
                .expect("both futures finished")
        });
        assert_eq!(done_rx.try_recv(), Ok(7));
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
