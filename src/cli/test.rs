//! `sluice test -c CONFIG [TESTS...]`: runs the config's unit tests (its `tests:` and those
//! of the files named) and reports each; exit status 1 when one fails. The format is in
//! [`sluice::unit_test`].

use std::path::{Path, PathBuf};

use sluice::{config, unit_test};

/// Whether every test passed; `Err` when they could not run (the config does not build).
pub fn run(config_path: &Path, files: &[PathBuf]) -> anyhow::Result<bool> {
    let (config, name) = config::load(config_path)?;
    let mut tests = config.tests.clone();
    for file in files {
        tests.extend(sluice::config::test_cases::load_file(file)?);
    }
    let summary = unit_test::run(&config, &name, &tests, &mut std::io::stdout().lock())?;
    Ok(summary.failed == 0)
}
