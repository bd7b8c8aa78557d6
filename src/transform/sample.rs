//! `type: sample`: keeps one event in `rate`, and marks what it keeps with a `sample_rate`
//! field so counts downstream can be re-weighted (multiply by `sample_rate`).
//!
//! ```yaml
//! - type: sample
//!   rate: 10
//!   key_field: request_id      # optional: keep or drop whole keys
//!   exclude: { field: status, gte: 500 }   # optional: never sampled away
//! ```
//!
//! With `key_field`, an event is kept when a stable hash of the key's text (FNV-1a, then a
//! 64-bit mixer; the same in every run, process and worker thread) falls in the kept
//! `1/rate` share: every line of a kept key is kept, every line of a dropped key dropped.
//! Without `key_field` (or for an event that lacks it), each worker keeps the first of every
//! `rate` events it sees: exact, deterministic for a given input, and unbiased by content
//! (hashing the message would drop every repeat of a frequent line together).
//! Events matching `exclude` are always kept, with `sample_rate: 1` (so a sum of
//! `sample_rate` estimates the unsampled count). Dropped events count
//! as `sluice_events_dropped_total{reason="sampled"}`. Metric events always pass.
//!
//! Owns: the sample transform and [`key_is_kept`]. Never: uses a per-process random seed.

use std::num::NonZeroU64;
use std::sync::Arc;

use serde::Deserialize;

use super::condition::{Condition, ConditionConfig};
use super::TransformContext;
use crate::event::{Event, LogEvent, Value};
use crate::telemetry::Counter;

/// `type: sample` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// Keep one event (or one key) in `rate`; `1` keeps everything.
    pub rate: NonZeroU64,
    /// Sample whole keys by this field's value (request id, client address) instead of
    /// single events.
    #[serde(default)]
    pub key_field: Option<String>,
    /// Events matching this condition are always kept (errors, slow requests).
    #[serde(default)]
    pub exclude: Option<ConditionConfig>,
}

impl SampleConfig {
    /// Validates the settings.
    pub fn build(&self, ctx: &TransformContext) -> anyhow::Result<Sample> {
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
        Ok(Sample {
            rate: self.rate.get(),
            key_field: self.key_field.clone(),
            exclude,
            seen: 0,
            dropped: ctx.metrics.dropped("sampled"),
        })
    }
}

/// A built sample transform.
#[derive(Debug, Clone)]
pub struct Sample {
    rate: u64,
    key_field: Option<String>,
    exclude: Option<Arc<Condition>>,
    /// Events sampled by count on this worker.
    seen: u64,
    dropped: Counter,
}

/// Whether events with key `key` are kept at `rate` (one key in `rate`). Stable across runs,
/// processes and machines.
pub fn key_is_kept(key: &str, rate: u64) -> bool {
    rate <= 1 || mix(crate::hash_str(key)).is_multiple_of(rate)
}

/// splitmix64's finaliser: spreads FNV's weak low bits over the whole word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Sample {
    /// Keeps the sampled share of the log events, in order.
    pub fn process(&mut self, events: Vec<Event>, out: &mut Vec<Event>) {
        let mut n_dropped = 0;
        super::retain_into(events, out, |event| {
            if let Event::Log(log) = event {
                if !self.keep(log) {
                    n_dropped += 1;
                    return false;
                }
            }
            true
        });
        self.dropped.add(n_dropped);
    }

    fn keep(&mut self, log: &mut LogEvent) -> bool {
        if self.exclude.as_ref().is_some_and(|c| c.matches(log)) {
            log.insert("sample_rate", Value::Int(1));
            return true;
        }
        let by_key = self
            .key_field
            .as_ref()
            .and_then(|field| log.lookup(field))
            .map(|key| key_is_kept(&key.to_text(), self.rate));
        let kept = by_key.unwrap_or_else(|| {
            let kept = self.seen.is_multiple_of(self.rate);
            self.seen = self.seen.wrapping_add(1);
            kept
        });
        if kept {
            log.insert(
                "sample_rate",
                Value::Int(i64::try_from(self.rate).unwrap_or(i64::MAX)),
            );
        }
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(rate: u64, key_field: Option<&str>, exclude: Option<&str>) -> Sample {
        let exclude = exclude.map(|c| ConditionConfig(serde_json::from_str(c).unwrap()));
        let config = SampleConfig {
            rate: NonZeroU64::new(rate).unwrap(),
            key_field: key_field.map(str::to_owned),
            exclude,
        };
        config.build(&TransformContext::for_tests()).unwrap()
    }

    fn events(keys: &[&str]) -> Vec<Event> {
        keys.iter()
            .enumerate()
            .map(|(i, key)| {
                let mut log = LogEvent::new(format!("line {i}"));
                if !key.is_empty() {
                    log.insert("key", *key);
                }
                log.insert("n", Value::Int(i as i64));
                Event::Log(log)
            })
            .collect()
    }

    /// Runs `keys` (one event each, `""` = no key field) and checks which indexes are kept.
    fn check(sample: &mut Sample, keys: &[&str], kept: &[i64]) {
        let mut out = Vec::new();
        sample.process(events(keys), &mut out);
        let got: Vec<i64> = out
            .iter()
            .map(|e| match e.as_log().and_then(|l| l.get("n")) {
                Some(Value::Int(n)) => *n,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, kept, "{keys:?}");
    }

    #[test]
    fn samples_by_count_without_key() {
        let mut sample = build(3, None, None);
        check(&mut sample, &["", "", "", "", "", "", ""], &[0, 3, 6]);
        // The count carries over between batches.
        check(&mut sample, &["", "", ""], &[2]);
        check(&mut build(1, None, None), &["", ""], &[0, 1]);
    }

    #[test]
    fn samples_whole_keys() {
        let keys: Vec<String> = (0..200).map(|i| format!("client-{i}")).collect();
        let kept_keys: Vec<&String> = keys.iter().filter(|k| key_is_kept(k, 4)).collect();
        assert!(!kept_keys.is_empty() && kept_keys.len() < keys.len());
        let kept = kept_keys[0].as_str();
        let dropped = keys.iter().find(|k| !key_is_kept(k, 4)).unwrap().as_str();
        check(
            &mut build(4, Some("key"), None),
            &[kept, dropped, kept, dropped, kept],
            &[0, 2, 4],
        );
    }

    #[test]
    fn exclude_and_sample_rate_field() {
        let dropped = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| !key_is_kept(k, 10))
            .unwrap();
        let mut sample = build(
            10,
            Some("key"),
            Some(r#"{"field": "message", "matches": "line [13]$"}"#),
        );
        let mut out = Vec::new();
        sample.process(events(&[&dropped, &dropped, &dropped, &dropped]), &mut out);
        assert_eq!(out.len(), 2, "excluded lines are kept");
        assert!(out
            .iter()
            .all(|e| e.as_log().unwrap().get("sample_rate") == Some(&Value::Int(1))));

        let mut sample = build(10, None, None);
        let mut out = Vec::new();
        sample.process(events(&[""]), &mut out);
        assert_eq!(
            out[0].as_log().unwrap().get("sample_rate"),
            Some(&Value::Int(10))
        );
    }

    #[test]
    fn key_sampling_is_stable_and_fair() {
        // Pinned decisions (computed by an independent Python model of FNV-1a + splitmix64):
        // the hash must never change between versions, or sampling would flip on upgrade.
        let keys = [
            "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7",
            "10.0.0.8", "req-1", "req-2", "alice", "bob",
        ];
        let kept: Vec<&str> = keys.into_iter().filter(|k| key_is_kept(k, 4)).collect();
        assert_eq!(kept, ["10.0.0.3", "10.0.0.6", "10.0.0.7", "alice", "bob"]);
        for rate in [2u64, 4, 10] {
            let kept = (0..100_000u32)
                .filter(|i| key_is_kept(&format!("req-{i:08x}"), rate))
                .count();
            let expected = 100_000.0 / rate as f64;
            let error = (kept as f64 - expected).abs() / expected;
            assert!(
                error < 0.02,
                "rate {rate}: kept {kept}, expected {expected}"
            );
        }
        // Keys that look alike (IP addresses) spread too.
        let kept = (0..100_000u32)
            .filter(|i| {
                key_is_kept(
                    &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
                    10,
                )
            })
            .count();
        assert!((kept as f64 - 10_000.0).abs() < 200.0, "kept {kept}");
    }

    #[test]
    fn same_decision_on_every_thread() {
        let keys: Vec<String> = (0..5000).map(|i| format!("user{i}")).collect();
        let decide = |keys: Vec<String>| keys.iter().map(|k| key_is_kept(k, 7)).collect::<Vec<_>>();
        let here = decide(keys.clone());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let k = keys.clone();
                std::thread::spawn(move || decide(k))
            })
            .collect();
        for thread in threads {
            assert_eq!(thread.join().unwrap(), here);
        }
    }
}
