//! The store: current revision, compaction revision, key index, reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::compaction::Compaction;
use super::group::Group;
use super::index::{Index, KeyRange};
use super::kv::{decode, decode_ref};
use super::txn::WriteTxn;
use super::{KeyValue, MvccError, Revision};
use crate::backend::{Backend, WriteBatch};
use crate::schema::{meta, Bucket};

/// How to read a range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeOptions {
    /// At most this many key-values (0 = no limit); `count` still counts them all.
    pub limit: usize,
    /// Revision to read at; <= 0 means the current revision.
    pub rev: i64,
    /// Only count; no values are read from the backend.
    pub count_only: bool,
}

/// The answer to a range read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeResult {
    /// Key-values sorted by key (empty when `count_only`).
    pub kvs: Vec<KeyValue>,
    /// Keys in the range at the revision read, ignoring `limit`.
    pub count: usize,
    /// The store's current revision (what etcd puts in the response header), not the revision
    /// read.
    pub rev: i64,
}

/// The multi-version store. Wrap it in a `RwLock`: readers share it, the applier writes.
pub struct Store {
    pub(super) backend: Arc<Backend>,
    pub(super) index: Index,
    pub(super) current_rev: i64,
    pub(super) compact_rev: i64,
    restored_leases: Vec<(Vec<u8>, i64)>,
    /// Raft term of the entry being applied, written next to every consistent index.
    pub(super) term: u64,
    /// Open group commit, if any (see `group.rs`).
    pub(super) group: Option<Group>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("current_rev", &self.current_rev)
            .field("compact_rev", &self.compact_rev)
            .field("keys", &self.index.live_keys())
            .finish()
    }
}

impl Store {
    /// Opens the store on `backend`, rebuilding the key index from the key bucket.
    ///
    /// Returns the unfinished compaction of a previous run, if any: its in-memory part is
    /// already redone (so the store is exactly as before the restart); the caller should
    /// `run` it, like etcd resumes a scheduled compaction.
    pub fn open(backend: Arc<Backend>) -> Result<(Store, Option<Compaction>), MvccError> {
        let started = Instant::now();
        let finished = read_meta_rev(&backend, meta::FINISHED_COMPACT_REV)?;
        let term = backend.consistent_term()?.unwrap_or(0);
        let scheduled = read_meta_rev(&backend, meta::SCHEDULED_COMPACT_REV)?;

        let mut index = Index::default();
        let mut current_rev = 1;
        let mut leases: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        let mut revisions = 0u64;
        for item in backend.range(Bucket::Key, &[], None) {
            let (k, v) = item?;
            let (rev, tombstone) = Revision::parse_key(&k)?;
            let kv = decode_ref(&v).map_err(|e| at_revision(e, rev))?;
            if tombstone {
                index.restore_tombstone(kv.key, rev);
                leases.remove(kv.key);
            } else {
                index.restore_put(kv.key, rev, kv.create_revision, kv.version);
                if kv.lease != 0 {
                    leases.insert(kv.key.to_vec(), kv.lease);
                } else {
                    leases.remove(kv.key);
                }
            }
            current_rev = rev.main;
            revisions += 1;
        }
        // A compaction may have removed the newest revisions (tombstones at the compaction
        // revision), so the compaction revisions are a floor for the current revision.
        let mut compact_rev = finished.unwrap_or(-1);
        current_rev = current_rev.max(compact_rev);
        if let Some(s) = scheduled {
            current_rev = current_rev.max(s);
        }
        let resume = match scheduled {
            Some(s) if s > compact_rev => {
                let keep = index.compact(s);
                compact_rev = s;
                tracing::info!(revision = s, "resuming an unfinished compaction");
                Some(Compaction::new(s, keep))
            }
            _ => None,
        };
        tracing::info!(
            current_revision = current_rev,
            compact_revision = compact_rev,
            keys = index.live_keys(),
            revisions,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "restored mvcc store"
        );
        let store = Store {
            backend,
            index,
            current_rev,
            compact_rev,
            restored_leases: leases.into_iter().collect(),
            term,
            group: None,
        };
        Ok((store, resume))
    }

    /// The newest revision: 1 on an empty store (so the first change gets revision 2).
    pub fn current_revision(&self) -> i64 {
        self.current_rev
    }

    /// The revision of the last compaction; -1 if the store was never compacted (etcd's
    /// value). Reads at this revision still succeed, reads below it fail with `Compacted`.
    pub fn compact_revision(&self) -> i64 {
        self.compact_rev
    }

    /// Number of keys that exist at the current revision.
    pub fn keys_total(&self) -> usize {
        self.index.live_keys()
    }

    /// The backend this store writes to (also used by lease, auth and snapshots).
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// Live keys that had a lease attached when the store was opened, in key order, so the
    /// lessor can re-attach them after a restart (etcd does this during its restore). Empty
    /// after the first call.
    pub fn take_restored_leases(&mut self) -> Vec<(Vec<u8>, i64)> {
        std::mem::take(&mut self.restored_leases)
    }

    /// Reads the keys named by `(key, range_end)` (etcd's convention: empty `range_end` = just
    /// `key`, `"\0"` = every key >= `key`) at `opts.rev`.
    pub fn range(
        &self,
        key: &[u8],
        range_end: &[u8],
        opts: &RangeOptions,
    ) -> Result<RangeResult, MvccError> {
        let at = self.check_rev(opts.rev, self.current_rev)?;
        let (kvs, count) = self.range_at(KeyRange::new(key, range_end), at, opts)?;
        Ok(RangeResult {
            kvs,
            count,
            rev: self.current_rev,
        })
    }

    /// Sets the raft term of the entries applied from now on (the applier calls it before each
    /// entry whose term differs): every consistent index written is paired with it.
    pub fn set_term(&mut self, term: u64) {
        self.term = term;
    }

    /// Starts the write transaction of the applied raft entry `consistent_index`.
    pub fn write(&mut self, consistent_index: u64) -> WriteTxn<'_> {
        WriteTxn::new(self, consistent_index)
    }

    /// Compacts history at `rev`: the index is compacted now, and `rev` is persisted as the
    /// scheduled compaction together with `consistent_index`; the returned [`Compaction`]
    /// deletes the dead revisions from the backend (run it off the applier's thread). An open
    /// group is committed first and stays open.
    pub fn compact(&mut self, rev: i64, consistent_index: u64) -> Result<Compaction, MvccError> {
        if rev <= self.compact_rev {
            return Err(MvccError::Compacted);
        }
        if rev > self.current_rev {
            return Err(MvccError::FutureRev);
        }
        // The physical compaction must find every revision <= rev in the backend.
        self.flush_group()?;
        let mut batch = WriteBatch::new();
        batch.put(
            Bucket::Meta,
            meta::SCHEDULED_COMPACT_REV,
            &Revision::new(rev, 0).to_bytes()[..],
        );
        batch.set_consistent_index(consistent_index, self.term);
        self.backend.commit(batch)?;

        let started = Instant::now();
        let keep = self.index.compact(rev);
        self.compact_rev = rev;
        crate::metrics::METRICS
            .index_compaction_pause
            .observe(started.elapsed().as_secs_f64() * 1000.0);
        tracing::info!(
            revision = rev,
            kept = keep.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "compacted the key index"
        );
        Ok(Compaction::new(rev, keep))
    }

    /// Validates a requested revision against `cur` (the revision the reader sees) in etcd's
    /// order (future first, then compacted) and resolves `<= 0` to `cur`.
    pub(super) fn check_rev(&self, requested: i64, cur: i64) -> Result<i64, MvccError> {
        if requested > cur {
            return Err(MvccError::FutureRev);
        }
        let at = if requested <= 0 { cur } else { requested };
        if at < self.compact_rev {
            return Err(MvccError::Compacted);
        }
        Ok(at)
    }

    /// Reads committed state at `at` (already validated).
    pub(super) fn range_at(
        &self,
        range: KeyRange<'_>,
        at: i64,
        opts: &RangeOptions,
    ) -> Result<(Vec<KeyValue>, usize), MvccError> {
        if opts.count_only {
            return Ok((Vec::new(), self.index.count(range, at)));
        }
        let (revs, count) = self.index.revisions(range, at, opts.limit);
        let mut kvs = Vec::with_capacity(revs.len());
        for (key, rev) in revs {
            kvs.push(self.read_kv(key, rev)?);
        }
        Ok((kvs, count))
    }

    /// Reads the put of `key` at `rev` from the backend.
    pub(super) fn read_kv(&self, key: &[u8], rev: Revision) -> Result<KeyValue, MvccError> {
        if let Some(kv) = self.group_value(rev) {
            return Ok(kv.clone());
        }
        let raw = self
            .backend
            .get(Bucket::Key, &rev.to_bytes())?
            .ok_or_else(|| {
                MvccError::Corrupt(format!(
                    "the index says key {:?} changed at revision {rev}, but the key bucket has \
                     no such revision",
                    String::from_utf8_lossy(key)
                ))
            })?;
        let kv = decode(&raw).map_err(|e| at_revision(e, rev))?;
        if kv.key != key {
            return Err(MvccError::Corrupt(format!(
                "revision {rev} holds key {:?}, but the index says it is key {:?}",
                String::from_utf8_lossy(&kv.key),
                String::from_utf8_lossy(key)
            )));
        }
        Ok(kv)
    }
}

/// Adds the revision to a decoding error.
pub(super) fn at_revision(e: MvccError, rev: Revision) -> MvccError {
    match e {
        MvccError::Corrupt(msg) => MvccError::Corrupt(format!("revision {rev}: {msg}")),
        other => other,
    }
}

/// Reads a compaction revision from the meta bucket.
fn read_meta_rev(backend: &Backend, key: &[u8]) -> Result<Option<i64>, MvccError> {
    match backend.get(Bucket::Meta, key)? {
        None => Ok(None),
        Some(v) => {
            let (rev, tombstone) = Revision::parse_key(&v).map_err(|_| {
                MvccError::Corrupt(format!(
                    "meta key {} is {} bytes ({:02x?}), expected a 17-byte revision",
                    String::from_utf8_lossy(key),
                    v.len(),
                    &v[..v.len().min(24)]
                ))
            })?;
            if tombstone {
                return Err(MvccError::Corrupt(format!(
                    "meta key {} holds a tombstone revision",
                    String::from_utf8_lossy(key)
                )));
            }
            Ok(Some(rev.main))
        }
    }
}
