//! End-to-end tests of configuration ergonomics (issue 12) and of `state reset`'s preview:
//! every config error reported in one run, sorted by line; suggestions for unknown keys
//! and plain type errors; `${VAR:-default}` and `${VAR:?message}`; several `--config`
//! files and `--config-dir` folders merged, Vector-style; and `state reset` showing what
//! it resets, asking on a terminal (a pseudo-terminal here) unless `--yes`, and refusing a
//! filter that matches no position. Each test runs the real `runner` binary against the
//! ModelArts simulator on 127.0.0.1.

#![allow(clippy::unwrap_used)]

mod support;

use simulator::SimHandle;
use support::{ConfigText, Dir, read_jsonl, sim_with, toml_list, toml_str, truth};

const FILE: &str = "out/events.jsonl";

/// The `file:line:` prefixes of the error lines on stderr that name `file`, as lines.
fn error_lines(stderr: &str, file: &str) -> Vec<usize> {
    stderr
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find(file)? + file.len()..];
            rest.strip_prefix(':')?.split(':').next()?.parse().ok()
        })
        .collect()
}

/// The 1-based line of `text` that holds `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in:\n{text}"))
        + 1
}

/// `[sources.NAME]` and its auth for `services` of `sim`, as TOML.
fn source_toml(name: &str, sim: &SimHandle, services: &[String]) -> String {
    format!(
        "[sources.{name}]\ntype = \"modelarts\"\nendpoint = {}\nproject_id = {}\nservices = {}\n\
         retry_initial_backoff = \"5ms\"\nretry_max_backoff = \"50ms\"\n\n\
         [sources.{name}.auth]\ntype = \"token\"\ntoken = {}\n\n",
        toml_str(&sim.base_url()),
        toml_str(&sim.project_id()),
        toml_list(services),
        toml_str(&sim.token()),
    )
}

// 1. Three missing variables in three tables, a typo in a fourth and a bad type in a fifth
//    are all reported by one run, sorted by line, not one per run.
#[test]
fn every_config_error_is_reported_in_one_run_sorted_by_line() {
    let dir = Dir::new("config-all-errors");
    let sim = sim_with(1, 5, 1201);
    let text = ConfigText::for_sim(&sim)
        .state_path("${STATE_DIR}/events.db")
        .runner_key("concurrency", &toml_str("4"))
        .auth_key("token", &toml_str("${SIM_TOKEN}"))
        .file_sink("archive", "${OUT_DIR}/events.jsonl")
        .stdout_sink("console")
        .sink_key("console", "formt", &toml_str("text"))
        .render();
    let path = dir.write("runner.toml", &text);
    let output = dir
        .command(&["validate", "--config", path.to_str().unwrap()])
        .run();
    output.assert_code(2);
    output.assert_no_panic();
    let stderr = &output.stderr;
    for needle in [
        "STATE_DIR",
        "SIM_TOKEN",
        "OUT_DIR",
        "runner.concurrency",
        "sinks.console.formt",
    ] {
        assert!(stderr.contains(needle), "{needle} not reported:\n{stderr}");
    }
    assert!(stderr.contains("5 errors"), "{stderr}");
    let lines = error_lines(stderr, "runner.toml");
    let expected = vec![
        line_of(&text, "${STATE_DIR}"),
        line_of(&text, "concurrency"),
        line_of(&text, "${SIM_TOKEN}"),
        line_of(&text, "${OUT_DIR}"),
        line_of(&text, "formt"),
    ];
    assert_eq!(
        lines, expected,
        "not one error per table, by line:\n{stderr}"
    );
    assert!(!dir.exists("state"), "a config error touched the disk");
}

// 2. An unknown key names the closest known one instead of listing every key; a wrong
//    type says what was expected and what was found, in TOML's words; a secret of the
//    wrong type is not quoted.
#[test]
fn unknown_keys_suggest_the_closest_and_type_errors_speak_plainly() {
    let dir = Dir::new("config-suggest");
    let sim = sim_with(1, 5, 1202);
    let text = ConfigText::for_sim(&sim)
        .source_key("lookbak", &toml_str("5m"))
        .file_sink("archive", FILE)
        .sink_key("archive", "inptus", r#"["sim"]"#)
        .render();
    let path = dir.write("typo.toml", &text);
    let output = dir
        .command(&["sync", "--config", path.to_str().unwrap()])
        .run();
    output.assert_code(2);
    let stderr = &output.stderr;
    assert!(
        stderr.contains("sources.sim.lookbak: unknown key `lookbak`; did you mean `lookback`?"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sinks.archive.inptus: unknown key `inptus`; did you mean `inputs`?"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("max_clock_skew"),
        "lists every key instead of suggesting one:\n{stderr}"
    );

    let text = ConfigText::for_sim(&sim)
        .source_key("page_size", &toml_str("1000"))
        .auth_key("token", "12345987")
        .file_sink("archive", FILE)
        .render();
    let path = dir.write("types.toml", &text);
    let output = dir
        .command(&["sync", "--config", path.to_str().unwrap()])
        .run();
    output.assert_code(2);
    let stderr = &output.stderr;
    assert!(
        stderr.contains(r#"sources.sim.page_size: expected an integer, found the string "1000""#),
        "{stderr}"
    );
    assert!(!stderr.contains("i64"), "speaks Rust:\n{stderr}");
    assert!(
        stderr.contains("sources.sim.auth.token: expected a string, found an integer"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("12345987"),
        "a secret is quoted:\n{stderr}"
    );
    assert_eq!(sim.request_count(), 0);
}

// 3. `${VAR:-default}` takes the default when VAR is unset or empty; `${VAR:?message}`
//    fails with the author's message, naming the key, when VAR is unset.
#[test]
fn placeholders_take_defaults_and_required_messages() {
    let dir = Dir::new("config-placeholders");
    let sim = sim_with(1, 20, 1203);
    let services = sim.service_ids();
    let config = ConfigText::for_sim(&sim)
        .state_path("${STATE_DIR:-state}/events.db")
        .source_key(
            "project_id",
            &toml_str("${SIM_PROJECT:?set SIM_PROJECT to the ModelArts project id}"),
        )
        .file_sink("archive", "${OUT_DIR:-out}/events.jsonl");
    let path = dir.write_config(&config);
    let config_arg = path.to_str().unwrap();

    let missing = dir
        .command(&["sync", "--config", config_arg])
        .env_remove("SIM_PROJECT")
        .run();
    missing.assert_code(2);
    assert!(
        missing.stderr.contains(
            "sources.sim.project_id: environment variable SIM_PROJECT: set SIM_PROJECT to the \
             ModelArts project id"
        ),
        "{}",
        missing.stderr
    );

    dir.command(&["sync", "--config", config_arg])
        .env("SIM_PROJECT", &sim.project_id())
        .env("OUT_DIR", "")
        .env_remove("STATE_DIR")
        .expect_code(0);
    assert!(dir.exists("state/events.db"), "the default state folder");
    let records = read_jsonl(&dir.join(FILE));
    assert_eq!(records.len(), truth(&sim, &services).len());
}

// 4. `--config` repeated and `--config-dir` merge: [state] from one file, [runner] split
//    across two, the source from a third and the sinks from a folder. Every command takes
//    them; relative paths are relative to the folder of the file that names them.
#[test]
fn several_files_and_a_folder_merge_for_every_command() {
    let dir = Dir::new("config-merge");
    let sim = sim_with(2, 30, 1204);
    let services = sim.service_ids();
    let base = dir.write(
        "base.toml",
        "[state]\npath = \"state/events.db\"\n\n[runner]\nconcurrency = 2\n",
    );
    let source = dir.write(
        "sources/sim.toml",
        &format!(
            "[runner]\nshutdown_timeout = \"5s\"\n\n{}",
            source_toml("sim", &sim, &services)
        ),
    );
    dir.write(
        "conf.d/10-archive.toml",
        "[sinks.archive]\ntype = \"file\"\npath = \"out/events.jsonl\"\n",
    );
    dir.write(
        "conf.d/20-backup.toml",
        "[sinks.backup]\ntype = \"file\"\npath = \"../backup.jsonl\"\n",
    );
    dir.write("conf.d/README.md", "not a config file");
    let base = base.to_str().unwrap();
    let source = source.to_str().unwrap();
    let files = [
        "--config",
        base,
        "--config",
        source,
        "--config-dir",
        "conf.d",
    ];
    let with = |command: &[&str]| -> Vec<String> {
        command
            .iter()
            .chain(files.iter())
            .map(|s| (*s).to_owned())
            .collect()
    };
    let run = |command: &[&str], code: i32| {
        let args = with(command);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        dir.command(&args).expect_code(code)
    };

    let validated = run(&["validate"], 0);
    assert!(
        validated.stderr.contains("1 source(s), 2 sink(s)"),
        "{}",
        validated.stderr
    );
    run(&["sync"], 0);
    let all = truth(&sim, &services).len();
    assert_eq!(read_jsonl(&dir.join("conf.d/out/events.jsonl")).len(), all);
    assert_eq!(read_jsonl(&dir.join("backup.jsonl")).len(), all);
    assert!(
        dir.exists("state/events.db"),
        "state.path is relative to base.toml"
    );

    let shown = run(&["state", "--json"], 0);
    let state: serde_json::Value = serde_json::from_str(shown.stdout.trim()).unwrap();
    assert_eq!(state["positions"].as_array().unwrap().len(), 4);
    run(&["services"], 0);
    run(&["dead-letter", "show", "--sink", "archive"], 0);
    run(
        &[
            "state",
            "reset",
            "--sink",
            "backup",
            "--to",
            "beginning",
            "--yes",
        ],
        0,
    );
    let again = run(&["sync"], 0);
    assert_eq!(
        support::delivered_to(&again.summaries(), "backup"),
        all as u64,
        "{}",
        again.stderr
    );
    assert_eq!(support::delivered_to(&again.summaries(), "archive"), 0);

    // A folder without a config file is an error, not an empty configuration.
    std::fs::create_dir_all(dir.join("empty.d")).unwrap();
    dir.write("empty.d/.#runner.toml", "an editor's lock file");
    let empty = dir
        .command(&["validate", "--config", base, "--config-dir", "empty.d"])
        .expect_code(2);
    assert!(
        empty.stderr.contains("empty.d: holds no *.toml file"),
        "{}",
        empty.stderr
    );
}

// 5. A component defined in two files, or a [state]/[runner] key set in two, is an error
//    naming both files and lines; a sink may not write any of the loaded config files.
#[test]
fn duplicates_across_files_name_both_and_no_sink_writes_a_config_file() {
    let dir = Dir::new("config-duplicates");
    let sim = sim_with(1, 5, 1205);
    let services = sim.service_ids();
    let one = dir.write(
        "one.toml",
        &format!(
            "[state]\npath = \"state/events.db\"\n\n{}[sinks.archive]\ntype = \"file\"\npath = \"a.jsonl\"\n",
            source_toml("sim", &sim, &services)
        ),
    );
    let two = dir.write(
        "two.toml",
        "[state]\nbusy_timeout = \"5s\"\npath = \"other.db\"\n\n\
         [sinks.archive]\ntype = \"stdout\"\n",
    );
    let output = dir
        .command(&[
            "sync",
            "--config",
            one.to_str().unwrap(),
            "--config",
            two.to_str().unwrap(),
        ])
        .run();
    output.assert_code(2);
    let stderr = &output.stderr;
    assert!(
        stderr.contains("two.toml:3: state.path: is also set in") && stderr.contains("one.toml:2"),
        "{stderr}"
    );
    let first_archive = line_of(&std::fs::read_to_string(&one).unwrap(), "[sinks.archive]");
    assert!(
        stderr.contains(&format!(
            "two.toml:5: sinks.archive: is also defined in {}:{first_archive}",
            one.display()
        )),
        "{stderr}"
    );

    // A sink whose path is another loaded config file.
    let sinks = dir.write(
        "sinks.toml",
        "[sinks.clobber]\ntype = \"file\"\npath = \"one.toml\"\n",
    );
    let before = std::fs::read(&one).unwrap();
    let output = dir
        .command(&[
            "sync",
            "--config",
            one.to_str().unwrap(),
            "--config",
            sinks.to_str().unwrap(),
        ])
        .run();
    output.assert_code(2);
    assert!(
        output.stderr.contains("sinks.clobber.path")
            && output.stderr.contains("is also written by the config file"),
        "{}",
        output.stderr
    );
    assert_eq!(std::fs::read(&one).unwrap(), before);
    assert_eq!(sim.request_count(), 0);
}

// 6. `state reset` shows what it resets; without a terminal it does not ask (scripts keep
//    working), and `--yes` is accepted. A `--source` or `--service` that the config knows
//    but that matches no position in the state is a usage error (exit 2) that changes
//    nothing, as an unknown `--sink` is.
#[test]
fn state_reset_shows_what_it_resets_and_refuses_a_filter_that_matches_nothing() {
    let dir = Dir::new("config-reset");
    let sim = sim_with(2, 10, 1206);
    let services = sim.service_ids();
    let config = ConfigText::for_sim(&sim)
        .source_key("services", &toml_list(&services[..1]))
        .with_source("later", &sim, &services[1..])
        .file_sink("archive", FILE);
    let path = dir.write_config(&config);
    let config_arg = path.to_str().unwrap();
    dir.command(&["sync", "--config", config_arg, "--source", "sim"])
        .expect_code(0);

    for (flag, value) in [("--source", "later"), ("--service", services[1].as_str())] {
        let output = dir
            .command(&["state", "reset", "--config", config_arg, flag, value])
            .run();
        output.assert_code(2);
        assert!(
            output.stderr.contains("no position") && output.stderr.contains(value),
            "{flag} {value}: {}",
            output.stderr
        );
    }
    let state = support::state_json(&dir, config_arg);
    assert_eq!(state["positions"].as_array().unwrap().len(), 1);

    // No terminal: the preview, then the reset, without a question.
    let reset = dir
        .command(&["state", "reset", "--config", config_arg, "--source", "sim"])
        .expect_code(0);
    assert!(
        reset.stderr.contains("1 position(s)")
            && reset.stderr.contains("will be forgotten")
            && reset.stderr.contains(&services[0])
            && reset.stderr.contains("archive"),
        "no preview: {}",
        reset.stderr
    );
    assert!(!reset.stderr.contains("[y/N]"), "asked without a terminal");
    assert!(
        reset.stderr.contains("Reset 1 position(s)"),
        "{}",
        reset.stderr
    );
    let state = support::state_json(&dir, config_arg);
    assert_eq!(state["positions"].as_array().unwrap().len(), 0);

    // With --to, positions that do not exist yet are listed as new; --yes never asks.
    let reset = dir
        .command(&[
            "state", "reset", "--config", config_arg, "--to", "now", "--yes",
        ])
        .expect_code(0);
    assert!(
        reset.stderr.contains("2 position(s)") && reset.stderr.contains("(new)"),
        "{}",
        reset.stderr
    );
}

/// A pseudo-terminal: (controller, terminal). What the child writes to the terminal is read
/// from the controller, and what is written to the controller is the child's keyboard.
#[allow(unsafe_code)]
fn open_pty() -> (std::fs::File, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let (mut controller, mut terminal) = (-1, -1);
    // SAFETY: openpty writes two new file descriptors into the two integers; the name,
    // termios and window size arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &raw mut controller,
            &raw mut terminal,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and are owned by nobody else.
    unsafe {
        (
            std::fs::File::from_raw_fd(controller),
            std::os::fd::OwnedFd::from_raw_fd(terminal),
        )
    }
}

/// Runs `runner args` with stdin and stderr on a pseudo-terminal, answers `answer` once
/// the question is shown, and returns the exit code and everything the terminal showed.
fn answer_on_a_terminal(dir: &Dir, args: &[&str], answer: &str) -> (Option<i32>, String) {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let (mut controller, terminal) = open_pty();
    let mut child = std::process::Command::new(support::RUNNER)
        .current_dir(dir.path())
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .env_remove("RUNNER_CONFIG")
        .stdin(terminal.try_clone().unwrap())
        .stderr(terminal)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let shown = Arc::new(Mutex::new(String::new()));
    let reader = {
        let shown = Arc::clone(&shown);
        let mut controller = controller.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            // Ends with EIO once the child exited and closed the terminal.
            while let Ok(n) = controller.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                shown
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        })
    };
    support::wait_until("the question is shown", || {
        shown.lock().unwrap().contains("[y/N]") || matches!(child.try_wait(), Ok(Some(_)))
    });
    controller.write_all(answer.as_bytes()).unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let shown = shown.lock().unwrap().clone();
    (status.code(), shown)
}

// 7. On a terminal, `state reset` asks before it resets: "n" resets nothing (exit 1), "y"
//    resets; the question comes after the preview.
#[test]
fn state_reset_asks_on_a_terminal() {
    let dir = Dir::new("config-reset-tty");
    let sim = sim_with(1, 10, 1207);
    let path = dir.write_config(&ConfigText::for_sim(&sim).file_sink("archive", FILE));
    let config_arg = path.to_str().unwrap();
    dir.command(&["sync", "--config", config_arg])
        .expect_code(0);
    let reset = ["state", "reset", "--config", config_arg];

    let (code, shown) = answer_on_a_terminal(&dir, &reset, "n\n");
    assert_eq!(code, Some(1), "{shown}");
    let preview = shown.find("will be forgotten").expect("a preview");
    let question = shown
        .find("Reset these 1 position(s)? [y/N]")
        .expect("a question");
    assert!(preview < question, "{shown}");
    assert!(shown.contains("Nothing was reset."), "{shown}");
    let state = support::state_json(&dir, config_arg);
    assert_eq!(state["positions"].as_array().unwrap().len(), 1);

    let (code, shown) = answer_on_a_terminal(&dir, &reset, "y\n");
    assert_eq!(code, Some(0), "{shown}");
    assert!(shown.contains("Reset 1 position(s)"), "{shown}");
    let state = support::state_json(&dir, config_arg);
    assert_eq!(state["positions"].as_array().unwrap().len(), 0);
}
