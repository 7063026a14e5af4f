//! Reading one HTTP answer of ModelArts or IAM, and the one place a status becomes a
//! [`SourceError`]: the body read up to `max_response_bytes`, `Retry-After`, the error
//! body's code and message (ModelArts/API gateway and IAM shapes, or an HTML page), and
//! the classification that decides retries (429/5xx and throttling codes), refusals of
//! credentials (401/403), a missing service (404 on a service's events) and the rest.
//!
//! The client (`client`) and the IAM login (`auth::iam`) both read their answers here, so
//! that a status means the same thing wherever it comes from.
//!
//! APIs: "Error Codes" of ModelArts (<https://docs.otc.t-systems.com/modelarts/api-ref/>)
//! and of IAM
//! (<https://docs.otc.t-systems.com/identity-access-management/api-ref/appendix/error_codes.html>).

use crate::error::{SourceError, THROTTLING_CODES};
use crate::settings::AuthKind;
use reqwest::header::HeaderMap;
use serde_json::Value;
use std::time::Duration;

/// How much of a raw row or error body is quoted in logs and errors.
const QUOTE_LIMIT: usize = 300;

/// A whole answer: its status, `Retry-After` and body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

/// What a refusal is about, for [`Answer::error`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusal<'a> {
    /// `METHOD path?query`, never a credential.
    pub request: &'a str,
    /// The credentials the request carried (named in an authentication error).
    pub auth: AuthKind,
    /// The service whose events were asked: a 404 then means it does not exist.
    pub service_id: Option<&'a str>,
}

/// Sends a request and reads its answer whole (at most `limit` bytes).
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    described: &str,
    limit: u64,
) -> Result<(Answer, HeaderMap), SourceError> {
    let response = request.send().await.map_err(|e| transport(described, &e))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = read_body(response, described, limit).await?;
    Ok((
        Answer {
            status,
            retry_after: retry_after(&headers),
            body,
        },
        headers,
    ))
}

/// A request that got no answer (refused, reset, timed out).
pub(crate) fn transport(request: &str, error: &reqwest::Error) -> SourceError {
    SourceError::Transport {
        request: request.to_owned(),
        message: error_chain(error),
    }
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error this (unsuccessful) answer means; `scrub` blanks out any credential of
    /// ours the server may have echoed in its message.
    pub fn error(&self, refusal: Refusal<'_>, scrub: impl Fn(&str) -> String) -> SourceError {
        let (code, message) = error_fields(&self.body);
        classify(
            refusal,
            self.status,
            code,
            scrub(&message),
            self.retry_after,
        )
    }
}

/// The one status → [`SourceError`] classification.
fn classify(
    refusal: Refusal<'_>,
    status: u16,
    code: Option<String>,
    message: String,
    retry_after: Option<Duration>,
) -> SourceError {
    let request = refusal.request.to_owned();
    let throttled = code
        .as_deref()
        .is_some_and(|c| THROTTLING_CODES.contains(&c));
    match (status, refusal.service_id) {
        (429 | 500..=599, _) => SourceError::Server {
            request,
            status,
            code,
            message,
            retry_after,
        },
        (401 | 403, _) => SourceError::Auth {
            request,
            auth: refusal.auth,
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
        (404, Some(service_id)) => SourceError::ServiceNotFound {
            request,
            service_id: service_id.to_owned(),
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
    }
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
async fn read_body(
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }

    fn refusal(service_id: Option<&str>) -> Refusal<'_> {
        Refusal {
            request: "GET /x",
            auth: AuthKind::Aksk,
            service_id,
        }
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

    #[test]
    fn statuses_are_classified_once_for_every_caller() {
        let same = |e: &SourceError| e.to_string();
        let server = answer(503, r#"{"error_code":"APIG.0201","error_msg":"busy"}"#)
            .error(refusal(None), str::to_owned);
        assert!(
            server.is_retryable() && !server.is_throttled(),
            "{server:?}"
        );
        let throttled = answer(400, r#"{"error_code":"APIG.0308","error_msg":"slow"}"#)
            .error(refusal(None), str::to_owned);
        assert!(throttled.is_retryable() && throttled.is_throttled());
        let auth = answer(401, r#"{"error_code":"APIG.0301","error_msg":"sig"}"#)
            .error(refusal(Some("svc")), str::to_owned);
        assert!(
            matches!(
                &auth,
                SourceError::Auth {
                    auth: AuthKind::Aksk,
                    status: 401,
                    ..
                }
            ),
            "{auth:?}"
        );
        assert!(!auth.is_retryable());
        let missing = answer(404, r#"{"error_code":"ModelArts.3502","error_msg":"gone"}"#)
            .error(refusal(Some("svc")), str::to_owned);
        assert!(matches!(missing, SourceError::ServiceNotFound { .. }));
        let rejected = answer(404, "{}").error(refusal(None), str::to_owned);
        assert!(
            matches!(rejected, SourceError::Rejected { .. }),
            "{}",
            same(&rejected)
        );
    }

    #[test]
    fn an_echoed_secret_is_scrubbed_before_it_is_kept() {
        let error = answer(401, r#"{"error_msg":"bad token tok-123"}"#)
            .error(refusal(None), |m| m.replace("tok-123", "****"));
        assert!(!format!("{error} {error:?}").contains("tok-123"));
    }
}
