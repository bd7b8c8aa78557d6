//! Loading sluice's YAML config into serde-derived structs, with locations.
//!
//! This module owns:
//! - parsing YAML (yaml-rust2's event parser) into a [`Node`] tree that keeps
//!   the line and column of every node, with anchors/aliases resolved and
//!   duplicate keys and multiple documents rejected;
//! - `${VAR}`, `${VAR:-default}` and `$$` environment expansion in values;
//! - a serde `Deserializer` over that tree that types scalars on demand
//!   (YAML 1.2 core schema) and turns every error into a [`ConfigError`]
//!   naming file, line, column and key path, e.g.
//!   `sluice.yaml:7:19: pipelines.web.sinks[0].endpoint: "x" is not a URL (…)`;
//! - tagged component configs ([`Named`] + [`TaggedEnum`]) selected by a
//!   `type:` key, instead of serde's internally tagged enums (which buffer
//!   the input and lose every location).
//!
//! It must never panic on any input: malformed YAML, nesting deeper than
//! [`MAX_DEPTH`] and alias bombs all come back as errors.
//!
//! Not supported: custom tags (`!env`, rejected), `<<` merge keys (an
//! ordinary key, so `deny_unknown_fields` rejects it), enum variants that
//! carry data (only unit variants, written as strings).
//!
//! One file per job: `node` parses the text into a located tree, `env` checks
//! keys and expands variables, `scalar` types plain scalars, `error` locates errors,
//! `de` is the serde `Deserializer` over the tree, `named` the `type:`-tagged
//! component entries and `beside` the keys read beside a component's own. This file
//! owns the entry points and the public error.

pub mod beside;
mod de;
mod env;
mod error;
mod named;
mod node;
mod scalar;

use serde::de::DeserializeOwned;
use std::fmt;

pub use named::{Named, TaggedEnum};
pub use node::{Node, NodeKind, ScalarStyle, MAX_DEPTH};

use de::NodeDe;
use error::Path;

/// A config error located in the source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name given to the loader.
    pub file: String,
    /// 1-based line of the offending node.
    pub line: usize,
    /// 1-based column of the offending node.
    pub column: usize,
    /// Key path such as `pipelines.web.sinks[0].endpoint`; empty for the root.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Loads a `T` from YAML `text`, expanding `${VAR}` from the process
/// environment; `file` is only used in error messages. `${HOSTNAME}` falls back to the
/// machine's host name when the variable is not set (systemd services and `cron` do not
/// set it, which gave every event `host: localhost` under the shipped unit).
pub fn from_str<T: DeserializeOwned>(text: &str, file: &str) -> Result<T, ConfigError> {
    from_str_with_env(text, file, &|name| {
        std::env::var(name)
            .ok()
            .or_else(|| (name == "HOSTNAME").then(host_name).flatten())
    })
}

/// The kernel's host name (`/proc/sys/kernel/hostname`, what `gethostname` returns).
pub fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Like [`from_str`], but looks environment variables up through `env`.
pub fn from_str_with_env<T: DeserializeOwned>(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<T, ConfigError> {
    let load = || {
        let mut root = node::parse(text.strip_prefix('\u{feff}').unwrap_or(text))?;
        env::prepare(&mut root, &Path::Root, env)?;
        T::deserialize(NodeDe::new(&root, Path::Root)).map_err(|e| e.at(&root, &Path::Root))
    };
    load().map_err(|e| {
        let (line, column, path) = e.at.unwrap_or((1, 1, String::new()));
        let (file, message) = (file.to_string(), e.message);
        ConfigError {
            file,
            line,
            column,
            path,
            message,
        }
    })
}
#[cfg(test)]
mod tests;
