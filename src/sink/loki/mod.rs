//! `type: loki`: pushes log events to Grafana Loki's push API (`POST /loki/api/v1/push`),
//! as protobuf + snappy (default, like Promtail) or JSON + gzip.
//! Spec: <https://grafana.com/docs/loki/latest/reference/loki-http-api/#ingest-logs> and
//! `pkg/push/push.proto` in the Loki repository.
//!
//! Labels are static values or `{{ field }}` templates; a `max_streams` guard sends events
//! of streams beyond the cap to one overflow stream instead of exploding Loki's index.
//! Entries are sorted by timestamp within each stream of a request, and an `out_of_order`
//! policy handles entries older than the last one sent for their stream. A `tenant_id`
//! template splits a batch into one request per tenant (`X-Scope-OrgID`).
//!
//! Replies: 2xx delivered; 429 (rate limits, per-stream limits) and 5xx retried by the
//! driver. A 400 is a partial acceptance: Loki stored the valid entries and names the
//! refused ones (too old, too new, line too long, ...); only those are dead-lettered, each
//! with Loki's words and counted by reason (`reply.rs`). Never retried.
//!
//! Owns: the Loki wire formats and reply reasons. Never: batches, retries or acknowledges
//! (that is [`super::driver`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use url::Url;

use super::driver::{BatchConfig, Compression, HttpDriver, HttpSinkConfig};
use super::{SinkContext, SinkInput};
use crate::event::{LogEvent, Shared};
use crate::telemetry::Counter;
use crate::transform::template::Template;
use codec::{label_key, LokiCodec};

pub mod codec;
pub mod proto;
mod reply;

/// The push path appended to `endpoint`.
pub const PUSH_PATH: &str = "/loki/api/v1/push";
/// Streams idle this long (seconds) leave the per-lane stream table.
const STREAM_IDLE_SECS: u64 = 300;

/// Wire format of the push body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LokiEncoding {
    /// `application/x-protobuf`, snappy block compression (what Promtail sends).
    #[default]
    Protobuf,
    /// `application/json`, gzip (default) or no compression.
    Json,
}

/// What becomes the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineFormat {
    /// The event's message.
    #[default]
    Message,
    /// The whole event as a JSON object (fields, `message`, `timestamp`).
    Json,
}

/// What to do with an entry older than the last one sent for its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutOfOrder {
    /// Send it as it is (Loki ≥ 2.4 accepts out-of-order writes within its window).
    #[default]
    Accept,
    /// Send it with the stream's last timestamp, so strict-order Loki servers take it.
    RewriteTimestamp,
    /// Drop it, counted as `out_of_order`.
    Drop,
}

/// `type: loki` settings: its own keys ([`LokiKeys`]) beside the shared network-sink keys
/// ([`HttpKeys`](super::driver::HttpKeys)); `compression:` is `snappy` for protobuf (the
/// only choice), `gzip` (default) or `none` for JSON.
pub type LokiConfig = HttpSinkConfig<LokiKeys>;

/// The keys of `type: loki` beside the shared network-sink keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiKeys {
    /// Base URL of Loki (`http://loki:3100`, or with a path prefix); `/loki/api/v1/push` is
    /// appended (`/api/v1/push` to a path ending in `/loki`, as VictoriaLogs'
    /// `/insert/loki/`); a full push URL is used as it is.
    #[serde(deserialize_with = "crate::bounds::http_url_key")]
    pub endpoint: Url,
    /// `protobuf` (default, snappy) or `json` (gzip).
    #[serde(default)]
    pub encoding: LokiEncoding,
    /// Stream labels: `name: value`, where the value may hold `{{ field }}` templates.
    /// Names must match `[a-zA-Z_][a-zA-Z0-9_]*`. Empty values leave the label out.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Most distinct streams (label sets) active per lane; events of further streams go to
    /// the overflow stream (static labels plus `overflow="true"`) and are counted.
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// Tenant (`X-Scope-OrgID`), may be a `{{ field }}` template; one request per tenant.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Structured metadata attached to each entry: `name: value` templates (Loki ≥ 3.0).
    #[serde(default)]
    pub structured_metadata: BTreeMap<String, String>,
    /// Remove the fields used by `labels` and `structured_metadata` templates from the
    /// event before the line is rendered (matters for `line: json`).
    #[serde(default)]
    pub remove_label_fields: bool,
    /// The log line: `message` (default) or `json` (the whole event).
    #[serde(default)]
    pub line: LineFormat,
    /// Entries older than the last sent for their stream: `accept` (default),
    /// `rewrite_timestamp` or `drop`.
    #[serde(default)]
    pub out_of_order: OutOfOrder,
}

/// The push path under an endpoint's path, never doubled: a base (`/`, `/prefix/`) gets
/// `/loki/api/v1/push`; a path already ending in `/loki` (VictoriaLogs' documented
/// `/insert/loki/`) gets `/api/v1/push`; a full push path is kept.
fn push_path(path: &str) -> String {
    let base = path.trim_end_matches('/');
    if base.ends_with(PUSH_PATH) {
        base.to_owned()
    } else if base.ends_with("/loki") {
        format!("{base}/api/v1/push")
    } else {
        format!("{base}{PUSH_PATH}")
    }
}

fn default_max_streams() -> usize {
    10_000
}

impl LokiConfig {
    /// Validates everything (label names, templates, URL, TLS files) and builds the sink.
    pub fn build(&self) -> anyhow::Result<Loki> {
        let mut url = self.sink.endpoint.clone();
        url.set_path(&push_path(url.path()));
        let allowed: &[Compression] = match self.sink.encoding {
            LokiEncoding::Protobuf => &[Compression::Snappy],
            LokiEncoding::Json => &[Compression::Gzip, Compression::None],
        };
        let driver = self
            .http
            .build_endpoints(vec![url], allowed, &default_batch())?;
        Ok(Loki {
            driver,
            settings: Arc::new(self.sink.settings()?),
        })
    }

    /// The encoder alone, with unregistered counters (benches, tests).
    pub fn codec(&self) -> anyhow::Result<LokiCodec> {
        Ok(LokiCodec::new(
            Arc::new(self.sink.settings()?),
            Counter::default(),
            Counter::default(),
        ))
    }
}

impl LokiKeys {
    fn settings(&self) -> anyhow::Result<LokiSettings> {
        crate::bounds::check(
            "max_streams",
            self.max_streams,
            1..=crate::bounds::MAX_TRACKED,
        )?;
        let mut labels = Vec::new();
        for (name, value) in &self.labels {
            anyhow::ensure!(
                valid_label_name(name),
                "labels: {name:?} is not a valid Loki label name ([a-zA-Z_][a-zA-Z0-9_]*)"
            );
            labels.push((
                name.clone(),
                Template::parse(value).map_err(|e| anyhow::anyhow!("labels.{name}: {e}"))?,
            ));
        }
        let mut structured_metadata = Vec::new();
        for (name, value) in &self.structured_metadata {
            anyhow::ensure!(
                valid_label_name(name),
                "structured_metadata: {name:?} is not a valid name ([a-zA-Z_][a-zA-Z0-9_]*)"
            );
            structured_metadata.push((
                name.clone(),
                Template::parse(value)
                    .map_err(|e| anyhow::anyhow!("structured_metadata.{name}: {e}"))?,
            ));
        }
        let tenant = match &self.tenant_id {
            Some(text) => {
                Some(Template::parse(text).map_err(|e| anyhow::anyhow!("tenant_id: {e}"))?)
            }
            None => None,
        };
        let mut overflow: Vec<(String, String)> = labels
            .iter()
            .filter_map(|(name, template)| {
                template.as_static().map(|v| (name.clone(), v.to_owned()))
            })
            .filter(|(name, value)| !value.is_empty() && name != "overflow")
            .collect();
        overflow.push(("overflow".into(), "true".into()));
        overflow.sort();
        let mut removed: Vec<String> = labels
            .iter()
            .chain(&structured_metadata)
            .flat_map(|(_, template)| template.fields())
            .filter(|field| *field != "message")
            .map(|field| field.split('.').next().unwrap_or(field).to_owned())
            .collect();
        removed.sort();
        removed.dedup();
        let reads_message = |template: &Template| {
            template
                .fields()
                .any(|field| field == "message" || field.starts_with("message."))
        };
        let fields_only = !labels
            .iter()
            .chain(&structured_metadata)
            .map(|(_, template)| template)
            .chain(&tenant)
            .any(reads_message);
        Ok(LokiSettings {
            encoding: self.encoding,
            fields_only,
            all_static: labels.iter().all(|(_, t)| t.as_static().is_some()),
            labels,
            overflow_key: label_key(&overflow),
            overflow,
            max_streams: self.max_streams,
            tenant,
            structured_metadata,
            removed: if self.remove_label_fields {
                removed
            } else {
                Vec::new()
            },
            line: self.line,
            out_of_order: self.out_of_order,
        })
    }
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[derive(Debug)]
struct LokiSettings {
    encoding: LokiEncoding,
    labels: Vec<(String, Template)>,
    all_static: bool,
    overflow: Vec<(String, String)>,
    overflow_key: String,
    max_streams: usize,
    tenant: Option<Template>,
    structured_metadata: Vec<(String, Template)>,
    /// No label, tenant or metadata template reads the message: for an event without
    /// fields of its own they follow from its shared fields alone ([`LokiSettings::by_shared`]).
    fields_only: bool,
    removed: Vec<String>,
    line: LineFormat,
    out_of_order: OutOfOrder,
}

impl LokiSettings {
    /// The event's label pairs (sorted, empty values left out).
    fn label_pairs(&self, log: &LogEvent) -> Vec<(String, String)> {
        let mut pairs = Vec::with_capacity(self.labels.len());
        for (name, template) in &self.labels {
            let mut value = String::new();
            template.render_into(log, &mut value);
            if !value.is_empty() {
                pairs.push((name.clone(), value));
            }
        }
        if pairs.is_empty() {
            pairs.push(("agent".into(), "sluice".into()));
        }
        pairs
    }

    /// Writes to `out` what decides the event's stream: the renderings of the tenant and of
    /// the labels that have templates (static ones are the same for every event), each
    /// after its length, so two events with the same bytes here have the same label pairs
    /// and tenant. Comparing these bytes is much cheaper than rendering and joining the
    /// labels: the codec does that only when an event's stream differs from the last one's.
    fn stream_fingerprint(&self, log: &LogEvent, scratch: &mut String, out: &mut Vec<u8>) {
        out.clear();
        let templates = self.tenant.iter().chain(self.labels.iter().map(|(_, t)| t));
        for template in templates.filter(|t| t.as_static().is_none()) {
            scratch.clear();
            template.render_into(log, scratch);
            out.extend_from_slice(&scratch.len().to_le_bytes());
            out.extend_from_slice(scratch.as_bytes());
        }
    }

    fn tenant(&self, log: &LogEvent) -> String {
        let mut out = String::new();
        if let Some(template) = &self.tenant {
            template.render_into(log, &mut out);
        }
        out
    }

    fn line<'a>(&self, log: &'a LogEvent) -> std::borrow::Cow<'a, str> {
        match self.line {
            LineFormat::Message => log.message.to_text(),
            LineFormat::Json => std::borrow::Cow::Owned(
                serde_json::to_string(&log.json().without(&self.removed)).unwrap_or_default(),
            ),
        }
    }

    fn metadata(&self, log: &LogEvent) -> Vec<(String, String)> {
        let mut out = Vec::new();
        self.metadata_into(log, &mut out);
        out
    }

    /// [`LokiSettings::metadata`] into `out` (cleared first).
    fn metadata_into(&self, log: &LogEvent, out: &mut Vec<(String, String)>) {
        out.clear();
        for (name, template) in &self.structured_metadata {
            let mut value = String::new();
            template.render_into(log, &mut value);
            if !value.is_empty() {
                out.push((name.clone(), value));
            }
        }
    }

    /// The shared fields that alone decide `log`'s labels, tenant and metadata: when no
    /// template reads the message and the event has no fields of its own (a container or
    /// file line: its file's fields, extended by `kubernetes_metadata`). Events over the
    /// same shared fields then have the same stream and metadata, rendered once.
    fn by_shared<'a>(&self, log: &'a LogEvent) -> Option<&'a Arc<Shared>> {
        if !self.fields_only || log.fields.own().next().is_some() {
            return None;
        }
        log.fields.shared()
    }
}

/// A built Loki sink.
#[derive(Debug)]
pub struct Loki {
    driver: HttpDriver,
    settings: Arc<LokiSettings>,
}

impl Loki {
    /// The sink's `buffer:`.
    pub fn buffer(&self) -> &crate::buffer::BufferSettings {
        self.driver.buffer()
    }

    /// Runs the sink through the shared driver.
    pub async fn run(self, input: SinkInput, ctx: SinkContext) {
        let overflow = ctx.metrics.counter(
            "sluice_loki_overflow_events_total",
            "Events sent to the overflow stream because max_streams was reached.",
            &[],
        );
        let rewritten = ctx.metrics.counter(
            "sluice_loki_timestamps_rewritten_total",
            "Out-of-order entries sent with their stream's last timestamp.",
            &[],
        );
        let codec = LokiCodec::new(self.settings, overflow, rewritten);
        self.driver.run(codec, input, ctx).await;
    }
}

/// The default `batch:` ([`BatchConfig`]'s, with a smaller `max_events`): 2000 entries a
/// push. The agent's peak memory follows the batch (the batch being filled, the ones queued
/// and the one being sent, each with its events and encoded body): file → Loki with 1M
/// lines of 149 bytes peaked at 32.8–34.1 MiB with 5000 and 19.7–19.8 with 2000, at the same
/// events per CPU-second (`cargo bench --bench loki_throughput`). 2000 lines of 150 bytes
/// are still a 300 KB push, far from Loki's per-push limits.
fn default_batch() -> BatchConfig {
    BatchConfig {
        max_events: 2000,
        ..BatchConfig::default()
    }
}
