//! The floor: the least work the file sink's contract asks on top of the fetch-only
//! client, in the best arrangement found on two cores, so that figure 1 can tell what
//! the contract itself costs on this machine (any shipper keeping it pays that) from what
//! the runner's way of doing it adds.
//!
//! It pulls exactly as the fetch-only client does (the same pulls, requests and pages),
//! and runs three stages at once:
//! 1. the pulls, on the runtime, hand each page's events, as they were parsed, to
//! 2. the line thread, which appends each event's line to a buffer: the JSON line of the
//!    runner's record, written straight from the event (`ServiceFields::write_event_line`:
//!    the pinned SHA-256 id, the RFC 3339 timestamp, the texts escaped) without making a
//!    record object. Each time the buffer holds the file sink's batch size (1 MiB), it
//!    goes, with the positions its events reach, to
//! 3. the flush thread, which appends it to the output file, `fdatasync`s it, and then
//!    commits the positions in one SQLite transaction (WAL, `synchronous = FULL`, as the
//!    runner's state): what the runner's file sink and state do per batch.
//!
//! Its output is the runner's, byte for byte (the benchmark compares ids and lengths).
//! With the lines and the flushes on one thread instead, it took 0.66-0.70 s for 1M
//! events against 0.51-0.54 s here (five runs each, alternating).
//!
//! What it leaves out is everything the contract does not need for a first backfill into
//! one file: record objects (the runner shares one between its sinks), dedup (no
//! fingerprints and no cursors), the delivery engine (batching across services, retries,
//! dead letters, ledgers), the checks of the file before each append, recovery, metrics
//! and logs.
//!
//! It runs as a child process (`bench floor --plan FILE --out FILE --state FILE`), like the
//! fetch-only client, and prints the same outcome.

use crate::child::{Measured, Spawner};
use crate::fetch_only::{self, FetchOutcome, FetchPlan};
use crate::source_params::SOURCE_NAME;
use anyhow::{Context, anyhow, bail};
use record::ServiceFields;
use rusqlite::Connection;
use source::PulledBatch;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use tokio::sync::mpsc;

/// The file sink's default `batch.max_bytes`: the lines are appended, synced and
/// committed once per this many bytes.
const BATCH_BYTES: usize = 1024 * 1024;

/// Pages parsed but not yet turned into lines: the runner reads one page ahead of its job
/// and holds one in its driver.
const PAGES_AHEAD: usize = 2;

/// `bench floor --plan FILE --out FILE --state FILE`: the child's side.
pub fn main(plan: &Path, out: &Path, state: &Path) -> anyhow::Result<()> {
    let plan = fetch_only::read_plan(plan)?;
    let outcome = fetch_only::runtime()?.block_on(floor(plan, out, state))?;
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}

/// Pulls `plan` and writes every event's line into `out` and the positions into `state`.
async fn floor(plan: FetchPlan, out: &Path, state: &Path) -> anyhow::Result<FetchOutcome> {
    let flusher = Flusher::open(&plan, out, state)?;
    let mut lines = Lines::new(&plan);
    // One full buffer may wait while the next fills: two buffers in all.
    let (full, to_flush) = sync_channel(1);
    let flushing = spawn("floor-flush", move || flusher.run(to_flush))?;
    let (pages, received) = mpsc::channel(PAGES_AHEAD);
    let writing = spawn("floor-lines", move || lines.run(received, full))?;
    let fetched = fetch_only::fetch(plan, Some(pages)).await;
    // The threads end once the pulls are done (the pulls held the senders). A thread
    // that failed closed its end, which ended the stage before it: the flush's error
    // comes first, then the lines', then the pulls'.
    let (written, flushed) = tokio::task::spawn_blocking(move || (join(writing), join(flushing)))
        .await
        .context("cannot wait for the floor's threads")?;
    flushed?;
    let written = written?;
    let fetched = fetched?;
    if written != fetched.events {
        bail!(
            "the floor wrote {written} records of {} events fetched",
            fetched.events
        );
    }
    Ok(fetched)
}

fn spawn<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<JoinHandle<anyhow::Result<T>>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(work)
        .with_context(|| format!("cannot start the thread {name}"))
}

fn join<T>(thread: JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    thread
        .join()
        .map_err(|_| anyhow!("a thread of the floor panicked"))?
}

/// The benchmark's side: runs `bench floor` on `plan` in `folder`, writing `out` and
/// `state` (relative to `folder`).
pub fn run_leg(
    spawner: &Spawner,
    folder: &Path,
    plan: &FetchPlan,
    out: &Path,
    state: &Path,
) -> anyhow::Result<(Measured, FetchOutcome)> {
    for path in [out, state] {
        if let Some(parent) = folder.join(path).parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
    }
    fetch_only::run_child(spawner, folder, plan, "floor", "the floor", |launch| {
        launch
            .arg("--out")
            .path_arg(out)
            .arg("--state")
            .path_arg(state)
    })
}

/// A full buffer of lines, and the newest position each service (by index in the plan)
/// reaches with it.
struct Batch {
    lines: Vec<u8>,
    positions: Vec<(usize, i64)>,
}

/// The line thread's side.
struct Lines {
    /// Per service of the plan (by index): its fields, shared by its lines.
    services: Vec<ServiceFields>,
    /// Per service: the newest position its lines in `lines` reach.
    positions: Vec<Option<i64>>,
    lines: Vec<u8>,
    written: u64,
}

impl Lines {
    fn new(plan: &FetchPlan) -> Lines {
        Lines {
            services: plan
                .floors
                .iter()
                .map(|(id, _)| ServiceFields::new(SOURCE_NAME, &plan.source.project_id, id, ""))
                .collect(),
            positions: vec![None; plan.floors.len()],
            lines: Self::buffer(),
            written: 0,
        }
    }

    fn buffer() -> Vec<u8> {
        // A page's lines may take the buffer past the batch size.
        Vec::with_capacity(BATCH_BYTES + BATCH_BYTES / 2)
    }

    /// Turns every page it is handed into lines; returns the number of lines written. A
    /// flush thread that hung up failed: this ends, and the caller reports its error.
    fn run(
        &mut self,
        mut pages: mpsc::Receiver<(usize, PulledBatch)>,
        full: SyncSender<Batch>,
    ) -> anyhow::Result<u64> {
        while let Some((index, batch)) = pages.blocking_recv() {
            self.add(index, batch);
            if self.lines.len() >= BATCH_BYTES && full.send(self.take()).is_err() {
                return Ok(self.written);
            }
        }
        if !self.lines.is_empty() {
            // If this fails, the flush thread's error says why.
            let _ = full.send(self.take());
        }
        Ok(self.written)
    }

    /// Appends the lines of the page's records.
    fn add(&mut self, index: usize, batch: PulledBatch) {
        let service = &mut self.services[index];
        if service.service_name() != batch.service_name {
            service.set_service_name(&batch.service_name);
        }
        for event in &batch.events {
            service.write_event_line(
                &mut self.lines,
                event.occur_time,
                &event.event_type,
                &event.event_info,
                event.twin,
            );
            self.lines.push(b'\n');
        }
        self.written += batch.events.len() as u64;
        if batch.through.is_some() {
            self.positions[index] = batch.through;
        }
    }

    /// The buffer and the positions it reaches; a new buffer takes its place.
    fn take(&mut self) -> Batch {
        Batch {
            lines: std::mem::replace(&mut self.lines, Self::buffer()),
            positions: self
                .positions
                .iter_mut()
                .enumerate()
                .filter_map(|(index, position)| Some((index, position.take()?)))
                .collect(),
        }
    }
}

/// The flush thread's side: the file and the positions.
struct Flusher {
    service_ids: Vec<String>,
    out: File,
    out_path: PathBuf,
    state: Connection,
}

impl Flusher {
    fn open(plan: &FetchPlan, out: &Path, state: &Path) -> anyhow::Result<Flusher> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(out)
            .with_context(|| format!("cannot open {}", out.display()))?;
        let connection = Connection::open(state)
            .and_then(|c| {
                c.pragma_update(None, "journal_mode", "wal")?;
                c.pragma_update(None, "synchronous", "FULL")?;
                c.execute_batch(
                    "CREATE TABLE IF NOT EXISTS positions (
                         service_id TEXT PRIMARY KEY,
                         position INTEGER NOT NULL
                     ) STRICT",
                )?;
                Ok(c)
            })
            .with_context(|| format!("cannot open the state {}", state.display()))?;
        Ok(Flusher {
            service_ids: plan.floors.iter().map(|(id, _)| id.clone()).collect(),
            out: file,
            out_path: out.to_owned(),
            state: connection,
        })
    }

    /// Flushes every batch it is handed, in order.
    fn run(mut self, batches: Receiver<Batch>) -> anyhow::Result<()> {
        for batch in batches {
            self.flush(batch)?;
        }
        Ok(())
    }

    /// Appends the lines, syncs them, then commits the positions they reach.
    fn flush(&mut self, batch: Batch) -> anyhow::Result<()> {
        self.out
            .write_all(&batch.lines)
            .and_then(|()| self.out.sync_data())
            .with_context(|| format!("cannot append to {}", self.out_path.display()))?;
        let transaction = self.state.transaction()?;
        {
            let mut upsert = transaction.prepare_cached(
                "INSERT INTO positions (service_id, position) VALUES (?1, ?2)
                 ON CONFLICT (service_id) DO UPDATE SET position = excluded.position",
            )?;
            for (index, position) in batch.positions {
                upsert.execute((&self.service_ids[index], position))?;
            }
        }
        transaction
            .commit()
            .context("cannot commit the positions")?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::check;
    use crate::fetch_only::tests::sim_and_plan;

    /// Against a real simulator, in-process: every event of every service once, in the
    /// order the pages came, and each service's position is its newest event's time.
    #[test]
    fn it_writes_every_event_once_and_commits_each_services_position() {
        let (_sim, plan) = sim_and_plan(2, 2_500, 2);
        let folder = tempfile::tempdir().unwrap();
        let (out, state) = (folder.path().join("out.jsonl"), folder.path().join("s.db"));
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let outcome = runtime.block_on(floor(plan, &out, &state)).unwrap();
        assert_eq!(outcome.events, 5_000);
        check::every_event_once(&out, 5_000, "the floor").unwrap();

        let mut newest = std::collections::HashMap::<String, i64>::new();
        for line in std::fs::read_to_string(&out).unwrap().lines() {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            let service = record["service_id"].as_str().unwrap().to_owned();
            let time = record["occur_time"].as_i64().unwrap();
            let at = newest.entry(service).or_insert(i64::MIN);
            *at = (*at).max(time);
        }
        let connection = Connection::open(&state).unwrap();
        let mut positions: Vec<(String, i64)> = connection
            .prepare("SELECT service_id, position FROM positions ORDER BY service_id")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        positions.sort();
        let mut expected: Vec<(String, i64)> = newest.into_iter().collect();
        expected.sort();
        assert_eq!(positions, expected);
        assert_eq!(positions.len(), 2);
    }

    /// A writer that cannot write fails the floor with the path, and ends the pulls.
    #[test]
    fn a_failed_writer_fails_the_floor() {
        let (_sim, plan) = sim_and_plan(1, 3_000, 1);
        let folder = tempfile::tempdir().unwrap();
        // /dev/full takes the open and refuses every write.
        let error = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(floor(
                plan,
                Path::new("/dev/full"),
                &folder.path().join("s.db"),
            ))
            .unwrap_err();
        assert!(
            format!("{error:#}").contains("cannot append to /dev/full"),
            "{error:#}"
        );
    }
}
