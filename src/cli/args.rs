//! The command line: `sluice [--log-format F] <run|validate|test|tap|reload|buffer inspect> ...`,
//! `--help` (also `help [COMMAND]`) and `--version`, parsed with `lexopt` and the help text
//! written here. clap did the same for 0.35 MB of the binary (`cargo bloat`, see
//! docs/decisions.md); the agent's footprint goal is a few megabytes.
//!
//! Owns: argument syntax, the environment fallbacks (`SLUICE_LOG_FORMAT`,
//! `SLUICE_API_ADDRESS`, `SLUICE_API_TOKEN`), help and usage errors. Never: what a command does.

use std::ffi::OsString;
use std::path::PathBuf;

use lexopt::prelude::*;

use super::{api, tap};

/// The agent's own log line format (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured only on a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// A parsed command line.
pub struct Cli {
    /// `--log-format` or `SLUICE_LOG_FORMAT`; `None`: the config's `log_format:`.
    pub log_format: Option<LogFormat>,
    /// What to do.
    pub command: Command,
}

/// The subcommands.
pub enum Command {
    /// Run the agent (no config: the embedded default pipeline).
    Run {
        /// `-c`.
        config: Option<PathBuf>,
    },
    /// Build a config's every component and start nothing.
    Validate {
        /// `-c`.
        config: PathBuf,
    },
    /// Run a config's unit tests.
    Test {
        /// `-c`.
        config: PathBuf,
        /// More files of tests.
        tests: Vec<PathBuf>,
    },
    /// Print the events passing through a running agent.
    Tap(tap::Options),
    /// Ask a running agent to re-read its config.
    Reload(api::Target),
    /// Report a disk buffer's segments (`buffer inspect DIR`).
    BufferInspect {
        /// The buffer's directory.
        dir: PathBuf,
    },
}

/// What the command line asks for.
pub enum Parsed {
    /// Do this.
    Run(Cli),
    /// Print this help text and exit 0.
    Help(String),
    /// Print the version and exit 0.
    Version,
}

/// A usage error: print it with the usage line, exit 2.
#[derive(Debug, PartialEq, Eq)]
pub struct UsageError {
    /// What is wrong.
    pub message: String,
    /// The usage line of the command concerned.
    pub usage: &'static str,
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "error: {}\n\nUsage: {}\n\nFor more information, try '--help'.",
            self.message, self.usage
        )
    }
}

const VERSION: &str = concat!("sluice ", env!("CARGO_PKG_VERSION"));

/// `sluice --version`.
pub fn version() -> &'static str {
    VERSION
}

const MAIN_USAGE: &str = "sluice [OPTIONS] <COMMAND>";

const MAIN_HELP: &str = "\
sluice: a small, fast log-and-metrics agent.

Usage: sluice [OPTIONS] <COMMAND>

Commands:
  run       Run the agent (with no -c: the embedded default pipeline)
  validate  Build every component of a config and start nothing; exit 1 listing every
            error found if it does not build
  test      Run the config's unit tests: input events through a pipeline's transforms,
            the output checked against the expected events; exit 1 when one fails
  tap       Print the events passing through a running agent, as JSON lines
  reload    Ask a running agent to re-read its config (as SIGHUP does); exit 1 when it
            refuses the new config
  buffer    Look into a sink's disk buffer (without starting the agent)
  help      Print this message or the help of the given command

Options:
      --log-format <FORMAT>  The agent's own log lines: `text` (colours only on a terminal,
                             never with `NO_COLOR`) or `json` (one object per line)
                             [env: SLUICE_LOG_FORMAT=] [default: the config's `log_format:`,
                             else text]
  -h, --help                 Print help
  -V, --version              Print version
";

/// One subcommand's name, usage line and help text.
struct Help {
    name: &'static str,
    usage: &'static str,
    text: &'static str,
}

const HELPS: &[Help] = &[
    Help {
        name: "run",
        usage: "sluice run [OPTIONS]",
        text: "\
Run the agent (with no -c: the embedded default pipeline).

Usage: sluice run [OPTIONS]

Options:
  -c, --config <CONFIG>      Config file (YAML)
      --log-format <FORMAT>  `text` or `json` [env: SLUICE_LOG_FORMAT=]
  -h, --help                 Print help
",
    },
    Help {
        name: "validate",
        usage: "sluice validate --config <CONFIG>",
        text: "\
Build every component of a config and start nothing; exit 1 listing every error found if
it does not build.

Usage: sluice validate --config <CONFIG>

Options:
  -c, --config <CONFIG>      Config file (YAML)
      --log-format <FORMAT>  `text` or `json` [env: SLUICE_LOG_FORMAT=]
  -h, --help                 Print help
",
    },
    Help {
        name: "test",
        usage: "sluice test --config <CONFIG> [TESTS]...",
        text: "\
Run the config's unit tests: input events through a pipeline's transforms, the output
checked against the expected events; exit 1 when one fails.

Usage: sluice test --config <CONFIG> [TESTS]...

Arguments:
  [TESTS]...  Files of more tests (each a YAML file with a `tests:` list)

Options:
  -c, --config <CONFIG>      Config file (YAML); its `tests:` run
      --log-format <FORMAT>  `text` or `json` [env: SLUICE_LOG_FORMAT=]
  -h, --help                 Print help
",
    },
    Help {
        name: "tap",
        usage: "sluice tap [OPTIONS]",
        text: "\
Print the events passing through a running agent, as JSON lines (its API's `GET /tap`;
loopback, or `--token`). Events this reader is too slow for are skipped and counted, never
slowing the agent.

Usage: sluice tap [OPTIONS]

Options:
      --api <API>              The agent's API address [env: SLUICE_API_ADDRESS=]
                               [default: 127.0.0.1:8686]
  -c, --config <CONFIG>        Read the API address (and `api.reload_token`) from this
                               config instead
      --token <TOKEN>          `Authorization: Bearer` token (`api.reload_token`) for an
                               API not on loopback [env: SLUICE_API_TOKEN]
  -p, --pipeline <PIPELINE>    Only this pipeline
      --component <COMPONENT>  Only this component: a source's id (events entering the
                               transforms), a transform's (its output) or a sink's (what it
                               takes). Default: what every sink takes
  -n, --limit <LIMIT>          Stop after this many events
      --log-format <FORMAT>    `text` or `json` [env: SLUICE_LOG_FORMAT=]
  -h, --help                   Print help
",
    },
    Help {
        name: "reload",
        usage: "sluice reload [OPTIONS]",
        text: "\
Ask a running agent to re-read its config (its API's `POST /reload`, as SIGHUP does;
loopback, or `--token`). Exit 0 when the agent applied it; exit 1 with the agent's reason
when it refused the new config (the running pipelines keep going) or could not be reached.

Usage: sluice reload [OPTIONS]

Options:
      --api <API>            The agent's API address [env: SLUICE_API_ADDRESS=]
                             [default: 127.0.0.1:8686]
  -c, --config <CONFIG>      Read the API address (and `api.reload_token`) from this config
                             instead
      --token <TOKEN>        `Authorization: Bearer` token (`api.reload_token`) for an API
                             not on loopback [env: SLUICE_API_TOKEN]
      --log-format <FORMAT>  `text` or `json` [env: SLUICE_LOG_FORMAT=]
  -h, --help                 Print help
",
    },
    Help {
        name: "buffer",
        usage: "sluice buffer inspect <DIR>",
        text: "\
Look into a sink's disk buffer (without starting the agent).

Usage: sluice buffer inspect <DIR>

Commands:
  inspect  Report a disk buffer's segments, records, events and damage (read only)

Arguments:
  <DIR>  The buffer's directory: `<data_dir>/buffers/<pipeline>/<sink>`

Options:
  -h, --help  Print help
",
    },
];

fn help_of(name: &str) -> Option<&'static Help> {
    HELPS.iter().find(|help| help.name == name)
}

/// Parses the arguments after the program name; `env` reads an environment variable.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Parsed, UsageError> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut log_format = None;
    let mut usage = MAIN_USAGE;
    let error = |usage: &'static str, message: String| UsageError { message, usage };
    // Options before the subcommand.
    let name = loop {
        match parser.next().map_err(|e| error(usage, e.to_string()))? {
            Some(Long("log-format")) => log_format = Some(format_value(&mut parser, usage)?),
            Some(Short('h') | Long("help")) => return Ok(Parsed::Help(MAIN_HELP.to_owned())),
            Some(Short('V') | Long("version")) => return Ok(Parsed::Version),
            Some(Value(value)) => break string(value, usage)?,
            Some(other) => return Err(error(usage, other.unexpected().to_string())),
            None => return Err(error(usage, "a command is required".to_owned())),
        }
    };
    if name == "help" {
        return match parser.next().map_err(|e| error(usage, e.to_string()))? {
            None => Ok(Parsed::Help(MAIN_HELP.to_owned())),
            Some(Value(value)) => {
                let name = string(value, usage)?;
                help_of(&name)
                    .map(|help| Parsed::Help(help.text.to_owned()))
                    .ok_or_else(|| error(usage, format!("unrecognized subcommand '{name}'")))
            }
            Some(other) => Err(error(usage, other.unexpected().to_string())),
        };
    }
    let help =
        help_of(&name).ok_or_else(|| error(usage, format!("unrecognized subcommand '{name}'")))?;
    usage = help.usage;
    let mut words = Words::default();
    while let Some(arg) = parser.next().map_err(|e| error(usage, e.to_string()))? {
        match arg {
            Short('h') | Long("help") => return Ok(Parsed::Help(help.text.to_owned())),
            Long("log-format") => log_format = Some(format_value(&mut parser, usage)?),
            Value(value) => words.positional.push(value),
            Short(c) => {
                let given = format!("-{c}");
                words.option(given, &name, &mut parser, usage)?;
            }
            Long(option) => {
                let given = format!("--{option}");
                words.option(given, &name, &mut parser, usage)?;
            }
        }
    }
    if log_format.is_none() {
        if let Some(text) = env("SLUICE_LOG_FORMAT") {
            log_format = Some(format_of(&text, usage)?);
        }
    }
    let command = words.command(&name, usage, env)?;
    Ok(Parsed::Run(Cli {
        log_format,
        command,
    }))
}

/// The options and arguments given to a subcommand, before they are checked against it.
#[derive(Default)]
struct Words {
    options: Vec<(&'static str, OsString)>,
    positional: Vec<OsString>,
}

/// Every option a subcommand may take: (short, long, the commands that take it).
const OPTIONS: &[(&str, &str, &[&str])] = &[
    (
        "-c",
        "--config",
        &["run", "validate", "test", "tap", "reload"],
    ),
    ("", "--api", &["tap", "reload"]),
    ("", "--token", &["tap", "reload"]),
    ("-p", "--pipeline", &["tap"]),
    ("", "--component", &["tap"]),
    ("-n", "--limit", &["tap"]),
];

impl Words {
    /// The long name of option `given` if subcommand `command` takes it (once).
    fn known(
        &self,
        given: &str,
        command: &str,
        usage: &'static str,
    ) -> Result<&'static str, UsageError> {
        let known = OPTIONS.iter().find(|(short, long, commands)| {
            (given == *short || given == *long) && commands.contains(&command)
        });
        let Some((_, long, _)) = known else {
            return Err(UsageError {
                message: format!("unexpected argument '{given}' found"),
                usage,
            });
        };
        if self.options.iter().any(|(name, _)| name == long) {
            return Err(UsageError {
                message: format!("the argument '{long}' cannot be used multiple times"),
                usage,
            });
        }
        Ok(long)
    }

    /// Takes option `given` of subcommand `command` and its value.
    fn option(
        &mut self,
        given: String,
        command: &str,
        parser: &mut lexopt::Parser,
        usage: &'static str,
    ) -> Result<(), UsageError> {
        let long = self.known(&given, command, usage)?;
        let value = parser.value().map_err(|e| UsageError {
            message: e.to_string(),
            usage,
        })?;
        self.options.push((long, value));
        Ok(())
    }

    fn take(&mut self, long: &str) -> Option<OsString> {
        let index = self.options.iter().position(|(name, _)| *name == long)?;
        Some(self.options.remove(index).1)
    }

    fn command(
        mut self,
        name: &str,
        usage: &'static str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Command, UsageError> {
        let error = |message: String| UsageError { message, usage };
        let config = self.take("--config").map(PathBuf::from);
        let required = |config: Option<PathBuf>| {
            config.ok_or_else(|| error("the argument '--config <CONFIG>' is required".into()))
        };
        let no_positional = |words: &Words| match words.positional.first() {
            Some(extra) => Err(error(format!(
                "unexpected argument '{}' found",
                extra.to_string_lossy()
            ))),
            None => Ok(()),
        };
        Ok(match name {
            "run" => {
                no_positional(&self)?;
                Command::Run { config }
            }
            "validate" => {
                no_positional(&self)?;
                Command::Validate {
                    config: required(config)?,
                }
            }
            "test" => Command::Test {
                config: required(config)?,
                tests: self.positional.drain(..).map(PathBuf::from).collect(),
            },
            "tap" => {
                no_positional(&self)?;
                Command::Tap(self.tap(config, usage, env)?)
            }
            "reload" => {
                no_positional(&self)?;
                Command::Reload(self.target(config, usage, env)?)
            }
            _ => Command::BufferInspect {
                dir: self.buffer_inspect(usage)?,
            },
        })
    }

    /// The agent's API (`--api`, `--token`, `-c`), with `SLUICE_API_ADDRESS` and
    /// `SLUICE_API_TOKEN` as fallbacks.
    fn target(
        &mut self,
        config: Option<PathBuf>,
        usage: &'static str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<api::Target, UsageError> {
        let api = match self.take("--api") {
            Some(value) => string(value, usage)?,
            None => env("SLUICE_API_ADDRESS").unwrap_or_else(|| "127.0.0.1:8686".into()),
        };
        let token = match self.take("--token") {
            Some(value) => Some(string(value, usage)?),
            None => env("SLUICE_API_TOKEN"),
        };
        Ok(api::Target { api, config, token })
    }

    /// `tap`'s options.
    fn tap(
        mut self,
        config: Option<PathBuf>,
        usage: &'static str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<tap::Options, UsageError> {
        let error = |message: String| UsageError { message, usage };
        let target = self.target(config, usage, env)?;
        let pipeline = self
            .take("--pipeline")
            .map(|v| string(v, usage))
            .transpose()?;
        let component = self
            .take("--component")
            .map(|v| string(v, usage))
            .transpose()?;
        let limit =
            match self.take("--limit") {
                Some(value) => Some(string(value, usage)?.parse().map_err(|_| {
                    error("invalid value for '--limit <LIMIT>': not a number".into())
                })?),
                None => None,
            };
        Ok(tap::Options {
            target,
            pipeline,
            component,
            limit,
        })
    }

    /// `buffer inspect DIR`: the directory.
    fn buffer_inspect(self, usage: &'static str) -> Result<PathBuf, UsageError> {
        let error = |message: String| UsageError { message, usage };
        let mut words = self.positional.into_iter();
        let sub = words
            .next()
            .ok_or_else(|| error("a subcommand is required: inspect".into()))?;
        if sub != "inspect" {
            let sub = sub.to_string_lossy();
            return Err(error(format!("unrecognized subcommand '{sub}'")));
        }
        let dir = words
            .next()
            .ok_or_else(|| error("the argument '<DIR>' is required".into()))?;
        if let Some(extra) = words.next() {
            let extra = extra.to_string_lossy();
            return Err(error(format!("unexpected argument '{extra}' found")));
        }
        Ok(PathBuf::from(dir))
    }
}

fn string(value: OsString, usage: &'static str) -> Result<String, UsageError> {
    value.into_string().map_err(|value| UsageError {
        message: format!("invalid UTF-8 in '{}'", value.to_string_lossy()),
        usage,
    })
}

fn format_value(parser: &mut lexopt::Parser, usage: &'static str) -> Result<LogFormat, UsageError> {
    let value = parser.value().map_err(|e| UsageError {
        message: e.to_string(),
        usage,
    })?;
    format_of(&string(value, usage)?, usage)
}

fn format_of(text: &str, usage: &'static str) -> Result<LogFormat, UsageError> {
    match text {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(UsageError {
            message: format!(
                "invalid value '{other}' for '--log-format <FORMAT>'\n  [possible values: text, json]"
            ),
            usage,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Parsed, UsageError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(args.iter().map(OsString::from), move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn cli(args: &[&str]) -> Cli {
        match parse_with(args, &[]) {
            Ok(Parsed::Run(cli)) => cli,
            Ok(_) => panic!("{args:?}: help or version"),
            Err(error) => panic!("{args:?}: {error}"),
        }
    }

    fn usage_error(args: &[&str]) -> String {
        match parse_with(args, &[]) {
            Err(error) => error.to_string(),
            Ok(_) => panic!("{args:?} parsed"),
        }
    }

    #[test]
    fn subcommands_and_their_options() {
        assert!(matches!(
            cli(&["run"]).command,
            Command::Run { config: None }
        ));
        for args in [
            &["run", "-c", "a.yaml"][..],
            &["run", "--config", "a.yaml"],
            &["run", "--config=a.yaml"],
            &["run", "-ca.yaml"],
            &["run", "-c=a.yaml"],
        ] {
            let Command::Run { config: Some(path) } = cli(args).command else {
                panic!("{args:?}");
            };
            assert_eq!(path, PathBuf::from("a.yaml"), "{args:?}");
        }
        let Command::Test { config, tests } = cli(&["test", "t1", "-c", "a", "t2"]).command else {
            panic!();
        };
        assert_eq!(
            (config, tests),
            ("a".into(), vec!["t1".into(), "t2".into()])
        );
        let Command::BufferInspect { dir } = cli(&["buffer", "inspect", "/d"]).command else {
            panic!();
        };
        assert_eq!(dir, PathBuf::from("/d"));
        assert!(matches!(
            cli(&["validate", "-c", "x"]).command,
            Command::Validate { .. }
        ));
    }

    #[test]
    fn tap_options_and_environment() {
        let Command::Tap(options) = cli(&["tap", "-n", "5", "-p", "p", "--component=s"]).command
        else {
            panic!();
        };
        assert_eq!(options.target.api, "127.0.0.1:8686");
        assert_eq!(options.limit, Some(5));
        assert_eq!(options.pipeline.as_deref(), Some("p"));
        assert_eq!(options.component.as_deref(), Some("s"));
        let env = [
            ("SLUICE_API_ADDRESS", "10.0.0.1:1"),
            ("SLUICE_API_TOKEN", "t"),
        ];
        let Ok(Parsed::Run(Cli {
            command: Command::Tap(options),
            ..
        })) = parse_with(&["tap"], &env)
        else {
            panic!();
        };
        assert_eq!(
            (options.target.api.as_str(), options.target.token.as_deref()),
            ("10.0.0.1:1", Some("t"))
        );
        // The command line wins over the environment.
        let Ok(Parsed::Run(Cli {
            command: Command::Tap(options),
            ..
        })) = parse_with(&["tap", "--api", "h:2"], &env)
        else {
            panic!();
        };
        assert_eq!(options.target.api, "h:2");
    }

    #[test]
    fn log_format_anywhere_and_from_the_environment() {
        assert_eq!(cli(&["run"]).log_format, None);
        assert_eq!(
            cli(&["--log-format", "json", "run"]).log_format,
            Some(LogFormat::Json)
        );
        assert_eq!(
            cli(&["run", "--log-format=text"]).log_format,
            Some(LogFormat::Text)
        );
        let parsed = parse_with(&["run"], &[("SLUICE_LOG_FORMAT", "json")]);
        assert!(matches!(
            parsed,
            Ok(Parsed::Run(Cli {
                log_format: Some(LogFormat::Json),
                ..
            }))
        ));
        let parsed = parse_with(
            &["run", "--log-format", "text"],
            &[("SLUICE_LOG_FORMAT", "json")],
        );
        assert!(matches!(
            parsed,
            Ok(Parsed::Run(Cli {
                log_format: Some(LogFormat::Text),
                ..
            }))
        ));
        assert!(
            usage_error(&["--log-format", "xml", "run"]).contains("possible values: text, json")
        );
        let bad_env = parse_with(&["run"], &[("SLUICE_LOG_FORMAT", "yaml")]);
        assert!(bad_env.is_err());
    }

    #[test]
    fn help_and_version() {
        for args in [&["--help"][..], &["-h"], &["help"]] {
            let Ok(Parsed::Help(text)) = parse_with(args, &[]) else {
                panic!("{args:?}");
            };
            assert!(text.contains("Commands:") && text.contains("tap"), "{text}");
        }
        for args in [
            &["run", "--help"][..],
            &["help", "run"],
            &["run", "-c", "x", "-h"],
        ] {
            let Ok(Parsed::Help(text)) = parse_with(args, &[]) else {
                panic!("{args:?}");
            };
            assert!(text.contains("--config"), "{text}");
        }
        assert!(matches!(parse_with(&["-V"], &[]), Ok(Parsed::Version)));
        assert!(matches!(
            parse_with(&["--version"], &[]),
            Ok(Parsed::Version)
        ));
        assert!(version().contains(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn usage_errors_name_the_problem() {
        assert!(usage_error(&[]).contains("a command is required"));
        assert!(usage_error(&["frobnicate"]).contains("unrecognized subcommand 'frobnicate'"));
        assert!(usage_error(&["validate"]).contains("'--config <CONFIG>' is required"));
        assert!(usage_error(&["run", "--token", "x"]).contains("unexpected argument '--token'"));
        assert!(usage_error(&["run", "extra"]).contains("unexpected argument 'extra'"));
        assert!(usage_error(&["run", "-c"]).contains("missing argument"));
        assert!(usage_error(&["run", "-c", "a", "-c", "b"]).contains("multiple times"));
        assert!(usage_error(&["tap", "-n", "many"]).contains("--limit"));
        assert!(usage_error(&["buffer"]).contains("inspect"));
        assert!(usage_error(&["buffer", "inspect"]).contains("'<DIR>' is required"));
        assert!(usage_error(&["buffer", "wipe", "x"]).contains("unrecognized subcommand 'wipe'"));
        assert!(usage_error(&["help", "nope"]).contains("unrecognized subcommand"));
        let text = usage_error(&["validate"]);
        assert!(
            text.contains("Usage: sluice validate --config <CONFIG>"),
            "{text}"
        );
    }
}
