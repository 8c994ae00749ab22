//! The storage engine: one sled database holding every bucket of server state.
//!
//! All buckets live in ONE sled tree, each key prefixed by a one-byte bucket id, because sled's
//! `apply_batch` is only atomic within a tree and the applier must write kv changes, lease and
//! auth changes and the consistent index atomically. Nothing here fsyncs per request: the raft
//! WAL is the durability point, and sled is flushed on its own timer and before snapshots.

mod batch;
mod defrag;
mod error;
mod generation;

pub use batch::WriteBatch;
pub use defrag::{Defrag, DefragReport};
pub use error::BackendError;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use generation::Generation;
use parking_lot::RwLock;

/// How long `open` waits for sled's lock to be released by a database closed just before.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Meta-bucket key of the last applied raft index (u64 big-endian), as in etcd.
pub const CONSISTENT_INDEX_KEY: &[u8] = b"consistent_index";
/// Meta-bucket key of the member this database belongs to (u64 big-endian). Local to the
/// member: a snapshot from another member must never carry it over.
pub const MEMBER_ID_KEY: &[u8] = b"member_id";

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

/// Tuning of the sled database.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// sled's page cache size. sled's own default (1 GiB) would dwarf etcd's RSS; 64 MiB keeps
    /// hot data cached without that.
    pub cache_capacity_bytes: u64,
    /// How often sled flushes in the background (None: only on explicit `flush`).
    pub flush_every_ms: Option<u64>,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            cache_capacity_bytes: 64 * 1024 * 1024,
            flush_every_ms: Some(500),
        }
    }
}

/// The open database. `Send + Sync`: share it as `Arc<Backend>`; sled handles concurrency.
///
/// The sled database behind it can be replaced by a defragmented copy while it serves (see
/// [`Backend::begin_defrag`]); every call works on the generation that is live when it starts,
/// and an iterator keeps its generation alive until it is dropped.
pub struct Backend {
    current: RwLock<Arc<Generation>>,
    dir: Arc<PathBuf>,
    opts: BackendOptions,
    /// Bumped by every commit that deletes key-bucket entries (compaction, snapshot install),
    /// so a defragmentation can tell whether history it already copied changed under it.
    key_deletes: AtomicU64,
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
            let dir = dir.to_path_buf();
            if error_is_disk_full(&source) {
                BackendError::DiskFull {
                    dir,
                    op: "create directory",
                    source,
                }
            } else {
                BackendError::Io {
                    dir,
                    op: "create directory",
                    source,
                }
            }
        })?;
        let io_err = |op: &'static str| {
            let dir = dir.to_path_buf();
            move |source: std::io::Error| BackendError::Io { dir, op, source }
        };
        let name = generation::current_name(dir).map_err(io_err("read CURRENT"))?;
        let path = dir.join(&name);
        if name != generation::LEGACY && !path.exists() && generation::has_other(dir, &name) {
            // CURRENT only ever names a generation that was complete and durable; opening an
            // empty database in its place would silently lose every key.
            return Err(BackendError::Corrupt {
                dir: dir.to_path_buf(),
                detail: format!("{} names {name}, which is missing", generation::CURRENT),
            });
        }
        let db = open_sled(&path, &opts)?;
        // Only now, holding the live generation's lock (so no other process uses this
        // database), are leftovers of an interrupted defragmentation removed.
        generation::remove_stale(dir, &name);
        tracing::info!(
            dir = %dir.display(),
            generation = %name,
            recovered = db.was_recovered(),
            cache_capacity_bytes = opts.cache_capacity_bytes,
            "opened backend database"
        );
        Ok(Backend {
            current: RwLock::new(Arc::new(Generation {
                db,
                name,
                path,
                obsolete: Default::default(),
            })),
            dir: Arc::new(dir.to_path_buf()),
            opts,
            key_deletes: AtomicU64::new(0),
        })
    }

    /// The live generation.
    fn live(&self) -> Arc<Generation> {
        self.current.read().clone()
    }

    /// The directory the database lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn err(&self, op: &'static str, e: sled::Error) -> BackendError {
        BackendError::from_sled(&self.dir, op, e)
    }

    /// Reads one key.
    pub fn get(&self, bucket: Bucket, key: &[u8]) -> Result<Option<sled::IVec>, BackendError> {
        self.live()
            .db
            .get(prefixed(bucket, key))
            .map_err(|e| self.err("get", e))
    }

    /// Iterates `bucket` over `[start, end)` in key order (`end = None`: to the bucket's end).
    ///
    /// Yields keys without the bucket prefix. The iterator sees a consistent-enough view for
    /// scans (sled iterators are not snapshots: concurrent commits may or may not be seen).
    pub fn range(
        &self,
        bucket: Bucket,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> impl Iterator<Item = Result<(Vec<u8>, sled::IVec), BackendError>> + Send + 'static {
        let lo = prefixed(bucket, start);
        let hi = match end {
            Some(end) => prefixed(bucket, end),
            None => vec![bucket.id() + 1],
        };
        // sled panics on an inverted range; an inverted request is simply empty.
        let live = self.live();
        let iter = if lo <= hi {
            Some(live.db.range(lo..hi))
        } else {
            None
        };
        let dir = Arc::clone(&self.dir);
        // The closure owns `live`: the generation stays until the iterator is dropped.
        iter.into_iter().flatten().map(move |r| {
            let _generation = &live;
            match r {
                Ok((k, v)) => Ok((k[1..].to_vec(), v)),
                Err(e) => Err(BackendError::from_sled(&dir, "range", e)),
            }
        })
    }

    /// Applies `batch` atomically (all or nothing, across buckets). Not fsync'd.
    pub fn commit(&self, batch: WriteBatch) -> Result<(), BackendError> {
        if batch.is_empty() {
            return Ok(());
        }
        if batch.deletes_history() {
            self.key_deletes.fetch_add(1, Ordering::AcqRel);
        }
        self.live()
            .db
            .apply_batch(batch.into_sled())
            .map_err(|e| self.err("commit", e))
    }

    /// Makes everything committed so far durable (blocking); returns the bytes flushed.
    ///
    /// Called by sled's own timer and before a raft snapshot, never per request.
    pub fn flush(&self) -> Result<usize, BackendError> {
        self.live().db.flush().map_err(|e| self.err("flush", e))
    }

    /// Bytes the database occupies on disk, for the db size metrics and `Status` (0 if sled
    /// cannot tell).
    pub fn size_on_disk(&self) -> u64 {
        self.live().db.size_on_disk().unwrap_or(0)
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

/// Opens sled in `path`, waiting for a lock released by a database closed just before.
fn open_sled(path: &Path, opts: &BackendOptions) -> Result<sled::Db, BackendError> {
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(opts.cache_capacity_bytes)
        .flush_every_ms(opts.flush_every_ms);
    // sled releases its file lock only when its background threads exit, a little after
    // the previous `Db` in this process was dropped (sled issue #1289): reopening right
    // after closing (snapshot install, tests) must wait for that instead of failing.
    let deadline = Instant::now() + LOCK_WAIT;
    let mut pause = Duration::from_millis(5);
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(e) => match BackendError::from_sled(path, "open", e) {
                BackendError::Locked { .. } if Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                err => return Err(err),
            },
        }
    }
}

fn error_is_disk_full(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(err.raw_os_error(), Some(28) | Some(122))
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
