//! Runs that follow runs: late events inside and outside `lookback`
//! (invariant 4), events added at the checkpoint's own millisecond and while
//! a run is paging (invariants 3 and 5), and the cost of an idle sync
//! (invariant 7). Real HTTP against the simulator, the cursor in a real
//! SQLite file carried from run to run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::{Delivered, Harness, SERVICE, check_exactly_once, tricky_events};
use simulator::{Behaviour, OffsetMode, SimEvent};
use std::time::Duration;

const BASE: i64 = 1_700_000_000_000;

fn uniform(count: i64, step_ms: i64) -> Vec<SimEvent> {
    (0..count)
        .map(|i| SimEvent::new(BASE + i * step_ms, "normal", &format!("Event {i}.")))
        .collect()
}

fn all(runs: &[&[Delivered]]) -> Vec<Delivered> {
    runs.iter().flat_map(|run| run.iter().cloned()).collect()
}

#[tokio::test]
async fn a_late_event_inside_lookback_arrives_once_and_one_outside_does_not() {
    let mut harness = Harness::start(Behaviour::default(), uniform(50, 1_000));
    harness.settings.lookback = Duration::from_secs(10);
    let first = harness.sync().await;
    assert_eq!(first.delivered.len(), 50);

    // The newest delivered event is at BASE + 49 s; lookback reaches back
    // to BASE + 39 s.
    let inside = vec![
        SimEvent::new(BASE + 45_001, "abnormal", "Late failure."),
        // Same millisecond as a delivered event, different text.
        SimEvent::new(BASE + 45_000, "normal", "Late neighbour."),
        // An identical twin of a delivered event, arriving late.
        SimEvent::new(BASE + 44_000, "normal", "Event 44."),
    ];
    let outside = SimEvent::new(BASE + 20_001, "abnormal", "Too late to see.");
    harness.sim.add_events(SERVICE, inside);
    harness.sim.add_events(SERVICE, vec![outside]);

    let second = harness.sync().await;
    let mut got: Vec<(i64, &str, u32)> = second
        .delivered
        .iter()
        .map(|e| (e.occur_time - BASE, e.event_info.as_str(), e.twin))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (44_000, "Event 44.", 2),
            (45_000, "Late neighbour.", 1),
            (45_001, "Late failure.", 1),
        ]
    );
    assert!(harness.sync().await.delivered.is_empty());

    // The documented limit: older than position - lookback is never read.
    let expected = harness.expected();
    let missing: Vec<&Delivered> = expected
        .iter()
        .filter(|e| !first.delivered.contains(e) && !second.delivered.contains(e))
        .collect();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].event_info, "Too late to see.");
}

#[tokio::test]
async fn events_added_at_the_checkpoints_own_millisecond_arrive_once() {
    let harness = Harness::start(Behaviour::default(), uniform(30, 10));
    let first = harness.sync().await;
    let last = first.delivered.last().unwrap().clone();
    assert_eq!(last.occur_time, BASE + 290);

    harness.sim.add_events(
        SERVICE,
        vec![
            SimEvent::new(last.occur_time, "normal", &last.event_info),
            SimEvent::new(last.occur_time, "normal", "Another at the same instant."),
        ],
    );
    let second = harness.sync().await;
    let got: Vec<(i64, &str, u32)> = second
        .delivered
        .iter()
        .map(|e| (e.occur_time, e.event_info.as_str(), e.twin))
        .collect();
    assert_eq!(
        got,
        vec![
            (last.occur_time, last.event_info.as_str(), 2),
            (last.occur_time, "Another at the same instant.", 1),
        ]
    );
    assert!(harness.sync().await.delivered.is_empty());
    let expected = harness.expected();
    check_exactly_once(&expected, &all(&[&first.delivered, &second.delivered])).unwrap();
}

#[tokio::test]
async fn events_added_at_an_overfull_checkpoint_millisecond_arrive_once() {
    // The last millisecond holds 11 identical events, more than a page of
    // 10 (and of the 7 served): it is read with offset paging.
    for (offset_mode, max_page_size) in [
        (OffsetMode::Page, None),
        (OffsetMode::RecordFloored, Some(7)),
    ] {
        let behaviour = Behaviour {
            offset_mode,
            max_page_size,
            ..Behaviour::default()
        };
        let harness = Harness::start(behaviour, tricky_events(BASE));
        let first = harness.sync().await;
        harness.sim.add_events(
            SERVICE,
            vec![
                SimEvent::new(BASE + 400, "normal", "Heartbeat."),
                SimEvent::new(BASE + 400, "normal", "Heartbeat."),
            ],
        );
        let second = harness.sync().await;
        let twins: Vec<(i64, u32)> = second
            .delivered
            .iter()
            .map(|e| (e.occur_time - BASE, e.twin))
            .collect();
        assert_eq!(twins, vec![(400, 12), (400, 13)], "{offset_mode:?}");
        assert!(harness.sync().await.delivered.is_empty());
        check_exactly_once(
            &harness.expected(),
            &all(&[&first.delivered, &second.delivered]),
        )
        .unwrap();
    }
}

/// Events added between page requests of one sync, at times before, at and
/// after where the pull is, and inside overfull milliseconds being read.
/// The first sync may miss what lands behind it; the second must catch it;
/// nothing is delivered twice.
#[tokio::test]
async fn events_added_while_paging_are_neither_lost_nor_duplicated() {
    for (offset_mode, max_page_size, start_inclusive) in [
        (OffsetMode::Page, None, true),
        (OffsetMode::Record, Some(7), false),
        (OffsetMode::RecordFloored, Some(7), true),
    ] {
        let behaviour = Behaviour {
            offset_mode,
            max_page_size,
            start_inclusive,
            ..Behaviour::default()
        };
        let harness = Harness::start(behaviour, tricky_events(BASE));
        for n in 1..=30 {
            let t = BASE + 13 * n as i64;
            harness.sim.add_events_after_request(
                n,
                SERVICE,
                vec![
                    // Behind, at and ahead of the pull, and into the bursts.
                    SimEvent::new(t, "normal", &format!("Arrived after request {n}.")),
                    SimEvent::new(BASE + 200, "normal", "Pulling image."),
                    SimEvent::new(BASE + 400, "normal", "Heartbeat."),
                    SimEvent::new(BASE + 500 + n as i64, "abnormal", "Ahead."),
                ],
            );
        }
        let first = harness.sync().await;
        let second = harness.sync().await;
        let third = harness.sync().await;
        let label =
            format!("{offset_mode:?} served={max_page_size:?} start_inclusive={start_inclusive}");
        assert!(
            third.delivered.is_empty(),
            "{label}: third sync delivered {:?}",
            third.delivered
        );
        check_exactly_once(
            &harness.expected(),
            &all(&[&first.delivered, &second.delivered]),
        )
        .unwrap_or_else(|e| panic!("{label}: {e}"));
    }
}

/// A late event lands just before an overfull millisecond while that
/// millisecond is being read with offsets; on a server whose `start_time`
/// is inclusive (not yet known to the pull) it shifts every later offset.
#[tokio::test]
async fn a_late_event_before_an_overfull_millisecond_being_read_does_not_shift_it() {
    let mut events = vec![SimEvent::new(BASE, "normal", "First.")];
    for i in 0..25 {
        events.push(SimEvent::new(BASE + 100, "normal", &format!("Burst {i}.")));
    }
    let harness = Harness::start(Behaviour::default(), events);
    // Requests: 1 scan, 2 scan from BASE + 99, 3 the millisecond's page 0,
    // 4 the offset-unit probe, 5 and 6 pages 1 and 2.
    harness.sim.add_events_after_request(
        4,
        SERVICE,
        vec![SimEvent::new(BASE + 99, "abnormal", "Late, just before.")],
    );
    let first = harness.sync().await;
    let second = harness.sync().await;
    assert!(harness.sync().await.delivered.is_empty());
    check_exactly_once(
        &harness.expected(),
        &all(&[&first.delivered, &second.delivered]),
    )
    .unwrap();
}

#[tokio::test]
async fn an_idle_sync_costs_one_request_when_lookback_holds_few_events() {
    // 200 events a minute apart, pages of 20: the first sync needs many
    // requests; the second reads only the 10 minutes of lookback.
    let mut harness = Harness::start(Behaviour::default(), uniform(200, 60_000));
    harness.settings.page_size = 20;
    let first = harness.sync().await;
    assert_eq!(first.delivered.len(), 200);
    assert!(first.requests >= 10);

    let before = harness.sim.request_count();
    let second = harness.sync().await;
    assert!(second.delivered.is_empty());
    assert_eq!(second.requests, 1);
    assert_eq!(harness.sim.request_count() - before, 1);

    // Nothing new inside lookback and no events at all near the floor:
    // still one request.
    harness.settings.lookback = Duration::from_millis(1);
    let before = harness.sim.request_count();
    assert!(harness.sync().await.delivered.is_empty());
    assert_eq!(harness.sim.request_count() - before, 1);
}

/// An event joins an overfull millisecond between its page 0 and the
/// offset-unit probe. On a server counting pages, with 20 rows in pages of
/// 10, the probe at page 2 is empty only if the count did not change; the
/// pull must not conclude "records" from the newcomer, or it would page a
/// page-counting server with record offsets and stop short.
#[tokio::test]
async fn an_event_arriving_during_the_offset_probe_does_not_mislead_it() {
    let mut events = vec![SimEvent::new(BASE, "normal", "First.")];
    for i in 0..20 {
        events.push(SimEvent::new(BASE + 100, "normal", &format!("Burst {i}.")));
    }
    let harness = Harness::start(Behaviour::default(), events);
    // Requests: 1 scan, 2 scan from BASE + 99, 3 the millisecond's page 0,
    // 4 the probe.
    harness.sim.add_events_after_request(
        3,
        SERVICE,
        vec![SimEvent::new(BASE + 100, "normal", "Burst 20.")],
    );
    let first = harness.sync().await;
    check_exactly_once(&harness.expected(), &first.delivered).unwrap();
    assert!(harness.sync().await.delivered.is_empty());
    // The probe that decided saw no rows: the server counts pages.
    let probes: Vec<_> = harness
        .sim
        .requests()
        .into_iter()
        .filter(|r| {
            r.query.contains_key("end_time") && r.query["offset"] != "0" && r.query["offset"] != "1"
        })
        .collect();
    assert!(probes.iter().any(|r| r.rows == 0), "{probes:?}");
}
