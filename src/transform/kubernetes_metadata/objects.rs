//! The parts of Kubernetes API objects the `kubernetes_metadata` transform reads, as serde
//! types. Everything else in a reply (a pod's spec beyond its containers, its status beyond
//! the IP, managed fields) is skipped while parsing, so a large pod spec costs parse time,
//! never cache memory.
//!
//! Shapes: `PodList`/`NamespaceList` (`{"kind":"PodList","metadata":{"resourceVersion":"…",
//! "continue":"…"},"items":[…]}`), watch events (`{"type":"ADDED","object":{…}}`, one JSON
//! document per line of a chunked reply) and `Status` errors (`{"kind":"Status",
//! "status":"Failure","reason":"Expired","code":410,…}`).
//!
//! Owns: the wire types. Never: does I/O.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `metadata` of any object (only the fields used).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectMeta {
    /// Object name.
    pub name: String,
    /// Namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Unique id.
    pub uid: String,
    /// The version of this object (a bookmark carries only this).
    pub resource_version: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Owners; the one with `controller: true` names the workload.
    pub owner_references: Vec<OwnerReference>,
}

/// One `metadata.ownerReferences` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OwnerReference {
    /// `ReplicaSet`, `Job`, `StatefulSet`, `DaemonSet`, `Node`, …
    pub kind: String,
    /// The owner's name.
    pub name: String,
    /// True for the managing controller.
    pub controller: Option<bool>,
}

impl ObjectMeta {
    /// The controller owner (or the only owner when none is marked).
    pub fn controller(&self) -> Option<&OwnerReference> {
        self.owner_references
            .iter()
            .find(|o| o.controller == Some(true))
            .or(match self.owner_references.as_slice() {
                [only] => Some(only),
                _ => None,
            })
    }
}

/// A pod: metadata, node, containers and IP.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Pod {
    /// Metadata.
    pub metadata: ObjectMeta,
    /// Spec (containers and node).
    pub spec: PodSpec,
    /// Status (IP).
    pub status: PodStatus,
}

/// `spec` of a pod.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpec {
    /// The node it was scheduled to.
    pub node_name: String,
    /// Containers.
    pub containers: Vec<Container>,
    /// Init containers.
    pub init_containers: Vec<Container>,
    /// Ephemeral (debug) containers.
    pub ephemeral_containers: Vec<Container>,
}

/// A container's name and image.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Container {
    /// Container name (the `<container>` of the log path).
    pub name: String,
    /// Image reference.
    pub image: String,
}

/// `status` of a pod.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodStatus {
    /// The pod's IP, once assigned.
    #[serde(rename = "podIP")]
    pub pod_ip: String,
}

/// A namespace, a ReplicaSet or a Job: only metadata is read.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MetaOnly {
    /// Metadata.
    pub metadata: ObjectMeta,
}

/// `metadata` of a list.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ListMeta {
    /// The version the list is consistent at: a watch starts here.
    pub resource_version: String,
    /// Set when more pages follow (`limit`).
    #[serde(rename = "continue")]
    pub continue_token: String,
}

/// `PodList`, `NamespaceList`.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct List<T> {
    /// Version and paging.
    #[serde(default)]
    pub metadata: ListMeta,
    /// The objects (`null` when empty).
    #[serde(default = "Vec::new", deserialize_with = "null_as_empty")]
    pub items: Vec<T>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// A `Status` reply (an error), as the API server sends it in a non-2xx reply body or as
/// the object of a watch `ERROR` event.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Status {
    /// HTTP code it stands for (410 for an expired resource version).
    pub code: u16,
    /// `Expired`, `Gone`, `Unauthorized`, `Forbidden`, …
    pub reason: String,
    /// Human text.
    pub message: String,
}

/// One line of a watch reply: `{"type":"ADDED","object":{…}}`. The object stays raw until
/// the type is known (an `ERROR` event carries a `Status`, a `BOOKMARK` only a version).
#[derive(Debug, Deserialize)]
pub struct WatchEvent<'a> {
    /// `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// The object.
    #[serde(borrow)]
    pub object: &'a serde_json::value::RawValue,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_pod_skipping_what_is_not_used() {
        let pod: Pod = serde_json::from_str(
            r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web-7d4b9c-x2x","namespace":"shop",
            "uid":"u1","resourceVersion":"42","labels":{"app":"web"},"annotations":{"a":"b"},
            "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-7d4b9c",
            "uid":"r1","controller":true,"blockOwnerDeletion":true}],"managedFields":[{"x":1}]},
            "spec":{"nodeName":"n1","containers":[{"name":"app","image":"web:1","env":[]}],
            "volumes":[]},"status":{"phase":"Running","podIP":"10.0.0.5","podIPs":[{"ip":"10.0.0.5"}]}}"#,
        )
        .unwrap();
        assert_eq!(pod.metadata.name, "web-7d4b9c-x2x");
        assert_eq!(pod.metadata.controller().unwrap().kind, "ReplicaSet");
        assert_eq!(pod.spec.containers[0].image, "web:1");
        assert_eq!(pod.status.pod_ip, "10.0.0.5");
    }

    #[test]
    fn parses_watch_events_and_status() {
        let line = r#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: 5 (10)","reason":"Expired","code":410}}"#;
        let event: WatchEvent<'_> = serde_json::from_str(line).unwrap();
        assert_eq!(event.kind, "ERROR");
        let status: Status = serde_json::from_str(event.object.get()).unwrap();
        assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        let list: List<MetaOnly> = serde_json::from_str(
            r#"{"kind":"NamespaceList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":null}"#,
        )
        .unwrap();
        assert_eq!(list.metadata.resource_version, "7");
        assert!(list.items.is_empty());
    }
}
