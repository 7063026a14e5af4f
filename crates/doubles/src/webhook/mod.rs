//! Doubles of the webhook platforms a webhook sink posts to, built from their wire
//! contracts (`shared/reference/sink-wire-contracts.md` §3–4): Slack incoming webhooks,
//! Microsoft Teams Workflows, Feishu / Lark custom bots, DingTalk custom robots, WeCom
//! group robots, and a generic receiver that checks Standard Webhooks or GitHub
//! signatures.
//!
//! Each one, for every request, in this order:
//!
//! 1. records it ([`Received`]: arrival time, path, query, headers, body, and the
//!    answer given);
//! 2. answers a fault queued with [`WebhookDouble::fail_next`], or the removed-hook
//!    answer after [`WebhookDouble::remove_hook`] (or [`WebhookDouble::remove_hook_after`]);
//! 3. checks it as the platform does (a module per platform): the secret part of the URL, the
//!    signature (with the platform's timestamp tolerance), the body size and the payload
//!    shape; a failure gets the platform's own answer for it;
//! 4. enforces the platform's rate limit over the posts it accepted (DingTalk then
//!    throttles the robot for its penalty, ten minutes by default);
//! 5. accepts it: the message's readable text is kept for assertions.
//!
//! Answers are the platforms': Slack's 200 `ok` and plain-text error codes, Teams' 202
//! and `{"error":{...}}`, the HTTP 200 with a non-zero `code` / `errcode` of Feishu,
//! DingTalk and WeCom, 429 with `Retry-After` where the platform sends one. The table of
//! faults and answers is in [`Fault`].

mod dingtalk;
mod feishu;
mod generic;
pub mod signature;
mod slack;
mod teams;
mod wecom;

#[cfg(test)]
mod tests;

use crate::server::{Answer, Handler, Server};
use bytes::Bytes;
use hyper::Request;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// Which platform a double plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    Slack,
    Teams,
    Feishu,
    DingTalk,
    WeCom,
    /// Any HTTP endpoint; see [`GenericSignature`].
    Generic,
}

/// What a generic receiver requires of a post's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenericSignature {
    None,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,...` with a `whsec_` key.
    Standard,
    /// `X-Hub-Signature-256: sha256=...`.
    GitHub,
}

/// Why a request is refused; each platform answers each in its own way.
///
/// | fault | Slack | Teams | Feishu (200) | DingTalk (200) | WeCom (200) | generic |
/// |---|---|---|---|---|---|---|
/// | `RateLimited` | 429 `rate_limited`, `Retry-After` | 429, `Retry-After` | `code` 11232 | `errcode` 130101 | `errcode` 45009 | 429, `Retry-After` |
/// | `RemovedHook` | 404 `no_service` | 404 `WorkflowNotFound` | 19001 | 300005 | 93000 | 410 |
/// | `BadToken` | 403 `invalid_token` | 401 | 19001 | 300005 | 93000 | 401 |
/// | `BadSignature` | — | — | 19021 | 310000 `sign not match` / `invalid timestamp` | — | 401 |
/// | `TooLarge` | 400 `msg_too_long` | 413 | 9499 | 460101 | 40058 | 413 |
/// | `BadPayload` | 400 `invalid_payload` (`no_text`, `invalid_blocks`) | 400 `InvalidRequestContent` | 9499 (10208 for a `msg_type`) | 300001 `param error` | 40008 | 400 |
/// | `ServerError` | 500 `rollup_error` | 502 | HTTP 500 | HTTP 502 | HTTP 500 | 503 |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    RateLimited,
    RemovedHook,
    BadToken,
    BadSignature,
    TooLarge,
    BadPayload,
    ServerError,
}

/// A refusal found while checking a request: the fault and the platform's words for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub fault: Fault,
    pub detail: String,
}

impl Refusal {
    pub(crate) fn new(fault: Fault, detail: impl Into<String>) -> Self {
        Refusal {
            fault,
            detail: detail.into(),
        }
    }
}

/// How a double is set up. Start from the platform's constructor (its documented
/// limits) and change what a test needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    pub platform: Platform,
    /// The secret part of the URL: Slack's path, the Teams `sig`, Feishu's hook token,
    /// DingTalk's `access_token`, WeCom's `key`, the generic path.
    pub token: String,
    /// The signing secret (Feishu, DingTalk, generic); `None`: posts are not signed.
    pub secret: Option<String>,
    /// Generic only.
    pub generic_signature: GenericSignature,
    /// At most `messages` accepted posts in any window of `per`, for each entry.
    pub rate_limits: Vec<(usize, Duration)>,
    /// DingTalk: how long the robot stays throttled after going over its limit.
    pub penalty: Duration,
    /// `Retry-After` seconds on a 429 (Slack, Teams, generic).
    pub retry_after: u64,
    /// Largest body taken.
    pub max_body_bytes: usize,
    /// How far a signature's timestamp may be from the double's clock.
    pub timestamp_tolerance: Duration,
}

impl WebhookSettings {
    fn new(platform: Platform, rate_limits: Vec<(usize, Duration)>, max_body_bytes: usize) -> Self {
        WebhookSettings {
            platform,
            token: "T0KEN-s3cret-Abc123".to_owned(),
            secret: None,
            generic_signature: GenericSignature::None,
            rate_limits,
            penalty: Duration::ZERO,
            retry_after: 1,
            max_body_bytes,
            timestamp_tolerance: Duration::from_secs(3600),
        }
    }

    /// Slack: one message per second (bursts beyond it are refused here).
    pub fn slack() -> Self {
        Self::new(
            Platform::Slack,
            vec![(1, Duration::from_secs(1))],
            1024 * 1024,
        )
    }

    /// Teams Workflows: no documented limit; the connector's 28 KB size limit.
    pub fn teams() -> Self {
        Self::new(Platform::Teams, Vec::new(), 28 * 1024)
    }

    /// Feishu: 5 per second and 100 per minute, 20 KB bodies.
    pub fn feishu() -> Self {
        Self::new(
            Platform::Feishu,
            vec![(5, Duration::from_secs(1)), (100, Duration::from_secs(60))],
            20 * 1024,
        )
    }

    /// DingTalk: 20 per minute, then ten minutes of throttling; 20,000-byte bodies.
    pub fn dingtalk() -> Self {
        WebhookSettings {
            penalty: Duration::from_secs(600),
            ..Self::new(
                Platform::DingTalk,
                vec![(20, Duration::from_secs(60))],
                20_000,
            )
        }
    }

    /// WeCom: 20 per minute.
    pub fn wecom() -> Self {
        Self::new(
            Platform::WeCom,
            vec![(20, Duration::from_secs(60))],
            1024 * 1024,
        )
    }

    /// A generic receiver: no limit, unsigned, 1 MiB bodies; Standard Webhooks' five
    /// minutes of timestamp tolerance.
    pub fn generic() -> Self {
        WebhookSettings {
            timestamp_tolerance: Duration::from_secs(300),
            ..Self::new(Platform::Generic, Vec::new(), 1024 * 1024)
        }
    }

    /// The same with `secret` (and, for the generic receiver, `signature`).
    pub fn signed(mut self, secret: &str, signature: GenericSignature) -> Self {
        self.secret = Some(secret.to_owned());
        self.generic_signature = signature;
        self
    }

    /// The same with other rate limits (`&[]`: none).
    pub fn limits(mut self, limits: &[(usize, Duration)]) -> Self {
        self.rate_limits = limits.to_vec();
        self
    }
}

/// One request as the double got it, and what it answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    /// The query as it arrived, byte for byte.
    pub query: Option<String>,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Bytes,
    /// The body as JSON, if it is.
    pub json: Option<Value>,
    /// The message's readable text (what people would see), when it was accepted.
    pub text: Option<String>,
    /// The answer's status and body.
    pub status: u16,
    pub answer: String,
    /// Why it was refused, if it was.
    pub refused: Option<Fault>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn accepted(&self) -> bool {
        self.refused.is_none()
    }
}

/// A request as the platform modules check it.
pub(crate) struct Incoming<'a> {
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a BTreeMap<String, String>,
    pub body: &'a [u8],
    pub json: Option<&'a Value>,
    pub now: SystemTime,
}

impl Incoming<'_> {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

struct State {
    settings: WebhookSettings,
    requests: Vec<Received>,
    faults: VecDeque<Fault>,
    removed: bool,
    /// The hook is removed once this many posts were accepted.
    remove_after: Option<usize>,
    throttled_until: Option<Instant>,
}

/// A running webhook double on 127.0.0.1; stops when dropped.
pub struct WebhookDouble {
    state: Arc<Mutex<State>>,
    server: Server,
    platform: Platform,
    token: String,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl WebhookDouble {
    /// Starts a double set up as `settings` says.
    pub fn start(settings: WebhookSettings) -> io::Result<WebhookDouble> {
        let platform = settings.platform;
        let token = settings.token.clone();
        let state = Arc::new(Mutex::new(State {
            settings,
            requests: Vec::new(),
            faults: VecDeque::new(),
            removed: false,
            remove_after: None,
            throttled_until: None,
        }));
        let handler: Handler = {
            let state = state.clone();
            Arc::new(move |request| handle(&state, request))
        };
        let server = Server::start("webhook-double", handler)?;
        Ok(WebhookDouble {
            state,
            server,
            platform,
            token,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// The hook's URL, as the platform would give it, secret included.
    pub fn url(&self) -> String {
        self.url_with_token(&self.token)
    }

    /// The hook's URL with another token (a wrong or revoked one).
    pub fn url_with_token(&self, token: &str) -> String {
        let base = self.base_url();
        match self.platform {
            Platform::Slack => format!("{base}{}{token}", slack::PATH_PREFIX),
            Platform::Teams => format!("{base}{}?{}", teams::PATH, teams::query(token)),
            Platform::Feishu => format!("{base}{}{token}", feishu::PATH_PREFIX),
            Platform::DingTalk => format!("{base}{}?access_token={token}", dingtalk::PATH),
            Platform::WeCom => format!("{base}{}?key={token}", wecom::PATH),
            Platform::Generic => format!("{base}{}{token}", generic::PATH_PREFIX),
        }
    }

    /// The secret part of the URL.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Every request, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        lock(&self.state).requests.clone()
    }

    /// The requests accepted as messages, in arrival order.
    pub fn accepted(&self) -> Vec<Received> {
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| r.accepted())
            .cloned()
            .collect()
    }

    /// The readable text of each accepted message.
    pub fn texts(&self) -> Vec<String> {
        self.accepted().into_iter().filter_map(|r| r.text).collect()
    }

    /// How many requests were refused for `fault`.
    pub fn refused(&self, fault: Fault) -> usize {
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| r.refused == Some(fault))
            .count()
    }

    /// Answers the next request with `fault` (queued after faults already queued).
    pub fn fail_next(&self, fault: Fault) {
        lock(&self.state).faults.push_back(fault);
    }

    /// From now on every request gets the removed-hook answer.
    pub fn remove_hook(&self) {
        lock(&self.state).removed = true;
    }

    /// The hook is removed (as by [`Self::remove_hook`]) once `accepted` posts in all
    /// were accepted: a hook deleted in the middle of a batch.
    pub fn remove_hook_after(&self, accepted: usize) {
        lock(&self.state).remove_after = Some(accepted);
    }

    /// The most accepted posts that arrived within any window of `per`.
    pub fn most_in_window(&self, per: Duration) -> usize {
        let times: Vec<Instant> = self.accepted().iter().map(|r| r.at).collect();
        most_in_window(&times, per)
    }

    /// Generic: how many accepted posts carried a `webhook-id` an earlier accepted post
    /// carried (a re-send).
    pub fn duplicates(&self) -> usize {
        duplicate_ids(&lock(&self.state).requests)
    }
}

/// How many accepted requests repeat the `webhook-id` of an earlier accepted one.
fn duplicate_ids(requests: &[Received]) -> usize {
    let mut seen = std::collections::HashSet::new();
    requests
        .iter()
        .filter(|r| r.accepted())
        .filter_map(|r| r.header("webhook-id"))
        .filter(|id| !seen.insert(*id))
        .count()
}

/// The most of `times` (sorted) within any window of `per`.
pub fn most_in_window(times: &[Instant], per: Duration) -> usize {
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|at| at.duration_since(times[i]) < per)
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn handle(state: &Mutex<State>, request: Request<Bytes>) -> Answer {
    handle_at(state, request, Instant::now(), SystemTime::now())
}

/// [`handle`] with the arrival instant and the wall clock given (tests).
fn handle_at(
    state: &Mutex<State>,
    request: Request<Bytes>,
    at: Instant,
    now: SystemTime,
) -> Answer {
    let (parts, body) = request.into_parts();
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let mut state = lock(state);
    let settings = state.settings.clone();
    let incoming = Incoming {
        path: &path,
        query: query.as_deref(),
        headers: &headers,
        body: &body,
        json: json.as_ref(),
        now,
    };
    let verdict = if let Some(fault) = state.faults.pop_front() {
        Err(Refusal::new(fault, "injected"))
    } else if state.removed
        || state
            .remove_after
            .is_some_and(|n| state.requests.iter().filter(|r| r.accepted()).count() >= n)
    {
        Err(Refusal::new(Fault::RemovedHook, "removed"))
    } else {
        check(&settings, &incoming).and_then(|text| {
            rate_limit(&mut state, &settings, at)?;
            Ok(text)
        })
    };
    let (answer, text, refused) = match verdict {
        Ok(text) => (accepted(settings.platform), Some(text), None),
        Err(refusal) => (refuse(&settings, &refusal), None, Some(refusal.fault)),
    };
    let (status, answer_body) = (answer.status().as_u16(), answer_text(&answer));
    state.requests.push(Received {
        at,
        path,
        query,
        headers,
        body,
        json,
        text,
        status,
        answer: answer_body,
        refused,
    });
    answer
}

/// The platform's checks; the readable text of an acceptable message.
fn check(settings: &WebhookSettings, request: &Incoming<'_>) -> Result<String, Refusal> {
    match settings.platform {
        Platform::Slack => slack::check(settings, request),
        Platform::Teams => teams::check(settings, request),
        Platform::Feishu => feishu::check(settings, request),
        Platform::DingTalk => dingtalk::check(settings, request),
        Platform::WeCom => wecom::check(settings, request),
        Platform::Generic => generic::check(settings, request),
    }
}

fn accepted(platform: Platform) -> Answer {
    match platform {
        Platform::Slack => slack::ok(),
        Platform::Teams => teams::ok(),
        Platform::Feishu => feishu::ok(),
        Platform::DingTalk => dingtalk::ok(),
        Platform::WeCom => wecom::ok(),
        Platform::Generic => generic::ok(),
    }
}

fn refuse(settings: &WebhookSettings, refusal: &Refusal) -> Answer {
    match settings.platform {
        Platform::Slack => slack::refuse(settings, refusal),
        Platform::Teams => teams::refuse(settings, refusal),
        Platform::Feishu => feishu::refuse(settings, refusal),
        Platform::DingTalk => dingtalk::refuse(settings, refusal),
        Platform::WeCom => wecom::refuse(settings, refusal),
        Platform::Generic => generic::refuse(settings, refusal),
    }
}

/// Refuses a post over a limit (counting accepted posts in each window); DingTalk's
/// robot is then throttled for its penalty.
fn rate_limit(state: &mut State, settings: &WebhookSettings, at: Instant) -> Result<(), Refusal> {
    if state.throttled_until.is_some_and(|until| at < until) {
        return Err(Refusal::new(Fault::RateLimited, "still throttled"));
    }
    for (messages, per) in &settings.rate_limits {
        let recent = state
            .requests
            .iter()
            .filter(|r| r.accepted() && at.duration_since(r.at) < *per)
            .count();
        if recent >= *messages {
            if !settings.penalty.is_zero() {
                state.throttled_until = Some(at + settings.penalty);
            }
            return Err(Refusal::new(Fault::RateLimited, "over the limit"));
        }
    }
    Ok(())
}

fn answer_text(answer: &Answer) -> String {
    use http_body_util::BodyExt as _;
    // A `Full` body is ready: polling it once gives all of it.
    let body = answer.body().clone();
    let waker = std::task::Waker::noop();
    let mut context = std::task::Context::from_waker(waker);
    let mut collect = std::pin::pin!(body.collect());
    match std::future::Future::poll(collect.as_mut(), &mut context) {
        std::task::Poll::Ready(Ok(collected)) => {
            String::from_utf8_lossy(&collected.to_bytes()).into_owned()
        }
        _ => String::new(),
    }
}

/// A JSON answer with HTTP 200, as Feishu, DingTalk and WeCom give every answer.
pub(crate) fn json_200(body: Value) -> Answer {
    crate::server::json(hyper::StatusCode::OK, &body)
}

/// `status` with `Retry-After: seconds`.
pub(crate) fn with_retry_after(mut answer: Answer, seconds: u64) -> Answer {
    answer.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from(seconds),
    );
    answer
}

/// Whether a signature's `timestamp` (seconds, or milliseconds with `millis`) is within
/// `tolerance` of `now`.
pub(crate) fn timely(timestamp: &str, millis: bool, now: SystemTime, tolerance: Duration) -> bool {
    let Ok(value) = timestamp.trim().parse::<u64>() else {
        return false;
    };
    let at = if millis {
        Duration::from_millis(value)
    } else {
        Duration::from_secs(value)
    };
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    at.abs_diff(now) <= tolerance
}

/// Every string of a JSON value under the keys named `key`, depth first.
pub(crate) fn strings_at(value: &Value, key: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (name, inner) in map {
                match inner {
                    Value::String(s) if name == key => out.push(s.clone()),
                    _ => strings_at(inner, key, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_at(v, key, out)),
        _ => {}
    }
}
