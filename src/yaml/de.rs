//! The serde `Deserializer` over a [`Node`] tree: scalars are typed on demand by the type
//! asking for them, and every error is located at its node and key path.

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};

use super::error::{Error, Path, R};
use super::named::{self, MAGIC, MAGIC_FIELDS};
use super::node::{key_text, Node, NodeKind, ScalarStyle};
use super::scalar::{found, parse_bool, parse_float, parse_int};

/// Deserializer over one node; `key`: it is a map key (always a string to
/// `deserialize_any`); `body`: a component map whose `type` and `name` are hidden.
pub(super) struct NodeDe<'a> {
    pub(super) node: &'a Node,
    pub(super) path: Path<'a>,
    pub(super) key: bool,
    pub(super) body: bool,
}

impl<'a> NodeDe<'a> {
    pub(super) fn new(node: &'a Node, path: Path<'a>) -> Self {
        NodeDe {
            node,
            path,
            key: false,
            body: false,
        }
    }
    pub(super) fn mismatch(&self, what: &str) -> Error {
        de::Error::custom(format!("expected {what}, found {}", found(self.node)))
    }
    fn scalar(&self, what: &str) -> R<&'a str> {
        match &self.node.kind {
            NodeKind::Scalar { text, .. } => Ok(text),
            _ => Err(self.mismatch(what)),
        }
    }
}

macro_rules! ints {
    ($($method:ident $ty:ident $visit:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
            let n = parse_int(self.scalar("an integer")?).ok_or_else(|| self.mismatch("an integer"))?;
            let n = $ty::try_from(n).map_err(|_| {
                let (min, max) = ($ty::MIN, $ty::MAX);
                de::Error::custom(format!("expected an integer from {min} to {max}, found {n}"))
            })?;
            v.$visit(n)
        }
    )*};
}

macro_rules! forward {
    ($($method:ident($($arg:ty),*) => $to:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, $(_: $arg,)* v: V) -> R<V::Value> {
            self.$to(v)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = Error;

    ints!(deserialize_i8 i8 visit_i8, deserialize_i16 i16 visit_i16, deserialize_i32 i32 visit_i32,
          deserialize_i64 i64 visit_i64, deserialize_i128 i128 visit_i128, deserialize_u8 u8 visit_u8,
          deserialize_u16 u16 visit_u16, deserialize_u32 u32 visit_u32, deserialize_u64 u64 visit_u64,
          deserialize_u128 u128 visit_u128);

    forward!(deserialize_f32() => deserialize_f64, deserialize_string() => deserialize_str,
             deserialize_bytes() => deserialize_str, deserialize_byte_buf() => deserialize_str,
             deserialize_identifier() => deserialize_str, deserialize_tuple(usize) => deserialize_seq,
             deserialize_tuple_struct(&'static str, usize) => deserialize_seq,
             deserialize_unit_struct(&'static str) => deserialize_unit);

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        let text = match &self.node.kind {
            NodeKind::Null => return v.visit_unit(),
            NodeKind::Seq(_) => return self.deserialize_seq(v),
            NodeKind::Map(_) => return self.deserialize_map(v),
            NodeKind::Scalar {
                text,
                style: ScalarStyle::Plain,
            } if !self.key => text,
            NodeKind::Scalar { text, .. } => return v.visit_str(text),
        };
        let int = parse_int(text);
        if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
            v.visit_unit()
        } else if let Some(b) = parse_bool(text) {
            v.visit_bool(b)
        } else if let Some(n) = int.and_then(|n| u64::try_from(n).ok()) {
            v.visit_u64(n)
        } else if let Some(n) = int.and_then(|n| i64::try_from(n).ok()) {
            v.visit_i64(n)
        } else if let Some(f) = parse_float(text) {
            v.visit_f64(f)
        } else {
            v.visit_str(text)
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        let what = "a boolean (true or false)";
        v.visit_bool(parse_bool(self.scalar(what)?).ok_or_else(|| self.mismatch(what))?)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        v.visit_f64(parse_float(self.scalar("a number")?).ok_or_else(|| self.mismatch("a number"))?)
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        let mut chars = self.scalar("a single character")?.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => v.visit_char(c),
            _ => Err(self.mismatch("a single character")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        v.visit_str(self.scalar("a string")?)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        match &self.node.kind {
            NodeKind::Null => v.visit_none(),
            NodeKind::Scalar {
                text,
                style: ScalarStyle::Plain,
            } if text.is_empty() => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        match self.node.kind {
            NodeKind::Null => v.visit_unit(),
            _ => Err(self.mismatch("null")),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &str, v: V) -> R<V::Value> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        let items: &[Node] = match &self.node.kind {
            NodeKind::Seq(items) => items,
            NodeKind::Null => &[],
            _ => return Err(self.mismatch("a list")),
        };
        let mut seq = SeqAcc {
            iter: items.iter().enumerate(),
            path: &self.path,
        };
        let value = v.visit_seq(&mut seq)?;
        match seq.iter.len() {
            0 => Ok(value),
            left => {
                let (want, have) = (items.len() - left, items.len());
                Err(de::Error::custom(format!(
                    "expected {want} items, found {have}"
                )))
            }
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        let entries: &[(Node, Node)] = match &self.node.kind {
            NodeKind::Map(entries) => entries,
            NodeKind::Null => &[],
            _ => return Err(self.mismatch("a map")),
        };
        v.visit_map(MapAcc {
            iter: entries.iter(),
            body: self.body,
            path: &self.path,
            value: None,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> R<V::Value> {
        if name != MAGIC || fields != MAGIC_FIELDS {
            return self.deserialize_map(v);
        }
        named::visit_entry(self, v)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> R<V::Value> {
        v.visit_enum(self.scalar("a string")?.into_deserializer())
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> R<V::Value> {
        v.visit_unit()
    }
}

pub(super) fn is_scalar(node: &Node, text: &str) -> bool {
    matches!(&node.kind, NodeKind::Scalar { text: t, .. } if t == text)
}

struct SeqAcc<'a> {
    iter: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    path: &'a Path<'a>,
}

impl<'de> de::SeqAccess<'de> for SeqAcc<'_> {
    type Error = Error;
    fn next_element_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> R<Option<S::Value>> {
        let Some((i, node)) = self.iter.next() else {
            return Ok(None);
        };
        let path = Path::Index(self.path, i);
        seed.deserialize(NodeDe::new(node, path))
            .map(Some)
            .map_err(|e| e.at(node, &path))
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct MapAcc<'a> {
    iter: std::slice::Iter<'a, (Node, Node)>,
    body: bool,
    path: &'a Path<'a>,
    value: Option<&'a (Node, Node)>,
}

impl<'de> MapAccess<'de> for MapAcc<'_> {
    type Error = Error;
    fn next_key_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> R<Option<S::Value>> {
        let body = self.body;
        let Some(entry) = self
            .iter
            .find(|(k, _)| !body || !(is_scalar(k, "type") || is_scalar(k, "name")))
        else {
            return Ok(None);
        };
        self.value = Some(entry);
        let path = Path::Key(self.path, key_text(&entry.0));
        let de = NodeDe {
            key: true,
            ..NodeDe::new(&entry.0, path)
        };
        seed.deserialize(de)
            .map(Some)
            .map_err(|e| e.at(&entry.0, &path))
    }
    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> R<S::Value> {
        let (key, value) = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("value before key"))?;
        let path = Path::Key(self.path, key_text(key));
        seed.deserialize(NodeDe::new(value, path))
            .map_err(|e| e.at(value, &path))
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}
