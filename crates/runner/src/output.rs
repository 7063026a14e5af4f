//! What the runner says outside the records: the logs' set-up, every human-facing line on
//! stderr (summaries, start-up line, errors, notes), and writes to stdout that stop quietly
//! when the reader goes away.
//!
//! stderr: with `--log-format text` a line is written as it reads; with `--log-format json`
//! it is one JSON object in the shape tracing-subscriber gives log events
//! (`timestamp`, `level`, `fields` with `message`, `target`), its numbers as fields, so
//! that nothing on stderr is raw text in JSON mode. Lines obey `RUST_LOG` like the logs:
//! summaries have the target `runner::summary`, other lines `runner`. Writes to stderr
//! never panic (`eprintln!` would if stderr were closed).
//!
//! stdout: [`Stdout`] writes through a locked handle; a closed pipe (`runner state | head
//! -1`) is [`AppError::StdoutClosed`], which ends the command quietly with exit 0, as
//! ripgrep does. The commands that write stdout only read the state, so nothing is lost.
//!
//! Colour: text logs use ANSI colour only when stderr is a terminal and `NO_COLOR` is
//! unset or empty (<https://no-color.org>), so files and cron mail get no escape codes.

use crate::app::AppError;
use crate::cli::LogFormat;
use pipeline::report;
use pipeline::{RunReport, ServiceSummary, SinkSummary};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Sets up the logs on stderr (stdout carries only records). The demo is quieter by
/// default, but keeps its summaries, so its records and narration stay readable.
pub fn init(format: LogFormat, demo: bool) {
    let _ = FORMAT.set(format);
    let default = if demo {
        "warn,runner::summary=info"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(colour()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Colour only for a terminal, and never with `NO_COLOR` set to something.
fn colour() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or_default()
}

/// The level of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

/// Where a line belongs, for `RUST_LOG`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// End-of-run summaries and the start-up line of `run`.
    Summary,
    /// Everything else.
    Runner,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Summary => "runner::summary",
            Target::Runner => "runner",
        }
    }
}

/// Whether `RUST_LOG` lets the line through (`tracing::enabled!` takes constants).
fn enabled(target: Target, level: Level) -> bool {
    use tracing::Level as L;
    match (target, level) {
        (Target::Summary, Level::Error) => tracing::enabled!(target: "runner::summary", L::ERROR),
        (Target::Summary, Level::Warn) => tracing::enabled!(target: "runner::summary", L::WARN),
        (Target::Summary, Level::Info) => tracing::enabled!(target: "runner::summary", L::INFO),
        (Target::Summary, Level::Debug) => tracing::enabled!(target: "runner::summary", L::DEBUG),
        (Target::Runner, Level::Error) => tracing::enabled!(target: "runner", L::ERROR),
        (Target::Runner, Level::Warn) => tracing::enabled!(target: "runner", L::WARN),
        (Target::Runner, Level::Info) => tracing::enabled!(target: "runner", L::INFO),
        (Target::Runner, Level::Debug) => tracing::enabled!(target: "runner", L::DEBUG),
    }
}

/// Writes one line (text or a JSON object) to stderr; a failing stderr is ignored, since
/// there is nowhere left to say so.
fn write(target: Target, level: Level, text: &str, fields: Map<String, Value>) {
    let line = match format() {
        LogFormat::Text => text.to_owned(),
        LogFormat::Json => {
            let mut all = Map::new();
            all.insert("message".to_owned(), Value::String(text.to_owned()));
            all.extend(fields);
            json!({
                "timestamp": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
                "level": level.name(),
                "fields": all,
                "target": target.name(),
            })
            .to_string()
        }
    };
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

/// A line for people (a note, a result) that `RUST_LOG` may filter.
pub fn say(level: Level, text: &str) {
    if enabled(Target::Runner, level) {
        write(Target::Runner, level, text, Map::new());
    }
}

/// A line that is always written: the error that ends the command, the demo's narration.
pub fn always(level: Level, text: &str) {
    write(Target::Runner, level, text, Map::new());
}

/// A summary line with its numbers as JSON fields.
fn summary(level: Level, text: &str, fields: Value) {
    if enabled(Target::Summary, level) {
        let fields = match fields {
            Value::Object(fields) => fields,
            other => Map::from_iter([("value".to_owned(), other)]),
        };
        write(Target::Summary, level, text, fields);
    }
}

/// How much of a run's report to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// `sync`: every service and sink, then the total.
    Full,
    /// A cycle of `run`: the total, plus the services and sinks something happened to
    /// (the others at debug).
    Cycle,
}

/// Writes the end-of-run (or end-of-cycle) summary on stderr and says whether all went
/// well. A failure is said here once, at ERROR.
pub fn report(report: &RunReport, elapsed: Duration, detail: Detail) -> bool {
    for problem in &report.sources {
        summary(
            Level::Error,
            &problem.line(),
            json!({"summary": "source", "source": problem.source, "failure": problem.failure.to_string()}),
        );
    }
    for service in &report.services {
        let level = if service.failure.is_some() {
            Level::Error
        } else if detail == Detail::Full || service.eventful() {
            Level::Info
        } else {
            Level::Debug
        };
        summary(level, &service.line(), service_fields(service));
    }
    for sink in &report.sinks {
        let level = if !sink.ok() {
            Level::Error
        } else if detail == Detail::Full
            || sink.delivered > 0
            || sink.dead_lettered > 0
            || sink.held > 0
            || !sink.fell_behind.is_empty()
        {
            Level::Info
        } else {
            Level::Debug
        };
        summary(level, &sink.line(), sink_fields(sink));
    }
    for (source, service) in &report.gone {
        summary(
            Level::Info,
            &report::gone_line(source, service),
            json!({"summary": "gone", "source": source, "service_id": service.service_id,
                "service_name": service.service_name}),
        );
    }
    let totals = report.totals();
    let mut fields = json!({
        "summary": "total", "services": totals.services, "fetched": totals.fetched,
        "new": totals.new, "malformed": totals.malformed, "failed": totals.failed,
        "duration_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "events_per_second": (totals.events_per_second(elapsed) * 10.0).round() / 10.0,
        "dry_run": totals.dry_run,
    });
    let counts = counts(&totals.delivered);
    if totals.dry_run {
        fields["would_deliver"] = counts;
    } else {
        fields["delivered"] = counts;
        fields["dead_lettered"] = totals.dead_lettered.into();
    }
    summary(Level::Info, &totals.line(elapsed), fields);
    report.ok()
}

fn counts(map: &BTreeMap<String, u64>) -> Value {
    Value::Object(
        map.iter()
            .map(|(sink, n)| (sink.clone(), Value::from(*n)))
            .collect(),
    )
}

fn service_fields(s: &ServiceSummary) -> Value {
    let mut fields = json!({
        "summary": "service", "source": s.source, "service_id": s.service_id,
        "service_name": s.service_name, "fetched": s.fetched, "new": s.new,
        "dead_lettered": counts(&s.dead_lettered), "malformed": s.malformed,
        "requests": s.requests, "failed": s.failure.is_some(), "gone": s.gone,
        "dry_run": s.dry_run,
    });
    if s.dry_run {
        fields["would_deliver"] = counts(&s.would_deliver);
    } else {
        fields["delivered"] = counts(&s.delivered);
    }
    if let Some(failure) = &s.failure {
        fields["failure"] = failure.to_string().into();
    }
    fields
}

fn sink_fields(s: &SinkSummary) -> Value {
    let mut fields = json!({
        "summary": "sink", "sink": s.name, "kind": s.kind, "delivered": s.delivered,
        "batches": s.batches, "requests": s.requests, "dead_lettered": s.dead_lettered,
        "held": s.held, "failed": s.failure.is_some(),
    });
    if s.dead_lettered > 0 {
        fields["dead_letter_path"] = s.dead_letter_path.display().to_string().into();
    }
    if let Some(failure) = &s.failure {
        fields["failure"] = failure.to_string().into();
    }
    fields
}

/// The start-up line of `run`: version, config, sources, sinks, interval, and where
/// `/metrics`, `/live` and `/health` are served (`[runner] listen`).
pub fn starting(config: &crate::config::Config, listen: Option<std::net::SocketAddr>) {
    let sources: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
    let sinks: Vec<String> = config
        .sinks
        .iter()
        .map(|s| format!("{} ({})", s.name, s.kind()))
        .collect();
    let interval = humantime::format_duration(config.runner.interval).to_string();
    let shard = config.runner.shard;
    let mut text = format!(
        "runner {}: config {}, {} source(s) {}, {} sink(s) {}, interval {interval}{}",
        env!("CARGO_PKG_VERSION"),
        config.file.display(),
        sources.len(),
        sources.join(", "),
        sinks.len(),
        sinks.join(", "),
        if shard.is_whole() {
            String::new()
        } else {
            format!(", shard {shard}")
        }
    );
    if let Some(addr) = listen {
        text.push_str(&format!(", metrics and health on http://{addr}"));
    }
    let sinks: Vec<Value> = config
        .sinks
        .iter()
        .map(|s| json!({"name": s.name, "kind": s.kind()}))
        .collect();
    let mut fields = json!({"summary": "start", "version": env!("CARGO_PKG_VERSION"),
            "config": config.file.display().to_string(), "sources": sources, "sinks": sinks,
            "interval": interval, "shard": shard.to_string()});
    if let (Some(addr), Value::Object(map)) = (listen, &mut fields) {
        map.insert("listen".to_owned(), Value::String(addr.to_string()));
    }
    summary(Level::Info, &text, fields);
}

/// Whether backfills get progress bars rather than progress lines: text logs on a
/// terminal.
pub fn progress_bars() -> bool {
    use std::io::IsTerminal;
    format() == LogFormat::Text && std::io::stderr().is_terminal()
}

/// A progress line of a long pull: `progress: SOURCE/SERVICE: fetched F of T events
/// (P%), R events/s` (`, done` once it ended).
pub fn progress(progress: &telemetry::Progress, now: std::time::Instant) {
    if !enabled(Target::Runner, Level::Info) {
        return;
    }
    let rate = progress.events_per_second(now);
    let of = match progress.total {
        Some(total) if total > 0 => {
            let percent = (progress.fetched.min(total) * 100) / total;
            format!(" of {total} events ({percent}%)")
        }
        Some(total) => format!(" of {total} events"),
        None => " events".to_owned(),
    };
    let done = progress.finished.is_some();
    let text = format!(
        "progress: {}/{}: fetched {}{of}, {rate:.0} events/s{}",
        progress.source,
        progress.service,
        progress.fetched,
        if done { ", done" } else { "" }
    );
    let fields = json!({"progress": {"source": progress.source, "service_id": progress.service,
        "fetched": progress.fetched, "total": progress.total, "events_per_second": rate,
        "done": done}});
    let Value::Object(fields) = fields else {
        return;
    };
    write(Target::Runner, Level::Info, &text, fields);
}

/// Standard output for a command's lines, through a locked handle. A reader that went
/// away ends the command quietly ([`AppError::StdoutClosed`]).
pub struct Stdout {
    out: std::io::StdoutLock<'static>,
}

impl Stdout {
    pub fn lock() -> Self {
        Stdout {
            out: std::io::stdout().lock(),
        }
    }

    /// Writes `line` and a newline.
    pub fn line(&mut self, line: impl std::fmt::Display) -> Result<(), AppError> {
        writeln!(self.out, "{line}").map_err(stdout_error)
    }

    /// Flushes what is buffered (the handle is line-buffered; this catches the end).
    pub fn finish(mut self) -> Result<(), AppError> {
        self.out.flush().map_err(stdout_error)
    }
}

fn stdout_error(e: std::io::Error) -> AppError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        AppError::StdoutClosed
    } else {
        AppError::Io {
            what: "cannot write to stdout".to_owned(),
            source: e,
        }
    }
}
