//! A protocol-exact fake Grafana Loki for end-to-end tests: an HTTP/1.1 server on
//! 127.0.0.1:0 (hand-written, one thread per connection, keep-alive) that accepts
//! `POST /loki/api/v1/push` as protobuf + snappy block or JSON (+ gzip), checks the
//! `Content-Type`, answers `204` like Loki, records every entry with its stream labels and
//! tenant, and misbehaves on demand: a status with `Retry-After` and body, closing the
//! connection mid-response, a non-HTTP byte stream, hanging, a truncated 200.
//!
//! With [`Limits`] it validates entries as Loki's distributor does (`pkg/distributor/
//! validator.go`, Loki 3.x): it keeps the valid entries of a push and answers 400 with
//! Loki's texts for the refused ones (too old, too new, too long), grouped as Loki's
//! `GroupedErrors` does (`N errors like: ..`, joined by `; `), stream labels as Loki renders
//! them (with the `service_name` it adds). It also counts re-sent lines: exact duplicates
//! (same stream, time and line, which Loki drops) and lines sent again with another time.
//!
//! The protobuf messages are written here again from Loki's `push.proto`, independently of
//! the agent's, so a wrong field number on either side fails the tests.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http_request::{next_request, HttpRequest};

/// `logproto.PushRequest` (push.proto: `repeated StreamAdapter streams = 1`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `StreamAdapter { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `EntryAdapter { Timestamp timestamp = 1; string line = 2; repeated LabelPairAdapter structuredMetadata = 3; }`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<ProtoTimestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

/// `google.protobuf.Timestamp { int64 seconds = 1; int32 nanos = 2; }`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoTimestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `LabelPairAdapter { string name = 1; string value = 2; }`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPairAdapter {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// How the fake answers a push.
#[derive(Clone, Debug, PartialEq)]
pub enum Behavior {
    /// Decode, record, `204 No Content`.
    Accept,
    /// Answer this status (nothing recorded), with an optional `Retry-After` and a body.
    Status {
        code: u16,
        retry_after: Option<String>,
        body: String,
    },
    /// Write half a status line, then close the connection.
    CloseMidResponse,
    /// Answer with bytes that are not HTTP at all, then close.
    Garbage,
    /// Read the request, then say nothing for this long, then close.
    Hang(Duration),
    /// `200 OK` with a `Content-Length` longer than the garbage body sent, then close.
    TruncatedOk,
}

/// One received entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The stream's labels as sent (`{job="a"}` for protobuf; rendered the same for JSON).
    pub labels: String,
    /// `X-Scope-OrgID`, if any.
    pub tenant: Option<String>,
    /// Nanoseconds since the epoch.
    pub timestamp: i64,
    /// The log line.
    pub line: String,
    /// Structured metadata pairs.
    pub metadata: Vec<(String, String)>,
}

/// One request the fake answered (or misbehaved on).
#[derive(Clone, Debug)]
pub struct Request {
    /// When the request had been read completely.
    pub received: Instant,
    /// What was answered (0 for the non-HTTP misbehaviours).
    pub status: u16,
    /// Entries recorded from it.
    pub entries: usize,
}

/// Loki's `limits_config` validation settings.
#[derive(Clone, Debug)]
pub struct Limits {
    /// `reject_old_samples_max_age` (with `reject_old_samples: true`).
    pub reject_old_samples_max_age: Duration,
    /// `creation_grace_period`.
    pub creation_grace_period: Duration,
    /// `max_line_size` in bytes (0: no limit).
    pub max_line_size: usize,
}

/// An entry Loki refused, with its message.
#[derive(Clone, Debug)]
pub struct Refused {
    pub entry: Entry,
    pub message: String,
}

#[derive(Default)]
struct State {
    limits: Option<Limits>,
    refused: Vec<Refused>,
    /// First time seen per (labels, line); exact keys seen.
    first_time: std::collections::HashMap<(String, String), i64>,
    exact: std::collections::HashSet<(String, i64, String)>,
    duplicates: usize,
    retimed: usize,
    /// The path pushes must use (`/loki/api/v1/push` unless set).
    push_path: Option<String>,
    script: VecDeque<Behavior>,
    until: Option<(Instant, Behavior)>,
    entries: Vec<Entry>,
    requests: Vec<Request>,
    errors: Vec<String>,
    /// Tallying fakes keep only each line's `seq=` number, not the entry.
    tally: bool,
    seqs: Vec<u64>,
    tallied: usize,
}

/// A running fake Loki; stops when dropped.
pub struct FakeLoki {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl FakeLoki {
    /// Starts listening on 127.0.0.1:0.
    pub fn start() -> FakeLoki {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake loki");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_state, thread_stop) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            while !thread_stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (state, stop) = (thread_state.clone(), thread_stop.clone());
                        std::thread::spawn(move || serve(stream, state, stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeLoki { addr, state, stop }
    }

    /// Starts a fake that takes pushes only at `path` (a Loki behind a path prefix, or
    /// VictoriaLogs' `/insert/loki/api/v1/push`); other paths answer 400.
    pub fn start_at(path: &str) -> FakeLoki {
        let loki = Self::start();
        loki.state.lock().unwrap().push_path = Some(path.to_owned());
        loki
    }

    /// Starts a fake that validates entries like Loki with `limits`.
    pub fn start_validating(limits: Limits) -> FakeLoki {
        let loki = Self::start();
        loki.state.lock().unwrap().limits = Some(limits);
        loki
    }

    /// Starts a fake that keeps only the `seq=N` number of each line it accepts (8 bytes an
    /// entry instead of the entry and its duplicate keys: for backlogs of many millions).
    /// [`FakeLoki::entry_count`] counts them; [`FakeLoki::take_seqs`] hands them over.
    pub fn start_tallying() -> FakeLoki {
        let loki = Self::start();
        loki.state.lock().unwrap().tally = true;
        loki
    }

    /// A tallying fake's `seq=` numbers so far, in arrival order (lines without one are
    /// counted by [`FakeLoki::entry_count`] only); the tally starts again empty.
    pub fn take_seqs(&self) -> Vec<u64> {
        std::mem::take(&mut self.state.lock().unwrap().seqs)
    }

    /// Entries refused so far, with Loki's message for each.
    pub fn refused(&self) -> Vec<Refused> {
        self.state.lock().unwrap().refused.clone()
    }

    /// Entries received again with the same stream, time and line (Loki drops them).
    pub fn exact_duplicates(&self) -> usize {
        self.state.lock().unwrap().duplicates
    }

    /// Lines received again in the same stream with a time other than their first one
    /// (Loki would store them twice).
    pub fn retimed_duplicates(&self) -> usize {
        self.state.lock().unwrap().retimed
    }

    /// `http://127.0.0.1:port`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next requests get these behaviours, one each, then [`Behavior::Accept`] again.
    pub fn script(&self, behaviors: impl IntoIterator<Item = Behavior>) {
        self.state.lock().unwrap().script.extend(behaviors);
    }

    /// Every request gets `behavior` for `duration` (after the script).
    pub fn behave_for(&self, behavior: Behavior, duration: Duration) {
        self.state.lock().unwrap().until = Some((Instant::now() + duration, behavior));
    }

    /// A Loki that answers `503` to everything for an hour (until told otherwise with
    /// [`FakeLoki::behave_for`]).
    #[allow(dead_code)]
    pub fn start_down() -> FakeLoki {
        let loki = FakeLoki::start();
        let down = Behavior::Status {
            code: 503,
            retry_after: None,
            body: "down".into(),
        };
        loki.behave_for(down, Duration::from_secs(3600));
        loki
    }

    /// Everything received so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.state.lock().unwrap().entries.clone()
    }

    /// How many entries were received.
    pub fn entry_count(&self) -> usize {
        let state = self.state.lock().unwrap();
        state.entries.len() + state.tallied
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Protocol violations seen (wrong content type, undecodable body, ...).
    pub fn errors(&self) -> Vec<String> {
        self.state.lock().unwrap().errors.clone()
    }
}

impl Drop for FakeLoki {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(stream: TcpStream, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    // As Go's net/http (Loki) does: a reply written in pieces is not held back by Nagle's
    // algorithm until the client's delayed ACK (~40 ms a request on Linux).
    let _ = stream.set_nodelay(true);
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while let Some(request) = next_request(&mut reader, &stop) {
        let received = Instant::now();
        let behavior = {
            let mut state = state.lock().unwrap();
            match state.script.pop_front() {
                Some(behavior) => behavior,
                None => match &state.until {
                    Some((until, behavior)) if *until > received => behavior.clone(),
                    _ => Behavior::Accept,
                },
            }
        };
        let (status, entries, keep_open) = match behavior {
            Behavior::Accept => {
                let (status, entries, body) = accept(&request, &state);
                let reason = if status == 204 {
                    "No Content"
                } else {
                    "Bad Request"
                };
                let _ = write!(
                    writer,
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                (status, entries, true)
            }
            Behavior::Status {
                code,
                retry_after,
                body,
            } => {
                let mut head = format!(
                    "HTTP/1.1 {code} Whatever\r\nContent-Length: {}\r\n",
                    body.len()
                );
                if let Some(retry_after) = retry_after {
                    head.push_str(&format!("Retry-After: {retry_after}\r\n"));
                }
                let _ = write!(writer, "{head}\r\n{body}");
                (code, 0, true)
            }
            Behavior::CloseMidResponse => {
                let _ = writer.write_all(b"HTTP/1.1 20");
                (0, 0, false)
            }
            Behavior::Garbage => {
                let _ = writer
                    .write_all(b"\x00\xffSSH-2.0-OpenSSH\r\n\x16\x03\x01 not http at all\r\n\r\n");
                (0, 0, false)
            }
            Behavior::Hang(duration) => {
                let until = Instant::now() + duration;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                (0, 0, false)
            }
            Behavior::TruncatedOk => {
                let _ = writer
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 64\r\n\r\n\x13\x37garbage");
                (200, 0, false)
            }
        };
        let _ = writer.flush();
        state.lock().unwrap().requests.push(Request {
            received,
            status,
            entries,
        });
        if !keep_open {
            let _ = writer.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

/// Decodes, validates and records a push; (status, entries recorded, reply body).
fn accept(request: &HttpRequest, state: &Mutex<State>) -> (u16, usize, String) {
    let fail = |error: String| {
        state.lock().unwrap().errors.push(error);
        (400, 0, String::new())
    };
    let push_path = state.lock().unwrap().push_path.clone();
    let push_path = push_path.as_deref().unwrap_or("/loki/api/v1/push");
    if request.method != "POST" || request.path != push_path {
        return fail(format!("unexpected {} {}", request.method, request.path));
    }
    let tenant = request.header("x-scope-orgid").map(str::to_owned);
    let content_type = request.header("content-type").unwrap_or("");
    let encoding = request.header("content-encoding");
    let entries = match content_type {
        "application/x-protobuf" => {
            if !matches!(encoding, None | Some("snappy")) {
                return fail(format!("protobuf with content-encoding {encoding:?}"));
            }
            match decode_protobuf(&request.body, &tenant) {
                Ok(entries) => entries,
                Err(error) => return fail(error),
            }
        }
        "application/json" => {
            let body = match encoding {
                None => request.body.clone(),
                Some("gzip") => {
                    let mut out = Vec::new();
                    if let Err(e) =
                        flate2::read::GzDecoder::new(&request.body[..]).read_to_end(&mut out)
                    {
                        return fail(format!("bad gzip: {e}"));
                    }
                    out
                }
                Some(other) => return fail(format!("json with content-encoding {other}")),
            };
            match decode_json(&body, &tenant) {
                Ok(entries) => entries,
                Err(error) => return fail(error),
            }
        }
        other => return fail(format!("unexpected content-type {other:?}")),
    };
    let mut state = state.lock().unwrap();
    let (entries, refused) = match &state.limits {
        Some(limits) => validate(limits, entries),
        None => (entries, Vec::new()),
    };
    let n = entries.len();
    if state.tally {
        state.tallied += n;
        state
            .seqs
            .extend(entries.iter().filter_map(|entry| seq_of(&entry.line)));
        return (204, n, String::new());
    }
    for entry in &entries {
        let key = (entry.labels.clone(), entry.line.clone());
        match state.first_time.get(&key) {
            Some(&first) if first != entry.timestamp => state.retimed += 1,
            Some(_) => {}
            None => {
                state.first_time.insert(key, entry.timestamp);
            }
        }
        let exact = (entry.labels.clone(), entry.timestamp, entry.line.clone());
        if !state.exact.insert(exact) {
            state.duplicates += 1;
        }
    }
    state.entries.extend(entries);
    if refused.is_empty() {
        return (204, n, String::new());
    }
    let body = grouped_errors(refused.iter().map(|r| r.message.as_str()));
    state.refused.extend(refused);
    // Go's http.Error ends the text with a newline.
    (400, n, format!("{body}\n"))
}

/// Loki's distributor checks, in its order: too old, too new, line too long.
fn validate(limits: &Limits, entries: Vec<Entry>) -> (Vec<Entry>, Vec<Refused>) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let oldest = now - limits.reject_old_samples_max_age.as_nanos() as i64;
    let newest = now + limits.creation_grace_period.as_nanos() as i64;
    let mut kept = Vec::new();
    let mut refused = Vec::new();
    for entry in entries {
        let labels = loki_labels(&entry.labels);
        let message = if entry.timestamp < oldest {
            format!(
                "entry for stream '{labels}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                rfc3339(entry.timestamp),
                rfc3339(oldest)
            )
        } else if entry.timestamp > newest {
            format!(
                "entry for stream '{labels}' has timestamp too new: {}",
                rfc3339(entry.timestamp)
            )
        } else if limits.max_line_size != 0 && entry.line.len() > limits.max_line_size {
            format!(
                "max entry size '{}' bytes exceeded for stream '{labels}' while adding an entry with length '{}' bytes",
                limits.max_line_size,
                entry.line.len()
            )
        } else {
            kept.push(entry);
            continue;
        };
        refused.push(Refused { entry, message });
    }
    (kept, refused)
}

/// Go's `time.Format(time.RFC3339)` in UTC: seconds, `Z`.
fn rfc3339(nanos: i64) -> String {
    chrono::DateTime::from_timestamp(nanos.div_euclid(1_000_000_000), 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The label set as Loki renders it after parsing: sorted, with the `service_name` Loki
/// adds from the first of its discovery labels present (`unknown_service` otherwise).
fn loki_labels(sent: &str) -> String {
    let inner = sent.trim_start_matches('{').trim_end_matches('}');
    let mut pairs: Vec<(String, String)> = inner
        .split(", ")
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect();
    const DISCOVERY: [&str; 12] = [
        "service",
        "app",
        "application",
        "name",
        "app_kubernetes_io_name",
        "container",
        "container_name",
        "k8s_container_name",
        "component",
        "workload",
        "job",
        "k8s_job_name",
    ];
    if !pairs.iter().any(|(k, _)| k == "service_name") {
        let service = DISCOVERY
            .iter()
            .find_map(|name| pairs.iter().find(|(k, _)| k == name))
            .map_or("unknown_service".to_owned(), |(_, v)| v.clone());
        pairs.push(("service_name".into(), service));
    }
    pairs.sort();
    let rendered: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", rendered.join(", "))
}

/// `util.GroupedErrors.Error()`: identical messages counted, `N errors like: ` before each
/// when there is more than one message or more than one of it, joined by `; `.
fn grouped_errors<'a>(messages: impl Iterator<Item = &'a str>) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for message in messages {
        match counts.iter_mut().find(|(m, _)| *m == message) {
            Some((_, n)) => *n += 1,
            None => counts.push((message, 1)),
        }
    }
    // Go iterates a map: the order is random.
    fastrand::shuffle(&mut counts);
    let unique = counts.len();
    let parts: Vec<String> = counts
        .into_iter()
        .map(|(message, n)| match unique > 1 || n > 1 {
            true => format!("{n} errors like: {message}"),
            false => message.to_owned(),
        })
        .collect();
    parts.join("; ")
}

fn decode_protobuf(body: &[u8], tenant: &Option<String>) -> Result<Vec<Entry>, String> {
    use prost::Message as _;
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("bad snappy block: {e}"))?;
    let push = PushRequest::decode(&raw[..]).map_err(|e| format!("bad protobuf: {e}"))?;
    let mut out = Vec::new();
    for stream in push.streams {
        if !stream.labels.starts_with('{') || !stream.labels.ends_with('}') {
            return Err(format!("bad labels {:?}", stream.labels));
        }
        for entry in stream.entries {
            let ts = entry.timestamp.ok_or("entry without timestamp")?;
            out.push(Entry {
                labels: stream.labels.clone(),
                tenant: tenant.clone(),
                timestamp: ts.seconds * 1_000_000_000 + i64::from(ts.nanos),
                line: entry.line,
                metadata: entry
                    .structured_metadata
                    .into_iter()
                    .map(|p| (p.name, p.value))
                    .collect(),
            });
        }
    }
    Ok(out)
}

fn decode_json(body: &[u8], tenant: &Option<String>) -> Result<Vec<Entry>, String> {
    let push: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("bad json: {e}"))?;
    let streams = push["streams"].as_array().ok_or("no streams array")?;
    let mut out = Vec::new();
    for stream in streams {
        let labels = stream["stream"].as_object().ok_or("no stream object")?;
        let mut pairs: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        pairs.sort();
        let rendered: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        let labels = format!("{{{}}}", rendered.join(", "));
        for value in stream["values"].as_array().ok_or("no values array")? {
            let ts: i64 = value[0]
                .as_str()
                .ok_or("timestamp not a string")?
                .parse()
                .map_err(|_| "bad timestamp")?;
            let line = value[1].as_str().ok_or("line not a string")?.to_owned();
            let metadata = value[2]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Entry {
                labels: labels.clone(),
                tenant: tenant.clone(),
                timestamp: ts,
                line,
                metadata,
            });
        }
    }
    Ok(out)
}

/// The `seq=N` number of a demo line.
pub fn seq_of(line: &str) -> Option<u64> {
    let start = line.find("seq=")? + 4;
    let digits: String = line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
