//! One request of the driver: encode, compress, post, judge the reply; retries with
//! backoff and `Retry-After` (a partial reply's follow-ups and refusals: `partial.rs`).

use super::partial::PartialVerdict;
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

/// Why a try failed, for the retry decision.
pub(super) struct Failed {
    pub(super) reason: String,
    pub(super) server_said: String,
    pub(super) retry_after: Option<Duration>,
    pub(super) endpoint_failed: bool,
}

/// What one try of a request gave: the codec's judgement, the server's words, the delay
/// it asked for, and whether the endpoint failed (no reply, or a 5xx).
struct Tried {
    judgement: Judgement,
    server_said: String,
    asked_delay: Option<Duration>,
    endpoint_failed: bool,
}

/// A request the server rejected: logged, counted, its events dead-lettered with the
/// reason followed by the server's words (the metric label is the part before the first
/// colon).
fn reject(
    items: &[usize],
    reason: String,
    server_said: &str,
    outcomes: &mut [Outcome],
    ctx: &SinkContext,
    state: &State,
) {
    tracing::warn!(sink = %ctx.id, %reason, reply = %server_said, n_events = items.len(), "request rejected; events dead-lettered");
    let reason = match server_said.is_empty() {
        true => reason,
        false => format!("{reason}: {server_said}"),
    };
    state.rejected(&reason);
    mark(outcomes, items, Outcome::Rejected(reason.into()));
}

/// The two halves of a request refused whole ([`Verdict::Split`]), each encoded again on
/// its own; none when it carries one item or the codec cannot encode a part again.
fn halves<C: HttpSinkCodec>(
    codec: &mut C,
    events: &[Event],
    items: &[usize],
) -> Vec<EncodedRequest> {
    if items.len() < 2 {
        return Vec::new();
    }
    let (first, second) = items.split_at(items.len() / 2);
    match (
        codec.encode_part(events, first),
        codec.encode_part(events, second),
    ) {
        (Some(first), Some(second)) => vec![first, second],
        _ => Vec::new(),
    }
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
        let body = self.compressed(body, items.len(), state).await;
        let headers = self.request_headers(&*codec, content_type, extra);
        let path_segment = path_segment.as_deref();
        loop {
            let post = (&headers, &body, path_segment);
            let tried = self.try_once(&*codec, (events, &items), post, state).await;
            let verdict = match tried.judgement {
                Judgement::Verdict(verdict) => verdict,
                Judgement::Refused(refusals) => {
                    self.refused(&items, refusals, &tried.server_said, outcomes, ctx, state);
                    return (Vec::new(), tries);
                }
            };
            let (reason, retry_after) = match verdict {
                Verdict::Delivered => {
                    mark(outcomes, &items, Outcome::Delivered);
                    self.succeeded(state, ctx);
                    return (Vec::new(), tries);
                }
                Verdict::Reject { reason } => {
                    reject(&items, reason, &tried.server_said, outcomes, ctx, state);
                    return (Vec::new(), tries);
                }
                Verdict::Split { reason } => {
                    let follow_ups = halves(codec, events, &items);
                    if follow_ups.is_empty() {
                        reject(&items, reason, &tried.server_said, outcomes, ctx, state);
                    } else {
                        tracing::debug!(sink = %ctx.id, %reason, reply = %tried.server_said, n_events = items.len(), "request refused whole; sending its halves on their own");
                        state.split_requests.inc();
                    }
                    return (follow_ups, tries);
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
                        retry_after: tried.asked_delay,
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
            if self.leaves_to_buffer(ctx) {
                return (Vec::new(), tries);
            }
            let failed = Failed {
                reason,
                server_said: tried.server_said,
                retry_after,
                endpoint_failed: tried.endpoint_failed,
            };
            if !self
                .wait_to_retry(failed, &mut tries, &items, outcomes, ctx, state)
                .await
            {
                return (Vec::new(), tries);
            }
        }
    }

    /// The body compressed, with its sizes and event count observed.
    async fn compressed(&self, body: Vec<u8>, events: usize, state: &State) -> Bytes {
        let uncompressed = body.len();
        let body = Bytes::from(self.compress(body).await);
        state.bytes_uncompressed.add(uncompressed as u64);
        state.batch_events.observe(events as f64);
        state.batch_bytes.observe(body.len() as f64);
        body
    }

    /// One try of a request: posted, its reply counted and judged by the codec (a reply
    /// that never came is a retry with the transport's reason).
    async fn try_once<C: HttpSinkCodec>(
        &self,
        codec: &C,
        (events, items): (&[Event], &[usize]),
        (headers, body, path_segment): (&HeaderMap, &Bytes, Option<&str>),
        state: &State,
    ) -> Tried {
        state.bytes_compressed.add(body.len() as u64);
        let limit = codec.max_reply_bytes();
        let result = self
            .attempt(headers.clone(), body.clone(), path_segment, limit, state)
            .await;
        let endpoint_failed = result.as_ref().map_or(true, |reply| reply.status >= 500);
        match result {
            Ok(reply) => {
                match reqwest::StatusCode::from_u16(reply.status) {
                    Ok(code) => state.requests.add(code.as_str(), 1),
                    Err(_) => state.requests.add(&reply.status.to_string(), 1),
                }
                let server_said = server_words(reply.status, &reply.body);
                let asked_delay = retry_after(&reply.headers, chrono::Utc::now());
                let reply = Reply {
                    status: reply.status,
                    headers: &reply.headers,
                    body: &reply.body,
                    items: items.len(),
                    path_segment,
                };
                Tried {
                    judgement: codec.judge_events(&reply, events, items),
                    server_said,
                    asked_delay,
                    endpoint_failed,
                }
            }
            Err(kind) => {
                state.requests.add(kind, 1);
                Tried {
                    judgement: Judgement::Verdict(Verdict::Retry {
                        reason: kind.to_owned(),
                        retry_after: None,
                    }),
                    server_said: String::new(),
                    asked_delay: None,
                    endpoint_failed,
                }
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
        let due = (state.retry_log.lock().ok()).and_then(|mut log| log.add(1, Instant::now()));
        let delay_ms = delay.as_millis() as u64;
        match due {
            Some(due) => {
                tracing::warn!(sink = %ctx.id, %reason, attempt = tries.attempt, delay_ms, retries_since_last_line = due.count, "request failed; retrying")
            }
            None => {
                tracing::debug!(sink = %ctx.id, %reason, attempt = tries.attempt, delay_ms, "request failed; retrying")
            }
        }
        state.retries.inc();
        tries.attempt = tries.attempt.saturating_add(1);
        self.sleep_before_retry(delay, ctx).await;
        true
    }

    /// Waits out a backoff; one that began before the stop ends when the stop begins (a
    /// backoff can be minutes long): the next try then comes at once, and its backoffs are
    /// cut short for the stop (or, with a disk buffer, a failure leaves the events there).
    pub(super) async fn sleep_before_retry(&self, delay: Duration, ctx: &SinkContext) {
        if ctx.shutdown.is_triggered() {
            tokio::time::sleep(delay).await;
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = ctx.shutdown.wait() => {}
        }
    }

    /// Compresses a body on the blocking pool, not on the runtime's threads: gzip of a 1 MiB
    /// batch takes milliseconds, and with `threads: 1` the one runtime thread also reads
    /// the UDP sockets, whose datagrams would be dropped meanwhile. A body that compresses
    /// in tens of microseconds is compressed in place (see [`inline_compression`]).
    pub(super) async fn compress(&self, body: Vec<u8>) -> Vec<u8> {
        let (compression, level) = (self.compression, self.level);
        if compression == Compression::None {
            return body;
        }
        if inline_compression(compression, body.len()) {
            return compression.compress(body, level);
        }
        match tokio::task::spawn_blocking(move || compression.compress(body, level)).await {
            Ok(compressed) => compressed,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // The runtime is shutting down and drops this task with it (nothing settled).
            Err(_) => std::future::pending().await,
        }
    }

    /// Stopping, with a disk buffer in front of the sink: a request that failed is not tried
    /// again. Its events stay unacknowledged in the buffer and are sent when the pipeline
    /// runs again (after the restart or the reload); retrying until the shutdown deadline
    /// would only hold the stop up for its whole length while a back-end is down. A memory
    /// buffer has nowhere to keep them, so that sink goes on trying until the deadline.
    pub(super) fn leaves_to_buffer(&self, ctx: &SinkContext) -> bool {
        ctx.shutdown.is_triggered() && self.buffer.kind == crate::buffer::BufferKind::Disk
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
