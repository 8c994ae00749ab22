//! Opening a member's data dir: create a new cluster's member from the flags, join an existing
//! cluster, or restart from the WAL and backend (ignoring the initial-cluster flags, as etcd
//! does).
//!
//! Layout (`--data-dir`): `member/wal/` (WAL segments, or `--wal-dir`), `member/db/` (fjall),
//! `member/snap/` (snapshots received from a leader). The WAL's existence marks an initialized
//! member: it is created last, so a crash during bootstrap leaves a dir that bootstraps again.
//!
//! A new cluster's raft log starts at a snapshot point (index 1, term 1) holding the initial
//! configuration, so every member starts identical and a member added later — whose log is
//! empty — is brought up to date by snapshot.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message as _;
use raft::prelude::{ConfState, HardState};

use crate::backend::{Backend, BackendOptions, WriteBatch};
use crate::config::url_to_string as url_string;
use crate::config::{ClusterState, Config};
use crate::error::ServerError;
use crate::membership::{cluster_id, load_conf_state, member_id, save_conf_state, MemberTable};
use crate::mvcc::{Compaction, Store};
use crate::proto::ferrocdpb::{Member, WalMetadata};
use crate::raft::RaftStorage;
use crate::schema::{meta, Bucket};
use crate::wal::{Record, Wal};

/// What a member started with `--initial-cluster-state=existing` learned from the cluster.
pub struct JoinInfo {
    /// The cluster's id.
    pub cluster_id: u64,
    /// Its members (including this one, added beforehand with `member add`).
    pub members: Vec<Member>,
}

/// Everything a member needs to start serving.
pub struct Bootstrapped {
    /// This member's id.
    pub member_id: u64,
    /// The cluster's id.
    pub cluster_id: u64,
    /// The opened backend.
    pub backend: Arc<Backend>,
    /// The MVCC store rebuilt from it.
    pub store: Store,
    /// A compaction interrupted by the last stop, to finish now.
    pub pending_compaction: Option<Compaction>,
    /// The open WAL.
    pub wal: Wal,
    /// The raft log restored from the WAL.
    pub storage: RaftStorage,
    /// The member table.
    pub members: MemberTable,
    /// The raft configuration as of the consistent index.
    pub conf_state: ConfState,
    /// The last raft index the backend has applied.
    pub consistent_index: u64,
    /// The last snapshot point recorded in the WAL.
    pub snapshot_index: u64,
    /// The term of that snapshot point (or of the consistent index, when known).
    pub applied_term: u64,
}

/// Where the WAL lives.
pub fn wal_dir(cfg: &Config) -> PathBuf {
    cfg.wal_dir
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("member").join("wal"))
}

/// Where the backend lives.
pub fn db_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("member").join("db")
}

/// Where received snapshots live.
pub fn snap_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("member").join("snap")
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ServerError + 'a {
    move |source| ServerError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn create_private_dir(path: &Path) -> Result<(), ServerError> {
    if path.exists() && !path.is_dir() {
        return Err(ServerError::State(format!(
            "data dir {} is a file, not a directory: point --data-dir at a directory",
            path.display()
        )));
    }
    fs::create_dir_all(path).map_err(io("cannot create directory", path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

/// Whether the member in `cfg` has been initialized before (its WAL exists).
pub fn is_initialized(cfg: &Config) -> bool {
    Wal::exists(&wal_dir(cfg))
}

/// Opens the member in `cfg.data_dir`, creating it if it has no WAL yet. `join` is what the
/// cluster said when this member joins an existing one.
pub fn bootstrap(cfg: &Config, join: Option<JoinInfo>) -> Result<Bootstrapped, ServerError> {
    create_private_dir(&cfg.data_dir)?;
    create_private_dir(&cfg.data_dir.join("member"))?;
    let wal_dir = wal_dir(cfg);
    if Wal::exists(&wal_dir) {
        tracing::info!(data_dir = %cfg.data_dir.display(), "restarting member from existing data dir; --initial-cluster flags are ignored");
        return restart(cfg, &wal_dir);
    }
    match (cfg.initial_cluster_state, join) {
        (ClusterState::Existing, Some(join)) => create_joining(cfg, &wal_dir, join),
        (ClusterState::Existing, None) => Err(ServerError::State(
            "--initial-cluster-state=existing needs a reachable member of the cluster in --initial-cluster".into(),
        )),
        (ClusterState::New, _) => create_new(cfg, &wal_dir),
    }
}

fn open_backend(cfg: &Config) -> Result<Arc<Backend>, ServerError> {
    let dir = db_dir(&cfg.data_dir);
    Ok(Arc::new(Backend::open(&dir, BackendOptions::default())?))
}

/// The members named by `--initial-cluster`, with etcd's ids.
pub fn initial_members(cfg: &Config) -> Vec<Member> {
    let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
    for (name, u) in &cfg.initial_cluster {
        let s = url_string(u);
        match grouped.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(s),
            None => grouped.push((name.clone(), vec![s])),
        }
    }
    grouped
        .into_iter()
        .map(|(name, urls)| Member {
            id: member_id(&urls, &cfg.initial_cluster_token, None),
            name,
            peer_urls: urls,
            client_urls: Vec::new(),
            is_learner: false,
        })
        .collect()
}

fn refuse_stale_backend(
    cfg: &Config,
    backend: &Backend,
    wal_dir: &Path,
) -> Result<(), ServerError> {
    if backend.consistent_index()? > 0 {
        return Err(ServerError::State(format!(
            "{} holds applied data but the WAL in {} is missing; restore the WAL or start from an empty data dir",
            db_dir(&cfg.data_dir).display(),
            wal_dir.display()
        )));
    }
    Ok(())
}

fn create_new(cfg: &Config, wal_dir: &Path) -> Result<Bootstrapped, ServerError> {
    let members = initial_members(cfg);
    let Some(local) = members.iter().find(|m| m.name == cfg.name).cloned() else {
        return Err(ServerError::State(format!(
            "--initial-cluster has no member named {:?} (--name); add {}=<peer url> to it",
            cfg.name, cfg.name
        )));
    };
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let cid = cluster_id(&ids);
    let backend = open_backend(cfg)?;
    refuse_stale_backend(cfg, &backend, wal_dir)?;

    let table = MemberTable::default();
    let mut batch = WriteBatch::default();
    for mut m in members {
        if m.id == local.id {
            m.client_urls = cfg.advertise_client_urls.iter().map(url_string).collect();
        }
        table.upsert(&mut batch, m);
    }
    let cs = ConfState {
        voters: ids.clone(),
        ..Default::default()
    };
    save_conf_state(&mut batch, &cs);
    batch.put(Bucket::Meta, meta::CLUSTER_ID, &cid.to_be_bytes()[..]);
    batch.put(Bucket::Meta, meta::MEMBER_ID, &local.id.to_be_bytes()[..]);
    batch.set_consistent_index(1, 1);
    backend.commit(batch)?;
    backend.flush()?;

    // The log starts at a snapshot point: index 1, term 1, holding the initial configuration.
    let meta = WalMetadata {
        member_id: local.id,
        cluster_id: cid,
    };
    let mut wal = Wal::create(wal_dir, &meta.encode_to_vec())?;
    wal.append(&[
        Record::Snapshot { index: 1, term: 1 },
        Record::HardState {
            term: 1,
            vote: 0,
            commit: 1,
        },
    ])?;
    wal.sync()?;
    let storage = RaftStorage::new(cs.clone());
    storage
        .bootstrap_at(1, 1, cs.clone())
        .map_err(|e| ServerError::Raft(e.to_string()))?;
    storage.set_hard_state(HardState {
        term: 1,
        vote: 0,
        commit: 1,
        ..Default::default()
    });
    tracing::info!(
        member_id = format!("{:x}", local.id),
        cluster_id = format!("{cid:x}"),
        name = %cfg.name,
        members = ids.len(),
        "bootstrapped a new cluster"
    );
    let (store, pending_compaction) = Store::open(backend.clone())?;
    Ok(Bootstrapped {
        member_id: local.id,
        cluster_id: cid,
        backend,
        store,
        pending_compaction,
        wal,
        storage,
        members: table,
        conf_state: cs,
        consistent_index: 1,
        snapshot_index: 1,
        applied_term: 1,
    })
}

fn create_joining(
    cfg: &Config,
    wal_dir: &Path,
    join: JoinInfo,
) -> Result<Bootstrapped, ServerError> {
    let mut mine: Vec<String> = cfg
        .initial_advertise_peer_urls
        .iter()
        .map(url_string)
        .collect();
    mine.sort();
    let local = join.members.iter().find(|m| {
        let mut urls = m.peer_urls.clone();
        urls.sort();
        urls == mine
    });
    let Some(local) = local.cloned() else {
        return Err(ServerError::State(format!(
            "no member of cluster {:x} has peer URLs {mine:?}; add this member first with \
             `etcdctl member add {} --peer-urls={}`",
            join.cluster_id,
            cfg.name,
            mine.join(",")
        )));
    };
    let backend = open_backend(cfg)?;
    refuse_stale_backend(cfg, &backend, wal_dir)?;
    let table = MemberTable::default();
    let mut batch = WriteBatch::default();
    for m in join.members {
        table.upsert(&mut batch, m);
    }
    batch.put(
        Bucket::Meta,
        meta::CLUSTER_ID,
        &join.cluster_id.to_be_bytes()[..],
    );
    batch.put(Bucket::Meta, meta::MEMBER_ID, &local.id.to_be_bytes()[..]);
    backend.commit(batch)?;
    backend.flush()?;
    let meta = WalMetadata {
        member_id: local.id,
        cluster_id: join.cluster_id,
    };
    let wal = Wal::create(wal_dir, &meta.encode_to_vec())?;
    tracing::info!(
        member_id = format!("{:x}", local.id),
        cluster_id = format!("{:x}", join.cluster_id),
        learner = local.is_learner,
        "joining an existing cluster; waiting for the leader's snapshot"
    );
    let (store, pending_compaction) = Store::open(backend.clone())?;
    Ok(Bootstrapped {
        member_id: local.id,
        cluster_id: join.cluster_id,
        backend,
        store,
        pending_compaction,
        wal,
        // No configuration yet: it arrives with the leader's snapshot.
        storage: RaftStorage::new(ConfState::default()),
        members: table,
        conf_state: ConfState::default(),
        consistent_index: 0,
        snapshot_index: 0,
        applied_term: 0,
    })
}

fn restart(cfg: &Config, wal_dir: &Path) -> Result<Bootstrapped, ServerError> {
    let (mut wal, records) = Wal::open(wal_dir)?;
    let backend = open_backend(cfg)?;
    let cs = load_conf_state(&backend)
        .map_err(ServerError::State)?
        .unwrap_or_default();
    let restored = RaftStorage::restore(cs, records).map_err(ServerError::Raft)?;
    let meta = restored
        .metadata
        .as_deref()
        .map(WalMetadata::decode)
        .transpose()
        .map_err(|e| ServerError::State(format!("WAL metadata does not decode: {e}")))?
        .ok_or_else(|| {
            ServerError::State(format!(
                "WAL in {} has no metadata record",
                wal_dir.display()
            ))
        })?;
    if let Some(v) = backend.get(Bucket::Meta, meta::MEMBER_ID)? {
        let backend_member = u64::from_be_bytes(v[..].try_into().unwrap_or_default());
        if backend_member != meta.member_id {
            return Err(ServerError::State(format!(
                "WAL belongs to member {:x} but the backend to member {backend_member:x}; the data dir mixes two members",
                meta.member_id
            )));
        }
    }
    let mut consistent_index = backend.consistent_index()?;
    // A snapshot from the leader that was recorded but not (fully) installed: install it now.
    if let Some((index, term)) = restored.snapshot {
        if consistent_index < index {
            let path = crate::snap::snap_path(&snap_dir(&cfg.data_dir), term, index);
            if !path.exists() {
                return Err(ServerError::State(format!(
                    "the WAL records a snapshot at index {index} but {} is missing; \
                     remove this member's data dir and re-add it",
                    path.display()
                )));
            }
            tracing::warn!(index, "finishing an interrupted snapshot install");
            crate::snap::install(&backend, &path, index, term, meta.member_id)
                .map_err(ServerError::State)?;
            consistent_index = index;
        }
    }
    // The configuration as of the consistent index (the snapshot may have replaced it).
    let cs = load_conf_state(&backend)
        .map_err(ServerError::State)?
        .unwrap_or_default();
    let storage = restored.storage;
    storage.set_conf_state(cs.clone());
    let mut snapshot_index = restored.snapshot.map(|(i, _)| i).unwrap_or(0);
    if consistent_index > storage.last_index() {
        snapshot_index = resume_from_backend(&backend, &mut wal, &storage, consistent_index, &cs)?;
    }
    if consistent_index + 1 < storage.first_index() {
        return Err(ServerError::State(format!(
            "backend has applied up to raft index {consistent_index} but the WAL starts at {}; \
             entries in between are lost. Restore this member from a snapshot or re-add it",
            storage.first_index()
        )));
    }
    storage.ensure_commit_at_least(consistent_index);
    let members = MemberTable::load(&backend)?;
    let (mut store, pending_compaction) = Store::open(backend.clone())?;
    let applied_term = storage.term_of(consistent_index).unwrap_or(0);
    if applied_term != 0 {
        store.set_term(applied_term);
    }
    tracing::info!(
        member_id = format!("{:x}", meta.member_id),
        cluster_id = format!("{:x}", meta.cluster_id),
        consistent_index,
        revision = store.current_revision(),
        wal_first = storage.first_index(),
        wal_last = storage.last_index(),
        "restored member"
    );
    Ok(Bootstrapped {
        member_id: meta.member_id,
        cluster_id: meta.cluster_id,
        backend,
        store,
        pending_compaction,
        wal,
        storage,
        members,
        conf_state: cs,
        consistent_index,
        snapshot_index,
        applied_term,
    })
}

/// The backend has applied entries the WAL no longer holds: its tail was lost (a disk that
/// dropped synced writes, or a torn last entry). Every applied entry was committed, so the
/// backend is a valid raft snapshot at its consistent index and term: the raft log restarts
/// there, and the WAL records that point so the next start agrees. A cluster's leader sends
/// anything after it; a single member simply continues. Nothing applied is lost, and new
/// entries never reuse an index the backend has already applied (etcd would skip applying
/// them). Refused only when the backend predates the term record and the term is unknown.
fn resume_from_backend(
    backend: &Backend,
    wal: &mut Wal,
    storage: &RaftStorage,
    consistent_index: u64,
    cs: &ConfState,
) -> Result<u64, ServerError> {
    let wal_last = storage.last_index();
    let Some(term) = backend.consistent_term()? else {
        return Err(ServerError::State(format!(
            "the backend has applied raft entries up to {consistent_index} but the WAL in {} \
             ends at {wal_last} (its tail was lost), and the backend does not record the term \
             of entry {consistent_index}. Remove this member's data dir and re-add it, or \
             restore it from a snapshot",
            wal.dir().display()
        )));
    };
    tracing::warn!(
        wal_last,
        consistent_index,
        term,
        "the WAL ends before the last entry the backend applied (its tail was lost on disk); \
         resuming the raft log from the backend's applied index"
    );
    storage
        .bootstrap_at(consistent_index, term, cs.clone())
        .map_err(|e| ServerError::Raft(e.to_string()))?;
    let hs = storage.hard_state();
    wal.append(&[
        Record::Snapshot {
            index: consistent_index,
            term,
        },
        Record::HardState {
            term: hs.term,
            vote: hs.vote,
            commit: hs.commit,
        },
    ])?;
    wal.sync()?;
    Ok(consistent_index)
}
