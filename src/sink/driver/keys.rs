//! The keys every network sink accepts (`batch`, `compression`, `request`, `retry`, `tls`,
//! `auth`, `headers`, `proxy`, `unhealthy_after_secs`, `buffer`): declared once in
//! [`HttpKeys`], read beside each sink's own keys ([`HttpSinkConfig`]) the way a sink's
//! `condition:` is ([`crate::yaml::beside`]), so unknown keys stay errors that list both.
//!
//! Owns: the shared keys and their defaults. Never: validates (that is
//! [`HttpKeys::build`]'s job, in `config.rs`, which also names the key of a bad value).

use std::collections::BTreeMap;

use serde::de::{self, MapAccess};
use serde::Deserialize;

use super::{
    unhealthy_after_secs_default, AuthConfig, BatchConfig, CompressionConfig, RequestConfig,
    RetryConfig, TlsConfig,
};
use crate::yaml::beside::{self, BesideKeys};

/// `batch:` when a batch is sent, whichever limit is reached first; a limit left out takes
/// the sink's default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchKeys {
    /// Most events per request.
    #[serde(default)]
    pub max_events: Option<usize>,
    /// Most bytes (estimated, before compression) per request.
    #[serde(default)]
    pub max_bytes: Option<usize>,
    /// Longest time an event waits for its batch to fill, in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl BatchKeys {
    /// The limits, with `defaults`' for those left out.
    pub fn resolve(&self, defaults: &BatchConfig) -> BatchConfig {
        BatchConfig {
            max_events: self.max_events.unwrap_or(defaults.max_events),
            max_bytes: self.max_bytes.unwrap_or(defaults.max_bytes),
            timeout_ms: self.timeout_ms.unwrap_or(defaults.timeout_ms),
        }
    }
}

/// The keys every network sink accepts besides its own; [`HttpKeys::build`] validates them
/// and makes the sink's [`super::HttpDriver`].
#[derive(Debug, Clone, PartialEq)]
pub struct HttpKeys {
    /// `batch:` limits (`max_events`, `max_bytes`, `timeout_ms`).
    pub batch: BatchKeys,
    /// `compression:` an algorithm, or `{ algorithm: gzip, level: 6 }`; unset: the sink's
    /// default.
    pub compression: Option<CompressionConfig>,
    /// `request:` in-flight requests (`concurrency`) and per-request `timeout_ms`.
    pub request: RequestConfig,
    /// `retry:` backoff (`initial_backoff_ms`, `max_backoff_ms`) and optional
    /// `max_duration_secs`.
    pub retry: RetryConfig,
    /// `tls:` for `https://` endpoints.
    pub tls: TlsConfig,
    /// `auth:` `{ strategy: basic, user, password }`, `{ strategy: bearer, token }` (and
    /// `{ strategy: api_key, key }` for Elasticsearch).
    pub auth: Option<AuthConfig>,
    /// `headers:` extra HTTP headers sent with every request.
    pub headers: BTreeMap<String, String>,
    /// `proxy:` HTTP(S) proxy URL; unset: direct connection.
    pub proxy: Option<String>,
    /// `unhealthy_after_secs:` `/health` fails when nothing was delivered for this long
    /// while data waits.
    pub unhealthy_after_secs: u64,
    /// `buffer:` between the pipeline and the sink: `{ type: memory | disk, max_bytes,
    /// when_full, sync_interval_ms }` (default: memory, the pipeline's bounded queue).
    pub buffer: crate::buffer::BufferConfig,
}

impl Default for HttpKeys {
    fn default() -> Self {
        HttpKeys {
            batch: BatchKeys::default(),
            compression: None,
            request: RequestConfig::default(),
            retry: RetryConfig::default(),
            tls: TlsConfig::default(),
            auth: None,
            headers: BTreeMap::new(),
            proxy: None,
            unhealthy_after_secs: unhealthy_after_secs_default(),
            buffer: crate::buffer::BufferConfig::default(),
        }
    }
}

impl BesideKeys for HttpKeys {
    const KEYS: &'static [&'static str] = &[
        "batch",
        "compression",
        "request",
        "retry",
        "tls",
        "auth",
        "headers",
        "proxy",
        "unhealthy_after_secs",
        "buffer",
    ];

    fn read_value<'de, M: MapAccess<'de>>(
        &mut self,
        key: &'static str,
        map: &mut M,
    ) -> Result<(), M::Error> {
        match key {
            "batch" => self.batch = map.next_value()?,
            "compression" => self.compression = map.next_value()?,
            "request" => self.request = map.next_value()?,
            "retry" => self.retry = map.next_value()?,
            "tls" => self.tls = map.next_value()?,
            "auth" => self.auth = map.next_value()?,
            "headers" => self.headers = map.next_value()?,
            "proxy" => self.proxy = map.next_value()?,
            "unhealthy_after_secs" => self.unhealthy_after_secs = map.next_value()?,
            "buffer" => self.buffer = map.next_value()?,
            other => return Err(de::Error::unknown_field(other, Self::KEYS)),
        }
        Ok(())
    }
}

/// A network sink's config: its own keys (`S`, a `deny_unknown_fields` struct) and the
/// shared [`HttpKeys`], read from one map.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSinkConfig<S> {
    /// The sink's own keys.
    pub sink: S,
    /// The keys every network sink accepts.
    pub http: HttpKeys,
}

impl<'de, S: Deserialize<'de>> Deserialize<'de> for HttpSinkConfig<S> {
    fn deserialize<D: de::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let mut http = HttpKeys::default();
        let sink = beside::deserialize_beside(de, &mut http)?;
        Ok(HttpSinkConfig { sink, http })
    }
}

#[cfg(test)]
mod tests {
    use crate::sink::loki::LokiConfig;

    fn error(yaml: &str) -> String {
        let result = crate::yaml::from_str::<LokiConfig>(yaml, "t.yaml");
        format!("{:#}", result.expect_err("refused"))
    }

    #[test]
    fn shared_keys_are_read_beside_the_sinks_own_and_errors_stay_located() {
        let config: LokiConfig = crate::yaml::from_str(
            "endpoint: http://x\nbatch: { max_events: 7 }\nproxy: http://p\nlabels: { a: b }",
            "t.yaml",
        )
        .unwrap();
        assert_eq!(config.http.batch.max_events, Some(7));
        assert_eq!(config.http.proxy.as_deref(), Some("http://p"));
        assert_eq!(config.sink.labels.len(), 1);
        let text = error("endpoint: http://x\nlabelz: {}");
        assert!(
            text.contains("unknown key \"labelz\"")
                && text.contains("out_of_order, batch, compression")
                && text.contains("unhealthy_after_secs, buffer"),
            "{text}"
        );
        let text = error("endpoint: http://x\nbatch: { max_events: many }");
        assert!(
            text.contains("t.yaml:2") && text.contains("batch.max_events"),
            "{text}"
        );
        let text = error("endpoint: http://x\nbatch: { max_event: 1 }");
        assert!(text.contains("batch.max_event"), "{text}");
    }
}
