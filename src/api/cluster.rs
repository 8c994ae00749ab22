//! The Cluster service. MemberList is served from the member table; membership changes need
//! the multi-member peer transport and answer Unimplemented until it exists.

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

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!(
        "ferrocd does not support Cluster.{what} yet (multi-member clusters are not built yet)"
    ))
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(not_yet("MemberAdd"))
    }

    async fn member_remove(
        &self,
        _: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(not_yet("MemberRemove"))
    }

    async fn member_update(
        &self,
        _: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(not_yet("MemberUpdate"))
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let s = &self.server;
        if req.get_ref().linearizable {
            s.read_barrier().await?;
        }
        let members = s
            .members()
            .into_iter()
            .map(|m| Member {
                id: m.id,
                name: m.name,
                peer_ur_ls: m.peer_urls,
                client_ur_ls: m.client_urls,
                is_learner: m.is_learner,
            })
            .collect();
        Ok(Response::new(MemberListResponse {
            header: Some(s.header(s.current_revision())),
            members,
        }))
    }

    async fn member_promote(
        &self,
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(not_yet("MemberPromote"))
    }
}
