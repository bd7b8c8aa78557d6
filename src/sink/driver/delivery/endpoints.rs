//! Failover between a driver's endpoints: used in turn; one that fails to connect or
//! answers 5xx rests (doubling, capped) while requests go to the next.

use super::*;

/// The endpoints of a driver, used in turn; a failing one rests before it is tried again.
#[derive(Debug)]
pub(in crate::sink::driver) struct Endpoints {
    pub(super) urls: Vec<Url>,
    /// Round-robin cursor.
    pub(super) next: AtomicUsize,
    /// Per endpoint: (milliseconds since `epoch` until which it rests, consecutive failures).
    pub(super) resting: Vec<(AtomicU64, AtomicU64)>,
    pub(super) epoch: Instant,
}

/// How long a failed endpoint rests at first; doubles per consecutive failure.
pub(super) const ENDPOINT_REST_MS: u64 = 1_000;
/// The longest rest.
pub(super) const ENDPOINT_MAX_REST_MS: u64 = 30_000;

impl Endpoints {
    pub(in crate::sink::driver) fn new(urls: Vec<Url>) -> Self {
        let resting = urls
            .iter()
            .map(|_| (AtomicU64::new(0), AtomicU64::new(0)))
            .collect();
        Endpoints {
            urls,
            next: AtomicUsize::new(0),
            resting,
            epoch: Instant::now(),
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The next endpoint in turn that is not resting (or simply the next, if all rest).
    pub(super) fn pick(&self) -> usize {
        let n = self.urls.len();
        if n == 1 {
            return 0;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| self.resting[i].0.load(Ordering::Relaxed) <= now)
            .unwrap_or(start % n)
    }

    pub(super) fn succeeded(&self, endpoint: usize) {
        if self.urls.len() > 1 {
            self.resting[endpoint].1.store(0, Ordering::Relaxed);
        }
    }

    pub(super) fn failed(&self, endpoint: usize) {
        if self.urls.len() == 1 {
            return;
        }
        let (until, failures) = &self.resting[endpoint];
        let n = failures.fetch_add(1, Ordering::Relaxed).min(5);
        let rest = (ENDPOINT_REST_MS << n).min(ENDPOINT_MAX_REST_MS);
        until.store(self.now_ms() + rest, Ordering::Relaxed);
    }

    /// True when some endpoint is not resting (a retry can go there without waiting).
    pub(super) fn failover_available(&self) -> bool {
        let now = self.now_ms();
        self.urls.len() > 1
            && self
                .resting
                .iter()
                .any(|(until, _)| until.load(Ordering::Relaxed) <= now)
    }
}
