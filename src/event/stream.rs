//! [`StreamName`]: the identity of the stream an event was read from, carried by every event
//! of a replayable source (its [`super::Origin`]).
//!
//! Why not an `Arc<str>` shared by the stream's events: the file thread creates events and a
//! sink thread drops them, so every event incremented the count on one core and decremented
//! it on the other, and the count's cache line moved between the cores each time. Measured on
//! file → blackhole, that was a fifth of the agent's CPU (1.64–1.71M → 1.87–2.13M lines per
//! CPU-second without it). A file's name (`<dev>-<ino>` in hex) fits inline, so copying it
//! touches nothing shared; a longer name falls back to a shared `Arc<str>`.
//!
//! Owns: the representation. Never: interprets the name.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// Longest name stored inline (the type stays 24 bytes, the size of a `String`).
const INLINE: usize = 22;

/// A stream's name: inline up to 22 bytes, else shared.
#[derive(Clone)]
pub struct StreamName(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<str>),
}

impl StreamName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Copied from a `&str` whole (never cut), so always valid UTF-8.
            Repr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Shared(name) => name,
        }
    }
}

impl From<&str> for StreamName {
    fn from(name: &str) -> Self {
        if name.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..name.len()].copy_from_slice(name.as_bytes());
            StreamName(Repr::Inline {
                len: name.len() as u8,
                bytes,
            })
        } else {
            StreamName(Repr::Shared(name.into()))
        }
    }
}

impl From<String> for StreamName {
    fn from(name: String) -> Self {
        name.as_str().into()
    }
}

impl Deref for StreamName {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for StreamName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for StreamName {}

impl Hash for StreamName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_inline_and_long_ones_shared() {
        let short = StreamName::from("803-1a2b3c4d");
        assert!(matches!(short.0, Repr::Inline { .. }));
        assert_eq!(short.as_str(), "803-1a2b3c4d");
        let edge = "x".repeat(INLINE);
        assert!(matches!(
            StreamName::from(edge.as_str()).0,
            Repr::Inline { .. }
        ));
        assert_eq!(&*StreamName::from(edge.as_str()), edge);
        let long = StreamName::from("main/files/ffffffffffffffff-ffffffffffffffff");
        assert!(matches!(long.0, Repr::Shared(_)));
        assert_eq!(
            long.as_str(),
            "main/files/ffffffffffffffff-ffffffffffffffff"
        );
        // Multi-byte text round-trips, inline or not.
        for name in [
            "",
            "é",
            "日本語-ストリーム",
            "ストリーム-ストリーム-ストリーム",
        ] {
            assert_eq!(StreamName::from(name).as_str(), name);
        }
        assert_eq!(short, StreamName::from(String::from("803-1a2b3c4d")));
        assert_eq!(
            format!("{short:?} {short}"),
            "\"803-1a2b3c4d\" 803-1a2b3c4d"
        );
        assert_eq!(std::mem::size_of::<StreamName>(), 24);
    }
}
