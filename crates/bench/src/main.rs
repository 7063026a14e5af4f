//! `bench`: the benchmark of issue 11. It starts the ModelArts simulator in-process, builds
//! and runs the real `runner` binary, a fetch-only client (this binary again, as a child
//! process) and, for the backfill, the plain Python script `baseline.py` on the same data,
//! and prints a table per figure and, last, one JSON line with every number. The children
//! are started and measured by a small spawner process (this binary again; `child.rs` says
//! why), so that their peak RSS is their own.
//!
//! ```text
//! cargo run --release -p bench -- all                      # every figure, 5 runs each
//! cargo run --release -p bench -- backfill --events 1000000
//! target/debug/bench all --runner target/debug/runner --runs 1 --events 20000 ...  # CI
//! ```
//!
//! Timings are printed, never asserted: a shared machine makes timing assertions flaky.
//! What is asserted is correctness: every leg exits 0, and every output holds every event
//! once.

mod baseline;
mod check;
mod child;
mod cli;
mod config;
mod fetch_only;
mod figures;
mod floor;
mod report;
mod runner_binary;
mod source_params;
mod stats;

use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // reqwest is built without a TLS crypto provider: the program picks ring, before the
    // fetch-only client builds its HTTP client (as the runner's main does).
    tls_provider::install();
    let outcome = match cli.command {
        Command::FetchOnly { plan } => fetch_only::main(&plan),
        Command::Floor { plan, out, state } => floor::main(&plan, &out, &state),
        Command::Spawner => child::serve(),
        command => figures::run(command),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
