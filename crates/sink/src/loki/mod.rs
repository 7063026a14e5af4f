//! The Grafana Loki sink (`type = "loki"`): each record becomes one log entry pushed to
//! Loki's push API, `POST {endpoint}/loki/api/v1/push`
//! (<https://grafana.com/docs/loki/latest/reference/loki-http-api/#ingest-logs>), as a
//! snappy-compressed protobuf `logproto.PushRequest` (the default) or as JSON (optionally
//! gzipped), with the tenant in `X-Scope-OrgID`.
//!
//! # An entry
//!
//! - **Stream**: the `labels` templates rendered over the record (default `source`,
//!   `service_name`, `event_type`); labels whose value renders empty are left out, as Loki
//!   would drop them. Ids belong in the line (they are in the JSON record) or in
//!   `structured_metadata`, not in labels: every distinct label value is a stream.
//! - **Timestamp**: `occur_time` in nanoseconds (milliseconds × 10⁶).
//! - **Line**: the record's JSON line ([`record::SharedRecord::json_line`]), or its
//!   `event_info` with `line_format = "text"`.
//!
//! Entries are grouped by stream and sorted by time (then line) within each; streams are
//! ordered by their labels. The same records always give the same bytes.
//!
//! # Before sending: what Loki would refuse
//!
//! (`service.rs` checks them, with Loki's default limits.)
//!
//! - more than 10 minutes ahead of the clock (`creation_grace_period`): **held** — not sent,
//!   its service's position for this sink waits, and a later run offers it again;
//! - a line over 256 KiB (`max_line_size`), a label value over 2048 bytes, structured metadata
//!   over 64 KiB, or no label left after empty ones are dropped: **rejected** with the reason
//!   (dead-lettered, counted as unexpected);
//! - older than `too_old_after` (default 7 days, Loki's `reject_old_samples_max_age`):
//!   `too_old = "dead_letter"` rejects it as an **expected** `too_old` refusal (dead-lettered
//!   and counted, but the run does not fail for it); `too_old = "rewrite_timestamp"` sends it
//!   stamped with the current time, its `occur_time` kept in the line.
//!
//! Label names and counts are checked when the config is read.
//!
//! # Answers
//!
//! - 2xx: every entry sent is acknowledged. Except 260, Loki's default
//!   `block_ingestion_status_code`: a 2xx that stores nothing, so a permanent error.
//! - 400: Loki stored the valid entries and refused some others, but its message does not
//!   say which (messages are grouped by text, in random order, and capped). The sink then
//!   sends the batch's entries again **one per request**: those Loki already stored are
//!   dropped as duplicates (a 2xx), those it refuses again are rejected with Loki's message.
//!   A single entry that gets a 429, a 5xx or no answer is retried alone by the engine.
//!   (Vector and Fluent Bit drop the whole batch on a 400.)
//! - 429 and 5xx (but 501) and transport failures: retryable, with `Retry-After` when given.
//! - 401 (`no org id`: Loki is multi-tenant and `tenant_id` is missing) and 403: permanent.
//!
//! The healthcheck is `GET {endpoint}/ready`.
//!
//! # Exactly once, and its limits
//!
//! Loki drops an entry whose stream, timestamp and line are those of an entry it already
//! holds. Every part of an entry here comes from the record (no send time, no batch
//! position), so any re-send — a retry after a timeout, a run killed between the push and
//! the commit, the one-by-one re-send after a 400 — adds nothing: the effect is exactly
//! once. The argument does not hold:
//!
//! - with `too_old = "rewrite_timestamp"`: a rewritten entry carries the send time, so a
//!   re-send is a second entry (at least once). It also becomes the newest entry of its
//!   stream, so Loki then refuses that stream's entries more than an hour older: the rest of
//!   a backfill that crosses `too_old_after` is dead-lettered (reading the config warns);
//! - with `line_format = "text"`: two events identical in type and text in the same
//!   millisecond (twins) have the same line and timestamp, and Loki keeps only one;
//! - for an entry more than an hour (`max_chunk_age / 2`) older than the newest entry of
//!   its stream: Loki checks that window *before* it drops duplicates, so the re-send of such
//!   an entry is refused ("entry too far behind") instead of dropped; the sink then rejects
//!   a copy Loki already stored. Its reason says so when the batch itself explains it;
//! - when Loki's duplicate check does not see the first copy: a stream that went idle and
//!   was flushed, an ingester restart without its WAL, or Loki's Kafka write path.
//!
//! Streams that merge several services (labels without `service_name` or `service_id`) run
//! into the same window during a backfill: one service's older events arrive after
//! another's newer ones. Reading the config warns about it.

mod config;
mod request_builder;
mod service;
mod sink;

pub use config::{Field, LineFormat, LokiConfig, LokiEncoding, Template, TooOld};
pub use sink::LokiSink;

use crate::{BatchSettings, SinkKind};
use std::time::Duration;

/// `type = "loki"`.
///
/// - `max_bytes` 1 MiB: promtail's default batch size. Loki refuses (429, forever) a push
///   whose bytes exceed the tenant's burst (`ingestion_burst_size_mb`, 6 MB by default) and
///   throttles a tenant above 4 MB/s, so a batch stays well below both; the JSON of a record
///   is about the size of its line.
/// - `max_events` 1000: Loki has no limit on lines per push, but after an unexpected 400
///   every entry of the batch is sent again alone, so this bounds that to 1000 requests.
///   At ~300 bytes a record, 1 MiB is about 3500 records anyway.
/// - `timeout` 1 s: promtail's `batchwait`.
pub const KIND: SinkKind = SinkKind {
    name: "loki",
    batch: BatchSettings {
        max_events: 1000,
        max_bytes: 1024 * 1024,
        timeout: Duration::from_secs(1),
    },
    read: config::read,
};
