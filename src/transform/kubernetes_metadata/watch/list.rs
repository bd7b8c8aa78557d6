//! The list step of list-then-watch: every page of a pod or namespace list (500 at a time,
//! following `continue` tokens and starting over once if a token expires), then the cache's
//! objects of that kind replaced by what was listed (the missing ones marked deleted, so
//! they stay for the grace period).
//!
//! Owns: paging, the list request metrics, the replace. Never: watches or backs off (the
//! watch loop in `mod.rs` does).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{Kind, Watcher, PAGE, REQUEST_TIMEOUT};
use crate::transform::kubernetes_metadata::cache::NamespaceEntry;
use crate::transform::kubernetes_metadata::client::{encode, ApiError};
use crate::transform::kubernetes_metadata::objects::{List, ListMeta, MetaOnly, Pod};

/// What the pages of one list held.
#[derive(Default)]
struct Listed {
    pods: Vec<Pod>,
    namespaces: Vec<(String, NamespaceEntry)>,
}

impl Watcher {
    /// Lists every page, replaces the cache's objects of `kind`; the list's version.
    pub(super) async fn list(&self, kind: Kind) -> Result<String, ApiError> {
        let (listed, version) = self.list_pages(kind).await?;
        match kind {
            Kind::Pods => self.replace_pods(listed.pods).await,
            Kind::Namespaces => self.replace_namespaces(listed.namespaces),
        }
        Ok(version)
    }

    /// Every page of the list of `kind`, and the list's version.
    async fn list_pages(&self, kind: Kind) -> Result<(Listed, String), ApiError> {
        let resource = kind.name();
        let path = kind.path();
        let mut listed = Listed::default();
        let mut token = String::new();
        let mut restarted = false;
        let version = loop {
            let mut query = format!("{path}?limit={PAGE}{}", self.selector(kind));
            if !token.is_empty() {
                query.push_str("&continue=");
                query.push_str(&encode(&token));
            }
            let meta = match self.list_page(kind, &query, &mut listed).await {
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
                        listed = Listed::default();
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
        Ok((listed, version))
    }

    /// One page, its items added to `listed`; the page's list metadata.
    async fn list_page(
        &self,
        kind: Kind,
        query: &str,
        listed: &mut Listed,
    ) -> Result<ListMeta, ApiError> {
        match kind {
            Kind::Pods => self
                .client
                .get_json::<List<Pod>>(query, REQUEST_TIMEOUT)
                .await
                .map(|list| {
                    listed.pods.extend(list.items);
                    list.metadata
                }),
            Kind::Namespaces => self
                .client
                .get_json::<List<MetaOnly>>(query, REQUEST_TIMEOUT)
                .await
                .map(|list| {
                    listed.namespaces.extend(list.items.iter().map(|ns| {
                        (
                            ns.metadata.name.clone(),
                            NamespaceEntry::new(ns, &self.settings.shaping),
                        )
                    }));
                    list.metadata
                }),
        }
    }

    /// The cache's pods become the listed ones (their workloads resolved); the others are
    /// deleted.
    async fn replace_pods(&self, pods: Vec<Pod>) {
        self.prefetch_owners(&pods).await;
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

    /// The cache's namespaces become the listed ones; the others are marked deleted.
    fn replace_namespaces(&self, namespaces: Vec<(String, NamespaceEntry)>) {
        let now = Instant::now();
        self.shared.update(|store| {
            let listed: HashSet<&str> = namespaces.iter().map(|(n, _)| n.as_str()).collect();
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
