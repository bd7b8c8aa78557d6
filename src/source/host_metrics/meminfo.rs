//! `meminfo`: every line of `/proc/meminfo` as `node_memory_<Key>` (node_exporter's
//! `meminfo_linux.go`): `(x)` in a key becomes `_x` (`Active(anon)` → `Active_anon`), and a
//! value in kB is multiplied by 1024 and named `..._bytes`; unitless ones (`HugePages_*`)
//! keep their name and value. All gauges.

use super::{read, Collected, Emitter, Roots};

/// Reads `/proc/meminfo`; malformed lines are skipped.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    let text = read(&roots.proc("meminfo")).ok_or_else(|| failed!("no /proc/meminfo"))?;
    let mut found = false;
    for line in text.lines() {
        let mut parts = line.split_ascii_whitespace();
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some(key) = key.strip_suffix(':') else {
            continue;
        };
        let Ok(mut value) = value.parse::<f64>() else {
            continue;
        };
        let mut name = String::with_capacity(key.len() + 20);
        name.push_str("node_memory_");
        for ch in key.chars() {
            match ch {
                '(' => name.push('_'),
                ')' => {}
                ch if ch.is_ascii_alphanumeric() || ch == '_' => name.push(ch),
                _ => name.push('_'),
            }
        }
        if parts.next().is_some() {
            value *= 1024.0;
            name.push_str("_bytes");
        }
        found = true;
        out.gauge(&name, &[], value);
    }
    check!(found, "no value in /proc/meminfo");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn names_and_units() {
        let lines = run("basic", collect).unwrap();
        for expected in [
            "node_memory_MemTotal_bytes{} gauge 25325268992",
            "node_memory_Active_anon_bytes{} gauge 1024",
            "node_memory_HugePages_Total{} gauge 0",
        ] {
            assert!(
                lines.contains(&expected.to_owned()),
                "{expected}: {lines:#?}"
            );
        }
        // The malformed fixture has one good line among garbage.
        assert_eq!(
            run("malformed", collect).unwrap(),
            ["node_memory_MemFree_bytes{} gauge 2048"]
        );
        assert!(run("empty", collect).is_err());
    }
}
