//! `hwmon`: hardware sensors under `/sys/class/hwmon/hwmon*` and their `device/`
//! (node_exporter's `hwmon_linux.go`): temperatures (`node_hwmon_temp_celsius`,
//! `..._max_celsius`, `..._crit_celsius`, …), voltages (`node_hwmon_in_volts`), fans
//! (`node_hwmon_fan_rpm`), power, current, energy, humidity, alarms and faults, all
//! labelled `chip` and `sensor` (`temp1`); `node_hwmon_chip_names{chip,chip_name}` and
//! `node_hwmon_sensor_label{chip,sensor,label}` name them. `chip` is derived as
//! node_exporter does: `<parent dir>_<device dir>` of the resolved `device` link (e.g.
//! `platform_coretemp_0`), else the `name` file, else the hwmon directory's name.
//! Without `/sys/class/hwmon` (most VMs): no samples and `success 0`, as node_exporter.

use std::collections::BTreeMap;
use std::path::Path;

use super::{read, Collected, Emitter, Roots};

const SENSOR_TYPES: [&str; 13] = [
    "vrm",
    "beep_enable",
    "update_interval",
    "in",
    "cpu",
    "fan",
    "pwm",
    "temp",
    "curr",
    "power",
    "energy",
    "humidity",
    "intrusion",
];

/// Lowercase, `[^a-z0-9:_]` → `_`, `_` trimmed (node_exporter's `cleanMetricName`).
fn clean(name: &str) -> String {
    let lower: String = name
        .trim_end_matches('\n')
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    lower.trim_matches('_').to_owned()
}

/// `temp1_max` → (`temp`, `1`, `max`); `temp1_input` → (`temp`, `1`, `input`);
/// `beep_enable` → (`beep_enable`, ``, ``). `None` when the name has no type.
fn explode(filename: &str) -> Option<(&str, &str, &str)> {
    let type_end = filename
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(filename.len());
    // node_exporter's regex: ^([^0-9]+)([0-9]*)?(_(.+))?$ — a type without digits may
    // still carry a property after an underscore, greedy: `beep_enable` is a type.
    let (kind, rest) = filename.split_at(type_end);
    if kind.is_empty() {
        return None;
    }
    let id_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (id, rest) = rest.split_at(id_end);
    let property = match rest {
        "" => "",
        _ => rest.strip_prefix('_').filter(|p| !p.is_empty())?,
    };
    Some((kind, id, property))
}

/// sensor (`temp1`) → property (`input`, `max`, `label`, or `` for a bare value).
type Sensors = BTreeMap<String, BTreeMap<String, String>>;

fn collect_sensor_data(dir: &Path, data: &mut Sensors) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let filename = entry.file_name();
        let Some(filename) = filename.to_str() else {
            continue;
        };
        let Some((kind, id, property)) = explode(filename) else {
            continue;
        };
        if !SENSOR_TYPES.contains(&kind) {
            continue;
        }
        let Some(value) = read_small(&entry.path()) else {
            continue;
        };
        let id: u64 = id.parse().unwrap_or(0);
        data.entry(format!("{kind}{id}"))
            .or_default()
            .insert(property.to_owned(), value);
    }
}

/// At most 128 bytes of a sysfs attribute (node_exporter reads one 128-byte block).
fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut buf = [0u8; 128];
    let n = std::fs::File::open(path).ok()?.read(&mut buf).ok()?;
    Some(
        String::from_utf8_lossy(&buf[..n])
            .trim_end_matches('\n')
            .to_owned(),
    )
}

fn chip_name(dir: &Path) -> Option<String> {
    if let Ok(device) = std::fs::canonicalize(dir.join("device")) {
        let name = device
            .file_name()
            .map(|n| clean(&n.to_string_lossy()))
            .unwrap_or_default();
        let parent = device
            .parent()
            .and_then(Path::file_name)
            .map(|n| clean(&n.to_string_lossy()))
            .unwrap_or_default();
        if !parent.is_empty() && !name.is_empty() {
            return Some(format!("{parent}_{name}"));
        }
        if !name.is_empty() {
            return Some(name);
        }
    }
    if let Some(name) = read(&dir.join("name"))
        .map(|n| clean(&n))
        .filter(|n| !n.is_empty())
    {
        return Some(name);
    }
    let real = std::fs::canonicalize(dir).ok()?;
    Some(clean(&real.file_name()?.to_string_lossy())).filter(|n| !n.is_empty())
}

/// Reads every hwmon chip.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    let base = roots.sys("class/hwmon");
    let entries = std::fs::read_dir(&base).map_err(|e| failed!("{}: {e}", base.display()))?;
    let mut dirs: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        chip(&dir, out);
    }
    Ok(())
}

fn chip(dir: &Path, out: &mut Emitter) {
    let Some(chip) = chip_name(dir) else {
        return;
    };
    let mut data = Sensors::new();
    collect_sensor_data(dir, &mut data);
    if dir.join("device").exists() {
        collect_sensor_data(&dir.join("device"), &mut data);
    }
    if let Some(name) = read(&dir.join("name"))
        .map(|n| clean(&n))
        .filter(|n| !n.is_empty())
    {
        out.gauge(
            "node_hwmon_chip_names",
            &[("chip", &chip), ("chip_name", &name)],
            1.0,
        );
    }
    for (sensor, properties) in &data {
        let kind = explode(sensor).map(|(k, _, _)| k).unwrap_or("");
        let labels = [("chip", chip.as_str()), ("sensor", sensor.as_str())];
        if let Some(label) = properties.get("label") {
            out.gauge(
                "node_hwmon_sensor_label",
                &[("chip", &chip), ("sensor", sensor), ("label", label)],
                1.0,
            );
        }
        let bare = properties.get("").map(String::as_str);
        match kind {
            "beep_enable" => {
                out.gauge(
                    "node_hwmon_beep_enabled",
                    &labels,
                    if bare == Some("1") { 1.0 } else { 0.0 },
                );
                continue;
            }
            "vrm" | "update_interval" => {
                if let Some(value) = bare.and_then(|v| v.parse::<f64>().ok()) {
                    if kind == "vrm" {
                        out.gauge("node_hwmon_voltage_regulator_version", &labels, value);
                    } else {
                        out.gauge("node_hwmon_update_interval_seconds", &labels, value * 0.001);
                    }
                }
                continue;
            }
            _ => {}
        }
        for (element, value) in properties {
            if element == "label" {
                continue;
            }
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            sensor_sample(out, &labels, kind, element, bare.is_some(), value);
        }
    }
}

/// One sensor property, named and scaled as node_exporter does.
fn sensor_sample(
    out: &mut Emitter,
    labels: &[(&str, &str)],
    kind: &str,
    element: &str,
    has_bare: bool,
    value: f64,
) {
    let mut name = format!("node_hwmon_{kind}");
    if element == "input" {
        if has_bare {
            name.push_str("_input");
        }
    } else if !element.is_empty() {
        name.push('_');
        name.push_str(&clean(element));
    }
    let (suffix, scaled, counter) = match (kind, element) {
        (_, "fault" | "alarm") => ("", value, false),
        (_, "beep") => ("_enabled", value, false),
        ("in" | "cpu", _) => ("_volts", value * 0.001, false),
        ("temp", "type") => ("", value, false),
        ("temp", _) => ("_celsius", value * 0.001, false),
        ("curr", _) => ("_amps", value * 0.001, false),
        ("energy", _) => ("_joule_total", value / 1e6, true),
        ("power", "accuracy") => ("", value / 1e6, false),
        ("power", "average_interval" | "average_interval_min" | "average_interval_max") => {
            ("_seconds", value * 0.001, false)
        }
        ("power", _) => ("_watt", value / 1e6, false),
        ("humidity", _) => ("", value / 1e6, false),
        ("fan", "input" | "min" | "max" | "target") => ("_rpm", value, false),
        _ => ("", value, false),
    };
    name.push_str(suffix);
    if counter {
        out.counter(&name, labels, scaled);
    } else {
        out.gauge(&name, labels, scaled);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn splits_sensor_file_names() {
        assert_eq!(explode("temp1_input"), Some(("temp", "1", "input")));
        assert_eq!(
            explode("temp12_crit_alarm"),
            Some(("temp", "12", "crit_alarm"))
        );
        assert_eq!(explode("in0"), Some(("in", "0", "")));
        assert_eq!(explode("beep_enable"), Some(("beep_enable", "", "")));
        assert_eq!(explode("0abc"), None);
        assert_eq!(clean("Core 0\n"), "core_0");
    }

    #[test]
    fn reads_chips_and_sensors() {
        let lines = run("basic", collect).unwrap();
        for expected in [
            r#"node_hwmon_chip_names{chip="coretemp",chip_name="coretemp"} gauge 1"#,
            r#"node_hwmon_temp_celsius{chip="coretemp",sensor="temp1"} gauge 45"#,
            r#"node_hwmon_temp_crit_celsius{chip="coretemp",sensor="temp1"} gauge 100"#,
            r#"node_hwmon_temp_crit_alarm_celsius{chip="coretemp",sensor="temp1"} gauge 0"#,
            r#"node_hwmon_sensor_label{chip="coretemp",label="Package id 0",sensor="temp1"} gauge 1"#,
            r#"node_hwmon_fan_rpm{chip="coretemp",sensor="fan1"} gauge 1200"#,
            r#"node_hwmon_in_volts{chip="coretemp",sensor="in0"} gauge 1.2"#,
        ] {
            assert!(
                lines.contains(&expected.to_owned()),
                "{expected}: {lines:#?}"
            );
        }
        // A malformed value is skipped; the rest of the chip is still read.
        let lines = run("malformed", collect).unwrap();
        assert_eq!(
            lines,
            [r#"node_hwmon_chip_names{chip="bad",chip_name="bad"} gauge 1"#]
        );
        assert!(run("empty", collect).is_err());
    }
}
