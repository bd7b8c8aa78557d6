//! `sluice test` through the binary (issue 24): a config whose tests pass exits 0; a broken
//! expectation exits 1 showing expected against actual; the shipped pipelines' tests
//! (`pipelines/tests/<name>.yaml`) pass, and every shipped pipeline with transforms has some.

mod support;

use std::path::Path;
use std::process::{Command, Output};

fn sluice_test(config: &Path, files: &[&Path]) -> Output {
    Command::new(support::binary())
        .args(["test", "-c"])
        .arg(config)
        .args(files)
        .env_remove("HOSTNAME")
        .output()
        .expect("run sluice test")
}

const CONFIG: &str = r#"data_dir: /tmp/sluice-config-tests
pipelines:
  app:
    sources: [ { type: stdin } ]
    transforms:
      - { type: parse_logfmt, name: parse }
      - { type: filter, name: no_debug, condition: { not: { field: level, equals: debug } } }
    sinks: [ { type: console } ]
tests:
  - name: a line is parsed
    inputs: [ 'level=error code=503 msg="upstream down"' ]
    outputs:
      - fields: { level: error, code: "503", msg: upstream down }
        condition: { field: code, gte: 500 }
  - name: debug lines are dropped
    inputs: [ "level=debug msg=noise" ]
    outputs: []
"#;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn passing_tests_exit_0_and_a_broken_expectation_exits_1_with_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let output = sluice_test(&config, &[]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("test a line is parsed ... ok"), "{text}");
    assert!(
        text.contains("test debug lines are dropped ... ok"),
        "{text}"
    );
    assert!(
        text.contains("test result: ok. 2 passed; 0 failed"),
        "{text}"
    );

    // More tests from a file beside the config: one fails.
    let more = dir.path().join("more.yaml");
    std::fs::write(
        &more,
        r#"tests:
  - name: codes are numbers
    extract_from: parse
    inputs: [ "level=info code=200", "level=debug" ]
    outputs:
      - fields: { code: 200 }
"#,
    )
    .unwrap();
    let output = sluice_test(&config, &[&more]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    for part in [
        "test codes are numbers ... FAILED",
        r#"output 1 of 2: field "code": expected 200, got "200""#,
        r#"actual: {"#,
        "expected 1 events out, got 2",
        "test result: FAILED. 2 passed; 1 failed",
    ] {
        assert!(text.contains(part), "{part:?} missing from:\n{text}");
    }

    // A config that does not build: an error, exit 1.
    std::fs::write(&config, CONFIG.replace("type: parse_logfmt", "type: nope")).unwrap();
    let output = sluice_test(&config, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown transform type"));
}

#[test]
fn the_shipped_pipelines_tests_pass() {
    let tests = Path::new("pipelines/tests");
    let mut ran = 0;
    for entry in std::fs::read_dir("pipelines").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let file = tests.join(path.file_name().unwrap());
        if !file.exists() {
            assert!(
                !text.contains("transforms:"),
                "{} has transforms but no tests in {}",
                path.display(),
                file.display()
            );
            continue;
        }
        let output = sluice_test(&path, &[&file]);
        assert!(
            output.status.success(),
            "{}:\n{}{}",
            file.display(),
            stdout(&output),
            String::from_utf8_lossy(&output.stderr)
        );
        ran += 1;
    }
    assert!(ran >= 4, "tests for the shipped pipelines: {ran}");
}

/// The README's example tests (the YAML block under "Testing a config") pass against the
/// pipeline they are written for, so the example a user copies works.
#[test]
fn the_readme_example_tests_pass_against_the_access_log_pipeline() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let section = &readme[readme.find("### Testing a config").expect("the section")..];
    let start = section.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let block = &section[start..start + section[start..].find("```").unwrap()];
    assert!(block.starts_with("tests:"), "{block}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("readme-tests.yaml");
    std::fs::write(&file, block).unwrap();
    let output = sluice_test(Path::new("pipelines/access-log.yaml"), &[&file]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("2 passed; 0 failed"), "{text}");
}
