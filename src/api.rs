//! The agent's HTTP API on `api.address`:
//!
//! - `GET /health`: `200 {"status":"ok"}` while everything runs; `503` with the failing
//!   components and why (a sink that keeps failing or stalls, a crashed component,
//!   checkpoint writes failing for 5 s under `agent/checkpoints`).
//! - `GET /metrics`: the agent's own metrics, Prometheus text format 0.0.4.
//! - `POST /reload`: re-read the config file; a config that does not build is refused (`400`
//!   with the error) and the running pipelines keep going.
//!
//! Owns: the HTTP surface. Never: changes pipelines itself (reloads go to the agent loop).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::health;
use crate::telemetry::registry;

/// A reload request and where to send its outcome.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// Binds the API and serves it in the background. Returns the bound address.
pub async fn serve(
    address: SocketAddr,
    reloads: mpsc::Sender<ReloadRequest>,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on api.address {address}: {e}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "api accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let reloads = reloads.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let reloads = reloads.clone();
                    async move { Ok::<_, Infallible>(route(request, reloads).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    tracing::info!(address = %bound, "api listening");
    Ok(bound)
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert("content-type", value);
    }
    response
}

async fn route(
    request: Request<Incoming>,
    reloads: mpsc::Sender<ReloadRequest>,
) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/health") => {
            let failures = health::failures();
            if failures.is_empty() {
                reply(
                    StatusCode::OK,
                    "application/json",
                    r#"{"status":"ok"}"#.into(),
                )
            } else {
                let body = serde_json::json!({"status": "failing", "failing": failures});
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    body.to_string(),
                )
            }
        }
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            registry().render(),
        ),
        (&Method::POST, "/reload") => {
            let (tx, rx) = oneshot::channel();
            if reloads.send(tx).await.is_err() {
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "agent is stopping\n".into(),
                );
            }
            match rx.await {
                Ok(Ok(())) => reply(
                    StatusCode::OK,
                    "application/json",
                    r#"{"status":"reloaded"}"#.into(),
                ),
                Ok(Err(error)) => {
                    let body = serde_json::json!({"status": "refused", "error": error});
                    reply(
                        StatusCode::BAD_REQUEST,
                        "application/json",
                        body.to_string(),
                    )
                }
                Err(_) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "agent is stopping\n".into(),
                ),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /health, /metrics, POST /reload\n".into(),
        ),
    }
}
