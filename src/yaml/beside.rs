//! Keys read beside a component's own: a few keys of a map (a sink's `condition:`, the
//! shared HTTP keys of the network sinks) go to a [`BesideKeys`] value, every other key to
//! the component's `deny_unknown_fields` config, from the same map.
//!
//! Serde's `#[serde(flatten)]` would do this by buffering the map, which loses every
//! location and every unknown-key error. Here the config is deserialized through wrappers
//! ([`BesideSeed`], [`deserialize_beside`]) that hand it every key but the beside keys;
//! errors keep their file, line and key path (they still come from the loader's own map
//! access), and an unknown key's "expected one of" list gains the beside keys.
//!
//! Owns: the wrappers. Never: reads a beside key of a nested map (only the top-level map of
//! the value being deserialized loses its beside keys).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};

/// Keys taken out of a component's map and read into `self`.
pub trait BesideKeys {
    /// The keys, in the order an unknown-key error lists them.
    const KEYS: &'static [&'static str];

    /// Reads the value of `key` (one of [`BesideKeys::KEYS`]) with `map.next_value()`.
    fn read_value<'de, M: MapAccess<'de>>(
        &mut self,
        key: &'static str,
        map: &mut M,
    ) -> Result<(), M::Error>;
}

/// Deserializes `T` from `de`, whose top-level map gives its beside keys to `keys`.
pub fn deserialize_beside<'de, T, B, D>(de: D, keys: &mut B) -> Result<T, D::Error>
where
    T: de::Deserialize<'de>,
    B: BesideKeys,
    D: de::Deserializer<'de>,
{
    T::deserialize(StripDe { de, keys })
}

/// Deserializes `seed` from a deserializer whose top-level map gives its beside keys to
/// `keys` (for a [`MapAccess::next_value_seed`] that reads a component's body).
pub struct BesideSeed<'a, S, B> {
    /// The component's own seed.
    pub seed: S,
    /// Where the beside keys go.
    pub keys: &'a mut B,
}

impl<'de, S: DeserializeSeed<'de>, B: BesideKeys> DeserializeSeed<'de> for BesideSeed<'_, S, B> {
    type Value = S::Value;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(StripDe {
            de,
            keys: self.keys,
        })
    }
}

struct StripDe<'a, D, B> {
    de: D,
    keys: &'a mut B,
}

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*))*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.de.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: de::Deserializer<'de>, B: BesideKeys> de::Deserializer<'de> for StripDe<'_, D, B> {
    type Error = D::Error;

    forward! {
        deserialize_bool() deserialize_i8() deserialize_i16() deserialize_i32()
        deserialize_i64() deserialize_i128() deserialize_u8() deserialize_u16()
        deserialize_u32() deserialize_u64() deserialize_u128() deserialize_f32()
        deserialize_f64() deserialize_char() deserialize_str() deserialize_string()
        deserialize_bytes() deserialize_byte_buf() deserialize_option() deserialize_unit()
        deserialize_unit_struct(name: &'static str)
        deserialize_newtype_struct(name: &'static str)
        deserialize_seq() deserialize_tuple(len: usize)
        deserialize_tuple_struct(name: &'static str, len: usize)
        deserialize_enum(name: &'static str, variants: &'static [&'static str])
        deserialize_identifier() deserialize_ignored_any()
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let keys = self.keys;
        self.de.deserialize_any(StripVisitor { visitor, keys })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let keys = self.keys;
        self.de.deserialize_map(StripVisitor { visitor, keys })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let keys = self.keys;
        self.de
            .deserialize_struct(name, fields, StripVisitor { visitor, keys })
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

struct StripVisitor<'a, V, B> {
    visitor: V,
    keys: &'a mut B,
}

impl<'de, V: Visitor<'de>, B: BesideKeys> Visitor<'de> for StripVisitor<'_, V, B> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<V::Value, M::Error> {
        self.visitor.visit_map(StripMap {
            map,
            keys: self.keys,
        })
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_unit()
    }
}

struct StripMap<'a, M, B> {
    map: M,
    keys: &'a mut B,
}

impl<'de, M: MapAccess<'de>, B: BesideKeys> MapAccess<'de> for StripMap<'_, M, B> {
    type Error = M::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, M::Error> {
        let mut seed = Some(seed);
        loop {
            let key = KeySeed::<K, B> {
                seed: &mut seed,
                _keys: PhantomData,
            };
            match self.map.next_key_seed(key)? {
                None => return Ok(None),
                Some(Key::Other(value)) => return Ok(Some(value)),
                Some(Key::Beside(key)) => self.keys.read_value(key, &mut self.map)?,
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, M::Error> {
        self.map.next_value_seed(seed)
    }
}

enum Key<T> {
    Beside(&'static str),
    Other(T),
}

/// Reads a key: one of `B::KEYS`, or whatever the component's own key seed makes of it.
struct KeySeed<'a, K, B> {
    seed: &'a mut Option<K>,
    _keys: PhantomData<B>,
}

impl<'de, K: DeserializeSeed<'de>, B: BesideKeys> DeserializeSeed<'de> for KeySeed<'_, K, B> {
    type Value = Key<K::Value>;

    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_identifier(KeyVisitor::<K, B> {
            seed: self.seed,
            _de: PhantomData,
        })
    }
}

struct KeyVisitor<'a, 'de, K, B> {
    seed: &'a mut Option<K>,
    _de: PhantomData<(&'de (), B)>,
}

impl<'de, K: DeserializeSeed<'de>, B: BesideKeys> Visitor<'de> for KeyVisitor<'_, 'de, K, B> {
    type Value = Key<K::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        if let Some(beside) = B::KEYS.iter().find(|k| **k == key) {
            return Ok(Key::Beside(beside));
        }
        let Some(seed) = self.seed.take() else {
            return Err(E::custom("a key was read twice"));
        };
        seed.deserialize(key.into_deserializer())
            .map(Key::Other)
            .map_err(|error: E| {
                // The component's list of keys does not know the beside keys: add them.
                let text = error.to_string();
                match text.starts_with("unknown key ") && text.contains("expected one of: ") {
                    // A component with no keys of its own (blackhole) lists only these.
                    true if text.ends_with("expected one of: ") => {
                        E::custom(format!("{text}{}", B::KEYS.join(", ")))
                    }
                    true => E::custom(format!("{text}, {}", B::KEYS.join(", "))),
                    false => error,
                }
            })
    }
}
