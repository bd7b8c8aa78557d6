//! Config shared by every network sink (batching, compression, requests, retries, TLS,
//! auth, headers, proxy) and [`HttpKeys::build`], which turns the keys into an [`HttpDriver`].

use std::time::Duration;

use anyhow::Context as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use url::Url;

use super::*;

// ---------------------------------------------------------------------------------------
// Config shared by every network sink
// ---------------------------------------------------------------------------------------

/// The `batch:` limits a driver sends by, whichever is reached first: [`BatchKeys`] resolved
/// against the sink's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    /// Most events per request.
    pub max_events: usize,
    /// Most bytes (estimated, before compression) per request.
    pub max_bytes: usize,
    /// Longest time an event waits for its batch to fill, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: 5000,
            max_bytes: 1024 * 1024,
            timeout_ms: 1000,
        }
    }
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
        match self {
            Compression::None => body,
            Compression::Gzip => gzip(&body, level),
            Compression::Snappy => snappy(&body),
        }
    }
}

/// Per-thread compression state kept between requests: the deflate state (hundreds of KiB,
/// set up again for every request before) and an output buffer. Allocating both per request
/// made the allocator hand pages back to the kernel and fault them in again each time:
/// measured on file → Loki, page faults and `madvise` were a third of the agent's CPU.
/// Only the compressed bytes are copied out, into a buffer of their exact size.
#[derive(Default)]
struct Scratch {
    out: Vec<u8>,
    deflate: Option<(u32, libdeflater::Compressor)>,
}

/// Buffers above this are not kept after use (a rare huge body does not pin its memory).
const SCRATCH_KEEP_BYTES: usize = 8 * 1024 * 1024;

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

fn with_scratch(f: impl FnOnce(&mut Scratch) -> Vec<u8>) -> Vec<u8> {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            let out = f(&mut scratch);
            if scratch.out.capacity() > SCRATCH_KEEP_BYTES {
                scratch.out = Vec::new();
            }
            out
        }
        // Not reentrant in practice; a fresh scratch keeps it correct if it ever is.
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Snappy's block format into the thread's buffer, copied out at its exact size.
fn snappy(body: &[u8]) -> Vec<u8> {
    with_scratch(|scratch| {
        let need = snap::raw::max_compress_len(body.len());
        if scratch.out.len() < need {
            scratch.out.resize(need, 0);
        }
        match snap::raw::Encoder::new().compress(body, &mut scratch.out[..need]) {
            Ok(n) => scratch.out[..n].to_vec(),
            // Only an input over snappy's 4 GiB limit fails; the driver's batches are far
            // smaller. An empty body is then rejected by the server, never sent as data.
            Err(_) => Vec::new(),
        }
    })
}

/// A gzip member (RFC 1952) holding `body`: the 10-byte header, a raw deflate stream, and
/// the CRC-32 and length trailer.
///
/// The deflate stream is libdeflate's: a request body is one whole buffer, which it
/// compresses without zlib's streaming bookkeeping. Against zlib-rs (used before) on the
/// file → Elasticsearch bench: level 6 took 12–15% less agent CPU for 6% fewer bytes; level
/// 1 sends 31% fewer bytes for up to 15% more CPU (its level 1 searches harder than zlib's;
/// docs/decisions.md). The CRC-32 is `crc32fast`'s (the CPU's carry-less multiply).
fn gzip(body: &[u8], level: u32) -> Vec<u8> {
    const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let level = level.min(9);
    with_scratch(|scratch| {
        let deflate = match &mut scratch.deflate {
            Some((kept, deflate)) if *kept == level => deflate,
            slot => {
                let libdeflate_level = libdeflater::CompressionLvl::new(level as i32)
                    .expect("0..=9 are libdeflate levels too (0: stored blocks)");
                let fresh = libdeflater::Compressor::new(libdeflate_level);
                &mut slot.insert((level, fresh)).1
            }
        };
        let bound = deflate.deflate_compress_bound(body.len());
        let out = &mut scratch.out;
        // Grown, never cleared: only the bytes written are read back.
        let end = HEADER.len() + bound;
        if out.len() < end {
            out.resize(end, 0);
        }
        out[..HEADER.len()].copy_from_slice(&HEADER);
        let written = deflate
            .deflate_compress(body, &mut out[HEADER.len()..end])
            .expect("libdeflate's bound is room enough for any input");
        let mut member = Vec::with_capacity(HEADER.len() + written + 8);
        member.extend_from_slice(&out[..HEADER.len() + written]);
        member.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        // ISIZE: the length modulo 2^32 (RFC 1952 §2.3.1).
        member.extend_from_slice(&(body.len() as u32).to_le_bytes());
        member
    })
}

/// The same body through `flate2`'s own encoder (the tests' reference).
#[cfg(test)]
fn gzip_via_flate2(body: &[u8], level: u32) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder =
        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level.min(9)));
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
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

impl HttpKeys {
    /// Validates the keys and builds the driver for `url`, with [`BatchConfig`]'s defaults
    /// for the `batch:` limits left out. `allowed` lists the compressions the protocol
    /// accepts; the first is the default.
    pub fn build(&self, url: Url, allowed: &[Compression]) -> anyhow::Result<HttpDriver> {
        self.build_endpoints(vec![url], allowed, &BatchConfig::default())
    }

    /// Like [`HttpKeys::build`] for several equivalent endpoints (cluster nodes), with the
    /// sink's own `batch:` defaults: requests go to the endpoints in turn, and one that
    /// fails to connect or answers 5xx is skipped for a while, so the retry goes to the
    /// next one (failover).
    pub fn build_endpoints(
        &self,
        urls: Vec<Url>,
        allowed: &[Compression],
        default_batch: &BatchConfig,
    ) -> anyhow::Result<HttpDriver> {
        anyhow::ensure!(!urls.is_empty(), "endpoint: at least one URL is needed");
        for url in &urls {
            anyhow::ensure!(
                matches!(url.scheme(), "http" | "https"),
                "endpoint must be an http:// or https:// URL, not {url}"
            );
        }
        use crate::bounds::{self, check};
        let batch = &self.batch.resolve(default_batch);
        check("batch.max_events", batch.max_events, 1..=bounds::MAX_EVENTS)?;
        check("batch.max_bytes", batch.max_bytes, 1..=bounds::MAX_BYTES)?;
        check("batch.timeout_ms", batch.timeout_ms, 1..=bounds::MAX_MS)?;
        check("request.concurrency", self.request.concurrency, 1..=256)?;
        check(
            "request.timeout_ms",
            self.request.timeout_ms,
            1..=bounds::MAX_MS,
        )?;
        check(
            "retry.initial_backoff_ms",
            self.retry.initial_backoff_ms,
            1..=bounds::MAX_MS,
        )?;
        check(
            "retry.max_backoff_ms",
            self.retry.max_backoff_ms,
            self.retry.initial_backoff_ms..=bounds::MAX_MS,
        )?;
        bounds::check_opt(
            "retry.max_duration_secs",
            self.retry.max_duration_secs,
            1..=bounds::MAX_SECS,
        )?;
        check(
            "unhealthy_after_secs",
            self.unhealthy_after_secs,
            1..=bounds::MAX_SECS,
        )?;
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
            buffer: self.buffer.build()?,
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
            let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
                format!("tls.ca_file {}: not PEM certificates", ca_file.display())
            })?;
            // An empty, DER or text file parses as no certificate at all: the built-in
            // roots alone would then be trusted, not what the file was meant to add.
            anyhow::ensure!(
                !certs.is_empty(),
                "tls.ca_file {}: no PEM certificate found",
                ca_file.display()
            );
            for cert in certs {
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
        use base64::{engine::general_purpose::STANDARD, Engine as _};
        let authorization = match &self.auth {
            None => None,
            Some(AuthConfig::Basic { user, password }) => Some(format!(
                "Basic {}",
                STANDARD.encode(format!("{user}:{password}").as_bytes())
            )),
            Some(AuthConfig::Bearer { token }) => Some(format!("Bearer {token}")),
            Some(AuthConfig::ApiKey { key }) if key.contains(':') => {
                Some(format!("ApiKey {}", STANDARD.encode(key.as_bytes())))
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

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .expect("a valid gzip member");
        out
    }

    #[test]
    fn gzip_members_decode_to_the_body() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {i} status=200\n").into_bytes())
            .collect();
        let noise: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for body in [Vec::new(), b"x".to_vec(), text, noise] {
            for level in [0, 1, 6, 9, 42] {
                let packed = Compression::Gzip.compress(body.clone(), level);
                assert_eq!(gunzip(&packed), body, "level {level}, {} bytes", body.len());
                assert_eq!(gunzip(&gzip_via_flate2(&body, level)), body);
            }
            let packed = Compression::Snappy.compress(body.clone(), 0);
            assert_eq!(
                snap::raw::Decoder::new().decompress_vec(&packed).unwrap(),
                body
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn gzip_round_trips(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096), level in 0u32..10) {
            proptest::prop_assert_eq!(gunzip(&Compression::Gzip.compress(body.clone(), level)), body);
        }
    }
}
