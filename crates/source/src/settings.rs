//! Validated settings of one `[sources.NAME]` table. The runner parses and
//! checks the TOML; these types carry only values that are already valid.

use std::path::PathBuf;
use std::time::Duration;

/// Everything one source needs, with defaults applied.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// The source's name in the config (`[sources.NAME]`).
    pub name: String,
    /// ModelArts base URL, e.g. `https://modelarts.eu-de.otc.t-systems.com`,
    /// without a trailing slash: the explicit `endpoint`, or the one of
    /// `region` in `cloud`.
    pub endpoint: String,
    /// `None` only with password auth: then the token's project is used.
    pub project_id: Option<String>,
    /// Service ids listed explicitly (a missing one is an error).
    pub services: Vec<String>,
    /// Services found by listing the project's services, if set.
    pub discover: Option<Discover>,
    /// Server-side `event_type` filter (`normal` or `abnormal`).
    pub event_type: Option<String>,
    /// `limit` asked per request, 1..=1000.
    pub page_size: u32,
    /// Re-read window for late events.
    pub lookback: Duration,
    /// How far ahead of the clock a committed position may be. An event dated later is
    /// delivered (and fingerprinted), but positions wait for the clock, so that one
    /// event from the future never pushes later ones out of `lookback`.
    pub max_clock_skew: Duration,
    /// Where a service or sink with no position starts.
    pub start_at: StartAt,
    pub offset_unit: OffsetUnit,
    /// How long a request may take, answer included (`request_timeout`).
    pub request_timeout: Duration,
    /// How long establishing a connection may take (`connect_timeout`); a longer wait is
    /// "endpoint unreachable", like a refused connection or an unknown host.
    pub connect_timeout: Duration,
    pub max_requests_per_second: f64,
    pub max_retries: u32,
    pub max_response_bytes: u64,
    /// First retry delay; doubles per attempt, with jitter.
    pub retry_initial_backoff: Duration,
    /// Longest retry delay (and the cap on an honoured `Retry-After`).
    pub retry_max_backoff: Duration,
    pub tls: TlsSettings,
    pub auth: AuthSettings,
    /// Where in the config the values that errors point at came from.
    pub origin: SettingsOrigin,
}

/// Where the endpoint and the project id of a source were written, as errors name them
/// (`sources.prod.endpoint (line 5)`). Empty fields fall back to the bare key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsOrigin {
    /// The key the ModelArts endpoint came from: `endpoint`, or `region`.
    pub endpoint: String,
    /// The key the IAM endpoint came from: `auth.iam_endpoint`, or `region`.
    pub iam_endpoint: String,
    /// The `project_id` key.
    pub project_id: String,
}

impl SourceSettings {
    /// [`SettingsOrigin::endpoint`], or `sources.NAME.endpoint` when it is not known.
    pub fn endpoint_origin(&self) -> String {
        self.origin_or(&self.origin.endpoint, "endpoint")
    }

    /// [`SettingsOrigin::iam_endpoint`], or `sources.NAME.auth.iam_endpoint`.
    pub fn iam_endpoint_origin(&self) -> String {
        self.origin_or(&self.origin.iam_endpoint, "auth.iam_endpoint")
    }

    /// [`SettingsOrigin::project_id`], or `sources.NAME.project_id`.
    pub fn project_id_origin(&self) -> String {
        self.origin_or(&self.origin.project_id, "project_id")
    }

    /// `sources.NAME.KEY`.
    pub fn key(&self, key: &str) -> String {
        format!("sources.{}.{key}", self.name)
    }

    fn origin_or(&self, known: &str, key: &str) -> String {
        if known.is_empty() {
            self.key(key)
        } else {
            known.to_owned()
        }
    }
}

/// `discover = { name = "glob*", status = [...] }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discover {
    /// Glob on the service name (`*`, `?`, `[...]`); `None` matches all.
    pub name: Option<String>,
    /// Statuses to follow (lowercase, e.g. `running`); empty matches all.
    pub status: Vec<String>,
}

/// TLS of the source's HTTPS connections.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// A PEM file of extra CA certificates (private CAs, TLS-inspecting proxies).
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification. Dangerous; logged loudly when set.
    pub insecure_skip_verify: bool,
}

/// A secret given inline or as a file to read; defined in the shared `secret`
/// crate (the network sinks use it too).
pub use ::secret::SecretSource;

/// `[sources.NAME.auth]`.
#[derive(Debug, Clone)]
pub enum AuthSettings {
    /// A static `X-Auth-Token`.
    Token { token: SecretSource },
    /// IAM password login (`POST {iam_endpoint}/v3/auth/tokens`); the token
    /// is cached and renewed before it expires.
    Password {
        /// IAM base URL without `/v3`, e.g. `https://iam.eu-de.otc.t-systems.com`.
        iam_endpoint: String,
        /// Account (domain) name.
        domain: String,
        user: String,
        password: SecretSource,
        /// Scope by project name; `None`: scope by the source's `project_id`.
        project: Option<String>,
    },
    /// AK/SK request signing (`SDK-HMAC-SHA256`).
    Aksk {
        access_key: String,
        secret_key: SecretSource,
        /// Temporary credentials: sent and signed as `X-Security-Token`.
        security_token: Option<SecretSource>,
    },
}

impl AuthSettings {
    /// Which kind of authentication this is.
    pub fn kind(&self) -> AuthKind {
        match self {
            AuthSettings::Token { .. } => AuthKind::Token,
            AuthSettings::Password { .. } => AuthKind::Password,
            AuthSettings::Aksk { .. } => AuthKind::Aksk,
        }
    }
}

/// The kinds of authentication, as `auth.type` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthKind {
    /// A static `X-Auth-Token`.
    Token,
    /// An IAM password login whose token is cached and renewed.
    Password,
    /// AK/SK request signing.
    Aksk,
}

impl AuthKind {
    /// The name as written in the config (`token`, `password`, `aksk`).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::Token => "token",
            AuthKind::Password => "password",
            AuthKind::Aksk => "aksk",
        }
    }
}

impl std::fmt::Display for AuthKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
