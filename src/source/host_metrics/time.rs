//! `time` (node_exporter's `time.go`, `time_linux.go`): `node_time_seconds` (wall clock),
//! `node_time_zone_offset_seconds{time_zone}` (the local zone's abbreviation, from `TZ`
//! or `/etc/localtime`'s POSIX rule, under `rootfs_path`), and
//! `node_time_clocksource_{available,current}_info{device,clocksource}` from
//! `/sys/devices/system/clocksource/clocksource<N>`.

use chrono::Offset;

use super::{read, Collected, Emitter, Roots};

/// Reads the clock, the zone and the clock sources.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    let now = chrono::Local::now();
    let nanos = now.timestamp_nanos_opt().unwrap_or(0);
    out.gauge("node_time_seconds", &[], nanos as f64 / 1e9);
    let offset = now.offset().fix().local_minus_utc();
    let zone = zone_name(roots, offset);
    out.gauge(
        "node_time_zone_offset_seconds",
        &[("time_zone", &zone)],
        f64::from(offset),
    );
    let base = roots.sys("devices/system/clocksource");
    let mut sources: Vec<_> = std::fs::read_dir(&base)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            Some((
                name.strip_prefix("clocksource")?.parse::<u32>().ok()?,
                e.path(),
            ))
        })
        .collect();
    sources.sort();
    for (device, (_, dir)) in sources.iter().enumerate() {
        let device = device.to_string();
        if let Some(available) = read(&dir.join("available_clocksource")) {
            for source in available.split_ascii_whitespace() {
                out.gauge(
                    "node_time_clocksource_available_info",
                    &[("device", &device), ("clocksource", source)],
                    1.0,
                );
            }
        }
        if let Some(current) = read(&dir.join("current_clocksource")) {
            out.gauge(
                "node_time_clocksource_current_info",
                &[("device", &device), ("clocksource", current.trim())],
                1.0,
            );
        }
    }
    Ok(())
}

/// The zone abbreviation for `offset`: from the POSIX rule in `TZ` or at the end of
/// `/etc/localtime` (TZif v2+), standard or daylight name by which offset applies; `UTC`
/// when neither says.
fn zone_name(roots: &Roots, offset: i32) -> String {
    let rule = match std::env::var("TZ") {
        Ok(tz) if !tz.is_empty() && !tz.starts_with(':') && !tz.contains('/') => Some(tz),
        _ => std::fs::read(roots.rootfs.join("etc/localtime"))
            .ok()
            .and_then(|bytes| {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let trimmed = text.trim_end_matches('\n');
                trimmed.rsplit('\n').next().map(str::to_owned)
            }),
    };
    rule.and_then(|rule| from_rule(&rule, offset))
        .unwrap_or_else(|| "UTC".to_owned())
}

/// `CET-1CEST,M3.5.0,M10.5.0/3` at offset 3600 → `CET`, at 7200 → `CEST`.
fn from_rule(rule: &str, offset: i32) -> Option<String> {
    let (std_name, rest) = name(rule)?;
    let digits = rest
        .find(|c: char| c.is_ascii_alphabetic() || c == '<' || c == ',')
        .unwrap_or(rest.len());
    let std_offset = parse_offset(&rest[..digits])?;
    let rest = &rest[digits..];
    if offset == std_offset || rest.is_empty() || rest.starts_with(',') {
        return Some(std_name);
    }
    let (dst_name, _) = name(rest)?;
    Some(dst_name)
}

/// A zone name: letters, or `<...>` quoted.
fn name(text: &str) -> Option<(String, &str)> {
    if let Some(quoted) = text.strip_prefix('<') {
        let end = quoted.find('>')?;
        return Some((quoted[..end].to_owned(), &quoted[end + 1..]));
    }
    let end = text
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    (end >= 3).then(|| (text[..end].to_owned(), &text[end..]))
}

/// POSIX offsets are west-positive: `-1` is UTC+1 → 3600.
fn parse_offset(text: &str) -> Option<i32> {
    let (sign, digits) = match text.as_bytes().first()? {
        b'-' => (1, &text[1..]),
        b'+' => (-1, &text[1..]),
        _ => (-1, text),
    };
    let mut parts = digits.split(':').map(|p| p.parse::<i32>().ok());
    let hours = parts.next()??;
    let minutes = parts.next().flatten().unwrap_or(0);
    Some(sign * (hours * 3600 + minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{roots, run};
    use super::*;

    #[test]
    fn zone_names_from_posix_rules() {
        assert_eq!(from_rule("UTC0", 0).as_deref(), Some("UTC"));
        assert_eq!(
            from_rule("CET-1CEST,M3.5.0,M10.5.0/3", 3600).as_deref(),
            Some("CET")
        );
        assert_eq!(
            from_rule("CET-1CEST,M3.5.0,M10.5.0/3", 7200).as_deref(),
            Some("CEST")
        );
        assert_eq!(
            from_rule("EST5EDT,M3.2.0,M11.1.0", -18000).as_deref(),
            Some("EST")
        );
        assert_eq!(from_rule("<+0530>-5:30", 19800).as_deref(), Some("+0530"));
        assert_eq!(from_rule("", 0), None);
        assert_eq!(zone_name(&roots("empty"), 0), "UTC");
    }

    #[test]
    fn reads_clock_sources() {
        let lines = run("basic", collect).unwrap();
        assert!(
            lines.contains(
                &r#"node_time_clocksource_current_info{clocksource="tsc",device="0"} gauge 1"#
                    .to_owned()
            ),
            "{lines:#?}"
        );
        assert!(lines.contains(&r#"node_time_clocksource_available_info{clocksource="kvm-clock",device="0"} gauge 1"#.to_owned()), "{lines:#?}");
        assert_eq!(lines.len(), 2 + 3 + 1);
    }
}
