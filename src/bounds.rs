//! The ranges config values must fall in: what `run` can honour without a panic, an
//! overflow or memory out of proportion to the setting.
//!
//! Owns: the limits and the one message shape, `<key> must be between <min> and <max> (got
//! <value>)`, so that `sluice validate` names the key and the allowed range. Never: decides
//! defaults (each config struct does).

use std::fmt::Display;
use std::num::NonZeroUsize;
use std::ops::RangeInclusive;

use serde::{de, Deserialize, Deserializer};

/// Longest duration setting, in seconds: a year. Longer ones would overflow `Instant`
/// arithmetic on some platforms and mean "never" anyway.
pub const MAX_SECS: u64 = 365 * 24 * 3600;
/// [`MAX_SECS`] in milliseconds.
pub const MAX_MS: u64 = MAX_SECS * 1000;
/// Longest shutdown deadline, in seconds (an hour): a drain that takes longer is stuck.
pub const MAX_SHUTDOWN_SECS: u64 = 3600;
/// Most worker / runtime threads (each costs a stack and a queue).
pub const MAX_THREADS: usize = 256;
/// Largest queue capacity, in batches (queues allocate their slots up front).
pub const MAX_QUEUE_BATCHES: usize = 4096;
/// Largest byte size of one line, message, batch or request: 256 MiB.
pub const MAX_BYTES: usize = 256 << 20;
/// Most events or lines in one batch.
pub const MAX_EVENTS: usize = 1_000_000;
/// Most globs in one `include` or `exclude` list.
pub const MAX_GLOBS: usize = 1024;
/// Largest fingerprint, in bytes (read from each file at every identity check).
pub const MAX_FINGERPRINT_BYTES: u64 = 1 << 20;
/// Most files open at once, or connections, per source.
pub const MAX_HANDLES: usize = 1 << 20;
/// Largest cap on the dead-letter file: 1 TiB.
pub const MAX_DEAD_LETTER_BYTES: u64 = 1 << 40;
/// Most series, keys or streams a component tracks.
pub const MAX_TRACKED: usize = 10_000_000;

/// Refuses `value` outside `range`, naming `key` and the range.
pub fn check<T: PartialOrd + Display>(
    key: &str,
    value: T,
    range: RangeInclusive<T>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        range.contains(&value),
        "{key} must be between {} and {} (got {value})",
        range.start(),
        range.end()
    );
    Ok(())
}

/// Like [`check`] for an optional value (unset is always fine).
pub fn check_opt<T: PartialOrd + Display>(
    key: &str,
    value: Option<T>,
    range: RangeInclusive<T>,
) -> anyhow::Result<()> {
    match value {
        Some(value) => check(key, value, range),
        None => Ok(()),
    }
}

/// A whole number a config key holds, read as `u64` and checked by [`within`].
pub trait Count: Sized {
    /// `value` as `Self`, if it fits.
    fn from_count(value: u64) -> Option<Self>;
}

impl Count for u64 {
    fn from_count(value: u64) -> Option<Self> {
        Some(value)
    }
}

impl Count for usize {
    fn from_count(value: u64) -> Option<Self> {
        usize::try_from(value).ok()
    }
}

impl Count for NonZeroUsize {
    fn from_count(value: u64) -> Option<Self> {
        NonZeroUsize::new(usize::try_from(value).ok()?)
    }
}

/// serde `deserialize_with` for a whole number that must lie in `MIN..=MAX`. Checked while
/// the file is read, so the error names the line and column of the value, like a type error:
/// `sluice.yaml:4:20: pipelines.web.queue_batches: must be between 1 and 4096 (got 5000)`.
pub fn within<'de, D: Deserializer<'de>, T: Count, const MIN: u64, const MAX: u64>(
    d: D,
) -> Result<T, D::Error> {
    let value = u64::deserialize(d)?;
    (MIN..=MAX)
        .contains(&value)
        .then(|| T::from_count(value))
        .flatten()
        .ok_or_else(|| de::Error::custom(format!("must be between {MIN} and {MAX} (got {value})")))
}

/// [`within`] for an optional key (unset stays `None`; use with `#[serde(default)]`).
pub fn within_opt<'de, D: Deserializer<'de>, T: Count, const MIN: u64, const MAX: u64>(
    d: D,
) -> Result<Option<T>, D::Error> {
    within::<D, T, MIN, MAX>(d).map(Some)
}

/// A path that is not empty (for `deserialize_with`; the error names the key's line).
pub fn non_empty_path<'de, D: Deserializer<'de>>(d: D) -> Result<std::path::PathBuf, D::Error> {
    let path = std::path::PathBuf::deserialize(d)?;
    if path.as_os_str().is_empty() {
        return Err(de::Error::custom("must not be empty"));
    }
    Ok(path)
}

/// `text` as an `http://` or `https://` URL, or why not, naming the text as written and,
/// when the scheme is missing (`loki:3100`, which parses as a URL of scheme `loki`), what to
/// write instead.
pub fn http_url(text: &str) -> Result<url::Url, String> {
    let hint = || match text.contains("://") || text.contains(char::is_whitespace) {
        true => String::new(),
        false => format!("; write http://{text}"),
    };
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(url),
        Ok(_) => Err(format!(
            "{text:?} is not an http:// or https:// URL{}",
            hint()
        )),
        Err(error) => Err(format!("{text:?} is not a URL ({error}){}", hint())),
    }
}

/// [`http_url`] for `deserialize_with` (the error names the key's line and column).
pub fn http_url_key<'de, D: Deserializer<'de>>(d: D) -> Result<url::Url, D::Error> {
    http_url(&String::deserialize(d)?).map_err(de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_without_its_scheme_is_named_with_what_to_write() {
        assert_eq!(
            http_url("loki:3100").unwrap_err(),
            r#""loki:3100" is not an http:// or https:// URL; write http://loki:3100"#
        );
        assert_eq!(
            http_url("10.0.0.1:9200").unwrap_err(),
            r#""10.0.0.1:9200" is not a URL (relative URL without a base); write http://10.0.0.1:9200"#
        );
        assert_eq!(
            http_url("ftp://h/").unwrap_err(),
            r#""ftp://h/" is not an http:// or https:// URL"#
        );
        assert!(http_url("https://es:9200/prefix").is_ok());
    }

    fn check_message(value: u64, expected: Option<&str>) {
        let result = check("shutdown_timeout_secs", value, 0..=MAX_SHUTDOWN_SECS);
        match (result, expected) {
            (Ok(()), None) => {}
            (Err(e), Some(text)) => assert_eq!(e.to_string(), text),
            (r, e) => panic!("{value}: got {r:?}, expected {e:?}"),
        }
    }

    #[test]
    fn names_key_and_range() {
        check_message(0, None);
        check_message(3600, None);
        check_message(
            u64::MAX,
            Some("shutdown_timeout_secs must be between 0 and 3600 (got 18446744073709551615)"),
        );
    }
}
