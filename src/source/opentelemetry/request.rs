//! Reading one OTLP/HTTP request on the runtime: its route and method, its content type and
//! encoding, its declared length, and its body within `max_request_bytes` and the body
//! deadline.
//!
//! Owns: the refusals a request earns by itself (404, 405, 415, 413, 408, 400 on a broken
//! body). Never: takes memory budget, decodes, or decides when to answer (`server.rs`).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};

use super::decoder::Encoding;
use super::reply::{too_large, Format, Refusal, Reply, Signal};

/// A client must send its body within this.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// The signal a request's path carries; 404 for another path, 405 for another method: a
/// `google.rpc.Status` when the request names an OTLP format, else plain text.
pub(super) fn route<B>(request: &Request<B>) -> Result<Signal, Refusal> {
    let reply = |status, message: &str| match format(request.headers()) {
        Ok(format) => Reply::status(format, status, message),
        Err(_) => Reply::text(status, message),
    };
    let signal = match request.uri().path() {
        "/v1/logs" => Signal::Logs,
        "/v1/metrics" => Signal::Metrics,
        _ => {
            return Err((
                "not_found",
                reply(
                    StatusCode::NOT_FOUND,
                    "not found: OTLP/HTTP takes POST /v1/logs and /v1/metrics",
                ),
            ))
        }
    };
    if request.method() != Method::POST {
        let reply = reply(StatusCode::METHOD_NOT_ALLOWED, "OTLP/HTTP takes POST only");
        return Err(("not_found", reply));
    }
    Ok(signal)
}

/// The body's format (`Content-Type`) and compression (`Content-Encoding`); 415 for others.
pub(super) fn negotiate(headers: &HeaderMap) -> Result<(Format, Encoding), Refusal> {
    let format = format(headers)?;
    let encoding = match headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => Encoding::Identity,
        Some("gzip") | Some("x-gzip") => Encoding::Gzip,
        Some("deflate") => Encoding::Deflate,
        Some("zstd") => Encoding::Zstd,
        Some(other) => {
            return Err((
                "unsupported",
                Reply::status(
                    format,
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    &format!(
                        "Content-Encoding {other:?} not supported: use gzip, deflate, zstd or none"
                    ),
                ),
            ))
        }
    };
    Ok((format, encoding))
}

fn format(headers: &HeaderMap) -> Result<Format, Refusal> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Format::Protobuf),
        "application/json" => Ok(Format::Json),
        _ => Err((
            "unsupported",
            Reply::text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!(
                    "Content-Type {content_type:?} not supported: use application/x-protobuf or application/json"
                ),
            ),
        )),
    }
}

/// The `Content-Length` the client declared, if any; 413 when it is over `max`.
pub(super) fn declared_length(
    headers: &HeaderMap,
    format: Format,
    max: usize,
) -> Result<Option<u64>, Refusal> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large(format, max));
    }
    Ok(declared)
}

/// The whole body, at most `max` bytes (413 past it), within [`BODY_TIMEOUT`] (408).
pub(super) async fn read_body(
    body: Incoming,
    format: Format,
    max: usize,
) -> Result<Bytes, Refusal> {
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, max).collect()).await {
        Err(_) => Err((
            "bad_request",
            Reply::status(
                format,
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
            ),
        )),
        Ok(Err(error))
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large(format, max))
        }
        Ok(Err(error)) => Err((
            "bad_request",
            Reply::status(
                format,
                StatusCode::BAD_REQUEST,
                &format!("reading the body: {error}"),
            ),
        )),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}
