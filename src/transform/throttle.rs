//! `type: throttle`: lets at most `threshold` log events through per `window_secs`, in
//! total or per `key_field` value; the excess is dropped and counted as
//! `sluice_events_dropped_total{reason="throttled"}`.
//!
//! ```yaml
//! - type: throttle
//!   threshold: 100
//!   window_secs: 1
//!   key_field: service     # optional
//!   max_keys: 10000        # optional: keys tracked at most
//! ```
//!
//! Windows are fixed: a key's window starts with its first event and lasts `window_secs`.
//! The budget is shared by all worker threads. At most `max_keys` keys are tracked; when
//! that many are live, new keys share one overflow budget (counted as
//! `sluice_transform_failures_total{reason="key_limit"}`), so memory stays bounded
//! whatever the key cardinality. Events matching `exclude` are never throttled.
//!
//! Owns: the throttle transform. Never: grows past `max_keys` keys.

use std::collections::HashMap;
use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::condition::{Condition, ConditionConfig};
use super::TransformContext;
use crate::event::Event;
use crate::telemetry::Counter;

/// `type: throttle` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Events let through per window (per key with `key_field`).
    pub threshold: NonZeroU64,
    /// Window length in seconds (fractions allowed).
    pub window_secs: f64,
    /// Give each value of this field its own budget.
    #[serde(default)]
    pub key_field: Option<String>,
    /// Keys tracked at most (default 10000); beyond, new keys share one overflow budget.
    #[serde(default = "default_max_keys")]
    pub max_keys: NonZeroUsize,
    /// Events matching this condition are never throttled.
    #[serde(default)]
    pub exclude: Option<ConditionConfig>,
}

fn default_max_keys() -> NonZeroUsize {
    NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN)
}

impl ThrottleConfig {
    /// Validates the settings.
    pub fn build(&self, ctx: &TransformContext) -> anyhow::Result<Throttle> {
        // NaN and infinities are outside the range; a millisecond is the finest window.
        crate::bounds::check(
            "window_secs",
            self.window_secs,
            0.001..=crate::bounds::MAX_SECS as f64,
        )?;
        crate::bounds::check(
            "max_keys",
            self.max_keys.get(),
            1..=crate::bounds::MAX_TRACKED,
        )?;
        anyhow::ensure!(
            self.key_field.as_ref().is_none_or(|k| !k.is_empty()),
            "key_field must not be empty"
        );
        let exclude = match &self.exclude {
            Some(condition) => Some(Arc::new(
                condition.build().map_err(|e| e.context("exclude"))?,
            )),
            None => None,
        };
        Ok(Throttle {
            threshold: self.threshold.get(),
            window: Duration::from_secs_f64(self.window_secs),
            key_field: self.key_field.clone(),
            max_keys: self.max_keys.get(),
            exclude,
            state: Arc::new(Mutex::new(State::default())),
            dropped: ctx.metrics.dropped("throttled"),
            key_limit: ctx.failures("key_limit"),
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Budget {
    started: Instant,
    used: u64,
}

#[derive(Debug, Default)]
struct State {
    keys: HashMap<String, Budget>,
    overflow: Option<Budget>,
}

/// A built throttle transform (its budgets are shared by every worker's clone).
#[derive(Debug, Clone)]
pub struct Throttle {
    threshold: u64,
    window: Duration,
    key_field: Option<String>,
    max_keys: usize,
    exclude: Option<Arc<Condition>>,
    state: Arc<Mutex<State>>,
    dropped: Counter,
    key_limit: Counter,
}

impl Throttle {
    /// Lets through what fits in the budgets.
    pub fn process(&mut self, events: Vec<Event>, out: &mut Vec<Event>) {
        self.process_at(Instant::now(), events, out);
    }

    /// [`Throttle::process`] at a given time (tests drive the clock).
    pub fn process_at(&mut self, now: Instant, events: Vec<Event>, out: &mut Vec<Event>) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut n_dropped = 0;
        super::retain_into(events, out, |event| {
            let Event::Log(log) = &*event else {
                return true;
            };
            if self.exclude.as_ref().is_some_and(|c| c.matches(log)) {
                return true;
            }
            let key = match &self.key_field {
                Some(field) => log.lookup(field).map(|v| v.to_text()).unwrap_or_default(),
                None => Default::default(),
            };
            let budget = self.budget(&mut state, &key, now);
            if now.duration_since(budget.started) >= self.window {
                *budget = Budget {
                    started: now,
                    used: 0,
                };
            }
            if budget.used < self.threshold {
                budget.used += 1;
                true
            } else {
                n_dropped += 1;
                false
            }
        });
        self.dropped.add(n_dropped);
    }

    fn budget<'a>(&self, state: &'a mut State, key: &str, now: Instant) -> &'a mut Budget {
        let fresh = Budget {
            started: now,
            used: 0,
        };
        if !state.keys.contains_key(key) && state.keys.len() >= self.max_keys {
            let window = self.window;
            state
                .keys
                .retain(|_, b| now.duration_since(b.started) < window);
            if state.keys.len() >= self.max_keys {
                self.key_limit.inc();
                return state.overflow.get_or_insert(fresh);
            }
        }
        // Lookups by `&str` keep the hot path free of a key allocation.
        if !state.keys.contains_key(key) {
            state.keys.insert(key.to_owned(), fresh);
        }
        match state.keys.get_mut(key) {
            Some(budget) => budget,
            None => state.overflow.get_or_insert(fresh),
        }
    }

    /// Keys currently tracked.
    pub fn tracked_keys(&self) -> usize {
        self.state.lock().map_or(0, |s| s.keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{LogEvent, Value};

    fn build(threshold: u64, key_field: Option<&str>, max_keys: usize) -> Throttle {
        ThrottleConfig {
            threshold: NonZeroU64::new(threshold).unwrap(),
            window_secs: 1.0,
            key_field: key_field.map(str::to_owned),
            max_keys: NonZeroUsize::new(max_keys).unwrap(),
            exclude: Some(ConditionConfig(
                serde_json::json!({"field": "level", "equals": "error"}),
            )),
        }
        .build(&TransformContext::for_tests())
        .unwrap()
    }

    /// Sends one event per key at `at_ms` and checks how many pass.
    fn check(throttle: &mut Throttle, start: Instant, at_ms: u64, keys: &[&str], passed: usize) {
        let events = keys
            .iter()
            .map(|k| {
                let mut log = LogEvent::new("x");
                log.insert("key", *k);
                if *k == "error" {
                    log.insert("level", Value::from("error"));
                }
                Event::Log(log)
            })
            .collect();
        let mut out = Vec::new();
        throttle.process_at(start + Duration::from_millis(at_ms), events, &mut out);
        assert_eq!(out.len(), passed, "at {at_ms} ms: {keys:?}");
    }

    #[test]
    fn limits_per_window() {
        let start = Instant::now();
        let mut t = build(2, None, 10);
        check(&mut t, start, 0, &["a", "b", "c"], 2);
        check(&mut t, start, 500, &["a"], 0);
        check(&mut t, start, 999, &["error", "error"], 2);
        check(&mut t, start, 1000, &["a", "b", "c"], 2);
    }

    #[test]
    fn limits_per_key_with_bounded_keys() {
        let start = Instant::now();
        let mut t = build(1, Some("key"), 2);
        check(&mut t, start, 0, &["a", "a", "b", "b"], 2);
        // Keys c and d overflow the key table and share one budget.
        check(&mut t, start, 10, &["c", "d", "c"], 1);
        assert_eq!(t.tracked_keys(), 2);
        // Clones (other workers) share the budgets.
        let mut clone = t.clone();
        check(&mut clone, start, 20, &["a"], 0);
        // Expired keys are evicted to make room.
        check(&mut t, start, 1500, &["c", "c", "a"], 2);
        assert_eq!(t.tracked_keys(), 2);
    }

    #[test]
    fn many_keys_stay_bounded() {
        let start = Instant::now();
        let mut t = build(5, Some("key"), 100);
        let keys: Vec<String> = (0..10_000).map(|i| format!("k{i}")).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        check(&mut t, start, 0, &refs, 100 + 5);
        assert_eq!(t.tracked_keys(), 100);
    }
}
