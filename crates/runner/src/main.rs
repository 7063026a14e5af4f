//! `runner`: ships ModelArts service events to stdout, files and more.
//!
//! The binary only parses the command line, loads the config, runs the
//! command and maps its outcome to an exit code; the work lives in the
//! `source`, `sink` and `pipeline` crates.

mod app;
mod cli;
mod config;
mod demo;
mod signals;

use app::{AppError, exit};
use cli::{Cli, Command, ConfigArg, LogFormat};
use pipeline::Selection;
use source::StartAt;
use source::checkpoint::{ResetFilter, ResetTo};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, matches!(cli.command, Command::Demo(_)));
    // reqwest is built without a TLS crypto provider: this program chooses ring, once,
    // before any HTTP client is built (the libraries only check that one is installed).
    tls_provider::install();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    match runtime.block_on(execute(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.code())
        }
    }
}

/// Logs go to stderr; stdout carries only records. The demo is quieter by
/// default so its records and narration stay readable.
fn init_logging(format: LogFormat, demo: bool) {
    let default = if demo { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load(files: &ConfigArg) -> Result<config::Config, AppError> {
    Ok(config::load_all(&files.config, &files.config_dir)?)
}

async fn execute(command: Command) -> Result<u8, AppError> {
    match command {
        Command::Sync(args) => {
            let config = load(&args.config)?;
            let selection = Selection {
                source: args.source,
                services: args.services,
            };
            let dry_run = match (args.dry_run, args.sink) {
                (false, _) => None,
                (true, sink) => Some(app::DryRun { sink }),
            };
            app::sync(&config, selection, dry_run).await
        }
        Command::Run(args) => app::run(&load(&args.config)?).await,
        Command::Validate(args) => app::validate(&load(&args.config)?, args.check).await,
        Command::State(args) => app::show_state(&load(&args.config)?, args.json).await,
        Command::StateReset(args) => {
            let config = load(&args.config)?;
            let filter = ResetFilter {
                source: args.source,
                service_id: args.service,
                sink: args.sink,
            };
            let to = args.to.map(|to| {
                ResetTo::Since(match to {
                    StartAt::Beginning => 0,
                    StartAt::Now => record::now_ms(),
                    StartAt::At(ms) => ms,
                })
            });
            app::reset_state(&config, filter, to, args.yes).await
        }
        Command::Services(args) => app::services(&load(&args.config)?).await,
        Command::DeadLetterShow(args) => {
            app::dead_letter_show(&load(&args.config)?, &args.sink, args.json).await
        }
        Command::DeadLetterReplay(args) => {
            app::dead_letter_replay(&load(&args.config)?, &args.sink).await
        }
        Command::Demo(args) => demo::run(args.keep).await,
    }
}
