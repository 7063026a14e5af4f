//! A generic webhook receiver (reference §4): `POST /hooks/<token>` with a JSON body,
//! signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`)
//! or GitHub (`X-Hub-Signature-256`) when set up with a secret. Success is 200; a removed
//! endpoint answers 410, as Standard Webhooks tells senders to disable it.

use super::signature;
use super::{
    Fault, GenericSignature, Incoming, Refusal, WebhookSettings, timely, with_retry_after,
};
use crate::server::{Answer, json, text};
use hyper::StatusCode;
use serde_json::json;

pub(super) const PATH_PREFIX: &str = "/hooks/";

pub(super) fn check(settings: &WebhookSettings, request: &Incoming<'_>) -> Result<String, Refusal> {
    let token = request.path.strip_prefix(PATH_PREFIX).unwrap_or("");
    if token != settings.token {
        return Err(Refusal::new(Fault::BadToken, "unknown hook"));
    }
    if let Some(secret) = &settings.secret {
        match settings.generic_signature {
            GenericSignature::None => {}
            GenericSignature::Standard => {
                let id = request.header("webhook-id").unwrap_or("");
                let timestamp = request.header("webhook-timestamp").unwrap_or("");
                let signatures = request.header("webhook-signature").unwrap_or("");
                if id.is_empty()
                    || !timely(timestamp, false, request.now, settings.timestamp_tolerance)
                    || !signature::standard(secret, id, timestamp, request.body, signatures)
                {
                    return Err(Refusal::new(Fault::BadSignature, "invalid signature"));
                }
            }
            GenericSignature::GitHub => {
                let header = request.header("x-hub-signature-256").unwrap_or("");
                if !signature::github(secret, request.body, header) {
                    return Err(Refusal::new(Fault::BadSignature, "invalid signature"));
                }
            }
        }
    }
    if request.body.len() > settings.max_body_bytes {
        return Err(Refusal::new(Fault::TooLarge, "payload too large"));
    }
    if request.json.is_none() {
        return Err(Refusal::new(Fault::BadPayload, "the body is not JSON"));
    }
    Ok(String::from_utf8_lossy(request.body).into_owned())
}

pub(super) fn ok() -> Answer {
    json(StatusCode::OK, &json!({"received": true}))
}

pub(super) fn refuse(settings: &WebhookSettings, refusal: &Refusal) -> Answer {
    match refusal.fault {
        Fault::RateLimited => with_retry_after(
            text(StatusCode::TOO_MANY_REQUESTS, "slow down"),
            settings.retry_after,
        ),
        Fault::RemovedHook => text(StatusCode::GONE, "this endpoint was removed"),
        Fault::BadToken | Fault::BadSignature => text(StatusCode::UNAUTHORIZED, &refusal.detail),
        Fault::TooLarge => text(StatusCode::PAYLOAD_TOO_LARGE, &refusal.detail),
        Fault::BadPayload => text(StatusCode::BAD_REQUEST, &refusal.detail),
        Fault::ServerError => text(StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    }
}
