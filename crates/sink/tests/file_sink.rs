//! The file sink on real files: appends, checkpoints, and start-up recovery against the
//! committed checkpoint (cut an uncommitted tail; never cut a rotated or truncated file).
#![allow(clippy::unwrap_used)]

use record::{EventRecord, SharedRecord};
use sink::{FileCheckpoint, FileSink, Recovery, Sink};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

fn batch(from: i64, count: i64) -> Vec<SharedRecord> {
    (from..from + count)
        .map(|i| {
            SharedRecord::new(EventRecord::new(
                "prod",
                "svc",
                record::IdParts {
                    project_id: "0123456789abcdef0123456789abcdef",
                    service_id: "35de3ca9-1bca-4ae7-9cb0-914f30fa7d3e",
                    occur_time: 1562597251764 + i,
                    event_type: "normal",
                    event_info: &format!("event {i} with \"quotes\"\nand a newline"),
                    twin: 1,
                },
            ))
        })
        .collect()
}

/// Every line of the file, parsed; fails on a torn or foreign line.
fn read_records(path: &Path) -> Vec<SharedRecord> {
    let text = fs::read_to_string(path).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "file ends mid-line"
    );
    text.lines()
        .map(|l| SharedRecord::new(serde_json::from_str(l).unwrap()))
        .collect()
}

/// The file as it is: its length and identity, and the hash of its last `TAIL_BYTES`
/// bytes, computed here independently of the sink (SHA-256, first 8 bytes).
fn on_disk(path: &Path) -> FileCheckpoint {
    use sha2::Digest;
    let meta = fs::metadata(path).unwrap();
    let bytes = fs::read(path).unwrap();
    let tail = &bytes[bytes.len().saturating_sub(sink::file::TAIL_BYTES as usize)..];
    let digest = sha2::Sha256::digest(tail);
    FileCheckpoint {
        len: meta.len(),
        dev: meta.dev(),
        ino: meta.ino(),
        tail: Some(u64::from_be_bytes(digest[..8].try_into().unwrap())),
    }
}

fn append_raw(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

async fn send(sink: &FileSink, records: &[SharedRecord]) -> FileCheckpoint {
    let delivery = sink.send(records).await.unwrap();
    assert!(delivery.rejected.is_empty() && delivery.retry.is_empty());
    let state = delivery
        .state
        .expect("the file sink always returns its state");
    FileCheckpoint::from_state(&state, sink.path())
        .unwrap()
        .expect("the state names the sink's own path")
}

#[tokio::test]
async fn creates_parent_folders_and_writes_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/nested/events.jsonl");
    let (sink, start, recovery) = FileSink::open("archive", &path, None, None).unwrap();
    assert_eq!(recovery, Recovery::Created);
    assert_eq!(start, on_disk(&path));
    assert_eq!(start.len, 0);
    assert_eq!(
        (sink.name(), sink.kind(), sink.path()),
        ("archive", "file", path.as_path())
    );
    sink.healthcheck().await.unwrap();

    let first = batch(0, 3);
    let cp1 = send(&sink, &first).await;
    assert_eq!(cp1, on_disk(&path));
    assert_eq!(read_records(&path), first);

    let second = batch(3, 2);
    let cp2 = send(&sink, &second).await;
    assert_eq!(cp2, on_disk(&path));
    assert!(cp2.len > cp1.len);
    assert_eq!(read_records(&path), [first, second].concat());
    assert_eq!(sink.checkpoint().await, cp2);

    // An empty batch changes nothing and still reports where the file stands.
    assert_eq!(send(&sink, &[]).await, cp2);
    assert_eq!(on_disk(&path), cp2);
}

#[tokio::test]
async fn reopen_cuts_the_uncommitted_tail_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let (sink, _, _) = FileSink::open("archive", &path, None, None).unwrap();
    let committed = send(&sink, &batch(0, 2)).await;
    let committed_bytes = fs::read(&path).unwrap();
    // Written and fsynced, but the process "dies" before the state commit...
    send(&sink, &batch(2, 3)).await;
    drop(sink);
    // ...and a later writer was killed half-way through a line.
    append_raw(&path, b"{\"id\":\"aa88b4887");
    let found = fs::metadata(&path).unwrap().len();

    let (sink, start, recovery) = FileSink::open("archive", &path, Some(committed), None).unwrap();
    assert_eq!(
        recovery,
        Recovery::CutTail {
            committed: committed.len,
            found
        }
    );
    assert_eq!(start, committed);
    assert_eq!(fs::read(&path).unwrap(), committed_bytes);

    // The runner re-delivers the cut records: each appears once.
    send(&sink, &batch(2, 3)).await;
    assert_eq!(read_records(&path), batch(0, 5));
}

#[tokio::test]
async fn reopen_at_the_committed_length_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let (sink, _, _) = FileSink::open("archive", &path, None, None).unwrap();
    let committed = send(&sink, &batch(0, 2)).await;
    drop(sink);
    let (sink, start, recovery) = FileSink::open("archive", &path, Some(committed), None).unwrap();
    assert_eq!(recovery, Recovery::Resumed);
    assert_eq!(start, committed);
    send(&sink, &batch(2, 1)).await;
    assert_eq!(read_records(&path), batch(0, 3));
}

#[tokio::test]
async fn replaced_file_is_started_afresh_and_never_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let (sink, _, _) = FileSink::open("archive", &path, None, None).unwrap();
    let committed = send(&sink, &batch(0, 1)).await;
    drop(sink);
    // Another tool rotates: the old file moves away, a new (longer) one takes the path.
    fs::rename(&path, dir.path().join("events.jsonl.1")).unwrap();
    let foreign: Vec<u8> = batch(100, 3)
        .iter()
        .flat_map(|r| format!("{}\n", r.to_json_line()).into_bytes())
        .collect();
    fs::write(&path, &foreign).unwrap();
    assert!(foreign.len() as u64 > committed.len);

    let (sink, start, recovery) = FileSink::open("archive", &path, Some(committed), None).unwrap();
    assert!(
        matches!(recovery, Recovery::StartedAfresh { ref reason } if reason.contains("replaced")),
        "{recovery:?}"
    );
    assert_eq!(fs::read(&path).unwrap(), foreign, "nothing may be cut");
    assert_eq!(start, on_disk(&path));
    assert_ne!(start.ino, committed.ino);

    send(&sink, &batch(1, 1)).await;
    assert_eq!(read_records(&path), [batch(100, 3), batch(1, 1)].concat());
    assert_eq!(
        read_records(&dir.path().join("events.jsonl.1")),
        batch(0, 1)
    );
}

#[tokio::test]
async fn truncated_file_is_started_afresh_and_never_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let (sink, _, _) = FileSink::open("archive", &path, None, None).unwrap();
    let first_line_end = send(&sink, &batch(0, 1)).await.len;
    let committed = send(&sink, &batch(1, 2)).await;
    drop(sink);
    // Another tool truncates to the first line.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(first_line_end)
        .unwrap();

    let (sink, start, recovery) = FileSink::open("archive", &path, Some(committed), None).unwrap();
    assert!(
        matches!(recovery, Recovery::StartedAfresh { ref reason } if reason.contains("truncated")),
        "{recovery:?}"
    );
    assert_eq!(start.len, first_line_end);
    assert_eq!(start, on_disk(&path));
    assert_eq!(read_records(&path), batch(0, 1));
    send(&sink, &batch(1, 2)).await;
    assert_eq!(read_records(&path), batch(0, 3));
}

#[tokio::test]
async fn truncation_mid_line_keeps_the_bytes_and_starts_a_new_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let (sink, _, _) = FileSink::open("archive", &path, None, None).unwrap();
    let committed = send(&sink, &batch(0, 2)).await;
    drop(sink);
    // Both lines have the same length, so the middle is a line end: go past it.
    let half = committed.len / 2 + 7;
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(half)
        .unwrap();
    let kept = fs::read(&path).unwrap();

    let (sink, start, recovery) = FileSink::open("archive", &path, Some(committed), None).unwrap();
    assert!(
        matches!(recovery, Recovery::StartedAfresh { .. }),
        "{recovery:?}"
    );
    assert_eq!(start.len, half + 1);
    send(&sink, &batch(5, 1)).await;
    let text = fs::read(&path).unwrap();
    assert!(text.starts_with(&kept), "nothing may be cut");
    let last_line = String::from_utf8(text)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    assert_eq!(
        SharedRecord::new(serde_json::from_str::<EventRecord>(&last_line).unwrap()),
        batch(5, 1)[0]
    );
}

#[tokio::test]
async fn missing_file_with_a_checkpoint_is_started_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let (sink, _, _) = FileSink::open("archive", &path, None, None).unwrap();
    let committed = send(&sink, &batch(0, 1)).await;
    drop(sink);
    fs::remove_file(&path).unwrap();
    let (_sink, start, recovery) = FileSink::open("archive", &path, Some(committed), None).unwrap();
    assert!(
        matches!(recovery, Recovery::StartedAfresh { ref reason } if reason.contains("missing")),
        "{recovery:?}"
    );
    assert_eq!(start.len, 0);
}

#[tokio::test]
async fn existing_file_without_a_checkpoint_is_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    fs::write(&path, "{\"older\":true}").unwrap();
    let (sink, start, recovery) = FileSink::open("archive", &path, None, None).unwrap();
    assert!(
        matches!(recovery, Recovery::StartedAfresh { .. }),
        "{recovery:?}"
    );
    assert_eq!(start, on_disk(&path));
    send(&sink, &batch(0, 1)).await;
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "{\"older\":true}");
    assert_eq!(
        SharedRecord::new(serde_json::from_str::<EventRecord>(lines[1]).unwrap()),
        batch(0, 1)[0]
    );

    // An empty file has nothing to lose: a plain fresh start.
    let empty = dir.path().join("empty.jsonl");
    fs::write(&empty, "").unwrap();
    assert_eq!(
        FileSink::open("archive", &empty, None, None).unwrap().2,
        Recovery::Created
    );
}

#[tokio::test]
async fn unacknowledged_bytes_are_cut_before_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let (sink, _, _) = FileSink::open("archive", &path, None, None).unwrap();
    send(&sink, &batch(0, 1)).await;
    append_raw(&path, b"{\"torn");
    let cp = send(&sink, &batch(1, 1)).await;
    assert_eq!(cp, on_disk(&path));
    assert_eq!(read_records(&path), batch(0, 2));
}

#[tokio::test]
async fn a_file_rotated_while_running_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let (sink, _, _) = FileSink::open("archive", &path, None, None).unwrap();
    let before = send(&sink, &batch(0, 1)).await;
    fs::rename(&path, dir.path().join("events.jsonl.1")).unwrap();
    let after = send(&sink, &batch(1, 1)).await;
    assert_ne!(after.ino, before.ino);
    assert_eq!(after, on_disk(&path));
    assert_eq!(read_records(&path), batch(1, 1));
    drop(sink);
    let (_, _, recovery) = FileSink::open("archive", &path, Some(after), None).unwrap();
    assert_eq!(recovery, Recovery::Resumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_never_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let (sink, _, _) = FileSink::open("archive", &path, None, None).unwrap();
    let sink = Arc::new(sink);
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let sink = sink.clone();
            tokio::spawn(async move { sink.send(&batch(t * 100, 50)).await.unwrap() })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut got = read_records(&path);
    assert_eq!(got.len(), 400);
    got.sort_by_key(|r| r.occur_time);
    let mut want: Vec<SharedRecord> = (0..8).flat_map(|t| batch(t * 100, 50)).collect();
    want.sort_by_key(|r| r.occur_time);
    assert_eq!(got, want);
    assert_eq!(sink.checkpoint().await, on_disk(&path));
}

#[tokio::test]
async fn unwritable_path_fails_healthcheck_naming_sink_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-folder");
    fs::write(&blocker, "x").unwrap();
    let path = blocker.join("events.jsonl");

    let err = FileSink::check_path("archive", &path).unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("archive") && text.contains("not-a-folder"),
        "{text}"
    );
    assert!(FileSink::open("archive", &path, None, None).is_err());

    // A sink whose folder is replaced by a regular file while it runs.
    let folder = dir.path().join("out");
    let path = folder.join("events.jsonl");
    let (sink, _, _) = FileSink::open("archive", &path, None, None).unwrap();
    sink.healthcheck().await.unwrap();
    fs::remove_dir_all(&folder).unwrap();
    fs::write(&folder, "x").unwrap();
    let err = sink.healthcheck().await.unwrap_err();
    assert!(
        err.to_string().contains("events.jsonl") && err.sink() == "archive",
        "{err}"
    );
    // Sending cannot reach the path either, and says so instead of panicking.
    assert!(sink.send(&batch(0, 1)).await.is_err());
}

#[tokio::test]
async fn a_folder_at_the_path_is_a_permanent_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = FileSink::open("archive", dir.path(), None, None)
        .err()
        .unwrap();
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("is a directory"), "{err}");
}

// A commit that failed: the engine hands back the last committed state and the sink cuts
// everything written after it at once, so the next run's re-delivery does not duplicate.
#[tokio::test]
async fn rollback_cuts_back_to_the_committed_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let (sink, _, _) = FileSink::open("archive", &path, None, None).unwrap();
    let committed = sink.send(&batch(0, 2)).await.unwrap().state.unwrap();
    send(&sink, &batch(2, 3)).await;
    assert_eq!(read_records(&path).len(), 5);

    sink.rollback(Some(&committed)).await.unwrap();
    assert_eq!(read_records(&path), batch(0, 2));
    assert_eq!(sink.checkpoint().await, on_disk(&path));
    // Writing goes on after the committed records.
    send(&sink, &batch(7, 1)).await;
    assert_eq!(read_records(&path), [batch(0, 2), batch(7, 1)].concat());
}

// Before the first commit there is no committed state: a rollback goes back to the file as
// it was when the sink opened it, never further.
#[tokio::test]
async fn rollback_without_a_committed_state_goes_back_to_the_file_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let (first, _, _) = FileSink::open("archive", &path, None, None).unwrap();
    send(&first, &batch(0, 2)).await;
    drop(first);
    let (sink, _, _) = FileSink::open("archive", &path, Some(on_disk(&path)), None).unwrap();
    send(&sink, &batch(2, 2)).await;
    sink.rollback(None).await.unwrap();
    assert_eq!(read_records(&path), batch(0, 2));
}

// A state taken for another path says nothing about this file; an unreadable one is an
// error, never a guess.
#[test]
fn state_round_trips_and_names_its_path() {
    let cp = FileCheckpoint {
        len: 42,
        dev: u64::MAX - 1,
        ino: 1 << 63,
        tail: Some(u64::MAX),
    };
    let state = cp.to_state(Path::new("/data/a.jsonl"));
    assert_eq!(
        FileCheckpoint::from_state(&state, Path::new("/data/a.jsonl")).unwrap(),
        Some(cp)
    );
    assert_eq!(
        FileCheckpoint::from_state(&state, Path::new("/data/b.jsonl")).unwrap(),
        None
    );
    let garbage = sink::SinkState("{\"len\":".to_owned());
    assert!(FileCheckpoint::from_state(&garbage, Path::new("/data/a.jsonl")).is_err());
}

// Another writer truncated the file and wrote past the committed length: the bytes
// before it are no longer what the sink committed, so nothing is cut (start-up and
// during a run); the sink appends after a newline.
#[tokio::test]
async fn a_file_rewritten_past_the_committed_length_is_never_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let (sink, _, _) = FileSink::open("archive", &path, None, None).unwrap();
    let committed = send(&sink, &batch(0, 3)).await;
    drop(sink);
    let rewritten = vec![b'x'; committed.len as usize + 10];
    fs::write(&path, &rewritten).unwrap();
    let (sink, _, recovery) = FileSink::open("archive", &path, Some(committed), None).unwrap();
    assert!(
        matches!(&recovery, Recovery::StartedAfresh { reason } if reason.contains("changed by another writer")),
        "{recovery:?}"
    );
    let text = fs::read(&path).unwrap();
    assert!(text.starts_with(&rewritten), "the foreign bytes were cut");

    // The same during a run: the next send notices before it would cut.
    let before = send(&sink, &batch(10, 1)).await;
    let mut regrown = vec![b'y'; 10];
    regrown.extend(std::iter::repeat_n(b'z', before.len as usize));
    fs::write(&path, &regrown).unwrap();
    send(&sink, &batch(11, 1)).await;
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(std::str::from_utf8(&regrown).unwrap()));
    let last: sink::SharedRecord =
        SharedRecord::new(serde_json::from_str(text.lines().last().unwrap()).unwrap());
    assert_eq!(last, batch(11, 1)[0]);
}

// No committed state and no positions (the state was lost): the file's own records give
// the positions back, per service, with the ids within the window.
#[tokio::test]
async fn a_file_without_a_committed_state_recovers_its_positions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let (sink, _, _) = FileSink::open("archive", &path, None, None).unwrap();
    send(&sink, &batch(0, 5)).await;
    drop(sink);
    let window = std::time::Duration::from_millis(2);
    let (_, _, recovery) = FileSink::open("archive", &path, None, Some(window)).unwrap();
    let Recovery::Recovered { records, cursors } = recovery else {
        panic!("{recovery:?}");
    };
    assert_eq!(records, 5);
    assert_eq!(cursors.len(), 1);
    let newest = batch(4, 1)[0].occur_time;
    assert_eq!(cursors[0].position, newest);
    let times: Vec<i64> = cursors[0].fingerprints.iter().map(|f| f.1).collect();
    assert_eq!(times, vec![newest - 2, newest - 1, newest]);
    // Without a window (the state holds positions of the sink), nothing is recovered.
    let (_, _, recovery) = FileSink::open("archive", &path, None, None).unwrap();
    assert!(
        matches!(recovery, Recovery::StartedAfresh { .. }),
        "{recovery:?}"
    );
}
