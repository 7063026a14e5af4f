//! Tests of the checkpoint store against real SQLite files in temp dirs.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use rusqlite::Connection;
use serde_json::{Value, json};

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

fn sink_state(sink: &str, kind: &str, state: Option<&str>) -> SinkStateCommit {
    SinkStateCommit {
        sink: sink.into(),
        kind: kind.into(),
        state: state.map(Into::into),
    }
}

fn dead(sink: &str, kind: &str, count: u64) -> DeadLettered {
    DeadLettered {
        sink: sink.into(),
        kind: kind.into(),
        count,
    }
}

/// `(sink, kind, state, dead_lettered)` of every row, for comparisons that
/// leave out `updated_at`.
fn sink_rows(store: &CheckpointStore) -> Vec<(String, String, Option<String>, u64)> {
    store
        .sink_states()
        .unwrap()
        .into_iter()
        .map(|r| (r.sink, r.kind, r.state, r.dead_lettered))
        .collect()
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
            sink_states: vec![sink_state("archive", "file", Some(r#"{"len":10}"#))],
            dead_lettered: vec![dead("archive", "file", 2)],
        })
        .unwrap();
    store
}

/// The sink rows [`seeded`] stores.
fn seeded_sink_rows() -> Vec<(String, String, Option<String>, u64)> {
    vec![(
        "archive".into(),
        "file".into(),
        Some(r#"{"len":10}"#.into()),
        2,
    )]
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
        "discovered_service",
        "sink_state",
        "shard",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing in {names:?}"
        );
    }
    assert!(!names.iter().any(|n| n == "file_offset"), "{names:?}");
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
    assert_eq!(strict, 5, "all five tables are STRICT");
}

#[test]
fn reopen_keeps_data_and_does_not_migrate_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let mut store = CheckpointStore::open(&path).unwrap();
    store
        .commit(&Commit {
            cursors: vec![cursor_commit(key("prod", "svc", "archive"), 42, &[(1, 42)])],
            ..Commit::default()
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
                supported,
                ..
            } if supported == schema::supported_version()
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
fn commit_round_trips_cursors_fingerprints_and_sink_states() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let mut store = CheckpointStore::open(&path).unwrap();
    let k = key("prod", "svc", "archive");
    assert!(store.cursor(&k).unwrap().is_none());
    assert!(store.sink_state("archive").unwrap().is_none());
    assert!(store.sink_states().unwrap().is_empty());

    let state = r#"{"path":"out/events.jsonl","len":4096}"#;
    store
        .commit(&Commit {
            cursors: vec![CursorCommit {
                key: k.clone(),
                since: 5,
                position: Some(200),
                add_fingerprints: vec![(fp(2), 200), (fp(1), 150), (fp(3), 200)],
                prune_below: None,
            }],
            sink_states: vec![sink_state("archive", "file", Some(state))],
            dead_lettered: vec![dead("console", "stdout", 3)],
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
    let archive = store.sink_state("archive").unwrap().unwrap();
    assert_eq!(
        archive,
        SinkStateRow {
            sink: "archive".into(),
            kind: "file".into(),
            state: Some(state.into()),
            dead_lettered: 0,
            updated_at: archive.updated_at,
        }
    );
    assert!(archive.updated_at > 1_600_000_000_000);
    assert_eq!(
        sink_rows(&store),
        vec![
            ("archive".into(), "file".into(), Some(state.into()), 0),
            ("console".into(), "stdout".into(), None, 3),
        ]
    );
    // Other keys stay empty.
    assert!(
        store
            .cursor(&key("prod", "svc", "console"))
            .unwrap()
            .is_none()
    );
    assert!(store.sink_state("elastic").unwrap().is_none());
}

#[test]
fn commit_updates_in_place_and_ignores_duplicate_fingerprints() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = CheckpointStore::open(&state_path(&dir)).unwrap();
    let k = key("prod", "svc", "archive");
    store
        .commit(&Commit {
            cursors: vec![cursor_commit(k.clone(), 100, &[(1, 100)])],
            sink_states: vec![sink_state("archive", "file", Some(r#"{"len":1}"#))],
            ..Commit::default()
        })
        .unwrap();
    store
        .commit(&Commit {
            cursors: vec![CursorCommit {
                since: 7,
                position: None,
                ..cursor_commit(k.clone(), 0, &[(1, 100), (2, 120)])
            }],
            // The sink's type changed in the config: kind and state both go.
            sink_states: vec![sink_state("archive", "stdout", None)],
            ..Commit::default()
        })
        .unwrap();

    let cursor = store.cursor(&k).unwrap().unwrap();
    assert_eq!(cursor.since, 7);
    assert_eq!(cursor.position, None);
    assert_eq!(cursor.fingerprints, vec![(fp(1), 100), (fp(2), 120)]);
    assert_eq!(
        sink_rows(&store),
        vec![("archive".into(), "stdout".into(), None, 0)]
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
            ..Commit::default()
        })
        .unwrap();
    store
        .commit(&Commit {
            cursors: vec![CursorCommit {
                prune_below: Some(150),
                ..cursor_commit(pruned.clone(), 200, &[(5, 200)])
            }],
            ..Commit::default()
        })
        .unwrap();

    let kept = store.cursor(&pruned).unwrap().unwrap().fingerprints;
    assert_eq!(kept, vec![(fp(3), 150), (fp(4), 151), (fp(5), 200)]);
    let untouched = store.cursor(&other).unwrap().unwrap().fingerprints;
    assert_eq!(untouched.len(), 4);
}

/// What [`a_failing_commit_leaves_nothing_behind`] stores before each
/// failing commit: a cursor, two sink states and two counters, one of them at
/// the largest count the file holds.
fn before_failing_commits(store: &mut CheckpointStore) {
    store
        .commit(&Commit {
            cursors: vec![cursor_commit(
                key("prod", "svc", "archive"),
                100,
                &[(1, 100)],
            )],
            sink_states: vec![
                sink_state("archive", "file", Some(r#"{"len":10}"#)),
                sink_state("full", "stdout", None),
            ],
            dead_lettered: vec![
                dead("archive", "file", 1),
                dead("full", "stdout", i64::MAX.cast_unsigned()),
            ],
        })
        .unwrap();
}

#[test]
fn a_failing_commit_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = CheckpointStore::open(&state_path(&dir)).unwrap();
    before_failing_commits(&mut store);
    let k = key("prod", "svc", "archive");
    let fresh = key("prod", "svc", "console");
    let stored = sink_rows(&store);

    // Every commit carries all three parts, and fails in a different one:
    // in the cursors, in a count SQLite refuses (the sum passes i64::MAX)
    // and in a count that does not fit the column at all. Whatever order
    // the parts are written in, some case fails after the others were.
    let mut bad_fingerprint = cursor_commit(k.clone(), 300, &[(2, 300)]);
    // The cursor upsert and the first fingerprint succeed; this row breaks
    // the id CHECK, after them.
    bad_fingerprint.add_fingerprints.push(("ABC".into(), 300));
    let failing = [
        (
            bad_fingerprint,
            dead("archive", "file", 5),
            "fingerprint CHECK",
            false,
        ),
        (
            cursor_commit(k.clone(), 300, &[(2, 300)]),
            dead("full", "stdout", 1),
            "counter overflow",
            false,
        ),
        (
            cursor_commit(k.clone(), 300, &[(2, 300)]),
            dead("archive", "file", u64::MAX),
            "count out of range",
            true,
        ),
    ];
    // `refused`: the store turns the value down before SQLite sees it.
    for (cursor, last_count, case, refused) in failing {
        let err = store
            .commit(&Commit {
                cursors: vec![cursor_commit(fresh.clone(), 300, &[(9, 300)]), cursor],
                sink_states: vec![
                    sink_state("archive", "file", Some(r#"{"len":99}"#)),
                    sink_state("elastic", "elasticsearch", Some("{}")),
                ],
                dead_lettered: vec![
                    dead("archive", "file", 5),
                    dead("elastic", "elasticsearch", 7),
                    last_count,
                ],
            })
            .unwrap_err();
        if refused {
            assert!(
                matches!(err, StateError::InvalidValue { .. }),
                "{case}: {err:?}"
            );
        } else {
            assert!(matches!(err, StateError::Sqlite { .. }), "{case}: {err:?}");
        }
        assert!(!err.is_retryable(), "{case}: {err:?}");

        assert!(store.cursor(&fresh).unwrap().is_none(), "{case}");
        let cursor = store.cursor(&k).unwrap().unwrap();
        assert_eq!(cursor.position, Some(100), "{case}");
        assert_eq!(cursor.fingerprints, vec![(fp(1), 100)], "{case}");
        assert_eq!(sink_rows(&store), stored, "{case}");
    }

    // The store stays usable after a failed commit.
    store
        .commit(&Commit {
            cursors: vec![cursor_commit(fresh.clone(), 300, &[(9, 300)])],
            dead_lettered: vec![dead("archive", "file", 5)],
            ..Commit::default()
        })
        .unwrap();
    assert_eq!(store.cursor(&fresh).unwrap().unwrap().position, Some(300));
    assert_eq!(
        store.sink_state("archive").unwrap().unwrap().dead_lettered,
        6
    );
}

#[test]
fn dead_letter_counts_add_up_and_states_and_counts_keep_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let mut store = CheckpointStore::open(&path).unwrap();
    let only_counts = |counts: Vec<DeadLettered>| Commit {
        dead_lettered: counts,
        ..Commit::default()
    };
    let only_state = |state: SinkStateCommit| Commit {
        sink_states: vec![state],
        ..Commit::default()
    };
    let state = r#"{"path":"a.jsonl","len":7}"#;

    // A count for a sink without a row creates one, with its kind and no state.
    store
        .commit(&only_counts(vec![dead("archive", "file", 3)]))
        .unwrap();
    assert_eq!(
        sink_rows(&store),
        vec![("archive".into(), "file".into(), None, 3)]
    );

    // Storing a state keeps the count.
    store
        .commit(&only_state(sink_state("archive", "file", Some(state))))
        .unwrap();
    assert_eq!(
        sink_rows(&store),
        vec![("archive".into(), "file".into(), Some(state.into()), 3)]
    );

    // Adding keeps the state and the kind; entries of one commit add up.
    store
        .commit(&only_counts(vec![
            dead("archive", "file", 2),
            dead("console", "stdout", 1),
            // A kind that differs from the row's does not replace it.
            dead("archive", "other", 4),
        ]))
        .unwrap();
    let expected = vec![
        ("archive".into(), "file".into(), Some(state.into()), 9),
        ("console".into(), "stdout".into(), None, 1),
    ];
    assert_eq!(sink_rows(&store), expected);

    // Replacing the state, even with none, keeps the count.
    store
        .commit(&only_state(sink_state("console", "stdout", Some("{}"))))
        .unwrap();
    store
        .commit(&only_state(sink_state("archive", "file", None)))
        .unwrap();
    let expected = vec![
        ("archive".into(), "file".into(), None, 9),
        ("console".into(), "stdout".into(), Some("{}".into()), 1),
    ];
    assert_eq!(sink_rows(&store), expected);
    drop(store);

    // Durable, and the same through a read-only open.
    let reader = CheckpointStore::open_read_only(&path).unwrap().unwrap();
    assert_eq!(sink_rows(&reader), expected);
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
            ..Commit::default()
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
            sink_states: vec![sink_state("archive", "file", Some(r#"{"len":7}"#))],
            dead_lettered: vec![dead("archive", "file", 1)],
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
    assert_eq!(
        sink_rows(&reader),
        vec![(
            "archive".into(),
            "file".into(),
            Some(r#"{"len":7}"#.into()),
            1
        )]
    );
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
                supported,
                ..
            } if supported == schema::supported_version()
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
        // Fingerprints of deleted cursors go too, and sink states stay.
        let fingerprints: i64 = store
            .conn
            .query_row("SELECT count(*) FROM fingerprint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            fingerprints,
            i64::try_from(left.len()).unwrap(),
            "{filter:?}"
        );
        assert_eq!(sink_rows(&store), seeded_sink_rows(), "{filter:?}");
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
    assert_eq!(sink_rows(&store), seeded_sink_rows());
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
    assert!(matches!(err, StateError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("corrupt"), "{err}");

    // A parent "folder" that is a file cannot be created: the error says which file.
    let below_a_file = path.join("state.db");
    for err in [
        CheckpointStore::open(&below_a_file).unwrap_err(),
        CheckpointStore::lock(&below_a_file).unwrap_err(),
    ] {
        assert!(matches!(err, StateError::NotAFolder { .. }), "{err:?}");
        let shown = err.to_string();
        assert!(
            shown.contains(&below_a_file.display().to_string()),
            "{shown}"
        );
        assert!(
            shown.contains(&format!("{} is a file, not a folder", path.display())),
            "{shown}"
        );
    }
}

#[test]
fn the_lock_follows_symlinks_to_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    std::fs::create_dir_all(dir.path().join("alt")).unwrap();
    let real = dir.path().join("state/s.db");
    let link = dir.path().join("alt/s.db");
    // Dangling until the first open creates the state file.
    std::os::unix::fs::symlink("../state/s.db", &link).unwrap();
    let held = CheckpointStore::lock(&real).unwrap();
    let err = CheckpointStore::lock(&link).unwrap_err();
    assert!(matches!(err, StateError::Locked { .. }), "{err:?}");
    drop(held);
    let held = CheckpointStore::lock(&link).unwrap();
    assert!(CheckpointStore::lock(&real).is_err());
    assert_eq!(held.path(), resolve_path(&real).with_file_name("s.db.lock"));
    assert_eq!(resolve_path(&link), resolve_path(&real));
    assert_eq!(
        resolve_path(&dir.path().join("alt/../state/./new/x.db")),
        resolve_path(&dir.path().join("state")).join("new/x.db")
    );
}

#[test]
fn a_corrupt_state_file_fails_the_integrity_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    let store = CheckpointStore::open(&path).unwrap();
    store.check_integrity().unwrap();
    drop(store);
    let mut bytes = std::fs::read(&path).unwrap();
    for byte in bytes.iter_mut().skip(100).take(4000) {
        *byte = 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    let outcome = CheckpointStore::open_read_only(&path)
        .and_then(|store| store.expect("the file exists").check_integrity());
    assert!(
        matches!(outcome, Err(StateError::Corrupt { .. })),
        "{outcome:?}"
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

/// A `file_offset` row of a file older than version 3:
/// `(sink, path, len, dev, ino)`, with dev and ino as the bit patterns the file
/// sink stored.
type OldOffset<'a> = (&'a str, &'a str, i64, i64, i64);

/// Offsets for the older-version tests; `archive`'s dev and ino use the top
/// bit, as real device and inode numbers may.
const OLD_OFFSETS: &[OldOffset] = &[
    (
        "archive",
        "out/events.jsonl",
        4096,
        (u64::MAX - 1).cast_signed(),
        (1_u64 << 63).cast_signed(),
    ),
    ("backup", "out/\"quoted\" é.jsonl", 0, 1, 2),
];

/// The `updated_at` of every row [`older_file`] writes.
const OLD_UPDATED_AT: i64 = 1_700_000_000_000;

/// A state file as the release with schema `version` wrote it, built from the
/// released migrations: one cursor at `position` and a `file_offset` row per
/// entry of `offsets`.
fn older_file(
    dir: &tempfile::TempDir,
    version: usize,
    position: i64,
    offsets: &[OldOffset],
) -> PathBuf {
    assert!(
        (1..schema::MIGRATIONS.len()).contains(&version),
        "{version} is not an older version"
    );
    let path = dir.path().join("state.db");
    let conn = raw(&path);
    // Every release set WAL when it created the file.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "wal", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    for sql in &schema::MIGRATIONS[..version] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "application_id", schema::APPLICATION_ID)
        .unwrap();
    conn.pragma_update(None, "user_version", i64::try_from(version).unwrap())
        .unwrap();
    conn.execute(
        "INSERT INTO cursor (source, service_id, sink, since, position, updated_at)
         VALUES ('prod', 'svc', 'archive', 0, ?1, ?2)",
        (position, OLD_UPDATED_AT),
    )
    .unwrap();
    for &(sink, file, len, dev, ino) in offsets {
        conn.execute(
            "INSERT INTO file_offset (sink, path, len, dev, ino, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            (sink, file, len, dev, ino, OLD_UPDATED_AT),
        )
        .unwrap();
    }
    path
}

/// Checks that `rows` are [`OLD_OFFSETS`] as sink states: kind "file", the
/// JSON holding the same values, dev and ino as the same bit patterns.
fn assert_old_offsets_as_sink_states(rows: &[SinkStateRow]) {
    assert_eq!(rows.len(), OLD_OFFSETS.len(), "{rows:?}");
    for (row, &(sink, file, len, dev, ino)) in rows.iter().zip(OLD_OFFSETS) {
        assert_eq!(row.sink, sink);
        assert_eq!(row.kind, "file", "{row:?}");
        assert_eq!(row.dead_lettered, 0, "{row:?}");
        assert_eq!(row.updated_at, OLD_UPDATED_AT, "{row:?}");
        let state: Value = serde_json::from_str(row.state.as_deref().unwrap()).unwrap();
        assert_eq!(
            state,
            json!({"path": file, "len": len, "dev": dev, "ino": ino}),
            "{row:?}"
        );
    }
    // How the file sink reads them back: i64, cast to the u64 identity.
    let archive: Value = serde_json::from_str(rows[0].state.as_deref().unwrap()).unwrap();
    assert_eq!(
        archive["dev"].as_i64().unwrap().cast_unsigned(),
        u64::MAX - 1
    );
    assert_eq!(archive["ino"].as_i64().unwrap().cast_unsigned(), 1 << 63);
}

#[test]
fn a_version_1_file_is_migrated_and_keeps_its_cursors_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let path = older_file(&dir, 1, 42, OLD_OFFSETS);

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
    assert_old_offsets_as_sink_states(&store.sink_states().unwrap());
}

#[test]
fn a_version_2_file_moves_its_file_offsets_into_sink_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = older_file(&dir, 2, 42, OLD_OFFSETS);
    // What a read-only caller saw before the migration.
    let before = CheckpointStore::open_read_only(&path)
        .unwrap()
        .unwrap()
        .sink_states()
        .unwrap();

    let mut store = CheckpointStore::open(&path).unwrap();
    assert_eq!(
        schema::user_version(&store.conn).unwrap(),
        schema::supported_version()
    );
    let names = table_names(&path);
    assert!(!names.iter().any(|n| n == "file_offset"), "{names:?}");
    assert!(names.iter().any(|n| n == "sink_state"), "{names:?}");
    let rows = store.sink_states().unwrap();
    assert_old_offsets_as_sink_states(&rows);
    // The same rows, to the byte of the JSON, as before the migration.
    assert_eq!(rows, before);
    assert_eq!(store.sink_state("archive").unwrap().as_ref(), rows.first());

    // The migrated rows take counts and new states like any other.
    store
        .commit(&Commit {
            dead_lettered: vec![dead("archive", "file", 2)],
            ..Commit::default()
        })
        .unwrap();
    let archive = store.sink_state("archive").unwrap().unwrap();
    assert_eq!(archive.dead_lettered, 2);
    assert_eq!(archive.state, rows[0].state);
}

// Version 4 stores fingerprints as 32 bytes: a version 3 file's hex ids move over, read
// back the same before the migration (read-only) and after it, and still stop a re-send.
#[test]
fn a_version_3_file_keeps_its_fingerprints_as_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = older_file(&dir, 3, 42, &[]);
    let cursor_key = key("prod", "svc", "archive");
    {
        let conn = raw(&path);
        for n in [1_u32, 2, 3] {
            conn.execute(
                "INSERT INTO fingerprint (cursor_id, id, occur_time)
                 SELECT id, ?1, ?2 FROM cursor",
                (fp(n.into()), 40 + i64::from(n)),
            )
            .unwrap();
        }
    }
    let expected: Vec<(String, i64)> = [1_u32, 2, 3]
        .map(|n| (fp(n.into()), 40 + i64::from(n)))
        .into();
    let reader = CheckpointStore::open_read_only(&path).unwrap().unwrap();
    let before = reader.cursor(&cursor_key).unwrap().unwrap();
    assert_eq!(before.fingerprints, expected);
    drop(reader);

    let mut store = CheckpointStore::open(&path).unwrap();
    assert_eq!(
        schema::user_version(&store.conn).unwrap(),
        schema::supported_version()
    );
    let after = store.cursor(&cursor_key).unwrap().unwrap();
    assert_eq!(after.fingerprints, expected);
    assert_eq!(after.position, Some(42));
    let stored: Vec<i64> = store
        .conn
        .prepare("SELECT length(id) FROM fingerprint")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(stored, [32, 32, 32]);
    // A migrated id is the same key as the one a commit writes: adding it again adds
    // nothing, and a new one is added.
    store
        .commit(&Commit {
            cursors: vec![CursorCommit {
                add_fingerprints: vec![(fp(2), 42), (fp(4), 44)],
                ..cursor_commit(cursor_key.clone(), 44, &[])
            }],
            ..Commit::default()
        })
        .unwrap();
    let ids: Vec<String> = store
        .cursor(&cursor_key)
        .unwrap()
        .unwrap()
        .fingerprints
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, [fp(1), fp(2), fp(3), fp(4)]);
}

#[test]
fn an_unmigrated_older_file_is_readable_with_synthesized_sink_states() {
    for version in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let path = older_file(&dir, version, 7, OLD_OFFSETS);

        let reader = CheckpointStore::open_read_only(&path).unwrap().unwrap();
        let rows = reader.positions().unwrap();
        assert_eq!(rows.len(), 1, "version {version}");
        assert_eq!(rows[0].position, Some(7), "version {version}");
        let states = reader.sink_states().unwrap();
        assert_old_offsets_as_sink_states(&states);
        assert_eq!(
            reader.sink_state("backup").unwrap().as_ref(),
            states.get(1),
            "version {version}"
        );
        assert!(
            reader.sink_state("console").unwrap().is_none(),
            "version {version}"
        );
        // Reading did not migrate: that is a writer's job.
        assert_eq!(
            schema::user_version(&reader.conn).unwrap(),
            i64::try_from(version).unwrap()
        );
        drop(reader);
        let names = table_names(&path);
        assert!(names.iter().any(|n| n == "file_offset"), "{names:?}");
        assert!(!names.iter().any(|n| n == "sink_state"), "{names:?}");
    }
}

#[test]
fn open_uses_the_default_busy_timeout_unless_told_otherwise() {
    let busy_timeout = |store: &CheckpointStore| -> i64 {
        store
            .conn
            .pragma_query_value(None, "busy_timeout", |r| r.get(0))
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let default_ms = i64::try_from(DEFAULT_BUSY_TIMEOUT.as_millis()).unwrap();
    assert_eq!(
        busy_timeout(&CheckpointStore::open(&path).unwrap()),
        default_ms
    );
    let store = CheckpointStore::open_with_busy_timeout(&path, Duration::from_millis(250)).unwrap();
    assert_eq!(busy_timeout(&store), 250);
    let reader = CheckpointStore::open_read_only(&path).unwrap().unwrap();
    assert_eq!(busy_timeout(&reader), default_ms);
}

/// Holds the write lock of the state file at `path` from another connection,
/// as a backup tool or a `sqlite3` shell would, with a row of its own written
/// in it. Returns once the lock is held; the thread commits when `release`
/// yields (a message or a hang-up).
fn hold_write_lock(path: &Path, release: impl FnOnce() + Send + 'static) -> thread::JoinHandle<()> {
    let path = path.to_path_buf();
    let (held_tx, held_rx) = mpsc::channel();
    let holder = thread::spawn(move || {
        let mut conn = raw(&path);
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        tx.execute(
            "INSERT INTO sink_state (sink, kind, updated_at) VALUES ('holder', 'test', 0)",
            [],
        )
        .unwrap();
        held_tx.send(()).unwrap();
        release();
        tx.commit().unwrap();
    });
    held_rx.recv().unwrap();
    holder
}

/// A commit with every part, for the busy-timeout tests.
fn commit_of_every_part() -> Commit {
    Commit {
        cursors: vec![cursor_commit(
            key("prod", "svc", "archive"),
            100,
            &[(1, 100)],
        )],
        sink_states: vec![sink_state("archive", "file", Some("{}"))],
        dead_lettered: vec![dead("console", "stdout", 1)],
    }
}

#[test]
fn a_commit_rides_out_a_short_foreign_write_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let mut store = CheckpointStore::open_with_busy_timeout(&path, Duration::from_secs(5)).unwrap();

    // The lock is held when the commit starts: it succeeds only by waiting.
    let holder = hold_write_lock(&path, || thread::sleep(Duration::from_millis(200)));
    store.commit(&commit_of_every_part()).unwrap();
    holder.join().unwrap();

    assert_eq!(
        store
            .cursor(&key("prod", "svc", "archive"))
            .unwrap()
            .unwrap()
            .position,
        Some(100)
    );
    let sinks: Vec<_> = sink_rows(&store).into_iter().map(|r| r.0).collect();
    assert_eq!(sinks, ["archive", "console", "holder"]);
}

#[test]
fn a_write_lock_held_past_the_busy_timeout_fails_the_commit_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let mut store =
        CheckpointStore::open_with_busy_timeout(&path, Duration::from_millis(100)).unwrap();

    let (release_tx, release_rx) = mpsc::channel::<()>();
    // Held until the commit has returned.
    let holder = hold_write_lock(&path, move || {
        let _ = release_rx.recv();
    });
    let result = store.commit(&commit_of_every_part());
    drop(release_tx);
    holder.join().unwrap();

    let err = result.unwrap_err();
    assert!(matches!(err, StateError::Sqlite { .. }), "{err:?}");
    assert!(err.is_retryable(), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("locked") || text.contains("busy"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(
        store
            .cursor(&key("prod", "svc", "archive"))
            .unwrap()
            .is_none()
    );
    let sinks: Vec<_> = sink_rows(&store).into_iter().map(|r| r.0).collect();
    assert_eq!(sinks, ["holder"]);

    // Once the lock is gone, the same commit goes through.
    store.commit(&commit_of_every_part()).unwrap();
    assert_eq!(sink_rows(&store).len(), 3);
}

fn shard(text: &str) -> Shard {
    text.parse().unwrap()
}

#[test]
fn a_new_file_is_claimed_by_the_first_shard_and_refused_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let path = state_path(&dir);
    let mut store = CheckpointStore::open(&path).unwrap();
    assert_eq!(store.shard().unwrap(), None, "nobody claimed it yet");
    store.claim_shard(shard("1/3")).unwrap();
    assert_eq!(store.shard().unwrap(), Some(shard("1/3")));
    // The same shard again is fine, and the record stays.
    store.claim_shard(shard("1/3")).unwrap();
    for other in ["0/3", "1/4", "0/1"] {
        let error = store.claim_shard(shard(other)).unwrap_err();
        let StateError::OtherShard {
            recorded, wanted, ..
        } = &error
        else {
            panic!("{error:?}");
        };
        assert_eq!((*recorded, *wanted), (shard("1/3"), shard(other)));
        let message = error.to_string();
        assert!(
            message.contains("belongs to shard 1/3")
                && message.contains(&format!("this runner is shard {other}"))
                && message.contains(&path.display().to_string())
                && message.contains("Resharding"),
            "{message}"
        );
        assert!(!error.is_retryable());
    }
    drop(store);
    let reader = CheckpointStore::open_read_only(&path).unwrap().unwrap();
    assert_eq!(reader.shard().unwrap(), Some(shard("1/3")));
    reader.check_shard(shard("1/3")).unwrap();
    assert!(matches!(
        reader.check_shard(shard("0/3")),
        Err(StateError::OtherShard { .. })
    ));
}

#[test]
fn a_file_with_positions_and_no_shard_is_unsharded() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = seeded(&dir);
    let error = store.claim_shard(shard("1/3")).unwrap_err();
    assert!(
        error.to_string().contains("shard 0/1 (unsharded)"),
        "{error}"
    );
    assert_eq!(store.shard().unwrap(), None, "a refusal writes nothing");
    store.claim_shard(Shard::WHOLE).unwrap();
    assert_eq!(store.shard().unwrap(), Some(Shard::WHOLE));
    // A reset of the whole file may give it to another shard.
    store.record_shard(shard("2/3")).unwrap();
    assert_eq!(store.shard().unwrap(), Some(shard("2/3")));
    store.claim_shard(shard("2/3")).unwrap();
}

#[test]
fn a_version_4_file_is_migrated_and_is_unsharded() {
    let dir = tempfile::tempdir().unwrap();
    let path = older_file(&dir, 4, 42, &[]);
    let reader = CheckpointStore::open_read_only(&path).unwrap().unwrap();
    assert_eq!(reader.shard().unwrap(), None, "read before the migration");
    reader.check_shard(Shard::WHOLE).unwrap();
    assert!(
        reader.check_shard(shard("1/2")).is_err(),
        "it has positions"
    );
    drop(reader);
    let mut store = CheckpointStore::open(&path).unwrap();
    assert!(table_names(&path).iter().any(|n| n == "shard"));
    assert_eq!(store.shard().unwrap(), None);
    assert!(matches!(
        store.claim_shard(shard("0/2")),
        Err(StateError::OtherShard { .. })
    ));
    store.claim_shard(Shard::WHOLE).unwrap();
    assert_eq!(
        store
            .cursor(&key("prod", "svc", "archive"))
            .unwrap()
            .unwrap()
            .position,
        Some(42)
    );
}
