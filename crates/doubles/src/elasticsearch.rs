//! The Elasticsearch / OpenSearch `_bulk` API double
//! (<https://www.elastic.co/docs/api/doc/elasticsearch/operation/operation-bulk>), built
//! from `shared/reference/sink-wire-contracts.md` §2.
//!
//! It parses a bulk body the way `BulkRequestParser` does: NDJSON that must end with a
//! newline (`\r\n` tolerated), one action line (`create`, `index` or `delete`, with
//! `_index`, `_id`, ...) and, except for `delete`, one source line per action; a malformed
//! body is a whole-request 400 with ES's error envelope, a wrong `Content-Type` a 406, a
//! body over `max_content_length` (after decompression, as ES measures it) a 413 with an
//! empty body. A parsed request always gets a 200 with `{"took","errors","items"}`, the
//! items in request order, each with its own status: 201 created, 409
//! `version_conflict_engine_exception` on a `create` of an `_id` the index already has,
//! 400 from the mapping (a value of the wrong type for a mapped field, or a document the
//! test's predicate refuses: `document_parsing_exception` in ES 8,
//! `mapper_parsing_exception` in ES 7 and OpenSearch), data-stream rules (`create` only,
//! `@timestamp` required), invalid index names, and injected item 429s.
//!
//! Configured at start ([`ElasticsearchOptions`]: flavour, required auth, size limit,
//! data streams, mapping, ingest pipelines, a write-only key that gets 403 on `GET /`);
//! faults are injected while it runs ([`ElasticsearchDouble::throttle_items`],
//! [`ElasticsearchDouble::fail_next_bulk`], [`ElasticsearchDouble::answer_next_bulk`],
//! [`ElasticsearchDouble::refuse_documents`]). Documents are kept per index and `_id`
//! for assertions.
//!
//! Cost: every rule above is checked on every document, but nothing is built that no rule
//! needs. A source line is checked with the same parser a `serde_json::Value` would come
//! from, without building the tree unless a mapping, a data stream or a predicate looks
//! into it; documents are kept as the bytes received (a slice of the request body) and
//! parsed when a test asks for them; a written item's answer is written as text.

use crate::server::{Answer, Handler, Server, json, json_text};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::Read as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The double's maps, keyed by index names and ids: hashed with foldhash, which is
/// several times cheaper per key than the standard SipHash (a bulk request looks up
/// one index and one id per item).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// ES's default `http.max_content_length`.
pub const DEFAULT_MAX_CONTENT_LENGTH: usize = 100 * 1024 * 1024;

/// Which server the double plays; decides `GET /`, error type names and a few rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavour {
    /// Elasticsearch 8.15: `document_parsing_exception`, `X-Elastic-Product`, no `_type`.
    Elasticsearch8,
    /// Elasticsearch 7.17: `mapper_parsing_exception`, `_type` accepted and answered.
    Elasticsearch7,
    /// OpenSearch 2.15: `version.distribution = "opensearch"`, `mapper_parsing_exception`,
    /// `rejected_execution_exception`, no `X-Elastic-Product`, text 401.
    OpenSearch2,
    /// Another version for `GET /` (behaving like ES 8 otherwise): `distribution` is
    /// `Some("opensearch")` for OpenSearch.
    Other {
        number: String,
        distribution: Option<String>,
    },
}

impl Flavour {
    fn is_opensearch(&self) -> bool {
        match self {
            Flavour::OpenSearch2 => true,
            Flavour::Other { distribution, .. } => distribution.as_deref() == Some("opensearch"),
            Flavour::Elasticsearch8 | Flavour::Elasticsearch7 => false,
        }
    }

    /// ES before 8.8 and OpenSearch name a mapping failure `mapper_parsing_exception`.
    fn parsing_exception(&self) -> &'static str {
        match self {
            Flavour::Elasticsearch8 => "document_parsing_exception",
            Flavour::Other { .. } if !self.is_opensearch() => "document_parsing_exception",
            _ => "mapper_parsing_exception",
        }
    }

    /// OpenSearch strips the `OpenSearch` prefix of `OpenSearchRejectedExecutionException`.
    fn rejected_execution(&self) -> &'static str {
        if self.is_opensearch() {
            "rejected_execution_exception"
        } else {
            "es_rejected_execution_exception"
        }
    }

    fn allows_type(&self) -> bool {
        *self == Flavour::Elasticsearch7
    }

    /// ES 8 prefixes parsing reasons with `[line:column]`.
    fn positions_in_reasons(&self) -> bool {
        self.parsing_exception() == "document_parsing_exception"
    }

    fn version_number(&self) -> String {
        match self {
            Flavour::Elasticsearch8 => "8.15.0".to_owned(),
            Flavour::Elasticsearch7 => "7.17.22".to_owned(),
            Flavour::OpenSearch2 => "2.15.0".to_owned(),
            Flavour::Other { number, .. } => number.clone(),
        }
    }
}

/// Credentials the double demands on every request; without them, 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequiredAuth {
    /// `Authorization: Basic base64(user:password)`.
    Basic { user: String, password: String },
    /// `Authorization: ApiKey <encoded>`.
    ApiKey(String),
}

impl RequiredAuth {
    fn header(&self) -> String {
        match self {
            RequiredAuth::Basic { user, password } => {
                format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
            }
            RequiredAuth::ApiKey(key) => format!("ApiKey {key}"),
        }
    }
}

/// A mapped field's type: a value of the wrong JSON type is refused like ES refuses it
/// (numeric strings are coerced into numbers, as ES does by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// A whole number, or a string holding one.
    Long,
    /// `date` with `strict_date_optional_time||epoch_millis`: an RFC 3339 string or a
    /// number of milliseconds.
    Date,
    /// `date` with `format: epoch_millis`: a number (or numeric string) of milliseconds.
    EpochMillis,
    /// A string, number or boolean (ES turns scalars into text); no objects or arrays.
    Keyword,
    /// Like `Keyword`.
    Text,
}

impl FieldType {
    fn name(self) -> &'static str {
        match self {
            FieldType::Long => "long",
            FieldType::Date | FieldType::EpochMillis => "date",
            FieldType::Keyword => "keyword",
            FieldType::Text => "text",
        }
    }
}

/// How the double is set up at start. `Default` is an open ES 8 with a 100 MB limit,
/// dynamic mapping, no data streams and no pipeline checks.
#[derive(Debug, Clone)]
pub struct ElasticsearchOptions {
    pub flavour: Flavour,
    /// Credentials every request must carry.
    pub auth: Option<RequiredAuth>,
    /// `http.max_content_length` in bytes, measured after decompression.
    pub max_content_length: usize,
    /// Names of data streams; a pattern may end with `*` (`logs-*-*` is not supported,
    /// only a trailing star).
    pub data_streams: Vec<String>,
    /// Mapped fields (dotted paths into the source); other fields are dynamic.
    pub mapping: Vec<(String, FieldType)>,
    /// Ingest pipelines that exist; `None` accepts any name.
    pub pipelines: Option<Vec<String>>,
    /// `GET /` answers 403, as for an API key that may only write.
    pub root_forbidden: bool,
}

impl Default for ElasticsearchOptions {
    fn default() -> Self {
        ElasticsearchOptions {
            flavour: Flavour::Elasticsearch8,
            auth: None,
            max_content_length: DEFAULT_MAX_CONTENT_LENGTH,
            data_streams: Vec::new(),
            mapping: Vec::new(),
            pipelines: None,
            root_forbidden: false,
        }
    }
}

/// One document as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDocument {
    pub id: String,
    pub source: Value,
    pub version: u64,
}

/// One request as the double received it (the body is not kept; see
/// [`ElasticsearchDouble::last_body`]).
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    pub status: u16,
}

impl SeenRequest {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of query parameter `name`, not percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }
}

/// Counters over every `_bulk` request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkStats {
    /// Every request to `_bulk`, whatever the answer.
    pub requests: u64,
    /// Bulk requests refused whole (401, 406, 413, 400, injected failures).
    pub refused_requests: u64,
    /// Action items answered in parsed requests.
    pub items: u64,
    /// Items answered 201 (or 200 for an `index` over an existing document).
    pub written: u64,
    /// Items answered 409 (a `create` of an existing `_id`).
    pub conflicts: u64,
    /// Items answered 429.
    pub throttled: u64,
    /// Items answered another 4xx (mapping, data stream, index name, pipeline).
    pub refused_items: u64,
}

type Predicate = Arc<dyn Fn(&Value) -> Option<String> + Send + Sync>;

/// A document as kept: its source as received (valid JSON, an object), parsed on demand.
#[derive(Debug, Clone)]
struct Kept {
    source: Bytes,
    version: u64,
    /// The index's sequence number when the document was first written (since its last
    /// delete): [`ElasticsearchDouble::documents`] lists documents in this order.
    first_seq_no: u64,
}

impl Kept {
    fn stored(&self, id: &str) -> StoredDocument {
        StoredDocument {
            id: id.to_owned(),
            source: parse_kept(&self.source),
            version: self.version,
        }
    }
}

/// A kept source as a `Value`; it was checked to be a JSON object when it was written.
fn parse_kept(source: &[u8]) -> Value {
    serde_json::from_slice(source).unwrap_or(Value::Null)
}

/// A canned whole-request answer for the next bulk requests.
struct Fault {
    remaining: u32,
    status: u16,
    body: Option<String>,
    retry_after: Option<u64>,
}

#[derive(Default)]
struct Index {
    docs: FastMap<String, Kept>,
    seq_no: u64,
    backing: Option<String>,
}

struct State {
    options: ElasticsearchOptions,
    indices: FastMap<String, Index>,
    throttled_ids: FastMap<String, u32>,
    faults: Vec<Fault>,
    refuse: Option<Predicate>,
    stats: BulkStats,
    seen: Vec<SeenRequest>,
    last_body: Option<Bytes>,
    next_auto_id: u64,
}

/// An Elasticsearch / OpenSearch double serving real HTTP on 127.0.0.1; stops when
/// dropped.
pub struct ElasticsearchDouble {
    server: Server,
    state: Arc<Mutex<State>>,
}

impl ElasticsearchDouble {
    /// An open Elasticsearch 8 with the defaults of [`ElasticsearchOptions`].
    pub fn start() -> std::io::Result<ElasticsearchDouble> {
        Self::with(ElasticsearchOptions::default())
    }

    /// A double set up as `options` say.
    pub fn with(options: ElasticsearchOptions) -> std::io::Result<ElasticsearchDouble> {
        let state = Arc::new(Mutex::new(State {
            options,
            indices: FastMap::default(),
            throttled_ids: FastMap::default(),
            faults: Vec::new(),
            refuse: None,
            stats: BulkStats::default(),
            seen: Vec::new(),
            last_body: None,
            next_auto_id: 0,
        }));
        let shared = state.clone();
        let handler: Handler = Arc::new(move |request| handle(&shared, request));
        let server = Server::start("es-double", handler)?;
        Ok(ElasticsearchDouble { server, state })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The next `times` items of each of `ids` get an item 429
    /// (`es_rejected_execution_exception`; `rejected_execution_exception` in OpenSearch).
    pub fn throttle_items(&self, ids: &[&str], times: u32) {
        let mut state = self.state();
        for id in ids {
            state.throttled_ids.insert((*id).to_owned(), times);
        }
    }

    /// The next `times` bulk requests are refused whole with `status` (429: ES's
    /// rejected-execution envelope; 503: `master_not_discovered_exception`; others a
    /// generic error), with `Retry-After: <seconds>` if given. Queued after earlier
    /// injections.
    pub fn fail_next_bulk(&self, times: u32, status: u16, retry_after: Option<u64>) {
        self.state().faults.push(Fault {
            remaining: times,
            status,
            body: None,
            retry_after,
        });
    }

    /// The next `times` bulk requests get exactly this status and body (JSON content
    /// type), whatever they hold: for answers a real server should never give.
    pub fn answer_next_bulk(&self, times: u32, status: u16, body: &str) {
        self.state().faults.push(Fault {
            remaining: times,
            status,
            body: Some(body.to_owned()),
            retry_after: None,
        });
    }

    /// Documents for which `predicate` returns `Some(why)` are refused with an item 400
    /// parsing exception whose `caused_by.reason` is `why`, like a mapping would.
    pub fn refuse_documents(
        &self,
        predicate: impl Fn(&Value) -> Option<String> + Send + Sync + 'static,
    ) {
        self.state().refuse = Some(Arc::new(predicate));
    }

    /// The documents of `index` (a data stream's name for a data stream), in the order
    /// they were first written.
    pub fn documents(&self, index: &str) -> Vec<StoredDocument> {
        let state = self.state();
        let Some(index) = state.indices.get(index) else {
            return Vec::new();
        };
        let mut docs: Vec<(&String, &Kept)> = index.docs.iter().collect();
        docs.sort_unstable_by_key(|(_, kept)| kept.first_seq_no);
        docs.into_iter().map(|(id, kept)| kept.stored(id)).collect()
    }

    /// The source of one document.
    pub fn document(&self, index: &str, id: &str) -> Option<Value> {
        let state = self.state();
        Some(parse_kept(&state.indices.get(index)?.docs.get(id)?.source))
    }

    /// Names of the indices and data streams that hold documents, sorted.
    pub fn indices(&self) -> Vec<String> {
        let state = self.state();
        let mut names: Vec<String> = state
            .indices
            .iter()
            .filter(|(_, index)| !index.docs.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// Documents stored across all indices.
    pub fn count(&self) -> usize {
        self.state().indices.values().map(|i| i.docs.len()).sum()
    }

    /// Counters over the bulk requests.
    pub fn stats(&self) -> BulkStats {
        self.state().stats
    }

    /// Bulk requests received (whatever the answer).
    pub fn bulk_requests(&self) -> u64 {
        self.state().stats.requests
    }

    /// Every request received (bulk or not), oldest first.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state().seen.clone()
    }

    /// The last request received.
    pub fn last_request(&self) -> Option<SeenRequest> {
        self.state().seen.last().cloned()
    }

    /// The last bulk body as received, before decompression.
    pub fn last_body(&self) -> Option<Vec<u8>> {
        self.state().last_body.as_ref().map(|body| body.to_vec())
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panicking assertion in a test thread must not take the double down with it.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn handle(shared: &Mutex<State>, request: Request<Bytes>) -> Answer {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.as_str() == name)
            .map(|(_, v)| v.as_str())
    };
    let is_bulk = is_bulk_path(&path);
    // Reading a plain bulk body needs nothing of the state: it is done before the state
    // is locked, so that requests sent at once are read at once, as a cluster's nodes
    // do. Its outcome is used only where `route` would read the body, after every check
    // that comes first.
    let parsed = (is_bulk && header("content-encoding").is_none()).then(|| {
        let flavour = lock(shared).options.flavour.clone();
        parse_bulk(&flavour, &body, default_index(&path))
    });
    let answer = {
        let mut state = lock(shared);
        if is_bulk {
            state.stats.requests += 1;
            state.last_body = Some(body.clone());
        }
        let answer = route(
            &mut state,
            &parts.method,
            &path,
            query.as_deref(),
            header,
            &body,
            parsed,
        );
        if is_bulk && answer.status() != StatusCode::OK {
            state.stats.refused_requests += 1;
        }
        state.seen.push(SeenRequest {
            method: parts.method.to_string(),
            path,
            query,
            headers: headers.clone(),
            status: answer.status().as_u16(),
        });
        answer
    };
    stamp(answer, shared)
}

/// Whether `path` is `/_bulk` or `/{index}/_bulk`.
fn is_bulk_path(path: &str) -> bool {
    path == "/_bulk"
        || path
            .strip_suffix("/_bulk")
            .is_some_and(|i| i.len() > 1 && !i[1..].contains('/'))
}

/// The index a bulk path names for lines without `_index`.
fn default_index(path: &str) -> Option<&str> {
    path.strip_suffix("/_bulk")
        .map(|i| i.trim_start_matches('/'))
        .filter(|i| !i.is_empty())
}

/// Adds the headers every answer of the flavour carries.
fn stamp(mut answer: Answer, shared: &Mutex<State>) -> Answer {
    let is_opensearch = lock(shared).options.flavour.is_opensearch();
    if !is_opensearch {
        answer.headers_mut().insert(
            "x-elastic-product",
            HeaderValue::from_static("Elasticsearch"),
        );
    }
    answer
}

fn route<'h>(
    state: &mut State,
    method: &Method,
    path: &str,
    query: Option<&str>,
    header: impl Fn(&str) -> Option<&'h str>,
    body: &Bytes,
    parsed: Option<Result<Vec<Action>, Box<Answer>>>,
) -> Answer {
    let is_bulk = parsed.is_some() || is_bulk_path(path);
    // The HTTP layer refuses an oversized body before any handler runs.
    let decoded = if is_bulk {
        match decode_body(
            header("content-encoding"),
            body,
            state.options.max_content_length,
        ) {
            Ok(Some(decoded)) => decoded,
            Ok(None) => return empty(StatusCode::PAYLOAD_TOO_LARGE),
            Err(answer) => return *answer,
        }
    } else {
        Bytes::new()
    };
    if let Some(answer) = check_auth(state, header("authorization"), path) {
        return answer;
    }
    if !is_bulk {
        return if (*method == Method::GET || *method == Method::HEAD) && path == "/" {
            root(state)
        } else {
            error_answer(
                StatusCode::NOT_FOUND,
                "index_not_found_exception",
                &format!("no such index [{}]", path.trim_start_matches('/')),
            )
        };
    }
    if *method != Method::POST && *method != Method::PUT {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": format!("Incorrect HTTP method for uri [{path}] and method [{method}], allowed: [POST, PUT]"), "status": 405}),
        );
    }
    if let Some(answer) = injected_fault(state) {
        return answer;
    }
    if let Some(answer) = check_content_type(&state.options.flavour, header("content-type")) {
        return answer;
    }
    let params = match QueryParams::parse(query) {
        Ok(params) => params,
        Err(reason) => return bad_request(&reason),
    };
    let started = Instant::now();
    let parsed =
        parsed.unwrap_or_else(|| parse_bulk(&state.options.flavour, &decoded, default_index(path)));
    match parsed {
        Err(answer) => *answer,
        Ok(actions) => {
            let filter = params.filter_path.as_ref();
            let keep = |key: &str| filter.map_or(Keep::All, |f| f.keep(&[key]));
            // `{"errors":…,"items":[…],"took":…}`, the keys in `serde_json`'s order; with
            // a `filter_path`, only what it keeps.
            let items_kept = keep("items");
            let mut item_filter = filter
                .filter(|_| items_kept == Keep::Part)
                .map(ItemFilter::new);
            let mut items = Vec::with_capacity(actions.len() * 192);
            let mut errors = false;
            for action in actions {
                let answer = execute(state, action, &params);
                errors |= answer.status() >= 300;
                if items_kept == Keep::No {
                    continue;
                }
                let before = items.len();
                if before > 0 {
                    items.push(b',');
                }
                if !answer.write(&mut items, item_filter.as_mut()) {
                    items.truncate(before);
                }
            }
            let took = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let mut body = Vec::with_capacity(items.len() + 48);
            let field = |body: &mut Vec<u8>, key: &str| {
                body.push(if body.is_empty() { b'{' } else { b',' });
                body.push(b'"');
                body.extend_from_slice(key.as_bytes());
                body.extend_from_slice(b"\":");
            };
            if keep("errors") == Keep::All {
                field(&mut body, "errors");
                body.extend_from_slice(if errors { b"true" } else { b"false" });
            }
            if !items.is_empty() || items_kept == Keep::All {
                field(&mut body, "items");
                body.push(b'[');
                body.extend_from_slice(&items);
                body.push(b']');
            }
            if keep("took") == Keep::All {
                field(&mut body, "took");
                body.extend_from_slice(took.to_string().as_bytes());
            }
            if body.is_empty() {
                body.push(b'{');
            }
            body.push(b'}');
            json_text(StatusCode::OK, body)
        }
    }
}

/// The body as ES sees it after its decompressor: `Ok(None)` when it is larger than
/// `max` (413).
fn decode_body(
    encoding: Option<&str>,
    body: &Bytes,
    max: usize,
) -> Result<Option<Bytes>, Box<Answer>> {
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut decoded = Vec::new();
    let read = match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => {
            if body.len() > max {
                return Ok(None);
            }
            // The documents kept are slices of it: no copy.
            return Ok(Some(body.clone()));
        }
        Some("gzip") | Some("x-gzip") => flate2::read::GzDecoder::new(&body[..])
            .take(limit)
            .read_to_end(&mut decoded),
        Some("deflate") => flate2::read::ZlibDecoder::new(&body[..])
            .take(limit)
            .read_to_end(&mut decoded),
        Some(other) => {
            return Err(Box::new(error_answer(
                StatusCode::BAD_REQUEST,
                "illegal_argument_exception",
                &format!("unsupported Content-Encoding [{other}]"),
            )));
        }
    };
    match read {
        Ok(_) if decoded.len() > max => Ok(None),
        Ok(_) => Ok(Some(Bytes::from(decoded))),
        Err(error) => Err(Box::new(error_answer(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            &format!("cannot decompress the request body: {error}"),
        ))),
    }
}

fn check_auth(state: &State, given: Option<&str>, path: &str) -> Option<Answer> {
    let required = state.options.auth.as_ref()?;
    if given == Some(required.header().as_str()) {
        return None;
    }
    if state.options.flavour.is_opensearch() {
        // The security plugin answers in plain text.
        let mut answer = crate::server::text(StatusCode::UNAUTHORIZED, "Unauthorized");
        answer.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Basic realm=\"OpenSearch Security\""),
        );
        return Some(answer);
    }
    let reason = match given {
        None => format!("missing authentication credentials for REST request [{path}]"),
        Some(value) if value.starts_with("ApiKey ") => "unable to authenticate with provided \
            credentials and anonymous access is not allowed for this request"
            .to_owned(),
        Some(_) => format!("unable to authenticate user [unknown] for REST request [{path}]"),
    };
    let challenge = json!({"WWW-Authenticate": [
        "Basic realm=\"security\" charset=\"UTF-8\"", "Bearer realm=\"security\"", "ApiKey"]});
    let cause = json!({"type": "security_exception", "reason": reason, "header": challenge});
    let mut answer = json(
        StatusCode::UNAUTHORIZED,
        &json!({"error": {"root_cause": [cause.clone()], "type": "security_exception",
            "reason": reason, "header": challenge}, "status": 401}),
    );
    for value in [
        "Basic realm=\"security\" charset=\"UTF-8\"",
        "Bearer realm=\"security\"",
        "ApiKey",
    ] {
        answer
            .headers_mut()
            .append("www-authenticate", HeaderValue::from_static(value));
    }
    Some(answer)
}

fn root(state: &State) -> Answer {
    let flavour = &state.options.flavour;
    if state.options.root_forbidden {
        return error_answer(
            StatusCode::FORBIDDEN,
            "security_exception",
            "action [cluster:monitor/main] is unauthorized for API key id [shipper-key] of \
             user [shipper], this action is granted by the cluster privileges \
             [monitor,manage,all]",
        );
    }
    let number = flavour.version_number();
    let body = if flavour.is_opensearch() {
        json!({
            "name": "es-double", "cluster_name": "double", "cluster_uuid": "dOuBlEcLuStErUuId0001",
            "version": {"distribution": "opensearch", "number": number, "build_type": "tar",
                "build_hash": "0000000", "build_date": "2024-07-01T00:00:00.000000Z",
                "build_snapshot": false, "lucene_version": "9.10.0",
                "minimum_wire_compatibility_version": "7.10.0",
                "minimum_index_compatibility_version": "7.0.0"},
            "tagline": "The OpenSearch Project: https://opensearch.org/"
        })
    } else {
        json!({
            "name": "es-double", "cluster_name": "double", "cluster_uuid": "dOuBlEcLuStErUuId0001",
            "version": {"number": number, "build_flavor": "default", "build_type": "docker",
                "build_hash": "0000000", "build_date": "2024-07-01T00:00:00.000000000Z",
                "build_snapshot": false, "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"},
            "tagline": "You Know, for Search"
        })
    };
    json(StatusCode::OK, &body)
}

fn injected_fault(state: &mut State) -> Option<Answer> {
    let flavour = state.options.flavour.clone();
    let fault = state.faults.iter_mut().find(|f| f.remaining > 0)?;
    fault.remaining -= 1;
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut answer = match &fault.body {
        Some(body) => {
            let mut answer = Response::new(Full::new(Bytes::from(body.clone())));
            *answer.status_mut() = status;
            answer
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            answer
        }
        None => match fault.status {
            429 => error_answer(
                status,
                flavour.rejected_execution(),
                "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, \
                 replica_bytes=0, all_bytes=0, coordinating_operation_bytes=104857600, \
                 max_coordinating_and_primary_bytes=53687091]",
            ),
            503 => json(
                status,
                &json!({"error": {"root_cause": [{"type": "master_not_discovered_exception", "reason": null}],
                    "type": "master_not_discovered_exception", "reason": null}, "status": 503}),
            ),
            _ => error_answer(status, "exception", "injected failure"),
        },
    };
    if let Some(seconds) = fault.retry_after
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        answer.headers_mut().insert("retry-after", value);
    }
    state.faults.retain(|f| f.remaining > 0);
    Some(answer)
}

/// `application/x-ndjson` or `application/json` (any parameters); ES also takes its
/// vendor types.
fn check_content_type(flavour: &Flavour, value: Option<&str>) -> Option<Answer> {
    let Some(value) = value else {
        return Some(json(
            StatusCode::NOT_ACCEPTABLE,
            &json!({"error": "Content-Type header is missing", "status": 406}),
        ));
    };
    let media = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let vendor = matches!(
        media.as_str(),
        "application/vnd.elasticsearch+x-ndjson" | "application/vnd.elasticsearch+json"
    );
    if media == "application/x-ndjson"
        || media == "application/json"
        || (vendor && !flavour.is_opensearch())
    {
        return None;
    }
    Some(json(
        StatusCode::NOT_ACCEPTABLE,
        &json!({"error": format!("Content-Type header [{value}] is not supported"), "status": 406}),
    ))
}

/// The query parameters the double acts on.
struct QueryParams {
    pipeline: Option<String>,
    filter_path: Option<FilterPath>,
}

impl QueryParams {
    /// The parameters the double acts on; `Err` is the reason for a 400.
    fn parse(query: Option<&str>) -> Result<QueryParams, String> {
        let mut params = QueryParams {
            pipeline: None,
            filter_path: None,
        };
        for pair in query.unwrap_or_default().split('&') {
            match pair.split_once('=') {
                Some(("pipeline", value)) => params.pipeline = Some(percent_decode(value)),
                Some(("filter_path", value)) => {
                    params.filter_path = FilterPath::parse(&percent_decode(value))?;
                }
                _ => {}
            }
        }
        Ok(params)
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One action of a bulk body.
struct Action {
    op: Op,
    index: String,
    id: Option<String>,
    pipeline: Option<String>,
    /// The source line (not for `delete`), a slice of the body.
    source: Option<Bytes>,
    /// Whether the source is a JSON object, checked by the parser a `Value` comes from.
    is_object: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Index,
    Update,
    Delete,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Index => "index",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// Meta fields ES 8 accepts in an action line (`BulkRequestParser`).
const META_FIELDS: &[&str] = &[
    "_index",
    "_id",
    "routing",
    "if_seq_no",
    "if_primary_term",
    "version",
    "version_type",
    "pipeline",
    "require_alias",
    "require_data_stream",
    "dynamic_templates",
    "retry_on_conflict",
    "_source",
    "list_executed_pipelines",
];

fn bad_request(reason: &str) -> Answer {
    error_answer(
        StatusCode::BAD_REQUEST,
        "illegal_argument_exception",
        reason,
    )
}

/// The root of a JSON text by its token name (as [`token_name`] names it), found by the
/// parser a `Value` comes from (`deserialize_any`: the same grammar, numbers and nesting
/// limit, so the same texts are refused) without building the value.
struct Shape(&'static str);

/// [`Shape`] of an object.
const OBJECT: &str = "START_OBJECT";

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = Shape;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Shape, E> {
                Ok(Shape("VALUE_BOOLEAN"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Shape, E> {
                Ok(Shape("VALUE_NUMBER"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Shape, E> {
                Ok(Shape("VALUE_NUMBER"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Shape, E> {
                Ok(Shape("VALUE_NUMBER"))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Shape, E> {
                Ok(Shape("VALUE_STRING"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Shape, E> {
                Ok(Shape("VALUE_NULL"))
            }
            fn visit_none<E: de::Error>(self) -> Result<Shape, E> {
                Ok(Shape("VALUE_NULL"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
                while seq.next_element::<Shape>()?.is_some() {}
                Ok(Shape("START_ARRAY"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
                // Keys as `Value` reads them (`deserialize_str`).
                while map.next_key::<PlainStr<'de>>()?.is_some() {
                    map.next_value::<Shape>()?;
                }
                Ok(Shape(OBJECT))
            }
        }
        deserializer.deserialize_any(Any)
    }
}

/// The JSON token name ES's parser would report for a value.
fn token_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "VALUE_NULL",
        Value::Bool(_) => "VALUE_BOOLEAN",
        Value::Number(_) => "VALUE_NUMBER",
        Value::String(_) => "VALUE_STRING",
        Value::Array(_) => "START_ARRAY",
        Value::Object(_) => "START_OBJECT",
    }
}

fn parse_bulk(
    flavour: &Flavour,
    body: &Bytes,
    default_index: Option<&str>,
) -> Result<Vec<Action>, Box<Answer>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Box::new(error_answer(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            "Validation Failed: 1: no requests added;",
        )));
    }
    if body.last() != Some(&b'\n') {
        return Err(Box::new(bad_request(
            "The bulk request must be terminated by a newline [\\n]",
        )));
    }
    let mut lines = Lines::of(&body[..body.len() - 1]);
    // A body that is UTF-8 throughout is read as text, so that the parser does not check
    // every string of it again; any other body is read line by line as bytes, where the
    // parser refuses what is not UTF-8.
    let text = std::str::from_utf8(body).ok();
    let mut actions = Vec::new();
    let mut missing_index = false;
    while let Some((number, range)) = lines.next() {
        let line = &body[range.clone()];
        let ActionLine {
            op,
            index,
            id,
            pipeline,
        } = match ActionLine::plain(line, text.map(|text| &text[range]), default_index) {
            Some(parsed) => parsed,
            None => ActionLine::parse(flavour, number, line, default_index)?,
        };
        let source = if op == Op::Delete {
            None
        } else {
            // ES silently drops a final action whose source line is missing.
            let Some((_, source)) = lines.next() else {
                break;
            };
            Some(source)
        };
        let Some(index) = index else {
            missing_index = true;
            continue;
        };
        let is_object = source.clone().is_some_and(|range| {
            let shape = match text {
                Some(text) => serde_json::from_str::<Shape>(&text[range]),
                None => serde_json::from_slice::<Shape>(&body[range]),
            };
            matches!(shape, Ok(Shape(OBJECT)))
        });
        let source = source.map(|range| body.slice(range));
        actions.push(Action {
            op,
            index,
            id,
            pipeline,
            source,
            is_object,
        });
    }
    if missing_index {
        return Err(Box::new(error_answer(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            "Validation Failed: 1: index is missing;",
        )));
    }
    if actions.is_empty() {
        return Err(Box::new(error_answer(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            "Validation Failed: 1: no requests added;",
        )));
    }
    Ok(actions)
}

/// The lines of a bulk body (without its last newline), numbered from 1, each as the range
/// of its bytes without a `\r` before its newline: found by `memchr`, not byte by byte
/// (a backfill's bodies are megabytes).
struct Lines<'a> {
    content: &'a [u8],
    start: usize,
    number: usize,
    newlines: memchr::Memchr<'a>,
}

impl<'a> Lines<'a> {
    fn of(content: &'a [u8]) -> Self {
        Lines {
            content,
            start: 0,
            number: 0,
            newlines: memchr::memchr_iter(b'\n', content),
        }
    }
}

impl Iterator for Lines<'_> {
    type Item = (usize, std::ops::Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.start > self.content.len() {
            return None;
        }
        let end = self.newlines.next().unwrap_or(self.content.len());
        let start = std::mem::replace(&mut self.start, end + 1);
        let trimmed = if self.content[start..end].ends_with(b"\r") {
            end - 1
        } else {
            end
        };
        self.number += 1;
        Some((self.number, start..trimmed))
    }
}

/// What an action line says.
struct ActionLine {
    op: Op,
    index: Option<String>,
    id: Option<String>,
    pipeline: Option<String>,
}

impl ActionLine {
    /// The line as `BulkRequestParser` reads it, every malformation answered as ES does.
    fn parse(
        flavour: &Flavour,
        number: usize,
        line: &[u8],
        default_index: Option<&str>,
    ) -> Result<ActionLine, Box<Answer>> {
        let value: Value = match serde_json::from_slice(line) {
            Ok(value) => value,
            Err(_) if line.iter().all(u8::is_ascii_whitespace) => {
                return Err(Box::new(bad_request(&format!(
                    "Malformed action/metadata line [{number}], expected START_OBJECT but found [null]"
                ))));
            }
            Err(error) => {
                return Err(Box::new(error_answer(
                    StatusCode::BAD_REQUEST,
                    "x_content_parse_exception",
                    &format!("[{number}:1] Unexpected character: {error}"),
                )));
            }
        };
        let Value::Object(object) = value else {
            return Err(Box::new(bad_request(&format!(
                "Malformed action/metadata line [{number}], expected START_OBJECT but found [{}]",
                token_name(&value)
            ))));
        };
        let mut entries = object.into_iter();
        let Some((name, meta)) = entries.next() else {
            return Err(Box::new(bad_request(&format!(
                "Malformed action/metadata line [{number}], expected FIELD_NAME but found [END_OBJECT]"
            ))));
        };
        if entries.next().is_some() {
            return Err(Box::new(bad_request(&format!(
                "Malformed action/metadata line [{number}], expected END_OBJECT but found [FIELD_NAME]"
            ))));
        }
        let op = match name.as_str() {
            "create" => Op::Create,
            "index" => Op::Index,
            "update" => Op::Update,
            "delete" => Op::Delete,
            _ => {
                return Err(Box::new(bad_request(&format!(
                    "Malformed action/metadata line [{number}], expected field [create], \
                         [delete], [index] or [update] but found [{name}]"
                ))));
            }
        };
        let Value::Object(meta) = meta else {
            return Err(Box::new(bad_request(&format!(
                "Malformed action/metadata line [{number}], expected START_OBJECT but found [{}]",
                token_name(&meta)
            ))));
        };
        let mut index = default_index.map(str::to_owned);
        let mut id = None;
        let mut pipeline = None;
        for (field, value) in &meta {
            let allowed = META_FIELDS.contains(&field.as_str())
                || (field == "_type" && flavour.allows_type());
            if !allowed {
                return Err(Box::new(bad_request(&format!(
                    "Action/metadata line [{number}] contains an unknown parameter [{field}]"
                ))));
            }
            if matches!(field.as_str(), "_index" | "_id" | "pipeline" | "_type")
                && matches!(value, Value::Array(_) | Value::Object(_))
            {
                return Err(Box::new(bad_request(&format!(
                    "Malformed action/metadata line [{number}], expected a simple value for \
                         field [{field}] but found [{}]",
                    token_name(value)
                ))));
            }
            let text = match value {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            };
            match field.as_str() {
                "_index" => index = text,
                "_id" => id = text,
                "pipeline" => pipeline = text,
                _ => {}
            }
        }
        Ok(ActionLine {
            op,
            index,
            id,
            pipeline,
        })
    }

    /// The common shape, `{"<op>":{"_index":"…","_id":"…"}}` with string values (and
    /// `pipeline`), read without building a `Value`; `None` for anything else, which
    /// [`ActionLine::parse`] then reads (a `null`, a number, another field, a repeated
    /// field, a malformation). `text` is the line again, when it is known to be UTF-8.
    fn plain(line: &[u8], text: Option<&str>, default_index: Option<&str>) -> Option<ActionLine> {
        let plain: PlainAction<'_> = match text {
            Some(text) => serde_json::from_str(text),
            None => serde_json::from_slice(line),
        }
        .ok()?;
        Some(ActionLine {
            op: plain.op,
            index: plain
                .meta
                .index
                .map(Cow::into_owned)
                .or_else(|| default_index.map(str::to_owned)),
            id: plain.meta.id.map(Cow::into_owned),
            pipeline: plain.meta.pipeline.map(Cow::into_owned),
        })
    }
}

/// An action line of the common shape (see [`ActionLine::plain`]).
struct PlainAction<'a> {
    op: Op,
    meta: PlainMeta<'a>,
}

#[derive(Default)]
struct PlainMeta<'a> {
    index: Option<Cow<'a, str>>,
    id: Option<Cow<'a, str>>,
    pipeline: Option<Cow<'a, str>>,
}

/// A JSON string, borrowed when it has no escapes; any other JSON value is an error.
struct PlainStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for PlainStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = PlainStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(PlainStr(Cow::Borrowed(text)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(PlainStr(Cow::Owned(text.to_owned())))
            }
        }
        deserializer.deserialize_str(Text)
    }
}

impl<'de> Deserialize<'de> for PlainMeta<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = PlainMeta<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut meta = PlainMeta::default();
                while let Some(PlainStr(key)) = map.next_key()? {
                    let slot = match key.as_ref() {
                        "_index" => &mut meta.index,
                        "_id" => &mut meta.id,
                        "pipeline" => &mut meta.pipeline,
                        _ => return Err(de::Error::custom("not a plain field")),
                    };
                    if slot.is_some() {
                        return Err(de::Error::custom("a repeated field"));
                    }
                    let PlainStr(value) = map.next_value()?;
                    *slot = Some(value);
                }
                Ok(meta)
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

impl<'de> Deserialize<'de> for PlainAction<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct One;
        impl<'de> Visitor<'de> for One {
            type Value = PlainAction<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object with one operation")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let Some(PlainStr(name)) = map.next_key()? else {
                    return Err(de::Error::custom("no operation"));
                };
                let op = match name.as_ref() {
                    "create" => Op::Create,
                    "index" => Op::Index,
                    "update" => Op::Update,
                    "delete" => Op::Delete,
                    _ => return Err(de::Error::custom("not an operation")),
                };
                let meta: PlainMeta<'de> = map.next_value()?;
                if map.next_key::<PlainStr<'de>>()?.is_some() {
                    return Err(de::Error::custom("more than one operation"));
                }
                Ok(PlainAction { op, meta })
            }
        }
        deserializer.deserialize_map(One)
    }
}

/// The item of one action in a bulk answer.
enum ItemAnswer {
    /// A failed action, or a delete: the item as a `Value`, and its status.
    Other(u16, Value),
    /// A document written.
    Written(Written),
}

/// A document written: its item, `{"<op>":{"_id",…,"status"}}` with the keys in the order
/// `serde_json` writes a `Map` (sorted), written as text.
struct Written {
    op: Op,
    index: String,
    id: String,
    with_type: bool,
    version: u64,
    seq_no: u64,
    created: bool,
}

impl ItemAnswer {
    fn status(&self) -> u16 {
        match self {
            ItemAnswer::Other(status, _) => *status,
            ItemAnswer::Written(written) if written.created => 201,
            ItemAnswer::Written(_) => 200,
        }
    }

    /// Writes the item, or what `filter` keeps of it (a filter keeps part of `items`);
    /// returns whether it wrote anything.
    fn write(&self, out: &mut Vec<u8>, filter: Option<&mut ItemFilter<'_>>) -> bool {
        match (self, filter) {
            // Writing a `Value` into a `Vec` cannot fail.
            (ItemAnswer::Other(_, value), None) => {
                let _ = serde_json::to_writer(&mut *out, value);
                true
            }
            (ItemAnswer::Other(_, value), Some(filter)) => {
                match filter.filter.filter(value, &mut vec!["items"]) {
                    Some(kept) => {
                        let _ = serde_json::to_writer(&mut *out, &kept);
                        true
                    }
                    None => false,
                }
            }
            (ItemAnswer::Written(written), None) => written.write(out, WrittenKeeps::ALL, None),
            (ItemAnswer::Written(written), Some(filter)) => {
                let keeps = filter.written(written.op);
                written.write(out, keeps, Some(filter.filter))
            }
        }
    }
}

/// What a `filter_path` keeps of each field of a written item, worked out once per
/// operation rather than once per item.
#[derive(Debug, Clone, Copy)]
struct WrittenKeeps([Keep; WRITTEN_FIELDS.len()]);

/// A written item's fields, in the order they are written.
const WRITTEN_FIELDS: [&str; 9] = [
    "_id",
    "_index",
    "_primary_term",
    "_seq_no",
    "_shards",
    "_type",
    "_version",
    "result",
    "status",
];

impl WrittenKeeps {
    const ALL: WrittenKeeps = WrittenKeeps([Keep::All; WRITTEN_FIELDS.len()]);

    fn of(filter: &FilterPath, op: Op) -> WrittenKeeps {
        WrittenKeeps(WRITTEN_FIELDS.map(|field| filter.keep(&["items", op.name(), field])))
    }
}

/// A `filter_path` that keeps part of a bulk answer's `items`.
struct ItemFilter<'a> {
    filter: &'a FilterPath,
    /// [`WrittenKeeps`] of each [`Op`], once it was needed.
    written: [Option<WrittenKeeps>; 4],
}

impl<'a> ItemFilter<'a> {
    fn new(filter: &'a FilterPath) -> Self {
        ItemFilter {
            filter,
            written: [None; 4],
        }
    }

    fn written(&mut self, op: Op) -> WrittenKeeps {
        let filter = self.filter;
        *self.written[op as usize].get_or_insert_with(|| WrittenKeeps::of(filter, op))
    }
}

impl Written {
    /// Writes the item, or what `keeps` says of each field (a `Part` of `_shards` is
    /// worked out with `filter`); returns whether it wrote anything.
    fn write(&self, out: &mut Vec<u8>, keeps: WrittenKeeps, filter: Option<&FilterPath>) -> bool {
        let op = self.op.name();
        let start = out.len();
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(op.as_bytes());
        out.extend_from_slice(b"\":");
        let fields_start = out.len();
        let (result, status) = if self.created {
            ("\"created\"", "201")
        } else {
            ("\"updated\"", "200")
        };
        for (name, keep) in WRITTEN_FIELDS.iter().zip(keeps.0) {
            let shards_part = match (*name, keep) {
                (_, Keep::No) => continue,
                ("_type", _) if !self.with_type => continue,
                ("_shards", Keep::Part) => match filter.and_then(|f| {
                    let shards = serde_json::from_str::<Value>(SHARDS).ok()?;
                    f.filter(&shards, &mut vec!["items", op, "_shards"])
                }) {
                    Some(kept) => Some(kept.to_string()),
                    None => continue,
                },
                // The other fields have nothing below them for a path to go on to.
                (_, Keep::Part) => continue,
                (_, Keep::All) => None,
            };
            out.push(if out.len() == fields_start {
                b'{'
            } else {
                b','
            });
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            // Writing a `str` into a `Vec` cannot fail.
            match *name {
                "_id" => drop(serde_json::to_writer(&mut *out, &self.id)),
                "_index" => drop(serde_json::to_writer(&mut *out, &self.index)),
                "_primary_term" => out.push(b'1'),
                "_seq_no" => out.extend_from_slice(self.seq_no.to_string().as_bytes()),
                "_shards" => {
                    out.extend_from_slice(shards_part.as_deref().unwrap_or(SHARDS).as_bytes());
                }
                "_type" => out.extend_from_slice(b"\"_doc\""),
                "_version" => out.extend_from_slice(self.version.to_string().as_bytes()),
                "result" => out.extend_from_slice(result.as_bytes()),
                _ => out.extend_from_slice(status.as_bytes()),
            }
        }
        if out.len() == fields_start {
            out.truncate(start);
            return false;
        }
        out.extend_from_slice(b"}}");
        true
    }
}

/// A written item's `_shards`.
const SHARDS: &str = r#"{"failed":0,"successful":1,"total":2}"#;

/// Runs one action; its item for the answer.
fn execute(state: &mut State, mut action: Action, params: &QueryParams) -> ItemAnswer {
    state.stats.items += 1;
    let flavour = state.options.flavour.clone();
    let op = action.op.name();
    let item = |status: u16, body: Map<String, Value>| -> ItemAnswer {
        let mut inner = Map::new();
        inner.insert("_index".to_owned(), Value::String(action.index.clone()));
        if flavour.allows_type() {
            inner.insert("_type".to_owned(), Value::String("_doc".to_owned()));
        }
        inner.insert(
            "_id".to_owned(),
            action.id.clone().map_or(Value::Null, Value::String),
        );
        inner.extend(body);
        inner.insert("status".to_owned(), json!(status));
        let mut outer = Map::new();
        outer.insert(op.to_owned(), Value::Object(inner));
        ItemAnswer::Other(status, Value::Object(outer))
    };
    let failure = |state: &mut State, status: u16, error: Value| -> ItemAnswer {
        match status {
            409 => state.stats.conflicts += 1,
            429 => state.stats.throttled += 1,
            _ => state.stats.refused_items += 1,
        }
        let mut body = Map::new();
        body.insert("error".to_owned(), error);
        item(status, body)
    };
    if let Err(reason) = validate_index_name(&action.index) {
        let error = item_error(
            "invalid_index_name_exception",
            &format!("Invalid index name [{}], {reason}", action.index),
            &action.index,
        );
        return failure(state, 400, error);
    }
    if let Some(id) = &action.id
        && let Some(remaining) = state.throttled_ids.get_mut(id)
        && *remaining > 0
    {
        *remaining -= 1;
        let error = item_error(
            flavour.rejected_execution(),
            "rejected execution of primary operation [shard_detail=[index][0][P], \
             shard_primary_bytes=0, shard_operation_bytes=512, shard_max_bytes=0] on \
             EsThreadPoolExecutor[name = es-double/write, queue capacity = 10000]",
            &action.index,
        );
        return failure(state, 429, error);
    }
    let data_stream = is_data_stream(&state.options.data_streams, &action.index);
    if data_stream && matches!(action.op, Op::Index | Op::Update | Op::Delete) {
        let error = item_error(
            "illegal_argument_exception",
            "only write ops with an op_type of create are allowed in data streams",
            &action.index,
        );
        return failure(state, 400, error);
    }
    if action.op == Op::Update {
        let error = item_error(
            "illegal_argument_exception",
            "the test double does not implement update",
            &action.index,
        );
        return failure(state, 400, error);
    }
    if action.op == Op::Delete {
        return delete(state, &action, &item);
    }
    let pipeline = action.pipeline.as_ref().or(params.pipeline.as_ref());
    if let (Some(pipeline), Some(known)) = (pipeline, &state.options.pipelines)
        && pipeline != "_none"
        && !known.contains(pipeline)
    {
        let error = item_error(
            "illegal_argument_exception",
            &format!("pipeline with id [{pipeline}] does not exist"),
            &action.index,
        );
        return failure(state, 400, error);
    }
    // Kept as it is (a slice of the body): moved, not copied.
    let Some(source_bytes) = action.source.take() else {
        return failure(
            state,
            400,
            item_error("exception", "no source", &action.index),
        );
    };
    let id_for_reason = action.id.as_deref().unwrap_or("auto");
    // Only a data stream, a mapping or a predicate looks into the document; without them
    // it is only checked to be a JSON object, by the parser a `Value` would come from.
    let looks_inside = data_stream || !state.options.mapping.is_empty() || state.refuse.is_some();
    let plain_object = !looks_inside && action.is_object;
    let source: Option<Value> = if plain_object {
        None
    } else {
        match serde_json::from_slice(&source_bytes) {
            Ok(source @ Value::Object(_)) => Some(source),
            Ok(other) => {
                let error = parsing_error(
                    &flavour,
                    1,
                    &format!(
                        "failed to parse, document is empty or not an object ({})",
                        token_name(&other)
                    ),
                    None,
                    &action.index,
                );
                return failure(state, 400, error);
            }
            Err(e) => {
                let error = parsing_error(
                    &flavour,
                    e.column(),
                    "failed to parse",
                    Some(json!({"type": "json_parse_exception", "reason": e.to_string()})),
                    &action.index,
                );
                return failure(state, 400, error);
            }
        }
    };
    if let Some(source) = &source {
        let text = String::from_utf8_lossy(&source_bytes);
        if data_stream {
            let timestamp = source.get("@timestamp");
            if !timestamp.is_some_and(|t| value_fits(t, FieldType::Date)) {
                let error = if flavour.is_opensearch() {
                    item_error(
                        "mapper_parsing_exception",
                        "documents must contain a single-valued timestamp field '@timestamp' of date type",
                        &action.index,
                    )
                } else {
                    parsing_error(
                        &flavour,
                        text.len(),
                        "failed to parse: data stream timestamp field [@timestamp] is missing",
                        Some(json!({"type": "illegal_argument_exception",
                            "reason": "data stream timestamp field [@timestamp] is missing"})),
                        &action.index,
                    )
                };
                return failure(state, 400, error);
            }
        }
        for (field, kind) in &state.options.mapping {
            let Some(value) = lookup(source, field) else {
                continue;
            };
            if value_fits(value, *kind) {
                continue;
            }
            let preview = match value {
                Value::String(s) => s.chars().take(80).collect(),
                other => other.to_string(),
            };
            // The column where the value starts, 1-based, as ES 8 reports it.
            let key = field.rsplit('.').next().unwrap_or(field);
            let column = text
                .find(&format!("\"{key}\":"))
                .map_or(1, |at| at + key.len() + 4);
            let cause = match kind {
                FieldType::Long => json!({"type": "illegal_argument_exception",
                    "reason": format!("For input string: \"{preview}\"")}),
                FieldType::Date | FieldType::EpochMillis => {
                    json!({"type": "illegal_argument_exception",
                    "reason": format!("failed to parse date field [{preview}] with format [{}]",
                        if *kind == FieldType::Date { "strict_date_optional_time||epoch_millis" } else { "epoch_millis" })})
                }
                FieldType::Keyword | FieldType::Text => json!({"type": "illegal_state_exception",
                    "reason": format!("Can't get text on a {} at 1:{column}", token_name(value))}),
            };
            let error = parsing_error(
                &flavour,
                column,
                &format!(
                    "failed to parse field [{field}] of type [{}] in document with id '{id_for_reason}'. \
                     Preview of field's value: '{preview}'",
                    kind.name()
                ),
                Some(cause),
                &action.index,
            );
            return failure(state, 400, error);
        }
        if let Some(refuse) = state.refuse.clone()
            && let Some(why) = refuse(source)
        {
            let error = parsing_error(
                &flavour,
                1,
                "failed to parse",
                Some(json!({"type": "illegal_argument_exception", "reason": why})),
                &action.index,
            );
            return failure(state, 400, error);
        }
    }
    let id = match &action.id {
        Some(id) => id.clone(),
        None => {
            state.next_auto_id += 1;
            format!("auto{:016}", state.next_auto_id)
        }
    };
    let backing_index = data_stream.then(|| backing_index_name(&action.index));
    if !state.indices.contains_key(&action.index) {
        state.indices.insert(action.index.clone(), Index::default());
    }
    let Some(index) = state.indices.get_mut(&action.index) else {
        unreachable!("the index was just made")
    };
    if index.backing.is_none() {
        index.backing = backing_index;
    }
    let (version, created) = match index.docs.entry(id.clone()) {
        Entry::Occupied(existing) if action.op == Op::Create => {
            let version = existing.get().version;
            let error = item_error(
                "version_conflict_engine_exception",
                &format!(
                    "[{id}]: version conflict, document already exists (current version [{version}])"
                ),
                index.backing.as_deref().unwrap_or(&action.index),
            );
            return failure(state, 409, error);
        }
        Entry::Occupied(mut existing) => {
            let kept = existing.get_mut();
            kept.version += 1;
            kept.source = source_bytes;
            (kept.version, false)
        }
        Entry::Vacant(vacant) => {
            vacant.insert(Kept {
                source: source_bytes,
                version: 1,
                first_seq_no: index.seq_no,
            });
            (1, true)
        }
    };
    index.seq_no += 1;
    let seq_no = index.seq_no - 1;
    let shown_index = index.backing.clone().unwrap_or(action.index);
    state.stats.written += 1;
    ItemAnswer::Written(Written {
        op: action.op,
        index: shown_index,
        id,
        with_type: flavour.allows_type(),
        version,
        seq_no,
        created,
    })
}

fn delete(
    state: &mut State,
    action: &Action,
    item: &impl Fn(u16, Map<String, Value>) -> ItemAnswer,
) -> ItemAnswer {
    let removed = action.id.as_ref().and_then(|id| {
        let index = state.indices.get_mut(&action.index)?;
        index.docs.remove(id)
    });
    let mut body = Map::new();
    match removed {
        Some(doc) => {
            body.insert("_version".to_owned(), json!(doc.version + 1));
            body.insert("result".to_owned(), json!("deleted"));
            item(200, body)
        }
        None => {
            body.insert("result".to_owned(), json!("not_found"));
            item(404, body)
        }
    }
}

/// ES's `ErrorCause` of an item, with the index metadata ES adds.
fn item_error(kind: &str, reason: &str, index: &str) -> Value {
    json!({"type": kind, "reason": reason, "index_uuid": "dOuBlEiNdExUuId", "shard": "0", "index": index})
}

/// A mapping failure: `document_parsing_exception` with `[line:column]` in ES 8,
/// `mapper_parsing_exception` without in ES 7 and OpenSearch.
fn parsing_error(
    flavour: &Flavour,
    column: usize,
    reason: &str,
    caused_by: Option<Value>,
    index: &str,
) -> Value {
    let reason = if flavour.positions_in_reasons() {
        // ES counts lines within the document (always 1 in NDJSON) and columns from 1.
        format!("[1:{column}] {reason}")
    } else {
        reason.to_owned()
    };
    let mut error = item_error(flavour.parsing_exception(), &reason, index);
    if let (Some(cause), Value::Object(map)) = (caused_by, &mut error) {
        map.insert("caused_by".to_owned(), cause);
    }
    error
}

/// A whole-request error in ES's envelope.
fn error_answer(status: StatusCode, kind: &str, reason: &str) -> Answer {
    json(
        status,
        &json!({"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind,
            "reason": reason}, "status": status.as_u16()}),
    )
}

fn empty(status: StatusCode) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::new()));
    *answer.status_mut() = status;
    answer
}

/// `MetadataCreateIndexService.validateIndexOrAliasName`.
fn validate_index_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("must not be empty");
    }
    // Most names are ASCII, where lowercase is a byte check; others are compared with
    // their lowercase form, as ES does.
    let uppercase = if name.is_ascii() {
        name.bytes().any(|b| b.is_ascii_uppercase())
    } else {
        name != name.to_lowercase()
    };
    if uppercase {
        return Err("must be lowercase");
    }
    if name.chars().any(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#'
        )
    }) {
        return Err("must not contain the following characters [ , \", *, \\, <, |, ,, >, /, ?]");
    }
    if name.contains(':') {
        return Err("must not contain ':'");
    }
    if name.starts_with(['_', '-', '+']) {
        return Err("must not start with '_', '-', or '+'");
    }
    if name == "." || name == ".." {
        return Err("must not be '.' or '..'");
    }
    if name.len() > 255 {
        return Err("index name is too long, (> 255)");
    }
    Ok(())
}

fn is_data_stream(patterns: &[String], index: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => index.starts_with(prefix),
        None => p == index,
    })
}

/// `.ds-<stream>-<yyyy.MM.dd>-000001`, dated today, as ES names a first backing index.
fn backing_index_name(stream: &str) -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(".ds-{stream}-{year:04}.{month:02}.{day:02}-000001")
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// The value at a dotted path (`a.b`), either as nested objects or as a literal key.
fn lookup<'v>(source: &'v Value, path: &str) -> Option<&'v Value> {
    if let Some(value) = source.get(path) {
        return Some(value);
    }
    path.split('.')
        .try_fold(source, |value, part| value.get(part))
}

fn value_fits(value: &Value, kind: FieldType) -> bool {
    match (kind, value) {
        (_, Value::Null) => true,
        (FieldType::Long, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (FieldType::Long | FieldType::EpochMillis, Value::String(s)) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        }
        (FieldType::EpochMillis | FieldType::Date, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (FieldType::Date, Value::String(s)) => {
            is_rfc3339_like(s) || (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        }
        (FieldType::Keyword | FieldType::Text, v) => {
            matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
        }
        _ => false,
    }
}

/// `yyyy-MM-dd` optionally followed by `THH:mm[:ss[.fraction]]` and `Z` or `±hh:mm`:
/// the shapes `strict_date_optional_time` accepts that a sink would send.
fn is_rfc3339_like(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range.clone())
            .is_some_and(|s| s.len() == range.len() && s.iter().all(u8::is_ascii_digit))
    };
    if !(digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(7) == Some(&b'-')
        && digits(8..10))
    {
        return false;
    }
    if b.len() == 10 {
        return true;
    }
    if b.get(10) != Some(&b'T') || !digits(11..13) || b.get(13) != Some(&b':') || !digits(14..16) {
        return false;
    }
    let mut at = 16;
    if b.get(at) == Some(&b':') {
        if !digits(at + 1..at + 3) {
            return false;
        }
        at += 3;
        if b.get(at) == Some(&b'.') {
            at += 1;
            let start = at;
            while b.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            if at == start {
                return false;
            }
        }
    }
    match b.get(at) {
        None | Some(b'Z') if at + 1 >= b.len() => true,
        Some(b'+' | b'-') => {
            digits(at + 1..at + 3)
                && b.get(at + 3) == Some(&b':')
                && digits(at + 4..at + 6)
                && b.len() == at + 6
        }
        _ => false,
    }
}

/// Standard base64 with padding, for the expected `Basic` header (the doubles crate has
/// no base64 dependency).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

mod filter_path;
use filter_path::{FilterPath, Keep};
