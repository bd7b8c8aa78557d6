//! Which entries the source keeps: units, field matches and priority, with journalctl's
//! meaning of each (`journalctl -u`, `FIELD=value` arguments, `-p`).
//!
//! - `include_units`: an entry is kept when it belongs to one of the units: its
//!   `_SYSTEMD_UNIT` is the unit, or it is about the unit (`UNIT=` from PID 1,
//!   `OBJECT_SYSTEMD_UNIT=` or `COREDUMP_UNIT=` from UID 0), as `journalctl -u` matches.
//!   A name without a unit suffix gets `.service`, as journalctl does.
//! - `include_matches`: values of one field are alternatives, different fields must all
//!   match (journalctl's `A=1 A=2 B=3`).
//! - `exclude_units` / `exclude_matches`: an entry any of them matches is dropped.
//! - `priority`: `PRIORITY` at most this level; entries without `PRIORITY` are dropped,
//!   as `journalctl -p` does.
//!
//! Owns: the decision keep/drop for one entry's fields. Never: reads files.

use std::collections::BTreeMap;

use super::file::Fields;
use crate::source::syslog::message::SEVERITIES;

/// Unit suffixes systemd knows (`systemd.unit(5)`): a name ending in one is taken as is.
const UNIT_SUFFIXES: &[&str] = &[
    ".service",
    ".socket",
    ".device",
    ".mount",
    ".automount",
    ".swap",
    ".target",
    ".path",
    ".timer",
    ".slice",
    ".scope",
];

/// A field name and the values it may have.
type FieldMatch = (Vec<u8>, Vec<Vec<u8>>);

/// A built, validated filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    include_units: Vec<Vec<u8>>,
    exclude_units: Vec<Vec<u8>>,
    include_matches: Vec<FieldMatch>,
    exclude_matches: Vec<FieldMatch>,
    max_priority: Option<u8>,
}

impl Filter {
    /// Builds a filter; errors name the offending key.
    pub fn new(
        include_units: &[String],
        exclude_units: &[String],
        include_matches: &BTreeMap<String, Vec<String>>,
        exclude_matches: &BTreeMap<String, Vec<String>>,
        priority: Option<&str>,
    ) -> anyhow::Result<Filter> {
        Ok(Filter {
            include_units: units("include_units", include_units)?,
            exclude_units: units("exclude_units", exclude_units)?,
            include_matches: matches("include_matches", include_matches)?,
            exclude_matches: matches("exclude_matches", exclude_matches)?,
            max_priority: priority.map(parse_priority).transpose()?,
        })
    }

    /// True when the entry with these fields is kept.
    pub fn keeps(&self, fields: &Fields) -> bool {
        if let Some(max) = self.max_priority {
            let level = fields.get("PRIORITY").and_then(|value| match value {
                [digit @ b'0'..=b'7'] => Some(digit - b'0'),
                _ => None,
            });
            if level.is_none_or(|level| level > max) {
                return false;
            }
        }
        if !self.include_units.is_empty() && !in_units(&self.include_units, fields) {
            return false;
        }
        if in_units(&self.exclude_units, fields) {
            return false;
        }
        let all_match = self
            .include_matches
            .iter()
            .all(|(name, values)| field_in(fields, name, values));
        if !all_match {
            return false;
        }
        !self
            .exclude_matches
            .iter()
            .any(|(name, values)| field_in(fields, name, values))
    }
}

/// True when some field `name` of the entry has one of `values`.
fn field_in(fields: &Fields, name: &[u8], values: &[Vec<u8>]) -> bool {
    fields
        .iter()
        .any(|(field, value)| field == name && values.iter().any(|wanted| wanted == value))
}

/// `journalctl -u`'s match for each unit: `_SYSTEMD_UNIT=u`, or `UNIT=u` with `_PID=1`,
/// or `OBJECT_SYSTEMD_UNIT=u` / `COREDUMP_UNIT=u` with `_UID=0`.
fn in_units(units: &[Vec<u8>], fields: &Fields) -> bool {
    if units.is_empty() {
        return false;
    }
    let value = |name: &str| fields.get(name);
    let is = |name: &str| value(name).is_some_and(|unit| units.iter().any(|u| u == unit));
    if is("_SYSTEMD_UNIT") {
        return true;
    }
    let from_pid1 = value("_PID") == Some(b"1");
    let from_root = value("_UID") == Some(b"0");
    (from_pid1 && is("UNIT")) || (from_root && (is("OBJECT_SYSTEMD_UNIT") || is("COREDUMP_UNIT")))
}

fn units(key: &str, names: &[String]) -> anyhow::Result<Vec<Vec<u8>>> {
    names
        .iter()
        .map(|name| {
            anyhow::ensure!(
                !name.is_empty() && !name.contains(['/', '=', '*', '?', '[']),
                "{key}: {name:?} is not a unit name (globs are not supported)"
            );
            if UNIT_SUFFIXES.iter().any(|suffix| name.ends_with(suffix)) {
                Ok(name.clone().into_bytes())
            } else {
                Ok(format!("{name}.service").into_bytes())
            }
        })
        .collect()
}

fn matches(key: &str, matches: &BTreeMap<String, Vec<String>>) -> anyhow::Result<Vec<FieldMatch>> {
    matches
        .iter()
        .map(|(name, values)| {
            // journald's rule for field names: upper-case letters, digits and `_`, not
            // starting with a digit.
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            anyhow::ensure!(
                valid,
                "{key}: {name:?} is not a journal field name (A-Z, 0-9 and _, e.g. _SYSTEMD_UNIT)"
            );
            anyhow::ensure!(!values.is_empty(), "{key}: {name} has no values");
            let values = values.iter().map(|v| v.clone().into_bytes()).collect();
            Ok((name.clone().into_bytes(), values))
        })
        .collect()
}

/// A level name (`warning`, also `warn`, `error`, `panic`) or number `0`-`7`.
fn parse_priority(text: &str) -> anyhow::Result<u8> {
    let level = match text {
        "warn" => Some(4),
        "error" => Some(3),
        "panic" => Some(0),
        _ => SEVERITIES
            .iter()
            .position(|name| *name == text)
            .map(|level| level as u8)
            .or_else(|| text.parse::<u8>().ok().filter(|level| *level <= 7)),
    };
    level.ok_or_else(|| {
        anyhow::anyhow!(
            "priority: {text:?} is not a level (0-7 or emerg, alert, crit, err, warning, notice, info, debug)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[&str]) -> Fields {
        let mut fields = Fields::default();
        for pair in pairs {
            fields.push_for_test(pair.as_bytes());
        }
        fields
    }

    fn check(filter: &Filter, pairs: &[&str], kept: bool) {
        assert_eq!(filter.keeps(&entry(pairs)), kept, "{pairs:?}");
    }

    fn map(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn filters_mean_what_journalctl_means() {
        let none = BTreeMap::new();
        let units = Filter::new(&["nginx".into()], &[], &none, &none, None).unwrap();
        check(&units, &["_SYSTEMD_UNIT=nginx.service"], true);
        check(&units, &["_SYSTEMD_UNIT=nginx.socket"], false);
        check(&units, &["UNIT=nginx.service", "_PID=1"], true);
        check(&units, &["UNIT=nginx.service", "_PID=7"], false);
        check(
            &units,
            &["OBJECT_SYSTEMD_UNIT=nginx.service", "_UID=0"],
            true,
        );
        check(&units, &[], false);

        let matches = map(&[("A", &["1", "2"]), ("B", &["3"])]);
        let both = Filter::new(&[], &[], &matches, &none, None).unwrap();
        check(&both, &["A=2", "B=3"], true);
        check(&both, &["A=1"], false);
        check(&both, &["A=4", "B=3"], false);

        let excluded =
            Filter::new(&[], &["cron".into()], &none, &map(&[("X", &["y"])]), None).unwrap();
        check(&excluded, &["_SYSTEMD_UNIT=cron.service"], false);
        check(&excluded, &["X=y"], false);
        check(&excluded, &["X=z", "_SYSTEMD_UNIT=ssh.service"], true);

        let warnings = Filter::new(&[], &[], &none, &none, Some("warning")).unwrap();
        check(&warnings, &["PRIORITY=4"], true);
        check(&warnings, &["PRIORITY=5"], false);
        check(&warnings, &["MESSAGE=no priority"], false);
        assert_eq!(parse_priority("3").unwrap(), 3);
        assert!(parse_priority("8").is_err());
        assert!(Filter::new(&["a*".into()], &[], &none, &none, None).is_err());
        assert!(Filter::new(&[], &[], &map(&[("lower", &["x"])]), &none, None).is_err());
        assert!(Filter::new(&[], &[], &map(&[("EMPTY", &[])]), &none, None).is_err());
    }
}
