//! The HTTP client for the ModelArts v1 API: auth header, request-rate cap,
//! retries with backoff, response-size limit, lenient parsing and error
//! classification.
//!
//! API: "Querying Service Event Logs",
//! `GET /v1/{project_id}/services/{service_id}/events`, and "Obtaining
//! Services", `GET /v1/{project_id}/services`
//! (<https://docs.otc.t-systems.com/modelarts/api-ref/>).

use crate::error::SourceError;
use crate::rate::RateLimiter;
use crate::retry::Backoff;
use crate::secret::Secret;
use crate::settings::{AuthSettings, SecretSource, SourceSettings};
use serde_json::Value;
use std::time::Duration;
use tracing::warn;

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
    http: reqwest::Client,
    endpoint: String,
    project_id: String,
    token: Secret,
    limiter: RateLimiter,
    backoff: Backoff,
    max_response_bytes: u64,
}

impl ModelArtsClient {
    /// Builds the client. Reads `token_file` (the only I/O here).
    pub fn new(settings: &SourceSettings) -> Result<Self, SourceError> {
        // reqwest is built without a default TLS crypto provider so that the
        // project picks one (ring) once; installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout)
            .user_agent(concat!(
                "modelarts-event-shipper/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| {
                SourceError::Setup(format!(
                    "source {}: cannot build the HTTP client: {e}",
                    settings.name
                ))
            })?;
        // Only static tokens so far; IAM password and AK/SK come next.
        let token = match &settings.auth {
            AuthSettings::Token { token } => read_secret(&settings.name, "token_file", token)?,
            other => {
                return Err(SourceError::Setup(format!(
                    "source {}: auth type {} is not supported yet",
                    settings.name,
                    other.kind()
                )));
            }
        };
        let project_id = settings.project_id.clone().ok_or_else(|| {
            SourceError::Setup(format!("source {}: project_id is required", settings.name))
        })?;
        Ok(ModelArtsClient {
            http,
            endpoint: settings.endpoint.trim_end_matches('/').to_owned(),
            project_id,
            token,
            limiter: RateLimiter::new(settings.max_requests_per_second),
            backoff: Backoff {
                initial: settings.retry_initial_backoff,
                max: settings.retry_max_backoff,
                max_retries: settings.max_retries,
            },
            max_response_bytes: settings.max_response_bytes,
        })
    }

    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// One page of a service's events, retried on 429/5xx/transport errors.
    pub async fn service_events(
        &self,
        service_id: &str,
        query: &EventsQuery,
    ) -> Result<EventsPage, SourceError> {
        let path = format!(
            "/v1/{}/services/{}/events",
            encode(&self.project_id),
            encode(service_id)
        );
        let mut params: Vec<(&str, String)> = vec![
            ("limit", query.limit.to_string()),
            ("offset", query.offset.to_string()),
            ("order", "asc".to_owned()),
            ("sort_by", "occur_time".to_owned()),
        ];
        if let Some(start) = query.start_time {
            params.push(("start_time", start.to_string()));
        }
        if let Some(end) = query.end_time {
            params.push(("end_time", end.to_string()));
        }
        if let Some(kind) = &query.event_type {
            params.push(("event_type", kind.clone()));
        }
        let body = self.get(&path, params, Some(service_id)).await?;
        let request = describe(&path, "");
        parse_events_page(&body, &request)
    }

    /// One page of the project's services list.
    pub async fn services(&self, offset: u64, limit: u32) -> Result<ServicesPage, SourceError> {
        let path = format!("/v1/{}/services", encode(&self.project_id));
        let params = vec![("limit", limit.to_string()), ("offset", offset.to_string())];
        let body = self.get(&path, params, None).await?;
        parse_services_page(&body, &describe(&path, ""))
    }

    /// GET with the rate cap and retries; returns the body of a 200.
    async fn get(
        &self,
        path: &str,
        mut params: Vec<(&str, String)>,
        service_id: Option<&str>,
    ) -> Result<Vec<u8>, SourceError> {
        // The query on the wire is the canonical one (sorted, RFC 3986
        // encoded), the form that AK/SK signing needs.
        params.sort();
        let query = params
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let request = describe(path, &query);
        let url = format!("{}{}?{}", self.endpoint, path, query);
        let mut attempt = 0u32;
        loop {
            self.limiter.acquire().await;
            match self.get_once(&url, &request, service_id).await {
                Ok(body) => return Ok(body),
                Err(error) if error.is_retryable() && attempt < self.backoff.max_retries => {
                    let delay = self
                        .backoff
                        .delay(attempt, error.retry_after(), fastrand::f64());
                    warn!(
                        service_id = service_id.unwrap_or("-"),
                        attempt = attempt + 1,
                        delay_ms = delay.as_millis() as u64,
                        error = %error,
                        "Request failed; retrying."
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn get_once(
        &self,
        url: &str,
        request: &str,
        service_id: Option<&str>,
    ) -> Result<Vec<u8>, SourceError> {
        let response = self
            .http
            .get(url)
            .header("X-Auth-Token", self.token.expose())
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| SourceError::Transport {
                request: request.to_owned(),
                message: error_chain(&e),
            })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|secs| secs.is_finite() && *secs >= 0.0)
            .map(Duration::from_secs_f64);
        let body = self.read_body(response, request).await?;
        if status == 200 {
            return Ok(body);
        }
        let (code, message) = error_fields(&body);
        let request = request.to_owned();
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
                status,
                code,
                message,
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

    /// Reads the body, refusing more than `max_response_bytes`.
    async fn read_body(
        &self,
        mut response: reqwest::Response,
        request: &str,
    ) -> Result<Vec<u8>, SourceError> {
        let too_large = || SourceError::TooLarge {
            request: request.to_owned(),
            limit: self.max_response_bytes,
        };
        if response
            .content_length()
            .is_some_and(|len| len > self.max_response_bytes)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if (body.len() + chunk.len()) as u64 > self.max_response_bytes {
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
}

/// The secret's value: inline, or read from its file (trimmed).
fn read_secret(source: &str, key: &str, secret: &SecretSource) -> Result<Secret, SourceError> {
    match secret {
        SecretSource::Inline(value) => Ok(value.clone()),
        SecretSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                SourceError::Setup(format!(
                    "source {source}: cannot read auth {key} {}: {e}",
                    path.display()
                ))
            })?;
            let text = text.trim();
            if text.is_empty() {
                return Err(SourceError::Setup(format!(
                    "source {source}: auth {key} {} is empty",
                    path.display()
                )));
            }
            Ok(Secret::new(text))
        }
    }
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
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// RFC 3986 percent-encoding: only `A-Z a-z 0-9 - _ . ~` stay as they are.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
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
fn error_fields(body: &[u8]) -> (Option<String>, String) {
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
    fn encodes_like_rfc3986() {
        assert_eq!(encode("a b/ä+1~x*"), "a%20b%2F%C3%A4%2B1~x%2A");
        assert_eq!(encode("35de3ca9-1bca_4ae7.9"), "35de3ca9-1bca_4ae7.9");
    }

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
