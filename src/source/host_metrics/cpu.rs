//! `cpu`: per-CPU time from `/proc/stat` (node_exporter's `cpu_linux.go`):
//! `node_cpu_seconds_total{cpu,mode}` for `user nice system idle iowait irq softirq steal`
//! and `node_cpu_guest_seconds_total{cpu,mode}` for `user nice` (guest time, which the
//! kernel also counts in `user`/`nice`). The kernel counts in USER_HZ ticks, which is
//! 100 per second on every Linux ABI.
//!
//! Left out: `node_cpu_core_throttles_total` / `node_cpu_package_throttles_total`
//! (`/sys/.../thermal_throttle`, Intel only) and the opt-in `--collector.cpu.info` family.

use super::{read, Emitter, Roots};

/// Ticks per second of `/proc/stat` (USER_HZ).
const USER_HZ: f64 = 100.0;

const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// Reads `/proc/stat`'s `cpuN` lines.
pub fn collect(roots: &Roots, out: &mut Emitter) -> anyhow::Result<()> {
    let text = read(&roots.proc("stat")).ok_or_else(|| anyhow::anyhow!("no /proc/stat"))?;
    let mut found = false;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(cpu) = fields.next().and_then(|f| f.strip_prefix("cpu")) else {
            continue;
        };
        if cpu.is_empty() || !cpu.bytes().all(|b| b.is_ascii_digit()) {
            continue; // the aggregate `cpu` line
        }
        let ticks: Vec<f64> = fields
            .map_while(|f| f.parse::<u64>().ok())
            .map(|t| t as f64)
            .collect();
        if ticks.len() < 4 {
            continue;
        }
        found = true;
        for (mode, value) in MODES.iter().zip(&ticks) {
            out.counter(
                "node_cpu_seconds_total",
                &[("cpu", cpu), ("mode", mode)],
                value / USER_HZ,
            );
        }
        for (mode, value) in ["user", "nice"].iter().zip(ticks.iter().skip(8)) {
            out.counter(
                "node_cpu_guest_seconds_total",
                &[("cpu", cpu), ("mode", mode)],
                value / USER_HZ,
            );
        }
    }
    anyhow::ensure!(found, "no cpuN line in /proc/stat");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn reads_per_cpu_ticks() {
        let lines = run("basic", collect).unwrap();
        assert!(
            lines.contains(
                &r#"node_cpu_seconds_total{cpu="1",mode="idle"} counter 4306.76"#.to_owned()
            ),
            "{lines:#?}"
        );
        assert!(
            lines.contains(
                &r#"node_cpu_guest_seconds_total{cpu="0",mode="nice"} counter 0.02"#.to_owned()
            ),
            "{lines:#?}"
        );
        assert_eq!(lines.len(), 2 * (8 + 2));
    }

    #[test]
    fn malformed_or_missing() {
        assert!(run("malformed", collect).is_err());
        assert!(run("empty", collect).is_err());
    }
}
