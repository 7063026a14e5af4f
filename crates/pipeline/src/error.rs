//! What can go wrong in a run, typed, so that the summary, the exit code and the tests
//! look at kinds rather than at strings. Each failure stays its own: a source's, a
//! service's, or a sink's.

use crate::dead_letter::DeadLetterError;
use sink::SinkError;
use source::checkpoint::StateError;
use source::{AuthKind, SourceError};
use std::sync::Arc;
use std::time::Duration;

/// The state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateFailure {
    #[error(transparent)]
    State(#[from] StateError),
    /// The blocking task that talks to SQLite stopped before answering.
    #[error("the state task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Why a source could not be synced at all this run.
#[derive(Debug, thiserror::Error)]
pub enum SourceFailure {
    /// Authentication was refused; the error names the auth kind and the code.
    #[error(transparent)]
    Auth(SourceError),
    /// The endpoint (or IAM's) could not be reached, or did not answer in time: the
    /// error names the URL and the config key. Not an authentication failure, and not
    /// held: the next run tries again.
    #[error(transparent)]
    Unreachable(SourceError),
    /// Authentication could not be tried to an end (a 5xx, a garbled answer).
    #[error("authentication ({kind}) could not be checked: {error}")]
    AuthAttempt { kind: AuthKind, error: SourceError },
    /// The source's refused credentials are held (its one lockout policy): `run` does not
    /// present them again until the hold ends or they change. The error says why, for
    /// the source's kind of credentials.
    #[error(transparent)]
    HeldBack(SourceError),
    #[error("service discovery failed: {0}")]
    Discovery(SourceError),
    /// `--service ID` names a service that no selected source follows.
    #[error("--service {0}: no selected source follows this service")]
    NotFollowed(String),
    /// A shutdown came before the source's services were followed (not a failure of the
    /// source: the run is stopping).
    #[error("stopped by a shutdown before its services were synced")]
    Interrupted,
}

/// Why one service's pull stopped early (what was delivered before is kept).
#[derive(Debug, thiserror::Error)]
pub enum ServiceFailure {
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Its cursors could not be read.
    #[error("state: {0}")]
    State(#[from] StateFailure),
    /// The service's task ended without an outcome: it panicked or was cancelled.
    #[error("the service's task ended unexpectedly: {0}")]
    Task(String),
}

/// Why a sink stopped delivering for this cycle. Its positions stay at what it
/// acknowledged; it catches up from them in a later cycle or run.
#[derive(Debug, thiserror::Error)]
pub enum SinkFailure {
    /// The sink could not be opened (for example a file sink whose path is a folder).
    #[error("cannot be opened: {0}")]
    Open(Arc<SinkError>),
    /// A permanent error (401/403/404, a refused configuration, stdout closed).
    #[error("{0}")]
    Permanent(SinkError),
    /// Retryable errors until `retry.max_attempts` was spent.
    #[error("{error}; gave up after {attempts} attempt(s)")]
    RetriesSpent { error: SinkError, attempts: u32 },
    /// Records the destination kept refusing for now, one by one.
    #[error(
        "{count} record(s) still refused after {attempts} attempt(s) (last: {reason}{})",
        status_note(*.status)
    )]
    ItemsRetried {
        count: usize,
        attempts: u32,
        reason: String,
        status: Option<u16>,
    },
    /// The sink answered with outcomes that cannot be right (an index out of range, a
    /// record counted twice): an engine error for that sink, never a guess.
    #[error("the sink answered with an impossible outcome: {0}")]
    Malformed(String),
    /// Rejected records could not be written to the dead-letter file (or it is full).
    #[error("{0}")]
    DeadLetter(#[from] DeadLetterError),
    /// The state commit failed; the sink's output since the last commit was rolled back
    /// where the destination allows it.
    #[error("state commit failed: {0}")]
    Commit(StateFailure),
    /// A shutdown came while the batch was waiting for a retry.
    #[error("stopped while waiting to retry: {0}")]
    Interrupted(SinkError),
    /// `run` leaves a sink that failed permanently alone for a while.
    #[error(
        "failed permanently {}s ago and is tried again in {}s: {cause}",
        .ago.as_secs(),
        .wait.as_secs()
    )]
    HeldBack {
        ago: Duration,
        wait: Duration,
        cause: String,
    },
}

fn status_note(status: Option<u16>) -> String {
    status.map(|s| format!(", HTTP {s}")).unwrap_or_default()
}

impl SinkFailure {
    /// Whether `run` should leave the sink alone for a while: retrying a refused
    /// configuration every poll would only hammer the destination.
    pub fn is_permanent(&self) -> bool {
        matches!(self, SinkFailure::Permanent(_) | SinkFailure::Open(_))
    }
}
