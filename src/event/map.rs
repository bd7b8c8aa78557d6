//! [`Map`]: the fields of a log event (and the nested objects of a [`Value`]), as a vector of
//! `(name, value)` pairs sorted by name.
//!
//! Why not a `BTreeMap`: a B-tree allocates a ~630-byte node for even one entry, and most
//! events carry one to a dozen fields (`file`, `host`, parsed captures). Measured on the
//! file → blackhole benchmark, that node was most of an event's memory (about 1 KiB per
//! 150-byte line) and of peak RSS. A sorted vector holds one field in 56 bytes, looks names
//! up by binary search, and iterates in the same (byte) order as a `BTreeMap`, so JSON output
//! keeps sorted keys. Building from an iterator sorts once, so a JSON object with thousands
//! of keys stays O(n log n); inserting one key is O(n), fine for the few a transform adds.
//!
//! Names are [`Key`]s: a `&'static str` for the names sources and parsers write on every
//! event (`file`, `host`, `severity`), so those cost no allocation, or an owned `String`.
//!
//! Shared fields: a map may read through to a `base` map shared with other maps
//! ([`Map::share`]): what every line of one file or pod, or every record of one OTLP
//! request, has in common is then one reference count per event instead of a copy of each
//! field, and one release instead of a free of each. The map's own fields shadow the base's; a change that
//! could touch a base field (`get_mut`, `remove`, `retain`…) copies the base in first, so a
//! shared base is never changed. Measured on the Kubernetes enrichment benchmark: see the
//! README's figures.
//!
//! Owns: the field container and its order. Never: interprets names (no dotted paths; see
//! [`super::LogEvent::lookup`]).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use super::Value;

/// A field name: borrowed for `'static` names (no allocation per event), owned otherwise.
pub type Key = Cow<'static, str>;

/// Bytes of names [`intern`] made `'static`, process-wide.
const MAX_INTERNED_BYTES: usize = 64 << 10;
/// Longest name [`intern`] makes `'static`.
const MAX_INTERNED_KEY: usize = 128;

/// Names made `'static` by [`intern`] (leaked, at most [`MAX_INTERNED_BYTES`]), sorted, and
/// their total size.
static INTERNED: std::sync::Mutex<(Vec<&'static str>, usize)> =
    std::sync::Mutex::new((Vec::new(), 0));

/// A `'static` [`Key`] for a name set on many events: a field name from the configuration
/// (a `parse_regex` capture, a `set` field) or an attribute key a sender repeats. Cloning
/// it into each event then costs no allocation, and spending the event no free. The same
/// name gives the same leaked text every time (a reload builds its transforms again), and
/// past 64 KiB of names in all (a sender inventing keys) new names are owned strings:
/// slower, never more memory.
pub fn intern(name: &str) -> Key {
    if name.len() > MAX_INTERNED_KEY {
        return Key::Owned(name.to_owned());
    }
    // A poisoned lock only means another thread panicked while holding it: the list is
    // still valid (each insert is complete or absent).
    let mut interned = INTERNED.lock().unwrap_or_else(|poison| poison.into_inner());
    let (names, bytes) = &mut *interned;
    match names.binary_search(&name) {
        Ok(i) => Key::Borrowed(names[i]),
        Err(i) if *bytes + name.len() <= MAX_INTERNED_BYTES => {
            let leaked: &'static str = Box::leak(Box::from(name));
            names.insert(i, leaked);
            *bytes += name.len();
            Key::Borrowed(leaked)
        }
        Err(_) => Key::Owned(name.to_owned()),
    }
}

/// Named values sorted by name, each name at most once.
#[derive(Clone, Default)]
pub struct Map {
    entries: Vec<(Key, Value)>,
    /// Fields shared with other maps, read through; a name in `entries` shadows the same
    /// name here.
    base: Option<Arc<Shared>>,
}

impl Map {
    /// An empty map (allocates nothing).
    pub const fn new() -> Self {
        Map {
            entries: Vec::new(),
            base: None,
        }
    }

    /// An empty map with room for `capacity` fields.
    pub fn with_capacity(capacity: usize) -> Self {
        Map {
            entries: Vec::with_capacity(capacity),
            base: None,
        }
    }

    /// Adds every field of `shared` (replacing fields of the same names) by keeping a
    /// reference to it instead of copying its fields: the later reads see them, the first
    /// change to one of them copies them in. A map that already shares one copies the old
    /// one in first (one level of sharing).
    pub fn share(&mut self, shared: Arc<Shared>) {
        self.flatten();
        if !self.entries.is_empty() && !shared.fields.entries.is_empty() {
            let mut theirs = shared.fields.entries.iter().peekable();
            self.entries.retain(|(name, _)| {
                while theirs
                    .next_if(|(their, _)| order(their, name) == Ordering::Less)
                    .is_some()
                {}
                theirs
                    .peek()
                    .is_none_or(|(their, _)| order(their, name) != Ordering::Equal)
            });
        }
        self.base = Some(shared);
    }

    /// The shared fields this map reads through, if any.
    pub fn shared(&self) -> Option<&Arc<Shared>> {
        self.base.as_ref()
    }

    /// What `share` of a map holding `added` gives, when `shared` is this map's shared
    /// fields extended by `added` ([`Shared::extended`]): the old shared fields are not
    /// copied in. The fields `added` names replace own fields of their names; other own
    /// fields still shadow the old shared ones.
    pub fn reshare(&mut self, shared: Arc<Shared>, added: &Map) {
        if !self.entries.is_empty() && !added.is_empty() {
            self.entries.retain(|(name, _)| !added.contains_key(name));
        }
        self.base = Some(shared);
    }

    /// `own` over `shared`: the fields of both, an own field shadowing a shared one of its
    /// name (what an OTLP record's attributes do to its resource's), `shared` kept by
    /// reference.
    pub fn layered(mut own: Map, shared: Arc<Shared>) -> Map {
        own.flatten();
        own.base = Some(shared);
        own
    }

    /// The rough size of the shared fields (computed once, by [`Shared::new`]), 0 without.
    pub fn shared_weight(&self) -> usize {
        self.base.as_ref().map_or(0, |base| base.weight)
    }

    /// The map's own fields, without the shared ones, in name order.
    pub fn own(&self) -> Iter<'_> {
        Iter {
            own: self.entries.iter(),
            base: [].iter(),
        }
    }

    /// Copies the shared fields in (before a change that could touch one of them).
    fn flatten(&mut self) {
        let Some(base) = self.base.take() else {
            return;
        };
        let own = std::mem::take(&mut self.entries);
        let mut merged = Vec::with_capacity(own.len() + base.fields.entries.len());
        let mut own = own.into_iter().peekable();
        let mut theirs = base.fields.entries.iter().peekable();
        loop {
            let which = match (own.peek(), theirs.peek()) {
                (Some((a, _)), Some((b, _))) => order(a, b),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => break,
            };
            match which {
                Ordering::Less => merged.extend(own.next()),
                Ordering::Greater => {
                    merged.extend(theirs.next().map(|(k, v)| (k.clone(), v.clone())))
                }
                Ordering::Equal => {
                    theirs.next();
                    merged.extend(own.next());
                }
            }
        }
        self.entries = merged;
    }

    /// True when the shared fields hold `key`.
    fn base_has(&self, key: &str) -> bool {
        self.base
            .as_ref()
            .is_some_and(|base| base.fields.find(key).is_ok())
    }

    /// Makes room for `additional` more fields.
    pub fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional);
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(name, _)| order(name, key))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        match &self.base {
            None => self.entries.len(),
            Some(_) => self.iter().count(),
        }
    }

    /// True without fields.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.base.as_ref().is_none_or(|base| base.fields.is_empty())
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self.find(key) {
            Ok(i) => Some(&self.entries[i].1),
            Err(_) => self.base.as_ref().and_then(|base| base.fields.get(key)),
        }
    }

    /// The value of `key`, mutable.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        if self.find(key).is_err() && self.base_has(key) {
            self.flatten();
        }
        self.find(key).ok().map(|i| &mut self.entries[i].1)
    }

    /// True when `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok() || self.base_has(key)
    }

    /// Sets `key`, returning the value it replaced.
    pub fn insert(&mut self, key: impl Into<Key>, value: Value) -> Option<Value> {
        let key = key.into();
        if let Some(base) = &self.base {
            // Shadows a shared field of that name: that field is what it replaced.
            let shadowed = base.fields.get(&key).cloned();
            return self.insert_own(key, value).or(shadowed);
        }
        self.insert_own(key, value)
    }

    fn insert_own(&mut self, key: Key, value: Value) -> Option<Value> {
        // Builders mostly add names in order: one comparison instead of a search.
        if self
            .entries
            .last()
            .is_none_or(|(last, _)| order(last, &key) == Ordering::Less)
        {
            if self.entries.capacity() == 0 {
                self.entries.reserve_exact(1);
            }
            self.entries.push((key, value));
            return None;
        }
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                if self.entries.capacity() == 0 {
                    // Most events have one field: don't reserve four.
                    self.entries.reserve_exact(1);
                }
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// Sets every `(key, value)` of `sorted` (in name order, each name once), in one pass
    /// and at most one allocation: what a transform adding several fields to every event
    /// uses instead of one [`Map::insert`] (a search and a shift) per field.
    pub fn merge_sorted(&mut self, sorted: impl IntoIterator<Item = (Key, Value)>) {
        let mut add = sorted.into_iter().peekable();
        if add.peek().is_none() {
            return;
        }
        let old = std::mem::take(&mut self.entries);
        let mut merged = Vec::with_capacity(old.len() + add.size_hint().0);
        let mut old = old.into_iter().peekable();
        loop {
            let order = match (old.peek(), add.peek()) {
                (Some((a, _)), Some((b, _))) => order(a, b),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => break,
            };
            match order {
                std::cmp::Ordering::Less => merged.extend(old.next()),
                std::cmp::Ordering::Greater => merged.extend(add.next()),
                std::cmp::Ordering::Equal => {
                    old.next();
                    merged.extend(add.next());
                }
            }
        }
        self.entries = merged;
        self.normalise(); // only a check, unless `sorted` was not
    }

    /// The value of `key`, inserting `make()` first if it is missing.
    pub fn get_or_insert_with(&mut self, key: &str, make: impl FnOnce() -> Value) -> &mut Value {
        if self.base_has(key) {
            self.flatten();
        }
        let i = match self.find(key) {
            Ok(i) => i,
            Err(i) => {
                self.entries.insert(i, (Key::Owned(key.to_owned()), make()));
                i
            }
        };
        &mut self.entries[i].1
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        if self.base_has(key) {
            self.flatten();
        }
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }

    /// Keeps the fields for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &mut Value) -> bool) {
        self.flatten();
        self.entries.retain_mut(|(name, value)| keep(name, value));
    }

    /// `(name, value)` pairs in name order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            own: self.entries.iter(),
            base: self
                .base
                .as_ref()
                .map_or([].iter(), |base| base.fields.entries.iter()),
        }
    }

    /// `(name, value)` pairs in name order, values mutable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Value)> {
        self.flatten();
        self.entries
            .iter_mut()
            .map(|(name, value)| (&**name, value))
    }

    /// Names in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(name, _)| name)
    }

    /// Values in name order.
    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.iter().map(|(_, value)| value)
    }

    /// Sorts by name keeping, for a repeated name, the value that came last.
    fn normalise(&mut self) {
        if self.entries.is_sorted_by(|a, b| a.0 < b.0) {
            return;
        }
        // Stable: equal names keep their arrival order, and the last one wins.
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(Key, Value)> = Vec::with_capacity(self.entries.len());
        for entry in self.entries.drain(..) {
            match out.last_mut() {
                Some(last) if last.0 == entry.0 => *last = entry,
                _ => out.push(entry),
            }
        }
        self.entries = out;
    }
}

/// Fields several maps share ([`Map::share`], [`Map::layered`]), with their rough size in
/// bytes counted once (what [`super::Event::size_hint`] adds for them).
///
/// Aligned to a cache line so that the `Arc`'s reference counts, which every event built
/// on one core and dropped on another writes, are not in the line readers of the fields
/// need.
#[derive(Debug)]
#[repr(align(64))]
pub struct Shared {
    fields: Map,
    weight: usize,
}

impl Shared {
    /// `fields`, to be shared.
    pub fn new(mut fields: Map) -> Arc<Shared> {
        fields.flatten();
        let weight = super::fields_size(&fields);
        Arc::new(Shared { fields, weight })
    }

    /// The shared fields.
    pub fn fields(&self) -> &Map {
        &self.fields
    }

    /// These fields and `added`'s (which replace fields of their names), to share with
    /// [`Map::reshare`] in place of these.
    pub fn extended(&self, added: &Map) -> Arc<Shared> {
        let mut fields = self.fields.clone();
        fields.merge_sorted(
            added
                .iter()
                .map(|(k, v)| (Key::Owned(k.to_owned()), v.clone())),
        );
        Shared::new(fields)
    }
}

/// The order of names (their bytes', as `str::cmp`), compared in line: field names are
/// short, and a call to `memcmp` per comparison was a quarter of the CPU of a Kubernetes
/// enrichment run (perf: `Map::get` and `memcmp` 25%).
#[inline]
fn order(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// Iterator over `(&name, &value)`, in name order: the map's own fields merged with the
/// shared ones they do not shadow.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    own: std::slice::Iter<'a, (Key, Value)>,
    base: std::slice::Iter<'a, (Key, Value)>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a Value);

    fn next(&mut self) -> Option<Self::Item> {
        let next = match (self.own.as_slice().first(), self.base.as_slice().first()) {
            (Some(_), None) => self.own.next(),
            (None, _) => self.base.next(),
            (Some((a, _)), Some((b, _))) => match order(a, b) {
                Ordering::Less => self.own.next(),
                Ordering::Greater => self.base.next(),
                Ordering::Equal => {
                    self.base.next();
                    self.own.next()
                }
            },
        };
        next.map(|(name, value)| (&**name, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (own, base) = (self.own.len(), self.base.len());
        (own.max(base), Some(own + base))
    }
}

impl PartialEq for Map {
    fn eq(&self, other: &Map) -> bool {
        self.iter().eq(other.iter())
    }
}

impl<'a> IntoIterator for &'a Map {
    type Item = (&'a str, &'a Value);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for Map {
    type Item = (Key, Value);
    type IntoIter = std::vec::IntoIter<(Key, Value)>;

    fn into_iter(mut self) -> Self::IntoIter {
        self.flatten();
        self.entries.into_iter()
    }
}

impl<K: Into<Key>> FromIterator<(K, Value)> for Map {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Self {
        let mut map = Map {
            entries: iter.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            base: None,
        };
        map.normalise();
        map
    }
}

impl<K: Into<Key>> Extend<(K, Value)> for Map {
    fn extend<I: IntoIterator<Item = (K, Value)>>(&mut self, iter: I) {
        self.entries
            .extend(iter.into_iter().map(|(k, v)| (k.into(), v)));
        self.normalise();
    }
}

impl<K: Into<Key>, const N: usize> From<[(K, Value); N]> for Map {
    fn from(entries: [(K, Value); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interned_names_are_static_until_the_budget_is_spent() {
        assert!(matches!(
            intern("map.test.own"),
            Key::Borrowed("map.test.own")
        ));
        let long = "k".repeat(MAX_INTERNED_KEY + 1);
        assert!(matches!(intern(&long), Key::Owned(ref text) if *text == long));
        // Fill the budget (shared by the process: other tests may have used some).
        let mut n = 0;
        loop {
            let name = format!("map.test.fill.{n:0>100}");
            n += 1;
            if matches!(intern(&name), Key::Owned(_)) {
                break;
            }
            assert!(n < MAX_INTERNED_BYTES, "the budget is never spent");
        }
        assert!(matches!(intern("map.test.own"), Key::Borrowed(_)), "kept");
        // What is left is under a filler's size, so a key as long as the longest one kept
        // does not fit.
        let after = format!("map.test.after.{:0>113}", 0);
        assert_eq!(after.len(), MAX_INTERNED_KEY);
        assert!(matches!(intern(&after), Key::Owned(_)));
    }

    #[test]
    fn merge_sorted_adds_and_replaces_in_order() {
        let mut map: Map = [
            ("b", Value::Int(1)),
            ("d", Value::Int(2)),
            ("f", Value::Int(3)),
        ]
        .into();
        let add: Vec<(Key, Value)> = vec![
            ("a".into(), Value::Int(10)),
            ("d".into(), Value::Int(20)),
            ("e".into(), Value::Int(30)),
            ("g".into(), Value::Int(40)),
        ];
        map.merge_sorted(add);
        let got: Vec<(&str, i64)> = map
            .iter()
            .map(|(k, v)| {
                (
                    k,
                    match v {
                        Value::Int(n) => *n,
                        _ => -1,
                    },
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a", 10),
                ("b", 1),
                ("d", 20),
                ("e", 30),
                ("f", 3),
                ("g", 40)
            ]
        );
        let mut empty = Map::new();
        empty.merge_sorted(vec![("x".into(), Value::Null)]);
        assert_eq!(empty.len(), 1);
        // Out of order by mistake: still a valid map, the later value winning.
        let mut map: Map = [("m", Value::Int(1))].into();
        map.merge_sorted(vec![
            ("z".into(), Value::Int(1)),
            ("a".into(), Value::Int(2)),
        ]);
        assert_eq!(
            map.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            ["a", "m", "z"]
        );
        assert_eq!(map.get("a"), Some(&Value::Int(2)));
    }
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String, i64),
        Remove(String),
        Extend(Vec<(String, i64)>),
        Share(Vec<(String, i64)>),
        Layer(Vec<(String, i64)>),
        Reshare(Vec<(String, i64)>),
        Bump(String),
        RetainEven,
    }

    fn op() -> impl Strategy<Value = Op> {
        let key = "[a-d]{0,2}";
        prop_oneof![
            (key, any::<i64>()).prop_map(|(k, v)| Op::Insert(k, v)),
            key.prop_map(Op::Remove),
            prop::collection::vec((key, any::<i64>()), 0..4).prop_map(Op::Extend),
            prop::collection::vec((key, any::<i64>()), 0..6).prop_map(Op::Share),
            prop::collection::vec((key, any::<i64>()), 0..6).prop_map(Op::Layer),
            prop::collection::vec((key, any::<i64>()), 0..6).prop_map(Op::Reshare),
            key.prop_map(Op::Bump),
            Just(Op::RetainEven),
        ]
    }

    proptest! {
        /// The map behaves exactly like a `BTreeMap` under any sequence of operations.
        #[test]
        fn behaves_like_a_btree_map(ops in prop::collection::vec(op(), 0..40)) {
            let mut map = Map::new();
            let mut model: BTreeMap<String, Value> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(
                        map.insert(k.clone(), Value::Int(v)),
                        model.insert(k, Value::Int(v))
                    ),
                    Op::Remove(k) => prop_assert_eq!(map.remove(&k), model.remove(&k)),
                    Op::Extend(pairs) => {
                        let pairs: Vec<(String, Value)> =
                            pairs.into_iter().map(|(k, v)| (k, Value::Int(v))).collect();
                        map.extend(pairs.clone());
                        model.extend(pairs);
                    }
                    Op::Share(pairs) => {
                        let pairs: Vec<(String, Value)> =
                            pairs.into_iter().map(|(k, v)| (k, Value::Int(v))).collect();
                        let shared: Map = pairs.clone().into_iter().collect();
                        let before = shared.clone();
                        let shared = Shared::new(shared);
                        map.share(shared.clone());
                        model.extend(pairs);
                        // Another map sharing the same fields, changed: ours is not.
                        let mut other = Map::new();
                        other.share(shared.clone());
                        other.retain(|_, _| false);
                        prop_assert_eq!(shared.fields(), &before);
                    }
                    Op::Reshare(pairs) => {
                        // What `share` of these fields gives, without copying ours in.
                        let pairs: Vec<(String, Value)> =
                            pairs.into_iter().map(|(k, v)| (k, Value::Int(v))).collect();
                        let added: Map = pairs.clone().into_iter().collect();
                        let shared = match map.shared() {
                            Some(base) => base.extended(&added),
                            None => Shared::new(added.clone()),
                        };
                        map.reshare(shared, &added);
                        model.extend(pairs);
                    }
                    Op::Layer(pairs) => {
                        // Our fields over the shared ones: ours win.
                        let shared: Map = pairs.iter().map(|(k, v)| (k.clone(), Value::Int(*v))).collect();
                        for (k, v) in shared.iter() {
                            model.entry(k.to_owned()).or_insert(v.clone());
                        }
                        map = Map::layered(std::mem::take(&mut map), Shared::new(shared));
                    }
                    Op::Bump(k) => {
                        if let Some(Value::Int(n)) = map.get_mut(&k) {
                            *n = n.wrapping_add(1);
                        }
                        if let Some(Value::Int(n)) = model.get_mut(&k) {
                            *n = n.wrapping_add(1);
                        }
                    }
                    Op::RetainEven => {
                        let even = |v: &Value| matches!(v, Value::Int(n) if n % 2 == 0);
                        map.retain(|_, v| even(v));
                        model.retain(|_, v| even(v));
                    }
                }
                let got: Vec<(&str, &Value)> = map.iter().collect();
                let want: Vec<(&str, &Value)> = model.iter().map(|(k, v)| (k.as_str(), v)).collect();
                prop_assert_eq!(got, want);
                for key in ["", "a", "ab", "d", "z"] {
                    prop_assert_eq!(map.get(key), model.get(key));
                    prop_assert_eq!(map.contains_key(key), model.contains_key(key));
                }
                prop_assert_eq!(map.len(), model.len());
                prop_assert_eq!(map.is_empty(), model.is_empty());
                let owned: Vec<(String, Value)> =
                    map.clone().into_iter().map(|(k, v)| (k.into_owned(), v)).collect();
                let want_owned: Vec<(String, Value)> = model.clone().into_iter().collect();
                prop_assert_eq!(owned, want_owned);
            }
        }
    }

    #[test]
    fn one_field_takes_one_slot() {
        let mut map = Map::new();
        map.insert("file", Value::from("/var/log/x.log"));
        assert_eq!(map.entries.capacity(), 1);
        assert!(
            matches!(map.entries[0].0, Key::Borrowed(_)),
            "a static name is not copied"
        );
        let collected: Map = [
            ("b".to_owned(), Value::Int(1)),
            ("a".to_owned(), Value::Int(2)),
            ("b".to_owned(), Value::Int(3)),
        ]
        .into_iter()
        .collect();
        assert_eq!(format!("{collected:?}"), "{\"a\": Int(2), \"b\": Int(3)}");
    }
}
