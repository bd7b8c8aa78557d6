//! `softnet`: `node_softnet_processed_total`, `node_softnet_dropped_total` and
//! `node_softnet_times_squeezed_total` per CPU from `/proc/net/softnet_stat`
//! (node_exporter 1.5's `softnet_linux.go`: one row per CPU, hexadecimal columns, the
//! first three are processed, dropped and time squeezed).
//!
//! The `cpu` label is the row's CPU number: the 13th column where the kernel writes it
//! (5.10 and later; a row per online CPU, so it skips offline ones), else the row's index.

use super::{hex_row, read, Collected, Emitter, Roots};

/// Reads `/proc/net/softnet_stat`.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    let text = read(&roots.proc("net/softnet_stat")).ok_or_else(|| failed!("no softnet_stat"))?;
    let mut rows = Vec::new();
    for (index, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let columns = hex_row(line, "softnet_stat")?;
        check!(columns.len() >= 3, "malformed softnet_stat line: {line:?}");
        let cpu = columns.get(12).copied().unwrap_or(index as u64);
        rows.push((cpu.to_string(), columns[0], columns[1], columns[2]));
    }
    for (cpu, processed, dropped, squeezed) in &rows {
        let labels = [("cpu", cpu.as_str())];
        out.counter("node_softnet_processed_total", &labels, *processed as f64);
        out.counter("node_softnet_dropped_total", &labels, *dropped as f64);
        out.counter(
            "node_softnet_times_squeezed_total",
            &labels,
            *squeezed as f64,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn reads_each_cpus_row() {
        assert_eq!(
            run("basic", collect).unwrap(),
            [
                "node_softnet_dropped_total{cpu=\"0\"} counter 1",
                "node_softnet_dropped_total{cpu=\"1\"} counter 0",
                "node_softnet_processed_total{cpu=\"0\"} counter 3327415",
                "node_softnet_processed_total{cpu=\"1\"} counter 3735525",
                "node_softnet_times_squeezed_total{cpu=\"0\"} counter 6",
                "node_softnet_times_squeezed_total{cpu=\"1\"} counter 16",
            ]
        );
        assert!(run("empty", collect).is_err());
        assert!(run("malformed", collect).is_err());
    }
}
