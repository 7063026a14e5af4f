//! The delivery side of the shipper: the [`Sink`] trait that the delivery engine drives,
//! the contract it relies on (acknowledgement, retryable vs permanent failure, per-item
//! outcomes, committed sink state), the per-sink [`SinkFilter`], the reading of
//! `[sinks.NAME]` tables ([`config`], [`options`]), the shared HTTP layer of network sinks
//! ([`http`]), and the sinks themselves, one folder each: [`stdout`], [`file`](mod@file), [`loki`],
//! [`elasticsearch`] and [`webhook`] (chat alerts and signed generic webhooks).
//!
//! Every sink receives the same [`SharedRecord`]s; the engine batches them per sink across
//! services, calls [`Sink::send`], retries what the sink says is worth retrying, writes
//! rejected records to the sink's dead-letter file, and commits the sink's positions (and
//! its [`SinkState`]) only for what the returned [`Delivery`] acknowledges.

use std::time::Duration;

pub use record::SharedRecord;

pub mod config;
pub mod elasticsearch;
pub mod file;
pub mod http;
pub mod loki;
pub mod options;
pub mod stdout;
pub mod webhook;

pub use config::{
    BuildContext, BuiltSink, ConfigContext, ConfigIssue, Preview, PreviewMessage, RecoveredCursor,
    SinkConfig, SinkKind, SinkSettings,
};
pub use file::{FileCheckpoint, FileSink, Recovery};
pub use options::{BatchSettings, RetrySettings, SinkOptions};
pub use stdout::{StdoutFormat, StdoutSink};

/// A destination for event records.
///
/// # Contract the engine relies on
///
/// - **Acknowledgement.** `send` returning `Ok(delivery)` means every record of the batch
///   whose index is in neither [`Delivery::rejected`] nor [`Delivery::retry`] has been
///   accepted durably by the destination (file: written and fsynced; HTTP sinks: a 2xx
///   answer, or a per-item success) and may be acknowledged, that is, the sink's position
///   may move past it. A sink never acknowledges a record it is not sure about.
/// - **Per-item outcomes.** A record in [`Delivery::rejected`] was refused permanently
///   (an Elasticsearch mapping error): the engine writes it to the dead-letter file and
///   then acknowledges it. A record in [`Delivery::retry`] was refused for now (an
///   Elasticsearch item 429): the engine offers it again, alone, and holds the service's
///   position for this sink until it is resolved. A record in [`Delivery::held`] was not
///   sent and should not be yet (a Loki entry dated more than 10 minutes ahead): it is
///   neither retried nor acknowledged in this run, and holds its service's position for
///   this sink, so a later run offers it again. A record in [`Delivery::skipped`] is
///   acknowledged without having been sent (a chat sink's event too old to alert about)
///   and counted by kind. Each index appears at most once across the four lists and is
///   below the batch's length; anything else is an engine error for the sink.
/// - **Whole-batch failure.** `Err(_)` means *nothing* of the batch is acknowledged. A
///   [retryable](SinkError::is_retryable) error is retried within the run with backoff
///   (honouring [`SinkError::retry_after`]); a permanent one fails the sink for the run.
///   Either way the sink must leave the destination consistent (the file sink cuts a
///   half-written batch back), so a resend cannot produce a torn record.
/// - **State.** A sink with durable output of its own (the file sink) returns in
///   [`Delivery::state`] the [`SinkState`] that describes its output after this send;
///   the engine commits it in the same SQLite transaction as the positions, and hands
///   the last committed one back to [`Sink::rollback`] when that transaction fails.
/// - **Concurrency.** The engine calls `send` from one task per sink, with at most the
///   sink's configured number of sends in flight (1 unless `request.concurrency` says
///   otherwise), and commits in the order the batches were formed.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// The configured name (`[sinks.NAME]`), used in errors, logs and the state.
    fn name(&self) -> &str;

    /// The kind of sink (`"stdout"`, `"file"`, ...), as written in `type = ...`.
    fn kind(&self) -> &'static str;

    /// A cheap check that the sink can accept writes (file: the path can be opened for
    /// appending; HTTP sinks: the endpoint answers). Used by `runner validate --check`.
    async fn healthcheck(&self) -> Result<(), SinkError>;

    /// Delivers a batch. See the trait documentation for what `Ok` and each error promise.
    async fn send(&self, batch: &[SharedRecord]) -> Result<Delivery, SinkError>;

    /// The commit that should have covered the sends since `committed` failed: undo their
    /// output where the destination allows it (the file sink cuts back to the committed
    /// length), so that the next run's re-delivery does not duplicate it. Sinks that
    /// cannot take output back (stdout, HTTP) keep the default, which does nothing.
    async fn rollback(&self, committed: Option<&SinkState>) -> Result<(), SinkError> {
        let _ = committed;
        Ok(())
    }

    /// Called once before the process exits, after the last `send`.
    async fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// The outcome of a [`Sink::send`] that reached the destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Records the destination refused permanently, one by one.
    pub rejected: Vec<Rejection>,
    /// Records the destination refused for now; worth offering again alone.
    pub retry: Vec<ItemRetry>,
    /// Records the sink did not send and that must wait for a later run.
    pub held: Vec<ItemHold>,
    /// Records the sink acknowledges without sending them, by design (a chat sink's
    /// events older than its `max_age`): counted by kind, never dead-lettered.
    pub skipped: Vec<ItemSkip>,
    /// The sink's state after this send, to commit with the positions.
    pub state: Option<SinkState>,
    /// The send stopped part-way on an error no retry can mend (a chat hook that was
    /// removed after some messages of the batch were posted): the outcomes above stand,
    /// the records in `retry` wait for a later run instead of being retried, and the sink
    /// fails for the run with this error.
    pub stopped: Option<Stopped>,
}

impl Delivery {
    /// Every record of the batch accepted, no state to commit.
    pub fn all_accepted() -> Self {
        Self::default()
    }
}

/// The error that stopped a send part-way (see [`Delivery::stopped`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub message: String,
    /// The destination's status, if it answered.
    pub status: Option<u16>,
}

impl Stopped {
    /// The permanent error of sink `sink` this stop fails it with.
    pub fn error(&self, sink: &str) -> SinkError {
        let error = SinkError::permanent(sink, self.message.clone());
        match self.status {
            Some(status) => error.with_status(status),
            None => error,
        }
    }
}

/// One record a destination refused permanently (for example a 4xx item in a bulk answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Index of the record in the batch passed to `send`.
    pub index: usize,
    /// Why it was refused, as the destination said it (goes to the dead-letter file).
    pub reason: String,
    /// The destination's status for the item, if it gave one.
    pub status: Option<u16>,
    /// A refusal the sink expects in normal operation, by a short name (Loki's
    /// `"too_old"`: an entry older than its retention during a backfill). Dead-lettered
    /// like any other and counted under that name, but it does not fail the run.
    pub expected: Option<&'static str>,
}

/// One record a destination refused for now (for example an Elasticsearch item 429).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRetry {
    /// Index of the record in the batch passed to `send`.
    pub index: usize,
    /// Why it was refused, as the destination said it.
    pub reason: String,
    /// The destination's status for the item, if it gave one.
    pub status: Option<u16>,
}

/// One record a sink acknowledges without sending it (an event too old to alert about).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemSkip {
    /// Index of the record in the batch passed to `send`.
    pub index: usize,
    /// Why, by a short name the summary counts it under (`"too_old_to_alert"`).
    pub kind: &'static str,
}

/// One record a sink did not send and that must wait for a later run (a Loki entry
/// dated more than 10 minutes ahead of the clock, which Loki would refuse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemHold {
    /// Index of the record in the batch passed to `send`.
    pub index: usize,
    /// Why it waits.
    pub reason: String,
}

/// What a sink keeps in the state file beside its positions, as JSON it defines (the
/// file sink: path, committed length and the file's identity). Committed in the same
/// transaction as the positions of the records it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkState(pub String);

/// Whether a failed send is worth trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The same batch may succeed later (I/O hiccup, timeout, transport error, 429, 5xx).
    Retryable,
    /// Retrying the same batch cannot help (bad configuration, 401/403/404, stdout closed).
    Permanent,
}

/// Why a whole batch was not delivered. Nothing of the batch is acknowledged. Carries
/// the destination's HTTP status when there was one, and the underlying cause.
#[derive(Debug, thiserror::Error)]
#[error("sink {sink}: {message}{}", status_note(*.status, *.kind))]
pub struct SinkError {
    pub sink: String,
    pub kind: ErrorKind,
    pub message: String,
    /// The destination's HTTP status, if it answered.
    pub status: Option<u16>,
    /// How long the destination asked us to wait (`Retry-After`), if it did.
    pub retry_after: Option<Duration>,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

fn status_note(status: Option<u16>, kind: ErrorKind) -> String {
    match (status, kind) {
        (Some(status), ErrorKind::Retryable) => format!(" (HTTP {status}, retryable)"),
        (Some(status), ErrorKind::Permanent) => format!(" (HTTP {status})"),
        (None, ErrorKind::Retryable) => " (retryable)".to_owned(),
        (None, ErrorKind::Permanent) => String::new(),
    }
}

impl SinkError {
    fn new(sink: &str, kind: ErrorKind, message: impl Into<String>) -> Self {
        SinkError {
            sink: sink.to_owned(),
            kind,
            message: message.into(),
            status: None,
            retry_after: None,
            source: None,
        }
    }

    /// An error worth retrying, without a status or a server-given delay.
    pub fn retryable(sink: &str, message: impl Into<String>) -> Self {
        Self::new(sink, ErrorKind::Retryable, message)
    }

    /// An error that retrying the same batch cannot fix.
    pub fn permanent(sink: &str, message: impl Into<String>) -> Self {
        Self::new(sink, ErrorKind::Permanent, message)
    }

    /// The same error with the destination's HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// The same error with the delay the destination asked for.
    pub fn with_retry_after(mut self, wait: Option<Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    /// The same error with its underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Whether the same batch is worth sending again later.
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }

    /// The delay the destination asked for, if any (only for retryable errors).
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            ErrorKind::Retryable => self.retry_after,
            ErrorKind::Permanent => None,
        }
    }

    /// The name of the sink that failed.
    pub fn sink(&self) -> &str {
        &self.sink
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

    /// Whether the sink takes records of the source named `source` at all.
    pub fn takes_source(&self, source: &str) -> bool {
        self.inputs
            .as_ref()
            .is_none_or(|inputs| inputs.iter().any(|i| i == source))
    }

    /// Whether the sink should receive `record`. Source names match exactly (they are
    /// config names); event types match ignoring ASCII case, because the API's casing is
    /// not documented and `abnormal` in a config should catch `ABNORMAL` too.
    pub fn accepts(&self, record: &record::EventRecord) -> bool {
        let type_ok = self.event_types.as_ref().is_none_or(|types| {
            types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&record.event_type))
        });
        self.takes_source(&record.source) && type_ok
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use record::EventRecord;

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
        assert!(!f.takes_source("dev"));
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
    fn error_classification_status_and_retry_after() {
        let e = SinkError::retryable("loki", "too many requests")
            .with_status(429)
            .with_retry_after(Some(Duration::from_secs(3)));
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(e.sink(), "loki");
        assert_eq!(
            e.to_string(),
            "sink loki: too many requests (HTTP 429, retryable)"
        );
        let p = SinkError::permanent("console", "stdout was closed");
        assert!(!p.is_retryable());
        assert_eq!(p.retry_after(), None);
        assert_eq!(p.to_string(), "sink console: stdout was closed");
        // A permanent error never asks for a retry, whatever it carries.
        let forbidden = SinkError::permanent("es", "forbidden")
            .with_status(403)
            .with_retry_after(Some(Duration::from_secs(9)));
        assert_eq!(forbidden.retry_after(), None);
        assert_eq!(forbidden.to_string(), "sink es: forbidden (HTTP 403)");
    }

    #[test]
    fn error_keeps_its_cause() {
        let io = std::io::Error::other("disk on fire");
        let e = SinkError::retryable("archive", "cannot append").with_source(io);
        let cause = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("disk on fire"));
    }
}
