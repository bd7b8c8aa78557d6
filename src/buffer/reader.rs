//! The reading side of a disk buffer (its own thread): reads records in order from the
//! acknowledged position, one at a time, and hands each to the sink as a batch whose
//! acknowledgement is the record's end position. Memory holds one record and the sink's
//! bounded queue, whatever the buffer's size. Spent batches come back to this thread whole
//! ([`Returns`]: a [`Recycler`] per record in flight), and the next records are decoded
//! over them ([`codec::decode_into`]): their vectors, strings and fields are reused, at
//! most [`MAX_SPARES`] events of them kept, and none once reading has waited [`IDLE`].
//!
//! A sealed segment whose valid part ends early (damage found at run time; start-up
//! recovery cuts torn tails before) is left at that point: the loss is logged at ERROR and
//! counted, and reading goes on with the next segment. Passing the end of a segment is
//! itself a position the sink acknowledges at once, so a segment is deletable exactly when
//! every record in it was delivered.
//!
//! Owns: the read position. Never: hands the sink a record that failed its CRC.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::codec;
use super::segment::{self, Segment, HEADER_BYTES};
use super::writer::{lock, Shared};
use crate::batch::Batch;
use crate::event::{Event, Home, Recycler};
use crate::telemetry::{ComponentMetrics, Gauge};

/// Most spent events kept to decode over: more than one record's worth, since a sink
/// settles the batches of a request together (Loki's default request is 5,000 events).
pub(super) const MAX_SPARES: usize = 8192;

/// Records in flight whose spent events are waited for; an older one's come back to no
/// one, and the sink frees them (correct, only slower).
const MAX_IN_FLIGHT: usize = 64;

/// A reader that waited this long for records lets its spare events go.
pub(super) const IDLE: Duration = Duration::from_millis(100);

/// The reader's hand-over to the sink.
pub(super) struct Output {
    pub tx: mpsc::Sender<Batch>,
    pub queued: Gauge,
    pub runtime: tokio::runtime::Handle,
    pub metrics: ComponentMetrics,
}

/// Reads and sends until the writer is closed and everything was read, the pipeline stops,
/// or the sink is gone.
pub(super) fn run(shared: Arc<Shared>, out: Output) {
    let mut position = shared.tracker.committed();
    let mut open: Option<Segment> = None;
    let mut payload = Vec::new();
    // The sink returns spent batches here, to be decoded over or freed on this thread that
    // allocated them (mimalloc's cross-thread frees cost the drain ~10% of its CPU; see
    // `recycle.rs`).
    let mut returns = Returns::default();
    while !shared.shutdown.is_triggered() {
        returns.collect();
        let Some((start, end, active)) = locate(&shared, &mut position, &mut returns) else {
            break;
        };
        if open.as_ref().is_none_or(|s| s.start != start) {
            match Segment::open(&shared.dir.join(segment::file_name(start))) {
                Ok(Ok(segment)) => open = Some(segment),
                Ok(Err(_)) | Err(_) => {
                    position = skip(&shared, &out, (start, end, active), position);
                    continue;
                }
            }
        }
        let Some(segment) = open.as_ref() else { break };
        let offset = position - start;
        match segment.read(offset, end - start, &mut payload) {
            Ok(None) => position = next_segment(&shared, start, position, active),
            Ok(Some(Ok(info))) => {
                let record_end = start + info.end;
                let mut events = returns.spare(info.n_events as usize);
                let events = codec::decode_into(segment::events_bytes(&payload), &mut events)
                    .map(|()| events);
                {
                    let mut state = lock(&shared);
                    state
                        .in_flight
                        .push_back((record_end, info.n_events, info.written_at));
                    if let Some(unread) = state.unread.get_mut(&start) {
                        *unread = unread.saturating_sub(u64::from(info.n_events));
                    }
                    state.oldest_unread = None;
                }
                let Some(events) = events else {
                    tracing::error!(buffer = %shared.dir.display(), position, "disk buffer: a record passed its CRC but does not decode; its events are lost");
                    out.metrics
                        .dropped("buffer_undecodable")
                        .add(u64::from(info.n_events));
                    shared.tracker.track(record_end).done();
                    position = record_end;
                    continue;
                };
                let mut batch = Batch::with_ack(events, shared.tracker.track(record_end));
                batch.home = Some(returns.home());
                if !send(&shared, &out, batch) {
                    break;
                }
                position = record_end;
            }
            Ok(Some(Err(damage))) => {
                position = skip(&shared, &out, (start, end, active), start + damage.offset());
            }
            Err(error) => {
                tracing::error!(buffer = %shared.dir.display(), %error, "disk buffer read failed; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    let mut state = lock(&shared);
    state.reader_done = true;
    shared.data.notify_all();
    shared.ended.notify_all();
}

/// Where the sink returns the events of the records in flight: a [`Recycler`] of its own
/// for each (its [`Home`] travels with the batch), so that spent events come back as a
/// vector, ready to decode the next records over, without being counted back one by one
/// (`Recycler::freed` takes the events to free them). A sink may return several records'
/// events in one vector (the HTTP sinks gather a request's events into one, returned to
/// the first record's home), so a record takes its share from the end of one.
#[derive(Default)]
struct Returns {
    /// One per record in flight, oldest first.
    homes: VecDeque<Recycler>,
    /// Spent batches to decode over.
    spares: Vec<Vec<Event>>,
    /// Events in `spares`.
    spare_events: usize,
}

impl Returns {
    /// The home of a record about to be sent.
    fn home(&mut self) -> Home {
        if self.homes.len() >= MAX_IN_FLIGHT {
            self.homes.pop_front();
        }
        let recycler = Recycler::default();
        let home = recycler.home();
        self.homes.push_back(recycler);
        home
    }

    /// Takes the events that came back: kept up to [`MAX_SPARES`], the rest freed here.
    fn collect(&mut self) {
        let (spares, spare_events) = (&mut self.spares, &mut self.spare_events);
        self.homes
            .retain(|recycler| match recycler.returned().try_recv() {
                Ok(mut events) => {
                    events.truncate(MAX_SPARES - *spare_events);
                    if !events.is_empty() {
                        *spare_events += events.len();
                        spares.push(events);
                    }
                    false
                }
                Err(_) => true,
            });
    }

    /// Up to `n` spent events to decode a record of `n` over (none when none came back):
    /// the newest vector when it is not larger (topped up from the next), else its last `n`.
    fn spare(&mut self, n: usize) -> Vec<Event> {
        let Some(last) = self.spares.last_mut() else {
            return Vec::new();
        };
        let mut events = if last.len() > n {
            last.split_off(last.len() - n)
        } else {
            self.spares.pop().unwrap_or_default()
        };
        while let Some(last) = self.spares.last_mut() {
            let wanted = n.saturating_sub(events.len());
            if wanted == 0 {
                break;
            }
            let from = last.len().saturating_sub(wanted);
            events.extend(last.drain(from..));
            if last.is_empty() {
                self.spares.pop();
            }
        }
        self.spare_events -= events.len();
        events
    }

    /// Reading waits: the spares go.
    fn idle(&mut self) {
        self.spares = Vec::new();
        self.spare_events = 0;
    }
}

/// The segment holding `position`: (start, readable end, being written), moving `position`
/// to the first segment if it is before it; waits while there is nothing to read (letting
/// the spare batches go once it has waited [`IDLE`]). `None` when reading is over.
fn locate(shared: &Shared, position: &mut u64, returns: &mut Returns) -> Option<(u64, u64, bool)> {
    let mut state = lock(shared);
    loop {
        if shared.shutdown.is_triggered() {
            return None;
        }
        let active = state.segments.last_key_value().map(|(s, _)| *s);
        let found = state
            .segments
            .range(..=*position)
            .next_back()
            .map(|(s, e)| (*s, *e))
            .or_else(|| state.segments.first_key_value().map(|(s, e)| (*s, *e)));
        if let Some((start, end)) = found {
            *position = (*position).max(start + HEADER_BYTES);
            if *position < end || Some(start) != active {
                return Some((start, end, Some(start) == active));
            }
        }
        if state.closed {
            return None;
        }
        state.reader_waiting = true;
        let (next, waited) = shared
            .data
            .wait_timeout(state, IDLE)
            .unwrap_or_else(|p| p.into_inner());
        state = next;
        state.reader_waiting = false;
        if waited.timed_out() && !returns.spares.is_empty() {
            drop(state);
            returns.idle();
            state = lock(shared);
        }
    }
}

/// At `position`, the end of the segment starting at `start`: on to the next one (its start
/// is acknowledged at once), or wait for the writer if this one is still being written.
/// The next segment usually starts where this one ended: it is the next by start, not the
/// first one past `position`.
fn next_segment(shared: &Shared, start: u64, position: u64, active: bool) -> u64 {
    if active {
        return position;
    }
    let state = lock(shared);
    match state.segments.range(start + 1..).next() {
        Some((next, _)) => {
            let next = *next;
            drop(state);
            shared.tracker.track(next).done();
            next
        }
        None => position,
    }
}

/// Leaves a damaged segment at `from`: a sealed one at once (the loss logged and counted);
/// the one being written once the writer has moved to a new segment (asked for here).
fn skip(shared: &Shared, out: &Output, (start, end, active): (u64, u64, bool), from: u64) -> u64 {
    if active {
        lock(shared).roll_requested = true;
        std::thread::sleep(Duration::from_millis(100));
        return from;
    }
    // Its unread events will never be delivered: out of the gauge, into the drop counter.
    let lost_events = {
        let mut state = lock(shared);
        let lost = state.unread.insert(start, 0).unwrap_or(0);
        state.events = state.events.saturating_sub(lost);
        shared.gauges.events.set(state.events as i64);
        lost
    };
    tracing::error!(
        buffer = %shared.dir.display(), segment = start, offset = from - start,
        lost_bytes = end.saturating_sub(from), lost_events,
        "disk buffer: the rest of a segment cannot be read; its events are lost"
    );
    out.metrics.dropped("buffer_corrupt").add(lost_events);
    next_segment(shared, start, end, false)
}

/// Sends `batch` to the sink; false when the sink is gone or the pipeline stops first.
fn send(shared: &Shared, out: &Output, batch: Batch) -> bool {
    out.queued.add(1);
    let sent = out.runtime.block_on(async {
        tokio::select! {
            sent = out.tx.send(batch) => sent.is_ok(),
            () = shared.shutdown.wait() => false,
        }
    });
    if !sent {
        out.queued.add(-1);
    }
    sent
}
