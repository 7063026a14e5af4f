//! End-to-end tests of the state file and the file sink against a hostile environment: a
//! state path reached through a symlink, a state file that was lost, sink paths that would
//! destroy the state or the config, another writer that truncates and regrows the sink's
//! file, and state folders the runner cannot use. Each test runs the real `runner`
//! binary against the ModelArts simulator on 127.0.0.1.

#![allow(clippy::unwrap_used)]

mod support;

use simulator::{Behaviour, SimEvent};
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::time::Duration;
use support::{
    ConfigText, Dir, assert_exactly_once, read_jsonl, sim_with, toml_list, toml_str, truth,
    try_parse_json_lines, wait_until,
};

const FILE: &str = "out/events.jsonl";

// 1. The lock follows symlinks: a config whose state path is a symlink to another
//    config's state file is refused (exit 3) while a runner holds that state.
#[test]
fn a_state_reached_through_a_symlink_is_locked_too() {
    let dir = Dir::new("state-symlink");
    let sim = sim_with(1, 200, 41);
    sim.set_behaviour(Behaviour {
        latency: Duration::from_millis(200),
        ..Behaviour::default()
    });
    std::fs::create_dir_all(dir.join("alt")).unwrap();
    std::fs::create_dir_all(dir.join("state")).unwrap();
    symlink("../state/s.db", dir.join("alt/s.db")).unwrap();
    let direct = ConfigText::for_sim(&sim)
        .state_path("state/s.db")
        .source_key("page_size", "10")
        .file_sink("archive", FILE);
    let linked = direct.clone().state_path("alt/s.db");
    let direct_path = dir.write("direct.toml", &direct.render());
    let linked_path = dir.write("linked.toml", &linked.render());

    let first = dir
        .command(&["sync", "--config", direct_path.to_str().unwrap()])
        .spawn();
    wait_until("the first runner reached the API", || {
        sim.request_count() >= 1
    });
    let second = dir
        .command(&["sync", "--config", linked_path.to_str().unwrap()])
        .run();
    let killed = first.kill();
    assert_eq!(
        killed.code(),
        None,
        "the first runner finished; make it slower"
    );
    second.assert_code(3);
    assert!(
        second.stderr.contains("another runner"),
        "{}",
        second.stderr
    );
}

// 2. A state file that was lost: the file sink is its own checkpoint. It recovers its
//    positions from the file (newest occur_time per service, the ids within lookback) and
//    goes on exactly once; a service absent from the file starts at `start_at`.
#[test]
fn a_lost_state_file_is_recovered_from_the_file_sink() {
    let dir = Dir::new("state-lost");
    let sim = sim_with(2, 300, 43);
    let services = sim.service_ids();
    let first_only = ConfigText::for_sim(&sim)
        .source_key("services", &toml_list(&services[..1]))
        .file_sink("archive", FILE);
    let config_path = dir.write_config(&first_only);
    let config_arg = config_path.to_str().unwrap();
    dir.command(&["sync", "--config", config_arg])
        .expect_code(0);

    // A late event inside lookback arrives, the state file is lost, and the config now
    // follows the second service too.
    let newest = sim.events(&services[0]).last().unwrap().0;
    sim.add_events(
        &services[0],
        vec![SimEvent::new(newest - 1_000, "normal", "A late event.")],
    );
    for companion in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(&format!("state/events.db{companion}")));
    }
    let both = first_only.source_key("services", &toml_list(&services));
    dir.write_config(&both);
    let recovered = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(0);
    assert!(
        recovered.stderr.contains("Recovered"),
        "no word about the recovery: {}",
        recovered.stderr
    );
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &truth(&sim, &services),
        "file after a lost state",
    );
    // An emptied state file (zero bytes) is the same as a lost one.
    std::fs::write(dir.join("state/events.db"), b"").unwrap();
    for companion in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(&format!("state/events.db{companion}")));
    }
    dir.command(&["sync", "--config", config_arg])
        .expect_code(0);
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &truth(&sim, &services),
        "file after an emptied state",
    );
}

// 2b. A file the sink cannot read as its own output (a foreign line) is not guessed at:
//     the sink fails for the run, appends nothing, and says how to resume.
#[test]
fn a_lost_state_with_a_foreign_line_in_the_file_fails_the_sink_and_says_how_to_resume() {
    let dir = Dir::new("state-lost-foreign");
    let sim = sim_with(1, 50, 47);
    let config = ConfigText::for_sim(&sim).file_sink("archive", FILE);
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();
    dir.command(&["sync", "--config", config_arg])
        .expect_code(0);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join(FILE))
        .unwrap();
    file.write_all(b"written by somebody else\n").unwrap();
    drop(file);
    std::fs::remove_dir_all(dir.join("state")).unwrap();
    let before = dir.read_bytes(FILE);
    let output = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(1);
    output.assert_no_panic();
    assert_eq!(
        dir.read_bytes(FILE),
        before,
        "the sink appended to a file it cannot read"
    );
    assert!(
        output
            .stderr
            .contains("runner state reset --sink archive --to"),
        "{}",
        output.stderr
    );
}

// 3. Paths that would destroy the state or the config are refused when the config is
//    loaded (exit 2), comparing canonical paths: the state file's companions, the config
//    file itself, another sink's dead-letter file, and a symlink to the state file.
#[test]
fn sink_paths_that_would_destroy_the_state_or_the_config_are_refused() {
    let dir = Dir::new("state-paths");
    let sim = sim_with(1, 5, 53);
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::create_dir_all(dir.join("links")).unwrap();
    symlink("../state/events.db", dir.join("links/db")).unwrap();
    let cases = [
        ("state/events.db-wal", "the state file"),
        ("state/events.db-shm", "the state file"),
        ("state/events.db.lock", "the state file"),
        ("links/db", "the state file"),
        ("runner.toml", "the config file"),
    ];
    for (path, named) in cases {
        let config = ConfigText::for_sim(&sim).file_sink("archive", path);
        let config_path = dir.write_config(&config);
        let output = dir
            .command(&["validate", "--config", config_path.to_str().unwrap()])
            .expect_code(2);
        assert!(
            output.stderr.contains("sinks.archive.path") && output.stderr.contains(named),
            "{path}: {}",
            output.stderr
        );
    }
    // A dead-letter file that is another sink's file.
    let config = ConfigText::for_sim(&sim)
        .file_sink("archive", FILE)
        .stdout_sink("console")
        .sink_key("console", "dead_letter_path", &toml_str(FILE));
    let config_path = dir.write_config(&config);
    let output = dir
        .command(&["validate", "--config", config_path.to_str().unwrap()])
        .expect_code(2);
    assert!(
        output.stderr.contains("dead_letter_path"),
        "{}",
        output.stderr
    );
    assert!(
        !dir.exists("state/events.db"),
        "a refused config touched the state"
    );
}

// 4. Another writer truncated the file and grew it again past the committed length: the
//    committed tail is no longer what the sink wrote, so the file is started afresh (never
//    cut in the middle of someone else's line), and new records are whole lines.
#[test]
fn a_file_truncated_and_regrown_by_another_writer_is_not_cut() {
    let dir = Dir::new("state-regrown");
    let sim = sim_with(1, 40, 59);
    let services = sim.service_ids();
    let config = ConfigText::for_sim(&sim).file_sink("archive", FILE);
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();
    dir.command(&["sync", "--config", config_arg])
        .expect_code(0);
    let committed = dir.read_bytes(FILE);
    // Keep a third, then write more than was there: the committed length now falls in the
    // middle of a foreign line.
    let mut regrown = committed[..committed.len() / 3].to_vec();
    regrown.extend(std::iter::repeat_n(b'x', committed.len()));
    regrown.push(b'\n');
    std::fs::write(dir.join(FILE), &regrown).unwrap();

    let newest = sim.events(&services[0]).last().unwrap().0;
    sim.add_events(
        &services[0],
        vec![
            SimEvent::new(newest + 1, "normal", "After the regrowth 1."),
            SimEvent::new(newest + 2, "abnormal", "After the regrowth 2."),
        ],
    );
    let output = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(0);
    let text = String::from_utf8(dir.read_bytes(FILE)).unwrap();
    assert!(
        text.starts_with(std::str::from_utf8(&regrown).unwrap()),
        "the foreign content was cut: {}",
        output.stderr
    );
    let appended = &text[regrown.len()..];
    let records = try_parse_json_lines(appended)
        .unwrap_or_else(|e| panic!("new records are not whole lines: {e}\n{}", output.stderr));
    let infos: Vec<&str> = records
        .iter()
        .map(|r| r["event_info"].as_str().unwrap())
        .collect();
    assert_eq!(infos, ["After the regrowth 1.", "After the regrowth 2."]);
}

// 5. Messages that name the real cause: a state folder the runner may not write, a file
//    where a folder of the state path should be, and a state file that is corrupt
//    (`validate --check` reports it).
#[test]
fn state_problems_are_reported_by_their_real_cause() {
    let dir = Dir::new("state-messages");
    let sim = sim_with(1, 5, 61);

    // A regular file where the state's folder should be.
    std::fs::write(dir.join("blocked"), b"a file, not a folder").unwrap();
    let config = ConfigText::for_sim(&sim)
        .state_path("blocked/events.db")
        .file_sink("archive", FILE);
    let config_path = dir.write_config(&config);
    let output = dir
        .command(&["sync", "--config", config_path.to_str().unwrap()])
        .expect_code(1);
    assert!(
        output.stderr.contains("is a file, not a folder"),
        "{}",
        output.stderr
    );

    // A state folder the runner may not write (after a first run created the state
    // there): as root the runner runs as `nobody`, for whom it is read-only; otherwise the
    // folder is made read-only.
    let config = ConfigText::for_sim(&sim).file_sink("archive", FILE);
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();
    dir.command(&["sync", "--config", config_arg])
        .expect_code(0);
    let state = dir.join("state");
    for companion in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(&format!("state/events.db{companion}")));
    }
    let output = if is_root() {
        // Everything else stays readable for nobody; only the state folder is root's.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        dir.unprivileged_command(&["sync", "--config", config_arg])
            .run()
    } else {
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o555)).unwrap();
        let output = dir.command(&["sync", "--config", config_arg]).run();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
        output
    };
    output.assert_no_panic();
    assert_eq!(output.code(), Some(1), "{}", output.stderr);
    assert!(output.stderr.contains("not writable"), "{}", output.stderr);

    // A corrupt state file: validate --check says so.
    let mut bytes = std::fs::read(dir.join("state/events.db")).unwrap();
    for byte in bytes.iter_mut().skip(100).take(4000) {
        *byte = 0x5a;
    }
    std::fs::write(dir.join("state/events.db"), &bytes).unwrap();
    let output = dir
        .command(&["validate", "--config", config_arg, "--check"])
        .expect_code(1);
    assert!(
        output.stderr.contains("state") && output.stderr.contains("corrupt"),
        "{}",
        output.stderr
    );
}

/// Whether the tests run as root, who may write a read-only folder anyway.
fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}
