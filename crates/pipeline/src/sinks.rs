//! The sinks of a process: each opened once, with what outlives a single sync cycle of
//! `run` — its last committed state (for rollbacks), its dead-letter file, and how long
//! it is left alone after a permanent failure.

use crate::dead_letter::DeadLetterFile;
use crate::error::{SinkFailure, StateFailure};
use crate::state::StateHandle;
use sink::{BuildContext, Sink, SinkError, SinkFilter, SinkOptions, SinkSettings, SinkState};
use source::checkpoint::{Commit, CursorCommit, CursorKey, SinkStateCommit};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::error;

/// After a permanent failure (401/403/404, a refused configuration) `run` tries the sink
/// again no sooner than this: retrying every poll would only hammer the destination.
pub const SINK_HOLD: Duration = Duration::from_secs(5 * 60);

/// One configured sink for the life of the process.
pub struct SinkRuntime {
    pub name: String,
    pub kind: &'static str,
    pub filter: SinkFilter,
    pub options: SinkOptions,
    /// Sends in flight at once.
    pub concurrency: usize,
    pub dead_letter: DeadLetterFile,
    /// `None` for `--dry-run`, which delivers nothing.
    sink: Option<Arc<dyn Sink>>,
    /// Why the sink could not be opened; it receives nothing and keeps its positions.
    broken: Option<Arc<SinkError>>,
    /// The state of the last successful commit, which a rollback goes back to.
    committed: Mutex<Option<SinkState>>,
    /// When and why the sink last failed permanently.
    held: Mutex<Option<(Instant, String)>>,
}

impl SinkRuntime {
    fn with(settings: &SinkSettings, sink: Option<Arc<dyn Sink>>) -> Self {
        let mut options = settings.options.clone();
        if let Some(timeout) = settings.config.batch_timeout() {
            options.batch.timeout = timeout;
        }
        SinkRuntime {
            name: settings.name.clone(),
            kind: settings.kind(),
            filter: settings.filter.clone(),
            options,
            concurrency: settings.config.concurrency().max(1),
            dead_letter: DeadLetterFile::for_sink(settings),
            sink,
            broken: None,
            committed: Mutex::new(None),
            held: Mutex::new(None),
        }
    }

    /// Opens the sink against the state it last committed, and commits the state it
    /// starts from (the file sink's length after cutting an uncommitted tail) with any
    /// positions it recovered from its own output. When the state holds nothing of the
    /// sink (lost, or the sink is new), the sink may recover the positions of the ids
    /// within `window` (the longest `lookback` of the sources it takes) of each service's
    /// newest record. A sink that cannot be opened is kept as broken: the other sinks go
    /// on, it keeps its positions. Only a state failure is an error here.
    pub async fn open(
        settings: &SinkSettings,
        state: &StateHandle,
        window: std::time::Duration,
    ) -> Result<SinkRuntime, StateFailure> {
        let stored = state.sink_state(settings.name.clone()).await?;
        let name = settings.name.clone();
        let has_cursors = state.call(move |s| s.sink_has_cursors(&name)).await?;
        let nothing_stored = !has_cursors && stored.as_ref().is_none_or(|r| r.state.is_none());
        // A state written by another kind of sink of the same name says nothing here.
        let committed = stored
            .filter(|row| row.kind == settings.kind())
            .and_then(|row| row.state.map(SinkState));
        let context = BuildContext {
            committed: committed.clone(),
            recover_within: nothing_stored.then_some(window),
        };
        let built = match settings.config.build(&settings.name, context).await {
            Ok(built) => built,
            Err(e) => {
                error!(sink = %settings.name, error = %e,
                    "Cannot open the sink; it receives nothing this run and keeps its positions.");
                let mut runtime = SinkRuntime::with(settings, None);
                runtime.broken = Some(Arc::new(e));
                return Ok(runtime);
            }
        };
        let runtime = SinkRuntime::with(settings, Some(built.sink));
        let cursors: Vec<CursorCommit> = built
            .recovered
            .into_iter()
            .map(|r| CursorCommit {
                key: CursorKey {
                    source: r.source,
                    service_id: r.service_id,
                    sink: settings.name.clone(),
                },
                // Unknown: the position is what matters for these services.
                since: 0,
                position: Some(r.position),
                add_fingerprints: r.fingerprints,
                prune_below: None,
            })
            .collect();
        let start = match built.state {
            Some(new) => {
                state
                    .commit(Commit {
                        cursors,
                        sink_states: vec![SinkStateCommit {
                            sink: settings.name.clone(),
                            kind: settings.kind().to_owned(),
                            state: Some(new.0.clone()),
                        }],
                        ..Commit::default()
                    })
                    .await?;
                Some(new)
            }
            None => committed,
        };
        *runtime.committed.lock().unwrap_or_else(|p| p.into_inner()) = start;
        Ok(runtime)
    }

    /// A sink for `--dry-run`: its name, filter and options, nothing to deliver to.
    pub fn dry(settings: &SinkSettings) -> SinkRuntime {
        SinkRuntime::with(settings, None)
    }

    /// A sink that is already open (tests, replay).
    pub fn ready(settings: &SinkSettings, sink: Arc<dyn Sink>) -> SinkRuntime {
        SinkRuntime::with(settings, Some(sink))
    }

    /// The sink, unless this is a dry run or it could not be opened.
    pub fn sink(&self) -> Option<&Arc<dyn Sink>> {
        self.sink.as_ref()
    }

    /// Why the sink cannot deliver this cycle, if it cannot: it could not be opened, or
    /// it failed permanently less than [`SINK_HOLD`] ago.
    pub fn unavailable(&self) -> Option<SinkFailure> {
        if let Some(e) = &self.broken {
            return Some(SinkFailure::Open(e.clone()));
        }
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let (at, cause) = held.as_ref()?;
        let ago = at.elapsed();
        (ago < SINK_HOLD).then(|| SinkFailure::HeldBack {
            ago,
            wait: SINK_HOLD.saturating_sub(ago),
            cause: cause.clone(),
        })
    }

    /// Notes a permanent failure, so that `run` leaves the sink alone for a while.
    pub fn hold(&self, cause: &SinkFailure) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), cause.to_string()));
    }

    /// The state of the last successful commit.
    pub fn committed_state(&self) -> Option<SinkState> {
        self.committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A commit holding `state` succeeded.
    pub fn set_committed_state(&self, state: SinkState) {
        *self.committed.lock().unwrap_or_else(|p| p.into_inner()) = Some(state);
    }
}
