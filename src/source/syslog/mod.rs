//! `type: syslog`: receives syslog over UDP, TCP (optionally TLS, RFC 5425) and Unix stream
//! or datagram sockets, frames streams per RFC 6587, and parses RFC 5424 and RFC 3164 into
//! fields (`facility`, `severity`, `hostname`, `appname`, `procid`, `msgid`,
//! `structured_data`, `source_ip`). The event time is the message's own, else the receive time.
//!
//! Syslog has no replayable position: batches carry no acknowledgement. Streams are the
//! buffer when the pipeline is full (a connection is not read while its batch waits);
//! datagrams that arrive while the pipeline is full are dropped and counted (`udp_overflow`).
//!
//! Owns: the config, the socket listeners (`listener.rs`), framing ([`framing`]), parsing
//! ([`parse`], [`rfc5424`], [`rfc3164`]) and TLS setup ([`tls`]). Never: drops a message
//! silently (a message that does not parse is kept raw with a `parse_error` field; an
//! over-long one is cut and marked `truncated`), panics on input, or blocks the runtime.

mod datagrams;
pub mod framing;
mod handover;
mod kernel_drops;
mod listener;
pub mod message;
pub mod parse;
pub mod rfc3164;
pub mod rfc5424;
pub mod time;
pub mod tls;

pub use handover::{release_unclaimed, set_exiting};

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;

use super::{Running, SourceContext};
use crate::event::{Event, LogEvent, Map, Timestamp, Value};
use framing::Framing;
use time::Zone;

/// Transport of a syslog source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One message per datagram.
    Udp,
    /// A stream of framed messages per connection, optionally TLS.
    Tcp,
    /// A Unix socket at `path` (stream or datagram, see `unix_type`).
    Unix,
}

/// Kind of Unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnixType {
    /// `SOCK_STREAM`: framed messages per connection.
    #[default]
    Stream,
    /// `SOCK_DGRAM`: one message per datagram, like `/dev/log`.
    Datagram,
}

/// `type: syslog` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// Transport: `udp`, `tcp` or `unix`.
    pub mode: Mode,
    /// `host:port` to listen on (`udp` and `tcp`), e.g. `0.0.0.0:5514`.
    #[serde(default)]
    pub address: Option<String>,
    /// Socket file to create (`unix`); a stale socket left there is removed at start.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `stream` (default) or `datagram` (`unix` only).
    #[serde(default)]
    pub unix_type: Option<UnixType>,
    /// Permissions of the socket file as an octal string, e.g. `"0666"` (`unix` only;
    /// default: the process umask).
    #[serde(default)]
    pub socket_mode: Option<String>,
    /// Stream framing (RFC 6587): `auto` (default; per message, a leading digit means an
    /// octet count), `newline` or `octet_counting`. Streams only.
    #[serde(default)]
    pub framing: Option<Framing>,
    /// TLS on TCP (RFC 5425); without it the listener is plain TCP.
    #[serde(default)]
    pub tls: Option<tls::TlsConfig>,
    /// Longest message kept, in bytes; longer ones are cut, marked `truncated: true` and
    /// counted. Default 65536.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Most concurrent stream connections; more are closed at once and counted. Default
    /// 4096, lowered at start to what the open-file limit leaves (with a warning).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Close a stream connection that sent nothing for this many seconds. Default 300, so
    /// idle connections cannot hold every slot for ever.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: Option<u64>,
    /// Zone of RFC 3164 timestamps, which carry none: `local` (default), `utc` or `+hh:mm`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Most events per batch handed to the pipeline. Default 1000.
    #[serde(default = "default_batch_events")]
    pub batch_events: usize,
    /// Most message bytes per batch handed to the pipeline (with `batch_events`, whichever
    /// comes first), so queued batches are bounded in bytes. Default 1 MiB.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// Most bytes all stream connections of this source may hold in their read buffers
    /// (partial frames) together. A connection that holds part of a frame while the total
    /// is over is closed and counted (`sluice_syslog_buffer_closes_total`). Default 32 MiB.
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: usize,
    /// Receive buffer of a datagram socket (`udp`, `unix` datagram), in bytes: what the
    /// kernel holds while the pipeline is briefly full. Default 4 MiB; the kernel caps it
    /// at `net.core.rmem_max` (the effective size is logged at start).
    #[serde(default)]
    pub receive_buffer_bytes: Option<usize>,
}

/// The datagram sockets' receive buffer unless `receive_buffer_bytes` says otherwise.
const DEFAULT_RECEIVE_BUFFER_BYTES: usize = 4 << 20;

fn default_max_buffered_bytes() -> usize {
    32 << 20
}

fn default_idle_timeout_secs() -> Option<u64> {
    Some(300)
}

fn default_batch_bytes() -> usize {
    1 << 20
}

fn default_max_message_bytes() -> usize {
    64 * 1024
}

fn default_max_connections() -> usize {
    4096
}

fn default_batch_events() -> usize {
    1000
}

/// Where a built source listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// UDP socket.
    Udp(SocketAddr),
    /// TCP listener (TLS when the source has it).
    Tcp(SocketAddr),
    /// Unix stream socket file, with its permissions.
    UnixStream(PathBuf, Option<u32>),
    /// Unix datagram socket file, with its permissions.
    UnixDatagram(PathBuf, Option<u32>),
}

impl SyslogConfig {
    /// Validates the settings (address resolved, TLS files loaded) into a [`Syslog`].
    pub fn build(&self) -> anyhow::Result<Syslog> {
        use crate::bounds::{self, check};
        check("max_message_bytes", self.max_message_bytes, 1..=16 << 20)?;
        check("max_connections", self.max_connections, 1..=65_536)?;
        check("batch_events", self.batch_events, 1..=bounds::MAX_EVENTS)?;
        check("batch_bytes", self.batch_bytes, 1..=bounds::MAX_BYTES)?;
        check(
            "max_buffered_bytes",
            self.max_buffered_bytes,
            (1 << 20)..=(1 << 32),
        )?;
        bounds::check_opt(
            "idle_timeout_secs",
            self.idle_timeout_secs,
            1..=bounds::MAX_SECS,
        )?;
        bounds::check_opt(
            "receive_buffer_bytes",
            self.receive_buffer_bytes,
            4096..=(1 << 30),
        )?;
        let listen = self.listen()?;
        let streams = matches!(listen, Listen::Tcp(_) | Listen::UnixStream(..));
        anyhow::ensure!(
            !streams || self.receive_buffer_bytes.is_none(),
            "receive_buffer_bytes applies to datagram sockets (udp, unix datagram) only"
        );
        anyhow::ensure!(
            streams || self.framing.is_none(),
            "framing applies to tcp and unix stream sockets only"
        );
        anyhow::ensure!(
            self.tls.is_none() || matches!(listen, Listen::Tcp(_)),
            "tls applies to mode: tcp only"
        );
        let tls = self
            .tls
            .as_ref()
            .map(tls::TlsConfig::build)
            .transpose()
            .context("tls")?;
        let zone = match self.timezone.as_deref() {
            None => Zone::Local,
            Some(text) => Zone::parse(text).with_context(|| {
                format!("timezone {text:?}: expected local, utc or an offset like +02:00")
            })?,
        };
        Ok(Syslog {
            listen,
            tls,
            settings: Settings {
                framing: self.framing.unwrap_or_default(),
                max_message_bytes: self.max_message_bytes,
                max_connections: self.max_connections,
                idle_timeout: self.idle_timeout_secs.map(Duration::from_secs),
                zone,
                batch_events: self.batch_events,
                batch_bytes: self.batch_bytes,
                max_buffered_bytes: self.max_buffered_bytes,
                receive_buffer_bytes: self
                    .receive_buffer_bytes
                    .unwrap_or(DEFAULT_RECEIVE_BUFFER_BYTES),
            },
        })
    }

    fn listen(&self) -> anyhow::Result<Listen> {
        let unix_only =
            self.path.is_some() || self.unix_type.is_some() || self.socket_mode.is_some();
        match self.mode {
            Mode::Udp | Mode::Tcp => {
                anyhow::ensure!(
                    !unix_only,
                    "path, unix_type and socket_mode apply to mode: unix only"
                );
                let text = self
                    .address
                    .as_deref()
                    .context("address (host:port) is required for udp and tcp")?;
                let address = text
                    .to_socket_addrs()
                    .with_context(|| format!("address {text:?}"))?
                    .next()
                    .with_context(|| format!("address {text:?} resolves to nothing"))?;
                Ok(if self.mode == Mode::Udp {
                    Listen::Udp(address)
                } else {
                    Listen::Tcp(address)
                })
            }
            Mode::Unix => {
                anyhow::ensure!(
                    self.address.is_none(),
                    "address applies to udp and tcp; use path for unix"
                );
                let path = self
                    .path
                    .clone()
                    .context("path is required for mode: unix")?;
                let permissions = self
                    .socket_mode
                    .as_deref()
                    .map(parse_socket_mode)
                    .transpose()?;
                Ok(match self.unix_type.unwrap_or_default() {
                    UnixType::Stream => Listen::UnixStream(path, permissions),
                    UnixType::Datagram => Listen::UnixDatagram(path, permissions),
                })
            }
        }
    }
}

/// `"0666"` / `"666"` / `"0o666"` as permission bits.
fn parse_socket_mode(text: &str) -> anyhow::Result<u32> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .with_context(|| format!("socket_mode {text:?}: expected octal permissions like \"0666\""))
}

/// Runtime limits shared by every connection of a source.
#[derive(Debug, Clone, Copy)]
struct Settings {
    framing: Framing,
    max_message_bytes: usize,
    max_connections: usize,
    idle_timeout: Option<Duration>,
    zone: Zone,
    batch_events: usize,
    batch_bytes: usize,
    max_buffered_bytes: usize,
    receive_buffer_bytes: usize,
}

/// A built syslog source.
#[derive(Debug)]
pub struct Syslog {
    listen: Listen,
    tls: Option<tls::Tls>,
    settings: Settings,
}

impl Syslog {
    /// Received messages live only in memory until delivered.
    pub const REPLAYABLE: bool = false;

    /// Where this source listens.
    pub fn listen(&self) -> &Listen {
        &self.listen
    }

    /// Binds the socket now (so a port in use stops the agent at start) and serves it on
    /// the runtime.
    pub fn start(self, ctx: SourceContext) -> anyhow::Result<Running> {
        listener::start(self, ctx)
    }
}

/// Turns one framed message into an event: parsed fields, or the raw text with a
/// `parse_error` field when it does not parse. `received` is the event time when the
/// message has none; `zone` reads RFC 3164 times. Returns the event and whether it parsed.
pub fn message_to_event(raw: &[u8], received: Timestamp, zone: Zone) -> (LogEvent, bool) {
    // Valid UTF-8 (nearly every message) is checked by the fast validator, not the lossy one.
    let text = match std::str::from_utf8(raw) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(raw),
    };
    let mut event = LogEvent {
        timestamp: received,
        message: Value::Null,
        fields: Map::with_capacity(8),
        origin: None,
    };
    let message = match parse::parse(&text, received, zone) {
        Ok(message) => message,
        Err(error) => {
            event.message = Value::String(text.trim_end_matches(['\n', '\r', '\0']).to_owned());
            event
                .fields
                .insert("parse_error", Value::String(error.to_string()));
            return (event, false);
        }
    };
    let fields = &mut event.fields;
    // Inserted in name order, so each insert is an append.
    let priority = message.priority;
    for (name, value) in [
        ("appname", message.appname),
        ("facility", priority.map(|p| p.facility_name())),
        ("hostname", message.hostname),
        ("msgid", message.msgid),
        ("procid", message.procid),
        ("severity", priority.map(|p| p.severity_name())),
    ] {
        if let Some(value) = value {
            fields.insert(name, value.into());
        }
    }
    if !message.structured_data.is_empty() {
        // Sized exactly: a map's first growth makes room for four fields (224 bytes), and
        // events wait in batches by the thousand.
        let mut elements = Map::with_capacity(message.structured_data.len());
        for element in &message.structured_data {
            let params = element.params.iter().map(|(name, value)| {
                (
                    (*name).to_owned(),
                    Value::String(value.clone().into_owned()),
                )
            });
            // A repeated SD-ID merges into the first (RFC 5424 forbids repeats; be kind).
            let slot = elements.get_or_insert_with(element.id, || {
                Value::from(Map::with_capacity(element.params.len()))
            });
            if let Some(map) = slot.map_mut() {
                map.extend(params);
            }
        }
        fields.insert("structured_data", Value::from(elements));
    }
    if let Some(version) = message.version {
        fields.insert("version", Value::Int(i64::from(version)));
    }
    event.message = Value::String(message.message.to_owned());
    if let Some(timestamp) = message.timestamp {
        event.timestamp = timestamp;
    }
    (event, true)
}

/// What every listener task of one source shares.
struct Shared {
    settings: Settings,
    ctx: SourceContext,
    /// Stream connections open now (bounded by `max_connections`).
    open_connections: std::sync::atomic::AtomicUsize,
    /// Source of connection ids (the stream keys that keep one connection in order).
    next_connection: std::sync::atomic::AtomicU64,
    /// Bytes held by every stream connection's read buffer (bounded by
    /// `max_buffered_bytes`).
    buffered_bytes: std::sync::atomic::AtomicUsize,
    counters: Counters,
}

/// The source's own metrics beyond events in/out.
struct Counters {
    bytes: crate::telemetry::Counter,
    parse_errors: crate::telemetry::Counter,
    truncated: crate::telemetry::Counter,
    connections_total: crate::telemetry::Counter,
    connections_open: crate::telemetry::Gauge,
    connections_refused: crate::telemetry::Counter,
    tls_errors: crate::telemetry::Counter,
    udp_overflow: crate::telemetry::Counter,
    buffer_closes: crate::telemetry::Counter,
}

impl Counters {
    fn new(metrics: &crate::telemetry::ComponentMetrics) -> Self {
        Counters {
            bytes: metrics.counter(
                "sluice_syslog_bytes_received_total",
                "Bytes of syslog messages received.",
                &[],
            ),
            parse_errors: metrics.counter(
                "sluice_syslog_parse_errors_total",
                "Syslog messages that did not parse and were kept raw with parse_error.",
                &[],
            ),
            truncated: metrics.counter(
                "sluice_syslog_messages_truncated_total",
                "Syslog messages cut: longer than max_message_bytes, or a stream's unfinished message at a stop (marked truncated).",
                &[],
            ),
            connections_total: metrics.counter(
                "sluice_syslog_connections_total",
                "Stream connections accepted.",
                &[],
            ),
            connections_open: metrics.gauge(
                "sluice_syslog_connections_open",
                "Stream connections open now.",
                &[],
            ),
            connections_refused: metrics.counter(
                "sluice_syslog_connections_refused_total",
                "Stream connections closed at once because max_connections were open.",
                &[],
            ),
            tls_errors: metrics.counter(
                "sluice_syslog_tls_handshake_errors_total",
                "TLS handshakes that failed (bad or missing client certificate, protocol errors).",
                &[],
            ),
            udp_overflow: metrics.dropped("udp_overflow"),
            buffer_closes: metrics.counter(
                "sluice_syslog_buffer_closes_total",
                "Stream connections closed holding a partial frame because max_buffered_bytes were held.",
                &[],
            ),
        }
    }
}

impl Shared {
    /// The event for one framed message, counted.
    fn event(&self, raw: &[u8], truncated: bool, peer: Option<&str>, received: Timestamp) -> Event {
        self.counters.bytes.add(raw.len() as u64);
        let (mut event, parsed) = message_to_event(raw, received, self.settings.zone);
        if !parsed {
            self.counters.parse_errors.inc();
        }
        if truncated {
            self.counters.truncated.inc();
            event.fields.insert("truncated", Value::Bool(true));
        }
        if let Some(peer) = peer {
            event
                .fields
                .insert("source_ip", Value::String(peer.to_owned()));
        }
        Event::Log(event)
    }
}

/// Tests of the config, event fields and parsers over real log samples.
#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> anyhow::Result<Syslog> {
        let config: SyslogConfig =
            crate::yaml::from_str(yaml, "test.yaml").map_err(|e| anyhow::anyhow!("{e:?}"))?;
        config.build()
    }

    #[test]
    fn builds_valid_configs_and_rejects_bad_ones() {
        let udp = config("mode: udp\naddress: 127.0.0.1:5514").unwrap();
        assert_eq!(
            udp.listen(),
            &Listen::Udp("127.0.0.1:5514".parse().unwrap())
        );
        let unix =
            config("mode: unix\npath: /tmp/x.sock\nunix_type: datagram\nsocket_mode: \"0666\"")
                .unwrap();
        assert_eq!(
            unix.listen(),
            &Listen::UnixDatagram("/tmp/x.sock".into(), Some(0o666))
        );
        for bad in [
            "mode: tcp",
            "mode: udp\naddress: 127.0.0.1:1\nframing: newline",
            "mode: unix\naddress: 127.0.0.1:1",
            "mode: unix\npath: /tmp/x\nsocket_mode: \"rw\"",
            "mode: tcp\naddress: 127.0.0.1:1\npath: /tmp/x",
            "mode: tcp\naddress: 127.0.0.1:1\nmax_message_bytes: 0",
            "mode: tcp\naddress: 127.0.0.1:1\ntimezone: Mars/Olympus",
            "mode: tcp\naddress: 127.0.0.1:1\nunknown_key: 1",
            "mode: udp\naddress: 127.0.0.1:1\ntls: { cert_file: /nonexistent, key_file: /nonexistent }",
            "mode: tcp\naddress: 127.0.0.1:1\ntls: { cert_file: /nonexistent, key_file: /nonexistent }",
        ] {
            assert!(config(bad).is_err(), "accepted {bad:?}");
        }
    }

    fn check(raw: &str, expected: serde_json::Value) {
        let (event, _) = message_to_event(
            raw.as_bytes(),
            Timestamp(1_773_576_000_000_000_000),
            Zone::Fixed(0),
        );
        assert_eq!(
            serde_json::Value::Object(event.to_json_map()),
            expected,
            "{raw:?}"
        );
    }

    #[test]
    fn events_carry_fields() {
        check(
            r#"<155>1 2026-03-15T11:00:00.5Z web01 nginx 42 ACCESS [meta@1 k="v\"q"][x@2 a="1"] hello"#,
            serde_json::json!({
                "facility": "local3", "severity": "err", "version": 1, "hostname": "web01",
                "appname": "nginx", "procid": "42", "msgid": "ACCESS",
                "structured_data": {"meta@1": {"k": "v\"q"}, "x@2": {"a": "1"}},
                "message": "hello", "timestamp": "2026-03-15T11:00:00.500Z"
            }),
        );
        check(
            "<30>Mar 15 11:00:00 gw dhcpd[7]: lease",
            serde_json::json!({
                "facility": "daemon", "severity": "info", "hostname": "gw", "appname": "dhcpd",
                "procid": "7", "message": "lease", "timestamp": "2026-03-15T11:00:00Z"
            }),
        );
        check(
            "<13>1 2026-03-15T11:00:00Z h a p m [broken",
            serde_json::json!({
                "parse_error": "invalid rfc5424 structured data",
                "message": "<13>1 2026-03-15T11:00:00Z h a p m [broken",
                "timestamp": "2026-03-15T12:00:00Z"
            }),
        );
        check(
            "<13>bad \u{fffd} utf8",
            serde_json::json!({
                "facility": "user", "severity": "notice", "message": "bad \u{fffd} utf8",
                "timestamp": "2026-03-15T12:00:00Z"
            }),
        );
    }

    /// Every line of the loghub Linux and OpenSSH samples parses, with a host and an app.
    #[test]
    fn real_log_samples() {
        for (file, host) in [("Linux_2k.log", "combo"), ("OpenSSH_2k.log", "LabSZ")] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data/syslog")
                .join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            let (mut n_lines, mut n_with_app) = (0, 0);
            for line in text.lines() {
                let framed = format!("<38>{line}");
                let (event, parsed) =
                    message_to_event(framed.as_bytes(), Timestamp::now(), Zone::Fixed(0));
                assert!(parsed, "{line}");
                assert_eq!(
                    event.fields.get("hostname").and_then(Value::as_str),
                    Some(host),
                    "{line}"
                );
                n_lines += 1;
                n_with_app += usize::from(event.fields.contains_key("appname"));
            }
            assert_eq!(n_lines, 2000, "{file}");
            assert!(
                n_with_app * 100 >= n_lines * 95,
                "{file}: only {n_with_app} of {n_lines} with an appname"
            );
        }
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic, and a message that does not parse keeps its raw text.
        #[test]
        fn arbitrary_bytes_are_kept(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let (event, parsed) = message_to_event(&raw, Timestamp(0), Zone::Fixed(0));
            let lossy = String::from_utf8_lossy(&raw);
            if parsed {
                proptest::prop_assert!(lossy.contains(event.message_str()));
            } else {
                proptest::prop_assert_eq!(event.message_str(), lossy.trim_end_matches(['\n', '\r', '\0']));
            }
        }

        /// Syslog-shaped input (valid headers, random parts) never panics either.
        #[test]
        fn shaped_input_never_panics(
            pri in "<[0-9]{1,4}>", version in "(1 )?", ts in "(-|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{8,12}(Z|[+-][0-9]{2}:[0-9]{2})|[A-Z][a-z]{2}  ?[0-9]{1,2} [0-9:]{8})",
            rest in r#"( [a-z\-\[\]="\\ @.]{0,30}){0,8}"#,
        ) {
            let raw = format!("{pri}{version}{ts}{rest}");
            let _ = message_to_event(raw.as_bytes(), Timestamp(0), Zone::Local);
        }
    }
}
