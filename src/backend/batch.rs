//! An atomic group of writes across buckets.

use super::{prefixed, Value};
use crate::schema::{meta, Bucket};

/// Writes to several buckets that must reach the database together or not at all.
///
/// The applier builds one batch per applied raft entry (kv changes, lease and auth changes and
/// the consistent index) so that a crash never leaves state that disagrees with the index it
/// claims to have applied. A later write to the same key in one batch replaces the earlier one.
#[derive(Default)]
pub struct WriteBatch {
    /// Prefixed key → new value (None = delete), in the order given.
    ops: Vec<(Vec<u8>, Option<Value>)>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` in `bucket` to `value` when the batch is committed.
    pub fn put(&mut self, bucket: Bucket, key: &[u8], value: impl Into<Value>) {
        self.ops.push((prefixed(bucket, key), Some(value.into())));
    }

    /// Removes `key` from `bucket` when the batch is committed (a missing key is fine).
    pub fn delete(&mut self, bucket: Bucket, key: &[u8]) {
        self.ops.push((prefixed(bucket, key), None));
    }

    /// Records the last applied raft index and its term in the same atomic write, so a restart
    /// replays the WAL from exactly the first entry this batch does not contain (and knows
    /// where that entry sits in raft's log even if the WAL lost it).
    pub fn set_consistent_index(&mut self, index: u64, term: u64) {
        self.put(
            Bucket::Meta,
            meta::CONSISTENT_INDEX,
            &index.to_be_bytes()[..],
        );
        self.put(Bucket::Meta, meta::TERM, &term.to_be_bytes()[..]);
    }

    /// True when nothing was added; committing an empty batch is a no-op.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Number of puts and deletes added (a key written twice counts twice).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Moves every write of `other` after this batch's own (so they win on the same key).
    pub fn append(&mut self, other: WriteBatch) {
        if self.ops.is_empty() {
            self.ops = other.ops;
        } else {
            self.ops.extend(other.ops);
        }
    }

    /// The writes to apply, one per key: the last one given for a key wins. (Writes in one
    /// fjall batch share a sequence number, so two for the same key must never reach it.)
    pub(super) fn into_ops(self) -> Vec<(Vec<u8>, Option<Value>)> {
        // Newest first: a key is kept the first time it is seen.
        let mut keep: Vec<bool> = {
            let mut seen = std::collections::HashSet::with_capacity(self.ops.len());
            self.ops
                .iter()
                .rev()
                .map(|(k, _)| seen.insert(k.as_slice()))
                .collect()
        };
        keep.reverse();
        self.ops
            .into_iter()
            .zip(keep)
            .filter_map(|(op, keep)| keep.then_some(op))
            .collect()
    }
}

impl std::fmt::Debug for WriteBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatch")
            .field("ops", &self.ops)
            .finish()
    }
}
