//! The HTTP keys every network sink shares: `request`, `tls`, `auth`, `compression` and
//! `headers`, as written ([`RequestTable`], [`TlsTable`], [`AuthTable`], [`HeadersTable`])
//! and validated ([`HttpOptions`]).
//!
//! A network sink's own table struct has `deny_unknown_fields`, which serde cannot combine
//! with `flatten`; so it declares these fields itself, with these types, and hands them to
//! [`HttpOptions::read`] in an [`HttpTables`]:
//!
//! ```text
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct LokiTable {
//!     endpoint: Spanned<String>,
//!     request: Option<Spanned<RequestTable>>,
//!     tls: Option<Spanned<TlsTable>>,
//!     auth: Option<Spanned<AuthTable>>,
//!     compression: Option<Spanned<String>>,
//!     headers: Option<Spanned<HeadersTable>>,
//! }
//! ```
//!
//! `request.timeout = "5s"` and `[sinks.NAME.request] timeout = "5s"` are the same TOML.
//! Reading is pure: `${VAR}` placeholders are replaced through [`ConfigContext::expand`]
//! (in every string value except `auth.type` and `compression`), paths are resolved
//! through [`ConfigContext::path`], and no file is opened; [`super::HttpClient::build`]
//! reads the CA, the client certificate and the secret files. Every error names the full
//! dotted key (`sinks.NAME.request.timeout`) at its value, and never quotes a secret.

use crate::config::{ConfigContext, ConfigIssue, HumanDuration, duration, integer};
use reqwest::header::{self, HeaderName, HeaderValue};
use secret::{Secret, SecretSource};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// Defaults of the HTTP keys.
pub mod defaults {
    use std::time::Duration;

    /// The whole exchange: connecting, sending the body, and reading the answer.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// One request in flight per sink unless the sink's commits can be kept in order.
    pub const CONCURRENCY: usize = 1;
}

/// `[sinks.NAME.request]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestTable {
    pub timeout: Option<Spanned<HumanDuration>>,
    pub connect_timeout: Option<Spanned<HumanDuration>>,
    pub concurrency: Option<Spanned<i64>>,
}

/// `[sinks.NAME.tls]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsTable {
    pub ca_file: Option<Spanned<String>>,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub insecure_skip_verify: Option<Spanned<bool>>,
}

/// `[sinks.NAME.auth]` as written: every key of every kind, so that a key of another kind
/// is reported by name (`sinks.NAME.auth.token` under `type = "basic"`) rather than as an
/// unknown field. Values may hold secrets, hence no `Debug`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthTable {
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub user: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub token: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    pub api_key: Option<Spanned<String>>,
    pub api_key_file: Option<Spanned<String>>,
}

/// `[sinks.NAME.headers]` as written: header name to value.
pub type HeadersTable = BTreeMap<String, Spanned<String>>;

/// The HTTP tables of one network sink's table, borrowed for [`HttpOptions::read`].
/// `HttpTables::default()` is a sink that wrote none of them.
#[derive(Default, Clone, Copy)]
pub struct HttpTables<'a> {
    pub request: Option<&'a Spanned<RequestTable>>,
    pub tls: Option<&'a Spanned<TlsTable>>,
    pub auth: Option<&'a Spanned<AuthTable>>,
    pub compression: Option<&'a Spanned<String>>,
    pub headers: Option<&'a Spanned<HeadersTable>>,
}

/// The HTTP settings of one network sink, validated, with every default applied.
/// `Debug` shows no secret: secrets are [`SecretSource`]s, header values are marked
/// sensitive (they may carry an API key).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpOptions {
    pub request: RequestSettings,
    pub tls: TlsSettings,
    pub auth: Option<HttpAuth>,
    pub compression: Compression,
    /// Sent with every request. Names are lower case (as HTTP/2 and the `http` crate
    /// write them); values are marked sensitive.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// `request.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSettings {
    /// The whole exchange, connecting included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Sends the engine may have in flight for this sink (commits stay in order).
    pub concurrency: usize,
}

impl Default for RequestSettings {
    fn default() -> Self {
        RequestSettings {
            timeout: defaults::REQUEST_TIMEOUT,
            connect_timeout: defaults::CONNECT_TIMEOUT,
            concurrency: defaults::CONCURRENCY,
        }
    }
}

/// `tls.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// A PEM file of extra CA certificates, trusted beside the system's.
    pub ca_file: Option<PathBuf>,
    /// Mutual TLS: the client certificate chain (PEM) and its private key (PEM).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Skip certificate verification. Logged as a warning at every start.
    pub insecure_skip_verify: bool,
}

/// `auth.*`: what goes in the `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpAuth {
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        user: String,
        password: SecretSource,
    },
    /// `Authorization: Bearer <token>`.
    Bearer { token: SecretSource },
    /// `Authorization: ApiKey <api_key>`, Elasticsearch's form (the key is the base64
    /// `id:api_key` that the create-API-key API returns as `encoded`).
    ApiKey { api_key: SecretSource },
}

impl HttpAuth {
    /// The kind as written in `auth.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            HttpAuth::Basic { .. } => "basic",
            HttpAuth::Bearer { .. } => "bearer",
            HttpAuth::ApiKey { .. } => "api_key",
        }
    }

    /// The secret and the key it is written under (`password`, `token`, `api_key`).
    pub fn secret(&self) -> (&'static str, &SecretSource) {
        match self {
            HttpAuth::Basic { password, .. } => ("password", password),
            HttpAuth::Bearer { token } => ("token", token),
            HttpAuth::ApiKey { api_key } => ("api_key", api_key),
        }
    }
}

/// `compression`: how request bodies are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    #[default]
    None,
    /// gzip, with `Content-Encoding: gzip`.
    Gzip,
}

/// Headers the HTTP layer or the sink sets on each request; a configured one would be
/// overwritten or would lie about the body, so it is refused.
const OWNED_HEADERS: &[(HeaderName, &str)] = &[
    (header::HOST, "it comes from the URL"),
    (header::CONTENT_LENGTH, "it comes from the body"),
    (header::TRANSFER_ENCODING, "it comes from the body"),
    (header::CONNECTION, "the HTTP client manages connections"),
    (header::CONTENT_TYPE, "the sink sets it for its encoding"),
    (header::CONTENT_ENCODING, "set `compression` instead"),
];

impl HttpOptions {
    /// Validates the HTTP tables of the sink `ctx` names. Pure: no file is read.
    pub fn read(
        tables: HttpTables<'_>,
        ctx: &dyn ConfigContext,
    ) -> Result<HttpOptions, ConfigIssue> {
        let request = read_request(tables.request, ctx)?;
        let tls = read_tls(tables.tls, ctx)?;
        let auth = tables.auth.map(|t| read_auth(t, ctx)).transpose()?;
        let compression = read_compression(tables.compression, ctx)?;
        let headers = read_headers(tables.headers, auth.as_ref(), ctx)?;
        Ok(HttpOptions {
            request,
            tls,
            auth,
            compression,
            headers,
        })
    }
}

fn read_request(
    table: Option<&Spanned<RequestTable>>,
    ctx: &dyn ConfigContext,
) -> Result<RequestSettings, ConfigIssue> {
    let Some(table) = table else {
        return Ok(RequestSettings::default());
    };
    let table = table.get_ref();
    Ok(RequestSettings {
        timeout: duration(
            ctx,
            &table.timeout,
            "request.timeout",
            defaults::REQUEST_TIMEOUT,
            false,
        )?,
        connect_timeout: duration(
            ctx,
            &table.connect_timeout,
            "request.connect_timeout",
            defaults::CONNECT_TIMEOUT,
            false,
        )?,
        concurrency: integer(
            ctx,
            &table.concurrency,
            "request.concurrency",
            defaults::CONCURRENCY,
            1,
        )?,
    })
}

fn read_tls(
    table: Option<&Spanned<TlsTable>>,
    ctx: &dyn ConfigContext,
) -> Result<TlsSettings, ConfigIssue> {
    let Some(table) = table else {
        return Ok(TlsSettings::default());
    };
    let table = table.get_ref();
    let ca_file = table
        .ca_file
        .as_ref()
        .map(|v| ctx.path(v, "tls.ca_file"))
        .transpose()?;
    let client_cert = match (&table.cert_file, &table.key_file) {
        (Some(cert), Some(key)) => Some((
            ctx.path(cert, "tls.cert_file")?,
            ctx.path(key, "tls.key_file")?,
        )),
        (Some(cert), None) => {
            return Err(ctx.issue(
                cert.span(),
                "tls.cert_file",
                "needs tls.key_file too: mutual TLS takes a client certificate and its \
                 private key"
                    .to_owned(),
            ));
        }
        (None, Some(key)) => {
            return Err(ctx.issue(
                key.span(),
                "tls.key_file",
                "needs tls.cert_file too: mutual TLS takes a client certificate and its \
                 private key"
                    .to_owned(),
            ));
        }
        (None, None) => None,
    };
    Ok(TlsSettings {
        ca_file,
        client_cert,
        insecure_skip_verify: table
            .insecure_skip_verify
            .as_ref()
            .is_some_and(|v| *v.get_ref()),
    })
}

/// The auth kinds, each with its own keys (besides `type`).
const AUTH_KINDS: &[(&str, &[&str])] = &[
    ("basic", &["user", "password", "password_file"]),
    ("bearer", &["token", "token_file"]),
    ("api_key", &["api_key", "api_key_file"]),
];

fn read_auth(table: &Spanned<AuthTable>, ctx: &dyn ConfigContext) -> Result<HttpAuth, ConfigIssue> {
    let auth = table.get_ref();
    let Some(kind) = &auth.kind else {
        return Err(ctx.issue(
            table.span(),
            "auth.type",
            "is missing: write type = \"basic\", \"bearer\" or \"api_key\"".to_owned(),
        ));
    };
    let Some((kind_name, own_keys)) = AUTH_KINDS
        .iter()
        .find(|(name, _)| *name == kind.get_ref().as_str())
    else {
        return Err(ctx.issue(
            kind.span(),
            "auth.type",
            format!(
                "unknown auth type {:?}; use \"basic\", \"bearer\" or \"api_key\"",
                kind.get_ref()
            ),
        ));
    };
    let written = [
        ("user", &auth.user),
        ("password", &auth.password),
        ("password_file", &auth.password_file),
        ("token", &auth.token),
        ("token_file", &auth.token_file),
        ("api_key", &auth.api_key),
        ("api_key_file", &auth.api_key_file),
    ];
    for (key, value) in written {
        if let Some(value) = value
            && !own_keys.contains(&key)
        {
            return Err(ctx.issue(
                value.span(),
                &format!("auth.{key}"),
                format!(
                    "is not a key of type = {kind_name:?} auth (its keys: {})",
                    own_keys.join(", ")
                ),
            ));
        }
    }
    let type_span = kind.span();
    match *kind_name {
        "basic" => {
            let Some(user) = &auth.user else {
                return Err(ctx.issue(
                    type_span,
                    "auth.user",
                    "is missing: basic auth needs a user".to_owned(),
                ));
            };
            let name = ctx.expand(user, "auth.user")?;
            // RFC 7617: the user-id ends at the first colon, so one inside it would
            // silently move the rest into the password.
            if name.contains(':') {
                return Err(ctx.issue(
                    user.span(),
                    "auth.user",
                    "must not contain ':' (basic auth separates user and password with it)"
                        .to_owned(),
                ));
            }
            if name.is_empty() {
                return Err(ctx.issue(user.span(), "auth.user", "is empty".to_owned()));
            }
            let password = read_secret(
                ctx,
                type_span,
                "password",
                &auth.password,
                &auth.password_file,
                None,
            )?;
            Ok(HttpAuth::Basic {
                user: name,
                password,
            })
        }
        "bearer" => Ok(HttpAuth::Bearer {
            token: read_secret(
                ctx,
                type_span,
                "token",
                &auth.token,
                &auth.token_file,
                Some("Bearer"),
            )?,
        }),
        _ => Ok(HttpAuth::ApiKey {
            api_key: read_secret(
                ctx,
                type_span,
                "api_key",
                &auth.api_key,
                &auth.api_key_file,
                Some("ApiKey"),
            )?,
        }),
    }
}

/// Exactly one of `auth.KEY` and `auth.KEY_file`. An inline value must not be empty and,
/// where it goes into the header as it is (`scheme`), must be a legal header value.
fn read_secret(
    ctx: &dyn ConfigContext,
    type_span: Range<usize>,
    key: &str,
    inline: &Option<Spanned<String>>,
    file: &Option<Spanned<String>>,
    scheme: Option<&str>,
) -> Result<SecretSource, ConfigIssue> {
    let field = format!("auth.{key}");
    let file_field = format!("auth.{key}_file");
    match (inline, file) {
        (Some(_), Some(file)) => Err(ctx.issue(
            file.span(),
            &file_field,
            format!("cannot be set together with {field}; keep one"),
        )),
        (None, None) => Err(ctx.issue(
            type_span,
            &field,
            format!("is missing: this auth needs {field} or {file_field}"),
        )),
        (None, Some(file)) => Ok(SecretSource::File(ctx.path(file, &file_field)?)),
        (Some(value), None) => {
            let text = ctx.expand(value, &field)?;
            if text.is_empty() {
                return Err(ctx.issue(value.span(), &field, "is empty".to_owned()));
            }
            if let Some(scheme) = scheme
                && HeaderValue::from_str(&format!("{scheme} {text}")).is_err()
            {
                return Err(ctx.issue(
                    value.span(),
                    &field,
                    "cannot go in an HTTP header: only visible ASCII characters and spaces \
                     are allowed (no control characters such as newlines)"
                        .to_owned(),
                ));
            }
            Ok(SecretSource::Inline(Secret::new(text)))
        }
    }
}

fn read_compression(
    value: Option<&Spanned<String>>,
    ctx: &dyn ConfigContext,
) -> Result<Compression, ConfigIssue> {
    match value.map(|v| (v.get_ref().as_str(), v)) {
        None | Some(("none", _)) => Ok(Compression::None),
        Some(("gzip", _)) => Ok(Compression::Gzip),
        Some((other, v)) => Err(ctx.issue(
            v.span(),
            "compression",
            format!("unknown compression {other:?}; use \"none\" or \"gzip\""),
        )),
    }
}

fn read_headers(
    table: Option<&Spanned<HeadersTable>>,
    auth: Option<&HttpAuth>,
    ctx: &dyn ConfigContext,
) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigIssue> {
    let Some(table) = table else {
        return Ok(Vec::new());
    };
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    let mut written: Vec<&str> = Vec::new();
    for (name, value) in table.get_ref() {
        let field = header_field(name);
        let span = value.span();
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ctx.issue(
                span.clone(),
                &field,
                format!(
                    "{name:?} is not a legal HTTP header name (letters, digits and \
                     !#$%&'*+-.^_`|~ only)"
                ),
            )
        })?;
        if let Some(at) = headers.iter().position(|(h, _)| *h == header) {
            return Err(ctx.issue(
                span,
                &field,
                format!("is the same header as {}", header_field(written[at])),
            ));
        }
        if header == header::AUTHORIZATION
            && let Some(auth) = auth
        {
            return Err(ctx.issue(
                span,
                &field,
                format!(
                    "is also set by auth (type = {:?}); keep {field} or auth, not both",
                    auth.kind()
                ),
            ));
        }
        if let Some((_, why)) = OWNED_HEADERS.iter().find(|(h, _)| *h == header) {
            return Err(ctx.issue(span, &field, format!("cannot be configured: {why}")));
        }
        let text = ctx.expand(value, &field)?;
        // The value is not quoted: it may be an API key.
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            ctx.issue(
                span,
                &field,
                "is not a legal HTTP header value: only visible ASCII characters, spaces and \
                 tabs are allowed (no control characters such as newlines)"
                    .to_owned(),
            )
        })?;
        value.set_sensitive(true);
        headers.push((header, value));
        written.push(name);
    }
    Ok(headers)
}

/// `headers.X-Name`, or `headers."odd name"` when the name is not a bare TOML key.
fn header_field(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        format!("headers.{name}")
    } else {
        format!("headers.{name:?}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::TestContext;

    /// A network sink's table, as a sink would declare it.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NetTable {
        request: Option<Spanned<RequestTable>>,
        tls: Option<Spanned<TlsTable>>,
        auth: Option<Spanned<AuthTable>>,
        compression: Option<Spanned<String>>,
        headers: Option<Spanned<HeadersTable>>,
    }

    impl NetTable {
        fn tables(&self) -> HttpTables<'_> {
            HttpTables {
                request: self.request.as_ref(),
                tls: self.tls.as_ref(),
                auth: self.auth.as_ref(),
                compression: self.compression.as_ref(),
                headers: self.headers.as_ref(),
            }
        }
    }

    /// The sink `x` of a config file in `/etc/shipper`, with a fixed environment.
    fn context() -> TestContext {
        TestContext::new(
            "x",
            &[
                ("ES_USER", "elastic"),
                ("ES_PASSWORD", "pw-from-env"),
                ("TOKEN", "tok-from-env"),
                ("BROKEN", "brk1\nbrk2"),
                ("EMPTY", ""),
                ("SECRETS", "/run/secrets"),
            ],
        )
    }

    fn read(text: &str) -> Result<HttpOptions, ConfigIssue> {
        let table: NetTable = toml::from_str(text).unwrap();
        HttpOptions::read(table.tables(), &context())
    }

    /// The issue, with the line of the config its span points at.
    fn issue(text: &str) -> (String, String, String) {
        let issue = read(text).unwrap_err();
        let line_start = text[..issue.span.start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[issue.span.start..]
            .find('\n')
            .map_or(text.len(), |i| issue.span.start + i);
        (
            issue.key,
            text[line_start..line_end].to_owned(),
            issue.message,
        )
    }

    #[test]
    fn nothing_written_gives_the_defaults() {
        let options = read("").unwrap();
        assert_eq!(options, HttpOptions::default());
        assert_eq!(options.request.timeout, Duration::from_secs(30));
        assert_eq!(options.request.connect_timeout, Duration::from_secs(10));
        assert_eq!(options.request.concurrency, 1);
        assert_eq!(options.compression, Compression::None);
        assert!(options.auth.is_none() && options.headers.is_empty());
    }

    #[test]
    fn dotted_keys_and_sub_tables_read_the_same() {
        let dotted = read("request.timeout = \"5s\"\nrequest.concurrency = 4\n").unwrap();
        let table = read("[request]\ntimeout = \"5s\"\nconcurrency = 4\n").unwrap();
        let inline = read("request = { timeout = \"5s\", concurrency = 4 }\n").unwrap();
        assert_eq!(dotted.request.timeout, Duration::from_secs(5));
        assert_eq!(dotted.request.concurrency, 4);
        assert_eq!(dotted.request.connect_timeout, Duration::from_secs(10));
        assert_eq!(dotted, table);
        assert_eq!(dotted, inline);
        // Errors name the same key at the same line whichever way it is written.
        let (key, line, _) = issue("request.timeout = \"0s\"\n");
        assert_eq!(
            (key.as_str(), line.as_str()),
            ("sinks.x.request.timeout", "request.timeout = \"0s\"")
        );
        let (key, line, _) = issue("[request]\ntimeout = \"0s\"\n");
        assert_eq!(
            (key.as_str(), line.as_str()),
            ("sinks.x.request.timeout", "timeout = \"0s\"")
        );
    }

    #[test]
    fn every_key_is_read() {
        let options = read(
            r#"
compression = "gzip"
[request]
timeout = "2s"
connect_timeout = "500ms"
concurrency = 3
[tls]
ca_file = "ca.pem"
cert_file = "${SECRETS}/client.pem"
key_file = "/abs/client.key"
insecure_skip_verify = true
[auth]
type = "basic"
user = "${ES_USER}"
password = "${ES_PASSWORD}"
[headers]
X-Scope-OrgID = "tenant-${ES_USER}"
"#,
        )
        .unwrap();
        assert_eq!(
            options.request,
            RequestSettings {
                timeout: Duration::from_secs(2),
                connect_timeout: Duration::from_millis(500),
                concurrency: 3,
            }
        );
        assert_eq!(
            options.tls,
            TlsSettings {
                ca_file: Some(PathBuf::from("/etc/shipper/ca.pem")),
                client_cert: Some((
                    PathBuf::from("/run/secrets/client.pem"),
                    PathBuf::from("/abs/client.key"),
                )),
                insecure_skip_verify: true,
            }
        );
        assert_eq!(
            options.auth,
            Some(HttpAuth::Basic {
                user: "elastic".to_owned(),
                password: SecretSource::Inline(Secret::new("pw-from-env")),
            })
        );
        assert_eq!(options.compression, Compression::Gzip);
        assert_eq!(options.headers.len(), 1);
        assert_eq!(options.headers[0].0.as_str(), "x-scope-orgid");
        assert_eq!(options.headers[0].1, "tenant-elastic");
        assert!(options.headers[0].1.is_sensitive());
    }

    #[test]
    fn each_auth_kind_reads_its_secret_inline_or_from_a_file() {
        let bearer = read("auth = { type = \"bearer\", token = \"${TOKEN}\" }").unwrap();
        assert_eq!(
            bearer.auth,
            Some(HttpAuth::Bearer {
                token: SecretSource::Inline(Secret::new("tok-from-env"))
            })
        );
        let api_key = read("auth.type = \"api_key\"\nauth.api_key_file = \"keys/es\"\n").unwrap();
        assert_eq!(
            api_key.auth,
            Some(HttpAuth::ApiKey {
                api_key: SecretSource::File(PathBuf::from("/etc/shipper/keys/es"))
            })
        );
        let basic =
            read("[auth]\ntype = \"basic\"\nuser = \"u\"\npassword_file = \"${SECRETS}/pw\"\n")
                .unwrap();
        assert_eq!(
            basic.auth,
            Some(HttpAuth::Basic {
                user: "u".to_owned(),
                password: SecretSource::File(PathBuf::from("/run/secrets/pw")),
            })
        );
    }

    #[test]
    fn request_values_are_checked() {
        let (key, line, message) = issue("[request]\nconnect_timeout = \"0ms\"\n");
        assert_eq!(key, "sinks.x.request.connect_timeout");
        assert_eq!(line, "connect_timeout = \"0ms\"");
        assert_eq!(message, "must be longer than 0");
        let (key, line, message) = issue("request.concurrency = 0\n");
        assert_eq!(key, "sinks.x.request.concurrency");
        assert_eq!(line, "request.concurrency = 0");
        assert_eq!(message, "must be at least 1, got 0");
    }

    #[test]
    fn unknown_keys_and_bad_durations_are_refused_by_the_table() {
        let error = toml::from_str::<NetTable>("request.timout = \"5s\"\n")
            .err()
            .unwrap();
        assert!(error.to_string().contains("timout"), "{error}");
        let error = toml::from_str::<NetTable>("request.timeout = \"soon\"\n")
            .err()
            .unwrap();
        assert!(error.to_string().contains("invalid duration"), "{error}");
        let error = toml::from_str::<NetTable>("tls.ca = \"x\"\n")
            .err()
            .unwrap();
        assert!(error.to_string().contains("unknown field `ca`"), "{error}");
    }

    #[test]
    fn client_certificate_and_key_go_together() {
        let (key, line, message) = issue("[tls]\ncert_file = \"c.pem\"\n");
        assert_eq!(key, "sinks.x.tls.cert_file");
        assert_eq!(line, "cert_file = \"c.pem\"");
        assert!(message.contains("needs tls.key_file"), "{message}");
        let (key, _, message) = issue("tls.key_file = \"k.pem\"\n");
        assert_eq!(key, "sinks.x.tls.key_file");
        assert!(message.contains("needs tls.cert_file"), "{message}");
    }

    #[test]
    fn auth_type_is_required_and_known_and_not_expanded() {
        let (key, _, message) = issue("[auth]\ntoken = \"t\"\n");
        assert_eq!(key, "sinks.x.auth.type");
        assert!(message.starts_with("is missing"), "{message}");
        let (key, line, message) = issue("[auth]\ntype = \"digest\"\n");
        assert_eq!(key, "sinks.x.auth.type");
        assert_eq!(line, "type = \"digest\"");
        assert!(
            message.contains("unknown auth type \"digest\""),
            "{message}"
        );
        let (key, _, message) = issue("auth.type = \"${TOKEN}\"\nauth.token = \"t\"\n");
        assert_eq!(key, "sinks.x.auth.type");
        assert!(message.contains("\"${TOKEN}\""), "{message}");
    }

    #[test]
    fn a_key_of_another_auth_kind_is_named() {
        let (key, line, message) =
            issue("[auth]\ntype = \"basic\"\nuser = \"u\"\npassword = \"p\"\ntoken = \"t\"\n");
        assert_eq!(key, "sinks.x.auth.token");
        assert_eq!(line, "token = \"t\"");
        assert_eq!(
            message,
            "is not a key of type = \"basic\" auth (its keys: user, password, password_file)"
        );
        let (key, _, _) = issue("[auth]\ntype = \"bearer\"\ntoken = \"t\"\nuser = \"u\"\n");
        assert_eq!(key, "sinks.x.auth.user");
        let (key, _, _) =
            issue("[auth]\ntype = \"api_key\"\napi_key = \"k\"\npassword_file = \"p\"\n");
        assert_eq!(key, "sinks.x.auth.password_file");
    }

    #[test]
    fn exactly_one_of_a_secret_and_its_file() {
        let (key, line, message) =
            issue("[auth]\ntype = \"bearer\"\ntoken = \"t\"\ntoken_file = \"f\"\n");
        assert_eq!(key, "sinks.x.auth.token_file");
        assert_eq!(line, "token_file = \"f\"");
        assert_eq!(message, "cannot be set together with auth.token; keep one");
        let (key, line, message) = issue("[auth]\ntype = \"basic\"\nuser = \"u\"\n");
        assert_eq!(key, "sinks.x.auth.password");
        assert_eq!(line, "type = \"basic\"");
        assert_eq!(
            message,
            "is missing: this auth needs auth.password or auth.password_file"
        );
        let (key, _, message) = issue("[auth]\ntype = \"basic\"\npassword = \"p\"\n");
        assert_eq!(key, "sinks.x.auth.user");
        assert!(message.starts_with("is missing"), "{message}");
    }

    #[test]
    fn inline_secrets_are_checked_without_being_quoted() {
        let (key, _, message) = issue("[auth]\ntype = \"bearer\"\ntoken = \"${EMPTY}\"\n");
        assert_eq!(
            (key.as_str(), message.as_str()),
            ("sinks.x.auth.token", "is empty")
        );
        let (key, _, message) = issue("[auth]\ntype = \"api_key\"\napi_key = \"${BROKEN}\"\n");
        assert_eq!(key, "sinks.x.auth.api_key");
        assert!(message.contains("cannot go in an HTTP header"), "{message}");
        assert!(!message.contains("brk1"), "{message}");
        let (key, _, message) =
            issue("[auth]\ntype = \"basic\"\nuser = \"a:b\"\npassword = \"p\"\n");
        assert_eq!(key, "sinks.x.auth.user");
        assert!(message.contains("':'"), "{message}");
        let (key, _, message) = issue("[auth]\ntype = \"bearer\"\ntoken = \"${NOPE}\"\n");
        assert_eq!(key, "sinks.x.auth.token");
        assert_eq!(message, "environment variable NOPE is not set");
    }

    #[test]
    fn compression_is_none_or_gzip() {
        assert_eq!(
            read("compression = \"none\"").unwrap().compression,
            Compression::None
        );
        let (key, line, message) = issue("compression = \"zstd\"\n");
        assert_eq!(key, "sinks.x.compression");
        assert_eq!(line, "compression = \"zstd\"");
        assert_eq!(
            message,
            "unknown compression \"zstd\"; use \"none\" or \"gzip\""
        );
    }

    #[test]
    fn header_names_and_values_must_be_legal_http() {
        let (key, line, message) = issue("[headers]\n\"Bad Name\" = \"v\"\n");
        assert_eq!(key, "sinks.x.headers.\"Bad Name\"");
        assert_eq!(line, "\"Bad Name\" = \"v\"");
        assert!(
            message.contains("not a legal HTTP header name"),
            "{message}"
        );
        let (key, line, message) = issue("[headers]\nX-Note = \"a\\u0007b\"\n");
        assert_eq!(key, "sinks.x.headers.X-Note");
        assert_eq!(line, "X-Note = \"a\\u0007b\"");
        assert!(message.contains("no control characters"), "{message}");
        let (key, _, message) = issue("headers.X-Token = \"${BROKEN}\"\n");
        assert_eq!(key, "sinks.x.headers.X-Token");
        assert!(
            message.contains("not a legal HTTP header value"),
            "{message}"
        );
        let (key, _, message) = issue("[headers]\nX-A = \"1\"\nx-a = \"2\"\n");
        assert_eq!(key, "sinks.x.headers.x-a");
        assert_eq!(message, "is the same header as headers.X-A");
        let (key, _, message) = issue("headers.Content-Type = \"text/plain\"\n");
        assert_eq!(key, "sinks.x.headers.Content-Type");
        assert!(message.starts_with("cannot be configured"), "{message}");
    }

    #[test]
    fn a_header_that_auth_sets_is_refused_naming_both() {
        let (key, line, message) = issue(
            "auth = { type = \"bearer\", token = \"t\" }\n[headers]\nAuthorization = \"Basic x\"\n",
        );
        assert_eq!(key, "sinks.x.headers.Authorization");
        assert_eq!(line, "Authorization = \"Basic x\"");
        assert_eq!(
            message,
            "is also set by auth (type = \"bearer\"); keep headers.Authorization or auth, \
             not both"
        );
        // Without auth, a hand-made Authorization header is the user's choice.
        let options = read("headers.Authorization = \"Token abc\"\n").unwrap();
        assert_eq!(options.headers[0].0, header::AUTHORIZATION);
    }

    #[test]
    fn debug_shows_no_secret() {
        let options = read(
            "auth = { type = \"basic\", user = \"u\", password = \"${ES_PASSWORD}\" }\n\
             headers.X-Api-Key = \"${TOKEN}\"\n",
        )
        .unwrap();
        let debug = format!("{options:?}");
        assert!(!debug.contains("pw-from-env"), "{debug}");
        assert!(!debug.contains("tok-from-env"), "{debug}");
        assert!(debug.contains("x-api-key"), "{debug}");
    }
}
