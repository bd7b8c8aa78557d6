//! Settling a finished batch: writing the rejected events to the dead-letter file, then
//! counting delivered, rejected and dropped events, then acknowledging.

use super::*;

/// Counts, dead-letters and acknowledges a finished batch: the acknowledgements wait until
/// the rejected events are on disk.
pub(super) async fn settle(
    events: &[Event],
    outcomes: Vec<Outcome>,
    acks: Vec<AckRef>,
    ctx: &SinkContext,
) {
    let mut delivered = 0u64;
    let mut rejected: BTreeMap<Arc<str>, Vec<Event>> = BTreeMap::new();
    let mut dropped: BTreeMap<&'static str, u64> = BTreeMap::new();
    // Keyed by the group's address: each group is counted once, by its own numbers.
    let mut unconfirmed: BTreeMap<usize, (Arc<Unconfirmed>, Vec<Event>)> = BTreeMap::new();
    for (event, outcome) in events.iter().zip(outcomes) {
        match outcome {
            Outcome::Delivered => delivered += 1,
            Outcome::Unconfirmed(group) => {
                let key = Arc::as_ptr(&group) as usize;
                unconfirmed
                    .entry(key)
                    .or_insert_with(|| (group, Vec::new()))
                    .1
                    .push(event.clone());
            }
            Outcome::Rejected(reason) => rejected.entry(reason).or_default().push(event.clone()),
            Outcome::Dropped(reason) => *dropped.entry(reason).or_default() += 1,
            // A codec that forgot an event: count it rather than hide it.
            Outcome::Waiting => *dropped.entry("not_encoded").or_default() += 1,
        }
    }
    let mut to_write: Vec<(Arc<str>, Vec<Event>)> = Vec::new();
    // Drops by metric label: counted once the dead letters are on disk, so whoever reads
    // the metrics finds them in the file, and a batch whose letters could not be written
    // (read again) is not counted twice. A reason may carry the server's free text after
    // a colon (Elasticsearch item errors): the file keeps it all, the label only the kind.
    let mut refusals: Vec<(Arc<str>, u64)> = Vec::new();
    // Of an unconfirmed group, exactly `refused` are counted as dropped and the rest as
    // delivered; all of them go to the dead-letter file, under a reason that says so.
    for (group, events) in unconfirmed.into_values() {
        let refused = group.refused.min(events.len());
        delivered += (events.len() - refused) as u64;
        refusals.push((group.reason.clone(), refused as u64));
        to_write.push((group.reason.clone(), events));
    }
    for (reason, events) in rejected {
        refusals.push((reason.clone(), events.len() as u64));
        to_write.push((reason, events));
    }
    if !to_write.is_empty()
        && !ctx
            .dead_letters
            .write(&ctx.pipeline, &ctx.id, to_write)
            .await
    {
        // Not on disk: leave the batch unacknowledged (abandoned), so it is read again.
        return;
    }
    ctx.metrics.events_out.add(delivered);
    for (reason, n) in dropped {
        ctx.metrics.dropped(reason).add(n);
    }
    for (reason, n) in refusals {
        let label = reason.split(':').next().unwrap_or(&reason);
        ctx.metrics.dropped(label).add(n);
    }
    ctx.progress.mark();
    for ack in acks {
        ack.done();
    }
}
