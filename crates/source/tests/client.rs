//! The client and the pull against the simulator over real HTTP: offset-unit
//! detection and fixed offset units (invariant 5), retry limits and errors
//! that are not retried (invariant 7), and bad or odd input (invariant 9).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::{Harness, SERVICE, check_exactly_once, number};
use serde_json::json;
use simulator::{Behaviour, Fault, FaultRule, OffsetMode, RequestLog, SimEvent};
use source::{
    AuthSettings, ModelArtsClient, OffsetUnit, PullOptions, Secret, SecretSource, ServerModel,
    ServicePull, SourceError,
};
use std::sync::Mutex;

const BASE: i64 = 1_700_000_000_000;

/// One event, then 25 in one millisecond (pages of 10: page 0, the probe at
/// offset ceil(25 / 10) = 3, then the rest), then one more.
fn one_overfull_millisecond() -> Vec<SimEvent> {
    let mut events = vec![SimEvent::new(BASE, "normal", "Before.")];
    for i in 0..25 {
        let info = if i % 5 == 0 {
            "Same.".to_owned()
        } else {
            format!("Burst {i}.")
        };
        events.push(SimEvent::new(BASE + 100, "normal", &info));
    }
    events.push(SimEvent::new(BASE + 200, "normal", "After."));
    events
}

/// The offsets asked inside the overfull millisecond, in order.
fn millisecond_offsets(log: &[RequestLog]) -> Vec<(u64, usize)> {
    log.iter()
        .filter(|r| r.query.contains_key("end_time"))
        .map(|r| (r.query["offset"].parse().unwrap(), r.rows))
        .collect()
}

async fn pull_overfull(mode: OffsetMode, unit: OffsetUnit) -> Vec<(u64, usize)> {
    let behaviour = Behaviour {
        offset_mode: mode,
        ..Behaviour::default()
    };
    let mut harness = Harness::start(behaviour, one_overfull_millisecond());
    harness.settings.offset_unit = unit;
    let outcome = harness.sync().await;
    check_exactly_once(&harness.expected(), &outcome.delivered)
        .unwrap_or_else(|e| panic!("{mode:?} with {unit:?}: {e}"));
    millisecond_offsets(&harness.sim.requests())
}

#[tokio::test]
async fn auto_detects_a_server_counting_pages() {
    let offsets = pull_overfull(OffsetMode::Page, OffsetUnit::Auto).await;
    // Page 0, the probe at page 3 (empty: the server counts pages), then
    // pages 1 and 2.
    assert_eq!(offsets, vec![(0, 10), (3, 0), (1, 10), (2, 5)]);
}

#[tokio::test]
async fn auto_detects_servers_counting_records() {
    // The probe at record 3 has rows; pages are then asked at records 10 and
    // 20, which is right whether the server floors to a page or not.
    let offsets = pull_overfull(OffsetMode::Record, OffsetUnit::Auto).await;
    assert_eq!(offsets, vec![(0, 10), (3, 10), (10, 10), (20, 5)]);
    // A server that floors to a page answers the probe at record 3 with page 0
    // again, as a server that ignores offset would: one page past the end (record
    // 30, empty) shows it honours offset, once per source.
    let offsets = pull_overfull(OffsetMode::RecordFloored, OffsetUnit::Auto).await;
    assert_eq!(offsets, vec![(0, 10), (3, 10), (30, 0), (10, 10), (20, 5)]);
}

#[tokio::test]
async fn a_configured_offset_unit_is_used_without_a_probe() {
    let offsets = pull_overfull(OffsetMode::Page, OffsetUnit::Page).await;
    assert_eq!(offsets, vec![(0, 10), (1, 10), (2, 5)]);
    let offsets = pull_overfull(OffsetMode::Record, OffsetUnit::Record).await;
    assert_eq!(offsets, vec![(0, 10), (10, 10), (20, 5)]);
    let offsets = pull_overfull(OffsetMode::RecordFloored, OffsetUnit::Record).await;
    assert_eq!(offsets, vec![(0, 10), (10, 10), (20, 5)]);
}

#[tokio::test]
async fn retries_stop_after_max_retries_and_the_error_names_the_request() {
    for fault in [
        Fault::InternalError,
        Fault::TooManyRequests,
        Fault::DroppedConnection,
    ] {
        let behaviour = Behaviour {
            retry_after_secs: 0,
            faults: vec![FaultRule::every(fault, 1)],
            ..Behaviour::default()
        };
        let mut harness = Harness::start(behaviour, one_overfull_millisecond());
        harness.settings.max_retries = 2;
        let outcome = harness.try_sync().await;
        let error = outcome.error.expect("every request fails");
        assert!(error.is_retryable(), "{fault:?}: {error}");
        assert_eq!(
            harness.sim.request_count(),
            3,
            "{fault:?}: one try and two retries"
        );
        let message = error.to_string();
        assert!(
            message.contains(&format!(
                "GET /v1/{}/services/{SERVICE}/events",
                harness.settings.project_id.as_deref().unwrap_or_default()
            )),
            "{fault:?}: {message}"
        );
        assert!(outcome.delivered.is_empty());
    }
}

#[tokio::test]
async fn a_refused_token_is_not_retried() {
    let mut harness = Harness::start(Behaviour::default(), one_overfull_millisecond());
    harness.settings.auth = AuthSettings::Token {
        token: SecretSource::Inline(Secret::new("not-the-token")),
    };
    let outcome = harness.try_sync().await;
    let error = outcome.error.expect("the token is wrong");
    assert!(
        matches!(error, SourceError::Auth { status: 401, .. }),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert_eq!(harness.sim.request_count(), 1);
    let message = error.to_string();
    assert!(message.contains("authentication"), "{message}");
    assert!(!message.contains("not-the-token") && !format!("{error:?}").contains("not-the-token"));
}

#[tokio::test]
async fn an_unknown_service_is_service_not_found_and_not_retried() {
    let harness = Harness::start(Behaviour::default(), Vec::new());
    let client = ModelArtsClient::new(&harness.settings).unwrap();
    let model = Mutex::new(ServerModel::default());
    let options = PullOptions {
        page_size: 10,
        event_type: None,
        offset_unit: OffsetUnit::Auto,
        max_clock_skew: std::time::Duration::from_secs(300),
    };
    let missing = "00000000-0000-4000-8000-000000000404";
    let mut pull = ServicePull::new(&client, &model, missing, None, options);
    let error = pull.next_batch().await.unwrap_err();
    match &error {
        SourceError::ServiceNotFound {
            service_id,
            status,
            code,
            ..
        } => {
            assert_eq!(service_id, missing);
            assert_eq!(*status, 404);
            assert_eq!(code.as_deref(), Some("ModelArts.3502"));
        }
        other => panic!("expected ServiceNotFound, got {other:?}"),
    }
    assert!(!error.is_retryable());
    assert_eq!(harness.sim.request_count(), 1);
}

#[tokio::test]
async fn odd_rows_are_read_leniently_and_unplaceable_ones_are_counted() {
    let huge = "x".repeat(1024 * 1024);
    let events = vec![
        SimEvent::new(BASE, "normal", "Good."),
        SimEvent::raw(
            BASE + 1,
            json!({"occur_time": (BASE + 1).to_string(), "event_type": "normal", "event_info": "Time as a string."}),
        ),
        SimEvent::raw(
            BASE + 2,
            json!({"occur_time": "soon", "event_type": "normal", "event_info": "Cannot be placed."}),
        ),
        SimEvent::raw(
            BASE + 3,
            json!({"event_type": "abnormal", "event_info": "No time at all."}),
        ),
        SimEvent::new(BASE + 4, "WARNING", "A type the docs do not list."),
        SimEvent::new(BASE + 5, "normal", &huge),
        SimEvent::new(BASE + 6, "normal", "Good again."),
    ];
    let mut harness = Harness::start(Behaviour::default(), events);
    harness.settings.page_size = 100;
    let first = harness.sync().await;
    assert_eq!(first.malformed, 2);

    // Ground truth holds the well-formed rows; the string time is ours to read.
    let mut truth = harness.sim.events(SERVICE);
    truth.push((
        BASE + 1,
        "normal".to_owned(),
        "Time as a string.".to_owned(),
    ));
    truth.sort_by_key(|e| e.0);
    let expected = number(
        harness.settings.project_id.as_deref().unwrap_or_default(),
        truth,
    );
    check_exactly_once(&expected, &first.delivered).unwrap();
    assert!(first.delivered.iter().any(|e| e.event_type == "WARNING"));
    let big = first
        .delivered
        .iter()
        .find(|e| e.occur_time == BASE + 5)
        .unwrap();
    assert_eq!(big.event_info, huge);
    assert!(harness.sync().await.delivered.is_empty());
}

#[tokio::test]
async fn a_response_over_max_response_bytes_halves_the_limit_and_loses_nothing() {
    // About 1 KiB per row: 40 rows are ~40 KiB, 20 are ~20 KiB, 10 fit the
    // 12 KB limit. 15 rows share one millisecond, more than a page of 10.
    let pad = "p".repeat(1000);
    let mut events: Vec<SimEvent> = (0..30)
        .map(|i| SimEvent::new(BASE + i * 10, "normal", &format!("Row {i} {pad}")))
        .collect();
    for i in 0..15 {
        events.push(SimEvent::new(
            BASE + 155,
            "normal",
            &format!("Busy {} {pad}", i % 4),
        ));
    }
    let mut harness = Harness::start(Behaviour::default(), events);
    harness.settings.page_size = 40;
    harness.settings.max_response_bytes = 12_000;
    let first = harness.sync().await;
    check_exactly_once(&harness.expected(), &first.delivered).unwrap();
    let limits: Vec<String> = harness
        .sim
        .requests()
        .iter()
        .map(|r| r.query["limit"].clone())
        .collect();
    assert_eq!(&limits[..3], ["40", "20", "10"]);
    assert!(limits[3..].iter().all(|l| l == "10"), "{limits:?}");
    assert!(harness.sync().await.delivered.is_empty());
}

/// One event, then `count` distinct rows whose `occur_time` is not a number.
fn before_and_unplaceable(count: i64) -> Vec<SimEvent> {
    let mut events = vec![SimEvent::new(BASE, "normal", "Before.")];
    for i in 0..count {
        events.push(SimEvent::raw(
            BASE + 10 + i,
            json!({"occur_time": "garbled", "event_type": "normal", "event_info": format!("Bad {i}.")}),
        ));
    }
    events
}

#[tokio::test]
async fn a_run_of_unplaceable_rows_longer_than_a_page_is_skipped_not_fatal() {
    // Five rows without a usable time in a row, pages of 2: the scan sees a
    // page with nothing it can place and must page past it by offset.
    let mut events = before_and_unplaceable(5);
    events.push(SimEvent::new(BASE + 20, "normal", "After."));
    events.push(SimEvent::new(BASE + 21, "abnormal", "Last."));
    for offset_mode in [
        OffsetMode::Page,
        OffsetMode::Record,
        OffsetMode::RecordFloored,
    ] {
        let behaviour = Behaviour {
            offset_mode,
            ..Behaviour::default()
        };
        let mut harness = Harness::start(behaviour, events.clone());
        harness.settings.page_size = 2;
        let first = harness.sync().await;
        assert!(first.error.is_none(), "{offset_mode:?}: {:?}", first.error);
        assert!(first.malformed >= 5, "{offset_mode:?}: {}", first.malformed);
        check_exactly_once(&harness.expected(), &first.delivered)
            .unwrap_or_else(|e| panic!("{offset_mode:?}: {e}"));
        assert!(harness.sync().await.delivered.is_empty());
    }
}

#[tokio::test]
async fn a_page_of_unplaceable_rows_repeated_by_a_server_that_ignores_offset_is_noticed_at_once() {
    // Six distinct rows without a usable time, pages of 2, a server that ignores `offset`:
    // the page at offset 1 repeats the first page, which the pull must see right there
    // (the first page's digest is kept), probe once past the end and give up, rather
    // than read a third copy first.
    let events = before_and_unplaceable(6);
    let behaviour = Behaviour {
        offset_mode: OffsetMode::Ignored,
        ..Behaviour::default()
    };
    let mut harness = Harness::start(behaviour, events);
    harness.settings.page_size = 2;
    harness.settings.offset_unit = OffsetUnit::Page;
    let outcome = harness.try_sync().await;
    let error = outcome.error.expect("the pull fails");
    assert!(
        error.to_string().contains("without a usable occur_time"),
        "{error}"
    );
    let offsets: Vec<String> = harness
        .sim
        .requests()
        .iter()
        .filter_map(|r| r.query.get("offset").cloned())
        .filter(|offset| offset != "0")
        .collect();
    // Page 1, then one page past the end of the six rows (page 3).
    assert_eq!(offsets, ["1", "3"]);
}

/// One event, then 30 identical ones in one millisecond, then one more.
fn thirty_twins() -> Vec<SimEvent> {
    let mut events = vec![SimEvent::new(BASE, "normal", "Before.")];
    events.extend((0..30).map(|_| SimEvent::new(BASE + 100, "normal", "Heartbeat.")));
    events.push(SimEvent::new(BASE + 200, "normal", "After."));
    events
}

#[tokio::test]
async fn identical_twins_that_fill_whole_pages_are_told_from_an_offset_the_server_ignores() {
    // An honest server: every page of the millisecond is ten identical rows, so page 1
    // repeats page 0. One page past the end (offset 3 pages: empty) shows the server
    // honours offset, once; all 30 twins are delivered, numbered 1..=30.
    let mut harness = Harness::start(Behaviour::default(), thirty_twins());
    harness.settings.offset_unit = OffsetUnit::Page;
    let outcome = harness.sync().await;
    check_exactly_once(&harness.expected(), &outcome.delivered).unwrap();
    let twins: Vec<u32> = outcome
        .delivered
        .iter()
        .filter(|d| d.occur_time == BASE + 100)
        .map(|d| d.twin)
        .collect();
    assert_eq!(twins, (1..=30).collect::<Vec<_>>());
    assert_eq!(
        millisecond_offsets(&harness.sim.requests()),
        vec![(0, 10), (1, 10), (3, 0), (2, 10)]
    );
}

#[tokio::test]
async fn a_server_that_ignores_offset_fails_the_pull_before_the_millisecond_is_delivered() {
    for unit in [OffsetUnit::Auto, OffsetUnit::Page, OffsetUnit::Record] {
        for events in [one_overfull_millisecond(), thirty_twins()] {
            let behaviour = Behaviour {
                offset_mode: OffsetMode::Ignored,
                ..Behaviour::default()
            };
            let mut harness = Harness::start(behaviour, events);
            harness.settings.offset_unit = unit;
            let outcome = harness.try_sync().await;
            let error = outcome.error.expect("the pull fails");
            assert!(
                matches!(&error, SourceError::Paging { .. })
                    && error.to_string().contains("ignores `offset`"),
                "{unit:?}: {error}"
            );
            assert!(!error.is_retryable());
            // The event before the millisecond is delivered; nothing of it is.
            let times: Vec<i64> = outcome.delivered.iter().map(|d| d.occur_time).collect();
            assert_eq!(times, vec![BASE], "{unit:?}");
            // Page 0, perhaps the unit probe, page 1 and one page past the end.
            let asked = millisecond_offsets(&harness.sim.requests()).len();
            assert!(
                asked <= 4,
                "{unit:?}: {asked} requests inside the millisecond"
            );
        }
    }
}

#[tokio::test]
async fn a_lying_total_count_costs_a_handful_of_requests() {
    let behaviour = Behaviour {
        offset_mode: OffsetMode::Ignored,
        claimed_total_count: Some(100_000_000_000_000_000_000),
        ..Behaviour::default()
    };
    let harness = Harness::start(behaviour, vec![SimEvent::new(BASE, "normal", "Alone.")]);
    let outcome = harness.try_sync().await;
    assert!(
        matches!(outcome.error, Some(SourceError::Paging { .. })),
        "{:?}",
        outcome.error
    );
    assert!(outcome.delivered.is_empty(), "no invented twin");
    assert!(
        harness.sim.request_count() <= 5,
        "{} requests",
        harness.sim.request_count()
    );
}
