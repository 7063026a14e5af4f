//! Tests of the checkpoint store against real SQLite files in temp dirs.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::*;

/// (source, service_id, sink) as string slices, for expected values.
type KeyStr<'a> = (&'a str, &'a str, &'a str);

fn state_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("state").join("events.db")
}

fn key(source: &str, service_id: &str, sink: &str) -> CursorKey {
    CursorKey {
        source: source.into(),
        service_id: service_id.into(),
        sink: sink.into(),
    }
}

/// A valid fingerprint: 64 lowercase hex digits derived from `n`.
fn fp(n: u64) -> String {
    format!("{n:064x}")
}

fn cursor_commit(key: CursorKey, position: i64, fps: &[(u64, i64)]) -> CursorCommit {
    CursorCommit {
        key,
        since: 0,
        position: Some(position),
        add_fingerprints: fps.iter().map(|&(n, t)| (fp(n), t)).collect(),
        prune_below: None,
    }
}

fn raw(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

fn table_names(path: &Path) -> Vec<String> {
    let conn = raw(path);
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type IN ('table', 'index') ORDER BY name")
        .unwrap();
    stmt.query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Three cursors over two sources, two services and two sinks, each with one
/// fingerprint, for the reset tests.
fn seeded(dir: &tempfile::TempDir) -> CheckpointStore {
    let mut store = CheckpointStore::open(&state_path(dir)).unwrap();
    store
        .commit(&Commit {
            cursors: vec![
                cursor_commit(key("prod", "svc-a", "archive"), 100, &[(1, 100)]),
                cursor_commit(key("prod", "svc-a", "console"), 100, &[(2, 100)]),
                cursor_commit(key("prod", "svc-b", "archive"), 200, &[(3, 200)]),
                cursor_commit(key("test", "svc-a", "archive"), 300, &[(4, 300)]),
            ],
            files: vec![(
                "archive".into(),
                "out/events.jsonl".into(),
                FileOffset {
                    len: 10,
                    dev: 1,
                    ino: 2,
                },
            )],
        })
        .unwrap();
    store
}

fn remaining(store: &CheckpointStore) -> Vec<(String, String, String, Option<i64>, u64)> {
    store
        .positions()
        .unwrap()
        .into_iter()
        .map(|r| (r.source, r.service_id, r.sink, r.position, r.fingerprints))
        .collect()
}

#[test]
fn open_creates_folders_schema_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let store = CheckpointStore::open(&path).unwrap();
    assert!(path.is_file());
    assert_eq!(store.path(), path);
    drop(store);

    let names = table_names(&path);
    for expected in [
        "cursor",
        "fingerprint",
        "fingerprint_by_time",
        "file_offset",
        "discovered_service",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing in {names:?}"
        );
    }
    let conn = raw(&path);
    assert_eq!(
        schema::user_version(&conn).unwrap(),
        schema::supported_version()
    );
    assert_eq!(
        schema::application_id(&conn).unwrap(),
        schema::APPLICATION_ID
    );
    let strict: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_list WHERE strict = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(strict, 4, "all four tables are STRICT");
}

#[test]
fn reopen_keeps_data_and_does_not_migrate_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let mut store = CheckpointStore::open(&path).unwrap();
    store
        .commit(&Commit {
            cursors: vec![cursor_commit(key("prod", "svc", "archive"), 42, &[(1, 42)])],
            files: vec![],
        })
        .unwrap();
    drop(store);

    // A second migration would fail on CREATE TABLE of an existing table.
    let store = CheckpointStore::open(&path).unwrap();
    let cursor = store
        .cursor(&key("prod", "svc", "archive"))
        .unwrap()
        .unwrap();
    assert_eq!(cursor.position, Some(42));
    assert_eq!(
        schema::user_version(&store.conn).unwrap(),
        schema::supported_version()
    );
}

#[test]
fn newer_user_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    drop(CheckpointStore::open(&path).unwrap());
    raw(&path).pragma_update(None, "user_version", 99).unwrap();

    let err = CheckpointStore::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            StateError::FutureVersion {
                found: 99,
                supported: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    let err = CheckpointStore::open_read_only(&path).unwrap_err();
    assert!(
        matches!(err, StateError::FutureVersion { found: 99, .. }),
        "{err:?}"
    );
    // Refusing must not touch the file.
    assert_eq!(schema::user_version(&raw(&path)).unwrap(), 99);
}

#[test]
fn another_programs_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let conn = raw(&path);
    conn.pragma_update(None, "application_id", 1234).unwrap();
    conn.execute_batch("CREATE TABLE theirs (x INTEGER)")
        .unwrap();
    drop(conn);

    let err = CheckpointStore::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            StateError::ForeignFile {
                application_id: 1234,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(table_names(&path), vec!["theirs".to_string()]);
}

#[test]
fn journal_is_wal_and_sync_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let store = CheckpointStore::open(&path).unwrap();
    let synchronous: i64 = store
        .conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .unwrap();
    assert_eq!(synchronous, 2, "synchronous=FULL");
    drop(store);
    // WAL is persistent: a fresh connection sees it.
    let mode: String = raw(&path)
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn commit_round_trips_cursors_fingerprints_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let mut store = CheckpointStore::open(&path).unwrap();
    let k = key("prod", "svc", "archive");
    assert!(store.cursor(&k).unwrap().is_none());
    assert!(store.file_offset("archive").unwrap().is_none());

    let offset = FileOffset {
        len: 4096,
        // Identities using the top bit must survive the i64 column.
        dev: u64::MAX - 1,
        ino: 1 << 63,
    };
    store
        .commit(&Commit {
            cursors: vec![CursorCommit {
                key: k.clone(),
                since: 5,
                position: Some(200),
                add_fingerprints: vec![(fp(2), 200), (fp(1), 150), (fp(3), 200)],
                prune_below: None,
            }],
            files: vec![("archive".into(), "out/events.jsonl".into(), offset)],
        })
        .unwrap();
    drop(store);

    let store = CheckpointStore::open(&path).unwrap();
    let cursor = store.cursor(&k).unwrap().unwrap();
    assert_eq!(cursor.since, 5);
    assert_eq!(cursor.position, Some(200));
    assert_eq!(
        cursor.fingerprints,
        vec![(fp(1), 150), (fp(2), 200), (fp(3), 200)],
        "ordered by occur_time, then id"
    );
    assert_eq!(
        store.file_offset("archive").unwrap(),
        Some(("out/events.jsonl".to_string(), offset))
    );
    // Other keys stay empty.
    assert!(
        store
            .cursor(&key("prod", "svc", "console"))
            .unwrap()
            .is_none()
    );
    assert!(store.file_offset("console").unwrap().is_none());
}

#[test]
fn commit_updates_in_place_and_ignores_duplicate_fingerprints() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = CheckpointStore::open(&state_path(&dir)).unwrap();
    let k = key("prod", "svc", "archive");
    store
        .commit(&Commit {
            cursors: vec![cursor_commit(k.clone(), 100, &[(1, 100)])],
            files: vec![(
                "archive".into(),
                "a.jsonl".into(),
                FileOffset {
                    len: 1,
                    dev: 1,
                    ino: 1,
                },
            )],
        })
        .unwrap();
    store
        .commit(&Commit {
            cursors: vec![CursorCommit {
                since: 7,
                position: None,
                ..cursor_commit(k.clone(), 0, &[(1, 100), (2, 120)])
            }],
            files: vec![(
                "archive".into(),
                "b.jsonl".into(),
                FileOffset {
                    len: 9,
                    dev: 2,
                    ino: 3,
                },
            )],
        })
        .unwrap();

    let cursor = store.cursor(&k).unwrap().unwrap();
    assert_eq!(cursor.since, 7);
    assert_eq!(cursor.position, None);
    assert_eq!(cursor.fingerprints, vec![(fp(1), 100), (fp(2), 120)]);
    assert_eq!(
        store.file_offset("archive").unwrap(),
        Some((
            "b.jsonl".into(),
            FileOffset {
                len: 9,
                dev: 2,
                ino: 3
            }
        ))
    );
    assert_eq!(store.positions().unwrap().len(), 1);
}

#[test]
fn prune_removes_only_below_the_bound_and_only_for_that_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = CheckpointStore::open(&state_path(&dir)).unwrap();
    let pruned = key("prod", "svc", "archive");
    let other = key("prod", "svc", "console");
    let old = [(1, 100), (2, 149), (3, 150), (4, 151)];
    store
        .commit(&Commit {
            cursors: vec![
                cursor_commit(pruned.clone(), 151, &old),
                cursor_commit(other.clone(), 151, &old),
            ],
            files: vec![],
        })
        .unwrap();
    store
        .commit(&Commit {
            cursors: vec![CursorCommit {
                prune_below: Some(150),
                ..cursor_commit(pruned.clone(), 200, &[(5, 200)])
            }],
            files: vec![],
        })
        .unwrap();

    let kept = store.cursor(&pruned).unwrap().unwrap().fingerprints;
    assert_eq!(kept, vec![(fp(3), 150), (fp(4), 151), (fp(5), 200)]);
    let untouched = store.cursor(&other).unwrap().unwrap().fingerprints;
    assert_eq!(untouched.len(), 4);
}

#[test]
fn a_failing_commit_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = CheckpointStore::open(&state_path(&dir)).unwrap();
    let k = key("prod", "svc", "archive");
    store
        .commit(&Commit {
            cursors: vec![cursor_commit(k.clone(), 100, &[(1, 100)])],
            files: vec![(
                "archive".into(),
                "a.jsonl".into(),
                FileOffset {
                    len: 10,
                    dev: 1,
                    ino: 1,
                },
            )],
        })
        .unwrap();

    let fresh = key("prod", "svc", "console");
    let mut bad = cursor_commit(k.clone(), 300, &[(2, 300)]);
    // The cursor upsert and the first fingerprint succeed; this row breaks
    // the id CHECK, after them.
    bad.add_fingerprints.push(("ABC".into(), 300));
    let err = store
        .commit(&Commit {
            cursors: vec![cursor_commit(fresh.clone(), 300, &[(9, 300)]), bad],
            files: vec![(
                "archive".into(),
                "a.jsonl".into(),
                FileOffset {
                    len: 99,
                    dev: 1,
                    ino: 1,
                },
            )],
        })
        .unwrap_err();
    assert!(matches!(err, StateError::Sqlite { .. }), "{err:?}");
    assert!(!err.is_retryable());

    assert!(store.cursor(&fresh).unwrap().is_none());
    let cursor = store.cursor(&k).unwrap().unwrap();
    assert_eq!(cursor.position, Some(100));
    assert_eq!(cursor.fingerprints, vec![(fp(1), 100)]);
    assert_eq!(store.file_offset("archive").unwrap().unwrap().1.len, 10);
    // The store stays usable after a failed commit.
    store
        .commit(&Commit {
            cursors: vec![cursor_commit(fresh.clone(), 300, &[(9, 300)])],
            files: vec![],
        })
        .unwrap();
    assert_eq!(store.cursor(&fresh).unwrap().unwrap().position, Some(300));
}

#[test]
fn fingerprints_must_be_lowercase_hex_of_64_digits() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = CheckpointStore::open(&state_path(&dir)).unwrap();
    for bad in [
        fp(1).to_uppercase().replace('0', "A"),
        format!("{}g", &fp(1)[1..]),
        fp(1)[1..].to_string(),
    ] {
        let commit = Commit {
            cursors: vec![CursorCommit {
                add_fingerprints: vec![(bad.clone(), 1)],
                ..cursor_commit(key("prod", "svc", "archive"), 1, &[])
            }],
            files: vec![],
        };
        assert!(store.commit(&commit).is_err(), "{bad} was accepted");
    }
}

#[test]
fn lock_is_exclusive_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let first = CheckpointStore::lock(&path).unwrap();
    assert_eq!(
        first.path(),
        dir.path().join("state").join("events.db.lock")
    );
    assert!(
        first.path().is_file(),
        "lock creates the parent folder and the file"
    );

    let err = CheckpointStore::lock(&path).unwrap_err();
    assert!(matches!(err, StateError::Locked { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(
        err.to_string(),
        format!(
            "another runner holds the state file {} (lock {}.lock); wait for it to finish or stop it",
            path.display(),
            path.display()
        )
    );

    drop(first);
    let again = CheckpointStore::lock(&path).unwrap();
    // A different state file has its own lock.
    let _other = CheckpointStore::lock(&dir.path().join("other.db")).unwrap();
    drop(again);
}

#[test]
fn open_read_only_of_a_missing_file_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    assert!(CheckpointStore::open_read_only(&path).unwrap().is_none());
    assert!(!path.parent().unwrap().exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn open_read_only_reads_what_a_writer_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let mut writer = CheckpointStore::open(&path).unwrap();
    writer
        .commit(&Commit {
            cursors: vec![cursor_commit(key("prod", "svc", "archive"), 7, &[(1, 7)])],
            files: vec![],
        })
        .unwrap();

    // While the writer is still open, as `runner state` beside a daemon.
    let reader = CheckpointStore::open_read_only(&path).unwrap().unwrap();
    assert_eq!(reader.positions().unwrap().len(), 1);
    let cursor = reader
        .cursor(&key("prod", "svc", "archive"))
        .unwrap()
        .unwrap();
    assert_eq!(cursor.position, Some(7));
    // Read-only means read-only.
    let write = reader.conn.execute("DELETE FROM cursor", []);
    assert!(write.is_err());
}

#[test]
fn open_read_only_refuses_an_unmigrated_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    raw(&path)
        .execute_batch("CREATE TABLE unrelated (x INTEGER)")
        .unwrap();
    let err = CheckpointStore::open_read_only(&path).unwrap_err();
    assert!(
        matches!(
            err,
            StateError::Outdated {
                found: 0,
                supported: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn positions_lists_every_cursor_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(&dir);
    let rows = store.positions().unwrap();
    let keys: Vec<_> = rows
        .iter()
        .map(|r| (r.source.as_str(), r.service_id.as_str(), r.sink.as_str()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("prod", "svc-a", "archive"),
            ("prod", "svc-a", "console"),
            ("prod", "svc-b", "archive"),
            ("test", "svc-a", "archive"),
        ]
    );
    assert_eq!(rows[2].position, Some(200));
    assert_eq!(rows[2].since, 0);
    assert_eq!(rows[2].fingerprints, 1);
    assert!(rows.iter().all(|r| r.updated_at > 1_600_000_000_000));
}

#[test]
fn reset_delete_with_each_filter() {
    let cases: [(ResetFilter, usize, &[KeyStr]); 4] = [
        (
            ResetFilter {
                source: Some("prod".into()),
                ..ResetFilter::default()
            },
            3,
            &[("test", "svc-a", "archive")],
        ),
        (
            ResetFilter {
                service_id: Some("svc-a".into()),
                ..ResetFilter::default()
            },
            3,
            &[("prod", "svc-b", "archive")],
        ),
        (
            ResetFilter {
                sink: Some("archive".into()),
                ..ResetFilter::default()
            },
            3,
            &[("prod", "svc-a", "console")],
        ),
        (
            ResetFilter {
                source: Some("prod".into()),
                service_id: Some("svc-a".into()),
                sink: Some("console".into()),
            },
            1,
            &[
                ("prod", "svc-a", "archive"),
                ("prod", "svc-b", "archive"),
                ("test", "svc-a", "archive"),
            ],
        ),
    ];
    for (filter, changed, left) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut store = seeded(&dir);
        assert_eq!(
            store.reset(&filter, ResetTo::Delete).unwrap(),
            changed,
            "{filter:?}"
        );
        let keys: Vec<_> = remaining(&store)
            .into_iter()
            .map(|(source, service, sink, _, _)| (source, service, sink))
            .collect();
        let expected: Vec<_> = left
            .iter()
            .map(|&(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(keys, expected, "{filter:?}");
        // Fingerprints of deleted cursors go too, and file offsets stay.
        let fingerprints: i64 = store
            .conn
            .query_row("SELECT count(*) FROM fingerprint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            fingerprints,
            i64::try_from(left.len()).unwrap(),
            "{filter:?}"
        );
        assert!(store.file_offset("archive").unwrap().is_some());
    }
}

#[test]
fn reset_delete_without_filter_forgets_all_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = seeded(&dir);
    assert_eq!(
        store
            .reset(&ResetFilter::default(), ResetTo::Delete)
            .unwrap(),
        4
    );
    assert!(store.positions().unwrap().is_empty());
    assert!(
        store
            .cursor(&key("prod", "svc-a", "archive"))
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .reset(&ResetFilter::default(), ResetTo::Delete)
            .unwrap(),
        0
    );
}

#[test]
fn reset_to_since_clears_position_and_fingerprints_of_matches_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = seeded(&dir);
    let filter = ResetFilter {
        sink: Some("archive".into()),
        service_id: Some("svc-a".into()),
        ..ResetFilter::default()
    };
    assert_eq!(store.reset(&filter, ResetTo::Since(1_000)).unwrap(), 2);

    for k in [
        key("prod", "svc-a", "archive"),
        key("test", "svc-a", "archive"),
    ] {
        let cursor = store.cursor(&k).unwrap().unwrap();
        assert_eq!(cursor.since, 1_000, "{k:?}");
        assert_eq!(cursor.position, None, "{k:?}");
        assert!(cursor.fingerprints.is_empty(), "{k:?}");
    }
    for k in [
        key("prod", "svc-a", "console"),
        key("prod", "svc-b", "archive"),
    ] {
        let cursor = store.cursor(&k).unwrap().unwrap();
        assert_eq!(cursor.since, 0, "{k:?}");
        assert!(cursor.position.is_some(), "{k:?}");
        assert_eq!(cursor.fingerprints.len(), 1, "{k:?}");
    }
    assert_eq!(store.file_offset("archive").unwrap().unwrap().1.len, 10);
}

#[test]
fn errors_name_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    std::fs::write(
        &path,
        b"this is not an SQLite database, not even close...........",
    )
    .unwrap();
    let err = CheckpointStore::open(&path).unwrap_err();
    assert!(matches!(err, StateError::Sqlite { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    // A parent "folder" that is a file cannot be created.
    let below_a_file = path.join("state.db");
    let err = CheckpointStore::open(&below_a_file).unwrap_err();
    assert!(matches!(err, StateError::Io { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&below_a_file.display().to_string()),
        "{err}"
    );
}

#[test]
fn a_discovered_service_that_disappears_is_reported_once_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = CheckpointStore::open(&dir.path().join("state.db")).unwrap();
    let service = |id: &str, gone: bool| DiscoveredService {
        service_id: id.to_owned(),
        service_name: format!("name-{id}"),
        gone,
    };
    let first = store
        .record_discovery("prod", &[service("a", false), service("b", false)])
        .unwrap();
    assert!(first.is_empty());
    // b is no longer listed: gone, reported once.
    let second = store
        .record_discovery("prod", &[service("a", false)])
        .unwrap();
    assert_eq!(second, vec![service("b", true)]);
    assert!(
        store
            .record_discovery("prod", &[service("a", false)])
            .unwrap()
            .is_empty()
    );
    // a is listed but its events answer 404: gone, reported once.
    let third = store
        .record_discovery("prod", &[service("a", true)])
        .unwrap();
    assert_eq!(third, vec![service("a", true)]);
    assert!(
        store
            .record_discovery("prod", &[service("a", true)])
            .unwrap()
            .is_empty()
    );
    // b comes back and disappears again: reported again.
    assert!(
        store
            .record_discovery("prod", &[service("b", false)])
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.record_discovery("prod", &[]).unwrap(),
        vec![service("b", true)]
    );
    // Other sources are not affected.
    assert!(store.record_discovery("other", &[]).unwrap().is_empty());
}

#[test]
fn a_version_1_file_is_migrated_and_keeps_its_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let path = version_1_file(&dir, 42);

    let mut store = CheckpointStore::open(&path).unwrap();
    assert_eq!(
        schema::user_version(&store.conn).unwrap(),
        schema::supported_version()
    );
    let cursor = store
        .cursor(&key("prod", "svc", "archive"))
        .unwrap()
        .unwrap();
    assert_eq!(cursor.position, Some(42));
    assert!(store.record_discovery("prod", &[]).unwrap().is_empty());
}

#[test]
fn a_version_1_file_is_readable_before_a_writer_migrates_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = version_1_file(&dir, 7);

    let reader = CheckpointStore::open_read_only(&path).unwrap().unwrap();
    let rows = reader.positions().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].position, Some(7));
    // Reading did not migrate: that is a writer's job.
    assert_eq!(schema::user_version(&reader.conn).unwrap(), 1);
}

/// A state file as the first release wrote it (schema version 1), with one
/// cursor at `position`.
fn version_1_file(dir: &tempfile::TempDir, position: i64) -> PathBuf {
    let path = dir.path().join("state.db");
    let mut store = CheckpointStore::open(&path).unwrap();
    store
        .commit(&Commit {
            cursors: vec![CursorCommit {
                key: key("prod", "svc", "archive"),
                since: 0,
                position: Some(position),
                add_fingerprints: Vec::new(),
                prune_below: None,
            }],
            files: Vec::new(),
        })
        .unwrap();
    drop(store);
    raw(&path)
        .execute_batch("DROP TABLE discovered_service; PRAGMA user_version = 1;")
        .unwrap();
    path
}
