//! The delivery engine against a recording fake destination: each rule of the engine,
//! with the real pull from a simulator on 127.0.0.1 and a real SQLite state file. Every
//! test asserts what reached the destination **and** what was committed (read back from
//! the state, and by what a second sync with a healthy destination delivers: exactly
//! what was not committed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use pipeline::SinkFailure;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use support::{
    Answer, FakeSink, SinkSpec, World, assert_exactly_once, cycle, forbidden, retryable,
};
use tokio::sync::Semaphore;

/// Waits (real time, generously bounded) until `condition` holds.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..6_000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("gave up waiting until {what}");
}

/// A sink spec with batches of at most `max_events` records (1 MiB) and a batch timer of
/// an hour, which a sync must never wait for.
fn batches_of(max_events: usize) -> SinkSpec {
    SinkSpec {
        batch: sink::BatchSettings {
            max_events,
            max_bytes: 1 << 20,
            timeout: Duration::from_secs(3600),
        },
        ..SinkSpec::default()
    }
}

// Batches are formed across services, bounded by `batch.max_events`; and a one-shot sync
// does not wait for `batch.timeout` at the end (an hour here): the last batch goes as soon
// as every job feeding the sink is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_span_services_and_a_sync_never_waits_for_the_batch_timer() {
    let world = World::new(6, 30, 10);
    let fake = FakeSink::accepting("loki");
    let spec = batches_of(50);
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        world.sync(&[(&fake, spec.clone())], 6),
    )
    .await
    .expect("the sync waited for the batch timer");
    assert!(report.ok(), "{:?}", report.lines());
    assert_exactly_once(&fake.accepted_ids(), &world.all_ids(), "first sync");
    let calls = fake.calls();
    assert!(
        calls.iter().all(|c| c.records.len() <= 50),
        "a batch over max_events"
    );
    assert!(
        calls.iter().any(|c| c.services().len() > 1),
        "no batch spans services: {:?}",
        calls.iter().map(|c| c.services().len()).collect::<Vec<_>>()
    );
    assert!(
        calls.len() < 180 / 10,
        "not fewer sends than pages: {}",
        calls.len()
    );
    // Committed: every service's position is its newest event.
    for service in world.sim.service_ids() {
        let cursor = world.cursor(&service, "loki").unwrap();
        assert_eq!(cursor.position, Some(world.newest(&service)));
    }
    let again = world.sync(&[(&fake, spec)], 6).await;
    assert!(again.ok());
    assert_eq!(
        fake.calls().len(),
        calls.len(),
        "a second sync sent something"
    );
}

// A batch ends where a page ends unless one page is larger than a batch: a commit then
// moves the position over whole pages, and only the last `lookback` of what was sent needs
// fingerprints (not the part of a page a batch ended in, written and deleted again a
// commit later). Each batch starts with the first record of a page, which is the record
// at the `start_time` (or one after) the page was asked from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_end_where_pages_end() {
    let world = World::new(1, 200, 10);
    let fake = FakeSink::accepting("file");
    let spec = batches_of(25);
    let report = world.sync(&[(&fake, spec)], 1).await;
    assert!(report.ok(), "{:?}", report.lines());
    assert_exactly_once(&fake.accepted_ids(), &world.all_ids(), "the sync");
    let page_starts: HashSet<i64> = world
        .sim
        .requests()
        .iter()
        .filter_map(|r| r.query.get("start_time")?.parse::<i64>().ok())
        .flat_map(|start| [start, start + 1])
        .collect();
    let calls = fake.calls();
    assert!(calls.len() > 4, "{} batches", calls.len());
    for (i, call) in calls.iter().enumerate() {
        assert!(call.records.len() <= 25, "batch {i} over max_events");
        let first = call.records[0].occur_time;
        assert!(
            i == 0 || page_starts.contains(&first),
            "batch {i} starts inside a page, at {first} ({} records)",
            call.records.len()
        );
    }
}

// The prefix rule: a record the destination keeps refusing for now holds its service's
// position for that sink. When its retries are spent the sink fails for the cycle (later
// batches wait for the next run); the records of its batch acknowledged after it are
// fingerprinted, so the next sync delivers the stuck record and the unsent rest, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_waiting_for_a_retry_holds_its_services_position() {
    let world = World::new(1, 40, 10);
    let service = world.sim.service_ids().remove(0);
    let all = world.all_ids();
    let stuck = all[14].clone();
    let stuck_for_script = stuck.clone();
    let fake = FakeSink::new("es", move |_, batch| Answer::Items {
        reject: vec![],
        retry: batch
            .iter()
            .enumerate()
            .filter(|(_, r)| r.id == stuck_for_script)
            .map(|(i, _)| i)
            .collect(),
    });
    // Batches of 10 over pages of 10: the stuck record is in the second batch.
    let spec = SinkSpec {
        batch: sink::BatchSettings {
            max_events: 10,
            ..SinkSpec::default().batch
        },
        ..SinkSpec::default()
    };
    let report = world.sync(&[(&fake, spec.clone())], 1).await;
    assert!(!report.ok());
    assert!(
        matches!(
            report.sinks[0].failure,
            Some(SinkFailure::ItemsRetried {
                count: 1,
                attempts: 4,
                ..
            })
        ),
        "{:?}",
        report.sinks[0].failure
    );
    // The stuck record was offered alone after its batch's first try.
    let calls = fake.calls();
    let stuck_batch = calls
        .iter()
        .position(|c| c.records.iter().any(|r| r.id == stuck))
        .unwrap();
    assert_eq!(
        calls.len(),
        stuck_batch + 1 + 3,
        "no batch after the stuck one was sent"
    );
    assert!(
        calls[stuck_batch + 1..]
            .iter()
            .all(|c| c.records.len() == 1 && c.records[0].id == stuck)
    );
    let mut first: Vec<String> = calls[..=stuck_batch]
        .iter()
        .flat_map(|c| c.records.iter().map(|r| r.id.to_string()))
        .collect();
    first.retain(|id| id != &stuck);
    assert_exactly_once(
        &fake.accepted_ids(),
        &first,
        "the batches up to the stuck one, but it",
    );
    // Committed: the position stops before the stuck record; the records of its batch
    // acknowledged after it are fingerprinted.
    let stuck_time = world.sim.events(&service)[14].0;
    let cursor = world.cursor(&service, "es").unwrap();
    assert!(
        cursor.position.is_some_and(|p| p < stuck_time),
        "position {:?} passed the stuck record at {stuck_time}",
        cursor.position
    );
    let fingerprinted: HashSet<&str> = cursor
        .fingerprints
        .iter()
        .map(|(id, _)| id.as_str())
        .collect();
    let batch = &calls[stuck_batch].records;
    let after: Vec<&str> = batch
        .iter()
        .skip_while(|r| r.id != stuck)
        .skip(1)
        .map(|r| r.id.as_str())
        .collect();
    assert!(
        !after.is_empty(),
        "the stuck record ends its batch; pick another"
    );
    assert!(
        after.iter().all(|id| fingerprinted.contains(id)),
        "{after:?}"
    );
    assert!(!fingerprinted.contains(stuck.as_str()));

    let healthy = FakeSink::accepting("es");
    let again = world.sync(&[(&healthy, spec)], 1).await;
    assert!(again.ok(), "{:?}", again.lines());
    let rest: Vec<String> = all
        .iter()
        .filter(|id| !first.contains(id))
        .cloned()
        .collect();
    assert!(rest.contains(&stuck));
    assert_exactly_once(
        &healthy.accepted_ids(),
        &rest,
        "the stuck record and the unsent rest",
    );
    assert_eq!(
        world.cursor(&service, "es").unwrap().position,
        Some(world.newest(&service))
    );
}

// Retryable errors are retried within the run, and `retry.max_attempts` counts every try:
// two failures then success delivers everything; failures without end cost exactly
// `max_attempts` sends, commit nothing, and the next sync delivers everything once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_by_max_attempts() {
    let world = World::new(2, 20, 10);
    let flaky = FakeSink::new("loki", |n, _| {
        if n < 2 {
            Answer::Fail(retryable("loki", None))
        } else {
            Answer::Accept
        }
    });
    let report = world.sync(&[(&flaky, SinkSpec::default())], 2).await;
    assert!(report.ok(), "{:?}", report.lines());
    assert_exactly_once(
        &flaky.accepted_ids(),
        &world.all_ids(),
        "after two failures",
    );
    assert_eq!(report.sinks[0].requests, flaky.calls().len() as u64);
    assert!(flaky.calls().len() >= 3);

    let world = World::new(2, 20, 10);
    let down = FakeSink::new("loki", |_, _| Answer::Fail(retryable("loki", None)));
    let report = world.sync(&[(&down, SinkSpec::default())], 2).await;
    assert!(!report.ok());
    assert_eq!(
        down.calls().len(),
        4,
        "max_attempts = 4 tries of the one batch"
    );
    assert!(
        matches!(
            report.sinks[0].failure,
            Some(SinkFailure::RetriesSpent { attempts: 4, .. })
        ),
        "{:?}",
        report.sinks[0].failure
    );
    assert!(
        world.positions().iter().all(|p| p.position.is_none()),
        "a position moved without an acknowledgement: {:?}",
        world.positions()
    );
    let healthy = FakeSink::accepting("loki");
    assert!(world.sync(&[(&healthy, SinkSpec::default())], 2).await.ok());
    assert_exactly_once(&healthy.accepted_ids(), &world.all_ids(), "catching up");
}

// A permanent error (401/403, a refused configuration) fails the sink once for the cycle,
// not once per service: one request, whatever the number of services. The other sinks go
// on. In `run`, the next cycle leaves the sink alone (it is held back for minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_costs_one_request_per_cycle_and_run_holds_the_sink_back() {
    let world = World::new(5, 20, 10);
    let refusing = FakeSink::new("es", |_, _| Answer::Fail(forbidden("es")));
    let archive = FakeSink::accepting("archive");
    let (pipeline, mode) = world
        .pipeline(
            &[
                (&refusing, SinkSpec::default()),
                (&archive, SinkSpec::default()),
            ],
            3,
        )
        .await;
    let report = cycle(&pipeline, &mode).await;
    assert!(!report.ok());
    assert_eq!(
        refusing.calls().len(),
        1,
        "one request, not one per service"
    );
    let failure = report.sinks.iter().find(|s| s.name == "es").unwrap();
    assert!(
        matches!(&failure.failure, Some(SinkFailure::Permanent(e)) if e.status == Some(403)),
        "{:?}",
        failure.failure
    );
    assert_eq!(
        report
            .lines()
            .iter()
            .filter(|l| l.contains("FAILED"))
            .count(),
        1
    );
    assert_exactly_once(&archive.accepted_ids(), &world.all_ids(), "the other sink");
    for row in world.positions() {
        match row.sink.as_str() {
            "es" => assert_eq!(row.position, None, "es moved without an acknowledgement"),
            _ => assert_eq!(row.position, Some(world.newest(&row.service_id))),
        }
    }

    let next = cycle(&pipeline, &mode).await;
    assert_eq!(
        refusing.calls().len(),
        1,
        "the held-back sink was tried again"
    );
    let held = next.sinks.iter().find(|s| s.name == "es").unwrap();
    assert!(
        matches!(held.failure, Some(SinkFailure::HeldBack { .. })),
        "{:?}",
        held.failure
    );
}

// A slow sink does not pace a fast one: while the slow destination takes nothing at all,
// the fast one receives every event; the slow one keeps its position and catches up after
// the others, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_does_not_pace_a_fast_one() {
    let world = World::new(4, 100, 10);
    let gate = Arc::new(Semaphore::new(0));
    let slow = FakeSink::gated("webhook", gate.clone());
    let fast = FakeSink::accepting("archive");
    let slow_spec = SinkSpec {
        batch: sink::BatchSettings {
            max_events: 20,
            max_bytes: 1 << 20,
            timeout: Duration::from_millis(50),
        },
        ..SinkSpec::default()
    };
    let world = Arc::new(world);
    let (slow_c, fast_c, world_c) = (slow.clone(), fast.clone(), world.clone());
    let running = tokio::spawn(async move {
        world_c
            .sync(&[(&slow_c, slow_spec), (&fast_c, SinkSpec::default())], 2)
            .await
    });
    let all = world.all_ids();
    eventually("the fast sink has every event", || {
        fast.accepted().len() >= all.len()
    })
    .await;
    assert!(slow.accepted().is_empty(), "the slow sink took nothing yet");
    assert!(!running.is_finished());
    // The fast sink's positions are committed while the slow one still waits.
    eventually("the fast sink's positions are committed", || {
        world
            .positions()
            .iter()
            .filter(|p| p.sink == "archive")
            .all(|p| p.position == Some(world.newest(&p.service_id)))
    })
    .await;

    gate.add_permits(1_000_000);
    let report = running.await.unwrap();
    assert!(report.ok(), "{:?}", report.lines());
    assert_exactly_once(&fast.accepted_ids(), &all, "fast sink");
    assert_exactly_once(&slow.accepted_ids(), &all, "slow sink after catching up");
    let summary = report.sinks.iter().find(|s| s.name == "webhook").unwrap();
    assert!(
        !summary.fell_behind.is_empty() && summary.caught_up,
        "{}",
        summary.line()
    );
    for row in world.positions() {
        assert_eq!(row.position, Some(world.newest(&row.service_id)), "{row:?}");
    }
}

// Rejected records go to the dead-letter file, exactly those, with the destination's
// reason and status; they are acknowledged (a second sync sends nothing), counted in the
// summary and the state, and they fail the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_records_are_dead_lettered_exactly_and_acknowledged() {
    let world = World::new(3, 30, 10);
    let refuse = |id: &str| id.starts_with(['0', '1', '2']);
    let fake = FakeSink::new("es", move |_, batch| Answer::Items {
        reject: batch
            .iter()
            .enumerate()
            .filter(|(_, r)| refuse(&r.id))
            .map(|(i, _)| i)
            .collect(),
        retry: vec![],
    });
    let report = world.sync(&[(&fake, SinkSpec::default())], 3).await;
    assert!(!report.ok(), "unexpected rejections fail the run");
    let all = world.all_ids();
    let (refused, accepted): (Vec<String>, Vec<String>) =
        all.iter().cloned().partition(|id| refuse(id));
    assert!(!refused.is_empty());
    assert_exactly_once(&fake.accepted_ids(), &accepted, "accepted");
    let letters = pipeline::DeadLetterFile::new("es", world.dead_letter_path("es"), 1 << 20)
        .read()
        .unwrap();
    let lettered: Vec<String> = letters
        .entries
        .iter()
        .map(|(_, e)| e.record.id.to_string())
        .collect();
    assert_exactly_once(&lettered, &refused, "dead letters");
    let (_, first) = &letters.entries[0];
    assert_eq!((first.sink.as_str(), first.status), ("es", Some(400)));
    assert_eq!(first.reason, format!("refused {}", first.record.event_info));
    assert_eq!(report.sinks[0].dead_lettered, refused.len() as u64);
    let store = source::checkpoint::CheckpointStore::open_read_only(&world.state_path())
        .unwrap()
        .unwrap();
    assert_eq!(
        store.sink_state("es").unwrap().unwrap().dead_lettered,
        refused.len() as u64
    );
    for row in world.positions() {
        assert_eq!(row.position, Some(world.newest(&row.service_id)));
    }
    let healthy = FakeSink::accepting("es");
    assert!(world.sync(&[(&healthy, SinkSpec::default())], 3).await.ok());
    assert!(
        healthy.calls().is_empty(),
        "dead-lettered records were sent again"
    );
}

// Dead letters are written before the commit that acknowledges them: when the file cannot
// be written, the sink fails and those records are not acknowledged, so the next sync
// delivers them (nothing is lost in a log line).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_cannot_be_dead_lettered_are_not_acknowledged() {
    let world = World::new(2, 30, 10);
    // A file where the dead-letter folder would be: the append cannot happen.
    std::fs::write(world.dir.path().join("blocked"), b"not a folder").unwrap();
    let spec = SinkSpec {
        dead_letter_path: Some(world.dir.path().join("blocked").join("es.jsonl")),
        ..SinkSpec::default()
    };
    let refuse = |id: &str| id.starts_with(['a', 'b']);
    let fake = FakeSink::new("es", move |_, batch| Answer::Items {
        reject: batch
            .iter()
            .enumerate()
            .filter(|(_, r)| refuse(&r.id))
            .map(|(i, _)| i)
            .collect(),
        retry: vec![],
    });
    let report = world.sync(&[(&fake, spec)], 2).await;
    assert!(
        matches!(report.sinks[0].failure, Some(SinkFailure::DeadLetter(_))),
        "{:?}",
        report.sinks[0].failure
    );
    let first = fake.accepted_ids();
    let healthy = FakeSink::accepting("es");
    assert!(world.sync(&[(&healthy, SinkSpec::default())], 2).await.ok());
    let second = healthy.accepted_ids();
    assert!(
        second.iter().any(|id| refuse(id)),
        "the refused records come again"
    );
    let both: Vec<String> = first.into_iter().chain(second).collect();
    assert_exactly_once(&both, &world.all_ids(), "both syncs together");
}

// `dead_letter_max_bytes`: past it the file takes nothing more and the sink fails for the
// run rather than dropping records; what did not fit is not acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_dead_letter_file_fails_the_sink_instead_of_dropping() {
    let world = World::new(1, 60, 10);
    let spec = SinkSpec {
        batch: sink::BatchSettings {
            max_events: 10,
            ..SinkSpec::default().batch
        },
        dead_letter_max_bytes: 4_000,
        ..SinkSpec::default()
    };
    let fake = FakeSink::new("es", |_, batch| Answer::Items {
        reject: (0..batch.len()).filter(|i| i % 3 == 0).collect(),
        retry: vec![],
    });
    let report = world.sync(&[(&fake, spec.clone())], 1).await;
    assert!(
        matches!(
            &report.sinks[0].failure,
            Some(SinkFailure::DeadLetter(e)) if e.to_string().contains("dead_letter_max_bytes")
        ),
        "{:?}",
        report.sinks[0].failure
    );
    let path = world.dead_letter_path("es");
    assert!(std::fs::metadata(&path).unwrap().len() <= 4_000);
    let letters = pipeline::DeadLetterFile::new("es", path, 4_000)
        .read()
        .unwrap();
    assert!(letters.unreadable.is_empty() && !letters.entries.is_empty());
    let lettered: Vec<String> = letters
        .entries
        .iter()
        .map(|(_, e)| e.record.id.to_string())
        .collect();
    let healthy = FakeSink::accepting("es");
    let spec = SinkSpec {
        dead_letter_max_bytes: 1 << 20,
        ..spec
    };
    assert!(world.sync(&[(&healthy, spec)], 1).await.ok());
    let all: Vec<String> = fake
        .accepted_ids()
        .into_iter()
        .chain(lettered)
        .chain(healthy.accepted_ids())
        .collect();
    assert_exactly_once(
        &all,
        &world.all_ids(),
        "accepted, dead-lettered and caught up",
    );
}

// Impossible outcomes (an index outside the batch, a record counted twice) are an engine
// error for that sink, never a panic or an underflow; nothing of that batch is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_outcomes_fail_the_sink_and_commit_nothing_of_the_batch() {
    for (what, delivery) in [
        (
            "an index outside the batch",
            sink::Delivery {
                rejected: vec![sink::Rejection {
                    index: 10_000,
                    reason: "?".into(),
                    status: None,
                    expected: None,
                }],
                ..sink::Delivery::default()
            },
        ),
        (
            "more rejections than records",
            sink::Delivery {
                rejected: (0..2)
                    .map(|_| sink::Rejection {
                        index: 0,
                        reason: "?".into(),
                        status: None,
                        expected: None,
                    })
                    .collect(),
                ..sink::Delivery::default()
            },
        ),
    ] {
        let world = World::new(1, 20, 10);
        let fake = FakeSink::new("es", move |_, _| Answer::Raw(delivery.clone()));
        let report = world.sync(&[(&fake, SinkSpec::default())], 1).await;
        assert!(
            matches!(report.sinks[0].failure, Some(SinkFailure::Malformed(_))),
            "{what}: {:?}",
            report.sinks[0].failure
        );
        assert_eq!(fake.calls().len(), 1, "{what}");
        assert!(
            world.positions().iter().all(|p| p.position.is_none()),
            "{what}"
        );
        let healthy = FakeSink::accepting("es");
        assert!(world.sync(&[(&healthy, SinkSpec::default())], 1).await.ok());
        assert_exactly_once(&healthy.accepted_ids(), &world.all_ids(), what);
    }
}

// With several sends in flight (`request.concurrency`), commits stay in batch order: a
// batch that needs retries does not let the positions of later batches pass it, and
// everything ends up delivered once with the right positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_in_flight_at_once_commit_in_order() {
    let world = World::new(3, 40, 10);
    // The first batch waits until three later ones were sent, then fails once.
    let fake = FakeSink::holding_the_first_send_until(
        FakeSink::new("es", |n, _| {
            if n == 0 {
                Answer::Fail(retryable("es", None))
            } else {
                Answer::Accept
            }
        }),
        4,
    );
    let spec = SinkSpec {
        batch: sink::BatchSettings {
            max_events: 5,
            ..SinkSpec::default().batch
        },
        concurrency: 4,
        ..SinkSpec::default()
    };
    let report = world.sync(&[(&fake, spec)], 3).await;
    assert!(report.ok(), "{:?}", report.lines());
    assert!(fake.most_in_flight() >= 2);
    let calls = fake.calls();
    let retried = calls
        .iter()
        .skip(1)
        .position(|c| c.records == calls[0].records)
        .expect("the failed batch was sent again");
    assert!(
        retried >= 3,
        "later batches were not sent while the first waited"
    );
    assert_exactly_once(&fake.accepted_ids(), &world.all_ids(), "with concurrency 4");
    for row in world.positions() {
        assert_eq!(row.position, Some(world.newest(&row.service_id)));
    }
}

// The next batch is sent while the last one's positions are committed. When that commit
// fails, the sink is rolled back only once the send started during it has ended, so that
// the roll-back takes its output back too (a file cut back to its committed length, not
// one batch short of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_rolls_back_after_the_send_started_during_it() {
    let world = World::new(1, 60, 10);
    // The first send waits at the gate until the next batch is sealed behind it.
    let gate = Arc::new(Semaphore::new(0));
    let fake = FakeSink::with_later_sends_taking(
        FakeSink::gated("file-like", gate.clone()),
        Duration::from_millis(300),
    );
    let (pipeline, mode) = world.pipeline(&[(&fake, batches_of(10))], 1).await;
    // Every commit of a position fails at once, as on a full disk.
    let state = rusqlite::Connection::open(world.state_path()).unwrap();
    state
        .execute_batch(
            "CREATE TRIGGER no_insert BEFORE INSERT ON cursor BEGIN SELECT RAISE(ABORT, 'disk full'); END;
             CREATE TRIGGER no_update BEFORE UPDATE ON cursor BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .unwrap();
    let run = tokio::spawn(async move { cycle(&pipeline, &mode).await });
    eventually("the first batch is in flight", || {
        fake.most_in_flight() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate.add_permits(100);
    let report = run.await.unwrap();
    assert!(!report.ok(), "{:?}", report.lines());
    assert_eq!(
        fake.events(),
        ["sent 0", "sent 1", "rollback"],
        "the roll-back came before the send it must take back"
    );
    assert!(world.positions().iter().all(|row| row.position.is_none()));
}

// A shutdown while a batch waits for its retry does not wait out the backoff: the cycle
// ends, the batch stays unacknowledged, and the next sync delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_during_a_retry_wait_ends_the_cycle_without_committing() {
    let world = World::new(1, 20, 10);
    let fake = FakeSink::new("es", |_, _| {
        Answer::Fail(retryable("es", Some(Duration::from_secs(3600))))
    });
    let spec = SinkSpec {
        retry: sink::RetrySettings {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(3600),
            max_backoff: Duration::from_secs(3600),
        },
        ..SinkSpec::default()
    };
    let (pipeline, mode) = world.pipeline(&[(&fake, spec)], 1).await;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let fake_c = fake.clone();
    let stopper = tokio::spawn(async move {
        eventually("the first send", || !fake_c.calls().is_empty()).await;
        stop.send(true).unwrap();
        stop
    });
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        pipeline.sync(&mode, &pipeline::Selection::default(), shutdown),
    )
    .await
    .expect("the cycle waited out the retry backoff");
    drop(stopper.await.unwrap());
    assert!(
        matches!(report.sinks[0].failure, Some(SinkFailure::Interrupted(_))),
        "{:?}",
        report.sinks[0].failure
    );
    assert_eq!(fake.calls().len(), 1);
    assert!(world.positions().iter().all(|p| p.position.is_none()));
    let healthy = FakeSink::accepting("es");
    assert!(world.sync(&[(&healthy, SinkSpec::default())], 1).await.ok());
    assert_exactly_once(
        &healthy.accepted_ids(),
        &world.all_ids(),
        "after the shutdown",
    );
}

// `dead-letter replay`: the dead-lettered records are offered to the sink again; an entry
// leaves the file only when the destination accepts its record, one refused again stays
// with the new reason, and a sink that fails keeps every entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_removes_only_what_the_destination_accepts() {
    let world = World::new(2, 30, 10);
    let refuse = |id: &str| id.starts_with(['0', '1', '2', '3']);
    let rejecting = FakeSink::new("es", move |_, batch| Answer::Items {
        reject: batch
            .iter()
            .enumerate()
            .filter(|(_, r)| refuse(&r.id))
            .map(|(i, _)| i)
            .collect(),
        retry: vec![],
    });
    world.sync(&[(&rejecting, SinkSpec::default())], 2).await;
    let file = pipeline::DeadLetterFile::new("es", world.dead_letter_path("es"), 1 << 20);
    let lettered: Vec<String> = file
        .read()
        .unwrap()
        .entries
        .iter()
        .map(|(_, e)| e.record.id.to_string())
        .collect();
    assert!(!lettered.is_empty());

    // A replay into a sink that is down keeps every entry.
    let (pipeline, mode) = world
        .pipeline(
            &[(
                &FakeSink::new("es", |_, _| Answer::Fail(forbidden("es"))),
                SinkSpec::default(),
            )],
            1,
        )
        .await;
    let pipeline::Mode::Deliver { state } = mode.as_ref() else {
        unreachable!()
    };
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let before = std::fs::read(file.path()).unwrap();
    let down = pipeline::replay::replay(&pipeline.sinks[0], state, shutdown.clone())
        .await
        .unwrap();
    assert!(matches!(down.failure, Some(SinkFailure::Permanent(_))));
    assert_eq!((down.accepted, down.kept), (0, lettered.len()));
    assert_eq!(
        std::fs::read(file.path()).unwrap(),
        before,
        "a failed replay changed the file"
    );
    drop(pipeline);

    // Fixed, mostly: the destination now refuses only the ids starting with 0.
    let fixed = FakeSink::new("es", |_, batch| Answer::Items {
        reject: batch
            .iter()
            .enumerate()
            .filter(|(_, r)| r.id.starts_with('0'))
            .map(|(i, _)| i)
            .collect(),
        retry: vec![],
    });
    let (pipeline, mode) = world.pipeline(&[(&fixed, SinkSpec::default())], 1).await;
    let pipeline::Mode::Deliver { state } = mode.as_ref() else {
        unreachable!()
    };
    let done = pipeline::replay::replay(&pipeline.sinks[0], state, shutdown)
        .await
        .unwrap();
    let (still, now_ok): (Vec<String>, Vec<String>) =
        lettered.iter().cloned().partition(|id| id.starts_with('0'));
    assert_exactly_once(&fixed.accepted_ids(), &now_ok, "accepted by the replay");
    assert_eq!(
        (done.offered, done.accepted, done.refused),
        (lettered.len(), now_ok.len(), still.len())
    );
    let left = file.read().unwrap();
    let left_ids: Vec<String> = left
        .entries
        .iter()
        .map(|(_, e)| e.record.id.to_string())
        .collect();
    assert_exactly_once(&left_ids, &still, "left in the file");
    assert!(
        left.entries
            .iter()
            .all(|(_, e)| e.reason == format!("refused {}", e.record.event_info))
    );
}

// Records a sink holds back (a Loki entry dated ahead of the clock) are neither retried
// nor acknowledged, and do not fail the sink: they hold their service's position, and a
// later sync offers them again. Refusals the sink expects (Loki's too-old entries) are
// dead-lettered and counted by kind, but the run still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_records_wait_for_a_later_run_and_expected_refusals_do_not_fail_it() {
    let world = World::new(1, 30, 10);
    let service = world.sim.service_ids().remove(0);
    let all = world.all_ids();
    let (held_id, old_id) = (all[20].clone(), all[3].clone());
    let (h, o) = (held_id.clone(), old_id.clone());
    let fake = FakeSink::new("loki", move |_, batch| Answer::Loki {
        hold: batch
            .iter()
            .enumerate()
            .filter(|(_, r)| r.id == h)
            .map(|(i, _)| i)
            .collect(),
        too_old: batch
            .iter()
            .enumerate()
            .filter(|(_, r)| r.id == o)
            .map(|(i, _)| i)
            .collect(),
    });
    let report = world.sync(&[(&fake, SinkSpec::default())], 1).await;
    assert!(report.ok(), "{:?}", report.lines());
    let summary = &report.sinks[0];
    assert_eq!(summary.held, 1);
    assert_eq!(summary.expected_dead_lettered.get("too_old"), Some(&1));
    assert!(
        summary.line().contains("expected: 1 too_old"),
        "{}",
        summary.line()
    );
    let sent_once = fake
        .calls()
        .iter()
        .flat_map(|c| c.records.clone())
        .filter(|r| r.id == held_id)
        .count();
    assert_eq!(sent_once, 1, "a held record is not retried in the run");
    let mut want = all.clone();
    want.retain(|id| id != &held_id && id != &old_id);
    assert_exactly_once(
        &fake.accepted_ids(),
        &want,
        "all but the held and the too-old",
    );
    let held_time = world.sim.events(&service)[20].0;
    assert!(
        world
            .cursor(&service, "loki")
            .unwrap()
            .position
            .is_some_and(|p| p < held_time)
    );

    let healthy = FakeSink::accepting("loki");
    assert!(world.sync(&[(&healthy, SinkSpec::default())], 1).await.ok());
    assert!(
        healthy.accepted_ids().contains(&held_id),
        "the held record comes again"
    );
    assert!(
        !healthy.accepted_ids().contains(&old_id),
        "the dead-lettered one does not"
    );
}

// Records a sink acknowledges without sending (a chat sink's events too old to alert
// about) move the positions like delivered ones, are counted by kind, and are neither
// dead-lettered nor offered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_records_are_acknowledged_and_counted_but_not_dead_lettered() {
    let world = World::new(2, 20, 10);
    let fake = FakeSink::new("chat", |_, batch| {
        Answer::Skip((0..batch.len()).filter(|i| i % 2 == 0).collect())
    });
    let report = world.sync(&[(&fake, SinkSpec::default())], 2).await;
    assert!(report.ok(), "{:?}", report.lines());
    let skipped = report.sinks[0]
        .skipped
        .get("too_old_to_alert")
        .copied()
        .unwrap_or(0);
    assert_eq!(skipped + fake.accepted().len() as u64, 40);
    assert!(skipped > 0);
    assert!(
        report.sinks[0].line().contains("not sent by design"),
        "{}",
        report.sinks[0].line()
    );
    assert!(!world.dead_letter_path("chat").exists());
    for row in world.positions() {
        assert_eq!(row.position, Some(world.newest(&row.service_id)));
    }
    let again = FakeSink::accepting("chat");
    assert!(world.sync(&[(&again, SinkSpec::default())], 2).await.ok());
    assert!(
        again.calls().is_empty(),
        "skipped records were offered again"
    );
}
