//! Opening a member's data dir: create a new member from the flags, or restart one from its
//! WAL and backend (ignoring the initial-cluster flags, as etcd does).
//!
//! Layout (`--data-dir`): `member/wal/` (WAL segments, or `--wal-dir`), `member/db/` (sled).
//! The WAL's existence marks an initialized member: it is created last, so a crash during
//! bootstrap leaves a dir that bootstraps again cleanly.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message as _;
use raft::prelude::ConfState;

use crate::backend::{Backend, BackendOptions, Bucket, WriteBatch};
use crate::config::{ClusterState, Config};
use crate::error::ServerError;
use crate::mvcc::{Compaction, Store};
use crate::proto::ferrocdpb::{ConfState as PbConfState, Member, WalMetadata};
use crate::raft::RaftStorage;
use crate::wal::Wal;

use super::members::{cluster_id, member_id, MemberTable};
use crate::config::url_to_string as url_string;

const META_CLUSTER_ID: &[u8] = b"cluster_id";
const META_MEMBER_ID: &[u8] = b"member_id";
const META_CONF_STATE: &[u8] = b"conf_state";

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
    /// The last raft index the backend has applied.
    pub consistent_index: u64,
    /// The last snapshot point recorded in the WAL.
    pub snapshot_index: u64,
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

/// Opens the member in `cfg.data_dir`, creating it if it has no WAL yet.
pub fn bootstrap(cfg: &Config) -> Result<Bootstrapped, ServerError> {
    create_private_dir(&cfg.data_dir)?;
    create_private_dir(&cfg.data_dir.join("member"))?;
    let wal_dir = wal_dir(cfg);
    if Wal::exists(&wal_dir) {
        tracing::info!(data_dir = %cfg.data_dir.display(), "restarting member from existing data dir; --initial-cluster flags are ignored");
        restart(cfg, &wal_dir)
    } else {
        create(cfg, &wal_dir)
    }
}

fn open_backend(cfg: &Config) -> Result<Arc<Backend>, ServerError> {
    let dir = db_dir(&cfg.data_dir);
    Ok(Arc::new(Backend::open(&dir, BackendOptions::default())?))
}

fn create(cfg: &Config, wal_dir: &Path) -> Result<Bootstrapped, ServerError> {
    if cfg.initial_cluster_state == ClusterState::Existing {
        return Err(ServerError::State(
            "--initial-cluster-state=existing joins a running cluster through the peer transport, \
             which this ferrocd build does not have yet; start a single member with --initial-cluster-state=new"
                .into(),
        ));
    }
    // Group URLs by member name, in flag order.
    let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
    for (name, u) in &cfg.initial_cluster {
        let s = url_string(u);
        match grouped.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(s),
            None => grouped.push((name.clone(), vec![s])),
        }
    }
    if grouped.len() > 1 {
        return Err(ServerError::State(format!(
            "--initial-cluster names {} members; this ferrocd build runs single-member clusters only \
             (the peer transport for multi-member clusters is not built yet)",
            grouped.len()
        )));
    }
    let token = &cfg.initial_cluster_token;
    let members: Vec<Member> = grouped
        .iter()
        .map(|(name, urls)| Member {
            id: member_id(urls, token, None),
            name: name.clone(),
            peer_urls: urls.clone(),
            client_urls: Vec::new(),
            is_learner: false,
        })
        .collect();
    let Some(local) = members.iter().find(|m| m.name == cfg.name).cloned() else {
        return Err(ServerError::State(format!(
            "--initial-cluster has no member named {:?} (--name); add {}=<peer url> to it",
            cfg.name, cfg.name
        )));
    };
    let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
    let cid = cluster_id(&ids);

    let backend = open_backend(cfg)?;
    if backend.consistent_index()? > 0 {
        return Err(ServerError::State(format!(
            "{} holds applied data but the WAL in {} is missing; restore the WAL or start from an empty data dir",
            db_dir(&cfg.data_dir).display(),
            wal_dir.display()
        )));
    }
    let table = MemberTable::default();
    let mut batch = WriteBatch::default();
    for mut m in members {
        if m.id == local.id {
            m.client_urls = cfg.advertise_client_urls.iter().map(url_string).collect();
        }
        table.upsert(&mut batch, m);
    }
    let cs = PbConfState {
        voters: ids.clone(),
        ..Default::default()
    };
    batch.put(Bucket::Meta, META_CONF_STATE, cs.encode_to_vec());
    batch.put(Bucket::Meta, META_CLUSTER_ID, &cid.to_be_bytes()[..]);
    batch.put(Bucket::Meta, META_MEMBER_ID, &local.id.to_be_bytes()[..]);
    backend.commit(batch)?;
    backend.flush()?;

    let meta = WalMetadata {
        member_id: local.id,
        cluster_id: cid,
    };
    let wal = Wal::create(wal_dir, &meta.encode_to_vec())?;
    tracing::info!(
        member_id = format!("{:x}", local.id),
        cluster_id = format!("{cid:x}"),
        name = %cfg.name,
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
        storage: RaftStorage::new(to_raft_conf_state(&cs)),
        members: table,
        consistent_index: 0,
        snapshot_index: 0,
    })
}

fn to_raft_conf_state(cs: &PbConfState) -> ConfState {
    ConfState {
        voters: cs.voters.clone(),
        learners: cs.learners.clone(),
        voters_outgoing: cs.voters_outgoing.clone(),
        learners_next: cs.learners_next.clone(),
        auto_leave: cs.auto_leave,
        ..Default::default()
    }
}

fn restart(cfg: &Config, wal_dir: &Path) -> Result<Bootstrapped, ServerError> {
    let (wal, records) = Wal::open(wal_dir)?;
    let backend = open_backend(cfg)?;
    let cs = match backend.get(Bucket::Meta, META_CONF_STATE)? {
        Some(v) => PbConfState::decode(&v[..])
            .map_err(|e| ServerError::State(format!("backend conf state does not decode: {e}")))?,
        None => {
            return Err(ServerError::State(format!(
                "backend in {} has no cluster configuration; the data dir is incomplete",
                db_dir(&cfg.data_dir).display()
            )))
        }
    };
    let restored =
        RaftStorage::restore(to_raft_conf_state(&cs), records).map_err(ServerError::Raft)?;
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
    if let Some(v) = backend.get(Bucket::Meta, META_MEMBER_ID)? {
        let backend_member = u64::from_be_bytes(v[..].try_into().unwrap_or_default());
        if backend_member != meta.member_id {
            return Err(ServerError::State(format!(
                "WAL belongs to member {:x} but the backend to member {backend_member:x}; the data dir mixes two members",
                meta.member_id
            )));
        }
    }
    let consistent_index = backend.consistent_index()?;
    let storage = restored.storage;
    if consistent_index + 1 < storage.first_index() {
        return Err(ServerError::State(format!(
            "backend has applied up to raft index {consistent_index} but the WAL starts at {}; \
             entries in between are lost. Restore this member from a snapshot or re-add it",
            storage.first_index()
        )));
    }
    storage.ensure_commit_at_least(consistent_index);
    let members = MemberTable::load(&backend)?;
    // Re-publish our client URLs if the flags changed them (the applier is not running yet).
    if let Some(mut me) = members.get(meta.member_id) {
        let urls: Vec<String> = cfg.advertise_client_urls.iter().map(url_string).collect();
        if me.client_urls != urls || me.name != cfg.name {
            me.client_urls = urls;
            me.name = cfg.name.clone();
            let mut batch = WriteBatch::default();
            members.upsert(&mut batch, me);
            backend.commit(batch)?;
        }
    }
    let (store, pending_compaction) = Store::open(backend.clone())?;
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
        consistent_index,
        snapshot_index: restored.snapshot.map(|(i, _)| i).unwrap_or(0),
    })
}
