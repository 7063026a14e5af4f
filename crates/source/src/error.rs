//! Errors of the ModelArts client and the pull, classified so that the retry
//! policy never parses strings: [`SourceError::is_retryable`] decides.

use crate::settings::AuthKind;
use std::time::Duration;

/// What went wrong talking to ModelArts. Every variant names the request
/// (method, path and query; never a credential).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    /// Connection reset after it was made, or a body cut off mid-way.
    #[error("{request}: transport error: {message}")]
    Transport { request: String, message: String },

    /// No connection could be made: refused, an unknown host (DNS), or no connection
    /// within `connect_timeout`. Nothing was sent, so no credential was judged. Retried
    /// only [`UNREACHABLE_RETRIES`] times: an endpoint that is not there now rarely comes
    /// back within seconds, and the next run starts from the checkpoint anyway.
    #[error("{request}: endpoint unreachable: {url} (set by {origin}): {cause}")]
    Unreachable {
        request: String,
        /// The base URL that was dialled (the endpoint, or IAM's).
        url: String,
        /// The config key it came from, with its line when known.
        origin: String,
        cause: String,
    },

    /// A connection was made but no whole answer came within `request_timeout`.
    #[error("{request}: no answer from {url} within {} (set by {key})", humantime::format_duration(*.after))]
    TimedOut {
        request: String,
        url: String,
        /// The config key of the timeout (`sources.NAME.request_timeout`).
        key: String,
        after: Duration,
    },

    /// 429 or 5xx (including an HTML error page from a gateway).
    #[error("{request}: HTTP {status}{}: {message}", code_suffix(.code))]
    Server {
        request: String,
        status: u16,
        code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
    },

    /// A 200 whose body is not the documented JSON (truncated or garbled).
    #[error("{request}: unreadable response body: {message}")]
    BadBody { request: String, message: String },

    /// The body was larger than `max_response_bytes`.
    #[error("{request}: response larger than max_response_bytes ({limit} bytes)")]
    TooLarge { request: String, limit: u64 },

    /// 401/403: the credentials were refused. Not retried: five bad AK/SK
    /// signatures lock the key for five minutes. `message` is the server's,
    /// with any credential of ours blanked out; `hint` says what to change, when the
    /// code tells (a project id that is not the token's, an expired static token).
    #[error("{request}: authentication ({auth}) failed: HTTP {status}{}: {message}{}", code_suffix(.code), hint_suffix(.hint))]
    Auth {
        request: String,
        auth: AuthKind,
        status: u16,
        code: Option<String>,
        message: String,
        hint: Option<String>,
    },

    /// The credentials were refused a short while ago and have not changed since:
    /// they are not presented again until the hold ends; why depends on the kind
    /// (see [`hold_reason`]).
    #[error(
        "authentication ({auth}) failed {}s ago ({}); not tried again for another {}s: {} (changing the credentials ends the wait)",
        .ago.as_secs(),
        refusal_summary(.refusal),
        .wait.as_secs(),
        hold_reason(*.auth)
    )]
    HeldBack {
        auth: AuthKind,
        ago: Duration,
        wait: Duration,
        /// The refusal that is held.
        refusal: Box<SourceError>,
    },

    /// 404 for the service (`ModelArts.3502`).
    #[error("{request}: service {service_id} not found: HTTP {status}{}: {message}", code_suffix(.code))]
    ServiceNotFound {
        request: String,
        service_id: String,
        status: u16,
        code: Option<String>,
        message: String,
    },

    /// Any other 4xx: the request itself is wrong; retrying cannot help.
    #[error("{request}: request refused: HTTP {status}{}: {message}{}", code_suffix(.code), hint_suffix(.hint))]
    Rejected {
        request: String,
        status: u16,
        code: Option<String>,
        message: String,
        hint: Option<String>,
    },

    /// The client could not be set up (bad endpoint, unreadable token file).
    #[error("{0}")]
    Setup(String),

    /// The server's answers cannot be paged (for example a page made only of
    /// rows without a usable `occur_time`).
    #[error("service {service_id}: {message}")]
    Paging { service_id: String, message: String },
}

impl SourceError {
    /// The HTTP status of the answer this error came from; `None` when no answer came
    /// (or the error is not about one answer).
    pub fn status(&self) -> Option<u16> {
        match self {
            SourceError::Server { status, .. }
            | SourceError::Auth { status, .. }
            | SourceError::ServiceNotFound { status, .. }
            | SourceError::Rejected { status, .. } => Some(*status),
            SourceError::BadBody { .. } | SourceError::TooLarge { .. } => Some(200),
            _ => None,
        }
    }
}

/// Error codes that mean "slow down", whatever the HTTP status.
pub(crate) const THROTTLING_CODES: &[&str] = &[
    "APIG.0308",
    "ModelArts.2799",
    "ModelArts.4206",
    "ModelArts.6101",
    "IAM.0012",
];

/// Error codes of a 401 that a fresh IAM token cures.
const EXPIRED_TOKEN_CODES: &[&str] = &[
    "APIG.0307",
    "ModelArts.0202",
    "ModelArts.4127",
    "ModelArts.6620",
    "ModelArts.5002",
    "IAM.0066",
];

/// Retries of a request whose endpoint could not be reached (see
/// [`SourceError::Unreachable`]), whatever `max_retries` says (it may say fewer).
pub const UNREACHABLE_RETRIES: u32 = 2;

fn code_suffix(code: &Option<String>) -> String {
    code.as_deref().map(|c| format!(" {c}")).unwrap_or_default()
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_deref()
        .map(|h| format!(" ({h})"))
        .unwrap_or_default()
}

/// The held refusal in short: its status, code and message, without the request and the
/// "authentication failed" the held-back message says already.
fn refusal_summary(refusal: &SourceError) -> String {
    match refusal {
        SourceError::Auth {
            status,
            code,
            message,
            hint,
            ..
        } => format!(
            "HTTP {status}{}: {message}{}",
            code_suffix(code),
            hint_suffix(hint)
        ),
        other => other.to_string(),
    }
}

/// Why refused credentials of `auth` are not presented again while unchanged.
pub fn hold_reason(auth: AuthKind) -> &'static str {
    match auth {
        AuthKind::Aksk => {
            "five failed AK/SK signatures in a row lock the access key for five minutes"
        }
        AuthKind::Password => "repeated failed logins lock the IAM user",
        AuthKind::Token => {
            "a refused token does not become valid again; put a new one in `token` or \
             `token_file`"
        }
    }
}

impl SourceError {
    /// Whether the same request may succeed later (429, 5xx, transport, bad body).
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Transport { .. } | SourceError::BadBody { .. } => true,
            SourceError::Server { .. } => true,
            SourceError::Unreachable { .. } | SourceError::TimedOut { .. } => true,
            SourceError::TooLarge { .. }
            | SourceError::Auth { .. }
            | SourceError::HeldBack { .. }
            | SourceError::ServiceNotFound { .. }
            | SourceError::Rejected { .. }
            | SourceError::Setup(_)
            | SourceError::Paging { .. } => false,
        }
    }

    /// Whether the server said "too many requests": a 429, or one of the
    /// throttling codes (`APIG.0308`, `ModelArts.2799/4206/6101`, `IAM.0012`).
    /// The source slows down on these.
    pub fn is_throttled(&self) -> bool {
        match self {
            SourceError::Server { status, code, .. } => {
                *status == 429
                    || code
                        .as_deref()
                        .is_some_and(|c| THROTTLING_CODES.contains(&c))
            }
            _ => false,
        }
    }

    /// Whether this is the "token must be renewed" answer (401 `APIG.0307`,
    /// `ModelArts.0202/4127/6620/5002`, `IAM.0066`): an IAM token can be
    /// renewed once and the request tried again.
    pub fn is_expired_token(&self) -> bool {
        match self {
            SourceError::Auth { status, code, .. } => {
                *status == 401
                    && code
                        .as_deref()
                        .is_some_and(|c| EXPIRED_TOKEN_CODES.contains(&c))
            }
            _ => false,
        }
    }

    /// Whether no connection could be made (see [`SourceError::Unreachable`]).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, SourceError::Unreachable { .. })
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SourceError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
