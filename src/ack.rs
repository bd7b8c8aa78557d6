//! Delivery acknowledgements: which source batches are done, and how far each stream may be
//! checkpointed.
//!
//! A source asks a [`StreamTracker`] for one [`AckRef`] per batch it reads, in read order, with
//! the stream position just past that batch. Every copy of an `AckRef` (one per sink after
//! fan-out, one per sink request the batch was split into) must be settled with
//! [`AckRef::done`] once its events are delivered or permanently rejected (dead-lettered).
//! When the last copy goes away the batch is *done*, unless some copy was dropped without
//! `done()` (shutdown, abort, a panic): then the batch is *abandoned* and never committed, so
//! it is read again after a restart.
//!
//! Invariant: the committed position of a stream is the end of the longest prefix of its
//! batches that are all done. It never passes a batch that is pending or abandoned.
//!
//! Owns: per-stream pending queues and committed positions. Never: touches the disk (that is
//! [`crate::checkpoint`]).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Source-specific data saved beside a stream's position in the checkpoint file (a file's
/// path and fingerprints, a journal file's path): JSON values by name, written as they are.
pub type Meta = serde_json::Map<String, serde_json::Value>;

/// What became of one source batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Pending,
    Done,
    Abandoned,
}

/// The acknowledgement state of one stream (one file, one demo source, ...).
#[derive(Debug)]
pub(crate) struct StreamState {
    /// Sequence number of `pending[0]`.
    base_seq: u64,
    /// Batches not yet committed, in read order: (end position, status).
    pending: VecDeque<(u64, Status)>,
    /// End of the longest done prefix.
    pub(crate) committed: u64,
    /// Source-specific data saved beside the position (e.g. the file path).
    pub(crate) meta: Meta,
    /// Changed since the checkpoint file was last written.
    pub(crate) dirty: bool,
    /// Changes so far (position or meta): the checkpoint file's entry for the stream is
    /// encoded again only when this moved since it was last encoded.
    pub(crate) changes: u64,
    /// Where the stream names itself when it becomes dirty, once it is saved in a
    /// checkpoint registry: a save then visits the changed streams, not every stream.
    pub(crate) dirty_list: Option<(DirtyList, StreamId)>,
}

/// A stream's identity in a [`DirtyList`]: the address of its shared state, which the
/// registry keeps alive while the stream is registered.
pub(crate) type StreamId = usize;

/// The streams that became dirty since the checkpoint registry last took the list.
pub(crate) type DirtyList = Arc<Mutex<Vec<StreamId>>>;

pub(crate) fn stream_id(stream: &SharedStream) -> StreamId {
    Arc::as_ptr(stream) as usize
}

impl StreamState {
    pub(crate) fn new(start: u64, meta: Meta) -> Self {
        StreamState {
            base_seq: 0,
            pending: VecDeque::new(),
            committed: start,
            meta,
            dirty: true,
            changes: 0,
            dirty_list: None,
        }
    }

    /// Counts a change and, when the stream was clean, names it in its registry's list.
    fn changed(&mut self) {
        self.changes += 1;
        if !self.dirty {
            self.dirty = true;
            if let Some((list, id)) = &self.dirty_list {
                list.lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(*id);
            }
        }
    }

    fn push(&mut self, end: u64) -> u64 {
        let seq = self.base_seq + self.pending.len() as u64;
        self.pending.push_back((end, Status::Pending));
        seq
    }

    fn complete(&mut self, seq: u64, status: Status) {
        let Some(index) = seq.checked_sub(self.base_seq) else {
            return;
        };
        let Some(slot) = self.pending.get_mut(index as usize) else {
            return;
        };
        slot.1 = status;
        while let Some(&(end, Status::Done)) = self.pending.front() {
            self.pending.pop_front();
            self.base_seq += 1;
            self.committed = end;
            self.changed();
        }
    }

    /// Batches handed out and not yet committed (pending or abandoned).
    pub(crate) fn in_flight(&self) -> usize {
        self.pending.len()
    }
}

pub(crate) type SharedStream = Arc<Mutex<StreamState>>;

pub(crate) fn lock(stream: &SharedStream) -> MutexGuard<'_, StreamState> {
    // A panic while holding this lock cannot leave the queue half-updated in a way that
    // would commit too far (every update is a single push or a prefix pop), so recover.
    stream
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Hands out acknowledgement handles for one stream, in read order.
#[derive(Clone, Debug)]
pub struct StreamTracker {
    pub(crate) stream: SharedStream,
}

impl StreamTracker {
    /// A tracker that is not saved anywhere (tests, benches).
    pub fn detached(start: u64) -> Self {
        StreamTracker {
            stream: Arc::new(Mutex::new(StreamState::new(start, Meta::new()))),
        }
    }

    /// Registers the next batch, which ends at stream position `end`, and returns its handle.
    /// Call in read order: positions must not go backwards.
    pub fn track(&self, end: u64) -> AckRef {
        let seq = lock(&self.stream).push(end);
        AckRef {
            inner: Arc::new(AckInner {
                stream: Some(self.stream.clone()),
                seq,
                abandoned: AtomicBool::new(false),
                watch: None,
                lost: None,
            }),
            settled: false,
        }
    }

    /// The committed position: everything before it was delivered or dead-lettered.
    pub fn committed(&self) -> u64 {
        lock(&self.stream).committed
    }

    /// Batches handed out that are not yet committed.
    pub fn in_flight(&self) -> usize {
        lock(&self.stream).in_flight()
    }

    /// Replaces the source-specific data saved with the position (e.g. a renamed file's path).
    pub fn set_meta(&self, meta: Meta) {
        let mut state = lock(&self.stream);
        state.meta = meta;
        state.changed();
    }
}

struct AckInner {
    /// The stream whose position waits for the batch (`None`: no position to keep).
    stream: Option<SharedStream>,
    seq: u64,
    abandoned: AtomicBool,
    /// Told the batch's fate when its last copy goes (see [`AckRef::watched`]).
    watch: Option<tokio::sync::oneshot::Sender<bool>>,
    /// A batch that cannot be read again (see [`AckRef::counted`]): its events, counted
    /// here when it is abandoned.
    lost: Option<(crate::telemetry::Counter, u64)>,
}

impl Drop for AckInner {
    fn drop(&mut self) {
        let abandoned = self.abandoned.load(Ordering::Acquire);
        let status = match (abandoned, &self.lost) {
            (false, _) => Status::Done,
            (true, Some((lost, events))) => {
                lost.add(*events);
                Status::Abandoned
            }
            (true, None) => {
                crate::telemetry::batches_abandoned().inc();
                Status::Abandoned
            }
        };
        if let Some(stream) = &self.stream {
            lock(stream).complete(self.seq, status);
        }
        if let Some(watch) = self.watch.take() {
            let _ = watch.send(status == Status::Done);
        }
    }
}

/// Resolves when the batch of an [`AckRef::watched`] handle is done (`true`: every copy was
/// settled with `done()`) or abandoned (`false`).
pub type AckWatch = tokio::sync::oneshot::Receiver<bool>;

/// One holder's share of a source batch's acknowledgement. Clone it for every place the
/// batch's events go; settle each clone with [`AckRef::done`]. Dropping a clone without
/// `done()` abandons the batch (it will be read again after a restart).
pub struct AckRef {
    inner: Arc<AckInner>,
    settled: bool,
}

impl AckRef {
    /// A handle for a batch that no stream checkpoints, with a [`AckWatch`] that tells
    /// when every copy is settled. A push source (`opentelemetry`) answers its client only
    /// then: the client keeps the data, and retries, until the pipeline delivered it.
    pub fn watched() -> (AckRef, AckWatch) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let ack = AckRef {
            inner: Arc::new(AckInner {
                stream: None,
                seq: 0,
                abandoned: AtomicBool::new(false),
                watch: Some(tx),
                lost: None,
            }),
            settled: false,
        };
        (ack, rx)
    }

    /// A handle for a batch of `events` that no source can read again (syslog, stdin,
    /// metrics collected): abandoned (a sink stopped before delivering it: shutdown or a
    /// reload with the sink down, a crash inside the agent), its events are added to
    /// `lost`, so such a loss is counted, not only logged.
    pub fn counted(events: u64, lost: crate::telemetry::Counter) -> AckRef {
        AckRef {
            inner: Arc::new(AckInner {
                stream: None,
                seq: 0,
                abandoned: AtomicBool::new(false),
                watch: None,
                lost: Some((lost, events)),
            }),
            settled: false,
        }
    }

    /// True for a handle made by [`AckRef::counted`] (events no source can read again).
    pub fn is_counted(&self) -> bool {
        self.inner.lost.is_some()
    }

    /// This holder's events are delivered or permanently rejected.
    pub fn done(mut self) {
        self.settled = true;
    }

    /// True when a client waits for this batch's fate ([`AckRef::watched`]): a sink
    /// sends it at once rather than holding it for its batch timeout.
    pub fn is_watched(&self) -> bool {
        self.inner.watch.is_some()
    }

    /// True when both handles belong to the same source batch.
    pub fn same_batch(&self, other: &AckRef) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Clone for AckRef {
    fn clone(&self) -> Self {
        AckRef {
            inner: self.inner.clone(),
            settled: false,
        }
    }
}

impl Drop for AckRef {
    fn drop(&mut self) {
        if !self.settled {
            self.inner.abandoned.store(true, Ordering::Release);
        }
    }
}

impl fmt::Debug for AckRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckRef")
            .field("seq", &self.inner.seq)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn commits_only_the_done_prefix() {
        let tracker = StreamTracker::detached(0);
        let a = tracker.track(10);
        let b = tracker.track(20);
        let c = tracker.track(30);
        b.done();
        assert_eq!(tracker.committed(), 0, "b is done but a is not");
        a.done();
        assert_eq!(tracker.committed(), 20);
        drop(c);
        assert_eq!(
            tracker.committed(),
            20,
            "an abandoned batch is never committed"
        );
        let d = tracker.track(40);
        d.done();
        assert_eq!(tracker.committed(), 20, "nothing passes an abandoned batch");
    }

    #[test]
    fn a_counted_batch_adds_its_events_when_abandoned_only() {
        let lost = crate::telemetry::Counter::default();
        let done = AckRef::counted(7, lost.clone());
        let copy = done.clone();
        done.done();
        copy.done();
        assert_eq!(lost.get(), 0, "settled: nothing lost");
        let abandoned = AckRef::counted(5, lost.clone());
        let copy = abandoned.clone();
        abandoned.done();
        assert!(copy.is_counted());
        drop(copy);
        assert_eq!(
            lost.get(),
            5,
            "one copy dropped unsettled: its events are lost"
        );
    }

    #[test]
    fn an_abandoned_batch_is_counted_once() {
        let counter = crate::telemetry::batches_abandoned();
        let tracker = StreamTracker::detached(0);
        let a = tracker.track(10);
        let copy = a.clone();
        let before = counter.get();
        a.done();
        drop(copy);
        // Other tests abandon batches concurrently: at least ours was counted.
        assert!(counter.get() > before, "the abandoned batch is counted");
        tracker.track(20).done();
        assert_eq!(tracker.committed(), 0, "nothing passes the abandoned batch");
    }

    #[test]
    fn every_clone_must_be_settled() {
        let tracker = StreamTracker::detached(5);
        let a = tracker.track(10);
        let for_second_sink = a.clone();
        a.done();
        assert_eq!(tracker.committed(), 5);
        for_second_sink.done();
        assert_eq!(tracker.committed(), 10);
    }

    #[test]
    fn a_watched_batch_tells_its_fate() {
        let (ack, mut watch) = AckRef::watched();
        let copy = ack.clone();
        ack.done();
        assert!(watch.try_recv().is_err(), "one copy is still out");
        copy.done();
        assert_eq!(watch.try_recv(), Ok(true));

        let (ack, mut watch) = AckRef::watched();
        let copy = ack.clone();
        ack.done();
        drop(copy);
        assert_eq!(
            watch.try_recv(),
            Ok(false),
            "a dropped copy abandons the batch"
        );
    }

    /// What a sink does with its copy of one batch.
    #[derive(Clone, Copy, Debug)]
    enum Outcome {
        Delivered,
        Rejected,
        Lost,
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![
            4 => Just(Outcome::Delivered),
            2 => Just(Outcome::Rejected),
            1 => Just(Outcome::Lost),
        ]
    }

    proptest! {
        /// Two sinks settle their copies of N batches in a random interleaving, each copy
        /// delivered, rejected (dead-lettered, counts as done) or lost. At every step the
        /// committed position must equal the end of the longest prefix whose copies are all
        /// settled, and never pass a batch with a lost or unsettled copy.
        #[test]
        fn never_commits_past_an_unsettled_batch(
            outcomes in proptest::collection::vec((outcome(), outcome()), 1..40),
            order in proptest::collection::vec(any::<prop::sample::Index>(), 80),
        ) {
            let tracker = StreamTracker::detached(0);
            let mut copies = Vec::new();
            for (i, (first, second)) in outcomes.iter().enumerate() {
                let ack = tracker.track((i as u64 + 1) * 100);
                copies.push((i, *first, ack.clone()));
                copies.push((i, *second, ack));
            }
            let mut settled = vec![0u8; outcomes.len()];
            let mut lost = vec![false; outcomes.len()];
            let mut order = order.into_iter();
            while !copies.is_empty() {
                let pick = order.next().map(|ix| ix.index(copies.len())).unwrap_or(0);
                let (batch, outcome, ack) = copies.swap_remove(pick);
                match outcome {
                    Outcome::Delivered | Outcome::Rejected => ack.done(),
                    Outcome::Lost => { lost[batch] = true; drop(ack) }
                }
                settled[batch] += 1;
                let prefix = (0..outcomes.len())
                    .take_while(|&i| settled[i] == 2 && !lost[i])
                    .count();
                prop_assert_eq!(tracker.committed(), prefix as u64 * 100);
            }
        }
    }
}
