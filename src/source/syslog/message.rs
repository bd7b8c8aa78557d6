//! The parsed syslog message and its parts, shared by both formats: [`Message`], the
//! priority (`<PRI>`), the facility and severity names, and why a message did not parse.
//!
//! Owns: these types only; every text field borrows from the input.

use std::borrow::Cow;
use std::fmt;

use crate::event::Timestamp;

/// Facility names by code (RFC 5424 §6.2.1; 13 = `security`, 14 = `console`, 15 =
/// `solaris-cron` as in Vector and rsyslog).
pub const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// Severity names by code (RFC 5424 §6.2.1).
pub const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// The `<PRI>` of a message: facility and severity codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    /// 0..=23.
    pub facility: u8,
    /// 0..=7.
    pub severity: u8,
}

impl Priority {
    /// The facility's name (`local3`).
    pub fn facility_name(self) -> &'static str {
        FACILITIES[usize::from(self.facility).min(FACILITIES.len() - 1)]
    }

    /// The severity's name (`warning`).
    pub fn severity_name(self) -> &'static str {
        SEVERITIES[usize::from(self.severity).min(SEVERITIES.len() - 1)]
    }
}

/// One structured-data element: `[id name="value" ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdElement<'a> {
    /// The SD-ID (`exampleSDID@32473`).
    pub id: &'a str,
    /// Parameters in message order; values unescaped (`\"`, `\\`, `\]`).
    pub params: Vec<(&'a str, Cow<'a, str>)>,
}

/// A parsed syslog message; every text field borrows from the input.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message<'a> {
    /// `<PRI>`, absent when an RFC 3164 sender left it out.
    pub priority: Option<Priority>,
    /// RFC 5424 version (`1`); `None` for RFC 3164.
    pub version: Option<u8>,
    /// The message's own time, if it had a valid one.
    pub timestamp: Option<Timestamp>,
    /// HOSTNAME.
    pub hostname: Option<&'a str>,
    /// APP-NAME (RFC 5424) or TAG (RFC 3164).
    pub appname: Option<&'a str>,
    /// PROCID, or the `[pid]` of an RFC 3164 tag.
    pub procid: Option<&'a str>,
    /// MSGID (RFC 5424 only).
    pub msgid: Option<&'a str>,
    /// STRUCTURED-DATA elements (RFC 5424 only).
    pub structured_data: Vec<SdElement<'a>>,
    /// MSG, without a leading BOM or trailing line ends.
    pub message: &'a str,
}

/// Why a message could not be parsed; the caller keeps it as raw text with this reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Nothing but whitespace.
    Empty,
    /// `<` not followed by a number 0..=191 and `>`.
    BadPriority,
    /// An RFC 5424 header ended before its structured data.
    Truncated,
    /// An RFC 5424 timestamp that is not RFC 3339.
    BadTimestamp,
    /// Malformed RFC 5424 structured data.
    BadStructuredData,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::Empty => "empty message",
            ParseError::BadPriority => "invalid priority",
            ParseError::Truncated => "truncated rfc5424 header",
            ParseError::BadTimestamp => "invalid rfc5424 timestamp",
            ParseError::BadStructuredData => "invalid rfc5424 structured data",
        })
    }
}
