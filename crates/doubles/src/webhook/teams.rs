//! Microsoft Teams Workflows webhooks (reference §3.2): the Power Automate trigger URL,
//! whose query holds the SAS `sig` and must arrive byte for byte; an Adaptive Card
//! message; success is 202 with an empty body; errors are `{"error":{"code","message"}}`.

use super::{Fault, Incoming, Refusal, WebhookSettings, strings_at, with_retry_after};
use crate::server::{Answer, json};
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

/// The workflow trigger's path.
pub(super) const PATH: &str =
    "/workflows/0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a/triggers/manual/paths/invoke";

/// The query of the trigger URL with `sig` = `token`, percent-escapes included: a client
/// that decodes and re-encodes it (`/` for `%2F`) no longer matches.
pub(super) fn query(token: &str) -> String {
    format!("api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={token}")
}

const ADAPTIVE: &str = "application/vnd.microsoft.card.adaptive";

pub(super) fn check(settings: &WebhookSettings, request: &Incoming<'_>) -> Result<String, Refusal> {
    if request.path != PATH {
        return Err(Refusal::new(Fault::RemovedHook, "WorkflowNotFound"));
    }
    if request.query != Some(query(&settings.token).as_str()) {
        return Err(Refusal::new(
            Fault::BadToken,
            "the query is not the trigger URL's, byte for byte",
        ));
    }
    if request.body.len() > settings.max_body_bytes {
        return Err(Refusal::new(Fault::TooLarge, "MessageTooLarge"));
    }
    let Some(message) = request.json else {
        return Err(Refusal::new(Fault::BadPayload, "the body is not JSON"));
    };
    if message.get("type").and_then(Value::as_str) != Some("message") {
        return Err(Refusal::new(Fault::BadPayload, "type must be \"message\""));
    }
    let Some(attachments) = message.get("attachments").and_then(Value::as_array) else {
        return Err(Refusal::new(Fault::BadPayload, "no attachments"));
    };
    if attachments.is_empty() {
        return Err(Refusal::new(Fault::BadPayload, "no attachments"));
    }
    let mut shown = Vec::new();
    for attachment in attachments {
        if attachment.get("contentType").and_then(Value::as_str) != Some(ADAPTIVE) {
            return Err(Refusal::new(
                Fault::BadPayload,
                "Workflows take Adaptive Cards only",
            ));
        }
        let card = attachment.get("content").unwrap_or(&Value::Null);
        if card.get("type").and_then(Value::as_str) != Some("AdaptiveCard")
            || !card.get("body").is_some_and(Value::is_array)
        {
            return Err(Refusal::new(
                Fault::BadPayload,
                "not an AdaptiveCard with a body",
            ));
        }
        // TextBlocks and the TextRuns of RichTextBlocks, in order.
        strings_at(&card["body"], "text", &mut shown);
    }
    Ok(shown.join("\n"))
}

pub(super) fn ok() -> Answer {
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

fn error(status: StatusCode, code: &str, message: &str) -> Answer {
    json(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

pub(super) fn refuse(settings: &WebhookSettings, refusal: &Refusal) -> Answer {
    match refusal.fault {
        Fault::RateLimited => with_retry_after(
            error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Rate limit is exceeded.",
            ),
            settings.retry_after,
        ),
        Fault::RemovedHook => error(
            StatusCode::NOT_FOUND,
            "WorkflowNotFound",
            "The workflow could not be found.",
        ),
        Fault::BadToken | Fault::BadSignature => error(
            StatusCode::UNAUTHORIZED,
            "DirectApiAuthorizationRequired",
            "The request must be authenticated only by Shared Access scheme.",
        ),
        Fault::TooLarge => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "MessageTooLarge",
            "The request content size exceeds the limit.",
        ),
        Fault::BadPayload => error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            &refusal.detail,
        ),
        Fault::ServerError => error(StatusCode::BAD_GATEWAY, "BadGateway", "Bad gateway."),
    }
}
