//! Component entries (`sources:`, `transforms:`, `sinks:` items) selected by their
//! `type:` key: [`Named`] + [`TaggedEnum`], instead of serde's internally tagged enums
//! (which buffer the input and lose every location).
//!
//! serde gives a `Deserialize` impl no way to ask its deserializer for a node's line or to
//! hide keys, so [`Named`] asks for a struct with private magic field names; the loader's
//! deserializer recognises them and presents the entry as line, type, name and the rest
//! of the map (without `type` and `name`). Any other deserializer gets an error saying that
//! component configs load only through this loader.

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use std::{fmt, marker::PhantomData};

use super::de::{is_scalar, NodeDe};
use super::error::{Error, Path, R};
use super::node::{Node, NodeKind};

pub(super) const MAGIC: &str = "$__sluice_private_Named";
const KEY_LINE: &str = "$__sluice_line";
const KEY_TYPE: &str = "$__sluice_type";
const KEY_NAME: &str = "$__sluice_name";
const KEY_CONFIG: &str = "$__sluice_config";
pub(super) const MAGIC_FIELDS: &[&str] = &[KEY_LINE, KEY_TYPE, KEY_NAME, KEY_CONFIG];
pub(super) const FOREIGN: &str = "component configs must be loaded through sluice's YAML loader";

/// An enum of component configs selected by the `type:` key of a map.
pub trait TaggedEnum: Sized {
    /// What the user calls these ("source", "transform", "sink") for messages.
    const KIND: &'static str;
    /// Accepted `type` values, in the order shown in messages.
    const TYPES: &'static [&'static str];
    /// Deserialize the variant for `type_name` (always one of TYPES) from the
    /// map minus its `type` and `name` keys, by calling
    /// `body.next_value::<TheVariantConfig>()` exactly once.
    fn deserialize_variant<'de, A: MapAccess<'de>>(
        type_name: &str,
        body: &mut A,
    ) -> Result<Self, A::Error>;
}

/// A component entry: the optional user-given `name`, the config, and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Named<T> {
    /// The `name:` key, if given.
    pub name: Option<String>,
    /// The config selected by `type:`.
    pub config: T,
    /// 1-based line where the component's map starts.
    pub line: usize,
}

impl<'de, T: TaggedEnum> de::Deserialize<'de> for Named<T> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct(MAGIC, MAGIC_FIELDS, NamedVisitor::<T>(PhantomData))
    }
}

/// Reads the map presented by [`MagicAcc`]; also the seed checking the `type` value.
struct NamedVisitor<T>(PhantomData<T>);

impl<'de, T: TaggedEnum> Visitor<'de> for NamedVisitor<T> {
    type Value = Named<T>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} map loaded through sluice's YAML loader", T::KIND)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Named<T>, A::Error> {
        if map.next_key::<String>()?.as_deref() != Some(KEY_LINE) {
            return Err(de::Error::custom(FOREIGN));
        }
        let line = map.next_value::<usize>()?;
        if map.next_key::<String>()?.as_deref() != Some(KEY_TYPE) {
            let types = T::TYPES.join(", ");
            return Err(de::Error::custom(format!(
                "missing key \"type\" (one of: {types})"
            )));
        }
        let type_name = map.next_value_seed(NamedVisitor::<T>(PhantomData))?;
        let (mut key, mut name) = (map.next_key::<String>()?, None);
        if key.as_deref() == Some(KEY_NAME) {
            name = Some(map.next_value::<String>()?);
            key = map.next_key::<String>()?;
        }
        if key.as_deref() != Some(KEY_CONFIG) {
            return Err(de::Error::custom(FOREIGN));
        }
        let config = T::deserialize_variant(&type_name, &mut map)?;
        Ok(Named { name, config, line })
    }
}

impl<'de, T: TaggedEnum> DeserializeSeed<'de> for NamedVisitor<T> {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        struct TypeVisitor<T>(PhantomData<T>);
        impl<T: TaggedEnum> Visitor<'_> for TypeVisitor<T> {
            type Value = String;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a {} type", T::KIND)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
                if T::TYPES.contains(&v) {
                    return Ok(v.to_string());
                }
                let (kind, types) = (T::KIND, T::TYPES.join(", "));
                Err(E::custom(format!(
                    "unknown {kind} type \"{v}\", expected one of: {types}"
                )))
            }
        }
        d.deserialize_str(TypeVisitor::<T>(PhantomData))
    }
}

/// Presents the component map under `de` to [`NamedVisitor`] (through [`MagicAcc`]) as
/// line, type, name (when given) and config.
pub(super) fn visit_entry<'de, V: Visitor<'de>>(de: NodeDe<'_>, v: V) -> R<V::Value> {
    let NodeKind::Map(entries) = &de.node.kind else {
        return Err(de.mismatch("a map with a \"type\" key"));
    };
    let find = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| is_scalar(k, key))
            .map(|(_, v)| v)
    };
    let (ty, name) = (find("type"), find("name"));
    let keys = [
        Some(KEY_LINE),
        ty.and(Some(KEY_TYPE)),
        name.and(Some(KEY_NAME)),
        Some(KEY_CONFIG),
    ];
    let keys = keys.into_iter().flatten();
    v.visit_map(MagicAcc {
        de,
        keys,
        current: "",
        ty,
        name,
    })
}

/// Presents a component map to [`NamedVisitor`] as line, type, name, config.
struct MagicAcc<'a, I> {
    de: NodeDe<'a>,
    keys: I,
    current: &'static str,
    ty: Option<&'a Node>,
    name: Option<&'a Node>,
}

impl<'de, I: Iterator<Item = &'static str>> MapAccess<'de> for MagicAcc<'_, I> {
    type Error = Error;
    fn next_key_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> R<Option<S::Value>> {
        let Some(key) = self.keys.next() else {
            return Ok(None);
        };
        self.current = key;
        seed.deserialize(key.into_deserializer()).map(Some)
    }
    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> R<S::Value> {
        let (map, path) = (self.de.node, &self.de.path);
        let (node, de) = match (self.current, self.ty, self.name) {
            (KEY_LINE, ..) => return seed.deserialize(map.line.into_deserializer()),
            (KEY_TYPE, Some(ty), _) => (ty, NodeDe::new(ty, Path::Key(path, "type"))),
            (KEY_NAME, _, Some(name)) => (name, NodeDe::new(name, Path::Key(path, "name"))),
            (KEY_CONFIG, ..) => (
                map,
                NodeDe {
                    body: true,
                    ..NodeDe::new(map, *path)
                },
            ),
            _ => return Err(de::Error::custom(FOREIGN)),
        };
        let at = de.path;
        seed.deserialize(de).map_err(|e| e.at(node, &at))
    }
}
