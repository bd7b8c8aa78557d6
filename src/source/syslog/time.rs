//! Syslog times: the zone RFC 3164 wall-clock times are read in, RFC 3339 timestamps
//! (RFC 5424), and the calendar and digit helpers both formats use.
//!
//! Owns: text to [`Timestamp`], never panicking and rejecting impossible dates.

use crate::event::{days_from_civil, Timestamp};

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
    fn zones() {
        assert_eq!(Zone::parse("utc"), Some(Zone::Fixed(0)));
        assert_eq!(Zone::parse("+02:00"), Some(Zone::Fixed(7200)));
        assert_eq!(Zone::parse("-05:30"), Some(Zone::Fixed(-19800)));
        assert_eq!(Zone::parse("local"), Some(Zone::Local));
        assert_eq!(Zone::parse("Europe/Paris"), None);
    }
}
