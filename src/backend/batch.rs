//! An atomic group of writes across buckets.

use super::{prefixed, Bucket, CONSISTENT_INDEX_KEY};

/// Writes to several buckets that must reach the database together or not at all.
///
/// The applier builds one batch per applied raft entry (kv changes, lease and auth changes and
/// the consistent index) so that a crash never leaves state that disagrees with the index it
/// claims to have applied. A later write to the same key in one batch replaces the earlier one.
#[derive(Default)]
pub struct WriteBatch {
    /// Prefixed key → new value (None = delete), in the order given.
    ops: Vec<(Vec<u8>, Option<sled::IVec>)>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` in `bucket` to `value` when the batch is committed.
    pub fn put(&mut self, bucket: Bucket, key: &[u8], value: impl Into<sled::IVec>) {
        self.ops.push((prefixed(bucket, key), Some(value.into())));
    }

    /// Removes `key` from `bucket` when the batch is committed (a missing key is fine).
    pub fn delete(&mut self, bucket: Bucket, key: &[u8]) {
        self.ops.push((prefixed(bucket, key), None));
    }

    /// Records the last applied raft index in the same atomic write, so a restart replays the
    /// WAL from exactly the first entry this batch does not contain.
    pub fn set_consistent_index(&mut self, index: u64) {
        self.put(Bucket::Meta, CONSISTENT_INDEX_KEY, &index.to_be_bytes()[..]);
    }

    /// Whether the batch deletes revisions from the key bucket (compaction, snapshot install)
    /// rather than only adding to it.
    pub(super) fn deletes_history(&self) -> bool {
        self.ops
            .iter()
            .any(|(k, v)| v.is_none() && k.first() == Some(&Bucket::Key.id()))
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

    pub(super) fn into_sled(self) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for (k, v) in self.ops {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        batch
    }
}

impl std::fmt::Debug for WriteBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatch")
            .field("ops", &self.ops)
            .finish()
    }
}
