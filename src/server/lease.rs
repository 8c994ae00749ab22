//! The server's lease operations. Grants and revocations go through raft like any write;
//! renewals and time-to-live questions are answered by the leader, whose lessor keeps the
//! cluster's lease clock (a follower forwards them over the peer service; the raft loop
//! promotes and demotes the lessor with the role); and a loop on the leader proposes
//! checkpoints of renewed leases and revocations of expired ones.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};

use super::EtcdServer;
use crate::apply::ApplyResponse;
use crate::error::EtcdError;
use crate::lease::{self, MAX_LEASE_TTL, NO_LEASE};
use crate::metrics::METRICS;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseLeasesResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::proto::ferrocdpb::internal_request::Request;
use crate::proto::ferrocdpb::members_client::MembersClient;
use crate::proto::ferrocdpb::{LeaseCheckpoints, LeaseExpiries, LeaseExpiry, LeaseRenewRequest};

/// How long to wait between attempts to reach a leader for a forwarded lease call.
const RETRY: Duration = Duration::from_millis(50);

/// A cached gRPC channel to the current leader's peer service: keep-alives are frequent, so
/// a follower must not connect per request.
#[derive(Default)]
pub struct LeaderLink {
    cached: Mutex<Option<(u64, MembersClient<Channel>)>>,
}

impl LeaderLink {
    fn client(&self, leader: u64, peer_urls: &[String]) -> Option<MembersClient<Channel>> {
        let mut cached = self.cached.lock();
        if let Some((id, c)) = &*cached {
            if *id == leader {
                return Some(c.clone());
            }
        }
        let ep = peer_urls
            .iter()
            .find_map(|u| Endpoint::from_shared(u.clone()).ok())?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true);
        let client = MembersClient::new(ep.connect_lazy());
        *cached = Some((leader, client.clone()));
        Some(client)
    }

    fn forget(&self) {
        *self.cached.lock() = None;
    }
}

impl EtcdServer {
    /// Lease.LeaseGrant: the TTL is checked and raised to the minimum and an id picked here,
    /// so every member applies the same grant.
    pub async fn lease_grant(
        &self,
        mut r: LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, EtcdError> {
        if r.ttl > MAX_LEASE_TTL {
            return Err(EtcdError::LeaseTtlTooLarge);
        }
        r.ttl = r.ttl.max(self.lessor.min_ttl());
        self.check_quota(super::quota::LEASE_OVERHEAD).await?;
        while r.id == NO_LEASE {
            // etcd picks from its request-id generator too: unique per member and time.
            r.id = (self.ids.next() & i64::MAX as u64) as i64;
        }
        match self.propose(Request::LeaseGrant(r)).await? {
            ApplyResponse::LeaseGrant(mut resp) => {
                self.fill(&mut resp.header);
                Ok(resp)
            }
            _ => Err(EtcdError::Internal(
                "unexpected apply result for lease grant".into(),
            )),
        }
    }

    /// Lease.LeaseRevoke: deletes the attached keys in one revision.
    pub async fn lease_revoke(
        &self,
        r: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, EtcdError> {
        match self.propose(Request::LeaseRevoke(r)).await? {
            ApplyResponse::LeaseRevoke(mut resp) => {
                self.fill(&mut resp.header);
                Ok(resp)
            }
            _ => Err(EtcdError::Internal(
                "unexpected apply result for lease revoke".into(),
            )),
        }
    }

    /// One keep-alive: renews lease `id` on the leader (forwarding if this member is not it)
    /// and returns its granted TTL. Retries across a leader change until the request timeout.
    pub async fn lease_renew(&self, id: i64) -> Result<i64, EtcdError> {
        self.on_leader(
            "keep-alive",
            || self.local_lease_renew(id),
            |leader| self.forward_renew(leader, id),
        )
        .await
    }

    /// Lease.LeaseTimeToLive, answered by the leader; an unknown lease reports TTL -1.
    pub async fn lease_time_to_live(
        &self,
        r: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, EtcdError> {
        let req = &r;
        let mut resp = self
            .on_leader(
                "time-to-live",
                move || self.local_lease_time_to_live(req),
                move |leader| self.forward_time_to_live(leader, req),
            )
            .await?;
        // The header is this member's, like every response it sends.
        resp.header = Some(self.header(self.current_revision()));
        Ok(resp)
    }

    /// Runs a leader-only lease call: here when this member leads, forwarded to the leader
    /// otherwise, retried across leader changes until the request timeout. An unknown lease
    /// is an answer, not a reason to retry.
    async fn on_leader<T, L, F>(
        &self,
        what: &'static str,
        local: impl Fn() -> L,
        forward: impl Fn(u64) -> F,
    ) -> Result<T, EtcdError>
    where
        L: Future<Output = Result<T, EtcdError>>,
        F: Future<Output = Result<T, EtcdError>>,
    {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let leader = self.leader();
            let attempt = if self.is_leader() {
                local().await
            } else if leader != 0 {
                forward(leader).await
            } else {
                Err(EtcdError::NoLeader)
            };
            match attempt {
                Ok(v) => return Ok(v),
                Err(EtcdError::LeaseNotFound) => return Err(EtcdError::LeaseNotFound),
                Err(e) if Instant::now() >= deadline => return Err(timeout_error(e)),
                Err(e) => tracing::debug!(call = what, error = %e, "not served yet; retrying"),
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// Lease.LeaseLeases: the leases this member knows (etcd answers it locally too).
    pub fn lease_leases(&self) -> LeaseLeasesResponse {
        LeaseLeasesResponse {
            header: Some(self.header(self.current_revision())),
            leases: self
                .lessor
                .leases()
                .into_iter()
                .map(|id| LeaseStatus { id })
                .collect(),
        }
    }

    /// Renews on this member, which must lead. A lease granted in an entry this leader has
    /// committed but not yet applied is waited for, as etcd waits for the applied index.
    pub(crate) async fn local_lease_renew(&self, id: i64) -> Result<i64, EtcdError> {
        if !self.is_leader() {
            return Err(EtcdError::NotLeader);
        }
        match self.lessor.renew(id) {
            Err(EtcdError::LeaseNotFound) if self.catch_up_applied().await => self.lessor.renew(id),
            r => r,
        }
    }

    /// Time-to-live on this member, which must lead.
    pub(crate) async fn local_lease_time_to_live(
        &self,
        r: &LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, EtcdError> {
        if !self.is_leader() {
            return Err(EtcdError::NotLeader);
        }
        let mut ttl = self.lessor.time_to_live(r.id, r.keys);
        if ttl.is_none() && self.catch_up_applied().await {
            ttl = self.lessor.time_to_live(r.id, r.keys);
        }
        Ok(match ttl {
            Some(t) => LeaseTimeToLiveResponse {
                header: None,
                id: r.id,
                ttl: t.remaining,
                granted_ttl: t.granted,
                keys: t.keys,
            },
            None => LeaseTimeToLiveResponse {
                header: None,
                id: r.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        })
    }

    /// Waits (bounded) until everything committed is applied here; whether it had to wait.
    async fn catch_up_applied(&self) -> bool {
        let commit = self.commit_index();
        if self.applied_index() >= commit {
            return false;
        }
        let mut applied = self.applied.clone();
        let _ =
            tokio::time::timeout(self.request_timeout, applied.wait_for(|a| *a >= commit)).await;
        true
    }

    fn leader_client(&self, leader: u64) -> Result<MembersClient<Channel>, EtcdError> {
        let urls = self
            .members
            .get(leader)
            .map(|m| m.peer_urls)
            .ok_or(EtcdError::NoLeader)?;
        self.leader_link
            .client(leader, &urls)
            .ok_or(EtcdError::NoLeader)
    }

    async fn forward_renew(&self, leader: u64, id: i64) -> Result<i64, EtcdError> {
        let mut client = self.leader_client(leader)?;
        match client.lease_renew(LeaseRenewRequest { id }).await {
            Ok(resp) => {
                let resp = resp.into_inner();
                if resp.error.is_empty() {
                    Ok(resp.ttl)
                } else if resp.error == EtcdError::LeaseNotFound.to_string() {
                    Err(EtcdError::LeaseNotFound)
                } else {
                    Err(EtcdError::NotLeader)
                }
            }
            Err(status) => {
                self.leader_link.forget();
                Err(EtcdError::Internal(format!(
                    "forwarding a keep-alive to the leader failed: {}",
                    status.message()
                )))
            }
        }
    }

    async fn forward_time_to_live(
        &self,
        leader: u64,
        r: &LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, EtcdError> {
        let mut client = self.leader_client(leader)?;
        match client.lease_time_to_live(*r).await {
            Ok(resp) => Ok(resp.into_inner()),
            Err(status) => {
                self.leader_link.forget();
                Err(EtcdError::Internal(format!(
                    "forwarding a time-to-live to the leader failed: {}",
                    status.message()
                )))
            }
        }
    }

    /// The leader's lease duties, every [`lease::TICK`]: checkpoint renewed leases and revoke
    /// expired ones. (The lessor itself is promoted and demoted by the raft loop as this member
    /// gains and loses leadership; a demoted lessor has nothing to checkpoint or expire.)
    pub(super) fn spawn_lease_loop(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(lease::TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let per_tick = (lease::REVOKE_RATE as u128 * lease::TICK.as_millis() / 1000) as usize;
            loop {
                tick.tick().await;
                if me.status.stopped.load(Ordering::Acquire) {
                    break;
                }
                if !me.is_leader() {
                    continue;
                }
                let checkpoints = me.lessor.take_checkpoints(lease::MAX_CHECKPOINTS_PER_ENTRY);
                if !checkpoints.is_empty() {
                    let m = me.clone();
                    tokio::spawn(async move {
                        let n = checkpoints.len();
                        if let Err(e) = m
                            .propose(Request::LeaseCheckpoints(LeaseCheckpoints { checkpoints }))
                            .await
                        {
                            tracing::debug!(leases = n, error = %e, "lease checkpoint not committed");
                        }
                    });
                }
                let expired = me.lessor.expired(per_tick.max(1));
                // Planted bug for the chaos harness (debug builds with FERROCD_FAULT_INJECTION=1
                // and FERROCD_PLANT_BUG=stuck-lease-clock only): expired leases are never
                // revoked, as when a leader's lease clock stops.
                #[cfg(debug_assertions)]
                let expired = if crate::fault::planted_bug("stuck-lease-clock") {
                    Vec::new()
                } else {
                    expired
                };
                if !expired.is_empty() {
                    let m = me.clone();
                    tokio::spawn(async move { m.revoke_expired(expired).await });
                }
            }
        });
    }

    /// Proposes the revocation of leases found expired. Leadership is confirmed with a quorum
    /// first (a leader cut off from the cluster must not revoke what others may be renewing),
    /// and the proposal names this leader's term: if it reaches the log through another leader
    /// it is ignored when applied.
    async fn revoke_expired(&self, expiries: Vec<LeaseExpiry>) {
        let ids: Vec<i64> = expiries.iter().map(|e| e.id).collect();
        let term = self.term();
        if self.read_barrier().await.is_err() || !self.is_leader() || self.term() != term {
            self.lessor.retry_revocations(&ids);
            return;
        }
        tracing::info!(leases = ids.len(), "revoking expired leases");
        match self
            .propose(Request::LeaseExpiries(LeaseExpiries { expiries, term }))
            .await
        {
            Ok(ApplyResponse::LeasesExpired(n)) => METRICS.lease_expired.inc_by(n as u64),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(leases = ids.len(), error = %e, "revoking expired leases failed; retrying");
                self.lessor.retry_revocations(&ids);
            }
        }
    }
}

/// What a lease call that kept failing until its deadline reports.
fn timeout_error(last: EtcdError) -> EtcdError {
    match last {
        EtcdError::NoLeader => EtcdError::NoLeader,
        EtcdError::Stopped => EtcdError::Stopped,
        _ => EtcdError::Timeout,
    }
}
