//! Checks a parsed tree before it is typed: duplicate keys are rejected, and `${VAR}`,
//! `${VAR:-default}` and `$$` are expanded in values.

use std::collections::HashMap;

use super::error::{Error, Path, R};
use super::node::{key_text, Node, NodeKind};

/// Rejects duplicate keys and expands environment variables in values.
pub(super) fn prepare(
    node: &mut Node,
    path: &Path<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> R<()> {
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
pub(super) fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
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
