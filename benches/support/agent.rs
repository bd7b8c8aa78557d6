//! Which agent binary the end-to-end benches run: `SLUICE_BIN` when set (e.g. an older
//! build, for an A/B comparison), else the one Cargo built for the bench.

use std::path::PathBuf;

/// The agent binary to start.
pub fn binary() -> PathBuf {
    std::env::var_os("SLUICE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sluice")))
}
