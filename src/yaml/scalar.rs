//! Typing plain scalars by the YAML 1.2 core schema (integers, floats, booleans), and how
//! a node is shown in a type-mismatch message.

use super::node::{Node, NodeKind};

/// Core-schema integers: decimal with optional sign, `0x` hex, `0o` octal.
pub(super) fn parse_int(text: &str) -> Option<i128> {
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
pub(super) fn parse_float(text: &str) -> Option<f64> {
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

pub(super) fn parse_bool(text: &str) -> Option<bool> {
    [("true", true), ("false", false)]
        .into_iter()
        .find_map(|(word, b)| text.eq_ignore_ascii_case(word).then_some(b))
}

/// How a node is shown after "found" in type mismatch messages.
pub(super) fn found(node: &Node) -> String {
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
