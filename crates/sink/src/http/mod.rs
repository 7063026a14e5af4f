//! The HTTP layer every network sink (Loki, Elasticsearch, webhooks) sends through, so
//! that each one only encodes its batches and reads its destination's answers.
//!
//! - [`config`]: the shared keys (`request`, `tls`, `auth`, `compression`, `headers`) as
//!   written, and [`HttpOptions::read`], which validates them purely, naming the full
//!   dotted key and its line in every error.
//! - [`client`]: [`HttpClient`], one `reqwest::Client` per sink (timeouts, extra CA,
//!   mutual TLS, `insecure_skip_verify` with a warning at every start, proxies from the
//!   environment), which puts auth, the configured headers and gzip on every request and
//!   turns transport failures into retryable [`SinkError`](crate::SinkError)s.
//! - [`response`]: what a finished answer means.
//!
//! # Status classification
//!
//! | answer | error kind | `retry_after` |
//! |---|---|---|
//! | 2xx | none: accepted | |
//! | 408, 429 | retryable | from `Retry-After` |
//! | 500, 502, 503, 504 and every other 5xx except 501 | retryable | from `Retry-After` |
//! | 501 | permanent | |
//! | 3xx (redirects are not followed) | permanent | |
//! | 401, 403, 404, 410, 413 and every other 4xx | permanent | |
//! | no answer: refused or reset connection, `request.timeout`, `request.connect_timeout` | retryable | |
//!
//! Every error carries the sink's name, the status when there was one, and a one-line
//! excerpt of the body (at most 300 characters). `Retry-After` is delta-seconds or an
//! HTTP-date, RFC 9110 §10.2.3
//! (<https://www.rfc-editor.org/rfc/rfc9110#name-retry-after>); the engine caps the wait
//! at `retry.max_backoff`.
//!
//! # Secrets
//!
//! Passwords, tokens and API keys are [`Secret`]s (`Debug` and `Display`
//! print `****`), read from their files when the client is built; configured header values
//! and the `Authorization` header are marked sensitive. Errors name the origin of a URL
//! only (webhook URLs carry their secret in the path or query), and the client scrubs its
//! secrets from any error text a server echoes back.

pub mod client;
pub mod config;
pub mod response;

pub use client::{HttpClient, HttpRequest, MAX_RESPONSE_BYTES};
pub use config::{
    AuthTable, Compression, HeadersTable, HttpAuth, HttpOptions, HttpTables, RequestSettings,
    RequestTable, TlsSettings, TlsTable,
};
pub use response::{HttpResponse, classify, retry_after};
pub use secret::{Secret, SecretSource};
