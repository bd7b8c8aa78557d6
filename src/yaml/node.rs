//! Parsing one YAML document (yaml-rust2's event parser) into a [`Node`] tree that keeps
//! the line and column of every node, with anchors/aliases resolved and bounded, nesting
//! bounded, and multiple documents and custom tags rejected.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::TScalarStyle;

use super::error::{err, R};

/// Deepest nesting of sequences and maps accepted in a config file.
pub const MAX_DEPTH: usize = 128;
/// Most nodes that alias (`*name`) expansion may copy in one file.
const MAX_ALIAS_NODES: usize = 100_000;

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

/// Parses one YAML document into a [`Node`] tree.
pub(super) fn parse(text: &str) -> R<Node> {
    // Open collections: (node, anchor id, map key waiting for its value).
    let mut stack: Vec<(Node, usize, Option<Node>)> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let (mut parser, mut root, mut docs) = (Parser::new_from_str(text), None, 0);
    let mut budget = MAX_ALIAS_NODES;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| {
            let (line, col) = (e.marker().line(), e.marker().col() + 1);
            // `[${DIR}/a.log]`: an unquoted `${` opens a flow map in YAML, before any
            // expansion could see it.
            let near = text.lines().skip(line.saturating_sub(2)).take(2);
            let hint = if near.into_iter().any(|l| l.contains("${")) {
                " (a value with ${VAR} inside [ ] or { } must be quoted: \"${VAR}/x\")"
            } else {
                ""
            };
            err(format!("invalid YAML: {}{hint}", e.info()), line, col)
        })?;
        let (line, col) = (mark.line(), mark.col() + 1);
        let too_deep = || err(format!("nesting deeper than {MAX_DEPTH} levels"), line, col);
        let (node, anchor) = match event {
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
                (scalar(text, style, tag.as_ref(), line, col)?, anchor)
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
                let node = Node {
                    line,
                    col,
                    ..target.clone()
                };
                (node, 0)
            }
            _ => continue,
        };
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        if let Some(node) = attach(&mut stack, node) {
            root = Some(node);
        }
    }
    match root {
        Some(node) if node.kind != NodeKind::Null => Ok(node),
        _ => Err(err("empty config", 1, 1)),
    }
}

/// A scalar's node: plain `null`, `~` or nothing is null; a quote or a string tag keeps the
/// text a string.
fn scalar(
    text: String,
    style: TScalarStyle,
    tag: Option<&Tag>,
    line: usize,
    col: usize,
) -> R<Node> {
    let forced = check_tag(tag, line, col)?;
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
    Ok(Node { kind, line, col })
}

/// Adds a finished `node` to the innermost open collection (as an item, a map key, or the
/// value of the waiting key); returns it when no collection is open (it is the root).
fn attach(stack: &mut [(Node, usize, Option<Node>)], mut node: Node) -> Option<Node> {
    let Some((parent, _, key)) = stack.last_mut() else {
        return Some(node);
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
    None
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

pub(super) fn key_text(key: &Node) -> &str {
    match &key.kind {
        NodeKind::Scalar { text, .. } => text,
        NodeKind::Null => "null",
        _ => "?",
    }
}
