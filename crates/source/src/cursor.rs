//! The position of one sink on one service: which events it already has.
//!
//! A sink's cursor holds the newest `occur_time` it acknowledged
//! (`position`), the ids it acknowledged within `lookback` of that position
//! (fingerprints), and `since`, below which it never receives anything. An
//! event is new to the sink when it is at or after `since`, not older than
//! `position - lookback`, and its id is not among the fingerprints. That is
//! what makes re-reads, overlapping windows and retries deliver nothing
//! twice (invariant 2), and a late event inside `lookback` arrive once
//! (invariant 4).

use crate::checkpoint::{CursorCommit, CursorKey, CursorState};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// In-memory cursor of one (source, service, sink).
#[derive(Debug)]
pub struct SinkCursor {
    key: CursorKey,
    since: i64,
    position: Option<i64>,
    lookback_ms: i64,
    seen: HashSet<String>,
    by_time: BTreeMap<i64, Vec<String>>,
    /// Whether the row exists in the state file (a new one is saved even
    /// without events, so that `start_at = "now"` is fixed at first sight).
    stored: bool,
}

impl SinkCursor {
    /// A cursor from its stored state, or a new one starting at `since`.
    pub fn new(
        key: CursorKey,
        stored: Option<CursorState>,
        since: i64,
        lookback: Duration,
    ) -> Self {
        let lookback_ms = i64::try_from(lookback.as_millis()).unwrap_or(i64::MAX);
        let mut cursor = SinkCursor {
            key,
            since,
            position: None,
            lookback_ms,
            seen: HashSet::new(),
            by_time: BTreeMap::new(),
            stored: stored.is_some(),
        };
        if let Some(state) = stored {
            cursor.since = state.since;
            cursor.position = state.position;
            for (id, occur_time) in state.fingerprints {
                cursor.remember(id, occur_time);
            }
        }
        cursor
    }

    pub fn key(&self) -> &CursorKey {
        &self.key
    }

    pub fn position(&self) -> Option<i64> {
        self.position
    }

    /// The oldest `occur_time` this sink could still need.
    pub fn floor(&self) -> i64 {
        match self.position {
            Some(position) => self.since.max(position.saturating_sub(self.lookback_ms)),
            None => self.since,
        }
    }

    /// Whether the event is one this sink does not have yet.
    pub fn is_new(&self, occur_time: i64, id: &str) -> bool {
        occur_time >= self.floor() && !self.seen.contains(id)
    }

    fn remember(&mut self, id: String, occur_time: i64) {
        if self.seen.insert(id.clone()) {
            self.by_time.entry(occur_time).or_default().push(id);
        }
    }

    /// Records that the sink acknowledged `delivered` (id, occur_time) and
    /// has seen every event up to `through` (delivered, filtered out or
    /// already had). Returns the change to commit to the state file, or
    /// `None` when nothing changed.
    pub fn acknowledge(
        &mut self,
        delivered: Vec<(String, i64)>,
        through: Option<i64>,
    ) -> Option<CursorCommit> {
        let old_position = self.position;
        if let Some(through) = through {
            self.position = Some(self.position.map_or(through, |p| p.max(through)));
        }
        let mut added = Vec::with_capacity(delivered.len());
        for (id, occur_time) in delivered {
            if !self.seen.contains(&id) {
                self.remember(id.clone(), occur_time);
                added.push((id, occur_time));
            }
        }
        if added.is_empty() && old_position == self.position && self.stored {
            return None;
        }
        self.stored = true;
        // Fingerprints older than the window are never consulted again.
        let prune_below = self.position.map(|_| self.floor());
        if let Some(bound) = prune_below {
            let keep = self.by_time.split_off(&bound);
            for ids in std::mem::replace(&mut self.by_time, keep).into_values() {
                for id in ids {
                    self.seen.remove(&id);
                }
            }
        }
        Some(CursorCommit {
            key: self.key.clone(),
            since: self.since,
            position: self.position,
            add_fingerprints: added,
            prune_below,
        })
    }

    /// Fingerprints held in memory (bounded by the events inside lookback).
    pub fn fingerprints(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key() -> CursorKey {
        CursorKey {
            source: "prod".into(),
            service_id: "svc".into(),
            sink: "file".into(),
        }
    }

    #[test]
    fn new_cursor_starts_at_since() {
        let c = SinkCursor::new(key(), None, 1_000, Duration::from_secs(1));
        assert_eq!(c.floor(), 1_000);
        assert!(!c.is_new(999, "a"));
        assert!(c.is_new(1_000, "a"));
    }

    #[test]
    fn acknowledged_ids_are_not_new_and_old_ones_are_pruned() {
        let mut c = SinkCursor::new(key(), None, 0, Duration::from_millis(100));
        let commit = c
            .acknowledge(vec![("a".into(), 1_000), ("b".into(), 1_050)], Some(1_050))
            .unwrap();
        assert_eq!(commit.position, Some(1_050));
        assert_eq!(commit.prune_below, Some(950));
        assert!(!c.is_new(1_000, "a"));
        // A late event inside lookback, with an id the sink lacks, is new.
        assert!(c.is_new(1_000, "late"));
        // Older than position - lookback: not new.
        assert!(!c.is_new(949, "older"));

        c.acknowledge(vec![("c".into(), 1_200)], Some(1_200))
            .unwrap();
        assert_eq!(c.floor(), 1_100);
        assert_eq!(c.fingerprints(), 1, "a and b fell out of the window");
    }

    #[test]
    fn nothing_to_commit_when_nothing_changed() {
        let stored = CursorState {
            since: 0,
            position: Some(10),
            fingerprints: vec![("a".into(), 10)],
        };
        let mut c = SinkCursor::new(key(), Some(stored), 0, Duration::from_secs(1));
        assert!(c.acknowledge(vec![("a".into(), 10)], Some(10)).is_none());
        assert!(c.acknowledge(vec![], Some(5)).is_none());
    }

    #[test]
    fn a_new_cursor_is_saved_even_without_events() {
        let mut c = SinkCursor::new(key(), None, 777, Duration::from_secs(1));
        let commit = c.acknowledge(vec![], None).unwrap();
        assert_eq!((commit.since, commit.position), (777, None));
        assert!(c.acknowledge(vec![], None).is_none());
    }
}
