//! Physical compaction: deleting dead revisions from the backend in bounded batches.

use std::time::Instant;

use super::{MvccError, Revision};
use crate::backend::{Backend, WriteBatch};
use crate::metrics::METRICS;
use crate::schema::{meta, Bucket};

/// Revision keys examined per backend batch: small enough that a batch never holds up the
/// applier's commits for long, large enough to amortise commit overhead (etcd uses 1000).
const BATCH_KEYS: usize = 1000;

/// The backend half of a compaction, produced by `Store::compact` (or `Store::open` when a
/// compaction was interrupted).
///
/// The key index is already compacted when this exists, so nothing reads the revisions it
/// deletes; it can therefore run on another thread while the store keeps serving. Run
/// compactions one at a time, in the order they were made (like etcd's FIFO scheduler).
#[derive(Debug)]
pub struct Compaction {
    rev: i64,
    /// Revisions <= `rev` that must stay, sorted ascending.
    keep: Vec<Revision>,
}

impl Compaction {
    pub(super) fn new(rev: i64, keep: Vec<Revision>) -> Self {
        debug_assert!(keep.windows(2).all(|w| w[0] < w[1]));
        Compaction { rev, keep }
    }

    /// The compaction revision.
    pub fn revision(&self) -> i64 {
        self.rev
    }

    /// Deletes every revision <= the compaction revision that the index no longer needs,
    /// `BATCH_KEYS` keys at a time, then records the revision as finished in the meta bucket
    /// (so a restart does not redo it). Blocking.
    pub fn run(self, backend: &Backend) -> Result<(), MvccError> {
        let started = Instant::now();
        tracing::info!(revision = self.rev, "starting backend compaction");
        let end = self
            .rev
            .checked_add(1)
            .map(|e| Revision::new(e, 0).to_bytes());
        let end = end.as_ref().map(|e| &e[..]);
        let mut start: Vec<u8> = Vec::new();
        let mut keep_at = 0;
        let (mut scanned, mut deleted, mut batches) = (0u64, 0u64, 0u64);
        loop {
            let batch_started = Instant::now();
            let mut batch = WriteBatch::new();
            let mut n = 0;
            let mut last: Option<Vec<u8>> = None;
            for item in backend.range(Bucket::Key, &start, end).take(BATCH_KEYS) {
                let (k, _) = item?;
                let (rev, _) = Revision::parse_key(&k)?;
                while keep_at < self.keep.len() && self.keep[keep_at] < rev {
                    keep_at += 1;
                }
                if self.keep.get(keep_at) != Some(&rev) {
                    batch.delete(Bucket::Key, &k);
                    deleted += 1;
                }
                n += 1;
                last = Some(k);
            }
            scanned += n as u64;
            batches += 1;
            let done = n < BATCH_KEYS;
            if done {
                batch.put(
                    Bucket::Meta,
                    meta::FINISHED_COMPACT_REV,
                    &Revision::new(self.rev, 0).to_bytes()[..],
                );
            }
            backend.commit(batch)?;
            METRICS
                .compaction_pause
                .observe(batch_started.elapsed().as_secs_f64() * 1000.0);
            if done {
                break;
            }
            tracing::debug!(
                revision = self.rev,
                scanned,
                deleted,
                "backend compaction in progress"
            );
            // next batch starts right after the last key seen
            start = last.expect("a full batch has a last key");
            start.push(0);
            std::thread::yield_now();
        }
        METRICS.compaction_keys.inc_by(deleted);
        METRICS
            .compaction_total
            .observe(started.elapsed().as_secs_f64() * 1000.0);
        tracing::info!(
            revision = self.rev,
            scanned,
            deleted,
            batches,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "finished backend compaction"
        );
        Ok(())
    }
}
