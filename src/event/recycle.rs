//! Spent events go back to the thread that allocated them, to be freed there.
//!
//! Owns: [`Home`] (where a batch's spent events are returned) and [`Recycler`] (the
//! source's end, which frees what came back).
//!
//! Why: a source thread allocates every event's text and fields; a sink task, on another
//! core, drops them. The allocator (mimalloc) frees a block from a foreign thread with an
//! atomic push onto the block's page, which the owning thread must collect later: on
//! file → blackhole that cross-thread path took about 38% of the agent's CPU (perf:
//! `mi_free` on the sink, `_mi_page_free_collect` on the reader). Handing the spent
//! `Vec<Event>` back costs one channel message per batch, and the source frees it with
//! plain thread-local frees.
//!
//! Never: blocks or grows without bound. A source holds at most [`RETURNED_BATCHES`]
//! returned batches and [`RETURNED_EVENTS`] returned events (a source that goes quiet
//! after a burst keeps them until it sends again); past either, or when the source is
//! gone, the sink frees the events itself, which is always correct, only slower.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flume::{Receiver, Sender};

use super::Event;

/// Batches a source may have waiting to be freed. Sources free them before each send and
/// while waiting on a full queue, so this only needs to cover the batches in flight.
pub const RETURNED_BATCHES: usize = 8;

/// Events a source may have waiting to be freed (about 2 MiB of 150-byte lines): one
/// network sink batch (Loki's default is 5000 events) fits.
pub const RETURNED_EVENTS: usize = 8192;

/// Where spent events are returned: the source that allocated them.
#[derive(Clone, Debug)]
pub struct Home {
    tx: Sender<Vec<Event>>,
    waiting: Arc<AtomicUsize>,
}

impl Home {
    /// Returns `events` to be freed by their source (or frees them here if it cannot take
    /// them now).
    pub fn give(&self, events: Vec<Event>) {
        let n = events.len();
        if n == 0 || self.waiting.load(Ordering::Relaxed) + n > RETURNED_EVENTS {
            return;
        }
        self.waiting.fetch_add(n, Ordering::Relaxed);
        // A full or closed queue hands the events back, and they are dropped here.
        if self.tx.try_send(events).is_err() {
            self.waiting.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

/// A source's end of the return queue.
#[derive(Clone, Debug)]
pub struct Recycler {
    tx: Sender<Vec<Event>>,
    rx: Receiver<Vec<Event>>,
    waiting: Arc<AtomicUsize>,
}

impl Default for Recycler {
    fn default() -> Self {
        let (tx, rx) = flume::bounded(RETURNED_BATCHES);
        Recycler {
            tx,
            rx,
            waiting: Arc::default(),
        }
    }
}

impl Recycler {
    /// The handle sinks return this source's events through.
    pub fn home(&self) -> Home {
        Home {
            tx: self.tx.clone(),
            waiting: Arc::clone(&self.waiting),
        }
    }

    /// Frees every returned batch; returns how many events that was.
    pub fn free_returned(&self) -> usize {
        self.rx.try_iter().map(|events| self.freed(events)).sum()
    }

    /// Frees one returned batch (taken from [`Recycler::returned`]); returns its length.
    pub fn freed(&self, events: Vec<Event>) -> usize {
        let n = events.len();
        self.waiting.fetch_sub(n, Ordering::Relaxed);
        n
    }

    /// The queue's receiving end, for a source that waits on it with other channels.
    pub fn returned(&self) -> &Receiver<Vec<Event>> {
        &self.rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::LogEvent;

    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| Event::Log(LogEvent::new(format!("line {i}"))))
            .collect()
    }

    #[test]
    fn returned_events_are_freed_by_the_source() {
        let recycler = Recycler::default();
        let home = recycler.home();
        home.give(events(3));
        home.give(Vec::new());
        home.give(events(2));
        assert_eq!(recycler.free_returned(), 5);
        assert_eq!(recycler.free_returned(), 0);
    }

    #[test]
    fn returned_events_are_capped() {
        let recycler = Recycler::default();
        let home = recycler.home();
        home.give(events(RETURNED_EVENTS - 10));
        home.give(events(11));
        home.give(events(10));
        assert_eq!(recycler.free_returned(), RETURNED_EVENTS);
        home.give(events(11));
        assert_eq!(recycler.free_returned(), 11, "room again once freed");
    }

    #[test]
    fn a_full_or_closed_queue_frees_in_place() {
        let recycler = Recycler::default();
        let home = recycler.home();
        for _ in 0..RETURNED_BATCHES + 3 {
            home.give(events(1));
        }
        assert_eq!(recycler.free_returned(), RETURNED_BATCHES);
        drop(recycler);
        home.give(events(1));
    }
}
