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
//! driver; 400s are read for Loki's reason (out of order, too old, line too long, ...),
//! counted by it and dead-lettered, never retried.
//!
//! Owns: the Loki wire formats and reply reasons. Never: batches, retries or acknowledges
//! (that is [`super::driver`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use url::Url;

use super::driver::{
    judge_status, AuthConfig, BatchConfig, Compression, CompressionConfig, Encoded, EncodedRequest,
    HttpDriver, HttpSettings, HttpSinkCodec, Reply, RequestConfig, RetryConfig, TlsConfig, Verdict,
};
use super::{SinkContext, SinkInput};
use crate::event::{Event, LogEvent, Value};
use crate::telemetry::Counter;

/// The push path appended to `endpoint`.
pub const PUSH_PATH: &str = "/loki/api/v1/push";
/// Streams idle this long (seconds) leave the per-lane stream table.
const STREAM_IDLE_SECS: u64 = 300;

/// Loki's push protobuf (`pkg/push/push.proto`), hand-written for `prost` derive.
pub mod proto {
    /// `logproto.PushRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        /// `repeated StreamAdapter streams = 1`.
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<StreamAdapter>,
    }

    /// `logproto.StreamAdapter`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamAdapter {
        /// `string labels = 1`: `{name="value", ...}`.
        #[prost(string, tag = "1")]
        pub labels: String,
        /// `repeated EntryAdapter entries = 2`.
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<EntryAdapter>,
        /// `uint64 hash = 3` (ignored by Loki on push; left 0).
        #[prost(uint64, tag = "3")]
        pub hash: u64,
    }

    /// `logproto.EntryAdapter`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EntryAdapter {
        /// `google.protobuf.Timestamp timestamp = 1`.
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        /// `string line = 2`.
        #[prost(string, tag = "2")]
        pub line: String,
        /// `repeated LabelPairAdapter structuredMetadata = 3`.
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPairAdapter>,
    }

    /// `google.protobuf.Timestamp`.
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Timestamp {
        /// `int64 seconds = 1`.
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        /// `int32 nanos = 2`.
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    /// `logproto.LabelPairAdapter`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPairAdapter {
        /// `string name = 1`.
        #[prost(string, tag = "1")]
        pub name: String,
        /// `string value = 2`.
        #[prost(string, tag = "2")]
        pub value: String,
    }
}

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

/// `type: loki` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiConfig {
    /// Base URL of Loki (`http://loki:3100`); `/loki/api/v1/push` is appended.
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
    /// Batching limits (`max_events`, `max_bytes`, `timeout_ms`).
    #[serde(default)]
    pub batch: BatchConfig,
    /// `snappy` for protobuf (the only choice); `gzip` (default) or `none` for JSON;
    /// `{ algorithm: gzip, level: 6 }` sets a level.
    #[serde(default)]
    pub compression: Option<CompressionConfig>,
    /// In-flight requests (`concurrency`) and per-request `timeout_ms`.
    #[serde(default)]
    pub request: RequestConfig,
    /// Backoff (`initial_backoff_ms`, `max_backoff_ms`) and optional `max_duration_secs`.
    #[serde(default)]
    pub retry: RetryConfig,
    /// TLS for `https://` endpoints.
    #[serde(default)]
    pub tls: TlsConfig,
    /// `{ strategy: basic, user, password }` or `{ strategy: bearer, token }`.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Extra HTTP headers sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// HTTP(S) proxy URL; unset: direct connection.
    #[serde(default)]
    pub proxy: Option<String>,
    /// `/health` fails when nothing was delivered for this long while data waits.
    #[serde(default = "super::driver::unhealthy_after_secs_default")]
    pub unhealthy_after_secs: u64,
}

fn default_max_streams() -> usize {
    10_000
}

impl LokiConfig {
    /// Validates everything (label names, templates, URL, TLS files) and builds the sink.
    pub fn build(&self) -> anyhow::Result<Loki> {
        let mut url = self.endpoint.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{PUSH_PATH}"));
        let settings = HttpSettings {
            batch: self.batch.clone(),
            compression: self.compression,
            request: self.request.clone(),
            retry: self.retry.clone(),
            tls: self.tls.clone(),
            auth: self.auth.clone(),
            headers: self.headers.clone(),
            proxy: self.proxy.clone(),
            unhealthy_after_secs: self.unhealthy_after_secs,
        };
        let allowed: &[Compression] = match self.encoding {
            LokiEncoding::Protobuf => &[Compression::Snappy],
            LokiEncoding::Json => &[Compression::Gzip, Compression::None],
        };
        let driver = settings.build(url, allowed)?;
        Ok(Loki {
            driver,
            settings: Arc::new(self.settings()?),
        })
    }

    /// The encoder alone, with unregistered counters (benches, tests).
    pub fn codec(&self) -> anyhow::Result<LokiCodec> {
        Ok(LokiCodec::new(
            Arc::new(self.settings()?),
            Counter::default(),
            Counter::default(),
        ))
    }

    fn settings(&self) -> anyhow::Result<LokiSettings> {
        anyhow::ensure!(self.max_streams > 0, "max_streams must be at least 1");
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
            .map(str::to_owned)
            .collect();
        removed.sort();
        removed.dedup();
        Ok(LokiSettings {
            encoding: self.encoding,
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

/// A value with `{{ field }}` placeholders (`{{ a.b }}` reads nested maps).
#[derive(Debug, Clone, PartialEq)]
struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Field(String),
}

impl Template {
    fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed {{{{ in {text:?}"))?;
            let field = after[..end].trim();
            let valid = !field.is_empty()
                && field.split('.').all(|seg| {
                    !seg.is_empty()
                        && seg
                            .chars()
                            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
                });
            if !valid {
                return Err(format!("{{{{ {field} }}}} is not a field name"));
            }
            parts.push(Part::Field(field.to_owned()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Template { parts })
    }

    fn as_static(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [] => Some(""),
            [Part::Literal(text)] => Some(text),
            _ => None,
        }
    }

    fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Field(name) => Some(name.split('.').next().unwrap_or(name)),
            Part::Literal(_) => None,
        })
    }

    /// Appends the rendered value; a missing field renders as nothing.
    fn render(&self, log: &LogEvent, out: &mut String) {
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field(path) => {
                    if let Some(value) = lookup(log, path) {
                        out.push_str(&value.to_text());
                    }
                }
            }
        }
    }
}

fn lookup<'a>(log: &'a LogEvent, path: &str) -> Option<&'a Value> {
    let mut segments = path.split('.');
    let mut value = log.get(segments.next()?)?;
    for segment in segments {
        value = match value {
            Value::Map(map) => map.get(segment)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Loki's label-set syntax, sorted pairs: `{a="x", b="y"}`.
fn label_key(pairs: &[(String, String)]) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        escape_label_value(value, &mut out);
        out.push('"');
    }
    out.push('}');
    out
}

fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
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
            template.render(log, &mut value);
            if !value.is_empty() {
                pairs.push((name.clone(), value));
            }
        }
        if pairs.is_empty() {
            pairs.push(("agent".into(), "sluice".into()));
        }
        pairs
    }

    fn tenant(&self, log: &LogEvent) -> String {
        let mut out = String::new();
        if let Some(template) = &self.tenant {
            template.render(log, &mut out);
        }
        out
    }

    fn line(&self, log: &LogEvent) -> String {
        match self.line {
            LineFormat::Message => log.message.to_text().into_owned(),
            LineFormat::Json => {
                let mut map = log.to_json_map();
                for field in &self.removed {
                    map.remove(field);
                }
                serde_json::to_string(&map).unwrap_or_default()
            }
        }
    }

    fn metadata(&self, log: &LogEvent) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, template) in &self.structured_metadata {
            let mut value = String::new();
            template.render(log, &mut value);
            if !value.is_empty() {
                out.push((name.clone(), value));
            }
        }
        out
    }
}

/// A built Loki sink.
#[derive(Debug)]
pub struct Loki {
    driver: HttpDriver,
    settings: Arc<LokiSettings>,
}

impl Loki {
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

/// Per-stream state kept by one lane.
#[derive(Debug, Clone, Copy)]
struct StreamSlot {
    last_timestamp: i64,
    last_used_secs: u64,
}

/// The Loki encoder (one per lane): label rendering, stream guard, ordering, wire format.
#[derive(Debug, Clone)]
pub struct LokiCodec {
    settings: Arc<LokiSettings>,
    streams: HashMap<String, StreamSlot>,
    epoch: Instant,
    last_sweep_secs: u64,
    overflow: Counter,
    rewritten: Counter,
}

/// One stream of one request being built.
struct Group {
    tenant: String,
    key: String,
    pairs: Vec<(String, String)>,
    items: Vec<usize>,
}

impl LokiCodec {
    fn new(settings: Arc<LokiSettings>, overflow: Counter, rewritten: Counter) -> Self {
        LokiCodec {
            settings,
            streams: HashMap::new(),
            epoch: Instant::now(),
            last_sweep_secs: 0,
            overflow,
            rewritten,
        }
    }

    /// True when the stream is in the table or could be added to it (it is then added);
    /// false when the table is full: the event goes to the overflow stream.
    fn admit(&mut self, table_key: &str, now_secs: u64) -> bool {
        if self.streams.contains_key(table_key) {
            return true;
        }
        if self.streams.len() >= self.settings.max_streams && now_secs >= self.last_sweep_secs + 10
        {
            self.last_sweep_secs = now_secs;
            self.streams
                .retain(|_, slot| now_secs.saturating_sub(slot.last_used_secs) < STREAM_IDLE_SECS);
        }
        if self.streams.len() >= self.settings.max_streams {
            return false;
        }
        let slot = StreamSlot {
            last_timestamp: i64::MIN,
            last_used_secs: now_secs,
        };
        self.streams.insert(table_key.to_owned(), slot);
        true
    }

    /// Groups events by (tenant, stream), in first-seen order.
    fn group(
        &mut self,
        events: &[Event],
        now_secs: u64,
    ) -> (Vec<Group>, Vec<(usize, &'static str)>) {
        let settings = self.settings.clone();
        let mut groups: Vec<Group> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut dropped = Vec::new();
        // With static labels and tenant every event is in one stream: render it once.
        let constant = settings.all_static
            && settings
                .tenant
                .as_ref()
                .is_none_or(|t| t.as_static().is_some());
        for (i, event) in events.iter().enumerate() {
            let Some(log) = event.as_log() else {
                dropped.push((i, "not_a_log"));
                continue;
            };
            if constant && groups.len() == 1 {
                groups[0].items.push(i);
                continue;
            }
            let mut pairs = settings.label_pairs(log);
            let tenant = settings.tenant(log);
            let mut key = label_key(&pairs);
            let table_key = format!("{tenant}\u{0}{key}");
            if !self.admit(&table_key, now_secs) {
                self.overflow.inc();
                key = settings.overflow_key.clone();
                pairs = settings.overflow.clone();
            }
            let group_key = format!("{tenant}\u{0}{key}");
            let at = *index.entry(group_key).or_insert_with(|| {
                groups.push(Group {
                    tenant,
                    key,
                    pairs,
                    items: Vec::new(),
                });
                groups.len() - 1
            });
            groups[at].items.push(i);
        }
        (groups, dropped)
    }

    /// Sorts each group by time and applies the out-of-order policy; returns the entry
    /// timestamps (indexed like `events`).
    fn order(
        &mut self,
        events: &[Event],
        groups: &mut [Group],
        dropped: &mut Vec<(usize, &'static str)>,
        now_secs: u64,
    ) -> Vec<i64> {
        let mut timestamps: Vec<i64> = events
            .iter()
            .map(|e| e.as_log().map_or(0, |log| log.timestamp.0))
            .collect();
        for group in groups.iter_mut() {
            group.items.sort_by_key(|&i| timestamps[i]);
            let table_key = format!("{}\u{0}{}", group.tenant, group.key);
            let slot = self.streams.entry(table_key).or_insert(StreamSlot {
                last_timestamp: i64::MIN,
                last_used_secs: now_secs,
            });
            slot.last_used_secs = now_secs;
            let policy = self.settings.out_of_order;
            group.items.retain(|&i| {
                let ts = timestamps[i];
                if ts >= slot.last_timestamp {
                    slot.last_timestamp = ts;
                    return true;
                }
                match policy {
                    OutOfOrder::Accept => true,
                    OutOfOrder::RewriteTimestamp => {
                        timestamps[i] = slot.last_timestamp;
                        self.rewritten.inc();
                        true
                    }
                    OutOfOrder::Drop => {
                        dropped.push((i, "out_of_order"));
                        false
                    }
                }
            });
        }
        timestamps
    }

    fn protobuf(&self, events: &[Event], groups: &[&Group], timestamps: &[i64]) -> Vec<u8> {
        use prost::Message as _;
        let request = proto::PushRequest {
            streams: groups
                .iter()
                .map(|group| proto::StreamAdapter {
                    labels: group.key.clone(),
                    entries: group
                        .items
                        .iter()
                        .filter_map(|&i| {
                            let log = events[i].as_log()?;
                            Some(proto::EntryAdapter {
                                timestamp: Some(proto::Timestamp {
                                    seconds: timestamps[i].div_euclid(1_000_000_000),
                                    nanos: timestamps[i].rem_euclid(1_000_000_000) as i32,
                                }),
                                line: self.settings.line(log),
                                structured_metadata: self
                                    .settings
                                    .metadata(log)
                                    .into_iter()
                                    .map(|(name, value)| proto::LabelPairAdapter { name, value })
                                    .collect(),
                            })
                        })
                        .collect(),
                    hash: 0,
                })
                .collect(),
        };
        request.encode_to_vec()
    }

    fn json(&self, events: &[Event], groups: &[&Group], timestamps: &[i64]) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 * groups.iter().map(|g| g.items.len()).sum::<usize>());
        out.extend_from_slice(b"{\"streams\":[");
        for (g, group) in groups.iter().enumerate() {
            if g > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"stream\":");
            let labels: BTreeMap<&str, &str> = group
                .pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let _ = serde_json::to_writer(&mut out, &labels);
            out.extend_from_slice(b",\"values\":[");
            let mut first = true;
            for &i in &group.items {
                let Some(log) = events[i].as_log() else {
                    continue;
                };
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(format!("[\"{}\",", timestamps[i]).as_bytes());
                let _ = serde_json::to_writer(&mut out, &self.settings.line(log));
                let metadata = self.settings.metadata(log);
                if !metadata.is_empty() {
                    let map: BTreeMap<String, String> = metadata.into_iter().collect();
                    out.push(b',');
                    let _ = serde_json::to_writer(&mut out, &map);
                }
                out.push(b']');
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"]}");
        out
    }
}

impl HttpSinkCodec for LokiCodec {
    fn accepts(&self, event: &Event) -> bool {
        matches!(event, Event::Log(_))
    }

    fn partition(&self, event: &Event) -> u64 {
        let Some(log) = event.as_log() else { return 0 };
        let key = format!(
            "{}\u{0}{}",
            self.settings.tenant(log),
            label_key(&self.settings.label_pairs(log))
        );
        crate::hash_str(&key)
    }

    fn encode(&mut self, events: &[Event]) -> Encoded {
        let now_secs = self.epoch.elapsed().as_secs();
        let (mut groups, mut dropped) = self.group(events, now_secs);
        let timestamps = self.order(events, &mut groups, &mut dropped, now_secs);
        // One request per tenant, streams in first-seen order.
        let mut tenants: Vec<(&str, Vec<&Group>)> = Vec::new();
        for group in &groups {
            match tenants
                .iter_mut()
                .find(|(tenant, _)| *tenant == group.tenant)
            {
                Some((_, list)) => list.push(group),
                None => tenants.push((&group.tenant, vec![group])),
            }
        }
        let mut requests = Vec::with_capacity(tenants.len());
        for (tenant, groups) in tenants {
            let items: Vec<usize> = groups
                .iter()
                .flat_map(|g| g.items.iter().copied())
                .collect();
            if items.is_empty() {
                continue;
            }
            let (body, content_type) = match self.settings.encoding {
                LokiEncoding::Protobuf => (
                    self.protobuf(events, &groups, &timestamps),
                    "application/x-protobuf",
                ),
                LokiEncoding::Json => (self.json(events, &groups, &timestamps), "application/json"),
            };
            let mut headers = Vec::new();
            if !tenant.is_empty() {
                match HeaderValue::from_str(tenant) {
                    Ok(value) => headers.push((HeaderName::from_static("x-scope-orgid"), value)),
                    Err(_) => {
                        dropped.extend(items.iter().map(|&i| (i, "invalid_tenant")));
                        continue;
                    }
                }
            }
            requests.push(EncodedRequest {
                body,
                content_type,
                headers,
                items,
            });
        }
        Encoded { requests, dropped }
    }

    fn judge(&self, reply: &Reply<'_>) -> Verdict {
        if reply.status == 400 {
            return Verdict::Reject {
                reason: reason_400(reply.body).to_owned(),
            };
        }
        judge_status(reply)
    }

    fn content_encoding(&self, compression: Compression) -> Option<&'static str> {
        // Protobuf bodies are snappy by definition; Promtail sends no Content-Encoding.
        match compression {
            Compression::Snappy => None,
            other => other.content_encoding(),
        }
    }
}

/// Loki's reason for a 400, from its body (`pkg/validation` messages).
fn reason_400(body: &[u8]) -> &'static str {
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    let has = |needle: &str| text.contains(needle);
    if has("out of order") || has("out_of_order") {
        "out_of_order"
    } else if has("too far behind")
        || has("too old")
        || has("greater_than_max_sample_age")
        || has("older than")
    {
        "too_old"
    } else if has("too far in the future") || has("too_far_in_future") {
        "too_new"
    } else if has("line too long") || has("line_too_long") || has("max line size") {
        "line_too_long"
    } else if has("label")
        && (has("invalid") || has("error parsing") || has("too many") || has("too long"))
    {
        "invalid_labels"
    } else if has("structured metadata") || has("structured_metadata") {
        "structured_metadata"
    } else {
        "bad_request"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Map, Timestamp};
    use prost::Message as _;

    fn config(yaml: &str) -> LokiConfig {
        crate::config::yaml::from_str(yaml, "test.yaml").unwrap()
    }

    fn event(message: &str, ts: i64, fields: &[(&str, &str)]) -> Event {
        let mut map = Map::new();
        for (k, v) in fields {
            map.insert((*k).into(), Value::from(*v));
        }
        Event::Log(LogEvent {
            timestamp: Timestamp(ts),
            message: message.into(),
            fields: map,
            origin: None,
        })
    }

    fn decode(body: &[u8]) -> proto::PushRequest {
        proto::PushRequest::decode(body).unwrap()
    }

    #[test]
    fn golden_protobuf_bytes() {
        let mut codec = config("endpoint: http://x\nlabels: { job: a }")
            .codec()
            .unwrap();
        let encoded = codec.encode(&[event("hi", 1_500_000_002, &[])]);
        let body = &encoded.requests[0].body;
        // PushRequest{streams: [StreamAdapter{labels: `{job="a"}`, entries: [
        //   EntryAdapter{timestamp: {seconds: 1, nanos: 500000002}, line: "hi"}]}]}
        let expected: Vec<u8> = [
            &[0x0a, 0x1b][..], // streams (field 1, len 27)
            &[0x0a, 0x09],
            b"{job=\"a\"}", // labels (field 1, len 9)
            &[0x12, 0x0e],  // entries (field 2, len 14)
            &[0x0a, 0x08, 0x08, 0x01, 0x10, 0x82, 0xca, 0xb5, 0xee, 0x01], // ts {1, 500000002}
            &[0x12, 0x02],
            b"hi", // line (field 2)
        ]
        .concat();
        assert_eq!(body, &expected);
        assert_eq!(encoded.requests[0].content_type, "application/x-protobuf");
        assert_eq!(encoded.requests[0].items, vec![0]);
    }

    #[test]
    fn golden_json_bytes() {
        let mut codec = config("endpoint: http://x\nencoding: json\nlabels: { job: a }\nstructured_metadata: { trace: '{{ t }}' }")
            .codec()
            .unwrap();
        let encoded = codec.encode(&[
            event("hi \"there\"", 1_500_000_002, &[("t", "abc")]),
            event("x", 7, &[]),
        ]);
        let body = String::from_utf8(encoded.requests[0].body.clone()).unwrap();
        assert_eq!(
            body,
            r#"{"streams":[{"stream":{"job":"a"},"values":[["7","x"],["1500000002","hi \"there\"",{"trace":"abc"}]]}]}"#
        );
        assert_eq!(encoded.requests[0].items, vec![1, 0]);
    }

    /// (labels config, events' (message, ts, fields)) → decoded (labels, lines) per stream.
    /// (message, timestamp, fields) of one test event.
    type Input<'a> = (&'a str, i64, &'a [(&'a str, &'a str)]);

    fn check(yaml: &str, events: &[Input<'_>], expected: &[(&str, &[&str])]) {
        let mut codec = config(yaml).codec().unwrap();
        let events: Vec<Event> = events.iter().map(|(m, ts, f)| event(m, *ts, f)).collect();
        let encoded = codec.encode(&events);
        let mut got = Vec::new();
        for request in &encoded.requests {
            for stream in decode(&request.body).streams {
                let lines: Vec<String> = stream.entries.iter().map(|e| e.line.clone()).collect();
                got.push((stream.labels, lines));
            }
        }
        let expected: Vec<(String, Vec<String>)> = expected
            .iter()
            .map(|(labels, lines)| {
                (
                    labels.to_string(),
                    lines.iter().map(|l| l.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(got, expected, "config {yaml}");
    }

    #[test]
    fn streams_labels_and_order() {
        let base = "endpoint: http://x\n";
        check(
            &format!("{base}labels: {{ job: web, status: '{{{{ status }}}}' }}"),
            &[
                ("a", 3, &[("status", "200")]),
                ("b", 1, &[("status", "500")]),
                ("c", 2, &[("status", "200")]),
            ],
            &[
                (r#"{job="web", status="200"}"#, &["c", "a"]),
                (r#"{job="web", status="500"}"#, &["b"]),
            ],
        );
        check(
            &format!("{base}labels: {{ job: web, host: '{{{{ host }}}}' }}"),
            &[("a", 1, &[])],
            &[(r#"{job="web"}"#, &["a"])],
        );
        check(base, &[("a", 1, &[])], &[(r#"{agent="sluice"}"#, &["a"])]);
        check(
            &format!("{base}labels: {{ job: 'say \"{{{{ w }}}}\"' }}"),
            &[("a", 1, &[("w", "a\\b")])],
            &[(r#"{job="say \"a\\b\""}"#, &["a"])],
        );
        check(
            &format!("{base}labels: {{ job: web, u: '{{{{ user }}}}' }}\nmax_streams: 2"),
            &[
                ("a", 1, &[("user", "1")]),
                ("b", 1, &[("user", "2")]),
                ("c", 1, &[("user", "3")]),
                ("d", 2, &[("user", "1")]),
            ],
            &[
                (r#"{job="web", u="1"}"#, &["a", "d"]),
                (r#"{job="web", u="2"}"#, &["b"]),
                (r#"{job="web", overflow="true"}"#, &["c"]),
            ],
        );
        check(
            &format!("{base}line: json\nremove_label_fields: true\nlabels: {{ s: '{{{{ s }}}}' }}"),
            &[("m", 0, &[("s", "x"), ("k", "v")])],
            &[(
                r#"{s="x"}"#,
                &[r#"{"k":"v","message":"m","timestamp":"1970-01-01T00:00:00Z"}"#],
            )],
        );
    }

    #[test]
    fn out_of_order_policies() {
        for (policy, expected_ts, expected_dropped) in [
            ("accept", vec![10, 5], 0),
            ("rewrite_timestamp", vec![10, 10], 0),
            ("drop", vec![10], 1),
        ] {
            let mut codec = config(&format!("endpoint: http://x\nout_of_order: {policy}"))
                .codec()
                .unwrap();
            let first = codec.encode(&[event("a", 10, &[])]);
            let second = codec.encode(&[event("b", 5, &[])]);
            assert_eq!(second.dropped.len(), expected_dropped, "{policy}");
            let mut got = Vec::new();
            for request in first.requests.iter().chain(&second.requests) {
                for stream in decode(&request.body).streams {
                    for entry in stream.entries {
                        let ts = entry.timestamp.unwrap();
                        got.push(ts.seconds * 1_000_000_000 + i64::from(ts.nanos));
                    }
                }
            }
            assert_eq!(got, expected_ts, "{policy}");
        }
    }

    #[test]
    fn one_request_per_tenant() {
        let mut codec = config("endpoint: http://x\ntenant_id: '{{ team }}'")
            .codec()
            .unwrap();
        let encoded = codec.encode(&[
            event("a", 1, &[("team", "red")]),
            event("b", 1, &[("team", "blue")]),
            event("c", 2, &[("team", "red")]),
        ]);
        let tenants: Vec<(String, Vec<usize>)> = encoded
            .requests
            .iter()
            .map(|r| (r.headers[0].1.to_str().unwrap().to_owned(), r.items.clone()))
            .collect();
        assert_eq!(
            tenants,
            vec![("red".into(), vec![0, 2]), ("blue".into(), vec![1])]
        );
    }

    #[test]
    fn refuses_bad_config() {
        for (yaml, expected) in [
            (
                "endpoint: http://x\nlabels: { 1bad: x }",
                "not a valid Loki label name",
            ),
            (
                "endpoint: http://x\nlabels: { a-b: x }",
                "not a valid Loki label name",
            ),
            ("endpoint: http://x\nlabels: { a: '{{ x' }", "unclosed"),
            (
                "endpoint: http://x\nlabels: { a: '{{ }}' }",
                "not a field name",
            ),
            ("endpoint: http://x\ncompression: gzip", "not supported"),
            (
                "endpoint: http://x\nencoding: json\ncompression: snappy",
                "not supported",
            ),
            ("endpoint: http://x\nmax_streams: 0", "max_streams"),
        ] {
            let error = format!("{:#}", config(yaml).build().unwrap_err());
            assert!(error.contains(expected), "{yaml}: {error}");
        }
        let built = config("endpoint: http://loki:3100/base/\nencoding: json\ncompression: { algorithm: gzip, level: 9 }").build().unwrap();
        assert_eq!(
            built.driver.url().as_str(),
            "http://loki:3100/base/loki/api/v1/push"
        );
    }

    #[test]
    fn reads_loki_400_reasons() {
        for (body, expected) in [
            ("entry with timestamp 2024-01-01 ignored, reason: 'entry out of order' for stream: {job=\"a\"}", "out_of_order"),
            ("entry for stream '{job=\"a\"}' has timestamp too old: 2020-01-01, oldest acceptable timestamp is: 2024-01-01", "too_old"),
            ("entry too far behind, entry timestamp is: ...", "too_old"),
            ("Max entry size '256' bytes exceeded for stream '{job=\"a\"}' while adding an entry with length '300' bytes (line too long)", "line_too_long"),
            ("error parsing labels '{job=}': parse error", "invalid_labels"),
            ("", "bad_request"),
            ("\u{0}\u{1}garbage", "bad_request"),
        ] {
            assert_eq!(reason_400(body.as_bytes()), expected, "{body}");
        }
    }
}
