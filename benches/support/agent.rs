//! Which agent binary the end-to-end benches run: `SLUICE_BIN` when set (e.g. an older
//! build, for an A/B comparison), else the one Cargo built for the bench; starting it; and
//! extra config keys and numbers a run takes from the environment.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The agent binary to start.
pub fn binary() -> PathBuf {
    std::env::var_os("SLUICE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sluice")))
}

/// Starts `sluice run -c <config>` (warnings only on its stderr, stdout discarded).
pub fn start(config: &Path) -> Child {
    Command::new(binary())
        .args(["run", "-c"])
        .arg(config)
        .env("SLUICE_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start sluice")
}

/// Config keys from the environment variable `name` (one a line, e.g.
/// `SLUICE_BENCH_LOKI='batch: { max_events: 1000 }'`), each indented by `indent` to sit
/// inside the bench's YAML; empty when unset.
pub fn extra_keys(name: &str, indent: &str) -> String {
    std::env::var(name)
        .unwrap_or_default()
        .lines()
        .map(|line| format!("{indent}{line}\n"))
        .collect()
}

/// The number in environment variable `name`, else `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
