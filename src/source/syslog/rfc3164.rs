//! RFC 3164 (<https://www.rfc-editor.org/rfc/rfc3164>), the BSD format as real devices send
//! it: `<PRI>Mmm dd hh:mm:ss host tag[pid]: msg`, with the priority, the host or the whole
//! header sometimes missing, an optional year or fraction, or an RFC 3339 timestamp instead.
//!
//! Owns: the lenient BSD grammar and the missing-year rule. Never: fails (whatever does not
//! fit the header becomes the message), allocates, or panics on any input.

use chrono::Datelike;

use super::message::{Message, Priority};
use super::time::{digits, parse_fraction, parse_rfc3339, parse_time_of_day, valid_date, Zone};
use crate::event::Timestamp;

/// The longest TAG accepted (RFC 3164 says 32; real daemons exceed it).
const MAX_TAG_LEN: usize = 128;

/// Parses what follows the (optional) `<PRI>`. Never fails: without a valid timestamp there
/// is no hostname (RFC 3164 §4.3.2), and text that is not `tag[pid]:` stays in the message.
pub fn parse_after_priority(
    priority: Option<Priority>,
    text: &str,
    now: Timestamp,
    zone: Zone,
) -> Message<'_> {
    let mut message = Message {
        priority,
        ..Message::default()
    };
    let mut rest = text;
    if let Some((timestamp, after)) = parse_timestamp(text, now, zone) {
        message.timestamp = Some(timestamp);
        rest = after.trim_start_matches(' ');
        let (token, after_token) = rest.split_once(' ').unwrap_or((rest, ""));
        // A header without a host goes straight to the tag (`sshd[1]:`, `su:`).
        if !token.is_empty() && !token.ends_with(':') && !token.contains('[') {
            message.hostname = Some(token);
            rest = after_token;
        }
    }
    match parse_tag(rest) {
        Some((tag, procid, after)) => {
            message.appname = Some(tag);
            message.procid = procid;
            message.message = after;
        }
        None => message.message = rest,
    }
    message
}

/// `Mmm dd [yyyy ]hh:mm:ss[.frac]` or an RFC 3339 timestamp at the start of `text`:
/// (time, the text after it).
fn parse_timestamp(text: &str, now: Timestamp, zone: Zone) -> Option<(Timestamp, &str)> {
    let bytes = text.as_bytes();
    if bytes.first().is_some_and(u8::is_ascii_digit) {
        let end = text.find(' ').unwrap_or(text.len());
        return parse_rfc3339(&text[..end]).map(|t| (t, &text[end..]));
    }
    let month = month_number(bytes.get(..3)?)?;
    let mut i = 3;
    if bytes.get(i) != Some(&b' ') {
        return None;
    }
    i += 1;
    if bytes.get(i) == Some(&b' ') {
        i += 1;
    }
    let day_len = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if day_len == 0 || day_len > 2 || bytes.get(i + day_len) != Some(&b' ') {
        return None;
    }
    let day = digits(&bytes[i..], day_len)?;
    i += day_len + 1;
    let mut year = None;
    if bytes.get(i + 4) == Some(&b' ') {
        year = Some(i64::from(digits(&bytes[i..], 4)?));
        i += 5;
    }
    let seconds_of_day = parse_time_of_day(bytes.get(i..)?)?;
    i += 8;
    let (nanos, fraction_len) = parse_fraction(&bytes[i..]);
    i += fraction_len;
    if bytes.get(i).is_some_and(|b| *b != b' ') {
        return None;
    }
    let seconds = match year {
        Some(year) if valid_date(year, month, day) => {
            zone.to_epoch_seconds((year, month, day), seconds_of_day)?
        }
        Some(_) => return None,
        None => resolve_year(month, day, seconds_of_day, now, zone)?,
    };
    let timestamp = Timestamp(seconds.checked_mul(1_000_000_000)?.checked_add(nanos)?);
    Some((timestamp, &text[i..]))
}

/// The year that puts `month day time` closest to `now` without being more than a day in
/// the future (so a December message read in January lands in the previous year).
fn resolve_year(
    month: u32,
    day: u32,
    seconds_of_day: i64,
    now: Timestamp,
    zone: Zone,
) -> Option<i64> {
    let now_seconds = now.0.div_euclid(1_000_000_000);
    let this_year = i64::from(now.to_datetime().year());
    (this_year - 1..=this_year + 1)
        .filter(|year| valid_date(*year, month, day))
        .filter_map(|year| zone.to_epoch_seconds((year, month, day), seconds_of_day))
        .filter(|seconds| *seconds <= now_seconds + 86_400)
        .min_by_key(|seconds| (seconds - now_seconds).abs())
}

/// `Jan`..`Dec` (any case) as 1..=12.
fn month_number(name: &[u8]) -> Option<u32> {
    const MONTHS: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let lower = [
        name[0].to_ascii_lowercase(),
        name[1].to_ascii_lowercase(),
        name[2].to_ascii_lowercase(),
    ];
    MONTHS
        .iter()
        .position(|m| **m == lower)
        .map(|i| i as u32 + 1)
}

/// `tag[pid]: msg` or `tag: msg`: (tag, pid, msg).
fn parse_tag(text: &str) -> Option<(&str, Option<&str>, &str)> {
    let end = text.find(['[', ':', ' '])?;
    if end == 0 || end > MAX_TAG_LEN {
        return None;
    }
    let (tag, mut rest) = text.split_at(end);
    let mut procid = None;
    if let Some(inner) = rest.strip_prefix('[') {
        let close = inner.find(']')?;
        let pid = &inner[..close];
        if pid.is_empty() || pid.contains(' ') {
            return None;
        }
        procid = Some(pid);
        rest = &inner[close + 1..];
    }
    let rest = rest.strip_prefix(':')?;
    Some((tag, procid, rest.strip_prefix(' ').unwrap_or(rest)))
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::*;

    /// 2026-03-15T12:00:00Z.
    const NOW: Timestamp = Timestamp(1_773_576_000_000_000_000);

    fn check_at(now: Timestamp, input: &str, expected: &str) {
        let got = match parse(input, now, Zone::Fixed(0)) {
            Err(error) => format!("error: {error}"),
            Ok(m) => format!(
                "{}|{}|{}|{}|{}|{}",
                m.priority.map_or("-".into(), |p| format!(
                    "{}.{}",
                    p.facility_name(),
                    p.severity_name()
                )),
                m.timestamp.map_or("-".into(), |t| t.to_rfc3339()),
                m.hostname.unwrap_or("-"),
                m.appname.unwrap_or("-"),
                m.procid.unwrap_or("-"),
                m.message
            ),
        };
        assert_eq!(got, expected, "{input:?}");
    }

    fn check(input: &str, expected: &str) {
        check_at(NOW, input, expected);
    }

    #[test]
    fn rfc3164_messages() {
        check(
            "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
            "auth.crit|2025-10-11T22:14:15Z|mymachine|su|-|'su root' failed for lonvick on /dev/pts/8",
        );
        check(
            "<13>Mar  5 01:02:03 host sshd[123]: Accepted publickey\r\n",
            "user.notice|2026-03-05T01:02:03Z|host|sshd|123|Accepted publickey",
        );
        check(
            "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname=",
            "-|2025-06-14T15:16:01Z|combo|sshd(pam_unix)|19939|authentication failure; logname=",
        );
        // No hostname: the token after the time is the tag.
        check(
            "<13>Mar 15 11:00:00 cron[9]: job",
            "user.notice|2026-03-15T11:00:00Z|-|cron|9|job",
        );
        check(
            "<13>Mar 15 11:00:00 su: x",
            "user.notice|2026-03-15T11:00:00Z|-|su|-|x",
        );
        // With a year, a fraction, an RFC 3339 time.
        check(
            "<13>Mar 15 2019 11:00:00 h app: x",
            "user.notice|2019-03-15T11:00:00Z|h|app|-|x",
        );
        check(
            "<13>Mar 15 11:00:00.250 h app: x",
            "user.notice|2026-03-15T11:00:00.250Z|h|app|-|x",
        );
        check(
            "<13>2026-03-15T11:00:00+01:00 h app: x",
            "user.notice|2026-03-15T10:00:00Z|h|app|-|x",
        );
        // Host but no tag; no header at all; no PRI.
        check(
            "<13>Mar 15 11:00:00 h just text",
            "user.notice|2026-03-15T11:00:00Z|h|-|-|just text",
        );
        check("<13>hello world", "user.notice|-|-|-|-|hello world");
        check("plain line", "-|-|-|-|-|plain line");
        check(
            "<13>Mar 15 11:00:00 h",
            "user.notice|2026-03-15T11:00:00Z|h|-|-|",
        );
        // Truncated or broken timestamps stay in the message.
        check("<13>Mar 15 11:0", "user.notice|-|-|-|-|Mar 15 11:0");
        check(
            "<13>Foo 15 11:00:00 h a: b",
            "user.notice|-|-|-|-|Foo 15 11:00:00 h a: b",
        );
        check(
            "<13>Feb 30 11:00:00 h a: b",
            "user.notice|-|-|-|-|Feb 30 11:00:00 h a: b",
        );
        check(
            "<13>Mar 15 11:00:00x h",
            "user.notice|-|-|-|-|Mar 15 11:00:00x h",
        );
        check(
            "<13>Mar 15 11:00:00 h tag[unclosed: x",
            "user.notice|2026-03-15T11:00:00Z|h|-|-|tag[unclosed: x",
        );
        check("<bad>Mar 15 11:00:00 h a: b", "error: invalid priority");
        check(" \r\n", "error: empty message");
    }

    #[test]
    fn missing_year_is_closest_to_now_and_not_in_the_future() {
        // Read on New Year's morning, a December message is from last year.
        let new_year = Timestamp(1_767_229_200_000_000_000); // 2026-01-01T01:00:00Z
        check_at(
            new_year,
            "Dec 31 23:59:59 h a: x",
            "-|2025-12-31T23:59:59Z|h|a|-|x",
        );
        // Read on New Year's Eve, a January message (clock skew of hours) is next year's.
        let eve = Timestamp(1_767_222_000_000_000_000); // 2025-12-31T23:00:00Z
        check_at(
            eve,
            "Jan  1 00:30:00 h a: x",
            "-|2026-01-01T00:30:00Z|h|a|-|x",
        );
        // More than a day ahead: last year.
        check("Mar 17 12:00:00 h a: x", "-|2025-03-17T12:00:00Z|h|a|-|x");
        // Feb 29 resolves to the nearest leap year in range, or not at all.
        check("Feb 29 12:00:00 h a: x", "-|-|-|-|-|Feb 29 12:00:00 h a: x");
    }
}
