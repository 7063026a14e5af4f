//! The commands: build sources, sinks and the state from a loaded config, run them
//! through the pipeline, and turn the outcome into an exit code.

use crate::config::{Config, ConfigError};
use crate::output::{self, Detail, Level, Stdout};
use crate::progress::ProgressLog;
use crate::signals::{Signals, Stop, outcome_code};
use crate::status_server::StatusServer;
use pipeline::replay::{self, ReplayError};
use pipeline::{
    DeadLetterFile, DryRunPreview, Followed, Mode, Pipeline, Selection, SinkRuntime, SourceFailure,
    SourceRuntime, StateFailure, StateHandle,
};
use sink::SinkSettings;
use source::SourceSettings;
use source::checkpoint::{
    CheckpointStore, Commit, CursorCommit, CursorKey, ResetFilter, ResetTo, StateError, StateLock,
};
use source::{Discover, ModelArtsClient, Shard, SourceError, discovery};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use telemetry::Observer;
use tokio::sync::watch;
use tracing::warn;

/// Exit codes of the contract. When several outcomes apply, the code is the first of 3,
/// 2, 130/143, 1, 0.
pub mod exit {
    /// Everything delivered.
    pub const OK: u8 = 0;
    /// Some service or sink failed; what succeeded is kept.
    pub const FAILED: u8 = 1;
    /// Bad command line or configuration.
    pub const CONFIG: u8 = 2;
    /// Another runner holds the same state file.
    pub const LOCKED: u8 = 3;
    /// `sync` stopped by SIGINT; what was delivered is committed.
    pub const INTERRUPTED: u8 = 130;
    /// `sync` stopped by SIGTERM; what was delivered is committed.
    pub const TERMINATED: u8 = 143;
}

/// Why a command could not do its job; [`AppError::code`] is its exit code.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A command-line value names nothing the config has.
    #[error("{0}")]
    Usage(String),
    /// A source could not be set up from its configuration.
    #[error(transparent)]
    SourceSetup(SourceError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    StateTask(#[from] StateFailure),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// Local I/O a command needs (the demo's folder, its simulator).
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(
        "shutdown_timeout ({0}) passed with a batch still in flight; it will be delivered again on the next run"
    )]
    ShutdownTimeout(String),
    /// Whether `--service` names a followed service could not be found out: a source
    /// that discovers its services could not list them.
    #[error("cannot tell which services source {name} follows: {failure}")]
    SelectionUnknown {
        name: String,
        failure: Box<SourceFailure>,
    },
    /// A signal came before the command did anything.
    #[error("stopped by {} before anything was synced", .0.name())]
    Stopped(Stop),
    /// The reader of stdout went away (`runner state | head -1`): the command stops
    /// quietly with exit 0, as ripgrep does.
    #[error("stdout was closed by its reader")]
    StdoutClosed,
}

impl AppError {
    pub fn code(&self) -> u8 {
        match self {
            AppError::State(StateError::Locked { .. }) => exit::LOCKED,
            AppError::Config(_)
            | AppError::Usage(_)
            | AppError::SourceSetup(_)
            | AppError::State(StateError::OtherShard { .. }) => exit::CONFIG,
            AppError::Stopped(signal) => signal.code(),
            AppError::StdoutClosed => exit::OK,
            _ => exit::FAILED,
        }
    }
}

/// `sync` and `run` arguments that select services.
pub fn check_selection(config: &Config, selection: &Selection) -> Result<(), AppError> {
    if let Some(name) = &selection.source
        && !config.sources.iter().any(|s| &s.name == name)
    {
        return Err(AppError::Usage(format!(
            "--source {name}: no such source in {}",
            config.file.display()
        )));
    }
    for service in &selection.services {
        // A source with `discover` may follow it; that is known only after
        // listing the project's services (see `check_discovered`).
        let followed = selected(config, selection)
            .any(|s| s.services.contains(service) || s.discover.is_some());
        if !followed {
            let listed: Vec<(String, Vec<String>)> = selected(config, selection)
                .map(|s| (s.name.clone(), s.services.clone()))
                .collect();
            return Err(not_followed(service, &listed));
        }
        // A service listed with a known project falls on one shard; naming another
        // shard's service is a mistake, said before anything is touched.
        let shard = config.runner.shard;
        let elsewhere = selected(config, selection)
            .filter(|s| s.discover.is_none() && s.services.contains(service))
            .map(|s| s.project_id.as_deref())
            .collect::<Option<Vec<&str>>>()
            .filter(|projects| {
                !projects.is_empty() && projects.iter().all(|p| !shard.follows(p, service))
            });
        if let Some(projects) = elsewhere {
            let owner = Shard::of(projects[0], service, shard.count());
            return Err(AppError::Usage(format!(
                "--service {service}: the service belongs to shard {owner}/{}, and this runner \
                 is shard {shard} ([runner] shard or --shard); run it with --shard {owner}/{}",
                shard.count(),
                shard.count()
            )));
        }
    }
    Ok(())
}

/// The sources `--source` selects (all of them without it).
fn selected<'c>(
    config: &'c Config,
    selection: &'c Selection,
) -> impl Iterator<Item = &'c SourceSettings> {
    config
        .sources
        .iter()
        .filter(|s| selection.source.as_ref().is_none_or(|n| n == &s.name))
}

/// `--service ID` that no selected source follows, naming those that are followed.
fn not_followed(service: &str, followed: &[(String, Vec<String>)]) -> AppError {
    let named: Vec<String> = followed
        .iter()
        .map(|(source, services)| {
            if services.is_empty() {
                format!("{source}: none")
            } else {
                format!("{source}: {}", services.join(", "))
            }
        })
        .collect();
    AppError::Usage(format!(
        "--service {service}: no selected source follows this service; the followed services are {}",
        named.join("; ")
    ))
}

/// `--service ID`s that no selected source lists in `services`, checked against what the
/// selected sources that `discover` find now: one authentication and one listing each,
/// before the state or any sink is touched, so that a typo is a usage error (exit 2)
/// naming the followed services. A source that cannot be listed (refused credentials)
/// ends the command, since the run would fail on it anyway.
async fn check_discovered(
    config: &Config,
    selection: &Selection,
    signals: &Signals,
) -> Result<(), AppError> {
    let unlisted: Vec<&String> = selection
        .services
        .iter()
        .filter(|id| !selected(config, selection).any(|s| s.services.contains(id)))
        .collect();
    if unlisted.is_empty() {
        return Ok(());
    }
    let discovering: Vec<SourceSettings> = selected(config, selection)
        .filter(|s| s.discover.is_some())
        .cloned()
        .collect();
    let sources = discovering
        .into_iter()
        .map(|settings| {
            let client = ModelArtsClient::new(&settings).map_err(AppError::SourceSetup)?;
            Ok(Arc::new(SourceRuntime::new(settings, client)))
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    let pipeline = Pipeline::new(sources, Vec::new(), 1).with_shard(config.runner.shard);
    let shutdown = signals.shutdown();
    let mut followed: Vec<(String, Vec<String>)> = selected(config, selection)
        .filter(|s| s.discover.is_none())
        .map(|s| (s.name.clone(), s.services.clone()))
        .collect();
    for source in &pipeline.sources {
        let name = source.settings.name.clone();
        match pipeline.follow(source, &shutdown).await {
            Ok(list) => followed.push((
                name,
                list.into_iter().map(|f: Followed| f.service_id).collect(),
            )),
            Err(SourceFailure::Interrupted) => {
                return Err(AppError::Stopped(
                    signals.received().unwrap_or(Stop::Interrupt),
                ));
            }
            Err(failure) => {
                return Err(AppError::SelectionUnknown {
                    name,
                    failure: Box::new(failure),
                });
            }
        }
    }
    for service in unlisted {
        if !followed.iter().any(|(_, ids)| ids.contains(service)) {
            let error = not_followed(service, &followed);
            let shard = config.runner.shard;
            if shard.is_whole() {
                return Err(error);
            }
            return Err(AppError::Usage(format!(
                "{error} (as shard {shard}: the services of other shards are not followed here)"
            )));
        }
    }
    Ok(())
}

/// Reads every secret file of every source once (with tokio), so that a missing or
/// empty one is a configuration error (exit 2) found before the state is touched.
async fn check_secret_files(config: &Config) -> Result<(), AppError> {
    for settings in &config.sources {
        source::read_secret_files(settings)
            .await
            .map_err(AppError::SourceSetup)?;
    }
    Ok(())
}

/// The sink `--sink NAME` names.
fn named_sink<'c>(config: &'c Config, sink: &str) -> Result<&'c SinkSettings, AppError> {
    config.sinks.iter().find(|s| s.name == sink).ok_or_else(|| {
        AppError::Usage(format!(
            "--sink {sink}: no such sink in {}",
            config.file.display()
        ))
    })
}

/// Builds one client per source (reads `token_file`s). Failing here is a
/// configuration error, found before the state is touched.
pub fn build_sources(config: &Config) -> Result<Vec<Arc<SourceRuntime>>, AppError> {
    build_observed_sources(config, &Arc::new(Observer::new()))
}

/// [`build_sources`], whose clients report their requests to `observer`.
fn build_observed_sources(
    config: &Config,
    observer: &Arc<Observer>,
) -> Result<Vec<Arc<SourceRuntime>>, AppError> {
    config
        .sources
        .iter()
        .map(|settings| {
            let client = ModelArtsClient::new(settings)
                .map_err(AppError::SourceSetup)?
                .with_observer(observer.clone());
            Ok(Arc::new(SourceRuntime::new(settings.clone(), client)))
        })
        .collect()
}

/// Everything `sync` and `run` need, with the state locked.
pub struct Delivering {
    pub pipeline: Pipeline,
    pub mode: Arc<Mode>,
    _lock: StateLock,
}

/// Locks and opens the state file, and claims it for this runner's shard (refusing a
/// file that holds another shard's positions).
async fn open_state(config: &Config) -> Result<(StateLock, StateHandle), AppError> {
    let lock = CheckpointStore::lock(&config.state_path)?;
    let (path, busy) = (config.state_path.clone(), config.state_busy_timeout);
    let shard = config.runner.shard;
    let store = StateHandle::new(
        tokio::task::spawn_blocking(move || {
            let mut store = CheckpointStore::open_with_busy_timeout(&path, busy)?;
            store.claim_shard(shard)?;
            Ok::<_, StateError>(store)
        })
        .await
        .map_err(StateFailure::from)??,
    );
    Ok((lock, store))
}

/// How far back a sink recovering its positions from its own output keeps ids: the
/// longest `lookback` of the sources it takes.
fn recovery_window(config: &Config, sink: &SinkSettings) -> std::time::Duration {
    config
        .sources
        .iter()
        .filter(|s| sink.filter.takes_source(&s.name))
        .map(|s| s.lookback)
        .max()
        .unwrap_or_default()
}

/// Builds sources, locks and opens the state, opens the sinks (the file sink recovers
/// against its committed state first).
pub async fn prepare(config: &Config, observer: &Arc<Observer>) -> Result<Delivering, AppError> {
    let sources = build_observed_sources(config, observer)?;
    let (lock, state) = open_state(config).await?;
    let mut sinks = Vec::with_capacity(config.sinks.len());
    for settings in &config.sinks {
        let window = recovery_window(config, settings);
        sinks.push(Arc::new(SinkRuntime::open(settings, &state, window).await?));
    }
    Ok(Delivering {
        pipeline: Pipeline::new(sources, sinks, config.runner.concurrency)
            .with_shard(config.runner.shard)
            .with_observer(observer.clone()),
        mode: Arc::new(Mode::Deliver { state }),
        _lock: lock,
    })
}

async fn flush_sinks(pipeline: &Pipeline) {
    for sink in &pipeline.sinks {
        if let Some(handle) = sink.sink()
            && let Err(e) = handle.flush().await
        {
            warn!(sink = %sink.name, error = %e, "Flush failed.");
        }
    }
}

/// Waits for `run` to end; after the first signal, at most `timeout` more. `None`: the
/// time ran out with work still in flight.
async fn within_shutdown_timeout<F: std::future::Future>(
    run: F,
    shutdown: &watch::Receiver<bool>,
    timeout: std::time::Duration,
) -> Option<F::Output> {
    tokio::pin!(run);
    let mut stopping = shutdown.clone();
    tokio::select! {
        outcome = &mut run => Some(outcome),
        Ok(_) = stopping.wait_for(|stop| *stop) => {
            tokio::time::timeout(timeout, &mut run).await.ok()
        }
    }
}

/// `runner sync --dry-run`, and the one sink `--sink NAME` previews.
#[derive(Debug, Clone, Default)]
pub struct DryRun {
    pub sink: Option<String>,
}

/// `runner sync`; `dry_run`: print what would be delivered instead.
pub async fn sync(
    config: &Config,
    selection: Selection,
    dry_run: Option<DryRun>,
    metrics_file: Option<PathBuf>,
) -> Result<u8, AppError> {
    check_selection(config, &selection)?;
    let previewed = match dry_run.as_ref().and_then(|d| d.sink.as_deref()) {
        Some(name) => Some(named_sink(config, name)?),
        None => None,
    };
    check_secret_files(config).await?;
    let signals = Signals::listen();
    check_discovered(config, &selection, &signals).await?;
    if dry_run.is_some() {
        return dry_run_sync(config, &selection, previewed, &signals).await;
    }
    let observer = Arc::new(Observer::new());
    let delivering = prepare(config, &observer).await?;
    let shutdown = signals.shutdown();
    let started = Instant::now();
    let progress = ProgressLog::start(observer.clone());
    let outcome = within_shutdown_timeout(
        delivering
            .pipeline
            .sync(&delivering.mode, &selection, shutdown.clone()),
        &shutdown,
        config.runner.shutdown_timeout,
    )
    .await;
    progress.stop();
    flush_sinks(&delivering.pipeline).await;
    let all_delivered = match outcome {
        Some(outcome) => output::report(&outcome, started.elapsed(), Detail::Full),
        None => {
            let timeout = humantime::format_duration(config.runner.shutdown_timeout);
            output::always(
                Level::Error,
                &format!("error: {}", AppError::ShutdownTimeout(timeout.to_string())),
            );
            false
        }
    };
    let code = outcome_code(signals.received(), all_delivered);
    if let Some(path) = metrics_file
        && let Err(e) = write_metrics_file(&path, &observer.textfile())
    {
        output::always(Level::Error, &format!("error: {e}"));
        return Ok(code.max(exit::FAILED));
    }
    Ok(code)
}

/// Writes `text` to `path` atomically: a temporary file in the same folder, fsynced,
/// then renamed over `path`, so that node-exporter never reads half a file.
fn write_metrics_file(path: &std::path::Path, text: &str) -> Result<(), AppError> {
    use std::io::Write;
    let io = |source| AppError::Io {
        what: format!("--metrics-file {}: cannot write it", path.display()),
        source,
    };
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".metrics-")
        .suffix(".tmp")
        .tempfile_in(folder)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.as_file().sync_all().map_err(io)?;
    file.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// `runner sync --dry-run`: every sink's records as JSON lines, or, with `--sink NAME`
/// (`previewed`), only what that sink would receive, rendered by its kind.
async fn dry_run_sync(
    config: &Config,
    selection: &Selection,
    previewed: Option<&SinkSettings>,
    signals: &Signals,
) -> Result<u8, AppError> {
    let sources = build_sources(config)?;
    let path = config.state_path.clone();
    let shard = config.runner.shard;
    let store = tokio::task::spawn_blocking(move || {
        let store = CheckpointStore::open_read_only(&path)?;
        if let Some(store) = &store {
            store.check_shard(shard)?;
        }
        Ok::<_, StateError>(store)
    })
    .await
    .map_err(StateFailure::from)??;
    let sinks = match previewed {
        Some(settings) => vec![Arc::new(SinkRuntime::dry(settings))],
        None => config
            .sinks
            .iter()
            .map(|s| Arc::new(SinkRuntime::dry(s)))
            .collect(),
    };
    let preview = previewed.map(|settings| {
        Arc::new(DryRunPreview::new(
            settings.config.clone(),
            settings.options.batch.max_events,
        ))
    });
    let pipeline =
        Pipeline::new(sources, sinks, config.runner.concurrency).with_shard(config.runner.shard);
    let mode = Arc::new(Mode::DryRun {
        state: store.map(StateHandle::new),
        preview: preview.clone(),
    });
    let shutdown = signals.shutdown();
    let started = Instant::now();
    let outcome = within_shutdown_timeout(
        pipeline.sync(&mode, selection, shutdown.clone()),
        &shutdown,
        config.runner.shutdown_timeout,
    )
    .await;
    if let Some(preview) = &preview {
        preview.finish();
    }
    let all_printed =
        outcome.is_some_and(|outcome| output::report(&outcome, started.elapsed(), Detail::Full));
    Ok(outcome_code(signals.received(), all_printed))
}

/// `runner run`: sync every `interval` until SIGINT/SIGTERM (then exit 0; a second signal
/// exits at once with 130 or 143).
pub async fn run(config: &Config) -> Result<u8, AppError> {
    check_secret_files(config).await?;
    let signals = Signals::listen();
    let observer = Arc::new(Observer::new());
    // Bound before anything else, so that a taken port fails at once.
    let server = match config.runner.listen {
        Some(addr) => {
            Some(StatusServer::start(addr, observer.clone(), config.runner.unhealthy_after).await?)
        }
        None => None,
    };
    output::starting(config, server.as_ref().map(|s| s.addr));
    let delivering = prepare(config, &observer).await?;
    let shutdown = signals.shutdown();
    let selection = Selection::default();
    let _progress = ProgressLog::start(observer.clone());
    loop {
        let started = Instant::now();
        let outcome = within_shutdown_timeout(
            delivering
                .pipeline
                .sync(&delivering.mode, &selection, shutdown.clone()),
            &shutdown,
            config.runner.shutdown_timeout,
        )
        .await;
        let Some(outcome) = outcome else {
            flush_sinks(&delivering.pipeline).await;
            return Err(AppError::ShutdownTimeout(
                humantime::format_duration(config.runner.shutdown_timeout).to_string(),
            ));
        };
        output::report(&outcome, started.elapsed(), Detail::Cycle);
        if *shutdown.borrow() {
            break;
        }
        let mut stopping = shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(config.runner.interval) => {}
            _ = stopping.wait_for(|stop| *stop) => break,
        }
    }
    flush_sinks(&delivering.pipeline).await;
    Ok(exit::OK)
}

/// `runner validate [--check]`. With `--check`, every source and every sink is checked
/// at once (a source that cannot be reached costs its own retries, not the others'), and
/// the lines are printed in the config's order when all are done: each source
/// authenticates with the same probe `sync` starts with and then looks up every service
/// listed in `services`; each sink runs its healthcheck; the state file is checked.
pub async fn validate(config: &Config, check: bool) -> Result<u8, AppError> {
    output::always(
        Level::Info,
        &format!(
            "{}: configuration is valid ({} source(s), {} sink(s){}).",
            config.file.display(),
            config.sources.len(),
            config.sinks.len(),
            if config.runner.shard.is_whole() {
                String::new()
            } else {
                format!(", shard {}", config.runner.shard)
            }
        ),
    );
    if !check {
        return Ok(exit::OK);
    }
    let sources = build_sources(config)?;
    let source_checks = futures_util::future::join_all(sources.iter().map(|s| check_source(s)));
    let sink_checks = futures_util::future::join_all(config.sinks.iter().map(check_sink));
    let (sources_checked, sinks_checked) = tokio::join!(source_checks, sink_checks);
    let mut ok = true;
    for (level, line) in sources_checked.into_iter().chain(sinks_checked).flatten() {
        ok &= level != Level::Error;
        output::always(level, &line);
    }
    // The state file, if there is one yet: readable by this runner, intact, and this
    // shard's.
    let path = config.state_path.clone();
    let shard = config.runner.shard;
    let state = tokio::task::spawn_blocking(move || {
        CheckpointStore::open_read_only(&path).and_then(|store| {
            store
                .map(|s| s.check_integrity().and_then(|()| s.check_shard(shard)))
                .transpose()
        })
    })
    .await
    .map_err(StateFailure::from)?;
    match state {
        Ok(Some(())) => output::always(
            Level::Info,
            &format!("state {}: intact.", config.state_path.display()),
        ),
        Ok(None) => output::always(
            Level::Info,
            &format!(
                "state {}: not created yet (the first sync creates it).",
                config.state_path.display()
            ),
        ),
        Err(e) => {
            ok = false;
            output::always(Level::Error, &format!("state: FAILED: {e}"));
        }
    }
    Ok(if ok { exit::OK } else { exit::FAILED })
}

/// What `validate --check` says about one source, each line with its level (a failure
/// is an error): the authentication probe, then each service listed in `services` looked
/// up in the project's services list (a missing one would fail every sync with
/// `ModelArts.3502`).
async fn check_source(source: &SourceRuntime) -> Vec<(Level, String)> {
    let name = &source.settings.name;
    let kind = source.client.auth_kind();
    if let Err(e) = source.client.authenticate().await {
        // The error says what failed; the label says whom to blame.
        let what = match e {
            SourceError::Unreachable { .. } => "FAILED (endpoint unreachable)",
            SourceError::TimedOut { .. } => "FAILED (no answer)",
            _ => "FAILED",
        };
        return vec![(Level::Error, format!("source {name}: {what}: {e}"))];
    }
    let mut lines = vec![(
        Level::Info,
        format!(
            "source {name}: reached {} and authenticated ({kind}).",
            source.settings.endpoint
        ),
    )];
    let listed_ids = &source.settings.services;
    if listed_ids.is_empty() {
        return lines;
    }
    let listed = match discovery::list_services(&source.client, source.settings.page_size).await {
        Ok(listed) => listed,
        Err(e) => {
            lines.push((
                Level::Error,
                format!(
                    "source {name}: FAILED: cannot list the project's services to check \
                     `services`: {e}"
                ),
            ));
            return lines;
        }
    };
    for id in listed_ids {
        lines.push(match listed.iter().find(|s| &s.service_id == id) {
            Some(s) => (
                Level::Info,
                format!(
                    "source {name}: service {id} ({}, {}): found.",
                    s.service_name, s.status
                ),
            ),
            None => (
                Level::Error,
                format!(
                    "source {name}: service {id}: FAILED: project {} has no such service \
                     (listed in sources.{name}.services; a sync would fail for it with \
                     ModelArts.3502)",
                    source.client.project_id()
                ),
            ),
        });
    }
    lines
}

/// What `validate --check` says about one sink (its healthcheck), with its level.
async fn check_sink(settings: &SinkSettings) -> Vec<(Level, String)> {
    let (name, kind) = (&settings.name, settings.kind());
    if !settings.options.healthcheck {
        let line =
            format!("sink {name} ({kind}): healthcheck disabled (healthcheck.enabled = false).");
        return vec![(Level::Info, line)];
    }
    match settings.config.check(name).await {
        Ok(()) => vec![(Level::Info, format!("sink {name} ({kind}): ready."))],
        Err(e) => vec![(Level::Error, format!("sink {name}: FAILED: {e}"))],
    }
}

/// `runner state [--json]`.
pub async fn show_state(config: &Config, json: bool) -> Result<u8, AppError> {
    let mut out = Stdout::lock();
    let path = config.state_path.clone();
    let store = tokio::task::spawn_blocking(move || CheckpointStore::open_read_only(&path))
        .await
        .map_err(StateFailure::from)??;
    let Some(store) = store else {
        if json {
            out.line(format_args!(
                "{}",
                serde_json::json!({"state": config.state_path.display().to_string(), "shard": null, "positions": [], "files": [], "sinks": []})
            ))?;
        } else {
            output::say(
                Level::Info,
                &format!(
                    "{}: no state yet (nothing has been synced).",
                    config.state_path.display()
                ),
            );
        }
        out.finish()?;
        return Ok(exit::OK);
    };
    let rows = store.positions()?;
    let sink_rows = store.sink_states()?;
    // `None`: no writer recorded one (a new file, or an older release's: 0/1).
    let shard = store.shard()?;
    // Per configured sink: kind, dead-lettered so far, entries in its dead-letter file now,
    // and for file sinks the committed (path, length).
    let mut sinks = Vec::new();
    let mut files = Vec::new();
    for settings in &config.sinks {
        let row = sink_rows.iter().find(|r| r.sink == settings.name);
        let dead_letter = DeadLetterFile::for_sink(settings);
        let pending = tokio::task::spawn_blocking(move || dead_letter.read())
            .await
            .map_err(StateFailure::from)?
            .map(|d| d.entries.len())
            .unwrap_or(0);
        sinks.push((
            settings.name.clone(),
            settings.kind(),
            row.map_or(0, |r| r.dead_lettered),
            settings.options.dead_letter_path.clone(),
            pending,
        ));
        if let Some(file) = row
            .filter(|r| r.kind == "file")
            .and_then(|r| r.state.as_deref())
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        {
            files.push((
                settings.name.clone(),
                file["path"].as_str().unwrap_or_default().to_owned(),
                file["len"].as_u64().unwrap_or_default(),
            ));
        }
    }
    let time = |ms: Option<i64>| {
        ms.map(record::timestamp_rfc3339)
            .unwrap_or_else(|| "-".to_owned())
    };
    if json {
        let positions: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "source": r.source, "service_id": r.service_id, "sink": r.sink,
                    "position": r.position, "position_time": r.position.map(record::timestamp_rfc3339),
                    "since": r.since, "fingerprints": r.fingerprints, "updated_at": r.updated_at,
                })
            })
            .collect();
        let files: Vec<_> = files
            .iter()
            .map(|(sink, path, len)| serde_json::json!({"sink": sink, "path": path, "committed_bytes": len}))
            .collect();
        let sinks: Vec<_> = sinks
            .iter()
            .map(|(sink, kind, dead_lettered, path, pending)| {
                serde_json::json!({
                    "sink": sink, "kind": kind, "dead_lettered": dead_lettered,
                    "dead_letter_path": path.display().to_string(), "dead_letter_entries": pending,
                })
            })
            .collect();
        out.line(format_args!(
            "{}",
            serde_json::json!({"state": config.state_path.display().to_string(),
                "shard": shard.map(|s| s.to_string()),
                "positions": positions, "files": files, "sinks": sinks})
        ))?;
        out.finish()?;
        return Ok(exit::OK);
    }
    out.line(format_args!(
        "{:<12} {:<38} {:<12} {:<26} {:<26} {:>6}",
        "SOURCE", "SERVICE", "SINK", "POSITION", "SINCE", "IDS"
    ))?;
    for r in &rows {
        let since = if r.since <= 0 {
            "beginning".to_owned()
        } else {
            time(Some(r.since))
        };
        out.line(format_args!(
            "{:<12} {:<38} {:<12} {:<26} {:<26} {:>6}",
            r.source,
            r.service_id,
            r.sink,
            time(r.position),
            since,
            r.fingerprints
        ))?;
    }
    for (sink, path, len) in &files {
        out.line(format_args!(
            "file sink {sink}: {path}, {len} bytes committed"
        ))?;
    }
    if let Some(shard) = shard.filter(|s| !s.is_whole()) {
        out.line(format_args!(
            "shard {shard}: these are the positions of shard {shard}'s services"
        ))?;
    }
    for (sink, kind, dead_lettered, path, pending) in &sinks {
        if *dead_lettered > 0 || *pending > 0 {
            out.line(format_args!(
                "sink {sink} ({kind}): {dead_lettered} record(s) dead-lettered so far; {pending} entr{} in {}",
                if *pending == 1 { "y" } else { "ies" },
                path.display()
            ))?;
        }
    }
    out.finish()?;
    Ok(exit::OK)
}

/// `runner state reset`. Shows what it will reset, on stderr; on a terminal (stdin and
/// stderr) asks first unless `yes`. Without a terminal it does not ask, so that scripts
/// and cron keep working. A `--source`, `--service` or `--sink` that matches no position
/// (and, with `--to`, no position to create) is a usage error: a typo must not look like
/// a successful reset.
pub async fn reset_state(
    config: &Config,
    filter: ResetFilter,
    to: Option<ResetTo>,
    yes: bool,
) -> Result<u8, AppError> {
    // A typo must not look like a successful reset: names are checked
    // against the config before the state is touched.
    check_selection(
        config,
        &Selection {
            source: filter.source.clone(),
            services: filter.service_id.iter().cloned().collect(),
        },
    )?;
    if let Some(sink) = &filter.sink {
        named_sink(config, sink)?;
    }
    let to_kind = to.unwrap_or(ResetTo::Delete);
    let matches = |source: &str, service_id: &str, sink: &str| {
        filter.source.as_deref().is_none_or(|s| s == source)
            && filter.service_id.as_deref().is_none_or(|s| s == service_id)
            && filter.sink.as_deref().is_none_or(|s| s == sink)
    };
    // A reset of some positions keeps the file's shard, so it must be this runner's; a
    // reset of all of them gives the file to this runner's shard (resharding in place).
    let filtered = filter.source.is_some() || filter.service_id.is_some() || filter.sink.is_some();
    let shard = config.runner.shard;
    // The preview reads the state without creating it: a reset that matches nothing
    // leaves no file behind.
    let path = config.state_path.clone();
    let existing = tokio::task::spawn_blocking(move || {
        let store = CheckpointStore::open_read_only(&path)?;
        if filtered && let Some(store) = &store {
            store.check_shard(shard)?;
        }
        Ok::<_, StateError>(store)
    })
    .await
    .map_err(StateFailure::from)??
    .map(|store| store.positions())
    .transpose()?
    .unwrap_or_default();
    let matched: Vec<_> = existing
        .iter()
        .filter(|r| matches(&r.source, &r.service_id, &r.sink))
        .collect();
    // `--to` also applies to cursors that do not exist yet, so that
    // "reset --to now" on a new config starts there.
    let mut to_create: Vec<CursorKey> = Vec::new();
    if let ResetTo::Since(_) = to_kind {
        let known: HashSet<(&str, &str, &str)> = existing
            .iter()
            .map(|r| (r.source.as_str(), r.service_id.as_str(), r.sink.as_str()))
            .collect();
        for source in &config.sources {
            // Only this shard's services (when the project is known before login).
            let here = |service: &String| {
                source
                    .project_id
                    .as_deref()
                    .is_none_or(|project| shard.follows(project, service))
            };
            for service in source.services.iter().filter(|s| here(s)) {
                for sink in &config.sinks {
                    if matches(&source.name, service, &sink.name)
                        && sink.filter.takes_source(&source.name)
                        && !known.contains(&(&source.name, service, &sink.name))
                    {
                        to_create.push(CursorKey {
                            source: source.name.clone(),
                            service_id: service.clone(),
                            sink: sink.name.clone(),
                        });
                    }
                }
            }
        }
    }
    if filtered && matched.is_empty() && to_create.is_empty() {
        let flags: Vec<String> = [
            ("--source", &filter.source),
            ("--service", &filter.service_id),
            ("--sink", &filter.sink),
        ]
        .into_iter()
        .filter_map(|(flag, value)| value.as_ref().map(|v| format!("{flag} {v}")))
        .collect();
        return Err(AppError::Usage(format!(
            "{}: no position in {} matches, so there is nothing to reset ({}); `runner state` \
             lists the positions",
            flags.join(" "),
            config.state_path.display(),
            if existing.is_empty() {
                "the state has no positions yet".to_owned()
            } else {
                format!("it holds {} position(s)", existing.len())
            }
        )));
    }

    let when = match to_kind {
        ResetTo::Delete => "forgotten (start_at applies again)".to_owned(),
        ResetTo::Since(ms) => format!("start again at {}", record::timestamp_rfc3339(ms)),
    };
    let total = matched.len() + to_create.len();
    if total > 0 {
        output::always(
            Level::Info,
            &format!(
                "state reset: {total} position(s) in {} will be {when}:",
                config.state_path.display()
            ),
        );
        output::always(
            Level::Info,
            &format!(
                "  {:<12} {:<38} {:<12} {:<26}",
                "SOURCE", "SERVICE", "SINK", "POSITION"
            ),
        );
        for r in &matched {
            let position = r
                .position
                .map_or_else(|| "-".to_owned(), record::timestamp_rfc3339);
            output::always(
                Level::Info,
                &format!(
                    "  {:<12} {:<38} {:<12} {:<26}",
                    r.source, r.service_id, r.sink, position
                ),
            );
        }
        for key in &to_create {
            output::always(
                Level::Info,
                &format!(
                    "  {:<12} {:<38} {:<12} {:<26}",
                    key.source, key.service_id, key.sink, "(new)"
                ),
            );
        }
        if !yes && interactive() && !confirm(total).await? {
            output::always(Level::Info, "Nothing was reset.");
            return Ok(exit::FAILED);
        }
    }

    let _lock = CheckpointStore::lock(&config.state_path)?;
    let mut store =
        CheckpointStore::open_with_busy_timeout(&config.state_path, config.state_busy_timeout)?;
    if filtered {
        store.claim_shard(shard)?;
    }
    let changed = store.reset(&filter, to_kind)?;
    if !filtered {
        let before = store.shard()?;
        store.record_shard(shard)?;
        if before.is_some_and(|before| before != shard) {
            output::say(
                Level::Info,
                &format!(
                    "{}: the state now holds shard {shard}'s positions (it held shard {}'s).",
                    config.state_path.display(),
                    before.map(|b| b.to_string()).unwrap_or_default()
                ),
            );
        }
    }
    let mut created = 0;
    if let ResetTo::Since(ms) = to_kind {
        let mut cursors = Vec::new();
        for key in to_create {
            // Another runner may have created it between the preview and the lock.
            if store.cursor(&key)?.is_none() {
                cursors.push(CursorCommit {
                    key,
                    since: ms,
                    position: None,
                    add_fingerprints: Vec::new(),
                    prune_below: None,
                });
            }
        }
        created = cursors.len();
        store.commit(&Commit {
            cursors,
            ..Commit::default()
        })?;
    }
    output::say(
        Level::Info,
        &format!(
            "Reset {} position(s){}.",
            changed + created,
            match to_kind {
                ResetTo::Delete => " (forgotten: start_at applies again)".to_owned(),
                ResetTo::Since(ms) => format!(" to {}", record::timestamp_rfc3339(ms)),
            }
        ),
    );
    Ok(exit::OK)
}

/// Whether a person is at the keyboard: stdin and stderr (where the question goes) are
/// both terminals.
fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Asks on stderr whether to reset `total` positions; only `y` or `yes` says yes.
async fn confirm(total: usize) -> Result<bool, AppError> {
    use std::io::Write;
    eprint!("Reset these {total} position(s)? [y/N] ");
    let _ = std::io::stderr().flush();
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(StateFailure::from)?;
    // An unreadable stdin (closed, not text) is not a yes.
    let answer = answer.unwrap_or_default();
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// `runner services`: which services each source follows, and why. A sharded runner
/// names the shard of each service and follows only its own.
pub async fn services(config: &Config) -> Result<u8, AppError> {
    let shard = config.runner.shard;
    check_secret_files(config).await?;
    let sources = build_sources(config)?;
    let mut out = Stdout::lock();
    let mut ok = true;
    for source in &sources {
        let name = &source.settings.name;
        let settings = &source.settings;
        if let Err(e) = source.client.authenticate().await {
            ok = false;
            // The error names the auth kind (or the unreachable endpoint) itself.
            out.line(format_args!("source {name}: {e}"))?;
            continue;
        }
        let project_id = source.client.project_id();
        out.line(format_args!(
            "source {name} (project {project_id}, {}, auth {}){}:",
            settings.endpoint,
            source.client.auth_kind(),
            if shard.is_whole() {
                String::new()
            } else {
                format!(", as shard {shard}")
            }
        ))?;
        // "followed: why" on this shard; "not followed: shard k/N's (why)" on another.
        let on_shard = |service_id: &str, why: String| {
            if shard.is_whole() {
                return format!("followed: {why}");
            }
            let owner = Shard::of(&project_id, service_id, shard.count());
            if owner == shard.index() {
                format!("followed: {why}; shard {shard}")
            } else {
                format!("not followed: shard {owner}/{}'s ({why})", shard.count())
            }
        };
        let listed = match discovery::list_services(&source.client, settings.page_size).await {
            Ok(listed) => listed,
            Err(e) => {
                ok = false;
                out.line(format_args!("  cannot list the project's services: {e}"))?;
                Vec::new()
            }
        };
        for id in &settings.services {
            match listed.iter().find(|s| &s.service_id == id) {
                Some(s) => out.line(format_args!(
                    "  {id}  {}  [{}]  {}",
                    s.service_name,
                    s.status,
                    on_shard(id, "listed in `services`".to_owned())
                ))?,
                None => {
                    let why = on_shard(id, "listed in `services`".to_owned());
                    // Only this shard's sync fails for it.
                    ok &= why.starts_with("not followed");
                    out.line(format_args!(
                        "  {id}  {why}, but the project has no such service (a sync fails for it)"
                    ))?;
                }
            }
        }
        for s in listed
            .iter()
            .filter(|s| !settings.services.contains(&s.service_id))
        {
            let why = match &settings.discover {
                None => "not followed: not listed in `services` and no `discover`".to_owned(),
                Some(d) if discovery::matches(d, s) => {
                    on_shard(&s.service_id, format!("matches discover {}", describe(d)))
                }
                Some(d) => format!("not followed: does not match discover {}", describe(d)),
            };
            out.line(format_args!(
                "  {}  {}  [{}]  {why}",
                s.service_id, s.service_name, s.status
            ))?;
        }
    }
    out.finish()?;
    Ok(if ok { exit::OK } else { exit::FAILED })
}

/// `discover` as the user wrote it.
fn describe(discover: &Discover) -> String {
    let mut parts = Vec::new();
    if let Some(name) = &discover.name {
        parts.push(format!("name = {name:?}"));
    }
    if !discover.status.is_empty() {
        parts.push(format!("status = {:?}", discover.status));
    }
    if parts.is_empty() {
        return "{} (every service)".to_owned();
    }
    format!("{{ {} }}", parts.join(", "))
}

/// `runner dead-letter show`: the entries of a sink's dead-letter file, one per line
/// (or the raw JSON lines with `--json`, on stdout for `jq`).
pub async fn dead_letter_show(config: &Config, sink: &str, json: bool) -> Result<u8, AppError> {
    let file = DeadLetterFile::for_sink(named_sink(config, sink)?);
    let path: PathBuf = file.path().to_owned();
    let found = tokio::task::spawn_blocking(move || file.read())
        .await
        .map_err(StateFailure::from)?
        .map_err(|e| AppError::Replay(ReplayError::DeadLetter(e)))?;
    let mut out = Stdout::lock();
    if json {
        for (_, entry) in &found.entries {
            out.line(format_args!(
                "{}",
                serde_json::json!({
                    "record": entry.record, "sink": entry.sink, "reason": entry.reason,
                    "status": entry.status, "time": entry.time,
                })
            ))?;
        }
    } else {
        for (line, entry) in &found.entries {
            let status = entry
                .status
                .map_or_else(|| "-".to_owned(), |s| s.to_string());
            out.line(format_args!(
                "{line:>6}  {}  {status:>3}  {}/{} {}  {}  {}",
                entry.time,
                entry.record.source,
                entry.record.service_id,
                entry.record.timestamp,
                entry.record.id,
                entry.reason
            ))?;
        }
    }
    out.finish()?;
    for (line, _) in &found.unreadable {
        output::say(
            Level::Warn,
            &format!(
                "{}:{line}: not a dead-letter entry (a line torn by a crash, or foreign text); kept as it is",
                path.display()
            ),
        );
    }
    output::say(
        Level::Info,
        &format!(
            "{}: {} entr{}.",
            path.display(),
            found.entries.len(),
            if found.entries.len() == 1 { "y" } else { "ies" }
        ),
    );
    Ok(exit::OK)
}

/// `runner dead-letter replay`: offers a sink's dead-lettered records to it again.
pub async fn dead_letter_replay(config: &Config, sink: &str) -> Result<u8, AppError> {
    let settings = named_sink(config, sink)?;
    let (_lock, state) = open_state(config).await?;
    let runtime = SinkRuntime::open(settings, &state, recovery_window(config, settings)).await?;
    let signals = Signals::listen();
    let done = replay::replay(&runtime, &state, signals.shutdown()).await?;
    if let Some(handle) = runtime.sink()
        && let Err(e) = handle.flush().await
    {
        warn!(sink = %runtime.name, error = %e, "Flush failed.");
    }
    output::say(
        Level::Info,
        &format!(
            "sink {sink}: offered {}, accepted {} (removed from {}), refused again {}, kept {}{}",
            done.offered,
            done.accepted,
            runtime.dead_letter.path().display(),
            done.refused,
            done.kept,
            if done.unreadable > 0 {
                format!(", {} unreadable line(s) kept", done.unreadable)
            } else {
                String::new()
            }
        ),
    );
    if let Some(failure) = &done.failure {
        output::say(
            Level::Error,
            &format!("sink {sink}: FAILED: {failure}; the entries not accepted stay in the file"),
        );
    }
    Ok(if done.failure.is_none() && done.refused == 0 {
        exit::OK
    } else {
        exit::FAILED
    })
}
