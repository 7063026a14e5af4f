//! `runner dead-letter replay`: offers a sink's dead-lettered records to it again, once
//! the cause is fixed, with the same batching limits and retries as a run. An entry
//! leaves the file only when the destination accepted its record; one refused again
//! stays, with the new reason; the rest stays as it was.
//!
//! Replay is at least once: a crash after the destination accepted records but before
//! the file was rewritten offers them again next time (`record.id` is the idempotency
//! key of the sinks that have one). Positions are not touched: those records are behind
//! them already.

use crate::dead_letter::{DeadLetterEntry, DeadLetterError};
use crate::driver::{ItemOutcome, send_batch};
use crate::error::{SinkFailure, StateFailure};
use crate::sinks::SinkRuntime;
use crate::state::StateHandle;
use record::SharedRecord;
use sink::SinkError;
use source::checkpoint::{Commit, SinkStateCommit};
use std::sync::Arc;
use tokio::sync::watch;

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Entries offered to the sink.
    pub offered: usize,
    /// Entries whose record the destination accepted (removed from the file).
    pub accepted: usize,
    /// Entries refused again (kept, with the new reason).
    pub refused: usize,
    /// Entries left as they were: not offered (the sink failed first), or of another sink.
    pub kept: usize,
    /// Lines that are not entries (kept as they are).
    pub unreadable: usize,
    /// Why the replay stopped early.
    pub failure: Option<SinkFailure>,
}

/// Why a replay could not run at all (nothing was changed).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    DeadLetter(#[from] DeadLetterError),
    #[error("sink {sink} cannot be opened: {error}")]
    Unavailable { sink: String, error: SinkFailure },
    /// The sink's state could not be committed after it accepted records; its output
    /// was rolled back and the file is unchanged.
    #[error("state commit failed: {0}")]
    Commit(StateFailure),
    #[error("the replay task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Offers the dead-lettered records of `sink` to it again; see the module docs.
pub async fn replay(
    sink: &SinkRuntime,
    state: &StateHandle,
    shutdown: watch::Receiver<bool>,
) -> Result<ReplayReport, ReplayError> {
    let Some(handle) = sink.sink().cloned() else {
        let error = sink.unavailable().unwrap_or_else(|| {
            SinkFailure::Open(Arc::new(SinkError::permanent(
                &sink.name,
                "the sink was not opened",
            )))
        });
        return Err(ReplayError::Unavailable {
            sink: sink.name.clone(),
            error,
        });
    };
    let file = sink.dead_letter.clone();
    let found = {
        let file = file.clone();
        tokio::task::spawn_blocking(move || file.read()).await??
    };
    let text = {
        let path = file.path().to_owned();
        tokio::task::spawn_blocking(move || std::fs::read_to_string(path).unwrap_or_default())
            .await?
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut report = ReplayReport {
        unreadable: found.unreadable.len(),
        ..ReplayReport::default()
    };
    // The new content of each line: `None` removes it.
    let mut rewritten: Vec<Option<String>> = lines.iter().map(|l| Some((*l).to_owned())).collect();
    let (ours, foreign): (Vec<_>, Vec<_>) = found
        .entries
        .into_iter()
        .partition(|(_, entry)| entry.sink == sink.name);
    report.kept = foreign.len();
    let ours: Vec<(usize, SharedRecord)> = ours
        .into_iter()
        .map(|(line, entry)| (line, SharedRecord::new(entry.record)))
        .collect();
    let mut state_to_commit = None;
    for chunk in ours.chunks(sink.options.batch.max_events.max(1)) {
        if report.failure.is_some() {
            report.kept += chunk.len();
            continue;
        }
        let records: Vec<SharedRecord> = chunk.iter().map(|(_, r)| r.clone()).collect();
        report.offered += records.len();
        let outcome = send_batch(
            handle.clone(),
            &records,
            sink.options.retry,
            shutdown.clone(),
            &telemetry::Observer::new(),
        )
        .await;
        if outcome.state.is_some() {
            state_to_commit = outcome.state;
        }
        for ((line, record), item) in chunk.iter().zip(outcome.outcomes) {
            let slot = &mut rewritten[line - 1];
            match item {
                Some(ItemOutcome::Delivered | ItemOutcome::Skipped { .. }) => {
                    report.accepted += 1;
                    *slot = None;
                }
                Some(ItemOutcome::Rejected { reason, status, .. }) => {
                    report.refused += 1;
                    *slot = Some(
                        file.entry_line(&DeadLetterEntry {
                            record: record.clone(),
                            reason,
                            status,
                        })
                        .trim_end()
                        .to_owned(),
                    );
                }
                Some(ItemOutcome::Held { .. }) | None => report.kept += 1,
            }
        }
        report.failure = outcome.failure;
    }
    if let Some(new) = state_to_commit {
        let commit = Commit {
            sink_states: vec![SinkStateCommit {
                sink: sink.name.clone(),
                kind: sink.kind.to_owned(),
                state: Some(new.0.clone()),
            }],
            ..Commit::default()
        };
        if let Err(e) = state.commit(commit).await {
            // Undo what the sink wrote, so that the entries (which stay) are not
            // delivered twice by the next replay.
            if let Err(rollback) = handle.rollback(sink.committed_state().as_ref()).await {
                tracing::error!(sink = %sink.name, error = %rollback,
                    "Could not roll the sink back; start-up recovery of the next run does it.");
            }
            return Err(ReplayError::Commit(e));
        }
        sink.set_committed_state(new);
    }
    let keep: Vec<String> = rewritten
        .into_iter()
        .flatten()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let file = Arc::new(file);
    tokio::task::spawn_blocking(move || file.rewrite(&keep)).await??;
    Ok(report)
}
