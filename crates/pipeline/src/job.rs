//! The pull of one service: from the oldest floor any of its sinks needs, page by page,
//! each record built once and offered to every sink that lacks it.
//!
//! Each sink that takes the service is a *target* with its own cursor
//! ([`source::SinkCursor`]), advanced as records are handed over, so that a re-read
//! within the pull hands nothing twice. Offering waits at most the sink's
//! `batch.timeout` for room in its driver's channel: a sink that stays busier than the
//! pull for that long is *left behind* (the other sinks are not paced by it). It keeps
//! its position and feed, and the pipeline runs a catch-up pull for it once the other
//! sinks are done.
//!
//! A shutdown ends the pull at once, whatever it waits for (a retry's backoff, the
//! source's rate limiter, a request in flight): what was handed to the drivers is
//! delivered and committed by them; the rest is read again next run. Positions never
//! move past the clock plus the source's `max_clock_skew` (each batch says how far they
//! may move), and a stored one that is ahead of it is brought back when it is loaded.

use crate::driver::{DriverHandle, Feed, Offered};
use crate::error::{ServiceFailure, StateFailure};
use crate::ledger::LedgerStart;
use crate::prefetch::PrefetchedPull;
use crate::report::ServiceSummary;
use crate::run::{Mode, SourceRuntime};
use crate::sinks::SinkRuntime;
use record::{ServiceFields, SharedRecord};
use source::checkpoint::CursorKey;
use source::pull::position_limit;
use source::{PullOptions, PulledEvent, SinkCursor, SourceError, StartAt};
use std::io::Write;
use std::sync::Arc;
use telemetry::Observer;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// Where a target stands in this pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Active,
    /// Its driver failed (or it could not deliver this cycle at all).
    Out,
    /// It was busier than the pull for longer than its `batch.timeout`.
    Behind,
}

/// One sink of a service job.
pub(crate) struct Target {
    pub sink: Arc<SinkRuntime>,
    /// The driver and this job's feed into it; `None` for `--dry-run` and for sinks that
    /// cannot deliver this cycle.
    delivery: Option<(DriverHandle, Feed)>,
    /// What the sink has been handed: advanced only for offers its driver took.
    cursor: Option<SinkCursor>,
    /// Whether the cursor was in the state file when it was loaded.
    stored: bool,
    /// Whether the driver took the feed's opening message.
    opened: bool,
    standing: Standing,
}

impl Target {
    pub fn new(sink: Arc<SinkRuntime>, driver: Option<&DriverHandle>) -> Self {
        Target {
            delivery: driver.map(|d| (d.clone(), d.register())),
            sink,
            cursor: None,
            stored: false,
            opened: false,
            standing: Standing::Active,
        }
    }
}

/// A service to pull this cycle.
pub(crate) struct ServiceJob {
    pub source: Arc<SourceRuntime>,
    pub service_id: String,
    /// Followed through discovery only: a 404 means it disappeared.
    pub discovered: bool,
    pub targets: Vec<Target>,
    pub mode: Arc<Mode>,
    /// The run's start, for `start_at = "now"`.
    pub started_at: i64,
    pub shutdown: watch::Receiver<bool>,
    /// A catch-up pull for sinks left behind: it waits on them as long as it takes.
    pub catch_up: bool,
    /// Metrics and progress of the process.
    pub observer: Arc<Observer>,
}

/// What a job did, and a catch-up pull for the targets it left behind (with their
/// cursors and feeds), if it left any.
pub(crate) struct JobOutcome {
    pub summary: ServiceSummary,
    pub catch_up: Option<ServiceJob>,
}

impl ServiceJob {
    fn since(&self) -> i64 {
        match self.source.settings.start_at {
            StartAt::Beginning => 0,
            StartAt::Now => self.started_at,
            StartAt::At(ms) => ms,
        }
    }

    pub async fn run(mut self) -> JobOutcome {
        let settings = &self.source.settings;
        let mut summary = ServiceSummary::new(&settings.name, &self.service_id);
        summary.dry_run = matches!(self.mode.as_ref(), Mode::DryRun { .. });
        for target in &self.targets {
            let counts = if summary.dry_run {
                &mut summary.would_deliver
            } else {
                &mut summary.delivered
            };
            counts.insert(target.sink.name.clone(), 0);
        }
        if self.targets.is_empty() {
            warn!(source = %settings.name, "No sink takes this source's events; nothing to do.");
            return JobOutcome {
                summary,
                catch_up: None,
            };
        }
        if let Err(e) = self.start().await {
            summary.failure = Some(ServiceFailure::State(e));
            return self.end(summary);
        }
        let Some(floor) = self
            .active()
            .filter_map(|t| t.cursor.as_ref())
            .map(SinkCursor::floor)
            .min()
        else {
            // Every sink of this service failed before the pull; the sinks' summaries say why.
            return self.end(summary);
        };
        let options = PullOptions {
            page_size: self.source.settings.page_size,
            event_type: self.source.settings.event_type.clone(),
            offset_unit: self.source.settings.offset_unit,
            max_clock_skew: self.source.settings.max_clock_skew,
        };
        let source = self.source.clone();
        let source_name = source.settings.name.clone();
        // Every event listed before this instant is read by a pull that ends well.
        let polled_from = record::now_ms();
        if !self.catch_up {
            self.observer.pull_started(&source_name, &self.service_id);
        }
        // The next page is read while this one is handed over (one batch ahead).
        let mut pull = PrefetchedPull::spawn(source, self.service_id.clone(), floor, options);
        let result = self.drive(&mut pull, &mut summary).await;
        summary.requests = pull.requests();
        if !self.catch_up {
            self.observer.pull_finished(&source_name, &self.service_id);
        }
        match result {
            Ok(true) => summary.polled_at = Some(polled_from),
            Ok(false) => {}
            Err(SourceError::ServiceNotFound { .. }) if self.discovered => summary.gone = true,
            Err(e) => {
                // The run's summary names the failure (once); this is for debugging.
                debug!(source = %self.source.settings.name, service_id = %self.service_id, error = %e,
                    "Service sync failed; what was delivered is kept.");
                summary.failure = Some(ServiceFailure::Source(e));
            }
        }
        self.end(summary)
    }

    fn active(&self) -> impl Iterator<Item = &Target> {
        self.targets
            .iter()
            .filter(|t| t.standing == Standing::Active)
    }

    fn end(self, summary: ServiceSummary) -> JobOutcome {
        let behind: Vec<Target> = self
            .targets
            .into_iter()
            .filter(|t| t.standing == Standing::Behind)
            .collect();
        let catch_up = (!behind.is_empty()).then(|| ServiceJob {
            source: self.source,
            service_id: self.service_id,
            discovered: self.discovered,
            targets: behind,
            mode: self.mode,
            started_at: self.started_at,
            shutdown: self.shutdown,
            catch_up: true,
            observer: self.observer,
        });
        JobOutcome { summary, catch_up }
    }

    /// The sinks this job left behind.
    pub fn sinks(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|t| t.sink.name.as_str())
    }

    /// The patience of an offer: a catch-up waits as long as it takes.
    fn patience(&self, sink: &SinkRuntime) -> Option<std::time::Duration> {
        (!self.catch_up).then_some(sink.options.batch.timeout)
    }

    /// Loads the cursors of targets that have none yet and tells their drivers where
    /// they start. Sinks that cannot deliver this cycle take no part.
    async fn start(&mut self) -> Result<(), StateFailure> {
        let deliver = matches!(self.mode.as_ref(), Mode::Deliver { .. });
        for target in &mut self.targets {
            // A catch-up takes the targets its pull left behind back.
            target.standing = Standing::Active;
            if let Some((_, feed)) = &mut target.delivery {
                feed.set_waiting(false);
            }
            let unavailable = match &target.delivery {
                Some((driver, _)) => driver.is_failed(),
                None => deliver,
            };
            if unavailable {
                target.standing = Standing::Out;
            }
        }
        let state = match self.mode.as_ref() {
            Mode::Deliver { state } => Some(state),
            Mode::DryRun { state, .. } => state.as_ref(),
        };
        let settings = &self.source.settings;
        let wanted: Vec<usize> = (0..self.targets.len())
            .filter(|&i| {
                self.targets[i].standing == Standing::Active && self.targets[i].cursor.is_none()
            })
            .collect();
        let keys: Vec<CursorKey> = wanted
            .iter()
            .map(|&i| CursorKey {
                source: settings.name.clone(),
                service_id: self.service_id.clone(),
                sink: self.targets[i].sink.name.clone(),
            })
            .collect();
        let stored = match state {
            Some(state) => state.cursors(keys.clone()).await?,
            None => vec![None; keys.len()],
        };
        // Targets that already have a cursor (a catch-up) but whose opening was not taken.
        let mut starts: Vec<(usize, CursorKey)> = (0..self.targets.len())
            .filter(|&i| self.targets[i].cursor.is_some() && !self.targets[i].opened)
            .map(|i| {
                let key = CursorKey {
                    source: settings.name.clone(),
                    service_id: self.service_id.clone(),
                    sink: self.targets[i].sink.name.clone(),
                };
                (i, key)
            })
            .collect();
        let since = self.since();
        let lookback = settings.lookback;
        let limit = position_limit(record::now_ms(), settings.max_clock_skew);
        for ((index, key), stored) in wanted.into_iter().zip(keys).zip(stored) {
            let target = &mut self.targets[index];
            target.stored = stored.is_some();
            let mut cursor = SinkCursor::new(stored, since, lookback);
            if cursor.cap_position(limit) {
                warn!(source = %settings.name, service_id = %self.service_id, sink = %target.sink.name,
                    position = %record::timestamp_rfc3339(limit),
                    "The stored position was ahead of the clock plus max_clock_skew; it is moved back to that (what the sink has stays fingerprinted).");
            }
            target.cursor = Some(cursor);
            target.opened = false;
            starts.push((index, key));
        }
        // Tell the drivers where each cursor starts (again, for a catch-up whose first
        // attempt was not taken).
        for (index, key) in starts {
            let target = &self.targets[index];
            if target.standing != Standing::Active || target.opened {
                continue;
            }
            let Some(cursor) = target.cursor.as_ref() else {
                continue;
            };
            let start = LedgerStart {
                key,
                since: cursor.since(),
                position: cursor.position(),
                lookback_ms: source::cursor::lookback_ms(lookback),
                stored: target.stored,
            };
            let patience = self.patience(&target.sink);
            let target = &mut self.targets[index];
            if let Some((driver, feed)) = &mut target.delivery {
                match driver.open(feed, start, patience).await {
                    Offered::Taken => target.opened = true,
                    Offered::Gone => target.standing = Standing::Out,
                    Offered::Slow => {
                        feed.set_waiting(true);
                        target.standing = Standing::Behind;
                    }
                }
            }
        }
        Ok(())
    }

    async fn drive(
        &mut self,
        pull: &mut PrefetchedPull,
        summary: &mut ServiceSummary,
    ) -> Result<bool, SourceError> {
        // With password auth the project may come from the token.
        let project_id = self.source.client.project_id().to_owned();
        let source_name = self.source.settings.name.clone();
        // Shared by every record of the service; the name is replaced when a page
        // brings another.
        let mut service = ServiceFields::new(&source_name, &project_id, &self.service_id, "");
        let mut stopping = self.shutdown.clone();
        loop {
            // Whatever the pull waits for (a backoff, the rate limiter, a request), a
            // shutdown ends the wait: the pull is dropped where it stands.
            let next = tokio::select! {
                biased;
                () = stopped(&mut stopping) => {
                    info!(source = %source_name, service_id = %self.service_id,
                        "Stopping this service's pull: shutting down.");
                    return Ok(false);
                }
                next = pull.next_batch() => next?,
            };
            let Some(batch) = next else {
                return Ok(true);
            };
            summary.malformed += batch.malformed.len() as u64;
            summary.fetched += batch.events.len() as u64;
            if !self.catch_up {
                if let Some(total) = pull.total_count() {
                    self.observer
                        .pull_total(&source_name, &self.service_id, total);
                }
                self.observer
                    .fetched(&source_name, &self.service_id, batch.events.len() as u64);
            }
            if !batch.service_name.is_empty() {
                summary.service_name.clone_from(&batch.service_name);
            }
            // The newest event's time, but never past the clock plus max_clock_skew.
            let through = batch.through;
            if service.service_name() != batch.service_name {
                service.set_service_name(&batch.service_name);
            }
            let Some(records) = build_records(&service, batch.events).await else {
                info!(service_id = %self.service_id, "Stopping this service's pull: the runtime is shutting down.");
                return Ok(false);
            };
            let mut wanted_by_some = vec![false; records.len()];
            for index in 0..self.targets.len() {
                if self.targets[index].standing != Standing::Active {
                    continue;
                }
                let patience = self.patience(&self.targets[index].sink);
                let target = &mut self.targets[index];
                let Some(cursor) = target.cursor.as_mut() else {
                    continue;
                };
                // Which records the sink lacks, by index: the cursor is advanced over them
                // once the driver took their copies.
                let mut handed_at = Vec::new();
                for (i, record) in records.iter().enumerate() {
                    if cursor.is_new(record.occur_time, &record.id)
                        && target.sink.filter.accepts(record)
                    {
                        wanted_by_some[i] = true;
                        handed_at.push(i);
                    }
                }
                let handed: Vec<SharedRecord> =
                    handed_at.iter().map(|&i| records[i].clone()).collect();
                let handed_ids = || {
                    handed_at
                        .iter()
                        .map(|&i| (records[i].id.as_str(), records[i].occur_time))
                };
                let Some((driver, feed)) = &mut target.delivery else {
                    // A dry run hands nothing over; the cursor only keeps the pull's
                    // re-reads from printing a record twice.
                    *summary
                        .would_deliver
                        .entry(target.sink.name.clone())
                        .or_default() += handed.len() as u64;
                    cursor.advance(handed_ids(), through);
                    continue;
                };
                // The cursor moves only once the driver took the records: an offer that
                // is not taken must be made again by the catch-up.
                match driver.offer(feed, handed, through, patience).await {
                    Offered::Taken => cursor.advance(handed_ids(), through),
                    Offered::Gone => target.standing = Standing::Out,
                    Offered::Slow => {
                        info!(sink = %target.sink.name, service_id = %self.service_id,
                            "The sink is slower than the pull; going on without it. It catches up after the other sinks.");
                        // Left behind, its feed waits on the driver until the catch-up.
                        feed.set_waiting(true);
                        target.standing = Standing::Behind;
                    }
                }
            }
            // New: taken by some sink that did not have it. An event every sink filters
            // out is never fingerprinted, so it would look new on every re-read.
            summary.new += wanted_by_some.iter().filter(|w| **w).count() as u64;
            if let Mode::DryRun { preview, .. } = self.mode.as_ref() {
                match preview {
                    Some(preview) => preview.add(
                        records
                            .iter()
                            .zip(&wanted_by_some)
                            .filter(|(_, w)| **w)
                            .map(|(r, _)| r.clone()),
                    ),
                    None => print_dry_run(&records, &wanted_by_some),
                }
            }
            if self.active().next().is_none() {
                warn!(service_id = %self.service_id,
                    "No sink of this service takes more for now; stopping its pull.");
                return Ok(false);
            }
            if *self.shutdown.borrow() {
                info!(service_id = %self.service_id, "Stopping after the batch in flight.");
                return Ok(false);
            }
        }
    }
}

/// The records of a page's events, built off the runtime's workers: hashing the ids of a
/// page takes a good part of a millisecond, in which a worker would otherwise leave the
/// pull's next request and the drivers' sends waiting (the pull and the job then took
/// turns on one worker: a 1M backfill went from 0.91-0.94 s to 0.76-0.78 s).
/// `None` if the runtime is shutting down; a panic in the build is the caller's.
async fn build_records(
    service: &ServiceFields,
    events: Vec<PulledEvent>,
) -> Option<Vec<SharedRecord>> {
    let service = service.clone();
    let built = tokio::task::spawn_blocking(move || {
        events
            .into_iter()
            .map(|e| {
                SharedRecord::of_service(&service, e.occur_time, e.event_type, e.event_info, e.twin)
            })
            .collect()
    })
    .await;
    match built {
        Ok(records) => Some(records),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => None,
    }
}

/// Resolves once `shutdown` turns true; never, if its sender is gone without saying so.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// `--dry-run`: prints each record some sink would receive, once.
fn print_dry_run(records: &[SharedRecord], wanted: &[bool]) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for (record, _) in records.iter().zip(wanted).filter(|(_, w)| **w) {
        if writeln!(out, "{}", record.json_line()).is_err() {
            return;
        }
    }
    let _ = out.flush();
}
