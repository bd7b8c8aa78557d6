//! `type: opentelemetry`: sends logs and metrics to any OTLP/HTTP receiver (an OpenTelemetry
//! Collector, Loki's and VictoriaLogs' OTLP endpoints, Prometheus' OTLP receiver) as
//! protobuf, gzip-compressed by default. Spec: <https://opentelemetry.io/docs/specs/otlp/>.
//!
//! `endpoint` is the base URL, to which `/v1/logs` and `/v1/metrics` are appended as OTLP
//! exporters do (`http://collector:4318`, `http://loki:3100/otlp`). Log events go to
//! `/v1/logs`, metric events to `/v1/metrics`, each through its own instance of the shared
//! driver (same `batch`, `request`, `retry`, TLS and auth settings; `/health` has
//! `<sink>/logs` and `<sink>/metrics` entries; the sink's event counters cover both).
//!
//! Mapping of fields to the semantic conventions: `mapping.rs`; grouping and wire format:
//! `encode.rs`. Replies: 2xx delivered (a `partial_success` with rejected items counts that
//! many as dropped, with the server's message: OTLP says not to retry them); 408, 429 and
//! 5xx other than 501 retried (honouring `Retry-After`); other statuses dead-lettered with
//! the `google.rpc.Status` message.
//!
//! Owns: the OTLP wire format and field mapping. Never: batches, retries or acknowledges
//! (that is [`super::driver`]).

mod encode;
pub mod mapping;
mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;

use prost::Message as _;
use serde::Deserialize;
use tokio::sync::mpsc;
use url::Url;

use super::driver::{
    judge_status, Compression, CompressionConfig, Encoded, EncodedRequest, HttpDriver,
    HttpSinkCodec, HttpSinkConfig, Judgement, Refusals, Reply, Unnamed, Verdict,
};
use super::{SinkContext, SinkInput};
use crate::batch::Batch;
use crate::event::Event;
use crate::health::Progress;
use crate::otlp::proto;
use mapping::Mapping;

/// `type: opentelemetry` settings: its own keys ([`OpenTelemetrySinkKeys`]) beside the
/// shared network-sink keys ([`HttpKeys`](super::driver::HttpKeys)); `compression:` is
/// `gzip` (default) or `none`, and one `buffer:` serves both signals.
pub type OpenTelemetrySinkConfig = HttpSinkConfig<OpenTelemetrySinkKeys>;

/// The keys of `type: opentelemetry` beside the shared network-sink keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenTelemetrySinkKeys {
    /// Base URL of the receiver; `/v1/logs` and `/v1/metrics` are appended.
    #[serde(deserialize_with = "crate::bounds::http_url_key")]
    pub endpoint: Url,
    /// Resource attributes added to every resource that lacks them (e.g. `service.name:
    /// node-agent`, `deployment.environment.name: prod`).
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, String>,
    /// Which fields are resource attributes rather than record attributes: exact names, or
    /// prefixes ending in `.`. Default: the semantic conventions' resource namespaces
    /// (`service.`, `host.`, `k8s.`, `container.`, `process.`, `os.`, `cloud.`,
    /// `deployment.`, `telemetry.`, `faas.`, `device.`, `webengine.`).
    #[serde(default)]
    pub resource_fields: Option<Vec<String>>,
}

/// `base` with `signal` (`logs`, `metrics`) appended: `/v1/<signal>` under its path.
fn signal_url(base: &Url, signal: &str) -> Url {
    let mut url = base.clone();
    let path = format!("{}/v1/{signal}", base.path().trim_end_matches('/'));
    url.set_path(&path);
    url
}

impl OpenTelemetrySinkConfig {
    /// Validates everything and builds the sink (two drivers, one per signal).
    pub fn build(&self) -> anyhow::Result<OpenTelemetrySink> {
        let mut http = self.http.clone();
        http.compression = Some(
            http.compression
                .unwrap_or(CompressionConfig::Algorithm(Compression::Gzip)),
        );
        let allowed = &[Compression::Gzip, Compression::None];
        let endpoint = &self.sink.endpoint;
        let logs = http.build(signal_url(endpoint, "logs"), allowed)?;
        let metrics = http.build(signal_url(endpoint, "metrics"), allowed)?;
        Ok(OpenTelemetrySink {
            logs,
            metrics,
            settings: Arc::new(self.sink.settings()?),
        })
    }
}

impl OpenTelemetrySinkKeys {
    fn settings(&self) -> anyhow::Result<Settings> {
        for name in self.resource_attributes.keys() {
            anyhow::ensure!(
                !name.is_empty(),
                "resource_attributes: a name must not be empty"
            );
        }
        let mapping = match &self.resource_fields {
            None => Mapping::default(),
            Some(fields) => {
                anyhow::ensure!(
                    fields.iter().all(|f| !f.is_empty()),
                    "resource_fields: entries must not be empty"
                );
                Mapping::new(fields.iter().cloned())
            }
        };
        Ok(Settings {
            mapping,
            statics: self
                .resource_attributes
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    /// The log encoder alone (benches, tests).
    pub fn logs_codec(&self) -> anyhow::Result<OtlpCodec> {
        Ok(OtlpCodec {
            settings: Arc::new(self.settings()?),
            signal: Signal::Logs,
        })
    }

    /// The metric encoder alone (benches, tests).
    pub fn metrics_codec(&self) -> anyhow::Result<OtlpCodec> {
        Ok(OtlpCodec {
            settings: Arc::new(self.settings()?),
            signal: Signal::Metrics,
        })
    }
}

#[derive(Debug)]
struct Settings {
    mapping: Mapping,
    statics: Vec<(String, String)>,
}

/// A built OTLP sink.
#[derive(Debug)]
pub struct OpenTelemetrySink {
    logs: HttpDriver,
    metrics: HttpDriver,
    settings: Arc<Settings>,
}

impl OpenTelemetrySink {
    /// The sink's `buffer:` (one for both signals).
    pub fn buffer(&self) -> &crate::buffer::BufferSettings {
        self.logs.buffer()
    }

    /// The `/v1/logs` and `/v1/metrics` URLs.
    pub fn urls(&self) -> (&Url, &Url) {
        (self.logs.url(), self.metrics.url())
    }

    /// Runs the sink: splits each batch into its log and metric events and feeds one driver
    /// each; returns when the input is closed and both drained.
    pub async fn run(self, mut input: SinkInput, ctx: SinkContext) {
        let (logs_tx, logs_rx) = mpsc::channel::<Batch>(1);
        let (metrics_tx, metrics_rx) = mpsc::channel::<Batch>(1);
        let inner = |rx| SinkInput::new(rx, Progress::new(crate::telemetry::Gauge::default()));
        let for_signal = |signal: &str| SinkContext {
            id: format!("{}/{signal}", ctx.id).into(),
            ..ctx.clone()
        };
        let codec = |signal| OtlpCodec {
            settings: self.settings.clone(),
            signal,
        };
        let split = async move {
            while let Some(batch) = input.recv().await {
                let (logs, metrics) = split(batch);
                if let Some(batch) = logs {
                    if logs_tx.send(batch).await.is_err() {
                        break;
                    }
                }
                if let Some(batch) = metrics {
                    if metrics_tx.send(batch).await.is_err() {
                        break;
                    }
                }
            }
        };
        tokio::join!(
            split,
            self.logs
                .run(codec(Signal::Logs), inner(logs_rx), for_signal("logs")),
            self.metrics.run(
                codec(Signal::Metrics),
                inner(metrics_rx),
                for_signal("metrics")
            ),
        );
    }
}

/// A batch's log events and metric events, each with the batch's acknowledgements (a batch
/// of one kind goes whole, with its events' home; an empty one is settled here).
fn split(batch: Batch) -> (Option<Batch>, Option<Batch>) {
    let logs = batch
        .events
        .iter()
        .filter(|e| matches!(e, Event::Log(_)))
        .count();
    if logs == batch.events.len() {
        if batch.events.is_empty() {
            batch.settle();
            return (None, None);
        }
        return (Some(batch), None);
    }
    if logs == 0 {
        return (None, Some(batch));
    }
    let Batch { events, acks, home } = batch;
    let (log_events, metric_events): (Vec<Event>, Vec<Event>) =
        events.into_iter().partition(|e| matches!(e, Event::Log(_)));
    (
        Some(Batch {
            events: log_events,
            acks: acks.clone(),
            home,
        }),
        Some(Batch {
            events: metric_events,
            acks,
            home: None,
        }),
    )
}

/// Which signal a codec encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Logs,
    Metrics,
}

/// The OTLP encoder of one signal (one per driver lane).
#[derive(Debug, Clone)]
pub struct OtlpCodec {
    settings: Arc<Settings>,
    signal: Signal,
}

impl HttpSinkCodec for OtlpCodec {
    fn accepts(&self, event: &Event) -> bool {
        match self.signal {
            Signal::Logs => matches!(event, Event::Log(_)),
            Signal::Metrics => matches!(event, Event::Metric(_)),
        }
    }

    fn encode(&mut self, events: &[Event]) -> Encoded {
        let settings = &self.settings;
        let (body, items) = match self.signal {
            Signal::Logs => encode::logs(events, &settings.mapping, &settings.statics),
            Signal::Metrics => encode::metrics(events, &settings.mapping, &settings.statics),
        };
        if items.is_empty() {
            return Encoded::default();
        }
        Encoded {
            requests: vec![EncodedRequest {
                body,
                content_type: "application/x-protobuf",
                items,
                ..Default::default()
            }],
            dropped: Vec::new(),
        }
    }

    fn judge_events(&self, reply: &Reply<'_>, _events: &[Event], items: &[usize]) -> Judgement {
        if (200..300).contains(&reply.status) {
            let partial = proto::ExportResponse::decode(reply.body)
                .ok()
                .and_then(|response| response.partial_success)
                .filter(|partial| partial.rejected > 0);
            return match partial {
                None => Judgement::Verdict(Verdict::Delivered),
                Some(partial) => Judgement::Refused(Refusals {
                    named: Vec::new(),
                    unnamed: vec![Unnamed {
                        positions: (0..items.len()).collect(),
                        refused: usize::try_from(partial.rejected)
                            .unwrap_or(usize::MAX)
                            .min(items.len()),
                        reason: format!("otlp_partial_success: {}", partial.error_message),
                    }],
                }),
            };
        }
        Judgement::Verdict(match judge_status(reply) {
            Verdict::Reject { reason } => {
                let said = proto::Status::decode(reply.body)
                    .ok()
                    .map(|status| status.message)
                    .filter(|message| !message.is_empty());
                Verdict::Reject {
                    reason: match said {
                        Some(message) => format!("{reason}: {message}"),
                        None => reason,
                    },
                }
            }
            verdict => verdict,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_the_signal_paths() {
        for (base, logs) in [
            ("http://collector:4318", "http://collector:4318/v1/logs"),
            ("http://collector:4318/", "http://collector:4318/v1/logs"),
            ("http://loki:3100/otlp", "http://loki:3100/otlp/v1/logs"),
            ("https://x/otlp/", "https://x/otlp/v1/logs"),
        ] {
            assert_eq!(
                signal_url(&Url::parse(base).unwrap(), "logs").as_str(),
                logs
            );
        }
    }

    #[test]
    fn reads_partial_success_and_status_replies() {
        let codec = OpenTelemetrySinkKeys {
            endpoint: Url::parse("http://x").unwrap(),
            resource_attributes: BTreeMap::new(),
            resource_fields: None,
        }
        .logs_codec()
        .unwrap();
        let headers = reqwest::header::HeaderMap::new();
        let reply = |status, body: &[u8]| {
            codec.judge_events(
                &Reply {
                    status,
                    headers: &headers,
                    body,
                    items: 3,
                    path_segment: None,
                },
                &[],
                &[0, 1, 2],
            )
        };
        assert_eq!(reply(200, b""), Judgement::Verdict(Verdict::Delivered));
        let partial = proto::ExportResponse {
            partial_success: Some(proto::PartialSuccess {
                rejected: 2,
                error_message: "too old".into(),
            }),
        }
        .encode_to_vec();
        let Judgement::Refused(refusals) = reply(200, &partial) else {
            panic!("refusals")
        };
        assert_eq!(refusals.unnamed[0].refused, 2);
        assert!(refusals.unnamed[0].reason.ends_with("too old"));
        let status = proto::Status {
            code: 3,
            message: "bad attribute".into(),
        }
        .encode_to_vec();
        assert_eq!(
            reply(400, &status),
            Judgement::Verdict(Verdict::Reject {
                reason: "http_400: bad attribute".into()
            })
        );
        assert!(matches!(
            reply(503, b""),
            Judgement::Verdict(Verdict::Retry { .. })
        ));
    }
}
