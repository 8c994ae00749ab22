//! Defragmentation without stopping the world.
//!
//! etcd's bbolt never shrinks its file, so etcd defragments by copying the live data into a new
//! file while every read and write waits. The LSM-tree reclaims space by itself: etcd's
//! compaction deletes old revisions with tombstones, and the tree's background merges drop the
//! deleted data along with the tombstones. `Defragment` asks for all of that now instead of
//! eventually: it writes the memtable out, merges every table into one sorted run (dropping
//! every deleted revision) and lets the replaced tables go. Reads and writes carry on
//! throughout: merges write new tables beside the old ones and switch them in atomically.

use std::time::Instant;

use lsm_tree::AbstractTree;

use super::{Backend, BackendError};

/// Size of the tables the full merge writes (the leveled strategy's default).
const TABLE_TARGET_BYTES: u64 = 64 * 1024 * 1024;

/// What a defragmentation achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefragReport {
    /// Database size on disk before, in bytes.
    pub before: u64,
    /// Database size on disk after, in bytes.
    pub after: u64,
    /// Table files before.
    pub tables_before: usize,
    /// Table files after.
    pub tables_after: usize,
}

impl Backend {
    /// Reclaims the space of deleted data now (blocking; run it off the async runtime, one at
    /// a time). Serving goes on meanwhile.
    pub fn defragment(&self) -> Result<DefragReport, BackendError> {
        let e = &self.engine;
        let started = Instant::now();
        let (before, tables_before) = (self.size_on_disk(), e.tree.table_count());
        tracing::info!(
            size_bytes = before,
            tables = tables_before,
            "defragmentation: writing out the memtable"
        );
        e.flush_memtable()
            .map_err(|err| self.err("defragment: flush memtable", err))?;
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            "defragmentation: merging every table"
        );
        e.tree
            .major_compact(TABLE_TARGET_BYTES, e.gc_watermark())
            .map_err(|err| self.err("defragment: merge tables", err))?;
        e.release_old_versions();
        let report = DefragReport {
            before,
            after: self.size_on_disk(),
            tables_before,
            tables_after: e.tree.table_count(),
        };
        tracing::info!(
            before = report.before,
            after = report.after,
            tables = report.tables_after,
            took_ms = started.elapsed().as_millis() as u64,
            "defragmentation: done"
        );
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendOptions, WriteBatch};
    use crate::schema::Bucket;

    fn fill(b: &Backend, from: u32, to: u32) {
        let mut batch = WriteBatch::new();
        for i in from..to {
            // Incompressible values, so sizes measure data rather than compression.
            let value: Vec<u8> = (0..1000).map(|_| rand::random::<u8>()).collect();
            batch.put(Bucket::Key, &i.to_be_bytes(), value);
        }
        b.commit(batch).unwrap();
    }

    #[test]
    fn defrag_reclaims_deleted_history_keeps_the_rest_and_survives_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let b = Backend::open(tmp.path(), BackendOptions::default()).unwrap();
        for chunk in 0..20u32 {
            fill(&b, chunk * 1000, (chunk + 1) * 1000);
        }
        b.flush().unwrap();
        // Compaction-like deletion of most history, through a batch.
        let mut del = WriteBatch::new();
        for i in 0..19_000u32 {
            del.delete(Bucket::Key, &i.to_be_bytes());
        }
        b.commit(del).unwrap();
        let mut meta = WriteBatch::new();
        meta.put(Bucket::Lease, b"l", &b"lease"[..]);
        meta.set_consistent_index(77, 3);
        b.commit(meta).unwrap();
        b.flush().unwrap();

        let report = b.defragment().unwrap();
        assert!(
            report.before > 19_000_000,
            "20k values of 1000 bytes: {report:?}"
        );
        assert!(
            report.after < 4_000_000,
            "only 1000 values are left: {report:?} {}",
            String::from_utf8_lossy(
                &std::process::Command::new("du")
                    .arg("-ab")
                    .arg(tmp.path())
                    .output()
                    .unwrap()
                    .stdout
            )
        );
        assert_eq!(b.range(Bucket::Key, b"", None).count(), 1000);
        assert_eq!(b.consistent_index().unwrap(), 77);
        assert_eq!(
            b.get(Bucket::Lease, b"l").unwrap().unwrap().as_ref(),
            b"lease"
        );
        fill(&b, 30_000, 30_001);
        b.flush().unwrap();
        drop(b);
        let b = Backend::open(tmp.path(), BackendOptions::default()).unwrap();
        assert_eq!(b.range(Bucket::Key, b"", None).count(), 1001);
        assert_eq!(b.consistent_index().unwrap(), 77);
    }

    #[test]
    fn reads_and_writes_go_on_during_a_defragmentation() {
        let tmp = tempfile::tempdir().unwrap();
        let b = std::sync::Arc::new(Backend::open(tmp.path(), BackendOptions::default()).unwrap());
        for chunk in 0..10u32 {
            fill(&b, chunk * 1000, (chunk + 1) * 1000);
        }
        let defrag = {
            let b = b.clone();
            std::thread::spawn(move || b.defragment().unwrap())
        };
        // Writes and reads while it runs; every one of them is there afterwards.
        let mut written = 0u32;
        while !defrag.is_finished() || written < 50 {
            fill(&b, 100_000 + written, 100_000 + written + 1);
            assert!(b
                .get(Bucket::Key, &(100_000 + written).to_be_bytes())
                .unwrap()
                .is_some());
            written += 1;
        }
        defrag.join().unwrap();
        assert_eq!(
            b.range(Bucket::Key, b"", None).count(),
            10_000 + written as usize
        );
    }
}
