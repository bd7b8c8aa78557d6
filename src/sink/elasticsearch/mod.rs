//! `type: elasticsearch`: ships log events to Elasticsearch (or OpenSearch) with the `_bulk`
//! API: NDJSON action/document pairs, gzip by default.
//! Spec: <https://www.elastic.co/guide/en/elasticsearch/reference/current/docs-bulk.html>.
//!
//! Two modes: `bulk` writes to an index named from a pattern (`logs-%Y.%m.%d`, `{{ field }}`
//! templates) with `index` actions, or `create` when the document has an `_id`;
//! `data_stream` sends `create` actions to `<type>-<dataset>-<namespace>`. Documents get a
//! deterministic `_id` by default (see [`action`]), so a replay after a crash is answered
//! 409 (already there) instead of indexing the line twice.
//!
//! Each reply is judged per item ([`response`]): only items answered 429/5xx are sent again,
//! other item errors go to the dead-letter file with Elasticsearch's reason, and a reply
//! that does not match the request is a retried failure of the whole request.
//!
//! Owns: the `_bulk` wire format and its per-item verdicts. Never: batches, retries or
//! acknowledges (that is [`super::driver`]).

pub mod action;
mod config;
pub mod document;
pub mod response;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use url::Url;

pub use self::config::{
    DataStreamConfig, ElasticsearchConfig, ElasticsearchKeys, Endpoints, IdMode, IndexInPath, Mode,
};

use self::action::{is_path_safe, write_action, DateCache, IdSource, IndexPattern};
use self::config::default_batch;
use self::document::{write_document, TimestampCache};
use super::driver::{
    Compression, CompressionConfig, Encoded, EncodedRequest, HttpDriver, HttpSinkCodec, Reply,
    Verdict,
};
use super::{SinkContext, SinkInput};
use crate::event::Event;
use crate::telemetry::{ComponentMetrics, Counter};

/// The path appended to each endpoint.
pub const BULK_PATH: &str = "/_bulk";
/// Asks Elasticsearch for only what the verdict reads (about 25 bytes per item instead of
/// about 200), so replies to large batches stay small.
pub const FILTER_PATH: &str = "errors,items.*.status,items.*.error.type,items.*.error.reason";
/// The gzip level when `compression` does not set one. Level 6 is the last whose extra
/// bytes saved are worth their CPU at the cheapest billed egress: on access logs it sends
/// 16% fewer bytes than level 1 (with `_id`s; 23% without) for 0.3–0.8 more CPU-seconds
/// per million documents, 10–25 MB saved per CPU-second, against ~1.3 MB at which a
/// CPU-second and cross-zone egress cost the same; level 7 saves 0.5 MB per CPU-second
/// more. Figures and prices in docs/decisions.md ("Elasticsearch gzip level").
pub const DEFAULT_GZIP_LEVEL: u32 = 6;
/// The largest reply read (replies are per item; 64 MiB covers 100k failed items).
const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

impl ElasticsearchConfig {
    /// Validates everything (URLs, index pattern, templates, TLS files) and builds the sink.
    pub fn build(&self) -> anyhow::Result<Elasticsearch> {
        let settings = self.sink.settings()?;
        let urls = match &self.sink.endpoint {
            Endpoints::One(url) => vec![url.clone()],
            Endpoints::Many(urls) => urls.clone(),
        };
        let urls = urls
            .into_iter()
            .map(|url| self.sink.bulk_url(url))
            .collect::<Vec<_>>();
        let mut http = self.http.clone();
        http.compression = match http.compression {
            None => Some(CompressionConfig::WithLevel {
                algorithm: Compression::Gzip,
                level: Some(DEFAULT_GZIP_LEVEL),
            }),
            Some(CompressionConfig::Algorithm(Compression::Gzip)) => {
                Some(CompressionConfig::WithLevel {
                    algorithm: Compression::Gzip,
                    level: Some(DEFAULT_GZIP_LEVEL),
                })
            }
            other => other,
        };
        let driver = http.build_endpoints(
            urls,
            &[Compression::Gzip, Compression::None],
            &default_batch(),
        )?;
        Ok(Elasticsearch {
            driver,
            settings: Arc::new(settings),
        })
    }

    /// The encoder alone, with unregistered counters (benches, tests).
    pub fn codec(&self) -> anyhow::Result<ElasticsearchCodec> {
        Ok(ElasticsearchCodec::new(
            Arc::new(self.sink.settings()?),
            Arc::new(CodecMetrics::default()),
        ))
    }
}

#[derive(Debug)]
struct Settings {
    index: IndexPattern,
    id: IdSource,
    always_create: bool,
    /// The index never goes in the path (`index_in_path: never`, or a store refused it);
    /// shared by every lane.
    path_refused: Arc<AtomicBool>,
}

/// The sink's own counters (beside the driver's).
#[derive(Debug, Default)]
struct CodecMetrics {
    documents: Counter,
    conflicts: Counter,
    item_retries: Counter,
    invalid: [Counter; 2],
    /// Registers `item_failures_total{status, error_type}` series on demand.
    component: Option<ComponentMetrics>,
}

impl CodecMetrics {
    fn registered(metrics: &ComponentMetrics) -> Self {
        let invalid = |reason| {
            metrics.counter(
                "sluice_elasticsearch_invalid_responses_total",
                "Bulk replies retried whole because they were unusable, by reason.",
                &[("reason", reason)],
            )
        };
        CodecMetrics {
            documents: metrics.counter(
                "sluice_elasticsearch_documents_total",
                "Documents Elasticsearch accepted (created, indexed, or already there).",
                &[],
            ),
            conflicts: metrics.counter(
                "sluice_elasticsearch_conflicts_total",
                "Create items answered 409 because the _id exists (a replay), counted as delivered.",
                &[],
            ),
            item_retries: metrics.counter(
                "sluice_elasticsearch_item_retries_total",
                "Bulk items sent again after a 429 or 5xx item result.",
                &[],
            ),
            invalid: [
                invalid("invalid_bulk_response"),
                invalid("bulk_item_count_mismatch"),
            ],
            component: Some(metrics.clone()),
        }
    }

    fn record(&self, stats: &response::ItemStats) {
        self.documents.add(stats.accepted + stats.conflicts);
        self.conflicts.add(stats.conflicts);
        self.item_retries.add(stats.retried);
        match stats.invalid {
            Some("bulk_item_count_mismatch") => self.invalid[1].inc(),
            Some(_) => self.invalid[0].inc(),
            None => {}
        }
        if let Some(component) = &self.component {
            for ((status, kind), n) in &stats.failures {
                component
                    .counter(
                        "sluice_elasticsearch_item_failures_total",
                        "Bulk items that failed, by item status and error type.",
                        &[("status", &status.to_string()), ("error_type", kind)],
                    )
                    .add(*n);
            }
        }
    }
}

/// A built Elasticsearch sink.
#[derive(Debug)]
pub struct Elasticsearch {
    driver: HttpDriver,
    settings: Arc<Settings>,
}

impl Elasticsearch {
    /// The sink's `buffer:`.
    pub fn buffer(&self) -> &crate::buffer::BufferSettings {
        self.driver.buffer()
    }

    /// The `_bulk` URLs, in the order requests rotate through them.
    pub fn urls(&self) -> &[Url] {
        self.driver.urls()
    }

    /// Runs the sink through the shared driver.
    pub async fn run(self, input: SinkInput, ctx: SinkContext) {
        let metrics = Arc::new(CodecMetrics::registered(&ctx.metrics));
        let codec = ElasticsearchCodec::new(self.settings, metrics);
        self.driver.run(codec, input, ctx).await;
    }
}

/// The `_bulk` encoder (one per lane).
#[derive(Debug, Clone)]
pub struct ElasticsearchCodec {
    settings: Arc<Settings>,
    metrics: Arc<CodecMetrics>,
    dates: DateCache,
    timestamps: TimestampCache,
    /// The index names of the request being encoded, and each event's span of them.
    names: String,
    spans: Vec<(usize, usize)>,
    /// Scratch space for ids.
    id: String,
    /// Body bytes per document of the last request (sizes the next body).
    bytes_per_event: usize,
}

impl ElasticsearchCodec {
    fn new(settings: Arc<Settings>, metrics: Arc<CodecMetrics>) -> Self {
        ElasticsearchCodec {
            settings,
            metrics,
            dates: DateCache::default(),
            timestamps: TimestampCache::default(),
            names: String::new(),
            spans: Vec::new(),
            id: String::new(),
            bytes_per_event: 384,
        }
    }
}

impl HttpSinkCodec for ElasticsearchCodec {
    fn accepts(&self, event: &Event) -> bool {
        matches!(event, Event::Log(_))
    }

    fn encode(&mut self, events: &[Event]) -> Encoded {
        // Index names first. When the whole request goes to one index (the usual case: a
        // date pattern and one day of events), the name goes in the path, `/<index>/_bulk`,
        // and the action lines carry only the `_id`: a third shorter, less to compress.
        self.names.clear();
        self.spans.clear();
        let mut single = true;
        for event in events {
            let Some(log) = event.as_log() else { continue };
            let start = self.names.len();
            self.settings
                .index
                .render(log, &mut self.dates, &mut self.names);
            let span = match self.spans.last() {
                Some(&(s, e)) if self.names[s..e] == self.names[start..] => {
                    self.names.truncate(start);
                    (s, e)
                }
                _ => (start, self.names.len()),
            };
            single &= self.spans.first().is_none_or(|&first| first == span);
            self.spans.push(span);
        }
        let in_path = !self.settings.path_refused.load(Ordering::Relaxed);
        let path_index = match self.spans.first() {
            Some(&(s, e)) if in_path && single && is_path_safe(&self.names[s..e]) => {
                Some(self.names[s..e].to_owned())
            }
            _ => None,
        };
        // Sized from the last body, so the buffer is allocated once.
        let mut body = Vec::with_capacity(events.len() * (self.bytes_per_event + 16));
        let mut items = Vec::with_capacity(events.len());
        let mut spans = self.spans.iter();
        for (i, event) in events.iter().enumerate() {
            let Some(log) = event.as_log() else { continue };
            let Some(&(s, e)) = spans.next() else { break };
            let index = path_index.is_none().then(|| &self.names[s..e]);
            self.id.clear();
            let id = self
                .settings
                .id
                .write(log, &mut self.id)
                .then_some(self.id.as_str());
            write_action(&mut body, index, id, self.settings.always_create);
            write_document(log, &mut self.timestamps, &mut body);
            body.push(b'\n');
            items.push(i);
        }
        let mut requests = Vec::new();
        if !items.is_empty() {
            self.bytes_per_event = body.len() / items.len();
            requests.push(EncodedRequest {
                body,
                content_type: "application/x-ndjson",
                headers: Vec::new(),
                items,
                path_segment: path_index,
            });
        }
        Encoded {
            requests,
            dropped: Vec::new(),
        }
    }

    fn judge(&self, reply: &Reply<'_>) -> Verdict {
        if reply.path_segment.is_some() && matches!(reply.status, 400 | 404 | 405) {
            // A store that serves only `/_bulk` (VictoriaLogs: `400 unsupported path
            // requested`): send everything there from now on, this request included. A real
            // error about the documents comes back again, per item, from `/_bulk`.
            if !self.settings.path_refused.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    status = reply.status,
                    reply = %String::from_utf8_lossy(&reply.body[..reply.body.len().min(300)]),
                    "the store refused /<index>/_bulk; sending to /_bulk with the index in each action from now on",
                );
            }
            return Verdict::Partial {
                retry: (0..reply.items).collect(),
                retry_reason: format!("{} path refused", reply.status),
                reject: Vec::new(),
            };
        }
        let (verdict, stats) = response::judge_bulk(reply);
        self.metrics.record(&stats);
        verdict
    }

    fn max_reply_bytes(&self) -> usize {
        MAX_REPLY_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{LogEvent, Origin, Timestamp, Value};

    fn config(yaml: &str) -> ElasticsearchConfig {
        crate::yaml::from_str(yaml, "test.yaml").unwrap()
    }

    fn event(message: &str, ts: i64, origin: Option<(&str, u64)>) -> Event {
        let mut log = LogEvent::new(message);
        log.timestamp = Timestamp(ts);
        log.insert("app", "web");
        log.origin = origin.map(|(stream, offset)| Origin {
            stream: stream.into(),
            offset,
        });
        Event::Log(log)
    }

    /// (config, events) → the body's lines.
    fn check(yaml: &str, events: &[Event], expected: &[&str]) {
        let mut codec = config(yaml).codec().unwrap();
        let encoded = codec.encode(events);
        let lines: Vec<String> = encoded
            .requests
            .iter()
            .flat_map(|r| {
                // A request whose index is in its path starts with `/<index>/_bulk`.
                let path = r.path_segment.as_ref().map(|p| format!("/{p}/_bulk"));
                path.into_iter().chain(
                    String::from_utf8(r.body.clone())
                        .unwrap()
                        .lines()
                        .map(str::to_owned)
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        assert_eq!(lines, expected, "config {yaml}");
        for request in &encoded.requests {
            assert!(request.body.ends_with(b"\n"), "NDJSON ends with a newline");
            assert_eq!(request.content_type, "application/x-ndjson");
        }
    }

    #[test]
    fn encodes_bulk_bodies() {
        let day2 = 86_400_000_000_000 + 5;
        let auto_id = action::hash128("f-1", 7, b"b");
        let auto_id = format!("{auto_id:032x}");
        check(
            "endpoint: http://x\nindex: 'logs-{{ app }}-%Y.%m.%d'",
            &[event("a", 0, None), event("b", day2, Some(("f-1", 7)))],
            &[
                r#"{"index":{"_index":"logs-web-1970.01.01"}}"#,
                r#"{"@timestamp":"1970-01-01T00:00:00Z","message":"a","app":"web"}"#,
                &format!(r#"{{"create":{{"_index":"logs-web-1970.01.02","_id":"{auto_id}"}}}}"#),
                r#"{"@timestamp":"1970-01-02T00:00:00.000000005Z","message":"b","app":"web"}"#,
            ],
        );
        check(
            "endpoint: http://x\nid: none",
            &[event("b", 0, Some(("f-1", 7)))],
            &[
                "/sluice-1970.01.01/_bulk",
                r#"{"index":{}}"#,
                r#"{"@timestamp":"1970-01-01T00:00:00Z","message":"b","app":"web"}"#,
            ],
        );
        check(
            "endpoint: http://x\nid_field: app\nindex: i",
            &[event("b", 0, None)],
            &[
                "/i/_bulk",
                r#"{"create":{"_id":"web"}}"#,
                r#"{"@timestamp":"1970-01-01T00:00:00Z","message":"b","app":"web"}"#,
            ],
        );
        check(
            "endpoint: http://x\nmode: data_stream\nid: none\ndata_stream: { dataset: '{{ app }}', namespace: prod }",
            &[event("b", 0, Some(("f-1", 7))), event("c", 5, None)],
            &[
                "/logs-web-prod/_bulk",
                r#"{"create":{}}"#,
                r#"{"@timestamp":"1970-01-01T00:00:00Z","message":"b","app":"web"}"#,
                r#"{"create":{}}"#,
                r#"{"@timestamp":"1970-01-01T00:00:00.000000005Z","message":"c","app":"web"}"#,
            ],
        );
        // One index, but not one a path can hold as it is: named per line.
        check(
            "endpoint: http://x\nindex: 'Logs/{{ app }}'\nid: none",
            &[event("b", 0, None)],
            &[
                r#"{"index":{"_index":"Logs/web"}}"#,
                r#"{"@timestamp":"1970-01-01T00:00:00Z","message":"b","app":"web"}"#,
            ],
        );
        // Day one, day two, day one again: three names, per line.
        check(
            "endpoint: http://x\nindex: 'd-%d'\nid: none",
            &[
                event("a", 0, None),
                event("b", day2, None),
                event("c", 1, None),
            ],
            &[
                r#"{"index":{"_index":"d-01"}}"#,
                r#"{"@timestamp":"1970-01-01T00:00:00Z","message":"a","app":"web"}"#,
                r#"{"index":{"_index":"d-02"}}"#,
                r#"{"@timestamp":"1970-01-02T00:00:00.000000005Z","message":"b","app":"web"}"#,
                r#"{"index":{"_index":"d-01"}}"#,
                r#"{"@timestamp":"1970-01-01T00:00:00.000000001Z","message":"c","app":"web"}"#,
            ],
        );
        check("endpoint: http://x", &[], &[]);
        let metric = Event::Metric(crate::event::Metric {
            name: "m".into(),
            labels: Vec::new(),
            value: crate::event::MetricValue::Gauge(1.0),
            timestamp: Timestamp(0),
        });
        let codec = config("endpoint: http://x").codec().unwrap();
        assert!(!codec.accepts(&metric));
        assert!(codec.accepts(&event("a", 0, None)));
        let _ = Value::Null;
    }

    #[test]
    fn builds_urls_and_refuses_bad_config() {
        let built =
            config("endpoint: [ 'http://a:9200/base/', 'https://b:9200' ]\npipeline: my pipe")
                .build()
                .unwrap();
        let urls: Vec<&str> = built.urls().iter().map(Url::as_str).collect();
        assert_eq!(
            urls,
            [
                "http://a:9200/base/_bulk?filter_path=errors%2Citems.*.status%2Citems.*.error.type%2Citems.*.error.reason&pipeline=my+pipe",
                "https://b:9200/_bulk?filter_path=errors%2Citems.*.status%2Citems.*.error.type%2Citems.*.error.reason&pipeline=my+pipe",
            ]
        );
        assert_eq!(built.driver.compression(), Compression::Gzip);
        assert_eq!(
            built.driver.compression_level(),
            6,
            "the default gzip level"
        );
        for (yaml, level) in [
            ("endpoint: http://x\ncompression: gzip", 6),
            (
                "endpoint: http://x\ncompression: { algorithm: gzip, level: 1 }",
                1,
            ),
        ] {
            assert_eq!(
                config(yaml).build().unwrap().driver.compression_level(),
                level
            );
        }
        for (yaml, expected) in [
            ("endpoint: http://x\nindex: 'a-%Q'", "unknown strftime"),
            ("endpoint: http://x\nindex: '{{ a'", "without a closing"),
            (
                "endpoint: http://x\nmode: data_stream\nindex: a",
                "index is for mode: bulk",
            ),
            (
                "endpoint: http://x\ndata_stream: {}",
                "data_stream is for mode",
            ),
            (
                "endpoint: http://x\nmode: data_stream\ndata_stream: { dataset: '' }",
                "data_stream.dataset",
            ),
            ("endpoint: http://x\nid: none\nid_field: a", "contradict"),
            ("endpoint: []", "at least one URL"),
            ("endpoint: http://x\ncompression: snappy", "not supported"),
        ] {
            let error = format!("{:#}", config(yaml).build().unwrap_err());
            assert!(error.contains(expected), "{yaml}: {error}");
        }
        // A scheme other than http(s) is refused as the file is read, at its line.
        let error = crate::yaml::from_str::<ElasticsearchConfig>("endpoint: ftp://x", "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("is not an http:// or https:// URL"),
            "{error}"
        );
        let unknown = crate::yaml::from_str::<ElasticsearchConfig>(
            "endpoint: http://x\nindexx: a",
            "test.yaml",
        );
        assert!(unknown.is_err());
    }
}
