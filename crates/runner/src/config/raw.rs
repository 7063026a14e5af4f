//! The shapes the TOML file is read into, before validation: values keep
//! their span (`toml::Spanned`) so that later checks can name the line.
//!
//! Kinds (`type = "..."`) are not serde internally tagged enums: serde buffers
//! such a table before choosing the variant, which drops the spans (errors
//! would point at the table header, not the key) and breaks `Spanned`. Instead
//! a *probe* struct reads the keys every kind shares, and the kind's own
//! struct, with `deny_unknown_fields`, reads the rest of the same table (see
//! `Reader::kind_table`). Probes are the only structs without
//! `deny_unknown_fields`: the kind's struct rejects what neither knows.

use serde::Deserialize;
use serde::de::IgnoredAny;
pub(super) use sink::config::HumanDuration;
use toml::Spanned;

/// `[state]`. With several files, each may set some of its keys (none twice),
/// so `path` is checked once they are merged.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StateTable {
    pub path: Option<Spanned<String>>,
    pub busy_timeout: Option<Spanned<HumanDuration>>,
}

/// `[runner]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunnerTable {
    pub interval: Option<Spanned<HumanDuration>>,
    pub concurrency: Option<Spanned<i64>>,
    pub shutdown_timeout: Option<Spanned<HumanDuration>>,
    pub shard: Option<Spanned<String>>,
    pub listen: Option<Spanned<String>>,
    pub health: Option<HealthTable>,
}

/// `[runner.health]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HealthTable {
    pub unhealthy_after: Option<Spanned<HumanDuration>>,
}

/// The key every kind of component has.
#[derive(Deserialize)]
pub(super) struct KindProbe<K> {
    #[serde(rename = "type")]
    pub kind: Spanned<K>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum SourceKind {
    Modelarts,
}

/// `[sources.NAME]` of `type = "modelarts"`, without `type`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModelArtsTable {
    pub cloud: Option<Spanned<CloudName>>,
    pub region: Option<Spanned<String>>,
    pub endpoint: Option<Spanned<String>>,
    pub project_id: Option<Spanned<String>>,
    pub services: Option<Spanned<Vec<Spanned<String>>>>,
    pub discover: Option<Spanned<DiscoverTable>>,
    pub ca_file: Option<Spanned<String>>,
    pub tls_insecure_skip_verify: Option<bool>,
    pub event_type: Option<EventTypeName>,
    pub page_size: Option<Spanned<i64>>,
    pub lookback: Option<Spanned<HumanDuration>>,
    /// A string, or a bare TOML datetime (`start_at = 2024-05-01T00:00:00Z`).
    pub start_at: Option<Spanned<toml::Value>>,
    pub offset_unit: Option<OffsetUnitName>,
    pub request_timeout: Option<Spanned<HumanDuration>>,
    pub connect_timeout: Option<Spanned<HumanDuration>>,
    pub max_requests_per_second: Option<Spanned<f64>>,
    pub max_retries: Option<Spanned<i64>>,
    pub max_response_bytes: Option<Spanned<i64>>,
    pub retry_initial_backoff: Option<Spanned<HumanDuration>>,
    pub retry_max_backoff: Option<Spanned<HumanDuration>>,
    pub max_clock_skew: Option<Spanned<HumanDuration>>,
    /// Read on its own once its kind is known; declared so that
    /// `deny_unknown_fields` accepts the key.
    #[allow(dead_code)]
    pub auth: Spanned<IgnoredAny>,
}

/// `cloud`: which table `region` is looked up in.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum CloudName {
    Otc,
    Huaweicloud,
}

/// `discover = { name = "...", status = [...] }` or `[sources.NAME.discover]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DiscoverTable {
    pub name: Option<Spanned<String>>,
    pub status: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum EventTypeName {
    Normal,
    Abnormal,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum OffsetUnitName {
    Auto,
    Page,
    Record,
}

/// The kinds of `[sources.NAME.auth]`. Adding one is a variant here, a table
/// struct below and an arm in `Reader::auth`.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum AuthKind {
    Token,
    Password,
    Aksk,
}

/// `[sources.NAME.auth]` of `type = "token"`, without `type`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenAuthTable {
    pub token: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
}

/// `[sources.NAME.auth]` of `type = "password"` (IAM login), without `type`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordAuthTable {
    pub iam_endpoint: Option<Spanned<String>>,
    pub domain: Spanned<String>,
    pub user: Spanned<String>,
    pub password: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub project: Option<Spanned<String>>,
}

/// `[sources.NAME.auth]` of `type = "aksk"` (request signing), without `type`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AkskAuthTable {
    pub access_key: Spanned<String>,
    pub secret_key: Option<Spanned<String>>,
    pub secret_key_file: Option<Spanned<String>>,
    pub security_token: Option<Spanned<String>>,
    pub security_token_file: Option<Spanned<String>>,
}
