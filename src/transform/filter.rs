//! `type: filter`: keeps the log events that match a [`Condition`]; the others are dropped
//! and counted as `sluice_events_dropped_total{reason="filtered"}` (they count as done for
//! checkpointing). Metric events always pass.
//!
//! ```yaml
//! - type: filter
//!   condition: { all: [ { field: status, gt: 499 }, { not: { field: path, matches: "^/health" } } ] }
//! ```
//!
//! Owns: the filter transform. Never: panics on any event.

use serde::Deserialize;

use super::condition::{Condition, ConditionConfig};
use super::TransformContext;
use crate::event::Event;
use crate::telemetry::Counter;

/// `type: filter` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Events matching this condition are kept; see the condition syntax in the README.
    pub condition: ConditionConfig,
}

impl FilterConfig {
    /// Validates the condition.
    pub fn build(&self, ctx: &TransformContext) -> anyhow::Result<Filter> {
        Ok(Filter {
            condition: std::sync::Arc::new(self.condition.build()?),
            dropped: ctx.metrics.dropped("filtered"),
        })
    }
}

/// A built filter transform.
#[derive(Debug, Clone)]
pub struct Filter {
    condition: std::sync::Arc<Condition>,
    dropped: Counter,
}

impl Filter {
    /// Keeps matching log events (and every metric event).
    pub fn process(&mut self, events: Vec<Event>, out: &mut Vec<Event>) {
        let before = out.len() + events.len();
        super::retain_into(events, out, |event| match event {
            Event::Log(log) => self.condition.matches(log),
            Event::Metric(_) => true,
        });
        self.dropped.add((before - out.len()) as u64);
    }
}

#[cfg(test)]
mod tests {
    use crate::event::{Event, LogEvent, Value};

    fn check(condition: &str, statuses: &[i64], kept: &[i64]) {
        let mut transform =
            super::super::tests::build(&format!("{{ type: filter, condition: {condition} }}"))
                .unwrap();
        let events = statuses
            .iter()
            .map(|s| {
                let mut log = LogEvent::new(format!("status {s}"));
                log.insert("status", Value::Int(*s));
                Event::Log(log)
            })
            .collect();
        let mut out = Vec::new();
        transform.process(events, &mut out);
        let got: Vec<i64> = out
            .iter()
            .filter_map(|e| match e.as_log()?.get("status")? {
                Value::Int(n) => Some(*n),
                _ => None,
            })
            .collect();
        assert_eq!(got, kept, "{condition}");
    }

    #[test]
    fn keeps_matching_events_in_order() {
        check(
            "{ field: status, gt: 499 }",
            &[200, 503, 404, 500],
            &[503, 500],
        );
        check(
            "{ field: status, in: [200, 404] }",
            &[200, 503, 404, 500],
            &[200, 404],
        );
        check(
            "{ not: { field: message, matches: '^status 2' } }",
            &[200, 503],
            &[503],
        );
        check("{ field: nope, exists: true }", &[200, 503], &[]);
        check("{ any: [] }", &[], &[]);
    }
}
