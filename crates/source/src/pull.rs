//! The incremental pull of one service's events, paging by time instead of
//! trusting the server's paging model.
//!
//! The events API has no ids and no cursor, and its docs leave open whether
//! `start_time`/`end_time` are inclusive, whether `offset` counts pages or
//! records, and whether a large `limit` is served in full. The pull keeps
//! correct under every combination:
//!
//! - It asks `sort_by=occur_time&order=asc&offset=0` from `floor - 1` (right
//!   for an inclusive and an exclusive bound; rows below `floor` are
//!   dropped), and treats a page as covering only the milliseconds before
//!   its last row, because that last millisecond may go on in the next page.
//!   The next request starts at that millisecond again.
//! - A page whose rows all share one millisecond, with more to come, means
//!   the millisecond holds more events than a page: it is read alone, in a
//!   narrow window, with offset paging; only here does the offset unit
//!   matter, and it is detected once per source (`OffsetUnit::Auto`).
//! - A page shorter than `limit` while `total_count` says more remain shows
//!   the server clamps `limit`; the pull stops only when a page covers
//!   `total_count`, never on a short page.
//! - Identical events in one millisecond ("twins") are numbered 1, 2, … in
//!   the server's order; a group is numbered from its first row on every
//!   read, so the numbers, and so the ids, are stable across runs.
//! - Inside an overfull millisecond each page is handed out only once the next
//!   one has shown that the server pages honestly: a page that repeats one
//!   already read, while a page past the end still has rows, proves the server
//!   ignores `offset`, and the service fails with that reason before anything
//!   it cannot number correctly is delivered (twins would be invented, other
//!   rows never seen). Every paging loop is bounded by what the data can
//!   justify: at most `ceil(total_count / served) + 2` requests for one
//!   millisecond's window, and a page that brings nothing new ends a loop.
//! - Positions never run ahead of the clock: a batch says how far positions
//!   may move (`through`), which is its newest event but at most the clock
//!   plus `max_clock_skew`. An event dated later is delivered, and kept by its
//!   fingerprint until the position reaches it, so one event from the future
//!   does not push later ones out of `lookback`.

use crate::client::{EventRow, EventsPage, EventsQuery, ModelArtsClient, RawEvent};
use crate::error::SourceError;
use crate::settings::OffsetUnit;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{debug, info, warn};

/// What a source has learned about its server's paging, shared by all of
/// the source's services so that each fact is detected once.
#[derive(Debug, Default, Clone)]
pub struct ServerModel {
    /// `Some(true)` once a row at exactly the asked `start_time` was seen.
    pub start_inclusive: Option<bool>,
    /// `Some(true)` once a row at exactly the asked `end_time` was seen.
    pub end_inclusive: Option<bool>,
    /// How `offset` counts, once known (never `Auto`).
    pub offset_unit: Option<OffsetUnit>,
    /// The page size the server really serves, once a clamp was seen.
    pub served_page_size: Option<u32>,
}

/// Settings of the pull that come from the source's config.
#[derive(Debug, Clone)]
pub struct PullOptions {
    pub page_size: u32,
    pub event_type: Option<String>,
    pub offset_unit: OffsetUnit,
    /// How far ahead of the clock a batch's `through` may be.
    pub max_clock_skew: Duration,
}

/// One event ready to become a record: its twin number is assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledEvent {
    pub occur_time: i64,
    pub event_type: String,
    pub event_info: String,
    /// 1-based number among identical events in its millisecond.
    pub twin: u32,
}

/// A batch of events in ascending `occur_time`.
#[derive(Debug, Clone, Default)]
pub struct PulledBatch {
    pub service_name: String,
    pub events: Vec<PulledEvent>,
    /// Rows with no usable `occur_time`, as truncated raw JSON.
    pub malformed: Vec<String>,
    /// How far positions may move for this batch: its newest event's time, but never
    /// past the clock plus `max_clock_skew` (`None` without events).
    pub through: Option<i64>,
}

/// The newest position a commit may write now: the clock (`now_ms`) plus
/// `max_clock_skew`.
pub fn position_limit(now_ms: i64, max_clock_skew: Duration) -> i64 {
    now_ms.saturating_add(crate::cursor::lookback_ms(max_clock_skew))
}

/// How far positions may move for `events` (ascending): to the newest one, but not past
/// `limit`.
pub fn capped_through(events: &[PulledEvent], limit: i64) -> Option<i64> {
    events.last().map(|e| e.occur_time.min(limit))
}

/// Where the pull is.
#[derive(Debug)]
enum Phase {
    /// Paging by time from `floor`.
    Scan,
    /// Reading one overfull millisecond with offset paging.
    Millisecond(MillisecondRead),
    Done,
}

#[derive(Debug)]
struct MillisecondRead {
    ms: i64,
    /// Index of the next page to ask for (the first one is page 0).
    next_page: u64,
    total: u64,
    served: u32,
    unit: OffsetUnit,
    twins: HashMap<(String, String), u32>,
    /// The window page 0 was read with; offsets count from its start.
    window: (i64, i64),
    /// Times this millisecond was read again from page 0.
    restarts: u32,
    /// The events of the page read last: handed out once the next page has shown that
    /// the server pages this millisecond honestly, or the millisecond ends.
    held: Vec<PulledEvent>,
    /// A digest of each page read, to notice one that repeats an earlier page.
    pages: HashSet<u64>,
    /// Whether a page past the end came back empty: the server honours `offset`, so a
    /// page that repeats another holds real twins.
    offset_honoured: bool,
    /// Pages asked in this read (page 0, later pages, a page past the end)…
    fetched: u64,
    /// …and how many its `total_count` can justify: `ceil(total / served) + 2`.
    budget: u64,
}

/// How often one overfull millisecond is read again from its start because
/// its window changed under the pull; after that the pull goes on (a window
/// that keeps changing would otherwise cost requests without end).
const MAX_MILLISECOND_RESTARTS: u32 = 3;

/// Pulls one service's events from `floor` on, batch by batch.
pub struct ServicePull<'a> {
    client: &'a ModelArtsClient,
    model: &'a Mutex<ServerModel>,
    service_id: String,
    options: PullOptions,
    /// Every event below `floor` has been emitted (or was below the start).
    floor: i64,
    /// The `limit` asked; halved when a response is larger than allowed.
    limit: u32,
    phase: Phase,
    service_name: String,
    /// Requests made so far (see [`ServicePull::counting_into`]).
    requests: Arc<AtomicU64>,
    /// The `total_count` of the first page: how many events the pull has ahead of it.
    first_total: Option<u64>,
}

impl<'a> ServicePull<'a> {
    /// A pull of the events at or after `floor` (epoch ms; `None` or ≤ 0
    /// reads the whole history).
    pub fn new(
        client: &'a ModelArtsClient,
        model: &'a Mutex<ServerModel>,
        service_id: &str,
        floor: Option<i64>,
        options: PullOptions,
    ) -> Self {
        let limit = options.page_size.clamp(1, 1000);
        ServicePull {
            client,
            model,
            service_id: service_id.to_owned(),
            options,
            floor: floor.unwrap_or(0).max(0),
            limit,
            phase: Phase::Scan,
            service_name: String::new(),
            requests: Arc::default(),
            first_total: None,
        }
    }

    /// What the first page's `total_count` announced (progress bars use it as the
    /// total of a backfill).
    pub fn total_count(&self) -> Option<u64> {
        self.first_total
    }

    /// Requests made so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Counts requests into `counter` (from its current value), so that a pull running
    /// in another task is counted exactly, even when it is dropped with a request in
    /// flight.
    pub fn counting_into(mut self, counter: Arc<AtomicU64>) -> Self {
        self.requests = counter;
        self
    }

    /// The next batch, or `None` when the service has been read to its end.
    /// A batch may be empty of events (for example only malformed rows).
    pub async fn next_batch(&mut self) -> Result<Option<PulledBatch>, SourceError> {
        loop {
            let step = match std::mem::replace(&mut self.phase, Phase::Done) {
                Phase::Done => return Ok(None),
                Phase::Scan => self.scan_step().await?,
                Phase::Millisecond(read) => self.millisecond_step(read).await?,
            };
            if let Some(batch) = step {
                return Ok(Some(batch));
            }
        }
    }

    fn model(&self) -> ServerModel {
        // A poisoned lock only means another service's task panicked while
        // holding it; the facts inside are still valid.
        self.model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn learn(&self, update: impl FnOnce(&mut ServerModel)) {
        let mut model = self
            .model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        update(&mut model);
    }

    /// A request for this service with the current `limit`.
    fn query(&self, start_time: Option<i64>, end_time: Option<i64>, offset: u64) -> EventsQuery {
        EventsQuery {
            start_time,
            end_time,
            offset,
            limit: self.limit,
            event_type: self.options.event_type.clone(),
        }
    }

    async fn fetch(&mut self, query: &EventsQuery) -> Result<EventsPage, SourceError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        debug!(service_id = %self.service_id, ?query, "Requesting events.");
        let page = self.client.service_events(&self.service_id, query).await?;
        self.first_total.get_or_insert(page.total_count);
        if !page.service_name.is_empty() && self.service_name != page.service_name {
            self.service_name = page.service_name.clone();
        }
        Ok(page)
    }

    fn batch(&self, events: Vec<PulledEvent>, malformed: Vec<String>) -> PulledBatch {
        for raw in &malformed {
            warn!(
                service_id = %self.service_id,
                row = %raw,
                "Skipping an event without a usable occur_time (none, not a number, or outside the years 1970 to 9999)."
            );
        }
        let limit = position_limit(record::now_ms(), self.options.max_clock_skew);
        for event in events.iter().filter(|e| e.occur_time > limit) {
            warn!(
                service_id = %self.service_id,
                occur_time = %record::timestamp_rfc3339(event.occur_time),
                max_clock_skew = %humantime::format_duration(self.options.max_clock_skew),
                "An event is dated further ahead of the clock than max_clock_skew; it is delivered once, and positions wait for the clock to reach it."
            );
        }
        PulledBatch {
            service_name: self.service_name.clone(),
            through: capped_through(&events, limit),
            events,
            malformed,
        }
    }

    /// A batch of `events` from the millisecond read, if there are any.
    fn some_batch(&self, events: Vec<PulledEvent>) -> Option<PulledBatch> {
        (!events.is_empty()).then(|| self.batch(events, Vec::new()))
    }

    /// One request of the time scan. Sets the next phase; returns a batch
    /// when there is one to hand out.
    async fn scan_step(&mut self) -> Result<Option<PulledBatch>, SourceError> {
        let model = self.model();
        let start_time = if self.floor <= 0 {
            None
        } else if model.start_inclusive == Some(true) {
            Some(self.floor)
        } else {
            Some(self.floor.saturating_sub(1))
        };
        let query = self.query(start_time, None, 0);
        let page = match self.fetch(&query).await {
            Err(SourceError::TooLarge { .. }) if self.limit > 1 => {
                self.limit = (self.limit / 2).max(1);
                warn!(service_id = %self.service_id, limit = self.limit,
                    "Response larger than max_response_bytes; asking again with half the limit.");
                self.phase = Phase::Scan;
                return Ok(None);
            }
            other => other?,
        };
        let served = page.rows.len();
        let complete = served as u64 >= page.total_count;
        let mut malformed = Vec::new();
        let mut kept: Vec<RawEvent> = Vec::with_capacity(served);
        let mut below_floor = false;
        // Only a page without a placeable row is compared with later pages (in
        // `skip_unplaceable`); hashing every page's texts cost a backfill 1.4% of its time.
        let placeable = page
            .rows
            .iter()
            .any(|row| matches!(row, EventRow::Event(_)));
        let page_digest = if placeable { 0 } else { digest(&page.rows) };
        for row in page.rows {
            match row {
                EventRow::Malformed(raw) => malformed.push(raw),
                EventRow::Event(event) if event.occur_time >= self.floor => kept.push(event),
                EventRow::Event(event) => {
                    if start_time.is_some_and(|start| event.occur_time < start) {
                        return Err(SourceError::Paging {
                            service_id: self.service_id.clone(),
                            message: format!(
                                "the server returned an event at {} for start_time={}; it does not honour start_time",
                                event.occur_time,
                                start_time.unwrap_or_default()
                            ),
                        });
                    }
                    below_floor = true;
                }
            }
        }
        if below_floor && model.start_inclusive != Some(true) {
            info!(source_project = %self.client.project_id(), "The server treats start_time as inclusive.");
            self.learn(|m| m.start_inclusive = Some(true));
        }
        // The API sorts by occur_time; sorting again (stably, keeping the
        // server's order inside a millisecond) guards the grouping below.
        if !kept.is_sorted_by_key(|e| e.occur_time) {
            kept.sort_by_key(|e| e.occur_time);
        }
        if complete {
            let events = number_twins(kept);
            self.floor = events
                .last()
                .map(|e| e.occur_time.saturating_add(1))
                .unwrap_or(self.floor);
            self.phase = Phase::Done;
            return Ok(Some(self.batch(events, malformed)));
        }
        if served < self.limit as usize && served > 0 && model.served_page_size.is_none() {
            info!(
                asked = self.limit,
                served, "The server serves fewer rows than asked; paging by the served size."
            );
            self.learn(|m| m.served_page_size = Some(served as u32));
        }
        if served == 0 {
            warn!(service_id = %self.service_id, total_count = page.total_count,
                "The server reported more events but returned none; ending this service's pull.");
            self.phase = Phase::Done;
            return Ok(Some(self.batch(Vec::new(), malformed)));
        }
        let Some(last_ms) = kept.last().map(|e| e.occur_time) else {
            if below_floor {
                // The page was filled by rows at floor - 1 of an inclusive
                // server; ask again from floor itself.
                self.phase = Phase::Scan;
                return Ok(None);
            }
            // A whole page of rows without a usable occur_time: page past
            // them by offset to the first row that can be placed.
            let total = page.total_count;
            return match self
                .skip_unplaceable(
                    start_time,
                    total,
                    served as u32,
                    page_digest,
                    &mut malformed,
                )
                .await?
            {
                Some(next) if next > self.floor => {
                    self.floor = next;
                    self.phase = Phase::Scan;
                    Ok(Some(self.batch(Vec::new(), malformed)))
                }
                None => {
                    self.phase = Phase::Done;
                    Ok(Some(self.batch(Vec::new(), malformed)))
                }
                Some(_) => Err(SourceError::Paging {
                    service_id: self.service_id.clone(),
                    message: format!(
                        "more than a page of rows without a usable occur_time sit at {}, so the pull cannot move past them",
                        self.floor
                    ),
                }),
            };
        };
        let split = kept.partition_point(|e| e.occur_time < last_ms);
        if split > 0 {
            // Rows before the last millisecond are complete groups.
            kept.truncate(split);
            self.floor = last_ms;
            self.phase = Phase::Scan;
            return Ok(Some(self.batch(number_twins(kept), malformed)));
        }
        if below_floor {
            // Learned inclusivity just now; a clean request decides better.
            self.phase = Phase::Scan;
            return Ok(None);
        }
        // Every row is at one millisecond and more remain: it may hold more
        // events than a page. Read it alone.
        debug!(service_id = %self.service_id, ms = last_ms, "Reading one millisecond with offset paging.");
        let (events, phase) = self.start_millisecond(last_ms, 0).await?;
        self.phase = phase;
        if events.is_empty() && malformed.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.batch(events, malformed)))
    }

    /// The window that selects exactly one millisecond as far as the
    /// server's bounds are known (unknown bounds are widened by one and the
    /// extra rows dropped).
    fn millisecond_window(&self, ms: i64) -> (i64, i64) {
        let model = self.model();
        let start = if model.start_inclusive == Some(true) {
            ms
        } else {
            ms - 1
        };
        let end = if model.end_inclusive == Some(true) {
            ms
        } else {
            ms + 1
        };
        (start, end)
    }

    /// Reads page 0 of an overfull millisecond and decides how to go on. Returns
    /// the events to hand out now (only when page 0 held the whole millisecond;
    /// otherwise they are held until the next page) and the next phase.
    async fn start_millisecond(
        &mut self,
        ms: i64,
        restarts: u32,
    ) -> Result<(Vec<PulledEvent>, Phase), SourceError> {
        // Each round either halves the limit or learns that start_time is
        // inclusive; neither happens without end.
        for _ in 0..=32 {
            let (start, end) = self.millisecond_window(ms);
            let query = self.query(Some(start), Some(end), 0);
            let page = match self.fetch(&query).await {
                Err(SourceError::TooLarge { .. }) if self.limit > 1 => {
                    self.limit = (self.limit / 2).max(1);
                    continue;
                }
                other => other?,
            };
            let total = page.total_count;
            let served_now = page.rows.len() as u32;
            let (rows, saw_before) = self.rows_at(ms, start, end, page.rows);
            if saw_before {
                // Rows of ms - 1 sit before ours in the window; a late one
                // would shift every offset. Read again with an exact window.
                continue;
            }
            let served = if served_now < self.limit && (served_now as u64) < total {
                served_now.max(1)
            } else {
                self.limit
            };
            let mut read = MillisecondRead {
                ms,
                next_page: 1,
                total,
                served,
                unit: OffsetUnit::Record,
                twins: HashMap::new(),
                window: (start, end),
                restarts,
                held: Vec::new(),
                pages: HashSet::from([digest(&rows)]),
                offset_honoured: false,
                fetched: 1,
                budget: window_budget(total, served),
            };
            let events = number_in_group(&mut read.twins, rows);
            if served as u64 >= total || served_now == 0 {
                self.floor = ms.saturating_add(1);
                return Ok((events, Phase::Scan));
            }
            let (unit, probe) = self
                .offset_unit(Some(start), Some(end), total, served)
                .await?;
            read.unit = unit;
            if let Some(probe) = probe {
                // A record server answers the probe with later rows of the
                // millisecond; rows equal to page 0 mean the offset went unheard.
                let (probe, _) = self.rows_at(ms, start, end, probe);
                if !probe.is_empty() && read.pages.contains(&digest(&probe)) {
                    self.check_offset_honoured(&mut read).await?;
                }
            }
            read.held = events;
            return Ok((Vec::new(), Phase::Millisecond(read)));
        }
        Err(SourceError::Paging {
            service_id: self.service_id.clone(),
            message: format!(
                "the first page of the millisecond {ms} could not be read alone (the server \
                 keeps answering with rows outside it or with bodies too large)"
            ),
        })
    }

    /// A page of the millisecond repeated one already read: real twins, or a
    /// server that ignores `offset`. A page past the end tells them apart: an
    /// honest server has no rows there. Fails the pull for a server that ignores
    /// `offset`, before anything of the millisecond it cannot number is handed out.
    async fn check_offset_honoured(
        &mut self,
        read: &mut MillisecondRead,
    ) -> Result<(), SourceError> {
        if read.offset_honoured {
            return Ok(());
        }
        self.spend(read)?;
        let past_end = read.total.div_ceil(u64::from(read.served.max(1)));
        let offset = page_offset(read.unit, past_end, read.served);
        let (start, end) = read.window;
        let page = self
            .fetch(&self.query(Some(start), Some(end), offset))
            .await?;
        if page.rows.is_empty() {
            read.offset_honoured = true;
            return Ok(());
        }
        Err(SourceError::Paging {
            service_id: self.service_id.clone(),
            message: format!(
                "the server ignores `offset`: a page of the {} events at {} ({} ms) repeats a \
                 page already read, and offset {offset}, past the last page, still has rows. \
                 The millisecond cannot be read completely, so its events from there on are \
                 not delivered (none, when this is its second page) and the service stops",
                read.total,
                record::timestamp_rfc3339(read.ms),
                read.ms
            ),
        })
    }

    /// Counts one more request of the millisecond read, failing when it would
    /// pass what the millisecond's `total_count` can justify.
    fn spend(&self, read: &mut MillisecondRead) -> Result<(), SourceError> {
        if read.fetched >= read.budget {
            return Err(SourceError::Paging {
                service_id: self.service_id.clone(),
                message: format!(
                    "the millisecond {} would take more than {} requests, the most its \
                     total_count of {} events in pages of {} can justify; the server's paging \
                     cannot be trusted",
                    read.ms, read.budget, read.total, read.served
                ),
            });
        }
        read.fetched += 1;
        Ok(())
    }

    /// Keeps the rows at `ms`; notes what rows outside it teach about the
    /// bounds. Returns the rows and whether a row at `start` < ms was seen.
    fn rows_at(&self, ms: i64, start: i64, end: i64, rows: Vec<EventRow>) -> (Vec<RawEvent>, bool) {
        let mut kept = Vec::with_capacity(rows.len());
        let (mut before, mut after) = (false, false);
        for row in rows {
            match row {
                EventRow::Event(e) if e.occur_time == ms => kept.push(e),
                EventRow::Event(e) if e.occur_time < ms && e.occur_time == start => before = true,
                EventRow::Event(e) if e.occur_time > ms && e.occur_time == end => after = true,
                EventRow::Event(_) => {}
                // Counted by the scan that found this millisecond.
                EventRow::Malformed(_) => {}
            }
        }
        if before {
            info!("The server treats start_time as inclusive.");
            self.learn(|m| m.start_inclusive = Some(true));
        }
        if after {
            info!("The server treats end_time as inclusive.");
            self.learn(|m| m.end_inclusive = Some(true));
        }
        (kept, before)
    }

    /// The offset unit: configured, learned, or detected now, with the rows of
    /// the probe when one was made. A server that counts pages has no rows at
    /// page `ceil(T / L)`; one that counts records (floored to a page or not)
    /// has rows at record `ceil(T / L)`. Servers of the second kind are paged
    /// at record offsets `k * L`, which is right for both of them.
    async fn offset_unit(
        &mut self,
        start: Option<i64>,
        end: Option<i64>,
        total: u64,
        served: u32,
    ) -> Result<(OffsetUnit, Option<Vec<EventRow>>), SourceError> {
        if self.options.offset_unit != OffsetUnit::Auto {
            return Ok((self.options.offset_unit, None));
        }
        if let Some(unit) = self.model().offset_unit {
            return Ok((unit, None));
        }
        if served <= 1 {
            // With one row a page, pages and records are the same thing.
            return Ok((OffsetUnit::Record, None));
        }
        let mut total = total;
        let mut attempts = 0;
        let page = loop {
            let probe = total.div_ceil(served as u64);
            let page = self.fetch(&self.query(start, end, probe)).await?;
            // The answer means something only for the count the probe was
            // made for: one event more turns a page server's empty answer
            // into rows. Probe again for the new count.
            attempts += 1;
            if page.total_count == total || attempts > MAX_MILLISECOND_RESTARTS {
                break page;
            }
            total = page.total_count;
        };
        let unit = if page.rows.is_empty() {
            OffsetUnit::Page
        } else {
            OffsetUnit::Record
        };
        info!(service_id = %self.service_id, ?unit, "Detected how the server counts offset.");
        self.learn(|m| m.offset_unit = Some(unit));
        Ok((unit, Some(page.rows)))
    }

    /// After a page made only of rows without a usable `occur_time`, pages
    /// on by offset from the same `start_time` until a row that can be
    /// placed turns up, and returns its time (`None`: only such rows
    /// remain). The rows passed over are added to `malformed`. A page that
    /// repeats one already read ends the paging: it fails the pull when a page
    /// past the end still has rows (the server ignores `offset`).
    async fn skip_unplaceable(
        &mut self,
        start: Option<i64>,
        total: u64,
        served: u32,
        first_page: u64,
        malformed: &mut Vec<String>,
    ) -> Result<Option<i64>, SourceError> {
        let served = served.max(1);
        let (unit, _) = self.offset_unit(start, None, total, served).await?;
        let mut pages = HashSet::from([first_page]);
        let mut page_no = 1u64;
        while page_no.saturating_mul(served as u64) < total {
            let offset = page_offset(unit, page_no, served);
            let page = self.fetch(&self.query(start, None, offset)).await?;
            if page.rows.is_empty() {
                return Ok(None);
            }
            if !pages.insert(digest(&page.rows)) {
                let past_end = page_offset(unit, total.div_ceil(served as u64), served);
                let after = self.fetch(&self.query(start, None, past_end)).await?;
                if after.rows.is_empty() {
                    // Identical rows, honestly paged: nothing new is learned
                    // from more of them.
                    warn!(service_id = %self.service_id, offset,
                        "A page of rows without a usable occur_time repeats an earlier one; not paging further.");
                    return Ok(None);
                }
                return Err(SourceError::Paging {
                    service_id: self.service_id.clone(),
                    message: format!(
                        "the server ignores `offset`: the page at offset {offset} repeats a page \
                         already read and offset {past_end}, past the last page, still has rows, \
                         so the pull cannot page past the rows without a usable occur_time"
                    ),
                });
            }
            let mut first: Option<i64> = None;
            for row in page.rows {
                match row {
                    // Rows after the first placeable one are read again by
                    // the scan that resumes there.
                    EventRow::Malformed(raw) if first.is_none() => malformed.push(raw),
                    EventRow::Event(e) if e.occur_time >= self.floor => {
                        first = Some(first.map_or(e.occur_time, |f| f.min(e.occur_time)));
                    }
                    _ => {}
                }
            }
            if first.is_some() {
                return Ok(first);
            }
            page_no += 1;
        }
        Ok(None)
    }

    async fn millisecond_step(
        &mut self,
        mut read: MillisecondRead,
    ) -> Result<Option<PulledBatch>, SourceError> {
        if read.next_page.saturating_mul(read.served as u64) >= read.total {
            self.floor = read.ms.saturating_add(1);
            self.phase = Phase::Scan;
            return Ok(self.some_batch(read.held));
        }
        self.spend(&mut read)?;
        let (start, end) = self.millisecond_window(read.ms);
        let offset = page_offset(read.unit, read.next_page, read.served);
        let query = self.query(Some(start), Some(end), offset);
        let page = match self.fetch(&query).await {
            Err(SourceError::TooLarge { .. }) if self.limit > 1 => {
                // Offsets depend on the page size: start the millisecond
                // again with a smaller one. Ids repeat, so the cursors skip
                // what was already handed out.
                self.limit = (self.limit / 2).max(1);
                let (events, phase) = self.start_millisecond(read.ms, read.restarts).await?;
                self.phase = phase;
                return Ok(self.some_batch(events));
            }
            other => other?,
        };
        if (page.total_count != read.total || (start, end) != read.window)
            && read.restarts < MAX_MILLISECOND_RESTARTS
        {
            // The window's rows changed since page 0 (an event arrived, or a
            // bound was learned meanwhile). One that landed before this
            // page's offset shifts it, so its rows could repeat rows already
            // numbered (a made-up twin) or skip some. Read the millisecond
            // again from page 0: numbering starts afresh, the ids of rows
            // already handed out repeat, and the cursors skip them. The page
            // held back is read again too.
            debug!(service_id = %self.service_id, ms = read.ms,
                "The millisecond's rows changed while reading it; reading it again.");
            let (events, phase) = self.start_millisecond(read.ms, read.restarts + 1).await?;
            self.phase = phase;
            return Ok(self.some_batch(events));
        }
        read.total = page.total_count;
        read.next_page += 1;
        let served_now = page.rows.len();
        let (rows, _) = self.rows_at(read.ms, start, end, page.rows);
        if served_now == 0 {
            warn!(service_id = %self.service_id, ms = read.ms, offset,
                "The server returned no rows inside total_count; ending this millisecond.");
            self.floor = read.ms.saturating_add(1);
            self.phase = Phase::Scan;
            return Ok(self.some_batch(read.held));
        }
        if !rows.is_empty() && !read.pages.insert(digest(&rows)) {
            self.check_offset_honoured(&mut read).await?;
        }
        let events = number_in_group(&mut read.twins, rows);
        let ready = std::mem::replace(&mut read.held, events);
        self.phase = Phase::Millisecond(read);
        Ok(self.some_batch(ready))
    }
}

/// Requests one millisecond's window may take: its pages, and one page past
/// the end to tell identical twins from a server that ignores `offset`.
fn window_budget(total: u64, served: u32) -> u64 {
    total.div_ceil(u64::from(served.max(1))).saturating_add(2)
}

/// The `offset` of page `page` (0-based) in `unit`, for pages of `served` rows.
fn page_offset(unit: OffsetUnit, page: u64, served: u32) -> u64 {
    match unit {
        OffsetUnit::Page => page,
        OffsetUnit::Record | OffsetUnit::Auto => page.saturating_mul(u64::from(served)),
    }
}

/// A digest of a page's rows in their order, to notice a page that repeats
/// another.
fn digest<T: Hash>(rows: &[T]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    rows.hash(&mut hasher);
    hasher.finish()
}

/// Numbers twins in a run of complete millisecond groups (ascending time).
fn number_twins(events: Vec<RawEvent>) -> Vec<PulledEvent> {
    let mut out: Vec<PulledEvent> = Vec::with_capacity(events.len());
    // Where the current millisecond's group starts in `out`. A twin's number is one more
    // than the identical events before it in its group: counted by comparing, which
    // allocates nothing (groups of ordinary milliseconds hold a handful of events; an
    // overfull one is read alone, by `number_in_group`).
    let mut group_start = 0;
    for event in events {
        if out
            .last()
            .is_some_and(|last| last.occur_time != event.occur_time)
        {
            group_start = out.len();
        }
        let earlier = out[group_start..]
            .iter()
            .filter(|e| e.event_type == event.event_type && e.event_info == event.event_info)
            .count();
        out.push(PulledEvent {
            occur_time: event.occur_time,
            event_type: event.event_type,
            event_info: event.event_info,
            twin: u32::try_from(earlier + 1).unwrap_or(u32::MAX),
        });
    }
    out
}

/// Numbers rows of one millisecond group, continuing the group's counts.
fn number_in_group(
    twins: &mut HashMap<(String, String), u32>,
    events: Vec<RawEvent>,
) -> Vec<PulledEvent> {
    events
        .into_iter()
        .map(|e| {
            let n = twins
                .entry((e.event_type.clone(), e.event_info.clone()))
                .or_insert(0);
            *n += 1;
            PulledEvent {
                occur_time: e.occur_time,
                event_type: e.event_type,
                event_info: e.event_info,
                twin: *n,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(t: i64, info: &str) -> RawEvent {
        RawEvent {
            occur_time: t,
            event_type: "normal".into(),
            event_info: info.into(),
        }
    }

    #[test]
    fn twins_are_numbered_per_millisecond_and_content() {
        let events = number_twins(vec![
            raw(1, "a"),
            raw(1, "a"),
            raw(1, "b"),
            raw(2, "a"),
            raw(2, "a"),
        ]);
        let twins: Vec<u32> = events.iter().map(|e| e.twin).collect();
        assert_eq!(twins, vec![1, 2, 1, 1, 2]);
    }

    fn pulled(t: i64) -> PulledEvent {
        PulledEvent {
            occur_time: t,
            event_type: "normal".into(),
            event_info: "x".into(),
            twin: 1,
        }
    }

    #[test]
    fn positions_never_pass_the_clock_plus_the_skew() {
        let now = 1_700_000_000_000;
        let limit = position_limit(now, Duration::from_secs(300));
        assert_eq!(limit, now + 300_000);
        // A batch dated before the limit moves positions to its newest event…
        assert_eq!(
            capped_through(&[pulled(now - 5), pulled(now)], limit),
            Some(now)
        );
        // …one with an event an hour ahead only to the limit, and one from the year
        // 3000 too.
        let hour = now + 3_600_000;
        assert_eq!(
            capped_through(&[pulled(now), pulled(hour)], limit),
            Some(limit)
        );
        assert_eq!(
            capped_through(&[pulled(32_503_680_000_000)], limit),
            Some(limit)
        );
        assert_eq!(capped_through(&[], limit), None);
        // A zero skew caps at the clock; a huge one saturates rather than overflows.
        assert_eq!(position_limit(now, Duration::ZERO), now);
        assert_eq!(
            position_limit(i64::MAX - 1, Duration::from_secs(60)),
            i64::MAX
        );
    }

    #[test]
    fn a_window_takes_at_most_its_pages_plus_two_requests() {
        assert_eq!(window_budget(30, 10), 5);
        assert_eq!(window_budget(31, 10), 6);
        assert_eq!(window_budget(1, 1), 3);
        // A lying total cannot overflow the bound, and a server serving nothing is
        // taken as serving one row a page.
        assert_eq!(window_budget(u64::MAX, 1), u64::MAX);
        assert_eq!(window_budget(5, 0), 7);
    }

    #[test]
    fn offsets_count_pages_or_records() {
        assert_eq!(page_offset(OffsetUnit::Page, 3, 10), 3);
        assert_eq!(page_offset(OffsetUnit::Record, 3, 10), 30);
        assert_eq!(page_offset(OffsetUnit::Record, u64::MAX, 10), u64::MAX);
    }

    #[test]
    fn a_repeated_page_has_the_digest_of_the_first() {
        let page = vec![raw(5, "a"), raw(5, "b")];
        let same = vec![raw(5, "a"), raw(5, "b")];
        let other_order = vec![raw(5, "b"), raw(5, "a")];
        assert_eq!(digest(&page), digest(&same));
        assert_ne!(digest(&page), digest(&other_order));
        assert_ne!(digest(&page), digest(&[raw(5, "a")]));
    }

    #[test]
    fn group_numbering_continues_across_pages() {
        let mut counts = HashMap::new();
        let first = number_in_group(&mut counts, vec![raw(5, "x"), raw(5, "x")]);
        let second = number_in_group(&mut counts, vec![raw(5, "x"), raw(5, "y")]);
        assert_eq!(first.iter().map(|e| e.twin).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(
            second.iter().map(|e| e.twin).collect::<Vec<_>>(),
            vec![3, 1]
        );
    }
}
