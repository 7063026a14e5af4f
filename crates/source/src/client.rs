//! The HTTP client for the ModelArts v1 API: credentials on every request
//! (see `auth`), TLS settings, the adaptive request-rate cap, retries with
//! backoff, response-size limit, lenient parsing and error classification.
//!
//! API: "Querying Service Event Logs",
//! `GET /v1/{project_id}/services/{service_id}/events`, and "Obtaining
//! Services", `GET /v1/{project_id}/services`
//! (<https://docs.otc.t-systems.com/modelarts/api-ref/>).

use crate::auth::{Authenticator, Outgoing};
use crate::error::SourceError;
use crate::rate::RateLimiter;
use crate::response::{self, Peer, Refusal, error_chain};
use crate::retry::Backoff;
use crate::settings::{AuthKind, SourceSettings};
use aksk::encode;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::path::Path;
use std::sync::Arc;
use telemetry::Observer;
use tracing::{info, warn};

pub use crate::response::quote;

/// The newest `occur_time` RFC 3339 can write (9999-12-31T23:59:59.999Z). A row dated
/// outside 1970..=9999 cannot become a record: it is malformed.
pub const MAX_OCCUR_TIME: i64 = 253_402_300_799_999;

/// One request of the events API. The client always asks
/// `sort_by=occur_time&order=asc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsQuery {
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub offset: u64,
    pub limit: u32,
    pub event_type: Option<String>,
}

/// One event as the API gives it, read leniently.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawEvent {
    pub occur_time: i64,
    pub event_type: String,
    pub event_info: String,
}

/// A row of `events[]`: an event, or a row that cannot be placed because it
/// has no usable `occur_time` (none, not a number, or outside the years 1970..=9999),
/// kept as truncated raw JSON for the log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventRow {
    Event(RawEvent),
    Malformed(String),
}

/// One page of the events API.
#[derive(Debug, Clone)]
pub struct EventsPage {
    pub service_name: String,
    /// Events matching the filters without paging.
    pub total_count: u64,
    pub rows: Vec<EventRow>,
}

/// One entry of the services list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    pub service_id: String,
    pub service_name: String,
    pub status: String,
}

/// One page of the services list.
#[derive(Debug, Clone)]
pub struct ServicesPage {
    pub total_count: u64,
    pub services: Vec<ServiceInfo>,
}

/// A client for one source (one project on one endpoint). Cheap to share
/// behind an `Arc`: the rate cap covers every service of the source.
#[derive(Debug)]
pub struct ModelArtsClient {
    source: String,
    http: reqwest::Client,
    endpoint: String,
    /// `host[:port]` of the endpoint, as the `Host` header carries it.
    host: String,
    /// The path part of the endpoint (empty unless the API sits under a
    /// prefix, e.g. behind a reverse proxy); it is signed with the rest.
    base_path: String,
    /// The configured project id; `None` only with password auth, where the
    /// token's project is used.
    project_id: Option<String>,
    auth: Authenticator,
    limiter: RateLimiter,
    backoff: Backoff,
    max_response_bytes: u64,
    /// The endpoint as errors name it when it does not answer.
    peer: Peer,
    /// Where `project_id` was configured, named when the server says it is not the
    /// token's project.
    project_key: String,
    /// Counts requests by status and retries, and tells `/health` whether the source
    /// is failing.
    observer: Arc<Observer>,
}

/// How many retries a request may have: the full budget, or the small one of the probe
/// that proves the credentials (see [`Backoff::probe_retry_delay`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Budget {
    Full,
    Probe,
}

impl ModelArtsClient {
    /// Builds the client without touching the network: reads `ca_file`. Secret files are
    /// read when first needed (see [`crate::read_secret_files`] to check them up front).
    pub fn new(settings: &SourceSettings) -> Result<Self, SourceError> {
        let name = &settings.name;
        let setup = |what: String| SourceError::Setup(format!("source {name}: {what}"));
        // reqwest is built without a default TLS crypto provider (`rustls-no-provider`):
        // the program picks one, once, in `main`. Without one reqwest would panic here.
        if !tls_provider::is_installed() {
            return Err(setup(
                "no TLS crypto provider is installed in this process (the runner installs \
                 ring in main; a test must call tls_provider::install first)"
                    .to_owned(),
            ));
        }
        // Proxies: reqwest reads HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and
        // NO_PROXY (and their lower-case forms) from the environment whenever
        // no proxy is set on the builder. Its `system-proxy` feature, off
        // here (default-features = false), only adds the macOS and Windows
        // system settings; the environment variables are read by hyper-util's
        // matcher regardless (reqwest 0.13 `Matcher::system` →
        // `hyper_util::client::proxy::matcher::Matcher::from_system`).
        let mut builder = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.connect_timeout)
            .user_agent(concat!(
                "modelarts-event-shipper/",
                env!("CARGO_PKG_VERSION")
            ));
        if let Some(path) = &settings.tls.ca_file {
            builder = builder.tls_certs_merge(read_ca_file(name, path)?);
        }
        if settings.tls.insecure_skip_verify {
            warn!(
                source = %name,
                "TLS certificate verification is OFF for source {name}: anyone on the path can \
                 read and change its traffic, credentials included."
            );
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| {
            let ca = settings
                .tls
                .ca_file
                .as_ref()
                .map(|p| format!(" (with ca_file {})", p.display()))
                .unwrap_or_default();
            setup(format!(
                "cannot build the HTTP client{ca}: {}",
                error_chain(&e)
            ))
        })?;
        let endpoint = settings.endpoint.trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&endpoint)
            .map_err(|e| setup(format!("endpoint {endpoint:?} is not a URL: {e}")))?;
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => return Err(setup(format!("endpoint {endpoint:?} has no host"))),
        };
        let base_path = url.path().trim_end_matches('/').to_owned();
        let backoff = Backoff {
            initial: settings.retry_initial_backoff,
            max: settings.retry_max_backoff,
            max_retries: settings.max_retries,
        };
        let auth = Authenticator::new(settings, http.clone(), backoff.clone())?;
        if settings.project_id.is_none() && auth.kind() != AuthKind::Password {
            return Err(setup(format!(
                "project_id is required with {} auth",
                auth.kind()
            )));
        }
        Ok(ModelArtsClient {
            source: name.clone(),
            http,
            endpoint,
            host,
            base_path,
            project_id: settings.project_id.clone(),
            auth,
            limiter: RateLimiter::new(name, settings.max_requests_per_second),
            backoff,
            max_response_bytes: settings.max_response_bytes,
            peer: Peer {
                url: endpoint_for_errors(&settings.endpoint),
                origin: settings.endpoint_origin(),
                connect_timeout: settings.connect_timeout,
                connect_key: settings.key("connect_timeout"),
                request_timeout: settings.request_timeout,
                request_key: settings.key("request_timeout"),
            },
            project_key: settings.project_id_origin(),
            observer: Arc::new(Observer::new()),
        })
    }

    /// Reports this client's requests to `observer` (the process's metrics and health).
    pub fn with_observer(mut self, observer: Arc<Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// One request that proves the credentials, before the source fans out
    /// to its services: token → `GET services?limit=1`; password → the IAM
    /// login (learning the project id if it is not configured); aksk → a
    /// signed `GET services?limit=1`. Secrets that are files are read again
    /// first. A refusal is [`SourceError::Auth`], not retried, and is held: for five
    /// minutes, or until the secret files change, requests fail with it without
    /// presenting the refused credentials again, and a later `authenticate()` answers
    /// [`SourceError::HeldBack`] at once (the source's one lockout policy).
    pub async fn authenticate(&self) -> Result<(), SourceError> {
        self.auth.begin().await?;
        let outcome = match self.auth.kind() {
            AuthKind::Password => match self.auth.login().await {
                Ok(learned) if self.project_id.is_none() && learned.is_none() => {
                    Err(no_project(&self.source))
                }
                other => other.map(drop),
            },
            AuthKind::Token | AuthKind::Aksk => {
                self.services_within(0, 1, Budget::Probe).await.map(drop)
            }
        };
        if let Err(error @ SourceError::Auth { .. }) = &outcome {
            self.auth.refused(error).await;
        }
        outcome
    }

    /// The project id: configured, or learned from the IAM token (empty
    /// until the first login when it is neither).
    pub fn project_id(&self) -> String {
        self.project_id
            .clone()
            .or_else(|| self.auth.learned_project())
            .unwrap_or_default()
    }

    /// How the source authenticates.
    pub fn auth_kind(&self) -> AuthKind {
        self.auth.kind()
    }

    /// The request rate now, in requests per second (lowered by throttling,
    /// raised again by runs of successes).
    pub fn current_rate(&self) -> f64 {
        self.limiter.rate()
    }

    /// The project id, logging in first when it comes from the token.
    async fn project(&self) -> Result<String, SourceError> {
        if let Some(id) = &self.project_id {
            return Ok(id.clone());
        }
        self.auth
            .login()
            .await?
            .ok_or_else(|| no_project(&self.source))
    }

    /// One page of a service's events, retried on 429/5xx/transport errors.
    pub async fn service_events(
        &self,
        service_id: &str,
        query: &EventsQuery,
    ) -> Result<EventsPage, SourceError> {
        let project_id = self.project().await?;
        let path = format!(
            "/v1/{}/services/{}/events",
            encode(&project_id),
            encode(service_id)
        );
        let mut params: Vec<(String, String)> = vec![
            ("limit".to_owned(), query.limit.to_string()),
            ("offset".to_owned(), query.offset.to_string()),
            ("order".to_owned(), "asc".to_owned()),
            ("sort_by".to_owned(), "occur_time".to_owned()),
        ];
        if let Some(start) = query.start_time {
            params.push(("start_time".to_owned(), start.to_string()));
        }
        if let Some(end) = query.end_time {
            params.push(("end_time".to_owned(), end.to_string()));
        }
        if let Some(kind) = &query.event_type {
            params.push(("event_type".to_owned(), kind.clone()));
        }
        let body = self
            .get(&project_id, &path, &params, Some(service_id), Budget::Full)
            .await?;
        let request = describe(&path, "");
        parse_events_page(&body, &request)
    }

    /// One page of the project's services list.
    pub async fn services(&self, offset: u64, limit: u32) -> Result<ServicesPage, SourceError> {
        self.services_within(offset, limit, Budget::Full).await
    }

    async fn services_within(
        &self,
        offset: u64,
        limit: u32,
        budget: Budget,
    ) -> Result<ServicesPage, SourceError> {
        let project_id = self.project().await?;
        let path = format!("/v1/{}/services", encode(&project_id));
        let params = vec![
            ("limit".to_owned(), limit.to_string()),
            ("offset".to_owned(), offset.to_string()),
        ];
        let body = self.get(&project_id, &path, &params, None, budget).await?;
        parse_services_page(&body, &describe(&path, ""))
    }

    /// GET with credentials, the rate cap and retries; returns the body of a
    /// 200. An expired IAM token is renewed once; other refusals come back
    /// at once.
    async fn get(
        &self,
        project_id: &str,
        path: &str,
        params: &[(String, String)],
        service_id: Option<&str>,
        budget: Budget,
    ) -> Result<Vec<u8>, SourceError> {
        // The query on the wire is the canonical one (sorted, RFC 3986
        // encoded): AK/SK signing covers exactly that string.
        let query = aksk::canonical_query(params);
        let request = describe(path, &query);
        let full_path = format!("{}{}", self.base_path, path);
        let url = if query.is_empty() {
            format!("{}{}", self.endpoint, path)
        } else {
            format!("{}{}?{}", self.endpoint, path, query)
        };
        let outgoing = Outgoing {
            method: "GET",
            path: &full_path,
            params,
            body: b"",
            project_id,
        };
        let mut attempt = 0u32;
        let mut renewed = false;
        loop {
            self.limiter.acquire().await;
            let (headers, presented) = self.auth.headers(&outgoing, &self.host).await?;
            let error = match self.get_once(&url, headers, &request, service_id).await {
                Ok(body) => {
                    self.limiter.on_success();
                    self.observer.cloud_request(&self.source, Some(200), None);
                    return Ok(body);
                }
                Err(error) => error,
            };
            // A service that is not there is an answer about the service, not a
            // failing source.
            let failing = !matches!(error, SourceError::ServiceNotFound { .. });
            self.observer.cloud_request(
                &self.source,
                error.status(),
                failing.then(|| error.to_string()).as_deref(),
            );
            if error.is_throttled() {
                self.limiter.on_throttled();
            }
            if !renewed && self.auth.renews_on(&error) {
                info!(source = %self.source, error = %error, "IAM token refused as expired; renewing it once.");
                self.auth.invalidate(&presented).await;
                renewed = true;
                continue;
            }
            if matches!(error, SourceError::Auth { .. }) {
                self.auth.after_refusal(&error).await;
                return Err(error);
            }
            let delay = match budget {
                Budget::Full => self.backoff.retry_delay(attempt, &error),
                Budget::Probe => self.backoff.probe_retry_delay(attempt, &error),
            };
            let Some(delay) = delay else {
                return Err(error);
            };
            warn!(
                source = %self.source,
                service_id = service_id.unwrap_or("-"),
                attempt = attempt + 1,
                delay_ms = delay.as_millis() as u64,
                error = %error,
                "Request failed; retrying."
            );
            self.observer.cloud_retry(&self.source);
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn get_once(
        &self,
        url: &str,
        headers: HeaderMap,
        request: &str,
        service_id: Option<&str>,
    ) -> Result<Vec<u8>, SourceError> {
        let (answer, _) = response::send(
            self.http
                .get(url)
                .headers(headers)
                .header("Accept", "application/json"),
            request,
            self.max_response_bytes,
            &self.peer,
        )
        .await?;
        if answer.status == 200 {
            return Ok(answer.body);
        }
        let refusal = Refusal {
            request,
            auth: self.auth.kind(),
            service_id,
            project_key: Some(&self.project_key),
        };
        Err(answer.error(refusal, |message| self.auth.redact(message)))
    }
}

/// The endpoint as an error may show it: without a user name or password, should the URL
/// carry one.
fn endpoint_for_errors(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    match reqwest::Url::parse(trimmed) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.as_str().trim_end_matches('/').to_owned()
        }
        _ => trimmed.to_owned(),
    }
}

fn no_project(source: &str) -> SourceError {
    SourceError::Setup(format!(
        "source {source}: the IAM token names no project; set project_id"
    ))
}

/// The certificates of a PEM file of extra CAs. A file with none is an
/// error: it is almost always a DER file or the wrong path.
fn read_ca_file(source: &str, path: &Path) -> Result<Vec<reqwest::Certificate>, SourceError> {
    let setup = |what: String| {
        SourceError::Setup(format!(
            "source {source}: tls.ca_file {}: {what}",
            path.display()
        ))
    };
    let pem = std::fs::read(path).map_err(|e| setup(format!("cannot read it: {e}")))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| setup(format!("not a PEM certificate file: {}", error_chain(&e))))?;
    if certs.is_empty() {
        return Err(setup(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
        ));
    }
    Ok(certs)
}

fn describe(path: &str, query: &str) -> String {
    if query.is_empty() {
        format!("GET {path}")
    } else {
        format!("GET {path}?{query}")
    }
}

fn lenient_u64(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `occur_time` as a number, an integral float, or a numeric string.
fn lenient_ms(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn lenient_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// [`lenient_text`] of a value the caller owns: a string is moved, not copied (every
/// row of every page goes through here).
fn lenient_text_owned(value: Option<Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    }
}

/// The shape nearly every page has: an object whose `events` are objects with an
/// integer `occur_time` and string `event_type` and `event_info`. Such rows are read
/// straight into [`RawEvent`]s, without a `Value` (a map and its keys) per row.
#[derive(Deserialize)]
struct TypedPage<'a> {
    #[serde(borrow, default)]
    events: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    service_name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    total_count: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct TypedRow {
    occur_time: i64,
    event_type: String,
    event_info: String,
}

fn parse_events_page(body: &[u8], request: &str) -> Result<EventsPage, SourceError> {
    match typed_events_page(body) {
        Some(page) => Ok(page),
        None => lenient_events_page(body, request),
    }
}

/// The page read through [`TypedPage`]; a row of another shape goes through
/// [`lenient_row`], and a page of another shape (`None`) through [`lenient_events_page`],
/// so both paths read every body alike.
fn typed_events_page(body: &[u8]) -> Option<EventsPage> {
    // serde would also take a JSON array for a struct; the lenient path decides those.
    let is_object = |text: &[u8]| text.trim_ascii_start().first() == Some(&b'{');
    if !is_object(body) {
        return None;
    }
    let page: TypedPage<'_> = serde_json::from_slice(body).ok()?;
    let rows: Vec<EventRow> = page
        .events
        .unwrap_or_default()
        .into_iter()
        .map(|raw| {
            let typed = is_object(raw.get().as_bytes())
                .then(|| serde_json::from_str::<TypedRow>(raw.get()).ok())
                .flatten()
                .filter(|row| (0..=MAX_OCCUR_TIME).contains(&row.occur_time));
            match typed {
                Some(row) => EventRow::Event(RawEvent {
                    occur_time: row.occur_time,
                    event_type: row.event_type,
                    event_info: row.event_info,
                }),
                // A row of `events` is valid JSON: the page parsed.
                None => lenient_row(serde_json::from_str(raw.get()).unwrap_or(Value::Null)),
            }
        })
        .collect();
    let value =
        |raw: Option<&RawValue>| raw.and_then(|r| serde_json::from_str::<Value>(r.get()).ok());
    let total_count = lenient_u64(value(page.total_count).as_ref()).unwrap_or(rows.len() as u64);
    Some(EventsPage {
        service_name: lenient_text(value(page.service_name).as_ref()),
        total_count,
        rows,
    })
}

/// One row of `events`, whatever its shape.
fn lenient_row(mut row: Value) -> EventRow {
    match lenient_ms(row.get("occur_time")) {
        // Before 1970 or after 9999 a time cannot be written as RFC 3339 (nor, before
        // 1970, be paged by `start_time`): the row cannot be placed.
        Some(occur_time) if (0..=MAX_OCCUR_TIME).contains(&occur_time) => {
            let mut field = |name: &str| {
                lenient_text_owned(row.as_object_mut().and_then(|map| map.remove(name)))
            };
            EventRow::Event(RawEvent {
                occur_time,
                event_type: field("event_type"),
                event_info: field("event_info"),
            })
        }
        _ => EventRow::Malformed(quote(&row.to_string())),
    }
}

/// Any body: a page that is not an object, or whose `events` or rows have other shapes.
fn lenient_events_page(body: &[u8], request: &str) -> Result<EventsPage, SourceError> {
    let bad = |message: String| SourceError::BadBody {
        request: request.to_owned(),
        message,
    };
    let mut json: Value = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "{e} (body starts: {})",
            quote(&String::from_utf8_lossy(body))
        ))
    })?;
    let events = match json.get_mut("events").map(Value::take) {
        Some(Value::Array(rows)) => rows,
        None | Some(Value::Null) => Vec::new(),
        Some(_) => return Err(bad("`events` is not an array".to_owned())),
    };
    let rows: Vec<EventRow> = events.into_iter().map(lenient_row).collect();
    // Without total_count the page can only be taken as complete.
    let total_count = lenient_u64(json.get("total_count")).unwrap_or(rows.len() as u64);
    Ok(EventsPage {
        service_name: lenient_text(json.get("service_name")),
        total_count,
        rows,
    })
}

fn parse_services_page(body: &[u8], request: &str) -> Result<ServicesPage, SourceError> {
    let json: Value = serde_json::from_slice(body).map_err(|e| SourceError::BadBody {
        request: request.to_owned(),
        message: e.to_string(),
    })?;
    let services: Vec<ServiceInfo> = json
        .get("services")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|s| {
                    Some(ServiceInfo {
                        service_id: s.get("service_id")?.as_str()?.to_owned(),
                        service_name: lenient_text(s.get("service_name")),
                        status: lenient_text(s.get("status")),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let total_count = lenient_u64(json.get("total_count")).unwrap_or(services.len() as u64);
    Ok(ServicesPage {
        total_count,
        services,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_rows_leniently() {
        let body = br#"{"service_name":"s","total_count":"5","count":5,"events":[
            {"occur_time":1562597251764,"event_type":"normal","event_info":"a"},
            {"occur_time":"1562597251765","event_type":"WARNING","event_info":"b"},
            {"occur_time":1562597251766.0,"event_info":"no type"},
            {"occur_time":"soon","event_type":"normal","event_info":"c"},
            {"event_type":"normal","event_info":"no time"}]}"#;
        let page = parse_events_page(body, "GET /x").unwrap();
        assert_eq!(page.total_count, 5);
        assert_eq!(page.service_name, "s");
        assert_eq!(
            page.rows[1],
            EventRow::Event(RawEvent {
                occur_time: 1562597251765,
                event_type: "WARNING".into(),
                event_info: "b".into()
            })
        );
        assert!(matches!(&page.rows[2], EventRow::Event(e) if e.event_type.is_empty()));
        assert!(matches!(&page.rows[3], EventRow::Malformed(raw) if raw.contains("soon")));
        assert!(matches!(&page.rows[4], EventRow::Malformed(_)));
    }

    #[test]
    fn garbled_body_is_a_retryable_bad_body() {
        let err = parse_events_page(b"{\"events\":[{\"occur_ti", "GET /x").unwrap_err();
        assert!(err.is_retryable());
        assert!(err.to_string().contains("GET /x"));
    }

    /// The typed reading of a page gives what the lenient one gives, for every shape of
    /// body and row; bodies it does not take are left to the lenient path.
    #[test]
    fn the_typed_and_the_lenient_reading_agree() {
        let bodies = [
            r#"{"service_name":"s","total_count":3,"count":3,"events":[
                {"occur_time":1562597251764,"event_type":"normal","event_info":"a \"q\" \u00e9\n"},
                {"event_info":"b","occur_time":1562597251765,"event_type":"abnormal","extra":[1,{"x":2}]},
                {"occur_time":"1562597251766","event_type":"WARNING","event_info":"string time"}]}"#,
            r#"{"total_count":"4","events":[
                {"occur_time":1562597251766.0,"event_info":"no type"},
                {"occur_time":1562597251767,"event_type":5,"event_info":null},
                {"occur_time":1562597251768,"event_type":"a","event_type":"b","event_info":"dup"},
                [1562597251769,"normal","an array row"],
                "a string row",
                {"occur_time":-1,"event_type":"normal","event_info":"before 1970"},
                {"event_type":"normal","event_info":"no time"}]}"#,
            r#"{"service_name":null,"events":null}"#,
            r#"{"service_name":7,"total_count":1.5}"#,
            r#"  {"events":[],"events":[{"occur_time":1,"event_type":"n","event_info":"i"}]}"#,
            r#"{"events":{"not":"an array"}}"#,
            r#"[{"occur_time":1,"event_type":"n","event_info":"i"}]"#,
            r#"["x",5,[]]"#,
            r#"{"events":[{"occur_time":1,"event_type":"n","event_info":"i"}"#,
        ];
        for body in bodies {
            let lenient = lenient_events_page(body.as_bytes(), "GET /x");
            match typed_events_page(body.as_bytes()) {
                Some(typed) => {
                    let lenient = lenient.unwrap_or_else(|e| panic!("{body}: {e}"));
                    assert_eq!(typed.rows, lenient.rows, "{body}");
                    assert_eq!(typed.service_name, lenient.service_name, "{body}");
                    assert_eq!(typed.total_count, lenient.total_count, "{body}");
                }
                None => {
                    let parsed = parse_events_page(body.as_bytes(), "GET /x");
                    assert_eq!(format!("{parsed:?}"), format!("{lenient:?}"), "{body}");
                }
            }
        }
        // The common shape takes the typed path.
        assert!(typed_events_page(bodies[0].as_bytes()).is_some());
        assert!(typed_events_page(bodies[6].as_bytes()).is_none());
    }

    #[test]
    fn times_outside_1970_to_9999_are_malformed_rows() {
        let body = format!(
            r#"{{"total_count":6,"events":[
            {{"occur_time":0,"event_type":"normal","event_info":"epoch"}},
            {{"occur_time":{MAX_OCCUR_TIME},"event_type":"normal","event_info":"last ms of 9999"}},
            {{"occur_time":253402300800000,"event_type":"normal","event_info":"year 10000"}},
            {{"occur_time":-1,"event_type":"normal","event_info":"before 1970"}},
            {{"occur_time":9223372036854775807,"event_type":"normal","event_info":"i64::MAX"}},
            {{"occur_time":1e30,"event_type":"normal","event_info":"beyond i64"}}]}}"#
        );
        let page = parse_events_page(body.as_bytes(), "GET /x").unwrap();
        let placed: Vec<i64> = page
            .rows
            .iter()
            .filter_map(|row| match row {
                EventRow::Event(e) => Some(e.occur_time),
                EventRow::Malformed(_) => None,
            })
            .collect();
        assert_eq!(placed, vec![0, MAX_OCCUR_TIME]);
        for (row, text) in
            page.rows[2..]
                .iter()
                .zip(["year 10000", "before 1970", "i64::MAX", "beyond i64"])
        {
            assert!(
                matches!(row, EventRow::Malformed(raw) if raw.contains(text)),
                "{row:?}"
            );
        }
        assert_eq!(
            record::timestamp_rfc3339(MAX_OCCUR_TIME),
            "9999-12-31T23:59:59.999Z",
            "the last placeable millisecond can be written"
        );
    }
}
