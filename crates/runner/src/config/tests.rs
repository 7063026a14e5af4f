//! Tests of loading the configuration: the shipped examples, every default,
//! and the errors (key, line, no secrets).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::path::Path;

/// What a sink is, by kind, for assertions on the kinds these tests use.
#[derive(Debug, PartialEq, Eq)]
enum SinkKind {
    Stdout { format: sink::StdoutFormat },
    File { path: PathBuf },
}

use sink::StdoutFormat;

/// The kind's own settings of `sink`.
fn kind(sink: &SinkSettings) -> SinkKind {
    let any = sink.config.as_any();
    if let Some(stdout) = any.downcast_ref::<sink::stdout::StdoutConfig>() {
        return SinkKind::Stdout {
            format: stdout.format,
        };
    }
    if let Some(file) = any.downcast_ref::<sink::file::FileConfig>() {
        return SinkKind::File {
            path: file.path.clone(),
        };
    }
    panic!("a sink kind these tests do not know: {:?}", sink.config)
}

const TOKEN: &str = "tok-S3CRET-value";
const FILE: &str = "/etc/runner/runner.toml";

const ACCESS_KEY: &str = "HPUAEXAMPLEAK1234567";
const SECRET_KEY: &str = "SK-S3CRET-ExampleSecretKey0123456789";
const SECURITY_TOKEN: &str = "ST-S3CRET-gQpjbi1ub3J0aC00";
const PASSWORD: &str = "pw S3CRET-correct horse";
const HUAWEI_TOKEN: &str = "hw-tok-S3CRET";

fn env(name: &str) -> Option<String> {
    match name {
        "MODELARTS_TOKEN" => Some(TOKEN.to_owned()),
        "OTC_ACCESS_KEY" => Some(ACCESS_KEY.to_owned()),
        "OTC_SECRET_KEY" => Some(SECRET_KEY.to_owned()),
        "OTC_SECURITY_TOKEN" => Some(SECURITY_TOKEN.to_owned()),
        "OTC_PASSWORD" => Some(PASSWORD.to_owned()),
        "HUAWEICLOUD_TOKEN" => Some(HUAWEI_TOKEN.to_owned()),
        "REGION" => Some("eu-de".to_owned()),
        "SHARD_INDEX" => Some("2".to_owned()),
        "PROJECT" => Some("fedcba9876543210fedcba9876543210".to_owned()),
        "SPACED_TOKEN" => Some(format!("{TOKEN}\n")),
        "LOKI_PASSWORD" => Some("loki-S3CRET".to_owned()),
        "ES_API_KEY" => Some("es-key-S3CRET".to_owned()),
        "SLACK_WEBHOOK_URL" => {
            Some("https://hooks.slack.com/services/T000/B000/slack-S3CRET".to_owned())
        }
        "FEISHU_WEBHOOK_URL" => {
            Some("https://open.feishu.cn/open-apis/bot/v2/hook/feishu-S3CRET".to_owned())
        }
        "FEISHU_SECRET" => Some("feishu-sign-S3CRET".to_owned()),
        "DINGTALK_WEBHOOK_URL" => {
            Some("https://oapi.dingtalk.com/robot/send?access_token=dingtalk-S3CRET".to_owned())
        }
        "DINGTALK_SECRET" => Some("SECdingtalk-S3CRET".to_owned()),
        "ALERT_HOOK_URL" => Some("https://alerts.example.com/hooks/modelarts".to_owned()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_str(text, Path::new(FILE), &env)
}

fn parse_err(text: &str) -> ConfigError {
    match parse(text) {
        Ok(config) => panic!("expected an error, got {config:?}"),
        Err(error) => error,
    }
}

/// The 1-based line of the first line of `text` that contains `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the text"))
        + 1
}

/// Asserts the error names `key` at the line holding `needle`, and says `what`.
fn assert_error(text: &str, key: &str, needle: &str, what: &str) {
    let error = parse_err(text);
    assert_eq!(error.key(), Some(key), "{error}");
    assert_eq!(error.line(), Some(line_of(text, needle)), "{error}");
    let shown = error.to_string();
    assert!(
        shown.starts_with(&format!("{FILE}:{}: {key}: ", line_of(text, needle))),
        "{shown}"
    );
    assert!(shown.contains(what), "{shown:?} does not say {what:?}");
}

const MINIMAL: &str = r#"
[state]
path = "state/events.db"

[sources.prod]
type = "modelarts"
endpoint = "https://modelarts.eu-de.otc.t-systems.com/"
project_id = "0123456789abcdef0123456789abcdef"
services = ["35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e"]

[sources.prod.auth]
type = "token"
token = "${MODELARTS_TOKEN}"

[sinks.console]
type = "stdout"
"#;

/// `MINIMAL` with `line` added right after the `[table]` header line, or in a
/// new `[table]` at the end.
fn with(table: &str, line: &str) -> String {
    let header = format!("[{table}]\n");
    if MINIMAL.contains(&header) {
        MINIMAL.replacen(&header, &format!("{header}{line}\n"), 1)
    } else {
        format!("{MINIMAL}\n{header}{line}\n")
    }
}

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

// ---- the shipped examples ----

#[test]
fn every_example_in_config_parses() {
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(config_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let config = load_with_env(&path, &env)
            .unwrap_or_else(|e| panic!("{} does not load: {e}", path.display()));
        let folder = std::path::absolute(config_dir()).unwrap();
        assert!(config.state_path.starts_with(&folder), "{config:?}");
        assert!(!config.sources.is_empty() && !config.sinks.is_empty());
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !name.starts_with("otc-") {
            // The per-sink examples share the token source of the README.
            for source in &config.sources {
                assert_eq!(source.endpoint, "https://modelarts.eu-de.otc.t-systems.com");
                match &source.auth {
                    AuthSettings::Token {
                        token: SecretSource::Inline(token),
                    } => assert_eq!(token.expose(), TOKEN),
                    other => panic!("unexpected auth {other:?}"),
                }
            }
        }
        match name.as_str() {
            "stdout.toml" => {
                assert_eq!(config.state_path, folder.join("state/stdout.db"));
                assert_eq!(config.runner, RunnerSettings::default());
                let source = &config.sources[0];
                assert_eq!(source.name, "prod");
                assert_eq!(source.services.len(), 2);
                assert_eq!(source.start_at, StartAt::Beginning);
                assert_eq!(config.sinks.len(), 1);
                let console = &config.sinks[0];
                assert_eq!(console.name, "console");
                assert_eq!(console.filter, sink::SinkFilter::all());
                assert_eq!(
                    kind(console),
                    SinkKind::Stdout {
                        format: StdoutFormat::Json
                    }
                );
            }
            "file.toml" => {
                assert_eq!(config.state_path, folder.join("state/file.db"));
                assert_eq!(config.runner.interval, Duration::from_secs(30));
                let source = &config.sources[0];
                assert_eq!(source.lookback, Duration::from_secs(15 * 60));
                assert_eq!(source.start_at, StartAt::Now);
                let names: Vec<&str> = config.sinks.iter().map(|s| s.name.as_str()).collect();
                assert_eq!(names, ["archive", "failures"]);
                assert_eq!(
                    kind(&config.sinks[0]),
                    SinkKind::File {
                        path: folder.join("out/events.jsonl")
                    }
                );
                assert_eq!(config.sinks[1].filter.inputs, Some(vec!["prod".to_owned()]));
                assert_eq!(
                    config.sinks[1].filter.event_types,
                    Some(vec!["abnormal".to_owned()])
                );
            }
            "otc-aksk.toml" => {
                assert_eq!(config.state_path, folder.join("state/otc-aksk.db"));
                let names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
                assert_eq!(names, ["huawei", "otc"]);
                let huawei = &config.sources[0];
                assert_eq!(
                    huawei.endpoint,
                    "https://modelarts.cn-north-4.myhuaweicloud.com"
                );
                assert_eq!(
                    huawei.project_id.as_deref(),
                    Some("fedcba9876543210fedcba9876543210")
                );
                assert_eq!(huawei.services.len(), 1);
                assert_eq!(huawei.discover, None);
                assert!(matches!(
                    &huawei.auth,
                    AuthSettings::Token { token: SecretSource::Inline(t) } if t.expose() == HUAWEI_TOKEN
                ));
                let otc = &config.sources[1];
                assert_eq!(otc.endpoint, "https://modelarts.eu-de.otc.t-systems.com");
                assert_eq!(
                    otc.project_id.as_deref(),
                    Some("0123456789abcdef0123456789abcdef")
                );
                assert!(otc.services.is_empty());
                assert_eq!(
                    otc.discover,
                    Some(Discover {
                        name: Some("prod-*".to_owned()),
                        status: vec!["running".to_owned(), "failed".to_owned()],
                    })
                );
                assert_eq!(otc.tls.ca_file, None);
                assert!(!otc.tls.insecure_skip_verify);
                match &otc.auth {
                    AuthSettings::Aksk {
                        access_key,
                        secret_key: SecretSource::Inline(secret_key),
                        security_token: None,
                    } => {
                        assert_eq!(access_key, ACCESS_KEY);
                        assert_eq!(secret_key.expose(), SECRET_KEY);
                    }
                    other => panic!("unexpected auth {other:?}"),
                }
                assert_eq!(
                    kind(&config.sinks[0]),
                    SinkKind::File {
                        path: folder.join("out/cloud-events.jsonl")
                    }
                );
            }
            "otc-password.toml" => {
                assert_eq!(config.state_path, folder.join("state/otc-password.db"));
                let source = &config.sources[0];
                assert_eq!(source.endpoint, "https://modelarts.eu-de.otc.t-systems.com");
                assert_eq!(source.project_id, None);
                assert_eq!(source.services.len(), 2);
                assert_eq!(source.discover, None);
                match &source.auth {
                    AuthSettings::Password {
                        iam_endpoint,
                        domain,
                        user,
                        password: SecretSource::File(password_file),
                        project,
                    } => {
                        assert_eq!(iam_endpoint, "https://iam.eu-de.otc.t-systems.com");
                        assert_eq!(domain, "OTC00000000001000000xxx");
                        assert_eq!(user, "modelarts-shipper");
                        assert_eq!(*password_file, folder.join("secrets/otc-password"));
                        assert_eq!(project.as_deref(), Some("eu-de"));
                    }
                    other => panic!("unexpected auth {other:?}"),
                }
                assert_eq!(
                    kind(&config.sinks[0]),
                    SinkKind::Stdout {
                        format: StdoutFormat::Json
                    }
                );
            }
            "loki.toml" => {
                let loki = config.sinks[0].config.as_any();
                let loki = loki.downcast_ref::<sink::loki::LokiConfig>().unwrap();
                assert_eq!(
                    loki.push_url.as_str(),
                    "https://loki.example.internal/loki/api/v1/push"
                );
                assert_eq!(loki.tenant_id.as_deref(), Some("modelarts"));
                let labels: Vec<&str> = loki.labels.iter().map(|(name, _)| name.as_str()).collect();
                assert_eq!(labels, ["event_type", "service_name", "source"]);
                assert!(!format!("{loki:?}").contains("loki-S3CRET"));
            }
            "elasticsearch.toml" => {
                let es = config.sinks[0].config.as_any();
                let es = es
                    .downcast_ref::<sink::elasticsearch::ElasticsearchConfig>()
                    .unwrap();
                assert_eq!(es.endpoints.len(), 1);
                assert_eq!(es.index.as_str(), "modelarts-events-%Y.%m");
                assert!(!format!("{es:?}").contains("es-key-S3CRET"));
            }
            "webhook-slack.toml" | "webhook-feishu.toml" | "webhook-dingtalk.toml" => {
                let hook = &config.sinks[0];
                assert!(hook.config.as_any().is::<sink::webhook::WebhookConfig>());
                // A chat sink alerts on abnormal events unless told otherwise.
                assert_eq!(hook.filter.event_types, Some(vec!["abnormal".to_owned()]));
                let debug = format!("{:?}", hook.config);
                assert!(!debug.contains("S3CRET"), "{debug}");
            }
            // Examples of other sinks are checked by their own tests; loading is enough here.
            _ => {}
        }
        seen.push(name);
    }
    for name in [
        "stdout.toml",
        "file.toml",
        "loki.toml",
        "elasticsearch.toml",
        "webhook-slack.toml",
        "webhook-teams.toml",
        "webhook-feishu.toml",
        "webhook-dingtalk.toml",
        "webhook-wecom.toml",
        "webhook-json.toml",
        "otc-aksk.toml",
        "otc-password.toml",
    ] {
        assert!(seen.iter().any(|n| n == name), "{name} missing: {seen:?}");
    }
}

#[test]
fn the_core_examples_document_every_key() {
    let keys = [
        "[state]",
        "path",
        "[runner]",
        "interval",
        "concurrency",
        "shutdown_timeout",
        "type",
        "endpoint",
        "project_id",
        "services",
        "event_type",
        "page_size",
        "lookback",
        "start_at",
        "offset_unit",
        "request_timeout",
        "connect_timeout",
        "max_requests_per_second",
        "max_retries",
        "max_response_bytes",
        "retry_initial_backoff",
        "retry_max_backoff",
        "token",
        "token_file",
        "inputs",
        "event_types",
    ];
    for name in ["stdout.toml", "file.toml"] {
        let text = std::fs::read_to_string(config_dir().join(name)).unwrap();
        for key in keys {
            assert!(text.contains(key), "{name} does not document {key}");
        }
    }
    let stdout = std::fs::read_to_string(config_dir().join("stdout.toml")).unwrap();
    assert!(stdout.contains("format"));
}

#[test]
fn the_cloud_examples_document_every_key_of_their_kinds() {
    let source_keys = [
        "[state]",
        "path",
        "[runner]",
        "interval",
        "concurrency",
        "shutdown_timeout",
        "cloud",
        "region",
        "endpoint",
        "project_id",
        "services",
        "discover",
        "ca_file",
        "tls_insecure_skip_verify",
        "event_type",
        "page_size",
        "lookback",
        "start_at",
        "offset_unit",
        "request_timeout",
        "connect_timeout",
        "max_requests_per_second",
        "max_retries",
        "max_response_bytes",
        "retry_initial_backoff",
        "retry_max_backoff",
        "inputs",
        "event_types",
    ];
    let kinds: [(&str, &[&str]); 2] = [
        (
            "otc-aksk.toml",
            &[
                "type = \"aksk\"",
                "access_key",
                "secret_key =",
                "secret_key_file",
                "security_token =",
                "security_token_file",
            ],
        ),
        (
            "otc-password.toml",
            &[
                "type = \"password\"",
                "iam_endpoint",
                "domain",
                "user",
                "password =",
                "password_file",
                "project =",
                "format",
            ],
        ),
    ];
    for (name, auth_keys) in kinds {
        let text = std::fs::read_to_string(config_dir().join(name)).unwrap();
        for key in source_keys.iter().chain(auth_keys) {
            assert!(text.contains(key), "{name} does not document {key}");
        }
    }
}

// ---- defaults ----

#[test]
fn every_default() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.file, Path::new(FILE));
    assert_eq!(config.state_path, Path::new("/etc/runner/state/events.db"));
    assert_eq!(
        config.runner,
        RunnerSettings {
            interval: Duration::from_secs(60),
            concurrency: 4,
            shutdown_timeout: Duration::from_secs(30),
            shard: Shard::WHOLE,
            listen: None,
            unhealthy_after: Duration::from_secs(300),
        }
    );
    let source = &config.sources[0];
    assert_eq!(source.name, "prod");
    // The trailing slash is removed.
    assert_eq!(source.endpoint, "https://modelarts.eu-de.otc.t-systems.com");
    assert_eq!(
        source.project_id.as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(source.services, ["35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e"]);
    assert_eq!(source.event_type, None);
    assert_eq!(source.page_size, 1000);
    assert_eq!(source.lookback, Duration::from_secs(600));
    assert_eq!(source.max_clock_skew, Duration::from_secs(300));
    assert_eq!(source.start_at, StartAt::Beginning);
    assert_eq!(source.offset_unit, OffsetUnit::Auto);
    assert_eq!(source.request_timeout, Duration::from_secs(30));
    assert_eq!(source.connect_timeout, Duration::from_secs(10));
    assert!((source.max_requests_per_second - 10.0).abs() < f64::EPSILON);
    assert_eq!(source.max_retries, 8);
    assert_eq!(source.max_response_bytes, 67_108_864);
    assert_eq!(source.retry_initial_backoff, Duration::from_secs(1));
    assert_eq!(source.retry_max_backoff, Duration::from_secs(60));
    assert!(
        matches!(&source.auth, AuthSettings::Token { token: SecretSource::Inline(t) } if t.expose() == TOKEN)
    );
    let sink = &config.sinks[0];
    assert_eq!(sink.name, "console");
    assert_eq!(sink.filter.inputs, None);
    assert_eq!(sink.filter.event_types, None);
    assert_eq!(
        kind(sink),
        SinkKind::Stdout {
            format: StdoutFormat::Json
        }
    );
    assert!(takes(sink, "prod", "normal"));
}

#[test]
fn every_key_set() {
    let text = r#"
[state]
path = "/var/lib/runner/state.db"

[runner]
interval = "5s"
concurrency = 16
shutdown_timeout = "0s"
shard = "${SHARD_INDEX}/3"
listen = "127.0.0.1:9187"
health = { unhealthy_after = "90s" }

[sources.b-region]
type = "modelarts"
endpoint = "http://127.0.0.1:8080"
project_id = "${PROJECT}"
services = ["s1", "s2"]
event_type = "abnormal"
page_size = 1
lookback = "0s"
max_clock_skew = "0s"
start_at = "2019-07-08T14:47:31.764Z"
offset_unit = "record"
request_timeout = "500ms"
max_requests_per_second = 0.5
max_retries = 0
max_response_bytes = 1024
retry_initial_backoff = "10ms"
retry_max_backoff = "10ms"
auth = { type = "token", token_file = "secrets/token" }

[sources.a_region]
type = "modelarts"
endpoint = "https://modelarts.eu-de.otc.t-systems.com"
project_id = "p"
services = ["s"]
start_at = 2024-05-01T02:00:00+02:00
offset_unit = "page"
event_type = "normal"

[sources.a_region.auth]
type = "token"
token = "literal-token"

[sinks.z]
type = "stdout"
format = "text"
inputs = ["a_region"]
event_types = ["abnormal", "WARNING"]

[sinks.a]
type = "file"
path = "../out/all.jsonl"
"#;
    let config = parse(text).unwrap();
    assert_eq!(config.state_path, Path::new("/var/lib/runner/state.db"));
    assert_eq!(
        config.runner,
        RunnerSettings {
            interval: Duration::from_secs(5),
            concurrency: 16,
            shutdown_timeout: Duration::ZERO,
            shard: Shard::new(2, 3).unwrap(),
            listen: Some("127.0.0.1:9187".parse().unwrap()),
            unhealthy_after: Duration::from_secs(90),
        }
    );
    // Sorted by name.
    let a = &config.sources[0];
    let b = &config.sources[1];
    assert_eq!((a.name.as_str(), b.name.as_str()), ("a_region", "b-region"));
    assert_eq!(a.start_at, StartAt::At(1_714_521_600_000));
    assert_eq!(a.offset_unit, OffsetUnit::Page);
    assert_eq!(a.event_type.as_deref(), Some("normal"));
    assert!(
        matches!(&a.auth, AuthSettings::Token { token: SecretSource::Inline(t) } if t.expose() == "literal-token")
    );

    assert_eq!(b.endpoint, "http://127.0.0.1:8080");
    assert_eq!(
        b.project_id.as_deref(),
        Some("fedcba9876543210fedcba9876543210")
    );
    assert_eq!(b.services, ["s1", "s2"]);
    assert_eq!(b.event_type.as_deref(), Some("abnormal"));
    assert_eq!(b.page_size, 1);
    assert_eq!(b.lookback, Duration::ZERO);
    assert_eq!(b.max_clock_skew, Duration::ZERO);
    assert_eq!(a.max_clock_skew, Duration::from_secs(300));
    assert_eq!(b.start_at, StartAt::At(1_562_597_251_764));
    assert_eq!(b.offset_unit, OffsetUnit::Record);
    assert_eq!(b.request_timeout, Duration::from_millis(500));
    assert!((b.max_requests_per_second - 0.5).abs() < f64::EPSILON);
    assert_eq!(b.max_retries, 0);
    assert_eq!(b.max_response_bytes, 1024);
    assert_eq!(b.retry_initial_backoff, Duration::from_millis(10));
    assert_eq!(b.retry_max_backoff, Duration::from_millis(10));
    match &b.auth {
        AuthSettings::Token {
            token: SecretSource::File(path),
        } => {
            assert_eq!(path, Path::new("/etc/runner/secrets/token"));
        }
        other => panic!("expected a token file, got {other:?}"),
    }

    assert_eq!(config.sinks[0].name, "a");
    assert_eq!(
        kind(&config.sinks[0]),
        SinkKind::File {
            path: PathBuf::from("/etc/runner/../out/all.jsonl")
        }
    );
    let z = &config.sinks[1];
    assert_eq!(
        kind(z),
        SinkKind::Stdout {
            format: StdoutFormat::Text
        }
    );
    assert!(takes(z, "a_region", "WARNING"));
    assert!(!takes(z, "a_region", "normal"));
    assert!(!takes(z, "b-region", "abnormal"));
}

// ---- unknown keys, wrong types, impossible values ----

#[test]
fn unknown_key_at_top_level() {
    let text = format!("verbose = true\n{MINIMAL}");
    assert_error(&text, "verbose", "verbose", "unknown key `verbose`");
}

#[test]
fn unknown_key_in_state_and_runner() {
    let text = with("state", "mode = \"wal\"");
    assert_error(&text, "state.mode", "mode", "unknown key `mode`");
    let text = with("runner", "intervall = \"5s\"");
    assert_error(
        &text,
        "runner.intervall",
        "intervall",
        "unknown key `intervall`",
    );
}

#[test]
fn a_bad_shard_names_the_key_and_line() {
    for (value, what) in [
        (
            "\"3/3\"",
            "K must be below N (the shards of 3 are 0/3 to 2/3)",
        ),
        ("\"a/b\"", "must be \"K/N\""),
        ("\"0/0\"", "N must be at least 1"),
        ("\"1\"", "got \"1\""),
        ("\"${SHARD_INDEX}/2\"", "\"2/2\": K must be below N"),
        ("\"${NO_SUCH_SHARD}/2\"", "NO_SUCH_SHARD"),
    ] {
        let text = with("runner", &format!("shard = {value}"));
        assert_error(&text, "runner.shard", "shard =", what);
    }
    let text = with("runner", "shard = 1");
    let error = parse_err(&text);
    assert_eq!(error.line(), Some(line_of(&text, "shard =")), "{error}");
    assert!(error.to_string().contains("shard"), "{error}");
}

#[test]
fn unknown_key_in_a_source() {
    let text = with("sources.prod", "pagesize = 10");
    assert_error(
        &text,
        "sources.prod.pagesize",
        "pagesize",
        "unknown key `pagesize`",
    );
}

#[test]
fn unknown_key_in_auth() {
    let text = with("sources.prod.auth", "username = \"me\"");
    assert_error(
        &text,
        "sources.prod.auth.username",
        "username",
        "unknown key `username`",
    );
}

#[test]
fn unknown_key_in_a_sink() {
    let text = with("sinks.console", "fromat = \"text\"");
    assert_error(
        &text,
        "sinks.console.fromat",
        "fromat",
        "unknown key `fromat`",
    );
    // A key of another kind of sink is unknown to this one.
    let text = with("sinks.console", "path = \"out.jsonl\"");
    assert_error(
        &text,
        "sinks.console.path",
        "path = \"out",
        "unknown key `path`",
    );
    let text =
        format!("{MINIMAL}\n[sinks.archive]\ntype = \"file\"\npath = \"a\"\nformat = \"text\"\n");
    assert_error(
        &text,
        "sinks.archive.format",
        "format",
        "unknown key `format`",
    );
}

#[test]
fn wrong_types() {
    let text = with("sources.prod", "page_size = \"big\"");
    assert_error(
        &text,
        "sources.prod.page_size",
        "page_size",
        "found the string",
    );
    let text = MINIMAL.replace(
        "services = [\"35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e\"]",
        "services = \"35de3ca9\"",
    );
    assert_error(
        &text,
        "sources.prod.services",
        "services",
        "expected a list",
    );
    let text = with("sources.prod", "lookback = 600");
    assert_error(&text, "sources.prod.lookback", "lookback", "duration");
    let text = with("sources.prod", "lookback = \"ten minutes\"");
    assert_error(
        &text,
        "sources.prod.lookback",
        "lookback",
        "invalid duration",
    );
    let text = with("runner", "concurrency = 2.5");
    assert_error(
        &text,
        "runner.concurrency",
        "concurrency",
        "expected an integer, found the number 2.5",
    );
}

#[test]
fn page_size_must_be_between_1_and_1000() {
    let text = with("sources.prod", "page_size = 0");
    assert_error(
        &text,
        "sources.prod.page_size",
        "page_size",
        "at least 1, got 0",
    );
    let text = with("sources.prod", "page_size = 1001");
    assert_error(
        &text,
        "sources.prod.page_size",
        "page_size",
        "between 1 and 1000, got 1001",
    );
    let text = with("sources.prod", "page_size = 1000");
    assert_eq!(parse(&text).unwrap().sources[0].page_size, 1000);
}

#[test]
fn impossible_values() {
    let cases = [
        (
            "runner",
            "concurrency = 0",
            "runner.concurrency",
            "at least 1",
        ),
        (
            "runner",
            "interval = \"0s\"",
            "runner.interval",
            "longer than 0",
        ),
        (
            "sources.prod",
            "event_type = \"warning\"",
            "sources.prod.event_type",
            "must be one of \"normal\", \"abnormal\", found \"warning\"",
        ),
        (
            "sources.prod",
            "offset_unit = \"byte\"",
            "sources.prod.offset_unit",
            "must be one of \"auto\", \"page\", \"record\", found \"byte\"",
        ),
        (
            "sources.prod",
            "start_at = \"yesterday\"",
            "sources.prod.start_at",
            "RFC 3339",
        ),
        (
            "sources.prod",
            "start_at = 2024-05-01T00:00:00",
            "sources.prod.start_at",
            "zone",
        ),
        (
            "sources.prod",
            "request_timeout = \"0s\"",
            "sources.prod.request_timeout",
            "longer than 0",
        ),
        (
            "sources.prod",
            "connect_timeout = \"0s\"",
            "sources.prod.connect_timeout",
            "longer than 0",
        ),
        (
            "sources.prod",
            "max_requests_per_second = 0",
            "sources.prod.max_requests_per_second",
            "between 0.01 and 10000 requests per second, got 0",
        ),
        (
            "sources.prod",
            "max_requests_per_second = nan",
            "sources.prod.max_requests_per_second",
            "between 0.01 and 10000",
        ),
        (
            "sources.prod",
            "max_requests_per_second = 1e-300",
            "sources.prod.max_requests_per_second",
            "between 0.01 and 10000 requests per second, got 1e-300",
        ),
        (
            "sources.prod",
            "max_requests_per_second = 0.009",
            "sources.prod.max_requests_per_second",
            "got 0.009",
        ),
        (
            "sources.prod",
            "max_requests_per_second = 10000.5",
            "sources.prod.max_requests_per_second",
            "between 0.01 and 10000",
        ),
        (
            "sources.prod",
            "max_requests_per_second = inf",
            "sources.prod.max_requests_per_second",
            "between 0.01 and 10000",
        ),
        (
            "sources.prod",
            "max_clock_skew = \"soon\"",
            "sources.prod.max_clock_skew",
            "duration",
        ),
        (
            "sources.prod",
            "max_retries = -1",
            "sources.prod.max_retries",
            "at least 0",
        ),
        (
            "sources.prod",
            "max_retries = 99999999999",
            "sources.prod.max_retries",
            "too large",
        ),
        (
            "sources.prod",
            "max_response_bytes = 0",
            "sources.prod.max_response_bytes",
            "at least 1",
        ),
        (
            "sources.prod",
            "retry_initial_backoff = \"0s\"",
            "sources.prod.retry_initial_backoff",
            "longer than 0",
        ),
        (
            "sources.prod",
            "retry_max_backoff = \"500ms\"",
            "sources.prod.retry_max_backoff",
            "must not be shorter",
        ),
        (
            "sources.prod",
            "retry_initial_backoff = \"2m\"",
            "sources.prod.retry_initial_backoff",
            "must not be shorter",
        ),
        (
            "sources.prod",
            "type = \"cloudwatch\"",
            "sources.prod.type",
            "must be one of \"modelarts\"",
        ),
        (
            "sinks.console",
            "type = \"kafka\"",
            "sinks.console.type",
            "unknown sink type \"kafka\" (the types are: \"stdout\", \"file\", \"loki\", \"elasticsearch\", \"webhook\")",
        ),
        (
            "sinks.console",
            "format = \"xml\"",
            "sinks.console.format",
            "one of \"json\", \"text\"",
        ),
        (
            "sinks.console",
            "inputs = []",
            "sinks.console.inputs",
            "is empty",
        ),
        (
            "sinks.console",
            "event_types = [\"normal\", \"normal\"]",
            "sinks.console.event_types[1]",
            "listed twice",
        ),
        (
            "sinks.console",
            "event_types = [\"\"]",
            "sinks.console.event_types[0]",
            "is empty",
        ),
    ];
    for (table, line, key, what) in cases {
        // `type` is already in the table: replace it rather than add a second one.
        let text = if line.starts_with("type =") {
            let current = if table == "sinks.console" {
                "type = \"stdout\""
            } else {
                "type = \"modelarts\""
            };
            MINIMAL.replacen(current, line, 1)
        } else {
            with(table, line)
        };
        assert_error(&text, key, line, what);
    }
}

#[test]
fn endpoint_ids_and_services_are_checked() {
    let text = MINIMAL.replace(
        "https://modelarts.eu-de.otc.t-systems.com/",
        "modelarts.eu-de.otc.t-systems.com",
    );
    assert_error(
        &text,
        "sources.prod.endpoint",
        "endpoint",
        "http:// or https://",
    );
    let text = MINIMAL.replace("https://modelarts.eu-de.otc.t-systems.com/", "https://");
    assert_error(
        &text,
        "sources.prod.endpoint",
        "endpoint",
        "http:// or https://",
    );
    let text = MINIMAL.replace("\"0123456789abcdef0123456789abcdef\"", "\"\"");
    assert_error(&text, "sources.prod.project_id", "project_id", "is empty");
    let text = MINIMAL.replace("\"0123456789abcdef0123456789abcdef\"", "\"a/b\"");
    assert_error(
        &text,
        "sources.prod.project_id",
        "project_id",
        "path segment",
    );
    let services = "services = [\"35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e\"]";
    let text = MINIMAL.replace(services, "services = []");
    assert_error(&text, "sources.prod.services", "services", "is empty");
    let text = MINIMAL.replace(services, "services = [\"a\", \"b\", \"a\"]");
    assert_error(
        &text,
        "sources.prod.services[2]",
        "services",
        "listed twice",
    );
    let text = MINIMAL.replace(services, "services = [\n  \"a\",\n  \"\",\n]");
    assert_error(&text, "sources.prod.services[1]", "\"\",", "is empty");
}

#[test]
fn missing_required_keys_and_tables() {
    let text = MINIMAL.replace("project_id = \"0123456789abcdef0123456789abcdef\"\n", "");
    assert_error(
        &text,
        "sources.prod.project_id",
        "[sources.prod]",
        "required",
    );
    let text = MINIMAL.replace("type = \"token\"\n", "");
    assert_error(
        &text,
        "sources.prod.auth.type",
        "[sources.prod.auth]",
        "required",
    );
    let text = MINIMAL.replace("token = \"${MODELARTS_TOKEN}\"\n", "");
    assert_error(
        &text,
        "sources.prod.auth",
        "[sources.prod.auth]",
        "`token` or `token_file`",
    );
    let text = MINIMAL.replace(
        "[sources.prod.auth]\ntype = \"token\"\ntoken = \"${MODELARTS_TOKEN}\"\n",
        "",
    );
    assert_error(&text, "sources.prod.auth", "[sources.prod]", "required");
    let text = MINIMAL.replace("[state]\npath = \"state/events.db\"\n", "");
    assert_eq!(parse_err(&text).key(), Some("state"));
    let text = MINIMAL.replace("[sinks.console]\ntype = \"stdout\"\n", "");
    let error = parse_err(&text);
    assert_eq!(error.key(), Some("sinks"), "{error}");
    assert!(error.to_string().contains("no sink"), "{error}");
    let error = parse_err("[state]\npath = \"s.db\"\n[sinks.x]\ntype = \"stdout\"\n");
    assert_eq!(error.key(), Some("sources"), "{error}");
}

#[test]
fn unknown_auth_kinds_are_refused_with_the_accepted_ones() {
    let text = MINIMAL.replace("type = \"token\"", "type = \"oauth\"");
    assert_error(
        &text,
        "sources.prod.auth.type",
        "type = \"oauth\"",
        "must be one of \"token\", \"password\", \"aksk\", found \"oauth\"",
    );
}

#[test]
fn token_and_token_file_are_exclusive() {
    let text = with("sources.prod.auth", "token_file = \"t\"");
    assert_error(
        &text,
        "sources.prod.auth.token_file",
        "token_file",
        "not both",
    );
}

#[test]
fn names_are_restricted() {
    let text = MINIMAL.replace("[sinks.console]", "[sinks.\"my console\"]");
    assert_error(
        &text,
        "sinks.\"my console\"",
        "my console",
        "letters, digits",
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let text = MINIMAL
        .replace("page", "")
        .replace("type = \"stdout\"", "type = stdout");
    let error = parse_err(&text);
    assert!(matches!(error, ConfigError::Syntax { .. }), "{error:?}");
    assert_eq!(
        error.line(),
        Some(line_of(&text, "type = stdout")),
        "{error}"
    );
    assert!(
        error.to_string().starts_with(&format!("{FILE}:")),
        "{error}"
    );
}

// ---- placeholders and secrets ----

#[test]
fn missing_variable_names_it_and_creates_no_state() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runner.toml");
    let text = MINIMAL.replace("${MODELARTS_TOKEN}", "${OTC_TOKEN}");
    std::fs::write(&file, &text).unwrap();
    let error = load_with_env(&file, &env).unwrap_err();
    let shown = error.to_string();
    assert!(shown.contains("OTC_TOKEN"), "{shown}");
    assert!(shown.contains("not set"), "{shown}");
    assert_eq!(error.key(), Some("sources.prod.auth.token"));
    assert_eq!(error.line(), Some(line_of(&text, "OTC_TOKEN")));
    assert!(shown.starts_with(&file.display().to_string()), "{shown}");
    // Validation touches nothing: no state folder, no state file.
    assert!(!dir.path().join("state").exists());
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
}

#[test]
fn placeholders_in_paths_and_lists() {
    let text = MINIMAL
        .replace("state/events.db", "/data/${PROJECT}/events.db")
        .replace(
            "\"35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e\"",
            "\"${PROJECT}\", \"$${literal}\"",
        );
    let config = parse(&text).unwrap();
    assert_eq!(
        config.state_path,
        Path::new("/data/fedcba9876543210fedcba9876543210/events.db")
    );
    assert_eq!(
        config.sources[0].services,
        ["fedcba9876543210fedcba9876543210", "${literal}"]
    );
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    // Debug of a loaded config.
    let config = parse(MINIMAL).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(debug.contains("****"), "{debug}");

    // A literal token with the wrong type.
    let text = MINIMAL.replace("\"${MODELARTS_TOKEN}\"", "918273645");
    let error = parse_err(&text);
    assert_eq!(error.key(), Some("sources.prod.auth.token"));
    assert!(!error.to_string().contains("918273645"), "{error}");
    assert!(!format!("{error:?}").contains("918273645"), "{error:?}");
    assert!(error.to_string().contains("expected a string"), "{error}");

    // A token from the environment that holds a newline.
    let text = MINIMAL.replace("MODELARTS_TOKEN", "SPACED_TOKEN");
    let error = parse_err(&text);
    assert_eq!(error.key(), Some("sources.prod.auth.token"));
    assert!(error.to_string().contains("whitespace"), "{error}");
    assert!(!error.to_string().contains(TOKEN), "{error}");
    assert!(!format!("{error:?}").contains(TOKEN), "{error:?}");

    // A literal token with a malformed placeholder in it.
    let text = MINIMAL.replace("${MODELARTS_TOKEN}", "abc${def:ghi}jkl");
    let error = parse_err(&text);
    assert!(
        error.to_string().contains("malformed placeholder"),
        "{error}"
    );
    for part in ["abc", "def:ghi", "jkl"] {
        assert!(!error.to_string().contains(part), "{error}");
    }

    // A later error in the same file quotes nothing of the token either.
    let text = with("sources.prod", "page_size = 0");
    let error = parse_err(&text);
    assert!(!error.to_string().contains(TOKEN), "{error}");
}

// ---- paths and sinks ----

#[test]
fn relative_paths_are_resolved_against_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("etc");
    std::fs::create_dir(&folder).unwrap();
    let file = folder.join("runner.toml");
    let text = MINIMAL
        .replace(
            "token = \"${MODELARTS_TOKEN}\"",
            "token_file = \"secrets/token\"",
        )
        .replace(
            "[sinks.console]\ntype = \"stdout\"",
            "[sinks.archive]\ntype = \"file\"\npath = \"out/events.jsonl\"",
        );
    std::fs::write(&file, &text).unwrap();
    let config = load_with_env(&file, &env).unwrap();
    assert_eq!(config.state_path, folder.join("state/events.db"));
    assert!(matches!(
        &config.sources[0].auth,
        AuthSettings::Token {
            token: SecretSource::File(path),
        } if *path == folder.join("secrets/token")
    ));
    assert_eq!(
        kind(&config.sinks[0]),
        SinkKind::File {
            path: folder.join("out/events.jsonl")
        }
    );
    // The token file is not read (it does not even exist) and no state is created.
    assert!(!folder.join("state").exists());

    // A bare file name resolves against the current directory, made absolute.
    let config = parse_str(MINIMAL, Path::new("runner.toml"), &env).unwrap();
    assert!(config.state_path.is_absolute());
    assert_eq!(
        config.state_path,
        std::env::current_dir().unwrap().join("state/events.db")
    );
}

#[test]
fn a_missing_file_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("absent.toml");
    let error = load_with_env(&file, &env).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }), "{error:?}");
    assert!(error.to_string().contains("absent.toml"), "{error}");
}

#[test]
fn inputs_must_name_sources() {
    let text = with("sinks.console", "inputs = [\"prod\", \"staging\"]");
    assert_error(
        &text,
        "sinks.console.inputs[1]",
        "inputs",
        "no source is named \"staging\"",
    );
    let text = with("sinks.console", "inputs = [\"prod\", \"prod\"]");
    assert_error(&text, "sinks.console.inputs[1]", "inputs", "listed twice");
}

#[test]
fn two_file_sinks_cannot_share_a_file() {
    let text = format!(
        "{MINIMAL}\n[sinks.a]\ntype = \"file\"\npath = \"out/events.jsonl\"\n\n\
         [sinks.b]\ntype = \"file\"\npath = \"./out/../out/events.jsonl\"\n"
    );
    assert_error(
        &text,
        "sinks.b.path",
        "./out/../out",
        "also written by sink `a`",
    );
    let text =
        format!("{MINIMAL}\n[sinks.a]\ntype = \"file\"\npath = \"/etc/runner/state/events.db\"\n");
    assert_error(&text, "sinks.a.path", "/etc/runner/state", "state file");
}

#[test]
fn inline_auth_tables_keep_lines_and_secrets() {
    let text = MINIMAL.replace(
        "[sources.prod.auth]\ntype = \"token\"\ntoken = \"${MODELARTS_TOKEN}\"\n",
        "",
    );
    let text = text.replace(
        "services = [",
        "auth = { type = \"token\", token = 4455667788 }\nservices = [",
    );
    let error = parse_err(&text);
    assert_eq!(error.key(), Some("sources.prod.auth.token"), "{error}");
    assert_eq!(error.line(), Some(line_of(&text, "4455667788")));
    assert!(!error.to_string().contains("4455667788"), "{error}");
}

#[test]
fn a_sink_needs_a_type_and_a_file_sink_a_path() {
    let text = MINIMAL.replace("type = \"stdout\"\n", "format = \"text\"\n");
    assert_error(&text, "sinks.console.type", "[sinks.console]", "required");
    let text = MINIMAL.replace("type = \"stdout\"", "type = \"file\"");
    assert_error(&text, "sinks.console.path", "[sinks.console]", "required");
}

#[test]
fn an_empty_token_is_refused() {
    let text = MINIMAL.replace("${MODELARTS_TOKEN}", "");
    assert_error(&text, "sources.prod.auth.token", "token =", "is empty");
}

/// Whether the sink's filter takes a record of `source` with `event_type`.
fn takes(sink: &SinkSettings, source: &str, event_type: &str) -> bool {
    let parts = record::IdParts {
        project_id: "p",
        service_id: "s",
        occur_time: 1,
        event_type,
        event_info: "i",
        twin: 1,
    };
    sink.filter
        .accepts(&record::EventRecord::new(source, "svc", parts))
}

// ---- regions, auth kinds, discovery, TLS ----

/// A config with one source `prod` made of `source` lines and an auth table
/// made of `auth` lines, and a stdout sink.
fn cloud_config(source: &str, auth: &str) -> String {
    format!(
        "[state]\npath = \"state/events.db\"\n\n\
         [sources.prod]\ntype = \"modelarts\"\n{source}\n\n\
         [sources.prod.auth]\n{auth}\n\n\
         [sinks.console]\ntype = \"stdout\"\n"
    )
}

const EU_DE: &str = "region = \"eu-de\"\nproject_id = \"p1\"\nservices = [\"s1\"]";
const AKSK: &str =
    "type = \"aksk\"\naccess_key = \"${OTC_ACCESS_KEY}\"\nsecret_key = \"${OTC_SECRET_KEY}\"";
const PASSWORD_AUTH: &str = "type = \"password\"\ndomain = \"OTC00000000001000000123\"\n\
     user = \"shipper\"\npassword = \"${OTC_PASSWORD}\"";

fn only_source(text: &str) -> SourceSettings {
    let mut config = parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(config.sources.len(), 1);
    config.sources.remove(0)
}

#[test]
fn aksk_auth_parses_with_defaults() {
    let source = only_source(&cloud_config(EU_DE, AKSK));
    assert_eq!(source.endpoint, "https://modelarts.eu-de.otc.t-systems.com");
    assert_eq!(source.project_id.as_deref(), Some("p1"));
    assert_eq!(source.discover, None);
    assert_eq!(source.tls.ca_file, None);
    assert!(!source.tls.insecure_skip_verify);
    match &source.auth {
        AuthSettings::Aksk {
            access_key,
            secret_key: SecretSource::Inline(secret_key),
            security_token: None,
        } => {
            assert_eq!(access_key, ACCESS_KEY);
            assert_eq!(secret_key.expose(), SECRET_KEY);
        }
        other => panic!("unexpected auth {other:?}"),
    }

    let auth = format!("{AKSK}\nsecurity_token = \"${{OTC_SECURITY_TOKEN}}\"");
    let source = only_source(&cloud_config(EU_DE, &auth));
    assert!(matches!(
        &source.auth,
        AuthSettings::Aksk { security_token: Some(SecretSource::Inline(t)), .. }
            if t.expose() == SECURITY_TOKEN
    ));
}

#[test]
fn password_auth_parses_with_defaults() {
    // With a project_id, the token is scoped by it: no project name.
    let source = only_source(&cloud_config(EU_DE, PASSWORD_AUTH));
    match &source.auth {
        AuthSettings::Password {
            iam_endpoint,
            domain,
            user,
            password: SecretSource::Inline(password),
            project,
        } => {
            assert_eq!(iam_endpoint, "https://iam.eu-de.otc.t-systems.com");
            assert_eq!(domain, "OTC00000000001000000123");
            assert_eq!(user, "shipper");
            // Inner spaces are allowed in a password.
            assert_eq!(password.expose(), PASSWORD);
            assert_eq!(*project, None);
        }
        other => panic!("unexpected auth {other:?}"),
    }
    assert_eq!(source.project_id.as_deref(), Some("p1"));
}

#[test]
fn password_auth_needs_no_project_id() {
    let source_lines = "region = \"eu-de\"\nservices = [\"s1\"]";
    // The project defaults to the region's name, like the region's default project.
    let source = only_source(&cloud_config(source_lines, PASSWORD_AUTH));
    assert_eq!(source.project_id, None);
    assert!(matches!(
        &source.auth,
        AuthSettings::Password { project: Some(p), .. } if p == "eu-de"
    ));
    let auth = format!("{PASSWORD_AUTH}\nproject = \"eu-de_analytics\"");
    let source = only_source(&cloud_config(source_lines, &auth));
    assert!(matches!(
        &source.auth,
        AuthSettings::Password { project: Some(p), .. } if p == "eu-de_analytics"
    ));

    // Without a region there is nothing to default to.
    let source_lines = "endpoint = \"https://modelarts.example.com\"\nservices = [\"s1\"]";
    let auth = format!("{PASSWORD_AUTH}\niam_endpoint = \"https://iam.example.com\"");
    let text = cloud_config(source_lines, &auth);
    assert_error(
        &text,
        "sources.prod.auth.project",
        "[sources.prod.auth]",
        "name the project",
    );
}

#[test]
fn token_and_aksk_auth_need_a_project_id() {
    let source_lines = "region = \"eu-de\"\nservices = [\"s1\"]";
    for (auth, kind) in [("type = \"token\"\ntoken = \"t\"", "token"), (AKSK, "aksk")] {
        let text = cloud_config(source_lines, auth);
        assert_error(
            &text,
            "sources.prod.project_id",
            "[sources.prod]",
            &format!("required with `auth.type = \"{kind}\"`"),
        );
    }
}

#[test]
fn region_fills_endpoint_and_iam_endpoint() {
    let source_lines = "cloud = \"huaweicloud\"\nregion = \"cn-north-4\"\nservices = [\"s1\"]";
    let source = only_source(&cloud_config(source_lines, PASSWORD_AUTH));
    assert_eq!(
        source.endpoint,
        "https://modelarts.cn-north-4.myhuaweicloud.com"
    );
    assert!(matches!(
        &source.auth,
        AuthSettings::Password { iam_endpoint, project: Some(p), .. }
            if iam_endpoint == "https://iam.cn-north-4.myhuaweicloud.com" && p == "cn-north-4"
    ));
    // A placeholder works in `region` too.
    let source_lines = "region = \"${REGION}\"\nproject_id = \"p\"\nservices = [\"s1\"]";
    let source = only_source(&cloud_config(source_lines, AKSK));
    assert_eq!(source.endpoint, "https://modelarts.eu-de.otc.t-systems.com");
}

#[test]
fn explicit_endpoints_override_the_region() {
    let source_lines = format!("{EU_DE}\nendpoint = \"https://modelarts.internal.example/\"");
    let auth = format!("{PASSWORD_AUTH}\niam_endpoint = \"https://iam.internal.example/v3/\"");
    let source = only_source(&cloud_config(&source_lines, &auth));
    assert_eq!(source.endpoint, "https://modelarts.internal.example");
    assert!(matches!(
        &source.auth,
        AuthSettings::Password { iam_endpoint, .. } if iam_endpoint == "https://iam.internal.example"
    ));
    // No region at all: both given explicitly.
    let source_lines =
        "endpoint = \"http://127.0.0.1:9000\"\nproject_id = \"p\"\nservices = [\"s\"]";
    let auth = format!("{PASSWORD_AUTH}\niam_endpoint = \"http://127.0.0.1:9001/v3\"");
    let source = only_source(&cloud_config(source_lines, &auth));
    assert_eq!(source.endpoint, "http://127.0.0.1:9000");
    assert!(matches!(
        &source.auth,
        AuthSettings::Password { iam_endpoint, project: None, .. }
            if iam_endpoint == "http://127.0.0.1:9001"
    ));
}

#[test]
fn iam_endpoint_is_checked_and_required_without_a_region() {
    let source_lines =
        "endpoint = \"https://modelarts.example.com\"\nproject_id = \"p\"\nservices = [\"s\"]";
    let text = cloud_config(source_lines, PASSWORD_AUTH);
    assert_error(
        &text,
        "sources.prod.auth.iam_endpoint",
        "[sources.prod.auth]",
        "required when the source has no `region`",
    );
    let auth = format!("{PASSWORD_AUTH}\niam_endpoint = \"iam.eu-de.otc.t-systems.com\"");
    let text = cloud_config(EU_DE, &auth);
    assert_error(
        &text,
        "sources.prod.auth.iam_endpoint",
        "iam_endpoint",
        "http:// or https:// URL such as \"https://iam.eu-de.otc.t-systems.com\"",
    );
}

#[test]
fn unknown_regions_and_clouds_are_errors_listing_the_known_ones() {
    let text = cloud_config(
        "region = \"eu-fr\"\nproject_id = \"p\"\nservices = [\"s\"]",
        AKSK,
    );
    assert_error(
        &text,
        "sources.prod.region",
        "eu-fr",
        "eu-de, eu-nl, eu-ch2",
    );
    let text = cloud_config(
        "cloud = \"huaweicloud\"\nregion = \"eu-de\"\nproject_id = \"p\"\nservices = [\"s\"]",
        AKSK,
    );
    assert_error(&text, "sources.prod.region", "region", "cn-north-4");
    let text = cloud_config(
        "cloud = \"azure\"\nregion = \"eu-de\"\nproject_id = \"p\"\nservices = [\"s\"]",
        AKSK,
    );
    assert_error(
        &text,
        "sources.prod.cloud",
        "azure",
        "one of \"otc\", \"huaweicloud\"",
    );
    // `cloud` alone selects nothing.
    let text = cloud_config(
        "cloud = \"huaweicloud\"\nendpoint = \"https://m.example\"\nproject_id = \"p\"\nservices = [\"s\"]",
        AKSK,
    );
    assert_error(&text, "sources.prod.cloud", "cloud", "without `region`");
}

#[test]
fn a_region_without_modelarts_needs_an_endpoint() {
    let source_lines = "region = \"eu-nl\"\nproject_id = \"p\"\nservices = [\"s\"]";
    let text = cloud_config(source_lines, AKSK);
    assert_error(
        &text,
        "sources.prod.endpoint",
        "eu-nl",
        "region \"eu-nl\" of cloud \"otc\" has no known ModelArts endpoint; set `endpoint`",
    );
    // With an endpoint, the region still gives the IAM endpoint.
    let source_lines = format!("{source_lines}\nendpoint = \"https://modelarts.eu-nl.example\"");
    let source = only_source(&cloud_config(&source_lines, PASSWORD_AUTH));
    assert_eq!(source.endpoint, "https://modelarts.eu-nl.example");
    assert!(matches!(
        &source.auth,
        AuthSettings::Password { iam_endpoint, .. } if iam_endpoint == "https://iam.eu-nl.otc.t-systems.com"
    ));
    // Neither region nor endpoint.
    let text = cloud_config("project_id = \"p\"\nservices = [\"s\"]", AKSK);
    assert_error(
        &text,
        "sources.prod.endpoint",
        "[sources.prod]",
        "set `region` (such as \"eu-de\") or `endpoint`",
    );
}

#[test]
fn discover_with_and_without_services() {
    let source_lines = "region = \"eu-de\"\nproject_id = \"p\"\n\
         discover = { name = \"prod-*\", status = [\"running\", \"failed\"] }";
    let source = only_source(&cloud_config(source_lines, AKSK));
    assert!(source.services.is_empty());
    assert_eq!(
        source.discover,
        Some(Discover {
            name: Some("prod-*".to_owned()),
            status: vec!["running".to_owned(), "failed".to_owned()],
        })
    );

    // Both, with discover as its own table; an empty one matches everything.
    let text = format!("{}\n[sources.prod.discover]\n", cloud_config(EU_DE, AKSK));
    let source = only_source(&text);
    assert_eq!(source.services, ["s1"]);
    assert_eq!(source.discover, Some(Discover::default()));

    let text = format!(
        "{}\n[sources.prod.discover]\nstatus = [\"stopped\"]\n",
        cloud_config(EU_DE, AKSK)
    );
    assert_eq!(
        only_source(&text).discover,
        Some(Discover {
            name: None,
            status: vec!["stopped".to_owned()],
        })
    );
}

#[test]
fn services_or_discover_is_required() {
    let text = cloud_config("region = \"eu-de\"\nproject_id = \"p\"", AKSK);
    assert_error(
        &text,
        "sources.prod.services",
        "[sources.prod]",
        "set `discover`",
    );
}

#[test]
fn discover_values_are_checked() {
    let base = "region = \"eu-de\"\nproject_id = \"p\"\n";
    let cases = [
        (
            "discover = { status = [\"running\", \"sleeping\"] }",
            "sources.prod.discover.status[1]",
            "unknown service status \"sleeping\"; the statuses are: running, deploying",
        ),
        (
            "discover = { status = [\"Running\"] }",
            "sources.prod.discover.status[0]",
            "lowercase",
        ),
        (
            "discover = { status = [\"failed\", \"failed\"] }",
            "sources.prod.discover.status[1]",
            "listed twice",
        ),
        (
            "discover = { status = [] }",
            "sources.prod.discover.status",
            "is empty",
        ),
        (
            "discover = { name = \"prod-[\" }",
            "sources.prod.discover.name",
            "not a valid glob",
        ),
        (
            "discover = { name = \"\" }",
            "sources.prod.discover.name",
            "is empty",
        ),
        (
            "discover = { names = \"x\" }",
            "sources.prod.discover.names",
            "unknown key `names`; did you mean `name`?",
        ),
        (
            "discover = \"prod-*\"",
            "sources.prod.discover",
            "found the string",
        ),
    ];
    for (line, key, what) in cases {
        let text = cloud_config(&format!("{base}{line}"), AKSK);
        assert_error(&text, key, "discover", what);
    }
}

#[test]
fn secret_and_secret_file_are_exclusive() {
    let cases = [
        (
            format!("{PASSWORD_AUTH}\npassword_file = \"pw\""),
            "sources.prod.auth.password_file",
            "password_file",
            "either `password` or `password_file`, not both",
        ),
        (
            format!("{AKSK}\nsecret_key_file = \"sk\""),
            "sources.prod.auth.secret_key_file",
            "secret_key_file",
            "either `secret_key` or `secret_key_file`, not both",
        ),
        (
            format!("{AKSK}\nsecurity_token = \"a\"\nsecurity_token_file = \"b\""),
            "sources.prod.auth.security_token_file",
            "security_token_file",
            "not both",
        ),
    ];
    for (auth, key, needle, what) in cases {
        assert_error(&cloud_config(EU_DE, &auth), key, needle, what);
    }
    // And one of password / secret_key is required.
    let auth = PASSWORD_AUTH.replace("password = \"${OTC_PASSWORD}\"", "");
    assert_error(
        &cloud_config(EU_DE, &auth),
        "sources.prod.auth",
        "[sources.prod.auth]",
        "auth of type \"password\" needs `password` or `password_file`",
    );
    let auth = AKSK.replace("secret_key = \"${OTC_SECRET_KEY}\"", "");
    assert_error(
        &cloud_config(EU_DE, &auth),
        "sources.prod.auth",
        "[sources.prod.auth]",
        "auth of type \"aksk\" needs `secret_key` or `secret_key_file`",
    );
}

#[test]
fn required_keys_of_each_auth_kind() {
    let auth = PASSWORD_AUTH.replace("domain = \"OTC00000000001000000123\"\n", "");
    assert_error(
        &cloud_config(EU_DE, &auth),
        "sources.prod.auth.domain",
        "[sources.prod.auth]",
        "required",
    );
    let auth = PASSWORD_AUTH.replace("user = \"shipper\"\n", "");
    assert_error(
        &cloud_config(EU_DE, &auth),
        "sources.prod.auth.user",
        "[sources.prod.auth]",
        "required",
    );
    let auth = AKSK.replace("access_key = \"${OTC_ACCESS_KEY}\"\n", "");
    assert_error(
        &cloud_config(EU_DE, &auth),
        "sources.prod.auth.access_key",
        "[sources.prod.auth]",
        "required",
    );
    let auth = PASSWORD_AUTH.replace("shipper", "");
    assert_error(
        &cloud_config(EU_DE, &auth),
        "sources.prod.auth.user",
        "user =",
        "is empty",
    );
    let auth = AKSK.replace("${OTC_ACCESS_KEY}", "AK WITH SPACE");
    assert_error(
        &cloud_config(EU_DE, &auth),
        "sources.prod.auth.access_key",
        "access_key",
        "whitespace",
    );
}

#[test]
fn unknown_keys_of_each_auth_kind_list_that_kind_s_keys() {
    let cases = [
        (
            "type = \"token\"\ntoken = \"t\"\nuser = \"me\"".to_owned(),
            "sources.prod.auth.user",
            "user",
            "unknown key `user` (the keys here are `token`, `token_file`, `type`)",
        ),
        (
            format!("{PASSWORD_AUTH}\ntoken = \"t\""),
            "sources.prod.auth.token",
            "token",
            "unknown key `token` (the keys here are `domain`, `iam_endpoint`, `password`, \
             `password_file`, `project`, `type`, `user`)",
        ),
        (
            format!("{AKSK}\nproject = \"eu-de\""),
            "sources.prod.auth.project",
            "project = \"eu-de\"",
            "unknown key `project` (the keys here are `access_key`, `secret_key`, \
             `secret_key_file`, `security_token`, `security_token_file`, `type`)",
        ),
    ];
    for (auth, key, needle, what) in cases {
        assert_error(&cloud_config(EU_DE, &auth), key, needle, what);
    }
}

#[test]
fn cloud_secrets_never_appear_in_errors_or_debug() {
    let auth = format!("{AKSK}\nsecurity_token = \"${{OTC_SECURITY_TOKEN}}\"");
    let debug = format!("{:?}", parse(&cloud_config(EU_DE, &auth)).unwrap());
    assert!(!debug.contains(SECRET_KEY), "{debug}");
    assert!(!debug.contains(SECURITY_TOKEN), "{debug}");
    let debug = format!("{:?}", parse(&cloud_config(EU_DE, PASSWORD_AUTH)).unwrap());
    assert!(!debug.contains("S3CRET"), "{debug}");

    // Wrong-typed literal secrets are not quoted.
    for (find, replace, key) in [
        (
            "password = \"${OTC_PASSWORD}\"",
            "password = 73914682",
            "sources.prod.auth.password",
        ),
        (
            "secret_key = \"${OTC_SECRET_KEY}\"",
            "secret_key = 73914682",
            "sources.prod.auth.secret_key",
        ),
        (
            "secret_key = \"${OTC_SECRET_KEY}\"",
            "secret_key = \"s\"\nsecurity_token = 73914682",
            "sources.prod.auth.security_token",
        ),
    ] {
        let auth = if key.ends_with("password") {
            PASSWORD_AUTH.replace(find, replace)
        } else {
            AKSK.replace(find, replace)
        };
        let error = parse_err(&cloud_config(EU_DE, &auth));
        assert_eq!(error.key(), Some(key), "{error}");
        assert!(!error.to_string().contains("73914682"), "{error}");
        assert!(!format!("{error:?}").contains("73914682"), "{error:?}");
    }

    // A secret from the environment with a trailing newline: refused, not shown.
    let env_with_newline = |name: &str| match name {
        "OTC_SECRET_KEY" => Some(format!("{SECRET_KEY}\n")),
        "OTC_PASSWORD" => Some(format!("{PASSWORD}\n")),
        other => env(other),
    };
    for (auth, key) in [
        (AKSK, "sources.prod.auth.secret_key"),
        (PASSWORD_AUTH, "sources.prod.auth.password"),
    ] {
        let error = parse_str(
            &cloud_config(EU_DE, auth),
            Path::new(FILE),
            &env_with_newline,
        )
        .unwrap_err();
        assert_eq!(error.key(), Some(key), "{error}");
        assert!(error.to_string().contains("control character"), "{error}");
        assert!(!error.to_string().contains("S3CRET"), "{error}");
        assert!(!format!("{error:?}").contains("S3CRET"), "{error:?}");
    }
}

#[test]
fn secret_files_and_ca_file_are_resolved_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("etc");
    std::fs::create_dir(&folder).unwrap();
    let file = folder.join("runner.toml");
    let source_lines =
        format!("{EU_DE}\nca_file = \"certs/ca.pem\"\ntls_insecure_skip_verify = true");
    let auth = "type = \"aksk\"\naccess_key = \"AK\"\nsecret_key_file = \"secrets/sk\"\n\
         security_token_file = \"/run/secrets/st\"";
    std::fs::write(&file, cloud_config(&source_lines, auth)).unwrap();
    let source = load_with_env(&file, &env).unwrap().sources.remove(0);
    assert_eq!(source.tls.ca_file, Some(folder.join("certs/ca.pem")));
    assert!(source.tls.insecure_skip_verify);
    match &source.auth {
        AuthSettings::Aksk {
            secret_key: SecretSource::File(secret_key),
            security_token: Some(SecretSource::File(security_token)),
            ..
        } => {
            assert_eq!(*secret_key, folder.join("secrets/sk"));
            assert_eq!(*security_token, Path::new("/run/secrets/st"));
        }
        other => panic!("unexpected auth {other:?}"),
    }

    let auth = PASSWORD_AUTH.replace(
        "password = \"${OTC_PASSWORD}\"",
        "password_file = \"secrets/pw\"",
    );
    std::fs::write(&file, cloud_config(EU_DE, &auth)).unwrap();
    let source = load_with_env(&file, &env).unwrap().sources.remove(0);
    assert!(matches!(
        &source.auth,
        AuthSettings::Password { password: SecretSource::File(path), .. }
            if *path == folder.join("secrets/pw")
    ));
    // None of these files exists, and loading created nothing.
    let entries: Vec<_> = std::fs::read_dir(&folder).unwrap().collect();
    assert_eq!(entries.len(), 1);

    let text = cloud_config(
        &format!("{EU_DE}\ntls_insecure_skip_verify = \"yes\""),
        AKSK,
    );
    assert_error(
        &text,
        "sources.prod.tls_insecure_skip_verify",
        "tls_insecure_skip_verify",
        "found the string",
    );
}

// ---- options every sink has (batch, retry, healthcheck, dead letters) and [state] ----

#[test]
fn sink_options_default_per_kind() {
    let config = parse(MINIMAL).unwrap();
    let options = &config.sinks[0].options;
    assert_eq!(options.batch, sink::stdout::KIND.batch);
    assert_eq!(options.retry, sink::RetrySettings::default());
    assert!(options.healthcheck);
    assert_eq!(
        options.dead_letter_path,
        Path::new("/etc/runner/state/dead-letter/console.jsonl")
    );
    assert_eq!(options.dead_letter_max_bytes, 100 * 1024 * 1024);
    assert_eq!(config.state_busy_timeout, Duration::from_secs(10));
}

#[test]
fn dotted_keys_and_sub_tables_read_the_same() {
    let dotted = with(
        "sinks.console",
        "batch.max_events = 500\nbatch.timeout = \"250ms\"\nretry.max_attempts = 3\nhealthcheck.enabled = false",
    );
    let tables = format!(
        "{MINIMAL}\n[sinks.console.batch]\nmax_events = 500\ntimeout = \"250ms\"\n\n[sinks.console.retry]\nmax_attempts = 3\n\n[sinks.console.healthcheck]\nenabled = false\n"
    );
    for text in [dotted, tables] {
        let options = parse(&text).unwrap().sinks[0].options.clone();
        assert_eq!(options.batch.max_events, 500, "{text}");
        assert_eq!(options.batch.timeout, Duration::from_millis(250));
        assert_eq!(options.batch.max_bytes, sink::stdout::KIND.batch.max_bytes);
        assert_eq!(options.retry.max_attempts, 3);
        assert!(!options.healthcheck);
    }
}

#[test]
fn sink_option_errors_name_the_full_dotted_key_and_line() {
    let text = with("sinks.console", "batch.max_events = 0");
    assert_error(
        &text,
        "sinks.console.batch.max_events",
        "max_events",
        "at least 1",
    );
    let text = format!("{MINIMAL}\n[sinks.console.retry]\nmax_attempts = 0\n");
    assert_error(
        &text,
        "sinks.console.retry.max_attempts",
        "max_attempts",
        "at least 1",
    );
    let text = with("sinks.console", "batch.timeout = \"soon\"");
    assert_error(
        &text,
        "sinks.console.batch.timeout",
        "timeout",
        "invalid duration",
    );
    let text = with("sinks.console", "batch.max_event = 5");
    assert_error(
        &text,
        "sinks.console.batch.max_event",
        "max_event",
        "unknown key",
    );
    let text = with(
        "sinks.console",
        "retry.initial_backoff = \"10s\"\nretry.max_backoff = \"1s\"",
    );
    assert_error(
        &text,
        "sinks.console.retry.max_backoff",
        "max_backoff",
        "not be shorter than retry.initial_backoff",
    );
    let text = with("sinks.console", "dead_letter_max_bytes = -1");
    assert_error(
        &text,
        "sinks.console.dead_letter_max_bytes",
        "dead_letter_max_bytes",
        "at least 1",
    );
    let text = with("state", "busy_timeout = \"0s\"");
    assert_error(&text, "state.busy_timeout", "busy_timeout", "longer than 0");
    // A key that only network sinks have is unknown to stdout.
    let text = with("sinks.console", "request.timeout = \"5s\"");
    assert_error(&text, "sinks.console.request", "request", "unknown key");
}

#[test]
fn a_dead_letter_path_is_relative_to_the_config_and_never_another_writers_file() {
    let text = with(
        "sinks.console",
        "dead_letter_path = \"rejected/${REGION}.jsonl\"",
    );
    let config = parse(&text).unwrap();
    assert_eq!(
        config.sinks[0].options.dead_letter_path,
        Path::new("/etc/runner/rejected/eu-de.jsonl")
    );
    let text = format!(
        "{}\n[sinks.archive]\ntype = \"file\"\npath = \"out/events.jsonl\"\n",
        with("sinks.console", "dead_letter_path = \"out/events.jsonl\"")
    );
    let error = parse_err(&text);
    let shown = error.to_string();
    assert!(shown.contains("is also written by"), "{shown}");
    let text = with("sinks.console", "dead_letter_path = \"state/events.db\"");
    assert_error(
        &text,
        "sinks.console.dead_letter_path",
        "dead_letter_path",
        "the state file",
    );
}

#[test]
fn sources_that_read_the_same_service_are_named_in_a_warning() {
    let second = |name: &str, endpoint: &str, project: &str, services: &str| {
        format!(
            "\n[sources.{name}]\ntype = \"modelarts\"\nendpoint = \"{endpoint}\"\n\
             project_id = \"{project}\"\nservices = {services}\n\
             auth = {{ type = \"token\", token = \"t\" }}\n"
        )
    };
    // The same endpoint (a trailing slash and the host's case aside), project and service.
    let text = format!(
        "{MINIMAL}{}",
        second(
            "copy",
            "https://MODELARTS.eu-de.otc.t-systems.com/",
            "0123456789abcdef0123456789abcdef",
            "[\"other\", \"35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e\"]"
        )
    );
    let warnings = super::shared_services(&parse(&text).unwrap().sources);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = &warnings[0];
    for needle in [
        "`copy` and `prod`",
        "35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e",
        "0123456789abcdef0123456789abcdef",
        "modelarts.eu-de.otc.t-systems.com",
        "under its own name",
    ] {
        assert!(warning.contains(needle), "{needle} not in {warning}");
    }
    assert!(!warning.contains("other"), "{warning}");
    // Another project or another endpoint is another service.
    for (endpoint, project) in [
        (
            "https://modelarts.eu-de.otc.t-systems.com",
            "another-project",
        ),
        (
            "https://modelarts.eu-nl.otc.t-systems.com",
            "0123456789abcdef0123456789abcdef",
        ),
    ] {
        let text = format!(
            "{MINIMAL}{}",
            second(
                "copy",
                endpoint,
                project,
                "[\"35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e\"]"
            )
        );
        assert!(super::shared_services(&parse(&text).unwrap().sources).is_empty());
    }
}

// ---- several files ----

/// `(path, text)` pairs for [`parse_files`].
fn files(pairs: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
    pairs
        .iter()
        .map(|(path, text)| (PathBuf::from(path), (*text).to_owned()))
        .collect()
}

#[test]
fn several_files_merge_with_paths_relative_to_their_own_folder() {
    let rest = MINIMAL.replace("[state]\npath = \"state/events.db\"\n", "")
        + "\n[runner]\ninterval = \"5s\"\n\n[sinks.archive]\ntype = \"file\"\npath = \"out.jsonl\"\n";
    let config = parse_files(
        &files(&[
            (
                "/etc/runner/base.toml",
                "[state]\npath = \"state/events.db\"\n\n[runner]\nconcurrency = 2\n",
            ),
            ("/etc/runner/conf.d/prod.toml", &rest),
        ]),
        &env,
    )
    .unwrap();
    assert_eq!(config.state_path, Path::new("/etc/runner/state/events.db"));
    assert_eq!(config.runner.concurrency, 2);
    assert_eq!(config.runner.interval, Duration::from_secs(5));
    let archive = config.sinks.iter().find(|s| s.name == "archive").unwrap();
    assert_eq!(
        kind(archive),
        SinkKind::File {
            path: PathBuf::from("/etc/runner/conf.d/out.jsonl")
        }
    );
    assert_eq!(
        config.file,
        Path::new("/etc/runner/base.toml, /etc/runner/conf.d/prod.toml")
    );
}

#[test]
fn a_key_or_component_defined_twice_names_both_files() {
    let error = parse_files(
        &files(&[
            ("/a.toml", MINIMAL),
            (
                "/b.toml",
                "[runner]\nconcurrency = 2\n\n[sources.prod]\ntype = \"modelarts\"\n",
            ),
            ("/c.toml", "[runner]\nconcurrency = 3\n"),
        ]),
        &env,
    )
    .unwrap_err();
    let shown = error.to_string();
    let lines: Vec<&str> = shown.lines().skip(1).map(str::trim).collect();
    assert_eq!(
        lines,
        [
            "/b.toml:4: sources.prod: is also defined in /a.toml:5; define each component in \
             one file",
            "/c.toml:2: runner.concurrency: is also set in /b.toml:2; set each key in one file",
        ],
        "{shown}"
    );
}

#[test]
fn errors_of_every_file_come_in_file_then_line_order() {
    let error = parse_files(
        &files(&[
            ("/a.toml", &with("sinks.console", "fromat = \"text\"")),
            ("/b.toml", "[runner]\nintervall = \"5s\"\n"),
        ]),
        &env,
    )
    .unwrap_err();
    let ConfigError::Several(errors) = &error else {
        panic!("not several: {error}");
    };
    let keys: Vec<Option<&str>> = errors.iter().map(ConfigError::key).collect();
    assert_eq!(
        keys,
        [Some("sinks.console.fromat"), Some("runner.intervall")],
        "{error}"
    );
    assert!(
        error
            .to_string()
            .starts_with("2 errors in the configuration:\n  /a.toml:")
    );
}

#[test]
fn the_origin_of_endpoints_and_project_id_names_key_and_line() {
    let source = only_source(&cloud_config(EU_DE, PASSWORD_AUTH));
    assert_eq!(
        source.origin,
        source::SettingsOrigin {
            endpoint: "sources.prod.region (line 6)".to_owned(),
            iam_endpoint: "sources.prod.region (line 6)".to_owned(),
            project_id: "sources.prod.project_id (line 7)".to_owned(),
        }
    );
    let explicit = "endpoint = \"https://modelarts.example\"\nproject_id = \"p1\"\n\
                    services = [\"s1\"]";
    let auth = format!("{PASSWORD_AUTH}\niam_endpoint = \"https://iam.example\"");
    let source = only_source(&cloud_config(explicit, &auth));
    assert_eq!(source.endpoint_origin(), "sources.prod.endpoint (line 6)");
    assert_eq!(
        source.project_id_origin(),
        "sources.prod.project_id (line 7)"
    );
    assert_eq!(
        source.iam_endpoint_origin(),
        "sources.prod.auth.iam_endpoint (line 15)"
    );
}
