//! [`HttpClient`]: one `reqwest::Client` per network sink, built from its
//! [`HttpOptions`], and the one way its requests are sent: configured headers, auth,
//! gzip, the timeouts, and every failure turned into a classified [`SinkError`].
//!
//! Building does the I/O that reading the config does not: the CA file, the client
//! certificate and key, the secret files. They are read again at each build (each start
//! of the sink), not per request. A file that cannot be used is a permanent error naming
//! the key and the path, never the content.
//!
//! Proxies come from the environment: reqwest reads `HTTPS_PROXY`, `HTTP_PROXY`,
//! `ALL_PROXY` and `NO_PROXY` (and their lower-case forms) whenever no proxy is set on
//! the builder, also with `default-features = false` (its `system-proxy` feature only
//! adds the macOS and Windows system settings; reqwest 0.13 `Matcher::system` →
//! `hyper_util::client::proxy::matcher::Matcher::from_system`). `tests/http.rs` proves it.
//!
//! Redirects are not followed (see [`super::response::status_kind`]).

use super::config::{Compression, HttpAuth, HttpOptions, RequestSettings};
use super::response::{self, HttpResponse};
use crate::SinkError;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use reqwest::header::{
    AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue,
};
use reqwest::{Method, Url};
use secret::{Secret, SecretSource};
use std::fmt;
use std::io::Write as _;
use std::path::Path;
use std::time::SystemTime;
use tracing::warn;

/// Largest answer body read. Past it the request fails (permanent: the same request
/// would get the same answer), rather than holding an unbounded body in memory.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

const USER_AGENT: &str = concat!("modelarts-event-shipper/", env!("CARGO_PKG_VERSION"));

/// One request of a network sink.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: Method,
    pub url: Url,
    /// Uncompressed; the client gzips it when the sink's `compression` says so. Shared,
    /// not copied, with whoever keeps it for another attempt.
    pub body: Bytes,
    pub content_type: Option<HeaderValue>,
    /// The sink's own headers for this request (`Idempotency-Key`, `X-Scope-OrgID`, ...).
    /// They replace configured `headers` of the same name, and are replaced by
    /// `content_type`, by `Content-Encoding: gzip` when the client gzips, and by the
    /// `auth` header.
    pub headers: HeaderMap,
}

impl HttpRequest {
    /// A POST of `body`.
    pub fn post(url: Url, content_type: HeaderValue, body: impl Into<Bytes>) -> Self {
        HttpRequest {
            method: Method::POST,
            url,
            body: body.into(),
            content_type: Some(content_type),
            headers: HeaderMap::new(),
        }
    }

    /// A GET without a body (healthchecks).
    pub fn get(url: Url) -> Self {
        HttpRequest {
            method: Method::GET,
            url,
            body: Bytes::new(),
            content_type: None,
            headers: HeaderMap::new(),
        }
    }

    /// The same request with one more header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }
}

/// The HTTP client of one network sink. Cheap to clone (`reqwest::Client` is a handle
/// to one connection pool); `Debug` shows no secret.
#[derive(Clone)]
pub struct HttpClient {
    sink: String,
    client: reqwest::Client,
    request: RequestSettings,
    compression: Compression,
    /// The configured `headers`, values marked sensitive.
    headers: HeaderMap,
    /// `Authorization` from `auth`, marked sensitive, and its kind.
    auth: Option<(&'static str, HeaderValue)>,
    /// Values scrubbed from every error message, in case a server echoes them.
    secrets: Vec<Secret>,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("sink", &self.sink)
            .field("request", &self.request)
            .field("compression", &self.compression)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("auth", &self.auth.as_ref().map(|(kind, _)| kind))
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Builds the sink's client: reads the TLS files and the secret files (errors are
    /// permanent and name the key and path), warns when certificate verification is off.
    /// No network.
    pub async fn build(sink: &str, options: &HttpOptions) -> Result<HttpClient, SinkError> {
        Self::build_with(sink, options, true).await
    }

    /// [`Self::build`] for a client that is only sent to `urls`: when none of them is
    /// `https`, the platform's certificate roots are not loaded (some 5 ms at every start
    /// of the runner), and only `tls.ca_file` is trusted should a request go to an
    /// `https` URL after all.
    pub async fn build_for(
        sink: &str,
        options: &HttpOptions,
        urls: &[&Url],
    ) -> Result<HttpClient, SinkError> {
        let tls = urls.iter().any(|url| url.scheme() == "https");
        Self::build_with(sink, options, tls).await
    }

    async fn build_with(
        sink: &str,
        options: &HttpOptions,
        tls: bool,
    ) -> Result<HttpClient, SinkError> {
        // reqwest is built without a default rustls crypto provider (`rustls-no-provider`):
        // the program installs one in `main` (see the `tls-provider` crate); without it
        // reqwest would panic below.
        if !tls_provider::is_installed() {
            return Err(SinkError::permanent(
                sink,
                "no TLS crypto provider is installed in this process (the runner installs ring \
                 in main; a test must call tls_provider::install first)",
            ));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(options.request.timeout)
            .connect_timeout(options.request.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT);
        let ca = match &options.tls.ca_file {
            Some(path) => read_ca_file(sink, path).await?,
            None => Vec::new(),
        };
        builder = if tls {
            builder.tls_certs_merge(ca)
        } else {
            builder.tls_certs_only(ca)
        };
        if let Some((cert, key)) = &options.tls.client_cert {
            builder = builder.identity(read_identity(sink, cert, key).await?);
        }
        if options.tls.insecure_skip_verify {
            warn!(
                sink = %sink,
                "TLS certificate verification is OFF for sink {sink} (tls.insecure_skip_verify): \
                 anyone on the path can read and change its traffic, credentials included."
            );
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let client = builder.build().map_err(|e| {
            SinkError::permanent(
                sink,
                format!("cannot build the HTTP client: {}", error_chain(&e)),
            )
            .with_source(e)
        })?;
        let mut headers = HeaderMap::new();
        for (name, value) in &options.headers {
            headers.insert(name.clone(), value.clone());
        }
        let mut secrets = Vec::new();
        let auth = match &options.auth {
            None => None,
            Some(auth) => {
                let (value, mut used) = auth_header(sink, auth).await?;
                secrets.append(&mut used);
                Some((auth.kind(), value))
            }
        };
        Ok(HttpClient {
            sink: sink.to_owned(),
            client,
            request: options.request,
            compression: options.compression,
            headers,
            auth,
            secrets,
        })
    }

    /// The sink's name, as errors carry it.
    pub fn sink(&self) -> &str {
        &self.sink
    }

    /// Sends `request` and classifies the answer ([`response::classify`]): `Ok` only
    /// for a 2xx.
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, SinkError> {
        let (method, url) = (request.method.clone(), request.url.clone());
        let response = self.send_raw(request).await?;
        self.classify(&method, &url, response)
    }

    /// [`response::classify`] for an answer to `method url` from [`Self::send_raw`],
    /// with this client's secrets scrubbed from the error.
    pub fn classify(
        &self,
        method: &Method,
        url: &Url,
        response: HttpResponse,
    ) -> Result<HttpResponse, SinkError> {
        response::classify(
            &self.sink,
            &describe(method, url),
            response,
            SystemTime::now(),
        )
        .map_err(|e| self.scrub(e))
    }

    /// Sends `request` and returns whatever the server answered, for a sink that reads
    /// some non-2xx answers itself (Loki's 400 naming rejected lines) and hands the rest
    /// to [`Self::classify`]. Transport failures (connect, reset, timeouts) are retryable
    /// errors with the reqwest error as their source.
    pub async fn send_raw(&self, request: HttpRequest) -> Result<HttpResponse, SinkError> {
        let what = describe(&request.method, &request.url);
        let mut headers = self.headers.clone();
        for name in request.headers.keys() {
            headers.remove(name);
        }
        for (name, value) in &request.headers {
            headers.append(name.clone(), value.clone());
        }
        if let Some(content_type) = request.content_type {
            headers.insert(CONTENT_TYPE, content_type);
        }
        let body = match self.compression {
            Compression::None => request.body,
            // Nothing to compress (a GET): no Content-Encoding either.
            Compression::Gzip if request.body.is_empty() => request.body,
            Compression::Gzip => {
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                gzip(&self.sink, &what, request.body).await?.into()
            }
        };
        if let Some((_, value)) = &self.auth {
            headers.insert(AUTHORIZATION, value.clone());
        }
        let response = self
            .client
            .request(request.method, request.url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(&what, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = self.read_body(&what, response).await?;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    /// The whole body, at most [`MAX_RESPONSE_BYTES`].
    async fn read_body(
        &self,
        what: &str,
        mut response: reqwest::Response,
    ) -> Result<Bytes, SinkError> {
        let mut body = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(what, e))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(SinkError::permanent(
                    &self.sink,
                    format!("{what}: the answer is larger than {MAX_RESPONSE_BYTES} bytes"),
                )
                .with_status(response.status().as_u16()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// A failure below HTTP: retryable (the next attempt may connect, or be answered in
    /// time), except a request reqwest could not even build.
    fn transport_error(&self, what: &str, e: reqwest::Error) -> SinkError {
        // Webhook URLs carry their secret in the path or the query (Slack, DingTalk):
        // errors name the origin only.
        let e = e.without_url();
        let wait = |d| humantime::format_duration(d).to_string();
        let error = if e.is_timeout() && e.is_connect() {
            SinkError::retryable(
                &self.sink,
                format!(
                    "{what}: no connection within request.connect_timeout ({})",
                    wait(self.request.connect_timeout)
                ),
            )
        } else if e.is_timeout() {
            SinkError::retryable(
                &self.sink,
                format!(
                    "{what}: no complete answer within request.timeout ({})",
                    wait(self.request.timeout)
                ),
            )
        } else if e.is_connect() {
            SinkError::retryable(
                &self.sink,
                format!("{what}: cannot connect: {}", error_chain(&e)),
            )
        } else if e.is_builder() {
            SinkError::permanent(
                &self.sink,
                format!("{what}: cannot make the request: {}", error_chain(&e)),
            )
        } else {
            SinkError::retryable(
                &self.sink,
                format!("{what}: the exchange failed: {}", error_chain(&e)),
            )
        };
        self.scrub(error.with_source(e))
    }

    /// The error with every secret value replaced by `****`.
    fn scrub(&self, mut error: SinkError) -> SinkError {
        for secret in &self.secrets {
            let value = secret.expose();
            if !value.is_empty() && error.message.contains(value) {
                error.message = error.message.replace(value, "****");
            }
        }
        error
    }
}

/// `POST https://host:port`: the method and the origin, without userinfo, path or query,
/// which may hold a secret.
fn describe(method: &Method, url: &Url) -> String {
    format!("{method} {}", url.origin().ascii_serialization())
}

/// The `Authorization` value of `auth` (marked sensitive), and the secret values to keep
/// out of error messages. Secret files are read here.
async fn auth_header(sink: &str, auth: &HttpAuth) -> Result<(HeaderValue, Vec<Secret>), SinkError> {
    let (key, source) = auth.secret();
    let location = || match source {
        SecretSource::File(path) => format!("auth.{key}_file {}", path.display()),
        SecretSource::Inline(_) => format!("auth.{key}"),
    };
    let secret = source.read().await.map_err(|e| {
        SinkError::permanent(sink, format!("cannot read {}: {e}", location())).with_source(e)
    })?;
    let text = match auth {
        HttpAuth::Basic { user, .. } => {
            let pair = format!("{user}:{}", secret.expose());
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        }
        HttpAuth::Bearer { .. } => format!("Bearer {}", secret.expose()),
        HttpAuth::ApiKey { .. } => format!("ApiKey {}", secret.expose()),
    };
    let mut value = HeaderValue::from_str(&text).map_err(|_| {
        SinkError::permanent(
            sink,
            format!(
                "{}: the {key} cannot go in an HTTP header (only visible ASCII characters \
                 and spaces are allowed)",
                location()
            ),
        )
    })?;
    value.set_sensitive(true);
    Ok((value, vec![secret, Secret::new(text)]))
}

/// The certificates of a PEM file of extra CAs. A file with none is an error: it is
/// almost always a DER file or the wrong path.
async fn read_ca_file(sink: &str, path: &Path) -> Result<Vec<reqwest::Certificate>, SinkError> {
    let pem = read_file(sink, "tls.ca_file", path).await?;
    let fail = |what: String| {
        SinkError::permanent(sink, format!("tls.ca_file {}: {what}", path.display()))
    };
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| fail(format!("not a PEM certificate file: {}", error_chain(&e))))?;
    if certs.is_empty() {
        return Err(fail(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned(),
        ));
    }
    Ok(certs)
}

/// The client identity of mutual TLS: the certificate chain and the private key, both
/// PEM, in two files.
async fn read_identity(
    sink: &str,
    cert: &Path,
    key: &Path,
) -> Result<reqwest::Identity, SinkError> {
    let mut pem = read_file(sink, "tls.cert_file", cert).await?;
    pem.push(b'\n');
    pem.extend(read_file(sink, "tls.key_file", key).await?);
    reqwest::Identity::from_pem(&pem).map_err(|e| {
        SinkError::permanent(
            sink,
            format!(
                "tls.cert_file {} and tls.key_file {} do not make a client identity (a PEM \
                 certificate chain and an unencrypted PEM private key): {}",
                cert.display(),
                key.display(),
                error_chain(&e)
            ),
        )
    })
}

async fn read_file(sink: &str, key: &str, path: &Path) -> Result<Vec<u8>, SinkError> {
    tokio::fs::read(path).await.map_err(|e| {
        SinkError::permanent(sink, format!("cannot read {key} {}: {e}", path.display()))
            .with_source(e)
    })
}

/// gzip off the async threads: a batch of several MiB takes tens of milliseconds.
async fn gzip(sink: &str, what: &str, body: Bytes) -> Result<Vec<u8>, SinkError> {
    let compress = move || {
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::default(),
        );
        encoder.write_all(&body)?;
        encoder.finish()
    };
    match tokio::task::spawn_blocking(compress).await {
        Ok(Ok(compressed)) => Ok(compressed),
        Ok(Err(e)) => Err(
            SinkError::retryable(sink, format!("{what}: cannot gzip the body: {e}")).with_source(e),
        ),
        Err(e) => Err(SinkError::retryable(
            sink,
            format!("{what}: gzipping the body did not finish"),
        )
        .with_source(e)),
    }
}

/// The error and its causes on one line (reqwest's top-level message alone is rarely
/// enough to act on).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
