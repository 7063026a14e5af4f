//! Sending `_bulk` requests and reading their answers
//! (<https://www.elastic.co/docs/api/doc/elasticsearch/operation/operation-bulk>).
//!
//! - **Endpoints in turn.** Each request goes to the next endpoint. A transport failure
//!   (refused, reset, timed out) moves the same request on to the following endpoint,
//!   at most once per endpoint; when every endpoint failed, the send fails retryably.
//! - **Whole-request answers** are classified by the shared HTTP layer (429 and 5xx
//!   retryable with `Retry-After`, 401/403 permanent, ...), except **413**: the records
//!   are sent again in two halves, each half split again while it is refused, down to
//!   single documents; a document too large on its own is rejected with the reason.
//!   Re-sending after a partial success is safe because every action is a `create`
//!   with the record's id: what already landed answers 409, which counts as delivered.
//! - **A 2xx answer** must be the documented shape, `{"items":[{"<op>":{"status":…}}…]}`,
//!   with one item per document in request order (an item's `_id`, when given, must be
//!   the document's). Anything else fails the send retryably: nothing of it can be
//!   acknowledged, and the re-send is idempotent.
//! - **Per item:** 2xx delivered; 409 `version_conflict_engine_exception` already there,
//!   delivered; 429 and 5xx retried alone (keyed on the status: OpenSearch calls its
//!   rejection `rejected_execution_exception`); 401/403 fail the whole send permanently
//!   (a permission problem is for an operator to fix, not for the dead-letter file);
//!   any other status is rejected with ES's `type: reason` (and its cause).

use super::request_builder::BulkBody;
use crate::SinkError;
use crate::http::{HttpClient, HttpRequest, HttpResponse};
use bytes::Bytes;
use reqwest::header::HeaderValue;
use reqwest::{Method, Url};
use serde_json::Value;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use tracing::{debug, warn};

/// Most characters of a server's reason kept for the dead-letter file.
const MAX_REASON_CHARS: usize = 1000;

/// What became of one document of a bulk request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Written now, or already there (409 on `create`).
    Delivered,
    /// Refused for now (429, 5xx): worth sending again alone.
    Retry { reason: String, status: u16 },
    /// Refused for good: to the dead-letter file.
    Rejected { reason: String, status: u16 },
}

/// One configured endpoint.
#[derive(Debug, Clone)]
struct Endpoint {
    /// `https://host:port`, for logs and errors (never a path, which could hold a secret).
    origin: String,
    /// `<base>/_bulk`, with `pipeline=` when configured and [`ANSWER_FIELDS`].
    bulk: Url,
    /// `<base>/`.
    root: Url,
}

/// The `filter_path` of every bulk request: the answer keeps, of each item, only what
/// the sink reads (its `_id`, `status` and `error`), not its index, version, sequence
/// number and shards. That makes the answer about a third of its size, and reading it
/// about as much cheaper.
pub const ANSWER_FIELDS: &str = "errors,items.*._id,items.*.status,items.*.error";

/// The transport of one Elasticsearch sink: its client and endpoints.
#[derive(Debug)]
pub struct BulkService {
    client: HttpClient,
    endpoints: Vec<Endpoint>,
    /// Which endpoint the next request goes to first.
    next: AtomicUsize,
}

impl BulkService {
    /// `bases` are the configured base URLs (at least one); `pipeline` is sent as
    /// `pipeline=` on every bulk request, and [`ANSWER_FIELDS`] as `filter_path=`.
    pub fn new(client: HttpClient, bases: &[Url], pipeline: Option<&str>) -> BulkService {
        let endpoints = bases
            .iter()
            .map(|base| {
                let mut bulk = below(base, "_bulk");
                if let Some(pipeline) = pipeline {
                    bulk.query_pairs_mut().append_pair("pipeline", pipeline);
                }
                bulk.query_pairs_mut()
                    .append_pair("filter_path", ANSWER_FIELDS);
                Endpoint {
                    origin: base.origin().ascii_serialization(),
                    bulk,
                    root: below(base, ""),
                }
            })
            .collect();
        BulkService {
            client,
            endpoints,
            next: AtomicUsize::new(0),
        }
    }

    fn sink(&self) -> &str {
        self.client.sink()
    }

    /// The origins of the endpoints, in configured order.
    pub fn origins(&self) -> Vec<String> {
        self.endpoints.iter().map(|e| e.origin.clone()).collect()
    }

    /// `GET /` of endpoint `index`, classified (a 2xx or an error).
    pub async fn get_root(&self, index: usize) -> Result<HttpResponse, SinkError> {
        let Some(endpoint) = self.endpoints.get(index) else {
            return Err(SinkError::permanent(
                self.sink(),
                format!("no endpoint number {index}"),
            ));
        };
        self.client
            .send(HttpRequest::get(endpoint.root.clone()))
            .await
    }

    /// Sends the whole of `body`: the outcome of each of its records, in order. `ids`
    /// are the records' ids (`_id`), to check the answer against.
    pub async fn deliver(
        &self,
        body: &BulkBody,
        ids: &[&str],
    ) -> Result<Vec<ItemOutcome>, SinkError> {
        let mut outcomes: Vec<Option<ItemOutcome>> = vec![None; body.len()];
        // A stack of record ranges still to send; a 413 pushes the two halves.
        let mut pending: Vec<Range<usize>> = Vec::new();
        pending.push(0..body.len());
        let mut split = false;
        while let Some(range) = pending.pop() {
            let (method, url, response) = self.post(body.slice(range.clone())).await?;
            if response.status == reqwest::StatusCode::PAYLOAD_TOO_LARGE {
                if range.len() > 1 {
                    if !split {
                        warn!(sink = %self.sink(), records = range.len(),
                            "The server refused a bulk request as too large (HTTP 413); \
                             sending its records in smaller requests.");
                        split = true;
                    }
                    let middle = range.start + range.len() / 2;
                    // Popped last-in first-out: the first half goes first.
                    pending.push(middle..range.end);
                    pending.push(range.start..middle);
                } else {
                    let bytes = body.slice(range.clone()).len();
                    outcomes[range.start] = Some(ItemOutcome::Rejected {
                        reason: format!(
                            "the document alone makes a {bytes}-byte bulk request, which the \
                             server refuses as too large (HTTP 413; Elasticsearch's \
                             http.max_content_length)"
                        ),
                        status: 413,
                    });
                }
                continue;
            }
            let response = self.client.classify(&method, &url, response)?;
            let items = read_items(&response.body, &ids[range.clone()]).map_err(|why| {
                SinkError::retryable(self.sink(), format!("{method} {}: {why}", origin(&url)))
                    .with_status(response.status.as_u16())
            })?;
            for (offset, item) in items.into_iter().enumerate() {
                outcomes[range.start + offset] = Some(match item {
                    Item::Outcome(outcome) => outcome,
                    Item::Forbidden { reason, status } => {
                        return Err(SinkError::permanent(
                            self.sink(),
                            format!(
                                "{method} {}: a document was refused for lack of permission \
                                 (check the credentials' index privileges): {reason}",
                                origin(&url)
                            ),
                        )
                        .with_status(status));
                    }
                });
            }
        }
        outcomes
            .into_iter()
            .enumerate()
            .map(|(i, outcome)| {
                outcome.ok_or_else(|| {
                    SinkError::retryable(
                        self.sink(),
                        format!("no outcome for record {i} of the batch"),
                    )
                })
            })
            .collect()
    }

    /// POSTs `body` to the next endpoint, moving on to the following one after a
    /// transport failure (each endpoint at most once). Returns whatever answered.
    async fn post(&self, body: Bytes) -> Result<(Method, Url, HttpResponse), SinkError> {
        let count = self.endpoints.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed) % count.max(1);
        let mut last_error = None;
        for turn in 0..count {
            let endpoint = &self.endpoints[(first + turn) % count];
            debug!(sink = %self.sink(), endpoint = %endpoint.origin, bytes = body.len(), "Sending a bulk request.");
            let request = HttpRequest::post(
                endpoint.bulk.clone(),
                HeaderValue::from_static("application/x-ndjson"),
                // Shared with the encoded batch, not copied.
                body.clone(),
            );
            match self.client.send_raw(request).await {
                Ok(response) => return Ok((Method::POST, endpoint.bulk.clone(), response)),
                Err(error) if error.is_retryable() && turn + 1 < count => {
                    warn!(sink = %self.sink(), endpoint = %endpoint.origin, error = %error,
                        "Endpoint failed; trying the next one.");
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            SinkError::permanent(self.sink(), "no endpoint is configured".to_owned())
        }))
    }
}

/// `base` with `segment` appended to its path (`https://h/es` + `_bulk` →
/// `https://h/es/_bulk`).
fn below(base: &Url, segment: &str) -> Url {
    let mut url = base.clone();
    let path = base.path().trim_end_matches('/');
    url.set_path(&format!("{path}/{segment}"));
    url.set_query(None);
    url
}

fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// One item of a bulk answer as the sink reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Outcome(ItemOutcome),
    /// 401/403 on an item: fails the whole send.
    Forbidden {
        reason: String,
        status: u16,
    },
}

/// The items of a bulk answer, one per id in `ids`, in order; `Err` says why the answer
/// cannot be trusted.
pub fn read_items(body: &[u8], ids: &[&str]) -> Result<Vec<Item>, String> {
    // The common answer, every document written: compared with what Elasticsearch
    // writes, or else read without building a `Value`.
    if super::answer::exactly_written(body, ids) || super::answer::all_delivered(body, ids) {
        return Ok(vec![Item::Outcome(ItemOutcome::Delivered); ids.len()]);
    }
    read_items_fully(body, ids)
}

/// [`read_items`] through a `serde_json::Value`: any answer, every error named.
pub(super) fn read_items_fully(body: &[u8], ids: &[&str]) -> Result<Vec<Item>, String> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the answer is not a bulk response (not JSON: {e}): {}",
            crate::http::response::excerpt(body)
        )
    })?;
    let Some(items) = answer.get("items").and_then(Value::as_array) else {
        return Err(format!(
            "the answer is not a bulk response (no items array): {}",
            crate::http::response::excerpt(body)
        ));
    };
    if items.len() != ids.len() {
        return Err(format!(
            "the answer has {} items for the {} documents sent",
            items.len(),
            ids.len()
        ));
    }
    items
        .iter()
        .zip(ids)
        .enumerate()
        .map(|(i, (item, id))| read_item(item, id).map_err(|why| format!("item {i}: {why}")))
        .collect()
}

fn read_item(item: &Value, id: &str) -> Result<Item, String> {
    let inner = match item.as_object().map(|o| o.iter().collect::<Vec<_>>()) {
        Some(entries) if entries.len() == 1 => entries[0].1,
        _ => return Err("not an object with one operation".to_owned()),
    };
    let status = inner
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| "no HTTP status".to_owned())?;
    if let Some(answered) = inner.get("_id").and_then(Value::as_str)
        && answered != id
    {
        return Err(format!(
            "answers for _id {answered:?}, not for the document sent there ({id:?})"
        ));
    }
    let error = inner.get("error");
    let kind = error
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(match status {
        200..=299 => Item::Outcome(ItemOutcome::Delivered),
        // The `create` found the document already written: by an earlier try of ours.
        409 if kind == "version_conflict_engine_exception" => Item::Outcome(ItemOutcome::Delivered),
        429 | 500..=599 => Item::Outcome(ItemOutcome::Retry {
            reason: reason(status, error),
            status,
        }),
        401 | 403 => Item::Forbidden {
            reason: reason(status, error),
            status,
        },
        _ => Item::Outcome(ItemOutcome::Rejected {
            reason: reason(status, error),
            status,
        }),
    })
}

/// `type: reason (caused by type: reason)` from ES's `ErrorCause`, or the error text
/// when ES gave a string; at most [`MAX_REASON_CHARS`] characters.
fn reason(status: u16, error: Option<&Value>) -> String {
    let describe = |cause: &Value| -> Option<String> {
        let kind = cause.get("type").and_then(Value::as_str);
        let text = cause.get("reason").and_then(Value::as_str);
        match (kind, text) {
            (Some(kind), Some(text)) => Some(format!("{kind}: {text}")),
            (Some(kind), None) => Some(kind.to_owned()),
            (None, Some(text)) => Some(text.to_owned()),
            (None, None) => None,
        }
    };
    let mut text = match error {
        Some(Value::String(text)) => text.clone(),
        Some(error) => match describe(error) {
            Some(mut text) => {
                if let Some(cause) = error.get("caused_by").and_then(describe) {
                    text.push_str(&format!(" (caused by {cause})"));
                }
                text
            }
            None => format!("HTTP {status}: {error}"),
        },
        None => format!("HTTP {status} without an error"),
    };
    if text.chars().count() > MAX_REASON_CHARS {
        text = text.chars().take(MAX_REASON_CHARS - 1).collect::<String>() + "…";
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outcomes(answer: &Value, ids: &[&str]) -> Result<Vec<Item>, String> {
        read_items(answer.to_string().as_bytes(), ids)
    }

    #[test]
    fn items_map_to_outcomes_by_status() {
        let answer = json!({"took": 3, "errors": true, "items": [
            {"create": {"_index": "e", "_id": "a", "status": 201, "result": "created"}},
            {"create": {"_index": "e", "_id": "b", "status": 409, "error": {
                "type": "version_conflict_engine_exception",
                "reason": "[b]: version conflict, document already exists (current version [1])"}}},
            {"create": {"_index": "e", "_id": "c", "status": 429, "error": {
                "type": "rejected_execution_exception", "reason": "rejected execution"}}},
            {"create": {"_index": "e", "_id": "d", "status": 503, "error": {
                "type": "unavailable_shards_exception", "reason": "primary shard is not active"}}},
            {"create": {"_index": "e", "_id": "e", "status": 400, "error": {
                "type": "document_parsing_exception",
                "reason": "[1:15] failed to parse field [occur_time] of type [date]",
                "caused_by": {"type": "illegal_argument_exception", "reason": "bad date"}}}},
            {"create": {"_index": "e", "_id": "f", "status": 404, "error": "no such index"}},
            {"index": {"_id": "g", "status": 200}},
        ]});
        let items = outcomes(&answer, &["a", "b", "c", "d", "e", "f", "g"]).unwrap();
        assert_eq!(
            items,
            vec![
                Item::Outcome(ItemOutcome::Delivered),
                Item::Outcome(ItemOutcome::Delivered),
                Item::Outcome(ItemOutcome::Retry {
                    reason: "rejected_execution_exception: rejected execution".to_owned(),
                    status: 429
                }),
                Item::Outcome(ItemOutcome::Retry {
                    reason: "unavailable_shards_exception: primary shard is not active".to_owned(),
                    status: 503
                }),
                Item::Outcome(ItemOutcome::Rejected {
                    reason: "document_parsing_exception: [1:15] failed to parse field \
                             [occur_time] of type [date] (caused by \
                             illegal_argument_exception: bad date)"
                        .to_owned(),
                    status: 400
                }),
                Item::Outcome(ItemOutcome::Rejected {
                    reason: "no such index".to_owned(),
                    status: 404
                }),
                Item::Outcome(ItemOutcome::Delivered),
            ]
        );
    }

    #[test]
    fn a_409_that_is_not_a_version_conflict_is_rejected() {
        let answer = json!({"items": [{"create": {"status": 409}}]});
        assert_eq!(
            outcomes(&answer, &["a"]).unwrap(),
            vec![Item::Outcome(ItemOutcome::Rejected {
                reason: "HTTP 409 without an error".to_owned(),
                status: 409
            })]
        );
    }

    #[test]
    fn item_401_and_403_fail_the_send() {
        let answer = json!({"items": [{"create": {"_id": "a", "status": 403, "error": {
            "type": "security_exception",
            "reason": "action [indices:data/write/bulk[s]] is unauthorized"}}}]});
        assert_eq!(
            outcomes(&answer, &["a"]).unwrap(),
            vec![Item::Forbidden {
                reason: "security_exception: action [indices:data/write/bulk[s]] is unauthorized"
                    .to_owned(),
                status: 403
            }]
        );
    }

    #[test]
    fn answers_of_the_wrong_shape_are_errors_not_panics() {
        let ids = ["a"];
        let cases: Vec<(&[u8], &str)> = vec![
            (b"<html>502 Bad Gateway</html>", "not JSON"),
            (b"", "not JSON"),
            (b"{\"took\":1}", "no items array"),
            (b"{\"items\":{}}", "no items array"),
            (b"[]", "no items array"),
            (b"{\"items\":[]}", "0 items for the 1 documents"),
            (b"{\"items\":[{},{}]}", "2 items for the 1 documents"),
            (
                b"{\"items\":[{}]}",
                "item 0: not an object with one operation",
            ),
            (
                b"{\"items\":[7]}",
                "item 0: not an object with one operation",
            ),
            (
                b"{\"items\":[{\"create\":{},\"index\":{}}]}",
                "not an object with one operation",
            ),
            (b"{\"items\":[{\"create\":{}}]}", "item 0: no HTTP status"),
            (b"{\"items\":[{\"create\":7}]}", "item 0: no HTTP status"),
            (
                b"{\"items\":[{\"create\":{\"status\":\"201\"}}]}",
                "no HTTP status",
            ),
            (
                b"{\"items\":[{\"create\":{\"status\":99999}}]}",
                "no HTTP status",
            ),
            (
                b"{\"items\":[{\"create\":{\"status\":201,\"_id\":\"z\"}}]}",
                "answers for _id \"z\"",
            ),
        ];
        for (body, expected) in cases {
            let error = read_items(body, &ids).unwrap_err();
            assert!(
                error.contains(expected),
                "{}: {error}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn long_reasons_are_cut() {
        let long = "x".repeat(5000);
        let text = reason(400, Some(&json!({"type": "t", "reason": long})));
        assert_eq!(text.chars().count(), MAX_REASON_CHARS);
        assert!(text.starts_with("t: xxx") && text.ends_with('…'));
    }

    #[test]
    fn urls_below_a_base() {
        let base = Url::parse("https://es.example:9200").unwrap();
        assert_eq!(
            below(&base, "_bulk").as_str(),
            "https://es.example:9200/_bulk"
        );
        assert_eq!(below(&base, "").as_str(), "https://es.example:9200/");
        let prefixed = Url::parse("https://proxy.example/es/").unwrap();
        assert_eq!(
            below(&prefixed, "_bulk").as_str(),
            "https://proxy.example/es/_bulk"
        );
        assert_eq!(below(&prefixed, "").as_str(), "https://proxy.example/es/");
    }
}
