//! The loader's internal serde error, located lazily at the node and key path where it
//! happened, and the key path itself (`pipelines.web.sinks[0].endpoint`).

use serde::de;
use std::fmt;

use super::node::Node;

pub(super) type R<T> = Result<T, Error>;

/// Internal serde error: a message plus, once known, (line, column, path).
#[derive(Debug)]
pub(super) struct Error {
    pub(super) message: String,
    pub(super) at: Option<(usize, usize, String)>,
}

pub(super) fn err(message: impl Into<String>, line: usize, col: usize) -> Error {
    Error {
        message: message.into(),
        at: Some((line, col, String::new())),
    }
}

impl Error {
    /// Locates the error at `node` unless an inner node already did.
    pub(super) fn at(mut self, node: &Node, path: &Path<'_>) -> Self {
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
pub(super) enum Path<'a> {
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
