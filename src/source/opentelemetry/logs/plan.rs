//! How the fields of an OTLP log record are put together: the record's own slots merged in
//! name order with its attributes (the plan of that merge reused while a scope's records
//! carry the same attribute keys), over the scope's shared fields (resource attributes,
//! scope name and version), which every record's event refers to instead of copying.
//!
//! Owns: field order and shadowing (an attribute wins over a resource attribute of its
//! name). Never: reads the wire (`logs.rs` does).

use std::sync::Arc;

use super::clear_of_own;
use crate::event::{Key, Map, Shared, Value};
use crate::source::opentelemetry::reader::key;

/// The event's own fields, by slot (see [`OWN_SLOTS`]).
pub(super) const EVENT_NAME: usize = 0;
pub(super) const SEVERITY: usize = 1;
pub(super) const SEVERITY_NUMBER: usize = 2;
pub(super) const SPAN_ID: usize = 3;
pub(super) const TRACE_FLAGS: usize = 4;
pub(super) const TRACE_ID: usize = 5;
/// Names of the own-field slots a record may fill (the slot constants above index it).
pub(super) const OWN_SLOTS: [&str; 6] = crate::otlp::RECORD_FIELDS;

/// How a record's fields are put together: which attribute keys it had (as read), their
/// field names, the attributes kept (sorted, last of equal names), and the merged order of
/// the own slots and those attributes. Records of one scope nearly always have the same
/// attribute keys, so the plan of the last record is reused when they match: no sorting,
/// no merging, no key lookups.
#[derive(Default)]
pub(super) struct Plan {
    /// The attribute keys as read (copies: compared with the next record's).
    raw_keys: Vec<Box<str>>,
    /// The field name of each attribute as read.
    names: Vec<Key>,
    /// Steps: `Ok(k)` takes own slot `k`, `Err(i)` attribute `i` (as read).
    steps: Vec<Result<usize, usize>>,
}

/// What the records of one scope share: its resource attributes, scope name and version,
/// in one map each record's event refers to instead of copying (under its own fields).
pub(super) struct Scope {
    pub(super) shared: Arc<Shared>,
}

impl Scope {
    /// The shared fields of a scope: `resource` (sorted, renamed clear of own fields), the
    /// scope's name and version when set.
    pub(super) fn new(resource: &[(Key, Value)], name: &str, version: &str) -> Scope {
        let mut shared: Map = resource.iter().cloned().collect();
        if !name.is_empty() {
            shared.insert(Key::Borrowed("otel.scope.name"), Value::from(name));
        }
        if !version.is_empty() {
            shared.insert(Key::Borrowed("otel.scope.version"), Value::from(version));
        }
        Scope {
            shared: Shared::new(shared),
        }
    }
}

impl Plan {
    /// True when `raw` (attribute keys as read) are the ones this plan was made for.
    pub(super) fn fits(&self, bytes: &[u8], raw: &[(usize, usize, usize, usize)]) -> bool {
        self.raw_keys.len() == raw.len()
            && self
                .raw_keys
                .iter()
                .zip(raw)
                .all(|(known, &(start, end, _, _))| known.as_bytes() == &bytes[start..end])
    }

    /// A new plan for attribute keys `raw` (valid UTF-8, checked when read).
    pub(super) fn make(&mut self, bytes: &[u8], raw: &[(usize, usize, usize, usize)]) {
        let text = |start: usize, end: usize| std::str::from_utf8(&bytes[start..end]).unwrap_or("");
        self.raw_keys = raw
            .iter()
            .map(|&(s, e, _, _)| Box::from(text(s, e)))
            .collect();
        self.names = raw
            .iter()
            .map(|&(s, e, _, _)| clear_of_own(key(text(s, e))))
            .collect();
        // Attributes in name order; of equal names the last as read.
        let mut order: Vec<usize> = (0..raw.len()).collect();
        order.sort_by(|a, b| self.names[*a].cmp(&self.names[*b]).then(b.cmp(a)));
        order.dedup_by(|later, earlier| self.names[*later] == self.names[*earlier]);
        // Merge with the own slots (attributes named like them were renamed: never equal).
        self.steps.clear();
        let mut attributes = order.into_iter().peekable();
        for (k, key) in OWN_SLOTS.iter().enumerate() {
            while let Some(i) = attributes.next_if(|&i| self.names[i].as_ref() < *key) {
                self.steps.push(Err(i));
            }
            self.steps.push(Ok(k));
        }
        self.steps.extend(attributes.map(Err));
    }
}

impl Plan {
    /// The event's fields: own fields and attributes (moved out of `values`), already in
    /// name order, so the map is built without sorting, over the scope's shared fields (an
    /// attribute shadows a resource attribute of its name).
    pub(super) fn fields(
        &self,
        scope: &Scope,
        values: &mut [Option<Value>],
        mut own: [Option<Value>; 6],
    ) -> Map {
        // Inserted in name order, each `insert` is one comparison and a push (collecting a
        // `Vec` into a `Map` moved every field again: 5% of the decoder thread, perf).
        let mut fields = Map::with_capacity(self.steps.len());
        for step in &self.steps {
            match *step {
                Err(i) => {
                    let value = values[i].take().unwrap_or_default();
                    fields.insert(self.names[i].clone(), value);
                }
                Ok(k) => {
                    if let Some(value) = own[k].take() {
                        fields.insert(Key::Borrowed(OWN_SLOTS[k]), value);
                    }
                }
            }
        }
        if scope.shared.fields().is_empty() {
            return fields;
        }
        Map::layered(fields, scope.shared.clone())
    }
}
