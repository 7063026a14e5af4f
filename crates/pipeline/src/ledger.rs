//! The commit side of one cursor: what a sink has acknowledged for one service, kept in
//! the order the records were offered, so that a commit never moves a position past a
//! record the sink does not have.
//!
//! Each offer from the pull is a *segment*: the records the sink lacked in one page, and
//! `through`, the newest `occur_time` of that page (the sink has been shown every event
//! up to it: handed over, filtered out, or already had). A segment is resolved when each
//! of its records was acknowledged or dead-lettered. The position advances over the
//! leading run of resolved segments only, so a record that waits for a retry (or was
//! never sent because the sink failed) holds the position for this sink: the next run
//! re-reads from it. Records acknowledged after such a hole are fingerprinted at once,
//! so that the re-read skips them.

use record::SharedRecord;
use source::checkpoint::{CursorCommit, CursorKey};
use std::collections::VecDeque;

/// What became of one offered record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The destination accepted it.
    Delivered,
    /// The destination refused it for good; it is in the dead-letter file.
    DeadLettered,
    /// The sink acknowledged it without sending it, by design (too old to alert about).
    Skipped,
}

/// Where a cursor stands when its service's pull starts.
#[derive(Debug, Clone)]
pub struct LedgerStart {
    pub key: CursorKey,
    pub since: i64,
    pub position: Option<i64>,
    pub lookback_ms: i64,
    /// Whether the cursor exists in the state file (a new one is saved even without
    /// events, so that `start_at = "now"` means the time of the first run).
    pub stored: bool,
}

#[derive(Debug)]
struct Segment {
    through: Option<i64>,
    unresolved: usize,
}

/// One cursor's acknowledgements since its last commit.
#[derive(Debug)]
pub struct Ledger {
    start: LedgerStart,
    /// The position the next commit writes (the committed one until it advances).
    position: Option<i64>,
    segments: VecDeque<Segment>,
    /// Sequence number of `segments[0]`.
    front: u64,
    /// Records resolved since the last commit that may still be re-read (at or above
    /// the floor): the ids to fingerprint.
    fingerprints: Vec<SharedRecord>,
    changed: bool,
    pending_delivered: u64,
    pending_dead_lettered: u64,
    /// Committed totals of this cycle.
    delivered: u64,
    dead_lettered: u64,
}

/// A commit of one ledger, with the counts it makes final.
#[derive(Debug)]
pub struct LedgerCommit {
    pub cursor: CursorCommit,
    delivered: u64,
    dead_lettered: u64,
}

impl Ledger {
    pub fn new(start: LedgerStart) -> Self {
        Ledger {
            position: start.position,
            start,
            segments: VecDeque::new(),
            front: 0,
            fingerprints: Vec::new(),
            changed: false,
            pending_delivered: 0,
            pending_dead_lettered: 0,
            delivered: 0,
            dead_lettered: 0,
        }
    }

    pub fn key(&self) -> &CursorKey {
        &self.start.key
    }

    /// Records delivered and dead-lettered, as committed in this cycle.
    pub fn totals(&self) -> (u64, u64) {
        (self.delivered, self.dead_lettered)
    }

    /// Adds a segment of `records` records covering events up to `through`; returns
    /// its sequence number. A segment without records is resolved at once.
    pub fn offer(&mut self, records: usize, through: Option<i64>) -> u64 {
        let seq = self.front + self.segments.len() as u64;
        self.segments.push_back(Segment {
            through,
            unresolved: records,
        });
        self.advance();
        seq
    }

    /// The oldest `occur_time` a re-read could still bring, as things stand: it only
    /// rises, so a record below it never needs a fingerprint.
    fn floor(&self) -> i64 {
        source::cursor::floor(self.start.since, self.position, self.start.lookback_ms)
    }

    /// Records what became of one record of segment `seq`. Returns `false` when the
    /// segment is unknown or has no unresolved record left (a caller bug, reported by
    /// the driver rather than miscounted).
    pub fn resolve(&mut self, seq: u64, record: &SharedRecord, how: Resolution) -> bool {
        let Some(index) = seq.checked_sub(self.front) else {
            return false;
        };
        let Some(segment) = usize::try_from(index)
            .ok()
            .and_then(|i| self.segments.get_mut(i))
        else {
            return false;
        };
        if segment.unresolved == 0 {
            return false;
        }
        segment.unresolved -= 1;
        if record.occur_time >= self.floor() {
            self.fingerprints.push(record.clone());
        }
        match how {
            Resolution::Delivered => self.pending_delivered += 1,
            Resolution::DeadLettered => self.pending_dead_lettered += 1,
            Resolution::Skipped => {}
        }
        self.changed = true;
        self.advance();
        true
    }

    /// Moves the position over the leading resolved segments.
    fn advance(&mut self) {
        while let Some(segment) = self.segments.front() {
            if segment.unresolved > 0 {
                break;
            }
            if let Some(through) = segment.through
                && self.position.is_none_or(|p| through > p)
            {
                self.position = Some(through);
                self.changed = true;
            }
            self.segments.pop_front();
            self.front += 1;
        }
    }

    /// Whether a commit would change anything in the state file.
    pub fn is_dirty(&self) -> bool {
        self.changed || !self.start.stored
    }

    /// Whether some offered record is still waiting for an outcome.
    pub fn has_unresolved(&self) -> bool {
        self.segments.iter().any(|s| s.unresolved > 0)
    }

    /// The change to commit now, if any; [`Ledger::committed`] makes it final once the
    /// transaction succeeded.
    pub fn take_commit(&mut self) -> Option<LedgerCommit> {
        if !self.is_dirty() {
            return None;
        }
        let floor = self
            .position
            .map(|p| source::cursor::floor(self.start.since, Some(p), self.start.lookback_ms));
        // Only ids a re-read from the committed floor can meet are worth a row.
        let bound = self.floor();
        let add_fingerprints = std::mem::take(&mut self.fingerprints)
            .into_iter()
            .filter(|r| r.occur_time >= bound)
            .map(|r| (String::from(r.id), r.occur_time))
            .collect();
        let commit = LedgerCommit {
            cursor: CursorCommit {
                key: self.start.key.clone(),
                since: self.start.since,
                position: self.position,
                add_fingerprints,
                // Fingerprints older than the window are never consulted again.
                prune_below: floor,
            },
            delivered: std::mem::take(&mut self.pending_delivered),
            dead_lettered: std::mem::take(&mut self.pending_dead_lettered),
        };
        self.changed = false;
        Some(commit)
    }

    /// The transaction holding `commit` succeeded.
    pub fn committed(&mut self, commit: &LedgerCommit) {
        self.start.stored = true;
        self.start.position = commit.cursor.position;
        self.delivered += commit.delivered;
        self.dead_lettered += commit.dead_lettered;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ledger(position: Option<i64>, stored: bool) -> Ledger {
        Ledger::new(LedgerStart {
            key: CursorKey {
                source: "prod".into(),
                service_id: "svc".into(),
                sink: "loki".into(),
            },
            since: 0,
            position,
            lookback_ms: 100,
            stored,
        })
    }

    /// A record id made of `name`'s bytes in hex, padded with zeros.
    fn id(name: &str) -> String {
        let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        format!("{hex:0<64}")
    }

    fn rec(name: &str, occur_time: i64) -> SharedRecord {
        SharedRecord::new(record::EventRecord {
            id: record::EventId::parse(&id(name)).unwrap(),
            source: "prod".into(),
            project_id: "p".into(),
            service_id: "svc".into(),
            service_name: "".into(),
            occur_time,
            timestamp: record::Timestamp::from_ms(0),
            event_type: "normal".into(),
            event_info: String::new(),
        })
    }

    fn commit(l: &mut Ledger) -> CursorCommit {
        let c = l.take_commit().unwrap();
        l.committed(&c);
        c.cursor
    }

    #[test]
    fn position_moves_over_resolved_segments_only() {
        let mut l = ledger(Some(1_000), true);
        let a = l.offer(2, Some(1_010));
        let b = l.offer(1, Some(1_020));
        assert!(l.resolve(b, &rec("b1", 1_015), Resolution::Delivered));
        // Segment a is still open: the position must not pass it, but b1 is
        // fingerprinted so a re-read skips it.
        let c = commit(&mut l);
        assert_eq!(c.position, Some(1_000));
        assert_eq!(c.add_fingerprints, vec![(id("b1"), 1_015)]);
        assert!(l.has_unresolved());

        assert!(l.resolve(a, &rec("a1", 1_005), Resolution::Delivered));
        assert!(l.resolve(a, &rec("a2", 1_010), Resolution::DeadLettered));
        let c = commit(&mut l);
        assert_eq!(c.position, Some(1_020), "both segments resolved");
        assert_eq!(c.prune_below, Some(920));
        assert_eq!(l.totals(), (2, 1));
        assert!(!l.has_unresolved());
        assert!(l.take_commit().is_none(), "nothing changed since");
    }

    #[test]
    fn empty_segments_move_the_position_but_not_past_an_open_one() {
        let mut l = ledger(Some(1_000), true);
        let open = l.offer(1, Some(1_100));
        l.offer(0, Some(1_200));
        assert!(l.take_commit().is_none(), "nothing resolved yet");
        l.resolve(open, &rec("x", 1_050), Resolution::Delivered);
        assert_eq!(commit(&mut l).position, Some(1_200));
    }

    #[test]
    fn a_position_never_goes_back() {
        let mut l = ledger(Some(5_000), true);
        // A late event inside lookback: its page ends before the position.
        let s = l.offer(1, Some(4_950));
        l.resolve(s, &rec("late", 4_950), Resolution::Delivered);
        assert_eq!(commit(&mut l).position, Some(5_000));
    }

    #[test]
    fn a_new_cursor_is_saved_without_events() {
        let mut l = ledger(None, false);
        let c = commit(&mut l);
        assert_eq!((c.position, c.prune_below), (None, None));
        assert!(l.take_commit().is_none());
    }

    #[test]
    fn impossible_resolutions_are_refused() {
        let mut l = ledger(None, true);
        let s = l.offer(1, Some(10));
        assert!(
            !l.resolve(s + 1, &rec("x", 10), Resolution::Delivered),
            "unknown"
        );
        assert!(l.resolve(s, &rec("x", 10), Resolution::Delivered));
        assert!(
            !l.resolve(s, &rec("y", 10), Resolution::Delivered),
            "counted twice"
        );
    }

    #[test]
    fn an_uncommitted_change_is_not_counted() {
        let mut l = ledger(None, true);
        let s = l.offer(1, Some(10));
        l.resolve(s, &rec("x", 10), Resolution::Delivered);
        let _failed = l.take_commit().unwrap();
        assert_eq!(l.totals(), (0, 0));
    }

    #[test]
    fn only_ids_that_a_re_read_can_meet_are_fingerprinted() {
        // A backfill batch spanning more than the lookback (100 ms): only the ids
        // within 100 ms of the position it commits get a row.
        let mut l = ledger(None, true);
        let s = l.offer(4, Some(1_000));
        for (id, t) in [("old", 10), ("older", 5), ("edge", 900), ("new", 1_000)] {
            assert!(l.resolve(s, &rec(id, t), Resolution::Delivered));
        }
        let c = commit(&mut l);
        assert_eq!(c.position, Some(1_000));
        let ids: Vec<&str> = c
            .add_fingerprints
            .iter()
            .map(|(id, _)| id.as_str())
            .collect();
        assert_eq!(ids, [id("edge"), id("new")]);
        assert_eq!(l.totals(), (4, 0), "every record still counts as delivered");
    }
}
