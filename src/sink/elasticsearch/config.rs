//! The `elasticsearch` sink's options (`mode`, `index`, `data_stream`, `id`, `pipeline`,
//! `index_in_path`, endpoints) and their check into the encoder's settings.
//!
//! Owns: the keys, their defaults and what combinations are refused. Never: encodes.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::Deserialize;
use url::Url;

use super::action::{IdSource, IndexPattern};
use super::{Settings, BULK_PATH, FILTER_PATH};
use crate::sink::driver::{BatchConfig, HttpSinkConfig};

/// `endpoint:` one URL or a list of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoints {
    /// One node (or a load balancer).
    One(Url),
    /// Several nodes, used in turn with failover.
    Many(Vec<Url>),
}

impl<'de> Deserialize<'de> for Endpoints {
    /// Says which value is not a URL (serde's untagged enum said only that nothing matched).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let url = |text: &str| crate::bounds::http_url(text).map_err(D::Error::custom);
        match Raw::deserialize(d)
            .map_err(|_| D::Error::custom("expected a URL or a list of URLs"))?
        {
            Raw::One(text) => Ok(Endpoints::One(url(&text)?)),
            Raw::Many(list) => list
                .iter()
                .map(|t| url(t))
                .collect::<Result<_, _>>()
                .map(Endpoints::Many),
        }
    }
}

/// `mode:` how documents are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// To `index`, with `index` actions (`create` when the document has an `_id`).
    #[default]
    Bulk,
    /// To the data stream `<type>-<dataset>-<namespace>`, with `create` actions.
    DataStream,
}

/// `id:` where document ids come from (unless `id_field` is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdMode {
    /// A hash of the event's origin (file identity, offset) and message: replays are
    /// idempotent. Events without an origin (syslog) get no `_id`.
    #[default]
    Auto,
    /// The same inputs hashed with XXH3-128, a specified hash other tools can recompute
    /// (`auto` stays as it is, so existing ids do not change on upgrade).
    Xxh3,
    /// No `_id`: Elasticsearch assigns one (a replay after a crash can duplicate).
    None,
}

/// `index_in_path:` whether a request whose documents all go to one index names it in the
/// path (`/<index>/_bulk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexInPath {
    /// Name it in the path (shorter action lines) until a store refuses that form (400, 404
    /// or 405, as VictoriaLogs does: `unsupported path requested`); from then on every
    /// request goes to `/_bulk` with `_index` in its action lines, and the refused request
    /// is sent again that way.
    #[default]
    Auto,
    /// Always `/_bulk` with `_index` in the action lines.
    Never,
}

/// The default `batch:` ([`BatchConfig`]'s, with a smaller `max_events`): 2000 documents
/// per `_bulk` request (Filebeat sends 1600) keep the agent's memory low while a slow
/// cluster holds batches back.
pub(super) fn default_batch() -> BatchConfig {
    BatchConfig {
        max_events: 2000,
        ..BatchConfig::default()
    }
}

/// `data_stream:` the data stream name parts (each may hold `{{ field }}` templates).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataStreamConfig {
    /// The data stream type (default `logs`).
    #[serde(default = "default_ds_type", rename = "type")]
    pub kind: String,
    /// The dataset (default `generic`).
    #[serde(default = "default_ds_dataset")]
    pub dataset: String,
    /// The namespace (default `default`).
    #[serde(default = "default_ds_namespace")]
    pub namespace: String,
}

impl Default for DataStreamConfig {
    fn default() -> Self {
        DataStreamConfig {
            kind: default_ds_type(),
            dataset: default_ds_dataset(),
            namespace: default_ds_namespace(),
        }
    }
}

fn default_ds_type() -> String {
    "logs".into()
}
fn default_ds_dataset() -> String {
    "generic".into()
}
fn default_ds_namespace() -> String {
    "default".into()
}

/// `type: elasticsearch` settings: its own keys ([`ElasticsearchKeys`]) beside the shared
/// network-sink keys ([`HttpKeys`](crate::sink::driver::HttpKeys)); `batch:` defaults to 2000
/// documents, 1 MiB, 1 s; `compression:` is `gzip` (default, level 6) or `none`; `auth:`
/// also takes `{ strategy: api_key, key }`.
pub type ElasticsearchConfig = HttpSinkConfig<ElasticsearchKeys>;

/// The keys of `type: elasticsearch` beside the shared network-sink keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchKeys {
    /// Base URL of a node (`http://es:9200`), or a list of nodes used in turn; a node that
    /// fails to connect or answers 5xx is skipped for a while (failover). `/_bulk` is
    /// appended.
    pub endpoint: Endpoints,
    /// `bulk` (default: write to `index`) or `data_stream`.
    #[serde(default)]
    pub mode: Mode,
    /// `bulk` mode: the index name; `strftime` specifiers take the event timestamp in UTC
    /// (`logs-%Y.%m.%d`), `{{ field }}` takes a field. Must render lowercase for
    /// Elasticsearch. Default `sluice-%Y.%m.%d`.
    #[serde(default)]
    pub index: Option<String>,
    /// `data_stream` mode: `{ type, dataset, namespace }`, default `logs-generic-default`.
    #[serde(default)]
    pub data_stream: Option<DataStreamConfig>,
    /// `auto` (default: deterministic `_id` from the file identity, offset and message, so
    /// replays are idempotent) or `none` (Elasticsearch assigns ids).
    #[serde(default)]
    pub id: IdMode,
    /// Take `_id` from this field instead (as text); events without it get no `_id`.
    #[serde(default)]
    pub id_field: Option<String>,
    /// Ingest pipeline to run on every document (`?pipeline=`).
    #[serde(default)]
    pub pipeline: Option<String>,
    /// `auto` (default): a one-index request goes to `/<index>/_bulk` until the store
    /// refuses that path, then to `/_bulk` for good; `never`: always `/_bulk`.
    #[serde(default)]
    pub index_in_path: IndexInPath,
}

impl ElasticsearchKeys {
    pub(super) fn bulk_url(&self, mut url: Url) -> Url {
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{BULK_PATH}"));
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("filter_path", FILTER_PATH);
            if let Some(pipeline) = &self.pipeline {
                query.append_pair("pipeline", pipeline);
            }
        }
        url
    }

    pub(super) fn settings(&self) -> anyhow::Result<Settings> {
        let index = match self.mode {
            Mode::Bulk => {
                anyhow::ensure!(
                    self.data_stream.is_none(),
                    "data_stream is for mode: data_stream"
                );
                let text = self.index.as_deref().unwrap_or("sluice-%Y.%m.%d");
                IndexPattern::parse(text).map_err(|e| anyhow::anyhow!("index: {e:#}"))?
            }
            Mode::DataStream => {
                anyhow::ensure!(
                    self.index.is_none(),
                    "index is for mode: bulk; a data stream is named by data_stream"
                );
                let ds = self.data_stream.clone().unwrap_or_default();
                for (key, value) in [
                    ("type", &ds.kind),
                    ("dataset", &ds.dataset),
                    ("namespace", &ds.namespace),
                ] {
                    anyhow::ensure!(
                        !value.trim().is_empty() && !value.contains('%'),
                        "data_stream.{key} must be a non-empty name without `%`"
                    );
                }
                let text = format!("{}-{}-{}", ds.kind, ds.dataset, ds.namespace);
                IndexPattern::parse(&text).map_err(|e| anyhow::anyhow!("data_stream: {e:#}"))?
            }
        };
        let id = match (&self.id_field, self.id) {
            (Some(field), IdMode::Auto) => {
                anyhow::ensure!(!field.trim().is_empty(), "id_field is empty");
                IdSource::Field(field.clone())
            }
            (Some(_), IdMode::None) => anyhow::bail!("id: none and id_field contradict"),
            (Some(_), IdMode::Xxh3) => anyhow::bail!("id: xxh3 and id_field contradict"),
            (None, IdMode::Auto) => IdSource::Auto,
            (None, IdMode::Xxh3) => IdSource::Xxh3,
            (None, IdMode::None) => IdSource::None,
        };
        if let Some(pipeline) = &self.pipeline {
            anyhow::ensure!(!pipeline.trim().is_empty(), "pipeline is empty");
        }
        Ok(Settings {
            index,
            id,
            always_create: self.mode == Mode::DataStream,
            path_refused: Arc::new(AtomicBool::new(self.index_in_path == IndexInPath::Never)),
        })
    }
}
