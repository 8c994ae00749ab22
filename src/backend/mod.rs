//! The storage engine: one LSM-tree (the `lsm-tree` crate, fjall's engine) holding every
//! bucket of server state, each key prefixed by a one-byte bucket id.
//!
//! The tree has no journal of its own: the raft WAL is the durability point, as in etcd. The
//! applier's batch (kv changes, lease and auth changes and the consistent index) goes into the
//! in-memory write buffer (memtable) under one sequence number and becomes visible to readers
//! at once and all together; the buffer is written out as an fsync'd table when it is full, on a
//! timer and before raft snapshots (`flush`). After a crash the tree holds exactly the batches
//! of the tables written before it — a prefix, with the consistent index of its last batch —
//! and the WAL is replayed from there.
//!
//! Why an LSM-tree: compaction (etcd's, deleting old revisions) leaves tombstones that the
//! tree's background merges drop along with the data they delete, so space is reclaimed online
//! without copying the database (`defrag.rs`), and a compacted database is smaller than bbolt's
//! B+tree pages (`scripts/bench-defrag-vs-etcd.sh`).

mod batch;
mod defrag;
mod disk_usage;
mod error;
mod maintenance;

pub use batch::WriteBatch;
pub use defrag::DefragReport;
pub use error::BackendError;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lsm_tree::{AbstractTree, SequenceNumberCounter};
use parking_lot::Mutex;

use maintenance::Maintenance;

/// How long `open` waits for the lock of a database closed just before in this process.
const LOCK_WAIT: Duration = Duration::from_secs(2);
/// The file whose exclusive lock says which process owns the database.
const LOCK_FILE: &str = "LOCK";
/// Files a sled database (ferrocd before the move to an LSM-tree) keeps in the db dir.
const SLED_MARKERS: [&str; 4] = ["conf", "blobs", "CURRENT", "gen-0"];

/// A value read from the database: a cheaply clonable, immutable byte slice.
pub type Value = lsm_tree::Slice;

use crate::schema::{meta, Bucket};

pub(crate) fn prefixed(bucket: Bucket, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(bucket.id());
    k.extend_from_slice(key);
    k
}

/// Tuning of the storage engine.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// Block cache size. Small on purpose: the key index is in memory, so reads come to the
    /// backend only for values, and the OS page cache keeps hot table files anyway.
    pub cache_capacity_bytes: u64,
    /// Size at which the write buffer (memtable) is written out as a table.
    pub memtable_bytes: u64,
    /// How often the write buffer is written out anyway (None: only when full and on `flush`).
    pub flush_every_ms: Option<u64>,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            cache_capacity_bytes: 16 * 1024 * 1024,
            memtable_bytes: 16 * 1024 * 1024,
            flush_every_ms: Some(5_000),
        }
    }
}

/// The tree and its sequence numbers, shared with the maintenance thread.
pub(crate) struct Engine {
    tree: lsm_tree::AnyTree,
    /// Hands out sequence numbers: one per batch, and the tree takes one per version change.
    seqno: SequenceNumberCounter,
    /// What readers read at: raised only when no batch is half-inserted.
    visible: SequenceNumberCounter,
    /// The sequence numbers readers are reading at right now (with how many readers each):
    /// the tree must keep a version for each of them, so they bound what it may let go.
    readers: Mutex<BTreeMap<u64, usize>>,
    /// Serialises batches, and memtable rotation against them (a table never holds half a
    /// batch).
    writer: Mutex<()>,
    dir: PathBuf,
    opts: BackendOptions,
    /// Held for the life of the database: another process cannot open it meanwhile.
    _lock: File,
}

impl Engine {
    /// Makes everything inserted so far visible; call holding `writer`.
    fn publish(&self) {
        self.visible.fetch_max(self.seqno.get());
    }

    /// The sequence number below which superseded versions may be dropped: the oldest one a
    /// reader is reading at (an iterator, once created, keeps the tables it reads by itself).
    fn gc_watermark(&self) -> u64 {
        let readers = self.readers.lock();
        let visible = self.visible.get();
        readers
            .keys()
            .next()
            .map_or(visible, |&oldest| oldest.min(visible))
    }

    /// Runs `read` at the newest visible sequence number, registered as a reader meanwhile.
    fn read<T>(&self, read: impl FnOnce(u64) -> T) -> T {
        let seqno = {
            let mut readers = self.readers.lock();
            let seqno = self.visible.get();
            *readers.entry(seqno).or_default() += 1;
            seqno
        };
        // Deregisters even if `read` panics: a registration left behind would hold the
        // watermark back for good.
        struct Registered<'a>(&'a Mutex<BTreeMap<u64, usize>>, u64);
        impl Drop for Registered<'_> {
            fn drop(&mut self) {
                let mut readers = self.0.lock();
                if let Some(n) = readers.get_mut(&self.1) {
                    *n -= 1;
                    if *n == 0 {
                        readers.remove(&self.1);
                    }
                }
            }
        }
        let _registered = Registered(&self.readers, seqno);
        read(seqno)
    }

    /// Writes the memtable out as a durable table (blocking). Returns the bytes written out.
    fn flush_memtable(&self) -> Result<u64, lsm_tree::Error> {
        let flush = self.tree.get_flush_lock();
        {
            let _w = self.writer.lock();
            self.tree.rotate_memtable();
        }
        let flushed = self.tree.flush(&flush, self.gc_watermark())?;
        drop(flush);
        let _w = self.writer.lock();
        self.publish();
        Ok(flushed.unwrap_or(0))
    }

    /// Lets go of tree versions nobody can read any more, so the tables only they referenced
    /// are deleted now rather than at the next version change.
    fn release_old_versions(&self) {
        {
            let _w = self.writer.lock();
            self.publish();
        }
        if let Err(e) = self
            .tree
            .get_version_history_lock()
            .maintenance(&self.dir, self.gc_watermark())
        {
            tracing::warn!(error = ?e, "releasing old backend versions failed");
        }
    }
}

/// The open database. `Send + Sync`: share it as `Arc<Backend>`.
pub struct Backend {
    engine: Arc<Engine>,
    /// Writes out full memtables and merges tables in the background; stops on drop.
    maintenance: Maintenance,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("dir", &self.engine.dir)
            .finish()
    }
}

impl Backend {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path, opts: BackendOptions) -> Result<Backend, BackendError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| BackendError::from_io(dir, "create directory", source))?;
        if let Some(marker) = SLED_MARKERS.iter().find(|m| dir.join(m).exists()) {
            return Err(BackendError::Incompatible {
                dir: dir.to_path_buf(),
                detail: format!(
                    "it holds {marker:?}, a file of the sled engine that earlier ferrocd builds used"
                ),
            });
        }
        let lock = lock_dir(dir)?;
        let seqno = SequenceNumberCounter::default();
        let tree_visible = SequenceNumberCounter::default();
        let tree = lsm_tree::Config::new(dir, seqno.clone(), tree_visible)
            .use_cache(Arc::new(lsm_tree::Cache::with_capacity_bytes(
                opts.cache_capacity_bytes,
            )))
            .open()
            .map_err(|e| BackendError::from_lsm(dir, "open", e))?;
        let next = tree.get_highest_seqno().map_or(0, |s| s + 1);
        seqno.fetch_max(next);
        let engine = Arc::new(Engine {
            tree,
            visible: SequenceNumberCounter::new(seqno.get()),
            readers: Mutex::new(BTreeMap::new()),
            seqno,
            writer: Mutex::new(()),
            dir: dir.to_path_buf(),
            opts: opts.clone(),
            _lock: lock,
        });
        let backend = Backend {
            maintenance: Maintenance::start(Arc::clone(&engine)),
            engine,
        };
        tracing::info!(
            dir = %dir.display(),
            tables = backend.engine.tree.table_count(),
            size_bytes = backend.size_on_disk(),
            cache_capacity_bytes = opts.cache_capacity_bytes,
            "opened backend database"
        );
        Ok(backend)
    }

    /// The directory the database lives in.
    pub fn dir(&self) -> &Path {
        &self.engine.dir
    }

    fn err(&self, op: &'static str, e: lsm_tree::Error) -> BackendError {
        BackendError::from_lsm(&self.engine.dir, op, e)
    }

    /// Reads one key.
    pub fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Value>, BackendError> {
        let key = prefixed(bucket, key);
        self.engine
            .read(|seqno| self.engine.tree.get(key, seqno))
            .map_err(|e| self.err("get", e))
    }

    /// Iterates `bucket` over `[start, end)` in key order (`end = None`: to the bucket's end).
    ///
    /// Yields keys without the bucket prefix. The iterator reads one point-in-time view of the
    /// database: batches committed while it runs are not seen.
    pub fn range(
        &self,
        bucket: Bucket,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Value), BackendError>> + Send + 'static {
        use lsm_tree::Guard as _;
        let lo = prefixed(bucket, start);
        let hi = match end {
            Some(end) => prefixed(bucket, end),
            None => vec![bucket.id() + 1],
        };
        // An inverted request is simply empty.
        let iter = if lo <= hi {
            Some(
                self.engine
                    .read(|seqno| self.engine.tree.range(lo..hi, seqno, None)),
            )
        } else {
            None
        };
        let dir = self.engine.dir.clone();
        iter.into_iter()
            .flatten()
            .map(move |guard| match guard.into_inner() {
                Ok((k, v)) => Ok((k[1..].to_vec(), v)),
                Err(e) => Err(BackendError::from_lsm(&dir, "range", e)),
            })
    }

    /// Applies `batch` atomically: readers see all of it or none of it, and a crash keeps all
    /// of it or none of it. Not durable until the next `flush` (the raft WAL is).
    pub fn commit(&self, batch: WriteBatch) -> Result<(), BackendError> {
        if batch.is_empty() {
            return Ok(());
        }
        let e = &self.engine;
        let full = {
            let _w = e.writer.lock();
            let seqno = e.seqno.next();
            for (k, v) in batch.into_ops() {
                match v {
                    Some(v) => e.tree.insert(k, v, seqno),
                    None => e.tree.remove(k, seqno),
                };
            }
            e.publish();
            e.tree.active_memtable().size() >= e.opts.memtable_bytes
        };
        if full {
            self.maintenance.wake();
        }
        Ok(())
    }

    /// Makes everything committed so far durable (blocking): writes the memtable out as a
    /// table. Called before a raft snapshot (which lets the WAL before it go) and on shutdown.
    pub fn flush(&self) -> Result<(), BackendError> {
        self.engine
            .flush_memtable()
            .map(|_| ())
            .map_err(|e| self.err("flush", e))
    }

    /// Bytes the database occupies (allocated blocks of every file in its directory, plus the
    /// write buffer that is about to join them), for the db size metrics, `Status` and the
    /// quota: a small quota must trip before the buffer is written out, not after.
    pub fn size_on_disk(&self) -> u64 {
        disk_usage::allocated_bytes(&self.engine.dir) + self.engine.tree.active_memtable().size()
    }

    /// The last raft index whose effects are in the database (0 on a new database).
    pub fn consistent_index(&self) -> Result<u64, BackendError> {
        Ok(self.meta_u64(meta::CONSISTENT_INDEX)?.unwrap_or(0))
    }

    /// The raft term of the entry at the consistent index; `None` when the database never
    /// recorded one (new, or written before ferrocd kept it).
    pub fn consistent_term(&self) -> Result<Option<u64>, BackendError> {
        self.meta_u64(meta::TERM)
    }

    fn meta_u64(&self, key: &[u8]) -> Result<Option<u64>, BackendError> {
        match self.get(Bucket::Meta, key)? {
            None => Ok(None),
            Some(v) => {
                let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| BackendError::Corrupt {
                    dir: self.engine.dir.to_path_buf(),
                    detail: format!(
                        "meta key {} has {} bytes, expected 8",
                        String::from_utf8_lossy(key),
                        v.len()
                    ),
                })?;
                Ok(Some(u64::from_be_bytes(bytes)))
            }
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // A clean close leaves nothing for the WAL to replay.
        if let Err(e) = self.engine.flush_memtable() {
            tracing::warn!(error = ?e, "writing out the backend memtable on close failed");
        }
    }
}

/// Takes the database's exclusive lock, waiting briefly for one released by a database
/// closed just before in this process.
fn lock_dir(dir: &Path) -> Result<File, BackendError> {
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| BackendError::from_io(dir, "open lock file", source))?;
    let deadline = Instant::now() + LOCK_WAIT;
    let mut pause = Duration::from_millis(5);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(BackendError::Locked {
                    dir: dir.to_path_buf(),
                    detail: format!("{} is locked", path.display()),
                })
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(BackendError::from_io(dir, "lock", source))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Backend {
        Backend::open(dir, BackendOptions::default()).unwrap()
    }

    #[test]
    fn buckets_are_separate_and_ranges_strip_prefix() {
        let tmp = tempfile::tempdir().unwrap();
        let b = open(tmp.path());
        let mut batch = WriteBatch::new();
        assert!(batch.is_empty());
        batch.put(Bucket::Key, b"a", &b"1"[..]);
        batch.put(Bucket::Key, b"b", &b"2"[..]);
        batch.put(Bucket::Lease, b"a", &b"lease"[..]);
        batch.put(Bucket::Key, &[0xff, 0xff], &b"3"[..]);
        assert_eq!(batch.len(), 4);
        b.commit(batch).unwrap();

        assert_eq!(b.get(Bucket::Key, b"a").unwrap().unwrap().as_ref(), b"1");
        assert_eq!(
            b.get(Bucket::Lease, b"a").unwrap().unwrap().as_ref(),
            b"lease"
        );
        assert!(b.get(Bucket::Meta, b"a").unwrap().is_none());

        let all: Vec<_> = b
            .range(Bucket::Key, b"", None)
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(all, vec![b"a".to_vec(), b"b".to_vec(), vec![0xff, 0xff]]);
        let some: Vec<_> = b
            .range(Bucket::Key, b"a", Some(b"b"))
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(some, vec![b"a".to_vec()]);
        assert_eq!(b.range(Bucket::Key, b"z", Some(b"a")).count(), 0);
        assert_eq!(b.range(Bucket::Lease, b"", None).count(), 1);
        assert_eq!(b.range(Bucket::Alarm, b"", None).count(), 0);
    }

    #[test]
    fn batch_delete_and_consistent_index_survive_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let b = open(tmp.path());
            assert_eq!(b.consistent_index().unwrap(), 0);
            assert_eq!(b.consistent_term().unwrap(), None);
            let mut batch = WriteBatch::new();
            batch.put(Bucket::Members, b"m1", &b"x"[..]);
            batch.put(Bucket::Members, b"m2", &b"y"[..]);
            batch.set_consistent_index(41, 2);
            b.commit(batch).unwrap();
            let mut batch = WriteBatch::new();
            batch.delete(Bucket::Members, b"m1");
            batch.set_consistent_index(42, 3);
            b.commit(batch).unwrap();
            b.commit(WriteBatch::new()).unwrap();
            b.flush().unwrap();
            assert!(b.size_on_disk() > 0);
        }
        let b = open(tmp.path());
        assert_eq!(b.consistent_index().unwrap(), 42);
        assert_eq!(b.consistent_term().unwrap(), Some(3));
        assert!(b.get(Bucket::Members, b"m1").unwrap().is_none());
        assert_eq!(
            b.get(Bucket::Members, b"m2").unwrap().unwrap().as_ref(),
            b"y"
        );
    }

    #[test]
    fn appended_batches_keep_order() {
        let tmp = tempfile::tempdir().unwrap();
        let b = open(tmp.path());
        let mut first = WriteBatch::new();
        first.put(Bucket::Auth, b"k", &b"1"[..]);
        first.put(Bucket::Auth, b"gone", &b"1"[..]);
        let mut second = WriteBatch::new();
        second.put(Bucket::Auth, b"k", &b"2"[..]);
        second.delete(Bucket::Auth, b"gone");
        first.append(second);
        assert_eq!(first.len(), 4);
        b.commit(first).unwrap();
        assert_eq!(b.get(Bucket::Auth, b"k").unwrap().unwrap().as_ref(), b"2");
        assert!(b.get(Bucket::Auth, b"gone").unwrap().is_none());
    }

    #[test]
    fn second_open_reports_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let _b = open(tmp.path());
        let err = Backend::open(tmp.path(), BackendOptions::default()).unwrap_err();
        assert!(matches!(err, BackendError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("locked by another process"));
    }

    /// Readers racing the background flushes and merges (tiny memtables, a 10 ms timer) and a
    /// defragmentation always find a version to read and always read what was committed.
    #[test]
    fn reads_race_flushes_merges_and_defrag() {
        use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
        let tmp = tempfile::tempdir().unwrap();
        let opts = BackendOptions {
            cache_capacity_bytes: 1 << 20,
            memtable_bytes: 32 * 1024,
            flush_every_ms: Some(10),
        };
        let b = Arc::new(Backend::open(tmp.path(), opts).unwrap());
        let written = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (b, written, stop) = (b.clone(), written.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut reads = 0u64;
                    while !stop.load(Ordering::Acquire) {
                        let n = written.load(Ordering::Acquire);
                        if n == 0 {
                            continue;
                        }
                        let i = n - 1;
                        let v = b.get(Bucket::Key, &i.to_be_bytes()).unwrap().unwrap();
                        assert_eq!(&v[..4], &i.to_be_bytes());
                        let lo = i.saturating_sub(20);
                        let got = b.range(Bucket::Key, &lo.to_be_bytes(), Some(&n.to_be_bytes()));
                        assert_eq!(got.count() as u32, n - lo);
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        for i in 0..6000u32 {
            let mut batch = WriteBatch::new();
            let mut value = i.to_be_bytes().to_vec();
            value.resize(200, 7);
            batch.put(Bucket::Key, &i.to_be_bytes(), value);
            batch.set_consistent_index(u64::from(i), 1);
            b.commit(batch).unwrap();
            written.store(i + 1, Ordering::Release);
            if i == 3000 {
                b.defragment().unwrap();
            }
        }
        stop.store(true, Ordering::Release);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
        assert_eq!(b.consistent_index().unwrap(), 5999);
        assert_eq!(b.range(Bucket::Key, b"", None).count(), 6000);
    }

    #[test]
    fn a_sled_database_is_refused_not_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("conf"), b"segment_size: 524288").unwrap();
        let err = Backend::open(tmp.path(), BackendOptions::default()).unwrap_err();
        assert!(matches!(err, BackendError::Incompatible { .. }), "{err}");
        assert!(err.to_string().contains("snapshot restore"), "{err}");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_key_written_twice_in_one_batch_keeps_the_last_value() {
        let tmp = tempfile::tempdir().unwrap();
        let b = open(tmp.path());
        let mut batch = WriteBatch::new();
        batch.put(Bucket::Meta, b"k", &b"1"[..]);
        batch.delete(Bucket::Meta, b"gone");
        batch.put(Bucket::Meta, b"gone", &b"back"[..]);
        batch.put(Bucket::Meta, b"k", &b"2"[..]);
        batch.set_consistent_index(5, 1);
        batch.set_consistent_index(6, 1);
        b.commit(batch).unwrap();
        assert_eq!(b.get(Bucket::Meta, b"k").unwrap().unwrap().as_ref(), b"2");
        assert_eq!(
            b.get(Bucket::Meta, b"gone").unwrap().unwrap().as_ref(),
            b"back"
        );
        assert_eq!(b.consistent_index().unwrap(), 6);
    }

    #[test]
    fn corrupt_consistent_index_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let b = open(tmp.path());
        let mut batch = WriteBatch::new();
        batch.put(Bucket::Meta, meta::CONSISTENT_INDEX, &b"abc"[..]);
        b.commit(batch).unwrap();
        let err = b.consistent_index().unwrap_err();
        assert!(err.to_string().contains("expected 8"), "{err}");
    }
}
