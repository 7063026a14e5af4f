//! Figures 1-3: a backfill of one service (page size 1000, file sink, the rate cap raised
//! out of the way) by the runner, against the fetch-only client on the same simulator,
//! and, at the small size, against the Python baseline; and the runner's peak RSS at both
//! sizes.
//!
//! - 1: `--events` (1,000,000): runner / fetch-only, target <= 1.25x. The floor (`floor.rs`:
//!   the least work the file contract asks, in three stages) runs beside them, so that the
//!   figure shows what the contract itself costs here: floor / fetch-only, and runner /
//!   floor for what is the runner's own. Its output must be the runner's: the same ids and
//!   the same length.
//! - 2: `--small-events` (100,000): Python / runner, target >= 10x; the Python output must
//!   hold the very records (ids) the runner's does.
//! - 3: the largest peak RSS of the runner at each size: <= 50 MiB, large / small <= 1.2x.

use super::{Bench, DEFAULT_CONCURRENCY, requests_since, requests_so_far, rotated, same_requests};
use crate::baseline::{self, Python};
use crate::check::{self, IdSet};
use crate::cli::BackfillArgs;
use crate::config::{FILE_SINK_PATH, RunnerConfig, SinkSpec};
use crate::fetch_only::{self, FetchPlan};
use crate::floor;
use crate::report::{self, Target};
use crate::source_params::SourceParams;
use crate::stats::{Runs, ratio, ratio_json};
use anyhow::{Context, bail};
use serde_json::{Map, Value, json};
use std::path::Path;

const RUNNER_TO_FETCH: Target = Target::AtMost(1.25);
const PYTHON_TO_RUNNER: Target = Target::AtLeast(10.0);
const MAX_RSS_MIB: f64 = 50.0;
const RSS_GROWTH: Target = Target::AtMost(1.2);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Leg {
    FetchOnly,
    Floor,
    Runner,
    Python,
}

/// The runs of one backfill size.
struct Case {
    events: usize,
    fetch_only: Runs,
    floor: Runs,
    runner: Runs,
    python: Option<Runs>,
    same_requests: bool,
}

impl Case {
    fn json(&self) -> Value {
        json!({
            "events": self.events,
            "fetch_only": self.fetch_only.json(self.events),
            "floor": self.floor.json(self.events),
            "runner": self.runner.json(self.events),
            "python": self.python.as_ref().map(|runs| runs.json(self.events)),
            "runner_to_fetch_only": ratio_json(report::seconds_ratio(&self.runner, &self.fetch_only)),
            "floor_to_fetch_only": ratio_json(report::seconds_ratio(&self.floor, &self.fetch_only)),
            "runner_to_floor": ratio_json(report::seconds_ratio(&self.runner, &self.floor)),
            "python_to_runner": ratio_json(self.python.as_ref().and_then(|p| report::seconds_ratio(p, &self.runner))),
            "same_requests": self.same_requests,
        })
    }

    fn table(&self) {
        let mut legs = vec![
            ("fetch-only", &self.fetch_only),
            ("floor", &self.floor),
            ("runner sync", &self.runner),
        ];
        if let Some(python) = &self.python {
            legs.push(("python baseline", python));
        }
        report::legs(self.events, &legs);
    }
}

pub fn run(
    bench: &Bench,
    args: &BackfillArgs,
    python: Option<&Python>,
) -> anyhow::Result<Map<String, Value>> {
    let small_events = args.small_events.min(args.events);
    let small = case(bench, small_events, python)?;
    let large = if args.events > small_events {
        Some(case(bench, args.events, None)?)
    } else {
        None
    };
    let main = large.as_ref().unwrap_or(&small);

    report::heading(&format!(
        "1. Backfill of {} events (1 service, page size 1000, file sink) vs the fetch-only client",
        main.events
    ));
    main.table();
    report::ratio_line(
        "runner / fetch-only",
        report::seconds_ratio(&main.runner, &main.fetch_only),
        RUNNER_TO_FETCH,
    );
    report::info_line(
        "floor / fetch-only (the file contract's least work, in three stages)",
        report::seconds_ratio(&main.floor, &main.fetch_only),
    );
    report::info_line(
        "runner / floor (the runner's own overhead)",
        report::seconds_ratio(&main.runner, &main.floor),
    );

    report::heading(&format!(
        "2. Backfill of {} events vs the Python baseline (urllib + sqlite3, same dedup and file contract)",
        small.events
    ));
    if large.is_some() {
        small.table();
    } else {
        println!("(the runs of figure 1)");
    }
    let python_ratio = small
        .python
        .as_ref()
        .and_then(|p| report::seconds_ratio(p, &small.runner));
    report::ratio_line("python / runner", python_ratio, PYTHON_TO_RUNNER);

    report::heading("3. Peak RSS of runner sync");
    let small_mib = report::mib(small.runner.max_rss_kib());
    let large_mib = report::mib(main.runner.max_rss_kib());
    let verdict = if small_mib.max(large_mib) <= MAX_RSS_MIB {
        "met"
    } else {
        "not met"
    };
    let growth = large.as_ref().and_then(|_| ratio(large_mib, small_mib));
    if large.is_some() {
        println!(
            "{} events: {small_mib:.1} MiB; {} events: {large_mib:.1} MiB (largest of the runs; target <= {MAX_RSS_MIB} MiB: {verdict})",
            small.events, main.events
        );
        report::ratio_line(
            &format!("{} vs {} events", main.events, small.events),
            growth,
            RSS_GROWTH,
        );
    } else {
        println!(
            "{} events: {large_mib:.1} MiB (largest of the runs; target <= {MAX_RSS_MIB} MiB: {verdict}); one size only (--events equals --small-events), no growth ratio",
            main.events
        );
    }

    let mut figures = Map::new();
    figures.insert("1_backfill".to_owned(), main.json());
    figures.insert("2_python".to_owned(), small.json());
    figures.insert(
        "3_rss".to_owned(),
        json!({
            "small_events": small.events,
            "small_max_peak_rss_kib": small.runner.max_rss_kib(),
            "large_events": main.events,
            "large_max_peak_rss_kib": main.runner.max_rss_kib(),
            "large_to_small": ratio_json(growth),
        }),
    );
    Ok(figures)
}

/// Every leg, `bench.runs` times, on one simulator of `events` events in one service.
fn case(bench: &Bench, events: usize, python: Option<&Python>) -> anyhow::Result<Case> {
    report::progress(&format!(
        "backfill of {events} events: starting the simulator"
    ));
    let sim = bench.simulator(1, events)?;
    let source = SourceParams::for_sim(&sim);
    let config = RunnerConfig {
        source: source.clone(),
        concurrency: None,
        sink: SinkSpec::File,
    };
    let plan = FetchPlan {
        source: source.clone(),
        concurrency: DEFAULT_CONCURRENCY,
        floors: source.services.iter().map(|s| (s.clone(), 0)).collect(),
    };
    let mut legs = vec![Leg::FetchOnly, Leg::Floor, Leg::Runner];
    if python.is_some() {
        legs.push(Leg::Python);
    }
    let mut case = Case {
        events,
        fetch_only: Runs::default(),
        floor: Runs::default(),
        runner: Runs::default(),
        python: python.map(|_| Runs::default()),
        same_requests: true,
    };
    let mut runner_ids: Option<(IdSet, u64)> = None;
    let mut floor_ids: Option<(IdSet, u64)> = None;
    let mut python_ids: Option<IdSet> = None;
    for run in 0..bench.runs {
        let mut asked: [Vec<String>; 2] = [Vec::new(), Vec::new()];
        for leg in rotated(&legs, run) {
            let folder = bench.folder("backfill")?;
            let before = requests_so_far(&sim);
            match leg {
                Leg::FetchOnly => {
                    let (measured, seen) =
                        fetch_only::run_leg(&bench.spawner, folder.path(), &plan)?;
                    if seen.events != events as u64 || seen.malformed != 0 {
                        bail!("the fetch-only client saw {seen:?}; expected {events} events");
                    }
                    asked[0] = requests_since(&sim, before);
                    case.fetch_only.push(
                        measured.seconds,
                        measured.peak_rss_kib,
                        asked[0].len() as u64,
                    );
                    report::progress(&format!(
                        "backfill {events}, run {}: fetch-only {:.3} s",
                        run + 1,
                        measured.seconds
                    ));
                }
                Leg::Floor => {
                    let (measured, seen) = floor::run_leg(
                        &bench.spawner,
                        folder.path(),
                        &plan,
                        Path::new(FILE_SINK_PATH),
                        Path::new(FLOOR_STATE_PATH),
                    )?;
                    if seen.events != events as u64 || seen.malformed != 0 {
                        bail!("the floor saw {seen:?}; expected {events} events");
                    }
                    let requests = requests_since(&sim, before);
                    floor_ids.get_or_insert(output(folder.path(), events, "the floor")?);
                    case.floor.push(
                        measured.seconds,
                        measured.peak_rss_kib,
                        requests.len() as u64,
                    );
                    report::progress(&format!(
                        "backfill {events}, run {}: floor {:.3} s",
                        run + 1,
                        measured.seconds
                    ));
                }
                Leg::Runner => {
                    let measured = bench.sync(folder.path(), &config)?;
                    asked[1] = requests_since(&sim, before);
                    runner_ids.get_or_insert(output(folder.path(), events, "runner sync")?);
                    case.runner.push(
                        measured.seconds,
                        measured.peak_rss_kib,
                        asked[1].len() as u64,
                    );
                    report::progress(&format!(
                        "backfill {events}, run {}: runner sync {:.3} s",
                        run + 1,
                        measured.seconds
                    ));
                }
                Leg::Python => {
                    let Some(python) = python else { continue };
                    let (measured, said) =
                        baseline::run_leg(&bench.spawner, python, folder.path(), &source)?;
                    let requests = requests_since(&sim, before).len() as u64;
                    if said.events != events as u64 || said.requests != requests {
                        bail!(
                            "the Python baseline says it wrote {} events in {} requests; the simulator answered {requests} requests, and there are {events} events",
                            said.events,
                            said.requests
                        );
                    }
                    let ids = check::every_event_once(
                        &folder.path().join(FILE_SINK_PATH),
                        events,
                        "the Python baseline",
                    )?;
                    python_ids.get_or_insert(ids);
                    if let Some(runs) = &mut case.python {
                        runs.push(measured.seconds, measured.peak_rss_kib, requests);
                    }
                    report::progress(&format!(
                        "backfill {events}, run {}: python {:.3} s",
                        run + 1,
                        measured.seconds
                    ));
                }
            }
        }
        case.same_requests &= same_requests(&format!("backfill {events}"), &asked[0], &asked[1]);
    }
    if let (Some((runner, runner_len)), Some((floor, floor_len))) = (&runner_ids, &floor_ids)
        && (runner != floor || runner_len != floor_len)
    {
        bail!(
            "the floor wrote other records than the runner ({} ids and {floor_len} bytes vs {} and {runner_len}): it is not doing the same job",
            floor.len(),
            runner.len()
        );
    }
    if let (Some((runner, _)), Some(python)) = (&runner_ids, &python_ids)
        && runner != python
    {
        bail!(
            "the Python baseline wrote other records than the runner (ids differ, {} vs {}): it is not doing the same job",
            python.len(),
            runner.len()
        );
    }
    Ok(case)
}

/// The floor's state file, relative to its run's folder.
const FLOOR_STATE_PATH: &str = "state/floor.db";

/// The ids and the length in bytes of the file sink's output in `folder`, which must hold
/// every event once.
fn output(folder: &Path, events: usize, who: &str) -> anyhow::Result<(IdSet, u64)> {
    let path = folder.join(FILE_SINK_PATH);
    let ids = check::every_event_once(&path, events, who)?;
    let len = std::fs::metadata(&path)
        .with_context(|| format!("{who}: cannot inspect {}", path.display()))?
        .len();
    Ok((ids, len))
}
