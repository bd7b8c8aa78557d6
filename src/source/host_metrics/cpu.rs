//! `cpu`: per-CPU time from `/proc/stat` (node_exporter's `cpu_linux.go`):
//! `node_cpu_seconds_total{cpu,mode}` for `user nice system idle iowait irq softirq steal`
//! and `node_cpu_guest_seconds_total{cpu,mode}` for `user nice` (guest time, which the
//! kernel also counts in `user`/`nice`). The kernel counts in USER_HZ ticks, which is
//! 100 per second on every Linux ABI. As node_exporter does, each value is kept monotone
//! (some kernels' `idle`/`iowait` step backwards): a value lower than the last one is
//! replaced by the last one, and a CPU whose `idle` drops by 3 s or more is taken for a
//! hotplug and starts afresh.
//!
//! Left out: `node_cpu_core_throttles_total` / `node_cpu_package_throttles_total`
//! (`/sys/.../thermal_throttle`, Intel only) and the opt-in `--collector.cpu.info` family.

use super::{read, Collected, Emitter, Roots};

/// Ticks per second of `/proc/stat` (USER_HZ).
const USER_HZ: f64 = 100.0;

const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// node_exporter's `jumpBackSeconds`.
const JUMP_BACK_SECONDS: f64 = 3.0;

/// The last values reported per CPU (seconds, in `/proc/stat` order).
#[derive(Debug, Default)]
pub struct Monotonic {
    cpus: Vec<Vec<f64>>,
}

impl Monotonic {
    /// `seconds` made monotone against what CPU `index` reported last.
    fn apply(&mut self, index: usize, seconds: &mut [f64]) {
        if self.cpus.len() <= index {
            self.cpus.resize(index + 1, Vec::new());
        }
        let last = &mut self.cpus[index];
        let idle = |values: &[f64]| values.get(3).copied().unwrap_or(0.0);
        if last.len() != seconds.len() || idle(last) - idle(seconds) >= JUMP_BACK_SECONDS {
            *last = seconds.to_vec();
            return;
        }
        for (value, previous) in seconds.iter_mut().zip(last.iter_mut()) {
            if *value < *previous {
                *value = *previous;
            } else {
                *previous = *value;
            }
        }
    }
}

/// Reads `/proc/stat`'s `cpuN` lines.
pub fn collect(roots: &Roots, state: &mut Monotonic, out: &mut Emitter) -> Collected {
    let text = read(&roots.proc("stat")).ok_or_else(|| failed!("no /proc/stat"))?;
    let mut found = false;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(cpu) = fields.next().and_then(|f| f.strip_prefix("cpu")) else {
            continue;
        };
        if cpu.is_empty() || !cpu.bytes().all(|b| b.is_ascii_digit()) {
            continue; // the aggregate `cpu` line
        }
        let mut ticks: Vec<f64> = fields
            .map_while(|f| f.parse::<u64>().ok())
            .map(|t| t as f64 / USER_HZ)
            .collect();
        if ticks.len() < 4 {
            continue;
        }
        if let Ok(index) = cpu.parse::<usize>() {
            if index < 65_536 {
                state.apply(index, &mut ticks);
            }
        }
        found = true;
        for (mode, value) in MODES.iter().zip(&ticks) {
            out.counter(
                "node_cpu_seconds_total",
                &[("cpu", cpu), ("mode", mode)],
                *value,
            );
        }
        for (mode, value) in ["user", "nice"].iter().zip(ticks.iter().skip(8)) {
            out.counter(
                "node_cpu_guest_seconds_total",
                &[("cpu", cpu), ("mode", mode)],
                *value,
            );
        }
    }
    check!(found, "no cpuN line in /proc/stat");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    fn fresh(roots: &Roots, out: &mut Emitter) -> Collected {
        collect(roots, &mut Monotonic::default(), out)
    }

    #[test]
    fn values_stay_monotone_unless_idle_jumps_back() {
        let mut state = Monotonic::default();
        let mut step = |values: [f64; 4]| {
            let mut values = values.to_vec();
            state.apply(0, &mut values);
            values
        };
        assert_eq!(step([10.0, 0.0, 5.0, 100.0]), [10.0, 0.0, 5.0, 100.0]);
        assert_eq!(step([9.0, 0.0, 6.0, 99.0]), [10.0, 0.0, 6.0, 100.0]);
        // idle 3 s lower: a hotplugged CPU, taken as it is.
        assert_eq!(step([1.0, 0.0, 1.0, 96.0]), [1.0, 0.0, 1.0, 96.0]);
    }

    #[test]
    fn reads_per_cpu_ticks() {
        let lines = run("basic", fresh).unwrap();
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
        assert!(run("malformed", fresh).is_err());
        assert!(run("empty", fresh).is_err());
    }
}
