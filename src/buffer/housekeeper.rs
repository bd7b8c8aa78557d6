//! The housekeeping thread of a disk buffer: periodic fsyncs (then the batches written
//! since are acknowledged), deleting segments the sink has acknowledged, saving the read
//! position, and the buffer's gauges and `/health`.
//!
//! Owns: the housekeeper loop and what it does each tick. Never: writes records (the
//! writer does) or deletes the segment being written.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::segment;
use super::writer::{lock, sync, Shared, POSITION_FILE, TICK};
use super::{SyncPolicy, WhenFull};
use crate::event::Timestamp;

/// The housekeeping loop (its own thread), until the sink and the reader are done.
pub(super) fn housekeep(shared: Arc<Shared>) {
    let sync_every = match shared.settings.sync {
        SyncPolicy::Always => None,
        SyncPolicy::Interval(every) => Some(every),
    };
    let mut last_sync = Instant::now();
    // The acknowledged position last saved: segments are deleted only behind it, so that
    // after any stop a position between the saved one and the first segment is missing
    // data (start-up recovery reports it), never data delivered but not yet noted.
    let mut saved: Option<u64> = None;
    loop {
        // Every tick, or sooner for the next fsync; not at each record (the writer wakes
        // only the reader).
        let wait = sync_every.map_or(TICK, |every| {
            TICK.min(every.saturating_sub(last_sync.elapsed()))
        });
        let done = {
            let state = lock(&shared);
            let state = shared
                .ended
                .wait_timeout(state, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            state.sink_done && state.reader_done
        };
        if sync_every.is_some_and(|every| last_sync.elapsed() >= every) || done {
            last_sync = Instant::now();
            sync(&shared);
        }
        let committed = shared.tracker.committed();
        if saved != Some(committed) {
            match save_position(&shared.dir, committed) {
                Ok(()) => saved = Some(committed),
                Err(error) => {
                    tracing::warn!(buffer = %shared.dir.display(), %error, "disk buffer: read position not saved")
                }
            }
        }
        collect(&shared, committed, saved.unwrap_or(0));
        if done {
            shared.health.ok();
            return;
        }
    }
}

/// Deletes the segments wholly before `saved` (acknowledged, and that saved), updates the
/// gauges (from `committed`) and `/health`.
fn collect(shared: &Shared, committed: u64, saved: u64) {
    let mut state = lock(shared);
    while let Some(&(end, n, _)) = state.in_flight.front() {
        if end > committed {
            break;
        }
        state.in_flight.pop_front();
        state.events = state.events.saturating_sub(u64::from(n));
    }
    let active = state.segments.last_key_value().map(|(s, _)| *s);
    let done: Vec<(u64, u64)> = state
        .segments
        .iter()
        .filter(|(start, end)| **end <= saved.min(committed) && Some(**start) != active)
        .map(|(s, e)| (*s, *e))
        .collect();
    for (start, end) in done {
        state.unread.remove(&start);
        match std::fs::remove_file(shared.dir.join(segment::file_name(start))) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(buffer = %shared.dir.display(), %error, "disk buffer: acknowledged segment not deleted");
                continue;
            }
        }
        state.segments.remove(&start);
        state.bytes = state.bytes.saturating_sub(end - start);
    }
    let oldest = state
        .in_flight
        .front()
        .map(|(_, _, at)| *at)
        .or(state.oldest_unread);
    let age = match (state.events, oldest) {
        (0, _) | (_, None) => 0,
        (_, Some(at)) => (Timestamp::now().0.saturating_sub(at) / 1_000_000_000).max(0),
    };
    shared.gauges.oldest_seconds.set(age);
    shared.gauges.events.set(state.events as i64);
    shared.gauges.bytes.set(state.bytes as i64);
    let (bytes, max, waiting) = (state.bytes, shared.settings.max_bytes, state.waiting());
    let write_error = state.write_error.clone();
    drop(state);
    shared.room.notify_all();
    match write_error {
        Some(error) => shared
            .health
            .fail(format!("disk buffer write failing: {error}")),
        None => health(shared, bytes, max, waiting),
    }
}

/// `waiting`: a writer waits for room, whatever the bytes say (a large batch does not fit
/// though the buffer is some way below `max`).
pub(super) fn health(shared: &Shared, bytes: u64, max: u64, waiting: bool) {
    let percent = bytes.saturating_mul(100) / max.max(1);
    let full = waiting || bytes + segment::RECORD_HEADER_BYTES * 1024 >= max;
    if full && shared.settings.when_full == WhenFull::Block {
        shared.health.fail(format!(
            "disk buffer full ({bytes} of {max} bytes): its pipeline waits (when_full: block)"
        ));
    } else if percent >= 80 {
        shared.health.warn(format!(
            "disk buffer {percent}% full ({bytes} of {max} bytes)"
        ));
    } else {
        shared.health.ok();
    }
}

fn save_position(dir: &Path, position: u64) -> io::Result<()> {
    save_number(dir, POSITION_FILE, position)
}

/// Writes `value` to the file `name` in `dir` whole (a temporary file renamed over it).
pub(super) fn save_number(dir: &Path, name: &str, value: u64) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, format!("{value}\n"))?;
    std::fs::rename(tmp, dir.join(name))
}
