//! `diskstats`: block device I/O from `/proc/diskstats` (node_exporter's
//! `diskstats_linux.go`), labelled `device`: reads/writes completed and merged, bytes
//! (sectors × 512, the kernel's fixed unit), time (ms → s), `io_now`, I/O time and
//! weighted time, and, when the kernel has them (4.18+, 5.5+), discards and flushes
//! (`node_disk_discarded_sectors_total` stays in sectors, as in node_exporter).
//! `node_disk_info{device,major,minor,path,wwn,model,serial,revision}` takes its strings
//! from udev's database (`udev_data_path`, `b<major>:<minor>`); empty without it.
//! Partitions, ram, loop and fd devices are left out by default (node_exporter's regex).
//!
//! Left out: `node_disk_filesystem_info`, `node_disk_device_mapper_info` and
//! `node_disk_ata_*` (udev properties of some disks only).

use std::collections::HashMap;

use super::{read, Collected, Emitter, Roots};

/// node_exporter 1.5's `--collector.diskstats.device-exclude` default.
pub fn default_device_exclude() -> String {
    r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$".to_owned()
}

const SECTOR: f64 = 512.0;
const MS: f64 = 0.001;

/// (name, counter?, scale) of each field after the device name, in the kernel's order.
const FIELDS: [(&str, bool, f64); 17] = [
    ("node_disk_reads_completed_total", true, 1.0),
    ("node_disk_reads_merged_total", true, 1.0),
    ("node_disk_read_bytes_total", true, SECTOR),
    ("node_disk_read_time_seconds_total", true, MS),
    ("node_disk_writes_completed_total", true, 1.0),
    ("node_disk_writes_merged_total", true, 1.0),
    ("node_disk_written_bytes_total", true, SECTOR),
    ("node_disk_write_time_seconds_total", true, MS),
    ("node_disk_io_now", false, 1.0),
    ("node_disk_io_time_seconds_total", true, MS),
    ("node_disk_io_time_weighted_seconds_total", true, MS),
    ("node_disk_discards_completed_total", true, 1.0),
    ("node_disk_discards_merged_total", true, 1.0),
    ("node_disk_discarded_sectors_total", true, 1.0),
    ("node_disk_discard_time_seconds_total", true, MS),
    ("node_disk_flush_requests_total", true, 1.0),
    ("node_disk_flush_requests_time_seconds_total", true, MS),
];

/// Reads `/proc/diskstats`; malformed lines are skipped.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    let text = read(&roots.proc("diskstats")).ok_or_else(|| failed!("no /proc/diskstats"))?;
    for line in text.lines() {
        let parts: Vec<&str> = line.split_ascii_whitespace().collect();
        if parts.len() < 14 {
            continue;
        }
        let (major, minor, device) = (parts[0], parts[1], parts[2]);
        if roots.disk_exclude.is_match(device) {
            continue;
        }
        let Ok(values) = parts[3..]
            .iter()
            .map(|f| f.parse::<u64>())
            .collect::<Result<Vec<u64>, _>>()
        else {
            continue;
        };
        let udev = udev_properties(roots, major, minor);
        let property = |key: &str| udev.get(key).map(String::as_str).unwrap_or("");
        out.gauge(
            "node_disk_info",
            &[
                ("device", device),
                ("major", major),
                ("minor", minor),
                ("path", property("ID_PATH")),
                ("wwn", property("ID_WWN")),
                ("model", property("ID_MODEL")),
                ("serial", property("ID_SERIAL_SHORT")),
                ("revision", property("ID_REVISION")),
            ],
            1.0,
        );
        for ((name, counter, scale), value) in FIELDS.iter().zip(&values) {
            let value = *value as f64 * scale;
            if *counter {
                out.counter(name, &[("device", device)], value);
            } else {
                out.gauge(name, &[("device", device)], value);
            }
        }
    }
    Ok(())
}

/// `E:KEY=value` lines of udev's `b<major>:<minor>` file.
fn udev_properties(roots: &Roots, major: &str, minor: &str) -> HashMap<String, String> {
    let Some(text) = read(&roots.udev_data.join(format!("b{major}:{minor}"))) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|line| line.strip_prefix("E:")?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn reads_devices_and_leaves_partitions_out() {
        let lines = run("basic", collect).unwrap();
        for expected in [
            r#"node_disk_read_bytes_total{device="vda"} counter 9572271104"#,
            r#"node_disk_io_now{device="vda"} gauge 0"#,
            r#"node_disk_write_time_seconds_total{device="vda"} counter 1812.5520000000001"#,
            r#"node_disk_flush_requests_total{device="vda"} counter 103554"#,
            r#"node_disk_info{device="vda",major="254",minor="0",model="",path="",revision="",serial="",wwn=""} gauge 1"#,
        ] {
            assert!(
                lines.contains(&expected.to_owned()),
                "{expected}: {lines:#?}"
            );
        }
        assert!(!lines
            .iter()
            .any(|l| l.contains("vda1") || l.contains("loop0")));
        // An old kernel's line (14 fields) has no discard/flush series; sda has 17 fields.
        assert!(!lines
            .iter()
            .any(|l| l.contains(r#"node_disk_discards_completed_total{device="sdb"}"#)));
        assert!(lines
            .iter()
            .any(|l| l.contains(r#"node_disk_reads_completed_total{device="sdb"}"#)));
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert_eq!(run("malformed", collect).unwrap(), Vec::<String>::new());
        assert!(run("empty", collect).is_err());
    }
}
