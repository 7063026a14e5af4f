//! Test doubles of the destinations the network sinks write to, built from their wire
//! contracts (`shared/reference/sink-wire-contracts.md`): each one accepts what the real
//! server accepts and rejects what it rejects, with the same status codes and body
//! shapes, so that a sink tested against it is tested against the real protocol. They
//! serve real HTTP on 127.0.0.1 from a thread of their own (like the ModelArts
//! simulator), so synchronous tests that run the `runner` binary can use them too.
//!
//! - [`loki`]: the push API of Grafana Loki (protobuf + snappy and JSON, tenants, label
//!   and entry validation, duplicate dropping).
//! - [`elasticsearch`]: the `_bulk` API of Elasticsearch / OpenSearch (NDJSON, `create`
//!   with `_id`, per-item results).
//! - [`webhook`]: Slack, Teams Workflows, Feishu / Lark, DingTalk and WeCom webhooks, and a
//!   generic receiver checking Standard Webhooks or GitHub signatures (signatures, 200
//!   answers with error codes, 429 with `Retry-After`, rate limits, removed hooks).

pub mod elasticsearch;
pub mod loki;
mod server;
pub mod webhook;

pub use server::{Answer, Handler, Server, json, text};
