//! `udp_queues`: `node_udp_queues{ip="v4"|"v6",queue="rx"|"tx"}`, the bytes waiting in
//! every UDP socket's queues, summed from `/proc/net/udp` and `/proc/net/udp6`
//! (node_exporter's `udp_queues_linux.go`: a missing file is skipped; both missing fail).

use super::{read, Collected, Emitter, Roots};

/// Sums the `tx_queue:rx_queue` column (hex) of each file.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    let mut found = false;
    for (ip, file) in [("v4", "net/udp"), ("v6", "net/udp6")] {
        let Some(text) = read(&roots.proc(file)) else {
            continue;
        };
        found = true;
        let (mut tx, mut rx) = (0u64, 0u64);
        for line in text.lines().skip(1) {
            let queues = line.split_ascii_whitespace().nth(4);
            let Some((t, r)) = queues.and_then(|q| q.split_once(':')) else {
                return Err(failed!("malformed /proc/{file} line {line:?}"));
            };
            let hex = |h: &str| u64::from_str_radix(h, 16);
            let (Ok(t), Ok(r)) = (hex(t), hex(r)) else {
                return Err(failed!("malformed /proc/{file} line {line:?}"));
            };
            tx = tx.saturating_add(t);
            rx = rx.saturating_add(r);
        }
        out.gauge("node_udp_queues", &[("ip", ip), ("queue", "tx")], tx as f64);
        out.gauge("node_udp_queues", &[("ip", ip), ("queue", "rx")], rx as f64);
    }
    check!(found, "no /proc/net/udp or /proc/net/udp6");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn sums_the_queues() {
        assert_eq!(
            run("net", collect).unwrap(),
            [
                "node_udp_queues{ip=\"v4\",queue=\"rx\"} gauge 2560",
                "node_udp_queues{ip=\"v4\",queue=\"tx\"} gauge 16",
                "node_udp_queues{ip=\"v6\",queue=\"rx\"} gauge 0",
                "node_udp_queues{ip=\"v6\",queue=\"tx\"} gauge 0"
            ]
        );
        assert!(run("empty", collect).is_err());
    }
}
