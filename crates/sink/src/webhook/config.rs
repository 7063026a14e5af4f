//! The keys of a webhook sink, read into a validated [`WebhookConfig`], and opening the
//! sink.
//!
//! A chat webhook's URL is its credential (Slack's path, DingTalk's `access_token`,
//! WeCom's `key`, the `sig` of a Teams workflow), so it is kept as a [`Secret`]: errors,
//! logs and `Debug` show its scheme and host only. It is sent as written: a URL that a
//! URL parser would re-encode (a Teams workflow's signed query must arrive byte for byte)
//! is refused with the reason.

use super::WebhookSink;
use super::rate_limit::RateLimit;
use super::request_builder::{self, BodyTemplate};
use super::signature;
use crate::config::{
    BuildContext, BuiltSink, ConfigContext, ConfigIssue, HumanDuration, Preview, ReadError,
    SinkConfig, Table, deserialize, duration, integer,
};
use crate::http::{
    AuthTable, Compression, HeadersTable, HttpOptions, HttpTables, RequestTable, TlsTable,
};
use crate::{SharedRecord, Sink, SinkError};
use jiff::tz::TimeZone;
use reqwest::Url;
use secret::{Secret, SecretSource};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;

/// Defaults of the webhook keys (per format where the platforms differ; see
/// [`Format`]).
pub mod defaults {
    use std::time::Duration;

    /// Chat presets: events older than this are not posted (`too_old_to_alert`).
    pub const MAX_AGE: Duration = Duration::from_secs(3600);
    /// Chat presets: events of one service in one message.
    pub const MAX_EVENTS_PER_MESSAGE: usize = 10;
    /// Generic `json`: events of one service in one POST.
    pub const JSON_MAX_EVENTS_PER_MESSAGE: usize = 100;
    /// Chat presets: how long a message may wait for more events of its service.
    pub const GROUP_WINDOW: Duration = Duration::from_secs(30);
    /// The time zone of the times in chat messages.
    pub const TIMEZONE: &str = "UTC";
    /// The event types a chat preset alerts on when `event_types` is not set.
    pub const ALERT_EVENT_TYPES: &[&str] = &["abnormal"];
}

/// `format`: what is posted, and how the platform answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"events": [...]}` or a `template`, optionally signed (Standard Webhooks, GitHub).
    Json,
    /// Slack incoming webhook: `text` plus blocks; success is 200 `ok`.
    Slack,
    /// Microsoft Teams Workflows webhook: an Adaptive Card; success is 202.
    Teams,
    /// Feishu / Lark custom bot: a `post` message, optionally signed; errors are 200
    /// with a non-zero `code`.
    Feishu,
    /// DingTalk custom robot: a `text` message, optionally signed in the URL; errors are
    /// 200 with a non-zero `errcode`.
    DingTalk,
    /// WeCom group robot: a `text` message; errors are 200 with a non-zero `errcode`.
    WeCom,
}

impl Format {
    pub const ALL: [Format; 6] = [
        Format::Json,
        Format::Slack,
        Format::Teams,
        Format::Feishu,
        Format::DingTalk,
        Format::WeCom,
    ];

    /// The name written in `format = "..."`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Slack => "slack",
            Format::Teams => "teams",
            Format::Feishu => "feishu",
            Format::DingTalk => "dingtalk",
            Format::WeCom => "wecom",
        }
    }

    /// A chat preset (a message people read), as opposed to the generic `json`.
    pub fn is_chat(self) -> bool {
        self != Format::Json
    }

    /// The platform's documented rate limit (reference §3): Slack "no more than one
    /// message per second"; Feishu 5 per second and 100 per minute per bot; DingTalk and
    /// WeCom 20 per minute per robot; Teams Workflows documents none, so Slack's one per
    /// second. A generic endpoint has none.
    pub fn default_rate_limits(self) -> Vec<RateLimit> {
        let second = Duration::from_secs(1);
        let minute = Duration::from_secs(60);
        match self {
            Format::Json => Vec::new(),
            Format::Slack | Format::Teams => vec![RateLimit::new(1, second)],
            Format::Feishu => vec![RateLimit::new(5, second), RateLimit::new(100, minute)],
            Format::DingTalk | Format::WeCom => vec![RateLimit::new(20, minute)],
        }
    }

    /// How long to wait after the platform said "too fast" without a `Retry-After`:
    /// DingTalk throttles a robot for 10 minutes; WeCom's and Feishu's limits are per
    /// minute; Slack and Teams send `Retry-After` with their 429, so this is a fallback.
    pub fn default_penalty(self) -> Duration {
        match self {
            Format::DingTalk => Duration::from_secs(600),
            Format::Feishu | Format::WeCom => Duration::from_secs(60),
            Format::Json | Format::Slack | Format::Teams => Duration::from_secs(30),
        }
    }

    /// Whether the platform signs with a `secret` of its own.
    fn takes_secret(self) -> bool {
        matches!(self, Format::Json | Format::Feishu | Format::DingTalk)
    }

    fn by_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// How a post is signed, with the secret it is signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    /// Standard Webhooks (`webhook-signature`), a `whsec_` key.
    Standard(SecretSource),
    /// GitHub's `X-Hub-Signature-256`, any shared secret.
    GitHub(SecretSource),
    /// Feishu / Lark: `timestamp` and `sign` in the body.
    Feishu(SecretSource),
    /// DingTalk: `timestamp` and `sign` in the URL's query.
    DingTalk(SecretSource),
}

impl Signing {
    /// The secret, wherever it comes from.
    pub fn secret(&self) -> &SecretSource {
        match self {
            Signing::Standard(s)
            | Signing::GitHub(s)
            | Signing::Feishu(s)
            | Signing::DingTalk(s) => s,
        }
    }
}

/// `[sinks.NAME]` of `type = "webhook"`, without the common keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookTable {
    format: Spanned<String>,
    url: Option<Spanned<String>>,
    url_file: Option<Spanned<String>>,
    secret: Option<Spanned<String>>,
    secret_file: Option<Spanned<String>>,
    signature: Option<Spanned<String>>,
    template: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    max_age: Option<Spanned<HumanDuration>>,
    max_events_per_message: Option<Spanned<i64>>,
    group_window: Option<Spanned<HumanDuration>>,
    rate_limit: Option<Spanned<Vec<Spanned<RateLimitTable>>>>,
    rate_limit_penalty: Option<Spanned<HumanDuration>>,
    request: Option<Spanned<RequestTable>>,
    tls: Option<Spanned<TlsTable>>,
    auth: Option<Spanned<AuthTable>>,
    compression: Option<Spanned<String>>,
    headers: Option<Spanned<HeadersTable>>,
}

/// One entry of `rate_limit`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitTable {
    messages: Spanned<i64>,
    per: Spanned<HumanDuration>,
}

/// Headers the sink sets itself on a generic webhook's posts.
const OWNED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "idempotency-key",
    "x-hub-signature-256",
];

/// A validated webhook sink. `Debug` shows no secret: the URL and the signing secret
/// are [`SecretSource`]s.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub format: Format,
    /// `url` (a [`Secret`]) or `url_file`.
    pub url: SecretSource,
    /// `scheme://host[:port]` of an inline `url`, for messages (`None` with `url_file`
    /// until the file is read).
    pub origin: Option<String>,
    /// `secret`/`secret_file`, and how it signs.
    pub signing: Option<Signing>,
    /// `template` (generic `json` only).
    pub template: Option<BodyTemplate>,
    /// `timezone` as written (an IANA name) and the zone.
    pub timezone: (String, TimeZone),
    /// `max_age`: events older than this are acknowledged without a post.
    pub max_age: Option<Duration>,
    pub max_events_per_message: usize,
    /// `group_window`: how long the engine may wait to fill a batch (`None`: the
    /// engine's `batch.timeout`).
    pub group_window: Option<Duration>,
    /// `rate_limit`: every limit holds at once; empty = none.
    pub rate_limits: Vec<RateLimit>,
    /// `rate_limit_penalty`: the wait after a "too fast" answer without `Retry-After`.
    pub rate_limit_penalty: Duration,
    /// `request`, `tls`, `auth`, `compression`, `headers`.
    pub http: HttpOptions,
}

pub(super) fn read(
    table: Table<'_>,
    ctx: &dyn ConfigContext,
) -> Result<Box<dyn SinkConfig>, ReadError> {
    Ok(Box::new(WebhookConfig::read(table, ctx)?))
}

impl WebhookConfig {
    /// Reads and validates a `type = "webhook"` table (common keys removed). Pure.
    pub fn read(table: Table<'_>, ctx: &dyn ConfigContext) -> Result<WebhookConfig, ReadError> {
        let table: WebhookTable = deserialize(table)?;
        let format = read_format(&table.format, ctx)?;
        let chat = format.is_chat();
        let signing = read_signing(&table, format, ctx)?;
        let (url, origin) = read_url(&table, format, signing.is_some(), ctx)?;
        if let Some(value) = &table.template
            && chat
        {
            return Err(only_for_json(ctx, value.span(), "template"));
        }
        let timezone = match &table.timezone {
            None => (defaults::TIMEZONE.to_owned(), TimeZone::UTC),
            Some(value) => {
                let name = ctx.expand(value, "timezone")?;
                let zone = TimeZone::get(&name).map_err(|_| {
                    ctx.issue(
                        value.span(),
                        "timezone",
                        format!(
                            "{name:?} is not a time zone of the IANA database; write e.g. \
                             \"UTC\", \"Europe/Berlin\" or \"Asia/Shanghai\""
                        ),
                    )
                })?;
                (name, zone)
            }
        };
        let template = match &table.template {
            None => None,
            Some(value) => {
                let text = ctx.expand(value, "template")?;
                Some(
                    BodyTemplate::new(&text, timezone.1.clone())
                        .map_err(|why| ctx.issue(value.span(), "template", why))?,
                )
            }
        };
        let max_age = match &table.max_age {
            Some(_) => Some(duration(
                ctx,
                &table.max_age,
                "max_age",
                defaults::MAX_AGE,
                false,
            )?),
            None => chat.then_some(defaults::MAX_AGE),
        };
        let max_events_per_message = integer(
            ctx,
            &table.max_events_per_message,
            "max_events_per_message",
            if chat {
                defaults::MAX_EVENTS_PER_MESSAGE
            } else {
                defaults::JSON_MAX_EVENTS_PER_MESSAGE
            },
            1,
        )?;
        let group_window = match &table.group_window {
            Some(_) => Some(duration(
                ctx,
                &table.group_window,
                "group_window",
                defaults::GROUP_WINDOW,
                false,
            )?),
            None => chat.then_some(defaults::GROUP_WINDOW),
        };
        let rate_limits = match &table.rate_limit {
            None => format.default_rate_limits(),
            Some(list) => list
                .get_ref()
                .iter()
                .enumerate()
                .map(|(i, entry)| read_rate_limit(entry.get_ref(), i, ctx))
                .collect::<Result<_, _>>()?,
        };
        let rate_limit_penalty = duration(
            ctx,
            &table.rate_limit_penalty,
            "rate_limit_penalty",
            format.default_penalty(),
            true,
        )?;
        if let Some(headers) = &table.headers
            && let Some((name, value)) = headers
                .get_ref()
                .iter()
                .find(|(name, _)| OWNED_HEADERS.contains(&name.to_ascii_lowercase().as_str()))
        {
            return Err(ctx
                .issue(
                    value.span(),
                    &format!("headers.{name}"),
                    "is set by the sink on every post (the message id and its signature); \
                     remove it"
                        .to_owned(),
                )
                .into());
        }
        let http = HttpOptions::read(
            HttpTables {
                request: table.request.as_ref(),
                tls: table.tls.as_ref(),
                auth: table.auth.as_ref(),
                compression: table.compression.as_ref(),
                headers: table.headers.as_ref(),
            },
            ctx,
        )?;
        if chat
            && http.compression == Compression::Gzip
            && let Some(value) = &table.compression
        {
            return Err(ctx
                .issue(
                    value.span(),
                    "compression",
                    format!(
                        "cannot be \"gzip\" for format = \"{}\": chat platforms do not take \
                         compressed bodies",
                        format.name()
                    ),
                )
                .into());
        }
        Ok(WebhookConfig {
            format,
            url,
            origin,
            signing,
            template,
            timezone,
            max_age,
            max_events_per_message,
            group_window,
            rate_limits,
            rate_limit_penalty,
            http,
        })
    }

    /// The messages [`WebhookSink`] would post for `batch` at `now_ms`, rendered, with
    /// what it would skip or refuse. Pure.
    pub fn render(&self, batch: &[SharedRecord], now_ms: i64) -> Preview {
        request_builder::plan(self, batch, now_ms).preview()
    }
}

#[async_trait::async_trait]
impl SinkConfig for WebhookConfig {
    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn concurrency(&self) -> usize {
        self.http.request.concurrency
    }

    /// `group_window`: a message waits that long at most for more events of its
    /// service; a one-shot sync never waits for it.
    fn batch_timeout(&self) -> Option<Duration> {
        self.group_window
    }

    /// Chat presets alert on `abnormal` events unless `event_types` says otherwise.
    fn default_event_types(&self) -> Option<Vec<String>> {
        self.format.is_chat().then(|| {
            defaults::ALERT_EVENT_TYPES
                .iter()
                .map(|t| (*t).to_owned())
                .collect()
        })
    }

    fn preview(&self, batch: &[SharedRecord]) -> Option<Preview> {
        Some(self.render(batch, record::now_ms()))
    }

    /// Reads the URL and secret files and builds the HTTP client. No network.
    async fn build(&self, name: &str, _: BuildContext) -> Result<BuiltSink, SinkError> {
        Ok(BuiltSink {
            sink: Arc::new(WebhookSink::new(name, self).await?),
            state: None,
            recovered: Vec::new(),
        })
    }

    /// Reads the URL and secret files and checks them. Posts nothing: a test message
    /// would reach the people the chat alerts.
    async fn check(&self, name: &str) -> Result<(), SinkError> {
        WebhookSink::new(name, self).await?.healthcheck().await
    }
}

fn read_format(value: &Spanned<String>, ctx: &dyn ConfigContext) -> Result<Format, ConfigIssue> {
    Format::by_name(value.get_ref()).ok_or_else(|| {
        let names: Vec<String> = Format::ALL
            .iter()
            .map(|f| format!("{:?}", f.name()))
            .collect();
        ctx.issue(
            value.span(),
            "format",
            format!(
                "unknown format {:?}; use {}",
                value.get_ref(),
                names.join(", ")
            ),
        )
    })
}

fn only_for_json(ctx: &dyn ConfigContext, span: std::ops::Range<usize>, key: &str) -> ReadError {
    ctx.issue(
        span,
        key,
        "applies to format = \"json\" only (the chat presets render their own messages)".to_owned(),
    )
    .into()
}

/// `secret`/`secret_file` and `signature`.
fn read_signing(
    table: &WebhookTable,
    format: Format,
    ctx: &dyn ConfigContext,
) -> Result<Option<Signing>, ReadError> {
    if let Some(value) = &table.signature
        && format != Format::Json
    {
        return Err(only_for_json(ctx, value.span(), "signature"));
    }
    let source = match (&table.secret, &table.secret_file) {
        (Some(_), Some(file)) => {
            return Err(ctx
                .issue(
                    file.span(),
                    "secret_file",
                    "cannot be set together with secret; keep one".to_owned(),
                )
                .into());
        }
        (None, None) => None,
        (Some(value), None) => Some((value, "secret", false)),
        (None, Some(value)) => Some((value, "secret_file", true)),
    };
    let Some((value, key, is_file)) = source else {
        if let Some(value) = &table.signature {
            return Err(ctx
                .issue(
                    value.span(),
                    "signature",
                    "needs secret or secret_file: the key to sign with".to_owned(),
                )
                .into());
        }
        return Ok(None);
    };
    if !format.takes_secret() {
        let why = match format {
            Format::WeCom => "WeCom robots have no signature: the key in the URL is the credential",
            Format::Slack => "Slack incoming webhooks have no signature: the URL is the credential",
            _ => "Teams workflows have no signature: the sig in the URL's query is the credential",
        };
        return Err(ctx.issue(value.span(), key, why.to_owned()).into());
    }
    let text = ctx.expand(value, key)?;
    let source = if is_file {
        SecretSource::File(ctx.path(value, key)?)
    } else {
        if text.is_empty() {
            return Err(ctx.issue(value.span(), key, "is empty".to_owned()).into());
        }
        SecretSource::Inline(Secret::new(text))
    };
    let signing = match format {
        Format::Feishu => Signing::Feishu(source),
        Format::DingTalk => Signing::DingTalk(source),
        _ => match table.signature.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("standard") => Signing::Standard(source),
            Some("github") => Signing::GitHub(source),
            Some(other) => {
                let span = table.signature.as_ref().map_or(value.span(), |s| s.span());
                return Err(ctx
                    .issue(
                        span,
                        "signature",
                        format!("unknown signature {other:?}; use \"standard\" or \"github\""),
                    )
                    .into());
            }
        },
    };
    if let Signing::Standard(SecretSource::Inline(secret)) = &signing {
        signature::standard_key(secret.expose())
            .map_err(|why| ctx.issue(value.span(), key, why))?;
    }
    Ok(Some(signing))
}

/// `url`/`url_file`: the source of the URL, and the origin of an inline one.
fn read_url(
    table: &WebhookTable,
    format: Format,
    signed: bool,
    ctx: &dyn ConfigContext,
) -> Result<(SecretSource, Option<String>), ReadError> {
    match (&table.url, &table.url_file) {
        (Some(_), Some(file)) => Err(ctx
            .issue(
                file.span(),
                "url_file",
                "cannot be set together with url; keep one".to_owned(),
            )
            .into()),
        (None, None) => Err(ctx
            .issue(
                table.format.span(),
                "url",
                "is missing: set url (or url_file, since a webhook URL is a secret)".to_owned(),
            )
            .into()),
        (None, Some(file)) => Ok((SecretSource::File(ctx.path(file, "url_file")?), None)),
        (Some(value), None) => {
            let text = ctx.expand(value, "url")?;
            let url = check_url(text.trim(), format, signed)
                .map_err(|why| ctx.issue(value.span(), "url", why))?;
            Ok((
                SecretSource::Inline(Secret::new(text.trim())),
                Some(url.origin().ascii_serialization()),
            ))
        }
    }
}

/// The URL to post to, or why it cannot be one. Never quotes the URL (its secret is in
/// the path or the query).
pub(super) fn check_url(text: &str, format: Format, signed: bool) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".to_owned());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials before the host; use auth instead".to_owned());
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment".to_owned());
    }
    // Sent byte for byte: a parser that percent-encodes something would change a signed
    // query (a Teams workflow's `sig`) and the platform would refuse every post.
    let after_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
    let (before_query, raw_query) = match after_scheme.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (after_scheme, None),
    };
    let raw_path = before_query.find('/').map_or("", |i| &before_query[i..]);
    let path_kept = url.path() == raw_path || (raw_path.is_empty() && url.path() == "/");
    if url.query() != raw_query || !path_kept {
        return Err(
            "would not be sent as written: it holds characters that must be percent-encoded \
             (spaces, quotes, non-ASCII letters, ...); write them percent-encoded, exactly as \
             the platform gave the URL"
                .to_owned(),
        );
    }
    if format == Format::DingTalk {
        let names: Vec<String> = url
            .query_pairs()
            .map(|(name, _)| name.into_owned())
            .collect();
        if !names.iter().any(|n| n == "access_token") {
            return Err(
                "has no access_token in its query; copy the robot's whole webhook URL".to_owned(),
            );
        }
        if signed && names.iter().any(|n| n == "timestamp" || n == "sign") {
            return Err(
                "already has timestamp or sign in its query; with secret set the sink signs \
                 every post itself: remove them"
                    .to_owned(),
            );
        }
    }
    Ok(url)
}

fn read_rate_limit(
    entry: &RateLimitTable,
    index: usize,
    ctx: &dyn ConfigContext,
) -> Result<RateLimit, ConfigIssue> {
    let messages = integer(
        ctx,
        &Some(entry.messages.clone()),
        &format!("rate_limit[{index}].messages"),
        1usize,
        1,
    )?;
    let per = duration(
        ctx,
        &Some(entry.per.clone()),
        &format!("rate_limit[{index}].per"),
        Duration::from_secs(1),
        false,
    )?;
    Ok(RateLimit::new(messages, per))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::TestContext;
    use toml::de::DeTable;

    const SLACK_URL: &str = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX";

    fn context() -> TestContext {
        TestContext::new(
            "alerts",
            &[
                ("SLACK_WEBHOOK_URL", SLACK_URL),
                ("WHSEC", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
                ("EMPTY", ""),
            ],
        )
    }

    fn read(text: &str) -> Result<WebhookConfig, ReadError> {
        let table = DeTable::parse(text).unwrap();
        WebhookConfig::read(table, &context())
    }

    /// The issue, and the line of the config its span points at.
    fn issue(text: &str) -> (String, String, String) {
        let issue = match read(text) {
            Err(ReadError::Invalid(issue)) => issue,
            Err(ReadError::Toml(e)) => panic!("a TOML error: {e}"),
            Ok(config) => panic!("read: {config:?}"),
        };
        let start = text[..issue.span.start].rfind('\n').map_or(0, |i| i + 1);
        let end = text[issue.span.start..]
            .find('\n')
            .map_or(text.len(), |i| issue.span.start + i);
        (issue.key, text[start..end].to_owned(), issue.message)
    }

    #[test]
    fn a_slack_preset_with_every_default() {
        let config = read("format = \"slack\"\nurl = \"${SLACK_WEBHOOK_URL}\"\n").unwrap();
        assert_eq!(config.format, Format::Slack);
        assert_eq!(config.url, SecretSource::Inline(Secret::new(SLACK_URL)));
        assert_eq!(config.origin.as_deref(), Some("https://hooks.slack.com"));
        assert_eq!(config.signing, None);
        assert_eq!(config.timezone.0, "UTC");
        assert_eq!(config.max_age, Some(Duration::from_secs(3600)));
        assert_eq!(config.max_events_per_message, 10);
        assert_eq!(config.group_window, Some(Duration::from_secs(30)));
        assert_eq!(
            config.rate_limits,
            [RateLimit::new(1, Duration::from_secs(1))]
        );
        assert_eq!(config.rate_limit_penalty, Duration::from_secs(30));
        assert_eq!(config.batch_timeout(), Some(Duration::from_secs(30)));
        assert_eq!(
            config.default_event_types(),
            Some(vec!["abnormal".to_owned()])
        );
        // The URL is a secret: not in Debug.
        let debug = format!("{config:?}");
        assert!(!debug.contains("XXXXSECRETXXXX"), "{debug}");
    }

    #[test]
    fn each_platform_has_its_documented_limits() {
        let limits = |format: &str, url: &str| {
            let config = read(&format!("format = \"{format}\"\nurl = \"{url}\"\n")).unwrap();
            (config.rate_limits, config.rate_limit_penalty)
        };
        let second = Duration::from_secs(1);
        let minute = Duration::from_secs(60);
        assert_eq!(
            limits("feishu", "https://open.feishu.cn/open-apis/bot/v2/hook/abc"),
            (
                vec![RateLimit::new(5, second), RateLimit::new(100, minute)],
                minute
            )
        );
        assert_eq!(
            limits(
                "dingtalk",
                "https://oapi.dingtalk.com/robot/send?access_token=abc"
            ),
            (vec![RateLimit::new(20, minute)], Duration::from_secs(600))
        );
        assert_eq!(
            limits(
                "wecom",
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc"
            ),
            (vec![RateLimit::new(20, minute)], minute)
        );
        assert_eq!(
            limits(
                "teams",
                "https://prod.westeurope.logic.azure.com/workflows/1/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=abc"
            ),
            (vec![RateLimit::new(1, second)], Duration::from_secs(30))
        );
        assert_eq!(limits("json", "https://hooks.example.com/x").0, []);
    }

    #[test]
    fn the_generic_json_format_alerts_on_everything_by_default() {
        let config = read("format = \"json\"\nurl = \"https://hooks.example.com/in\"\n").unwrap();
        assert_eq!(config.default_event_types(), None);
        assert_eq!(config.max_age, None);
        assert_eq!(config.group_window, None);
        assert_eq!(config.batch_timeout(), None);
        assert_eq!(config.max_events_per_message, 100);
        assert!(config.rate_limits.is_empty());
    }

    #[test]
    fn every_key_is_read() {
        let config = read(
            r#"
format = "json"
url = "https://hooks.example.com/in?team=a%2Fb"
secret = "${WHSEC}"
template = '{"text": {{ service_name }}}'
timezone = "Europe/Berlin"
max_age = "2h"
max_events_per_message = 3
group_window = "5s"
rate_limit = [{ messages = 2, per = "1s" }, { messages = 10, per = "1m" }]
rate_limit_penalty = "0s"
request.timeout = "5s"
headers.X-Team = "ops"
compression = "gzip"
"#,
        )
        .unwrap();
        assert!(matches!(config.signing, Some(Signing::Standard(_))));
        assert!(config.template.is_some());
        assert_eq!(config.timezone.0, "Europe/Berlin");
        assert_eq!(config.max_age, Some(Duration::from_secs(7200)));
        assert_eq!(config.max_events_per_message, 3);
        assert_eq!(config.group_window, Some(Duration::from_secs(5)));
        assert_eq!(
            config.rate_limits,
            [
                RateLimit::new(2, Duration::from_secs(1)),
                RateLimit::new(10, Duration::from_secs(60))
            ]
        );
        assert_eq!(config.rate_limit_penalty, Duration::ZERO);
        assert_eq!(config.http.request.timeout, Duration::from_secs(5));
        assert_eq!(config.http.compression, Compression::Gzip);
        let debug = format!("{config:?}");
        assert!(!debug.contains("MfKQ9r8G"), "{debug}");
        // An empty list turns the rate limit off.
        let config =
            read("format = \"slack\"\nurl = \"https://h.example/x\"\nrate_limit = []\n").unwrap();
        assert!(config.rate_limits.is_empty());
    }

    #[test]
    fn github_signatures_take_any_secret_from_a_file_or_inline() {
        let config = read(
            "format = \"json\"\nurl = \"https://h.example/x\"\nsignature = \"github\"\nsecret_file = \"keys/hook\"\n",
        )
        .unwrap();
        assert_eq!(
            config.signing,
            Some(Signing::GitHub(SecretSource::File(
                "/etc/shipper/keys/hook".into()
            )))
        );
        let config = read(
            "format = \"dingtalk\"\nurl = \"https://oapi.dingtalk.com/robot/send?access_token=t\"\nsecret = \"SECdemo\"\n",
        )
        .unwrap();
        assert!(matches!(config.signing, Some(Signing::DingTalk(_))));
    }

    #[test]
    fn url_errors_never_quote_the_url() {
        for (text, expected) in [
            (
                "url = \"hooks.slack.com/services/SECRETPATH\"",
                "is not a URL",
            ),
            (
                "url = \"ftp://hooks.example.com/SECRETPATH\"",
                "http:// or https://",
            ),
            (
                "url = \"https://user:SECRETPASS@h.example/x\"",
                "credentials",
            ),
            (
                "url = \"https://h.example/x?sig=SECRET value\"",
                "would not be sent as written",
            ),
            (
                "url = \"https://h.example/SECRET\\\"path\"",
                "would not be sent as written",
            ),
        ] {
            let (key, _, message) = issue(&format!("format = \"slack\"\n{text}\n"));
            assert_eq!(key, "sinks.alerts.url");
            assert!(message.contains(expected), "{text}: {message}");
            assert!(!message.contains("SECRET"), "{message}");
        }
        let (key, _, message) = issue("format = \"slack\"\n");
        assert_eq!(key, "sinks.alerts.url");
        assert!(message.starts_with("is missing"), "{message}");
        let (key, _, message) =
            issue("format = \"slack\"\nurl = \"https://h.example/x\"\nurl_file = \"u\"\n");
        assert_eq!(key, "sinks.alerts.url_file");
        assert!(message.contains("keep one"), "{message}");
    }

    #[test]
    fn a_teams_query_is_kept_byte_for_byte() {
        let url = "https://prod-1.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=Ab-Cd_E%2Bf";
        let checked = check_url(url, Format::Teams, false).unwrap();
        assert_eq!(
            checked.query(),
            Some("api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=Ab-Cd_E%2Bf")
        );
        assert!(check_url("https://h.example/a b", Format::Teams, false).is_err());
        assert!(check_url("https://h.example/é?x=1", Format::Teams, false).is_err());
        assert!(check_url("https://h.example/x?q='1'", Format::Teams, false).is_err());
        assert!(check_url("https://h.example", Format::Teams, false).is_ok());
    }

    #[test]
    fn dingtalk_urls_need_their_token_and_no_signature_of_their_own() {
        let (key, _, message) =
            issue("format = \"dingtalk\"\nurl = \"https://oapi.dingtalk.com/robot/send\"\n");
        assert_eq!(key, "sinks.alerts.url");
        assert!(message.contains("access_token"), "{message}");
        let (_, _, message) = issue(
            "format = \"dingtalk\"\nurl = \"https://oapi.dingtalk.com/robot/send?access_token=t&timestamp=1&sign=x\"\nsecret = \"SECx\"\n",
        );
        assert!(message.contains("signs every post itself"), "{message}");
    }

    #[test]
    fn secrets_only_where_the_platform_signs() {
        let (key, line, message) =
            issue("format = \"wecom\"\nurl = \"https://q.example/send?key=k\"\nsecret = \"s\"\n");
        assert_eq!(key, "sinks.alerts.secret");
        assert_eq!(line, "secret = \"s\"");
        assert!(message.contains("no signature"), "{message}");
        let (key, _, message) =
            issue("format = \"slack\"\nurl = \"https://h.example/x\"\nsignature = \"github\"\n");
        assert_eq!(key, "sinks.alerts.signature");
        assert!(message.contains("format = \"json\" only"), "{message}");
        let (key, _, message) =
            issue("format = \"json\"\nurl = \"https://h.example/x\"\nsignature = \"github\"\n");
        assert_eq!(key, "sinks.alerts.signature");
        assert!(message.contains("needs secret"), "{message}");
        let (key, _, message) = issue(
            "format = \"json\"\nurl = \"https://h.example/x\"\nsecret = \"s\"\nsignature = \"hmac\"\n",
        );
        assert_eq!(key, "sinks.alerts.signature");
        assert!(message.contains("unknown signature"), "{message}");
        let (key, _, message) =
            issue("format = \"json\"\nurl = \"https://h.example/x\"\nsecret = \"${EMPTY}\"\n");
        assert_eq!(key, "sinks.alerts.secret");
        assert_eq!(message, "is empty");
    }

    #[test]
    fn a_standard_webhooks_secret_must_be_whsec_base64() {
        let (key, _, message) = issue(
            "format = \"json\"\nurl = \"https://h.example/x\"\nsecret = \"plain-SECRET-text\"\n",
        );
        assert_eq!(key, "sinks.alerts.secret");
        assert!(message.contains("whsec_"), "{message}");
        assert!(!message.contains("plain-SECRET"), "{message}");
        // GitHub signatures take it as it is.
        read(
            "format = \"json\"\nurl = \"https://h.example/x\"\nsecret = \"plain-SECRET-text\"\nsignature = \"github\"\n",
        )
        .unwrap();
    }

    #[test]
    fn values_are_checked() {
        let base = "format = \"slack\"\nurl = \"https://h.example/x\"\n";
        let (key, line, message) = issue(&format!("{base}timezone = \"Mars/Olympus\"\n"));
        assert_eq!(key, "sinks.alerts.timezone");
        assert_eq!(line, "timezone = \"Mars/Olympus\"");
        assert!(message.contains("IANA"), "{message}");
        let (key, _, message) = issue(&format!("{base}max_events_per_message = 0\n"));
        assert_eq!(key, "sinks.alerts.max_events_per_message");
        assert_eq!(message, "must be at least 1, got 0");
        let (key, _, _) = issue(&format!("{base}group_window = \"0s\"\n"));
        assert_eq!(key, "sinks.alerts.group_window");
        let (key, _, _) = issue(&format!("{base}max_age = \"0s\"\n"));
        assert_eq!(key, "sinks.alerts.max_age");
        let (key, _, message) = issue(&format!(
            "{base}rate_limit = [{{ messages = 0, per = \"1s\" }}]\n"
        ));
        assert_eq!(key, "sinks.alerts.rate_limit[0].messages");
        assert_eq!(message, "must be at least 1, got 0");
        let (key, _, _) = issue(&format!(
            "{base}rate_limit = [{{ messages = 1, per = \"1s\" }}, {{ messages = 1, per = \"0s\" }}]\n"
        ));
        assert_eq!(key, "sinks.alerts.rate_limit[1].per");
        let (key, _, message) = issue(&format!("{base}template = '{{}}'\n"));
        assert_eq!(key, "sinks.alerts.template");
        assert!(message.contains("format = \"json\" only"), "{message}");
        let (key, _, message) = issue(&format!("{base}compression = \"gzip\"\n"));
        assert_eq!(key, "sinks.alerts.compression");
        assert!(message.contains("chat platforms"), "{message}");
        let (key, _, message) = issue(&format!("{base}headers.Webhook-Id = \"x\"\n"));
        assert_eq!(key, "sinks.alerts.headers.Webhook-Id");
        assert!(message.contains("set by the sink"), "{message}");
        let (key, _, message) = issue("format = \"rss\"\nurl = \"https://h.example/x\"\n");
        assert_eq!(key, "sinks.alerts.format");
        assert!(message.contains("\"slack\""), "{message}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let table = DeTable::parse(
            "format = \"slack\"\nurl = \"https://h.example/x\"\nchannel = \"#ops\"\n",
        )
        .unwrap();
        match WebhookConfig::read(table, &context()) {
            Err(ReadError::Toml(e)) => assert!(e.to_string().contains("channel"), "{e}"),
            other => panic!("{other:?}"),
        }
        let table = DeTable::parse(
            "format = \"slack\"\nurl = \"https://h.example/x\"\nrate_limit = [{ count = 1, per = \"1s\" }]\n",
        )
        .unwrap();
        assert!(matches!(
            WebhookConfig::read(table, &context()),
            Err(ReadError::Toml(_))
        ));
    }

    #[test]
    fn a_template_that_cannot_give_json_is_refused_when_read() {
        let base = "format = \"json\"\nurl = \"https://h.example/x\"\n";
        // The value is inserted as JSON, quotes included: inside a string it breaks it.
        let (key, _, message) = issue(&format!(
            "{base}template = '{{\"text\": \"{{{{ service_name }}}}\"}}'\n"
        ));
        assert_eq!(key, "sinks.alerts.template");
        assert!(message.contains("not JSON"), "{message}");
        let (key, _, message) = issue(&format!("{base}template = '{{{{ nope }}'\n"));
        assert_eq!(key, "sinks.alerts.template");
        assert!(message.contains("syntax"), "{message}");
        let (_, _, message) = issue(&format!(
            "{base}template = '{{\"a\": {{{{ sevice_name }}}}}}'\n"
        ));
        assert!(
            message.contains("sevice_name") || message.contains("undefined"),
            "{message}"
        );
    }
}
