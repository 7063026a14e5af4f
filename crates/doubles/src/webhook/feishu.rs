//! Feishu / Lark custom bots (reference §3.3): `POST /open-apis/bot/v2/hook/<token>`;
//! every answer is HTTP 200 with a business `code` (0 = success); with signature
//! verification on, the body carries `timestamp` (seconds) and `sign`.

use super::signature;
use super::{Fault, Incoming, Refusal, WebhookSettings, json_200, strings_at, timely};
use crate::server::{Answer, text};
use hyper::StatusCode;
use serde_json::{Value, json};

pub(super) const PATH_PREFIX: &str = "/open-apis/bot/v2/hook/";

const MSG_TYPES: &[&str] = &["text", "post", "interactive", "image", "share_chat"];

pub(super) fn check(settings: &WebhookSettings, request: &Incoming<'_>) -> Result<String, Refusal> {
    let token = request.path.strip_prefix(PATH_PREFIX).unwrap_or("");
    if token != settings.token {
        return Err(Refusal::new(
            Fault::BadToken,
            "param invalid: incoming webhook access token invalid",
        ));
    }
    if request.body.len() > settings.max_body_bytes {
        return Err(Refusal::new(Fault::TooLarge, "request body too large"));
    }
    let Some(Value::Object(message)) = request.json else {
        return Err(Refusal::new(Fault::BadPayload, "Bad Request"));
    };
    if let Some(secret) = &settings.secret {
        let timestamp = match message.get("timestamp") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        let sign = message.get("sign").and_then(Value::as_str).unwrap_or("");
        if !timely(&timestamp, false, request.now, settings.timestamp_tolerance)
            || !signature::feishu(secret, &timestamp, sign)
        {
            return Err(Refusal::new(
                Fault::BadSignature,
                "sign match fail or timestamp is not within one hour from current time",
            ));
        }
    }
    let msg_type = message
        .get("msg_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !MSG_TYPES.contains(&msg_type) {
        return Err(Refusal::new(
            Fault::BadPayload,
            format!("msg type {msg_type} not support"),
        ));
    }
    let content = message.get("content").unwrap_or(&Value::Null);
    let mut shown = Vec::new();
    match msg_type {
        "text" => match content.get("text").and_then(Value::as_str) {
            Some(text) => shown.push(text.to_owned()),
            None => return Err(Refusal::new(Fault::BadPayload, "Bad Request")),
        },
        "post" => {
            let Some(languages) = content.get("post").and_then(Value::as_object) else {
                return Err(Refusal::new(Fault::BadPayload, "Bad Request"));
            };
            let Some(post) = languages.values().next() else {
                return Err(Refusal::new(Fault::BadPayload, "Bad Request"));
            };
            if let Some(title) = post.get("title").and_then(Value::as_str) {
                shown.push(title.to_owned());
            }
            let Some(paragraphs) = post.get("content").and_then(Value::as_array) else {
                return Err(Refusal::new(Fault::BadPayload, "Bad Request"));
            };
            for paragraph in paragraphs {
                let mut line = Vec::new();
                strings_at(paragraph, "text", &mut line);
                shown.push(line.concat());
            }
        }
        _ => strings_at(content, "content", &mut shown),
    }
    Ok(shown.join("\n"))
}

pub(super) fn ok() -> Answer {
    json_200(
        json!({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}),
    )
}

pub(super) fn refuse(_settings: &WebhookSettings, refusal: &Refusal) -> Answer {
    let (code, msg) = match refusal.fault {
        Fault::RateLimited => (
            11232,
            "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]",
        ),
        Fault::RemovedHook | Fault::BadToken => (
            19001,
            "param invalid: incoming webhook access token invalid",
        ),
        Fault::BadSignature => (
            19021,
            "sign match fail or timestamp is not within one hour from current time",
        ),
        Fault::TooLarge => (9499, "Bad Request"),
        Fault::BadPayload if refusal.detail.starts_with("msg type") => {
            (10208, refusal.detail.as_str())
        }
        Fault::BadPayload => (9499, "Bad Request"),
        Fault::ServerError => {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
    };
    json_200(json!({"code": code, "data": {}, "msg": msg}))
}
