//! The shared HTTP layer over real HTTP: a small hyper server on 127.0.0.1:0 records what
//! it receives and answers as told. Auth of each kind, configured headers, gzip, the
//! status classification with `Retry-After`, timeouts, refused connections, TLS and
//! secret files, the proxy environment, and that no secret reaches an error or `Debug`.
//!
//! Each test installs the TLS crypto provider first (`tls_provider::install`): the runner
//! does it in `main`, and each test may run in a process of its own.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use sink::http::{
    Compression, HttpAuth, HttpClient, HttpOptions, HttpRequest, RequestSettings, Secret,
    SecretSource, TlsSettings,
};
use sink::{ErrorKind, SinkError};
use std::convert::Infallible;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const BEARER: &str = "tok-SECRET-bearer";
const PASSWORD: &str = "pw-SECRET-basic";
/// base64("elastic:pw-SECRET-basic"), computed with coreutils' `base64`.
const BASIC: &str = "ZWxhc3RpYzpwdy1TRUNSRVQtYmFzaWM=";
const API_KEY: &str = "a2V5LWlkOmtleS1TRUNSRVQ=";

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// What the server answers.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Reply {
    fn status(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    fn body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

type Responder = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// A recording HTTP/1 server on 127.0.0.1:0; stopped when dropped.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(respond: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Server {
        let respond: Responder = Arc::new(respond);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (respond, record) = (respond.clone(), record.clone());
                let service = service_fn(move |request: hyper::Request<Incoming>| {
                    let (respond, record) = (respond.clone(), record.clone());
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        let recorded = Recorded {
                            method: parts.method,
                            uri: parts.uri.to_string(),
                            headers: parts.headers,
                            body,
                        };
                        let reply = respond(&recorded);
                        record.lock().unwrap().push(recorded);
                        let mut response = hyper::Response::builder().status(reply.status);
                        for (name, value) in reply.headers {
                            response = response.header(name, value);
                        }
                        Ok::<_, Infallible>(
                            response.body(Full::new(Bytes::from(reply.body))).unwrap(),
                        )
                    }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Server { addr, seen, task }
    }

    /// A server answering every request with `status`.
    async fn answering(status: u16) -> Server {
        Server::start(move |_| Reply::status(status)).await
    }

    fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    fn seen(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn inline(value: &str) -> SecretSource {
    SecretSource::Inline(Secret::new(value))
}

fn with_auth(auth: HttpAuth) -> HttpOptions {
    HttpOptions {
        auth: Some(auth),
        ..HttpOptions::default()
    }
}

fn json_post(url: Url, body: &str) -> HttpRequest {
    HttpRequest::post(
        url,
        HeaderValue::from_static("application/json"),
        body.as_bytes().to_vec(),
    )
}

async fn send_to(server: &Server, options: &HttpOptions) -> Recorded {
    let client = HttpClient::build("out", options).await.unwrap();
    client
        .send(json_post(server.url("/push"), "{}"))
        .await
        .unwrap();
    server.seen().pop().unwrap()
}

/// The reqwest error a transport failure carries as its source.
fn reqwest_source(error: &SinkError) -> &reqwest::Error {
    error
        .source
        .as_deref()
        .and_then(|e| e.downcast_ref::<reqwest::Error>())
        .unwrap_or_else(|| panic!("no reqwest source in {error:?}"))
}

#[tokio::test]
async fn bearer_auth_headers_and_body_are_sent() {
    tls_provider::install();
    let server = Server::answering(204).await;
    let options = HttpOptions {
        auth: Some(HttpAuth::Bearer {
            token: inline(BEARER),
        }),
        headers: vec![
            (
                HeaderName::from_static("x-scope-orgid"),
                HeaderValue::from_static("tenant-1"),
            ),
            (
                HeaderName::from_static("x-team"),
                HeaderValue::from_static("ops"),
            ),
        ],
        ..HttpOptions::default()
    };
    let client = HttpClient::build("loki", &options).await.unwrap();
    let request = json_post(server.url("/loki/api/v1/push"), r#"{"streams":[]}"#)
        .with_header(
            HeaderName::from_static("x-scope-orgid"),
            HeaderValue::from_static("tenant-2"),
        )
        .with_header(
            HeaderName::from_static("idempotency-key"),
            HeaderValue::from_static("\"k-1\""),
        );
    let answer = client.send(request).await.unwrap();
    assert_eq!(answer.status, 204);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    let got = &seen[0];
    assert_eq!(got.method, Method::POST);
    assert_eq!(got.uri, "/loki/api/v1/push");
    assert_eq!(
        got.header("authorization"),
        Some("Bearer tok-SECRET-bearer")
    );
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("x-team"), Some("ops"));
    // The sink's own header for this request replaces the configured one.
    assert_eq!(got.headers.get_all("x-scope-orgid").iter().count(), 1);
    assert_eq!(got.header("x-scope-orgid"), Some("tenant-2"));
    assert_eq!(got.header("idempotency-key"), Some("\"k-1\""));
    assert_eq!(got.header("content-encoding"), None);
    assert!(
        got.header("user-agent")
            .unwrap()
            .starts_with("modelarts-event-shipper/")
    );
    assert_eq!(got.body, r#"{"streams":[]}"#);
}

#[tokio::test]
async fn basic_auth_reads_its_password_file_trimmed() {
    tls_provider::install();
    let server = Server::answering(200).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let options = with_auth(HttpAuth::Basic {
        user: "elastic".to_owned(),
        password: SecretSource::File(file),
    });
    let got = send_to(&server, &options).await;
    assert_eq!(
        got.header("authorization"),
        Some(&*format!("Basic {BASIC}"))
    );
}

#[tokio::test]
async fn api_key_auth_uses_the_elasticsearch_scheme() {
    tls_provider::install();
    let server = Server::answering(200).await;
    let options = with_auth(HttpAuth::ApiKey {
        api_key: inline(API_KEY),
    });
    let got = send_to(&server, &options).await;
    assert_eq!(
        got.header("authorization"),
        Some(&*format!("ApiKey {API_KEY}"))
    );
}

#[tokio::test]
async fn secret_files_are_read_at_each_build_not_per_request() {
    tls_provider::install();
    let server = Server::answering(200).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "first").unwrap();
    let options = with_auth(HttpAuth::Bearer {
        token: SecretSource::File(file.clone()),
    });
    let client = HttpClient::build("out", &options).await.unwrap();
    std::fs::write(&file, "second").unwrap();
    client.send(json_post(server.url("/"), "{}")).await.unwrap();
    let rebuilt = HttpClient::build("out", &options).await.unwrap();
    rebuilt
        .send(json_post(server.url("/"), "{}"))
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(seen[0].header("authorization"), Some("Bearer first"));
    assert_eq!(seen[1].header("authorization"), Some("Bearer second"));
}

#[tokio::test]
async fn gzip_body_decodes_to_what_was_sent() {
    tls_provider::install();
    let server = Server::answering(200).await;
    let options = HttpOptions {
        compression: Compression::Gzip,
        ..HttpOptions::default()
    };
    let client = HttpClient::build("es", &options).await.unwrap();
    let body = "{\"create\":{}}\n{\"message\":\"hello\"}\n".repeat(200);
    client
        .send(HttpRequest::post(
            server.url("/_bulk"),
            HeaderValue::from_static("application/x-ndjson"),
            body.clone().into_bytes(),
        ))
        .await
        .unwrap();
    let got = server.seen().pop().unwrap();
    assert_eq!(got.header("content-encoding"), Some("gzip"));
    assert_eq!(got.header("content-type"), Some("application/x-ndjson"));
    assert!(got.body.len() < body.len() / 10, "{} bytes", got.body.len());
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(&got.body[..])
        .read_to_string(&mut decoded)
        .unwrap();
    assert_eq!(decoded, body);
}

#[tokio::test]
async fn throttled_with_retry_after_is_retryable_with_the_wait() {
    tls_provider::install();
    let server = Server::start(|_| {
        Reply::status(429)
            .header("retry-after", "3")
            .body("rate limited\nslow down")
    })
    .await;
    let client = HttpClient::build("loki", &HttpOptions::default())
        .await
        .unwrap();
    let error = client
        .send(json_post(server.url("/push"), "{}"))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Retryable);
    assert_eq!(error.status, Some(429));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
    assert_eq!(error.sink(), "loki");
    assert!(
        error.message.contains("rate limited\\nslow down"),
        "{error}"
    );
}

#[tokio::test]
async fn server_errors_are_retryable() {
    tls_provider::install();
    for status in [500, 502, 503, 504] {
        let server =
            Server::start(move |_| Reply::status(status).body("circuit breaker open")).await;
        let client = HttpClient::build("loki", &HttpOptions::default())
            .await
            .unwrap();
        let error = client
            .send(json_post(server.url("/push"), "{}"))
            .await
            .unwrap_err();
        assert!(error.is_retryable(), "{status}: {error}");
        assert_eq!(error.status, Some(status));
        assert_eq!(error.retry_after(), None);
        assert!(error.message.contains("circuit breaker open"), "{error}");
    }
}

#[tokio::test]
async fn refusals_are_permanent_with_their_status() {
    tls_provider::install();
    for status in [401, 403, 404, 410, 413, 400, 422, 501] {
        let server = Server::answering(status).await;
        let client = HttpClient::build("es", &HttpOptions::default())
            .await
            .unwrap();
        let error = client
            .send(json_post(server.url("/_bulk"), "{}"))
            .await
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Permanent, "{status}: {error}");
        assert_eq!(error.status, Some(status));
        assert!(
            error.to_string().contains(&format!("(HTTP {status})")),
            "{error}"
        );
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    tls_provider::install();
    // Followed, a 302 would turn the POST into a bodiless GET whose 200 would look
    // like an acknowledgement.
    let server = Server::start(|got| {
        if got.uri == "/moved" {
            Reply::status(200)
        } else {
            Reply::status(302).header("location", "/moved")
        }
    })
    .await;
    let client = HttpClient::build("hook", &HttpOptions::default())
        .await
        .unwrap();
    let error = client
        .send(json_post(server.url("/hook"), "{}"))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent, "{error}");
    assert_eq!(error.status, Some(302));
    assert!(
        error.message.contains("redirects are not followed"),
        "{error}"
    );
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn send_raw_hands_back_a_non_2xx_answer() {
    tls_provider::install();
    let server = Server::start(|_| Reply::status(400).body("entry too far behind")).await;
    let client = HttpClient::build("loki", &HttpOptions::default())
        .await
        .unwrap();
    let answer = client
        .send_raw(json_post(server.url("/push"), "{}"))
        .await
        .unwrap();
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body, "entry too far behind");
    // What the sink does not handle itself, it classifies like `send` would.
    let error = client
        .classify(&Method::POST, &server.url("/push"), answer)
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Permanent);
    assert_eq!(error.status, Some(400));
    assert!(error.message.contains("entry too far behind"), "{error}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_retryable_timeout() {
    tls_provider::install();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts and holds every connection without reading or answering.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let options = HttpOptions {
        request: RequestSettings {
            timeout: Duration::from_millis(200),
            ..RequestSettings::default()
        },
        ..HttpOptions::default()
    };
    let client = HttpClient::build("hook", &options).await.unwrap();
    let url = Url::parse(&format!("http://{addr}/hook")).unwrap();
    let error = client.send(json_post(url, "{}")).await.unwrap_err();
    holder.abort();
    assert_eq!(error.kind, ErrorKind::Retryable);
    assert_eq!(error.status, None);
    assert!(error.message.contains("request.timeout (200ms)"), "{error}");
    assert!(reqwest_source(&error).is_timeout(), "{error:?}");
}

#[tokio::test]
async fn a_closed_port_is_a_retryable_connect_error_that_hides_the_url_path() {
    tls_provider::install();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = HttpClient::build("hook", &HttpOptions::default())
        .await
        .unwrap();
    // Webhook URLs carry their secret in the path or query.
    let url = Url::parse(&format!(
        "http://user:url-pass@{addr}/services/T0/B0/PATH-SECRET?access_token=QUERY-SECRET"
    ))
    .unwrap();
    let error = client.send(json_post(url, "{}")).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Retryable);
    assert!(error.message.contains("cannot connect"), "{error}");
    assert!(
        error.message.contains(&format!("POST http://{addr}")),
        "{error}"
    );
    assert!(reqwest_source(&error).is_connect(), "{error:?}");
    let shown = format!("{error} {error:?}");
    for secret in ["url-pass", "PATH-SECRET", "QUERY-SECRET"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[tokio::test]
async fn no_secret_in_errors_or_debug_even_when_the_server_echoes_it() {
    tls_provider::install();
    // A careless server quoting the credentials it refused.
    let server = Server::start(|got| {
        Reply::status(401).body(&format!(
            "refused: {}",
            got.header("authorization").unwrap_or("")
        ))
    })
    .await;
    let auths = [
        (
            HttpAuth::Basic {
                user: "elastic".to_owned(),
                password: inline(PASSWORD),
            },
            vec![PASSWORD, BASIC],
        ),
        (
            HttpAuth::Bearer {
                token: inline(BEARER),
            },
            vec![BEARER],
        ),
        (
            HttpAuth::ApiKey {
                api_key: inline(API_KEY),
            },
            vec![API_KEY],
        ),
    ];
    for (auth, secrets) in auths {
        let mut options = with_auth(auth);
        options.headers = vec![(HeaderName::from_static("x-api-key"), {
            let mut v = HeaderValue::from_static("hdr-SECRET");
            v.set_sensitive(true);
            v
        })];
        let client = HttpClient::build("es", &options).await.unwrap();
        let error = client
            .send(json_post(server.url("/_bulk"), "{}"))
            .await
            .unwrap_err();
        assert_eq!(error.status, Some(401));
        assert!(error.message.contains("refused: "), "{error}");
        let shown = format!("{error} | {error:?} | {options:?} | {client:?}");
        for secret in secrets.iter().chain(&["hdr-SECRET"]) {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("****"), "{shown}");
    }
}

#[tokio::test]
async fn unusable_files_are_permanent_errors_naming_key_and_path_not_content() {
    tls_provider::install();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "CONTENT-SECRET not a certificate\n").unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let bad_token = dir.path().join("bad-token");
    std::fs::write(&bad_token, "tok\u{7}CONTENT-SECRET").unwrap();

    let cases: Vec<(HttpOptions, &str, &PathBuf)> = vec![
        (
            with_auth(HttpAuth::Bearer {
                token: SecretSource::File(missing.clone()),
            }),
            "cannot read auth.token_file",
            &missing,
        ),
        (
            with_auth(HttpAuth::Basic {
                user: "u".to_owned(),
                password: SecretSource::File(empty.clone()),
            }),
            "cannot read auth.password_file",
            &empty,
        ),
        (
            with_auth(HttpAuth::ApiKey {
                api_key: SecretSource::File(bad_token.clone()),
            }),
            "auth.api_key_file",
            &bad_token,
        ),
        (
            tls(TlsSettings {
                ca_file: Some(missing.clone()),
                ..TlsSettings::default()
            }),
            "cannot read tls.ca_file",
            &missing,
        ),
        (
            tls(TlsSettings {
                ca_file: Some(garbage.clone()),
                ..TlsSettings::default()
            }),
            "tls.ca_file",
            &garbage,
        ),
        (
            tls(TlsSettings {
                client_cert: Some((garbage.clone(), missing.clone())),
                ..TlsSettings::default()
            }),
            "cannot read tls.key_file",
            &missing,
        ),
        (
            tls(TlsSettings {
                client_cert: Some((garbage.clone(), garbage.clone())),
                ..TlsSettings::default()
            }),
            "do not make a client identity",
            &garbage,
        ),
    ];
    for (options, says, path) in cases {
        let error = HttpClient::build("es", &options).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Permanent, "{error}");
        let shown = format!("{error} | {error:?}");
        assert!(shown.contains(says), "{shown}");
        assert!(shown.contains(&path.display().to_string()), "{shown}");
        assert!(!shown.contains("CONTENT-SECRET"), "{shown}");
    }
}

fn tls(tls: TlsSettings) -> HttpOptions {
    HttpOptions {
        tls,
        ..HttpOptions::default()
    }
}

/// Log lines written while the guard of [`capture_logs`] is held.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn insecure_skip_verify_warns_at_every_build() {
    tls_provider::install();
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let options = tls(TlsSettings {
        insecure_skip_verify: true,
        ..TlsSettings::default()
    });
    HttpClient::build("lab-es", &options).await.unwrap();
    HttpClient::build("lab-es", &options).await.unwrap();
    HttpClient::build("safe", &HttpOptions::default())
        .await
        .unwrap();
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("verification is OFF"))
        .collect();
    assert_eq!(warnings.len(), 2, "{text}");
    assert!(warnings.iter().all(|l| l.contains("lab-es")), "{text}");
    assert!(!text.contains("sink=safe"), "{text}");
}

const PROXY_VARS: &[&str] = &[
    "ALL_PROXY",
    "all_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "REQUEST_METHOD",
];

/// Runs [`proxy_child`] in a child process of this test binary with `env` (and no other
/// proxy variable): a client reads the proxy variables when it is built, and setting
/// them in this process would leak into every other test.
async fn run_proxy_child(env: Vec<(&'static str, String)>) {
    let exe = std::env::current_exe().unwrap();
    let output = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(exe);
        command.args(["proxy_child", "--exact", "--ignored", "--test-threads=1"]);
        for var in PROXY_VARS {
            command.env_remove(var);
        }
        command.envs(env).output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("test proxy_child ... ok"),
        "child failed:\n{stdout}\n{stderr}"
    );
}

#[tokio::test]
#[ignore = "run by proxies_come_from_the_environment, with proxy variables set"]
async fn proxy_child() {
    tls_provider::install();
    let target = Url::parse(&std::env::var("SINK_HTTP_TEST_TARGET").unwrap()).unwrap();
    let expect = std::env::var("SINK_HTTP_TEST_EXPECT").unwrap();
    let client = HttpClient::build("proxied", &HttpOptions::default())
        .await
        .unwrap();
    let result = client.send(HttpRequest::get(target)).await;
    match expect.strip_prefix("body:") {
        Some(body) => assert_eq!(result.unwrap().body, body.as_bytes()),
        None => assert!(result.is_err(), "{result:?}"),
    }
}

#[tokio::test]
async fn proxies_come_from_the_environment() {
    tls_provider::install();
    let proxy = Server::start(|got| {
        if got.method == Method::CONNECT {
            Reply::status(403)
        } else {
            Reply::status(200).body("via proxy")
        }
    })
    .await;
    let direct = Server::start(|_| Reply::status(200).body("direct")).await;
    let proxy_url = format!("http://{}", proxy.addr);

    // HTTP_PROXY: a plain-http request goes to the proxy in absolute form.
    run_proxy_child(vec![
        ("HTTP_PROXY", proxy_url.clone()),
        (
            "SINK_HTTP_TEST_TARGET",
            "http://shipper-proxy-test.invalid/via".to_owned(),
        ),
        ("SINK_HTTP_TEST_EXPECT", "body:via proxy".to_owned()),
    ])
    .await;
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].uri, "http://shipper-proxy-test.invalid/via");

    // HTTPS_PROXY: an https request asks the proxy for a tunnel (refused here).
    run_proxy_child(vec![
        ("HTTPS_PROXY", proxy_url.clone()),
        (
            "SINK_HTTP_TEST_TARGET",
            "https://shipper-proxy-test.invalid/tls".to_owned(),
        ),
        ("SINK_HTTP_TEST_EXPECT", "error".to_owned()),
    ])
    .await;
    let seen = proxy.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].method, Method::CONNECT);
    assert_eq!(seen[1].uri, "shipper-proxy-test.invalid:443");

    // NO_PROXY: a listed host is reached directly.
    run_proxy_child(vec![
        ("HTTP_PROXY", proxy_url),
        ("NO_PROXY", "127.0.0.1".to_owned()),
        ("SINK_HTTP_TEST_TARGET", direct.url("/direct").to_string()),
        ("SINK_HTTP_TEST_EXPECT", "body:direct".to_owned()),
    ])
    .await;
    assert_eq!(proxy.seen().len(), 2);
    assert_eq!(direct.seen().len(), 1);
    assert_eq!(direct.seen()[0].uri, "/direct");
}
