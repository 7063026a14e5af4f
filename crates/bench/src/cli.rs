//! The command line: one subcommand per group of figures, `all` for every figure, and the
//! hidden `fetch-only` and `floor` that the benchmark runs as its fetch-only client and
//! figure 1's floor. Every size is a flag, so that CI can run the same code small.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Benchmarks the runner against a fetch-only client and a plain Python script on the ModelArts simulator (issue 11)",
    after_help = "Timings are printed, never asserted. Each leg must exit 0 and deliver every event once, or the benchmark fails."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Figures 1-3: a backfill into the file sink vs the fetch-only client (and, at the
    /// small size, vs the Python script), and the runner's peak RSS at both sizes.
    Backfill {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        backfill: BackfillArgs,
    },
    /// Figures 4-5: idle syncs (many services behind latency; one service) vs the
    /// fetch-only client.
    Idle {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        idle: IdleArgs,
    },
    /// Figure 6: events/s into the Loki and Elasticsearch doubles vs the file sink.
    Sinks {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        sinks: SinksArgs,
    },
    /// Every figure, then one JSON line with all of them.
    All {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        backfill: BackfillArgs,
        #[command(flatten)]
        idle: IdleArgs,
        #[command(flatten)]
        sinks: SinksArgs,
    },
    /// The fetch-only client, as the benchmark runs it: reads the plan (a JSON file the
    /// benchmark writes), asks the runner's pages, parses them into typed rows and
    /// discards them, and prints what it saw as one JSON line.
    #[command(hide = true)]
    FetchOnly {
        #[arg(long)]
        plan: PathBuf,
    },
    /// The floor of figure 1 (see `floor.rs`): pulls as the fetch-only client does, and
    /// writes every event's record into `--out` and the positions into `--state`, doing
    /// the least the file sink's contract asks; prints what it saw as one JSON line.
    #[command(hide = true)]
    Floor {
        #[arg(long)]
        plan: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        state: PathBuf,
    },
    /// The small process that starts and measures every leg (see `child.rs`): one JSON
    /// request per line on stdin, one answer per line on stdout.
    #[command(hide = true)]
    Spawner,
}

/// Flags every figure takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Runs of every leg; the tables show medians and every run.
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub runs: usize,
    /// The runner binary to measure. Default: build this workspace's `runner` with the
    /// benchmark's own profile (`cargo build [--release] -p runner`) and use
    /// `target/<profile>/runner`.
    #[arg(long, value_name = "PATH")]
    pub runner: Option<PathBuf>,
    /// Seed of the simulator's synthetic data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Flags of figures 1-3.
#[derive(Debug, Clone, Args)]
pub struct BackfillArgs {
    /// Events of the large backfill (figure 1, and the large side of figure 3).
    #[arg(long, default_value_t = 1_000_000, value_parser = positive)]
    pub events: usize,
    /// Events of the small backfill: the Python comparison (figure 2) and the small side
    /// of figure 3. At most `--events`.
    #[arg(long, default_value_t = 100_000, value_parser = positive)]
    pub small_events: usize,
    /// The Python 3 interpreter for the baseline script. Default: `python3` on PATH; the
    /// Python leg is skipped (with a note) when that is not found.
    #[arg(long, value_name = "PATH", conflicts_with = "no_python")]
    pub python: Option<PathBuf>,
    /// Skip the Python leg.
    #[arg(long)]
    pub no_python: bool,
}

/// Flags of figures 4-5.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Services of the many-services idle sync (figure 4).
    #[arg(long, default_value_t = 1_000, value_parser = positive)]
    pub idle_services: usize,
    /// Events of each of those services (all delivered before the idle syncs).
    #[arg(long, default_value_t = 100, value_parser = positive)]
    pub idle_events_per_service: usize,
    /// Latency the simulator adds to every API response during figure 4.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    pub idle_latency: Duration,
    /// Services fetched at once, by the runner (`[runner] concurrency`) and the fetch-only
    /// client alike.
    #[arg(long, default_value_t = 50, value_parser = positive)]
    pub concurrency: usize,
    /// Events of the one service of figure 5 (delivered before its idle syncs).
    #[arg(long, default_value_t = 100_000, value_parser = positive)]
    pub idle_one_events: usize,
}

/// Flags of figure 6.
#[derive(Debug, Clone, Args)]
pub struct SinksArgs {
    /// Events delivered to each sink (one service).
    #[arg(long, default_value_t = 100_000, value_parser = positive)]
    pub sink_events: usize,
}

/// A whole number of at least 1.
fn positive(text: &str) -> Result<usize, String> {
    match text.replace('_', "").parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a whole number: {e}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_are_the_issue_sizes() {
        let Command::All {
            common,
            backfill,
            idle,
            sinks,
        } = parse(&["all"]).unwrap().command
        else {
            panic!("not all");
        };
        assert_eq!((common.runs, common.seed, common.runner), (5, 42, None));
        assert_eq!(
            (backfill.events, backfill.small_events),
            (1_000_000, 100_000)
        );
        assert!(backfill.python.is_none() && !backfill.no_python);
        assert_eq!(idle.idle_services, 1_000);
        assert_eq!(idle.idle_latency, Duration::from_millis(20));
        assert_eq!(idle.concurrency, 50);
        assert_eq!(sinks.sink_events, 100_000);
    }

    #[test]
    fn the_ci_line_parses() {
        let cli = parse(&[
            "all",
            "--events",
            "20000",
            "--small-events",
            "5_000",
            "--runs",
            "1",
            "--idle-services",
            "50",
            "--idle-latency",
            "5ms",
            "--no-python",
            "--runner",
            "/tmp/runner",
        ])
        .unwrap();
        let Command::All {
            common,
            backfill,
            idle,
            ..
        } = cli.command
        else {
            panic!("not all");
        };
        assert_eq!(common.runs, 1);
        assert_eq!(common.runner, Some(PathBuf::from("/tmp/runner")));
        assert_eq!((backfill.events, backfill.small_events), (20_000, 5_000));
        assert!(backfill.no_python);
        assert_eq!(idle.idle_services, 50);
        assert_eq!(idle.idle_latency, Duration::from_millis(5));
    }

    #[test]
    fn backfill_takes_a_python_path() {
        let Command::Backfill { backfill, .. } =
            parse(&["backfill", "--python", "/usr/bin/python3.12"])
                .unwrap()
                .command
        else {
            panic!("not backfill");
        };
        assert_eq!(backfill.python, Some(PathBuf::from("/usr/bin/python3.12")));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(&["backfill", "--runs", "0"]).is_err());
        assert!(parse(&["backfill", "--events", "lots"]).is_err());
        assert!(parse(&["backfill", "--python", "p", "--no-python"]).is_err());
        assert!(parse(&["idle", "--idle-latency", "20"]).is_err());
        assert!(
            parse(&["sinks", "--events", "10"]).is_err(),
            "not a sinks flag"
        );
    }

    #[test]
    fn fetch_only_is_hidden_but_parses() {
        let Command::FetchOnly { plan } =
            parse(&["fetch-only", "--plan", "p.json"]).unwrap().command
        else {
            panic!("not fetch-only");
        };
        assert_eq!(plan, PathBuf::from("p.json"));
    }

    #[test]
    fn floor_is_hidden_but_parses() {
        let Command::Floor { plan, out, state } = parse(&[
            "floor", "--plan", "p.json", "--out", "o.jsonl", "--state", "s.db",
        ])
        .unwrap()
        .command
        else {
            panic!("not floor");
        };
        assert_eq!(
            (plan, out, state),
            ("p.json".into(), "o.jsonl".into(), "s.db".into())
        );
        assert!(
            parse(&["floor", "--plan", "p.json"]).is_err(),
            "out and state are required"
        );
    }
}
