//! The position of one sink on one service: which events it already has.
//!
//! A sink's cursor holds the newest `occur_time` it acknowledged
//! (`position`), the ids it acknowledged within `lookback` of that position
//! (fingerprints), and `since`, below which it never receives anything. An
//! event is new to the sink when it is at or after `since`, not older than
//! `position - lookback` (the [`floor`]), and its id is not among the
//! fingerprints. That is what makes re-reads, overlapping windows and retries
//! deliver nothing twice (invariant 2), and a late event inside `lookback`
//! arrive once (invariant 4).
//!
//! [`SinkCursor`] is the reading side: the pull's view of what a sink has,
//! advanced as records are handed to the sink. What is committed to the state
//! file is decided by the delivery engine, from what the sink acknowledged.

use crate::checkpoint::CursorState;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// The oldest `occur_time` a sink at `position` (with `since` and `lookback`)
/// could still need: events below it are never delivered to it again, and its
/// fingerprints below it are never consulted.
pub fn floor(since: i64, position: Option<i64>, lookback_ms: i64) -> i64 {
    match position {
        Some(position) => since.max(position.saturating_sub(lookback_ms)),
        None => since,
    }
}

/// `lookback` in milliseconds, saturating.
pub fn lookback_ms(lookback: Duration) -> i64 {
    i64::try_from(lookback.as_millis()).unwrap_or(i64::MAX)
}

/// In-memory cursor of one (source, service, sink), as the pull sees it.
#[derive(Debug)]
pub struct SinkCursor {
    since: i64,
    position: Option<i64>,
    lookback_ms: i64,
    /// Ids are looked up once per event of a pull: hashed with foldhash, seeded per
    /// process, rather than SipHash.
    seen: HashSet<String, foldhash::fast::RandomState>,
    by_time: BTreeMap<i64, Vec<String>>,
}

impl SinkCursor {
    /// A cursor from its stored state, or a new one starting at `since`.
    pub fn new(stored: Option<CursorState>, since: i64, lookback: Duration) -> Self {
        let mut cursor = SinkCursor {
            since,
            position: None,
            lookback_ms: lookback_ms(lookback),
            seen: HashSet::default(),
            by_time: BTreeMap::new(),
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

    /// Events before `since` are never delivered to this sink.
    pub fn since(&self) -> i64 {
        self.since
    }

    pub fn position(&self) -> Option<i64> {
        self.position
    }

    /// Moves a position that is ahead of `limit` (the clock plus `max_clock_skew`) back
    /// to it, and says whether it did: positions never run ahead of the clock (a state
    /// written before they were capped, or a clock that was set back). The fingerprints
    /// stay, so what the sink has is still not delivered again.
    pub fn cap_position(&mut self, limit: i64) -> bool {
        match self.position {
            Some(position) if position > limit => {
                self.position = Some(limit);
                true
            }
            _ => false,
        }
    }

    /// The oldest `occur_time` this sink could still need.
    pub fn floor(&self) -> i64 {
        floor(self.since, self.position, self.lookback_ms)
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

    /// Records that the sink was handed `records` (id, occur_time) and has been
    /// shown every event up to `through` (handed over, filtered out or already
    /// had), so that a re-read within this pull skips them. Fingerprints that
    /// fall below the floor are forgotten, which keeps memory bounded by the
    /// events inside `lookback`.
    pub fn advance<'a>(
        &mut self,
        records: impl IntoIterator<Item = (&'a str, i64)>,
        through: Option<i64>,
    ) {
        if let Some(through) = through {
            self.position = Some(self.position.map_or(through, |p| p.max(through)));
        }
        // Only ids at or above the floor are ever consulted again (`is_new` refuses
        // anything older), and the floor only rises: a backfill remembers the last
        // `lookback` of what it handed over, not everything.
        let bound = self.floor();
        for (id, occur_time) in records {
            if occur_time >= bound && !self.seen.contains(id) {
                self.remember(id.to_owned(), occur_time);
            }
        }
        let keep = self.by_time.split_off(&bound);
        for ids in std::mem::replace(&mut self.by_time, keep).into_values() {
            for id in ids {
                self.seen.remove(&id);
            }
        }
    }

    /// Fingerprints held in memory (bounded by the events inside lookback).
    pub fn fingerprints(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_cursor_starts_at_since() {
        let c = SinkCursor::new(None, 1_000, Duration::from_secs(1));
        assert_eq!(c.floor(), 1_000);
        assert!(!c.is_new(999, "a"));
        assert!(c.is_new(1_000, "a"));
    }

    #[test]
    fn handed_ids_are_not_new_and_old_ones_are_pruned() {
        let mut c = SinkCursor::new(None, 0, Duration::from_millis(100));
        c.advance([("a", 1_000), ("b", 1_050)], Some(1_050));
        assert_eq!(c.position(), Some(1_050));
        assert_eq!(c.floor(), 950);
        assert!(!c.is_new(1_000, "a"));
        // A late event inside lookback, with an id the sink lacks, is new.
        assert!(c.is_new(1_000, "late"));
        // Older than position - lookback: not new.
        assert!(!c.is_new(949, "older"));

        c.advance([("c", 1_200)], Some(1_200));
        assert_eq!(c.floor(), 1_100);
        assert_eq!(c.fingerprints(), 1, "a and b fell out of the window");
    }

    #[test]
    fn stored_state_is_resumed() {
        let stored = CursorState {
            since: 5,
            position: Some(10),
            fingerprints: vec![("a".into(), 10)],
        };
        let c = SinkCursor::new(Some(stored), 0, Duration::from_secs(1));
        assert_eq!((c.since(), c.position()), (5, Some(10)));
        assert!(!c.is_new(10, "a"));
        assert!(c.is_new(10, "b"));
    }

    #[test]
    fn a_position_ahead_of_the_clock_is_capped_and_its_fingerprints_kept() {
        let lookback = Duration::from_millis(100);
        let mut c = SinkCursor::new(None, 0, lookback);
        // The pull hands over an event far ahead; its batch's `through` is capped.
        c.advance([("future", 1_000_000)], Some(2_000));
        assert_eq!(c.position(), Some(2_000));
        assert!(!c.is_new(1_000_000, "future"), "kept by fingerprint");
        assert!(
            c.is_new(1_950, "later"),
            "a later event inside lookback is new"
        );
        // A stored position from the future is brought back to the limit.
        let stored = CursorState {
            since: 0,
            position: Some(1_000_000),
            fingerprints: vec![("future".into(), 1_000_000)],
        };
        let mut c = SinkCursor::new(Some(stored), 0, lookback);
        assert!(c.cap_position(2_000));
        assert_eq!((c.position(), c.floor()), (Some(2_000), 1_900));
        assert!(!c.is_new(1_000_000, "future"));
        assert!(c.is_new(1_950, "later"));
        assert!(!c.cap_position(2_000), "nothing to do the second time");
    }

    #[test]
    fn floor_never_goes_below_since_and_saturates() {
        assert_eq!(floor(100, None, 50), 100);
        assert_eq!(floor(100, Some(120), 50), 100);
        assert_eq!(floor(100, Some(500), 50), 450);
        assert_eq!(floor(0, Some(i64::MIN + 1), i64::MAX), 0);
    }
}
