//! Group commit: many write transactions, one backend batch.
//!
//! Every backend batch has a fixed cost (a journal record, a sequence number, a lock round),
//! whatever it holds; under sustained load one batch per applied entry pays it thousands of
//! times a second. The applier therefore brackets all entries of one raft `Ready` with
//! [`Store::begin_group`] / [`Store::end_group`] so they reach the backend as one batch.
//!
//! Inside a group, committed transactions are visible at once through the store (values are
//! served from memory until `end_group`), but NOT in the backend: code that reads the backend
//! directly (`events_between`, lease/auth buckets, snapshots) must run after `end_group`.

use std::collections::HashMap;

use super::store::Store;
use super::{KeyValue, MvccError, Revision};
use crate::backend::WriteBatch;

/// Writes of committed transactions not yet handed to the backend.
#[derive(Default)]
pub(super) struct Group {
    /// Every write of the group's transactions, in commit order.
    pub batch: WriteBatch,
    /// Raft index (and term) of the last transaction that wrote something.
    pub consistent_index: Option<(u64, u64)>,
    /// Puts of the group by revision, for reads until the batch is committed.
    pub values: HashMap<Revision, KeyValue>,
}

impl Store {
    /// Starts grouping: until [`Store::end_group`], committed write transactions are applied
    /// to the index (visible to readers) and collected into one backend batch. A group already
    /// open stays open.
    pub fn begin_group(&mut self) {
        if self.group.is_none() {
            self.group = Some(Group::default());
        }
    }

    /// Commits the open group's writes and the last consistent index atomically, and stops
    /// grouping (a no-op without a group).
    ///
    /// On error the store's memory is ahead of the backend: treat it as fatal and restart,
    /// which replays the WAL from the last persisted consistent index.
    pub fn end_group(&mut self) -> Result<(), MvccError> {
        match self.group.take() {
            Some(group) => self.commit_group(group),
            None => Ok(()),
        }
    }

    /// True while a group is open.
    pub fn in_group(&self) -> bool {
        self.group.is_some()
    }

    /// Commits the open group's writes but keeps grouping (used before a compaction).
    pub(super) fn flush_group(&mut self) -> Result<(), MvccError> {
        match self.group.take() {
            Some(group) => {
                self.group = Some(Group::default());
                self.commit_group(group)
            }
            None => Ok(()),
        }
    }

    fn commit_group(&mut self, group: Group) -> Result<(), MvccError> {
        let Group {
            mut batch,
            consistent_index,
            values,
        } = group;
        if let Some((index, term)) = consistent_index {
            batch.set_consistent_index(index, term);
        }
        let n = batch.len();
        self.backend.commit(batch).inspect_err(|e| {
            tracing::error!(
                error = %e,
                writes = n,
                puts = values.len(),
                "group commit failed: the store is ahead of the backend; restart to recover"
            );
        })?;
        Ok(())
    }

    /// A put of the open group, if `rev` is one.
    pub(super) fn group_value(&self, rev: Revision) -> Option<&KeyValue> {
        self.group.as_ref()?.values.get(&rev)
    }
}
