//! `type: prometheus_scrape`: scrapes Prometheus exporters (static `targets`) every
//! `interval_secs`, as a Prometheus scrape job would, and turns each sample into a metric
//! event, so one agent replaces node_exporter's scraper. Scrape config semantics follow
//! <https://prometheus.io/docs/prometheus/latest/configuration/configuration/#scrape_config>.
//!
//! Each target runs its own task. A scrape asks for OpenMetrics or text 0.0.4 (the same
//! `Accept` header as Prometheus) with `Accept-Encoding: gzip`, reads at most
//! `body_size_limit_bytes` (compressed and decompressed), and parses with [`parse`].
//! Every sample gets `job` and `instance` (the target's `host:port`); with `honor_labels:
//! false` a scraped label of the same name is kept as `exported_<name>`, with `true` the
//! scraped one wins. Counters and the `_bucket`/`_sum`/`_count` of histograms and
//! summaries become counter events, everything else gauges; each series keeps its own
//! name, so the remote-write sink writes exactly the series Prometheus would store.
//!
//! After each scrape, Prometheus' synthetic series: `up` (1 or 0),
//! `scrape_duration_seconds`, `scrape_samples_scraped`,
//! `scrape_samples_post_metric_relabeling`, `scrape_series_added`. A scrape fails as a
//! whole (`up 0`, no samples, reason counted in
//! `sluice_scrape_failures_total{reason}`) on a connection error, a timeout, a non-2xx
//! status, a body over the limit, more samples than `sample_limit`, or a body that does
//! not parse. Duplicate series in one body keep the first sample (counted as
//! `duplicate`). Series of the previous scrape that the target no longer exposes (or all
//! of them, when the scrape failed) get a staleness marker, as Prometheus does.
//!
//! Owns: scraping and sample → event mapping. Never: keeps more than one body per target.

pub mod parse;

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument as _;

use serde::Deserialize;
use url::Url;

use super::host_metrics::add_labels;
use super::staleness::SeriesSet;
use super::{Running, SourceContext};
use crate::batch::Batch;
use crate::event::{Event, Metric, MetricValue, Timestamp};
use crate::telemetry::registry;
use crate::transform::to_metric::valid_label_name;

/// What Prometheus 2.x sends, preferring OpenMetrics.
const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// `type: prometheus_scrape` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusScrapeConfig {
    /// URLs to scrape, e.g. `http://127.0.0.1:9100/metrics`.
    pub targets: Vec<Url>,
    /// Seconds between two scrapes of a target (default 15).
    #[serde(default = "default_interval_secs")]
    pub interval_secs: u64,
    /// Seconds a scrape may take (at most `interval_secs`; default 10, or `interval_secs`
    /// when that is shorter, as Prometheus).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// The `job` label (default `prometheus_scrape`).
    #[serde(default = "default_job")]
    pub job: String,
    /// On a clash with `job`/`instance` or `labels`, keep the scraped label (`true`) or
    /// rename it `exported_<name>` (`false`, the default, as Prometheus).
    #[serde(default)]
    pub honor_labels: bool,
    /// Use the timestamps a target exposes (default `true`, as Prometheus).
    #[serde(default = "default_true")]
    pub honor_timestamps: bool,
    /// More samples than this fails the scrape (`0`: no limit; default 200000, where
    /// Prometheus has no limit: memory stays bounded).
    #[serde(default = "default_sample_limit")]
    pub sample_limit: usize,
    /// A body larger than this fails the scrape (after decompression too; default 16 MiB,
    /// where Prometheus has no limit).
    #[serde(default = "default_body_size_limit_bytes")]
    pub body_size_limit_bytes: usize,
    /// Labels added to every series as target labels (like `job`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_interval_secs() -> u64 {
    15
}
fn default_job() -> String {
    "prometheus_scrape".to_owned()
}
fn default_true() -> bool {
    true
}
fn default_sample_limit() -> usize {
    200_000
}
fn default_body_size_limit_bytes() -> usize {
    16 << 20
}

impl PrometheusScrapeConfig {
    /// Validates the targets, durations and labels.
    pub fn build(&self) -> anyhow::Result<PrometheusScrape> {
        anyhow::ensure!(!self.targets.is_empty(), "targets: at least one URL");
        use crate::bounds::{self, check};
        check("interval_secs", self.interval_secs, 1..=bounds::MAX_SECS)?;
        let timeout_secs = self.timeout_secs.unwrap_or(self.interval_secs.min(10));
        anyhow::ensure!(
            timeout_secs > 0 && timeout_secs <= self.interval_secs,
            "timeout_secs must be between 1 and interval_secs ({}), got {timeout_secs}",
            self.interval_secs
        );
        anyhow::ensure!(!self.job.is_empty(), "job must not be empty");
        check(
            "body_size_limit_bytes",
            self.body_size_limit_bytes,
            1..=bounds::MAX_BYTES,
        )?;
        let mut targets: Vec<Target> = Vec::new();
        for url in &self.targets {
            anyhow::ensure!(
                matches!(url.scheme(), "http" | "https"),
                "targets: {url} is not an http(s) URL"
            );
            // Two targets of one source with one `instance` would write the same `up`
            // and `scrape_*` series, each sample out of order with the other's.
            anyhow::ensure!(
                !targets.iter().any(|t| t.url == *url),
                "targets: {url} is listed twice"
            );
            let host = url
                .host_str()
                .ok_or_else(|| anyhow::anyhow!("targets: {url} has no host"))?;
            let port = url.port_or_known_default().unwrap_or(80);
            let mut labels = vec![
                ("instance".to_owned(), format!("{host}:{port}")),
                ("job".to_owned(), self.job.clone()),
            ];
            for (name, value) in &self.labels {
                anyhow::ensure!(
                    valid_label_name(name) && name != "le" && name != "quantile",
                    "labels: {name:?} is not a valid Prometheus label name"
                );
                labels.retain(|(k, _)| k != name);
                labels.push((name.clone(), value.clone()));
            }
            labels.sort();
            targets.push(Target {
                url: url.clone(),
                labels,
            });
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(timeout_secs))
            .build()?;
        Ok(PrometheusScrape {
            targets,
            settings: Arc::new(Settings {
                interval: Duration::from_secs(self.interval_secs),
                timeout: Duration::from_secs(timeout_secs),
                honor_labels: self.honor_labels,
                honor_timestamps: self.honor_timestamps,
                sample_limit: self.sample_limit,
                body_size_limit: self.body_size_limit_bytes,
                client,
            }),
        })
    }
}

#[derive(Debug)]
struct Target {
    url: Url,
    /// `instance`, `job` and `labels`, sorted.
    labels: Vec<(String, String)>,
}

#[derive(Debug)]
struct Settings {
    interval: Duration,
    timeout: Duration,
    honor_labels: bool,
    honor_timestamps: bool,
    sample_limit: usize,
    body_size_limit: usize,
    client: reqwest::Client,
}

/// A built prometheus_scrape source.
#[derive(Debug)]
pub struct PrometheusScrape {
    targets: Vec<Target>,
    settings: Arc<Settings>,
}

/// Why a scrape failed (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Connection refused, reset, DNS.
    Connection,
    /// Took longer than `timeout_secs`.
    Timeout,
    /// A non-2xx status.
    Status,
    /// Over `body_size_limit_bytes`.
    BodySize,
    /// A gzip body that does not decompress.
    Decompress,
    /// More samples than `sample_limit`.
    SampleLimit,
    /// Not the exposition format.
    Parse,
}

/// A failed scrape: why (the `reason` label) and what happened, for the log.
#[derive(Debug)]
struct Failed {
    kind: Failure,
    detail: String,
}

impl Failed {
    fn new(kind: Failure, detail: impl std::fmt::Display) -> Self {
        Failed {
            kind,
            detail: detail.to_string(),
        }
    }
}

impl From<Failure> for Failed {
    fn from(kind: Failure) -> Self {
        let detail = match kind {
            Failure::BodySize => "the body is over body_size_limit_bytes",
            Failure::Decompress => "the gzip body does not decompress",
            Failure::SampleLimit => "more samples than sample_limit",
            Failure::Parse => "the body is not UTF-8",
            Failure::Connection | Failure::Timeout | Failure::Status => kind.reason(),
        };
        Failed::new(kind, detail)
    }
}

impl Failure {
    fn reason(self) -> &'static str {
        match self {
            Failure::Connection => "connection",
            Failure::Timeout => "timeout",
            Failure::Status => "status",
            Failure::BodySize => "body_size_limit",
            Failure::Decompress => "decompress",
            Failure::SampleLimit => "sample_limit",
            Failure::Parse => "parse",
        }
    }
}

impl PrometheusScrape {
    /// Samples are taken anew.
    pub const REPLAYABLE: bool = false;

    /// `body` → the metric events a scrape of the first target would send (benches,
    /// tests).
    pub fn events_of(&self, body: &str, timestamp: Timestamp) -> Result<Vec<Metric>, Failure> {
        let duplicates = crate::telemetry::Counter::default();
        to_metrics(
            body,
            &self.targets[0].labels,
            &self.settings,
            timestamp,
            &duplicates,
        )
        .map(|(metrics, _)| metrics)
        .map_err(|failed| failed.kind)
    }

    /// Starts one task per target on the async runtime.
    pub fn start(self, ctx: SourceContext) -> anyhow::Result<Running> {
        let (runtime, span) = (ctx.runtime.clone(), ctx.span());
        let ctx = Arc::new(ctx);
        let settings = self.settings;
        let targets = self.targets;
        Ok(Running::Task(runtime.spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for target in targets {
                let scrape = scrape_loop(target, settings.clone(), ctx.clone());
                tasks.spawn(scrape.instrument(span.clone()));
            }
            while let Some(result) = tasks.join_next().await {
                if let Err(error) = result {
                    if error.is_panic() {
                        std::panic::resume_unwind(error.into_panic());
                    }
                }
            }
        })))
    }
}

async fn scrape_loop(target: Target, settings: Arc<Settings>, ctx: Arc<SourceContext>) {
    let stream_key = crate::hash_str(&ctx.checkpoint_key(target.url.as_str()));
    let labels = ctx.metrics.labels_with(&[]);
    let failures = |reason: &str| {
        let mut labels = labels.clone();
        labels.push(("reason", reason));
        registry().counter(
            "sluice_scrape_failures_total",
            "Scrapes that failed, by reason.",
            &labels,
        )
    };
    let duplicates = failures("duplicate");
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous = SeriesSet::default();
    let mut health = TargetLog::default();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = ctx.shutdown.wait() => return,
        }
        ctx.out.free_returned();
        let started = Instant::now();
        let timestamp = Timestamp::now();
        let body = fetch(&target.url, &settings).await;
        let duration = started.elapsed().as_secs_f64();
        let outcome = body
            .and_then(|body| to_metrics(&body, &target.labels, &settings, timestamp, &duplicates));
        let (mut metrics, scraped, failure) = match outcome {
            Ok((metrics, scraped)) => (metrics, scraped, None),
            Err(failed) => (Vec::new(), 0, Some(failed)),
        };
        if let Some(failed) = &failure {
            failures(failed.kind.reason()).inc();
        }
        health.record(&target.url, failure.as_ref());
        let failure = failure.map(|failed| failed.kind);
        let current = SeriesSet::of(&metrics, &previous);
        let added = previous.mark_gone(&current, timestamp, &mut metrics);
        previous = current;
        let up = failure.is_none();
        for (name, value) in [
            ("up", if up { 1.0 } else { 0.0 }),
            ("scrape_duration_seconds", duration),
            ("scrape_samples_scraped", scraped as f64),
            ("scrape_samples_post_metric_relabeling", scraped as f64),
            ("scrape_series_added", added as f64),
        ] {
            metrics.push(Metric {
                name: name.to_owned(),
                labels: target.labels.clone(),
                value: MetricValue::Gauge(value),
                timestamp,
            });
        }
        let events: Vec<Event> = metrics.into_iter().map(Event::Metric).collect();
        ctx.metrics.events_in.add(events.len() as u64);
        if ctx
            .out
            .send_async(stream_key, Batch::new(events))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// While a target keeps failing, its WARN line is repeated this often.
const FAILING_LOG_EVERY: Duration = Duration::from_secs(300);

/// A target's state in the log: a WARN line with the error when it starts failing (or fails
/// for another reason), repeated every [`FAILING_LOG_EVERY`] while it keeps failing, and an
/// INFO line when it is scraped again; what Prometheus shows on its targets page.
#[derive(Default)]
struct TargetLog {
    /// Since when, and how many scrapes, it has been failing; the reason last logged and
    /// when.
    failing: Option<Failing>,
}

struct Failing {
    since: Instant,
    scrapes: u64,
    logged: Failure,
    logged_at: Instant,
}

impl TargetLog {
    fn record(&mut self, url: &Url, failed: Option<&Failed>) {
        let Some(failed) = failed else {
            if let Some(failing) = self.failing.take() {
                tracing::info!(
                    target = %url,
                    failed_scrapes = failing.scrapes,
                    down_secs = failing.since.elapsed().as_secs(),
                    "scrape target is up again"
                );
            }
            return;
        };
        let now = Instant::now();
        let failing = self.failing.get_or_insert(Failing {
            since: now,
            scrapes: 0,
            logged: failed.kind,
            logged_at: now,
        });
        failing.scrapes += 1;
        if failing.scrapes == 1
            || failing.logged != failed.kind
            || now.duration_since(failing.logged_at) >= FAILING_LOG_EVERY
        {
            tracing::warn!(
                target = %url,
                reason = failed.kind.reason(),
                error = %failed.detail,
                failed_scrapes = failing.scrapes,
                "scrape failed; the target's `up` is 0"
            );
            failing.logged = failed.kind;
            failing.logged_at = now;
        }
    }
}

/// GETs `url`: the body, decompressed, within the size limit.
async fn fetch(url: &Url, settings: &Settings) -> Result<String, Failed> {
    let request = settings
        .client
        .get(url.clone())
        .header("Accept", ACCEPT)
        .header("Accept-Encoding", "gzip")
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            settings.timeout.as_secs_f64().to_string(),
        );
    let failed = |error: reqwest::Error| {
        let kind = if error.is_timeout() {
            Failure::Timeout
        } else {
            Failure::Connection
        };
        // The whole chain: reqwest's own text is only "error sending request".
        let mut detail = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            detail.push_str(": ");
            detail.push_str(&cause.to_string());
            source = cause.source();
        }
        Failed::new(kind, detail)
    };
    let mut response = request.send().await.map_err(failed)?;
    if !response.status().is_success() {
        return Err(Failed::new(
            Failure::Status,
            format!("server returned HTTP status {}", response.status()),
        ));
    }
    let gzip = response
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    if response
        .content_length()
        .is_some_and(|n| n > settings.body_size_limit as u64)
    {
        return Err(Failure::BodySize.into());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        if body.len() + chunk.len() > settings.body_size_limit {
            return Err(Failure::BodySize.into());
        }
        body.extend_from_slice(&chunk);
    }
    if gzip {
        body = gunzip(&body, settings.body_size_limit)?;
    }
    // Invalid UTF-8 cannot be the exposition format.
    String::from_utf8(body).map_err(|_| Failure::Parse.into())
}

/// Decompresses at most `limit` bytes; more is a failure.
fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| Failure::Decompress)?;
    if out.len() > limit {
        return Err(Failure::BodySize);
    }
    Ok(out)
}

/// A parsed body → metric events with target labels; and the number of samples.
fn to_metrics(
    body: &str,
    target_labels: &[(String, String)],
    settings: &Settings,
    timestamp: Timestamp,
    duplicates: &crate::telemetry::Counter,
) -> Result<(Vec<Metric>, usize), Failed> {
    // A body with more sample lines than the limit fails before any event is built: the
    // 200,000 events built up to the limit peaked at 116 MiB RSS for a 10 MB body.
    if settings.sample_limit > 0 && sample_lines(body) > settings.sample_limit {
        return Err(Failure::SampleLimit.into());
    }
    let mut metrics = Vec::new();
    // Hashes of the series so far (a 64-bit collision would drop one series as a
    // duplicate: far rarer than anything else that goes wrong in a scrape).
    let mut seen: HashSet<u64> = HashSet::new();
    let mut scraped = 0usize;
    let mut over_limit = false;
    parse::parse(body, |sample| {
        scraped += 1;
        if settings.sample_limit > 0 && scraped > settings.sample_limit {
            // Stop here: memory stays bounded by the limit.
            over_limit = true;
            return false;
        }
        let mut labels: Vec<(String, String)> = sample
            .labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| ((*k).to_owned(), v.to_string()))
            .collect();
        merge_target_labels(&mut labels, target_labels, settings.honor_labels);
        let key = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (sample.name, &labels).hash(&mut hasher);
            hasher.finish()
        };
        if !seen.insert(key) {
            duplicates.inc();
            return true;
        }
        let timestamp = match sample.timestamp_ms {
            Some(ms) if settings.honor_timestamps => Timestamp(ms.saturating_mul(1_000_000)),
            _ => timestamp,
        };
        let value = if sample.cumulative {
            MetricValue::Counter(sample.value)
        } else {
            MetricValue::Gauge(sample.value)
        };
        metrics.push(Metric {
            name: sample.name.to_owned(),
            labels,
            value,
            timestamp,
        });
        true
    })
    .map_err(|error| Failed::new(Failure::Parse, error))?;
    if over_limit {
        return Err(Failure::SampleLimit.into());
    }
    Ok((metrics, scraped))
}

/// The lines of `body` that are samples: neither blank nor a `#` comment (one sample each
/// in both text formats), so at least the samples the parser would find.
fn sample_lines(body: &str) -> usize {
    body.lines()
        .filter(|line| {
            let line = line.trim_start();
            !line.is_empty() && !line.starts_with('#')
        })
        .count()
}

/// Adds the target's labels: on a clash, the scraped label wins with `honor_labels`,
/// else it is renamed `exported_<name>` (repeatedly, until free), as Prometheus does.
fn merge_target_labels(
    labels: &mut Vec<(String, String)>,
    target: &[(String, String)],
    honor_labels: bool,
) {
    if honor_labels {
        add_labels(labels, target);
        return;
    }
    for (name, value) in target {
        if let Some(index) = labels.iter().position(|(k, _)| k == name) {
            let mut exported = format!("exported_{name}");
            while labels.iter().any(|(k, _)| *k == exported) {
                exported = format!("exported_{exported}");
            }
            labels[index].0 = exported;
        }
        labels.push((name.clone(), value.clone()));
    }
    labels.sort();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> PrometheusScrape {
        let config: PrometheusScrapeConfig = crate::yaml::from_str(yaml, "t.yaml").unwrap();
        config.build().unwrap()
    }

    fn render(metrics: &[Metric]) -> Vec<String> {
        metrics
            .iter()
            .map(|m| {
                let labels: Vec<String> =
                    m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{}{{{}}} {:?}", m.name, labels.join(","), m.value)
            })
            .collect()
    }

    /// (config, body) → events or the failure.
    fn check(yaml: &str, body: &str, expected: Result<&[&str], Failure>) {
        let scrape = settings(yaml);
        let duplicates = crate::telemetry::Counter::default();
        let got = to_metrics(
            body,
            &scrape.targets[0].labels,
            &scrape.settings,
            Timestamp(5),
            &duplicates,
        )
        .map(|(metrics, _)| render(&metrics))
        .map_err(|failed| failed.kind);
        match expected {
            Ok(lines) => assert_eq!(
                got,
                Ok(lines.iter().map(|l| (*l).to_owned()).collect()),
                "{body}"
            ),
            Err(failure) => assert_eq!(got, Err(failure), "{body}"),
        }
    }

    const TARGET: &str = "targets: ['http://127.0.0.1:9100/metrics']\njob: node";

    #[test]
    fn maps_samples_with_target_labels() {
        check(
            TARGET,
            "# TYPE c counter\nc_total{job=\"app\",a=\"\"} 3\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nu 4\n",
            Ok(&[
                "c_total{exported_job=app,instance=127.0.0.1:9100,job=node} Counter(3.0)",
                "h_bucket{instance=127.0.0.1:9100,job=node,le=1} Counter(2.0)",
                "u{instance=127.0.0.1:9100,job=node} Gauge(4.0)",
            ]),
        );
        check(
            &format!("{TARGET}\nhonor_labels: true\nlabels: {{ site: a }}"),
            "c{job=\"app\"} 1\n",
            Ok(&["c{instance=127.0.0.1:9100,job=app,site=a} Gauge(1.0)"]),
        );
    }

    #[test]
    fn duplicates_keep_the_first_and_limits_fail() {
        check(
            TARGET,
            "a 1\na 2\n",
            Ok(&["a{instance=127.0.0.1:9100,job=node} Gauge(1.0)"]),
        );
        check(
            &format!("{TARGET}\nsample_limit: 2"),
            "a 1\nb 2\nc 3\n",
            Err(Failure::SampleLimit),
        );
        // Comments and blank lines are not samples: exactly at the limit passes.
        check(
            &format!("{TARGET}\nsample_limit: 2"),
            "# HELP a x\n# TYPE a gauge\n\na 1\n# note\nb 2\n",
            Ok(&[
                "a{instance=127.0.0.1:9100,job=node} Gauge(1.0)",
                "b{instance=127.0.0.1:9100,job=node} Gauge(2.0)",
            ]),
        );
        assert_eq!(sample_lines("# c\n\na 1\r\n\t\n b{x=\"#\"} 2"), 2);
        check(TARGET, "a{b=\"c\n", Err(Failure::Parse));
        check(
            TARGET,
            "a NaN\nb +Inf\n",
            Ok(&[
                "a{instance=127.0.0.1:9100,job=node} Gauge(NaN)",
                "b{instance=127.0.0.1:9100,job=node} Gauge(inf)",
            ]),
        );
    }

    #[test]
    fn parses_a_real_node_exporter_body() {
        let body = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/host_metrics/node_exporter.prom"
        ))
        .unwrap();
        let events = settings(TARGET).events_of(&body, Timestamp(1)).unwrap();
        assert_eq!(events.len(), 507);
        let find = |name: &str| events.iter().find(|m| m.name == name).map(|m| &m.value);
        assert!(matches!(
            find("node_cpu_seconds_total"),
            Some(MetricValue::Counter(_))
        ));
        assert!(matches!(
            find("node_memory_MemTotal_bytes"),
            Some(MetricValue::Gauge(_))
        ));
        assert!(matches!(
            find("go_gc_duration_seconds_count"),
            Some(MetricValue::Counter(_))
        ));
        assert!(matches!(
            find("go_gc_duration_seconds"),
            Some(MetricValue::Gauge(_))
        ));
    }

    #[test]
    fn gzip_bodies_are_bounded() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&vec![b'a'; 1 << 20]).unwrap();
        let compressed = encoder.finish().unwrap();
        assert!(compressed.len() < 100_000);
        assert_eq!(gunzip(&compressed, 1000), Err(Failure::BodySize));
        assert_eq!(gunzip(&compressed, 2 << 20).map(|b| b.len()), Ok(1 << 20));
        assert_eq!(gunzip(b"not gzip", 1000), Err(Failure::Decompress));
    }

    #[test]
    fn refuses_bad_config() {
        for (yaml, expected) in [
            ("targets: []", "at least one"),
            ("targets: ['ftp://x/']", "http"),
            ("targets: ['http://x/']\ntimeout_secs: 20", "timeout_secs"),
            (
                "targets: ['http://x/']\ninterval_secs: 5\ntimeout_secs: 6",
                "timeout_secs",
            ),
            ("targets: ['http://x/', 'http://x/']", "listed twice"),
            ("targets: ['http://x/']\njob: ''", "job must not be empty"),
            (
                "targets: ['http://x/']\nlabels: { 'a-b': x }",
                "not a valid",
            ),
        ] {
            let config: PrometheusScrapeConfig = crate::yaml::from_str(yaml, "t.yaml").unwrap();
            let error = format!("{:#}", config.build().unwrap_err());
            assert!(error.contains(expected), "{yaml}: {error}");
        }
    }

    /// As Prometheus: the timeout defaults to 10 s, or to the interval when that is shorter.
    #[test]
    fn the_timeout_defaults_to_the_shorter_of_10s_and_the_interval() {
        for (yaml, secs) in [
            ("targets: ['http://x/']", 10),
            ("targets: ['http://x/']\ninterval_secs: 5", 5),
            ("targets: ['http://x/']\ninterval_secs: 60", 10),
        ] {
            let config: PrometheusScrapeConfig = crate::yaml::from_str(yaml, "t.yaml").unwrap();
            let built = config.build().unwrap();
            assert_eq!(built.settings.timeout, Duration::from_secs(secs), "{yaml}");
        }
    }
}
