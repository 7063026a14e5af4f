//! Reading one `[sinks.NAME]` table of the config file into a sink's validated settings,
//! and building the sink from them.
//!
//! The runner reads the keys every sink has (`type`, `inputs`, `event_types` and the
//! [options](crate::options): `batch`, `retry`, `healthcheck`, `dead_letter_*`) with
//! [`SinkProbe`], removes them ([`COMMON_KEYS`]), and hands the rest of the table to the
//! [`SinkKind`] named by `type`. The kind's own table struct has `deny_unknown_fields`,
//! so a key that neither knows is an error naming it and its line.
//!
//! Reading is pure (no I/O besides the `${VAR}` lookups of [`ConfigContext::expand`]);
//! [`SinkConfig::build`] does the I/O: opening files, reading secret files, creating
//! HTTP clients.

use crate::options::{BatchTable, HealthcheckTable, RetryTable};
use crate::{BatchSettings, Sink, SinkError, SinkFilter, SinkOptions, SinkState};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;
use toml::de::DeTable;

/// A sink's table as parsed, with the spans of the file.
pub type Table<'a> = Spanned<DeTable<'a>>;

/// A problem with one key of a sink's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The full dotted key (`sinks.archive.batch.max_events`).
    pub key: String,
    /// Where the value is in the config file (byte offsets), for the line number.
    pub span: Range<usize>,
    pub message: String,
}

/// Why a sink's table could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The table does not have the expected shape (unknown key, wrong type); the runner
    /// turns it into a message with the key and line.
    Toml(toml::de::Error),
    /// A value has the right type but is not acceptable.
    Invalid(ConfigIssue),
}

impl From<ConfigIssue> for ReadError {
    fn from(issue: ConfigIssue) -> Self {
        ReadError::Invalid(issue)
    }
}

/// What reading a sink's table needs from the config file around it.
pub trait ConfigContext {
    /// The sink's name (`[sinks.NAME]`).
    fn sink_name(&self) -> &str;

    /// The value with `${VAR}` placeholders replaced from the environment. `field` is
    /// the key below the sink (`path`, `auth.token`), for errors.
    fn expand(&self, value: &Spanned<String>, field: &str) -> Result<String, ConfigIssue>;

    /// The expanded value as a path, resolved against the config file's folder. Not read.
    fn path(&self, value: &Spanned<String>, field: &str) -> Result<PathBuf, ConfigIssue>;

    /// The folder of the state file (default dead-letter files go there).
    fn state_dir(&self) -> &Path;

    /// The full dotted key of `field` (`sinks.NAME.field`).
    fn key(&self, field: &str) -> String {
        format!("sinks.{}.{field}", self.sink_name())
    }

    /// An issue with `field` at `span`.
    fn issue(&self, span: Range<usize>, field: &str, message: String) -> ConfigIssue {
        ConfigIssue {
            key: self.key(field),
            span,
            message,
        }
    }
}

/// Reads a kind's table (common keys removed) into its validated settings.
pub type ReadFn =
    for<'a> fn(Table<'a>, &dyn ConfigContext) -> Result<Box<dyn SinkConfig>, ReadError>;

/// One kind of sink: what `type = "..."` names, its default batching, and how its
/// table is read.
pub struct SinkKind {
    /// The `type` value.
    pub name: &'static str,
    /// Batching when the table says nothing (`batch.*`).
    pub batch: BatchSettings,
    /// Reads the table (common keys already removed) into validated settings.
    pub read: ReadFn,
}

impl fmt::Debug for SinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkKind")
            .field("name", &self.name)
            .finish()
    }
}

/// One `[sinks.NAME]`, read and validated: what the engine needs to open and drive it.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    pub name: String,
    /// `inputs` and `event_types`.
    pub filter: SinkFilter,
    /// `batch`, `retry`, `healthcheck`, `dead_letter_*`.
    pub options: SinkOptions,
    /// The kind's own keys.
    pub config: Arc<dyn SinkConfig>,
}

impl SinkSettings {
    /// The kind (`type`).
    pub fn kind(&self) -> &'static str {
        self.config.kind()
    }
}

/// A file a sink writes, so that the runner can refuse two writers of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenPath {
    /// The key below the sink (`path`).
    pub field: String,
    pub path: PathBuf,
    pub span: Range<usize>,
}

/// What opening a sink knows from the state file.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// The state last committed for this sink (`None` before its first commit, or when
    /// the sink's kind changed).
    pub committed: Option<SinkState>,
    /// `Some(window)` when the state holds nothing at all of this sink, neither a state
    /// nor a position (the state file was lost, or this is the sink's first run): a sink
    /// that is its own checkpoint (the file sink) recovers its positions from its output,
    /// keeping the ids within `window` of each service's newest record.
    pub recover_within: Option<Duration>,
}

/// A position a sink recovered from its own output, for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredCursor {
    pub source: String,
    pub service_id: String,
    /// The newest `occur_time` of the service in the output.
    pub position: i64,
    /// `(id, occur_time)` of its records within the window of `position`.
    pub fingerprints: Vec<(String, i64)>,
}

/// A sink ready for delivery, the state to commit for it right away (the file sink's
/// length after start-up recovery) if it differs from the committed one, and the
/// positions it recovered from its output, if it did.
pub struct BuiltSink {
    pub sink: Arc<dyn Sink>,
    pub state: Option<SinkState>,
    pub recovered: Vec<RecoveredCursor>,
}

/// The validated settings of one kind of sink (its own keys; the common ones are in
/// [`crate::SinkOptions`]).
#[async_trait::async_trait]
pub trait SinkConfig: fmt::Debug + Send + Sync {
    /// The kind (`type`).
    fn kind(&self) -> &'static str;

    /// The settings as their own type, for callers that know the kind (tests).
    fn as_any(&self) -> &dyn std::any::Any;

    /// Files this sink writes.
    fn written_paths(&self) -> Vec<WrittenPath> {
        Vec::new()
    }

    /// How many sends the engine may have in flight at once (`request.concurrency`);
    /// commits stay in the order the batches were formed.
    fn concurrency(&self) -> usize {
        1
    }

    /// A batch timeout the kind's own keys set, which wins over `batch.timeout` (a chat
    /// sink's `group_window`: how long events of one service may wait to share a
    /// message).
    fn batch_timeout(&self) -> Option<std::time::Duration> {
        None
    }

    /// The `event_types` the sink receives when its table has none (a chat sink alerts
    /// on `abnormal` events only); `None`: every type. The runner uses it only when the
    /// table has no `event_types` key, so the user's list always wins.
    fn default_event_types(&self) -> Option<Vec<String>> {
        None
    }

    /// `runner sync --dry-run --sink NAME`: what the sink would send for `batch`,
    /// rendered (a webhook sink's messages), or `None` when the kind shows nothing beyond
    /// the records themselves. Pure: no I/O, no secret in the result.
    fn preview(&self, batch: &[crate::SharedRecord]) -> Option<Preview> {
        let _ = batch;
        None
    }

    /// Opens the sink: the I/O that reading the config does not do, from what the state
    /// file holds of it.
    async fn build(&self, name: &str, context: BuildContext) -> Result<BuiltSink, SinkError>;

    /// `runner validate --check`: whether the sink could deliver now, without changing
    /// anything a run would depend on (no start-up recovery, nothing written).
    async fn check(&self, name: &str) -> Result<(), SinkError>;
}

/// What a sink would send for one batch, for `runner sync --dry-run --sink NAME`.
/// `Display` prints it for a person: each message with the records it covers, then what
/// would be skipped or refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preview {
    /// The requests the sink would make, in order.
    pub messages: Vec<PreviewMessage>,
    /// Records acknowledged without a request (`too_old_to_alert`).
    pub skipped: Vec<crate::ItemSkip>,
    /// Records the sink would refuse before sending (a message that cannot be rendered).
    pub rejected: Vec<crate::Rejection>,
}

/// One request of a [`Preview`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewMessage {
    /// Indices of the records (in the batch) the message covers.
    pub records: Vec<usize>,
    /// One line saying what it is (`slack message: 3 events of service billing`).
    pub summary: String,
    /// The body without signatures: a chat message's JSON pretty-printed, a generic
    /// body exactly as it would be sent.
    pub body: String,
}

impl fmt::Display for Preview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.messages.len();
        for (number, message) in self.messages.iter().enumerate() {
            writeln!(
                f,
                "--- message {} of {total}: {}",
                number + 1,
                message.summary
            )?;
            writeln!(f, "{}", message.body)?;
        }
        if !self.skipped.is_empty() {
            let mut kinds: Vec<&str> = self.skipped.iter().map(|s| s.kind).collect();
            kinds.dedup();
            writeln!(
                f,
                "--- {} record(s) acknowledged without a message ({})",
                self.skipped.len(),
                kinds.join(", ")
            )?;
        }
        for rejection in &self.rejected {
            writeln!(
                f,
                "--- record {} would be refused: {}",
                rejection.index, rejection.reason
            )?;
        }
        Ok(())
    }
}

/// The keys every sink has, read before the kind's own table.
#[derive(Deserialize)]
pub struct SinkProbe {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub inputs: Option<Spanned<Vec<Spanned<String>>>>,
    pub event_types: Option<Spanned<Vec<Spanned<String>>>>,
    pub batch: Option<Spanned<BatchTable>>,
    pub retry: Option<Spanned<RetryTable>>,
    pub healthcheck: Option<Spanned<HealthcheckTable>>,
    pub dead_letter_path: Option<Spanned<String>>,
    pub dead_letter_max_bytes: Option<Spanned<i64>>,
}

/// The keys of [`SinkProbe`], removed before the kind's table is read.
pub const COMMON_KEYS: &[&str] = &[
    "type",
    "inputs",
    "event_types",
    "batch",
    "retry",
    "healthcheck",
    "dead_letter_path",
    "dead_letter_max_bytes",
];

/// Reads `table` into the kind's table struct `T` (which has `deny_unknown_fields`).
pub fn deserialize<'a, T: Deserialize<'a>>(table: Table<'a>) -> Result<T, ReadError> {
    T::deserialize(toml::de::Deserializer::from(table)).map_err(ReadError::Toml)
}

/// A humantime duration string (`"500ms"`, `"30s"`, `"10m"`), parsed while
/// deserializing so that a bad one is reported at its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"500ms\", \"30s\" or \"10m\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<HumanDuration, E> {
                humantime::parse_duration(text)
                    .map(HumanDuration)
                    .map_err(|error| {
                        E::custom(format!(
                            "invalid duration {text:?} ({error}); write e.g. \"500ms\", \"30s\" or \"10m\""
                        ))
                    })
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// An integer that must be at least `min`, or `default` when absent. An error is the
/// value's span and what is wrong with it, for the caller to put its key on.
pub fn bounded_integer<T: TryFrom<i64>>(
    value: &Option<Spanned<i64>>,
    default: T,
    min: i64,
) -> Result<T, (Range<usize>, String)> {
    let Some(value) = value else {
        return Ok(default);
    };
    let number = *value.get_ref();
    if number < min {
        return Err((
            value.span(),
            format!("must be at least {min}, got {number}"),
        ));
    }
    T::try_from(number).map_err(|_| (value.span(), format!("{number} is too large")))
}

/// A duration, or `default` when absent; zero only where `zero_allowed`. An error is
/// the value's span and what is wrong with it.
pub fn checked_duration(
    value: &Option<Spanned<HumanDuration>>,
    default: Duration,
    zero_allowed: bool,
) -> Result<Duration, (Range<usize>, String)> {
    let Some(value) = value else {
        return Ok(default);
    };
    let duration = value.get_ref().0;
    if duration.is_zero() && !zero_allowed {
        return Err((value.span(), "must be longer than 0".to_owned()));
    }
    Ok(duration)
}

/// An integer key of a sink (see [`bounded_integer`]).
pub fn integer<T: TryFrom<i64>>(
    ctx: &dyn ConfigContext,
    value: &Option<Spanned<i64>>,
    field: &str,
    default: T,
    min: i64,
) -> Result<T, ConfigIssue> {
    bounded_integer(value, default, min).map_err(|(span, message)| ctx.issue(span, field, message))
}

/// A duration key of a sink (see [`checked_duration`]).
pub fn duration(
    ctx: &dyn ConfigContext,
    value: &Option<Spanned<HumanDuration>>,
    field: &str,
    default: Duration,
    zero_allowed: bool,
) -> Result<Duration, ConfigIssue> {
    checked_duration(value, default, zero_allowed)
        .map_err(|(span, message)| ctx.issue(span, field, message))
}

/// The context of the sink kinds' config tests: the sink `name` of a config file in
/// `/etc/shipper`, `${VAR}` read from `env`, the state in `/var/lib/shipper`.
#[cfg(test)]
pub(crate) struct TestContext {
    name: &'static str,
    env: std::collections::HashMap<&'static str, &'static str>,
}

#[cfg(test)]
impl TestContext {
    pub(crate) fn new(name: &'static str, env: &[(&'static str, &'static str)]) -> Self {
        TestContext {
            name,
            env: env.iter().copied().collect(),
        }
    }
}

#[cfg(test)]
impl ConfigContext for TestContext {
    fn sink_name(&self) -> &str {
        self.name
    }

    fn expand(&self, value: &Spanned<String>, field: &str) -> Result<String, ConfigIssue> {
        let mut out = value.get_ref().clone();
        while let Some(start) = out.find("${") {
            let Some(end) = out[start..].find('}').map(|end| end + start) else {
                break;
            };
            let name = out[start + 2..end].to_owned();
            let Some(found) = self.env.get(name.as_str()) else {
                return Err(self.issue(
                    value.span(),
                    field,
                    format!("environment variable {name} is not set"),
                ));
            };
            out.replace_range(start..=end, found);
        }
        Ok(out)
    }

    fn path(&self, value: &Spanned<String>, field: &str) -> Result<PathBuf, ConfigIssue> {
        Ok(Path::new("/etc/shipper").join(self.expand(value, field)?))
    }

    fn state_dir(&self) -> &Path {
        Path::new("/var/lib/shipper")
    }
}
