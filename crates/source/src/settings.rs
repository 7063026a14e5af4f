//! Validated settings of one `[sources.NAME]` table. The runner parses and
//! checks the TOML; these types carry only values that are already valid.

use crate::Secret;
use std::path::PathBuf;
use std::time::Duration;

/// Everything one source needs, with defaults applied.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// The source's name in the config (`[sources.NAME]`).
    pub name: String,
    /// ModelArts base URL, e.g. `https://modelarts.eu-de.otc.t-systems.com`,
    /// without a trailing slash.
    pub endpoint: String,
    pub project_id: String,
    /// Service ids to follow.
    pub services: Vec<String>,
    /// Server-side `event_type` filter (`normal` or `abnormal`).
    pub event_type: Option<String>,
    /// `limit` asked per request, 1..=1000.
    pub page_size: u32,
    /// Re-read window for late events.
    pub lookback: Duration,
    /// Where a service or sink with no position starts.
    pub start_at: StartAt,
    pub offset_unit: OffsetUnit,
    pub request_timeout: Duration,
    pub max_requests_per_second: f64,
    pub max_retries: u32,
    pub max_response_bytes: u64,
    /// First retry delay; doubles per attempt, with jitter.
    pub retry_initial_backoff: Duration,
    /// Longest retry delay (and the cap on an honoured `Retry-After`).
    pub retry_max_backoff: Duration,
    pub auth: AuthSettings,
}

/// `[sources.NAME.auth]`.
#[derive(Debug, Clone)]
pub enum AuthSettings {
    /// A static `X-Auth-Token`.
    Token(Secret),
    /// A static `X-Auth-Token` read from a file (trailing whitespace trimmed).
    TokenFile(PathBuf),
}

/// Where a position-less (source, service, sink) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    Now,
    /// Epoch milliseconds.
    At(i64),
}

/// How the server counts `offset` (only used inside an overfull millisecond).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetUnit {
    Auto,
    Page,
    Record,
}
