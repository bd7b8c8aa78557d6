//! `sluice reload`: asks a running agent to re-read its config (`POST /reload`), as SIGHUP
//! does, and says what the agent answered. Useful where no shell or `curl` is at hand
//! (`kubectl exec` into the distroless image runs the agent's own binary).

use anyhow::Context as _;

use super::api::{runtime, Target};

/// Asks for the reload; `Ok` when the agent applied it (exit 0), the agent's reason as the
/// error when it refused (exit 1: the running pipelines keep going).
pub fn run(target: Target) -> anyhow::Result<()> {
    let target = target.resolve("reloads")?;
    runtime()?.block_on(async {
        let url = target.url("/reload")?;
        let response = target
            .request(reqwest::Method::POST, url.clone())?
            .send()
            .await
            .with_context(|| target.unreachable())?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        match answer["status"].as_str() {
            Some("reloaded") if status.is_success() => {
                println!("reloaded: {}", target.api);
                Ok(())
            }
            Some("refused") => anyhow::bail!(
                "reload refused, the running pipelines keep going: {}",
                answer["error"].as_str().unwrap_or("?")
            ),
            _ => anyhow::bail!("{url}: {status}: {}", body.trim()),
        }
    })
}
