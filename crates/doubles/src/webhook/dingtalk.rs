//! DingTalk custom robots (reference §3.4): `POST /robot/send?access_token=…`, signed
//! with `&timestamp=<ms>&sign=<url-encoded base64>` in the query when the robot has a
//! secret; every answer is HTTP 200 with an `errcode` (0 = success). Going over 20
//! messages a minute throttles the robot for ten minutes.

use super::signature::{self, form_decode, raw_query_pairs};
use super::{Fault, Incoming, Refusal, WebhookSettings, json_200, timely};
use crate::server::{Answer, text};
use hyper::StatusCode;
use serde_json::{Value, json};

pub(super) const PATH: &str = "/robot/send";

const MSG_TYPES: &[&str] = &["text", "markdown", "link", "actionCard", "feedCard"];

pub(super) fn check(settings: &WebhookSettings, request: &Incoming<'_>) -> Result<String, Refusal> {
    let pairs = raw_query_pairs(request.query.unwrap_or(""));
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| form_decode(v))
    };
    if request.path != PATH || value("access_token").as_deref() != Some(settings.token.as_str()) {
        return Err(Refusal::new(Fault::BadToken, "token is not exist"));
    }
    if let Some(secret) = &settings.secret {
        let timestamp = value("timestamp").unwrap_or_default();
        if !timely(&timestamp, true, request.now, settings.timestamp_tolerance) {
            return Err(Refusal::new(Fault::BadSignature, "invalid timestamp"));
        }
        // Decoded as a form value: a base64 `+` sent raw is a space here, and fails.
        let sign = value("sign").unwrap_or_default();
        if !signature::dingtalk(secret, &timestamp, &sign) {
            return Err(Refusal::new(
                Fault::BadSignature,
                "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]",
            ));
        }
    }
    if request.body.len() > settings.max_body_bytes {
        return Err(Refusal::new(
            Fault::TooLarge,
            "message too long, exceed 20000 bytes",
        ));
    }
    let Some(Value::Object(message)) = request.json else {
        return Err(Refusal::new(Fault::BadPayload, "param error"));
    };
    let msgtype = message.get("msgtype").and_then(Value::as_str).unwrap_or("");
    if !MSG_TYPES.contains(&msgtype) {
        return Err(Refusal::new(Fault::BadPayload, "param error"));
    }
    let text = match msgtype {
        "text" => message.get("text").and_then(|t| t.get("content")),
        "markdown" => message.get("markdown").and_then(|t| t.get("text")),
        _ => message.get(msgtype).and_then(|t| t.get("text")),
    };
    match text.and_then(Value::as_str) {
        Some(text) => Ok(text.to_owned()),
        None => Err(Refusal::new(Fault::BadPayload, "param error")),
    }
}

pub(super) fn ok() -> Answer {
    json_200(json!({"errcode": 0, "errmsg": "ok"}))
}

pub(super) fn refuse(_settings: &WebhookSettings, refusal: &Refusal) -> Answer {
    let (code, msg) = match refusal.fault {
        Fault::RateLimited => {
            return json_200(json!({
                "status": 1111, "wait": 5, "source": "x5", "punish": "deny", "uuid": "double",
                "errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"
            }));
        }
        Fault::RemovedHook | Fault::BadToken => (300005, "token is not exist"),
        Fault::BadSignature if refusal.detail == "invalid timestamp" => {
            (310000, "invalid timestamp")
        }
        Fault::BadSignature => (
            310000,
            "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]",
        ),
        Fault::TooLarge => (460101, "message too long, exceed 20000 bytes"),
        Fault::BadPayload => (300001, "param error"),
        Fault::ServerError => return text(StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>"),
    };
    json_200(json!({"errcode": code, "errmsg": msg}))
}
