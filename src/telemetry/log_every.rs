//! A log line for something that happens often (datagrams dropped, events dropped for a
//! full buffer): at the first occurrence, then at most once per interval, with how many
//! happened since the last line. The counters have every one; the log says that it is
//! happening, not once per event.
//!
//! Owns: the timing and the count since the last line. Never: writes the line itself (each
//! caller words its own).

use std::time::{Duration, Instant};

/// When to log an occurrence that may repeat thousands of times a second.
#[derive(Debug)]
pub struct LogEvery {
    every: Duration,
    logged_at: Option<Instant>,
    since: u64,
}

/// A line is due: what it reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Occurrences since the last line (this one's included).
    pub count: u64,
    /// Seconds since the last line; `None` for the first.
    pub since_last_line_secs: Option<u64>,
}

impl LogEvery {
    /// At most one line per `every`.
    pub const fn new(every: Duration) -> Self {
        LogEvery {
            every,
            logged_at: None,
            since: 0,
        }
    }

    /// Adds `n` occurrences at `now`; `Some` when a line is due.
    pub fn add(&mut self, n: u64, now: Instant) -> Option<Due> {
        self.since += n;
        if self
            .logged_at
            .is_some_and(|at| now.duration_since(at) < self.every)
        {
            return None;
        }
        let due = Due {
            count: self.since,
            since_last_line_secs: self.logged_at.map(|at| now.duration_since(at).as_secs()),
        };
        (self.logged_at, self.since) = (Some(now), 0);
        Some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_then_at_most_every_interval_with_the_count_since() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut log = LogEvery::new(Duration::from_secs(10));
        let first = Due {
            count: 3,
            since_last_line_secs: None,
        };
        assert_eq!(log.add(3, at(0)), Some(first));
        assert_eq!(log.add(5, at(1_000)), None);
        assert_eq!(log.add(2, at(9_999)), None);
        let next = Due {
            count: 8,
            since_last_line_secs: Some(10),
        };
        assert_eq!(log.add(1, at(10_000)), Some(next));
    }
}
