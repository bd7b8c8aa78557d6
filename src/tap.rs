//! Live taps: copies of the events passing a point of a running pipeline, for `GET /tap`
//! and `sluice tap` (like `vector tap`).
//!
//! Tap points, named by component id: a source's id is the events entering the
//! pipeline's transforms (with several sources, all of them: an event does not record
//! which source read it), a transform's id is what leaves that transform, a sink's id is
//! what that sink takes (after its `condition:`). A tap with no component sees what every
//! sink takes, each line naming its sink.
//!
//! A tap never slows a pipeline: a worker encodes events for a tap only while the tap's
//! bounded queue has room ([`QUEUE_CHUNKS`] chunks of at most [`CHUNK_EVENTS`] events and
//! [`CHUNK_BYTES`] bytes); the rest are dropped for that tap and counted
//! (`sluice_tap_events_dropped_total`, and a `{"dropped":N}` line to the reader;
//! `sluice_taps_open` is the number of open taps). With no
//! tap open, a tap point costs one relaxed atomic load per batch. At most [`MAX_TAPS`] taps
//! are open at once.
//!
//! Owns: the tap registry, the tap points of a running pipeline, the encoding of tapped
//! events. Never: holds a lock a worker waits on while no tap is open; blocks a worker.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::event::Event;
use crate::sink::LineEncoding;
use crate::telemetry::{registry, Counter, Gauge};

/// Most taps open at once (a further `GET /tap` is answered 503).
pub const MAX_TAPS: usize = 8;
/// Chunks a tap's queue holds; a worker that finds it full drops for that tap.
pub const QUEUE_CHUNKS: usize = 16;
/// Most events encoded into one chunk (the rest of a larger batch is dropped for the tap).
pub const CHUNK_EVENTS: usize = 512;
/// A chunk stops growing past this many bytes (so a tap's queue holds at most about
/// `QUEUE_CHUNKS * CHUNK_BYTES`).
pub const CHUNK_BYTES: usize = 256 * 1024;

/// The registry: open taps and the components of running pipelines.
struct Hub {
    /// Open taps (read without the lock by every tap point).
    open: AtomicUsize,
    taps: Mutex<Vec<Arc<Tap>>>,
    /// Components of each running pipeline, with the registration's id.
    pipelines: Mutex<BTreeMap<String, (u64, Components)>>,
    next_id: AtomicU64,
    dropped: Counter,
    open_gauge: Gauge,
}

fn hub() -> &'static Hub {
    static HUB: OnceLock<Hub> = OnceLock::new();
    HUB.get_or_init(|| Hub {
        open: AtomicUsize::new(0),
        taps: Mutex::new(Vec::new()),
        pipelines: Mutex::new(BTreeMap::new()),
        next_id: AtomicU64::new(1),
        dropped: registry().counter(
            "sluice_tap_events_dropped_total",
            "Events a live tap (GET /tap) did not get because its reader was slower than the pipeline.",
            &[],
        ),
        open_gauge: registry().gauge("sluice_taps_open", "Live taps (GET /tap) open now.", &[]),
    })
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The component ids of one pipeline.
#[derive(Debug, Clone, Default)]
pub struct Components {
    /// Source ids.
    pub sources: Vec<String>,
    /// Transform ids, in order.
    pub transforms: Vec<String>,
    /// Sink ids, in order.
    pub sinks: Vec<String>,
}

impl Components {
    fn has(&self, id: &str) -> bool {
        [&self.sources, &self.transforms, &self.sinks]
            .iter()
            .any(|ids| ids.iter().any(|i| i == id))
    }

    fn list(&self) -> String {
        let all: Vec<&str> = [&self.sources, &self.transforms, &self.sinks]
            .iter()
            .flat_map(|ids| ids.iter().map(String::as_str))
            .collect();
        all.join(", ")
    }
}

/// A point of a pipeline where events can be tapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// Entering the transforms (from any source).
    Input,
    /// Leaving transform `i`.
    Transform(usize),
    /// Taken by sink `i`.
    Sink(usize),
}

/// The tap points of one running pipeline; cloned into each worker. Registered while it
/// lives (the last clone dropped unregisters the pipeline's components).
#[derive(Clone)]
pub struct TapPoints {
    inner: Arc<Registered>,
}

struct Registered {
    id: u64,
    pipeline: String,
    components: Components,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut pipelines = lock(&hub().pipelines);
        if pipelines
            .get(&self.pipeline)
            .is_some_and(|(id, _)| *id == self.id)
        {
            pipelines.remove(&self.pipeline);
        }
    }
}

impl TapPoints {
    /// Registers `pipeline`'s components (replacing an earlier registration of the name).
    pub fn register(pipeline: &str, components: Components) -> TapPoints {
        let id = hub().next_id.fetch_add(1, Ordering::Relaxed);
        lock(&hub().pipelines).insert(pipeline.to_owned(), (id, components.clone()));
        TapPoints {
            inner: Arc::new(Registered {
                id,
                pipeline: pipeline.to_owned(),
                components,
            }),
        }
    }

    /// Offers `events` passing `point` to the open taps that watch it.
    #[inline]
    pub fn observe(&self, point: Point, events: &[Event]) {
        if hub().open.load(Ordering::Relaxed) == 0 || events.is_empty() {
            return;
        }
        self.observe_open(point, events);
    }

    fn observe_open(&self, point: Point, events: &[Event]) {
        let matching: Vec<(Arc<Tap>, &str)> = lock(&hub().taps)
            .iter()
            .filter_map(|tap| Some((tap.clone(), self.label(tap, point)?)))
            .collect();
        for (tap, label) in matching {
            tap.offer(&self.inner.pipeline, label, events);
        }
    }

    /// The component name a line from `point` carries for `tap`, if it watches `point`.
    fn label(&self, tap: &Tap, point: Point) -> Option<&str> {
        let registered = &*self.inner;
        if tap
            .pipeline
            .as_deref()
            .is_some_and(|p| p != registered.pipeline)
        {
            return None;
        }
        let components = &registered.components;
        let (name, is_default) = match point {
            Point::Input => (None, false),
            Point::Transform(i) => (components.transforms.get(i).map(String::as_str), false),
            Point::Sink(i) => (components.sinks.get(i).map(String::as_str), true),
        };
        match (&tap.component, point) {
            (None, _) if is_default => name,
            (None, _) => None,
            (Some(wanted), Point::Input) => components
                .sources
                .iter()
                .find(|s| *s == wanted)
                .map(String::as_str),
            (Some(wanted), _) => name.filter(|n| n == wanted),
        }
    }
}

/// One open tap.
struct Tap {
    pipeline: Option<String>,
    component: Option<String>,
    tx: mpsc::Sender<Bytes>,
    /// Events still wanted (`u64::MAX`: no limit).
    wanted: AtomicU64,
    /// Events put into the queue.
    sent: AtomicU64,
    /// Events dropped for this tap.
    dropped: AtomicU64,
    limit: u64,
    /// Why the tap was ended (its pipeline or component is gone after a reload).
    ended: Mutex<Option<String>>,
}

impl Tap {
    fn offer(&self, pipeline: &str, component: &str, events: &[Event]) {
        let permit = match self.tx.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(())) => {
                if self.wanted.load(Ordering::SeqCst) > 0 {
                    self.drop_events(events.len());
                }
                return;
            }
            Err(mpsc::error::TrySendError::Closed(())) => return,
        };
        let cap = events.len().min(CHUNK_EVENTS) as u64;
        let Some(n) = self.claim(cap) else {
            return;
        };
        let mut out = Vec::with_capacity(256 * n as usize);
        let mut taken = 0;
        for event in &events[..n as usize] {
            if out.len() >= CHUNK_BYTES {
                break;
            }
            encode(pipeline, component, event, &mut out);
            taken += 1;
        }
        if taken < n && self.limit != u64::MAX {
            // Claimed but not encoded: wanted again.
            self.wanted.fetch_add(n - taken, Ordering::SeqCst);
        }
        // Past the limit, the rest of the batch is not wanted: not a drop.
        let missed = match n == cap {
            true => events.len() as u64 - taken,
            false => n - taken,
        };
        if missed > 0 {
            self.drop_events(missed as usize);
        }
        permit.send(Bytes::from(out));
        self.sent.fetch_add(taken, Ordering::SeqCst);
    }

    /// Takes up to `n` of the wanted events; `None` when the tap wants no more.
    fn claim(&self, n: u64) -> Option<u64> {
        if self.limit == u64::MAX {
            return Some(n);
        }
        let mut wanted = self.wanted.load(Ordering::SeqCst);
        loop {
            if wanted == 0 {
                return None;
            }
            let take = n.min(wanted);
            match self.wanted.compare_exchange(
                wanted,
                wanted - take,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return Some(take),
                Err(now) => wanted = now,
            }
        }
    }

    /// Ends the tap: its reader gets `why` as a last `{"error":…}` line, then the end.
    fn end(&self, why: String) {
        *lock(&self.ended) = Some(why);
        // Wakes a reader waiting on an empty queue (an empty chunk shows nothing); a full
        // queue's reader finds the reason once it has read the rest.
        let _ = self.tx.try_send(Bytes::new());
    }

    /// Why this tap watches nothing any running pipeline has, if it does not.
    fn orphaned(&self, pipelines: &BTreeMap<String, (u64, Components)>) -> Option<String> {
        match (&self.pipeline, &self.component) {
            (Some(pipeline), component) => match pipelines.get(pipeline) {
                None => Some(format!("pipeline {pipeline:?} is no longer running")),
                Some((_, components)) => component
                    .as_ref()
                    .filter(|c| !components.has(c))
                    .map(|c| format!("pipeline {pipeline:?} has no component {c:?} any more")),
            },
            (None, Some(component)) => (!pipelines.values().any(|(_, c)| c.has(component)))
                .then(|| format!("no running pipeline has a component {component:?} any more")),
            (None, None) => None,
        }
    }

    fn drop_events(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
        hub().dropped.add(n as u64);
    }
}

/// `{"pipeline":…,"component":…,"event":{…}}` and a newline.
fn encode(pipeline: &str, component: &str, event: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"pipeline\":");
    let _ = serde_json::to_writer(&mut *out, pipeline);
    out.extend_from_slice(b",\"component\":");
    let _ = serde_json::to_writer(&mut *out, component);
    out.extend_from_slice(b",\"event\":");
    LineEncoding::Json.encode(event, out);
    out.pop();
    out.extend_from_slice(b"}\n");
}

/// Why a tap cannot be opened.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// [`MAX_TAPS`] are open.
    TooMany,
    /// No running pipeline has that name or component.
    Unknown(String),
}

/// The reading end of an open tap: chunks of JSON lines. Closing it (dropping) closes the
/// tap.
pub struct TapReader {
    tap: Arc<Tap>,
    rx: mpsc::Receiver<Bytes>,
    reported_drops: u64,
    /// The `{"error":…}` line of an ended tap was returned.
    end_reported: bool,
}

/// Opens a tap on `pipeline` (any when `None`) and `component` (the sinks' input when
/// `None`) for at most `limit` events (no limit when `None`).
pub fn open(
    pipeline: Option<&str>,
    component: Option<&str>,
    limit: Option<u64>,
) -> Result<TapReader, OpenError> {
    check_names(pipeline, component)?;
    let mut taps = lock(&hub().taps);
    if taps.len() >= MAX_TAPS {
        return Err(OpenError::TooMany);
    }
    let (tx, rx) = mpsc::channel(QUEUE_CHUNKS);
    let limit = limit.unwrap_or(u64::MAX);
    let tap = Arc::new(Tap {
        pipeline: pipeline.map(str::to_owned),
        component: component.map(str::to_owned),
        tx,
        wanted: AtomicU64::new(limit),
        sent: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        limit,
        ended: Mutex::new(None),
    });
    taps.push(tap.clone());
    set_open(&taps);
    Ok(TapReader {
        tap,
        rx,
        reported_drops: 0,
        end_reported: false,
    })
}

/// Ends the taps that watch a pipeline or component no running pipeline has any more
/// (after a reload removed or renamed it, as `vector tap` says a component is gone): each
/// reader gets a last `{"error":…}` line and its stream ends, which frees its slot. A tap
/// on a pipeline restarted under its name goes on.
pub fn end_orphans() {
    let pipelines = lock(&hub().pipelines);
    let mut taps = lock(&hub().taps);
    taps.retain(|tap| match tap.orphaned(&pipelines) {
        Some(why) => {
            tap.end(why);
            false
        }
        None => true,
    });
    set_open(&taps);
}

/// Publishes how many taps are open (read by every tap point without the lock).
fn set_open(taps: &[Arc<Tap>]) {
    hub().open.store(taps.len(), Ordering::SeqCst);
    hub().open_gauge.set(taps.len() as i64);
}

/// Refuses names no running pipeline has (a typo would otherwise wait forever).
fn check_names(pipeline: Option<&str>, component: Option<&str>) -> Result<(), OpenError> {
    let pipelines = lock(&hub().pipelines);
    let running: Vec<&str> = pipelines.keys().map(String::as_str).collect();
    let candidates: Vec<(&String, &Components)> = match pipeline {
        Some(name) => match pipelines.get_key_value(name) {
            Some((name, (_, components))) => vec![(name, components)],
            None => {
                return Err(OpenError::Unknown(format!(
                    "no running pipeline {name:?} (running: {})",
                    running.join(", ")
                )))
            }
        },
        None => pipelines.iter().map(|(n, (_, c))| (n, c)).collect(),
    };
    let Some(component) = component else {
        return Ok(());
    };
    if candidates.iter().any(|(_, c)| c.has(component)) {
        return Ok(());
    }
    let known: Vec<String> = candidates
        .iter()
        .map(|(name, c)| format!("{name}: {}", c.list()))
        .collect();
    Err(OpenError::Unknown(format!(
        "no component {component:?} in {} (components: {})",
        pipeline.map_or("any running pipeline".to_owned(), |p| format!(
            "pipeline {p:?}"
        )),
        known.join("; ")
    )))
}

impl TapReader {
    /// The next chunk of lines (prefixed by a `{"dropped":N}` line when events were
    /// dropped since the last chunk); `None` once the limit was reached and everything
    /// was read.
    pub async fn next(&mut self) -> Option<Bytes> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// [`TapReader::next`] for a hand-written future or body.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            // Read before the queue: every chunk counted in `sent` is already queued.
            let complete = self.tap.sent.load(Ordering::SeqCst) >= self.tap.limit;
            let chunk = match complete {
                true => match self.rx.try_recv() {
                    Ok(chunk) => chunk,
                    Err(_) => return Poll::Ready(None),
                },
                false => match self.rx.poll_recv(cx) {
                    Poll::Ready(Some(chunk)) => chunk,
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending if self.end_reported => return Poll::Ready(None),
                    Poll::Pending => match lock(&self.tap.ended).as_deref() {
                        Some(why) => {
                            self.end_reported = true;
                            let line = serde_json::json!({ "error": why }).to_string() + "\n";
                            return Poll::Ready(Some(Bytes::from(line)));
                        }
                        None => return Poll::Pending,
                    },
                },
            };
            let dropped = self.tap.dropped.load(Ordering::Relaxed);
            if dropped > self.reported_drops {
                let notice = format!("{{\"dropped\":{}}}\n", dropped - self.reported_drops);
                self.reported_drops = dropped;
                let mut out = Vec::with_capacity(notice.len() + chunk.len());
                out.extend_from_slice(notice.as_bytes());
                out.extend_from_slice(&chunk);
                return Poll::Ready(Some(Bytes::from(out)));
            }
            if !chunk.is_empty() {
                return Poll::Ready(Some(chunk));
            }
        }
    }
}

impl Drop for TapReader {
    fn drop(&mut self) {
        let mut taps = lock(&hub().taps);
        taps.retain(|tap| !Arc::ptr_eq(tap, &self.tap));
        set_open(&taps);
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

    fn components() -> Components {
        Components {
            sources: vec!["in".into()],
            transforms: vec!["parse".into()],
            sinks: vec!["loki".into(), "es".into()],
        }
    }

    fn lines(chunk: &Bytes) -> Vec<serde_json::Value> {
        std::str::from_utf8(chunk)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// One test: the hub is process-wide, so parallel tests would see each other's taps.
    #[test]
    fn taps_see_their_points_honour_limits_and_drop_when_full() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let points = TapPoints::register("tap_test", components());
        assert!(matches!(
            open(Some("nope"), None, None),
            Err(OpenError::Unknown(text)) if text.starts_with("no running pipeline \"nope\"")
        ));
        assert!(matches!(
            open(Some("tap_test"), Some("typo"), None),
            Err(OpenError::Unknown(text)) if text.contains("in, parse, loki, es")
        ));

        // The default tap sees what each sink takes, labelled by sink.
        let mut reader = open(Some("tap_test"), None, Some(3)).unwrap();
        points.observe(Point::Input, &events(5));
        points.observe(Point::Transform(0), &events(5));
        points.observe(Point::Sink(1), &events(2));
        points.observe(Point::Sink(0), &events(2));
        let first = runtime.block_on(reader.next()).unwrap();
        let got = lines(&first);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["component"], "es");
        assert_eq!(got[0]["pipeline"], "tap_test");
        assert_eq!(got[1]["event"]["message"], "line 1");
        let second = runtime.block_on(reader.next()).unwrap();
        assert_eq!(lines(&second).len(), 1, "the limit of 3");
        assert_eq!(lines(&second)[0]["component"], "loki");
        assert!(runtime.block_on(reader.next()).is_none(), "limit reached");
        drop(reader);

        // A source's id taps the input; a stalled reader's tap drops and says so.
        let mut reader = open(None, Some("in"), None).unwrap();
        for _ in 0..QUEUE_CHUNKS + 3 {
            points.observe(Point::Input, &events(2));
        }
        points.observe(Point::Transform(0), &events(2));
        let chunk = runtime.block_on(reader.next()).unwrap();
        let got = lines(&chunk);
        assert_eq!(got[0], serde_json::json!({"dropped": 6}));
        assert_eq!(got[1]["component"], "in");
        drop(reader);
        assert_eq!(hub().open.load(Ordering::SeqCst), 0);

        // At most MAX_TAPS at once.
        let readers: Vec<_> = (0..MAX_TAPS)
            .map(|_| open(None, None, None).unwrap())
            .collect();
        assert_eq!(open(None, None, None).err(), Some(OpenError::TooMany));
        drop(readers);
        drop(points);
        assert!(matches!(
            open(Some("tap_test"), None, None),
            Err(OpenError::Unknown(_))
        ));
    }
}
