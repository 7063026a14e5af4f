//! The six figures of issue 11, and what they share: the runner binary, the number of runs,
//! a fresh folder per run, a simulator per data set, and the comparison of the requests two
//! legs made.
//!
//! Every run gets its own temporary folder with its own config, state and output, and is
//! checked before it counts: exit code 0 and every event once in the output. The legs of a
//! figure take turns within each run, in an order that rotates from run to run, so that no
//! leg always runs on a warmer (or busier) machine.

mod backfill;
mod idle;
mod sinks;

use crate::baseline;
use crate::child::{Launch, Measured, Spawner};
use crate::cli::{BackfillArgs, Command, CommonArgs, IdleArgs, SinksArgs};
use crate::config::RunnerConfig;
use crate::report;
use crate::runner_binary;
use anyhow::Context;
use serde_json::{Value, json};
use simulator::{SimConfig, SimHandle, Simulator, Spread};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// `[runner] concurrency` when a figure does not set it: the runner's default.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// What every figure needs.
pub struct Bench {
    pub runner: PathBuf,
    pub runs: usize,
    pub seed: u64,
    /// Starts and measures every leg.
    pub spawner: Spawner,
}

impl Bench {
    /// A fresh, empty folder for one run; removed when dropped.
    pub fn folder(&self, name: &str) -> anyhow::Result<TempDir> {
        tempfile::Builder::new()
            .prefix(&format!("bench-{name}-"))
            .tempdir()
            .context("cannot create a temporary folder")
    }

    /// `runner sync` with `config` in `folder`; fails unless it exits 0.
    pub fn sync(&self, folder: &Path, config: &RunnerConfig) -> anyhow::Result<Measured> {
        let path = config
            .write(folder)
            .with_context(|| format!("cannot write a config into {}", folder.display()))?;
        let launch = Launch::in_folder(&self.runner, folder, "runner")
            .arg("sync")
            .arg("--config")
            .path_arg(&path)
            // The runner's default log level, uncoloured, whatever the caller's environment.
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .env_remove("RUNNER_CONFIG");
        let measured = self.spawner.run(&launch)?;
        measured.expect_success("runner sync")?;
        Ok(measured)
    }

    /// A simulator of `services` services with `events_per_service` events each, spread
    /// as real ones are (bursts, ties, identical twins), from the benchmark's seed.
    pub fn simulator(
        &self,
        services: usize,
        events_per_service: usize,
    ) -> anyhow::Result<SimHandle> {
        Simulator::start(
            "127.0.0.1:0".parse().context("a socket address")?,
            SimConfig {
                services,
                events_per_service,
                seed: self.seed,
                spread: Spread::Realistic,
                ..SimConfig::default()
            },
        )
        .context("the simulator does not start")
    }
}

/// The order of a figure's legs in run `run`: rotated by one each run.
pub fn rotated<T: Copy>(legs: &[T], run: usize) -> Vec<T> {
    let mut order = legs.to_vec();
    if !order.is_empty() {
        let shift = run % order.len();
        order.rotate_left(shift);
    }
    order
}

/// The API requests the simulator answered since it had answered `since`, each as its path
/// and query, sorted: two legs that asked the same pages give equal lists.
pub fn requests_since(sim: &SimHandle, since: usize) -> Vec<String> {
    let mut asked: Vec<String> = sim
        .requests()
        .into_iter()
        .skip(since)
        .map(|request| {
            let query: Vec<String> = request
                .query
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect();
            format!("{}?{}", request.path, query.join("&"))
        })
        .collect();
    asked.sort();
    asked
}

/// How many requests the simulator has logged.
pub fn requests_so_far(sim: &SimHandle) -> usize {
    sim.requests().len()
}

/// Prints a warning when the fetch-only client did not ask exactly the runner's pages, and
/// says whether it did.
pub fn same_requests(figure: &str, fetch_only: &[String], runner: &[String]) -> bool {
    if fetch_only == runner {
        return true;
    }
    let first = fetch_only
        .iter()
        .zip(runner)
        .find(|(a, b)| a != b)
        .map(|(a, b)| format!("fetch-only {a} vs runner {b}"))
        .unwrap_or_default();
    println!(
        "WARNING ({figure}): the fetch-only client made {} requests and the runner {}; they differ ({first}), so the comparison is not like for like",
        fetch_only.len(),
        runner.len()
    );
    false
}

/// Runs the figures `command` asks for and prints the JSON line.
pub fn run(command: Command) -> anyhow::Result<()> {
    let (common, backfill, idle, sinks): (
        CommonArgs,
        Option<BackfillArgs>,
        Option<IdleArgs>,
        Option<SinksArgs>,
    ) = match command {
        Command::Backfill { common, backfill } => (common, Some(backfill), None, None),
        Command::Idle { common, idle } => (common, None, Some(idle), None),
        Command::Sinks { common, sinks } => (common, None, None, Some(sinks)),
        Command::All {
            common,
            backfill,
            idle,
            sinks,
        } => (common, Some(backfill), Some(idle), Some(sinks)),
        Command::FetchOnly { .. } | Command::Floor { .. } | Command::Spawner => {
            anyhow::bail!("not a figure")
        }
    };
    // First, while this process is small: see `child.rs`.
    let spawner = Spawner::start()?;
    let python = match &backfill {
        Some(args) => baseline::find(args.python.as_deref(), args.no_python)?,
        None => None,
    };
    let bench = Bench {
        runner: runner_binary::resolve(common.runner.as_deref())?,
        runs: common.runs,
        seed: common.seed,
        spawner,
    };
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("runner: {}", bench.runner.display());
    println!(
        "bench build: {build}; runs per leg: {}; seed: {}; python: {}",
        bench.runs,
        bench.seed,
        python
            .as_ref()
            .map(|p| format!("{} ({})", p.version, p.executable.display()))
            .unwrap_or_else(|| "skipped".to_owned())
    );
    println!(
        "Medians of {} run(s); timings are printed, never asserted. On a shared machine, trust only differences larger than the spread of the runs.",
        bench.runs
    );
    let mut figures = serde_json::Map::new();
    if let Some(args) = &backfill {
        figures.extend(backfill::run(&bench, args, python.as_ref())?);
    }
    if let Some(args) = &idle {
        figures.extend(idle::run(&bench, args)?);
    }
    if let Some(args) = &sinks {
        figures.extend(sinks::run(&bench, args)?);
    }
    let floor = bench.spawner.floor_kib();
    println!(
        "\nPeak RSS is each process's own (ru_maxrss); figures at or below {:.1} MiB, the peak of the process that starts them, only say \"at most that\".",
        report::mib(floor)
    );
    let line = json!({
        "rss_floor_kib": floor,
        "bench": "issue-11",
        "bench_build": build,
        "runner": bench.runner.display().to_string(),
        "runs": bench.runs,
        "seed": bench.seed,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "python": python.as_ref().map(|p| p.version.clone()),
        "figures": Value::Object(figures),
    });
    report::progress("done; the JSON line follows the tables");
    println!();
    println!("{line}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legs_take_turns() {
        let legs = ["a", "b", "c"];
        assert_eq!(rotated(&legs, 0), ["a", "b", "c"]);
        assert_eq!(rotated(&legs, 1), ["b", "c", "a"]);
        assert_eq!(rotated(&legs, 3), ["a", "b", "c"]);
        assert!(rotated::<u8>(&[], 2).is_empty());
    }

    #[test]
    fn request_lists_differ_or_not() {
        let a = vec!["/x?a=1".to_owned()];
        assert!(same_requests("t", &a, &a.clone()));
        assert!(!same_requests("t", &a, &["/x?a=2".to_owned()]));
        assert!(!same_requests("t", &a, &[]));
    }
}
