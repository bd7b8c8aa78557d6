//! `stat`: system-wide counters from `/proc/stat` (node_exporter's `stat_linux.go`):
//! `node_boot_time_seconds` (`btime`), `node_context_switches_total` (`ctxt`),
//! `node_forks_total` (`processes`), `node_intr_total` (first field of `intr`),
//! `node_procs_running`, `node_procs_blocked`.
//!
//! Left out: the opt-in `--collector.stat.softirq` family (`node_softirqs_total`).

use super::{read, Collected, Emitter, Roots};

/// Reads `/proc/stat`'s system-wide lines.
pub fn collect(roots: &Roots, out: &mut Emitter) -> Collected {
    let text = read(&roots.proc("stat")).ok_or_else(|| failed!("no /proc/stat"))?;
    let mut found = 0;
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(key), Some(value)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        let value = value as f64;
        match key {
            "btime" => out.gauge("node_boot_time_seconds", &[], value),
            "ctxt" => out.counter("node_context_switches_total", &[], value),
            "processes" => out.counter("node_forks_total", &[], value),
            "intr" => out.counter("node_intr_total", &[], value),
            "procs_running" => out.gauge("node_procs_running", &[], value),
            "procs_blocked" => out.gauge("node_procs_blocked", &[], value),
            _ => continue,
        }
        found += 1;
    }
    check!(found > 0, "no system-wide value in /proc/stat");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::run;
    use super::*;

    #[test]
    fn reads_system_wide_lines() {
        assert_eq!(
            run("basic", collect).unwrap(),
            [
                "node_boot_time_seconds{} gauge 1795682612",
                "node_context_switches_total{} counter 24390819",
                "node_forks_total{} counter 192230",
                "node_intr_total{} counter 13874965",
                "node_procs_blocked{} gauge 0",
                "node_procs_running{} gauge 1",
            ]
        );
        assert!(run("malformed", collect).is_err());
    }
}
