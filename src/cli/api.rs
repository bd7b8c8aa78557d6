//! Where the client subcommands (`tap`, `reload`) reach a running agent's API: `--api`
//! (else `SLUICE_API_ADDRESS`, else `127.0.0.1:8686`), or the `api:` of the config `-c`
//! names; with `--token` (else `SLUICE_API_TOKEN`, else that config's `api.reload_token`).
//!
//! Owns: that resolution and the HTTP client both commands use. Never: what either command
//! asks of the API.

use std::path::PathBuf;

/// A running agent's API, as the command line names it.
pub struct Target {
    /// The API's address (`host:port`).
    pub api: String,
    /// Take the address (and `api.reload_token`) from this config instead.
    pub config: Option<PathBuf>,
    /// Bearer token for an agent whose API is not on loopback.
    pub token: Option<String>,
}

impl Target {
    /// The address and token to use: a config's `api:` when `-c` was given (refused when
    /// that config disables its API: another agent may listen where this one would), and an
    /// address on every interface (`0.0.0.0:8686` in the image) reached on loopback.
    /// `serves` says what the API would be asked for, in the error.
    pub fn resolve(mut self, serves: &str) -> anyhow::Result<Target> {
        if let Some(path) = &self.config {
            let (config, _) = sluice::config::load(path)?;
            anyhow::ensure!(
                config.api.enabled,
                "{}: api.enabled is false: that agent serves no {serves}",
                path.display()
            );
            self.api = config.api.address.to_string();
            self.token = self.token.or(config.api.reload_token);
        }
        if let Ok(mut address) = self.api.parse::<std::net::SocketAddr>() {
            if address.ip().is_unspecified() {
                address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                self.api = address.to_string();
            }
        }
        Ok(self)
    }

    /// `http://<api><path>`, refused when the address is not `host:port`.
    pub fn url(&self, path: &str) -> anyhow::Result<url::Url> {
        url::Url::parse(&format!("http://{}{path}", self.api))
            .map_err(|_| anyhow::anyhow!("--api {:?} is not host:port", self.api))
    }

    /// A request to `url` with the token, if any.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: url::Url,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        let client = reqwest::Client::builder().no_proxy().build()?;
        let request = client.request(method, url);
        Ok(match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        })
    }

    /// The error for an agent that could not be reached.
    pub fn unreachable(&self) -> String {
        format!(
            "cannot reach the agent's API at {} (is `sluice run` running with the API enabled? --api or -c names it)",
            self.api
        )
    }
}

/// A current-thread runtime for one client command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
