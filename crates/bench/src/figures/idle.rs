//! Figures 4-5: idle syncs, where every event is delivered already and a sync costs the
//! authentication request, one request per service, and the pages inside `lookback`.
//!
//! - 4: `--idle-services` (1,000) services behind `--idle-latency` (20 ms) per response,
//!   `--concurrency` (50) at once: runner / fetch-only, target <= 1.2x.
//! - 5: one service with `--idle-one-events` (100,000) events of history, no latency: the
//!   runner's wall time, target <= 50 ms (the fetch-only client's is shown for scale).
//!
//! A first `runner sync` (not timed, no latency) delivers everything; the timed runs sync
//! again in that folder and must append nothing. The fetch-only client starts each service
//! where the runner's pull does: the newest event minus `lookback`.

use super::{Bench, DEFAULT_CONCURRENCY, requests_since, requests_so_far, rotated, same_requests};
use crate::check;
use crate::cli::IdleArgs;
use crate::config::{FILE_SINK_PATH, RunnerConfig, SinkSpec};
use crate::fetch_only::{self, FetchPlan};
use crate::report::{self, Target};
use crate::source_params::SourceParams;
use crate::stats::{Runs, ratio_json, round};
use anyhow::{Context, bail};
use serde_json::{Map, Value, json};
use std::time::Duration;

const RUNNER_TO_FETCH: Target = Target::AtMost(1.2);
const ONE_SERVICE_MS: f64 = 50.0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Leg {
    FetchOnly,
    Runner,
}

struct Case {
    services: usize,
    events: usize,
    fetch_only: Runs,
    runner: Runs,
    /// Events the fetch-only client read again (those inside `lookback`), per run.
    reread: u64,
    same_requests: bool,
}

impl Case {
    fn json(&self, latency: Duration, concurrency: usize) -> Value {
        json!({
            "services": self.services,
            "events": self.events,
            "latency_ms": latency.as_millis() as u64,
            "concurrency": concurrency,
            "events_reread": self.reread,
            "fetch_only": self.fetch_only.json(0),
            "runner": self.runner.json(0),
            "runner_to_fetch_only": ratio_json(report::seconds_ratio(&self.runner, &self.fetch_only)),
            "same_requests": self.same_requests,
        })
    }

    fn table(&self) {
        report::legs(
            0,
            &[
                ("fetch-only", &self.fetch_only),
                ("runner sync", &self.runner),
            ],
        );
    }
}

pub fn run(bench: &Bench, args: &IdleArgs) -> anyhow::Result<Map<String, Value>> {
    let many = case(
        bench,
        args.idle_services,
        args.idle_events_per_service,
        args.idle_latency,
        args.concurrency,
    )?;
    report::heading(&format!(
        "4. Idle sync of {} services ({} events each delivered already), {} latency per response, concurrency {}",
        many.services,
        args.idle_events_per_service,
        humantime::format_duration(args.idle_latency),
        args.concurrency
    ));
    many.table();
    report::ratio_line(
        "runner / fetch-only",
        report::seconds_ratio(&many.runner, &many.fetch_only),
        RUNNER_TO_FETCH,
    );

    let one = case(
        bench,
        1,
        args.idle_one_events,
        Duration::ZERO,
        DEFAULT_CONCURRENCY,
    )?;
    report::heading(&format!(
        "5. Idle one-shot sync of one service ({} events delivered already)",
        one.events
    ));
    one.table();
    let one_ms = one.runner.median_seconds() * 1000.0;
    println!(
        "runner sync: {one_ms:.1} ms (target <= {ONE_SERVICE_MS} ms: {}); fetch-only: {:.1} ms",
        if one_ms <= ONE_SERVICE_MS {
            "met"
        } else {
            "not met"
        },
        one.fetch_only.median_seconds() * 1000.0
    );

    let mut figures = Map::new();
    figures.insert(
        "4_idle_many".to_owned(),
        many.json(args.idle_latency, args.concurrency),
    );
    let mut one_json = one.json(Duration::ZERO, DEFAULT_CONCURRENCY);
    one_json["runner_median_ms"] = json!(round(one_ms, 2));
    figures.insert("5_idle_one".to_owned(), one_json);
    Ok(figures)
}

/// Delivers everything once, then times idle syncs of the runner and the fetch-only
/// client, `latency` added to every response.
fn case(
    bench: &Bench,
    services: usize,
    events_per_service: usize,
    latency: Duration,
    concurrency: usize,
) -> anyhow::Result<Case> {
    let events = services * events_per_service;
    report::progress(&format!(
        "idle sync of {services} service(s): delivering {events} events first"
    ));
    let sim = bench.simulator(services, events_per_service)?;
    let source = SourceParams::for_sim(&sim);
    let config = RunnerConfig {
        source: source.clone(),
        concurrency: Some(concurrency),
        sink: SinkSpec::File,
    };
    let primed = bench.folder("idle")?;
    bench.sync(primed.path(), &config)?;
    let out = primed.path().join(FILE_SINK_PATH);
    check::every_event_once(&out, events, "runner sync (the first, not timed)")?;
    let delivered_bytes = file_length(&out)?;

    // Where the runner's pull starts now: the newest event of each service (its stored
    // position) minus lookback.
    let lookback = i64::try_from(source.lookback_ms).context("lookback in ms fits in i64")?;
    let floors = source
        .services
        .iter()
        .map(|service| {
            let newest = sim.events(service).last().map_or(0, |(time, _, _)| *time);
            (service.clone(), newest.saturating_sub(lookback).max(0))
        })
        .collect();
    let plan = FetchPlan {
        source,
        concurrency,
        floors,
    };
    let mut behaviour = sim.behaviour();
    behaviour.latency = latency;
    sim.set_behaviour(behaviour);

    let mut case = Case {
        services,
        events,
        fetch_only: Runs::default(),
        runner: Runs::default(),
        reread: 0,
        same_requests: true,
    };
    for run in 0..bench.runs {
        let mut asked: [Vec<String>; 2] = [Vec::new(), Vec::new()];
        for leg in rotated(&[Leg::FetchOnly, Leg::Runner], run) {
            let before = requests_so_far(&sim);
            match leg {
                Leg::FetchOnly => {
                    let folder = bench.folder("idle-fetch")?;
                    let (measured, seen) =
                        fetch_only::run_leg(&bench.spawner, folder.path(), &plan)?;
                    asked[0] = requests_since(&sim, before);
                    case.reread = seen.events;
                    case.fetch_only.push(
                        measured.seconds,
                        measured.peak_rss_kib,
                        asked[0].len() as u64,
                    );
                    report::progress(&format!(
                        "idle {services}, run {}: fetch-only {:.3} s",
                        run + 1,
                        measured.seconds
                    ));
                }
                Leg::Runner => {
                    let measured = bench.sync(primed.path(), &config)?;
                    asked[1] = requests_since(&sim, before);
                    let now = file_length(&out)?;
                    if now != delivered_bytes {
                        bail!(
                            "an idle runner sync changed the output ({delivered_bytes} bytes, now {now}): it delivered something again"
                        );
                    }
                    case.runner.push(
                        measured.seconds,
                        measured.peak_rss_kib,
                        asked[1].len() as u64,
                    );
                    report::progress(&format!(
                        "idle {services}, run {}: runner sync {:.3} s",
                        run + 1,
                        measured.seconds
                    ));
                }
            }
        }
        case.same_requests &= same_requests(&format!("idle {services}"), &asked[0], &asked[1]);
    }
    Ok(case)
}

fn file_length(path: &std::path::Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len())
}
