//! End-to-end tests of delivery when the state cannot be committed: the real `runner` binary,
//! real HTTP to the in-process ModelArts simulator on 127.0.0.1, real SQLite state, and an
//! outside connection that holds the state's write lock (`BEGIN IMMEDIATE`) for a while, as a
//! `sqlite3` shell or a backup tool would.
//!
//! The promise under test: a batch is in the file sink's output exactly when its position is
//! committed. A short outside lock is ridden out (the state's busy timeout); a commit that
//! still fails rolls the sink's uncommitted output back and fails that sink for the run, so
//! the next run delivers the rest exactly once instead of appending the batch again.

#![allow(clippy::unwrap_used)]

mod support;

use rusqlite::Connection;
use serde_json::Value;
use simulator::{Behaviour, SimEvent, SimHandle};
use std::path::Path;
use std::time::Duration;
use support::{
    ConfigText, Dir, RunOutput, Running, assert_exactly_once, read_jsonl, state_json, toml_str,
    truth, try_parse_json_lines, wait_until,
};

const FILE: &str = "out/events.jsonl";
const STATE: &str = "state/events.db";

/// How long the outside connection holds the state in the first two tests: longer than the
/// old fixed busy timeout (5 s), shorter than the new default (10 s).
const HOLD: Duration = Duration::from_millis(6_500);

fn sim_with(services: usize, events_per_service: usize, seed: u64) -> SimHandle {
    let sim = support::sim_with(services, events_per_service, seed);
    // Slow enough that a run lasts seconds and the lock lands in the middle of it.
    sim.set_behaviour(Behaviour {
        latency: Duration::from_millis(10),
        ..Behaviour::default()
    });
    sim
}

/// Complete lines in a file written so far (a torn last line is not counted).
fn complete_lines(dir: &Dir, relative: &str) -> usize {
    dir.read_bytes(relative)
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

/// The newest `occur_time` of a service.
fn newest(sim: &SimHandle, service: &str) -> i64 {
    sim.events(service).last().map_or(0, |event| event.0)
}

/// Adds `count` events after the newest one of every service.
fn add_live_events(sim: &SimHandle, count: i64, label: &str) {
    for service in sim.service_ids() {
        let last = newest(sim, &service);
        let events = (1..=count)
            .map(|n| SimEvent::new(last + n, "normal", &format!("{label} {n}")))
            .collect();
        sim.add_events(&service, events);
    }
}

/// Fails unless every line of the file is a whole JSON object ending in a newline.
fn assert_no_torn_line(dir: &Dir, what: &str) {
    let text = String::from_utf8(dir.read_bytes(FILE)).unwrap();
    if let Err(problem) = try_parse_json_lines(&text) {
        panic!("{what}: {problem}");
    }
}

/// Gives `running` back if it has not exited; otherwise fails the test with its output, as
/// the lock would not land inside the run.
fn still_running(mut running: Running, what: &str) -> Running {
    if running.has_exited() {
        let output = running.wait();
        panic!(
            "{what} ended (exit {:?}) before the lock was taken; make it slower\n--- stderr ---\n{}",
            output.code(),
            output.stderr
        );
    }
    running
}

/// An outside connection holding the state's write lock, as a `sqlite3` shell with an open
/// `BEGIN IMMEDIATE` does. Dropping it without [`OutsideLock::release`] rolls back.
struct OutsideLock {
    conn: Connection,
}

impl OutsideLock {
    fn take(state: &Path) -> OutsideLock {
        let conn = Connection::open(state).unwrap();
        // The runner commits often; wait for its transaction in flight rather than fail.
        conn.busy_timeout(Duration::from_secs(30)).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        OutsideLock { conn }
    }

    fn release(self) {
        self.conn.execute_batch("COMMIT").unwrap();
    }
}

/// `runner sync` until it exits 0, at most `tries` times; the last run's output.
fn sync_until_ok(dir: &Dir, config_arg: &str, tries: usize) -> RunOutput {
    let mut last = None;
    for _ in 0..tries {
        let output = dir.command(&["sync", "--config", config_arg]).run();
        output.assert_no_panic();
        let ok = output.code() == Some(0);
        last = Some(output);
        if ok {
            break;
        }
    }
    let last = last.unwrap();
    last.assert_code(0);
    last
}

/// The committed length of file sink `sink`, as the state reports it.
fn committed_bytes(dir: &Dir, config_arg: &str, sink: &str) -> u64 {
    let state = state_json(dir, config_arg);
    state["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|file| file["sink"] == sink)
        .and_then(|file| file["committed_bytes"].as_u64())
        .unwrap_or_else(|| panic!("no committed length for sink {sink}: {state}"))
}

// 1. A state locked from outside for 6.5 s in the middle of a `sync`: every event ends up in
//    the file exactly once (after at most two more syncs), and no line is torn. Before the
//    fix, a commit that timed out left its batch in the file while another service's commit
//    stored a length that included it, so the next run appended the batch again.
#[test]
fn a_state_locked_for_seconds_during_sync_loses_and_duplicates_nothing() {
    let dir = Dir::new("locked-sync");
    let sim = sim_with(4, 10_000, 41);
    let services = sim.service_ids();
    let config = ConfigText::for_sim(&sim)
        .source_key("page_size", "100")
        .file_sink("archive", FILE);
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();
    let expected = truth(&sim, &services);

    let mut running = dir.command(&["sync", "--config", config_arg]).spawn();
    wait_until("the sync delivered some thousands of events", || {
        complete_lines(&dir, FILE) >= 4_000 || running.has_exited()
    });
    let running = still_running(running, "the sync");
    let lock = OutsideLock::take(&dir.join(STATE));
    let at_lock = complete_lines(&dir, FILE);
    assert!(
        at_lock < expected.len(),
        "the sync delivered everything before the lock was taken; make it slower"
    );
    std::thread::sleep(HOLD);
    lock.release();

    let locked = running.wait();
    locked.assert_no_panic();
    assert_no_torn_line(&dir, "file after the locked sync");
    let after_locked = complete_lines(&dir, FILE);
    let rest = sync_until_ok(&dir, config_arg, 2);
    rest.assert_no_panic();
    let records = read_jsonl(&dir.join(FILE));
    eprintln!(
        "locked sync: lock taken at {at_lock} lines, exit {:?}, {after_locked} lines after it; \
         {} lines after the next syncs, {} events",
        locked.code(),
        records.len(),
        expected.len()
    );
    assert_exactly_once(
        &records,
        &expected,
        "file after a locked sync and a new sync",
    );
}

// 2. The same lock during `runner run`, with events added while it runs: after SIGTERM and one
//    `sync`, every event is in the file exactly once. Before the fix, a cycle whose commit
//    timed out left its batch in the file and a later cycle delivered it again.
#[test]
fn a_state_locked_during_run_does_not_append_batches_again() {
    let dir = Dir::new("locked-run");
    let sim = sim_with(4, 5_000, 43);
    let services = sim.service_ids();
    let config = ConfigText::for_sim(&sim)
        .source_key("page_size", "100")
        .runner_key("interval", &toml_str("200ms"))
        .runner_key("shutdown_timeout", &toml_str("10s"))
        .file_sink("archive", FILE);
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();
    let backlog = truth(&sim, &services).len();

    let mut running = dir.command(&["run", "--config", config_arg]).spawn();
    wait_until("the first cycle delivered some thousands of events", || {
        complete_lines(&dir, FILE) >= 2_000 || running.has_exited()
    });
    let running = still_running(running, "`run`");
    add_live_events(&sim, 50, "during the lock");
    let lock = OutsideLock::take(&dir.join(STATE));
    let at_lock = complete_lines(&dir, FILE);
    assert!(
        at_lock < backlog,
        "the first cycle finished before the lock was taken ({at_lock} lines); make it slower"
    );
    std::thread::sleep(HOLD);
    lock.release();
    add_live_events(&sim, 50, "after the lock");
    let expected = truth(&sim, &services);

    // Every event delivered at least once, then three more cycles (each asks every service
    // at least once) for any batch to be appended again.
    wait_until("`run` delivered every event", || {
        complete_lines(&dir, FILE) >= expected.len()
    });
    let requests = sim.request_count();
    wait_until("three more cycles ran", || {
        sim.request_count() >= requests + 3 * services.len() as u64
    });
    let in_run = complete_lines(&dir, FILE);
    running.signal(libc::SIGTERM);
    let stopped = running
        .wait_within(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("`run` did not stop within shutdown_timeout after SIGTERM"));
    stopped.assert_no_panic();
    assert_no_torn_line(&dir, "file after `run`");

    sync_until_ok(&dir, config_arg, 2);
    let records = read_jsonl(&dir.join(FILE));
    eprintln!(
        "locked run: lock taken at {at_lock} lines, {in_run} lines when stopped (exit {:?}), \
         {} lines after a sync, {} events",
        stopped.code(),
        records.len(),
        expected.len()
    );
    assert_exactly_once(&records, &expected, "file after a locked `run` and a sync");
    stopped.assert_code(0);
}

// 3. A commit that fails even after the busy timeout: the run exits 1 naming the sink and the
//    failed commit, without a panic; the file is cut back to exactly the committed length
//    (whole lines only); and the next sync delivers the rest exactly once.
#[test]
fn a_commit_that_fails_rolls_the_file_back_and_the_next_run_delivers_the_rest_once() {
    let dir = Dir::new("commit-fails");
    let sim = sim_with(4, 5_000, 47);
    let services = sim.service_ids();
    let config = ConfigText::for_sim(&sim)
        .source_key("page_size", "100")
        .file_sink("archive", FILE);
    let text = config
        .render()
        .replacen("[state]\n", "[state]\nbusy_timeout = \"500ms\"\n", 1);
    assert!(text.contains("busy_timeout"), "{text}");
    let config_path = dir.write("runner.toml", &text);
    let config_arg = config_path.to_str().unwrap();
    let expected = truth(&sim, &services);

    let mut running = dir.command(&["sync", "--config", config_arg]).spawn();
    // The runner commits once at start-up (file sink recovery); lock only once delivery began.
    wait_until("the sync delivered some events", || {
        complete_lines(&dir, FILE) >= 1_000 || running.has_exited()
    });
    let running = still_running(running, "the sync");
    let lock = OutsideLock::take(&dir.join(STATE));
    let failed = running
        .wait_within(Duration::from_secs(20))
        .unwrap_or_else(|(running, _)| {
            let stderr = running.stderr_so_far();
            running.kill();
            panic!("the runner did not give up on a locked state:\n{stderr}")
        });
    lock.release();

    failed.assert_code(1);
    failed.assert_no_panic();
    let message = failed.stderr.to_lowercase();
    assert!(
        message.contains("archive") && message.contains("state commit failed"),
        "stderr does not name the sink and the failed commit:\n{}",
        failed.stderr
    );
    assert_no_torn_line(&dir, "file after the failed commit");
    let file_len = dir.read_bytes(FILE).len() as u64;
    assert_eq!(
        file_len,
        committed_bytes(&dir, config_arg, "archive"),
        "the file holds output the state did not commit"
    );
    let partial = read_jsonl(&dir.join(FILE));
    assert!(
        partial.len() < expected.len(),
        "every event was delivered despite the lock; the commit never failed"
    );

    let rest = sync_until_ok(&dir, config_arg, 1);
    assert!(!rest.stderr.contains("uncommitted tail"), "{}", rest.stderr);
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &expected,
        "file after a failed commit and a new sync",
    );
}

/// One dead-letter entry for `record`, as the engine writes it.
fn dead_letter_line(record: &Value, sink: &str, reason: &str) -> String {
    serde_json::json!({
        "record": record, "sink": sink, "reason": reason, "status": 400,
        "time": "2026-11-30T12:00:00.000Z",
    })
    .to_string()
}

// 4. `dead-letter show` lists a sink's entries (and says which lines are not entries);
//    `dead-letter replay` offers them to the sink again: the file sink takes them, they leave
//    the dead-letter file, the file's new length is committed (the next sync cuts nothing),
//    and a line that is not an entry is kept. An unknown sink is a usage error.
#[test]
fn dead_letters_are_shown_and_replayed_into_the_sink() {
    let dir = Dir::new("dead-letter-replay");
    let sim = sim_with(1, 20, 5);
    sim.set_behaviour(Behaviour::default());
    let config = ConfigText::for_sim(&sim).file_sink("archive", FILE);
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();
    dir.command(&["sync", "--config", config_arg])
        .expect_code(0);
    let synced = read_jsonl(&dir.join(FILE));

    // Three records from elsewhere, dead-lettered earlier, and a line torn by a crash.
    let letters: Vec<Value> = synced
        .iter()
        .take(3)
        .map(|record| {
            let mut other = record.clone();
            other["event_info"] = Value::String(format!("{} (replayed)", record["event_info"]));
            other["id"] = Value::String(format!("{:064x}", other["occur_time"].as_i64().unwrap()));
            other
        })
        .collect();
    let mut text: String = letters
        .iter()
        .map(|r| dead_letter_line(r, "archive", "mapper_parsing_exception") + "\n")
        .collect();
    text.push_str("{\"record\":{\"id\":\"tor\n");
    dir.write("state/dead-letter/archive.jsonl", &text);

    let shown = dir
        .command(&[
            "dead-letter",
            "show",
            "--config",
            config_arg,
            "--sink",
            "archive",
        ])
        .expect_code(0);
    assert_eq!(shown.stdout.lines().count(), 3, "{}", shown.stdout);
    assert!(shown.stdout.contains("mapper_parsing_exception"));
    assert!(
        shown.stderr.contains(":4: not a dead-letter entry"),
        "{}",
        shown.stderr
    );
    let json = dir
        .command(&[
            "dead-letter",
            "show",
            "--config",
            config_arg,
            "--sink",
            "archive",
            "--json",
        ])
        .expect_code(0);
    let entries = json.stdout_json();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["record"], letters[0]);

    let replayed = dir
        .command(&[
            "dead-letter",
            "replay",
            "--config",
            config_arg,
            "--sink",
            "archive",
        ])
        .expect_code(0);
    assert!(
        replayed.stderr.contains("accepted 3"),
        "{}",
        replayed.stderr
    );
    let now = read_jsonl(&dir.join(FILE));
    assert_eq!(now.len(), synced.len() + 3);
    assert_eq!(&now[synced.len()..], &letters[..]);
    let left = String::from_utf8(dir.read_bytes("state/dead-letter/archive.jsonl")).unwrap();
    assert_eq!(
        left, "{\"record\":{\"id\":\"tor\n",
        "only the torn line stays"
    );
    let state = dir
        .command(&["state", "--config", config_arg, "--json"])
        .expect_code(0)
        .stdout_json();
    assert_eq!(
        state[0]["files"][0]["committed_bytes"],
        Value::from(dir.read_bytes(FILE).len()),
        "the replayed records are committed"
    );
    let again = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(0);
    assert!(
        !again.stderr.contains("uncommitted tail"),
        "{}",
        again.stderr
    );
    assert_eq!(read_jsonl(&dir.join(FILE)).len(), synced.len() + 3);

    dir.command(&[
        "dead-letter",
        "show",
        "--config",
        config_arg,
        "--sink",
        "nope",
    ])
    .expect_code(2);
    dir.command(&[
        "dead-letter",
        "replay",
        "--config",
        config_arg,
        "--sink",
        "nope",
    ])
    .expect_code(2);
}
