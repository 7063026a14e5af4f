//! End-to-end tests of failing fast and blaming the right thing (issue 12): an endpoint
//! that cannot be reached, or that accepts connections and never answers, is reported as
//! such (URL and config key), after a small bounded number of attempts, never as an
//! authentication failure and never held for five minutes; `validate --check` checks every
//! source and sink at once and every listed service; refusals carry hints that name what
//! to change.
//!
//! Everything runs on 127.0.0.1: the simulator, a closed port, and listeners that accept
//! connections and never answer (counting them). No assertion is on wall time.

#![allow(clippy::unwrap_used)]

mod support;

use simulator::SimConfig;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use support::{ConfigText, Dir, occurrences, start_sim, toml_list, toml_str, wait_until};

/// `http://127.0.0.1:PORT` of a port nothing listens on (bound, then closed).
fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// A listener that accepts connections, counts them, and never answers (the connections
/// are kept open until it is dropped with the test).
struct Silent {
    url: String,
    accepted: Arc<AtomicUsize>,
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (count, keep) = (accepted.clone(), held.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                keep.lock().unwrap().push(stream);
            }
        });
        Silent {
            url,
            accepted,
            _held: held,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// The 1-based line of the first line of `text` that starts with `prefix`.
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines()
        .position(|line| line.starts_with(prefix))
        .map(|index| index + 1)
        .unwrap_or_else(|| panic!("no line starts with {prefix:?} in\n{text}"))
}

/// Each line of `stderr` says "authentication (KIND) failed" at most once.
fn assert_no_repeated_prefix(stderr: &str) {
    for line in stderr.lines() {
        assert!(
            occurrences(line, "authentication (") <= 1,
            "a repeated prefix: {line}"
        );
    }
}

// Today: 139 s of retries (8, with backoff up to a minute), then "authentication (token)
// failed: … Connection refused". Wanted: "endpoint unreachable", the URL and the key it
// came from with its line, two retries, no auth hold.
#[test]
fn a_closed_port_is_an_unreachable_endpoint_after_two_retries() {
    let dir = Dir::new("failfast-closed");
    let sim = start_sim(SimConfig::default());
    let url = closed_port_url();
    let config = ConfigText::for_sim(&sim)
        .source_key("endpoint", &toml_str(&url))
        .file_sink("archive", "out/events.jsonl");
    let text = config.render();
    let line = line_of(&text, "endpoint = ");
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();

    let failed = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(1);
    failed.assert_no_panic();
    let stderr = &failed.stderr;
    assert!(stderr.contains("endpoint unreachable"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{url} (set by sources.sim.endpoint (line {line}))"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(
        !stderr.contains("authentication (token) failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("not tried again"), "{stderr}");
    assert!(!stderr.contains("Credentials refused"), "{stderr}");
    assert_eq!(
        occurrences(stderr, "Request failed; retrying."),
        2,
        "max_retries = 8, but an unreachable endpoint gets two retries:\n{stderr}"
    );

    let checked = dir
        .command(&["validate", "--config", config_arg, "--check"])
        .expect_code(1);
    let stderr = &checked.stderr;
    assert!(
        stderr.contains("source sim: FAILED (endpoint unreachable)")
            && stderr.contains(&format!("sources.sim.endpoint (line {line})")),
        "{stderr}"
    );
    assert_eq!(
        occurrences(stderr, "Request failed; retrying."),
        2,
        "{stderr}"
    );
    assert!(stderr.contains("sink archive (file): ready."), "{stderr}");
}

// The same for the IAM login of password auth: IAM's URL and `auth.iam_endpoint` are
// named, two retries, no hold.
#[test]
fn an_unreachable_iam_is_named_with_its_key() {
    let dir = Dir::new("failfast-iam");
    let sim = start_sim(SimConfig::default());
    let url = closed_port_url();
    let config = ConfigText::for_sim(&sim)
        .auth_of(
            "sim",
            &[
                ("type", toml_str("password")),
                ("iam_endpoint", toml_str(&url)),
                ("domain", toml_str(simulator::DEFAULT_IAM_DOMAIN)),
                ("user", toml_str(simulator::DEFAULT_IAM_USER)),
                ("password", toml_str(simulator::DEFAULT_IAM_PASSWORD)),
            ],
        )
        .file_sink("archive", "out/events.jsonl");
    let line = line_of(&config.render(), "iam_endpoint = ");
    let config_path = dir.write_config(&config);

    let failed = dir
        .command(&["sync", "--config", config_path.to_str().unwrap()])
        .expect_code(1);
    let stderr = &failed.stderr;
    assert!(
        stderr.contains(&format!(
            "endpoint unreachable: {url} (set by sources.sim.auth.iam_endpoint (line {line}))"
        )),
        "{stderr}"
    );
    assert_eq!(
        occurrences(stderr, "IAM login failed; retrying."),
        2,
        "{stderr}"
    );
    assert!(
        !stderr.contains("authentication (password) failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("not tried again"), "{stderr}");
}

// A server that accepts the connection and never answers: each attempt ends at
// `request_timeout`, the error names the URL and that key, the probe gets the small
// budget (three connections), and nothing is held.
#[test]
fn a_server_that_never_answers_times_out_naming_request_timeout() {
    let dir = Dir::new("failfast-silent");
    let sim = start_sim(SimConfig::default());
    let silent = Silent::start();
    let config = ConfigText::for_sim(&sim)
        .source_key("endpoint", &toml_str(&silent.url))
        .source_key("request_timeout", &toml_str("300ms"))
        .file_sink("archive", "out/events.jsonl");
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();

    let failed = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(1);
    failed.assert_no_panic();
    let stderr = &failed.stderr;
    assert!(
        stderr.contains(&format!(
            "no answer from {} within 300ms (set by sources.sim.request_timeout)",
            silent.url
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("authentication (token) failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("not tried again"), "{stderr}");
    assert_eq!(silent.accepted(), 3, "one probe and two retries:\n{stderr}");
}

// `validate --check` checks sources and sinks at once: with request timeouts far longer
// than the test's patience, both silent sources and the silent Loki (its healthcheck asks
// `/ready`) have a connection before any of them times out. Checked one after another,
// the second would wait ten minutes for the first.
#[test]
fn validate_check_checks_every_source_and_sink_at_once() {
    let dir = Dir::new("failfast-concurrent");
    let sim = start_sim(SimConfig::default());
    let (first, second, loki) = (Silent::start(), Silent::start(), Silent::start());
    let services = sim.service_ids();
    let config = ConfigText::for_sim(&sim)
        .with_source("second", &sim, &services)
        .source_key("request_timeout", &toml_str("10m"))
        .source_key("endpoint", &toml_str(&first.url));
    let rendered = config
        .sink(
            "loki",
            "loki",
            &[
                ("endpoint", toml_str(&loki.url)),
                ("request.timeout", toml_str("10m")),
            ],
        )
        .render();
    // `source_key` set every source's endpoint; the second source gets its own listener.
    let mut seen = 0;
    let text: Vec<String> = rendered
        .lines()
        .map(|line| {
            if line.starts_with("endpoint = ") {
                seen += 1;
                if seen == 2 {
                    return format!("endpoint = {}", toml_str(&second.url));
                }
            }
            line.to_owned()
        })
        .collect();
    let text = text.join("\n");
    let config_path = dir.write("runner.toml", &text);
    let config_arg = config_path.to_str().unwrap();

    let running = dir
        .command(&["validate", "--config", config_arg, "--check"])
        .spawn();
    wait_until(
        "both sources and the sink are being checked at once",
        || first.accepted() >= 1 && second.accepted() >= 1 && loki.accepted() >= 1,
    );
    let output = running.kill();
    output.assert_no_panic();
}

// Today `validate --check` passes a config whose listed service does not exist, and the
// sync then fails with ModelArts.3502. Every listed service is looked up now.
#[test]
fn validate_check_fails_on_a_listed_service_that_does_not_exist() {
    let dir = Dir::new("failfast-missing-service");
    let sim = start_sim(SimConfig {
        services: 2,
        ..SimConfig::default()
    });
    let missing = "00000000-0000-4000-8000-000000000000";
    let mut services = sim.service_ids();
    services.push(missing.to_owned());
    let config = ConfigText::for_sim(&sim)
        .source_key("services", &toml_list(&services))
        .stdout_sink("console");
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();

    let checked = dir
        .command(&["validate", "--config", config_arg, "--check"])
        .expect_code(1);
    let stderr = &checked.stderr;
    assert!(
        stderr.contains(&format!("source sim: service {missing}: FAILED"))
            && stderr.contains("ModelArts.3502"),
        "{stderr}"
    );
    for id in &services[..2] {
        assert!(
            stderr.contains(&format!("source sim: service {id} (")) && stderr.contains("found."),
            "{id} not reported found:\n{stderr}"
        );
    }
    assert!(stderr.contains("sink console (stdout): ready."), "{stderr}");

    // Without the missing service the same config passes.
    let config = ConfigText::for_sim(&sim).stdout_sink("console");
    let config_path = dir.write_config(&config);
    dir.command(&[
        "validate",
        "--config",
        config_path.to_str().unwrap(),
        "--check",
    ])
    .expect_code(0);
}

// ModelArts.0210: the project id in the URL is not the token's. The error names
// `sources.NAME.project_id` and its line.
#[test]
fn a_project_id_that_is_not_the_tokens_names_the_key_and_its_line() {
    let dir = Dir::new("failfast-project");
    let sim = start_sim(SimConfig::default());
    let config = ConfigText::for_sim(&sim)
        .source_key("project_id", &toml_str("fedcba9876543210fedcba9876543210"))
        .file_sink("archive", "out/events.jsonl");
    let line = line_of(&config.render(), "project_id = ");
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();

    let failed = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(1);
    let stderr = &failed.stderr;
    assert!(stderr.contains("ModelArts.0210"), "{stderr}");
    assert!(
        stderr.contains(&format!("check sources.sim.project_id (line {line})")),
        "{stderr}"
    );
    assert_no_repeated_prefix(stderr);
}

// A 401 on a token source: tokens expire after 24 h; the hint suggests password or AK/SK
// auth. `runner services` says "authentication (token) failed" once, not twice.
#[test]
fn a_refused_token_says_tokens_expire_and_suggests_password_or_aksk() {
    let dir = Dir::new("failfast-token");
    let sim = start_sim(SimConfig::default());
    let config = ConfigText::for_sim(&sim)
        .auth_key("token", &toml_str("an-expired-token"))
        .file_sink("archive", "out/events.jsonl");
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();

    let failed = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(1);
    let stderr = &failed.stderr;
    assert!(stderr.contains("HTTP 401"), "{stderr}");
    assert!(stderr.contains("IAM tokens expire 24 h"), "{stderr}");
    assert!(
        stderr.contains(r#"use auth type "password" or "aksk""#),
        "{stderr}"
    );
    assert!(!stderr.contains("an-expired-token"), "{stderr}");
    assert_no_repeated_prefix(stderr);

    let listed = dir
        .command(&["services", "--config", config_arg])
        .expect_code(1);
    assert!(
        listed.stdout.contains("authentication (token) failed"),
        "{}",
        listed.stdout
    );
    assert_no_repeated_prefix(&listed.stdout);
}

// `run` holds a refused token: the next poll says why for a token (it does not become
// valid again), not the AK/SK lockout, and names the refusal once.
#[test]
fn a_held_token_refusal_gives_the_reason_for_tokens() {
    let dir = Dir::new("failfast-held");
    let sim = start_sim(SimConfig::default());
    let config = ConfigText::for_sim(&sim)
        .auth_key("token", &toml_str("an-expired-token"))
        .runner_key("interval", &toml_str("50ms"))
        .file_sink("archive", "out/events.jsonl");
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();

    let running = dir.command(&["run", "--config", config_arg]).spawn();
    wait_until("a poll reports the held refusal", || {
        running.stderr_so_far().contains("not tried again")
    });
    let output = running.kill();
    let held: Vec<&str> = output
        .stderr
        .lines()
        .filter(|line| line.contains("not tried again"))
        .collect();
    for line in &held {
        assert!(
            line.contains("a refused token does not become valid again"),
            "{line}"
        );
        assert!(!line.contains("AK/SK"), "{line}");
        assert!(line.contains("HTTP 401 APIG.0307"), "{line}");
        assert_eq!(occurrences(line, "authentication ("), 1, "{line}");
    }
}

// `run` does not hold an unreachable endpoint like refused credentials: every poll tries
// again (two retries each), none says "not tried again".
#[test]
fn run_tries_an_unreachable_endpoint_again_at_every_poll() {
    let dir = Dir::new("failfast-run");
    let sim = start_sim(SimConfig::default());
    let config = ConfigText::for_sim(&sim)
        .source_key("endpoint", &toml_str(&closed_port_url()))
        .runner_key("interval", &toml_str("50ms"))
        .file_sink("archive", "out/events.jsonl");
    let config_path = dir.write_config(&config);

    let running = dir
        .command(&["run", "--config", config_path.to_str().unwrap()])
        .spawn();
    wait_until("three polls tried the endpoint", || {
        occurrences(&running.stderr_so_far(), "endpoint unreachable") >= 9
    });
    let output = running.kill();
    output.assert_no_panic();
    assert!(
        !output.stderr.contains("not tried again"),
        "{}",
        output.stderr
    );
    assert!(
        !output.stderr.contains("Credentials refused"),
        "{}",
        output.stderr
    );
}
