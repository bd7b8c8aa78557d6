//! The shared HTTP sink driver: batching, compression, bounded in-flight requests, retries
//! with backoff and `Retry-After`, acknowledgements, delivery metrics and `/health`, for every
//! network sink (Loki, Elasticsearch, Prometheus remote-write).
//!
//! A sink file implements [`HttpSinkCodec`] (which events it takes, how a batch becomes one
//! or more request bodies, how a reply is judged) and declares the common config keys
//! ([`BatchConfig`], [`CompressionConfig`], [`RequestConfig`], [`RetryConfig`], [`TlsConfig`],
//! [`AuthConfig`], `headers`, `proxy`, `unhealthy_after_secs`), which it hands to
//! [`HttpSettings::build`]. Everything else happens here:
//!
//! ```text
//! SinkInput ─▶ accumulate per lane (max_events / max_bytes / timeout_ms)
//!           ─▶ lane queue (capacity 1: a retrying lane stops the intake = backpressure)
//!           ─▶ lane task: encode → compress → POST → judge → retry | settle
//! ```
//!
//! Events that must stay in order (one stream, as the codec's [`HttpSinkCodec::partition`]
//! says) always go to the same lane, and a lane sends one request at a time, so
//! `request.concurrency` lanes run in parallel without ever reordering a stream.
//!
//! Invariant: an [`AckRef`] is settled only after every event it covers was delivered (2xx),
//! dead-lettered (permanent rejection, or retry cap reached), or dropped by the codec's
//! policy (counted). An input batch split over several requests hands a clone of its
//! `AckRef` to each. Nothing is settled on shutdown or abort: undelivered data is read again.
//!
//! Owns: batching, the HTTP client, retries, delivery metrics, delivery health. Never:
//! knows a wire format (codecs do), or drops an event without counting it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use url::Url;

use super::{SinkContext, SinkInput};
use crate::ack::AckRef;
use crate::event::{Batch, Event};
use crate::health::HealthCheck;
use crate::telemetry::{Counter, Gauge, Histogram, BYTE_BUCKETS, EVENT_COUNT_BUCKETS};

/// How many bytes of a reply body are read for judging it; the rest is discarded.
const MAX_REPLY_BYTES: usize = 64 * 1024;
/// The longest `Retry-After` honoured; a server asking for more gets this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------------------
// The interface a sink implements
// ---------------------------------------------------------------------------------------

/// What a network sink tells the driver: which events it takes, how to encode a batch, how
/// to judge a reply. Cloned once per lane, so per-lane state (e.g. Loki's last timestamp per
/// stream) needs no lock.
pub trait HttpSinkCodec: Clone + Send + Sync + 'static {
    /// True for events this sink delivers; others are settled at once (not counted).
    fn accepts(&self, event: &Event) -> bool;

    /// Events with the same key stay in order (same lane). Only called when
    /// `request.concurrency > 1`. Default: the event's origin stream.
    fn partition(&self, event: &Event) -> u64 {
        event
            .as_log()
            .and_then(|log| log.origin.as_ref())
            .map_or(0, |origin| crate::hash_str(&origin.stream))
    }

    /// Encodes `events` into uncompressed request bodies. Every index of `events` must be in
    /// exactly one request's `items` or in `dropped`.
    fn encode(&mut self, events: &[Event]) -> Encoded;

    /// Judges a reply. Default: [`judge_status`].
    fn judge(&self, reply: &Reply<'_>) -> Verdict {
        judge_status(reply)
    }

    /// The `Content-Encoding` header for a compression (default: its standard name).
    fn content_encoding(&self, compression: Compression) -> Option<&'static str> {
        compression.content_encoding()
    }

    /// How many bytes of a reply body [`HttpSinkCodec::judge`] needs (default 64 KiB).
    /// Protocols that answer per item (Elasticsearch `_bulk`) need the whole body.
    fn max_reply_bytes(&self) -> usize {
        MAX_REPLY_BYTES
    }
}

/// The result of [`HttpSinkCodec::encode`].
#[derive(Debug, Default)]
pub struct Encoded {
    /// Requests to send, in order.
    pub requests: Vec<EncodedRequest>,
    /// Events the codec dropped by policy (index, reason); counted, not dead-lettered.
    pub dropped: Vec<(usize, &'static str)>,
}

/// One uncompressed request body and what it carries.
#[derive(Debug, Default)]
pub struct EncodedRequest {
    /// The body before compression.
    pub body: Vec<u8>,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers for this request only (e.g. the tenant).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Indices (into the encoded events) of the events in this body, in body order.
    pub items: Vec<usize>,
}

/// A reply as the codec sees it.
#[derive(Debug)]
pub struct Reply<'a> {
    /// HTTP status code.
    pub status: u16,
    /// Reply headers.
    pub headers: &'a HeaderMap,
    /// The first [`HttpSinkCodec::max_reply_bytes`] of the body.
    pub body: &'a [u8],
    /// How many items (events) the request carried, for per-item replies.
    pub items: usize,
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every item was accepted.
    Delivered,
    /// Nothing was accepted; send the same body again later.
    Retry {
        /// Counted under this reason.
        reason: String,
        /// What the server asked for (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Nothing will ever be accepted: dead-letter every item.
    Reject {
        /// Counted and written with the dead letters.
        reason: String,
    },
    /// Some items failed: retry these (positions in the request's `items`), dead-letter
    /// those; the rest were accepted.
    Partial {
        /// Positions to encode and send again.
        retry: Vec<usize>,
        /// Positions rejected for good, with their reason.
        reject: Vec<(usize, String)>,
    },
}

/// The usual verdict from the status alone: 2xx delivered; 408, 429 and 5xx other than 501
/// retried (honouring `Retry-After`); other statuses rejected as `http_<status>`.
pub fn judge_status(reply: &Reply<'_>) -> Verdict {
    match reply.status {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500 | 502..=599 => Verdict::Retry {
            reason: format!("http_{}", reply.status),
            retry_after: retry_after(reply.headers, chrono::Utc::now()),
        },
        status => Verdict::Reject {
            reason: format!("http_{status}"),
        },
    }
}

/// Parses `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3), capped at ten
/// minutes. `None` when absent or unreadable.
pub fn retry_after(headers: &HeaderMap, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let text = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let delay = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let date = chrono::DateTime::parse_from_rfc2822(text).ok()?;
            (date.with_timezone(&chrono::Utc) - now)
                .to_std()
                .unwrap_or(Duration::ZERO)
        }
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

// ---------------------------------------------------------------------------------------
// Config shared by every network sink
// ---------------------------------------------------------------------------------------

/// `batch:` when a batch is sent: whichever limit is reached first.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most events per request.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Most bytes (estimated, before compression) per request.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Longest time an event waits for its batch to fill, in milliseconds.
    #[serde(default = "default_batch_timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
            timeout_ms: default_batch_timeout_ms(),
        }
    }
}

fn default_max_events() -> usize {
    5000
}
fn default_max_bytes() -> usize {
    1024 * 1024
}
fn default_batch_timeout_ms() -> u64 {
    1000
}

/// A compression algorithm for request bodies. (zstd is not built in.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// Uncompressed.
    None,
    /// gzip (RFC 1952), `Content-Encoding: gzip`.
    Gzip,
    /// Snappy block format (not framed), as Loki and Prometheus expect.
    Snappy,
}

impl Compression {
    /// The standard `Content-Encoding` value.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Snappy => Some("snappy"),
        }
    }

    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
        }
    }

    /// Compresses `body` (gzip at `level` 0..=9).
    pub fn compress(self, body: Vec<u8>, level: u32) -> Vec<u8> {
        use std::io::Write as _;
        match self {
            Compression::None => body,
            Compression::Gzip => {
                let out = Vec::with_capacity(body.len() / 4 + 64);
                let mut encoder =
                    flate2::write::GzEncoder::new(out, flate2::Compression::new(level));
                // Writing to a Vec cannot fail.
                let _ = encoder.write_all(&body);
                encoder.finish().unwrap_or_default()
            }
            Compression::Snappy => snap::raw::Encoder::new()
                .compress_vec(&body)
                .unwrap_or_default(),
        }
    }
}

/// `compression:` either a name (`gzip`) or `{ algorithm: gzip, level: 6 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum CompressionConfig {
    /// Just the algorithm, default level.
    Algorithm(Compression),
    /// Algorithm and level.
    WithLevel {
        /// `none`, `gzip` or `snappy`.
        algorithm: Compression,
        /// gzip level 0 (none) to 9 (best); default 6. Ignored by snappy.
        #[serde(default)]
        level: Option<u32>,
    },
}

impl CompressionConfig {
    fn parts(self) -> (Compression, Option<u32>) {
        match self {
            CompressionConfig::Algorithm(algorithm) => (algorithm, None),
            CompressionConfig::WithLevel { algorithm, level } => (algorithm, level),
        }
    }
}

/// `request:` in-flight requests.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// Requests in flight at once (lanes); one stream always uses one lane, so order holds.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// A request (connect, send, reply) that takes longer is abandoned and retried, in ms.
    #[serde(default = "default_request_timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for RequestConfig {
    fn default() -> Self {
        RequestConfig {
            concurrency: default_concurrency(),
            timeout_ms: default_request_timeout_ms(),
        }
    }
}

fn default_concurrency() -> usize {
    1
}
fn default_request_timeout_ms() -> u64 {
    30_000
}

/// `retry:` how failed requests are retried: exponential backoff with full jitter.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// First backoff ceiling, in milliseconds (doubles per attempt).
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Largest backoff ceiling, in milliseconds.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Give up after this many seconds and dead-letter the batch. Unset (default): retry
    /// forever; the source files are the buffer meanwhile.
    #[serde(default)]
    pub max_duration_secs: Option<u64>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            max_duration_secs: None,
        }
    }
}

fn default_initial_backoff_ms() -> u64 {
    100
}
fn default_max_backoff_ms() -> u64 {
    30_000
}

/// `tls:` for `https://` endpoints.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of CA certificates to trust besides the built-in roots.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate (mutual TLS); needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<std::path::PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<std::path::PathBuf>,
    /// Accept any server certificate. Only for tests: it defeats TLS.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// `auth:` credentials sent with every request.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// HTTP basic authentication.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token.
        token: String,
    },
    /// `Authorization: ApiKey <key>` (Elasticsearch API keys). `key` is either the
    /// base64 `encoded` value Elasticsearch returns, or `id:api_key`, which is
    /// base64-encoded here.
    ApiKey {
        /// The encoded key, or `id:api_key`.
        key: String,
    },
}

fn default_unhealthy_after_secs() -> u64 {
    30
}

/// The default for `unhealthy_after_secs` (serde default for sink configs).
pub fn unhealthy_after_secs_default() -> u64 {
    default_unhealthy_after_secs()
}

/// The common network-sink settings, gathered by a sink's config from its own keys (serde
/// cannot flatten into a `deny_unknown_fields` struct).
#[derive(Debug, Clone, Default)]
pub struct HttpSettings {
    /// `batch:`.
    pub batch: BatchConfig,
    /// `compression:`; `None` takes the codec's default.
    pub compression: Option<CompressionConfig>,
    /// `request:`.
    pub request: RequestConfig,
    /// `retry:`.
    pub retry: RetryConfig,
    /// `tls:`.
    pub tls: TlsConfig,
    /// `auth:`.
    pub auth: Option<AuthConfig>,
    /// `headers:` sent with every request.
    pub headers: BTreeMap<String, String>,
    /// `proxy:` URL of an HTTP(S) proxy; unset: direct connections (environment proxies
    /// are ignored).
    pub proxy: Option<String>,
    /// `unhealthy_after_secs:`.
    pub unhealthy_after_secs: u64,
}

impl HttpSettings {
    /// Validates the settings and builds the driver for `url`. `allowed` lists the
    /// compressions the protocol accepts; the first is the default.
    pub fn build(&self, url: Url, allowed: &[Compression]) -> anyhow::Result<HttpDriver> {
        self.build_endpoints(vec![url], allowed)
    }

    /// Like [`HttpSettings::build`] for several equivalent endpoints (cluster nodes):
    /// requests go to them in turn, and one that fails to connect or answers 5xx is
    /// skipped for a while, so the retry goes to the next one (failover).
    pub fn build_endpoints(
        &self,
        urls: Vec<Url>,
        allowed: &[Compression],
    ) -> anyhow::Result<HttpDriver> {
        anyhow::ensure!(!urls.is_empty(), "endpoint: at least one URL is needed");
        for url in &urls {
            anyhow::ensure!(
                matches!(url.scheme(), "http" | "https"),
                "endpoint must be an http:// or https:// URL, not {url}"
            );
        }
        let batch = &self.batch;
        anyhow::ensure!(batch.max_events > 0, "batch.max_events must be at least 1");
        anyhow::ensure!(batch.max_bytes > 0, "batch.max_bytes must be at least 1");
        anyhow::ensure!(batch.timeout_ms > 0, "batch.timeout_ms must be at least 1");
        anyhow::ensure!(
            (1..=256).contains(&self.request.concurrency),
            "request.concurrency must be between 1 and 256"
        );
        anyhow::ensure!(
            self.request.timeout_ms > 0,
            "request.timeout_ms must be at least 1"
        );
        anyhow::ensure!(
            self.retry.initial_backoff_ms > 0
                && self.retry.max_backoff_ms >= self.retry.initial_backoff_ms,
            "retry needs 0 < initial_backoff_ms <= max_backoff_ms"
        );
        anyhow::ensure!(
            self.unhealthy_after_secs > 0,
            "unhealthy_after_secs must be at least 1"
        );
        let (compression, level) = match self.compression.map(CompressionConfig::parts) {
            None => (allowed.first().copied().unwrap_or(Compression::None), None),
            Some((algorithm, level)) => {
                anyhow::ensure!(
                    allowed.contains(&algorithm),
                    "compression {} is not supported here; use one of: {}",
                    algorithm.name(),
                    allowed
                        .iter()
                        .map(|c| c.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                (algorithm, level)
            }
        };
        let level = level.unwrap_or(6);
        anyhow::ensure!(level <= 9, "compression level must be 0..=9");
        Ok(HttpDriver {
            client: self.client()?,
            endpoints: Endpoints::new(urls),
            headers: self.header_map()?,
            compression,
            level,
            max_events: batch.max_events,
            max_bytes: batch.max_bytes,
            batch_timeout: Duration::from_millis(batch.timeout_ms),
            lanes: self.request.concurrency,
            request_timeout: Duration::from_millis(self.request.timeout_ms),
            initial_backoff: Duration::from_millis(self.retry.initial_backoff_ms),
            max_backoff: Duration::from_millis(self.retry.max_backoff_ms),
            max_retry_duration: self.retry.max_duration_secs.map(Duration::from_secs),
            unhealthy_after: Duration::from_secs(self.unhealthy_after_secs),
        })
    }

    fn client(&self) -> anyhow::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .no_proxy()
            .connect_timeout(Duration::from_millis(self.request.timeout_ms.min(10_000)))
            .pool_idle_timeout(Duration::from_secs(30))
            .danger_accept_invalid_certs(self.tls.insecure_skip_verify);
        if let Some(ca_file) = &self.tls.ca_file {
            let pem = std::fs::read(ca_file)
                .with_context(|| format!("tls.ca_file {}", ca_file.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!("tls.ca_file {}: not PEM certificates", ca_file.display())
            })? {
                builder = builder.add_root_certificate(cert);
            }
        }
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(cert_file), Some(key_file)) => {
                let mut pem = std::fs::read(cert_file)
                    .with_context(|| format!("tls.cert_file {}", cert_file.display()))?;
                pem.push(b'\n');
                pem.extend(
                    std::fs::read(key_file)
                        .with_context(|| format!("tls.key_file {}", key_file.display()))?,
                );
                let identity = reqwest::Identity::from_pem(&pem)
                    .context("tls.cert_file/key_file: not a PEM certificate and key")?;
                builder = builder.identity(identity);
            }
            (None, None) => {}
            _ => anyhow::bail!("tls.cert_file and tls.key_file go together"),
        }
        if let Some(proxy) = &self.proxy {
            builder = builder
                .proxy(reqwest::Proxy::all(proxy).with_context(|| format!("proxy {proxy:?}"))?);
        }
        builder.build().context("building the HTTP client")
    }

    fn header_map(&self) -> anyhow::Result<HeaderMap> {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .with_context(|| format!("headers: {name:?} is not a header name"))?;
            let value = HeaderValue::from_str(value)
                .with_context(|| format!("headers.{name}: not a valid header value"))?;
            map.insert(name, value);
        }
        let authorization = match &self.auth {
            None => None,
            Some(AuthConfig::Basic { user, password }) => {
                use base64_lite::encode;
                Some(format!(
                    "Basic {}",
                    encode(format!("{user}:{password}").as_bytes())
                ))
            }
            Some(AuthConfig::Bearer { token }) => Some(format!("Bearer {token}")),
            Some(AuthConfig::ApiKey { key }) if key.contains(':') => {
                Some(format!("ApiKey {}", base64_lite::encode(key.as_bytes())))
            }
            Some(AuthConfig::ApiKey { key }) => Some(format!("ApiKey {key}")),
        };
        if let Some(authorization) = authorization {
            let mut value = HeaderValue::from_str(&authorization)
                .context("auth: credentials contain characters not allowed in a header")?;
            value.set_sensitive(true);
            map.insert(reqwest::header::AUTHORIZATION, value);
        }
        map.insert(
            reqwest::header::USER_AGENT,
            HeaderValue::from_static(concat!("sluice/", env!("CARGO_PKG_VERSION"))),
        );
        Ok(map)
    }
}

/// Standard base64 for basic auth (the only place it is needed; no dependency for it).
mod base64_lite {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub fn encode(input: &[u8]) -> String {
        let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------

/// A built driver: validated settings and the HTTP client.
#[derive(Debug)]
pub struct HttpDriver {
    client: reqwest::Client,
    endpoints: Endpoints,
    headers: HeaderMap,
    compression: Compression,
    level: u32,
    max_events: usize,
    max_bytes: usize,
    batch_timeout: Duration,
    lanes: usize,
    request_timeout: Duration,
    initial_backoff: Duration,
    max_backoff: Duration,
    max_retry_duration: Option<Duration>,
    unhealthy_after: Duration,
}

/// Events on their way to one request, with the acknowledgements they settle.
#[derive(Default)]
struct Pending {
    events: Vec<Event>,
    acks: Vec<AckRef>,
    bytes: usize,
    deadline: Option<tokio::time::Instant>,
}

/// The fate of one event of a batch.
#[derive(Clone, Debug)]
enum Outcome {
    Waiting,
    Delivered,
    Rejected(Arc<str>),
    Dropped(&'static str),
}

/// Metric handles and delivery state shared by the intake and the lanes.
struct State {
    retries: Counter,
    batch_events: Histogram,
    batch_bytes: Histogram,
    bytes_uncompressed: Counter,
    bytes_compressed: Counter,
    in_flight: Gauge,
    /// Milliseconds since `started` of the last 2xx.
    last_success_ms: AtomicU64,
    /// Milliseconds since `started` when the driver last went from idle to busy.
    busy_since_ms: AtomicU64,
    /// Batches handed to lanes and not yet settled.
    pending_batches: AtomicUsize,
    started: Instant,
}

impl State {
    fn new(ctx: &SinkContext) -> Arc<Self> {
        let metrics = &ctx.metrics;
        let state = Arc::new(State {
            retries: metrics.counter(
                "sluice_sink_retries_total",
                "Requests retried by a sink.",
                &[],
            ),
            batch_events: metrics.histogram(
                "sluice_sink_batch_events",
                "Events per request sent by a sink.",
                EVENT_COUNT_BUCKETS,
            ),
            batch_bytes: metrics.histogram(
                "sluice_sink_batch_bytes",
                "Compressed bytes per request sent by a sink.",
                BYTE_BUCKETS,
            ),
            bytes_uncompressed: metrics.counter(
                "sluice_sink_bytes_total",
                "Request body bytes, before and after compression.",
                &[("stage", "uncompressed")],
            ),
            bytes_compressed: metrics.counter(
                "sluice_sink_bytes_total",
                "Request body bytes, before and after compression.",
                &[("stage", "compressed")],
            ),
            in_flight: metrics.gauge("sluice_sink_in_flight_requests", "Requests in flight.", &[]),
            last_success_ms: AtomicU64::new(0),
            busy_since_ms: AtomicU64::new(0),
            pending_batches: AtomicUsize::new(0),
            started: Instant::now(),
        });
        let probe = Arc::downgrade(&state);
        crate::telemetry::registry().gauge_fn(
            "sluice_sink_last_success_age_seconds",
            "Seconds since a sink's last successful request (or its start).",
            &metrics.labels_with(&[]),
            move || {
                probe
                    .upgrade()
                    .map_or(0.0, |state| state.idle().as_secs_f64())
            },
        );
        state
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Time without a success while there was something to send.
    fn idle(&self) -> Duration {
        let since = self
            .last_success_ms
            .load(Ordering::Relaxed)
            .max(self.busy_since_ms.load(Ordering::Relaxed));
        Duration::from_millis(self.now_ms().saturating_sub(since))
    }

    fn request_counter(&self, ctx: &SinkContext, status: &str) -> Counter {
        ctx.metrics.counter(
            "sluice_sink_requests_total",
            "Requests sent by a sink, by HTTP status or transport error.",
            &[("status", status)],
        )
    }
}

/// A reply read off the wire, or why there was none.
struct RawReply {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl HttpDriver {
    /// The push URL (the first one, when there are several).
    pub fn url(&self) -> &Url {
        &self.endpoints.urls[0]
    }

    /// Every endpoint URL, in the order requests rotate through them.
    pub fn urls(&self) -> &[Url] {
        &self.endpoints.urls
    }

    /// The compression in use.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Runs the sink: batches input, sends it through `codec`, settles acknowledgements.
    /// Returns when the input is closed and everything was delivered or rejected; keeps
    /// retrying otherwise until the pipeline aborts it at the shutdown deadline.
    pub async fn run<C: HttpSinkCodec>(self, codec: C, mut input: SinkInput, ctx: SinkContext) {
        let driver = Arc::new(self);
        let state = State::new(&ctx);
        let health = HealthCheck::new(format!("{}/sink/{}/delivery", ctx.pipeline, ctx.id));
        health.ok();
        let mut lanes = JoinSet::new();
        let mut senders = Vec::with_capacity(driver.lanes);
        for _ in 0..driver.lanes {
            let (tx, rx) = mpsc::channel::<Pending>(1);
            senders.push(tx);
            lanes.spawn(lane(
                driver.clone(),
                codec.clone(),
                rx,
                ctx.clone(),
                state.clone(),
            ));
        }
        let mut watchdog = JoinSet::new();
        watchdog.spawn(watch_health(
            driver.unhealthy_after,
            state.clone(),
            health.clone(),
        ));

        let mut pending: Vec<Pending> = (0..driver.lanes).map(|_| Pending::default()).collect();
        loop {
            let deadline = pending.iter().filter_map(|p| p.deadline).min();
            tokio::select! {
                batch = input.recv() => match batch {
                    Some(batch) => driver.intake(batch, &codec, &mut pending, &senders, &ctx, &state).await,
                    None => break,
                },
                () = sleep_until(deadline), if deadline.is_some() => {
                    let now = tokio::time::Instant::now();
                    for lane in 0..pending.len() {
                        if pending[lane].deadline.is_some_and(|d| d <= now) {
                            let batch = std::mem::take(&mut pending[lane]);
                            send_to_lane(&senders[lane], batch, &state).await;
                        }
                    }
                }
            }
        }
        for (lane, batch) in pending.into_iter().enumerate() {
            if !batch.events.is_empty() {
                send_to_lane(&senders[lane], batch, &state).await;
            }
        }
        drop(senders);
        while lanes.join_next().await.is_some() {}
        watchdog.abort_all();
        health.ok();
    }

    /// Splits one input batch over the lanes' pending batches, sending full ones.
    async fn intake<C: HttpSinkCodec>(
        &self,
        batch: Batch,
        codec: &C,
        pending: &mut [Pending],
        senders: &[mpsc::Sender<Pending>],
        ctx: &SinkContext,
        state: &State,
    ) {
        ctx.metrics.events_in.add(batch.events.len() as u64);
        let Batch { events, acks } = batch;
        let mut touched = vec![false; pending.len()];
        for event in events {
            if !codec.accepts(&event) {
                continue;
            }
            let lane = if pending.len() == 1 {
                0
            } else {
                (codec.partition(&event) % pending.len() as u64) as usize
            };
            let slot = &mut pending[lane];
            if slot.events.is_empty() {
                slot.deadline = Some(tokio::time::Instant::now() + self.batch_timeout);
            }
            slot.bytes += event.size_hint();
            slot.events.push(event);
            touched[lane] = true;
            if slot.events.len() >= self.max_events || slot.bytes >= self.max_bytes {
                let mut full = std::mem::take(slot);
                full.acks.extend(acks.iter().cloned());
                touched[lane] = false;
                send_to_lane(&senders[lane], full, state).await;
            }
        }
        for (lane, touched) in touched.into_iter().enumerate() {
            if touched {
                pending[lane].acks.extend(acks.iter().cloned());
            }
        }
        // Every holder has its own clone now; this copy is done.
        for ack in acks {
            ack.done();
        }
    }

    /// Delivers one batch: encode, send each request until it is settled, then settle.
    async fn deliver<C: HttpSinkCodec>(
        &self,
        codec: &mut C,
        batch: Pending,
        ctx: &SinkContext,
        state: &State,
    ) {
        let Pending { events, acks, .. } = batch;
        let mut outcomes = vec![Outcome::Waiting; events.len()];
        let encoded = codec.encode(&events);
        for (index, reason) in encoded.dropped {
            if let Some(outcome) = outcomes.get_mut(index) {
                *outcome = Outcome::Dropped(reason);
            }
        }
        let mut queue: VecDeque<EncodedRequest> = encoded.requests.into();
        while let Some(request) = queue.pop_front() {
            let follow_ups = self
                .send(codec, &events, request, &mut outcomes, ctx, state)
                .await;
            for request in follow_ups.into_iter().rev() {
                queue.push_front(request);
            }
        }
        settle(events, outcomes, acks, ctx);
    }

    /// Sends one request until it is delivered, rejected or partly so; returns the requests
    /// that carry a partial failure's retries.
    async fn send<C: HttpSinkCodec>(
        &self,
        codec: &mut C,
        events: &[Event],
        request: EncodedRequest,
        outcomes: &mut [Outcome],
        ctx: &SinkContext,
        state: &State,
    ) -> Vec<EncodedRequest> {
        let EncodedRequest {
            body,
            content_type,
            headers: extra,
            items,
        } = request;
        let uncompressed = body.len();
        let body = Bytes::from(self.compression.compress(body, self.level));
        state.bytes_uncompressed.add(uncompressed as u64);
        state.batch_events.observe(items.len() as f64);
        state.batch_bytes.observe(body.len() as f64);
        let mut headers = self.headers.clone();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        if let Some(encoding) = codec.content_encoding(self.compression) {
            headers.insert(
                reqwest::header::CONTENT_ENCODING,
                HeaderValue::from_static(encoding),
            );
        }
        for (name, value) in extra {
            headers.insert(name, value);
        }
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            state.bytes_compressed.add(body.len() as u64);
            let limit = codec.max_reply_bytes();
            let result = self
                .attempt(headers.clone(), body.clone(), limit, state)
                .await;
            let endpoint_failed = result.as_ref().map_or(true, |reply| reply.status >= 500);
            let verdict = match result {
                Ok(reply) => {
                    state.request_counter(ctx, &reply.status.to_string()).inc();
                    codec.judge(&Reply {
                        status: reply.status,
                        headers: &reply.headers,
                        body: &reply.body,
                        items: items.len(),
                    })
                }
                Err(kind) => {
                    state.request_counter(ctx, kind).inc();
                    Verdict::Retry {
                        reason: kind.to_owned(),
                        retry_after: None,
                    }
                }
            };
            let (reason, retry_after) = match verdict {
                Verdict::Delivered => {
                    mark(outcomes, &items, Outcome::Delivered);
                    self.succeeded(state, ctx);
                    return Vec::new();
                }
                Verdict::Reject { reason } => {
                    tracing::warn!(sink = %ctx.id, %reason, n_events = items.len(), "request rejected; events dead-lettered");
                    mark(outcomes, &items, Outcome::Rejected(reason.into()));
                    return Vec::new();
                }
                Verdict::Partial { retry, reject } => {
                    return self
                        .partial(codec, events, &items, retry, reject, outcomes, ctx, state)
                        .await;
                }
                Verdict::Retry {
                    reason,
                    retry_after,
                } => (reason, retry_after),
            };
            if self
                .max_retry_duration
                .is_some_and(|cap| started.elapsed() >= cap)
            {
                tracing::error!(sink = %ctx.id, %reason, n_events = items.len(), "retries exhausted; events dead-lettered");
                mark(
                    outcomes,
                    &items,
                    Outcome::Rejected("retry_exhausted".into()),
                );
                return Vec::new();
            }
            // Another endpoint is up: fail over to it at once (the failed one is resting).
            let delay = if endpoint_failed && self.endpoints.failover_available() {
                Duration::ZERO
            } else {
                self.backoff(attempt, retry_after, ctx.shutdown.is_triggered())
            };
            tracing::warn!(sink = %ctx.id, %reason, attempt, delay_ms = delay.as_millis() as u64, "request failed; retrying");
            state.retries.inc();
            attempt = attempt.saturating_add(1);
            tokio::time::sleep(delay).await;
        }
    }

    /// Records a partial success and encodes the items to retry.
    #[allow(clippy::too_many_arguments)]
    async fn partial<C: HttpSinkCodec>(
        &self,
        codec: &mut C,
        events: &[Event],
        items: &[usize],
        retry: Vec<usize>,
        reject: Vec<(usize, String)>,
        outcomes: &mut [Outcome],
        ctx: &SinkContext,
        state: &State,
    ) -> Vec<EncodedRequest> {
        mark(outcomes, items, Outcome::Delivered);
        for (position, reason) in reject {
            if let Some(&index) = items.get(position) {
                outcomes[index] = Outcome::Rejected(reason.into());
            }
        }
        let retry_indices: Vec<usize> = retry
            .iter()
            .filter_map(|&p| items.get(p).copied())
            .collect();
        for &index in &retry_indices {
            outcomes[index] = Outcome::Waiting;
        }
        self.succeeded(state, ctx);
        if retry_indices.is_empty() {
            return Vec::new();
        }
        state.retries.inc();
        tokio::time::sleep(self.backoff(0, None, ctx.shutdown.is_triggered())).await;
        let subset: Vec<Event> = retry_indices.iter().map(|&i| events[i].clone()).collect();
        let encoded = codec.encode(&subset);
        for (position, reason) in encoded.dropped {
            if let Some(&index) = retry_indices.get(position) {
                outcomes[index] = Outcome::Dropped(reason);
            }
        }
        encoded
            .requests
            .into_iter()
            .map(|mut request| {
                request.items = request
                    .items
                    .iter()
                    .filter_map(|&p| retry_indices.get(p).copied())
                    .collect();
                request
            })
            .collect()
    }

    fn succeeded(&self, state: &State, ctx: &SinkContext) {
        state
            .last_success_ms
            .store(state.now_ms(), Ordering::Relaxed);
        ctx.progress.mark();
    }

    /// Full-jitter exponential backoff, or the server's `Retry-After`. At shutdown the wait
    /// is cut to a second so the last tries fit in the deadline.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>, stopping: bool) -> Duration {
        if let Some(delay) = retry_after {
            return delay;
        }
        let ceiling = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        let ceiling = if stopping {
            ceiling.min(Duration::from_secs(1))
        } else {
            ceiling
        };
        let jittered = fastrand::u64(0..=ceiling.as_millis() as u64);
        Duration::from_millis(jittered.max(1))
    }

    /// One HTTP exchange; transport failures are named for the metrics.
    async fn attempt(
        &self,
        headers: HeaderMap,
        body: Bytes,
        max_reply_bytes: usize,
        state: &State,
    ) -> Result<RawReply, &'static str> {
        state.in_flight.add(1);
        let endpoint = self.endpoints.pick();
        let exchange = async {
            let mut response = self
                .client
                .post(self.endpoints.urls[endpoint].clone())
                .headers(headers)
                .timeout(self.request_timeout)
                .body(body)
                .send()
                .await
                .map_err(classify)?;
            let status = response.status().as_u16();
            let headers = std::mem::take(response.headers_mut());
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(classify)? {
                let room = max_reply_bytes.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= max_reply_bytes {
                    break;
                }
            }
            Ok(RawReply {
                status,
                headers,
                body,
            })
        };
        let result =
            match tokio::time::timeout(self.request_timeout + Duration::from_secs(1), exchange)
                .await
            {
                Ok(result) => result,
                Err(_) => Err("timeout"),
            };
        state.in_flight.add(-1);
        match &result {
            Ok(reply) if reply.status < 500 => self.endpoints.succeeded(endpoint),
            _ => self.endpoints.failed(endpoint),
        }
        result
    }
}

/// The endpoints of a driver, used in turn; a failing one rests before it is tried again.
#[derive(Debug)]
struct Endpoints {
    urls: Vec<Url>,
    /// Round-robin cursor.
    next: AtomicUsize,
    /// Per endpoint: (milliseconds since `epoch` until which it rests, consecutive failures).
    resting: Vec<(AtomicU64, AtomicU64)>,
    epoch: Instant,
}

/// How long a failed endpoint rests at first; doubles per consecutive failure.
const ENDPOINT_REST_MS: u64 = 1_000;
/// The longest rest.
const ENDPOINT_MAX_REST_MS: u64 = 30_000;

impl Endpoints {
    fn new(urls: Vec<Url>) -> Self {
        let resting = urls
            .iter()
            .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
            .collect();
        Endpoints {
            urls,
            next: AtomicUsize::new(0),
            resting,
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The next endpoint in turn that is not resting (or simply the next, if all rest).
    fn pick(&self) -> usize {
        let n = self.urls.len();
        if n == 1 {
            return 0;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| self.resting[i].0.load(Ordering::Relaxed) <= now)
            .unwrap_or(start % n)
    }

    fn succeeded(&self, endpoint: usize) {
        if self.urls.len() > 1 {
            self.resting[endpoint].1.store(0, Ordering::Relaxed);
        }
    }

    fn failed(&self, endpoint: usize) {
        if self.urls.len() == 1 {
            return;
        }
        let (until, failures) = &self.resting[endpoint];
        let n = failures.fetch_add(1, Ordering::Relaxed).min(5);
        let rest = (ENDPOINT_REST_MS << n).min(ENDPOINT_MAX_REST_MS);
        until.store(self.now_ms() + rest, Ordering::Relaxed);
    }

    /// True when some endpoint is not resting (a retry can go there without waiting).
    fn failover_available(&self) -> bool {
        let now = self.now_ms();
        self.urls.len() > 1
            && self
                .resting
                .iter()
                .any(|(until, _)| until.load(Ordering::Relaxed) <= now)
    }
}

fn classify(error: reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect_error"
    } else {
        "transport_error"
    }
}

fn mark(outcomes: &mut [Outcome], items: &[usize], outcome: Outcome) {
    for &index in items {
        if let Some(slot) = outcomes.get_mut(index) {
            *slot = outcome.clone();
        }
    }
}

/// Counts, dead-letters and acknowledges a finished batch.
fn settle(events: Vec<Event>, outcomes: Vec<Outcome>, acks: Vec<AckRef>, ctx: &SinkContext) {
    let mut delivered = 0u64;
    let mut rejected: BTreeMap<Arc<str>, Vec<Event>> = BTreeMap::new();
    let mut dropped: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (event, outcome) in events.into_iter().zip(outcomes) {
        match outcome {
            Outcome::Delivered => delivered += 1,
            Outcome::Rejected(reason) => rejected.entry(reason).or_default().push(event),
            Outcome::Dropped(reason) => *dropped.entry(reason).or_default() += 1,
            // A codec that forgot an event: count it rather than hide it.
            Outcome::Waiting => *dropped.entry("not_encoded").or_default() += 1,
        }
    }
    ctx.metrics.events_out.add(delivered);
    for (reason, n) in dropped {
        ctx.metrics.dropped(reason).add(n);
    }
    for (reason, events) in rejected {
        // A reason may carry the server's free text after a colon (Elasticsearch item
        // errors): the dead-letter file keeps it all, the metric label only the kind.
        let label = reason.split(':').next().unwrap_or(&reason);
        ctx.metrics.dropped(label).add(events.len() as u64);
        ctx.dead_letters
            .write(&ctx.pipeline, &ctx.id, &reason, &events);
    }
    ctx.progress.mark();
    for ack in acks {
        ack.done();
    }
}

async fn send_to_lane(sender: &mpsc::Sender<Pending>, mut batch: Pending, state: &State) {
    batch.deadline = None;
    if state.pending_batches.fetch_add(1, Ordering::Relaxed) == 0 {
        state.busy_since_ms.store(state.now_ms(), Ordering::Relaxed);
    }
    // A closed lane means it crashed: the batch's acks are dropped unsettled (abandoned),
    // so its events are read again after a restart.
    if sender.send(batch).await.is_err() {
        state.pending_batches.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn lane<C: HttpSinkCodec>(
    driver: Arc<HttpDriver>,
    mut codec: C,
    mut rx: mpsc::Receiver<Pending>,
    ctx: SinkContext,
    state: Arc<State>,
) {
    while let Some(batch) = rx.recv().await {
        driver.deliver(&mut codec, batch, &ctx, &state).await;
        state.pending_batches.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Fails `/health` while data waits and nothing succeeded for `unhealthy_after`.
async fn watch_health(unhealthy_after: Duration, state: Arc<State>, health: HealthCheck) {
    let mut interval = tokio::time::interval(Duration::from_millis(250));
    let mut failing = false;
    loop {
        interval.tick().await;
        let idle = state.idle();
        let busy = state.pending_batches.load(Ordering::Relaxed) > 0;
        if busy && idle >= unhealthy_after {
            if !failing {
                tracing::warn!(
                    idle_secs = idle.as_secs(),
                    "sink has not delivered for too long"
                );
            }
            failing = true;
            health.fail(format!("no successful request for {}s", idle.as_secs()));
        } else if failing {
            failing = false;
            health.ok();
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_retry_after(value: Option<&str>, expected: Option<Duration>) {
        let mut headers = HeaderMap::new();
        if let Some(value) = value {
            headers.insert(
                reqwest::header::RETRY_AFTER,
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            retry_after(&headers, now),
            expected,
            "Retry-After: {value:?}"
        );
    }

    #[test]
    fn parses_retry_after() {
        check_retry_after(None, None);
        check_retry_after(Some("2"), Some(Duration::from_secs(2)));
        check_retry_after(Some(" 0 "), Some(Duration::ZERO));
        check_retry_after(
            Some("Wed, 21 Oct 2015 07:28:30 GMT"),
            Some(Duration::from_secs(30)),
        );
        check_retry_after(Some("Wed, 21 Oct 2015 07:27:00 GMT"), Some(Duration::ZERO));
        check_retry_after(Some("86400"), Some(MAX_RETRY_AFTER));
        check_retry_after(Some("soon"), None);
        check_retry_after(Some("-5"), None);
    }

    fn check_status(status: u16, expected: &str) {
        let headers = HeaderMap::new();
        let verdict = judge_status(&Reply {
            status,
            headers: &headers,
            body: b"",
            items: 1,
        });
        let got = match verdict {
            Verdict::Delivered => "delivered".to_owned(),
            Verdict::Retry { .. } => "retry".to_owned(),
            Verdict::Reject { reason } => format!("reject {reason}"),
            Verdict::Partial { .. } => "partial".to_owned(),
        };
        assert_eq!(got, expected, "status {status}");
    }

    #[test]
    fn judges_statuses() {
        for (status, expected) in [
            (200, "delivered"),
            (204, "delivered"),
            (400, "reject http_400"),
            (401, "reject http_401"),
            (404, "reject http_404"),
            (408, "retry"),
            (429, "retry"),
            (500, "retry"),
            (501, "reject http_501"),
            (502, "retry"),
            (503, "retry"),
            (504, "retry"),
        ] {
            check_status(status, expected);
        }
    }

    #[test]
    fn encodes_basic_auth() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("user:pass", "dXNlcjpwYXNz"),
        ] {
            assert_eq!(base64_lite::encode(input.as_bytes()), expected);
        }
    }

    #[test]
    fn compresses_round_trip() {
        use std::io::Read as _;
        let body = b"hello hello hello hello".to_vec();
        let gz = Compression::Gzip.compress(body.clone(), 6);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
        let sn = Compression::Snappy.compress(body.clone(), 6);
        assert_eq!(snap::raw::Decoder::new().decompress_vec(&sn).unwrap(), body);
        assert_eq!(Compression::None.compress(body.clone(), 6), body);
    }

    #[test]
    fn backoff_is_bounded_and_honours_retry_after() {
        let settings = HttpSettings {
            retry: RetryConfig {
                initial_backoff_ms: 100,
                max_backoff_ms: 1000,
                max_duration_secs: None,
            },
            unhealthy_after_secs: 30,
            ..HttpSettings::default()
        };
        let driver = settings
            .build("http://127.0.0.1:1/".parse().unwrap(), &[Compression::None])
            .unwrap();
        for attempt in 0..40 {
            let delay = driver.backoff(attempt, None, false);
            let ceiling = (100u64 << attempt.min(20)).min(1000);
            assert!(
                delay <= Duration::from_millis(ceiling.max(1)),
                "attempt {attempt}: {delay:?}"
            );
        }
        assert_eq!(
            driver.backoff(3, Some(Duration::from_secs(2)), false),
            Duration::from_secs(2)
        );
        assert!(driver.backoff(30, None, true) <= Duration::from_secs(1));
    }

    #[test]
    fn refuses_bad_settings() {
        let good = HttpSettings {
            unhealthy_after_secs: 30,
            ..HttpSettings::default()
        };
        let url: Url = "http://127.0.0.1:3100/".parse().unwrap();
        assert!(good.build(url.clone(), &[Compression::Snappy]).is_ok());
        let cases: Vec<(HttpSettings, &str)> = vec![
            (
                HttpSettings {
                    batch: BatchConfig {
                        max_events: 0,
                        ..BatchConfig::default()
                    },
                    ..good.clone()
                },
                "max_events",
            ),
            (
                HttpSettings {
                    request: RequestConfig {
                        concurrency: 0,
                        timeout_ms: 1,
                    },
                    ..good.clone()
                },
                "concurrency",
            ),
            (
                HttpSettings {
                    compression: Some(CompressionConfig::Algorithm(Compression::Gzip)),
                    ..good.clone()
                },
                "not supported",
            ),
            (
                HttpSettings {
                    headers: [("bad name".into(), "x".into())].into(),
                    ..good.clone()
                },
                "header name",
            ),
            (
                HttpSettings {
                    tls: TlsConfig {
                        cert_file: Some("/x".into()),
                        ..TlsConfig::default()
                    },
                    ..good.clone()
                },
                "go together",
            ),
        ];
        for (settings, expected) in cases {
            let error = format!(
                "{:#}",
                settings
                    .build(url.clone(), &[Compression::Snappy])
                    .unwrap_err()
            );
            assert!(
                error.contains(expected),
                "{error:?} should mention {expected:?}"
            );
        }
        let ftp: Url = "ftp://127.0.0.1/".parse().unwrap();
        assert!(good.build(ftp, &[Compression::Snappy]).is_err());
    }
}
