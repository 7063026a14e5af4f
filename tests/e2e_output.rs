//! End-to-end tests of what the runner writes for machines and people: JSON logs that are
//! JSON on every stderr line (summaries and errors included), no colour escapes where no
//! terminal reads them, commands that stop quietly when their reader closes stdout, the
//! start-up and per-cycle lines of `run`, the total line of every `sync`, and each failure
//! said once. Each test runs the real `runner` binary against the simulator on 127.0.0.1.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use support::{
    ConfigText, Dir, occurrences, parse_json_lines, read_jsonl, sim_with, stderr_on_a_terminal,
    toml_list, toml_str, wait_until,
};

const FILE: &str = "out/events.jsonl";

/// The stderr lines that start with `prefix`.
fn lines_starting<'a>(stderr: &'a str, prefix: &str) -> Vec<&'a str> {
    stderr.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// The JSON log objects whose `fields.summary` is `kind`.
fn summary_objects<'a>(logs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    logs.iter()
        .filter(|log| log["fields"]["summary"] == kind)
        .collect()
}

// 1. `--log-format json`: every stderr line is one JSON object, the end-of-run summary
//    included (one object per service, per sink and one total), and so is an error from
//    `main` (a config that does not exist).
#[test]
fn json_logs_make_every_stderr_line_json() {
    let dir = Dir::new("json-logs");
    let sim = sim_with(2, 7, 1201);
    let config = ConfigText::for_sim(&sim).file_sink("archive", FILE);
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();

    let output = dir
        .command(&["--log-format", "json", "sync", "--config", config_arg])
        .expect_code(0);
    let logs = parse_json_lines(&output.stderr, "stderr");
    let services = summary_objects(&logs, "service");
    assert_eq!(services.len(), 2, "{}", output.stderr);
    for service in &services {
        let fields = &service["fields"];
        assert_eq!(fields["source"], "sim");
        assert_eq!(fields["fetched"], 7, "{service}");
        assert_eq!(fields["new"], 7, "{service}");
        assert_eq!(fields["delivered"]["archive"], 7, "{service}");
        assert_eq!(fields["malformed"], 0, "{service}");
        assert_eq!(service["level"], "INFO");
        assert!(fields["message"].as_str().unwrap().contains("fetched 7"));
    }
    let sinks = summary_objects(&logs, "sink");
    assert_eq!(sinks.len(), 1, "{}", output.stderr);
    assert_eq!(sinks[0]["fields"]["sink"], "archive");
    assert_eq!(sinks[0]["fields"]["delivered"], 14);
    let totals = summary_objects(&logs, "total");
    assert_eq!(totals.len(), 1, "{}", output.stderr);
    let total = &totals[0]["fields"];
    assert_eq!(total["fetched"], 14);
    assert_eq!(total["new"], 14);
    assert_eq!(total["delivered"]["archive"], 14);
    assert_eq!(total["dead_lettered"], 0);
    assert_eq!(total["services"], 2);
    assert!(total["duration_ms"].is_u64(), "{total}");
    assert!(total["events_per_second"].is_number(), "{total}");

    // A command line that clap refuses says so in JSON too (exit 2).
    let usage = dir
        .command(&["sync", "--log-format", "json", "--no-such-flag"])
        .expect_code(2);
    let logs = parse_json_lines(&usage.stderr, "stderr of a bad command line");
    assert_eq!(logs.len(), 1, "{}", usage.stderr);
    assert_eq!(logs[0]["level"], "ERROR");
    assert!(
        logs[0]["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("--no-such-flag"),
        "{}",
        usage.stderr
    );

    let missing = dir
        .command(&["--log-format", "json", "state", "--config", "nowhere.toml"])
        .expect_code(2);
    let logs = parse_json_lines(&missing.stderr, "stderr of a missing config");
    assert_eq!(logs.len(), 1, "{}", missing.stderr);
    assert_eq!(logs[0]["level"], "ERROR");
    assert!(
        logs[0]["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("nowhere.toml"),
        "{}",
        missing.stderr
    );

    // `validate --check` (the source, each listed service, the sink, the state) and the
    // preview of `state reset` are JSON too; a failed check is at ERROR.
    let check = dir
        .command(&[
            "--log-format",
            "json",
            "validate",
            "--check",
            "--config",
            config_arg,
        ])
        .expect_code(0);
    let logs = parse_json_lines(&check.stderr, "stderr of validate --check");
    let messages: Vec<&str> = logs
        .iter()
        .map(|l| l["fields"]["message"].as_str().unwrap_or_default())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("configuration is valid")),
        "{}",
        check.stderr
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("state ") && m.contains("intact")),
        "{}",
        check.stderr
    );
    let reset = dir
        .command(&[
            "--log-format",
            "json",
            "state",
            "reset",
            "--config",
            config_arg,
            "--to",
            "beginning",
        ])
        .expect_code(0);
    let logs = parse_json_lines(&reset.stderr, "stderr of state reset");
    assert!(logs.len() >= 3, "a preview and a result: {}", reset.stderr);

    let broken = ConfigText::for_sim(&sim)
        .with_source("gone", &sim, &["no-such-service".to_owned()])
        .file_sink("archive", FILE);
    let broken_path = dir.write_config(&broken);
    let failed = dir
        .command(&[
            "--log-format",
            "json",
            "validate",
            "--check",
            "--config",
            broken_path.to_str().unwrap(),
        ])
        .expect_code(1);
    let logs = parse_json_lines(&failed.stderr, "stderr of a failed validate --check");
    assert!(
        logs.iter().any(|l| l["level"] == "ERROR"
            && l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("no-such-service") && m.contains("FAILED"))),
        "{}",
        failed.stderr
    );
}

// 2. Text logs carry no colour escapes when stderr is a file (cron mail, a log file), even
//    without NO_COLOR; the first sync does log something (the state file's creation).
#[test]
fn text_logs_to_a_file_have_no_escape_codes() {
    let dir = Dir::new("no-colour");
    let sim = sim_with(1, 3, 1202);
    let config = ConfigText::for_sim(&sim).file_sink("archive", FILE);
    let config_path = dir.write_config(&config);
    let output = dir
        .command(&["sync", "--config", config_path.to_str().unwrap()])
        .env_remove("NO_COLOR")
        .expect_code(0);
    assert!(output.stderr.contains(" INFO "), "{}", output.stderr);
    assert!(
        !output.stderr.contains('\u{1b}'),
        "escape codes on a stderr that is not a terminal:\n{:?}",
        output.stderr
    );
}

// 2b. On a terminal, text logs are coloured, unless NO_COLOR is set (to anything but "").
#[test]
fn text_logs_are_coloured_only_on_a_terminal_without_no_color() {
    let dir = Dir::new("colour-terminal");
    let sim = sim_with(1, 3, 1212);
    // Each run has its own state and file, so that each logs the state file's creation.
    let stderr_with = |name: &str, no_color: Option<&str>| {
        let config = ConfigText::for_sim(&sim)
            .state_path(&format!("state/{name}.db"))
            .file_sink("archive", &format!("out/{name}.jsonl"));
        let config_path = dir.write(&format!("{name}.toml"), &config.render());
        let stderr = stderr_on_a_terminal(
            &dir,
            &["sync", "--config", config_path.to_str().unwrap()],
            &[("NO_COLOR", no_color)],
        );
        assert!(stderr.contains("Created the state file"), "{stderr:?}");
        stderr
    };
    let coloured = stderr_with("unset", None);
    assert!(
        coloured.contains("\u{1b}["),
        "no colour on a terminal: {coloured:?}"
    );
    let plain = stderr_with("set", Some("1"));
    assert!(
        !plain.contains('\u{1b}'),
        "colour despite NO_COLOR: {plain:?}"
    );
    let empty = stderr_with("empty", Some(""));
    assert!(
        empty.contains("\u{1b}["),
        "an empty NO_COLOR counts as unset: {empty:?}"
    );
}

// 3. A new state file is created, not "migrated".
#[test]
fn creating_the_state_file_is_not_a_migration() {
    let dir = Dir::new("state-created");
    let sim = sim_with(1, 3, 1203);
    let config = ConfigText::for_sim(&sim).file_sink("archive", FILE);
    let config_path = dir.write_config(&config);
    let output = dir
        .command(&["sync", "--config", config_path.to_str().unwrap()])
        .expect_code(0);
    assert!(!output.stderr.contains("Migrated"), "{}", output.stderr);
    assert_eq!(
        occurrences(&output.stderr, "Created the state file"),
        1,
        "{}",
        output.stderr
    );
}

// 4. No command panics when its reader has closed stdout (`| head -1`): state (text and
//    JSON), services and dead-letter show (table and JSON) stop quietly with exit 0, and
//    the state they read is untouched. A dry run stops printing and still ends normally.
#[test]
fn no_command_panics_on_a_closed_stdout() {
    let dir = Dir::new("closed-stdout-commands");
    let sim = sim_with(2, 5, 1204);
    let config = ConfigText::for_sim(&sim)
        .file_sink("archive", FILE)
        .sink_key("archive", "dead_letter_path", &toml_str("dl/archive.jsonl"));
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();
    dir.command(&["sync", "--config", config_arg])
        .expect_code(0);
    // Two dead-letter entries, written as the engine writes them.
    let records = read_jsonl(&dir.join(FILE));
    let entries: String = records
        .iter()
        .take(2)
        .map(|record| {
            format!(
                "{}\n",
                serde_json::json!({"record": record, "sink": "archive", "reason": "refused",
                    "status": 400, "time": "2026-01-01T00:00:00Z"})
            )
        })
        .collect();
    dir.write("dl/archive.jsonl", &entries);
    let state_before = dir.read_bytes("state/events.db");

    let commands: [&[&str]; 6] = [
        &["state", "--config", config_arg],
        &["state", "--config", config_arg, "--json"],
        &["services", "--config", config_arg],
        &[
            "dead-letter",
            "show",
            "--config",
            config_arg,
            "--sink",
            "archive",
        ],
        &[
            "dead-letter",
            "show",
            "--config",
            config_arg,
            "--sink",
            "archive",
            "--json",
        ],
        &["sync", "--config", config_arg, "--dry-run"],
    ];
    for args in commands {
        let output = dir.command(args).run_with_stdout_closed();
        output.assert_no_panic();
        assert_eq!(
            output.code(),
            Some(0),
            "runner {}: {:?}\n{}",
            args.join(" "),
            output.status,
            output.stderr
        );
    }
    assert_eq!(dir.read_bytes("state/events.db"), state_before);
    assert_eq!(dir.read_bytes("dl/archive.jsonl"), entries.as_bytes());
}

// 5. Every `sync` ends with one total line: fetched, new, delivered per sink,
//    dead-lettered, malformed, duration and rate; it is not mistaken for a service line.
#[test]
fn a_sync_ends_with_a_total_line() {
    let dir = Dir::new("total-line");
    let sim = sim_with(3, 4, 1205);
    let config = ConfigText::for_sim(&sim)
        .file_sink("archive", FILE)
        .stdout_sink("console");
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();
    let output = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(0);
    assert_eq!(output.summaries().len(), 3, "{}", output.stderr);
    let totals = lines_starting(&output.stderr, "total: ");
    assert_eq!(totals.len(), 1, "{}", output.stderr);
    let total = totals[0];
    assert!(
        total.starts_with(
            "total: fetched 12, new 12, delivered archive=12 console=12, dead-lettered 0, malformed 0, 3 service(s) in "
        ),
        "{total}"
    );
    assert!(total.ends_with(" events/s"), "{total}");
    assert_eq!(
        output.stderr.lines().last(),
        Some(total),
        "the total is the last line"
    );

    let again = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(0);
    let totals = lines_starting(&again.stderr, "total: ");
    assert_eq!(totals.len(), 1, "{}", again.stderr);
    assert!(
        totals[0].contains(
            ", new 0, delivered archive=0 console=0, dead-lettered 0, malformed 0, 3 service(s) in "
        ),
        "{}",
        totals[0]
    );
}

// 6. `--dry-run` says so in its summary: what it would deliver per sink, never
//    "delivered archive=0".
#[test]
fn a_dry_run_says_so_in_its_summary() {
    let dir = Dir::new("dry-run-summary");
    let sim = sim_with(2, 5, 1206);
    let config = ConfigText::for_sim(&sim).file_sink("archive", FILE).sink(
        "alerts",
        "file",
        &[
            ("path", toml_str("out/alerts.jsonl")),
            ("event_types", toml_list(&["no-such-type".to_owned()])),
        ],
    );
    let config_path = dir.write_config(&config);
    let output = dir
        .command(&[
            "sync",
            "--config",
            config_path.to_str().unwrap(),
            "--dry-run",
        ])
        .expect_code(0);
    assert!(!output.stderr.contains("delivered"), "{}", output.stderr);
    assert_eq!(
        occurrences(&output.stderr, "would deliver alerts=0 archive=5"),
        2,
        "{}",
        output.stderr
    );
    let totals = lines_starting(&output.stderr, "total (dry run");
    assert_eq!(totals.len(), 1, "{}", output.stderr);
    assert!(
        totals[0].contains("fetched 10, new 10, would deliver alerts=0 archive=10,"),
        "{}",
        totals[0]
    );
    assert!(!dir.exists("state/events.db"));
}

// 7. Each failure is said once per cycle: a refused token (the source), an unknown
//    service, and a sink whose reader closed stdout are each named on one stderr line,
//    not in a log line and again in the summary.
#[test]
fn each_failure_is_reported_once() {
    let dir = Dir::new("failure-once");
    let sim = sim_with(1, 3, 1207);
    let config = ConfigText::for_sim(&sim)
        .file_sink("archive", FILE)
        .auth_key("token", &toml_str("not-the-token"));
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();
    let output = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(1);
    let failed: Vec<&str> = output
        .stderr
        .lines()
        .filter(|l| l.contains("FAILED"))
        .collect();
    assert_eq!(failed.len(), 1, "{}", output.stderr);
    let (_, why) = failed[0].split_once("FAILED: ").unwrap();
    let fragment: String = why.chars().take(40).collect();
    // The source's credential hold is its own news (how long the key is left alone) and
    // quotes the refusal; no other line may repeat it.
    let said: Vec<&str> = output
        .stderr
        .lines()
        .filter(|l| l.contains(&fragment) && !l.contains("Credentials refused"))
        .collect();
    assert_eq!(
        said.len(),
        1,
        "the source's failure is said more than once:\n{}",
        output.stderr
    );

    let mut services = sim.service_ids();
    services.push("00000000-0000-0000-0000-000000000000".to_owned());
    let config = ConfigText::for_sim(&sim)
        .source_key("services", &toml_list(&services))
        .file_sink("archive", FILE)
        .stdout_sink("console");
    let config_path = dir.write_config(&config);
    let output = dir
        .command(&["sync", "--config", config_path.to_str().unwrap()])
        .run_with_stdout_closed();
    output.assert_code(1);
    let lines_with = |needle: &str| output.stderr.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(
        lines_with("00000000-0000-0000-0000-000000000000"),
        1,
        "the unknown service's failure is said more than once:\n{}",
        output.stderr
    );
    assert_eq!(
        lines_with("stdout was closed by the reading process"),
        1,
        "the stdout sink's failure is said more than once:\n{}",
        output.stderr
    );
}

// 8. `run` says once how it starts (version, config, sources, sinks, interval); a cycle
//    that brings something prints its service lines, an idle cycle prints one total line
//    and no service lines.
#[test]
fn run_logs_one_start_line_and_one_line_per_idle_cycle() {
    let dir = Dir::new("run-lines");
    let sim = sim_with(2, 4, 1208);
    let config = ConfigText::for_sim(&sim)
        .file_sink("archive", FILE)
        .runner_key("interval", &toml_str("20ms"));
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();
    let running = dir.command(&["run", "--config", config_arg]).spawn();
    wait_until("three cycles have ended", || {
        lines_starting(&running.stderr_so_far(), "total: ").len() >= 3
    });
    running.signal(libc::SIGTERM);
    let output = running.wait();
    output.assert_code(0);

    let starts = lines_starting(&output.stderr, "runner ");
    assert_eq!(starts.len(), 1, "{}", output.stderr);
    assert!(output.stderr.starts_with("runner "), "{}", output.stderr);
    let start = starts[0];
    for part in [
        env!("CARGO_PKG_VERSION"),
        config_arg,
        "source(s) sim",
        "sink(s) archive (file)",
        "interval 20ms",
    ] {
        assert!(start.contains(part), "{part:?} not in {start:?}");
    }
    // The first cycle delivers the 8 events; the others find nothing new.
    let summaries = output.summaries();
    assert_eq!(summaries.len(), 2, "{}", output.stderr);
    assert!(summaries.iter().all(|s| s.new == 4), "{summaries:?}");
    let totals = lines_starting(&output.stderr, "total: ");
    assert!(
        totals[0].starts_with("total: fetched 8, new 8,"),
        "{totals:?}"
    );
    assert!(
        totals[1..]
            .iter()
            .all(|t| t.contains(", new 0, delivered archive=0,")),
        "{totals:?}"
    );
    // Besides the logs (timestamped: the state's creation, the signal, and whatever the
    // signal interrupted), nothing else: the start, 2 services, 1 sink, one total a cycle.
    let untimed = output
        .stderr
        .lines()
        .filter(|l| !l.starts_with(|c: char| c.is_ascii_digit()))
        .count();
    assert_eq!(untimed, 1 + 2 + 1 + totals.len(), "{}", output.stderr);
}

// 9. With `--log-format json` and `RUST_LOG=info,runner::summary=debug`, `run` writes only
//    JSON objects: one start-up object, and every cycle's service lines, those of idle
//    cycles at DEBUG.
#[test]
fn run_in_json_shows_idle_service_lines_at_debug() {
    let dir = Dir::new("run-json-debug");
    let sim = sim_with(2, 4, 1209);
    let config = ConfigText::for_sim(&sim)
        .file_sink("archive", FILE)
        .runner_key("interval", &toml_str("20ms"));
    let config_path = dir.write_config(&config);
    let running = dir
        .command(&[
            "--log-format",
            "json",
            "run",
            "--config",
            config_path.to_str().unwrap(),
        ])
        .env("RUST_LOG", "info,runner::summary=debug")
        .spawn();
    let cycles = |stderr: &str| occurrences(stderr, r#""summary":"total""#);
    wait_until("three cycles have ended", || {
        cycles(&running.stderr_so_far()) >= 3
    });
    running.signal(libc::SIGTERM);
    let output = running.wait();
    output.assert_code(0);
    let logs = parse_json_lines(&output.stderr, "stderr");
    let starts = summary_objects(&logs, "start");
    assert_eq!(starts.len(), 1, "{}", output.stderr);
    assert_eq!(starts[0]["fields"]["sinks"][0]["kind"], "file");
    assert_eq!(starts[0]["fields"]["interval"], "20ms");
    let totals = summary_objects(&logs, "total");
    let services = summary_objects(&logs, "service");
    assert_eq!(services.len(), 2 * totals.len(), "{}", output.stderr);
    let idle: Vec<_> = services
        .iter()
        .filter(|s| s["fields"]["new"] == 0)
        .collect();
    assert_eq!(idle.len(), services.len() - 2, "{}", output.stderr);
    assert!(
        idle.iter().all(|s| s["level"] == "DEBUG"),
        "{}",
        output.stderr
    );
    assert!(
        services
            .iter()
            .filter(|s| s["fields"]["new"] == 4)
            .all(|s| s["level"] == "INFO"),
        "{}",
        output.stderr
    );
}
