//! Raft snapshots: the backend state at an applied index, sent to a member whose log is too far
//! behind the leader's (or new), and installed there.
//!
//! A snapshot is prepared by the applier, the only writer, so it is exactly the state at one
//! index. Only the small buckets (meta, members, leases, auth, alarms) are copied then; key
//! history is append-only by revision, so the sender streams the key bucket later without
//! blocking anyone, keeping just the revisions up to the snapshot's revision. Compaction waits
//! while a snapshot streams, so no revision the snapshot promises disappears under it.
//!
//! Install is crash-safe: the received file is fsync'd before raft hears of it, the WAL
//! records the snapshot point before the backend is touched, and the backend's consistent index
//! is cleared first and set last — a member that dies mid-install finds a WAL snapshot point
//! ahead of its backend on restart and installs the file again.

pub mod backup;
pub mod backup_read;
pub mod codec;

use std::fs;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use raft::prelude::ConfState;

use crate::backend::{Backend, BackendError, WriteBatch};
use crate::mvcc::Revision;
use crate::schema::{meta, Bucket};

/// Where a snapshot is, in raft terms, and which revision it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotMeta {
    /// The last raft index applied into the state.
    pub index: u64,
    /// That entry's term.
    pub term: u64,
    /// The raft configuration at `index`.
    pub conf_state: ConfState,
    /// The MVCC revision at `index`.
    pub revision: i64,
}

/// One backend record: bucket, key, value.
pub type BucketEntry = (Bucket, Vec<u8>, Vec<u8>);

/// A snapshot the applier prepared: its metadata and the small buckets as of that index.
pub struct Prepared {
    /// Where it is.
    pub meta: SnapshotMeta,
    /// Every (bucket, key, value) outside the key bucket, copied at `meta.index`.
    pub small: Vec<BucketEntry>,
}

/// Shared between raft storage (which asks for snapshots), the applier (which prepares them),
/// the transport (which streams them) and the compactor (which must not race a stream).
#[derive(Default)]
pub struct SnapshotStore {
    latest: Mutex<Option<Arc<Prepared>>>,
    requested: std::sync::atomic::AtomicBool,
    /// Held shared while a snapshot streams, exclusively while a compaction deletes.
    pub compaction_lock: RwLock<()>,
}

impl SnapshotStore {
    /// The newest prepared snapshot.
    pub fn latest(&self) -> Option<Arc<Prepared>> {
        self.latest.lock().clone()
    }

    /// Asks the applier for a fresh snapshot (raft needs one newer than what we have).
    pub fn request(&self) {
        self.requested
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether a snapshot was requested; clears the request.
    pub fn take_request(&self) -> bool {
        self.requested
            .swap(false, std::sync::atomic::Ordering::AcqRel)
    }

    /// Publishes a prepared snapshot.
    pub fn publish(&self, p: Prepared) {
        tracing::info!(
            index = p.meta.index,
            term = p.meta.term,
            revision = p.meta.revision,
            "snapshot prepared"
        );
        *self.latest.lock() = Some(Arc::new(p));
    }
}

/// Copies the small buckets of `backend` (everything but key history). Call with the backend
/// current through the snapshot's index (no open group).
pub fn capture_small(backend: &Backend) -> Result<Vec<BucketEntry>, BackendError> {
    let mut out = Vec::new();
    for bucket in Bucket::ALL {
        if bucket == Bucket::Key {
            continue;
        }
        for item in backend.range(bucket, &[], None) {
            let (k, v) = item?;
            out.push((bucket, k, v.to_vec()));
        }
    }
    Ok(out)
}

/// The key bucket's records up to `revision`, in revision order: what a snapshot taken at that
/// revision holds. The scan stops at the first newer revision (keys are in revision order), so
/// writes that keep arriving while it runs can never make it endless. Call with the compaction
/// lock held shared, so no revision at or below `revision` disappears meanwhile.
pub fn key_records(
    backend: &Backend,
    revision: i64,
) -> impl Iterator<Item = Result<(Vec<u8>, crate::backend::Value), BackendError>> + Send + 'static {
    let end = Revision::new(revision.saturating_add(1), 0).to_bytes();
    backend
        .range(Bucket::Key, &[], Some(&end))
        .filter(|item| match item {
            Ok((k, _)) => Revision::parse_key(k).is_ok(), // skip anything not a revision key
            Err(_) => true,
        })
}

/// Snapshot data per chunk sent to a peer.
pub const CHUNK_BYTES: usize = 1 << 20;

/// A producer of one outgoing snapshot's body (run it on a blocking thread): it streams the
/// data in [`CHUNK_BYTES`] chunks to `emit` (stopping when `emit` returns false) and returns
/// the bytes produced.
pub type OutgoingBody =
    Box<dyn FnOnce(&mut dyn FnMut(Vec<u8>) -> bool) -> Result<u64, BackendError> + Send>;

/// The body of the prepared snapshot at raft index `index`, if that is the newest prepared
/// one: what the peer transport sends.
pub fn outgoing(
    store: &Arc<SnapshotStore>,
    backend: &Arc<Backend>,
    index: u64,
) -> Option<OutgoingBody> {
    let prepared = store.latest().filter(|p| p.meta.index == index)?;
    let (store, backend) = (store.clone(), backend.clone());
    Some(Box::new(move |emit: &mut dyn FnMut(Vec<u8>) -> bool| {
        stream(&store, &backend, &prepared, CHUNK_BYTES, emit)
    }))
}

/// Streams a prepared snapshot's data as encoded chunks of about `chunk_bytes`, calling `emit`
/// for each (returning false stops). Holds the compaction lock shared for the duration.
pub fn stream(
    store: &SnapshotStore,
    backend: &Backend,
    p: &Prepared,
    chunk_bytes: usize,
    mut emit: impl FnMut(Vec<u8>) -> bool,
) -> Result<u64, BackendError> {
    let _no_compaction = store.compaction_lock.read();
    let mut buf = Vec::with_capacity(chunk_bytes + 4096);
    let mut total = 0u64;
    let mut flush = |buf: &mut Vec<u8>, total: &mut u64| -> bool {
        *total += buf.len() as u64;
        emit(std::mem::replace(
            buf,
            Vec::with_capacity(chunk_bytes + 4096),
        ))
    };
    for (bucket, k, v) in &p.small {
        codec::encode(&mut buf, *bucket, k, v);
    }
    let mut records = 0u64;
    for item in key_records(backend, p.meta.revision) {
        let (k, v) = item?;
        codec::encode(&mut buf, Bucket::Key, &k, &v);
        records += 1;
        if buf.len() >= chunk_bytes {
            if !flush(&mut buf, &mut total) {
                return Ok(total);
            }
            if records.is_multiple_of(100_000) {
                tracing::info!(
                    index = p.meta.index,
                    records,
                    bytes = total,
                    "streaming snapshot"
                );
            }
        }
    }
    if !buf.is_empty() {
        flush(&mut buf, &mut total);
    }
    Ok(total)
}

/// The file a received snapshot is kept in.
pub fn snap_path(snap_dir: &Path, term: u64, index: u64) -> PathBuf {
    snap_dir.join(format!("{term:016x}-{index:016x}.snap"))
}

/// Writes a received snapshot to `path` atomically (temp file, fsync, rename, fsync dir).
pub struct Receiver {
    path: PathBuf,
    tmp: PathBuf,
    file: fs::File,
    /// Bytes received so far.
    pub bytes: u64,
}

impl Receiver {
    /// Starts receiving into `path`.
    pub fn create(path: PathBuf) -> std::io::Result<Receiver> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("snap.tmp");
        let file = fs::File::create(&tmp)?;
        Ok(Receiver {
            path,
            tmp,
            file,
            bytes: 0,
        })
    }

    /// Appends data.
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.bytes += data.len() as u64;
        self.file.write_all(data)
    }

    /// Makes the file durable under its final name.
    pub fn finish(self) -> std::io::Result<PathBuf> {
        self.file.sync_all()?;
        drop(self.file);
        fs::rename(&self.tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(self.path)
    }
}

/// Replaces the backend's whole content with a snapshot file, ending with the consistent index
/// set to `index` (term `term`), so an interrupted install is recognisable and redone on
/// restart. The snapshot comes from another member: its member id is replaced by `member_id`,
/// this member's own (otherwise the next start would find a backend of another member).
pub fn install(
    backend: &Backend,
    path: &Path,
    index: u64,
    term: u64,
    member_id: u64,
) -> Result<u64, String> {
    let started = std::time::Instant::now();
    let err = |e: &dyn std::fmt::Display| format!("installing snapshot {}: {e}", path.display());
    // 1. Mark the backend as mid-install.
    let mut b = WriteBatch::new();
    b.delete(Bucket::Meta, meta::CONSISTENT_INDEX);
    backend.commit(b).map_err(|e| err(&e))?;
    // 2. Clear every bucket.
    for bucket in Bucket::ALL {
        let mut b = WriteBatch::new();
        for item in backend.range(bucket, &[], None) {
            let (k, _) = item.map_err(|e| err(&e))?;
            b.delete(bucket, &k);
            if b.len() >= 10_000 {
                backend
                    .commit(std::mem::take(&mut b))
                    .map_err(|e| err(&e))?;
            }
        }
        backend.commit(b).map_err(|e| err(&e))?;
    }
    crash_point(backend, "snap-install-cleared");
    // 3. Load the file.
    let file = fs::File::open(path).map_err(|e| err(&e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut data = Vec::new();
    reader.read_to_end(&mut data).map_err(|e| err(&e))?;
    let mut b = WriteBatch::new();
    let mut records = 0u64;
    let mut pos = 0;
    while pos < data.len() {
        let (bucket, k, v, used) = codec::decode(&data[pos..]).map_err(|e| err(&e))?;
        pos += used;
        if bucket == Bucket::Meta && meta::LOCAL.contains(&k) {
            continue;
        }
        b.put(bucket, k, v);
        records += 1;
        if b.len() >= 10_000 {
            backend
                .commit(std::mem::take(&mut b))
                .map_err(|e| err(&e))?;
        }
        if records.is_multiple_of(200_000) {
            tracing::info!(
                records,
                bytes = pos,
                total = data.len(),
                "installing snapshot"
            );
        }
    }
    crash_point(backend, "snap-install-loaded");
    // 4. Done: the consistent index says the backend holds everything through `index`.
    b.put(Bucket::Meta, meta::MEMBER_ID, &member_id.to_be_bytes()[..]);
    b.set_consistent_index(index, term);
    backend.commit(b).map_err(|e| err(&e))?;
    backend.flush().map_err(|e| err(&e))?;
    tracing::info!(
        index,
        records,
        bytes = data.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "snapshot installed"
    );
    Ok(records)
}

/// Test-only crash point inside an install (see `crate::fault`). The backend is written out
/// first: its memtable may reach the disk at any moment (it is flushed when full), and a
/// crash after such a flush is the hard case for a restart.
#[cfg(debug_assertions)]
fn crash_point(backend: &Backend, name: &str) {
    if crate::fault::armed(name) {
        if let Err(e) = backend.flush() {
            tracing::warn!(error = %e, "flush before the fault point failed");
        }
        crate::fault::point(name);
    }
}

#[cfg(not(debug_assertions))]
fn crash_point(_: &Backend, _: &str) {}

/// Removes snapshot files other than the newest `keep`.
pub fn purge(snap_dir: &Path, keep: usize) {
    let Ok(rd) = fs::read_dir(snap_dir) else {
        return;
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .map(|x| x == "snap" || x == "tmp")
                .unwrap_or(false)
        })
        .collect();
    files.sort();
    let n = files.len();
    for f in files.into_iter().take(n.saturating_sub(keep)) {
        let _ = fs::remove_file(f);
    }
}
