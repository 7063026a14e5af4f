//! The webhook sink against the platform doubles over real HTTP on 127.0.0.1: what each
//! platform receives (grouping, the cap per message, readable and escaped text), the
//! filters and `max_age` of the chat presets, the rate limits under a burst, the
//! signatures (right and wrong secrets), what is dead-lettered and what stops the sink,
//! and that a webhook URL never shows in errors or logs. The sink is read from TOML and
//! built as the runner does; [`drive`] plays the delivery engine's part (retries,
//! per-record outcomes) so a test sees what a run would end with.
//!
//! Each test installs the TLS crypto provider first (`tls_provider::install`): the runner
//! does it in `main`.

#![allow(clippy::unwrap_used)]

use doubles::webhook::{Fault, GenericSignature, Received, WebhookDouble, WebhookSettings};
use record::{EventRecord, IdParts, SharedRecord};
use sink::config::{ConfigContext, ConfigIssue};
use sink::webhook::{KIND, WebhookConfig};
use sink::{Sink, SinkError, SinkFilter};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use toml::Spanned;
use toml::de::DeTable;

/// Markdown, HTML, JSON and chat syntax, a newline, a backslash and non-ASCII text.
const NASTY: &str = "quote \" <b>bold</b> & *star* _under_ `tick` ~strike~ > cite <@U123> <!here> [link](x)\nline 2 \\ 部署失败 ✅ Ünïcödé";
const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The sink `alerts` of a config file in `/etc/shipper`; `${VAR}` from a fixed list.
struct Context(BTreeMap<&'static str, String>);

impl ConfigContext for Context {
    fn sink_name(&self) -> &str {
        "alerts"
    }

    fn expand(&self, value: &Spanned<String>, _field: &str) -> Result<String, ConfigIssue> {
        let mut text = value.get_ref().clone();
        for (name, found) in &self.0 {
            text = text.replace(&format!("${{{name}}}"), found);
        }
        Ok(text)
    }

    fn path(&self, value: &Spanned<String>, field: &str) -> Result<PathBuf, ConfigIssue> {
        Ok(Path::new("/etc/shipper").join(self.expand(value, field)?))
    }

    fn state_dir(&self) -> &Path {
        Path::new("/var/lib/shipper")
    }
}

/// The config of a webhook sink: `format`, the URL in `${HOOK_URL}` (as a user would
/// write it), and `keys`.
fn config(format: &str, url: &str, keys: &str) -> WebhookConfig {
    let text = format!("format = \"{format}\"\nurl = \"${{HOOK_URL}}\"\n{keys}");
    let table = DeTable::parse(&text).unwrap();
    let context = Context(BTreeMap::from([("HOOK_URL", url.to_owned())]));
    let config = (KIND.read)(table, &context).unwrap();
    config
        .as_any()
        .downcast_ref::<WebhookConfig>()
        .unwrap()
        .clone()
}

async fn build(config: &WebhookConfig) -> Arc<dyn Sink> {
    tls_provider::install();
    sink::SinkConfig::build(config, "alerts", sink::BuildContext::default())
        .await
        .unwrap()
        .sink
}

/// A sink posting to `double` in `format`, without a rate limit of its own unless
/// `keys` sets one.
async fn sink_for(double: &WebhookDouble, format: &str, keys: &str) -> Arc<dyn Sink> {
    let keys = if keys.contains("rate_limit =") {
        keys.to_owned()
    } else {
        format!("rate_limit = []\n{keys}")
    };
    build(&config(format, &double.url(), &keys)).await
}

fn start(settings: WebhookSettings) -> WebhookDouble {
    WebhookDouble::start(settings).unwrap()
}

fn event(service: &str, occur_time: i64, event_type: &str, info: &str) -> SharedRecord {
    EventRecord::new(
        "prod",
        service,
        IdParts {
            project_id: PROJECT,
            service_id: &format!("id-{service}"),
            occur_time,
            event_type,
            event_info: info,
            twin: 1,
        },
    )
    .into()
}

fn now() -> i64 {
    record::now_ms()
}

/// What a run made of a batch: the engine's part, as `pipeline::driver::send_batch`
/// does it (whole-batch retries honouring `Retry-After`, item retries alone).
#[derive(Debug, Default)]
struct Run {
    delivered: BTreeSet<usize>,
    rejected: BTreeMap<usize, String>,
    skipped: BTreeMap<usize, &'static str>,
    /// Records without an outcome: they hold their positions.
    unresolved: BTreeSet<usize>,
    failure: Option<SinkError>,
    sends: usize,
}

async fn drive(sink: &dyn Sink, batch: &[SharedRecord]) -> Run {
    let mut run = Run::default();
    let mut pending: Vec<usize> = (0..batch.len()).collect();
    for _attempt in 0..8 {
        let records: Vec<SharedRecord> = pending.iter().map(|&i| batch[i].clone()).collect();
        run.sends += 1;
        match sink.send(&records).await {
            Ok(delivery) => {
                let mut again = BTreeSet::new();
                for item in &delivery.retry {
                    again.insert(pending[item.index]);
                }
                for rejection in &delivery.rejected {
                    run.rejected
                        .insert(pending[rejection.index], rejection.reason.clone());
                }
                for skip in &delivery.skipped {
                    run.skipped.insert(pending[skip.index], skip.kind);
                }
                for &index in &pending {
                    if !again.contains(&index)
                        && !run.rejected.contains_key(&index)
                        && !run.skipped.contains_key(&index)
                    {
                        run.delivered.insert(index);
                    }
                }
                pending = again.into_iter().collect();
                if let Some(stopped) = &delivery.stopped {
                    // The rest waits: no retry can mend a stop.
                    run.failure = Some(stopped.error(sink.name()));
                    break;
                }
                if pending.is_empty() {
                    return run;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(error) if error.is_retryable() => {
                let wait = error
                    .retry_after()
                    .unwrap_or(Duration::from_millis(10))
                    .min(Duration::from_secs(2));
                tokio::time::sleep(wait).await;
            }
            Err(error) => {
                run.failure = Some(error);
                break;
            }
        }
    }
    run.unresolved = pending.into_iter().collect();
    run
}

/// The platforms and their doubles, each with what the sink needs to post to it.
fn platforms() -> Vec<(&'static str, WebhookSettings, &'static str)> {
    vec![
        ("slack", WebhookSettings::slack(), ""),
        ("teams", WebhookSettings::teams(), ""),
        (
            "feishu",
            WebhookSettings::feishu().signed("feishu-SECRET", GenericSignature::None),
            "secret = \"feishu-SECRET\"\n",
        ),
        (
            "dingtalk",
            WebhookSettings::dingtalk().signed("SECdingtalk-SECRET", GenericSignature::None),
            "secret = \"SECdingtalk-SECRET\"\n",
        ),
        ("wecom", WebhookSettings::wecom(), ""),
        (
            "json",
            WebhookSettings::generic().signed(WHSEC, GenericSignature::Standard),
            "secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
        ),
    ]
}

#[tokio::test]
async fn every_format_lands_on_its_double_with_the_text_exactly_as_it_was() {
    for (format, settings, keys) in platforms() {
        let double = start(settings.limits(&[]));
        let sink = sink_for(&double, format, keys).await;
        let batch = [event("svc <&> \"x\" *y*", now(), "abnormal", NASTY)];
        let run = drive(sink.as_ref(), &batch).await;
        assert_eq!(run.delivered, BTreeSet::from([0]), "{format}: {run:?}");
        let accepted = double.accepted();
        assert_eq!(accepted.len(), 1, "{format}: {:?}", double.requests());
        let text = accepted[0].text.clone().unwrap();
        if format == "json" {
            let body: serde_json::Value = serde_json::from_slice(&accepted[0].body).unwrap();
            assert_eq!(body["events"][0]["event_info"], NASTY, "{format}");
            assert_eq!(body["events"][0]["service_name"], "svc <&> \"x\" *y*");
        } else {
            // What people read: the text as it was, the service, the source and project.
            assert!(text.contains(NASTY), "{format}: {text}");
            assert!(text.contains("svc <&> \"x\" *y*"), "{format}: {text}");
            assert!(text.contains("abnormal"), "{format}: {text}");
            assert!(text.contains("Source: prod"), "{format}: {text}");
            assert!(text.contains(PROJECT), "{format}: {text}");
            assert!(text.contains(" UTC"), "{format}: {text}");
        }
    }
}

#[tokio::test]
async fn slack_gets_one_message_per_service_with_at_most_the_cap() {
    let double = start(WebhookSettings::slack().limits(&[]));
    let sink = sink_for(&double, "slack", "max_events_per_message = 5\n").await;
    let t = now();
    // billing: 12 events, search: 2, interleaved.
    let mut batch = Vec::new();
    for i in 0..12 {
        batch.push(event(
            "billing",
            t - 1000 + i,
            "abnormal",
            &format!("billing failure {i}"),
        ));
        if i < 2 {
            batch.push(event(
                "search",
                t - 1000 + i,
                "abnormal",
                &format!("search failure {i}"),
            ));
        }
    }
    let run = drive(sink.as_ref(), &batch).await;
    assert_eq!(run.delivered.len(), 14);
    let texts = double.texts();
    // 5 + 5 + 2 of billing, then search's 2.
    assert_eq!(texts.len(), 4, "{texts:#?}");
    let count = |text: &str, needle: &str| text.matches(needle).count();
    assert_eq!(count(&texts[0], "billing failure"), 5);
    assert!(
        texts[0].starts_with("ModelArts billing: 5 abnormal events"),
        "{}",
        texts[0]
    );
    assert_eq!(count(&texts[1], "billing failure"), 5);
    assert_eq!(count(&texts[2], "billing failure"), 2);
    assert!(
        texts[3].starts_with("ModelArts search: 2 abnormal events"),
        "{}",
        texts[3]
    );
    assert!(
        texts
            .iter()
            .all(|t| !(t.contains("billing") && t.contains("search failure")))
    );
    // In time order within the service.
    let first = texts[0].find("billing failure 0").unwrap();
    assert!(first < texts[0].find("billing failure 4").unwrap());
    // Slack's notification text is escaped the Slack way, and the blocks are plain text.
    let body = double.accepted()[0].json.clone().unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("ModelArts billing")
    );
    assert_eq!(body["blocks"][0]["type"], "header");
    assert_eq!(body["blocks"][1]["text"]["type"], "plain_text");
}

#[tokio::test]
async fn chat_presets_take_abnormal_events_unless_told_otherwise() {
    let t = now();
    let batch = [
        event("a", t, "normal", "deployed"),
        event("a", t, "abnormal", "failed"),
        event("a", t, "ABNORMAL", "failed loudly"),
        event("a", t, "WARNING", "odd"),
    ];
    // What the runner does: the kind's default when the table has no event_types.
    let preset = config("wecom", "https://q.example/send?key=k", "");
    let filter = SinkFilter {
        inputs: None,
        event_types: sink::SinkConfig::default_event_types(&preset),
    };
    let kept: Vec<&str> = batch
        .iter()
        .filter(|r| filter.accepts(r))
        .map(|r| r.event_info.as_str())
        .collect();
    assert_eq!(kept, ["failed", "failed loudly"]);
    // The generic format takes every type; an explicit list wins over the default.
    let json = config("json", "https://h.example/in", "");
    assert_eq!(sink::SinkConfig::default_event_types(&json), None);
    let explicit = SinkFilter {
        inputs: None,
        event_types: Some(vec!["normal".to_owned()]),
    };
    assert_eq!(batch.iter().filter(|r| explicit.accepts(r)).count(), 1);
    // And only what the filter lets through is posted.
    let double = start(WebhookSettings::wecom().limits(&[]));
    let sink = sink_for(&double, "wecom", "").await;
    let wanted: Vec<SharedRecord> = batch
        .iter()
        .filter(|r| filter.accepts(r))
        .cloned()
        .collect();
    drive(sink.as_ref(), &wanted).await;
    let texts = double.texts();
    assert_eq!(texts.len(), 1);
    assert!(texts[0].contains("failed loudly") && !texts[0].contains("deployed"));
}

#[tokio::test]
async fn events_older_than_max_age_are_acknowledged_without_a_post() {
    let double = start(WebhookSettings::dingtalk().limits(&[]));
    let sink = sink_for(&double, "dingtalk", "").await;
    let t = now();
    let batch = [
        event("a", t - 2 * 3_600_000, "abnormal", "history"),
        event("a", t - 1000, "abnormal", "fresh"),
        event("b", t - 3_700_000, "abnormal", "history too"),
    ];
    let run = drive(sink.as_ref(), &batch).await;
    assert_eq!(
        run.skipped,
        BTreeMap::from([(0, "too_old_to_alert"), (2, "too_old_to_alert")])
    );
    assert_eq!(run.delivered, BTreeSet::from([1]));
    assert!(run.rejected.is_empty());
    let texts = double.texts();
    assert_eq!(texts.len(), 1);
    assert!(texts[0].contains("fresh") && !texts[0].contains("history"));
    // A batch of history alone posts nothing.
    let run = drive(sink.as_ref(), &batch[..1]).await;
    assert_eq!(run.skipped.len(), 1);
    assert_eq!(double.requests().len(), 1);
}

#[tokio::test]
async fn an_idle_send_posts_nothing() {
    let double = start(WebhookSettings::slack());
    let sink = sink_for(&double, "slack", "").await;
    let delivery = sink.send(&[]).await.unwrap();
    assert_eq!(delivery, sink::Delivery::all_accepted());
    assert!(double.requests().is_empty());
}

/// The most accepted posts in any window of each limit, with the limits.
fn windows(double: &WebhookDouble, limits: &[(usize, Duration)]) -> Vec<(usize, usize)> {
    limits
        .iter()
        .map(|(messages, per)| (double.most_in_window(*per), *messages))
        .collect()
}

#[tokio::test]
async fn a_burst_of_200_events_across_20_services_keeps_every_platform_limit() {
    // Each platform's shape of limit, shortened: Slack and Teams one window, Feishu two,
    // DingTalk a window and a penalty, WeCom a window. The doubles refuse anything over.
    let ms = Duration::from_millis;
    type Limits = Vec<(usize, Duration)>;
    let cases: Vec<(&str, WebhookSettings, Limits, &str)> = vec![
        ("slack", WebhookSettings::slack(), vec![(4, ms(100))], ""),
        ("teams", WebhookSettings::teams(), vec![(4, ms(100))], ""),
        (
            "feishu",
            WebhookSettings::feishu(),
            vec![(5, ms(100)), (12, ms(400))],
            "",
        ),
        (
            "dingtalk",
            WebhookSettings {
                penalty: Duration::from_secs(600),
                ..WebhookSettings::dingtalk()
            },
            vec![(6, ms(150))],
            "rate_limit_penalty = \"10m\"\n",
        ),
        ("wecom", WebhookSettings::wecom(), vec![(6, ms(150))], ""),
    ];
    let t = now();
    // 20 services × 10 abnormal events, interleaved as pages of several services arrive.
    let batch: Vec<SharedRecord> = (0..200)
        .map(|i| {
            let service = format!("service-{:02}", i % 20);
            event(
                &service,
                t - 60_000 + i64::from(i),
                "abnormal",
                &format!("failure {i}"),
            )
        })
        .collect();
    // The platforms at once, each with its own double and sink.
    let runs: Vec<_> = cases
        .into_iter()
        .map(|(format, settings, limits, extra)| {
            let batch = batch.clone();
            tokio::spawn(async move {
                let double = start(settings.limits(&limits));
                let rate_limit: Vec<String> = limits
                    .iter()
                    .map(|(n, per)| {
                        format!("{{ messages = {n}, per = \"{}ms\" }}", per.as_millis())
                    })
                    .collect();
                let keys = format!(
                    "max_events_per_message = 4\nrate_limit = [{}]\n{extra}",
                    rate_limit.join(", ")
                );
                let sink = sink_for(&double, format, &keys).await;
                let run = drive(sink.as_ref(), &batch).await;
                (format, double, limits, run)
            })
        })
        .collect();
    for handle in runs {
        let (format, double, limits, run) = handle.await.unwrap();
        // Nothing lost, nothing refused, the run ended.
        assert_eq!(run.delivered.len(), 200, "{format}: {run:?}");
        assert!(
            run.failure.is_none() && run.unresolved.is_empty(),
            "{format}"
        );
        assert_eq!(run.sends, 1, "{format}: one send, never throttled");
        assert_eq!(double.refused(Fault::RateLimited), 0, "{format}");
        // 20 services × (4 + 4 + 2) events: 60 messages.
        assert_eq!(double.accepted().len(), 60, "{format}");
        for (seen, limit) in windows(&double, &limits) {
            assert!(
                seen <= limit,
                "{format}: {seen} posts in a window of {limit}"
            );
        }
        // Every event is in exactly one message.
        let texts = double.texts().join("\n");
        for i in 0..200 {
            assert_eq!(
                texts.matches(&format!("failure {i}\n")).count(),
                1,
                "{format}: failure {i}"
            );
        }
    }
}

/// The gap between the refused post and the next accepted one, as the double saw it.
fn gap_after_refusal(requests: &[Received]) -> Duration {
    let refused = requests.iter().position(|r| !r.accepted()).unwrap();
    let next = requests[refused..].iter().find(|r| r.accepted()).unwrap();
    next.at.duration_since(requests[refused].at)
}

#[tokio::test]
async fn a_slack_429_is_retried_after_its_retry_after() {
    // The sink does not pace itself here, so the double's limit answers 429.
    let double = start(WebhookSettings {
        retry_after: 1,
        ..WebhookSettings::slack().limits(&[(1, Duration::from_millis(900))])
    });
    let sink = sink_for(&double, "slack", "rate_limit = []\n").await;
    let t = now();
    let batch = [
        event("a", t, "abnormal", "one"),
        event("b", t, "abnormal", "two"),
    ];
    let run = drive(sink.as_ref(), &batch).await;
    assert_eq!(run.delivered.len(), 2, "{run:?}");
    let requests = double.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[1].status, 429);
    assert_eq!(double.refused(Fault::RateLimited), 1);
    // Retry-After: 1 was honoured before the next post.
    assert!(gap_after_refusal(&requests) >= Duration::from_secs(1));
}

#[tokio::test]
async fn a_dingtalk_throttle_is_waited_out_for_the_configured_penalty() {
    // DingTalk throttles the robot after its limit (here 2 a second, for 500 ms); the
    // sink, told to wait 1200 ms after "send too fast", posts again only then.
    let double = start(WebhookSettings {
        penalty: Duration::from_millis(500),
        ..WebhookSettings::dingtalk().limits(&[(2, Duration::from_secs(1))])
    });
    let sink = sink_for(
        &double,
        "dingtalk",
        "rate_limit = []\nrate_limit_penalty = \"1200ms\"\n",
    )
    .await;
    let t = now();
    let batch = [
        event("a", t, "abnormal", "one"),
        event("b", t, "abnormal", "two"),
        event("c", t, "abnormal", "three"),
    ];
    let run = drive(sink.as_ref(), &batch).await;
    assert_eq!(run.delivered.len(), 3, "{run:?}");
    assert!(run.failure.is_none());
    let requests = double.requests();
    assert_eq!(double.refused(Fault::RateLimited), 1, "{requests:?}");
    let refused = requests.iter().find(|r| !r.accepted()).unwrap();
    assert!(refused.answer.contains("130101"), "{}", refused.answer);
    assert!(gap_after_refusal(&requests) >= Duration::from_millis(1200));
}

#[tokio::test]
async fn generic_posts_are_signed_per_standard_webhooks_with_a_stable_id() {
    let double = start(WebhookSettings::generic().signed(WHSEC, GenericSignature::Standard));
    let sink = sink_for(&double, "json", &format!("secret = \"{WHSEC}\"\n")).await;
    let t = now();
    let batch = [
        event("a", t, "abnormal", "x"),
        event("a", t + 1, "normal", "y"),
    ];
    // A 503 first: the retry carries the same id, signed again.
    double.fail_next(Fault::ServerError);
    let run = drive(sink.as_ref(), &batch).await;
    assert_eq!(run.delivered.len(), 2);
    let requests = double.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].status, 503);
    let (first, second) = (&requests[0], &requests[1]);
    let id = second.header("webhook-id").unwrap();
    assert!(id.starts_with("msg_") && id.len() == 36, "{id}");
    assert_eq!(first.header("webhook-id"), Some(id));
    assert_eq!(
        second.header("idempotency-key"),
        Some(format!("\"{id}\"").as_str())
    );
    let timestamp: i64 = second.header("webhook-timestamp").unwrap().parse().unwrap();
    assert!((timestamp - t / 1000).abs() < 60);
    assert!(
        second
            .header("webhook-signature")
            .unwrap()
            .starts_with("v1,")
    );
    // The body holds the records as they are.
    let body: serde_json::Value = serde_json::from_slice(&second.body).unwrap();
    assert_eq!(body["events"][0]["id"], batch[0].id.as_str());
    assert_eq!(body["events"][1]["event_type"], "normal");
    // Sending the same records again gives the same id (a receiver's dedup key).
    drive(sink.as_ref(), &batch).await;
    assert_eq!(double.duplicates(), 1);
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_every_signing_platform_and_stops_the_sink() {
    let cases = [
        (
            "json",
            WebhookSettings::generic().signed(WHSEC, GenericSignature::Standard),
            "secret = \"whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\n",
            "",
        ),
        (
            "json",
            WebhookSettings::generic()
                .signed("It's a Secret to Everybody", GenericSignature::GitHub),
            "secret = \"It's a Secret to Nobody\"\nsignature = \"github\"\n",
            "",
        ),
        (
            "feishu",
            WebhookSettings::feishu().signed("feishu-SECRET", GenericSignature::None),
            "secret = \"feishu-WRONG\"\n",
            "19021",
        ),
        (
            "dingtalk",
            WebhookSettings::dingtalk().signed("SECright", GenericSignature::None),
            "secret = \"SECwrong\"\n",
            "sign not match",
        ),
    ];
    for (format, settings, keys, says) in cases {
        let double = start(settings.limits(&[]));
        let sink = sink_for(&double, format, keys).await;
        let run = drive(sink.as_ref(), &[event("a", now(), "abnormal", "x")]).await;
        let failure = run
            .failure
            .as_ref()
            .unwrap_or_else(|| panic!("{format}: {run:?}"));
        assert!(!failure.is_retryable(), "{format}: {failure}");
        assert!(failure.to_string().contains(says), "{format}: {failure}");
        assert!(
            run.rejected.is_empty() && run.delivered.is_empty(),
            "{format}"
        );
        assert_eq!(
            run.unresolved,
            BTreeSet::from([0]),
            "{format}: the position stays"
        );
        assert_eq!(run.sends, 1, "{format}: no retry loop");
        assert_eq!(double.refused(Fault::BadSignature), 1, "{format}");
    }
    // And the right secret passes the same checks.
    let double = start(
        WebhookSettings::generic().signed("It's a Secret to Everybody", GenericSignature::GitHub),
    );
    let sink = sink_for(
        &double,
        "json",
        "secret = \"It's a Secret to Everybody\"\nsignature = \"github\"\n",
    )
    .await;
    let run = drive(sink.as_ref(), &[event("a", now(), "abnormal", "x")]).await;
    assert_eq!(run.delivered.len(), 1);
    assert!(
        double.accepted()[0]
            .header("x-hub-signature-256")
            .unwrap()
            .starts_with("sha256=")
    );
}

#[tokio::test]
async fn a_message_the_platform_refuses_goes_to_the_dead_letter_file_with_its_records() {
    for (format, settings, keys) in platforms() {
        for fault in [Fault::TooLarge, Fault::BadPayload] {
            let double = start(settings.clone().limits(&[]));
            let sink = sink_for(&double, format, keys).await;
            let t = now();
            // Two messages: a's two events, then b's.
            let batch = [
                event("a", t, "abnormal", "a1"),
                event("b", t, "abnormal", "b1"),
                event("a", t + 1, "abnormal", "a2"),
            ];
            double.fail_next(fault);
            let run = drive(sink.as_ref(), &batch).await;
            assert!(run.failure.is_none(), "{format} {fault:?}: {run:?}");
            assert_eq!(
                run.rejected.keys().copied().collect::<Vec<_>>(),
                [0, 2],
                "{format} {fault:?}"
            );
            assert_eq!(run.delivered, BTreeSet::from([1]), "{format} {fault:?}");
            let reason = &run.rejected[&0];
            assert!(
                reason.contains("refused the message"),
                "{format} {fault:?}: {reason}"
            );
            assert!(!reason.contains(double.token()), "{reason}");
        }
    }
}

#[tokio::test]
async fn a_bad_token_or_a_removed_hook_stops_the_sink_with_nothing_dead_lettered() {
    for (format, settings, keys) in platforms() {
        // A wrong token in the URL.
        let double = start(settings.clone().limits(&[]));
        let keys = format!("rate_limit = []\n{keys}");
        let sink = build(&config(
            format,
            &double.url_with_token("revoked-token"),
            &keys,
        ))
        .await;
        let batch = [
            event("a", now(), "abnormal", "x"),
            event("b", now(), "abnormal", "y"),
        ];
        let run = drive(sink.as_ref(), &batch).await;
        let failure = run.failure.unwrap_or_else(|| panic!("{format}"));
        assert!(!failure.is_retryable(), "{format}: {failure}");
        assert!(
            run.rejected.is_empty() && run.delivered.is_empty(),
            "{format}"
        );
        assert_eq!(run.unresolved.len(), 2, "{format}: positions stay");
        assert_eq!(
            double.requests().len(),
            1,
            "{format}: one request, no retry loop"
        );
        // A hook removed in the middle of a batch: what was posted stays delivered, the
        // rest waits, and the send says it stopped: the sink fails without a retry.
        let double = start(settings.clone().limits(&[]));
        let sink = sink_for(&double, format, &keys).await;
        double.remove_hook_after(1);
        let batch = [
            event("a", now(), "abnormal", "x"),
            event("b", now(), "abnormal", "y"),
            event("c", now(), "abnormal", "z"),
        ];
        let run = drive(sink.as_ref(), &batch).await;
        assert_eq!(run.delivered, BTreeSet::from([0]), "{format}: {run:?}");
        assert!(run.rejected.is_empty(), "{format}");
        assert_eq!(run.unresolved, BTreeSet::from([1, 2]), "{format}");
        let failure = run.failure.unwrap_or_else(|| panic!("{format}"));
        assert!(!failure.is_retryable(), "{format}");
        assert!(
            failure.to_string().contains("refuses the webhook itself"),
            "{failure}"
        );
        assert_eq!(run.sends, 1, "{format}: no retry of what can only fail");
        assert_eq!(
            double.requests().len(),
            2,
            "{format}: the posted message and the refused one"
        );
    }
}

#[tokio::test]
async fn a_teams_url_is_posted_byte_for_byte() {
    let double = start(WebhookSettings::teams());
    let url = double.url();
    assert!(url.contains("sp=%2Ftriggers%2Fmanual%2Frun"), "{url}");
    let sink = sink_for(&double, "teams", "").await;
    let run = drive(sink.as_ref(), &[event("a", now(), "abnormal", "x")]).await;
    assert_eq!(run.delivered.len(), 1);
    let received = &double.accepted()[0];
    assert_eq!(
        Some(received.query.clone().unwrap()),
        url.split_once('?').map(|(_, q)| q.to_owned())
    );
    assert_eq!(received.status, 202);
}

#[tokio::test]
async fn a_template_shapes_the_generic_body() {
    let double = start(WebhookSettings::generic());
    let template = r#"{"summary": {{ service_name ~ ": " ~ count ~ " event(s)" }}, "text": {{ first.event_info | json }}, "ids": {{ events | map(attribute="id") | list }}, "at": {{ first.occur_time | local_time }}}"#;
    let keys = format!("template = '''{template}'''\ntimezone = \"Europe/Berlin\"\n");
    let sink = sink_for(&double, "json", &keys).await;
    let batch = [event("billing", 1_700_000_000_000, "abnormal", NASTY)];
    let run = drive(sink.as_ref(), &batch).await;
    assert_eq!(run.delivered.len(), 1);
    let body = double.accepted()[0].json.clone().unwrap();
    assert_eq!(body["summary"], "billing: 1 event(s)");
    assert_eq!(body["text"], NASTY);
    assert_eq!(body["ids"][0], batch[0].id.as_str());
    assert_eq!(body["at"], "2023-11-14 23:13:20 CET");
}

/// Log lines written while the subscriber is the default.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_url_with_a_secret_never_appears_in_logs_or_errors() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut shown = Vec::new();
    let t = now();
    let batch = [
        event("a", t, "abnormal", "x"),
        event("b", t, "abnormal", "y"),
    ];

    // A server that echoes the request's path and query in every error it gives.
    let echo = doubles::Server::start(
        "echo",
        Arc::new(|request: hyper::Request<bytes::Bytes>| {
            let uri = request.uri().to_string();
            let status = if uri.contains("bad-payload") {
                400
            } else {
                500
            };
            doubles::text(
                hyper::StatusCode::from_u16(status).unwrap(),
                &format!("no such hook {uri}"),
            )
        }),
    )
    .unwrap();
    let secret_path = "/services/T0/B0/SECRETPATHx1y2z3";
    for (format, url) in [
        ("slack", format!("{}{secret_path}", echo.base_url())),
        (
            "wecom",
            format!("{}/send?key=SECRETKEYx1y2z3&x=bad-payload", echo.base_url()),
        ),
    ] {
        let config = config(format, &url, "rate_limit = []\n");
        shown.push(format!("{config:?}"));
        let sink = build(&config).await;
        let run = drive(sink.as_ref(), &batch).await;
        shown.extend(run.rejected.values().cloned());
        if let Some(failure) = &run.failure {
            shown.push(format!("{failure} {failure:?}"));
        }
        let error = sink.send(&batch).await.err();
        shown.push(format!("{error:?}"));
    }
    // No answer at all: the port is closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!(
        "http://{}/services/T0/B0/SECRETPATHx1y2z3",
        closed.local_addr().unwrap()
    );
    drop(closed);
    let sink = build(&config("slack", &closed_url, "rate_limit = []\n")).await;
    let error = sink.send(&batch[..1]).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    shown.push(format!("{error} {error:?}"));
    // From a file, and the dry-run preview.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hook-url");
    std::fs::write(&file, format!("{closed_url}\n")).unwrap();
    let text = format!("format = \"slack\"\nurl_file = \"{}\"\n", file.display());
    let table = DeTable::parse(&text).unwrap();
    let from_file = (KIND.read)(table, &Context(BTreeMap::new())).unwrap();
    shown.push(format!("{from_file:?}"));
    let sink = from_file
        .build("alerts", sink::BuildContext::default())
        .await
        .unwrap()
        .sink;
    shown.push(format!("{}", sink.send(&batch[..1]).await.unwrap_err()));
    shown.push(from_file.preview(&batch).unwrap().to_string());

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("alerts"), "the logs were captured: {logs}");
    let everything = format!("{}\n{logs}", shown.join("\n"));
    for secret in ["SECRETPATH", "SECRETKEY"] {
        assert!(
            !everything.contains(secret),
            "{secret} shown:\n{everything}"
        );
    }
    // The servers' words are kept, with the secret parts of the URL they quoted masked.
    assert!(
        everything.contains("HTTP 500: no such hook ****"),
        "{everything}"
    );
    assert!(
        everything.contains("HTTP 400: no such hook ****?****"),
        "{everything}"
    );
    // What errors do show: the scheme and the host.
    assert!(
        everything.contains(&format!("POST {}", echo.base_url())),
        "{everything}"
    );
}

#[tokio::test]
async fn the_dry_run_preview_shows_the_messages_it_would_post() {
    let config = config(
        "slack",
        "https://hooks.slack.com/services/T0/B0/SECRETPATH",
        "max_events_per_message = 2\n",
    );
    let t = now();
    let batch = [
        event("billing", t, "abnormal", "first"),
        event("billing", t + 1, "abnormal", "second"),
        event("billing", t + 2, "abnormal", "third"),
        event("search", t - 5 * 3_600_000, "abnormal", "long ago"),
    ];
    let preview = sink::SinkConfig::preview(&config, &batch).unwrap();
    assert_eq!(preview.messages.len(), 2);
    assert_eq!(preview.messages[0].records, [0, 1]);
    assert_eq!(preview.skipped.len(), 1);
    let text = preview.to_string();
    assert!(
        text.contains("--- message 1 of 2: slack message: 2 events of service \"billing\""),
        "{text}"
    );
    assert!(
        text.contains("\"text\": \"ModelArts billing: 2 abnormal events"),
        "{text}"
    );
    assert!(text.contains("too_old_to_alert"), "{text}");
    assert!(!text.contains("SECRETPATH"), "{text}");
}
