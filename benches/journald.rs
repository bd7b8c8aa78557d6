//! The journald source end to end: an existing journal of `JOURNAL_ENTRIES` entries (1M by
//! default) read by the agent binary into a blackhole, beside `journalctl -o json` on the
//! same files, both in entries per CPU-second.
//!
//! `cargo bench --bench journald` (needs `systemd-journal-remote` to write the journal,
//! and `journalctl`). The journal is written once under `target/bench-journal-<n>/` from an
//! export stream of realistic entries (15 fields, as journald stores a service's line) and
//! reused by later runs. Set `SLUICE_BIN` to compare another build.

#[path = "support/agent.rs"]
mod agent;
#[path = "support/procfs.rs"]
mod procfs;

use procfs::{cpu_seconds, status_kib};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let n: u64 = std::env::var("JOURNAL_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench-journal-{n}"));
    if !dir.join("done").exists() && !write_journal(&dir, n) {
        eprintln!("skipping: needs /lib/systemd/systemd-journal-remote");
        return;
    }
    let (journalctl_cpu, journalctl_entries) = journalctl(&dir);
    let (sluice_cpu, wall, rss_kib) = sluice(&dir, n);
    println!(
        "journald → blackhole, {n} entries: sluice {:.0} entries/CPU-s ({sluice_cpu:.2} CPU-s, {:.2} s wall, peak RSS {:.1} MiB); journalctl -o json {:.0} entries/CPU-s ({journalctl_cpu:.2} CPU-s, {journalctl_entries} entries); ratio {:.1}x",
        n as f64 / sluice_cpu,
        wall.as_secs_f64(),
        rss_kib as f64 / 1024.0,
        journalctl_entries as f64 / journalctl_cpu,
        (n as f64 / sluice_cpu) / (journalctl_entries as f64 / journalctl_cpu),
    );
}

/// Writes the journal with journal-remote from an export stream. False when it cannot.
fn write_journal(dir: &Path, n: u64) -> bool {
    let remote = "/lib/systemd/systemd-journal-remote";
    if !Path::new(remote).exists() {
        return false;
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut child = Command::new(remote)
        .arg(format!("--output={}/bench.journal", dir.display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("journal-remote");
    {
        let mut stdin = std::io::BufWriter::new(child.stdin.take().unwrap());
        let apps = ["nginx", "sshd", "cron", "postgres", "kernel"];
        for i in 0..n {
            let app = apps[(i % 5) as usize];
            write!(
                stdin,
                "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID=0123456789abcdef0123456789abcdef\n\
                 _HOSTNAME=bench-host\n_TRANSPORT=stdout\nPRIORITY={}\nSYSLOG_FACILITY=3\n\
                 SYSLOG_IDENTIFIER={app}\n_PID={}\n_UID=0\n_GID=0\n_COMM={app}\n_EXE=/usr/bin/{app}\n\
                 _SYSTEMD_UNIT={app}.service\n_SYSTEMD_CGROUP=/system.slice/{app}.service\n\
                 MESSAGE=seq={i} request from 10.0.{}.{} finished with status 200 in {} ms\n\n",
                1_700_000_000_000_000 + i * 10,
                1_000_000 + i * 10,
                i % 8,
                1000 + i % 7,
                (i >> 8) % 256,
                i % 256,
                i % 1000,
            )
            .unwrap();
        }
    }
    assert!(child.wait().unwrap().success());
    std::fs::write(dir.join("done"), b"").unwrap();
    true
}

/// `journalctl -D dir -o json --no-pager > /dev/null`: (CPU seconds, entries).
fn journalctl(dir: &Path) -> (f64, u64) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "TIMEFORMAT='%U %S'; time (journalctl -D {} -o json --no-pager > /dev/null)",
            dir.display()
        ))
        .output()
        .expect("bash");
    let text = String::from_utf8_lossy(&out.stderr);
    let cpu: f64 = text
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    let entries = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "journalctl -D {} --no-pager -q -o cat | wc -l",
            dir.display()
        ))
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(0);
    (cpu, entries)
}

/// The agent reading `dir` into a blackhole until `n` entries went out: (CPU seconds,
/// wall time, peak RSS KiB).
fn sluice(dir: &Path, n: u64) -> (f64, Duration, u64) {
    let work = tempfile::tempdir().unwrap();
    let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = work.path().join("sluice.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {}\napi: {{ address: \"{api}\" }}\npipelines:\n  p:\n    sources:\n      - type: journald\n        directory: {}\n        read_from: beginning\n    sinks:\n      - type: blackhole\n",
            work.path().join("data").display(),
            dir.display()
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut child = agent::start(&config);
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(600);
    while sink_events(&metrics(api)) < n as f64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall = started.elapsed();
    let cpu = cpu_seconds(pid);
    let rss = status_kib(pid, "VmHWM:");
    let _ = child.kill();
    let _ = child.wait();
    (cpu, wall, rss)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18687)
}

fn metrics(api: SocketAddr) -> String {
    let Ok(mut stream) = TcpStream::connect(api) else {
        return String::new();
    };
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    body
}

fn sink_events(text: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with("sluice_events_sent_total{") && l.contains("component_kind=\"sink\"")
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}
