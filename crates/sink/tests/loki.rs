//! The Loki sink against the Loki double over real HTTP on 127.0.0.1: what lands (stream
//! labels, nanosecond timestamps, the exact line) in each encoding, that a re-send adds
//! nothing, tenancy, the records Loki would refuse (too old, too new, too long) and what
//! happens to them, Loki's 400 resolved entry by entry, and the failures the engine retries
//! or gives up on. The sink is read from TOML and built as the runner does.
//!
//! Each test installs the TLS crypto provider first (`tls_provider::install`): the runner
//! does it in `main`, and each test may run in a process of its own.

#![allow(clippy::unwrap_used)]

use doubles::loki::{LokiDouble, LokiEntry, LokiFault, LokiLimits, LokiSettings};
use record::{EventRecord, IdParts, SharedRecord};
use sink::config::{ConfigContext, ConfigIssue};
use sink::{Delivery, Sink, SinkError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use toml::Spanned;
use toml::de::DeTable;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The sink `logs` of a config file in `/etc/shipper`; no environment variables.
struct Context;

impl ConfigContext for Context {
    fn sink_name(&self) -> &str {
        "logs"
    }

    fn expand(&self, value: &Spanned<String>, _field: &str) -> Result<String, ConfigIssue> {
        Ok(value.get_ref().clone())
    }

    fn path(&self, value: &Spanned<String>, _field: &str) -> Result<PathBuf, ConfigIssue> {
        Ok(Path::new("/etc/shipper").join(value.get_ref()))
    }

    fn state_dir(&self) -> &Path {
        Path::new("/var/lib/shipper")
    }
}

/// A Loki sink for `double`, with `keys` added to its table.
async fn sink(double: &LokiDouble, keys: &str) -> Arc<dyn Sink> {
    let text = format!("endpoint = \"{}/\"\n{keys}", double.base_url());
    let table = DeTable::parse(&text).unwrap();
    let config = (sink::loki::KIND.read)(table, &Context).unwrap();
    assert_eq!(config.kind(), "loki");
    config
        .build("logs", sink::BuildContext::default())
        .await
        .unwrap()
        .sink
}

fn start(settings: LokiSettings) -> LokiDouble {
    LokiDouble::with(settings).unwrap()
}

fn limits(limits: LokiLimits) -> LokiSettings {
    LokiSettings {
        auth_enabled: false,
        limits,
    }
}

fn now_ms() -> i64 {
    record::now_ms()
}

fn now_ns() -> i64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    i64::try_from(nanos).unwrap()
}

fn event(service: &str, occur_time: i64, info: &str) -> SharedRecord {
    EventRecord::new(
        "prod",
        service,
        IdParts {
            project_id: "0123456789abcdef0123456789abcdef",
            service_id: &format!("id-{service}"),
            occur_time,
            event_type: "normal",
            event_info: info,
            twin: 1,
        },
    )
    .into()
}

/// Three events of two services, out of time order.
fn batch() -> Vec<SharedRecord> {
    let now = now_ms();
    vec![
        event("billing", now - 1000, "scaled to 2 instances"),
        event("search", now - 3000, "start to deploy service"),
        event("billing", now - 2000, "start to deploy service"),
    ]
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// The entry that holds `record`'s JSON line.
fn entry_of<'a>(entries: &'a [LokiEntry], record: &SharedRecord) -> &'a LokiEntry {
    entries
        .iter()
        .find(|e| e.line == record.json_line())
        .unwrap_or_else(|| panic!("no entry for {}", record.event_info))
}

#[tokio::test]
async fn protobuf_push_lands_labels_nanoseconds_and_the_exact_line() {
    tls_provider::install();
    let loki = LokiDouble::start().unwrap();
    let sink = sink(&loki, "").await;
    let batch = batch();
    assert_eq!(sink.send(&batch).await.unwrap(), Delivery::all_accepted());
    let entries = loki.entries();
    assert_eq!(entries.len(), 3);
    for record in &batch {
        let entry = entry_of(&entries, record);
        assert_eq!(entry.tenant, "fake");
        assert_eq!(
            entry.labels,
            labels(&[
                ("event_type", "normal"),
                ("service_name", &record.service_name),
                ("source", "prod"),
            ])
        );
        assert_eq!(entry.timestamp_ns, record.occur_time * 1_000_000);
        assert!(entry.structured_metadata.is_empty());
    }
    // One request; entries sorted by time within their stream.
    assert_eq!(loki.pushes(), 1);
    let billing = loki
        .streams()
        .into_iter()
        .find(|s| s.labels["service_name"] == "billing")
        .unwrap();
    let lines: Vec<&str> = billing.entries.iter().map(|e| e.line.as_str()).collect();
    assert_eq!(lines, [batch[2].json_line(), batch[0].json_line()]);
    assert_eq!(
        loki.last_header("content-type").as_deref(),
        Some("application/x-protobuf")
    );
    assert_eq!(loki.last_header("content-encoding"), None);
    assert_eq!(loki.last_header("x-scope-orgid"), None);
}

#[tokio::test]
async fn json_and_gzipped_json_land_the_same_entries_as_protobuf() {
    tls_provider::install();
    let batch = batch();
    let proto = LokiDouble::start().unwrap();
    sink(&proto, "").await.send(&batch).await.unwrap();
    let json = LokiDouble::start().unwrap();
    sink(&json, "encoding = \"json\"\n")
        .await
        .send(&batch)
        .await
        .unwrap();
    assert_eq!(
        json.last_header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(json.last_header("content-encoding"), None);
    let gzip = LokiDouble::start().unwrap();
    let delivery = sink(&gzip, "encoding = \"json\"\ncompression = \"gzip\"\n")
        .await
        .send(&batch)
        .await
        .unwrap();
    assert_eq!(delivery, Delivery::all_accepted());
    assert_eq!(
        gzip.last_header("content-encoding").as_deref(),
        Some("gzip")
    );
    assert_eq!(proto.entries().len(), 3);
    assert_eq!(json.entries(), proto.entries());
    assert_eq!(gzip.entries(), proto.entries());
}

#[tokio::test]
async fn a_resend_adds_nothing() {
    tls_provider::install();
    let loki = LokiDouble::start().unwrap();
    let sink = sink(&loki, "").await;
    let batch = batch();
    sink.send(&batch).await.unwrap();
    let stored = loki.entries();
    // The same batch again, then part of it in another batch with a new record.
    assert_eq!(sink.send(&batch).await.unwrap(), Delivery::all_accepted());
    assert_eq!(loki.duplicates(), 3);
    let newer = event("search", now_ms(), "service is running");
    let delivery = sink.send(&[batch[1].clone(), newer.clone()]).await.unwrap();
    assert_eq!(delivery, Delivery::all_accepted());
    assert_eq!(loki.duplicates(), 4);
    let entries = loki.entries();
    assert_eq!(entries.len(), 4);
    assert!(stored.iter().all(|e| entries.contains(e)));
    entry_of(&entries, &newer);
    assert_eq!(loki.statuses(), [204, 204, 204]);
}

#[tokio::test]
async fn tenancy() {
    tls_provider::install();
    let loki = start(LokiSettings {
        auth_enabled: true,
        limits: LokiLimits::default(),
    });
    let batch = batch();
    let with_tenant = sink(&loki, "tenant_id = \"team-a\"\n").await;
    with_tenant.send(&batch).await.unwrap();
    assert_eq!(loki.last_header("x-scope-orgid").as_deref(), Some("team-a"));
    assert_eq!(loki.entries_of("team-a").len(), 3);

    let without = sink(&loki, "").await;
    let error = without.send(&batch).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert_eq!(error.status, Some(401));
    assert!(error.message.contains("no org id"), "{error}");
    assert!(error.message.contains("set tenant_id"), "{error}");
    assert_eq!(loki.entries().len(), 3);
}

#[tokio::test]
async fn too_old_is_dead_lettered_as_an_expected_refusal() {
    tls_provider::install();
    let loki = LokiDouble::start().unwrap();
    let sink = sink(&loki, "").await;
    let now = now_ms();
    let batch = [
        event("billing", now - 8 * DAY_MS, "deployed last week"),
        event("billing", now - 1000, "deployed now"),
    ];
    let delivery = sink.send(&batch).await.unwrap();
    assert_eq!(delivery.rejected.len(), 1);
    let rejection = &delivery.rejected[0];
    assert_eq!(rejection.index, 0);
    assert_eq!(rejection.expected, Some("too_old"));
    assert_eq!(rejection.status, None);
    assert!(
        rejection
            .reason
            .contains("older than too_old_after (7days)"),
        "{}",
        rejection.reason
    );
    assert!(delivery.retry.is_empty() && delivery.held.is_empty());
    // Never sent: Loki refused nothing.
    assert_eq!(loki.rejected(), 0);
    let entries = loki.entries();
    assert_eq!(entries.len(), 1);
    entry_of(&entries, &batch[1]);
    // A batch of old records only costs no request at all.
    let delivery = sink.send(&batch[..1]).await.unwrap();
    assert_eq!(delivery.rejected.len(), 1);
    assert_eq!(loki.pushes(), 1);
}

#[tokio::test]
async fn rewrite_timestamp_sends_old_records_with_the_current_time() {
    tls_provider::install();
    let loki = LokiDouble::start().unwrap();
    let sink = sink(&loki, "too_old = \"rewrite_timestamp\"\n").await;
    let old = event("billing", now_ms() - 8 * DAY_MS, "deployed last week");
    let before = now_ns();
    let delivery = sink.send(std::slice::from_ref(&old)).await.unwrap();
    let after = now_ns();
    assert_eq!(delivery, Delivery::all_accepted());
    let entries = loki.entries();
    let entry = entry_of(&entries, &old);
    assert!(
        (before..=after).contains(&entry.timestamp_ns),
        "{before} <= {} <= {after}",
        entry.timestamp_ns
    );
    // The line keeps the event's own time.
    assert!(
        entry
            .line
            .contains(&format!("\"occur_time\":{}", old.occur_time))
    );
    // At least once, not exactly once: a re-send is stamped anew, so Loki keeps both.
    sink.send(std::slice::from_ref(&old)).await.unwrap();
    assert_eq!(loki.entries().len(), 2);
    assert_eq!(loki.duplicates(), 0);
    // The limit the config warns about: the stream's newest entry is now "now", so an
    // event of the same service two hours old is too far behind for Loki.
    let later = event("billing", now_ms() - 2 * HOUR_MS, "deployed this morning");
    let delivery = sink.send(std::slice::from_ref(&later)).await.unwrap();
    assert_eq!(delivery.rejected.len(), 1);
    assert!(
        delivery.rejected[0].reason.contains("entry too far behind"),
        "{}",
        delivery.rejected[0].reason
    );
}

#[tokio::test]
async fn too_new_is_held_back() {
    tls_provider::install();
    let loki = LokiDouble::start().unwrap();
    let sink = sink(&loki, "").await;
    let now = now_ms();
    let batch = [
        event("billing", now + HOUR_MS, "from a clock ahead"),
        event("billing", now - 1000, "on time"),
    ];
    let delivery = sink.send(&batch).await.unwrap();
    assert!(delivery.rejected.is_empty() && delivery.retry.is_empty());
    assert_eq!(delivery.held.len(), 1);
    assert_eq!(delivery.held[0].index, 0);
    assert!(
        delivery.held[0]
            .reason
            .contains("more than 10 minutes ahead"),
        "{}",
        delivery.held[0].reason
    );
    let entries = loki.entries();
    assert_eq!(entries.len(), 1);
    entry_of(&entries, &batch[1]);
    assert_eq!(loki.rejected(), 0);
}

#[tokio::test]
async fn an_entry_loki_refuses_among_valid_ones_is_the_only_one_rejected() {
    tls_provider::install();
    // The sink checks Loki's default line limit (256 KiB); this Loki is stricter.
    let loki = start(limits(LokiLimits {
        max_line_size: 600,
        ..LokiLimits::default()
    }));
    let sink = sink(&loki, "").await;
    let now = now_ms();
    let batch = [
        event("billing", now - 4000, "one"),
        event("search", now - 3000, "two"),
        event("billing", now - 2000, &"long text ".repeat(60)),
        event("billing", now - 1000, "four"),
    ];
    let delivery = sink.send(&batch).await.unwrap();
    assert_eq!(delivery.rejected.len(), 1, "{delivery:?}");
    let rejection = &delivery.rejected[0];
    assert_eq!(rejection.index, 2);
    assert_eq!(rejection.status, Some(400));
    assert_eq!(rejection.expected, None);
    assert!(
        rejection
            .reason
            .starts_with("Loki refused the entry (HTTP 400): max entry size '600' bytes exceeded"),
        "{}",
        rejection.reason
    );
    assert!(delivery.retry.is_empty() && delivery.held.is_empty());
    let entries = loki.entries();
    assert_eq!(entries.len(), 3);
    for index in [0, 1, 3] {
        entry_of(&entries, &batch[index]);
    }
    // The push, then one request per entry: the three stored ones dropped as duplicates.
    let statuses = loki.statuses();
    assert_eq!(statuses.len(), 5, "{statuses:?}");
    assert_eq!(statuses[0], 400);
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 2);
    assert_eq!(loki.duplicates(), 3);
}

#[tokio::test]
async fn a_refused_resend_of_an_entry_behind_the_window_says_it_may_be_stored() {
    tls_provider::install();
    let loki = start(limits(LokiLimits {
        max_line_size: 600,
        ..LokiLimits::default()
    }));
    let sink = sink(&loki, "").await;
    let now = now_ms();
    let batch = [
        event("billing", now - 3 * HOUR_MS, "three hours ago"),
        event("billing", now - 1000, "now"),
        event("search", now - 1000, &"long text ".repeat(60)),
    ];
    let delivery = sink.send(&batch).await.unwrap();
    // Loki stored the first two; alone, the oldest is now too far behind its stream.
    assert_eq!(loki.entries().len(), 2);
    let rejected: Vec<usize> = delivery.rejected.iter().map(|r| r.index).collect();
    assert_eq!(rejected, [0, 2]);
    let behind = &delivery.rejected[0].reason;
    assert!(behind.contains("entry too far behind"), "{behind}");
    assert!(behind.contains("may have stored this entry"), "{behind}");
    assert!(!delivery.rejected[1].reason.contains("may have stored"));
    // Refused as out of order: an expected kind, which does not fail the run; the line
    // that is too long is a real refusal.
    assert_eq!(delivery.rejected[0].expected, Some("out_of_order"));
    assert_eq!(delivery.rejected[1].expected, None);
}

// The batch of a run killed before its commit comes again. Entries more than an hour
// behind what Loki already has for their stream are refused as out of order (Loki checks
// the window before it drops duplicates): expected refusals, and Loki holds each entry
// once.
#[tokio::test]
async fn a_resent_batch_behind_the_window_is_refused_as_expected_and_stored_once() {
    tls_provider::install();
    let loki = start(limits(LokiLimits::default()));
    let sink = sink(&loki, "").await;
    let now = now_ms();
    let first = [
        event("billing", now - 3 * HOUR_MS, "three hours ago"),
        event("billing", now - 2 * HOUR_MS, "two hours ago"),
    ];
    let later = [event("billing", now - 1000, "now")];
    assert!(sink.send(&first).await.unwrap().rejected.is_empty());
    assert!(sink.send(&later).await.unwrap().rejected.is_empty());
    let again = sink.send(&first).await.unwrap();
    let kinds: Vec<Option<&str>> = again.rejected.iter().map(|r| r.expected).collect();
    assert_eq!(kinds, [Some("out_of_order"), Some("out_of_order")]);
    assert_eq!(loki.entries().len(), 3, "each entry once");
}

#[tokio::test]
async fn a_single_entry_refused_is_rejected_without_a_second_request() {
    tls_provider::install();
    let loki = start(limits(LokiLimits {
        max_line_size: 600,
        ..LokiLimits::default()
    }));
    let sink = sink(&loki, "").await;
    let batch = [event("billing", now_ms(), &"long text ".repeat(60))];
    let delivery = sink.send(&batch).await.unwrap();
    assert_eq!(delivery.rejected.len(), 1);
    assert_eq!(delivery.rejected[0].status, Some(400));
    assert_eq!(loki.statuses(), [400]);
}

#[tokio::test]
async fn entries_that_fail_alone_for_now_are_retried_alone() {
    tls_provider::install();
    let loki = start(limits(LokiLimits {
        max_line_size: 600,
        ..LokiLimits::default()
    }));
    let sink = sink(&loki, "").await;
    let now = now_ms();
    let batch = [
        event("billing", now - 2000, "one"),
        event("billing", now - 1000, &"long text ".repeat(60)),
    ];
    // The push is answered (400), every entry sent alone then gets a 503.
    loki.fail_after(1, 2, LokiFault::Unavailable);
    let delivery = sink.send(&batch).await.unwrap();
    assert!(delivery.rejected.is_empty());
    let retry: Vec<(usize, Option<u16>)> =
        delivery.retry.iter().map(|r| (r.index, r.status)).collect();
    assert_eq!(retry, [(0, Some(503)), (1, Some(503))]);
    assert!(delivery.retry[0].reason.contains("circuit breaker open"));
    // The engine offers them again alone: now resolved.
    let delivery = sink.send(&batch).await.unwrap();
    assert_eq!(delivery.rejected.len(), 1);
    assert_eq!(delivery.rejected[0].index, 1);
    assert!(delivery.retry.is_empty());
    assert_eq!(loki.entries().len(), 1);
}

#[tokio::test]
async fn throttling_is_retryable_after_the_servers_delay() {
    tls_provider::install();
    let loki = LokiDouble::start().unwrap();
    let sink = sink(&loki, "").await;
    loki.fail_next(
        1,
        LokiFault::TooManyRequests {
            retry_after: Some(7),
        },
    );
    let batch = batch();
    let error: SinkError = sink.send(&batch).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert_eq!(error.status, Some(429));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    assert!(loki.entries().is_empty());
    assert_eq!(sink.send(&batch).await.unwrap(), Delivery::all_accepted());
    assert_eq!(loki.entries().len(), 3);
}

#[tokio::test]
async fn server_errors_and_an_absent_server_are_retryable() {
    tls_provider::install();
    let loki = LokiDouble::start().unwrap();
    let sink = sink(&loki, "").await;
    let batch = batch();
    loki.fail_next(1, LokiFault::InternalError);
    loki.fail_next(1, LokiFault::Unavailable);
    for status in [500, 503] {
        let error = sink.send(&batch).await.unwrap_err();
        assert!(error.is_retryable(), "{error}");
        assert_eq!(error.status, Some(status));
        assert_eq!(error.retry_after(), None);
    }
    loki.set_down(true).unwrap();
    let error = sink.send(&batch).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert_eq!(error.status, None);
    loki.set_down(false).unwrap();
    // A connection the pool kept from before may fail once; a new one reaches Loki.
    let delivered = match sink.send(&batch).await {
        Ok(delivery) => delivery,
        Err(e) if e.is_retryable() && e.status.is_none() => sink.send(&batch).await.unwrap(),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(delivered, Delivery::all_accepted());
    assert_eq!(loki.entries().len(), 3);
}

#[tokio::test]
async fn blocked_ingestion_is_not_an_acknowledgement() {
    tls_provider::install();
    let loki = LokiDouble::start().unwrap();
    let sink = sink(&loki, "").await;
    loki.fail_next(1, LokiFault::Blocked);
    let error = sink.send(&batch()).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    assert_eq!(error.status, Some(260));
    assert!(error.message.contains("blocks ingestion"), "{error}");
}

#[tokio::test]
async fn healthcheck_asks_ready() {
    tls_provider::install();
    let loki = LokiDouble::start().unwrap();
    let sink = sink(&loki, "").await;
    sink.healthcheck().await.unwrap();
    loki.set_ready(false);
    let error = sink.healthcheck().await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert_eq!(error.status, Some(503));
    loki.set_down(true).unwrap();
    assert!(sink.healthcheck().await.is_err());
    assert_eq!(loki.pushes(), 0);
}

#[tokio::test]
async fn label_templates_metadata_and_text_lines() {
    tls_provider::install();
    for encoding in ["protobuf", "json"] {
        let loki = LokiDouble::start().unwrap();
        let sink = sink(
            &loki,
            &format!(
                "encoding = \"{encoding}\"\nline_format = \"text\"\n\
                 [labels]\nservice = \"{{{{ service_name }}}}\"\nenv = \"{{{{ source }}}}-eu\"\n\
                 [structured_metadata]\nservice_id = \"{{{{ service_id }}}}\"\nid = \"{{{{ id }}}}\"\n"
            ),
        )
        .await;
        let record = event("billing", now_ms(), "deploy failed: image not found");
        sink.send(std::slice::from_ref(&record)).await.unwrap();
        let entries = loki.entries();
        assert_eq!(entries.len(), 1, "{encoding}");
        let entry = &entries[0];
        assert_eq!(entry.line, "deploy failed: image not found");
        assert_eq!(entry.timestamp_ns, record.occur_time * 1_000_000);
        // Loki adds service_name itself, from `service`.
        assert_eq!(
            entry.labels,
            labels(&[
                ("env", "prod-eu"),
                ("service", "billing"),
                ("service_name", "billing")
            ]),
            "{encoding}"
        );
        assert_eq!(
            entry.structured_metadata,
            labels(&[("id", &record.id), ("service_id", "id-billing")]),
            "{encoding}"
        );
    }
}

#[tokio::test]
async fn an_empty_batch_sends_nothing() {
    tls_provider::install();
    let loki = LokiDouble::start().unwrap();
    let sink = sink(&loki, "").await;
    assert_eq!(sink.send(&[]).await.unwrap(), Delivery::all_accepted());
    assert_eq!(loki.pushes(), 0);
    assert_eq!(sink.kind(), "loki");
    assert_eq!(sink.name(), "logs");
}
