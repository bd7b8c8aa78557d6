//! `netclass`: each interface's `/sys/class/net/<device>/` attributes, as node_exporter's
//! `netclass_linux.go` (1.x) exports them: `node_network_up` (operstate `up`),
//! `node_network_info{address,broadcast,duplex,ifalias,operstate}`, and one gauge or
//! counter per readable numeric attribute (`mtu_bytes`, `speed_bytes` = Mb/s × 125,000 and
//! -125,000 for an unknown speed as node_exporter sends it, `carrier`, …). An attribute the
//! kernel refuses to read (`carrier` of a down interface) is left out.

use super::{read, Collected, Emitter, Roots};

/// (file, metric name, counter): the numeric attributes, node_exporter's names.
const NUMBERS: [(&str, &str, bool); 16] = [
    (
        "addr_assign_type",
        "node_network_address_assign_type",
        false,
    ),
    ("carrier", "node_network_carrier", false),
    (
        "carrier_changes",
        "node_network_carrier_changes_total",
        true,
    ),
    (
        "carrier_up_count",
        "node_network_carrier_up_changes_total",
        true,
    ),
    (
        "carrier_down_count",
        "node_network_carrier_down_changes_total",
        true,
    ),
    ("dev_id", "node_network_device_id", false),
    ("dormant", "node_network_dormant", false),
    ("flags", "node_network_flags", false),
    ("ifindex", "node_network_iface_id", false),
    ("iflink", "node_network_iface_link", false),
    ("link_mode", "node_network_iface_link_mode", false),
    ("mtu", "node_network_mtu_bytes", false),
    ("name_assign_type", "node_network_name_assign_type", false),
    ("netdev_group", "node_network_net_dev_group", false),
    ("type", "node_network_protocol_type", false),
    ("tx_queue_len", "node_network_transmit_queue_length", false),
];

/// A sysfs number: `0x…` in hex, else decimal.
fn number(text: &str) -> Option<i64> {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Reads every interface under `/sys/class/net`.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    let dir = roots.sys("class/net");
    let entries = std::fs::read_dir(&dir).map_err(|e| failed!("{}: {e}", dir.display()))?;
    let mut devices: Vec<String> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    devices.sort();
    for device in &devices {
        let base = dir.join(device);
        let text = |name: &str| read(&base.join(name)).map(|t| t.trim().to_owned());
        let operstate = text("operstate").unwrap_or_default();
        let up = if operstate == "up" { 1.0 } else { 0.0 };
        out.gauge("node_network_up", &[("device", device)], up);
        let (address, broadcast) = (text("address"), text("broadcast"));
        let (duplex, ifalias) = (text("duplex"), text("ifalias"));
        out.gauge(
            "node_network_info",
            &[
                ("address", address.as_deref().unwrap_or("")),
                ("broadcast", broadcast.as_deref().unwrap_or("")),
                ("device", device),
                ("duplex", duplex.as_deref().unwrap_or("")),
                ("ifalias", ifalias.as_deref().unwrap_or("")),
                ("operstate", &operstate),
            ],
            1.0,
        );
        for (file, name, counter) in NUMBERS {
            let Some(value) = text(file).as_deref().and_then(number) else {
                continue;
            };
            match counter {
                true => out.counter(name, &[("device", device)], value as f64),
                false => out.gauge(name, &[("device", device)], value as f64),
            }
        }
        if let Some(speed) = text("speed").as_deref().and_then(number) {
            let bytes = speed as f64 * 1_000_000.0 / 8.0;
            out.gauge("node_network_speed_bytes", &[("device", device)], bytes);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn reads_interfaces_as_node_exporter() {
        let lines = run("net", collect).unwrap();
        for expected in [
            "node_network_up{device=\"eth0\"} gauge 1",
            "node_network_up{device=\"ifb0\"} gauge 0",
            "node_network_info{address=\"02:fc:00:00:00:01\",broadcast=\"ff:ff:ff:ff:ff:ff\",device=\"eth0\",duplex=\"unknown\",ifalias=\"\",operstate=\"up\"} gauge 1",
            "node_network_flags{device=\"eth0\"} gauge 4099",
            "node_network_mtu_bytes{device=\"eth0\"} gauge 1400",
            "node_network_speed_bytes{device=\"eth0\"} gauge -125000",
            "node_network_carrier_changes_total{device=\"eth0\"} counter 2",
        ] {
            assert!(lines.iter().any(|l| l == expected), "{expected}: {lines:#?}");
        }
        // A down interface's carrier cannot be read: left out, not 0.
        assert!(!lines
            .iter()
            .any(|l| l.starts_with("node_network_carrier{device=\"ifb0\"")));
        assert!(run("empty", collect).is_err());
    }
}
