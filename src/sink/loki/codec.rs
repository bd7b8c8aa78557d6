//! The Loki encoder, one per driver lane: label rendering, the `max_streams` guard, ordering
//! and the `out_of_order` policy, the protobuf and JSON push bodies, and the reading of
//! Loki's replies.
//!
//! Owns: the wire formats and reply reasons. Never: batches, retries or acknowledges.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use reqwest::header::{HeaderName, HeaderValue};

use super::super::driver::{
    judge_status, Compression, Encoded, EncodedRequest, HttpSinkCodec, Judgement, Reply, Verdict,
};
use super::reply::{read_refusals, SentEntry, SentStream};
use super::{proto, LineFormat, LokiEncoding, LokiSettings, OutOfOrder, STREAM_IDLE_SECS};
use crate::event::{Event, Shared};
use crate::telemetry::Counter;

/// Loki's label-set syntax, sorted pairs: `{a="x", b="y"}`.
pub(super) fn label_key(pairs: &[(String, String)]) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        escape_label_value(value, &mut out);
        out.push('"');
    }
    out.push('}');
    out
}

fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Per-stream state kept by one lane.
#[derive(Debug, Clone, Copy)]
struct StreamSlot {
    last_timestamp: i64,
    last_used_secs: u64,
}

/// The Loki encoder (one per lane): label rendering, stream guard, ordering, wire format.
#[derive(Debug, Clone)]
pub struct LokiCodec {
    settings: Arc<LokiSettings>,
    streams: HashMap<String, StreamSlot>,
    epoch: Instant,
    last_sweep_secs: u64,
    overflow: Counter,
    rewritten: Counter,
}

/// One stream of one request being built.
struct Group {
    tenant: String,
    key: String,
    pairs: Vec<(String, String)>,
    items: Vec<usize>,
}

impl LokiCodec {
    pub(super) fn new(settings: Arc<LokiSettings>, overflow: Counter, rewritten: Counter) -> Self {
        LokiCodec {
            settings,
            streams: HashMap::new(),
            epoch: Instant::now(),
            last_sweep_secs: 0,
            overflow,
            rewritten,
        }
    }

    /// True when the stream is in the table or could be added to it (it is then added);
    /// false when the table is full: the event goes to the overflow stream.
    fn admit(&mut self, table_key: &str, now_secs: u64) -> bool {
        if self.streams.contains_key(table_key) {
            return true;
        }
        if self.streams.len() >= self.settings.max_streams && now_secs >= self.last_sweep_secs + 10
        {
            self.last_sweep_secs = now_secs;
            self.streams
                .retain(|_, slot| now_secs.saturating_sub(slot.last_used_secs) < STREAM_IDLE_SECS);
        }
        if self.streams.len() >= self.settings.max_streams {
            return false;
        }
        let slot = StreamSlot {
            last_timestamp: i64::MIN,
            last_used_secs: now_secs,
        };
        self.streams.insert(table_key.to_owned(), slot);
        true
    }

    /// Groups events by (tenant, stream), in first-seen order.
    fn group(
        &mut self,
        events: &[Event],
        now_secs: u64,
    ) -> (Vec<Group>, Vec<(usize, &'static str)>) {
        let settings = self.settings.clone();
        let mut groups: Vec<Group> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut dropped = Vec::new();
        // With static labels and tenant every event is in one stream: render it once.
        let constant = settings.all_static
            && settings
                .tenant
                .as_ref()
                .is_none_or(|t| t.as_static().is_some());
        // Each stream's (group, sent to the overflow stream) by fingerprint, and the last
        // event's: events of one stream mostly come together, and the same stream gets the
        // same answer from `admit` within one call (the table only grows, and a refused
        // stream is refused again until the next sweep, 10 s on). So labels are rendered,
        // joined and admitted once per stream and call, not at every change of stream (a
        // `status` label alternates on most lines of an access log).
        let (mut fingerprint, mut scratch) = (Vec::new(), String::new());
        let mut seen: HashMap<Vec<u8>, (usize, bool)> = HashMap::new();
        let mut last: Option<(Vec<u8>, usize, bool)> = None;
        // The shared fields `fingerprint` was rendered from alone, if it was: the next event
        // over them (and no own field) is of the last event's stream, with no field looked up
        // and no fingerprint compared (after each event, `last` holds `fingerprint`).
        let mut rendered_from: Option<Arc<Shared>> = None;
        for (i, event) in events.iter().enumerate() {
            let Some(log) = event.as_log() else {
                dropped.push((i, "not_a_log"));
                continue;
            };
            if constant && groups.len() == 1 {
                groups[0].items.push(i);
                continue;
            }
            let shared = settings.by_shared(log);
            let same = same_shared(shared, rendered_from.as_ref());
            if !same {
                settings.stream_fingerprint(log, &mut scratch, &mut fingerprint);
                rendered_from = shared.cloned();
            }
            let known = match &last {
                Some((known, at, overflowed)) if same || *known == fingerprint => {
                    Some((*at, *overflowed))
                }
                _ => seen.get(&fingerprint).copied(),
            };
            let (at, overflowed) = match known {
                Some(found) => found,
                None => {
                    let found = self.stream_of(log, &mut groups, &mut index, now_secs);
                    seen.insert(fingerprint.clone(), found);
                    found
                }
            };
            if overflowed && known.is_some() {
                self.overflow.inc(); // stream_of counted the first
            }
            groups[at].items.push(i);
            if !same
                && last
                    .as_ref()
                    .is_none_or(|(known, ..)| *known != fingerprint)
            {
                let mut previous = last.take().map(|(known, ..)| known).unwrap_or_default();
                previous.clone_from(&fingerprint);
                last = Some((previous, at, overflowed));
            }
        }
        (groups, dropped)
    }

    /// The group of `log`'s stream (added to `groups` if new; true when it is the overflow
    /// stream because the stream table is full).
    fn stream_of(
        &mut self,
        log: &crate::event::LogEvent,
        groups: &mut Vec<Group>,
        index: &mut HashMap<String, usize>,
        now_secs: u64,
    ) -> (usize, bool) {
        let settings = self.settings.clone();
        let mut pairs = settings.label_pairs(log);
        let tenant = settings.tenant(log);
        let mut key = label_key(&pairs);
        let table_key = format!("{tenant}\u{0}{key}");
        let overflowed = !self.admit(&table_key, now_secs);
        if overflowed {
            self.overflow.inc();
            key = settings.overflow_key.clone();
            pairs = settings.overflow.clone();
        }
        let group_key = format!("{tenant}\u{0}{key}");
        let at = *index.entry(group_key).or_insert_with(|| {
            groups.push(Group {
                tenant,
                key,
                pairs,
                items: Vec::new(),
            });
            groups.len() - 1
        });
        (at, overflowed)
    }

    /// Sorts each group by time and applies the out-of-order policy; returns the entry
    /// timestamps (indexed like `events`).
    fn order(
        &mut self,
        events: &[Event],
        groups: &mut [Group],
        dropped: &mut Vec<(usize, &'static str)>,
        now_secs: u64,
    ) -> Vec<i64> {
        let mut timestamps: Vec<i64> = events
            .iter()
            .map(|e| e.as_log().map_or(0, |log| log.timestamp.0))
            .collect();
        for group in groups.iter_mut() {
            group.items.sort_by_key(|&i| timestamps[i]);
            let table_key = format!("{}\u{0}{}", group.tenant, group.key);
            let slot = self.streams.entry(table_key).or_insert(StreamSlot {
                last_timestamp: i64::MIN,
                last_used_secs: now_secs,
            });
            slot.last_used_secs = now_secs;
            let policy = self.settings.out_of_order;
            group.items.retain(|&i| {
                let ts = timestamps[i];
                if ts >= slot.last_timestamp {
                    slot.last_timestamp = ts;
                    return true;
                }
                match policy {
                    OutOfOrder::Accept => true,
                    OutOfOrder::RewriteTimestamp => {
                        timestamps[i] = slot.last_timestamp;
                        self.rewritten.inc();
                        true
                    }
                    OutOfOrder::Drop => {
                        dropped.push((i, "out_of_order"));
                        false
                    }
                }
            });
        }
        timestamps
    }

    /// The protobuf `PushRequest`, written straight from the events (see [`proto`]).
    fn protobuf(&self, events: &[Event], groups: &[&Group], timestamps: &[i64]) -> Vec<u8> {
        let lines: usize = groups
            .iter()
            .flat_map(|g| &g.items)
            .filter_map(|&i| events[i].as_log())
            .map(|log| log.message_str().len() + 24)
            .sum();
        let mut body = Vec::with_capacity(lines + 64 * groups.len());
        // Plain messages without metadata are borrowed as they are: size each stream in one
        // pass, write it in a second. Anything rendered (JSON lines, metadata) is rendered
        // once, into `rendered`, and copied in after the stream's head.
        let borrowed = self.settings.line == LineFormat::Message
            && self.settings.structured_metadata.is_empty();
        let mut rendered = Vec::new();
        // The metadata of the last event, and the shared fields it follows from alone if it
        // does (as in `group`).
        let (mut metadata, mut metadata_from) = (Vec::new(), None::<Arc<Shared>>);
        for group in groups {
            let logs = || {
                group
                    .items
                    .iter()
                    .filter_map(|&i| Some((timestamps[i], events[i].as_log()?)))
            };
            if borrowed {
                let len = logs()
                    .map(|(t, log)| proto::Entry::plain(t, &log.message.to_text()).field_len())
                    .sum();
                proto::write_stream_head(&mut body, &group.key, len);
                for (t, log) in logs() {
                    proto::Entry::plain(t, &log.message.to_text()).write(&mut body);
                }
            } else {
                rendered.clear();
                for (timestamp, log) in logs() {
                    let line = self.settings.line(log);
                    let shared = self.settings.by_shared(log);
                    if !same_shared(shared, metadata_from.as_ref()) {
                        self.settings.metadata_into(log, &mut metadata);
                        metadata_from = shared.cloned();
                    }
                    proto::Entry {
                        timestamp,
                        line: &line,
                        metadata: &metadata,
                    }
                    .write(&mut rendered);
                }
                proto::write_stream_head(&mut body, &group.key, rendered.len());
                body.extend_from_slice(&rendered);
            }
        }
        body
    }

    fn json(&self, events: &[Event], groups: &[&Group], timestamps: &[i64]) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 * groups.iter().map(|g| g.items.len()).sum::<usize>());
        out.extend_from_slice(b"{\"streams\":[");
        for (g, group) in groups.iter().enumerate() {
            if g > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"stream\":");
            let labels: BTreeMap<&str, &str> = group
                .pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let _ = serde_json::to_writer(&mut out, &labels);
            out.extend_from_slice(b",\"values\":[");
            let mut first = true;
            for &i in &group.items {
                let Some(log) = events[i].as_log() else {
                    continue;
                };
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(format!("[\"{}\",", timestamps[i]).as_bytes());
                let _ = serde_json::to_writer(&mut out, &self.settings.line(log));
                let metadata = self.settings.metadata(log);
                if !metadata.is_empty() {
                    let map: BTreeMap<String, String> = metadata.into_iter().collect();
                    out.push(b',');
                    let _ = serde_json::to_writer(&mut out, &map);
                }
                out.push(b']');
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"]}");
        out
    }
}

impl HttpSinkCodec for LokiCodec {
    fn accepts(&self, event: &Event) -> bool {
        matches!(event, Event::Log(_))
    }

    fn partition(&self, event: &Event) -> u64 {
        let Some(log) = event.as_log() else { return 0 };
        let key = format!(
            "{}\u{0}{}",
            self.settings.tenant(log),
            label_key(&self.settings.label_pairs(log))
        );
        crate::hash_str(&key)
    }

    fn encode(&mut self, events: &[Event]) -> Encoded {
        let now_secs = self.epoch.elapsed().as_secs();
        let (mut groups, mut dropped) = self.group(events, now_secs);
        let timestamps = self.order(events, &mut groups, &mut dropped, now_secs);
        // One request per tenant, streams in first-seen order.
        let mut tenants: Vec<(&str, Vec<&Group>)> = Vec::new();
        for group in &groups {
            match tenants
                .iter_mut()
                .find(|(tenant, _)| *tenant == group.tenant)
            {
                Some((_, list)) => list.push(group),
                None => tenants.push((&group.tenant, vec![group])),
            }
        }
        let mut requests = Vec::with_capacity(tenants.len());
        for (tenant, groups) in tenants {
            let items: Vec<usize> = groups
                .iter()
                .flat_map(|g| g.items.iter().copied())
                .collect();
            if items.is_empty() {
                continue;
            }
            let (body, content_type) = match self.settings.encoding {
                LokiEncoding::Protobuf => (
                    self.protobuf(events, &groups, &timestamps),
                    "application/x-protobuf",
                ),
                LokiEncoding::Json => (self.json(events, &groups, &timestamps), "application/json"),
            };
            let mut headers = Vec::new();
            if !tenant.is_empty() {
                match HeaderValue::from_str(tenant) {
                    Ok(value) => headers.push((HeaderName::from_static("x-scope-orgid"), value)),
                    Err(_) => {
                        dropped.extend(items.iter().map(|&i| (i, "invalid_tenant")));
                        continue;
                    }
                }
            }
            requests.push(EncodedRequest {
                body,
                content_type,
                headers,
                items,
                path_segment: None,
            });
        }
        Encoded { requests, dropped }
    }

    fn judge(&self, reply: &Reply<'_>) -> Verdict {
        if reply.status == 400 {
            return Verdict::Reject {
                reason: reason_400(reply.body).to_owned(),
            };
        }
        judge_status(reply)
    }

    /// A 400 from Loki is a partial acceptance: it stored the valid entries and names the
    /// refused ones (see `reply.rs`); only those are dead-lettered.
    fn judge_events(&self, reply: &Reply<'_>, events: &[Event], items: &[usize]) -> Judgement {
        if reply.status != 400 {
            return Judgement::Verdict(self.judge(reply));
        }
        let (streams, entries) = self.as_sent(events, items);
        match read_refusals(&String::from_utf8_lossy(reply.body), &streams, &entries) {
            Some(refusals) => Judgement::Refused(refusals),
            None => Judgement::Verdict(self.judge(reply)),
        }
    }

    fn content_encoding(&self, compression: Compression) -> Option<&'static str> {
        // Protobuf bodies are snappy by definition; Promtail sends no Content-Encoding.
        match compression {
            Compression::Snappy => None,
            other => other.content_encoding(),
        }
    }
}

impl LokiCodec {
    /// The streams and entries of a request as they were sent (labels as rendered, the
    /// overflow stream for streams not admitted, the line's length), for reading a 400.
    /// A timestamp rewritten by `out_of_order: rewrite_timestamp` is not known here: such
    /// an entry is matched by its own time.
    fn as_sent(&self, events: &[Event], items: &[usize]) -> (Vec<SentStream>, Vec<SentEntry>) {
        let mut streams: Vec<SentStream> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut entries = Vec::with_capacity(items.len());
        for &i in items {
            let Some(log) = events.get(i).and_then(Event::as_log) else {
                entries.push(SentEntry {
                    stream: usize::MAX,
                    timestamp: 0,
                    line_bytes: 0,
                });
                continue;
            };
            let mut pairs = self.settings.label_pairs(log);
            let table_key = format!("{}\u{0}{}", self.settings.tenant(log), label_key(&pairs));
            if !self.streams.contains_key(&table_key) {
                pairs = self.settings.overflow.clone();
            }
            let key = label_key(&pairs);
            let next = streams.len();
            let stream = *index.entry(key).or_insert(next);
            if stream == next {
                streams.push(SentStream { pairs });
            }
            entries.push(SentEntry {
                stream,
                timestamp: log.timestamp.0,
                line_bytes: self.settings.line(log).len(),
            });
        }
        (streams, entries)
    }
}

/// Loki's reason for a 400, from its body (`pkg/validation` messages).
pub(super) fn reason_400(body: &[u8]) -> &'static str {
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    let has = |needle: &str| text.contains(needle);
    if has("out of order") || has("out_of_order") {
        "out_of_order"
    } else if has("too far behind")
        || has("too old")
        || has("greater_than_max_sample_age")
        || has("older than")
    {
        "too_old"
    } else if has("too far in the future") || has("too_far_in_future") || has("too new") {
        "too_new"
    } else if has("line too long")
        || has("line_too_long")
        || has("max line size")
        || has("max entry size")
    {
        "line_too_long"
    } else if has("label")
        && (has("invalid") || has("error parsing") || has("too many") || has("too long"))
    {
        "invalid_labels"
    } else if has("structured metadata") || has("structured_metadata") {
        "structured_metadata"
    } else {
        "bad_request"
    }
}

/// Both the same shared fields (not both absent).
fn same_shared(a: Option<&Arc<Shared>>, b: Option<&Arc<Shared>>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if Arc::ptr_eq(a, b))
}

#[cfg(test)]
mod tests {
    use super::super::LokiConfig;
    use super::*;
    use crate::event::{LogEvent, Value};
    use crate::event::{Map, Timestamp};
    use prost::Message as _;

    fn config(yaml: &str) -> LokiConfig {
        crate::yaml::from_str(yaml, "test.yaml").unwrap()
    }

    fn event(message: &str, ts: i64, fields: &[(&str, &str)]) -> Event {
        let mut map = Map::new();
        for (k, v) in fields {
            map.insert(k.to_string(), Value::from(*v));
        }
        Event::Log(LogEvent {
            timestamp: Timestamp(ts),
            message: message.into(),
            fields: map,
            origin: None,
        })
    }

    fn decode(body: &[u8]) -> proto::PushRequest {
        proto::PushRequest::decode(body).unwrap()
    }

    #[test]
    fn golden_protobuf_bytes() {
        let mut codec = config("endpoint: http://x\nlabels: { job: a }")
            .codec()
            .unwrap();
        let encoded = codec.encode(&[event("hi", 1_500_000_002, &[])]);
        let body = &encoded.requests[0].body;
        // PushRequest{streams: [StreamAdapter{labels: `{job="a"}`, entries: [
        //   EntryAdapter{timestamp: {seconds: 1, nanos: 500000002}, line: "hi"}]}]}
        let expected: Vec<u8> = [
            &[0x0a, 0x1b][..], // streams (field 1, len 27)
            &[0x0a, 0x09],
            b"{job=\"a\"}", // labels (field 1, len 9)
            &[0x12, 0x0e],  // entries (field 2, len 14)
            &[0x0a, 0x08, 0x08, 0x01, 0x10, 0x82, 0xca, 0xb5, 0xee, 0x01], // ts {1, 500000002}
            &[0x12, 0x02],
            b"hi", // line (field 2)
        ]
        .concat();
        assert_eq!(body, &expected);
        assert_eq!(encoded.requests[0].content_type, "application/x-protobuf");
        assert_eq!(encoded.requests[0].items, vec![0]);

        // With structured metadata (the rendered path): decoded back, pair by pair.
        let mut codec = config(
            "endpoint: http://x\nlabels: { job: a }\nstructured_metadata: { trace: '{{ t }}' }",
        )
        .codec()
        .unwrap();
        let encoded = codec.encode(&[event("hi", 7, &[("t", "abc")]), event("yo", 8, &[])]);
        let request = decode(&encoded.requests[0].body);
        let entries = &request.streams[0].entries;
        assert_eq!(request.streams[0].labels, "{job=\"a\"}");
        assert_eq!(
            (entries[0].line.as_str(), entries[1].line.as_str()),
            ("hi", "yo")
        );
        assert_eq!(entries[0].structured_metadata.len(), 1);
        assert_eq!(entries[0].structured_metadata[0].name, "trace");
        assert_eq!(entries[0].structured_metadata[0].value, "abc");
        assert!(
            entries[1].structured_metadata.is_empty(),
            "empty values are left out"
        );
    }

    /// Events over one shared map and without fields of their own take the stream and the
    /// metadata rendered for the first of them; an own field, or a template that reads the
    /// message, makes an event's own rendering count.
    #[test]
    fn events_over_the_same_shared_fields_share_their_rendering() {
        let shared = crate::event::Shared::new(
            [("ns", "a"), ("pod", "p-1")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::from(v)))
                .collect(),
        );
        let over = |message: &str, own: &[(&str, &str)]| {
            let Event::Log(mut log) = event(message, 1, own) else {
                unreachable!()
            };
            log.fields = Map::layered(log.fields, shared.clone());
            Event::Log(log)
        };
        let events = [
            over("one", &[]),
            over("two", &[]),
            over("three", &[("ns", "b"), ("pod", "p-2")]),
            over("four", &[]),
        ];
        let streams = |yaml: &str| {
            let mut codec = config(yaml).codec().unwrap();
            let encoded = codec.encode(&events);
            let request = decode(&encoded.requests[0].body);
            request
                .streams
                .iter()
                .map(|stream| {
                    let entries = stream.entries.iter().map(|entry| {
                        let pod = entry.structured_metadata.first();
                        format!("{}/{}", entry.line, pod.map_or("", |m| m.value.as_str()))
                    });
                    (stream.labels.clone(), entries.collect::<Vec<_>>())
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            streams(
                "endpoint: http://x\nlabels: { ns: '{{ ns }}' }\nstructured_metadata: { pod: '{{ pod }}' }"
            ),
            vec![
                ("{ns=\"a\"}".to_owned(), vec!["one/p-1".into(), "two/p-1".into(), "four/p-1".into()]),
                ("{ns=\"b\"}".to_owned(), vec!["three/p-2".into()]),
            ]
        );
        assert_eq!(
            streams("endpoint: http://x\nlabels: { ns: '{{ ns }}', m: '{{ message }}' }"),
            ["one", "two", "three", "four"]
                .iter()
                .zip(["a", "a", "b", "a"])
                .map(|(m, ns)| (format!("{{m=\"{m}\", ns=\"{ns}\"}}"), vec![format!("{m}/")]))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn golden_json_bytes() {
        let mut codec = config("endpoint: http://x\nencoding: json\nlabels: { job: a }\nstructured_metadata: { trace: '{{ t }}' }")
            .codec()
            .unwrap();
        let encoded = codec.encode(&[
            event("hi \"there\"", 1_500_000_002, &[("t", "abc")]),
            event("x", 7, &[]),
        ]);
        let body = String::from_utf8(encoded.requests[0].body.clone()).unwrap();
        assert_eq!(
            body,
            r#"{"streams":[{"stream":{"job":"a"},"values":[["7","x"],["1500000002","hi \"there\"",{"trace":"abc"}]]}]}"#
        );
        assert_eq!(encoded.requests[0].items, vec![1, 0]);
    }

    /// (labels config, events' (message, ts, fields)) → decoded (labels, lines) per stream.
    /// (message, timestamp, fields) of one test event.
    type Input<'a> = (&'a str, i64, &'a [(&'a str, &'a str)]);

    fn check(yaml: &str, events: &[Input<'_>], expected: &[(&str, &[&str])]) {
        let mut codec = config(yaml).codec().unwrap();
        let events: Vec<Event> = events.iter().map(|(m, ts, f)| event(m, *ts, f)).collect();
        let encoded = codec.encode(&events);
        let mut got = Vec::new();
        for request in &encoded.requests {
            for stream in decode(&request.body).streams {
                let lines: Vec<String> = stream.entries.iter().map(|e| e.line.clone()).collect();
                got.push((stream.labels, lines));
            }
        }
        let expected: Vec<(String, Vec<String>)> = expected
            .iter()
            .map(|(labels, lines)| {
                (
                    labels.to_string(),
                    lines.iter().map(|l| l.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(got, expected, "config {yaml}");
    }

    #[test]
    fn streams_labels_and_order() {
        let base = "endpoint: http://x\n";
        check(
            &format!("{base}labels: {{ job: web, status: '{{{{ status }}}}' }}"),
            &[
                ("a", 3, &[("status", "200")]),
                ("b", 1, &[("status", "500")]),
                ("c", 2, &[("status", "200")]),
            ],
            &[
                (r#"{job="web", status="200"}"#, &["c", "a"]),
                (r#"{job="web", status="500"}"#, &["b"]),
            ],
        );
        check(
            &format!("{base}labels: {{ job: web, host: '{{{{ host }}}}' }}"),
            &[("a", 1, &[])],
            &[(r#"{job="web"}"#, &["a"])],
        );
        check(base, &[("a", 1, &[])], &[(r#"{agent="sluice"}"#, &["a"])]);
        check(
            &format!("{base}labels: {{ job: 'say \"{{{{ w }}}}\"' }}"),
            &[("a", 1, &[("w", "a\\b")])],
            &[(r#"{job="say \"a\\b\""}"#, &["a"])],
        );
        check(
            &format!("{base}labels: {{ job: web, u: '{{{{ user }}}}' }}\nmax_streams: 2"),
            &[
                ("a", 1, &[("user", "1")]),
                ("b", 1, &[("user", "2")]),
                ("c", 1, &[("user", "3")]),
                ("d", 2, &[("user", "1")]),
            ],
            &[
                (r#"{job="web", u="1"}"#, &["a", "d"]),
                (r#"{job="web", u="2"}"#, &["b"]),
                (r#"{job="web", overflow="true"}"#, &["c"]),
            ],
        );
        check(
            &format!("{base}line: json\nremove_label_fields: true\nlabels: {{ s: '{{{{ s }}}}' }}"),
            &[("m", 0, &[("s", "x"), ("k", "v")])],
            &[(
                r#"{s="x"}"#,
                &[r#"{"k":"v","message":"m","timestamp":"1970-01-01T00:00:00Z"}"#],
            )],
        );
    }

    #[test]
    fn runs_of_one_stream_group_and_count_as_one_by_one() {
        // Consecutive events of a stream take the last event's group: the same streams,
        // and every event sent to the overflow stream counted.
        let yaml = "endpoint: http://x\nlabels: { u: '{{ user }}', v: '{{ v }}' }\nmax_streams: 1";
        let settings = Arc::new(config(yaml).sink.settings().unwrap());
        let overflow = Counter::default();
        let mut codec = LokiCodec::new(settings, overflow.clone(), Counter::default());
        let users = ["1", "1", "2", "2", "2", "1"];
        let events: Vec<Event> = users
            .iter()
            .enumerate()
            .map(|(i, user)| event(&i.to_string(), 1, &[("user", user)]))
            .collect();
        let mut got = Vec::new();
        for request in &codec.encode(&events).requests {
            for stream in decode(&request.body).streams {
                let lines: Vec<String> = stream.entries.iter().map(|e| e.line.clone()).collect();
                got.push((stream.labels, lines));
            }
        }
        assert_eq!(
            got,
            vec![
                (
                    r#"{u="1"}"#.to_owned(),
                    vec!["0".into(), "1".into(), "5".into()]
                ),
                (
                    r#"{overflow="true"}"#.to_owned(),
                    vec!["2".into(), "3".into(), "4".into()]
                ),
            ]
        );
        assert_eq!(overflow.get(), 3);
        // Renderings that join to the same text are still different streams.
        check(
            "endpoint: http://x\nlabels: { a: '{{ x }}', b: '{{ y }}' }",
            &[
                ("p", 1, &[("x", "ab"), ("y", "c")]),
                ("q", 1, &[("x", "a"), ("y", "bc")]),
                ("r", 1, &[("x", "a"), ("y", "bc")]),
            ],
            &[
                (r#"{a="ab", b="c"}"#, &["p"]),
                (r#"{a="a", b="bc"}"#, &["q", "r"]),
            ],
        );
    }

    #[test]
    fn out_of_order_policies() {
        for (policy, expected_ts, expected_dropped) in [
            ("accept", vec![10, 5], 0),
            ("rewrite_timestamp", vec![10, 10], 0),
            ("drop", vec![10], 1),
        ] {
            let mut codec = config(&format!("endpoint: http://x\nout_of_order: {policy}"))
                .codec()
                .unwrap();
            let first = codec.encode(&[event("a", 10, &[])]);
            let second = codec.encode(&[event("b", 5, &[])]);
            assert_eq!(second.dropped.len(), expected_dropped, "{policy}");
            let mut got = Vec::new();
            for request in first.requests.iter().chain(&second.requests) {
                for stream in decode(&request.body).streams {
                    for entry in stream.entries {
                        let ts = entry.timestamp.unwrap();
                        got.push(ts.seconds * 1_000_000_000 + i64::from(ts.nanos));
                    }
                }
            }
            assert_eq!(got, expected_ts, "{policy}");
        }
    }

    #[test]
    fn one_request_per_tenant() {
        let mut codec = config("endpoint: http://x\ntenant_id: '{{ team }}'")
            .codec()
            .unwrap();
        let encoded = codec.encode(&[
            event("a", 1, &[("team", "red")]),
            event("b", 1, &[("team", "blue")]),
            event("c", 2, &[("team", "red")]),
        ]);
        let tenants: Vec<(String, Vec<usize>)> = encoded
            .requests
            .iter()
            .map(|r| (r.headers[0].1.to_str().unwrap().to_owned(), r.items.clone()))
            .collect();
        assert_eq!(
            tenants,
            vec![("red".into(), vec![0, 2]), ("blue".into(), vec![1])]
        );
    }

    #[test]
    fn refuses_bad_config() {
        for (yaml, expected) in [
            (
                "endpoint: http://x\nlabels: { 1bad: x }",
                "not a valid Loki label name",
            ),
            (
                "endpoint: http://x\nlabels: { a-b: x }",
                "not a valid Loki label name",
            ),
            (
                "endpoint: http://x\nlabels: { a: '{{ x' }",
                "without a closing",
            ),
            (
                "endpoint: http://x\nlabels: { a: '{{ }}' }",
                "empty field name",
            ),
            ("endpoint: http://x\ncompression: gzip", "not supported"),
            (
                "endpoint: http://x\nencoding: json\ncompression: snappy",
                "not supported",
            ),
            ("endpoint: http://x\nmax_streams: 0", "max_streams"),
        ] {
            let error = format!("{:#}", config(yaml).build().unwrap_err());
            assert!(error.contains(expected), "{yaml}: {error}");
        }
        let built = config("endpoint: http://loki:3100/base/\nencoding: json\ncompression: { algorithm: gzip, level: 9 }").build().unwrap();
        assert_eq!(
            built.driver.url().as_str(),
            "http://loki:3100/base/loki/api/v1/push"
        );
        for (endpoint, url) in [
            ("http://l:3100", "http://l:3100/loki/api/v1/push"),
            (
                "http://vl:9428/insert/loki/",
                "http://vl:9428/insert/loki/api/v1/push",
            ),
            ("http://l/x/loki/api/v1/push", "http://l/x/loki/api/v1/push"),
            (
                "http://l/x/loki/api/v1/push/",
                "http://l/x/loki/api/v1/push",
            ),
        ] {
            let built = config(&format!("endpoint: {endpoint}")).build().unwrap();
            assert_eq!(built.driver.url().as_str(), url, "{endpoint}");
        }
    }

    #[test]
    fn reads_loki_400_reasons() {
        for (body, expected) in [
            ("entry with timestamp 2024-01-01 ignored, reason: 'entry out of order' for stream: {job=\"a\"}", "out_of_order"),
            ("entry for stream '{job=\"a\"}' has timestamp too old: 2020-01-01, oldest acceptable timestamp is: 2024-01-01", "too_old"),
            ("entry too far behind, entry timestamp is: ...", "too_old"),
            ("Max entry size '256' bytes exceeded for stream '{job=\"a\"}' while adding an entry with length '300' bytes (line too long)", "line_too_long"),
            ("error parsing labels '{job=}': parse error", "invalid_labels"),
            ("", "bad_request"),
            ("\u{0}\u{1}garbage", "bad_request"),
        ] {
            assert_eq!(reason_400(body.as_bytes()), expected, "{body}");
        }
    }
}
