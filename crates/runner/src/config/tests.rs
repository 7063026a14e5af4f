//! Tests of loading the configuration: the shipped examples, every default,
//! and the errors (key, line, no secrets).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::path::Path;

const TOKEN: &str = "tok-S3CRET-value";
const FILE: &str = "/etc/runner/runner.toml";

fn env(name: &str) -> Option<String> {
    match name {
        "MODELARTS_TOKEN" => Some(TOKEN.to_owned()),
        "PROJECT" => Some("fedcba9876543210fedcba9876543210".to_owned()),
        "SPACED_TOKEN" => Some(format!("{TOKEN}\n")),
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
        for source in &config.sources {
            assert_eq!(source.endpoint, "https://modelarts.eu-de.otc.t-systems.com");
            match &source.auth {
                AuthSettings::Token {
                    token: SecretSource::Inline(token),
                } => assert_eq!(token.expose(), TOKEN),
                other => panic!("unexpected auth {other:?}"),
            }
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        match name.as_str() {
            "stdout.toml" => {
                assert_eq!(config.state_path, folder.join("state/stdout.db"));
                assert_eq!(config.runner, RunnerSettings::default());
                let source = &config.sources[0];
                assert_eq!(source.name, "prod");
                assert_eq!(source.services.len(), 2);
                assert_eq!(source.start_at, StartAt::Beginning);
                assert_eq!(
                    config.sinks,
                    vec![SinkSettings {
                        name: "console".to_owned(),
                        inputs: None,
                        event_types: None,
                        kind: SinkKind::Stdout {
                            format: StdoutFormat::Json
                        },
                    }]
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
                    config.sinks[0].kind,
                    SinkKind::File {
                        path: folder.join("out/events.jsonl")
                    }
                );
                assert_eq!(config.sinks[1].inputs, Some(vec!["prod".to_owned()]));
                assert_eq!(
                    config.sinks[1].event_types,
                    Some(vec!["abnormal".to_owned()])
                );
            }
            // Examples of other sinks are checked by their own tests; loading is enough here.
            _ => {}
        }
        seen.push(name);
    }
    assert!(seen.iter().any(|n| n == "stdout.toml"), "{seen:?}");
    assert!(seen.iter().any(|n| n == "file.toml"), "{seen:?}");
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
    assert_eq!(source.start_at, StartAt::Beginning);
    assert_eq!(source.offset_unit, OffsetUnit::Auto);
    assert_eq!(source.request_timeout, Duration::from_secs(30));
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
    assert_eq!(sink.inputs, None);
    assert_eq!(sink.event_types, None);
    assert_eq!(
        sink.kind,
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

[sources.b-region]
type = "modelarts"
endpoint = "http://127.0.0.1:8080"
project_id = "${PROJECT}"
services = ["s1", "s2"]
event_type = "abnormal"
page_size = 1
lookback = "0s"
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
        config.sinks[0].kind,
        SinkKind::File {
            path: PathBuf::from("/etc/runner/../out/all.jsonl")
        }
    );
    let z = &config.sinks[1];
    assert_eq!(
        z.kind,
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
    assert_error(&text, "verbose", "verbose", "unknown field `verbose`");
}

#[test]
fn unknown_key_in_state_and_runner() {
    let text = with("state", "mode = \"wal\"");
    assert_error(&text, "state.mode", "mode", "unknown field `mode`");
    let text = with("runner", "intervall = \"5s\"");
    assert_error(
        &text,
        "runner.intervall",
        "intervall",
        "unknown field `intervall`",
    );
}

#[test]
fn unknown_key_in_a_source() {
    let text = with("sources.prod", "pagesize = 10");
    assert_error(
        &text,
        "sources.prod.pagesize",
        "pagesize",
        "unknown field `pagesize`",
    );
}

#[test]
fn unknown_key_in_auth() {
    let text = with("sources.prod.auth", "username = \"me\"");
    assert_error(
        &text,
        "sources.prod.auth.username",
        "username",
        "unknown field `username`",
    );
}

#[test]
fn unknown_key_in_a_sink() {
    let text = with("sinks.console", "fromat = \"text\"");
    assert_error(
        &text,
        "sinks.console.fromat",
        "fromat",
        "unknown field `fromat`",
    );
    // A key of another kind of sink is unknown to this one.
    let text = with("sinks.console", "path = \"out.jsonl\"");
    assert_error(
        &text,
        "sinks.console.path",
        "path = \"out",
        "unknown field `path`",
    );
    let text =
        format!("{MINIMAL}\n[sinks.archive]\ntype = \"file\"\npath = \"a\"\nformat = \"text\"\n");
    assert_error(
        &text,
        "sinks.archive.format",
        "format",
        "unknown field `format`",
    );
}

#[test]
fn wrong_types() {
    let text = with("sources.prod", "page_size = \"big\"");
    assert_error(
        &text,
        "sources.prod.page_size",
        "page_size",
        "invalid type: string",
    );
    let text = MINIMAL.replace(
        "services = [\"35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e\"]",
        "services = \"35de3ca9\"",
    );
    assert_error(
        &text,
        "sources.prod.services",
        "services",
        "expected a sequence",
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
        "invalid type: floating point",
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
            "`normal` or `abnormal`",
        ),
        (
            "sources.prod",
            "offset_unit = \"byte\"",
            "sources.prod.offset_unit",
            "unknown variant `byte`",
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
            "max_requests_per_second = 0",
            "sources.prod.max_requests_per_second",
            "greater than 0",
        ),
        (
            "sources.prod",
            "max_requests_per_second = nan",
            "sources.prod.max_requests_per_second",
            "greater than 0",
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
            "expected `modelarts`",
        ),
        (
            "sinks.console",
            "type = \"kafka\"",
            "sinks.console.type",
            "unknown variant `kafka`",
        ),
        (
            "sinks.console",
            "format = \"xml\"",
            "sinks.console.format",
            "`json` or `text`",
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
fn auth_kinds_other_than_token_are_refused_with_the_accepted_ones() {
    let text = MINIMAL.replace("type = \"token\"", "type = \"aksk\"");
    assert_error(
        &text,
        "sources.prod.auth.type",
        "type = \"aksk\"",
        "expected `token`",
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
    let text = MINIMAL.replace("${MODELARTS_TOKEN}", "abc${def-ghi}jkl");
    let error = parse_err(&text);
    assert!(
        error.to_string().contains("malformed placeholder"),
        "{error}"
    );
    for part in ["abc", "def-ghi", "jkl"] {
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
        config.sinks[0].kind,
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
    sink.filter()
        .accepts(&record::EventRecord::new(source, "svc", parts))
}
