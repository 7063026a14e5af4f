//! The Grafana Loki push API double: `POST /loki/api/v1/push` and `GET /ready`, built from
//! the wire contract (`shared/reference/sink-wire-contracts.md` §1, Loki 3.6+ wording;
//! upstream: <https://grafana.com/docs/loki/latest/reference/loki-http-api/#ingest-logs>).
//!
//! What it does, in Loki's order:
//!
//! 1. **Tenancy.** With `auth_enabled`, a missing or empty `X-Scope-OrgID` is a 401 `no org
//!    id`, and a tenant id with a character Loki does not allow is a 400. Without it, the
//!    header is ignored and everything belongs to the tenant `fake`.
//! 2. **Decoding.** `Content-Type: application/json` is JSON (timestamps must be strings of
//!    int64 nanoseconds, lines strings, the optional third element a flat string map, stream
//!    keys label names); any other media type is snappy-block protobuf (`logproto.PushRequest`,
//!    decoded with this module's own message types, written from `push.proto`'s field
//!    numbers, so that a sink's encoder is checked by an independent decoder). A missing
//!    `Content-Type` is a 400. `Content-Encoding` may be empty, `snappy` (ignored; refused
//!    with JSON), `gzip` or `deflate`. An undecodable body is a 400, a body over the limit a
//!    413, a push without streams a 422.
//! 3. **Validation** (the distributor): per stream, the labels (at least one after empty
//!    values are dropped, at most `max_label_names_per_series` names not counting
//!    `service_name`, name and value lengths, no duplicate names); per entry, too old (past
//!    `reject_old_samples_max_age`), too new (past now + `creation_grace_period`), line too
//!    long, structured metadata allowed and within size and count. Invalid entries are
//!    dropped and valid ones of the same push still stored; the answer is then a 400 whose
//!    body is Loki's grouped text: identical messages counted (`3 errors like: ...`), groups
//!    joined with `; ` **in random order** and capped, so a client cannot tell from it which
//!    entries were refused.
//! 4. **Rate.** A push whose valid bytes exceed `ingestion_burst_size` (if set) is a 429 and
//!    nothing of it is stored, as in Loki.
//! 5. **Ingestion** (the ingester), per tenant and stream: an entry equal to the stream's last
//!    one is dropped; one older than the stream's newest minus `out_of_order_window` is
//!    refused (`entry too far behind`, a 400 listing at most 10 entries); then an exact
//!    duplicate (same timestamp and line) of a stored entry is dropped silently and counted.
//!    The window is checked before the duplicate, as in Loki: a re-sent entry older than the
//!    window is refused, not dropped.
//!
//! Faults are injected per push: [`LokiDouble::fail_next`] answers the next pushes with a
//! 429 (optionally with `Retry-After`, which Loki itself never sends but a gateway in
//! front of it may), a 500, a 503, the 260 of blocked ingestion or a 413;
//! [`LokiDouble::set_down`] closes the port (connections refused) and reopens it on the same
//! port; [`LokiDouble::set_ready`] makes `/ready` answer 503.
//!
//! Accepted entries are kept per tenant and stream for assertions ([`LokiDouble::entries`],
//! [`LokiDouble::streams`]), with counters of pushes, duplicates and refused entries, the
//! status of every push and the last push's headers.

use crate::server::{Answer, Handler, Server, text};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where pushes go.
pub const PUSH_PATH: &str = "/loki/api/v1/push";
/// Loki's readiness endpoint.
pub const READY_PATH: &str = "/ready";
/// The tenant of every push when `auth_enabled` is off (`-auth.no-auth-tenant`).
pub const NO_AUTH_TENANT: &str = "fake";
/// The header that names the tenant.
pub const TENANT_HEADER: &str = "x-scope-orgid";
/// Entries an ingester error lists (`MaxReturnedErrors`), and groups a grouped error shows.
const MAX_RETURNED_ERRORS: usize = 10;
const MAX_TENANT_ID_LENGTH: usize = 150;

/// Loki's `limits_config` (and the ingester's window), with Loki 3.x defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LokiLimits {
    pub reject_old_samples: bool,
    pub reject_old_samples_max_age: Duration,
    pub creation_grace_period: Duration,
    /// Bytes of one line; 0 = unlimited.
    pub max_line_size: usize,
    /// `service_name` is not counted.
    pub max_label_names_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    /// How far behind its stream's newest entry an entry may be (`max_chunk_age / 2`).
    pub out_of_order_window: Duration,
    pub allow_structured_metadata: bool,
    pub max_structured_metadata_size: usize,
    pub max_structured_metadata_entries_count: usize,
    /// Largest valid bytes (lines and structured metadata) of one push
    /// (`ingestion_burst_size_mb`); `None` = no rate limit at all.
    pub ingestion_burst_size: Option<usize>,
    /// Largest request body (`max_recv_msg_size`); the decompressed body may be 50 times it.
    pub max_request_bytes: usize,
    /// Add `service_name` to streams without it (`discover_service_name`).
    pub discover_service_name: bool,
}

impl Default for LokiLimits {
    fn default() -> Self {
        LokiLimits {
            reject_old_samples: true,
            reject_old_samples_max_age: Duration::from_secs(7 * 24 * 3600),
            creation_grace_period: Duration::from_secs(10 * 60),
            max_line_size: 256 * 1024,
            max_label_names_per_series: 15,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            out_of_order_window: Duration::from_secs(3600),
            allow_structured_metadata: true,
            max_structured_metadata_size: 64 * 1024,
            max_structured_metadata_entries_count: 128,
            ingestion_burst_size: None,
            max_request_bytes: 100 * 1024 * 1024,
            discover_service_name: true,
        }
    }
}

/// How the double is set up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LokiSettings {
    /// Multi-tenancy (`auth_enabled`): `X-Scope-OrgID` required.
    pub auth_enabled: bool,
    pub limits: LokiLimits,
}

/// An answer the next pushes get instead of being processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LokiFault {
    /// 429 with Loki's rate-limit text, and `Retry-After: N` if given.
    TooManyRequests { retry_after: Option<u64> },
    /// 500, as for a failed ring or ingester.
    InternalError,
    /// 503 `circuit breaker open, request denied`.
    Unavailable,
    /// 260, Loki's default `block_ingestion_status_code`: a 2xx that stores nothing.
    Blocked,
    /// 413 `request body too large`.
    TooLarge,
}

/// One accepted entry, with its tenant and stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LokiEntry {
    pub tenant: String,
    pub labels: BTreeMap<String, String>,
    /// Nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    pub line: String,
    pub structured_metadata: BTreeMap<String, String>,
}

/// One stream of one tenant, its entries in the order they were accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LokiStream {
    pub tenant: String,
    pub labels: BTreeMap<String, String>,
    pub entries: Vec<StreamEntry>,
}

/// An entry of a [`LokiStream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub timestamp_ns: i64,
    pub line: String,
    pub structured_metadata: BTreeMap<String, String>,
}

/// A running Loki double on 127.0.0.1; stops when dropped.
pub struct LokiDouble {
    state: Arc<Mutex<State>>,
    handler: Handler,
    address: SocketAddr,
    server: Mutex<Option<Server>>,
}

impl LokiDouble {
    /// A single-tenant Loki (auth off) with default limits.
    pub fn start() -> io::Result<LokiDouble> {
        Self::with(LokiSettings::default())
    }

    /// A Loki set up as `settings` says.
    pub fn with(settings: LokiSettings) -> io::Result<LokiDouble> {
        let state = Arc::new(Mutex::new(State::new(settings)));
        let handler: Handler = {
            let state = state.clone();
            Arc::new(move |request| lock(&state).handle(&request, now_ns()))
        };
        let server = Server::start("loki-double", handler.clone())?;
        Ok(LokiDouble {
            state,
            handler,
            address: server.address(),
            server: Mutex::new(Some(server)),
        })
    }

    /// `http://127.0.0.1:PORT`, what a sink's `endpoint` is set to.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `http://127.0.0.1:PORT/loki/api/v1/push`.
    pub fn push_url(&self) -> String {
        format!("{}{PUSH_PATH}", self.base_url())
    }

    /// Every accepted entry, stream by stream (streams ordered by tenant and labels,
    /// entries in the order they were accepted).
    pub fn entries(&self) -> Vec<LokiEntry> {
        self.streams()
            .into_iter()
            .flat_map(|stream| {
                let LokiStream {
                    tenant,
                    labels,
                    entries,
                } = stream;
                entries.into_iter().map(move |e| LokiEntry {
                    tenant: tenant.clone(),
                    labels: labels.clone(),
                    timestamp_ns: e.timestamp_ns,
                    line: e.line,
                    structured_metadata: e.structured_metadata,
                })
            })
            .collect()
    }

    /// The accepted entries of one tenant.
    pub fn entries_of(&self, tenant: &str) -> Vec<LokiEntry> {
        self.entries()
            .into_iter()
            .filter(|e| e.tenant == tenant)
            .collect()
    }

    /// Every stream that holds at least one entry.
    pub fn streams(&self) -> Vec<LokiStream> {
        lock(&self.state)
            .streams
            .iter()
            .filter(|(_, s)| !s.entries.is_empty())
            .map(|((tenant, _), s)| LokiStream {
                tenant: tenant.clone(),
                labels: s.labels.iter().cloned().collect(),
                entries: s.entries.clone(),
            })
            .collect()
    }

    /// Push requests received (`POST /loki/api/v1/push`), faulted ones included.
    pub fn pushes(&self) -> u64 {
        lock(&self.state).pushes
    }

    /// Entries dropped as exact duplicates (same tenant, stream, timestamp and line).
    pub fn duplicates(&self) -> u64 {
        lock(&self.state).duplicates
    }

    /// Entries refused (validation, the out-of-order window).
    pub fn rejected(&self) -> u64 {
        lock(&self.state).rejected
    }

    /// The status of every push, in order.
    pub fn statuses(&self) -> Vec<u16> {
        lock(&self.state).statuses.clone()
    }

    /// The headers of the last push.
    pub fn last_headers(&self) -> Option<HeaderMap> {
        lock(&self.state).last_headers.clone()
    }

    /// One header of the last push, if it was there and is text.
    pub fn last_header(&self, name: &str) -> Option<String> {
        let state = lock(&self.state);
        let value = state.last_headers.as_ref()?.get(name)?;
        value.to_str().ok().map(str::to_owned)
    }

    /// The next `times` pushes get `fault` (after any faults already queued).
    pub fn fail_next(&self, times: usize, fault: LokiFault) {
        self.fail_after(0, times, fault);
    }

    /// After `pushes` pushes processed normally, the next `times` get `fault` (after any
    /// faults already queued).
    pub fn fail_after(&self, pushes: usize, times: usize, fault: LokiFault) {
        let mut state = lock(&self.state);
        state.faults.extend(std::iter::repeat_n(None, pushes));
        state.faults.extend(std::iter::repeat_n(Some(fault), times));
    }

    /// Whether `GET /ready` answers 200 (`ready`) or 503 (starting up).
    pub fn set_ready(&self, ready: bool) {
        lock(&self.state).ready = ready;
    }

    /// Changes the limits of a running double.
    pub fn set_limits(&self, limits: LokiLimits) {
        lock(&self.state).settings.limits = limits;
    }

    /// Down: the port is closed and connections are refused. Up again: the double listens
    /// on the same port, with the entries it had.
    pub fn set_down(&self, down: bool) -> io::Result<()> {
        let mut server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        if down {
            // Dropping the server closes the listener and its connections.
            drop(server.take());
        } else if server.is_none() {
            *server = Some(Server::start_at(
                "loki-double",
                self.address,
                self.handler.clone(),
            )?);
        }
        Ok(())
    }
}

// A panicking assertion in a test thread must not take the double down with it.
fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ns() -> i64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    i64::try_from(nanos).unwrap_or(i64::MAX)
}

fn duration_ns(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

/// The double's state: its settings, what it stored, and what it counts.
struct State {
    settings: LokiSettings,
    /// By tenant and label string.
    streams: BTreeMap<(String, String), StoredStream>,
    /// Per coming push: a fault, or `None` to process it normally.
    faults: VecDeque<Option<LokiFault>>,
    ready: bool,
    pushes: u64,
    duplicates: u64,
    rejected: u64,
    statuses: Vec<u16>,
    last_headers: Option<HeaderMap>,
}

struct StoredStream {
    labels: Vec<(String, String)>,
    entries: Vec<StreamEntry>,
    /// Loki's head-block duplicate check, over every stored entry: for each timestamp, the
    /// newest entry with it; `same_time[i]` is the entry stored before entry `i` with its
    /// timestamp. Keyed on the time alone, so that a line is neither hashed nor copied:
    /// lines are compared only between entries of the same nanosecond.
    by_time: HashMap<i64, usize, foldhash::fast::RandomState>,
    same_time: Vec<Option<usize>>,
    highest: Option<i64>,
    /// The entry last accepted (stored, or equal to a stored one).
    last: Option<usize>,
}

impl StoredStream {
    fn new(labels: Vec<(String, String)>) -> Self {
        StoredStream {
            labels,
            entries: Vec::new(),
            by_time: HashMap::default(),
            same_time: Vec::new(),
            highest: None,
            last: None,
        }
    }

    /// The stored entry with this timestamp and line.
    fn find(&self, ts: i64, line: &str) -> Option<usize> {
        let mut at = self.by_time.get(&ts).copied();
        while let Some(i) = at {
            if self.entries[i].line == line {
                return Some(i);
            }
            at = self.same_time[i];
        }
        None
    }

    fn is_last(&self, ts: i64, line: &str) -> bool {
        self.last
            .map(|i| &self.entries[i])
            .is_some_and(|last| last.timestamp_ns == ts && last.line == line)
    }

    fn store(&mut self, entry: StreamEntry) -> usize {
        let at = self.entries.len();
        self.same_time
            .push(self.by_time.insert(entry.timestamp_ns, at));
        self.entries.push(entry);
        at
    }
}

/// One stream as decoded from a push.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PushedStream {
    labels: Vec<(String, String)>,
    entries: Vec<PushedEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PushedEntry {
    ts: i64,
    line: String,
    structured_metadata: Vec<(String, String)>,
}

/// A refusal: the status and Loki's message (the body is the message and a newline).
#[derive(Debug)]
struct Refusal(StatusCode, String);

impl Refusal {
    fn bad(message: impl Into<String>) -> Self {
        Refusal(StatusCode::BAD_REQUEST, message.into())
    }
}

/// Loki's `http.Error`: text/plain, `nosniff`, the message and a newline.
fn error(status: StatusCode, message: &str) -> Answer {
    let mut answer = text(status, &format!("{message}\n"));
    answer.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    answer
}

fn no_content() -> Answer {
    let mut answer = Response::new(Full::new(Bytes::new()));
    *answer.status_mut() = StatusCode::NO_CONTENT;
    answer
}

impl State {
    fn new(settings: LokiSettings) -> Self {
        State {
            settings,
            streams: BTreeMap::new(),
            faults: VecDeque::new(),
            ready: true,
            pushes: 0,
            duplicates: 0,
            rejected: 0,
            statuses: Vec::new(),
            last_headers: None,
        }
    }

    fn handle(&mut self, request: &Request<Bytes>, now: i64) -> Answer {
        let path = request.uri().path();
        match (request.method(), path) {
            (&Method::GET, READY_PATH) if self.ready => text(StatusCode::OK, "ready\n"),
            (&Method::GET, READY_PATH) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "Ingester not ready: waiting for 15s after being ready",
            ),
            (&Method::POST, PUSH_PATH) => {
                self.pushes += 1;
                self.last_headers = Some(request.headers().clone());
                let answer = match self.push(request, now) {
                    Ok(answer) => answer,
                    Err(Refusal(status, message)) => error(status, &message),
                };
                self.statuses.push(answer.status().as_u16());
                answer
            }
            (_, READY_PATH | PUSH_PATH) => {
                error(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed")
            }
            _ => error(StatusCode::NOT_FOUND, "404 page not found"),
        }
    }

    fn push(&mut self, request: &Request<Bytes>, now: i64) -> Result<Answer, Refusal> {
        if let Some(Some(fault)) = self.faults.pop_front() {
            return Ok(fault_answer(&fault));
        }
        let tenant = self.tenant(request.headers())?;
        let limits = self.settings.limits.clone();
        let streams = decode(request.headers(), request.body(), &limits)?;
        if streams.is_empty() {
            return Err(Refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "error at least one valid stream is required for ingestion".to_owned(),
            ));
        }

        // The distributor: labels per stream, then each entry.
        let mut validation_errors = Vec::new();
        let mut valid: Vec<PushedStream> = Vec::new();
        for stream in streams {
            let mut labels: Vec<(String, String)> = stream
                .labels
                .into_iter()
                .filter(|(_, value)| !value.is_empty())
                .collect();
            labels.sort_by(|a, b| a.0.cmp(&b.0));
            let shown = label_string(&labels);
            if let Err(message) = validate_labels(&labels, &shown, &limits) {
                self.rejected += stream.entries.len() as u64;
                validation_errors.push(message);
                continue;
            }
            if limits.discover_service_name {
                discover_service_name(&mut labels);
            }
            let mut good = Vec::new();
            for entry in stream.entries {
                match validate_entry(&entry, &shown, &limits, now) {
                    Ok(()) => good.push(entry),
                    Err(message) => {
                        self.rejected += 1;
                        validation_errors.push(message);
                    }
                }
            }
            if !good.is_empty() {
                valid.push(PushedStream {
                    labels,
                    entries: good,
                });
            }
        }

        // The tenant's rate limit is all or nothing, on the valid bytes.
        if let Some(burst) = limits.ingestion_burst_size {
            let lines: usize = valid.iter().map(|s| s.entries.len()).sum();
            let bytes: usize = valid
                .iter()
                .flat_map(|s| s.entries.iter())
                .map(entry_bytes)
                .sum();
            if bytes > burst {
                return Err(Refusal(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "ingestion rate limit exceeded for user {tenant} (limit: {burst} bytes/sec) \
                         while attempting to ingest '{lines}' lines totaling '{bytes}' bytes, \
                         reduce log volume or contact your Loki administrator to see if the \
                         limit can be increased"
                    ),
                ));
            }
        }

        // The ingester, stream by stream.
        let window = duration_ns(limits.out_of_order_window);
        let mut ingester_errors = Vec::new();
        for PushedStream { labels, entries } in valid {
            let shown = label_string(&labels);
            let stream = self
                .streams
                .entry((tenant.clone(), shown.clone()))
                .or_insert_with(|| StoredStream::new(labels));
            let total = entries.len();
            let mut failed = Vec::new();
            for entry in entries {
                if stream.is_last(entry.ts, &entry.line) {
                    self.duplicates += 1;
                    continue;
                }
                if let Some(highest) = stream.highest {
                    let cutoff = highest.saturating_sub(window);
                    if entry.ts < cutoff {
                        failed.push(format!(
                            "entry with timestamp {} ignored, reason: 'entry too far behind, \
                             entry timestamp is: {}, oldest acceptable timestamp is: {}',\n",
                            go_time(entry.ts),
                            rfc3339(entry.ts),
                            rfc3339(cutoff)
                        ));
                        continue;
                    }
                }
                stream.highest = Some(stream.highest.map_or(entry.ts, |h| h.max(entry.ts)));
                if let Some(stored) = stream.find(entry.ts, &entry.line) {
                    stream.last = Some(stored);
                    self.duplicates += 1;
                    continue;
                }
                let stored = stream.store(StreamEntry {
                    timestamp_ns: entry.ts,
                    line: entry.line,
                    structured_metadata: entry.structured_metadata.into_iter().collect(),
                });
                stream.last = Some(stored);
            }
            if !failed.is_empty() {
                self.rejected += failed.len() as u64;
                let mut message: String =
                    failed.iter().take(MAX_RETURNED_ERRORS).cloned().collect();
                message.push_str(&format!(
                    "user '{tenant}', total ignored: {} out of {total} for stream: {shown}",
                    failed.len()
                ));
                ingester_errors.push(message);
            }
        }
        // Loki answers with the ingester's error when there is one, else the distributor's.
        if !ingester_errors.is_empty() {
            return Err(Refusal::bad(grouped(ingester_errors)));
        }
        if !validation_errors.is_empty() {
            return Err(Refusal::bad(grouped(validation_errors)));
        }
        Ok(no_content())
    }

    fn tenant(&self, headers: &HeaderMap) -> Result<String, Refusal> {
        if !self.settings.auth_enabled {
            return Ok(NO_AUTH_TENANT.to_owned());
        }
        let Some(value) = headers.get(TENANT_HEADER) else {
            return Err(Refusal(StatusCode::UNAUTHORIZED, "no org id".to_owned()));
        };
        let Ok(value) = value.to_str() else {
            return Err(Refusal::bad(
                "tenant ID contains unsupported characters (not ASCII)",
            ));
        };
        if value.is_empty() {
            return Err(Refusal(StatusCode::UNAUTHORIZED, "no org id".to_owned()));
        }
        if value.contains('|') {
            return Err(Refusal::bad("multiple org IDs present"));
        }
        validate_tenant_id(value).map_err(Refusal::bad)?;
        Ok(value.to_owned())
    }
}

fn fault_answer(fault: &LokiFault) -> Answer {
    match fault {
        LokiFault::TooManyRequests { retry_after } => {
            let mut answer = error(
                StatusCode::TOO_MANY_REQUESTS,
                "ingestion rate limit exceeded for user fake (limit: 4194304 bytes/sec) while \
                 attempting to ingest '1' lines totaling '1' bytes, reduce log volume or contact \
                 your Loki administrator to see if the limit can be increased",
            );
            if let Some(seconds) = retry_after {
                answer
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(*seconds));
            }
            answer
        }
        LokiFault::InternalError => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "rpc error: code = DeadlineExceeded desc = context deadline exceeded",
        ),
        LokiFault::Unavailable => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "circuit breaker open, request denied",
        ),
        LokiFault::Blocked => error(
            StatusCode::from_u16(260).unwrap_or(StatusCode::OK),
            "ingestion blocked for user 'fake' until '2099-01-01T00:00:00Z' with status code '260'",
        ),
        LokiFault::TooLarge => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large: message size too large than max (104857601 vs 104857600)",
        ),
    }
}

/// dskit's `ValidTenantID`.
fn validate_tenant_id(id: &str) -> Result<(), String> {
    let allowed = |c: char| {
        c.is_ascii_alphanumeric() || matches!(c, '!' | '-' | '_' | '.' | '*' | '\'' | '(' | ')')
    };
    if let Some(c) = id.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "tenant ID '{id}' contains unsupported character '{c}'"
        ));
    }
    if id.len() > MAX_TENANT_ID_LENGTH {
        return Err(format!(
            "tenant ID is too long: max {MAX_TENANT_ID_LENGTH} characters"
        ));
    }
    if id == "." || id == ".." {
        return Err("tenant ID is '.' or '..'".to_owned());
    }
    Ok(())
}

// ---- decoding ----

fn decode(
    headers: &HeaderMap,
    body: &Bytes,
    limits: &LokiLimits,
) -> Result<Vec<PushedStream>, Refusal> {
    let json = is_json(headers).map_err(Refusal::bad)?;
    let encoding = match headers.get(CONTENT_ENCODING) {
        None => "",
        Some(value) => value
            .to_str()
            .map_err(|_| Refusal::bad("Content-Encoding is not text"))?,
    };
    if body.len() > limits.max_request_bytes {
        return Err(too_large(
            "message size too large",
            body.len(),
            limits.max_request_bytes,
        ));
    }
    let max_decompressed = limits.max_request_bytes.saturating_mul(50);
    let raw: Vec<u8> = match encoding {
        "" => body.to_vec(),
        "snappy" if json => {
            return Err(Refusal::bad(
                "Content-Encoding \"snappy\" not supported for Content-Type application/json",
            ));
        }
        "snappy" => body.to_vec(),
        "gzip" => read_limited(flate2::read::GzDecoder::new(&body[..]), max_decompressed)?,
        "deflate" => read_limited(
            flate2::read::DeflateDecoder::new(&body[..]),
            max_decompressed,
        )?,
        other => {
            return Err(Refusal::bad(format!(
                "Content-Encoding \"{other}\" not supported"
            )));
        }
    };
    if json {
        decode_json(&raw)
    } else {
        decode_protobuf(&raw, max_decompressed)
    }
}

fn too_large(what: &str, size: usize, max: usize) -> Refusal {
    Refusal(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body too large: {what} than max ({size} vs {max})"),
    )
}

fn read_limited(reader: impl Read, max: usize) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| Refusal::bad(format!("decompressing the body: {e}")))?;
    if out.len() > max {
        return Err(too_large(
            "decompressed message size too large",
            out.len(),
            max,
        ));
    }
    Ok(out)
}

/// Go's `mime.ParseMediaType`, as far as Loki's choice goes: JSON or not, or an error.
fn is_json(headers: &HeaderMap) -> Result<bool, String> {
    let raw = match headers.get(CONTENT_TYPE) {
        None => "",
        Some(value) => value
            .to_str()
            .map_err(|_| "mime: invalid media parameter".to_owned())?,
    };
    let media = raw.split(';').next().unwrap_or("").trim();
    if media.is_empty() {
        return Err("mime: no media type".to_owned());
    }
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let Some((kind, sub)) = media.split_once('/') else {
        return Err("mime: expected slash after first token".to_owned());
    };
    if !token(kind) || !token(sub) {
        return Err("mime: expected token after slash".to_owned());
    }
    Ok(media.eq_ignore_ascii_case("application/json"))
}

fn decode_protobuf(body: &[u8], max_decompressed: usize) -> Result<Vec<PushedStream>, Refusal> {
    use prost::Message as _;
    let size = snap::raw::decompress_len(body).map_err(|e| Refusal::bad(format!("snappy: {e}")))?;
    if size > max_decompressed {
        return Err(too_large(
            "decompressed message size too large",
            size,
            max_decompressed,
        ));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| Refusal::bad(format!("snappy: {e}")))?;
    let request =
        proto::PushRequest::decode(&raw[..]).map_err(|e| Refusal::bad(format!("proto: {e}")))?;
    let mut streams = Vec::with_capacity(request.streams.len());
    for stream in request.streams {
        let labels = parse_labels(&stream.labels)
            .map_err(|e| Refusal::bad(format!("couldn't parse labels: {e}")))?;
        let mut entries = Vec::with_capacity(stream.entries.len());
        for entry in stream.entries {
            let timestamp = entry.timestamp.unwrap_or_default();
            let ts = timestamp
                .seconds
                .checked_mul(1_000_000_000)
                .and_then(|ns| ns.checked_add(i64::from(timestamp.nanos)))
                .ok_or_else(|| Refusal::bad("timestamp out of range"))?;
            entries.push(PushedEntry {
                ts,
                line: entry.line,
                structured_metadata: entry
                    .structured_metadata
                    .into_iter()
                    .map(|pair| (pair.name, pair.value))
                    .collect(),
            });
        }
        streams.push(PushedStream { labels, entries });
    }
    Ok(streams)
}

fn decode_json(body: &[u8]) -> Result<Vec<PushedStream>, Refusal> {
    use serde_json::Value;
    let root: Value = serde_json::from_slice(body).map_err(|e| Refusal::bad(e.to_string()))?;
    let Value::Object(root) = root else {
        return Err(Refusal::bad(
            "Value looks like object, but can't find closing '}' symbol",
        ));
    };
    let streams = match root.get("streams") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(streams)) => streams,
        Some(_) => {
            return Err(Refusal::bad(
                "Value is array, but can't find closing ']' symbol",
            ));
        }
    };
    let mut out = Vec::with_capacity(streams.len());
    for stream in streams {
        let Value::Object(stream) = stream else {
            return Err(Refusal::bad(
                "Value looks like object, but can't find closing '}' symbol",
            ));
        };
        let labels = match stream.get("stream") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(map)) => {
                let mut labels = Vec::with_capacity(map.len());
                for (name, value) in map {
                    let Value::String(value) = value else {
                        return Err(Refusal::bad(
                            "Value is string, but can't find closing '\"' symbol",
                        ));
                    };
                    // Loki writes the keys unquoted into `{k="v"}` and parses that.
                    if !is_label_name(name) {
                        return Err(Refusal::bad(format!(
                            "couldn't parse labels: 1:2: parse error: unexpected character inside braces: {:?}",
                            name.chars()
                                .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
                                .unwrap_or(' ')
                        )));
                    }
                    labels.push((name.clone(), value.clone()));
                }
                labels
            }
            Some(_) => {
                return Err(Refusal::bad(
                    "Value looks like object, but can't find closing '}' symbol",
                ));
            }
        };
        let values = match stream.get("values") {
            None | Some(Value::Null) => &Vec::new(),
            Some(Value::Array(values)) => values,
            Some(_) => {
                return Err(Refusal::bad(
                    "Value is array, but can't find closing ']' symbol",
                ));
            }
        };
        let mut entries = Vec::with_capacity(values.len());
        for value in values {
            entries.push(json_entry(value)?);
        }
        out.push(PushedStream { labels, entries });
    }
    Ok(out)
}

fn json_entry(value: &serde_json::Value) -> Result<PushedEntry, Refusal> {
    use serde_json::Value;
    let Value::Array(parts) = value else {
        return Err(Refusal::bad(
            "Value is array, but can't find closing ']' symbol",
        ));
    };
    let (Some(ts), Some(line)) = (parts.first(), parts.get(1)) else {
        return Err(Refusal::bad(
            "array must have at least 2 and up to 3 values",
        ));
    };
    let Value::String(ts) = ts else {
        return Err(Refusal::bad(
            "Value is string, but can't find closing '\"' symbol",
        ));
    };
    let ts = parse_ns(ts)?;
    let Value::String(line) = line else {
        return Err(Refusal::bad(
            "Value is string, but can't find closing '\"' symbol",
        ));
    };
    let structured_metadata = match parts.get(2) {
        None => Vec::new(),
        Some(Value::Object(map)) => {
            let mut pairs = Vec::with_capacity(map.len());
            for (name, value) in map {
                let Value::String(value) = value else {
                    return Err(Refusal::bad(
                        "Value is string, but can't find closing '\"' symbol",
                    ));
                };
                pairs.push((name.clone(), value.clone()));
            }
            pairs
        }
        Some(_) => {
            return Err(Refusal::bad(
                "Value looks like object, but can't find closing '}' symbol",
            ));
        }
    };
    Ok(PushedEntry {
        ts,
        line: line.clone(),
        structured_metadata,
    })
}

/// jsonparser's `ParseInt`: an optional `-`, digits, no leading zero, no overflow.
fn parse_ns(text: &str) -> Result<i64, Refusal> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::bad("Value is number, but can't parse it"));
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Err(Refusal::bad("Value is number, but can't parse it"));
    }
    text.parse::<i64>()
        .map_err(|_| Refusal::bad("Value is number, but overflowed while parsing"))
}

// ---- labels ----

/// `[a-zA-Z_][a-zA-Z0-9_]*`, what the PromQL lexer takes inside braces.
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Prometheus' text form: `{a="b", c="d"}`, values quoted as Go's `strconv.Quote` does.
fn label_string(labels: &[(String, String)]) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push('=');
        push_go_quoted(&mut out, value);
    }
    out.push('}');
    out
}

fn push_go_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if c.is_control() && u32::from(c) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", u32::from(c)));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Parses `{a="b", c="d"}` as Loki's `syntax.ParseLabels` does: label names, `=`, quoted
/// values with Go escapes, commas. The error says where, PromQL style (`1:9: parse error:
/// ...`).
fn parse_labels(text: &str) -> Result<Vec<(String, String)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut at = 0;
    let fail = |at: usize, what: String| format!("1:{}: parse error: {what}", at + 1);
    let skip_ws = |at: &mut usize| {
        while chars.get(*at).is_some_and(|c| c.is_whitespace()) {
            *at += 1;
        }
    };
    skip_ws(&mut at);
    if chars.get(at) != Some(&'{') {
        return Err(fail(at, "unexpected input, expected \"{\"".to_owned()));
    }
    at += 1;
    let mut labels = Vec::new();
    loop {
        skip_ws(&mut at);
        match chars.get(at) {
            Some('}') => {
                at += 1;
                break;
            }
            None => return Err(fail(at, "unexpected end of input inside braces".to_owned())),
            Some(_) => {}
        }
        let start = at;
        while chars
            .get(at)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
        {
            at += 1;
        }
        let name: String = chars[start..at].iter().collect();
        if !is_label_name(&name) {
            let c = chars.get(at).copied().unwrap_or(' ');
            return Err(fail(
                at,
                format!("unexpected character inside braces: {c:?}"),
            ));
        }
        skip_ws(&mut at);
        if chars.get(at) != Some(&'=') {
            return Err(fail(at, "unexpected character, expected \"=\"".to_owned()));
        }
        at += 1;
        skip_ws(&mut at);
        let value = parse_quoted(&chars, &mut at).map_err(|what| fail(at, what))?;
        labels.push((name, value));
        skip_ws(&mut at);
        match chars.get(at) {
            Some(',') => at += 1,
            Some('}') => {}
            _ => {
                return Err(fail(
                    at,
                    "unexpected character, expected \",\" or \"}\"".to_owned(),
                ));
            }
        }
    }
    skip_ws(&mut at);
    if at != chars.len() {
        return Err(fail(
            at,
            "unexpected input after the closing brace".to_owned(),
        ));
    }
    Ok(labels)
}

/// A `"..."`, `'...'` or `` `...` `` string of PromQL, with Go's escapes (none in backquotes).
fn parse_quoted(chars: &[char], at: &mut usize) -> Result<String, String> {
    let Some(&quote) = chars.get(*at).filter(|c| matches!(c, '"' | '\'' | '`')) else {
        return Err("unexpected character, expected a quoted string".to_owned());
    };
    *at += 1;
    let mut value = String::new();
    loop {
        let Some(&c) = chars.get(*at) else {
            return Err("unterminated quoted string".to_owned());
        };
        *at += 1;
        match c {
            c if c == quote => return Ok(value),
            '\n' if quote != '`' => return Err("unterminated quoted string".to_owned()),
            '\\' if quote != '`' => value.push(parse_escape(chars, at, quote)?),
            c => value.push(c),
        }
    }
}

fn parse_escape(chars: &[char], at: &mut usize, quote: char) -> Result<char, String> {
    let Some(&c) = chars.get(*at) else {
        return Err("escape sequence not terminated".to_owned());
    };
    *at += 1;
    let hex = |at: &mut usize, n: usize| -> Result<char, String> {
        let digits: String = chars.get(*at..*at + n).unwrap_or_default().iter().collect();
        *at += n;
        u32::from_str_radix(&digits, 16)
            .ok()
            .filter(|_| digits.len() == n)
            .and_then(char::from_u32)
            .ok_or_else(|| format!("invalid escape sequence \\{c}{digits}"))
    };
    Ok(match c {
        'a' => '\u{7}',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\u{b}',
        '\\' => '\\',
        c if c == quote => c,
        'x' => hex(at, 2)?,
        'u' => hex(at, 4)?,
        'U' => hex(at, 8)?,
        '0'..='7' => {
            let digits: String = chars
                .get(*at - 1..*at + 2)
                .unwrap_or_default()
                .iter()
                .collect();
            *at += 2;
            u32::from_str_radix(&digits, 8)
                .ok()
                .filter(|v| digits.len() == 3 && *v <= 255)
                .and_then(char::from_u32)
                .ok_or_else(|| format!("invalid escape sequence \\{digits}"))?
        }
        c => return Err(format!("unknown escape sequence {c:?}")),
    })
}

/// Loki's `ValidateLabels`: run once per stream, on the labels without empty values.
fn validate_labels(
    labels: &[(String, String)],
    shown: &str,
    limits: &LokiLimits,
) -> Result<(), String> {
    if labels.is_empty() {
        return Err("error at least one label pair is required per stream".to_owned());
    }
    // `service_name` is not counted: Loki may add it itself.
    let counted = labels.iter().filter(|(n, _)| n != "service_name").count();
    if counted > limits.max_label_names_per_series {
        return Err(format!(
            "entry for stream '{shown}' has {} label names; limit {}",
            labels.len(),
            limits.max_label_names_per_series
        ));
    }
    let mut previous: Option<&str> = None;
    for (name, value) in labels {
        if name.len() > limits.max_label_name_length {
            return Err(format!(
                "stream '{shown}' has label name too long: '{name}'"
            ));
        }
        if value.len() > limits.max_label_value_length {
            return Err(format!(
                "stream '{shown}' has label value too long: '{value}'"
            ));
        }
        if previous == Some(name.as_str()) {
            return Err(format!(
                "stream '{shown}' has duplicate label name: '{name}'"
            ));
        }
        previous = Some(name);
    }
    Ok(())
}

/// `discover_service_name`: the first of Loki's candidate labels, else `unknown_service`.
fn discover_service_name(labels: &mut Vec<(String, String)>) {
    const CANDIDATES: &[&str] = &[
        "service",
        "app",
        "application",
        "app_name",
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
    if labels.iter().any(|(n, _)| n == "service_name") {
        return;
    }
    let value = CANDIDATES
        .iter()
        .find_map(|c| labels.iter().find(|(n, _)| n == c).map(|(_, v)| v.clone()))
        .unwrap_or_else(|| "unknown_service".to_owned());
    labels.push(("service_name".to_owned(), value));
    labels.sort_by(|a, b| a.0.cmp(&b.0));
}

/// Loki's `ValidateEntry`, in its order.
fn validate_entry(
    entry: &PushedEntry,
    shown: &str,
    limits: &LokiLimits,
    now: i64,
) -> Result<(), String> {
    if limits.reject_old_samples {
        let oldest = now.saturating_sub(duration_ns(limits.reject_old_samples_max_age));
        if entry.ts < oldest {
            return Err(format!(
                "entry for stream '{shown}' has timestamp too old: {}, oldest acceptable timestamp is: {}",
                rfc3339(entry.ts),
                rfc3339(oldest)
            ));
        }
    }
    if entry.ts > now.saturating_add(duration_ns(limits.creation_grace_period)) {
        return Err(format!(
            "entry for stream '{shown}' has timestamp too new: {}",
            rfc3339(entry.ts)
        ));
    }
    if limits.max_line_size > 0 && entry.line.len() > limits.max_line_size {
        return Err(format!(
            "max entry size '{}' bytes exceeded for stream '{shown}' while adding an entry with length '{}' bytes",
            limits.max_line_size,
            entry.line.len()
        ));
    }
    if !entry.structured_metadata.is_empty() {
        if !limits.allow_structured_metadata {
            return Err(format!(
                "stream '{shown}' includes structured metadata, but this feature is disallowed. \
                 Please see `limits_config.allow_structured_metadata` or contact your Loki \
                 administrator to enable it"
            ));
        }
        let size: usize = entry
            .structured_metadata
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum();
        if size > limits.max_structured_metadata_size {
            return Err(format!(
                "stream '{shown}' has structured metadata too large: '{size}' bytes, limit: '{}' \
                 bytes. Please see `limits_config.max_structured_metadata_size` or contact your \
                 Loki administrator to increase it",
                limits.max_structured_metadata_size
            ));
        }
        let count = entry.structured_metadata.len();
        if count > limits.max_structured_metadata_entries_count {
            return Err(format!(
                "stream '{shown}' has too many structured metadata labels: '{count}', limit: '{}'. \
                 Please see `limits_config.max_structured_metadata_entries_count` or contact your \
                 Loki administrator to increase it",
                limits.max_structured_metadata_entries_count
            ));
        }
    }
    Ok(())
}

fn entry_bytes(entry: &PushedEntry) -> usize {
    entry.line.len()
        + entry
            .structured_metadata
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum::<usize>()
}

/// Loki's `GroupedErrors`: identical messages counted, groups joined with `; ` in map
/// order (random: Rust's `HashMap`, like Go's map, iterates in no fixed order), at most
/// [`MAX_RETURNED_ERRORS`] groups.
fn grouped(errors: Vec<String>) -> String {
    if errors.len() == 1 {
        return errors.into_iter().next().unwrap_or_default();
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for e in errors {
        *counts.entry(e).or_default() += 1;
    }
    counts
        .into_iter()
        .take(MAX_RETURNED_ERRORS)
        .map(|(message, count)| {
            if count > 1 {
                format!("{count} errors like: {message}")
            } else {
                message
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

// ---- time, as Go prints it ----

/// (year, month, day, hour, minute, second, nanosecond) in UTC.
fn civil(ns: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400) as u32;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        nanos,
    )
}

/// Go's `time.RFC3339`: `2006-01-02T15:04:05Z`.
fn rfc3339(ns: i64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(ns);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Go's `Time.String()` in UTC: `2006-01-02 15:04:05.999999999 +0000 UTC`.
fn go_time(ns: i64) -> String {
    let (y, mo, d, h, mi, s, nanos) = civil(ns);
    let mut fraction = String::new();
    if nanos > 0 {
        fraction = format!(".{nanos:09}");
        while fraction.ends_with('0') {
            fraction.pop();
        }
    }
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{fraction} +0000 UTC")
}

/// `logproto.PushRequest` and its parts, written by hand from `pkg/push/push.proto`'s field
/// numbers (no `protoc`). Public so that tests can build raw pushes.
pub mod proto {
    /// `PushRequest { repeated StreamAdapter streams = 1; string format = 2; }`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<StreamAdapter>,
        #[prost(string, tag = "2")]
        pub format: String,
    }

    /// `StreamAdapter { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamAdapter {
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<EntryAdapter>,
        #[prost(uint64, tag = "3")]
        pub hash: u64,
    }

    /// `EntryAdapter { Timestamp timestamp = 1; string line = 2;
    /// repeated LabelPairAdapter structuredMetadata = 3; repeated LabelPairAdapter parsed = 4; }`
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EntryAdapter {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        #[prost(string, tag = "2")]
        pub line: String,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPairAdapter>,
        #[prost(message, repeated, tag = "4")]
        pub parsed: Vec<LabelPairAdapter>,
    }

    /// `google.protobuf.Timestamp { int64 seconds = 1; int32 nanos = 2; }`
    #[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    /// `LabelPairAdapter { string name = 1; string value = 2; }`
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct LabelPairAdapter {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
