//! End-to-end: the `journald` source through the agent binary, against a real
//! `systemd-journald` (started by these tests, without systemd as PID 1) and journal files
//! written by `systemd-journal-remote` from export streams.
//!
//! Each test that needs journald takes [`Journald::start`]: one journald at a time (a
//! mutex; it owns the sockets under `/run/systemd/journal`), volatile storage in a fresh
//! `/run/log/journal`, rate limiting off; stopped and removed when the guard drops.
//! Counts are smaller than the issue's (20,000 entries instead of 100,000) to keep the file
//! well under the CI time budget; the paths exercised are the same.
//!
//! Needs: `systemd` (journald, journalctl, systemd-cat) and `systemd-journal-remote`
//! (see the README's test command). Tests skip (and say so) when they are missing.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use support::fake_loki::{Behavior, FakeLoki};
use support::{wait_for, Agent};

const JOURNALD: &str = "/lib/systemd/systemd-journald";
const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";
const DROP_IN_DIR: &str = "/etc/systemd/journald.conf.d";
const DROP_IN: &str = "/etc/systemd/journald.conf.d/90-sluice-test.conf";
const RUNTIME_JOURNAL: &str = "/run/log/journal";
const SEVERITIES: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

static ONE_JOURNALD: Mutex<()> = Mutex::new(());

/// A journald of our own; stopped, and its journal removed, on drop.
struct Journald {
    child: Child,
    _lock: MutexGuard<'static, ()>,
}

impl Journald {
    /// Starts journald, or `None` (the test skips) where it cannot run.
    fn start() -> Option<Journald> {
        let lock = ONE_JOURNALD.lock().unwrap_or_else(|p| p.into_inner());
        if !Path::new(JOURNALD).exists() || !is_root() {
            eprintln!("skipping: needs root and {JOURNALD}");
            return None;
        }
        let running = Command::new("pgrep")
            // `-f`: the 15-character process name of journald is also journal-remote's.
            .args(["-f", "^/lib/systemd/systemd-journald"])
            .output()
            .is_ok_and(|out| out.status.success());
        assert!(
            !running,
            "a systemd-journald is already running; these tests start their own"
        );
        std::fs::create_dir_all(DROP_IN_DIR).unwrap();
        std::fs::write(
            DROP_IN,
            "[Journal]\nStorage=volatile\nRateLimitIntervalSec=0\nForwardToSyslog=no\nForwardToWall=no\nForwardToConsole=no\n",
        )
        .unwrap();
        let _ = std::fs::remove_dir_all(RUNTIME_JOURNAL);
        std::fs::create_dir_all("/run/systemd/journal").unwrap();
        let child = Command::new(JOURNALD)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start journald");
        let journald = Journald { child, _lock: lock };
        wait_for(
            "journald's socket and journal",
            Duration::from_secs(10),
            || Path::new("/run/systemd/journal/stdout").exists() && journal_dir().exists(),
        );
        Some(journald)
    }

    /// `journalctl --rotate` (journald archives `system.journal`, starts a new one).
    fn rotate(&self) {
        let status = Command::new("journalctl")
            .arg("--rotate")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if !status.success() {
            // Without the varlink socket: journald's own signal for it.
            let _ = Command::new("kill")
                .args(["-USR2", &self.child.id().to_string()])
                .status();
        }
    }
}

impl Drop for Journald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(DROP_IN);
        let _ = std::fs::remove_dir_all(RUNTIME_JOURNAL);
        let _ = std::fs::remove_dir_all("/run/systemd/journal");
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}

/// This machine's volatile journal directory.
fn journal_dir() -> PathBuf {
    let machine = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    Path::new(RUNTIME_JOURNAL).join(machine.trim())
}

/// Archived journal files (`system@….journal`) in the volatile journal.
fn archived_files() -> usize {
    std::fs::read_dir(journal_dir())
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().contains('@'))
                .count()
        })
        .unwrap_or(0)
}

/// Writes `lines` through `systemd-cat -t tag` (a `<N>` prefix sets the priority).
fn systemd_cat(tag: &str, lines: impl IntoIterator<Item = String>) {
    let mut child = Command::new("systemd-cat")
        .args(["-t", tag])
        .stdin(Stdio::piped())
        .spawn()
        .expect("systemd-cat");
    {
        let mut stdin = std::io::BufWriter::new(child.stdin.take().unwrap());
        for line in lines {
            writeln!(stdin, "{line}").unwrap();
        }
    }
    assert!(child.wait().unwrap().success());
}

/// The seq-numbered line `n`, with priority `n % 8`.
fn seq_line(n: u64) -> String {
    format!("<{}>seq={n} hello from the journal test", n % 8)
}

/// `journalctl ... -o json` entries.
/// Damage inside a file costs what journalctl loses, not the rest of the file: an entry
/// object that cannot be read is skipped and a data object that cannot be read leaves out
/// its field (journalctl does both), counted as `bad_entry` and `bad_field`.
#[test]
fn damaged_entries_and_fields_are_left_out_as_journalctl_leaves_them_out() {
    let dir = tempfile::tempdir().unwrap();
    let journals = dir.path().join("journals");
    std::fs::create_dir_all(&journals).unwrap();
    let path = journals.join("damaged.journal");
    if !journal_remote(&path, &varied_export(300, "dmg"), true) {
        return;
    }
    // Walk the objects (8-byte aligned, from the header's end to the tail object): break the
    // type of the 100th entry object and of entry 200's MESSAGE data object.
    let mut bytes = std::fs::read(&path).unwrap();
    let le64 = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let (mut at, tail) = (le64(&bytes, 88) as usize, le64(&bytes, 136) as usize);
    let (mut entries, mut message_200) = (Vec::new(), None);
    while at <= tail {
        let size = le64(&bytes, at + 8) as usize;
        match bytes[at] {
            3 => entries.push(at),
            1 if bytes[at + 72..].starts_with(b"MESSAGE=seq=200 ") => message_200 = Some(at),
            _ => {}
        }
        at = (at + size + 7) & !7;
    }
    assert_eq!(entries.len(), 300);
    bytes[entries[100]] = 0xee;
    bytes[message_200.expect("entry 200's message")] = 0xee;
    std::fs::write(&path, bytes).unwrap();
    let reference = journalctl_json(&["--file", &path.display().to_string()]);
    assert_eq!(reference.len(), 299, "journalctl skips the broken entry");
    let out = dir.path().join("out.json");
    let source = format!(
        "        files: [{}]\n        read_from: beginning",
        path.display()
    );
    let agent = Agent::start(dir.path(), &config(dir.path(), &source, &file_sink(&out)));
    wait_for("every readable entry", Duration::from_secs(30), || {
        out.exists() && support::read_json_lines(&out).len() >= 299
    });
    std::thread::sleep(Duration::from_millis(500));
    let events = support::read_json_lines(&out);
    assert_eq!(events.len(), 299);
    let messages = |values: Vec<Option<&str>>| -> BTreeSet<String> {
        // An event without a MESSAGE field has an empty message.
        let present = values.into_iter().flatten().filter(|m| !m.is_empty());
        present.map(str::to_owned).collect()
    };
    let ours = messages(events.iter().map(|e| e["message"].as_str()).collect());
    let theirs = messages(reference.iter().map(|e| e["MESSAGE"].as_str()).collect());
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 298, "entry 200 is there without its message");
    assert!(!ours.iter().any(|m| m.starts_with("seq=100 ")));
    let errors =
        |reason: &str| agent.metric_sum("sluice_journal_errors_total", &[("reason", reason)]);
    assert_eq!(errors("bad_entry"), 1.0);
    assert_eq!(errors("bad_field"), 1.0);
    assert!(agent.terminate().success());
}

fn journalctl_json(args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new("journalctl")
        .args(args)
        .args(["-o", "json", "--no-pager", "--output-fields="])
        .output()
        .expect("journalctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn seq_of(text: &str) -> Option<u64> {
    support::fake_loki::seq_of(text)
}

/// An agent config: one journald source (its settings as YAML lines) into `sink`.
fn config(dir: &Path, source: &str, sink: &str) -> String {
    format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  p:
    sources:
      - type: journald
        poll_interval_ms: 200
{source}
    sinks:
{sink}
"#,
        data = dir.join("data").display(),
    )
}

fn loki_sink(loki: &FakeLoki) -> String {
    format!(
        r#"      - type: loki
        endpoint: {}
        labels: {{ job: journal, severity: "{{{{ severity }}}}", app: "{{{{ appname }}}}" }}
        batch: {{ timeout_ms: 100 }}
        retry: {{ initial_backoff_ms: 20, max_backoff_ms: 200 }}"#,
        loki.endpoint()
    )
}

fn file_sink(path: &Path) -> String {
    format!("      - type: file\n        path: {}", path.display())
}

fn loki_seqs(loki: &FakeLoki) -> Vec<u64> {
    loki.entries()
        .iter()
        .filter_map(|entry| seq_of(&entry.line))
        .collect()
}

#[test]
fn every_entry_arrives_with_the_fields_journalctl_shows() {
    let Some(_journald) = Journald::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let loki = FakeLoki::start();
    let source = "        read_from: beginning\n        include_matches: { SYSLOG_IDENTIFIER: [sluice-test] }";
    let agent = Agent::start(dir.path(), &config(dir.path(), source, &loki_sink(&loki)));
    let n: u64 = 100_000;
    systemd_cat("sluice-test", (0..n).map(seq_line));
    systemd_cat("someone-else", (0..100).map(|i| format!("not ours {i}")));
    wait_for("every entry in Loki", Duration::from_secs(180), || {
        loki_seqs(&loki).into_iter().collect::<BTreeSet<_>>().len() as u64 == n
    });
    let expected: BTreeMap<u64, serde_json::Value> =
        journalctl_json(&["-D", RUNTIME_JOURNAL, "-t", "sluice-test"])
            .into_iter()
            .filter_map(|e| Some((seq_of(e["MESSAGE"].as_str()?)?, e)))
            .collect();
    assert_eq!(expected.len() as u64, n, "journalctl shows every entry");
    for entry in loki.entries() {
        let seq = seq_of(&entry.line).unwrap_or_else(|| panic!("not ours: {}", entry.line));
        let journal = &expected[&seq];
        let realtime: i64 = journal["__REALTIME_TIMESTAMP"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(entry.timestamp, realtime * 1000, "seq {seq} time");
        let priority: usize = journal["PRIORITY"].as_str().unwrap().parse().unwrap();
        assert!(
            entry
                .labels
                .contains(&format!("severity=\"{}\"", SEVERITIES[priority])),
            "seq {seq}: {} vs PRIORITY {priority}",
            entry.labels
        );
        assert!(
            entry.labels.contains("app=\"sluice-test\""),
            "{}",
            entry.labels
        );
        assert_eq!(&entry.line, journal["MESSAGE"].as_str().unwrap());
    }
    let errors = agent.metric_sum("sluice_journal_errors_total", &[]);
    assert_eq!(errors, 0.0, "no journal errors");
    assert!(agent.terminate().success());
}

#[test]
fn kill9_rotation_and_vacuum_lose_nothing() {
    let Some(journald) = Journald::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let loki = FakeLoki::start();
    let source = "        read_from: beginning\n        include_matches: { SYSLOG_IDENTIFIER: [sluice-kill] }";
    let yaml = config(dir.path(), source, &loki_sink(&loki));
    let n: u64 = 100_000;
    let chunk = 5_000;
    let mut agent = Some(Agent::start(dir.path(), &yaml));
    let mut kills = 0;
    for (round, start) in (0..n).step_by(chunk as usize).enumerate() {
        systemd_cat("sluice-kill", (start..start + chunk).map(seq_line));
        match round % 4 {
            // kill -9 mid-read, then start again (5 kills over the 20 rounds).
            0 => {
                std::thread::sleep(Duration::from_millis(30 + 10 * round as u64));
                agent.take().unwrap().kill9();
                kills += 1;
                agent = Some(Agent::start(dir.path(), &yaml));
            }
            1 => {
                let archived = archived_files();
                journald.rotate();
                wait_for("an archived journal file", Duration::from_secs(10), || {
                    archived_files() > archived
                });
            }
            2 => {
                // Vacuum the archived files once the agent has read past them.
                wait_for("the agent to catch up", Duration::from_secs(120), || {
                    loki_seqs(&loki).into_iter().collect::<BTreeSet<_>>().len() as u64
                        >= start + chunk
                });
                let status = Command::new("journalctl")
                    .args(["-D", RUNTIME_JOURNAL, "--vacuum-files=1"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .unwrap();
                assert!(status.success());
            }
            _ => {}
        }
    }
    wait_for("every entry in Loki", Duration::from_secs(180), || {
        loki_seqs(&loki).into_iter().collect::<BTreeSet<_>>().len() as u64 == n
    });
    let seqs = loki_seqs(&loki);
    let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
    let missing: Vec<u64> = (0..n).filter(|s| !distinct.contains(s)).take(10).collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    let duplicates = seqs.len() - distinct.len();
    eprintln!("{kills} kills, 4 rotations, vacuums: {duplicates} duplicates of {n}");
    assert_eq!(kills, 5);
    // In flight at a kill: at most the queue (2 source batches of 1000 entries) and a sink
    // lane's two Loki batches (5000 each), with the 100 ms checkpoint interval's worth on
    // top: 13,000 per kill bounds it.
    assert!(duplicates <= kills * 13_000, "{duplicates} duplicates");
    let agent = agent.unwrap();
    let errors = agent.metric_sum("sluice_journal_errors_total", &[]);
    let by_reason: Vec<String> = agent
        .metrics()
        .lines()
        .filter(|line| line.starts_with("sluice_journal_errors_total"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        errors, 0.0,
        "nothing lost: no position_lost or deleted errors: {by_reason:?}"
    );
}

/// Export-format entries (`systemd-journal-export`'s format) for journal-remote.
fn export_entry(out: &mut Vec<u8>, fields: &[(&str, &[u8])]) {
    for (name, value) in fields {
        if value.contains(&b'\n') || value.iter().any(|b| *b < 0x20 && *b != b'\t') {
            out.extend_from_slice(name.as_bytes());
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            out.extend_from_slice(value);
            out.push(b'\n');
        } else {
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            out.extend_from_slice(value);
            out.push(b'\n');
        }
    }
    out.push(b'\n');
}

/// Writes a journal file at `path` from export entries with `systemd-journal-remote`;
/// `compact: false` asks for the regular (64-bit offset) layout.
fn journal_remote(path: &Path, export: &[u8], compact: bool) -> bool {
    if !Path::new(JOURNAL_REMOTE).exists() {
        eprintln!("skipping: needs {JOURNAL_REMOTE} (package systemd-journal-remote)");
        return false;
    }
    let mut child = Command::new(JOURNAL_REMOTE)
        .arg(format!("--output={}", path.display()))
        .arg("-")
        .env("SYSTEMD_JOURNAL_COMPACT", if compact { "1" } else { "0" })
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("systemd-journal-remote");
    child.stdin.take().unwrap().write_all(export).unwrap();
    assert!(child.wait().unwrap().success());
    true
}

/// Entries for the filter and compression cases: units, priorities, a custom field, a
/// large (compressed) field and a binary one.
fn varied_export(n: u64, tag: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let units = ["nginx.service", "cron.service", "ssh.socket"];
    for i in 0..n {
        let realtime = (1_700_000_000_000_000 + i * 1000).to_string();
        let monotonic = (1_000 + i).to_string();
        let message = format!("seq={i} {tag} message");
        let unit = units[(i % 3) as usize];
        let priority = (i % 8).to_string();
        let color = ["red", "green", "blue"][(i % 5 % 3) as usize];
        let big = format!("{i} ").repeat(300 + (i as usize % 7) * 100);
        let mut fields: Vec<(&str, &[u8])> = vec![
            ("__REALTIME_TIMESTAMP", realtime.as_bytes()),
            ("__MONOTONIC_TIMESTAMP", monotonic.as_bytes()),
            ("_BOOT_ID", b"0123456789abcdef0123456789abcdef"),
            ("MESSAGE", message.as_bytes()),
            ("PRIORITY", priority.as_bytes()),
            ("_SYSTEMD_UNIT", unit.as_bytes()),
            ("SYSLOG_IDENTIFIER", tag.as_bytes()),
            ("COLOR", color.as_bytes()),
            ("BIG", big.as_bytes()),
        ];
        if i % 10 == 0 {
            fields.push(("BLOB", b"a\nb\x00c"));
        }
        export_entry(&mut out, &fields);
    }
    out
}

#[test]
fn filters_deliver_what_journalctl_prints_with_the_same_filters() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("varied.journal");
    if !journal_remote(&journal, &varied_export(600, "filters"), true) {
        return;
    }
    let file = journal.display().to_string();
    let cases: [(&str, &str, Vec<&str>); 5] = [
        ("units", "include_units: [nginx]", vec!["-u", "nginx"]),
        (
            "matches",
            "include_matches: { COLOR: [red, blue], _SYSTEMD_UNIT: [cron.service] }",
            vec!["COLOR=red", "COLOR=blue", "_SYSTEMD_UNIT=cron.service"],
        ),
        ("priority", "priority: warning", vec!["-p", "warning"]),
        (
            "units_and_priority",
            "include_units: [ssh.socket, cron]\n        priority: \"3\"",
            vec!["-u", "ssh.socket", "-u", "cron", "-p", "3"],
        ),
        ("all", "all_fields: true", vec![]),
    ];
    let mut yaml = format!(
        "data_dir: {}\napi: {{ address: \"{{api}}\" }}\npipelines:\n",
        dir.path().join("data").display()
    );
    for (name, filter, _) in &cases {
        yaml.push_str(&format!(
            "  {name}:\n    sources:\n      - type: journald\n        files: [{file}]\n        read_from: beginning\n        {filter}\n    sinks:\n      - type: file\n        path: {}\n",
            dir.path().join(format!("{name}.json")).display()
        ));
    }
    let agent = Agent::start(dir.path(), &yaml);
    for (name, filter, args) in &cases {
        let mut full_args = vec!["--file", file.as_str()];
        full_args.extend(args.iter().copied());
        let expected: Vec<String> = journalctl_json(&full_args)
            .iter()
            .map(|e| e["MESSAGE"].as_str().unwrap().to_owned())
            .collect();
        assert!(!expected.is_empty(), "{name}: journalctl prints entries");
        let out = dir.path().join(format!("{name}.json"));
        let mut got = Vec::new();
        wait_for(name, Duration::from_secs(30), || {
            got = read_messages(&out);
            got.len() >= expected.len()
        });
        std::thread::sleep(Duration::from_millis(300));
        got = read_messages(&out);
        assert_eq!(got, expected, "{name} ({filter}) vs journalctl {args:?}");
    }
    // Compressed and binary fields, as journalctl shows them.
    let all = support::read_json_lines(&dir.path().join("all.json"));
    let reference = journalctl_json(&["--file", file.as_str()]);
    assert_eq!(all.len(), reference.len());
    for (got, want) in all.iter().zip(&reference) {
        assert_eq!(got["BIG"], want["BIG"], "large (compressed) field");
        assert_eq!(got["COLOR"], want["COLOR"]);
        if let Some(blob) = want["BLOB"].as_array() {
            let bytes: Vec<u8> = blob.iter().map(|b| b.as_u64().unwrap() as u8).collect();
            assert_eq!(got["BLOB"].as_str().unwrap().as_bytes(), &bytes[..]);
        }
    }
    assert_eq!(agent.metric_sum("sluice_journal_errors_total", &[]), 0.0);
    assert!(agent.terminate().success());
}

fn read_messages(path: &Path) -> Vec<String> {
    if !path.exists() {
        return Vec::new();
    }
    support::read_json_lines(path)
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A file as systemd 247 writes it (LZ4 data objects, no keyed hash, not compact; see
/// tests/data/journal/README.md): every entry as `journalctl --file` shows it.
#[test]
fn lz4_journal_from_systemd_247_reads_as_journalctl_shows() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("old.journal");
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/journal/lz4-systemd247.journal.gz");
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(fixture).unwrap()),
        &mut bytes,
    )
    .unwrap();
    std::fs::write(&journal, bytes).unwrap();
    let reference = journalctl_json(&["--file", &journal.display().to_string()]);
    assert_eq!(reference.len(), 300, "journalctl reads the fixture");
    let out = dir.path().join("out.json");
    let source = format!(
        "        files: [{}]\n        read_from: beginning\n        all_fields: true",
        journal.display()
    );
    let agent = Agent::start(dir.path(), &config(dir.path(), &source, &file_sink(&out)));
    wait_for("every entry", Duration::from_secs(30), || {
        read_messages(&out).len() >= reference.len()
    });
    let events = support::read_json_lines(&out);
    assert_eq!(events.len(), reference.len());
    for (event, want) in events.iter().zip(&reference) {
        assert_eq!(event["message"], want["MESSAGE"]);
        assert_eq!(event["BIG"], want["BIG"], "{}", want["MESSAGE"]);
        let binary: Vec<u8> = want["BIN"]
            .as_array()
            .expect("journalctl prints binary values as byte arrays")
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        assert_eq!(
            event["BIN"].as_str().unwrap(),
            String::from_utf8_lossy(&binary)
        );
        let priority: usize = want["PRIORITY"].as_str().unwrap().parse().unwrap();
        assert_eq!(event["severity"], SEVERITIES[priority]);
    }
    let errors = agent.metric_sum("sluice_journal_errors_total", &[]);
    assert_eq!(errors, 0.0, "no journal errors");
    assert!(agent.terminate().success());
}

#[test]
fn journal_remote_files_regular_and_compact_with_compressed_fields() {
    let dir = tempfile::tempdir().unwrap();
    let journals = dir.path().join("journals");
    std::fs::create_dir_all(&journals).unwrap();
    let export = varied_export(300, "remote");
    if !journal_remote(&journals.join("compact.journal"), &export, true) {
        return;
    }
    journal_remote(&journals.join("regular.journal"), &export, false);
    let out = dir.path().join("out.json");
    let source = format!(
        "        directory: {}\n        read_from: beginning\n        all_fields: true",
        journals.display()
    );
    let agent = Agent::start(dir.path(), &config(dir.path(), &source, &file_sink(&out)));
    wait_for("both files read", Duration::from_secs(30), || {
        out.exists() && support::read_json_lines(&out).len() >= 600
    });
    let events = support::read_json_lines(&out);
    let reference = journalctl_json(&[
        "--file",
        &journals.join("compact.journal").display().to_string(),
    ]);
    let by_message: BTreeMap<&str, &serde_json::Value> = reference
        .iter()
        .map(|e| (e["MESSAGE"].as_str().unwrap(), e))
        .collect();
    for event in &events {
        let want = by_message[event["message"].as_str().unwrap()];
        assert_eq!(event["BIG"], want["BIG"]);
        assert_eq!(event["unit"], want["_SYSTEMD_UNIT"]);
        assert_eq!(event["appname"], want["SYSLOG_IDENTIFIER"]);
    }
    let compressed = Command::new("journalctl")
        .args(["--header", "--file"])
        .arg(journals.join("compact.journal"))
        .output()
        .unwrap();
    let header = String::from_utf8_lossy(&compressed.stdout);
    assert!(
        header.contains("COMPRESSED"),
        "fields are compressed: {header}"
    );
    assert!(agent.terminate().success());
}

#[test]
fn bad_files_are_counted_and_the_others_read() {
    let dir = tempfile::tempdir().unwrap();
    let journals = dir.path().join("journals");
    std::fs::create_dir_all(&journals).unwrap();
    if !journal_remote(
        &journals.join("good.journal"),
        &varied_export(200, "good"),
        true,
    ) {
        return;
    }
    // Truncated: a valid file cut inside its objects.
    let cut = journals.join("cut.journal");
    journal_remote(&cut, &varied_export(400, "cut"), true);
    let (objects, used) = object_area(&cut);
    let file = std::fs::OpenOptions::new().write(true).open(&cut).unwrap();
    file.set_len(objects + (used - objects) / 2).unwrap();
    // Random bytes with a journal's name.
    let noise: Vec<u8> = (0..100_000u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    std::fs::write(journals.join("noise.journal"), &noise).unwrap();
    std::fs::write(journals.join("empty.journal"), b"").unwrap();
    // Deleted while read: the sink holds the reader back until the file is gone.
    let doomed = journals.join("doomed.journal");
    journal_remote(&doomed, &varied_export(3000, "doomed"), true);
    let loki = FakeLoki::start();
    loki.behave_for(
        Behavior::Status {
            code: 503,
            retry_after: None,
            body: String::new(),
        },
        Duration::from_secs(2),
    );
    let source = format!(
        "        directory: {}\n        read_from: beginning\n        batch_events: 50",
        journals.display()
    );
    // Small batches: what is in flight (queue, worker, sink lane) is a few hundred entries.
    let sink = loki_sink(&loki).replace(
        "batch: { timeout_ms: 100 }",
        "batch: { timeout_ms: 100, max_events: 50 }",
    );
    let agent = Agent::start(dir.path(), &config(dir.path(), &source, &sink));
    std::thread::sleep(Duration::from_millis(300));
    std::fs::remove_file(&doomed).unwrap();
    let started = Instant::now();
    wait_for("good and doomed entries", Duration::from_secs(60), || {
        let lines: BTreeSet<String> = loki.entries().into_iter().map(|e| e.line).collect();
        lines.iter().filter(|l| l.contains(" good ")).count() == 200
            && lines.iter().filter(|l| l.contains(" doomed ")).count() == 3000
    });
    eprintln!("read everything in {:?}", started.elapsed());
    let cut_read = loki
        .entries()
        .iter()
        .filter(|e| e.line.contains(" cut "))
        .count();
    assert!(
        cut_read > 0 && cut_read < 400,
        "the truncated file's readable part: {cut_read}"
    );
    let errors =
        |reason: &str| agent.metric_sum("sluice_journal_errors_total", &[("reason", reason)]);
    let counted = || {
        [("bad_header", 2.0), ("truncated", 1.0), ("deleted", 1.0)]
            .iter()
            .all(|(reason, at_least)| errors(reason) >= *at_least)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !counted() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        counted(),
        "bad_header {}, truncated {}, deleted {}",
        errors("bad_header"),
        errors("truncated"),
        errors("deleted")
    );
    assert!(agent.terminate().success(), "no panic, clean exit");
    // The truncated file's readable part was delivered: a restart does not send it again
    // (its position was never checkpointed when the file failed inside a batch).
    let total = loki.entry_count();
    let agent = Agent::start(dir.path(), &config(dir.path(), &source, &sink));
    std::thread::sleep(Duration::from_secs(3));
    let again = loki
        .entries()
        .iter()
        .filter(|e| e.line.contains(" cut "))
        .count();
    assert_eq!(again, cut_read, "the truncated file's start sent again");
    assert_eq!(loki.entry_count(), total);
    assert!(agent.terminate().success());
}

/// journald's vacuum frees a file's blocks even while a reader holds it open
/// (`unlinkat_deallocate`), and it may do so before the reader has seen the file's header
/// say "archived". A file journald had renamed to its archived name, read to its end, is
/// complete: its zeroing is not an error, and neither is its absence after a restart. The
/// same zeroing of a file still under its online name is counted (the control).
#[test]
fn vacuum_of_an_archived_file_read_to_its_end_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let journals = dir.path().join("journals");
    std::fs::create_dir_all(&journals).unwrap();
    let online = journals.join("system.journal");
    let control = journals.join("user-1000.journal");
    if !journal_remote(&online, &varied_export(300, "sealed"), true) {
        return;
    }
    journal_remote(&control, &varied_export(200, "control"), true);
    // As journald leaves its files while it writes them: state ONLINE (header byte 16).
    for path in [&online, &control] {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[16] = 1;
        std::fs::write(path, bytes).unwrap();
    }
    let loki = FakeLoki::start();
    let source = format!(
        "        directory: {}\n        read_from: beginning",
        journals.display()
    );
    let yaml = config(dir.path(), &source, &loki_sink(&loki));
    let agent = Agent::start(dir.path(), &yaml);
    wait_for("every entry", Duration::from_secs(30), || {
        loki.entries().len() >= 500
    });
    // Rotation: journald renames the file, then (later) marks it archived.
    let archived = journals
        .join("system@0123456789abcdef0123456789abcdef-0000000000000001-0005f0d5c0a0b0c0.journal");
    std::fs::rename(&online, &archived).unwrap();
    let checkpoints = dir.path().join("data/checkpoints.json");
    wait_for(
        "the archived file's entry count checkpointed",
        Duration::from_secs(10),
        || std::fs::read_to_string(&checkpoints).is_ok_and(|text| text.contains("n_entries")),
    );
    // The vacuum: every block of both files freed through another descriptor.
    for path in [&archived, &control] {
        let len = std::fs::metadata(path).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_len(0).unwrap();
        file.set_len(len).unwrap();
    }
    let errors = |agent: &Agent| agent.metric_sum("sluice_journal_errors_total", &[]);
    wait_for("the control file counted", Duration::from_secs(15), || {
        errors(&agent) >= 1.0
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        errors(&agent),
        1.0,
        "only the file still under its online name: {}",
        agent.metrics()
    );
    assert!(agent.terminate().success());
    // Both vacuumed away while the agent was down: only the control's position is lost.
    std::fs::remove_file(&archived).unwrap();
    std::fs::remove_file(&control).unwrap();
    let agent = Agent::start(dir.path(), &yaml);
    let lost = |agent: &Agent| {
        agent.metric_sum(
            "sluice_journal_errors_total",
            &[("reason", "position_lost")],
        )
    };
    wait_for("the start-up check", Duration::from_secs(10), || {
        lost(&agent) >= 1.0
    });
    assert_eq!(lost(&agent), 1.0, "{}", agent.metrics());
    let lines: BTreeSet<String> = loki.entries().into_iter().map(|e| e.line).collect();
    assert_eq!(lines.len(), 500, "every entry once");
    assert!(agent.terminate().success());
}

/// journald creates a file, then writes its header: a scan in between sees an empty file
/// under an online name. That is not a broken file (it was counted `bad_header` on every
/// fast rotation): it is read once its header is there, and nothing is counted. A file that
/// stays without a header is counted after the grace, like any other.
#[test]
fn a_file_seen_before_journald_wrote_its_header_is_read_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let journals = dir.path().join("journals");
    std::fs::create_dir_all(&journals).unwrap();
    let written = dir.path().join("written.journal");
    if !journal_remote(&written, &varied_export(100, "late"), true) {
        return;
    }
    let online = journals.join("system.journal");
    std::fs::write(&online, b"").unwrap();
    let stays_empty = journals.join("user-1000.journal");
    std::fs::write(&stays_empty, b"").unwrap();
    let loki = FakeLoki::start();
    let source = format!(
        "        directory: {}\n        read_from: beginning",
        journals.display()
    );
    let agent = Agent::start(dir.path(), &config(dir.path(), &source, &loki_sink(&loki)));
    std::thread::sleep(Duration::from_millis(1500));
    // The header (and the rest) written into the same file, as journald does.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&online)
        .unwrap()
        .write_all(&std::fs::read(&written).unwrap())
        .unwrap();
    wait_for("the late file's entries", Duration::from_secs(30), || {
        loki.entries().len() >= 100
    });
    let bad = |agent: &Agent| {
        agent.metric_sum("sluice_journal_errors_total", &[("reason", "bad_header")])
    };
    wait_for(
        "the file that stayed empty counted",
        Duration::from_secs(15),
        || bad(&agent) >= 1.0,
    );
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        bad(&agent),
        1.0,
        "only the file that stayed empty: {}",
        agent.metrics()
    );
    assert!(agent.terminate().success());
}

/// Where a journal file's objects after its hash tables begin, and where the last ends
/// (`tail_object_offset` + its size).
fn object_area(path: &Path) -> (u64, u64) {
    let bytes = std::fs::read(path).unwrap();
    let le64 = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let tables_end = (le64(104) + le64(112)).max(le64(120) + le64(128));
    let tail = le64(136) as usize;
    (tables_end, tail as u64 + le64(tail + 8))
}

#[test]
fn read_from_end_skips_old_entries_on_the_first_start_only() {
    let Some(_journald) = Journald::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let loki = FakeLoki::start();
    systemd_cat("sluice-end", (0..100).map(seq_line));
    wait_for(
        "old entries in the journal",
        Duration::from_secs(10),
        || journalctl_json(&["-D", RUNTIME_JOURNAL, "-t", "sluice-end"]).len() == 100,
    );
    let source =
        "        read_from: end\n        include_matches: { SYSLOG_IDENTIFIER: [sluice-end] }";
    let yaml = config(dir.path(), source, &loki_sink(&loki));
    let agent = Agent::start(dir.path(), &yaml);
    systemd_cat("sluice-end", (100..200).map(seq_line));
    wait_for("new entries", Duration::from_secs(30), || {
        loki_seqs(&loki).len() >= 100
    });
    assert!(agent.terminate().success());
    // Written while the agent is down: read at the next start (positions were saved).
    systemd_cat("sluice-end", (200..300).map(seq_line));
    let agent = Agent::start(dir.path(), &yaml);
    wait_for(
        "entries written while down",
        Duration::from_secs(30),
        || loki_seqs(&loki).len() >= 200,
    );
    std::thread::sleep(Duration::from_millis(300));
    let seqs: BTreeSet<u64> = loki_seqs(&loki).into_iter().collect();
    assert_eq!(seqs, (100..300).collect::<BTreeSet<u64>>());
    assert_eq!(loki_seqs(&loki).len(), 200, "no replay after a clean stop");
    assert!(agent.terminate().success());
}
