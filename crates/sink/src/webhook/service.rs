//! Posting one message and reading the platform's answer
//! (`shared/reference/sink-wire-contracts.md` §3–4).
//!
//! Every attempt waits for the sink's rate limit, is signed with the time of that
//! attempt (a retry an hour later is not refused for a stale timestamp) and is sent to
//! the URL as configured, byte for byte (DingTalk: with `timestamp` and `sign` added to
//! its query).
//!
//! # Answers
//!
//! [`read_answer`] sorts every answer into one of five outcomes:
//!
//! | outcome | what follows | Slack | Teams | Feishu (`code`) | DingTalk (`errcode`) | WeCom (`errcode`) | generic |
//! |---|---|---|---|---|---|---|---|
//! | accepted | the message's records are delivered | 2xx (`ok`) | 2xx (202) | 0 | 0 | 0 | 2xx |
//! | refused | its records go to the dead-letter file | 400 `invalid_payload`, `no_text`, `invalid_blocks`, `msg_too_long`; 413 | 400, 413, 422 | 9499, 10208, 19002 | 300001 `param error`, 40035, 43004, 460101 | 40008, 40058, 44004, 45002 | 400, 413, 415, 422 |
//! | throttled | retried after `Retry-After` or `rate_limit_penalty`; no post of the sink before then | 429 | 429 | 11232, HTTP 429 | 130101, 410100 | 45009 | 429 |
//! | retry | retried with backoff | 5xx | 5xx | 5xx, a 200 that is not Feishu's JSON | 310000 `invalid timestamp` (signed again), 5xx | 5xx | 408, 5xx |
//! | fatal | the sink fails for the run: nothing dead-lettered, positions kept | 403 `invalid_token`, 404 `no_service`, `channel_not_found`, 410 `channel_is_archived`, ... | 401, 403, 404, 410 | 19001 (token), 19021 (signature), 19022 (IP), 19024 (keyword), any other code | 300001/300005 `token is not exist`, 310000 (signature, keyword, IP), any other code | 93000 (URL), any other code | 401, 403, 404, 410 (Standard Webhooks: disable the endpoint) |
//!
//! An error code the table does not know fails the sink rather than dead-lettering:
//! when the platform refuses something about the webhook itself, every message would be
//! refused the same way, and positions that stay are easier to resume from than a
//! dead-letter file full of alerts. Redirects are not followed (3xx is fatal).
//!
//! # Secrets
//!
//! The URL (its path and query), the signing secret and the signature never appear in
//! an error, a reason or a log: errors name `POST scheme://host` only, and any of those
//! values a platform echoes back in its answer is replaced by `****`.

use super::config::{Format, Signing, WebhookConfig, check_url};
use super::rate_limit::RateLimiter;
use super::request_builder::{Body, Message};
use super::signature;
use crate::SinkError;
use crate::http::response::{excerpt, retry_after};
use crate::http::{HttpClient, HttpRequest, HttpResponse};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use secret::{Secret, SecretSource};
use serde_json::Value;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::debug;

/// What became of one post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    Accepted,
    /// The platform refused this message as such (too large, bad payload).
    Refused {
        reason: String,
        status: Option<u16>,
    },
}

/// What an answer means (see the [module documentation](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Refused {
        reason: String,
    },
    Throttled {
        reason: String,
        wait: Option<Duration>,
    },
    Retry {
        reason: String,
        wait: Option<Duration>,
    },
    Fatal {
        reason: String,
    },
}

/// The signing secret, read.
enum Key {
    Standard(Vec<u8>),
    GitHub(Secret),
    Feishu(Secret),
    DingTalk(Secret),
}

/// The transport of one webhook sink.
pub struct WebhookService {
    sink: String,
    format: Format,
    client: HttpClient,
    url: Url,
    /// `POST scheme://host[:port]`, for errors.
    what: String,
    key: Option<Key>,
    limiter: RateLimiter,
    penalty: Duration,
    /// Values replaced by `****` in every error and reason, longest first.
    secrets: Vec<String>,
}

impl fmt::Debug for WebhookService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookService")
            .field("sink", &self.sink)
            .field("format", &self.format)
            .field("endpoint", &self.what)
            .field("signed", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

impl WebhookService {
    /// Reads the URL and secret (files are read now) and builds the client. No network.
    pub async fn new(sink: &str, config: &WebhookConfig) -> Result<WebhookService, SinkError> {
        let url_text = read_secret(sink, &config.url, "url").await?;
        let url = check_url(url_text.expose(), config.format, config.signing.is_some()).map_err(
            |why| {
                let location = match &config.url {
                    SecretSource::File(path) => format!("url_file {}: the URL", path.display()),
                    SecretSource::Inline(_) => "url".to_owned(),
                };
                SinkError::permanent(sink, format!("{location} {why}"))
            },
        )?;
        let mut secrets = vec![url.as_str().to_owned(), url_text.expose().to_owned()];
        let key = match &config.signing {
            None => None,
            Some(signing) => {
                let secret = read_secret(sink, signing.secret(), "secret").await?;
                secrets.push(secret.expose().to_owned());
                Some(match signing {
                    Signing::Standard(source) => {
                        Key::Standard(signature::standard_key(secret.expose()).map_err(|why| {
                            SinkError::permanent(
                                sink,
                                format!("{}: the secret {why}", secret_location(source, "secret")),
                            )
                        })?)
                    }
                    Signing::GitHub(_) => Key::GitHub(secret),
                    Signing::Feishu(_) => Key::Feishu(secret),
                    Signing::DingTalk(_) => Key::DingTalk(secret),
                })
            }
        };
        let client = HttpClient::build_for(sink, &config.http, &[&url]).await?;
        if url.path().len() > 1 {
            secrets.push(url.path().to_owned());
        }
        if let Some(query) = url.query() {
            secrets.push(query.to_owned());
        }
        // The parts that hold the key (Slack's last segments, `access_token`, `key`,
        // `sig`), also when an answer quotes them alone; words such as `webhook` or
        // `services` are left readable.
        let keylike = |part: &str| {
            part.len() >= 12 || (part.len() >= 6 && part.bytes().any(|b| b.is_ascii_digit()))
        };
        secrets.extend(
            url.path_segments()
                .into_iter()
                .flatten()
                .filter(|s| keylike(s))
                .map(str::to_owned),
        );
        secrets.extend(
            url.query_pairs()
                .map(|(_, value)| value.into_owned())
                .filter(|v| keylike(v)),
        );
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Ok(WebhookService {
            sink: sink.to_owned(),
            format: config.format,
            what: format!("POST {}", url.origin().ascii_serialization()),
            client,
            url,
            key,
            limiter: RateLimiter::new(sink, config.rate_limits.clone()),
            penalty: config.rate_limit_penalty,
            secrets,
        })
    }

    /// `scheme://host[:port]` of the URL.
    pub fn origin(&self) -> String {
        self.url.origin().ascii_serialization()
    }

    /// Posts `message`: `Ok` when the platform took it or refused it as such; an error
    /// when it should be tried again (retryable) or the sink cannot post (permanent).
    pub async fn post(&self, message: &Message) -> Result<Posted, SinkError> {
        let permit = self.limiter.acquire().await;
        let request = self.request(message, SystemTime::now())?;
        debug!(sink = %self.sink, message = %message.id, records = message.indices.len(),
            bytes = request.body.len(), "Posting a message.");
        let answer = self.client.send_raw(request).await;
        // The post counts for the rate limit from its answer on.
        drop(permit);
        let answer = answer.map_err(|e| self.scrub_error(e))?;
        let status = answer.status.as_u16();
        match read_answer(self.format, &answer, SystemTime::now()) {
            Outcome::Accepted => Ok(Posted::Accepted),
            Outcome::Refused { reason } => Ok(Posted::Refused {
                reason: self.scrub(&format!(
                    "{} refused the message: {reason}",
                    self.platform()
                )),
                status: Some(status),
            }),
            Outcome::Throttled { reason, wait } => {
                let wait = wait.unwrap_or(self.penalty);
                self.limiter.block_until(tokio::time::Instant::now() + wait);
                Err(SinkError::retryable(
                    &self.sink,
                    self.scrub(&format!(
                        "{}: {} says the sink posts too fast; no post before {} from now: {reason}",
                        self.what,
                        self.platform(),
                        humantime::format_duration(wait)
                    )),
                )
                .with_status(status)
                .with_retry_after(Some(wait)))
            }
            Outcome::Retry { reason, wait } => {
                if let Some(wait) = wait {
                    self.limiter.block_until(tokio::time::Instant::now() + wait);
                }
                Err(SinkError::retryable(
                    &self.sink,
                    self.scrub(&format!("{}: {reason}", self.what)),
                )
                .with_status(status)
                .with_retry_after(wait))
            }
            Outcome::Fatal { reason } => Err(SinkError::permanent(
                &self.sink,
                self.scrub(&format!(
                    "{}: {} refuses the webhook itself, so no message can be posted (check the \
                     URL, the secret and the bot's security settings): {reason}",
                    self.what,
                    self.platform()
                )),
            )
            .with_status(status)),
        }
    }

    fn platform(&self) -> &'static str {
        match self.format {
            Format::Json => "the endpoint",
            Format::Slack => "Slack",
            Format::Teams => "Teams",
            Format::Feishu => "Feishu",
            Format::DingTalk => "DingTalk",
            Format::WeCom => "WeCom",
        }
    }

    /// The request for `message`, signed at `now`.
    fn request(&self, message: &Message, now: SystemTime) -> Result<HttpRequest, SinkError> {
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let seconds = i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX);
        let millis = i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX);
        let mut url = self.url.clone();
        let body = match (&self.key, &message.body) {
            (Some(Key::Feishu(secret)), Body::Json(Value::Object(fields))) => {
                let mut fields = fields.clone();
                fields.insert("timestamp".to_owned(), Value::String(seconds.to_string()));
                fields.insert(
                    "sign".to_owned(),
                    Value::String(signature::feishu(secret.expose(), seconds)),
                );
                Value::Object(fields).to_string().into_bytes()
            }
            (_, body) => body.bytes(),
        };
        if let Some(Key::DingTalk(secret)) = &self.key {
            let sign = signature::query_encode(&signature::dingtalk(secret.expose(), millis));
            let signed = format!("{}&timestamp={millis}&sign={sign}", self.url.as_str());
            url = Url::parse(&signed).map_err(|_| {
                SinkError::permanent(
                    &self.sink,
                    format!("{}: cannot add the signature to the URL", self.what),
                )
            })?;
        }
        let content_type = match self.format {
            Format::DingTalk | Format::WeCom => "application/json; charset=utf-8",
            _ => "application/json",
        };
        let mut request = HttpRequest::post(url, HeaderValue::from_static(content_type), body);
        if self.format == Format::Json {
            let header = |name: &'static str, value: String| {
                HeaderValue::from_str(&value)
                    .map(|v| (HeaderName::from_static(name), v))
                    .map_err(|_| {
                        SinkError::permanent(
                            &self.sink,
                            format!("{}: {name} is not a legal header value", self.what),
                        )
                    })
            };
            let mut headers = vec![
                header("webhook-id", message.id.clone())?,
                // An RFC 8941 sf-string, as draft-ietf-httpapi-idempotency-key-header has it.
                header("idempotency-key", format!("\"{}\"", message.id))?,
            ];
            match &self.key {
                Some(Key::Standard(key)) => {
                    headers.push(header("webhook-timestamp", seconds.to_string())?);
                    let mut value = header(
                        "webhook-signature",
                        signature::standard(key, &message.id, seconds, &request.body),
                    )?;
                    value.1.set_sensitive(true);
                    headers.push(value);
                }
                Some(Key::GitHub(secret)) => {
                    let mut value = header(
                        "x-hub-signature-256",
                        signature::github(secret.expose(), &request.body),
                    )?;
                    value.1.set_sensitive(true);
                    headers.push(value);
                }
                _ => {}
            }
            for (name, value) in headers {
                request = request.with_header(name, value);
            }
        }
        Ok(request)
    }

    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if !secret.is_empty() && text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "****");
            }
        }
        text
    }

    fn scrub_error(&self, mut error: SinkError) -> SinkError {
        error.message = self.scrub(&error.message);
        error
    }
}

/// The secret of `source`, read; errors name the key and the path, never the value.
async fn read_secret(sink: &str, source: &SecretSource, key: &str) -> Result<Secret, SinkError> {
    source.read().await.map_err(|e| {
        SinkError::permanent(
            sink,
            format!("cannot read {}: {e}", secret_location(source, key)),
        )
        .with_source(e)
    })
}

fn secret_location(source: &SecretSource, key: &str) -> String {
    match source {
        SecretSource::File(path) => format!("{key}_file {}", path.display()),
        SecretSource::Inline(_) => key.to_owned(),
    }
}

/// What `answer` means for a message of `format`.
pub fn read_answer(format: Format, answer: &HttpResponse, now: SystemTime) -> Outcome {
    let status = answer.status;
    let wait = retry_after(&answer.headers, now);
    let body = excerpt(&answer.body);
    match format {
        Format::Json | Format::Teams => {
            if status.is_success() {
                return Outcome::Accepted;
            }
            let reason = match teams_error(&answer.body) {
                Some(error) if format == Format::Teams => error,
                _ => body,
            };
            by_status(status, reason, wait)
        }
        Format::Slack => {
            if status.is_success() {
                return Outcome::Accepted;
            }
            let code = String::from_utf8_lossy(&answer.body).trim().to_owned();
            match code.as_str() {
                "invalid_payload"
                | "no_text"
                | "invalid_blocks"
                | "invalid_blocks_format"
                | "msg_too_long"
                | "too_many_attachments"
                | "invalid_attachments" => Outcome::Refused { reason: body },
                "invalid_token"
                | "no_service"
                | "no_team"
                | "team_disabled"
                | "channel_not_found"
                | "channel_is_archived"
                | "action_prohibited"
                | "posting_to_general_channel_denied"
                | "user_not_found" => Outcome::Fatal { reason: body },
                "rate_limited" => Outcome::Throttled { reason: body, wait },
                _ => by_status(status, body, wait),
            }
        }
        Format::Feishu | Format::DingTalk | Format::WeCom => {
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                return by_status(status, body, wait);
            }
            let Some((code, message)) = business_code(format, &answer.body) else {
                if status.is_success() {
                    // A gateway's page, a cut answer: the post may or may not have landed.
                    return Outcome::Retry {
                        reason: format!("an answer that is not the platform's JSON: {body}"),
                        wait,
                    };
                }
                return by_status(status, body, wait);
            };
            if code == 0 && status.is_success() {
                return Outcome::Accepted;
            }
            let reason = format!("code {code}: {message}");
            match format {
                Format::Feishu => feishu_code(code, reason),
                Format::DingTalk => dingtalk_code(code, &message, reason),
                _ => wecom_code(code, reason),
            }
        }
    }
}

/// What an HTTP status means when the platform said nothing more precise.
fn by_status(status: StatusCode, reason: String, wait: Option<Duration>) -> Outcome {
    let reason = format!("HTTP {}: {reason}", status.as_u16());
    match status.as_u16() {
        408 => Outcome::Retry { reason, wait },
        429 => Outcome::Throttled { reason, wait },
        501 => Outcome::Fatal { reason },
        500..=599 => Outcome::Retry { reason, wait },
        400 | 413 | 415 | 422 => Outcome::Refused { reason },
        300..=399 => Outcome::Fatal {
            reason: format!("{reason} (redirects are not followed: set the final URL)"),
        },
        _ => Outcome::Fatal { reason },
    }
}

/// Teams' `{"error":{"code":"…","message":"…"}}` as `code: message`.
fn teams_error(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?;
    let code = error.get("code").and_then(Value::as_str).unwrap_or("");
    let message = error.get("message").and_then(Value::as_str).unwrap_or("");
    Some(excerpt(format!("{code}: {message}").as_bytes()))
}

/// The business code and message of a Feishu (`code`/`msg`, or the older
/// `StatusCode`/`StatusMessage`), DingTalk or WeCom (`errcode`/`errmsg`) answer.
fn business_code(format: Format, body: &[u8]) -> Option<(i64, String)> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
    let (code, message) = match format {
        Format::Feishu => {
            let code = value.get("code").and_then(Value::as_i64);
            let old = value.get("StatusCode").and_then(Value::as_i64);
            // Success is `code == 0 || StatusCode == 0`.
            let code = match (code, old) {
                (Some(0), _) | (_, Some(0)) => Some(0),
                (Some(code), _) | (None, Some(code)) => Some(code),
                (None, None) => None,
            }?;
            (code, text("msg").or_else(|| text("StatusMessage")))
        }
        _ => (
            value.get("errcode").and_then(Value::as_i64)?,
            text("errmsg"),
        ),
    };
    Some((code, excerpt(message.unwrap_or_default().as_bytes())))
}

fn feishu_code(code: i64, reason: String) -> Outcome {
    match code {
        11232 => Outcome::Throttled { reason, wait: None },
        9499 | 10208 | 19002 => Outcome::Refused { reason },
        // 19001 token invalid, 19021 signature or timestamp, 19022 IP not allowed,
        // 19024 keyword not found, and whatever else.
        _ => Outcome::Fatal { reason },
    }
}

fn dingtalk_code(code: i64, message: &str, reason: String) -> Outcome {
    match code {
        130101 | 410100 => Outcome::Throttled { reason, wait: None },
        // The clock was off when it was signed; the retry is signed anew.
        310000 if message.contains("invalid timestamp") => Outcome::Retry { reason, wait: None },
        300001 if message.contains("param") => Outcome::Refused { reason },
        40035 | 43004 | 460101 => Outcome::Refused { reason },
        // 300001/300005 token is not exist, 310000 sign not match, keywords, whitelist.
        _ => Outcome::Fatal { reason },
    }
}

fn wecom_code(code: i64, reason: String) -> Outcome {
    match code {
        45009 => Outcome::Throttled { reason, wait: None },
        40008 | 40058 | 44004 | 45002 => Outcome::Refused { reason },
        // 93000 invalid webhook URL, and whatever else.
        _ => Outcome::Fatal { reason },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::http::response::test_answer as answer;

    fn read(format: Format, status: u16, retry: Option<&str>, body: &str) -> Outcome {
        read_answer(format, &answer(status, retry, body), SystemTime::UNIX_EPOCH)
    }

    fn kind(outcome: &Outcome) -> &'static str {
        match outcome {
            Outcome::Accepted => "accepted",
            Outcome::Refused { .. } => "refused",
            Outcome::Throttled { .. } => "throttled",
            Outcome::Retry { .. } => "retry",
            Outcome::Fatal { .. } => "fatal",
        }
    }

    #[test]
    fn slack_answers() {
        let cases = [
            (200, "ok", "accepted"),
            (400, "invalid_payload", "refused"),
            (400, "invalid_blocks", "refused"),
            (400, "no_text", "refused"),
            (403, "invalid_token", "fatal"),
            (403, "action_prohibited", "fatal"),
            (404, "no_service", "fatal"),
            (404, "channel_not_found", "fatal"),
            (410, "channel_is_archived", "fatal"),
            (500, "rollup_error", "retry"),
            (413, "", "refused"),
            (302, "", "fatal"),
        ];
        for (status, body, expected) in cases {
            assert_eq!(
                kind(&read(Format::Slack, status, None, body)),
                expected,
                "{status} {body}"
            );
        }
        assert_eq!(
            read(Format::Slack, 429, Some("7"), "rate_limited"),
            Outcome::Throttled {
                reason: "rate_limited".to_owned(),
                wait: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn teams_answers() {
        assert_eq!(kind(&read(Format::Teams, 202, None, "")), "accepted");
        let outcome = read(
            Format::Teams,
            400,
            None,
            r#"{"error":{"code":"InvalidRequestContent","message":"bad card"}}"#,
        );
        assert_eq!(
            outcome,
            Outcome::Refused {
                reason: "HTTP 400: InvalidRequestContent: bad card".to_owned()
            }
        );
        for status in [401, 403, 404, 410] {
            assert_eq!(kind(&read(Format::Teams, status, None, "{}")), "fatal");
        }
        assert_eq!(kind(&read(Format::Teams, 413, None, "")), "refused");
        assert_eq!(kind(&read(Format::Teams, 429, Some("3"), "")), "throttled");
        assert_eq!(kind(&read(Format::Teams, 502, None, "")), "retry");
    }

    #[test]
    fn feishu_answers_are_200_with_a_code() {
        let cases = [
            (
                r#"{"StatusCode":0,"StatusMessage":"success","code":0,"data":{},"msg":"success"}"#,
                "accepted",
            ),
            (
                r#"{"Extra":null,"StatusCode":0,"StatusMessage":"success"}"#,
                "accepted",
            ),
            (
                r#"{"code":19021,"data":{},"msg":"sign match fail or timestamp is not within one hour from current time"}"#,
                "fatal",
            ),
            (r#"{"code":19022,"msg":"Ip Not Allowed"}"#, "fatal"),
            (r#"{"code":19024,"msg":"Key Words Not Found"}"#, "fatal"),
            (
                r#"{"code":19001,"msg":"param invalid: incoming webhook access token invalid"}"#,
                "fatal",
            ),
            (r#"{"code":9499,"msg":"Bad Request","data":{}}"#, "refused"),
            (
                r#"{"code":10208,"msg":"msg type text1 not support"}"#,
                "refused",
            ),
            (
                r#"{"code":11232,"msg":"frequency limited psm"}"#,
                "throttled",
            ),
            (r#"{"code":12345,"msg":"something new"}"#, "fatal"),
            ("<html>gateway</html>", "retry"),
        ];
        for (body, expected) in cases {
            assert_eq!(
                kind(&read(Format::Feishu, 200, None, body)),
                expected,
                "{body}"
            );
        }
        assert_eq!(kind(&read(Format::Feishu, 429, None, "")), "throttled");
        assert_eq!(kind(&read(Format::Feishu, 503, None, "")), "retry");
        let Outcome::Fatal { reason } = read(
            Format::Feishu,
            200,
            None,
            r#"{"code":19021,"msg":"sign match fail"}"#,
        ) else {
            panic!()
        };
        assert_eq!(reason, "code 19021: sign match fail");
    }

    #[test]
    fn dingtalk_answers_are_200_with_an_errcode() {
        let cases = [
            (r#"{"errcode":0,"errmsg":"ok"}"#, "accepted"),
            (
                r#"{"errcode":310000,"errmsg":"sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]"}"#,
                "fatal",
            ),
            (
                r#"{"errcode":310000,"errmsg":"keywords not in content"}"#,
                "fatal",
            ),
            (
                r#"{"errcode":310000,"errmsg":"invalid timestamp"}"#,
                "retry",
            ),
            (
                r#"{"errcode":310000,"errmsg":"ip X.X.X.X not in whitelist"}"#,
                "fatal",
            ),
            (
                r#"{"errcode":300001,"errmsg":"token is not exist"}"#,
                "fatal",
            ),
            (
                r#"{"errcode":300005,"errmsg":"token is not exist"}"#,
                "fatal",
            ),
            (r#"{"errcode":300001,"errmsg":"param error"}"#, "refused"),
            (
                r#"{"errcode":460101,"errmsg":"message too long, exceed 20000 bytes"}"#,
                "refused",
            ),
            (
                r#"{"status":1111,"wait":5,"source":"x5","punish":"deny","uuid":"u","errcode":130101,"errmsg":"send too fast, exceed 20 times per minute"}"#,
                "throttled",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(
                kind(&read(Format::DingTalk, 200, None, body)),
                expected,
                "{body}"
            );
        }
        // The throttle waits the configured penalty, not DingTalk's "wait".
        assert_eq!(
            read(
                Format::DingTalk,
                200,
                None,
                r#"{"errcode":130101,"errmsg":"send too fast","wait":5}"#
            ),
            Outcome::Throttled {
                reason: "code 130101: send too fast".to_owned(),
                wait: None
            }
        );
    }

    #[test]
    fn wecom_answers_are_200_with_an_errcode() {
        let cases = [
            (r#"{"errcode":0,"errmsg":"ok"}"#, "accepted"),
            (
                r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#,
                "throttled",
            ),
            (
                r#"{"errcode":93000,"errmsg":"invalid webhook url, hint: [x], from ip: 1.2.3.4"}"#,
                "fatal",
            ),
            (
                r#"{"errcode":40008,"errmsg":"invalid message type"}"#,
                "refused",
            ),
            (
                r#"{"errcode":40058,"errmsg":"text.content exceed max length 2048"}"#,
                "refused",
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(
                kind(&read(Format::WeCom, 200, None, body)),
                expected,
                "{body}"
            );
        }
    }

    #[test]
    fn generic_answers_follow_standard_webhooks() {
        let cases = [
            (200, "accepted"),
            (204, "accepted"),
            (400, "refused"),
            (413, "refused"),
            (422, "refused"),
            (401, "fatal"),
            (403, "fatal"),
            (404, "fatal"),
            (410, "fatal"),
            (301, "fatal"),
            (408, "retry"),
            (500, "retry"),
            (502, "retry"),
            (504, "retry"),
            (501, "fatal"),
        ];
        for (status, expected) in cases {
            assert_eq!(
                kind(&read(Format::Json, status, None, "")),
                expected,
                "{status}"
            );
        }
        assert_eq!(
            read(Format::Json, 429, Some("2"), "slow down"),
            Outcome::Throttled {
                reason: "HTTP 429: slow down".to_owned(),
                wait: Some(Duration::from_secs(2))
            }
        );
    }
}
