//! Applying membership: raft conf changes (add, add as learner, promote, remove) and the
//! member attribute updates that ride on normal entries (publish, peer URL update).
//!
//! Each change updates the member table and the stored raft configuration in one atomic batch
//! with the consistent index, re-points the transport, and answers the waiting client.

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType};

use super::{Applier, ApplyResponse, ApplyResult};
use crate::error::EtcdError;
use crate::membership::save_conf_state;
use crate::metrics::METRICS;
use crate::proto::ferrocdpb::{ConfChangeContext, MemberAttributes, MemberPeerUrls};
use crate::raft::transport::hex;

impl Applier {
    /// Applies a committed conf change entry; `cs` is the configuration raft reached with it.
    pub(super) fn apply_conf_change(&mut self, e: &Entry, cs: Option<ConfState>) {
        let (changes, context): (Vec<(ConfChangeType, u64)>, Vec<u8>) = match e.get_entry_type() {
            EntryType::EntryConfChangeV2 => match ConfChangeV2::parse_from_bytes(&e.data) {
                Ok(cc) => (
                    cc.get_changes()
                        .iter()
                        .map(|c| (c.get_change_type(), c.node_id))
                        .collect(),
                    cc.get_context().to_vec(),
                ),
                Err(err) => {
                    tracing::error!(index = e.index, error = %err, "conf change does not decode");
                    return;
                }
            },
            _ => match ConfChange::parse_from_bytes(&e.data) {
                Ok(cc) => (
                    vec![(cc.get_change_type(), cc.node_id)],
                    cc.get_context().to_vec(),
                ),
                Err(err) => {
                    tracing::error!(index = e.index, error = %err, "conf change does not decode");
                    return;
                }
            },
        };
        let ctx = ConfChangeContext::decode(&context[..]).unwrap_or_default();
        let mut removed_self = false;
        let mut store = self.store.write();
        let mut txn = store.write(e.index);
        for (kind, id) in changes {
            match kind {
                ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                    let learner = kind == ConfChangeType::AddLearnerNode;
                    let member = match (self.members.get(id), &ctx.member) {
                        (Some(mut m), _) if ctx.is_promote || !learner => {
                            if m.is_learner && !learner {
                                METRICS.learner_promote_successes.inc();
                                tracing::info!(
                                    member = hex(id),
                                    "learner promoted to voting member"
                                );
                            }
                            m.is_learner = learner;
                            m
                        }
                        (_, Some(m)) if m.id == id => {
                            let mut m = m.clone();
                            m.is_learner = learner;
                            tracing::info!(member = hex(id), learner, peer_urls = ?m.peer_urls, "member added");
                            m
                        }
                        (Some(m), _) => m,
                        (None, _) => {
                            tracing::warn!(
                                member = hex(id),
                                "conf change adds a member with no details; adding it unnamed"
                            );
                            crate::proto::ferrocdpb::Member {
                                id,
                                is_learner: learner,
                                ..Default::default()
                            }
                        }
                    };
                    self.members.upsert(txn.extra(), member);
                }
                ConfChangeType::RemoveNode => {
                    if self.members.remove(txn.extra(), id).is_some() {
                        tracing::info!(member = hex(id), "member removed");
                    }
                    removed_self |= id == self.member_id;
                }
            }
        }
        if let Some(cs) = cs {
            save_conf_state(txn.extra(), &cs);
            self.conf_state = cs;
        }
        super::commit_or_stop(txn, e.index);
        drop(store);
        self.transport.set_peers(&self.members.peer_urls());
        if ctx.request_id != 0 {
            self.wait.trigger(
                ctx.request_id,
                Ok(ApplyResponse::Members(self.members.list())),
            );
        }
        if removed_self {
            // etcd stops a member that has been removed: it must not take part in elections.
            self.close_group();
            let _ = self.backend.flush();
            self.hand_off_leadership();
            tracing::warn!("this member has been permanently removed from the cluster; stopping");
            std::process::exit(0);
        }
    }

    /// A removed leader would stay leader until it stops, and the others would wait out an
    /// election timeout (losing proposals forwarded to it meanwhile): hand leadership to the
    /// most up-to-date remaining voter first, and wait briefly for it to take over.
    fn hand_off_leadership(&self) {
        let ask = || {
            let (tx, rx) = tokio::sync::oneshot::channel();
            self.node_tx.send(crate::raft::NodeMsg::Progress(tx)).ok()?;
            rx.blocking_recv().ok()
        };
        let Some(p) = ask() else { return };
        if !p.is_leader {
            return;
        }
        let best = p
            .matched
            .iter()
            .filter(|(id, _)| **id != self.member_id && self.conf_state.voters.contains(id))
            .max_by_key(|(_, m)| **m)
            .map(|(id, _)| *id);
        let Some(to) = best else { return };
        tracing::info!(
            to = hex(to),
            "removed leader handing off leadership before stopping"
        );
        let _ = self.node_tx.send(crate::raft::NodeMsg::TransferLeader(to));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            if ask().map(|p| !p.is_leader).unwrap_or(true) {
                return;
            }
        }
    }

    /// A member published its name and client URLs (etcd's attribute update after start).
    pub(super) fn apply_member_attributes(
        &mut self,
        m: MemberAttributes,
        index: u64,
    ) -> ApplyResult {
        let Some(mut member) = self.members.get(m.id) else {
            return Err(EtcdError::MemberNotFound);
        };
        member.name = m.name;
        member.client_urls = m.client_urls;
        self.persist_member(member, index)
    }

    /// MemberUpdate: new peer URLs.
    pub(super) fn apply_member_peer_urls(&mut self, m: MemberPeerUrls, index: u64) -> ApplyResult {
        let Some(mut member) = self.members.get(m.id) else {
            return Err(EtcdError::MemberNotFound);
        };
        tracing::info!(member = hex(m.id), from = ?member.peer_urls, to = ?m.peer_urls, "member peer URLs updated");
        member.peer_urls = m.peer_urls;
        let res = self.persist_member(member, index);
        self.transport.set_peers(&self.members.peer_urls());
        res
    }

    fn persist_member(
        &mut self,
        member: crate::proto::ferrocdpb::Member,
        index: u64,
    ) -> ApplyResult {
        let mut store = self.store.write();
        let mut txn = store.write(index);
        self.members.upsert(txn.extra(), member);
        super::commit_or_stop(txn, index);
        Ok(ApplyResponse::Members(self.members.list()))
    }
}
