//! The member-to-member half of the peer port: the calls members make to each other outside
//! raft. A member started with `--initial-cluster-state=existing` asks who is in the cluster;
//! a follower asks the leader whether a learner is ready for promotion and forwards the lease
//! calls only the leader can answer (only it keeps the lease clock); the leader asks every
//! member for its HashKV in the periodic corruption check. (Raft traffic itself is
//! `raft::peer_service`, served on the same port.)

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::EtcdServer;
use crate::proto::etcdserverpb::{
    HashKvRequest, HashKvResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::proto::ferrocdpb::members_server::Members;
use crate::proto::ferrocdpb::{
    LearnerReadyRequest, LearnerReadyResponse, LeaseRenewRequest, LeaseRenewResponse,
    MembersRequest, MembersResponse,
};

/// The `Members` peer service of one member.
pub struct MemberService(pub Arc<EtcdServer>);

#[tonic::async_trait]
impl Members for MemberService {
    async fn members(
        &self,
        _: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        Ok(Response::new(MembersResponse {
            cluster_id: self.0.cluster_id,
            members: self.0.members.list(),
        }))
    }

    async fn learner_ready(
        &self,
        req: Request<LearnerReadyRequest>,
    ) -> Result<Response<LearnerReadyResponse>, Status> {
        let res = self.0.local_learner_check(req.get_ref().member_id).await;
        Ok(Response::new(match res {
            Ok(()) => LearnerReadyResponse {
                ready: true,
                reason: String::new(),
            },
            Err(reason) => LearnerReadyResponse {
                ready: false,
                reason,
            },
        }))
    }

    async fn lease_renew(
        &self,
        req: Request<LeaseRenewRequest>,
    ) -> Result<Response<LeaseRenewResponse>, Status> {
        Ok(Response::new(
            match self.0.local_lease_renew(req.get_ref().id).await {
                Ok(ttl) => LeaseRenewResponse {
                    ttl,
                    error: String::new(),
                },
                Err(e) => LeaseRenewResponse {
                    ttl: 0,
                    error: e.to_string(),
                },
            },
        ))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        Ok(Response::new(
            self.0.local_lease_time_to_live(req.get_ref()).await?,
        ))
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let server = self.0.clone();
        let rev = req.get_ref().revision;
        let (hash, compact_revision, hash_revision) =
            tokio::task::spawn_blocking(move || server.hash_kv(rev))
                .await
                .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(HashKvResponse {
            header: None,
            hash,
            compact_revision,
            hash_revision,
        }))
    }
}
