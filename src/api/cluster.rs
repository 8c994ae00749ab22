//! The Cluster service: thin adapters over the server's membership operations.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use crate::server::EtcdServer;

/// `etcdserverpb.Cluster` over an [`EtcdServer`].
pub struct ClusterService {
    server: Arc<EtcdServer>,
}

impl ClusterService {
    /// The service for `server`.
    pub fn new(server: Arc<EtcdServer>) -> Self {
        Self { server }
    }
}

fn to_pb(m: crate::proto::ferrocdpb::Member) -> Member {
    Member {
        id: m.id,
        name: m.name,
        peer_ur_ls: m.peer_urls,
        client_ur_ls: m.client_urls,
        is_learner: m.is_learner,
    }
}

fn all(ms: Vec<crate::proto::ferrocdpb::Member>) -> Vec<Member> {
    ms.into_iter().map(to_pb).collect()
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let r = req.into_inner();
        let s = &self.server;
        let (member, members) = s.member_add(r.peer_ur_ls, r.is_learner).await?;
        Ok(Response::new(MemberAddResponse {
            header: Some(s.header(s.current_revision())),
            member: Some(to_pb(member)),
            members: all(members),
        }))
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let s = &self.server;
        let members = s.member_remove(req.get_ref().id).await?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(s.header(s.current_revision())),
            members: all(members),
        }))
    }

    async fn member_update(
        &self,
        req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let r = req.into_inner();
        let s = &self.server;
        let members = s.member_update(r.id, r.peer_ur_ls).await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(s.header(s.current_revision())),
            members: all(members),
        }))
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let s = &self.server;
        if req.get_ref().linearizable {
            s.read_barrier().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: Some(s.header(s.current_revision())),
            members: all(s.members()),
        }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let s = &self.server;
        let members = s.member_promote(req.get_ref().id).await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(s.header(s.current_revision())),
            members: all(members),
        }))
    }
}
