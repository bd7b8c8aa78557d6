//! The `sluice` command: `run`, `validate`, `buffer inspect`, `--version`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Events are allocated on source threads and freed on sink threads; glibc's malloc pays
/// heavily for such cross-thread frees (measured with perf: 25% of the bare pipeline in
/// malloc/_int_free), mimalloc does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use sluice::agent::{self, ConfigSource};

/// sluice: a small, fast log-and-metrics agent.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// The agent's own log lines: `text` (colours only on a terminal, never with
    /// `NO_COLOR`) or `json` (one object per line). Also `SLUICE_LOG_FORMAT`.
    #[arg(long, global = true, env = "SLUICE_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (with no -c: the embedded default pipeline).
    Run {
        /// Config file (YAML).
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Build every component of a config and start nothing; exit 1 listing every error
    /// found if it does not build.
    Validate {
        /// Config file (YAML).
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Look into a sink's disk buffer (without starting the agent).
    Buffer {
        #[command(subcommand)]
        command: BufferCommand,
    },
}

#[derive(Subcommand)]
enum BufferCommand {
    /// Report a disk buffer's segments, records, events and damage (read only).
    Inspect {
        /// The buffer's directory: `<data_dir>/buffers/<pipeline>/<sink>`.
        dir: PathBuf,
    },
}

/// `sluice buffer ...`.
fn buffer_command(command: BufferCommand) -> anyhow::Result<()> {
    match command {
        BufferCommand::Inspect { dir } => {
            print!("{}", sluice::buffer::inspect::report(&dir)?);
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Run { config } => {
            agent::run(config.map_or(ConfigSource::Embedded, ConfigSource::File))
        }
        Command::Buffer { command } => buffer_command(command),
        Command::Validate { config } => {
            ConfigSource::File(config.clone())
                .load()
                .map(|(_, pipelines)| {
                    println!("{}: ok ({} pipelines)", config.display(), pipelines.len());
                })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The agent's log lines go to stderr, filtered by `SLUICE_LOG` (default `info`).
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder.with_ansi(colour).init();
        }
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_ansi(false)
            .init(),
    }
}
