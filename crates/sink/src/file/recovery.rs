//! Recovering the file sink's positions from its own file, for when the state file was
//! lost: every line the sink wrote carries `source`, `service_id`, `id` and
//! `occur_time`, so the file is its own checkpoint.
//!
//! The whole file is read (a quiet service's newest line can be far back). Per (source,
//! service) the position is the newest `occur_time`, and the ids within the window of it
//! are the fingerprints, which is what the state would hold. What the file cannot tell:
//! `since` (the services' positions are enough to go on), a service that has no line in
//! the file (its source's `start_at` applies), and events that were dead-lettered rather
//! than written. A line that is not a record this sink wrote (a torn line, a foreign
//! writer's text) stops the recovery: guessing would duplicate or lose events.

use crate::SinkError;
use crate::config::RecoveredCursor;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

/// The fields of a record the recovery needs.
#[derive(Deserialize)]
struct Line {
    id: String,
    source: String,
    service_id: String,
    occur_time: i64,
}

/// What one service's lines tell.
struct Seen {
    newest: i64,
    /// `occur_time` -> ids, within the window of `newest`.
    recent: BTreeMap<i64, Vec<String>>,
}

/// Reads the first `len` bytes of `file` (the whole file, which ends with a newline) as
/// the sink's own output. Returns the positions and the number of records, or an error
/// naming the first line that is not a record of this sink.
pub(super) fn scan(
    name: &str,
    path: &Path,
    file: &mut File,
    len: u64,
    window: Duration,
) -> Result<(Vec<RecoveredCursor>, u64), SinkError> {
    let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
    let cannot_read = |detail: String| {
        SinkError::permanent(
            name,
            format!(
                "the state holds nothing of this sink, and {} cannot be read as its own output \
                 to recover its positions from ({detail}). Nothing was written to it. To resume, \
                 either move the file away (everything is delivered again into a new file) or run \
                 `runner state reset --sink {name} --to TIME` with the RFC 3339 time from which \
                 on events should be appended to it",
                path.display()
            ),
        )
    };
    file.seek(SeekFrom::Start(0))
        .map_err(|e| cannot_read(format!("cannot read it: {e}")))?;
    let mut reader = BufReader::new(&mut *file).take(len);
    let mut services: HashMap<(String, String), Seen> = HashMap::new();
    let mut records = 0u64;
    let mut buffer = String::new();
    let mut number = 0u64;
    loop {
        buffer.clear();
        number += 1;
        let read = reader
            .read_line(&mut buffer)
            .map_err(|e| cannot_read(format!("line {number}: {e}")))?;
        if read == 0 {
            break;
        }
        let Some(text) = buffer.strip_suffix('\n') else {
            return Err(cannot_read(format!("line {number} is torn (no newline)")));
        };
        if text.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(text).map_err(|e| {
            cannot_read(format!(
                "line {number} is not a record of this shipper: {e}"
            ))
        })?;
        if line.id.len() != 64 || !line.id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(cannot_read(format!(
                "line {number} has an id that this shipper does not write"
            )));
        }
        records += 1;
        let seen = services
            .entry((line.source, line.service_id))
            .or_insert_with(|| Seen {
                newest: line.occur_time,
                recent: BTreeMap::new(),
            });
        seen.newest = seen.newest.max(line.occur_time);
        if line.occur_time >= seen.newest.saturating_sub(window_ms) {
            seen.recent
                .entry(line.occur_time)
                .or_default()
                .push(line.id);
        }
        // Keep memory to the window: older ids are never consulted again.
        let bound = seen.newest.saturating_sub(window_ms);
        seen.recent = seen.recent.split_off(&bound);
    }
    let mut cursors: Vec<RecoveredCursor> = services
        .into_iter()
        .map(|((source, service_id), seen)| RecoveredCursor {
            source,
            service_id,
            position: seen.newest,
            fingerprints: seen
                .recent
                .into_iter()
                .flat_map(|(time, ids)| ids.into_iter().map(move |id| (id, time)))
                .collect(),
        })
        .collect();
    cursors.sort_by(|a, b| (&a.source, &a.service_id).cmp(&(&b.source, &b.service_id)));
    Ok((cursors, records))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;

    fn line(source: &str, service: &str, time: i64, n: u8) -> String {
        format!(
            "{{\"id\":\"{}\",\"source\":\"{source}\",\"project_id\":\"p\",\"service_id\":\"{service}\",\
             \"service_name\":\"\",\"occur_time\":{time},\"timestamp\":\"\",\"event_type\":\"normal\",\
             \"event_info\":\"x\"}}\n",
            format!("{n:02x}").repeat(32)
        )
    }

    fn scan_text(text: &str) -> Result<(Vec<RecoveredCursor>, u64), SinkError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let mut file = File::open(&path).unwrap();
        scan(
            "archive",
            &path,
            &mut file,
            text.len() as u64,
            Duration::from_millis(100),
        )
    }

    #[test]
    fn positions_and_the_ids_within_the_window_per_service() {
        let text = [
            line("prod", "a", 1_000, 1),
            line("prod", "b", 5_000, 2),
            line("prod", "a", 1_950, 3),
            line("prod", "a", 2_000, 4),
            // A late event, appended after newer ones: inside the window, kept.
            line("prod", "a", 1_920, 5),
            line("dev", "a", 7, 6),
        ]
        .concat();
        let (cursors, records) = scan_text(&text).unwrap();
        assert_eq!(records, 6);
        let got: Vec<(&str, &str, i64, Vec<i64>)> = cursors
            .iter()
            .map(|c| {
                (
                    c.source.as_str(),
                    c.service_id.as_str(),
                    c.position,
                    c.fingerprints.iter().map(|f| f.1).collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("dev", "a", 7, vec![7]),
                ("prod", "a", 2_000, vec![1_920, 1_950, 2_000]),
                ("prod", "b", 5_000, vec![5_000]),
            ]
        );
    }

    #[test]
    fn a_line_that_is_not_a_record_of_this_sink_stops_the_recovery() {
        for (text, says) in [
            (
                format!("{}written by someone else\n", line("p", "a", 1, 1)),
                "line 2 is not a record",
            ),
            (line("p", "a", 1, 1).trim_end().to_owned(), "line 1 is torn"),
            (
                line("p", "a", 1, 1).replace(&"01".repeat(32), "short"),
                "id that this shipper",
            ),
        ] {
            let error = scan_text(&text).unwrap_err();
            let shown = error.to_string();
            assert!(!error.is_retryable());
            assert!(shown.contains(says), "{shown}");
            assert!(
                shown.contains("runner state reset --sink archive --to"),
                "{shown}"
            );
        }
    }
}
