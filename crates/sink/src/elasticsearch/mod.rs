//! The Elasticsearch / OpenSearch sink (`type = "elasticsearch"`): records written with
//! the `_bulk` API
//! (<https://www.elastic.co/docs/api/doc/elasticsearch/operation/operation-bulk>,
//! OpenSearch: <https://docs.opensearch.org/latest/api-reference/document-apis/bulk/>),
//! **exactly once per record id**, with an outcome per record.
//!
//! # Idempotency
//!
//! Every record is sent as a `create` action with `_id` = the record's `id` (the pinned
//! SHA-256 of its fields, [`record::event_id`]). `create` fails with 409
//! `version_conflict_engine_exception` when the index already holds that `_id`, and
//! that answer is counted as delivered. So any re-send (a retried batch after a timeout,
//! the halves of a split batch, a run after a crash between the write and the state
//! commit) leaves exactly one document per event, and the sink may acknowledge a record
//! only once the cluster has accepted it without risking a duplicate. The index name
//! depends only on the record (`occur_time` fills its date fields), so the re-send goes
//! to the same index. Limit: in a data stream the `_id` is unique only within a backing
//! index, so a re-send after a rollover can write a second copy (elastic/elasticsearch#44794).
//!
//! # Outcomes
//!
//! | answer | outcome |
//! |---|---|
//! | item 2xx | delivered |
//! | item 409 `version_conflict_engine_exception` | delivered (already there) |
//! | item 429 (`es_rejected_execution_exception`, OpenSearch `rejected_execution_exception`), item 5xx | retried alone by the engine, with backoff |
//! | item 401/403 | the whole send fails, permanently (an operator must grant the privilege) |
//! | other item 4xx (`document_parsing_exception`, `mapper_parsing_exception`, …) | rejected: to the dead-letter file with ES's `type: reason` |
//! | request 429, 5xx, transport failure | the whole send fails, retryably (`Retry-After` honoured) |
//! | request 413 | the batch is sent again in halves, down to single documents; a document too large alone is rejected |
//! | request 401, 403, other 4xx | the whole send fails, permanently |
//! | a 2xx that is not a bulk answer, or whose items do not match the documents sent | the whole send fails, retryably |
//!
//! Several `endpoints` are used in turn; a transport failure moves the request on to the
//! next one. The healthcheck (`runner validate --check`) reads `GET /` of each endpoint
//! and warns about versions other than Elasticsearch 7/8 and OpenSearch 1/2; API keys
//! that may only write get 403 there, hence `healthcheck.enabled = false`.
//!
//! Files: [`config`] (the keys), [`request_builder`] (the NDJSON body), [`service`]
//! (transport, status handling, the bulk answer; `answer.rs` reads the common all-written
//! answer without a `Value`), [`sink`] (the [`crate::Sink`]).

mod answer;
pub mod config;
pub mod request_builder;
pub mod service;
pub mod sink;

pub use config::ElasticsearchConfig;
pub use request_builder::{BulkBody, IndexPattern, Mode};
pub use sink::{Distribution, ElasticsearchSink, ServerVersion};

use crate::{BatchSettings, SinkKind};
use std::time::Duration;

/// `type = "elasticsearch"`.
///
/// Batches of at most 1.25 MiB of records and 2,500 records, four requests in flight
/// ([`CONCURRENCY`]): Elasticsearch's guidance is bulk requests of a few megabytes to a
/// few tens (“tune for indexing speed”), far under its default `http.max_content_length`
/// of 100 MB, and Amazon OpenSearch Service fixes that limit at 10 MiB on small instance
/// types. The action line adds about 130 bytes per record (2,500 records: 0.33 MB), so a
/// full batch stays under 2 MiB and fits both; a proxy with a smaller limit costs a 413
/// and a split, not a failure. Four such requests in flight hold what two of twice the
/// size did, and keep the cluster indexing several while the next is on its way: against
/// the benchmark's double, 100,000 records took 5% less time than with two requests of
/// 5,000 (0.178-0.180 s against 0.187-0.190 s, three runs of five each), at a peak memory
/// 6 MiB lower (32-33 MiB against 38-41 MiB).
/// Bulk requests in flight at once when `request.concurrency` is not set.
pub const CONCURRENCY: usize = 4;

pub const KIND: SinkKind = SinkKind {
    name: "elasticsearch",
    batch: BatchSettings {
        max_events: 2_500,
        max_bytes: 5 * 256 * 1024,
        timeout: Duration::from_secs(1),
    },
    read: config::read,
};
