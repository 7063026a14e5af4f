//! The options every sink has, whatever its kind: how the engine batches records for
//! it (`batch`), retries its failures within a run (`retry`), whether `validate --check`
//! runs its healthcheck (`healthcheck`), and where its rejected records go
//! (`dead_letter_path`, `dead_letter_max_bytes`).
//!
//! `batch.max_events = 500` and `[sinks.NAME.batch] max_events = 500` are the same TOML;
//! errors name the full dotted key.

use crate::config::{ConfigContext, ConfigIssue, HumanDuration, SinkProbe, duration, integer};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// Defaults of the common options (batching defaults are per kind, see
/// [`crate::SinkKind::batch`]).
pub mod defaults {
    use std::time::Duration;

    /// Tries of one batch, counting the first.
    pub const RETRY_MAX_ATTEMPTS: u32 = 6;
    pub const RETRY_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
    pub const RETRY_MAX_BACKOFF: Duration = Duration::from_secs(30);
    /// Past this size the dead-letter file takes nothing more and the sink fails for
    /// the run, rather than dropping records silently.
    pub const DEAD_LETTER_MAX_BYTES: u64 = 100 * 1024 * 1024;
    /// The default dead-letter file is `<this folder>/<sink>.jsonl` beside the state file.
    pub const DEAD_LETTER_FOLDER: &str = "dead-letter";
}

/// `[sinks.NAME.batch]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchTable {
    pub max_events: Option<Spanned<i64>>,
    pub max_bytes: Option<Spanned<i64>>,
    pub timeout: Option<Spanned<HumanDuration>>,
}

/// `[sinks.NAME.retry]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryTable {
    pub max_attempts: Option<Spanned<i64>>,
    pub initial_backoff: Option<Spanned<HumanDuration>>,
    pub max_backoff: Option<Spanned<HumanDuration>>,
}

/// `[sinks.NAME.healthcheck]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthcheckTable {
    pub enabled: Option<bool>,
}

/// How the engine forms a sink's batches, across services: a batch is sent when it holds
/// `max_events` records or `max_bytes` bytes of JSON, when `timeout` has passed since its
/// first record, or as soon as nothing more is coming for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    pub max_events: usize,
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// How the engine retries a batch within a run: exponential backoff with jitter from
/// `initial_backoff`, honouring `Retry-After`, each wait at most `max_backoff`, at most
/// `max_attempts` tries counting the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySettings {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: defaults::RETRY_MAX_ATTEMPTS,
            initial_backoff: defaults::RETRY_INITIAL_BACKOFF,
            max_backoff: defaults::RETRY_MAX_BACKOFF,
        }
    }
}

/// The common options of one sink, validated, with every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkOptions {
    pub batch: BatchSettings,
    pub retry: RetrySettings,
    /// Whether `validate --check` runs the sink's healthcheck.
    pub healthcheck: bool,
    /// Where rejected records go (JSON lines).
    pub dead_letter_path: PathBuf,
    pub dead_letter_max_bytes: u64,
}

impl SinkOptions {
    /// The common options of a sink whose kind batches with `batch` by default.
    pub fn read(
        probe: &SinkProbe,
        batch: BatchSettings,
        ctx: &dyn ConfigContext,
    ) -> Result<SinkOptions, ConfigIssue> {
        let batch = match &probe.batch {
            None => batch,
            Some(table) => {
                let table = table.get_ref();
                BatchSettings {
                    max_events: integer(
                        ctx,
                        &table.max_events,
                        "batch.max_events",
                        batch.max_events,
                        1,
                    )?,
                    max_bytes: integer(
                        ctx,
                        &table.max_bytes,
                        "batch.max_bytes",
                        batch.max_bytes,
                        1,
                    )?,
                    timeout: duration(ctx, &table.timeout, "batch.timeout", batch.timeout, false)?,
                }
            }
        };
        let retry = match &probe.retry {
            None => RetrySettings::default(),
            Some(table) => {
                let table = table.get_ref();
                let initial_backoff = duration(
                    ctx,
                    &table.initial_backoff,
                    "retry.initial_backoff",
                    defaults::RETRY_INITIAL_BACKOFF,
                    true,
                )?;
                let max_backoff = duration(
                    ctx,
                    &table.max_backoff,
                    "retry.max_backoff",
                    defaults::RETRY_MAX_BACKOFF,
                    true,
                )?;
                if let Some(value) = &table.max_backoff
                    && max_backoff < initial_backoff
                {
                    return Err(ctx.issue(
                        value.span(),
                        "retry.max_backoff",
                        format!(
                            "must not be shorter than retry.initial_backoff ({})",
                            humantime::format_duration(initial_backoff)
                        ),
                    ));
                }
                RetrySettings {
                    max_attempts: integer(
                        ctx,
                        &table.max_attempts,
                        "retry.max_attempts",
                        defaults::RETRY_MAX_ATTEMPTS,
                        1,
                    )?,
                    initial_backoff,
                    max_backoff,
                }
            }
        };
        let healthcheck = probe
            .healthcheck
            .as_ref()
            .and_then(|table| table.get_ref().enabled)
            .unwrap_or(true);
        let dead_letter_path = match &probe.dead_letter_path {
            Some(value) => ctx.path(value, "dead_letter_path")?,
            None => ctx
                .state_dir()
                .join(defaults::DEAD_LETTER_FOLDER)
                .join(format!("{}.jsonl", ctx.sink_name())),
        };
        let dead_letter_max_bytes = integer(
            ctx,
            &probe.dead_letter_max_bytes,
            "dead_letter_max_bytes",
            defaults::DEAD_LETTER_MAX_BYTES,
            1,
        )?;
        Ok(SinkOptions {
            batch,
            retry,
            healthcheck,
            dead_letter_path,
            dead_letter_max_bytes,
        })
    }
}
