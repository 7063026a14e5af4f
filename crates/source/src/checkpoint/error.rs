//! Errors of the checkpoint store. Every variant names the state file, because
//! an operator with several configs needs to know which file is at fault.

use crate::shard::Shard;
use std::path::PathBuf;

/// Why the state file could not be locked, opened, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Another process holds the OS lock: two runners on one state file would
    /// deliver the same events twice.
    #[error(
        "another runner holds the state file {} (lock {}); wait for it to finish or stop it",
        path.display(),
        lock_path.display()
    )]
    Locked { path: PathBuf, lock_path: PathBuf },

    /// A component of the state path that must be a folder is a file.
    #[error(
        "state file {}: {} is a file, not a folder; the state path needs it to be a folder",
        path.display(),
        file.display()
    )]
    NotAFolder { path: PathBuf, file: PathBuf },

    /// The runner may not create files in the state's folder.
    #[error(
        "state file {}: the folder {} is not writable by this user ({source}); the runner \
         creates the state file, its -wal and -shm companions and its .lock there",
        path.display(),
        folder.display()
    )]
    NotWritable {
        path: PathBuf,
        folder: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// SQLite says the file is damaged.
    #[error(
        "state file {} is corrupt ({detail}); move it away and sync again (the file sink \
         recovers its positions from its own file) or restore a backup",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },

    #[error("state file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("state file {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// Written by a newer runner; reading it with an older schema could
    /// silently lose positions, so it is refused.
    #[error(
        "state file {} has schema version {found}, but this runner supports up to {supported}; \
         upgrade the runner or point [state] path at another file",
        path.display()
    )]
    FutureVersion {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    /// A read-only open cannot migrate an older schema.
    #[error(
        "state file {} has schema version {found}, older than {supported}; \
         run `runner sync` or `runner state reset` once to upgrade it",
        path.display()
    )]
    Outdated {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    /// The file is an SQLite database of some other program.
    #[error(
        "{} is not a state file of this runner (SQLite application_id {application_id:#x}); \
         point [state] path at another file",
        path.display()
    )]
    ForeignFile { path: PathBuf, application_id: i32 },

    /// The file holds the positions of another shard (or of another number of
    /// shards): following its services from here would deliver some twice and
    /// lose others' positions, so it is refused.
    #[error(
        "state file {} belongs to shard {recorded}{}, but this runner is shard {wanted} \
         ([runner] shard or --shard); each shard needs its own state file (for example \
         [state] path = \"state/shard-${{SHARD_INDEX}}.db\"). To change the number of \
         shards, see \"Resharding\" in the README: stop every shard, then start the new \
         ones on new state files, or reuse this one with `runner state reset --shard K/N`, \
         which forgets all its positions",
        path.display(),
        if recorded.is_whole() { " (unsharded)" } else { "" }
    )]
    OtherShard {
        path: PathBuf,
        recorded: Shard,
        wanted: Shard,
    },

    /// A value that cannot be stored or that was read back out of range.
    #[error("state file {}: {detail}", path.display())]
    InvalidValue { path: PathBuf, detail: String },
}

impl StateError {
    /// Whether trying the same operation later may succeed without anyone
    /// changing anything: the lock is freed when the other runner ends, and
    /// SQLite reports busy while another connection writes.
    pub fn is_retryable(&self) -> bool {
        match self {
            StateError::Locked { .. } => true,
            StateError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            StateError::Io { .. }
            | StateError::NotAFolder { .. }
            | StateError::NotWritable { .. }
            | StateError::Corrupt { .. }
            | StateError::FutureVersion { .. }
            | StateError::Outdated { .. }
            | StateError::ForeignFile { .. }
            | StateError::OtherShard { .. }
            | StateError::InvalidValue { .. } => false,
        }
    }
}
