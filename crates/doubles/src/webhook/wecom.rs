//! WeCom group robots (reference §3.5): `POST /cgi-bin/webhook/send?key=…`, no
//! signature (the key is the credential); every answer is HTTP 200 with an `errcode`
//! (0 = success); text content at most 2048 bytes, markdown 4096.

use super::signature::{form_decode, raw_query_pairs};
use super::{Fault, Incoming, Refusal, WebhookSettings, json_200};
use crate::server::{Answer, text};
use hyper::StatusCode;
use serde_json::{Value, json};

pub(super) const PATH: &str = "/cgi-bin/webhook/send";

const MSG_TYPES: &[&str] = &[
    "text",
    "markdown",
    "markdown_v2",
    "image",
    "news",
    "file",
    "template_card",
];
const TEXT_BYTES: usize = 2048;
const MARKDOWN_BYTES: usize = 4096;

pub(super) fn check(settings: &WebhookSettings, request: &Incoming<'_>) -> Result<String, Refusal> {
    let key = raw_query_pairs(request.query.unwrap_or(""))
        .into_iter()
        .find(|(n, _)| *n == "key")
        .and_then(|(_, v)| form_decode(v));
    if request.path != PATH || key.as_deref() != Some(settings.token.as_str()) {
        return Err(Refusal::new(Fault::BadToken, "invalid webhook url"));
    }
    if request.body.len() > settings.max_body_bytes {
        return Err(Refusal::new(Fault::TooLarge, "request too large"));
    }
    let Some(Value::Object(message)) = request.json else {
        return Err(Refusal::new(Fault::BadPayload, "invalid message type"));
    };
    let msgtype = message.get("msgtype").and_then(Value::as_str).unwrap_or("");
    if !MSG_TYPES.contains(&msgtype) {
        return Err(Refusal::new(Fault::BadPayload, "invalid message type"));
    }
    let limit = match msgtype {
        "text" => TEXT_BYTES,
        _ => MARKDOWN_BYTES,
    };
    let content = message
        .get(msgtype)
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str);
    match content {
        Some(content) if content.len() > limit => Err(Refusal::new(
            Fault::TooLarge,
            format!("{msgtype}.content exceed max length {limit}"),
        )),
        Some(content) => Ok(content.to_owned()),
        None => Err(Refusal::new(Fault::BadPayload, "invalid message type")),
    }
}

pub(super) fn ok() -> Answer {
    json_200(json!({"errcode": 0, "errmsg": "ok"}))
}

pub(super) fn refuse(_settings: &WebhookSettings, refusal: &Refusal) -> Answer {
    let (code, msg) = match refusal.fault {
        Fault::RateLimited => (45009, "api freq out of limit".to_owned()),
        Fault::RemovedHook | Fault::BadToken | Fault::BadSignature => (
            93000,
            "invalid webhook url, hint: [1700000000_00_0000], from ip: 127.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query?e=93000".to_owned(),
        ),
        Fault::TooLarge => (40058, refusal.detail.clone()),
        Fault::BadPayload => (40008, "invalid message type".to_owned()),
        Fault::ServerError => return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    };
    json_200(json!({"errcode": code, "errmsg": msg}))
}
