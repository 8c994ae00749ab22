//! Cluster membership as the applier keeps it: the member table (who is in the cluster, their
//! ids, names and URLs), etcd's member and cluster id derivation, and the raft configuration
//! persisted next to them. Written only by the applier (and bootstrap, before it runs); read by
//! the server, the peer transport's owner and the API. Lives below `apply` and `server` so
//! both can use it without the applier importing the server (etcd: `membership`).
//!
//! Ids are derived exactly as etcd derives them (SHA-1 of the sorted peer URLs and the cluster
//! token; the cluster id from the sorted member ids), so a cluster started with the same flags
//! as an etcd cluster reports the same ids.

use std::collections::BTreeMap;

use parking_lot::RwLock;
use prost::Message as _;
use sha1::{Digest, Sha1};

use crate::backend::{Backend, BackendError, WriteBatch};
use crate::proto::ferrocdpb::Member;
use crate::schema::{member_key, meta, Bucket};

/// etcd's member id: SHA-1 over the sorted peer URLs, the cluster token and (for members added
/// later) the time; the first 8 bytes big-endian.
pub fn member_id(peer_urls: &[String], token: &str, now_unix: Option<i64>) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut b = urls.concat().into_bytes();
    b.extend_from_slice(token.as_bytes());
    if let Some(t) = now_unix {
        b.extend_from_slice(t.to_string().as_bytes());
    }
    let hash = Sha1::digest(&b);
    u64::from_be_bytes(hash[..8].try_into().expect("sha1 has 20 bytes"))
}

/// etcd's cluster id: SHA-1 over the sorted member ids, big-endian; the first 8 bytes.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let b: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    let hash = Sha1::digest(&b);
    u64::from_be_bytes(hash[..8].try_into().expect("sha1 has 20 bytes"))
}

/// The members as this member last applied them.
#[derive(Default)]
pub struct MemberTable {
    members: RwLock<BTreeMap<u64, Member>>,
}

impl MemberTable {
    /// Loads the members bucket.
    pub fn load(backend: &Backend) -> Result<MemberTable, BackendError> {
        let mut map = BTreeMap::new();
        for item in backend.range(Bucket::Members, &[], None) {
            let (_, v) = item?;
            match Member::decode(&v[..]) {
                Ok(m) => {
                    map.insert(m.id, m);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a member record that does not decode")
                }
            }
        }
        Ok(MemberTable {
            members: RwLock::new(map),
        })
    }

    /// Adds or replaces a member, persisting it in `batch`.
    pub fn upsert(&self, batch: &mut WriteBatch, m: Member) {
        batch.put(Bucket::Members, &member_key(m.id), m.encode_to_vec());
        self.members.write().insert(m.id, m);
    }

    /// Removes a member, persisting it in `batch`.
    pub fn remove(&self, batch: &mut WriteBatch, id: u64) -> Option<Member> {
        batch.delete(Bucket::Members, &member_key(id));
        self.members.write().remove(&id)
    }

    /// Re-reads the table from the backend (after a snapshot replaced it).
    pub fn reload(&self, backend: &Backend) -> Result<(), BackendError> {
        let fresh = MemberTable::load(backend)?;
        *self.members.write() = fresh.members.into_inner();
        Ok(())
    }

    /// (id, peer URLs) of every member, for the transport.
    pub fn peer_urls(&self) -> Vec<(u64, Vec<String>)> {
        self.members
            .read()
            .values()
            .map(|m| (m.id, m.peer_urls.clone()))
            .collect()
    }

    /// Every member, ordered by id.
    pub fn list(&self) -> Vec<Member> {
        self.members.read().values().cloned().collect()
    }

    /// One member.
    pub fn get(&self, id: u64) -> Option<Member> {
        self.members.read().get(&id).cloned()
    }
}

/// Persists the raft configuration in `batch` (read back on restart).
pub fn save_conf_state(batch: &mut WriteBatch, cs: &raft::prelude::ConfState) {
    let pb = crate::proto::ferrocdpb::ConfState {
        voters: cs.voters.clone(),
        learners: cs.learners.clone(),
        voters_outgoing: cs.voters_outgoing.clone(),
        learners_next: cs.learners_next.clone(),
        auto_leave: cs.auto_leave,
    };
    batch.put(Bucket::Meta, meta::CONF_STATE, pb.encode_to_vec());
}

/// The raft configuration stored in the backend, if any.
pub fn load_conf_state(backend: &Backend) -> Result<Option<raft::prelude::ConfState>, String> {
    let Some(v) = backend
        .get(Bucket::Meta, meta::CONF_STATE)
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let cs = crate::proto::ferrocdpb::ConfState::decode(&v[..])
        .map_err(|e| format!("backend conf state does not decode: {e}"))?;
    Ok(Some(raft::prelude::ConfState {
        voters: cs.voters,
        learners: cs.learners,
        voters_outgoing: cs.voters_outgoing,
        learners_next: cs.learners_next,
        auto_leave: cs.auto_leave,
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_order_independent() {
        let a = member_id(
            &["http://b:2380".into(), "http://a:2380".into()],
            "etcd-cluster",
            None,
        );
        let b = member_id(
            &["http://a:2380".into(), "http://b:2380".into()],
            "etcd-cluster",
            None,
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            member_id(&["http://a:2380".into()], "etcd-cluster", None)
        );
        assert_ne!(
            a,
            member_id(
                &["http://a:2380".into(), "http://b:2380".into()],
                "other",
                None
            )
        );
        assert_eq!(cluster_id(&[3, 1, 2]), cluster_id(&[1, 2, 3]));
    }

    #[test]
    fn default_member_id_matches_etcd() {
        // etcd 3.x started with no flags reports member id 8e9e05c52164694d and cluster id
        // cdf818194e3a8c32 (the well-known defaults for http://localhost:2380 + "etcd-cluster").
        let id = member_id(&["http://localhost:2380".into()], "etcd-cluster", None);
        assert_eq!(format!("{id:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster_id(&[id])), "cdf818194e3a8c32");
    }
}
