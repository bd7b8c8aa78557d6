//! `pressure`: pressure stall information from `/proc/pressure/{cpu,io,memory}`
//! (node_exporter's `pressure_linux.go`; Linux ≥ 4.20 with PSI enabled):
//! `node_pressure_cpu_waiting_seconds_total` (cpu `some`),
//! `node_pressure_{io,memory}_waiting_seconds_total` (`some`) and
//! `node_pressure_{io,memory}_stalled_seconds_total` (`full`); the kernel's `total=` is in
//! microseconds. Absent files (old kernel, `psi=0`): no samples and `success 0`, as
//! node_exporter's "no data".

use super::{read, Collected, Emitter, Roots};

/// Reads the three PSI files.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    for resource in ["cpu", "io", "memory"] {
        let path = roots.proc("pressure").join(resource);
        let text = read(&path).ok_or_else(|| failed!("no {}", path.display()))?;
        let some = total(&text, "some").ok_or_else(|| failed!("malformed {}", path.display()))?;
        out.counter(
            &format!("node_pressure_{resource}_waiting_seconds_total"),
            &[],
            some,
        );
        if resource != "cpu" {
            let full =
                total(&text, "full").ok_or_else(|| failed!("malformed {}", path.display()))?;
            out.counter(
                &format!("node_pressure_{resource}_stalled_seconds_total"),
                &[],
                full,
            );
        }
    }
    Ok(())
}

/// The `total=` of the `kind` line, in seconds.
fn total(text: &str, kind: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with(kind))?;
    let micros: u64 = line
        .split_ascii_whitespace()
        .find_map(|f| f.strip_prefix("total="))?
        .parse()
        .ok()?;
    Some(micros as f64 / 1_000_000.0)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn reads_psi_totals() {
        assert_eq!(
            run("basic", collect).unwrap(),
            [
                "node_pressure_cpu_waiting_seconds_total{} counter 2213.619004",
                "node_pressure_io_stalled_seconds_total{} counter 41.340121",
                "node_pressure_io_waiting_seconds_total{} counter 73.152834",
                "node_pressure_memory_stalled_seconds_total{} counter 0.164012",
                "node_pressure_memory_waiting_seconds_total{} counter 0.208634",
            ]
        );
        // Absent (old kernel) and malformed: an error, no panic.
        assert!(run("empty", collect).is_err());
        assert!(run("malformed", collect).is_err());
    }
}
