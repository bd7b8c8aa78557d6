//! Issue 16: the control API is closed by default. `POST /reload` from a non-loopback peer
//! is refused unless `api.reload_token` is set and sent; `/live` answers for a liveness
//! probe; connections are capped and must send their headers in time.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use support::{wait_for, Agent};

/// The address the machine would use to leave it (no packet is sent), if not loopback.
fn non_loopback_ip() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

fn request(addr: SocketAddr, head: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(
        stream,
        "{head}Host: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    Some((status, response))
}

fn config(dir: &std::path::Path, port: u16, api: &str) -> String {
    format!(
        "data_dir: {}\napi:\n  address: 0.0.0.0:{port}\n{api}pipelines:\n  p:\n    sources:\n      - type: demo\n        rate: 10\n    sinks:\n      - type: blackhole\n",
        dir.join("data").display()
    )
}

fn start(dir: &std::path::Path, api: &str) -> (Agent, u16) {
    let port = support::free_port();
    let path = dir.join("sluice.yaml");
    std::fs::write(&path, config(dir, port, api)).unwrap();
    let local: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    (
        Agent::start_file(&path, local, std::process::Stdio::null()),
        port,
    )
}

#[test]
fn reload_from_a_non_loopback_peer_is_refused_by_default() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("no non-loopback address on this machine: covered by api::tests only");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (agent, port) = start(dir.path(), "");
    let remote = SocketAddr::new(ip, port);
    let (status, text) = request(remote, "POST /reload HTTP/1.1\r\n").expect("an answer");
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("loopback"), "{text}");
    // Reads stay open to everyone (probes, scrapes).
    assert_eq!(
        request(remote, "GET /live HTTP/1.1\r\n").map(|r| r.0),
        Some(200)
    );
    assert_eq!(
        request(remote, "GET /health HTTP/1.1\r\n").map(|r| r.0),
        Some(200)
    );
    // Loopback may reload.
    let local = SocketAddr::new("127.0.0.1".parse().unwrap(), port);
    assert_eq!(
        request(local, "POST /reload HTTP/1.1\r\n").map(|r| r.0),
        Some(200)
    );
    assert!(agent.terminate().success());
}

#[test]
fn reload_with_the_token_is_accepted_from_elsewhere() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("no non-loopback address on this machine: covered by api::tests only");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (agent, port) = start(dir.path(), "  reload_token: s3cret-s3cret-s3cret\n");
    let remote = SocketAddr::new(ip, port);
    let without = request(remote, "POST /reload HTTP/1.1\r\n").map(|r| r.0);
    assert_eq!(without, Some(403));
    let wrong = request(
        remote,
        "POST /reload HTTP/1.1\r\nAuthorization: Bearer s3cret-s3cret-s3creX\r\n",
    );
    assert_eq!(wrong.map(|r| r.0), Some(403));
    let right = request(
        remote,
        "POST /reload HTTP/1.1\r\nAuthorization: Bearer s3cret-s3cret-s3cret\r\n",
    );
    assert_eq!(right.map(|r| r.0), Some(200));
    assert!(agent.terminate().success());
}

#[test]
fn slow_headers_time_out_and_a_silent_client_gives_its_slot_to_a_probe() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, port) = start(
        dir.path(),
        "  header_timeout_secs: 1\n  max_connections: 4\n",
    );
    let local: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Four silent connections hold every slot: a fifth takes the oldest one's slot, so a
    // probe is answered while slow clients hold the rest (before, it was closed at once).
    let mut silent: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(local).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut fifth = TcpStream::connect(local).unwrap();
    fifth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = fifth.write_all(b"GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    let _ = fifth.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "the fifth: {answer:?}");
    let mut buffer = [0u8; 64];
    let mut oldest = silent.remove(0);
    oldest
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(
        matches!(oldest.read(&mut buffer), Ok(0)),
        "the oldest silent connection gave its slot up"
    );
    // The others are closed after the header timeout.
    let started = Instant::now();
    for mut stream in silent {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert!(matches!(stream.read(&mut buffer), Ok(0) | Err(_)));
    }
    assert!(started.elapsed() < Duration::from_secs(4));
    wait_for("the API serves again", Duration::from_secs(5), || {
        agent.get("/live").is_some_and(|r| r.0 == 200)
    });
    assert_eq!(
        agent.metric_sum("sluice_api_connections_refused_total", &[]),
        0.0,
        "a slot was taken from a silent connection, none refused"
    );
    assert!(agent.terminate().success());
}

/// `HEAD` answers as `GET` without a body (probes, `curl -I`); a known path with another
/// method is `405` with `Allow`, not `404`.
#[test]
fn head_is_get_without_a_body_and_a_wrong_method_is_405() {
    let dir = tempfile::tempdir().unwrap();
    let (_agent, port) = start(dir.path(), "");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for path in ["/metrics", "/health", "/live"] {
        let (status, response) = request(addr, &format!("HEAD {path} HTTP/1.1\r\n")).unwrap();
        assert_eq!(status, 200, "{path}: {response}");
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
        assert!(body.is_empty(), "{path}: HEAD has no body: {body:?}");
    }
    let (status, response) = request(addr, "POST /metrics HTTP/1.1\r\n").unwrap();
    assert_eq!(status, 405, "{response}");
    assert!(
        response.to_ascii_lowercase().contains("allow: get, head"),
        "{response}"
    );
    let (status, response) = request(addr, "GET /reload HTTP/1.1\r\n").unwrap();
    assert_eq!(status, 405, "{response}");
    assert!(
        response.to_ascii_lowercase().contains("allow: post"),
        "{response}"
    );
    let (status, _) = request(addr, "GET /nothing HTTP/1.1\r\n").unwrap();
    assert_eq!(status, 404);
}
