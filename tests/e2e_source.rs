//! End-to-end tests of the source side under a hostile environment: a clock that events
//! run ahead of, `occur_time`s outside the calendar, servers that ignore `offset` or lie in
//! `total_count`, signals during retries and waits, absurd rates, and selections that name
//! nothing. Each test runs the real `runner` binary against the in-process simulator.

#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use simulator::{Behaviour, Fault, FaultRule, OffsetMode, SimConfig, SimEvent, SimHandle, Spread};
use std::io::Read;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use support::{
    ConfigText, Dir, EventKey, assert_exactly_once, delivered_to, keys_of, read_jsonl, start_sim,
    state_json, toml_str, truth, wait_until,
};

const FILE: &str = "out/events.jsonl";
/// The first millisecond of the year 10000, which RFC 3339 cannot write.
const YEAR_10000: i64 = 253_402_300_800_000;
/// 3000-01-01T00:00:00Z.
const YEAR_3000: i64 = 32_503_680_000_000;
const MINUTE: i64 = 60_000;

/// A simulator whose services hold `events_per_service` events one second apart, the newest
/// `age_ms` before now.
fn sim_ending(services: usize, events_per_service: usize, age_ms: i64, seed: u64) -> SimHandle {
    start_sim(SimConfig {
        services,
        events_per_service,
        seed,
        end_at_ms: Some(record::now_ms() - age_ms),
        spread: Spread::Uniform { step_ms: 1_000 },
        ..SimConfig::default()
    })
}

// 1. An event dated ahead of the clock is delivered once, but no position passes the clock
//    plus `max_clock_skew`, so later events are still delivered: an hour ahead on one service,
//    the year 3000 on another.
#[test]
fn an_event_dated_in_the_future_does_not_stop_delivery() {
    let dir = Dir::new("future");
    let sim = sim_ending(2, 20, 10 * MINUTE, 1001);
    let services = sim.service_ids();
    let hour_ahead = record::now_ms() + 60 * MINUTE;
    sim.add_events(
        &services[0],
        vec![SimEvent::new(hour_ahead, "normal", "dated an hour ahead")],
    );
    sim.add_events(
        &services[1],
        vec![SimEvent::new(
            YEAR_3000,
            "abnormal",
            "dated in the year 3000",
        )],
    );
    let config = ConfigText::for_sim(&sim).file_sink("archive", FILE);
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();

    let first = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(0);
    let limit = record::now_ms() + 5 * MINUTE;
    let after_first = state_json(&dir, config_arg);

    // Later events, dated now, are delivered; the future ones are not delivered again.
    let now = record::now_ms();
    for service in &services {
        sim.add_events(service, vec![SimEvent::new(now, "normal", "dated now")]);
    }
    let second = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(0);
    assert_eq!(
        delivered_to(&second.summaries(), "archive"),
        2,
        "{}",
        second.stderr
    );
    let third = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(0);
    assert_eq!(
        delivered_to(&third.summaries(), "archive"),
        0,
        "{}",
        third.stderr
    );

    for (service, time) in [(&services[0], hour_ahead), (&services[1], YEAR_3000)] {
        let stamp = record::timestamp_rfc3339(time);
        assert!(
            first.stderr.lines().any(|line| line.contains("WARN")
                && line.contains(service.as_str())
                && line.contains(&stamp)),
            "no warning names {service} and {stamp}:\n{}",
            first.stderr
        );
    }
    for position in after_first["positions"].as_array().unwrap() {
        let at = position["position"].as_i64().unwrap();
        assert!(
            at <= limit,
            "a position passed the clock plus max_clock_skew: {position}"
        );
    }
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &truth(&sim, &services),
        "file after three syncs",
    );
}

// 2. `occur_time`s outside the years 1970..=9999 (the year 10000, i64::MAX, before 1970) are
//    malformed rows: counted, logged with their raw JSON, skipped; the rest of their page is
//    delivered, nothing panics, and the next run does the same.
#[test]
fn occur_times_outside_the_calendar_are_malformed_rows() {
    let dir = Dir::new("calendar");
    let sim = sim_ending(1, 10, 60 * MINUTE, 1002);
    let services = sim.service_ids();
    let service = &services[0];
    let odd = [
        (YEAR_10000, "dated in the year 10000"),
        (i64::MAX, "dated at i64::MAX"),
        (-5, "dated before 1970"),
    ];
    sim.add_events(
        service,
        odd.iter()
            .map(|(time, info)| {
                SimEvent::raw(
                    *time,
                    json!({"occur_time": time, "event_type": "normal", "event_info": info}),
                )
            })
            .collect(),
    );
    let config = ConfigText::for_sim(&sim).file_sink("archive", FILE);
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();

    let output = dir.command(&["sync", "--config", config_arg]).run();
    output.assert_no_panic();
    output.assert_code(0);
    let summaries = output.summaries();
    assert_eq!(summaries.len(), 1, "{}", output.stderr);
    assert_eq!(summaries[0].malformed, 3, "{}", output.stderr);
    for (_, info) in odd {
        assert!(
            output.stderr.contains(info),
            "the raw row {info:?} is not logged:\n{}",
            output.stderr
        );
    }
    let expected: Vec<EventKey> = truth(&sim, &services)
        .into_iter()
        .filter(|(_, time, _, _)| (0..YEAR_10000).contains(time))
        .collect();
    assert_eq!(expected.len(), 10);
    assert_exactly_once(&read_jsonl(&dir.join(FILE)), &expected, "file");

    let again = dir.command(&["sync", "--config", config_arg]).run();
    again.assert_no_panic();
    again.assert_code(0);
    assert_eq!(delivered_to(&again.summaries(), "archive"), 0);
}

/// Asserts that every record of `records` is one of `truth`'s events, none twice.
fn assert_no_invented_events(records: &[Value], truth: &[EventKey], what: &str) {
    let mut left = truth.to_vec();
    for key in keys_of(records) {
        let Some(index) = left.iter().position(|k| *k == key) else {
            panic!("{what}: {key:?} is invented or delivered twice");
        };
        left.swap_remove(index);
    }
}

// 3a. A server that ignores `offset`, with 30 events in one millisecond and 10 served per
//     page: the service fails loudly (exit 1, the reason named) and nothing of that
//     millisecond is delivered, rather than its first 10 events three times under different
//     ids and the other 20 never.
#[test]
fn a_server_that_ignores_offset_fails_the_service_and_invents_nothing() {
    let dir = Dir::new("offset-ignored");
    let sim = sim_ending(1, 0, 0, 1003);
    let services = sim.service_ids();
    let service = &services[0];
    let base = record::now_ms() - 30 * MINUTE;
    let crowded = base + 10;
    let mut events: Vec<SimEvent> = (0..5)
        .map(|n| SimEvent::new(base + n, "normal", &format!("before {n}")))
        .collect();
    events.extend((0..30).map(|n| SimEvent::new(crowded, "normal", &format!("crowded {n}"))));
    events.extend((0..5).map(|n| SimEvent::new(crowded + 1 + n, "normal", &format!("after {n}"))));
    sim.add_events(service, events);
    sim.set_behaviour(Behaviour {
        offset_mode: OffsetMode::Ignored,
        max_page_size: Some(10),
        ..Behaviour::default()
    });
    let config = ConfigText::for_sim(&sim).file_sink("archive", FILE);
    let config_path = dir.write_config(&config);
    let output = dir
        .command(&["sync", "--config", config_path.to_str().unwrap()])
        .run();
    output.assert_no_panic();
    output.assert_code(1);
    let summaries = output.summaries();
    assert_eq!(summaries[0].failed, 1, "{}", output.stderr);
    assert!(
        output.stderr.contains("ignores `offset`"),
        "the reason is not named:\n{}",
        output.stderr
    );
    let file = read_jsonl(&dir.join(FILE));
    assert_no_invented_events(&file, &truth(&sim, &services), "file");
    assert!(
        file.iter().all(|r| r["occur_time"] != json!(crowded)),
        "events of the millisecond the server cannot page were delivered"
    );
}

// 3b. A server that claims 10^20 events and serves the same row at every offset: the
//     service fails after a handful of requests, instead of inventing twins until killed.
#[test]
fn a_server_that_lies_in_total_count_fails_within_a_few_requests() {
    let dir = Dir::new("total-count-lie");
    let sim = sim_ending(1, 3, 30 * MINUTE, 1004);
    let services = sim.service_ids();
    sim.set_behaviour(Behaviour {
        offset_mode: OffsetMode::Ignored,
        claimed_total_count: Some(100_000_000_000_000_000_000),
        ..Behaviour::default()
    });
    let config = ConfigText::for_sim(&sim).file_sink("archive", FILE);
    let config_path = dir.write_config(&config);
    let output = dir
        .command(&["sync", "--config", config_path.to_str().unwrap()])
        .spawn()
        .wait();
    output.assert_no_panic();
    output.assert_code(1);
    assert!(
        sim.request_count() <= 10,
        "{} requests for 3 events",
        sim.request_count()
    );
    assert_no_invented_events(
        &read_jsonl(&dir.join(FILE)),
        &truth(&sim, &services),
        "file",
    );
}

/// A sync that is stuck in a retry backoff of 30 s, with one of two services delivered, gets
/// `signal`: it exits with `code` within `shutdown_timeout`, what it delivered committed, and
/// the next sync delivers the rest exactly once.
fn signal_during_backoff(name: &str, signal: i32, code: i32) {
    let dir = Dir::new(name);
    let sim = sim_ending(2, 20, 30 * MINUTE, 1005);
    let services = sim.service_ids();
    // Authentication and one service's only page are answered; every later request is 503.
    sim.set_faults(vec![FaultRule::at_each(
        Fault::Unavailable,
        (3..=100_000).collect(),
    )]);
    let config = ConfigText::for_sim(&sim)
        .source_key("retry_initial_backoff", &toml_str("30s"))
        .source_key("retry_max_backoff", &toml_str("30s"))
        .runner_key("concurrency", "1")
        .runner_key("shutdown_timeout", &toml_str("5s"))
        .file_sink("archive", FILE);
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();
    let running = dir.command(&["sync", "--config", config_arg]).spawn();
    wait_until("a request is waiting for its retry", || {
        running
            .stderr_so_far()
            .contains("Request failed; retrying.")
    });
    wait_until("one service was delivered", || {
        read_jsonl(&dir.join(FILE)).len() == 20
    });
    running.signal(signal);
    let output = running.wait();
    output.assert_no_panic();
    output.assert_code(code);

    sim.set_faults(Vec::new());
    let rest = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(0);
    assert_eq!(
        delivered_to(&rest.summaries(), "archive"),
        20,
        "{}",
        rest.stderr
    );
    assert_exactly_once(
        &read_jsonl(&dir.join(FILE)),
        &truth(&sim, &services),
        "file after the interrupted sync and the next one",
    );
}

// 4a. SIGTERM during a retry backoff: exit 143 within shutdown_timeout, not after the retries.
#[test]
fn sigterm_during_a_retry_backoff_exits_143() {
    signal_during_backoff("backoff-sigterm", libc::SIGTERM, 143);
}

// 4b. SIGINT during a retry backoff: exit 130.
#[test]
fn sigint_during_a_retry_backoff_exits_130() {
    signal_during_backoff("backoff-sigint", libc::SIGINT, 130);
}

// 4c. The other waits end at shutdown too: the authentication's retry backoff, the rate
//     limiter (0.01 requests per second: 100 s to the next request) and a request the server
//     holds for ten minutes.
#[test]
fn every_wait_ends_at_shutdown() {
    type Setup = fn(&SimHandle, ConfigText) -> ConfigText;
    let cases: [(&str, Setup); 3] = [
        ("auth-backoff", |sim, config| {
            sim.set_faults(vec![FaultRule::every(Fault::Unavailable, 1)]);
            config
                .source_key("retry_initial_backoff", &toml_str("30s"))
                .source_key("retry_max_backoff", &toml_str("30s"))
        }),
        ("rate-limiter", |_, config| {
            config.source_key("max_requests_per_second", "0.01")
        }),
        ("held-request", |sim, config| {
            sim.set_behaviour(Behaviour {
                latency: std::time::Duration::from_secs(600),
                ..Behaviour::default()
            });
            config.source_key("request_timeout", &toml_str("10m"))
        }),
    ];
    for (name, setup) in cases {
        let dir = Dir::new(name);
        let sim = sim_ending(1, 20, 30 * MINUTE, 1006);
        let config = setup(
            &sim,
            ConfigText::for_sim(&sim)
                .runner_key("shutdown_timeout", &toml_str("5s"))
                .file_sink("archive", FILE),
        );
        let config_path = dir.write_config(&config);
        let running = dir
            .command(&["sync", "--config", config_path.to_str().unwrap()])
            .spawn();
        wait_until("the first request arrived", || sim.request_count() >= 1);
        running.signal(libc::SIGTERM);
        let output = running.wait();
        output.assert_no_panic();
        assert_eq!(output.code(), Some(143), "{name}: {}", output.stderr);
    }
}

/// A TCP listener that takes connections and reads what is sent, but never answers: an
/// Elasticsearch that hangs. The flag turns true once a request arrived.
fn black_hole() -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let arrived = Arc::new(AtomicBool::new(false));
    let flag = arrived.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in listener.incoming().flatten() {
            let mut buffer = [0u8; 4096];
            if stream.read(&mut buffer).is_ok_and(|n| n > 0) {
                flag.store(true, Ordering::SeqCst);
            }
            held.push(stream);
        }
    });
    (url, arrived)
}

// 4d. A second signal exits at once, with the code of that signal, while the first one waits
//     for a batch in flight (an Elasticsearch that never answers, a long shutdown_timeout).
#[test]
fn a_second_signal_exits_at_once_with_its_own_code() {
    for (name, first, second, code) in [
        ("second-sigterm", libc::SIGINT, libc::SIGTERM, 143),
        ("second-sigint", libc::SIGTERM, libc::SIGINT, 130),
    ] {
        let dir = Dir::new(name);
        let sim = sim_ending(1, 20, 30 * MINUTE, 1007);
        let (url, arrived) = black_hole();
        let config = ConfigText::for_sim(&sim)
            .runner_key("shutdown_timeout", &toml_str("10m"))
            .sink(
                "es",
                "elasticsearch",
                &[
                    ("endpoint", toml_str(&url)),
                    ("request.timeout", toml_str("10m")),
                ],
            );
        let config_path = dir.write_config(&config);
        let running = dir
            .command(&["sync", "--config", config_path.to_str().unwrap()])
            .spawn();
        wait_until("a batch is in flight to the hanging sink", || {
            arrived.load(Ordering::SeqCst)
        });
        running.signal(first);
        wait_until("the first signal was seen", || {
            running.stderr_so_far().contains("Interrupted")
        });
        running.signal(second);
        let output = running.wait();
        output.assert_no_panic();
        assert_eq!(output.code(), Some(code), "{name}: {}", output.stderr);
    }
}

// 5. Rates that would turn throttling off (or make a run last for ever) are refused, and
//    the error says what is accepted.
#[test]
fn absurd_request_rates_are_refused() {
    let dir = Dir::new("rates");
    let sim = sim_ending(1, 5, 30 * MINUTE, 1008);
    for rate in ["1e-300", "0.001", "20000", "1e300"] {
        let config = ConfigText::for_sim(&sim)
            .source_key("max_requests_per_second", rate)
            .file_sink("archive", FILE);
        let path = dir.write_config(&config);
        let output = dir
            .command(&["validate", "--config", path.to_str().unwrap()])
            .run();
        assert_eq!(output.code(), Some(2), "{rate}: {}", output.stderr);
        assert!(
            output.stderr.contains("max_requests_per_second")
                && output.stderr.contains("0.01")
                && output.stderr.contains("10000"),
            "{rate}: {}",
            output.stderr
        );
    }
    for rate in ["0.01", "10000"] {
        let config = ConfigText::for_sim(&sim)
            .source_key("max_requests_per_second", rate)
            .file_sink("archive", FILE);
        let path = dir.write_config(&config);
        dir.command(&["validate", "--config", path.to_str().unwrap()])
            .expect_code(0);
    }
}

// 6a. `--service ID` that no source follows is a usage error (exit 2) naming the services
//     that are followed, also when a source discovers its services; nothing is touched.
#[test]
fn a_service_no_source_follows_is_a_usage_error_naming_the_followed_ones() {
    let dir = Dir::new("not-followed");
    let sim = sim_ending(2, 5, 30 * MINUTE, 1009);
    let services = sim.service_ids();
    let listed = ConfigText::for_sim(&sim).file_sink("archive", FILE);
    let discovering = listed
        .clone()
        .remove_source_key("services")
        .source_key("discover", "{}");
    for (name, config) in [("discover", discovering), ("listed", listed)] {
        let path = dir.write(&format!("{name}.toml"), &config.render());
        let output = dir
            .command(&[
                "sync",
                "--config",
                path.to_str().unwrap(),
                "--service",
                "nope",
            ])
            .run();
        assert_eq!(output.code(), Some(2), "{name}: {}", output.stderr);
        assert!(output.stderr.contains("nope"), "{name}: {}", output.stderr);
        for service in &services {
            assert!(
                output.stderr.contains(service.as_str()),
                "{name}: the followed service {service} is not named:\n{}",
                output.stderr
            );
        }
        assert!(!output.stderr.contains("-: FAILED"), "{}", output.stderr);
    }
    assert!(
        !dir.exists("state") && !dir.exists("out"),
        "a usage error touched the disk"
    );
}

// 6b. Two sources that read the same endpoint, project and service are warned about at load
//     time: each would deliver the same events under its own name.
#[test]
fn two_sources_reading_the_same_service_are_warned_about() {
    let dir = Dir::new("duplicate-sources");
    let sim = sim_ending(2, 5, 30 * MINUTE, 1010);
    let services = sim.service_ids();
    let config = ConfigText::for_sim(&sim)
        .with_source("copy", &sim, &services[1..])
        .file_sink("archive", FILE);
    let path = dir.write_config(&config);
    let output = dir
        .command(&["validate", "--config", path.to_str().unwrap()])
        .expect_code(0);
    let warning = output
        .stderr
        .lines()
        .find(|line| line.contains("WARN") && line.contains(services[1].as_str()))
        .unwrap_or_else(|| panic!("no warning names {}:\n{}", services[1], output.stderr));
    assert!(
        warning.contains("copy") && warning.contains("sim"),
        "{warning}"
    );
    assert!(
        !output.stderr.contains(services[0].as_str()),
        "a service only one source reads is warned about:\n{}",
        output.stderr
    );
}
