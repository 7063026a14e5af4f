//! End-to-end tests of the network sinks: the real `runner` binary delivering to doubles
//! that behave like Grafana Loki and Elasticsearch (errors included, `crates/doubles`) and
//! to a file at once, against the ModelArts simulator, all on 127.0.0.1.
//!
//! What is under test is the promise of the delivery engine for network destinations:
//! every event stored once in each (Loki drops exact re-sends itself; Elasticsearch
//! refuses a second `create` of an `_id`), across SIGKILLs at any instant, a state file
//! that was lost, and a destination that is down for a whole run; and batches that span
//! services, so that many small services cost a handful of requests.

#![allow(clippy::unwrap_used)]

mod support;

use doubles::elasticsearch::ElasticsearchDouble;
use doubles::loki::{LokiDouble, LokiLimits, LokiSettings};
use serde_json::Value;
use simulator::Behaviour;
use std::collections::BTreeMap;
use std::time::Duration;
use support::{
    ConfigText, Dir, EventKey, assert_exactly_once, keys_of, read_jsonl, sim_with, toml_str, truth,
};

const FILE: &str = "out/events.jsonl";
const INDEX: &str = "modelarts-events";
const TENANT: &str = "e2e";

/// Fast retries, short batch timers: tests never wait for defaults meant for production.
fn fast(keys: &mut Vec<(&'static str, String)>) {
    keys.extend([
        ("retry.initial_backoff", toml_str("5ms")),
        ("retry.max_backoff", toml_str("50ms")),
        ("batch.timeout", toml_str("100ms")),
        ("request.timeout", toml_str("5s")),
    ]);
}

fn es_keys(endpoint: &str) -> Vec<(&'static str, String)> {
    let mut keys = vec![("endpoint", toml_str(endpoint)), ("index", toml_str(INDEX))];
    fast(&mut keys);
    keys
}

fn loki_keys(endpoint: &str) -> Vec<(&'static str, String)> {
    let mut keys = vec![
        ("endpoint", toml_str(endpoint)),
        ("tenant_id", toml_str(TENANT)),
        // The simulator's histories end now and reach back days; keep every event.
        ("too_old_after", toml_str("3650d")),
    ];
    fast(&mut keys);
    keys
}

/// A Loki that, like a real one with long retention, keeps what the simulator holds.
fn loki_double() -> LokiDouble {
    LokiDouble::with(LokiSettings {
        auth_enabled: true,
        limits: LokiLimits {
            reject_old_samples_max_age: Duration::from_secs(3650 * 24 * 3600),
            ..LokiLimits::default()
        },
    })
    .unwrap()
}

/// The events Elasticsearch holds, as records.
fn es_records(es: &ElasticsearchDouble) -> Vec<Value> {
    es.documents(INDEX).into_iter().map(|d| d.source).collect()
}

/// The events Loki holds, as records (each line is the record's JSON).
fn loki_records(loki: &LokiDouble) -> Vec<Value> {
    loki.entries_of(TENANT)
        .iter()
        .map(|e| serde_json::from_str(&e.line).unwrap())
        .collect()
}

/// Every Loki entry's timestamp is its record's `occur_time` in nanoseconds, and the
/// stream is the service's.
fn assert_loki_streams(loki: &LokiDouble) {
    for entry in loki.entries_of(TENANT) {
        let record: Value = serde_json::from_str(&entry.line).unwrap();
        assert_eq!(
            entry.timestamp_ns,
            record["occur_time"].as_i64().unwrap() * 1_000_000
        );
        assert_eq!(
            entry.labels.get("service_name").map(String::as_str),
            record["service_name"].as_str()
        );
    }
}

// At least ten SIGKILLs at random instants while one sync delivers to Loki,
// Elasticsearch and a file at once; then a sync that finishes. Every event is stored
// exactly once in each: the file cuts its uncommitted tail, Loki drops exact re-sends,
// Elasticsearch refuses a second `create`.
#[test]
fn sigkill_at_random_instants_leaves_every_event_once_in_loki_elasticsearch_and_the_file() {
    let dir = Dir::new("network-sigkill");
    let sim = sim_with(4, 2_500, 17);
    sim.set_behaviour(Behaviour {
        latency: Duration::from_millis(5),
        ..Behaviour::default()
    });
    let services = sim.service_ids();
    let es = ElasticsearchDouble::start().unwrap();
    let loki = loki_double();
    // At most 50 pages (5,000 events) a second: each killed sync moves the positions on,
    // so the pull must be slow enough that most kills land before the file has every
    // event, however fast the sinks are.
    let config = ConfigText::for_sim(&sim)
        .source_key("page_size", "100")
        .source_key("max_requests_per_second", "50")
        .file_sink("archive", FILE)
        .sink("search", "elasticsearch", &es_keys(&es.base_url()))
        .sink("loki", "loki", &loki_keys(&loki.base_url()));
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();

    let total = 4 * 2_500;
    let mut kills = 0;
    let mut kills_mid_delivery = 0;
    let mut finished_early = 0;
    while kills < 10 {
        let mut running = dir.command(&["sync", "--config", config_arg]).spawn();
        std::thread::sleep(Duration::from_millis(fastrand::u64(30..300)));
        if running.has_exited() {
            finished_early += 1;
            assert!(
                finished_early < 5,
                "the syncs finish before a kill; make them slower"
            );
            continue;
        }
        // Complete lines only: the runner may be writing one right now.
        let in_file = dir.read_bytes(FILE).iter().filter(|b| **b == b'\n').count();
        let output = running.kill();
        output.assert_no_panic();
        kills += 1;
        if in_file < total {
            kills_mid_delivery += 1;
        }
    }
    assert!(
        kills_mid_delivery >= 5,
        "only {kills_mid_delivery} of {kills} kills landed before the file had every event"
    );
    let last = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(0);
    last.assert_no_panic();

    let all: Vec<EventKey> = truth(&sim, &services);
    assert_exactly_once(&read_jsonl(&dir.join(FILE)), &all, "file after 10 kills");
    assert_exactly_once(&es_records(&es), &all, "Elasticsearch after 10 kills");
    assert_exactly_once(&loki_records(&loki), &all, "Loki after 10 kills");
    assert_loki_streams(&loki);
    assert_eq!(es.count(), all.len());
}

// A state file that was lost (deleted): the next sync re-sends everything, and neither
// Elasticsearch (409 on every `create`) nor Loki stores a second copy of anything. Loki
// drops an exact re-send, or, for one more than an hour behind its stream's newest entry,
// refuses it as out of order (it checks that window first): an expected refusal, counted,
// and the run still succeeds.
#[test]
fn a_lost_state_adds_nothing_to_elasticsearch_or_loki() {
    let dir = Dir::new("network-lost-state");
    let sim = sim_with(3, 200, 23);
    let services = sim.service_ids();
    let es = ElasticsearchDouble::start().unwrap();
    let loki = loki_double();
    let config = ConfigText::for_sim(&sim)
        .sink("search", "elasticsearch", &es_keys(&es.base_url()))
        .sink("loki", "loki", &loki_keys(&loki.base_url()));
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();
    dir.command(&["sync", "--config", config_arg])
        .expect_code(0);
    let all = truth(&sim, &services);
    assert_exactly_once(&es_records(&es), &all, "Elasticsearch after the first sync");
    assert_exactly_once(&loki_records(&loki), &all, "Loki after the first sync");
    let written = es.stats().written;

    std::fs::remove_dir_all(dir.join("state")).unwrap();
    let again = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(0);
    assert_exactly_once(&es_records(&es), &all, "Elasticsearch after a lost state");
    assert_exactly_once(&loki_records(&loki), &all, "Loki after a lost state");
    assert_eq!(es.stats().written, written, "a document was written twice");
    assert_eq!(es.stats().conflicts, all.len() as u64, "{}", again.stderr);
    assert_eq!(loki.entries().len(), all.len());
    assert!(loki.duplicates() > 0, "no exact re-send was dropped");
    if loki.rejected() > 0 {
        assert!(again.stderr.contains("out_of_order"), "{}", again.stderr);
    }
}

// A destination down for a whole run (connections refused) fails that sink once, within
// its retry bounds, and leaves the other sinks untouched; the next run delivers its
// backlog once and nothing more to the others.
#[test]
fn a_sink_down_for_a_whole_run_catches_up_next_run_and_spares_the_others() {
    let dir = Dir::new("network-down");
    let sim = sim_with(3, 300, 29);
    let services = sim.service_ids();
    let es = ElasticsearchDouble::start().unwrap();
    let loki = loki_double();
    loki.set_down(true).unwrap();
    let mut loki_config = loki_keys(&loki.base_url());
    loki_config.push(("retry.max_attempts", "3".to_owned()));
    let config = ConfigText::for_sim(&sim)
        .file_sink("archive", FILE)
        .sink("search", "elasticsearch", &es_keys(&es.base_url()))
        .sink("loki", "loki", &loki_config);
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();

    let down = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(1);
    down.assert_no_panic();
    let failed: Vec<&str> = down
        .stderr
        .lines()
        .filter(|l| l.starts_with("sink ") && l.contains("FAILED"))
        .collect();
    assert_eq!(failed.len(), 1, "{}", down.stderr);
    assert!(
        failed[0].starts_with("sink loki (loki)") && failed[0].contains("3 attempt"),
        "{}",
        failed[0]
    );
    let all = truth(&sim, &services);
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &all,
        "file while Loki is down",
    );
    assert_exactly_once(&es_records(&es), &all, "Elasticsearch while Loki is down");

    loki.set_down(false).unwrap();
    let file_before = dir.read_bytes(FILE);
    let es_written = es.stats().written;
    let back = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(0);
    assert_exactly_once(&loki_records(&loki), &all, "Loki after it came back");
    assert_eq!(dir.read_bytes(FILE), file_before, "{}", back.stderr);
    assert_eq!(es.stats().written, es_written);
}

// Batches span services: 40 services of 10 events reach Loki and Elasticsearch in a
// handful of requests, not one (or more) per service.
#[test]
fn forty_small_services_cost_a_handful_of_requests() {
    let dir = Dir::new("network-forty");
    let sim = sim_with(40, 10, 31);
    let services = sim.service_ids();
    let es = ElasticsearchDouble::start().unwrap();
    let loki = loki_double();
    // A batch timer far longer than the run: batches are sealed when full or when the
    // pull is done, never by the clock, so the count does not depend on the machine's
    // speed (and the sync must not wait for the timer at its end).
    let long_timer = |keys: Vec<(&'static str, String)>| -> Vec<(&'static str, String)> {
        keys.into_iter()
            .map(|(k, v)| {
                if k == "batch.timeout" {
                    (k, toml_str("1h"))
                } else {
                    (k, v)
                }
            })
            .collect()
    };
    let config = ConfigText::for_sim(&sim)
        .runner_key("concurrency", "8")
        .sink(
            "search",
            "elasticsearch",
            &long_timer(es_keys(&es.base_url())),
        )
        .sink("loki", "loki", &long_timer(loki_keys(&loki.base_url())));
    let config_path = dir.write_config(&config);
    let output = dir
        .command(&["sync", "--config", config_path.to_str().unwrap()])
        .expect_code(0);
    let all = truth(&sim, &services);
    assert_exactly_once(&es_records(&es), &all, "Elasticsearch");
    assert_exactly_once(&loki_records(&loki), &all, "Loki");
    // One request per service page would be 40 each. A batch is sealed when every running
    // service job waits on it, so with `concurrency = 8` it is about one per wave of 8
    // services (5); on a loaded machine jobs start out of step and a wave can split, so
    // the bound is a quarter of the per-service count, not the ideal.
    assert!(
        es.bulk_requests() <= 10 && loki.pushes() <= 10,
        "{} bulk requests and {} pushes for 40 services:\n{}",
        es.bulk_requests(),
        loki.pushes(),
        output.stderr
    );
    let per_service: BTreeMap<String, u64> =
        keys_of(&es_records(&es))
            .into_iter()
            .fold(BTreeMap::new(), |mut m, (service, ..)| {
                *m.entry(service).or_default() += 1;
                m
            });
    assert_eq!(per_service.len(), 40);
}
