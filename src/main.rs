//! The `sluice` command: `run`, `validate`, `--version`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice::agent::{self, ConfigSource};

/// sluice: a small, fast log-and-metrics agent.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (with no -c: the embedded default pipeline).
    Run {
        /// Config file (YAML).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Build every component of a config and start nothing; exit 1 with the error if it
    /// does not build.
    Validate {
        /// Config file (YAML).
        #[arg(short, long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let result = match cli.command {
        Command::Run { config } => agent::run(config.map_or(ConfigSource::Embedded, ConfigSource::File)),
        Command::Validate { config } => ConfigSource::File(config.clone()).load().map(|(_, pipelines)| {
            println!("{}: ok ({} pipelines)", config.display(), pipelines.len());
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
