//! A small Kubernetes API client on the agent's existing HTTP stack (reqwest with rustls),
//! for exactly three kinds of request: a list (`GET /api/v1/pods?fieldSelector=…&limit=…`),
//! a watch (the same with `watch=true&resourceVersion=…&allowWatchBookmarks=true`, a chunked
//! reply of one JSON event per line) and a get of one owner object.
//!
//! Why not kube-rs: it brings hyper-based clients, `k8s-openapi`'s generated types for every
//! API group (compile time and binary size in the megabytes) and informers that cache whole
//! objects; sluice needs three GETs, reads a handful of fields and must stay a small static
//! binary (≤ 8 MB). reqwest and rustls are already linked for the sinks.
//!
//! Configuration: in a pod, `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT` and the
//! service account's token and CA under `/var/run/secrets/kubernetes.io/serviceaccount/`;
//! or an explicit `api_url`, `token_file`, `ca_file`. The token file is read again for every
//! request (requests are a few per watch period), so a rotated (projected, expiring) token
//! is picked up without a restart.
//!
//! Owns: URLs, authentication, status decoding. Never: retries (the watch loop does).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use super::objects::Status;

/// Where the service account's files are mounted in a pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Resolved connection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// `https://host:port` without a trailing slash.
    pub base: String,
    /// Bearer token file, read for every request.
    pub token_file: Option<PathBuf>,
    /// CA bundle (PEM) the server's certificate must chain to; the system roots otherwise.
    pub ca_file: Option<PathBuf>,
}

/// The in-cluster endpoint from the environment kubelet gives every container.
pub fn in_cluster_base() -> anyhow::Result<String> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
        anyhow::anyhow!("not in a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set): set api_url")
    })?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
    Ok(if host.contains(':') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    })
}

/// An API error: a `Status` the server replied with, or no reply.
#[derive(Debug)]
pub enum ApiError {
    /// The server answered with this HTTP status and `Status` body.
    Status(Status),
    /// No usable reply (connection refused, TLS, timeout, malformed body).
    Transport(String),
}

impl ApiError {
    /// True for `410 Gone` (`reason: Expired`): the resource version is too old, re-list.
    pub fn is_gone(&self) -> bool {
        matches!(self, ApiError::Status(s) if s.code == 410)
    }

    /// A short label for metrics: the HTTP code or `transport`.
    pub fn code(&self) -> String {
        match self {
            ApiError::Status(s) => s.code.to_string(),
            ApiError::Transport(_) => "transport".into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Status(s) => write!(f, "{} {}: {}", s.code, s.reason, s.message),
            ApiError::Transport(e) => f.write_str(e),
        }
    }
}

/// The client.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: Endpoint,
}

impl Client {
    /// A client for `endpoint` (reads the CA now; the token per request).
    pub fn new(endpoint: Endpoint) -> anyhow::Result<Client> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(2)
            // Two long watch streams and a rare get: HTTP/1.1 keeps no HTTP/2 connection
            // state (windows, buffers) for them.
            .http1_only()
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")));
        if let Some(ca_file) = &endpoint.ca_file {
            // The cluster's CA only: public roots do not vouch for an API server (and are
            // not loaded, which saves memory).
            builder = builder.tls_built_in_root_certs(false);
            let pem =
                std::fs::read(ca_file).with_context(|| format!("ca_file {}", ca_file.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("ca_file {}: not PEM certificates", ca_file.display()))?;
            anyhow::ensure!(
                !certs.is_empty(),
                "ca_file {}: no certificate",
                ca_file.display()
            );
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Client {
            http: builder.build().context("HTTP client")?,
            endpoint,
        })
    }

    fn token(&self) -> Result<Option<String>, ApiError> {
        let Some(path) = &self.endpoint.token_file else {
            return Ok(None);
        };
        let token = std::fs::read_to_string(path)
            .map_err(|e| ApiError::Transport(format!("token_file {}: {e}", path.display())))?;
        Ok(Some(token.trim().to_owned()))
    }

    /// `GET path_and_query`; a non-2xx reply becomes [`ApiError::Status`]. `timeout` bounds
    /// the time to the reply's headers (and, for a whole-body read, the body: see
    /// [`Client::get_json`]).
    pub async fn get(
        &self,
        path_and_query: &str,
        timeout: Duration,
    ) -> Result<reqwest::Response, ApiError> {
        let mut request = self
            .http
            .get(format!("{}{path_and_query}", self.endpoint.base))
            .header("Accept", "application/json");
        if let Some(token) = self.token()? {
            request = request.bearer_auth(token);
        }
        let response = tokio::time::timeout(timeout, request.send())
            .await
            .map_err(|_| ApiError::Transport(format!("no reply within {timeout:?}")))?
            .map_err(|e| ApiError::Transport(error_chain(&e)))?;
        let code = response.status().as_u16();
        if response.status().is_success() {
            return Ok(response);
        }
        let body = tokio::time::timeout(timeout, response.bytes())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let mut status: Status = serde_json::from_slice(&body).unwrap_or_default();
        status.code = code;
        if status.message.is_empty() {
            status.message = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        }
        Err(ApiError::Status(status))
    }

    /// `GET` and parse the whole JSON body as `T`, all within `timeout`.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path_and_query: &str,
        timeout: Duration,
    ) -> Result<T, ApiError> {
        let work = async {
            let response = self.get(path_and_query, timeout).await?;
            let body = response
                .bytes()
                .await
                .map_err(|e| ApiError::Transport(error_chain(&e)))?;
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::Transport(format!("malformed reply: {e}")))
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| Err(ApiError::Transport(format!("no reply within {timeout:?}"))))
    }
}

/// An error with its sources (`error sending request: connection refused`).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Percent-encodes a query value (selectors contain `=` and `,`).
pub fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
