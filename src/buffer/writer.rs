//! The writing side of a disk buffer: opens (recovers) it, appends one record per batch
//! from the workers, applies `when_full`, and acknowledges a batch's copy for this sink
//! once its record is on disk (fsynced at once with `always`; else by the housekeeping
//! thread, `housekeeper.rs`, every `sync_interval_ms`).
//!
//! Owns: the segment being written (one writer per buffer, behind one lock) and the space
//! accounting. Never: acknowledges a batch before its record is fsynced, or lets two
//! buffers in one process open the same directory.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::housekeeper::health;
use super::segment::{self, HEADER_BYTES};
use super::{BufferSettings, SyncPolicy, WhenFull};
use crate::ack::{AckRef, StreamTracker};
use crate::batch::Batch;
use crate::event::Timestamp;
use crate::health::HealthCheck;
use crate::shutdown::Shutdown;
use crate::telemetry::{ComponentMetrics, Counter, Gauge};

/// How often the housekeeper wakes (it fsyncs only every `sync_interval_ms`).
pub(super) const TICK: Duration = Duration::from_millis(100);
/// How often a failed write is tried again.
const WRITE_RETRY: Duration = Duration::from_secs(1);
/// The file holding the acknowledged position.
pub(super) const POSITION_FILE: &str = "acknowledged";
/// The file holding the position up to which the newest segment was last fsynced: at
/// start, a buffer ending before it lost durable data (see `recovery.rs`).
pub(super) const DURABLE_FILE: &str = "durable";

/// State shared by the writer, the reader and the housekeeper of one buffer.
pub(super) struct Shared {
    pub dir: PathBuf,
    pub settings: BufferSettings,
    pub state: Mutex<State>,
    /// Writers wait here for room (`when_full: block`).
    pub room: Condvar,
    /// The reader waits here for records.
    pub data: Condvar,
    /// The housekeeper waits here between ticks: woken early only when the sink or the
    /// reader ends (not by every record, as it was when it shared `data`).
    pub ended: Condvar,
    /// The read side's acknowledgements (positions).
    pub tracker: StreamTracker,
    pub shutdown: Shutdown,
    pub gauges: Gauges,
    pub health: HealthCheck,
}

pub(super) struct Gauges {
    pub bytes: Gauge,
    pub events: Gauge,
    pub oldest_seconds: Gauge,
    pub dropped_full: super::FullDrops,
    /// Events of sources that cannot be read again that could not be buffered.
    pub not_buffered: Counter,
}

pub(super) struct State {
    /// start → end position of every segment (the last one is being written).
    pub segments: BTreeMap<u64, u64>,
    active: Option<File>,
    /// Acknowledgements waiting for the next fsync.
    unsynced: Vec<AckRef>,
    /// Events not acknowledged by the sink.
    pub events: u64,
    /// Records handed to the sink and not acknowledged: (end position, events, written at).
    pub in_flight: VecDeque<(u64, u32, i64)>,
    /// When the oldest record not yet read was written, if known.
    pub oldest_unread: Option<i64>,
    /// The writer is gone: no more records will come.
    pub closed: bool,
    /// The reader thread ended.
    pub reader_done: bool,
    /// The sink ended: the last acknowledgements are in.
    pub sink_done: bool,
    /// The reader found damage in the segment being written: start a new one.
    pub roll_requested: bool,
    /// Bytes on disk.
    pub bytes: u64,
    /// Per segment (by start): events in it not yet read. What the reader skips of a damaged
    /// segment leaves `events` by this much, so the gauge counts only what can be delivered.
    pub unread: BTreeMap<u64, u64>,
    /// Writers waiting for room (`when_full: block`): the buffer is full for `/health`.
    waiting: u32,
    /// The reader waits on `data`: a record appended wakes it (else no wake-up is sent).
    pub reader_waiting: bool,
    /// The last write failed (this error): a writer is trying again, `/health` says so.
    pub write_error: Option<String>,
    /// The lowest position a new segment may start at: where this run's first segment
    /// goes (never at or before a position the sink acknowledged), when it could not be
    /// started at open (a full disk) and is started by the first write.
    floor: u64,
}

impl State {
    pub fn write_end(&self) -> u64 {
        let end = self.segments.last_key_value().map_or(0, |(_, end)| *end);
        end.max(self.floor)
    }

    /// A writer waits for room.
    pub fn waiting(&self) -> bool {
        self.waiting > 0
    }
}

fn open_dirs() -> &'static Mutex<HashSet<PathBuf>> {
    static OPEN: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    OPEN.get_or_init(Default::default)
}

pub(super) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Claims `dir` for this process; waits up to 10 s for a buffer of a stopping pipeline
/// (a reload) to let it go.
fn claim(dir: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut open = open_dirs().lock().unwrap_or_else(|p| p.into_inner());
        if open.insert(dir.to_owned()) {
            return Ok(());
        }
        drop(open);
        anyhow::ensure!(
            Instant::now() < deadline,
            "disk buffer {} is still in use by a pipeline that is stopping",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        open_dirs()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.dir);
    }
}

/// Opens (recovering) the buffer in `dir` and starts a new segment to write.
pub(super) fn open(
    dir: &Path,
    settings: BufferSettings,
    metrics: &ComponentMetrics,
    health: HealthCheck,
    shutdown: Shutdown,
) -> anyhow::Result<Arc<Shared>> {
    std::fs::create_dir_all(dir)?;
    claim(dir)?;
    let gauges = Gauges {
        bytes: metrics.gauge(
            "sluice_buffer_bytes",
            "Bytes a sink's disk buffer holds on disk.",
            &[],
        ),
        events: super::events_gauge(metrics),
        oldest_seconds: metrics.gauge(
            "sluice_buffer_oldest_seconds",
            "Age of the oldest undelivered event in a sink's disk buffer.",
            &[],
        ),
        dropped_full: super::FullDrops::new(metrics),
        not_buffered: metrics.dropped("buffer_not_written"),
    };
    let shared = |state| {
        Arc::new(Shared {
            dir: dir.to_owned(),
            settings,
            state: Mutex::new(state),
            room: Condvar::new(),
            data: Condvar::new(),
            ended: Condvar::new(),
            tracker: StreamTracker::detached(0),
            shutdown,
            gauges,
            health,
        })
    };
    let acknowledged = read_position(dir);
    let durable = std::fs::read_to_string(dir.join(DURABLE_FILE))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0);
    let recovered = match super::recovery::recover(dir, acknowledged, durable) {
        Ok(recovered) => recovered,
        Err(error) => {
            // Release the claim before failing.
            drop(shared(empty_state()));
            return Err(anyhow::Error::new(error).context(format!("disk buffer {}", dir.display())));
        }
    };
    metrics
        .counter(
            "sluice_buffer_lost_bytes_total",
            "Bytes of a sink's disk buffer found damaged or missing at start (their events are lost).",
            &[],
        )
        .add(recovered.lost_bytes);
    let mut state = empty_state();
    state.events = recovered.events;
    state.oldest_unread = recovered.oldest;
    for ((start, end), events) in recovered.segments.iter().zip(&recovered.segment_events) {
        state.unread.insert(*start, *events);
        state.segments.insert(*start, *end);
        state.bytes += end - start;
    }
    // Never reuse a position at or before one the sink acknowledged.
    let start = state.write_end().max(acknowledged);
    let shared = shared(state);
    let read_from = recovered
        .segments
        .first()
        .map_or(start, |(first, _)| acknowledged.max(*first));
    {
        let mut state = lock(&shared);
        state.floor = start;
        match start_segment(&shared, &mut state, start) {
            Ok(()) => {}
            // A full disk at start: the agent starts (what the buffer holds is delivered,
            // which frees room) and the first write starts the segment, waiting and
            // retrying with the error on `/health` as any write on a full disk does.
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                ) =>
            {
                tracing::error!(buffer = %dir.display(), %error, "disk buffer: no room to start a segment; writes wait until there is");
            }
            Err(error) => {
                return Err(anyhow::Error::new(error).context(format!(
                    "disk buffer {}: cannot start a segment",
                    dir.display()
                )))
            }
        }
    }
    let tracker = &shared.tracker;
    // The tracker's positions are buffer positions: start it where reading starts.
    *crate::ack::lock(&tracker.stream) =
        crate::ack::StreamState::new(read_from, Default::default());
    tracing::info!(
        buffer = %dir.display(), events = recovered.events, segments = recovered.segments.len(),
        "disk buffer opened"
    );
    Ok(shared)
}

fn empty_state() -> State {
    State {
        segments: BTreeMap::new(),
        active: None,
        unsynced: Vec::new(),
        events: 0,
        in_flight: VecDeque::new(),
        oldest_unread: None,
        closed: false,
        reader_done: false,
        sink_done: false,
        roll_requested: false,
        bytes: 0,
        unread: BTreeMap::new(),
        waiting: 0,
        reader_waiting: false,
        write_error: None,
        floor: 0,
    }
}

/// Where reading starts: the acknowledged position saved by the last run (0 if none, or if
/// it cannot be read: everything left is sent again).
pub(super) fn read_position(dir: &Path) -> u64 {
    let path = dir.join(POSITION_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            tracing::warn!(file = %path.display(), "disk buffer: acknowledged position unreadable; what the buffer holds is sent again from its start");
            0
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
        Err(error) => {
            tracing::warn!(file = %path.display(), %error, "disk buffer: acknowledged position unreadable; what the buffer holds is sent again from its start");
            0
        }
    }
}

/// Closes the segment being written (fsynced) and starts one at `start`. A segment file
/// that could not be started whole (a full disk) is removed, so that the next try can
/// create it again.
fn start_segment(shared: &Shared, state: &mut State, start: u64) -> io::Result<()> {
    if let Some(old) = state.active.take() {
        old.sync_data()?;
    }
    let path = shared.dir.join(segment::file_name(start));
    let create = || OpenOptions::new().create_new(true).append(true).open(&path);
    let mut file = match create() {
        // Left by an earlier try of this run that failed (not one of the buffer's segments).
        Err(error)
            if error.kind() == io::ErrorKind::AlreadyExists
                && !state.segments.contains_key(&start) =>
        {
            std::fs::remove_file(&path)?;
            create()?
        }
        other => other?,
    };
    let started = file
        .write_all(&segment::header(start))
        .and_then(|()| file.sync_data())
        .and_then(|()| File::open(&shared.dir)?.sync_all());
    if let Err(error) = started {
        drop(file);
        let _ = std::fs::remove_file(&path);
        return Err(error);
    }
    state.active = Some(file);
    state.segments.insert(start, start + HEADER_BYTES);
    state.bytes += HEADER_BYTES;
    Ok(())
}

/// What became of a batch handed to [`append`].
pub(super) enum Appended {
    /// In the buffer (acknowledged for this sink once fsynced).
    Buffered,
    /// Dropped: the buffer was full with `when_full: drop_newest` (counted).
    DroppedFull,
    /// Not buffered: full at shutdown, or a write error (its acks abandoned).
    Failed,
}

/// Appends `batch` as one record, built in `record` (the worker thread's scratch). Runs on
/// a worker thread; blocks while the buffer is full with `when_full: block`.
pub(super) fn append(shared: &Shared, batch: Batch, record: &mut Vec<u8>) -> Appended {
    let Batch {
        events,
        mut acks,
        home,
    } = batch;
    // The whole record (headers, events, CRC) is built here, outside the lock: the lock
    // covers only the `write`.
    segment::begin_record(record);
    super::codec::encode(&events, record);
    let n_events = events.len() as u32;
    if let Some(home) = home {
        home.give(events);
    }
    segment::finish_record(record, n_events, Timestamp::now().0);
    let record_bytes = record.len() as u64;
    let state = lock(shared);
    let (mut state, waited) = match make_room(shared, state, record_bytes, n_events, &mut acks) {
        Ok(room) => room,
        Err(appended) => return appended,
    };
    if waited {
        // Written now, not when it was built.
        segment::finish_record(record, n_events, Timestamp::now().0);
    }
    // A write that fails (a full disk, an I/O error) is tried again every second while
    // `when_full` says to wait, with the error on `/health`; the pipeline waits meanwhile.
    while let Err(error) = write_record(shared, &mut state, record) {
        let first = state.write_error.is_none();
        state.write_error = Some(error.to_string());
        if shared.settings.when_full == WhenFull::DropNewest || shared.shutdown.is_triggered() {
            drop(state);
            if first || shared.shutdown.is_triggered() {
                tracing::error!(buffer = %shared.dir.display(), %error, n_events, "disk buffer write failed; the batch is not buffered");
            }
            if shared.settings.when_full == WhenFull::DropNewest {
                shared.gauges.dropped_full.add(u64::from(n_events));
                acks.drain(..).for_each(AckRef::done);
                return Appended::DroppedFull;
            }
            if !replayable(&acks) {
                shared.gauges.not_buffered.add(u64::from(n_events));
                acks.drain(..).for_each(AckRef::done); // counted here, not again as lost
            }
            return Appended::Failed;
        }
        if first {
            tracing::error!(buffer = %shared.dir.display(), %error, "disk buffer write failed; its pipeline waits and the write is tried again every second");
        }
        shared
            .health
            .fail(format!("disk buffer write failing: {error}"));
        // `room` is signalled at every housekeeping tick: wait out the whole interval.
        let retry_at = Instant::now() + WRITE_RETRY;
        while !shared.shutdown.is_triggered() {
            let Some(left) = retry_at.checked_duration_since(Instant::now()) else {
                break;
            };
            state = shared
                .room
                .wait_timeout(state, left.min(TICK))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
    if state.write_error.take().is_some() {
        tracing::info!(buffer = %shared.dir.display(), "disk buffer writes again");
        let bytes = state.bytes;
        health(shared, bytes, shared.settings.max_bytes, false);
    }
    state.events += u64::from(n_events);
    if let Some(active) = state.segments.last_key_value().map(|(s, _)| *s) {
        *state.unread.entry(active).or_default() += u64::from(n_events);
    }
    shared.gauges.events.set(state.events as i64);
    shared.gauges.bytes.set(state.bytes as i64);
    if state.reader_waiting {
        shared.data.notify_all();
    }
    if shared.settings.sync == SyncPolicy::Always {
        let result = state.active.as_ref().map_or(Ok(()), File::sync_data);
        drop(state);
        if result.is_ok() {
            for ack in acks {
                ack.done();
            }
        }
        return Appended::Buffered;
    }
    state.unsynced.extend(acks);
    Appended::Buffered
}

/// Waits for room for a record of `record_bytes` as `when_full` says: the lock back when
/// it fits (and whether that took a wait), else what became of the batch (`acks` settled
/// when it was dropped).
fn make_room<'a>(
    shared: &'a Shared,
    mut state: MutexGuard<'a, State>,
    record_bytes: u64,
    n_events: u32,
    acks: &mut Vec<AckRef>,
) -> Result<(MutexGuard<'a, State>, bool), Appended> {
    let mut waited = false;
    while state.bytes + record_bytes > shared.settings.max_bytes && state.events > 0 {
        match shared.settings.when_full {
            WhenFull::DropNewest => {
                drop(state);
                shared.gauges.dropped_full.add(u64::from(n_events));
                for ack in acks.drain(..) {
                    ack.done();
                }
                return Err(Appended::DroppedFull);
            }
            // At shutdown the reader has stopped: room will not come. The acks are abandoned
            // (files read it again); events of other sources are lost, counted.
            WhenFull::Block if shared.shutdown.is_triggered() => {
                state.waiting -= u32::from(waited);
                drop(state);
                if !replayable(acks) {
                    shared.gauges.not_buffered.add(u64::from(n_events));
                    acks.drain(..).for_each(AckRef::done); // counted here, not again as lost
                }
                tracing::error!(buffer = %shared.dir.display(), n_events, "disk buffer full at shutdown: a batch was not buffered");
                return Err(Appended::Failed);
            }
            // The first wait says so on `/health` at once: the pipeline is stuck from now on,
            // and the housekeeper may not look before the senders notice.
            WhenFull::Block if !waited => {
                waited = true;
                state.waiting += 1;
                let bytes = state.bytes;
                drop(state);
                health(shared, bytes, shared.settings.max_bytes, true);
                state = lock(shared);
            }
            WhenFull::Block => {
                state = shared
                    .room
                    .wait_timeout(state, TICK)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
    }
    state.waiting -= u32::from(waited);
    Ok((state, waited))
}

fn write_record(shared: &Shared, state: &mut State, record: &[u8]) -> io::Result<()> {
    let end = state.write_end();
    let (start, _) = state
        .segments
        .last_key_value()
        .map_or((end, end), |(s, e)| (*s, *e));
    if state.active.is_none()
        || end - start >= shared.settings.segment_bytes
        || state.roll_requested
    {
        state.roll_requested = false;
        start_segment(shared, state, end)?;
    }
    let result = match state.active.as_mut() {
        Some(file) => file.write_all(record),
        None => Err(io::Error::other("no segment open")),
    };
    let len = record.len() as u64;
    if let Err(error) = result {
        // Cut whatever part was written (else the next start finds a damaged record); write
        // after it no more: the record goes to a new segment when it is tried again.
        let written = state.segments.last_key_value().map(|(s, e)| e - s);
        if let (Some(file), Some(written)) = (state.active.take(), written) {
            let _ = file.set_len(written);
        }
        return Err(error);
    }
    if let Some(last) = state.segments.values_mut().next_back() {
        *last += len;
    }
    state.bytes += len;
    if state.oldest_unread.is_none() {
        state.oldest_unread = Some(Timestamp::now().0);
    }
    Ok(())
}

/// The writer is gone (its pipeline's workers ended): fsync, settle, tell the reader.
pub(super) fn close(shared: &Shared) {
    let mut state = lock(shared);
    let synced = state.active.as_ref().map_or(Ok(()), File::sync_data);
    let acks = std::mem::take(&mut state.unsynced);
    let end = state.write_end();
    state.closed = true;
    drop(state);
    shared.data.notify_all();
    if synced.is_ok() {
        note_durable(shared, end);
        for ack in acks {
            ack.done();
        }
    }
}

/// Records that the buffer is on disk up to `end` (after an fsync that covered it). Not
/// fsynced itself: it only ever says less than what is durable. A failure to write it
/// only weakens the check at the next start.
fn note_durable(shared: &Shared, end: u64) {
    if let Err(error) = super::housekeeper::save_number(&shared.dir, DURABLE_FILE, end) {
        tracing::debug!(buffer = %shared.dir.display(), %error, "disk buffer: durable position not saved");
    }
}

/// True when the batch's source reads it again if it is not buffered (a position kept, or
/// a client that retries); false for events of sources that cannot (no handle, or only
/// [`AckRef::counted`] ones).
fn replayable(acks: &[AckRef]) -> bool {
    !acks.iter().all(AckRef::is_counted)
}

/// Fsyncs the segment being written, then acknowledges the batches written since.
pub(super) fn sync(shared: &Shared) {
    let (file, acks, end) = {
        let mut state = lock(shared);
        let file = state.active.as_ref().and_then(|f| f.try_clone().ok());
        (file, std::mem::take(&mut state.unsynced), state.write_end())
    };
    if acks.is_empty() {
        return;
    }
    match file.map_or(Ok(()), |f| f.sync_data()) {
        Ok(()) => {
            note_durable(shared, end);
            acks.into_iter().for_each(AckRef::done);
        }
        Err(error) => {
            tracing::error!(buffer = %shared.dir.display(), %error, "disk buffer fsync failed: its batches are not acknowledged");
        }
    }
}
