//! The leader's expiry queue: leases ordered by when they run out.

use std::collections::BTreeSet;
use std::time::Instant;

/// Leases by expiry time. Renewals move a lease, so entries are removed and re-inserted (an
/// ordered set rather than a heap with stale entries, which would grow with every keep-alive).
#[derive(Default)]
pub(super) struct ExpiryQueue {
    set: BTreeSet<(Instant, i64)>,
}

impl ExpiryQueue {
    /// Tracks lease `id` expiring at `at` (replacing `old`, its previous expiry, if any).
    pub(super) fn set(&mut self, id: i64, old: Option<Instant>, at: Instant) {
        if let Some(old) = old {
            self.set.remove(&(old, id));
        }
        self.set.insert((at, id));
    }

    /// Stops tracking lease `id` (which expired at `at`).
    pub(super) fn remove(&mut self, id: i64, at: Instant) {
        self.set.remove(&(at, id));
    }

    /// Leases expired at `now`, soonest first.
    pub(super) fn expired(&self, now: Instant) -> impl Iterator<Item = i64> + '_ {
        self.set
            .iter()
            .take_while(move |(at, _)| *at <= now)
            .map(|(_, id)| *id)
    }

    /// Forgets everything (the member stopped leading).
    pub(super) fn clear(&mut self) {
        self.set.clear();
    }

    /// How many leases are tracked.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.set.len()
    }
}
