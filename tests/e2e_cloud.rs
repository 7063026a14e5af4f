//! End-to-end tests of real-cloud access through the `runner` binary against an in-process
//! simulator on 127.0.0.1: the three auth kinds (token, IAM password, AK/SK with and without
//! a security token), a token that expires during a sync, wrong secrets that fail fast and
//! never show, rotated credentials, service discovery with filters and disappearing services,
//! two sources with different auth in one config, throttling, no auth retry loop in `run`,
//! and the `services` and `validate --check` commands.
//!
//! Contract: README "Authentication and regions" and `shared/DESIGN-NOTES.md`.

#![allow(clippy::unwrap_used)]

mod support;

use simulator::{AccessKey, Behaviour, IamUser, SimConfig, SimEvent, SimHandle};
use std::time::Duration;
use support::{
    ConfigText, Dir, RunOutput, assert_exactly_once, read_jsonl, start_sim, toml_str, truth,
    wait_until,
};

const FILE: &str = "out/events.jsonl";
const DOMAIN: &str = "OTC00000000001000000e2e";
const USER: &str = "shipper";
const PASSWORD: &str = "correct-horse-battery-staple";
const ACCESS_KEY: &str = "HPUAE2ETESTKEY0000001";
const SECRET_KEY: &str = "sk-right-7Qm2vX9pL4";

/// A simulator that knows the IAM user and the permanent access key above.
fn cloud_sim(services: usize, events_per_service: usize, seed: u64) -> SimHandle {
    start_sim(SimConfig {
        services,
        events_per_service,
        seed,
        iam_users: vec![IamUser::new(DOMAIN, USER, PASSWORD)],
        access_keys: vec![AccessKey::new(ACCESS_KEY, SECRET_KEY)],
        ..SimConfig::default()
    })
}

/// `[auth]` of password auth against the simulator's IAM.
fn password_auth(sim: &SimHandle, password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("type", toml_str("password")),
        ("domain", toml_str(DOMAIN)),
        ("user", toml_str(USER)),
        ("password", toml_str(password)),
        ("iam_endpoint", toml_str(&sim.base_url())),
    ]
}

/// `[auth]` of AK/SK auth with inline secrets.
fn aksk_auth(access_key: &str, secret_key: &str) -> Vec<(&'static str, String)> {
    vec![
        ("type", toml_str("aksk")),
        ("access_key", toml_str(access_key)),
        ("secret_key", toml_str(secret_key)),
    ]
}

fn sync(dir: &Dir, config: &ConfigText) -> RunOutput {
    let path = dir.write_config(config);
    let output = dir
        .command(&["sync", "--config", path.to_str().unwrap()])
        .run();
    output.assert_no_panic();
    output
}

/// Fails if `secret` shows anywhere in what the runner printed.
fn assert_secret_absent(output: &RunOutput, secret: &str) {
    assert!(
        !output.stderr.contains(secret) && !output.stdout.contains(secret),
        "the secret {secret:?} appeared in the output:\n--- stderr ---\n{}\n--- stdout ---\n{}",
        output.stderr,
        output.stdout
    );
}

/// Events requests (not the services list) the simulator has seen.
fn events_requests(sim: &SimHandle) -> Vec<simulator::RequestLog> {
    sim.requests()
        .into_iter()
        .filter(|request| request.path.ends_with("/events"))
        .collect()
}

/// The first sync delivers every event once into the file; a second delivers nothing and
/// leaves the file as it was.
fn assert_delivers_once_then_nothing(dir: &Dir, sim: &SimHandle, config: &ConfigText) {
    let services = sim.service_ids();
    sync(dir, config).assert_code(0);
    let expected = truth(sim, &services);
    assert!(!expected.is_empty());
    assert_exactly_once(&read_jsonl(&dir.join(FILE)), &expected, "the first sync");
    let bytes = dir.read_bytes(FILE);
    sync(dir, config).assert_code(0);
    assert_eq!(
        dir.read_bytes(FILE),
        bytes,
        "a second sync delivered something"
    );
}

fn events_after(last: i64, count: i64, label: &str) -> Vec<SimEvent> {
    (0..count)
        .map(|n| SimEvent::new(last + 1 + n, "normal", &format!("{label} {n}")))
        .collect()
}

fn newest(sim: &SimHandle, service: &str) -> i64 {
    sim.events(service)
        .last()
        .map_or(1_700_000_000_000, |e| e.0)
}

// 1a. Token auth: every event once; a second sync delivers nothing; the token is not logged.
#[test]
fn token_auth_delivers_every_event_once() {
    let dir = Dir::new("cloud-token");
    let sim = cloud_sim(2, 150, 101);
    let config = ConfigText::for_sim(&sim)
        .source_key("page_size", "40")
        .file_sink("archive", FILE);
    assert_delivers_once_then_nothing(&dir, &sim, &config);
    assert!(
        events_requests(&sim).iter().all(|r| r.auth == "token"),
        "every events request carries the static token"
    );
    assert_eq!(sim.iam_logins(), 0);
}

// 1b. Password auth with project_id: one IAM login per run, events requests carry the IAM
//     token, every event once.
#[test]
fn password_auth_with_project_id_delivers_every_event_once() {
    let dir = Dir::new("cloud-password");
    let sim = cloud_sim(2, 150, 102);
    let config = ConfigText::for_sim(&sim)
        .source_key("page_size", "40")
        .auth_of("sim", &password_auth(&sim, PASSWORD))
        .file_sink("archive", FILE);
    assert_delivers_once_then_nothing(&dir, &sim, &config);
    assert_eq!(sim.iam_logins(), 2, "one login per run");
    let events = events_requests(&sim);
    assert!(!events.is_empty());
    assert!(
        events
            .iter()
            .all(|r| r.auth == "iam-token" && r.status == 200),
        "events requests use the IAM token: {:?}",
        events
            .iter()
            .map(|r| (r.auth, r.status))
            .collect::<Vec<_>>()
    );
}

// 1c. Password auth without project_id: the token's project is used, and the records name it.
#[test]
fn password_auth_without_project_id_uses_the_tokens_project() {
    let dir = Dir::new("cloud-password-noproject");
    let sim = cloud_sim(2, 120, 103);
    let mut auth = password_auth(&sim, PASSWORD);
    auth.push(("project", toml_str(&sim.project_name())));
    let config = ConfigText::for_sim(&sim)
        .remove_source_key("project_id")
        .source_key("page_size", "40")
        .auth_of("sim", &auth)
        .file_sink("archive", FILE);
    assert_delivers_once_then_nothing(&dir, &sim, &config);
    let records = read_jsonl(&dir.join(FILE));
    assert!(
        records
            .iter()
            .all(|r| r["project_id"].as_str() == Some(sim.project_id().as_str())),
        "records carry the token's project id"
    );
    let project_path = format!("/v1/{}/", sim.project_id());
    assert!(
        events_requests(&sim)
            .iter()
            .all(|r| r.path.starts_with(&project_path)),
        "events requests use the token's project"
    );
}

// 1d. AK/SK auth: every events request is signed, every event once.
#[test]
fn aksk_auth_delivers_every_event_once() {
    let dir = Dir::new("cloud-aksk");
    let sim = cloud_sim(2, 150, 104);
    let config = ConfigText::for_sim(&sim)
        .source_key("page_size", "40")
        .auth_of("sim", &aksk_auth(ACCESS_KEY, SECRET_KEY))
        .file_sink("archive", FILE);
    assert_delivers_once_then_nothing(&dir, &sim, &config);
    let events = events_requests(&sim);
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|r| r.auth == "aksk" && r.status == 200),
        "events requests are signed: {:?}",
        events
            .iter()
            .map(|r| (r.auth, r.status))
            .collect::<Vec<_>>()
    );
    assert_eq!(sim.auth_failures(), 0);
}

// 2. An IAM token that expires in the middle of a long sync is renewed: exit 0, every event
//    once, and more than one login.
#[test]
fn a_token_expiring_mid_sync_is_renewed() {
    let dir = Dir::new("cloud-expiry");
    let sim = start_sim(SimConfig {
        services: 2,
        events_per_service: 600,
        seed: 105,
        iam_users: vec![IamUser::new(DOMAIN, USER, PASSWORD)],
        token_lifetime: Duration::from_millis(200),
        behaviour: Behaviour {
            latency: Duration::from_millis(5),
            ..Behaviour::default()
        },
        ..SimConfig::default()
    });
    let services = sim.service_ids();
    let config = ConfigText::for_sim(&sim)
        .source_key("page_size", "10")
        .auth_of("sim", &password_auth(&sim, PASSWORD))
        .file_sink("archive", FILE);
    let output = sync(&dir, &config);
    output.assert_code(0);
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &truth(&sim, &services),
        "a sync that outlasted its token",
    );
    let logins = sim.iam_logins();
    let events = events_requests(&sim).len() as u64;
    eprintln!("expiry: {logins} logins for {events} events requests");
    assert!(logins >= 2, "the token was renewed: {logins} logins");
    // Renewal happens when the token runs out, not before every request.
    assert!(
        logins * 4 <= events,
        "{logins} logins for {events} events requests: a login per request or so"
    );
    assert_secret_absent(&output, PASSWORD);
}

// 3a. A wrong password fails the source at once: exit 1, one or two IAM requests, the error
//     names the auth kind and IAM's code, and the password is not printed.
#[test]
fn a_wrong_password_fails_fast_without_showing_it() {
    let dir = Dir::new("cloud-wrong-password");
    let sim = cloud_sim(3, 50, 106);
    let wrong = "wr0ng-Passw0rd-zq81";
    let config = ConfigText::for_sim(&sim)
        .auth_of("sim", &password_auth(&sim, wrong))
        .runner_key("concurrency", "4")
        .file_sink("archive", FILE);
    let output = sync(&dir, &config);
    output.assert_code(1);
    let logins = sim.iam_logins();
    assert!((1..=2).contains(&logins), "{logins} IAM requests");
    assert!(
        output.stderr.contains("password") && output.stderr.contains("IAM.0062"),
        "stderr names the auth kind and the code:\n{}",
        output.stderr
    );
    assert_secret_absent(&output, wrong);
    assert!(events_requests(&sim).is_empty(), "no events were asked for");
    assert!(read_jsonl(&dir.join(FILE)).is_empty());
}

// 3b. A wrong AK/SK secret fails the source with one refused request, not one per service.
#[test]
fn a_wrong_secret_key_fails_fast_with_one_refusal() {
    let dir = Dir::new("cloud-wrong-sk");
    let sim = cloud_sim(3, 50, 107);
    let wrong = "sk-wrong-Zx81Lp0q";
    let config = ConfigText::for_sim(&sim)
        .auth_of("sim", &aksk_auth(ACCESS_KEY, wrong))
        .runner_key("concurrency", "4")
        .file_sink("archive", FILE);
    let output = sync(&dir, &config);
    output.assert_code(1);
    assert_eq!(sim.auth_failures(), 1, "one refused request for 3 services");
    assert!(
        output.stderr.contains("aksk") && output.stderr.contains("APIG.0301"),
        "stderr names the auth kind and the code:\n{}",
        output.stderr
    );
    assert_secret_absent(&output, wrong);
    assert_secret_absent(&output, SECRET_KEY);
    assert!(read_jsonl(&dir.join(FILE)).is_empty());
}

// 4. Temporary credentials from files: the security token is sent; after a rotation in the
//    cloud the old files fail, and the rotated files work on the next run.
#[test]
fn temporary_credentials_from_files_survive_a_rotation() {
    let dir = Dir::new("cloud-temporary");
    let sim = start_sim(SimConfig {
        services: 2,
        events_per_service: 80,
        seed: 108,
        access_keys: vec![AccessKey::temporary(ACCESS_KEY, "sk-one-A1", "st-one-B1")],
        ..SimConfig::default()
    });
    let services = sim.service_ids();
    // Trailing newlines, as `echo` and secret stores write them.
    dir.write("secrets/sk", "sk-one-A1\n");
    dir.write("secrets/st", "st-one-B1\n");
    let config = ConfigText::for_sim(&sim)
        .auth_of(
            "sim",
            &[
                ("type", toml_str("aksk")),
                ("access_key", toml_str(ACCESS_KEY)),
                ("secret_key_file", toml_str("secrets/sk")),
                ("security_token_file", toml_str("secrets/st")),
            ],
        )
        .file_sink("archive", FILE);
    sync(&dir, &config).assert_code(0);
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &truth(&sim, &services),
        "with the first temporary key",
    );

    sim.set_access_keys(vec![AccessKey::temporary(
        ACCESS_KEY,
        "sk-two-C2",
        "st-two-D2",
    )]);
    let last = newest(&sim, &services[0]);
    sim.add_events(&services[0], events_after(last, 5, "after rotation"));
    let stale = sync(&dir, &config);
    stale.assert_code(1);
    assert_secret_absent(&stale, "sk-one-A1");
    assert_secret_absent(&stale, "st-one-B1");

    dir.write("secrets/sk", "sk-two-C2\n");
    dir.write("secrets/st", "st-two-D2\n");
    let rotated = sync(&dir, &config);
    rotated.assert_code(0);
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &truth(&sim, &services),
        "with the rotated key",
    );
    assert_secret_absent(&rotated, "sk-two-C2");
    assert_secret_absent(&rotated, "st-two-D2");
}

// 4b. The same rotation under `run`: the files are re-read at each poll, so a daemon picks up
//     rotated credentials without a restart.
#[test]
fn run_rereads_rotated_credential_files() {
    let dir = Dir::new("cloud-temporary-run");
    let sim = start_sim(SimConfig {
        services: 1,
        events_per_service: 30,
        seed: 109,
        access_keys: vec![AccessKey::temporary(ACCESS_KEY, "sk-one-A1", "st-one-B1")],
        ..SimConfig::default()
    });
    let service = sim.service_ids()[0].clone();
    dir.write("secrets/sk", "sk-one-A1\n");
    dir.write("secrets/st", "st-one-B1\n");
    let config = ConfigText::for_sim(&sim)
        .auth_of(
            "sim",
            &[
                ("type", toml_str("aksk")),
                ("access_key", toml_str(ACCESS_KEY)),
                ("secret_key_file", toml_str("secrets/sk")),
                ("security_token_file", toml_str("secrets/st")),
            ],
        )
        // Long enough that the rotation below lands between two polls, never inside one
        // (one access key id holds one secret at a time, in the simulator as in the cloud).
        .runner_key("interval", &toml_str("500ms"))
        .file_sink("archive", FILE);
    let path = dir.write_config(&config);
    let running = dir
        .command(&["run", "--config", path.to_str().unwrap()])
        .spawn();
    wait_until("the first poll has finished", || {
        support::summaries(&running.stderr_so_far()).len() == 1
    });
    assert_eq!(read_jsonl(&dir.join(FILE)).len(), 30);

    // The runner now sleeps until its next poll: rotate in the cloud and in the files.
    sim.set_access_keys(vec![AccessKey::temporary(
        ACCESS_KEY,
        "sk-two-C2",
        "st-two-D2",
    )]);
    dir.write("secrets/sk", "sk-two-C2\n");
    dir.write("secrets/st", "st-two-D2\n");
    let last = newest(&sim, &service);
    sim.add_events(&service, events_after(last, 4, "after rotation"));
    wait_until("the events after the rotation are delivered", || {
        read_jsonl(&dir.join(FILE)).len() == 34 || running.stderr_so_far().contains("FAILED")
    });
    running.signal(libc::SIGTERM);
    let output = running.wait();
    output.assert_code(0);
    assert!(
        !output.stderr.contains("FAILED"),
        "a poll failed across the rotation:\n{}",
        output.stderr
    );
    assert_eq!(sim.auth_failures(), 0);
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &truth(&sim, &[service]),
        "run across a rotation",
    );
}
