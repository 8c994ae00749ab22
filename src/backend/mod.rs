//! The storage engine: one fjall (LSM-tree) database holding every bucket of server state.
//!
//! All buckets live in ONE keyspace, each key prefixed by a one-byte bucket id, so the applier's
//! batch (kv changes, lease and auth changes and the consistent index) is one atomic write.
//! Nothing here fsyncs per request: the raft WAL is the durability point. fjall's own journal
//! is persisted on a timer and before raft snapshots; after a crash fjall recovers a prefix of
//! the committed batches and the WAL is replayed from the consistent index on top of it.
//!
//! Why an LSM-tree: compaction (etcd's, deleting old revisions) leaves tombstones that the tree
//! merges away in the background, so space is reclaimed online without copying the database
//! (see `defrag.rs`), and a compacted database is smaller than bbolt's B+tree pages
//! (`scripts/bench-defrag-vs-etcd.sh`).

mod batch;
mod defrag;
mod disk_usage;
mod error;
mod flusher;

pub use batch::WriteBatch;
pub use defrag::DefragReport;
pub use error::BackendError;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flusher::Flusher;

/// How long `open` waits for the lock of a database closed just before in this process.
const LOCK_WAIT: Duration = Duration::from_secs(2);
/// The one keyspace holding every bucket.
const KEYSPACE: &str = "state";
/// Files a sled database (ferrocd before the move to fjall) keeps in the db dir.
const SLED_MARKERS: [&str; 4] = ["conf", "blobs", "CURRENT", "gen-0"];

/// Meta-bucket key of the last applied raft index (u64 big-endian), as in etcd.
pub const CONSISTENT_INDEX_KEY: &[u8] = b"consistent_index";
/// Meta-bucket key of the member this database belongs to (u64 big-endian). Local to the
/// member: a snapshot from another member must never carry it over.
pub const MEMBER_ID_KEY: &[u8] = b"member_id";

/// A value read from the database: a cheaply clonable, immutable byte slice.
pub type Value = fjall::Slice;
/// A namespace of keys inside the database.
///
/// The discriminants are the on-disk prefix bytes and must never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Bucket {
    /// MVCC revisions: revision bytes → encoded key-value.
    Key = 1,
    /// Bookkeeping: consistent index, compaction revisions, ...
    Meta = 2,
    /// Leases.
    Lease = 3,
    /// Auth enabled flag and auth revision.
    Auth = 4,
    /// Auth users.
    AuthUsers = 5,
    /// Auth roles.
    AuthRoles = 6,
    /// Cluster members.
    Members = 7,
    /// Raised alarms (NOSPACE, CORRUPT).
    Alarm = 8,
}

impl Bucket {
    /// Every bucket, in prefix order; for tools that dump or copy the whole database.
    pub const ALL: [Bucket; 8] = [
        Bucket::Key,
        Bucket::Meta,
        Bucket::Lease,
        Bucket::Auth,
        Bucket::AuthUsers,
        Bucket::AuthRoles,
        Bucket::Members,
        Bucket::Alarm,
    ];

    /// The on-disk prefix byte.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// etcd's bucket name, for logs and tools.
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Key => "key",
            Bucket::Meta => "meta",
            Bucket::Lease => "lease",
            Bucket::Auth => "auth",
            Bucket::AuthUsers => "authUsers",
            Bucket::AuthRoles => "authRoles",
            Bucket::Members => "members",
            Bucket::Alarm => "alarm",
        }
    }
}

pub(crate) fn prefixed(bucket: Bucket, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(bucket.id());
    k.extend_from_slice(key);
    k
}

/// Tuning of the storage engine.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// Block cache size. Small on purpose: the key index is in memory, so reads go to the
    /// backend only for values, and the OS page cache holds hot table files anyway.
    pub cache_capacity_bytes: u64,
    /// Size at which the in-memory write buffer (memtable) is written out as a table.
    pub memtable_bytes: u64,
    /// How often the journal is persisted in the background (None: only on explicit `flush`).
    pub flush_every_ms: Option<u64>,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            cache_capacity_bytes: 32 * 1024 * 1024,
            memtable_bytes: 16 * 1024 * 1024,
            flush_every_ms: Some(500),
        }
    }
}

/// The open database. `Send + Sync`: share it as `Arc<Backend>`; fjall handles concurrency.
pub struct Backend {
    db: fjall::Database,
    state: fjall::Keyspace,
    dir: PathBuf,
    /// Persists the journal on a timer; stops when the backend is dropped.
    _flusher: Option<Flusher>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("dir", &self.dir).finish()
    }
}

impl Backend {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path, opts: BackendOptions) -> Result<Backend, BackendError> {
        std::fs::create_dir_all(dir).map_err(|source| {
            BackendError::from_io(dir, "create directory", source)
        })?;
        if let Some(marker) = SLED_MARKERS.iter().find(|m| dir.join(m).exists()) {
            return Err(BackendError::Incompatible {
                dir: dir.to_path_buf(),
                detail: format!(
                    "it holds {marker:?}, a file of the sled engine that earlier ferrocd builds used"
                ),
            });
        }
        let (db, state) = open_fjall(dir, &opts)?;
        let backend = Backend {
            _flusher: opts
                .flush_every_ms
                .map(|ms| Flusher::start(db.clone(), Duration::from_millis(ms.max(1)))),
            db,
            state,
            dir: dir.to_path_buf(),
        };
        tracing::info!(
            dir = %dir.display(),
            tables = backend.state.table_count(),
            size_bytes = backend.size_on_disk(),
            cache_capacity_bytes = opts.cache_capacity_bytes,
            "opened backend database"
        );
        Ok(backend)
    }

    /// The directory the database lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn err(&self, op: &'static str, e: fjall::Error) -> BackendError {
        BackendError::from_fjall(&self.dir, op, e)
    }

    /// Reads one key.
    pub fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<Value>, BackendError> {
        self.state
            .get(prefixed(bucket, key))
            .map_err(|e| self.err("get", e))
    }

    /// Iterates `bucket` over `[start, end)` in key order (`end = None`: to the bucket's end).
    ///
    /// Yields keys without the bucket prefix. The iterator reads one point-in-time view of the
    /// database: commits made while it runs are not seen.
    pub fn range(
        &self,
        bucket: Bucket,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Value), BackendError>> + Send + 'static {
        let lo = prefixed(bucket, start);
        let hi = match end {
            Some(end) => prefixed(bucket, end),
            None => vec![bucket.id() + 1],
        };
        // An inverted request is simply empty.
        let iter = if lo <= hi {
            Some(self.state.range(lo..hi))
        } else {
            None
        };
        let dir = self.dir.clone();
        iter.into_iter().flatten().map(move |guard| match guard.into_inner() {
            Ok((k, v)) => Ok((k[1..].to_vec(), v)),
            Err(e) => Err(BackendError::from_fjall(&dir, "range", e)),
        })
    }

    /// Applies `batch` atomically (all or nothing, across buckets). Not fsync'd.
    pub fn commit(&self, batch: WriteBatch) -> Result<(), BackendError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut b = self.db.batch().durability(None);
        for (k, v) in batch.into_ops() {
            match v {
                Some(v) => b.insert(&self.state, k, v),
                None => b.remove(&self.state, k),
            }
        }
        b.commit().map_err(|e| self.err("commit", e))
    }

    /// Makes everything committed so far durable (blocking): fsyncs fjall's journal.
    ///
    /// Called on a timer and before a raft snapshot, never per request.
    pub fn flush(&self) -> Result<(), BackendError> {
        self.db
            .persist(fjall::PersistMode::SyncAll)
            .map_err(|e| self.err("flush", e))
    }

    /// Bytes the database occupies on disk (allocated blocks of every file in its directory:
    /// tables, journal, manifests), for the db size metrics, `Status` and the quota.
    pub fn size_on_disk(&self) -> u64 {
        disk_usage::allocated_bytes(&self.dir)
    }

    /// The last raft index whose effects are in the database (0 on a new database).
    pub fn consistent_index(&self) -> Result<u64, BackendError> {
        match self.get(Bucket::Meta, CONSISTENT_INDEX_KEY)? {
            None => Ok(0),
            Some(v) => {
                let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| BackendError::Corrupt {
                    dir: self.dir.to_path_buf(),
                    detail: format!(
                        "meta key consistent_index has {} bytes, expected 8",
                        v.len()
                    ),
                })?;
                Ok(u64::from_be_bytes(bytes))
            }
        }
    }
}

/// Opens fjall in `dir`, waiting for a lock released by a database closed just before.
fn open_fjall(
    dir: &Path,
    opts: &BackendOptions,
) -> Result<(fjall::Database, fjall::Keyspace), BackendError> {
    let deadline = Instant::now() + LOCK_WAIT;
    let mut pause = Duration::from_millis(5);
    let db = loop {
        let res = fjall::Database::builder(dir)
            .cache_size(opts.cache_capacity_bytes)
            // The raft WAL is the durability point: fjall's journal is persisted on our timer
            // and before snapshots, never per batch.
            .manual_journal_persist(true)
            // Bounds the journal (and with it replay at start and its disk space) to the
            // smallest size fjall allows.
            .max_journaling_size(64 * 1024 * 1024)
            .open();
        match res.map_err(|e| BackendError::from_fjall(dir, "open", e)) {
            Ok(db) => break db,
            Err(BackendError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    };
    let memtable = opts.memtable_bytes;
    let state = db
        .keyspace(KEYSPACE, || {
            fjall::KeyspaceCreateOptions::default()
                .manual_journal_persist(true)
                .max_memtable_size(memtable)
        })
        .map_err(|e| BackendError::from_fjall(dir, "open keyspace", e))?;
    Ok((db, state))
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
            let mut batch = WriteBatch::new();
            batch.put(Bucket::Members, b"m1", &b"x"[..]);
            batch.put(Bucket::Members, b"m2", &b"y"[..]);
            batch.set_consistent_index(41);
            b.commit(batch).unwrap();
            let mut batch = WriteBatch::new();
            batch.delete(Bucket::Members, b"m1");
            batch.set_consistent_index(42);
            b.commit(batch).unwrap();
            b.commit(WriteBatch::new()).unwrap();
            b.flush().unwrap();
            assert!(b.size_on_disk() > 0);
        }
        let b = open(tmp.path());
        assert_eq!(b.consistent_index().unwrap(), 42);
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
        batch.set_consistent_index(5);
        batch.set_consistent_index(6);
        b.commit(batch).unwrap();
        assert_eq!(b.get(Bucket::Meta, b"k").unwrap().unwrap().as_ref(), b"2");
        assert_eq!(b.get(Bucket::Meta, b"gone").unwrap().unwrap().as_ref(), b"back");
        assert_eq!(b.consistent_index().unwrap(), 6);
    }

    #[test]
    fn corrupt_consistent_index_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let b = open(tmp.path());
        let mut batch = WriteBatch::new();
        batch.put(Bucket::Meta, CONSISTENT_INDEX_KEY, &b"abc"[..]);
        b.commit(batch).unwrap();
        let err = b.consistent_index().unwrap_err();
        assert!(err.to_string().contains("expected 8"), "{err}");
    }
}
