//! What the end-to-end benches read of the agent process from `/proc`: CPU time, memory
//! and open descriptors. Each bench uses some of it.
#![allow(dead_code)]

/// User + system CPU seconds used so far by process `pid` (`/proc/<pid>/stat`, USER_HZ =
/// 100); 0 if the process is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (in parentheses): utime is field 14, stime 15 (1-based).
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let ticks: f64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`) in KiB; 0 if the process is gone.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// [`status_kib`] in MiB.
pub fn status_mib(pid: u32, key: &str) -> f64 {
    status_kib(pid, key) as f64 / 1024.0
}

/// Descriptors process `pid` has open.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}
