//! Shared helpers for end-to-end tests: run the agent binary with a config, wait on
//! conditions with deadlines, read its API. Each test file uses what it needs.
#![allow(dead_code)]

pub mod fake_elasticsearch;
pub mod fake_loki;
pub mod fake_remote_write;
pub mod http_request;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The agent binary built by cargo for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_sluice")
}

/// A free TCP port on 127.0.0.1 (bind :0, read it, release it), never one this test
/// process handed out before: the kernel may give a just-released port again, and two
/// listeners of one agent (say syslog and the API) must not be configured on the same port.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind 127.0.0.1:0");
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// Waits until `condition` holds, polling every 20 ms; panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running agent process, killed when dropped.
pub struct Agent {
    pub child: Child,
    pub api: SocketAddr,
    pub config: PathBuf,
}

impl Agent {
    /// Writes `config` (YAML; `{api}` is replaced by a free API address) to `dir/sluice.yaml`
    /// and starts `sluice run -c` on it, waiting until `/health` answers.
    pub fn start(dir: &Path, config: &str) -> Agent {
        let port = free_port();
        let api: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let path = dir.join("sluice.yaml");
        std::fs::write(&path, config.replace("{api}", &api.to_string())).unwrap();
        Self::start_file(&path, api, Stdio::null())
    }

    /// Like [`Agent::start`], with the agent's log (stderr) written to `dir/agent.log`
    /// (see [`Agent::log`]).
    #[allow(dead_code)]
    pub fn start_logged(dir: &Path, config: &str) -> Agent {
        let port = free_port();
        let api: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let path = dir.join("sluice.yaml");
        std::fs::write(&path, config.replace("{api}", &api.to_string())).unwrap();
        let log = std::fs::File::create(dir.join("agent.log")).unwrap();
        Self::spawn(&path, api, Stdio::null(), Stdio::from(log))
    }

    /// What an agent started with [`Agent::start_logged`] has logged so far.
    #[allow(dead_code)]
    pub fn log(&self) -> String {
        let path = self.config.with_file_name("agent.log");
        String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
    }

    /// Starts the agent on an existing config file whose API listens on `api`.
    pub fn start_file(config: &Path, api: SocketAddr, stdin: Stdio) -> Agent {
        Self::spawn(config, api, stdin, Stdio::inherit())
    }

    fn spawn(config: &Path, api: SocketAddr, stdin: Stdio, stderr: Stdio) -> Agent {
        let child = Command::new(binary())
            .args(["run", "-c"])
            .arg(config)
            .env(
                "SLUICE_LOG",
                std::env::var("SLUICE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start sluice");
        let mut agent = Agent {
            child,
            api,
            config: config.to_owned(),
        };
        wait_for("the agent's API", Duration::from_secs(30), || {
            match agent.child.try_wait() {
                // A short run may finish before its API was polled: the caller's wait()
                // sees the (cached) exit status.
                Ok(Some(status)) if status.success() => return true,
                Ok(Some(status)) => panic!("agent exited early: {status}"),
                _ => {}
            }
            http_get(api, "/health").is_some()
        });
        agent
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        signal(&self.child, "TERM");
        self.wait(Duration::from_secs(60))
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "agent did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET path` on the API: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.api, path)
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        self.get("/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Sum of every sample of `name` whose labels contain all of `labels` (`k="v"` pairs).
    pub fn metric_sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal by name (`TERM`, `HUP`, `INT`) with kill(1).
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(status.success());
}

/// A minimal HTTP/1.1 request; `None` if nothing answers.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// `GET path`.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http_request(addr, "GET", path, "")
}

/// Sum of samples of `name` in Prometheus text whose labels include every pair of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, l)) => (n, l),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Reads a JSON-lines file written by an agent that was killed with `kill -9`: a write cut
/// short leaves one torn line (the sink starts the next write on a fresh line), which is
/// skipped; its events were not acknowledged and are written again. Every other line must
/// be a whole event.
pub fn read_json_lines_after_crash(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A file source on `dir/logs/*.log` into a file sink at `out`, checkpoints in `data`;
/// `top` adds top-level keys (e.g. `shutdown_timeout_secs: 5\n`).
pub fn file_to_file_config(
    dir: &Path,
    data: &Path,
    api: SocketAddr,
    out: &Path,
    top: &str,
) -> String {
    format!(
        r#"data_dir: {data}
api: {{ address: "{api}" }}
{top}pipelines:
  p:
    sources:
      - type: file
        include: ["{logs}/*.log"]
        glob_interval_ms: 100
    sinks:
      - type: file
        path: {out}
"#,
        data = data.display(),
        logs = dir.join("logs").display(),
        out = out.display(),
    )
}

/// Appends `text` to `path` (created if missing), as a logging application would.
pub fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

/// Reads a JSON-lines file (missing file: empty). A last line without its newline is still
/// being written by the agent (a long line goes out in more than one write): left for the
/// next read.
pub fn read_json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}
