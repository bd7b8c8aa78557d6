//! Owns giving freed memory back to the OS while the agent idles after a burst.
//!
//! mimalloc (the binary's allocator) releases a freed range only after its purge delay
//! (1 s), and only when some thread later frees or abandons a page: in an agent that goes
//! quiet after a burst (a syslog connection flood that closed) nothing does, and the
//! freed pages stay resident. A thread that exits abandons its heap, which purges every
//! expired range of every arena. So every [`PERIOD`] a short-lived thread allocates once and
//! exits. Changing the option itself (`mi_option_set`, `mi_collect`) would need `unsafe`;
//! `MIMALLOC_PURGE_DELAY=0` purges at once but cost file → Loki ~20% of its CPU
//! (docs/decisions.md).
//!
//! That returns only pages no thread owns any more. A long-lived thread's heap keeps the
//! pages its own allocations came from: blocks other threads freed wait on the page until
//! the owner collects them, and an emptied page that was the last of its size stays
//! "retired" for the owner's next allocations. An idle runtime thread never collects, so
//! after a syslog flood its pages stayed resident (docs/decisions.md). mimalloc collects a
//! thread's heap every 10,000 allocations that take its generic path (every allocation
//! over 1 KiB does) and frees retired pages after 4 to 16 rounds of 1,000: so each runtime
//! worker, as it parks after some work, makes [`COLLECT_ALLOCATIONS`] such allocations
//! (twice, at most once per [`PERIOD`]: [`thread_parking`]; about 1 ms each). An idle
//! agent's workers do not: they wake only for timers.
//!
//! Never: touches allocator internals, blocks a runtime thread (the thread is not joined).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How often a short-lived thread is started (one thread start, a few tens of µs), and how
/// often at most a runtime thread collects its heap.
pub const PERIOD: Duration = Duration::from_secs(2);

/// Allocations (and frees) that make mimalloc collect the calling thread's heap once and
/// free its retired pages: 10,000 per collection, 16 rounds of 1,000 for a small page.
pub const COLLECT_ALLOCATIONS: usize = 20_000;

/// Bytes of each: over mimalloc's 1 KiB small-object limit, so each takes the generic path.
const COLLECT_SIZE: usize = 2048;

/// Starts a short-lived thread every [`PERIOD`], for ever (abort the task to stop).
pub async fn return_freed_memory_periodically() {
    loop {
        tokio::time::sleep(PERIOD).await;
        // The allocation makes the allocator set up (and at exit abandon) this thread's heap.
        let spawned = std::thread::Builder::new()
            .name("sluice-purge".into())
            // It touches a few hundred bytes of stack; glibc caches the mapping for the next.
            .stack_size(64 * 1024)
            .spawn(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(64))));
        if let Err(error) = spawned {
            tracing::debug!(%error, "could not start the memory-return thread");
        }
    }
}

/// Busy time (between an unpark and the next park) after which a runtime thread collects
/// its heap: an idle agent's timers add a few µs a wake-up, a burst far more.
const BUSY_BEFORE_COLLECTING: Duration = Duration::from_millis(10);

/// Collections made after a busy spell: the second takes back what other threads freed into
/// the thread's pages after the first (the events of a burst are freed by the sinks later).
const COLLECTIONS_AFTER_BUSY: u8 = 2;

/// What a runtime thread knows of its own activity since it last collected.
struct Activity {
    /// When it last woke (`None` while parked).
    woke: Cell<Option<Instant>>,
    /// Busy time since it last collected.
    busy: Cell<Duration>,
    /// When it last collected.
    collected: Cell<Option<Instant>>,
    /// Collections still to make.
    pending: Cell<u8>,
}

thread_local! {
    static ACTIVITY: Activity = const {
        Activity {
            woke: Cell::new(None),
            busy: Cell::new(Duration::ZERO),
            collected: Cell::new(None),
            pending: Cell::new(0),
        }
    };
}

/// For the runtime's `on_thread_unpark`: the thread starts being busy.
pub fn thread_unparked() {
    ACTIVITY.with(|activity| activity.woke.set(Some(Instant::now())));
}

/// For the runtime's `on_thread_park` (a worker about to sleep has nothing better to do):
/// after `BUSY_BEFORE_COLLECTING` of work, makes the allocator collect the calling
/// thread's heap `COLLECTIONS_AFTER_BUSY` times, at most once per `PERIOD`.
pub fn thread_parking() {
    let now = Instant::now();
    let due = ACTIVITY.with(|activity| {
        if let Some(woke) = activity.woke.take() {
            activity
                .busy
                .set(activity.busy.get() + now.duration_since(woke));
        }
        if activity.busy.get() >= BUSY_BEFORE_COLLECTING {
            activity.busy.set(Duration::ZERO);
            activity.pending.set(COLLECTIONS_AFTER_BUSY);
        }
        let waited = activity
            .collected
            .get()
            .is_none_or(|then| now.duration_since(then) >= PERIOD);
        if activity.pending.get() == 0 || !waited {
            return false;
        }
        activity.pending.set(activity.pending.get() - 1);
        activity.collected.set(Some(now));
        true
    });
    if due {
        collect_this_thread();
    }
}

/// Makes the allocator collect the calling thread's heap and free its retired pages.
pub fn collect_this_thread() {
    for _ in 0..COLLECT_ALLOCATIONS {
        drop(std::hint::black_box(Vec::<u8>::with_capacity(COLLECT_SIZE)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> (u8, bool) {
        ACTIVITY.with(|a| (a.pending.get(), a.collected.get().is_some()))
    }

    #[test]
    fn a_thread_collects_only_after_it_was_busy_and_then_twice_at_most_every_period() {
        // Woken by timers: a few µs each, no collection.
        for _ in 0..100 {
            thread_unparked();
            thread_parking();
        }
        assert_eq!(state(), (0, false));
        // Busy for longer than the threshold: collects at once, one collection still due.
        thread_unparked();
        std::thread::sleep(BUSY_BEFORE_COLLECTING + Duration::from_millis(2));
        thread_parking();
        assert_eq!(state(), (1, true));
        // Not again before the period is over.
        thread_unparked();
        thread_parking();
        assert_eq!(state(), (1, true));
        ACTIVITY.with(|a| a.collected.set(Some(Instant::now() - PERIOD)));
        thread_unparked();
        thread_parking();
        assert_eq!(state(), (0, true));
    }
}
