//! The agent's HTTP API on `api.address`:
//!
//! - `GET /health`: `200 {"status":"ok"}` while everything runs; `503` with the failing
//!   components and why (a sink that keeps failing or stalls, a crashed component,
//!   checkpoint writes failing for 5 s under `agent/checkpoints`).
//! - `GET /metrics`: the agent's own metrics, Prometheus text format 0.0.4.
//! - `GET /live`: `200` while the process runs its loops (no reader thread stuck); for a
//!   liveness probe. Unlike `/health` it ignores sinks: a restart cannot fix a back-end.
//! - `POST /reload`: re-read the config file; a config that does not build is refused (`400`
//!   with the error) and the running pipelines keep going.
//! - `GET /tap?pipeline=P&component=C&limit=N`: the events passing a component, streamed
//!   as JSON lines (see [`crate::tap`]; a slow reader loses events, counted, and never
//!   slows a pipeline).
//!
//! Privileged endpoints (`/reload` changes the agent, `/tap` shows event contents) answer
//! only to loopback peers, or to any peer with `Authorization: Bearer <api.reload_token>`
//! when that is set (`403` otherwise).
//!
//! Connections are capped (`api.max_connections`) and must send their headers within
//! `api.header_timeout_secs`. With every slot taken, a new connection takes the slot of the
//! oldest one that has not sent a whole request yet (a slow or stuck client), so probes
//! are answered while such clients hold the rest; when every slot serves a request or a
//! tap, the new connection is closed at once.
//!
//! Owns: the HTTP surface. Never: changes pipelines itself (reloads go to the agent loop).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::config::ApiConfig;
use crate::health;
use crate::tap::{self, TapReader};
use crate::telemetry::registry;

/// A reply's body: whole, or the stream of a tap.
type Body = Either<Full<Bytes>, TapBody>;

/// A reload request and where to send its outcome.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// Binds the API and serves it in the background. Returns the bound address.
pub async fn serve(
    config: &ApiConfig,
    reloads: mpsc::Sender<ReloadRequest>,
) -> anyhow::Result<SocketAddr> {
    let address = config.address;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on api.address {address}: {e}"))?;
    let bound = listener.local_addr()?;
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let header_timeout = Duration::from_secs(config.header_timeout_secs);
    let token: Option<Arc<str>> = config.reload_token.as_deref().map(Arc::from);
    let refused = registry().counter(
        "sluice_api_connections_refused_total",
        "API connections closed at once because api.max_connections were open.",
        &[],
    );
    let connections = Connections::default();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "api accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Every slot taken: the oldest connection that has not sent a whole request yet
            // (a slow or stuck client) gives its slot up, so a probe is still answered.
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) if connections.evict_oldest_waiting() => None,
                Err(_) => {
                    refused.inc();
                    drop(stream);
                    continue;
                }
            };
            let (slots, refused) = (slots.clone(), refused.clone());
            let (reloads, token) = (reloads.clone(), token.clone());
            let entry = connections.open();
            tokio::spawn(async move {
                let _slot = match slot {
                    Some(slot) => slot,
                    // The evicted connection's task lets its slot go as it ends.
                    None => {
                        match tokio::time::timeout(EVICTION_WAIT, slots.acquire_owned()).await {
                            Ok(Ok(slot)) => slot,
                            _ => {
                                refused.inc();
                                return;
                            }
                        }
                    }
                };
                let started = entry.started.clone();
                let service = hyper::service::service_fn(move |request| {
                    started.store(true, Ordering::Relaxed);
                    let reloads = reloads.clone();
                    let token = token.clone();
                    async move {
                        Ok::<_, Infallible>(route(request, peer, token.as_deref(), reloads).await)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let serving = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(io, service);
                tokio::select! {
                    _ = serving => {}
                    () = entry.evicted.notified() => {}
                }
            });
        }
    });
    tracing::info!(address = %bound, "api listening");
    Ok(bound)
}

/// How long a connection that took an evicted one's slot waits for that slot to be let go.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// The open connections, oldest first, for eviction when every slot is taken.
#[derive(Clone, Default)]
struct Connections {
    inner: Arc<std::sync::Mutex<ConnectionTable>>,
}

#[derive(Default)]
struct ConnectionTable {
    next: u64,
    open: std::collections::BTreeMap<u64, (Arc<AtomicBool>, Arc<tokio::sync::Notify>)>,
}

/// One connection's entry; dropping it (the connection's task ends) removes it.
struct ConnectionEntry {
    id: u64,
    table: Connections,
    /// A whole request arrived (from then on the connection is not evicted).
    started: Arc<AtomicBool>,
    /// Told to end: its slot goes to a new connection.
    evicted: Arc<tokio::sync::Notify>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, ConnectionTable> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(&self) -> ConnectionEntry {
        let mut table = self.lock();
        let id = table.next;
        table.next += 1;
        let (started, evicted) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(tokio::sync::Notify::new()),
        );
        table.open.insert(id, (started.clone(), evicted.clone()));
        ConnectionEntry {
            id,
            table: self.clone(),
            started,
            evicted,
        }
    }

    /// Ends the oldest connection that has not sent a whole request; false when there is
    /// none (every slot serves a request or a tap).
    fn evict_oldest_waiting(&self) -> bool {
        let mut table = self.lock();
        let oldest = (table.open.iter())
            .find(|(_, (started, _))| !started.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        match oldest.and_then(|id| table.open.remove(&id)) {
            Some((_, evicted)) => {
                evicted.notify_one();
                true
            }
            None => false,
        }
    }
}

impl Drop for ConnectionEntry {
    fn drop(&mut self) {
        self.table.lock().open.remove(&self.id);
    }
}

/// Whether a privileged request (`POST /reload`, `GET /tap`) from `peer` is allowed:
/// loopback peers always; others only with `Authorization: Bearer <token>` when a token is
/// configured.
fn may_mutate(
    peer: IpAddr,
    token: Option<&str>,
    authorization: Option<&str>,
) -> Result<(), &'static str> {
    if peer.to_canonical().is_loopback() {
        return Ok(());
    }
    let Some(token) = token else {
        return Err(
            "privileged endpoints (POST /reload, GET /tap) answer only to loopback (set api.reload_token to allow others)\n",
        );
    };
    let offered = authorization
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare without an early exit, so the time taken does not tell how much matched.
    let same = offered.len() == token.len()
        && offered
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    match same {
        true => Ok(()),
        false => Err("missing or wrong bearer token\n"),
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Body> {
    let mut response = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert("content-type", value);
    }
    response
}

/// `405` for a known path asked with another method, naming the ones it takes (`Allow`).
fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = reply(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain",
        format!("method not allowed: use {allow}\n"),
    );
    response.headers_mut().insert(
        hyper::header::ALLOW,
        hyper::header::HeaderValue::from_static(allow),
    );
    response
}

/// `{"status":"ok"}` (200) when `problems` is empty, else 503 with them under `what`.
fn status_reply(
    what: &str,
    problems: std::collections::BTreeMap<String, String>,
) -> Response<Body> {
    if problems.is_empty() {
        let warnings = health::warnings();
        let body = if what == "failing" && !warnings.is_empty() {
            serde_json::json!({"status": "ok", "warnings": warnings}).to_string()
        } else {
            r#"{"status":"ok"}"#.into()
        };
        return reply(StatusCode::OK, "application/json", body);
    }
    let mut body = serde_json::Map::new();
    body.insert("status".into(), what.into());
    body.insert(what.into(), serde_json::json!(problems));
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        "application/json",
        serde_json::Value::Object(body).to_string(),
    )
}

async fn route(
    request: Request<Incoming>,
    peer: SocketAddr,
    token: Option<&str>,
    reloads: mpsc::Sender<ReloadRequest>,
) -> Response<Body> {
    let authorization = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    // HEAD is GET without the body (hyper leaves it out): probes and `curl -I` use it.
    let method = match request.method() {
        &Method::HEAD => &Method::GET,
        method => method,
    };
    match (method, request.uri().path()) {
        (&Method::GET, "/live") => status_reply("stuck", health::stuck_loops()),
        (&Method::GET, "/health") => status_reply("failing", health::failures()),
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            registry().render(),
        ),
        (&Method::GET, "/tap") => {
            if let Err(why) = may_mutate(peer.ip(), token, authorization) {
                tracing::warn!(%peer, "api: tap refused");
                return reply(StatusCode::FORBIDDEN, "text/plain", why.into());
            }
            open_tap(request.uri().query().unwrap_or(""))
        }
        (&Method::POST, "/reload") => {
            if let Err(why) = may_mutate(peer.ip(), token, authorization) {
                tracing::warn!(%peer, "api: reload refused");
                return reply(StatusCode::FORBIDDEN, "text/plain", why.into());
            }
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
        (_, "/live" | "/health" | "/metrics" | "/tap") => method_not_allowed("GET, HEAD"),
        (_, "/reload") => method_not_allowed("POST"),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /health, /live, /metrics, /tap, POST /reload\n".into(),
        ),
    }
}

/// `GET /tap?pipeline=P&component=C&limit=N` (every parameter optional).
fn open_tap(query: &str) -> Response<Body> {
    let (mut pipeline, mut component, mut limit) = (None, None, None);
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let value = Some(value.into_owned()).filter(|v| !v.is_empty());
        match &*key {
            "pipeline" => pipeline = value,
            "component" => component = value,
            "limit" => match value.as_deref().map(str::parse::<u64>) {
                None => {}
                Some(Ok(n)) if n > 0 => limit = Some(n),
                Some(_) => {
                    let why = "limit must be a whole number of events, at least 1\n";
                    return reply(StatusCode::BAD_REQUEST, "text/plain", why.into());
                }
            },
            other => {
                let why = format!("unknown parameter {other:?}: pipeline, component, limit\n");
                return reply(StatusCode::BAD_REQUEST, "text/plain", why);
            }
        }
    }
    match tap::open(pipeline.as_deref(), component.as_deref(), limit) {
        Ok(reader) => {
            let mut response = Response::new(Either::Right(TapBody(reader)));
            response.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("application/x-ndjson"),
            );
            response
        }
        Err(tap::OpenError::TooMany) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            format!("{} taps are open already\n", tap::MAX_TAPS),
        ),
        Err(tap::OpenError::Unknown(why)) => {
            reply(StatusCode::NOT_FOUND, "text/plain", format!("{why}\n"))
        }
    }
}

/// The streamed body of `GET /tap`; dropping it (the client went away) closes the tap.
pub struct TapBody(TapReader);

impl hyper::body::Body for TapBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .0
            .poll_next(cx)
            .map(|chunk| chunk.map(|bytes| Ok(hyper::body::Frame::data(bytes))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(peer: &str, token: Option<&str>, authorization: Option<&str>, allowed: bool) {
        let peer: IpAddr = peer.parse().expect("an address");
        assert_eq!(
            may_mutate(peer, token, authorization).is_ok(),
            allowed,
            "{peer} token={token:?} authorization={authorization:?}"
        );
    }

    #[test]
    fn mutating_requests_need_loopback_or_the_token() {
        let token = Some("0123456789abcdef");
        check("127.0.0.1", None, None, true);
        check("::1", None, None, true);
        check("::ffff:127.0.0.1", None, None, true);
        check("10.0.0.5", None, None, false);
        check("10.0.0.5", None, Some("Bearer anything"), false);
        check("10.0.0.5", token, None, false);
        check("10.0.0.5", token, Some("Bearer 0123456789abcdeX"), false);
        check("10.0.0.5", token, Some("Bearer 0123456789abcde"), false);
        check("10.0.0.5", token, Some("0123456789abcdef"), false);
        check("10.0.0.5", token, Some("Bearer 0123456789abcdef"), true);
        check("fe80::1", token, Some("Bearer 0123456789abcdef"), true);
    }
}
