//! The fetch-only client: the lower bound a sync is measured against. It asks exactly the
//! pages the runner asks — the same [`SourceSettings`] (page size, timeouts, HTTP client,
//! rate cap), one authentication request per source, then the pull of `source` (time-based
//! paging from the same floor) for every service, `concurrency` services at once as the
//! pipeline runs them — parses each page into typed rows, and discards them: no records,
//! ids, sinks or state.
//!
//! It runs as a child process (`bench fetch-only --plan FILE`), like the runner, so that
//! both legs are timed from spawn to reap and their peak RSS is read the same way. The
//! benchmark also compares the requests each leg made: a difference means this client no
//! longer mirrors the runner, and the comparison says so.

use crate::child::{Launch, Measured, Spawner};
use crate::source_params::SourceParams;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use source::{ModelArtsClient, PullOptions, PulledBatch, ServerModel, ServicePull};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

/// What the client is to fetch; written by the benchmark as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchPlan {
    pub source: SourceParams,
    /// Services pulled at once (`[runner] concurrency`).
    pub concurrency: usize,
    /// Each service and the floor its pull starts at, as the runner's would: 0 for a
    /// backfill, the stored position minus `lookback` for an idle sync.
    pub floors: Vec<(String, i64)>,
}

/// What the client saw; printed as one JSON line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchOutcome {
    pub events: u64,
    pub malformed: u64,
    pub batches: u64,
    /// Requests of the pulls (the authentication request not counted).
    pub requests: u64,
}

/// `bench fetch-only --plan FILE`: the child's side.
pub fn main(plan: &Path) -> anyhow::Result<()> {
    let plan = read_plan(plan)?;
    let outcome = runtime()?.block_on(fetch(plan, None))?;
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}

/// The plan the benchmark wrote at `path`.
pub fn read_plan(path: &Path) -> anyhow::Result<FetchPlan> {
    let text =
        std::fs::read(path).with_context(|| format!("cannot read the plan {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("{} is not a fetch plan", path.display()))
}

/// The runner's runtime: multi-threaded, one worker per core.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Pulls every service of `plan` and discards each batch, or, with `pages`, hands it over
/// there (the floor's writer, in `floor.rs`) as the `index` of its service in
/// `plan.floors` and the batch. A closed `pages` ends the pulls early: its reader failed,
/// and says why.
pub async fn fetch(
    plan: FetchPlan,
    pages: Option<mpsc::Sender<(usize, PulledBatch)>>,
) -> anyhow::Result<FetchOutcome> {
    let settings = plan.source.settings();
    let client = Arc::new(ModelArtsClient::new(&settings)?);
    let model = Arc::new(Mutex::new(ServerModel::default()));
    client
        .authenticate()
        .await
        .context("the fetch-only client could not authenticate")?;
    let options = PullOptions {
        page_size: settings.page_size,
        event_type: settings.event_type.clone(),
        offset_unit: settings.offset_unit,
        max_clock_skew: settings.max_clock_skew,
    };
    let permits = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let mut jobs = JoinSet::new();
    for (index, (service_id, floor)) in plan.floors.into_iter().enumerate() {
        let (client, model, permits, options, pages) = (
            client.clone(),
            model.clone(),
            permits.clone(),
            options.clone(),
            pages.clone(),
        );
        jobs.spawn(async move {
            // The semaphore is never closed, so acquire cannot fail.
            let _permit = permits.acquire_owned().await;
            let mut pull = ServicePull::new(&client, &model, &service_id, Some(floor), options);
            let mut seen = FetchOutcome::default();
            loop {
                match pull.next_batch().await {
                    Ok(Some(batch)) => {
                        seen.events += batch.events.len() as u64;
                        seen.malformed += batch.malformed.len() as u64;
                        seen.batches += 1;
                        if let Some(pages) = &pages
                            && pages.send((index, batch)).await.is_err()
                        {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        return Err(anyhow::Error::new(error)
                            .context(format!("fetch-only: service {service_id} failed")));
                    }
                }
            }
            seen.requests = pull.requests();
            Ok(seen)
        });
    }
    // The pulls hold the only senders now: `pages` ends with the last of them.
    drop(pages);
    let mut total = FetchOutcome::default();
    while let Some(joined) = jobs.join_next().await {
        let seen = joined.context("a fetch-only task ended unexpectedly")??;
        total.events += seen.events;
        total.malformed += seen.malformed;
        total.batches += seen.batches;
        total.requests += seen.requests;
    }
    Ok(total)
}

/// The benchmark's side: writes `plan` into `folder`, runs this binary's `fetch-only` on
/// it, and returns the measurement and what the client saw.
pub fn run_leg(
    spawner: &Spawner,
    folder: &Path,
    plan: &FetchPlan,
) -> anyhow::Result<(Measured, FetchOutcome)> {
    run_child(
        spawner,
        folder,
        plan,
        "fetch-only",
        "the fetch-only client",
        |launch| launch,
    )
}

/// Writes `plan` into `folder` and runs this binary's `command --plan FILE` there (with
/// what `more` adds), as `who`; returns the measurement and the outcome it printed.
pub fn run_child(
    spawner: &Spawner,
    folder: &Path,
    plan: &FetchPlan,
    command: &str,
    who: &str,
    more: impl FnOnce(Launch) -> Launch,
) -> anyhow::Result<(Measured, FetchOutcome)> {
    let plan_path = folder.join("fetch-plan.json");
    std::fs::write(&plan_path, serde_json::to_vec(plan)?)
        .with_context(|| format!("cannot write {}", plan_path.display()))?;
    let exe = std::env::current_exe().context("cannot tell where the bench binary is")?;
    let launch = Launch::in_folder(&exe, folder, command)
        .arg(command)
        .arg("--plan")
        .path_arg(&plan_path)
        .env_remove("RUST_LOG");
    let measured = spawner.run(&more(launch))?;
    measured.expect_success(who)?;
    let outcome = serde_json::from_str(measured.stdout.trim())
        .with_context(|| format!("{who} printed no outcome: {:?}", measured.stdout))?;
    Ok((measured, outcome))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use simulator::{SimConfig, SimHandle, Simulator, Spread};

    /// A simulator of `services` services of `events` events each (realistic spread), and
    /// the plan that pulls all of them from the start, `concurrency` at once.
    pub(crate) fn sim_and_plan(
        services: usize,
        events: usize,
        concurrency: usize,
    ) -> (SimHandle, FetchPlan) {
        tls_provider::install();
        let sim = Simulator::start(
            "127.0.0.1:0".parse().unwrap(),
            SimConfig {
                services,
                events_per_service: events,
                seed: 42,
                spread: Spread::Realistic,
                ..SimConfig::default()
            },
        )
        .unwrap();
        let source = SourceParams::for_sim(&sim);
        let plan = FetchPlan {
            floors: source.services.iter().map(|s| (s.clone(), 0)).collect(),
            source,
            concurrency,
        };
        (sim, plan)
    }

    /// The client against a real simulator, in-process: it sees every event once, in as
    /// many requests as the data needs (a page of 1000 covers at most 1000 events).
    #[test]
    fn it_sees_every_event_of_every_service() {
        let (sim, plan) = sim_and_plan(3, 2_500, 2);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let outcome = runtime.block_on(fetch(plan, None)).unwrap();
        assert_eq!(outcome.events, 7_500);
        assert_eq!(outcome.malformed, 0);
        assert!(outcome.requests >= 9, "{outcome:?}");
        // The authentication request, then the pulls' own.
        assert_eq!(sim.request_count(), outcome.requests + 1);
    }
}
