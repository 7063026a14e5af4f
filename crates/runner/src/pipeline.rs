//! The deduplicating pipeline: pull each followed service from the oldest
//! position any of its sinks needs, turn rows into records, hand every sink
//! what it does not have yet, and commit each sink's position after that
//! sink acknowledged the batch.
//!
//! Order per batch and sink: `send` (durable: the file sink fsyncs) → one
//! SQLite transaction with the sink's position, fingerprints and, for the
//! file sink, its committed length. Both run under the sink's lane lock, so
//! a file's committed length always matches the positions of every batch in
//! it, whatever service wrote them (exactly-once across SIGKILL).

use record::{EventRecord, IdParts};
use sink::{Delivery, FileCheckpoint, Sink, SinkFilter};
use source::checkpoint::{
    CheckpointStore, Commit, CursorKey, CursorState, DiscoveredService, FileOffset,
};
use source::discovery;
use source::{
    ModelArtsClient, PullOptions, ServerModel, ServicePull, SinkCursor, SourceError,
    SourceSettings, StartAt,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tracing::{error, info, warn};

/// The state file, shared by every task; calls run off the async threads.
#[derive(Clone)]
pub struct StateHandle {
    store: Arc<Mutex<CheckpointStore>>,
}

impl StateHandle {
    pub fn new(store: CheckpointStore) -> Self {
        StateHandle {
            store: Arc::new(Mutex::new(store)),
        }
    }

    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut CheckpointStore) -> Result<T, source::checkpoint::StateError>
        + Send
        + 'static,
    ) -> Result<T, String> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut store).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("state task failed: {e}"))?
    }

    pub async fn cursor(&self, key: CursorKey) -> Result<Option<CursorState>, String> {
        self.call(move |s| s.cursor(&key)).await
    }

    pub async fn file_offset(&self, sink: String) -> Result<Option<(String, FileOffset)>, String> {
        self.call(move |s| s.file_offset(&sink)).await
    }

    pub async fn commit(&self, commit: Commit) -> Result<(), String> {
        self.call(move |s| s.commit(&commit)).await
    }
}

/// One sink with its filter and the lock that keeps its sends and commits
/// in one order. `--dry-run` builds lanes without sinks: it only needs the
/// names and filters.
pub struct SinkLane {
    pub name: String,
    pub sink: Option<Arc<dyn Sink>>,
    pub filter: SinkFilter,
    /// `Some(path)` for the file sink: its length is committed with positions.
    pub file_path: Option<String>,
    /// Why the sink could not be opened; such a lane receives nothing and
    /// keeps its positions, while the other sinks go on.
    pub broken: Option<String>,
    lane: tokio::sync::Mutex<()>,
}

impl SinkLane {
    pub fn new(
        name: &str,
        sink: Option<Arc<dyn Sink>>,
        filter: SinkFilter,
        file_path: Option<String>,
    ) -> Self {
        SinkLane {
            name: name.to_owned(),
            sink,
            filter,
            file_path,
            broken: None,
            lane: tokio::sync::Mutex::new(()),
        }
    }

    /// A lane for a sink that could not be opened.
    pub fn broken(name: &str, filter: SinkFilter, why: String) -> Self {
        SinkLane {
            broken: Some(why),
            ..SinkLane::new(name, None, filter, None)
        }
    }

    fn takes_source(&self, source: &str) -> bool {
        self.filter
            .inputs
            .as_ref()
            .is_none_or(|inputs| inputs.iter().any(|i| i == source))
    }
}

/// One configured source, ready to pull.
pub struct SourceRuntime {
    pub settings: SourceSettings,
    pub client: Arc<ModelArtsClient>,
    pub model: Arc<Mutex<ServerModel>>,
}

/// What one run does: deliver to sinks and commit, or only print what it
/// would deliver.
pub enum Mode {
    Deliver { state: StateHandle },
    DryRun { state: Option<StateHandle> },
}

/// Counts of one service for the end-of-run summary.
#[derive(Debug, Clone, Default)]
pub struct ServiceSummary {
    pub source: String,
    pub service_id: String,
    pub service_name: String,
    pub fetched: u64,
    /// Events that at least one sink did not have yet.
    pub new: u64,
    pub delivered: BTreeMap<String, u64>,
    pub malformed: u64,
    pub requests: u64,
    /// Sinks (or the service itself, as "source") that failed, with why.
    pub failed: Vec<(String, String)>,
    /// A discovered service whose events answer 404: it disappeared.
    pub gone: bool,
}

impl ServiceSummary {
    /// The one-line summary printed on stderr.
    pub fn line(&self) -> String {
        let delivered = if self.delivered.is_empty() {
            "-".to_owned()
        } else {
            self.delivered
                .iter()
                .map(|(sink, n)| format!("{sink}={n}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let name = if self.service_name.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.service_name)
        };
        let mut line = format!(
            "{}/{}{}: fetched {}, new {}, delivered {}, malformed {}, failed {}",
            self.source,
            self.service_id,
            name,
            self.fetched,
            self.new,
            delivered,
            self.malformed,
            self.failed.len()
        );
        for (what, why) in &self.failed {
            line.push_str(&format!(" [{what}: {why}]"));
        }
        if self.gone {
            line.push_str(" [gone: the service no longer exists; its state is kept]");
        }
        line
    }
}

/// Which services a run covers (`--source`, `--service`).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub source: Option<String>,
    pub services: Vec<String>,
}

/// A source that could not be synced at all this run.
#[derive(Debug, Clone)]
pub struct SourceProblem {
    pub source: String,
    pub message: String,
}

/// What one run did.
#[derive(Debug, Default)]
pub struct RunReport {
    pub services: Vec<ServiceSummary>,
    /// Sources that failed before reaching their services (authentication,
    /// discovery), and selections that matched nothing.
    pub sources: Vec<SourceProblem>,
    /// Discovered services that disappeared in this run (each reported once).
    pub gone: Vec<(String, DiscoveredService)>,
}

impl RunReport {
    /// Whether everything was delivered (a service that disappeared is not
    /// a failure).
    pub fn ok(&self) -> bool {
        self.sources.is_empty() && self.services.iter().all(|s| s.failed.is_empty())
    }
}

/// A service a source follows this run, and why.
#[derive(Debug, Clone)]
pub struct Followed {
    pub service_id: String,
    /// Followed only because `discover` matched it (not listed in `services`).
    pub discovered: bool,
    /// The name in the project's services list (empty when not listed).
    pub service_name: String,
}

/// After an authentication failure `run` leaves the source alone this long:
/// five bad AK/SK signatures lock the key for five minutes on the real cloud.
pub const AUTH_RETRY_DELAY: Duration = Duration::from_secs(5 * 60);

/// Sources, sinks and the state, wired together.
pub struct Pipeline {
    pub sources: Vec<SourceRuntime>,
    pub sinks: Vec<Arc<SinkLane>>,
    pub concurrency: usize,
    /// When each source last failed to authenticate (kept across the polls
    /// of `run`).
    auth_failed_at: Mutex<HashMap<String, Instant>>,
}

impl Pipeline {
    pub fn new(sources: Vec<SourceRuntime>, sinks: Vec<Arc<SinkLane>>, concurrency: usize) -> Self {
        Pipeline {
            sources,
            sinks,
            concurrency,
            auth_failed_at: Mutex::new(HashMap::new()),
        }
    }

    /// Authenticates the source with one request and works out which
    /// services it follows: those listed in `services`, plus those that
    /// `discover` matches in the project's list.
    pub async fn follow(&self, source: &SourceRuntime) -> Result<Vec<Followed>, String> {
        let name = &source.settings.name;
        let failed_at = self
            .auth_failed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied();
        if let Some(at) = failed_at
            && at.elapsed() < AUTH_RETRY_DELAY
        {
            let wait = AUTH_RETRY_DELAY.saturating_sub(at.elapsed());
            return Err(format!(
                "authentication ({}) failed {}s ago; not tried again for another {}s, because repeated failures lock AK/SK keys",
                source.client.auth_kind(),
                at.elapsed().as_secs(),
                wait.as_secs()
            ));
        }
        let outcome = source.client.authenticate().await;
        {
            let mut failures = self
                .auth_failed_at
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match &outcome {
                Ok(()) => {
                    failures.remove(name);
                }
                Err(SourceError::Auth { .. }) => {
                    failures.insert(name.clone(), Instant::now());
                }
                Err(_) => {}
            }
        }
        match outcome {
            Ok(()) => {}
            // The error names the auth kind and the code already.
            Err(e @ SourceError::Auth { .. }) => return Err(e.to_string()),
            Err(e) => {
                return Err(format!(
                    "authentication ({}) failed: {e}",
                    source.client.auth_kind()
                ));
            }
        }
        let mut followed: Vec<Followed> = source
            .settings
            .services
            .iter()
            .map(|id| Followed {
                service_id: id.clone(),
                discovered: false,
                service_name: String::new(),
            })
            .collect();
        if let Some(discover) = &source.settings.discover {
            let listed = discovery::list_services(&source.client, source.settings.page_size)
                .await
                .map_err(|e| format!("service discovery failed: {e}"))?;
            for service in listed.iter().filter(|s| discovery::matches(discover, s)) {
                if !followed.iter().any(|f| f.service_id == service.service_id) {
                    followed.push(Followed {
                        service_id: service.service_id.clone(),
                        discovered: true,
                        service_name: service.service_name.clone(),
                    });
                }
            }
        }
        Ok(followed)
    }

    /// Pulls every selected service once, `concurrency` at a time. Each
    /// source authenticates once before its services fan out. Stops taking
    /// new batches when `shutdown` turns true; batches in flight are
    /// finished and committed.
    pub async fn sync(
        &self,
        mode: &Arc<Mode>,
        selection: &Selection,
        shutdown: watch::Receiver<bool>,
    ) -> RunReport {
        let started_at = record::now_ms();
        let mut report = RunReport::default();
        let selected: Vec<&SourceRuntime> = self
            .sources
            .iter()
            .filter(|s| {
                selection
                    .source
                    .as_ref()
                    .is_none_or(|n| n == &s.settings.name)
            })
            .collect();
        let followed =
            futures_util::future::join_all(selected.iter().map(|s| self.follow(s))).await;
        let permits = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        let mut order = Vec::new();
        let mut discovered_by_source = Vec::new();
        for (source, followed) in selected.iter().zip(followed) {
            let followed = match followed {
                Ok(followed) => followed,
                Err(message) => {
                    error!(source = %source.settings.name, error = %message,
                        "Source failed; its services were not synced. Other sources go on.");
                    report.sources.push(SourceProblem {
                        source: source.settings.name.clone(),
                        message,
                    });
                    continue;
                }
            };
            let lanes: Vec<Arc<SinkLane>> = self
                .sinks
                .iter()
                .filter(|lane| lane.takes_source(&source.settings.name))
                .cloned()
                .collect();
            for service in &followed {
                if !selection.services.is_empty()
                    && !selection.services.contains(&service.service_id)
                {
                    continue;
                }
                let job = ServiceJob {
                    settings: source.settings.clone(),
                    client: source.client.clone(),
                    model: source.model.clone(),
                    service_id: service.service_id.clone(),
                    discovered: service.discovered,
                    lanes: lanes.clone(),
                    mode: mode.clone(),
                    started_at,
                    shutdown: shutdown.clone(),
                };
                order.push((source.settings.name.clone(), service.service_id.clone()));
                let permits = permits.clone();
                tasks.spawn(async move {
                    // The semaphore is never closed, so acquire cannot fail.
                    let _permit = permits.acquire_owned().await;
                    job.run().await
                });
            }
            if source.settings.discover.is_some() {
                discovered_by_source.push((source.settings.name.clone(), followed));
            }
        }
        for wanted in &selection.services {
            if !order.iter().any(|(_, id)| id == wanted) && report.sources.is_empty() {
                report.sources.push(SourceProblem {
                    source: selection.source.clone().unwrap_or_else(|| "-".to_owned()),
                    message: format!("--service {wanted}: no selected source follows this service"),
                });
            }
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(summary) => report.services.push(summary),
                Err(e) => error!(error = %e, "A service task failed unexpectedly."),
            }
        }
        report.services.sort_by_key(|s| {
            order
                .iter()
                .position(|(src, svc)| src == &s.source && svc == &s.service_id)
        });
        if let Mode::Deliver { state } = mode.as_ref() {
            for (source, followed) in discovered_by_source {
                self.record_discovery(state, &source, &followed, &mut report)
                    .await;
            }
        }
        report
    }

    /// Saves which discovered services exist and reports, once, those that
    /// disappeared (no longer listed, or their events answer 404).
    async fn record_discovery(
        &self,
        state: &StateHandle,
        source: &str,
        followed: &[Followed],
        report: &mut RunReport,
    ) {
        let seen: Vec<DiscoveredService> = followed
            .iter()
            .filter(|f| f.discovered)
            .map(|f| {
                let summary = report
                    .services
                    .iter()
                    .find(|s| s.source == source && s.service_id == f.service_id);
                DiscoveredService {
                    service_id: f.service_id.clone(),
                    service_name: f.service_name.clone(),
                    gone: summary.is_some_and(|s| s.gone),
                }
            })
            .collect();
        let source_name = source.to_owned();
        match state
            .call(move |store| store.record_discovery(&source_name, &seen))
            .await
        {
            Ok(gone) => {
                for service in gone {
                    warn!(source, service_id = %service.service_id, service_name = %service.service_name,
                        "A discovered service disappeared; no longer following it. Its state is kept.");
                    report.gone.push((source.to_owned(), service));
                }
            }
            Err(e) => warn!(source, error = %e, "Could not record discovered services."),
        }
    }
}

/// The pull and delivery of one service.
struct ServiceJob {
    settings: SourceSettings,
    client: Arc<ModelArtsClient>,
    model: Arc<Mutex<ServerModel>>,
    service_id: String,
    /// Followed through discovery only: a 404 means it disappeared.
    discovered: bool,
    lanes: Vec<Arc<SinkLane>>,
    mode: Arc<Mode>,
    started_at: i64,
    shutdown: watch::Receiver<bool>,
}

/// A lane and this service's cursor on it.
struct Target {
    lane: Arc<SinkLane>,
    cursor: SinkCursor,
    /// Why delivery to this sink stopped, if it did.
    failed: Option<String>,
}

impl ServiceJob {
    fn since(&self) -> i64 {
        match self.settings.start_at {
            StartAt::Beginning => 0,
            StartAt::Now => self.started_at,
            StartAt::At(ms) => ms,
        }
    }

    fn state(&self) -> Option<&StateHandle> {
        match self.mode.as_ref() {
            Mode::Deliver { state } => Some(state),
            Mode::DryRun { state } => state.as_ref(),
        }
    }

    async fn run(self) -> ServiceSummary {
        let mut summary = ServiceSummary {
            source: self.settings.name.clone(),
            service_id: self.service_id.clone(),
            ..ServiceSummary::default()
        };
        if let Err(why) = self.pull(&mut summary).await {
            error!(source = %self.settings.name, service_id = %self.service_id, error = %why,
                "Service sync failed; what was delivered is kept.");
            summary.failed.push(("source".to_owned(), why));
        }
        summary
    }

    async fn pull(&self, summary: &mut ServiceSummary) -> Result<(), String> {
        if self.lanes.is_empty() {
            warn!(source = %self.settings.name, "No sink takes this source's events; nothing to do.");
            return Ok(());
        }
        let mut targets = Vec::with_capacity(self.lanes.len());
        for lane in &self.lanes {
            let key = CursorKey {
                source: self.settings.name.clone(),
                service_id: self.service_id.clone(),
                sink: lane.name.clone(),
            };
            let stored = match self.state() {
                Some(state) => state.cursor(key.clone()).await?,
                None => None,
            };
            let cursor = SinkCursor::new(key, stored, self.since(), self.settings.lookback);
            summary.delivered.insert(lane.name.clone(), 0);
            targets.push(Target {
                lane: lane.clone(),
                cursor,
                failed: lane.broken.clone(),
            });
        }
        if targets.iter().all(|t| t.failed.is_some()) {
            for target in &targets {
                summary.failed.push((
                    target.lane.name.clone(),
                    target.failed.clone().unwrap_or_default(),
                ));
            }
            return Err("no sink of this service can be written".to_owned());
        }
        let floor = targets
            .iter()
            .filter(|t| t.failed.is_none())
            .map(|t| t.cursor.floor())
            .min();
        let options = PullOptions {
            page_size: self.settings.page_size,
            event_type: self.settings.event_type.clone(),
            offset_unit: self.settings.offset_unit,
        };
        let mut pull =
            ServicePull::new(&self.client, &self.model, &self.service_id, floor, options);
        let result = self.drive(&mut pull, &mut targets, summary).await;
        summary.requests = pull.requests();
        // A cursor seen for the first time is saved even without events, so
        // that `start_at = "now"` means the first run's time, not every run's.
        if let Mode::Deliver { state } = self.mode.as_ref() {
            let cursors: Vec<_> = targets
                .iter_mut()
                .filter(|t| t.failed.is_none())
                .filter_map(|t| t.cursor.acknowledge(Vec::new(), None))
                .collect();
            if !cursors.is_empty() {
                state
                    .commit(Commit {
                        cursors,
                        files: Vec::new(),
                    })
                    .await?;
            }
        }
        for target in &targets {
            if let Some(why) = &target.failed {
                summary.failed.push((target.lane.name.clone(), why.clone()));
            }
        }
        match result {
            Err(SourceError::ServiceNotFound { .. }) if self.discovered => {
                summary.gone = true;
                Ok(())
            }
            other => other.map_err(|e| e.to_string()),
        }
    }

    async fn drive(
        &self,
        pull: &mut ServicePull<'_>,
        targets: &mut [Target],
        summary: &mut ServiceSummary,
    ) -> Result<(), SourceError> {
        // With password auth the project may come from the token.
        let project_id = self.client.project_id().to_owned();
        while let Some(batch) = pull.next_batch().await? {
            summary.malformed += batch.malformed.len() as u64;
            summary.fetched += batch.events.len() as u64;
            if !batch.service_name.is_empty() {
                summary.service_name = batch.service_name.clone();
            }
            let records: Vec<EventRecord> = batch
                .events
                .iter()
                .map(|e| {
                    EventRecord::new(
                        &self.settings.name,
                        &batch.service_name,
                        IdParts {
                            project_id: &project_id,
                            service_id: &self.service_id,
                            occur_time: e.occur_time,
                            event_type: &e.event_type,
                            event_info: &e.event_info,
                            twin: e.twin,
                        },
                    )
                })
                .collect();
            let through = records.last().map(|r| r.occur_time);
            let mut new_ids: HashSet<&str> = HashSet::new();
            let mut deliveries = Vec::new();
            for target in targets.iter_mut().filter(|t| t.failed.is_none()) {
                let picked: Vec<&EventRecord> = records
                    .iter()
                    .filter(|r| target.cursor.is_new(r.occur_time, &r.id))
                    .collect();
                new_ids.extend(picked.iter().map(|r| r.id.as_str()));
                let wanted: Vec<EventRecord> = picked
                    .into_iter()
                    .filter(|r| target.lane.filter.accepts(r))
                    .cloned()
                    .collect();
                deliveries.push((target, wanted));
            }
            summary.new += new_ids.len() as u64;
            match self.mode.as_ref() {
                Mode::DryRun { .. } => {
                    print_dry_run(&records, &deliveries);
                }
                Mode::Deliver { state } => {
                    let sends = deliveries
                        .into_iter()
                        .map(|(target, wanted)| deliver(state, target, wanted, through));
                    for (sink, count) in futures_util::future::join_all(sends).await {
                        *summary.delivered.entry(sink).or_default() += count;
                    }
                }
            }
            if targets.iter().all(|t| t.failed.is_some()) {
                warn!(service_id = %self.service_id, "Every sink of this service failed; stopping its pull.");
                break;
            }
            if *self.shutdown.borrow() {
                info!(service_id = %self.service_id, "Stopping after the batch in flight.");
                break;
            }
        }
        Ok(())
    }
}

/// Sends what one sink lacks, in chunks, committing after each
/// acknowledged chunk. Returns (sink name, records delivered).
async fn deliver(
    state: &StateHandle,
    target: &mut Target,
    wanted: Vec<EventRecord>,
    through: Option<i64>,
) -> (String, u64) {
    let name = target.lane.name.clone();
    let Some(sink) = target.lane.sink.clone() else {
        // Only `--dry-run` builds lanes without a sink, and it never delivers.
        return (name, 0);
    };
    let chunk_size = sink.max_batch_events().max(1);
    let mut delivered = 0u64;
    let chunks: Vec<&[EventRecord]> = if wanted.is_empty() {
        vec![&[]]
    } else {
        wanted.chunks(chunk_size).collect()
    };
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        // The last chunk closes the whole batch; an earlier one only
        // vouches for the events up to its own last one.
        let chunk_through = if i == last {
            through
        } else {
            chunk.last().map(|r| r.occur_time)
        };
        let _lane = target.lane.lane.lock().await;
        let delivery = if chunk.is_empty() {
            Delivery::default()
        } else {
            match sink.send(chunk).await {
                Ok(delivery) => delivery,
                Err(e) => {
                    error!(sink = %name, error = %e, "Delivery failed; this sink stays at its last acknowledged position.");
                    target.failed = Some(e.to_string());
                    return (name, delivered);
                }
            }
        };
        for rejected in &delivery.rejected {
            warn!(sink = %name, index = rejected.index, reason = %rejected.reason, "The sink rejected an event.");
        }
        let ids: Vec<(String, i64)> = chunk.iter().map(|r| (r.id.clone(), r.occur_time)).collect();
        let accepted = chunk.len() - delivery.rejected.len();
        let Some(cursor) = target.cursor.acknowledge(ids, chunk_through) else {
            delivered += accepted as u64;
            continue;
        };
        let files = match (&target.lane.file_path, delivery.file) {
            (Some(path), Some(FileCheckpoint { len, dev, ino })) => {
                vec![(name.clone(), path.clone(), FileOffset { len, dev, ino })]
            }
            _ => Vec::new(),
        };
        if let Err(e) = state
            .commit(Commit {
                cursors: vec![cursor],
                files,
            })
            .await
        {
            error!(sink = %name, error = %e, "Could not commit the position; the batch will be delivered again.");
            target.failed = Some(format!("state commit failed: {e}"));
            return (name, delivered);
        }
        delivered += accepted as u64;
    }
    (name, delivered)
}

/// `--dry-run`: print each record some sink would receive, once.
fn print_dry_run(records: &[EventRecord], deliveries: &[(&mut Target, Vec<EventRecord>)]) {
    let wanted: HashSet<&str> = deliveries
        .iter()
        .flat_map(|(_, w)| w.iter().map(|r| r.id.as_str()))
        .collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for record in records.iter().filter(|r| wanted.contains(r.id.as_str())) {
        if writeln!(out, "{}", record.to_json_line()).is_err() {
            return;
        }
    }
    let _ = out.flush();
}
