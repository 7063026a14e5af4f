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

use simulator::{AccessKey, Behaviour, Fault, FaultRule, IamUser, SimConfig, SimEvent, SimHandle};
use std::time::Duration;
use support::{
    ConfigText, Dir, RunOutput, assert_exactly_once, occurrences, read_jsonl, start_sim, toml_list,
    toml_str, truth, wait_until,
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

/// The keys of an `[auth]` table, values as TOML fragments.
type AuthTable = Vec<(&'static str, String)>;

/// `[auth]` of password auth against the simulator's IAM.
fn password_auth(sim: &SimHandle, password: &str) -> AuthTable {
    vec![
        ("type", toml_str("password")),
        ("domain", toml_str(DOMAIN)),
        ("user", toml_str(USER)),
        ("password", toml_str(password)),
        ("iam_endpoint", toml_str(&sim.base_url())),
    ]
}

/// `[auth]` of AK/SK auth with inline secrets.
fn aksk_auth(access_key: &str, secret_key: &str) -> AuthTable {
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
    // Renewal happens when the token runs out, not before every request (loose: a loaded
    // machine makes each request slower, and so each token cover fewer of them).
    assert!(
        logins * 2 <= events,
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
        .runner_key("interval", &toml_str("2s"))
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

const PROD_A: &str = "a0000000-0000-4000-8000-00000000000a";
const PROD_B: &str = "b0000000-0000-4000-8000-00000000000b";
const DEV_C: &str = "c0000000-0000-4000-8000-00000000000c";
const PROD_D: &str = "d0000000-0000-4000-8000-00000000000d";
const LISTED: &str = "e0000000-0000-4000-8000-00000000000e";
const MISSING: &str = "f0000000-0000-4000-8000-00000000000f";

/// Adds a service with `status` and a few events of its own.
fn add_service_with_events(sim: &SimHandle, id: &str, name: &str, status: &str) {
    sim.add_service(id, name);
    assert!(sim.set_service_status(id, status));
    sim.add_events(id, events_after(1_700_000_000_000, 7, name));
}

/// A simulator with no synthetic services: prod-a (running), prod-b (stopped), dev-c
/// (running).
fn discovery_sim() -> SimHandle {
    let sim = start_sim(SimConfig {
        services: 0,
        ..SimConfig::default()
    });
    add_service_with_events(&sim, PROD_A, "prod-a", "running");
    add_service_with_events(&sim, PROD_B, "prod-b", "stopped");
    add_service_with_events(&sim, DEV_C, "dev-c", "running");
    sim
}

fn discover_prod_running() -> String {
    format!(
        "{{ name = \"prod-*\", status = {} }}",
        toml_list(&["running".to_owned()])
    )
}

/// Service ids that have at least one record in the file.
fn delivered_services(dir: &Dir) -> Vec<String> {
    let mut ids: Vec<String> = read_jsonl(&dir.join(FILE))
        .iter()
        .map(|r| r["service_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

// 5. Discovery with a name glob and a status filter: only matching services are followed; a
//    new one is picked up on the next run; one that disappears is reported once, with exit
//    0, and its positions are kept.
#[test]
fn discovery_follows_matching_services_and_reports_a_gone_one_once() {
    let dir = Dir::new("cloud-discover");
    let sim = discovery_sim();
    let config = ConfigText::for_sim(&sim)
        .remove_source_key("services")
        .source_key("discover", &discover_prod_running())
        .file_sink("archive", FILE);

    sync(&dir, &config).assert_code(0);
    assert_eq!(delivered_services(&dir), [PROD_A]);
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &truth(&sim, &[PROD_A.to_owned()]),
        "only prod-a",
    );

    add_service_with_events(&sim, PROD_D, "prod-d", "running");
    sync(&dir, &config).assert_code(0);
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &truth(&sim, &[PROD_A.to_owned(), PROD_D.to_owned()]),
        "prod-d picked up on the next run",
    );

    let prod_a_events = truth(&sim, &[PROD_A.to_owned()]);
    assert!(sim.remove_service(PROD_A));
    let gone = sync(&dir, &config);
    gone.assert_code(0);
    let report = "no longer in the project or no longer matches `discover`; stopped following it, its state is kept";
    assert_eq!(
        occurrences(&gone.stderr, report),
        1,
        "one report:\n{}",
        gone.stderr
    );
    let line = gone.stderr.lines().find(|l| l.contains(report)).unwrap();
    assert!(line.contains(PROD_A) && line.contains("prod-a"), "{line}");

    let after = sync(&dir, &config);
    after.assert_code(0);
    assert!(
        !after.stderr.contains(PROD_A) && !after.stderr.contains("no longer in the project"),
        "reported again:\n{}",
        after.stderr
    );

    let state = dir
        .command(&[
            "state",
            "--config",
            dir.join("runner.toml").to_str().unwrap(),
        ])
        .expect_code(0);
    assert!(
        state.stdout.contains(PROD_A),
        "prod-a's positions are kept:\n{}",
        state.stdout
    );
    let mut expected = prod_a_events;
    expected.extend(truth(&sim, &[PROD_D.to_owned()]));
    expected.sort();
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &expected,
        "nothing delivered twice across the disappearance",
    );
}

// 5b. A service listed in `services` that does not exist fails the run, naming it; the
//     others are still delivered.
#[test]
fn a_listed_service_that_does_not_exist_fails_naming_it() {
    let dir = Dir::new("cloud-missing");
    let sim = discovery_sim();
    let config = ConfigText::for_sim(&sim)
        .source_key(
            "services",
            &toml_list(&[PROD_A.to_owned(), MISSING.to_owned()]),
        )
        .file_sink("archive", FILE);
    let output = sync(&dir, &config);
    output.assert_code(1);
    assert!(
        output.stderr.contains(MISSING),
        "stderr names the missing service:\n{}",
        output.stderr
    );
    assert!(!output.stderr.contains("no longer in the project"));
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &truth(&sim, &[PROD_A.to_owned()]),
        "the existing service",
    );
}

// 6. Two sources with different auth (token and AK/SK) in one config: both delivered; with
//    one source's secret broken, the run exits 1 and the other source still delivers.
#[test]
fn two_sources_with_different_auth_fail_separately() {
    let dir = Dir::new("cloud-two-sources");
    let sim = cloud_sim(2, 60, 110);
    let services = sim.service_ids();
    let (first, second) = (services[0].clone(), services[1].clone());
    let config = |secret: &str| {
        ConfigText::for_sim(&sim)
            .source_key("services", &toml_list(std::slice::from_ref(&first)))
            .with_source("signed", &sim, std::slice::from_ref(&second))
            .auth_of("signed", &aksk_auth(ACCESS_KEY, secret))
            .file_sink("archive", FILE)
    };
    sync(&dir, &config(SECRET_KEY)).assert_code(0);
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &truth(&sim, &services),
        "both sources",
    );
    let sources: Vec<String> = read_jsonl(&dir.join(FILE))
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["source"].as_str().unwrap(),
                r["service_id"].as_str().unwrap()
            )
        })
        .collect();
    assert!(sources.contains(&format!("sim/{first}")));
    assert!(sources.contains(&format!("signed/{second}")));

    sim.add_events(
        &first,
        events_after(newest(&sim, &first), 3, "token source"),
    );
    sim.add_events(
        &second,
        events_after(newest(&sim, &second), 3, "aksk source"),
    );
    let wrong = "sk-broken-Yy77";
    let broken = sync(&dir, &config(wrong));
    broken.assert_code(1);
    assert!(
        broken.stderr.contains("signed") && broken.stderr.contains("aksk"),
        "stderr names the failed source and its auth:\n{}",
        broken.stderr
    );
    assert_secret_absent(&broken, wrong);
    let mut expected = truth(&sim, std::slice::from_ref(&first));
    let mut second_before: Vec<_> = truth(&sim, std::slice::from_ref(&second));
    second_before.retain(|key| !key.3.starts_with("aksk source"));
    expected.extend(second_before);
    expected.sort();
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &expected,
        "the token source delivered, the broken one did not",
    );

    sync(&dir, &config(SECRET_KEY)).assert_code(0);
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &truth(&sim, &services),
        "after the fix",
    );
}

// 7. A throttled source still completes: 429 on every second request with Retry-After 0;
//    every event once, and the lowered rate is logged.
#[test]
fn a_throttled_source_lowers_its_rate_and_completes() {
    let dir = Dir::new("cloud-throttle");
    let sim = start_sim(SimConfig {
        services: 1,
        events_per_service: 60,
        seed: 111,
        behaviour: Behaviour {
            retry_after_secs: 0,
            faults: vec![FaultRule::every(Fault::TooManyRequests, 2)],
            ..Behaviour::default()
        },
        ..SimConfig::default()
    });
    let services = sim.service_ids();
    let config = ConfigText::for_sim(&sim)
        .source_key("page_size", "10")
        .file_sink("archive", FILE);
    let output = sync(&dir, &config);
    output.assert_code(0);
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &truth(&sim, &services),
        "under throttling",
    );
    let throttled = sim.requests().iter().filter(|r| r.status == 429).count();
    assert!(throttled >= 3, "{throttled} throttled requests");
    assert!(
        output.stderr.contains("Request rate lowered"),
        "the lowered rate is logged:\n{}",
        output.stderr
    );
}

// 8. `run` with a wrong AK/SK does not retry the source's authentication within 5 minutes,
//    however short its interval, while another source goes on; SIGTERM exits 0.
#[test]
fn run_does_not_retry_a_failed_authentication() {
    let dir = Dir::new("cloud-run-no-retry");
    let sim = cloud_sim(2, 20, 112);
    let services = sim.service_ids();
    let (good, bad) = (services[0].clone(), services[1].clone());
    let config = ConfigText::for_sim(&sim)
        .source_key("services", &toml_list(std::slice::from_ref(&good)))
        .with_source("signed", &sim, std::slice::from_ref(&bad))
        .auth_of("signed", &aksk_auth(ACCESS_KEY, "sk-wrong-Qq11"))
        .runner_key("interval", &toml_str("100ms"))
        .file_sink("archive", FILE);
    let path = dir.write_config(&config);
    let running = dir
        .command(&["run", "--config", path.to_str().unwrap()])
        .spawn();
    wait_until("several polls passed over the failed source", || {
        occurrences(&running.stderr_so_far(), "not tried again") >= 8
    });
    assert_eq!(sim.auth_failures(), 1, "the failed source was tried again");
    // The good source goes on: new events arrive while the bad one waits.
    sim.add_events(&good, events_after(newest(&sim, &good), 3, "while waiting"));
    wait_until("the good source's new events are delivered", || {
        read_jsonl(&dir.join(FILE)).len() == 23
    });
    running.signal(libc::SIGTERM);
    let output = running.wait();
    output.assert_code(0);
    assert_eq!(sim.auth_failures(), 1);
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &truth(&sim, &[good]),
        "the good source",
    );
    assert_secret_absent(&output, "sk-wrong-Qq11");
}

/// The lines `runner services` prints for source `name`: its header and its services.
fn section_of(text: &str, name: &str) -> String {
    let header = format!("source {name} ");
    let mut lines = text.lines().skip_while(|line| !line.starts_with(&header));
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("source {name} not listed:\n{text}"));
    let rest: Vec<&str> = lines
        .take_while(|line| !line.starts_with("source "))
        .collect();
    format!("{first}\n{}", rest.join("\n"))
}

// 9a. `runner services` shows every service of the project with why it is or is not
//     followed.
#[test]
fn services_explains_why_each_service_is_followed_or_not() {
    let dir = Dir::new("cloud-services");
    let sim = discovery_sim();
    add_service_with_events(&sim, LISTED, "batch-listed", "stopped");
    let config = ConfigText::for_sim(&sim)
        .source_key("services", &toml_list(&[LISTED.to_owned()]))
        .source_key("discover", &discover_prod_running())
        .with_source("plain", &sim, &[PROD_B.to_owned()])
        .file_sink("archive", FILE);
    let path = dir.write_config(&config);
    let output = dir
        .command(&["services", "--config", path.to_str().unwrap()])
        .expect_code(0);
    let text = &output.stdout;
    let sim_part = section_of(text, "sim");
    let plain_part = section_of(text, "plain");
    let line_of = |part: &str, id: &str| {
        part.lines()
            .find(|line| line.contains(id))
            .unwrap_or_else(|| panic!("{id} not shown:\n{text}"))
            .to_owned()
    };
    assert!(line_of(&sim_part, LISTED).contains("followed: listed in `services`"));
    let a = line_of(&sim_part, PROD_A);
    assert!(
        a.contains("followed: matches discover") && !a.contains("not followed"),
        "{a}"
    );
    assert!(a.contains("prod-*"), "{a}");
    for id in [PROD_B, DEV_C] {
        assert!(
            line_of(&sim_part, id).contains("not followed: does not match discover"),
            "{text}"
        );
    }
    assert!(line_of(&plain_part, PROD_B).contains("followed: listed in `services`"));
    for id in [PROD_A, DEV_C, LISTED] {
        assert!(
            line_of(&plain_part, id)
                .contains("not followed: not listed in `services` and no `discover`"),
            "{text}"
        );
    }
}

// 9b. `validate --check` tries each auth kind once: exit 0 with the right secret, 1 with a
//     wrong one (which is not printed).
#[test]
fn validate_check_tries_each_auth_kind() {
    let sim = cloud_sim(1, 5, 113);
    let kinds: Vec<(&str, AuthTable, AuthTable, &str)> = vec![
        (
            "token",
            vec![
                ("type", toml_str("token")),
                ("token", toml_str(&sim.token())),
            ],
            vec![
                ("type", toml_str("token")),
                ("token", toml_str("tk-wrong-Pp33")),
            ],
            "tk-wrong-Pp33",
        ),
        (
            "password",
            password_auth(&sim, PASSWORD),
            password_auth(&sim, "pw-wrong-Rr44"),
            "pw-wrong-Rr44",
        ),
        (
            "aksk",
            aksk_auth(ACCESS_KEY, SECRET_KEY),
            aksk_auth(ACCESS_KEY, "sk-wrong-Ss55"),
            "sk-wrong-Ss55",
        ),
    ];
    for (kind, right, wrong, secret) in kinds {
        let dir = Dir::new(&format!("cloud-validate-{kind}"));
        let right_path = dir.write_config(
            &ConfigText::for_sim(&sim)
                .auth_of("sim", &right)
                .file_sink("archive", FILE),
        );
        let ok = dir
            .command(&[
                "validate",
                "--check",
                "--config",
                right_path.to_str().unwrap(),
            ])
            .run();
        assert_eq!(
            ok.code(),
            Some(0),
            "{kind} with the right secret:\n{}",
            ok.stderr
        );
        assert!(
            ok.stderr.contains("authenticated"),
            "{kind}:\n{}",
            ok.stderr
        );
        let wrong_path = dir.write_config(
            &ConfigText::for_sim(&sim)
                .auth_of("sim", &wrong)
                .file_sink("archive", FILE),
        );
        let failed = dir
            .command(&[
                "validate",
                "--check",
                "--config",
                wrong_path.to_str().unwrap(),
            ])
            .run();
        assert_eq!(
            failed.code(),
            Some(1),
            "{kind} with a wrong secret:\n{}",
            failed.stderr
        );
        assert!(
            failed.stderr.contains("FAILED"),
            "{kind}:\n{}",
            failed.stderr
        );
        assert_secret_absent(&failed, secret);
    }
}

// 5c. A discovered service that stops matching is reported once like a deleted one; when it
//     comes back it resumes where it stopped (its state was kept): only new events arrive.
#[test]
fn a_discovered_service_that_stops_matching_and_comes_back_resumes() {
    let dir = Dir::new("cloud-discover-back");
    let sim = discovery_sim();
    let config = ConfigText::for_sim(&sim)
        .remove_source_key("services")
        .source_key("discover", &discover_prod_running())
        .file_sink("archive", FILE);
    sync(&dir, &config).assert_code(0);
    assert_eq!(delivered_services(&dir), [PROD_A]);
    let delivered = read_jsonl(&dir.join(FILE)).len();

    assert!(sim.set_service_status(PROD_A, "stopped"));
    let stopped = sync(&dir, &config);
    stopped.assert_code(0);
    assert_eq!(
        occurrences(&stopped.stderr, "no longer in the project"),
        1,
        "a service that no longer matches is reported once:\n{}",
        stopped.stderr
    );
    let again = sync(&dir, &config);
    again.assert_code(0);
    assert!(
        !again.stderr.contains("no longer in the project"),
        "{}",
        again.stderr
    );

    // Back, with events that arrived meanwhile: only those are delivered.
    assert!(sim.set_service_status(PROD_A, "running"));
    sim.add_events(
        PROD_A,
        events_after(newest(&sim, PROD_A), 4, "after coming back"),
    );
    let back = sync(&dir, &config);
    back.assert_code(0);
    let records = read_jsonl(&dir.join(FILE));
    assert_eq!(records.len(), delivered + 4, "only the new events arrive");
    assert_exactly_once(
        &records,
        &truth(&sim, &[PROD_A.to_owned()]),
        "prod-a resumed",
    );
}

// 8b. Password auth under `run`: the IAM token is cached across polls (one login, not one
//     per poll); once it expires, the next poll logs in again and goes on without failing.
#[test]
fn run_caches_the_iam_token_across_polls_and_renews_it() {
    let dir = Dir::new("cloud-run-token-cache");
    let sim = cloud_sim(1, 20, 114);
    let service = sim.service_ids()[0].clone();
    let config = ConfigText::for_sim(&sim)
        .auth_of("sim", &password_auth(&sim, PASSWORD))
        .runner_key("interval", &toml_str("20ms"))
        .file_sink("archive", FILE);
    let path = dir.write_config(&config);
    let running = dir
        .command(&["run", "--config", path.to_str().unwrap()])
        .spawn();
    wait_until("ten polls have finished", || {
        support::cycles(&running.stderr_so_far()) >= 10
    });
    assert_eq!(sim.iam_logins(), 1, "the token is cached across polls");

    sim.expire_tokens();
    sim.add_events(
        &service,
        events_after(newest(&sim, &service), 3, "after expiry"),
    );
    wait_until("the events after the expiry are delivered", || {
        read_jsonl(&dir.join(FILE)).len() == 23 || running.stderr_so_far().contains("FAILED")
    });
    let polls = support::cycles(&running.stderr_so_far());
    wait_until("five more polls have finished", || {
        support::cycles(&running.stderr_so_far()) >= polls + 5
    });
    running.signal(libc::SIGTERM);
    let output = running.wait();
    output.assert_code(0);
    assert!(!output.stderr.contains("FAILED"), "{}", output.stderr);
    assert_eq!(
        sim.iam_logins(),
        2,
        "one login after the expiry, then cached again"
    );
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &truth(&sim, &[service]),
        "across the expiry",
    );
    assert_secret_absent(&output, PASSWORD);
}

// 9c. `runner services` with one source whose secret is wrong: exit 1, the failure names the
//     auth kind without the secret, and the other source is still listed.
#[test]
fn services_reports_a_failed_source_and_lists_the_others() {
    let dir = Dir::new("cloud-services-failed");
    let sim = cloud_sim(2, 5, 115);
    let services = sim.service_ids();
    let wrong = "sk-wrong-Tt66";
    let config = ConfigText::for_sim(&sim)
        .with_source("signed", &sim, &services)
        .auth_of("signed", &aksk_auth(ACCESS_KEY, wrong))
        .file_sink("archive", FILE);
    let path = dir.write_config(&config);
    let output = dir
        .command(&["services", "--config", path.to_str().unwrap()])
        .expect_code(1);
    assert_secret_absent(&output, wrong);
    let all = format!("{}{}", output.stdout, output.stderr);
    assert!(
        all.contains("signed") && all.contains("aksk") && all.contains("APIG.0301"),
        "{all}"
    );
    let listed = section_of(&output.stdout, "sim");
    for id in &services {
        assert!(
            listed.contains(id.as_str()),
            "the good source lists {id}:\n{all}"
        );
    }
    assert_eq!(sim.auth_failures(), 1);
}

// 10. Configuration errors of the auth keys exit 2 before any request and never echo a
//     secret.
#[test]
fn auth_configuration_errors_exit_2_without_requests() {
    let sim = cloud_sim(1, 5, 116);
    let secret = "sk-config-Uu77";
    let cases: Vec<(&str, ConfigText, &str)> = vec![
        (
            "aksk without project_id",
            ConfigText::for_sim(&sim)
                .remove_source_key("project_id")
                .auth_of("sim", &aksk_auth(ACCESS_KEY, secret)),
            "project_id",
        ),
        (
            "secret_key and secret_key_file",
            ConfigText::for_sim(&sim).auth_of(
                "sim",
                &[
                    ("type", toml_str("aksk")),
                    ("access_key", toml_str(ACCESS_KEY)),
                    ("secret_key", toml_str(secret)),
                    ("secret_key_file", toml_str("secrets/sk")),
                ],
            ),
            "secret_key",
        ),
        (
            "unknown region",
            ConfigText::for_sim(&sim)
                .remove_source_key("endpoint")
                .source_key("region", &toml_str("mars-north-1"))
                .auth_of("sim", &aksk_auth(ACCESS_KEY, secret)),
            "eu-de",
        ),
        (
            "password without domain",
            ConfigText::for_sim(&sim).auth_of(
                "sim",
                &[
                    ("type", toml_str("password")),
                    ("user", toml_str(USER)),
                    ("password", toml_str(secret)),
                    ("iam_endpoint", toml_str(&sim.base_url())),
                ],
            ),
            "domain",
        ),
        (
            "unknown auth type",
            ConfigText::for_sim(&sim).auth_of(
                "sim",
                &[("type", toml_str("kerberos")), ("token", toml_str(secret))],
            ),
            "type",
        ),
    ];
    for (what, config, named) in cases {
        let dir = Dir::new("cloud-config-errors");
        let config = config.file_sink("archive", FILE);
        let path = dir.write_config(&config);
        for command in ["sync", "validate"] {
            let output = dir
                .command(&[command, "--config", path.to_str().unwrap()])
                .run();
            assert_eq!(
                output.code(),
                Some(2),
                "{what} ({command}):\n{}",
                output.stderr
            );
            assert!(
                output.stderr.contains(named),
                "{what}: the error names {named}:\n{}",
                output.stderr
            );
            assert_secret_absent(&output, secret);
        }
        assert!(!dir.exists("state"), "{what}: the state was touched");
    }
    assert_eq!(
        sim.request_count(),
        0,
        "no request before the config is valid"
    );
    assert_eq!(sim.iam_logins(), 0);
}

// 8c. The same for a wrong password under `run`: one IAM request, however many polls.
#[test]
fn run_does_not_retry_a_refused_password() {
    let dir = Dir::new("cloud-run-no-retry-password");
    let sim = cloud_sim(1, 5, 117);
    let wrong = "pw-wrong-Vv88";
    let config = ConfigText::for_sim(&sim)
        .auth_of("sim", &password_auth(&sim, wrong))
        .runner_key("interval", &toml_str("20ms"))
        .file_sink("archive", FILE);
    let path = dir.write_config(&config);
    let running = dir
        .command(&["run", "--config", path.to_str().unwrap()])
        .spawn();
    wait_until("several polls passed over the failed source", || {
        occurrences(&running.stderr_so_far(), "not tried again") >= 10
    });
    running.signal(libc::SIGTERM);
    let output = running.wait();
    output.assert_code(0);
    assert_eq!(sim.iam_logins(), 1, "the password was tried again");
    assert!(output.stderr.contains("IAM.0062"), "{}", output.stderr);
    assert_secret_absent(&output, wrong);
}

// 5d. `sync --service` with a discovering source: a discovered service can be selected; one
//     that discovery does not match is refused and nothing is delivered for it.
#[test]
fn sync_of_one_discovered_service() {
    let dir = Dir::new("cloud-discover-select");
    let sim = discovery_sim();
    add_service_with_events(&sim, PROD_D, "prod-d", "running");
    let config = ConfigText::for_sim(&sim)
        .remove_source_key("services")
        .source_key("discover", &discover_prod_running())
        .file_sink("archive", FILE);
    let path = dir.write_config(&config);
    let config_arg = path.to_str().unwrap();
    dir.command(&["sync", "--config", config_arg, "--service", PROD_D])
        .expect_code(0);
    assert_eq!(delivered_services(&dir), [PROD_D]);

    let refused = dir
        .command(&["sync", "--config", config_arg, "--service", DEV_C])
        .run();
    assert_ne!(refused.code(), Some(0), "{}", refused.stderr);
    assert!(refused.stderr.contains(DEV_C), "{}", refused.stderr);
    assert_eq!(delivered_services(&dir), [PROD_D]);

    // Selecting one service does not make the others look gone.
    let all = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(0);
    assert!(
        !all.stderr.contains("no longer in the project"),
        "{}",
        all.stderr
    );
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &truth(&sim, &[PROD_A.to_owned(), PROD_D.to_owned()]),
        "after a full sync",
    );
}

// 11. Secrets from the environment (`${VAR}`) work, a missing variable is a usage error
//     naming it, and a dry run prints no secret; an IAM endpoint ending in `/v3` is
//     accepted.
#[test]
fn secrets_from_the_environment_and_an_iam_endpoint_with_v3() {
    let dir = Dir::new("cloud-env-secrets");
    let sim = cloud_sim(1, 30, 118);
    let services = sim.service_ids();
    let mut auth = password_auth(&sim, "${E2E_OTC_PASSWORD}");
    auth.retain(|(key, _)| *key != "iam_endpoint");
    auth.push(("iam_endpoint", toml_str(&format!("{}/v3", sim.base_url()))));
    let config = ConfigText::for_sim(&sim)
        .auth_of("sim", &auth)
        .stdout_sink("console")
        .file_sink("archive", FILE);
    let path = dir.write_config(&config);
    let config_arg = path.to_str().unwrap();

    let missing = dir
        .command(&["sync", "--config", config_arg])
        .env_remove("E2E_OTC_PASSWORD")
        .run();
    assert_eq!(missing.code(), Some(2), "{}", missing.stderr);
    assert!(
        missing.stderr.contains("E2E_OTC_PASSWORD"),
        "{}",
        missing.stderr
    );
    assert_eq!(sim.iam_logins(), 0);

    let dry = dir
        .command(&["sync", "--config", config_arg, "--dry-run"])
        .env("E2E_OTC_PASSWORD", PASSWORD)
        .expect_code(0);
    assert_eq!(
        dry.stdout_json().len(),
        30,
        "the dry run prints what it would deliver"
    );
    assert_secret_absent(&dry, PASSWORD);
    assert!(
        read_jsonl(&dir.join(FILE)).is_empty(),
        "a dry run writes no sink"
    );

    let real = dir
        .command(&["sync", "--config", config_arg])
        .env("E2E_OTC_PASSWORD", PASSWORD)
        .expect_code(0);
    assert_secret_absent(&real, PASSWORD);
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &truth(&sim, &services),
        "password from the environment",
    );
}
