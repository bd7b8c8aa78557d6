//! Which agent binary the end-to-end benches run: `SLUICE_BIN` when set (e.g. an older
//! build, for an A/B comparison), else the one Cargo built for the bench; and starting it.
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
