//! One request of the driver: encode, compress, post, judge the reply; retries with
//! backoff and `Retry-After`, follow-ups for a partial reply's retried items, refusals.

use super::*;

/// The tries of one request and of the follow-ups that carry its retried items.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tries {
    pub(super) started: Instant,
    pub(super) attempt: u32,
}

impl Tries {
    pub(super) fn new() -> Self {
        Tries {
            started: Instant::now(),
            attempt: 0,
        }
    }
}

/// A [`Verdict::Partial`] with the request's items and the server's `Retry-After`.
pub(super) struct PartialVerdict<'a> {
    pub(super) items: &'a [usize],
    pub(super) retry: Vec<usize>,
    pub(super) retry_reason: String,
    pub(super) reject: Vec<(usize, String)>,
    pub(super) retry_after: Option<Duration>,
}

/// Why a try failed, for the retry decision.
pub(super) struct Failed {
    pub(super) reason: String,
    pub(super) server_said: String,
    pub(super) retry_after: Option<Duration>,
    pub(super) endpoint_failed: bool,
}

/// A reply read off the wire, or why there was none.
pub(super) struct RawReply {
    pub(super) status: u16,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
}

impl HttpDriver {
    /// Sends one request until it is delivered, rejected or partly so; returns the requests
    /// that carry a partial failure's retries, and the tries they inherit.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn send<C: HttpSinkCodec>(
        &self,
        codec: &mut C,
        events: &[Event],
        request: EncodedRequest,
        mut tries: Tries,
        outcomes: &mut [Outcome],
        ctx: &SinkContext,
        state: &State,
    ) -> (Vec<EncodedRequest>, Tries) {
        let EncodedRequest {
            body,
            content_type,
            headers: extra,
            items,
            path_segment,
        } = request;
        let uncompressed = body.len();
        let body = Bytes::from(self.compress(body).await);
        state.bytes_uncompressed.add(uncompressed as u64);
        state.batch_events.observe(items.len() as f64);
        state.batch_bytes.observe(body.len() as f64);
        let headers = self.request_headers(&*codec, content_type, extra);
        loop {
            state.bytes_compressed.add(body.len() as u64);
            let limit = codec.max_reply_bytes();
            let result = self
                .attempt(
                    headers.clone(),
                    body.clone(),
                    path_segment.as_deref(),
                    limit,
                    state,
                )
                .await;
            let endpoint_failed = result.as_ref().map_or(true, |reply| reply.status >= 500);
            let mut server_said = String::new();
            let mut asked_delay = None;
            let verdict = match result {
                Ok(reply) => {
                    state.request_counter(ctx, &reply.status.to_string()).inc();
                    server_said = server_words(reply.status, &reply.body);
                    asked_delay = retry_after(&reply.headers, chrono::Utc::now());
                    let reply = Reply {
                        status: reply.status,
                        headers: &reply.headers,
                        body: &reply.body,
                        items: items.len(),
                        path_segment: path_segment.as_deref(),
                    };
                    match codec.judge_events(&reply, events, &items) {
                        Judgement::Verdict(verdict) => verdict,
                        Judgement::Refused(refusals) => {
                            self.refused(&items, refusals, &server_said, outcomes, ctx, state);
                            return (Vec::new(), tries);
                        }
                    }
                }
                Err(kind) => {
                    state.request_counter(ctx, kind).inc();
                    Verdict::Retry {
                        reason: kind.to_owned(),
                        retry_after: None,
                    }
                }
            };
            let (reason, retry_after) = match verdict {
                Verdict::Delivered => {
                    mark(outcomes, &items, Outcome::Delivered);
                    self.succeeded(state, ctx);
                    return (Vec::new(), tries);
                }
                Verdict::Reject { reason } => {
                    tracing::warn!(sink = %ctx.id, %reason, reply = %server_said, n_events = items.len(), "request rejected; events dead-lettered");
                    // The dead letters keep the server's words after the reason (the
                    // metric label is the part before the first colon).
                    let reason = match server_said.is_empty() {
                        true => reason,
                        false => format!("{reason}: {server_said}"),
                    };
                    state.rejected(&reason);
                    mark(outcomes, &items, Outcome::Rejected(reason.into()));
                    return (Vec::new(), tries);
                }
                Verdict::Partial {
                    retry,
                    retry_reason,
                    reject,
                } => {
                    let verdict = PartialVerdict {
                        items: &items,
                        retry,
                        retry_reason,
                        reject,
                        retry_after: asked_delay,
                    };
                    let follow_ups = self
                        .partial(codec, events, verdict, &mut tries, outcomes, ctx, state)
                        .await;
                    return (follow_ups, tries);
                }
                Verdict::Retry {
                    reason,
                    retry_after,
                } => (reason, retry_after),
            };
            let failed = Failed {
                reason,
                server_said,
                retry_after,
                endpoint_failed,
            };
            if !self
                .wait_to_retry(failed, &mut tries, &items, outcomes, ctx, state)
                .await
            {
                return (Vec::new(), tries);
            }
        }
    }

    /// The request's headers: the sink's own, the body's type and encoding, the codec's.
    fn request_headers<C: HttpSinkCodec>(
        &self,
        codec: &C,
        content_type: &'static str,
        extra: Vec<(reqwest::header::HeaderName, HeaderValue)>,
    ) -> HeaderMap {
        let mut headers = self.headers.clone();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        if let Some(encoding) = codec.content_encoding(self.compression) {
            headers.insert(
                reqwest::header::CONTENT_ENCODING,
                HeaderValue::from_static(encoding),
            );
        }
        for (name, value) in extra {
            headers.insert(name, value);
        }
        headers
    }

    /// After a failed try: dead-letters the items once retries are exhausted (false), else
    /// waits the backoff (none when another endpoint can take over) and counts the retry.
    async fn wait_to_retry(
        &self,
        failed: Failed,
        tries: &mut Tries,
        items: &[usize],
        outcomes: &mut [Outcome],
        ctx: &SinkContext,
        state: &State,
    ) -> bool {
        let Failed {
            reason,
            server_said,
            retry_after,
            endpoint_failed,
        } = failed;
        if self.retries_exhausted(tries) {
            tracing::error!(sink = %ctx.id, %reason, reply = %server_said, n_events = items.len(), "retries exhausted; events dead-lettered");
            let reason = match server_said.is_empty() {
                true => format!("retry_exhausted: {reason}"),
                false => format!("retry_exhausted: {reason}: {server_said}"),
            };
            state.rejected(&reason);
            mark(outcomes, items, Outcome::Rejected(reason.into()));
            return false;
        }
        // Another endpoint is up: fail over to it at once (the failed one is resting).
        let delay = if endpoint_failed && self.endpoints.failover_available() {
            Duration::ZERO
        } else {
            self.backoff(tries.attempt, retry_after, ctx.shutdown.is_triggered())
        };
        tracing::warn!(sink = %ctx.id, %reason, attempt = tries.attempt, delay_ms = delay.as_millis() as u64, "request failed; retrying");
        state.retries.inc();
        tries.attempt = tries.attempt.saturating_add(1);
        tokio::time::sleep(delay).await;
        true
    }

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
        state.retries.inc();
        let delay = self.backoff(tries.attempt, retry_after, ctx.shutdown.is_triggered());
        tracing::warn!(sink = %ctx.id, reason = %retry_reason, n_events = retry_indices.len(), attempt = tries.attempt, delay_ms = delay.as_millis() as u64, "items failed; retrying them");
        tries.attempt = tries.attempt.saturating_add(1);
        tokio::time::sleep(delay).await;
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

    /// Compresses a body on the blocking pool, not on the runtime's threads: gzip of a 1 MiB
    /// batch takes milliseconds, and with `threads: 1` the one runtime thread also reads
    /// the UDP sockets, whose datagrams would be dropped meanwhile.
    pub(super) async fn compress(&self, body: Vec<u8>) -> Vec<u8> {
        let (compression, level) = (self.compression, self.level);
        if compression == Compression::None {
            return body;
        }
        match tokio::task::spawn_blocking(move || compression.compress(body, level)).await {
            Ok(compressed) => compressed,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // The runtime is shutting down and drops this task with it (nothing settled).
            Err(_) => std::future::pending().await,
        }
    }

    /// True once `retry.max_duration_secs` has passed since the request's first try.
    pub(super) fn retries_exhausted(&self, tries: &Tries) -> bool {
        self.max_retry_duration
            .is_some_and(|cap| tries.started.elapsed() >= cap)
    }

    pub(super) fn succeeded(&self, state: &State, ctx: &SinkContext) {
        state
            .last_success_ms
            .store(state.now_ms(), Ordering::Relaxed);
        state.rejecting_since_ms.store(0, Ordering::Relaxed);
        ctx.progress.mark();
    }

    /// Full-jitter exponential backoff, or the server's `Retry-After`. At shutdown the wait
    /// is cut to a second so the last tries fit in the deadline.
    pub(in crate::sink::driver) fn backoff(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        stopping: bool,
    ) -> Duration {
        if let Some(delay) = retry_after {
            return delay;
        }
        let ceiling = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        let ceiling = if stopping {
            ceiling.min(Duration::from_secs(1))
        } else {
            ceiling
        };
        let jittered = fastrand::u64(0..=ceiling.as_millis() as u64);
        Duration::from_millis(jittered.max(1))
    }

    /// One HTTP exchange; transport failures are named for the metrics.
    pub(super) async fn attempt(
        &self,
        headers: HeaderMap,
        body: Bytes,
        path_segment: Option<&str>,
        max_reply_bytes: usize,
        state: &State,
    ) -> Result<RawReply, &'static str> {
        state.in_flight.add(1);
        let endpoint = self.endpoints.pick();
        let mut url = self.endpoints.urls[endpoint].clone();
        if let Some(segment) = path_segment {
            let path = url.path().to_owned();
            let (head, last) = path.rsplit_once('/').unwrap_or(("", &path));
            url.set_path(&format!("{head}/{segment}/{last}"));
        }
        let exchange = async {
            let mut response = self
                .client
                .post(url)
                .headers(headers)
                .timeout(self.request_timeout)
                .body(body)
                .send()
                .await
                .map_err(classify)?;
            let status = response.status().as_u16();
            let headers = std::mem::take(response.headers_mut());
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(classify)? {
                let room = max_reply_bytes.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= max_reply_bytes {
                    break;
                }
            }
            Ok(RawReply {
                status,
                headers,
                body,
            })
        };
        let result =
            match tokio::time::timeout(self.request_timeout + Duration::from_secs(1), exchange)
                .await
            {
                Ok(result) => result,
                Err(_) => Err("timeout"),
            };
        state.in_flight.add(-1);
        match &result {
            Ok(reply) if reply.status < 500 => self.endpoints.succeeded(endpoint),
            _ => self.endpoints.failed(endpoint),
        }
        result
    }
}

pub(super) fn classify(error: reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect_error"
    } else {
        "transport_error"
    }
}

pub(super) fn mark(outcomes: &mut [Outcome], items: &[usize], outcome: Outcome) {
    for &index in items {
        if let Some(slot) = outcomes.get_mut(index) {
            *slot = outcome.clone();
        }
    }
}

/// The server's answer in one line for logs and dead letters: its status and the start of
/// its body (at most 300 characters, control characters as spaces).
pub(super) fn server_words(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(1200)]);
    let excerpt: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    format!("{status} {}", excerpt.trim()).trim_end().to_owned()
}
