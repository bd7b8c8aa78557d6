//! `type: stdin`: one event per line of standard input. The agent ends when every source
//! has ended, so `cat file | sluice run -c pipe.yaml` exits after the last line is delivered.
//! Positions are not replayable, so batches carry no acknowledgement.

use std::io::Read;
use std::os::fd::AsFd;
use std::time::Duration;

use serde::Deserialize;

use super::{Running, SourceContext};
use crate::batch::Batch;
use crate::event::{Event, LogEvent, Value};
use crate::telemetry::Counter;

/// `type: stdin` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    /// Longest line kept; longer lines are truncated (and counted).
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

fn default_max_line_bytes() -> usize {
    100 * 1024
}

impl StdinConfig {
    /// Validates the settings.
    pub fn build(&self) -> anyhow::Result<Stdin> {
        crate::bounds::check(
            "max_line_bytes",
            self.max_line_bytes,
            1..=crate::bounds::MAX_BYTES,
        )?;
        Ok(Stdin {
            max_line_bytes: self.max_line_bytes,
        })
    }
}

/// A built stdin source.
#[derive(Debug)]
pub struct Stdin {
    max_line_bytes: usize,
}

impl Stdin {
    /// A pipe cannot be read again.
    pub const REPLAYABLE: bool = false;

    /// Starts reading on its own thread.
    pub fn start(self, ctx: SourceContext) -> anyhow::Result<Running> {
        Running::thread("stdin", ctx, move |ctx| self.run(ctx))
    }

    fn run(self, ctx: SourceContext) {
        let mut stdin = std::io::stdin().lock();
        let truncated = ctx.metrics.dropped("truncated");
        let invalid_utf8 = ctx.metrics.counter(
            "sluice_stdin_invalid_utf8_total",
            "Lines with invalid UTF-8, kept with replacement characters.",
            &[],
        );
        let mut line: Vec<u8> = Vec::new();
        let mut skipping = false;
        // Larger than std's own stdin buffer, which reads then bypass: waiting on the
        // descriptor says truly whether a read would block.
        let mut buf = vec![0u8; 64 * 1024];
        while !ctx.shutdown.is_triggered() {
            if !readable_within(&stdin, Duration::from_millis(100)) {
                continue; // look at shutdown again: a quiet pipe must not hold up a stop
            }
            let n_bytes = match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    tracing::warn!(%error, "stdin read failed");
                    break;
                }
            };
            let mut events = Vec::new();
            for (i, piece) in buf[..n_bytes].split(|b| *b == b'\n').enumerate() {
                if i > 0 {
                    events.push(self.event(&line, skipping, &invalid_utf8));
                    line.clear();
                    skipping = false;
                }
                if skipping {
                    continue;
                }
                let room = self.max_line_bytes - line.len();
                line.extend_from_slice(&piece[..piece.len().min(room)]);
                if piece.len() > room {
                    truncated.inc();
                    skipping = true;
                }
            }
            if events.is_empty() {
                continue;
            }
            ctx.metrics.events_in.add(events.len() as u64);
            if ctx.out.send(0, Batch::new(events)).is_err() {
                return;
            }
        }
        if !line.is_empty() {
            ctx.metrics.events_in.inc();
            let _ = ctx.out.send(
                0,
                Batch::new(vec![self.event(&line, skipping, &invalid_utf8)]),
            );
        }
    }

    /// The event of `line` (`cut`: truncated at `max_line_bytes`, and marked so); a line
    /// that is not UTF-8 is kept with U+FFFD and counted in `invalid_utf8`.
    fn event(&self, line: &[u8], cut: bool, invalid_utf8: &Counter) -> Event {
        let line = match cut {
            true => line,
            false => line.strip_suffix(b"\r").unwrap_or(line),
        };
        let text = crate::event::line_text(line, cut).unwrap_or_else(|lossy| {
            invalid_utf8.inc();
            lossy
        });
        let mut event = LogEvent::new(text);
        if cut {
            event.fields.insert("truncated", Value::Bool(true));
        }
        Event::Log(event)
    }
}

/// Whether `fd` has data (or its end, or an error) within `timeout`. A descriptor that
/// cannot be polled counts as readable, so the caller reads (and blocks) as before.
fn readable_within(fd: &impl AsFd, timeout: Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let timeout = Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    match poll(&mut fds, Some(&timeout)) {
        Ok(0) => false,
        Ok(_) => true,
        Err(rustix::io::Errno::INTR) => false,
        Err(_) => true,
    }
}
