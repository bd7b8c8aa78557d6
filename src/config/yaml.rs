//! Loading sluice's YAML config into serde-derived structs, with locations.
//!
//! This module owns:
//! - parsing YAML (yaml-rust2's event parser) into a [`Node`] tree that keeps
//!   the line and column of every node, with anchors/aliases resolved and
//!   duplicate keys and multiple documents rejected;
//! - `${VAR}`, `${VAR:-default}` and `$$` environment expansion in values;
//! - a serde `Deserializer` over that tree that types scalars on demand
//!   (YAML 1.2 core schema) and turns every error into a [`ConfigError`]
//!   naming file, line, column and key path, e.g.
//!   `sluice.yaml:12:9: pipelines.web.sinks[0].endpoint: relative URL without a base: "x"`;
//! - tagged component configs ([`Named`] + [`TaggedEnum`]) selected by a
//!   `type:` key, instead of serde's internally tagged enums (which buffer
//!   the input and lose every location).
//!
//! It must never panic on any input: malformed YAML, nesting deeper than
//! [`MAX_DEPTH`] and alias bombs all come back as errors.
//!
//! Not supported: custom tags (`!env`, rejected), `<<` merge keys (an
//! ordinary key, so `deny_unknown_fields` rejects it), enum variants that
//! carry data (only unit variants, written as strings).

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use std::{collections::HashMap, fmt, marker::PhantomData};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

/// Deepest nesting of sequences and maps accepted in a config file.
pub const MAX_DEPTH: usize = 128;
/// Most nodes that alias (`*name`) expansion may copy in one file.
const MAX_ALIAS_NODES: usize = 100_000;
const MAGIC: &str = "$__sluice_private_Named";
const KEY_LINE: &str = "$__sluice_line";
const KEY_TYPE: &str = "$__sluice_type";
const KEY_NAME: &str = "$__sluice_name";
const KEY_CONFIG: &str = "$__sluice_config";
const MAGIC_FIELDS: &[&str] = &[KEY_LINE, KEY_TYPE, KEY_NAME, KEY_CONFIG];
const FOREIGN: &str = "component configs must be loaded through sluice's YAML loader";

/// A config error located in the source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name given to the loader.
    pub file: String,
    /// 1-based line of the offending node.
    pub line: usize,
    /// 1-based column of the offending node.
    pub column: usize,
    /// Key path such as `pipelines.web.sinks[0].endpoint`; empty for the root.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Loads a `T` from YAML `text`, expanding `${VAR}` from the process
/// environment; `file` is only used in error messages. `${HOSTNAME}` falls back to the
/// machine's host name when the variable is not set (systemd services and `cron` do not
/// set it, which gave every event `host: localhost` under the shipped unit).
pub fn from_str<T: DeserializeOwned>(text: &str, file: &str) -> Result<T, ConfigError> {
    from_str_with_env(text, file, &|name| {
        std::env::var(name)
            .ok()
            .or_else(|| (name == "HOSTNAME").then(host_name).flatten())
    })
}

/// The kernel's host name (`/proc/sys/kernel/hostname`, what `gethostname` returns).
pub fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Like [`from_str`], but looks environment variables up through `env`.
pub fn from_str_with_env<T: DeserializeOwned>(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<T, ConfigError> {
    let load = || {
        let mut root = parse(text.strip_prefix('\u{feff}').unwrap_or(text))?;
        prepare(&mut root, &Path::Root, env)?;
        T::deserialize(NodeDe::new(&root, Path::Root)).map_err(|e| e.at(&root, &Path::Root))
    };
    load().map_err(|e| {
        let (line, column, path) = e.at.unwrap_or((1, 1, String::new()));
        let (file, message) = (file.to_string(), e.message);
        ConfigError {
            file,
            line,
            column,
            path,
            message,
        }
    })
}

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

/// A parsed YAML node with its 1-based position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What the node holds.
    pub kind: NodeKind,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

/// The content of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// An empty value, `~` or `null`.
    Null,
    /// A scalar, typed later by the type asking for it.
    Scalar {
        /// The text (after environment expansion, for values).
        text: String,
        /// Whether it was written plain or quoted.
        style: ScalarStyle,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A map in source order; keys are nodes.
    Map(Vec<(Node, Node)>),
}

/// How a scalar was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarStyle {
    /// Unquoted: typed by its text when the target type does not decide.
    Plain,
    /// Quoted, block (`|`, `>`) or `!!str`: a string unless a number or bool is asked for.
    Quoted,
}

type R<T> = Result<T, Error>;

/// Internal serde error: a message plus, once known, (line, column, path).
#[derive(Debug)]
struct Error {
    message: String,
    at: Option<(usize, usize, String)>,
}

fn err(message: impl Into<String>, line: usize, col: usize) -> Error {
    Error {
        message: message.into(),
        at: Some((line, col, String::new())),
    }
}

impl Error {
    /// Locates the error at `node` unless an inner node already did.
    fn at(mut self, node: &Node, path: &Path<'_>) -> Self {
        self.at = self
            .at
            .or_else(|| Some((node.line, node.col, path.to_string())));
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            message: msg.to_string(),
            at: None,
        }
    }
    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let found = match unexp {
            de::Unexpected::Str(s) => format!("{s:?}"),
            de::Unexpected::Unit => "null".into(),
            de::Unexpected::Seq => "a list".into(),
            de::Unexpected::Map => "a map".into(),
            other => other.to_string(),
        };
        de::Error::custom(format!("expected {exp}, found {found}"))
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let one_of = expected.join(", ");
        de::Error::custom(format!(
            "unknown key \"{field}\", expected one of: {one_of}"
        ))
    }
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let one_of = expected.join(", ");
        de::Error::custom(format!(
            "unknown value \"{variant}\", expected one of: {one_of}"
        ))
    }
    fn missing_field(field: &'static str) -> Self {
        de::Error::custom(format!("missing required key \"{field}\""))
    }
}

/// The key path of a node, rendered only when an error needs it.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Path::Root => Ok(()),
            Path::Key(Path::Root, k) => f.write_str(k),
            Path::Key(p, k) => write!(f, "{p}.{k}"),
            Path::Index(p, i) => write!(f, "{p}[{i}]"),
        }
    }
}

/// Parses one YAML document into a [`Node`] tree.
fn parse(text: &str) -> R<Node> {
    // Open collections: (node, anchor id, map key waiting for its value).
    let mut stack: Vec<(Node, usize, Option<Node>)> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let (mut parser, mut root, mut docs) = (Parser::new_from_str(text), None, 0);
    let mut budget = MAX_ALIAS_NODES;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| {
            let (line, col) = (e.marker().line(), e.marker().col() + 1);
            err(format!("invalid YAML: {}", e.info()), line, col)
        })?;
        let (line, col) = (mark.line(), mark.col() + 1);
        let too_deep = || err(format!("nesting deeper than {MAX_DEPTH} levels"), line, col);
        let (mut node, anchor) = match event {
            Event::StreamEnd => break,
            Event::DocumentStart if docs > 0 => {
                let msg = "multiple YAML documents in one config file are not supported";
                return Err(err(msg, line, col));
            }
            Event::DocumentStart => {
                docs += 1;
                continue;
            }
            Event::Scalar(text, style, anchor, tag) => {
                let forced = check_tag(tag.as_ref(), line, col)?;
                let plain = style == TScalarStyle::Plain && !forced;
                let style = if plain {
                    ScalarStyle::Plain
                } else {
                    ScalarStyle::Quoted
                };
                let kind = match text.as_str() {
                    "" | "~" | "null" | "Null" | "NULL" if plain => NodeKind::Null,
                    _ => NodeKind::Scalar { text, style },
                };
                (Node { kind, line, col }, anchor)
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                check_tag(tag.as_ref(), line, col)?;
                if stack.len() >= MAX_DEPTH {
                    return Err(too_deep());
                }
                let kind = match event {
                    Event::SequenceStart(..) => NodeKind::Seq(Vec::new()),
                    _ => NodeKind::Map(Vec::new()),
                };
                stack.push((Node { kind, line, col }, anchor, None));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some((node, anchor, _)) => (node, anchor),
                None => continue,
            },
            Event::Alias(id) => {
                let Some(target) = anchors.get(&id) else {
                    return Err(err("alias to an unknown anchor", line, col));
                };
                let (height, count) = measure(target);
                if stack.len() + height > MAX_DEPTH {
                    return Err(too_deep());
                }
                budget = budget.checked_sub(count).ok_or_else(|| {
                    let msg = format!("aliases expand to more than {MAX_ALIAS_NODES} nodes");
                    err(msg, line, col)
                })?;
                (
                    Node {
                        line,
                        col,
                        ..target.clone()
                    },
                    0,
                )
            }
            _ => continue,
        };
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        let Some((parent, _, key)) = stack.last_mut() else {
            root = Some(node);
            continue;
        };
        match (&mut parent.kind, key.take()) {
            (NodeKind::Seq(items), _) => items.push(node),
            (NodeKind::Map(entries), None) => {
                // Block maps are reported after their first key: use the key's position.
                if entries.is_empty() && (node.line, node.col) < (parent.line, parent.col) {
                    (parent.line, parent.col) = (node.line, node.col);
                }
                *key = Some(node);
            }
            (NodeKind::Map(entries), Some(k)) => {
                // An empty value is reported at the next token: use its key's position.
                if node.kind == NodeKind::Null && (node.line, node.col) > (k.line, k.col) {
                    (node.line, node.col) = (k.line, k.col);
                }
                entries.push((k, node));
            }
            _ => {}
        }
    }
    match root {
        Some(node) if node.kind != NodeKind::Null => Ok(node),
        _ => Err(err("empty config", 1, 1)),
    }
}

/// Accepts core-schema and non-specific tags; returns whether the tag forces a string.
fn check_tag(tag: Option<&Tag>, line: usize, col: usize) -> R<bool> {
    let Some(Tag { handle, suffix }) = tag else {
        return Ok(false);
    };
    match (handle.as_str(), suffix.as_str()) {
        ("tag:yaml.org,2002:", "str") | ("", "!") => Ok(true),
        ("tag:yaml.org,2002:", "int" | "float" | "bool" | "null" | "map" | "seq") => Ok(false),
        _ => Err(err(
            format!("unsupported YAML tag {handle}{suffix}"),
            line,
            col,
        )),
    }
}

/// (height in collections, number of nodes) of a tree.
fn measure(node: &Node) -> (usize, usize) {
    let children: Vec<&Node> = match &node.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        NodeKind::Map(entries) => entries.iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => return (0, 1),
    };
    children
        .into_iter()
        .map(measure)
        .fold((1, 1), |(h, n), (ch, cn)| (h.max(ch + 1), n + cn))
}

fn key_text(key: &Node) -> &str {
    match &key.kind {
        NodeKind::Scalar { text, .. } => text,
        NodeKind::Null => "null",
        _ => "?",
    }
}

/// Rejects duplicate keys and expands environment variables in values.
fn prepare(node: &mut Node, path: &Path<'_>, env: &dyn Fn(&str) -> Option<String>) -> R<()> {
    let Node { kind, line, col } = node;
    let fail = |message, line, col, path: &Path<'_>| {
        Err(Error {
            message,
            at: Some((line, col, path.to_string())),
        })
    };
    match kind {
        NodeKind::Scalar { text, .. } if text.contains('$') => match expand(text, env) {
            Ok(expanded) => *text = expanded,
            Err(message) => return fail(message, *line, *col, path),
        },
        NodeKind::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                prepare(item, &Path::Index(path, i), env)?;
            }
        }
        NodeKind::Map(entries) => {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for (key, value) in entries.iter_mut() {
                let name = key_text(key).to_string();
                let key_path = Path::Key(path, &name);
                if let Some(first) = seen.insert(name.clone(), key.line) {
                    let msg = format!("duplicate key \"{name}\" (first defined on line {first})");
                    return fail(msg, key.line, key.col, &key_path);
                }
                prepare(value, &key_path, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Expands `${VAR}`, `${VAR:-default}` and `$$`; any other `$` stays.
fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let (mut out, mut rest) = (String::with_capacity(text.len()), text);
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            (out, rest) = (out + "$", r);
            continue;
        }
        let Some(r) = rest.strip_prefix('{') else {
            out.push('$');
            continue;
        };
        let Some((inner, r)) = r.split_once('}') else {
            return Err("unterminated \"${\" (write $$ for a literal $)".into());
        };
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c == '_' || c.is_ascii_alphabetic());
        if !first_ok || !chars.all(|c| c == '_' || c.is_ascii_alphanumeric()) {
            return Err(format!(
                "invalid environment variable name {name:?} in \"${{{inner}}}\""
            ));
        }
        match (env(name), default) {
            (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                let hint = format!("(use ${{{name}:-default}} for a default)");
                return Err(format!("environment variable {name} is not set {hint}"));
            }
        }
        rest = r;
    }
    Ok(out + rest)
}

/// Core-schema integers: decimal with optional sign, `0x` hex, `0o` octal.
fn parse_int(text: &str) -> Option<i128> {
    let digits = |s: &str, radix| {
        let ok = !s.is_empty() && s.chars().all(|c| c.is_digit(radix));
        i128::from_str_radix(s, radix).ok().filter(|_| ok)
    };
    if let Some(hex) = text.strip_prefix("0x") {
        return digits(hex, 16);
    }
    if let Some(oct) = text.strip_prefix("0o") {
        return digits(oct, 8);
    }
    match text.strip_prefix('-') {
        Some(n) => digits(n, 10).map(|n| -n),
        None => digits(text.strip_prefix('+').unwrap_or(text), 10),
    }
}

/// Core-schema floats (`1.5`, `-1e3`, `.inf`, `.nan`) and integers.
fn parse_float(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let sign = if text.starts_with('-') { -1.0 } else { 1.0 };
    match unsigned {
        ".inf" | ".Inf" | ".INF" => return Some(sign * f64::INFINITY),
        ".nan" | ".NaN" | ".NAN" if unsigned == text => return Some(f64::NAN),
        _ => {}
    }
    let chars_ok = unsigned
        .chars()
        .all(|c| c.is_ascii_digit() || "._eE+-".contains(c));
    let mantissa = unsigned.split(['e', 'E']).next().unwrap_or("");
    if chars_ok && !text.contains('_') && mantissa.contains(|c: char| c.is_ascii_digit()) {
        return text.parse().ok();
    }
    parse_int(text).map(|n| n as f64)
}

fn parse_bool(text: &str) -> Option<bool> {
    [("true", true), ("false", false)]
        .into_iter()
        .find_map(|(word, b)| text.eq_ignore_ascii_case(word).then_some(b))
}

/// How a node is shown after "found" in type mismatch messages.
fn found(node: &Node) -> String {
    match &node.kind {
        NodeKind::Null => "null".into(),
        NodeKind::Scalar { text, .. } if text.chars().count() > 40 => {
            format!("{:?}...", text.chars().take(40).collect::<String>())
        }
        NodeKind::Scalar { text, .. } => format!("{text:?}"),
        NodeKind::Seq(_) => "a list".into(),
        NodeKind::Map(_) => "a map".into(),
    }
}

/// Deserializer over one node; `key`: it is a map key (always a string to
/// `deserialize_any`); `body`: a component map whose `type` and `name` are hidden.
struct NodeDe<'a> {
    node: &'a Node,
    path: Path<'a>,
    key: bool,
    body: bool,
}

impl<'a> NodeDe<'a> {
    fn new(node: &'a Node, path: Path<'a>) -> Self {
        NodeDe {
            node,
            path,
            key: false,
            body: false,
        }
    }
    fn mismatch(&self, what: &str) -> Error {
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
        let NodeKind::Map(entries) = &self.node.kind else {
            return Err(self.mismatch("a map with a \"type\" key"));
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
            de: self,
            keys,
            current: "",
            ty,
            name,
        })
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

fn is_scalar(node: &Node, text: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        data_dir: PathBuf,
        api: Option<Api>,
        pipelines: BTreeMap<String, Pipeline>,
    }
    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Api {
        address: String,
    }
    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Pipeline {
        sources: Vec<Named<Source>>,
        #[serde(default)]
        transforms: Vec<Named<Transform>>,
        sinks: Vec<Named<Sink>>,
    }
    #[derive(Debug, PartialEq)]
    enum Source {
        File(FileCfg),
        Demo(DemoCfg),
    }
    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FileCfg {
        include: Vec<String>,
        #[serde(default)]
        read_from: ReadFrom,
    }
    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum ReadFrom {
        #[default]
        Beginning,
        End,
    }
    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct DemoCfg {
        rate: u64,
    }
    #[derive(Debug, PartialEq)]
    enum Transform {
        Grep(GrepCfg),
    }
    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct GrepCfg {
        pattern: Pattern,
    }
    /// Stands in for a newtype that compiles a regex.
    #[derive(Debug, PartialEq)]
    struct Pattern(String);
    impl<'de> Deserialize<'de> for Pattern {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let s = String::deserialize(d)?;
            if s.matches('(').count() != s.matches(')').count() {
                return Err(de::Error::custom(format!(
                    "unbalanced parentheses in {s:?}"
                )));
            }
            Ok(Pattern(s))
        }
    }
    #[derive(Debug, Clone, PartialEq)]
    enum Sink {
        Loki(LokiCfg),
    }
    #[derive(Debug, Clone, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct LokiCfg {
        endpoint: url::Url,
        #[serde(default)]
        labels: BTreeMap<String, String>,
    }

    macro_rules! tagged {
        ($ty:ident, $kind:literal, $($tag:literal => $variant:ident),*) => {
            impl TaggedEnum for $ty {
                const KIND: &'static str = $kind;
                const TYPES: &'static [&'static str] = &[$($tag),*];
                fn deserialize_variant<'de, A: MapAccess<'de>>(t: &str, body: &mut A) -> Result<Self, A::Error> {
                    match t {
                        $($tag => Ok($ty::$variant(body.next_value()?)),)*
                        _ => Err(de::Error::custom("not a type")),
                    }
                }
            }
        };
    }
    tagged!(Source, "source", "file" => File, "demo" => Demo);
    tagged!(Transform, "transform", "grep" => Grep);
    tagged!(Sink, "sink", "loki" => Loki);

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Int(i64),
        Str(String),
        List(Vec<Loose>),
        Map(BTreeMap<String, Loose>),
        Null(()),
    }
    #[derive(Debug, PartialEq, Deserialize)]
    struct Flat {
        a: u8,
        #[serde(flatten)]
        rest: BTreeMap<String, Loose>,
    }
    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("loki.example".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn check<T: DeserializeOwned + PartialEq + fmt::Debug>(yaml: &str, want: Result<T, &str>) {
        let got = from_str_with_env::<T>(yaml, "sluice.yaml", &env).map_err(|e| e.to_string());
        assert_eq!(got, want.map_err(str::to_string), "\n--- yaml:\n{yaml}");
    }

    /// A one-pipeline config whose sources start on line 5.
    fn web(sources: &str, sinks: &str) -> String {
        format!("data_dir: /d\npipelines:\n  web:\n    sources:\n{sources}    sinks:\n{sinks}")
    }
    const DEMO: &str = "      - type: demo\n        rate: 5\n";
    const LOKI: &str = "      - type: loki\n        endpoint: http://x\n";

    fn named<T>(name: Option<&str>, config: T, line: usize) -> Named<T> {
        Named {
            name: name.map(str::to_string),
            config,
            line,
        }
    }

    #[test]
    fn valid_config_round_trips() {
        let yaml = r#"
data_dir: /var/lib/sluice
api: {address: "127.0.0.1:8686"}
pipelines:
  web:
    sources:
      - type: file
        name: nginx
        include: ["${LOGS:-/var/log}/*.log", "${EMPTY:-/tmp}/x", "a$$b$c"]
        read_from: end
      - {type: demo, rate: "${RATE:-42}"}
    transforms:
      - type: grep
        pattern: (GET|POST)
    sinks:
      - &loki
        type: loki
        endpoint: http://${HOST}:3100/push
        labels: {job: web}
  copy:
    sources: [{type: demo, rate: 0x10}]
    sinks: [*loki]
"#;
        let include = vec!["/var/log/*.log".into(), "/tmp/x".into(), "a$b$c".into()];
        let file = Source::File(FileCfg {
            include,
            read_from: ReadFrom::End,
        });
        let labels = BTreeMap::from([("job".to_string(), "web".to_string())]);
        let endpoint = url::Url::parse("http://loki.example:3100/push").unwrap();
        let loki = Sink::Loki(LokiCfg { endpoint, labels });
        let grep = Transform::Grep(GrepCfg {
            pattern: Pattern("(GET|POST)".into()),
        });
        let web = Pipeline {
            sources: vec![
                named(Some("nginx"), file, 7),
                named(None, Source::Demo(DemoCfg { rate: 42 }), 11),
            ],
            transforms: vec![named(None, grep, 13)],
            sinks: vec![named(None, loki, 17)],
        };
        let copy = Pipeline {
            sources: vec![named(None, Source::Demo(DemoCfg { rate: 16 }), 21)],
            transforms: vec![],
            sinks: vec![Named {
                line: 22,
                ..web.sinks[0].clone()
            }],
        };
        let want = Config {
            data_dir: "/var/lib/sluice".into(),
            api: Some(Api {
                address: "127.0.0.1:8686".into(),
            }),
            pipelines: BTreeMap::from([("web".into(), web), ("copy".into(), copy)]),
        };
        check(yaml, Ok(want));
    }

    #[test]
    fn config_errors_name_file_line_and_path() {
        let sink = |endpoint: &str| format!("      - type: loki\n        endpoint: {endpoint}\n");
        let labels = "      - type: loki\n        endpoint: http://x\n        labels:\n          a: b\n          a: c\n";
        let grep = "    transforms:\n      - type: grep\n        pattern: \"(oops\"\n";
        let cases: Vec<(String, &str)> = vec![
            (web("      - type: file\n        inlcude: [a]\n", LOKI),
             r#"6:9: pipelines.web.sources[0].inlcude: unknown key "inlcude", expected one of: include, read_from"#),
            ("\u{feff}data_dir: /d\npipeline: {}\n".into(),
             r#"2:1: pipeline: unknown key "pipeline", expected one of: data_dir, api, pipelines"#),
            (web("      - type: demo\n        rate: fast\n", LOKI),
             r#"6:15: pipelines.web.sources[0].rate: expected an integer, found "fast""#),
            (web(DEMO, &sink("not a url")),
             r#"9:19: pipelines.web.sinks[0].endpoint: relative URL without a base: "not a url""#),
            (web(DEMO, &sink("http://${NOPE}/x")),
             "9:19: pipelines.web.sinks[0].endpoint: environment variable NOPE is not set (use ${NOPE:-default} for a default)"),
            (web(DEMO, &sink("\"${NOPE\"")),
             r#"9:19: pipelines.web.sinks[0].endpoint: unterminated "${" (write $$ for a literal $)"#),
            (web(DEMO, &sink("${1X}")), r#"9:19: pipelines.web.sinks[0].endpoint: invalid environment variable name "1X" in "${1X}""#),
            (web("      - type: flie\n", LOKI),
             r#"5:15: pipelines.web.sources[0].type: unknown source type "flie", expected one of: file, demo"#),
            (web("      - include: [a]\n", LOKI), r#"5:9: pipelines.web.sources[0]: missing key "type" (one of: file, demo)"#),
            (web("      - file\n", LOKI), r#"5:9: pipelines.web.sources[0]: expected a map with a "type" key, found "file""#),
            (web("      - {type: demo, name: [x], rate: 1}\n", LOKI),
             "5:28: pipelines.web.sources[0].name: expected a string, found a list"),
            (web("      - type: demo\n", LOKI), r#"5:9: pipelines.web.sources[0]: missing required key "rate""#),
            (web("      - {type: file, include: [a], read_from: middle}\n", LOKI),
             r#"5:47: pipelines.web.sources[0].read_from: unknown value "middle", expected one of: beginning, end"#),
            (web(DEMO, labels), r#"12:11: pipelines.web.sinks[0].labels.a: duplicate key "a" (first defined on line 11)"#),
            (web(DEMO, LOKI) + grep, r#"12:18: pipelines.web.transforms[0].pattern: unbalanced parentheses in "(oops""#),
            ("data_dir: /d\npipelines: [web]\n".into(), "2:12: pipelines: expected a map, found a list"),
            ("pipelines: {}\n".into(), r#"1:1: missing required key "data_dir""#),
            ("data_dir: [a\npipelines: {}\n".into(), "2:10: invalid YAML: illegal placement of ':' indicator"),
            ("a: 1\n---\nb: 2\n".into(), "2:1: multiple YAML documents in one config file are not supported"),
            ("".into(), "1:1: empty config"),
            ("# nothing\n".into(), "1:1: empty config"),
            ("data_dir: !env x\n".into(), "1:16: unsupported YAML tag !env"),
            ("a: &a [1]\nb: *zz\n".into(), "2:4: invalid YAML: while parsing node, found unknown anchor"),
        ];
        for (yaml, want) in cases {
            check::<Config>(&yaml, Err(&format!("sluice.yaml:{want}")));
        }
    }

    #[test]
    fn scalars_are_typed_on_demand() {
        type Scalars = (
            Vec<bool>,
            Vec<i64>,
            Vec<f64>,
            Vec<String>,
            Option<u8>,
            (u8, String),
        );
        let yaml = "- [true, True, TRUE, false, \"FALSE\"]\n- [0x1f, 0o17, -12, '+7', 007]\n\
                    - [1.5, -.inf, .Inf, 1e3, 2, \"0.25\"]\n- - 12\n  - true\n  - ~x\n  - 'q'\n  - |\n    two\n    lines\n-\n- [255, 1.0]\n";
        let floats = vec![1.5, f64::NEG_INFINITY, f64::INFINITY, 1000.0, 2.0, 0.25];
        let strings = vec![
            "12".into(),
            "true".into(),
            "~x".into(),
            "q".into(),
            "two\nlines\n".into(),
        ];
        let want = (
            vec![true, true, true, false, false],
            vec![31, 15, -12, 7, 7],
            floats,
            strings,
        );
        check::<Scalars>(
            yaml,
            Ok((want.0, want.1, want.2, want.3, None, (255, "1.0".into()))),
        );
        let base = "- []\n- []\n- []\n- []\n";
        let cases = [
            (
                "- 256\n- [1, a]",
                "5:3: [4]: expected an integer from 0 to 255, found 256",
            ),
            (
                "- ${EMPTY}\n- []",
                "6:3: [5]: invalid length 0, expected a tuple of size 2",
            ),
            ("- 1\n- [1, a, b]", "6:3: [5]: expected 2 items, found 3"),
            (
                "- 1_000\n- [1, a]",
                r#"5:3: [4]: expected an integer, found "1_000""#,
            ),
            ("- 1\n- {a: 1}", "6:3: [5]: expected a list, found a map"),
            ("- 1\n- [1, a]\n- 3", "1:1: expected 6 items, found 7"),
        ];
        for (tail, want) in cases {
            check::<Scalars>(
                &format!("{base}{tail}\n"),
                Err(&format!("sluice.yaml:{want}")),
            );
        }
        let no_bool = r#"sluice.yaml:1:3: [0]: expected a boolean (true or false), found "yes""#;
        check::<Vec<bool>>("- yes", Err(no_bool));
        assert!(from_str_with_env::<Vec<f64>>("[.nan]", "f", &env).unwrap()[0].is_nan());
    }

    #[test]
    fn enums_untagged_flatten_and_limits() {
        let m = |v: Vec<(&str, Loose)>| {
            Loose::Map(v.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
        };
        let list = Loose::List(vec![Loose::Int(1), Loose::Str("x".into()), Loose::Null(())]);
        check(
            "a: [1, x, ~]\nb: '7'\n",
            Ok(m(vec![("a", list), ("b", Loose::Str("7".into()))])),
        );
        check(
            "a: 1\nb: 2\n",
            Ok(Flat {
                a: 1,
                rest: BTreeMap::from([("b".to_string(), Loose::Int(2))]),
            }),
        );
        check::<Flat>(
            "x:\n  a: 1\n",
            Err("sluice.yaml:1:1: missing required key \"a\""),
        );
        let unit = r#"sluice.yaml:1:3: [0]: expected a string, found a map"#;
        check::<Vec<ReadFrom>>("- {end: 1}", Err(unit));
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(from_str_with_env::<Loose>(&deep(MAX_DEPTH), "f", &env).is_ok());
        check::<Loose>(
            &deep(MAX_DEPTH + 1),
            Err("sluice.yaml:1:129: nesting deeper than 128 levels"),
        );
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                    e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n";
        check::<Loose>(
            bomb,
            Err("sluice.yaml:5:33: aliases expand to more than 100000 nodes"),
        );
    }

    #[test]
    fn named_needs_this_loader() {
        let map =
            de::value::MapDeserializer::<_, de::value::Error>::new([("type", "demo")].into_iter());
        let err = Named::<Source>::deserialize(map).unwrap_err();
        assert_eq!(err.to_string(), FOREIGN);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(
            s in "((  |- |a: |type: |name: |\\[|\\]|\\{|\\}|, |&a |\\*a |\\? |!!str |'|\"|\\n|\\$\\{X|\\}|#|\\||>|---|x|1|~)){0,60}",
            t in ".{0,60}",
        ) {
            let _ = from_str::<Config>(&s, "f");
            let _ = from_str::<Loose>(&s, "f");
            let _ = from_str::<Config>(&t, "f");
        }
    }
}
