//! Judging a `_bulk` reply: the whole request's status, then each item's result, mapped
//! back to the request's items by position (Elasticsearch answers items in request order).
//! Spec: <https://www.elastic.co/guide/en/elasticsearch/reference/current/docs-bulk.html#bulk-api-response-body>.
//!
//! Per item: 2xx accepted; 409 `version_conflict_engine_exception` on `create` accepted (the
//! document with that `_id` is already there: a replay); 429 and 5xx retried (only those
//! items); any other status rejected for good with `"<status> <error.type>: <error.reason>"`
//! (dead-lettered). `errors: true` never retries the whole request.
//!
//! Whole request: a 2xx whose body is not a bulk response, or whose `items` do not match the
//! request one to one, is retried whole and counted (never a silent success); 401/403 are
//! retried (credentials get fixed; dead-lettering everything meanwhile would be loss); 413 is
//! rejected with a hint; other statuses as [`judge_status`].
//!
//! Owns: reading replies. Never: touches metrics or the network (the caller counts
//! [`ItemStats`]).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::sink::driver::{judge_status, Reply, Verdict};

/// What the items of one reply came to, for the sink's metrics.
#[derive(Debug, Default, PartialEq)]
pub struct ItemStats {
    /// Items indexed or created.
    pub accepted: u64,
    /// `create` items answered 409 because the `_id` exists (counted as delivered).
    pub conflicts: u64,
    /// Items to send again (429, 5xx).
    pub retried: u64,
    /// Failed items by (status, `error.type`), retried or rejected.
    pub failures: BTreeMap<(u16, String), u64>,
    /// Why the whole reply was unusable, if it was.
    pub invalid: Option<&'static str>,
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    items: Option<Vec<Item>>,
}

/// `{"<action>": {...}}`: one action per item (anything else makes the reply unusable).
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Item {
    Index(ItemResult),
    Create(ItemResult),
    Update(ItemResult),
    Delete(ItemResult),
}

#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// (`error.type`, `error.reason`) of an error object (or of a bare error string).
fn error_parts(error: Option<&serde_json::Value>) -> (String, String) {
    match error {
        Some(serde_json::Value::Object(map)) => (
            map.get("type")
                .and_then(|v| v.as_str())
                .unwrap_or("unknown")
                .to_owned(),
            map.get("reason")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned(),
        ),
        Some(serde_json::Value::String(text)) => ("unknown".to_owned(), text.clone()),
        _ => ("unknown".to_owned(), String::new()),
    }
}

/// Judges a `_bulk` reply to a request of `reply.items` items.
pub fn judge_bulk(reply: &Reply<'_>) -> (Verdict, ItemStats) {
    let mut stats = ItemStats::default();
    if !(200..=299).contains(&reply.status) {
        return (judge_request_status(reply), stats);
    }
    let items = match serde_json::from_slice::<BulkResponse>(reply.body) {
        Ok(BulkResponse { items: Some(items) }) if items.len() == reply.items => items,
        Ok(BulkResponse { items: Some(_) }) => {
            return (unusable(&mut stats, "bulk_item_count_mismatch"), stats)
        }
        _ => return (unusable(&mut stats, "invalid_bulk_response"), stats),
    };
    let mut retry = Vec::new();
    let mut retry_reason = String::new();
    let mut reject = Vec::new();
    for (position, item) in items.into_iter().enumerate() {
        let (is_create, result) = match item {
            Item::Create(result) => (true, result),
            Item::Index(result) | Item::Update(result) | Item::Delete(result) => (false, result),
        };
        if (200..=299).contains(&result.status) {
            stats.accepted += 1;
            continue;
        }
        let (kind, text) = error_parts(result.error.as_ref());
        if result.status == 409 && is_create && kind == "version_conflict_engine_exception" {
            stats.conflicts += 1;
            continue;
        }
        *stats
            .failures
            .entry((result.status, kind.clone()))
            .or_default() += 1;
        if result.status == 429 || result.status >= 500 {
            stats.retried += 1;
            if retry.is_empty() {
                retry_reason = format!("{} {kind}: {text}", result.status);
            }
            retry.push(position);
        } else {
            reject.push((position, format!("{} {kind}: {text}", result.status)));
        }
    }
    if retry.is_empty() && reject.is_empty() {
        return (Verdict::Delivered, stats);
    }
    (
        Verdict::Partial {
            retry,
            retry_reason,
            reject,
        },
        stats,
    )
}

/// A 2xx reply that cannot be read item by item: the whole request is sent again.
fn unusable(stats: &mut ItemStats, why: &'static str) -> Verdict {
    *stats = ItemStats {
        invalid: Some(why),
        ..ItemStats::default()
    };
    Verdict::Retry {
        reason: why.to_owned(),
        retry_after: None,
    }
}

/// A non-2xx answer to the whole request.
fn judge_request_status(reply: &Reply<'_>) -> Verdict {
    match reply.status {
        401 | 403 => Verdict::Retry {
            reason: format!("http_{}", reply.status),
            retry_after: None,
        },
        413 => Verdict::Reject {
            reason: "http_413: request body too large for Elasticsearch \
                     (lower batch.max_bytes or raise http.max_content_length)"
                .to_owned(),
        },
        status => match judge_status(reply) {
            Verdict::Reject { reason } => {
                let body: Option<serde_json::Value> = serde_json::from_slice(reply.body).ok();
                match body.as_ref().and_then(|b| b.get("error")) {
                    Some(error) => {
                        let (kind, text) = error_parts(Some(error));
                        Verdict::Reject {
                            reason: format!("http_{status}: {kind}: {text}"),
                        }
                    }
                    None => Verdict::Reject { reason },
                }
            }
            other => other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn check(status: u16, items: usize, body: &str, expected: &str) {
        let headers = HeaderMap::new();
        let (verdict, stats) = judge_bulk(&Reply {
            status,
            headers: &headers,
            body: body.as_bytes(),
            items,
            path_segment: None,
        });
        let verdict = match verdict {
            Verdict::Delivered => "delivered".to_owned(),
            Verdict::Retry { reason, .. } => format!("retry {reason}"),
            Verdict::Reject { reason } => format!("reject {reason}"),
            Verdict::Partial { retry, reject, .. } => {
                format!("partial retry={retry:?} reject={reject:?}")
            }
            Verdict::Split { reason } => format!("split {reason}"),
        };
        let got = format!(
            "{verdict} | accepted={} conflicts={} retried={} failures={:?}",
            stats.accepted, stats.conflicts, stats.retried, stats.failures
        );
        assert_eq!(got, expected, "body {body}");
    }

    const OK: &str = r#"{"create":{"_index":"i","_id":"a","status":201,"result":"created"}}"#;
    const CONFLICT: &str = r#"{"create":{"_index":"i","_id":"a","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[a]: version conflict, document already exists"}}}"#;
    const BUSY: &str = r#"{"create":{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution"}}}"#;
    const MAPPING: &str = r#"{"index":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [n] of type [long]"}}}"#;

    #[test]
    fn judges_items() {
        check(
            200,
            2,
            &format!(r#"{{"took":3,"errors":false,"items":[{OK},{OK}]}}"#),
            "delivered | accepted=2 conflicts=0 retried=0 failures={}",
        );
        check(
            200,
            2,
            &format!(r#"{{"errors":true,"items":[{CONFLICT},{OK}]}}"#),
            "delivered | accepted=1 conflicts=1 retried=0 failures={}",
        );
        check(
            200,
            4,
            &format!(r#"{{"errors":true,"items":[{OK},{BUSY},{MAPPING},{BUSY}]}}"#),
            "partial retry=[1, 3] reject=[(2, \"400 mapper_parsing_exception: failed to parse field [n] of type [long]\")] | accepted=1 conflicts=0 retried=2 failures={(400, \"mapper_parsing_exception\"): 1, (429, \"es_rejected_execution_exception\"): 2}",
        );
        // 409 on `index` is not a replay: rejected.
        check(
            200,
            1,
            r#"{"errors":true,"items":[{"index":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"r"}}}]}"#,
            "partial retry=[] reject=[(0, \"409 version_conflict_engine_exception: r\")] | accepted=0 conflicts=0 retried=0 failures={(409, \"version_conflict_engine_exception\"): 1}",
        );
        check(
            200,
            1,
            r#"{"items":[{"create":{"status":503,"error":"unavailable"}}]}"#,
            "partial retry=[0] reject=[] | accepted=0 conflicts=0 retried=1 failures={(503, \"unknown\"): 1}",
        );
    }

    #[test]
    fn unusable_replies_retry_whole() {
        let none = "accepted=0 conflicts=0 retried=0 failures={}";
        for (body, items, reason) in [
            ("not json", 1, "invalid_bulk_response"),
            ("", 1, "invalid_bulk_response"),
            (r#"{"took":1,"errors":false}"#, 1, "invalid_bulk_response"),
            (
                r#"{"items":[{"bogus":{"status":201}}]}"#,
                1,
                "invalid_bulk_response",
            ),
            (r#"{"items":[{"create":{}}]}"#, 1, "invalid_bulk_response"),
            (
                &format!(r#"{{"errors":false,"items":[{OK}]}}"#),
                2,
                "bulk_item_count_mismatch",
            ),
            (
                &format!(r#"{{"errors":false,"items":[{OK},{OK}]}}"#),
                1,
                "bulk_item_count_mismatch",
            ),
            (
                &format!(r#"{{"errors":false,"items":[{OK}"#),
                1,
                "invalid_bulk_response",
            ),
        ] {
            check(200, items, body, &format!("retry {reason} | {none}"));
        }
    }

    proptest::proptest! {
        /// Any bytes: never a panic, and never `Delivered` unless they are a bulk reply
        /// with exactly the request's item count.
        #[test]
        fn never_panics_on_any_body(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256), items in 0usize..4) {
            let headers = HeaderMap::new();
            let reply = Reply { status: 200, headers: &headers, body: &body, items, path_segment: None };
            let (verdict, _) = judge_bulk(&reply);
            if verdict == Verdict::Delivered {
                let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
                proptest::prop_assert_eq!(parsed["items"].as_array().map(Vec::len), Some(items));
            }
        }

        /// Random item statuses: every position lands in exactly one of accepted, retry
        /// or reject, by the documented rule.
        #[test]
        fn every_item_gets_one_fate(statuses in proptest::collection::vec(
            proptest::sample::select(vec![200u16, 201, 400, 404, 409, 429, 500, 503]), 1..50)) {
            let items: Vec<String> = statuses
                .iter()
                .map(|s| format!(r#"{{"create":{{"status":{s},"error":{{"type":"{}","reason":"r"}}}}}}"#,
                    if *s == 409 { "version_conflict_engine_exception" } else { "x" }))
                .collect();
            let body = format!(r#"{{"errors":true,"items":[{}]}}"#, items.join(","));
            let headers = HeaderMap::new();
            let reply = Reply { status: 200, headers: &headers, body: body.as_bytes(), items: statuses.len(), path_segment: None };
            let (verdict, stats) = judge_bulk(&reply);
            let (retry, reject) = match verdict {
                Verdict::Delivered => (Vec::new(), Vec::new()),
                Verdict::Partial { retry, reject, .. } => (retry, reject.into_iter().map(|(p, _)| p).collect()),
                other => panic!("unexpected {other:?}"),
            };
            for (position, status) in statuses.iter().enumerate() {
                let retried = retry.contains(&position);
                let rejected = reject.contains(&position);
                match status {
                    200 | 201 | 409 => proptest::prop_assert!(!retried && !rejected),
                    429 | 500 | 503 => proptest::prop_assert!(retried && !rejected),
                    _ => proptest::prop_assert!(!retried && rejected),
                }
            }
            proptest::prop_assert_eq!(
                stats.accepted + stats.conflicts + stats.retried + reject.len() as u64,
                statuses.len() as u64
            );
        }
    }

    #[test]
    fn judges_whole_request_statuses() {
        let none = "accepted=0 conflicts=0 retried=0 failures={}";
        for (status, body, expected) in [
            (503, "", "retry http_503"),
            (429, "", "retry http_429"),
            (401, "", "retry http_401"),
            (403, "", "retry http_403"),
            (
                413,
                "",
                "reject http_413: request body too large for Elasticsearch (lower batch.max_bytes or raise http.max_content_length)",
            ),
            (
                400,
                r#"{"error":{"type":"illegal_argument_exception","reason":"Malformed action/metadata line [1]"},"status":400}"#,
                "reject http_400: illegal_argument_exception: Malformed action/metadata line [1]",
            ),
            (404, "<html>", "reject http_404"),
        ] {
            check(status, 1, body, &format!("{expected} | {none}"));
        }
    }
}
