//! Invariants 3, 5, 7 and 9 over every combination of the server behaviours
//! the API documentation leaves open: `start_time` and `end_time` inclusive
//! or exclusive, `offset` counting pages, records or records floored to a
//! page, a served page size clamped below the asked `limit`, and gateway
//! faults on a fixed schedule. For each combination, two syncs over real
//! HTTP against the simulator, with the cursor kept in a real SQLite file,
//! must deliver every event of the ground truth exactly once (twins
//! distinguished), all of it in the first sync and nothing in the second.
//!
//! Each fault kind is its own test (so they run in parallel); a failing
//! test names every failing combination.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::{Harness, check_exactly_once, tricky_events};
use simulator::{Behaviour, Fault, FaultRule, OffsetMode};

const BASE: i64 = 1_700_000_000_000;

/// `(page_size asked, max_page_size served)`.
const PAGES: [(u32, Option<u32>); 2] = [(10, None), (50, Some(7))];
const OFFSETS: [OffsetMode; 3] = [
    OffsetMode::Page,
    OffsetMode::Record,
    OffsetMode::RecordFloored,
];

async fn run_case(
    start_inclusive: bool,
    end_inclusive: bool,
    offset_mode: OffsetMode,
    (page_size, max_page_size): (u32, Option<u32>),
    fault: Option<Fault>,
) -> Result<(), String> {
    let behaviour = Behaviour {
        start_inclusive,
        end_inclusive,
        offset_mode,
        max_page_size,
        retry_after_secs: 0,
        // Every third request fails; its retry (the next number) succeeds.
        faults: fault
            .map(|f| vec![FaultRule::every(f, 3)])
            .unwrap_or_default(),
        ..Behaviour::default()
    };
    let mut harness = Harness::start(behaviour, tricky_events(BASE));
    harness.settings.page_size = page_size;
    let expected = harness.expected();

    let first = harness.try_sync().await;
    if let Some(error) = first.error {
        return Err(format!("first sync failed: {error}"));
    }
    check_exactly_once(&expected, &first.delivered).map_err(|e| format!("first sync: {e}"))?;
    let second = harness.try_sync().await;
    if let Some(error) = second.error {
        return Err(format!("second sync failed: {error}"));
    }
    if !second.delivered.is_empty() {
        return Err(format!(
            "second sync delivered {} events again, first: {:?}",
            second.delivered.len(),
            second.delivered[0]
        ));
    }
    if fault.is_some() {
        let faulted = harness
            .sim
            .requests()
            .iter()
            .filter(|r| r.fault.is_some())
            .count();
        if faulted == 0 {
            return Err("no fault was served; the case tests nothing".to_owned());
        }
    }
    Ok(())
}

const BOUNDS: [(bool, bool); 4] = [(true, true), (true, false), (false, true), (false, false)];

/// Without a fault: every (bounds, offset, page size) combination, 24 in
/// all. With one: every (offset, page size) combination, the bounds turning
/// through their four combinations (so every fault meets every bound, offset
/// and page model), 6 cases; crossing all of it would only repeat the same
/// retry path at several times the run time.
async fn run_matrix(fault: Option<Fault>, turn: usize) {
    let mut failures = Vec::new();
    let mut cases = 0;
    let mut combinations = Vec::new();
    for (i, (offset_mode, page)) in OFFSETS
        .iter()
        .flat_map(|o| PAGES.iter().map(move |p| (*o, *p)))
        .enumerate()
    {
        match fault {
            None => combinations.extend(BOUNDS.iter().map(|b| (*b, offset_mode, page))),
            Some(_) => combinations.push((BOUNDS[(i + turn) % BOUNDS.len()], offset_mode, page)),
        }
    }
    for ((start_inclusive, end_inclusive), offset_mode, page) in combinations {
        cases += 1;
        if let Err(problem) =
            run_case(start_inclusive, end_inclusive, offset_mode, page, fault).await
        {
            failures.push(format!(
                "start_inclusive={start_inclusive} end_inclusive={end_inclusive} \
                 offset={offset_mode:?} limit={} served={:?} fault={fault:?}: {problem}",
                page.0, page.1
            ));
        }
    }
    assert!(cases >= 6);
    assert!(
        failures.is_empty(),
        "{} of {cases} combinations failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn every_paging_model_without_faults() {
    run_matrix(None, 0).await;
}

#[tokio::test]
async fn every_paging_model_with_429_retry_after_zero() {
    run_matrix(Some(Fault::TooManyRequests), 0).await;
}

#[tokio::test]
async fn every_paging_model_with_500() {
    run_matrix(Some(Fault::InternalError), 1).await;
}

#[tokio::test]
async fn every_paging_model_with_503() {
    run_matrix(Some(Fault::Unavailable), 2).await;
}

#[tokio::test]
async fn every_paging_model_with_502_html() {
    run_matrix(Some(Fault::BadGatewayHtml), 3).await;
}

#[tokio::test]
async fn every_paging_model_with_truncated_body() {
    run_matrix(Some(Fault::TruncatedBody), 4).await;
}

#[tokio::test]
async fn every_paging_model_with_dropped_connection() {
    run_matrix(Some(Fault::DroppedConnection), 5).await;
}
