//! The sockets of a syslog source: binding them (UDP, Unix datagram, TCP plain or TLS, Unix
//! stream), and for streams the accept loop with one tokio task per connection (the
//! datagram receive loop is in `datagrams.rs`).
//!
//! Owns: binding, accepting, the connection limit, reading streams, batching and
//! backpressure. A stream connection's batch is handed over with `send_async` before the
//! next read, so a full pipeline stops reading (TCP flow control pushes back to the
//! sender). Never: spawns a thread per connection, or keeps running after the shutdown
//! signal.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::datagrams::{serve_datagrams, Datagrams};
use super::framing::Decoder;
use super::handover::{self, Key};
use super::{Counters, Listen, Shared, Syslog};
use crate::batch::Batch;
use crate::event::{Event, Timestamp};
use crate::source::{Running, SourceContext};
use crate::supervision::propagate_panic;

/// Bytes asked for per stream read: large enough for many messages per batch.
const READ_CHUNK: usize = 32 * 1024;
/// Pending connections the kernel holds before `accept`.
const LISTEN_BACKLOG: u32 = 4096;
/// A TLS client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the socket (errors stop the agent at start) and spawns the serving task.
pub(super) fn start(source: Syslog, ctx: SourceContext) -> anyhow::Result<Running> {
    let _runtime = ctx.runtime.enter();
    let runtime = ctx.runtime.clone();
    let id = ctx.id.clone();
    let mut settings = source.settings;
    // A connection is a descriptor: more than the open-file limit leaves would make
    // accepts, checkpoint writes and `/health` fail with EMFILE under a flood.
    if let Some(allowed) = crate::limits::connections_allowed() {
        if settings.max_connections > allowed {
            tracing::warn!(source = %id, configured = settings.max_connections, allowed, "max_connections lowered to what the open-file limit leaves");
            settings.max_connections = allowed;
        }
    }
    let shared = Arc::new(Shared {
        settings,
        counters: Counters::new(&ctx.metrics),
        ctx,
        open_connections: AtomicUsize::new(0),
        buffered_bytes: AtomicUsize::new(0),
        next_connection: AtomicU64::new(0),
    });
    let task = match source.listen {
        Listen::Udp(address) => {
            let (socket, reused, claim) = handover::claim(Key::Udp(address), || {
                Ok(std::net::UdpSocket::bind(address)?.into())
            })
            .with_context(|| format!("bind udp {address}"))?;
            let socket = std::net::UdpSocket::from(socket);
            socket.set_nonblocking(true)?;
            let buffer = set_receive_buffer(&socket, settings.receive_buffer_bytes);
            let socket = tokio::net::UdpSocket::from_std(socket)?;
            tracing::info!(source = %id, %address, receive_buffer_bytes = buffer, reused, "syslog listening on udp");
            runtime.spawn(async move {
                let _claim = claim;
                serve_datagrams(shared, Datagrams::Udp(socket), None).await;
            })
        }
        Listen::Tcp(address) => {
            let (listener, reused, claim) = handover::claim(Key::Tcp(address), || {
                Ok(bind_tcp(address)?.into_std()?.into())
            })
            .with_context(|| format!("bind tcp {address}"))?;
            let listener = std::net::TcpListener::from(listener);
            listener.set_nonblocking(true)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let tls = source.tls.map(|tls| TlsAcceptor::from(tls.0));
            tracing::info!(source = %id, %address, tls = tls.is_some(), reused, "syslog listening on tcp");
            runtime.spawn(async move {
                let _claim = claim;
                accept_tcp(shared, listener, tls).await;
            })
        }
        Listen::UnixStream(path, mode) => {
            prepare_socket_path(&path)?;
            let listener = std::os::unix::net::UnixListener::bind(&path)
                .with_context(|| format!("bind unix socket {}", path.display()))?;
            set_socket_mode(&path, mode)?;
            listener.set_nonblocking(true)?;
            let listener = tokio::net::UnixListener::from_std(listener)?;
            tracing::info!(source = %id, path = %path.display(), "syslog listening on unix stream socket");
            runtime.spawn(accept_unix(shared, listener, path))
        }
        Listen::UnixDatagram(path, mode) => {
            prepare_socket_path(&path)?;
            let socket = std::os::unix::net::UnixDatagram::bind(&path)
                .with_context(|| format!("bind unix socket {}", path.display()))?;
            set_socket_mode(&path, mode)?;
            socket.set_nonblocking(true)?;
            let buffer = set_receive_buffer(&socket, settings.receive_buffer_bytes);
            let socket = tokio::net::UnixDatagram::from_std(socket)?;
            tracing::info!(source = %id, path = %path.display(), receive_buffer_bytes = buffer, "syslog listening on unix datagram socket");
            runtime.spawn(serve_datagrams(shared, Datagrams::Unix(socket), Some(path)))
        }
    };
    Ok(Running::Task(task))
}

/// Asks for a `bytes` receive buffer (`SO_RCVBUF`; the kernel caps it at
/// `net.core.rmem_max`) and returns what it granted, in the same units as asked (Linux
/// reports twice the size, the half it adds for its bookkeeping). Less than asked is a
/// WARN naming the sysctl; a refusal leaves the system default: not a reason to stop.
fn set_receive_buffer(socket: impl std::os::fd::AsFd, bytes: usize) -> usize {
    let socket = socket2::SockRef::from(&socket);
    if let Err(error) = socket.set_recv_buffer_size(bytes) {
        tracing::warn!(%error, bytes, "could not set the socket's receive buffer");
    }
    let granted = socket.recv_buffer_size().unwrap_or(0) / 2;
    if granted < bytes {
        tracing::warn!(
            asked = bytes,
            granted,
            "the kernel granted a smaller datagram receive buffer than receive_buffer_bytes asks (net.core.rmem_max caps it): bursts while the pipeline is full may be dropped by the kernel, uncounted; raise net.core.rmem_max"
        );
    }
    granted
}

fn bind_tcp(address: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Removes a stale socket file at `path` (never a regular file) and creates its directory.
fn prepare_socket_path(path: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path)
                .with_context(|| format!("remove stale socket {}", path.display()))?;
        }
        Ok(_) => anyhow::bail!(
            "{} exists and is not a socket; not replacing it",
            path.display()
        ),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error).with_context(|| format!("{}", path.display())),
    }
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    Ok(())
}

fn set_socket_mode(path: &Path, mode: Option<u32>) -> anyhow::Result<()> {
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("set socket_mode on {}", path.display()))?;
    }
    Ok(())
}

/// An admitted stream connection: counted open until dropped.
struct Connection {
    shared: Arc<Shared>,
    /// The stream key that keeps this connection's batches in order.
    stream_key: u64,
}

impl Shared {
    /// Admits one more connection, or counts a refusal when `max_connections` are open.
    fn admit(self: &Arc<Self>) -> Option<Connection> {
        let open = self.open_connections.fetch_add(1, Ordering::AcqRel);
        if open >= self.settings.max_connections {
            self.open_connections.fetch_sub(1, Ordering::AcqRel);
            self.counters.connections_refused.inc();
            tracing::debug!(source = %self.ctx.id, open, "syslog connection refused: max_connections reached");
            return None;
        }
        self.counters.connections_total.inc();
        self.counters.connections_open.add(1);
        Some(Connection {
            shared: self.clone(),
            stream_key: self.next_connection.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Hands `events` to the pipeline, waiting while it is full. False when stopping.
    async fn flush(&self, stream_key: u64, events: &mut Vec<Event>) -> bool {
        if events.is_empty() {
            return true;
        }
        let batch = Batch::new(std::mem::replace(events, Vec::with_capacity(64)));
        let n = batch.events.len() as u64;
        self.ctx.metrics.events_in.add(n);
        let sent = self.ctx.out.send_async(stream_key, batch).await.is_ok();
        if !sent {
            self.undelivered_at_stop(n);
        }
        sent
    }

    /// At a stop: hands `events` (read, not yet counted) over if the pipeline's queue has
    /// room now, else counts them dropped for `reason`.
    pub(super) fn send_at_stop(&self, stream_key: u64, events: Vec<Event>, reason: &str) {
        let n = events.len() as u64;
        if n == 0 {
            return;
        }
        self.ctx.metrics.events_in.add(n);
        if self
            .ctx
            .out
            .try_send_at_stop(stream_key, Batch::new(events))
            .is_err()
        {
            self.ctx.metrics.dropped(reason).add(n);
        }
    }

    /// Counts `n` events (received and counted in) that a stop refused.
    pub(super) fn undelivered_at_stop(&self, n: u64) {
        self.ctx.metrics.dropped("undelivered_at_stop").add(n);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.open_connections.fetch_sub(1, Ordering::AcqRel);
        self.shared.counters.connections_open.add(-1);
    }
}

/// Waits for `duration` or the shutdown signal; true when stopping.
async fn pause(shared: &Shared, duration: Duration) -> bool {
    tokio::select! {
        _ = shared.ctx.shutdown.wait() => true,
        _ = tokio::time::sleep(duration) => false,
    }
}

async fn accept_tcp(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    tls: Option<TlsAcceptor>,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shared.ctx.shutdown.wait() => break,
            // Reaps ended connections; one that panicked takes the source down with it
            // (see `supervision`).
            Some(joined) = connections.join_next() => {
                propagate_panic(joined);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(source = %shared.ctx.id, %error, "syslog accept failed");
                if pause(&shared, Duration::from_millis(100)).await {
                    break;
                }
                continue;
            }
        };
        let Some(connection) = shared.admit() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        connections.spawn(async move {
            let peer = peer.ip().to_string();
            let shared = connection.shared.clone();
            match tls {
                None => serve_stream(&shared, stream, Some(&peer), connection.stream_key).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    let result = tokio::select! {
                        _ = shared.ctx.shutdown.wait() => return,
                        result = handshake => result,
                    };
                    match result {
                        Ok(Ok(stream)) => serve_stream(&shared, stream, Some(&peer), connection.stream_key).await,
                        Ok(Err(error)) => {
                            shared.counters.tls_errors.inc();
                            tracing::debug!(source = %shared.ctx.id, %peer, %error, "syslog tls handshake failed");
                        }
                        Err(_) => {
                            shared.counters.tls_errors.inc();
                            tracing::debug!(source = %shared.ctx.id, %peer, "syslog tls handshake timed out");
                        }
                    }
                }
            }
            drop(connection);
        });
    }
    while let Some(joined) = connections.join_next().await {
        propagate_panic(joined);
    }
}

async fn accept_unix(shared: Arc<Shared>, listener: tokio::net::UnixListener, path: PathBuf) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shared.ctx.shutdown.wait() => break,
            // Reaps ended connections; one that panicked takes the source down with it
            // (see `supervision`).
            Some(joined) = connections.join_next() => {
                propagate_panic(joined);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(source = %shared.ctx.id, %error, "syslog accept failed");
                if pause(&shared, Duration::from_millis(100)).await {
                    break;
                }
                continue;
            }
        };
        let Some(connection) = shared.admit() else {
            continue;
        };
        connections.spawn(async move {
            let shared = connection.shared.clone();
            serve_stream(&shared, stream, None, connection.stream_key).await;
            drop(connection);
        });
    }
    while let Some(joined) = connections.join_next().await {
        propagate_panic(joined);
    }
    let _ = std::fs::remove_file(&path);
}

/// Reads one stream connection until it ends, idles out, or the agent stops: frames,
/// parses, and hands each read's messages over as one batch before reading again. A
/// stream the peer ended is shut down in turn (for TLS: a `close_notify`).
async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    mut stream: S,
    peer: Option<&str>,
    stream_key: u64,
) {
    if read_stream(shared, &mut stream, peer, stream_key).await {
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
    }
}

/// The read loop of [`serve_stream`]: true when the peer ended the stream cleanly.
async fn read_stream<R: AsyncRead + Unpin>(
    shared: &Shared,
    reader: &mut R,
    peer: Option<&str>,
    stream_key: u64,
) -> bool {
    let settings = shared.settings;
    let mut decoder = Decoder::new(settings.framing, settings.max_message_bytes);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut batch_bytes = 0usize;
    let mut held = Held { shared, bytes: 0 };
    loop {
        if buf.is_empty() && buf.capacity() > 2 * READ_CHUNK {
            // A burst (or a long frame) grew the buffer: give the memory back.
            buf = BytesMut::new();
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        held.set(buf.len());
        let read = tokio::select! {
            _ = shared.ctx.shutdown.wait() => {
                stop_with_partial(shared, &mut decoder, &mut buf, peer, stream_key);
                return false;
            }
            read = read_some(reader, &mut buf, settings.idle_timeout) => read,
        };
        let (end, clean) = match read {
            Ok(0) => (true, true),
            Ok(_) => (false, false),
            Err(error) => {
                tracing::debug!(source = %shared.ctx.id, peer = peer.unwrap_or("unix"), %error, "syslog connection closed");
                (true, false)
            }
        };
        let received = Timestamp::now();
        loop {
            let frame = if end {
                decoder.decode_eof(&mut buf)
            } else {
                decoder.decode(&mut buf)
            };
            let Some(frame) = frame else { break };
            batch_bytes += frame.bytes.len();
            events.push(shared.event(&frame.bytes, frame.truncated, peer, received));
            if events.len() >= settings.batch_events || batch_bytes >= settings.batch_bytes {
                batch_bytes = 0;
                if !shared.flush(stream_key, &mut events).await {
                    return false;
                }
            }
        }
        batch_bytes = 0;
        if !shared.flush(stream_key, &mut events).await {
            return false;
        }
        if !buf.is_empty() && held.over_budget(buf.len()) {
            shared.counters.buffer_closes.inc();
            tracing::debug!(source = %shared.ctx.id, peer = peer.unwrap_or("unix"), "syslog connection closed: max_buffered_bytes held by partial frames");
            return false;
        }
        if end {
            return clean;
        }
    }
}

/// At a stop (SIGTERM, a reload restarting the pipeline) what a connection holds of a
/// message not ended yet goes on as it is, marked `truncated`, as when the peer closes; if
/// the pipeline's queue has no room for it it is counted as dropped
/// (`reason="partial_at_stop"`).
fn stop_with_partial(
    shared: &Shared,
    decoder: &mut Decoder,
    buf: &mut BytesMut,
    peer: Option<&str>,
    stream_key: u64,
) {
    let received = Timestamp::now();
    let mut events = Vec::new();
    while let Some(frame) = decoder.decode_eof(buf) {
        events.push(shared.event(&frame.bytes, true, peer, received));
    }
    shared.send_at_stop(stream_key, events, "partial_at_stop");
}

/// A connection's share of [`Shared::buffered_bytes`]: the bytes of the partial frame it
/// holds (read, not yet a whole message), given back when dropped.
struct Held<'a> {
    shared: &'a Shared,
    bytes: usize,
}

impl Held<'_> {
    fn set(&mut self, bytes: usize) {
        let total = &self.shared.buffered_bytes;
        if bytes > self.bytes {
            total.fetch_add(bytes - self.bytes, Ordering::AcqRel);
        } else {
            total.fetch_sub(self.bytes - bytes, Ordering::AcqRel);
        }
        self.bytes = bytes;
    }

    /// Records `bytes` held; true when all connections together hold too much.
    fn over_budget(&mut self, bytes: usize) -> bool {
        self.set(bytes);
        self.shared.buffered_bytes.load(Ordering::Acquire) > self.shared.settings.max_buffered_bytes
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.set(0);
    }
}

async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    idle: Option<Duration>,
) -> io::Result<usize> {
    match idle {
        None => reader.read_buf(buf).await,
        Some(idle) => tokio::time::timeout(idle, reader.read_buf(buf))
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout"))),
    }
}
