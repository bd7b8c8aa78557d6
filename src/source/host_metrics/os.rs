//! `os`: `node_os_info{…} 1` and `node_os_version{id,id_like,name}` (the `VERSION_ID`'s
//! leading `major.minor` as a number, 0 without one) from `os-release`:
//! `<rootfs_path>/etc/os-release`, else `<rootfs_path>/usr/lib/os-release`
//! (node_exporter's `os_release.go`).

use std::collections::HashMap;

use super::{read, Collected, Emitter, Roots};

/// The keys `node_os_info` carries, and their label names.
const INFO: [(&str, &str); 12] = [
    ("BUILD_ID", "build_id"),
    ("ID", "id"),
    ("ID_LIKE", "id_like"),
    ("IMAGE_ID", "image_id"),
    ("IMAGE_VERSION", "image_version"),
    ("NAME", "name"),
    ("PRETTY_NAME", "pretty_name"),
    ("VARIANT", "variant"),
    ("VARIANT_ID", "variant_id"),
    ("VERSION", "version"),
    ("VERSION_CODENAME", "version_codename"),
    ("VERSION_ID", "version_id"),
];

/// Reads the first os-release file there is.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    let text = ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|rel| read(&roots.rootfs.join(rel)))
        .ok_or_else(|| failed!("no os-release file"))?;
    let values = parse(&text);
    let get = |key: &str| values.get(key).map_or("", String::as_str);
    let labels: Vec<(&str, &str)> = INFO.iter().map(|(key, label)| (*label, get(key))).collect();
    out.gauge("node_os_info", &labels, 1.0);
    out.gauge(
        "node_os_version",
        &[
            ("id", get("ID")),
            ("id_like", get("ID_LIKE")),
            ("name", get("NAME")),
        ],
        major_minor(get("VERSION_ID")),
    );
    Ok(())
}

/// `KEY=value` lines, values unquoted as a shell would (`"…"` with `\"`, `\\`, `\$`, `` \` ``
/// escapes, or `'…'`).
fn parse(text: &str) -> HashMap<&str, String> {
    let mut values = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = if let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match (c, chars.clone().next()) {
                    ('\\', Some(next @ ('"' | '\\' | '$' | '`'))) => {
                        out.push(next);
                        chars.next();
                    }
                    _ => out.push(c),
                }
            }
            out
        } else if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            inner.to_owned()
        } else {
            value.to_owned()
        };
        values.insert(key.trim(), value);
    }
    values
}

/// The leading `^[0-9]+\.?[0-9]*` of a version as a number; 0 without one.
fn major_minor(version: &str) -> f64 {
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let major = digits(version);
    if major == 0 {
        return 0.0;
    }
    let mut end = major;
    if version[end..].starts_with('.') {
        end += 1 + digits(&version[end + 1..]);
    }
    version[..end].trim_end_matches('.').parse().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_os_release_as_a_shell_would() {
        let text = "# comment\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\nPRETTY_NAME='A \"b\"'\nVARIANT=\"x \\\"y\\\" \\$z\"\n";
        let values = parse(text);
        assert_eq!(values["NAME"], "Debian GNU/Linux");
        assert_eq!(values["ID"], "debian");
        assert_eq!(values["PRETTY_NAME"], "A \"b\"");
        assert_eq!(values["VARIANT"], "x \"y\" $z");
        assert_eq!(major_minor("12"), 12.0);
        assert_eq!(major_minor("22.04.3"), 22.04);
        assert_eq!(major_minor("3."), 3.0);
        assert_eq!(major_minor("rolling"), 0.0);
        assert_eq!(major_minor(""), 0.0);
    }
}
