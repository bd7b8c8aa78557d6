//! The watch step of list-then-watch: one `?watch=true` request from a resource version,
//! its chunked reply split into lines, each line a watch event applied to the cache
//! (`ADDED`/`MODIFIED`/`DELETED`), moving the version on (`BOOKMARK` too), or ending the
//! watch (`ERROR`, `410` included).
//!
//! Owns: the watch request and its randomised timeout, the idle limit, event decoding and
//! application. Never: lists or backs off (the watch loop in `mod.rs` decides what comes
//! next from the returned [`WatchEnd`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Kind, WatchEnd, Watcher, REQUEST_TIMEOUT};
use crate::transform::kubernetes_metadata::cache::NamespaceEntry;
use crate::transform::kubernetes_metadata::client::{encode, error_chain, ApiError};
use crate::transform::kubernetes_metadata::objects::{MetaOnly, Pod, Status, WatchEvent};

/// Longest watch event line accepted (a pod object); longer ones end the watch.
const MAX_EVENT_BYTES: usize = 16 << 20;

impl Watcher {
    /// One watch from `version` (moved on as events arrive) until it ends.
    pub(super) async fn watch(&self, kind: Kind, version: &mut String) -> WatchEnd {
        let resource = kind.name();
        let path = kind.path();
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
                    return WatchEnd::Failed(ApiError::Transport(error_chain(&error)))
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
}
