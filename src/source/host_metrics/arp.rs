//! `arp`: `node_arp_entries{device}`, the ARP table's entries per interface, from
//! `/proc/net/arp` (node_exporter's `arp_linux.go`).

use std::collections::BTreeMap;

use super::{read, Collected, Emitter, Roots};

/// Counts `/proc/net/arp`'s rows (after its header) by their sixth column.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    let text = read(&roots.proc("net/arp")).ok_or_else(|| failed!("no /proc/net/arp"))?;
    let mut entries: BTreeMap<&str, f64> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        check!(fields.len() >= 6, "malformed /proc/net/arp line {line:?}");
        *entries.entry(fields[5]).or_default() += 1.0;
    }
    for (device, n) in entries {
        out.gauge("node_arp_entries", &[("device", device)], n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn counts_entries_per_device() {
        assert_eq!(
            run("net", collect).unwrap(),
            [
                "node_arp_entries{device=\"eth0\"} gauge 2",
                "node_arp_entries{device=\"eth1\"} gauge 1"
            ]
        );
        assert!(run("empty", collect).is_err());
    }
}
