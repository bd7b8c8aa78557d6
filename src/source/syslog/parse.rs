//! Syslog message parsing shared by both formats: the parsed [`Message`], the priority
//! (`<PRI>`), facility and severity names, time zones and RFC 3339 timestamps; [`parse`]
//! picks RFC 5424 or RFC 3164 by the version digit after the priority.
//!
//! Owns: turning one framed message (text) into borrowed fields. Never: allocates per field
//! beyond the structured-data list and unescaped values, does I/O, or panics on any input
//! (a message that does not parse is an `Err` the caller keeps as raw text).

use std::borrow::Cow;
use std::fmt;

use crate::event::Timestamp;

use super::{rfc3164, rfc5424};

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

/// How RFC 3164 timestamps (which carry no zone) are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    /// The agent host's local time zone.
    #[default]
    Local,
    /// A fixed offset from UTC in seconds (`utc` is 0).
    Fixed(i32),
}

impl Zone {
    /// `local`, `utc`, or an offset `+hh:mm` / `-hh:mm`.
    pub fn parse(text: &str) -> Option<Zone> {
        match text {
            "local" => return Some(Zone::Local),
            "utc" | "UTC" | "Z" => return Some(Zone::Fixed(0)),
            _ => {}
        }
        parse_offset(text.as_bytes()).map(Zone::Fixed)
    }

    /// Seconds since the epoch of a wall-clock time in this zone.
    pub(crate) fn to_epoch_seconds(
        self,
        date: (i64, u32, u32),
        seconds_of_day: i64,
    ) -> Option<i64> {
        let local = days_from_civil(date.0, date.1, date.2) * 86_400 + seconds_of_day;
        match self {
            Zone::Fixed(offset) => Some(local - i64::from(offset)),
            Zone::Local => {
                use chrono::TimeZone;
                let naive = chrono::DateTime::from_timestamp(local, 0)?.naive_utc();
                let resolved = chrono::Local.from_local_datetime(&naive).earliest()?;
                Some(resolved.timestamp())
            }
        }
    }
}

/// Parses one message. RFC 5424 when a `<PRI>` is followed by the version `1` and a space,
/// RFC 3164 otherwise (whose year is resolved against `now`, and wall time read in `zone`).
pub fn parse(line: &str, now: Timestamp, zone: Zone) -> Result<Message<'_>, ParseError> {
    let line = line.trim_end_matches(['\n', '\r', '\0']);
    if line.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let (priority, rest) = parse_priority(line)?;
    if let Some(header) = rest.strip_prefix("1 ").filter(|_| priority.is_some()) {
        return rfc5424::parse_after_version(priority, header);
    }
    Ok(rfc3164::parse_after_priority(priority, rest, now, zone))
}

/// `<PRI>` at the start of `line`: `Ok(None, line)` when there is none.
fn parse_priority(line: &str) -> Result<(Option<Priority>, &str), ParseError> {
    let Some(rest) = line.strip_prefix('<') else {
        return Ok((None, line));
    };
    let end = rest.find('>').ok_or(ParseError::BadPriority)?;
    let digits = &rest[..end];
    if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadPriority);
    }
    let value: u16 = digits.parse().map_err(|_| ParseError::BadPriority)?;
    if value > 191 {
        return Err(ParseError::BadPriority);
    }
    let priority = Priority {
        facility: (value / 8) as u8,
        severity: (value % 8) as u8,
    };
    Ok((Some(priority), &rest[end + 1..]))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// True when `day` exists in `month` of `year`.
pub(crate) fn valid_date(year: i64, month: u32, day: u32) -> bool {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    day >= 1 && day <= days
}

/// `n` ASCII digits at the start of `bytes` as a number.
pub(crate) fn digits(bytes: &[u8], n: usize) -> Option<u32> {
    let slice = bytes.get(..n)?;
    slice.iter().try_fold(0u32, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// `hh:mm:ss` at the start of `bytes` as seconds of the day (second 60, a leap second,
/// is accepted and lands on the next second as Unix time does).
pub(crate) fn parse_time_of_day(bytes: &[u8]) -> Option<i64> {
    if bytes.get(2) != Some(&b':') || bytes.get(5) != Some(&b':') {
        return None;
    }
    let (hour, minute, second) = (
        digits(bytes, 2)?,
        digits(&bytes[3..], 2)?,
        digits(&bytes[6..], 2)?,
    );
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(i64::from(hour * 3600 + minute * 60 + second))
}

/// `.frac` (1 to 9 digits kept, more ignored) at the start of `bytes`: (nanoseconds, length).
pub(crate) fn parse_fraction(bytes: &[u8]) -> (i64, usize) {
    if bytes.first() != Some(&b'.') {
        return (0, 0);
    }
    let n_digits = bytes[1..].iter().take_while(|b| b.is_ascii_digit()).count();
    if n_digits == 0 {
        return (0, 0);
    }
    let mut nanos: i64 = 0;
    for (i, b) in bytes[1..=n_digits].iter().enumerate().take(9) {
        nanos += i64::from(b - b'0') * 10_i64.pow(8 - i as u32);
    }
    (nanos, 1 + n_digits)
}

/// `Z`, `+hh:mm` or `-hh:mm` (the whole of `bytes`) as seconds east of UTC.
fn parse_offset(bytes: &[u8]) -> Option<i32> {
    match bytes {
        [b'Z' | b'z'] => Some(0),
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
            let (hours, minutes) = (digits(rest, 2)?, digits(&rest[3..], 2)?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = (hours * 3600 + minutes * 60) as i32;
            Some(if *sign == b'-' { -seconds } else { seconds })
        }
        _ => None,
    }
}

/// An RFC 3339 timestamp (`2003-10-11T22:14:15.003-07:00`), the whole of `text`.
pub(crate) fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || !matches!(bytes[10], b'T' | b't')
    {
        return None;
    }
    let (year, month, day) = (
        digits(bytes, 4)?,
        digits(&bytes[5..], 2)?,
        digits(&bytes[8..], 2)?,
    );
    if !valid_date(i64::from(year), month, day) {
        return None;
    }
    let seconds_of_day = parse_time_of_day(&bytes[11..])?;
    let (nanos, fraction_len) = parse_fraction(&bytes[19..]);
    let offset = parse_offset(&bytes[19 + fraction_len..])?;
    let seconds =
        days_from_civil(i64::from(year), month, day) * 86_400 + seconds_of_day - i64::from(offset);
    seconds
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nanos))
        .map(Timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Option<&str>) {
        let parsed = parse_rfc3339(input).map(|t| t.to_rfc3339());
        assert_eq!(parsed.as_deref(), expected, "{input:?}");
    }

    #[test]
    fn rfc3339_timestamps() {
        check("1985-04-12T23:20:50.52Z", Some("1985-04-12T23:20:50.520Z"));
        check(
            "2003-10-11T22:14:15.003-07:00",
            Some("2003-10-12T05:14:15.003Z"),
        );
        check(
            "2003-08-24T05:14:15.000003+02:00",
            Some("2003-08-24T03:14:15.000003Z"),
        );
        check("2016-12-31T23:59:60Z", Some("2017-01-01T00:00:00Z"));
        check("2024-02-29T00:00:00z", Some("2024-02-29T00:00:00Z"));
        check("2023-02-29T00:00:00Z", None);
        check("2003-10-11T22:14:15", None);
        check("2003-10-11 22:14:15Z", None);
        check("2003-13-11T22:14:15Z", None);
        check("2003-10-11T24:14:15Z", None);
        check("2003-10-11T22:14:15.Z", None);
        check("2003-10-11T22:14:15+7:00", None);
        check(
            "2003-10-11T22:14:15.1234567891234Z",
            Some("2003-10-11T22:14:15.123456789Z"),
        );
    }

    #[test]
    fn priorities() {
        for (input, expected) in [
            ("<0>x", Ok(Some((0, 0)))),
            ("<191>x", Ok(Some((23, 7)))),
            ("<158>x", Ok(Some((19, 6)))),
            ("x", Ok(None)),
            ("<192>x", Err(ParseError::BadPriority)),
            ("<>x", Err(ParseError::BadPriority)),
            ("<1a>x", Err(ParseError::BadPriority)),
            ("<0001>x", Err(ParseError::BadPriority)),
            ("<13", Err(ParseError::BadPriority)),
        ] {
            let got = parse_priority(input).map(|(p, _)| p.map(|p| (p.facility, p.severity)));
            assert_eq!(got, expected, "{input:?}");
        }
        let pri = Priority {
            facility: 19,
            severity: 4,
        };
        assert_eq!(
            (pri.facility_name(), pri.severity_name()),
            ("local3", "warning")
        );
    }

    #[test]
    fn zones() {
        assert_eq!(Zone::parse("utc"), Some(Zone::Fixed(0)));
        assert_eq!(Zone::parse("+02:00"), Some(Zone::Fixed(7200)));
        assert_eq!(Zone::parse("-05:30"), Some(Zone::Fixed(-19800)));
        assert_eq!(Zone::parse("local"), Some(Zone::Local));
        assert_eq!(Zone::parse("Europe/Paris"), None);
    }
}
