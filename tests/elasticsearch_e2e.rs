//! End-to-end: the agent binary, a `file` source and the `elasticsearch` sink against the
//! fake Elasticsearch of `support/fake_elasticsearch.rs`. Every test checks, from what the
//! fake parsed, that each line is indexed exactly once (by `_id`) and nothing was re-sent
//! that did not need to be.

mod support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::fake_elasticsearch::{Behavior, FakeElasticsearch, ItemFault};
use support::{wait_for, Agent};

/// Writes `count` lines of about 150 bytes (`<time> seq=N ...`), the event time spread
/// over three days; returns the byte offset where each line starts.
fn write_lines(path: &Path, count: u64) -> Vec<u64> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut offsets = Vec::with_capacity(count as usize);
    let mut offset = 0u64;
    for seq in 0..count {
        let line = line(seq);
        offsets.push(offset);
        offset += line.len() as u64 + 1;
        writeln!(out, "{line}").unwrap();
    }
    out.flush().unwrap();
    offsets
}

fn line(seq: u64) -> String {
    let day = 20 + seq % 3;
    let (h, m, s) = ((seq / 3600) % 24, (seq / 60) % 60, seq % 60);
    format!(
        "2026-11-{day}T{h:02}:{m:02}:{s:02}Z seq={seq:07} host=web-{} GET /api/v1/items/{} HTTP/1.1 status=200 bytes={} agent=curl/8.5.0 ok",
        seq % 7,
        seq * 31 % 100_000,
        seq * 17 % 9_000
    )
}

fn seq_of(message: &str) -> u64 {
    let start = message.find("seq=").expect("seq in message") + 4;
    message[start..start + 7].parse().expect("seq digits")
}

/// The date index a line belongs to: `logs-2026.11.<day>`.
fn expected_index(seq: u64) -> String {
    format!("logs-2026.11.{}", 20 + seq % 3)
}

/// A config: the file at `dir/in.log` from the beginning, through `transforms`, into
/// Elasticsearch with `sink` extra keys.
fn config(dir: &Path, endpoint: &str, transforms: &str, sink: &str) -> String {
    format!(
        r#"data_dir: {data}
api: {{ address: "{{api}}" }}
pipelines:
  p:
    sources:
      - type: file
        include: ["{input}"]
        read_from: beginning
    transforms:
{transforms}
    sinks:
      - type: elasticsearch
        endpoint: {endpoint}
        batch: {{ timeout_ms: 100 }}
        retry: {{ initial_backoff_ms: 20, max_backoff_ms: 500 }}
        request: {{ timeout_ms: 5000 }}
{sink}"#,
        data = dir.join("data").display(),
        input = dir.join("in.log").display(),
    )
}

/// Transforms that set the event time from the line, for date-pattern index names.
const TIME_FROM_LINE: &str = r#"      - { type: parse_regex, pattern: '^(?P<time>\S+) seq=' }
      - { type: parse_timestamp, field: time, formats: ["rfc3339"] }
"#;

fn assert_no_protocol_errors(es: &FakeElasticsearch) {
    let errors = es.errors();
    assert!(
        errors.is_empty(),
        "protocol errors: {:?}",
        &errors[..errors.len().min(5)]
    );
}

#[test]
fn million_lines_once_each_in_date_indices() {
    let count = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    write_lines(&dir.path().join("in.log"), count);
    let es = FakeElasticsearch::start_lean();
    let sink = "        index: 'logs-%Y.%m.%d'\n";
    let agent = Agent::start(
        dir.path(),
        &config(dir.path(), &es.endpoint(), TIME_FROM_LINE, sink),
    );
    wait_for("a million documents", Duration::from_secs(170), || {
        es.doc_count() >= count as usize
    });
    assert_no_protocol_errors(&es);
    // gzip by default: the bodies on the wire are a fraction of their NDJSON.
    assert!(
        es.wire_bytes() * 3 < es.ndjson_bytes(),
        "{} bytes sent for {} bytes of NDJSON",
        es.wire_bytes(),
        es.ndjson_bytes()
    );
    let docs = es.docs();
    assert_eq!(docs.len() as u64, count, "one document per line");
    let mut seqs = HashSet::with_capacity(count as usize);
    for doc in &docs {
        let seq = seq_of(&doc.message);
        assert_eq!(doc.message, line(seq), "message intact");
        assert_eq!(doc.index, expected_index(seq), "index from the event date");
        assert_eq!(doc.id.len(), 32, "deterministic _id: {}", doc.id);
        assert_eq!(doc.action, "create", "create with our own _id");
        assert!(seqs.insert(seq), "seq {seq} twice");
    }
    let receipts = es.receipts();
    assert_eq!(receipts.len() as u64, count);
    assert!(receipts.values().all(|&n| n == 1), "an item was sent twice");
    assert_eq!(
        agent.metric_sum("sluice_elasticsearch_documents_total", &[]),
        count as f64
    );
    assert!(agent.terminate().success());
}

#[test]
fn partial_failures_retry_only_failed_items_and_dead_letter_mapping_errors() {
    let count = 30_000u64;
    let dir = tempfile::tempdir().unwrap();
    let offsets = write_lines(&dir.path().join("in.log"), count);
    let es = FakeElasticsearch::start();
    // 1% of lines: 429 the first time; 0.1%: 400 mapper_parsing_exception every time.
    es.set_rule(Arc::new(|doc, receipts| {
        let seq = seq_of(doc["message"].as_str()?);
        if seq % 1000 == 3 {
            Some(ItemFault::Mapping(format!(
                "failed to parse field [bytes] of doc {seq}"
            )))
        } else if seq % 100 == 7 && receipts == 1 {
            Some(ItemFault::Reject429)
        } else {
            None
        }
    }));
    let sink =
        "        index: 'logs-%Y.%m.%d'\n        batch: { max_events: 2000, timeout_ms: 100 }\n";
    let yaml = config(dir.path(), &es.endpoint(), TIME_FROM_LINE, "")
        .replace("        batch: { timeout_ms: 100 }\n", sink);
    let agent = Agent::start(dir.path(), &yaml);
    let n400 = (0..count).filter(|s| s % 1000 == 3).count();
    let n429 = (0..count).filter(|s| s % 100 == 7).count();
    let dead_letters = dir.path().join("data/dead_letter.jsonl");
    wait_for(
        "every good line and every dead letter",
        Duration::from_secs(90),
        || {
            es.doc_count() >= count as usize - n400
                && support::read_json_lines(&dead_letters).len() >= n400
        },
    );
    assert_no_protocol_errors(&es);
    // Every 429 item indexed; no mapping-error line indexed.
    let indexed: BTreeSet<u64> = es.docs().iter().map(|d| seq_of(&d.message)).collect();
    let expected: BTreeSet<u64> = (0..count).filter(|s| s % 1000 != 3).collect();
    assert_eq!(indexed, expected);
    // Receipts per line: 2 for the 429 ones, 1 for everything else (nothing else re-sent).
    let stream = {
        let meta = std::fs::metadata(dir.path().join("in.log")).unwrap();
        format!("{:x}-{:x}", meta.dev(), meta.ino())
    };
    let receipts = es.receipts();
    for seq in 0..count {
        let hash = sluice::sink::elasticsearch::action::hash128(
            &stream,
            offsets[seq as usize],
            line(seq).as_bytes(),
        );
        let id = format!("{hash:032x}");
        let expected = if seq % 100 == 7 { 2 } else { 1 };
        assert_eq!(
            receipts.get(&id).copied(),
            Some(expected),
            "line {seq} (_id {id})"
        );
    }
    // Every 400 line in the dead-letter file with Elasticsearch's reason.
    let letters = support::read_json_lines(&dead_letters);
    assert_eq!(letters.len(), n400);
    let mut dead: Vec<u64> = Vec::new();
    for letter in &letters {
        let message = letter["event"]["message"].as_str().unwrap();
        let seq = seq_of(message);
        let reason = letter["reason"].as_str().unwrap();
        assert_eq!(
            reason,
            format!("400 mapper_parsing_exception: failed to parse field [bytes] of doc {seq}")
        );
        dead.push(seq);
    }
    dead.sort();
    assert_eq!(
        dead,
        (0..count).filter(|s| s % 1000 == 3).collect::<Vec<_>>()
    );
    let failures = |status: &str| {
        agent.metric_sum(
            "sluice_elasticsearch_item_failures_total",
            &[("status", status)],
        )
    };
    assert_eq!(failures("429"), n429 as f64);
    assert_eq!(failures("400"), n400 as f64);
    assert_eq!(
        agent.metric_sum("sluice_elasticsearch_item_retries_total", &[]),
        n429 as f64
    );
    assert_eq!(
        agent.metric_sum(
            "sluice_events_dropped_total",
            &[("reason", "400 mapper_parsing_exception")]
        ),
        n400 as f64
    );
    assert!(agent.terminate().success());
}

#[test]
fn kill9_and_restart_never_duplicates() {
    let count = 150_000u64;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.log");
    let offsets = write_lines(&path, count);
    let es = FakeElasticsearch::start_lean();
    let yaml = config(dir.path(), &es.endpoint(), "      []\n", "");
    let yaml = yaml.replace("    transforms:\n      []\n", "");
    for round in 1..=3 {
        let agent = Agent::start(dir.path(), &yaml);
        let target = round * 30_000;
        wait_for("progress before the kill", Duration::from_secs(60), || {
            es.doc_count() >= target
        });
        agent.kill9();
    }
    let agent = Agent::start(dir.path(), &yaml);
    wait_for("every line", Duration::from_secs(90), || {
        es.doc_count() >= count as usize
    });
    assert_no_protocol_errors(&es);
    let docs = es.docs();
    assert_eq!(docs.len() as u64, count, "distinct _ids == lines");
    // The ids are the documented function of (file identity, offset, message).
    let meta = std::fs::metadata(&path).unwrap();
    let stream = format!("{:x}-{:x}", meta.dev(), meta.ino());
    let expected: HashSet<String> = (0..count)
        .map(|seq| {
            let hash = sluice::sink::elasticsearch::action::hash128(
                &stream,
                offsets[seq as usize],
                line(seq).as_bytes(),
            );
            format!("{hash:032x}")
        })
        .collect();
    let got: HashSet<String> = docs.iter().map(|d| d.id.clone()).collect();
    assert_eq!(got, expected);
    eprintln!(
        "items received {} for {count} lines (replays answered 409)",
        es.items_received()
    );
    assert!(agent.terminate().success());
}

#[test]
fn unusable_replies_are_retried_whole_and_counted() {
    let count = 3_000u64;
    let dir = tempfile::tempdir().unwrap();
    write_lines(&dir.path().join("in.log"), count);
    let es = FakeElasticsearch::start();
    es.script([
        Behavior::Garbage,
        Behavior::WrongItemCount,
        Behavior::Status(503),
    ]);
    let yaml = config(dir.path(), &es.endpoint(), "      []\n", "")
        .replace("    transforms:\n      []\n", "")
        .replace(
            "batch: { timeout_ms: 100 }",
            "batch: { max_events: 500, timeout_ms: 100 }",
        );
    let agent = Agent::start(dir.path(), &yaml);
    wait_for("every line", Duration::from_secs(60), || {
        es.doc_count() >= count as usize
    });
    wait_for("the sink's counters", Duration::from_secs(10), || {
        agent.metric_sum("sluice_events_sent_total", &[("component_kind", "sink")]) >= count as f64
    });
    assert_no_protocol_errors(&es);
    assert_eq!(es.doc_count() as u64, count);
    let invalid = |reason: &str| {
        agent.metric_sum(
            "sluice_elasticsearch_invalid_responses_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(invalid("invalid_bulk_response"), 1.0);
    assert_eq!(invalid("bulk_item_count_mismatch"), 1.0);
    assert_eq!(
        agent.metric_sum("sluice_sink_requests_total", &[("status", "503")]),
        1.0
    );
    // The garbled replies' items had been stored: their re-sends were answered 409 and
    // counted as delivered, not indexed twice.
    assert!(agent.metric_sum("sluice_elasticsearch_conflicts_total", &[]) >= 500.0);
    assert!(agent.metric_sum("sluice_sink_retries_total", &[]) >= 3.0);
    assert_eq!(
        agent.metric_sum("sluice_events_sent_total", &[("component_kind", "sink")]),
        count as f64,
        "each line delivered once, none lost or dropped"
    );
    assert!(agent.terminate().success());
}

#[test]
fn data_stream_mode_with_api_key_and_a_field_named_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    for n in 0..200 {
        input.push_str(&format!(
            "{{\"@timestamp\":\"2001-02-03T04:05:06Z\",\"n\":{n},\"_id\":\"mine-{n}\"}}\n"
        ));
    }
    std::fs::write(dir.path().join("in.log"), input).unwrap();
    let es = FakeElasticsearch::start();
    let sink = "        mode: data_stream\n        data_stream: { dataset: app, namespace: prod }\n        auth: { strategy: api_key, key: 'id:secret' }\n        pipeline: enrich\n";
    let yaml = config(
        dir.path(),
        &es.endpoint(),
        "      - { type: parse_json }\n",
        sink,
    );
    let agent = Agent::start(dir.path(), &yaml);
    wait_for("every line", Duration::from_secs(60), || {
        es.doc_count() >= 200
    });
    assert_no_protocol_errors(&es);
    let mut ns = BTreeSet::new();
    for doc in es.docs() {
        assert_eq!(doc.index, "logs-app-prod");
        assert_eq!(doc.action, "create");
        let source = doc.source.unwrap();
        // The event time goes to @timestamp; the field of that name is kept aside.
        assert_eq!(source["_@timestamp"], "2001-02-03T04:05:06Z");
        let time = source["@timestamp"].as_str().unwrap();
        assert!(
            time.starts_with("20") && !time.starts_with("2001"),
            "{time}"
        );
        assert!(time.ends_with('Z'));
        // A metadata field name is renamed rather than refused by Elasticsearch.
        let n = source["n"].as_i64().unwrap();
        assert_eq!(source["__id"], format!("mine-{n}"));
        assert!(source.get("_id").is_none());
        ns.insert(n);
    }
    assert_eq!(ns, (0..200).collect());
    let auth = es.authorization();
    assert!(!auth.is_empty());
    assert!(auth.iter().all(|a| a == "ApiKey aWQ6c2VjcmV0"), "{auth:?}");
    assert!(es
        .paths()
        .iter()
        .all(|p| p.starts_with("/logs-app-prod/_bulk?") && p.contains("pipeline=enrich")));
    assert!(agent.terminate().success());
}

#[test]
fn several_endpoints_one_down() {
    let count = 20_000u64;
    let dir = tempfile::tempdir().unwrap();
    write_lines(&dir.path().join("in.log"), count);
    let (first, second) = (FakeElasticsearch::start(), FakeElasticsearch::start());
    let down = format!("http://127.0.0.1:{}", support::free_port());
    let endpoints = format!("[{down}, {}, {}]", first.endpoint(), second.endpoint());
    let yaml = config(dir.path(), &endpoints, "      []\n", "")
        .replace("    transforms:\n      []\n", "")
        .replace(
            "batch: { timeout_ms: 100 }",
            "batch: { max_events: 1000, timeout_ms: 100 }",
        );
    let agent = Agent::start(dir.path(), &yaml);
    wait_for(
        "every line on one node or the other",
        Duration::from_secs(60),
        || first.doc_count() + second.doc_count() >= count as usize,
    );
    assert_no_protocol_errors(&first);
    assert_no_protocol_errors(&second);
    let mut seqs: HashMap<u64, u32> = HashMap::new();
    for doc in first.docs().into_iter().chain(second.docs()) {
        *seqs.entry(seq_of(&doc.message)).or_default() += 1;
    }
    assert_eq!(seqs.len() as u64, count);
    assert!(seqs.values().all(|&n| n == 1), "a line went to both nodes");
    assert!(first.requests() > 0 && second.requests() > 0, "round robin");
    assert!(agent.metric_sum("sluice_sink_requests_total", &[("status", "connect_error")]) >= 1.0);
    assert!(agent.terminate().success());
}

/// An Elasticsearch-compatible store that serves only `/_bulk` (VictoriaLogs under
/// `/insert/elasticsearch`): with the default config (one date index per request, which
/// would go in the path) and with data streams, every line is delivered and nothing is
/// dead-lettered; the refused path form is used once at most per sink.
#[test]
fn stores_that_serve_only_bulk_get_every_line_with_the_defaults() {
    for sink in ["", "        mode: data_stream\n"] {
        let count = 5000;
        let dir = tempfile::tempdir().unwrap();
        write_lines(&dir.path().join("in.log"), count);
        let es = FakeElasticsearch::start_bulk_only("/insert/elasticsearch");
        let endpoint = format!("{}/insert/elasticsearch", es.endpoint());
        let agent = Agent::start(dir.path(), &config(dir.path(), &endpoint, "", sink));
        wait_for("every document", Duration::from_secs(60), || {
            es.doc_count() >= count as usize
        });
        assert_no_protocol_errors(&es);
        assert_eq!(es.doc_count(), count as usize, "{sink}");
        assert_eq!(
            es.refused_paths(),
            1,
            "{sink}: the path form is tried once, then remembered"
        );
        assert_eq!(agent.metric_sum("sluice_events_dropped_total", &[]), 0.0);
        assert_eq!(
            agent.metric_sum("sluice_dead_letter_events_total", &[]),
            0.0
        );
        assert!(
            !dir.path().join("data/dead_letter.jsonl").exists()
                || std::fs::read_to_string(dir.path().join("data/dead_letter.jsonl"))
                    .unwrap()
                    .is_empty()
        );
        assert!(agent.terminate().success());
    }
}

/// `id: xxh3`: every document's `_id` is XXH3-128 of the documented framing (origin
/// `<dev>-<ino>` in hex, byte offset, line), computed here from the file itself.
#[test]
fn xxh3_ids_are_recomputable_from_origin_offset_and_line() {
    let count = 500;
    let dir = tempfile::tempdir().unwrap();
    let offsets = write_lines(&dir.path().join("in.log"), count);
    let es = FakeElasticsearch::start();
    let sink = "        index: logs\n        id: xxh3\n";
    let _agent = Agent::start(dir.path(), &config(dir.path(), &es.endpoint(), "", sink));
    wait_for("every line indexed", Duration::from_secs(30), || {
        es.doc_count() >= count as usize
    });
    assert_no_protocol_errors(&es);
    let stream = {
        let meta = std::fs::metadata(dir.path().join("in.log")).unwrap();
        format!("{:x}-{:x}", meta.dev(), meta.ino())
    };
    let ids: HashMap<u64, String> = es
        .docs()
        .iter()
        .map(|d| (seq_of(&d.message), d.id.clone()))
        .collect();
    assert_eq!(ids.len() as u64, count);
    for seq in 0..count {
        let text = line(seq);
        let mut framed = Vec::new();
        framed.extend_from_slice(&(stream.len() as u64).to_le_bytes());
        framed.extend_from_slice(stream.as_bytes());
        framed.extend_from_slice(&offsets[seq as usize].to_le_bytes());
        framed.extend_from_slice(&(text.len() as u64).to_le_bytes());
        framed.extend_from_slice(text.as_bytes());
        let expected = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&framed));
        assert_eq!(ids[&seq], expected, "line {seq}");
    }
}
