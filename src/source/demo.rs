//! `type: demo`: generates realistic, numbered log lines at a set rate, for the quickstart,
//! benchmarks and tests of the delivery path.
//!
//! Event `n` carries `seq=n` in its line and a `seq` field, and its content is a pure
//! function of `n`. The position of the stream is the next sequence number and is
//! checkpointed like a file offset, so after a restart (even `kill -9`) generation resumes at
//! the first number not yet delivered: nothing missing, duplicates only from what was in
//! flight.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{Running, SourceContext};
use crate::batch::Batch;
use crate::event::{Event, LogEvent, Map, Origin, StreamName, Timestamp, Value};

/// Line layouts the demo source can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DemoFormat {
    /// Apache/nginx combined access log.
    #[default]
    ApacheCombined,
    /// RFC 3164 syslog text.
    Syslog,
    /// One JSON object per line.
    Json,
    /// `key=value` pairs.
    Logfmt,
}

/// `type: demo` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    /// Events per second; `0` means as fast as the pipeline takes them.
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// Stop after this many events in total (counted across restarts); unset: forever.
    #[serde(default)]
    pub count: Option<u64>,
    /// Line layout.
    #[serde(default)]
    pub format: DemoFormat,
    /// Events per batch, at most.
    #[serde(default = "default_batch_events")]
    pub batch_events: usize,
}

fn default_rate() -> f64 {
    10.0
}

fn default_batch_events() -> usize {
    1000
}

impl DemoConfig {
    /// Validates the settings.
    pub fn build(&self) -> anyhow::Result<Demo> {
        /// Far above what one core makes (`0` is "as fast as the pipeline takes them").
        const MAX_RATE: f64 = 1e9;
        // NaN and infinities are outside every range.
        crate::bounds::check("rate", self.rate, 0.0..=MAX_RATE)?;
        crate::bounds::check(
            "batch_events",
            self.batch_events,
            1..=crate::bounds::MAX_EVENTS,
        )?;
        Ok(Demo {
            config: self.clone(),
        })
    }
}

/// A built demo source.
#[derive(Debug)]
pub struct Demo {
    config: DemoConfig,
}

impl Demo {
    /// Its sequence number is checkpointed.
    pub const REPLAYABLE: bool = true;

    /// Starts generating on its own thread.
    pub fn start(self, ctx: SourceContext) -> anyhow::Result<Running> {
        Running::thread("demo", ctx, move |ctx| self.run(ctx))
    }

    fn run(self, ctx: SourceContext) {
        let key = ctx.checkpoint_key("seq");
        let start = ctx.checkpoints.position(&key).map_or(0, |p| p.offset);
        let tracker = ctx.checkpoints.track(&key, start, crate::ack::Meta::new());
        let stream = StreamName::from(key.as_str());
        let stream_key = crate::hash_str(&stream);
        let limit = self.config.count.unwrap_or(u64::MAX);
        let started = Instant::now();
        let mut next = start;
        while next < limit && !ctx.shutdown.is_triggered() {
            let due = if self.config.rate == 0.0 {
                u64::MAX
            } else {
                start + (started.elapsed().as_secs_f64() * self.config.rate) as u64
            };
            if due <= next {
                let wait =
                    Duration::from_secs_f64(1.0 / self.config.rate).min(Duration::from_millis(100));
                ctx.shutdown.wait_timeout(wait);
                continue;
            }
            let n = (due - next)
                .min(limit - next)
                .min(self.config.batch_events as u64);
            let now = Timestamp::now();
            let time = time_text(self.config.format, now);
            let events: Vec<Event> = (next..next + n)
                .map(|seq| Event::Log(self.event(seq, now, &time, &stream)))
                .collect();
            ctx.metrics.events_in.add(n);
            next += n;
            let batch = Batch::with_ack(events, tracker.track(next));
            if ctx.out.send(stream_key, batch).is_err() {
                return;
            }
        }
    }

    fn event(&self, seq: u64, now: Timestamp, time: &str, stream: &StreamName) -> LogEvent {
        let mut fields = Map::new();
        fields.insert("seq", Value::Int(seq as i64));
        LogEvent {
            timestamp: now,
            message: Value::String(line(self.config.format, seq, time)),
            fields,
            origin: Some(Origin {
                stream: stream.clone(),
                offset: seq,
            }),
        }
    }
}

/// A fast, well-mixed hash of `n` (splitmix64), so line `n` is always the same line.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE"];
const PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/api/v1/users",
    "/api/v1/orders",
    "/static/app.js",
    "/login",
];
const STATUSES: &[u16] = &[200, 200, 200, 200, 201, 301, 304, 404, 500, 503];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64)",
    "curl/8.5.0",
    "Go-http-client/1.1",
];
const APPS: &[&str] = &["sshd", "cron", "kernel", "systemd", "nginx"];

fn pick<T>(items: &[T], bits: u64) -> &T {
    &items[(bits % items.len() as u64) as usize]
}

/// The timestamp text a format's lines carry (formatted once per batch, not per line).
pub fn time_text(format: DemoFormat, now: Timestamp) -> String {
    let time = now.to_datetime();
    match format {
        DemoFormat::ApacheCombined => time.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
        DemoFormat::Syslog => time.format("%b %e %H:%M:%S").to_string(),
        DemoFormat::Json | DemoFormat::Logfmt => String::new(),
    }
}

/// The demo line for `seq` in `format`, with `time` from [`time_text`].
pub fn line(format: DemoFormat, seq: u64, time: &str) -> String {
    use std::fmt::Write as _;
    let h = mix(seq);
    let ip = Ip((h >> 8) as u8, (h >> 16) as u8, (h >> 24) as u8);
    let method = pick(METHODS, h >> 32);
    let path = pick(PATHS, h >> 36);
    let status = pick(STATUSES, h >> 40);
    let bytes = (h >> 44) % 50_000;
    // One allocation of the right size: this runs once per generated event.
    let mut out = String::with_capacity(192);
    let _ = match format {
        DemoFormat::ApacheCombined => write!(
            out,
            "{ip} - - [{time}] \"{method} {path}?seq={seq} HTTP/1.1\" {status} {bytes} \"-\" \"{}\"",
            pick(AGENTS, h >> 48)
        ),
        DemoFormat::Syslog => write!(
            out,
            "<{}>{time} demo-host {}[{}]: seq={seq} request from {ip} finished with {status}",
            8 + h % 8,
            pick(APPS, h >> 48),
            1000 + (h >> 52) % 9000
        ),
        DemoFormat::Json => write!(
            out,
            r#"{{"seq":{seq},"client":"{ip}","method":"{method}","path":"{path}","status":{status},"bytes":{bytes}}}"#
        ),
        DemoFormat::Logfmt => write!(
            out,
            "seq={seq} client={ip} method={method} path={path} status={status} bytes={bytes} msg=\"request done\""
        ),
    };
    out
}

/// A client address `10.a.b.c`, written without an intermediate string.
struct Ip(u8, u8, u8);

impl std::fmt::Display for Ip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "10.{}.{}.{}", self.0, self.1, self.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_a_function_of_seq() {
        let now = Timestamp(1_700_000_000_000_000_000);
        for format in [
            DemoFormat::ApacheCombined,
            DemoFormat::Syslog,
            DemoFormat::Json,
            DemoFormat::Logfmt,
        ] {
            let time = time_text(format, now);
            assert_eq!(line(format, 42, &time), line(format, 42, &time));
            assert!(line(format, 42, &time).contains("42"));
        }
        let apache = line(
            DemoFormat::ApacheCombined,
            1,
            &time_text(DemoFormat::ApacheCombined, now),
        );
        assert!(apache.contains("[14/Nov/2023:22:13:20 +0000]"), "{apache}");
        assert!(apache.contains("?seq=1 HTTP/1.1"), "{apache}");
        let json: serde_json::Value = serde_json::from_str(&line(DemoFormat::Json, 7, "")).unwrap();
        assert_eq!(json["seq"], 7);
    }
}
