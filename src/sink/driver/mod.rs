//! The shared HTTP sink driver: batching, compression, bounded in-flight requests, retries
//! with backoff and `Retry-After`, acknowledgements, delivery metrics and `/health`, for every
//! network sink (Loki, Elasticsearch, Prometheus remote-write).
//!
//! A sink file implements [`HttpSinkCodec`] (which events it takes, how a batch becomes one
//! or more request bodies, how a reply is judged); its config is an [`HttpSinkConfig`]: its
//! own keys beside the common ones ([`HttpKeys`]), whose [`HttpKeys::build`] makes its
//! [`HttpDriver`]. Everything else happens here:
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
//! Invariant: an [`AckRef`](crate::ack::AckRef) is settled only after every event it covers
//! was delivered (2xx), dead-lettered (permanent rejection, or retry cap reached), or dropped
//! by the codec's policy (counted). An input batch split over several requests hands a clone of its
//! `AckRef` to each. Nothing is settled on shutdown or abort: undelivered data is read again.
//!
//! Owns: batching, the HTTP client, retries, delivery metrics, delivery health. Never:
//! knows a wire format (codecs do), or drops an event without counting it.

mod codec;
mod config;
mod delivery;
mod keys;

pub use codec::*;
pub use config::*;
pub use delivery::*;
pub use keys::*;

use std::time::Duration;

/// How many bytes of a reply body are read for judging it; the rest is discarded.
const MAX_REPLY_BYTES: usize = 64 * 1024;
/// The longest `Retry-After` honoured; a server asking for more gets this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};
    use url::Url;

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
            path_segment: None,
        });
        let got = match verdict {
            Verdict::Delivered => "delivered".to_owned(),
            Verdict::Retry { .. } => "retry".to_owned(),
            Verdict::Reject { reason } => format!("reject {reason}"),
            Verdict::Partial { .. } => "partial".to_owned(),
            Verdict::Split { reason } => format!("split {reason}"),
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
        let settings = HttpKeys {
            retry: RetryConfig {
                initial_backoff_ms: 100,
                max_backoff_ms: 1000,
                max_duration_secs: None,
            },
            ..HttpKeys::default()
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
        let good = HttpKeys::default();
        let url: Url = "http://127.0.0.1:3100/".parse().unwrap();
        assert!(good.build(url.clone(), &[Compression::Snappy]).is_ok());
        let cases: Vec<(HttpKeys, &str)> = vec![
            (
                HttpKeys {
                    batch: BatchKeys {
                        max_events: Some(0),
                        ..BatchKeys::default()
                    },
                    ..good.clone()
                },
                "max_events",
            ),
            (
                HttpKeys {
                    request: RequestConfig {
                        concurrency: 0,
                        timeout_ms: 1,
                    },
                    ..good.clone()
                },
                "concurrency",
            ),
            (
                HttpKeys {
                    compression: Some(CompressionConfig::Algorithm(Compression::Gzip)),
                    ..good.clone()
                },
                "not supported",
            ),
            (
                HttpKeys {
                    headers: [("bad name".into(), "x".into())].into(),
                    ..good.clone()
                },
                "header name",
            ),
            (
                HttpKeys {
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
