//! `thermal_zone`: `node_thermal_zone_temp{zone,type}` (°C, from millidegrees) for each
//! `/sys/class/thermal/thermal_zone<N>` (`zone` is `<N>`), and
//! `node_cooling_device_{cur,max}_state{name,type}` for each `cooling_device<N>`
//! (node_exporter's `thermal_zone_linux.go`). A zone whose `temp` cannot be read (some
//! report `-ENODATA` while their sensor sleeps) is skipped, as procfs does.

use super::{read, Collected, Emitter, Roots};

fn numbered(dir: &std::path::Path, prefix: &str) -> Vec<(String, std::path::PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<_> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let number = name.strip_prefix(prefix)?.to_owned();
            Some((number, entry.path()))
        })
        .collect();
    found.sort();
    found
}

fn value(path: &std::path::Path) -> Option<i64> {
    read(path)?.trim().parse().ok()
}

/// Reads thermal zones and cooling devices.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    let base = roots.sys("class/thermal");
    check!(base.is_dir(), "no {}", base.display());
    for (zone, dir) in numbered(&base, "thermal_zone") {
        let (Some(kind), Some(temp)) = (read(&dir.join("type")), value(&dir.join("temp"))) else {
            continue;
        };
        out.gauge(
            "node_thermal_zone_temp",
            &[("zone", &zone), ("type", kind.trim())],
            temp as f64 / 1000.0,
        );
    }
    for (name, dir) in numbered(&base, "cooling_device") {
        let Some(kind) = read(&dir.join("type")) else {
            continue;
        };
        let labels = [("name", name.as_str()), ("type", kind.trim())];
        let (Some(current), Some(max)) =
            (value(&dir.join("cur_state")), value(&dir.join("max_state")))
        else {
            continue;
        };
        out.gauge("node_cooling_device_cur_state", &labels, current as f64);
        out.gauge("node_cooling_device_max_state", &labels, max as f64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn reads_zones_and_cooling_devices() {
        assert_eq!(
            run("basic", collect).unwrap(),
            [
                r#"node_cooling_device_cur_state{name="0",type="Processor"} gauge 0"#,
                r#"node_cooling_device_max_state{name="0",type="Processor"} gauge 3"#,
                r#"node_thermal_zone_temp{type="cpu-thermal",zone="0"} gauge 48.312"#,
            ]
        );
        assert_eq!(run("malformed", collect).unwrap(), Vec::<String>::new());
        assert!(run("empty", collect).is_err());
    }
}
