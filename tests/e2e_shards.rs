//! End-to-end tests of shards (`[runner] shard = "K/N"`, `--shard K/N`): N runners, each
//! with its own state file, split the services between them so that together they deliver
//! every event once; a state file holds one shard's positions and refuses any other (exit 2,
//! nothing touched); `state reset --shard` gives a file to another shard; discovered
//! services are split the same way; bad values are refused with the key or the flag named.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::Value;
use simulator::{SimConfig, SimEvent, SimHandle};
use std::collections::BTreeSet;
use support::{
    ConfigText, Dir, RunOutput, assert_exactly_once, read_jsonl, start_sim, state_json, toml_str,
    truth,
};

const SHARDS: usize = 3;

/// A simulator with `services` synthetic services of a few events each.
fn sim_with(services: usize) -> SimHandle {
    start_sim(SimConfig {
        services,
        events_per_service: 12,
        ..SimConfig::default()
    })
}

/// One config for every shard: the shard, its state file and its output file come from
/// `${SHARD_INDEX}`, as the README shows for a StatefulSet.
fn sharded_config(sim: &SimHandle) -> ConfigText {
    ConfigText::for_sim(sim)
        .state_path("state/shard-${SHARD_INDEX}.db")
        .runner_key("shard", &toml_str("${SHARD_INDEX}/3"))
        .file_sink("archive", "out/shard-${SHARD_INDEX}.jsonl")
}

fn out_of(dir: &Dir, shard: usize) -> Vec<Value> {
    read_jsonl(&dir.join(&format!("out/shard-{shard}.jsonl")))
}

fn services_in(records: &[Value]) -> BTreeSet<String> {
    records
        .iter()
        .map(|r| r["service_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The union of what the shards wrote, each shard's services, and the check that no service
/// went to two shards and every shard got some.
fn split(dir: &Dir, every: &[String]) -> (Vec<Value>, Vec<BTreeSet<String>>) {
    let mut union = Vec::new();
    let mut owned: Vec<BTreeSet<String>> = Vec::new();
    for shard in 0..SHARDS {
        let records = out_of(dir, shard);
        let services = services_in(&records);
        assert!(
            !services.is_empty(),
            "shard {shard} got no service of {}",
            every.len()
        );
        for (other, theirs) in owned.iter().enumerate() {
            assert!(
                services.is_disjoint(theirs),
                "shards {other} and {shard} share {:?}",
                services.intersection(theirs).collect::<Vec<_>>()
            );
        }
        owned.push(services);
        union.extend(records);
    }
    (union, owned)
}

/// `runner state --json` of one shard of a [`sharded_config`].
fn state_of(dir: &Dir, config: &str, shard: usize) -> Value {
    let output = dir
        .command(&["state", "--config", config, "--json"])
        .env("SHARD_INDEX", &shard.to_string())
        .run();
    output.assert_code(0);
    serde_json::from_str(output.stdout.trim()).unwrap()
}

fn sync_shard(dir: &Dir, config: &str, shard: usize) -> RunOutput {
    dir.command(&["sync", "--config", config])
        .env("SHARD_INDEX", &shard.to_string())
        .run()
}

// 1. Three shards of one config, started at once, each with its own state and output file:
//    together every event of 30 services exactly once, every shard some; a second sync of
//    each adds nothing; each state records its shard.
#[test]
fn three_shards_deliver_every_event_of_thirty_services_exactly_once() {
    let dir = Dir::new("shards-thirty");
    let sim = sim_with(30);
    let every = sim.service_ids();
    assert_eq!(every.len(), 30);
    let config = dir.write_config(&sharded_config(&sim));
    let config = config.to_str().unwrap();

    let running: Vec<_> = (0..SHARDS)
        .map(|shard| {
            dir.command(&["sync", "--config", config])
                .env("SHARD_INDEX", &shard.to_string())
                .spawn()
        })
        .collect();
    for (shard, run) in running.into_iter().enumerate() {
        let output = run.wait();
        output.assert_code(0);
        let followed = output.summaries().len();
        assert!(
            followed > 0 && followed < every.len(),
            "shard {shard} synced {followed} services:\n{}",
            output.stderr
        );
    }
    let (union, owned) = split(&dir, &every);
    assert_exactly_once(&union, &truth(&sim, &every), "the three shards together");
    let covered: BTreeSet<&String> = owned.iter().flatten().collect();
    assert_eq!(covered.len(), every.len(), "every service has a shard");

    let sizes: Vec<u64> = (0..SHARDS)
        .map(|shard| dir.read_bytes(&format!("out/shard-{shard}.jsonl")).len() as u64)
        .collect();
    for (shard, services) in owned.iter().enumerate() {
        let output = sync_shard(&dir, config, shard);
        output.assert_code(0);
        let summaries = output.summaries();
        assert!(
            summaries.iter().all(|s| s.new == 0),
            "shard {shard}'s second sync:\n{}",
            output.stderr
        );
        let synced: BTreeSet<String> = summaries.into_iter().map(|s| s.service_id).collect();
        assert!(
            synced.is_subset(services),
            "shard {shard} synced {synced:?}, not only its {services:?}"
        );
        let state = state_of(&dir, config, shard);
        assert_eq!(state["shard"], format!("{shard}/3"), "{state}");
        let positions: BTreeSet<&str> = state["positions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["service_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            positions,
            services.iter().map(String::as_str).collect(),
            "shard {shard} keeps positions of its services only"
        );
    }
    let after: Vec<u64> = (0..SHARDS)
        .map(|shard| dir.read_bytes(&format!("out/shard-{shard}.jsonl")).len() as u64)
        .collect();
    assert_eq!(after, sizes, "a second sync adds nothing");

    // `services` says the same split: each service followed by exactly one shard.
    for (shard, services) in owned.iter().enumerate() {
        let output = dir
            .command(&[
                "services",
                "--config",
                config,
                "--shard",
                &format!("{shard}/3"),
            ])
            .env("SHARD_INDEX", "0")
            .run();
        output.assert_code(0);
        for id in &every {
            let line = output
                .stdout
                .lines()
                .find(|l| l.contains(id.as_str()))
                .unwrap_or_else(|| panic!("{id} not listed:\n{}", output.stdout));
            if services.contains(id) {
                assert!(
                    line.contains("followed: listed in `services`")
                        && line.contains(&format!("shard {shard}/3")),
                    "{line}"
                );
            } else {
                assert!(line.contains("not followed: shard "), "{line}");
                assert!(!line.contains(&format!("shard {shard}/3's")), "{line}");
            }
        }
    }
}

// 2. A state file holds one shard's positions: `sync`, `run` and `--dry-run` as another
//    shard (another K, another N, or unsharded) exit 2 with a message saying how to reshard,
//    and the state and the output are left as they were. `--shard` replaces the key.
#[test]
fn a_state_of_another_shard_is_refused_and_left_unchanged() {
    let dir = Dir::new("shards-refused");
    let sim = sim_with(9);
    let config = ConfigText::for_sim(&sim).file_sink("archive", "out/events.jsonl");
    let path = dir.write_config(&config);
    let path = path.to_str().unwrap();

    dir.command(&["sync", "--config", path, "--shard", "1/3"])
        .run()
        .assert_code(0);
    let state = state_json(&dir, path);
    assert_eq!(state["shard"], "1/3");
    let written = dir.read_bytes("out/events.jsonl");
    assert!(!written.is_empty());

    for (args, wanted) in [
        (vec!["sync", "--shard", "2/3"], "2/3"),
        (vec!["sync", "--shard", "1/4"], "1/4"),
        (vec!["sync"], "0/1"),
        (vec!["run", "--shard", "0/3"], "0/3"),
        (vec!["sync", "--dry-run", "--shard", "2/3"], "2/3"),
    ] {
        let mut full = args.clone();
        full.extend(["--config", path]);
        let output = dir.command(&full).run();
        output.assert_code(2);
        assert!(
            output.stderr.contains("belongs to shard 1/3")
                && output
                    .stderr
                    .contains(&format!("this runner is shard {wanted}"))
                && output.stderr.contains("Resharding")
                && output.stderr.contains("state reset --shard"),
            "{args:?}:\n{}",
            output.stderr
        );
        assert!(
            output.stdout.is_empty(),
            "{args:?} printed {}",
            output.stdout
        );
        assert_eq!(state_json(&dir, path), state, "{args:?} changed the state");
        assert_eq!(dir.read_bytes("out/events.jsonl"), written, "{args:?}");
    }

    let output = dir
        .command(&["validate", "--check", "--config", path, "--shard", "2/3"])
        .run();
    output.assert_code(1);
    assert!(
        output.stderr.contains("state: FAILED: ") && output.stderr.contains("belongs to shard 1/3"),
        "{}",
        output.stderr
    );
    dir.command(&["validate", "--check", "--config", path, "--shard", "1/3"])
        .run()
        .assert_code(0);

    // The key says 2/3 and --shard 1/3 wins: the file's own shard, nothing new.
    let keyed = dir.write(
        "keyed.toml",
        &config
            .clone()
            .runner_key("shard", &toml_str("2/3"))
            .render(),
    );
    let keyed = keyed.to_str().unwrap();
    dir.command(&["sync", "--config", keyed])
        .run()
        .assert_code(2);
    let output = dir
        .command(&["sync", "--config", keyed, "--shard", "1/3"])
        .run();
    output.assert_code(0);
    assert!(
        output.summaries().iter().all(|s| s.new == 0),
        "{}",
        output.stderr
    );
    assert_eq!(dir.read_bytes("out/events.jsonl"), written);
}

// 2b. Two shards pointed at one state file at once: one of them syncs, the other is refused
//     by the lock (exit 3) or, if it comes second, by the shard the state now records (exit
//     2). The state holds the winner's shard.
#[test]
fn two_shards_on_one_state_file_never_both_run() {
    let dir = Dir::new("shards-one-file");
    let sim = sim_with(9);
    let config = ConfigText::for_sim(&sim).stdout_sink("console");
    let path = dir.write_config(&config);
    let path = path.to_str().unwrap();
    let running: Vec<_> = ["0/2", "1/2"]
        .iter()
        .map(|shard| {
            dir.command(&["sync", "--config", path, "--shard", shard])
                .spawn()
        })
        .collect();
    let codes: Vec<Option<i32>> = running.into_iter().map(|r| r.wait().code()).collect();
    let winner = match codes[..] {
        [Some(0), Some(2 | 3)] => "0/2",
        [Some(2 | 3), Some(0)] => "1/2",
        _ => panic!("exit codes {codes:?}: exactly one shard may sync"),
    };
    assert_eq!(state_json(&dir, path)["shard"], winner);
}

// 3. An unsharded state (written without any shard) is shard 0/1: opening it as 1/3 is
//    refused, saying so. `state reset --shard 1/3` forgets its positions and gives it to
//    shard 1/3, whose next sync delivers its own services, and nothing of the others again.
#[test]
fn an_unsharded_state_is_refused_to_a_shard_until_reset_for_it() {
    let dir = Dir::new("shards-reshard");
    let sim = sim_with(9);
    let every = sim.service_ids();
    // Two services only, so that some of the 3-shard split is new to the file.
    let first: Vec<String> = every[..2].to_vec();
    let config = ConfigText::for_sim(&sim)
        .source_key("services", &support::toml_list(&first))
        .file_sink("archive", "out/events.jsonl");
    let path = dir.write_config(&config);
    let path = path.to_str().unwrap();
    dir.command(&["sync", "--config", path])
        .run()
        .assert_code(0);
    assert_eq!(state_json(&dir, path)["shard"], "0/1");
    let before = read_jsonl(&dir.join("out/events.jsonl"));
    assert_exactly_once(&before, &truth(&sim, &first), "unsharded");

    let all = dir.write(
        "all.toml",
        &ConfigText::for_sim(&sim)
            .file_sink("archive", "out/events.jsonl")
            .render(),
    );
    let all = all.to_str().unwrap();
    let output = dir
        .command(&["sync", "--config", all, "--shard", "1/3"])
        .run();
    output.assert_code(2);
    assert!(
        output
            .stderr
            .contains("belongs to shard 0/1 (unsharded), but this runner is shard 1/3"),
        "{}",
        output.stderr
    );

    // A filtered reset keeps the file's shard, so it is refused as well.
    let output = dir
        .command(&[
            "state", "reset", "--config", all, "--shard", "1/3", "--sink", "archive", "--yes",
        ])
        .run();
    output.assert_code(2);
    assert_eq!(state_json(&dir, path)["shard"], "0/1");

    dir.command(&["state", "reset", "--config", all, "--shard", "1/3", "--yes"])
        .run()
        .assert_code(0);
    assert_eq!(state_json(&dir, all)["shard"], "1/3");
    let output = dir
        .command(&["sync", "--config", all, "--shard", "1/3"])
        .run();
    output.assert_code(0);
    let synced: BTreeSet<String> = output
        .summaries()
        .into_iter()
        .map(|s| s.service_id)
        .collect();
    assert!(
        !synced.is_empty() && synced.len() < every.len(),
        "{synced:?}"
    );
    let records = read_jsonl(&dir.join("out/events.jsonl"));
    let new: Vec<Value> = records[before.len()..].to_vec();
    assert_eq!(records[..before.len()], before[..], "the old lines stay");
    let fresh: Vec<String> = synced
        .iter()
        .filter(|s| !first.contains(s))
        .cloned()
        .collect();
    let new_of_fresh: Vec<Value> = new
        .iter()
        .filter(|r| fresh.iter().any(|s| r["service_id"] == s.as_str()))
        .cloned()
        .collect();
    assert_exactly_once(
        &new_of_fresh,
        &truth(&sim, &fresh),
        "shard 1/3's new services",
    );
    assert!(
        new.iter()
            .all(|r| synced.contains(r["service_id"].as_str().unwrap())),
        "only shard 1/3's services were delivered"
    );
}

/// A simulator with no synthetic services and `names` added, each with a few events.
fn sim_named(names: &[String]) -> SimHandle {
    let sim = start_sim(SimConfig {
        services: 0,
        ..SimConfig::default()
    });
    for name in names {
        add_named(&sim, name);
    }
    sim
}

fn add_named(sim: &SimHandle, name: &str) {
    let id = format!("{name}-0000-4000-8000-000000000000");
    sim.add_service(&id, name);
    let events = (0..5)
        .map(|n| SimEvent::new(1_700_000_000_000 + n, "normal", &format!("{name} {n}")))
        .collect();
    sim.add_events(&id, events);
}

// 4. Discovery with shards: the services `discover` finds are split like listed ones; each
//    is followed by one shard, every shard gets some, and a service added later is picked
//    up by exactly one shard.
#[test]
fn discovered_services_are_split_between_the_shards() {
    let dir = Dir::new("shards-discover");
    let names: Vec<String> = (0..15).map(|n| format!("prod{n:02}")).collect();
    let sim = sim_named(&names);
    let config = sharded_config(&sim)
        .remove_source_key("services")
        .source_key("discover", "{ name = \"prod*\" }");
    let config = dir.write_config(&config);
    let config = config.to_str().unwrap();
    for shard in 0..SHARDS {
        sync_shard(&dir, config, shard).assert_code(0);
    }
    let every = sim.service_ids();
    let (union, owned) = split(&dir, &every);
    assert_exactly_once(&union, &truth(&sim, &every), "discovered, three shards");

    // Another shard's discovered service cannot be selected here, and `services` says whose
    // it is.
    let theirs = owned[0].iter().next().unwrap();
    let output = dir
        .command(&["sync", "--config", config, "--service", theirs])
        .env("SHARD_INDEX", "1")
        .run();
    output.assert_code(2);
    assert!(
        output.stderr.contains(&format!("--service {theirs}"))
            && output.stderr.contains("as shard 1/3"),
        "{}",
        output.stderr
    );
    let output = dir
        .command(&["services", "--config", config])
        .env("SHARD_INDEX", "1")
        .run();
    output.assert_code(0);
    let line = output
        .stdout
        .lines()
        .find(|l| l.contains(theirs.as_str()))
        .unwrap();
    assert!(
        line.contains("not followed: shard 0/3's (matches discover"),
        "{line}"
    );
    for mine in &owned[1] {
        let line = output
            .stdout
            .lines()
            .find(|l| l.contains(mine.as_str()))
            .unwrap();
        assert!(
            line.contains("followed: matches discover") && line.contains("; shard 1/3"),
            "{line}"
        );
    }

    let more: Vec<String> = (15..21).map(|n| format!("prod{n:02}")).collect();
    for name in &more {
        add_named(&sim, name);
    }
    for shard in 0..SHARDS {
        sync_shard(&dir, config, shard).assert_code(0);
    }
    let every = sim.service_ids();
    assert_eq!(every.len(), 21);
    let (union, after) = split(&dir, &every);
    assert_exactly_once(&union, &truth(&sim, &every), "new services, three shards");
    for (before, after) in owned.iter().zip(&after) {
        assert!(before.is_subset(after), "a shard kept its services");
    }
}

// 5. Bad shards are usage or config errors (exit 2) that name the flag or the key and its
//    line, before any state is created; a `--service` of another shard names its shard.
#[test]
fn bad_shards_and_another_shard_s_service_are_refused() {
    let dir = Dir::new("shards-bad");
    let sim = sim_with(6);
    let config = ConfigText::for_sim(&sim).file_sink("archive", "out/events.jsonl");
    let path = dir.write_config(&config);
    let path = path.to_str().unwrap();
    for (bad, why) in [
        ("3/3", "K must be below N (the shards of 3 are 0/3 to 2/3)"),
        ("a/b", "must be \"K/N\""),
        ("0/0", "N must be at least 1"),
        ("1", "must be \"K/N\""),
    ] {
        let output = dir
            .command(&["sync", "--config", path, "--shard", bad])
            .run();
        output.assert_code(2);
        assert!(
            output.stderr.contains("--shard") && output.stderr.contains(why),
            "{bad}: {}",
            output.stderr
        );
        let keyed = dir.write(
            "bad-shard.toml",
            &config.clone().runner_key("shard", &toml_str(bad)).render(),
        );
        let output = dir
            .command(&["sync", "--config", keyed.to_str().unwrap()])
            .run();
        output.assert_code(2);
        let text = std::fs::read_to_string(&keyed).unwrap();
        let line = text.lines().position(|l| l.starts_with("shard =")).unwrap() + 1;
        assert!(
            output.stderr.contains(&format!(":{line}: runner.shard: "))
                && output.stderr.contains(why),
            "{bad}: {}",
            output.stderr
        );
    }
    assert!(!dir.exists("state"), "nothing was created");

    let every = sim.service_ids();
    let output = dir
        .command(&[
            "sync",
            "--config",
            path,
            "--shard",
            "0/2",
            "--service",
            &every[0],
        ])
        .run();
    let output = if output.code() == Some(0) {
        dir.command(&[
            "sync",
            "--config",
            path,
            "--shard",
            "1/2",
            "--service",
            &every[0],
        ])
        .run()
    } else {
        output
    };
    output.assert_code(2);
    assert!(
        output.stderr.contains(&format!("--service {}", every[0]))
            && output.stderr.contains("belongs to shard"),
        "{}",
        output.stderr
    );
}

// 6. `run` as three shards at once: each says its shard when it starts, the polls together
//    deliver every event once, and each stops with 0 on SIGTERM.
#[test]
fn three_running_shards_deliver_every_event_once() {
    let dir = Dir::new("shards-run");
    let sim = sim_with(12);
    let every = sim.service_ids();
    let expected = truth(&sim, &every);
    let config = sharded_config(&sim)
        .runner_key("interval", &toml_str("200ms"))
        .runner_key("shutdown_timeout", &toml_str("10s"));
    let config = dir.write_config(&config);
    let config = config.to_str().unwrap();
    let running: Vec<_> = (0..SHARDS)
        .map(|shard| {
            dir.command(&["run", "--config", config])
                .env("SHARD_INDEX", &shard.to_string())
                .spawn()
        })
        .collect();
    let delivered = || -> usize { (0..SHARDS).map(|shard| out_of(&dir, shard).len()).sum() };
    support::wait_until("the shards delivered every event", || {
        delivered() >= expected.len()
    });
    for (shard, run) in running.into_iter().enumerate() {
        run.signal(libc::SIGTERM);
        let output = run.wait();
        output.assert_code(0);
        output.assert_no_panic();
        let start = output.stderr.lines().next().unwrap_or_default();
        assert!(
            start.contains(&format!(", shard {shard}/3")),
            "shard {shard} starts with: {start}"
        );
    }
    let (union, _) = split(&dir, &every);
    assert_exactly_once(&union, &expected, "three running shards");
}
