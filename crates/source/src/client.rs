//! The HTTP client for the ModelArts v1 API: credentials on every request
//! (see `auth`), TLS settings, the adaptive request-rate cap, retries with
//! backoff, response-size limit, lenient parsing and error classification.
//!
//! API: "Querying Service Event Logs",
//! `GET /v1/{project_id}/services/{service_id}/events`, and "Obtaining
//! Services", `GET /v1/{project_id}/services`
//! (<https://docs.otc.t-systems.com/modelarts/api-ref/>).

use crate::auth::{Authenticator, Outgoing};
use crate::error::{SourceError, THROTTLING_CODES};
use crate::rate::RateLimiter;
use crate::retry::Backoff;
use crate::settings::SourceSettings;
use aksk::encode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use tracing::{info, warn};

/// How much of a raw row or error body is quoted in logs and errors.
const QUOTE_LIMIT: usize = 300;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub occur_time: i64,
    pub event_type: String,
    pub event_info: String,
}

/// A row of `events[]`: an event, or a row that cannot be placed because it
/// has no usable `occur_time` (kept as truncated raw JSON for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl ModelArtsClient {
    /// Builds the client without touching the network: reads `ca_file` and
    /// the secrets that are files.
    pub fn new(settings: &SourceSettings) -> Result<Self, SourceError> {
        let name = &settings.name;
        let setup = |what: String| SourceError::Setup(format!("source {name}: {what}"));
        // reqwest is built without a default TLS crypto provider so that the
        // project picks one (ring) once; installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Proxies: reqwest reads HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and
        // NO_PROXY (and their lower-case forms) from the environment whenever
        // no proxy is set on the builder. Its `system-proxy` feature, off
        // here (default-features = false), only adds the macOS and Windows
        // system settings; the environment variables are read by hyper-util's
        // matcher regardless (reqwest 0.13 `Matcher::system` →
        // `hyper_util::client::proxy::matcher::Matcher::from_system`).
        let mut builder = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout)
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
        if settings.project_id.is_none() && auth.kind() != "password" {
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
        })
    }

    /// One request that proves the credentials, before the source fans out
    /// to its services: token → `GET services?limit=1`; password → the IAM
    /// login (learning the project id if it is not configured); aksk → a
    /// signed `GET services?limit=1`. Secrets that are files are read again
    /// first. A refusal is [`SourceError::Auth`], not retried; until the next
    /// `authenticate()` (or a change of the secret files) requests fail with
    /// it without presenting the refused credentials again.
    pub async fn authenticate(&self) -> Result<(), SourceError> {
        self.auth.reload()?;
        self.auth.clear_hold();
        if self.auth.kind() == "password" {
            let learned = self.auth.login().await?;
            if self.project_id.is_none() && learned.is_none() {
                return Err(no_project(&self.source));
            }
            return Ok(());
        }
        self.services(0, 1).await.map(drop)
    }

    /// The project id: configured, or learned from the IAM token (empty
    /// until the first login when it is neither).
    pub fn project_id(&self) -> String {
        self.project_id
            .clone()
            .or_else(|| self.auth.learned_project())
            .unwrap_or_default()
    }

    /// `token`, `password` or `aksk`.
    pub fn auth_kind(&self) -> &'static str {
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
            .get(&project_id, &path, &params, Some(service_id))
            .await?;
        let request = describe(&path, "");
        parse_events_page(&body, &request)
    }

    /// One page of the project's services list.
    pub async fn services(&self, offset: u64, limit: u32) -> Result<ServicesPage, SourceError> {
        let project_id = self.project().await?;
        let path = format!("/v1/{}/services", encode(&project_id));
        let params = vec![
            ("limit".to_owned(), limit.to_string()),
            ("offset".to_owned(), offset.to_string()),
        ];
        let body = self.get(&project_id, &path, &params, None).await?;
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
                    return Ok(body);
                }
                Err(error) => error,
            };
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
                self.auth.after_refusal(&error);
                return Err(error);
            }
            let Some(delay) = self.backoff.retry_delay(attempt, &error) else {
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
        let response = self
            .http
            .get(url)
            .headers(headers)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| SourceError::Transport {
                request: request.to_owned(),
                message: error_chain(&e),
            })?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let body = read_body(response, request, self.max_response_bytes).await?;
        if status == 200 {
            return Ok(body);
        }
        let (code, message) = error_fields(&body);
        let message = self.auth.redact(&message);
        let request = request.to_owned();
        let throttled = code
            .as_deref()
            .is_some_and(|c| THROTTLING_CODES.contains(&c));
        Err(match status {
            429 | 500..=599 => SourceError::Server {
                request,
                status,
                code,
                message,
                retry_after,
            },
            401 | 403 => SourceError::Auth {
                request,
                auth: self.auth.kind(),
                status,
                code,
                message,
            },
            _ if throttled => SourceError::Server {
                request,
                status,
                code,
                message,
                retry_after,
            },
            404 if service_id.is_some() => SourceError::ServiceNotFound {
                request,
                service_id: service_id.unwrap_or_default().to_owned(),
                status,
                code,
                message,
            },
            _ => SourceError::Rejected {
                request,
                status,
                code,
                message,
            },
        })
    }
}

fn no_project(source: &str) -> SourceError {
    SourceError::Setup(format!(
        "source {source}: the IAM token names no project; set project_id"
    ))
}

/// The server's `Retry-After` in seconds (the HTTP-date form is not used by
/// the API gateway).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
}

/// Reads the body, refusing more than `limit` bytes.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    request: &str,
    limit: u64,
) -> Result<Vec<u8>, SourceError> {
    let too_large = || SourceError::TooLarge {
        request: request.to_owned(),
        limit,
    };
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if (body.len() + chunk.len()) as u64 > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(SourceError::Transport {
                    request: request.to_owned(),
                    message: format!(
                        "body cut off after {} bytes: {}",
                        body.len(),
                        error_chain(&e)
                    ),
                });
            }
        }
    }
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

/// The error and its causes on one line (reqwest's top-level message alone
/// is rarely enough to act on).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Cuts text for quoting in a log line or error message.
pub fn quote(text: &str) -> String {
    if text.len() <= QUOTE_LIMIT {
        return text.to_owned();
    }
    let mut end = QUOTE_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// `error_code` and `error_msg` of an error body; the ModelArts/APIG shape,
/// the IAM (Keystone) shape, or, for a non-JSON page, the start of its text.
pub(crate) fn error_fields(body: &[u8]) -> (Option<String>, String) {
    let text = String::from_utf8_lossy(body);
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        return (None, quote(&flat));
    };
    let field = |v: &Value, keys: &[&str]| {
        keys.iter().find_map(|k| v.get(*k)).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let code = field(&json, &["error_code", "errorCode", "code"]);
    let message = field(&json, &["error_msg", "errorMsg", "message"])
        .or_else(|| {
            json.get("error")
                .and_then(|e| field(e, &["message", "title"]))
        })
        .unwrap_or_else(|| quote(&text));
    (code, quote(&message))
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

fn parse_events_page(body: &[u8], request: &str) -> Result<EventsPage, SourceError> {
    let bad = |message: String| SourceError::BadBody {
        request: request.to_owned(),
        message,
    };
    let json: Value = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "{e} (body starts: {})",
            quote(&String::from_utf8_lossy(body))
        ))
    })?;
    let events = match json.get("events") {
        Some(Value::Array(rows)) => rows,
        None | Some(Value::Null) => &Vec::new(),
        Some(_) => return Err(bad("`events` is not an array".to_owned())),
    };
    let rows: Vec<EventRow> = events
        .iter()
        .map(|row| match lenient_ms(row.get("occur_time")) {
            Some(occur_time) => EventRow::Event(RawEvent {
                occur_time,
                event_type: lenient_text(row.get("event_type")),
                event_info: lenient_text(row.get("event_info")),
            }),
            None => EventRow::Malformed(quote(&row.to_string())),
        })
        .collect();
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

    #[test]
    fn error_fields_read_every_shape() {
        assert_eq!(
            error_fields(br#"{"error_code":"ModelArts.3502","error_msg":"not found"}"#),
            (Some("ModelArts.3502".into()), "not found".into())
        );
        assert_eq!(
            error_fields(
                br#"{"error":{"code":401,"message":"bad password","title":"Unauthorized"}}"#
            )
            .1,
            "bad password"
        );
        let (code, msg) = error_fields(b"<html>\n<h1>502 Bad Gateway</h1></html>");
        assert_eq!(code, None);
        assert!(msg.contains("502 Bad Gateway"));
    }

    #[test]
    fn quote_cuts_long_text_on_a_char_boundary() {
        let long = "ä".repeat(1000);
        let q = quote(&long);
        assert!(q.len() < 400 && q.ends_with("(2000 bytes)"));
    }
}
