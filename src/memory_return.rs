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
//! Never: touches allocator internals, blocks a runtime thread (the thread is not joined).

use std::time::Duration;

/// How often a short-lived thread is started (one thread start, a few tens of µs).
pub const PERIOD: Duration = Duration::from_secs(2);

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
