//! `ferrocdutl snapshot restore`: a new member data dir from a backup file.
//!
//! The file is verified whole before anything is created. The member is then built in a
//! temporary sibling directory — the backup's records loaded into a fresh backend, then the
//! server's own new-cluster bootstrap run over it (members, cluster id and member ids from the
//! flags, a raft log that starts at index 1 after the restored state) — and renamed into place
//! only when complete. A failure at any point removes the temporary directory: the target is
//! either a whole restored member or untouched.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferrocd::backend::{Backend, BackendOptions, WriteBatch};
use ferrocd::config::{ClusterState, Config};
use ferrocd::schema::{meta, Bucket};
use ferrocd::server::bootstrap;
use ferrocd::snap::backup_read;

use crate::snapshot::is_new;

/// Records per backend batch while loading.
const LOAD_BATCH: usize = 10_000;

/// What the restored member holds.
pub struct Restored {
    /// The revision it is at (the backup's).
    pub revision: i64,
    /// Its compacted revision.
    pub compact_revision: i64,
    /// Keys that exist at that revision.
    pub keys: usize,
    /// This member's new id.
    pub member_id: u64,
    /// The new cluster's id.
    pub cluster_id: u64,
    /// Members in the new cluster.
    pub members: usize,
}

type Error = Box<dyn std::error::Error>;

/// Restores `file` into `cfg.data_dir` (and `cfg.wal_dir`) for the member `cfg.name`.
pub fn restore(file: &Path, cfg: &Config) -> Result<Restored, Error> {
    for dir in std::iter::once(&cfg.data_dir).chain(&cfg.wal_dir) {
        if !is_new(dir) {
            return Err(format!(
                "{} already exists and is not empty; restore into a new directory (an existing \
                 member's data is never overwritten)",
                dir.display()
            )
            .into());
        }
    }
    let info = backup_read::verify(file)?;

    let mut tmp = TempDirs::default();
    let mut build = cfg.clone();
    build.data_dir = tmp.add(&cfg.data_dir)?;
    build.wal_dir = match &cfg.wal_dir {
        Some(w) => Some(tmp.add(w)?),
        None => None,
    };
    // Client URLs are published by each member when it starts, as after etcdutl's restore.
    build.advertise_client_urls = Vec::new();
    build.initial_cluster_state = ClusterState::New;

    load(file, &bootstrap::db_dir(&build.data_dir))?;
    let boot = bootstrap::bootstrap(&build, None)?;
    let restored = Restored {
        revision: boot.store.current_revision(),
        compact_revision: boot.store.compact_revision(),
        keys: boot.store.keys_total(),
        member_id: boot.member_id,
        cluster_id: boot.cluster_id,
        members: boot.members.list().len(),
    };
    if restored.revision != info.header.revision {
        return Err(format!(
            "the restored store is at revision {} but the snapshot was taken at revision {}; \
             the snapshot is inconsistent",
            restored.revision, info.header.revision
        )
        .into());
    }
    boot.backend.flush()?;
    drop(boot);
    tmp.commit()?;
    Ok(restored)
}

/// Loads every record of the (verified) backup into a new backend at `db`, except what names
/// the old cluster: its members and its member-local meta keys (applied raft index and term,
/// member id). The new cluster's bootstrap
/// writes those.
fn load(file: &Path, db: &Path) -> Result<(), Error> {
    let backend = Arc::new(Backend::open(db, BackendOptions::default())?);
    let mut batch = WriteBatch::new();
    backup_read::read_records(file, |bucket, key, value| {
        if bucket == Bucket::Members || (bucket == Bucket::Meta && meta::LOCAL.contains(&key)) {
            return Ok(());
        }
        batch.put(bucket, key, value.to_vec());
        if batch.len() >= LOAD_BATCH {
            backend
                .commit(std::mem::take(&mut batch))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    backend.commit(batch)?;
    backend.flush()?;
    Ok(())
}

/// Directories being built, removed unless committed.
#[derive(Default)]
struct TempDirs {
    /// (temporary, final) pairs.
    dirs: Vec<(PathBuf, PathBuf)>,
}

impl TempDirs {
    /// A fresh temporary sibling of `target`.
    fn add(&mut self, target: &Path) -> Result<PathBuf, Error> {
        let name = target
            .file_name()
            .ok_or_else(|| format!("{} does not name a directory", target.display()))?;
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        let tmp = parent.join(format!(
            ".{}.restoring-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        if tmp.exists() {
            fs::remove_dir_all(&tmp)
                .map_err(|e| format!("cannot remove stale {}: {e}", tmp.display()))?;
        }
        self.dirs.push((tmp.clone(), target.to_path_buf()));
        Ok(tmp)
    }

    /// Moves every directory into place (an empty target directory is replaced).
    fn commit(&mut self) -> Result<(), Error> {
        for (tmp, target) in &self.dirs {
            if target.is_dir() {
                fs::remove_dir(target)
                    .map_err(|e| format!("cannot replace empty {}: {e}", target.display()))?;
            }
            fs::rename(tmp, target).map_err(|e| {
                format!("cannot move {} to {}: {e}", tmp.display(), target.display())
            })?;
            if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::File::open(parent)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| format!("cannot sync {}: {e}", parent.display()))?;
            }
        }
        self.dirs.clear();
        Ok(())
    }
}

impl Drop for TempDirs {
    fn drop(&mut self) {
        for (tmp, _) in &self.dirs {
            let _ = fs::remove_dir_all(tmp);
        }
    }
}
