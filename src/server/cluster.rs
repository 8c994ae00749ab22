//! Membership changes and leadership transfer, with etcd's safety checks (strict
//! reconfiguration: never let a change leave the cluster without a working quorum).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message as _;
use raft::prelude::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
use tonic::transport::Endpoint;

use super::EtcdServer;
use crate::apply::ApplyResponse;
use crate::error::EtcdError;
use crate::membership::member_id;
use crate::proto::ferrocdpb::members_client::MembersClient;
use crate::proto::ferrocdpb::{
    internal_request::Request, ConfChangeContext, LearnerReadyRequest, Member, MemberPeerUrls,
};
use crate::raft::{NodeMsg, ProgressInfo};

/// How long peers must have been connected before a reconfiguration counts them (etcd's
/// HealthInterval).
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// A learner is ready once it has this share of the leader's log.
const LEARNER_READY_PERCENT: f64 = 0.9;
/// etcd allows one learner at a time.
const MAX_LEARNERS: usize = 1;

/// Peer URLs as etcd validates them (http/https with host and port, no path).
fn parse_peer_urls(urls: &[String]) -> Result<Vec<String>, EtcdError> {
    if urls.is_empty() {
        return Err(EtcdError::MemberBadUrls);
    }
    urls.iter()
        .map(|u| {
            let parsed = url::Url::parse(u).map_err(|_| EtcdError::MemberBadUrls)?;
            let ok = matches!(parsed.scheme(), "http" | "https")
                && parsed.host_str().is_some()
                && parsed.port().is_some()
                && (parsed.path().is_empty() || parsed.path() == "/");
            if ok {
                Ok(crate::config::url_to_string(&parsed))
            } else {
                Err(EtcdError::MemberBadUrls)
            }
        })
        .collect()
}

impl EtcdServer {
    fn members_reply(resp: ApplyResponse) -> Result<Vec<Member>, EtcdError> {
        match resp {
            ApplyResponse::Members(m) => Ok(m),
            _ => Err(EtcdError::Internal(
                "unexpected apply result for a membership change".into(),
            )),
        }
    }

    /// Proposes one conf change and waits for it to be applied here.
    async fn propose_conf_change(
        &self,
        kind: ConfChangeType,
        node_id: u64,
        member: Option<Member>,
        is_promote: bool,
    ) -> Result<Vec<Member>, EtcdError> {
        let id = self.ids.next();
        let ctx = ConfChangeContext {
            request_id: id,
            member,
            is_promote,
        };
        let mut single = ConfChangeSingle::default();
        single.set_change_type(kind);
        single.node_id = node_id;
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(single);
        cc.context = ctx.encode_to_vec().into();
        Self::members_reply(
            self.submit(id, NodeMsg::ProposeConfChange { id, cc })
                .await?,
        )
    }

    /// Voting members connected to this one for at least the health interval (counting self).
    fn connected_voters(&self, voters: &[Member]) -> usize {
        let threshold = Instant::now().checked_sub(HEALTH_INTERVAL);
        voters
            .iter()
            .filter(|m| {
                m.id == self.member_id
                    || match (self.transport.active_since(m.id), threshold) {
                        (Some(since), Some(t)) => since <= t,
                        (Some(_), None) => true,
                        (None, _) => false,
                    }
            })
            .count()
    }

    fn voters(&self) -> Vec<Member> {
        self.members
            .list()
            .into_iter()
            .filter(|m| !m.is_learner)
            .collect()
    }

    /// Cluster.MemberAdd.
    pub async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(Member, Vec<Member>), EtcdError> {
        let urls = parse_peer_urls(&peer_urls)?;
        let members = self.members.list();
        if members
            .iter()
            .any(|m| m.peer_urls.iter().any(|u| urls.contains(u)))
        {
            return Err(EtcdError::PeerUrlExist);
        }
        if is_learner {
            if members.iter().filter(|m| m.is_learner).count() >= MAX_LEARNERS {
                return Err(EtcdError::TooManyLearners);
            }
        } else if self.strict_reconfig_check {
            let voters = self.voters();
            let started = voters.iter().filter(|m| !m.name.is_empty()).count();
            let after = voters.len() + 1;
            if !(started == 1 && after == 2) && started < after / 2 + 1 {
                return Err(EtcdError::NotEnoughStartedMembers);
            }
            if self.connected_voters(&voters) < voters.len() {
                return Err(EtcdError::Unhealthy);
            }
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let id = member_id(&urls, "", Some(now));
        if members.iter().any(|m| m.id == id) {
            return Err(EtcdError::MemberExist);
        }
        let member = Member {
            id,
            name: String::new(),
            peer_urls: urls,
            client_urls: Vec::new(),
            is_learner,
        };
        let kind = if is_learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        };
        let after = self
            .propose_conf_change(kind, id, Some(member.clone()), false)
            .await?;
        Ok((member, after))
    }

    /// Cluster.MemberRemove.
    pub async fn member_remove(&self, id: u64) -> Result<Vec<Member>, EtcdError> {
        let Some(target) = self.members.get(id) else {
            return Err(EtcdError::MemberNotFound);
        };
        if self.strict_reconfig_check && !target.is_learner {
            let voters = self.voters();
            let mut started = voters.iter().filter(|m| !m.name.is_empty()).count();
            if !target.name.is_empty() {
                started -= 1;
            }
            if started < (voters.len() - 1) / 2 + 1 {
                return Err(EtcdError::NotEnoughStartedMembers);
            }
            // A member that is down is safe to remove: it is not part of the active quorum.
            let target_down = id != self.member_id && self.transport.active_since(id).is_none();
            if !target_down {
                let active = self.connected_voters(&voters);
                if active < 1 + (voters.len() - 1) / 2 + 1 {
                    return Err(EtcdError::Unhealthy);
                }
            }
        }
        self.propose_conf_change(ConfChangeType::RemoveNode, id, None, false)
            .await
    }

    /// Cluster.MemberUpdate: new peer URLs (a normal entry; no quorum change).
    pub async fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> Result<Vec<Member>, EtcdError> {
        let urls = parse_peer_urls(&peer_urls)?;
        if self.members.get(id).is_none() {
            return Err(EtcdError::MemberNotFound);
        }
        if self
            .members
            .list()
            .iter()
            .any(|m| m.id != id && m.peer_urls.iter().any(|u| urls.contains(u)))
        {
            return Err(EtcdError::PeerUrlExist);
        }
        let resp = self
            .propose(Request::MemberPeerUrls(MemberPeerUrls {
                id,
                peer_urls: urls,
            }))
            .await?;
        Self::members_reply(resp)
    }

    /// Cluster.MemberPromote: only a learner that has caught up with the leader.
    pub async fn member_promote(&self, id: u64) -> Result<Vec<Member>, EtcdError> {
        let Some(target) = self.members.get(id) else {
            return Err(EtcdError::MemberNotFound);
        };
        if !target.is_learner {
            return Err(EtcdError::MemberNotLearner);
        }
        self.learner_ready(id).await?;
        if self.strict_reconfig_check {
            let voters = self.voters();
            let started = voters.iter().filter(|m| !m.name.is_empty()).count()
                + usize::from(!target.name.is_empty());
            let after = voters.len() + 1;
            if started < after / 2 + 1 {
                return Err(EtcdError::NotEnoughStartedMembers);
            }
        }
        self.propose_conf_change(ConfChangeType::AddNode, id, None, true)
            .await
    }

    async fn progress(&self) -> Option<ProgressInfo> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.node_tx.send(NodeMsg::Progress(tx)).ok()?;
        rx.await.ok()
    }

    /// The leader's view of whether learner `id` is in sync (called on the leader).
    pub(crate) async fn local_learner_check(&self, id: u64) -> Result<(), String> {
        let p = self.progress().await.ok_or("server stopped")?;
        if !p.is_leader {
            return Err("not the leader".into());
        }
        let learner = *p
            .matched
            .get(&id)
            .ok_or("member is not replicated by this leader")?;
        let leader = p
            .matched
            .get(&self.member_id)
            .copied()
            .unwrap_or(p.last_index);
        if (learner as f64) < (leader as f64) * LEARNER_READY_PERCENT {
            return Err(format!(
                "learner has {learner} of the leader's {leader} entries"
            ));
        }
        Ok(())
    }

    async fn learner_ready(&self, id: u64) -> Result<(), EtcdError> {
        if self.is_leader() {
            return self.local_learner_check(id).await.map_err(|reason| {
                tracing::info!(member = format!("{id:x}"), %reason, "learner not ready for promotion");
                EtcdError::LearnerNotReady
            });
        }
        let leader = self.leader();
        let urls = self
            .members
            .get(leader)
            .map(|m| m.peer_urls)
            .ok_or(EtcdError::NoLeader)?;
        for u in urls {
            let Ok(ep) = Endpoint::from_shared(u) else {
                continue;
            };
            let Ok(ch) = ep.connect_timeout(Duration::from_secs(2)).connect().await else {
                continue;
            };
            if let Ok(resp) = MembersClient::new(ch)
                .learner_ready(LearnerReadyRequest { member_id: id })
                .await
            {
                let r = resp.into_inner();
                if r.ready {
                    return Ok(());
                }
                tracing::info!(member = format!("{id:x}"), reason = %r.reason, "learner not ready for promotion");
                return Err(EtcdError::LearnerNotReady);
            }
        }
        Err(EtcdError::NoLeader)
    }

    /// Maintenance.MoveLeader: only on the leader, only to a voting member.
    pub async fn move_leader(&self, target: u64) -> Result<(), EtcdError> {
        if !self.is_leader() {
            return Err(EtcdError::NotLeader);
        }
        match self.members.get(target) {
            Some(m) if !m.is_learner => {}
            _ => return Err(EtcdError::BadLeaderTransferee),
        }
        if target == self.member_id {
            return Ok(());
        }
        let deadline = Instant::now() + self.request_timeout;
        let mut next_ask = Instant::now();
        while self.leader() != target {
            if Instant::now() >= deadline {
                return Err(EtcdError::LeaderTransferTimeout);
            }
            if Instant::now() >= next_ask && self.is_leader() {
                // Re-ask periodically: raft abandons a transfer after an election timeout.
                let _ = self.node_tx.send(NodeMsg::TransferLeader(target));
                next_ask = Instant::now() + self.election_timeout;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}
