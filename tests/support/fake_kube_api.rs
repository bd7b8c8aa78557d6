//! A fake Kubernetes API server, exact in what the `kubernetes_metadata` transform uses:
//!
//! - TLS with a CA made at test time (`openssl`), bearer-token authentication
//!   (`401 Unauthorized` `Status` otherwise);
//! - `GET /api/v1/pods` and `/api/v1/namespaces`: a list (`{"kind":"PodList","apiVersion":
//!   "v1","metadata":{"resourceVersion":"N"},"items":[…]}`, with `limit`/`continue` paging
//!   and `fieldSelector=spec.nodeName=<node>`), or with `watch=true` a chunked stream of one
//!   event per chunk (`{"type":"ADDED","object":{…}}\n`), `BOOKMARK`s (an empty object of
//!   the kind carrying only `metadata.resourceVersion`, as the real server sends), ended
//!   after `timeoutSeconds`;
//! - `410 Gone` for an expired version: as the real watch cache does, a `200` stream whose
//!   only event is `{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1",
//!   "metadata":{},"status":"Failure","message":"too old resource version: 5 (10)",
//!   "reason":"Expired","code":410}}`, or (optionally) the same `Status` as an HTTP 410;
//! - `GET /apis/apps/v1/namespaces/<ns>/replicasets/<name>` and
//!   `/apis/batch/v1/namespaces/<ns>/jobs/<name>`, `404 NotFound` otherwise;
//! - scripted `401`/`403`/`500` replies with the real server's `Status` bodies.
//!
//! Every request is recorded (path, query, reply), so tests count lists and check that
//! every pod request was node-scoped.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio_rustls::rustls;

/// A CA, a server certificate for 127.0.0.1 signed by it, and a token file.
#[derive(Clone, Debug)]
pub struct Pki {
    /// The CA certificate (what the agent's `ca_file` names).
    pub ca_file: PathBuf,
    /// Server certificate and key (PEM).
    pub cert_file: PathBuf,
    /// Server key.
    pub key_file: PathBuf,
    /// The bearer token file the agent reads.
    pub token_file: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (installed by the README's test command)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Pki {
    /// Makes a test CA and a server certificate for `127.0.0.1`/`localhost` under `dir`,
    /// and a token file holding `token`.
    pub fn generate(dir: &Path, token: &str) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=fake-kube-ca",
        ]);
        openssl(dir, &ca);
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=kube-apiserver",
        ]);
        openssl(dir, &csr);
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        );
        let token_file = dir.join("token");
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        Pki {
            ca_file: dir.join("ca.crt"),
            cert_file: dir.join("server.crt"),
            key_file: dir.join("server.key"),
            token_file,
        }
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let certs: Vec<_> =
            rustls_pemfile::certs(&mut &std::fs::read(&self.cert_file).unwrap()[..])
                .collect::<Result<_, _>>()
                .unwrap();
        let key = rustls_pemfile::private_key(&mut &std::fs::read(&self.key_file).unwrap()[..])
            .unwrap()
            .expect("a private key");
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// Which collection a request or event is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// `/api/v1/pods`
    Pods,
    /// `/api/v1/namespaces`
    Namespaces,
    /// `/apis/apps/v1/.../replicasets/<name>`
    ReplicaSets,
    /// `/apis/batch/v1/.../jobs/<name>`
    Jobs,
    /// Anything else.
    Other,
}

/// `list`, `watch` or `get`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// A list (paged).
    List,
    /// A watch stream.
    Watch,
    /// One object.
    Get,
}

/// One request, as answered.
#[derive(Clone, Debug)]
pub struct Request {
    /// The collection.
    pub resource: Resource,
    /// What was asked.
    pub verb: Verb,
    /// Decoded query parameters.
    pub query: BTreeMap<String, String>,
    /// The reply's HTTP status (200 for a watch that then sent an ERROR event).
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

struct Event {
    version: u64,
    resource: Resource,
    kind: &'static str,
    object: Value,
}

struct State {
    version: u64,
    /// Pods by uid, namespaces by name; replicasets and jobs by `ns/name`.
    objects: BTreeMap<(Resource, String), Value>,
    history: Vec<Event>,
    /// Versions below this are expired (410).
    oldest: u64,
    /// Bumped to end every open watch (a dropped connection).
    epoch: u64,
    /// Open watches get an ERROR 410 event when this passes their epoch.
    expire_epoch: u64,
    token: String,
    gone_as_http: bool,
    scripted: VecDeque<(Resource, Verb, u16)>,
    requests: Vec<Request>,
    /// Highest version sent on a watch, per resource.
    sent: BTreeMap<Resource, u64>,
    bookmark_every: Duration,
}

/// The fake server. Stops when dropped.
pub struct FakeKube {
    state: Arc<(Mutex<State>, Condvar)>,
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
}

/// The real server's `Status` body for `code`.
pub fn status_body(code: u16, message: &str) -> String {
    let (reason, details) = match code {
        401 => ("Unauthorized", Value::Null),
        403 => ("Forbidden", json!({"kind": "pods"})),
        404 => ("NotFound", Value::Null),
        410 => ("Expired", Value::Null),
        _ => ("InternalError", json!({"causes": [{"message": message}]})),
    };
    let mut status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    });
    if !details.is_null() {
        status["details"] = details;
    }
    status.to_string()
}

fn default_message(code: u16) -> &'static str {
    match code {
        401 => "Unauthorized",
        403 => "pods is forbidden: User \"system:serviceaccount:sluice:sluice\" cannot list resource \"pods\" in API group \"\" at the cluster scope",
        500 => "Internal error occurred: etcdserver: request timed out",
        _ => "error",
    }
}

/// A pod object as the API server returns it (the fields the transform reads, and a few it
/// must skip).
pub fn pod(
    namespace: &str,
    name: &str,
    uid: &str,
    node: &str,
    labels: Value,
    annotations: Value,
    owner: Option<(&str, &str)>,
) -> Value {
    let owners: Vec<Value> = owner
        .into_iter()
        .map(|(kind, owner)| {
            json!({"apiVersion": if kind == "Job" {"batch/v1"} else {"apps/v1"}, "kind": kind,
                "name": owner, "uid": format!("{owner}-uid"), "controller": true,
                "blockOwnerDeletion": true})
        })
        .collect();
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace, "uid": uid,
            "creationTimestamp": "2024-05-01T10:00:00Z", "labels": labels,
            "annotations": annotations, "ownerReferences": owners,
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]},
        "spec": {"nodeName": node, "serviceAccountName": "default",
            "containers": [{"name": "app", "image": format!("registry.example/{name}:1.0"),
                "env": [{"name": "A", "value": "b"}], "resources": {}}],
            "initContainers": [{"name": "init", "image": "busybox:1.36"}],
            "volumes": [{"name": "kube-api-access", "projected": {"sources": []}}]},
        "status": {"phase": "Running", "podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}],
            "hostIP": "172.18.0.2"}
    })
}

/// A namespace object.
pub fn namespace(name: &str, labels: Value, annotations: Value) -> Value {
    json!({"kind": "Namespace", "apiVersion": "v1",
        "metadata": {"name": name, "uid": format!("{name}-uid"), "labels": labels,
            "annotations": annotations},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

/// A ReplicaSet or Job owned by `owner` (`Deployment`/`CronJob`, name).
pub fn owned(kind: &str, namespace: &str, name: &str, owner: Option<(&str, &str)>) -> Value {
    let owners: Vec<Value> = owner
        .into_iter()
        .map(|(k, n)| json!({"apiVersion": "apps/v1", "kind": k, "name": n, "uid": format!("{n}-uid"), "controller": true}))
        .collect();
    json!({"kind": kind, "apiVersion": if kind == "Job" {"batch/v1"} else {"apps/v1"},
        "metadata": {"name": name, "namespace": namespace, "uid": format!("{name}-uid"),
            "ownerReferences": owners}, "spec": {}, "status": {}})
}

fn key_of(resource: Resource, object: &Value) -> String {
    let meta = &object["metadata"];
    match resource {
        Resource::Pods => meta["uid"].as_str().unwrap_or_default().to_owned(),
        Resource::Namespaces => meta["name"].as_str().unwrap_or_default().to_owned(),
        _ => format!(
            "{}/{}",
            meta["namespace"].as_str().unwrap_or_default(),
            meta["name"].as_str().unwrap_or_default()
        ),
    }
}

impl FakeKube {
    /// Starts on a free port of 127.0.0.1.
    pub fn start(pki: &Pki, token: &str) -> FakeKube {
        Self::start_on(pki, token, 0)
    }

    /// Starts on `port` (0: any).
    pub fn start_on(pki: &Pki, token: &str, port: u16) -> FakeKube {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the fake API server");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new((
            Mutex::new(State {
                version: 100,
                objects: BTreeMap::new(),
                history: Vec::new(),
                oldest: 0,
                epoch: 0,
                expire_epoch: 0,
                token: token.to_owned(),
                gone_as_http: false,
                scripted: VecDeque::new(),
                requests: Vec::new(),
                sent: BTreeMap::new(),
                bookmark_every: Duration::from_secs(1),
            }),
            Condvar::new(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let tls = pki.server_config();
        let (s, st) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (s, st, tls) = (s.clone(), st.clone(), tls.clone());
                        std::thread::spawn(move || serve(stream, tls, s, st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FakeKube { state, stop, addr }
    }

    /// `https://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn change<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let (lock, condvar) = &*self.state;
        let result = f(&mut lock.lock().unwrap());
        condvar.notify_all();
        result
    }

    fn record(&self, resource: Resource, kind: &'static str, object: Value) -> u64 {
        self.change(|s| {
            s.version += 1;
            let mut object = object;
            object["metadata"]["resourceVersion"] = json!(s.version.to_string());
            let key = key_of(resource, &object);
            if kind == "DELETED" {
                s.objects.remove(&(resource, key));
            } else {
                s.objects.insert((resource, key), object.clone());
            }
            if matches!(resource, Resource::Pods | Resource::Namespaces) {
                let version = s.version;
                s.history.push(Event {
                    version,
                    resource,
                    kind,
                    object,
                });
            }
            s.version
        })
    }

    /// Adds an object (a watch sees `ADDED`); its new resource version.
    pub fn add(&self, resource: Resource, object: Value) -> u64 {
        self.record(resource, "ADDED", object)
    }

    /// Replaces an object (`MODIFIED`).
    pub fn modify(&self, resource: Resource, object: Value) -> u64 {
        self.record(resource, "MODIFIED", object)
    }

    /// Deletes an object (`DELETED`, carrying its last state).
    pub fn delete(&self, resource: Resource, object: Value) -> u64 {
        self.record(resource, "DELETED", object)
    }

    /// Expires every version up to now: open watches get the ERROR 410 event (or, with
    /// `as_http`, are cut and the next watch from an old version gets an HTTP 410).
    pub fn expire(&self, as_http: bool) {
        self.change(|s| {
            s.oldest = s.version + 1;
            s.gone_as_http = as_http;
            if as_http {
                s.epoch += 1;
            } else {
                s.expire_epoch += 1;
            }
            // Move on, so the re-list has a version newer than the expired ones.
            s.version += 1;
        });
    }

    /// Cuts every open watch (a connection drop).
    pub fn drop_watches(&self) {
        self.change(|s| s.epoch += 1);
    }

    /// Accepts only `token` from now on.
    pub fn set_token(&self, token: &str) {
        self.change(|s| s.token = token.to_owned());
    }

    /// The next request for `resource`/`verb` is answered with `code` (401, 403, 500).
    pub fn fail_next(&self, resource: Resource, verb: Verb, code: u16) {
        self.change(|s| s.scripted.push_back((resource, verb, code)));
    }

    /// How often an open watch sends a BOOKMARK.
    pub fn bookmark_every(&self, every: Duration) {
        self.change(|s| s.bookmark_every = every);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.0.lock().unwrap().requests.clone()
    }

    /// Requests for `resource`/`verb` answered with `status`.
    pub fn count(&self, resource: Resource, verb: Verb, status: u16) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.resource == resource && r.verb == verb && r.status == status)
            .count()
    }

    /// Waits until a watch of `resource` has sent version `version` or later.
    pub fn wait_sent(&self, resource: Resource, version: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let sent = self
                .state
                .0
                .lock()
                .unwrap()
                .sent
                .get(&resource)
                .copied()
                .unwrap_or(0);
            if sent >= version {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{resource:?} watch did not send version {version} (sent {sent})"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.state.1.notify_all();
    }
}

type Tls = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

fn serve(
    stream: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<(Mutex<State>, Condvar)>,
    stop: Arc<AtomicBool>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_nodelay(true);
    let Ok(connection) = rustls::ServerConnection::new(tls) else {
        return;
    };
    let mut reader = BufReader::new(rustls::StreamOwned::new(connection, stream));
    // One request per connection (`Connection: close`): simple, and what a dropped watch
    // looks like to the client.
    let Some((target, headers)) = read_head(&mut reader) else {
        return;
    };
    let mut out = reader.into_inner();
    handle(&mut out, &target, &headers, &state, &stop);
    let _ = out.flush();
    out.conn.send_close_notify();
    let _ = out.flush();
}

fn read_head(reader: &mut BufReader<Tls>) -> Option<(String, Vec<(String, String)>)> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (_method, target) = (parts.next()?, parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            return Some((target, headers));
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
}

fn reply(out: &mut Tls, code: u16, body: &str) {
    let reason = match code {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        410 => "Gone",
        _ => "Internal Server Error",
    };
    let _ = write!(
        out,
        "HTTP/1.1 {code} {reason}\r\nAudit-Id: 0b0e5c3a\r\nCache-Control: no-cache, private\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn chunk(out: &mut Tls, text: &str) -> bool {
    write!(out, "{:x}\r\n{text}\r\n", text.len()).is_ok() && out.flush().is_ok()
}

fn handle(
    out: &mut Tls,
    target: &str,
    headers: &[(String, String)],
    state: &Arc<(Mutex<State>, Condvar)>,
    stop: &AtomicBool,
) {
    let (path, query_text) = target.split_once('?').unwrap_or((target, ""));
    let query: BTreeMap<String, String> = url::form_urlencoded::parse(query_text.as_bytes())
        .into_owned()
        .collect();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (resource, verb, get_key) = match segments.as_slice() {
        ["api", "v1", "pods"] => (Resource::Pods, list_or_watch(&query), None),
        ["api", "v1", "namespaces"] => (Resource::Namespaces, list_or_watch(&query), None),
        ["apis", "apps", "v1", "namespaces", ns, "replicasets", name] => (
            Resource::ReplicaSets,
            Verb::Get,
            Some(format!("{ns}/{name}")),
        ),
        ["apis", "batch", "v1", "namespaces", ns, "jobs", name] => {
            (Resource::Jobs, Verb::Get, Some(format!("{ns}/{name}")))
        }
        _ => (Resource::Other, Verb::Get, None),
    };
    let (lock, condvar) = &**state;
    let mut s = lock.lock().unwrap();
    let log = |s: &mut State, status: u16| {
        s.requests.push(Request {
            resource,
            verb,
            query: query.clone(),
            status,
            at: Instant::now(),
        });
    };
    let auth = headers
        .iter()
        .find(|(n, _)| n == "authorization")
        .map(|(_, v)| v.as_str());
    if auth != Some(&format!("Bearer {}", s.token)) {
        log(&mut s, 401);
        reply(out, 401, &status_body(401, "Unauthorized"));
        return;
    }
    if let Some(i) = s
        .scripted
        .iter()
        .position(|(r, v, _)| *r == resource && *v == verb)
    {
        let (_, _, code) = s.scripted.remove(i).unwrap();
        log(&mut s, code);
        reply(out, code, &status_body(code, default_message(code)));
        return;
    }
    let node = query
        .get("fieldSelector")
        .and_then(|f| f.strip_prefix("spec.nodeName="))
        .map(str::to_owned);
    let visible = |resource: Resource, object: &Value| {
        resource != Resource::Pods
            || node
                .as_deref()
                .is_none_or(|n| object["spec"]["nodeName"] == n)
    };
    match (resource, verb) {
        (Resource::Other, _) => {
            log(&mut s, 404);
            reply(
                out,
                404,
                &status_body(
                    404,
                    &format!("the server could not find the requested resource ({path})"),
                ),
            );
        }
        (_, Verb::Get) => {
            let key = get_key.unwrap_or_default();
            match s.objects.get(&(resource, key.clone())).cloned() {
                Some(object) => {
                    log(&mut s, 200);
                    reply(out, 200, &object.to_string());
                }
                None => {
                    log(&mut s, 404);
                    let kind = if resource == Resource::Jobs {
                        "jobs.batch"
                    } else {
                        "replicasets.apps"
                    };
                    let name = key.rsplit('/').next().unwrap_or_default();
                    reply(
                        out,
                        404,
                        &status_body(404, &format!("{kind} \"{name}\" not found")),
                    );
                }
            }
        }
        (_, Verb::List) => {
            // Paging: `continue` is "<version>:<offset>"; a token older than the window is 410.
            let limit: usize = query
                .get("limit")
                .and_then(|l| l.parse().ok())
                .filter(|l| *l > 0)
                .unwrap_or(usize::MAX);
            let (version, offset) = match query.get("continue") {
                Some(token) => {
                    let (v, o) = token.split_once(':').unwrap_or(("0", "0"));
                    (v.parse().unwrap_or(0), o.parse().unwrap_or(0))
                }
                None => (s.version, 0),
            };
            if version < s.oldest {
                log(&mut s, 410);
                reply(out, 410, &status_body(410, "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."));
                return;
            }
            let items: Vec<&Value> = s
                .objects
                .iter()
                .filter(|((r, _), o)| *r == resource && visible(resource, o))
                .map(|(_, o)| o)
                .collect();
            let page: Vec<&Value> = items.iter().skip(offset).take(limit).copied().collect();
            let mut metadata = json!({"resourceVersion": version.to_string()});
            if offset + page.len() < items.len() {
                metadata["continue"] = json!(format!("{version}:{}", offset + page.len()));
                metadata["remainingItemCount"] = json!(items.len() - offset - page.len());
            }
            let kind = if resource == Resource::Pods {
                "PodList"
            } else {
                "NamespaceList"
            };
            let body =
                json!({"kind": kind, "apiVersion": "v1", "metadata": metadata, "items": page})
                    .to_string();
            log(&mut s, 200);
            drop(s);
            reply(out, 200, &body);
        }
        (_, Verb::Watch) => {
            let from: u64 = query
                .get("resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let timeout = Duration::from_secs(
                query
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(1800),
            );
            let bookmarks = query
                .get("allowWatchBookmarks")
                .is_some_and(|b| b == "true");
            let expired = from != 0 && from < s.oldest;
            if expired && s.gone_as_http {
                log(&mut s, 410);
                reply(
                    out,
                    410,
                    &status_body(
                        410,
                        &format!("too old resource version: {from} ({})", s.oldest),
                    ),
                );
                return;
            }
            log(&mut s, 200);
            let _ = write!(out, "HTTP/1.1 200 OK\r\nAudit-Id: 0b0e5c3a\r\nCache-Control: no-cache, private\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
            let _ = out.flush();
            let gone = |s: &State| {
                json!({"type": "ERROR", "object": serde_json::from_str::<Value>(&status_body(410, &format!("too old resource version: {from} ({})", s.oldest))).unwrap()}).to_string() + "\n"
            };
            if expired {
                let text = gone(&s);
                drop(s);
                chunk(out, &text);
                let _ = write!(out, "0\r\n\r\n");
                return;
            }
            let (epoch, expire_epoch) = (s.epoch, s.expire_epoch);
            let opened = Instant::now();
            let mut cursor = from;
            let mut last_bookmark = Instant::now();
            loop {
                if stop.load(Ordering::Relaxed) || s.epoch != epoch || opened.elapsed() >= timeout {
                    break;
                }
                if s.expire_epoch != expire_epoch {
                    let text = gone(&s);
                    drop(s);
                    chunk(out, &text);
                    let _ = write!(out, "0\r\n\r\n");
                    return;
                }
                let mut texts = Vec::new();
                for event in s
                    .history
                    .iter()
                    .filter(|e| e.version > cursor && e.resource == resource)
                {
                    if visible(resource, &event.object) {
                        texts.push(
                            json!({"type": event.kind, "object": event.object}).to_string() + "\n",
                        );
                    }
                }
                let top = s.version;
                if bookmarks && last_bookmark.elapsed() >= s.bookmark_every {
                    last_bookmark = Instant::now();
                    let kind = if resource == Resource::Pods {
                        "Pod"
                    } else {
                        "Namespace"
                    };
                    let mut object = json!({"kind": kind, "apiVersion": "v1",
                        "metadata": {"resourceVersion": top.to_string(), "creationTimestamp": null}});
                    if resource == Resource::Pods {
                        object["spec"] = json!({"containers": null});
                        object["status"] = json!({});
                    }
                    texts.push(json!({"type": "BOOKMARK", "object": object}).to_string() + "\n");
                }
                cursor = top;
                drop(s);
                for text in &texts {
                    if !chunk(out, text) {
                        return;
                    }
                }
                s = lock.lock().unwrap();
                let sent = s.sent.entry(resource).or_insert(0);
                *sent = (*sent).max(cursor);
                s = condvar
                    .wait_timeout(s, Duration::from_millis(100))
                    .unwrap()
                    .0;
            }
            drop(s);
            let _ = write!(out, "0\r\n\r\n");
        }
    }
}

fn list_or_watch(query: &BTreeMap<String, String>) -> Verb {
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        Verb::Watch
    } else {
        Verb::List
    }
}
