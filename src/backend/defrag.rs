//! Online defragmentation. sled never gives space back by itself (freed pages stay in its
//! file), so ferrocd defragments as etcd does — by copying live data into a fresh database —
//! but without stopping the world: the bulk copy of the key history runs while the member keeps
//! reading and writing the old database, and only the tail (revisions written during the copy
//! and the small buckets) is copied while writes are paused, just before the switch.
//!
//! The key history can be copied early because it only grows: revisions are never rewritten,
//! and the only deletions (compaction, snapshot install) are excluded by the caller or detected
//! (a defragmentation that sees one gives up and leaves the old database in place).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::generation::{self, Generation};
use super::{open_sled, Backend, BackendError, Bucket};

/// Entries per batch written into the new database.
const COPY_BATCH: usize = 10_000;

/// What a defragmentation achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefragReport {
    /// Database size before, in bytes.
    pub before: u64,
    /// Database size after, in bytes.
    pub after: u64,
    /// Entries copied in the bulk phase (while serving).
    pub copied_online: u64,
    /// Entries copied while writes were paused.
    pub copied_paused: u64,
}

/// A defragmentation in progress: a new generation being filled.
pub struct Defrag<'a> {
    src: &'a Backend,
    /// The new generation (taken when it goes live).
    dst: Option<Generation>,
    /// The last key-bucket key copied (prefixed), where the paused phase resumes.
    last_key: Option<Vec<u8>>,
    key_deletes: u64,
    copied_online: u64,
    started: Instant,
}

impl Backend {
    /// Starts a defragmentation into the next generation. Run one at a time, and keep physical
    /// compaction from running until it is finished (or dropped).
    pub fn begin_defrag(&self) -> Result<Defrag<'_>, BackendError> {
        let live = self.live();
        let name = generation::next_name(&live.name);
        let path = self.dir.join(&name);
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(|source| BackendError::Io {
                dir: path.clone(),
                op: "remove stale generation",
                source,
            })?;
        }
        let db = open_sled(&path, &self.opts)?;
        Ok(Defrag {
            src: self,
            dst: Some(Generation {
                db,
                name,
                path,
                obsolete: Default::default(),
            }),
            last_key: None,
            key_deletes: self.key_deletes.load(Ordering::Acquire),
            copied_online: 0,
            started: Instant::now(),
        })
    }
}

impl Defrag<'_> {
    /// Copies the key history as it is now, while the member keeps serving. Blocking; logs
    /// progress.
    pub fn copy_history(&mut self) -> Result<u64, BackendError> {
        let n = self.copy_keys()?;
        self.copied_online = n;
        tracing::info!(
            entries = n,
            took_ms = self.started.elapsed().as_millis() as u64,
            "defragmentation: key history copied while serving"
        );
        Ok(n)
    }

    /// Copies what changed since [`Defrag::copy_history`] (new revisions and every small
    /// bucket), makes the new database durable and live, and retires the old one (deleted when
    /// its last reader is gone). Call it while nothing writes to the backend.
    pub fn finish(mut self) -> Result<DefragReport, BackendError> {
        let paused = Instant::now();
        if self.src.key_deletes.load(Ordering::Acquire) != self.key_deletes {
            return Err(BackendError::DefragInterrupted {
                dir: self.src.dir.to_path_buf(),
            });
        }
        let mut copied = self.copy_keys()?;
        let live = self.src.live();
        let dst = self.dst.as_ref().expect("present until finish");
        for bucket in Bucket::ALL.into_iter().filter(|b| *b != Bucket::Key) {
            copied += copy_range(&live, dst, &[bucket.id()], &[bucket.id() + 1], None)?.0;
        }
        dst.db.flush().map_err(|e| err(dst, "flush", e))?;
        generation::set_current(&self.src.dir, &dst.name).map_err(|source| BackendError::Io {
            dir: self.src.dir.to_path_buf(),
            op: "switch CURRENT",
            source,
        })?;
        let before = live.db.size_on_disk().unwrap_or(0);
        let after = dst.db.size_on_disk().unwrap_or(0);
        let name = dst.name.clone();
        let dst = Arc::new(self.dst.take().expect("present until finish"));
        let old = std::mem::replace(&mut *self.src.current.write(), dst);
        old.obsolete.store(true, Ordering::Release);
        drop((old, live));
        tracing::info!(
            generation = %name,
            before,
            after,
            paused_ms = paused.elapsed().as_millis() as u64,
            entries_paused = copied,
            took_ms = self.started.elapsed().as_millis() as u64,
            "defragmentation finished"
        );
        Ok(DefragReport {
            before,
            after,
            copied_online: self.copied_online,
            copied_paused: copied,
        })
    }

    /// Copies key-bucket entries after the last one copied.
    fn copy_keys(&mut self) -> Result<u64, BackendError> {
        let live = self.src.live();
        let start = match &self.last_key {
            Some(k) => {
                let mut s = k.clone();
                s.push(0);
                s
            }
            None => vec![Bucket::Key.id()],
        };
        let (n, last) = copy_range(
            &live,
            self.dst.as_ref().expect("present until finish"),
            &start,
            &[Bucket::Key.id() + 1],
            Some(self.started),
        )?;
        if last.is_some() {
            self.last_key = last;
        }
        Ok(n)
    }
}

impl Drop for Defrag<'_> {
    fn drop(&mut self) {
        // Not finished (an error, or `finish` gave up): the new generation is abandoned. It is
        // not live, so removing it under sled is harmless; a failure is cleaned at next start.
        if let Some(dst) = &self.dst {
            dst.obsolete.store(true, Ordering::Release);
        }
    }
}

/// Copies raw (prefixed) entries in `[lo, hi)` from `src` to `dst`; returns how many and the
/// last key copied.
fn copy_range(
    src: &Generation,
    dst: &Generation,
    lo: &[u8],
    hi: &[u8],
    progress_since: Option<Instant>,
) -> Result<(u64, Option<Vec<u8>>), BackendError> {
    let mut batch = sled::Batch::default();
    let (mut n, mut in_batch) = (0u64, 0usize);
    let mut last = None;
    for item in src.db.range(lo.to_vec()..hi.to_vec()) {
        let (k, v) = item.map_err(|e| err(src, "defragment read", e))?;
        batch.insert(k.clone(), v);
        last = Some(k.to_vec());
        n += 1;
        in_batch += 1;
        if in_batch == COPY_BATCH {
            dst.db
                .apply_batch(std::mem::take(&mut batch))
                .map_err(|e| err(dst, "defragment write", e))?;
            in_batch = 0;
            if let Some(since) = progress_since {
                if n % 500_000 == 0 {
                    tracing::info!(
                        entries = n,
                        elapsed_ms = since.elapsed().as_millis() as u64,
                        "defragmentation in progress"
                    );
                }
            }
        }
    }
    if in_batch > 0 {
        dst.db
            .apply_batch(batch)
            .map_err(|e| err(dst, "defragment write", e))?;
    }
    Ok((n, last))
}

fn err(g: &Generation, op: &'static str, e: sled::Error) -> BackendError {
    BackendError::from_sled(&g.path, op, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{BackendOptions, WriteBatch};

    fn fill(b: &Backend, from: u32, to: u32, value: &[u8]) {
        let mut batch = WriteBatch::new();
        for i in from..to {
            batch.put(Bucket::Key, &i.to_be_bytes(), value.to_vec());
        }
        b.commit(batch).unwrap();
    }

    #[test]
    fn defrag_keeps_everything_shrinks_and_survives_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let b = Backend::open(tmp.path(), BackendOptions::default()).unwrap();
        fill(&b, 0, 20_000, &[7u8; 1000]);
        // Compaction-like deletion of most history, through a batch.
        let mut del = WriteBatch::new();
        for i in 0..19_000u32 {
            del.delete(Bucket::Key, &i.to_be_bytes());
        }
        b.commit(del).unwrap();
        let mut meta = WriteBatch::new();
        meta.put(Bucket::Lease, b"l", &b"lease"[..]);
        meta.set_consistent_index(77);
        b.commit(meta).unwrap();
        b.flush().unwrap();

        let mut d = b.begin_defrag().unwrap();
        assert_eq!(d.copy_history().unwrap(), 1000);
        // Writes continue between the phases, to history and small buckets.
        fill(&b, 20_000, 20_010, b"late");
        let mut meta = WriteBatch::new();
        meta.set_consistent_index(78);
        b.commit(meta).unwrap();
        let report = d.finish().unwrap();
        assert_eq!(report.copied_online, 1000);
        assert!(report.copied_paused >= 10 + 2, "{report:?}");
        assert!(
            report.after < report.before / 2,
            "the copy is much smaller: {report:?}"
        );
        assert_eq!(b.range(Bucket::Key, b"", None).count(), 1010);
        assert_eq!(b.consistent_index().unwrap(), 78);
        assert_eq!(
            b.get(Bucket::Lease, b"l").unwrap().unwrap().as_ref(),
            b"lease"
        );
        // Writes after the switch land in the new generation and survive a reopen.
        fill(&b, 30_000, 30_001, b"after");
        b.flush().unwrap();
        drop(b);
        let b = Backend::open(tmp.path(), BackendOptions::default()).unwrap();
        assert_eq!(b.range(Bucket::Key, b"", None).count(), 1011);
        assert_eq!(b.consistent_index().unwrap(), 78);
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("CURRENT"))
                .unwrap()
                .trim(),
            "gen-2"
        );
        // The old generation is removed (at the latest by this reopen).
        assert!(!tmp.path().join("gen-1").exists());
    }

    #[test]
    fn history_deleted_during_the_copy_aborts_and_keeps_the_old_database() {
        let tmp = tempfile::tempdir().unwrap();
        let b = Backend::open(tmp.path(), BackendOptions::default()).unwrap();
        fill(&b, 0, 100, b"v");
        let mut d = b.begin_defrag().unwrap();
        d.copy_history().unwrap();
        let mut del = WriteBatch::new();
        del.delete(Bucket::Key, &5u32.to_be_bytes());
        b.commit(del).unwrap();
        assert!(matches!(
            d.finish(),
            Err(BackendError::DefragInterrupted { .. })
        ));
        assert_eq!(b.range(Bucket::Key, b"", None).count(), 99);
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("CURRENT"))
                .unwrap()
                .trim(),
            "gen-1"
        );
    }

    #[test]
    fn a_second_process_cannot_remove_a_generation_in_use() {
        let tmp = tempfile::tempdir().unwrap();
        let b = Backend::open(tmp.path(), BackendOptions::default()).unwrap();
        fill(&b, 0, 10, b"v");
        let mut d = b.begin_defrag().unwrap();
        d.copy_history().unwrap();
        // Another open of the same dir (a tool run against a live member) fails on the lock
        // and must not have deleted the generation being built.
        assert!(Backend::open(tmp.path(), BackendOptions::default()).is_err());
        assert!(tmp.path().join("gen-2").exists());
        d.finish().unwrap();
        assert_eq!(b.range(Bucket::Key, b"", None).count(), 10);
    }

    #[test]
    fn a_missing_current_generation_is_refused_not_recreated_empty() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let b = Backend::open(tmp.path(), BackendOptions::default()).unwrap();
            fill(&b, 0, 10, b"v");
            b.flush().unwrap();
            b.begin_defrag().unwrap().finish().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        // Pretend the live generation vanished while an old one is still around.
        std::fs::create_dir_all(tmp.path().join("gen-1")).unwrap();
        std::fs::remove_dir_all(tmp.path().join("gen-2")).unwrap();
        let err = Backend::open(tmp.path(), BackendOptions::default()).unwrap_err();
        assert!(matches!(err, BackendError::Corrupt { .. }), "{err}");
    }
}
