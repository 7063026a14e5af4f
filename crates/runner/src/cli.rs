//! The command line: `runner sync | run | validate | state | state reset |
//! services | dead-letter show | dead-letter replay | demo | completions | man`, parsed with clap into [`Cli`]. Parsing only: what each
//! command does lives elsewhere, and so does mapping outcomes to exit codes.

use crate::config::parse_start_at;
use clap::{Args, Parser, Subcommand, ValueEnum};
use source::{Shard, StartAt};
use std::ffi::OsString;
use std::path::PathBuf;

/// The exit codes, shown at the end of `--help`.
const EXIT_CODES: &str = "\
Exit codes (when several apply, the first of 3, 2, 130/143, 1, 0):
  0    everything delivered
  1    some source, service or sink failed (what succeeded is kept)
  2    bad command line or configuration (nothing was touched)
  3    another runner holds the state file
  130  sync stopped by SIGINT (what was delivered is committed)
  143  sync stopped by SIGTERM (what was delivered is committed)
  run exits 0 on SIGINT or SIGTERM; a second signal stops at once, with 130 or 143.

Records go to stdout (the stdout sink, or what --dry-run would deliver); logs and the
summary go to stderr. RUST_LOG filters the logs (default: info), e.g. RUST_LOG=debug.";

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cli {
    /// Format of the logs on stderr.
    pub log_format: LogFormat,
    pub command: Command,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `runner sync`: fetch what is new once, deliver it, exit.
    Sync(SyncArgs),
    /// `runner run`: sync every `runner.interval` until SIGINT or SIGTERM.
    Run(RunArgs),
    /// `runner validate`: check the configuration.
    Validate(ValidateArgs),
    /// `runner state`: show the positions.
    State(StateArgs),
    /// `runner state reset`: forget positions so that they start again.
    StateReset(StateResetArgs),
    /// `runner services`: list the services each source follows.
    Services(ServicesArgs),
    /// `runner dead-letter show`: list a sink's dead-lettered records.
    DeadLetterShow(DeadLetterShowArgs),
    /// `runner dead-letter replay`: offer a sink's dead-lettered records to it again.
    DeadLetterReplay(DeadLetterReplayArgs),
    /// `runner demo`: the real pipeline against a built-in simulator.
    Demo(DemoArgs),
    /// `runner completions SHELL`: print a shell completion script.
    Completions(CompletionsArgs),
    /// `runner man`: print the man page (roff).
    Man,
}

/// Format of the logs on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `--config FILE` (also read from `RUNNER_CONFIG`) and `--config-dir DIR`, each
/// repeatable: the files are merged (see the README's "Several files").
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[group(skip)]
#[command(group(
    clap::ArgGroup::new("config_files")
        .args(["config", "config_dir"])
        .required(true)
        .multiple(true)
))]
pub struct ConfigArg {
    /// A configuration file (TOML); repeat to merge several. Relative paths in a file are
    /// relative to its folder.
    #[arg(long, short = 'c', env = "RUNNER_CONFIG", value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// A folder whose *.toml files are merged (in name order); repeatable, and combines
    /// with --config. A component defined twice, or a key of [state] or [runner] set
    /// twice, is an error naming both files.
    #[arg(long, value_name = "DIR")]
    pub config_dir: Vec<PathBuf>,
    #[command(flatten)]
    pub shard: ShardArg,
}

/// `--shard K/N`, with every command that reads a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Args)]
#[group(skip)]
pub struct ShardArg {
    /// Be shard K of N (K from 0 to N-1, such as a StatefulSet pod's ordinal): follow
    /// only the services whose SHA-256(project_id/service_id) falls on K. Replaces
    /// [runner] shard. Each shard needs its own state file: the state records K/N and
    /// refuses another (exit 2).
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
}

/// `--shard K/N`; the message is the one `[runner] shard` gets.
fn parse_shard(text: &str) -> Result<Shard, String> {
    text.parse::<Shard>().map_err(|e| e.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(after_help = EXIT_CODES)]
pub struct SyncArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Sync only this source (a [sources.NAME] of the config).
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// Sync only this service id; repeat for several.
    #[arg(long = "service", value_name = "ID")]
    pub services: Vec<String>,
    /// Fetch and print on stdout what would be delivered, without delivering it or
    /// moving any position. Only reads the state.
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: only this sink (a [sinks.NAME] of the config), and show what it
    /// would send as that sink renders it: a webhook sink's messages (bodies as sent,
    /// without signatures or URLs), the events it would skip and what it would refuse.
    #[arg(long = "sink", value_name = "NAME", requires = "dry_run")]
    pub sink: Option<String>,
    /// At the end of the run, write its metrics to PATH in the Prometheus text format of
    /// node-exporter's textfile collector (written to a temporary file, then renamed).
    #[arg(long, value_name = "PATH", conflicts_with = "dry_run")]
    pub metrics_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(after_help = EXIT_CODES)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(after_help = EXIT_CODES)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Also try each source's authentication and each sink's health check.
    #[arg(long)]
    pub check: bool,
}

/// `runner state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateArgs {
    pub config: ConfigArg,
    /// Print JSON instead of a table.
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(after_help = EXIT_CODES)]
pub struct StateResetArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Reset only this source's positions.
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
    /// Reset only this service's positions.
    #[arg(long, value_name = "ID")]
    pub service: Option<String>,
    /// Reset only this sink's positions.
    #[arg(long, value_name = "NAME")]
    pub sink: Option<String>,
    /// Where the reset positions start: "beginning", "now", or an RFC 3339 time such as
    /// 2024-05-01T00:00:00Z. Default: the source's `start_at`.
    #[arg(long, value_name = "beginning|now|RFC3339", value_parser = parse_start_at)]
    pub to: Option<StartAt>,
    /// Reset without asking. On a terminal (stdin and stderr), reset shows the positions
    /// it would reset and asks for confirmation (a "no" resets nothing and exits 1); --yes
    /// skips the question. Without a terminal (cron, scripts) it never asks.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ServicesArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct DeadLetterShowArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The sink whose dead-letter file to show (a [sinks.NAME] of the config).
    #[arg(long, value_name = "NAME")]
    pub sink: String,
    /// Print the entries as JSON lines on stdout (for jq) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(after_help = EXIT_CODES)]
pub struct DeadLetterReplayArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The sink whose dead-lettered records to offer again (a [sinks.NAME] of the config).
    #[arg(long, value_name = "NAME")]
    pub sink: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct DemoArgs {
    /// Keep the demo's files (config, state, output) in DIR instead of a temporary
    /// folder that is deleted at the end.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The shells `runner completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// Source it, or put it in /usr/share/bash-completion/completions/runner.
    Bash,
    /// Put it as _runner in a folder of $fpath.
    Zsh,
    /// Put it in ~/.config/fish/completions/runner.fish.
    Fish,
}

impl Cli {
    /// Parses `args` (the first is the program name).
    pub fn try_parse_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let parsed = ClapCli::try_parse_from(args)?;
        let command = match parsed.command {
            ClapCommand::Sync(args) => Command::Sync(args),
            ClapCommand::Run(args) => Command::Run(args),
            ClapCommand::Validate(args) => Command::Validate(args),
            ClapCommand::State(ClapState {
                action: Some(StateAction::Reset(args)),
                ..
            }) => Command::StateReset(args),
            ClapCommand::State(ClapState {
                action: None,
                config,
                config_dir,
                shard,
                json,
            }) => {
                // clap requires --config or --config-dir when no action is given; this
                // only guards that.
                if config.is_empty() && config_dir.is_empty() {
                    return Err(clap::Error::raw(
                        clap::error::ErrorKind::MissingRequiredArgument,
                        "runner state needs --config FILE, --config-dir DIR (or RUNNER_CONFIG)\n",
                    ));
                }
                Command::State(StateArgs {
                    config: ConfigArg {
                        config,
                        config_dir,
                        shard,
                    },
                    json,
                })
            }
            ClapCommand::Services(args) => Command::Services(args),
            ClapCommand::DeadLetter(DeadLetterAction::Show(args)) => Command::DeadLetterShow(args),
            ClapCommand::DeadLetter(DeadLetterAction::Replay(args)) => {
                Command::DeadLetterReplay(args)
            }
            ClapCommand::Demo(args) => Command::Demo(args),
            ClapCommand::Completions(args) => Command::Completions(args),
            ClapCommand::Man => Command::Man,
        };
        Ok(Cli {
            log_format: parsed.log_format,
            command,
        })
    }

    /// The clap definition: help text, completions, the man page.
    pub fn command() -> clap::Command {
        <ClapCli as clap::CommandFactory>::command()
    }
}

/// Whether a command line that clap refused still says `--log-format json`, so that its
/// error can be given in the format the caller reads.
pub fn asks_for_json_logs(args: &[OsString]) -> bool {
    args.iter().enumerate().any(|(i, arg)| {
        arg == "--log-format=json"
            || (arg == "--log-format" && args.get(i + 1).is_some_and(|next| next == "json"))
    })
}

/// What clap parses. `state` and `state reset` share a word, so clap sees an
/// optional action under `state`; [`Cli`] flattens that into [`Command`].
#[derive(Debug, Parser)]
#[command(
    name = "runner",
    // The package version, and the git commit when built from a checkout (build.rs).
    version = env!("RUNNER_VERSION"),
    about = "Ship ModelArts service event logs to files, stdout and other sinks: \
             incrementally, each event once per sink, resuming where the last run stopped.",
    after_help = EXIT_CODES,
    propagate_version = true
)]
struct ClapCli {
    /// Format of the logs on stderr ("text" for people, "json" for log collectors).
    /// RUST_LOG filters them (default: info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: ClapCommand,
}

#[derive(Debug, Subcommand)]
enum ClapCommand {
    /// Fetch what is new once, deliver it to every sink, and exit (for cron and CI).
    Sync(SyncArgs),
    /// Run as a daemon: sync every `runner.interval` until SIGINT or SIGTERM (exits 0).
    Run(RunArgs),
    /// Check the configuration file without touching the state; --check also tries
    /// authentication and each sink.
    Validate(ValidateArgs),
    /// Show the positions per source, service and sink (read-only), or reset them.
    State(ClapState),
    /// List the services each source follows.
    Services(ServicesArgs),
    /// Show a sink's dead-lettered records (refused by the destination for good), or
    /// offer them to it again once the cause is fixed.
    #[command(subcommand)]
    DeadLetter(DeadLetterAction),
    /// Run the real pipeline against a built-in ModelArts simulator; needs nothing.
    Demo(DemoArgs),
    /// Print a completion script for bash, zsh or fish on stdout, e.g.
    /// `runner completions bash > /usr/share/bash-completion/completions/runner`.
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout, e.g. `runner man > /usr/local/share/man/man1/runner.1`.
    Man,
}

#[derive(Debug, Subcommand)]
enum DeadLetterAction {
    /// List the entries of a sink's dead-letter file: time, status, record, reason.
    /// Only reads.
    Show(DeadLetterShowArgs),
    /// Offer the entries to the sink again, with its batching and retries; an entry
    /// leaves the file only when the destination accepted it. Takes the state lock.
    Replay(DeadLetterReplayArgs),
}

#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = EXIT_CODES
)]
#[command(group(
    clap::ArgGroup::new("config_files")
        .args(["config", "config_dir"])
        .required(true)
        .multiple(true)
))]
struct ClapState {
    /// A configuration file (TOML); repeat to merge several. Relative paths in a file are
    /// relative to its folder.
    #[arg(long, short = 'c', env = "RUNNER_CONFIG", value_name = "FILE")]
    config: Vec<PathBuf>,
    /// A folder whose *.toml files are merged (in name order); repeatable, and combines
    /// with --config.
    #[arg(long, value_name = "DIR")]
    config_dir: Vec<PathBuf>,
    #[command(flatten)]
    shard: ShardArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    action: Option<StateAction>,
}

#[derive(Debug, Subcommand)]
enum StateAction {
    /// Forget positions (all, or those of one source, service or sink) so that they
    /// start again from --to. Lists them first, and asks on a terminal unless --yes.
    /// Takes the state lock.
    Reset(StateResetArgs),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use std::path::Path;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("runner").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn parse_err(args: &[&str]) -> clap::Error {
        match Cli::try_parse_from(std::iter::once("runner").chain(args.iter().copied())) {
            Ok(cli) => panic!("{args:?} parsed as {cli:?}"),
            Err(error) => error,
        }
    }

    fn config(path: &str) -> ConfigArg {
        ConfigArg {
            config: vec![PathBuf::from(path)],
            config_dir: vec![],
            shard: ShardArg::default(),
        }
    }

    /// Tests that need --config to be missing cannot run when RUNNER_CONFIG supplies it.
    fn runner_config_is_set() -> bool {
        std::env::var_os("RUNNER_CONFIG").is_some()
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sync_with_every_flag() {
        let cli = parse(&[
            "sync",
            "--config",
            "r.toml",
            "--source",
            "prod",
            "--service",
            "a",
            "--service",
            "b",
            "--dry-run",
            "--sink",
            "slack",
        ]);
        assert_eq!(cli.log_format, LogFormat::Text);
        assert_eq!(
            cli.command,
            Command::Sync(SyncArgs {
                config: config("r.toml"),
                source: Some("prod".to_owned()),
                services: vec!["a".to_owned(), "b".to_owned()],
                dry_run: true,
                sink: Some("slack".to_owned()),
                metrics_file: None,
            })
        );
    }

    #[test]
    fn a_sink_is_chosen_only_for_a_dry_run() {
        let error = parse_err(&["sync", "-c", "r.toml", "--sink", "slack"]);
        assert_eq!(error.kind(), ErrorKind::MissingRequiredArgument, "{error}");
        assert!(error.to_string().contains("--dry-run"), "{error}");
    }

    #[test]
    fn sync_with_defaults() {
        let cli = parse(&["sync", "-c", "r.toml"]);
        assert_eq!(
            cli.command,
            Command::Sync(SyncArgs {
                config: config("r.toml"),
                source: None,
                services: vec![],
                dry_run: false,
                sink: None,
                metrics_file: None,
            })
        );
    }

    #[test]
    fn run_validate_services_and_demo() {
        assert_eq!(
            parse(&["run", "--config", "/etc/r.toml"]).command,
            Command::Run(RunArgs {
                config: config("/etc/r.toml")
            })
        );
        assert_eq!(
            parse(&["validate", "--config", "r.toml", "--check"]).command,
            Command::Validate(ValidateArgs {
                config: config("r.toml"),
                check: true,
            })
        );
        assert_eq!(
            parse(&["validate", "--config", "r.toml"]).command,
            Command::Validate(ValidateArgs {
                config: config("r.toml"),
                check: false,
            })
        );
        assert_eq!(
            parse(&["services", "--config", "r.toml"]).command,
            Command::Services(ServicesArgs {
                config: config("r.toml")
            })
        );
        assert_eq!(
            parse(&["demo"]).command,
            Command::Demo(DemoArgs { keep: None })
        );
        assert_eq!(
            parse(&["demo", "--keep", "out/demo"]).command,
            Command::Demo(DemoArgs {
                keep: Some(PathBuf::from("out/demo"))
            })
        );
    }

    #[test]
    fn completions_and_man() {
        for (word, shell) in [
            ("bash", Shell::Bash),
            ("zsh", Shell::Zsh),
            ("fish", Shell::Fish),
        ] {
            assert_eq!(
                parse(&["completions", word]).command,
                Command::Completions(CompletionsArgs { shell })
            );
        }
        let error = parse_err(&["completions", "tcsh"]);
        assert_eq!(error.kind(), ErrorKind::InvalidValue, "{error}");
        let error = parse_err(&["completions"]);
        assert_eq!(error.kind(), ErrorKind::MissingRequiredArgument, "{error}");
        assert_eq!(parse(&["man"]).command, Command::Man);
    }

    #[test]
    fn state_shows() {
        assert_eq!(
            parse(&["state", "--config", "r.toml", "--json"]).command,
            Command::State(StateArgs {
                config: config("r.toml"),
                json: true,
            })
        );
        assert_eq!(
            parse(&["state", "--config", "r.toml"]).command,
            Command::State(StateArgs {
                config: config("r.toml"),
                json: false,
            })
        );
    }

    #[test]
    fn state_reset_with_every_flag() {
        let cli = parse(&[
            "state",
            "reset",
            "--config",
            "r.toml",
            "--source",
            "prod",
            "--service",
            "svc",
            "--sink",
            "archive",
            "--to",
            "2019-07-08T14:47:31.764Z",
        ]);
        assert_eq!(
            cli.command,
            Command::StateReset(StateResetArgs {
                config: config("r.toml"),
                source: Some("prod".to_owned()),
                service: Some("svc".to_owned()),
                sink: Some("archive".to_owned()),
                to: Some(StartAt::At(1_562_597_251_764)),
                yes: false,
            })
        );
        let cli = parse(&["state", "reset", "--config", "r.toml"]);
        assert_eq!(
            cli.command,
            Command::StateReset(StateResetArgs {
                config: config("r.toml"),
                source: None,
                service: None,
                sink: None,
                to: None,
                yes: false,
            })
        );
        for (word, expected) in [("beginning", StartAt::Beginning), ("now", StartAt::Now)] {
            let cli = parse(&["state", "reset", "--config", "r.toml", "--to", word]);
            let Command::StateReset(args) = cli.command else {
                panic!("not a reset: {cli:?}");
            };
            assert_eq!(args.to, Some(expected));
        }
    }

    #[test]
    fn state_reset_refuses_a_bad_to() {
        let error = parse_err(&["state", "reset", "--config", "r.toml", "--to", "yesterday"]);
        assert_eq!(error.kind(), ErrorKind::ValueValidation);
        assert!(error.to_string().contains("RFC 3339"), "{error}");
    }

    #[test]
    fn state_json_belongs_to_show_not_reset() {
        let error = parse_err(&["state", "reset", "--config", "r.toml", "--json"]);
        assert_eq!(error.kind(), ErrorKind::UnknownArgument, "{error}");
    }

    #[test]
    fn log_format_is_global() {
        let cli = parse(&["sync", "--config", "r.toml", "--log-format", "json"]);
        assert_eq!(cli.log_format, LogFormat::Json);
        let cli = parse(&["--log-format", "json", "demo"]);
        assert_eq!(cli.log_format, LogFormat::Json);
        let error = parse_err(&["--log-format", "xml", "demo"]);
        assert_eq!(error.kind(), ErrorKind::InvalidValue);
    }

    #[test]
    fn usage_errors_exit_with_2() {
        let error = parse_err(&["frobnicate"]);
        assert_eq!(error.kind(), ErrorKind::InvalidSubcommand);
        assert_eq!(error.exit_code(), 2);
        let error = parse_err(&["sync", "--config", "r.toml", "--bogus"]);
        assert_eq!(error.exit_code(), 2);
        let error = parse_err(&[]);
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn config_is_required_unless_runner_config_is_set() {
        if runner_config_is_set() {
            return;
        }
        for args in [
            &["sync"][..],
            &["run"],
            &["validate"],
            &["state"],
            &["state", "reset"],
            &["services"],
        ] {
            let error = parse_err(args);
            assert_eq!(error.kind(), ErrorKind::MissingRequiredArgument, "{args:?}");
        }
    }

    #[test]
    fn every_config_flag_reads_runner_config() {
        let root = Cli::command();
        let mut paths = vec![
            vec!["sync"],
            vec!["run"],
            vec!["validate"],
            vec!["state"],
            vec!["state", "reset"],
            vec!["services"],
        ];
        for path in paths.drain(..) {
            let mut command = &root;
            for name in &path {
                command = command.find_subcommand(name).unwrap();
            }
            let arg = command
                .get_arguments()
                .find(|arg| arg.get_id() == "config")
                .unwrap_or_else(|| panic!("{path:?} has no --config"));
            assert_eq!(
                arg.get_env().and_then(|env| env.to_str()),
                Some("RUNNER_CONFIG"),
                "{path:?}"
            );
        }
    }

    #[test]
    fn help_shows_the_exit_codes_and_every_flag_is_documented() {
        let mut root = Cli::command();
        let help = root.render_long_help().to_string();
        for needle in ["Exit codes", "130", "143", "RUST_LOG", "--log-format"] {
            assert!(help.contains(needle), "{needle} not in:\n{help}");
        }
        fn check(command: &clap::Command, path: &str) {
            for arg in command.get_arguments() {
                if arg.get_id() == "help" || arg.get_id() == "version" {
                    continue;
                }
                assert!(
                    arg.get_help().is_some() || arg.get_long_help().is_some(),
                    "{path} --{} has no help",
                    arg.get_id()
                );
            }
            for sub in command.get_subcommands() {
                if sub.get_name() == "help" {
                    continue;
                }
                assert!(
                    sub.get_about().is_some(),
                    "{path} {} has no help",
                    sub.get_name()
                );
                check(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        check(&root, "runner");
        let mut sync = Cli::command();
        let sync_help = sync
            .find_subcommand_mut("sync")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(sync_help.contains("Exit codes"), "{sync_help}");
        assert!(sync_help.contains("RUNNER_CONFIG"), "{sync_help}");
    }

    #[test]
    fn a_shard_is_k_of_n_and_is_no_config() {
        let Command::Sync(args) = parse(&["sync", "-c", "r.toml", "--shard", "2/3"]).command else {
            panic!("not sync");
        };
        assert_eq!(args.config.shard.shard, Shard::new(2, 3));
        for bad in ["3/3", "a/b", "0/0", "1"] {
            let error = parse_err(&["sync", "-c", "r.toml", "--shard", bad]);
            assert_eq!(error.kind(), ErrorKind::ValueValidation, "{bad}: {error}");
            assert_eq!(error.exit_code(), 2);
            let shown = error.to_string();
            assert!(shown.contains("--shard") && shown.contains(bad), "{shown}");
        }
        if !runner_config_is_set() {
            for command in ["sync", "run", "services", "state"] {
                let error = parse_err(&[command, "--shard", "1/3"]);
                assert_eq!(
                    error.kind(),
                    ErrorKind::MissingRequiredArgument,
                    "{command}: {error}"
                );
            }
        }
    }

    #[test]
    fn config_paths_are_kept_as_given() {
        let Command::Run(args) = parse(&["run", "--config", "./a b/r.toml"]).command else {
            panic!("not run");
        };
        assert_eq!(args.config.config, [Path::new("./a b/r.toml")]);
    }

    #[test]
    fn config_files_and_folders_repeat_on_every_command() {
        let expected = ConfigArg {
            config: vec![PathBuf::from("a.toml"), PathBuf::from("b.toml")],
            config_dir: vec![PathBuf::from("conf.d")],
            shard: ShardArg {
                shard: Shard::new(1, 3),
            },
        };
        let flags = [
            "--config",
            "a.toml",
            "--config-dir",
            "conf.d",
            "-c",
            "b.toml",
            "--shard",
            "1/3",
        ];
        let with = |command: &[&str]| -> Vec<String> {
            command
                .iter()
                .chain(flags.iter())
                .map(|s| (*s).to_owned())
                .collect()
        };
        let parsed = |command: &[&str], extra: &[&str]| {
            let mut args = with(command);
            args.extend(extra.iter().map(|s| (*s).to_owned()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            parse(&args).command
        };
        let configs = [
            parsed(&["sync"], &[]),
            parsed(&["run"], &[]),
            parsed(&["validate"], &[]),
            parsed(&["state"], &[]),
            parsed(&["state", "reset"], &["--yes"]),
            parsed(&["services"], &[]),
            parsed(&["dead-letter", "show"], &["--sink", "s"]),
            parsed(&["dead-letter", "replay"], &["--sink", "s"]),
        ];
        for command in configs {
            let config = match &command {
                Command::Sync(a) => &a.config,
                Command::Run(a) => &a.config,
                Command::Validate(a) => &a.config,
                Command::State(a) => &a.config,
                Command::StateReset(a) => {
                    assert!(a.yes);
                    &a.config
                }
                Command::Services(a) => &a.config,
                Command::DeadLetterShow(a) => &a.config,
                Command::DeadLetterReplay(a) => &a.config,
                Command::Demo(_) | Command::Completions(_) | Command::Man => {
                    panic!("not a config command")
                }
            };
            assert_eq!(config, &expected, "{command:?}");
        }
        let Command::State(state) = parse(&["state", "--config-dir", "conf.d"]).command else {
            panic!("not state");
        };
        assert_eq!(state.config.config_dir, [PathBuf::from("conf.d")]);
    }
}
