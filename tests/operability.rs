//! The operator's view of the agent (issue 24): its own log lines carry no escape bytes when
//! stderr is not a terminal, `--log-format json` lines parse as JSON, start-up names what
//! runs, and `${HOSTNAME}` is the machine's name where the variable is not set (systemd).

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

/// Runs the agent on a config whose demo source ends by itself; stderr goes to a pipe.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    run_with(dir, "", args, env)
}

/// [`run`], with `top` (top-level config lines) added to the config.
fn run_with(dir: &Path, top: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = dir.join("out.jsonl");
    let config = dir.join("sluice.yaml");
    fs::write(
        &config,
        format!(
            r#"data_dir: {data}
{top}api: {{ enabled: false }}
pipelines:
  p:
    sources:
      - {{ type: demo, rate: 0, count: 3 }}
    transforms:
      - {{ type: set, fields: {{ host: "${{HOSTNAME}}" }} }}
    sinks:
      - {{ type: file, path: {out} }}
"#,
            data = dir.join("data").display(),
            out = out.display(),
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command
        .args(args)
        .arg("run")
        .arg("-c")
        .arg(&config)
        .env_remove("HOSTNAME")
        .env_remove("NO_COLOR")
        .env_remove("SLUICE_LOG_FORMAT");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn logs_to_a_pipe_have_no_escape_bytes_and_name_what_runs() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &[], &[]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!stderr.contains('\x1b'), "escape bytes in {stderr:?}");
    assert!(stderr.contains("sluice is running"), "{stderr}");
    assert!(
        stderr.contains("sluice.yaml"),
        "the config is named: {stderr}"
    );
    assert!(stderr.contains("data_dir="), "{stderr}");
    assert!(stderr.contains(r#"sources="demo (demo)""#), "{stderr}");
}

/// An environment variable the agent runs with.
type Env<'a> = (&'a str, &'a str);

#[test]
fn json_log_format_writes_one_object_per_line() {
    // The flag, the variable, and the config's `log_format: json`.
    let ways: [(&str, &[&str], &[Env]); 3] = [
        ("", &["--log-format", "json"], &[]),
        ("", &[], &[("SLUICE_LOG_FORMAT", "json")]),
        ("log_format: json\n", &[], &[]),
    ];
    for (top, args, env) in ways {
        let dir = tempfile::tempdir().unwrap();
        let output = run_with(dir.path(), top, args, env);
        let stderr = String::from_utf8(output.stderr).unwrap();
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(lines.len() >= 3, "{stderr}");
        for line in lines {
            let object: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
            assert!(object["level"].is_string() && object["message"].is_string());
        }
        assert!(
            stderr.contains(r#""message":"pipeline started""#),
            "{stderr}"
        );
    }
}

#[test]
fn the_flag_and_the_variable_override_the_config_format() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_with(
        dir.path(),
        "log_format: json\n",
        &["--log-format", "text"],
        &[],
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains(" INFO ") && !stderr.starts_with('{'),
        "{stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let output = run_with(dir.path(), "", &[], &[("SLUICE_LOG_FORMAT", "text")]);
    assert!(!String::from_utf8(output.stderr).unwrap().starts_with('{'));
}

#[test]
fn hostname_falls_back_to_the_machines_name() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &[], &[]);
    let expected = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let body = fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    let events: Vec<serde_json::Value> = body
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    for event in events {
        assert_eq!(event["host"], expected.trim(), "{event}");
    }
}
