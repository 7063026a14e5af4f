//! The configuration file: TOML with Vector-style named components
//! (`[state]`, `[runner]`, `[sources.NAME]`, `[sinks.NAME]`), read into
//! validated settings with every default applied.
//!
//! Loading is pure: apart from reading the file itself, and resolving the
//! symlinks of the paths it names so that two names of one file are seen as
//! one (see [`resolve_path`]), it does no I/O. It never touches the state file
//! and never reads a secret file (`token_file`, `password_file`,
//! `secret_key_file`, `security_token_file`) or `ca_file`;
//! the runner does that when it builds the pipeline, and again at each
//! renewal, so rotated secrets are picked up. Every error names the file, the
//! line and the key (see [`ConfigError`]), and none quotes a secret.
//!
//! A source's `region` (in `cloud`, default Open Telekom Cloud) fills its
//! ModelArts `endpoint` and the IAM endpoint of password auth from
//! [`source::regions`]; an explicit `endpoint` or `iam_endpoint` wins.
//!
//! A `[sinks.NAME]` table is read in two steps: the keys every sink has
//! (`type`, `inputs`, `event_types`, `batch`, `retry`, `healthcheck`,
//! `dead_letter_*`, see [`sink::config::SinkProbe`]), then the rest by the kind
//! that `type` names in [`SINK_KINDS`], whose own table refuses unknown keys.
//!
//! Several files (`--config` repeated, `--config-dir`) merge as Vector's do: a
//! component (`[sources.NAME]`, `[sinks.NAME]`) is defined in one file, and
//! `[state]` and `[runner]` may be split across files, each key set in one; a
//! duplicate is an error naming both files. Every error names the file it is in,
//! and each file's relative paths are relative to its own folder. One load
//! reports every table's first error, sorted by file and line.
//!
//! `${VAR}` placeholders (also `${VAR:-default}` and `${VAR:?message}`, see
//! `placeholder.rs`) are replaced from the environment after parsing, in
//! the free-text values: `state.path`, `region`, `endpoint`, `project_id`,
//! `services`, `discover.name`, `ca_file`, every string of `[sources.NAME.auth]`
//! but `type`, a file sink's `path`, a sink's `dead_letter_path` and
//! `event_types`. `$${` writes a literal
//! `${`. Keys with a fixed set of values (kinds, `cloud`, `event_type`,
//! `offset_unit`, `format`, `discover.status`), numbers, booleans and
//! durations take no placeholders. Relative paths are relative to the folder
//! of the config file, because cron and service managers start the runner in
//! another directory.

mod error;
mod placeholder;
mod raw;
mod timestamp;

#[cfg(test)]
mod tests;

pub use error::ConfigError;
pub use timestamp::parse_start_at;

use raw::{
    AkskAuthTable, AuthKind, CloudName, DiscoverTable, EventTypeName, HumanDuration, KindProbe,
    ModelArtsTable, OffsetUnitName, PasswordAuthTable, RunnerTable, SourceKind, StateTable,
    TokenAuthTable,
};
use serde::Deserialize;
use sink::config::{COMMON_KEYS, ConfigContext, ConfigIssue, ReadError, SinkProbe, WrittenPath};
use sink::{SinkFilter, SinkOptions, SinkSettings};
use source::checkpoint::resolve_path;
use source::regions::{self, Cloud, RegionEndpoints};
use source::shard::Shard;
use source::{
    AuthSettings, Discover, OffsetUnit, Secret, SecretSource, SettingsOrigin, SourceSettings,
    StartAt,
};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The kinds of sink this runner knows (`type = "..."`). Adding a sink is a folder in
/// `crates/sink` and one line here.
pub const SINK_KINDS: &[sink::SinkKind] = &[
    sink::stdout::KIND,
    sink::file::KIND,
    sink::loki::KIND,
    sink::elasticsearch::KIND,
    sink::webhook::KIND,
];

/// Defaults of every optional key, in one place.
pub mod defaults {
    use std::time::Duration;

    pub const INTERVAL: Duration = Duration::from_secs(60);
    pub const CONCURRENCY: usize = 4;
    pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
    /// How long a source or sink may fail before `/health` answers 503.
    pub const UNHEALTHY_AFTER: Duration = Duration::from_secs(5 * 60);
    pub const PAGE_SIZE: u32 = 1000;
    /// The API refuses a larger `limit`.
    pub const MAX_PAGE_SIZE: u32 = 1000;
    pub const LOOKBACK: Duration = Duration::from_secs(10 * 60);
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// How long a connection to ModelArts or IAM may take to be made.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const MAX_REQUESTS_PER_SECOND: f64 = 10.0;
    pub const MAX_RETRIES: u32 = 8;
    pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
    pub const RETRY_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
    pub const RETRY_MAX_BACKOFF: Duration = Duration::from_secs(60);
    /// How far ahead of the clock a position may be.
    pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
    /// How long a state commit waits for another process's write lock.
    pub const STATE_BUSY_TIMEOUT: Duration = source::checkpoint::DEFAULT_BUSY_TIMEOUT;
}

/// A loaded and validated configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// How messages name the configuration: the config file as it was given, or
    /// the files joined with `, ` when there are several.
    pub file: PathBuf,
    /// `[state] path`, resolved against the config file's folder.
    pub state_path: PathBuf,
    /// `[state] busy_timeout`: how long a commit waits for another process holding the
    /// state file's write lock (a backup tool, an `sqlite3` shell).
    pub state_busy_timeout: Duration,
    pub runner: RunnerSettings,
    /// Sorted by name.
    pub sources: Vec<SourceSettings>,
    /// Sorted by name.
    pub sinks: Vec<SinkSettings>,
}

/// `[runner]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerSettings {
    /// Poll interval of `runner run`.
    pub interval: Duration,
    /// Services fetched at once, across sources; at least 1.
    pub concurrency: usize,
    /// How long SIGTERM waits for the in-flight batch.
    pub shutdown_timeout: Duration,
    /// `shard = "K/N"`: the services this runner follows (`0/1`, every service, by
    /// default). `--shard` replaces it.
    pub shard: Shard,
    /// Where `run` serves `/metrics`, `/live` and `/health` (off when `None`).
    pub listen: Option<std::net::SocketAddr>,
    /// `[runner.health] unhealthy_after`.
    pub unhealthy_after: Duration,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        RunnerSettings {
            interval: defaults::INTERVAL,
            concurrency: defaults::CONCURRENCY,
            shutdown_timeout: defaults::SHUTDOWN_TIMEOUT,
            shard: Shard::WHOLE,
            listen: None,
            unhealthy_after: defaults::UNHEALTHY_AFTER,
        }
    }
}

/// Loads `path`, replacing `${VAR}` from the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_all(&[path.to_owned()], &[])
}

/// Loads `path`, replacing `${VAR}` with `env(VAR)`.
#[cfg(test)]
pub fn load_with_env(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    load_all_with_env(&[path.to_owned()], &[], env)
}

/// Loads and merges `files` and the `*.toml` files of each folder in `dirs`
/// (`--config` and `--config-dir`), replacing `${VAR}` from the process
/// environment. See the module documentation for how they combine.
pub fn load_all(files: &[PathBuf], dirs: &[PathBuf]) -> Result<Config, ConfigError> {
    load_all_with_env(files, dirs, &|name| std::env::var(name).ok())
}

/// [`load_all`], replacing `${VAR}` with `env(VAR)`.
pub fn load_all_with_env(
    files: &[PathBuf],
    dirs: &[PathBuf],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut errors = Vec::new();
    let mut paths: Vec<PathBuf> = files.to_vec();
    for dir in dirs {
        match toml_files_in(dir) {
            Ok(found) => paths.extend(found),
            Err(error) => errors.push(error),
        }
    }
    // One file named twice (`--config a.toml --config-dir .`) is read once.
    let mut seen = BTreeSet::new();
    paths.retain(|path| seen.insert(resolve_path(path)));
    let mut texts = Vec::with_capacity(paths.len());
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => texts.push((path, text)),
            Err(source) => errors.push(ConfigError::Read { file: path, source }),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigError::from_all(errors));
    }
    parse_files(&texts, env)
}

/// The `*.toml` files of `dir` but hidden ones, sorted by name. Not recursive; a folder without
/// one is an error, so that a wrong `--config-dir` is not an empty config.
fn toml_files_in(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let folder_error = |message: String| ConfigError::Folder {
        dir: dir.to_owned(),
        message,
    };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| folder_error(format!("cannot read the config folder: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| folder_error(format!("cannot read the config folder: {e}")))?;
        let path = entry.path();
        // Hidden files are editors' backups and locks (`.#runner.toml`), not config.
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(folder_error("holds no *.toml file".to_owned()));
    }
    files.sort();
    Ok(files)
}

/// Parses and validates `text`, the content of the config file `file`
/// (whose folder relative paths are resolved against).
#[cfg(test)]
pub fn parse_str(
    text: &str,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    parse_files(&[(file.to_owned(), text.to_owned())], env)
}

/// Parses, merges and validates several files' `(path, text)`.
pub fn parse_files(
    files: &[(PathBuf, String)],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut readers = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    for (file, text) in files {
        match DeTable::parse(text) {
            Ok(root) => readers.push(Reader::new(text, file, env, root)),
            Err(e) => errors.push(error::from_syntax(&e, text, file)),
        }
    }
    if !errors.is_empty() {
        return Err(ConfigError::from_all(errors));
    }
    let files: Vec<PathBuf> = files.iter().map(|(file, _)| file.clone()).collect();
    Merge {
        readers: &readers,
        files: &files,
    }
    .config()
}

/// Reads the validated settings out of one parsed file.
struct Reader<'a> {
    text: &'a str,
    file: &'a Path,
    base_dir: PathBuf,
    env: &'a dyn Fn(&str) -> Option<String>,
    root: Spanned<DeTable<'a>>,
}

/// The top-level tables every config has.
const TOP_LEVEL: &[&str] = &["state", "runner", "sources", "sinks"];

/// Where one key of `[state]` or `[runner]` was set.
struct Setting<'r, 'a, T> {
    reader: &'r Reader<'a>,
    value: Spanned<T>,
}

/// The files of one configuration, merged as Vector merges its config files: each
/// component (`[sources.NAME]`, `[sinks.NAME]`) is defined in one file, and
/// `[state]` and `[runner]` may be split across files, each key set in one file.
/// Every table is read even after another failed, so that one run reports at least
/// one error per table.
struct Merge<'r, 'a> {
    readers: &'r [Reader<'a>],
    files: &'r [PathBuf],
}

impl<'r, 'a> Merge<'r, 'a> {
    fn config(&self) -> Result<Config, ConfigError> {
        let mut errors: Vec<ConfigError> = Vec::new();
        let mut state: Vec<(&'r Reader<'a>, Range<usize>, StateTable)> = Vec::new();
        let mut runner: Vec<(&'r Reader<'a>, RunnerTable)> = Vec::new();
        // Name -> the file that defines it and the span of its table.
        let mut sources: BTreeMap<String, (&'r Reader<'a>, Range<usize>)> = BTreeMap::new();
        let mut sinks: BTreeMap<String, (&'r Reader<'a>, Range<usize>)> = BTreeMap::new();
        // Whether any file has the table, read or not: a table with errors is not missing.
        let written = |table: &str| {
            self.readers
                .iter()
                .any(|r| match r.root.get_ref().get(table) {
                    Some(value) => match value.get_ref() {
                        DeValue::Table(inner) => table == "state" || !inner.is_empty(),
                        _ => true,
                    },
                    None => false,
                })
        };

        for reader in self.readers {
            for (key, value) in reader.root.get_ref() {
                let name = key.get_ref().as_ref();
                let result = match name {
                    "state" => reader
                        .table(&["state"])
                        .and_then(|table| reader.deserialize(table))
                        .map(|table| state.push((reader, value.span(), table))),
                    "runner" => reader
                        .table(&["runner"])
                        .and_then(|table| reader.deserialize(table))
                        .map(|table| runner.push((reader, table))),
                    "sources" | "sinks" => {
                        let components = if name == "sources" {
                            &mut sources
                        } else {
                            &mut sinks
                        };
                        self.components(reader, name, components, &mut errors);
                        Ok(())
                    }
                    other => Err(reader.error(
                        key.span(),
                        error::key_segment(other),
                        error::unknown_key_message(other, TOP_LEVEL),
                    )),
                };
                if let Err(e) = result {
                    errors.push(e);
                }
            }
        }
        let Some(first) = self.readers.first() else {
            return Err(ConfigError::NoFile);
        };

        // [state]
        if !written("state") {
            errors.push(first.error(
                0..0,
                "state",
                "missing: add a [state] table with `path`, the SQLite state file",
            ));
        }
        let path = self.setting(
            &mut errors,
            "state.path",
            state.iter().map(|(r, _, t)| (*r, t.path.clone())),
        );
        let state_path = match (&path, state.first()) {
            (Some(path), _) => match path.reader.path(&path.value, "state.path") {
                Ok(resolved) => Some(resolved),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
            (None, Some((reader, span, _))) => {
                errors.push(reader.error(
                    span.clone(),
                    "state.path",
                    "missing (this key is required): the SQLite state file",
                ));
                None
            }
            (None, None) => None,
        };
        let state_busy_timeout = self
            .setting(
                &mut errors,
                "state.busy_timeout",
                state.iter().map(|(r, _, t)| (*r, t.busy_timeout.clone())),
            )
            .map_or(Ok(defaults::STATE_BUSY_TIMEOUT), |s| {
                s.reader.duration(
                    &Some(s.value),
                    "state.busy_timeout",
                    defaults::STATE_BUSY_TIMEOUT,
                    false,
                )
            })
            .unwrap_or_else(|e| {
                errors.push(e);
                defaults::STATE_BUSY_TIMEOUT
            });

        // [runner]
        let runner = self.runner(&runner, &mut errors);

        // [sources.NAME]
        if !written("sources") {
            errors.push(first.error(
                0..0,
                "sources",
                "no source: add a [sources.NAME] table (see config/ for examples)",
            ));
        }
        let mut source_settings = Vec::with_capacity(sources.len());
        for (name, (reader, _)) in &sources {
            match reader.source(name) {
                Ok(source) => source_settings.push(source),
                Err(found) => errors.extend(found),
            }
        }
        for warning in shared_services(&source_settings) {
            tracing::warn!("{warning}");
        }

        // [sinks.NAME]
        if !written("sinks") {
            errors.push(first.error(
                0..0,
                "sinks",
                "no sink: add a [sinks.NAME] table (see config/ for examples)",
            ));
        }
        let source_names: BTreeSet<&str> = sources.keys().map(String::as_str).collect();
        // Resolved path -> what writes it, to refuse two writers of one file: the state
        // file and its companions, every config file, and every sink's files. Paths are
        // compared as the state's lock sees them (symlinks resolved).
        let mut writers: BTreeMap<PathBuf, String> = BTreeMap::new();
        if let Some(state_path) = &state_path {
            for companion in ["", "-wal", "-shm", "-journal", ".lock"] {
                let mut name = state_path.clone().into_os_string();
                name.push(companion);
                writers.insert(
                    resolve_path(Path::new(&name)),
                    "the state file (state.path)".to_owned(),
                );
            }
        }
        for file in self.files {
            let what = if self.files.len() == 1 {
                "the config file".to_owned()
            } else {
                format!("the config file {}", file.display())
            };
            writers.insert(resolve_path(file), what);
        }
        let mut sink_settings = Vec::with_capacity(sinks.len());
        for (name, (reader, span)) in &sinks {
            let state_dir = state_path
                .as_deref()
                .and_then(Path::parent)
                .map_or_else(|| reader.base_dir.clone(), Path::to_owned);
            let (sink, written) = match reader.sink(name, span.clone(), &source_names, &state_dir) {
                Ok(read) => read,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            for WrittenPath {
                field: key,
                path,
                span,
            } in written
            {
                let what = if key.ends_with(".dead_letter_path") {
                    format!("the dead-letter file of sink `{name}`")
                } else {
                    format!("sink `{name}`")
                };
                if let Some(other) = writers.insert(resolve_path(&path), what) {
                    errors.push(reader.error(
                        span,
                        key,
                        format!(
                            "{} is also written by {other}; give each its own file",
                            path.display()
                        ),
                    ));
                }
            }
            sink_settings.push(sink);
        }

        // A state path is missing only with an error about it above.
        let state_path = match state_path {
            Some(path) if errors.is_empty() => path,
            _ => {
                self.sort(&mut errors);
                return Err(ConfigError::from_all(errors));
            }
        };
        let label: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        Ok(Config {
            file: PathBuf::from(label.join(", ")),
            state_path,
            state_busy_timeout,
            runner,
            sources: source_settings,
            sinks: sink_settings,
        })
    }

    /// Records the components of a `[sources]` or `[sinks]` table of one file. A name
    /// defined in two files is an error naming both.
    fn components(
        &self,
        reader: &'r Reader<'a>,
        section: &str,
        found: &mut BTreeMap<String, (&'r Reader<'a>, Range<usize>)>,
        errors: &mut Vec<ConfigError>,
    ) {
        let table = match reader.table(&[section]) {
            Ok(table) => table,
            Err(e) => {
                errors.push(e);
                return;
            }
        };
        for (key, value) in table.get_ref() {
            let name = key.get_ref().as_ref();
            if let Err(e) = reader.check_name(section, name, value.span()) {
                errors.push(e);
                continue;
            }
            if let Some((other, other_span)) = found.get(name) {
                errors.push(reader.error(
                    value.span(),
                    format!("{section}.{name}"),
                    format!(
                        "is also defined in {}:{}; define each component in one file",
                        other.file.display(),
                        error::line_of(other.text, other_span.start)
                    ),
                ));
                continue;
            }
            found.insert(name.to_owned(), (reader, value.span()));
        }
    }

    /// The one file that sets `key` of `[state]` or `[runner]`; setting it in two
    /// files is an error naming both.
    fn setting<T>(
        &self,
        errors: &mut Vec<ConfigError>,
        key: &str,
        values: impl Iterator<Item = (&'r Reader<'a>, Option<Spanned<T>>)>,
    ) -> Option<Setting<'r, 'a, T>> {
        let mut chosen: Option<Setting<'r, 'a, T>> = None;
        for (reader, value) in values {
            let Some(value) = value else { continue };
            match &chosen {
                Some(first) => errors.push(reader.error(
                    value.span(),
                    key,
                    format!(
                        "is also set in {}:{}; set each key in one file",
                        first.reader.file.display(),
                        error::line_of(first.reader.text, first.value.span().start)
                    ),
                )),
                None => chosen = Some(Setting { reader, value }),
            }
        }
        chosen
    }

    fn runner(
        &self,
        tables: &[(&'r Reader<'a>, RunnerTable)],
        errors: &mut Vec<ConfigError>,
    ) -> RunnerSettings {
        let mut settings = RunnerSettings::default();
        let interval = self.setting(
            errors,
            "runner.interval",
            tables.iter().map(|(r, t)| (*r, t.interval.clone())),
        );
        if let Some(s) = interval {
            match s
                .reader
                .duration(&Some(s.value), "runner.interval", defaults::INTERVAL, false)
            {
                Ok(value) => settings.interval = value,
                Err(e) => errors.push(e),
            }
        }
        let concurrency = self.setting(
            errors,
            "runner.concurrency",
            tables.iter().map(|(r, t)| (*r, t.concurrency.clone())),
        );
        if let Some(s) = concurrency {
            match s.reader.integer(
                &Some(s.value),
                "runner.concurrency",
                defaults::CONCURRENCY,
                1,
            ) {
                Ok(value) => settings.concurrency = value,
                Err(e) => errors.push(e),
            }
        }
        let shutdown_timeout = self.setting(
            errors,
            "runner.shutdown_timeout",
            tables.iter().map(|(r, t)| (*r, t.shutdown_timeout.clone())),
        );
        if let Some(s) = shutdown_timeout {
            match s.reader.duration(
                &Some(s.value),
                "runner.shutdown_timeout",
                defaults::SHUTDOWN_TIMEOUT,
                true,
            ) {
                Ok(value) => settings.shutdown_timeout = value,
                Err(e) => errors.push(e),
            }
        }
        let shard = self.setting(
            errors,
            "runner.shard",
            tables.iter().map(|(r, t)| (*r, t.shard.clone())),
        );
        if let Some(s) = shard {
            match s.reader.shard(&s.value) {
                Ok(value) => settings.shard = value,
                Err(e) => errors.push(e),
            }
        }
        self.runner_observability(tables, errors, &mut settings);
        settings
    }

    /// `[runner] listen` and `[runner.health]`.
    fn runner_observability(
        &self,
        tables: &[(&'r Reader<'a>, RunnerTable)],
        errors: &mut Vec<ConfigError>,
        settings: &mut RunnerSettings,
    ) {
        let listen = self.setting(
            errors,
            "runner.listen",
            tables.iter().map(|(r, t)| (*r, t.listen.clone())),
        );
        if let Some(s) = listen {
            match s.value.get_ref().parse::<std::net::SocketAddr>() {
                Ok(addr) => settings.listen = Some(addr),
                Err(_) => errors.push(s.reader.error(
                    s.value.span(),
                    "runner.listen",
                    format!(
                        "{:?} is not an address and port such as \"127.0.0.1:9187\" or \"[::]:9187\"",
                        s.value.get_ref()
                    ),
                )),
            }
        }
        let unhealthy_after = self.setting(
            errors,
            "runner.health.unhealthy_after",
            tables.iter().map(|(r, t)| {
                (
                    *r,
                    t.health.as_ref().and_then(|h| h.unhealthy_after.clone()),
                )
            }),
        );
        if let Some(s) = unhealthy_after {
            match s.reader.duration(
                &Some(s.value),
                "runner.health.unhealthy_after",
                defaults::UNHEALTHY_AFTER,
                false,
            ) {
                Ok(value) => settings.unhealthy_after = value,
                Err(e) => errors.push(e),
            }
        }
    }

    /// In the order the files were given, then by line.
    fn sort(&self, errors: &mut [ConfigError]) {
        errors.sort_by_key(|e| {
            let file = self
                .files
                .iter()
                .position(|f| Some(f.as_path()) == e.file());
            (file, e.line_number())
        });
    }
}

impl<'a> Reader<'a> {
    fn new(
        text: &'a str,
        file: &'a Path,
        env: &'a dyn Fn(&str) -> Option<String>,
        root: Spanned<DeTable<'a>>,
    ) -> Self {
        let folder = match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        // `absolute` only consults the current directory; it reads nothing on disk.
        let base_dir = std::path::absolute(folder).unwrap_or_else(|_| folder.to_owned());
        Reader {
            text,
            file,
            base_dir,
            env,
            root,
        }
    }

    /// `[sources.NAME]`. On an error, also the first error of its `auth` table when
    /// the first one is elsewhere: the auth table is a table of its own.
    fn source(&self, name: &str) -> Result<SourceSettings, Vec<ConfigError>> {
        let error = match self.source_table(name) {
            Ok(source) => return Ok(source),
            Err(error) => error,
        };
        let auth_key = format!("sources.{name}.auth");
        if error.key().is_some_and(|key| key.starts_with(&auth_key)) {
            return Err(vec![error]);
        }
        let table: Option<ModelArtsTable> = self.kind_table(&["sources", name], &["type"]).ok();
        let region = table
            .as_ref()
            .and_then(|table| self.region(table, name).ok().flatten());
        let has_project_id = table.as_ref().is_some_and(|t| t.project_id.is_some());
        let mut errors = vec![error];
        if let Err(auth_error) = self.auth(name, region.as_ref(), has_project_id) {
            // Without the source's table, its `region` and `project_id` are unknown:
            // the keys they would supply are not reported missing.
            let depends_on_source = ["iam_endpoint", "project"]
                .iter()
                .any(|k| auth_error.key() == Some(&format!("{auth_key}.{k}")));
            if table.is_some() || !depends_on_source {
                errors.push(auth_error);
            }
        }
        Err(errors)
    }

    fn source_table(&self, name: &str) -> Result<SourceSettings, ConfigError> {
        let path = ["sources", name];
        let probe: KindProbe<SourceKind> = self.deserialize(self.table(&path)?)?;
        match probe.kind.into_inner() {
            SourceKind::Modelarts => self.modelarts_source(name),
        }
    }

    fn modelarts_source(&self, name: &str) -> Result<SourceSettings, ConfigError> {
        let header = self.table(&["sources", name])?.span();
        let table: ModelArtsTable = self.kind_table(&["sources", name], &["type"])?;
        let key = |field: &str| format!("sources.{name}.{field}");

        let region = self.region(&table, name)?;
        let endpoint = match (&table.endpoint, &region) {
            (Some(endpoint), _) => self.url(endpoint, &key("endpoint"), MODELARTS_URL_EXAMPLE)?,
            (None, Some(region)) => match &region.endpoints.modelarts {
                Some(endpoint) => endpoint.clone(),
                None => {
                    return Err(self.error(
                        region.span.clone(),
                        key("endpoint"),
                        format!(
                            "required: region {:?} of cloud {:?} has no known ModelArts \
                             endpoint; set `endpoint` to its ModelArts URL (or use a region \
                             with ModelArts, such as \"eu-de\")",
                            region.name,
                            region.cloud.to_string()
                        ),
                    ));
                }
            },
            (None, None) => {
                return Err(self.error(
                    header.clone(),
                    key("endpoint"),
                    "missing: set `region` (such as \"eu-de\") or `endpoint` \
                     (the ModelArts URL)",
                ));
            }
        };

        let auth = self.auth(name, region.as_ref(), table.project_id.is_some())?;
        let project_id = match &table.project_id {
            Some(value) => Some(self.path_segment(value, &key("project_id"))?),
            None if matches!(auth, AuthSettings::Password { .. }) => None,
            None => {
                return Err(self.error(
                    header.clone(),
                    key("project_id"),
                    format!(
                        "missing (this key is required with `auth.type = \"{}\"`; \
                         only password auth can take the project from its token)",
                        auth.kind()
                    ),
                ));
            }
        };

        let services = match &table.services {
            Some(list) => self.services(list, &key("services"))?,
            None => Vec::new(),
        };
        let discover = match &table.discover {
            Some(discover) => Some(self.discover(discover.get_ref(), &key("discover"))?),
            None => None,
        };
        if table.services.is_none() && discover.is_none() {
            return Err(self.error(
                header,
                key("services"),
                "missing: list service ids in `services`, or set `discover` \
                 (such as `discover = { name = \"prod-*\" }`), or both",
            ));
        }

        let tls = source::TlsSettings {
            ca_file: match &table.ca_file {
                Some(path) => Some(self.path(path, &key("ca_file"))?),
                None => None,
            },
            insecure_skip_verify: table.tls_insecure_skip_verify.unwrap_or(false),
        };

        let page_size =
            self.integer(&table.page_size, &key("page_size"), defaults::PAGE_SIZE, 1)?;
        if page_size > defaults::MAX_PAGE_SIZE {
            let span = table.page_size.as_ref().map_or(0..0, Spanned::span);
            return Err(self.error(
                span,
                key("page_size"),
                format!(
                    "must be between 1 and {}, got {page_size}",
                    defaults::MAX_PAGE_SIZE
                ),
            ));
        }

        let start_at = match &table.start_at {
            None => StartAt::Beginning,
            Some(value) => self.start_at(value, &key("start_at"))?,
        };

        let max_requests_per_second = match &table.max_requests_per_second {
            None => defaults::MAX_REQUESTS_PER_SECOND,
            Some(value) => {
                let rate = *value.get_ref();
                let (min, max) = (source::rate::MIN_PER_SECOND, source::rate::MAX_PER_SECOND);
                if !(min..=max).contains(&rate) {
                    // 1e-300 written out in full would be 300 digits long.
                    let shown = if (1e-6..1e9).contains(&rate.abs()) {
                        rate.to_string()
                    } else {
                        format!("{rate:e}")
                    };
                    return Err(self.error(
                        value.span(),
                        key("max_requests_per_second"),
                        format!("must be between {min} and {max} requests per second, got {shown}"),
                    ));
                }
                rate
            }
        };

        let retry_initial_backoff = self.duration(
            &table.retry_initial_backoff,
            &key("retry_initial_backoff"),
            defaults::RETRY_INITIAL_BACKOFF,
            false,
        )?;
        let retry_max_backoff = self.duration(
            &table.retry_max_backoff,
            &key("retry_max_backoff"),
            defaults::RETRY_MAX_BACKOFF,
            false,
        )?;
        if retry_max_backoff < retry_initial_backoff {
            let (span, at) = match (&table.retry_max_backoff, &table.retry_initial_backoff) {
                (Some(max), _) => (max.span(), "retry_max_backoff"),
                (None, Some(initial)) => (initial.span(), "retry_initial_backoff"),
                (None, None) => (0..0, "retry_max_backoff"),
            };
            return Err(self.error(
                span,
                key(at),
                format!(
                    "retry_max_backoff ({}) must not be shorter than retry_initial_backoff ({})",
                    humantime::format_duration(retry_max_backoff),
                    humantime::format_duration(retry_initial_backoff)
                ),
            ));
        }

        Ok(SourceSettings {
            name: name.to_owned(),
            endpoint,
            project_id,
            services,
            discover,
            tls,
            event_type: table.event_type.map(|t| {
                match t {
                    EventTypeName::Normal => "normal",
                    EventTypeName::Abnormal => "abnormal",
                }
                .to_owned()
            }),
            page_size,
            lookback: self.duration(&table.lookback, &key("lookback"), defaults::LOOKBACK, true)?,
            max_clock_skew: self.duration(
                &table.max_clock_skew,
                &key("max_clock_skew"),
                defaults::MAX_CLOCK_SKEW,
                true,
            )?,
            start_at,
            offset_unit: match table.offset_unit {
                None | Some(OffsetUnitName::Auto) => OffsetUnit::Auto,
                Some(OffsetUnitName::Page) => OffsetUnit::Page,
                Some(OffsetUnitName::Record) => OffsetUnit::Record,
            },
            request_timeout: self.duration(
                &table.request_timeout,
                &key("request_timeout"),
                defaults::REQUEST_TIMEOUT,
                false,
            )?,
            connect_timeout: self.duration(
                &table.connect_timeout,
                &key("connect_timeout"),
                defaults::CONNECT_TIMEOUT,
                false,
            )?,
            max_requests_per_second,
            max_retries: self.integer(
                &table.max_retries,
                &key("max_retries"),
                defaults::MAX_RETRIES,
                0,
            )?,
            max_response_bytes: self.integer(
                &table.max_response_bytes,
                &key("max_response_bytes"),
                defaults::MAX_RESPONSE_BYTES,
                1,
            )?,
            retry_initial_backoff,
            retry_max_backoff,
            origin: self.origin(name, &table, region.as_ref()),
            auth,
        })
    }

    /// Where the endpoint, IAM's endpoint and the project id were written, for errors
    /// that point at them (`sources.prod.endpoint (line 5)`).
    fn origin(
        &self,
        name: &str,
        table: &ModelArtsTable,
        region: Option<&Region>,
    ) -> SettingsOrigin {
        let at = |key: &str, span: Range<usize>| {
            format!(
                "sources.{name}.{key} (line {})",
                error::line_of(self.text, span.start)
            )
        };
        let from_region = || region.map(|r| at("region", r.span.clone()));
        let iam_endpoint = self
            .table(&["sources", name, "auth"])
            .ok()
            .and_then(|auth| auth.get_ref().get("iam_endpoint").map(|v| v.span()))
            .map(|span| at("auth.iam_endpoint", span))
            .or_else(from_region);
        SettingsOrigin {
            endpoint: match &table.endpoint {
                Some(value) => at("endpoint", value.span()),
                None => from_region().unwrap_or_default(),
            },
            iam_endpoint: iam_endpoint.unwrap_or_default(),
            project_id: table
                .project_id
                .as_ref()
                .map(|value| at("project_id", value.span()))
                .unwrap_or_default(),
        }
    }

    /// `region` looked up in `cloud`'s table; `None` without `region`.
    fn region(&self, table: &ModelArtsTable, source: &str) -> Result<Option<Region>, ConfigError> {
        let key = |field: &str| format!("sources.{source}.{field}");
        let cloud = match table.cloud.as_ref().map(Spanned::get_ref) {
            None | Some(CloudName::Otc) => Cloud::Otc,
            Some(CloudName::Huaweicloud) => Cloud::HuaweiCloud,
        };
        let Some(value) = &table.region else {
            if let Some(cloud) = &table.cloud {
                return Err(self.error(
                    cloud.span(),
                    key("cloud"),
                    "has no effect without `region`: set `region` too, or remove `cloud`",
                ));
            }
            return Ok(None);
        };
        let name = self.expand(value, &key("region"))?;
        let endpoints = regions::endpoints(cloud, &name)
            .map_err(|message| self.error(value.span(), key("region"), message))?;
        Ok(Some(Region {
            name,
            cloud,
            endpoints,
            span: value.span(),
        }))
    }

    fn discover(&self, table: &DiscoverTable, key: &str) -> Result<Discover, ConfigError> {
        let name = match &table.name {
            None => None,
            Some(value) => {
                let key = format!("{key}.name");
                let glob = self.expand(value, &key)?;
                if glob.is_empty() {
                    return Err(self.error(
                        value.span(),
                        key,
                        "is empty; remove the key to match every service name",
                    ));
                }
                if let Err(e) = glob::Pattern::new(&glob) {
                    return Err(self.error(
                        value.span(),
                        key,
                        format!("{glob:?} is not a valid glob ({e}); use `*`, `?` and `[...]`"),
                    ));
                }
                Some(glob)
            }
        };
        let mut status: Vec<String> = Vec::new();
        if let Some(list) = &table.status {
            let key = format!("{key}.status");
            if list.get_ref().is_empty() {
                return Err(self.error(
                    list.span(),
                    key,
                    "is empty; remove the key to follow services in every status",
                ));
            }
            for (index, item) in list.get_ref().iter().enumerate() {
                let item_key = format!("{key}[{index}]");
                let text = item.get_ref();
                if !SERVICE_STATUSES.contains(&text.as_str()) {
                    let lower = text.to_ascii_lowercase();
                    let message = if SERVICE_STATUSES.contains(&lower.as_str()) {
                        format!("write statuses in lowercase, as the API does: {lower:?}")
                    } else {
                        format!(
                            "unknown service status {text:?}; the statuses are: {}",
                            SERVICE_STATUSES.join(", ")
                        )
                    };
                    return Err(self.error(item.span(), item_key, message));
                }
                if status.contains(text) {
                    return Err(self.error(
                        item.span(),
                        item_key,
                        format!("{text:?} is listed twice"),
                    ));
                }
                status.push(text.clone());
            }
        }
        Ok(Discover { name, status })
    }

    /// `[sources.NAME.auth]`. `region` supplies the IAM endpoint and the
    /// default project name of password auth.
    fn auth(
        &self,
        source: &str,
        region: Option<&Region>,
        has_project_id: bool,
    ) -> Result<AuthSettings, ConfigError> {
        let path = ["sources", source, "auth"];
        let table = self.table(&path)?;
        let span = table.span();
        let probe: KindProbe<AuthKind> = self.deserialize(table)?;
        let auth_key = format!("sources.{source}.auth");
        let key = |field: &str| format!("{auth_key}.{field}");
        let missing = |inline: &str, kind: &str| {
            self.error(
                span.clone(),
                auth_key.clone(),
                format!("auth of type \"{kind}\" needs `{inline}` or `{inline}_file`"),
            )
        };
        match probe.kind.into_inner() {
            AuthKind::Token => {
                let table: TokenAuthTable = self.kind_table(&path, &["type"])?;
                let token = self
                    .secret(&auth_key, "token", &table.token, &table.token_file, false)?
                    .ok_or_else(|| missing("token", "token"))?;
                Ok(AuthSettings::Token { token })
            }
            AuthKind::Password => {
                let table: PasswordAuthTable = self.kind_table(&path, &["type"])?;
                let iam_endpoint = match (&table.iam_endpoint, region) {
                    (Some(value), _) => {
                        let url = self.url(value, &key("iam_endpoint"), IAM_URL_EXAMPLE)?;
                        // The client appends `/v3/auth/tokens` itself.
                        match url.strip_suffix("/v3") {
                            Some(base) => base.trim_end_matches('/').to_owned(),
                            None => url,
                        }
                    }
                    (None, Some(region)) => region.endpoints.iam.clone(),
                    (None, None) => {
                        return Err(self.error(
                            span,
                            key("iam_endpoint"),
                            format!(
                                "missing (this key is required when the source has no \
                                 `region`), such as \"{IAM_URL_EXAMPLE}\""
                            ),
                        ));
                    }
                };
                let domain = self.plain(&table.domain, &key("domain"), true)?;
                let user = self.plain(&table.user, &key("user"), true)?;
                let password = self
                    .secret(
                        &auth_key,
                        "password",
                        &table.password,
                        &table.password_file,
                        true,
                    )?
                    .ok_or_else(|| missing("password", "password"))?;
                let project = match (&table.project, region) {
                    (Some(value), _) => Some(self.plain(value, &key("project"), false)?),
                    (None, _) if has_project_id => None,
                    // The default project of a region bears the region's name
                    // (the Huawei SDK looks it up the same way).
                    (None, Some(region)) => Some(region.name.clone()),
                    (None, None) => {
                        return Err(self.error(
                            span,
                            key("project"),
                            "missing: with neither `project_id` nor `region` on the source, \
                             name the project to log in to, such as \"eu-de\"",
                        ));
                    }
                };
                Ok(AuthSettings::Password {
                    iam_endpoint,
                    domain,
                    user,
                    password,
                    project,
                })
            }
            AuthKind::Aksk => {
                let table: AkskAuthTable = self.kind_table(&path, &["type"])?;
                let access_key = self.plain(&table.access_key, &key("access_key"), false)?;
                let secret_key = self
                    .secret(
                        &auth_key,
                        "secret_key",
                        &table.secret_key,
                        &table.secret_key_file,
                        false,
                    )?
                    .ok_or_else(|| missing("secret_key", "aksk"))?;
                let security_token = self.secret(
                    &auth_key,
                    "security_token",
                    &table.security_token,
                    &table.security_token_file,
                    false,
                )?;
                Ok(AuthSettings::Aksk {
                    access_key,
                    secret_key,
                    security_token,
                })
            }
        }
    }

    /// The secret `name`, given inline or as `name_file` (at most one of
    /// them). The file is resolved, not read. `spaces_allowed` is for
    /// passwords; tokens and keys never hold whitespace.
    fn secret(
        &self,
        auth_key: &str,
        name: &str,
        inline: &Option<Spanned<String>>,
        file: &Option<Spanned<String>>,
        spaces_allowed: bool,
    ) -> Result<Option<SecretSource>, ConfigError> {
        let key = format!("{auth_key}.{name}");
        let file_key = format!("{auth_key}.{name}_file");
        match (inline, file) {
            (Some(_), Some(file)) => Err(self.error(
                file.span(),
                file_key,
                format!("set either `{name}` or `{name}_file`, not both"),
            )),
            (None, Some(file)) => Ok(Some(SecretSource::File(self.path(file, &file_key)?))),
            (None, None) => Ok(None),
            (Some(value), None) => {
                let text = self.expand(value, &key)?;
                if text.is_empty() {
                    return Err(self.error(value.span(), key, "is empty"));
                }
                // An environment variable with a trailing newline is the usual cause.
                let bad = |c: char| c.is_control() || (!spaces_allowed && c.is_whitespace());
                if text.chars().any(bad) {
                    let what = if spaces_allowed {
                        "contains a control character such as a newline (value not shown)"
                    } else {
                        "contains whitespace or a control character (value not shown)"
                    };
                    return Err(self.error(value.span(), key, what));
                }
                Ok(Some(SecretSource::Inline(Secret::new(text))))
            }
        }
    }

    /// Reads `[sinks.NAME]`: the keys every sink has here, the kind's own keys by the
    /// kind (see [`SINK_KINDS`]). Returns the sink and the files it writes (with their
    /// full keys), so that two writers of one file can be refused.
    fn sink(
        &self,
        name: &str,
        span: Range<usize>,
        sources: &BTreeSet<&str>,
        state_dir: &Path,
    ) -> Result<(SinkSettings, Vec<WrittenPath>), ConfigError> {
        let path = ["sinks", name];
        let probe: SinkProbe = self.deserialize(self.table(&path)?)?;
        let key = |field: &str| format!("sinks.{name}.{field}");

        let inputs = match &probe.inputs {
            None => None,
            Some(list) => {
                let names = self.distinct_list(list, &key("inputs"), false)?;
                for (index, input) in names.iter().enumerate() {
                    if !sources.contains(input.as_str()) {
                        let known: Vec<&str> = sources.iter().copied().collect();
                        return Err(self.error(
                            list.get_ref()[index].span(),
                            format!("{}[{index}]", key("inputs")),
                            format!(
                                "no source is named {input:?} (the sources are: {})",
                                known.join(", ")
                            ),
                        ));
                    }
                }
                Some(names)
            }
        };
        let event_types = match &probe.event_types {
            None => None,
            Some(list) => Some(self.distinct_list(list, &key("event_types"), true)?),
        };
        let type_name = probe.kind.get_ref();
        let Some(kind) = SINK_KINDS.iter().find(|k| k.name == type_name) else {
            let known: Vec<String> = SINK_KINDS.iter().map(|k| format!("{:?}", k.name)).collect();
            return Err(self.error(
                probe.kind.span(),
                key("type"),
                format!(
                    "unknown sink type {type_name:?} (the types are: {})",
                    known.join(", ")
                ),
            ));
        };
        let context = SinkContext {
            reader: self,
            name,
            state_dir,
        };
        let options = SinkOptions::read(&probe, kind.batch, &context).map_err(|i| self.issue(i))?;
        let table = self.table(&path)?;
        let mut rest = table.clone();
        for common in COMMON_KEYS {
            rest.get_mut().remove(*common);
        }
        let config = (kind.read)(rest, &context).map_err(|e| match e {
            ReadError::Toml(e) => error::from_toml(&e, self.text, self.root.get_ref(), self.file),
            ReadError::Invalid(issue) => self.issue(issue),
        })?;
        // A kind may choose which events it receives when `event_types` is not written
        // (a chat sink alerts on `abnormal` events); a written list always wins.
        let event_types = event_types.or_else(|| config.default_event_types());
        let mut written: Vec<WrittenPath> = config
            .written_paths()
            .into_iter()
            .map(|w| WrittenPath {
                field: key(&w.field),
                ..w
            })
            .collect();
        written.push(WrittenPath {
            field: key("dead_letter_path"),
            path: options.dead_letter_path.clone(),
            span: probe
                .dead_letter_path
                .as_ref()
                .map_or(span, |value| value.span()),
        });
        Ok((
            SinkSettings {
                name: name.to_owned(),
                filter: SinkFilter {
                    inputs,
                    event_types,
                },
                options,
                config: Arc::from(config),
            },
            written,
        ))
    }

    fn issue(&self, issue: ConfigIssue) -> ConfigError {
        self.error(issue.span, issue.key, issue.message)
    }

    // ---- values ----

    /// A non-secret name (`domain`, `user`, `project`, `access_key`):
    /// non-empty, no control characters, and whitespace only where allowed.
    fn plain(
        &self,
        value: &Spanned<String>,
        key: &str,
        spaces_allowed: bool,
    ) -> Result<String, ConfigError> {
        let text = self.expand(value, key)?;
        if text.is_empty() {
            return Err(self.error(value.span(), key, "is empty"));
        }
        let bad = |c: char| c.is_control() || (!spaces_allowed && c.is_whitespace());
        if text.chars().any(bad) || text.trim() != text {
            return Err(self.error(
                value.span(),
                key,
                "contains a control character or stray whitespace (such as a trailing newline)",
            ));
        }
        Ok(text)
    }

    /// An http(s) base URL without a trailing `/`. `example` is shown when it is not one.
    fn url(
        &self,
        value: &Spanned<String>,
        key: &str,
        example: &str,
    ) -> Result<String, ConfigError> {
        let text = self.expand(value, key)?;
        let trimmed = text.trim_end_matches('/');
        let rest = trimmed
            .strip_prefix("https://")
            .or_else(|| trimmed.strip_prefix("http://"));
        let host = rest.map(|rest| rest.split('/').next().unwrap_or(""));
        let valid = host.is_some_and(|host| !host.is_empty())
            && !trimmed
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#');
        if !valid {
            return Err(self.error(
                value.span(),
                key,
                format!("must be an http:// or https:// URL such as \"{example}\", got {text:?}"),
            ));
        }
        Ok(trimmed.to_owned())
    }

    /// A value that goes into a URL path as one segment (project and service ids).
    fn path_segment(&self, value: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
        let text = self.expand(value, key)?;
        if text.is_empty() {
            return Err(self.error(value.span(), key, "is empty"));
        }
        if text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/?#%".contains(c))
        {
            return Err(self.error(
                value.span(),
                key,
                format!("{text:?} cannot be a URL path segment: no spaces, `/`, `?`, `#` or `%`"),
            ));
        }
        Ok(text)
    }

    fn services(
        &self,
        list: &Spanned<Vec<Spanned<String>>>,
        key: &str,
    ) -> Result<Vec<String>, ConfigError> {
        if list.get_ref().is_empty() {
            return Err(self.error(
                list.span(),
                key,
                "is empty: list the ids of the services to follow, or remove the key \
                 and set `discover`",
            ));
        }
        let mut services: Vec<String> = Vec::with_capacity(list.get_ref().len());
        for (index, item) in list.get_ref().iter().enumerate() {
            let item_key = format!("{key}[{index}]");
            let id = self.path_segment(item, &item_key)?;
            if services.contains(&id) {
                return Err(self.error(item.span(), item_key, format!("{id:?} is listed twice")));
            }
            services.push(id);
        }
        Ok(services)
    }

    /// A non-empty list of non-empty, distinct strings (`inputs`, `event_types`).
    fn distinct_list(
        &self,
        list: &Spanned<Vec<Spanned<String>>>,
        key: &str,
        placeholders: bool,
    ) -> Result<Vec<String>, ConfigError> {
        if list.get_ref().is_empty() {
            return Err(self.error(
                list.span(),
                key,
                "is empty, so nothing would reach this sink; remove the key to receive all",
            ));
        }
        let mut items: Vec<String> = Vec::with_capacity(list.get_ref().len());
        for (index, item) in list.get_ref().iter().enumerate() {
            let item_key = format!("{key}[{index}]");
            let text = if placeholders {
                self.expand(item, &item_key)?
            } else {
                item.get_ref().clone()
            };
            if text.is_empty() {
                return Err(self.error(item.span(), item_key, "is empty"));
            }
            if items.contains(&text) {
                return Err(self.error(item.span(), item_key, format!("{text:?} is listed twice")));
            }
            items.push(text);
        }
        Ok(items)
    }

    fn start_at(&self, value: &Spanned<toml::Value>, key: &str) -> Result<StartAt, ConfigError> {
        let parsed = match value.get_ref() {
            toml::Value::String(text) => parse_start_at(text),
            toml::Value::Datetime(datetime) => {
                timestamp::datetime_millis(datetime).map(StartAt::At)
            }
            other => Err(format!(
                "must be \"beginning\", \"now\" or an RFC 3339 time, got a {}",
                other.type_str()
            )),
        };
        parsed.map_err(|message| self.error(value.span(), key, message))
    }

    fn duration(
        &self,
        value: &Option<Spanned<HumanDuration>>,
        key: &str,
        default: Duration,
        zero_allowed: bool,
    ) -> Result<Duration, ConfigError> {
        sink::config::checked_duration(value, default, zero_allowed)
            .map_err(|(span, message)| self.error(span, key, message))
    }

    /// `runner.shard`, after `${VAR}` (a StatefulSet's pod index) is replaced.
    fn shard(&self, value: &Spanned<String>) -> Result<Shard, ConfigError> {
        let key = "runner.shard";
        let text = self.expand(value, key)?;
        text.parse()
            .map_err(|e: source::shard::ShardError| self.error(value.span(), key, e.to_string()))
    }

    fn integer<T: TryFrom<i64>>(
        &self,
        value: &Option<Spanned<i64>>,
        key: &str,
        default: T,
        min: i64,
    ) -> Result<T, ConfigError> {
        sink::config::bounded_integer(value, default, min)
            .map_err(|(span, message)| self.error(span, key, message))
    }

    /// A path, resolved against the config file's folder. Not read.
    fn path(&self, value: &Spanned<String>, key: &str) -> Result<PathBuf, ConfigError> {
        let text = self.expand(value, key)?;
        if text.is_empty() {
            return Err(self.error(value.span(), key, "is empty"));
        }
        Ok(self.resolve(&text))
    }

    /// A path as written, resolved against the config file's folder.
    fn resolve(&self, text: &str) -> PathBuf {
        let path = Path::new(text);
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.base_dir.join(path)
        }
    }

    fn expand(&self, value: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
        placeholder::expand(value.get_ref(), self.env)
            .map_err(|e| self.error(value.span(), key, e.to_string()))
    }

    fn check_name(&self, section: &str, name: &str, span: Range<usize>) -> Result<(), ConfigError> {
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if valid {
            Ok(())
        } else {
            Err(self.error(
                span,
                format!("{section}.{name:?}"),
                "a name may hold only ASCII letters, digits, `_` and `-`",
            ))
        }
    }

    // ---- TOML plumbing ----

    fn error(
        &self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line: error::line_of(self.text, span.start),
            key: key.into(),
            message: message.into(),
        }
    }

    fn deserialize<T: Deserialize<'a>>(
        &self,
        table: Spanned<DeTable<'a>>,
    ) -> Result<T, ConfigError> {
        T::deserialize(toml::de::Deserializer::from(table))
            .map_err(|e| error::from_toml(&e, self.text, self.root.get_ref(), self.file))
    }

    /// The table at `path` (`["sinks", "archive"]`). Spans stay those of the file.
    fn table(&self, path: &[&str]) -> Result<Spanned<DeTable<'a>>, ConfigError> {
        let mut table = self.root.get_ref();
        let mut span = self.root.span();
        for (depth, segment) in path.iter().enumerate() {
            let key = || path[..=depth].join(".");
            let Some(value) = table.get(*segment) else {
                return Err(self.error(span, key(), "missing (this table is required)"));
            };
            match value.get_ref() {
                DeValue::Table(inner) => {
                    table = inner;
                    span = value.span();
                }
                other => {
                    return Err(self.error(
                        value.span(),
                        key(),
                        format!("must be a table, got a {}", other.type_str()),
                    ));
                }
            }
        }
        Ok(Spanned::new(span, table.clone()))
    }

    /// The table at `path` without the keys a probe has read, into the kind's own struct,
    /// whose `deny_unknown_fields` then refuses any key that neither knows.
    fn kind_table<T: Deserialize<'a>>(
        &self,
        path: &[&str],
        read: &[&str],
    ) -> Result<T, ConfigError> {
        let mut table = self.table(path)?;
        for key in read {
            table.get_mut().remove(*key);
        }
        self.deserialize(table)
    }
}

/// What a sink's table needs from the file around it.
struct SinkContext<'r, 'a> {
    reader: &'r Reader<'a>,
    name: &'r str,
    state_dir: &'r Path,
}

impl ConfigContext for SinkContext<'_, '_> {
    fn sink_name(&self) -> &str {
        self.name
    }

    fn expand(&self, value: &Spanned<String>, field: &str) -> Result<String, ConfigIssue> {
        placeholder::expand(value.get_ref(), self.reader.env).map_err(|e| ConfigIssue {
            key: self.key(field),
            span: value.span(),
            message: e.to_string(),
        })
    }

    fn path(&self, value: &Spanned<String>, field: &str) -> Result<PathBuf, ConfigIssue> {
        let text = self.expand(value, field)?;
        if text.is_empty() {
            return Err(self.issue(value.span(), field, "is empty".to_owned()));
        }
        Ok(self.reader.resolve(&text))
    }

    fn state_dir(&self) -> &Path {
        self.state_dir
    }
}

/// Example URLs shown when a URL is not one.
const MODELARTS_URL_EXAMPLE: &str = "https://modelarts.eu-de.otc.t-systems.com";
const IAM_URL_EXAMPLE: &str = "https://iam.eu-de.otc.t-systems.com";

/// The statuses of the ModelArts service list (`GET /v1/{project_id}/services`),
/// lowercase as the API writes them.
pub const SERVICE_STATUSES: &[&str] = &[
    "running",
    "deploying",
    "concerning",
    "failed",
    "stopped",
    "finished",
    "stopping",
    "deleting",
    "pending",
    "waiting",
];

/// A source's `region`, looked up in its `cloud`.
struct Region {
    name: String,
    cloud: Cloud,
    endpoints: RegionEndpoints,
    /// Of the `region` value, for errors about what it lacks.
    span: Range<usize>,
}

/// Warnings for services that two sources both read (the same endpoint, project and
/// service id in their `services`): each source delivers the same events under its own
/// name, so a sink that takes both receives every event twice (the ids are the same, the
/// `source` field differs). Sources that discover their services are compared when they
/// run, not here: which services they follow is not known at load time.
fn shared_services(sources: &[SourceSettings]) -> Vec<String> {
    let mut readers: BTreeMap<(String, &str, &str), Vec<&str>> = BTreeMap::new();
    for source in sources {
        let Some(project) = source.project_id.as_deref() else {
            // The project comes from the IAM token: not known before logging in.
            continue;
        };
        let endpoint = source.endpoint.trim_end_matches('/').to_ascii_lowercase();
        for service in &source.services {
            readers
                .entry((endpoint.clone(), project, service.as_str()))
                .or_default()
                .push(source.name.as_str());
        }
    }
    readers
        .into_iter()
        .filter(|(_, names)| names.len() > 1)
        .map(|((endpoint, project, service), names)| {
            format!(
                "sources {} all read service {service} of project {project} at {endpoint}: each \
                 delivers the same events under its own name, so a sink that takes them all \
                 receives every event once per source",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            )
        })
        .collect()
}
