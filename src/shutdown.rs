//! The stop signal every source, worker and sink watches: usable from threads (blocking
//! waits with a timeout) and from async tasks.
//!
//! Owns: one flag and its wake-ups. Never: decides when to stop (the runtime does).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Inner {
    stopped: AtomicBool,
    lock: Mutex<()>,
    condvar: Condvar,
    notify: tokio::sync::Notify,
}

/// A cloneable stop signal. Once triggered it stays triggered.
#[derive(Clone, Default)]
pub struct Shutdown(Arc<Inner>);

impl Shutdown {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the signal and wakes every waiter.
    pub fn trigger(&self) {
        self.0.stopped.store(true, Ordering::Release);
        let _guard = self.0.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.0.condvar.notify_all();
        self.0.notify.notify_waiters();
    }

    /// True once fired.
    pub fn is_triggered(&self) -> bool {
        self.0.stopped.load(Ordering::Acquire)
    }

    /// Blocks the thread for up to `timeout` or until fired. Returns true when fired.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let guard = self.0.lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.is_triggered() {
            return true;
        }
        let _ = self.0.condvar.wait_timeout(guard, timeout);
        self.is_triggered()
    }

    /// Completes when fired.
    pub async fn wait(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }
}
