//! The `kubernetes_metadata` transform's YAML settings and their check: field names, the
//! API URL, bounds, label and annotation filters, turned into the watcher's [`Settings`]
//! and a [`KubernetesMetadata`] whose watcher starts on first use.
//!
//! Owns: the config types, their defaults and `build`. Never: contacts the API or reads a
//! file (so `validate` works off a cluster).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use super::cache::{FieldSet, KeyFilter, Shaping, Shared, FIELD_NAMES};
use super::watch::{self, Settings};
use super::{Inner, KubernetesMetadata, Start};
use crate::bounds;
use crate::health::HealthCheck;
use crate::transform::TransformContext;

/// Include / exclude globs over label or annotation names.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// Keep only names matching one of these (all when empty).
    pub include: Vec<String>,
    /// Drop names matching one of these.
    pub exclude: Vec<String>,
}

/// `type: kubernetes_metadata` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesMetadataConfig {
    /// API server URL (`https://host:port`); default: in-cluster, from
    /// `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Bearer token file, read again for every request (rotation). In-cluster default: the
    /// service account's `token`; with `api_url`, none unless set.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// CA bundle for the server's certificate. In-cluster default: the service account's
    /// `ca.crt`; with `api_url`, the system roots unless set.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The node whose pods are watched; default `$NODE_NAME`.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Fields to add (default: all of them).
    #[serde(default = "all_fields")]
    pub fields: Vec<String>,
    /// Which pod labels `pod_labels` holds.
    #[serde(default)]
    pub pod_labels: Box<KeysConfig>,
    /// Which pod annotations `pod_annotations` holds (default: all but
    /// `kubectl.kubernetes.io/last-applied-configuration`, a copy of the whole object).
    #[serde(default = "default_annotations")]
    pub pod_annotations: Box<KeysConfig>,
    /// Which namespace labels `namespace_labels` holds.
    #[serde(default)]
    pub namespace_labels: Box<KeysConfig>,
    /// An annotation on a pod or namespace that, when `"true"`, drops its logs.
    #[serde(default = "default_exclude_annotation")]
    pub exclude_annotation: String,
    /// Longest wait for a pod missing from the cache, per pod (default 2000).
    #[serde(default = "default_wait")]
    pub wait_for_pod_ms: u64,
    /// How long a deleted pod or namespace is kept for its late lines (default 60).
    #[serde(default = "default_grace")]
    pub deleted_grace_secs: u64,
    /// `/health` fails once the API server has been unreachable this long (default 60).
    #[serde(default = "default_unhealthy")]
    pub unhealthy_after_secs: u64,
    /// Watch requests ask the server to end them after this long, randomised up to twice
    /// (default 300, like client-go).
    #[serde(default = "default_watch_timeout")]
    pub watch_timeout_secs: u64,
}

fn all_fields() -> Vec<String> {
    FIELD_NAMES.iter().map(|s| (*s).to_owned()).collect()
}
fn default_annotations() -> Box<KeysConfig> {
    Box::new(KeysConfig {
        include: Vec::new(),
        exclude: vec!["kubectl.kubernetes.io/last-applied-configuration".into()],
    })
}
fn default_exclude_annotation() -> String {
    "sluice.dev/exclude".into()
}
fn default_wait() -> u64 {
    2000
}
fn default_grace() -> u64 {
    60
}
fn default_unhealthy() -> u64 {
    60
}
fn default_watch_timeout() -> u64 {
    300
}

impl KubernetesMetadataConfig {
    /// Checks the settings. Nothing is contacted or read here (so `validate` works off a
    /// cluster): the endpoint is resolved when the pipeline starts.
    pub fn build(&self, ctx: &TransformContext) -> anyhow::Result<KubernetesMetadata> {
        self.check()?;
        let fields = FieldSet::from_names(self.fields.iter().map(String::as_str));
        let settings = self.settings(self.shaping(fields)?);
        let metrics = &ctx.metrics;
        Ok(KubernetesMetadata {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared::default()),
                fields,
                wait: Duration::from_millis(self.wait_for_pod_ms),
                misses: metrics.counter(
                    "sluice_kubernetes_enrichment_misses_total",
                    "Pod log events sent on without Kubernetes metadata (pod not in the cache in time).",
                    &[],
                ),
                excluded: metrics.dropped("excluded"),
                start: Mutex::new(Start::Pending(Box::new((
                    settings,
                    watch::Metrics::new(
                        metrics.clone(),
                        HealthCheck::new(format!("{}/transform/{}", ctx.pipeline, ctx.id)),
                    ),
                )))),
                started: AtomicBool::new(false),
            }),
            last: None,
            overlays: [None, None],
        })
    }

    /// Field names, the API URL's form and the numeric bounds.
    fn check(&self) -> anyhow::Result<()> {
        for name in &self.fields {
            anyhow::ensure!(
                FIELD_NAMES.contains(&name.as_str()),
                "fields: unknown field {name:?} (known: {})",
                FIELD_NAMES.join(", ")
            );
        }
        if let Some(url) = &self.api_url {
            let parsed =
                url::Url::parse(url).map_err(|e| anyhow::anyhow!("api_url: {e}: {url:?}"))?;
            anyhow::ensure!(
                matches!(parsed.scheme(), "http" | "https"),
                "api_url: not an http(s) URL: {url:?}"
            );
        }
        bounds::check("wait_for_pod_ms", self.wait_for_pod_ms, 0..=60_000)?;
        bounds::check(
            "deleted_grace_secs",
            self.deleted_grace_secs,
            0..=bounds::MAX_SECS,
        )?;
        bounds::check(
            "unhealthy_after_secs",
            self.unhealthy_after_secs,
            1..=bounds::MAX_SECS,
        )?;
        bounds::check("watch_timeout_secs", self.watch_timeout_secs, 10..=3600)?;
        anyhow::ensure!(
            !self.exclude_annotation.is_empty(),
            "exclude_annotation: empty"
        );
        Ok(())
    }

    /// The label and annotation filters and the fields to add.
    fn shaping(&self, fields: FieldSet) -> anyhow::Result<Shaping> {
        Ok(Shaping {
            pod_labels: KeyFilter::new(
                "pod_labels",
                &self.pod_labels.include,
                &self.pod_labels.exclude,
            )?,
            pod_annotations: KeyFilter::new(
                "pod_annotations",
                &self.pod_annotations.include,
                &self.pod_annotations.exclude,
            )?,
            namespace_labels: KeyFilter::new(
                "namespace_labels",
                &self.namespace_labels.include,
                &self.namespace_labels.exclude,
            )?,
            exclude_annotation: self.exclude_annotation.clone(),
            fields,
        })
    }

    /// What the watcher needs; the node name defaults to `$NODE_NAME`.
    fn settings(&self, shaping: Shaping) -> Settings {
        let node_name = match &self.node_name {
            Some(name) => name.clone(),
            None => std::env::var("NODE_NAME").unwrap_or_default(),
        };
        Settings {
            api_url: self.api_url.clone(),
            token_file: self.token_file.clone(),
            ca_file: self.ca_file.clone(),
            node_name,
            grace: Duration::from_secs(self.deleted_grace_secs),
            watch_timeout: Duration::from_secs(self.watch_timeout_secs),
            unhealthy_after: Duration::from_secs(self.unhealthy_after_secs),
            shaping,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::transform::tests::build;

    #[test]
    fn config_errors_are_named() {
        for (yaml, error) in [
            (
                "{ type: kubernetes_metadata, fields: [pod_name] }",
                "unknown field \"pod_name\"",
            ),
            (
                "{ type: kubernetes_metadata, api_url: 'not a url' }",
                "api_url",
            ),
            (
                "{ type: kubernetes_metadata, wait_for_pod_ms: 600000 }",
                "wait_for_pod_ms must be between",
            ),
            (
                "{ type: kubernetes_metadata, pod_labels: { include: ['['] } }",
                "pod_labels.include: invalid glob",
            ),
            ("{ type: kubernetes_metadata, bogus: 1 }", "bogus"),
        ] {
            let got = build(yaml).map(|_| ()).unwrap_err();
            assert!(format!("{got:#}").contains(error), "{yaml}: {got:#}");
        }
        build("{ type: kubernetes_metadata }").unwrap();
    }
}
