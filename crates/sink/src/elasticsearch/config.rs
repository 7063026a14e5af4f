//! The keys of an Elasticsearch sink: `endpoint` or `endpoints`, `index`, `mode`,
//! `pipeline`, and the shared HTTP keys (`request`, `tls`, `auth`, `compression`,
//! `headers`, read by [`HttpOptions::read`]). Reading is pure; every error names the
//! full dotted key at its value.

use super::ElasticsearchSink;
use super::request_builder::{IndexPattern, Mode};
use crate::config::{
    BuildContext, BuiltSink, ConfigContext, ConfigIssue, ReadError, SinkConfig, Table, deserialize,
};
use crate::http::{AuthTable, HeadersTable, HttpOptions, HttpTables, RequestTable, TlsTable};
use crate::{Sink, SinkError};
use reqwest::Url;
use serde::Deserialize;
use std::ops::Range;
use std::sync::Arc;
use toml::Spanned;

/// Defaults of the Elasticsearch keys.
pub mod defaults {
    /// `index`.
    pub const INDEX: &str = "modelarts-events";
}

/// `[sinks.NAME]` of `type = "elasticsearch"`, without the common keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ElasticsearchTable {
    endpoint: Option<Spanned<String>>,
    endpoints: Option<Spanned<Vec<Spanned<String>>>>,
    index: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    pipeline: Option<Spanned<String>>,
    request: Option<Spanned<RequestTable>>,
    tls: Option<Spanned<TlsTable>>,
    auth: Option<Spanned<AuthTable>>,
    compression: Option<Spanned<String>>,
    headers: Option<Spanned<HeadersTable>>,
}

/// A validated Elasticsearch sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElasticsearchConfig {
    /// Base URLs (`endpoint`, or `endpoints` in order), used in turn.
    pub endpoints: Vec<Url>,
    /// `index`: the index or data stream, with date fields from `occur_time`.
    pub index: IndexPattern,
    /// `mode`.
    pub mode: Mode,
    /// `pipeline`: the ingest pipeline, sent as `?pipeline=`.
    pub pipeline: Option<String>,
    /// `request`, `tls`, `auth`, `compression`, `headers`.
    pub http: HttpOptions,
}

pub(super) fn read(
    table: Table<'_>,
    ctx: &dyn ConfigContext,
) -> Result<Box<dyn SinkConfig>, ReadError> {
    let table_span = table.span();
    let table: ElasticsearchTable = deserialize(table)?;
    Ok(Box::new(validate(&table, table_span, ctx)?))
}

fn validate(
    table: &ElasticsearchTable,
    table_span: Range<usize>,
    ctx: &dyn ConfigContext,
) -> Result<ElasticsearchConfig, ConfigIssue> {
    let endpoints = read_endpoints(table, table_span, ctx)?;
    let index = match &table.index {
        None => IndexPattern::parse(defaults::INDEX)
            .expect("the default index pattern is a valid index name"),
        Some(value) => {
            let text = ctx.expand(value, "index")?;
            IndexPattern::parse(&text).map_err(|why| ctx.issue(value.span(), "index", why))?
        }
    };
    let mode = match &table.mode {
        None => Mode::default(),
        Some(value) => match value.get_ref().as_str() {
            "bulk" => Mode::Bulk,
            "data_stream" => Mode::DataStream,
            other => {
                return Err(ctx.issue(
                    value.span(),
                    "mode",
                    format!("unknown mode {other:?}; use \"bulk\" or \"data_stream\""),
                ));
            }
        },
    };
    let pipeline = match &table.pipeline {
        None => None,
        Some(value) => {
            let name = ctx.expand(value, "pipeline")?;
            if name.trim().is_empty() {
                return Err(ctx.issue(
                    value.span(),
                    "pipeline",
                    "is empty; remove the key to use no ingest pipeline".to_owned(),
                ));
            }
            Some(name)
        }
    };
    let mut http = HttpOptions::read(
        HttpTables {
            request: table.request.as_ref(),
            tls: table.tls.as_ref(),
            auth: table.auth.as_ref(),
            compression: table.compression.as_ref(),
            headers: table.headers.as_ref(),
        },
        ctx,
    )?;
    let concurrency_given = table
        .request
        .as_ref()
        .is_some_and(|request| request.get_ref().concurrency.is_some());
    if !concurrency_given {
        http.request.concurrency = super::CONCURRENCY;
    }
    Ok(ElasticsearchConfig {
        endpoints,
        index,
        mode,
        pipeline,
        http,
    })
}

/// Exactly one of `endpoint` and `endpoints`; each an http(s) base URL.
fn read_endpoints(
    table: &ElasticsearchTable,
    table_span: Range<usize>,
    ctx: &dyn ConfigContext,
) -> Result<Vec<Url>, ConfigIssue> {
    match (&table.endpoint, &table.endpoints) {
        (Some(_), Some(list)) => Err(ctx.issue(
            list.span(),
            "endpoints",
            "cannot be set together with endpoint; keep one".to_owned(),
        )),
        (None, None) => Err(ctx.issue(
            table_span,
            "endpoint",
            "is missing: set endpoint = \"https://HOST:9200\" (or endpoints = [...] for \
             several nodes)"
                .to_owned(),
        )),
        (Some(value), None) => Ok(vec![read_url(value, "endpoint", ctx)?]),
        (None, Some(list)) => {
            if list.get_ref().is_empty() {
                return Err(ctx.issue(
                    list.span(),
                    "endpoints",
                    "is empty: list at least one base URL".to_owned(),
                ));
            }
            let mut urls: Vec<Url> = Vec::new();
            for value in list.get_ref() {
                let url = read_url(value, "endpoints", ctx)?;
                if urls.contains(&url) {
                    return Err(ctx.issue(
                        value.span(),
                        "endpoints",
                        format!("lists {} twice", url.as_str()),
                    ));
                }
                urls.push(url);
            }
            Ok(urls)
        }
    }
}

fn read_url(
    value: &Spanned<String>,
    field: &str,
    ctx: &dyn ConfigContext,
) -> Result<Url, ConfigIssue> {
    let text = ctx.expand(value, field)?;
    let fail = |why: String| ctx.issue(value.span(), field, why);
    // The URL is not quoted after expansion: a ${VAR} may hold more than a host.
    let url = Url::parse(&text).map_err(|e| {
        fail(format!(
            "is not a URL ({e}); write a base URL such as \"https://HOST:9200\""
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err(fail(
            "must be an http:// or https:// URL with a host, such as \"https://HOST:9200\""
                .to_owned(),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail(
            "must not carry credentials: put them in auth (type = \"basic\" or \"api_key\")"
                .to_owned(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(fail(
            "must be a base URL without ?query or #fragment (the sink adds /_bulk and \
             ?pipeline=)"
                .to_owned(),
        ));
    }
    Ok(url)
}

#[async_trait::async_trait]
impl SinkConfig for ElasticsearchConfig {
    fn kind(&self) -> &'static str {
        super::KIND.name
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn concurrency(&self) -> usize {
        self.http.request.concurrency
    }

    async fn build(&self, name: &str, _: BuildContext) -> Result<BuiltSink, SinkError> {
        Ok(BuiltSink {
            sink: Arc::new(ElasticsearchSink::new(name, self).await?),
            state: None,
            recovered: Vec::new(),
        })
    }

    async fn check(&self, name: &str) -> Result<(), SinkError> {
        ElasticsearchSink::new(name, self)
            .await?
            .healthcheck()
            .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::TestContext;
    use crate::http::{Compression, HttpAuth};

    fn read_text(text: &str) -> Result<ElasticsearchConfig, ReadError> {
        let table: Table<'_> = toml::de::DeTable::parse(text).unwrap();
        // The sink `es`; `${ES_HOST}` is `es.internal`.
        let context = TestContext::new("es", &[("ES_HOST", "es.internal")]);
        let config = read(table, &context)?;
        Ok(config
            .as_any()
            .downcast_ref::<ElasticsearchConfig>()
            .unwrap()
            .clone())
    }

    /// The key, the line the issue points at, and the message.
    fn issue(text: &str) -> (String, String, String) {
        let issue = match read_text(text) {
            Err(ReadError::Invalid(issue)) => issue,
            Err(ReadError::Toml(e)) => panic!("a TOML error, not an issue: {e}"),
            Ok(config) => panic!("accepted: {config:?}"),
        };
        let start = issue.span.start.min(text.len());
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        (
            issue.key,
            text[line_start..line_end].to_owned(),
            issue.message,
        )
    }

    #[test]
    fn defaults_with_only_an_endpoint() {
        let config = read_text("endpoint = \"https://es.example:9200\"\n").unwrap();
        assert_eq!(
            config.endpoints,
            vec![Url::parse("https://es.example:9200").unwrap()]
        );
        assert_eq!(config.index.as_str(), "modelarts-events");
        assert_eq!(config.mode, Mode::Bulk);
        assert_eq!(config.pipeline, None);
        // Four bulk requests in flight unless `request.concurrency` says otherwise.
        let mut http = HttpOptions::default();
        http.request.concurrency = 4;
        assert_eq!(config.http, http);
        assert_eq!(config.concurrency(), 4);
        assert_eq!(config.kind(), "elasticsearch");
        let one = read_text("endpoint = \"https://es.example:9200\"\nrequest.concurrency = 1\n");
        assert_eq!(one.unwrap().concurrency(), 1);
    }

    #[test]
    fn every_key_is_read() {
        let config = read_text(
            r#"
endpoints = ["https://${ES_HOST}:9200", "https://es-2.internal:9200/prefix/"]
index = "modelarts-events-%Y.%m.%d"
mode = "data_stream"
pipeline = "modelarts"
compression = "gzip"
request.concurrency = 3
[auth]
type = "api_key"
api_key = "a2V5OnNlY3JldA=="
[headers]
X-Team = "ops"
"#,
        )
        .unwrap();
        assert_eq!(
            config.endpoints.iter().map(Url::as_str).collect::<Vec<_>>(),
            [
                "https://es.internal:9200/",
                "https://es-2.internal:9200/prefix/"
            ]
        );
        assert_eq!(config.index.as_str(), "modelarts-events-%Y.%m.%d");
        assert_eq!(config.mode, Mode::DataStream);
        assert_eq!(config.pipeline.as_deref(), Some("modelarts"));
        assert_eq!(config.http.compression, Compression::Gzip);
        assert!(matches!(config.http.auth, Some(HttpAuth::ApiKey { .. })));
        assert_eq!(config.http.headers.len(), 1);
        assert_eq!(config.concurrency(), 3);
        // No secret in Debug.
        assert!(!format!("{config:?}").contains("a2V5OnNlY3JldA=="));
    }

    #[test]
    fn exactly_one_of_endpoint_and_endpoints() {
        let (key, line, message) =
            issue("endpoint = \"https://a:9200\"\nendpoints = [\"https://b:9200\"]\n");
        assert_eq!(key, "sinks.es.endpoints");
        assert_eq!(line, "endpoints = [\"https://b:9200\"]");
        assert_eq!(message, "cannot be set together with endpoint; keep one");
        let (key, _, message) = issue("index = \"x\"\n");
        assert_eq!(key, "sinks.es.endpoint");
        assert!(message.starts_with("is missing"), "{message}");
        let (key, line, message) = issue("endpoints = []\n");
        assert_eq!(key, "sinks.es.endpoints");
        assert_eq!(line, "endpoints = []");
        assert!(message.starts_with("is empty"), "{message}");
    }

    #[test]
    fn endpoints_must_be_plain_http_base_urls() {
        for (text, expected) in [
            (
                "endpoint = \"es.example:9200\"",
                "must be an http:// or https://",
            ),
            ("endpoint = \"not a url\"", "is not a URL"),
            (
                "endpoint = \"ftp://es.example\"",
                "must be an http:// or https://",
            ),
            (
                "endpoint = \"https://elastic:pw@es.example\"",
                "must not carry credentials",
            ),
            (
                "endpoint = \"https://es.example/?pipeline=x\"",
                "without ?query",
            ),
        ] {
            let (key, line, message) = issue(&format!("{text}\n"));
            assert_eq!(key, "sinks.es.endpoint", "{text}");
            assert_eq!(line, text);
            assert!(message.contains(expected), "{text}: {message}");
            // A password in the URL is never quoted back.
            assert!(!message.contains("pw@"), "{message}");
        }
        let (key, line, message) = issue(
            "endpoints = [\n  \"https://a:9200\",\n  \"http://${ES_HOST}\",\n  \"https://a:9200\",\n]\n",
        );
        assert_eq!(key, "sinks.es.endpoints");
        assert_eq!(line, "  \"https://a:9200\",");
        assert_eq!(message, "lists https://a:9200/ twice");
        let (key, line, _) = issue("endpoints = [\n  \"https://a:9200\",\n  \"nope\",\n]\n");
        assert_eq!(key, "sinks.es.endpoints");
        assert_eq!(line, "  \"nope\",");
        let (key, _, message) = issue("endpoint = \"https://${MISSING}\"\n");
        assert_eq!(key, "sinks.es.endpoint");
        assert_eq!(message, "environment variable MISSING is not set");
    }

    #[test]
    fn index_patterns_are_checked_at_load() {
        let base = "endpoint = \"https://es:9200\"\n";
        for (index, expected) in [
            ("modelarts-%Y.%q", "unknown date field %q"),
            ("Modelarts-%Y", "must be lowercase"),
            ("events #1", "must not contain"),
            ("_events", "must not start with"),
            ("..", "must not be \".\" or \"..\""),
            ("", "must not be empty"),
            ("events-%", "lone %"),
        ] {
            let text = format!("{base}index = \"{index}\"\n");
            let (key, line, message) = issue(&text);
            assert_eq!(key, "sinks.es.index", "{index}");
            assert_eq!(line, format!("index = \"{index}\""));
            assert!(message.contains(expected), "{index}: {message}");
        }
        let config = read_text(&format!("{base}index = \"events-%%-%Y\"\n")).unwrap();
        assert_eq!(config.index.render(1562597251764), "events-%-2019");
    }

    #[test]
    fn mode_and_pipeline_values() {
        let base = "endpoint = \"https://es:9200\"\n";
        let (key, line, message) = issue(&format!("{base}mode = \"stream\"\n"));
        assert_eq!(key, "sinks.es.mode");
        assert_eq!(line, "mode = \"stream\"");
        assert_eq!(
            message,
            "unknown mode \"stream\"; use \"bulk\" or \"data_stream\""
        );
        let (key, line, message) = issue(&format!("{base}pipeline = \"\"\n"));
        assert_eq!(key, "sinks.es.pipeline");
        assert_eq!(line, "pipeline = \"\"");
        assert!(message.starts_with("is empty"), "{message}");
    }

    #[test]
    fn shared_http_keys_are_validated_with_full_keys() {
        let (key, line, message) =
            issue("endpoint = \"https://es:9200\"\n[request]\nconcurrency = 0\n");
        assert_eq!(key, "sinks.es.request.concurrency");
        assert_eq!(line, "concurrency = 0");
        assert_eq!(message, "must be at least 1, got 0");
        let (key, _, _) = issue("endpoint = \"https://es:9200\"\ncompression = \"zstd\"\n");
        assert_eq!(key, "sinks.es.compression");
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused_by_the_table() {
        for (text, expected) in [
            (
                "endpoint = \"https://es:9200\"\nindx = \"x\"\n",
                "unknown field `indx`",
            ),
            (
                "endpoint = \"https://es:9200\"\nbulk.action = \"index\"\n",
                "unknown field `bulk`",
            ),
            ("endpoint = \"https://es:9200\"\nmode = 1\n", "invalid type"),
            ("endpoints = \"https://es:9200\"\n", "invalid type"),
        ] {
            match read_text(text) {
                Err(ReadError::Toml(error)) => {
                    assert!(error.to_string().contains(expected), "{text}: {error}");
                }
                other => panic!("{text}: {:?}", other.map(|_| ())),
            }
        }
    }
}
