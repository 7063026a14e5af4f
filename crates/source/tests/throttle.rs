//! Adaptive throttling over real HTTP (invariant 7): a source that the
//! gateway throttles slows down, keeps making progress, finishes its pull,
//! and speeds up again once the throttling stops.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::{Harness, check_exactly_once, pull_all, uniform_events};
use simulator::{Behaviour, Fault, FaultRule};
use source::ModelArtsClient;
use source::rate::{RECOVERY_FACTOR, RECOVERY_RUN};

const BASE: i64 = 1_700_000_000_000;

/// A simulator answering `faults` with 429s that say `Retry-After: 0`, and a
/// source capped at `rate` requests per second with tiny backoff.
fn throttled(faults: Vec<FaultRule>, events: i64, rate: f64) -> Harness {
    let behaviour = Behaviour {
        retry_after_secs: 0,
        faults,
        ..Behaviour::default()
    };
    let mut harness = Harness::start(behaviour, uniform_events(BASE, events));
    harness.settings.max_requests_per_second = rate;
    harness
}

fn answered(harness: &Harness, status: u16) -> i32 {
    harness
        .sim
        .requests()
        .iter()
        .filter(|r| r.status == status)
        .count() as i32
}

#[tokio::test]
async fn a_source_throttled_on_every_second_request_completes_its_pull() {
    let configured = 1_000_000.0;
    let mut harness = throttled(
        vec![FaultRule::every(Fault::TooManyRequests, 2)],
        60,
        configured,
    );
    // Few retries: each request is throttled at most once, so a source that
    // keeps going never runs out of them.
    harness.settings.max_retries = 2;
    let client = ModelArtsClient::new(&harness.settings).unwrap();
    let delivered = pull_all(&client, &harness.sim.project_id(), 10)
        .await
        .unwrap();
    check_exactly_once(&harness.expected(), &delivered).unwrap();
    let throttles = answered(&harness, 429);
    assert!(throttles >= 5, "{throttles} throttled requests");
    // Never ten successes in a row: every 429 halved the rate, none raised it.
    assert_eq!(client.current_rate(), configured / 2f64.powi(throttles));
}

#[tokio::test]
async fn the_rate_recovers_after_a_run_of_successes() {
    let configured = 1_000_000.0;
    let harness = throttled(
        vec![FaultRule::at_each(Fault::TooManyRequests, vec![1, 2])],
        200,
        configured,
    );
    let client = ModelArtsClient::new(&harness.settings).unwrap();
    let delivered = pull_all(&client, &harness.sim.project_id(), 10)
        .await
        .unwrap();
    check_exactly_once(&harness.expected(), &delivered).unwrap();
    assert_eq!(answered(&harness, 429), 2);
    let successes = answered(&harness, 200);
    assert!(
        successes >= 2 * RECOVERY_RUN as i32,
        "{successes} successes"
    );
    // Halved twice, then up by half after each run of successes, capped.
    let raised = configured / 4.0 * RECOVERY_FACTOR.powi(successes / RECOVERY_RUN as i32);
    assert_eq!(client.current_rate(), raised.min(configured));
    assert!(client.current_rate() > configured / 4.0);
}

#[tokio::test]
async fn only_throttling_lowers_the_rate() {
    // 503 is retried but is not throttling: the rate stays.
    let harness = throttled(vec![FaultRule::at(Fault::Unavailable, 1)], 5, 100.0);
    let client = ModelArtsClient::new(&harness.settings).unwrap();
    pull_all(&client, &harness.sim.project_id(), 10)
        .await
        .unwrap();
    assert_eq!(client.current_rate(), 100.0);
    // A 429 halves it.
    let harness = throttled(vec![FaultRule::at(Fault::TooManyRequests, 1)], 5, 100.0);
    let client = ModelArtsClient::new(&harness.settings).unwrap();
    pull_all(&client, &harness.sim.project_id(), 10)
        .await
        .unwrap();
    assert_eq!(client.current_rate(), 50.0);
}
