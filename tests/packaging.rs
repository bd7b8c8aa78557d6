//! Checks of the deployment files in `packaging/`: the systemd unit (its directives, and
//! `systemd-analyze verify` when systemd is installed), the Debian package metadata and
//! maintainer scripts, the Kubernetes manifests (mounts, probes, resources, the ConfigMap
//! that holds `pipelines/kubernetes.yaml`) and the Dockerfile.
//!
//! The `.deb` itself is built, installed (`dpkg -i`), checked and purged by
//! `deb_builds_installs_and_purges` when `SLUICE_TEST_DEB=1` (it needs root and
//! `cargo-deb`, and changes the machine: CI sets it). It packages the binary these tests
//! built (`cargo deb --no-build`, seconds). `SLUICE_TEST_RELEASE=1` makes it, and the
//! Dockerfile's build stage, run the documented release builds themselves
//! (`cargo deb --target <host triple>`, the stage's `cargo build` in a copy of its context:
//! several minutes each, so not in every CI run).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

const UNIT: &str = "packaging/systemd/sluice.service";
const CONFIG_PATH: &str = "/etc/sluice/sluice.yaml";

// ---------------------------------------------------------------------------------------
// systemd

/// The unit as (section, key, value) in file order; repeated keys are kept.
fn parse_unit(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut entries = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{UNIT}: not a key=value line: {line:?}"));
        entries.push((
            section.clone(),
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    entries
}

fn unit_values<'a>(unit: &'a [(String, String, String)], section: &str, key: &str) -> Vec<&'a str> {
    unit.iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

#[test]
fn systemd_unit_has_the_required_directives() {
    let unit = parse_unit(&std::fs::read_to_string(UNIT).unwrap());
    // (section, key, the value it must have, or a word its value must contain with `~`)
    let required = [
        ("Unit", "After", "~network-online.target"),
        (
            "Service",
            "ExecStartPre",
            "/usr/bin/sluice validate -c /etc/sluice/sluice.yaml",
        ),
        (
            "Service",
            "ExecStart",
            "/usr/bin/sluice run -c /etc/sluice/sluice.yaml",
        ),
        ("Service", "ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Service", "Restart", "always"),
        ("Service", "User", "sluice"),
        ("Service", "SupplementaryGroups", "~adm"),
        ("Service", "SupplementaryGroups", "~systemd-journal"),
        ("Service", "EnvironmentFile", "-/etc/default/sluice"),
        ("Service", "StateDirectory", "sluice"),
        ("Service", "AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("Service", "CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("Service", "NoNewPrivileges", "true"),
        ("Service", "ProtectSystem", "strict"),
        ("Service", "ProtectHome", "true"),
        ("Service", "PrivateTmp", "true"),
        ("Service", "ReadOnlyPaths", "~/var/log"),
        ("Service", "LimitNOFILE", "65536"),
        ("Install", "WantedBy", "multi-user.target"),
    ];
    for (section, key, expected) in required {
        let values = unit_values(&unit, section, key);
        let found = match expected.strip_prefix('~') {
            Some(word) => values
                .iter()
                .any(|v| v.split_whitespace().any(|w| w == word)),
            None => values.contains(&expected),
        };
        assert!(
            found,
            "{UNIT}: [{section}] {key} should be {expected:?}, found {values:?}"
        );
    }
    // ProtectSystem=strict makes everything read-only: the state directory must come from
    // StateDirectory (writable), and the config's data_dir must be that directory.
    let host_agent = std::fs::read_to_string("pipelines/host-agent.yaml").unwrap();
    assert!(
        host_agent.contains("data_dir: ${SLUICE_DATA_DIR:-/var/lib/sluice}"),
        "the host agent's data_dir is the unit's StateDirectory /var/lib/sluice"
    );
    // The unit may set no key twice except those systemd accumulates.
    let mut seen = BTreeMap::new();
    for (section, key, _) in &unit {
        *seen.entry((section.as_str(), key.as_str())).or_insert(0) += 1;
    }
    let repeated: Vec<_> = seen
        .iter()
        .filter(|((_, key), n)| **n > 1 && !["SystemCallFilter", "ReadOnlyPaths"].contains(key))
        .collect();
    assert!(repeated.is_empty(), "{UNIT}: keys set twice: {repeated:?}");
}

/// The unit's command lines, with `/usr/bin/sluice` replaced by the test binary and the
/// config path by a config that builds, run as they are written: the CLI accepts them.
#[test]
fn systemd_exec_lines_are_accepted_by_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {}\npipelines:\n  main:\n    sources:\n      - type: demo\n    sinks:\n      - type: blackhole\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let unit = parse_unit(&std::fs::read_to_string(UNIT).unwrap());
    let pre = unit_values(&unit, "Service", "ExecStartPre")[0];
    let args: Vec<String> = pre
        .split_whitespace()
        .skip(1)
        .map(|a| a.replace(CONFIG_PATH, &config.display().to_string()))
        .collect();
    let output = Command::new(support::binary())
        .args(&args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ExecStartPre {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The same validate refuses a broken config, so a bad edit stops the start.
    std::fs::write(
        &config,
        "data_dir: /tmp/x\npipelines:\n  main:\n    sources:\n      - type: nosuch\n",
    )
    .unwrap();
    let output = Command::new(support::binary())
        .args(&args)
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "ExecStartPre refuses a broken config"
    );
    // ExecStart's arguments parse (`run --help` exits 0 only for a known subcommand).
    let start = unit_values(&unit, "Service", "ExecStart")[0];
    let run: Vec<&str> = start.split_whitespace().skip(1).collect();
    assert_eq!(run.first(), Some(&"run"));
    let help = Command::new(support::binary())
        .args([run[0], "--help"])
        .output()
        .unwrap();
    let help_text = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.status.success() && help_text.contains("--config"),
        "{help_text}"
    );
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let Some(analyze) = find_program("systemd-analyze") else {
        eprintln!("systemd-analyze is not installed (apt-get install systemd): skipped");
        return;
    };
    // verify checks that ExecStart binaries exist: point them at the test binary.
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(UNIT)
        .unwrap()
        .replace("/usr/bin/sluice", support::binary());
    let path = dir.path().join("sluice.service");
    std::fs::write(&path, unit).unwrap();
    let output = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Unknown keys and bad values are only warnings: any output is a finding.
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {UNIT}: {}\n{stderr}",
        output.status
    );
}

fn find_program(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
}

// ---------------------------------------------------------------------------------------
// Debian package

/// `[package.metadata.deb]` as JSON, through `cargo metadata`.
fn deb_metadata() -> serde_json::Value {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    metadata["packages"][0]["metadata"]["deb"].clone()
}

#[test]
fn deb_package_installs_the_binary_config_and_unit() {
    let deb = deb_metadata();
    let assets: Vec<(String, String)> = deb["assets"]
        .as_array()
        .expect("assets listed")
        .iter()
        .map(|a| {
            (
                a[0].as_str().unwrap().to_owned(),
                a[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // (source, destination) pairs that must be packaged.
    let required = [
        ("target/release/sluice", "usr/bin/"),
        ("pipelines/host-agent.yaml", "etc/sluice/sluice.yaml"),
        ("packaging/debian/default", "etc/default/sluice"),
    ];
    for (source, destination) in required {
        assert!(
            assets.iter().any(|(s, d)| s == source && d == destination),
            "asset {source} -> {destination} missing from {assets:?}"
        );
    }
    for (source, _) in &assets {
        if source.starts_with("target/") || source.contains('*') {
            continue;
        }
        assert!(Path::new(source).is_file(), "asset {source} does not exist");
    }
    let conf_files: Vec<&str> = deb["conf-files"]
        .as_array()
        .expect("conf-files listed")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(conf_files.contains(&CONFIG_PATH), "{conf_files:?}");
    assert!(
        conf_files.contains(&"/etc/default/sluice"),
        "{conf_files:?}"
    );
    let units = deb["systemd-units"]["unit-scripts"]
        .as_str()
        .expect("systemd-units");
    assert_eq!(Path::new(units).join("sluice.service"), Path::new(UNIT));
    assert!(deb["depends"].as_str().unwrap_or("").contains("adduser"));
}

#[test]
fn maintainer_scripts_are_valid_shell_and_create_the_user() {
    let scripts = deb_metadata()["maintainer-scripts"]
        .as_str()
        .expect("maintainer-scripts")
        .to_owned();
    // (script, words it must contain)
    let cases = [
        (
            "postinst",
            vec![
                "adduser --system",
                "adm systemd-journal",
                "/var/lib/sluice",
                "#DEBHELPER#",
            ],
        ),
        ("postrm", vec!["purge", "deluser", "#DEBHELPER#"]),
    ];
    for (name, words) in cases {
        let path = Path::new(&scripts).join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("#!/bin/sh\n"), "{name}: POSIX sh");
        for word in words {
            assert!(text.contains(word), "{name} should contain {word:?}");
        }
        let syntax = Command::new("sh").arg("-n").arg(&path).output().unwrap();
        assert!(
            syntax.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&syntax.stderr)
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert!(mode & 0o111 != 0, "{name} is executable");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Kubernetes

/// Every YAML document of `packaging/kubernetes/*.yaml`, by kind.
fn manifests() -> BTreeMap<String, Vec<Yaml>> {
    let mut by_kind: BTreeMap<String, Vec<Yaml>> = BTreeMap::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir("packaging/kubernetes")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let docs =
            YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for doc in docs {
            let kind = doc["kind"].as_str();
            let kind = kind.unwrap_or_else(|| panic!("{}: a document has no kind", file.display()));
            assert!(
                doc["apiVersion"].as_str().is_some(),
                "{}: apiVersion",
                file.display()
            );
            assert!(
                doc["metadata"]["name"].as_str().is_some(),
                "{}: metadata.name",
                file.display()
            );
            by_kind.entry(kind.to_owned()).or_default().push(doc);
        }
    }
    by_kind
}

fn one<'a>(manifests: &'a BTreeMap<String, Vec<Yaml>>, kind: &str) -> &'a Yaml {
    let docs = manifests.get(kind).map_or(&[][..], Vec::as_slice);
    assert_eq!(docs.len(), 1, "exactly one {kind}");
    &docs[0]
}

fn list(yaml: &Yaml) -> &[Yaml] {
    yaml.as_vec().map_or(&[][..], Vec::as_slice)
}

fn str_of<'a>(yaml: &'a Yaml, what: &str) -> &'a str {
    yaml.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {yaml:?}"))
}

/// Expands `${VAR}` / `${VAR:-default}` the way the agent does, from `env`.
fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let inner = &rest[start + 2..start + end];
        let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
        out.push_str(env.get(name).map_or(default, String::as_str));
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn expand_follows_the_config_rules() {
    let env: BTreeMap<String, String> = [("A".to_owned(), "x".to_owned())].into();
    let check = |input: &str, expected: &str| assert_eq!(expand(input, &env), expected, "{input}");
    check("${A}", "x");
    check("${A:-y}", "x");
    check("${B:-0.0.0.0:8686}", "0.0.0.0:8686");
    check("a ${B} b", "a  b");
}

#[test]
fn kubernetes_daemonset_mounts_probes_and_config_agree() {
    let all = manifests();
    let namespace = str_of(&one(&all, "Namespace")["metadata"]["name"], "namespace");
    for (kind, docs) in &all {
        // Cluster-scoped kinds have no namespace.
        let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"];
        for doc in docs
            .iter()
            .filter(|_| !cluster_scoped.contains(&kind.as_str()))
        {
            assert_eq!(
                doc["metadata"]["namespace"].as_str(),
                Some(namespace),
                "{kind} namespace"
            );
        }
    }
    let account = one(&all, "ServiceAccount");
    let daemonset = one(&all, "DaemonSet");
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(
        pod["serviceAccountName"].as_str(),
        account["metadata"]["name"].as_str()
    );
    let selector = &daemonset["spec"]["selector"]["matchLabels"];
    for (key, value) in selector.as_hash().expect("selector") {
        assert_eq!(
            &daemonset["spec"]["template"]["metadata"]["labels"][str_of(key, "label")],
            value
        );
    }
    assert!(
        list(&pod["tolerations"])
            .iter()
            .any(|t| t["operator"].as_str() == Some("Exists") && t["key"].is_badvalue()),
        "a toleration for every taint, to run on every node"
    );
    let containers = list(&pod["containers"]);
    assert_eq!(containers.len(), 1);
    let container = &containers[0];

    // The container's environment.
    let mut env = BTreeMap::new();
    for var in list(&container["env"]) {
        let name = str_of(&var["name"], "env name").to_owned();
        if name == "NODE_NAME" {
            assert_eq!(
                var["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
                Some("spec.nodeName")
            );
            env.insert(name, "node-1".to_owned());
        } else if let Some(value) = var["value"].as_str() {
            env.insert(name, value.to_owned());
        }
    }

    // `-c PATH` is the ConfigMap's key, mounted from the config volume.
    let args: Vec<&str> = list(&container["args"])
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    let config_path = args
        .windows(2)
        .find(|w| w[0] == "-c" || w[0] == "--config")
        .map(|w| Path::new(w[1]))
        .expect("args name the config with -c");
    let volumes: BTreeMap<&str, &Yaml> = list(&pod["volumes"])
        .iter()
        .map(|v| (str_of(&v["name"], "volume name"), v))
        .collect();
    let mounts: Vec<&Yaml> = list(&container["volumeMounts"]).iter().collect();
    let config_mount = mounts
        .iter()
        .find(|m| Path::new(str_of(&m["mountPath"], "mountPath")) == config_path.parent().unwrap())
        .expect("a mount at the config's directory");
    assert_eq!(config_mount["readOnly"].as_bool(), Some(true));
    let config_volume = volumes[str_of(&config_mount["name"], "mount name")];
    let configmap = one(&all, "ConfigMap");
    assert_eq!(
        config_volume["configMap"]["name"].as_str(),
        configmap["metadata"]["name"].as_str()
    );
    let file_name = config_path.file_name().unwrap().to_str().unwrap();
    let item = list(&config_volume["configMap"]["items"])
        .iter()
        .find(|i| i["path"].as_str() == Some(file_name))
        .expect("the config volume projects the -c file");
    let key = str_of(&item["key"], "item key");
    let config_text = str_of(&configmap["data"][key], "ConfigMap data key");
    assert_eq!(
        config_text,
        std::fs::read_to_string("pipelines/kubernetes.yaml").unwrap(),
        "the ConfigMap holds pipelines/kubernetes.yaml verbatim"
    );
    assert!(
        config_text.contains("${NODE_NAME}") || config_text.contains("${NODE_NAME:-"),
        "the node name reaches the events"
    );

    // The config, expanded with the pod's environment.
    let config = &YamlLoader::load_from_str(&expand(config_text, &env)).unwrap()[0];
    let data_dir = str_of(&config["data_dir"], "data_dir");
    let api: std::net::SocketAddr = str_of(&config["api"]["address"], "api.address")
        .parse()
        .unwrap();
    assert!(
        api.ip().is_unspecified(),
        "the API listens beyond the pod's loopback for probes"
    );
    let data_mount = mounts
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(data_dir))
        .expect("data_dir is mounted");
    assert_ne!(
        data_mount["readOnly"].as_bool(),
        Some(true),
        "data_dir is writable"
    );
    let data_volume = volumes[str_of(&data_mount["name"], "mount name")];
    assert!(
        data_volume["hostPath"]["path"].as_str().is_some(),
        "data_dir is a hostPath so checkpoints survive the pod"
    );

    // The log directories: read-only hostPath mounts at the same paths.
    for path in ["/var/log/pods", "/var/log/containers"] {
        let mount = mounts
            .iter()
            .find(|m| m["mountPath"].as_str() == Some(path))
            .unwrap_or_else(|| panic!("{path} mounted"));
        assert_eq!(mount["readOnly"].as_bool(), Some(true), "{path} read-only");
        let volume = volumes[str_of(&mount["name"], "mount name")];
        assert_eq!(volume["hostPath"]["path"].as_str(), Some(path));
    }

    // Probes and the metrics port all point at the API.
    let ports = list(&container["ports"]);
    let metrics = ports
        .iter()
        .find(|p| p["name"].as_str() == Some("metrics"))
        .expect("a port named metrics");
    assert_eq!(
        metrics["containerPort"].as_i64(),
        Some(i64::from(api.port()))
    );
    let port_number = |port: &Yaml| -> i64 {
        match port {
            Yaml::Integer(n) => *n,
            Yaml::String(name) => ports
                .iter()
                .find(|p| p["name"].as_str() == Some(name))
                .and_then(|p| p["containerPort"].as_i64())
                .unwrap_or_else(|| panic!("no port named {name}")),
            other => panic!("bad probe port {other:?}"),
        }
    };
    // Readiness follows sink health; liveness only the process' loops (issue 16: a Loki
    // outage must not restart every pod).
    for (probe, path) in [("livenessProbe", "/live"), ("readinessProbe", "/health")] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe} path");
        assert_eq!(
            port_number(&get["port"]),
            i64::from(api.port()),
            "{probe} port"
        );
    }
    let annotations = &daemonset["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(api.port().to_string().as_str())
    );
    assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"));

    // Resources: requests and a memory limit.
    let resources = &container["resources"];
    for (path, value) in [
        (&resources["requests"]["cpu"], "requests.cpu"),
        (&resources["requests"]["memory"], "requests.memory"),
        (&resources["limits"]["memory"], "limits.memory"),
    ] {
        assert!(path.as_str().is_some(), "resources.{value} set");
    }
    // The pod drains before the kubelet kills it.
    let shutdown = config["shutdown_timeout_secs"].as_i64().unwrap_or(30);
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap_or(30);
    assert!(
        grace > shutdown,
        "terminationGracePeriodSeconds {grace} > shutdown_timeout_secs {shutdown}"
    );
}

/// The build stage's `RUN` as a shell script (its `--mount` options left out).
fn dockerfile_build_script(text: &str) -> String {
    let joined = text.replace("\\\n", " ");
    let run = joined
        .lines()
        .find(|l| l.starts_with("RUN ") && l.contains("cargo build"))
        .expect("a RUN with cargo build");
    run.trim_start_matches("RUN ")
        .split_whitespace()
        .skip_while(|word| word.starts_with("--mount="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The Dockerfile's build command is the one that works. Every run: its commands are
/// `cargo build --locked ... --target "${TARGET}"` with `TARGET` the host triple, the
/// lock file is current (what `--locked` needs), and the binary is installed from where
/// cargo puts it for each profile. With `SLUICE_TEST_RELEASE=1`, the build stage itself:
/// the paths it copies, in a directory of their own, built by its command as written
/// (the default `release` profile, from scratch: several minutes).
#[test]
fn dockerfile_build_command_builds() {
    let text = std::fs::read_to_string("packaging/docker/Dockerfile").unwrap();
    let script = dockerfile_build_script(&text);
    for part in [
        "TARGET=\"$(rustc -vV | sed -n 's/^host: //p')\"",
        "cargo build --locked --profile \"${PROFILE}\" --bin sluice --target \"${TARGET}\"",
        "install -D -m 0755 \"target/${TARGET}/${DIR}/sluice\" /out/sluice",
    ] {
        assert!(
            script.contains(part),
            "{part:?} not in the build command: {script}"
        );
    }
    // TARGET is the host triple; DIR is where cargo puts each profile's binary.
    let target = run(Command::new("sh").args(["-c", "rustc -vV | sed -n 's/^host: //p'"]));
    assert_eq!(target.trim(), host_triple());
    let dir_expr = script
        .split("&&")
        .map(str::trim)
        .find(|c| c.starts_with("DIR="))
        .expect("DIR=");
    for (profile, dir) in [("release", "release"), ("small", "small"), ("dev", "debug")] {
        let got = run(Command::new("sh")
            .args(["-c", &format!("{dir_expr} && echo \"$DIR\"")])
            .env("PROFILE", profile));
        assert_eq!(got.trim(), dir, "PROFILE={profile}");
    }
    // The tests' binary is where the script looks for the dev profile's.
    let built = Path::new(support::binary());
    assert!(
        built.ends_with(format!("{}/debug/sluice", host_triple())),
        "{built:?}"
    );
    // Not `--offline`: metadata needs every package of the lock file, also those only other
    // platforms build (`android_system_properties`), which no build here has downloaded
    // unless `cargo deb`'s own `cargo metadata` ran first (a race between the two tests).
    run(outer_cargo(&mut Command::new(env!("CARGO"))).args([
        "metadata",
        "--locked",
        "--format-version",
        "1",
    ]));

    if !std::env::var("SLUICE_TEST_RELEASE").is_ok_and(|v| v == "1") {
        return;
    }
    // The build stage: WORKDIR with what the stage copies, then its command.
    let context = tempfile::tempdir().unwrap();
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.last() == Some(&"/etc/sluice/sluice.yaml") {
            continue; // the runtime stage's config
        }
        for source in &words[1..words.len() - 1] {
            run(Command::new("cp").args(["-r", source]).arg(context.path()));
        }
    }
    let out = context.path().join("out/sluice");
    let script = script.replace("/out/sluice", &out.display().to_string());
    run(outer_cargo(&mut Command::new("sh"))
        .args(["-c", &script])
        .current_dir(context.path())
        .env("PROFILE", "release")
        .env_remove("CARGO_TARGET_DIR"));
    let version = run(Command::new(&out).arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
}

#[test]
fn dockerfile_is_multi_stage_and_runs_the_kubernetes_config() {
    let text = std::fs::read_to_string("packaging/docker/Dockerfile").unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "build and runtime stages: {froms:?}");
    assert!(
        froms[0].contains("rust:") && froms[0].contains("bookworm"),
        "{}",
        froms[0]
    );
    assert!(
        froms[1].contains("debian12") || froms[1].contains("bookworm-slim"),
        "{}",
        froms[1]
    );
    assert!(text.contains("COPY pipelines/kubernetes.yaml /etc/sluice/sluice.yaml"));
    // The image ships the static build: its flags and the allocator's build settings are
    // in .cargo/config.toml, and the binary is where an explicit --target puts it.
    assert!(text.contains("COPY .cargo ./.cargo"));
    assert!(text.contains("--target \"${TARGET}\"") && text.contains("target/${TARGET}/"));
    assert!(text.contains(r#"CMD ["run", "-c", "/etc/sluice/sluice.yaml"]"#));
    assert!(
        text.lines()
            .any(|l| l.starts_with("USER ") && !l.contains(" 0")),
        "non-root by default"
    );
    // Every path the build stage copies exists in the repository.
    for line in text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(
                Path::new(source).exists(),
                "Dockerfile copies {source}, which does not exist"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// The package, built and installed

/// The host's target triple (`.cargo/config.toml` builds for it explicitly).
fn host_triple() -> String {
    let output = Command::new("rustc")
        .args(["--print", "host-tuple"])
        .output()
        .expect("run rustc");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// `cargo` as the developer runs it: without the variables cargo sets for a test process
/// (build scripts that watch `CARGO_MANIFEST_DIR` would otherwise rebuild everything).
fn outer_cargo(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_by_cargo_test = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_EXE_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&name);
        if set_by_cargo_test {
            command.env_remove(name);
        }
    }
    command
}

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{command:?}: {}\n{text}",
        output.status
    );
    text
}

/// Purges the package even when the test fails half-way.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["-P", "sluice"]).output();
    }
}

#[test]
fn deb_builds_installs_and_purges() {
    if !std::env::var("SLUICE_TEST_DEB").is_ok_and(|v| v == "1") {
        eprintln!("SLUICE_TEST_DEB=1 is not set: the .deb is not built and installed (see the file's header)");
        return;
    }
    assert!(
        rustix::process::geteuid().is_root(),
        "SLUICE_TEST_DEB needs root (dpkg -i)"
    );
    let version = Command::new(env!("CARGO"))
        .args(["deb", "--version"])
        .output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "cargo-deb is not installed: cargo install cargo-deb --locked"
    );
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status}", "sluice"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&installed.stdout).contains("installed"),
        "a sluice package is installed on this machine already: not touching it"
    );

    // Build the package.
    let triple = host_triple();
    let out = tempfile::tempdir().unwrap();
    let mut cargo_deb = Command::new(env!("CARGO"));
    cargo_deb.args(["deb", "--target", &triple]);
    if std::env::var("SLUICE_TEST_RELEASE").is_ok_and(|v| v == "1") {
        // Exactly the documented command: a release build.
    } else {
        // The binary these tests run: target/<triple>/<profile dir>/sluice.
        let binary = Path::new(support::binary());
        let dir = binary
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let profile = if dir == "debug" { "dev" } else { dir };
        cargo_deb.args(["--no-build", "--profile", profile]);
    }
    cargo_deb.arg("--output").arg(out.path());
    run(outer_cargo(&mut cargo_deb));
    let deb = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb");
    let contents = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    for path in [
        "./usr/bin/sluice",
        "./etc/sluice/sluice.yaml",
        "./etc/default/sluice",
        "./usr/lib/systemd/system/sluice.service",
        "./usr/share/doc/sluice/examples/host-agent.yaml",
        "./usr/share/doc/sluice/deployment.md",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path} not in the package:\n{contents}"
        );
    }

    // Install it.
    let _purge = Installed;
    run(Command::new("dpkg").arg("-i").arg(&deb));
    let same = |installed: &str, source: &str| {
        assert_eq!(
            std::fs::read(installed).unwrap_or_else(|e| panic!("{installed}: {e}")),
            std::fs::read(source).unwrap(),
            "{installed} is not {source}"
        );
    };
    same("/etc/sluice/sluice.yaml", "pipelines/host-agent.yaml");
    same("/etc/default/sluice", "packaging/debian/default");
    same("/usr/lib/systemd/system/sluice.service", UNIT);
    let version = run(Command::new("/usr/bin/sluice").arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let user = run(Command::new("id").arg("sluice"));
    for group in ["adm", "systemd-journal"] {
        let exists = Command::new("getent").args(["group", group]).output();
        if exists.is_ok_and(|o| o.status.success()) {
            assert!(
                user.contains(&format!("({group})")),
                "sluice in {group}: {user}"
            );
        }
    }
    let state = run(Command::new("stat").args(["-c", "%U:%G %a", "/var/lib/sluice"]));
    assert_eq!(state.trim(), "sluice:sluice 750");
    let config = run(Command::new("stat").args(["-c", "%U:%G %a", "/etc/sluice/sluice.yaml"]));
    assert_eq!(
        config.trim(),
        "root:sluice 640",
        "the service user reads its config"
    );
    // The unit's ExecStartPre as the unit's user: the config is readable and builds.
    run(Command::new("runuser").args([
        "-u",
        "sluice",
        "--",
        "/usr/bin/sluice",
        "validate",
        "-c",
        CONFIG_PATH,
    ]));
    if let Some(analyze) = find_program("systemd-analyze") {
        let output = Command::new(analyze)
            .args([
                "verify",
                "--man=no",
                "/usr/lib/systemd/system/sluice.service",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify of the installed unit: {stderr}"
        );
    }
    assert!(
        Path::new("/etc/systemd/system/multi-user.target.wants/sluice.service").exists(),
        "the service is enabled"
    );

    // Purge it: nothing left.
    run(Command::new("dpkg").args(["-P", "sluice"]));
    for path in [
        "/usr/bin/sluice",
        "/etc/sluice/sluice.yaml",
        "/var/lib/sluice",
        "/usr/lib/systemd/system/sluice.service",
        "/etc/systemd/system/multi-user.target.wants/sluice.service",
    ] {
        assert!(!Path::new(path).exists(), "{path} left after purge");
    }
    let user = Command::new("getent")
        .args(["passwd", "sluice"])
        .output()
        .unwrap();
    assert!(
        !user.status.success(),
        "the sluice user is removed on purge"
    );
}

// ---------------------------------------------------------------------------------------
// link order (packaging/symbol-order)

/// `trace_functions.py`, which made `symbol-order.txt`, lists the functions a run of the
/// agent went through, first run first, and the run itself is unchanged by the tracing
/// (`sluice --version` prints the same line).
#[test]
fn trace_functions_lists_the_functions_a_run_went_through() {
    let binary = env!("CARGO_BIN_EXE_sluice");
    let output = Command::new("python3")
        .arg("packaging/symbol-order/trace_functions.py")
        .args(["20", binary, "--version"])
        .output()
        .expect("run python3 (apt-get install python3)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let functions: Vec<&str> = std::str::from_utf8(&output.stdout)
        .unwrap()
        .lines()
        .collect();
    assert!(
        stderr.contains(&format!("sluice {}", env!("CARGO_PKG_VERSION"))),
        "{stderr}"
    );
    assert_eq!(functions.first(), Some(&"_start"), "{stderr}");
    let position = |part: &str| {
        functions
            .iter()
            .position(|f| f.contains(part))
            .unwrap_or_else(|| panic!("no function with {part:?} in {} listed", functions.len()))
    };
    // The agent's own main, after the C runtime's entry, and its argument parsing after it.
    assert!(position("__libc_start_main") < position("6sluice4main"));
    assert!(position("6sluice4main") < position("6sluice3cli4args"));
    // Each function once, and far fewer than the binary has: only what ran.
    let unique: std::collections::HashSet<&&str> = functions.iter().collect();
    assert_eq!(unique.len(), functions.len());
    assert!(functions.len() < 5_000, "{} functions", functions.len());
}
