//! The `sluice` command: `run`, `validate`, `test`, `tap`, `buffer inspect`, `--version`.

mod cli;

use std::process::ExitCode;

use cli::args::{Command, LogFormat, Parsed};

/// Events are allocated on source threads and freed on sink threads; glibc's malloc pays
/// heavily for such cross-thread frees (measured with perf: 25% of the bare pipeline in
/// malloc/_int_free), mimalloc does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use sluice::agent::{self, ConfigSource};

fn main() -> ExitCode {
    let parsed = cli::args::parse(std::env::args_os().skip(1), |name| std::env::var(name).ok());
    let cli = match parsed {
        Ok(Parsed::Run(cli)) => cli,
        Ok(Parsed::Help(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("{}", cli::args::version());
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    // The agent logs what it does; the tools only what goes wrong.
    let level = match cli.command {
        Command::Run { .. } | Command::Validate { .. } => "info",
        Command::Test { .. }
        | Command::Tap(_)
        | Command::Reload(_)
        | Command::BufferInspect { .. } => "warn",
    };
    let format = cli.log_format.unwrap_or_else(|| {
        let path = match &cli.command {
            Command::Run { config } => config.as_deref(),
            Command::Validate { config } | Command::Test { config, .. } => Some(config.as_path()),
            Command::Tap(_) | Command::Reload(_) | Command::BufferInspect { .. } => None,
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
        Command::BufferInspect { dir } => sluice::buffer::inspect::report(&dir).map(|report| {
            print!("{report}");
        }),
        Command::Validate { config } => {
            ConfigSource::File(config.clone())
                .load()
                .map(|(_, pipelines)| {
                    for warning in pipelines.iter().filter_map(|p| p.unsent_warning()) {
                        eprintln!("warning: {warning}");
                    }
                    println!("{}: ok ({} pipelines)", config.display(), pipelines.len());
                })
        }
        Command::Test { config, tests } => match cli::test::run(&config, &tests) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(error) => Err(error),
        },
        Command::Tap(options) => cli::tap::run(options),
        Command::Reload(target) => cli::reload::run(target),
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
