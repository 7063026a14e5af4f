//! `runner`: ships ModelArts service events to stdout, files and more.
//!
//! The binary only parses the command line, loads the config, runs the
//! command and maps its outcome to an exit code; the work lives in the
//! `source`, `sink` and `pipeline` crates.

mod app;
mod cli;
mod config;
mod demo;
mod manual;
mod output;
mod progress;
mod signals;
mod status_server;

use app::{AppError, exit};
use cli::{Cli, Command, ConfigArg, LogFormat};
use output::Level;
use pipeline::Selection;
use source::StartAt;
use source::checkpoint::{ResetFilter, ResetTo};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        // With `--log-format json` on the command line, even its error is a JSON log line.
        Err(error) if error.use_stderr() && cli::asks_for_json_logs(&args) => {
            output::init(LogFormat::Json, false);
            output::always(Level::Error, error.render().to_string().trim_end());
            return ExitCode::from(exit::CONFIG);
        }
        // Prints the error (exit 2), or the help or version asked for (exit 0).
        Err(error) => error.exit(),
    };
    output::init(cli.log_format, matches!(cli.command, Command::Demo(_)));
    // reqwest is built without a TLS crypto provider: this program chooses ring, once,
    // before any HTTP client is built (the libraries only check that one is installed).
    tls_provider::install();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            output::always(
                Level::Error,
                &format!("error: cannot start the async runtime: {e}"),
            );
            return ExitCode::from(exit::FAILED);
        }
    };
    match runtime.block_on(execute(cli.command)) {
        Ok(code) => ExitCode::from(code),
        // The reader of stdout went away (`runner state | head -1`): stop quietly.
        Err(AppError::StdoutClosed) => ExitCode::from(exit::OK),
        Err(error) => {
            output::always(Level::Error, &format!("error: {error}"));
            ExitCode::from(error.code())
        }
    }
}

/// Loads the config files; `--shard` replaces `[runner] shard`.
fn load(files: &ConfigArg) -> Result<config::Config, AppError> {
    let mut config = config::load_all(&files.config, &files.config_dir)?;
    if let Some(shard) = files.shard.shard {
        config.runner.shard = shard;
    }
    Ok(config)
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
            app::sync(&config, selection, dry_run, args.metrics_file).await
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
        Command::Completions(args) => manual::print_completions(args.shell),
        Command::Man => manual::print_man_page(),
    }
}
