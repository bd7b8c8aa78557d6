//! A partial reply of the driver's request: the server stored some items and asks for
//! others to be sent again (follow-up requests, after a backoff, until the retry time runs
//! out), or stored all but refused entries (dead-lettered).
//!
//! Owns: follow-ups and refusals. Never: posts a request (`send.rs`).

use super::send::{mark, Tries};
use super::*;

/// A [`Verdict::Partial`] with the request's items and the server's `Retry-After`.
pub(super) struct PartialVerdict<'a> {
    pub(super) items: &'a [usize],
    pub(super) retry: Vec<usize>,
    pub(super) retry_reason: String,
    pub(super) reject: Vec<(usize, String)>,
    pub(super) retry_after: Option<Duration>,
}

impl HttpDriver {
    /// Records a partial success and encodes the items to retry, after a backoff that grows
    /// with `tries` (or the server's `Retry-After`); once `retry.max_duration_secs` has run
    /// out since the first try, the items still failing are dead-lettered instead.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn partial<C: HttpSinkCodec>(
        &self,
        codec: &mut C,
        events: &[Event],
        verdict: PartialVerdict<'_>,
        tries: &mut Tries,
        outcomes: &mut [Outcome],
        ctx: &SinkContext,
        state: &State,
    ) -> Vec<EncodedRequest> {
        let PartialVerdict {
            items,
            retry,
            retry_reason,
            reject,
            retry_after,
        } = verdict;
        mark(outcomes, items, Outcome::Delivered);
        let n_accepted = items.len().saturating_sub(retry.len() + reject.len());
        if let Some((_, reason)) = reject.first() {
            if n_accepted == 0 {
                state.rejected(reason);
            }
        }
        for (position, reason) in reject {
            if let Some(&index) = items.get(position) {
                outcomes[index] = Outcome::Rejected(reason.into());
            }
        }
        let retry_indices: Vec<usize> = retry
            .iter()
            .filter_map(|&p| items.get(p).copied())
            .collect();
        for &index in &retry_indices {
            outcomes[index] = Outcome::Waiting;
        }
        // Only a request that delivered something is a success: items answered 429 for
        // ever must not keep `/health` green.
        if n_accepted > 0 {
            self.succeeded(state, ctx);
        }
        if retry_indices.is_empty() {
            return Vec::new();
        }
        if self.retries_exhausted(tries) {
            let reason = format!("retry_exhausted: {retry_reason}");
            tracing::error!(sink = %ctx.id, %reason, n_events = retry_indices.len(), "item retries exhausted; events dead-lettered");
            state.rejected(&reason);
            let reason: Arc<str> = reason.into();
            for &index in &retry_indices {
                outcomes[index] = Outcome::Rejected(reason.clone());
            }
            return Vec::new();
        }
        // Stopping with a disk buffer: the items to retry stay `Waiting`, in the buffer.
        if self.leaves_to_buffer(ctx) {
            return Vec::new();
        }
        state.retries.inc();
        let delay = self.backoff(tries.attempt, retry_after, ctx.shutdown.is_triggered());
        tracing::warn!(sink = %ctx.id, reason = %retry_reason, n_events = retry_indices.len(), attempt = tries.attempt, delay_ms = delay.as_millis() as u64, "items failed; retrying them");
        tries.attempt = tries.attempt.saturating_add(1);
        self.sleep_before_retry(delay, ctx).await;
        let subset: Vec<Event> = retry_indices.iter().map(|&i| events[i].clone()).collect();
        let encoded = codec.encode(&subset);
        for (position, reason) in encoded.dropped {
            if let Some(&index) = retry_indices.get(position) {
                outcomes[index] = Outcome::Dropped(reason);
            }
        }
        encoded
            .requests
            .into_iter()
            .map(|mut request| {
                request.items = request
                    .items
                    .iter()
                    .filter_map(|&p| retry_indices.get(p).copied())
                    .collect();
                request
            })
            .collect()
    }

    /// Records a reply that stored every entry but the refused ones.
    pub(super) fn refused(
        &self,
        items: &[usize],
        refusals: Refusals,
        server_said: &str,
        outcomes: &mut [Outcome],
        ctx: &SinkContext,
        state: &State,
    ) {
        mark(outcomes, items, Outcome::Delivered);
        let n_named = refusals.named.len();
        for (position, reason) in refusals.named {
            if let Some(&index) = items.get(position) {
                outcomes[index] = Outcome::Rejected(reason.into());
            }
        }
        let mut n_unnamed = 0;
        for group in refusals.unnamed {
            n_unnamed += group.refused;
            let share = Arc::new(Unconfirmed {
                refused: group.refused.min(group.positions.len()),
                reason: group.reason.into(),
            });
            for position in group.positions {
                if let Some(&index) = items.get(position) {
                    outcomes[index] = Outcome::Unconfirmed(share.clone());
                }
            }
        }
        tracing::warn!(sink = %ctx.id, reply = %server_said, n_events = items.len(), n_refused = n_named, n_refused_unnamed = n_unnamed, "server stored a request except refused entries; those dead-lettered");
        self.succeeded(state, ctx);
    }
}
