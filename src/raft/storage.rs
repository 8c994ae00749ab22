//! Raft's view of its own log: raft-rs's in-memory storage, rebuilt from the WAL on start.
//!
//! The WAL is the durable copy; this is the indexable copy raft reads from. Entries older than
//! the last snapshot (minus a catch-up margin) are dropped here and in the WAL, so memory and
//! disk stay bounded under sustained writes.

use protobuf::Message as _;
use raft::prelude::*;
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage};

use crate::wal::Record;

/// What the WAL told us about this member when it was replayed.
pub struct Restored {
    /// The raft log and hard state.
    pub storage: RaftStorage,
    /// The WAL's metadata record (member and cluster ids), if present.
    pub metadata: Option<Vec<u8>>,
    /// The last snapshot point in the WAL, if any.
    pub snapshot: Option<(u64, u64)>,
}

/// The raft log as raft-rs reads it.
#[derive(Clone)]
pub struct RaftStorage {
    mem: MemStorage,
    snaps: Option<std::sync::Arc<crate::snap::SnapshotStore>>,
}

impl RaftStorage {
    /// An empty log for a new member whose cluster configuration is `conf_state`.
    pub fn new(conf_state: ConfState) -> Self {
        let mem = MemStorage::new();
        mem.wl().set_conf_state(conf_state);
        Self { mem, snaps: None }
    }

    /// Rebuilds the log from WAL records, in write order. A later entry with an index already
    /// seen replaces that entry and everything after it (a new leader overwrote the tail). A
    /// snapshot point may be written after entries newer than it, so entries are collected
    /// first and the latest snapshot point is installed before them.
    pub fn restore(conf_state: ConfState, records: Vec<Record>) -> Result<Restored, String> {
        let mut metadata = None;
        let mut snapshot: Option<(u64, u64)> = None;
        let mut hard_state: Option<HardState> = None;
        let mut entries: Vec<Entry> = Vec::new();
        for rec in records {
            match rec {
                Record::Metadata(m) => metadata = Some(m),
                Record::Snapshot { index, term } => {
                    if snapshot.is_none_or(|(i, _)| index > i) {
                        snapshot = Some((index, term));
                    }
                    if replaces_log(&entries, index, term) {
                        // A leader's snapshot was installed here: raft threw the whole log
                        // away, so the WAL's earlier entries are not part of it any more.
                        entries.clear();
                    }
                }
                Record::Entry { index, data, .. } => {
                    let entry = Entry::parse_from_bytes(&data)
                        .map_err(|e| format!("WAL entry {index} does not decode: {e}"))?;
                    if let Some(first) = entries.first().map(|e| e.index) {
                        if index < first {
                            entries.clear();
                        } else {
                            let pos = (index - first) as usize;
                            if pos > entries.len() {
                                return Err(format!(
                                    "WAL is missing raft entries {}..{} before entry {index}",
                                    first + entries.len() as u64,
                                    index - 1
                                ));
                            }
                            entries.truncate(pos);
                        }
                    }
                    entries.push(entry);
                }
                Record::HardState { term, vote, commit } => {
                    hard_state = Some(HardState {
                        term,
                        vote,
                        commit,
                        ..Default::default()
                    });
                }
            }
        }
        let storage = Self::new(conf_state.clone());
        let mut after = 0;
        if let Some((index, term)) = snapshot {
            let mut snap = Snapshot::default();
            snap.mut_metadata().index = index;
            snap.mut_metadata().term = term;
            snap.mut_metadata().set_conf_state(conf_state);
            storage
                .mem
                .wl()
                .apply_snapshot(snap)
                .map_err(|e| e.to_string())?;
            after = index;
        }
        let keep: Vec<Entry> = entries.into_iter().filter(|e| e.index > after).collect();
        if let Some(first) = keep.first() {
            if first.index != after + 1 {
                return Err(format!(
                    "WAL is missing raft entries {}..{} after the snapshot at {after}",
                    after + 1,
                    first.index - 1
                ));
            }
            storage.mem.wl().append(&keep).map_err(|e| e.to_string())?;
        }
        if let Some(mut hs) = hard_state {
            // The commit index can never be behind the snapshot nor beyond the entries held.
            hs.commit = hs.commit.max(after).min(storage.last_index());
            storage.mem.wl().set_hardstate(hs);
        }
        Ok(Restored {
            storage,
            metadata,
            snapshot,
        })
    }

    /// Serves raft's snapshot requests from `snaps` (prepared by the applier).
    pub fn with_snapshots(mut self, snaps: std::sync::Arc<crate::snap::SnapshotStore>) -> Self {
        self.snaps = Some(snaps);
        self
    }

    /// Resets the log to a snapshot received from the leader.
    pub fn apply_snapshot(&self, snap: Snapshot) -> raft::Result<()> {
        self.mem.wl().apply_snapshot(snap)
    }

    /// Starts the log at a snapshot point holding `conf_state` (a new cluster starts at index 1,
    /// so a member that joins later is brought up to date by snapshot).
    pub fn bootstrap_at(&self, index: u64, term: u64, conf_state: ConfState) -> raft::Result<()> {
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = term;
        snap.mut_metadata().set_conf_state(conf_state);
        self.mem.wl().apply_snapshot(snap)
    }

    /// Appends entries raft handed us in a Ready (overwriting a conflicting tail).
    pub fn append(&self, entries: &[Entry]) -> raft::Result<()> {
        self.mem.wl().append(entries)
    }

    /// Records the latest hard state.
    pub fn set_hard_state(&self, hs: HardState) {
        self.mem.wl().set_hardstate(hs);
    }

    /// The hard state raft would restart from.
    pub fn hard_state(&self) -> HardState {
        self.mem.rl().hard_state().clone()
    }

    /// Advances the commit index (from a LightReady).
    pub fn set_commit(&self, commit: u64) {
        self.mem.wl().mut_hard_state().commit = commit;
    }

    /// Raises the commit index to at least `applied`: the backend may have applied (and flushed)
    /// entries whose commit index never reached the WAL before a crash.
    pub fn ensure_commit_at_least(&self, applied: u64) {
        let want = applied.min(self.last_index());
        let mut core = self.mem.wl();
        if core.hard_state().commit < want {
            core.mut_hard_state().commit = want;
        }
    }

    /// Records the configuration after a conf change was applied.
    pub fn set_conf_state(&self, cs: ConfState) {
        self.mem.wl().set_conf_state(cs);
    }

    /// Drops entries before `index` (they are in a snapshot and no follower needs them).
    pub fn compact(&self, index: u64) -> raft::Result<()> {
        let index = index.min(self.last_index() + 1);
        self.mem.wl().compact(index)
    }

    /// The term of the entry at `index`, if the log (or its snapshot point) still knows it.
    pub fn term_of(&self, index: u64) -> Option<u64> {
        self.mem.term(index).ok()
    }

    /// Index of the first entry still held.
    pub fn first_index(&self) -> u64 {
        Storage::first_index(&self.mem).unwrap_or(1)
    }

    /// Index of the last entry held.
    pub fn last_index(&self) -> u64 {
        Storage::last_index(&self.mem).unwrap_or(0)
    }
}

/// Whether a snapshot point at (`index`, `term`), met in the WAL after `entries`, is a leader's
/// snapshot that replaced the log (rather than this member's own snapshot point, which is
/// written after the entry it covers and keeps the log). raft-rs installs a leader's snapshot
/// only when the log does not already hold the entry at its index with its term, and then
/// discards every entry: so the entries seen so far are stale exactly when they do not hold
/// (`index`, `term`) but reach up to or past `index`, or end before it (a gap).
fn replaces_log(entries: &[Entry], index: u64, term: u64) -> bool {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return false;
    };
    if index < first.index {
        return false; // a snapshot point older than everything held: keeps them
    }
    match entries.get((index - first.index) as usize) {
        Some(e) => e.term != term,
        None => last.index < index,
    }
}

impl Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let Some(snaps) = &self.snaps else {
            return self.mem.snapshot(request_index, to);
        };
        let first = Storage::first_index(&self.mem)?;
        if let Some(p) = snaps.latest() {
            // Usable if new enough and the log still holds every entry after it.
            if p.meta.index >= request_index && p.meta.index + 1 >= first {
                let mut snap = Snapshot::default();
                let m = snap.mut_metadata();
                m.index = p.meta.index;
                m.term = p.meta.term;
                m.set_conf_state(p.meta.conf_state.clone());
                return Ok(snap);
            }
        }
        snaps.request();
        Err(raft::Error::Store(
            raft::StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Record {
        let e = Entry {
            index,
            term,
            data: vec![index as u8].into(),
            ..Default::default()
        };
        Record::Entry {
            index,
            term,
            data: e.write_to_bytes().unwrap(),
        }
    }

    fn voters() -> ConfState {
        ConfState {
            voters: vec![1],
            ..Default::default()
        }
    }

    #[test]
    fn snapshot_point_written_after_newer_entries_keeps_them() {
        let mut recs: Vec<Record> = (1..=12).map(|i| entry(i, 1)).collect();
        recs.push(Record::Snapshot { index: 10, term: 1 });
        recs.push(entry(13, 1));
        recs.push(Record::HardState {
            term: 1,
            vote: 1,
            commit: 13,
        });
        let r = RaftStorage::restore(voters(), recs).unwrap();
        assert_eq!((r.storage.first_index(), r.storage.last_index()), (11, 13));
        assert_eq!(r.snapshot, Some((10, 1)));
        assert_eq!(
            r.storage.term(10).unwrap(),
            1,
            "the snapshot point's term is known"
        );
        assert_eq!(r.storage.hard_state().commit, 13);
    }

    #[test]
    fn a_leader_snapshot_installed_past_the_log_replaces_it() {
        // Entries 1..7, then the leader's snapshot at 5460 (the member was down), then new
        // entries: the restart used to fail with "WAL is missing raft entries 8..5460".
        let mut recs: Vec<Record> = (1..=7).map(|i| entry(i, 1)).collect();
        recs.push(Record::Snapshot {
            index: 5460,
            term: 2,
        });
        recs.push(Record::HardState {
            term: 2,
            vote: 0,
            commit: 5460,
        });
        recs.extend((5461..=5463).map(|i| entry(i, 2)));
        let r = RaftStorage::restore(voters(), recs).unwrap();
        assert_eq!(
            (r.storage.first_index(), r.storage.last_index()),
            (5461, 5463)
        );
        assert_eq!(r.snapshot, Some((5460, 2)));
        assert_eq!(r.storage.term(5460).unwrap(), 2);
        assert_eq!(r.storage.hard_state().commit, 5460);

        // Restarted right after the install, before any new entry.
        let mut recs: Vec<Record> = (1..=7).map(|i| entry(i, 1)).collect();
        recs.push(Record::Snapshot {
            index: 5460,
            term: 2,
        });
        let r = RaftStorage::restore(voters(), recs).unwrap();
        assert_eq!(
            (r.storage.first_index(), r.storage.last_index()),
            (5461, 5460)
        );
    }

    #[test]
    fn a_leader_snapshot_over_a_conflicting_log_drops_the_stale_tail() {
        // Entries 1..10 of term 1, of which 6..10 were never committed; the leader of term 3
        // sends a snapshot at 8 (its entry 8 has term 3): entries 9 and 10 of term 1 are gone.
        let mut recs: Vec<Record> = (1..=10).map(|i| entry(i, 1)).collect();
        recs.push(Record::Snapshot { index: 8, term: 3 });
        recs.push(entry(9, 3));
        let r = RaftStorage::restore(voters(), recs).unwrap();
        assert_eq!((r.storage.first_index(), r.storage.last_index()), (9, 9));
        assert_eq!(r.storage.term(9).unwrap(), 3);
    }

    #[test]
    fn own_snapshot_points_keep_the_log() {
        assert!(!replaces_log(&[], 5, 1));
        let es: Vec<Entry> = (3..=6)
            .map(|index| Entry {
                index,
                term: 2,
                ..Default::default()
            })
            .collect();
        assert!(!replaces_log(&es, 5, 2), "the entry it covers is held");
        assert!(!replaces_log(&es, 2, 1), "older than the log");
        assert!(replaces_log(&es, 5, 3), "another term at that index");
        assert!(replaces_log(&es, 9, 3), "past the end");
        // A snapshot point at the index of an install that is already behind the entries.
        let recs = vec![
            Record::Snapshot { index: 10, term: 2 },
            entry(11, 2),
            entry(12, 2),
            Record::Snapshot { index: 10, term: 2 },
            entry(13, 2),
        ];
        let r = RaftStorage::restore(voters(), recs).unwrap();
        assert_eq!((r.storage.first_index(), r.storage.last_index()), (11, 13));
    }

    #[test]
    fn later_entries_overwrite_a_conflicting_tail() {
        let recs = vec![
            entry(1, 1),
            entry(2, 1),
            entry(3, 1),
            entry(2, 2),
            entry(3, 2),
            entry(4, 2),
        ];
        let r = RaftStorage::restore(voters(), recs).unwrap();
        assert_eq!(r.storage.last_index(), 4);
        assert_eq!(r.storage.term(2).unwrap(), 2);
        assert_eq!(r.storage.term(1).unwrap(), 1);
    }

    #[test]
    fn a_gap_is_an_error_and_commit_is_clamped() {
        let err = RaftStorage::restore(voters(), vec![entry(1, 1), entry(3, 1)])
            .err()
            .unwrap();
        assert!(err.contains("missing raft entries 2..2"), "{err}");
        let recs = vec![
            entry(1, 1),
            Record::HardState {
                term: 1,
                vote: 1,
                commit: 9,
            },
        ];
        let r = RaftStorage::restore(voters(), recs).unwrap();
        assert_eq!(
            r.storage.hard_state().commit,
            1,
            "commit never exceeds the log"
        );
    }
}
