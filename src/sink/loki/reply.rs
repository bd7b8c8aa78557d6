//! Reading Loki's 400: which entries of a push it refused. Loki stores the valid entries of
//! a push and answers 400 naming the rest, in one of two forms (Loki 3.x sources):
//!
//! - The distributor (`pkg/distributor/validator.go`, messages in `pkg/validation/validate.go`)
//!   validates each entry and joins the errors with `util.GroupedErrors`: identical messages
//!   are counted, `N errors like: <message>`, joined by `; ` (a lone error has no prefix).
//!   A message names the stream and the entry's time to the second (`timestamp too old: ..`,
//!   `timestamp too new: ..`) or its length (`max entry size '300' bytes exceeded for stream
//!   '..' while adding an entry with length '505' bytes`).
//! - The ingester (`pkg/ingester/stream.go`, `errorForFailedEntries`) lists out-of-order and
//!   too-far-behind entries with their exact time, at most `max_returned_stream_errors` (10 by
//!   default) of them, then `user '..', total ignored: N out of M for stream: {..}`.
//!
//! An entry is named when exactly as many entries of the request fit a message as it
//! counts; otherwise Loki refused that many of the fitting ones without saying which, and
//! the reading says so ([`Unnamed`]) rather than guess. The stream in a message is the label
//! set Loki made of ours: it may carry `service_name`, which Loki adds.
//!
//! Owns: the parsing of refusal texts. Never: decides what happens to the entries.

use super::super::driver::{Refusals, Unnamed};

/// One stream of the push, as sent.
#[derive(Debug)]
pub(super) struct SentStream {
    /// Sorted label pairs.
    pub pairs: Vec<(String, String)>,
}

/// One entry of the push, as sent (indexed like the request's `items`).
#[derive(Debug)]
pub(super) struct SentEntry {
    /// Index into the streams.
    pub stream: usize,
    /// Nanoseconds since the epoch.
    pub timestamp: i64,
    /// Length of the line in bytes.
    pub line_bytes: usize,
}

/// What a 400's text says was refused, or `None` when it is not a refusal Loki words
/// (then the whole request is taken as rejected).
pub(super) fn read_refusals(
    text: &str,
    streams: &[SentStream],
    entries: &[SentEntry],
) -> Option<Refusals> {
    let text = text.trim();
    let mut reading = Reading {
        streams,
        entries,
        taken: vec![false; entries.len()],
        refusals: Refusals::default(),
    };
    if text.starts_with("entry with timestamp ") && text.contains("total ignored: ") {
        reading.ingester(text)?;
    } else {
        // Messages Loki words first: a text we cannot read then covers only what is left.
        let (known, unknown): (Vec<_>, Vec<_>) = grouped(text)
            .into_iter()
            .map(|(n, message)| (n, message, classify(message)))
            .partition(|(_, _, class)| class.is_some());
        if known.is_empty() {
            return None;
        }
        for (n, message, class) in known.into_iter().chain(unknown) {
            reading.distributor(n, message, class);
        }
    }
    Some(reading.refusals)
}

/// Splits `GroupedErrors` text into (count, message).
fn grouped(text: &str) -> Vec<(usize, &str)> {
    let Some(first) = count_prefix(text) else {
        return vec![(1, text)];
    };
    let mut out = Vec::new();
    let (mut n, mut rest) = first;
    loop {
        // The next group starts at a "; " followed by "<digits> errors like: ".
        let mut cut = None;
        let mut from = 0;
        while let Some(at) = rest[from..].find("; ") {
            let at = from + at;
            if let Some(next) = count_prefix(&rest[at + 2..]) {
                cut = Some((at, next));
                break;
            }
            from = at + 2;
        }
        match cut {
            Some((at, next)) => {
                out.push((n, &rest[..at]));
                (n, rest) = next;
            }
            None => {
                out.push((n, rest));
                return out;
            }
        }
    }
}

/// `"<n> errors like: <rest>"` → (n, rest).
fn count_prefix(text: &str) -> Option<(usize, &str)> {
    let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = text[digits..].strip_prefix(" errors like: ")?;
    Some((text[..digits].parse().ok()?, rest))
}

struct Reading<'a> {
    streams: &'a [SentStream],
    entries: &'a [SentEntry],
    taken: Vec<bool>,
    refusals: Refusals,
}

/// What a message says about the entries it refused.
enum Fits {
    /// Entries of the stream at this second (`timestamp too old/new`).
    Second(i64),
    /// Entries of the stream with this line length.
    Length(usize),
    /// Every entry of the stream (a stream-level refusal: each counts once per stream).
    Stream,
    /// Some entries of the stream.
    SomeOf,
}

impl Reading<'_> {
    /// One `GroupedErrors` group, with what [`classify`] made of its message.
    fn distributor(&mut self, n: usize, message: &str, class: Option<Class<'_>>) {
        let Some((kind, labels, fits)) = class else {
            let kind = super::codec::reason_400(message.as_bytes());
            let candidates = self.free(|_| true);
            self.unnamed(candidates, n, kind, message);
            return;
        };
        let stream = labels.and_then(|labels| self.stream(labels));
        let Some(stream) = stream else {
            let candidates = self.free(|_| true);
            self.unnamed(candidates, n, kind, message);
            return;
        };
        let candidates = self.free(|entry| {
            entry.stream == stream
                && match fits {
                    Fits::Second(second) => entry.timestamp.div_euclid(1_000_000_000) == second,
                    Fits::Length(bytes) => entry.line_bytes == bytes,
                    Fits::Stream | Fits::SomeOf => true,
                }
        });
        if matches!(fits, Fits::Stream) || candidates.len() == n {
            self.named(candidates, kind, message);
        } else if candidates.len() > n {
            self.unnamed(candidates, n, kind, message);
        } else {
            // Fewer fit than Loki counted: our reading is off; say so for all that are left.
            let candidates = self.free(|_| true);
            self.unnamed(candidates, n, kind, message);
        }
    }

    /// The ingester's per-stream list: exact times, then the total.
    fn ingester(&mut self, text: &str) -> Option<()> {
        let (list, total) = text.rsplit_once("user '")?;
        let total = total.split_once("total ignored: ")?.1;
        let (n, total) = total.split_once(" out of ")?;
        let n: usize = n.trim().parse().ok()?;
        let labels = total.split_once(" for stream: ")?.1.trim();
        let stream = self.stream(labels);
        let mut named = 0;
        let mut last_kind = "out_of_order";
        for line in list.lines() {
            let Some(rest) = line.strip_prefix("entry with timestamp ") else {
                continue;
            };
            let Some((time, reason)) = rest.split_once(" ignored, reason: '") else {
                continue;
            };
            let reason = reason.trim_end_matches(',').trim_end_matches('\'');
            last_kind = super::codec::reason_400(reason.as_bytes());
            let (Some(stream), Some(ts)) = (stream, parse_go_time(time)) else {
                continue;
            };
            let found = self.free(|e| e.stream == stream && e.timestamp == ts);
            if let Some(&position) = found.first() {
                let words = format!("entry with timestamp {time} ignored, reason: '{reason}'");
                self.named(vec![position], last_kind, &words);
                named += 1;
            }
        }
        if n > named {
            let candidates = match stream {
                Some(stream) => self.free(|e| e.stream == stream),
                None => self.free(|_| true),
            };
            self.unnamed(candidates, n - named, last_kind, text);
        }
        Some(())
    }

    /// Positions not yet accounted for that satisfy `fits`.
    fn free(&self, fits: impl Fn(&SentEntry) -> bool) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| !self.taken[i] && fits(&self.entries[i]))
            .collect()
    }

    /// The stream whose labels Loki's text names (ours, or ours plus `service_name`).
    fn stream(&self, labels: &str) -> Option<usize> {
        let mut named = parse_labels(labels)?;
        named.sort();
        if let Some(found) = self.streams.iter().position(|s| s.pairs == named) {
            return Some(found);
        }
        named.retain(|(name, _)| name != "service_name");
        self.streams.iter().position(|s| s.pairs == named)
    }

    fn named(&mut self, positions: Vec<usize>, kind: &str, message: &str) {
        let reason = format!("{kind}: 400 {}", excerpt(message));
        for position in positions {
            self.taken[position] = true;
            self.refusals.named.push((position, reason.clone()));
        }
    }

    fn unnamed(&mut self, positions: Vec<usize>, n: usize, kind: &str, message: &str) {
        if positions.is_empty() || n == 0 {
            return;
        }
        let m = positions.len();
        for &position in &positions {
            self.taken[position] = true;
        }
        self.refusals.unnamed.push(Unnamed {
            refused: n.min(m),
            reason: format!(
                "{kind}: Loki refused {} of these {m} entries and stored the others, without saying which: 400 {}",
                n.min(m),
                excerpt(message)
            ),
            positions,
        });
    }
}

/// At most 300 characters of a message, control characters as spaces.
fn excerpt(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}

/// (reason, the stream's labels in the text, which of its entries it refused).
type Class<'a> = (&'static str, Option<&'a str>, Fits);

/// What a message Loki words refused; `None` for other text.
fn classify(message: &str) -> Option<Class<'_>> {
    let between = |start: &str, end: &str| -> Option<(&str, &str)> {
        let rest = message.strip_prefix(start)?;
        let at = rest.find(end)?;
        Some((&rest[..at], &rest[at + end.len()..]))
    };
    if let Some((labels, rest)) = between("entry for stream '", "' has timestamp too old: ") {
        let time = rest.split(", oldest acceptable").next()?;
        let second = chrono::DateTime::parse_from_rfc3339(time.trim()).ok()?;
        return Some(("too_old", Some(labels), Fits::Second(second.timestamp())));
    }
    if let Some((labels, rest)) = between("entry for stream '", "' has timestamp too new: ") {
        let second = chrono::DateTime::parse_from_rfc3339(rest.trim()).ok()?;
        return Some(("too_new", Some(labels), Fits::Second(second.timestamp())));
    }
    if let Some((_, rest)) = between("max entry size '", "' bytes exceeded for stream '") {
        let (labels, rest) = rest.split_once("' while adding an entry with length '")?;
        let bytes = rest.strip_suffix("' bytes")?.parse().ok()?;
        return Some(("line_too_long", Some(labels), Fits::Length(bytes)));
    }
    if let Some((labels, _)) = between("error parsing labels '", "' with error: ") {
        return Some(("invalid_labels", Some(labels), Fits::Stream));
    }
    if let Some((labels, _)) = between("entry for stream '", "' has ") {
        // `has N label names; limit M`
        return Some(("invalid_labels", Some(labels), Fits::Stream));
    }
    if let Some((labels, rest)) = between("stream '", "' ") {
        if rest.contains("structured metadata") {
            return Some(("structured_metadata", Some(labels), Fits::SomeOf));
        }
        if rest.starts_with("has label name too long")
            || rest.starts_with("has label value too long")
            || rest.starts_with("has duplicate label name")
        {
            return Some(("invalid_labels", Some(labels), Fits::Stream));
        }
    }
    None
}

/// `{a="x", b="y"}` (Prometheus' `Labels.String()`, Go-quoted values) → pairs.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut pairs = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(pairs);
        }
        let mut name = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            name.push(c);
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    't' => value.push('\t'),
                    'r' => value.push('\r'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        }
        pairs.push((name.trim().to_owned(), value));
    }
}

/// Go's `time.Time.String()`: `2026-11-25 06:41:33.123456789 +0000 UTC` → nanoseconds.
fn parse_go_time(text: &str) -> Option<i64> {
    let mut parts = text.split(' ');
    let (date, clock, offset) = (parts.next()?, parts.next()?, parts.next()?);
    let joined = format!("{date} {clock} {offset}");
    let time = chrono::DateTime::parse_from_str(&joined, "%Y-%m-%d %H:%M:%S%.f %z").ok()?;
    time.timestamp_nanos_opt()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    /// 2026-11-26T05:41:35Z
    const NOW: i64 = 1_795_671_695;

    fn streams() -> Vec<SentStream> {
        let pairs = |v: &str| vec![("job".to_owned(), v.to_owned())];
        vec![
            SentStream { pairs: pairs("a") },
            SentStream { pairs: pairs("b") },
        ]
    }

    /// (stream, timestamp, line bytes) per position.
    fn entries(list: &[(usize, i64, usize)]) -> Vec<SentEntry> {
        list.iter()
            .map(|&(stream, timestamp, line_bytes)| SentEntry {
                stream,
                timestamp,
                line_bytes,
            })
            .collect()
    }

    /// Summary: named (position, reason kind), unnamed (positions, refused, kind).
    type Summary = (Vec<(usize, String)>, Vec<(Vec<usize>, usize, String)>);

    fn check(text: &str, list: &[(usize, i64, usize)], expected: Option<Summary>) {
        let got = read_refusals(text, &streams(), &entries(list)).map(|r| {
            let kind = |reason: &str| reason.split(':').next().unwrap().to_owned();
            let mut named: Vec<(usize, String)> =
                r.named.iter().map(|(p, why)| (*p, kind(why))).collect();
            named.sort();
            let unnamed = r
                .unnamed
                .iter()
                .map(|u| (u.positions.clone(), u.refused, kind(&u.reason)))
                .collect();
            (named, unnamed)
        });
        assert_eq!(got, expected, "{text}");
    }

    fn named(list: &[(usize, &str)]) -> Option<Summary> {
        Some((
            list.iter().map(|(p, k)| (*p, k.to_string())).collect(),
            Vec::new(),
        ))
    }

    #[test]
    fn reads_loki_refusals() {
        let old = "2026-11-25T05:41:33Z";
        let new = "2026-11-27T05:41:33Z";
        let old_ts = (NOW - 86_402) * S;
        let new_ts = (NOW + 86_398) * S;
        let batch = [
            (0, NOW * S, 10),
            (0, old_ts + 5, 10),
            (0, new_ts + 7, 10),
            (0, NOW * S + 1, 505),
            (1, NOW * S, 10),
        ];
        // One error: no count prefix; Loki's service_name on top of our labels.
        check(
            &format!("entry for stream '{{job=\"a\", service_name=\"a\"}}' has timestamp too old: {old}, oldest acceptable timestamp is: 2026-11-26T04:41:35Z\n"),
            &batch,
            named(&[(1, "too_old")]),
        );
        // Three kinds at once, grouped.
        check(
            &format!("1 errors like: entry for stream '{{job=\"a\"}}' has timestamp too new: {new}; 1 errors like: max entry size '300' bytes exceeded for stream '{{job=\"a\"}}' while adding an entry with length '505' bytes; 1 errors like: entry for stream '{{job=\"a\"}}' has timestamp too old: {old}, oldest acceptable timestamp is: 2026-11-26T04:41:35+01:00"),
            &batch,
            named(&[(1, "too_old"), (2, "too_new"), (3, "line_too_long")]),
        );
        // Two entries in the same second, both refused: "2 errors like" names both.
        let same = [(0, old_ts, 1), (0, old_ts + 1, 1), (0, NOW * S, 1)];
        check(
            &format!("2 errors like: entry for stream '{{job=\"a\"}}' has timestamp too old: {old}, oldest acceptable timestamp is: x"),
            &same,
            named(&[(0, "too_old"), (1, "too_old")]),
        );
        // One of two in that second refused (the cut-off falls inside it): unknown which.
        check(
            &format!("entry for stream '{{job=\"a\"}}' has timestamp too old: {old}, oldest acceptable timestamp is: x"),
            &same,
            Some((vec![], vec![(vec![0, 1], 1, "too_old".into())])),
        );
        // A stream we did not send: unknown which of all.
        check(
            &format!("entry for stream '{{job=\"zzz\"}}' has timestamp too old: {old}, oldest acceptable timestamp is: x"),
            &same,
            Some((vec![], vec![(vec![0, 1, 2], 1, "too_old".into())])),
        );
        // Stream-level: every entry of the stream.
        check(
            "stream '{job=\"b\"}' has label value too long: 'bbbb'",
            &batch,
            named(&[(4, "invalid_labels")]),
        );
        // Not Loki's words: the whole request.
        check("unsupported path requested: \"/x\"", &batch, None);
        check("", &batch, None);
        check("\u{0}\u{1}garbage; 3 errors like: ", &batch, None);
        check("12 errors like", &batch, None);
    }

    #[test]
    fn reads_ingester_refusals() {
        let t0 = 1_795_600_000 * S + 123_456_789;
        let batch = [(0, t0, 1), (0, t0 + 1, 1), (0, t0 + 2, 1), (1, t0, 1)];
        let text = "entry with timestamp 2026-11-25 09:46:40.123456789 +0000 UTC ignored, reason: 'entry too far behind, entry timestamp is: 2026-11-25T09:46:40Z, oldest acceptable timestamp is: 2026-11-25T10:00:00Z',\nuser 'fake', total ignored: 1 out of 3 for stream: {job=\"a\"}";
        check(text, &batch, named(&[(0, "too_old")]));
        // More ignored than listed (max_returned_stream_errors): the rest is unknown.
        let text = "entry with timestamp 2026-11-25 09:46:40.123456789 +0000 UTC ignored, reason: 'entry out of order',\nuser 'fake', total ignored: 2 out of 3 for stream: {job=\"a\"}";
        check(
            text,
            &batch,
            Some((
                vec![(0, "out_of_order".into())],
                vec![(vec![1, 2], 1, "out_of_order".into())],
            )),
        );
    }

    #[test]
    fn splits_grouped_errors() {
        assert_eq!(grouped("a; b"), vec![(1, "a; b")]);
        assert_eq!(
            grouped("2 errors like: a; b; 1 errors like: c"),
            vec![(2, "a; b"), (1, "c")]
        );
        assert_eq!(
            parse_labels(r#"{a="x\"y", b="1, 2"}"#),
            Some(vec![
                ("a".into(), "x\"y".into()),
                ("b".into(), "1, 2".into())
            ])
        );
        assert_eq!(parse_labels("{a=x}"), None);
    }
}
