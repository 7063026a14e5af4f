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
    /// Where the project id in the path was configured (`sources.NAME.project_id (line
    /// N)`), named when the server says it is not the token's project.
    pub project_key: Option<&'a str>,
}

/// Who a request goes to, as errors name it when there is no answer: the base URL and
/// the config keys of the URL and of the timeouts.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The base URL (endpoint or IAM endpoint).
    pub url: String,
    /// The config key the URL came from, with its line when known.
    pub origin: String,
    pub connect_timeout: Duration,
    /// `sources.NAME.connect_timeout`.
    pub connect_key: String,
    pub request_timeout: Duration,
    /// `sources.NAME.request_timeout`.
    pub request_key: String,
}

/// Sends a request and reads its answer whole (at most `limit` bytes).
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    described: &str,
    limit: u64,
    peer: &Peer,
) -> Result<(Answer, HeaderMap), SourceError> {
    let response = request
        .send()
        .await
        .map_err(|e| transport(described, &e, peer))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = read_body(response, described, limit, peer).await?;
    Ok((
        Answer {
            status,
            retry_after: retry_after(&headers),
            body,
        },
        headers,
    ))
}

/// A request that got no answer: no connection ([`SourceError::Unreachable`]: refused,
/// unknown host, `connect_timeout`), no answer in time ([`SourceError::TimedOut`]), or
/// another transport failure (reset).
pub(crate) fn transport(request: &str, error: &reqwest::Error, peer: &Peer) -> SourceError {
    if error.is_connect() {
        let cause = if error.is_timeout() {
            format!(
                "no connection within {} ({})",
                humantime::format_duration(peer.connect_timeout),
                peer.connect_key
            )
        } else {
            cause_chain(error)
        };
        return SourceError::Unreachable {
            request: request.to_owned(),
            url: peer.url.clone(),
            origin: peer.origin.clone(),
            cause,
        };
    }
    if error.is_timeout() {
        return SourceError::TimedOut {
            request: request.to_owned(),
            url: peer.url.clone(),
            key: peer.request_key.clone(),
            after: peer.request_timeout,
        };
    }
    SourceError::Transport {
        request: request.to_owned(),
        message: error_chain(error),
    }
}

/// The causes of `error` without its own message: reqwest's says "error sending request
/// for url (…)", and the URL is named already.
fn cause_chain(error: &dyn std::error::Error) -> String {
    match error.source() {
        Some(cause) => error_chain(cause),
        None => error.to_string(),
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
    let hint = hint(&refusal, status, code.as_deref());
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
            hint,
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
            hint,
        },
    }
}

/// The code of "the project id in the URL does not match the token" (403, or 400).
const PROJECT_MISMATCH: &str = "ModelArts.0210";

/// What to change, when the answer tells: a project id that is not the token's names its
/// key; a static token refused with 401 has most likely expired.
fn hint(refusal: &Refusal<'_>, status: u16, code: Option<&str>) -> Option<String> {
    if code == Some(PROJECT_MISMATCH) {
        let key = refusal.project_key.unwrap_or("project_id");
        return Some(format!(
            "the project id is not the one the token is scoped to: check {key}"
        ));
    }
    if status == 401 && refusal.auth == AuthKind::Token {
        return Some(
            "IAM tokens expire 24 h after they are issued and the runner cannot renew a \
             static one: put a fresh token in `token`/`token_file`, or use auth type \
             \"password\" or \"aksk\", which need no renewal by hand"
                .to_owned(),
        );
    }
    None
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
    peer: &Peer,
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
            Err(e) if e.is_timeout() => return Err(transport(request, &e, peer)),
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
            project_key: Some("sources.s.project_id (line 3)"),
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
    fn refusals_carry_a_hint_when_the_code_or_the_kind_tells_what_to_change() {
        let mismatch = r#"{"error_code":"ModelArts.0210","error_msg":"no match"}"#;
        for status in [400, 403] {
            let error = answer(status, mismatch).error(refusal(None), str::to_owned);
            assert!(
                error
                    .to_string()
                    .contains("check sources.s.project_id (line 3)"),
                "{error}"
            );
        }
        let token = Refusal {
            auth: AuthKind::Token,
            ..refusal(None)
        };
        let expired = answer(401, r#"{"error_code":"APIG.0307","error_msg":"update"}"#)
            .error(token, str::to_owned)
            .to_string();
        assert!(expired.contains("IAM tokens expire 24 h"), "{expired}");
        assert_eq!(expired.matches("authentication (token) failed").count(), 1);
        // AK/SK refused: no token hint; a 403 of a token source is not an expiry.
        let aksk = answer(401, r#"{"error_code":"APIG.0301","error_msg":"sig"}"#)
            .error(refusal(None), str::to_owned);
        assert!(!aksk.to_string().contains("expire"), "{aksk}");
        let forbidden = answer(403, r#"{"error_code":"ModelArts.0203","error_msg":"no"}"#)
            .error(token, str::to_owned);
        assert!(!forbidden.to_string().contains("expire"), "{forbidden}");
    }

    #[test]
    fn an_echoed_secret_is_scrubbed_before_it_is_kept() {
        let error = answer(401, r#"{"error_msg":"bad token tok-123"}"#)
            .error(refusal(None), |m| m.replace("tok-123", "****"));
        assert!(!format!("{error} {error:?}").contains("tok-123"));
    }
}
