//! The delivery side of the shipper: the [`Sink`] trait that the runner drives, the
//! contract it relies on (acknowledgement, retryable vs permanent failure, per-item
//! rejection), the per-sink [`SinkFilter`], and the stdout and file sinks.
//!
//! Every sink receives the same [`EventRecord`]; the runner batches records per sink,
//! calls [`Sink::send`], and advances that sink's position only for what the returned
//! [`Delivery`] acknowledges.

use record::EventRecord;
use std::time::Duration;

pub mod file;
pub mod stdout;

pub use file::{FileCheckpoint, FileSink, Recovery};
pub use stdout::{StdoutFormat, StdoutSink};

/// A destination for event records.
///
/// # Contract the runner relies on
///
/// - **Acknowledgement.** `send` returning `Ok(delivery)` means every record of the batch
///   whose index is *not* in [`Delivery::rejected`] has been accepted durably by the
///   destination (file: written and fsynced; HTTP sinks: a 2xx answer) and may be
///   acknowledged, that is, the sink's position may move past it. A sink never returns
///   `Ok` for a record it is not sure about.
/// - **Whole-batch failure.** `Err(_)` means *nothing* of the batch is acknowledged; the
///   runner keeps the sink's position where it was, so the records are offered again
///   (in this run if the error is [retryable](SinkError::is_retryable), otherwise in a
///   later run). Sinks must leave the destination consistent after an error (the file sink
///   cuts a half-written batch back), so a resend cannot produce a torn record.
/// - **Retryable vs permanent.** [`SinkError::Retryable`] is worth trying again later with
///   the same batch (I/O hiccup, timeout, 429/5xx), honouring
///   [`SinkError::retry_after`] when present. [`SinkError::Permanent`] means retrying the
///   same batch cannot help (bad configuration, a 4xx for the whole request, stdout
///   closed): the runner stops using the sink for the rest of the run and reports it,
///   without advancing its position, and without disturbing the other sinks.
/// - **Per-item rejection.** Bulk APIs can refuse single records (an Elasticsearch
///   mapping error). Those come back in [`Delivery::rejected`] with their index in the
///   batch and the reason; the runner writes them to the dead-letter file, counts them,
///   and acknowledges them like delivered records so they cannot wedge the pipeline.
/// - **Batch size.** The runner never passes more than [`Sink::max_batch_events`] records
///   to one `send`.
/// - **Concurrency.** A sink may be shared between tasks; implementations serialize what
///   must not interleave (the file sink holds a lock for the whole append).
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// The configured name (`[sinks.NAME]`), used in errors, logs and the state.
    fn name(&self) -> &str;

    /// The kind of sink (`"stdout"`, `"file"`, ...), as written in `type = ...`.
    fn kind(&self) -> &'static str;

    /// The most records one `send` should carry; the runner splits larger batches.
    fn max_batch_events(&self) -> usize {
        1000
    }

    /// A cheap check that the sink can accept writes (file: the path can be opened for
    /// appending; HTTP sinks: the endpoint answers). Used by `runner validate --check`
    /// and before a run.
    async fn healthcheck(&self) -> Result<(), SinkError>;

    /// Delivers a batch. See the trait documentation for what `Ok` and each error promise.
    async fn send(&self, batch: &[EventRecord]) -> Result<Delivery, SinkError>;

    /// Called once before the process exits, after the last `send`.
    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// The outcome of a successful [`Sink::send`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Records the destination refused one by one; every other record of the batch is
    /// durably accepted.
    pub rejected: Vec<Rejection>,
    /// For the file sink: the checkpoint to commit together with the sink's position, so
    /// that start-up can cut a tail written after the last commit.
    pub file: Option<FileCheckpoint>,
}

impl Delivery {
    /// Every record of the batch accepted, nothing else to commit.
    pub fn all_accepted() -> Self {
        Self::default()
    }
}

/// One record a destination refused permanently (for example a 4xx item in a bulk answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Index of the record in the batch passed to `send`.
    pub index: usize,
    /// Why it was refused, as the destination said it (goes to the dead-letter file).
    pub reason: String,
}

/// Why a whole batch was not delivered. Nothing of the batch is acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Worth retrying the same batch later (I/O hiccup, timeout, 429/5xx).
    #[error("sink {sink}: {message} (retryable)")]
    Retryable {
        sink: String,
        message: String,
        /// How long the destination asked us to wait (`Retry-After`), if it did.
        retry_after: Option<Duration>,
    },
    /// Retrying the same batch cannot help (bad configuration, 4xx, stdout closed).
    #[error("sink {sink}: {message}")]
    Permanent { sink: String, message: String },
}

impl SinkError {
    /// A retryable error without a server-given delay.
    pub fn retryable(sink: &str, message: impl Into<String>) -> Self {
        SinkError::Retryable {
            sink: sink.to_owned(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// An error that retrying the same batch cannot fix.
    pub fn permanent(sink: &str, message: impl Into<String>) -> Self {
        SinkError::Permanent {
            sink: sink.to_owned(),
            message: message.into(),
        }
    }

    /// Whether the same batch is worth sending again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SinkError::Retryable { .. })
    }

    /// The delay the destination asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SinkError::Retryable { retry_after, .. } => *retry_after,
            SinkError::Permanent { .. } => None,
        }
    }

    /// The name of the sink that failed.
    pub fn sink(&self) -> &str {
        match self {
            SinkError::Retryable { sink, .. } | SinkError::Permanent { sink, .. } => sink,
        }
    }
}

/// Which records a sink receives: its `inputs` (source names) and `event_types`.
/// `None` means all; an empty list accepts nothing (the config layer decides whether
/// to allow that).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkFilter {
    /// Source names whose records this sink receives; `None` = every source.
    pub inputs: Option<Vec<String>>,
    /// Event types this sink receives; `None` = every type, including unknown ones.
    pub event_types: Option<Vec<String>>,
}

impl SinkFilter {
    /// A filter that accepts every record.
    pub fn all() -> Self {
        Self::default()
    }

    /// Whether the sink should receive `record`. Source names match exactly (they are
    /// config names); event types match ignoring ASCII case, because the API's casing is
    /// not documented and `abnormal` in a config should catch `ABNORMAL` too.
    pub fn accepts(&self, record: &EventRecord) -> bool {
        let input_ok = self
            .inputs
            .as_ref()
            .is_none_or(|inputs| inputs.contains(&record.source));
        let type_ok = self.event_types.as_ref().is_none_or(|types| {
            types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&record.event_type))
        });
        input_ok && type_ok
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(source: &str, event_type: &str) -> EventRecord {
        EventRecord::new(
            source,
            "svc",
            record::IdParts {
                project_id: "p",
                service_id: "s",
                occur_time: 1562597251764,
                event_type,
                event_info: "x",
                twin: 1,
            },
        )
    }

    #[test]
    fn filter_without_lists_accepts_everything() {
        let f = SinkFilter::all();
        assert!(f.accepts(&record("prod", "normal")));
        assert!(f.accepts(&record("other", "WARNING")));
    }

    #[test]
    fn filter_by_input_rejects_other_sources() {
        let f = SinkFilter {
            inputs: Some(vec!["prod".into(), "staging".into()]),
            event_types: None,
        };
        assert!(f.accepts(&record("prod", "normal")));
        assert!(f.accepts(&record("staging", "abnormal")));
        assert!(!f.accepts(&record("dev", "normal")));
        // Source names are config names: no case folding.
        assert!(!f.accepts(&record("Prod", "normal")));
    }

    #[test]
    fn filter_by_event_type_rejects_other_types() {
        let f = SinkFilter {
            inputs: None,
            event_types: Some(vec!["abnormal".into()]),
        };
        assert!(f.accepts(&record("prod", "abnormal")));
        assert!(f.accepts(&record("prod", "ABNORMAL")));
        assert!(!f.accepts(&record("prod", "normal")));
        assert!(!f.accepts(&record("prod", "WARNING")));
    }

    #[test]
    fn filter_needs_both_input_and_type() {
        let f = SinkFilter {
            inputs: Some(vec!["prod".into()]),
            event_types: Some(vec!["abnormal".into()]),
        };
        assert!(f.accepts(&record("prod", "abnormal")));
        assert!(!f.accepts(&record("prod", "normal")));
        assert!(!f.accepts(&record("dev", "abnormal")));
        let nothing = SinkFilter {
            inputs: Some(vec![]),
            event_types: None,
        };
        assert!(!nothing.accepts(&record("prod", "normal")));
    }

    #[test]
    fn error_classification_and_retry_after() {
        let e = SinkError::Retryable {
            sink: "loki".into(),
            message: "429".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(e.sink(), "loki");
        let p = SinkError::permanent("console", "stdout was closed");
        assert!(!p.is_retryable());
        assert_eq!(p.retry_after(), None);
        assert_eq!(p.to_string(), "sink console: stdout was closed");
    }
}
