//! The state file's schema and its migrations, keyed by SQLite's
//! `user_version`.
//!
//! Migrations are append-only: a released entry is never edited, because state
//! files in the field were created by it. A schema change is a new entry.

use rusqlite::{Connection, TransactionBehavior};

/// Marks the file as ours (`PRAGMA application_id`, "MAEV"), so that pointing
/// `[state] path` at another program's database fails instead of adding
/// tables to it.
pub(super) const APPLICATION_ID: i32 = 0x4d41_4556;

/// Entry `n` takes the schema from version `n` to `n + 1`. Visible to the
/// tests, which build files of older versions from the released entries.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: cursors per (source, service, sink), their fingerprints, file sink offsets.
    "
    CREATE TABLE cursor (
        id          INTEGER PRIMARY KEY,
        source      TEXT NOT NULL,
        service_id  TEXT NOT NULL,
        sink        TEXT NOT NULL,
        since       INTEGER NOT NULL,
        position    INTEGER,
        updated_at  INTEGER NOT NULL,
        UNIQUE (source, service_id, sink)
    ) STRICT;

    CREATE TABLE fingerprint (
        cursor_id   INTEGER NOT NULL REFERENCES cursor (id) ON DELETE CASCADE,
        id          TEXT NOT NULL
                    CHECK (length(id) = 64 AND id NOT GLOB '*[^0-9a-f]*'),
        occur_time  INTEGER NOT NULL,
        PRIMARY KEY (cursor_id, id)
    ) STRICT, WITHOUT ROWID;

    -- Pruning deletes a cursor's fingerprints below a time on every commit.
    CREATE INDEX fingerprint_by_time ON fingerprint (cursor_id, occur_time);

    CREATE TABLE file_offset (
        sink        TEXT PRIMARY KEY,
        path        TEXT NOT NULL,
        len         INTEGER NOT NULL CHECK (len >= 0),
        dev         INTEGER NOT NULL,
        ino         INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    ) STRICT;
    ",
    // 2: services a source follows through discovery, so that one that
    // disappears is reported once and its cursors are kept.
    "
    CREATE TABLE discovered_service (
        source        TEXT NOT NULL,
        service_id    TEXT NOT NULL,
        service_name  TEXT NOT NULL,
        first_seen    INTEGER NOT NULL,
        gone_at       INTEGER,
        PRIMARY KEY (source, service_id)
    ) STRICT, WITHOUT ROWID;
    ",
    // 3: state of any kind of sink, replacing the file sink's own table: each
    // sink stores a JSON text of its choosing, committed with its cursors,
    // and counts the records it dead-lettered. The file sink's offsets move
    // over as kind 'file'; dev and ino keep their signed 64-bit bit patterns.
    "
    CREATE TABLE sink_state (
        sink          TEXT PRIMARY KEY,
        kind          TEXT NOT NULL,          -- the sink's type: 'file', 'stdout', ...
        state         TEXT,                   -- JSON defined by the sink, or NULL
        dead_lettered INTEGER NOT NULL DEFAULT 0 CHECK (dead_lettered >= 0),
        updated_at    INTEGER NOT NULL
    ) STRICT;

    INSERT INTO sink_state (sink, kind, state, updated_at)
    SELECT sink, 'file', json_object('path', path, 'len', len, 'dev', dev, 'ino', ino), updated_at
    FROM file_offset;

    DROP TABLE file_offset;
    ",
    // 4: fingerprints as the 32 bytes of the id rather than its 64 hex digits
    // checked by a GLOB pattern on every insert (a backfill inserts, and soon
    // prunes, a fingerprint for most events it delivers).
    "
    CREATE TABLE fingerprint_v4 (
        cursor_id   INTEGER NOT NULL REFERENCES cursor (id) ON DELETE CASCADE,
        id          BLOB NOT NULL CHECK (length(id) = 32),
        occur_time  INTEGER NOT NULL,
        PRIMARY KEY (cursor_id, id)
    ) STRICT, WITHOUT ROWID;

    INSERT INTO fingerprint_v4 (cursor_id, id, occur_time)
    SELECT cursor_id, unhex(id), occur_time FROM fingerprint;

    DROP TABLE fingerprint;
    ALTER TABLE fingerprint_v4 RENAME TO fingerprint;
    CREATE INDEX fingerprint_by_time ON fingerprint (cursor_id, occur_time);
    ",
    // 5: the shard (K of N) whose services the file holds, so that a runner of
    // another shard, or another N, refuses it instead of mixing positions. One
    // row at most; none in a file that no writer has claimed since (an older
    // file holds an unsharded runner's positions: 0/1).
    "
    CREATE TABLE shard (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        shard_index  INTEGER NOT NULL CHECK (shard_index >= 0),
        shard_count  INTEGER NOT NULL CHECK (shard_count >= 1 AND shard_index < shard_count),
        recorded_at  INTEGER NOT NULL
    ) STRICT;
    ",
];

/// The first version with the `shard` table.
pub(super) const SHARD_VERSION: i64 = 5;

/// The first version with `sink_state`; older files keep the file sink's
/// state in `file_offset`, which a read-only open must read instead.
pub(super) const SINK_STATE_VERSION: i64 = 3;

/// The schema version this build writes and reads.
pub(super) fn supported_version() -> i64 {
    // The list has a handful of entries; it can never overflow an i64.
    MIGRATIONS.len() as i64
}

pub(super) fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

pub(super) fn application_id(conn: &Connection) -> rusqlite::Result<i32> {
    conn.pragma_query_value(None, "application_id", |row| row.get(0))
}

/// What [`migrate`] found and did.
pub(super) enum Migration {
    /// The schema is current; `from` is the version before this call.
    Done { from: i64 },
    /// The file was written by a newer build and is left untouched.
    FromTheFuture { found: i64 },
}

/// Brings the schema to [`supported_version`] in one write transaction, so two
/// processes opening a fresh file at once cannot both run a migration.
pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<Migration> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = user_version(&tx)?;
    if found > supported_version() {
        return Ok(Migration::FromTheFuture { found });
    }
    let start = usize::try_from(found).unwrap_or(0);
    for sql in MIGRATIONS.iter().skip(start) {
        tx.execute_batch(sql)?;
    }
    if found < supported_version() {
        // Both pragmas are part of the transaction: a crash mid-migration
        // leaves the old version and no half-made tables.
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", supported_version())?;
    }
    tx.commit()?;
    Ok(Migration::Done { from: found })
}
