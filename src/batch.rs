//! `Batch`: the unit that moves through the queues, sources to workers to sinks: events
//! plus the acknowledgement handles of the source batches they came from. It sits above
//! both [`crate::event`] (what it carries) and [`crate::ack`] (what settling it means), so
//! that neither of those depends on the other.

use crate::ack::AckRef;
use crate::event::{Event, Home};

/// The unit that moves through channels: many events, plus the acknowledgement handles of
/// the source batches they came from. A sink settles every [`AckRef`] of a batch once all its
/// events are delivered or permanently rejected (see [`crate::ack`]).
#[derive(Debug, Default)]
pub struct Batch {
    /// The events, in stream order.
    pub events: Vec<Event>,
    /// Acknowledgement handles of the source batches these events belong to.
    pub acks: Vec<AckRef>,
    /// Where the events go once spent: the source that allocated them (see `recycle.rs`).
    pub home: Option<Home>,
}

impl Batch {
    /// A batch with no acknowledgement (sources without replayable positions).
    pub fn new(events: Vec<Event>) -> Self {
        Batch {
            events,
            acks: Vec::new(),
            home: None,
        }
    }

    /// A batch whose delivery settles `ack`.
    pub fn with_ack(events: Vec<Event>, ack: AckRef) -> Self {
        Batch {
            events,
            acks: vec![ack],
            home: None,
        }
    }

    /// Marks every acknowledgement of this batch as done (delivered or permanently
    /// rejected), and returns the spent events to their source.
    pub fn settle(self) {
        for ack in self.acks {
            ack.done();
        }
        if let Some(home) = self.home {
            home.give(self.events);
        }
    }

    /// A copy for one more sink: events cloned (by this thread, so with no home),
    /// acknowledgements shared.
    pub fn fan_out_clone(&self) -> Self {
        Batch {
            events: self.events.clone(),
            acks: self.acks.clone(),
            home: None,
        }
    }
}
