//! The datagram side of a syslog source (UDP and Unix datagram sockets): one message per
//! datagram, batched from what the socket has queued, and what happens when the pipeline is
//! full (a batch waits up to [`FULL_WAIT`] while the socket is still read; past that,
//! datagrams are dropped and counted as `udp_overflow`).
//!
//! A UDP socket's kernel drops (its receive buffer full) are read every second and counted
//! (`kernel_drops.rs`).
//!
//! Owns: the receive loop and its overflow accounting. Never: binds sockets (see
//! `listener.rs`) or parses messages.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::handover;
use super::kernel_drops::{self, KernelDrops};
use super::Shared;
use crate::batch::Batch;
use crate::event::{Event, Timestamp};
use crate::telemetry::LogEvery;

/// A datagram socket of either family.
pub(super) enum Datagrams {
    Udp(tokio::net::UdpSocket),
    Unix(tokio::net::UnixDatagram),
}

impl Datagrams {
    /// Waits for one datagram: (length, sender's IP for UDP).
    async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, Option<SocketAddr>)> {
        match self {
            Datagrams::Udp(socket) => socket.recv_from(buf).await.map(|(n, peer)| (n, Some(peer))),
            Datagrams::Unix(socket) => socket.recv(buf).await.map(|n| (n, None)),
        }
    }

    /// The kernel's drop count of a UDP socket (Unix datagram sockets have none).
    fn kernel_drops(&self, shared: &Shared) -> Option<KernelDrops> {
        let Datagrams::Udp(socket) = self else {
            return None;
        };
        let v6 = socket.local_addr().is_ok_and(|address| address.is_ipv6());
        let counter = shared.ctx.metrics.counter(
            "sluice_syslog_kernel_drops_total",
            "UDP datagrams the kernel dropped before the source read them: the socket's receive buffer was full (raise receive_buffer_bytes, and net.core.rmem_max, or give the agent CPU).",
            &[],
        );
        KernelDrops::new(socket, v6, counter)
    }

    /// One more datagram if one is queued, else `WouldBlock`.
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<(usize, Option<SocketAddr>)> {
        match self {
            Datagrams::Udp(socket) => socket.try_recv_from(buf).map(|(n, peer)| (n, Some(peer))),
            Datagrams::Unix(socket) => socket.try_recv(buf).map(|n| (n, None)),
        }
    }
}

/// How long a datagram batch waits for room in a full pipeline before it is dropped.
const FULL_WAIT: Duration = Duration::from_millis(500);

/// Receives datagrams (one message each), batching what is queued, until the agent stops.
/// A batch that finds the pipeline full waits up to [`FULL_WAIT`] for room (the socket's
/// receive buffer holds new datagrams meanwhile); when the pipeline stays full, datagrams
/// are dropped as they come and counted as `udp_overflow` until there is room again.
pub(super) async fn serve_datagrams(shared: Arc<Shared>, socket: Datagrams, path: Option<PathBuf>) {
    let settings = shared.settings;
    let stream_key = crate::hash_str(&shared.ctx.id);
    // One byte over the limit tells a too-long datagram from one that just fits.
    let mut buf = vec![0u8; settings.max_message_bytes.saturating_add(1).min(1 << 20)];
    let mut events = Vec::new();
    let mut batch_bytes = 0usize;
    let mut overflowing = false;
    let mut drops = DropLog(LogEvery::new(DROP_LOG_EVERY));
    let mut kernel_drops = socket.kernel_drops(&shared);
    let mut read_kernel_drops = tokio::time::interval(kernel_drops::READ_EVERY);
    read_kernel_drops.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let at_limit = |events: &Vec<Event>, bytes: usize| {
        events.len() >= settings.batch_events || bytes >= settings.batch_bytes
    };
    loop {
        // Datagrams read while the last batch waited for room are the start of this one:
        // it goes out now with what else is queued, not when the next datagram comes.
        let mut next = if events.is_empty() {
            tokio::select! {
                _ = shared.ctx.shutdown.wait() => break,
                _ = read_kernel_drops.tick(), if kernel_drops.is_some() => {
                    if let Some(kernel_drops) = &mut kernel_drops {
                        kernel_drops.read(&shared.ctx.id);
                    }
                    continue;
                }
                first = socket.recv(&mut buf) => first,
            }
        } else if at_limit(&events, batch_bytes) {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            socket.try_recv(&mut buf)
        };
        loop {
            match next {
                Ok((len, peer)) => {
                    batch_bytes += shared.push_datagram(&mut events, &buf, len, peer)
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    tracing::debug!(source = %shared.ctx.id, %error, "syslog datagram receive failed");
                    break;
                }
            }
            if at_limit(&events, batch_bytes) {
                break;
            }
            next = socket.try_recv(&mut buf);
        }
        if events.is_empty() {
            continue;
        }
        let full = shared.ctx.out.is_full(stream_key);
        if full && overflowing {
            shared.ctx.metrics.events_in.add(events.len() as u64);
            drops.dropped(&shared, events.len() as u64);
            events.clear();
            batch_bytes = 0;
            continue;
        }
        let n = events.len() as u64;
        shared.ctx.metrics.events_in.add(n);
        let batch = Batch::new(std::mem::replace(&mut events, Vec::with_capacity(64)));
        batch_bytes = 0;
        let send = shared.ctx.out.send_async(stream_key, batch);
        if !full {
            overflowing = false;
            if send.await.is_err() {
                shared.undelivered_at_stop(n);
                break;
            }
            continue;
        }
        // A pipeline full for a moment (a sink task late on a busy runtime thread): wait
        // for room, still reading the socket into the next batch so the kernel drops
        // nothing; past that batch's limits, a datagram is dropped and counted.
        match wait_for_room(
            &shared,
            &socket,
            &mut buf,
            send,
            &mut events,
            &mut batch_bytes,
            &mut drops,
        )
        .await
        {
            Waited::Sent => overflowing = false,
            Waited::Stopped => {
                shared.undelivered_at_stop(n);
                break;
            }
            Waited::StillFull => {
                // This batch is dropped (with the send) and, while the pipeline stays full,
                // every datagram as it comes, counted.
                drops.dropped(&shared, n);
                overflowing = true;
            }
        }
    }
    // What was read while the last batch waited, when the stop came then; and what the
    // socket still holds, unless a successor takes the socket over (a reload).
    if matches!(socket, Datagrams::Unix(_)) || !handover::successor_expected() {
        drain_at_stop(&shared, &socket, &mut buf, &mut events, stream_key);
    }
    shared.send_at_stop(stream_key, events, "undelivered_at_stop");
    if let Some(kernel_drops) = &mut kernel_drops {
        kernel_drops.read(&shared.ctx.id);
    }
    remove_socket_file(path);
}

/// How long a stopping source reads what its socket still holds (senders may go on).
const DRAIN_AT_STOP: Duration = Duration::from_millis(200);

/// At the agent's stop: reads the datagrams the socket has queued (for at most
/// [`DRAIN_AT_STOP`]) into the pipeline's queue while it has room, counting the rest as
/// `undelivered_at_stop`, so none is lost uncounted with the socket.
fn drain_at_stop(
    shared: &Shared,
    socket: &Datagrams,
    buf: &mut [u8],
    events: &mut Vec<Event>,
    stream_key: u64,
) {
    let until = std::time::Instant::now() + DRAIN_AT_STOP;
    let mut bytes = 0;
    while std::time::Instant::now() < until {
        let Ok((len, peer)) = socket.try_recv(buf) else {
            break;
        };
        bytes += shared.push_datagram(events, buf, len, peer);
        if events.len() >= shared.settings.batch_events || bytes >= shared.settings.batch_bytes {
            shared.send_at_stop(stream_key, std::mem::take(events), "undelivered_at_stop");
            bytes = 0;
        }
    }
}

/// How often, at most, dropped datagrams are logged.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// The WARN line for dropped datagrams: at the first drop, then at most every
/// [`DROP_LOG_EVERY`] with how many were dropped since the last line (the counter has them
/// all; the log says that it is happening, not once per datagram).
struct DropLog(LogEvery);

impl DropLog {
    /// Counts `n` dropped datagrams (`udp_overflow`) and logs them when it is time.
    fn dropped(&mut self, shared: &Shared, n: u64) {
        shared.counters.udp_overflow.add(n);
        if let Some(due) = self.0.add(n, std::time::Instant::now()) {
            tracing::warn!(
                source = %shared.ctx.id,
                dropped = due.count,
                since_last_line_secs = due.since_last_line_secs,
                "syslog datagrams dropped: the pipeline stayed full (a sink slow or down); counted in sluice_events_dropped_total{{reason=\"udp_overflow\"}}"
            );
        }
    }
}

/// How a wait for room in a full pipeline ended.
enum Waited {
    Sent,
    StillFull,
    Stopped,
}

/// Waits up to [`FULL_WAIT`] for `send` to find room, still reading datagrams into
/// `events` (the next batch) up to the batch limits; past them, a datagram is dropped and
/// counted.
async fn wait_for_room(
    shared: &Shared,
    socket: &Datagrams,
    buf: &mut [u8],
    send: impl std::future::Future<Output = Result<(), crate::source::Stopped>>,
    events: &mut Vec<Event>,
    batch_bytes: &mut usize,
    drops: &mut DropLog,
) -> Waited {
    let settings = shared.settings;
    let deadline = tokio::time::sleep(FULL_WAIT);
    tokio::pin!(send, deadline);
    loop {
        tokio::select! {
            sent = &mut send => {
                return if sent.is_ok() { Waited::Sent } else { Waited::Stopped };
            }
            () = &mut deadline => return Waited::StillFull,
            got = socket.recv(buf) => {
                let Ok((len, peer)) = got else { continue };
                if events.len() < settings.batch_events && *batch_bytes < settings.batch_bytes {
                    *batch_bytes += shared.push_datagram(events, buf, len, peer);
                } else {
                    shared.ctx.metrics.events_in.add(1);
                    drops.dropped(shared, 1);
                }
            }
        }
    }
}

/// Removes a Unix datagram socket's file when its source stops.
fn remove_socket_file(path: Option<PathBuf>) {
    if let Some(path) = path {
        let _ = std::fs::remove_file(path);
    }
}

impl Shared {
    /// Adds the datagram of `len` bytes in `buf` (cut at `max_message_bytes`) to `events`;
    /// returns the bytes kept.
    fn push_datagram(
        &self,
        events: &mut Vec<Event>,
        buf: &[u8],
        len: usize,
        peer: Option<SocketAddr>,
    ) -> usize {
        let kept = len.min(self.settings.max_message_bytes);
        let peer = peer.map(|peer| peer.ip().to_string());
        events.push(self.event(&buf[..kept], len > kept, peer.as_deref(), Timestamp::now()));
        kept
    }
}
