//! End-to-end tests of the webhook sink: the real `runner` binary posting chat alerts to a
//! double that answers like Slack's incoming webhooks (`crates/doubles`), fed by the
//! ModelArts simulator, with real SQLite state, all on 127.0.0.1.
//!
//! What is under test is the alerting promise as a user meets it: one readable message
//! per service for a failing rollout (not one per event), only `abnormal` events, none of
//! a service's history, nothing again on an idle re-run; a removed hook fails the run with
//! the positions kept and nothing dead-lettered, so the alerts are posted once the hook is
//! back; a message the platform refuses lands in the dead-letter file with its events; and
//! `--dry-run --sink NAME` shows the messages without posting them.

#![allow(clippy::unwrap_used)]

mod support;

use doubles::webhook::{Fault, WebhookDouble, WebhookSettings};
use serde_json::Value;
use simulator::{SimConfig, SimEvent, SimHandle, Spread};
use std::time::Duration;
use support::{ConfigText, Dir, RunOutput, read_jsonl, start_sim, state_json, toml_str};

const MINUTE: i64 = 60_000;
const DEAD_LETTERS: &str = "state/dead-letter/slack.jsonl";

/// `services` services whose synthetic history ended two hours ago: older than the chat
/// presets' `max_age` of one hour.
fn sim_with_history(services: usize, seed: u64) -> SimHandle {
    start_sim(SimConfig {
        services,
        events_per_service: 30,
        seed,
        end_at_ms: Some(record::now_ms() - 120 * MINUTE),
        spread: Spread::Uniform { step_ms: 1_000 },
        ..SimConfig::default()
    })
}

/// A failing rollout on `service`: `abnormal` events `rollout <tag> failed <i>` and
/// `normal` ones in between, within the last few minutes. Returns the time of the first.
fn rollout(sim: &SimHandle, service: &str, tag: &str, failures: usize) -> i64 {
    let now = record::now_ms();
    let mut events = Vec::new();
    for i in 0..failures {
        let at = now - 5 * MINUTE + i as i64 * 1_000;
        events.push(SimEvent::new(
            at,
            "abnormal",
            &format!("rollout {tag} failed {i}: image \"ml/app:1.4\" <not found> & retrying"),
        ));
        events.push(SimEvent::new(
            at + 500,
            "normal",
            &format!("rollout {tag} step {i}"),
        ));
    }
    sim.add_events(service, events);
    now - 5 * MINUTE
}

/// A Slack double without Slack's one-message-per-second limit getting in a test's way
/// (the limit itself is tested in `crates/sink/tests/webhook.rs`).
fn slack() -> WebhookDouble {
    WebhookDouble::start(WebhookSettings::slack().limits(&[(1_000, Duration::from_secs(1))]))
        .unwrap()
}

/// A Slack sink posting to `double`, with fast retries.
fn slack_sink(config: ConfigText, double: &WebhookDouble) -> ConfigText {
    config.sink(
        "slack",
        "webhook",
        &[
            ("format", toml_str("slack")),
            ("url", toml_str(&double.url())),
            (
                "rate_limit",
                "[{ messages = 1000, per = \"1s\" }]".to_owned(),
            ),
            ("retry.initial_backoff", toml_str("5ms")),
            ("retry.max_backoff", toml_str("50ms")),
            ("retry.max_attempts", "3".to_owned()),
        ],
    )
}

/// `runner sync` that exits 1, without a panic, saying the `slack` sink failed.
fn sync_failing_slack(dir: &Dir, config_arg: &str) -> RunOutput {
    let failed = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(1);
    failed.assert_no_panic();
    assert!(
        failed.stderr.contains("sink slack (webhook)") && failed.stderr.contains("FAILED"),
        "{}",
        failed.stderr
    );
    failed
}

/// The channel gets a new hook: the config points the `slack` sink at a new double and
/// `runner sync` succeeds. Returns the double and the config's path.
fn sync_with_a_new_hook(dir: &Dir, sim: &SimHandle) -> (WebhookDouble, std::path::PathBuf) {
    let slack = slack();
    let config_path = dir.write_config(&slack_sink(ConfigText::for_sim(sim), &slack));
    dir.command(&["sync", "--config", config_path.to_str().unwrap()])
        .expect_code(0);
    (slack, config_path)
}

/// `runner state --json`: the positions of sink `sink`, one per service.
fn positions(dir: &Dir, config_arg: &str, sink: &str) -> Vec<Value> {
    let state = state_json(dir, config_arg);
    let mut positions: Vec<Value> = state["positions"]
        .as_array()
        .unwrap_or_else(|| panic!("no positions in {state}"))
        .iter()
        .filter(|p| p["sink"] == sink)
        .cloned()
        .collect();
    positions.sort_by_key(|p| p["service_id"].as_str().unwrap_or_default().to_owned());
    positions
}

// A failing rollout on three services reaches Slack as one message per service with
// every failure of it and none of the normal events or of the two-hour-old history; an
// idle re-run posts nothing; a new failure is one more message.
#[test]
fn failures_reach_slack_once_grouped_per_service_and_an_idle_run_posts_nothing() {
    let dir = Dir::new("webhook-slack");
    let sim = sim_with_history(3, 801);
    let services = sim.service_ids();
    for (i, service) in services.iter().enumerate() {
        let _ = rollout(&sim, service, &format!("s{i}"), 3);
    }
    let slack = slack();
    let config = slack_sink(ConfigText::for_sim(&sim), &slack);
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();

    let first = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(0);
    first.assert_no_panic();
    let texts = slack.texts();
    assert_eq!(texts.len(), 3, "one message per service: {texts:#?}");
    for i in 0..3 {
        let tag = format!("rollout s{i} ");
        let message: Vec<&String> = texts.iter().filter(|t| t.contains(&tag)).collect();
        assert_eq!(message.len(), 1, "service {i} in one message: {texts:#?}");
        for failure in 0..3 {
            let line = format!(
                "rollout s{i} failed {failure}: image \"ml/app:1.4\" <not found> & retrying"
            );
            assert!(message[0].contains(&line), "{line} missing: {}", message[0]);
        }
        assert!(
            !message[0].contains("step"),
            "a normal event was posted: {}",
            message[0]
        );
    }
    // The history is acknowledged without a post, and the summary says so.
    assert!(
        first.stderr.contains("too_old_to_alert"),
        "{}",
        first.stderr
    );
    assert_eq!(positions(&dir, config_arg, "slack").len(), 3);

    let idle = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(0);
    assert_eq!(
        slack.requests().len(),
        3,
        "an idle run posted:\n{}",
        idle.stderr
    );
    // Normal events the sink filters out are not "new" on every re-read of the lookback.
    let summaries = idle.summaries();
    assert_eq!(summaries.len(), 3, "{}", idle.stderr);
    assert!(summaries.iter().all(|s| s.new == 0), "{}", idle.stderr);

    let _ = rollout(&sim, &services[1], "again", 1);
    dir.command(&["sync", "--config", config_arg])
        .expect_code(0);
    let texts = slack.texts();
    assert_eq!(texts.len(), 4, "{texts:#?}");
    assert!(texts[3].contains("rollout again failed 0"), "{}", texts[3]);
    assert!(!dir.exists(DEAD_LETTERS));
}

// A hook removed in Slack fails the sink for the run: exit 1, no retry loop, nothing
// dead-lettered, no position moved. Once a working hook is configured the alerts are
// posted. A message Slack refuses as such (`invalid_payload`) goes to the dead-letter file
// with its events, and the run exits 1.
#[test]
fn a_removed_hook_keeps_the_positions_and_a_refused_message_is_dead_lettered() {
    let dir = Dir::new("webhook-refusals");
    let sim = sim_with_history(2, 802);
    let services = sim.service_ids();
    let first_failure = rollout(&sim, &services[0], "a", 2);
    let removed = slack();
    removed.remove_hook();
    let config_path = dir.write_config(&slack_sink(ConfigText::for_sim(&sim), &removed));
    let config_arg = config_path.to_str().unwrap();

    let failed = sync_failing_slack(&dir, config_arg);
    assert_eq!(
        removed.requests().len(),
        1,
        "a removed hook was retried:\n{}",
        failed.stderr
    );
    assert!(
        !failed.stderr.contains(removed.token()),
        "{}",
        failed.stderr
    );
    assert!(!dir.exists(DEAD_LETTERS));
    // The history was acknowledged without a post (too old to alert), so a position may
    // move through it, but never up to the failures the hook did not take.
    let kept = positions(&dir, config_arg, "slack");
    for position in &kept {
        if position["service_id"] == services[0].as_str()
            && let Some(at) = position["position"].as_i64()
        {
            assert!(
                at < first_failure,
                "the position passed an unposted alert: {kept:#?}"
            );
        }
    }

    // The channel gets a new hook: the same alerts are posted, once.
    let (slack, config_path) = sync_with_a_new_hook(&dir, &sim);
    let config_arg = config_path.to_str().unwrap();
    let texts = slack.texts();
    assert_eq!(texts.len(), 1, "{texts:#?}");
    assert!(texts[0].contains("rollout a failed 1"), "{}", texts[0]);

    // Slack refuses the next message as such: it goes to the dead-letter file with its
    // events, the positions move past them, and the run says it failed.
    let _ = rollout(&sim, &services[1], "b", 2);
    slack.fail_next(Fault::BadPayload);
    let refused = dir
        .command(&["sync", "--config", config_arg])
        .expect_code(1);
    refused.assert_no_panic();
    let dead: Vec<Value> = read_jsonl(&dir.join(DEAD_LETTERS));
    let infos: Vec<&str> = dead
        .iter()
        .map(|d| d["record"]["event_info"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(infos.len(), 2, "{dead:#?}");
    assert!(
        infos.iter().all(|i| i.starts_with("rollout b failed")),
        "{infos:?}"
    );
    dir.command(&["sync", "--config", config_arg])
        .expect_code(0);
    assert_eq!(
        slack.texts().len(),
        1,
        "a dead-lettered message was posted again"
    );
}

// A hook removed in the middle of a batch: the message posted before stays delivered, the
// rest of the batch waits for the next run, and the sink fails at once. Nothing is retried,
// and nothing says it is ("Delivery failed; retrying" was logged before a retry that could
// only fail). With a working hook the rest is posted, and what was posted is not posted again.
#[test]
fn a_hook_removed_mid_batch_fails_the_sink_without_a_retry() {
    let dir = Dir::new("webhook-removed-mid-batch");
    let sim = sim_with_history(1, 803);
    let service = sim.service_ids().remove(0);
    let _ = rollout(&sim, &service, "a", 25);
    let removed = slack();
    removed.remove_hook_after(1);
    let config_path = dir.write_config(&slack_sink(ConfigText::for_sim(&sim), &removed));
    let config_arg = config_path.to_str().unwrap();
    let failed = sync_failing_slack(&dir, config_arg);
    assert!(
        !failed.stderr.contains("retrying"),
        "a send that can only fail was retried:\n{}",
        failed.stderr
    );
    assert_eq!(removed.requests().len(), 2, "{}", failed.stderr);
    let posted = removed.texts();
    assert_eq!(posted.len(), 1, "{posted:#?}");
    assert!(posted[0].contains("rollout a failed 0"), "{}", posted[0]);
    assert!(!dir.exists(DEAD_LETTERS));

    let (slack, _) = sync_with_a_new_hook(&dir, &sim);
    let texts = slack.texts();
    let all = texts.join("\n");
    assert!(all.contains("rollout a failed 24"), "{all}");
    for text in &texts {
        assert!(
            !text.contains("rollout a failed 0:"),
            "a posted alert was posted again: {text}"
        );
    }
}

// `--dry-run --sink slack` prints the message Slack would get, posts nothing and moves no
// position; an unknown sink name is a usage error.
#[test]
fn a_dry_run_of_one_sink_shows_its_messages_and_posts_nothing() {
    let dir = Dir::new("webhook-dry-run");
    let sim = sim_with_history(2, 803);
    let services = sim.service_ids();
    let _ = rollout(&sim, &services[0], "d", 2);
    let slack = slack();
    let config =
        slack_sink(ConfigText::for_sim(&sim), &slack).file_sink("archive", "out/all.jsonl");
    let config_path = dir.write_config(&config);
    let config_arg = config_path.to_str().unwrap();

    let dry = dir
        .command(&[
            "sync",
            "--config",
            config_arg,
            "--dry-run",
            "--sink",
            "slack",
        ])
        .expect_code(0);
    assert!(dry.stdout.contains("--- message 1 of 1"), "{}", dry.stdout);
    assert!(dry.stdout.contains("rollout d failed 1"), "{}", dry.stdout);
    assert!(!dry.stdout.contains("rollout d step"), "{}", dry.stdout);
    assert!(
        dry.stdout
            .contains("acknowledged without a message (too_old_to_alert)"),
        "{}",
        dry.stdout
    );
    assert!(!dry.stdout.contains(slack.token()), "{}", dry.stdout);
    assert!(slack.requests().is_empty());
    assert!(!dir.exists("out/all.jsonl") && !dir.exists("state"));

    let unknown = dir
        .command(&[
            "sync",
            "--config",
            config_arg,
            "--dry-run",
            "--sink",
            "teams",
        ])
        .expect_code(2);
    assert!(
        unknown.stderr.contains("--sink teams: no such sink"),
        "{}",
        unknown.stderr
    );
}
