//! `type: prometheus_remote_write`: sends metric events to a Prometheus remote-write 1.0
//! receiver (Prometheus with `--web.enable-remote-write-receiver`, Mimir, Cortex, Thanos
//! Receive, VictoriaMetrics, Grafana Cloud).
//! Spec: <https://prometheus.io/docs/specs/remote_write_spec/>.
//!
//! A batch becomes one or more `WriteRequest`s (protobuf, snappy block compression) with the
//! spec's headers: `Content-Encoding: snappy`, `Content-Type: application/x-protobuf`,
//! `X-Prometheus-Remote-Write-Version: 0.1.0`, and the driver's `User-Agent`. Events of one
//! series are merged into one `TimeSeries` per request with their samples in time order;
//! a request holds at most `max_samples_per_request` samples. How metrics become series is
//! in [`series`]; the wire messages are in [`proto`].
//!
//! Replies, as the spec asks: 2xx delivered; 429 and every 5xx retried by the driver with
//! backoff (honouring `Retry-After`); any other status is never retried: the request's
//! events are dropped, counted in `sluice_events_dropped_total{reason}` (for a 400, the
//! receiver's reason: `out_of_order`, `out_of_bounds`, `duplicate_sample`, ...) and in
//! `sluice_remote_write_rejected_requests_total{status}`, and written to the dead-letter
//! file like every sink's rejections (so an operator can see which samples a receiver
//! refused; the file is size-capped). Prometheus refuses a whole request for one bad
//! sample, so samples not newer than the last one sent for their series are left out before
//! sending (counted as `out_of_order`), and a request refused for its samples is sent again
//! as two halves ([`Verdict::Split`], `encode_part`), so only the samples refused alone
//! are lost.
//!
//! Log events are not this sink's: they are settled at once, uncounted.
//!
//! Owns: the remote-write wire format and reply reasons. Never: batches, retries or
//! acknowledges (that is [`super::driver`]).

pub mod proto;
pub mod series;

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use url::Url;

use super::driver::{
    judge_status, retry_after, Compression, Encoded, EncodedRequest, HttpDriver, HttpSinkCodec,
    HttpSinkConfig, Reply, Verdict,
};
use super::{SinkContext, SinkInput};
use crate::event::{Event, Metric};
use crate::telemetry::{ComponentMetrics, Counter};
use series::{Admit, Identity, SeriesTable};

/// The protocol version header value of remote-write 1.0.
pub const PROTOCOL_VERSION: &str = "0.1.0";

/// `type: prometheus_remote_write` settings: its own keys ([`PrometheusRemoteWriteKeys`])
/// beside the shared network-sink keys ([`HttpKeys`](super::driver::HttpKeys)); `batch:`
/// counts metric events, `compression:` is `snappy` (the only one remote-write allows) and
/// one series always uses one lane of `request.concurrency`.
pub type PrometheusRemoteWriteConfig = HttpSinkConfig<PrometheusRemoteWriteKeys>;

/// The keys of `type: prometheus_remote_write` beside the shared network-sink keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusRemoteWriteKeys {
    /// The receiver's full write URL, e.g. `http://prometheus:9090/api/v1/write`.
    #[serde(deserialize_with = "crate::bounds::http_url_key")]
    pub endpoint: Url,
    /// Labels added to every series that does not already have a label of that name
    /// (like Prometheus' `external_labels`: they never override a series' own labels).
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    /// A series whose value has not changed for this many seconds gets one staleness
    /// marker and is no longer sent until it changes again; `0` (the default) sends every
    /// sample. For `log_to_metric` totals of labels that come and go.
    #[serde(default = "default_expire_after_secs")]
    pub expire_after_secs: u64,
    /// Most samples in one request; a batch with more is split (series stay in time order).
    #[serde(default = "default_max_samples_per_request")]
    pub max_samples_per_request: usize,
}

/// Never: a constant series (`node_memory_MemTotal_bytes`, `up`) is a value, not a series
/// gone quiet; expiring it by default blanked scraped and host metrics after 5 minutes.
fn default_expire_after_secs() -> u64 {
    0
}

fn default_max_samples_per_request() -> usize {
    10_000
}

impl PrometheusRemoteWriteConfig {
    /// Validates everything (external labels, URL, TLS files) and builds the sink.
    pub fn build(&self) -> anyhow::Result<PrometheusRemoteWrite> {
        let driver = self
            .http
            .build(self.sink.endpoint.clone(), &[Compression::Snappy])?;
        Ok(PrometheusRemoteWrite {
            driver,
            settings: Arc::new(self.sink.settings()?),
        })
    }

    /// The encoder alone, with unregistered counters (benches, tests).
    pub fn codec(&self) -> anyhow::Result<RemoteWriteCodec> {
        Ok(RemoteWriteCodec::new(
            Arc::new(self.sink.settings()?),
            Counters::default(),
        ))
    }
}

impl PrometheusRemoteWriteKeys {
    fn settings(&self) -> anyhow::Result<Settings> {
        use crate::bounds::{self, check};
        check(
            "max_samples_per_request",
            self.max_samples_per_request,
            1..=bounds::MAX_EVENTS,
        )?;
        check(
            "expire_after_secs",
            self.expire_after_secs,
            0..=bounds::MAX_SECS,
        )?;
        let mut external = Vec::new();
        for (name, value) in &self.external_labels {
            anyhow::ensure!(
                crate::transform::to_metric::valid_label_name(name),
                "external_labels: {name:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
            );
            anyhow::ensure!(
                !value.is_empty(),
                "external_labels.{name}: the value must not be empty"
            );
            external.push((name.clone(), value.clone()));
        }
        external.sort();
        let expire_after_ms = (self.expire_after_secs > 0).then(|| {
            i64::try_from(self.expire_after_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
        });
        Ok(Settings {
            external,
            expire_after_ms,
            max_samples: self.max_samples_per_request,
        })
    }
}

#[derive(Debug)]
struct Settings {
    /// Sorted, validated.
    external: Vec<(String, String)>,
    expire_after_ms: Option<i64>,
    max_samples: usize,
}

/// A built remote-write sink.
#[derive(Debug)]
pub struct PrometheusRemoteWrite {
    driver: HttpDriver,
    settings: Arc<Settings>,
}

impl PrometheusRemoteWrite {
    /// The sink's `buffer:`.
    pub fn buffer(&self) -> &crate::buffer::BufferSettings {
        self.driver.buffer()
    }

    /// Runs the sink through the shared driver.
    pub async fn run(self, input: SinkInput, ctx: SinkContext) {
        let counters = Counters {
            samples: ctx.metrics.counter(
                "sluice_remote_write_samples_total",
                "Samples encoded into remote-write requests (once each, however often retried).",
                &[],
            ),
            expired: ctx.metrics.counter(
                "sluice_remote_write_series_expired_total",
                "Series that stopped changing for expire_after_secs and were no longer sent.",
                &[],
            ),
            component: Some(ctx.metrics.clone()),
        };
        let codec = RemoteWriteCodec::new(self.settings, counters);
        self.driver.run(codec, input, ctx).await;
    }
}

/// The codec's metric handles.
#[derive(Debug, Clone, Default)]
struct Counters {
    samples: Counter,
    expired: Counter,
    /// For per-status rejection counters (absent in benches and unit tests).
    component: Option<ComponentMetrics>,
}

/// The remote-write encoder (one per lane): series mapping, order, expiry, wire format.
#[derive(Debug, Clone)]
pub struct RemoteWriteCodec {
    settings: Arc<Settings>,
    table: SeriesTable,
    counters: Counters,
    /// The events the last `encode` sent as staleness markers, for `encode_part`.
    stale_items: Vec<usize>,
}

/// The events of one series identity within a batch. The identity itself is not kept:
/// it is taken again from the events when the request is written, so a batch's live memory
/// is a hash and the indices per series, not a label set.
struct Group {
    /// The identity's [`Identity::hash`].
    hash: u128,
    items: Vec<usize>,
}

/// Events of one series identity and one value layout, in one request.
struct Run {
    group: usize,
    /// The first event: its kind (and histogram bounds) name the run's series.
    layout: usize,
    /// (event index, send a staleness marker instead of the value).
    events: Vec<(usize, bool)>,
}

/// One `WriteRequest` being filled: which events, in which series. Encoded at the end,
/// straight from the events' borrowed strings (see [`proto::put_timeseries`]).
#[derive(Default)]
struct RequestBuilder {
    runs: Vec<Run>,
    items: Vec<usize>,
    samples: usize,
}

fn metric_at(events: &[Event], index: usize) -> Option<&Metric> {
    match events.get(index) {
        Some(Event::Metric(metric)) => Some(metric),
        _ => None,
    }
}

impl RequestBuilder {
    /// Adds event `index` (of group `group`; a group's events come in time order).
    fn push(&mut self, group: usize, index: usize, events: &[Event], stale: bool) {
        let Some(metric) = metric_at(events, index) else {
            return;
        };
        let extends = self.runs.last().is_some_and(|run| {
            run.group == group
                && metric_at(events, run.layout)
                    .is_some_and(|first| series::same_layout(&first.value, &metric.value))
        });
        if !extends {
            self.runs.push(Run {
                group,
                layout: index,
                events: Vec::new(),
            });
        }
        if let Some(run) = self.runs.last_mut() {
            run.events.push((index, stale));
        }
        self.samples += series::sample_count(&metric.value);
        self.items.push(index);
    }

    fn finish(self, external: &[(String, String)], events: &[Event]) -> EncodedRequest {
        let mut body = Vec::with_capacity(self.samples * 64);
        let mut samples: Vec<(f64, i64)> = Vec::new();
        for run in &self.runs {
            let Some(layout) = metric_at(events, run.layout) else {
                continue;
            };
            // Every event of a run has the identity of its first.
            let Some(identity) = Identity::of(layout, external) else {
                continue;
            };
            for position in 0..series::sample_count(&layout.value) {
                let (suffix, bound) = series::series_at(&layout.value, position);
                let name = format!("{}{suffix}", identity.name);
                let le = bound.map(series::format_bound);
                let mut labels: Vec<(&str, &str)> = Vec::with_capacity(identity.labels.len() + 2);
                labels.push(("__name__", &name));
                labels.extend(identity.labels.iter().map(|(k, v)| (k.as_ref(), *v)));
                if let Some(le) = &le {
                    labels.push(("le", le));
                }
                labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
                samples.clear();
                for &(index, stale) in &run.events {
                    let Some(metric) = metric_at(events, index) else {
                        continue;
                    };
                    let value = if stale {
                        proto::stale_nan()
                    } else {
                        series::value_at(&metric.value, position)
                    };
                    samples.push((value, metric.timestamp.as_millis()));
                }
                proto::put_timeseries(&mut body, &labels, &samples);
            }
        }
        EncodedRequest {
            body,
            content_type: "application/x-protobuf",
            headers: vec![(
                HeaderName::from_static("x-prometheus-remote-write-version"),
                HeaderValue::from_static(PROTOCOL_VERSION),
            )],
            items: self.items,
            path_segment: None,
        }
    }
}

impl RemoteWriteCodec {
    fn new(settings: Arc<Settings>, counters: Counters) -> Self {
        RemoteWriteCodec {
            table: SeriesTable::new(settings.expire_after_ms),
            settings,
            counters,
            stale_items: Vec::new(),
        }
    }

    /// Groups metric events by series identity (first-seen order), each group in time order.
    fn group(
        events: &[Event],
        external: &[(String, String)],
        dropped: &mut Vec<(usize, &'static str)>,
    ) -> Vec<Group> {
        let mut groups: Vec<Group> = Vec::new();
        let mut index: HashMap<u128, usize> = HashMap::new();
        for (i, event) in events.iter().enumerate() {
            let Event::Metric(metric) = event else {
                dropped.push((i, "not_a_metric"));
                continue;
            };
            let Some(identity) = Identity::of(metric, external) else {
                dropped.push((i, "invalid_name"));
                continue;
            };
            let hash = identity.hash();
            match index.entry(hash) {
                Entry::Occupied(at) => groups[*at.get()].items.push(i),
                Entry::Vacant(slot) => {
                    slot.insert(groups.len());
                    groups.push(Group {
                        hash,
                        items: vec![i],
                    });
                }
            }
        }
        for group in &mut groups {
            group.items.sort_by_key(|&i| match &events[i] {
                Event::Metric(metric) => metric.timestamp,
                Event::Log(log) => log.timestamp,
            });
        }
        groups
    }
}

impl HttpSinkCodec for RemoteWriteCodec {
    fn accepts(&self, event: &Event) -> bool {
        matches!(event, Event::Metric(_))
    }

    fn partition(&self, event: &Event) -> u64 {
        let Event::Metric(metric) = event else {
            return 0;
        };
        Identity::of(metric, &self.settings.external).map_or(0, |identity| identity.hash() as u64)
    }

    fn encode(&mut self, events: &[Event]) -> Encoded {
        self.stale_items.clear();
        let mut dropped = Vec::new();
        let settings = self.settings.clone();
        let groups = Self::group(events, &settings.external, &mut dropped);
        let mut requests = Vec::new();
        let mut current = RequestBuilder::default();
        for (g, group) in groups.iter().enumerate() {
            for &i in &group.items {
                let Event::Metric(metric) = &events[i] else {
                    continue;
                };
                let timestamp = metric.timestamp.as_millis();
                let fingerprint = series::fingerprint(&metric.value);
                let stale = match self.table.admit(group.hash, timestamp, fingerprint) {
                    Admit::Send => false,
                    Admit::SendStale => {
                        self.counters.expired.inc();
                        self.stale_items.push(i);
                        true
                    }
                    Admit::Drop(reason) => {
                        dropped.push((i, reason));
                        continue;
                    }
                };
                let n = series::sample_count(&metric.value);
                if current.samples > 0 && current.samples + n > self.settings.max_samples {
                    let full = std::mem::take(&mut current);
                    self.counters.samples.add(full.samples as u64);
                    requests.push(full.finish(&settings.external, events));
                }
                current.push(g, i, events, stale);
            }
        }
        if !current.items.is_empty() {
            self.counters.samples.add(current.samples as u64);
            requests.push(current.finish(&settings.external, events));
        }
        Encoded { requests, dropped }
    }

    /// The items again, in one request, as `encode` wrote them (series order, staleness
    /// markers where it sent them): their series state already counts them sent.
    fn encode_part(&mut self, events: &[Event], items: &[usize]) -> Option<EncodedRequest> {
        let settings = self.settings.clone();
        let wanted: std::collections::HashSet<usize> = items.iter().copied().collect();
        let groups = Self::group(events, &settings.external, &mut Vec::new());
        let mut part = RequestBuilder::default();
        for (g, group) in groups.iter().enumerate() {
            for &i in group.items.iter().filter(|i| wanted.contains(i)) {
                part.push(g, i, events, self.stale_items.contains(&i));
            }
        }
        (part.items.len() == items.len()).then(|| part.finish(&settings.external, events))
    }

    fn judge(&self, reply: &Reply<'_>) -> Verdict {
        match reply.status {
            200..=299 => Verdict::Delivered,
            // The spec: 5xx (all of them) and 429 may be retried; nothing else may.
            429 | 500..=599 => match judge_status(reply) {
                Verdict::Reject { reason } => Verdict::Retry {
                    reason,
                    retry_after: retry_after(reply.headers, chrono::Utc::now()),
                },
                verdict => verdict,
            },
            status => {
                let reason = if status == 400 {
                    reason_400(reply.body).to_owned()
                } else {
                    format!("http_{status}")
                };
                if let Some(metrics) = &self.counters.component {
                    metrics
                        .counter(
                            "sluice_remote_write_rejected_requests_total",
                            "Remote-write requests refused for good by the receiver (not retried), by status.",
                            &[("status", &status.to_string())],
                        )
                        .inc();
                }
                // Prometheus refuses the whole request for one such sample (and some
                // receivers store the rest and still answer 400): its halves are sent on their
                // own, so only the samples refused alone are lost (a stored sample sent again
                // is the same sample, which Prometheus takes as a no-op).
                let per_sample = matches!(
                    reason.as_str(),
                    "out_of_order"
                        | "out_of_bounds"
                        | "duplicate_sample"
                        | "too_new"
                        | "invalid_labels"
                );
                if per_sample {
                    Verdict::Split { reason }
                } else {
                    Verdict::Reject { reason }
                }
            }
        }
    }
}

/// The receiver's reason for a 400, from its body (Prometheus TSDB error texts).
fn reason_400(body: &[u8]) -> &'static str {
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    let has = |needle: &str| text.contains(needle);
    if has("out of order") || has("out-of-order") {
        "out_of_order"
    } else if has("out of bounds") || has("too old") {
        "out_of_bounds"
    } else if has("duplicate sample") {
        "duplicate_sample"
    } else if has("too far in the future") || has("too new") {
        "too_new"
    } else if has("label") {
        "invalid_labels"
    } else {
        "bad_request"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{MetricValue, Timestamp};
    use prost::Message as _;

    fn config(yaml: &str) -> PrometheusRemoteWriteConfig {
        crate::yaml::from_str(yaml, "test.yaml").unwrap()
    }

    /// A constant series (`up`, `node_memory_MemTotal_bytes`) is sent at every scrape for
    /// as long as it is scraped, unless expiry is asked for.
    #[test]
    fn constant_series_are_not_expired_by_default() {
        let mut codec = config("endpoint: http://x").codec().unwrap();
        let hour_of_scrapes: Vec<Event> = (0..240)
            .map(|i| counter("up", &[("job", "node")], 1.0, i * 15_000))
            .collect();
        let encoded = codec.encode(&hour_of_scrapes);
        let sent: usize = encoded.requests.iter().map(|r| r.items.len()).sum();
        assert_eq!((sent, encoded.dropped.len()), (240, 0));
        let mut expiring = config("endpoint: http://x\nexpire_after_secs: 300")
            .codec()
            .unwrap();
        assert!(!expiring.encode(&hour_of_scrapes).dropped.is_empty());
    }

    fn counter(name: &str, labels: &[(&str, &str)], value: f64, ms: i64) -> Event {
        Event::Metric(Metric {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            value: MetricValue::Counter(value),
            timestamp: Timestamp(ms * 1_000_000),
        })
    }

    /// Decodes every request into `name{labels} [(ts, value)...]` lines and item lists.
    fn decode(encoded: &Encoded) -> (Vec<Vec<String>>, Vec<Vec<usize>>) {
        let mut bodies = Vec::new();
        let mut items = Vec::new();
        for request in &encoded.requests {
            let decoded = proto::WriteRequest::decode(request.body.as_slice()).unwrap();
            bodies.push(
                decoded
                    .timeseries
                    .iter()
                    .map(|ts| {
                        let labels: Vec<String> = ts
                            .labels
                            .iter()
                            .map(|l| format!("{}={}", l.name, l.value))
                            .collect();
                        let samples: Vec<String> = ts
                            .samples
                            .iter()
                            .map(|s| {
                                if s.value.to_bits() == proto::STALE_NAN_BITS {
                                    format!("{}:stale", s.timestamp)
                                } else {
                                    format!("{}:{}", s.timestamp, s.value)
                                }
                            })
                            .collect();
                        format!("{} {}", labels.join(","), samples.join(" "))
                    })
                    .collect(),
            );
            items.push(request.items.clone());
        }
        (bodies, items)
    }

    fn check(yaml: &str, batches: &[Vec<Event>], expected: &[&[&str]]) {
        let mut codec = config(yaml).codec().unwrap();
        let mut got = Vec::new();
        for events in batches {
            got.extend(decode(&codec.encode(events)).0);
        }
        let expected: Vec<Vec<String>> = expected
            .iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect())
            .collect();
        assert_eq!(got, expected, "{yaml}");
    }

    #[test]
    fn golden_protobuf_bytes() {
        let mut codec = config("endpoint: http://x/api/v1/write").codec().unwrap();
        let encoded = codec.encode(&[counter("up", &[], 1.0, 2)]);
        // WriteRequest{timeseries: [TimeSeries{labels: [{__name__, up}],
        //   samples: [{value: 1.0, timestamp: 2}]}]}
        let expected: Vec<u8> = [
            &[0x0a, 0x1d][..], // timeseries (field 1, len 29)
            &[0x0a, 0x0e],     // labels (field 1, len 14)
            &[0x0a, 0x08],
            b"__name__",
            &[0x12, 0x02],
            b"up",
            &[0x12, 0x0b],                         // samples (field 2, len 11)
            &[0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f], // value 1.0 (fixed64)
            &[0x10, 0x02],                         // timestamp 2
        ]
        .concat();
        let request = &encoded.requests[0];
        assert_eq!(request.body, expected);
        assert_eq!(request.content_type, "application/x-protobuf");
        assert_eq!(
            request.headers[0].0.as_str(),
            "x-prometheus-remote-write-version"
        );
        assert_eq!(request.headers[0].1.to_str().unwrap(), "0.1.0");
        assert_eq!(request.items, vec![0]);
    }

    #[test]
    fn merges_series_and_orders_samples() {
        let base = "endpoint: http://x\n";
        check(
            base,
            &[vec![
                counter("c", &[("a", "1")], 3.0, 30),
                counter("c", &[("a", "2")], 1.0, 10),
                counter("c", &[("a", "1")], 1.0, 10),
                counter("c", &[("a", "1")], 2.0, 20),
            ]],
            &[&["__name__=c,a=1 10:1 20:2 30:3", "__name__=c,a=2 10:1"]],
        );
        // Samples not newer than the last sent are left out; equal timestamps in a batch
        // keep the first.
        check(
            base,
            &[
                vec![counter("c", &[], 1.0, 10), counter("c", &[], 2.0, 10)],
                vec![counter("c", &[], 3.0, 5), counter("c", &[], 4.0, 11)],
            ],
            &[&["__name__=c 10:1"], &["__name__=c 11:4"]],
        );
        check(
            &format!("{base}external_labels: {{ cluster: eu, a: ext }}"),
            &[vec![counter("c", &[("a", "own")], 1.0, 1)]],
            &[&["__name__=c,a=own,cluster=eu 1:1"]],
        );
    }

    #[test]
    fn histogram_bounds_changing_within_a_batch() {
        let histogram = |bounds: &[f64], count: u64, ms: i64| {
            Event::Metric(Metric {
                name: "h".into(),
                labels: Vec::new(),
                value: MetricValue::Histogram {
                    buckets: bounds.iter().map(|b| (*b, count)).collect(),
                    sum: 1.5,
                    count,
                },
                timestamp: Timestamp(ms * 1_000_000),
            })
        };
        check(
            "endpoint: http://x\n",
            &[vec![
                histogram(&[1.0], 1, 1),
                histogram(&[1.0], 2, 2),
                histogram(&[1.0, 2.0], 3, 3),
            ]],
            &[&[
                "__name__=h_bucket,le=1 1:1 2:2",
                "__name__=h_bucket,le=+Inf 1:1 2:2",
                "__name__=h_sum 1:1.5 2:1.5",
                "__name__=h_count 1:1 2:2",
                "__name__=h_bucket,le=1 3:3",
                "__name__=h_bucket,le=2 3:3",
                "__name__=h_bucket,le=+Inf 3:3",
                "__name__=h_sum 3:1.5",
                "__name__=h_count 3:3",
            ]],
        );
    }

    #[test]
    fn splits_requests_by_samples() {
        let mut codec = config("endpoint: http://x\nmax_samples_per_request: 2")
            .codec()
            .unwrap();
        let events: Vec<Event> = (0..5)
            .map(|i| counter("c", &[], 1.0 + i as f64, i))
            .collect();
        let (bodies, items) = decode(&codec.encode(&events));
        assert_eq!(
            bodies,
            vec![
                vec!["__name__=c 0:1 1:2".to_owned()],
                vec!["__name__=c 2:3 3:4".to_owned()],
                vec!["__name__=c 4:5".to_owned()],
            ]
        );
        assert_eq!(items, vec![vec![0, 1], vec![2, 3], vec![4]]);
    }

    #[test]
    fn expires_unchanged_series_with_a_staleness_marker() {
        let yaml = "endpoint: http://x\nexpire_after_secs: 1";
        check(
            yaml,
            &[
                vec![counter("c", &[], 1.0, 0), counter("c", &[], 1.0, 500)],
                vec![counter("c", &[], 1.0, 1000)],
                vec![counter("c", &[], 1.0, 1500)],
                vec![counter("c", &[], 2.0, 2000)],
            ],
            &[
                &["__name__=c 0:1 500:1"],
                &["__name__=c 1000:stale"],
                &["__name__=c 2000:2"],
            ],
        );
        let mut codec = config(yaml).codec().unwrap();
        codec.encode(&[counter("c", &[], 1.0, 0)]);
        let encoded = codec.encode(&[counter("c", &[], 1.0, 5000), counter("c", &[], 1.0, 6000)]);
        assert_eq!(encoded.dropped, vec![(1, "expired")]);
    }

    #[test]
    fn every_event_is_sent_or_dropped() {
        let mut codec = config("endpoint: http://x").codec().unwrap();
        let events = vec![
            counter("", &[], 1.0, 1),
            Event::Log(crate::event::LogEvent::new("x")),
            counter("ok", &[], 1.0, 1),
        ];
        let encoded = codec.encode(&events);
        assert_eq!(
            encoded.dropped,
            vec![(0, "invalid_name"), (1, "not_a_metric")]
        );
        assert_eq!(encoded.requests[0].items, vec![2]);
    }

    fn check_judge(status: u16, body: &str, expected: &str) {
        let codec = config("endpoint: http://x").codec().unwrap();
        let headers = reqwest::header::HeaderMap::new();
        let verdict = codec.judge(&Reply {
            status,
            headers: &headers,
            body: body.as_bytes(),
            items: 1,
            path_segment: None,
        });
        let got = match verdict {
            Verdict::Delivered => "delivered".to_owned(),
            Verdict::Retry { reason, .. } => format!("retry {reason}"),
            Verdict::Reject { reason } => format!("reject {reason}"),
            Verdict::Partial { .. } => "partial".to_owned(),
            Verdict::Split { reason } => format!("split {reason}"),
        };
        assert_eq!(got, expected, "{status} {body}");
    }

    #[test]
    fn judges_replies_the_remote_write_way() {
        check_judge(204, "", "delivered");
        check_judge(200, "", "delivered");
        check_judge(429, "", "retry http_429");
        check_judge(500, "", "retry http_500");
        check_judge(501, "", "retry http_501");
        check_judge(503, "", "retry http_503");
        check_judge(400, "out of order sample\n", "split out_of_order");
        check_judge(400, "out of bounds\n", "split out_of_bounds");
        check_judge(
            400,
            "duplicate sample for timestamp\n",
            "split duplicate_sample",
        );
        check_judge(400, "\u{0}garbage", "reject bad_request");
        check_judge(401, "", "reject http_401");
        check_judge(404, "", "reject http_404");
        check_judge(408, "", "reject http_408");
        check_judge(413, "", "reject http_413");
    }

    #[test]
    fn refuses_bad_config() {
        for (yaml, expected) in [
            (
                "endpoint: http://x\nexternal_labels: { 1a: x }",
                "not a valid",
            ),
            (
                "endpoint: http://x\nexternal_labels: { __a: x }",
                "not a valid",
            ),
            (
                "endpoint: http://x\nexternal_labels: { a: '' }",
                "must not be empty",
            ),
            (
                "endpoint: http://x\nmax_samples_per_request: 0",
                "max_samples",
            ),
            ("endpoint: http://x\ncompression: gzip", "not supported"),
        ] {
            let error = format!("{:#}", config(yaml).build().unwrap_err());
            assert!(error.contains(expected), "{yaml}: {error}");
        }
        let error =
            crate::yaml::from_str::<PrometheusRemoteWriteConfig>("endpoint: ftp://x", "t.yaml")
                .unwrap_err()
                .to_string();
        assert!(
            error.contains("is not an http:// or https:// URL"),
            "{error}"
        );
        let unknown = crate::yaml::from_str::<PrometheusRemoteWriteConfig>(
            "endpoint: http://x\nexternal_label: {}",
            "test.yaml",
        );
        assert!(unknown.is_err());
    }
}
