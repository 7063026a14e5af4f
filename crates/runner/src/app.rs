//! The commands: build sources, sinks and the state from a loaded config,
//! run them, and turn the outcome into an exit code.

use crate::config::{Config, SinkKind, StdoutFormat as ConfigFormat};
use crate::pipeline::{Mode, Pipeline, RunReport, Selection, SinkLane, SourceRuntime, StateHandle};
use sink::{FileCheckpoint, FileSink, Recovery, Sink, StdoutFormat, StdoutSink};
use source::checkpoint::{
    CheckpointStore, Commit, CursorCommit, CursorKey, FileOffset, ResetFilter, ResetTo, StateError,
    StateLock,
};
use source::{Discover, ModelArtsClient, ServerModel, discovery};
use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tracing::{error, info, warn};

/// Exit codes of the contract.
pub mod exit {
    /// Everything delivered.
    pub const OK: u8 = 0;
    /// Some service or sink failed; what succeeded is kept.
    pub const FAILED: u8 = 1;
    /// Bad command line or configuration.
    pub const CONFIG: u8 = 2;
    /// Another runner holds the same state file.
    pub const LOCKED: u8 = 3;
    /// `sync` interrupted by SIGINT; what was delivered is committed.
    pub const INTERRUPTED: u8 = 130;
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct AppError {
    pub code: u8,
    pub message: String,
}

impl AppError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        AppError {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<StateError> for AppError {
    fn from(e: StateError) -> Self {
        let code = if matches!(e, StateError::Locked { .. }) {
            exit::LOCKED
        } else {
            exit::FAILED
        };
        AppError::new(code, e.to_string())
    }
}

/// `sync` and `run` arguments that select services.
pub fn check_selection(config: &Config, selection: &Selection) -> Result<(), AppError> {
    if let Some(name) = &selection.source
        && !config.sources.iter().any(|s| &s.name == name)
    {
        return Err(AppError::new(
            exit::CONFIG,
            format!(
                "--source {name}: no such source in {}",
                config.file.display()
            ),
        ));
    }
    for service in &selection.services {
        // A source with `discover` may follow it; that is known only after
        // listing the project's services, so the run itself checks it.
        let followed = config
            .sources
            .iter()
            .filter(|s| selection.source.as_ref().is_none_or(|n| n == &s.name))
            .any(|s| s.services.contains(service) || s.discover.is_some());
        if !followed {
            return Err(AppError::new(
                exit::CONFIG,
                format!("--service {service}: no selected source follows this service"),
            ));
        }
    }
    Ok(())
}

/// Builds one client per source (reads `token_file`s). Failing here is a
/// configuration error, found before the state is touched.
pub fn build_sources(config: &Config) -> Result<Vec<SourceRuntime>, AppError> {
    config
        .sources
        .iter()
        .map(|settings| {
            let client = ModelArtsClient::new(settings)
                .map_err(|e| AppError::new(exit::CONFIG, e.to_string()))?;
            Ok(SourceRuntime {
                settings: settings.clone(),
                client: Arc::new(client),
                model: Arc::new(Mutex::new(ServerModel::default())),
            })
        })
        .collect()
}

fn stdout_format(format: ConfigFormat) -> StdoutFormat {
    match format {
        ConfigFormat::Json => StdoutFormat::Json,
        ConfigFormat::Text => StdoutFormat::Text,
    }
}

/// Lanes without sinks, for `--dry-run`.
pub fn dry_run_lanes(config: &Config) -> Vec<Arc<SinkLane>> {
    config
        .sinks
        .iter()
        .map(|s| Arc::new(SinkLane::new(&s.name, None, s.filter(), None)))
        .collect()
}

/// Opens every sink. The file sink recovers against its committed length
/// (cutting an uncommitted tail) and the new length is committed at once.
pub async fn open_sinks(
    config: &Config,
    state: &StateHandle,
) -> Result<Vec<Arc<SinkLane>>, AppError> {
    let mut lanes = Vec::new();
    for settings in &config.sinks {
        let filter = settings.filter();
        let lane = match &settings.kind {
            SinkKind::Stdout { format } => {
                let sink: Arc<dyn Sink> =
                    Arc::new(StdoutSink::new(&settings.name, stdout_format(*format)));
                SinkLane::new(&settings.name, Some(sink), filter, None)
            }
            SinkKind::File { path } => {
                let path_text = path.display().to_string();
                let stored = state
                    .file_offset(settings.name.clone())
                    .await
                    .map_err(|e| AppError::new(exit::FAILED, e))?;
                // A checkpoint for another path (the config changed) says
                // nothing about this file.
                let committed = stored
                    .filter(|(stored_path, _)| stored_path == &path_text)
                    .map(|(_, o)| FileCheckpoint {
                        len: o.len,
                        dev: o.dev,
                        ino: o.ino,
                    });
                let name = settings.name.clone();
                let open_path = path.clone();
                let opened = tokio::task::spawn_blocking(move || {
                    FileSink::open(&name, &open_path, committed)
                })
                .await
                .map_err(|e| AppError::new(exit::FAILED, format!("sink {}: {e}", settings.name)))?;
                let (sink, checkpoint, recovery) = match opened {
                    Ok(opened) => opened,
                    Err(e) => {
                        // One sink's trouble stays its own: the others go on
                        // and this one keeps its position for the next run.
                        error!(sink = %settings.name, error = %e, "Cannot open the file sink; it receives nothing this run.");
                        lanes.push(Arc::new(SinkLane::broken(
                            &settings.name,
                            filter,
                            e.to_string(),
                        )));
                        continue;
                    }
                };
                match &recovery {
                    Recovery::CutTail { committed, found } => warn!(
                        sink = %settings.name, path = %path_text, committed, found,
                        "Cut an uncommitted tail left by an interrupted run; those events will be delivered again."
                    ),
                    Recovery::StartedAfresh { reason } => warn!(
                        sink = %settings.name, path = %path_text, %reason, "Starting the file afresh."
                    ),
                    Recovery::Created | Recovery::Resumed => {}
                }
                if committed != Some(checkpoint) {
                    let FileCheckpoint { len, dev, ino } = checkpoint;
                    state
                        .commit(Commit {
                            cursors: Vec::new(),
                            files: vec![(
                                settings.name.clone(),
                                path_text.clone(),
                                FileOffset { len, dev, ino },
                            )],
                        })
                        .await
                        .map_err(|e| AppError::new(exit::FAILED, e))?;
                }
                let sink: Arc<dyn Sink> = Arc::new(sink);
                SinkLane::new(&settings.name, Some(sink), filter, Some(path_text))
            }
        };
        lanes.push(Arc::new(lane));
    }
    Ok(lanes)
}

/// Everything `sync` and `run` need, with the state locked.
pub struct Delivering {
    pub pipeline: Pipeline,
    pub mode: Arc<Mode>,
    _lock: StateLock,
}

/// Builds sources, locks and opens the state, opens the sinks.
pub async fn prepare(config: &Config) -> Result<Delivering, AppError> {
    let sources = build_sources(config)?;
    let lock = CheckpointStore::lock(&config.state_path)?;
    let path = config.state_path.clone();
    let store = tokio::task::spawn_blocking(move || CheckpointStore::open(&path))
        .await
        .map_err(|e| AppError::new(exit::FAILED, format!("state: {e}")))??;
    let state = StateHandle::new(store);
    let sinks = open_sinks(config, &state).await?;
    Ok(Delivering {
        pipeline: Pipeline::new(sources, sinks, config.runner.concurrency),
        mode: Arc::new(Mode::Deliver { state }),
        _lock: lock,
    })
}

/// Prints the end-of-run summary on stderr and says whether all went well.
pub fn report(report: &RunReport) -> bool {
    for problem in &report.sources {
        eprintln!("{}: FAILED: {}", problem.source, problem.message);
    }
    for summary in &report.services {
        eprintln!("{}", summary.line());
    }
    for (source, service) in &report.gone {
        eprintln!(
            "{source}/{} ({}): no longer in the project or no longer matches `discover`; stopped following it, its state is kept",
            service.service_id, service.service_name
        );
    }
    report.ok()
}

async fn flush_sinks(pipeline: &Pipeline) {
    for lane in &pipeline.sinks {
        if let Some(sink) = &lane.sink
            && let Err(e) = sink.flush().await
        {
            warn!(sink = %lane.name, error = %e, "Flush failed.");
        }
    }
}

/// A watch that turns true on the first SIGINT or SIGTERM.
pub fn shutdown_signal() -> (watch::Sender<bool>, watch::Receiver<bool>) {
    watch::channel(false)
}

async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// `runner sync`.
pub async fn sync(config: &Config, selection: Selection, dry_run: bool) -> Result<u8, AppError> {
    check_selection(config, &selection)?;
    if dry_run {
        return dry_run_sync(config, &selection).await;
    }
    let delivering = prepare(config).await?;
    let (stop, shutdown) = shutdown_signal();
    let interrupted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = interrupted.clone();
    let watcher = tokio::spawn(async move {
        let name = wait_for_signal().await;
        warn!(
            signal = name,
            "Interrupted; finishing the batches in flight, then stopping."
        );
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = stop.send(true);
        // A second signal stops at once; committed work is safe.
        wait_for_signal().await;
        std::process::exit(i32::from(exit::INTERRUPTED));
    });
    let outcome = delivering
        .pipeline
        .sync(&delivering.mode, &selection, shutdown)
        .await;
    watcher.abort();
    flush_sinks(&delivering.pipeline).await;
    let ok = report(&outcome);
    Ok(if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        exit::INTERRUPTED
    } else if ok {
        exit::OK
    } else {
        exit::FAILED
    })
}

async fn dry_run_sync(config: &Config, selection: &Selection) -> Result<u8, AppError> {
    let sources = build_sources(config)?;
    let path = config.state_path.clone();
    let store = tokio::task::spawn_blocking(move || CheckpointStore::open_read_only(&path))
        .await
        .map_err(|e| AppError::new(exit::FAILED, format!("state: {e}")))??;
    let pipeline = Pipeline::new(sources, dry_run_lanes(config), config.runner.concurrency);
    let mode = Arc::new(Mode::DryRun {
        state: store.map(StateHandle::new),
    });
    let (_stop, shutdown) = shutdown_signal();
    let outcome = pipeline.sync(&mode, selection, shutdown).await;
    Ok(if report(&outcome) {
        exit::OK
    } else {
        exit::FAILED
    })
}

/// `runner run`: sync every `interval` until SIGINT/SIGTERM.
pub async fn run(config: &Config) -> Result<u8, AppError> {
    let delivering = prepare(config).await?;
    let (stop, shutdown) = shutdown_signal();
    tokio::spawn(async move {
        let name = wait_for_signal().await;
        info!(signal = name, "Stopping: finishing the batches in flight.");
        let _ = stop.send(true);
    });
    let selection = Selection::default();
    loop {
        let mut stopping = shutdown.clone();
        let sync = delivering
            .pipeline
            .sync(&delivering.mode, &selection, shutdown.clone());
        tokio::pin!(sync);
        let outcome = tokio::select! {
            outcome = &mut sync => outcome,
            _ = stopping.wait_for(|stop| *stop) => {
                match tokio::time::timeout(config.runner.shutdown_timeout, &mut sync).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        flush_sinks(&delivering.pipeline).await;
                        return Err(AppError::new(exit::FAILED, format!(
                            "shutdown_timeout ({}) passed with a batch still in flight; it will be delivered again on the next run",
                            humantime::format_duration(config.runner.shutdown_timeout)
                        )));
                    }
                }
            }
        };
        report(&outcome);
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

/// `runner validate [--check]`.
pub async fn validate(config: &Config, check: bool) -> Result<u8, AppError> {
    eprintln!(
        "{}: configuration is valid ({} source(s), {} sink(s)).",
        config.file.display(),
        config.sources.len(),
        config.sinks.len()
    );
    if !check {
        return Ok(exit::OK);
    }
    let sources = build_sources(config)?;
    let mut ok = true;
    for source in &sources {
        match source.client.services(0, 1).await {
            Ok(_) => eprintln!(
                "source {}: reached {} and authenticated.",
                source.settings.name, source.settings.endpoint
            ),
            Err(e) => {
                ok = false;
                eprintln!("source {}: FAILED: {e}", source.settings.name);
            }
        }
    }
    for settings in &config.sinks {
        let result = match &settings.kind {
            SinkKind::Stdout { format } => {
                StdoutSink::new(&settings.name, stdout_format(*format))
                    .healthcheck()
                    .await
            }
            SinkKind::File { path } => FileSink::check_path(&settings.name, path),
        };
        match result {
            Ok(()) => eprintln!(
                "sink {} ({}): ready.",
                settings.name,
                settings.kind.type_name()
            ),
            Err(e) => {
                ok = false;
                eprintln!("sink {}: FAILED: {e}", settings.name);
            }
        }
    }
    Ok(if ok { exit::OK } else { exit::FAILED })
}

/// `runner state [--json]`.
pub async fn show_state(config: &Config, json: bool) -> Result<u8, AppError> {
    let path = config.state_path.clone();
    let store = tokio::task::spawn_blocking(move || CheckpointStore::open_read_only(&path))
        .await
        .map_err(|e| AppError::new(exit::FAILED, format!("state: {e}")))??;
    let Some(store) = store else {
        if json {
            println!(
                "{}",
                serde_json::json!({"state": config.state_path.display().to_string(), "positions": [], "files": []})
            );
        } else {
            eprintln!(
                "{}: no state yet (nothing has been synced).",
                config.state_path.display()
            );
        }
        return Ok(exit::OK);
    };
    let rows = store.positions()?;
    let mut files = Vec::new();
    for settings in &config.sinks {
        if let Some((path, offset)) = store.file_offset(&settings.name)? {
            files.push((settings.name.clone(), path, offset));
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
            .map(|(sink, path, o)| serde_json::json!({"sink": sink, "path": path, "committed_bytes": o.len}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"state": config.state_path.display().to_string(), "positions": positions, "files": files})
        );
        return Ok(exit::OK);
    }
    println!(
        "{:<12} {:<38} {:<12} {:<26} {:<26} {:>6}",
        "SOURCE", "SERVICE", "SINK", "POSITION", "SINCE", "IDS"
    );
    for r in &rows {
        let since = if r.since <= 0 {
            "beginning".to_owned()
        } else {
            time(Some(r.since))
        };
        println!(
            "{:<12} {:<38} {:<12} {:<26} {:<26} {:>6}",
            r.source,
            r.service_id,
            r.sink,
            time(r.position),
            since,
            r.fingerprints
        );
    }
    for (sink, path, offset) in &files {
        println!("file sink {sink}: {path}, {} bytes committed", offset.len);
    }
    Ok(exit::OK)
}

/// `runner state reset`.
pub async fn reset_state(
    config: &Config,
    filter: ResetFilter,
    to: Option<ResetTo>,
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
    if let Some(sink) = &filter.sink
        && !config.sinks.iter().any(|s| &s.name == sink)
    {
        return Err(AppError::new(
            exit::CONFIG,
            format!("--sink {sink}: no such sink in {}", config.file.display()),
        ));
    }
    let _lock = CheckpointStore::lock(&config.state_path)?;
    let mut store = CheckpointStore::open(&config.state_path)?;
    let to_kind = to.unwrap_or(ResetTo::Delete);
    let changed = store.reset(&filter, to_kind)?;
    // `--to` also applies to cursors that do not exist yet, so that
    // "reset --to now" on a new config starts there.
    let mut created = 0;
    if let ResetTo::Since(ms) = to_kind {
        let mut cursors = Vec::new();
        let mut seen = HashSet::new();
        for source in &config.sources {
            for service in &source.services {
                for sink in &config.sinks {
                    let key = CursorKey {
                        source: source.name.clone(),
                        service_id: service.clone(),
                        sink: sink.name.clone(),
                    };
                    let matches = filter.source.as_ref().is_none_or(|s| s == &key.source)
                        && filter
                            .service_id
                            .as_ref()
                            .is_none_or(|s| s == &key.service_id)
                        && filter.sink.as_ref().is_none_or(|s| s == &key.sink)
                        && sink
                            .inputs
                            .as_ref()
                            .is_none_or(|i| i.contains(&source.name));
                    if matches && seen.insert(key.clone()) && store.cursor(&key)?.is_none() {
                        cursors.push(CursorCommit {
                            key,
                            since: ms,
                            position: None,
                            add_fingerprints: Vec::new(),
                            prune_below: None,
                        });
                    }
                }
            }
        }
        created = cursors.len();
        store.commit(&Commit {
            cursors,
            files: Vec::new(),
        })?;
    }
    eprintln!(
        "Reset {} position(s){}.",
        changed + created,
        match to_kind {
            ResetTo::Delete => " (forgotten: start_at applies again)".to_owned(),
            ResetTo::Since(ms) => format!(" to {}", record::timestamp_rfc3339(ms)),
        }
    );
    Ok(exit::OK)
}

/// `runner services`: which services each source follows, and why.
pub async fn services(config: &Config) -> Result<u8, AppError> {
    let sources = build_sources(config)?;
    let mut ok = true;
    for source in &sources {
        let name = &source.settings.name;
        let settings = &source.settings;
        if let Err(e) = source.client.authenticate().await {
            ok = false;
            println!(
                "source {name}: authentication ({}) failed: {e}",
                source.client.auth_kind()
            );
            continue;
        }
        println!(
            "source {name} (project {}, {}, auth {}):",
            source.client.project_id(),
            settings.endpoint,
            source.client.auth_kind()
        );
        let listed = match discovery::list_services(&source.client, settings.page_size).await {
            Ok(listed) => listed,
            Err(e) => {
                ok = false;
                println!("  cannot list the project's services: {e}");
                Vec::new()
            }
        };
        for id in &settings.services {
            match listed.iter().find(|s| &s.service_id == id) {
                Some(s) => println!(
                    "  {id}  {}  [{}]  followed: listed in `services`",
                    s.service_name, s.status
                ),
                None => {
                    ok = false;
                    println!(
                        "  {id}  followed: listed in `services`, but the project has no such service (a sync fails for it)"
                    );
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
                    format!("followed: matches discover {}", describe(d))
                }
                Some(d) => format!("not followed: does not match discover {}", describe(d)),
            };
            println!(
                "  {}  {}  [{}]  {why}",
                s.service_id, s.service_name, s.status
            );
        }
    }
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
