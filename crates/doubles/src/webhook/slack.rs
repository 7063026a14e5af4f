//! Slack incoming webhooks (reference §3.1, <https://api.slack.com/messaging/webhooks>):
//! `POST /services/T…/B…/<token>` with `{"text": …}` and/or `{"blocks": […]}`; success is
//! 200 with the body `ok`; errors are a status with a plain-text code.

use super::{Fault, Incoming, Refusal, WebhookSettings, with_retry_after};
use crate::server::{Answer, text};
use hyper::StatusCode;
use serde_json::Value;

/// The hook's path before its token.
pub(super) const PATH_PREFIX: &str = "/services/T0000DOUBLE/B0000DOUBLE/";

/// Block Kit limits (<https://api.slack.com/reference/block-kit/blocks>).
const MAX_BLOCKS: usize = 50;
const HEADER_CHARS: usize = 150;
const TEXT_CHARS: usize = 3000;
const BLOCK_TYPES: &[&str] = &[
    "header",
    "section",
    "context",
    "divider",
    "actions",
    "image",
    "rich_text",
];

pub(super) fn check(settings: &WebhookSettings, request: &Incoming<'_>) -> Result<String, Refusal> {
    let token = request.path.strip_prefix(PATH_PREFIX).unwrap_or("");
    if token != settings.token {
        return Err(Refusal::new(Fault::BadToken, "invalid_token"));
    }
    if request.body.len() > settings.max_body_bytes {
        return Err(Refusal::new(Fault::TooLarge, "msg_too_long"));
    }
    if !request
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json"))
    {
        return Err(Refusal::new(Fault::BadPayload, "invalid_payload"));
    }
    let Some(Value::Object(message)) = request.json else {
        return Err(Refusal::new(Fault::BadPayload, "invalid_payload"));
    };
    let fallback = message.get("text").and_then(Value::as_str).unwrap_or("");
    let blocks = match message.get("blocks") {
        None => Vec::new(),
        Some(Value::Array(blocks)) => blocks.clone(),
        Some(_) => return Err(Refusal::new(Fault::BadPayload, "invalid_blocks")),
    };
    if fallback.trim().is_empty() && blocks.is_empty() {
        return Err(Refusal::new(Fault::BadPayload, "no_text"));
    }
    if blocks.len() > MAX_BLOCKS {
        return Err(Refusal::new(Fault::BadPayload, "invalid_blocks"));
    }
    let mut shown = Vec::new();
    for block in &blocks {
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
        if !BLOCK_TYPES.contains(&kind) {
            return Err(Refusal::new(Fault::BadPayload, "invalid_blocks"));
        }
        let mut texts = Vec::new();
        collect_text_objects(block, &mut texts);
        for (object_type, text) in texts {
            let limit = if kind == "header" {
                HEADER_CHARS
            } else {
                TEXT_CHARS
            };
            if text.chars().count() > limit || (kind == "header" && object_type != "plain_text") {
                return Err(Refusal::new(Fault::BadPayload, "invalid_blocks"));
            }
            // What a reader sees: plain_text as it is, mrkdwn with Slack's escapes undone.
            shown.push(if object_type == "mrkdwn" {
                unescape(&text)
            } else {
                text
            });
        }
    }
    if shown.is_empty() {
        shown.push(unescape(fallback));
    }
    Ok(shown.join("\n"))
}

/// Every Block Kit text object (`{"type": "plain_text" | "mrkdwn", "text": …}`) in
/// `value`, as (type, text).
fn collect_text_objects(value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            let object_type = map.get("type").and_then(Value::as_str);
            if let (Some(t @ ("plain_text" | "mrkdwn")), Some(Value::String(s))) =
                (object_type, map.get("text"))
            {
                out.push((t.to_owned(), s.clone()));
                return;
            }
            map.values().for_each(|v| collect_text_objects(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_text_objects(v, out)),
        _ => {}
    }
}

/// Slack's three escapes undone (<https://api.slack.com/reference/surfaces/formatting#escaping>).
pub fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

pub(super) fn ok() -> Answer {
    text(StatusCode::OK, "ok")
}

pub(super) fn refuse(settings: &WebhookSettings, refusal: &Refusal) -> Answer {
    match refusal.fault {
        Fault::RateLimited => with_retry_after(
            text(StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            settings.retry_after,
        ),
        Fault::RemovedHook => text(StatusCode::NOT_FOUND, "no_service"),
        Fault::BadToken | Fault::BadSignature => text(StatusCode::FORBIDDEN, "invalid_token"),
        Fault::TooLarge => text(StatusCode::BAD_REQUEST, "msg_too_long"),
        Fault::BadPayload => {
            let code = match refusal.detail.as_str() {
                "no_text" | "invalid_blocks" => refusal.detail.as_str(),
                _ => "invalid_payload",
            };
            text(StatusCode::BAD_REQUEST, code)
        }
        Fault::ServerError => text(StatusCode::INTERNAL_SERVER_ERROR, "rollup_error"),
    }
}
