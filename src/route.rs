//! Routing: a sink's `condition:` picks the events that sink takes, so one pipeline sends
//! different events to different sinks (errors to Elasticsearch, everything to Loki).
//!
//! ```yaml
//! sinks:
//!   - { type: loki, endpoint: http://loki:3100 }                  # every event
//!   - type: elasticsearch
//!     endpoint: http://es:9200
//!     condition: { field: severity, in: [emerg, alert, crit, err] } # only these
//! ```
//!
//! The condition language is the `filter` transform's ([`crate::transform::condition`]).
//! Metric events always pass (as in `filter`); a sink settles the kinds it does not take.
//!
//! Acknowledgements stay exact: the copy of a batch a routed sink gets holds only the
//! events its condition accepts, with every acknowledgement of the batch; when it accepts
//! none, that copy is settled at once (the events are done as far as that sink goes), so
//! checkpoints advance once every sink delivered what it took.
//!
//! Owns: the `condition:` key of a sink ([`Routed`]), its built form ([`Route`]) and the
//! per-sink copy of a batch ([`copy_for`]). Never: evaluates anything for a sink without a
//! condition (its copy is the plain fan-out clone).

use std::sync::Arc;

use serde::de::{DeserializeSeed, MapAccess};

use crate::batch::Batch;
use crate::event::Event;
use crate::transform::condition::{Condition, ConditionConfig};
use crate::yaml::beside::{BesideKeys, BesideSeed};
use crate::yaml::TaggedEnum;

/// The key a sink's map may carry besides its own settings.
const KEY: &str = "condition";

/// A component config plus the `condition:` key read from the same map (the component's
/// own settings never see it). Used for `pipelines.<name>.sinks`.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed<T> {
    /// The component's config, selected by `type:`.
    pub inner: T,
    /// `condition:`; unset: every event.
    pub condition: Option<ConditionConfig>,
}

impl<T> Routed<T> {
    /// Validates the condition (`None` when there is none).
    pub fn build_route(&self) -> anyhow::Result<Option<Route>> {
        let Some(condition) = &self.condition else {
            return Ok(None);
        };
        let built = condition
            .build()
            .map_err(|error| anyhow::anyhow!("{KEY}: {error:#}"))?;
        Ok(Some(Route {
            condition: Arc::new(built),
        }))
    }
}

impl<T: TaggedEnum> TaggedEnum for Routed<T> {
    const KIND: &'static str = T::KIND;
    const TYPES: &'static [&'static str] = T::TYPES;

    fn deserialize_variant<'de, A: MapAccess<'de>>(
        type_name: &str,
        body: &mut A,
    ) -> Result<Self, A::Error> {
        let mut condition = None;
        let inner = T::deserialize_variant(
            type_name,
            &mut Body {
                map: body,
                condition: &mut condition,
            },
        )?;
        Ok(Routed { inner, condition })
    }
}

/// A sink's built condition.
#[derive(Debug, Clone)]
pub struct Route {
    condition: Arc<Condition>,
}

impl Route {
    /// Whether the sink takes `event` (metric events always pass).
    pub fn takes(&self, event: &Event) -> bool {
        match event {
            Event::Log(log) => self.condition.matches(log),
            Event::Metric(_) => true,
        }
    }

    /// The events of `batch` the sink takes, cloned, with all of the batch's acks.
    pub fn select(&self, batch: &Batch) -> Batch {
        Batch {
            events: batch
                .events
                .iter()
                .filter(|e| self.takes(e))
                .cloned()
                .collect(),
            acks: batch.acks.clone(),
            home: None,
        }
    }

    /// `batch` less the events the sink does not take.
    pub fn retain(&self, mut batch: Batch) -> Batch {
        batch.events.retain(|e| self.takes(e));
        batch
    }
}

/// The copy of `batch` for one sink: the batch itself for the `last` sink (taken out of
/// `batch`), a clone for the others; with a `route`, only the events it takes. The copy
/// may be empty: the caller settles it, as that sink is done with those events.
pub fn copy_for(route: Option<&Route>, batch: &mut Option<Batch>, last: bool) -> Option<Batch> {
    match (route, last) {
        (None, true) => batch.take(),
        (None, false) => batch.as_ref().map(Batch::fan_out_clone),
        (Some(route), true) => batch.take().map(|b| route.retain(b)),
        (Some(route), false) => batch.as_ref().map(|b| route.select(b)),
    }
}

/// `condition:`, read beside the sink's own keys.
impl BesideKeys for Option<ConditionConfig> {
    const KEYS: &'static [&'static str] = &[KEY];

    fn read_value<'de, M: MapAccess<'de>>(
        &mut self,
        _key: &'static str,
        map: &mut M,
    ) -> Result<(), M::Error> {
        *self = Some(map.next_value()?);
        Ok(())
    }
}

/// The component body as [`TaggedEnum::deserialize_variant`] sees it: its values are read
/// through [`BesideSeed`], which takes `condition:` out of the component's map.
struct Body<'a, A> {
    map: &'a mut A,
    condition: &'a mut Option<ConditionConfig>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Body<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.map.next_key_seed(seed)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(BesideSeed {
            seed,
            keys: &mut *self.condition,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::event::LogEvent;

    fn sinks(yaml: &str) -> anyhow::Result<Vec<Option<Route>>> {
        let text = format!(
            "data_dir: /tmp/x\npipelines:\n  p:\n    sources: [ {{ type: demo }} ]\n    sinks:\n{yaml}"
        );
        let config = config::parse(&text, "t.yaml")?;
        config.pipelines["p"]
            .sinks
            .iter()
            .map(|s| s.config.build_route())
            .collect()
    }

    fn log(severity: &str) -> Event {
        let mut log = LogEvent::new("x");
        log.insert("severity", severity);
        Event::Log(log)
    }

    #[test]
    fn condition_is_read_beside_the_sinks_own_keys() {
        let routes = sinks(
            "      - { type: console, encoding: text, condition: { field: severity, equals: err } }\n      - { type: blackhole }\n",
        )
        .unwrap();
        let route = routes[0].as_ref().expect("a route");
        assert!(route.takes(&log("err")));
        assert!(!route.takes(&log("info")));
        assert!(routes[1].is_none());
        // Keys of the sink itself still go to it, located.
        let error = sinks("      - type: console\n        encoding: xml\n        condition: { field: a, exists: true }\n").unwrap_err();
        assert!(format!("{error:#}").contains("t.yaml:7"), "{error:#}");
        let error = sinks("      - { type: console, colour: red }\n").unwrap_err();
        let text = format!("{error:#}");
        assert!(
            text.contains("unknown key \"colour\"") && text.contains("encoding, condition"),
            "{text}"
        );
        // Nested maps keep their own `condition` keys (none of the sinks has one, so a
        // nested one is unknown there).
        let error = sinks(
            "      - type: loki\n        endpoint: http://x\n        batch: { condition: 1 }\n",
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").contains("batch.condition"),
            "{error:#}"
        );
    }

    #[test]
    fn a_bad_condition_is_refused_at_build_naming_the_key() {
        let text = "data_dir: /tmp/x\npipelines:\n  p:\n    sources: [ { type: demo } ]\n    sinks:\n      - type: blackhole\n        condition: { field: a, eqals: 1 }\n";
        let error = config::parse(text, "t.yaml")
            .unwrap()
            .build("t.yaml")
            .err()
            .expect("refused");
        let text = format!("{error:#}");
        assert!(
            text.contains("t.yaml:6: pipelines.p.sinks[0]: condition: field \"a\": `eqals`"),
            "{text}"
        );
    }

    #[test]
    fn two_sources_on_one_socket_are_refused_with_the_routing_answer() {
        let text = "data_dir: /tmp/x
pipelines:
  a:
    sources: [ { type: syslog, mode: udp, address: 127.0.0.1:5514 } ]
    sinks: [ { type: blackhole } ]
  b:
    sources:
      - { type: syslog, mode: tcp, address: 127.0.0.1:5514 }
      - { type: syslog, mode: udp, address: 127.0.0.1:5514 }
    sinks: [ { type: console } ]
";
        let error = config::parse(text, "t.yaml")
            .unwrap()
            .build("t.yaml")
            .err()
            .expect("refused");
        let text = format!("{error:#}");
        assert!(
            text.starts_with(
                "t.yaml:9: pipelines.b.sources[1]: udp 127.0.0.1:5514 is read by pipelines.a.sources[0] (line 4) already"
            ) && text.contains("`condition:` on each sink"),
            "{text}"
        );
    }

    #[test]
    fn copies_share_every_ack_and_hold_only_taken_events() {
        let tracker = crate::ack::StreamTracker::detached(0);
        let ack = tracker.track(3);
        let events = vec![log("err"), log("info"), log("err")];
        let route =
            sinks("      - { type: blackhole, condition: { field: severity, equals: err } }\n")
                .unwrap()
                .remove(0)
                .unwrap();
        let mut batch = Some(Batch::with_ack(events, ack));
        let first = copy_for(Some(&route), &mut batch, false).unwrap();
        assert_eq!(first.events.len(), 2);
        assert_eq!(first.acks.len(), 1);
        let none = Route {
            condition: Arc::new(Condition::Any(Vec::new())),
        };
        let empty = copy_for(Some(&none), &mut batch, false).unwrap();
        assert!(empty.events.is_empty() && empty.acks.len() == 1);
        let last = copy_for(None, &mut batch, true).unwrap();
        assert_eq!(last.events.len(), 3);
        assert!(batch.is_none());
        first.settle();
        empty.settle();
        assert_eq!(tracker.committed(), 0, "one copy still out");
        last.settle();
        assert_eq!(tracker.committed(), 3);
    }
}
