//! The webhook sink (`type = "webhook"`): chat alerts people read, and signed generic
//! webhooks. Each platform's contract (payload, success and error answers, signatures,
//! rate limits) is in `shared/reference/sink-wire-contracts.md` §3–4:
//!
//! - `format = "slack"`: Slack incoming webhooks
//!   (<https://api.slack.com/messaging/webhooks>), `text` plus Block Kit blocks;
//! - `"teams"`: Microsoft Teams Workflows webhooks, an Adaptive Card
//!   (<https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using>);
//! - `"feishu"`: Feishu / Lark custom bots, a `post` message, optionally signed
//!   (<https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot>);
//! - `"dingtalk"`: DingTalk custom robots, a `text` message, optionally signed in the URL
//!   (<https://open.dingtalk.com/document/robots/custom-robot-access>);
//! - `"wecom"`: WeCom group robots, a `text` message
//!   (<https://developer.work.weixin.qq.com/document/path/91770>);
//! - `"json"`: any HTTP endpoint, `{"events": [...]}` or a body from a `template`, signed
//!   per Standard Webhooks (<https://www.standardwebhooks.com/>) or GitHub
//!   (`X-Hub-Signature-256`), with `webhook-id` and `Idempotency-Key`.
//!
//! # Alerting
//!
//! The chat presets receive `abnormal` events unless `event_types` says otherwise, and
//! never post an event older than `max_age` (default one hour): it is acknowledged and
//! counted as `too_old_to_alert`, so a new chat sink or a lost state file does not post a
//! service's history. A message holds at most `max_events_per_message` (default 10)
//! events of **one service** that arrived within `group_window` (default 30 s, the
//! engine's batch timeout for this sink; a one-shot `sync` never waits for it). Posts are
//! paced by a per-sink rate limit with each platform's documented default, and a
//! platform's "too fast" answer stops the sink's posts for its `Retry-After` or the
//! `rate_limit_penalty`.
//!
//! # Delivery
//!
//! At least once. A message's records are acknowledged once the platform accepted it,
//! then their positions are committed; a crash in between posts it again. Chat platforms
//! have no idempotency key, so that repeat is visible; a generic endpoint gets the same
//! `webhook-id` for the same records (within a run; after a crash the records may be
//! grouped differently and get a new id). What a platform refuses as such (too large, bad
//! payload) goes to the dead-letter file with its records; a bad token, a removed hook or
//! a bad signature fails the sink for the run: positions kept, nothing dead-lettered.
//!
//! Files: [`config`] (the keys), [`request_builder`] (grouping and the bodies),
//! [`signature`] (the four signatures), [`rate_limit`] (pacing), [`service`] (posting
//! and the platforms' answers), [`sink`] (the [`crate::Sink`]).

pub mod config;
pub mod rate_limit;
pub mod request_builder;
pub mod service;
pub mod signature;
pub mod sink;

pub use config::{Format, Signing, WebhookConfig};
pub use rate_limit::RateLimit;
pub use request_builder::{Body, BodyTemplate, Message, Plan, TOO_OLD_TO_ALERT};
pub use sink::WebhookSink;

use crate::{BatchSettings, SinkKind};
use std::time::Duration;

/// `type = "webhook"`.
///
/// - `max_events` 1000, `max_bytes` 1 MiB: a batch is cut into messages by service and
///   `max_events_per_message`, so the batch only bounds how much one send handles (and
///   what a send that fails halfway returns for a retry).
/// - `timeout` 1 s: for the generic `json` format; the chat presets wait `group_window`
///   (default 30 s) instead, so that a failing rollout's events share a message.
pub const KIND: SinkKind = SinkKind {
    name: "webhook",
    batch: BatchSettings {
        max_events: 1000,
        max_bytes: 1024 * 1024,
        timeout: Duration::from_secs(1),
    },
    read: config::read,
};
