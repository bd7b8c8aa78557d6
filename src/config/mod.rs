//! The configuration file: its shape (these names are the user interface) and how it is
//! turned into validated runtime values before anything starts.
//!
//! ```yaml
//! data_dir: /var/lib/sluice        # checkpoints and dead letters
//! api: { address: 127.0.0.1:8686 } # /health, /metrics, /reload
//! pipelines:
//!   <name>:
//!     sources:    [ { type: ..., ... } ]
//!     transforms: [ { type: ..., ... } ]   # optional, in order
//!     sinks:      [ { type: ..., ... } ]
//! ```
//!
//! Owns: the top-level config types and loading (with [`yaml`]); building every component
//! (a config builds completely or is refused with errors that name the file, line and key)
//! is in `build.rs`. Never: starts anything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

use crate::bounds;
use crate::route::Routed;
use crate::sink::SinkConfig;
use crate::source::SourceConfig;
use crate::transform::TransformConfig;
use crate::yaml::{self, Named};

mod build;
pub mod test_cases;

pub use self::build::{shared_listeners, Built, BuiltPipeline};

/// The embedded default pipeline, run by `sluice run` without `-c`.
pub const DEFAULT_CONFIG: &str = include_str!("../../pipelines/default.yaml");
/// The name shown in errors for [`DEFAULT_CONFIG`].
pub const DEFAULT_CONFIG_NAME: &str = "<embedded default>";

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for checkpoints, the dead-letter file and the lock that keeps one agent per
    /// directory (created if missing). Not empty (`${DATA_DIR:-}` with the variable unset
    /// would put the lock in the working directory and every checkpoint write would fail).
    #[serde(deserialize_with = "bounds::non_empty_path")]
    pub data_dir: PathBuf,
    /// The agent's own log lines: `text` (colours only on a terminal) or `json` (one object
    /// per line). Read at start (a reload keeps the format the agent started with);
    /// `--log-format` and `SLUICE_LOG_FORMAT` override it.
    #[serde(default)]
    pub log_format: Option<LogFormat>,
    /// The agent's HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
    /// Worker threads: transform workers per pipeline and async runtime threads. `1` runs
    /// everything on one core (current-thread runtime, one worker). Default: CPU count.
    #[serde(
        default,
        deserialize_with = "bounds::within_opt::<_, _, 1, { bounds::MAX_THREADS as u64 }>"
    )]
    pub threads: Option<NonZeroUsize>,
    /// How long a clean shutdown may take to drain and flush sinks, in seconds.
    #[serde(
        default = "default_shutdown_timeout_secs",
        deserialize_with = "bounds::within::<_, _, 0, { bounds::MAX_SHUTDOWN_SECS }>"
    )]
    pub shutdown_timeout_secs: u64,
    /// Cap on the dead-letter file, in bytes (one older file of the same size is kept).
    #[serde(
        default = "default_dead_letter_max_bytes",
        deserialize_with = "bounds::within::<_, _, 1024, { bounds::MAX_DEAD_LETTER_BYTES }>"
    )]
    pub dead_letter_max_bytes: u64,
    /// How often delivered read positions are written to the checkpoint file, in
    /// milliseconds (only when something was delivered since the last write). After a
    /// `kill -9` or power loss, at most this much delivered data is read and sent again.
    /// The writer backs off on its own so that encoding positions never takes more than a
    /// tenth of a core (thousands of files). Raise it on flash storage that must not be
    /// written often.
    #[serde(
        default = "default_checkpoint_interval_ms",
        deserialize_with = "bounds::within::<_, _, 10, { bounds::MAX_MS }>"
    )]
    pub checkpoint_interval_ms: u64,
    /// Named pipelines, each `sources → transforms → sinks`.
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// Unit tests of the pipelines' transforms, run by `sluice test` (`run` ignores them).
    #[serde(default)]
    pub tests: Vec<test_cases::TestConfig>,
}

fn default_shutdown_timeout_secs() -> u64 {
    10
}

fn default_checkpoint_interval_ms() -> u64 {
    100
}

fn default_dead_letter_max_bytes() -> u64 {
    crate::dead_letter::DEFAULT_MAX_BYTES
}

/// The format of the agent's own log lines (`log_format:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines; ANSI colours only when stderr is a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// The `log_format:` of a config file, if the file reads as a config and sets one (the
/// agent's logging starts before the config is loaded; an unreadable file is reported by
/// the load that follows).
pub fn log_format_of(path: &std::path::Path) -> Option<LogFormat> {
    let text = std::fs::read_to_string(path).ok()?;
    parse(&text, &path.display().to_string()).ok()?.log_format
}

/// `api:` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Listen address for `/health`, `/metrics` and `/reload`.
    #[serde(default = "default_api_address")]
    pub address: SocketAddr,
    /// `false` disables the API.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A sink with queued data and no progress for this long makes `/health` fail.
    #[serde(
        default = "default_stall_after_secs",
        deserialize_with = "bounds::within::<_, _, 1, { bounds::MAX_SECS }>"
    )]
    pub stall_after_secs: u64,
    /// Lets `POST /reload` and `GET /tap` (the privileged endpoints) be called from
    /// addresses other than loopback, with `Authorization: Bearer <token>`. Unset (default):
    /// they answer only to `127.0.0.1` / `::1` peers, whatever `address` is.
    #[serde(default)]
    pub reload_token: Option<String>,
    /// Most API connections open at once; more are closed at once. Default 64.
    #[serde(
        default = "default_api_max_connections",
        deserialize_with = "bounds::within::<_, _, 1, 4096>"
    )]
    pub max_connections: usize,
    /// A connection that has not sent a request's headers within this many seconds is
    /// closed (slow-header clients). Default 10.
    #[serde(
        default = "default_header_timeout_secs",
        deserialize_with = "bounds::within::<_, _, 1, 3600>"
    )]
    pub header_timeout_secs: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            address: default_api_address(),
            enabled: true,
            stall_after_secs: default_stall_after_secs(),
            reload_token: None,
            max_connections: default_api_max_connections(),
            header_timeout_secs: default_header_timeout_secs(),
        }
    }
}

fn default_api_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8686))
}

fn default_true() -> bool {
    true
}

fn default_stall_after_secs() -> u64 {
    30
}

fn default_api_max_connections() -> usize {
    64
}

fn default_header_timeout_secs() -> u64 {
    10
}

/// One pipeline.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Where events come from (at least one).
    pub sources: Vec<Named<SourceConfig>>,
    /// Applied in order to every event.
    #[serde(default)]
    pub transforms: Vec<Named<TransformConfig>>,
    /// Every event goes to every sink that takes its kind (at least one), unless the
    /// sink's `condition:` picks some ([`crate::route`]).
    pub sinks: Vec<Named<Routed<SinkConfig>>>,
    /// Capacity, in batches, of each worker's and each sink's input queue.
    #[serde(
        default = "default_queue_batches",
        deserialize_with = "bounds::within::<_, _, 1, { bounds::MAX_QUEUE_BATCHES as u64 }>"
    )]
    pub queue_batches: NonZeroUsize,
}

impl PipelineConfig {
    /// True when both build the same pipeline: equal apart from the lines their components
    /// were written on. A reload keeps such a pipeline running untouched. (Files a component
    /// only names, like TLS certificates, are not compared.)
    pub fn same_settings(&self, other: &PipelineConfig) -> bool {
        fn same<T: PartialEq>(a: &[Named<T>], b: &[Named<T>]) -> bool {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| x.name == y.name && x.config == y.config)
        }
        same(&self.sources, &other.sources)
            && same(&self.transforms, &other.transforms)
            && same(&self.sinks, &other.sinks)
            && self.queue_batches == other.queue_batches
    }
}

/// 2: measured on file -> Loki (sink slower than the file, static build), 8 peaked at
/// 29-36 MiB, 4 at 25.7-32.4 and 2 at 22.5-28.5, with the same throughput.
fn default_queue_batches() -> NonZeroUsize {
    NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN)
}

/// Reads and parses a config file (no building).
pub fn load(path: &Path) -> anyhow::Result<(Config, String)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let name = path.display().to_string();
    let config = yaml::from_str(&text, &name)?;
    Ok((config, name))
}

/// Parses config text (no building).
pub fn parse(text: &str, name: &str) -> anyhow::Result<Config> {
    Ok(yaml::from_str(text, name)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str, expected_error: Option<&str>) {
        let result = parse(yaml, "test.yaml").and_then(|c| c.build("test.yaml").map(|_| ()));
        match (result, expected_error) {
            (Ok(()), None) => {}
            (Err(error), Some(expected)) => {
                let text = format!("{error:#}");
                assert!(
                    text.contains(expected),
                    "error {text:?} should contain {expected:?}"
                );
            }
            (Ok(()), Some(expected)) => panic!("expected an error containing {expected:?}"),
            (Err(error), None) => panic!("unexpected error: {error:#}"),
        }
    }

    /// What reaches the sinks follows the kinds: a sink that takes none of them is refused;
    /// a kind no sink takes is noted (dropped, counted, said at start); a source's kind is
    /// delivered when a sink takes it or what a transform makes of it.
    #[test]
    fn event_kinds_are_followed_from_sources_to_sinks() {
        use crate::event::Kinds;
        let build = |sources: &str, transforms: &str, sinks: &str| {
            let yaml = format!(
                "data_dir: /tmp/x\npipelines:\n  p:\n    sources: [{sources}]\n    \
                 transforms: [{transforms}]\n    sinks: [{sinks}]\n"
            );
            parse(&yaml, "test.yaml").and_then(|c| c.build("test.yaml"))
        };
        let (otlp, host) = ("{ type: opentelemetry }", "{ type: host_metrics }");
        let loki = "{ type: loki, endpoint: 'http://127.0.0.1:1' }";
        let rw = "{ type: prometheus_remote_write, endpoint: 'http://127.0.0.1:1' }";
        let counter = "{ type: log_to_metric, metrics: [{ type: counter, name: n }] }";
        let counter_only = counter.replace(
            "type: log_to_metric",
            "type: log_to_metric, drop_logs: true",
        );
        let refused = |sources: &str, transforms: &str, sinks: &str, expected: &str| {
            let Err(error) = build(sources, transforms, sinks) else {
                panic!("{sources} | {transforms} | {sinks} was built");
            };
            let error = format!("{error:#}");
            assert!(error.contains(expected), "{error}");
        };
        refused(host, "", loki, "test.yaml:6: pipelines.p.sinks[0]: a loki sink takes only logs, and this pipeline carries only metrics");
        refused(
            "{ type: stdin }",
            "",
            rw,
            "takes only metrics, and this pipeline carries only logs",
        );
        refused(
            "{ type: stdin }",
            &counter_only,
            loki,
            "carries only metrics",
        );
        // Kinds: (carried, unsent, delivered).
        let kinds = |sources: &str, transforms: &str, sinks: &str| {
            let built = build(sources, transforms, sinks).unwrap().remove(0);
            (built.carried, built.unsent, built.delivered)
        };
        let (logs, metrics, both, none) = (Kinds::LOGS, Kinds::METRICS, Kinds::BOTH, Kinds::NONE);
        assert_eq!(kinds(otlp, "", loki), (both, metrics, logs));
        assert_eq!(
            kinds(otlp, "", &format!("{loki}, {rw}")),
            (both, none, both)
        );
        assert_eq!(kinds(otlp, &counter_only, rw), (metrics, none, both));
        assert_eq!(kinds(otlp, counter, rw), (both, logs, both));
        assert_eq!(
            kinds("{ type: stdin }", counter, loki),
            (both, metrics, logs)
        );
        assert_eq!(
            kinds(host, "", "{ type: blackhole }"),
            (metrics, none, both)
        );
        let built = build(otlp, "", loki).unwrap().remove(0);
        let warning = built.unsent_warning().unwrap();
        assert!(
            warning.starts_with(
                "pipeline p: metrics can reach it, but none of its sinks takes metrics"
            ),
            "{warning}"
        );
        assert_eq!(build(otlp, "", rw).unwrap()[0].unsent, logs);
        assert!(build(host, "", rw).unwrap()[0].unsent_warning().is_none());
    }

    /// Vector refuses one id for two components; sluice's default ids are the types (a
    /// `file` source and a `file` sink), but a `name:` given to two kinds is refused.
    #[test]
    fn one_name_for_two_kinds_is_refused() {
        check(
            "data_dir: /tmp/x\npipelines:\n  p:\n    sources: [{ type: stdin, name: x }]\n    \
             transforms: [{ type: set, name: y, fields: { a: b } }]\n    \
             sinks: [{ type: console, name: x }]\n",
            Some("test.yaml:6: pipelines.p.sinks[0]: name \"x\" is also sources[0]'s (line 4)"),
        );
        check(
            "data_dir: /tmp/x\npipelines:\n  p:\n    sources: [{ type: stdin }]\n    \
             sinks: [{ type: file, path: /tmp/x/o }, { type: console, name: stdin }]\n",
            None,
        );
    }

    #[test]
    fn an_unknown_key_of_a_component_without_keys_lists_the_common_ones() {
        check(
            "data_dir: /tmp/x\npipelines:\n  p:\n    sources: [{ type: stdin }]\n    \
             sinks: [{ type: blackhole, bogus: 1 }]\n",
            Some(
                r#"test.yaml:5:32: pipelines.p.sinks[0].bogus: unknown key "bogus", expected one of: condition"#,
            ),
        );
    }

    #[test]
    fn an_elasticsearch_endpoint_that_is_not_a_url_is_named() {
        check(
            "data_dir: /tmp/x\npipelines:\n  p:\n    sources: [{ type: stdin }]\n    \
             sinks: [{ type: elasticsearch, endpoint: ['http://a:9200', 'b'] }]\n",
            Some("test.yaml:5:46: pipelines.p.sinks[0].endpoint: \"b\" is not a URL"),
        );
    }

    /// `validate` refuses what `run` would fail on as `address in use`: a source on the
    /// API's address, two OTLP receivers on one address.
    #[test]
    fn a_source_on_the_api_address_or_a_taken_otlp_address_is_refused() {
        check(
            "data_dir: /tmp/x\napi: { address: '127.0.0.1:8686' }\npipelines:\n  p:\n    \
             sources: [{ type: syslog, mode: tcp, address: '127.0.0.1:8686' }]\n    \
             sinks: [{ type: console }]\n",
            Some("test.yaml:5: pipelines.p.sources[0]: tcp 127.0.0.1:8686 is api.address"),
        );
        check(
            "data_dir: /tmp/x\napi: { address: '127.0.0.1:8686', enabled: false }\npipelines:\n  p:\n    \
             sources: [{ type: syslog, mode: tcp, address: '127.0.0.1:8686' }]\n    \
             sinks: [{ type: console }]\n",
            None,
        );
        check(
            "data_dir: /tmp/x\npipelines:\n  p:\n    sources: [{ type: opentelemetry }]\n    \
             sinks: [{ type: console }]\n  q:\n    sources: [{ type: opentelemetry }]\n    \
             sinks: [{ type: console }]\n",
            Some("test.yaml:7: pipelines.q.sources[0]: tcp 127.0.0.1:4318 is read by pipelines.p.sources[0] (line 4) already"),
        );
    }

    #[test]
    fn an_empty_data_dir_is_refused_at_its_line() {
        check(
            "data_dir: ''\npipelines:\n  p:\n    sources: [{ type: stdin }]\n    sinks: [{ type: console }]\n",
            Some("test.yaml:1:11: data_dir: must not be empty"),
        );
    }

    /// A sink's `tls.ca_file` that holds no certificate (empty, DER, text) is refused: the
    /// built-in roots alone would be trusted instead.
    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in [
            ("empty.pem", &b""[..]),
            ("text.pem", b"not a cert\n"),
            ("der.pem", &[0x30, 0x82, 0x01, 0x0a][..]),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            check(
                &format!(
                    "data_dir: /tmp/x\npipelines:\n  p:\n    sources: [{{ type: stdin }}]\n    \
                     sinks: [{{ type: loki, endpoint: 'https://127.0.0.1:1', tls: {{ ca_file: '{}' }} }}]\n",
                    path.display()
                ),
                Some(&format!("tls.ca_file {}: no PEM certificate found", path.display())),
            );
        }
    }

    /// Issue 24: `validate` reports every error it finds, each located, not only the first.
    #[test]
    fn every_build_error_is_reported() {
        let yaml = "data_dir: /tmp/x
pipelines:
  a:
    sources: [ { type: demo, rate: 1 } ]
    transforms: [ { type: parse_regex, pattern: '(' } ]
    sinks: [ { type: loki, endpoint: 'http://127.0.0.1:1', batch: { max_events: 0 } } ]
  b:
    sources: [ { type: demo, rate: 1 } ]
    sinks: [ { type: sample_nothing_here, x: 1 } ]
";
        // An unknown type is a parse error: it stops before building (one error).
        check(yaml, Some("unknown sink type"));
        let yaml = yaml.replace("type: sample_nothing_here, x: 1", "type: blackhole");
        let error = parse(&yaml, "test.yaml")
            .and_then(|c| c.build("test.yaml").map(|_| ()))
            .unwrap_err();
        let text = format!("{error:#}");
        assert!(text.starts_with("2 errors:"), "{text}");
        for part in [
            "test.yaml:5: pipelines.a.transforms[0]",
            "test.yaml:6: pipelines.a.sinks[0]",
        ] {
            assert!(text.contains(part), "{part:?} missing from {text}");
        }
    }

    #[test]
    fn embedded_default_builds() {
        check(DEFAULT_CONFIG, None);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let base = "data_dir: /tmp/x\npipelines:\n  web:\n    sources:\n      - type: demo\n";
        check(
            &format!("{base}        rate: fast\n    sinks:\n      - type: blackhole\n"),
            Some("test.yaml:6"),
        );
        check(
            &format!("{base}        colour: red\n    sinks:\n      - type: blackhole\n"),
            Some("pipelines.web.sources[0].colour"),
        );
        check(
            &format!("{base}    sinks:\n      - type: blackhole\n      - type: blackhole\n        name: blackhole\n"),
            Some("test.yaml:8: pipelines.web.sinks[1]: two sinks are named \"blackhole\" (the first on line 7)"),
        );
        // Numbers out of range are refused as the file is read, at the value's line and column.
        check(
            &format!(
                "threads: 0\n{base}    queue_batches: 5000\n    sinks:\n      - type: blackhole\n"
            ),
            Some("test.yaml:1:10: threads: must be between 1 and 256 (got 0)"),
        );
        check(
            &format!("{base}    queue_batches: 5000\n    sinks:\n      - type: blackhole\n"),
            Some("test.yaml:6:20: pipelines.web.queue_batches: must be between 1 and 4096 (got 5000)"),
        );
        // An unquoted `${VAR}` in a flow list is a YAML error before any expansion: say so.
        check(
            "data_dir: /tmp/x\npipelines:\n  web:\n    sources: [ { type: file, include: [${D}/a.log] } ]\n    sinks: [ { type: blackhole } ]\n",
            Some("must be quoted"),
        );
        check(&format!("{base}    sinks: []\n"), Some("at least one sink"));
        check(
            &format!("{base}    sinks:\n      - type: console\n        encoding: xml\n"),
            Some("test.yaml:8"),
        );
        check(
            "data_dir: /tmp/x\npipelines: {}\n",
            Some("at least one pipeline"),
        );
        check("data_dir: /tmp/x\nbogus: 1\npipelines: {}\n", Some("bogus"));
    }

    #[test]
    fn same_settings_ignores_lines_and_sees_changes() {
        let web = "  web:\n    sources:\n      - type: demo\n        rate: 10\n    sinks:\n      - type: blackhole\n";
        let pipeline = |text: &str, name: &str| {
            parse(&format!("data_dir: /tmp/x\npipelines:\n{text}"), "t.yaml")
                .expect("parses")
                .pipelines
                .remove(name)
                .expect("pipeline")
        };
        let moved = pipeline(
            &format!("  aaa:\n    sources:\n      - type: demo\n    sinks:\n      - type: blackhole\n{web}"),
            "web",
        );
        assert!(
            pipeline(web, "web").same_settings(&moved),
            "only lines moved"
        );
        let changed = pipeline(&web.replace("rate: 10", "rate: 11"), "web");
        assert!(!pipeline(web, "web").same_settings(&changed));
    }
}
