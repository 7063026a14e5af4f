//! The keys of a Loki sink, read into a validated [`LokiConfig`], and opening the sink.
//!
//! Label names follow the rule Loki's push path enforces (`[a-zA-Z_][a-zA-Z0-9_]*`: the
//! JSON decoder writes them unquoted into `{name="value"}` and the PromQL lexer reads them;
//! a dash, a dot or a colon breaks it), `__` starts names Loki reserves, and Loki 3 allows
//! at most 15 label names per stream. Templates may name the record's low-cardinality
//! fields only: every distinct label value makes a stream, and Loki's index is built for a
//! few thousand of them, not one per event.

use super::LokiSink;
use crate::config::{
    BuildContext, BuiltSink, ConfigContext, ConfigIssue, HumanDuration, ReadError, SinkConfig,
    Table, deserialize, duration,
};
use crate::http::{
    AuthTable, Compression, HeadersTable, HttpOptions, HttpTables, RequestTable, TlsTable,
};
use crate::{Sink, SinkError};
use record::EventRecord;
use reqwest::Url;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;
use tracing::warn;

/// Loki 3's `max_label_names_per_series`.
pub const MAX_LABELS: usize = 15;
/// Loki's `max_label_name_length`.
pub const MAX_LABEL_NAME_LENGTH: usize = 1024;
/// Loki's `max_structured_metadata_entries_count`.
pub const MAX_STRUCTURED_METADATA_ENTRIES: usize = 128;
/// Loki's `reject_old_samples_max_age`.
pub const DEFAULT_TOO_OLD_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// dskit's `MaxTenantIDLength`.
const MAX_TENANT_ID_LENGTH: usize = 150;
/// Where pushes go, below `endpoint`.
pub const PUSH_PATH: &str = "/loki/api/v1/push";
/// Loki's readiness endpoint, below `endpoint`.
pub const READY_PATH: &str = "/ready";

/// `[sinks.NAME]` of `type = "loki"`, without the common keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LokiTable {
    endpoint: Spanned<String>,
    encoding: Option<Spanned<String>>,
    tenant_id: Option<Spanned<String>>,
    labels: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    structured_metadata: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    line_format: Option<Spanned<String>>,
    too_old_after: Option<Spanned<HumanDuration>>,
    too_old: Option<Spanned<String>>,
    request: Option<Spanned<RequestTable>>,
    tls: Option<Spanned<TlsTable>>,
    auth: Option<Spanned<AuthTable>>,
    compression: Option<Spanned<String>>,
    headers: Option<Spanned<HeadersTable>>,
}

/// `encoding`: how a push is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LokiEncoding {
    /// `logproto.PushRequest`, snappy block compression, `application/x-protobuf`.
    #[default]
    Protobuf,
    /// `{"streams":[...]}`, `application/json`, gzipped when `compression = "gzip"`.
    Json,
}

/// `line_format`: what a record's line is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LineFormat {
    /// The record's JSON line.
    #[default]
    Json,
    /// The record's `event_info`.
    Text,
}

/// `too_old`: what happens to a record older than `too_old_after`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TooOld {
    /// Dead-lettered as an expected `too_old` refusal.
    #[default]
    DeadLetter,
    /// Sent with the current time; its `occur_time` stays in the line. At least once.
    RewriteTimestamp,
}

/// A field of the record a template may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Id,
    Source,
    ProjectId,
    ServiceId,
    ServiceName,
    OccurTime,
    Timestamp,
    EventType,
    EventInfo,
}

impl Field {
    const ALL: [Field; 9] = [
        Field::Id,
        Field::Source,
        Field::ProjectId,
        Field::ServiceId,
        Field::ServiceName,
        Field::OccurTime,
        Field::Timestamp,
        Field::EventType,
        Field::EventInfo,
    ];

    /// The field's name in the record and in templates.
    pub fn name(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::Source => "source",
            Field::ProjectId => "project_id",
            Field::ServiceId => "service_id",
            Field::ServiceName => "service_name",
            Field::OccurTime => "occur_time",
            Field::Timestamp => "timestamp",
            Field::EventType => "event_type",
            Field::EventInfo => "event_info",
        }
    }

    fn by_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The field's value in `record` (`occur_time` in decimal).
    pub fn value(self, record: &EventRecord) -> Cow<'_, str> {
        Cow::Borrowed(match self {
            Field::Id => &record.id,
            Field::Source => &record.source,
            Field::ProjectId => &record.project_id,
            Field::ServiceId => &record.service_id,
            Field::ServiceName => &record.service_name,
            Field::OccurTime => return Cow::Owned(record.occur_time.to_string()),
            Field::Timestamp => &record.timestamp,
            Field::EventType => &record.event_type,
            Field::EventInfo => &record.event_info,
        })
    }

    /// Why the field cannot be a label, if it cannot.
    fn not_a_label(self) -> Option<&'static str> {
        match self {
            Field::Id => Some("every event has its own id"),
            Field::OccurTime | Field::Timestamp => Some("nearly every event has its own time"),
            Field::EventInfo => Some("event texts vary without bound"),
            Field::Source
            | Field::ProjectId
            | Field::ServiceId
            | Field::ServiceName
            | Field::EventType => None,
        }
    }
}

/// One part of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(Field),
}

/// A value written with `{{ field }}` placeholders, such as `"prod-{{ source }}"`.
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    pieces: Vec<Piece>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl Template {
    /// Parses `text`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err("has a \"{{\" without its \"}}\"".to_owned());
            };
            let name = after[..close].trim();
            if name.is_empty() {
                return Err("has an empty \"{{ }}\"; write a field name inside".to_owned());
            }
            let Some(field) = Field::by_name(name) else {
                let known: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
                return Err(format!(
                    "names {name:?}, which is not a field of the record (the fields: {})",
                    known.join(", ")
                ));
            };
            pieces.push(Piece::Field(field));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Template {
            text: text.to_owned(),
            pieces,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The fields it names.
    pub fn fields(&self) -> impl Iterator<Item = Field> + '_ {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Field(f) => Some(*f),
            Piece::Text(_) => None,
        })
    }

    /// The value for `record`.
    pub fn render(&self, record: &EventRecord) -> String {
        let mut out = String::new();
        self.render_into(record, &mut out);
        out
    }

    /// Appends the value for `record` to `out` (a buffer reused from record to record).
    pub fn render_into(&self, record: &EventRecord, out: &mut String) {
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Field(field) => out.push_str(&field.value(record)),
            }
        }
    }
}

/// A validated Loki sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LokiConfig {
    /// `endpoint`, `${VAR}`s replaced, without a trailing `/`.
    pub endpoint: String,
    /// `{endpoint}/loki/api/v1/push`.
    pub push_url: Url,
    /// `{endpoint}/ready`.
    pub ready_url: Url,
    pub encoding: LokiEncoding,
    /// Sent as `X-Scope-OrgID`.
    pub tenant_id: Option<String>,
    /// Label name and template, ordered by name.
    pub labels: Vec<(String, Template)>,
    /// Structured metadata name and template, ordered by name.
    pub structured_metadata: Vec<(String, Template)>,
    pub line_format: LineFormat,
    pub too_old_after: Duration,
    pub too_old: TooOld,
    /// `request`, `tls`, `auth`, `compression`, `headers`.
    pub http: HttpOptions,
}

pub(super) fn read(
    table: Table<'_>,
    ctx: &dyn ConfigContext,
) -> Result<Box<dyn SinkConfig>, ReadError> {
    let config = LokiConfig::read(table, ctx)?;
    for warning in config.warnings() {
        warn!(sink = %ctx.sink_name(), "{warning}");
    }
    Ok(Box::new(config))
}

impl LokiConfig {
    /// Reads and validates a `type = "loki"` table (common keys removed). Pure.
    pub fn read(table: Table<'_>, ctx: &dyn ConfigContext) -> Result<LokiConfig, ReadError> {
        let table: LokiTable = deserialize(table)?;
        let (endpoint, push_url, ready_url) = read_endpoint(&table.endpoint, ctx)?;
        let encoding = choice(
            ctx,
            &table.encoding,
            "encoding",
            &[
                ("protobuf", LokiEncoding::Protobuf),
                ("json", LokiEncoding::Json),
            ],
        )?
        .unwrap_or_default();
        let tenant_id = table
            .tenant_id
            .as_ref()
            .map(|value| read_tenant_id(value, ctx))
            .transpose()?;
        let labels = match &table.labels {
            None => default_labels(),
            Some(map) => read_named_templates(ctx, map, "labels", true)?,
        };
        let structured_metadata = match &table.structured_metadata {
            None => Vec::new(),
            Some(map) => read_named_templates(ctx, map, "structured_metadata", false)?,
        };
        let line_format = choice(
            ctx,
            &table.line_format,
            "line_format",
            &[("json", LineFormat::Json), ("text", LineFormat::Text)],
        )?
        .unwrap_or_default();
        let too_old_after = duration(
            ctx,
            &table.too_old_after,
            "too_old_after",
            DEFAULT_TOO_OLD_AFTER,
            false,
        )?;
        let too_old = choice(
            ctx,
            &table.too_old,
            "too_old",
            &[
                ("dead_letter", TooOld::DeadLetter),
                ("rewrite_timestamp", TooOld::RewriteTimestamp),
            ],
        )?
        .unwrap_or_default();
        if let Some(headers) = &table.headers
            && let Some((name, value)) = headers
                .get_ref()
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("x-scope-orgid"))
        {
            return Err(ctx
                .issue(
                    value.span(),
                    &format!("headers.{name}"),
                    "is set by the sink from tenant_id; set tenant_id instead".to_owned(),
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
        if encoding == LokiEncoding::Protobuf
            && http.compression == Compression::Gzip
            && let Some(value) = &table.compression
        {
            return Err(ctx
                .issue(
                    value.span(),
                    "compression",
                    "applies to encoding = \"json\" only: protobuf pushes are \
                     snappy-compressed already (remove compression, or set encoding = \"json\")"
                        .to_owned(),
                )
                .into());
        }
        Ok(LokiConfig {
            endpoint,
            push_url,
            ready_url,
            encoding,
            tenant_id,
            labels,
            structured_metadata,
            line_format,
            too_old_after,
            too_old,
            http,
        })
    }

    /// What an operator should know about these settings, to log when they are read.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let names_service = self.labels.iter().any(|(_, template)| {
            template
                .fields()
                .any(|f| matches!(f, Field::ServiceName | Field::ServiceId))
        });
        if !names_service {
            warnings.push(
                "The labels name neither {{ service_name }} nor {{ service_id }}, so the events \
                 of several services share a stream. During a backfill one service's older \
                 events then reach the stream after another's newer ones, and Loki refuses \
                 those more than an hour behind its newest entry (\"entry too far behind\"). \
                 Add service_name = \"{{ service_name }}\" to labels."
                    .to_owned(),
            );
        }
        if self.too_old == TooOld::RewriteTimestamp {
            warnings.push(
                "too_old = \"rewrite_timestamp\": an entry sent with the current time becomes \
                 the newest of its stream, and Loki then refuses that stream's entries more than \
                 an hour older (\"entry too far behind\"), so the rest of a backfill older than \
                 an hour is dead-lettered; re-sends of rewritten entries are duplicates in Loki \
                 (at least once)."
                    .to_owned(),
            );
        }
        if self.line_format == LineFormat::Text {
            warnings.push(
                "line_format = \"text\": two identical events in the same millisecond have the \
                 same line and timestamp, and Loki keeps only one of them; the default \
                 line_format = \"json\" keeps both (their ids differ)."
                    .to_owned(),
            );
            let keeps_time = self.structured_metadata.iter().any(|(_, t)| {
                t.fields()
                    .any(|f| matches!(f, Field::OccurTime | Field::Timestamp))
            });
            if self.too_old == TooOld::RewriteTimestamp && !keeps_time {
                warnings.push(
                    "too_old = \"rewrite_timestamp\" with line_format = \"text\": an entry sent \
                     with the current time loses its occur_time; add e.g. \
                     structured_metadata.occur_time = \"{{ timestamp }}\"."
                        .to_owned(),
                );
            }
        }
        warnings
    }
}

#[async_trait::async_trait]
impl SinkConfig for LokiConfig {
    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn concurrency(&self) -> usize {
        self.http.request.concurrency
    }

    /// Builds the HTTP client (reads TLS and secret files). No network.
    async fn build(&self, name: &str, _: BuildContext) -> Result<BuiltSink, SinkError> {
        Ok(BuiltSink {
            sink: Arc::new(LokiSink::new(name, self).await?),
            state: None,
            recovered: Vec::new(),
        })
    }

    /// `GET {endpoint}/ready`.
    async fn check(&self, name: &str) -> Result<(), SinkError> {
        LokiSink::new(name, self).await?.healthcheck().await
    }
}

fn default_labels() -> Vec<(String, Template)> {
    [Field::EventType, Field::ServiceName, Field::Source]
        .into_iter()
        .map(|field| {
            let template = Template {
                text: format!("{{{{ {} }}}}", field.name()),
                pieces: vec![Piece::Field(field)],
            };
            (field.name().to_owned(), template)
        })
        .collect()
}

/// One of `options`, by its written name, or `None` when the key is absent.
fn choice<T: Copy>(
    ctx: &dyn ConfigContext,
    value: &Option<Spanned<String>>,
    field: &str,
    options: &[(&str, T)],
) -> Result<Option<T>, ConfigIssue> {
    let Some(value) = value else {
        return Ok(None);
    };
    match options.iter().find(|(name, _)| *name == value.get_ref()) {
        Some((_, choice)) => Ok(Some(*choice)),
        None => {
            let names: Vec<String> = options.iter().map(|(n, _)| format!("{n:?}")).collect();
            Err(ctx.issue(
                value.span(),
                field,
                format!(
                    "unknown {field} {:?}; use {}",
                    value.get_ref(),
                    names.join(" or ")
                ),
            ))
        }
    }
}

/// The base URL (no trailing `/`), the push URL and the readiness URL.
fn read_endpoint(
    value: &Spanned<String>,
    ctx: &dyn ConfigContext,
) -> Result<(String, Url, Url), ConfigIssue> {
    let fail = |message: &str| ctx.issue(value.span(), "endpoint", message.to_owned());
    let text = ctx.expand(value, "endpoint")?;
    let base = text.trim().trim_end_matches('/').to_owned();
    let url = Url::parse(&base).map_err(|e| {
        fail(&format!(
            "is not a URL ({e}); write the base URL of Loki, e.g. \"http://loki:3100\""
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(fail("must be an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(fail("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail(
            "must not carry credentials; use auth (and its *_file keys) instead",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(fail(
            "must be the base URL of Loki, without a query or a fragment (pushes go to \
             {endpoint}/loki/api/v1/push)",
        ));
    }
    let join = |path: &str| {
        Url::parse(&format!("{base}{path}")).map_err(|e| fail(&format!("is not a URL ({e})")))
    };
    let push = join(PUSH_PATH)?;
    let ready = join(READY_PATH)?;
    Ok((base, push, ready))
}

/// What dskit's `ValidTenantID` allows.
fn read_tenant_id(value: &Spanned<String>, ctx: &dyn ConfigContext) -> Result<String, ConfigIssue> {
    let fail = |message: String| ctx.issue(value.span(), "tenant_id", message);
    let id = ctx.expand(value, "tenant_id")?;
    if id.is_empty() {
        return Err(fail("is empty".to_owned()));
    }
    let allowed = |c: char| {
        c.is_ascii_alphanumeric() || matches!(c, '!' | '-' | '_' | '.' | '*' | '\'' | '(' | ')')
    };
    if let Some(c) = id.chars().find(|c| !allowed(*c)) {
        return Err(fail(format!(
            "contains {c:?}, which Loki does not allow in a tenant id (letters, digits and \
             ! - _ . * ' ( ) only)"
        )));
    }
    if id.len() > MAX_TENANT_ID_LENGTH {
        return Err(fail(format!(
            "is longer than Loki's {MAX_TENANT_ID_LENGTH} characters"
        )));
    }
    if id == "." || id == ".." {
        return Err(fail("cannot be \".\" or \"..\"".to_owned()));
    }
    Ok(id)
}

/// `labels` or `structured_metadata`: names checked, `${VAR}`s replaced, templates parsed;
/// in labels, only low-cardinality fields.
fn read_named_templates(
    ctx: &dyn ConfigContext,
    map: &Spanned<BTreeMap<String, Spanned<String>>>,
    table: &str,
    labels: bool,
) -> Result<Vec<(String, Template)>, ConfigIssue> {
    let entries = map.get_ref();
    let limit = if labels {
        MAX_LABELS
    } else {
        MAX_STRUCTURED_METADATA_ENTRIES
    };
    if labels && entries.is_empty() {
        return Err(ctx.issue(
            map.span(),
            table,
            "needs at least one label: Loki refuses a stream without labels".to_owned(),
        ));
    }
    if entries.len() > limit {
        return Err(ctx.issue(
            map.span(),
            table,
            format!("has {} names; Loki allows at most {limit}", entries.len()),
        ));
    }
    let mut out = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        let field = dotted(table, name);
        let span = value.span();
        check_name(name).map_err(|why| ctx.issue(span.clone(), &field, why))?;
        let text = ctx.expand(value, &field)?;
        if text.is_empty() {
            return Err(ctx.issue(
                span,
                &field,
                "is empty, and Loki drops a name whose value is empty".to_owned(),
            ));
        }
        let template =
            Template::parse(&text).map_err(|why| ctx.issue(span.clone(), &field, why))?;
        if labels
            && let Some((bad, why)) = template
                .fields()
                .find_map(|f| f.not_a_label().map(|why| (f, why)))
        {
            return Err(ctx.issue(
                span,
                &field,
                format!(
                    "cannot use {{{{ {} }}}} in a label: {why}, and every distinct label value \
                     makes a new stream (high cardinality slows Loki down and hits its stream \
                     limit); it is in the JSON line already, or put it in structured_metadata",
                    bad.name()
                ),
            ));
        }
        out.push((name.clone(), template));
    }
    Ok(out)
}

/// Loki's label name rule; the error says why a name breaks it.
fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let legal = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !legal {
        return Err(format!(
            "{name:?} is not a name Loki accepts: letters, digits and underscores, not \
             starting with a digit ([a-zA-Z_][a-zA-Z0-9_]*; no dashes, dots or colons)"
        ));
    }
    if name.starts_with("__") {
        return Err(format!(
            "{name:?} starts with \"__\", which Loki reserves for its own names"
        ));
    }
    if name.len() > MAX_LABEL_NAME_LENGTH {
        return Err(format!(
            "is longer than Loki's {MAX_LABEL_NAME_LENGTH} characters"
        ));
    }
    Ok(())
}

/// `labels.env`, or `labels."odd name"` when the name is not a bare TOML key.
fn dotted(table: &str, name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        format!("{table}.{name}")
    } else {
        format!("{table}.{name:?}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::TestContext;
    use crate::http::{HttpAuth, SecretSource};
    use toml::de::DeTable;

    /// The sink `logs` of a config file in `/etc/shipper`, with a fixed environment.
    fn context() -> TestContext {
        TestContext::new(
            "logs",
            &[
                ("LOKI_URL", "https://logs.example.com/"),
                ("TENANT", "team-a"),
                ("ENV", "prod"),
                ("TOKEN", "tok-SECRET"),
            ],
        )
    }

    fn read(text: &str) -> Result<LokiConfig, ReadError> {
        let table = DeTable::parse(text).unwrap();
        LokiConfig::read(table, &context())
    }

    fn valid(text: &str) -> LokiConfig {
        match read(text) {
            Ok(config) => config,
            Err(ReadError::Invalid(issue)) => panic!("{issue:?}"),
            Err(ReadError::Toml(e)) => panic!("{e}"),
        }
    }

    /// The key, the line of the config the issue points at, and the message.
    fn issue(text: &str) -> (String, String, String) {
        match read(text) {
            Err(ReadError::Invalid(issue)) => {
                (issue.key, line_of(text, &issue.span), issue.message)
            }
            Err(ReadError::Toml(e)) => panic!("a table error, not an issue: {e}"),
            Ok(config) => panic!("accepted: {config:?}"),
        }
    }

    /// The line of `text` that `span` starts in.
    fn line_of(text: &str, span: &std::ops::Range<usize>) -> String {
        let start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
        let end = text[span.start..]
            .find('\n')
            .map_or(text.len(), |i| span.start + i);
        text[start..end].to_owned()
    }

    const ENDPOINT: &str = "endpoint = \"http://loki:3100\"\n";

    fn labels(config: &LokiConfig) -> Vec<(&str, &str)> {
        config
            .labels
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect()
    }

    #[test]
    fn defaults() {
        let config = valid(ENDPOINT);
        assert_eq!(config.endpoint, "http://loki:3100");
        assert_eq!(
            config.push_url.as_str(),
            "http://loki:3100/loki/api/v1/push"
        );
        assert_eq!(config.ready_url.as_str(), "http://loki:3100/ready");
        assert_eq!(config.encoding, LokiEncoding::Protobuf);
        assert_eq!(config.tenant_id, None);
        assert_eq!(
            labels(&config),
            [
                ("event_type", "{{ event_type }}"),
                ("service_name", "{{ service_name }}"),
                ("source", "{{ source }}"),
            ]
        );
        assert!(config.structured_metadata.is_empty());
        assert_eq!(config.line_format, LineFormat::Json);
        assert_eq!(config.too_old_after, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(config.too_old, TooOld::DeadLetter);
        assert_eq!(config.http, HttpOptions::default());
        assert_eq!(config.concurrency(), 1);
        assert!(config.warnings().is_empty(), "{:?}", config.warnings());
        assert_eq!(config.kind(), "loki");
    }

    #[test]
    fn every_key_is_read() {
        let config = valid(
            r#"
endpoint = "${LOKI_URL}"
encoding = "json"
tenant_id = "${TENANT}"
line_format = "text"
too_old_after = "3d"
too_old = "rewrite_timestamp"
compression = "gzip"
request.concurrency = 3
auth = { type = "bearer", token = "${TOKEN}" }
headers.X-Team = "logs"
[labels]
service = "{{ service_name }}"
env = "${ENV}-{{source}}"
kind = "{{ event_type }}"
[structured_metadata]
service_id = "{{ service_id }}"
occur_time = "{{ timestamp }}"
"#,
        );
        assert_eq!(config.endpoint, "https://logs.example.com");
        assert_eq!(
            config.push_url.as_str(),
            "https://logs.example.com/loki/api/v1/push"
        );
        assert_eq!(config.encoding, LokiEncoding::Json);
        assert_eq!(config.tenant_id.as_deref(), Some("team-a"));
        assert_eq!(
            labels(&config),
            [
                ("env", "prod-{{source}}"),
                ("kind", "{{ event_type }}"),
                ("service", "{{ service_name }}"),
            ]
        );
        let metadata: Vec<&str> = config
            .structured_metadata
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(metadata, ["occur_time", "service_id"]);
        assert_eq!(config.line_format, LineFormat::Text);
        assert_eq!(config.too_old_after, Duration::from_secs(3 * 24 * 3600));
        assert_eq!(config.too_old, TooOld::RewriteTimestamp);
        assert_eq!(config.http.compression, Compression::Gzip);
        assert_eq!(config.concurrency(), 3);
        assert_eq!(
            config.http.auth,
            Some(HttpAuth::Bearer {
                token: SecretSource::Inline(crate::http::Secret::new("tok-SECRET"))
            })
        );
        assert_eq!(config.http.headers.len(), 1);
        // The service is in the labels and the time in the metadata: only the warnings
        // about rewritten timestamps and text lines.
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("rewrite_timestamp"), "{warnings:?}");
        assert!(warnings[1].contains("keeps only one"), "{warnings:?}");
        assert!(!format!("{config:?}").contains("tok-SECRET"));
    }

    #[test]
    fn templates_render_record_fields() {
        let record = EventRecord::new(
            "prod",
            "billing",
            record::IdParts {
                project_id: "p1",
                service_id: "s1",
                occur_time: 1562597251764,
                event_type: "normal",
                event_info: "started",
                twin: 1,
            },
        );
        let template = Template::parse("{{source}}/{{ service_name }}:{{  event_type }}!").unwrap();
        assert_eq!(template.render(&record), "prod/billing:normal!");
        let all = Template::parse(
            "{{id}} {{project_id}} {{service_id}} {{occur_time}} {{timestamp}} {{event_info}}",
        )
        .unwrap();
        assert_eq!(
            all.render(&record),
            format!(
                "{} p1 s1 1562597251764 2019-07-08T14:47:31.764Z started",
                record.id
            )
        );
        assert_eq!(Template::parse("static").unwrap().render(&record), "static");
        assert_eq!(Template::parse("a }} b").unwrap().render(&record), "a }} b");
    }

    #[test]
    fn endpoint_must_be_an_http_base_url() {
        let (key, line, message) = issue("endpoint = \"loki:3100\"\n");
        assert_eq!(key, "sinks.logs.endpoint");
        assert_eq!(line, "endpoint = \"loki:3100\"");
        assert_eq!(message, "must be an http:// or https:// URL");
        let (_, _, message) = issue("endpoint = \"not a url\"\n");
        assert!(message.starts_with("is not a URL"), "{message}");
        let (_, _, message) = issue("endpoint = \"http://u:p@loki:3100\"\n");
        assert!(message.contains("credentials"), "{message}");
        assert!(!message.contains("u:p"), "{message}");
        let (_, _, message) = issue("endpoint = \"http://loki:3100/loki/api/v1/push?x=1\"\n");
        assert!(message.contains("without a query"), "{message}");
        let (key, _, message) = issue("endpoint = \"${NOPE}\"\n");
        assert_eq!(key, "sinks.logs.endpoint");
        assert_eq!(message, "environment variable NOPE is not set");
        // A path prefix (a gateway) is kept; trailing slashes are not.
        let config = valid("endpoint = \"http://gw:8080/tenant-a//\"\n");
        assert_eq!(
            config.push_url.as_str(),
            "http://gw:8080/tenant-a/loki/api/v1/push"
        );
        assert_eq!(config.ready_url.as_str(), "http://gw:8080/tenant-a/ready");
    }

    #[test]
    fn choices_name_their_key_and_options() {
        let (key, line, message) = issue(&format!("{ENDPOINT}encoding = \"snappy\"\n"));
        assert_eq!(key, "sinks.logs.encoding");
        assert_eq!(line, "encoding = \"snappy\"");
        assert_eq!(
            message,
            "unknown encoding \"snappy\"; use \"protobuf\" or \"json\""
        );
        let (key, _, message) = issue(&format!("{ENDPOINT}line_format = \"logfmt\"\n"));
        assert_eq!(key, "sinks.logs.line_format");
        assert_eq!(
            message,
            "unknown line_format \"logfmt\"; use \"json\" or \"text\""
        );
        let (key, _, message) = issue(&format!("{ENDPOINT}too_old = \"drop\"\n"));
        assert_eq!(key, "sinks.logs.too_old");
        assert_eq!(
            message,
            "unknown too_old \"drop\"; use \"dead_letter\" or \"rewrite_timestamp\""
        );
        let (key, line, message) = issue(&format!("{ENDPOINT}too_old_after = \"0s\"\n"));
        assert_eq!(key, "sinks.logs.too_old_after");
        assert_eq!(line, "too_old_after = \"0s\"");
        assert_eq!(message, "must be longer than 0");
    }

    #[test]
    fn gzip_goes_with_json_only() {
        let (key, line, message) = issue(&format!("{ENDPOINT}compression = \"gzip\"\n"));
        assert_eq!(key, "sinks.logs.compression");
        assert_eq!(line, "compression = \"gzip\"");
        assert!(
            message.starts_with("applies to encoding = \"json\" only"),
            "{message}"
        );
        let config = valid(&format!(
            "{ENDPOINT}encoding = \"json\"\ncompression = \"gzip\"\n"
        ));
        assert_eq!(config.http.compression, Compression::Gzip);
        // An explicit "none" is fine with protobuf.
        let config = valid(&format!("{ENDPOINT}compression = \"none\"\n"));
        assert_eq!(config.encoding, LokiEncoding::Protobuf);
    }

    #[test]
    fn tenant_ids_follow_lokis_rules() {
        let (key, line, message) = issue(&format!("{ENDPOINT}tenant_id = \"team a\"\n"));
        assert_eq!(key, "sinks.logs.tenant_id");
        assert_eq!(line, "tenant_id = \"team a\"");
        assert!(message.starts_with("contains ' '"), "{message}");
        let (_, _, message) = issue(&format!("{ENDPOINT}tenant_id = \"a|b\"\n"));
        assert!(message.starts_with("contains '|'"), "{message}");
        let (_, _, message) = issue(&format!("{ENDPOINT}tenant_id = \"\"\n"));
        assert_eq!(message, "is empty");
        let (_, _, message) = issue(&format!("{ENDPOINT}tenant_id = \"..\"\n"));
        assert!(message.contains("\"..\""), "{message}");
        let long = "t".repeat(151);
        let (_, _, message) = issue(&format!("{ENDPOINT}tenant_id = \"{long}\"\n"));
        assert!(message.contains("150"), "{message}");
        let config = valid(&format!("{ENDPOINT}tenant_id = \"Team_1.(prod)*!'-\"\n"));
        assert_eq!(config.tenant_id.as_deref(), Some("Team_1.(prod)*!'-"));
    }

    #[test]
    fn the_tenant_header_comes_from_tenant_id_only() {
        let (key, line, message) = issue(&format!(
            "{ENDPOINT}[headers]\nX-Scope-OrgID = \"team-a\"\n"
        ));
        assert_eq!(key, "sinks.logs.headers.X-Scope-OrgID");
        assert_eq!(line, "X-Scope-OrgID = \"team-a\"");
        assert_eq!(
            message,
            "is set by the sink from tenant_id; set tenant_id instead"
        );
    }

    #[test]
    fn label_names_follow_lokis_rules() {
        let (key, line, message) = issue(&format!(
            "{ENDPOINT}[labels]\n\"service-id\" = \"{{{{ service_id }}}}\"\n"
        ));
        assert_eq!(key, "sinks.logs.labels.service-id");
        assert_eq!(line, "\"service-id\" = \"{{ service_id }}\"");
        assert!(message.contains("no dashes, dots or colons"), "{message}");
        let (key, _, message) = issue(&format!("{ENDPOINT}labels.\"a.b\" = \"x\"\n"));
        assert_eq!(key, "sinks.logs.labels.\"a.b\"");
        assert!(message.contains("[a-zA-Z_][a-zA-Z0-9_]*"), "{message}");
        let (_, _, message) = issue(&format!("{ENDPOINT}labels.\"1st\" = \"x\"\n"));
        assert!(message.contains("not a name Loki accepts"), "{message}");
        let (key, line, message) = issue(&format!("{ENDPOINT}labels.__name__ = \"x\"\n"));
        assert_eq!(key, "sinks.logs.labels.__name__");
        assert_eq!(line, "labels.__name__ = \"x\"");
        assert!(message.contains("reserves"), "{message}");
        let (key, _, message) = issue(&format!(
            "{ENDPOINT}[structured_metadata]\n\"trace-id\" = \"{{{{ id }}}}\"\n"
        ));
        assert_eq!(key, "sinks.logs.structured_metadata.trace-id");
        assert!(message.contains("not a name Loki accepts"), "{message}");
    }

    #[test]
    fn high_cardinality_fields_are_refused_in_labels_only() {
        for (field, why) in [
            ("event_info", "event texts vary without bound"),
            ("id", "every event has its own id"),
            ("occur_time", "nearly every event has its own time"),
            ("timestamp", "nearly every event has its own time"),
        ] {
            let text = format!(
                "{ENDPOINT}[labels]\nsvc = \"{{{{ service_name }}}}\"\nx = \"at {{{{ {field} }}}}\"\n"
            );
            let (key, line, message) = issue(&text);
            assert_eq!(key, "sinks.logs.labels.x");
            assert_eq!(line, format!("x = \"at {{{{ {field} }}}}\""));
            assert!(
                message.starts_with(&format!("cannot use {{{{ {field} }}}} in a label: {why}")),
                "{message}"
            );
            assert!(message.contains("cardinality"), "{message}");
        }
        let config = valid(&format!(
            "{ENDPOINT}[structured_metadata]\nid = \"{{{{ id }}}}\"\ninfo = \"{{{{ event_info }}}}\"\n"
        ));
        assert_eq!(config.structured_metadata.len(), 2);
    }

    #[test]
    fn templates_must_parse() {
        let (key, _, message) = issue(&format!("{ENDPOINT}labels.svc = \"{{{{ service_name\"\n"));
        assert_eq!(key, "sinks.logs.labels.svc");
        assert_eq!(message, "has a \"{{\" without its \"}}\"");
        let (_, _, message) = issue(&format!("{ENDPOINT}labels.svc = \"{{{{ }}}}\"\n"));
        assert!(message.starts_with("has an empty"), "{message}");
        let (_, _, message) = issue(&format!("{ENDPOINT}labels.svc = \"{{{{ service }}}}\"\n"));
        assert!(
            message.starts_with("names \"service\", which is not a field of the record"),
            "{message}"
        );
        let (_, _, message) = issue(&format!("{ENDPOINT}labels.svc = \"\"\n"));
        assert!(message.starts_with("is empty"), "{message}");
        let (key, _, message) = issue(&format!("{ENDPOINT}labels.env = \"${{NOPE}}\"\n"));
        assert_eq!(key, "sinks.logs.labels.env");
        assert_eq!(message, "environment variable NOPE is not set");
    }

    #[test]
    fn label_count_is_bounded() {
        let (key, line, message) = issue(&format!("{ENDPOINT}labels = {{}}\n"));
        assert_eq!(key, "sinks.logs.labels");
        assert_eq!(line, "labels = {}");
        assert!(message.starts_with("needs at least one label"), "{message}");
        let many: String = (0..16).map(|i| format!("l{i} = \"x\"\n")).collect();
        let (key, _, message) = issue(&format!("{ENDPOINT}[labels]\n{many}"));
        assert_eq!(key, "sinks.logs.labels");
        assert_eq!(message, "has 16 names; Loki allows at most 15");
        let fifteen: String = (0..14).map(|i| format!("l{i} = \"x\"\n")).collect();
        let config = valid(&format!(
            "{ENDPOINT}[labels]\n{fifteen}svc = \"{{{{ service_name }}}}\"\n"
        ));
        assert_eq!(config.labels.len(), 15);
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_table_errors() {
        for text in [
            format!("{ENDPOINT}label = {{ a = \"b\" }}\n"),
            format!("{ENDPOINT}labels.a = 1\n"),
            format!("{ENDPOINT}too_old_after = \"soon\"\n"),
            "encoding = \"json\"\n".to_owned(),
            format!("{ENDPOINT}request.timout = \"5s\"\n"),
        ] {
            match read(&text) {
                Err(ReadError::Toml(_)) => {}
                Err(ReadError::Invalid(issue)) => panic!("{text}: {issue:?}"),
                Ok(_) => panic!("{text}: accepted"),
            }
        }
    }

    #[test]
    fn shared_http_keys_name_their_full_key() {
        let (key, line, message) = issue(&format!("{ENDPOINT}request.concurrency = 0\n"));
        assert_eq!(key, "sinks.logs.request.concurrency");
        assert_eq!(line, "request.concurrency = 0");
        assert_eq!(message, "must be at least 1, got 0");
    }

    #[test]
    fn warns_when_labels_leave_out_the_service() {
        let config = valid(&format!(
            "{ENDPOINT}[labels]\nkind = \"{{{{ event_type }}}}\"\n"
        ));
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("entry too far behind"), "{warnings:?}");
        for identity in ["{{ service_id }}", "svc-{{ service_name }}"] {
            let config = valid(&format!("{ENDPOINT}labels.s = \"{identity}\"\n"));
            assert!(config.warnings().is_empty(), "{identity}");
        }
    }

    #[test]
    fn warns_about_text_lines() {
        let config = valid(&format!(
            "{ENDPOINT}line_format = \"text\"\ntoo_old = \"rewrite_timestamp\"\n"
        ));
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("entry too far behind"), "{warnings:?}");
        assert!(warnings[1].contains("keeps only one"), "{warnings:?}");
        assert!(warnings[2].contains("loses its occur_time"), "{warnings:?}");
    }
}
