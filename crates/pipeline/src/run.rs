//! One sync cycle: authenticate each selected source once and work out which services
//! it follows, start one driver per sink, run the service jobs `concurrency` at a time,
//! then the catch-up pulls of sinks the jobs left behind, and gather the report.
//!
//! A shutdown ends every wait of the cycle on the source side (authentication, the
//! services listing, each service's pull); the drivers then finish and commit what they
//! were handed. A service task that panics or is cancelled is a failure of that service,
//! named in the report, never a silent success. A refused authentication is held by the
//! source's client (its one lockout policy): `run` polls it again only when the hold ends
//! or the credentials change.

use crate::driver::{self, DriverReport};
use crate::error::{ServiceFailure, SinkFailure, SourceFailure};
use crate::job::{JobOutcome, ServiceJob, Target, stopped};
use crate::report::{RunReport, ServiceSummary, SinkSummary, SourceProblem};
use crate::sinks::SinkRuntime;
use crate::state::StateHandle;
use source::checkpoint::DiscoveredService;
use source::discovery;
use source::{ModelArtsClient, ServerModel, Shard, SourceError, SourceSettings};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use telemetry::Observer;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinError, JoinSet};
use tracing::{debug, error, warn};

/// One configured source, ready to pull.
pub struct SourceRuntime {
    pub settings: SourceSettings,
    pub client: ModelArtsClient,
    /// What the source learned about its server's paging, shared by its services.
    pub model: Mutex<ServerModel>,
}

impl SourceRuntime {
    pub fn new(settings: SourceSettings, client: ModelArtsClient) -> Self {
        SourceRuntime {
            settings,
            client,
            model: Mutex::new(ServerModel::default()),
        }
    }
}

/// What a run does: deliver to sinks and commit, or only print what it would deliver.
pub enum Mode {
    Deliver {
        state: StateHandle,
    },
    /// Reads the state if there is one. Prints the records some sink would receive as
    /// JSON lines, or, with `preview`, hands them to it (`--dry-run --sink NAME`).
    DryRun {
        state: Option<StateHandle>,
        preview: Option<Arc<crate::preview::DryRunPreview>>,
    },
}

/// Which services a run covers (`--source`, `--service`).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub source: Option<String>,
    pub services: Vec<String>,
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

/// Sources, sinks and the state, wired together.
pub struct Pipeline {
    pub sources: Vec<Arc<SourceRuntime>>,
    pub sinks: Vec<Arc<SinkRuntime>>,
    /// Services pulled at once, across sources.
    pub concurrency: usize,
    /// The services this runner follows among those each source lists or
    /// discovers (every one by default).
    pub shard: Shard,
    /// Metrics, health and progress of the process.
    pub observer: Arc<Observer>,
}

impl Pipeline {
    pub fn new(
        sources: Vec<Arc<SourceRuntime>>,
        sinks: Vec<Arc<SinkRuntime>>,
        concurrency: usize,
    ) -> Self {
        Pipeline {
            sources,
            sinks,
            concurrency: concurrency.max(1),
            shard: Shard::WHOLE,
            observer: Arc::new(Observer::new()),
        }
    }

    /// Follows only the services of `shard`.
    #[must_use]
    pub fn with_shard(mut self, shard: Shard) -> Self {
        self.shard = shard;
        self
    }

    /// Reports to `observer` (the one the sources' clients report to as well).
    pub fn with_observer(mut self, observer: Arc<Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Authenticates the source with one request and works out which services it
    /// follows: those listed in `services`, plus those that `discover` matches, that
    /// fall on this runner's shard. A shutdown ends whatever it waits for.
    pub async fn follow(
        &self,
        source: &SourceRuntime,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Vec<Followed>, SourceFailure> {
        let mut stopping = shutdown.clone();
        tokio::select! {
            biased;
            () = stopped(&mut stopping) => Err(SourceFailure::Interrupted),
            followed = self.follow_now(source) => followed,
        }
    }

    async fn follow_now(&self, source: &SourceRuntime) -> Result<Vec<Followed>, SourceFailure> {
        let kind = source.client.auth_kind();
        match source.client.authenticate().await {
            Ok(()) => {}
            // The error names the auth kind and the code already.
            Err(e @ SourceError::Auth { .. }) => return Err(SourceFailure::Auth(e)),
            Err(e @ SourceError::HeldBack { .. }) => return Err(SourceFailure::HeldBack(e)),
            Err(e @ (SourceError::Unreachable { .. } | SourceError::TimedOut { .. })) => {
                return Err(SourceFailure::Unreachable(e));
            }
            Err(error) => {
                return Err(SourceFailure::AuthAttempt { kind, error });
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
                .map_err(SourceFailure::Discovery)?;
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
        if !self.shard.is_whole() {
            // The project id is known now: configured, or learned at login.
            let project_id = source.client.project_id();
            let before = followed.len();
            followed.retain(|f| self.shard.follows(&project_id, &f.service_id));
            debug!(source = %source.settings.name, shard = %self.shard,
                followed = followed.len(), other_shards = before - followed.len(),
                "Services of other shards are left to them.");
        }
        Ok(followed)
    }

    /// Pulls every selected service once and delivers what is new. Each source
    /// authenticates once before its services fan out. Stops taking new pages when
    /// `shutdown` turns true; what is in flight is delivered and committed.
    pub async fn sync(
        &self,
        mode: &Arc<Mode>,
        selection: &Selection,
        shutdown: watch::Receiver<bool>,
    ) -> RunReport {
        let selected: Vec<&Arc<SourceRuntime>> = self
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
            futures_util::future::join_all(selected.iter().map(|s| self.follow(s, &shutdown)))
                .await;
        let mut problems = Vec::new();
        let mut services = Vec::new();
        let mut discovered_by_source = Vec::new();
        for (source, followed) in selected.into_iter().zip(followed) {
            let followed = match followed {
                Ok(followed) => followed,
                Err(SourceFailure::Interrupted) => {
                    warn!(source = %source.settings.name,
                        "Shutting down before the source's services were synced.");
                    continue;
                }
                Err(failure) => {
                    // The run's summary names the failure (once); this is for debugging.
                    debug!(source = %source.settings.name, error = %failure,
                        "Source failed; its services were not synced. Other sources go on.");
                    problems.push(SourceProblem {
                        source: source.settings.name.clone(),
                        failure,
                    });
                    continue;
                }
            };
            for service in &followed {
                if selection.services.is_empty() || selection.services.contains(&service.service_id)
                {
                    services.push((source.clone(), service.clone()));
                }
            }
            if source.settings.discover.is_some() {
                discovered_by_source.push((source.settings.name.clone(), followed));
            }
        }
        for wanted in &selection.services {
            if !services.iter().any(|(_, f)| &f.service_id == wanted) && problems.is_empty() {
                problems.push(SourceProblem {
                    source: selection.source.clone().unwrap_or_else(|| "-".to_owned()),
                    failure: SourceFailure::NotFollowed(wanted.clone()),
                });
            }
        }
        let mut report = self.sync_services(mode, services, shutdown).await;
        report.sources = problems;
        if let Mode::Deliver { state } = mode.as_ref() {
            for (source, followed) in discovered_by_source {
                record_discovery(state, &source, &followed, &mut report).await;
            }
        }
        report
    }

    /// Pulls the given services and delivers what is new, without authenticating the
    /// sources first or listing their services: one cycle of the engine.
    pub async fn sync_services(
        &self,
        mode: &Arc<Mode>,
        services: Vec<(Arc<SourceRuntime>, Followed)>,
        shutdown: watch::Receiver<bool>,
    ) -> RunReport {
        let started_at = record::now_ms();
        let mut report = RunReport::default();
        let mut sinks: Vec<SinkSummary> = self
            .sinks
            .iter()
            .map(|s| SinkSummary::new(&s.name, s.kind, s.dead_letter.path().to_owned()))
            .collect();
        // One driver per sink that can deliver this cycle.
        let mut drivers = Vec::with_capacity(self.sinks.len());
        for (sink, summary) in self.sinks.iter().zip(&mut sinks) {
            let driver = match mode.as_ref() {
                Mode::DryRun { .. } => None,
                Mode::Deliver { state } => match sink.unavailable() {
                    Some(failure) => {
                        self.observer.sink_failed(&sink.name, &failure.to_string());
                        summary.failure = Some(failure);
                        None
                    }
                    None => Some(driver::spawn(
                        sink.clone(),
                        state.clone(),
                        shutdown.clone(),
                        self.observer.clone(),
                    )),
                },
            };
            drivers.push(driver);
        }
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut jobs = JoinSet::new();
        // Which service each task pulls, to name it if the task ends without an outcome.
        let mut tasks: HashMap<tokio::task::Id, (String, String)> = HashMap::new();
        let order: Vec<(String, String)> = services
            .iter()
            .map(|(s, f)| (s.settings.name.clone(), f.service_id.clone()))
            .collect();
        for (source, followed) in services {
            let targets = self
                .sinks
                .iter()
                .zip(&drivers)
                .filter(|(sink, _)| sink.filter.takes_source(&source.settings.name))
                .map(|(sink, driver)| Target::new(sink.clone(), driver.as_ref().map(|(h, _)| h)))
                .collect();
            let job = ServiceJob {
                source,
                service_id: followed.service_id,
                discovered: followed.discovered,
                targets,
                mode: mode.clone(),
                started_at,
                shutdown: shutdown.clone(),
                catch_up: false,
                observer: self.observer.clone(),
            };
            spawn_job(&mut jobs, &mut tasks, &permits, job);
        }
        let mut catch_ups = Vec::new();
        while let Some(joined) = jobs.join_next_with_id().await {
            match joined {
                Ok((_, JobOutcome { summary, catch_up })) => {
                    if let Some(job) = catch_up {
                        for sink in job.sinks() {
                            if let Some(s) = sinks.iter_mut().find(|s| s.name == sink) {
                                s.fell_behind
                                    .push((summary.source.clone(), summary.service_id.clone()));
                            }
                        }
                        catch_ups.push(job);
                    }
                    report.services.push(summary);
                }
                Err(e) => report.services.push(task_failure(&tasks, e)),
            }
        }
        // The sinks left behind catch up now that the others are done, unless the run
        // is stopping (they catch up next run).
        if !*shutdown.borrow() {
            for job in catch_ups {
                spawn_job(&mut jobs, &mut tasks, &permits, job);
            }
        } else {
            catch_ups.clear();
        }
        while let Some(joined) = jobs.join_next_with_id().await {
            let summary = match joined {
                Ok((_, JobOutcome { summary, catch_up })) => {
                    if let Some(left) = catch_up {
                        for sink in left.sinks() {
                            if let Some(s) = sinks.iter_mut().find(|s| s.name == sink) {
                                s.caught_up = false;
                            }
                        }
                    }
                    summary
                }
                Err(e) => task_failure(&tasks, e),
            };
            match report
                .services
                .iter_mut()
                .find(|s| s.source == summary.source && s.service_id == summary.service_id)
            {
                Some(main) => {
                    main.requests += summary.requests;
                    if main.failure.is_none() {
                        main.failure = summary.failure;
                    }
                }
                None => report.services.push(summary),
            }
        }
        for (summary, driver) in sinks.iter_mut().zip(drivers) {
            let Some((handle, task)) = driver else {
                continue;
            };
            // The jobs are done: dropping the last handle closes the channel, and the
            // driver finishes what it holds.
            drop(handle);
            match task.await {
                Ok(done) => merge(summary, done, &mut report),
                Err(e) => {
                    error!(sink = %summary.name, error = %e, "A sink driver failed unexpectedly.");
                    summary.failure = Some(SinkFailure::Malformed(format!(
                        "the driver task stopped: {e}"
                    )));
                }
            }
        }
        // A dry run delivers nothing: its sinks have nothing to report.
        if matches!(mode.as_ref(), Mode::Deliver { .. }) {
            self.observe_windows(&report.services, &sinks);
            report.sinks = sinks;
        }
        report.services.sort_by_key(|s| {
            order
                .iter()
                .position(|(src, svc)| src == &s.source && svc == &s.service_id)
        });
        report
    }
}

impl Pipeline {
    /// Tells the observer which polls ended well and which sinks acknowledged all of
    /// their events: a sink that failed this cycle (anywhere), holds records back, or
    /// was left behind on the service without catching up has not.
    fn observe_windows(&self, services: &[ServiceSummary], sinks: &[SinkSummary]) {
        for summary in sinks {
            match &summary.failure {
                Some(SinkFailure::Interrupted(_)) => {}
                Some(failure) => self
                    .observer
                    .sink_failed(&summary.name, &failure.to_string()),
                None if summary.held == 0 && summary.caught_up => {
                    self.observer.sink_caught_up(&summary.name);
                }
                None => {}
            }
        }
        for service in services {
            let Some(at) = service.polled_at else {
                continue;
            };
            if service.failure.is_some() || service.gone {
                continue;
            }
            self.observer
                .polled(&service.source, &service.service_id, at);
            for (runtime, sink) in self.sinks.iter().zip(sinks) {
                let left_behind = !sink.caught_up
                    && sink
                        .fell_behind
                        .iter()
                        .any(|(src, svc)| src == &service.source && svc == &service.service_id);
                if runtime.filter.takes_source(&service.source)
                    && sink.failure.is_none()
                    && sink.held == 0
                    && !left_behind
                {
                    self.observer.acknowledged_through(
                        &service.source,
                        &service.service_id,
                        &sink.name,
                        at,
                    );
                }
            }
        }
    }
}

fn spawn_job(
    jobs: &mut JoinSet<JobOutcome>,
    tasks: &mut HashMap<tokio::task::Id, (String, String)>,
    permits: &Arc<Semaphore>,
    job: ServiceJob,
) {
    let permits = permits.clone();
    let service = (job.source.settings.name.clone(), job.service_id.clone());
    let handle = jobs.spawn(async move {
        // The semaphore is never closed, so acquire cannot fail.
        let _permit = permits.acquire_owned().await;
        job.run().await
    });
    tasks.insert(handle.id(), service);
}

/// The summary of a service whose task ended without an outcome (it panicked or was
/// cancelled): a failure that names the service, so the run cannot end as a success.
fn task_failure(
    tasks: &HashMap<tokio::task::Id, (String, String)>,
    error: JoinError,
) -> ServiceSummary {
    let (source, service_id) = tasks
        .get(&error.id())
        .cloned()
        .unwrap_or_else(|| ("-".to_owned(), "-".to_owned()));
    let why = if error.is_panic() {
        let payload = error.into_panic();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        format!("it panicked: {message}")
    } else {
        "it was cancelled".to_owned()
    };
    error!(source = %source, service_id = %service_id, why = %why,
        "A service's task ended unexpectedly; the service failed. What was delivered before is kept.");
    let mut summary = ServiceSummary::new(&source, &service_id);
    summary.failure = Some(ServiceFailure::Task(why));
    summary
}

/// Adds what a driver did to its sink's summary and the services' summaries.
fn merge(summary: &mut SinkSummary, done: DriverReport, report: &mut RunReport) {
    for (key, delivered, dead_lettered) in done.per_cursor {
        summary.delivered += delivered;
        summary.dead_lettered += dead_lettered;
        if let Some(service) = report
            .services
            .iter_mut()
            .find(|s| s.source == key.source && s.service_id == key.service_id)
        {
            *service.delivered.entry(key.sink.clone()).or_default() += delivered;
            if dead_lettered > 0 {
                *service.dead_lettered.entry(key.sink).or_default() += dead_lettered;
            }
        }
    }
    summary.unexpected_dead_lettered = done.unexpected_dead_lettered;
    summary.expected_dead_lettered = done.expected_dead_lettered;
    summary.held = done.held;
    summary.skipped = done.skipped;
    summary.batches = done.batches;
    summary.requests = done.requests;
    if summary.failure.is_none() {
        summary.failure = done.failure;
    }
}

/// Saves which discovered services exist and reports, once, those that disappeared
/// (no longer listed, or their events answer 404).
async fn record_discovery(
    state: &StateHandle,
    source: &str,
    followed: &[Followed],
    report: &mut RunReport,
) {
    let gone_now: HashSet<&str> = report
        .services
        .iter()
        .filter(|s| s.source == source && s.gone)
        .map(|s| s.service_id.as_str())
        .collect();
    let seen: Vec<DiscoveredService> = followed
        .iter()
        .filter(|f| f.discovered)
        .map(|f| DiscoveredService {
            service_id: f.service_id.clone(),
            service_name: f.service_name.clone(),
            gone: gone_now.contains(f.service_id.as_str()),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_or_is_cancelled_fails_its_service_by_name() {
        let mut jobs: JoinSet<()> = JoinSet::new();
        let mut tasks = HashMap::new();
        let panicking = jobs.spawn(async { panic!("year 10000 cannot be written") });
        tasks.insert(panicking.id(), ("prod".to_owned(), "svc-1".to_owned()));
        let error = jobs.join_next().await.unwrap().unwrap_err();
        let summary = task_failure(&tasks, error);
        assert_eq!(
            (summary.source.as_str(), summary.service_id.as_str()),
            ("prod", "svc-1")
        );
        let line = summary.line();
        assert!(
            line.contains("failed 1") && line.contains("panicked: year 10000 cannot be written"),
            "{line}"
        );
        let report = RunReport {
            services: vec![summary],
            ..RunReport::default()
        };
        assert!(
            !report.ok(),
            "a panicked service never ends a run as a success"
        );

        let cancelled = jobs.spawn(std::future::pending());
        tasks.insert(cancelled.id(), ("prod".to_owned(), "svc-2".to_owned()));
        cancelled.abort();
        let error = jobs.join_next().await.unwrap().unwrap_err();
        let summary = task_failure(&tasks, error);
        assert_eq!(summary.service_id, "svc-2");
        assert!(summary.line().contains("cancelled"), "{}", summary.line());
    }
}
