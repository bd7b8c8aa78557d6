//! Syslog message parsing: [`parse`] reads the priority (`<PRI>`) and picks RFC 5424 or
//! RFC 3164 by the version digit after it. The message types are in `message`, times in
//! `time`; this file is the only one that knows both formats.
//!
//! Owns: turning one framed message (text) into borrowed fields. Never: allocates per field
//! beyond the structured-data list and unescaped values, does I/O, or panics on any input
//! (a message that does not parse is an `Err` the caller keeps as raw text).

use crate::event::Timestamp;

use super::message::{Message, ParseError, Priority};
use super::time::Zone;
use super::{rfc3164, rfc5424};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
