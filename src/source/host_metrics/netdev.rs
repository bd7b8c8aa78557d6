//! `netdev`: per-interface counters from `/proc/net/dev` (node_exporter's
//! `netdev_linux.go` with its default legacy names), labelled `device`:
//! `node_network_{receive,transmit}_{bytes,packets,errs,drop,fifo,compressed}_total`,
//! `node_network_receive_{frame,multicast}_total`,
//! `node_network_transmit_{colls,carrier}_total`, and
//! `node_network_receive_nohandler_total` from sysfs' `statistics/rx_nohandler`
//! (node_exporter reads netlink, whose legacy mapping gives these same sums). Every
//! interface is reported unless `netdev_device_exclude` matches (Debian's package
//! excludes `^lo$`).

use super::{read, Collected, Emitter, Roots};

const RECEIVE: [&str; 8] = [
    "bytes",
    "packets",
    "errs",
    "drop",
    "fifo",
    "frame",
    "compressed",
    "multicast",
];
const TRANSMIT: [&str; 8] = [
    "bytes",
    "packets",
    "errs",
    "drop",
    "fifo",
    "colls",
    "carrier",
    "compressed",
];

/// Reads `/proc/net/dev` (the agent's network namespace, or `proc_path`'s).
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    let text = read(&roots.proc("net/dev")).ok_or_else(|| failed!("no /proc/net/dev"))?;
    for line in text.lines().skip(2) {
        let Some((device, counters)) = line.split_once(':') else {
            continue;
        };
        let device = device.trim();
        if roots
            .netdev_exclude
            .as_ref()
            .is_some_and(|exclude| exclude.is_match(device))
        {
            continue;
        }
        let Ok(values) = counters
            .split_ascii_whitespace()
            .map(|f| f.parse::<u64>())
            .collect::<Result<Vec<u64>, _>>()
        else {
            continue;
        };
        if values.len() < 16 {
            continue;
        }
        let labels = [("device", device)];
        for (name, value) in RECEIVE.iter().zip(&values[..8]) {
            out.counter(
                &format!("node_network_receive_{name}_total"),
                &labels,
                *value as f64,
            );
        }
        for (name, value) in TRANSMIT.iter().zip(&values[8..16]) {
            out.counter(
                &format!("node_network_transmit_{name}_total"),
                &labels,
                *value as f64,
            );
        }
        let nohandler = roots
            .sys("class/net")
            .join(device)
            .join("statistics/rx_nohandler");
        if let Some(value) = read(&nohandler).and_then(|t| t.trim().parse::<u64>().ok()) {
            out.counter(
                "node_network_receive_nohandler_total",
                &labels,
                value as f64,
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn reads_interfaces() {
        let lines = run("basic", collect).unwrap();
        for expected in [
            r#"node_network_receive_bytes_total{device="eth0"} counter 114651848"#,
            r#"node_network_transmit_carrier_total{device="eth0"} counter 7"#,
            r#"node_network_receive_nohandler_total{device="eth0"} counter 3"#,
            r#"node_network_receive_multicast_total{device="lo"} counter 0"#,
        ] {
            assert!(
                lines.contains(&expected.to_owned()),
                "{expected}: {lines:#?}"
            );
        }
        assert_eq!(lines.len(), 16 * 2 + 1);
        assert_eq!(run("malformed", collect).unwrap(), Vec::<String>::new());
    }
}
