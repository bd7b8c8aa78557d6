//! How the fields of an OTLP log record are put together: the scope's skeleton (resource
//! attributes, scope name and version, the record's own slots) merged in name order with
//! the record's attributes, and the plan of that merge, reused while a scope's records
//! carry the same attribute keys.
//!
//! Owns: field order and shadowing (an attribute wins over a resource attribute of its
//! name). Never: reads the wire (`logs.rs` does).

use super::clear_of_own;
use crate::event::{Key, Map, Value};
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

/// One entry of a scope's field skeleton, in name order.
#[derive(Debug, Clone, Copy)]
pub(super) enum Slot {
    /// Resource attribute `i` (cloned into each event).
    Resource(usize),
    /// `otel.scope.name` / `otel.scope.version` (cloned into each event).
    ScopeName,
    ScopeVersion,
    /// One of [`OWN_SLOTS`], when the record has it.
    Own(usize),
}

/// How a record's fields are put together: which attribute keys it had (as read), their
/// field names, the attributes kept (sorted, last of equal names), and the merged order of
/// the skeleton and those attributes. Records of one scope nearly always have the same
/// attribute keys, so the plan of the last record is reused when they match: no sorting,
/// no merging, no key lookups.
#[derive(Default)]
pub(super) struct Plan {
    /// The attribute keys as read (copies: compared with the next record's).
    raw_keys: Vec<Box<str>>,
    /// The field name of each attribute as read.
    names: Vec<Key>,
    /// Steps: `Ok(j)` takes skeleton entry `j`, `Err(i)` attribute `i` (as read).
    steps: Vec<Result<usize, usize>>,
}

/// The skeleton of a scope: every field a record of it may have besides its attributes
/// (resource attributes, scope name and version when set, the own slots), in name order.
pub(super) fn skeleton<'a>(
    resource: &'a [(Key, Value)],
    name: &str,
    version: &str,
) -> Vec<(&'a str, Slot)> {
    let mut skeleton: Vec<(&str, Slot)> = resource
        .iter()
        .enumerate()
        .map(|(i, (key, _))| (key.as_ref(), Slot::Resource(i)))
        .collect();
    if !name.is_empty() {
        skeleton.push(("otel.scope.name", Slot::ScopeName));
    }
    if !version.is_empty() {
        skeleton.push(("otel.scope.version", Slot::ScopeVersion));
    }
    skeleton.extend(
        OWN_SLOTS
            .iter()
            .enumerate()
            .map(|(i, key)| (*key, Slot::Own(i))),
    );
    // Resource keys never equal the others (attributes named like them were renamed).
    skeleton.sort_by(|a, b| a.0.cmp(b.0));
    skeleton
}

/// What the records of one scope share.
pub(super) struct Scope<'a> {
    pub(super) resource: &'a [(Key, Value)],
    pub(super) skeleton: &'a [(&'a str, Slot)],
    pub(super) name: Value,
    pub(super) version: Value,
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

    /// A new plan for attribute keys `raw` (valid UTF-8, checked when read) and `skeleton`.
    pub(super) fn make(
        &mut self,
        bytes: &[u8],
        raw: &[(usize, usize, usize, usize)],
        skeleton: &[(&str, Slot)],
    ) {
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
        // Merge with the skeleton; an attribute shadows a resource attribute of its name.
        self.steps.clear();
        let mut attributes = order.into_iter().peekable();
        for (j, (key, _)) in skeleton.iter().enumerate() {
            while let Some(&i) = attributes.peek() {
                match self.names[i].as_ref().cmp(key) {
                    std::cmp::Ordering::Less => {
                        self.steps.push(Err(i));
                        attributes.next();
                    }
                    std::cmp::Ordering::Equal => break,
                    std::cmp::Ordering::Greater => break,
                }
            }
            if attributes
                .peek()
                .is_some_and(|&i| self.names[i].as_ref() == *key)
            {
                continue; // shadowed: the attribute comes next
            }
            self.steps.push(Ok(j));
        }
        self.steps.extend(attributes.map(Err));
    }
}

impl Plan {
    /// The event's fields: own fields, attributes (moved out of `values`) and resource
    /// attributes, already in name order, so the map is built without sorting.
    pub(super) fn fields(
        &self,
        scope: &Scope<'_>,
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
                Ok(j) => match scope.skeleton[j].1 {
                    Slot::Resource(r) => {
                        let (key, value) = &scope.resource[r];
                        fields.insert(key.clone(), value.clone());
                    }
                    Slot::ScopeName => {
                        fields.insert(Key::Borrowed("otel.scope.name"), scope.name.clone());
                    }
                    Slot::ScopeVersion => {
                        fields.insert(Key::Borrowed("otel.scope.version"), scope.version.clone());
                    }
                    Slot::Own(k) => {
                        if let Some(value) = own[k].take() {
                            fields.insert(Key::Borrowed(OWN_SLOTS[k]), value);
                        }
                    }
                },
            }
        }
        fields
    }
}
