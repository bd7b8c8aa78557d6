//! What the OTLP receiver answers: the request's signal and format, and the replies
//! (export responses with partial success, `google.rpc.Status` errors, plain text).
//!
//! Owns: reply bodies and status codes. Never: decides when to answer (`server.rs`).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use prost::Message as _;

use super::{proto, Decoded};
use crate::source::SourceContext;
use crate::telemetry::Counter;

/// Which OTLP signal a path carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Signal {
    Logs,
    Metrics,
}

/// Body format, from `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Protobuf,
    Json,
}

/// A reply being built.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
    pub(super) retry_after: Option<u64>,
}

impl Reply {
    pub(super) fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(self.body)));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        if let Some(seconds) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }

    pub(super) fn text(status: StatusCode, message: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{message}\n").into_bytes(),
            retry_after: None,
        }
    }

    /// An OTLP error: a `google.rpc.Status` in the request's format.
    pub(super) fn status(format: Format, status: StatusCode, message: &str) -> Reply {
        // gRPC codes, as the OTLP/HTTP spec maps them.
        let code = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::PAYLOAD_TOO_LARGE => 8, // RESOURCE_EXHAUSTED
            StatusCode::SERVICE_UNAVAILABLE => 14,                              // UNAVAILABLE
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => 12,       // UNIMPLEMENTED
            _ => 3,                                                             // INVALID_ARGUMENT
        };
        let (content_type, body) = match format {
            Format::Protobuf => (
                "application/x-protobuf",
                proto::Status {
                    code,
                    message: message.to_owned(),
                }
                .encode_to_vec(),
            ),
            Format::Json => (
                "application/json",
                serde_json::json!({"code": code, "message": message})
                    .to_string()
                    .into_bytes(),
            ),
        };
        Reply {
            status,
            content_type,
            body,
            retry_after: None,
        }
    }

    /// 200 with the export response (partial success when something was refused or warned).
    pub(super) fn success(format: Format, signal: Signal, decoded: &Decoded) -> Reply {
        let partial =
            (decoded.rejected > 0 || !decoded.warning.is_empty()).then(|| proto::PartialSuccess {
                rejected: decoded.rejected as i64,
                error_message: decoded.warning.clone(),
            });
        let (content_type, body) = match format {
            Format::Protobuf => (
                "application/x-protobuf",
                proto::ExportResponse {
                    partial_success: partial,
                }
                .encode_to_vec(),
            ),
            Format::Json => {
                let body = match partial {
                    None => serde_json::json!({}),
                    Some(partial) => {
                        let rejected = match signal {
                            Signal::Logs => "rejectedLogRecords",
                            Signal::Metrics => "rejectedDataPoints",
                        };
                        serde_json::json!({"partialSuccess": {
                            rejected: partial.rejected.to_string(),
                            "errorMessage": partial.error_message,
                        }})
                    }
                };
                ("application/json", body.to_string().into_bytes())
            }
        };
        Reply {
            status: StatusCode::OK,
            content_type,
            body,
            retry_after: None,
        }
    }
}

/// A refusal: its metric reason and the reply.
pub(super) type Refusal = (&'static str, Reply);

pub(super) fn too_large(format: Format, max: usize) -> Refusal {
    (
        "too_large",
        Reply::status(
            format,
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the body is over max_request_bytes ({max} bytes)"),
        ),
    )
}

pub(super) fn bad_request(format: Format, message: String) -> Refusal {
    (
        "bad_request",
        Reply::status(format, StatusCode::BAD_REQUEST, &message),
    )
}

/// The receiver's refusal counters (`sluice_otlp_requests_refused_total{reason}`).
pub(super) struct Counters {
    refused: [Counter; 7],
    pub(super) rejected_items: Counter,
    pub(super) connections_refused: Counter,
}

/// Reasons a request was refused, in [`Counters::refused`] order.
const REFUSALS: [&str; 7] = [
    "bad_request",
    "too_large",
    "unsupported",
    "busy",
    "not_delivered",
    "not_found",
    "unavailable",
];

impl Counters {
    pub(super) fn new(ctx: &SourceContext) -> Self {
        let refused = REFUSALS.map(|reason| {
            ctx.metrics.counter(
                "sluice_otlp_requests_refused_total",
                "OTLP requests answered with an error, by reason (busy, not_delivered and unavailable are the retryable 429/503).",
                &[("reason", reason)],
            )
        });
        Counters {
            refused,
            rejected_items: ctx.metrics.dropped("otlp_rejected"),
            connections_refused: ctx.metrics.counter(
                "sluice_otlp_connections_refused_total",
                "OTLP connections closed at once because max_connections were open.",
                &[],
            ),
        }
    }

    pub(super) fn refused(&self, reason: &str) {
        if let Some(i) = REFUSALS.iter().position(|r| *r == reason) {
            self.refused[i].inc();
        }
    }
}
