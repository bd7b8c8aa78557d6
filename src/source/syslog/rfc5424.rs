//! RFC 5424 (<https://www.rfc-editor.org/rfc/rfc5424>): the header after `<PRI>1 `,
//! structured data with escaped values, and the message with its optional BOM.
//!
//! Owns: the RFC 5424 grammar. Never: allocates for fields (only for the SD list and for SD
//! values that contain escapes), or panics on any input.

use std::borrow::Cow;

use super::message::{Message, ParseError, Priority, SdElement};
use super::time::parse_rfc3339;

/// Parses what follows `<PRI>1 `:
/// `TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP STRUCTURED-DATA [SP MSG]`.
pub fn parse_after_version(
    priority: Option<Priority>,
    header: &str,
) -> Result<Message<'_>, ParseError> {
    let mut rest = header;
    let timestamp = match take_field(&mut rest)? {
        None => None,
        Some(text) => Some(parse_rfc3339(text).ok_or(ParseError::BadTimestamp)?),
    };
    let hostname = take_field(&mut rest)?;
    let appname = take_field(&mut rest)?;
    let procid = take_field(&mut rest)?;
    // MSGID must be followed by the structured data.
    let msgid = take_field(&mut rest)?;
    let (structured_data, after_sd) = parse_structured_data(rest)?;
    let message = match after_sd {
        "" => "",
        text => text
            .strip_prefix(' ')
            .ok_or(ParseError::BadStructuredData)?,
    };
    Ok(Message {
        priority,
        version: Some(1),
        timestamp,
        hostname,
        appname,
        procid,
        msgid,
        structured_data,
        message: message.strip_prefix('\u{feff}').unwrap_or(message),
    })
}

/// The next space-terminated header field, `None` for the nil value `-`.
fn take_field<'a>(rest: &mut &'a str) -> Result<Option<&'a str>, ParseError> {
    let end = memchr::memchr(b' ', rest.as_bytes()).ok_or(ParseError::Truncated)?;
    // The space is ASCII, so both slices are on char boundaries.
    let (field, after) = (&rest[..end], &rest[end + 1..]);
    *rest = after;
    Ok((field != "-").then_some(field))
}

/// `-` or one or more `[SD-ID *(SP PARAM-NAME="value")]`: (elements, the rest).
fn parse_structured_data(text: &str) -> Result<(Vec<SdElement<'_>>, &str), ParseError> {
    if let Some(rest) = text.strip_prefix('-') {
        return Ok((Vec::new(), rest));
    }
    let mut elements = Vec::new();
    let mut rest = text;
    while let Some(inside) = rest.strip_prefix('[') {
        let (element, after) = parse_element(inside)?;
        elements.push(element);
        rest = after;
    }
    if elements.is_empty() {
        return Err(ParseError::BadStructuredData);
    }
    Ok((elements, rest))
}

/// One element after its `[`: (element, text after its `]`).
fn parse_element(text: &str) -> Result<(SdElement<'_>, &str), ParseError> {
    let id_end = text.find([' ', ']']).ok_or(ParseError::BadStructuredData)?;
    let id = &text[..id_end];
    if !is_sd_name(id) {
        return Err(ParseError::BadStructuredData);
    }
    let mut element = SdElement {
        id,
        params: Vec::new(),
    };
    let mut rest = &text[id_end..];
    loop {
        if let Some(after) = rest.strip_prefix(']') {
            return Ok((element, after));
        }
        rest = rest
            .strip_prefix(' ')
            .ok_or(ParseError::BadStructuredData)?;
        let (name, after_name) = rest
            .split_once("=\"")
            .ok_or(ParseError::BadStructuredData)?;
        if !is_sd_name(name) {
            return Err(ParseError::BadStructuredData);
        }
        let (value, after_value) = parse_value(after_name)?;
        element.params.push((name, value));
        rest = after_value;
    }
}

/// A PARAM-VALUE after its opening quote, up to the unescaped closing quote.
/// `\"`, `\\` and `\]` are unescaped; any other backslash is kept (RFC 5424 §6.3.3).
fn parse_value(text: &str) -> Result<(Cow<'_, str>, &str), ParseError> {
    let bytes = text.as_bytes();
    let mut owned: Option<String> = None;
    let mut copied_to = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let value = match owned {
                    Some(mut value) => {
                        value.push_str(&text[copied_to..i]);
                        Cow::Owned(value)
                    }
                    None => Cow::Borrowed(&text[..i]),
                };
                return Ok((value, &text[i + 1..]));
            }
            b'\\' if matches!(bytes.get(i + 1), Some(b'"' | b'\\' | b']')) => {
                let value = owned.get_or_insert_with(String::new);
                value.push_str(&text[copied_to..i]);
                copied_to = i + 1;
                i += 2;
            }
            _ => i += 1,
        }
    }
    Err(ParseError::BadStructuredData)
}

/// SD-NAME: 1 to 32 printable US-ASCII characters except `=`, space, `]` and `"`.
fn is_sd_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"'))
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse;
    use super::super::time::Zone;
    use crate::event::Timestamp;

    /// Renders the parse result compactly: `pri|ts|host|app|proc|msgid|sd|msg` or `error: ...`.
    fn check(input: &str, expected: &str) {
        let got = match parse(input, Timestamp(0), Zone::Fixed(0)) {
            Err(error) => format!("error: {error}"),
            Ok(m) => {
                let sd: Vec<String> = m
                    .structured_data
                    .iter()
                    .map(|e| {
                        let params: Vec<String> =
                            e.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        format!("[{} {}]", e.id, params.join(" "))
                    })
                    .collect();
                format!(
                    "{}|{}|{}|{}|{}|{}|{}|{}",
                    m.priority.map_or("-".into(), |p| format!(
                        "{}.{}",
                        p.facility_name(),
                        p.severity_name()
                    )),
                    m.timestamp.map_or("-".into(), |t| t.to_rfc3339()),
                    m.hostname.unwrap_or("-"),
                    m.appname.unwrap_or("-"),
                    m.procid.unwrap_or("-"),
                    m.msgid.unwrap_or("-"),
                    sd.join(""),
                    m.message
                )
            }
        };
        assert_eq!(got, expected, "{input:?}");
    }

    #[test]
    fn rfc5424_messages() {
        // The RFC's own examples.
        check(
            "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \u{feff}'su root' failed for lonvick on /dev/pts/8",
            "auth.crit|2003-10-11T22:14:15.003Z|mymachine.example.com|su|-|ID47||'su root' failed for lonvick on /dev/pts/8",
        );
        check(
            "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
            "local4.notice|2003-08-24T12:14:15.000003Z|192.0.2.1|myproc|8710|-||%% It's time to make the do-nuts.",
        );
        check(
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] BOMAn application event log entry"#,
            "local4.notice|2003-10-11T22:14:15.003Z|mymachine.example.com|evntslog|-|ID47|[exampleSDID@32473 iut=3 eventSource=Application eventID=1011]|BOMAn application event log entry",
        );
        check(
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3"][examplePriority@32473 class="high"]"#,
            "local4.notice|2003-10-11T22:14:15.003Z|mymachine.example.com|evntslog|-|ID47|[exampleSDID@32473 iut=3][examplePriority@32473 class=high]|",
        );
        // Escapes in SD values, and a backslash before anything else kept.
        check(
            r#"<13>1 - h a p m [x@1 q="a \"quoted\" \\ [br\]" raw="c:\dir"] msg"#,
            r#"user.notice|-|h|a|p|m|[x@1 q=a "quoted" \ [br] raw=c:\dir]|msg"#,
        );
        check(r#"<13>1 - - - - - [id] m"#, "user.notice|-|-|-|-|-|[id ]|m");
        check("<13>1 - - - - - -", "user.notice|-|-|-|-|-||");
        check("<13>1 - - - - - - ", "user.notice|-|-|-|-|-||");
        check(
            "<13>1 2016-12-31T23:59:60.5+00:00 h a 1 - - leap",
            "user.notice|2017-01-01T00:00:00.500Z|h|a|1|-||leap",
        );
        // Errors: truncated header, bad timestamp, broken SD.
        check(
            "<13>1 2003-10-11T22:14:15.003Z host",
            "error: truncated rfc5424 header",
        );
        check("<13>1 - h a p m", "error: truncated rfc5424 header");
        check(
            "<13>1 yesterday h a p m - x",
            "error: invalid rfc5424 timestamp",
        );
        check(
            r#"<13>1 - h a p m [x@1 a="unterminated] m"#,
            "error: invalid rfc5424 structured data",
        );
        check(
            r#"<13>1 - h a p m [x@1 a=unquoted] m"#,
            "error: invalid rfc5424 structured data",
        );
        check(
            r#"<13>1 - h a p m [x@1 a="1"]m"#,
            "error: invalid rfc5424 structured data",
        );
        check(
            r#"<13>1 - h a p m nosd m"#,
            "error: invalid rfc5424 structured data",
        );
        check("<999>1 - h a p m - m", "error: invalid priority");
        check("", "error: empty message");
    }
}
