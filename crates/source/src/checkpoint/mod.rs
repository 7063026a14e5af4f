//! The checkpoint store: the one SQLite state file per config, shared by all
//! sources. It owns the positions each (source, service, sink) has
//! acknowledged, the fingerprints that let a sink skip what it already has
//! within `lookback`, and each sink's own state (a JSON text the sink defines,
//! such as the file sink's committed length) with a count of the records it
//! dead-lettered. No SQL lives outside this module.
//!
//! A commit is one transaction, written with `synchronous=FULL`: a sink's
//! state and its cursors move together or not at all, and the file sink's
//! exactly-once promise (cut an uncommitted tail at start-up) holds only if a
//! committed length survives a power cut.
//!
//! The methods block; async callers run them on `spawn_blocking`.

mod error;
mod schema;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::shard::Shard;
pub use error::StateError;
use schema::Migration;

/// How long a statement waits for another connection's write lock before
/// failing with "database is locked", unless the caller chooses otherwise with
/// [`CheckpointStore::open_with_busy_timeout`].
///
/// Long enough to ride out a short write lock that is not ours: a backup tool
/// copying the file, or an operator's `sqlite3` shell. A lock held longer
/// fails the commit, which the delivery engine handles by rolling the sink
/// back and failing it for the run; waiting without end would instead stall
/// every sink behind one stuck lock, silently.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The columns of [`SinkStateRow`], from `sink_state`.
const SINK_STATE_ROWS: &str = "SELECT sink, kind, state, dead_lettered, updated_at FROM sink_state";

/// The same columns from a file older than [`schema::SINK_STATE_VERSION`],
/// where only the file sink had state. The JSON is built exactly as migration
/// 3 builds it, so that a read-only caller sees the same text before and after
/// a writer migrates the file.
const SINK_STATE_ROWS_FROM_FILE_OFFSET: &str = "SELECT sink, 'file',
        json_object('path', path, 'len', len, 'dev', dev, 'ino', ino), 0, updated_at
     FROM file_offset";

/// The `WHERE` clause of [`CheckpointStore::reset`]: `?1`..`?3` are the
/// filter's source, service and sink, and NULL matches any.
const MATCHING: &str = "(?1 IS NULL OR source = ?1)
     AND (?2 IS NULL OR service_id = ?2)
     AND (?3 IS NULL OR sink = ?3)";

/// The exclusive OS lock on `<state path>.lock`; held until dropped.
///
/// The lock is `flock`-style and tied to the open file: the kernel releases it
/// when the process ends in any way, so a SIGKILLed runner never blocks the
/// next one and no stale-lock cleanup is needed.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    lock_path: PathBuf,
}

impl StateLock {
    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.lock_path
    }
}

/// Names one cursor: a sink's place in one service of one source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CursorKey {
    pub source: String,
    pub service_id: String,
    pub sink: String,
}

/// A cursor as stored.
#[derive(Debug, Clone, Default)]
pub struct CursorState {
    /// Epoch ms; older events are never delivered to this sink.
    pub since: i64,
    /// Newest `occur_time` (epoch ms) this sink acknowledged; `None` before the first.
    pub position: Option<i64>,
    /// `(id, occur_time)` of acknowledged events within `lookback` of `position`,
    /// ordered by `occur_time`, then id.
    pub fingerprints: Vec<(String, i64)>,
}

/// The new state of one cursor, written by [`CheckpointStore::commit`].
#[derive(Debug, Clone)]
pub struct CursorCommit {
    pub key: CursorKey,
    pub since: i64,
    pub position: Option<i64>,
    /// Fingerprints to add; ones already stored are kept as they are.
    pub add_fingerprints: Vec<(String, i64)>,
    /// Deletes this cursor's fingerprints with `occur_time` below it.
    pub prune_below: Option<i64>,
}

/// A sink's own state to store, replacing its previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStateCommit {
    pub sink: String,
    /// The sink's type (`"file"`, `"stdout"`, ...), so that a sink whose type
    /// changed in the config can tell that the state is not its own.
    pub kind: String,
    /// JSON defined by the sink; the store does not look inside.
    pub state: Option<String>,
}

/// Records a sink dead-lettered, to add to its counter.
///
/// A struct rather than a `(sink, count)` pair because the entry may create
/// the sink's row, which needs a kind. On an existing row the kind is left as
/// it is: kind and state belong together, and only a [`SinkStateCommit`]
/// replaces them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLettered {
    pub sink: String,
    pub kind: String,
    pub count: u64,
}

/// Everything one acknowledgement changes, written atomically.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    pub cursors: Vec<CursorCommit>,
    /// Sink states to store (kind and JSON replace the previous row;
    /// `dead_lettered` is kept).
    pub sink_states: Vec<SinkStateCommit>,
    /// Records each sink dead-lettered among what this commit acknowledges,
    /// added to its counter (the state is kept). A sink without a row gets
    /// one with this kind and no state. Entries for the same sink add up.
    pub dead_lettered: Vec<DeadLettered>,
}

/// One sink's row, as `runner state` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStateRow {
    pub sink: String,
    pub kind: String,
    pub state: Option<String>,
    /// Records dead-lettered over the life of the state file.
    pub dead_lettered: u64,
    /// Epoch ms of the last change.
    pub updated_at: i64,
}

/// A service that discovery found for a source, and whether it is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredService {
    pub service_id: String,
    pub service_name: String,
    pub gone: bool,
}

/// One cursor as shown by `runner state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionRow {
    pub source: String,
    pub service_id: String,
    pub sink: String,
    pub since: i64,
    pub position: Option<i64>,
    /// How many fingerprints the cursor holds.
    pub fingerprints: u64,
    /// Epoch ms of the last change.
    pub updated_at: i64,
}

/// Which cursors `state reset` touches; `None` matches every value, so the
/// default matches all cursors.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResetFilter {
    pub source: Option<String>,
    pub service_id: Option<String>,
    pub sink: Option<String>,
}

/// What `state reset` does to the matching cursors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// Forget the rows: the source's `start_at` applies again.
    Delete,
    /// `since` = this epoch ms, `position` = none, fingerprints cleared.
    Since(i64),
}

/// The open state file.
#[derive(Debug)]
pub struct CheckpointStore {
    conn: Connection,
    path: PathBuf,
    /// The file's schema version: the supported one after a read-write open,
    /// possibly older after a read-only one, which picks the tables to read.
    version: i64,
}

impl CheckpointStore {
    /// Takes the exclusive OS lock on `<path>.lock`, creating the parent
    /// folder. `Err(StateError::Locked)` when another process holds it.
    pub fn lock(path: &Path) -> Result<StateLock, StateError> {
        // Lock the file the path leads to: two configs may reach one state file through
        // a symlink, and both must take the same lock.
        let target = resolve_path(path);
        create_parent(&target)?;
        let lock_path = lock_path(&target);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|source| io_error(path, &lock_path, false, source))?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock {
                _file: file,
                lock_path,
            }),
            Err(TryLockError::WouldBlock) => Err(StateError::Locked {
                path: path.to_path_buf(),
                lock_path,
            }),
            Err(TryLockError::Error(source)) => Err(StateError::Io {
                path: lock_path,
                source,
            }),
        }
    }

    /// Opens the state file read-write, creating it and its parent folders,
    /// and brings its schema up to date. Refuses a file written by a newer
    /// runner or by another program. Waits [`DEFAULT_BUSY_TIMEOUT`] for
    /// another connection's write lock.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        Self::open_with_busy_timeout(path, DEFAULT_BUSY_TIMEOUT)
    }

    /// [`open`](Self::open), waiting up to `busy_timeout` for another
    /// connection's write lock (in the migration and in every later write)
    /// before failing with a retryable [`StateError::Sqlite`].
    pub fn open_with_busy_timeout(path: &Path, busy_timeout: Duration) -> Result<Self, StateError> {
        create_parent(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sqlite_error(path))?;
        let mut store = CheckpointStore {
            conn,
            path: path.to_path_buf(),
            version: schema::supported_version(),
        };
        store.configure(true, busy_timeout)?;
        store.check_application_id()?;
        match schema::migrate(&mut store.conn).map_err(sqlite_error(path))? {
            // A file with no schema yet was just created: there was nothing to migrate.
            Migration::Done { from: 0 } => {
                tracing::info!(path = %path.display(), "Created the state file.");
            }
            Migration::Done { from } if from < schema::supported_version() => {
                tracing::info!(
                    path = %path.display(),
                    from,
                    to = schema::supported_version(),
                    "Migrated the state file."
                );
            }
            Migration::Done { .. } => {}
            Migration::FromTheFuture { found } => {
                return Err(StateError::FutureVersion {
                    path: path.to_path_buf(),
                    found,
                    supported: schema::supported_version(),
                });
            }
        }
        Ok(store)
    }

    /// Opens the state file read-only, for `runner state` and `--dry-run`.
    /// `Ok(None)` when it does not exist; never creates anything.
    pub fn open_read_only(path: &Path) -> Result<Option<Self>, StateError> {
        let exists = path.try_exists().map_err(|source| StateError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if !exists {
            return Ok(None);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sqlite_error(path))?;
        let mut store = CheckpointStore {
            conn,
            path: path.to_path_buf(),
            version: 0,
        };
        store.configure(false, DEFAULT_BUSY_TIMEOUT)?;
        store.check_application_id()?;
        let found = schema::user_version(&store.conn).map_err(sqlite_error(path))?;
        let supported = schema::supported_version();
        if found > supported {
            return Err(StateError::FutureVersion {
                path: path.to_path_buf(),
                found,
                supported,
            });
        }
        // Read-only callers (`state`, `--dry-run`) must work on a file an
        // older release wrote, before a writer migrates it. They read
        // `cursor` and `fingerprint`, which every version since 1 has, and
        // sink state, which lives in `sink_state` from version 3 and in
        // version 1's `file_offset` before: the version kept here picks the
        // table. Fingerprint ids are hex text before version 4 and bytes
        // since; each row is read as it is. `discovered_service` (version 2)
        // is only used by writers.
        if found < 1 {
            return Err(StateError::Outdated {
                path: path.to_path_buf(),
                found,
                supported,
            });
        }
        store.version = found;
        Ok(Some(store))
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether SQLite finds the file intact (`PRAGMA quick_check`), for
    /// `runner validate --check`.
    pub fn check_integrity(&self) -> Result<(), StateError> {
        let mut stmt = self
            .conn
            .prepare("PRAGMA quick_check")
            .map_err(self.sqlite())?;
        let problems: Vec<String> = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .and_then(Iterator::collect)
            .map_err(self.sqlite())?;
        if problems.iter().all(|p| p == "ok") {
            return Ok(());
        }
        Err(StateError::Corrupt {
            path: self.path.clone(),
            detail: problems.into_iter().take(3).collect::<Vec<_>>().join("; "),
        })
    }

    /// The stored cursor, or `None` when this sink has never committed for
    /// this service (or was reset with [`ResetTo::Delete`]).
    pub fn cursor(&self, key: &CursorKey) -> Result<Option<CursorState>, StateError> {
        let row = self
            .conn
            .query_row(
                "SELECT id, since, position FROM cursor
                 WHERE source = ?1 AND service_id = ?2 AND sink = ?3",
                params![key.source, key.service_id, key.sink],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, Option<i64>>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(self.sqlite())?;
        let Some((cursor_id, since, position)) = row else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, occur_time FROM fingerprint
                 WHERE cursor_id = ?1 ORDER BY occur_time, id",
            )
            .map_err(self.sqlite())?;
        let fingerprints = stmt
            .query_map([cursor_id], |row| Ok((fingerprint_id(row)?, row.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(self.sqlite())?;
        Ok(Some(CursorState {
            since,
            position,
            fingerprints,
        }))
    }

    /// The stored state of `sink`, or `None` before its first commit.
    pub fn sink_state(&self, sink: &str) -> Result<Option<SinkStateRow>, StateError> {
        let raw = self
            .conn
            .prepare_cached(&format!("{} WHERE sink = ?1", self.sink_state_rows()))
            .and_then(|mut stmt| stmt.query_row([sink], raw_sink_state).optional())
            .map_err(self.sqlite())?;
        raw.map(|raw| self.sink_state_row(raw)).transpose()
    }

    /// Every sink's stored state, ordered by sink.
    pub fn sink_states(&self) -> Result<Vec<SinkStateRow>, StateError> {
        let raw: Vec<RawSinkState> = self
            .conn
            .prepare_cached(&format!("{} ORDER BY sink", self.sink_state_rows()))
            .and_then(|mut stmt| {
                stmt.query_map([], raw_sink_state)
                    .and_then(Iterator::collect)
            })
            .map_err(self.sqlite())?;
        raw.into_iter()
            .map(|raw| self.sink_state_row(raw))
            .collect()
    }

    /// Writes a whole acknowledgement in one durable transaction: cursors
    /// (since, position, updated_at), new fingerprints (duplicates ignored),
    /// pruning below each cursor's bound, sink states and dead-letter counts.
    /// On error nothing is written.
    pub fn commit(&mut self, commit: &Commit) -> Result<(), StateError> {
        let path = self.path.clone();
        let now = now_ms();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite_error(&path))?;
        for cursor in &commit.cursors {
            let key = &cursor.key;
            let cursor_id: i64 = tx
                .prepare_cached(
                    "INSERT INTO cursor (source, service_id, sink, since, position, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (source, service_id, sink) DO UPDATE SET
                         since = excluded.since,
                         position = excluded.position,
                         updated_at = excluded.updated_at
                     RETURNING id",
                )
                .and_then(|mut stmt| {
                    stmt.query_row(
                        params![
                            key.source,
                            key.service_id,
                            key.sink,
                            cursor.since,
                            cursor.position,
                            now
                        ],
                        |row| row.get(0),
                    )
                })
                .map_err(sqlite_error(&path))?;
            {
                // ON CONFLICT names the key, unlike INSERT OR IGNORE, so a
                // malformed id still fails the commit instead of vanishing.
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO fingerprint (cursor_id, id, occur_time) VALUES (?1, ?2, ?3)
                         ON CONFLICT (cursor_id, id) DO NOTHING",
                    )
                    .map_err(sqlite_error(&path))?;
                for (id, occur_time) in &cursor.add_fingerprints {
                    insert
                        .execute(params![cursor_id, FingerprintId(id), occur_time])
                        .map_err(sqlite_error(&path))?;
                }
            }
            if let Some(bound) = cursor.prune_below {
                tx.prepare_cached(
                    "DELETE FROM fingerprint WHERE cursor_id = ?1 AND occur_time < ?2",
                )
                .and_then(|mut stmt| stmt.execute(params![cursor_id, bound]))
                .map_err(sqlite_error(&path))?;
            }
        }
        for sink in &commit.sink_states {
            tx.prepare_cached(
                "INSERT INTO sink_state (sink, kind, state, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (sink) DO UPDATE SET
                     kind = excluded.kind,
                     state = excluded.state,
                     updated_at = excluded.updated_at",
            )
            .and_then(|mut stmt| stmt.execute(params![sink.sink, sink.kind, sink.state, now]))
            .map_err(sqlite_error(&path))?;
        }
        for entry in &commit.dead_lettered {
            let count = i64::try_from(entry.count).map_err(|_| StateError::InvalidValue {
                path: path.clone(),
                detail: format!(
                    "sink {:?}: dead-letter count {} does not fit the state file",
                    entry.sink, entry.count
                ),
            })?;
            // A sum past i64::MAX becomes a REAL in SQLite, which the STRICT
            // INTEGER column refuses: the commit fails rather than wraps.
            tx.prepare_cached(
                "INSERT INTO sink_state (sink, kind, state, dead_lettered, updated_at)
                 VALUES (?1, ?2, NULL, ?3, ?4)
                 ON CONFLICT (sink) DO UPDATE SET
                     dead_lettered = dead_lettered + excluded.dead_lettered,
                     updated_at = excluded.updated_at",
            )
            .and_then(|mut stmt| stmt.execute(params![entry.sink, entry.kind, count, now]))
            .map_err(sqlite_error(&path))?;
        }
        tx.commit().map_err(sqlite_error(&path))
    }

    /// Whether `sink` has a cursor on any service.
    pub fn sink_has_cursors(&self, sink: &str) -> Result<bool, StateError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM cursor WHERE sink = ?1)",
                [sink],
                |row| row.get(0),
            )
            .map_err(self.sqlite())
    }

    /// Every cursor, ordered by source, service and sink.
    pub fn positions(&self) -> Result<Vec<PositionRow>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT c.source, c.service_id, c.sink, c.since, c.position, c.updated_at,
                        (SELECT count(*) FROM fingerprint f WHERE f.cursor_id = c.id)
                 FROM cursor c
                 ORDER BY c.source, c.service_id, c.sink",
            )
            .map_err(self.sqlite())?;
        let rows = stmt
            .query_map([], |row| {
                Ok(PositionRow {
                    source: row.get(0)?,
                    service_id: row.get(1)?,
                    sink: row.get(2)?,
                    since: row.get(3)?,
                    position: row.get(4)?,
                    updated_at: row.get(5)?,
                    // count(*) is never negative.
                    fingerprints: row.get::<_, i64>(6)?.unsigned_abs(),
                })
            })
            .and_then(Iterator::collect)
            .map_err(self.sqlite())?;
        Ok(rows)
    }

    /// The shard this file holds the positions of: `None` when no writer has
    /// claimed it (a new file, or one an older release wrote).
    pub fn shard(&self) -> Result<Option<Shard>, StateError> {
        if self.version < schema::SHARD_VERSION {
            return Ok(None);
        }
        Self::read_shard(&self.conn, &self.path)
    }

    fn read_shard(conn: &Connection, path: &Path) -> Result<Option<Shard>, StateError> {
        let row: Option<(i64, i64)> = conn
            .query_row(
                "SELECT shard_index, shard_count FROM shard WHERE id = 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(sqlite_error(path))?;
        row.map(|(index, count)| {
            u32::try_from(index)
                .ok()
                .zip(u32::try_from(count).ok())
                .and_then(|(index, count)| Shard::new(index, count))
                .ok_or_else(|| StateError::InvalidValue {
                    path: path.to_path_buf(),
                    detail: format!("shard {index}/{count} is out of range"),
                })
        })
        .transpose()
    }

    /// Makes sure the file holds the positions of shard `wanted`, before a
    /// writer (`sync`, `run`, `state reset`, `dead-letter replay`) touches
    /// them. A file that records another shard is refused with
    /// [`StateError::OtherShard`]. A file with no record is claimed for
    /// `wanted` when it holds no position yet; one that holds positions and
    /// no record was written by an unsharded runner (an older release), so it
    /// is shard `0/1`, and claimed only by `0/1`. Read and write are one
    /// transaction, so two writers cannot both claim a new file.
    pub fn claim_shard(&mut self, wanted: Shard) -> Result<(), StateError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite_error(&path))?;
        let recorded = Self::read_shard(&tx, &path)?;
        Self::owner(&tx, &path, recorded, wanted)?;
        Self::write_shard(&tx, &path, wanted)?;
        tx.commit().map_err(sqlite_error(&path))
    }

    /// What [`claim_shard`](Self::claim_shard) checks, without writing: for
    /// readers (`--dry-run`, a filtered `state reset`'s preview).
    pub fn check_shard(&self, wanted: Shard) -> Result<(), StateError> {
        Self::owner(&self.conn, &self.path, self.shard()?, wanted)
    }

    /// Refuses `wanted` unless the file is its: `recorded`, or with no record
    /// 0/1 when it holds positions and anyone's when it holds none.
    fn owner(
        conn: &Connection,
        path: &Path,
        recorded: Option<Shard>,
        wanted: Shard,
    ) -> Result<(), StateError> {
        let recorded = match recorded {
            Some(recorded) => recorded,
            None => {
                let unsharded: bool = conn
                    .query_row("SELECT EXISTS (SELECT 1 FROM cursor)", [], |row| row.get(0))
                    .map_err(sqlite_error(path))?;
                if unsharded { Shard::WHOLE } else { wanted }
            }
        };
        if recorded == wanted {
            return Ok(());
        }
        Err(StateError::OtherShard {
            path: path.to_path_buf(),
            recorded,
            wanted,
        })
    }

    /// Records `shard` as the file's, whatever it recorded before: for a
    /// reset that forgot every position (resharding a file in place).
    pub fn record_shard(&mut self, shard: Shard) -> Result<(), StateError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite_error(&path))?;
        Self::write_shard(&tx, &path, shard)?;
        tx.commit().map_err(sqlite_error(&path))
    }

    fn write_shard(conn: &Connection, path: &Path, shard: Shard) -> Result<(), StateError> {
        conn.execute(
            "INSERT INTO shard (id, shard_index, shard_count, recorded_at) VALUES (1, ?1, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET
                 shard_index = excluded.shard_index,
                 shard_count = excluded.shard_count,
                 recorded_at = excluded.recorded_at
             WHERE shard_index != excluded.shard_index OR shard_count != excluded.shard_count",
            params![shard.index(), shard.count(), now_ms()],
        )
        .map(drop)
        .map_err(sqlite_error(path))
    }

    /// Resets the cursors that match `filter` and returns how many changed.
    /// Sink states are left alone: what a sink wrote (a file on disk still
    /// holds it) is the sink's business, not the cursors'.
    pub fn reset(&mut self, filter: &ResetFilter, to: ResetTo) -> Result<usize, StateError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite_error(&path))?;
        let matching = params![filter.source, filter.service_id, filter.sink];
        // Fingerprints go explicitly rather than by cascade, so the result
        // does not depend on the connection's foreign_keys setting.
        tx.execute(
            &format!(
                "DELETE FROM fingerprint WHERE cursor_id IN (SELECT id FROM cursor WHERE {MATCHING})"
            ),
            matching,
        )
        .map_err(sqlite_error(&path))?;
        let changed = match to {
            ResetTo::Delete => {
                tx.execute(&format!("DELETE FROM cursor WHERE {MATCHING}"), matching)
            }
            ResetTo::Since(since) => tx.execute(
                &format!(
                    "UPDATE cursor SET since = ?4, position = NULL, updated_at = ?5
                     WHERE {MATCHING}"
                ),
                params![
                    filter.source,
                    filter.service_id,
                    filter.sink,
                    since,
                    now_ms()
                ],
            ),
        }
        .map_err(sqlite_error(&path))?;
        tx.commit().map_err(sqlite_error(&path))?;
        Ok(changed)
    }

    /// Records what discovery found for `source` this run: each service with
    /// whether it is gone (no longer listed, or its events answer 404).
    /// Services known from earlier runs and missing from `seen` are gone too.
    /// Returns the services that went from present to gone in this call, so
    /// that each disappearance is reported once; their cursors are kept.
    pub fn record_discovery(
        &mut self,
        source: &str,
        seen: &[DiscoveredService],
    ) -> Result<Vec<DiscoveredService>, StateError> {
        let path = self.path.clone();
        let now = now_ms();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite_error(&path))?;
        let known: Vec<DiscoveredService> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT service_id, service_name, gone_at IS NOT NULL
                     FROM discovered_service WHERE source = ?1",
                )
                .map_err(sqlite_error(&path))?;
            stmt.query_map([source], |row| {
                Ok(DiscoveredService {
                    service_id: row.get(0)?,
                    service_name: row.get(1)?,
                    gone: row.get(2)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(sqlite_error(&path))?
        };
        let mut now_gone = Vec::new();
        let absent = known
            .iter()
            .filter(|k| !seen.iter().any(|s| s.service_id == k.service_id))
            .map(|k| DiscoveredService {
                gone: true,
                ..k.clone()
            });
        for service in seen.iter().cloned().chain(absent) {
            let was_gone = known
                .iter()
                .find(|k| k.service_id == service.service_id)
                .map(|k| k.gone);
            tx.execute(
                "INSERT INTO discovered_service (source, service_id, service_name, first_seen, gone_at)
                 VALUES (?1, ?2, ?3, ?4, CASE WHEN ?5 THEN ?4 END)
                 ON CONFLICT (source, service_id) DO UPDATE SET
                     service_name = excluded.service_name,
                     gone_at = CASE WHEN ?5 THEN coalesce(gone_at, ?4) END",
                params![source, service.service_id, service.service_name, now, service.gone],
            )
            .map_err(sqlite_error(&path))?;
            if service.gone && was_gone != Some(true) {
                now_gone.push(service);
            }
        }
        tx.commit().map_err(sqlite_error(&path))?;
        Ok(now_gone)
    }

    /// Per-connection settings. Journal mode is a property of the file and can
    /// only be set by a writer.
    fn configure(&self, writable: bool, busy_timeout: Duration) -> Result<(), StateError> {
        self.conn
            .busy_timeout(busy_timeout)
            .map_err(self.sqlite())?;
        self.conn
            .pragma_update(None, "foreign_keys", true)
            .map_err(self.sqlite())?;
        if writable {
            // WAL lets `runner state` read while a runner commits.
            let mode: String = self
                .conn
                .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
                .map_err(self.sqlite())?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StateError::InvalidValue {
                    path: self.path.clone(),
                    detail: format!(
                        "SQLite refused write-ahead logging (journal mode {mode}); \
                         the state file must be on a local file system"
                    ),
                });
            }
            // FULL syncs the WAL on every commit: a committed file length
            // must survive a power cut, or the file sink would cut good data.
            self.conn
                .pragma_update(None, "synchronous", "FULL")
                .map_err(self.sqlite())?;
        }
        Ok(())
    }

    fn check_application_id(&self) -> Result<(), StateError> {
        let id = schema::application_id(&self.conn).map_err(self.sqlite())?;
        // 0 is a fresh file (or one from before the id existed); migrate sets it.
        if id != 0 && id != schema::APPLICATION_ID {
            return Err(StateError::ForeignFile {
                path: self.path.clone(),
                application_id: id,
            });
        }
        Ok(())
    }

    fn sqlite(&self) -> impl Fn(rusqlite::Error) -> StateError + '_ {
        sqlite_error(&self.path)
    }

    /// The query of [`SinkStateRow`]s for this file's schema version.
    fn sink_state_rows(&self) -> &'static str {
        if self.version >= schema::SINK_STATE_VERSION {
            SINK_STATE_ROWS
        } else {
            SINK_STATE_ROWS_FROM_FILE_OFFSET
        }
    }

    fn sink_state_row(&self, raw: RawSinkState) -> Result<SinkStateRow, StateError> {
        let (sink, kind, state, dead_lettered, updated_at) = raw;
        let dead_lettered = u64::try_from(dead_lettered).map_err(|_| StateError::InvalidValue {
            path: self.path.clone(),
            detail: format!("sink {sink:?} has a negative dead-letter count {dead_lettered}"),
        })?;
        Ok(SinkStateRow {
            sink,
            kind,
            state,
            dead_lettered,
            updated_at,
        })
    }
}

/// A row of [`SINK_STATE_ROWS`] as SQLite returns it, before the count is
/// checked.
type RawSinkState = (String, String, Option<String>, i64, i64);

fn raw_sink_state(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawSinkState> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

/// An event id as the `fingerprint` table stores it from version 4: its 32 bytes. Only
/// an id as `record::event_id` writes it (64 lowercase hex digits) converts.
struct FingerprintId<'a>(&'a str);

impl rusqlite::ToSql for FingerprintId<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        let id = self.0;
        let mut bytes = [0u8; 32];
        let lowercase_hex = id.len() == 64
            && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            && hex::decode_to_slice(id, &mut bytes).is_ok();
        if !lowercase_hex {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                format!("fingerprint {id:?} is not 64 lowercase hex digits").into(),
            ));
        }
        Ok(rusqlite::types::ToSqlOutput::Owned(
            rusqlite::types::Value::Blob(bytes.to_vec()),
        ))
    }
}

/// The id in column 0 of a `fingerprint` row: 32 bytes from version 4, hex text in the
/// older files a read-only open reads as they are.
fn fingerprint_id(row: &rusqlite::Row<'_>) -> rusqlite::Result<String> {
    match row.get_ref(0)? {
        rusqlite::types::ValueRef::Blob(bytes) => Ok(hex::encode(bytes)),
        _ => row.get(0),
    }
}

fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> StateError + '_ {
    move |source| match source.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen) => {
            StateError::NotWritable {
                path: path.to_path_buf(),
                folder: path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf(),
                source: Box::new(source),
            }
        }
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            StateError::Corrupt {
                path: path.to_path_buf(),
                detail: source.to_string(),
            }
        }
        _ => StateError::Sqlite {
            path: path.to_path_buf(),
            source,
        },
    }
}

fn create_parent(path: &Path) -> Result<(), StateError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            fs::create_dir_all(parent).map_err(|source| io_error(path, parent, true, source))
        }
        _ => Ok(()),
    }
}

/// An I/O error about `what` (the state's folder, when `what_is_folder`, or its lock
/// file) in terms of its real cause: a file where a folder of the path should be, or a
/// folder this user may not write.
fn io_error(path: &Path, what: &Path, what_is_folder: bool, source: std::io::Error) -> StateError {
    // A component of the path that should be a folder, exists, and is not one.
    let file = what
        .ancestors()
        .skip(usize::from(!what_is_folder))
        .find(|a| !a.as_os_str().is_empty() && a.metadata().is_ok_and(|m| !m.is_dir()));
    if let Some(file) = file {
        return StateError::NotAFolder {
            path: path.to_path_buf(),
            file: file.to_path_buf(),
        };
    }
    if source.kind() == std::io::ErrorKind::PermissionDenied {
        let folder = what
            .ancestors()
            .find(|a| a.is_dir())
            .unwrap_or(what)
            .to_path_buf();
        return StateError::NotWritable {
            path: path.to_path_buf(),
            folder,
            source: Box::new(source),
        };
    }
    StateError::Io {
        path: what.to_path_buf(),
        source,
    }
}

/// `path` as the lock sees it: absolute, with every symlink resolved, also one at the
/// end that points to a file not created yet, and `.`/`..` applied. Reads links and
/// metadata, never writes. Two paths that lead to one file resolve to the same path.
pub fn resolve_path(path: &Path) -> PathBuf {
    let mut current = normalized(&std::path::absolute(path).unwrap_or_else(|_| path.to_owned()));
    // A bounded number of hops, like the kernel's, against a loop of links.
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => match fs::read_link(&current) {
                Ok(target) => {
                    let base = current.parent().map(Path::to_owned).unwrap_or_default();
                    current = normalized(&base.join(target));
                }
                Err(_) => break,
            },
            Ok(_) => return fs::canonicalize(&current).unwrap_or(current),
            Err(_) => break,
        }
    }
    // Not there (yet): resolve the longest existing ancestor, keep the rest as written.
    let mut rest = Vec::new();
    let mut base = current.clone();
    while fs::symlink_metadata(&base).is_err() {
        match base.file_name() {
            Some(name) => rest.push(name.to_owned()),
            None => break,
        }
        if !base.pop() {
            break;
        }
    }
    let mut resolved = fs::canonicalize(&base).unwrap_or(base);
    for name in rest.iter().rev() {
        resolved.push(name);
    }
    resolved
}

/// `path` without `.` and with `..` applied, without touching the disk.
fn normalized(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// `<path>.lock`, keeping the full file name (`events.db.lock`), so that the
/// lock sits beside the file it guards and is obviously its companion.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".lock");
    PathBuf::from(name)
}

/// Wall-clock epoch ms for `updated_at`, which is for display only; a clock
/// before 1970 shows as 0 rather than failing a commit.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
