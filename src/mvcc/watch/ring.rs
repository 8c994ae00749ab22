//! The ring: a bounded in-memory window of the most recent revisions' events, in revision
//! order, fed by the applier ([`WatchHub::notify`]) and read by the dispatcher (new revisions)
//! and the syncer (catch-up of recent revisions without backend IO).
//!
//! What it may let go of: a revision leaves the ring only once it has been both committed to
//! the backend (so catch-up can read it there instead) and dispatched (so the dispatcher
//! never misses one); within that, it keeps at most `ring_max_revisions` revisions and
//! `ring_max_bytes` of events. A snapshot install empties it ([`Ring::reset`]).
//!
//! Locking: the ring has its own mutex in the hub, taken after the state lock when both are
//! needed and never held while taking the state lock (see `hub`).
//!
//! [`WatchHub::notify`]: super::WatchHub::notify

use std::collections::VecDeque;
use std::sync::Arc;

use super::event::RevEntry;

pub(super) struct Ring {
    entries: VecDeque<Arc<RevEntry>>,
    bytes: usize,
    /// The newest revision handed over by the applier.
    pub(super) head: i64,
    /// The newest revision committed to the backend.
    pub(super) committed: i64,
    /// Mirror of `State::dispatched` (entries after it must stay for the dispatcher).
    pub(super) dispatched: i64,
}

impl Ring {
    /// An empty ring at revision `rev` (committed and dispatched).
    pub(super) fn new(rev: i64) -> Self {
        Ring {
            entries: VecDeque::new(),
            bytes: 0,
            head: rev,
            committed: rev,
            dispatched: rev,
        }
    }

    /// Appends the next revision (the caller checked it is above `head`).
    pub(super) fn push(&mut self, entry: Arc<RevEntry>) {
        self.head = entry.rev;
        self.bytes += entry.bytes;
        self.entries.push_back(entry);
    }

    /// Empties the ring and moves it to revision `rev` (the store was replaced).
    pub(super) fn reset(&mut self, rev: i64) {
        self.entries.clear();
        self.bytes = 0;
        self.head = rev;
        self.committed = rev;
        self.dispatched = rev;
    }

    /// The oldest revision held (head + 1 when empty).
    pub(super) fn oldest(&self) -> i64 {
        self.entries.front().map(|e| e.rev).unwrap_or(self.head + 1)
    }

    /// Entries with `from <= rev <= to`: at most `max_count`, and at most `max_bytes` beyond
    /// the first.
    pub(super) fn range(
        &self,
        from: i64,
        to: i64,
        max_bytes: usize,
        max_count: usize,
    ) -> Vec<Arc<RevEntry>> {
        let start = self.entries.partition_point(|e| e.rev < from);
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in self.entries.range(start..) {
            if e.rev > to
                || out.len() >= max_count
                || (!out.is_empty() && bytes + e.bytes > max_bytes)
            {
                break;
            }
            bytes += e.bytes;
            out.push(e.clone());
        }
        out
    }

    /// Lets the oldest revisions go while over either bound, but only those both committed
    /// and dispatched.
    pub(super) fn evict(&mut self, max_revisions: usize, max_bytes: usize) {
        let keep_after = self.committed.min(self.dispatched);
        while self.entries.len() > max_revisions || self.bytes > max_bytes {
            match self.entries.front() {
                Some(e) if e.rev <= keep_after => {
                    self.bytes -= e.bytes;
                    self.entries.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Revisions held and their bytes.
    pub(super) fn usage(&self) -> (usize, usize) {
        (self.entries.len(), self.bytes)
    }
}
