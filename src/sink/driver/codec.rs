//! The interface a network sink implements ([`HttpSinkCodec`]) and what it hands the
//! driver: encoded requests, replies to judge, verdicts.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::*;
use crate::event::Event;

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

    /// Judges a reply knowing the events the request carried (`items[position]` indexes
    /// `events`), for protocols whose errors name entries by content rather than position
    /// (Loki's 400 lists refused entries by stream and time). Default: [`HttpSinkCodec::judge`].
    fn judge_events(&self, reply: &Reply<'_>, events: &[Event], items: &[usize]) -> Judgement {
        let _ = (events, items);
        Judgement::Verdict(self.judge(reply))
    }

    /// Encodes `items` (indices into `events`, all carried by one request this codec made of
    /// these events) again as one request, as they were encoded the first time: without
    /// the admission `encode` does (its series state already counts them sent). For
    /// [`Verdict::Split`]; `None` (the default) rejects the request whole instead.
    fn encode_part(&mut self, events: &[Event], items: &[usize]) -> Option<EncodedRequest> {
        let _ = (events, items);
        None
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
    /// A path segment put before the endpoint path's last one for this request only
    /// (Elasticsearch's `/<index>/_bulk`). Must be URL-safe: the codec checks it.
    pub path_segment: Option<String>,
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
    /// The request's [`EncodedRequest::path_segment`], if it had one.
    pub path_segment: Option<&'a str>,
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
    /// The server refused the whole request for something in some of its items, without
    /// saying which (Prometheus: one sample out of order or out of bounds fails its request).
    /// Its halves are sent on their own at once ([`HttpSinkCodec::encode_part`]), halved
    /// again while refused, so that what the server takes is stored and only the items it
    /// refuses alone are dead-lettered with `reason`.
    Split {
        /// Counted and written with the dead letters of the items refused alone.
        reason: String,
    },
    /// Some items failed: retry these (positions in the request's `items`), dead-letter
    /// those; the rest were accepted.
    Partial {
        /// Positions to encode and send again.
        retry: Vec<usize>,
        /// Why they failed (the first one's status, error type and reason), for the log
        /// and for the dead letters if their retries run out.
        retry_reason: String,
        /// Positions rejected for good, with their reason.
        reject: Vec<(usize, String)>,
    },
}

/// The result of [`HttpSinkCodec::judge_events`].
#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    /// A verdict on the request as [`HttpSinkCodec::judge`] gives it.
    Verdict(Verdict),
    /// The server stored the request's entries except the refused ones (nothing to retry).
    Refused(Refusals),
}

/// What a server that keeps the valid entries of a request refused of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Refusals {
    /// Positions (in the request's `items`) refused for good, each with its reason
    /// (`kind: server's words`): dead-lettered and counted under `kind`.
    pub named: Vec<(usize, String)>,
    /// Refusals the server counted without saying which entries they were.
    pub unnamed: Vec<Unnamed>,
}

/// `refused` of the entries at `positions` were refused, the others stored: which is unknown.
#[derive(Debug, Clone, PartialEq)]
pub struct Unnamed {
    /// The candidates (positions in the request's `items`), at least `refused` of them.
    pub positions: Vec<usize>,
    /// How many of them the server refused.
    pub refused: usize,
    /// `kind: server's words`; `kind` is the metric label.
    pub reason: String,
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
