//! A protocol-exact fake Elasticsearch 8 for end-to-end tests: an HTTP/1.1 server on
//! 127.0.0.1:0 (hand-written, one thread per connection, keep-alive).
//!
//! `POST /_bulk` and `POST /<index>/_bulk` (gzip when `Content-Encoding: gzip`): the NDJSON
//! body is parsed strictly as action/document pairs (a malformed pair, a missing final
//! newline or a wrong content type is recorded as a protocol error and answered 400, as ES
//! does). Documents are stored by (index, `_id`); receipts are counted per `_id`. Each item
//! is answered like ES: 201 created / 200 updated; `create` of an existing `_id` gets 409
//! `version_conflict_engine_exception`; an injection rule can answer chosen items 429
//! `es_rejected_execution_exception` or 400 `mapper_parsing_exception`. `filter_path` is
//! honoured for the `items.*.status` / `items.*.error.*` form the agent sends.
//! Whole requests misbehave on demand: a status (503), garbage instead of JSON, or a reply
//! with one item too few. `GET /` answers a version document. Body bytes are summed as
//! they arrived and decompressed (`wire_bytes`, `ndjson_bytes`) for the benches.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::http_request::{next_request, HttpRequest};

/// How the fake answers a whole `_bulk` request.
#[derive(Clone, Debug, PartialEq)]
pub enum Behavior {
    /// Process the items, answer per item.
    Accept,
    /// Answer this status with an ES error body; nothing stored.
    Status(u16),
    /// Process (store) the items, then answer `200` with a body that is not JSON.
    Garbage,
    /// Process (store) the items, then answer with one item fewer than requested.
    WrongItemCount,
}

/// What the injection rule decides for one item.
#[derive(Clone, Debug, PartialEq)]
pub enum ItemFault {
    /// `429 es_rejected_execution_exception`.
    Reject429,
    /// `400 mapper_parsing_exception` with this reason.
    Mapping(String),
}

/// (document, receipts of its `_id` so far including this one) → a fault or none.
pub type Rule = Arc<dyn Fn(&serde_json::Value, u32) -> Option<ItemFault> + Send + Sync>;

/// One stored document.
#[derive(Clone, Debug)]
pub struct Doc {
    pub index: String,
    pub id: String,
    /// `index` or `create`.
    pub action: String,
    /// The `message` field.
    pub message: String,
    /// The whole document (not kept by a lean fake).
    pub source: Option<serde_json::Value>,
}

#[derive(Default)]
struct State {
    /// Serve only `<prefix>/_bulk`, like VictoriaLogs (`/insert/elasticsearch/_bulk`):
    /// any other path answers its `400 unsupported path requested: "<path>"`.
    bulk_only: Option<String>,
    /// `400` answers given for refused paths.
    refused_paths: u64,
    script: VecDeque<Behavior>,
    rule: Option<Rule>,
    lean: bool,
    docs: HashMap<(String, String), Doc>,
    receipts: HashMap<String, u32>,
    auto_ids: u64,
    requests: u64,
    items_received: u64,
    /// `_bulk` request bodies as they arrived (compressed when gzip), summed.
    wire_bytes: u64,
    /// The same bodies decompressed (NDJSON), summed.
    ndjson_bytes: u64,
    errors: Vec<String>,
    authorization: Vec<String>,
    paths: Vec<String>,
    /// When each request arrived.
    arrivals: Vec<std::time::Instant>,
    /// A `Retry-After` value sent with every reply.
    retry_after: Option<String>,
    /// Every `_bulk` request is answered 503 (an outage), nothing stored.
    down: bool,
}

/// A running fake Elasticsearch; stops when dropped.
pub struct FakeElasticsearch {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl FakeElasticsearch {
    /// Starts listening on 127.0.0.1:0, keeping whole documents.
    pub fn start() -> FakeElasticsearch {
        Self::start_with(false)
    }

    /// Like [`FakeElasticsearch::start`] but keeps only index, id and message per document
    /// (for a million documents).
    pub fn start_lean() -> FakeElasticsearch {
        Self::start_with(true)
    }

    fn start_with(lean: bool) -> FakeElasticsearch {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake elasticsearch");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(State {
            lean,
            ..State::default()
        }));
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
        FakeElasticsearch { addr, state, stop }
    }

    /// An Elasticsearch-compatible store that serves only `<prefix>/_bulk` (VictoriaLogs
    /// serves `/insert/elasticsearch/_bulk`): `/<index>/_bulk` is answered as it does,
    /// `400 unsupported path requested: "<path>"`.
    pub fn start_bulk_only(prefix: &str) -> FakeElasticsearch {
        let es = Self::start_with(false);
        es.state.lock().unwrap().bulk_only = Some(prefix.to_owned());
        es
    }

    /// When each request arrived, in order.
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        self.state.lock().unwrap().arrivals.clone()
    }

    /// While `down`, every `_bulk` request is answered 503 and nothing is stored.
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    /// Sends `Retry-After: <value>` with every reply from now on.
    pub fn set_retry_after(&self, value: &str) {
        self.state.lock().unwrap().retry_after = Some(value.to_owned());
    }

    /// How many requests were refused for their path (bulk-only mode).
    pub fn refused_paths(&self) -> u64 {
        self.state.lock().unwrap().refused_paths
    }

    /// `http://127.0.0.1:port`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `_bulk` requests get these behaviours, one each, then `Accept`.
    pub fn script(&self, behaviors: impl IntoIterator<Item = Behavior>) {
        self.state.lock().unwrap().script.extend(behaviors);
    }

    /// Sets the per-item fault injection rule.
    pub fn set_rule(&self, rule: Rule) {
        self.state.lock().unwrap().rule = Some(rule);
    }

    /// Number of stored documents.
    pub fn doc_count(&self) -> usize {
        self.state.lock().unwrap().docs.len()
    }

    /// Every stored document.
    pub fn docs(&self) -> Vec<Doc> {
        self.state.lock().unwrap().docs.values().cloned().collect()
    }

    /// Receipts per `_id` (every time an item with that id arrived, failed or not).
    pub fn receipts(&self) -> HashMap<String, u32> {
        self.state.lock().unwrap().receipts.clone()
    }

    /// `_bulk` requests answered.
    pub fn requests(&self) -> u64 {
        self.state.lock().unwrap().requests
    }

    /// Items received over all requests.
    pub fn items_received(&self) -> u64 {
        self.state.lock().unwrap().items_received
    }

    /// `_bulk` body bytes received as sent (after compression), summed over requests.
    pub fn wire_bytes(&self) -> u64 {
        self.state.lock().unwrap().wire_bytes
    }

    /// `_bulk` body bytes after decompression (the NDJSON), summed over requests.
    pub fn ndjson_bytes(&self) -> u64 {
        self.state.lock().unwrap().ndjson_bytes
    }

    /// Protocol violations seen.
    pub fn errors(&self) -> Vec<String> {
        self.state.lock().unwrap().errors.clone()
    }

    /// `Authorization` headers seen on `_bulk` requests.
    pub fn authorization(&self) -> Vec<String> {
        self.state.lock().unwrap().authorization.clone()
    }

    /// Request paths (with query) seen on `_bulk` requests.
    pub fn paths(&self) -> Vec<String> {
        self.state.lock().unwrap().paths.clone()
    }
}

impl Drop for FakeElasticsearch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn respond(writer: &mut TcpStream, status: u16, body: &[u8], retry_after: Option<String>) {
    let extra = retry_after.map_or(String::new(), |v| format!("Retry-After: {v}\r\n"));
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nX-Elastic-Product: Elasticsearch\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = writer.write_all(head.as_bytes());
    let _ = writer.write_all(body);
    let _ = writer.flush();
}

fn serve(stream: TcpStream, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while let Some(request) = next_request(&mut reader, &stop) {
        let retry_after = {
            let mut state = state.lock().unwrap();
            state.arrivals.push(std::time::Instant::now());
            state.retry_after.clone()
        };
        let (status, body) = handle(&request, &state);
        respond(&mut writer, status, &body, retry_after);
    }
}

fn es_error(status: u16, kind: &str, reason: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
        "status": status,
    }))
    .unwrap()
}

fn handle(request: &HttpRequest, state: &Mutex<State>) -> (u16, Vec<u8>) {
    let (path, query) = request
        .path
        .split_once('?')
        .unwrap_or((request.path.as_str(), ""));
    if request.method == "GET" && path == "/" {
        let body = serde_json::json!({
            "name": "fake", "cluster_name": "fake", "cluster_uuid": "x",
            "version": {"number": "8.15.0", "build_flavor": "default", "lucene_version": "9.11.1",
                        "minimum_wire_compatibility_version": "7.17.0",
                        "minimum_index_compatibility_version": "7.0.0"},
            "tagline": "You Know, for Search",
        });
        return (200, serde_json::to_vec(&body).unwrap());
    }
    let bulk_only = state.lock().unwrap().bulk_only.clone();
    if let Some(prefix) = bulk_only {
        if path != format!("{prefix}/_bulk") {
            state.lock().unwrap().refused_paths += 1;
            return (
                400,
                format!("unsupported path requested: {path:?}\n").into_bytes(),
            );
        }
        let path = "/_bulk";
        return bulk(request, path, query, state);
    }
    bulk(request, path, query, state)
}

fn bulk(request: &HttpRequest, path: &str, query: &str, state: &Mutex<State>) -> (u16, Vec<u8>) {
    let default_index = match path.strip_suffix("/_bulk") {
        Some("") => None,
        Some(index) => Some(index.trim_start_matches('/').to_owned()),
        None => {
            return protocol_error(
                state,
                format!("unexpected {} {}", request.method, request.path),
            )
        }
    };
    if request.method != "POST" && request.method != "PUT" {
        return protocol_error(state, format!("unexpected method {}", request.method));
    }
    {
        let mut state = state.lock().unwrap();
        state.paths.push(request.path.clone());
        if let Some(auth) = request.header("authorization") {
            state.authorization.push(auth.to_owned());
        }
    }
    let content_type = request.header("content-type").unwrap_or("");
    if !content_type.starts_with("application/x-ndjson")
        && !content_type.starts_with("application/json")
    {
        return protocol_error(state, format!("content-type {content_type:?}"));
    }
    let body = match request.header("content-encoding") {
        None => request.body.clone(),
        Some("gzip") => {
            let mut out = Vec::new();
            if let Err(e) = flate2::read::GzDecoder::new(&request.body[..]).read_to_end(&mut out) {
                return protocol_error(state, format!("bad gzip: {e}"));
            }
            out
        }
        Some(other) => return protocol_error(state, format!("content-encoding {other}")),
    };
    {
        let mut state = state.lock().unwrap();
        state.wire_bytes += request.body.len() as u64;
        state.ndjson_bytes += body.len() as u64;
    }
    let items = match parse_bulk(&body, default_index.as_deref()) {
        Ok(items) => items,
        Err(error) => return protocol_error(state, error),
    };
    let filtered = query
        .split('&')
        .any(|pair| pair.starts_with("filter_path="));
    let behavior = {
        let mut state = state.lock().unwrap();
        match state.down {
            true => Behavior::Status(503),
            false => state.script.pop_front().unwrap_or(Behavior::Accept),
        }
    };
    if let Behavior::Status(code) = behavior {
        let mut state = state.lock().unwrap();
        state.requests += 1;
        return (
            code,
            es_error(code, "unavailable_shards_exception", "injected failure"),
        );
    }
    let mut state = state.lock().unwrap();
    state.requests += 1;
    let mut results = Vec::with_capacity(items.len());
    let mut errors = false;
    for item in items {
        let result = apply(&mut state, item);
        errors |= result["status"].as_u64().unwrap_or(0) >= 300;
        results.push(result);
    }
    drop(state);
    if filtered {
        for result in &mut results {
            for (_, inner) in result.as_object_mut().unwrap().iter_mut() {
                let inner = inner.as_object_mut().unwrap();
                inner.retain(|key, _| key == "status" || key == "error");
                if let Some(error) = inner.get_mut("error").and_then(|e| e.as_object_mut()) {
                    error.retain(|key, _| key == "type" || key == "reason");
                }
            }
        }
    }
    match behavior {
        Behavior::Garbage => return (200, b"<html>502 bad gateway, or so</html>".to_vec()),
        Behavior::WrongItemCount => {
            results.pop();
        }
        _ => {}
    }
    let mut reply = serde_json::Map::new();
    if !filtered {
        reply.insert("took".into(), serde_json::json!(3));
    }
    reply.insert("errors".into(), serde_json::json!(errors));
    reply.insert("items".into(), serde_json::Value::Array(results));
    (200, serde_json::to_vec(&reply).unwrap())
}

fn protocol_error(state: &Mutex<State>, error: String) -> (u16, Vec<u8>) {
    state.lock().unwrap().errors.push(error.clone());
    (400, es_error(400, "illegal_argument_exception", &error))
}

struct BulkItem {
    action: String,
    index: String,
    id: Option<String>,
    doc: serde_json::Value,
}

/// Strict NDJSON: action line, document line, ..., final newline.
fn parse_bulk(body: &[u8], default_index: Option<&str>) -> Result<Vec<BulkItem>, String> {
    if !body.ends_with(b"\n") {
        return Err("the bulk request must be terminated by a newline".into());
    }
    let mut lines = body[..body.len() - 1].split(|&b| b == b'\n');
    let mut items = Vec::new();
    while let Some(line) = lines.next() {
        let action: serde_json::Value = serde_json::from_slice(line)
            .map_err(|e| format!("bad action line {:?}: {e}", String::from_utf8_lossy(line)))?;
        let object = action.as_object().ok_or("action is not an object")?;
        if object.len() != 1 {
            return Err(format!("action with {} keys", object.len()));
        }
        let (name, meta) = object.iter().next().unwrap();
        if !matches!(name.as_str(), "index" | "create") {
            return Err(format!("unexpected action {name}"));
        }
        let meta = meta.as_object().ok_or("action metadata is not an object")?;
        for key in meta.keys() {
            if !matches!(key.as_str(), "_index" | "_id" | "pipeline" | "routing") {
                return Err(format!("unknown action key {key}"));
            }
        }
        let index = match meta.get("_index").and_then(|v| v.as_str()) {
            Some(index) => index.to_owned(),
            None => default_index.ok_or("no _index")?.to_owned(),
        };
        let id = match meta.get("_id") {
            None => None,
            Some(serde_json::Value::String(id)) if !id.is_empty() => Some(id.clone()),
            Some(other) => return Err(format!("bad _id {other}")),
        };
        let line = lines.next().ok_or("action without a document")?;
        let doc: serde_json::Value = serde_json::from_slice(line)
            .map_err(|e| format!("bad document {:?}: {e}", String::from_utf8_lossy(line)))?;
        if !doc.is_object() {
            return Err("document is not an object".into());
        }
        items.push(BulkItem {
            action: name.clone(),
            index,
            id,
            doc,
        });
    }
    Ok(items)
}

fn apply(state: &mut State, item: BulkItem) -> serde_json::Value {
    state.items_received += 1;
    let id = match item.id {
        Some(id) => id,
        None => {
            state.auto_ids += 1;
            format!("auto-{}", state.auto_ids)
        }
    };
    let receipts = {
        let n = state.receipts.entry(id.clone()).or_default();
        *n += 1;
        *n
    };
    let fault = state
        .rule
        .as_ref()
        .and_then(|rule| rule(&item.doc, receipts));
    let head = |status: u16| serde_json::json!({"_index": item.index, "_id": id, "status": status});
    let with_error = |status: u16, kind: &str, reason: &str| {
        let mut out = head(status);
        out["error"] = serde_json::json!({"type": kind, "reason": reason, "index": item.index});
        serde_json::json!({ &item.action: out })
    };
    match fault {
        Some(ItemFault::Reject429) => {
            return with_error(
                429,
                "es_rejected_execution_exception",
                "rejected execution of coordinating operation",
            )
        }
        Some(ItemFault::Mapping(reason)) => {
            return with_error(400, "mapper_parsing_exception", &reason)
        }
        None => {}
    }
    let key = (item.index.clone(), id.clone());
    let exists = state.docs.contains_key(&key);
    if exists && item.action == "create" {
        return with_error(
            409,
            "version_conflict_engine_exception",
            &format!("[{id}]: version conflict, document already exists (current version [1])"),
        );
    }
    let message = item.doc["message"].as_str().unwrap_or_default().to_owned();
    let source = (!state.lean).then_some(item.doc);
    state.docs.insert(
        key,
        Doc {
            index: item.index.clone(),
            id: id.clone(),
            action: item.action.clone(),
            message,
            source,
        },
    );
    let status = if exists { 200 } else { 201 };
    let mut out = head(status);
    out["result"] = serde_json::json!(if exists { "updated" } else { "created" });
    out["_version"] = serde_json::json!(1);
    out["_shards"] = serde_json::json!({"total": 2, "successful": 1, "failed": 0});
    serde_json::json!({ &item.action: out })
}
