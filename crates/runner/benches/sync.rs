//! Benchmark: one `runner sync` of a backlog into the file sink, against the simulator on
//! 127.0.0.1, with the default concurrency. Three cases (realistic spread, seed 42): 10,000
//! and 100,000 events in one service, and 100,000 events in 50 services (2,000 each). Prints
//! wall time, throughput, requests and the runner's peak RSS, so that claims about speed and
//! memory (invariant 8) come with numbers; with `RUNNER_BEFORE` it prints them for an older
//! binary too, from the same run, so that a before/after comparison shares one machine state.
//!
//! ```text
//! cargo bench -p runner --bench sync
//! BENCH_RUNS=3 cargo bench -p runner --bench sync
//! RUNNER_BEFORE=/tmp/runner-before BENCH_RUNS=3 cargo bench -p runner --bench sync
//! ```
//!
//! `RUNNER_BEFORE` names another `runner` binary by an absolute path (cargo runs benches in
//! `crates/runner`), for example a release build of `main`:
//!
//! ```text
//! git worktree add /tmp/before main
//! (cd /tmp/before && CARGO_TARGET_DIR=/tmp/before-target cargo build --release -p runner)
//! cp /tmp/before-target/release/runner /tmp/runner-before
//! ```
//!
//! Every case then runs that
//! binary ("before") and the one cargo built for this bench ("after"), alternating, the order
//! flipped on each repetition; both get the same simulator (same data), the same arguments,
//! working folder and environment, and a fresh state and output file. The configuration only
//! uses keys that both understand. `BENCH_RUNS=N` (default 1) repeats each case N times:
//! runs on a shared 2-core machine differ by tens of percent, so compare medians, and only
//! differences larger than the spread of the runs.
//!
//! Columns, one row per binary and case:
//! - `binary`: `after` (built by cargo from this tree) or `before` (`RUNNER_BEFORE`);
//! - `events`, `services`: the backlog, all of which must end up in the file, one line each
//!   (checked after every run, as is exit code 0);
//! - `seconds`: median wall time of the runs, from spawning the process until it is reaped
//!   (start-up, the first fetch and the final checkpoint included);
//! - `events/s`: `events` divided by `seconds`;
//! - `requests`: API requests the simulator answered during one run (services list and event
//!   pages); `a-b` if the runs differed;
//! - `peak RSS KiB`: the peak resident set size of the runner (`ru_maxrss` from `wait4(2)`);
//!   `a-b` if the runs differed (it does, between runs of one binary: compare maxima);
//! - `runs (s)`: the wall time of every run, in the order they ran.
//!
//! A second table, "per sink", delivers 100,000 events in 50 services with this tree's
//! runner to one sink at a time: the file sink, and the Loki and Elasticsearch doubles of
//! `crates/doubles` (rate limits off, so the runner is what is measured), from the same
//! run. Its columns: `seconds` (median) and `events/s` as above; `requests`, what the
//! runner's summary line says it sent to the sink (file: one per batch); `API calls`, the
//! requests the simulator answered. Each run checks that the sink holds every event once.
//!
//! Timings are printed, never asserted: a shared machine makes timing assertions flaky.

// The end-to-end harness; its own unit tests are not built into a bench.
#[allow(unused_imports, clippy::unwrap_used)]
#[path = "../../../tests/support/mod.rs"]
mod support;

use simulator::{SimConfig, SimHandle, Spread};
use std::path::PathBuf;
use std::time::Instant;
use support::{ConfigText, Dir, start_sim, toml_str};

/// One backlog: `services` services of `events_per_service` events each.
struct Case {
    services: usize,
    events_per_service: usize,
}

impl Case {
    fn events(&self) -> usize {
        self.services * self.events_per_service
    }
}

const CASES: [Case; 3] = [
    Case {
        services: 1,
        events_per_service: 10_000,
    },
    Case {
        services: 1,
        events_per_service: 100_000,
    },
    Case {
        services: 50,
        events_per_service: 2_000,
    },
];

/// Which `runner` a row measures.
enum Binary {
    /// The binary cargo built for this bench, run through the harness's [`Dir::command`].
    After,
    /// Another build, named by `RUNNER_BEFORE`.
    Before(PathBuf),
}

impl Binary {
    fn label(&self) -> &'static str {
        match self {
            Binary::After => "after",
            Binary::Before(_) => "before",
        }
    }
}

/// What one run of one binary cost.
struct Measurement {
    seconds: f64,
    requests: u64,
    rss_kib: i64,
}

fn main() {
    let runs = match std::env::var("BENCH_RUNS") {
        Ok(text) => text
            .parse::<usize>()
            .ok()
            .filter(|&runs| runs > 0)
            .unwrap_or_else(|| panic!("BENCH_RUNS must be a positive number, not {text:?}")),
        Err(_) => 1,
    };
    let mut binaries = Vec::new();
    if let Some(path) = std::env::var_os("RUNNER_BEFORE") {
        let path = std::fs::canonicalize(&path)
            .ok()
            .filter(|path| path.is_file())
            .unwrap_or_else(|| panic!("RUNNER_BEFORE={} is not a file", path.display()));
        println!("before: {}", path.display());
        binaries.push(Binary::Before(path));
    }
    binaries.push(Binary::After);
    println!("after:  {}", support::RUNNER);
    println!("runs per case and binary: {runs}\n");
    println!(
        "{:<6} {:>7} {:>8} {:>8} {:>9} {:>11} {:>12}  runs (s)",
        "binary", "events", "services", "seconds", "events/s", "requests", "peak RSS KiB"
    );
    for case in &CASES {
        let sim = start_sim(SimConfig {
            services: case.services,
            events_per_service: case.events_per_service,
            seed: 42,
            spread: Spread::Realistic,
            ..SimConfig::default()
        });
        let mut measured: Vec<Vec<Measurement>> = binaries.iter().map(|_| Vec::new()).collect();
        for run in 0..runs {
            // Before, after; then after, before: neither always runs on a warmer machine.
            let mut order: Vec<usize> = (0..binaries.len()).collect();
            if run % 2 == 1 {
                order.reverse();
            }
            for index in order {
                measured[index].push(sync_once(&binaries[index], &sim, case, run));
            }
        }
        for (binary, measurements) in binaries.iter().zip(&measured) {
            print_row(binary, case, measurements);
        }
    }
    per_sink(runs);
}

/// The sinks this section compares: each run delivers the whole backlog to one of them.
const SINKS: [&str; 3] = ["file", "loki", "elasticsearch"];

/// 100,000 events in 50 services delivered by this tree's runner to each kind of sink
/// alone: the file sink, and the Loki and Elasticsearch doubles (`crates/doubles`, rate
/// limits off), from one run. `requests` is what the runner's summary line for the sink
/// says it sent (file: one per batch).
fn per_sink(runs: usize) {
    let case = &CASES[2];
    println!(
        "\nper sink, {} events in {} services:",
        case.events(),
        case.services
    );
    println!(
        "{:<14} {:>8} {:>9} {:>9} {:>10}  runs (s)",
        "sink", "seconds", "events/s", "requests", "API calls"
    );
    let sim = start_sim(SimConfig {
        services: case.services,
        events_per_service: case.events_per_service,
        seed: 42,
        spread: Spread::Realistic,
        ..SimConfig::default()
    });
    for kind in SINKS {
        let mut seconds = Vec::new();
        let mut sent = Vec::new();
        let mut api = Vec::new();
        for run in 0..runs {
            let (time, requests, calls) = sync_into(kind, &sim, case, run);
            seconds.push(time);
            sent.push(requests);
            api.push(calls);
        }
        let runs_text: Vec<String> = seconds.iter().map(|s| format!("{s:.2}")).collect();
        let median = median(&mut seconds);
        println!(
            "{:<14} {:>8.2} {:>9.0} {:>9} {:>10}  {}",
            kind,
            median,
            case.events() as f64 / median,
            range(sent.into_iter()),
            range(api.into_iter()),
            runs_text.join(" ")
        );
    }
}

/// One sync of the whole backlog into a fresh sink of `kind`; checks that the sink holds
/// every event once. Returns the seconds, the requests the sink sent, and the requests
/// the simulator answered.
fn sync_into(kind: &str, sim: &SimHandle, case: &Case, run: usize) -> (f64, u64, u64) {
    let dir = Dir::new(&format!("bench-sink-{kind}-{run}"));
    let config = ConfigText::for_sim(sim);
    // Kept alive until the run is checked.
    let loki = (kind == "loki").then(|| {
        doubles::loki::LokiDouble::with(doubles::loki::LokiSettings {
            auth_enabled: false,
            limits: doubles::loki::LokiLimits {
                reject_old_samples_max_age: std::time::Duration::from_secs(3650 * 24 * 3600),
                ..doubles::loki::LokiLimits::default()
            },
        })
        .expect("a Loki double")
    });
    let es = (kind == "elasticsearch")
        .then(|| doubles::elasticsearch::ElasticsearchDouble::start().expect("an ES double"));
    let config = match kind {
        "file" => config.file_sink("out", "out/events.jsonl"),
        "loki" => config.sink(
            "out",
            "loki",
            &[
                (
                    "endpoint",
                    toml_str(&loki.as_ref().expect("started").base_url()),
                ),
                ("too_old_after", toml_str("3650d")),
            ],
        ),
        _ => config.sink(
            "out",
            "elasticsearch",
            &[(
                "endpoint",
                toml_str(&es.as_ref().expect("started").base_url()),
            )],
        ),
    };
    let config = dir.write_config(&config);
    let config = config.display().to_string();
    let calls_before = sim.request_count();
    let started = Instant::now();
    let output = dir.command(&["sync", "--config", &config]).run();
    let seconds = started.elapsed().as_secs_f64();
    output.assert_code(0);
    let stored = match kind {
        "file" => std::fs::read_to_string(dir.join("out/events.jsonl"))
            .map(|text| text.lines().count())
            .unwrap_or(0),
        "loki" => loki.as_ref().expect("started").entries().len(),
        _ => es.as_ref().expect("started").count(),
    };
    assert_eq!(stored, case.events(), "{kind}: every event once");
    let requests = output
        .stderr
        .lines()
        .find(|line| line.starts_with("sink out "))
        .and_then(|line| line.split(" batch(es), ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{kind}: no sink summary line:\n{}", output.stderr));
    (seconds, requests, sim.request_count() - calls_before)
}

fn median(seconds: &mut [f64]) -> f64 {
    seconds.sort_by(f64::total_cmp);
    let middle = seconds.len() / 2;
    if seconds.len() % 2 == 1 {
        seconds[middle]
    } else {
        (seconds[middle - 1] + seconds[middle]) / 2.0
    }
}

/// One `runner sync` of the whole backlog of `sim` by `binary` into a fresh folder; fails
/// unless it exits 0 and the file holds every event.
fn sync_once(binary: &Binary, sim: &SimHandle, case: &Case, run: usize) -> Measurement {
    let dir = Dir::new(&format!(
        "bench-{}-{}x{}-{run}",
        binary.label(),
        case.services,
        case.events_per_service
    ));
    let config =
        dir.write_config(&ConfigText::for_sim(sim).file_sink("archive", "out/events.jsonl"));
    let config = config.display().to_string();
    let args = ["sync", "--config", config.as_str()];
    let requests_before = sim.request_count();
    let started = Instant::now();
    let command = match binary {
        Binary::After => dir.command(&args),
        Binary::Before(path) => dir.command_of(path, &args),
    };
    let (output, rss_kib) = command.spawn().wait_with_max_rss_kib();
    output.assert_code(0);
    let seconds = started.elapsed().as_secs_f64();
    let requests = sim.request_count() - requests_before;
    let lines = std::fs::read_to_string(dir.join("out/events.jsonl"))
        .map(|text| text.lines().count())
        .unwrap_or(0);
    assert_eq!(
        lines,
        case.events(),
        "{}: every event once in the file",
        binary.label()
    );
    Measurement {
        seconds,
        requests,
        rss_kib,
    }
}

fn print_row(binary: &Binary, case: &Case, measurements: &[Measurement]) {
    let mut seconds: Vec<f64> = measurements.iter().map(|m| m.seconds).collect();
    let runs: Vec<String> = seconds.iter().map(|s| format!("{s:.2}")).collect();
    let median = median(&mut seconds);
    let requests = range(measurements.iter().map(|m| m.requests));
    let rss_kib = range(measurements.iter().map(|m| m.rss_kib));
    println!(
        "{:<6} {:>7} {:>8} {:>8.2} {:>9.0} {:>11} {:>12}  {}",
        binary.label(),
        case.events(),
        case.services,
        median,
        case.events() as f64 / median,
        requests,
        rss_kib,
        runs.join(" ")
    );
}

/// `n` if every run gave `n`, `fewest-most` if they differed.
fn range<T: Ord + std::fmt::Display>(values: impl Iterator<Item = T> + Clone) -> String {
    match (values.clone().min(), values.max()) {
        (Some(fewest), Some(most)) if fewest == most => fewest.to_string(),
        (Some(fewest), Some(most)) => format!("{fewest}-{most}"),
        _ => "-".to_owned(),
    }
}
