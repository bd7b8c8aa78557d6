//! The `sluice` command: `run`, `validate`, `test`, `tap`, `buffer inspect`, `--version`.

mod cli;

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
    /// `NO_COLOR`) or `json` (one object per line). Also `SLUICE_LOG_FORMAT`; without
    /// either, the config's `log_format:` (default `text`).
    #[arg(long, global = true, env = "SLUICE_LOG_FORMAT")]
    log_format: Option<LogFormat>,
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
    /// Run the config's unit tests: input events through a pipeline's transforms, the
    /// output checked against the expected events; exit 1 when one fails.
    Test {
        /// Config file (YAML); its `tests:` run.
        #[arg(short, long)]
        config: PathBuf,
        /// Files of more tests (each a YAML file with a `tests:` list).
        tests: Vec<PathBuf>,
    },
    /// Print the events passing through a running agent, as JSON lines (its API's
    /// `GET /tap`; loopback, or `--token`). Events this reader is too slow for are
    /// skipped and counted, never slowing the agent.
    Tap {
        /// The agent's API address.
        #[arg(long, env = "SLUICE_API_ADDRESS", default_value = "127.0.0.1:8686")]
        api: String,
        /// Read the API address (and `api.reload_token`) from this config instead.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// `Authorization: Bearer` token (`api.reload_token`) for an API not on loopback.
        #[arg(long, env = "SLUICE_API_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Only this pipeline.
        #[arg(short, long)]
        pipeline: Option<String>,
        /// Only this component: a source's id (events entering the transforms), a
        /// transform's (its output) or a sink's (what it takes). Default: what every sink
        /// takes.
        #[arg(long)]
        component: Option<String>,
        /// Stop after this many events.
        #[arg(short = 'n', long)]
        limit: Option<u64>,
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
    // The agent logs what it does; the tools only what goes wrong.
    let level = match cli.command {
        Command::Run { .. } | Command::Validate { .. } => "info",
        Command::Test { .. } | Command::Tap { .. } | Command::Buffer { .. } => "warn",
    };
    let format = cli.log_format.unwrap_or_else(|| {
        let path = match &cli.command {
            Command::Run { config } => config.as_deref(),
            Command::Validate { config } | Command::Test { config, .. } => Some(config.as_path()),
            Command::Tap { .. } | Command::Buffer { .. } => None,
        };
        match path.and_then(sluice::config::log_format_of) {
            Some(sluice::config::LogFormat::Json) => LogFormat::Json,
            _ => LogFormat::Text,
        }
    });
    init_logging(format, level);
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
        Command::Test { config, tests } => match cli::test::run(&config, &tests) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(error) => Err(error),
        },
        Command::Tap {
            api,
            config,
            token,
            pipeline,
            component,
            limit,
        } => cli::tap::run(cli::tap::Options {
            api,
            config,
            token,
            pipeline,
            component,
            limit,
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

/// The agent's log lines go to stderr, filtered by `SLUICE_LOG` (default `level`).
fn init_logging(format: LogFormat, level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
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
